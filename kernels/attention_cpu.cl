/*
 * attention_cpu.cl - attention where one work-item streams the keys (CPUs; helpers in
 * attention_cpu.clh): attention_split (one query row, a chunk of its keys), attention_heads (one
 * query position, all heads) and attention_tile (a tile of query rows), with keys taken sixteen
 * at a time where the head dims allow. Work-groups of one work-item: private and local
 * memory are plain memory on a CPU, and nothing here is meant for a GPU (attention_gpu.cl is).
 * No probabilities, no dropout.
 */
#include "attention_cpu.clh"

/* ---- Split attention (flash-decoding) ----
 *
 * attention_split: work-group g (of one work-item) handles query row r = g / nch (r = (b * H + h)
 * * T + t) over the keys of chunk c = g % nch, [c * chunk, (c + 1) * chunk) cut at the causal
 * end, keeping an online softmax (running maximum m, sum l) and an unnormalised output acc =
 * sum e^(s_j - m) v_j, and streaming every key and value once with vector loads. With nch == 1
 * the row is finished here (o = acc / l, zeros when every key is masked); otherwise the chunk's
 * (m, l, acc) go to part[g * (DV + 2)] for merge.cl (attention_merge, or gemm_tail). Chunks past
 * the causal end read nothing. */
__kernel void attention_split(ATTENTION_ARGS, __global float *part, int nch, int chunk) {
    __local float qs[DK];

    const ulong g = get_group_id(0);
    const ulong r = g / (ulong)nch;
    const int c = (int)(g - r * (ulong)nch);
    const row_info ri = row_setup(r, T, H, S, k_off, k_bstride, v_off, v_bstride, m_off, m_sb, m_sh,
                                  m_st, causal, causal_base, lens, lens_off, has_lens);
    const ulong b = ri.b;
    const int h = ri.h, t = ri.t;
    load_query(qs, q, q_off, &ri, T, H, scale, 0, 1);

    const int j0 = c * chunk;
    const int j1 = min(ri.end, j0 + chunk);
    float m = NEG_SENTINEL;
    float l = 0.0f;
    float acc[DV];
    for (int d = 0; d < DV; d++) {
        acc[d] = 0.0f;
    }
    for (int j = j0; j < j1; j++) {
        if (has_mask && mask[ri.m_base + (ulong)j * m_ss] == 0) {
            continue;
        }
        __global const KV_T *kr =
            key_row(k, ri.k_base, ri.k_step, kn, b * kn_bstride + (ulong)h * KROW, new_lo, new_hi,
                    (ulong)j);
        __global const KV_T *vr =
            key_row(v, ri.v_base, ri.v_step, vn, b * vn_bstride + (ulong)h * VROW, new_lo, new_hi,
                    (ulong)j);
        add_value(acc, online_step(dot_qk(qs, kr), &m, &l, acc), vr);
    }
    const ulong o_row = ((b * (ulong)T + (ulong)t) * (ulong)H + (ulong)h) * DV;
    if (nch == 1) {
        write_row(o + o_row, acc, l);
        return;
    }
    __global float *dst = part + g * (ulong)(DV + 2);
    dst[0] = m;
    dst[1] = l;
    for (int d = 0; d < DV; d++) {
        dst[2 + d] = acc[d];
    }
}

/* ---- Split attention over all heads at once (CPUs: decode) ----
 *
 * attention_heads: as attention_split with one work-item a group, but work-group g takes query
 * position (b, t) = g / nch (g / nch = b * T + t) over chunk c = g % nch of the keys for all NH
 * heads together. A key position's NH key rows are contiguous in the cache (and so are its
 * value rows), so the work-item streams two runs of memory instead of NH rows strided by
 * H * DK floats, which a CPU's prefetchers do not follow. Each head keeps its own online
 * softmax; the heads' states live in local memory (one work-item a group: no barriers), as
 * Mesa's llvmpipe miscomputes private arrays of 4 KiB and more. Masks, the causal rule and
 * key_lengths depend on (b, t) only, so one test covers every head. Partials go to the
 * places attention_split gives them, row r = (b * H + h) * T + t at part[(r * nch + c) *
 * (DV + 2)], for attention_merge; with nch == 1 the rows are finished here. NH must equal H. */
#ifndef NH
#define NH 1
#endif

/* Key position j of a row for all NH heads: one online-softmax step a head, the heads'
 * states (scaled queries qs, outputs accs, maxima ms, sums ls) in local memory. */
static void heads_key(__local const float *qs, __local float *accs, __local float *ms,
                      __local float *ls, __global const KV_T *kr, __global const KV_T *vr) {
    for (int h = 0; h < NH; h++) {
        float m = ms[h], l = ls[h];
        const float s = dot_qk(qs + h * DK, kr + h * KROW);
        add_value_local(accs + h * DV, online_step_local(s, &m, &l, accs + h * DV), vr + h * VROW);
        ms[h] = m;
        ls[h] = l;
    }
}

#ifdef KB
/* Sixteen keys, none of them masked, for every head in turn. */
static void heads_block(__local const float *qs, __local float *accs, __local float *ms,
                        __local float *ls, __global const KV_T *const *kr,
                        __global const KV_T *const *vr, __global const KV_T *const *pk,
                        __global const KV_T *const *pv) {
    for (int h = 0; h < NH; h++) {
        float m = ms[h], l = ls[h];
        float16 acc[DV / 16];
        for (int e = 0; e < DV / 16; e++) {
            acc[e] = vload16(e, accs + h * DV);
        }
        block_step(qs + h * DK, acc, &m, &l, kr, vr, h * KROW, h * VROW, pk, pv);
        for (int e = 0; e < DV / 16; e++) {
            vstore16(acc[e], e, accs + h * DV);
        }
        ms[h] = m;
        ls[h] = l;
    }
}
#endif

__kernel void attention_heads(ATTENTION_ARGS, __global float *part, int nch, int chunk) {
    __local float qs[NH * DK];
    __local float accs[NH * DV];
    __local float ms[NH], ls[NH];

    const ulong g = get_group_id(0);
    const ulong bt = g / (ulong)nch;
    const int c = (int)(g - bt * (ulong)nch);
    const ulong b0 = bt / (ulong)T;
    const int t0 = (int)(bt - b0 * (ulong)T);
    /* Head 0's row: every head shares its batch, position, mask row and end. */
    const row_info ri = row_setup((b0 * (ulong)H) * (ulong)T + (ulong)t0, T, H, S, k_off, k_bstride,
                                  v_off, v_bstride, m_off, m_sb, m_sh, m_st, causal, causal_base,
                                  lens, lens_off, has_lens);
    const ulong b = ri.b;
    const ulong q_row = q_off + (b * (ulong)T + (ulong)ri.t) * (ulong)H * DK;
    for (int e = 0; e < NH * DK; e++) {
        qs[e] = q[q_row + (ulong)e] * scale;
    }
    for (int e = 0; e < NH * DV; e++) {
        accs[e] = 0.0f;
    }
    for (int h = 0; h < NH; h++) {
        ms[h] = NEG_SENTINEL;
        ls[h] = 0.0f;
    }
    const int j0 = c * chunk;
    const int j1 = min(ri.end, j0 + chunk);
    /* Keys go a block of KB at a time where none of them is masked, else one at a time up to
     * and including the masked key (a masked key's row is never read: it may hold anything,
     * NaN included). One call site each for heads_block and heads_key: PoCL 3.1 miscompiled
     * this kernel with heads_key called from two places (the second call was never made). */
#ifdef KB
    int solo = j0; /* keys before `solo` go one at a time */
#endif
    for (int j = j0; j < j1;) {
#ifdef KB
        if (j >= solo && j + KB <= j1) {
            int i = 0;
            while (i < KB && (!has_mask || mask[ri.m_base + (ulong)(j + i) * m_ss] != 0)) {
                i++;
            }
            if (i == KB) {
                /* this block's rows, and where it prefetches the next block's (the chunk's last
                 * key's past its end) */
                __global const KV_T *kr[2 * KB], *vr[2 * KB];
                for (int u = 0; u < (PREFETCH_ON ? 2 : 1) * KB; u++) {
                    const int ju = min(j + u, j1 - 1);
                    kr[u] = key_row(k, ri.k_base, ri.k_step, kn, b * kn_bstride, new_lo, new_hi,
                                    (ulong)ju);
                    vr[u] = key_row(v, ri.v_base, ri.v_step, vn, b * vn_bstride, new_lo, new_hi,
                                    (ulong)ju);
                }
                heads_block(qs, accs, ms, ls, kr, vr, PREFETCH_ON ? kr + KB : 0,
                            PREFETCH_ON ? vr + KB : 0);
                j += KB;
                continue;
            }
            solo = j + i + 1;
        }
#endif
        if (!has_mask || mask[ri.m_base + (ulong)j * m_ss] != 0) {
            heads_key(
                qs, accs, ms, ls,
                key_row(k, ri.k_base, ri.k_step, kn, b * kn_bstride, new_lo, new_hi, (ulong)j),
                key_row(v, ri.v_base, ri.v_step, vn, b * vn_bstride, new_lo, new_hi, (ulong)j));
        }
        j++;
    }
    for (int h = 0; h < NH; h++) {
        const ulong r = (b * (ulong)H + (ulong)h) * (ulong)T + (ulong)ri.t;
        const float l = ls[h];
        __global float *dst = nch == 1
                                  ? o + ((b * (ulong)T + (ulong)ri.t) * (ulong)H + (ulong)h) * DV
                                  : part + (r * (ulong)nch + (ulong)c) * (ulong)(DV + 2);
        const float inv = nch == 1 ? (l > 0.0f ? 1.0f / l : 0.0f) : 1.0f;
        const int at = nch == 1 ? 0 : 2;
        for (int d = 0; d < DV; d++) {
            dst[at + d] = accs[h * DV + d] * inv;
        }
        if (nch > 1) {
            dst[0] = ms[h];
            dst[1] = l;
        }
    }
}

/* ---- Tiled attention for CPUs (query tiles, no probabilities, no dropout) ----
 *
 * attention_tile: one work-item (a work-group of 1) takes TQ consecutive query rows of one
 * (batch, head) and streams the keys and values once for all of them, each row keeping its own
 * online softmax and output in private memory and its scaled query in local memory (plain
 * memory on a CPU; private arrays past 4 KiB are what Mesa's llvmpipe miscompiles): each key
 * and value row is read once per tile instead of once per query row. Masks, the causal rule and
 * key_lengths apply per row; keys past the last row's end are never read. Work-group g takes
 * chunk c = g % nch of the keys, [c * chunk, (c + 1) * chunk), of tile g / nch: with nch == 1 the
 * rows are finished here, else each row's (m, l, acc) go to part as attention_split's do. Used
 * for T >= 2 on CPU devices, where private memory is plain memory. */
#ifndef TQ
#define TQ 4
#endif

__kernel void attention_tile(ATTENTION_ARGS, __global float *part, int nch, int chunk) {
    const ulong gc = get_group_id(0);
    const ulong g = gc / (ulong)nch;
    const int c = (int)(gc - g * (ulong)nch);
    const int j0 = c * chunk;
    const ulong ntile = ((ulong)T + TQ - 1) / TQ;
    const ulong bh = g / ntile;
    const int t0 = (int)(g - bh * ntile) * TQ;
    const int nrows = min(TQ, T - t0);
    __local float qv[TQ][DK];
    row_info ri[TQ];
    float acc[TQ][DV], m[TQ], l[TQ];
    int jmax = 0;
    for (int u = 0; u < nrows; u++) {
        ri[u] =
            row_setup(bh * (ulong)T + (ulong)(t0 + u), T, H, S, k_off, k_bstride, v_off, v_bstride,
                      m_off, m_sb, m_sh, m_st, causal, causal_base, lens, lens_off, has_lens);
        const ulong q_row =
            q_off + ((ri[u].b * (ulong)T + (ulong)ri[u].t) * (ulong)H + (ulong)ri[u].h) * DK;
        for (int d = 0; d < DK; d++) {
            qv[u][d] = q[q_row + d] * scale;
        }
        for (int d = 0; d < DV; d++) {
            acc[u][d] = 0.0f;
        }
        m[u] = NEG_SENTINEL;
        l[u] = 0.0f;
        ri[u].end = min(ri[u].end, j0 + chunk); /* this chunk's keys only */
        jmax = max(jmax, ri[u].end);
    }
    const ulong b = ri[0].b;
    const int h = ri[0].h;
    /* A row takes a block of KB keys in one step where all of them are before its end and
     * unmasked (every row of a tile but those on the causal diagonal, without a mask), else
     * key by key; one call site each (see attention_heads). The key and value rows of the
     * keys in hand are found once for all rows. */
#ifdef KB
#define TILE_KEYS KB
#else
#define TILE_KEYS 1
#endif
    for (int j = j0; j < jmax;) {
        const int n = j + TILE_KEYS <= jmax ? TILE_KEYS : 1;
        __global const KV_T *kb[TILE_KEYS], *vb[TILE_KEYS];
        for (int z = 0; z < n; z++) {
            kb[z] = key_row(k, ri[0].k_base, ri[0].k_step, kn, b * kn_bstride + (ulong)h * KROW,
                            new_lo, new_hi, (ulong)(j + z));
            vb[z] = key_row(v, ri[0].v_base, ri[0].v_step, vn, b * vn_bstride + (ulong)h * VROW,
                            new_lo, new_hi, (ulong)(j + z));
        }
        for (int u = 0; u < nrows; u++) {
            for (int i = 0; i < n; i++) {
                const int jj = j + i;
#ifdef KB
                bool whole = n == KB && i == 0 && j + KB <= ri[u].end;
                for (int z = 0; z < KB && whole && has_mask; z++) {
                    whole = mask[ri[u].m_base + (ulong)(j + z) * m_ss] != 0;
                }
                if (whole) {
                    float16 a[DV / 16];
                    for (int e = 0; e < DV / 16; e++) {
                        a[e] = vload16(e, acc[u]);
                    }
                    block_step(qv[u], a, &m[u], &l[u], kb, vb, 0, 0, 0, 0);
                    for (int e = 0; e < DV / 16; e++) {
                        vstore16(a[e], e, acc[u]);
                    }
                    break;
                }
#endif
                if (jj >= ri[u].end || (has_mask && mask[ri[u].m_base + (ulong)jj * m_ss] == 0)) {
                    continue;
                }
                add_value(acc[u], online_step(dot_qk(qv[u], kb[i]), &m[u], &l[u], acc[u]), vb[i]);
            }
        }
        j += n;
    }
    for (int u = 0; u < nrows; u++) {
        if (nch == 1) {
            write_row(o + ((ri[u].b * (ulong)T + (ulong)ri[u].t) * (ulong)H + (ulong)ri[u].h) * DV,
                      acc[u], l[u]);
            continue;
        }
        const ulong r = bh * (ulong)T + (ulong)(t0 + u);
        __global float *dst = part + (r * (ulong)nch + (ulong)c) * (DV + 2);
        dst[0] = m[u];
        dst[1] = l[u];
        for (int d = 0; d < DV; d++) {
            dst[2 + d] = acc[u][d];
        }
    }
}
