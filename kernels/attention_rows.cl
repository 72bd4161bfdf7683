/*
 * attention_rows.cl - attention with the probabilities and dropout (helpers in
 * attention_common.clh): one query row, or one chunk of a long row's keys, a work-group of WG
 * work-items (a power of two).
 *
 * Pass 1 keeps an online (max, sum) per work-item over a strided share of the keys and
 * reduces them in local memory; pass 2 recomputes the scores a tile of WG keys at a time,
 * writes the probabilities when asked, and accumulates p x V with each work-item owning
 * output dims lid, lid + WG, ... No (B, H, T, S) scratch is materialised. Row r is (b, h, t)
 * with r = (b * H + h) * T + t. With drop_rate > 0 (training), each probability is kept with
 * probability 1 - rate and scaled by 1 / (1 - rate). Rows longer than one work-item may loop
 * over (the host's item_keys) run in chunks: see the kernel's passes below.
 */
#include "attention_common.clh"

#ifndef WG
#define WG 64
#endif
#define NDV ((DV + WG - 1) / WG)

/* Philox4x32-10 (Salmon, Moraes, Dror, Shaw: "Parallel random numbers: as easy as 1, 2, 3",
 * SC'11): ten rounds of two 32x32->64 multiplies, with a Weyl-sequence key schedule. The same
 * generator as Random123's philox4x32 on the host, so dropout decisions are reproducible on
 * any device and checkable on the host. */
static uint4 philox4x32_10(uint4 ctr, uint2 key) {
    for (int i = 0; i < 10; i++) {
        const uint lo0 = 0xD2511F53u * ctr.x, hi0 = mul_hi(0xD2511F53u, ctr.x);
        const uint lo1 = 0xCD9E8D57u * ctr.z, hi1 = mul_hi(0xCD9E8D57u, ctr.z);
        ctr = (uint4)(hi1 ^ ctr.y ^ key.x, lo1, hi0 ^ ctr.w ^ key.y, lo0);
        key += (uint2)(0x9E3779B9u, 0xBB67AE85u);
    }
    return ctr;
}

/* Dropout keeps probability (row r, key j) of call `counter` when its uniform draw in [0, 1)
 * is at least the rate: counter (j, r_lo, r_hi, counter), key (seed_lo, seed_hi), first word. */
static bool dropout_keep(ulong r, int j, uint counter, uint2 seed, float rate) {
    const uint4 x = philox4x32_10((uint4)((uint)j, (uint)r, (uint)(r >> 32), counter), seed);
    return (float)x.x * 2.3283064365386963e-10f >= rate;
}

/*
 * pass 0 (nch == 1): the whole row, both passes, o written.
 * pass 1: chunk c's keys [c * chunk, (c + 1) * chunk): its maximum and sum of e^(s - max) to
 *   stats[(r * nch + c) * 2].
 * pass 2: the row's maximum M and sum L from every chunk's stats (merge.cl's rule), then chunk
 *   c's probabilities e^(s - M) / L (written, with zeros past the row's end, for the chunk's
 *   share of all S keys when has_p) and the chunk's (M, sum of e^(s - M), sum of e^(s - M) v,
 *   dropout applied) to part[(r * nch + c) * (DV + 2)] for attention_merge or gemm_tail, which
 *   give sum / L. Long rows thus never make one work-item loop over all their keys.
 * stats is part + stats_off. Work-group g is chunk g % nch of row g / nch.
 */
__kernel void attention_rows(ATTENTION_ARGS, __global float *p, ulong p_off, int has_p,
                             float drop_rate, uint drop_counter, uint seed_lo, uint seed_hi,
                             __global float *part, ulong stats_off, int nch, int chunk, int pass) {
    __local float qs[DK];
    __local float red[WG];
    __local float ps[WG];

    const int lid = (int)get_local_id(0);
    const ulong g = get_group_id(0);
    const ulong r = g / (ulong)nch;
    const int c = (int)(g - r * (ulong)nch);
    const row_info ri = row_setup(r, T, H, S, k_off, k_bstride, v_off, v_bstride, m_off, m_sb, m_sh, m_st,
                                  causal, causal_base, lens, lens_off, has_lens);
    const ulong b = ri.b;
    const int h = ri.h, t = ri.t, end = ri.end;
    const ulong k_base = ri.k_base, v_base = ri.v_base, k_step = ri.k_step, v_step = ri.v_step;
    const ulong m_base = ri.m_base;
    const int j0 = c * chunk;
    const int j1 = min(end, j0 + chunk); /* the chunk's keys before the row's end */
    __global float *stats = part + stats_off;
    load_query(qs, q, q_off, &ri, T, H, scale, lid, WG);

    float row_max = NEG_SENTINEL, row_sum = 0.0f;
    if (pass != 2) {
        /* Pass 1: online max and sum of exp over this work-item's keys of the chunk. */
        float m = NEG_SENTINEL;
        float l = 0.0f;
        for (int j = j0 + lid; j < j1; j += WG) {
            if (has_mask && mask[m_base + (ulong)j * m_ss] == 0) {
                continue;
            }
            __global const KV_T *kr = key_row(k, k_base, k_step, kn,
                                              b * kn_bstride + (ulong)h * KROW, new_lo, new_hi,
                                              (ulong)j);
            const float s = dot_qk(qs, kr);
            if (s > m) {
                l = l * exp(m - s) + 1.0f;
                m = s;
            } else {
                l += exp(s - m);
            }
        }
        red[lid] = m;
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int w = WG / 2; w > 0; w >>= 1) {
            if (lid < w) {
                red[lid] = fmax(red[lid], red[lid + w]);
            }
            barrier(CLK_LOCAL_MEM_FENCE);
        }
        row_max = red[0];
        barrier(CLK_LOCAL_MEM_FENCE);
        red[lid] = l != 0.0f ? l * exp(m - row_max) : 0.0f; /* NaN included */
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int w = WG / 2; w > 0; w >>= 1) {
            if (lid < w) {
                red[lid] += red[lid + w];
            }
            barrier(CLK_LOCAL_MEM_FENCE);
        }
        row_sum = red[0];
        if (pass == 1) {
            if (lid == 0) {
                stats[g * 2] = row_max;
                stats[g * 2 + 1] = row_sum;
            }
            return;
        }
    } else {
        /* The row's maximum and sum from its chunks' (as merge.cl: chunks that attended). */
        __global const float *st = stats + r * (ulong)nch * 2;
        for (int i = 0; i < nch; i++) {
            row_max = st[2 * i + 1] != 0.0f ? fmax(row_max, st[2 * i]) : row_max;
        }
        for (int i = 0; i < nch; i++) {
            row_sum = st[2 * i + 1] != 0.0f ? fma(st[2 * i + 1], exp(st[2 * i] - row_max), row_sum)
                                            : row_sum;
        }
    }
    /* Every key masked: row_sum is 0 and every probability is 0. A NaN score: row_sum is NaN,
     * and so is every unmasked key's probability, as in Keras. */
    const float inv_sum = row_sum > 0.0f ? 1.0f / row_sum : row_sum != row_sum ? NAN : 0.0f;

    /* Pass 2: probabilities a tile at a time, then p x V (in a chunk of several, the weights
     * e^(s - max) unnormalised, their sum kept in el). */
    float acc[NDV];
    for (int i = 0; i < NDV; i++) {
        acc[i] = 0.0f;
    }
    float el = 0.0f;
    const ulong p_row = p_off + r * (ulong)S;
    /* With probabilities requested all of the chunk's share of S is written (zeros past
     * `end`); else it stops there. The bound is the same for the whole work-group, as the
     * barriers inside need. */
    const int pass2_end = min(j0 + chunk, has_p ? S : end);
    for (int jt = j0; jt < pass2_end; jt += WG) {
        const int j = jt + lid;
        float pj = 0.0f, e = 0.0f;
        if (j < j1 && (!has_mask || mask[m_base + (ulong)j * m_ss] != 0)) {
            __global const KV_T *kr = key_row(k, k_base, k_step, kn, b * kn_bstride + (ulong)h * KROW,
                                              new_lo, new_hi, (ulong)j);
            const float s = dot_qk(qs, kr);
            e = exp(s - row_max);
            pj = e * inv_sum;
        }
        if (has_p && j < min(j0 + chunk, S)) {
            p[p_row + (ulong)j] = pj;
        }
        el += e;
        float w = pass == 2 ? e : pj;
        if (drop_rate > 0.0f && w != 0.0f) {
            w = dropout_keep(r, j, drop_counter, (uint2)(seed_lo, seed_hi), drop_rate)
                    ? w / (1.0f - drop_rate)
                    : 0.0f;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        ps[lid] = w;
        barrier(CLK_LOCAL_MEM_FENCE);
        const int n = min(WG, j1 - jt);
        for (int jj = 0; jj < n; jj++) {
            const float wj = ps[jj];
            if (wj != 0.0f) {
                __global const KV_T *vr =
                    key_row(v, v_base, v_step, vn, b * vn_bstride + (ulong)h * VROW, new_lo, new_hi,
                            (ulong)(jt + jj));
                const float wv = wj * VALUE_SCALE(vr); /* an int8 row's scale */
                for (int i = 0; i < NDV; i++) {
                    const int d = lid + i * WG;
                    if (d < DV) {
                        acc[i] = fma(wv, LOAD_KV(d, vr), acc[i]);
                    }
                }
            }
        }
    }
    if (pass == 0) {
        const ulong o_row = ((b * (ulong)T + (ulong)t) * (ulong)H + (ulong)h) * DV;
        for (int i = 0; i < NDV; i++) {
            const int d = lid + i * WG;
            if (d < DV) {
                o[o_row + d] = acc[i];
            }
        }
        return;
    }
    /* The chunk's partial for the merge: (M, its share of the sum, its unnormalised output). */
    barrier(CLK_LOCAL_MEM_FENCE);
    red[lid] = el;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int w = WG / 2; w > 0; w >>= 1) {
        if (lid < w) {
            red[lid] += red[lid + w];
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    __global float *dst = part + g * (ulong)(DV + 2);
    for (int i = 0; i < NDV; i++) {
        const int d = lid + i * WG;
        if (d < DV) {
            dst[2 + d] = acc[i];
        }
    }
    if (lid == 0) {
        dst[0] = row_max;
        dst[1] = red[0];
    }
}
