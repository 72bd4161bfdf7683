/*
 * support.h - shared test helpers: cmocka includes (Debian's 1.1.5 lacks assert_double_equal,
 * so a wrapper is here), a seeded RNG independent of the library, the comparison rule used
 * against the float64 reference, and context/tensor conveniences.
 */
#ifndef CLMHA_TEST_SUPPORT_H
#define CLMHA_TEST_SUPPORT_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>

#include "clmha.h"
/* half_from_float / half_to_float: IEEE half on the host, independent of the library's device
 * conversions (checked against GCC's _Float16 on every half and 2e8 floats). */
#include "half.h"

/* Fails the test when |a - b| > tol, printing both values. */
#define assert_close(a, b, tol)                                                                    \
    test_assert_close((double)(a), (double)(b), (double)(tol), #a, __FILE__, __LINE__)
void test_assert_close(double a, double b, double tol, const char *expr, const char *file,
                       int line);

/* Asserts a clmha call succeeded, printing clmha_last_error() when not. */
#define assert_ok(call) test_assert_ok((call), #call, __FILE__, __LINE__)
void test_assert_ok(clmha_status st, const char *expr, const char *file, int line);

/* splitmix64: the tests' own generator, unrelated to the library's Philox. */
typedef struct test_rng {
    uint64_t s;
} test_rng;
uint64_t rng_next(test_rng *r);
double rng_uniform(test_rng *r); /* [0, 1) */
size_t rng_below(test_rng *r, size_t n);
void rng_fill(test_rng *r, float *x, size_t n, double lo, double hi);

/* The comparison rule of every device-vs-reference check:
 *   relative Frobenius error ||got - ref|| / ||ref|| <= rel_fro, and
 *   every |got - ref| <= rel_elem * max|ref| + abs_floor.
 * NaN or Inf in got fails. On failure prints the first bad index, both values and @p repro. */
typedef struct tol_rule {
    double rel_fro, rel_elem, abs_floor;
} tol_rule;
extern const tol_rule TOL_F32;
/* Results over a half key/value cache: the reference rounds keys and values to half as the
 * device does, but a value within float rounding of a half tie can round the other way there
 * (one half ulp, 2^-11 relative), which moves scores and outputs by up to about 1e-3. */
extern const tol_rule TOL_F16;

bool compare_close(const char *what, const float *got, const double *ref, size_t n, tol_rule tol,
                   const char *repro);

/* A context on the default (environment-selected) device with CLMHA_TEST_TUNE's settings;
 * fails the test if none. */
clmha_context *test_context(void);
/* A context with the settings @p tune ("key=value,..." as options.tune; NULL: those of
 * CLMHA_TEST_TUNE, if any), over CLMHA_TUNE's; fails the test if it cannot be created. */
clmha_context *test_context_tuned(const char *tune);

/* A float32 device tensor holding @p data (may be NULL: left undefined). */
clmha_tensor *test_tensor_f32(clmha_context *ctx, int rank, const size_t *shape, const float *data);
clmha_tensor *test_tensor_u8(clmha_context *ctx, int rank, const size_t *shape,
                             const uint8_t *data);

/* Reads a whole tensor into a fresh malloc'd host buffer. */
void *test_read(const clmha_tensor *t, size_t *bytes);

#endif
