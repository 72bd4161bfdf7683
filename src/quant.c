/*
 * quant.c - Keras's weight quantization of CachedMultiHeadAttention's four EinsumDense
 * sub-layers: "int8" (int8 kernels with one scale a column; the call quantizes each input row
 * too) and "int4" (two 4-bit weights a byte; Keras's default groups of 128 input rows with a
 * scale and a zero point each, or one scale a column): clmha_layer_quantize does to a float
 * layer what Keras's quantize does, in float32 exactly as Keras's NumPy code does, and
 * clmha__quant_install puts quantized kernels (from it or from a Keras file) on the device in
 * quant.cl's layouts. Also the quantized projections and reading the kernels back.
 */
#include "internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Keras's backend.epsilon(), as the float32 its quantizers add. */
#define KERAS_EPSILON 1e-7f

/* int4/<block> when the mode names no block: Keras's Int4QuantizationConfig default. */
#define INT4_DEFAULT_BLOCK 128

void clmha__qkernel_free(clmha__qkernel *q) {
    free(q->q);
    free(q->scale);
    free(q->zero);
    q->q = NULL;
    q->scale = NULL;
    q->zero = NULL;
}

clmha_status clmha__quant_mode(clmha_context *ctx, const char *fn, const char *mode, int *bits,
                               size_t *block) {
    if (mode == NULL) {
        return clmha__fail(ctx, CLMHA_ERR_NULL_ARGUMENT, "%s: mode is NULL", fn);
    }
    if (strcmp(mode, "int8") == 0) {
        *bits = 8;
        *block = 0;
        return CLMHA_OK;
    }
    *bits = 4;
    if (strcmp(mode, "int4") == 0) {
        *block = INT4_DEFAULT_BLOCK;
        return CLMHA_OK;
    }
    if (strcmp(mode, "int4/-1") == 0) {
        *block = 0;
        return CLMHA_OK;
    }
    size_t b = 0;
    if (strncmp(mode, "int4/", 5) == 0 && clmha__parse_index(mode + 5, &b) && b > 0 && b % 4 == 0 &&
        b <= ((size_t)1 << 30)) {
        *block = b;
        return CLMHA_OK;
    }
    return clmha__fail(ctx, CLMHA_ERR_INVALID_ARGUMENT,
                       "%s: mode \"%s\" is not a quantization mode; expected \"int8\", \"int4\" "
                       "(groups of 128 input rows, Keras's default), \"int4/N\" (groups of N "
                       "rows, N a positive multiple of 4) or \"int4/-1\" (one scale a column)",
                       fn, mode);
}

/* ---- Keras's quantizers, in float32 as its NumPy code computes them ---- */

static int8_t clip_round(float v, float lo, float hi) {
    float r = rintf(v); /* round half to even, as np.round */
    r = r < lo ? lo : r > hi ? hi : r;
    return (int8_t)r;
}

/* abs_max_quantize over the rows (axis 0) of w[k][n]: scale = top / (max |w| + eps) a column,
 * q = clip(round(w * scale), -top or -8, top). int8: top 127, range [-127, 127]; int4
 * per-channel: top 7, range [-8, 7]. */
static void quantize_columns(const float *w, clmha__qkernel *q, float top, float lo) {
    for (size_t c = 0; c < q->n; c++) {
        float mx = 0.0f;
        for (size_t r = 0; r < q->k; r++) {
            const float a = fabsf(w[r * q->n + c]);
            mx = a > mx ? a : mx;
        }
        const float s = top / (mx + KERAS_EPSILON);
        q->scale[c] = s;
        for (size_t r = 0; r < q->k; r++) {
            q->q[r * q->n + c] = clip_round(w[r * q->n + c] * s, lo, top);
        }
    }
}

/* abs_max_quantize_grouped_with_zero_point: groups of @p block rows (the last padded with zero
 * rows), per column scale = (max - min + eps) / 15, zero = clip(round(-min / scale) - 8, -8, 7),
 * q = clip(round(w / scale) + zero, -8, 7). */
static void quantize_groups(const float *w, clmha__qkernel *q, size_t block) {
    for (size_t g = 0; g < q->groups; g++) {
        const size_t r0 = g * block, r1 = r0 + block < q->k ? r0 + block : q->k;
        for (size_t c = 0; c < q->n; c++) {
            /* the padding rows are zeros: they take part in the minimum and maximum */
            float mn = r1 - r0 < block ? 0.0f : w[r0 * q->n + c], mx = mn;
            for (size_t r = r0; r < r1; r++) {
                const float v = w[r * q->n + c];
                mn = v < mn ? v : mn;
                mx = v > mx ? v : mx;
            }
            const float s = ((mx - mn) + KERAS_EPSILON) / 15.0f;
            const float z = (float)clip_round(rintf(-mn / s) + (-8.0f), -8.0f, 7.0f);
            q->scale[g * q->n + c] = s;
            q->zero[g * q->n + c] = (int8_t)z;
            for (size_t r = r0; r < r1; r++) {
                q->q[r * q->n + c] = clip_round(rintf(w[r * q->n + c] / s) + z, -8.0f, 7.0f);
            }
        }
    }
}

/* The rows (input width) and columns of projection @p i of the layer. */
static void proj_dims(const clmha_layer *l, int i, size_t *k, size_t *n) {
    const size_t ks[4] = {l->dq_in, l->dk_in, l->dv_in, l->heads * l->dv};
    const size_t ns[4] = {l->heads * l->dk, l->heads * l->dk, l->heads * l->dv, l->out_features};
    *k = ks[i];
    *n = ns[i];
}

/* Allocates the arrays of @p q for a k x n kernel in @p groups groups (zero points with
 * @p zero). */
static bool qkernel_alloc(clmha__qkernel *q, size_t k, size_t n, size_t groups, bool zero) {
    *q = (clmha__qkernel){k,
                          n,
                          groups,
                          malloc(k * n),
                          malloc(groups * n * sizeof(float)),
                          zero ? malloc(groups * n) : NULL};
    return q->q != NULL && q->scale != NULL && (!zero || q->zero != NULL);
}

/* ---- device layouts (quant.cl) ---- */

static size_t round4(size_t v) {
    return (v + 3) / 4 * 4;
}

/* How a k x n quantized kernel lies on the device: rows in steps of four, columns padded to 4
 * (GPUs, quant.cl), or panels of the columns a quant_cpu.cl work-item takes (int8 64, int4 16),
 * each panel's rows one after another (wide: devices whose own GEMM takes 32 columns: CPUs). */
typedef struct qlayout {
    bool wide;
    int bits;
    size_t kp, np, bytes; /* padded rows and columns, the kernel's bytes */
} qlayout;

static qlayout layout_of(bool wide, int bits, size_t k, size_t n) {
    /* wide: to whole panels (gemm_i8w's one-row build reads an int8 panel a work-item) */
    const size_t cols = bits == 8 ? CLMHA__QUANT_WIDE_COLS : 16;
    qlayout L = {wide, bits, wide ? k : round4(k), wide ? (n + cols - 1) / cols * cols : round4(n),
                 0};
    L.bytes = L.kp * L.np / (bits == 8 ? 1 : 2);
    return L;
}

/* The byte holding row r, column c, and the nibble's shift for int4. */
static size_t byte_at(const qlayout *L, size_t r, size_t c, int *shift) {
    if (L->wide) { /* panels of P columns, each panel's kp rows one after another */
        const size_t P = L->bits == 8 ? CLMHA__QUANT_WIDE_COLS : 16;
        *shift = c % 2 ? 4 : 0;
        return L->bits == 8 ? (c / P * L->kp + r) * P + c % P : (c / P * L->kp + r) * 8 + c % P / 2;
    }
    const size_t kq = r / 4, j = r % 4;
    *shift = j % 2 ? 4 : 0;
    return L->bits == 8 ? (kq * L->np + c) * 4 + j : (kq * L->np + c) * 2 + j / 2;
}

/* The kernel of @p q in layout @p L. NULL when out of memory. */
static unsigned char *pack_kernel(const clmha__qkernel *q, const qlayout *L) {
    unsigned char *out = calloc(L->bytes, 1);
    if (out == NULL) {
        return NULL;
    }
    for (size_t r = 0; r < q->k; r++) {
        for (size_t c = 0; c < q->n; c++) {
            const int8_t v = q->q[r * q->n + c];
            int shift;
            unsigned char *b = &out[byte_at(L, r, c, &shift)];
            const unsigned byte = L->bits == 8 ? (unsigned)(uint8_t)v
                                               : (unsigned)*b | (((unsigned)v & 0xFu) << shift);
            *b = (unsigned char)byte;
        }
    }
    return out;
}

/* The value of row r, column c in a kernel packed in layout @p L. */
static int8_t packed_at(const unsigned char *p, const qlayout *L, size_t r, size_t c) {
    int shift;
    const unsigned char b = p[byte_at(L, r, c, &shift)];
    if (L->bits == 8) {
        return (int8_t)b;
    }
    const unsigned nib = ((unsigned)b >> shift) & 0xFu;
    return (int8_t)(nib >= 8 ? (int)nib - 16 : (int)nib);
}

/* [groups][np] copies of the scales (padding 1) and zero points (padding 0). */
static bool pad_params(const clmha__qkernel *q, size_t np, float **scale, int8_t **zero) {
    *scale = malloc(q->groups * np * sizeof(float));
    *zero = calloc(q->groups * np, 1);
    if (*scale == NULL || *zero == NULL) {
        return false;
    }
    for (size_t g = 0; g < q->groups; g++) {
        for (size_t c = 0; c < np; c++) {
            (*scale)[g * np + c] = c < q->n ? q->scale[g * q->n + c] : 1.0f;
            if (q->zero != NULL && c < q->n) {
                (*zero)[g * np + c] = q->zero[g * q->n + c];
            }
        }
    }
    return true;
}

/* A new device buffer holding @p bytes of @p data. */
static clmha_status upload_new(clmha_context *ctx, const void *data, size_t bytes, const char *what,
                               cl_mem *out) {
    clmha_status st = clmha__buffer_create(ctx, bytes, what, out);
    if (st != CLMHA_OK) {
        return st;
    }
    cl_int err = clEnqueueWriteBuffer(ctx->queue, *out, CL_TRUE, 0, bytes, data, 0, NULL, NULL);
    if (err != CL_SUCCESS) {
        clReleaseMemObject(*out);
        *out = NULL;
        return clmha__fail_cl(ctx, err, what);
    }
    return CLMHA_OK;
}

/* The three device buffers of one quantized projection. */
typedef struct qbuffers {
    cl_mem kernel, scale, zero;
} qbuffers;

static void qbuffers_release(qbuffers *b) {
    cl_mem all[3] = {b->kernel, b->scale, b->zero};
    for (int i = 0; i < 3; i++) {
        if (all[i] != NULL) {
            clReleaseMemObject(all[i]);
        }
    }
    *b = (qbuffers){NULL, NULL, NULL};
}

/* Uploads projection @p q in quant.cl's layouts for @p bits. */
static clmha_status upload_qkernel(clmha_context *ctx, const clmha__qkernel *q, int bits, bool wide,
                                   qbuffers *b) {
    const qlayout L = layout_of(wide, bits, q->k, q->n);
    const size_t np = L.np;
    unsigned char *packed = pack_kernel(q, &L);
    float *scale = NULL;
    int8_t *zero = NULL;
    clmha_status st = CLMHA_OK;
    if (packed == NULL || !pad_params(q, np, &scale, &zero)) {
        st = clmha__fail(ctx, CLMHA_ERR_OUT_OF_HOST_MEMORY, "quantizing: out of memory");
    }
    if (st == CLMHA_OK) {
        st = upload_new(ctx, packed, L.bytes, "a quantized kernel", &b->kernel);
    }
    if (st == CLMHA_OK) {
        st = upload_new(ctx, scale, q->groups * np * sizeof(float), "a kernel scale", &b->scale);
    }
    if (st == CLMHA_OK && bits == 4) {
        st = upload_new(ctx, zero, q->groups * np, "a kernel zero point", &b->zero);
    }
    free(packed);
    free(scale);
    free(zero);
    if (st != CLMHA_OK) {
        qbuffers_release(b);
    }
    return st;
}

/* ---- installing ---- */

/* The groups of a k-row kernel for @p block (0: one). */
static size_t group_count(size_t k, size_t block) {
    return block == 0 ? 1 : (k + block - 1) / block;
}

/* Checks @p q against the layer's projections and its device's loop budget. */
static clmha_status check_qkernels(const clmha_layer *l, int bits, size_t block,
                                   const clmha__qkernel q[4]) {
    for (int i = 0; i < 4; i++) {
        size_t k, n;
        proj_dims(l, i, &k, &n);
        const bool zero = bits == 4 && block != 0;
        if (q[i].k != k || q[i].n != n || q[i].groups != (bits == 8 ? 1 : group_count(k, block)) ||
            (q[i].zero != NULL) != zero) {
            return clmha__fail(l->ctx, CLMHA_ERR_SHAPE_MISMATCH,
                               "quantized kernel %s is %zu x %zu in %zu groups; the layer "
                               "expects %zu x %zu in %zu",
                               clmha_weight_name((clmha_weight)(2 * i)), q[i].k, q[i].n,
                               q[i].groups, k, n, bits == 8 ? (size_t)1 : group_count(k, block));
        }
        /* a work-item loops over the input width (in steps of four but for the wide layout),
         * QUANT_ROWS rows each */
        if ((l->gemm_wide != 0 ? k : round4(k) / 4) * CLMHA__QUANT_ROWS > l->ctx->item_loops) {
            return clmha__fail(l->ctx, CLMHA_ERR_DEVICE_LIMIT,
                               "the quantized %s projection's input width %zu is past what one "
                               "work-item may loop over on device \"%s\" (%zu iterations)",
                               clmha_weight_name((clmha_weight)(2 * i)), k, l->ctx->info.name,
                               l->ctx->item_loops);
        }
    }
    return CLMHA_OK;
}

/* Builds quant.cl's kernels for @p bits (quantize_rows with the largest power-of-two
 * work-group up to 64 it allows). */
static clmha_status build_quant_kernels(clmha_layer *l, int bits, size_t block) {
    l->quant_bits = bits;
    l->quant_block = block;
    l->quant_wide = l->gemm_wide != 0;
    size_t wg = 64;
    while (wg > l->ctx->info.max_work_group_size && wg > 1) {
        wg /= 2;
    }
    for (int attempt = 0; attempt < 2; attempt++) {
        l->wg_quant = wg;
        clmha_status st = clmha__build_kernels_in(l, CLMHA__K_QUANT_ROWS, CLMHA__K_QUANT_QKV + 1);
        if (st != CLMHA_OK) {
            return st;
        }
        const clmha__kernel *k = &l->kern[CLMHA__K_QUANT_ROWS];
        if (k->k == NULL || k->max_wg >= wg) {
            return CLMHA_OK;
        }
        for (wg = 1; wg * 2 <= k->max_wg; wg *= 2) {
        }
    }
    return clmha__fail(l->ctx, CLMHA_ERR_DEVICE_LIMIT,
                       "quantize_rows allows no work-group of %zu work-items on device \"%s\"",
                       l->wg_quant, l->ctx->info.name);
}

/* CLMHA_OK where @p l can be quantized: a float32 layer not quantized yet; else the reason,
 * with @p fn leading the message. */
static clmha_status quantizable(const clmha_layer *l, const char *fn) {
    if (l->w16 != 0) {
        return clmha__fail(l->ctx, CLMHA_ERR_INVALID_ARGUMENT,
                           "%sthe layer's dtype policy is %s; clmha quantizes float32 layers, as "
                           "Keras does",
                           fn, clmha_dtype_policy_name(l->cfg.dtype_policy));
    }
    if (l->quant_bits != 0) {
        return clmha__fail(l->ctx, CLMHA_ERR_INVALID_ARGUMENT,
                           "%sthe layer is already quantized (%s); Keras quantizes a layer once",
                           fn, clmha_layer_quantization(l));
    }
    return CLMHA_OK;
}

/* An int8 layer in the wide layout (CPUs) whose float layer had gemm_tail (the setting on, its
 * merged rows within local memory) gets gemm_tail's int8 build: the merge, the quantized
 * output projection and the splice in one launch, one row a work-item and 64 columns; any
 * other quantized layer ends its calls with the merge, the output projection and commit. Not
 * having it is no error: a build or limit that fails leaves it off. */
static void build_int8_tail(clmha_layer *l) {
    l->use_tail_few = false;
    l->use_tail = l->use_tail && l->quant_bits == 8 && l->quant_wide;
    l->tail_cols = CLMHA__QUANT_WIDE_COLS;
    l->wg_tail = 1;
    bool ok = l->use_tail;
    if (ok &&
        clmha__build_kernels_in(l, CLMHA__K_TAIL_FIRST, CLMHA__K_TAIL_FIRST + 4) != CLMHA_OK) {
        clmha__log(l->ctx, CLMHA_LOG_INFO, "the int8 gemm_tail is off: %s", clmha_last_error());
        ok = false;
    }
    for (int half = 0; half < (l->narrow_cache ? 2 : 1) && ok; half++) {
        const clmha__kernel *k = &l->kern[CLMHA__K_TAIL(0, half)];
        if (k->k == NULL || k->local_mem > l->ctx->info.local_mem_bytes) {
            clmha__log(l->ctx, CLMHA_LOG_INFO,
                       "the int8 gemm_tail is off: it needs %llu bytes of local memory",
                       (unsigned long long)k->local_mem);
            ok = false;
        }
    }
    if (!ok) {
        l->use_tail = false;
        for (int id = CLMHA__K_TAIL_FIRST; id < CLMHA__K_TAIL_FIRST + 4; id++) {
            clmha__kernel_release(&l->kern[id]);
        }
    }
}

clmha_status clmha__quant_install(clmha_layer *l, int bits, size_t block,
                                  const clmha__qkernel q[4]) {
    clmha_status st = quantizable(l, "");
    if (st != CLMHA_OK) {
        return st;
    }
    st = check_qkernels(l, bits, block, q);
    if (st != CLMHA_OK) {
        return st;
    }
    qbuffers b[4] = {{NULL, NULL, NULL}};
    for (int i = 0; i < 4 && st == CLMHA_OK; i++) {
        st = upload_qkernel(l->ctx, &q[i], bits, l->gemm_wide != 0, &b[i]);
    }
    if (st == CLMHA_OK) {
        st = build_quant_kernels(l, bits, block);
    }
    if (st != CLMHA_OK) {
        l->quant_bits = 0;
        l->quant_block = 0;
        l->quant_wide = false;
        for (int id = CLMHA__K_QUANT_ROWS; id < CLMHA__K_QUANT_QKV + 1; id++) {
            clmha__kernel_release(&l->kern[id]);
        }
        for (int i = 0; i < 4; i++) {
            qbuffers_release(&b[i]);
        }
        return st;
    }
    clFinish(l->ctx->queue); /* queued calls may still read the float kernels */
    for (int i = 0; i < 4; i++) {
        clReleaseMemObject(l->weights[2 * i]);
        l->weights[2 * i] = b[i].kernel;
        l->qscale[i] = b[i].scale;
        l->qzero[i] = b[i].zero;
    }
    /* quant.cl takes every projection: no fused CLBlast product, no float gemm_tail */
    l->fuse_blas = false;
    build_int8_tail(l);
    return CLMHA_OK;
}

/* ---- the public functions ---- */

const char *clmha_layer_quantization(const clmha_layer *l) {
    static _Thread_local char name[32];
    if (l == NULL || l->quant_bits == 0) {
        return "";
    }
    if (l->quant_bits == 8) {
        return "int8";
    }
    if (l->quant_block == 0) {
        return "int4/-1";
    }
    snprintf(name, sizeof name, "int4/%zu", l->quant_block);
    return name;
}

/* Quantizes projection @p i's float kernel @p w as Keras does for @p bits / @p block. */
static bool quantize_kernel(const clmha_layer *l, int i, const float *w, int bits, size_t block,
                            clmha__qkernel *q) {
    size_t k, n;
    proj_dims(l, i, &k, &n);
    const bool groups = bits == 4 && block != 0;
    if (!qkernel_alloc(q, k, n, groups ? group_count(k, block) : 1, groups)) {
        return false;
    }
    if (bits == 8) {
        quantize_columns(w, q, 127.0f, -127.0f);
    } else if (!groups) {
        quantize_columns(w, q, 7.0f, -8.0f);
    } else {
        quantize_groups(w, q, block);
    }
    return true;
}

clmha_status clmha_layer_quantize(clmha_layer *l, const char *mode) {
    if (l == NULL) {
        return clmha__fail(NULL, CLMHA_ERR_NULL_ARGUMENT, "clmha_layer_quantize: layer is NULL");
    }
    int bits;
    size_t block;
    clmha_status st = clmha__quant_mode(l->ctx, "clmha_layer_quantize", mode, &bits, &block);
    if (st != CLMHA_OK || (st = quantizable(l, "clmha_layer_quantize: ")) != CLMHA_OK) {
        return st;
    }
    clmha__qkernel q[4];
    memset(q, 0, sizeof q);
    float *w = NULL;
    for (int i = 0; i < 4 && st == CLMHA_OK; i++) {
        size_t k, n;
        proj_dims(l, i, &k, &n);
        float *grown = realloc(w, k * n * sizeof(float));
        if (grown == NULL) {
            st = clmha__fail(l->ctx, CLMHA_ERR_OUT_OF_HOST_MEMORY,
                             "clmha_layer_quantize: out of memory");
            break;
        }
        w = grown;
        st = clmha_layer_get_weight(l, (clmha_weight)(2 * i), w, k * n);
        if (st == CLMHA_OK && !quantize_kernel(l, i, w, bits, block, &q[i])) {
            st = clmha__fail(l->ctx, CLMHA_ERR_OUT_OF_HOST_MEMORY,
                             "clmha_layer_quantize: out of memory");
        }
    }
    free(w);
    if (st == CLMHA_OK) {
        st = clmha__quant_install(l, bits, block, q);
    }
    for (int i = 0; i < 4; i++) {
        clmha__qkernel_free(&q[i]);
    }
    return st;
}

clmha_status clmha__quant_get(const clmha_layer *l, clmha_weight w, float *data) {
    size_t k, n;
    proj_dims(l, (int)w / 2, &k, &n);
    const qlayout L = layout_of(l->quant_wide, l->quant_bits, k, n);
    const size_t bytes = L.bytes;
    unsigned char *p = malloc(bytes);
    if (p == NULL) {
        return clmha__fail(l->ctx, CLMHA_ERR_OUT_OF_HOST_MEMORY,
                           "clmha_layer_get_weight: out of memory");
    }
    cl_int err =
        clEnqueueReadBuffer(l->ctx->queue, l->weights[w], CL_TRUE, 0, bytes, p, 0, NULL, NULL);
    if (err == CL_SUCCESS) {
        for (size_t r = 0; r < k; r++) {
            for (size_t c = 0; c < n; c++) {
                data[r * n + c] = (float)packed_at(p, &L, r, c);
            }
        }
    }
    free(p);
    return err == CL_SUCCESS ? CLMHA_OK
                             : clmha__fail_cl(l->ctx, err, "clmha_layer_get_weight: reading");
}

/* ---- calls ---- */

clmha_status clmha__quant_reserve(clmha_layer *l, size_t m) {
    if (l->quant_bits != 8) {
        return CLMHA_OK;
    }
    size_t kmax = 0, rows;
    for (int i = 0; i < 4; i++) {
        size_t k, n;
        proj_dims(l, i, &k, &n);
        kmax = round4(k) > kmax ? round4(k) : kmax;
    }
    if (!clmha__mul(m, kmax, &rows)) {
        return clmha__fail(l->ctx, CLMHA_ERR_OUT_OF_RANGE,
                           "the projections' quantized inputs of %zu rows overflow", m);
    }
    clmha_status st = clmha__workspace(l, &l->ws_xq, &l->cap_xq, (rows + 3) / 4);
    return st != CLMHA_OK ? st : clmha__workspace(l, &l->ws_xs, &l->cap_xs, m);
}

/* int8: quantize_rows over the m input rows into ws_xq / ws_xs. */
static clmha_status quantize_inputs(clmha_layer *l, cl_mem x, size_t x_off, size_t m, size_t k) {
    cl_ulong off = x_off, kk = k, kp = round4(k);
    const clmha__karg args[] = {CLMHA__ARG(x),  CLMHA__ARG(off),      CLMHA__ARG(kk),
                                CLMHA__ARG(kp), CLMHA__ARG(l->ws_xq), CLMHA__ARG(l->ws_xs)};
    const clmha__kernel *kern = &l->kern[CLMHA__K_QUANT_ROWS];
    clmha_status st = clmha__set_args(l->ctx, kern, args, 6);
    return st != CLMHA_OK ? st : clmha__launch(l->ctx, kern, m, l->wg_quant);
}

/* Sets gemm_i8 / gemm_i8w's arguments for projection @p proj of @p m rows into y. */
static clmha_status args_i8(clmha_layer *l, const clmha__kernel *kern, int proj, const qlayout *L,
                            size_t m, size_t k, size_t n, cl_mem y, size_t y_off) {
    cl_mem bias = l->weights[2 * proj + 1];
    cl_int has_bias = bias != NULL;
    cl_ulong mm = m, kp = round4(k), kk = k, nn = n, np = L->np, yo = y_off;
    clmha__karg args[13] = {CLMHA__ARG(l->ws_xq), CLMHA__ARG(l->ws_xs), CLMHA__ARG(mm),
                            CLMHA__ARG(kp)};
    size_t a = 4;
    if (L->wide) {
        args[a++] = (clmha__karg)CLMHA__ARG(kk);
    }
    const clmha__karg rest[] = {CLMHA__ARG(l->weights[2 * proj]),
                                CLMHA__ARG(l->qscale[proj]),
                                CLMHA__ARG(nn),
                                CLMHA__ARG(np),
                                CLMHA__ARG(bias),
                                CLMHA__ARG(has_bias),
                                CLMHA__ARG(y),
                                CLMHA__ARG(yo)};
    memcpy(args + a, rest, sizeof rest);
    return clmha__set_args(l->ctx, kern, args, a + 8);
}

/* Sets gemm_q4 / gemm_q4w's arguments: groups of steps of four rows (GPU layout) or of rows
 * (wide), one group spanning all rows for the per-channel mode. */
static clmha_status args_q4(clmha_layer *l, const clmha__kernel *kern, int proj, const qlayout *L,
                            cl_mem x, size_t x_off, size_t m, size_t k, size_t n, cl_mem y,
                            size_t y_off) {
    cl_mem bias = l->weights[2 * proj + 1];
    cl_int has_bias = bias != NULL;
    const size_t block = l->quant_block == 0 ? round4(k) : l->quant_block;
    cl_ulong mm = m, kk = k, nn = n, np = L->np, yo = y_off, xo = x_off;
    cl_ulong span = L->wide ? block : block / 4, groups = group_count(k, l->quant_block);
    const clmha__karg args[] = {CLMHA__ARG(x),
                                CLMHA__ARG(xo),
                                CLMHA__ARG(mm),
                                CLMHA__ARG(kk),
                                CLMHA__ARG(l->weights[2 * proj]),
                                CLMHA__ARG(l->qscale[proj]),
                                CLMHA__ARG(l->qzero[proj]),
                                CLMHA__ARG(nn),
                                CLMHA__ARG(np),
                                CLMHA__ARG(span),
                                CLMHA__ARG(groups),
                                CLMHA__ARG(bias),
                                CLMHA__ARG(has_bias),
                                CLMHA__ARG(y),
                                CLMHA__ARG(yo)};
    return clmha__set_args(l->ctx, kern, args, sizeof args / sizeof args[0]);
}

size_t clmha__quant_out_np(const clmha_layer *l) {
    return layout_of(l->quant_wide, l->quant_bits, l->heads * l->dv, l->out_features).np;
}

bool clmha__project_quant_qkv_fits(const clmha_layer *l, size_t m) {
    return l->quant_bits == 8 && l->quant_wide && m <= CLMHA__QUANT_ONE_ROW_MAX &&
           l->kern[CLMHA__K_QUANT_QKV].k != NULL && l->dq_in == l->dk_in && l->dq_in == l->dv_in;
}

clmha_status clmha__project_quant_qkv(clmha_layer *l, cl_mem x, size_t x_off, size_t m) {
    clmha_context *ctx = l->ctx;
    ctx->prof_category = CLMHA__PROF_PROJECTION;
    const size_t k = l->dq_in, nq = l->heads * l->dk, nv = l->heads * l->dv;
    clmha_status st = CLMHA_OK;
    if (!clmha__prepared(l, x, x_off, m, k) &&
        (st = quantize_inputs(l, x, x_off, m, k)) != CLMHA_OK) {
        return st;
    }
    const qlayout Lq = layout_of(true, 8, k, nq), Lv = layout_of(true, 8, k, nv);
    const cl_mem *w = l->weights;
    cl_int has_bias = w[CLMHA_WEIGHT_QUERY_BIAS] != NULL;
    cl_ulong mm = m, kp = round4(k), kk = k, nnq = nq, nnv = nv, npq = Lq.np, npv = Lv.np;
    const clmha__karg args[] = {CLMHA__ARG(l->ws_xq),
                                CLMHA__ARG(l->ws_xs),
                                CLMHA__ARG(mm),
                                CLMHA__ARG(kp),
                                CLMHA__ARG(kk),
                                CLMHA__ARG(w[CLMHA_WEIGHT_QUERY_KERNEL]),
                                CLMHA__ARG(w[CLMHA_WEIGHT_KEY_KERNEL]),
                                CLMHA__ARG(w[CLMHA_WEIGHT_VALUE_KERNEL]),
                                CLMHA__ARG(l->qscale[0]),
                                CLMHA__ARG(l->qscale[1]),
                                CLMHA__ARG(l->qscale[2]),
                                CLMHA__ARG(w[CLMHA_WEIGHT_QUERY_BIAS]),
                                CLMHA__ARG(w[CLMHA_WEIGHT_KEY_BIAS]),
                                CLMHA__ARG(w[CLMHA_WEIGHT_VALUE_BIAS]),
                                CLMHA__ARG(has_bias),
                                CLMHA__ARG(l->ws_q),
                                CLMHA__ARG(l->ws_k),
                                CLMHA__ARG(l->ws_v),
                                CLMHA__ARG(nnq),
                                CLMHA__ARG(nnq),
                                CLMHA__ARG(nnv),
                                CLMHA__ARG(npq),
                                CLMHA__ARG(npq),
                                CLMHA__ARG(npv)};
    const clmha__kernel *kern = &l->kern[CLMHA__K_QUANT_QKV];
    if ((st = clmha__set_args(ctx, kern, args, sizeof args / sizeof args[0])) != CLMHA_OK) {
        return st;
    }
    /* one work-item a group, as the wide products (see clmha__project_quant) */
    return clmha__launch(ctx, kern, m * (2 * npq + npv) / CLMHA__QUANT_WIDE_COLS, 1);
}

clmha_status clmha__project_quant(clmha_layer *l, int proj, cl_mem x, size_t x_off, size_t m,
                                  cl_mem y, size_t y_off) {
    clmha_context *ctx = l->ctx;
    ctx->prof_category = CLMHA__PROF_PROJECTION;
    size_t k, n;
    proj_dims(l, proj, &k, &n);
    /* ws_xq / ws_xs were reserved for the call's rows (attention.c's reserve) */
    clmha_status st = CLMHA_OK;
    if (l->quant_bits == 8 && !clmha__prepared(l, x, x_off, m, k) &&
        (st = quantize_inputs(l, x, x_off, m, k)) != CLMHA_OK) {
        return st;
    }
    const bool many = m > CLMHA__QUANT_ONE_ROW_MAX;
    const qlayout L = layout_of(l->quant_wide, l->quant_bits, k, n);
    const clmha__kernel *kern = &l->kern[CLMHA__K_QUANT(l->quant_bits, many)];
    st = l->quant_bits == 8 ? args_i8(l, kern, proj, &L, m, k, n, y, y_off)
                            : args_q4(l, kern, proj, &L, x, x_off, m, k, n, y, y_off);
    if (st != CLMHA_OK) {
        return st;
    }
    /* columns a work-item: 4 (GPU layout), 64 (the wide int8 one-row build) or 16; the wide
     * (CPU) layout one work-item a group, as the own GEMM's wide builds: a CPU runs a
     * work-group on one thread, so fewer groups than threads would leave cores idle */
    size_t cols = 4, wg = l->wg_gemm < kern->max_wg ? l->wg_gemm : kern->max_wg;
    if (L.wide) {
        cols = l->quant_bits == 8 && !many ? CLMHA__QUANT_WIDE_COLS : 16;
        wg = 1;
    }
    const size_t rb = many ? CLMHA__QUANT_ROWS : 1, items = L.np / cols * ((m + rb - 1) / rb);
    return clmha__launch(ctx, kern, (items + wg - 1) / wg, wg);
}
