/*
 * layer.c - the layer's configuration (Keras constructor defaults and validation), creation
 * (Keras's build: weight shapes, initialisation, kernel programs), weight upload/download in
 * Keras's layouts, and release.
 */
#include "internal.h"

#include <limits.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

clmha_initializer clmha_initializer_default(clmha_init_kind kind) {
    clmha_initializer i;
    memset(&i, 0, sizeof i);
    i.kind = kind;
    switch (kind) {
    case CLMHA_INIT_RANDOM_UNIFORM:
        i.minval = -0.05;
        i.maxval = 0.05;
        break;
    case CLMHA_INIT_RANDOM_NORMAL:
    case CLMHA_INIT_TRUNCATED_NORMAL:
        i.mean = 0.0;
        i.stddev = 0.05;
        break;
    default:
        break;
    }
    return i;
}

void clmha_layer_config_init(clmha_layer_config *c) {
    if (c == NULL) {
        return;
    }
    memset(c, 0, sizeof *c);
    c->num_heads = 1;
    c->key_dim = 1;
    c->value_dim = 0;
    c->dropout = 0.0;
    c->use_bias = true;
    c->kernel_initializer = clmha_initializer_default(CLMHA_INIT_GLOROT_UNIFORM);
    c->bias_initializer = clmha_initializer_default(CLMHA_INIT_ZEROS);
    c->kernel_constraint.max_value = 2.0;
    c->bias_constraint.max_value = 2.0;
    c->seed = CLMHA_SEED_NONE;
    c->cache_dtype = CLMHA_FLOAT32;
}

static const char *const weight_names[CLMHA_WEIGHT_COUNT] = {
    "query_dense/kernel", "query_dense/bias", "key_dense/kernel",    "key_dense/bias",
    "value_dense/kernel", "value_dense/bias", "output_dense/kernel", "output_dense/bias"};

const char *clmha_weight_name(clmha_weight weight) {
    return ((unsigned)weight < CLMHA_WEIGHT_COUNT) ? weight_names[weight] : NULL;
}

static clmha_status check_initializer(clmha_context *ctx, const char *name,
                                      const clmha_initializer *i) {
    if ((unsigned)i->kind > CLMHA_INIT_CONSTANT) {
        return clmha__fail(ctx, CLMHA_ERR_INVALID_ARGUMENT,
                           "config.%s.kind is %d; expected a clmha_init_kind", name, (int)i->kind);
    }
    if (i->kind == CLMHA_INIT_RANDOM_UNIFORM &&
        !(isfinite(i->minval) && isfinite(i->maxval) && i->minval <= i->maxval)) {
        return clmha__fail(ctx, CLMHA_ERR_INVALID_ARGUMENT,
                           "config.%s: random_uniform needs finite minval <= maxval (got %g, %g)",
                           name, i->minval, i->maxval);
    }
    if ((i->kind == CLMHA_INIT_RANDOM_NORMAL || i->kind == CLMHA_INIT_TRUNCATED_NORMAL) &&
        !(isfinite(i->mean) && isfinite(i->stddev) && i->stddev >= 0)) {
        return clmha__fail(ctx, CLMHA_ERR_INVALID_ARGUMENT,
                           "config.%s: needs a finite mean and stddev >= 0 (got %g, %g)", name,
                           i->mean, i->stddev);
    }
    if (i->kind == CLMHA_INIT_CONSTANT && !isfinite(i->value)) {
        return clmha__fail(ctx, CLMHA_ERR_INVALID_ARGUMENT, "config.%s: value must be finite",
                           name);
    }
    return CLMHA_OK;
}

static clmha_status check_regularizer(clmha_context *ctx, const char *name,
                                      const clmha_regularizer *r) {
    if ((unsigned)r->kind > CLMHA_REGULARIZER_L1L2) {
        return clmha__fail(ctx, CLMHA_ERR_INVALID_ARGUMENT,
                           "config.%s.kind is %d; expected a clmha_regularizer_kind", name,
                           (int)r->kind);
    }
    if (r->kind != CLMHA_REGULARIZER_NONE &&
        !(isfinite(r->l1) && isfinite(r->l2) && r->l1 >= 0 && r->l2 >= 0)) {
        return clmha__fail(ctx, CLMHA_ERR_INVALID_ARGUMENT,
                           "config.%s: l1 and l2 must be finite and >= 0 (got %g, %g)", name, r->l1,
                           r->l2);
    }
    return CLMHA_OK;
}

static clmha_status check_constraint(clmha_context *ctx, const char *name,
                                     const clmha_constraint *c) {
    if ((unsigned)c->kind > CLMHA_CONSTRAINT_UNIT_NORM) {
        return clmha__fail(ctx, CLMHA_ERR_INVALID_ARGUMENT,
                           "config.%s.kind is %d; expected a clmha_constraint_kind", name,
                           (int)c->kind);
    }
    if ((c->kind == CLMHA_CONSTRAINT_MAX_NORM || c->kind == CLMHA_CONSTRAINT_MIN_MAX_NORM) &&
        !(isfinite(c->max_value) && c->max_value >= 0)) {
        return clmha__fail(ctx, CLMHA_ERR_INVALID_ARGUMENT,
                           "config.%s.max_value must be finite and >= 0 (got %g)", name,
                           c->max_value);
    }
    if (c->kind == CLMHA_CONSTRAINT_MIN_MAX_NORM &&
        !(isfinite(c->min_value) && c->min_value >= 0 && c->min_value <= c->max_value &&
          c->rate >= 0 && c->rate <= 1)) {
        return clmha__fail(ctx, CLMHA_ERR_INVALID_ARGUMENT,
                           "config.%s: min_max_norm needs 0 <= min_value <= max_value and rate "
                           "in [0, 1] (got %g, %g, %g)",
                           name, c->min_value, c->max_value, c->rate);
    }
    return CLMHA_OK;
}

static clmha_status check_config(clmha_context *ctx, const clmha_layer_config *c) {
    clmha_status st;
    if (c->num_heads < 1) {
        return clmha__fail(ctx, CLMHA_ERR_INVALID_ARGUMENT, "config.num_heads is %d; expected >= 1",
                           c->num_heads);
    }
    if (c->key_dim < 1) {
        return clmha__fail(ctx, CLMHA_ERR_INVALID_ARGUMENT, "config.key_dim is %d; expected >= 1",
                           c->key_dim);
    }
    if (c->value_dim < 0) {
        return clmha__fail(ctx, CLMHA_ERR_INVALID_ARGUMENT,
                           "config.value_dim is %d; expected >= 1, or 0 for key_dim", c->value_dim);
    }
    if (c->cache_dtype != CLMHA_FLOAT32 && c->cache_dtype != CLMHA_FLOAT16) {
        return clmha__fail(ctx, CLMHA_ERR_INVALID_ARGUMENT,
                           "config.cache_dtype is %d; expected CLMHA_FLOAT32 or CLMHA_FLOAT16",
                           (int)c->cache_dtype);
    }
    if (!(c->dropout >= 0.0 && c->dropout < 1.0)) {
        return clmha__fail(ctx, CLMHA_ERR_INVALID_ARGUMENT,
                           "config.dropout is %g; expected a rate in [0, 1)", c->dropout);
    }
    if (c->output_rank < 0 || c->output_rank > CLMHA_MAX_RANK - 2) {
        return clmha__fail(ctx, CLMHA_ERR_INVALID_ARGUMENT,
                           "config.output_rank is %d; expected 0 (None) to %d", c->output_rank,
                           CLMHA_MAX_RANK - 2);
    }
    for (int i = 0; i < c->output_rank; i++) {
        if (c->output_shape[i] == 0) {
            return clmha__fail(ctx, CLMHA_ERR_INVALID_ARGUMENT,
                               "config.output_shape[%d] is 0; expected >= 1", i);
        }
    }
    if (c->num_attention_axes < 0 || c->num_attention_axes > CLMHA_MAX_RANK) {
        return clmha__fail(ctx, CLMHA_ERR_INVALID_ARGUMENT,
                           "config.num_attention_axes is %d; expected 0 (None) to %d",
                           c->num_attention_axes, CLMHA_MAX_RANK);
    }
    for (int i = 0; i < c->num_attention_axes; i++) {
        if (c->attention_axes[i] == 0) {
            return clmha__fail(ctx, CLMHA_ERR_INVALID_ARGUMENT,
                               "config.attention_axes[%d] is 0, the batch axis, which cannot be "
                               "attended over",
                               i);
        }
    }
    if ((st = check_initializer(ctx, "kernel_initializer", &c->kernel_initializer)) ||
        (st = check_initializer(ctx, "bias_initializer", &c->bias_initializer)) ||
        (st = check_regularizer(ctx, "kernel_regularizer", &c->kernel_regularizer)) ||
        (st = check_regularizer(ctx, "bias_regularizer", &c->bias_regularizer)) ||
        (st = check_regularizer(ctx, "activity_regularizer", &c->activity_regularizer)) ||
        (st = check_constraint(ctx, "kernel_constraint", &c->kernel_constraint)) ||
        (st = check_constraint(ctx, "bias_constraint", &c->bias_constraint))) {
        return st;
    }
    if (c->seed < CLMHA_SEED_NONE) {
        return clmha__fail(ctx, CLMHA_ERR_INVALID_ARGUMENT,
                           "config.seed is %lld; expected >= 0 or CLMHA_SEED_NONE",
                           (long long)c->seed);
    }
    return CLMHA_OK;
}

/* Keras's layout of each weight. */
static void weight_shape(const clmha_layer *l, clmha_weight w, int *rank, size_t *shape) {
    switch (w) {
    case CLMHA_WEIGHT_QUERY_KERNEL:
    case CLMHA_WEIGHT_KEY_KERNEL:
    case CLMHA_WEIGHT_VALUE_KERNEL:
        *rank = 3;
        shape[0] = w == CLMHA_WEIGHT_QUERY_KERNEL ? l->dq_in
                   : w == CLMHA_WEIGHT_KEY_KERNEL ? l->dk_in
                                                  : l->dv_in;
        shape[1] = l->heads;
        shape[2] = w == CLMHA_WEIGHT_VALUE_KERNEL ? l->dv : l->dk;
        break;
    case CLMHA_WEIGHT_QUERY_BIAS:
    case CLMHA_WEIGHT_KEY_BIAS:
    case CLMHA_WEIGHT_VALUE_BIAS:
        *rank = 2;
        shape[0] = l->heads;
        shape[1] = w == CLMHA_WEIGHT_VALUE_BIAS ? l->dv : l->dk;
        break;
    case CLMHA_WEIGHT_OUTPUT_KERNEL:
        *rank = 2 + l->out_rank;
        shape[0] = l->heads;
        shape[1] = l->dv;
        memcpy(shape + 2, l->out_shape, (size_t)l->out_rank * sizeof *shape);
        break;
    case CLMHA_WEIGHT_OUTPUT_BIAS:
    default:
        *rank = l->out_rank;
        memcpy(shape, l->out_shape, (size_t)l->out_rank * sizeof *shape);
        break;
    }
}

static size_t shape_numel(int rank, const size_t *shape) {
    size_t n = 1;
    for (int i = 0; i < rank; i++) {
        n *= shape[i];
    }
    return n;
}

static bool is_bias(clmha_weight w) {
    return w == CLMHA_WEIGHT_QUERY_BIAS || w == CLMHA_WEIGHT_KEY_BIAS ||
           w == CLMHA_WEIGHT_VALUE_BIAS || w == CLMHA_WEIGHT_OUTPUT_BIAS;
}

/* Fans as Keras computes them: an EinsumDense kernel's fan_in is the product of its input
 * (contracted) axes and fan_out that of its output axes; a bias, as any other tensor, uses
 * Keras's compute_fans (rank 1: n, n; rank 2: shape[0], shape[1]; else receptive field). */
static void weight_fans(const clmha_layer *l, clmha_weight w, double *fan_in, double *fan_out) {
    int rank = 0;
    size_t shape[CLMHA_MAX_RANK];
    weight_shape(l, w, &rank, shape);
    if (!is_bias(w)) {
        size_t n_in = w == CLMHA_WEIGHT_OUTPUT_KERNEL ? l->heads * l->dv : shape[0];
        *fan_in = (double)n_in;
        *fan_out = (double)(shape_numel(rank, shape) / n_in);
        return;
    }
    if (rank == 1) {
        *fan_in = *fan_out = (double)shape[0];
    } else if (rank == 2) {
        *fan_in = (double)shape[0];
        *fan_out = (double)shape[1];
    } else {
        double rf = (double)shape_numel(rank - 2, shape);
        *fan_in = (double)shape[rank - 2] * rf;
        *fan_out = (double)shape[rank - 1] * rf;
    }
}

static size_t pow2_floor(size_t x) {
    size_t p = 1;
    while (p * 2 <= x) {
        p *= 2;
    }
    return p;
}

/* The lanes a key row of attention_split_gpu: enough for one vector (4 floats, or 1 where a
 * head dim is not a multiple of 4) of the longer head dim a lane, at most 32 and wgs. */
static size_t gpu_lanes_key(const clmha_layer *l, size_t wgs) {
    const size_t vw = l->dk % 4 == 0 && l->dv % 4 == 0 ? 4 : 1;
    const size_t d = l->dk > l->dv ? l->dk : l->dv;
    size_t lk = 1;
    while (lk * vw < d && lk < 32 && lk < wgs) {
        lk *= 2;
    }
    return lk;
}

/* The lanes a query row of attention_qtile_gpu: at most the tuning row's lane_floats output
 * elements a lane (16 unless the row says otherwise). */
static size_t gpu_lanes_query(const clmha_layer *l, size_t wgs) {
    const size_t per_lane = l->ctx->tuning.lane_floats ? l->ctx->tuning.lane_floats : 16;
    size_t lq = 1;
    while (lq * per_lane < l->dv && lq < wgs) {
        lq *= 2;
    }
    return lq;
}

/* Local memory (bytes) of attention_split_gpu with wgs work-items (attention_gpu.cl's arrays). */
static size_t split_gpu_lds(const clmha_layer *l, size_t wgs) {
    const size_t lk = gpu_lanes_key(l, wgs), lg = wgs / lk;
    const size_t pt = lg * lk * (lk + 1), cb = lg * l->dv;
    return ((pt > cb ? pt : cb) + wgs + 2 * lg) * sizeof(float) + wgs * sizeof(cl_int);
}

/* Local memory (bytes) of attention_qtile_gpu with wgs work-items and key tiles of kt. */
static size_t qtile_gpu_lds(const clmha_layer *l, size_t wgs, size_t kt) {
    const size_t qr = wgs / gpu_lanes_query(l, wgs);
    return (qr * l->dk + kt * (l->dk + 1) + kt * l->dv + qr * kt) * sizeof(float) + qr * kt;
}

/* A switch setting: its value where given, else @p def. */
static bool switch_on(const clmha_context *ctx, clmha__setting_id id, bool def) {
    size_t v;
    return clmha__setting(ctx, id, &v) ? v != 0 : def;
}

/* A setting whose allowed values depend on the layer and device: fails when it is given and
 * larger than @p most, naming the key, its source and why. */
static clmha_status setting_within(clmha_layer *l, clmha__setting_id id, size_t most,
                                   const char *why, size_t *v, bool *given) {
    *given = clmha__setting(l->ctx, id, v);
    if (*given && *v > most) {
        return clmha__fail(l->ctx, CLMHA_ERR_INVALID_ARGUMENT,
                           "%s: %s=%zu is more than this layer can take on this device: at most "
                           "%zu (%s)",
                           clmha__setting_source(l->ctx, id), clmha__setting_key(id), *v, most,
                           why);
    }
    return CLMHA_OK;
}

/* The split attention's settings: split=0 turns it off; split_wg (a power of two) and
 * split_chunk (keys) override the tuning table's defaults (one work-item a work-group on CPUs,
 * which streams its keys with vector loads, else wg_cap as local memory allows; chunks of at
 * least 256 keys). */
static clmha_status split_settings(clmha_layer *l, size_t wg_cap) {
    clmha_context *ctx = l->ctx;
    l->use_split = switch_on(ctx, CLMHA__SET_SPLIT, true);
    size_t wgs = ctx->tuning.split_wg == 1 ? 1 : wg_cap;
    while (wgs > 1 && split_gpu_lds(l, wgs) > ctx->info.local_mem_bytes) {
        wgs /= 2;
    }
    size_t v;
    bool given;
    clmha_status st = setting_within(l, CLMHA__SET_SPLIT_WG, wg_cap,
                                     "the attention kernels' work-group limit", &v, &given);
    if (st != CLMHA_OK) {
        return st;
    }
    wgs = given ? v : wgs;
    l->wg_split = wgs;
    l->lanes_key = gpu_lanes_key(l, wgs);
    l->lanes_query = gpu_lanes_query(l, wgs);
    /* All heads of a query position in one work-item where one work-item streams the keys
     * (CPUs), when the heads' queries, outputs and softmax states fit in half the local memory;
     * heads=0 turns it off. Without it the kernel is built for one head (NH = 1), so its
     * local arrays never exceed a device's limit. */
    l->use_heads = wgs == 1 && switch_on(ctx, CLMHA__SET_HEADS, true) &&
                   l->heads * (l->dk + l->dv + 2) * sizeof(float) <= ctx->info.local_mem_bytes / 2;
    /* It and the query tiles take keys sixteen at a time where the head dims are multiples of
     * 16; key_block=0 makes them take keys one at a time. */
    l->key_block = switch_on(ctx, CLMHA__SET_KEY_BLOCK, true);
    /* Query tiles where one work-item streams the keys (CPUs); tile=0 turns them off. */
    const bool tile = switch_on(ctx, CLMHA__SET_TILE, true);
    l->use_tile = wgs == 1 && tile;
    /* Each row keeps its output in private memory: at most 512 floats in all (2 KiB; Mesa's
     * llvmpipe computes wrong results from 4 KiB on), and the table's rows (8 on CPUs: more
     * measured no faster on PoCL); the queries are in local memory. */
    l->tile_rows = 512 / l->dv;
    l->tile_rows = l->tile_rows > ctx->tuning.tile_rows ? ctx->tuning.tile_rows : l->tile_rows;
    if (clmha__setting(ctx, CLMHA__SET_TILE_ROWS, &v)) {
        l->tile_rows = v; /* 1 to 16, checked by the parser */
    }
    l->use_tile = l->use_tile && l->tile_rows >= 2; /* one row a tile: the split kernel */
    /* Elsewhere (GPUs), query tiles of wg_split / lanes_query rows with key tiles in local
     * memory: KT keys and values (the table's key_tile at most; 0: no query tiles), within the
     * row's tile_local bytes and half the local memory. */
    l->use_qtile = wgs >= 2 && ctx->tuning.key_tile > 0 && tile;
    size_t budget = ctx->info.local_mem_bytes / 2;
    budget = ctx->tuning.tile_local != 0 && ctx->tuning.tile_local < budget ? ctx->tuning.tile_local
                                                                            : budget;
    l->key_tile = pow2_floor(ctx->tuning.key_tile > 0 ? ctx->tuning.key_tile : 1);
    while (l->key_tile > 1 && wgs >= 2 && qtile_gpu_lds(l, wgs, l->key_tile) > budget) {
        l->key_tile /= 2;
    }
    if ((st = setting_within(l, CLMHA__SET_KEY_TILE, l->key_tile,
                             "what local memory allows for this layer's key tiles", &v, &given)) !=
        CLMHA_OK) {
        return st;
    }
    l->key_tile = given ? v : l->key_tile;
    l->split_min_chunk = ctx->tuning.split_chunk;
    if (clmha__setting(ctx, CLMHA__SET_SPLIT_CHUNK, &v)) {
        l->split_min_chunk = v; /* 1 to INT_MAX, checked by the parser */
    }
    return CLMHA_OK;
}

/* A build of gemm_bias4 and gemm_qkv4 with *rows rows of CLMHA__GEMM_BLOCK_COLS columns a
 * work-item: *rows is @p def or the setting @p id (gemm_rows or gemm_rows_few; their ranges
 * are the parser's); 1 builds nothing. */
static clmha_status build_gemm_rows(clmha_layer *l, clmha__setting_id id, size_t def, size_t *rows,
                                    clmha__kernel *k_gemm, clmha__kernel *k_qkv) {
    clmha_context *ctx = l->ctx;
    if (!clmha__setting(ctx, id, rows)) {
        *rows = def;
    }
    if (*rows == 1) {
        return CLMHA_OK;
    }
    char defines[48];
    snprintf(defines, sizeof defines, "-DGC=%d -DGR=%zu", CLMHA__GEMM_BLOCK_COLS, *rows);
    cl_program prog;
    clmha_status st = clmha__program_get(ctx, "gemm.cl", defines, &prog);
    if (st == CLMHA_OK) {
        st = clmha__kernel_create(ctx, prog, "gemm_bias4", k_gemm);
    }
    if (st == CLMHA_OK) {
        st = clmha__kernel_create(ctx, prog, "gemm_qkv4", k_qkv);
    }
    return st;
}

/* gemm_tail, the last launch of calls whose output projection takes the own GEMM: built from
 * merge.cl, gemm.cl and splice.cl with the output's columns a work-item (32 on CPUs where they
 * divide the output width, else 4), one work-item a group for 32 columns, else the own GEMM's
 * group size; one row a work-item, and where the few-rows build of the own GEMM exists (CPUs)
 * also with its rows (use_tail_few), for batched decode steps. Off (the merge, output
 * projection and commit launches instead) with tail=0, an output width that is not a
 * multiple of 4, or where its merged rows (H * DV floats each) and chunk weights do not fit in
 * local memory or the kernel allows fewer work-items. Needs gemm.cl's kernels built (wg_gemm,
 * gemm_few). */
static clmha_status build_tail(clmha_layer *l) {
    clmha_context *ctx = l->ctx;
    const size_t hv = l->heads * l->dv;
    l->use_tail = switch_on(ctx, CLMHA__SET_TAIL, true) && l->out_features % 4 == 0 &&
                  (hv + CLMHA__MAX_CHUNKS) * sizeof(float) <= ctx->info.local_mem_bytes &&
                  !l->gemm_k_long;
    if (!l->use_tail) {
        return CLMHA_OK;
    }
    l->tail_cols = clmha__gemm_cols(l, l->out_features);
    l->wg_tail = l->tail_cols > 4 ? 1 : l->wg_gemm;
    l->use_tail_few =
        l->gemm_few > 1 && l->tail_cols == CLMHA__GEMM_BLOCK_COLS &&
        (l->gemm_few * hv + CLMHA__MAX_CHUNKS) * sizeof(float) <= ctx->info.local_mem_bytes;
    for (int few = 0; few < (l->use_tail_few ? 2 : 1); few++) {
        for (int half = 0; half < (l->half_cache ? 2 : 1); half++) {
            char defines[160], rows[24] = "";
            if (few) {
                snprintf(rows, sizeof rows, " -DGR=%zu", l->gemm_few);
            }
            snprintf(defines, sizeof defines, "-DDV=%zu -DHV=%zu -DGC=%zu -DMAX_CHUNKS=%d%s%s",
                     l->dv, hv, l->tail_cols, CLMHA__MAX_CHUNKS, rows, half ? " -DCACHE_HALF" : "");
            clmha__kernel *k = few ? (half ? &l->k_tail_few_half : &l->k_tail_few)
                                   : (half ? &l->k_tail_half : &l->k_tail);
            cl_program prog;
            clmha_status st = clmha__program_get(ctx, "tail.cl", defines, &prog);
            if (st == CLMHA_OK) {
                st = clmha__kernel_create(ctx, prog, "gemm_tail", k);
            }
            if (st != CLMHA_OK) {
                return st;
            }
            if (k->max_wg < l->wg_tail || k->local_mem > ctx->info.local_mem_bytes) {
                clmha__log(ctx, CLMHA_LOG_INFO,
                           "gemm_tail%s off: it allows %zu work-items (needs %zu) and needs %llu "
                           "bytes of local memory",
                           few ? " (few rows)" : "", k->max_wg, l->wg_tail,
                           (unsigned long long)k->local_mem);
                *(few ? &l->use_tail_few : &l->use_tail) = false;
            }
        }
    }
    return CLMHA_OK;
}

/* The attention kernels for one cache dtype (half: KV_HALF): attention_rows.cl's with wg
 * work-items a group, and either attention_cpu.cl's (wg_split 1) or attention_gpu.cl's. */
static clmha_status build_attention_family(clmha_layer *l, size_t wg, bool half) {
    clmha_context *ctx = l->ctx;
    const char *kv = half ? " -DKV_HALF" : "";
    char defines[256];
    cl_program prog;
    clmha_status st;
    /* GPUs (the split kernel several work-items a group) take the rows kernel's dot products
     * four lanes wide: sixteen hold too many registers in flight. */
    snprintf(defines, sizeof defines, "-DDK=%zu -DDV=%zu -DWG=%zu%s%s", l->dk, l->dv, wg,
             l->wg_split > 1 ? " -DQK_VEC=4" : "", kv);
    clmha__kernel *rows = half ? &l->k_attention_half : &l->k_attention;
    clmha__kernel *split = half ? &l->k_split_half : &l->k_split;
    clmha__kernel_release(rows);
    clmha__kernel_release(split);
    if ((st = clmha__program_get(ctx, "attention_rows.cl", defines, &prog)) != CLMHA_OK ||
        (st = clmha__kernel_create(ctx, prog, "attention_rows", rows)) != CLMHA_OK) {
        return st;
    }
    if (l->wg_split == 1) {
        clmha__kernel *heads = half ? &l->k_heads_half : &l->k_heads;
        clmha__kernel *tile = half ? &l->k_tile_half : &l->k_tile;
        clmha__kernel_release(heads);
        clmha__kernel_release(tile);
        snprintf(defines, sizeof defines, "-DDK=%zu -DDV=%zu -DTQ=%zu -DNH=%zu -DKEY_BLOCK=%d%s",
                 l->dk, l->dv, l->tile_rows, l->use_heads ? l->heads : 1, l->key_block ? 1 : 0, kv);
        if ((st = clmha__program_get(ctx, "attention_cpu.cl", defines, &prog)) != CLMHA_OK ||
            (st = clmha__kernel_create(ctx, prog, "attention_split", split)) != CLMHA_OK ||
            (st = clmha__kernel_create(ctx, prog, "attention_heads", heads)) != CLMHA_OK ||
            (st = clmha__kernel_create(ctx, prog, "attention_tile", tile)) != CLMHA_OK) {
            return st;
        }
        return CLMHA_OK;
    }
    clmha__kernel *qtile = half ? &l->k_qtile_half : &l->k_qtile;
    clmha__kernel_release(qtile);
    snprintf(defines, sizeof defines, "-DDK=%zu -DDV=%zu -DWGS=%zu -DLK=%zu -DLQ=%zu -DKT=%zu%s",
             l->dk, l->dv, l->wg_split, l->lanes_key, l->lanes_query, l->key_tile, kv);
    if ((st = clmha__program_get(ctx, "attention_gpu.cl", defines, &prog)) != CLMHA_OK ||
        (st = clmha__kernel_create(ctx, prog, "attention_split_gpu", split)) != CLMHA_OK ||
        (st = clmha__kernel_create(ctx, prog, "attention_qtile_gpu", qtile)) != CLMHA_OK) {
        return st;
    }
    return CLMHA_OK;
}

/* The attention kernels (rows, split, and the family's tiles) and the merge; the rows kernel's
 * work-group size wg shrinks to what the compiled kernel allows; the split, all-heads and tile
 * kernels are turned off where the compiled kernels cannot take their settings. */
static clmha_status build_attention(clmha_layer *l, size_t wg) {
    clmha_context *ctx = l->ctx;
    clmha_status st;
    for (int attempt = 0; attempt < 2; attempt++) {
        size_t lmem = (l->dk + 2 * wg) * sizeof(float);
        if (lmem > ctx->info.local_mem_bytes) {
            return clmha__fail(ctx, CLMHA_ERR_DEVICE_LIMIT,
                               "key_dim %zu needs %zu bytes of local memory in the attention "
                               "kernel; device \"%s\" has %llu",
                               l->dk, lmem, ctx->info.name,
                               (unsigned long long)ctx->info.local_mem_bytes);
        }
        size_t kmax = SIZE_MAX, gmax = SIZE_MAX;
        for (int half = 0; half < (l->half_cache ? 2 : 1); half++) {
            if ((st = build_attention_family(l, wg, half != 0)) != CLMHA_OK) {
                return st;
            }
            const clmha__kernel *rows = half ? &l->k_attention_half : &l->k_attention;
            kmax = kmax < rows->max_wg ? kmax : rows->max_wg;
            if (l->wg_split > 1) { /* the GPU kernels are built for exactly wg_split */
                const clmha__kernel *split = half ? &l->k_split_half : &l->k_split;
                const clmha__kernel *qtile = half ? &l->k_qtile_half : &l->k_qtile;
                gmax = gmax < split->max_wg ? gmax : split->max_wg;
                gmax = gmax < qtile->max_wg ? gmax : qtile->max_wg;
            }
        }
        /* A device may allow the GPU kernels fewer work-items than it allows in general
         * (Mesa's llvmpipe: 32): they are built again for that many. */
        const bool gpu_fits = l->wg_split == 1 || gmax >= l->wg_split || gmax < 2;
        if (!gpu_fits) {
            l->wg_split = pow2_floor(gmax);
            l->lanes_key = gpu_lanes_key(l, l->wg_split);
            l->lanes_query = gpu_lanes_query(l, l->wg_split);
            clmha__log(ctx, CLMHA_LOG_INFO,
                       "the GPU attention kernels allow %zu work-items: built again for %zu", gmax,
                       l->wg_split);
        }
        if (kmax >= wg && gpu_fits) {
            break;
        }
        if (kmax >= wg) {
            continue; /* only the GPU kernels again, with the same wg */
        }
        if (attempt == 1 || kmax == 0) {
            return clmha__fail(ctx, CLMHA_ERR_DEVICE_LIMIT,
                               "the attention kernel allows only %zu work-items on device \"%s\"",
                               kmax, ctx->info.name);
        }
        wg = pow2_floor(kmax);
    }
    l->wg_attention = wg;
    char dv_define[48];
    cl_program prog;
    snprintf(dv_define, sizeof dv_define, "-DDV=%zu -DMAX_CHUNKS=%d", l->dv, CLMHA__MAX_CHUNKS);
    if ((st = clmha__program_get(ctx, "merge.cl", dv_define, &prog)) != CLMHA_OK ||
        (st = clmha__kernel_create(ctx, prog, "attention_merge", &l->k_merge)) != CLMHA_OK) {
        return st;
    }
    /* The split kernels must take their work-group sizes (merge runs with wg); where the
     * compiled kernel allows fewer, calls use attention_rows alone. */
    if (l->use_split && (l->k_split.max_wg < l->wg_split || l->k_merge.max_wg < wg ||
                         (l->half_cache && l->k_split_half.max_wg < l->wg_split) ||
                         l->k_split.local_mem > ctx->info.local_mem_bytes)) {
        clmha__log(ctx, CLMHA_LOG_INFO,
                   "split attention off: its kernels allow %zu and %zu work-items (need %zu, %zu)",
                   l->k_split.max_wg, l->k_merge.max_wg, l->wg_split, wg);
        l->use_split = false;
    }
    if (l->use_heads &&
        (!l->use_split || l->k_heads.local_mem > ctx->info.local_mem_bytes ||
         (l->half_cache && l->k_heads_half.local_mem > ctx->info.local_mem_bytes))) {
        clmha__log(ctx, CLMHA_LOG_INFO,
                   "all-heads attention off: it needs %llu bytes of local memory",
                   (unsigned long long)l->k_heads.local_mem);
        l->use_heads = false;
    }
    if (l->use_tile && (l->k_tile.local_mem > ctx->info.local_mem_bytes ||
                        (l->half_cache && l->k_tile_half.local_mem > ctx->info.local_mem_bytes))) {
        clmha__log(ctx, CLMHA_LOG_INFO,
                   "query tiles off: their queries need %llu bytes of local memory",
                   (unsigned long long)l->k_tile.local_mem);
        l->use_tile = false;
    }
    if (l->use_qtile && (!l->use_split || l->k_qtile.max_wg < l->wg_split ||
                         l->k_qtile.local_mem > ctx->info.local_mem_bytes ||
                         (l->half_cache && l->k_qtile_half.max_wg < l->wg_split))) {
        clmha__log(ctx, CLMHA_LOG_INFO, "query tiles off: the kernel allows %zu work-items",
                   l->k_qtile.max_wg);
        l->use_qtile = false;
    }
    return CLMHA_OK;
}

/* Builds the programs and kernels; the attention work-group size starts at the tuning table's
 * (64, a multiple of every GPU's SIMD width) and shrinks to what the device and kernel allow. */
static clmha_status build_kernels(clmha_layer *l) {
    clmha_context *ctx = l->ctx;
    clmha_status st;
    cl_program prog;
    size_t wg = pow2_floor(ctx->info.max_work_group_size < ctx->info.max_work_item_sizes[0]
                               ? ctx->info.max_work_group_size
                               : ctx->info.max_work_item_sizes[0]);
    if (wg > ctx->tuning.wg) {
        wg = pow2_floor(ctx->tuning.wg);
    }
    if ((st = split_settings(l, wg)) != CLMHA_OK || (st = clmha__fill_prepare(ctx)) != CLMHA_OK) {
        return st;
    }
    if ((st = build_attention(l, wg)) != CLMHA_OK) {
        return st;
    }
    if ((st = clmha__program_get(ctx, "bias.cl", "", &prog)) != CLMHA_OK ||
        (st = clmha__kernel_create(ctx, prog, "fill_bias", &l->k_fill)) != CLMHA_OK) {
        return st;
    }
    if ((st = clmha__program_get(ctx, "gather.cl", "", &prog)) != CLMHA_OK ||
        (st = clmha__kernel_create(ctx, prog, "gather_rows", &l->k_gather)) != CLMHA_OK ||
        (st = clmha__kernel_create(ctx, prog, "gather_mask", &l->k_gather_mask)) != CLMHA_OK) {
        return st;
    }
    l->wg_gather =
        pow2_floor(l->k_gather.max_wg < l->k_gather_mask.max_wg ? l->k_gather.max_wg
                                                                : l->k_gather_mask.max_wg);
    l->wg_gather = l->wg_gather < 256 ? l->wg_gather : 256;
    if ((st = clmha__program_get(ctx, "gemm.cl", "", &prog)) != CLMHA_OK ||
        (st = clmha__kernel_create(ctx, prog, "gemm_acc", &l->k_gemm)) != CLMHA_OK ||
        (st = clmha__kernel_create(ctx, prog, "gemm_bias4", &l->k_gemm4)) != CLMHA_OK ||
        (st = clmha__kernel_create(ctx, prog, "gemm_qkv4", &l->k_qkv)) != CLMHA_OK) {
        return st;
    }
    l->wg_gemm = pow2_floor(l->k_gemm.max_wg < 64 ? l->k_gemm.max_wg : 64);
    l->wg_gemm = l->wg_gemm < l->k_gemm4.max_wg ? l->wg_gemm : pow2_floor(l->k_gemm4.max_wg);
    l->wg_gemm = l->wg_gemm < l->k_qkv.max_wg ? l->wg_gemm : pow2_floor(l->k_qkv.max_wg);
    /* Where the tuning table says (CPUs), also 32 columns a work-item (gemm_cols: 4 or 32). */
    size_t cols = ctx->tuning.gemm_cols;
    clmha__setting(ctx, CLMHA__SET_GEMM_COLS, &cols);
    l->gemm_wide = cols == 32 ? 32 : 0;
    if (l->gemm_wide != 0 &&
        ((st = clmha__program_get(ctx, "gemm.cl", "-DGC=32", &prog)) != CLMHA_OK ||
         (st = clmha__kernel_create(ctx, prog, "gemm_bias4", &l->k_gemm_wide)) != CLMHA_OK ||
         (st = clmha__kernel_create(ctx, prog, "gemm_qkv4", &l->k_qkv_wide)) != CLMHA_OK)) {
        return st;
    }
    /* Where the 32-column build is (CPUs): the table's rows of 32 columns a work-item (12) for
     * products of many rows (prefill), unless gemm=clblast leaves those to CLBlast, and
     * its few rows (4) for 3 to gemm_small_m rows (batched decode steps). */
    const bool cpu_rows = l->gemm_wide != 0;
    if ((st = build_gemm_rows(l, CLMHA__SET_GEMM_ROWS,
                              cpu_rows && !ctx->clblast_only ? ctx->tuning.gemm_rows : 1,
                              &l->gemm_rows, &l->k_gemm_blk, &l->k_qkv_blk)) != CLMHA_OK ||
        (st = build_gemm_rows(l, CLMHA__SET_GEMM_ROWS_FEW, cpu_rows ? ctx->tuning.gemm_rows_few : 1,
                              &l->gemm_few, &l->k_gemm_few, &l->k_qkv_few)) != CLMHA_OK) {
        return st;
    }
    if (!cpu_rows) {
        l->gemm_few = 1; /* the few-rows build goes with the 32-column one */
    }
    if ((st = clmha__program_get(ctx, "splice.cl", "", &prog)) != CLMHA_OK ||
        (st = clmha__kernel_create(ctx, prog, "commit", &l->k_commit)) != CLMHA_OK) {
        return st;
    }
    if (l->half_cache &&
        ((st = clmha__program_get(ctx, "splice.cl", "-DCACHE_HALF", &prog)) != CLMHA_OK ||
         (st = clmha__kernel_create(ctx, prog, "commit", &l->k_commit_half)) != CLMHA_OK ||
         (st = clmha__kernel_create(ctx, prog, "to_half", &l->k_to_half)) != CLMHA_OK)) {
        return st;
    }
    /* Self-attention's projections as one CLBlast product: where CLBlast may take all three
     * (clmha__project_qkv_blas_fits) and the three input dims are equal, unless
     * qkv_fuse=0. */
    const size_t nq = l->heads * l->dk, nv = l->heads * l->dv;
    l->fuse_blas = switch_on(ctx, CLMHA__SET_QKV_FUSE, true) && l->dq_in == l->dk_in &&
                   l->dq_in == l->dv_in && clmha__clblast_may_take(l, nq) &&
                   clmha__clblast_may_take(l, nv);
    if (l->fuse_blas) {
        if ((st = clmha__program_get(ctx, "qkv.cl", "", &prog)) != CLMHA_OK ||
            (st = clmha__kernel_create(ctx, prog, "pack_columns", &l->k_pack)) != CLMHA_OK ||
            (st = clmha__kernel_create(ctx, prog, "split_qkv", &l->k_split_qkv)) != CLMHA_OK) {
            return st;
        }
        size_t m =
            l->k_pack.max_wg < l->k_split_qkv.max_wg ? l->k_pack.max_wg : l->k_split_qkv.max_wg;
        l->wg_qkv = pow2_floor(m < 256 ? m : 256);
    }
    /* The own GEMM's work-items loop over the whole input width, a few iterations an input
     * element (4 bounds every build): widths past item_loops / 4 go to CLBlast. */
    size_t k_max = l->dq_in > l->dk_in ? l->dq_in : l->dk_in;
    k_max = k_max > l->dv_in ? k_max : l->dv_in;
    k_max = k_max > l->heads * l->dv ? k_max : l->heads * l->dv;
    l->gemm_k_long = k_max > ctx->item_loops / 4;
    if (l->gemm_k_long) {
        clmha__log(ctx, CLMHA_LOG_INFO,
                   "input width %zu: projections on CLBlast (the own GEMM would loop past %zu "
                   "iterations a work-item)",
                   k_max, ctx->item_loops);
    }
    if ((st = build_tail(l)) != CLMHA_OK) {
        return st;
    }
    l->wg_fill = pow2_floor(l->k_fill.max_wg < 256 ? l->k_fill.max_wg : 256);
    l->wg_commit = pow2_floor(l->k_commit.max_wg < 256 ? l->k_commit.max_wg : 256);
    if (l->half_cache) {
        size_t m = l->k_commit_half.max_wg < l->k_to_half.max_wg ? l->k_commit_half.max_wg
                                                                 : l->k_to_half.max_wg;
        l->wg_commit = l->wg_commit < m ? l->wg_commit : pow2_floor(m);
    }
    return clmha__regularize_build(l);
}

static clmha_status upload(clmha_layer *l, clmha_weight w, const float *data, size_t n) {
    l->qkv_packed = false; /* the packed copy (if any) is made again before it is next read */
    cl_int err = clEnqueueWriteBuffer(l->ctx->queue, l->weights[w], CL_TRUE, 0, n * sizeof(float),
                                      data, 0, NULL, NULL);
    if (err != CL_SUCCESS) {
        char what[128];
        snprintf(what, sizeof what, "uploading weight %s", weight_names[w]);
        return clmha__fail_cl(l->ctx, err, what);
    }
    return CLMHA_OK;
}

static uint64_t clock_seed(const void *salt) {
    struct timespec ts;
    timespec_get(&ts, TIME_UTC);
    uint64_t x =
        (uint64_t)ts.tv_sec * 1000000007ull ^ (uint64_t)ts.tv_nsec ^ (uint64_t)(size_t)salt;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return x;
}

clmha_status clmha_layer_create(clmha_context *ctx, const clmha_layer_config *config,
                                size_t query_dim, size_t value_dim, size_t key_dim,
                                clmha_layer **out) {
    if (ctx == NULL || config == NULL || out == NULL) {
        return clmha__fail(ctx, CLMHA_ERR_NULL_ARGUMENT, "clmha_layer_create: %s is NULL",
                           ctx == NULL      ? "ctx"
                           : config == NULL ? "config"
                                            : "layer (the output pointer)");
    }
    clmha_status st = clmha__check_alive(ctx, "clmha_layer_create");
    if (st != CLMHA_OK || (st = check_config(ctx, config)) != CLMHA_OK) {
        return st;
    }
    if (query_dim == 0 || value_dim == 0) {
        return clmha__fail(ctx, CLMHA_ERR_INVALID_ARGUMENT,
                           "clmha_layer_create: %s is 0; expected the input's feature dim >= 1",
                           query_dim == 0 ? "query_dim" : "value_dim");
    }
    clmha_layer *l = calloc(1, sizeof *l);
    float *host = NULL;
    if (l == NULL) {
        return clmha__fail(ctx, CLMHA_ERR_OUT_OF_HOST_MEMORY, "clmha_layer_create: out of memory");
    }
    l->ctx = ctx;
    l->cfg = *config;
    l->half_cache = config->cache_dtype == CLMHA_FLOAT16;
    l->heads = (size_t)config->num_heads;
    l->dk = (size_t)config->key_dim;
    l->dv = config->value_dim > 0 ? (size_t)config->value_dim : l->dk;
    l->dq_in = query_dim;
    l->dv_in = value_dim;
    l->dk_in = key_dim ? key_dim : value_dim;
    if (config->output_rank > 0) {
        l->out_rank = config->output_rank;
        memcpy(l->out_shape, config->output_shape, (size_t)l->out_rank * sizeof(size_t));
    } else {
        l->out_rank = 1;
        l->out_shape[0] = query_dim;
    }
    l->seed = config->seed >= 0 ? (uint64_t)config->seed : clock_seed(l);

    /* Every weight's size, checked for overflow and against the device's allocation limit. */
    size_t largest = 0;
    size_t counts[CLMHA_WEIGHT_COUNT] = {0};
    size_t hd = 0, out_f = 1;
    if (!clmha__mul(l->heads, l->dk > l->dv ? l->dk : l->dv, &hd)) {
        st = clmha__fail(ctx, CLMHA_ERR_OUT_OF_RANGE, "num_heads x key_dim overflows");
        goto cleanup;
    }
    for (int i = 0; i < l->out_rank; i++) {
        if (!clmha__mul(out_f, l->out_shape[i], &out_f)) {
            st = clmha__fail(ctx, CLMHA_ERR_OUT_OF_RANGE, "config.output_shape overflows");
            goto cleanup;
        }
    }
    l->out_features = out_f;
    for (int w = 0; w < CLMHA_WEIGHT_COUNT; w++) {
        int rank;
        size_t shape[CLMHA_MAX_RANK], n = 1;
        if (is_bias((clmha_weight)w) && !config->use_bias) {
            continue;
        }
        weight_shape(l, (clmha_weight)w, &rank, shape);
        for (int i = 0; i < rank; i++) {
            if (!clmha__mul(n, shape[i], &n)) {
                st = clmha__fail(ctx, CLMHA_ERR_OUT_OF_RANGE, "weight %s: size overflows",
                                 weight_names[w]);
                goto cleanup;
            }
        }
        if (n > ctx->info.max_alloc_bytes / sizeof(float)) {
            st = clmha__fail(ctx, CLMHA_ERR_DEVICE_LIMIT,
                             "weight %s has %zu floats; device \"%s\" allows at most %llu bytes "
                             "in one buffer",
                             weight_names[w], n, ctx->info.name,
                             (unsigned long long)ctx->info.max_alloc_bytes);
            goto cleanup;
        }
        counts[w] = n;
        largest = n > largest ? n : largest;
    }

    if ((st = build_kernels(l)) != CLMHA_OK) {
        goto cleanup;
    }
    host = malloc(largest * sizeof(float));
    if (host == NULL) {
        st = clmha__fail(ctx, CLMHA_ERR_OUT_OF_HOST_MEMORY, "clmha_layer_create: out of memory");
        goto cleanup;
    }
    for (int w = 0; w < CLMHA_WEIGHT_COUNT; w++) {
        if (counts[w] == 0) {
            continue;
        }
        if ((st = clmha__buffer_create(ctx, counts[w] * sizeof(float), weight_names[w],
                                       &l->weights[w])) != CLMHA_OK) {
            goto cleanup;
        }
        double fan_in, fan_out;
        weight_fans(l, (clmha_weight)w, &fan_in, &fan_out);
        const clmha_initializer *init =
            is_bias((clmha_weight)w) ? &config->bias_initializer : &config->kernel_initializer;
        if ((st = clmha__init_fill(ctx, init, l->seed, (uint32_t)w, fan_in, fan_out, host,
                                   counts[w])) != CLMHA_OK ||
            (st = upload(l, (clmha_weight)w, host, counts[w])) != CLMHA_OK) {
            goto cleanup;
        }
    }
    *out = l;
    l = NULL;
cleanup:
    free(host);
    clmha_layer_release(l);
    return st;
}

void clmha_layer_release(clmha_layer *l) {
    if (l == NULL) {
        return;
    }
    clFinish(l->ctx->queue);
    for (int w = 0; w < CLMHA_WEIGHT_COUNT; w++) {
        if (l->weights[w] != NULL) {
            clReleaseMemObject(l->weights[w]);
        }
    }
    cl_mem ws[] = {l->ws_q,  l->ws_k,  l->ws_v,    l->ws_o,  l->ws_q2, l->ws_k2,
                   l->ws_v2, l->ws_o2, l->ws_m,    l->ws_y,  l->ws_p,  l->act,
                   l->ws_kh, l->ws_vh, l->ws_part, l->w_qkv, l->b_qkv, l->ws_qkv};
    for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++) {
        if (ws[i] != NULL) {
            clReleaseMemObject(ws[i]);
        }
    }
    clmha__kernel *ks[] = {
        &l->k_attention,      &l->k_commit,        &l->k_fill,     &l->k_gather,
        &l->k_gather_mask,    &l->k_gemm,          &l->k_sum,      &l->k_constrain,
        &l->k_attention_half, &l->k_commit_half,   &l->k_to_half,  &l->k_split,
        &l->k_split_half,     &l->k_merge,         &l->k_gemm4,    &l->k_qkv,
        &l->k_gemm_wide,      &l->k_qkv_wide,      &l->k_tile,     &l->k_tile_half,
        &l->k_qtile,          &l->k_qtile_half,    &l->k_heads,    &l->k_heads_half,
        &l->k_tail,           &l->k_tail_half,     &l->k_gemm_blk, &l->k_qkv_blk,
        &l->k_tail_few,       &l->k_tail_few_half, &l->k_gemm_few, &l->k_qkv_few,
        &l->k_pack,           &l->k_split_qkv};
    for (size_t i = 0; i < sizeof ks / sizeof ks[0]; i++) {
        clmha__kernel_release(ks[i]);
    }
    free(l);
}

static clmha_status weight_check(const clmha_layer *l, const char *fn, clmha_weight w,
                                 const void *data, size_t count) {
    if (l == NULL || data == NULL) {
        return clmha__fail(l ? l->ctx : NULL, CLMHA_ERR_NULL_ARGUMENT, "%s: %s is NULL", fn,
                           l ? "data" : "layer");
    }
    if ((unsigned)w >= CLMHA_WEIGHT_COUNT) {
        return clmha__fail(l->ctx, CLMHA_ERR_INVALID_ARGUMENT,
                           "%s: weight %d is not a clmha_weight", fn, (int)w);
    }
    if (l->weights[w] == NULL) {
        return clmha__fail(l->ctx, CLMHA_ERR_INVALID_ARGUMENT,
                           "%s: the layer has no %s (it was built with use_bias = false)", fn,
                           weight_names[w]);
    }
    int rank;
    size_t shape[CLMHA_MAX_RANK];
    weight_shape(l, w, &rank, shape);
    size_t n = shape_numel(rank, shape);
    clmha_status st = clmha__check_alive(l->ctx, fn);
    if (st != CLMHA_OK) {
        return st;
    }
    if (count != n) {
        char s[256];
        clmha__shape_str(s, sizeof s, rank, shape);
        return clmha__fail(l->ctx, CLMHA_ERR_SHAPE_MISMATCH,
                           "%s: count is %zu; %s has shape %s, %zu floats", fn, count,
                           weight_names[w], s, n);
    }
    return CLMHA_OK;
}

clmha_status clmha_layer_weight_shape(const clmha_layer *l, clmha_weight w, int *rank,
                                      size_t shape[CLMHA_MAX_RANK]) {
    if (l == NULL || rank == NULL || shape == NULL) {
        return clmha__fail(l ? l->ctx : NULL, CLMHA_ERR_NULL_ARGUMENT,
                           "clmha_layer_weight_shape: %s is NULL",
                           l == NULL      ? "layer"
                           : rank == NULL ? "rank"
                                          : "shape");
    }
    if ((unsigned)w >= CLMHA_WEIGHT_COUNT) {
        return clmha__fail(l->ctx, CLMHA_ERR_INVALID_ARGUMENT,
                           "clmha_layer_weight_shape: weight %d is not a clmha_weight", (int)w);
    }
    if (l->weights[w] == NULL) {
        return clmha__fail(l->ctx, CLMHA_ERR_INVALID_ARGUMENT,
                           "clmha_layer_weight_shape: the layer has no %s (use_bias = false)",
                           weight_names[w]);
    }
    weight_shape(l, w, rank, shape);
    return CLMHA_OK;
}

clmha_status clmha_layer_set_weight(clmha_layer *l, clmha_weight w, const float *data,
                                    size_t count) {
    clmha_status st = weight_check(l, "clmha_layer_set_weight", w, data, count);
    return st != CLMHA_OK ? st : upload(l, w, data, count);
}

clmha_status clmha_layer_get_weight(const clmha_layer *l, clmha_weight w, float *data,
                                    size_t count) {
    clmha_status st = weight_check(l, "clmha_layer_get_weight", w, data, count);
    if (st != CLMHA_OK) {
        return st;
    }
    cl_int err = clEnqueueReadBuffer(l->ctx->queue, l->weights[w], CL_TRUE, 0,
                                     count * sizeof(float), data, 0, NULL, NULL);
    if (err != CL_SUCCESS) {
        return clmha__fail_cl(l->ctx, err, "clmha_layer_get_weight: clEnqueueReadBuffer");
    }
    return CLMHA_OK;
}

clmha_status clmha_layer_create_cache(clmha_layer *l, size_t batch, size_t max_length,
                                      clmha_tensor **cache) {
    if (l == NULL || cache == NULL) {
        return clmha__fail(l ? l->ctx : NULL, CLMHA_ERR_NULL_ARGUMENT,
                           "clmha_layer_create_cache: %s is NULL", l ? "cache" : "layer");
    }
    if (l->dk != l->dv) {
        return clmha__fail(l->ctx, CLMHA_ERR_INVALID_ARGUMENT,
                           "clmha_layer_create_cache: a cache needs key_dim == value_dim; the "
                           "layer has %zu and %zu",
                           l->dk, l->dv);
    }
    size_t shape[5] = {batch, 2, max_length, l->heads, l->dk};
    clmha_tensor *t = NULL;
    clmha_status st = clmha_tensor_create(l->ctx, l->cfg.cache_dtype, 5, shape, &t);
    if (st == CLMHA_OK && (st = clmha_tensor_zero(t)) != CLMHA_OK) {
        clmha_tensor_release(t);
        t = NULL;
    }
    if (st == CLMHA_OK) {
        *cache = t;
    }
    return st;
}

clmha_status clmha_layer_output_shape(const clmha_layer *l, int *rank,
                                      size_t shape[CLMHA_MAX_RANK]) {
    if (l == NULL || rank == NULL || shape == NULL) {
        return clmha__fail(l ? l->ctx : NULL, CLMHA_ERR_NULL_ARGUMENT,
                           "clmha_layer_output_shape: an argument is NULL");
    }
    *rank = l->out_rank;
    memcpy(shape, l->out_shape, (size_t)l->out_rank * sizeof *shape);
    return CLMHA_OK;
}
