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

/* gemm_bias4: C[m, n] = bias[n] (or 0) + sum_k A[m, k] * B[k, n] with four consecutive columns
 * per work-item (n a multiple of 4), read as float4: a quarter of the work-items, each element
 * of A read once per four outputs, and the bias added here, so the projection is one launch.
 * The projections of few rows (decode steps) use it. */
__kernel void gemm_bias4(__global const float *a, ulong a_off, __global const float *b,
                         __global float *c, ulong c_off, ulong m, ulong n, ulong k,
                         __global const float *bias, int has_bias) {
    const ulong gid = get_global_id(0);
    const ulong n4 = n / 4;
    if (gid >= m * n4) {
        return;
    }
    const ulong row = gid / n4;
    const ulong col = (gid - row * n4) * 4;
    __global const float *ar = a + a_off + row * k;
    float4 acc = (float4)(0.0f);
    for (ulong i = 0; i < k; i++) {
        acc = fma((float4)(ar[i]), vload4(0, b + i * n + col), acc);
    }
    const float4 b0 = has_bias ? vload4(0, bias + col) : (float4)(0.0f);
    vstore4(b0 + acc, 0, c + c_off + row * n + col);
}

/* gemm_qkv4: the query, key and value projections of one input (self-attention) in one launch:
 * the columns [0, nq) are x . wq + bq into yq, [nq, nq + nk) x . wk + bk into yk and the rest
 * x . wv + bv into yv, four columns a work-item as gemm_bias4 (nq, nk, nv multiples of 4). */
__kernel void gemm_qkv4(__global const float *a, ulong a_off, ulong m, ulong k,
                        __global const float *wq, __global const float *wk,
                        __global const float *wv, __global const float *bq,
                        __global const float *bk, __global const float *bv, int has_bias,
                        __global float *yq, __global float *yk, __global float *yv, ulong nq,
                        ulong nk, ulong nv) {
    const ulong gid = get_global_id(0);
    const ulong n4 = (nq + nk + nv) / 4;
    if (gid >= m * n4) {
        return;
    }
    const ulong row = gid / n4;
    ulong col = (gid - row * n4) * 4;
    __global const float *w = wq;
    __global const float *bias = bq;
    __global float *y = yq;
    ulong n = nq;
    if (col >= nq + nk) {
        w = wv, bias = bv, y = yv, n = nv, col -= nq + nk;
    } else if (col >= nq) {
        w = wk, bias = bk, y = yk, n = nk, col -= nq;
    }
    __global const float *ar = a + a_off + row * k;
    float4 acc = (float4)(0.0f);
    for (ulong i = 0; i < k; i++) {
        acc = fma((float4)(ar[i]), vload4(0, w + i * n + col), acc);
    }
    const float4 b0 = has_bias ? vload4(0, bias + col) : (float4)(0.0f);
    vstore4(b0 + acc, 0, y + row * n + col);
}
