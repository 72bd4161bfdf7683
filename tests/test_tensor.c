/*
 * test_tensor.c - device tensors: create, wrap at an offset (retaining the buffer), blocking
 * round trips, accessors, and every invalid shape, dtype, offset, size and context.
 */
#include "support.h"

#include <stdint.h>
#include <string.h>

static void test_round_trip(void **state) {
    (void)state;
    clmha_context *ctx = test_context();
    size_t shape[3] = {2, 3, 5};
    float in[30], out[30];
    for (int i = 0; i < 30; i++) {
        in[i] = (float)i * 0.5f - 3.0f;
    }
    clmha_tensor *t = test_tensor_f32(ctx, 3, shape, in);
    assert_int_equal(clmha_tensor_rank(t), 3);
    assert_int_equal(clmha_tensor_dim(t, 1), 3);
    assert_int_equal(clmha_tensor_dim(t, -1), 5);
    assert_int_equal(clmha_tensor_dim(t, 3), 0);
    assert_int_equal(clmha_tensor_numel(t), 30);
    assert_int_equal(clmha_tensor_dtype(t), CLMHA_FLOAT32);
    assert_ok(clmha_tensor_read(t, out, sizeof out));
    assert_memory_equal(in, out, sizeof in);
    assert_int_equal(clmha_tensor_read(t, out, sizeof out - 4), CLMHA_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(clmha_last_error(), "holds 120"));
    clmha_tensor_release(t);

    uint8_t m[6] = {1, 0, 1, 1, 0, 0}, m2[6];
    size_t ms[2] = {2, 3};
    clmha_tensor *tm = test_tensor_u8(ctx, 2, ms, m);
    assert_ok(clmha_tensor_read(tm, m2, 6));
    assert_memory_equal(m, m2, 6);
    clmha_tensor_release(tm);

    /* float16: two bytes an element, bits as given; zeroing (fill.cl) clears odd sizes too. */
    uint16_t h[5] = {0x3c00, 0xc000, 0x7bff, 0x0001, 0x8000}, h2[5];
    size_t hs[1] = {5};
    clmha_tensor *th = NULL;
    assert_ok(clmha_tensor_create(ctx, CLMHA_FLOAT16, 1, hs, &th));
    assert_int_equal(clmha_tensor_dtype(th), CLMHA_FLOAT16);
    assert_ok(clmha_tensor_write(th, h, sizeof h));
    assert_ok(clmha_tensor_read(th, h2, sizeof h2));
    assert_memory_equal(h, h2, sizeof h);
    assert_int_equal(clmha_tensor_read(th, h2, 20), CLMHA_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(clmha_last_error(), "holds 10"));
    assert_ok(clmha_tensor_zero(th));
    assert_ok(clmha_tensor_read(th, h2, sizeof h2));
    for (int i = 0; i < 5; i++) {
        assert_int_equal(h2[i], 0);
    }
    clmha_tensor_release(th);
    clmha_context_release(ctx);
}

static void test_wrap(void **state) {
    (void)state;
    clmha_context *ctx = test_context();
    cl_int err;
    float host[16];
    for (int i = 0; i < 16; i++) {
        host[i] = (float)i;
    }
    cl_mem buf = clCreateBuffer(clmha_context_cl_context(ctx),
                                CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, sizeof host, host, &err);
    assert_int_equal(err, CL_SUCCESS);
    size_t shape[2] = {2, 3};
    clmha_tensor *t = NULL;
    assert_ok(clmha_tensor_wrap(ctx, CLMHA_FLOAT32, 2, shape, buf, 4 * sizeof(float), &t));
    clReleaseMemObject(buf); /* the tensor keeps its own reference */
    float out[6];
    assert_ok(clmha_tensor_read(t, out, sizeof out));
    for (int i = 0; i < 6; i++) {
        assert_true(out[i] == (float)(i + 4));
    }
    assert_int_equal(clmha_tensor_offset(t), 16);
    clmha_tensor_release(t);

    buf = clCreateBuffer(clmha_context_cl_context(ctx), CL_MEM_READ_WRITE, 64, NULL, &err);
    assert_int_equal(clmha_tensor_wrap(ctx, CLMHA_FLOAT32, 2, shape, buf, 2, &t),
                     CLMHA_ERR_INVALID_ARGUMENT); /* misaligned */
    assert_non_null(strstr(clmha_last_error(), "offset_bytes"));
    assert_int_equal(clmha_tensor_wrap(ctx, CLMHA_FLOAT32, 2, shape, buf, 48, &t),
                     CLMHA_ERR_OUT_OF_RANGE); /* 48 + 24 > 64 */
    assert_non_null(strstr(clmha_last_error(), "buffer has 64"));
    size_t big[1] = {17};
    assert_int_equal(clmha_tensor_wrap(ctx, CLMHA_FLOAT32, 1, big, buf, 0, &t),
                     CLMHA_ERR_OUT_OF_RANGE);
    clReleaseMemObject(buf);

    /* A buffer of another OpenCL context. */
    clmha_context *other = test_context();
    cl_mem foreign =
        clCreateBuffer(clmha_context_cl_context(other), CL_MEM_READ_WRITE, 64, NULL, &err);
    assert_int_equal(clmha_tensor_wrap(ctx, CLMHA_FLOAT32, 2, shape, foreign, 0, &t),
                     CLMHA_ERR_CONTEXT_MISMATCH);
    clReleaseMemObject(foreign);
    clmha_context_release(other);
    clmha_context_release(ctx);
}

static void test_invalid_shapes(void **state) {
    (void)state;
    clmha_context *ctx = test_context();
    clmha_tensor *t = NULL;
    size_t s[CLMHA_MAX_RANK + 1] = {2, 2, 2, 2, 2, 2, 2, 2, 2};
    assert_int_equal(clmha_tensor_create(ctx, CLMHA_FLOAT32, 0, s, &t), CLMHA_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(clmha_last_error(), "rank is 0"));
    assert_int_equal(clmha_tensor_create(ctx, CLMHA_FLOAT32, CLMHA_MAX_RANK + 1, s, &t),
                     CLMHA_ERR_INVALID_ARGUMENT);
    assert_ok(clmha_tensor_create(ctx, CLMHA_FLOAT32, CLMHA_MAX_RANK, s, &t));
    clmha_tensor_release(t);
    t = NULL;
    size_t zero[2] = {3, 0};
    assert_int_equal(clmha_tensor_create(ctx, CLMHA_FLOAT32, 2, zero, &t),
                     CLMHA_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(clmha_last_error(), "shape[1] is 0"));
    assert_non_null(strstr(clmha_last_error(), "Keras accepts zero-sized dims"));
    assert_int_equal(clmha_tensor_create(ctx, (clmha_dtype)7, 2, s, &t),
                     CLMHA_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(clmha_last_error(), "dtype"));
    size_t huge[3] = {SIZE_MAX / 2, 4, 4};
    assert_int_equal(clmha_tensor_create(ctx, CLMHA_FLOAT32, 3, huge, &t), CLMHA_ERR_OUT_OF_RANGE);
    assert_non_null(strstr(clmha_last_error(), "overflows"));
    clmha_device_info info;
    assert_ok(clmha_context_device(ctx, &info));
    size_t too_big[1] = {(size_t)(info.max_alloc_bytes / 4) + 1};
    assert_int_equal(clmha_tensor_create(ctx, CLMHA_FLOAT32, 1, too_big, &t),
                     CLMHA_ERR_DEVICE_LIMIT);
    assert_non_null(strstr(clmha_last_error(), "allows at most"));
    assert_null(t);
    clmha_context_release(ctx);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_wrap),
        cmocka_unit_test(test_invalid_shapes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
