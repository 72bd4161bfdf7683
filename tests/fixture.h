/*
 * fixture.h - the one context shared by the tests of a program that use one: defined in
 * fixture.c, created by test_setup_context() and released by test_teardown_context() (use them
 * as cmocka group setup and teardown). Kept out of support.h so that programs with a local
 * `ctx` variable do not shadow it.
 */
#ifndef CLMHA_TEST_FIXTURE_H
#define CLMHA_TEST_FIXTURE_H

#include "clmha.h"

extern clmha_context *ctx;

int test_setup_context(void **state);
int test_teardown_context(void **state);

#endif
