/*
 * test_device.c - device selection: by index, by name substring, by type, the default (first
 * GPU, else first device), option-over-environment precedence, and the error that lists every
 * device. Rules are checked on a synthetic device list (two platforms, GPU and CPU devices);
 * the real path runs on PoCL exposing two CPU devices (POCL_DEVICES="pthread pthread", set by
 * ctest), plus contexts over an application's own OpenCL objects, and which row of the tuning
 * table a device and a context take.
 */
#include "support.h"

#include <stdlib.h>
#include <string.h>

static clmha_device_info fake[4];

static void add(int i, size_t p, size_t d, const char *pname, const char *pvendor, const char *name,
                cl_device_type type) {
    memset(&fake[i], 0, sizeof fake[i]);
    fake[i].platform_index = p;
    fake[i].device_index = d;
    snprintf(fake[i].platform_name, sizeof fake[i].platform_name, "%s", pname);
    snprintf(fake[i].platform_vendor, sizeof fake[i].platform_vendor, "%s", pvendor);
    snprintf(fake[i].name, sizeof fake[i].name, "%s", name);
    fake[i].type = type;
}

static int setup(void **state) {
    (void)state;
    add(0, 0, 0, "Portable Computing Language", "The pocl project", "pthread-alpha",
        CL_DEVICE_TYPE_CPU);
    add(1, 0, 1, "Portable Computing Language", "The pocl project", "pthread-beta",
        CL_DEVICE_TYPE_CPU);
    add(2, 1, 0, "Acme OpenCL", "Acme Corp", "Acme Radeon X", CL_DEVICE_TYPE_GPU);
    add(3, 1, 1, "Acme OpenCL", "Acme Corp", "Acme NPU", CL_DEVICE_TYPE_ACCELERATOR);
    unsetenv("CLMHA_PLATFORM");
    unsetenv("CLMHA_DEVICE");
    unsetenv("CLMHA_DEVICE_TYPE");
    return 0;
}

/* Selects with the given option strings (NULL = unset); returns the status. */
static clmha_status sel(const char *platform, const char *device, const char *type, size_t *out) {
    clmha_context_options o;
    clmha_context_options_init(&o);
    o.platform = platform;
    o.device = device;
    o.device_type = type;
    char reason[256];
    return clmha_select_device(&o, fake, 4, out, reason, sizeof reason);
}

static void test_default_prefers_gpu(void **state) {
    (void)state;
    size_t i = 99;
    assert_ok(sel(NULL, NULL, NULL, &i));
    assert_int_equal(i, 2);
    char reason[256];
    assert_ok(clmha_select_device(NULL, fake, 4, &i, reason, sizeof reason));
    assert_int_equal(i, 2);
    assert_non_null(strstr(reason, "GPU"));
    /* Without a GPU: the first device. */
    assert_ok(clmha_select_device(NULL, fake, 2, &i, NULL, 0));
    assert_int_equal(i, 0);
}

static void test_by_platform(void **state) {
    (void)state;
    size_t i;
    assert_ok(sel("0", NULL, NULL, &i));
    assert_int_equal(i, 0);
    assert_ok(sel("POCL", NULL, NULL, &i)); /* vendor substring, any case */
    assert_int_equal(i, 0);
    assert_ok(sel("acme", NULL, NULL, &i));
    assert_int_equal(i, 2);
    assert_ok(sel("1", "1", NULL, &i)); /* index within the platform */
    assert_int_equal(i, 3);
    assert_int_equal(sel("2", NULL, NULL, &i), CLMHA_ERR_DEVICE_NOT_FOUND);
    assert_int_equal(sel("nvidia", NULL, NULL, &i), CLMHA_ERR_DEVICE_NOT_FOUND);
    assert_non_null(strstr(clmha_last_error(), "nvidia"));
}

static void test_by_device(void **state) {
    (void)state;
    size_t i;
    assert_ok(sel(NULL, "1", NULL, &i)); /* across all platforms in order */
    assert_int_equal(i, 1);
    assert_ok(sel(NULL, "3", NULL, &i));
    assert_int_equal(i, 3);
    assert_ok(sel(NULL, "radeon", NULL, &i));
    assert_int_equal(i, 2);
    assert_ok(sel(NULL, "BETA", NULL, &i));
    assert_int_equal(i, 1);
    assert_ok(sel("pocl", "1", NULL, &i));
    assert_int_equal(i, 1);
    assert_int_equal(sel("pocl", "radeon", NULL, &i), CLMHA_ERR_DEVICE_NOT_FOUND);
    assert_int_equal(sel(NULL, "4", NULL, &i), CLMHA_ERR_DEVICE_NOT_FOUND);
}

static void test_by_type(void **state) {
    (void)state;
    size_t i;
    assert_ok(sel(NULL, NULL, "cpu", &i));
    assert_int_equal(i, 0);
    assert_ok(sel(NULL, NULL, "GPU", &i));
    assert_int_equal(i, 2);
    assert_ok(sel(NULL, NULL, "accelerator", &i));
    assert_int_equal(i, 3);
    assert_ok(sel(NULL, NULL, "all", &i)); /* an explicit "all" takes the first device */
    assert_int_equal(i, 0);
    assert_ok(sel(NULL, "1", "cpu", &i)); /* index after the type filter */
    assert_int_equal(i, 1);
    assert_ok(sel(NULL, "0", "gpu", &i));
    assert_int_equal(i, 2);
    assert_int_equal(sel(NULL, "1", "gpu", &i), CLMHA_ERR_DEVICE_NOT_FOUND);
    assert_int_equal(sel("pocl", NULL, "gpu", &i), CLMHA_ERR_DEVICE_NOT_FOUND);
    assert_int_equal(sel(NULL, NULL, "fpga", &i), CLMHA_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(clmha_last_error(), "fpga"));
    assert_non_null(strstr(clmha_last_error(), "gpu, cpu, accelerator or all"));
    /* A bad type, from the environment too, lists the devices there are. */
    setenv("CLMHA_DEVICE_TYPE", "bogus", 1);
    assert_int_equal(clmha_select_device(NULL, fake, 4, &i, NULL, 0), CLMHA_ERR_INVALID_ARGUMENT);
    unsetenv("CLMHA_DEVICE_TYPE");
    assert_non_null(strstr(clmha_last_error(), "CLMHA_DEVICE_TYPE=\"bogus\""));
    assert_non_null(strstr(clmha_last_error(), "device 0: Acme Radeon X [gpu]"));
}

static void test_error_lists_every_device(void **state) {
    (void)state;
    size_t i;
    assert_int_equal(sel(NULL, "tpu", NULL, &i), CLMHA_ERR_DEVICE_NOT_FOUND);
    const char *m = clmha_last_error();
    assert_non_null(strstr(m, "option device=\"tpu\""));
    assert_non_null(strstr(m, "platform 0: Portable Computing Language"));
    assert_non_null(strstr(m, "platform 1: Acme OpenCL"));
    for (int k = 0; k < 4; k++) {
        assert_non_null(strstr(m, fake[k].name));
    }
    assert_non_null(strstr(m, "device 1: Acme NPU [accelerator]"));
}

static void test_option_beats_environment(void **state) {
    (void)state;
    size_t i;
    setenv("CLMHA_DEVICE", "npu", 1);
    assert_ok(clmha_select_device(NULL, fake, 4, &i, NULL, 0));
    assert_int_equal(i, 3); /* environment over the default */
    assert_ok(sel(NULL, "beta", NULL, &i));
    assert_int_equal(i, 1); /* option over the environment */
    setenv("CLMHA_DEVICE_TYPE", "cpu", 1);
    setenv("CLMHA_DEVICE", "0", 1);
    assert_ok(clmha_select_device(NULL, fake, 4, &i, NULL, 0));
    assert_int_equal(i, 0);
    assert_ok(sel(NULL, NULL, "gpu", &i)); /* option type over environment type */
    assert_int_equal(i, 2);
    setenv("CLMHA_PLATFORM", "nowhere", 1);
    assert_int_equal(clmha_select_device(NULL, fake, 4, &i, NULL, 0), CLMHA_ERR_DEVICE_NOT_FOUND);
    assert_non_null(strstr(clmha_last_error(), "CLMHA_PLATFORM=\"nowhere\""));
    /* use_environment = false ignores every variable. */
    clmha_context_options o;
    clmha_context_options_init(&o);
    o.use_environment = false;
    assert_ok(clmha_select_device(&o, fake, 4, &i, NULL, 0));
    assert_int_equal(i, 2);
    setup(NULL);
}

/* The real enumeration, with PoCL exposing two CPU devices. */
static void test_real_devices(void **state) {
    (void)state;
    clmha_device_info *list = NULL;
    size_t n = 0;
    assert_ok(clmha_list_devices(&list, &n));
    assert_true(n >= 1);
    for (size_t i = 0; i < n; i++) {
        assert_true(strlen(list[i].name) > 0);
        assert_true(list[i].max_work_group_size >= 1);
        assert_true(list[i].local_mem_bytes > 0);
    }
    /* Pick the last device by index through the environment and through an option. */
    size_t last = n - 1;
    char idx[32];
    snprintf(idx, sizeof idx, "%zu", last);
    setenv("CLMHA_DEVICE", idx, 1);
    clmha_context *ctx = NULL;
    assert_ok(clmha_context_create(NULL, &ctx));
    clmha_device_info got;
    assert_ok(clmha_context_device(ctx, &got));
    assert_ptr_equal(got.device, list[last].device);
    clmha_context_release(ctx);
    setenv("CLMHA_DEVICE", "0", 1);
    clmha_context_options o;
    clmha_context_options_init(&o);
    o.device = idx;
    assert_ok(clmha_context_create(&o, &ctx));
    assert_ok(clmha_context_device(ctx, &got));
    assert_ptr_equal(got.device, list[last].device);
    clmha_context_release(ctx);
    /* A value that matches nothing: an error naming every device, no context. */
    setenv("CLMHA_DEVICE", "no-such-device", 1);
    ctx = NULL;
    assert_int_equal(clmha_context_create(NULL, &ctx), CLMHA_ERR_DEVICE_NOT_FOUND);
    assert_null(ctx);
    assert_non_null(strstr(clmha_last_error(), list[0].name));
    assert_non_null(strstr(clmha_last_error(), "CLMHA_DEVICE=\"no-such-device\""));
    unsetenv("CLMHA_DEVICE");
    if (getenv("POCL_DEVICES") != NULL && strcmp(getenv("POCL_DEVICES"), "pthread pthread") == 0) {
        assert_true(n >= 2);
    }
    clmha_free_device_list(list);
}

/* A context over the application's own OpenCL objects retains, and does not own, them. */
static void test_context_from_cl(void **state) {
    (void)state;
    clmha_device_info *list = NULL;
    size_t n = 0, s = 0;
    assert_ok(clmha_list_devices(&list, &n));
    assert_ok(clmha_select_device(NULL, list, n, &s, NULL, 0));
    cl_int err;
    cl_device_id dev = list[s].device;
    cl_context c = clCreateContext(NULL, 1, &dev, NULL, NULL, &err);
    assert_int_equal(err, CL_SUCCESS);
    cl_command_queue q = clCreateCommandQueue(c, dev, 0, &err);
    assert_int_equal(err, CL_SUCCESS);
    cl_uint before = 0, refs = 0;
    clGetContextInfo(c, CL_CONTEXT_REFERENCE_COUNT, sizeof before, &before, NULL);
    clmha_context *ctx = NULL;
    assert_ok(clmha_context_create_from_cl(c, dev, q, NULL, &ctx));
    assert_ptr_equal(clmha_context_queue(ctx), q);
    assert_ptr_equal(clmha_context_cl_context(ctx), c);
    clGetContextInfo(c, CL_CONTEXT_REFERENCE_COUNT, sizeof refs, &refs, NULL);
    assert_int_equal(refs, before + 1);
    assert_ok(clmha_context_warm_up(ctx));
    clmha_context_release(ctx);
    clGetContextInfo(c, CL_CONTEXT_REFERENCE_COUNT, sizeof refs, &refs, NULL);
    assert_int_equal(refs, before);
    /* The queue still works after clmha let go. */
    assert_int_equal(clFinish(q), CL_SUCCESS);

    /* An out-of-order queue is refused, clearly. */
    cl_command_queue ooo =
        clCreateCommandQueue(c, dev, CL_QUEUE_OUT_OF_ORDER_EXEC_MODE_ENABLE, &err);
    if (err == CL_SUCCESS) {
        assert_int_equal(clmha_context_create_from_cl(c, dev, ooo, NULL, &ctx),
                         CLMHA_ERR_INVALID_ARGUMENT);
        assert_non_null(strstr(clmha_last_error(), "in-order"));
        clReleaseCommandQueue(ooo);
    }
    clReleaseCommandQueue(q);
    clReleaseContext(c);
    clmha_free_device_list(list);
}

/* The row a real CPU device takes: "cpu_narrow" where its OpenCL driver reports fewer than 16
 * native float lanes (AVX2's 8), else "cpu", asked of the device here. */
static const char *cpu_row_of(const clmha_context *c) {
    clmha_device_info d;
    clmha_context_device(c, &d);
    cl_uint lanes = 0;
    assert_int_equal(
        clGetDeviceInfo(d.device, CL_DEVICE_NATIVE_VECTOR_WIDTH_FLOAT, sizeof lanes, &lanes, NULL),
        CL_SUCCESS);
    return lanes < 16 ? "cpu_narrow" : "cpu";
}

/* The tuning table: CPUs take a "cpu" row (whatever their vendor: "cpu_narrow" for fewer than
 * 16 float lanes, "cpu" for a description with no device to ask), GPUs their family's row by
 * vendor or name, every other device the "gpu" row; a context takes its device's row, or the
 * one the row setting names (CLMHA_TUNE with use_environment only), and a name that is no row
 * fails creation, listing the rows. */
static void test_tuning_rows(void **state) {
    (void)state;
    assert_string_equal(clmha_device_tuning_name(&fake[0]), "cpu");
    assert_string_equal(clmha_device_tuning_name(&fake[3]), "gpu");
    static const char *const families[][3] = {
        /* vendor, name, row */
        {"NVIDIA Corporation", "NVIDIA H200", "nvidia"},
        {"Advanced Micro Devices, Inc.", "gfx1030", "amd_gpu"},
        {"AMD", "AMD Radeon RX 6800 (radeonsi, navi21)", "amd_gpu"},
        {"Intel(R) Corporation", "Intel(R) Iris(R) Xe Graphics", "intel_gpu"},
        {"ARM", "Mali-G78", "mali"},
        {"QUALCOMM", "QUALCOMM Adreno(TM) 740", "adreno"},
        {"Imagination Technologies", "PowerVR B-Series", "gpu"},
    };
    for (size_t i = 0; i < sizeof families / sizeof families[0]; i++) {
        fake[2].type = CL_DEVICE_TYPE_GPU;
        snprintf(fake[2].vendor, sizeof fake[2].vendor, "%s", families[i][0]);
        snprintf(fake[2].name, sizeof fake[2].name, "%s", families[i][1]);
        assert_string_equal(clmha_device_tuning_name(&fake[2]), families[i][2]);
    }
    /* A CPU of a GPU vendor (AMD EPYC under PoCL, Intel's CPU runtime) is a CPU. */
    snprintf(fake[2].vendor, sizeof fake[2].vendor, "AuthenticAMD");
    snprintf(fake[2].name, sizeof fake[2].name, "pthread-AMD EPYC 7B13");
    fake[2].type = CL_DEVICE_TYPE_CPU | CL_DEVICE_TYPE_DEFAULT;
    assert_string_equal(clmha_device_tuning_name(&fake[2]), "cpu");
    assert_null(clmha_device_tuning_name(NULL));
    assert_null(clmha_context_tuning_name(NULL));

    const char *stage = getenv("CLMHA_TUNE"); /* a CI stage's settings, restored below */
    char *saved = stage != NULL ? strdup(stage) : NULL;
    unsetenv("CLMHA_TUNE");
    clmha_context *c = NULL;
    assert_ok(clmha_context_create(NULL, &c)); /* PoCL: a CPU */
    assert_string_equal(clmha_context_tuning_name(c), cpu_row_of(c));
    clmha_context_release(c);
    setenv("CLMHA_TUNE", "row=gpu", 1);
    assert_ok(clmha_context_create(NULL, &c));
    assert_string_equal(clmha_context_tuning_name(c), "gpu");
    clmha_context_release(c);
    setenv("CLMHA_TUNE", "row=tpu", 1);
    c = NULL;
    assert_int_equal(clmha_context_create(NULL, &c), CLMHA_ERR_INVALID_ARGUMENT);
    assert_null(c);
    assert_non_null(strstr(clmha_last_error(), "CLMHA_TUNE: row=\"tpu\""));
    assert_non_null(
        strstr(clmha_last_error(),
               "one of cpu_narrow, cpu, nvidia, amd_gpu, intel_gpu, mali, adreno, gpu"));
    clmha_context_options o;
    clmha_context_options_init(&o);
    o.use_environment = false;
    assert_ok(clmha_context_create(&o, &c));
    assert_string_equal(clmha_context_tuning_name(c), cpu_row_of(c));
    clmha_context_release(c);
    /* Each CPU row by name, whatever the device. */
    setenv("CLMHA_TUNE", "row=cpu", 1);
    assert_ok(clmha_context_create(NULL, &c));
    assert_string_equal(clmha_context_tuning_name(c), "cpu");
    clmha_context_release(c);
    setenv("CLMHA_TUNE", "row=cpu_narrow", 1);
    assert_ok(clmha_context_create(NULL, &c));
    assert_string_equal(clmha_context_tuning_name(c), "cpu_narrow");
    clmha_context_release(c);
    if (saved != NULL) {
        setenv("CLMHA_TUNE", saved, 1);
        free(saved);
    } else {
        unsetenv("CLMHA_TUNE");
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_default_prefers_gpu, setup),
        cmocka_unit_test_setup(test_by_platform, setup),
        cmocka_unit_test_setup(test_by_device, setup),
        cmocka_unit_test_setup(test_by_type, setup),
        cmocka_unit_test_setup(test_error_lists_every_device, setup),
        cmocka_unit_test_setup(test_option_beats_environment, setup),
        cmocka_unit_test_setup(test_real_devices, setup),
        cmocka_unit_test_setup(test_context_from_cl, setup),
        cmocka_unit_test_setup(test_tuning_rows, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
