/*
 * test_keras_files.c - the Keras weights-file reader on files built here with libhdf5 (each a
 * copy of a real Keras layer, tests/data/nocache_basic.weights.h5, placed as a model would place
 * it): many groups and layers with no limit, Keras's order (the order the groups were written),
 * the reason a layer-like group cannot be loaded, a missing bias loaded as zeros (Whisper's key
 * projection), a specific message for every failure of clmha_layer_create_from_keras, and
 * clmha-run's --list, its failures' messages and its argument checks.
 */
#include "fixture.h"
#include "support.h"

#include <hdf5.h>

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *data_dir = CLMHA_TEST_DATA_DIR;
static char src_path[600]; /* a Keras file with one layer, at "block/self_attention" */
static char tmp[200];      /* the file a test builds */

static int setup(void **state) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    snprintf(src_path, sizeof src_path, "%s/nocache_basic.weights.h5", data_dir);
    snprintf(tmp, sizeof tmp, "/tmp/clmha-keras-files-%d.weights.h5", (int)getpid());
    return test_setup_context(state);
}

static int teardown(void **state) {
    remove(tmp);
    return test_teardown_context(state);
}

/* A new file at tmp (the caller closes it). */
static hid_t new_file(void) {
    hid_t f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(f >= 0);
    return f;
}

/* Writes the Keras layer's groups and datasets at @p dst in @p f one after another, as Keras
 * (through h5py) writes a model's, creating the groups on the way. */
static void put_layer(hid_t f, const char *dst) {
    hid_t src = H5Fopen(src_path, H5F_ACC_RDONLY, H5P_DEFAULT);
    assert_true(src >= 0);
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    static const char *const subs[] = {"query_dense", "key_dense", "value_dense", "output_dense"};
    for (int s = 0; s < 4; s++) {
        char name[300];
        snprintf(name, sizeof name, "%s/%s/vars", dst, subs[s]);
        hid_t g = H5Gcreate2(f, name, lcpl, H5P_DEFAULT, H5P_DEFAULT);
        assert_true(g >= 0);
        H5Gclose(g);
        for (int v = 0; v < 2; v++) {
            char from[300], to[300];
            snprintf(from, sizeof from, "block/self_attention/%s/vars/%d", subs[s], v);
            snprintf(to, sizeof to, "%s/%s/vars/%d", dst, subs[s], v);
            hid_t ds = H5Dopen2(src, from, H5P_DEFAULT);
            hid_t sp = H5Dget_space(ds);
            float data[512];
            assert_true(H5Sget_simple_extent_npoints(sp) <= 512);
            assert_true(H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0);
            hid_t out =
                H5Dcreate2(f, to, H5T_IEEE_F32LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
            assert_true(out >= 0);
            assert_true(H5Dwrite(out, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0);
            H5Dclose(out);
            H5Sclose(sp);
            H5Dclose(ds);
        }
    }
    H5Pclose(lcpl);
    H5Fclose(src);
}

/* Replaces <layer>/<sub>/vars/<idx> with an int8 array of the same shape (Keras's quantized
 * kernels are int8). */
static void make_int8(hid_t f, const char *layer, const char *sub, int idx) {
    char name[300];
    snprintf(name, sizeof name, "%s/%s/vars/%d", layer, sub, idx);
    hid_t ds = H5Dopen2(f, name, H5P_DEFAULT);
    hid_t sp = H5Dget_space(ds);
    H5Dclose(ds);
    assert_true(H5Ldelete(f, name, H5P_DEFAULT) >= 0);
    hid_t nd = H5Dcreate2(f, name, H5T_NATIVE_SCHAR, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(nd >= 0);
    hssize_t n = H5Sget_simple_extent_npoints(sp);
    signed char *zero = calloc((size_t)n, 1);
    H5Dwrite(nd, H5T_NATIVE_SCHAR, H5S_ALL, H5S_ALL, H5P_DEFAULT, zero);
    free(zero);
    H5Dclose(nd);
    H5Sclose(sp);
}

/* A layer after 300 other groups (more than the 256 the reader once tracked) is listed. */
static void test_many_groups(void **state) {
    (void)state;
    hid_t f = new_file();
    for (int i = 0; i < 300; i++) {
        char name[32];
        snprintf(name, sizeof name, "a%03d", i);
        hid_t g = H5Gcreate2(f, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        H5Gclose(g);
    }
    put_layer(f, "zz/attention");
    H5Fclose(f);
    clmha_keras_layer_info *list = NULL;
    size_t n = 0;
    assert_ok(clmha_keras_list_layers(tmp, &list, &n));
    assert_int_equal(n, 1);
    assert_string_equal(list[0].path, "zz/attention");
    free(list);
}

/* Forty-two layers, all listed. Their groups are written here in another order than a model's
 * (Keras writes block, block_1, ..., block_39 in that order), so the reader cannot take the
 * file's order for Keras's and orders them by name, suffixes as numbers: "block_2" before
 * "block_10". (Files Keras wrote keep its order: test_keras's model zoo.) */
static void test_keras_order(void **state) {
    (void)state;
    hid_t f = new_file();
    put_layer(f, "layers/zeta/attention");
    for (int i = 39; i >= 0; i--) {
        char name[64];
        snprintf(name, sizeof name, i ? "layers/block_%d/attention" : "layers/block/attention", i);
        put_layer(f, name);
    }
    put_layer(f, "layers/alpha/attention");
    H5Fclose(f);
    clmha_keras_layer_info *list = NULL;
    size_t n = 0;
    assert_ok(clmha_keras_list_layers(tmp, &list, &n));
    assert_int_equal(n, 42);
    assert_string_equal(list[0].path, "layers/alpha/attention");
    assert_string_equal(list[1].path, "layers/block/attention");
    for (int i = 1; i < 40; i++) {
        char name[64];
        snprintf(name, sizeof name, "layers/block_%d/attention", i);
        assert_string_equal(list[1 + i].path, name);
    }
    assert_string_equal(list[41].path, "layers/zeta/attention");
    free(list);
    /* Every one of them loads, by its full path. */
    clmha_layer *l = NULL;
    assert_ok(clmha_layer_create_from_keras(ctx, tmp, "layers/block_39/attention", NULL, &l));
    clmha_layer_release(l);
}

/* A group that looks like a layer but cannot be loaded is not listed, and asking for it says
 * why. */
static void test_rejected_layers(void **state) {
    (void)state;
    hid_t f = new_file();
    put_layer(f, "good");
    put_layer(f, "quantized");
    make_int8(f, "quantized", "query_dense", 0);
    put_layer(f, "extra");
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t ds = H5Dcreate2(f, "extra/key_dense/vars/2", H5T_NATIVE_FLOAT, sp, H5P_DEFAULT,
                          H5P_DEFAULT, H5P_DEFAULT);
    float one = 1;
    H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, &one);
    H5Dclose(ds);
    H5Sclose(sp);
    put_layer(f, "int_bias");
    make_int8(f, "int_bias", "value_dense", 1);
    H5Fclose(f);
    clmha_keras_layer_info *list = NULL, info;
    size_t n = 0;
    assert_ok(clmha_keras_list_layers(tmp, &list, &n));
    assert_int_equal(n, 1);
    assert_string_equal(list[0].path, "good");
    free(list);
    assert_ok(clmha_keras_find_layer(tmp, NULL, &info)); /* the only loadable one */
    assert_string_equal(info.path, "good");
    assert_int_equal(clmha_keras_find_layer(tmp, "quantized", &info), CLMHA_ERR_INVALID_ARGUMENT);
    /* an int8 query kernel makes it a quantized layer, whose scale is missing */
    assert_non_null(strstr(clmha_last_error(), "query_dense's kernel_scale (vars/1) is not of "
                                               "Keras's int8 shape"));
    assert_non_null(strstr(clmha_last_error(), "quantized"));
    assert_int_equal(clmha_keras_find_layer(tmp, "extra", &info), CLMHA_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(clmha_last_error(), "key_dense has a third variable (vars/2)"));
    assert_int_equal(clmha_keras_find_layer(tmp, "int_bias", &info), CLMHA_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(clmha_last_error(), "value_dense/vars/1 is an integer array"));
    /* Only unloadable layers: the message says so and why. */
    f = new_file();
    put_layer(f, "quantized");
    make_int8(f, "quantized", "output_dense", 0);
    H5Fclose(f);
    assert_int_equal(clmha_keras_find_layer(tmp, NULL, &info), CLMHA_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(clmha_last_error(), "no attention layer clmha can load"));
    assert_non_null(strstr(clmha_last_error(), "output_dense/vars/0 is an integer array while "
                                               "query_dense's kernels are float"));
}

/* Whisper's key projection has no bias beside the others' biases: the layer loads with a zero
 * key bias and the file's other biases. */
static void test_missing_bias_is_zero(void **state) {
    (void)state;
    hid_t f = new_file();
    put_layer(f, "whisper/attention");
    assert_true(H5Ldelete(f, "whisper/attention/key_dense/vars/1", H5P_DEFAULT) >= 0);
    H5Fclose(f);
    clmha_keras_layer_info info;
    assert_ok(clmha_keras_find_layer(tmp, NULL, &info));
    assert_true(info.use_bias);
    clmha_layer *l = NULL;
    assert_ok(clmha_layer_create_from_keras(ctx, tmp, NULL, NULL, &l));
    float kb[8], qb[8], want[8];
    assert_ok(clmha_layer_get_weight(l, CLMHA_WEIGHT_KEY_BIAS, kb, 8));
    assert_ok(clmha_layer_get_weight(l, CLMHA_WEIGHT_QUERY_BIAS, qb, 8));
    for (int i = 0; i < 8; i++) {
        assert_true(kb[i] == 0.0f);
    }
    /* The query bias is the file's (read here with libhdf5, not through clmha). */
    f = H5Fopen(src_path, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t ds = H5Dopen2(f, "block/self_attention/query_dense/vars/1", H5P_DEFAULT);
    assert_true(H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, want) >= 0);
    H5Dclose(ds);
    H5Fclose(f);
    assert_memory_equal(qb, want, sizeof want);
    clmha_layer_release(l);
}

/* Every failure class of clmha_layer_create_from_keras leaves its own message, in the thread's
 * last error and the context's. */
static void test_errors_survive(void **state) {
    (void)state;
    char path[700], cmd[1500];
    struct {
        const char *what, *name, *expect;
    } cases[] = {
        {"missing", NULL, "cannot open weights file"},
        {"empty", NULL, "not an HDF5 file"},
        {"text", NULL, "not an HDF5 file"},
        {"truncated", NULL, "truncated or corrupt"},
        {"no layer", NULL, "holds no attention layer"},
        {"unknown name", "nothing", "matches no attention layer"},
        {"ambiguous name", "attention", "matches more than one"},
        {"no name, two layers", NULL, "choose one by name"},
        {"quantized", "quantized", "kernel_scale (vars/1) is not of Keras's int8 shape"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *w = cases[i].what;
        snprintf(path, sizeof path, "%s", tmp);
        remove(tmp);
        if (!strcmp(w, "missing")) {
            snprintf(path, sizeof path, "/nonexistent/clmha/x.weights.h5");
        } else if (!strcmp(w, "empty") || !strcmp(w, "text")) {
            FILE *fp = fopen(tmp, "w");
            fputs(!strcmp(w, "text") ? "hello" : "", fp);
            fclose(fp);
        } else if (!strcmp(w, "truncated")) {
            /* The superblock is there, the rest is not. */
            snprintf(cmd, sizeof cmd, "head -c 2100 '%s' > '%s'", src_path, tmp);
            assert_int_equal(system(cmd), 0);
        } else if (!strcmp(w, "no layer")) {
            snprintf(path, sizeof path, "%s/nocache_basic.h5", data_dir);
        } else {
            hid_t f = new_file();
            put_layer(f, "a/attention");
            put_layer(f, "b/attention");
            put_layer(f, "quantized");
            make_int8(f, "quantized", "query_dense", 0);
            H5Fclose(f);
        }
        clmha_layer *l = NULL;
        clmha_status st = clmha_layer_create_from_keras(ctx, path, cases[i].name, NULL, &l);
        if (st == CLMHA_OK || strstr(clmha_last_error(), cases[i].expect) == NULL ||
            strcmp(clmha_context_last_error(ctx), clmha_last_error()) != 0) {
            print_error("%s: status %s, message \"%s\", context's \"%s\"\n", w,
                        clmha_status_name(st), clmha_last_error(), clmha_context_last_error(ctx));
            fail();
        }
        assert_null(l);
    }
}

/* Runs @p args through clmha-run with stdout and stderr into files; returns its exit status and
 * leaves stderr's first line in @p err. */
static int run_tool(const char *args, char *out_file, char *err, size_t err_len) {
    char cmd[2000], err_file[300];
    snprintf(err_file, sizeof err_file, "%s.err", tmp);
    snprintf(out_file, 300, "%s.out", tmp);
    snprintf(cmd, sizeof cmd, "%s %s > '%s' 2> '%s'", CLMHA_RUN_PATH, args, out_file, err_file);
    int rc = system(cmd);
    FILE *fp = fopen(err_file, "r");
    err[0] = '\0';
    if (fp != NULL) {
        if (fgets(err, (int)err_len, fp) == NULL) {
            err[0] = '\0';
        }
        fclose(fp);
    }
    remove(err_file);
    return rc;
}

static void test_run_tool(void **state) {
    (void)state;
    char args[1500], out[300], err[600];
    hid_t f = new_file();
    for (int i = 0; i < 13; i++) {
        char name[64];
        snprintf(name, sizeof name, i ? "layers/block_%d/attention" : "layers/block/attention", i);
        put_layer(f, name);
    }
    H5Fclose(f);
    /* --list: one line a layer, in Keras's order. */
    snprintf(args, sizeof args, "--weights '%s' --list", tmp);
    assert_int_equal(run_tool(args, out, err, sizeof err), 0);
    FILE *fp = fopen(out, "r");
    char line[600];
    int lines = 0;
    while (fgets(line, sizeof line, fp) != NULL) {
        char want[64];
        snprintf(want, sizeof want,
                 lines ? "layers/block_%d/attention\t" : "layers/block/attention\t", lines);
        assert_true(strncmp(line, want, strlen(want)) == 0);
        assert_non_null(strstr(line, "2 heads of 4/4"));
        lines++;
    }
    fclose(fp);
    remove(out);
    assert_int_equal(lines, 13);
    /* Failures name their cause. */
    struct {
        const char *args, *expect;
    } bad[] = {
        {"--weights /nonexistent/x.weights.h5 --inputs " CLMHA_TEST_DATA_DIR
         "/nocache_basic.h5 --output y",
         "cannot open weights file"},
        {"--weights /nonexistent/x.weights.h5 --list", "cannot open weights file"},
        {"--weights w --inputs i --output o --seed ''", "--seed needs a whole number"},
        {"--weights w --inputs i --output o --seed 99999999999999999999",
         "--seed needs a whole number"},
        {"--weights w --inputs i --output o --dropout ''", "--dropout needs a number"},
        {"--weights w --inputs i --output o --dropout 1.5", "--dropout needs a number"},
        {"--weights w --inputs i --output o --bogus", "unknown option '--bogus'"},
        {"--weights w --inputs i --output o --layer", "--layer needs a value"},
        {"--list", "--list needs --weights"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = run_tool(bad[i].args, out, err, sizeof err);
        remove(out);
        if (rc == 0 || strstr(err, bad[i].expect) == NULL) {
            print_error("clmha-run %s: exit %d, stderr \"%s\"\n", bad[i].args, rc, err);
            fail();
        }
    }
    /* Attention axes out of range are refused, not wrapped (4294967297 is 1 in 32 bits). */
    snprintf(args, sizeof args,
             "--weights '%s/axes_1.weights.h5' --inputs '%s/axes_1.h5' --output '%s.h5' "
             "--attention-axes 4294967297",
             data_dir, data_dir, tmp);
    assert_int_not_equal(run_tool(args, out, err, sizeof err), 0);
    remove(out);
    assert_non_null(strstr(err, "--attention-axes needs"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_many_groups),     cmocka_unit_test(test_keras_order),
        cmocka_unit_test(test_rejected_layers), cmocka_unit_test(test_missing_bias_is_zero),
        cmocka_unit_test(test_errors_survive),  cmocka_unit_test(test_run_tool),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
