/*
 * test_special.c - special values: NaN or Inf in an input reaches only the rows that use it;
 * large logits (scores near +-1e4) stay finite and match the float64 reference; garbage (NaN)
 * in cache positions not yet written never leaks into rows that mask them, nor does NaN in
 * masked keys inside the decode kernel's blocks of sixteen; a new cache from
 * clmha_layer_create_cache is zero-filled. And Keras's rules on every kernel: non-finite scores
 * (a NaN row), masks with a head dim, and fully masked rows (zeros, or the mean of the values on
 * Keras's fused path).
 */
#include "reference.h"
#include "fixture.h"
#include "support.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { B = 2, T = 4, S = 6, D = 8, H = 2, DK = 4 };

static clmha_layer *layer;

static int setup(void **state) {
    if (test_setup_context(state) != 0) {
        return -1;
    }
    clmha_layer_config cfg;
    clmha_layer_config_init(&cfg);
    cfg.num_heads = H, cfg.key_dim = DK, cfg.seed = 11;
    cfg.bias_initializer = clmha_initializer_default(CLMHA_INIT_RANDOM_NORMAL);
    assert_ok(clmha_layer_create(ctx, &cfg, D, D, 0, &layer));
    return 0;
}

static int teardown(void **state) {
    clmha_layer_release(layer);
    return test_teardown_context(state);
}

/* Runs a no-cache call; out is (B, T, D). */
static void run(const float *q, const float *v, float *out) {
    size_t qs[3] = {B, T, D}, vs[3] = {B, S, D};
    clmha_tensor *tq = test_tensor_f32(ctx, 3, qs, q), *tv = test_tensor_f32(ctx, 3, vs, v);
    clmha_tensor *to = test_tensor_f32(ctx, 3, qs, NULL);
    clmha_call_args a;
    clmha_call_args_init(&a);
    a.query = tq, a.value = tv, a.output = to;
    assert_ok(clmha_layer_call(layer, &a));
    assert_ok(clmha_tensor_read(to, out, B * T * D * sizeof(float)));
    clmha_tensor_release(tq), clmha_tensor_release(tv), clmha_tensor_release(to);
}

static void test_nan_stays_in_its_row(void **state) {
    (void)state;
    test_rng r = {1};
    float q[B * T * D], v[B * S * D], clean[B * T * D], out[B * T * D];
    rng_fill(&r, q, B * T * D, -1, 1);
    rng_fill(&r, v, B * S * D, -1, 1);
    run(q, v, clean);
    /* NaN in the query of row (b 1, t 2): only that output row is NaN. */
    q[(1 * T + 2) * D + 3] = NAN;
    run(q, v, out);
    for (size_t row = 0; row < B * T; row++) {
        for (size_t d = 0; d < D; d++) {
            float o = out[row * D + d];
            if (row == 1 * T + 2) {
                assert_true(isnan(o));
            } else {
                assert_close(o, clean[row * D + d], 1e-6);
            }
        }
    }
    q[(1 * T + 2) * D + 3] = 0.5f;
    /* Inf in value position 3 of batch 0: every row of batch 0 attends to it and turns
     * non-finite; batch 1 is untouched. */
    v[(0 * S + 3) * D + 1] = INFINITY;
    run(q, v, out);
    run(q, v, out);
    float ref1[B * T * D];
    memcpy(ref1, out, sizeof ref1);
    for (size_t t = 0; t < T; t++) {
        bool any = false;
        for (size_t d = 0; d < D; d++)
            any |= !isfinite(out[(0 * T + t) * D + d]);
        assert_true(any);
    }
    v[(0 * S + 3) * D + 1] = 0.25f;
    run(q, v, clean);
    for (size_t i = T * D; i < B * T * D; i++)
        assert_close(ref1[i], clean[i], 1e-6);
}

static void test_large_logits(void **state) {
    (void)state;
    /* Query and key projections of identity-like weights scaled so that scores reach +-1e4. */
    clmha_layer_config cfg;
    clmha_layer_config_init(&cfg);
    cfg.num_heads = 1, cfg.key_dim = D, cfg.seed = 2;
    clmha_layer *l = NULL;
    assert_ok(clmha_layer_create(ctx, &cfg, D, D, 0, &l));
    float eye[D * D], zeros[D], wv[D * D], wo[D * D];
    memset(eye, 0, sizeof eye);
    for (int i = 0; i < D; i++)
        eye[i * D + i] = 100.0f;
    memset(zeros, 0, sizeof zeros);
    test_rng r = {4};
    rng_fill(&r, wv, D * D, -0.5, 0.5);
    rng_fill(&r, wo, D * D, -0.5, 0.5);
    assert_ok(clmha_layer_set_weight(l, CLMHA_WEIGHT_QUERY_KERNEL, eye, D * D));
    assert_ok(clmha_layer_set_weight(l, CLMHA_WEIGHT_KEY_KERNEL, eye, D * D));
    assert_ok(clmha_layer_set_weight(l, CLMHA_WEIGHT_VALUE_KERNEL, wv, D * D));
    assert_ok(clmha_layer_set_weight(l, CLMHA_WEIGHT_OUTPUT_KERNEL, wo, D * D));
    float q[B * T * D], v[B * S * D], out[B * T * D], p[B * 1 * T * S];
    rng_fill(&r, q, B * T * D, -1, 1);
    rng_fill(&r, v, B * S * D, -1, 1);
    size_t qs[3] = {B, T, D}, vs[3] = {B, S, D}, ps[4] = {B, 1, T, S};
    clmha_tensor *tq = test_tensor_f32(ctx, 3, qs, q), *tv = test_tensor_f32(ctx, 3, vs, v);
    clmha_tensor *to = test_tensor_f32(ctx, 3, qs, NULL), *tp = test_tensor_f32(ctx, 4, ps, NULL);
    clmha_call_args a;
    clmha_call_args_init(&a);
    a.query = tq, a.value = tv, a.output = to, a.attention_scores = tp;
    assert_ok(clmha_layer_call(l, &a));
    assert_ok(clmha_tensor_read(to, out, sizeof out));
    assert_ok(clmha_tensor_read(tp, p, sizeof p));
    /* Reference with the same weights. */
    float bq[D], bk[D], bv[D], bo[D];
    assert_ok(clmha_layer_get_weight(l, CLMHA_WEIGHT_QUERY_BIAS, bq, D));
    assert_ok(clmha_layer_get_weight(l, CLMHA_WEIGHT_KEY_BIAS, bk, D));
    assert_ok(clmha_layer_get_weight(l, CLMHA_WEIGHT_VALUE_BIAS, bv, D));
    assert_ok(clmha_layer_get_weight(l, CLMHA_WEIGHT_OUTPUT_BIAS, bo, D));
    double ref[B * T * D], pref[B * T * S];
    ref_weights rw = {1, D, D, D, D, D, D, true, eye, bq, eye, bk, wv, bv, wo, bo};
    ref_call rc = {B,     T, q,    NULL, v,    S,     NULL, {0, 0, 0}, NULL, 0,
                   false, 0, NULL, ref,  pref, false, 0,    false,     NULL};
    assert_true(ref_forward(&rw, &rc));
    /* The largest |score| really is around 1e4. */
    double maxs = 0;
    for (size_t b = 0; b < B; b++)
        for (size_t t = 0; t < T; t++)
            for (size_t j = 0; j < S; j++) {
                double s = 0;
                for (size_t d = 0; d < D; d++)
                    s += 1e4 * q[(b * T + t) * D + d] * v[(b * S + j) * D + d];
                maxs = fmax(maxs, fabs(s / sqrt((double)D)));
            }
    assert_true(maxs > 2000);
    /* Near-one-hot softmax: float32 scores of magnitude 1e4 carry ~1e-3 absolute error, so
     * probabilities are compared with that in mind. */
    const tol_rule loose = {2e-3, 2e-3, 1e-6};
    assert_true(
        compare_close("large-logit output", out, ref, B * T * D, loose, "test_large_logits"));
    assert_true(
        compare_close("large-logit probabilities", p, pref, B * T * S, loose, "test_large_logits"));
    clmha_tensor_release(tq), clmha_tensor_release(tv), clmha_tensor_release(to);
    clmha_tensor_release(tp);
    clmha_layer_release(l);
}

static void test_cache_tail_garbage_does_not_leak(void **state) {
    (void)state;
    const size_t L = 9;
    test_rng r = {6};
    clmha_tensor *zero_cache = NULL;
    assert_ok(clmha_layer_create_cache(layer, B, L, &zero_cache));
    float *zc = test_read(zero_cache, NULL);
    for (size_t i = 0; i < B * 2 * L * H * DK; i++)
        assert_true(zc[i] == 0.0f); /* a new cache is zero-filled */
    /* The same cache but with NaN in every position not yet written. */
    size_t cs[5] = {B, 2, L, H, DK};
    float *garbage = malloc(B * 2 * L * H * DK * sizeof(float));
    for (size_t i = 0; i < B * 2 * L * H * DK; i++)
        garbage[i] = NAN;
    clmha_tensor *nan_cache = test_tensor_f32(ctx, 5, cs, garbage);
    /* Decode 4 tokens one at a time into each cache with a causal mask. */
    for (size_t step = 0; step < 4; step++) {
        float x[B * D], o1[B * D], o2[B * D];
        uint8_t m[B * L];
        rng_fill(&r, x, B * D, -1, 1);
        for (size_t b = 0; b < B; b++)
            for (size_t j = 0; j < L; j++)
                m[b * L + j] = j <= step;
        size_t xs[3] = {B, 1, D}, ms[3] = {B, 1, L};
        clmha_tensor *tx = test_tensor_f32(ctx, 3, xs, x), *tm = test_tensor_u8(ctx, 3, ms, m);
        clmha_tensor *to = test_tensor_f32(ctx, 3, xs, NULL);
        clmha_tensor *caches[2] = {zero_cache, nan_cache};
        float *outs[2] = {o1, o2};
        for (int c = 0; c < 2; c++) {
            clmha_call_args a;
            clmha_call_args_init(&a);
            a.query = tx, a.value = tx, a.attention_mask = tm, a.cache = caches[c], a.output = to;
            a.has_cache_update_index = true, a.cache_update_index = (int64_t)step;
            assert_ok(clmha_layer_call(layer, &a));
            assert_ok(clmha_tensor_read(to, outs[c], sizeof o1));
        }
        for (size_t i = 0; i < B * D; i++) {
            assert_true(isfinite(o2[i]));
            assert_true(o1[i] == o2[i]);
        }
        clmha_tensor_release(tx), clmha_tensor_release(tm), clmha_tensor_release(to);
    }
    free(zc), free(garbage);
    clmha_tensor_release(zero_cache), clmha_tensor_release(nan_cache);
    /* A layer with key_dim != value_dim cannot have a cache. */
    clmha_layer_config cfg;
    clmha_layer_config_init(&cfg);
    cfg.key_dim = 2, cfg.value_dim = 3;
    clmha_layer *l = NULL;
    clmha_tensor *t = NULL;
    assert_ok(clmha_layer_create(ctx, &cfg, 4, 4, 0, &l));
    assert_int_equal(clmha_layer_create_cache(l, 1, 4, &t), CLMHA_ERR_INVALID_ARGUMENT);
    clmha_layer_release(l);
}

/* CPUs' decode kernel (attention_heads) takes keys sixteen at a time when the head dims are
 * multiples of 16, each block with one running maximum and one vector exp. A block holding a
 * masked key goes key by key and never reads that key's row, so NaN there does not leak; and
 * scores thousands apart within a block stay finite and match the float64 reference (the block
 * maximum must be the true one, or e^(s - m) overflows). Other devices take the split kernel
 * for the same calls, held to the same results. */
static void test_blocks_of_sixteen_keys(void **state) {
    (void)state;
    enum { NB = 2, L = 48, NH = 2, KD = 16, DM = NH * KD, AT = 45 };
    clmha_layer_config cfg;
    clmha_layer_config_init(&cfg);
    cfg.num_heads = NH, cfg.key_dim = KD, cfg.seed = 12;
    cfg.bias_initializer = clmha_initializer_default(CLMHA_INIT_RANDOM_NORMAL);
    clmha_layer *l = NULL;
    assert_ok(clmha_layer_create(ctx, &cfg, DM, DM, 0, &l));
    /* Queries of about +-60 a dim (100 x the input), keys of +-150: scores thousands apart. */
    static float w[CLMHA_WEIGHT_COUNT][DM * DM];
    memset(w[CLMHA_WEIGHT_QUERY_KERNEL], 0, sizeof w[0]);
    for (int i = 0; i < DM; i++)
        w[CLMHA_WEIGHT_QUERY_KERNEL][i * DM + i] = 100.0f;
    assert_ok(clmha_layer_set_weight(l, CLMHA_WEIGHT_QUERY_KERNEL, w[CLMHA_WEIGHT_QUERY_KERNEL],
                                     DM * DM));
    for (int i = 0; i < CLMHA_WEIGHT_COUNT; i++)
        assert_ok(clmha_layer_get_weight(l, (clmha_weight)i, w[i], i % 2 ? DM : DM * DM));
    test_rng r = {7};
    float x[NB * DM];
    rng_fill(&r, x, NB * DM, -1, 1);
    /* Masked: keys 31 (the last of block 1), 33 and 40 of sequence 0; 15 and 16 (the ends of
     * two blocks) of sequence 1; 46 and 47 (not yet written) of both. */
    uint8_t m[NB * L];
    memset(m, 1, sizeof m);
    m[31] = m[33] = m[40] = m[L + 15] = m[L + 16] = 0;
    m[46] = m[47] = m[L + 46] = m[L + 47] = 0;
    static float cache[NB * 2 * L * DM], garbage[NB * 2 * L * DM];
    for (size_t b = 0; b < NB; b++)
        for (size_t kv = 0; kv < 2; kv++) {
            float *c = cache + (b * 2 + kv) * L * DM;
            rng_fill(&r, c, L * DM, kv ? -1.5 : -150, kv ? 1.5 : 150);
            for (size_t j = 0; j < L; j++)
                for (size_t d = 0; d < DM; d++) {
                    if (!m[b * L + j])
                        c[j * DM + d] = 0.0f;
                    garbage[((b * 2 + kv) * L + j) * DM + d] = m[b * L + j] ? c[j * DM + d] : NAN;
                }
        }
    size_t xs[3] = {NB, 1, DM}, ms[3] = {NB, 1, L}, cs[5] = {NB, 2, L, NH, KD};
    clmha_tensor *tx = test_tensor_f32(ctx, 3, xs, x), *tm = test_tensor_u8(ctx, 3, ms, m);
    clmha_tensor *to = test_tensor_f32(ctx, 3, xs, NULL);
    float out[2][NB * DM];
    const float *fills[2] = {cache, garbage};
    for (int c = 0; c < 2; c++) {
        clmha_tensor *tc = test_tensor_f32(ctx, 5, cs, fills[c]);
        clmha_call_args a;
        clmha_call_args_init(&a);
        a.query = tx, a.value = tx, a.attention_mask = tm, a.cache = tc, a.output = to;
        a.has_cache_update_index = true, a.cache_update_index = AT;
        assert_ok(clmha_layer_call(l, &a));
        assert_ok(clmha_tensor_read(to, out[c], sizeof out[c]));
        clmha_tensor_release(tc);
    }
    for (size_t i = 0; i < NB * DM; i++)
        assert_true(out[0][i] == out[1][i]);
    static double cache_new[NB * 2 * L * DM];
    double ref[NB * DM];
    ref_weights rw = {NH,   KD,   KD,   DM,   DM,   DM,   DM,   true,
                      w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]};
    ref_call rc = {NB,   1,  x,         NULL, x,    1,     m, {NB, 1, L}, cache, L,
                   true, AT, cache_new, ref,  NULL, false, 0, false,      NULL};
    assert_true(ref_forward(&rw, &rc));
    /* The scores of a block really are thousands apart. */
    double lo = INFINITY, hi = -INFINITY;
    for (size_t j = 0; j < 16; j++) {
        double s = 0;
        for (size_t d = 0; d < KD; d++)
            s += (100.0 * x[d] + w[CLMHA_WEIGHT_QUERY_BIAS][d]) * cache[j * DM + d];
        lo = fmin(lo, s / 4), hi = fmax(hi, s / 4);
    }
    assert_true(hi - lo > 2000);
    const tol_rule loose = {2e-3, 2e-3, 1e-6};
    assert_true(compare_close("sixteen-key blocks", out[0], ref, NB * DM, loose,
                              "test_blocks_of_sixteen_keys"));
    clmha_tensor_release(tx), clmha_tensor_release(tm), clmha_tensor_release(to);
    clmha_layer_release(l);
}

/* The three rule tests' layer: 2 heads of 16, inputs 32 wide, random biases, on a context with
 * settings @p tune; its weights read back into w (each 32 x 32 or 32). */
enum { SP_NH = 2, SP_KD = 16, SP_DM = SP_NH * SP_KD };
static clmha_layer *special_layer(const char *tune, int64_t seed, double dropout,
                                  clmha_fully_masked_rows mode, clmha_context **c,
                                  float w[CLMHA_WEIGHT_COUNT][SP_DM * SP_DM]) {
    *c = test_context_tuned(tune);
    clmha_layer_config cfg;
    clmha_layer_config_init(&cfg);
    cfg.num_heads = SP_NH, cfg.key_dim = SP_KD, cfg.seed = seed, cfg.dropout = dropout;
    cfg.fully_masked_rows = mode;
    cfg.bias_initializer = clmha_initializer_default(CLMHA_INIT_RANDOM_NORMAL);
    clmha_layer *l = NULL;
    assert_ok(clmha_layer_create(*c, &cfg, SP_DM, SP_DM, 0, &l));
    for (int i = 0; i < CLMHA_WEIGHT_COUNT; i++)
        assert_ok(clmha_layer_get_weight(l, (clmha_weight)i, w[i], i % 2 ? SP_DM : SP_DM * SP_DM));
    return l;
}

/* Non-finite scores, as Keras gives them on both of its paths (the softmax of a row with a NaN
 * or +Inf score is NaN; masked keys are replaced before the softmax, so they never count; a
 * -Inf score weighs 0): a row with an unmasked NaN or +Inf score has a NaN output and its
 * probabilities are NaN at every unmasked key and 0 at the masked ones. The same on every kernel
 * (the settings below reach each), with the probabilities asked for or not, for one query and
 * several. Scores: head dim 16 (the CPU kernels' blocks of sixteen keys), queries whose
 * element 3 is 1 in both heads; in a static cache, batch 0's key 7 of head 1 has +Inf there
 * (score +Inf), batch 1's key 5 of head 0 -Inf (score -Inf, weight 0) and its key 11 of head 1
 * is NaN. With T > 1 the last query of batch 0 masks key 7 and the first of batch 1 masks key
 * 11: those rows stay finite and match the float64 reference. */
static void nonfinite_case(const char *tune, size_t T1, bool scores) {
    enum { NB = 2, NS = 40, NH = 2, KD = 16, DM = NH * KD, D0 = 3 };
    clmha_context *c = NULL;
    static float w[CLMHA_WEIGHT_COUNT][SP_DM * SP_DM];
    clmha_layer *l = special_layer(tune, 21, 0.0, CLMHA_FULLY_MASKED_KERAS, &c, w);
    for (int h = 0; h < NH; h++) { /* query element D0 of each head is 1 */
        for (int i = 0; i < DM; i++)
            w[CLMHA_WEIGHT_QUERY_KERNEL][i * DM + h * KD + D0] = 0.0f;
        w[CLMHA_WEIGHT_QUERY_BIAS][h * KD + D0] = 1.0f;
    }
    assert_ok(clmha_layer_set_weight(l, CLMHA_WEIGHT_QUERY_KERNEL, w[CLMHA_WEIGHT_QUERY_KERNEL],
                                     DM * DM));
    assert_ok(clmha_layer_set_weight(l, CLMHA_WEIGHT_QUERY_BIAS, w[CLMHA_WEIGHT_QUERY_BIAS], DM));
    test_rng r = {31};
    float x[NB * 5 * DM];
    static float cache[NB * 2 * NS * DM], ref_cache[NB * 2 * NS * DM];
    rng_fill(&r, x, NB * T1 * DM, -1, 1);
    rng_fill(&r, cache, NB * 2 * NS * DM, -1, 1);
#define KEY(b, j, h) (cache + (((b)*2 + 0) * NS + (j)) * DM + (h)*KD)
    memset(KEY(0, 7, 1), 0, KD * sizeof(float));
    KEY(0, 7, 1)[D0] = INFINITY;
    KEY(1, 5, 0)[D0] = -INFINITY;
    for (int d = 0; d < KD; d++)
        KEY(1, 11, 1)[d] = NAN;
#undef KEY
    memcpy(ref_cache, cache, sizeof cache);
    memset(ref_cache + ((0 * 2) * NS + 7) * DM + KD, 0, KD * sizeof(float));
    ref_cache[((1 * 2) * NS + 5) * DM + D0] = -1e30f; /* weight 0 in double too */
    memset(ref_cache + ((1 * 2) * NS + 11) * DM + KD, 0, KD * sizeof(float));
    uint8_t m[NB * 5 * NS];
    memset(m, 1, sizeof m);
    if (T1 > 1) {
        m[(0 * T1 + (T1 - 1)) * NS + 7] = 0;
        m[(1 * T1 + 0) * NS + 11] = 0;
    }
    size_t xs[3] = {NB, T1, DM}, ms[3] = {NB, T1, NS}, cs[5] = {NB, 2, NS, NH, KD};
    size_t ps[4] = {NB, NH, T1, NS};
    clmha_tensor *tx = test_tensor_f32(c, 3, xs, x), *tm = test_tensor_u8(c, 3, ms, m);
    clmha_tensor *tc = test_tensor_f32(c, 5, cs, cache), *to = test_tensor_f32(c, 3, xs, NULL);
    clmha_tensor *tp = scores ? test_tensor_f32(c, 4, ps, NULL) : NULL;
    clmha_call_args a;
    clmha_call_args_init(&a);
    a.query = tx, a.cache = tc, a.attention_mask = tm, a.output = to, a.attention_scores = tp;
    assert_ok(clmha_layer_call(l, &a));
    float out[NB * 5 * DM], p[NB * NH * 5 * NS];
    assert_ok(clmha_tensor_read(to, out, NB * T1 * DM * sizeof(float)));
    if (tp)
        assert_ok(clmha_tensor_read(tp, p, NB * NH * T1 * NS * sizeof(float)));
    static double ref[NB * 5 * DM], pref[NB * NH * 5 * NS], cache_new[NB * 2 * NS * DM];
    ref_weights rw = {NH,   KD,   KD,   DM,   DM,   DM,   DM,   true,
                      w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]};
    ref_call rc = {NB,    T1, x,         NULL, NULL, 0,     m, {NB, T1, NS}, ref_cache, NS,
                   false, 0,  cache_new, ref,  pref, false, 0, false,        NULL};
    assert_true(ref_forward(&rw, &rc));
    char where[160];
    snprintf(where, sizeof where, "nonfinite_case(\"%s\", T %zu, scores %d)", tune, T1, scores);
    for (size_t b = 0; b < NB; b++) {
        for (size_t t = 0; t < T1; t++) {
            const bool masked = T1 > 1 && (b == 0 ? t == T1 - 1 : t == 0);
            for (size_t d = 0; d < DM; d++) {
                const float o = out[(b * T1 + t) * DM + d];
                if (masked ? !(isfinite(o) && fabs(o - ref[(b * T1 + t) * DM + d]) <
                                                  1e-4 * (1 + fabs(ref[(b * T1 + t) * DM + d])))
                           : !isnan(o)) {
                    print_error("%s: output (%zu, %zu, %zu) is %g; expected %s%g\n", where, b, t, d,
                                (double)o, masked ? "" : "NaN, not ", ref[(b * T1 + t) * DM + d]);
                    fail();
                }
            }
            for (size_t h = 0; tp && h < NH; h++) {
                for (size_t j = 0; j < NS; j++) {
                    const size_t i = ((b * NH + h) * T1 + t) * NS + j;
                    const bool nan_row = h == 1 && !masked;
                    const bool key_masked = m[(b * T1 + t) * NS + j] == 0;
                    const bool ok = nan_row ? (key_masked ? p[i] == 0.0f : isnan(p[i]))
                                            : fabs(p[i] - pref[i]) < 1e-5;
                    if (!ok) {
                        print_error("%s: probability (%zu, %zu, %zu, %zu) is %g, reference %g\n",
                                    where, b, h, t, j, (double)p[i], pref[i]);
                        fail();
                    }
                }
            }
        }
    }
    clmha_tensor_release(tx), clmha_tensor_release(tm), clmha_tensor_release(tc);
    clmha_tensor_release(to), clmha_tensor_release(tp);
    clmha_layer_release(l);
    clmha_context_release(c);
}

static void test_nonfinite_scores(void **state) {
    (void)state;
    /* The device's row (CPUs: all heads for T = 1, query tiles for T > 1, blocks of sixteen),
     * the split kernel alone, the same in many chunks (merged), the GPU row's kernels (split
     * and query tiles, lanes a row), and attention_rows (split=0). */
    const char *tunes[] = {"",
                           "heads=0,tile=0",
                           "heads=0,tile=0,split_chunk=4",
                           "split_chunk=4",
                           "row=gpu",
                           "row=gpu,tile=0,split_chunk=4",
                           "split=0"};
    for (size_t i = 0; i < sizeof tunes / sizeof tunes[0]; i++) {
        for (size_t t = 1; t <= 5; t += 4) {
            nonfinite_case(tunes[i], t, false);
            nonfinite_case(tunes[i], t, true);
        }
    }
}

/* Masks with a head dim, (B, H, T, S) and (1, H, 1, S) as Keras takes them, on every kernel
 * (the all-heads decode kernel reads one mask row for all heads, so such calls take the split
 * kernel): each head attends where its own mask says, against the float64 reference. */
static void head_mask_case(const char *tune, size_t T1, bool scores, bool broadcast) {
    enum { NB = 2, NS = 40, NH = 2, KD = 16, DM = NH * KD };
    clmha_context *c = NULL;
    static float w[CLMHA_WEIGHT_COUNT][SP_DM * SP_DM];
    clmha_layer *l = special_layer(tune, 23, 0.0, CLMHA_FULLY_MASKED_KERAS, &c, w);
    test_rng r = {37};
    float x[NB * 5 * DM];
    static float cache[NB * 2 * NS * DM];
    rng_fill(&r, x, NB * T1 * DM, -1, 1);
    rng_fill(&r, cache, NB * 2 * NS * DM, -1, 1);
    const size_t mb = broadcast ? 1 : NB, mt = broadcast ? 1 : T1;
    uint8_t m[NB * NH * 5 * NS];
    for (size_t i = 0; i < mb * NH * mt * NS; i++)
        m[i] = rng_uniform(&r) < 0.6 || i % NS == (i / NS) % NS; /* each row keeps a key */
    size_t xs[3] = {NB, T1, DM}, ms[4] = {mb, NH, mt, NS}, cs[5] = {NB, 2, NS, NH, KD};
    size_t ps[4] = {NB, NH, T1, NS};
    clmha_tensor *tx = test_tensor_f32(c, 3, xs, x), *tm = test_tensor_u8(c, 4, ms, m);
    clmha_tensor *tc = test_tensor_f32(c, 5, cs, cache), *to = test_tensor_f32(c, 3, xs, NULL);
    clmha_tensor *tp = scores ? test_tensor_f32(c, 4, ps, NULL) : NULL;
    clmha_call_args a;
    clmha_call_args_init(&a);
    a.query = tx, a.cache = tc, a.attention_mask = tm, a.output = to, a.attention_scores = tp;
    assert_ok(clmha_layer_call(l, &a));
    float out[NB * 5 * DM], p[NB * NH * 5 * NS];
    assert_ok(clmha_tensor_read(to, out, NB * T1 * DM * sizeof(float)));
    static double ref[NB * 5 * DM], pref[NB * NH * 5 * NS], cache_new[NB * 2 * NS * DM];
    ref_weights rw = {NH,   KD,   KD,   DM,   DM,   DM,   DM,   true,
                      w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]};
    ref_call rc = {NB,    T1, x,         NULL, NULL, 0,     m,  {mb, mt, NS}, cache, NS,
                   false, 0,  cache_new, ref,  pref, false, NH, false,        NULL};
    assert_true(ref_forward(&rw, &rc));
    char where[160];
    snprintf(where, sizeof where, "head_mask_case(\"%s\", T %zu, scores %d, broadcast %d)", tune,
             T1, scores, broadcast);
    assert_true(compare_close("output", out, ref, NB * T1 * DM, TOL_F32, where));
    if (tp) {
        assert_ok(clmha_tensor_read(tp, p, NB * NH * T1 * NS * sizeof(float)));
        assert_true(compare_close("probabilities", p, pref, NB * NH * T1 * NS, TOL_F32, where));
    }
    clmha_tensor_release(tx), clmha_tensor_release(tm), clmha_tensor_release(tc);
    clmha_tensor_release(to), clmha_tensor_release(tp);
    clmha_layer_release(l);
    clmha_context_release(c);
}

static void test_head_masks(void **state) {
    (void)state;
    const char *tunes[] = {"", "heads=0,tile=0,split_chunk=4", "row=gpu",
                           "row=gpu,tile=0,split_chunk=4", "split=0"};
    for (size_t i = 0; i < sizeof tunes / sizeof tunes[0]; i++) {
        for (size_t t = 1; t <= 5; t += 4) {
            for (int bc = 0; bc < 2; bc++) {
                head_mask_case(tunes[i], t, false, bc != 0);
                head_mask_case(tunes[i], t, true, bc != 0);
            }
        }
    }
}

/* Fully masked rows: with fully_masked_rows = ZEROS, and on Keras's explicit path (scores
 * asked for, or a layer with dropout), the attention output is 0 (the layer's output its output
 * bias: the reference's rule); with KERAS on the fused path it is the mean of the S value rows,
 * computed here from the cache. On every kernel (the settings reach each), T = 1 and 5. */
static void masked_rows_case(const char *tune, size_t T1, clmha_fully_masked_rows mode, bool scores,
                             double dropout) {
    enum { NB = 2, NS = 40, NH = 2, KD = 16, DM = NH * KD };
    clmha_context *c = NULL;
    static float w[CLMHA_WEIGHT_COUNT][SP_DM * SP_DM];
    clmha_layer *l = special_layer(tune, 29, dropout, mode, &c, w);
    test_rng r = {41};
    float x[NB * 5 * DM];
    static float cache[NB * 2 * NS * DM];
    rng_fill(&r, x, NB * T1 * DM, -1, 1);
    rng_fill(&r, cache, NB * 2 * NS * DM, -1, 1);
    uint8_t m[NB * 5 * NS];
    for (size_t i = 0; i < NB * T1 * NS; i++)
        m[i] = rng_uniform(&r) < 0.5 || i % NS == 0;
    /* Rows (0, 0) and (1, T - 1) attend to nothing. */
    memset(m, 0, NS);
    memset(m + (1 * T1 + T1 - 1) * NS, 0, NS);
    size_t xs[3] = {NB, T1, DM}, ms[3] = {NB, T1, NS}, cs[5] = {NB, 2, NS, NH, KD};
    size_t ps[4] = {NB, NH, T1, NS};
    clmha_tensor *tx = test_tensor_f32(c, 3, xs, x), *tm = test_tensor_u8(c, 3, ms, m);
    clmha_tensor *tc = test_tensor_f32(c, 5, cs, cache), *to = test_tensor_f32(c, 3, xs, NULL);
    clmha_tensor *tp = scores ? test_tensor_f32(c, 4, ps, NULL) : NULL;
    clmha_call_args a;
    clmha_call_args_init(&a);
    a.query = tx, a.cache = tc, a.attention_mask = tm, a.output = to, a.attention_scores = tp;
    assert_ok(clmha_layer_call(l, &a));
    float out[NB * 5 * DM];
    assert_ok(clmha_tensor_read(to, out, NB * T1 * DM * sizeof(float)));
    static double ref[NB * 5 * DM], pref[NB * NH * 5 * NS], cache_new[NB * 2 * NS * DM];
    ref_weights rw = {NH,   KD,   KD,   DM,   DM,   DM,   DM,   true,
                      w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]};
    ref_call rc = {NB,    T1, x,         NULL, NULL, 0,     m, {NB, T1, NS}, cache, NS,
                   false, 0,  cache_new, ref,  pref, false, 0, false,        NULL};
    assert_true(ref_forward(&rw, &rc));
    const bool mean = mode == CLMHA_FULLY_MASKED_KERAS && !scores && dropout == 0.0;
    for (size_t b = 0; mean && b < NB; b++) {
        const size_t t = b == 0 ? 0 : T1 - 1;
        for (size_t n = 0; n < DM; n++) { /* bo + sum over heads of mean(v) . Wo */
            double y = w[CLMHA_WEIGHT_OUTPUT_BIAS][n];
            for (size_t h = 0; h < NH; h++)
                for (size_t d = 0; d < KD; d++) {
                    double mv = 0;
                    for (size_t j = 0; j < NS; j++)
                        mv += cache[((b * 2 + 1) * NS + j) * DM + h * KD + d];
                    y += mv / NS * w[CLMHA_WEIGHT_OUTPUT_KERNEL][(h * KD + d) * DM + n];
                }
            ref[(b * T1 + t) * DM + n] = y;
        }
    }
    char where[200];
    snprintf(where, sizeof where, "masked_rows_case(\"%s\", T %zu, mode %d, scores %d, dropout %g)",
             tune, T1, (int)mode, scores, dropout);
    assert_true(compare_close("output", out, ref, NB * T1 * DM, TOL_F32, where));
    clmha_tensor_release(tx), clmha_tensor_release(tm), clmha_tensor_release(tc);
    clmha_tensor_release(to), clmha_tensor_release(tp);
    clmha_layer_release(l);
    clmha_context_release(c);
}

static void test_fully_masked_rows(void **state) {
    (void)state;
    /* Every kernel, and with max_item_loops=32 the mean of a fully masked row in three launches
     * (a work-item's loop budget). */
    const char *tunes[] = {"",
                           "heads=0,tile=0,split_chunk=4",
                           "row=gpu",
                           "row=gpu,tile=0,split_chunk=4",
                           "split=0",
                           "tail=0",
                           "max_item_loops=32"};
    for (size_t i = 0; i < sizeof tunes / sizeof tunes[0]; i++) {
        for (size_t t = 1; t <= 5; t += 4) {
            masked_rows_case(tunes[i], t, CLMHA_FULLY_MASKED_KERAS, false, 0.0);
            masked_rows_case(tunes[i], t, CLMHA_FULLY_MASKED_ZEROS, false, 0.0);
            masked_rows_case(tunes[i], t, CLMHA_FULLY_MASKED_KERAS, true, 0.0);
            masked_rows_case(tunes[i], t, CLMHA_FULLY_MASKED_KERAS, false, 0.5);
        }
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nan_stays_in_its_row),
        cmocka_unit_test(test_large_logits),
        cmocka_unit_test(test_cache_tail_garbage_does_not_leak),
        cmocka_unit_test(test_blocks_of_sixteen_keys),
        cmocka_unit_test(test_nonfinite_scores),
        cmocka_unit_test(test_head_masks),
        cmocka_unit_test(test_fully_masked_rows),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
