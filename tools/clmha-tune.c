/*
 * clmha-tune - tunes clmha's launch settings on the selected device for the user's shapes and
 * stores the winner as the device's tuned settings (clmha_context_save_tuned), which every
 * later context on that device loads. It starts from the device's row of the tuning table and
 * walks the settings one key at a time (coordinate descent): for each value of a key it makes a
 * context with the settings found so far plus that value, checks the layer's prefill and
 * decode outputs against a float64 reference of the same call, and times both phases against
 * the current best, the two layers' calls alternating as `clmha-bench --pair` does. A value is
 * kept when the geometric mean of its two time ratios beats the best by the margin. At the end
 * it times the row against the winner once more and reports both. With no arguments it tunes
 * for the demo's shapes (tools/clmha-demo).
 */
#include <clmha.h>

#include "half.h"
#include "reference.h"
#include "timing.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_KEYS 24

typedef struct opts {
    size_t dim, heads, head_dim, batch, prompt, seq, reps;
    int half, int8; /* the cache's dtype: float16 or int8 (else float32) */
    int dry_run;
    double margin;
    const char *keys; /* --keys: the keys searched (comma-separated), or NULL: all */
} opts;

static void usage(FILE *f) {
    fprintf(f,
            "usage: clmha-tune [options]\n"
            "\n"
            "  --dim D --heads H --head-dim K  layer size (default 768, 12, 64: the demo's)\n"
            "  --batch B        sequences (default 1)\n"
            "  --prompt P       prefill length, causal, written into the cache (default 32)\n"
            "  --seq S          cache length; decode steps attend all S positions\n"
            "                   (default 64: the demo's prompt + 32 steps)\n"
            "  --cache-dtype T  float32 (default), float16 or int8\n"
            "  --reps N         timed calls per layer, phase and candidate (default 15)\n"
            "  --margin M       keep a value only when it is faster by this fraction\n"
            "                   (default 0.03)\n"
            "  --keys K[,K...]  search only these keys (default: all of them, in the order\n"
            "                   split_wg, split_chunk, heads, key_block, tile, tile_rows,\n"
            "                   key_tile, tail, gemm_cols, gemm_small_m, gemm_rows,\n"
            "                   gemm_rows_few, qkv_fuse, prefetch)\n"
            "  --dry-run        report, do not store the result\n"
            "  --help           this text\n"
            "\n"
            "The device comes from CLMHA_PLATFORM / CLMHA_DEVICE / CLMHA_DEVICE_TYPE; the result\n"
            "is stored in its cache folder (CLMHA_CACHE_DIR) and loaded by every later context on\n"
            "that device. See docs/devices.md, \"Tuning on your device\".\n");
}

static int parse_size(const char *flag, const char *v, size_t *out) {
    char *end = NULL;
    unsigned long long x = strtoull(v, &end, 10);
    if (*v == '\0' || *v == '-' || end == NULL || *end != '\0' || x == 0 || x > (1ull << 24)) {
        fprintf(stderr, "clmha-tune: %s needs a whole number from 1 to 16777216, got '%s'\n", flag,
                v);
        return 2;
    }
    *out = (size_t)x;
    return 0;
}

static bool keys_valid(const char *keys);
static bool key_wanted(const char *keys, const char *key);

static int parse(int argc, char **argv, opts *o) {
    memset(o, 0, sizeof *o);
    o->dim = 768, o->heads = 12, o->head_dim = 64, o->batch = 1, o->prompt = 32, o->seq = 64;
    o->reps = 15, o->margin = 0.03;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            exit(0);
        }
        if (!strcmp(a, "--dry-run")) {
            o->dry_run = 1;
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "clmha-tune: unknown option or missing value: '%s' (see --help)\n", a);
            return 2;
        }
        const char *v = argv[++i];
        int rc = 0;
        if (!strcmp(a, "--dim")) {
            rc = parse_size(a, v, &o->dim);
        } else if (!strcmp(a, "--heads")) {
            rc = parse_size(a, v, &o->heads);
        } else if (!strcmp(a, "--head-dim")) {
            rc = parse_size(a, v, &o->head_dim);
        } else if (!strcmp(a, "--batch")) {
            rc = parse_size(a, v, &o->batch);
        } else if (!strcmp(a, "--prompt")) {
            rc = parse_size(a, v, &o->prompt);
        } else if (!strcmp(a, "--seq")) {
            rc = parse_size(a, v, &o->seq);
        } else if (!strcmp(a, "--reps")) {
            rc = parse_size(a, v, &o->reps);
        } else if (!strcmp(a, "--cache-dtype")) {
            if (strcmp(v, "float32") != 0 && strcmp(v, "float16") != 0 && strcmp(v, "int8") != 0) {
                fprintf(stderr, "clmha-tune: --cache-dtype is float32, float16 or int8, got '%s'\n",
                        v);
                return 2;
            }
            o->half = !strcmp(v, "float16"), o->int8 = !strcmp(v, "int8");
        } else if (!strcmp(a, "--keys")) {
            o->keys = v;
        } else if (!strcmp(a, "--margin")) {
            char *end = NULL;
            o->margin = strtod(v, &end);
            if (*v == '\0' || *end != '\0' || !(o->margin >= 0 && o->margin < 0.5)) {
                fprintf(stderr, "clmha-tune: --margin is a fraction from 0 to 0.5\n");
                return 2;
            }
        } else {
            fprintf(stderr, "clmha-tune: unknown option '%s' (see --help)\n", a);
            return 2;
        }
        if (rc != 0) {
            return rc;
        }
    }
    if (o->keys != NULL && !keys_valid(o->keys)) {
        return 2;
    }
    if (o->prompt >= o->seq) {
        fprintf(stderr,
                "clmha-tune: --prompt (%zu) must be shorter than --seq (%zu): the decode "
                "step writes the cache's last position\n",
                o->prompt, o->seq);
        return 2;
    }
    return 0;
}

/* ---- the settings being searched: key=value pairs ---- */

typedef struct settings {
    char key[MAX_KEYS][32], value[MAX_KEYS][32];
    int n;
} settings;

static void set(settings *s, const char *key, const char *value) {
    for (int i = 0; i < s->n; i++) {
        if (!strcmp(s->key[i], key)) {
            snprintf(s->value[i], sizeof s->value[i], "%s", value);
            return;
        }
    }
    if (s->n < MAX_KEYS) {
        snprintf(s->key[s->n], sizeof s->key[0], "%s", key);
        snprintf(s->value[s->n], sizeof s->value[0], "%s", value);
        s->n++;
    }
}

static const char *text_of(const settings *s, char *buf, size_t len) {
    buf[0] = '\0';
    for (int i = 0; i < s->n; i++) {
        const size_t used = strlen(buf);
        snprintf(buf + used, len - used, "%s%s=%s", i ? "," : "", s->key[i], s->value[i]);
    }
    return buf;
}

/* ---- the problem: host data and its float64 reference ---- */

typedef struct problem {
    const opts *o;
    size_t D, H, K, B, P, S;
    float *w[8];
    size_t wn[8];
    float *x_prefill, *x_decode, *cache0;
    unsigned char *cache8; /* an int8 cache: cache0's rows quantized (cache0 then their values) */
    double *ref_prefill, *ref_decode;
} problem;

static const char *cache_name(const opts *o) {
    return o->half ? "float16" : o->int8 ? "int8" : "float32";
}

static float rnd(uint64_t *s) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((double)(*s >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

/* An int8 cache's (B, 2, S, H) rows of K values: quantized from cache0 into cache8, and cache0
 * set to what they hold. */
static int quantize_cache(problem *p) {
    const size_t K = p->K, rows = p->B * 2 * p->S * p->H;
    p->cache8 = malloc(rows * (K + 4));
    if (p->cache8 == NULL) {
        return 1;
    }
    for (size_t r = 0; r < rows; r++) {
        unsigned char *row = p->cache8 + r * (K + 4);
        ref_i8_quantize(p->cache0 + r * K, K, row);
        for (size_t e = 0; e < K; e++) {
            p->cache0[r * K + e] = ref_i8_value(row, K, e);
        }
    }
    return 0;
}

/* For an int8 cache: the new keys and values of @p n input rows x (B, n, D) as the cache keeps
 * them, (B, 2, n, H, K) floats (ref_call's kv_new): each projected in double, rounded to float
 * as the device's projection, then quantized. NULL when out of memory. */
static float *kv_new_of(const problem *p, const float *x, size_t n) {
    const size_t D = p->D, H = p->H, K = p->K;
    float *kv = malloc(p->B * 2 * n * H * K * sizeof(float));
    float *row = malloc(K * sizeof(float));
    unsigned char *q = malloc(K + 4);
    if (kv == NULL || row == NULL || q == NULL) {
        free(kv), free(row), free(q);
        return NULL;
    }
    for (size_t b = 0; b < p->B; b++) {
        for (size_t which = 0; which < 2; which++) {
            const float *w = p->w[2 + 2 * which], *bias = p->w[3 + 2 * which];
            for (size_t t = 0; t < n; t++) {
                for (size_t h = 0; h < H; h++) {
                    for (size_t e = 0; e < K; e++) {
                        double s = bias[h * K + e];
                        for (size_t i = 0; i < D; i++) {
                            s += (double)x[(b * n + t) * D + i] * w[(i * H + h) * K + e];
                        }
                        row[e] = (float)s;
                    }
                    ref_i8_quantize(row, K, q);
                    float *out = kv + (((b * 2 + which) * n + t) * H + h) * K;
                    for (size_t e = 0; e < K; e++) {
                        out[e] = ref_i8_value(q, K, e);
                    }
                }
            }
        }
    }
    free(row), free(q);
    return kv;
}

/* Weights, inputs and a random cache; the reference outputs of the prefill (into cache
 * positions [0, P), causal) and of the decode step that follows it (position S - 1, attending
 * every position). */
static int problem_init(problem *p, const opts *o) {
    memset(p, 0, sizeof *p);
    p->o = o;
    p->D = o->dim, p->H = o->heads, p->K = o->head_dim, p->B = o->batch, p->P = o->prompt;
    p->S = o->seq;
    const size_t D = p->D, H = p->H, K = p->K, B = p->B, P = p->P, S = p->S;
    const size_t n[8] = {D * H * K, H * K, D * H * K, H * K, D * H * K, H * K, H * K * D, D};
    uint64_t seed = 12345;
    for (int i = 0; i < 8; i++) {
        p->wn[i] = n[i];
        p->w[i] = malloc(n[i] * sizeof(float));
        if (p->w[i] == NULL) {
            return 1;
        }
        const float scale = i % 2 ? 0.1f : 1.0f / sqrtf((float)(i == 6 ? H * K : D));
        for (size_t j = 0; j < n[i]; j++) {
            p->w[i][j] = scale * rnd(&seed);
        }
    }
    const size_t cn = B * 2 * S * H * K;
    p->x_prefill = malloc(B * P * D * sizeof(float));
    p->x_decode = malloc(B * D * sizeof(float));
    p->cache0 = malloc(cn * sizeof(float));
    p->ref_prefill = malloc(B * P * D * sizeof(double));
    p->ref_decode = malloc(B * D * sizeof(double));
    double *cache_new = malloc(cn * sizeof(double));
    float *cache1 = malloc(cn * sizeof(float));
    uint8_t *mask = malloc(P * S);
    if (!p->x_prefill || !p->x_decode || !p->cache0 || !p->ref_prefill || !p->ref_decode ||
        !cache_new || !cache1 || !mask) {
        free(cache_new), free(cache1), free(mask);
        return 1;
    }
    for (size_t j = 0; j < B * P * D; j++) {
        p->x_prefill[j] = rnd(&seed);
    }
    for (size_t j = 0; j < B * D; j++) {
        p->x_decode[j] = rnd(&seed);
    }
    for (size_t j = 0; j < cn; j++) {
        const float v = rnd(&seed);
        p->cache0[j] = o->half ? half_to_float(half_from_float(v)) : v;
    }
    float *kv_pre = NULL, *kv_dec = NULL;
    if (o->int8 && (quantize_cache(p) != 0 || (kv_pre = kv_new_of(p, p->x_prefill, P)) == NULL ||
                    (kv_dec = kv_new_of(p, p->x_decode, 1)) == NULL)) {
        free(cache_new), free(cache1), free(mask), free(kv_pre);
        return 1;
    }
    ref_weights rw = {H,       K,       K,       D,       D,       D,       D,       true,
                      p->w[0], p->w[1], p->w[2], p->w[3], p->w[4], p->w[5], p->w[6], p->w[7]};
    for (size_t t = 0; t < P; t++) {
        for (size_t j = 0; j < S; j++) {
            mask[t * S + j] = j <= t; /* causal from cache position 0 */
        }
    }
    ref_call pre = {
        B, P,         p->x_prefill,   NULL, p->x_prefill, P, mask,  {1, P, S}, p->cache0, S, true,
        0, cache_new, p->ref_prefill, NULL, o->half != 0, 0, false, kv_pre};
    bool ok = ref_forward(&rw, &pre);
    for (size_t j = 0; j < cn; j++) {
        cache1[j] = (float)cache_new[j];
    }
    ref_call dec = {
        B,     1,         p->x_decode,   NULL, p->x_decode,  1, NULL,  {0, 0, 0}, cache1, S, true,
        S - 1, cache_new, p->ref_decode, NULL, o->half != 0, 0, false, kv_dec};
    ok = ok && ref_forward(&rw, &dec);
    free(cache_new), free(cache1), free(mask), free(kv_pre), free(kv_dec);
    return ok ? 0 : 1;
}

static void problem_free(problem *p) {
    for (int i = 0; i < 8; i++) {
        free(p->w[i]);
    }
    free(p->x_prefill), free(p->x_decode), free(p->cache0), free(p->cache8), free(p->ref_prefill);
    free(p->ref_decode);
}

/* ---- a runner: one context with one settings string, its layer and the calls ---- */

typedef struct runner {
    clmha_context *ctx;
    clmha_layer *layer;
    clmha_tensor *x[2], *y[2], *cache;
    clmha_call_args args[2]; /* 0: prefill, 1: decode */
} runner;

static void runner_free(runner *r) {
    for (int i = 0; i < 2; i++) {
        clmha_tensor_release(r->x[i]), clmha_tensor_release(r->y[i]);
    }
    clmha_tensor_release(r->cache);
    clmha_layer_release(r->layer);
    clmha_context_release(r->ctx);
    memset(r, 0, sizeof *r);
}

/* Makes a runner with @p tune; returns false with the library's message in @p why. */
static bool runner_make(runner *r, const problem *p, const char *tune, char *why, size_t len) {
    memset(r, 0, sizeof *r);
    clmha_context_options co;
    clmha_context_options_init(&co);
    co.tune = tune;
    co.use_tuned = false; /* from the row, not from an earlier tuning */
    clmha_layer_config cfg;
    clmha_layer_config_init(&cfg);
    cfg.num_heads = (int)p->H, cfg.key_dim = (int)p->K;
    cfg.cache_dtype = p->o->half ? CLMHA_FLOAT16 : p->o->int8 ? CLMHA_INT8 : CLMHA_FLOAT32;
    const size_t xs[2][3] = {{p->B, p->P, p->D}, {p->B, 1, p->D}};
    bool ok = clmha_context_create(&co, &r->ctx) == CLMHA_OK &&
              clmha_layer_create(r->ctx, &cfg, p->D, p->D, 0, &r->layer) == CLMHA_OK &&
              clmha_layer_create_cache(r->layer, p->B, p->S, &r->cache) == CLMHA_OK;
    for (int w = 0; ok && w < 8; w++) {
        ok = clmha_layer_set_weight(r->layer, (clmha_weight)w, p->w[w], p->wn[w]) == CLMHA_OK;
    }
    for (int i = 0; ok && i < 2; i++) {
        const float *host = i ? p->x_decode : p->x_prefill;
        ok = clmha_tensor_create(r->ctx, CLMHA_FLOAT32, 3, xs[i], &r->x[i]) == CLMHA_OK &&
             clmha_tensor_write(r->x[i], host, xs[i][0] * xs[i][1] * xs[i][2] * sizeof(float)) ==
                 CLMHA_OK &&
             clmha_tensor_create(r->ctx, CLMHA_FLOAT32, 3, xs[i], &r->y[i]) == CLMHA_OK;
        if (ok) {
            clmha_call_args *a = &r->args[i];
            clmha_call_args_init(a);
            a->query = r->x[i], a->value = r->x[i], a->output = r->y[i], a->causal = true;
            a->cache = r->cache, a->has_cache_update_index = true;
            a->cache_update_index = i ? (int64_t)(p->S - 1) : 0;
        }
    }
    ok = ok && clmha_layer_reserve(r->layer, p->B, p->P, p->P, p->S, false) == CLMHA_OK;
    if (!ok) {
        snprintf(why, len, "%s", clmha_last_error());
        runner_free(r);
    }
    return ok;
}

/* The layer's cache set to the problem's random one (a half cache from the same values, which
 * are half-representable; an int8 cache from its quantized rows). */
static bool load_cache(runner *r, const problem *p) {
    const size_t n = p->B * 2 * p->S * p->H * p->K;
    if (p->o->int8) {
        return clmha_tensor_write(r->cache, p->cache8, p->B * 2 * p->S * p->H * (p->K + 4)) ==
               CLMHA_OK;
    }
    if (!p->o->half) {
        return clmha_tensor_write(r->cache, p->cache0, n * sizeof(float)) == CLMHA_OK;
    }
    uint16_t *h = malloc(n * sizeof *h);
    if (h == NULL) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        h[i] = half_from_float(p->cache0[i]);
    }
    const bool ok = clmha_tensor_write(r->cache, h, n * sizeof *h) == CLMHA_OK;
    free(h);
    return ok;
}

/* Whether @p got (n floats) matches @p ref: relative Frobenius error within @p rel and every
 * element within 10 * rel of the largest reference value. */
static bool close_to(const float *got, const double *ref, size_t n, double rel, double *err) {
    double num = 0, den = 0, maxref = 0, worst = 0;
    for (size_t i = 0; i < n; i++) {
        maxref = fmax(maxref, fabs(ref[i]));
    }
    for (size_t i = 0; i < n; i++) {
        const double d = (double)got[i] - ref[i];
        if (!isfinite(got[i])) {
            *err = INFINITY;
            return false;
        }
        num += d * d, den += ref[i] * ref[i];
        worst = fmax(worst, fabs(d));
    }
    *err = den > 0 ? sqrt(num / den) : sqrt(num);
    return *err <= rel && worst <= 10 * rel * maxref + 1e-6;
}

/* Runs the prefill and the decode step once from the problem's cache and compares both
 * outputs with the reference; false with the reason in @p why. */
static bool runner_check(runner *r, const problem *p, char *why, size_t len) {
    /* an int8 cache: the reference quantizes the same new rows (kv_new_of), so only float
     * rounding (and a rare rounding tie of the projection) remains */
    const double rel = p->o->half ? 2e-3 : p->o->int8 ? 2e-4 : 1e-4;
    const size_t n[2] = {p->B * p->P * p->D, p->B * p->D};
    const double *ref[2] = {p->ref_prefill, p->ref_decode};
    if (!load_cache(r, p)) {
        snprintf(why, len, "%s", clmha_last_error());
        return false;
    }
    for (int i = 0; i < 2; i++) {
        float *got = malloc(n[i] * sizeof(float));
        double err = 0;
        bool ok = got != NULL && clmha_layer_call(r->layer, &r->args[i]) == CLMHA_OK &&
                  clmha_tensor_read(r->y[i], got, n[i] * sizeof(float)) == CLMHA_OK;
        if (!ok) {
            snprintf(why, len, "%s", clmha_last_error());
        } else if (!close_to(got, ref[i], n[i], rel, &err)) {
            snprintf(why, len, "wrong %s output: relative error %.3g (allowed %.3g)",
                     i ? "decode" : "prefill", err, rel);
            ok = false;
        }
        free(got);
        if (!ok) {
            return false;
        }
    }
    return true;
}

static double timed(runner *r, int phase) {
    const double t0 = now_s();
    if (clmha_layer_call(r->layer, &r->args[phase]) != CLMHA_OK ||
        clmha_context_finish(r->ctx) != CLMHA_OK) {
        return -1;
    }
    return now_s() - t0;
}

/* Times both phases of @p a and @p b, their calls alternating (a, b, b, a, ...); medians in
 * ta[phase] and tb[phase]. Returns false on a failed call. */
static bool pair_time(runner *a, runner *b, size_t reps, double ta[2], double tb[2]) {
    double *va = malloc((reps + 1) * sizeof(double)), *vb = malloc((reps + 1) * sizeof(double));
    bool ok = va != NULL && vb != NULL;
    for (int phase = 0; ok && phase < 2; phase++) {
        for (size_t i = 0; ok && i < reps + 1; i++) { /* the first pair warms up */
            double x, y;
            if (i % 2 == 0) {
                x = timed(a, phase), y = timed(b, phase);
            } else {
                y = timed(b, phase), x = timed(a, phase);
            }
            ok = x >= 0 && y >= 0;
            va[i] = x, vb[i] = y;
        }
        if (ok) {
            ta[phase] = median(va + 1, reps), tb[phase] = median(vb + 1, reps);
        }
    }
    free(va), free(vb);
    return ok;
}

/* The values tried for each key: work-group sizes beyond the device's are left out. */
typedef struct candidate_key {
    const char *key;
    const char *values[8];
} candidate_key;

static const candidate_key search[] = {
    {"split_wg", {"1", "16", "32", "64", "128", "256", NULL}},
    {"split_chunk", {"64", "128", "256", "512", "1024", NULL}},
    {"heads", {"0", "1", NULL}},
    {"key_block", {"0", "1", NULL}},
    {"tile", {"0", "1", NULL}},
    {"tile_rows", {"2", "4", "8", "16", NULL}},
    {"key_tile", {"16", "32", "64", NULL}},
    {"tail", {"0", "1", NULL}},
    {"gemm_cols", {"4", "32", NULL}},
    {"gemm_small_m", {"1", "3", "6", "12", "24", NULL}},
    {"gemm_rows", {"1", "2", "4", "6", "8", "12", "16", NULL}},
    {"gemm_rows_few", {"1", "2", "4", "8", NULL}},
    {"qkv_fuse", {"0", "1", NULL}},
    {"prefetch", {"0", "1", NULL}},
};

/* Whether @p key is one of the comma-separated @p keys (NULL: all are wanted). */
static bool key_wanted(const char *keys, const char *key) {
    if (keys == NULL) {
        return true;
    }
    const size_t n = strlen(key);
    for (const char *k = keys; *k != '\0';) {
        const size_t m = strcspn(k, ",");
        if (m == n && strncmp(k, key, n) == 0) {
            return true;
        }
        k += m + (k[m] == ',');
    }
    return false;
}

/* Whether every name in --keys is a key the search knows (else says which is not). */
static bool keys_valid(const char *keys) {
    for (const char *k = keys; *k != '\0';) {
        const size_t m = strcspn(k, ",");
        bool known = false;
        for (size_t i = 0; i < sizeof search / sizeof search[0]; i++) {
            known = known || (strlen(search[i].key) == m && strncmp(k, search[i].key, m) == 0);
        }
        if (!known) {
            fprintf(stderr,
                    "clmha-tune: --keys: \"%.*s\" is not a key the search takes (see "
                    "--help)\n",
                    (int)m, k);
            return false;
        }
        k += m + (k[m] == ',');
    }
    return *keys != '\0';
}

int main(int argc, char **argv) {
    opts o;
    int rc = parse(argc, argv, &o);
    if (rc != 0) {
        return rc;
    }
    problem p;
    if (problem_init(&p, &o) != 0) {
        fprintf(stderr, "clmha-tune: out of memory\n");
        problem_free(&p);
        return 1;
    }
    char why[2048], text[1024], row_text[512];
    runner best, row;
    if (!runner_make(&row, &p, "", why, sizeof why)) {
        fprintf(stderr, "clmha-tune: %s\n", why);
        problem_free(&p);
        return 1;
    }
    clmha_device_info dev;
    clmha_context_device(row.ctx, &dev);
    clmha_context_settings(row.ctx, row_text, sizeof row_text);
    printf("clmha %s tune on %s (%s, driver %s)\n", clmha_version_string(), dev.name,
           dev.platform_name, dev.driver_version);
    printf("layer: dim %zu, %zu heads of %zu, %s cache; batch %zu, prefill %zu into a cache of "
           "%zu, decode at position %zu; %zu timed calls a phase, margin %.2f\n",
           o.dim, o.heads, o.head_dim, cache_name(&o), o.batch, o.prompt, o.seq, o.seq - 1, o.reps,
           o.margin);
    printf("start: %s\n\n", row_text);
    if (!runner_check(&row, &p, why, sizeof why)) {
        fprintf(stderr, "clmha-tune: the tuning row itself fails the check: %s\n", why);
        runner_free(&row);
        problem_free(&p);
        return 1;
    }
    settings cur = {.n = 0};
    if (!runner_make(&best, &p, "", why, sizeof why) || !runner_check(&best, &p, why, sizeof why)) {
        fprintf(stderr, "clmha-tune: %s\n", why);
        runner_free(&row), runner_free(&best);
        problem_free(&p);
        return 1;
    }
    printf("%-34s %10s %10s %8s  %s\n", "candidate", "prefill", "decode", "score", "");
    for (size_t k = 0; k < sizeof search / sizeof search[0]; k++) {
        if (!key_wanted(o.keys, search[k].key)) {
            continue;
        }
        runner keep;
        memset(&keep, 0, sizeof keep);
        double keep_score = 1.0 - o.margin;
        const char *keep_value = NULL;
        for (int v = 0; search[k].values[v] != NULL; v++) {
            const char *value = search[k].values[v];
            if (!strcmp(search[k].key, "split_wg") &&
                strtoull(value, NULL, 10) > dev.max_work_group_size) {
                continue;
            }
            settings cand = cur;
            set(&cand, search[k].key, value);
            text_of(&cand, text, sizeof text);
            char label[64];
            snprintf(label, sizeof label, "%s=%s", search[k].key, value);
            runner r;
            if (!runner_make(&r, &p, text, why, sizeof why)) {
                printf("%-34s %10s %10s %8s  skipped: %.150s\n", label, "-", "-", "-", why);
                continue;
            }
            if (!runner_check(&r, &p, why, sizeof why)) {
                printf("%-34s %10s %10s %8s  rejected: %s\n", label, "-", "-", "-", why);
                runner_free(&r);
                continue;
            }
            double tb[2], tr[2];
            if (!pair_time(&best, &r, o.reps, tb, tr)) {
                printf("%-34s %10s %10s %8s  failed: %s\n", label, "-", "-", "-",
                       clmha_last_error());
                runner_free(&r);
                continue;
            }
            const double score = sqrt(tr[0] / tb[0] * (tr[1] / tb[1]));
            printf("%-34s %10.3f %10.3f %8.3f\n", label, tr[0] / tb[0], tr[1] / tb[1], score);
            fflush(stdout);
            if (score < keep_score) {
                if (keep.ctx != NULL) {
                    runner_free(&keep);
                }
                keep = r, keep_score = score, keep_value = value;
            } else {
                runner_free(&r);
            }
        }
        if (keep_value == NULL) {
            continue;
        }
        /* A second, longer pairing confirms the win before it is kept: one pairing's medians
         * can still favour a candidate by chance on a noisy machine. */
        double tb[2], tk[2];
        const bool timed_ok = pair_time(&best, &keep, 2 * o.reps, tb, tk);
        const double confirm = timed_ok ? sqrt(tk[0] / tb[0] * (tk[1] / tb[1])) : INFINITY;
        if (confirm < 1.0 - o.margin) {
            set(&cur, search[k].key, keep_value);
            runner_free(&best);
            best = keep;
            printf("  kept %s=%s (score %.3f, confirmed %.3f)\n", search[k].key, keep_value,
                   keep_score, confirm);
        } else {
            printf("  not kept %s=%s: the second pairing gave %.3f\n", search[k].key, keep_value,
                   confirm);
            runner_free(&keep);
        }
    }
    text_of(&cur, text, sizeof text);
    /* The row against the winner, twice the calls. */
    double t_row[2] = {0, 0}, t_best[2] = {0, 0};
    if (!pair_time(&row, &best, 2 * o.reps, t_row, t_best)) {
        fprintf(stderr, "clmha-tune: %s\n", clmha_last_error());
        runner_free(&row), runner_free(&best);
        problem_free(&p);
        return 1;
    }
    printf("\n%-10s %14s %14s\n", "", "prefill ms", "decode ms");
    printf("%-10s %14.3f %14.3f   %s\n", "row", t_row[0] * 1e3, t_row[1] * 1e3, row_text);
    printf("%-10s %14.3f %14.3f   %s\n", "tuned", t_best[0] * 1e3, t_best[1] * 1e3,
           cur.n ? text : "(the row's own settings)");
    const double final_score = sqrt(t_best[0] / t_row[0] * (t_best[1] / t_row[1]));
    printf("tuned / row: prefill %.3f, decode %.3f (score %.3f)\n", t_best[0] / t_row[0],
           t_best[1] / t_row[1], final_score);
    if (cur.n > 0 && !(final_score < 1.0)) {
        /* The search never stores something slower than the row it started from. */
        printf("the tuned settings are not faster than the row here: the row's own settings "
               "stay (nothing overrides them)\n");
        cur.n = 0;
        text[0] = '\0';
        t_best[0] = t_row[0], t_best[1] = t_row[1];
    }
    rc = 0;
    if (o.dry_run) {
        printf("--dry-run: nothing stored\n");
    } else {
        char note[512], path[4200];
        time_t now = time(NULL);
        char day[16] = "";
        strftime(day, sizeof day, "%Y-%m-%d", gmtime(&now));
        snprintf(note, sizeof note,
                 "clmha-tune %s: dim %zu, %zu heads of %zu, %s cache, batch %zu, prefill %zu, "
                 "cache %zu: tuned / row prefill %.3f, decode %.3f",
                 day, o.dim, o.heads, o.head_dim, cache_name(&o), o.batch, o.prompt, o.seq,
                 t_best[0] / t_row[0], t_best[1] / t_row[1]);
        if (clmha_context_save_tuned(row.ctx, text, note, path, sizeof path) != CLMHA_OK) {
            fprintf(stderr, "clmha-tune: %s\n", clmha_last_error());
            rc = 1;
        } else {
            printf("stored in %s: every new context on this device loads it\n", path);
        }
    }
    runner_free(&row);
    runner_free(&best);
    problem_free(&p);
    return rc;
}
