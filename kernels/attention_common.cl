/*
 * attention_common.cl - what every attention kernel shares: the specialisation (DK key head dim,
 * DV value head dim, KV_HALF: keys and values, cached and new, are IEEE half, read with
 * vload_half, the core OpenCL 1.2 conversion, no cl_khr_fp16 needed), the argument list and
 * layouts, finding a query row's keys, values, mask and causal end, and the online softmax.
 * Every attention program is this file joined with one kernel family: attention_rows.cl (the
 * probabilities and dropout), attention_cpu.cl (one work-item streams the keys) or
 * attention_gpu.cl (the head dims spread over work-items). Defaults make it compile on its own.
 *
 * The layer computes exactly Keras's MultiHeadAttention (SPEC.md steps 3-6):
 *   s_j = (q * 1/sqrt(dk)) . k_j;  masked j excluded;  p_j = exp(s_j - max) / sum;
 *   o = sum_j p_j v_j.
 * A fully masked row gives p = 0 and o = 0, never NaN (Keras's explicit path: the masked
 * scores become -1e9, the softmax is taken, then masked probabilities are zeroed). float
 * accumulation throughout; a finite sentinel (-FLT_MAX) for the running maximum; no fast-math.
 */
#ifndef DK
#define DK 64
#endif
#ifndef DV
#define DV DK
#endif
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

/* The scaled query row (in local memory) dotted with a key row: sixteen or four lanes of fma
 * when DK allows (sixteen, the default QK_VEC: one AVX-512 register on CPUs, a quarter of the
 * instructions of four; GPU builds take QK_VEC=4, whose loads in flight hold a quarter of the
 * registers), summed pairwise at the end; float accumulation either way. */
#ifndef QK_VEC
#define QK_VEC 16
#endif

__attribute__((unused)) static inline float dot_qk(__local const float *qs, __global const KV_T *kr) {
#if DK % 16 == 0 && QK_VEC >= 16
    float16 acc = (float16)(0.0f);
    for (int d = 0; d < DK; d += 16) {
        acc = fma(vload16(0, qs + d), LOAD_KV16(0, kr + d), acc);
    }
    const float8 a8 = acc.lo + acc.hi;
    const float4 a4 = a8.lo + a8.hi;
    return (a4.x + a4.y) + (a4.z + a4.w);
#elif DK % 4 == 0
    float4 acc = (float4)(0.0f);
#if QK_VEC < 16
    /* GPU builds: the loop left rolled (a whole long row unrolled holds registers a GPU lacks;
     * PoCL 3.1 miscompiled this kernel with partial unrolling here). */
    _Pragma("unroll 1") for (int d = 0; d < DK; d += 4) {
        acc = fma(vload4(0, qs + d), LOAD_KV4(0, kr + d), acc);
    }
#else
    for (int d = 0; d < DK; d += 4) {
        acc = fma(vload4(0, qs + d), LOAD_KV4(0, kr + d), acc);
    }
#endif
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
__attribute__((unused)) static inline __global const KV_T *key_row(__global const KV_T *base, ulong base_off, ulong step,
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

__attribute__((unused)) static inline row_info row_setup(ulong r, int T, int H, int S, ulong k_off, ulong k_bstride, ulong v_off,
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
__attribute__((unused)) static inline void load_query(__local float *qs, __global const float *q, ulong q_off, const row_info *ri,
                       int T, int H, float scale, int lid, int stride) {
    const ulong q_row = q_off + ((ri->b * (ulong)T + (ulong)ri->t) * (ulong)H + (ulong)ri->h) * DK;
    for (int d = lid; d < DK; d += stride) {
        qs[d] = q[q_row + d] * scale;
    }
    barrier(CLK_LOCAL_MEM_FENCE);
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
 * A query row r is (b, h, t) with r = (b * H + h) * T + t. */
