/*
 * test_program.c - kernel programs: embedded sources and CLMHA_KERNEL_DIR, a broken kernel
 * giving a build error with the whole log and options, and the on-disk binary cache: a miss
 * then a hit (the second context loads binaries, no source build), corrupted, truncated and
 * stale files, and a valid header around another program's binary, falling back to a source
 * build and being replaced, and "off" writing nothing.
 * Also the launch checks against the kernel's and device's limits.
 */
#include "internal.h"
#include "support.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[64];

static int setup(void **state) {
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/clmha-test-cache-XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static clmha_context *ctx_with(const char *cache_dir, const char *kernel_dir) {
    clmha_context_options o;
    clmha_context_options_init(&o);
    o.cache_dir = cache_dir;
    o.kernel_dir = kernel_dir;
    clmha_context *ctx = NULL;
    assert_ok(clmha_context_create(&o, &ctx));
    return ctx;
}

/* The programs clmha_context_warm_up builds: one a kernel file (.cl); the headers (.clh) are
 * only included by them. Counted from the embedded names, with at least the four headers. */
static size_t warm_programs(void) {
    size_t n = 0, headers = 0;
    for (size_t i = 0; i < clmha__embedded_kernel_count; i++) {
        const char *name = clmha__embedded_kernels[i].name;
        const size_t len = strlen(name);
        n += len > 3 && strcmp(name + len - 3, ".cl") == 0;
        headers += len > 4 && strcmp(name + len - 4, ".clh") == 0;
    }
    assert_true(headers >= 4 && n + headers == clmha__embedded_kernel_count);
    return n;
}

static clmha_context_stats warm(const char *cache_dir) {
    clmha_context *ctx = ctx_with(cache_dir, NULL);
    assert_ok(clmha_context_warm_up(ctx));
    clmha_context_stats s;
    assert_ok(clmha_context_get_stats(ctx, &s));
    clmha_context_release(ctx);
    return s;
}

/* Lists the cache files (sorted) into names; returns the count. */
static int cache_files(char names[][300], int max) {
    DIR *d = opendir(dir);
    int n = 0;
    assert_non_null(d);
    struct dirent *e;
    while ((e = readdir(d)) != NULL && n < max) {
        if (strstr(e->d_name, ".clbin") && !strstr(e->d_name, ".tmp")) {
            snprintf(names[n++], 300, "%.64s/%.200s", dir, e->d_name);
        }
    }
    closedir(d);
    qsort(names, (size_t)n, 300, (int (*)(const void *, const void *))strcmp);
    return n;
}

static long file_size(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

static void test_cache_miss_then_hit(void **state) {
    (void)state;
    size_t nk = warm_programs();
    clmha_context_stats s = warm(dir);
    assert_int_equal(s.programs_built_from_source, nk);
    assert_int_equal(s.programs_loaded_from_cache, 0);
    assert_int_equal(s.cache_files_written, nk);
    char names[64][300];
    assert_int_equal(cache_files(names, 64), (int)nk);
    s = warm(dir);
    assert_int_equal(s.programs_built_from_source, 0);
    assert_int_equal(s.programs_loaded_from_cache, nk);
    assert_int_equal(s.cache_files_written, 0);
}

static void damage_and_check(void (*damage)(const char *path, const char *other)) {
    char names[64][300];
    warm(dir);
    int n = cache_files(names, 64);
    assert_true(n >= 2);
    long size = file_size(names[0]);
    damage(names[0], names[1]);
    clmha_context_stats s = warm(dir);
    assert_int_equal(s.cache_files_rejected, 1);
    assert_int_equal(s.programs_built_from_source, 1);
    assert_int_equal(s.programs_loaded_from_cache, warm_programs() - 1);
    assert_int_equal(s.cache_files_written, 1);
    assert_int_equal(file_size(names[0]), size); /* replaced by a good file */
    s = warm(dir);
    assert_int_equal(s.programs_loaded_from_cache, warm_programs());
    assert_int_equal(s.cache_files_rejected, 0);
}

static void corrupt(const char *path, const char *other) {
    (void)other;
    FILE *f = fopen(path, "r+b");
    assert_non_null(f);
    fseek(f, -10, SEEK_END);
    int c = fgetc(f);
    fseek(f, -10, SEEK_END);
    fputc(c ^ 0x5a, f);
    fclose(f);
}

static void truncate_half(const char *path, const char *other) {
    (void)other;
    assert_int_equal(truncate(path, file_size(path) / 2), 0);
}

static void stale(const char *path, const char *other) {
    /* Another program's (valid) file under this name: the key in the header differs. */
    char cmd[700];
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", other, path);
    assert_int_equal(system(cmd), 0);
}

/* Another program's binary inside a header that is valid for this name: its key, and the
 * other's payload size and hash (the header's layout: magic 8, version 4, reserved 4, key 16,
 * size 8, hash 8 bytes). Every check on the file passes, but the program lacks the kernels. */
static void foreign_binary(const char *path, const char *other) {
    unsigned char key[16];
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    assert_int_equal(fseek(f, 16, SEEK_SET), 0);
    assert_int_equal(fread(key, 1, 16, f), 16);
    fclose(f);
    long n = file_size(other);
    unsigned char *data = malloc((size_t)n);
    f = fopen(other, "rb");
    assert_int_equal(fread(data, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    memcpy(data + 16, key, 16);
    f = fopen(path, "wb");
    assert_int_equal(fwrite(data, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    free(data);
}

static void garbage(const char *path, const char *other) {
    (void)other;
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fputs("not a cache file", f);
    fclose(f);
}

static void test_cache_corrupted(void **state) {
    (void)state;
    damage_and_check(corrupt);
}

static void test_cache_truncated(void **state) {
    (void)state;
    damage_and_check(truncate_half);
}

static void test_cache_stale(void **state) {
    (void)state;
    damage_and_check(stale);
}

static void test_cache_foreign_binary(void **state) {
    (void)state;
    damage_and_check(foreign_binary);
}

static void test_cache_garbage(void **state) {
    (void)state;
    damage_and_check(garbage);
}

static void test_cache_off(void **state) {
    (void)state;
    clmha_context *ctx = ctx_with("off", NULL);
    assert_null(clmha_context_cache_dir(ctx));
    assert_ok(clmha_context_warm_up(ctx));
    clmha_context_stats s;
    assert_ok(clmha_context_get_stats(ctx, &s));
    assert_int_equal(s.cache_files_written, 0);
    assert_int_equal(s.programs_built_from_source, warm_programs());
    clmha_context_release(ctx);
    char names[64][300];
    assert_int_equal(cache_files(names, 64), 0);
    /* The environment variable too. */
    setenv("CLMHA_CACHE_DIR", "OFF", 1);
    assert_ok(clmha_context_create(NULL, &ctx));
    assert_null(clmha_context_cache_dir(ctx));
    clmha_context_release(ctx);
    setenv("CLMHA_CACHE_DIR", dir, 1);
    assert_ok(clmha_context_create(NULL, &ctx));
    assert_string_equal(clmha_context_cache_dir(ctx), dir);
    clmha_context_release(ctx);
    /* The default location follows XDG_CACHE_HOME. */
    unsetenv("CLMHA_CACHE_DIR");
    setenv("XDG_CACHE_HOME", "/tmp/xdg-test", 1);
    assert_ok(clmha_context_create(NULL, &ctx));
    assert_string_equal(clmha_context_cache_dir(ctx), "/tmp/xdg-test/clmha");
    clmha_context_release(ctx);
}

/* Copies the source kernels into a folder, optionally replacing one file's text. */
static void kernel_copy(const char *to, const char *file, const char *text) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s' && cp %s/*.cl %s/*.clh '%s'", to, to,
             CLMHA_SOURCE_KERNEL_DIR, CLMHA_SOURCE_KERNEL_DIR, to);
    assert_int_equal(system(cmd), 0);
    if (file != NULL) {
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", to, file);
        FILE *f = fopen(path, "w");
        assert_non_null(f);
        fputs(text, f);
        fclose(f);
    }
}

static void test_build_failure_keeps_log(void **state) {
    (void)state;
    char kd[300];
    snprintf(kd, sizeof kd, "%s/kernels-broken", dir);
    kernel_copy(kd, "attention_rows.cl",
                "__kernel void attention_rows(__global float *x) { x[0] = undeclared_name; }\n");
    /* Through the environment, as a kernel developer would. */
    setenv("CLMHA_KERNEL_DIR", kd, 1);
    clmha_context *ctx = ctx_with("off", NULL);
    unsetenv("CLMHA_KERNEL_DIR");
    clmha_layer_config cfg;
    clmha_layer_config_init(&cfg);
    cfg.num_heads = 2;
    cfg.key_dim = 8;
    clmha_layer *layer = NULL;
    assert_int_equal(clmha_layer_create(ctx, &cfg, 16, 16, 0, &layer), CLMHA_ERR_BUILD_FAILURE);
    assert_null(layer);
    const char *log = clmha_context_build_log(ctx);
    assert_non_null(strstr(log, "program: attention_rows.cl"));
    assert_non_null(strstr(log, "options: -cl-std=CL1.2 -DDK=8 -DDV=8"));
    assert_non_null(strstr(log, "undeclared_name"));
    assert_non_null(strstr(clmha_last_error(), "attention_rows.cl"));
    assert_non_null(strstr(clmha_last_error(), "clmha_context_build_log"));
    assert_int_equal(clmha_context_last_cl_error(ctx), CL_BUILD_PROGRAM_FAILURE);
    clmha_context_release(ctx);
}

static void test_kernel_dir(void **state) {
    (void)state;
    char kd[300];
    snprintf(kd, sizeof kd, "%s/kernels-copy", dir);
    kernel_copy(kd, NULL, NULL);
    clmha_context *ctx = ctx_with("off", kd);
    assert_ok(clmha_context_warm_up(ctx));
    clmha_context_release(ctx);
    /* A missing file is a clear error naming the path. */
    char path[400];
    snprintf(path, sizeof path, "%s/splice.cl", kd);
    assert_int_equal(remove(path), 0);
    ctx = ctx_with("off", kd);
    assert_int_equal(clmha_context_warm_up(ctx), CLMHA_ERR_KERNEL_SOURCE);
    assert_non_null(strstr(clmha_last_error(), "splice.cl"));
    clmha_context_release(ctx);
    /* Through the environment variable. */
    setenv("CLMHA_KERNEL_DIR", kd, 1);
    assert_ok(clmha_context_create(NULL, &ctx));
    assert_int_equal(clmha_context_warm_up(ctx), CLMHA_ERR_KERNEL_SOURCE);
    clmha_context_release(ctx);
    unsetenv("CLMHA_KERNEL_DIR");
}

static void test_launch_limits(void **state) {
    (void)state;
    clmha_context *ctx = ctx_with("off", NULL);
    cl_program prog;
    clmha__kernel k;
    assert_ok(clmha__program_get(ctx, "bias.cl", "", &prog));
    assert_ok(clmha__kernel_create(ctx, prog, "fill_bias", &k));
    /* The limit recorded at creation is the driver's own. */
    size_t driver_wg = 0;
    clmha_device_info dev;
    assert_ok(clmha_context_device(ctx, &dev));
    assert_int_equal(clGetKernelWorkGroupInfo(k.k, dev.device, CL_KERNEL_WORK_GROUP_SIZE,
                                              sizeof driver_wg, &driver_wg, NULL),
                     CL_SUCCESS);
    size_t max = k.max_wg;
    assert_true(max >= 1 && max <= driver_wg);
    assert_int_equal(clmha__launch(ctx, &k, 1, max + 1), CLMHA_ERR_DEVICE_LIMIT);
    assert_non_null(strstr(clmha_last_error(), "work-group size"));
    assert_int_equal(clmha__launch(ctx, &k, 1, 0), CLMHA_ERR_DEVICE_LIMIT);
    /* A kernel needing more local memory than the device has is refused before launch. */
    clmha__kernel big = k;
    big.local_mem = dev.local_mem_bytes + 1;
    assert_int_equal(clmha__launch(ctx, &big, 1, 1), CLMHA_ERR_DEVICE_LIMIT);
    assert_non_null(strstr(clmha_last_error(), "local memory"));
    clmha__kernel missing = {NULL, NULL, 0, 0};
    assert_int_equal(clmha__kernel_create(ctx, prog, "no_such_kernel", &missing),
                     CLMHA_ERR_KERNEL_SOURCE);
    assert_non_null(strstr(clmha_last_error(), "no_such_kernel"));
    assert_null(missing.k);
    clmha__kernel_release(&k);
    clmha__kernel_release(&missing);
    clmha_context_release(ctx);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_cache_miss_then_hit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cache_corrupted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cache_truncated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cache_stale, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cache_garbage, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cache_foreign_binary, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cache_off, setup, teardown),
        cmocka_unit_test_setup_teardown(test_build_failure_keeps_log, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kernel_dir, setup, teardown),
        cmocka_unit_test_setup_teardown(test_launch_limits, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
