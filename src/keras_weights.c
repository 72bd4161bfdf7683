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

/* Compact and contiguous datasets must store exactly @p bytes, a contiguous one inside the
 * file; chunked ones are checked by libhdf5 chunk by chunk; virtual ones are refused. */
static bool storage_consistent(hid_t file, hid_t ds, hsize_t bytes) {
    hid_t dcpl = H5Dget_create_plist(ds);
    if (dcpl < 0) {
        return false;
    }
    H5D_layout_t layout = H5Pget_layout(dcpl);
    H5Pclose(dcpl);
    if (layout == H5D_CHUNKED) {
        return true;
    }
    if (layout != H5D_COMPACT && layout != H5D_CONTIGUOUS) {
        return false;
    }
    if (H5Dget_storage_size(ds) != bytes) {
        return false;
    }
    if (layout == H5D_CONTIGUOUS) {
        haddr_t off = H5Dget_offset(ds);
        hsize_t size = 0;
        if (off == HADDR_UNDEF || H5Fget_filesize(file, &size) < 0 || off > size ||
            bytes > size - off) {
            return false;
        }
    }
    return true;
}

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
            /* The stored data must be what the shape says (libhdf5 1.10 reads past a compact
             * dataset's buffer, or from outside the file, when a corrupt header lies). */
            ok = ok && storage_consistent(file, ds, (hsize_t)n * H5Tget_size(ty));
            out->rank = ok ? rank : -1;
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
    haddr_t seen[256]; /* groups already walked: hard links can form cycles */
    size_t nseen;
    size_t visited; /* links looked at, bounded against hostile files */
} visit_state;

static bool add_layer(visit_state *v, const clmha_keras_layer_info *info) {
    for (size_t i = 0; i < v->n; i++) {
        if (strcmp(v->list[i].path, info->path) == 0) {
            return true;
        }
    }
    if (v->n == v->cap) {
        size_t ncap = v->cap ? 2 * v->cap : 4;
        clmha_keras_layer_info *g2 = realloc(v->list, ncap * sizeof *g2);
        if (g2 == NULL) {
            v->oom = true;
            return false;
        }
        v->list = g2;
        v->cap = ncap;
    }
    v->list[v->n++] = *info;
    return true;
}

typedef struct walk_ctx {
    visit_state *v;
    const char *prefix;
    int depth;
} walk_ctx;

static herr_t walk_link(hid_t g, const char *name, const H5L_info_t *li, void *data);

/* Walks the group at @p path (depth-first, in name order): a group with a query_dense child
 * is a candidate layer; every hard-linked sub-group is walked once, at most 32 deep. Our own
 * walk rather than H5Lvisit, which leaks on some corrupt files in libhdf5 1.10. */
static void walk_group(visit_state *v, const char *path, int depth) {
    H5O_info_t oi;
    if (depth > 32 || v->visited > 100000 || v->oom ||
        H5Oget_info_by_name(v->file, *path ? path : ".", &oi, H5P_DEFAULT) < 0 ||
        oi.type != H5O_TYPE_GROUP) {
        return;
    }
    for (size_t i = 0; i < v->nseen; i++) {
        if (v->seen[i] == oi.addr) {
            return;
        }
    }
    if (v->nseen == sizeof v->seen / sizeof v->seen[0]) {
        return;
    }
    v->seen[v->nseen++] = oi.addr;
    char child[600];
    snprintf(child, sizeof child, "%s%squery_dense", path, *path ? "/" : "");
    clmha_keras_layer_info info;
    if (H5Lexists(v->file, child, H5P_DEFAULT) > 0 && describe_layer(v->file, path, &info) &&
        !add_layer(v, &info)) {
        return;
    }
    hid_t g = H5Gopen2(v->file, *path ? path : "/", H5P_DEFAULT);
    if (g < 0) {
        return;
    }
    walk_ctx w = {v, path, depth};
    hsize_t idx = 0;
    H5Literate(g, H5_INDEX_NAME, H5_ITER_INC, &idx, walk_link, &w);
    H5Gclose(g);
}

static herr_t walk_link(hid_t g, const char *name, const H5L_info_t *li, void *data) {
    (void)g;
    walk_ctx *w = data;
    if (++w->v->visited > 100000 || w->v->oom) {
        return 1;
    }
    if (li->type != H5L_TYPE_HARD || strlen(w->prefix) + strlen(name) + 2 > 255) {
        return 0;
    }
    char path[600];
    snprintf(path, sizeof path, "%s%s%s", w->prefix, *w->prefix ? "/" : "", name);
    walk_group(w->v, path, w->depth + 1);
    return 0;
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

static clmha_status list_in(clmha_context *ctx, hid_t file, clmha_keras_layer_info **layers,
                            size_t *count) {
    visit_state v;
    memset(&v, 0, sizeof v);
    v.file = file;
    /* The root itself may be the layer (a file saved from the layer alone). */
    walk_group(&v, "", 0);
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
        st = list_in(NULL, file, layers, count);
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
    if ((st = list_in(ctx, file, &list, &n)) != CLMHA_OK ||
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
