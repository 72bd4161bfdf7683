/*
 * layer_case.h - one configuration of the layer run on the device and compared with the
 * float64 reference (outputs, probabilities, cache, canaries): shared by test_layer (the
 * random sweep) and test_kernels_small (tiny shapes, run under Oclgrind).
 */
#ifndef CLMHA_TEST_LAYER_CASE_H
#define CLMHA_TEST_LAYER_CASE_H

#include "fixture.h"
#include "support.h"

enum { MODE_NONE, MODE_STATIC, MODE_UPDATE };
enum {
    MASK_NONE,
    MASK_FULL,
    MASK_TS,
    MASK_1TS,
    MASK_B1S,
    MASK_BT1,
    MASK_11S,
    MASK_CAUSAL,
    MASK_RANDOM,
    MASK_ROWS_OFF,
    MASK_KINDS
};

typedef struct case_cfg {
    size_t B, T, S, Sn, H, dk, dv, Dq, Dk, Dv;
    bool use_bias, separate_key, scores, offsets;
    bool half_cache; /* cache_dtype float16 (cache modes only) */
    bool int8_cache; /* cache_dtype int8 (cache modes only; not with half_cache) */
    /* Self-attention: value (and key, with separate_key) are the query tensor itself; needs
     * Dq == Dk == Dv and Sn == T (mode none or update). */
    bool self_input;
    int out_rank;
    size_t out_shape[2];
    int mode, mask;
    size_t index;
    uint64_t seed;
} case_cfg;

/* Builds the case's layer with random weights, runs it, compares everything; fails the test
 * with a reproducer on any difference. */
void run_case(const case_cfg *c);

#endif
