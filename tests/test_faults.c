/*
 * test_faults.c - fault injection. This program defines the OpenCL functions clmha calls
 * (the library's objects are linked in statically and bind to these definitions); each
 * forwards to the real one through dlsym(RTLD_NEXT) unless it is the N-th call since the
 * fault was armed, which instead fails: out of resources for enqueues, kernels and queries,
 * out of memory for allocations, a build failure for builds, an invalid work-group size for
 * every other launch. For every N over creating a context and layer, loading Keras weights,
 * and a call in each cache mode, clmha must return a clear error (never crash), leave the
 * caller's tensors and the cache byte-identical, and refuse further work on a context whose
 * device reported out-of-resources. The LeakSanitizer run of CI checks that nothing leaks on
 * any of these paths.
 */
#define _GNU_SOURCE
#include "support.h"

#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>

static long armed_at; /* 0: no fault; else the call number that fails */
static long call_no;  /* calls since arming */
static bool fired;

static bool inject(void) {
    if (armed_at <= 0) {
        return false;
    }
    if (++call_no == armed_at) {
        fired = true;
        return true;
    }
    return false;
}

#define REAL(name) ((__typeof__(&name))dlsym(RTLD_NEXT, #name))

cl_mem CL_API_CALL clCreateBuffer(cl_context c, cl_mem_flags f, size_t n, void *h, cl_int *e) {
    if (inject()) {
        if (e)
            *e = CL_MEM_OBJECT_ALLOCATION_FAILURE;
        return NULL;
    }
    return REAL(clCreateBuffer)(c, f, n, h, e);
}

cl_int CL_API_CALL clEnqueueNDRangeKernel(cl_command_queue q, cl_kernel k, cl_uint d,
                                          const size_t *o, const size_t *g, const size_t *l,
                                          cl_uint n, const cl_event *w, cl_event *ev) {
    if (inject())
        return (call_no % 2) ? CL_OUT_OF_RESOURCES : CL_INVALID_WORK_GROUP_SIZE;
    return REAL(clEnqueueNDRangeKernel)(q, k, d, o, g, l, n, w, ev);
}

cl_int CL_API_CALL clEnqueueWriteBuffer(cl_command_queue q, cl_mem b, cl_bool bl, size_t o,
                                        size_t n, const void *p, cl_uint ne, const cl_event *w,
                                        cl_event *ev) {
    if (inject())
        return CL_OUT_OF_RESOURCES;
    return REAL(clEnqueueWriteBuffer)(q, b, bl, o, n, p, ne, w, ev);
}

cl_int CL_API_CALL clEnqueueReadBuffer(cl_command_queue q, cl_mem b, cl_bool bl, size_t o, size_t n,
                                       void *p, cl_uint ne, const cl_event *w, cl_event *ev) {
    if (inject())
        return CL_OUT_OF_RESOURCES;
    return REAL(clEnqueueReadBuffer)(q, b, bl, o, n, p, ne, w, ev);
}

cl_int CL_API_CALL clEnqueueFillBuffer(cl_command_queue q, cl_mem b, const void *p, size_t ps,
                                       size_t o, size_t n, cl_uint ne, const cl_event *w,
                                       cl_event *ev) {
    if (inject())
        return CL_OUT_OF_RESOURCES;
    return REAL(clEnqueueFillBuffer)(q, b, p, ps, o, n, ne, w, ev);
}

cl_program CL_API_CALL clCreateProgramWithSource(cl_context c, cl_uint n, const char **s,
                                                 const size_t *l, cl_int *e) {
    if (inject()) {
        if (e)
            *e = CL_OUT_OF_HOST_MEMORY;
        return NULL;
    }
    return REAL(clCreateProgramWithSource)(c, n, s, l, e);
}

cl_int CL_API_CALL clBuildProgram(cl_program p, cl_uint n, const cl_device_id *d, const char *o,
                                  void(CL_CALLBACK *cb)(cl_program, void *), void *u) {
    if (inject())
        return CL_BUILD_PROGRAM_FAILURE;
    return REAL(clBuildProgram)(p, n, d, o, cb, u);
}

cl_kernel CL_API_CALL clCreateKernel(cl_program p, const char *name, cl_int *e) {
    if (inject()) {
        if (e)
            *e = CL_OUT_OF_RESOURCES;
        return NULL;
    }
    return REAL(clCreateKernel)(p, name, e);
}

cl_int CL_API_CALL clSetKernelArg(cl_kernel k, cl_uint i, size_t n, const void *v) {
    if (inject())
        return CL_OUT_OF_HOST_MEMORY;
    return REAL(clSetKernelArg)(k, i, n, v);
}

cl_int CL_API_CALL clGetKernelWorkGroupInfo(cl_kernel k, cl_device_id d,
                                            cl_kernel_work_group_info p, size_t n, void *v,
                                            size_t *r) {
    if (inject())
        return CL_OUT_OF_RESOURCES;
    return REAL(clGetKernelWorkGroupInfo)(k, d, p, n, v, r);
}

cl_context CL_API_CALL clCreateContext(
    const cl_context_properties *p, cl_uint n, const cl_device_id *d,
    void(CL_CALLBACK *cb)(const char *, const void *, size_t, void *), void *u, cl_int *e) {
    if (inject()) {
        if (e)
            *e = CL_OUT_OF_HOST_MEMORY;
        return NULL;
    }
    return REAL(clCreateContext)(p, n, d, cb, u, e);
}

cl_command_queue CL_API_CALL clCreateCommandQueue(cl_context c, cl_device_id d,
                                                  cl_command_queue_properties p, cl_int *e) {
    if (inject()) {
        if (e)
            *e = CL_OUT_OF_RESOURCES;
        return NULL;
    }
    return REAL(clCreateCommandQueue)(c, d, p, e);
}

static void arm(long n) {
    armed_at = n, call_no = 0, fired = false;
}

static void disarm(void) {
    armed_at = 0;
}

/* Keeps arming at 1, 2, 3, ... until the operation runs without reaching the fault. */
#define MAX_N 2000

static clmha_layer *make_layer_as(clmha_context *ctx, clmha_dtype cache_dtype) {
    clmha_layer_config cfg;
    clmha_layer_config_init(&cfg);
    cfg.num_heads = 2, cfg.key_dim = 4, cfg.seed = 5, cfg.cache_dtype = cache_dtype;
    clmha_layer *l = NULL;
    return clmha_layer_create(ctx, &cfg, 6, 6, 0, &l) == CLMHA_OK ? l : NULL;
}

static clmha_layer *make_layer(clmha_context *ctx) {
    return make_layer_as(ctx, CLMHA_FLOAT32);
}

/* Contexts with the setting gemm=own (see main). */
static clmha_context_options own_gemm;

static void test_faults_creating(void **state) {
    (void)state;
    long n;
    for (n = 1; n < MAX_N; n++) {
        arm(n);
        clmha_context *ctx = NULL;
        clmha_layer *l = NULL;
        clmha_status st = clmha_context_create(&own_gemm, &ctx);
        if (st == CLMHA_OK) {
            l = make_layer(ctx);
            st = l ? CLMHA_OK : CLMHA_ERR_OPENCL;
        }
        bool hit = fired;
        disarm();
        if (!hit) {
            assert_int_equal(st, CLMHA_OK);
            clmha_layer_release(l);
            clmha_context_release(ctx);
            break;
        }
        /* A fault that a fallback absorbs (a cached binary that fails to load) may still
         * succeed; otherwise the error says what failed. */
        if (st != CLMHA_OK) {
            assert_true(strlen(clmha_last_error()) > 10);
        }
        clmha_layer_release(l);
        clmha_context_release(ctx);
    }
    print_message("creating a context and layer: %ld fault points, each handled\n", n - 1);
    assert_true(n > 10 && n < MAX_N);
}

static void test_faults_loading(void **state) {
    (void)state;
    char path[512];
    snprintf(path, sizeof path, "%s/nocache_basic.weights.h5", CLMHA_TEST_DATA_DIR);
    clmha_context *ctx = test_context();
    long n;
    for (n = 1; n < MAX_N; n++) {
        clmha_layer *l = NULL;
        arm(n);
        clmha_status st = clmha_layer_create_from_keras(ctx, path, NULL, NULL, &l);
        bool hit = fired;
        disarm();
        if (!hit) {
            assert_int_equal(st, CLMHA_OK);
            clmha_layer_release(l);
            break;
        }
        if (st != CLMHA_OK) {
            assert_null(l);
            assert_true(strlen(clmha_last_error()) > 10);
        }
        clmha_layer_release(l);
        if (clmha_context_finish(ctx) == CLMHA_ERR_CONTEXT_BROKEN) {
            clmha_context_release(ctx); /* out of resources: start again on a new one */
            ctx = test_context();
        }
    }
    clmha_context_release(ctx);
    print_message("loading Keras weights: %ld fault points, each handled\n", n - 1);
    assert_true(n > 5 && n < MAX_N);
}

enum { B = 2, T = 3, S = 6, D = 6, H = 2, DK = 4 };

/* Calls the layer with a fault armed at point @p n; returns whether it fired, with the call's
 * status in @p st (a failure must come with a message). */
static bool call_armed(clmha_layer *l, const clmha_call_args *a, long n, clmha_status *st) {
    arm(n);
    *st = clmha_layer_call(l, a);
    bool hit = fired;
    disarm();
    if (hit && *st != CLMHA_OK) {
        assert_true(strlen(clmha_last_error()) > 10);
    }
    return hit;
}

/* Reads @p size bytes of tensor @p t through the context's raw queue: after a failed call
 * nothing the caller owns may have changed, and a context broken by out-of-resources refuses
 * even reads through clmha (the fault was injected; the PoCL queue itself is fine). */
static void read_raw(clmha_context *ctx, const clmha_tensor *t, void *dst, size_t size) {
    cl_command_queue cq = clmha_context_queue(ctx);
    assert_int_equal(clFinish(cq), CL_SUCCESS);
    assert_int_equal(
        clEnqueueReadBuffer(cq, clmha_tensor_buffer(t), CL_TRUE, 0, size, dst, 0, NULL, NULL),
        CL_SUCCESS);
}

/* One call in a cache mode (0 none, 1 static, 2 update, 3 update over a half cache), armed at
 * fault point n. Returns whether the fault fired. */
static bool call_with_fault(int mode, long n) {
    const bool half = mode == 3;
    mode = half ? 2 : mode;
    clmha_context *ctx = test_context();
    clmha_layer *l = make_layer_as(ctx, half ? CLMHA_FLOAT16 : CLMHA_FLOAT32);
    assert_non_null(l);
    test_rng r = {(uint64_t)mode + 1};
    float q[B * T * D], v[B * T * D], cache[B * 2 * S * H * DK], out0[B * T * D];
    float p0[B * H * T * S];
    rng_fill(&r, q, B * T * D, -1, 1);
    rng_fill(&r, v, B * T * D, -1, 1);
    rng_fill(&r, cache, B * 2 * S * H * DK, -1, 1);
    rng_fill(&r, out0, B * T * D, 5, 6);
    rng_fill(&r, p0, B * H * T * S, 5, 6);
    uint8_t m[B * T * S];
    for (size_t i = 0; i < sizeof m; i++)
        m[i] = (uint8_t)(i % 4 != 1);
    size_t qs[3] = {B, T, D}, cs[5] = {B, 2, S, H, DK}, ms[3] = {B, T, S}, ps[4] = {B, H, T, S};
    size_t vs[3] = {B, mode == 0 ? S : T, D};
    float vfull[B * S * D];
    rng_fill(&r, vfull, B * S * D, -1, 1);
    clmha_tensor *tq = test_tensor_f32(ctx, 3, qs, q);
    clmha_tensor *tv = test_tensor_f32(ctx, 3, vs, mode == 0 ? vfull : v);
    uint16_t cache16[B * 2 * S * H * DK];
    for (size_t i = 0; i < B * 2 * S * H * DK; i++) {
        cache16[i] = half_from_float(cache[i]);
    }
    const void *cache_bytes = half ? (const void *)cache16 : (const void *)cache;
    const size_t cache_size = half ? sizeof cache16 : sizeof cache;
    clmha_tensor *tc = NULL;
    assert_ok(clmha_tensor_create(ctx, half ? CLMHA_FLOAT16 : CLMHA_FLOAT32, 5, cs, &tc));
    assert_ok(clmha_tensor_write(tc, cache_bytes, cache_size));
    clmha_tensor *tm = test_tensor_u8(ctx, 3, ms, m);
    clmha_tensor *to = test_tensor_f32(ctx, 3, qs, out0);
    clmha_tensor *tp = test_tensor_f32(ctx, 4, ps, p0);
    clmha_call_args a;
    clmha_call_args_init(&a);
    a.query = tq, a.value = tv, a.attention_mask = tm, a.output = to, a.attention_scores = tp;
    a.cache = mode ? tc : NULL;
    a.has_cache_update_index = mode == 2, a.cache_update_index = 2;
    clmha_status st;
    bool hit = call_armed(l, &a, n, &st);
    if (hit && st != CLMHA_OK) {
        float c1[B * 2 * S * H * DK], o1[B * T * D], p1[B * H * T * S];
        read_raw(ctx, tc, c1, cache_size);
        read_raw(ctx, to, o1, sizeof o1);
        read_raw(ctx, tp, p1, sizeof p1);
        if (memcmp(c1, cache_bytes, cache_size) || memcmp(o1, out0, sizeof o1) ||
            memcmp(p1, p0, sizeof p1)) {
            print_error("mode %d, fault point %ld: a failed call (%s) changed the %s\n", mode, n,
                        clmha_last_error(),
                        memcmp(c1, cache_bytes, cache_size) ? "cache"
                        : memcmp(o1, out0, sizeof o1)       ? "output"
                                                            : "attention scores");
            fail();
        }
        /* After out-of-resources the context refuses further work clearly. */
        if (clmha_context_last_cl_error(ctx) == CL_OUT_OF_RESOURCES) {
            assert_int_equal(clmha_layer_call(l, &a), CLMHA_ERR_CONTEXT_BROKEN);
            assert_non_null(strstr(clmha_last_error(), "create a new one"));
        }
    } else {
        assert_int_equal(st, CLMHA_OK);
    }
    clmha_tensor *all[] = {tq, tv, tc, tm, to, tp};
    for (int i = 0; i < 6; i++)
        clmha_tensor_release(all[i]);
    clmha_layer_release(l);
    clmha_context_release(ctx);
    return hit;
}

/* A decode step as generation runs it, armed at fault point n: self-attention (the query is the
 * value), one new position, no probabilities, over a half cache, 8 features. Its launches are
 * the fused projection (which also rounds the new keys and values to half), the attention and
 * gemm_tail (merge, output projection and cache splice); a failure anywhere leaves the cache and
 * the output as they were. Returns whether the fault fired. */
static bool decode_with_fault(long n) {
    enum { DD = 8, SD = 5 };
    clmha_context *ctx = test_context();
    clmha_layer_config cfg;
    clmha_layer_config_init(&cfg);
    cfg.num_heads = 2, cfg.key_dim = 4, cfg.seed = 6, cfg.cache_dtype = CLMHA_FLOAT16;
    clmha_layer *l = NULL;
    assert_ok(clmha_layer_create(ctx, &cfg, DD, DD, 0, &l));
    test_rng r = {11};
    float x[B * DD], out0[B * DD], o1[B * DD], cf[B * 2 * SD * DD];
    uint16_t cache[B * 2 * SD * DD], c1[B * 2 * SD * DD];
    rng_fill(&r, x, B * DD, -1, 1);
    rng_fill(&r, out0, B * DD, 5, 6);
    rng_fill(&r, cf, B * 2 * SD * DD, -1, 1);
    for (size_t i = 0; i < B * 2 * SD * DD; i++) {
        cache[i] = half_from_float(cf[i]);
    }
    size_t xs[3] = {B, 1, DD}, cs[5] = {B, 2, SD, 2, 4};
    clmha_tensor *tx = test_tensor_f32(ctx, 3, xs, x), *to = test_tensor_f32(ctx, 3, xs, out0);
    clmha_tensor *tc = NULL;
    assert_ok(clmha_tensor_create(ctx, CLMHA_FLOAT16, 5, cs, &tc));
    assert_ok(clmha_tensor_write(tc, cache, sizeof cache));
    clmha_call_args a;
    clmha_call_args_init(&a);
    a.query = tx, a.value = tx, a.output = to, a.cache = tc, a.causal = true;
    a.has_cache_update_index = true, a.cache_update_index = 3;
    clmha_status st;
    bool hit = call_armed(l, &a, n, &st);
    if (hit && st != CLMHA_OK) {
        read_raw(ctx, tc, c1, sizeof c1);
        read_raw(ctx, to, o1, sizeof o1);
        if (memcmp(c1, cache, sizeof c1) || memcmp(o1, out0, sizeof o1)) {
            print_error("decode step, fault point %ld: a failed call (%s) changed the %s\n", n,
                        clmha_last_error(), memcmp(c1, cache, sizeof c1) ? "cache" : "output");
            fail();
        }
    } else {
        assert_int_equal(st, CLMHA_OK);
    }
    clmha_tensor_release(tx), clmha_tensor_release(to), clmha_tensor_release(tc);
    clmha_layer_release(l);
    clmha_context_release(ctx);
    return hit;
}

static void test_faults_decoding(void **state) {
    (void)state;
    long n;
    for (n = 1; n < MAX_N; n++) {
        if (!decode_with_fault(n)) {
            break;
        }
    }
    print_message("a decode step (self-attention, half cache, no probabilities): %ld fault "
                  "points, each handled\n",
                  n - 1);
    assert_true(n > 10 && n < MAX_N);
}

static void test_faults_calling(void **state) {
    (void)state;
    for (int mode = 0; mode < 4; mode++) {
        long n;
        for (n = 1; n < MAX_N; n++) {
            if (!call_with_fault(mode, n)) {
                break;
            }
        }
        print_message("a call in cache mode %d%s: %ld fault points, each handled\n",
                      mode == 3 ? 2 : mode, mode == 3 ? " over a half cache" : "", n - 1);
        assert_true(n > 10 && n < MAX_N);
    }
}

int main(void) {
    /* clmha's own GEMM: every OpenCL call of a projection is clmha's, so each is a fault point
     * this test controls (CLBlast's internal error handling is CLBlast's). */
    setenv("CLMHA_TEST_TUNE", "gemm=own", 1); /* test_context()'s */
    clmha_context_options_init(&own_gemm);
    own_gemm.tune = "gemm=own";
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_faults_creating),
        cmocka_unit_test(test_faults_loading),
        cmocka_unit_test(test_faults_calling),
        cmocka_unit_test(test_faults_decoding),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
