/*
 * test_policy.c - Keras's 16-bit dtype policies beyond the golden cases (test_keras compares
 * them with real Keras):
 * - the variables: float16 and bfloat16 layers hold what they are given rounded to that dtype
 *   (to nearest even, as Keras's 16-bit variables do), the mixed policies hold float32;
 * - the rounding points, against a float64 model of them written here: each projection's inputs,
 *   weights and result rounded to the compute dtype, the bias added and rounded again, the
 *   softmax and attention sums unrounded;
 * - the 16-bit copies follow every change: set_weight and apply_constraints between calls
 *   give what a fresh layer with the resulting weights gives, bit for bit;
 * - gemm16.cl's rounding (float16's in registers, bfloat16's by bits) on the values where
 *   rounding is hard: ties both ways, subnormal halves down to 2^-24 and past it, the largest
 *   half and past it, infinities and NaN, against tools/half.h and a bit-level bfloat16 rule;
 * - a bad policy is refused, and so is quantizing a 16-bit layer.
 */
#include "fixture.h"
#include "internal.h"
#include "support.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { B = 2, T = 3, D = 8, H = 2, DK = 4, HD = H * DK };

/* Rounds @p v to float16 or bfloat16 (to nearest even), back to float. */
static float round16(float v, bool bf16) {
    if (!bf16) {
        return half_to_float(half_from_float(v));
    }
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    u = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
    float r;
    memcpy(&r, &u, sizeof r);
    return r;
}

static clmha_layer *policy_layer(clmha_dtype_policy p, bool bias) {
    clmha_layer_config c;
    clmha_layer_config_init(&c);
    c.num_heads = H, c.key_dim = DK, c.seed = 7, c.use_bias = bias;
    c.bias_initializer = clmha_initializer_default(CLMHA_INIT_RANDOM_NORMAL);
    c.dtype_policy = p;
    c.kernel_constraint.kind = CLMHA_CONSTRAINT_MAX_NORM;
    c.kernel_constraint.max_value = 0.3;
    clmha_layer *l = NULL;
    assert_ok(clmha_layer_create(ctx, &c, D, D, 0, &l));
    return l;
}

static size_t numel(const clmha_layer *l, clmha_weight w) {
    int rank;
    size_t shape[CLMHA_MAX_RANK], n = 1;
    assert_ok(clmha_layer_weight_shape(l, w, &rank, shape));
    for (int i = 0; i < rank; i++) {
        n *= shape[i];
    }
    return n;
}

/* Self-attention of fixed inputs, no cache, no mask; the output (B * T * D floats, malloc'd). */
static float *run(clmha_layer *l, const float *x) {
    const size_t s[3] = {B, T, D};
    clmha_tensor *tx = test_tensor_f32(ctx, 3, s, x), *to = test_tensor_f32(ctx, 3, s, NULL);
    clmha_call_args a;
    clmha_call_args_init(&a);
    a.query = tx, a.value = tx, a.output = to;
    assert_ok(clmha_layer_call(l, &a));
    float *out = test_read(to, NULL);
    clmha_tensor_release(tx);
    clmha_tensor_release(to);
    return out;
}

/* The variables hold 16-bit values exactly for the float16 and bfloat16 policies only. */
static void test_variables(void **state) {
    (void)state;
    for (int p = 0; p < 5; p++) {
        clmha_layer *l = policy_layer((clmha_dtype_policy)p, true);
        const size_t n = numel(l, CLMHA_WEIGHT_VALUE_KERNEL);
        float *w = malloc(n * sizeof(float)), *got = malloc(n * sizeof(float));
        for (size_t i = 0; i < n; i++) {
            w[i] = (float)(i + 1) / 3.0f;
        }
        assert_ok(clmha_layer_set_weight(l, CLMHA_WEIGHT_VALUE_KERNEL, w, n));
        assert_ok(clmha_layer_get_weight(l, CLMHA_WEIGHT_VALUE_KERNEL, got, n));
        const bool var16 = p == CLMHA_POLICY_FLOAT16 || p == CLMHA_POLICY_BFLOAT16;
        const bool bf16 = p == CLMHA_POLICY_BFLOAT16 || p == CLMHA_POLICY_MIXED_BFLOAT16;
        for (size_t i = 0; i < n; i++) {
            const float want = var16 ? round16(w[i], bf16) : w[i];
            if (got[i] != want) {
                fail_msg("%s: element %zu holds %.9g, expected %.9g",
                         clmha_dtype_policy_name((clmha_dtype_policy)p), i, (double)got[i],
                         (double)want);
            }
        }
        free(w), free(got);
        clmha_layer_release(l);
    }
}

/* y[m][n] = round(round(sum_k round(x) round(w)) + round(b)), in double before the roundings. */
static void project(const float *x, size_t m, size_t k, const float *w, const float *b, size_t n,
                    bool bf16, double *y) {
    for (size_t r = 0; r < m; r++) {
        for (size_t c = 0; c < n; c++) {
            double s = 0;
            for (size_t i = 0; i < k; i++) {
                s += (double)round16(x[r * k + i], bf16) * (double)round16(w[i * n + c], bf16);
            }
            const float p = round16((float)s, bf16);
            y[r * n + c] = round16(p + (b ? round16(b[c], bf16) : 0.0f), bf16);
        }
    }
}

/* The layer against the float64 model of the rounding points, for each 16-bit policy. */
static void test_rounding_points(void **state) {
    (void)state;
    float x[B * T * D];
    test_rng rng = {99};
    rng_fill(&rng, x, B * T * D, -2.0, 2.0);
    for (int p = 1; p < 5; p++) {
        const bool bf16 = p == CLMHA_POLICY_BFLOAT16 || p == CLMHA_POLICY_MIXED_BFLOAT16;
        clmha_layer *l = policy_layer((clmha_dtype_policy)p, true);
        float *w[CLMHA_WEIGHT_COUNT];
        for (int i = 0; i < CLMHA_WEIGHT_COUNT; i++) {
            w[i] = malloc(numel(l, (clmha_weight)i) * sizeof(float));
            assert_ok(clmha_layer_get_weight(l, (clmha_weight)i, w[i], numel(l, (clmha_weight)i)));
        }
        double q[B * T * HD], k[B * T * HD], v[B * T * HD], want[B * T * D];
        project(x, B * T, D, w[0], w[1], HD, bf16, q);
        project(x, B * T, D, w[2], w[3], HD, bf16, k);
        project(x, B * T, D, w[4], w[5], HD, bf16, v);
        float o[B * T * HD];
        for (int b = 0; b < B; b++) {
            for (int h = 0; h < H; h++) {
                for (int t = 0; t < T; t++) {
                    double s[T], mx = -INFINITY, sum = 0;
                    for (int j = 0; j < T; j++) {
                        s[j] = 0;
                        for (int d = 0; d < DK; d++) {
                            s[j] += q[(b * T + t) * HD + h * DK + d] / sqrt(DK) *
                                    k[(b * T + j) * HD + h * DK + d];
                        }
                        mx = fmax(mx, s[j]);
                    }
                    for (int j = 0; j < T; j++) {
                        sum += (s[j] = exp(s[j] - mx));
                    }
                    for (int d = 0; d < DK; d++) {
                        double acc = 0;
                        for (int j = 0; j < T; j++) {
                            acc += s[j] / sum * v[(b * T + j) * HD + h * DK + d];
                        }
                        o[(b * T + t) * HD + h * DK + d] = (float)acc;
                    }
                }
            }
        }
        project(o, B * T, HD, w[6], w[7], D, bf16, want);
        float *got = run(l, x);
        /* the model and the device sum in other orders (float64 here): one rounding apart */
        char repro[64];
        snprintf(repro, sizeof repro, "policy %s", clmha_dtype_policy_name((clmha_dtype_policy)p));
        const tol_rule tol = {bf16 ? 8e-3 : 1e-3, bf16 ? 1.6e-2 : 2e-3, 1e-5};
        assert_true(compare_close("output", got, want, B * T * D, tol, repro));
        for (size_t i = 0; i < B * T * D; i++) {
            assert_true(round16(got[i], bf16) == got[i]);
        }
        free(got);
        for (int i = 0; i < CLMHA_WEIGHT_COUNT; i++) {
            free(w[i]);
        }
        clmha_layer_release(l);
    }
}

/* After set_weight and apply_constraints the layer computes what a fresh layer given its
 * weights computes: the 16-bit copies follow the variables. */
static void test_copies_follow(void **state) {
    (void)state;
    float x[B * T * D];
    test_rng rng = {5};
    rng_fill(&rng, x, B * T * D, -1.0, 1.0);
    for (int p = 1; p < 5; p++) {
        clmha_layer *a = policy_layer((clmha_dtype_policy)p, true);
        free(run(a, x)); /* the copies in use once before they change */
        const size_t n = numel(a, CLMHA_WEIGHT_QUERY_KERNEL);
        float *w = malloc(n * sizeof(float));
        rng_fill(&rng, w, n, -1.0, 1.0);
        assert_ok(clmha_layer_set_weight(a, CLMHA_WEIGHT_QUERY_KERNEL, w, n));
        assert_ok(clmha_layer_apply_constraints(a));
        clmha_layer *b = policy_layer((clmha_dtype_policy)p, true);
        for (int i = 0; i < CLMHA_WEIGHT_COUNT; i++) {
            const size_t m = numel(a, (clmha_weight)i);
            float *v = malloc(m * sizeof(float));
            assert_ok(clmha_layer_get_weight(a, (clmha_weight)i, v, m));
            assert_ok(clmha_layer_set_weight(b, (clmha_weight)i, v, m));
            free(v);
        }
        float *ya = run(a, x), *yb = run(b, x);
        assert_memory_equal(ya, yb, B * T * D * sizeof(float));
        free(ya), free(yb), free(w);
        clmha_layer_release(a);
        clmha_layer_release(b);
    }
}

/* round_rows of gemm16.cl (float16 and W_BF16 builds) on hard values, against the host. */
static void test_rounding_edges(void **state) {
    (void)state;
    float v[] = {0.0f,
                 -0.0f,
                 1.0f,
                 1.0f + 0x1p-11f,
                 1.0f + 0x3p-11f,
                 1.0f + 0x1p-11f + 0x1p-20f,
                 65504.0f,
                 65519.0f,
                 65520.0f,
                 1e6f,
                 -1e6f,
                 0x1p-14f,
                 0x1.7fp-15f,
                 0x1p-24f,
                 0x1.8p-24f,
                 0x1p-25f,
                 0x1.01p-25f,
                 0x1p-26f,
                 3e-8f,
                 -3e-8f,
                 0x1.ffep-15f,
                 INFINITY,
                 -INFINITY,
                 NAN,
                 1.0f + 0x1p-8f,
                 1.0f + 0x3p-8f,
                 3.14159265f,
                 -2.71828f,
                 0x1p-126f,
                 1e38f,
                 0x1.fffffep127f};
    const size_t n = sizeof v / sizeof v[0];
    for (int bf = 0; bf < 2; bf++) {
        cl_program prog;
        clmha__kernel k;
        assert_ok(clmha__program_get(ctx, "gemm16.cl", bf ? "-DW_BF16" : "", &prog));
        assert_ok(clmha__kernel_create(ctx, prog, "round_rows", &k));
        cl_int err;
        cl_mem in = clCreateBuffer(clmha_context_cl_context(ctx),
                                   CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, sizeof v, v, &err);
        cl_mem out =
            clCreateBuffer(clmha_context_cl_context(ctx), CL_MEM_READ_WRITE, sizeof v, NULL, &err);
        cl_ulong off = 0, count = n;
        const clmha__karg args[] = {CLMHA__ARG(in), CLMHA__ARG(off), CLMHA__ARG(count),
                                    CLMHA__ARG(out)};
        assert_ok(clmha__set_args(ctx, &k, args, 4));
        assert_ok(clmha__launch(ctx, &k, n, 1)); /* one work-item a group: any device */
        float got[sizeof v / sizeof v[0]];
        assert_int_equal(clEnqueueReadBuffer(clmha_context_queue(ctx), out, CL_TRUE, 0, sizeof v,
                                             got, 0, NULL, NULL),
                         CL_SUCCESS);
        for (size_t i = 0; i < n; i++) {
            const float want = round16(v[i], bf != 0);
            if (isnan(v[i]) ? !isnan(got[i]) : memcmp(&got[i], &want, sizeof want) != 0) {
                fail_msg("%s rounding of %a gave %a, expected %a", bf ? "bfloat16" : "float16",
                         (double)v[i], (double)got[i], (double)want);
            }
        }
        clReleaseMemObject(in);
        clReleaseMemObject(out);
        clmha__kernel_release(&k);
    }
}

static void test_refusals(void **state) {
    (void)state;
    clmha_layer_config c;
    clmha_layer_config_init(&c);
    c.dtype_policy = (clmha_dtype_policy)9;
    clmha_layer *l = NULL;
    assert_int_equal(clmha_layer_create(ctx, &c, D, D, 0, &l), CLMHA_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(clmha_last_error(), "dtype_policy is 9"));
    assert_null(clmha_dtype_policy_name((clmha_dtype_policy)9));
    assert_string_equal(clmha_dtype_policy_name(CLMHA_POLICY_MIXED_BFLOAT16), "mixed_bfloat16");
    l = policy_layer(CLMHA_POLICY_MIXED_FLOAT16, true);
    assert_int_equal(clmha_layer_quantize(l, "int8"), CLMHA_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(clmha_last_error(), "dtype policy is mixed_float16"));
    assert_string_equal(clmha_layer_quantization(l), "");
    clmha_layer_release(l);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_variables),     cmocka_unit_test(test_rounding_points),
        cmocka_unit_test(test_copies_follow), cmocka_unit_test(test_rounding_edges),
        cmocka_unit_test(test_refusals),
    };
    return cmocka_run_group_tests(tests, test_setup_context, test_teardown_context);
}
