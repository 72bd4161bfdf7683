/*
 * test_dropout.c - dropout in training mode, observed exactly: with identity value and output
 * projections and one-hot value rows, each output row is the vector of kept-and-scaled
 * probabilities, so every dropout decision can be read. Checks: kept values equal p / (1 -
 * rate) and dropped ones 0; the kept fraction over >= 10^5 draws is within 4 sigma of
 * 1 - rate; every decision equals the one predicted on the host by Random123's
 * philox4x32-10 (an independent implementation of the generator in the kernel); the same seed
 * and call counter give identical outputs, successive calls different ones; training = false
 * (or rate 0) is bit-identical to inference.
 */
#include "fixture.h"
#include "support.h"

#include <Random123/philox.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { S = 64, T = 256, DK = 8, DQ = 12 };

/* A one-head layer whose value and output projections are identities. */
static clmha_layer *make_layer(double rate, int64_t seed) {
    clmha_layer_config cfg;
    clmha_layer_config_init(&cfg);
    cfg.num_heads = 1, cfg.key_dim = DK, cfg.value_dim = S, cfg.dropout = rate, cfg.seed = seed;
    cfg.output_rank = 1, cfg.output_shape[0] = S;
    clmha_layer *l = NULL;
    assert_ok(clmha_layer_create(ctx, &cfg, DQ, S, DQ, &l));
    static float eye[S * S], zeros[S];
    for (int i = 0; i < S; i++)
        eye[i * S + i] = 1.0f;
    assert_ok(clmha_layer_set_weight(l, CLMHA_WEIGHT_VALUE_KERNEL, eye, S * S));
    assert_ok(clmha_layer_set_weight(l, CLMHA_WEIGHT_VALUE_BIAS, zeros, S));
    assert_ok(clmha_layer_set_weight(l, CLMHA_WEIGHT_OUTPUT_KERNEL, eye, S * S));
    assert_ok(clmha_layer_set_weight(l, CLMHA_WEIGHT_OUTPUT_BIAS, zeros, S));
    return l;
}

typedef struct io {
    clmha_tensor *q, *k, *v, *o, *p;
} io;

static io make_io(void) {
    test_rng r = {77};
    static float q[T * DQ], k[S * DQ], v[S * S];
    rng_fill(&r, q, T * DQ, -1, 1);
    rng_fill(&r, k, S * DQ, -1, 1);
    memset(v, 0, sizeof v);
    for (int j = 0; j < S; j++)
        v[j * S + j] = 1.0f; /* value row j is e_j */
    size_t qs[3] = {1, T, DQ}, ks[3] = {1, S, DQ}, vs[3] = {1, S, S}, os[3] = {1, T, S};
    size_t ps[4] = {1, 1, T, S};
    io x = {test_tensor_f32(ctx, 3, qs, q), test_tensor_f32(ctx, 3, ks, k),
            test_tensor_f32(ctx, 3, vs, v), test_tensor_f32(ctx, 3, os, NULL),
            test_tensor_f32(ctx, 4, ps, NULL)};
    return x;
}

static void free_io(io *x) {
    clmha_tensor_release(x->q), clmha_tensor_release(x->k), clmha_tensor_release(x->v);
    clmha_tensor_release(x->o), clmha_tensor_release(x->p);
}

static void call(clmha_layer *l, io *x, bool training, float *out, float *probs) {
    clmha_call_args a;
    clmha_call_args_init(&a);
    a.query = x->q, a.key = x->k, a.value = x->v, a.output = x->o, a.attention_scores = x->p;
    a.training = training;
    assert_ok(clmha_layer_call(l, &a));
    assert_ok(clmha_tensor_read(x->o, out, T * S * sizeof(float)));
    if (probs != NULL) {
        assert_ok(clmha_tensor_read(x->p, probs, T * S * sizeof(float)));
    }
}

/* The kernel's decision for (row, key, call): keep iff the first Philox word, as a float
 * scaled by 2^-32, is at least the rate. */
static bool host_keep(uint64_t seed, uint32_t counter, uint64_t row, uint32_t j, float rate) {
    philox4x32_ctr_t c = {{j, (uint32_t)row, (uint32_t)(row >> 32), counter}};
    philox4x32_key_t k = {{(uint32_t)seed, (uint32_t)(seed >> 32)}};
    philox4x32_ctr_t x = philox4x32(c, k);
    return (float)x.v[0] * 2.3283064365386963e-10f >= rate;
}

static void test_dropout_statistics_and_exactness(void **state) {
    (void)state;
    const double rates[] = {0.1, 0.5, 0.9};
    static float out[T * S], probs[T * S];
    io x = make_io();
    for (size_t ri = 0; ri < 3; ri++) {
        const double rate = rates[ri];
        const uint64_t seed = 1000 + ri;
        clmha_layer *l = make_layer(rate, (int64_t)seed);
        size_t kept = 0, total = 0, mismatches = 0;
        const float scale = (float)(1.0 / (1.0 - rate));
        for (uint32_t callno = 0; callno < 8; callno++) {
            call(l, &x, true, out, probs);
            for (size_t t = 0; t < T; t++) {
                for (size_t j = 0; j < S; j++) {
                    float p = probs[t * S + j], o = out[t * S + j];
                    bool keep = o != 0.0f;
                    if (keep && fabs(o - p * scale) > 1e-6 * fabs(p * scale) + 1e-12) {
                        print_error("rate %g: kept value %g, expected p / (1 - rate) = %g\n", rate,
                                    o, p * scale);
                        fail();
                    }
                    if (keep != host_keep(seed, callno, t, (uint32_t)j, (float)rate)) {
                        mismatches++;
                    }
                    kept += keep;
                    total++;
                }
            }
        }
        double expect = 1.0 - rate, frac = (double)kept / (double)total;
        double sigma = sqrt(expect * rate / (double)total);
        print_message("rate %.1f: kept %.5f of %zu draws (expected %.5f +- %.5f), %zu decisions "
                      "differ from the host's Philox\n",
                      rate, frac, total, expect, 4 * sigma, mismatches);
        assert_true(total >= 100000);
        assert_true(fabs(frac - expect) <= 4 * sigma);
        assert_int_equal(mismatches, 0);
        clmha_layer_release(l);
    }
    free_io(&x);
}

static void test_dropout_reproducible(void **state) {
    (void)state;
    static float a[T * S], b[T * S], c[T * S], inf[T * S], plain[T * S];
    io x = make_io();
    clmha_layer *l1 = make_layer(0.3, 5), *l2 = make_layer(0.3, 5), *l3 = make_layer(0.0, 5);
    call(l1, &x, true, a, NULL);
    call(l2, &x, true, b, NULL);
    assert_memory_equal(a, b, sizeof a); /* same seed, same counter */
    call(l1, &x, true, c, NULL);
    assert_memory_not_equal(a, c, sizeof a); /* the counter moved on */
    call(l1, &x, false, inf, NULL);          /* inference: no dropout ... */
    call(l3, &x, false, plain, NULL);        /* ... bit-identical to rate 0 */
    assert_memory_equal(inf, plain, sizeof inf);
    call(l3, &x, true, c, NULL); /* rate 0 in training: no dropout either */
    assert_memory_equal(c, plain, sizeof c);
    clmha_layer_release(l1), clmha_layer_release(l2), clmha_layer_release(l3);
    free_io(&x);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dropout_statistics_and_exactness),
        cmocka_unit_test(test_dropout_reproducible),
    };
    return cmocka_run_group_tests(tests, test_setup_context, test_teardown_context);
}
