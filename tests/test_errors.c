/*
 * test_errors.c - invalid arguments. Every bad call returns its documented status with a
 * message naming the argument, and leaves output, cache and every input byte-for-byte as they
 * were (read back and compared). Also invalid layer configurations at create.
 */
#include "fixture.h"
#include "support.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { B = 2, T = 3, S = 10, SN = 2, D = 12, H = 2, DK = 4 };

static clmha_context *other;
static clmha_layer *layer;
static clmha_tensor *tq, *tv, *tk, *tm, *tc, *to, *tp;
static void *snap[7];
static size_t snap_bytes[7];

static int setup(void **state) {
    (void)state;
    ctx = test_context();
    other = test_context();
    clmha_layer_config cfg;
    clmha_layer_config_init(&cfg);
    cfg.num_heads = H, cfg.key_dim = DK, cfg.seed = 3;
    cfg.dropout = 0.5;
    assert_ok(clmha_layer_create(ctx, &cfg, D, D, 0, &layer));
    test_rng r = {1};
    float buf[B * 2 * S * H * DK];
    size_t qs[3] = {B, T, D}, vs[3] = {B, SN, D}, ms[3] = {B, T, S}, cs[5] = {B, 2, S, H, DK};
    size_t ps[4] = {B, H, T, S};
    rng_fill(&r, buf, B * T * D, -1, 1);
    tq = test_tensor_f32(ctx, 3, qs, buf);
    rng_fill(&r, buf, B * SN * D, -1, 1);
    tv = test_tensor_f32(ctx, 3, vs, buf);
    rng_fill(&r, buf, B * SN * D, -1, 1);
    tk = test_tensor_f32(ctx, 3, vs, buf);
    uint8_t m[B * T * S];
    for (size_t i = 0; i < sizeof m; i++)
        m[i] = (uint8_t)(i % 3 != 0);
    tm = test_tensor_u8(ctx, 3, ms, m);
    rng_fill(&r, buf, B * 2 * S * H * DK, -1, 1);
    tc = test_tensor_f32(ctx, 5, cs, buf);
    rng_fill(&r, buf, B * T * D, 5, 6);
    to = test_tensor_f32(ctx, 3, qs, buf);
    rng_fill(&r, buf, B * H * T * S, 5, 6);
    tp = test_tensor_f32(ctx, 4, ps, buf);
    clmha_tensor *all[7] = {tq, tv, tk, tm, tc, to, tp};
    for (int i = 0; i < 7; i++)
        snap[i] = test_read(all[i], &snap_bytes[i]);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    clmha_tensor *all[7] = {tq, tv, tk, tm, tc, to, tp};
    for (int i = 0; i < 7; i++) {
        clmha_tensor_release(all[i]);
        free(snap[i]);
    }
    clmha_layer_release(layer);
    clmha_context_release(other);
    clmha_context_release(ctx);
    return 0;
}

/* A valid update-mode call that the cases below spoil one argument at a time. */
static clmha_call_args good(void) {
    clmha_call_args a;
    clmha_call_args_init(&a);
    a.query = tq, a.value = tv, a.key = tk, a.attention_mask = tm, a.cache = tc;
    a.has_cache_update_index = true, a.cache_update_index = 4;
    a.output = to, a.attention_scores = tp;
    return a;
}

/* Calls, checks the status and message, then that nothing changed. */
static void expect(const clmha_call_args *a, clmha_status want, const char *word) {
    clmha_status st = clmha_layer_call(layer, a);
    if (st != want || strstr(clmha_last_error(), word) == NULL) {
        print_error("got %s \"%s\"; expected %s mentioning \"%s\"\n", clmha_status_name(st),
                    clmha_last_error(), clmha_status_name(want), word);
        fail();
    }
    clmha_tensor *all[7] = {tq, tv, tk, tm, tc, to, tp};
    for (int i = 0; i < 7; i++) {
        size_t n;
        void *now = test_read(all[i], &n);
        assert_int_equal(n, snap_bytes[i]);
        if (memcmp(now, snap[i], n) != 0) {
            print_error("tensor %d changed by a rejected call (%s)\n", i, word);
            fail();
        }
        free(now);
    }
}

static clmha_tensor *f32(clmha_context *c, int rank, size_t a, size_t b, size_t d, size_t e,
                         size_t f) {
    size_t s[5] = {a, b, d, e, f};
    return test_tensor_f32(c, rank, s, NULL);
}

static void test_bad_calls(void **state) {
    (void)state;
    clmha_call_args a;
    clmha_tensor *x, *tk2 = NULL;

    a = good(), a.query = x = f32(ctx, 3, B, T, D + 1, 0, 0);
    expect(&a, CLMHA_ERR_SHAPE_MISMATCH, "query has shape (2, 3, 13)");
    clmha_tensor_release(x);
    a = good(), a.query = x = f32(ctx, 2, T, D, 0, 0, 0);
    expect(&a, CLMHA_ERR_SHAPE_MISMATCH, "query");
    clmha_tensor_release(x);
    a = good(), a.query = x = f32(ctx, 4, B, T, 2, D, 0);
    expect(&a, CLMHA_ERR_INVALID_ARGUMENT, "a cache (and cache_update_index) needs rank-3");
    a = good(), a.query = x, a.cache = NULL, a.has_cache_update_index = false, a.causal = true;
    expect(&a, CLMHA_ERR_INVALID_ARGUMENT, "args.causal needs rank-3");
    clmha_tensor_release(x);
    a = good(), a.value = x = f32(ctx, 3, B, SN, D - 1, 0, 0);
    expect(&a, CLMHA_ERR_SHAPE_MISMATCH, "value");
    clmha_tensor_release(x);
    a = good(), a.value = x = f32(ctx, 3, B + 1, SN, D, 0, 0);
    expect(&a, CLMHA_ERR_SHAPE_MISMATCH, "value");
    clmha_tensor_release(x);
    a = good(), a.key = x = f32(ctx, 3, B, SN, D + 2, 0, 0);
    expect(&a, CLMHA_ERR_SHAPE_MISMATCH, "key");
    clmha_tensor_release(x);
    a = good(), a.key = x = f32(ctx, 3, B, SN + 1, D, 0, 0); /* key and value lengths differ */
    expect(&a, CLMHA_ERR_SHAPE_MISMATCH, "value's batch and length");
    clmha_tensor_release(x);
    a = good(), a.value = NULL;
    expect(&a, CLMHA_ERR_NULL_ARGUMENT, "value is required to update the cache");
    /* key_lengths: int32 of shape (B,). */
    {
        size_t ls[2] = {B, 1};
        assert_ok(clmha_tensor_create(ctx, CLMHA_INT32, 2, ls, &x));
        a = good(), a.key_lengths = x;
        expect(&a, CLMHA_ERR_SHAPE_MISMATCH, "key_lengths has shape (2, 1); expected (2,)");
        clmha_tensor_release(x);
        x = f32(ctx, 1, B, 0, 0, 0, 0);
        a = good(), a.key_lengths = x;
        expect(&a, CLMHA_ERR_INVALID_ARGUMENT, "key_lengths has dtype float32; expected int32");
        clmha_tensor_release(x);
        x = f32(ctx, 4, B, T, 2, D, 0);
        assert_ok(clmha_tensor_create(ctx, CLMHA_INT32, 1, ls, &tk2));
        a = good(), a.query = x, a.cache = NULL, a.has_cache_update_index = false;
        a.key_lengths = tk2;
        expect(&a, CLMHA_ERR_INVALID_ARGUMENT, "args.key_lengths needs rank-3");
        clmha_tensor_release(x), clmha_tensor_release(tk2);
    }
    /* A half cache given to a layer created for a float one (and a uint8 "cache"). */
    {
        size_t cs[5];
        for (int i = 0; i < 5; i++) {
            cs[i] = clmha_tensor_dim(tc, i);
        }
        assert_ok(clmha_tensor_create(ctx, CLMHA_FLOAT16, 5, cs, &x));
        a = good(), a.cache = x;
        expect(&a, CLMHA_ERR_INVALID_ARGUMENT,
               "cache has dtype float16; this layer was created with cache_dtype float32");
        clmha_tensor_release(x);
        assert_ok(clmha_tensor_create(ctx, CLMHA_UINT8, 5, cs, &x));
        a = good(), a.cache = x;
        expect(&a, CLMHA_ERR_INVALID_ARGUMENT, "cache has dtype uint8");
        clmha_tensor_release(x);
    }

    /* Masks. */
    size_t m1[3] = {B, T, S + 1}, m2[4] = {1, H + 1, T, S}, m3[3] = {3, T, S};
    size_t m5[5] = {1, 1, B, T, S};
    a = good(), a.attention_mask = x = test_tensor_u8(ctx, 3, m1, NULL);
    expect(&a, CLMHA_ERR_SHAPE_MISMATCH, "broadcastable to (2, 2, 3, 10) = (B, num_heads, T, S)");
    clmha_tensor_release(x);
    a = good(), a.attention_mask = x = test_tensor_u8(ctx, 4, m2, NULL); /* heads: H or 1 */
    expect(&a, CLMHA_ERR_SHAPE_MISMATCH, "attention_mask");
    clmha_tensor_release(x);
    a = good(), a.attention_mask = x = test_tensor_u8(ctx, 5, m5, NULL);
    expect(&a, CLMHA_ERR_SHAPE_MISMATCH, "rank 2 (T, S), 3 (B, T, S) or 4");
    clmha_tensor_release(x);
    a = good(), a.attention_mask = x = test_tensor_u8(ctx, 3, m3, NULL);
    expect(&a, CLMHA_ERR_SHAPE_MISMATCH, "attention_mask");
    clmha_tensor_release(x);
    a = good(), a.attention_mask = tq; /* float mask */
    expect(&a, CLMHA_ERR_INVALID_ARGUMENT, "attention_mask has dtype float32; expected uint8");

    /* Cache. */
    a = good(), a.cache = x = f32(ctx, 5, B, 2, S, H + 1, DK);
    expect(&a, CLMHA_ERR_SHAPE_MISMATCH, "(B, 2, S, num_heads, key_dim)");
    clmha_tensor_release(x);
    a = good(), a.cache = x = f32(ctx, 5, B + 1, 2, S, H, DK);
    expect(&a, CLMHA_ERR_SHAPE_MISMATCH, "cache");
    clmha_tensor_release(x);
    a = good(), a.cache = x = f32(ctx, 4, B, 2, S, H * DK, 0);
    expect(&a, CLMHA_ERR_SHAPE_MISMATCH, "cache");
    clmha_tensor_release(x);
    a = good(), a.cache = NULL;
    expect(&a, CLMHA_ERR_INVALID_ARGUMENT, "cache_update_index is set but cache is NULL");
    a = good(), a.cache_update_index = -1;
    expect(&a, CLMHA_ERR_OUT_OF_RANGE, "cache_update_index -1");
    a = good(), a.cache_update_index = S - SN + 1;
    expect(&a, CLMHA_ERR_OUT_OF_RANGE, "expected 0 <= index <= 8");
    a = good(), a.cache_update_index = INT64_MAX;
    expect(&a, CLMHA_ERR_OUT_OF_RANGE, "cache_update_index");

    /* Outputs. */
    a = good(), a.output = x = f32(ctx, 3, B, T, D + 1, 0, 0);
    expect(&a, CLMHA_ERR_SHAPE_MISMATCH, "output has shape (2, 3, 13); expected (2, 3, 12)");
    clmha_tensor_release(x);
    a = good(), a.attention_scores = x = f32(ctx, 4, B, H, T, S - 1, 0);
    expect(&a, CLMHA_ERR_SHAPE_MISMATCH, "(B, num_heads, T, S)");
    clmha_tensor_release(x);
    a = good(), a.output = tq; /* the output is the query tensor itself */
    expect(&a, CLMHA_ERR_INVALID_ARGUMENT, "output overlaps query");
    a = good(), a.attention_scores = x = f32(ctx, 4, B, H, T, S, 0);
    a.output = NULL;
    expect(&a, CLMHA_ERR_NULL_ARGUMENT, "output");
    clmha_tensor_release(x);
    {
        /* Another tensor over the cache's memory. */
        size_t qs[3] = {B, T, D};
        clmha_tensor *alias = NULL;
        assert_ok(
            clmha_tensor_wrap(ctx, CLMHA_FLOAT32, 3, qs, clmha_tensor_buffer(tc), 16, &alias));
        a = good(), a.output = alias;
        expect(&a, CLMHA_ERR_INVALID_ARGUMENT, "output overlaps cache");
        clmha_tensor_release(alias);
    }

    /* Other context, training with dropout. */
    a = good(), a.query = x = f32(other, 3, B, T, D, 0, 0);
    expect(&a, CLMHA_ERR_CONTEXT_MISMATCH, "query belongs to another clmha context");
    clmha_tensor_release(x);
    a = good(), a.query = NULL;
    expect(&a, CLMHA_ERR_NULL_ARGUMENT, "query");
    a = good(), a.output = NULL;
    expect(&a, CLMHA_ERR_NULL_ARGUMENT, "output");

    /* And the good call itself works (the sweep was not failing for another reason). */
    a = good();
    assert_ok(clmha_layer_call(layer, &a));
    assert_ok(clmha_context_finish(ctx));
}

static void test_bad_configs(void **state) {
    (void)state;
    clmha_layer_config c;
    clmha_layer *l = NULL;
#define BAD(stmt, word)                                                                            \
    clmha_layer_config_init(&c);                                                                   \
    c.num_heads = 2, c.key_dim = 4;                                                                \
    stmt;                                                                                          \
    assert_int_equal(clmha_layer_create(ctx, &c, 8, 8, 0, &l), CLMHA_ERR_INVALID_ARGUMENT);        \
    assert_non_null(strstr(clmha_last_error(), word));                                             \
    assert_null(l);
    BAD(c.num_heads = 0, "num_heads is 0");
    BAD(c.num_heads = -3, "num_heads is -3");
    BAD(c.key_dim = 0, "key_dim is 0");
    BAD(c.value_dim = -1, "value_dim");
    BAD(c.dropout = 1.0, "dropout is 1");
    BAD(c.dropout = -0.1, "dropout");
    BAD(c.dropout = NAN, "dropout");
    BAD((c.output_rank = 2, c.output_shape[0] = 4, c.output_shape[1] = 0), "output_shape[1]");
    BAD(c.output_rank = -1, "output_rank");
    BAD((c.num_attention_axes = 1, c.attention_axes[0] = 0), "attention_axes[0] is 0");
    BAD(c.kernel_initializer.kind = (clmha_init_kind)77, "kernel_initializer");
    BAD((c.bias_initializer = clmha_initializer_default(CLMHA_INIT_RANDOM_UNIFORM),
         c.bias_initializer.minval = 1, c.bias_initializer.maxval = 0),
        "bias_initializer");
    BAD((c.kernel_initializer = clmha_initializer_default(CLMHA_INIT_RANDOM_NORMAL),
         c.kernel_initializer.stddev = -1),
        "stddev");
    BAD((c.kernel_regularizer.kind = CLMHA_REGULARIZER_L2, c.kernel_regularizer.l2 = -1),
        "kernel_regularizer");
    BAD(c.activity_regularizer.kind = (clmha_regularizer_kind)9, "activity_regularizer");
    BAD((c.bias_constraint.kind = CLMHA_CONSTRAINT_MIN_MAX_NORM, c.bias_constraint.min_value = 3),
        "bias_constraint");
    BAD(c.seed = -2, "seed");
    BAD(c.cache_dtype = CLMHA_UINT8, "cache_dtype is 1");
    BAD(c.fully_masked_rows = (clmha_fully_masked_rows)5, "fully_masked_rows is 5");
    /* Finite as doubles, not as the float32 weights. */
    BAD((c.kernel_initializer = clmha_initializer_default(CLMHA_INIT_CONSTANT),
         c.kernel_initializer.value = 1e39),
        "finite in float32");
    BAD((c.bias_initializer = clmha_initializer_default(CLMHA_INIT_RANDOM_UNIFORM),
         c.bias_initializer.minval = -3e38, c.bias_initializer.maxval = 3e38),
        "difference finite in float32");
    BAD((c.kernel_initializer = clmha_initializer_default(CLMHA_INIT_RANDOM_NORMAL),
         c.kernel_initializer.mean = 1e40),
        "finite in float32");
    /* Parameters within float32 whose draws are not. */
    BAD((c.kernel_initializer = clmha_initializer_default(CLMHA_INIT_RANDOM_NORMAL),
         c.kernel_initializer.mean = 3e38, c.kernel_initializer.stddev = 3e38),
        "outside float32's range");
#undef BAD
    clmha_layer_config_init(&c);
    assert_int_equal(clmha_layer_create(ctx, &c, 0, 8, 0, &l), CLMHA_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(clmha_last_error(), "query_dim"));

    /* A NULL output argument is named. */
    c.num_heads = 2, c.key_dim = 4;
    assert_ok(clmha_layer_create(ctx, &c, 8, 8, 0, &l));
    int rank;
    size_t shape[CLMHA_MAX_RANK];
    assert_int_equal(clmha_layer_output_shape(l, NULL, shape), CLMHA_ERR_NULL_ARGUMENT);
    assert_non_null(strstr(clmha_last_error(), "rank is NULL"));
    assert_int_equal(clmha_layer_output_shape(l, &rank, NULL), CLMHA_ERR_NULL_ARGUMENT);
    assert_non_null(strstr(clmha_last_error(), "shape is NULL"));
    clmha_layer_release(l);
    l = NULL;

    /* An empty cache folder name is no folder. */
    clmha_context_options opt;
    clmha_context_options_init(&opt);
    opt.cache_dir = "";
    clmha_context *c2 = NULL;
    assert_int_equal(clmha_context_create(&opt, &c2), CLMHA_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(clmha_last_error(), "options.cache_dir is \"\""));
    assert_null(c2);

    /* A cache needs key_dim == value_dim; the error says so. */
    c.num_heads = 1, c.key_dim = 4, c.value_dim = 6;
    assert_ok(clmha_layer_create(ctx, &c, 8, 8, 0, &l));
    size_t qs[3] = {1, 1, 8}, cs[5] = {1, 2, 5, 1, 4};
    clmha_tensor *q = test_tensor_f32(ctx, 3, qs, NULL), *o = test_tensor_f32(ctx, 3, qs, NULL);
    clmha_tensor *cache = test_tensor_f32(ctx, 5, cs, NULL);
    clmha_call_args a;
    clmha_call_args_init(&a);
    a.query = q, a.cache = cache, a.output = o;
    assert_int_equal(clmha_layer_call(l, &a), CLMHA_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(clmha_last_error(), "key_dim == value_dim"));
    /* Weights: wrong count, a missing bias. */
    float w[64];
    assert_int_equal(clmha_layer_set_weight(l, CLMHA_WEIGHT_QUERY_KERNEL, w, 31),
                     CLMHA_ERR_SHAPE_MISMATCH);
    assert_non_null(strstr(clmha_last_error(), "(8, 1, 4)"));
    clmha_tensor_release(q), clmha_tensor_release(o), clmha_tensor_release(cache);
    clmha_layer_release(l);
    clmha_layer_config_init(&c);
    c.use_bias = false;
    assert_ok(clmha_layer_create(ctx, &c, 8, 8, 0, &l));
    assert_int_equal(clmha_layer_set_weight(l, CLMHA_WEIGHT_OUTPUT_BIAS, w, 8),
                     CLMHA_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(clmha_last_error(), "use_bias"));
    clmha_layer_release(l);
}

/* Regularizers and constraints: Keras's defaults, and a constraint axis that does not exist
 * is refused before any weight changes. */
static void test_regularization_errors(void **state) {
    (void)state;
    clmha_regularizer r = clmha_regularizer_default(CLMHA_REGULARIZER_L1);
    assert_true(r.l1 == 0.01 && r.l2 == 0.0);
    r = clmha_regularizer_default(CLMHA_REGULARIZER_L2);
    assert_true(r.l1 == 0.0 && r.l2 == 0.01);
    r = clmha_regularizer_default(CLMHA_REGULARIZER_L1L2);
    assert_true(r.l1 == 0.0 && r.l2 == 0.0);
    clmha_constraint c = clmha_constraint_default(CLMHA_CONSTRAINT_MAX_NORM);
    assert_true(c.max_value == 2.0 && c.axis == 0);
    c = clmha_constraint_default(CLMHA_CONSTRAINT_MIN_MAX_NORM);
    assert_true(c.min_value == 0.0 && c.max_value == 1.0 && c.rate == 1.0 && c.axis == 0);

    clmha_layer_config cfg;
    clmha_layer_config_init(&cfg);
    cfg.num_heads = 2, cfg.key_dim = 3, cfg.seed = 1;
    cfg.kernel_constraint = clmha_constraint_default(CLMHA_CONSTRAINT_UNIT_NORM);
    cfg.bias_constraint = clmha_constraint_default(CLMHA_CONSTRAINT_MAX_NORM);
    cfg.bias_constraint.axis = 2; /* the (H, dk) biases have no axis 2 */
    clmha_layer *l = NULL;
    assert_ok(clmha_layer_create(ctx, &cfg, 4, 4, 0, &l));
    float before[24], after[24];
    assert_ok(clmha_layer_get_weight(l, CLMHA_WEIGHT_QUERY_KERNEL, before, 24));
    assert_int_equal(clmha_layer_apply_constraints(l), CLMHA_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(clmha_last_error(), "bias_constraint.axis is 2"));
    assert_ok(clmha_layer_get_weight(l, CLMHA_WEIGHT_QUERY_KERNEL, after, 24));
    assert_memory_equal(before, after, sizeof before); /* the kernels were not touched either */
    double wl = -1, al = -1;
    assert_ok(clmha_layer_regularization_loss(l, &wl, &al));
    assert_true(wl == 0.0 && al == 0.0); /* no regularizers: no loss */
    assert_int_equal(clmha_layer_regularization_loss(NULL, &wl, &al), CLMHA_ERR_NULL_ARGUMENT);
    assert_int_equal(clmha_layer_apply_constraints(NULL), CLMHA_ERR_NULL_ARGUMENT);
    clmha_layer_release(l);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_calls),
        cmocka_unit_test(test_bad_configs),
        cmocka_unit_test(test_regularization_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
