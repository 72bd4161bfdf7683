/*
 * test_int8_cache.c - the int8 key/value cache's error against the float64 reference of the
 * float layer, bounded. A layer with cache_dtype CLMHA_INT8 fills its cache by a causal prefill
 * and then decodes step by step; every output is compared with the float64 reference over
 * unquantized keys and values, within a bound derived from the rows' scales:
 *   a key row quantized with scale s_k moves each element by at most s_k / 2, so a score
 *   (q / sqrt(dk)) . k moves by at most E = |q|_1 / sqrt(dk) * max s_k / 2; the softmax's
 *   probabilities then move by at most a factor e^(+-2E), so sum_j |p'_j - p_j| <= e^(2E) - 1;
 *   a value row moves by at most s_v / 2 an element. So an attention output element moves by
 *   at most (e^(2E) - 1) * max |v| + max s_v / 2, and an output feature n by that times
 *   sum_(h,d) |Wo[h, d, n]|.
 * The measured error must stay under the bound (plus float32 slack) and be well above float32
 * rounding (the keys and values were quantized); the ratio is printed. Bad cache arguments
 * (the float cache of another layer, a misaligned int8 cache) are refused and change nothing.
 * The exact arithmetic over the quantized rows is test_layer's and test_kernels_small's
 * (int8_cache cases against the reference over the device's rows).
 */
#include "reference.h"
#include "fixture.h"
#include "support.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { P = 40, N = 4, S = P + N, D = 48, H = 4, DK = 16, ROW = DK + 4 };

/* Per query position: the largest |q_h|_1 over the heads, for E. */
static void query_norms(const float *x, size_t rows, const float *wq, const float *bq, double *qn) {
    for (size_t r = 0; r < rows; r++) {
        qn[r] = 0.0;
        for (size_t h = 0; h < H; h++) {
            double n1 = 0.0;
            for (size_t e = 0; e < DK; e++) {
                double q = bq[h * DK + e];
                for (size_t i = 0; i < D; i++) {
                    q += (double)x[r * D + i] * wq[(i * H + h) * DK + e];
                }
                n1 += fabs(q);
            }
            qn[r] = n1 > qn[r] ? n1 : qn[r];
        }
    }
}

/* The bound on output row r's features (the cache's rows up to position `last`). */
static double row_bound(const unsigned char *cache8, size_t last, double qn,
                        const double *cache_ref, double wo_col_max) {
    double sk = 0.0, sv = 0.0, vmax = 0.0;
    for (size_t j = 0; j <= last; j++) {
        for (size_t h = 0; h < H; h++) {
            const double k_s = ref_i8_scale(cache8 + ((0 * S + j) * H + h) * ROW, DK);
            const double v_s = ref_i8_scale(cache8 + ((1 * S + j) * H + h) * ROW, DK);
            sk = k_s > sk ? k_s : sk;
            sv = v_s > sv ? v_s : sv;
            for (size_t e = 0; e < DK; e++) {
                const double v = fabs(cache_ref[((1 * S + j) * H + h) * DK + e]);
                vmax = v > vmax ? v : vmax;
            }
        }
    }
    const double E = qn / sqrt((double)DK) * sk / 2.0;
    return ((exp(2.0 * E) - 1.0) * (vmax + sv / 2.0) + sv / 2.0) * wo_col_max;
}

static void test_error_within_bound(void **state) {
    (void)state;
    test_rng r = {4242};
    clmha_layer_config cfg;
    clmha_layer_config_init(&cfg);
    cfg.num_heads = H, cfg.key_dim = DK, cfg.cache_dtype = CLMHA_INT8;
    clmha_layer *l = NULL;
    assert_ok(clmha_layer_create(ctx, &cfg, D, D, 0, &l));
    const size_t nw[CLMHA_WEIGHT_COUNT] = {D * H * DK, H * DK, D * H * DK, H * DK,
                                           D * H * DK, H * DK, H * DK * D, D};
    float *w[CLMHA_WEIGHT_COUNT];
    for (int i = 0; i < CLMHA_WEIGHT_COUNT; i++) {
        w[i] = malloc(nw[i] * sizeof(float));
        assert_non_null(w[i]);
        rng_fill(&r, w[i], nw[i], -0.4, 0.4);
        assert_ok(clmha_layer_set_weight(l, (clmha_weight)i, w[i], nw[i]));
    }
    /* sum_(h,d) |Wo[h, d, n]|, the largest over n */
    double wo_col_max = 0.0;
    for (size_t n = 0; n < D; n++) {
        double s = 0.0;
        for (size_t i = 0; i < H * DK; i++) {
            s += fabs(w[6][i * D + n]);
        }
        wo_col_max = s > wo_col_max ? s : wo_col_max;
    }
    float x[S * D];
    rng_fill(&r, x, S * D, -1.5, 1.5);
    double qn[S];
    query_norms(x, S, w[0], w[1], qn);

    clmha_tensor *cache = NULL;
    assert_ok(clmha_layer_create_cache(l, 1, S, &cache));
    float *cache_f = calloc(2 * S * H * DK, sizeof(float));
    double *cache_ref = calloc(2 * S * H * DK, sizeof(double));
    uint8_t *mask = malloc(P * S);
    assert_true(cache_f && cache_ref && mask);
    double worst_ratio = 0.0, worst_err = 0.0;
    for (size_t step = 0; step <= N; step++) {
        /* step 0: the prefill of positions 0..P-1; then one position a step */
        const size_t T = step == 0 ? P : 1, index = step == 0 ? 0 : P + step - 1;
        size_t xs[3] = {1, T, D};
        clmha_tensor *tx = test_tensor_f32(ctx, 3, xs, x + index * D);
        clmha_tensor *ty = NULL;
        assert_ok(clmha_tensor_create(ctx, CLMHA_FLOAT32, 3, xs, &ty));
        clmha_call_args a;
        clmha_call_args_init(&a);
        a.query = a.value = tx, a.output = ty, a.cache = cache, a.causal = true;
        a.has_cache_update_index = true, a.cache_update_index = (int64_t)index;
        assert_ok(clmha_layer_call(l, &a));
        float *y = test_read(ty, NULL);
        unsigned char *c8 = test_read(cache, NULL);

        for (size_t t = 0; t < T; t++) {
            for (size_t j = 0; j < S; j++) {
                mask[t * S + j] = j <= index + t;
            }
        }
        double *out_ref = malloc(T * D * sizeof(double));
        assert_non_null(out_ref);
        ref_weights rw = {H,    DK,   DK,   D,    D,    D,    D,    true,
                          w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]};
        ref_call rc = {
            1,    T,     x + index * D, NULL,    x + index * D, T,     mask, {1, T, S}, cache_f, S,
            true, index, cache_ref,     out_ref, NULL,          false, 0,    false,     NULL};
        assert_true(ref_forward(&rw, &rc));
        for (size_t i = 0; i < 2 * S * H * DK; i++) {
            cache_f[i] = (float)cache_ref[i]; /* the float layer's cache, for the next step */
        }
        for (size_t t = 0; t < T; t++) {
            const double bound =
                row_bound(c8, index + t, qn[index + t], cache_ref, wo_col_max) + 1e-4;
            for (size_t n = 0; n < D; n++) {
                const double err = fabs((double)y[t * D + n] - out_ref[t * D + n]);
                if (!(err <= bound)) {
                    fail_msg("step %zu row %zu feature %zu: %.6g, reference %.6g: error %.3g > "
                             "bound %.3g",
                             step, t, n, (double)y[t * D + n], out_ref[t * D + n], err, bound);
                }
                worst_ratio = err / bound > worst_ratio ? err / bound : worst_ratio;
                worst_err = err > worst_err ? err : worst_err;
            }
        }
        free(out_ref), free(y), free(c8);
        clmha_tensor_release(tx), clmha_tensor_release(ty);
    }
    print_message("int8 cache: largest error %.3g (%.3f of its bound) over a prefill of %d and %d "
                  "decode steps\n",
                  worst_err, worst_ratio, P, N);
    /* well above float32 rounding: the keys and values were quantized */
    assert_true(worst_err > 1e-4);
    free(cache_f), free(cache_ref), free(mask);
    for (int i = 0; i < CLMHA_WEIGHT_COUNT; i++) {
        free(w[i]);
    }
    clmha_tensor_release(cache);
    clmha_layer_release(l);
}

/* A float cache given to an int8 layer, an int8 cache starting off a 4-byte boundary and one of
 * the float row length are refused with the reason; the caller's tensors are unchanged. */
static void test_bad_int8_caches(void **state) {
    (void)state;
    clmha_layer_config cfg;
    clmha_layer_config_init(&cfg);
    cfg.num_heads = H, cfg.key_dim = DK, cfg.cache_dtype = CLMHA_INT8;
    clmha_layer *l = NULL;
    assert_ok(clmha_layer_create(ctx, &cfg, D, D, 0, &l));
    float x[D];
    for (size_t i = 0; i < D; i++) {
        x[i] = (float)i / D;
    }
    size_t xs[3] = {1, 1, D};
    clmha_tensor *tx = test_tensor_f32(ctx, 3, xs, x), *ty = NULL;
    assert_ok(clmha_tensor_create(ctx, CLMHA_FLOAT32, 3, xs, &ty));
    assert_ok(clmha_tensor_write(ty, x, sizeof x));
    const size_t bytes = 2 * 4 * H * ROW;
    unsigned char init[2 * 4 * H * ROW + 8];
    for (size_t i = 0; i < sizeof init; i++) {
        init[i] = (unsigned char)(i * 7);
    }
    cl_int err;
    cl_mem big =
        clCreateBuffer(clmha_context_cl_context(ctx), CL_MEM_READ_WRITE, sizeof init, NULL, &err);
    assert_int_equal(err, CL_SUCCESS);
    size_t cs[5] = {1, 2, 4, H, ROW}, cf[5] = {1, 2, 4, H, DK};
    clmha_tensor *bad[3] = {NULL, NULL, NULL};
    assert_ok(clmha_tensor_wrap(ctx, CLMHA_INT8, 5, cs, big, 2, &bad[0])); /* misaligned */
    assert_ok(clmha_tensor_create(ctx, CLMHA_FLOAT32, 5, cf, &bad[1]));    /* float cache */
    assert_ok(clmha_tensor_create(ctx, CLMHA_INT8, 5, cf, &bad[2]));       /* float rows */
    const char *why[3] = {"multiple of 4 bytes", "dtype float32", "key_dim + 4"};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(clEnqueueWriteBuffer(clmha_context_queue(ctx), big, CL_TRUE, 0,
                                              sizeof init, init, 0, NULL, NULL),
                         CL_SUCCESS);
        clmha_call_args a;
        clmha_call_args_init(&a);
        a.query = a.value = tx, a.output = ty, a.cache = bad[i];
        a.has_cache_update_index = true, a.cache_update_index = 1;
        assert_int_not_equal(clmha_layer_call(l, &a), CLMHA_OK);
        if (strstr(clmha_last_error(), why[i]) == NULL ||
            strstr(clmha_last_error(), "cache") == NULL) {
            fail_msg("cache %d: the error \"%s\" does not say \"%s\"", i, clmha_last_error(),
                     why[i]);
        }
        unsigned char after[sizeof init];
        assert_int_equal(clEnqueueReadBuffer(clmha_context_queue(ctx), big, CL_TRUE, 0,
                                             sizeof after, after, 0, NULL, NULL),
                         CL_SUCCESS);
        assert_memory_equal(after, init, bytes);
        float y[D];
        assert_ok(clmha_tensor_read(ty, y, sizeof y));
        assert_memory_equal(y, x, sizeof y);
    }
    for (int i = 0; i < 3; i++) {
        clmha_tensor_release(bad[i]);
    }
    clReleaseMemObject(big);
    clmha_tensor_release(tx), clmha_tensor_release(ty);
    clmha_layer_release(l);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_error_within_bound),
        cmocka_unit_test(test_bad_int8_caches),
    };
    return cmocka_run_group_tests(tests, test_setup_context, test_teardown_context);
}
