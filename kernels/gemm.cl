/*
 * gemm.cl - clmha's own matrix products (row-major, element offsets, float accumulation with
 * fma). gemm_bias4 and gemm_qkv4 (one projection, or self-attention's three in one launch, the
 * bias added in the same launch) take the products of few rows everywhere (decode steps, where
 * CLBlast's fixed cost dominates) and, built with GR rows a work-item, the products of many rows
 * on CPUs, where they outrun CLBlast; gemm_acc is the scalar fallback for widths that are not a
 * multiple of 4, and every kernel here stands in for CLBlast where it cannot run (a device whose
 * work-group or local-memory limits are below what CLBlast's kernels need, as on small mobile
 * GPUs) or where the setting gemm=own asks for it. gemm_tail (tail.cl) is built on the same row loop (gemm_rows.clh).
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

#include "gemm_rows.clh"

DEFINE_GEMM_ROWS(gemm_rows, __global)

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
