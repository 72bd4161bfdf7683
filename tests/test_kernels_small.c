/*
 * test_kernels_small.c - tiny shapes through every kernel (bias fill, GEMM fallback with
 * the setting gemm=own, cache splice, attention with every mask form, probabilities, dropout, the
 * rank > 3 gathers, the half cache's rounding, splice and attention), each compared with the
 * float64 reference. Small enough to run under Oclgrind, which ctest does (test_kernels_oclgrind,
 * see oclgrind.sh): the whole program with the data-race and API checks and the work-group size
 * capped at 4, then each case in a process of its own with the uninitialised-value check.
 * `test_kernels_small --count` prints the number of cases and `test_kernels_small N` runs case N
 * alone.
 */
#include "layer_case.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Cases: 3 cache modes x MASK_KINDS masks, then a single query in each cache mode, then the
 * gather-and-dropout case, then the fresh cache. */
#define SMALL_CASES (3 * MASK_KINDS)
#define SINGLE_CASES 4
#define CASE_COUNT (SMALL_CASES + SINGLE_CASES + 2)
static int only_case = -1; /* -1: every case */

static bool selected(int i) {
    return only_case < 0 || only_case == i;
}

static void test_small_cases(void **state) {
    (void)state;
    for (int mode = MODE_NONE; mode <= MODE_UPDATE; mode++) {
        for (int mask = MASK_NONE; mask < MASK_KINDS; mask++) {
            if (!selected(mode * MASK_KINDS + mask)) {
                continue;
            }
            case_cfg c;
            memset(&c, 0, sizeof c);
            c.seed = (uint64_t)(mode * 100 + mask);
            c.mode = mode, c.mask = mask;
            c.B = 2, c.T = 3, c.S = 5, c.H = 2, c.dk = 3, c.dv = mode == MODE_NONE ? 2 : 3;
            c.Dq = 4, c.Dv = 5, c.Dk = 3, c.separate_key = true;
            c.use_bias = (mask % 2) == 0, c.offsets = mask == MASK_FULL;
            c.scores = (mask % 3) != 2; /* without probabilities: the split kernels */
            c.out_rank = mask % 3, c.out_shape[0] = 3, c.out_shape[1] = 2;
            c.Sn = mode == MODE_NONE ? c.S : mode == MODE_STATIC ? 1 : 2;
            c.index = mode == MODE_UPDATE ? (size_t)(mask % 4) : 0;
            c.half_cache = mode != MODE_NONE && (mask % 2) == 1; /* half the cached cases */
            c.int8_cache = mode != MODE_NONE && (mask % 4) == 2; /* a quarter: int8 */
            run_case(&c);
        }
    }
}

/* One query row (a decoding step) without probabilities, in each cache mode: on CPUs the
 * all-heads kernel (attention_heads), elsewhere the split kernel. Three heads, a half cache in
 * the update case. Then self-attention with 16 heads of 2 and 32 features: every projection
 * has 32 columns, so on CPUs the own GEMM runs 32 columns a work-item (gemm_qkv4 and
 * gemm_bias4 built with GC = 32). */
static void test_small_single_query(void **state) {
    (void)state;
    for (int mode = MODE_NONE; mode <= MODE_UPDATE; mode++) {
        if (!selected(SMALL_CASES + mode)) {
            continue;
        }
        case_cfg c;
        memset(&c, 0, sizeof c);
        c.seed = (uint64_t)(1000 + mode);
        c.mode = mode;
        c.mask = mode == MODE_NONE ? MASK_B1S : mode == MODE_STATIC ? MASK_RANDOM : MASK_CAUSAL;
        c.B = 2, c.T = 1, c.S = 5, c.H = 3, c.dk = 3, c.dv = mode == MODE_NONE ? 2 : 3;
        c.Dq = 4, c.Dv = 5, c.Dk = 3, c.separate_key = true, c.use_bias = true;
        c.Sn = mode == MODE_NONE ? c.S : mode == MODE_STATIC ? 1 : 2;
        c.index = mode == MODE_UPDATE ? 2 : 0;
        c.half_cache = mode == MODE_UPDATE;
        run_case(&c);
    }
    if (selected(SMALL_CASES + 3)) {
        case_cfg c;
        memset(&c, 0, sizeof c);
        c.seed = 1003, c.mode = MODE_UPDATE, c.mask = MASK_CAUSAL;
        c.B = 2, c.T = 1, c.S = 4, c.H = 16, c.dk = 2, c.dv = 2;
        c.Dq = 32, c.Dv = 32, c.Dk = 32, c.separate_key = true, c.use_bias = true;
        c.self_input = true, c.Sn = 1, c.index = 2;
        run_case(&c);
    }
}

/* Rank 4 with attention over axis 2 (the gathers), and dropout in training mode. */
static void test_small_gather_and_dropout(void **state) {
    (void)state;
    if (!selected(SMALL_CASES + SINGLE_CASES)) {
        return;
    }
    clmha_layer_config cfg;
    clmha_layer_config_init(&cfg);
    cfg.num_heads = 2, cfg.key_dim = 2, cfg.dropout = 0.5, cfg.seed = 4;
    cfg.num_attention_axes = 1, cfg.attention_axes[0] = 2;
    clmha_layer *l = NULL;
    assert_ok(clmha_layer_create(ctx, &cfg, 3, 3, 0, &l));
    size_t qs[4] = {1, 2, 3, 3}, vs[4] = {1, 2, 4, 3}, ms[2] = {3, 4};
    float q[18], v[24];
    test_rng r = {3};
    rng_fill(&r, q, 18, -1, 1);
    rng_fill(&r, v, 24, -1, 1);
    uint8_t m[12] = {1, 1, 0, 1, 0, 1, 1, 1, 1, 0, 0, 1};
    clmha_tensor *tq = test_tensor_f32(ctx, 4, qs, q), *tv = test_tensor_f32(ctx, 4, vs, v);
    clmha_tensor *tm = test_tensor_u8(ctx, 2, ms, m), *to = test_tensor_f32(ctx, 4, qs, NULL);
    int sr;
    size_t ss[CLMHA_MAX_RANK];
    assert_ok(clmha_layer_scores_shape(l, tq, tv, NULL, &sr, ss));
    clmha_tensor *tp = test_tensor_f32(ctx, sr, ss, NULL);
    clmha_call_args a;
    clmha_call_args_init(&a);
    a.query = tq, a.value = tv, a.attention_mask = tm, a.output = to, a.attention_scores = tp;
    a.training = true;
    assert_ok(clmha_layer_call(l, &a));
    float out[18];
    assert_ok(clmha_tensor_read(to, out, sizeof out));
    for (int i = 0; i < 18; i++)
        assert_true(out[i] == out[i]); /* finite: every value written */
    clmha_tensor_release(tq), clmha_tensor_release(tv), clmha_tensor_release(tm);
    clmha_tensor_release(to), clmha_tensor_release(tp);
    clmha_layer_release(l);
}

/* A cache from clmha_layer_create_cache (zeroed by fill.cl) gives the same output, bit for bit,
 * as a cache the host wrote zeros into: a causal prompt of 3 into a cache of 5. Self-attention
 * with 2 heads of 2, so the own GEMM projects query, key and value in one launch (gemm_qkv4). */
static void test_small_fresh_cache(void **state) {
    (void)state;
    if (!selected(SMALL_CASES + SINGLE_CASES + 1)) {
        return;
    }
    clmha_layer_config cfg;
    clmha_layer_config_init(&cfg);
    cfg.num_heads = 2, cfg.key_dim = 2, cfg.seed = 9;
    clmha_layer *l = NULL;
    assert_ok(clmha_layer_create(ctx, &cfg, 4, 4, 0, &l));
    size_t xs[3] = {2, 3, 4}, cs[5] = {2, 2, 5, 2, 2};
    float x[24], zeros[80] = {0}, out[2][24], cache[2][80];
    test_rng r = {5};
    rng_fill(&r, x, 24, -1, 1);
    clmha_tensor *tx = test_tensor_f32(ctx, 3, xs, x), *to = test_tensor_f32(ctx, 3, xs, NULL);
    clmha_tensor *fresh = NULL, *host = test_tensor_f32(ctx, 5, cs, zeros);
    assert_ok(clmha_layer_create_cache(l, 2, 5, &fresh));
    clmha_tensor *caches[2] = {fresh, host};
    for (int i = 0; i < 2; i++) {
        clmha_call_args a;
        clmha_call_args_init(&a);
        a.query = tx, a.value = tx, a.cache = caches[i], a.output = to, a.causal = true;
        a.has_cache_update_index = true, a.cache_update_index = 0;
        assert_ok(clmha_layer_call(l, &a));
        assert_ok(clmha_tensor_read(to, out[i], sizeof out[i]));
        assert_ok(clmha_tensor_read(caches[i], cache[i], sizeof cache[i]));
    }
    assert_memory_equal(out[0], out[1], sizeof out[0]);
    assert_memory_equal(cache[0], cache[1], sizeof cache[0]);
    for (int b = 0; b < 2; b++) { /* rows 3 and 4 of keys and values stay zero */
        for (int kv = 0; kv < 2; kv++) {
            for (int e = 12; e < 20; e++) {
                assert_true(cache[0][(b * 2 + kv) * 20 + e] == 0.0f);
            }
        }
    }
    clmha_tensor_release(tx), clmha_tensor_release(to);
    clmha_tensor_release(fresh), clmha_tensor_release(host);
    clmha_layer_release(l);
}

int main(int argc, char **argv) {
    if (argc == 2 && strcmp(argv[1], "--count") == 0) {
        printf("%d\n", CASE_COUNT);
        return 0;
    }
    if (argc == 2) {
        char *end = NULL;
        long v = strtol(argv[1], &end, 10);
        if (*argv[1] == '\0' || *end != '\0' || v < 0 || v >= CASE_COUNT) {
            fprintf(stderr, "usage: %s [--count | CASE (0 to %d)]\n", argv[0], CASE_COUNT - 1);
            return 2;
        }
        only_case = (int)v;
    } else if (argc > 2) {
        fprintf(stderr, "usage: %s [--count | CASE (0 to %d)]\n", argv[0], CASE_COUNT - 1);
        return 2;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_small_cases),
        cmocka_unit_test(test_small_single_query),
        cmocka_unit_test(test_small_gather_and_dropout),
        cmocka_unit_test(test_small_fresh_cache),
    };
    return cmocka_run_group_tests(tests, test_setup_context, test_teardown_context);
}
