/*
 * quant.cl - the projections of a layer quantized as Keras quantizes EinsumDense:
 * - "int8": each input row is quantized to int8 by its absolute maximum (quantize_rows), then
 *   an integer product with the int8 kernel and one rescale by both scales (gemm_i8);
 * - "int4": weight-only; two 4-bit weights a byte, dequantized as (q - zero) * scale per group
 *   of input rows (Keras's sub-channel mode) or as q / scale per column (its per-channel
 *   mode), in a float product (gemm_q4).
 *
 * The host (quant.c) lays the kernels out for these loops: the input rows in steps of four (kp
 * = k rounded up to 4, the padding zero) and the columns padded to np, a multiple of 4.
 * - int8: w[(kq * np + c) * 4 + j] = q[4 kq + j][c], so a column's four weights of a step are a
 *   char4 and a work-item's four columns one char16;
 * - int4: w[(kq * np + c) * 2 + h] holds q[4 kq + 2h][c] in its low nibble and q[4 kq + 2h + 1][c]
 *   in its high one: a work-item's four columns of a step are eight bytes.
 * (quant_cpu.cl has the panel layouts of the devices whose own GEMM takes 32 columns a
 * work-item: CPUs.) Scales (and int4 zero points) are [groups][np]. Built with QWG, quantize_rows's work-group
 * size (default 64), and RB, the rows a work-item of the products takes (default 1; each weight
 * is read once for them); QDIV: gemm_q4 for Keras's per-channel int4.
 */

#ifndef QWG
#define QWG 64
#endif
#include "quant_rows.clh"

/* quantize_rows: one work-group a row r of x (k floats from x_off): as Keras's AbsMaxQuantizer,
 * scale = 127 / (max |x| + 1e-7) and q = clip(round(x * scale), -127, 127) (round half to even),
 * written to xq[r * kp ...] with the padding to kp zero, and the scale to xs[r]. */
__kernel void quantize_rows(__global const float *x, ulong x_off, ulong k, ulong kp,
                            __global char *xq, __global float *xs) {
    __local float red[QWG];
    const ulong r = get_group_id(0);
    const int lid = (int)get_local_id(0);
    __global const float *row = x + x_off + r * k;
    float mx = 0.0f;
    for (ulong i = (ulong)lid; i < k; i += QWG) {
        mx = abs_max(mx, row[i]);
    }
    red[lid] = mx;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int s = QWG / 2; s > 0; s >>= 1) {
        if (lid < s) {
            red[lid] = abs_max(red[lid], red[lid + s]);
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    const float scale = I8_SCALE(red[0]);
    for (ulong i = (ulong)lid; i < kp; i += QWG) {
        xq[r * kp + i] = i < k ? I8_QUANT(row[i], scale) : 0;
    }
    if (lid == 0) {
        xs[r] = scale;
    }
}

#if defined(__opencl_c_integer_dot_product_input_4x8bit)
/* cl_khr_integer_dot_product: the device's own 4 x 8-bit dot product. */
#define DOT4(a, b) dot((a), (b))
#else
#define DOT4(a, b) dot4_i8((a), (b))
static int dot4_i8(char4 a, char4 b) {
    const int4 p = convert_int4(a) * convert_int4(b);
    return p.x + p.y + p.z + p.w;
}
#endif

/* Writes four columns c0.. of row r: y = v + bias, where c < n. */
static void store_cols(__global float *y, ulong y_off, ulong r, ulong n, ulong c0, float4 v,
                       __global const float *bias, int has_bias) {
    float out[4];
    vstore4(v, 0, out);
    for (int j = 0; j < 4; j++) {
        const ulong c = c0 + (ulong)j;
        if (c < n) {
            y[y_off + r * n + c] = out[j] + (has_bias ? bias[c] : 0.0f);
        }
    }
}

/* gemm_i8: y[r][c] = (float)(sum_k xq[r][k] w[k][c]) / (xs[r] * ks[c]) + bias[c], as Keras's
 * int8 EinsumDense: the integer sum is exact. A work-item takes four columns of RB rows. */
__kernel void gemm_i8(__global const char *xq, __global const float *xs, ulong m, ulong kp,
                      __global const char *w, __global const float *ks, ulong n, ulong np,
                      __global const float *bias, int has_bias, __global float *y, ulong y_off) {
    const ulong ncg = np / 4, gid = get_global_id(0);
    if (gid >= ncg * ((m + RB - 1) / RB)) {
        return;
    }
    const ulong c0 = (gid % ncg) * 4, r0 = (gid / ncg) * RB;
    int4 acc[RB];
    for (int i = 0; i < RB; i++) {
        acc[i] = (int4)(0);
    }
    for (ulong kq = 0; kq < kp / 4; kq++) {
        const char16 wv = vload16(0, w + (kq * np + c0) * 4);
        for (int i = 0; i < RB; i++) {
            const ulong r = min(r0 + (ulong)i, m - 1);
            const char4 xv = vload4(0, xq + r * kp + kq * 4);
            acc[i] += (int4)(DOT4(xv, wv.s0123), DOT4(xv, wv.s4567), DOT4(xv, wv.s89ab),
                             DOT4(xv, wv.scdef));
        }
    }
    const float4 s = vload4(0, ks + c0);
    for (int i = 0; i < RB && r0 + (ulong)i < m; i++) {
        const ulong r = r0 + (ulong)i;
        store_cols(y, y_off, r, n, c0, convert_float4(acc[i]) / (xs[r] * s), bias, has_bias);
    }
}

/* gemm_q4: y[r][c] = sum_k x[r][k] w[k][c] + bias[c] with Keras's dequantized int4 kernel: w =
 * (q - zero[g][c]) * scale[g][c] for input row k in group g (groups of steps_g steps of four
 * rows), or, built with QDIV (Keras's per-channel int4, one group), w = q / scale[c], applied
 * as (sum_k x q) / scale. x past k reads as 0. A work-item takes four columns of RB rows. */
__kernel void gemm_q4(__global const float *x, ulong x_off, ulong m, ulong k,
                      __global const uchar *w, __global const float *ks,
                      __global const char *kz, ulong n, ulong np, ulong steps_g, ulong groups,
                      __global const float *bias, int has_bias, __global float *y,
                      ulong y_off) {
    const ulong ncg = np / 4, gid = get_global_id(0);
    if (gid >= ncg * ((m + RB - 1) / RB)) {
        return;
    }
    const ulong c0 = (gid % ncg) * 4, r0 = (gid / ncg) * RB, steps = (k + 3) / 4;
    float4 acc[RB];
    for (int i = 0; i < RB; i++) {
        acc[i] = (float4)(0.0f);
    }
    for (ulong g = 0; g < groups; g++) {
#ifdef QDIV
        (void)kz;
        const float4 z = (float4)(0.0f), s = (float4)(1.0f);
#else
        const float4 z = convert_float4(vload4(0, kz + g * np + c0));
        const float4 s = vload4(0, ks + g * np + c0);
#endif
        const ulong kq_end = min((g + 1) * steps_g, steps);
        for (ulong kq = g * steps_g; kq < kq_end; kq++) {
            const char8 b = as_char8(vload8(0, w + (kq * np + c0) * 2));
            /* row 4kq + j of the four columns: j = 0 and 2 in the even and odd bytes' low
             * nibbles, 1 and 3 in their high ones */
            const char8 lo = (b << (char8)4) >> (char8)4, hi = b >> (char8)4;
            const float4 wj[4] = {(convert_float4(lo.s0246) - z) * s,
                                  (convert_float4(hi.s0246) - z) * s,
                                  (convert_float4(lo.s1357) - z) * s,
                                  (convert_float4(hi.s1357) - z) * s};
            const ulong kk = kq * 4;
            for (int i = 0; i < RB; i++) {
                __global const float *row = x + x_off + min(r0 + (ulong)i, m - 1) * k;
                const float4 xv =
                    kk + 4 <= k ? vload4(0, row + kk)
                                : (float4)(row[kk], kk + 1 < k ? row[kk + 1] : 0.0f,
                                           kk + 2 < k ? row[kk + 2] : 0.0f, 0.0f);
                acc[i] += xv.x * wj[0] + xv.y * wj[1] + xv.z * wj[2] + xv.w * wj[3];
            }
        }
    }
#ifdef QDIV
    const float4 s = vload4(0, ks + c0);
    for (int i = 0; i < RB; i++) {
        acc[i] /= s;
    }
#endif
    for (int i = 0; i < RB && r0 + (ulong)i < m; i++) {
        store_cols(y, y_off, r0 + (ulong)i, n, c0, acc[i], bias, has_bias);
    }
}

