/*
 * merge.cl - combines the chunk partials of split attention (attention_split and
 * attention_heads in attention.cl) into finished rows. A query row r's chunk c left
 * (m_c, l_c, acc_c) at part[(r * nch + c) * (DV + 2)]: its running maximum, its sum of
 * e^(s - m_c) and its unnormalised output sum e^(s - m_c) v. The row is
 *   o = sum_c w_c acc_c,  w_c = e^(m_c - M) / L,  L = sum_c l_c e^(m_c - M),
 * M the largest m_c of a chunk that attended somewhere (l_c != 0, NaN included, so a NaN score
 * reaches the output); a chunk that attended nowhere weighs 0, and so does every chunk when
 * none attended (o = 0, as an unsplit row). The e^(m_c - M) are computed once per row into
 * local memory, so the exponentials are nch, not nch * DV.
 *
 * merge_weights and MERGE_ROW are shared: attention_merge here, and gemm_tail (splice.cl),
 * which merges a decode step's rows as it projects them. Specialisation: DV (value head dim).
 */
#ifndef DV
#define DV 64
#endif
/* The most chunks a row has: the host's CLMHA__MAX_CHUNKS, which plan_attention never
 * exceeds (the default makes the file compile on its own). */
#ifndef MAX_CHUNKS
#define MAX_CHUNKS 256
#endif

/* Writes e_c = e^(m_c - M) of row pr's chunks that attended (0 for the others) into wts,
 * work-item lid of wg taking chunks lid, lid + wg, ..., and returns 1 / L (0 when no chunk
 * attended, or L is NaN). Every work-item of the group must call it: it ends with a barrier. */
static float merge_weights(__global const float *pr, int nch, __local float *wts, int lid,
                           int wg) {
    float mx = -FLT_MAX;
    for (int c = 0; c < nch; c++) {
        const float lc = pr[(ulong)c * (DV + 2) + 1];
        mx = lc != 0.0f ? fmax(mx, pr[(ulong)c * (DV + 2)]) : mx;
    }
    for (int c = lid; c < nch; c += wg) {
        const float lc = pr[(ulong)c * (DV + 2) + 1];
        wts[c] = lc != 0.0f ? exp(pr[(ulong)c * (DV + 2)] - mx) : 0.0f;
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    float lt = 0.0f;
    for (int c = 0; c < nch; c++) {
        lt = fma(pr[(ulong)c * (DV + 2) + 1], wts[c], lt);
    }
    return lt > 0.0f ? 1.0f / lt : 0.0f;
}

/* MERGE_ROW(DST): the merged row pr (weights wts, 1 / L in inv) into DST[0 .. DV), whose
 * address space differs between the kernels; a work-item alone streams whole float16 runs of
 * every chunk, several share the elements. */
#if DV % 16 == 0
#define MERGE_ROW(DST)                                                                          \
    if (wg == 1) {                                                                              \
        for (int d = 0; d < DV; d += 16) {                                                      \
            float16 x = (float16)(0.0f);                                                        \
            for (int c = 0; c < nch; c++) {                                                     \
                x = fma((float16)(wts[c]), vload16(0, pr + (ulong)c * (DV + 2) + 2 + d), x);    \
            }                                                                                   \
            vstore16(x * inv, 0, (DST) + d);                                                    \
        }                                                                                       \
    } else {                                                                                    \
        MERGE_ROW_SHARED(DST)                                                                   \
    }
#else
#define MERGE_ROW(DST) MERGE_ROW_SHARED(DST)
#endif
#define MERGE_ROW_SHARED(DST)                                                                   \
    for (int d = lid; d < DV; d += wg) {                                                        \
        float x = 0.0f;                                                                         \
        for (int c = 0; c < nch; c++) {                                                         \
            x = fma(wts[c], pr[(ulong)c * (DV + 2) + 2 + (ulong)d], x);                         \
        }                                                                                       \
        (DST)[d] = x * inv;                                                                     \
    }

/* attention_merge: one work-group per row r = (b * H + h) * T + t, written to o in the
 * (B, T, H, DV) layout the output projection reads. Any work-group size. */
__kernel void attention_merge(__global const float *part, __global float *o, int nch, int T,
                              int H) {
    __local float wts[MAX_CHUNKS];
    const int lid = (int)get_local_id(0), wg = (int)get_local_size(0);
    const ulong r = get_group_id(0);
    const ulong rt = r / (ulong)T;
    const int t = (int)(r - rt * (ulong)T);
    const ulong b = rt / (ulong)H;
    const int h = (int)(rt - b * (ulong)H);
    __global const float *pr = part + r * (ulong)nch * (ulong)(DV + 2);
    const float inv = merge_weights(pr, nch, wts, lid, wg);
    __global float *dst = o + ((b * (ulong)T + (ulong)t) * (ulong)H + (ulong)h) * DV;
    MERGE_ROW(dst)
}
