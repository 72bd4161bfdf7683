/*
 * keras_layers.c - finding the attention layers of a Keras 3 .weights.h5 file with libhdf5:
 * every group, at any depth, holding query_dense, key_dense, value_dense and output_dense
 * sub-groups with vars/0 kernels and optional vars/1 biases of consistent shapes; the layer's
 * configuration derived from the kernel shapes; the list in Keras's order; and, for a group that
 * looks like a layer but cannot be loaded, the reason.
 *
 * The file is untrusted. Every dataset is checked (float class of 2, 4 or 8 bytes, rank and
 * dims within bounds, element counts that cannot overflow, storage that matches) before it is
 * used, the walk is bounded, and HDF5's own error printing is switched off (the library never
 * prints).
 */
#include "keras_h5.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Largest dataset accepted, in elements: far beyond any attention layer, small enough that
 * a hostile header cannot make the loader allocate absurd amounts. */
#define MAX_ELEMS ((hsize_t)1 << 31)

const char *const clmha__keras_sublayers[4] = {"query_dense", "key_dense", "value_dense",
                                               "output_dense"};

void clmha__h5_quiet_enter(h5_quiet *q) {
    H5Eget_auto2(H5E_DEFAULT, &q->func, &q->data);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

void clmha__h5_quiet_leave(const h5_quiet *q) {
    H5Eset_auto2(H5E_DEFAULT, q->func, q->data);
}

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

bool clmha__h5_is_bfloat16(hid_t ds) {
    hid_t ty = H5Dget_type(ds);
    bool opaque2 = ty >= 0 && H5Tget_class(ty) == H5T_OPAQUE && H5Tget_size(ty) == 2;
    if (ty >= 0) {
        H5Tclose(ty);
    }
    if (!opaque2 || H5Aexists(ds, "dtype") <= 0) {
        return false;
    }
    /* Keras marks its bfloat16 arrays (2-byte opaque data) with the attribute dtype =
     * "bfloat16", a string h5py writes variable-length (or fixed) */
    hid_t a = H5Aopen(ds, "dtype", H5P_DEFAULT);
    hid_t at = a >= 0 ? H5Aget_type(a) : -1;
    char text[16] = "";
    if (at >= 0 && H5Tget_class(at) == H5T_STRING) {
        if (H5Tis_variable_str(at) > 0) {
            char *s = NULL;
            hid_t mt = H5Tcopy(H5T_C_S1);
            H5Tset_size(mt, H5T_VARIABLE);
            H5Tset_cset(mt, H5Tget_cset(at));
            if (H5Aread(a, mt, &s) >= 0 && s != NULL) {
                snprintf(text, sizeof text, "%s", s);
                H5free_memory(s);
            }
            H5Tclose(mt);
        } else if (H5Tget_size(at) < sizeof text) {
            H5Aread(a, at, text);
            text[sizeof text - 1] = '\0';
        }
    }
    if (at >= 0) {
        H5Tclose(at);
    }
    if (a >= 0) {
        H5Aclose(a);
    }
    return strcmp(text, "bfloat16") == 0;
}

/* Shape of <group>/<sub>/vars/<idx>, requiring a float (Keras's bfloat16 included) or, with
 * @p int8, a signed 8-bit integer dataset of sane size. */
bool clmha__h5_var_shape(hid_t file, const char *group, const char *sub, int idx, bool int8,
                         ds_shape *out) {
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
    const bool type_ok =
        int8 ? H5Tget_class(ty) == H5T_INTEGER && H5Tget_size(ty) == 1 &&
                   H5Tget_sign(ty) == H5T_SGN_2
             : (H5Tget_class(ty) == H5T_FLOAT &&
                (H5Tget_size(ty) == 2 || H5Tget_size(ty) == 4 || H5Tget_size(ty) == 8)) ||
                   clmha__h5_is_bfloat16(ds);
    if (sp >= 0 && ty >= 0 && type_ok && H5Sget_simple_extent_type(sp) == H5S_SIMPLE) {
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

bool clmha__h5_dataset_shape(hid_t file, const char *group, const char *sub, int idx,
                             ds_shape *out) {
    return clmha__h5_var_shape(file, group, sub, idx, false, out);
}

/* Why <group>/<sub>/vars/<idx> of a float layer is no float array: missing, or of another type
 * (an int8 kernel beside a float query kernel: a layer quantized in part). */
static void describe_bad_var(hid_t file, const char *group, const char *sub, int idx, char *why,
                             size_t len) {
    char name[600];
    snprintf(name, sizeof name, "%s%s%s/vars/%d", group, *group ? "/" : "", sub, idx);
    hid_t ds = H5Lexists(file, name, H5P_DEFAULT) > 0 ? H5Dopen2(file, name, H5P_DEFAULT) : -1;
    if (ds < 0) {
        snprintf(why, len, "%s/vars/%d is missing", sub, idx);
        return;
    }
    hid_t ty = H5Dget_type(ds);
    const bool integer = ty >= 0 && H5Tget_class(ty) == H5T_INTEGER;
    if (ty >= 0) {
        H5Tclose(ty);
    }
    H5Dclose(ds);
    snprintf(why, len, "%s/vars/%d is %s", sub, idx,
             integer ? (idx == 0 ? "an integer array while query_dense's kernels are float (Keras "
                                   "quantizes all four sub-layers)"
                                 : "an integer array (a bias must be a float array)")
                     : "not a float array of a usable shape and size");
}

/* Fills @p info from the kernels under @p group when they form a consistent attention layer;
 * otherwise says why not in @p why. */
static bool describe_layer(hid_t file, const char *group, clmha_keras_layer_info *info, char *why,
                           size_t why_len) {
    ds_shape q0;
    if (clmha__h5_var_shape(file, group, clmha__keras_sublayers[0], 0, true, &q0)) {
        return clmha__keras_describe_quant(file, group, info, why, why_len);
    }
    ds_shape k[4], b[4];
    bool b_exists[4];
    for (int i = 0; i < 4; i++) {
        if (!clmha__h5_dataset_shape(file, group, clmha__keras_sublayers[i], 0, &k[i])) {
            describe_bad_var(file, group, clmha__keras_sublayers[i], 0, why, why_len);
            return false;
        }
        char extra[600];
        snprintf(extra, sizeof extra, "%s%s%s/vars/2", group, *group ? "/" : "",
                 clmha__keras_sublayers[i]);
        if (H5Lexists(file, extra, H5P_DEFAULT) > 0) {
            snprintf(why, why_len,
                     "%s has a third variable (vars/2), which Keras's loader refuses for a float "
                     "EinsumDense",
                     clmha__keras_sublayers[i]);
            return false;
        }
        clmha__h5_dataset_shape(file, group, clmha__keras_sublayers[i], 1, &b[i]);
        char bias[600];
        snprintf(bias, sizeof bias, "%s%s%s/vars/1", group, *group ? "/" : "",
                 clmha__keras_sublayers[i]);
        b_exists[i] = H5Lexists(file, bias, H5P_DEFAULT) > 0;
    }
    /* query/key/value kernels (D, H, d); output kernel (H, dv, *out). */
    if (k[0].rank != 3 || k[1].rank != 3 || k[2].rank != 3 || k[3].rank < 3) {
        snprintf(why, why_len, "its kernels' ranks are %d, %d, %d and %d (expected 3, 3, 3, >= 3)",
                 k[0].rank, k[1].rank, k[2].rank, k[3].rank);
        return false;
    }
    size_t H = k[0].dims[1], dk = k[0].dims[2], dv = k[2].dims[2];
    if (k[1].dims[1] != H || k[1].dims[2] != dk || k[2].dims[1] != H || k[3].dims[0] != H ||
        k[3].dims[1] != dv || H > 65536 || dk > 65536 || dv > 65536) {
        snprintf(why, why_len,
                 "its kernels' heads and head dims disagree (query %zu x %zu, key %zu x %zu, "
                 "value %zu x %zu, output %zu x %zu)",
                 H, dk, k[1].dims[1], k[1].dims[2], k[2].dims[1], dv, k[3].dims[0], k[3].dims[1]);
        return false;
    }
    memset(info, 0, sizeof *info);
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
        if (b[i].rank <= 0 && b_exists[i]) {
            describe_bad_var(file, group, clmha__keras_sublayers[i], 1, why, why_len);
            return false;
        }
    }
    /* A sub-layer without a bias beside others with one (Whisper's key projection) loads as a
     * zero bias: the same result. */
    info->use_bias = nb > 0;
    return true;
}

/* A group that looked like an attention layer (it has query_dense) but is not one clmha can
 * load, and why. */
typedef struct rejected_layer {
    char path[256];
    char why[200];
} rejected_layer;

/* The most links a walk looks at: far more than any model has (a 48-layer keras-hub decoder
 * has about 1500 groups), a bound on what a hostile file can make the loader do. */
#define MAX_LINKS 1000000

typedef struct visit_state {
    hid_t file;
    clmha_keras_layer_info *list;
    size_t n, cap;
    haddr_t *addr; /* each listed layer's group (object header address) */
    size_t naddr, capaddr;
    rejected_layer *rejected;
    size_t nrej, caprej;
    bool oom, too_many;
    char too_long[128]; /* the start of a layer path longer than info.path holds ("": none) */
    haddr_t *seen;      /* groups already walked: hard links can form cycles */
    size_t nseen, capseen;
    size_t visited; /* links looked at */
} visit_state;

/* Appends @p item (of @p size bytes) to the growable array *arr of *n items (capacity *cap). */
static bool push(visit_state *v, void **arr, size_t *n, size_t *cap, const void *item,
                 size_t size) {
    if (*n == *cap) {
        size_t ncap = *cap ? 2 * *cap : 16;
        void *grown = realloc(*arr, ncap * size);
        if (grown == NULL) {
            v->oom = true;
            return false;
        }
        *arr = grown;
        *cap = ncap;
    }
    memcpy((char *)*arr + *n * size, item, size);
    (*n)++;
    return true;
}

typedef struct walk_ctx {
    visit_state *v;
    const char *prefix;
    int depth;
} walk_ctx;

static herr_t walk_link(hid_t g, const char *name, const H5L_info_t *li, void *data);

/* Where a layer was written in the file: the file offset of its query kernel's data, which
 * HDF5 allocates one dataset after another and never reuses (group headers may land in space
 * freed when a group's heap grows); @p group_addr, the group's header, where the kernel has no
 * contiguous data. */
static haddr_t write_position(hid_t file, const char *path, haddr_t group_addr) {
    char name[600];
    snprintf(name, sizeof name, "%s%squery_dense/vars/0", path, *path ? "/" : "");
    hid_t ds = H5Dopen2(file, name, H5P_DEFAULT);
    if (ds < 0) {
        return group_addr;
    }
    haddr_t at = H5Dget_offset(ds);
    H5Dclose(ds);
    return at != HADDR_UNDEF ? at : group_addr;
}

/* A group with a query_dense child is a candidate layer: listed, or rejected with a reason. */
static void consider_layer(visit_state *v, const char *path, haddr_t addr) {
    char child[4200];
    snprintf(child, sizeof child, "%s%squery_dense", path, *path ? "/" : "");
    if (H5Lexists(v->file, child, H5P_DEFAULT) <= 0) {
        return;
    }
    if (strlen(path) >= sizeof v->list[0].path) {
        memcpy(v->too_long, path, sizeof v->too_long - 1);
        v->too_long[sizeof v->too_long - 1] = '\0';
        return;
    }
    clmha_keras_layer_info info;
    rejected_layer r;
    if (describe_layer(v->file, path, &info, r.why, sizeof r.why)) {
        addr = write_position(v->file, path, addr);
        if (push(v, (void **)&v->addr, &v->naddr, &v->capaddr, &addr, sizeof addr)) {
            push(v, (void **)&v->list, &v->n, &v->cap, &info, sizeof info);
        }
    } else {
        snprintf(r.path, sizeof r.path, "%s", path);
        push(v, (void **)&v->rejected, &v->nrej, &v->caprej, &r, sizeof r);
    }
}

/* Walks the group at @p path (depth-first): a group with a query_dense child is a candidate
 * layer; every hard-linked sub-group is walked once, at most 64 deep. Our own walk rather than
 * H5Lvisit, which leaks on some corrupt files in libhdf5 1.10. */
static void walk_group(visit_state *v, const char *path, int depth) {
    H5O_info_t oi;
    if (depth > 64 || v->too_many || v->oom ||
        H5Oget_info_by_name(v->file, *path ? path : ".", &oi, H5P_DEFAULT) < 0 ||
        oi.type != H5O_TYPE_GROUP) {
        return;
    }
    for (size_t i = 0; i < v->nseen; i++) {
        if (v->seen[i] == oi.addr) {
            return;
        }
    }
    if (!push(v, (void **)&v->seen, &v->nseen, &v->capseen, &oi.addr, sizeof oi.addr)) {
        return;
    }
    consider_layer(v, path, oi.addr);
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
    if (++w->v->visited > MAX_LINKS) {
        w->v->too_many = true;
    }
    if (w->v->too_many || w->v->oom) {
        return 1;
    }
    if (li->type != H5L_TYPE_HARD || strlen(w->prefix) + strlen(name) + 2 > 4096) {
        return 0;
    }
    char path[4200];
    const size_t lp = strlen(w->prefix), ln = strlen(name);
    memcpy(path, w->prefix, lp);
    size_t at = lp;
    if (lp > 0) {
        path[at++] = '/';
    }
    memcpy(path + at, name, ln + 1);
    walk_group(w->v, path, w->depth + 1);
    return 0;
}

/* The stem of path component [c, end): the component without a trailing "_<digits>" (Keras's
 * unique-name suffix), and the suffix's value (0 without one: Keras's first of that name). */
static size_t component_stem(const char *c, const char *end, unsigned long long *suffix) {
    const char *p = end;
    while (p > c && p[-1] >= '0' && p[-1] <= '9') {
        p--;
    }
    *suffix = 0;
    if (p < end && p > c + 1 && p[-1] == '_' && end - p <= 18) {
        for (const char *d = p; d < end; d++) {
            *suffix = *suffix * 10 + (unsigned long long)(*d - '0');
        }
        return (size_t)(p - 1 - c);
    }
    return (size_t)(end - c);
}

/* Where two paths first differ in a component that is the same name with another of Keras's
 * unique-name suffixes ("block" and "block_10" are the first and eleventh block of a list),
 * the order of those suffixes (-1 or 1); 0 where they first differ otherwise. */
static int suffix_order(const char *a, const char *b) {
    while (*a != '\0' && *b != '\0') {
        const char *ea = strchr(a, '/'), *eb = strchr(b, '/');
        ea = ea ? ea : a + strlen(a);
        eb = eb ? eb : b + strlen(b);
        if (ea - a != eb - b || memcmp(a, b, (size_t)(ea - a)) != 0) {
            unsigned long long na, nb;
            const size_t la = component_stem(a, ea, &na), lb = component_stem(b, eb, &nb);
            if (la == lb && memcmp(a, b, la) == 0 && na != nb) {
                return na < nb ? -1 : 1;
            }
            return 0;
        }
        a = *ea ? ea + 1 : ea;
        b = *eb ? eb + 1 : eb;
    }
    return 0;
}

/* Compares two paths component by component: by suffix order where suffix_order says, else by
 * name ('/' first). */
static int natural_cmp(const void *x, const void *y) {
    const char *a = ((const clmha_keras_layer_info *)x)->path;
    const char *b = ((const clmha_keras_layer_info *)y)->path;
    const int s = suffix_order(a, b);
    if (s != 0) {
        return s;
    }
    for (; *a != '\0' && *a == *b; a++, b++) {
    }
    const int ca = *a == '/' ? 1 : (unsigned char)*a, cb = *b == '/' ? 1 : (unsigned char)*b;
    return ca < cb ? -1 : ca > cb;
}

/* A listed layer and where it was written in the file (write_position). */
typedef struct placed_layer {
    haddr_t addr;
    size_t index;
} placed_layer;

static int placed_cmp(const void *x, const void *y) {
    const haddr_t a = ((const placed_layer *)x)->addr, b = ((const placed_layer *)y)->addr;
    return a < b ? -1 : a > b;
}

/* Puts the layers in Keras's order: the order its save_weights wrote them (the model's layers
 * in order, then each layer's attributes by name), which is the order of their kernels' data in
 * the file. A file not written so (rewritten by another tool) is recognised by layers of one
 * list out of their suffixes' order ("block_8" before "block_2"), and is ordered by name
 * instead, with those suffixes as numbers. */
static bool keras_order(visit_state *v) {
    placed_layer *p = malloc(v->n * sizeof *p);
    clmha_keras_layer_info *sorted = malloc(v->n * sizeof *sorted);
    if (p == NULL || sorted == NULL) {
        free(p);
        free(sorted);
        return false;
    }
    for (size_t i = 0; i < v->n; i++) {
        p[i] = (placed_layer){v->addr[i], i};
    }
    qsort(p, v->n, sizeof *p, placed_cmp);
    bool placed = true;
    for (size_t i = 0; i < v->n && placed; i++) {
        sorted[i] = v->list[p[i].index];
        for (size_t j = 0; j < i && placed; j++) {
            placed = suffix_order(sorted[j].path, sorted[i].path) <= 0;
        }
    }
    free(p);
    if (!placed) {
        memcpy(sorted, v->list, v->n * sizeof *sorted);
        qsort(sorted, v->n, sizeof *sorted, natural_cmp);
    }
    free(v->list);
    v->list = sorted;
    return true;
}

clmha_status clmha__keras_open(clmha_context *ctx, const char *path, hid_t *file) {
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

/* Lists the attention layers of an open file into *layers (Keras's order), and where @p rejected
 * is not NULL the candidates it could not load, with the reason (free both). */
static clmha_status list_in(clmha_context *ctx, hid_t file, const char *path,
                            clmha_keras_layer_info **layers, size_t *count,
                            rejected_layer **rejected, size_t *nrejected) {
    visit_state v;
    memset(&v, 0, sizeof v);
    v.file = file;
    /* The root itself may be the layer (a file saved from the layer alone). */
    walk_group(&v, "", 0);
    free(v.seen);
    if (!v.oom && v.n > 1 && !keras_order(&v)) {
        v.oom = true;
    }
    free(v.addr);
    clmha_status st = CLMHA_OK;
    if (v.oom) {
        st = clmha__fail(ctx, CLMHA_ERR_OUT_OF_HOST_MEMORY,
                         "listing the layers of \"%s\": out of "
                         "memory",
                         path);
    } else if (v.too_many) {
        st = clmha__fail(ctx, CLMHA_ERR_INVALID_ARGUMENT,
                         "\"%s\" has more than %d links in its groups; not a Keras weights file "
                         "clmha reads",
                         path, MAX_LINKS);
    } else if (v.too_long[0] != '\0') {
        st = clmha__fail(ctx, CLMHA_ERR_INVALID_ARGUMENT,
                         "\"%s\" has an attention layer whose group path is longer than %zu "
                         "characters: \"%s...\"",
                         path, sizeof v.list[0].path - 1, v.too_long);
    }
    if (st != CLMHA_OK) {
        free(v.list);
        free(v.rejected);
        return st;
    }
    *layers = v.list;
    *count = v.n;
    if (rejected != NULL) {
        *rejected = v.rejected;
        *nrejected = v.nrej;
    } else {
        free(v.rejected);
    }
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
    clmha__h5_quiet_enter(&q);
    clmha_status st = clmha__keras_open(NULL, path, &file);
    if (st == CLMHA_OK) {
        st = list_in(NULL, file, path, layers, count, NULL, NULL);
        H5Fclose(file);
    }
    clmha__h5_quiet_leave(&q);
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

/* The layers' paths, quoted and comma-separated, into @p buf ("..." where they do not fit). */
static void path_list(char *buf, size_t len, const clmha_keras_layer_info *list, size_t n) {
    size_t pos = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        const char *p = *list[i].path ? list[i].path : "/";
        if (pos + strlen(p) + 8 >= len) {
            snprintf(buf + pos, len - pos, "%s...", i ? ", " : "");
            return;
        }
        int w = snprintf(buf + pos, len - pos, "%s\"%s\"", i ? ", " : "", p);
        pos += w > 0 ? (size_t)w : 0;
    }
}

/* The one layer of the list that @p name picks (NULL: the only one); a failure says which
 * layers there are, and why a candidate that matched was not loadable. */
static clmha_status pick_layer(clmha_context *ctx, const char *path, const char *name,
                               const clmha_keras_layer_info *list, size_t n,
                               const rejected_layer *rej, size_t nrej,
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
    for (size_t i = 0; i < nrej && found == 0; i++) {
        if (name == NULL ? n == 0 : name_matches(rej[i].path, name)) {
            return clmha__fail(ctx, CLMHA_ERR_INVALID_ARGUMENT,
                               "\"%s\" has %sno attention layer clmha can load%s%s: layer \"%s\": "
                               "%s",
                               path, name ? "" : "", name ? " named " : "", name ? name : "",
                               *rej[i].path ? rej[i].path : "/", rej[i].why);
        }
    }
    char avail[1200];
    path_list(avail, sizeof avail, list, n);
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

/* Finds layer @p name (as clmha_keras_find_layer) in an open file. */
clmha_status clmha__keras_locate(clmha_context *ctx, hid_t file, const char *path, const char *name,
                                 clmha_keras_layer_info *info) {
    clmha_keras_layer_info *list = NULL;
    rejected_layer *rej = NULL;
    size_t n = 0, nrej = 0;
    clmha_status st = list_in(ctx, file, path, &list, &n, &rej, &nrej);
    if (st == CLMHA_OK) {
        st = pick_layer(ctx, path, name, list, n, rej, nrej, info);
    }
    free(list);
    free(rej);
    return st;
}

clmha_status clmha_keras_find_layer(const char *path, const char *name,
                                    clmha_keras_layer_info *info) {
    if (path == NULL || info == NULL) {
        return clmha__fail(NULL, CLMHA_ERR_NULL_ARGUMENT, "clmha_keras_find_layer: %s is NULL",
                           path == NULL ? "path" : "info");
    }
    h5_quiet q;
    hid_t file;
    clmha__h5_quiet_enter(&q);
    clmha_status st = clmha__keras_open(NULL, path, &file);
    if (st == CLMHA_OK) {
        st = clmha__keras_locate(NULL, file, path, name, info);
        H5Fclose(file);
    }
    clmha__h5_quiet_leave(&q);
    return st;
}
