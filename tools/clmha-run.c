/*
 * clmha-run - runs one CachedMultiHeadAttention call from files: the layer's weights from a
 * Keras .weights.h5 file, the call's inputs from an HDF5 file, and the results into an HDF5
 * file. On the device the environment selects (CLMHA_PLATFORM, CLMHA_DEVICE, ...). Exit
 * status 0 on success; otherwise one line on stderr and no output file.
 */
#include <clmha.h>

#include "h5io.h"
#include "half.h"
#include "reference.h" /* ref_i8_quantize, ref_i8_value: clmha's int8 cache rows */

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void usage(FILE *f) {
    fprintf(f, "usage: clmha-run --weights FILE [--layer NAME] --inputs FILE --output FILE\n"
               "                 [--attention-axes A[,B...]] [--dropout RATE --training --seed N]\n"
               "                 [--return-scores] [--cache-dtype float32|float16|int8]\n"
               "                 [--self-attention] [--dtype-policy P]\n"
               "       clmha-run --weights FILE --list\n"
               "\n"
               "  --weights FILE   a Keras 3 .weights.h5 file (model.save_weights)\n"
               "  --list           print the file's attention layers, one a line, in Keras's\n"
               "                   order: path, input dims, heads, head dims, bias, output shape\n"
               "                   and a quantized layer's mode (int8, int4/128, ...)\n"
               "  --layer NAME     the attention layer's group path or last path component;\n"
               "                   may be left out when the file holds exactly one\n"
               "  --inputs FILE    HDF5 datasets: query (required); value (required except in\n"
               "                   static-cache mode); key; attention_mask (bool; integer or\n"
               "                   float as Keras reads them: nonzero attends, or > 0.5 with\n"
               "                   --dropout > 0 or --return-scores, Keras's explicit path);\n"
               "                   cache (B, 2, S, H, key_dim); and\n"
               "                   cache_update_index (a scalar integer). Floats: float32/64.\n"
               "  --self-attention pass query as the value and key too (one tensor, the layer's\n"
               "                   fused projection path); the file's value and key are unused\n"
               "  --output FILE    written with attention_output, cache (the updated cache, when\n"
               "                   a cache was given) and attention_scores (with\n"
               "                   --return-scores), all float32\n"
               "  --attention-axes the layer's attention_axes (Keras's None when left out)\n"
               "  --dropout RATE   the layer's dropout rate; applied only with --training\n"
               "  --training       call in training mode\n"
               "  --seed N         the layer's seed (dropout draws)\n"
               "  --return-scores  also write the attention probabilities\n"
               "  --cache-dtype T  the cache's storage type on the device: float32 (default),\n"
               "                   float16 or int8 (the layer's cache_dtype: the file's cache is\n"
               "                   rounded to half or quantized to int8 rows on the way in, the\n"
               "                   updated cache widened to float32 on the way out)\n"
               "  --dtype-policy P the layer's Keras dtype policy: float32 (default), float16,\n"
               "                   bfloat16, mixed_float16 or mixed_bfloat16\n"
               "\n"
               "The device comes from CLMHA_PLATFORM / CLMHA_DEVICE / CLMHA_DEVICE_TYPE.\n"
               "Exit status 0 on success; otherwise one line on stderr and no output file.\n");
}

static char tmp_path[4200];

static int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "clmha-run: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    if (tmp_path[0]) {
        remove(tmp_path);
    }
    return 1;
}

typedef struct args {
    const char *weights, *layer, *inputs, *output, *axes, *cache_dtype, *policy;
    double dropout;
    long long seed;
    int training, scores, list, self;
} args;

/* The options that take no value, and where each sets its flag. */
static int *switch_flag(args *a, const char *o) {
    return !strcmp(o, "--training")         ? &a->training
           : !strcmp(o, "--return-scores")  ? &a->scores
           : !strcmp(o, "--list")           ? &a->list
           : !strcmp(o, "--self-attention") ? &a->self
                                            : NULL;
}

/* The options that take a value, and where each keeps it. */
static const char **value_slot(args *a, const char *o) {
    return !strcmp(o, "--weights")          ? &a->weights
           : !strcmp(o, "--layer")          ? &a->layer
           : !strcmp(o, "--inputs")         ? &a->inputs
           : !strcmp(o, "--output")         ? &a->output
           : !strcmp(o, "--attention-axes") ? &a->axes
           : !strcmp(o, "--cache-dtype")    ? &a->cache_dtype
           : !strcmp(o, "--dtype-policy")   ? &a->policy
                                            : NULL;
}

static int parse(int argc, char **argv, args *a) {
    memset(a, 0, sizeof *a);
    a->seed = -1;
    const char *dropout = NULL, *seed = NULL;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        const char **slot = value_slot(a, o);
        int *flag = switch_flag(a, o);
        if (!strcmp(o, "--help") || !strcmp(o, "-h")) {
            usage(stdout);
            exit(0);
        } else if (flag != NULL) {
            *flag = 1;
            continue;
        } else if (slot == NULL && strcmp(o, "--dropout") != 0 && strcmp(o, "--seed") != 0) {
            fprintf(stderr, "clmha-run: unknown option '%s' (see --help)\n", o);
            return 2;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "clmha-run: %s needs a value (see --help)\n", o);
            return 2;
        }
        const char *v = argv[++i];
        *(slot != NULL ? slot : !strcmp(o, "--dropout") ? &dropout : &seed) = v;
    }
    char *end = NULL;
    errno = 0;
    if (dropout != NULL &&
        ((a->dropout = strtod(dropout, &end)), end == dropout || *end != '\0' || errno != 0 ||
                                                   !(a->dropout >= 0.0 && a->dropout < 1.0))) {
        fprintf(stderr, "clmha-run: --dropout needs a number from 0 to below 1, got '%s'\n",
                dropout);
        return 2;
    }
    errno = 0;
    if (seed != NULL && ((a->seed = strtoll(seed, &end, 10)),
                         end == seed || *end != '\0' || errno != 0 || a->seed < 0)) {
        fprintf(stderr, "clmha-run: --seed needs a whole number from 0 to %lld, got '%s'\n",
                (long long)LLONG_MAX, seed);
        return 2;
    }
    if (a->list ? !a->weights : !a->weights || !a->inputs || !a->output) {
        fprintf(stderr, "clmha-run: %s (see --help)\n",
                a->list ? "--list needs --weights"
                        : "--weights, --inputs and --output are required");
        return 2;
    }
    return 0;
}

/* --list: the file's attention layers, one a line (a quantized one with its mode last). */
static int list_layers(const char *weights) {
    clmha_keras_layer_info *list = NULL;
    size_t n = 0;
    if (clmha_keras_list_layers(weights, &list, &n) != CLMHA_OK) {
        return fail("%s", clmha_last_error());
    }
    for (size_t i = 0; i < n; i++) {
        const clmha_keras_layer_info *l = &list[i];
        printf("%s\tquery %zu, key %zu, value %zu\t%d heads of %d/%d\t%s\toutput (", l->path,
               l->query_dim, l->key_dim, l->value_dim, l->num_heads, l->head_key_dim,
               l->head_value_dim, l->use_bias ? "bias" : "no bias");
        for (int d = 0; d < l->output_rank; d++) {
            printf("%s%zu", d ? ", " : "", l->output_shape[d]);
        }
        /* a quantized layer's mode as Keras names it */
        printf(")%s%s\n", l->quantization[0] ? "\t" : "", l->quantization);
    }
    free(list);
    return 0;
}

/* Parses --attention-axes ("-1" or "1,2"): integers of -8 to 8, at most CLMHA_MAX_RANK. */
static int parse_axes(const char *text, clmha_layer_config *cfg) {
    const char *s = text;
    while (*s) {
        char *end;
        errno = 0;
        long ax = strtol(s, &end, 10);
        if (end == s || errno != 0 || ax < -CLMHA_MAX_RANK || ax > CLMHA_MAX_RANK ||
            (*end != ',' && *end != '\0') || cfg->num_attention_axes == CLMHA_MAX_RANK) {
            return fail("--attention-axes needs up to %d integers from %d to %d separated by "
                        "commas, got '%s'",
                        CLMHA_MAX_RANK, -CLMHA_MAX_RANK, CLMHA_MAX_RANK, text);
        }
        cfg->attention_axes[cfg->num_attention_axes++] = (int)ax;
        s = *end == ',' ? end + 1 : end;
    }
    return 0;
}

/* Makes a device tensor from host data; NULL (with the message printed) on failure. */
static clmha_tensor *upload(clmha_context *ctx, clmha_dtype dt, const h5io_array *a,
                            const char *what) {
    clmha_tensor *t = NULL;
    const void *data = dt == CLMHA_UINT8 ? (const void *)a->u8 : (const void *)a->f;
    size_t bytes = a->numel * (dt == CLMHA_UINT8 ? 1 : sizeof(float));
    if (a->rank < 1) {
        fprintf(stderr, "clmha-run: %s must have rank >= 1\n", what);
        return NULL;
    }
    if (clmha_tensor_create(ctx, dt, a->rank, a->dims, &t) != CLMHA_OK ||
        clmha_tensor_write(t, data, bytes) != CLMHA_OK) {
        fprintf(stderr, "clmha-run: %s: %s\n", what, clmha_last_error());
        clmha_tensor_release(t);
        return NULL;
    }
    return t;
}

/* The cache as IEEE half (round to nearest even, tools/half.h). */
static clmha_tensor *upload_half(clmha_context *ctx, const h5io_array *a) {
    uint16_t *h = malloc(a->numel * sizeof *h + 2);
    clmha_tensor *t = NULL;
    if (h == NULL) {
        fprintf(stderr, "clmha-run: cache: out of memory\n");
        return NULL;
    }
    for (size_t i = 0; i < a->numel; i++) {
        h[i] = half_from_float(a->f[i]);
    }
    if (clmha_tensor_create(ctx, CLMHA_FLOAT16, a->rank, a->dims, &t) != CLMHA_OK ||
        clmha_tensor_write(t, h, a->numel * sizeof *h) != CLMHA_OK) {
        fprintf(stderr, "clmha-run: cache: %s\n", clmha_last_error());
        clmha_tensor_release(t);
        t = NULL;
    }
    free(h);
    return t;
}

/* The cache as int8 rows (clmha's int8 cache, docs/api.md; the host quantizer of
 * tests/reference.c): the file's (B, 2, S, H, dk) as (B, 2, S, H, dk + 4) bytes. */
static clmha_tensor *upload_int8(clmha_context *ctx, const h5io_array *a) {
    const size_t d = a->dims[a->rank - 1], rows = a->numel / d;
    unsigned char *q = malloc(rows * (d + 4));
    clmha_tensor *t = NULL;
    if (q == NULL) {
        fprintf(stderr, "clmha-run: cache: out of memory\n");
        return NULL;
    }
    for (size_t r = 0; r < rows; r++) {
        ref_i8_quantize(a->f + r * d, d, q + r * (d + 4));
    }
    size_t dims[CLMHA_MAX_RANK];
    memcpy(dims, a->dims, (size_t)a->rank * sizeof *dims);
    dims[a->rank - 1] = d + 4;
    if (clmha_tensor_create(ctx, CLMHA_INT8, a->rank, dims, &t) != CLMHA_OK ||
        clmha_tensor_write(t, q, rows * (d + 4)) != CLMHA_OK) {
        fprintf(stderr, "clmha-run: cache: %s\n", clmha_last_error());
        clmha_tensor_release(t);
        t = NULL;
    }
    free(q);
    return t;
}

/* Reads an int8 cache of n values (rows of d) into floats (q * scale). */
static clmha_status read_int8(const clmha_tensor *t, float *out, size_t n, size_t d) {
    const size_t rows = n / d;
    unsigned char *q = malloc(rows * (d + 4));
    if (q == NULL) {
        return CLMHA_ERR_OUT_OF_HOST_MEMORY;
    }
    clmha_status st = clmha_tensor_read(t, q, rows * (d + 4));
    for (size_t i = 0; st == CLMHA_OK && i < n; i++) {
        out[i] = ref_i8_value(q + (i / d) * (d + 4), d, i % d);
    }
    free(q);
    return st;
}

/* Reads a half tensor of n elements into floats. */
static clmha_status read_half(const clmha_tensor *t, float *out, size_t n) {
    uint16_t *h = malloc(n * sizeof *h + 2);
    if (h == NULL) {
        return CLMHA_ERR_OUT_OF_HOST_MEMORY;
    }
    clmha_status st = clmha_tensor_read(t, h, n * sizeof *h);
    for (size_t i = 0; st == CLMHA_OK && i < n; i++) {
        out[i] = half_to_float(h[i]);
    }
    free(h);
    return st;
}

int main(int argc, char **argv) {
    args a;
    int rc = parse(argc, argv, &a);
    if (rc != 0) {
        return rc;
    }
    if (a.list) {
        return list_layers(a.weights);
    }
    bool half = a.cache_dtype && strcmp(a.cache_dtype, "float16") == 0;
    bool int8 = a.cache_dtype && strcmp(a.cache_dtype, "int8") == 0;
    if (a.cache_dtype && !half && !int8 && strcmp(a.cache_dtype, "float32") != 0) {
        return fail("--cache-dtype %s: expected float32, float16 or int8", a.cache_dtype);
    }
    int policy = 0;
    while (a.policy != NULL && clmha_dtype_policy_name((clmha_dtype_policy)policy) != NULL &&
           strcmp(a.policy, clmha_dtype_policy_name((clmha_dtype_policy)policy)) != 0) {
        policy++;
    }
    if (a.policy != NULL && clmha_dtype_policy_name((clmha_dtype_policy)policy) == NULL) {
        return fail("--dtype-policy %s: expected float32, float16, bfloat16, mixed_float16 or "
                    "mixed_bfloat16",
                    a.policy);
    }
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    char err[512] = "";
    h5io_array q = {0}, v = {0}, k = {0}, m = {0}, c = {0};
    int64_t index = 0;
    int has_index = 0;
    hid_t in = H5Fis_hdf5(a.inputs) > 0 ? H5Fopen(a.inputs, H5F_ACC_RDONLY, H5P_DEFAULT) : -1;
    if (in < 0) {
        return fail("cannot read the inputs file \"%s\" (not an HDF5 file?)", a.inputs);
    }
    int rq = h5io_read_float(in, "query", &q, err, sizeof err);
    /* --self-attention: the query is the value and key as well (the file's are not read). */
    int rv = rq > 0 && !a.self ? h5io_read_float(in, "value", &v, err, sizeof err) : 0;
    int rk = rv >= 0 && rq > 0 && !a.self ? h5io_read_float(in, "key", &k, err, sizeof err) : 0;
    /* Integer and float masks as Keras reads them on the path its call would take. */
    const int explicit_path = a.dropout > 0.0 || a.scores || q.rank > 3;
    int rm = rk >= 0 && rq > 0
                 ? h5io_read_mask_rule(in, "attention_mask", &m, explicit_path, err, sizeof err)
                 : 0;
    int rc2 = rm >= 0 && rq > 0 ? h5io_read_float(in, "cache", &c, err, sizeof err) : 0;
    int ri =
        rc2 >= 0 && rq > 0 ? h5io_read_int64(in, "cache_update_index", &index, err, sizeof err) : 0;
    H5Fclose(in);
    if (rq == 0) {
        return fail("the inputs file \"%s\" has no dataset \"query\"", a.inputs);
    }
    if (rq < 0 || rv < 0 || rk < 0 || rm < 0 || rc2 < 0 || ri < 0) {
        return fail("%s", err);
    }
    has_index = ri > 0;

    clmha_context *ctx = NULL;
    clmha_layer *layer = NULL;
    clmha_tensor *tq = NULL, *tv = NULL, *tk = NULL, *tm = NULL, *tc = NULL, *to = NULL, *tp = NULL;
    float *out = NULL, *scores = NULL, *cache_out = NULL;
    rc = 1;
    clmha_layer_config base;
    clmha_layer_config_init(&base);
    base.dropout = a.dropout;
    base.seed = a.seed;
    base.cache_dtype = half ? CLMHA_FLOAT16 : int8 ? CLMHA_INT8 : CLMHA_FLOAT32;
    base.dtype_policy = (clmha_dtype_policy)policy;
    if (a.axes != NULL && parse_axes(a.axes, &base) != 0) {
        goto done;
    }
    if (clmha_context_create(NULL, &ctx) != CLMHA_OK ||
        clmha_layer_create_from_keras(ctx, a.weights, a.layer, &base, &layer) != CLMHA_OK) {
        fail("%s", clmha_last_error());
        goto done;
    }
    if (!(tq = upload(ctx, CLMHA_FLOAT32, &q, "query")) ||
        (rv > 0 && !(tv = upload(ctx, CLMHA_FLOAT32, &v, "value"))) ||
        (rk > 0 && !(tk = upload(ctx, CLMHA_FLOAT32, &k, "key"))) ||
        (rm > 0 && !(tm = upload(ctx, CLMHA_UINT8, &m, "attention_mask"))) ||
        (rc2 > 0 && !(tc = half   ? upload_half(ctx, &c)
                           : int8 ? upload_int8(ctx, &c)
                                  : upload(ctx, CLMHA_FLOAT32, &c, "cache")))) {
        goto done;
    }
    /* Output: the query's shape with its feature dim replaced by output_shape. */
    int orank = 0;
    size_t oshape[CLMHA_MAX_RANK + 8], ofeat[CLMHA_MAX_RANK];
    clmha_layer_output_shape(layer, &orank, ofeat);
    int out_rank = q.rank - 1 + orank;
    if (out_rank > CLMHA_MAX_RANK) {
        fail("%s", "the output would have more than 8 dims");
        goto done;
    }
    memcpy(oshape, q.dims, (size_t)(q.rank - 1) * sizeof(size_t));
    memcpy(oshape + q.rank - 1, ofeat, (size_t)orank * sizeof(size_t));
    size_t out_n = 1;
    for (int i = 0; i < out_rank; i++) {
        out_n *= oshape[i];
    }
    if (clmha_tensor_create(ctx, CLMHA_FLOAT32, out_rank, oshape, &to) != CLMHA_OK) {
        fail("%s", clmha_last_error());
        goto done;
    }
    int srank = 0;
    size_t sshape[CLMHA_MAX_RANK];
    const clmha_tensor *kv = a.self ? tq : tk ? tk : tv;
    if (a.scores &&
        (clmha_layer_scores_shape(layer, tq, tc ? NULL : kv, tc, &srank, sshape) != CLMHA_OK ||
         clmha_tensor_create(ctx, CLMHA_FLOAT32, srank, sshape, &tp) != CLMHA_OK)) {
        fail("%s", clmha_last_error());
        goto done;
    }
    clmha_call_args ca;
    clmha_call_args_init(&ca);
    ca.query = tq, ca.value = a.self ? tq : tv, ca.key = tk, ca.attention_mask = tm, ca.cache = tc;
    ca.has_cache_update_index = has_index, ca.cache_update_index = index;
    ca.training = a.training, ca.output = to, ca.attention_scores = tp;
    out = malloc(out_n * sizeof(float));
    if (out == NULL || clmha_layer_call(layer, &ca) != CLMHA_OK ||
        clmha_tensor_read(to, out, out_n * sizeof(float)) != CLMHA_OK) {
        fail("%s", out ? clmha_last_error() : "out of memory");
        goto done;
    }
    size_t sn = tp ? clmha_tensor_numel(tp) : 0;
    if (tp && (!(scores = malloc(sn * sizeof(float))) ||
               clmha_tensor_read(tp, scores, sn * sizeof(float)) != CLMHA_OK)) {
        fail("%s", clmha_last_error());
        goto done;
    }
    if (tc && (!(cache_out = malloc(c.numel * sizeof(float))) ||
               (half   ? read_half(tc, cache_out, c.numel)
                : int8 ? read_int8(tc, cache_out, c.numel, c.dims[c.rank - 1])
                       : clmha_tensor_read(tc, cache_out, c.numel * sizeof(float))) != CLMHA_OK)) {
        fail("%s", cache_out ? clmha_last_error() : "out of memory");
        goto done;
    }
    /* Write to a temporary file beside the output, then rename: never a partial output. */
    snprintf(tmp_path, sizeof tmp_path, "%s.tmp.%ld", a.output, (long)getpid());
    hid_t of = H5Fcreate(tmp_path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (of < 0) {
        tmp_path[0] = '\0';
        fail("cannot create the output file \"%s\"", a.output);
        goto done;
    }
    int bad = h5io_write_float(of, "attention_output", out_rank, oshape, out);
    if (!bad && tc) {
        bad = h5io_write_float(of, "cache", c.rank, c.dims, cache_out);
    }
    if (!bad && tp) {
        bad = h5io_write_float(of, "attention_scores", srank, sshape, scores);
    }
    bad |= H5Fclose(of) < 0;
    if (bad || rename(tmp_path, a.output) != 0) {
        fail("writing the output file \"%s\" failed", a.output);
        goto done;
    }
    tmp_path[0] = '\0';
    rc = 0;
done:
    clmha_tensor_release(tq), clmha_tensor_release(tv), clmha_tensor_release(tk);
    clmha_tensor_release(tm), clmha_tensor_release(tc), clmha_tensor_release(to);
    clmha_tensor_release(tp);
    clmha_layer_release(layer);
    clmha_context_release(ctx);
    h5io_free(&q), h5io_free(&v), h5io_free(&k), h5io_free(&m), h5io_free(&c);
    free(out), free(scores), free(cache_out);
    return rc;
}
