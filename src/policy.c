/*
 * policy.c - Keras's 16-bit dtype policies ("float16", "bfloat16", "mixed_float16",
 * "mixed_bfloat16"): each weight's 16-bit copy on the device (gemm16.cl's to16, after every
 * change of the float32 variable; for the float16 and bfloat16 policies the variable itself is
 * rounded, as Keras's 16-bit variables hold only 16-bit values) and the projections in the
 * compute dtype (gemm_w16). The attention between them is unchanged.
 */
#include "internal.h"

/* The rows (input width) and columns of weight @p w: a kernel's, or one row for a bias. */
static void weight_dims(const clmha_layer *l, clmha_weight w, size_t *rows, size_t *cols) {
    const size_t ks[4] = {l->dq_in, l->dk_in, l->dv_in, l->heads * l->dv};
    const size_t ns[4] = {l->heads * l->dk, l->heads * l->dk, l->heads * l->dv, l->out_features};
    *rows = w % 2 ? 1 : ks[w / 2];
    *cols = ns[w / 2];
}

/* A 16-bit copy's padded width for @p n columns: a multiple of the columns a work-item of
 * gemm_w16 (4) or gemm_w16w (16, where the own GEMM takes 32) takes. */
static size_t padded(const clmha_layer *l, size_t n) {
    const size_t cols = l->gemm_wide != 0 ? 16 : 4;
    return (n + cols - 1) / cols * cols;
}

clmha_status clmha__policy_reserve(clmha_layer *l, size_t m) {
    if (l->w16 == 0) {
        return CLMHA_OK;
    }
    size_t kmax = 0, n, count;
    for (int w = 0; w < CLMHA_WEIGHT_COUNT; w += 2) {
        size_t k;
        weight_dims(l, (clmha_weight)w, &k, &n);
        kmax = k > kmax ? k : kmax;
    }
    if (!clmha__mul(m, kmax, &count)) {
        return clmha__fail(l->ctx, CLMHA_ERR_OUT_OF_RANGE,
                           "the projections' rounded inputs of %zu rows overflow", m);
    }
    return clmha__workspace(l, &l->ws_x16, &l->cap_x16, count);
}

void clmha__policy_setup(clmha_layer *l) {
    const clmha_dtype_policy p = l->cfg.dtype_policy;
    if (p == CLMHA_POLICY_FLOAT32) {
        return;
    }
    l->w16 = p == CLMHA_POLICY_FLOAT16 || p == CLMHA_POLICY_MIXED_FLOAT16 ? 1 : 2;
    l->w16_var = p == CLMHA_POLICY_FLOAT16 || p == CLMHA_POLICY_BFLOAT16;
}

clmha_status clmha__policy_sync(clmha_layer *l, clmha_weight w) {
    if (l->w16 == 0 || l->weights[w] == NULL) {
        return CLMHA_OK;
    }
    size_t rows, cols;
    weight_dims(l, w, &rows, &cols);
    const size_t np = padded(l, cols);
    clmha_status st = CLMHA_OK;
    if (l->w16buf[w] == NULL) {
        st = clmha__buffer_create(l->ctx, rows * np * sizeof(uint16_t), "a 16-bit weight",
                                  &l->w16buf[w]);
    }
    /* gemm_w16w's kernels lie in panels of its sixteen columns, each panel's rows in a row, so
     * a work-item streams one contiguous run; gemm_w16's (GPUs) row-major */
    cl_ulong r = rows, c = cols, npp = np, panel = l->gemm_wide != 0 ? 16 : 0;
    cl_int round_src = l->w16_var;
    const clmha__karg args[] = {
        CLMHA__ARG(l->weights[w]), CLMHA__ARG(r),         CLMHA__ARG(c),    CLMHA__ARG(npp),
        CLMHA__ARG(l->w16buf[w]),  CLMHA__ARG(round_src), CLMHA__ARG(panel)};
    const clmha__kernel *k = &l->kern[CLMHA__K_TO16];
    if (st == CLMHA_OK) {
        st = clmha__set_args(l->ctx, k, args, 7);
    }
    const size_t wg = l->wg_fill < k->max_wg ? l->wg_fill : k->max_wg;
    return st != CLMHA_OK ? st : clmha__launch(l->ctx, k, (rows * np + wg - 1) / wg, wg);
}

/* round_rows: the @p count input values from x_off rounded once into ws_x16 (reserved for the
 * call's rows by clmha__policy_reserve). */
static clmha_status round_inputs(clmha_layer *l, cl_mem x, size_t x_off, size_t count) {
    cl_ulong xo = x_off, cnt = count;
    const clmha__karg args[] = {CLMHA__ARG(x), CLMHA__ARG(xo), CLMHA__ARG(cnt),
                                CLMHA__ARG(l->ws_x16)};
    const clmha__kernel *k = &l->kern[CLMHA__K_ROUND16];
    const size_t wg = l->wg_fill < k->max_wg ? l->wg_fill : k->max_wg;
    clmha_status st = clmha__set_args(l->ctx, k, args, 4);
    return st != CLMHA_OK ? st : clmha__launch(l->ctx, k, (count + wg - 1) / wg, wg);
}

clmha_status clmha__project_w16(clmha_layer *l, int proj, cl_mem x, size_t x_off, size_t m,
                                cl_mem y, size_t y_off) {
    clmha_context *ctx = l->ctx;
    ctx->prof_category = CLMHA__PROF_PROJECTION;
    size_t k, n, count;
    weight_dims(l, (clmha_weight)(2 * proj), &k, &n);
    if (!clmha__mul(m, k, &count)) {
        return clmha__fail(ctx, CLMHA_ERR_OUT_OF_RANGE, "a projection of %zu rows overflows", m);
    }
    clmha_status st =
        clmha__prepared(l, x, x_off, m, k) ? CLMHA_OK : round_inputs(l, x, x_off, count);
    const bool many = m > CLMHA__QUANT_ONE_ROW_MAX;
    const clmha__kernel *kern = &l->kern[CLMHA__K_W16(many)];
    cl_mem bias = l->w16buf[2 * proj + 1];
    cl_int has_bias = bias != NULL;
    cl_ulong mm = m, kk = k, nn = n, np = padded(l, n), yo = y_off;
    const clmha__karg args[] = {
        CLMHA__ARG(l->ws_x16), CLMHA__ARG(mm), CLMHA__ARG(kk),   CLMHA__ARG(l->w16buf[2 * proj]),
        CLMHA__ARG(nn),        CLMHA__ARG(np), CLMHA__ARG(bias), CLMHA__ARG(has_bias),
        CLMHA__ARG(y),         CLMHA__ARG(yo)};
    if (st != CLMHA_OK ||
        (st = clmha__set_args(ctx, kern, args, sizeof args / sizeof args[0])) != CLMHA_OK) {
        return st;
    }
    const size_t rb = many ? CLMHA__QUANT_ROWS : 1, cols = l->gemm_wide != 0 ? 16 : 4;
    const size_t items = (size_t)np / cols * ((m + rb - 1) / rb);
    /* gemm16_cpu.cl's one work-item a group (see clmha__project_quant) */
    const size_t wg = l->gemm_wide != 0 ? 1 : l->wg_gemm < kern->max_wg ? l->wg_gemm : kern->max_wg;
    return clmha__launch(ctx, kern, (items + wg - 1) / wg, wg);
}
