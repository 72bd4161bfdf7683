/*
 * layer.c - the layer's configuration (Keras constructor defaults and validation), creation
 * (Keras's build: weight shapes, initialisation; the kernels are layer_build.c's), weight
 * upload/download in Keras's layouts, and release.
 */
#include "internal.h"

#include <limits.h>
#include <stdint.h>
#include <float.h>
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
    c->fully_masked_rows = CLMHA_FULLY_MASKED_KERAS;
    c->dtype_policy = CLMHA_POLICY_FLOAT32;
}

const char *clmha_dtype_policy_name(clmha_dtype_policy policy) {
    static const char *const names[] = {"float32", "float16", "bfloat16", "mixed_float16",
                                        "mixed_bfloat16"};
    return (unsigned)policy < sizeof names / sizeof names[0] ? names[policy] : NULL;
}

static const char *const weight_names[CLMHA_WEIGHT_COUNT] = {
    "query_dense/kernel", "query_dense/bias", "key_dense/kernel",    "key_dense/bias",
    "value_dense/kernel", "value_dense/bias", "output_dense/kernel", "output_dense/bias"};

const char *clmha_weight_name(clmha_weight weight) {
    return ((unsigned)weight < CLMHA_WEIGHT_COUNT) ? weight_names[weight] : NULL;
}

/* Finite in float32, where the weights are: 1e39 is finite as a double but not as a float. */
static bool float_finite(double x) {
    return isfinite(x) && fabs(x) <= FLT_MAX;
}

static clmha_status check_initializer(clmha_context *ctx, const char *name,
                                      const clmha_initializer *i) {
    if ((unsigned)i->kind > CLMHA_INIT_CONSTANT) {
        return clmha__fail(ctx, CLMHA_ERR_INVALID_ARGUMENT,
                           "config.%s.kind is %d; expected a clmha_init_kind", name, (int)i->kind);
    }
    if (i->kind == CLMHA_INIT_RANDOM_UNIFORM &&
        !(float_finite(i->minval) && float_finite(i->maxval) && i->minval <= i->maxval &&
          float_finite(i->maxval - i->minval))) {
        return clmha__fail(ctx, CLMHA_ERR_INVALID_ARGUMENT,
                           "config.%s: random_uniform needs minval <= maxval, both and their "
                           "difference finite in float32 (got %g, %g)",
                           name, i->minval, i->maxval);
    }
    if ((i->kind == CLMHA_INIT_RANDOM_NORMAL || i->kind == CLMHA_INIT_TRUNCATED_NORMAL) &&
        !(float_finite(i->mean) && float_finite(i->stddev) && i->stddev >= 0)) {
        return clmha__fail(ctx, CLMHA_ERR_INVALID_ARGUMENT,
                           "config.%s: needs a mean and a stddev >= 0 finite in float32 (got %g, "
                           "%g)",
                           name, i->mean, i->stddev);
    }
    if (i->kind == CLMHA_INIT_CONSTANT && !float_finite(i->value)) {
        return clmha__fail(ctx, CLMHA_ERR_INVALID_ARGUMENT,
                           "config.%s: value must be finite in float32 (at most %g in magnitude; "
                           "got %g)",
                           name, (double)FLT_MAX, i->value);
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
    if (clmha_dtype_policy_name(c->dtype_policy) == NULL) {
        return clmha__fail(ctx, CLMHA_ERR_INVALID_ARGUMENT,
                           "config.dtype_policy is %d; expected a clmha_dtype_policy "
                           "(CLMHA_POLICY_FLOAT32 to CLMHA_POLICY_MIXED_BFLOAT16)",
                           (int)c->dtype_policy);
    }
    if (c->cache_dtype != CLMHA_FLOAT32 && c->cache_dtype != CLMHA_FLOAT16 &&
        c->cache_dtype != CLMHA_INT8) {
        return clmha__fail(ctx, CLMHA_ERR_INVALID_ARGUMENT,
                           "config.cache_dtype is %d; expected CLMHA_FLOAT32, CLMHA_FLOAT16 or "
                           "CLMHA_INT8",
                           (int)c->cache_dtype);
    }
    if ((unsigned)c->fully_masked_rows > CLMHA_FULLY_MASKED_ZEROS) {
        return clmha__fail(ctx, CLMHA_ERR_INVALID_ARGUMENT,
                           "config.fully_masked_rows is %d; expected CLMHA_FULLY_MASKED_KERAS or "
                           "CLMHA_FULLY_MASKED_ZEROS",
                           (int)c->fully_masked_rows);
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

static clmha_status upload(clmha_layer *l, clmha_weight w, const float *data, size_t n) {
    l->qkv_packed = false; /* the packed copy (if any) is made again before it is next read */
    cl_int err = clEnqueueWriteBuffer(l->ctx->queue, l->weights[w], CL_TRUE, 0, n * sizeof(float),
                                      data, 0, NULL, NULL);
    if (err != CL_SUCCESS) {
        char what[128];
        snprintf(what, sizeof what, "uploading weight %s", weight_names[w]);
        return clmha__fail_cl(l->ctx, err, what);
    }
    return clmha__policy_sync(l, w); /* a 16-bit policy's copy */
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

/* The layer's dims from its config and input dims. */
static void layer_dims(clmha_layer *l, const clmha_layer_config *config, size_t query_dim,
                       size_t value_dim, size_t key_dim) {
    l->cfg = *config;
    l->narrow_cache = config->cache_dtype != CLMHA_FLOAT32;
    l->int8_cache = config->cache_dtype == CLMHA_INT8;
    l->heads = (size_t)config->num_heads;
    l->dk = (size_t)config->key_dim;
    l->kv_row = l->dk + (l->int8_cache ? 4 : 0);
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
}

/* Every weight's element count (0: no such weight), checked for overflow and against the
 * device's allocation limit; sets out_features, and *largest to the largest count. */
static clmha_status weight_counts(clmha_layer *l, size_t counts[CLMHA_WEIGHT_COUNT],
                                  size_t *largest) {
    clmha_context *ctx = l->ctx;
    size_t hd = 0, out_f = 1;
    if (!clmha__mul(l->heads, l->dk > l->dv ? l->dk : l->dv, &hd)) {
        return clmha__fail(ctx, CLMHA_ERR_OUT_OF_RANGE, "num_heads x key_dim overflows");
    }
    for (int i = 0; i < l->out_rank; i++) {
        if (!clmha__mul(out_f, l->out_shape[i], &out_f)) {
            return clmha__fail(ctx, CLMHA_ERR_OUT_OF_RANGE, "config.output_shape overflows");
        }
    }
    l->out_features = out_f;
    *largest = 0;
    for (int w = 0; w < CLMHA_WEIGHT_COUNT; w++) {
        int rank;
        size_t shape[CLMHA_MAX_RANK], n = 1;
        counts[w] = 0;
        if (is_bias((clmha_weight)w) && !l->cfg.use_bias) {
            continue;
        }
        weight_shape(l, (clmha_weight)w, &rank, shape);
        for (int i = 0; i < rank; i++) {
            if (!clmha__mul(n, shape[i], &n)) {
                return clmha__fail(ctx, CLMHA_ERR_OUT_OF_RANGE, "weight %s: size overflows",
                                   weight_names[w]);
            }
        }
        if (n > ctx->info.max_alloc_bytes / sizeof(float)) {
            return clmha__fail(ctx, CLMHA_ERR_DEVICE_LIMIT,
                               "weight %s has %zu floats; device \"%s\" allows at most %llu bytes "
                               "in one buffer",
                               weight_names[w], n, ctx->info.name,
                               (unsigned long long)ctx->info.max_alloc_bytes);
        }
        counts[w] = n;
        *largest = n > *largest ? n : *largest;
    }
    return CLMHA_OK;
}

/* Creates the weight buffers and fills them with the config's initializers. */
static clmha_status init_weights(clmha_layer *l, const size_t counts[CLMHA_WEIGHT_COUNT],
                                 size_t largest) {
    clmha_context *ctx = l->ctx;
    float *host = malloc(largest * sizeof(float));
    if (host == NULL) {
        return clmha__fail(ctx, CLMHA_ERR_OUT_OF_HOST_MEMORY, "clmha_layer_create: out of memory");
    }
    clmha_status st = CLMHA_OK;
    for (int w = 0; w < CLMHA_WEIGHT_COUNT && st == CLMHA_OK; w++) {
        if (counts[w] == 0) {
            continue;
        }
        double fan_in, fan_out;
        weight_fans(l, (clmha_weight)w, &fan_in, &fan_out);
        const clmha_initializer *init =
            is_bias((clmha_weight)w) ? &l->cfg.bias_initializer : &l->cfg.kernel_initializer;
        if ((st = clmha__buffer_create(ctx, counts[w] * sizeof(float), weight_names[w],
                                       &l->weights[w])) == CLMHA_OK &&
            (st = clmha__init_fill(ctx, init, l->seed, (uint32_t)w, fan_in, fan_out, host,
                                   counts[w])) == CLMHA_OK) {
            st = upload(l, (clmha_weight)w, host, counts[w]);
        }
    }
    free(host);
    return st;
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
    if (l == NULL) {
        return clmha__fail(ctx, CLMHA_ERR_OUT_OF_HOST_MEMORY, "clmha_layer_create: out of memory");
    }
    l->ctx = ctx;
    layer_dims(l, config, query_dim, value_dim, key_dim);
    l->seed = config->seed >= 0 ? (uint64_t)config->seed : clock_seed(l);
    clmha__policy_setup(l);
    size_t counts[CLMHA_WEIGHT_COUNT], largest = 0;
    if ((st = weight_counts(l, counts, &largest)) != CLMHA_OK ||
        (st = clmha__build_kernels(l)) != CLMHA_OK ||
        (st = init_weights(l, counts, largest)) != CLMHA_OK) {
        clmha_layer_release(l);
        return st;
    }
    *out = l;
    return CLMHA_OK;
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
    cl_mem ws[] = {l->ws_q,      l->ws_k,      l->ws_v,      l->ws_o,      l->ws_q2,
                   l->ws_k2,     l->ws_v2,     l->ws_o2,     l->ws_m,      l->ws_y,
                   l->ws_p,      l->act,       l->ws_kh,     l->ws_vh,     l->ws_part,
                   l->w_qkv,     l->b_qkv,     l->ws_qkv,    l->qscale[0], l->qscale[1],
                   l->qscale[2], l->qscale[3], l->qzero[0],  l->qzero[1],  l->qzero[2],
                   l->qzero[3],  l->ws_xq,     l->ws_xs,     l->w16buf[0], l->w16buf[1],
                   l->w16buf[2], l->w16buf[3], l->w16buf[4], l->w16buf[5], l->w16buf[6],
                   l->w16buf[7], l->ws_x16};
    for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++) {
        if (ws[i] != NULL) {
            clReleaseMemObject(ws[i]);
        }
    }
    for (int i = 0; i < CLMHA__K_COUNT; i++) {
        clmha__kernel_release(&l->kern[i]);
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
    if (st == CLMHA_OK && l->quant_bits != 0 && !is_bias(w)) {
        return clmha__fail(l->ctx, CLMHA_ERR_INVALID_ARGUMENT,
                           "clmha_layer_set_weight: %s of a quantized layer (%s) cannot be set; "
                           "set the float kernels before clmha_layer_quantize",
                           weight_names[w], clmha_layer_quantization(l));
    }
    return st != CLMHA_OK ? st : upload(l, w, data, count);
}

clmha_status clmha_layer_get_weight(const clmha_layer *l, clmha_weight w, float *data,
                                    size_t count) {
    clmha_status st = weight_check(l, "clmha_layer_get_weight", w, data, count);
    if (st != CLMHA_OK) {
        return st;
    }
    if (l->quant_bits != 0 && !is_bias(w)) {
        return clmha__quant_get(l, w, data);
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
    size_t shape[5] = {batch, 2, max_length, l->heads, l->kv_row};
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
                           "clmha_layer_output_shape: %s is NULL",
                           l == NULL      ? "layer"
                           : rank == NULL ? "rank"
                                          : "shape");
    }
    *rank = l->out_rank;
    memcpy(shape, l->out_shape, (size_t)l->out_rank * sizeof *shape);
    return CLMHA_OK;
}
