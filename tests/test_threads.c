/*
 * test_threads.c - clmha from several threads, as the header's rules allow: four threads each
 * with its own context and layer, and four threads sharing one context (each with its own
 * layer) that serialise their calls with a mutex. Every thread's outputs must equal the
 * single-threaded result bit for bit (same seed, same inputs), and clmha_last_error() is per
 * thread. CI runs it under ThreadSanitizer (-DCLMHA_SANITIZE=thread).
 */
#include "support.h"

#include <pthread.h>
#include <string.h>

enum { NT = 4, B = 2, T = 5, S = 7, D = 16, STEPS = 6 };

static float q[B * T * D], v[B * S * D], expected[B * T * D];
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

typedef struct job {
    clmha_context *shared; /* NULL: the thread makes its own context */
    int ok;
    char error[256];
} job;

static clmha_layer *make_layer(clmha_context *c) {
    clmha_layer_config cfg;
    clmha_layer_config_init(&cfg);
    cfg.num_heads = 2, cfg.key_dim = 8, cfg.seed = 77;
    clmha_layer *l = NULL;
    return clmha_layer_create(c, &cfg, D, D, 0, &l) == CLMHA_OK ? l : NULL;
}

/* One call; with a shared context the whole use of it is under the lock. */
static int run_once(clmha_context *c, clmha_layer *l, float *out, int locked) {
    size_t qs[3] = {B, T, D}, vs[3] = {B, S, D};
    clmha_tensor *tq = NULL, *tv = NULL, *to = NULL;
    int ok = 0;
    if (locked)
        pthread_mutex_lock(&lock);
    if (clmha_tensor_create(c, CLMHA_FLOAT32, 3, qs, &tq) == CLMHA_OK &&
        clmha_tensor_create(c, CLMHA_FLOAT32, 3, vs, &tv) == CLMHA_OK &&
        clmha_tensor_create(c, CLMHA_FLOAT32, 3, qs, &to) == CLMHA_OK &&
        clmha_tensor_write(tq, q, sizeof q) == CLMHA_OK &&
        clmha_tensor_write(tv, v, sizeof v) == CLMHA_OK) {
        clmha_call_args a;
        clmha_call_args_init(&a);
        a.query = tq, a.value = tv, a.output = to;
        ok = clmha_layer_call(l, &a) == CLMHA_OK &&
             clmha_tensor_read(to, out, B * T * D * sizeof(float)) == CLMHA_OK;
    }
    clmha_tensor_release(tq), clmha_tensor_release(tv), clmha_tensor_release(to);
    if (locked)
        pthread_mutex_unlock(&lock);
    return ok;
}

static void *worker(void *arg) {
    job *j = arg;
    clmha_context *c = j->shared;
    clmha_layer *l = NULL;
    j->ok = 0;
    if (c == NULL && clmha_context_create(NULL, &c) != CLMHA_OK) {
        snprintf(j->error, sizeof j->error, "context: %s", clmha_last_error());
        return NULL;
    }
    if (j->shared)
        pthread_mutex_lock(&lock);
    l = make_layer(c);
    if (j->shared)
        pthread_mutex_unlock(&lock);
    if (l == NULL) {
        snprintf(j->error, sizeof j->error, "layer: %s", clmha_last_error());
        goto done;
    }
    /* A failing call on this thread sets this thread's last error only. */
    if (clmha_tensor_read(NULL, NULL, 0) != CLMHA_ERR_NULL_ARGUMENT ||
        strstr(clmha_last_error(), "tensor is NULL") == NULL) {
        snprintf(j->error, sizeof j->error, "thread-local last error wrong: %s",
                 clmha_last_error());
        goto done;
    }
    for (int step = 0; step < STEPS; step++) {
        float out[B * T * D];
        if (!run_once(c, l, out, j->shared != NULL)) {
            snprintf(j->error, sizeof j->error, "call: %s", clmha_last_error());
            goto done;
        }
        if (memcmp(out, expected, sizeof out) != 0) {
            snprintf(j->error, sizeof j->error, "step %d differs from the single-thread run", step);
            goto done;
        }
    }
    j->ok = 1;
done:
    if (j->shared)
        pthread_mutex_lock(&lock);
    clmha_layer_release(l);
    if (j->shared)
        pthread_mutex_unlock(&lock);
    if (j->shared == NULL)
        clmha_context_release(c);
    return NULL;
}

static void test_threads(void **state) {
    (void)state;
    test_rng r = {12};
    rng_fill(&r, q, B * T * D, -1, 1);
    rng_fill(&r, v, B * S * D, -1, 1);
    clmha_context *ctx = test_context();
    clmha_layer *l = make_layer(ctx);
    assert_non_null(l);
    assert_true(run_once(ctx, l, expected, 0));
    clmha_layer_release(l);
    for (int mode = 0; mode < 2; mode++) {
        pthread_t th[NT];
        job jobs[NT];
        for (int i = 0; i < NT; i++) {
            memset(&jobs[i], 0, sizeof jobs[i]);
            jobs[i].shared = mode ? ctx : NULL;
            assert_int_equal(pthread_create(&th[i], NULL, worker, &jobs[i]), 0);
        }
        for (int i = 0; i < NT; i++) {
            pthread_join(th[i], NULL);
            if (!jobs[i].ok) {
                print_error("%s context, thread %d: %s\n", mode ? "shared" : "own", i,
                            jobs[i].error);
                fail();
            }
        }
    }
    clmha_context_release(ctx);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_threads)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
