/*
 * attention.cl - masked scaled dot-product attention over one query row per work-group,
 * exactly as Keras's MultiHeadAttention computes it (SPEC.md steps 3-6, without dropout):
 *   s_j = (q * 1/sqrt(dk)) . k_j;  masked j excluded;  p_j = exp(s_j - max) / sum;
 *   o = sum_j p_j v_j.
 * A fully masked row gives p = 0 and o = 0, never NaN (Keras's explicit path: the masked
 * scores become -1e9, the softmax is taken, then masked probabilities are zeroed).
 *
 * Pass 1 keeps an online (max, sum) per work-item over a strided share of the keys and
 * reduces them in local memory; pass 2 recomputes the scores a tile of WG keys at a time,
 * writes the probabilities when asked, and accumulates p x V with each work-item owning
 * output dims lid, lid + WG, ... No (B, H, T, S) scratch is materialised.
 *
 * Specialisation: DK (key head dim), DV (value head dim), WG (work-group size, a power of
 * two), KV_HALF (keys and values, cached and new, are IEEE half: read with vload_half, the
 * core OpenCL 1.2 conversion, no cl_khr_fp16 needed). Defaults make the file compile on its
 * own. float accumulation throughout; a finite
 * sentinel (-FLT_MAX) for the running maximum; no fast-math.
 */
#ifndef DK
#define DK 64
#endif
#ifndef DV
#define DV DK
#endif
#ifndef WG
#define WG 64
#endif
#define NDV ((DV + WG - 1) / WG)
#ifdef KV_HALF
#define KV_T half
#define LOAD_KV(i, p) vload_half((i), (p))
#define LOAD_KV4(i, p) vload_half4((i), (p))
#define LOAD_KV16(i, p) vload_half16((i), (p))
#else
#define KV_T float
#define LOAD_KV(i, p) ((p)[i])
#define LOAD_KV4(i, p) vload4((i), (p))
#define LOAD_KV16(i, p) vload16((i), (p))
#endif
#define NEG_SENTINEL (-FLT_MAX)

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

/* The scaled query row (in local memory) dotted with a key row: sixteen or four lanes of fma
 * when DK allows (sixteen: one AVX-512 register on CPUs, a quarter of the instructions of
 * four), summed pairwise at the end; float accumulation either way. */
static float dot_qk(__local const float *qs, __global const KV_T *kr) {
#if DK % 16 == 0
    float16 acc = (float16)(0.0f);
    for (int d = 0; d < DK; d += 16) {
        acc = fma(vload16(0, qs + d), LOAD_KV16(0, kr + d), acc);
    }
    const float8 a8 = acc.lo + acc.hi;
    const float4 a4 = a8.lo + a8.hi;
    return (a4.x + a4.y) + (a4.z + a4.w);
#elif DK % 4 == 0
    float4 acc = (float4)(0.0f);
    for (int d = 0; d < DK; d += 4) {
        acc = fma(vload4(0, qs + d), LOAD_KV4(0, kr + d), acc);
    }
    return (acc.x + acc.y) + (acc.z + acc.w);
#else
    float s = 0.0f;
    for (int d = 0; d < DK; d++) {
        s = fma(qs[d], LOAD_KV(d, kr), s);
    }
    return s;
#endif
}

/* Row j of keys (or values): from the new rows when j is in [new_lo, new_hi), else from the
 * cache or projection buffer. Both have the same row stride (H * DK or H * DV). */
static __global const KV_T *key_row(__global const KV_T *base, ulong base_off, ulong step,
                                    __global const KV_T *fresh, ulong fresh_off, ulong new_lo,
                                    ulong new_hi, ulong j) {
    return (j >= new_lo && j < new_hi) ? fresh + fresh_off + (j - new_lo) * step
                                       : base + base_off + j * step;
}

/* Where query row r = (b * H + h) * T + t reads: its batch, head and position, the start of
 * its keys, values and mask bytes, and `end`, the first key the causal rule and the sequence's
 * length exclude (the loops stop there: those keys are never read). */
typedef struct row_info {
    ulong b, k_base, v_base, k_step, v_step, m_base;
    int h, t, end;
} row_info;

static row_info row_setup(ulong r, int T, int H, int S, ulong k_off, ulong k_bstride, ulong v_off,
                          ulong v_bstride, ulong m_off, ulong m_sb, ulong m_st, int causal,
                          long causal_base, __global const int *lens, ulong lens_off,
                          int has_lens) {
    row_info ri;
    /* Remainders as x - q * d rather than %: LLVM pairs a / and a % of the same operands with
     * a `freeze`, which Oclgrind's uninitialised-value checker cannot follow. */
    const ulong rt = r / (ulong)T;
    ri.t = (int)(r - rt * (ulong)T);
    ri.b = rt / (ulong)H;
    ri.h = (int)(rt - ri.b * (ulong)H);
    ri.k_base = k_off + ri.b * k_bstride + (ulong)ri.h * DK;
    ri.v_base = v_off + ri.b * v_bstride + (ulong)ri.h * DV;
    ri.k_step = (ulong)H * DK;
    ri.v_step = (ulong)H * DV;
    ri.m_base = m_off + ri.b * m_sb + (ulong)ri.t * m_st;
    const long last = causal_base + (long)ri.t;
    ri.end = !causal ? S : last < 0 ? 0 : last >= (long)S ? S : (int)last + 1;
    if (has_lens) {
        ri.end = min(ri.end, clamp(lens[lens_off + ri.b], 0, S));
    }
    return ri;
}

/* The row's query, scaled by 1/sqrt(dk), into local memory by the work-group's `stride`
 * work-items; returns after the barrier. */
static void load_query(__local float *qs, __global const float *q, ulong q_off, const row_info *ri,
                       int T, int H, float scale, int lid, int stride) {
    const ulong q_row = q_off + ((ri->b * (ulong)T + (ulong)ri->t) * (ulong)H + (ulong)ri->h) * DK;
    for (int d = lid; d < DK; d += stride) {
        qs[d] = q[q_row + d] * scale;
    }
    barrier(CLK_LOCAL_MEM_FENCE);
}

/* One key's step of a row's online softmax, for an output acc (DV floats) in private or
 * local memory (AS): when score s raises the running maximum *m, the sum *l and acc are
 * rescaled to it. Returns the key's weight e^(s - m), already added to *l, for the caller to
 * add times its value row (ADD_VALUE: acc += w * value row). */
#define DEFINE_ONLINE_STEP(NAME, ADD_NAME, AS)                                                     \
    static float NAME(float s, float *m, float *l, AS float *acc) {                                \
        float w = 1.0f;                                                                            \
        if (s > *m) {                                                                              \
            const float f = exp(*m - s); /* 0 for the first key (m is the sentinel) */             \
            *l *= f;                                                                               \
            for (int d = 0; d < DV; d++) {                                                         \
                acc[d] *= f;                                                                       \
            }                                                                                      \
            *m = s;                                                                                \
        } else {                                                                                   \
            w = exp(s - *m);                                                                       \
        }                                                                                          \
        *l += w;                                                                                   \
        return w;                                                                                  \
    }                                                                                              \
    static void ADD_NAME(AS float *acc, float w, __global const KV_T *vr) {                        \
        ADD_VALUE_BODY                                                                             \
    }
#if DV % 16 == 0
#define ADD_VALUE_BODY                                                                             \
    for (int d = 0; d < DV; d += 16) {                                                             \
        vstore16(fma((float16)(w), LOAD_KV16(0, vr + d), vload16(0, acc + d)), 0, acc + d);        \
    }
#elif DV % 4 == 0
#define ADD_VALUE_BODY                                                                             \
    for (int d = 0; d < DV; d += 4) {                                                              \
        vstore4(fma((float4)(w), LOAD_KV4(0, vr + d), vload4(0, acc + d)), 0, acc + d);            \
    }
#else
#define ADD_VALUE_BODY                                                                             \
    for (int d = 0; d < DV; d++) {                                                                 \
        acc[d] = fma(w, LOAD_KV(d, vr), acc[d]);                                                   \
    }
#endif
DEFINE_ONLINE_STEP(online_step, add_value, )
DEFINE_ONLINE_STEP(online_step_local, add_value_local, __local)

/* ---- Keys sixteen at a time (CPUs' kernels: attention_heads, attention_tile) ----
 *
 * Taken one at a time, each key costs a scalar exp, a branch on the running maximum and a
 * horizontal sum of the dot product's lanes besides the two 16-lane fma streams that do the
 * work. block_step takes KB = 16 keys, none of them masked, for one query row: their sixteen
 * 16-lane dot products are folded into one vector of scores (the fold_* rounds), the running
 * maximum moves once a block and one vector exp gives the sixteen weights. Where the head dims
 * are multiples of 16; KEY_BLOCK=0 leaves it out. */
#ifndef KEY_BLOCK
#define KEY_BLOCK 1
#endif
#if DK % 16 == 0 && DV % 16 == 0 && KEY_BLOCK
#define KB 16

/* The fold of sixteen vectors of sixteen partial sums (one vector a key) into one vector of
 * the sixteen totals, in four rounds that each halve the vectors: a round takes two vectors, two
 * lane shuffles gather the partners to add and one add sums them. The shuffles move 256-bit,
 * then 128-bit halves, then interleave lanes within 128 bits, so each is one instruction on
 * AVX-512 (vshuff64x2, vshuff32x4, vunpcklps / vunpckhps). The even-and-odd-lanes fold used
 * before was turned by PoCL's LLVM into 256-bit horizontal adds, extracts and permutes, the
 * largest cost of the attention after its fmas. The totals come out in the lane order
 * FOLD_ORDER gives: lane i holds the key placed in slot FOLD_ORDER[i], so block_step places
 * key FOLD_ORDER[i] in slot i (the order is its own inverse). */
#define FOLD_ORDER {0, 4, 8, 12, 2, 6, 10, 14, 1, 5, 9, 13, 3, 7, 11, 15}
static float16 fold_halves(float16 a, float16 b) {
    return (float16)(a.lo, b.lo) + (float16)(a.hi, b.hi);
}
static float16 fold_quarters(float16 a, float16 b) {
    return (float16)(a.s0123, a.s89ab, b.s0123, b.s89ab) +
           (float16)(a.s4567, a.scdef, b.s4567, b.scdef);
}
static float16 fold_interleave(float16 a, float16 b) {
    return (float16)(a.s0, b.s0, a.s1, b.s1, a.s4, b.s4, a.s5, b.s5, a.s8, b.s8, a.s9, b.s9,
                     a.sc, b.sc, a.sd, b.sd) +
           (float16)(a.s2, b.s2, a.s3, b.s3, a.s6, b.s6, a.s7, b.s7, a.sa, b.sa, a.sb, b.sb,
                     a.se, b.se, a.sf, b.sf);
}

/* One row's step over keys kr[i] + ko and values vr[i] + vo (i < KB): qh its scaled query (DK
 * floats), acc its unnormalised output (DV / 16 vectors), *m and *l its running maximum and
 * sum, rescaled when the block's largest score is above *m. Its loops are unrolled, so the
 * sixteen partial sums stay in registers (PoCL's LLVM left them rolled, the sums on the
 * stack). */
static void block_step(__local const float *qh, float16 *acc, float *m, float *l,
                       __global const KV_T *const *kr, __global const KV_T *const *vr, int ko,
                       int vo) {
    float16 qv[DK / 16];
    _Pragma("unroll") for (int e = 0; e < DK / 16; e++) {
        qv[e] = vload16(e, qh);
    }
    const int order[KB] = FOLD_ORDER;
    float16 t[KB];
    _Pragma("unroll") for (int i = 0; i < KB; i++) {
        float16 a = (float16)(0.0f);
        _Pragma("unroll") for (int e = 0; e < DK / 16; e++) {
            a = fma(qv[e], LOAD_KV16(e, kr[order[i]] + ko), a);
        }
        t[i] = a;
    }
    /* The four rounds written out: a loop whose trip count halves was left rolled, t[] on the
     * stack. */
    float16 t8[8], t4[4];
    _Pragma("unroll") for (int i = 0; i < 8; i++) {
        t8[i] = fold_halves(t[2 * i], t[2 * i + 1]);
    }
    _Pragma("unroll") for (int i = 0; i < 4; i++) {
        t4[i] = fold_quarters(t8[2 * i], t8[2 * i + 1]);
    }
    const float16 s = fold_interleave(fold_interleave(t4[0], t4[1]), fold_interleave(t4[2], t4[3]));
    const float8 m8 = fmax(s.lo, s.hi);
    const float4 m4 = fmax(m8.lo, m8.hi);
    const float bm = fmax(fmax(m4.x, m4.y), fmax(m4.z, m4.w));
    if (bm > *m) {
        const float f = exp(*m - bm); /* 0 for the first block (m is the sentinel) */
        *l *= f;
        _Pragma("unroll") for (int e = 0; e < DV / 16; e++) {
            acc[e] *= f;
        }
        *m = bm;
    }
    const float16 p = exp(s - *m);
    const float8 p8 = p.lo + p.hi;
    const float4 p4 = p8.lo + p8.hi;
    *l += (p4.x + p4.y) + (p4.z + p4.w);
    float w[KB];
    vstore16(p, 0, w);
    _Pragma("unroll") for (int i = 0; i < KB; i++) {
        _Pragma("unroll") for (int e = 0; e < DV / 16; e++) {
            acc[e] = fma((float16)(w[i]), LOAD_KV16(e, vr[i] + vo), acc[e]);
        }
    }
}
#endif

/* A finished row: o = acc / l, zeros when no key was attended (l = 0); a NaN sum gives NaN. */
static void write_row(__global float *o, const float *acc, float l) {
    const float inv = l > 0.0f ? 1.0f / l : 0.0f;
    for (int d = 0; d < DV; d++) {
        o[d] = acc[d] * inv;
    }
}

/* The arguments every attention kernel takes first (layouts above), kernel-specific ones after:
 * the host sets them from one list. */
#define ATTENTION_ARGS                                                                             \
    __global const float *q, ulong q_off, __global const KV_T *k, ulong k_off, ulong k_bstride,    \
        __global const KV_T *v, ulong v_off, ulong v_bstride, __global const uchar *mask,          \
        ulong m_off, ulong m_sb, ulong m_st, ulong m_ss, int has_mask, __global float *o, int T,   \
        int S, int H, float scale, __global const KV_T *kn, __global const KV_T *vn, ulong new_lo, \
        ulong new_hi, ulong kn_bstride, ulong vn_bstride, int causal, long causal_base,            \
        __global const int *lens, ulong lens_off, int has_lens

/* Layouts (elements; offsets are element offsets into the buffers):
 *   q    (B, T, H, DK) contiguous at q_off.
 *   k    row j of batch b, head h at k_off + b * kv_bstride_k + j * H * DK + h * DK.
 *   v    row j of batch b, head h at v_off + b * kv_bstride_v + j * H * DV + h * DV.
 *   mask byte for (b, t, j) at m_off + b * m_sb + t * m_st + j * m_ss (strides 0 broadcast).
 *   o    (B, T, H, DV) contiguous.
 *   p    (B, H, T, S) contiguous at p_off, written when has_p (before dropout, as Keras
 *        returns them).
 *   kn, vn  keys and values of positions new_lo .. new_hi - 1 (a cache update not yet spliced
 *        into the cache): row j at kn + b * kn_bstride + (j - new_lo) * H * DK + h * DK.
 *   causal  key j is allowed only when j <= causal_base + t (keras-hub's generation mask);
 *        keys past that are never read, so a long, mostly empty cache costs nothing.
 *   lens    with has_lens, key j of batch b is allowed only when j < lens[lens_off + b]
 *        (clamped to [0, S]); keys past it are never read either.
 * Work-group r handles b, h, t with r = (b * H + h) * T + t. With drop_rate > 0 (training),
 * each probability is kept with probability 1 - rate and scaled by 1 / (1 - rate). */
__kernel void attention_rows(ATTENTION_ARGS, __global float *p, ulong p_off, int has_p,
                             float drop_rate, uint drop_counter, uint seed_lo, uint seed_hi) {
    __local float qs[DK];
    __local float red[WG];
    __local float ps[WG];

    const int lid = (int)get_local_id(0);
    const row_info ri = row_setup(get_group_id(0), T, H, S, k_off, k_bstride, v_off, v_bstride,
                                  m_off, m_sb, m_st, causal, causal_base, lens, lens_off, has_lens);
    const ulong r = get_group_id(0), b = ri.b;
    const int h = ri.h, t = ri.t, end = ri.end;
    const ulong k_base = ri.k_base, v_base = ri.v_base, k_step = ri.k_step, v_step = ri.v_step;
    const ulong m_base = ri.m_base;
    load_query(qs, q, q_off, &ri, T, H, scale, lid, WG);

    /* Pass 1: online max and sum of exp over this work-item's keys. */
    float m = NEG_SENTINEL;
    float l = 0.0f;
    for (int j = lid; j < end; j += WG) {
        if (has_mask && mask[m_base + (ulong)j * m_ss] == 0) {
            continue;
        }
        __global const KV_T *kr = key_row(k, k_base, k_step, kn, b * kn_bstride + (ulong)h * DK,
                                          new_lo, new_hi, (ulong)j);
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
    const float row_max = red[0];
    barrier(CLK_LOCAL_MEM_FENCE);
    red[lid] = (l > 0.0f) ? l * exp(m - row_max) : 0.0f;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int w = WG / 2; w > 0; w >>= 1) {
        if (lid < w) {
            red[lid] += red[lid + w];
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    const float row_sum = red[0];
    /* Every key masked: row_sum is 0 and every probability is 0. */
    const float inv_sum = (row_sum > 0.0f) ? 1.0f / row_sum : 0.0f;

    /* Pass 2: probabilities a tile at a time, then p x V. */
    float acc[NDV];
    for (int i = 0; i < NDV; i++) {
        acc[i] = 0.0f;
    }
    const ulong p_row = p_off + r * (ulong)S;
    /* With probabilities requested all S are written (zeros past `end`); else stop there. The
     * bound is the same for the whole work-group, as the barriers inside need. */
    const int pass2_end = has_p ? S : end;
    for (int j0 = 0; j0 < pass2_end; j0 += WG) {
        const int j = j0 + lid;
        float pj = 0.0f;
        if (j < end && (!has_mask || mask[m_base + (ulong)j * m_ss] != 0)) {
            __global const KV_T *kr = key_row(k, k_base, k_step, kn, b * kn_bstride + (ulong)h * DK,
                                              new_lo, new_hi, (ulong)j);
            const float s = dot_qk(qs, kr);
            pj = exp(s - row_max) * inv_sum;
        }
        if (has_p && j < S) {
            p[p_row + (ulong)j] = pj;
        }
        if (drop_rate > 0.0f && pj != 0.0f) {
            pj = dropout_keep(r, j, drop_counter, (uint2)(seed_lo, seed_hi), drop_rate)
                     ? pj / (1.0f - drop_rate)
                     : 0.0f;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        ps[lid] = pj;
        barrier(CLK_LOCAL_MEM_FENCE);
        const int n = min(WG, end - j0);
        for (int jj = 0; jj < n; jj++) {
            const float w = ps[jj];
            if (w != 0.0f) {
                __global const KV_T *vr =
                    key_row(v, v_base, v_step, vn, b * vn_bstride + (ulong)h * DV, new_lo, new_hi,
                            (ulong)(j0 + jj));
                for (int i = 0; i < NDV; i++) {
                    const int d = lid + i * WG;
                    if (d < DV) {
                        acc[i] = fma(w, LOAD_KV(d, vr), acc[i]);
                    }
                }
            }
        }
    }
    const ulong o_row = ((b * (ulong)T + (ulong)t) * (ulong)H + (ulong)h) * DV;
    for (int i = 0; i < NDV; i++) {
        const int d = lid + i * WG;
        if (d < DV) {
            o[o_row + d] = acc[i];
        }
    }
}

/* ---- Split attention (flash-decoding): no probabilities, no dropout ----
 *
 * attention_split: work-group g handles query row r = g / nch (r = (b * H + h) * T + t as
 * above) over the keys of chunk c = g % nch, [c * chunk, (c + 1) * chunk) cut at the causal end.
 * Its WGS work-items take the chunk's keys in turn, each keeping an online softmax (running
 * maximum m, sum l) and an unnormalised output acc = sum e^(s_j - m) v_j in private memory, and
 * reading every key and value once. The work-items' partials are combined in local memory. With
 * nch == 1 the row is finished here (o = acc / l, zeros when every key is masked); otherwise
 * the chunk's (m, l, acc) go to part[g * (DV + 2)] for merge.cl (attention_merge, or
 * gemm_tail). Chunks past the causal end read nothing. WGS (a power of two) is 1 on CPUs, where
 * one work-item streams its keys with vector loads, and up to 64 on GPUs. Layouts and arguments
 * as attention_rows. */
#ifndef WGS
#define WGS 1
#endif

__kernel void attention_split(ATTENTION_ARGS, __global float *part, int nch, int chunk) {
    __local float qs[DK];
    __local float red_m[WGS], red_l[WGS];
    __local float red_acc[WGS * DV];

    const int lid = (int)get_local_id(0);
    const ulong g = get_group_id(0);
    const ulong r = g / (ulong)nch;
    const int c = (int)(g - r * (ulong)nch);
    const row_info ri = row_setup(r, T, H, S, k_off, k_bstride, v_off, v_bstride, m_off, m_sb, m_st,
                                  causal, causal_base, lens, lens_off, has_lens);
    const ulong b = ri.b;
    const int h = ri.h, t = ri.t, end = ri.end;
    const ulong k_base = ri.k_base, v_base = ri.v_base, k_step = ri.k_step, v_step = ri.v_step;
    const ulong m_base = ri.m_base;
    load_query(qs, q, q_off, &ri, T, H, scale, lid, WGS);

    const int j0 = c * chunk;
    const int j1 = min(end, j0 + chunk);

    float m = NEG_SENTINEL;
    float l = 0.0f;
    float acc[DV];
    for (int d = 0; d < DV; d++) {
        acc[d] = 0.0f;
    }
    for (int j = j0 + lid; j < j1; j += WGS) {
        if (has_mask && mask[m_base + (ulong)j * m_ss] == 0) {
            continue;
        }
        __global const KV_T *kr = key_row(k, k_base, k_step, kn, b * kn_bstride + (ulong)h * DK,
                                          new_lo, new_hi, (ulong)j);
        __global const KV_T *vr = key_row(v, v_base, v_step, vn, b * vn_bstride + (ulong)h * DV,
                                          new_lo, new_hi, (ulong)j);
        add_value(acc, online_step(dot_qk(qs, kr), &m, &l, acc), vr);
    }

    /* Combine the work-items' partials: rescale each to the largest maximum. A work-item saw a
     * key iff its sum is not 0 (at least 1 then, or NaN from a NaN score, which must reach the
     * output as the single-work-item path lets it). */
    float mx = m, lt = l;
    if (WGS > 1) {
        red_m[lid] = m;
        red_l[lid] = l;
        for (int d = 0; d < DV; d++) {
            red_acc[lid * DV + d] = acc[d];
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        mx = NEG_SENTINEL;
        for (int i = 0; i < WGS; i++) {
            mx = fmax(mx, red_l[i] != 0.0f ? red_m[i] : NEG_SENTINEL);
        }
        lt = 0.0f;
        for (int i = 0; i < WGS; i++) {
            lt += red_l[i] != 0.0f ? red_l[i] * exp(red_m[i] - mx) : 0.0f;
        }
    }
    const ulong o_row = ((b * (ulong)T + (ulong)t) * (ulong)H + (ulong)h) * DV;
    __global float *dst = nch == 1 ? o + o_row : part + g * (ulong)(DV + 2);
    const float inv = nch == 1 ? (lt > 0.0f ? 1.0f / lt : 0.0f) : 1.0f;
    for (int d = lid; d < DV; d += WGS) {
        float x;
        if (WGS > 1) {
            x = 0.0f;
            for (int i = 0; i < WGS; i++) {
                x += red_l[i] != 0.0f ? red_acc[i * DV + d] * exp(red_m[i] - mx) : 0.0f;
            }
        } else {
            x = acc[d];
        }
        dst[(nch == 1 ? 0 : 2) + d] = x * inv;
    }
    if (nch > 1 && lid == 0) {
        dst[0] = mx;
        dst[1] = lt;
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
        const float s = dot_qk(qs + h * DK, kr + h * DK);
        add_value_local(accs + h * DV, online_step_local(s, &m, &l, accs + h * DV), vr + h * DV);
        ms[h] = m;
        ls[h] = l;
    }
}

#ifdef KB
/* Sixteen keys, none of them masked, for every head in turn. */
static void heads_block(__local const float *qs, __local float *accs, __local float *ms,
                        __local float *ls, __global const KV_T *const *kr,
                        __global const KV_T *const *vr) {
    for (int h = 0; h < NH; h++) {
        float m = ms[h], l = ls[h];
        float16 acc[DV / 16];
        for (int e = 0; e < DV / 16; e++) {
            acc[e] = vload16(e, accs + h * DV);
        }
        block_step(qs + h * DK, acc, &m, &l, kr, vr, h * DK, h * DV);
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
    const row_info ri =
        row_setup((b0 * (ulong)H) * (ulong)T + (ulong)t0, T, H, S, k_off, k_bstride, v_off,
                  v_bstride, m_off, m_sb, m_st, causal, causal_base, lens, lens_off, has_lens);
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
    int solo = j0; /* keys before `solo` go one at a time */
    for (int j = j0; j < j1;) {
#ifdef KB
        if (j >= solo && j + KB <= j1) {
            int i = 0;
            while (i < KB && (!has_mask || mask[ri.m_base + (ulong)(j + i) * m_ss] != 0)) {
                i++;
            }
            if (i == KB) {
                __global const KV_T *kr[KB], *vr[KB];
                for (int u = 0; u < KB; u++) {
                    kr[u] = key_row(k, ri.k_base, ri.k_step, kn, b * kn_bstride, new_lo, new_hi,
                                    (ulong)(j + u));
                    vr[u] = key_row(v, ri.v_base, ri.v_step, vn, b * vn_bstride, new_lo, new_hi,
                                    (ulong)(j + u));
                }
                heads_block(qs, accs, ms, ls, kr, vr);
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
        __global float *dst =
            nch == 1 ? o + ((b * (ulong)T + (ulong)ri.t) * (ulong)H + (ulong)h) * DV
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
 * and value row is read once per tile instead of once per query row. Masks, the causal rule and key_lengths apply per row; keys
 * past the last row's end are never read. Used for T >= 2 on CPU devices, where private memory
 * is plain memory; other devices take attention_split. */
#ifndef TQ
#define TQ 4
#endif

__kernel void attention_tile(ATTENTION_ARGS) {
    const ulong g = get_group_id(0);
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
                      m_off, m_sb, m_st, causal, causal_base, lens, lens_off, has_lens);
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
    for (int j = 0; j < jmax;) {
        const int n = j + TILE_KEYS <= jmax ? TILE_KEYS : 1;
        __global const KV_T *kb[TILE_KEYS], *vb[TILE_KEYS];
        for (int z = 0; z < n; z++) {
            kb[z] = key_row(k, ri[0].k_base, ri[0].k_step, kn, b * kn_bstride + (ulong)h * DK,
                            new_lo, new_hi, (ulong)(j + z));
            vb[z] = key_row(v, ri[0].v_base, ri[0].v_step, vn, b * vn_bstride + (ulong)h * DV,
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
                    block_step(qv[u], a, &m[u], &l[u], kb, vb, 0, 0);
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
        write_row(o + ((ri[u].b * (ulong)T + (ulong)ri[u].t) * (ulong)H + (ulong)ri[u].h) * DV,
                  acc[u], l[u]);
    }
}

/* ---- Tiled attention in local memory (GPUs: query tiles, key tiles) ----
 *
 * attention_qtile: a work-group of WGS work-items takes WGS consecutive query rows of one
 * (batch, head), one row per work-item, and walks the keys in tiles of KT: the group loads a
 * tile of keys and values into local memory together, then every work-item scores its row
 * against the tile with its own online softmax and output in private memory. Each key and value
 * is read from global memory once per WGS query rows. Keys past the tile's last row's end are
 * never read; masks, the causal rule and key_lengths apply per row. Used for T >= 2 where the
 * split kernel runs several work-items a group (GPUs). No probabilities, no dropout. */
#ifndef KT
#define KT 16
#endif

/* Rows j0 .. j0 + n - 1 of keys or values (dim floats each; arguments as key_row) into the
 * local tile, the work-group's WGS work-items taking the elements in turn. */
static void load_tile(__local float *tile, int dim, __global const KV_T *base, ulong base_off,
                      ulong step, __global const KV_T *fresh, ulong fresh_off, ulong new_lo,
                      ulong new_hi, int j0, int n, int lid) {
    for (int e = lid; e < n * dim; e += WGS) {
        const int jj = e / dim;
        __global const KV_T *row =
            key_row(base, base_off, step, fresh, fresh_off, new_lo, new_hi, (ulong)(j0 + jj));
        tile[e] = LOAD_KV(e - jj * dim, row);
    }
}

__kernel void attention_qtile(ATTENTION_ARGS) {
    __local float kt[KT * DK];
    __local float vt[KT * DV];
    const int lid = (int)get_local_id(0);
    const ulong g = get_group_id(0);
    const ulong ntile = ((ulong)T + WGS - 1) / WGS;
    const ulong bh = g / ntile;
    const int t0 = (int)(g - bh * ntile) * WGS;
    const int t = min(t0 + lid, T - 1); /* rows past T compute a copy of the last, unwritten */
    const bool mine = t0 + lid < T;
    const row_info ri =
        row_setup(bh * (ulong)T + (ulong)t, T, H, S, k_off, k_bstride, v_off, v_bstride, m_off,
                  m_sb, m_st, causal, causal_base, lens, lens_off, has_lens);
    /* The tile's last row ends last (the causal end grows with t; lengths are per batch). */
    const row_info rl =
        row_setup(bh * (ulong)T + (ulong)min(t0 + WGS - 1, T - 1), T, H, S, k_off, k_bstride, v_off,
                  v_bstride, m_off, m_sb, m_st, causal, causal_base, lens, lens_off, has_lens);
    const int jmax = rl.end;
    float qv[DK], acc[DV];
    const ulong q_row = q_off + ((ri.b * (ulong)T + (ulong)ri.t) * (ulong)H + (ulong)ri.h) * DK;
    for (int d = 0; d < DK; d++) {
        qv[d] = q[q_row + d] * scale;
    }
    for (int d = 0; d < DV; d++) {
        acc[d] = 0.0f;
    }
    float m = NEG_SENTINEL, l = 0.0f;
    for (int j0 = 0; j0 < jmax; j0 += KT) {
        const int n = min(KT, jmax - j0);
        barrier(CLK_LOCAL_MEM_FENCE); /* the previous tile is no longer read */
        load_tile(kt, DK, k, ri.k_base, ri.k_step, kn, ri.b * kn_bstride + (ulong)ri.h * DK,
                  new_lo, new_hi, j0, n, lid);
        load_tile(vt, DV, v, ri.v_base, ri.v_step, vn, ri.b * vn_bstride + (ulong)ri.h * DV,
                  new_lo, new_hi, j0, n, lid);
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int jj = 0; jj < n; jj++) {
            const int j = j0 + jj;
            if (j >= ri.end || (has_mask && mask[ri.m_base + (ulong)j * m_ss] == 0)) {
                continue;
            }
            float s = 0.0f;
            for (int d = 0; d < DK; d++) {
                s = fma(qv[d], kt[jj * DK + d], s);
            }
            const float w = online_step(s, &m, &l, acc);
            for (int d = 0; d < DV; d++) {
                acc[d] = fma(w, vt[jj * DV + d], acc[d]);
            }
        }
    }
    if (mine) {
        write_row(o + ((ri.b * (ulong)T + (ulong)ri.t) * (ulong)H + (ulong)ri.h) * DV, acc, l);
    }
}
