/*
 * test_settings.c - the settings surface (src/settings.c): the string form in options.tune and
 * CLMHA_TUNE, the struct in options.settings, which source wins where they overlap, that
 * CLMHA_TUNE is read only with use_environment, bad keys and values (refused at context
 * creation with a message naming the source, the key and the allowed values), the checks that
 * depend on a layer, the warning for the per-setting variables clmha no longer reads, and that
 * a setting reaches the layer (tail=0 costs launches, and changes nothing in the output),
 * and the tuned-settings file (src/tuned.c): saved, loaded under the explicit sources, skipped
 * with use_tuned off, and ignored with a warning when corrupt, stale or invalid. Whatever
 * CLMHA_TUNE a CI stage sets is restored after each test; the tuned files live in a private
 * cache folder, never the suite's.
 */
#include "support.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char *stage_tune;       /* CLMHA_TUNE as the test started, or NULL */
static char row_of_device[32]; /* the tuning row of the device the tests select */

static int save_env(void **state) {
    (void)state;
    const char *v = getenv("CLMHA_TUNE");
    stage_tune = v != NULL ? strdup(v) : NULL;
    unsetenv("CLMHA_TUNE");
    clmha_context *c = NULL;
    if (clmha_context_create(NULL, &c) != CLMHA_OK) {
        return -1;
    }
    clmha_device_info dev;
    clmha_context_device(c, &dev);
    snprintf(row_of_device, sizeof row_of_device, "%s", clmha_device_tuning_name(&dev));
    clmha_context_release(c);
    return 0;
}

static int restore_env(void **state) {
    (void)state;
    if (stage_tune != NULL) {
        setenv("CLMHA_TUNE", stage_tune, 1);
    } else {
        unsetenv("CLMHA_TUNE");
    }
    free(stage_tune);
    stage_tune = NULL;
    return 0;
}

/* The tuning row of the device a context with default options selects (found in save_env,
 * before a test changes CLMHA_TUNE). */
static const char *device_row(void) {
    return row_of_device;
}

/* "row=ROW (the device's row)" followed by @p rest, in @p buf. */
static const char *device_text(const char *rest, char *buf, size_t len) {
    snprintf(buf, len, "row=%s (the device's row)%s", device_row(), rest);
    return buf;
}

/* Asserts that @p text contains @p part, printing both otherwise. */
static void assert_has(const char *text, const char *part) {
    if (strstr(text, part) == NULL) {
        print_error("expected \"%s\" in: %s\n", part, text);
        fail();
    }
}

/* Creates a context with @p o; on success returns it with its settings text in @p buf. */
static clmha_context *create(const clmha_context_options *o, char *buf, size_t len) {
    clmha_context *c = NULL;
    assert_ok(clmha_context_create(o, &c));
    const size_t n = clmha_context_settings(c, buf, len);
    assert_int_equal(n, strlen(buf));
    return c;
}

/* Asserts that creating a context with @p o fails with CLMHA_ERR_INVALID_ARGUMENT and a
 * message holding every part given (NULL-terminated), leaving the output pointer NULL. */
static void assert_refused(const clmha_context_options *o, const char *const *parts) {
    clmha_context *c = NULL;
    assert_int_equal(clmha_context_create(o, &c), CLMHA_ERR_INVALID_ARGUMENT);
    assert_null(c);
    for (; *parts != NULL; parts++) {
        assert_has(clmha_last_error(), *parts);
    }
}

/* Each bad string in options.tune: refused, naming the source, the key and what is allowed. */
static void test_bad_strings(void **state) {
    (void)state;
    static const char *const cases[][4] = {
        {"split_wg=3", "split_wg=\"3\"", "a power of two from 1 to 65536", NULL},
        {"split_chunk=0", "split_chunk=\"0\"", "a whole number from 1 to", NULL},
        {"tile_rows=17", "tile_rows=\"17\"", "from 1 to 16", NULL},
        {"key_tile=6", "key_tile=\"6\"", "a power of two", NULL},
        {"gemm_cols=8", "gemm_cols=\"8\"", "is not 4 or 32", NULL},
        {"gemm_rows=33", "gemm_rows=\"33\"", "from 1 to 32", NULL},
        {"gemm_rows=many", "gemm_rows=\"many\"", "from 1 to 32", NULL},
        {"gemm_rows_few=0", "gemm_rows_few=\"0\"", "from 1 to 8", NULL},
        {"gemm_rows_few=9", "gemm_rows_few=\"9\"", "from 1 to 8", NULL},
        {"qkv_fuse=yes", "qkv_fuse=\"yes\"", "0 or 1 (also off or on)", NULL},
        {"prefetch=2", "prefetch=\"2\"", "0 or 1 (also off or on)", NULL},
        {"gemm=fast", "gemm=\"fast\"", "one of auto|clblast|own", NULL},
        {"row=tpu", "row=\"tpu\"",
         "one of cpu_narrow, cpu, nvidia, amd_gpu, intel_gpu, mali, adreno, gpu", NULL},
        {"max_local_mem=100", "max_local_mem=\"100\"", ">= 1024", NULL},
        {"max_item_loops=8", "max_item_loops=\"8\"", ">= 16", NULL},
        {"max_work_group_size=0", "max_work_group_size=\"0\"", ">= 1", NULL},
        {"split_wg=", "split_wg=\"\"", "a power of two", NULL},
        {"tail=0,tial=0", "unknown setting \"tial\"", "split_wg, split_chunk", NULL},
        {"tail", "\"tail\" is not key=value", NULL, NULL},
        {"tail=1                                                                              "
         "                                                                              x",
         "is longer than any setting", NULL, NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        clmha_context_options o;
        clmha_context_options_init(&o);
        o.tune = cases[i][0];
        const char *parts[] = {"options.tune: ", cases[i][1], cases[i][2], cases[i][3]};
        assert_refused(&o, parts);
    }
}

/* Valid strings: spaces, empty items, on/off and the last of a repeated key; the text in
 * force lists the row, then each setting with its source, in the table's order. */
static void test_good_strings(void **state) {
    (void)state;
    clmha_context_options o;
    clmha_context_options_init(&o);
    o.tune = " tail = off ,, split_chunk=4, split_chunk = 8 ,gemm=own, ";
    char text[512], want[512];
    clmha_context *c = create(&o, text, sizeof text);
    device_text(", gemm=own (options.tune), split_chunk=8 (options.tune), tail=0 (options.tune)",
                want, sizeof want);
    assert_string_equal(text, want);
    /* snprintf's contract: the whole length, whatever fits. */
    char small[8];
    assert_int_equal(clmha_context_settings(c, small, sizeof small), strlen(want));
    assert_int_equal(strlen(small), sizeof small - 1);
    assert_true(strncmp(small, want, sizeof small - 1) == 0);
    assert_int_equal(clmha_context_settings(c, NULL, 0), strlen(want));
    assert_int_equal(clmha_context_settings(NULL, text, sizeof text), 0);
    assert_string_equal(text, "");
    clmha_context_release(c);
    o.tune = "";
    c = create(&o, text, sizeof text);
    assert_string_equal(text, device_text("", want, sizeof want));
    clmha_context_release(c);
}

/* CLMHA_TUNE applies with use_environment only; options.tune wins over it key by key, and
 * options.settings over both; a bad CLMHA_TUNE names CLMHA_TUNE. */
static void test_sources(void **state) {
    (void)state;
    char text[512], want[512];
    const char *row = device_row();
    setenv("CLMHA_TUNE", "row=gpu,tail=0,split_chunk=4", 1);
    clmha_context *c = create(NULL, text, sizeof text);
    assert_string_equal(clmha_context_tuning_name(c), "gpu");
    assert_string_equal(text, "row=gpu (CLMHA_TUNE), split_chunk=4 (CLMHA_TUNE), "
                              "tail=0 (CLMHA_TUNE)");
    clmha_context_release(c);

    clmha_context_options o;
    clmha_context_options_init(&o);
    o.tune = "split_chunk=8,heads=0";
    c = create(&o, text, sizeof text);
    assert_string_equal(text, "row=gpu (CLMHA_TUNE), split_chunk=8 (options.tune), "
                              "heads=0 (options.tune), tail=0 (CLMHA_TUNE)");
    clmha_context_release(c);

    clmha_settings s = {0};
    s.split_chunk = 16, s.tail = CLMHA_SWITCH_ON, s.row = "cpu", s.gemm = CLMHA_GEMM_CLBLAST;
    o.settings = &s;
    c = create(&o, text, sizeof text);
    assert_string_equal(clmha_context_tuning_name(c), "cpu");
    assert_string_equal(text, "row=cpu (options.settings), gemm=clblast (options.settings), "
                              "split_chunk=16 (options.settings), heads=0 (options.tune), "
                              "tail=1 (options.settings)");
    clmha_context_release(c);

    /* Without use_environment, CLMHA_TUNE is not read: not even a bad one. */
    setenv("CLMHA_TUNE", "row=tpu", 1);
    o.use_environment = false;
    o.settings = NULL;
    c = create(&o, text, sizeof text);
    assert_string_equal(clmha_context_tuning_name(c), row);
    assert_string_equal(text, device_text(", split_chunk=8 (options.tune), heads=0 (options.tune)",
                                          want, sizeof want));
    clmha_context_release(c);
    o.use_environment = true;
    const char *parts[] = {"CLMHA_TUNE: row=\"tpu\"", NULL};
    assert_refused(&o, parts);
    unsetenv("CLMHA_TUNE");
}

/* options.settings: a zero struct overrides nothing; out-of-range fields are refused naming
 * "options.settings" and the key, and so are enum values outside their enums and a row name
 * that would smuggle in other keys. */
static void test_struct(void **state) {
    (void)state;
    char text[512], want[512];
    clmha_settings s;
    memset(&s, 0, sizeof s);
    clmha_context_options o;
    clmha_context_options_init(&o);
    o.settings = &s;
    clmha_context *c = create(&o, text, sizeof text);
    assert_string_equal(text, device_text("", want, sizeof want));
    clmha_context_release(c);

    s.gemm_cols = 8;
    const char *cols[] = {"options.settings: gemm_cols=\"8\" is not 4 or 32", NULL};
    assert_refused(&o, cols);
    memset(&s, 0, sizeof s);
    s.split = (clmha_switch)7;
    const char *sw[] = {"options.settings: split=7", "CLMHA_SWITCH_OFF", NULL};
    assert_refused(&o, sw);
    memset(&s, 0, sizeof s);
    s.gemm = (clmha_gemm_choice)9;
    const char *gm[] = {"options.settings: gemm=9", "CLMHA_GEMM_OWN", NULL};
    assert_refused(&o, gm);
    memset(&s, 0, sizeof s);
    s.row = "cpu,tail=0";
    const char *row[] = {"options.settings: row=\"cpu,tail=0\"", NULL};
    assert_refused(&o, row);
    memset(&s, 0, sizeof s);
    s.max_item_loops = 8;
    const char *loops[] = {"options.settings: max_item_loops=\"8\"", ">= 16", NULL};
    assert_refused(&o, loops);
    memset(&s, 0, sizeof s);
    s.split_wg = 4, s.key_tile = 8, s.max_local_mem = 16384, s.poison_buffers = CLMHA_SWITCH_ON;
    s.prefetch = CLMHA_SWITCH_OFF;
    c = create(&o, text, sizeof text);
    device_text(", max_local_mem=16384 (options.settings), poison_buffers=1 (options.settings), "
                "split_wg=4 (options.settings), key_tile=8 (options.settings), "
                "prefetch=0 (options.settings)",
                want, sizeof want);
    assert_string_equal(text, want);
    clmha_context_release(c);
}

/* Settings whose limits depend on the layer and device are checked when a layer is created:
 * the message names the source, the key and the most allowed; a context without them makes
 * the same layer. */
static void test_layer_limits(void **state) {
    (void)state;
    static const char *const cases[][2] = {
        {"split_wg=65536", "options.tune: split_wg=65536 is more than this layer can take"},
        {"key_tile=65536", "options.tune: key_tile=65536 is more than this layer can take"},
    };
    clmha_layer_config cfg;
    clmha_layer_config_init(&cfg);
    cfg.num_heads = 2, cfg.key_dim = 4;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        clmha_context *c = test_context_tuned(cases[i][0]);
        clmha_layer *l = NULL;
        assert_int_equal(clmha_layer_create(c, &cfg, 8, 8, 0, &l), CLMHA_ERR_INVALID_ARGUMENT);
        assert_null(l);
        assert_has(clmha_last_error(), cases[i][1]);
        assert_has(clmha_last_error(), "at most");
        clmha_context_release(c);
    }
    clmha_context *c = test_context_tuned("");
    clmha_layer *l = NULL;
    assert_ok(clmha_layer_create(c, &cfg, 8, 8, 0, &l));
    clmha_layer_release(l);
    clmha_context_release(c);
}

typedef struct captured {
    char text[4096];
} captured;

static void capture(clmha_log_level level, const char *msg, void *user) {
    captured *cap = user;
    if (level == CLMHA_LOG_WARN) {
        const size_t used = strlen(cap->text);
        snprintf(cap->text + used, sizeof cap->text - used, "%s\n", msg);
    }
}

/* A variable CLMHA_TUNE replaced is not read: a warning names the CLMHA_TUNE spelling, and the
 * value does not apply; a misspelt CLMHA_* name is named as not read; without
 * use_environment, no warning. */
static void test_old_variables(void **state) {
    (void)state;
    setenv("CLMHA_SPLIT_WG", "32", 1);
    setenv("CLMHA_TAIL", "0", 1);
    setenv("CLMHA_TUNNING", "gpu", 1);
    captured cap = {""};
    clmha_context_options o;
    clmha_context_options_init(&o);
    o.log_fn = capture, o.log_user = &cap, o.log_level = CLMHA_LOG_WARN;
    char text[512], want[512];
    clmha_context *c = create(&o, text, sizeof text);
    assert_string_equal(text, device_text("", want, sizeof want));
    assert_has(cap.text, "CLMHA_SPLIT_WG is no longer read: use CLMHA_TUNE=split_wg=32");
    assert_has(cap.text, "CLMHA_TAIL is no longer read: use CLMHA_TUNE=tail=0");
    assert_has(cap.text, "CLMHA_TUNNING is not a variable clmha reads");
    clmha_context_release(c);
    cap.text[0] = '\0';
    o.use_environment = false;
    c = create(&o, text, sizeof text);
    assert_string_equal(cap.text, "");
    clmha_context_release(c);
    unsetenv("CLMHA_SPLIT_WG");
    unsetenv("CLMHA_TAIL");
    unsetenv("CLMHA_TUNNING");
}

/* A setting reaches the layer: a decode step over a cache long enough for several chunks
 * ends in one gemm_tail launch by default (CPUs: the tail merges the chunks, projects and
 * splices), and with tail=0 in separate merge, projection and commit launches: more launches,
 * the same output. With prefetch=0 (attention_heads' next blocks not prefetched) the same
 * launches and the same output bit for bit. */
static void test_setting_reaches_layer(void **state) {
    (void)state;
    enum { S = 600, D = 32, H = 2, DK = 16 };
    uint64_t launches[3];
    static float out[3][D];
    static const char *const tunes[3] = {"tail=1", "tail=0", "prefetch=0"};
    for (int off = 0; off < 3; off++) {
        clmha_context_options o;
        clmha_context_options_init(&o);
        o.profile = true;
        o.tune = tunes[off];
        clmha_context *c = NULL;
        assert_ok(clmha_context_create(&o, &c));
        clmha_layer_config cfg;
        clmha_layer_config_init(&cfg);
        cfg.num_heads = H, cfg.key_dim = DK, cfg.seed = 5;
        clmha_layer *l = NULL;
        assert_ok(clmha_layer_create(c, &cfg, D, D, 0, &l));
        clmha_tensor *cache = NULL;
        assert_ok(clmha_layer_create_cache(l, 1, S, &cache));
        static float x[D];
        test_rng r = {9};
        rng_fill(&r, x, D, -1, 1);
        const size_t xs[3] = {1, 1, D};
        clmha_tensor *tx = test_tensor_f32(c, 3, xs, x), *to = test_tensor_f32(c, 3, xs, NULL);
        clmha_call_args a;
        clmha_call_args_init(&a);
        a.query = tx, a.value = tx, a.output = to, a.cache = cache;
        a.has_cache_update_index = true, a.cache_update_index = S - 1;
        assert_ok(clmha_layer_reserve(l, 1, 1, 1, S, false));
        clmha_profile prof;
        assert_ok(clmha_layer_call(l, &a)); /* warm: programs and workspace */
        assert_ok(clmha_context_take_profile(c, &prof));
        assert_ok(clmha_layer_call(l, &a));
        assert_ok(clmha_context_take_profile(c, &prof));
        launches[off] = prof.launches;
        assert_ok(clmha_tensor_read(to, out[off], sizeof out[off]));
        clmha_tensor_release(tx), clmha_tensor_release(to), clmha_tensor_release(cache);
        clmha_layer_release(l);
        clmha_context_release(c);
    }
    if (launches[1] <= launches[0]) {
        print_error("tail=0: %llu launches, tail=1: %llu; expected more without the tail\n",
                    (unsigned long long)launches[1], (unsigned long long)launches[0]);
        fail();
    }
    for (int i = 0; i < D; i++) {
        assert_close(out[1][i], out[0][i], 1e-5);
    }
    assert_int_equal(launches[2], launches[0]);
    assert_memory_equal(out[2], out[0], sizeof out[0]);
}

/* With use_environment false, no CLMHA_* variable counts: selection variables that match no
 * device, a kernel folder that does not exist, a cache folder, profiling, a CLMHA_TUNE that is
 * not valid, CLMHA_LOG (nothing reaches stderr, even at debug level with a layer being built),
 * an old per-setting variable and a misspelt one (no warning). With use_environment true the
 * same environment fails context creation. */
static void test_environment_off(void **state) {
    (void)state;
    char dir[] = "/tmp/clmha-env-XXXXXX";
    assert_non_null(mkdtemp(dir));
    const char *const vars[][2] = {
        {"CLMHA_PLATFORM", "no-such-platform"},
        {"CLMHA_DEVICE", "no-such-device"},
        {"CLMHA_DEVICE_TYPE", "accelerator"},
        {"CLMHA_KERNEL_DIR", "/nonexistent/kernels"},
        {"CLMHA_CACHE_DIR", dir},
        {"CLMHA_PROFILE", "1"},
        {"CLMHA_TUNE", "row=tpu"},
        {"CLMHA_LOG", "debug"},
        {"CLMHA_TAIL", "0"},
        {"CLMHA_SPLT_WG", "4"},
    };
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
        setenv(vars[i][0], vars[i][1], 1);
    }
    clmha_context *c = NULL;
    assert_int_not_equal(clmha_context_create(NULL, &c), CLMHA_OK);
    assert_null(c);

    clmha_context_options o;
    clmha_context_options_init(&o);
    o.use_environment = false;
    char err_path[] = "/tmp/clmha-stderr-XXXXXX";
    const int err_fd = mkstemp(err_path);
    assert_true(err_fd >= 0);
    fflush(stderr);
    const int saved = dup(2);
    assert_true(saved >= 0 && dup2(err_fd, 2) == 2);
    const clmha_status st = clmha_context_create(&o, &c);
    clmha_layer *l = NULL;
    clmha_status layer_st = CLMHA_ERR_INVALID_ARGUMENT;
    if (st == CLMHA_OK) {
        clmha_layer_config cfg;
        clmha_layer_config_init(&cfg);
        cfg.num_heads = 2, cfg.key_dim = 4;
        layer_st = clmha_layer_create(c, &cfg, 8, 8, 0, &l);
    }
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    const off_t written = lseek(err_fd, 0, SEEK_END);
    close(err_fd);
    remove(err_path);
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
        unsetenv(vars[i][0]);
    }
    assert_ok(st);
    assert_ok(layer_st); /* the embedded kernels, not CLMHA_KERNEL_DIR's */
    assert_int_equal(written, 0);
    char text[512], want[512];
    clmha_context_settings(c, text, sizeof text);
    assert_string_equal(text, device_text("", want, sizeof want));
    const char *cache = clmha_context_cache_dir(c);
    assert_true(cache == NULL || strncmp(cache, dir, strlen(dir)) != 0);
    clmha_profile prof;
    assert_int_equal(clmha_context_take_profile(c, &prof), CLMHA_ERR_INVALID_ARGUMENT);
    clmha_layer_release(l);
    clmha_context_release(c);
    rmdir(dir);
}

/* Rewrites line @p line (0-based) of the file at @p path with @p text. */
static void rewrite_line(const char *path, int line, const char *text) {
    char lines[8][1100];
    int n = 0;
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    while (n < 8 && fgets(lines[n], sizeof lines[n], f) != NULL) {
        n++;
    }
    fclose(f);
    assert_true(line < n);
    snprintf(lines[line], sizeof lines[line], "%s\n", text);
    f = fopen(path, "w");
    assert_non_null(f);
    for (int i = 0; i < n; i++) {
        fputs(lines[i], f);
    }
    fclose(f);
}

/* Tuned settings: clmha_context_save_tuned writes the device's file in the cache folder; a
 * later context loads it under CLMHA_TUNE and options.tune, key by key, unless use_tuned is off;
 * a file that is not one, was made for another driver, or holds an invalid setting is ignored
 * with a warning; saving refuses invalid settings, a context without a cache, and text that is
 * not one line. */
static void test_tuned_file(void **state) {
    (void)state;
    char dir[] = "/tmp/clmha-tuned-XXXXXX";
    assert_non_null(mkdtemp(dir));
    captured cap = {""};
    clmha_context_options o;
    clmha_context_options_init(&o);
    o.cache_dir = dir;
    o.log_fn = capture, o.log_user = &cap, o.log_level = CLMHA_LOG_WARN;
    char text[9000], want[9000], path[4200];
    clmha_context *c = create(&o, text, sizeof text);
    assert_string_equal(text, device_text("", want, sizeof want));
    const char *where = clmha_context_tuned_path(c);
    assert_non_null(where);
    assert_true(strncmp(where, dir, strlen(dir)) == 0);
    assert_int_equal(access(where, F_OK), -1); /* not tuned yet */
    assert_ok(clmha_context_save_tuned(c, "split_chunk=64,tail=0", "a test", path, sizeof path));
    assert_string_equal(path, where);
    /* Refused: invalid settings (the file stays as it is), lines, a NULL argument. */
    assert_int_equal(clmha_context_save_tuned(c, "split_chunk=0", NULL, NULL, 0),
                     CLMHA_ERR_INVALID_ARGUMENT);
    assert_has(clmha_last_error(), "split_chunk=\"0\"");
    assert_int_equal(clmha_context_save_tuned(c, "tail=0", "two\nlines", NULL, 0),
                     CLMHA_ERR_INVALID_ARGUMENT);
    assert_int_equal(clmha_context_save_tuned(c, NULL, NULL, NULL, 0), CLMHA_ERR_NULL_ARGUMENT);
    assert_int_equal(clmha_context_save_tuned(NULL, "", NULL, NULL, 0), CLMHA_ERR_NULL_ARGUMENT);
    clmha_context_release(c);

    /* Loaded by the next context, under CLMHA_TUNE and options.tune. */
    char src[4300];
    snprintf(src, sizeof src, "tuned: %s", path);
    c = create(&o, text, sizeof text);
    snprintf(want, sizeof want, "row=%s (the device's row), split_chunk=64 (%s), tail=0 (%s)",
             device_row(), src, src);
    assert_string_equal(text, want);
    clmha_context_release(c);
    setenv("CLMHA_TUNE", "tail=1", 1);
    o.tune = "heads=0";
    c = create(&o, text, sizeof text);
    snprintf(want, sizeof want,
             "row=%s (the device's row), split_chunk=64 (%s), heads=0 (options.tune), "
             "tail=1 (CLMHA_TUNE)",
             device_row(), src);
    assert_string_equal(text, want);
    clmha_context_release(c);
    unsetenv("CLMHA_TUNE");
    o.tune = NULL;
    o.use_tuned = false;
    c = create(&o, text, sizeof text);
    assert_string_equal(text, device_text("", want, sizeof want));
    clmha_context_release(c);
    o.use_tuned = true;
    assert_string_equal(cap.text, "");

    /* Ignored with a warning: another driver's file, an invalid setting, not a tuned file. */
    static const struct {
        int line;
        const char *text, *warning;
    } bad[] = {
        {3, "driver: 0.0-elsewhere", "made for driver \"0.0-elsewhere\""},
        {5, "settings: split_chunk=64,tial=0", "unknown setting \"tial\""},
        {0, "clmha tuned settings 99", "not a tuned-settings file"},
        {5, "split_chunk=64", "no settings line"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        c = create(&o, text, sizeof text);
        assert_ok(clmha_context_save_tuned(c, "split_chunk=64", NULL, NULL, 0));
        clmha_context_release(c);
        rewrite_line(path, bad[i].line, bad[i].text);
        cap.text[0] = '\0';
        c = create(&o, text, sizeof text);
        assert_string_equal(text, device_text("", want, sizeof want));
        assert_has(cap.text, "ignored the tuned settings in");
        assert_has(cap.text, bad[i].warning);
        clmha_context_release(c);
    }

    /* With the cache off there is no tuned file to load or save. */
    o.cache_dir = "off";
    c = create(&o, text, sizeof text);
    assert_null(clmha_context_tuned_path(c));
    assert_int_equal(clmha_context_save_tuned(c, "tail=0", NULL, NULL, 0),
                     CLMHA_ERR_INVALID_ARGUMENT);
    assert_has(clmha_last_error(), "cache is off");
    clmha_context_release(c);
    assert_null(clmha_context_tuned_path(NULL));
    remove(path);
    rmdir(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_bad_strings, save_env, restore_env),
        cmocka_unit_test_setup_teardown(test_good_strings, save_env, restore_env),
        cmocka_unit_test_setup_teardown(test_sources, save_env, restore_env),
        cmocka_unit_test_setup_teardown(test_struct, save_env, restore_env),
        cmocka_unit_test_setup_teardown(test_layer_limits, save_env, restore_env),
        cmocka_unit_test_setup_teardown(test_old_variables, save_env, restore_env),
        cmocka_unit_test_setup_teardown(test_setting_reaches_layer, save_env, restore_env),
        cmocka_unit_test_setup_teardown(test_tuned_file, save_env, restore_env),
        cmocka_unit_test_setup_teardown(test_environment_off, save_env, restore_env),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
