/*
 * test_status.c - status names and messages cover every code; NULL handles and NULL outputs
 * are rejected with CLMHA_ERR_NULL_ARGUMENT and a message; releasing NULL is a no-op; the
 * version and the log callback.
 */
#include "support.h"

#include <string.h>

static void test_every_code_has_name_and_message(void **state) {
    (void)state;
    for (int i = 0; i < CLMHA_STATUS_COUNT; i++) {
        const char *n = clmha_status_name((clmha_status)i);
        const char *m = clmha_status_message((clmha_status)i);
        assert_non_null(n);
        assert_non_null(m);
        assert_true(strlen(n) > 1 && strlen(m) > 5);
        assert_string_not_equal(n, "UNKNOWN");
        for (int j = 0; j < i; j++) {
            assert_string_not_equal(n, clmha_status_name((clmha_status)j));
            assert_string_not_equal(m, clmha_status_message((clmha_status)j));
        }
    }
    assert_int_equal(CLMHA_OK, 0);
    assert_string_equal(clmha_status_name(CLMHA_OK), "OK");
    assert_string_equal(clmha_status_name(CLMHA_ERR_SHAPE_MISMATCH), "ERR_SHAPE_MISMATCH");
    assert_string_equal(clmha_status_name((clmha_status)CLMHA_STATUS_COUNT), "UNKNOWN");
    assert_string_equal(clmha_status_name((clmha_status)-3), "UNKNOWN");
    assert_string_equal(clmha_status_message((clmha_status)9999), "unknown status");
}

static void test_version(void **state) {
    (void)state;
    char want[64];
    snprintf(want, sizeof want, "%d.%d.%d", CLMHA_VERSION_MAJOR, CLMHA_VERSION_MINOR,
             CLMHA_VERSION_PATCH);
    assert_string_equal(clmha_version_string(), want);
    assert_string_equal(CLMHA_VERSION_STRING, want);
}

#define EXPECT_NULL_ARG(call, word)                                                                \
    do {                                                                                           \
        assert_int_equal((call), CLMHA_ERR_NULL_ARGUMENT);                                         \
        assert_non_null(strstr(clmha_last_error(), (word)));                                       \
    } while (0)

static void test_null_arguments(void **state) {
    (void)state;
    clmha_context *ctx = test_context();
    clmha_device_info *list;
    size_t n, sel;
    EXPECT_NULL_ARG(clmha_list_devices(NULL, &n), "NULL");
    EXPECT_NULL_ARG(clmha_select_device(NULL, NULL, 1, &sel, NULL, 0), "NULL");
    EXPECT_NULL_ARG(clmha_context_create(NULL, NULL), "ctx");
    EXPECT_NULL_ARG(clmha_context_create_from_cl(NULL, NULL, NULL, NULL, NULL), "ctx");
    EXPECT_NULL_ARG(clmha_context_finish(NULL), "ctx");
    EXPECT_NULL_ARG(clmha_context_device(NULL, NULL), "ctx");
    EXPECT_NULL_ARG(clmha_context_device(ctx, NULL), "info");
    EXPECT_NULL_ARG(clmha_context_get_stats(ctx, NULL), "stats");
    EXPECT_NULL_ARG(clmha_context_warm_up(NULL), "ctx");
    size_t shape[1] = {4};
    clmha_tensor *t = NULL;
    EXPECT_NULL_ARG(clmha_tensor_create(NULL, CLMHA_FLOAT32, 1, shape, &t), "ctx");
    EXPECT_NULL_ARG(clmha_tensor_create(ctx, CLMHA_FLOAT32, 1, shape, NULL), "tensor");
    EXPECT_NULL_ARG(clmha_tensor_create(ctx, CLMHA_FLOAT32, 1, NULL, &t), "shape");
    EXPECT_NULL_ARG(clmha_tensor_wrap(ctx, CLMHA_FLOAT32, 1, shape, NULL, 0, &t), "buffer");
    EXPECT_NULL_ARG(clmha_tensor_write(NULL, shape, 4), "tensor");
    EXPECT_NULL_ARG(clmha_tensor_read(NULL, shape, 4), "tensor");
    assert_ok(clmha_tensor_create(ctx, CLMHA_FLOAT32, 1, shape, &t));
    EXPECT_NULL_ARG(clmha_tensor_write(t, NULL, 16), "host");
    EXPECT_NULL_ARG(clmha_tensor_read(t, NULL, 16), "host");
    clmha_layer_config cfg;
    clmha_layer_config_init(&cfg);
    clmha_layer *layer = NULL;
    EXPECT_NULL_ARG(clmha_layer_create(NULL, &cfg, 4, 4, 0, &layer), "ctx");
    EXPECT_NULL_ARG(clmha_layer_create(ctx, NULL, 4, 4, 0, &layer), "config");
    EXPECT_NULL_ARG(clmha_layer_create(ctx, &cfg, 4, 4, 0, NULL), "layer");
    assert_ok(clmha_layer_create(ctx, &cfg, 4, 4, 0, &layer));
    clmha_call_args a;
    clmha_call_args_init(&a);
    EXPECT_NULL_ARG(clmha_layer_call(NULL, &a), "layer");
    EXPECT_NULL_ARG(clmha_layer_call(layer, NULL), "args");
    EXPECT_NULL_ARG(clmha_layer_call(layer, &a), "query");
    a.query = t;
    EXPECT_NULL_ARG(clmha_layer_call(layer, &a), "output");
    float w[16];
    int rank;
    size_t ws[CLMHA_MAX_RANK];
    EXPECT_NULL_ARG(clmha_layer_set_weight(NULL, CLMHA_WEIGHT_QUERY_KERNEL, w, 4), "layer");
    EXPECT_NULL_ARG(clmha_layer_set_weight(layer, CLMHA_WEIGHT_QUERY_KERNEL, NULL, 4), "data");
    EXPECT_NULL_ARG(clmha_layer_get_weight(layer, CLMHA_WEIGHT_QUERY_KERNEL, NULL, 4), "data");
    EXPECT_NULL_ARG(clmha_layer_weight_shape(layer, CLMHA_WEIGHT_QUERY_KERNEL, NULL, ws), "rank");
    EXPECT_NULL_ARG(clmha_layer_weight_shape(NULL, CLMHA_WEIGHT_QUERY_KERNEL, &rank, ws), "layer");
    /* The context remembers the last error too. */
    assert_non_null(strstr(clmha_context_last_error(ctx), "rank is NULL"));
    /* Releasing NULL is a no-op; accessors of NULL are harmless. */
    clmha_context_release(NULL);
    clmha_tensor_release(NULL);
    clmha_layer_release(NULL);
    clmha_free_device_list(NULL);
    assert_int_equal(clmha_tensor_rank(NULL), 0);
    assert_int_equal(clmha_tensor_numel(NULL), 0);
    assert_null(clmha_tensor_buffer(NULL));
    assert_string_equal(clmha_context_last_error(NULL), "");
    assert_null(clmha_context_cl_context(NULL));
    assert_null(clmha_weight_name((clmha_weight)99));
    assert_string_equal(clmha_weight_name(CLMHA_WEIGHT_OUTPUT_BIAS), "output_dense/bias");
    clmha_layer_release(layer);
    clmha_tensor_release(t);
    clmha_context_release(ctx);
    (void)list;
}

typedef struct log_capture {
    int count[5];
    char last[512];
} log_capture;

static void capture(clmha_log_level level, const char *msg, void *user) {
    log_capture *c = user;
    c->count[level]++;
    snprintf(c->last, sizeof c->last, "%s", msg);
}

static void test_log_callback(void **state) {
    (void)state;
    log_capture cap;
    memset(&cap, 0, sizeof cap);
    clmha_context_options o;
    clmha_context_options_init(&o);
    o.log_fn = capture;
    o.log_user = &cap;
    o.log_level = CLMHA_LOG_DEBUG;
    clmha_context *ctx = NULL;
    assert_ok(clmha_context_create(&o, &ctx));
    assert_true(cap.count[CLMHA_LOG_INFO] >= 1); /* the device it chose */
    size_t shape[1] = {3};
    clmha_tensor *t = NULL;
    assert_int_equal(clmha_tensor_create(ctx, CLMHA_FLOAT32, 1, shape, &t), CLMHA_OK);
    assert_int_equal(clmha_tensor_write(t, shape, 5), CLMHA_ERR_INVALID_ARGUMENT);
    assert_int_equal(cap.count[CLMHA_LOG_ERROR], 1);
    assert_non_null(strstr(cap.last, "bytes is 5"));
    clmha_tensor_release(t);
    clmha_context_release(ctx);

    /* A quieter level filters. */
    memset(&cap, 0, sizeof cap);
    o.log_level = CLMHA_LOG_ERROR;
    assert_ok(clmha_context_create(&o, &ctx));
    assert_int_equal(cap.count[CLMHA_LOG_INFO], 0);
    clmha_context_release(ctx);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_code_has_name_and_message),
        cmocka_unit_test(test_version),
        cmocka_unit_test(test_null_arguments),
        cmocka_unit_test(test_log_callback),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
