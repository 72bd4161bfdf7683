/*
 * test_long.c - long key ranges, long query ranges and wide inputs, each compared with the
 * float64 reference: on Mesa's llvmpipe (Rusticl), which ends a work-item silently after 65535
 * loop iterations, these came out wrong before the work one work-item takes was bounded
 * (plan_attention's chunks and item_keys in src/plan.c; gemm_k_long for the projections,
 * and the own GEMM's slices of the input width in src/projection.c).
 * CI runs this program on PoCL, on Rusticl, and on Rusticl with the GPU tuning row.
 */
#include "layer_case.h"

#include <stdlib.h>
#include <string.h>

static case_cfg base(uint64_t seed) {
    case_cfg c;
    memset(&c, 0, sizeof c);
    c.seed = seed;
    c.B = 1, c.H = 1, c.Dq = 8, c.Dk = 8, c.Dv = 8;
    c.use_bias = true;
    return c;
}

/* A static cache of 1024 keys read by 5 query rows (the query tiles). */
static void test_static_cache_1024(void **state) {
    (void)state;
    case_cfg c = base(71);
    c.mode = MODE_STATIC, c.mask = MASK_NONE;
    c.T = 5, c.S = 1024, c.Sn = 1, c.dk = 24, c.dv = 24;
    run_case(&c);
}

/* A decode step over a cache of 65536 keys, head dims of 72 (the four-lane loops), a float32
 * and a half cache. */
static void test_decode_65536(void **state) {
    (void)state;
    for (int half = 0; half < 2; half++) {
        case_cfg c = base(72 + (uint64_t)half);
        c.mode = MODE_UPDATE, c.mask = MASK_CAUSAL;
        c.T = 1, c.S = 65536, c.Sn = 1, c.index = 65535, c.dk = 72, c.dv = 72;
        c.half_cache = half != 0;
        run_case(&c);
    }
}

/* The probabilities of a decode step over 65536 keys (attention_rows, in chunks). */
static void test_probabilities_65536(void **state) {
    (void)state;
    case_cfg c = base(74);
    c.mode = MODE_UPDATE, c.mask = MASK_CAUSAL;
    c.T = 1, c.S = 65536, c.Sn = 1, c.index = 65535, c.dk = 72, c.dv = 72;
    c.scores = true;
    run_case(&c);
}

/* Inputs 70000 wide: a decode-sized product (one row), which the own GEMM takes unless its
 * work-items would loop past the budget; then CLBlast does, or, where CLBlast cannot run (the
 * ctest entry test_long_own_gemm asks for the own GEMM), gemm_acc in slices of the width. */
static void test_wide_input_70000(void **state) {
    (void)state;
    case_cfg c = base(75);
    c.Dq = c.Dk = c.Dv = 70000;
    c.mode = MODE_NONE, c.mask = MASK_NONE;
    c.T = 1, c.S = 1, c.Sn = 1, c.dk = 8, c.dv = 8;
    run_case(&c);
}

/* A causal prefill of 1500 positions (query tiles over up to 1500 keys a row). */
static void test_prefill_1500(void **state) {
    (void)state;
    case_cfg c = base(73);
    c.mode = MODE_NONE, c.mask = MASK_CAUSAL;
    c.T = 1500, c.S = 1500, c.Sn = 1500, c.dk = 24, c.dv = 16;
    run_case(&c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_static_cache_1024),   cmocka_unit_test(test_decode_65536),
        cmocka_unit_test(test_probabilities_65536), cmocka_unit_test(test_prefill_1500),
        cmocka_unit_test(test_wide_input_70000),
    };
    /* CLMHA_TEST_FILTER (a cmocka pattern) runs only the tests it matches. */
    const char *filter = getenv("CLMHA_TEST_FILTER");
    if (filter != NULL && *filter != '\0') {
        cmocka_set_test_filter(filter);
    }
    return cmocka_run_group_tests(tests, test_setup_context, test_teardown_context);
}
