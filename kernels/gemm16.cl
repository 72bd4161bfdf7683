/*
 * gemm16.cl - the projections of a layer with a 16-bit Keras dtype policy ("float16",
 * "bfloat16", "mixed_float16", "mixed_bfloat16"): the weights' 16-bit copies (to16 makes them
 * from the float32 variables) and the product as Keras computes it in that dtype: inputs,
 * weights and the product rounded to the compute dtype (to nearest even), the sum in float32,
 * then the bias added and rounded again.
 *
 * Built with W_BF16 for bfloat16 (16-bit integers: a float's top half, widened by a shift; OpenCL
 * 1.2 has no bfloat16), else IEEE half (gemm16.clh), and RB, the rows a work-item takes (default
 * 1). Kernels are row-major as Keras keeps them, [k][np] with the columns padded to np, a
 * multiple of 4 (gemm16_cpu.cl: of 16, in panels of 16 columns, each panel's k rows one after
 * another, as to16 writes them with panel 16); biases np values.
 */
#include "gemm16.clh"

#ifndef RB
#define RB 1
#endif

/* to16: dst[r][c] (rows x np, the padding columns 0) = the 16-bit bits of src[r][c] (rows x
 * cols), at r * np + c, or with @p panel nonzero at (c / panel * rows + r) * panel + c % panel;
 * with @p round_src the float32 source itself is rounded to the 16-bit dtype (the
 * "float16" and "bfloat16" policies' variables are 16-bit). One work-item an element of dst. */
__kernel void to16(__global float *src, ulong rows, ulong cols, ulong np, __global ushort *dst,
                   int round_src, ulong panel) {
    const ulong i = get_global_id(0);
    if (i >= rows * np) {
        return;
    }
    const ulong r = i / np, c = i - r * np;
    const ulong at = panel != 0 ? (c / panel * rows + r) * panel + c % panel : i;
    if (c >= cols) {
        dst[at] = 0;
        return;
    }
    const ushort b = to_bits(src[r * cols + c]);
    dst[at] = b;
    if (round_src) {
        src[r * cols + c] = widen(b);
    }
}

/* round_rows: xr[i] = round(x[x_off + i]) for the @p count values of a projection's input rows
 * (once, before gemm_w16 reads them for every column). */
__kernel void round_rows(__global const float *x, ulong x_off, ulong count, __global float *xr) {
    const ulong i = get_global_id(0);
    if (i < count) {
        xr[i] = round1(x[x_off + i]);
    }
}

/* gemm_w16: y[r][c] = round(round(sum_k xr[r][k] w[k][c]) + bias[c]) over the rounded input rows
 * xr, four columns of RB rows a work-item, each weight read once for them. */
__kernel void gemm_w16(__global const float *x, ulong m, ulong k,
                       __global const ushort *w, ulong n, ulong np, __global const ushort *bias,
                       int has_bias, __global float *y, ulong y_off) {
    const ulong ncg = np / 4, gid = get_global_id(0);
    if (gid >= ncg * ((m + RB - 1) / RB)) {
        return;
    }
    const ulong c0 = (gid % ncg) * 4, r0 = (gid / ncg) * RB;
    float4 acc[RB];
    for (int i = 0; i < RB; i++) {
        acc[i] = (float4)(0.0f);
    }
    for (ulong kk = 0; kk < k; kk++) {
        const float4 wv = load4(w + kk * np + c0);
        for (int i = 0; i < RB; i++) {
            const float xv = x[min(r0 + (ulong)i, m - 1) * k + kk];
            acc[i] = fma((float4)(xv), wv, acc[i]);
        }
    }
    const float4 b = has_bias ? load4(bias + c0) : (float4)(0.0f);
    /* unrolled, so that acc stays in registers (a loop over it would index it in memory) */
#pragma unroll
    for (int i = 0; i < RB; i++) {
        const ulong r = r0 + (ulong)i;
        const float4 v = round4(round4(acc[i]) + b);
        __global float *row = y + y_off + r * n + c0; /* c0 < n: np is n rounded up to 4 */
        if (r < m && c0 + 4 <= n) {
            vstore4(v, 0, row);
        } else if (r < m) {
            row[0] = v.x;
            if (c0 + 1 < n) {
                row[1] = v.y;
            }
            if (c0 + 2 < n) {
                row[2] = v.z;
            }
        }
    }
}
