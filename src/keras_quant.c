/*
 * keras_quant.c - Keras's quantized attention layers in a .weights.h5 file: telling an "int8"
 * layer (int8 kernels of the float kernels' shapes, [bias], kernel_scale) from an "int4" one
 * (kernels packed two values a byte as [rows, ceil(columns / 2)], [bias], kernel_scale, and for
 * sub-channel groups kernel_zero and g_idx), the order EinsumDense's save_own_variables writes
 * them in, and reading them into clmha__qkernel arrays for clmha__quant_install. Every array is
 * checked; a file that breaks Keras's layout is refused with the reason.
 */
#include "keras_h5.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Where one quantized sub-layer keeps its variables. */
typedef struct sub_layout {
    int bits;                     /* 8 or 4 */
    bool has_bias, groups;        /* vars/1 is a bias; int4 with zero points and g_idx */
    int scale_idx;                /* kernel_scale's index (zero points and g_idx follow) */
    ds_shape kernel, scale, zero; /* zero: int4 groups only */
    size_t rows, cols;            /* the kernel's reduced and kept sizes */
} sub_layout;

/* The number of variables vars/0.. of a sub-layer (up to 8). */
static int count_vars(hid_t file, const char *group, const char *sub) {
    int n = 0;
    while (n < 8 && clmha__h5_var_exists(file, group, sub, n)) {
        n++;
    }
    return n;
}

/* Reads sub-layer @p i's layout; false with the reason in @p why. */
static bool sub_layout_of(hid_t file, const char *group, int i, sub_layout *s, char *why,
                          size_t why_len) {
    const char *sub = clmha__keras_sublayers[i];
    memset(s, 0, sizeof *s);
    if (!clmha__h5_var_shape(file, group, sub, 0, true, &s->kernel)) {
        snprintf(why, why_len,
                 "%s/vars/0 is not an int8 array while query_dense's is (a layer quantized in "
                 "part)",
                 sub);
        return false;
    }
    const int nv = count_vars(file, group, sub);
    s->bits = s->kernel.rank == 2 ? 4 : 8;
    const bool ok_count = s->bits == 8 ? nv == 2 || nv == 3 : nv >= 2 && nv <= 5;
    if (!ok_count) {
        snprintf(why, why_len,
                 "%s has %d variables; Keras's int8 layers have 2 or 3 and its int4 ones 2 to 5",
                 sub, nv);
        return false;
    }
    s->groups = s->bits == 4 && nv >= 4;
    s->has_bias = s->groups ? nv == 5 : nv == 3;
    s->scale_idx = s->has_bias ? 2 : 1;
    if (!clmha__h5_dataset_shape(file, group, sub, s->scale_idx, &s->scale) ||
        (s->groups && (!clmha__h5_var_shape(file, group, sub, s->scale_idx + 1, true, &s->zero) ||
                       s->zero.numel != s->scale.numel))) {
        snprintf(why, why_len, "%s's kernel_scale%s not of a usable type and shape", sub,
                 s->groups ? " or kernel_zero is" : " is");
        return false;
    }
    if (s->bits == 8) {
        /* the reduced dims: the first of query/key/value (D, H, d), the first two of the
         * output's (H, dv, *out) */
        const int reduced = i == 3 ? 2 : 1;
        s->rows = 1;
        s->cols = 1;
        for (int d = 0; d < s->kernel.rank; d++) {
            *(d < reduced ? &s->rows : &s->cols) *= s->kernel.dims[d];
        }
        /* Keras's int8 kernel_scale is the kept dims behind leading 1s, (1, 1, H, d) or
         * (1, 1, *out): a bias (the kept dims alone) in its place is no scale */
        const int kept = s->kernel.rank - reduced, lead = s->scale.rank - kept;
        bool scale_ok = lead >= 1;
        for (int d = 0; scale_ok && d < s->scale.rank; d++) {
            scale_ok = d < lead ? s->scale.dims[d] == 1
                                : s->scale.dims[d] == s->kernel.dims[reduced + d - lead];
        }
        if (!scale_ok) {
            snprintf(why, why_len, "%s's kernel_scale (vars/%d) is not of Keras's int8 shape", sub,
                     s->scale_idx);
            return false;
        }
    } else {
        s->rows = s->kernel.dims[0];
        s->cols = s->groups ? s->scale.dims[s->scale.rank - 1] : s->scale.numel;
        if ((s->cols + 1) / 2 != s->kernel.dims[1]) {
            snprintf(why, why_len, "%s's packed kernel has %zu bytes a row for %zu columns", sub,
                     s->kernel.dims[1], s->cols);
            return false;
        }
    }
    if (s->kernel.rank < 2 || (!s->groups && s->scale.numel != s->cols) ||
        (s->groups && (s->scale.rank != 2 || s->scale.numel % s->cols != 0))) {
        snprintf(why, why_len, "%s's kernel_scale has %zu values for %zu columns", sub,
                 s->scale.numel, s->cols);
        return false;
    }
    return true;
}

/* The rows a g_idx group holds, where g_idx (vars/<idx>) is Keras's floor(r / block) for some
 * block of the layer's groups; 0 when it is not. */
static size_t group_block(hid_t file, const char *group, const char *sub, int idx, size_t rows,
                          size_t groups) {
    ds_shape g;
    if (!clmha__h5_dataset_shape(file, group, sub, idx, &g) || g.numel != rows) {
        return 0;
    }
    float *v = malloc(rows * sizeof(float));
    size_t block = 0;
    if (v != NULL && clmha__h5_read_var(file, group, sub, idx, H5T_NATIVE_FLOAT, v)) {
        while (block < rows && v[block] == 0.0f) {
            block++;
        }
        for (size_t r = 0; r < rows && block > 0; r++) {
            block = v[r] == (float)(r / block) ? block : 0;
        }
        if (block > 0 && (rows + block - 1) / block != groups) {
            block = 0;
        }
    }
    free(v);
    return block;
}

/* The layer-wide group size of an int4 layer with groups (from its sub-layers' g_idx; the
 * widest input rounded up to 4 where every group spans all its rows); 0 with @p why. */
static size_t layer_block(hid_t file, const char *group, const sub_layout s[4], char *why,
                          size_t why_len) {
    size_t block = 0, widest = 0;
    for (int i = 0; i < 4; i++) {
        const size_t g = s[i].scale.dims[0];
        const size_t b =
            group_block(file, group, clmha__keras_sublayers[i], s[i].scale_idx + 2, s[i].rows, g);
        if (b == 0) {
            snprintf(why, why_len, "%s's g_idx is not Keras's groups of consecutive input rows",
                     clmha__keras_sublayers[i]);
            return 0;
        }
        widest = s[i].rows > widest ? s[i].rows : widest;
        if (g > 1) {
            if (block != 0 && b != block) {
                snprintf(why, why_len, "its sub-layers' int4 groups differ (%zu and %zu rows)",
                         block, b);
                return 0;
            }
            block = b;
        }
    }
    block = block != 0 ? block : (widest + 3) / 4 * 4;
    if (block % 4 != 0) {
        snprintf(why, why_len,
                 "its int4 groups of %zu rows are not a multiple of 4 (clmha's "
                 "int4 kernels take groups of whole steps of 4 rows)",
                 block);
        return 0;
    }
    return block;
}

/* Heads and head dims of an int4 layer, which its packed kernels do not keep: from the query
 * and value biases (H, dk) and (H, dv), the output shape from the output bias; 0 without them. */
static void int4_dims(hid_t file, const char *group, const sub_layout s[4],
                      clmha_keras_layer_info *info) {
    ds_shape qb, vb, ob;
    info->output_rank = 1;
    info->output_shape[0] = s[3].cols;
    if (s[3].has_bias && clmha__h5_dataset_shape(file, group, "output_dense", 1, &ob) &&
        ob.numel == s[3].cols) {
        info->output_rank = ob.rank;
        memcpy(info->output_shape, ob.dims, (size_t)ob.rank * sizeof(size_t));
    }
    if (s[0].has_bias && s[2].has_bias &&
        clmha__h5_dataset_shape(file, group, "query_dense", 1, &qb) &&
        clmha__h5_dataset_shape(file, group, "value_dense", 1, &vb) && qb.rank == 2 &&
        vb.rank == 2 && qb.dims[0] == vb.dims[0] && qb.dims[0] <= 65536 && qb.dims[1] <= 65536 &&
        vb.dims[1] <= 65536) {
        info->num_heads = (int)qb.dims[0];
        info->head_key_dim = (int)qb.dims[1];
        info->head_value_dim = (int)vb.dims[1];
    }
}

bool clmha__keras_describe_quant(hid_t file, const char *group, clmha_keras_layer_info *info,
                                 char *why, size_t why_len) {
    sub_layout s[4];
    for (int i = 0; i < 4; i++) {
        if (!sub_layout_of(file, group, i, &s[i], why, why_len)) {
            return false;
        }
        if (s[i].bits != s[0].bits || s[i].groups != s[0].groups) {
            snprintf(why, why_len, "its sub-layers are quantized in different modes");
            return false;
        }
    }
    memset(info, 0, sizeof *info);
    snprintf(info->path, sizeof info->path, "%s", group);
    info->use_bias = s[0].has_bias || s[1].has_bias || s[2].has_bias || s[3].has_bias;
    info->query_dim = s[0].rows;
    info->key_dim = s[1].rows;
    info->value_dim = s[2].rows;
    if (s[0].bits == 8) {
        const ds_shape *q = &s[0].kernel, *k = &s[1].kernel, *v = &s[2].kernel, *o = &s[3].kernel;
        if (q->rank != 3 || k->rank != 3 || v->rank != 3 || o->rank < 3 ||
            k->dims[1] != q->dims[1] || k->dims[2] != q->dims[2] || v->dims[1] != q->dims[1] ||
            o->dims[0] != q->dims[1] || o->dims[1] != v->dims[2] || q->dims[1] > 65536 ||
            q->dims[2] > 65536 || v->dims[2] > 65536) {
            snprintf(why, why_len, "its int8 kernels' shapes do not form an attention layer");
            return false;
        }
        info->num_heads = (int)q->dims[1];
        info->head_key_dim = (int)q->dims[2];
        info->head_value_dim = (int)v->dims[2];
        info->output_rank = o->rank - 2;
        memcpy(info->output_shape, o->dims + 2, (size_t)info->output_rank * sizeof(size_t));
        snprintf(info->quantization, sizeof info->quantization, "int8");
        return true;
    }
    int4_dims(file, group, s, info);
    if (!s[0].groups) {
        snprintf(info->quantization, sizeof info->quantization, "int4/-1");
        return true;
    }
    const size_t block = layer_block(file, group, s, why, why_len);
    if (block == 0) {
        return false;
    }
    snprintf(info->quantization, sizeof info->quantization, "int4/%zu", block);
    return true;
}

/* Reads sub-layer @p i's kernel, scales and zero points into @p q (k x n, the layer's). */
static clmha_status read_sub(clmha_context *ctx, hid_t file, const char *path,
                             const clmha_keras_layer_info *info, const sub_layout *s, int i,
                             size_t k, size_t n, size_t groups, clmha__qkernel *q) {
    const char *sub = clmha__keras_sublayers[i];
    if (s->rows != k || s->cols != n || s->scale.numel != groups * n) {
        return clmha__fail(ctx, CLMHA_ERR_SHAPE_MISMATCH,
                           "%s of layer \"%s\" in \"%s\" is quantized as %zu x %zu in %zu "
                           "groups; the clmha layer expects %zu x %zu in %zu",
                           sub, info->path, path, s->rows, s->cols, s->scale.numel / s->cols, k, n,
                           groups);
    }
    *q = (clmha__qkernel){k,
                          n,
                          groups,
                          malloc(k * n),
                          malloc(groups * n * sizeof(float)),
                          s->groups ? malloc(groups * n) : NULL};
    int8_t *raw = s->bits == 4 ? malloc(s->kernel.numel) : NULL;
    if (q->q == NULL || q->scale == NULL || (s->groups && q->zero == NULL) ||
        (s->bits == 4 && raw == NULL)) {
        free(raw);
        return clmha__fail(ctx, CLMHA_ERR_OUT_OF_HOST_MEMORY, "reading weights: out of memory");
    }
    bool ok = clmha__h5_read_var(file, info->path, sub, 0, H5T_NATIVE_SCHAR, raw ? raw : q->q) &&
              clmha__h5_read_var(file, info->path, sub, s->scale_idx, H5T_NATIVE_FLOAT, q->scale) &&
              (!s->groups || clmha__h5_read_var(file, info->path, sub, s->scale_idx + 1,
                                                H5T_NATIVE_SCHAR, q->zero));
    if (ok && raw != NULL) {
        /* Keras's pack_int4 along the columns: column 2j in the low nibble, 2j + 1 the high */
        const size_t nb = (n + 1) / 2;
        for (size_t r = 0; r < k; r++) {
            for (size_t c = 0; c < n; c++) {
                const unsigned b = (unsigned char)raw[r * nb + c / 2];
                const unsigned nib = (c % 2 ? b >> 4 : b) & 0xFu;
                q->q[r * n + c] = (int8_t)(nib >= 8 ? (int)nib - 16 : (int)nib);
            }
        }
    }
    free(raw);
    if (!ok) {
        return clmha__fail(ctx, CLMHA_ERR_IO, "reading %s of layer \"%s\" from \"%s\" failed", sub,
                           info->path, path);
    }
    for (size_t j = 0; j < groups * n; j++) {
        if (!isfinite(q->scale[j]) || q->scale[j] == 0.0f) {
            return clmha__fail(ctx, CLMHA_ERR_INVALID_ARGUMENT,
                               "%s's kernel_scale of layer \"%s\" in \"%s\" is %g at element %zu; "
                               "expected a finite nonzero scale",
                               sub, info->path, path, (double)q->scale[j], j);
        }
    }
    return CLMHA_OK;
}

/* Reads sub-layer @p i's bias (vars/1 where it has one, else zeros) of @p n floats. */
static clmha_status read_bias(clmha_context *ctx, hid_t file, const char *path,
                              const clmha_keras_layer_info *info, const sub_layout *s, int i,
                              size_t n, float **out) {
    *out = calloc(n, sizeof(float));
    if (*out == NULL) {
        return clmha__fail(ctx, CLMHA_ERR_OUT_OF_HOST_MEMORY, "reading weights: out of memory");
    }
    ds_shape b;
    if (!s->has_bias) {
        return CLMHA_OK;
    }
    if (!clmha__h5_dataset_shape(file, info->path, clmha__keras_sublayers[i], 1, &b) ||
        b.numel != n) {
        return clmha__fail(ctx, CLMHA_ERR_SHAPE_MISMATCH,
                           "%s/vars/1 (the bias) of layer \"%s\" in \"%s\" is not a float array "
                           "of %zu values",
                           clmha__keras_sublayers[i], info->path, path, n);
    }
    if (!clmha__h5_read_var(file, info->path, clmha__keras_sublayers[i], 1, H5T_NATIVE_FLOAT,
                            *out)) {
        return clmha__fail(ctx, CLMHA_ERR_IO, "reading the bias of %s from \"%s\" failed",
                           clmha__keras_sublayers[i], path);
    }
    for (size_t j = 0; j < n; j++) {
        if (!isfinite((*out)[j])) {
            return clmha__fail(ctx, CLMHA_ERR_INVALID_ARGUMENT,
                               "%s/vars/1 of layer \"%s\" in \"%s\" holds NaN or Inf at element "
                               "%zu",
                               clmha__keras_sublayers[i], info->path, path, j);
        }
    }
    return CLMHA_OK;
}

clmha_status clmha__keras_read_quant(clmha_layer *l, hid_t file, const char *path,
                                     const clmha_keras_layer_info *info, int *bits, size_t *block,
                                     clmha__qkernel q[4], float *bias[4]) {
    clmha_context *ctx = l->ctx;
    clmha_status st =
        clmha__quant_mode(ctx, "loading a quantized layer", info->quantization, bits, block);
    const size_t ks[4] = {l->dq_in, l->dk_in, l->dv_in, l->heads * l->dv};
    const size_t ns[4] = {l->heads * l->dk, l->heads * l->dk, l->heads * l->dv, l->out_features};
    for (int i = 0; i < 4 && st == CLMHA_OK; i++) {
        sub_layout s;
        char why[200];
        if (!sub_layout_of(file, info->path, i, &s, why, sizeof why)) {
            return clmha__fail(ctx, CLMHA_ERR_INVALID_ARGUMENT, "layer \"%s\" in \"%s\": %s",
                               info->path, path, why);
        }
        const size_t groups = *block == 0 ? 1 : (ks[i] + *block - 1) / *block;
        if ((st = read_sub(ctx, file, path, info, &s, i, ks[i], ns[i], groups, &q[i])) ==
            CLMHA_OK) {
            st = read_bias(ctx, file, path, info, &s, i, ns[i], &bias[i]);
        }
    }
    return st;
}
