/*
 * test_quant.c - Keras's quantized layers (clmha_layer_quantize, and int8 / int4 layers read
 * from Keras's own files), against files written by real Keras (tools/keras_golden.py's quant_*
 * cases: the float layer before Keras quantized it, and the quantized one):
 * - clmha_layer_quantize of the float layer gives Keras's integers (read back, and read from
 *   Keras's file by this test's own unpacking of the int4 nibbles) and Keras's scales (the two
 *   layers' outputs are bit for bit the same);
 * - the reader's listing names each mode, int4 groups included;
 * - bad modes, a second quantize, float kernels into a quantized layer and broken quantized
 *   files are refused with messages that say why, leaving the layer as it was;
 * - self-attention's one input tensor is quantized (int8) or rounded (a 16-bit policy) once.
 * The calls themselves are checked against Keras's outputs by test_keras's golden cases.
 */
#include "fixture.h"
#include "internal.h" /* quant_wide: whether a decode step's products are one launch */
#include "support.h"

#include <hdf5.h>

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *data_dir = CLMHA_TEST_DATA_DIR;
static char tmp[200]; /* a damaged copy of a file */

static int setup(void **state) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    snprintf(tmp, sizeof tmp, "/tmp/clmha-quant-%d.weights.h5", (int)getpid());
    return test_setup_context(state);
}

static int teardown(void **state) {
    remove(tmp);
    return test_teardown_context(state);
}

/* The golden cases with a float layer beside Keras's quantized one, and Keras's mode. */
static const struct {
    const char *name, *mode;
} cases[] = {
    {"quant_int8_nocache", "int8"},      {"quant_int8_prefill", "int8"},
    {"quant_int8_wide_update", "int8"},  {"quant_int4_nocache", "int4/128"},
    {"quant_int4_update", "int4/128"},   {"quant_int4g32_nocache", "int4/32"},
    {"quant_int4pc_nocache", "int4/-1"},
};

static void path_of(char *buf, size_t len, const char *name, const char *kind) {
    snprintf(buf, len, "%s/%s%s.weights.h5", data_dir, name, kind);
}

static clmha_layer *from_file(const char *path) {
    clmha_layer *l = NULL;
    assert_ok(clmha_layer_create_from_keras(ctx, path, "self_attention", NULL, &l));
    return l;
}

/* Self-attention over fixed random inputs, no cache: the output, malloc'd. */
static float *call_output(clmha_layer *l, size_t *n) {
    clmha_keras_layer_info info;
    (void)info;
    size_t dq;
    int rank;
    size_t shape[CLMHA_MAX_RANK];
    assert_ok(clmha_layer_weight_shape(l, CLMHA_WEIGHT_QUERY_KERNEL, &rank, shape));
    dq = shape[0];
    const size_t B = 2, T = 5, qs[3] = {B, T, dq};
    float *x = malloc(B * T * dq * sizeof(float));
    test_rng r = {12345};
    rng_fill(&r, x, B * T * dq, -2.0, 2.0);
    clmha_tensor *tq = test_tensor_f32(ctx, 3, qs, x);
    int orank;
    size_t oshape[CLMHA_MAX_RANK], os[CLMHA_MAX_RANK] = {B, T};
    assert_ok(clmha_layer_output_shape(l, &orank, oshape));
    memcpy(os + 2, oshape, (size_t)orank * sizeof(size_t));
    clmha_tensor *to = test_tensor_f32(ctx, orank + 2, os, NULL);
    clmha_call_args a;
    clmha_call_args_init(&a);
    a.query = tq, a.value = tq, a.output = to;
    assert_ok(clmha_layer_call(l, &a));
    size_t bytes;
    float *out = test_read(to, &bytes);
    *n = bytes / sizeof(float);
    clmha_tensor_release(tq);
    clmha_tensor_release(to);
    free(x);
    return out;
}

/* The integers of Keras's quantized kernel <sub>/vars/0 in Keras's kernel layout [k][n]: int8
 * as stored, int4 unpacked here from its bytes (column 2j the low nibble, 2j + 1 the high). */
static float *keras_integers(const char *path, const char *sub, size_t k, size_t n, bool int4) {
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    assert_true(f >= 0);
    char name[200];
    snprintf(name, sizeof name, "block/self_attention/%s/vars/0", sub);
    const size_t bytes = int4 ? k * ((n + 1) / 2) : k * n;
    signed char *raw = malloc(bytes);
    hid_t ds = H5Dopen2(f, name, H5P_DEFAULT);
    assert_true(ds >= 0);
    hid_t sp = H5Dget_space(ds);
    assert_int_equal((size_t)H5Sget_simple_extent_npoints(sp), bytes);
    assert_true(H5Dread(ds, H5T_NATIVE_SCHAR, H5S_ALL, H5S_ALL, H5P_DEFAULT, raw) >= 0);
    H5Sclose(sp);
    H5Dclose(ds);
    H5Fclose(f);
    float *out = malloc(k * n * sizeof(float));
    for (size_t r = 0; r < k; r++) {
        for (size_t c = 0; c < n; c++) {
            if (!int4) {
                out[r * n + c] = raw[r * n + c];
                continue;
            }
            const int byte = raw[r * ((n + 1) / 2) + c / 2] & 0xFF;
            int nib = c % 2 ? byte >> 4 : byte & 0xF;
            out[r * n + c] = (float)(nib >= 8 ? nib - 16 : nib);
        }
    }
    free(raw);
    return out;
}

/* clmha_layer_quantize of the float layer equals Keras's quantized layer. */
static void test_quantize_matches_keras(void **state) {
    (void)state;
    static const char *const subs[4] = {"query_dense", "key_dense", "value_dense", "output_dense"};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        char fpath[600], qpath[600];
        path_of(fpath, sizeof fpath, cases[c].name, ".float");
        path_of(qpath, sizeof qpath, cases[c].name, "");
        clmha_layer *mine = from_file(fpath), *keras = from_file(qpath);
        assert_string_equal(clmha_layer_quantization(mine), "");
        const char *mode = strcmp(cases[c].mode, "int4/128") == 0 ? "int4" : cases[c].mode;
        assert_ok(clmha_layer_quantize(mine, mode));
        assert_string_equal(clmha_layer_quantization(mine), cases[c].mode);
        assert_string_equal(clmha_layer_quantization(keras), cases[c].mode);
        for (int w = 0; w < CLMHA_WEIGHT_COUNT; w += 2) {
            int rank;
            size_t shape[CLMHA_MAX_RANK], numel = 1;
            assert_ok(clmha_layer_weight_shape(mine, (clmha_weight)w, &rank, shape));
            for (int i = 0; i < rank; i++) {
                numel *= shape[i];
            }
            const size_t k = w == CLMHA_WEIGHT_OUTPUT_KERNEL ? shape[0] * shape[1] : shape[0];
            float *a = malloc(numel * sizeof(float)), *b = malloc(numel * sizeof(float));
            assert_ok(clmha_layer_get_weight(mine, (clmha_weight)w, a, numel));
            assert_ok(clmha_layer_get_weight(keras, (clmha_weight)w, b, numel));
            float *want = keras_integers(qpath, subs[w / 2], k, numel / k, mode[3] == '4');
            for (size_t i = 0; i < numel; i++) {
                if (a[i] != want[i] || b[i] != want[i]) {
                    fail_msg("%s: %s[%zu] quantized here %g, loaded %g, Keras %g", cases[c].name,
                             subs[w / 2], i, (double)a[i], (double)b[i], (double)want[i]);
                }
            }
            free(a), free(b), free(want);
        }
        size_t n1, n2;
        float *o1 = call_output(mine, &n1), *o2 = call_output(keras, &n2);
        assert_int_equal(n1, n2);
        /* equal integers and equal scales: the same launches give the same bits */
        assert_memory_equal(o1, o2, n1 * sizeof(float));
        free(o1), free(o2);
        clmha_layer_release(mine);
        clmha_layer_release(keras);
    }
}

/* The reader names each mode and the layer's dims. */
static void test_listing(void **state) {
    (void)state;
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        char fpath[600], qpath[600];
        path_of(fpath, sizeof fpath, cases[c].name, ".float");
        path_of(qpath, sizeof qpath, cases[c].name, "");
        clmha_keras_layer_info fi, qi;
        assert_ok(clmha_keras_find_layer(fpath, NULL, &fi));
        assert_ok(clmha_keras_find_layer(qpath, NULL, &qi));
        assert_string_equal(fi.quantization, "");
        assert_string_equal(qi.quantization, cases[c].mode);
        assert_int_equal(qi.num_heads, fi.num_heads);
        assert_int_equal(qi.head_key_dim, fi.head_key_dim);
        assert_int_equal(qi.head_value_dim, fi.head_value_dim);
        assert_int_equal(qi.query_dim, fi.query_dim);
        assert_int_equal(qi.output_rank, fi.output_rank);
        assert_int_equal(qi.output_shape[0], fi.output_shape[0]);
        assert_int_equal(qi.use_bias, fi.use_bias);
    }
}

/* Expects @p st to be @p want with a message containing @p text. */
static void expect_fail(clmha_status st, clmha_status want, const char *text) {
    assert_int_equal(st, want);
    if (strstr(clmha_last_error(), text) == NULL) {
        fail_msg("message \"%s\" does not say \"%s\"", clmha_last_error(), text);
    }
}

/* Bad modes, a second quantize, kernels set into a quantized layer, float weights loaded into
 * one: refused, and the layer computes what it did. */
static void test_errors(void **state) {
    (void)state;
    char fpath[600], qpath[600];
    path_of(fpath, sizeof fpath, "quant_int8_nocache", ".float");
    path_of(qpath, sizeof qpath, "quant_int8_nocache", "");
    clmha_layer *l = from_file(fpath);
    static const char *const bad[] = {"", "int3", "int4/6", "int4/0", "int4/x", "INT8", "int4/"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        expect_fail(clmha_layer_quantize(l, bad[i]), CLMHA_ERR_INVALID_ARGUMENT,
                    "is not a quantization mode");
        assert_string_equal(clmha_layer_quantization(l), "");
    }
    expect_fail(clmha_layer_quantize(l, NULL), CLMHA_ERR_NULL_ARGUMENT, "mode is NULL");
    expect_fail(clmha_layer_quantize(NULL, "int8"), CLMHA_ERR_NULL_ARGUMENT, "layer is NULL");
    assert_ok(clmha_layer_quantize(l, "int8"));
    size_t n0, n1;
    float *before = call_output(l, &n0);
    expect_fail(clmha_layer_quantize(l, "int4"), CLMHA_ERR_INVALID_ARGUMENT,
                "already quantized (int8)");
    int rank;
    size_t shape[CLMHA_MAX_RANK];
    assert_ok(clmha_layer_weight_shape(l, CLMHA_WEIGHT_KEY_KERNEL, &rank, shape));
    const size_t nk = shape[0] * shape[1] * shape[2];
    float *w = calloc(nk, sizeof(float));
    expect_fail(clmha_layer_set_weight(l, CLMHA_WEIGHT_KEY_KERNEL, w, nk),
                CLMHA_ERR_INVALID_ARGUMENT, "cannot be set");
    expect_fail(clmha_layer_load_keras_weights(l, fpath, NULL), CLMHA_ERR_INVALID_ARGUMENT,
                "has float kernels but the clmha layer is quantized (int8)");
    expect_fail(clmha_layer_load_keras_weights(l, qpath, NULL), CLMHA_ERR_INVALID_ARGUMENT,
                "already quantized");
    float *after = call_output(l, &n1);
    assert_int_equal(n0, n1);
    assert_memory_equal(before, after, n0 * sizeof(float));
    /* biases stay float: they can be set */
    assert_ok(clmha_layer_weight_shape(l, CLMHA_WEIGHT_KEY_BIAS, &rank, shape));
    assert_ok(clmha_layer_set_weight(l, CLMHA_WEIGHT_KEY_BIAS, w, shape[0] * shape[1]));
    free(w), free(before), free(after);
    clmha_layer_release(l);
    /* a float layer takes a quantized file's weights and becomes quantized */
    l = from_file(fpath);
    assert_ok(clmha_layer_load_keras_weights(l, qpath, NULL));
    assert_string_equal(clmha_layer_quantization(l), "int8");
    clmha_layer_release(l);
}

/* Copies @p src to tmp and deletes or replaces one of its datasets. */
static void damaged_copy(const char *src, const char *victim, bool replace_float) {
    hid_t in = H5Fopen(src, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t out = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(in >= 0 && out >= 0);
    assert_true(H5Ocopy(in, "block", out, "block", H5P_DEFAULT, H5P_DEFAULT) >= 0);
    H5Fclose(in);
    char name[300];
    snprintf(name, sizeof name, "block/self_attention/%s", victim);
    assert_true(H5Ldelete(out, name, H5P_DEFAULT) >= 0);
    if (replace_float) {
        /* a float g_idx that is not groups of consecutive rows */
        const hsize_t dims[1] = {136};
        float v[136];
        for (int i = 0; i < 136; i++) {
            v[i] = (float)(i % 2);
        }
        hid_t sp = H5Screate_simple(1, dims, NULL);
        hid_t ds =
            H5Dcreate2(out, name, H5T_NATIVE_FLOAT, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        assert_true(ds >= 0);
        assert_true(H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) >= 0);
        H5Dclose(ds);
        H5Sclose(sp);
    }
    H5Fclose(out);
}

/* Broken quantized files: the layer is not listed, and asking for it says why. */
static void test_broken_files(void **state) {
    (void)state;
    char q8[600], q4[600];
    path_of(q8, sizeof q8, "quant_int8_nocache", "");
    path_of(q4, sizeof q4, "quant_int4_nocache", "");
    static const struct {
        const char *src, *victim, *why;
        bool replace;
    } broken[] = {
        {"8", "key_dense/vars/2", "kernel_scale", false},
        {"8", "output_dense/vars/0", "quantized in part", false},
        {"4", "value_dense/vars/4", "kernel_zero", false},
        {"4", "query_dense/vars/4", "g_idx is not Keras's groups", true},
    };
    for (size_t i = 0; i < sizeof broken / sizeof broken[0]; i++) {
        damaged_copy(broken[i].src[0] == '8' ? q8 : q4, broken[i].victim, broken[i].replace);
        clmha_keras_layer_info *list = NULL;
        size_t n = 99;
        assert_ok(clmha_keras_list_layers(tmp, &list, &n));
        assert_int_equal(n, 0);
        free(list);
        clmha_keras_layer_info info;
        expect_fail(clmha_keras_find_layer(tmp, "self_attention", &info),
                    CLMHA_ERR_INVALID_ARGUMENT, broken[i].why);
    }
}

/* Self-attention's query, key and value are one tensor: an int8 layer quantizes its rows once
 * (one quantize_rows launch, not three) and a 16-bit policy rounds them once (one round_rows),
 * giving bit for bit what three distinct tensors of the same values give, with two launches
 * fewer; an int8 layer's one-row products of one or two rows (the wide layout: CPUs) are one
 * gemm_i8w_qkv launch too, two fewer again. A second call over changed inputs prepares them
 * anew (the output follows them). Three rows, then one (a decode step). */
static void test_self_attention_prepares_once(void **state) {
    (void)state;
    clmha_context_options o;
    clmha_context_options_init(&o);
    o.profile = true;
    clmha_context *pc = NULL;
    assert_ok(clmha_context_create(&o, &pc));
    enum { B = 1, T = 3, D = 32 };
    float x[B * T * D], x2[B * T * D];
    test_rng r = {77};
    rng_fill(&r, x, B * T * D, -1, 1);
    rng_fill(&r, x2, B * T * D, -1, 1);
    for (int kind = 0; kind < 4; kind++) {
        const size_t rows = kind < 2 ? T : 1;
        size_t xs[3] = {B, rows, D};
        const size_t bytes = B * rows * D * sizeof(float);
        clmha_layer_config cfg;
        clmha_layer_config_init(&cfg);
        cfg.num_heads = 2, cfg.key_dim = 16, cfg.seed = 5;
        cfg.dtype_policy = kind % 2 == 0 ? CLMHA_POLICY_FLOAT32 : CLMHA_POLICY_FLOAT16;
        clmha_layer *l = NULL;
        assert_ok(clmha_layer_create(pc, &cfg, D, D, 0, &l));
        if (kind % 2 == 0) {
            assert_ok(clmha_layer_quantize(l, "int8"));
        }
        const uint64_t fewer = kind == 2 && l->quant_wide ? 4 : 2;
        clmha_tensor *t[3], *out[2];
        for (int i = 0; i < 3; i++) {
            assert_ok(clmha_tensor_create(pc, CLMHA_FLOAT32, 3, xs, &t[i]));
            assert_ok(clmha_tensor_write(t[i], x, bytes));
        }
        assert_ok(clmha_tensor_create(pc, CLMHA_FLOAT32, 3, xs, &out[0]));
        assert_ok(clmha_tensor_create(pc, CLMHA_FLOAT32, 3, xs, &out[1]));
        uint64_t launches[2];
        float y[2][B * T * D];
        /* a first call grows the workspace (launches of its own with poison_buffers=1) */
        clmha_call_args warm;
        clmha_call_args_init(&warm);
        warm.query = t[0], warm.value = t[1], warm.key = t[2], warm.output = out[0];
        assert_ok(clmha_layer_call(l, &warm));
        for (int self = 0; self < 2; self++) {
            clmha_call_args a;
            clmha_call_args_init(&a);
            a.query = t[0], a.value = self ? t[0] : t[1], a.key = self ? t[0] : t[2];
            a.output = out[self];
            clmha_profile prof;
            assert_ok(clmha_context_take_profile(pc, &prof));
            assert_ok(clmha_layer_call(l, &a));
            assert_ok(clmha_context_take_profile(pc, &prof));
            launches[self] = prof.launches;
            assert_ok(clmha_tensor_read(out[self], y[self], bytes));
        }
        assert_memory_equal(y[0], y[1], bytes);
        assert_int_equal(launches[1] + fewer, launches[0]);
        /* new values in the same tensor: the next self-attention call sees them */
        assert_ok(clmha_tensor_write(t[0], x2, bytes));
        clmha_call_args a;
        clmha_call_args_init(&a);
        a.query = a.value = a.key = t[0], a.output = out[1];
        assert_ok(clmha_layer_call(l, &a));
        float y2[B * T * D];
        assert_ok(clmha_tensor_read(out[1], y2, bytes));
        for (int i = 1; i < 3; i++) {
            assert_ok(clmha_tensor_write(t[i], x2, bytes));
        }
        a.value = t[1], a.key = t[2], a.output = out[0];
        assert_ok(clmha_layer_call(l, &a));
        assert_ok(clmha_tensor_read(out[0], y[0], bytes));
        assert_memory_equal(y[0], y2, bytes);
        assert_memory_not_equal(y2, y[1], bytes);
        for (int i = 0; i < 3; i++) {
            clmha_tensor_release(t[i]);
        }
        clmha_tensor_release(out[0]), clmha_tensor_release(out[1]);
        clmha_layer_release(l);
    }
    clmha_context_release(pc);
}

/* An int8 layer's decode step with the wide layout (CPUs) is four launches: quantize_rows, one
 * gemm_i8w_qkv for the three input products, the attention and gemm_tail, which merges the
 * heads' chunks, quantizes the attention's row, projects it and splices the cache. Its output
 * and cache equal, bit for bit, those of the same layer on a context with tail=0 (the merge,
 * quantize_rows, gemm_i8w and commit apart), for every cache dtype, over enough keys for
 * several chunks (CLMHA_TUNE split_chunk). */
static void test_int8_decode_tail(void **state) {
    (void)state;
    enum { D = 32, S = 40, B = 2 };
    const clmha_dtype cdts[3] = {CLMHA_FLOAT32, CLMHA_FLOAT16, CLMHA_INT8};
    float x[B * D], y[2][B * D];
    test_rng r = {91};
    rng_fill(&r, x, B * D, -1, 1);
    for (int c = 0; c < 3; c++) {
        unsigned char *cache_bytes[2] = {NULL, NULL};
        size_t cache_len = 0;
        uint64_t launches[2] = {0, 0};
        bool tail = false;
        for (int k = 0; k < 2; k++) {
            clmha_context_options o;
            clmha_context_options_init(&o);
            o.profile = true;
            o.tune = k == 0 ? "split_chunk=8" : "split_chunk=8,tail=0";
            clmha_context *pc = NULL;
            assert_ok(clmha_context_create(&o, &pc));
            clmha_layer_config cfg;
            clmha_layer_config_init(&cfg);
            cfg.num_heads = 2, cfg.key_dim = 16, cfg.seed = 9, cfg.cache_dtype = cdts[c];
            clmha_layer *l = NULL;
            assert_ok(clmha_layer_create(pc, &cfg, D, D, 0, &l));
            assert_ok(clmha_layer_quantize(l, "int8"));
            tail = tail || (k == 0 && l->use_tail);
            size_t xs[3] = {B, 1, D};
            clmha_tensor *t = NULL, *out = NULL, *cache = NULL;
            assert_ok(clmha_tensor_create(pc, CLMHA_FLOAT32, 3, xs, &t));
            assert_ok(clmha_tensor_write(t, x, sizeof x));
            assert_ok(clmha_tensor_create(pc, CLMHA_FLOAT32, 3, xs, &out));
            assert_ok(clmha_layer_create_cache(l, B, S, &cache));
            /* the cache's keys and values from a prefill of S - 1 positions */
            clmha_call_args a;
            clmha_call_args_init(&a);
            a.query = a.value = t, a.output = out, a.cache = cache;
            a.has_cache_update_index = true;
            for (int64_t i = 0; i < S; i++) {
                a.cache_update_index = i;
                clmha_profile prof;
                assert_ok(clmha_context_take_profile(pc, &prof));
                assert_ok(clmha_layer_call(l, &a));
                assert_ok(clmha_context_take_profile(pc, &prof));
                launches[k] = prof.launches;
            }
            assert_ok(clmha_tensor_read(out, y[k], sizeof y[k]));
            cache_len = clmha_tensor_numel(cache) * (cdts[c] == CLMHA_FLOAT32   ? 4
                                                     : cdts[c] == CLMHA_FLOAT16 ? 2
                                                                                : 1);
            cache_bytes[k] = malloc(cache_len);
            assert_non_null(cache_bytes[k]);
            assert_ok(clmha_tensor_read(cache, cache_bytes[k], cache_len));
            clmha_tensor_release(t), clmha_tensor_release(out), clmha_tensor_release(cache);
            clmha_layer_release(l);
            clmha_context_release(pc);
        }
        assert_memory_equal(y[0], y[1], sizeof y[0]);
        assert_memory_equal(cache_bytes[0], cache_bytes[1], cache_len);
        free(cache_bytes[0]), free(cache_bytes[1]);
        if (tail) {
            /* quantize_rows, gemm_i8w_qkv, attention_heads (a narrow cache: and to_half or
             * to_int8), gemm_tail; tail=0: attention_merge, quantize_rows, gemm_i8w, commit */
            assert_int_equal(launches[0], 4 + (c > 0));
            assert_int_equal(launches[1], launches[0] + 3);
        }
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_quantize_matches_keras),
        cmocka_unit_test(test_listing),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_broken_files),
        cmocka_unit_test(test_self_attention_prepares_once),
        cmocka_unit_test(test_int8_decode_tail),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
