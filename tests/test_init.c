/*
 * test_init.c - the initializers: each distribution's mean, variance and bounds within
 * statistical tolerance (4 standard errors) using Keras's fan rules for the query kernel
 * (fan_in Dq, fan_out H*dk) and the output kernel (fan_in H*dv, fan_out prod(output_shape));
 * the same seed gives identical weights twice, another seed different ones; biases default to
 * zeros; constant, ones and zeros are exact.
 */
#include "fixture.h"
#include "support.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { DQ = 200, H = 4, DK = 48, N = 30 };
#define QN ((size_t)DQ * H * DK) /* query kernel size */
#define ON ((size_t)H * DK * N)  /* output kernel size */

static float *weights(clmha_initializer kinit, int64_t seed, clmha_weight which, size_t n) {
    clmha_layer_config cfg;
    clmha_layer_config_init(&cfg);
    cfg.num_heads = H;
    cfg.key_dim = DK;
    cfg.output_rank = 1;
    cfg.output_shape[0] = N;
    cfg.kernel_initializer = kinit;
    cfg.bias_initializer = kinit;
    cfg.seed = seed;
    clmha_layer *layer = NULL;
    assert_ok(clmha_layer_create(ctx, &cfg, DQ, DQ, 0, &layer));
    float *w = malloc(n * sizeof(float));
    assert_ok(clmha_layer_get_weight(layer, which, w, n));
    clmha_layer_release(layer);
    return w;
}

/* Checks sample mean and variance against the distribution's, and the support bounds. */
static void check_stats(const float *w, size_t n, double mean, double var, double lo, double hi,
                        const char *what) {
    double s = 0, s2 = 0, mn = INFINITY, mx = -INFINITY;
    for (size_t i = 0; i < n; i++) {
        s += w[i];
        mn = fmin(mn, w[i]);
        mx = fmax(mx, w[i]);
    }
    double m = s / (double)n;
    for (size_t i = 0; i < n; i++) {
        s2 += (w[i] - m) * (w[i] - m);
    }
    double v = s2 / (double)(n - 1);
    double se_mean = sqrt(var / (double)n);
    /* Standard error of the variance, bounded by the normal case (kurtosis <= 3 here). */
    double se_var = var * sqrt(2.0 / (double)(n - 1));
    if (fabs(m - mean) > 4 * se_mean + 1e-12 || fabs(v - var) > 4 * se_var ||
        mn < lo - 1e-6 * fabs(lo) || mx > hi + 1e-6 * fabs(hi)) {
        print_error("%s: mean %.6g (want %.6g +- %.3g), var %.6g (want %.6g +- %.3g), range "
                    "[%.6g, %.6g] (want within [%.6g, %.6g])\n",
                    what, m, mean, 4 * se_mean, v, var, 4 * se_var, mn, mx, lo, hi);
        fail();
    }
    /* The bounds are nearly reached: the support is not narrower than it should be. */
    if (isfinite(lo) && isfinite(hi)) {
        assert_true(mn < lo + 0.05 * (hi - lo));
        assert_true(mx > hi - 0.05 * (hi - lo));
    }
}

/* Variance of a unit normal truncated to [-2, 2]. */
static const double TRUNC_VAR = 0.7737413;

static void test_variance_scaling_family(void **state) {
    (void)state;
    const double fin_q = DQ, fout_q = H * DK, fin_o = H * DK, fout_o = N;
    struct {
        clmha_init_kind kind;
        const char *name;
    } kinds[] = {
        {CLMHA_INIT_GLOROT_UNIFORM, "glorot_uniform"}, {CLMHA_INIT_GLOROT_NORMAL, "glorot_normal"},
        {CLMHA_INIT_HE_UNIFORM, "he_uniform"},         {CLMHA_INIT_HE_NORMAL, "he_normal"},
        {CLMHA_INIT_LECUN_UNIFORM, "lecun_uniform"},   {CLMHA_INIT_LECUN_NORMAL, "lecun_normal"}};
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        for (int o = 0; o < 2; o++) {
            double fin = o ? fin_o : fin_q, fout = o ? fout_o : fout_q;
            double scale_n = kinds[k].kind <= CLMHA_INIT_GLOROT_NORMAL ? (fin + fout) / 2.0 : fin;
            double factor = (kinds[k].kind == CLMHA_INIT_LECUN_UNIFORM ||
                             kinds[k].kind == CLMHA_INIT_LECUN_NORMAL)
                                ? 1.0
                                : (kinds[k].kind <= CLMHA_INIT_GLOROT_NORMAL ? 1.0 : 2.0);
            /* Keras: variance scale / n with scale 1 (glorot, with n the mean fan; lecun) or 2
             * (he). */
            double var = factor / scale_n;
            size_t n = o ? ON : QN;
            float *w = weights(clmha_initializer_default(kinds[k].kind), 42,
                               o ? CLMHA_WEIGHT_OUTPUT_KERNEL : CLMHA_WEIGHT_QUERY_KERNEL, n);
            char what[64];
            snprintf(what, sizeof what, "%s %s kernel", kinds[k].name, o ? "output" : "query");
            bool uniform = kinds[k].kind == CLMHA_INIT_GLOROT_UNIFORM ||
                           kinds[k].kind == CLMHA_INIT_HE_UNIFORM ||
                           kinds[k].kind == CLMHA_INIT_LECUN_UNIFORM;
            double lim = uniform ? sqrt(3.0 * var) : 2.0 * sqrt(var / TRUNC_VAR);
            check_stats(w, n, 0.0, var, -lim, lim, what);
            free(w);
        }
    }
}

static void test_plain_distributions(void **state) {
    (void)state;
    clmha_initializer u = clmha_initializer_default(CLMHA_INIT_RANDOM_UNIFORM);
    float *w = weights(u, 7, CLMHA_WEIGHT_QUERY_KERNEL, QN);
    check_stats(w, QN, 0.0, 0.1 * 0.1 / 12.0, -0.05, 0.05, "random_uniform default");
    free(w);
    u.minval = 1.0, u.maxval = 3.0;
    w = weights(u, 7, CLMHA_WEIGHT_QUERY_KERNEL, QN);
    check_stats(w, QN, 2.0, 4.0 / 12.0, 1.0, 3.0, "random_uniform [1, 3]");
    free(w);
    clmha_initializer nrm = clmha_initializer_default(CLMHA_INIT_RANDOM_NORMAL);
    nrm.mean = 0.5, nrm.stddev = 2.0;
    w = weights(nrm, 8, CLMHA_WEIGHT_QUERY_KERNEL, QN);
    check_stats(w, QN, 0.5, 4.0, -INFINITY, INFINITY, "random_normal (0.5, 2)");
    free(w);
    clmha_initializer tn = clmha_initializer_default(CLMHA_INIT_TRUNCATED_NORMAL);
    w = weights(tn, 9, CLMHA_WEIGHT_QUERY_KERNEL, QN);
    check_stats(w, QN, 0.0, 0.05 * 0.05 * TRUNC_VAR, -0.1, 0.1, "truncated_normal default");
    free(w);
    tn.mean = -1.0, tn.stddev = 0.5;
    w = weights(tn, 9, CLMHA_WEIGHT_OUTPUT_KERNEL, ON);
    check_stats(w, ON, -1.0, 0.25 * TRUNC_VAR, -2.0, 0.0, "truncated_normal (-1, 0.5)");
    free(w);
}

static void test_constants_and_bias_default(void **state) {
    (void)state;
    clmha_initializer c = clmha_initializer_default(CLMHA_INIT_CONSTANT);
    c.value = 0.375;
    float *w = weights(c, 1, CLMHA_WEIGHT_OUTPUT_KERNEL, ON);
    for (size_t i = 0; i < ON; i++)
        assert_true(w[i] == 0.375f);
    free(w);
    w = weights(clmha_initializer_default(CLMHA_INIT_ONES), 1, CLMHA_WEIGHT_KEY_BIAS, H * DK);
    for (size_t i = 0; i < H * DK; i++)
        assert_true(w[i] == 1.0f);
    free(w);
    w = weights(clmha_initializer_default(CLMHA_INIT_ZEROS), 1, CLMHA_WEIGHT_QUERY_KERNEL, QN);
    for (size_t i = 0; i < QN; i++)
        assert_true(w[i] == 0.0f);
    free(w);
    /* Keras's default config: glorot_uniform kernels, zero biases. */
    clmha_layer_config cfg;
    clmha_layer_config_init(&cfg);
    assert_int_equal(cfg.kernel_initializer.kind, CLMHA_INIT_GLOROT_UNIFORM);
    assert_int_equal(cfg.bias_initializer.kind, CLMHA_INIT_ZEROS);
    assert_true(cfg.use_bias);
    assert_int_equal(cfg.seed, CLMHA_SEED_NONE);
    cfg.num_heads = 2, cfg.key_dim = 4;
    clmha_layer *layer = NULL;
    assert_ok(clmha_layer_create(ctx, &cfg, 8, 8, 0, &layer));
    float b[8];
    assert_ok(clmha_layer_get_weight(layer, CLMHA_WEIGHT_VALUE_BIAS, b, 8));
    for (int i = 0; i < 8; i++)
        assert_true(b[i] == 0.0f);
    clmha_layer_release(layer);
}

static void test_seed_reproducible(void **state) {
    (void)state;
    clmha_initializer g = clmha_initializer_default(CLMHA_INIT_GLOROT_NORMAL);
    float *a = weights(g, 1234, CLMHA_WEIGHT_QUERY_KERNEL, QN);
    float *b = weights(g, 1234, CLMHA_WEIGHT_QUERY_KERNEL, QN);
    float *c = weights(g, 1235, CLMHA_WEIGHT_QUERY_KERNEL, QN);
    float *k = weights(g, 1234, CLMHA_WEIGHT_KEY_KERNEL, QN);
    assert_memory_equal(a, b, QN * sizeof(float));
    size_t same = 0, same_k = 0;
    for (size_t i = 0; i < QN; i++) {
        same += a[i] == c[i];
        same_k += a[i] == k[i];
    }
    assert_true(same < QN / 100);   /* another seed: another draw */
    assert_true(same_k < QN / 100); /* each weight its own stream */
    free(a), free(b), free(c), free(k);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_variance_scaling_family),
        cmocka_unit_test(test_plain_distributions),
        cmocka_unit_test(test_constants_and_bias_default),
        cmocka_unit_test(test_seed_reproducible),
    };
    return cmocka_run_group_tests(tests, test_setup_context, test_teardown_context);
}
