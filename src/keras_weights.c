/*
 * keras_weights.c - loading a Keras 3 .weights.h5 attention layer into a clmha layer: every
 * weight's shape checked against the layer, all eight arrays read (float16 and float64 widened
 * by libhdf5) and checked for NaN and Inf before the first upload, so a failure leaves the
 * layer's weights as they were; and creating a layer from a file's layer.
 */
#include "keras_h5.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool clmha__h5_read_var(hid_t file, const char *group, const char *sub, int idx, hid_t type,
                        void *out) {
    char name[600];
    snprintf(name, sizeof name, "%s%s%s/vars/%d", group, *group ? "/" : "", sub, idx);
    hid_t ds = H5Dopen2(file, name, H5P_DEFAULT);
    if (ds < 0) {
        return false;
    }
    herr_t r = -1;
    if (type == H5T_NATIVE_FLOAT && clmha__h5_is_bfloat16(ds)) {
        /* bfloat16: a float's top sixteen bits, widened here */
        hid_t sp = H5Dget_space(ds), ty = H5Dget_type(ds);
        const hssize_t n = sp >= 0 ? H5Sget_simple_extent_npoints(sp) : -1;
        uint16_t *raw = n > 0 ? malloc((size_t)n * sizeof *raw) : NULL;
        if (raw != NULL && (r = H5Dread(ds, ty, H5S_ALL, H5S_ALL, H5P_DEFAULT, raw)) >= 0) {
            for (hssize_t i = 0; i < n; i++) {
                const uint32_t bits = (uint32_t)raw[i] << 16;
                memcpy((float *)out + i, &bits, sizeof bits);
            }
        }
        free(raw);
        H5Tclose(ty);
        H5Sclose(sp);
    } else {
        /* HDF5 converts float16 and float64 to the native float on read. */
        r = H5Dread(ds, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, out);
    }
    H5Dclose(ds);
    return r >= 0;
}

/* Reads <group>/<sub>/vars/<idx> (shape already checked) into float32. */
static bool read_floats(hid_t file, const char *group, const char *sub, int idx, float *out) {
    return clmha__h5_read_var(file, group, sub, idx, H5T_NATIVE_FLOAT, out);
}

bool clmha__h5_var_exists(hid_t file, const char *group, const char *sub, int idx) {
    char name[600];
    snprintf(name, sizeof name, "%s%s%s/vars/%d", group, *group ? "/" : "", sub, idx);
    return H5Lexists(file, name, H5P_DEFAULT) > 0;
}

/* Reads weight @p w of the file's layer @p info into a new array *out of *count floats, checked
 * against the clmha layer's shape for it and for NaN and Inf. A bias the file's layer lacks
 * (Whisper's key projection has none) is zeros: the same product. */
static clmha_status read_weight(clmha_layer *l, hid_t file, const char *path,
                                const clmha_keras_layer_info *info, clmha_weight w, float **out,
                                size_t *count) {
    clmha_context *ctx = l->ctx;
    const char *sub = clmha__keras_sublayers[w / 2], *wname = clmha_weight_name(w);
    const int idx = w % 2;
    ds_shape s;
    int rank;
    size_t want[CLMHA_MAX_RANK], numel = 1;
    clmha_layer_weight_shape(l, w, &rank, want);
    for (int i = 0; i < rank; i++) {
        numel *= want[i];
    }
    if (idx == 1 && !clmha__h5_var_exists(file, info->path, sub, idx)) {
        *out = calloc(numel, sizeof(float));
        *count = numel;
        return *out != NULL ? CLMHA_OK
                            : clmha__fail(ctx, CLMHA_ERR_OUT_OF_HOST_MEMORY,
                                          "reading weights: out of memory");
    }
    bool same = clmha__h5_dataset_shape(file, info->path, sub, idx, &s) && s.rank == rank;
    for (int i = 0; same && i < rank; i++) {
        same = s.dims[i] == want[i];
    }
    if (!same) {
        char ws[128], gs[128];
        clmha__shape_str(ws, sizeof ws, rank, want);
        if (s.rank > 0) {
            clmha__shape_str(gs, sizeof gs, s.rank, s.dims);
        } else {
            snprintf(gs, sizeof gs, "missing or not a float array");
        }
        return clmha__fail(ctx, CLMHA_ERR_SHAPE_MISMATCH,
                           "%s of layer \"%s\" in \"%s\" is %s; the clmha layer expects %s", wname,
                           info->path, path, gs, ws);
    }
    *count = s.numel;
    *out = malloc(s.numel * sizeof(float));
    if (*out == NULL) {
        return clmha__fail(ctx, CLMHA_ERR_OUT_OF_HOST_MEMORY, "reading weights: out of memory");
    }
    if (!read_floats(file, info->path, sub, idx, *out)) {
        return clmha__fail(ctx, CLMHA_ERR_IO, "reading %s of layer \"%s\" from \"%s\" failed",
                           wname, info->path, path);
    }
    for (size_t i = 0; i < s.numel; i++) {
        if ((*out)[i] != (*out)[i] || (*out)[i] - (*out)[i] != 0.0f) {
            return clmha__fail(ctx, CLMHA_ERR_INVALID_ARGUMENT,
                               "%s of layer \"%s\" in \"%s\" holds NaN or Inf at element %zu",
                               wname, info->path, path, i);
        }
    }
    return CLMHA_OK;
}

/* A quantized file layer into float layer @p l: everything read and checked, the kernels
 * installed (the layer becomes quantized), then the biases uploaded. */
static clmha_status load_quantized(clmha_layer *l, hid_t file, const char *path,
                                   const clmha_keras_layer_info *info) {
    if (l->quant_bits != 0) {
        return clmha__fail(l->ctx, CLMHA_ERR_INVALID_ARGUMENT,
                           "the clmha layer is already quantized (%s); load a quantized layer "
                           "(\"%s\" is %s) into a float one",
                           clmha_layer_quantization(l), info->path, info->quantization);
    }
    clmha__qkernel q[4];
    float *bias[4] = {NULL, NULL, NULL, NULL};
    int bits = 0;
    size_t block = 0;
    memset(q, 0, sizeof q);
    clmha_status st = clmha__keras_read_quant(l, file, path, info, &bits, &block, q, bias);
    if (st == CLMHA_OK) {
        st = clmha__quant_install(l, bits, block, q);
    }
    for (int i = 0; i < 4 && st == CLMHA_OK; i++) {
        const clmha_weight b = (clmha_weight)(2 * i + 1);
        if (l->weights[b] != NULL) {
            st = clmha_layer_set_weight(l, b, bias[i], q[i].n);
        }
    }
    for (int i = 0; i < 4; i++) {
        clmha__qkernel_free(&q[i]);
        free(bias[i]);
    }
    return st;
}

/* Locates the layer, reads and checks every weight, and only then uploads them. */
static clmha_status load_weights(clmha_layer *l, const char *path, const char *name) {
    clmha_context *ctx = l->ctx;
    hid_t file;
    clmha_keras_layer_info info;
    float *data[CLMHA_WEIGHT_COUNT] = {0};
    size_t count[CLMHA_WEIGHT_COUNT] = {0};
    clmha_status st = clmha__keras_open(ctx, path, &file);
    if (st != CLMHA_OK) {
        return st;
    }
    if ((st = clmha__keras_locate(ctx, file, path, name, &info)) == CLMHA_OK &&
        info.use_bias != l->cfg.use_bias) {
        st = clmha__fail(ctx, CLMHA_ERR_SHAPE_MISMATCH,
                         "layer \"%s\" in \"%s\" %s biases but the clmha layer was built with "
                         "use_bias = %s",
                         info.path, path, info.use_bias ? "has" : "has no",
                         l->cfg.use_bias ? "true" : "false");
    }
    if (st == CLMHA_OK && info.quantization[0] != '\0') {
        st = load_quantized(l, file, path, &info);
        H5Fclose(file);
        return st;
    }
    if (st == CLMHA_OK && l->quant_bits != 0) {
        st = clmha__fail(ctx, CLMHA_ERR_INVALID_ARGUMENT,
                         "layer \"%s\" in \"%s\" has float kernels but the clmha layer is "
                         "quantized (%s)",
                         info.path, path, clmha_layer_quantization(l));
    }
    for (int w = 0; w < CLMHA_WEIGHT_COUNT && st == CLMHA_OK; w++) {
        if (l->weights[w] != NULL) {
            st = read_weight(l, file, path, &info, (clmha_weight)w, &data[w], &count[w]);
        }
    }
    for (int w = 0; w < CLMHA_WEIGHT_COUNT && st == CLMHA_OK; w++) {
        if (data[w] != NULL) {
            st = clmha_layer_set_weight(l, (clmha_weight)w, data[w], count[w]);
        }
    }
    for (int w = 0; w < CLMHA_WEIGHT_COUNT; w++) {
        free(data[w]);
    }
    H5Fclose(file);
    return st;
}

clmha_status clmha_layer_load_keras_weights(clmha_layer *layer, const char *path,
                                            const char *name) {
    if (layer == NULL || path == NULL) {
        return clmha__fail(layer ? layer->ctx : NULL, CLMHA_ERR_NULL_ARGUMENT,
                           "clmha_layer_load_keras_weights: %s is NULL", layer ? "path" : "layer");
    }
    h5_quiet q;
    clmha__h5_quiet_enter(&q);
    clmha_status st = load_weights(layer, path, name);
    clmha__h5_quiet_leave(&q);
    return st;
}

clmha_status clmha_layer_create_from_keras(clmha_context *ctx, const char *path, const char *name,
                                           const clmha_layer_config *base, clmha_layer **layer) {
    if (ctx == NULL || path == NULL || layer == NULL) {
        return clmha__fail(ctx, CLMHA_ERR_NULL_ARGUMENT,
                           "clmha_layer_create_from_keras: %s is NULL",
                           ctx == NULL    ? "ctx"
                           : path == NULL ? "path"
                                          : "layer");
    }
    clmha_keras_layer_info info;
    clmha_status st = clmha_keras_find_layer(path, name, &info);
    if (st != CLMHA_OK) {
        /* Mirror the message into the context. */
        return clmha__fail(ctx, st, "%s", clmha_last_error());
    }
    clmha_layer_config cfg;
    if (base != NULL) {
        cfg = *base;
    } else {
        clmha_layer_config_init(&cfg);
    }
    if (info.num_heads == 0 && base == NULL) {
        return clmha__fail(ctx, CLMHA_ERR_INVALID_ARGUMENT,
                           "layer \"%s\" in \"%s\" is %s without biases, whose packed kernels "
                           "do not record the heads: pass base with num_heads, key_dim, value_dim "
                           "and output_shape",
                           info.path, path, info.quantization);
    }
    if (info.num_heads != 0) {
        cfg.num_heads = info.num_heads;
        cfg.key_dim = info.head_key_dim;
        cfg.value_dim = info.head_value_dim;
        cfg.output_rank = info.output_rank;
        memcpy(cfg.output_shape, info.output_shape, sizeof cfg.output_shape);
    }
    cfg.use_bias = info.use_bias;
    /* The file's weights replace the initial ones: skip drawing random numbers for them. */
    cfg.kernel_initializer = clmha_initializer_default(CLMHA_INIT_ZEROS);
    cfg.bias_initializer = clmha_initializer_default(CLMHA_INIT_ZEROS);
    clmha_layer *l = NULL;
    st = clmha_layer_create(ctx, &cfg, info.query_dim, info.value_dim, info.key_dim, &l);
    if (st == CLMHA_OK) {
        st = clmha_layer_load_keras_weights(l, path, info.path);
    }
    if (st != CLMHA_OK) {
        clmha_layer_release(l);
        return st;
    }
    *layer = l;
    return CLMHA_OK;
}
