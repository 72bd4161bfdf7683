/*
 * fixture.c - the shared context of test programs that use one (see fixture.h).
 */
#include "fixture.h"
#include "support.h"

clmha_context *ctx;

int test_setup_context(void **state) {
    (void)state;
    ctx = test_context();
    return ctx != NULL ? 0 : -1;
}

int test_teardown_context(void **state) {
    (void)state;
    clmha_context_release(ctx);
    ctx = NULL;
    return 0;
}
