/*
 * tail.cl - gemm_tail, the one last launch of a decode step whose output projection is clmha's
 * own GEMM or, built with QUANT_I8, an int8 layer's product in the wide layout (CPUs): the merge
 * of merge_rows.clh, the row loop of gemm_rows.clh (or the row quantized and the integer
 * product of quant_rows.clh) and the cache splice of splice_rows.clh, so that the call either
 * changes nothing the caller owns or completes.
 */
#include "merge_rows.clh"
#include "splice_rows.clh"

#ifndef HV
#define HV (12 * DV)
#endif

#ifdef QUANT_I8
#include "quant_rows.clh"
#ifndef GR
#define GR 1
#endif
#define W_T char
DEFINE_I8W_COLS(i8w_cols_local, __local)
/* An int8 layer's output projection quantizes its input row (HV floats, global or local
 * memory: AS) as quantize_rows does, into xq; returns the row's scale. */
#define DEFINE_QUANTIZE_ROW(NAME, AS)                                                              \
    static float NAME(AS const float *x, __local char *xq) {                                       \
        float mx = 0.0f;                                                                           \
        for (int i = 0; i < HV; i++) {                                                             \
            mx = abs_max(mx, x[i]);                                                                \
        }                                                                                          \
        const float scale = I8_SCALE(mx);                                                          \
        for (int i = 0; i < HV; i++) {                                                             \
            xq[i] = I8_QUANT(x[i], scale);                                                         \
        }                                                                                          \
        return scale;                                                                              \
    }
DEFINE_QUANTIZE_ROW(quantize_row, __global)
DEFINE_QUANTIZE_ROW(quantize_row_local, __local)
#else
#include "gemm_rows.clh"
#define W_T float
DEFINE_GEMM_ROWS(gemm_rows, __global)
DEFINE_GEMM_ROWS(gemm_rows_local, __local)
#endif

/* gemm_tail: the last launch of a call whose output projection is clmha's own GEMM (decode
 * steps), in place of attention_merge, the output projection and commit: built with DV, HV
 * (= H * DV, the projection's input width) and GC, and GR rows a work-item (1, or the few-rows
 * build's 4 for batched decode steps); with QUANT_I8 (and CU, GR 1) w is an int8 layer's kernel
 * (the wide layout: 64-column panels, np columns, scales ks) and a work-item takes 16 CU columns.
 * Work-groups [0, gemm_groups) project, gpr of them a block of GR rows r = b * T + t (of m):
 * they take the rows from o (nch == 1) or merge them from their H heads' chunk partials into
 * local memory (what attention_merge would have written), then each work-item writes GC
 * columns of out[r] = bias + row . w for the block's rows straight into the caller's output,
 * reading each weight once for all of them. The other work-groups splice the new keys and
 * values into the cache, `block` elements of a row a work-item. As with commit, the caller's
 * tensors change only if this one enqueue succeeds. */
__kernel void gemm_tail(__global const float *o, __global const float *part, int nch, int T,
                        int H, __global const W_T *w, __global const float *bias, int has_bias,
                        ulong n, ulong gpr, ulong gemm_groups, ulong m, __global float *out,
                        ulong out_off,
                        __global const CACHE_T *src_k, __global const CACHE_T *src_v,
                        __global CACHE_T *cache, ulong c_off, ulong B, ulong Sn, ulong S,
                        ulong HD, ulong index, ulong n_splice, ulong block
#ifdef QUANT_I8
                        ,
                        __global const float *ks, ulong np
#endif
) {
    __local float xs[GR * HV];
#ifdef QUANT_I8
    __local char xq[HV];
#endif
    __local float wts[MAX_CHUNKS];
    const ulong g = get_group_id(0);
    const int lid = (int)get_local_id(0), wg = (int)get_local_size(0);
    if (g >= gemm_groups) {
        const ulong j = (g - gemm_groups) * (ulong)wg + (ulong)lid;
        const ulong per_row = (HD + block - 1) / block;
        const ulong row = j / per_row;
        const ulong e0 = (j - row * per_row) * block;
        if (row * HD < n_splice) {
            splice_row(row, e0, min(HD, e0 + block), src_k, src_v, cache, c_off, B, Sn, S, HD,
                       index);
        }
        return;
    }
    const ulong rb = g / gpr;
    const ulong r0 = rb * GR;
    const ulong nr = min((ulong)GR, m - r0);
    const ulong cb = (g - rb * gpr) * (ulong)wg + (ulong)lid;
    __global float *y = out + out_off + r0 * n;
#ifdef QUANT_I8
    /* the row (one: GR = 1), finished in o or merged below, quantized into xq; then the
     * work-item's 16 CU columns of the integer product, as gemm_i8w's, from one call site (with
     * one for each kind of row, PoCL 3.1's build wrote the bias alone) */
    const ulong ncg = np / (16 * CU);
    float scale = 0.0f;
    if (nch == 1) {
        if (cb >= ncg) {
            return;
        }
        scale = quantize_row(o + r0 * HV, xq);
    }
#else
    const ulong ncg = n / GC;
    if (nch == 1) {
        if (cb < ncg) {
            gemm_rows(o + r0 * HV, HV, nr, w, n, cb * GC, bias, has_bias, y, 0);
        }
        return;
    }
#endif
    for (ulong u = 0; u < nr && nch > 1; u++) {
        const ulong b = (r0 + u) / (ulong)T;
        const ulong t = r0 + u - b * (ulong)T;
        for (int h = 0; h < H; h++) {
            __global const float *pr =
                part + ((b * (ulong)H + (ulong)h) * (ulong)T + t) * (ulong)nch * (DV + 2);
            const float inv = merge_weights(pr, nch, wts, lid, wg);
            __local float *dst = xs + u * HV + h * DV;
            MERGE_ROW(dst)
            barrier(CLK_LOCAL_MEM_FENCE); /* before the next head's weights overwrite wts */
        }
    }
    if (cb < ncg) {
#ifdef QUANT_I8
        if (nch > 1) {
            scale = quantize_row_local(xs, xq);
        }
        i8w_cols_local(xq, &scale, nr, HV, HV, w, ks, n, bias, has_bias, y, 0, cb * (16 * CU),
                       0);
#else
        gemm_rows_local(xs, HV, nr, w, n, cb * GC, bias, has_bias, y, 0);
#endif
    }
}
