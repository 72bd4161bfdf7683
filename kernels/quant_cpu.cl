/*
 * quant_cpu.cl - the products of a quantized layer (quant.cl has the rest: quantize_rows, which
 * quantizes the int8 layers' input rows, and the GPU layouts) for the devices whose own GEMM
 * takes 32 columns a work-item (CPUs): the kernels lie in panels of P columns (the columns
 * padded to np, a multiple of P), each panel's k rows one after another, so the work-item that
 * takes a panel streams one contiguous run of memory: int8 P = 64, w[(c / 64 * k + r) * 64 +
 * c % 64] (the one-row build takes a whole panel, CU = 4; the others sixteen of its columns);
 * int4 P = 16, eight bytes a row with two columns a byte as Keras packs them (column 2j in the
 * low nibble), w[(c / 16 * k + r) * 8 + c % 16 / 2]. A work-item reads sixteen consecutive
 * columns of a row at once (int8: CU such runs), for RB rows (default 1). QDIV: gemm_q4w for
 * Keras's per-channel int4 (w = q / scale), else (q - zero) * scale in groups of input rows.
 */
#include "quant_rows.clh"

DEFINE_I8W_COLS(i8w_cols, __global)

/* Rows [r0, r0 + RB) of one int8 product (of m), columns [c0, c0 + 16 CU): xq's rows kp apart,
 * their scales in xs. */
static void i8w_block(__global const char *xq, __global const float *xs, ulong m, ulong kp, ulong k,
                      __global const char *w, __global const float *ks, ulong n,
                      __global const float *bias, int has_bias, __global float *y, ulong y_off,
                      ulong c0, ulong r0) {
    float xsr[RB];
    _Pragma("unroll") for (int i = 0; i < RB; i++) {
        xsr[i] = xs[min(r0 + (ulong)i, m - 1)];
    }
    i8w_cols(xq + r0 * kp, xsr, m, kp, k, w, ks, n, bias, has_bias, y, y_off, c0, r0);
}

/* gemm_i8w: y[r][c] = (float)(sum_k xq[r][k] w[k][c]) / (xs[r] * ks[c]) + bias[c] (Keras's
 * int8 EinsumDense, quant.cl's gemm_i8) over the int8 kernel's panels, 16 x CU columns of RB
 * rows a work-item (quant_rows.clh). */
__kernel void gemm_i8w(__global const char *xq, __global const float *xs, ulong m, ulong kp,
                       ulong k, __global const char *w, __global const float *ks, ulong n, ulong np,
                       __global const float *bias, int has_bias, __global float *y, ulong y_off) {
    /* the remainder as x - q * d: LLVM pairs a / and a % of the same operands with a `freeze`,
     * which Oclgrind's uninitialised-value checker cannot follow */
    const ulong ncg = np / (16 * CU), gid = get_global_id(0), q = gid / ncg;
    if (gid < ncg * ((m + RB - 1) / RB)) {
        i8w_block(xq, xs, m, kp, k, w, ks, n, bias, has_bias, y, y_off, (gid - q * ncg) * (16 * CU),
                  q * RB);
    }
}

/* gemm_i8w_qkv: self-attention's three products of one quantized input in one launch. Work-item
 * g of row block r = gid / (gq + gk + gv) takes the query's columns for g < gq, then the key's,
 * then the value's (gX = npX / (16 CU) column groups each), into yq, yk and yv. */
__kernel void gemm_i8w_qkv(__global const char *xq, __global const float *xs, ulong m, ulong kp,
                           ulong k, __global const char *wq, __global const char *wk,
                           __global const char *wv, __global const float *sq,
                           __global const float *sk, __global const float *sv,
                           __global const float *bq, __global const float *bk,
                           __global const float *bv, int has_bias, __global float *yq,
                           __global float *yk, __global float *yv, ulong nq, ulong nk, ulong nv,
                           ulong npq, ulong npk, ulong npv) {
    const ulong gq = npq / (16 * CU), gk = npk / (16 * CU), gv = npv / (16 * CU);
    const ulong gid = get_global_id(0), r = gid / (gq + gk + gv), g = gid - r * (gq + gk + gv);
    if (r * RB >= m) {
        return;
    }
    if (g < gq) {
        i8w_block(xq, xs, m, kp, k, wq, sq, nq, bq, has_bias, yq, 0, g * (16 * CU), r * RB);
    } else if (g < gq + gk) {
        i8w_block(xq, xs, m, kp, k, wk, sk, nk, bk, has_bias, yk, 0, (g - gq) * (16 * CU), r * RB);
    } else {
        i8w_block(xq, xs, m, kp, k, wv, sv, nv, bv, has_bias, yv, 0, (g - gq - gk) * (16 * CU),
                  r * RB);
    }
}

/* gemm_q4w: y = x . w + bias with Keras's dequantized int4 kernel (quant.cl's gemm_q4) over the
 * packed int4 kernel's panels, sixteen columns of RB rows a
 * work-item, the even and the odd columns (a byte's low and high nibbles) apart; groups of
 * @p block input rows, each taken as (sum x q - zero sum x) scale: one multiply-add a weight. */
__kernel void gemm_q4w(__global const float *x, ulong x_off, ulong m, ulong k,
                       __global const uchar *w, __global const float *ks, __global const char *kz,
                       ulong n, ulong np, ulong block, ulong groups, __global const float *bias,
                       int has_bias, __global float *y, ulong y_off) {
    const ulong ncg = np / 16, gid = get_global_id(0);
    if (gid >= ncg * ((m + RB - 1) / RB)) {
        return;
    }
    const ulong c0 = (gid % ncg) * 16, r0 = (gid / ncg) * RB;
    float8 ae[RB], ao[RB];
    _Pragma("unroll") for (int i = 0; i < RB; i++) {
        ae[i] = (float8)(0.0f);
        ao[i] = (float8)(0.0f);
    }
    for (ulong g = 0; g < groups; g++) {
        /* sum_k x (q - zero) scale = (sum_k x q - zero sum_k x) scale over the group */
        float8 pe[RB], po[RB];
        float sx[RB];
        _Pragma("unroll") for (int i = 0; i < RB; i++) {
            pe[i] = (float8)(0.0f);
            po[i] = (float8)(0.0f);
            sx[i] = 0.0f;
        }
        const ulong k_end = min((g + 1) * block, k);
        for (ulong kk = g * block; kk < k_end; kk++) {
            const char8 b = as_char8(vload8(0, w + (c0 / 16 * k + kk) * 8));
            const float8 qe = convert_float8((b << (char8)4) >> (char8)4);
            const float8 qo = convert_float8(b >> (char8)4);
            _Pragma("unroll") for (int i = 0; i < RB; i++) {
                const float xv = x[x_off + min(r0 + (ulong)i, m - 1) * k + kk];
                pe[i] = fma((float8)(xv), qe, pe[i]);
                po[i] = fma((float8)(xv), qo, po[i]);
                sx[i] += xv;
            }
        }
#ifdef QDIV
        (void)kz;
        _Pragma("unroll") for (int i = 0; i < RB; i++) {
            ae[i] += pe[i];
            ao[i] += po[i];
        }
#else
        const float16 z = convert_float16(vload16(0, kz + g * np + c0));
        const float16 s = vload16(0, ks + g * np + c0);
        _Pragma("unroll") for (int i = 0; i < RB; i++) {
            ae[i] = fma(pe[i] - z.even * sx[i], s.even, ae[i]);
            ao[i] = fma(po[i] - z.odd * sx[i], s.odd, ao[i]);
        }
#endif
    }
#ifdef QDIV
    const float16 s = vload16(0, ks + c0);
    _Pragma("unroll") for (int i = 0; i < RB; i++) {
        ae[i] /= s.even;
        ao[i] /= s.odd;
    }
#endif
    const uint16 order = (uint16)(0, 8, 1, 9, 2, 10, 3, 11, 4, 12, 5, 13, 6, 14, 7, 15);
    for (int i = 0; i < RB && r0 + (ulong)i < m; i++) {
        store_cols16(y, y_off, r0 + (ulong)i, n, c0, shuffle2(ae[i], ao[i], order), bias, has_bias);
    }
}
