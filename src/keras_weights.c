/*
 * keras_weights.c - reading Keras 3 .weights.h5 files with libhdf5: finding every attention
 * layer (a group with query_dense, key_dense, value_dense and output_dense sub-groups holding
 * vars/0 kernels and optional vars/1 biases), deriving the layer's configuration from the
 * kernel shapes, and loading weights into a built layer.
 *
 * The file is untrusted. Every dataset is checked (float class of 2, 4 or 8 bytes, rank and
 * dims within bounds, element counts that cannot overflow) before it is read, all eight
 * arrays are read and checked before the first upload, and HDF5's own error printing is
 * switched off for the duration (the library never prints).
 */
#include "internal.h"

#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Largest dataset accepted, in elements: far beyond any attention layer, small enough that
 * a hostile header cannot make the loader allocate absurd amounts. */
#define MAX_ELEMS ((hsize_t)1 << 31)

static const char *const SUBLAYERS[4] = {"query_dense", "key_dense", "value_dense", "output_dense"};

/* Silences HDF5's automatic error stack printing; restores it on leave. */
typedef struct h5_quiet {
    H5E_auto2_t func;
    void *data;
} h5_quiet;

static void quiet_enter(h5_quiet *q) {
    H5Eget_auto2(H5E_DEFAULT, &q->func, &q->data);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

static void quiet_leave(const h5_quiet *q) {
    H5Eset_auto2(H5E_DEFAULT, q->func, q->data);
}

/* A dataset's shape, checked; rank -1 when absent or unusable. */
typedef struct ds_shape {
    int rank;
    size_t dims[CLMHA_MAX_RANK];
    size_t numel;
} ds_shape;

/* Shape of <group>/<sub>/vars/<idx>, requiring a float dataset of sane size. */
static bool dataset_shape(hid_t file, const char *group, const char *sub, int idx, ds_shape *out) {
    char name[600];
    snprintf(name, sizeof name, "%s%s%s/vars/%d", group, *group ? "/" : "", sub, idx);
    out->rank = -1;
    if (H5Lexists(file, name, H5P_DEFAULT) <= 0) {
        return false;
    }
    H5O_info_t oi;
    if (H5Oget_info_by_name(file, name, &oi, H5P_DEFAULT) < 0 || oi.type != H5O_TYPE_DATASET) {
        return false;
    }
    hid_t ds = H5Dopen2(file, name, H5P_DEFAULT);
    if (ds < 0) {
        return false;
    }
    bool ok = false;
    hid_t sp = H5Dget_space(ds), ty = H5Dget_type(ds);
    if (sp >= 0 && ty >= 0 && H5Tget_class(ty) == H5T_FLOAT &&
        (H5Tget_size(ty) == 2 || H5Tget_size(ty) == 4 || H5Tget_size(ty) == 8) &&
        H5Sget_simple_extent_type(sp) == H5S_SIMPLE) {
        int rank = H5Sget_simple_extent_ndims(sp);
        hsize_t dims[H5S_MAX_RANK];
        if (rank >= 1 && rank <= CLMHA_MAX_RANK &&
            H5Sget_simple_extent_dims(sp, dims, NULL) == rank) {
            hsize_t n = 1;
            ok = true;
            for (int i = 0; i < rank && ok; i++) {
                ok = dims[i] >= 1 && dims[i] <= MAX_ELEMS && n <= MAX_ELEMS / dims[i];
                n *= ok ? dims[i] : 1;
                out->dims[i] = (size_t)dims[i];
            }
            out->rank = ok ? rank : -1;
            out->numel = (size_t)n;
        }
    }
    if (ty >= 0) {
        H5Tclose(ty);
    }
    if (sp >= 0) {
        H5Sclose(sp);
    }
    H5Dclose(ds);
    return ok;
}

/* Fills @p info from the kernels under @p group when they form a consistent attention layer. */
static bool describe_layer(hid_t file, const char *group, clmha_keras_layer_info *info) {
    ds_shape k[4], b[4];
    for (int i = 0; i < 4; i++) {
        if (!dataset_shape(file, group, SUBLAYERS[i], 0, &k[i])) {
            return false;
        }
        dataset_shape(file, group, SUBLAYERS[i], 1, &b[i]);
    }
    /* query/key/value kernels (D, H, d); output kernel (H, dv, *out). */
    if (k[0].rank != 3 || k[1].rank != 3 || k[2].rank != 3 || k[3].rank < 3) {
        return false;
    }
    size_t H = k[0].dims[1], dk = k[0].dims[2], dv = k[2].dims[2];
    if (k[1].dims[1] != H || k[1].dims[2] != dk || k[2].dims[1] != H || k[3].dims[0] != H ||
        k[3].dims[1] != dv || H > 65536 || dk > 65536 || dv > 65536) {
        return false;
    }
    memset(info, 0, sizeof *info);
    if (strlen(group) >= sizeof info->path) {
        return false;
    }
    snprintf(info->path, sizeof info->path, "%s", group);
    info->query_dim = k[0].dims[0];
    info->key_dim = k[1].dims[0];
    info->value_dim = k[2].dims[0];
    info->num_heads = (int)H;
    info->head_key_dim = (int)dk;
    info->head_value_dim = (int)dv;
    info->output_rank = k[3].rank - 2;
    memcpy(info->output_shape, k[3].dims + 2, (size_t)info->output_rank * sizeof(size_t));
    int nb = 0;
    for (int i = 0; i < 4; i++) {
        nb += b[i].rank > 0;
    }
    info->use_bias = nb == 4;
    /* Some biases but not all is not a layer clmha can represent. */
    return nb == 0 || nb == 4;
}

typedef struct visit_state {
    hid_t file;
    clmha_keras_layer_info *list;
    size_t n, cap;
    bool oom;
} visit_state;

/* Called for every link in the file; a link named query_dense marks its parent group as a
 * candidate layer. */
static herr_t visit(hid_t g, const char *name, const H5L_info_t *li, void *data) {
    (void)g;
    (void)li;
    visit_state *v = data;
    const char *last = strrchr(name, '/');
    const char *base = last ? last + 1 : name;
    if (strcmp(base, "query_dense") != 0) {
        return 0;
    }
    char parent[512];
    size_t plen = last ? (size_t)(last - name) : 0;
    if (plen >= sizeof parent) {
        return 0;
    }
    memcpy(parent, name, plen);
    parent[plen] = '\0';
    clmha_keras_layer_info info;
    if (!describe_layer(v->file, parent, &info)) {
        return 0;
    }
    for (size_t i = 0; i < v->n; i++) {
        if (strcmp(v->list[i].path, info.path) == 0) {
            return 0;
        }
    }
    if (v->n == v->cap) {
        size_t ncap = v->cap ? 2 * v->cap : 4;
        clmha_keras_layer_info *g2 = realloc(v->list, ncap * sizeof *g2);
        if (g2 == NULL) {
            v->oom = true;
            return 1;
        }
        v->list = g2;
        v->cap = ncap;
    }
    v->list[v->n++] = info;
    return v->n < 4096 ? 0 : 1; /* enough layers for any real model */
}

static clmha_status open_file(clmha_context *ctx, const char *path, hid_t *file) {
    if (H5Fis_hdf5(path) <= 0) {
        FILE *f = fopen(path, "rb");
        if (f == NULL) {
            return clmha__fail(ctx, CLMHA_ERR_IO, "cannot open weights file \"%s\"", path);
        }
        fclose(f);
        return clmha__fail(ctx, CLMHA_ERR_IO,
                           "\"%s\" is not an HDF5 file (expected a Keras .weights.h5 file)", path);
    }
    *file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (*file < 0) {
        return clmha__fail(ctx, CLMHA_ERR_IO,
                           "cannot read HDF5 file \"%s\" (truncated or corrupt?)", path);
    }
    return CLMHA_OK;
}

static clmha_status list_in(clmha_context *ctx, hid_t file, const char *path,
                            clmha_keras_layer_info **layers, size_t *count) {
    visit_state v = {file, NULL, 0, 0, false};
    /* The root itself may be the layer (a file saved from the layer alone). */
    clmha_keras_layer_info root;
    if (describe_layer(file, "", &root)) {
        v.list = malloc(sizeof root);
        if (v.list == NULL) {
            return clmha__fail(ctx, CLMHA_ERR_OUT_OF_HOST_MEMORY, "out of memory");
        }
        v.list[0] = root;
        v.n = v.cap = 1;
    }
    if (H5Lvisit(file, H5_INDEX_NAME, H5_ITER_INC, visit, &v) < 0 && v.n == 0) {
        free(v.list);
        return clmha__fail(ctx, CLMHA_ERR_IO, "cannot walk the groups of \"%s\" (corrupt file?)",
                           path);
    }
    if (v.oom) {
        free(v.list);
        return clmha__fail(ctx, CLMHA_ERR_OUT_OF_HOST_MEMORY, "out of memory");
    }
    *layers = v.list;
    *count = v.n;
    return CLMHA_OK;
}

clmha_status clmha_keras_list_layers(const char *path, clmha_keras_layer_info **layers,
                                     size_t *count) {
    if (path == NULL || layers == NULL || count == NULL) {
        return clmha__fail(NULL, CLMHA_ERR_NULL_ARGUMENT, "clmha_keras_list_layers: %s is NULL",
                           path == NULL     ? "path"
                           : layers == NULL ? "layers"
                                            : "count");
    }
    h5_quiet q;
    hid_t file;
    quiet_enter(&q);
    clmha_status st = open_file(NULL, path, &file);
    if (st == CLMHA_OK) {
        st = list_in(NULL, file, path, layers, count);
        H5Fclose(file);
    }
    quiet_leave(&q);
    return st;
}

static bool name_matches(const char *layer_path, const char *name) {
    if (*name == '/') {
        name++;
    }
    if (strcmp(layer_path, name) == 0) {
        return true;
    }
    const char *last = strrchr(layer_path, '/');
    return last != NULL && strcmp(last + 1, name) == 0;
}

static clmha_status pick_layer(clmha_context *ctx, const char *path, const char *name,
                               const clmha_keras_layer_info *list, size_t n,
                               clmha_keras_layer_info *out) {
    size_t found = 0, which = 0;
    for (size_t i = 0; i < n; i++) {
        if (name == NULL || name_matches(list[i].path, name)) {
            found++;
            which = i;
        }
    }
    if (found == 1) {
        *out = list[which];
        return CLMHA_OK;
    }
    char avail[1024] = "";
    size_t pos = 0;
    for (size_t i = 0; i < n && pos < sizeof avail; i++) {
        int w = snprintf(avail + pos, sizeof avail - pos, "%s\"%s\"", i ? ", " : "",
                         *list[i].path ? list[i].path : "/");
        pos += w > 0 ? (size_t)w : 0;
    }
    if (n == 0) {
        return clmha__fail(ctx, CLMHA_ERR_INVALID_ARGUMENT,
                           "\"%s\" holds no attention layer (no group with query_dense, "
                           "key_dense, value_dense and output_dense kernels)",
                           path);
    }
    if (name == NULL) {
        return clmha__fail(ctx, CLMHA_ERR_INVALID_ARGUMENT,
                           "\"%s\" holds %zu attention layers; choose one by name: %s", path, n,
                           avail);
    }
    return clmha__fail(ctx, CLMHA_ERR_INVALID_ARGUMENT,
                       "layer name \"%s\" matches %s attention layer in \"%s\"; the layers are: "
                       "%s",
                       name, found ? "more than one" : "no", path, avail);
}

clmha_status clmha_keras_find_layer(const char *path, const char *name,
                                    clmha_keras_layer_info *info) {
    if (path == NULL || info == NULL) {
        return clmha__fail(NULL, CLMHA_ERR_NULL_ARGUMENT, "clmha_keras_find_layer: %s is NULL",
                           path == NULL ? "path" : "info");
    }
    clmha_keras_layer_info *list = NULL;
    size_t n = 0;
    clmha_status st = clmha_keras_list_layers(path, &list, &n);
    if (st == CLMHA_OK) {
        st = pick_layer(NULL, path, name, list, n, info);
    }
    free(list);
    return st;
}

/* Reads <group>/<sub>/vars/<idx> (shape already checked) into float32. */
static bool read_floats(hid_t file, const char *group, const char *sub, int idx, float *out) {
    char name[600];
    snprintf(name, sizeof name, "%s%s%s/vars/%d", group, *group ? "/" : "", sub, idx);
    hid_t ds = H5Dopen2(file, name, H5P_DEFAULT);
    if (ds < 0) {
        return false;
    }
    /* HDF5 converts float16 and float64 to the native float on read. */
    herr_t r = H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, out);
    H5Dclose(ds);
    return r >= 0;
}

static clmha_status load_weights(clmha_layer *l, const char *path, const char *name) {
    clmha_context *ctx = l->ctx;
    hid_t file;
    clmha_keras_layer_info *list = NULL, info;
    size_t n = 0;
    float *data[CLMHA_WEIGHT_COUNT] = {0};
    size_t count[CLMHA_WEIGHT_COUNT] = {0};
    clmha_status st = open_file(ctx, path, &file);
    if (st != CLMHA_OK) {
        return st;
    }
    if ((st = list_in(ctx, file, path, &list, &n)) != CLMHA_OK ||
        (st = pick_layer(ctx, path, name, list, n, &info)) != CLMHA_OK) {
        goto cleanup;
    }
    if (info.use_bias != l->cfg.use_bias) {
        st = clmha__fail(ctx, CLMHA_ERR_SHAPE_MISMATCH,
                         "layer \"%s\" in \"%s\" %s biases but the clmha layer was built with "
                         "use_bias = %s",
                         info.path, path, info.use_bias ? "has" : "has no",
                         l->cfg.use_bias ? "true" : "false");
        goto cleanup;
    }
    /* Check every shape against the layer, then read everything, then upload. */
    for (int w = 0; w < CLMHA_WEIGHT_COUNT; w++) {
        if (l->weights[w] == NULL) {
            continue;
        }
        ds_shape s;
        int rank;
        size_t want[CLMHA_MAX_RANK];
        clmha_layer_weight_shape(l, (clmha_weight)w, &rank, want);
        bool same = dataset_shape(file, info.path, SUBLAYERS[w / 2], w % 2, &s) && s.rank == rank;
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
            st = clmha__fail(ctx, CLMHA_ERR_SHAPE_MISMATCH,
                             "%s of layer \"%s\" in \"%s\" is %s; the clmha layer expects %s",
                             clmha_weight_name((clmha_weight)w), info.path, path, gs, ws);
            goto cleanup;
        }
        count[w] = s.numel;
        data[w] = malloc(s.numel * sizeof(float));
        if (data[w] == NULL) {
            st = clmha__fail(ctx, CLMHA_ERR_OUT_OF_HOST_MEMORY, "reading weights: out of memory");
            goto cleanup;
        }
        if (!read_floats(file, info.path, SUBLAYERS[w / 2], w % 2, data[w])) {
            st = clmha__fail(ctx, CLMHA_ERR_IO, "reading %s of layer \"%s\" from \"%s\" failed",
                             clmha_weight_name((clmha_weight)w), info.path, path);
            goto cleanup;
        }
        for (size_t i = 0; i < s.numel; i++) {
            if (data[w][i] != data[w][i] || data[w][i] - data[w][i] != 0.0f) {
                st = clmha__fail(ctx, CLMHA_ERR_INVALID_ARGUMENT,
                                 "%s of layer \"%s\" in \"%s\" holds NaN or Inf at element %zu",
                                 clmha_weight_name((clmha_weight)w), info.path, path, i);
                goto cleanup;
            }
        }
    }
    for (int w = 0; w < CLMHA_WEIGHT_COUNT; w++) {
        if (data[w] != NULL &&
            (st = clmha_layer_set_weight(l, (clmha_weight)w, data[w], count[w])) != CLMHA_OK) {
            goto cleanup;
        }
    }
cleanup:
    for (int w = 0; w < CLMHA_WEIGHT_COUNT; w++) {
        free(data[w]);
    }
    free(list);
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
    quiet_enter(&q);
    clmha_status st = load_weights(layer, path, name);
    quiet_leave(&q);
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
    cfg.num_heads = info.num_heads;
    cfg.key_dim = info.head_key_dim;
    cfg.value_dim = info.head_value_dim;
    cfg.use_bias = info.use_bias;
    cfg.output_rank = info.output_rank;
    memcpy(cfg.output_shape, info.output_shape, sizeof cfg.output_shape);
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
