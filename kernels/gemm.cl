/*
 * gemm.cl - clmha's own matrix products (row-major, element offsets, float accumulation with
 * fma). gemm_bias4 and gemm_qkv4 (one projection, or self-attention's three in one launch, the
 * bias added in the same launch) take the products of few rows everywhere (decode steps, where
 * CLBlast's fixed cost dominates) and, built with GR rows a work-item, the products of many rows
 * on CPUs, where they outrun CLBlast; gemm_acc is the scalar fallback for widths that are not a
 * multiple of 4, and every kernel here stands in for CLBlast where it cannot run (a device whose
 * work-group or local-memory limits are below what CLBlast's kernels need, as on small mobile
 * GPUs) or where the setting gemm=own asks for it. gemm_tail (splice.cl) is built on these helpers.
 *
 * gemm_acc: C[m, n] += sum_{k0 <= i < k0 + kn} A[m, i] * B[i, n] (A's rows k apart), one
 * work-item per output element, any work-group size; consecutive work-items take consecutive n,
 * so reads of B and writes of C are coalesced. The host launches it once per slice of the input
 * width where a work-item looping over the whole width would pass the device's loop budget
 * (split-K over launches: the queue's order makes the sums add up slice after slice).
 */
__kernel void gemm_acc(__global const float *a, ulong a_off, __global const float *b,
                       __global float *c, ulong c_off, ulong m, ulong n, ulong k, ulong k0,
                       ulong kn) {
    const ulong gid = get_global_id(0);
    if (gid >= m * n) {
        return;
    }
    const ulong row = gid / n;
    const ulong col = gid - row * n;
    __global const float *ar = a + a_off + row * k;
    float acc = 0.0f;
    for (ulong i = k0; i < k0 + kn; i++) {
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

/* GR: rows a work-item of gemm_bias4 and gemm_qkv4 takes. 1 for products of few rows; on CPUs
 * clmha also builds them with GR = 12 and GC = 32 for products of many rows (prefill), where
 * each pair of weight vectors a work-item loads serves 12 rows from registers (24 float16
 * sums, of AVX-512's 32 registers), and with GR = 4, GC = 32 for batched decode steps. */
#ifndef GR
#define GR 1
#endif

#if GC == 4
#define GSTORE_HALF vstore_half4
#else
#define GSTORE_HALF vstore_half16
#endif

/* Rows [0, rows) (rows <= GR) of y (row stride n), and of yh where it is not null (keys and
 * values for a half cache: vstore_half rounds to nearest even, as to_half does):
 * y[r, col .. col + GC) = bias (or 0) + a[r] . w[:, col .. col + GC), w row-major with n
 * columns, a's rows k apart. The GR rows' sums stay in registers, so each weight vector is
 * loaded once for all of them; rows from `rows` on re-read the last row and are not stored.
 * The row loops are unrolled (PoCL's LLVM left a 24-row loop rolled, its sums in memory) and
 * each row has its own pointer, so a row's element is one broadcast operand of its fma: the
 * two took the prefill projections on PoCL from about 90 to 220 GFLOP/s.
 * One body for input rows in global memory (gemm_rows) and in local memory (gemm_rows_local,
 * gemm_tail's merged rows). */
#define DEFINE_GEMM_ROWS(NAME, SPACE)                                                           \
    static void NAME(SPACE const float *a, ulong k, ulong rows, __global const float *w,       \
                     ulong n, ulong col, __global const float *bias, int has_bias,              \
                     __global float *y, __global half *yh) {                                    \
        GVT acc[GR][GN];                                                                        \
        SPACE const float *ap[GR];                                                              \
        _Pragma("unroll") for (int r = 0; r < GR; r++) {                                      \
            ap[r] = a + min((ulong)r, rows - 1) * k;                                            \
            for (int v = 0; v < GN; v++) {                                                      \
                acc[r][v] = (GVT)(0.0f);                                                        \
            }                                                                                   \
        }                                                                                       \
        for (ulong i = 0; i < k; i++) {                                                         \
            GVT wv[GN];                                                                         \
            for (int v = 0; v < GN; v++) {                                                      \
                wv[v] = GLOAD(0, w + i * n + col + (ulong)(v * GV));                            \
            }                                                                                   \
            _Pragma("unroll") for (int r = 0; r < GR; r++) {                                  \
                const GVT x = (GVT)(ap[r][i]);                                                  \
                for (int v = 0; v < GN; v++) {                                                  \
                    acc[r][v] = fma(x, wv[v], acc[r][v]);                                       \
                }                                                                               \
            }                                                                                   \
        }                                                                                       \
        for (ulong r = 0; r < rows; r++) {                                                      \
            for (int v = 0; v < GN; v++) {                                                      \
                const ulong at = r * n + col + (ulong)(v * GV);                                 \
                const GVT sum = (has_bias ? GLOAD(0, bias + col + (ulong)(v * GV))              \
                                          : (GVT)(0.0f)) +                                      \
                                acc[r][v];                                                      \
                GSTORE(sum, 0, y + at);                                                         \
                if (yh != 0) {                                                                  \
                    GSTORE_HALF(sum, 0, yh + at);                                               \
                }                                                                               \
            }                                                                                   \
        }                                                                                       \
    }
DEFINE_GEMM_ROWS(gemm_rows, __global)
#ifdef TAIL
DEFINE_GEMM_ROWS(gemm_rows_local, __local)
#endif

/* gemm_bias4: C[m, n] = bias[n] (or 0) + sum_k A[m, k] * B[k, n] with GC consecutive columns of
 * GR rows per work-item (n a multiple of GC), read as vectors: each element of A read once per
 * GC outputs, each weight vector once per GR rows, and the bias added here, so the projection
 * is one launch. Consecutive work-items take consecutive row blocks of the same columns: a CPU
 * thread running them in turn finds that column panel of the weights (k rows of GC floats, n
 * floats apart: a stride its prefetchers do not follow) in its own caches after the first, and
 * streams the rows of A, which it does prefetch. */
__kernel void gemm_bias4(__global const float *a, ulong a_off, __global const float *b,
                         __global float *c, ulong c_off, ulong m, ulong n, ulong k,
                         __global const float *bias, int has_bias) {
    const ulong gid = get_global_id(0);
    const ulong nb = n / GC;
    if (gid >= (m + GR - 1) / GR * nb) {
        return;
    }
    const ulong nrb = (m + GR - 1) / GR;
    const ulong cb = gid / nrb;
    const ulong rb = gid - cb * nrb;
    const ulong col = cb * GC;
    const ulong row = rb * GR;
    gemm_rows(a + a_off + row * k, k, min((ulong)GR, m - row), b, n, col, bias, has_bias,
              c + c_off + row * n, 0);
}

/* gemm_qkv4: the query, key and value projections of one input (self-attention) in one launch:
 * the columns [0, nq) are x . wq + bq into yq, [nq, nq + nk) x . wk + bk into yk and the rest
 * x . wv + bv into yv, GC columns a work-item and work-items in the order of gemm_bias4 (nq,
 * nk, nv multiples of GC). Where
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
    if (gid >= (m + GR - 1) / GR * nb) {
        return;
    }
    const ulong nrb = (m + GR - 1) / GR;
    const ulong cb = gid / nrb;
    const ulong rb = gid - cb * nrb;
    ulong col = cb * GC;
    const ulong row = rb * GR;
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
    gemm_rows(a + a_off + row * k, k, min((ulong)GR, m - row), w, n, col, bias, has_bias,
              y + row * n, yh != 0 ? yh + row * n : 0);
}
