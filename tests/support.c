/*
 * support.c - implementation of the shared test helpers (see support.h).
 */
#include "support.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

const tol_rule TOL_F32 = {1e-5, 1e-5, 1e-6};
const tol_rule TOL_F16 = {1e-3, 2e-3, 1e-5};

void test_assert_close(double a, double b, double tol, const char *expr, const char *file,
                       int line) {
    if (!(fabs(a - b) <= tol)) {
        print_error("%s:%d: %s = %.9g, expected %.9g within %.3g\n", file, line, expr, a, b, tol);
        _fail(file, line);
    }
}

void test_assert_ok(clmha_status st, const char *expr, const char *file, int line) {
    if (st != CLMHA_OK) {
        print_error("%s:%d: %s returned %s: %s\n", file, line, expr, clmha_status_name(st),
                    clmha_last_error());
        _fail(file, line);
    }
}

uint64_t rng_next(test_rng *r) {
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

double rng_uniform(test_rng *r) {
    return (double)(rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
}

size_t rng_below(test_rng *r, size_t n) {
    return (size_t)(rng_uniform(r) * (double)n);
}

void rng_fill(test_rng *r, float *x, size_t n, double lo, double hi) {
    for (size_t i = 0; i < n; i++) {
        x[i] = (float)(lo + (hi - lo) * rng_uniform(r));
    }
}

bool compare_close(const char *what, const float *got, const double *ref, size_t n, tol_rule tol,
                   const char *repro) {
    double num = 0, den = 0, maxref = 0;
    for (size_t i = 0; i < n; i++) {
        maxref = fmax(maxref, fabs(ref[i]));
    }
    double elem_tol = tol.rel_elem * maxref + tol.abs_floor;
    for (size_t i = 0; i < n; i++) {
        double g = got[i], d = g - ref[i];
        if (!isfinite(g) || !(fabs(d) <= elem_tol)) {
            print_error("%s: element %zu is %.9g, reference %.9g (|diff| %.3g > %.3g)\n  "
                        "reproduce: %s\n",
                        what, i, g, ref[i], fabs(d), elem_tol, repro);
            return false;
        }
        num += d * d;
        den += ref[i] * ref[i];
    }
    double rel = den > 0 ? sqrt(num / den) : sqrt(num);
    if (!(rel <= tol.rel_fro)) {
        print_error("%s: relative Frobenius error %.3g > %.3g\n  reproduce: %s\n", what, rel,
                    tol.rel_fro, repro);
        return false;
    }
    return true;
}

clmha_context *test_context(void) {
    return test_context_tuned(NULL);
}

clmha_context *test_context_tuned(const char *tune) {
    clmha_context_options o;
    clmha_context_options_init(&o);
    /* ctest's variants of a program pass their settings in CLMHA_TEST_TUNE, as an application
     * passes options.tune, so that a CI stage's CLMHA_TUNE (a small device's caps, a tuning
     * row) still applies to every key they do not set. */
    o.tune = tune != NULL ? tune : getenv("CLMHA_TEST_TUNE");
    clmha_context *ctx = NULL;
    assert_ok(clmha_context_create(&o, &ctx));
    return ctx;
}

clmha_tensor *test_tensor_f32(clmha_context *ctx, int rank, const size_t *shape,
                              const float *data) {
    clmha_tensor *t = NULL;
    assert_ok(clmha_tensor_create(ctx, CLMHA_FLOAT32, rank, shape, &t));
    if (data != NULL) {
        assert_ok(clmha_tensor_write(t, data, clmha_tensor_numel(t) * sizeof(float)));
    }
    return t;
}

clmha_tensor *test_tensor_u8(clmha_context *ctx, int rank, const size_t *shape,
                             const uint8_t *data) {
    clmha_tensor *t = NULL;
    assert_ok(clmha_tensor_create(ctx, CLMHA_UINT8, rank, shape, &t));
    if (data != NULL) {
        assert_ok(clmha_tensor_write(t, data, clmha_tensor_numel(t)));
    }
    return t;
}

void *test_read(const clmha_tensor *t, size_t *bytes) {
    clmha_dtype dt = clmha_tensor_dtype(t);
    size_t n = clmha_tensor_numel(t) * (dt == CLMHA_UINT8 || dt == CLMHA_INT8 ? 1
                                        : dt == CLMHA_FLOAT16                 ? 2
                                                                              : 4);
    void *buf = malloc(n);
    assert_non_null(buf);
    assert_ok(clmha_tensor_read(t, buf, n));
    if (bytes != NULL) {
        *bytes = n;
    }
    return buf;
}
