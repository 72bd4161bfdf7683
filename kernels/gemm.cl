/*
 * gemm.cl - clmha's own matrix product, the fallback where CLBlast cannot run (a device whose
 * work-group or local-memory limits are below what CLBlast's kernels need, as on small mobile
 * GPUs) or where CLMHA_GEMM=own asks for it: C[m, n] += sum_k A[m, k] * B[k, n], row-major,
 * element offsets. One work-item per output element, any work-group size; consecutive
 * work-items take consecutive n, so reads of B and writes of C are coalesced. float
 * accumulation with fma.
 */
__kernel void gemm_acc(__global const float *a, ulong a_off, __global const float *b,
                       __global float *c, ulong c_off, ulong m, ulong n, ulong k) {
    const ulong gid = get_global_id(0);
    if (gid >= m * n) {
        return;
    }
    const ulong row = gid / n;
    const ulong col = gid - row * n;
    __global const float *ar = a + a_off + row * k;
    float acc = 0.0f;
    for (ulong i = 0; i < k; i++) {
        acc = fma(ar[i], b[i * n + col], acc);
    }
    c[c_off + gid] += acc;
}

/* GC: output columns a work-item of gemm_bias4 and gemm_qkv4 takes, 4 (float4 reads) or a
 * multiple of 16 (float16 reads). On CPUs clmha builds them with 32 as well: a work-item then
 * reads two whole cache lines of each weight row it passes, which a CPU streams at several
 * times the rate of 16 bytes a row (a plain C loop on PoCL's machine: 4 columns 8 GB/s, 32
 * columns 30 GB/s on one core). */
#ifndef GC
#define GC 4
#endif
#if GC == 4
#define GV 4
#define GVT float4
#define GLOAD vload4
#define GSTORE vstore4
#else
#define GV 16
#define GVT float16
#define GLOAD vload16
#define GSTORE vstore16
#endif
#define GN (GC / GV)

#if GC == 4
#define GSTORE_HALF vstore_half4
#else
#define GSTORE_HALF vstore_half16
#endif

/* y[row, col .. col + GC) = bias (or 0) + ar . w[:, col .. col + GC) (w row-major, n columns),
 * and the same rounded to half into yh where yh is not null (keys and values for a half cache:
 * vstore_half rounds to nearest even, as to_half does). One body for input rows in global
 * memory (gemm_cols) and in local memory (gemm_cols_local, gemm_tail's merged rows). */
#define DEFINE_GEMM_COLS(NAME, SPACE)                                                           \
    static void NAME(SPACE const float *ar, ulong k, __global const float *w, ulong n,          \
                     ulong col, __global const float *bias, int has_bias, __global float *y,    \
                     __global half *yh) {                                                       \
        GVT acc[GN];                                                                            \
        for (int v = 0; v < GN; v++) {                                                          \
            acc[v] = (GVT)(0.0f);                                                               \
        }                                                                                       \
        for (ulong i = 0; i < k; i++) {                                                         \
            const GVT a = (GVT)(ar[i]);                                                         \
            for (int v = 0; v < GN; v++) {                                                      \
                acc[v] = fma(a, GLOAD(0, w + i * n + col + (ulong)(v * GV)), acc[v]);           \
            }                                                                                   \
        }                                                                                       \
        for (int v = 0; v < GN; v++) {                                                          \
            const ulong at = col + (ulong)(v * GV);                                             \
            const GVT sum = (has_bias ? GLOAD(0, bias + at) : (GVT)(0.0f)) + acc[v];            \
            GSTORE(sum, 0, y + at);                                                             \
            if (yh != 0) {                                                                      \
                GSTORE_HALF(sum, 0, yh + at);                                                   \
            }                                                                                   \
        }                                                                                       \
    }
DEFINE_GEMM_COLS(gemm_cols, __global)
#ifdef TAIL
DEFINE_GEMM_COLS(gemm_cols_local, __local)
#endif

/* gemm_bias4: C[m, n] = bias[n] (or 0) + sum_k A[m, k] * B[k, n] with GC consecutive columns
 * per work-item (n a multiple of GC), read as vectors: each element of A read once per GC
 * outputs, and the bias added here, so the projection is one launch. The projections of few
 * rows (decode steps) use it. */
__kernel void gemm_bias4(__global const float *a, ulong a_off, __global const float *b,
                         __global float *c, ulong c_off, ulong m, ulong n, ulong k,
                         __global const float *bias, int has_bias) {
    const ulong gid = get_global_id(0);
    const ulong nb = n / GC;
    if (gid >= m * nb) {
        return;
    }
    const ulong row = gid / nb;
    const ulong col = (gid - row * nb) * GC;
    gemm_cols(a + a_off + row * k, k, b, n, col, bias, has_bias, c + c_off + row * n, 0);
}

/* gemm_qkv4: the query, key and value projections of one input (self-attention) in one launch:
 * the columns [0, nq) are x . wq + bq into yq, [nq, nq + nk) x . wk + bk into yk and the rest
 * x . wv + bv into yv, GC columns a work-item as gemm_bias4 (nq, nk, nv multiples of GC). Where
 * ykh and yvh are not null (a half cache), the keys and values are also rounded to half there,
 * which saves the to_half launch. */
__kernel void gemm_qkv4(__global const float *a, ulong a_off, ulong m, ulong k,
                        __global const float *wq, __global const float *wk,
                        __global const float *wv, __global const float *bq,
                        __global const float *bk, __global const float *bv, int has_bias,
                        __global float *yq, __global float *yk, __global float *yv,
                        __global half *ykh, __global half *yvh, ulong nq, ulong nk, ulong nv) {
    const ulong gid = get_global_id(0);
    const ulong nb = (nq + nk + nv) / GC;
    if (gid >= m * nb) {
        return;
    }
    const ulong row = gid / nb;
    ulong col = (gid - row * nb) * GC;
    __global const float *w = wq;
    __global const float *bias = bq;
    __global float *y = yq;
    __global half *yh = 0;
    ulong n = nq;
    if (col >= nq + nk) {
        w = wv, bias = bv, y = yv, yh = yvh, n = nv, col -= nq + nk;
    } else if (col >= nq) {
        w = wk, bias = bk, y = yk, yh = ykh, n = nk, col -= nq;
    }
    gemm_cols(a + a_off + row * k, k, w, n, col, bias, has_bias, y + row * n,
              yh != 0 ? yh + row * n : 0);
}
