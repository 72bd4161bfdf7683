/*
 * test_keras.c - the golden data from real Keras (tests/data, written by tools/keras_golden.py
 * with Keras 3 + JAX and keras-hub's CachedMultiHeadAttention): every case runs through the
 * C API (layer created from Keras's own .weights.h5) and through the clmha-run tool, and both
 * must reproduce Keras's attention output, updated cache and attention scores. Also the weight
 * file reader: listing layers, choosing by name, clear errors for bad names and bad files.
 */
#include "fixture.h"
#include "support.h"

#include "h5io.h"
#include "half.h"

#include <dirent.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *data_dir = CLMHA_TEST_DATA_DIR;

/* Keras computes in float32 (XLA's order of operations): the same rule as for the float64
 * reference, with the per-element floor scaled for float32 against float32. */
static const tol_rule TOL_KERAS = {2e-5, 2e-5, 2e-6};

static int setup(void **state) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    return test_setup_context(state);
}

typedef struct golden {
    char name[256], path[512], weights[512], layer[128];
    char quant[32];  /* Keras's quantization mode, "" for float */
    char policy[32]; /* Keras's dtype policy */
    h5io_array q, v, k, m, c, out, cache, scores;
    int64_t index;
    bool has_index, training;
    bool self; /* self-attention: query is also the value and key (one tensor) */
    double dropout, seed;
    int64_t axes[8];
    size_t naxes;
    /* Regularization cases. */
    bool reg;
    clmha_regularizer kreg, breg, areg;
    clmha_constraint kcon, bcon;
    h5io_array weights_loss, activity_loss, constrained[CLMHA_WEIGHT_COUNT];
} golden;

static clmha_regularizer read_reg(hid_t f, const char *prefix) {
    char kind[32] = "none", name[96];
    clmha_regularizer r = {CLMHA_REGULARIZER_NONE, 0, 0};
    h5io_attr_string(f, prefix, kind, sizeof kind);
    if (strcmp(kind, "l1") == 0)
        r.kind = CLMHA_REGULARIZER_L1;
    else if (strcmp(kind, "l2") == 0)
        r.kind = CLMHA_REGULARIZER_L2;
    else if (strcmp(kind, "l1l2") == 0)
        r.kind = CLMHA_REGULARIZER_L1L2;
    snprintf(name, sizeof name, "%s_l1", prefix);
    h5io_attr_double(f, name, &r.l1);
    snprintf(name, sizeof name, "%s_l2", prefix);
    h5io_attr_double(f, name, &r.l2);
    return r;
}

static clmha_constraint read_con(hid_t f, const char *prefix) {
    char kind[32] = "none", name[96];
    clmha_constraint c = {CLMHA_CONSTRAINT_NONE, 0, 0, 0, 0};
    double axis = 0;
    h5io_attr_string(f, prefix, kind, sizeof kind);
    if (strcmp(kind, "max_norm") == 0)
        c.kind = CLMHA_CONSTRAINT_MAX_NORM;
    else if (strcmp(kind, "min_max_norm") == 0)
        c.kind = CLMHA_CONSTRAINT_MIN_MAX_NORM;
    else if (strcmp(kind, "non_neg") == 0)
        c.kind = CLMHA_CONSTRAINT_NON_NEG;
    else if (strcmp(kind, "unit_norm") == 0)
        c.kind = CLMHA_CONSTRAINT_UNIT_NORM;
    snprintf(name, sizeof name, "%s_max_value", prefix);
    h5io_attr_double(f, name, &c.max_value);
    snprintf(name, sizeof name, "%s_min_value", prefix);
    h5io_attr_double(f, name, &c.min_value);
    snprintf(name, sizeof name, "%s_rate", prefix);
    h5io_attr_double(f, name, &c.rate);
    snprintf(name, sizeof name, "%s_axis", prefix);
    h5io_attr_double(f, name, &axis);
    c.axis = (int)axis;
    return c;
}

static double *to_double(const float *f, size_t n) {
    double *d = malloc(n * sizeof *d);
    assert_non_null(d);
    for (size_t i = 0; i < n; i++)
        d[i] = f[i];
    return d;
}

static void load_case(const char *file, golden *g) {
    memset(g, 0, sizeof *g);
    snprintf(g->name, sizeof g->name, "%s", file);
    snprintf(g->path, sizeof g->path, "%s/%s", data_dir, file);
    hid_t f = H5Fopen(g->path, H5F_ACC_RDONLY, H5P_DEFAULT);
    assert_true(f >= 0);
    char err[256] = "", wname[256] = "";
    assert_int_equal(h5io_attr_string(f, "weights_file", wname, sizeof wname), 1);
    snprintf(g->weights, sizeof g->weights, "%s/%s", data_dir, wname);
    assert_int_equal(h5io_attr_string(f, "layer", g->layer, sizeof g->layer), 1);
    g->quant[0] = '\0';
    h5io_attr_string(f, "quantization", g->quant, sizeof g->quant);
    snprintf(g->policy, sizeof g->policy, "float32");
    h5io_attr_string(f, "dtype_policy", g->policy, sizeof g->policy);
    double tr = 0;
    h5io_attr_double(f, "training", &tr);
    g->training = tr != 0;
    double self = 0;
    h5io_attr_double(f, "self_attention", &self);
    g->self = self != 0;
    h5io_attr_double(f, "dropout", &g->dropout);
    h5io_attr_double(f, "seed", &g->seed);
    h5io_attr_ints(f, "attention_axes", g->axes, 8, &g->naxes);
    assert_int_equal(h5io_read_float(f, "query", &g->q, err, sizeof err), 1);
    assert_true(h5io_read_float(f, "value", &g->v, err, sizeof err) >= 0);
    assert_true(h5io_read_float(f, "key", &g->k, err, sizeof err) >= 0);
    /* Integer and float masks as Keras reads them on the path the call takes. */
    double scores_attr = 0;
    h5io_attr_double(f, "return_scores", &scores_attr);
    const int explicit_path = g->dropout > 0 || scores_attr != 0 || g->q.rank > 3;
    assert_true(h5io_read_mask_rule(f, "attention_mask", &g->m, explicit_path, err, sizeof err) >=
                0);
    assert_true(h5io_read_float(f, "cache", &g->c, err, sizeof err) >= 0);
    int ri = h5io_read_int64(f, "cache_update_index", &g->index, err, sizeof err);
    assert_true(ri >= 0);
    g->has_index = ri > 0;
    assert_int_equal(h5io_read_float(f, "expected_attention_output", &g->out, err, sizeof err), 1);
    assert_true(h5io_read_float(f, "expected_cache", &g->cache, err, sizeof err) >= 0);
    assert_true(h5io_read_float(f, "expected_attention_scores", &g->scores, err, sizeof err) >= 0);
    double reg = 0;
    h5io_attr_double(f, "regularization", &reg);
    g->reg = reg != 0;
    if (g->reg) {
        g->kreg = read_reg(f, "kernel_regularizer");
        g->breg = read_reg(f, "bias_regularizer");
        g->areg = read_reg(f, "activity_regularizer");
        g->kcon = read_con(f, "kernel_constraint");
        g->bcon = read_con(f, "bias_constraint");
        assert_int_equal(
            h5io_read_float(f, "expected_weights_loss", &g->weights_loss, err, sizeof err), 1);
        assert_int_equal(
            h5io_read_float(f, "expected_activity_loss", &g->activity_loss, err, sizeof err), 1);
        for (int w = 0; w < CLMHA_WEIGHT_COUNT; w++) {
            char name[128];
            snprintf(name, sizeof name, "expected_constrained/%s",
                     clmha_weight_name((clmha_weight)w));
            assert_int_equal(h5io_read_float(f, name, &g->constrained[w], err, sizeof err), 1);
        }
    }
    H5Fclose(f);
}

static void free_case(golden *g) {
    h5io_array *all[] = {&g->q,
                         &g->v,
                         &g->k,
                         &g->m,
                         &g->c,
                         &g->out,
                         &g->cache,
                         &g->scores,
                         &g->weights_loss,
                         &g->activity_loss};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        h5io_free(all[i]);
    for (int w = 0; w < CLMHA_WEIGHT_COUNT; w++)
        h5io_free(&g->constrained[w]);
}

static clmha_tensor *dev(const h5io_array *a, bool mask) {
    if (a->numel == 0)
        return NULL;
    return mask ? test_tensor_u8(ctx, a->rank, a->dims, a->u8)
                : test_tensor_f32(ctx, a->rank, a->dims, a->f);
}

/* Keras's float32 results against clmha over a half cache: the cache's keys and values carry
 * half's rounding (2^-11 relative), nothing else differs. */
static const tol_rule TOL_KERAS_F16 = {3e-3, 5e-3, 1e-5};
/* run_tool's --cache-dtype: "" (float32), "float16" (compared with TOL_KERAS_F16) or "int8"
 * (TOL_KERAS_I8) */
static const char *cache_run = "";
/* Keras's float32 results against clmha over an int8 cache: each key and value moves by up to
 * 1/254 of its row's largest magnitude (clmha's own format, docs/api.md), about 0.5% of the
 * output's scale after the softmax and the output projection; the cache itself is compared
 * dequantized. Any dtype policy or quantization of the case takes this rule too (it is the
 * widest but bfloat16's, which it equals). */
static const tol_rule TOL_KERAS_I8 = {2e-2, 3e-2, 1e-4};
/* An int8 layer over a half cache: its output projection quantizes each attention output row to
 * steps of 1/127 of the row's largest magnitude, so the half cache's rounding (up to about 1e-3)
 * moves some values across a step: each such move is one step of that row times a weight. */
static const tol_rule TOL_KERAS_F16_INT8 = {1e-2, 1.5e-2, 1e-5};
static bool int8_case; /* the golden case's layer is int8-quantized */
/* A 16-bit dtype policy: Keras's output is itself float16 or bfloat16 (rounding of 2^-11 or
 * 2^-8 relative), and its products and cache are rounded to that dtype where clmha rounds the
 * same values computed in another order, so results differ by about one such rounding. */
static const tol_rule TOL_KERAS_FLOAT16 = {3e-3, 4e-3, 1e-5};
static const tol_rule TOL_KERAS_BFLOAT16 = {2e-2, 3e-2, 1e-4};
static const tol_rule *policy_tol; /* the case's, or NULL for float32 */

static bool compare_to(const char *what, const float *got, const h5io_array *want,
                       const char *repro) {
    double *ref = to_double(want->f, want->numel);
    bool ok = compare_close(what, got, ref, want->numel,
                            !strcmp(cache_run, "int8") ? TOL_KERAS_I8
                            : policy_tol != NULL       ? *policy_tol
                            : !*cache_run              ? TOL_KERAS
                            : int8_case                ? TOL_KERAS_F16_INT8
                                                       : TOL_KERAS_F16,
                            repro);
    free(ref);
    return ok;
}

/* A 16-bit policy's output is in its compute dtype, as Keras's is: every value exactly a float16
 * (policy_tol TOL_KERAS_FLOAT16) or a bfloat16 (the low sixteen bits zero). A float32
 * computation would fail this for nearly every value. */
static bool in_policy_dtype(const float *v, size_t n, const char *repro) {
    for (size_t i = 0; i < n; i++) {
        uint32_t bits;
        memcpy(&bits, &v[i], sizeof bits);
        const bool ok = policy_tol == &TOL_KERAS_BFLOAT16
                            ? (bits & 0xffffu) == 0
                            : half_to_float(half_from_float(v[i])) == v[i];
        if (!ok) {
            print_error("%s: output element %zu (%.9g) is not a %s value\n", repro, i, (double)v[i],
                        policy_tol == &TOL_KERAS_BFLOAT16 ? "bfloat16" : "float16");
            return false;
        }
    }
    return true;
}

/* Runs a golden case through the C API. */
static bool run_api(const golden *g) {
    clmha_layer_config base;
    clmha_layer_config_init(&base);
    base.dropout = g->dropout;
    for (int p = 0; clmha_dtype_policy_name((clmha_dtype_policy)p) != NULL; p++) {
        if (strcmp(g->policy, clmha_dtype_policy_name((clmha_dtype_policy)p)) == 0) {
            base.dtype_policy = (clmha_dtype_policy)p;
        }
    }
    base.seed = (int64_t)g->seed;
    base.num_attention_axes = (int)g->naxes;
    for (size_t i = 0; i < g->naxes; i++)
        base.attention_axes[i] = (int)g->axes[i];
    if (g->reg) {
        base.kernel_regularizer = g->kreg, base.bias_regularizer = g->breg;
        base.activity_regularizer = g->areg;
        base.kernel_constraint = g->kcon, base.bias_constraint = g->bcon;
    }
    clmha_layer *layer = NULL;
    assert_ok(clmha_layer_create_from_keras(ctx, g->weights, g->layer, &base, &layer));
    clmha_tensor *tq = dev(&g->q, false), *tv = dev(&g->v, false), *tk = dev(&g->k, false);
    clmha_tensor *tm = dev(&g->m, true), *tc = dev(&g->c, false);
    clmha_tensor *to = test_tensor_f32(ctx, g->out.rank, g->out.dims, NULL);
    clmha_tensor *tp =
        g->scores.numel ? test_tensor_f32(ctx, g->scores.rank, g->scores.dims, NULL) : NULL;
    clmha_call_args a;
    clmha_call_args_init(&a);
    a.query = tq, a.value = g->self ? tq : tv, a.key = tk, a.attention_mask = tm, a.cache = tc;
    a.has_cache_update_index = g->has_index, a.cache_update_index = g->index;
    a.training = g->training, a.output = to, a.attention_scores = tp;
    assert_ok(clmha_layer_call(layer, &a));
    char repro[700];
    snprintf(repro, sizeof repro, "tests/data/%s through the C API", g->name);
    float *out = test_read(to, NULL);
    bool ok = compare_to("attention_output", out, &g->out, repro) &&
              (policy_tol == NULL || in_policy_dtype(out, g->out.numel, repro));
    free(out);
    if (ok && tc) {
        float *c = test_read(tc, NULL);
        ok = compare_to("cache", c, &g->cache, repro);
        free(c);
    }
    if (ok && tp) {
        float *p = test_read(tp, NULL);
        ok = compare_to("attention_scores", p, &g->scores, repro);
        free(p);
    }
    if (ok && g->reg) {
        /* Keras's layer.losses after the call, and each weight after its constraint. */
        double wl = 0, al = 0;
        assert_ok(clmha_layer_regularization_loss(layer, &wl, &al));
        double ew = g->weights_loss.f[0], ea = g->activity_loss.f[0];
        if (fabs(wl - ew) > 1e-5 * fabs(ew) + 1e-9 || fabs(al - ea) > 1e-5 * fabs(ea) + 1e-9) {
            print_error("%s: losses (weights %.9g, activity %.9g), Keras (%.9g, %.9g)\n", repro, wl,
                        al, ew, ea);
            ok = false;
        }
        assert_ok(clmha_layer_apply_constraints(layer));
        for (int w = 0; ok && w < CLMHA_WEIGHT_COUNT; w++) {
            size_t n = g->constrained[w].numel;
            float *got = malloc(n * sizeof(float));
            assert_ok(clmha_layer_get_weight(layer, (clmha_weight)w, got, n));
            char what[160];
            snprintf(what, sizeof what, "constrained %s", clmha_weight_name((clmha_weight)w));
            ok = compare_to(what, got, &g->constrained[w], repro);
            free(got);
        }
    }
    clmha_tensor *all[] = {tq, tv, tk, tm, tc, to, tp};
    for (size_t i = 0; i < 7; i++)
        clmha_tensor_release(all[i]);
    clmha_layer_release(layer);
    return ok;
}

/* Runs a golden case through clmha-run and compares its output file; with cache_run set, with
 * the cache stored as float16 or int8 rows on the device. */
static bool run_tool(const golden *g) {
    char out[600], cmd[3000], axes[64] = "";
    snprintf(out, sizeof out, "%s/clmha-run-%d-%.200s", "/tmp", (int)getpid(), g->name);
    for (size_t i = 0; i < g->naxes; i++) {
        size_t len = strlen(axes);
        snprintf(axes + len, sizeof axes - len, "%s%lld", i ? "," : "", (long long)g->axes[i]);
    }
    snprintf(cmd, sizeof cmd,
             "%s --weights '%s' --layer %s --inputs '%s' --output '%s'%s%s%s%s --seed %lld "
             "--dropout %.17g%s%s%s --dtype-policy %s",
             CLMHA_RUN_PATH, g->weights, g->layer, g->path, out,
             g->naxes ? " --attention-axes " : "", axes, g->training ? " --training" : "",
             g->scores.numel ? " --return-scores" : "", (long long)g->seed, g->dropout,
             *cache_run ? " --cache-dtype " : "", cache_run, g->self ? " --self-attention" : "",
             g->policy);
    if (system(cmd) != 0) {
        print_error("clmha-run failed: %s\n", cmd);
        return false;
    }
    hid_t f = H5Fopen(out, H5F_ACC_RDONLY, H5P_DEFAULT);
    assert_true(f >= 0);
    char err[256] = "";
    h5io_array o = {0}, c = {0}, s = {0};
    assert_int_equal(h5io_read_float(f, "attention_output", &o, err, sizeof err), 1);
    bool ok =
        o.numel == g->out.numel && compare_to("clmha-run attention_output", o.f, &g->out, cmd);
    if (ok && g->cache.numel) {
        ok = h5io_read_float(f, "cache", &c, err, sizeof err) == 1 &&
             compare_to("clmha-run cache", c.f, &g->cache, cmd);
    }
    if (ok && g->scores.numel) {
        ok = h5io_read_float(f, "attention_scores", &s, err, sizeof err) == 1 &&
             s.rank == g->scores.rank &&
             compare_to("clmha-run attention_scores", s.f, &g->scores, cmd);
    }
    H5Fclose(f);
    remove(out);
    h5io_free(&o), h5io_free(&c), h5io_free(&s);
    return ok;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Runs every golden case whose file name starts with @p prefix (all but those with "zoo_" when
 * @p zoo is false) and returns how many there were. */
static size_t run_golden_cases(bool zoo) {
    /* CLMHA_GOLDEN_PREFIX: only the cases whose file names start with it (a ctest variant) */
    const char *prefix = getenv("CLMHA_GOLDEN_PREFIX");
    DIR *d = opendir(data_dir);
    assert_non_null(d);
    char *names[256];
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && n < 256) {
        size_t len = strlen(e->d_name);
        if (len > 3 && strcmp(e->d_name + len - 3, ".h5") == 0 && !strstr(e->d_name, ".weights.") &&
            (strncmp(e->d_name, "zoo_", 4) == 0) == zoo &&
            (prefix == NULL || strncmp(e->d_name, prefix, strlen(prefix)) == 0)) {
            names[n++] = strdup(e->d_name);
        }
    }
    closedir(d);
    qsort(names, n, sizeof names[0], cmp_str);
    size_t failed = 0, half_runs = 0;
    for (size_t i = 0; i < n; i++) {
        golden g;
        load_case(names[i], &g);
        int8_case = strcmp(g.quant, "int8") == 0;
        policy_tol = strstr(g.policy, "bfloat16")  ? &TOL_KERAS_BFLOAT16
                     : strstr(g.policy, "float16") ? &TOL_KERAS_FLOAT16
                                                   : NULL;
        bool ok = run_api(&g);
        ok = run_tool(&g) && ok;
        if (g.cache.numel) { /* every cached case again over a half and an int8 cache */
            static const char *const narrow[] = {"float16", "int8"};
            for (int c = 0; c < 2; c++) {
                cache_run = narrow[c];
                ok = run_tool(&g) && ok;
            }
            cache_run = "";
            half_runs++;
        }
        if (!ok) {
            print_error("golden case %s failed\n", names[i]);
            failed++;
        }
        free_case(&g);
        free(names[i]);
    }
    print_message("%zu golden cases from real Keras (%zu cached ones also over a float16 and an "
                  "int8 cache through clmha-run), %zu failed\n",
                  n, half_runs, failed);
    assert_int_equal(failed, 0);
    return n;
}

/* The single-layer cases of tools/keras_golden.py (those of CLMHA_GOLDEN_PREFIX where set). */
static void test_golden_cases(void **state) {
    (void)state;
    assert_true(run_golden_cases(false) >= (getenv("CLMHA_GOLDEN_PREFIX") ? 12 : 85));
}

/* The model zoo's cases (tools/keras_zoo.py): layers of keras-hub models in each cache mode. */
static void zoo_golden_cases(void **state) {
    (void)state;
    assert_true(run_golden_cases(true) >= 38);
}

static void test_layer_lookup(void **state) {
    (void)state;
    char path[600];
    snprintf(path, sizeof path, "%s/gpt2_decode.weights.h5", data_dir);
    clmha_keras_layer_info *list = NULL;
    size_t n = 0;
    assert_ok(clmha_keras_list_layers(path, &list, &n));
    assert_int_equal(n, 2);
    assert_string_equal(list[0].path, "block/cross_attention");
    assert_string_equal(list[1].path, "block/self_attention");
    assert_int_equal(list[1].num_heads, 12);
    assert_int_equal(list[1].head_key_dim, 64);
    assert_int_equal(list[1].query_dim, 768);
    assert_int_equal(list[1].output_shape[0], 768);
    assert_true(list[1].use_bias);
    free(list);
    clmha_keras_layer_info info;
    assert_ok(clmha_keras_find_layer(path, "self_attention", &info));
    assert_string_equal(info.path, "block/self_attention");
    assert_ok(clmha_keras_find_layer(path, "/block/cross_attention", &info));
    assert_int_equal(info.num_heads, 2);
    /* Two layers and no name; a wrong name: errors listing the layers. */
    assert_int_equal(clmha_keras_find_layer(path, NULL, &info), CLMHA_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(clmha_last_error(), "choose one by name"));
    assert_non_null(strstr(clmha_last_error(), "block/self_attention"));
    assert_int_equal(clmha_keras_find_layer(path, "attention", &info), CLMHA_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(clmha_last_error(), "\"block/cross_attention\""));
    /* One layer: the name may be left out. */
    snprintf(path, sizeof path, "%s/nocache_basic.weights.h5", data_dir);
    assert_ok(clmha_keras_find_layer(path, NULL, &info));
    assert_string_equal(info.path, "block/self_attention");
}

static void test_bad_files(void **state) {
    (void)state;
    clmha_keras_layer_info info;
    assert_int_equal(clmha_keras_find_layer("/nonexistent/x.weights.h5", NULL, &info),
                     CLMHA_ERR_IO);
    assert_non_null(strstr(clmha_last_error(), "cannot open"));
    char path[600], bad[600], cmd[1400];
    snprintf(path, sizeof path, "%s/nocache_basic.weights.h5", data_dir);
    snprintf(bad, sizeof bad, "%s/clmha-bad-%d.h5", "/tmp", (int)getpid());
    /* Not HDF5 at all. */
    FILE *f = fopen(bad, "w");
    fputs("hello", f);
    fclose(f);
    assert_int_equal(clmha_keras_find_layer(bad, NULL, &info), CLMHA_ERR_IO);
    assert_non_null(strstr(clmha_last_error(), "not an HDF5 file"));
    /* Truncated. */
    snprintf(cmd, sizeof cmd, "head -c 3000 '%s' > '%s'", path, bad);
    assert_int_equal(system(cmd), 0);
    assert_int_not_equal(clmha_keras_find_layer(bad, NULL, &info), CLMHA_OK);
    /* A valid HDF5 file without any attention layer (a golden inputs file). */
    snprintf(path, sizeof path, "%s/nocache_basic.h5", data_dir);
    assert_int_equal(clmha_keras_find_layer(path, NULL, &info), CLMHA_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(clmha_last_error(), "holds no attention layer"));
    remove(bad);

    /* Shapes that do not match the layer: refused, and the weights stay as they were. */
    clmha_layer_config cfg;
    clmha_layer_config_init(&cfg);
    cfg.num_heads = 2, cfg.key_dim = 5, cfg.seed = 9;
    clmha_layer *l = NULL;
    assert_ok(clmha_layer_create(ctx, &cfg, 8, 8, 0, &l));
    float before[80], after[80];
    assert_ok(clmha_layer_get_weight(l, CLMHA_WEIGHT_QUERY_KERNEL, before, 80));
    snprintf(path, sizeof path, "%s/nocache_basic.weights.h5", data_dir);
    assert_int_equal(clmha_layer_load_keras_weights(l, path, NULL), CLMHA_ERR_SHAPE_MISMATCH);
    assert_non_null(strstr(clmha_last_error(), "query_dense/kernel"));
    assert_non_null(strstr(clmha_last_error(), "(8, 2, 4)"));
    assert_ok(clmha_layer_get_weight(l, CLMHA_WEIGHT_QUERY_KERNEL, after, 80));
    assert_memory_equal(before, after, sizeof before);
    clmha_layer_release(l);
    cfg.key_dim = 4, cfg.use_bias = false;
    assert_ok(clmha_layer_create(ctx, &cfg, 8, 8, 0, &l));
    assert_int_equal(clmha_layer_load_keras_weights(l, path, NULL), CLMHA_ERR_SHAPE_MISMATCH);
    assert_non_null(strstr(clmha_last_error(), "use_bias"));
    clmha_layer_release(l);
}

/* clmha-run: a failure is one line on stderr, exit status non-zero, no output file. */
static void test_run_errors(void **state) {
    (void)state;
    char out[300], cmd[2000];
    snprintf(out, sizeof out, "%s/clmha-run-err-%d.h5", "/tmp", (int)getpid());
    snprintf(cmd, sizeof cmd,
             "%s --weights %s/nocache_basic.weights.h5 --inputs %s/nocache_feature_dims.h5 "
             "--output %s 2>/dev/null",
             CLMHA_RUN_PATH, data_dir, data_dir, out);
    assert_int_not_equal(system(cmd), 0); /* the query's feature dim does not fit the layer */
    assert_int_equal(access(out, F_OK), -1);
    snprintf(cmd, sizeof cmd, "%s --weights x --inputs y --output %s 2>/dev/null", CLMHA_RUN_PATH,
             out);
    assert_int_not_equal(system(cmd), 0);
    assert_int_equal(access(out, F_OK), -1);
    snprintf(cmd, sizeof cmd, "%s --bogus 2>/dev/null", CLMHA_RUN_PATH);
    assert_int_not_equal(system(cmd), 0);
    snprintf(cmd, sizeof cmd, "%s --help >/dev/null", CLMHA_RUN_PATH);
    assert_int_equal(system(cmd), 0);
}

/* The model zoo (tools/keras_zoo.py): each keras-hub model's weights file lists every attention
 * layer Keras's own model has, in the order Keras's save_weights visited them (recorded from
 * Keras in zoo/manifest.txt), and every one of them loads. */
static void zoo_listing(void **state) {
    (void)state;
    char path[700], line[16384];
    snprintf(path, sizeof path, "%s/zoo/manifest.txt", data_dir);
    FILE *fp = fopen(path, "r");
    assert_non_null(fp);
    size_t models = 0, layers = 0;
    while (fgets(line, sizeof line, fp) != NULL) {
        line[strcspn(line, "\n")] = '\0';
        char *save = NULL, *file = strtok_r(line, "\t", &save);
        snprintf(path, sizeof path, "%s/zoo/%s", data_dir, file);
        clmha_keras_layer_info *list = NULL;
        size_t n = 0, i = 0;
        assert_ok(clmha_keras_list_layers(path, &list, &n));
        for (char *want = strtok_r(NULL, "\t", &save); want; want = strtok_r(NULL, "\t", &save)) {
            if (i >= n || strcmp(list[i].path, want) != 0) {
                print_error("%s: layer %zu is \"%s\", Keras's is \"%s\"\n", file, i,
                            i < n ? list[i].path : "(none)", want);
                fail();
            }
            i++;
        }
        assert_int_equal(n, i);
        for (i = 0; i < n; i++) {
            clmha_layer *l = NULL;
            assert_ok(clmha_layer_create_from_keras(ctx, path, list[i].path, NULL, &l));
            clmha_layer_release(l);
        }
        free(list);
        models++;
        layers += n;
    }
    fclose(fp);
    assert_int_equal(models, 6);
    print_message("%zu keras-hub models, %zu attention layers listed in Keras's order and loaded\n",
                  models, layers);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(zoo_listing),       cmocka_unit_test(test_layer_lookup),
        cmocka_unit_test(test_bad_files),    cmocka_unit_test(test_run_errors),
        cmocka_unit_test(test_golden_cases), cmocka_unit_test(zoo_golden_cases),
    };
    /* CLMHA_TEST_FILTER (a cmocka pattern): ctest runs "test_*" and the model zoo's "zoo_*" as
     * two programs side by side. */
    const char *filter = getenv("CLMHA_TEST_FILTER");
    if (filter != NULL && *filter != '\0') {
        cmocka_set_test_filter(filter);
    }
    return cmocka_run_group_tests(tests, setup, test_teardown_context);
}
