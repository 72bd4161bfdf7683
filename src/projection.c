/*
 * projection.c - the dense projections (Keras EinsumDense with equations "abc,cde->abde" and
 * "abcd,cde->abe", which in row-major memory are plain matrix products) through CLBlast:
 * the bias kernel writes the broadcast bias (or zeros) into the output rows, then SGEMM
 * accumulates x . W into them with beta = 1. clmha's own gemm.cl does the product (and the bias,
 * in one launch where the width is a multiple of 4) instead for
 * products of a few rows (decode steps, where CLBlast's fixed cost dominates; see
 * the gemm_small_m setting), where CLBlast's kernels do not fit the device (small work-group or
 * local-memory limits), or with the setting gemm=own. Also the workspace growth helper.
 */
#include "internal.h"

#include <clblast_c.h>

clmha_status clmha__workspace(clmha_layer *layer, cl_mem *buf, size_t *cap, size_t n) {
    if (n <= *cap && *buf != NULL) {
        return CLMHA_OK;
    }
    clmha_context *ctx = layer->ctx;
    size_t bytes;
    if (!clmha__mul(n, sizeof(float), &bytes) || bytes > ctx->info.max_alloc_bytes) {
        return clmha__fail(ctx, CLMHA_ERR_DEVICE_LIMIT,
                           "the call needs a %zu-float workspace buffer; device \"%s\" allows "
                           "at most %llu bytes in one buffer",
                           n, ctx->info.name, (unsigned long long)ctx->info.max_alloc_bytes);
    }
    cl_mem fresh = NULL;
    clmha_status st = clmha__buffer_create(ctx, bytes, "the layer workspace", &fresh);
    if (st != CLMHA_OK) {
        return st;
    }
    /* Commands already queued keep the old buffer alive until they finish. */
    if (*buf != NULL) {
        clReleaseMemObject(*buf);
    }
    *buf = fresh;
    *cap = n;
    ctx->stats.workspace_allocations++;
    return CLMHA_OK;
}

/* CLBlast status @p s says its kernels do not fit the device's limits (it checks before
 * enqueueing anything): the context switches to the own GEMM for good, and says so. */
static bool clblast_refused(clmha_context *ctx, CLBlastStatusCode s) {
    if (s != CLBlastInvalidLocalThreadsTotal && s != CLBlastInvalidLocalThreadsDim &&
        s != CLBlastInvalidLocalMemUsage && s != CLBlastInvalidLocalNumDimensions) {
        return false;
    }
    clmha__log(ctx, CLMHA_LOG_WARN,
               "CLBlast cannot run on device \"%s\" (status %d): using clmha's own GEMM",
               ctx->info.name, (int)s);
    ctx->own_gemm = true;
    return true;
}

clmha_status clmha__clblast_warm(clmha_context *ctx) {
    if (ctx->own_gemm || ctx->clblast_warm) {
        return CLMHA_OK;
    }
    enum { N = 16 };
    cl_mem buf[3] = {NULL, NULL, NULL};
    clmha_status st = CLMHA_OK;
    for (int i = 0; i < 3 && st == CLMHA_OK; i++) {
        st = clmha__buffer_create(ctx, N * N * sizeof(float), "CLBlast's warm-up", &buf[i]);
    }
    /* Zero the inputs (a kernel, as every fill): the product is never read, but nothing reads
     * memory nobody wrote. */
    for (int i = 0; i < 2 && st == CLMHA_OK; i++) {
        st = clmha__fill(ctx, buf[i], 0, N * N * sizeof(float), 0, "CLBlast's warm-up");
    }
    if (st == CLMHA_OK) {
        cl_command_queue q = ctx->queue;
        CLBlastStatusCode s =
            CLBlastSgemm(CLBlastLayoutRowMajor, CLBlastTransposeNo, CLBlastTransposeNo, N, N, N,
                         1.0f, buf[0], 0, N, buf[1], 0, N, 0.0f, buf[2], 0, N, &q, NULL);
        if (s == CLBlastSuccess) {
            ctx->clblast_warm = true;
            ctx->stats.clblast_builds_reserved++;
        } else if (!clblast_refused(ctx, s)) { /* refused: calls use the own GEMM */
            ctx->last_clblast_error = (int)s;
            st = clmha__fail(ctx, CLMHA_ERR_CLBLAST,
                             "building CLBlast's GEMM (a 16^3 warm-up SGEMM) failed with CLBlast "
                             "status %d",
                             (int)s);
        }
    }
    for (int i = 0; i < 3; i++) {
        if (buf[i] != NULL) {
            clReleaseMemObject(buf[i]); /* queued work keeps them alive until it finishes */
        }
    }
    return st;
}

/* y[m, n] = bias (or zeros), broadcast over the rows: the first half of a CLBlast projection
 * (beta = 1 then adds the product) and of the own scalar kernel. */
static clmha_status fill_bias(clmha_layer *layer, cl_mem y, size_t y_off, size_t m, size_t n,
                              cl_mem bias) {
    cl_ulong off = y_off, rows = m, cols = n;
    cl_int has_bias = bias != NULL;
    const clmha__karg args[] = {CLMHA__ARG(y),    CLMHA__ARG(off),  CLMHA__ARG(rows),
                                CLMHA__ARG(cols), CLMHA__ARG(bias), CLMHA__ARG(has_bias)};
    clmha_status st = clmha__set_args(layer->ctx, &layer->kern[CLMHA__K_FILL_BIAS], args, 6);
    if (st != CLMHA_OK) {
        return st;
    }
    size_t total = m * n; /* checked by the caller's shape validation */
    return clmha__launch(layer->ctx, &layer->kern[CLMHA__K_FILL_BIAS],
                         (total + layer->wg_fill - 1) / layer->wg_fill, layer->wg_fill);
}

size_t clmha__gemm_cols(const clmha_layer *layer, size_t n) {
    return layer->gemm_wide != 0 && n % layer->gemm_wide == 0 ? layer->gemm_wide : 4;
}

/* The row-blocked own GEMM (gemm_rows rows of gemm_block_cols columns a work-item) is built and
 * takes products @p n columns wide: n a multiple of its columns. */
static bool blocked_width(const clmha_layer *layer, size_t n) {
    return layer->gemm_rows > 1 && n % layer->gemm_block_cols == 0;
}

/* A product of @p m rows and @p n columns takes the row-blocked own GEMM: more rows than
 * small_m, and a width it takes. */
static bool gemm_blocked(const clmha_layer *layer, size_t m, size_t n) {
    return m > layer->ctx->small_m && blocked_width(layer, n);
}

bool clmha__clblast_may_take(const clmha_layer *layer, size_t n) {
    return !layer->ctx->own_gemm && !blocked_width(layer, n);
}

bool clmha__own_gemm_takes(const clmha_layer *layer, size_t m, size_t n) {
    if (layer->ctx->own_gemm) {
        return true;
    }
    return !layer->gemm_k_long && (m <= layer->ctx->small_m || gemm_blocked(layer, m, n));
}

/* Which build of gemm_bias4 / gemm_qkv4 takes a product of @p m rows whose widths are @p n1
 * and @p n2 (both multiples of 4; n1 == n2 for one projection): the row-blocked build for many
 * rows (gemm_blocked), the few-rows build (gemm_few rows of 32 columns) for 3 to small_m
 * rows, the 32-column build, or the 4-column one; with the rows and columns a work-item takes
 * and the work-group size. */
typedef struct gemm_pick {
    clmha__gemm_build build;
    size_t rows, cols, wg;
} gemm_pick;

static gemm_pick pick_gemm(const clmha_layer *layer, size_t m, size_t n1, size_t n2) {
    const size_t c1 = clmha__gemm_cols(layer, n1), c2 = clmha__gemm_cols(layer, n2);
    gemm_pick p = {CLMHA__GEMM_COLS4, 1, 4, layer->wg_gemm};
    if (gemm_blocked(layer, m, n1) && gemm_blocked(layer, m, n2)) {
        p = (gemm_pick){CLMHA__GEMM_BLOCKED, layer->gemm_rows, layer->gemm_block_cols, 1};
    } else if (c1 > 4 && c2 > 4) {
        const bool few = layer->gemm_few > 1 && m >= 3 && m <= layer->ctx->small_m;
        p = (gemm_pick){few ? CLMHA__GEMM_FEW : CLMHA__GEMM_COLS32, few ? layer->gemm_few : 1, c1,
                        1};
    }
    return p;
}

size_t clmha__gemm_rows_taken(const clmha_layer *layer, size_t m, size_t n) {
    return clmha__own_gemm_takes(layer, m, n) && n % 4 == 0 ? pick_gemm(layer, m, n, n).rows : 0;
}

/* y[m, n] += x[m, k] . w[k, n] with gemm_acc, one launch per slice of the input width no
 * longer than the context's loop budget a work-item (split-K over launches). */
static clmha_status gemm_acc_slices(clmha_layer *layer, cl_mem x, size_t x_off, size_t m, size_t k,
                                    cl_mem w, size_t n, cl_mem y, size_t y_off) {
    clmha_context *ctx = layer->ctx;
    const size_t slice = ctx->item_loops, wg = layer->wg_gemm, items = m * n;
    cl_ulong a_off = x_off, c_off = y_off, mm = m, nn = n, kk = k;
    for (size_t k0 = 0; k0 < k; k0 += slice) {
        cl_ulong from = k0, len = k - k0 < slice ? k - k0 : slice;
        const clmha__karg args[] = {
            CLMHA__ARG(x),  CLMHA__ARG(a_off), CLMHA__ARG(w),  CLMHA__ARG(y),    CLMHA__ARG(c_off),
            CLMHA__ARG(mm), CLMHA__ARG(nn),    CLMHA__ARG(kk), CLMHA__ARG(from), CLMHA__ARG(len)};
        clmha_status st = clmha__set_args(ctx, &layer->kern[CLMHA__K_GEMM_ACC], args, 10);
        if (st == CLMHA_OK) {
            st = clmha__launch(ctx, &layer->kern[CLMHA__K_GEMM_ACC], (items + wg - 1) / wg, wg);
        }
        if (st != CLMHA_OK) {
            return st;
        }
    }
    return CLMHA_OK;
}

/* y[m, n] = x[m, k] . w[k, n] + bias with gemm.cl: gemm_bias4 (the bias added in the same
 * launch; the build pick_gemm chooses) where n is a multiple of 4 and the width short enough
 * for its work-items (not gemm_k_long), else the bias fill and gemm_acc in slices of the width.
 * @p filled: y already holds the bias. */
static clmha_status own_gemm(clmha_layer *layer, cl_mem x, size_t x_off, size_t m, size_t k,
                             cl_mem w, size_t n, cl_mem bias, cl_mem y, size_t y_off, bool filled) {
    if (n % 4 != 0 || layer->gemm_k_long) {
        clmha_status st = filled ? CLMHA_OK : fill_bias(layer, y, y_off, m, n, bias);
        return st != CLMHA_OK ? st : gemm_acc_slices(layer, x, x_off, m, k, w, n, y, y_off);
    }
    cl_ulong a_off = x_off, c_off = y_off, mm = m, nn = n, kk = k;
    cl_int has_bias = bias != NULL;
    const clmha__karg args[] = {
        CLMHA__ARG(x),  CLMHA__ARG(a_off), CLMHA__ARG(w),  CLMHA__ARG(y),    CLMHA__ARG(c_off),
        CLMHA__ARG(mm), CLMHA__ARG(nn),    CLMHA__ARG(kk), CLMHA__ARG(bias), CLMHA__ARG(has_bias)};
    const gemm_pick p = pick_gemm(layer, m, n, n);
    const clmha__kernel *kern = &layer->kern[CLMHA__K_GEMM(p.build, 0)];
    const size_t items = (m + p.rows - 1) / p.rows * (n / p.cols), wg = p.wg;
    clmha_status st = clmha__set_args(layer->ctx, kern, args, 10);
    if (st != CLMHA_OK) {
        return st;
    }
    return clmha__launch(layer->ctx, kern, (items + wg - 1) / wg, wg);
}

bool clmha__project_qkv_fits(const clmha_layer *layer, size_t m) {
    const size_t nq = layer->heads * layer->dk, nv = layer->heads * layer->dv;
    /* gemm_qkv4's work-items loop over the whole input width: not for gemm_k_long widths */
    return layer->quant_bits == 0 && layer->w16 == 0 && !layer->gemm_k_long &&
           clmha__own_gemm_takes(layer, m, nq) && clmha__own_gemm_takes(layer, m, nv) &&
           nq % 4 == 0 && nv % 4 == 0 && layer->dq_in == layer->dk_in &&
           layer->dq_in == layer->dv_in;
}

clmha_status clmha__project_qkv(clmha_layer *layer, cl_mem x, size_t x_off, size_t m, cl_mem kh,
                                cl_mem vh) {
    clmha_context *ctx = layer->ctx;
    ctx->prof_category = CLMHA__PROF_PROJECTION;
    const cl_mem *w = layer->weights;
    cl_ulong a_off = x_off, mm = m, kk = layer->dq_in;
    cl_ulong nq = layer->heads * layer->dk, nk = nq, nv = layer->heads * layer->dv;
    cl_int has_bias = w[CLMHA_WEIGHT_QUERY_BIAS] != NULL;
    const clmha__karg args[] = {CLMHA__ARG(x),
                                CLMHA__ARG(a_off),
                                CLMHA__ARG(mm),
                                CLMHA__ARG(kk),
                                CLMHA__ARG(w[CLMHA_WEIGHT_QUERY_KERNEL]),
                                CLMHA__ARG(w[CLMHA_WEIGHT_KEY_KERNEL]),
                                CLMHA__ARG(w[CLMHA_WEIGHT_VALUE_KERNEL]),
                                CLMHA__ARG(w[CLMHA_WEIGHT_QUERY_BIAS]),
                                CLMHA__ARG(w[CLMHA_WEIGHT_KEY_BIAS]),
                                CLMHA__ARG(w[CLMHA_WEIGHT_VALUE_BIAS]),
                                CLMHA__ARG(has_bias),
                                CLMHA__ARG(layer->ws_q),
                                CLMHA__ARG(layer->ws_k),
                                CLMHA__ARG(layer->ws_v),
                                CLMHA__ARG(kh),
                                CLMHA__ARG(vh),
                                CLMHA__ARG(nq),
                                CLMHA__ARG(nk),
                                CLMHA__ARG(nv)};
    const gemm_pick p = pick_gemm(layer, m, nq, nv);
    const clmha__kernel *kern = &layer->kern[CLMHA__K_GEMM(p.build, 1)];
    clmha_status st = clmha__set_args(ctx, kern, args, sizeof args / sizeof args[0]);
    if (st != CLMHA_OK) {
        return st;
    }
    const size_t items = (m + p.rows - 1) / p.rows * ((nq + nk + nv) / p.cols);
    return clmha__launch(ctx, kern, (items + p.wg - 1) / p.wg, p.wg);
}

bool clmha__project_qkv_blas_fits(const clmha_layer *layer, size_t m) {
    const size_t nq = layer->heads * layer->dk, nv = layer->heads * layer->dv;
    return layer->fuse_blas && !layer->ctx->own_gemm && !clmha__own_gemm_takes(layer, m, nq) &&
           !clmha__own_gemm_takes(layer, m, nv);
}

clmha_status clmha__project_qkv_blas_reserve(clmha_layer *layer, size_t m) {
    const size_t n = layer->heads * (2 * layer->dk + layer->dv);
    clmha_status st = CLMHA_OK;
    size_t rows_n;
    if (!clmha__mul(m, n, &rows_n)) {
        return clmha__fail(layer->ctx, CLMHA_ERR_OUT_OF_RANGE,
                           "the fused projection of %zu rows overflows", m);
    }
    size_t packed;
    if (!clmha__mul(layer->dq_in, n, &packed)) {
        return clmha__fail(layer->ctx, CLMHA_ERR_OUT_OF_RANGE,
                           "the packed query, key and value kernels (%zu x %zu) overflow",
                           layer->dq_in, n);
    }
    if (layer->w_qkv == NULL) {
        size_t cap = 0;
        if ((st = clmha__workspace(layer, &layer->w_qkv, &cap, packed)) != CLMHA_OK) {
            return st;
        }
        layer->qkv_packed = false;
    }
    if (layer->b_qkv == NULL && layer->weights[CLMHA_WEIGHT_QUERY_BIAS] != NULL) {
        size_t cap = 0;
        if ((st = clmha__workspace(layer, &layer->b_qkv, &cap, n)) != CLMHA_OK) {
            return st;
        }
        layer->qkv_packed = false;
    }
    return clmha__workspace(layer, &layer->ws_qkv, &layer->cap_qkv, rows_n);
}

/* Copies the query, key and value kernels (and biases) side by side into w_qkv (and b_qkv). */
static clmha_status pack_qkv(clmha_layer *layer) {
    const clmha_weight kernels[3] = {CLMHA_WEIGHT_QUERY_KERNEL, CLMHA_WEIGHT_KEY_KERNEL,
                                     CLMHA_WEIGHT_VALUE_KERNEL};
    const size_t widths[3] = {layer->heads * layer->dk, layer->heads * layer->dk,
                              layer->heads * layer->dv};
    cl_ulong n = widths[0] + widths[1] + widths[2], col0 = 0;
    for (int i = 0; i < 3; i++) {
        for (int bias = 0; bias < 2; bias++) {
            cl_mem src = layer->weights[kernels[i] + bias],
                   dst = bias ? layer->b_qkv : layer->w_qkv;
            if (src == NULL) {
                continue;
            }
            cl_ulong rows = bias ? 1 : layer->dq_in, cols = widths[i];
            const clmha__karg args[] = {CLMHA__ARG(src), CLMHA__ARG(rows), CLMHA__ARG(cols),
                                        CLMHA__ARG(dst), CLMHA__ARG(n),    CLMHA__ARG(col0)};
            size_t total = (size_t)(rows * cols);
            clmha_status st = clmha__set_args(layer->ctx, &layer->kern[CLMHA__K_PACK], args, 6);
            if (st == CLMHA_OK) {
                st = clmha__launch(layer->ctx, &layer->kern[CLMHA__K_PACK],
                                   (total + layer->wg_qkv - 1) / layer->wg_qkv, layer->wg_qkv);
            }
            if (st != CLMHA_OK) {
                return st;
            }
        }
        col0 += widths[i];
    }
    layer->qkv_packed = true;
    return CLMHA_OK;
}

clmha_status clmha__project_qkv_blas(clmha_layer *layer, cl_mem x, size_t x_off, size_t m) {
    clmha_context *ctx = layer->ctx;
    ctx->prof_category = CLMHA__PROF_PROJECTION;
    clmha_status st = layer->qkv_packed ? CLMHA_OK : pack_qkv(layer);
    cl_ulong rows = m, nq = layer->heads * layer->dk, nk = nq, nv = layer->heads * layer->dv;
    const size_t n = (size_t)(nq + nk + nv);
    if (st != CLMHA_OK ||
        (st = clmha__project(layer, "query/key/value", x, x_off, m, layer->dq_in, layer->w_qkv, n,
                             layer->b_qkv, layer->ws_qkv, 0)) != CLMHA_OK) {
        return st;
    }
    const clmha__karg args[] = {CLMHA__ARG(layer->ws_qkv),
                                CLMHA__ARG(rows),
                                CLMHA__ARG(nq),
                                CLMHA__ARG(nk),
                                CLMHA__ARG(nv),
                                CLMHA__ARG(layer->ws_q),
                                CLMHA__ARG(layer->ws_k),
                                CLMHA__ARG(layer->ws_v)};
    if ((st = clmha__set_args(ctx, &layer->kern[CLMHA__K_SPLIT_QKV], args, 8)) != CLMHA_OK) {
        return st;
    }
    const size_t total = m * n;
    return clmha__launch(ctx, &layer->kern[CLMHA__K_SPLIT_QKV],
                         (total + layer->wg_qkv - 1) / layer->wg_qkv, layer->wg_qkv);
}

clmha_status clmha__project(clmha_layer *layer, const char *what, cl_mem x, size_t x_off, size_t m,
                            size_t k, cl_mem w, size_t n, cl_mem bias, cl_mem y, size_t y_off) {
    clmha_context *ctx = layer->ctx;
    ctx->prof_category = CLMHA__PROF_PROJECTION;
    if (clmha__own_gemm_takes(layer, m, n)) {
        return own_gemm(layer, x, x_off, m, k, w, n, bias, y, y_off, false);
    }
    clmha_status st = fill_bias(layer, y, y_off, m, n, bias);
    if (st != CLMHA_OK) {
        return st;
    }
    cl_command_queue q = ctx->queue;
    cl_event *ev = clmha__prof_slot(ctx);
    cl_event marker = ev ? clmha__prof_marker(ctx) : NULL;
    CLBlastStatusCode s =
        CLBlastSgemm(CLBlastLayoutRowMajor, CLBlastTransposeNo, CLBlastTransposeNo, m, n, k, 1.0f,
                     x, x_off, k, w, 0, n, 1.0f, y, y_off, n, &q, ev);
    if (s == CLBlastSuccess) {
        clmha__prof_keep_span(ctx, marker, ev); /* CLBlast may run several kernels */
        if (!ctx->clblast_warm) {
            ctx->clblast_warm = true; /* CLBlast built its program in this call */
            ctx->stats.clblast_builds_in_calls++;
        }
    } else if (marker != NULL) {
        clReleaseEvent(marker);
    }
    if (clblast_refused(ctx, s)) {
        /* Nothing was enqueued, so the output still holds just the bias and the own kernel can
         * add the product. */
        return own_gemm(layer, x, x_off, m, k, w, n, bias, y, y_off, true);
    }
    if (s != CLBlastSuccess) {
        ctx->last_clblast_error = (int)s;
        return clmha__fail(ctx, CLMHA_ERR_CLBLAST,
                           "the %s projection (CLBlastSgemm m=%zu n=%zu k=%zu) failed with "
                           "CLBlast status %d",
                           what, m, n, k, (int)s);
    }
    return CLMHA_OK;
}
