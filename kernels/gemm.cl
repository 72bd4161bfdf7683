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
