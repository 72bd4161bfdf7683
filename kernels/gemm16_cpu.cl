/*
 * gemm16_cpu.cl - gemm_w16w, the 16-bit dtype policies' product (gemm16.cl's gemm_w16) with
 * sixteen columns of RB rows a work-item, for the devices whose own GEMM takes 32 columns a
 * work-item (CPUs): kernels in panels of sixteen columns (np a multiple of 16), each panel's k
 * rows one after another, w[(c / 16 * k + r) * 16 + c % 16] (to16 with panel 16), so a
 * work-item streams one contiguous run. W_BF16 as in gemm16.cl.
 */
#include "gemm16.clh"

#ifndef RB
#define RB 1
#endif

/* gemm_w16w: y[r][c] = round(round(sum_k xr[r][k] w[k][c]) + bias[c]) over the rounded input
 * rows xr, as gemm_w16. */
__kernel void gemm_w16w(__global const float *x, ulong m, ulong k, __global const ushort *w,
                        ulong n, ulong np, __global const ushort *bias, int has_bias,
                        __global float *y, ulong y_off) {
    const ulong ncg = np / 16, gid = get_global_id(0);
    if (gid >= ncg * ((m + RB - 1) / RB)) {
        return;
    }
    const ulong c0 = (gid % ncg) * 16, r0 = (gid / ncg) * RB;
    float16 acc[RB];
    _Pragma("unroll") for (int i = 0; i < RB; i++) {
        acc[i] = (float16)(0.0f);
    }
    for (ulong kk = 0; kk < k; kk++) {
        const float16 wv = load16(w + (c0 / 16 * k + kk) * 16);
        _Pragma("unroll") for (int i = 0; i < RB; i++) {
            acc[i] = fma((float16)(x[min(r0 + (ulong)i, m - 1) * k + kk]), wv, acc[i]);
        }
    }
    const float16 b = has_bias ? load16(bias + c0) : (float16)(0.0f);
    for (int i = 0; i < RB && r0 + (ulong)i < m; i++) {
        float out[16];
        vstore16(round16(round16(acc[i]) + b), 0, out);
        for (int j = 0; j < 16; j++) {
            if (c0 + (ulong)j < n) {
                y[y_off + (r0 + (ulong)i) * n + c0 + (ulong)j] = out[j];
            }
        }
    }
}
