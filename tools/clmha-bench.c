/*
 * clmha-bench - benchmarks the layer on the selected OpenCL device: a decode step (T = 1 into
 * a cache of S positions) and a prefill (T = S), GPT-2-small-sized by default, over sequence
 * lengths and batch sizes. In the same run it measures the device's own ceilings (a float4
 * copy kernel's bandwidth and CLBlast's SGEMM rate) and reports, per case: the median and
 * spread of the whole call over repeated runs after warm-up, the device time of attention and
 * projections (from clmha's profiling), attention bytes / time as a fraction of the copy
 * bandwidth (decode) and attention FLOP/s as a fraction of the SGEMM rate (prefill). A case's
 * layers (its listed weight and cache dtypes) are timed interleaved, call by call, and each row
 * gives its times over the first row's (--interleave off: each layer's calls in a row).
 * With --pair SETTINGS it instead compares two layers in one process, one on a context with
 * those settings ("key=value,...", as CLMHA_TUNE) over the other's, their calls alternating (a
 * drift-proof A/B for tuning settings).
 */
#include <clmha.h>

#include "half.h"
#include "reference.h" /* ref_i8_quantize: clmha's int8 cache rows, from docs/api.md */
#include "timing.h"

#include <clblast_c.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_LIST 16

typedef struct opts {
    int decode, prefill;
    size_t seqs[MAX_LIST], nseq, batches[MAX_LIST], nbatch;
    size_t dim, heads, head_dim, reps, warmup;
    const char *json;
    int user_seq;
    int cdt[3], ncache; /* cache dtypes: CACHE_NAMES (0 float32, 1 float16, 2 int8) */
    int wdt[5], nwdt;   /* weight dtypes: float32, int8, int4 (Keras's quantization modes),
                         * float16, bfloat16 (Keras's dtype policies): WEIGHT_NAMES */
    int profile;        /* --profile on (default) or off */
    int interleave;     /* --interleave on (default) or off */
    const char *pair;   /* --pair SETTINGS, or NULL */
} opts;

static void usage(FILE *f) {
    fprintf(f, "usage: clmha-bench [options]\n"
               "\n"
               "  --phase P        decode, prefill or all (default all)\n"
               "  --seq S[,S...]   sequence lengths (default decode 128,512,2048,8192,16384;\n"
               "                   prefill 128,512,2048)\n"
               "  --batch B[,B...] batch sizes (default 1,4)\n"
               "  --dim D --heads H --head-dim K   layer size (default 768, 12, 64)\n"
               "  --reps N         timed runs per case (default 10), after --warmup N (default 2)\n"
               "  --cache-dtype T[,T...]  float32, float16, int8: the decode cache's dtype\n"
               "                   (default float32; prefill has no cache and runs once); every\n"
               "                   dtype's cache holds the same keys and values\n"
               "  --weight-dtype W[,W...]  float32, int8, int4, float16, bfloat16: the layer's\n"
               "                   kernels as they are, quantized as Keras's quantize(\"int8\" |\n"
               "                   \"int4\"), or the Keras dtype policy float16 / bfloat16\n"
               "                   (default float32); the other rows print their output's\n"
               "                   relative error against the float32 layer's over a float32\n"
               "                   cache (the same initial weights, the same inputs) when\n"
               "                   float32 is the first of both lists\n"
               "  --json FILE      also write one JSON object per case, one per line\n"
               "  --profile on|off off: no profiling events (the whole call timed as an\n"
               "                   application sees it; no attention / projection split)\n"
               "  --interleave on|off  on (default): a case's layers (its weight and cache\n"
               "                   dtypes) take turns call by call, so the machine's drift falls\n"
               "                   on all alike and none keeps its data in the CPU's caches\n"
               "                   between its calls, as in a model of many layers; off: each\n"
               "                   layer's calls in a row (as one layer alone runs)\n"
               "  --pair SETTINGS  compare two layers in one process instead: A with the\n"
               "                   settings as they are (the tuning row, CLMHA_TUNE), B on a\n"
               "                   context given SETTINGS over them (\"key=value,...\", e.g.\n"
               "                   tail=0; docs/devices.md lists the keys); their calls\n"
               "                   alternate, without profiling, and each case prints both\n"
               "                   medians and B / A\n"
               "  --help           this text\n"
               "\n"
               "The device comes from CLMHA_PLATFORM / CLMHA_DEVICE / CLMHA_DEVICE_TYPE.\n");
}

static int parse_list(const char *s, size_t *out, size_t *n) {
    *n = 0;
    while (*s && *n < MAX_LIST) {
        char *end;
        unsigned long long v = strtoull(s, &end, 10);
        if (end == s || v == 0) {
            return 0;
        }
        out[(*n)++] = (size_t)v;
        s = *end == ',' ? end + 1 : end;
    }
    return *n > 0 && *s == '\0';
}

static const char *const WEIGHT_NAMES[5] = {"float32", "int8", "int4", "float16", "bfloat16"};
static const char *const CACHE_NAMES[3] = {"float32", "float16", "int8"};
static const clmha_dtype CACHE_DTYPES[3] = {CLMHA_FLOAT32, CLMHA_FLOAT16, CLMHA_INT8};

/* --weight-dtype's list, each at most once. */
static int parse_weight_dtypes(const char *v, opts *o) {
    o->nwdt = 0;
    for (const char *s = v; *s;) {
        size_t len = strcspn(s, ",");
        int w = -1;
        for (int i = 0; i < 5; i++) {
            w = strlen(WEIGHT_NAMES[i]) == len && !strncmp(s, WEIGHT_NAMES[i], len) ? i : w;
        }
        for (int i = 0; i < o->nwdt && w >= 0; i++) {
            w = o->wdt[i] == w ? -1 : w;
        }
        if (w < 0 || o->nwdt == 5) {
            return 0;
        }
        o->wdt[o->nwdt++] = w;
        s += len + (s[len] == ',');
    }
    /* float32 first: the quantized rows compare with its output */
    for (int i = 1; i < o->nwdt; i++) {
        for (int j = i; j > 0 && o->wdt[j - 1] > o->wdt[j]; j--) {
            const int t = o->wdt[j];
            o->wdt[j] = o->wdt[j - 1];
            o->wdt[j - 1] = t;
        }
    }
    return o->nwdt > 0;
}

static int parse(int argc, char **argv, opts *o) {
    memset(o, 0, sizeof *o);
    o->decode = o->prefill = 1;
    o->dim = 768, o->heads = 12, o->head_dim = 64, o->reps = 10, o->warmup = 2;
    o->batches[0] = 1, o->batches[1] = 4, o->nbatch = 2;
    o->ncache = 1;
    o->nwdt = 1;
    o->profile = 1;
    o->interleave = 1;
    for (int i = 1; i < argc; i += 2) { /* every option takes a value */
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            exit(0);
        }
        if (v == NULL) {
            fprintf(stderr, "clmha-bench: %s needs a value (see --help)\n", a);
            return 2;
        }
        size_t one[MAX_LIST], n1 = 0;
        if (!strcmp(a, "--phase")) {
            o->decode = !strcmp(v, "decode") || !strcmp(v, "all");
            o->prefill = !strcmp(v, "prefill") || !strcmp(v, "all");
            if (!o->decode && !o->prefill) {
                fprintf(stderr, "clmha-bench: --phase is decode, prefill or all\n");
                return 2;
            }
        } else if (!strcmp(a, "--seq")) {
            if (!parse_list(v, o->seqs, &o->nseq)) {
                fprintf(stderr, "clmha-bench: --seq needs whole numbers, e.g. 128,512\n");
                return 2;
            }
            o->user_seq = 1;
        } else if (!strcmp(a, "--batch")) {
            if (!parse_list(v, o->batches, &o->nbatch)) {
                fprintf(stderr, "clmha-bench: --batch needs whole numbers, e.g. 1,4\n");
                return 2;
            }
        } else if (!strcmp(a, "--dim") || !strcmp(a, "--heads") || !strcmp(a, "--head-dim") ||
                   !strcmp(a, "--reps") || !strcmp(a, "--warmup")) {
            if (!parse_list(v, one, &n1) || n1 != 1) {
                fprintf(stderr, "clmha-bench: %s needs a whole number >= 1\n", a);
                return 2;
            }
            size_t *t = !strcmp(a, "--dim")        ? &o->dim
                        : !strcmp(a, "--heads")    ? &o->heads
                        : !strcmp(a, "--head-dim") ? &o->head_dim
                        : !strcmp(a, "--reps")     ? &o->reps
                                                   : &o->warmup;
            *t = one[0];
        } else if (!strcmp(a, "--cache-dtype")) {
            o->ncache = 0;
            for (const char *s = v; *s && o->ncache < 3;) {
                size_t len = strcspn(s, ",");
                int kind = -1;
                for (int k = 0; k < 3; k++) {
                    kind = len == strlen(CACHE_NAMES[k]) && !strncmp(s, CACHE_NAMES[k], len) ? k
                                                                                             : kind;
                }
                if (kind >= 0) {
                    o->cdt[o->ncache++] = kind;
                } else {
                    o->ncache = 0;
                    break;
                }
                s += len + (s[len] == ',');
            }
            if (o->ncache == 0) {
                fprintf(stderr, "clmha-bench: --cache-dtype is a list of float32, float16 and "
                                "int8 (e.g. float32,float16,int8)\n");
                return 2;
            }
        } else if (!strcmp(a, "--weight-dtype")) {
            if (!parse_weight_dtypes(v, o)) {
                fprintf(stderr, "clmha-bench: --weight-dtype is a list of float32, int8, int4, "
                                "float16 and bfloat16 (e.g. float32,int8,int4)\n");
                return 2;
            }
        } else if (!strcmp(a, "--json")) {
            o->json = v;
        } else if (!strcmp(a, "--profile")) {
            if (strcmp(v, "on") != 0 && strcmp(v, "off") != 0) {
                fprintf(stderr, "clmha-bench: --profile is on or off\n");
                return 2;
            }
            o->profile = !strcmp(v, "on");
        } else if (!strcmp(a, "--interleave")) {
            if (strcmp(v, "on") != 0 && strcmp(v, "off") != 0) {
                fprintf(stderr, "clmha-bench: --interleave is on or off\n");
                return 2;
            }
            o->interleave = !strcmp(v, "on");
        } else if (!strcmp(a, "--pair")) {
            if (strchr(v, '=') == NULL) {
                fprintf(stderr, "clmha-bench: --pair needs settings as key=value,..., e.g. "
                                "tail=0\n");
                return 2;
            }
            o->pair = v;
        } else {
            fprintf(stderr, "clmha-bench: unknown option '%s' (see --help)\n", a);
            return 2;
        }
    }
    return 0;
}

static const char *COPY_SRC =
    "__kernel void copy4(__global const float4 *a, __global float4 *b) {\n"
    "    b[get_global_id(0)] = a[get_global_id(0)];\n"
    "}\n";

/* Bytes moved per second (read + write) by a float4 copy of 2 x 128 MiB, median of 5. */
static double copy_bandwidth(clmha_context *ctx) {
    cl_context c = clmha_context_cl_context(ctx);
    cl_command_queue q = clmha_context_queue(ctx);
    clmha_device_info dev;
    clmha_context_device(ctx, &dev);
    size_t bytes = (size_t)128 << 20;
    if (bytes > dev.max_alloc_bytes) {
        bytes = (size_t)dev.max_alloc_bytes / 16 * 16;
    }
    cl_int err;
    cl_program p = clCreateProgramWithSource(c, 1, &COPY_SRC, NULL, &err);
    if (err != CL_SUCCESS || clBuildProgram(p, 1, &dev.device, "-cl-std=CL1.2", NULL, NULL)) {
        return 0;
    }
    cl_kernel k = clCreateKernel(p, "copy4", &err);
    cl_mem a = clCreateBuffer(c, CL_MEM_READ_WRITE, bytes, NULL, &err);
    cl_mem b = clCreateBuffer(c, CL_MEM_READ_WRITE, bytes, NULL, &err);
    float zero = 0;
    clEnqueueFillBuffer(q, a, &zero, sizeof zero, 0, bytes, 0, NULL, NULL);
    clSetKernelArg(k, 0, sizeof a, &a);
    clSetKernelArg(k, 1, sizeof b, &b);
    size_t global = bytes / 16;
    double t[6];
    for (int i = 0; i < 6; i++) {
        clFinish(q);
        double t0 = now_s();
        clEnqueueNDRangeKernel(q, k, 1, NULL, &global, NULL, 0, NULL, NULL);
        clFinish(q);
        t[i] = now_s() - t0;
    }
    clReleaseMemObject(a), clReleaseMemObject(b), clReleaseKernel(k), clReleaseProgram(p);
    return 2.0 * (double)bytes / median(t + 1, 5); /* the first run is a warm-up */
}

/* CLBlast's SGEMM rate at 1024^3 (FLOP/s), median of 5 after a warm-up. */
static double sgemm_rate(clmha_context *ctx) {
    cl_context c = clmha_context_cl_context(ctx);
    cl_command_queue q = clmha_context_queue(ctx);
    const size_t n = 1024;
    cl_int err;
    cl_mem a = clCreateBuffer(c, CL_MEM_READ_WRITE, n * n * 4, NULL, &err);
    cl_mem b = clCreateBuffer(c, CL_MEM_READ_WRITE, n * n * 4, NULL, &err);
    cl_mem d = clCreateBuffer(c, CL_MEM_READ_WRITE, n * n * 4, NULL, &err);
    float one = 0.01f;
    clEnqueueFillBuffer(q, a, &one, 4, 0, n * n * 4, 0, NULL, NULL);
    clEnqueueFillBuffer(q, b, &one, 4, 0, n * n * 4, 0, NULL, NULL);
    double t[6];
    int ok = 1;
    for (int i = 0; i < 6 && ok; i++) {
        clFinish(q);
        double t0 = now_s();
        ok = CLBlastSgemm(CLBlastLayoutRowMajor, CLBlastTransposeNo, CLBlastTransposeNo, n, n, n,
                          1.0f, a, 0, n, b, 0, n, 0.0f, d, 0, n, &q, NULL) == CLBlastSuccess;
        clFinish(q);
        t[i] = now_s() - t0;
    }
    clReleaseMemObject(a), clReleaseMemObject(b), clReleaseMemObject(d);
    return ok ? 2.0 * (double)(n * n * n) / median(t + 1, 5) : 0;
}

/* CLBlast's SGEMV on one row times a dim x dim matrix (a decode projection), seconds per
 * product (median of 20 after a warm-up that builds the kernel); 0 when CLBlast cannot run. */
static double sgemv_time(clmha_context *ctx, size_t n) {
    cl_context c = clmha_context_cl_context(ctx);
    cl_command_queue q = clmha_context_queue(ctx);
    cl_int err;
    cl_mem w = clCreateBuffer(c, CL_MEM_READ_WRITE, n * n * 4, NULL, &err);
    cl_mem x = clCreateBuffer(c, CL_MEM_READ_WRITE, n * 4, NULL, &err);
    cl_mem y = clCreateBuffer(c, CL_MEM_READ_WRITE, n * 4, NULL, &err);
    float v = 0.01f;
    clEnqueueFillBuffer(q, w, &v, 4, 0, n * n * 4, 0, NULL, NULL);
    clEnqueueFillBuffer(q, x, &v, 4, 0, n * 4, 0, NULL, NULL);
    double t[21];
    int ok = 1;
    for (int i = 0; i < 21 && ok; i++) {
        clFinish(q);
        double t0 = now_s();
        ok = CLBlastSgemv(CLBlastLayoutRowMajor, CLBlastTransposeYes, n, n, 1.0f, w, 0, n, x, 0, 1,
                          0.0f, y, 0, 1, &q, NULL) == CLBlastSuccess;
        clFinish(q);
        t[i] = now_s() - t0;
    }
    clReleaseMemObject(w), clReleaseMemObject(x), clReleaseMemObject(y);
    return ok ? median(t + 1, 20) : 0;
}

/* Formats a number with @p digits significant digits (fixed decimals when digits is 3), or
 * @p missing when it is not finite. */
static void fmt_num(char *buf, size_t len, double v, int digits, const char *missing) {
    if (!isfinite(v)) {
        snprintf(buf, len, "%s", missing);
    } else if (digits == 3) {
        snprintf(buf, len, "%.3f", v);
    } else {
        snprintf(buf, len, "%.*g", digits, v);
    }
}

typedef struct result {
    double median_s, min_s, max_s, attn_s, proj_s;
    double reserve_s; /* clmha_layer_reserve for the case's shapes: the builds before any call */
    float *out;       /* the last call's output (malloc'd), or NULL */
    size_t out_n;
} result;

/* One case's tensors and call arguments: the input x (deterministic values), the output, and
 * for decode a cache of S positions with the step that writes position S - 1 (causal). */
typedef struct bench_case {
    clmha_tensor *x, *y, *cache;
    clmha_call_args args;
    double reserve_s;
} bench_case;

static void case_release(bench_case *c) {
    clmha_tensor_release(c->x), clmha_tensor_release(c->y), clmha_tensor_release(c->cache);
}

/* Fills a decode case's cache with the same keys and values for every cache dtype: uniform in
 * [-2, 2), rounded to half for a half cache and quantized to int8 rows for an int8 one, so that
 * the outputs over the three dtypes differ by what the cache keeps. */
static int fill_cache(clmha_tensor *cache) {
    const clmha_dtype dt = clmha_tensor_dtype(cache);
    const size_t rows = clmha_tensor_numel(cache) / clmha_tensor_dim(cache, 4);
    const size_t d = clmha_tensor_dim(cache, 4) - (dt == CLMHA_INT8 ? 4 : 0);
    const size_t bytes = rows * (dt == CLMHA_INT8 ? d + 4 : d * (dt == CLMHA_FLOAT16 ? 2 : 4));
    unsigned char *buf = malloc(bytes);
    float *x = malloc(d * sizeof *x);
    if (buf == NULL || x == NULL) {
        free(buf), free(x);
        return 1;
    }
    uint64_t s = 0x9E3779B97F4A7C15ull;
    for (size_t r = 0; r < rows; r++) {
        for (size_t e = 0; e < d; e++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            x[e] = (float)((double)(s >> 40) / (double)(1ull << 24) * 4.0 - 2.0);
        }
        if (dt == CLMHA_INT8) {
            ref_i8_quantize(x, d, buf + r * (d + 4));
        } else if (dt == CLMHA_FLOAT16) {
            for (size_t e = 0; e < d; e++) {
                const uint16_t h = half_from_float(x[e]);
                memcpy(buf + (r * d + e) * 2, &h, 2);
            }
        } else {
            memcpy(buf + r * d * 4, x, d * 4);
        }
    }
    const int rc = clmha_tensor_write(cache, buf, bytes) == CLMHA_OK ? 0 : 1;
    free(buf), free(x);
    return rc;
}

/* Returns 0 on success (the message is printed otherwise; release the case either way). */
static int case_setup(clmha_context *ctx, clmha_layer *layer, const opts *o, int decode, size_t B,
                      size_t S, bench_case *c) {
    const size_t D = o->dim, T = decode ? 1 : S;
    size_t xs[3] = {B, T, D};
    memset(c, 0, sizeof *c);
    float *host = malloc(B * T * D * sizeof(float));
    if (host == NULL) {
        fprintf(stderr, "clmha-bench: out of memory\n");
        return 1;
    }
    for (size_t i = 0; i < B * T * D; i++) {
        host[i] = (float)((double)((i * 2654435761u) % 1000) / 1000.0 - 0.5);
    }
    int rc = 0;
    if (clmha_tensor_create(ctx, CLMHA_FLOAT32, 3, xs, &c->x) != CLMHA_OK ||
        clmha_tensor_write(c->x, host, B * T * D * sizeof(float)) != CLMHA_OK ||
        clmha_tensor_create(ctx, CLMHA_FLOAT32, 3, xs, &c->y) != CLMHA_OK ||
        (decode && (clmha_layer_create_cache(layer, B, S, &c->cache) != CLMHA_OK ||
                    fill_cache(c->cache) != 0))) {
        fprintf(stderr, "clmha-bench: %s\n", clmha_last_error());
        rc = 1;
    }
    free(host);
    /* Whatever the case's calls need (workspace, CLBlast's program) is made here, timed apart
     * from the calls. */
    double t0 = now_s();
    if (rc == 0 &&
        clmha_layer_reserve(layer, B, T, decode ? 1 : S, decode ? S : 0, false) != CLMHA_OK) {
        fprintf(stderr, "clmha-bench: %s\n", clmha_last_error());
        rc = 1;
    }
    c->reserve_s = now_s() - t0;
    clmha_call_args_init(&c->args);
    c->args.query = c->x, c->args.value = c->x, c->args.output = c->y, c->args.causal = true;
    if (decode) {
        /* The step that writes the last position and attends to all S. */
        c->args.cache = c->cache, c->args.has_cache_update_index = true;
        c->args.cache_update_index = (int64_t)(S - 1);
    }
    return rc;
}

/* The contents of @p t (malloc'd; NULL on failure). */
static float *tensor_contents(const clmha_tensor *t, size_t *bytes) {
    const size_t n = clmha_tensor_numel(t);
    float *h = malloc(n * sizeof(float));
    if (h != NULL && clmha_tensor_read(t, h, n * sizeof(float)) != CLMHA_OK) {
        free(h);
        h = NULL;
    }
    *bytes = h != NULL ? n * sizeof(float) : 0;
    return h;
}

/* The relative Frobenius error of @p got against @p ref (n values each); NAN without both. */
static double rel_error(const float *got, const float *ref, size_t n, size_t n_ref) {
    if (got == NULL || ref == NULL || n != n_ref) {
        return NAN;
    }
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        const double d = (double)got[i] - (double)ref[i];
        num += d * d;
        den += (double)ref[i] * (double)ref[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

/* One timed call (host clock around the call and a finish); returns a negative time on error,
 * with the message printed. */
static double timed_call(clmha_context *ctx, clmha_layer *layer, const bench_case *c) {
    double t0 = now_s();
    if (clmha_layer_call(layer, &c->args) != CLMHA_OK || clmha_context_finish(ctx) != CLMHA_OK) {
        fprintf(stderr, "clmha-bench: %s\n", clmha_last_error());
        return -1;
    }
    return now_s() - t0;
}

/* Runs one case through the n layers (one a listed weight and cache dtype), their calls
 * interleaved: round r calls each layer once, starting at layer r % n, so that drift in the
 * machine's load falls on every layer alike and the ratios of their times hold within one run.
 * Fills res[0..n-1]; returns 0 on success (the message is printed otherwise). */
static int run_cases(clmha_context *ctx, clmha_layer *const *layers, size_t n, const opts *o,
                     int decode, size_t B, size_t S, result *res) {
    bench_case *c = calloc(n, sizeof *c);
    double *wall = calloc(n * o->reps, sizeof(double)), *attn = calloc(n * o->reps, sizeof(double));
    double *proj = calloc(n * o->reps, sizeof(double));
    int rc = 1;
    size_t made = 0;
    if (c == NULL || wall == NULL || attn == NULL || proj == NULL) {
        fprintf(stderr, "clmha-bench: out of memory\n");
        goto done;
    }
    for (; made < n; made++) {
        if (case_setup(ctx, layers[made], o, decode, B, S, &c[made]) != 0) {
            made++; /* released below */
            goto done;
        }
    }
    clmha_profile prof;
    memset(&prof, 0, sizeof prof);
    /* interleaved: round r calls layer (r + u) % n for u = 0, 1, ...; else each layer's calls
     * in a row, layer after layer */
    const size_t runs = o->warmup + o->reps;
    for (size_t step = 0; step < runs * n; step++) {
        const size_t r = o->interleave ? step / n : step % runs;
        const size_t i = o->interleave ? (r + step % n) % n : step / runs;
        if (o->profile) {
            clmha_context_take_profile(ctx, &prof);
        }
        double t = timed_call(ctx, layers[i], &c[i]);
        if (t < 0) {
            goto done;
        }
        if (o->profile) {
            clmha_context_take_profile(ctx, &prof);
        }
        if (r >= o->warmup) {
            const size_t at = i * o->reps + (r - o->warmup);
            wall[at] = t;
            attn[at] = o->profile ? prof.attention_s : NAN;
            proj[at] = o->profile ? prof.projection_s : NAN;
        }
    }
    for (size_t i = 0; i < n; i++) {
        double *w = wall + i * o->reps;
        res[i].median_s = median(w, o->reps);
        res[i].min_s = w[0];
        res[i].max_s = w[o->reps - 1];
        res[i].attn_s = median(attn + i * o->reps, o->reps);
        res[i].proj_s = median(proj + i * o->reps, o->reps);
        res[i].reserve_s = c[i].reserve_s;
        size_t bytes = 0;
        res[i].out = tensor_contents(c[i].y, &bytes);
        res[i].out_n = bytes / sizeof(float);
    }
    rc = 0;
done:
    for (size_t i = 0; i < made; i++) {
        case_release(&c[i]);
    }
    free(c), free(wall), free(attn), free(proj);
    return rc;
}

/* --pair: one case through layers a and b, their calls alternating (a, b, b, a, a, b, ...) so
 * that drift in the machine's load falls on both alike and neither always runs second; medians
 * in ma and mb. Returns 0 on success. */
static int run_pair_case(clmha_context *ctx[2], clmha_layer *la, clmha_layer *lb, const opts *o,
                         int decode, size_t B, size_t S, double *ma, double *mb) {
    bench_case ca, cb;
    memset(&ca, 0, sizeof ca);
    memset(&cb, 0, sizeof cb);
    int rc = 1;
    double *ta = calloc(o->reps, sizeof(double)), *tb = calloc(o->reps, sizeof(double));
    if (ta == NULL || tb == NULL) {
        fprintf(stderr, "clmha-bench: out of memory\n");
        goto done;
    }
    if (case_setup(ctx[0], la, o, decode, B, S, &ca) != 0 ||
        case_setup(ctx[1], lb, o, decode, B, S, &cb) != 0) {
        goto done;
    }
    for (size_t r = 0; r < o->warmup + o->reps; r++) {
        /* A first in even runs, B first in odd ones: neither always follows the other. */
        double t1, t2;
        if (r % 2 == 0) {
            t1 = timed_call(ctx[0], la, &ca), t2 = t1 < 0 ? -1 : timed_call(ctx[1], lb, &cb);
        } else {
            t2 = timed_call(ctx[1], lb, &cb), t1 = t2 < 0 ? -1 : timed_call(ctx[0], la, &ca);
        }
        if (t1 < 0 || t2 < 0) {
            goto done;
        }
        if (r >= o->warmup) {
            ta[r - o->warmup] = t1, tb[r - o->warmup] = t2;
        }
    }
    *ma = median(ta, o->reps);
    *mb = median(tb, o->reps);
    rc = 0;
done:
    case_release(&ca), case_release(&cb);
    free(ta), free(tb);
    return rc;
}

/* Creates the layers the cases need, layers[w][0] with a float32 cache (decode over it, and
 * prefill), layers[w][1] with a float16 one and layers[w][2] with an int8 one, for each listed
 * weight dtype w (one seed: the quantized layers quantize the float32 layer's weights). Returns 0
 * on success (the message is printed otherwise). */
static int make_layers(clmha_context *ctx, const opts *o, clmha_layer *layers[5][3]) {
    clmha_layer_config cfg;
    clmha_layer_config_init(&cfg);
    cfg.num_heads = (int)o->heads, cfg.key_dim = (int)o->head_dim, cfg.seed = 1;
    for (int wk = 0; wk < o->nwdt; wk++) {
        const int w = o->wdt[wk];
        for (int h = 0; h < 3; h++) {
            bool wanted = h == 0 && o->prefill;
            for (int k = 0; k < o->ncache; k++) {
                wanted = wanted || (o->decode && o->cdt[k] == h);
            }
            cfg.cache_dtype = CACHE_DTYPES[h];
            cfg.dtype_policy = w == 3   ? CLMHA_POLICY_FLOAT16
                               : w == 4 ? CLMHA_POLICY_BFLOAT16
                                        : CLMHA_POLICY_FLOAT32;
            clmha_status st =
                wanted ? clmha_layer_create(ctx, &cfg, o->dim, o->dim, 0, &layers[w][h]) : CLMHA_OK;
            if (st == CLMHA_OK && wanted && (w == 1 || w == 2)) {
                st = clmha_layer_quantize(layers[w][h], WEIGHT_NAMES[w]);
            }
            if (st != CLMHA_OK) {
                fprintf(stderr, "clmha-bench: %s\n", clmha_last_error());
                return 1;
            }
        }
    }
    return 0;
}

static void release_layers(clmha_layer *layers[5][3]) {
    for (int w = 0; w < 5; w++) {
        clmha_layer_release(layers[w][0]);
        clmha_layer_release(layers[w][1]);
        clmha_layer_release(layers[w][2]);
    }
}

/* The --pair run: every case through layer A (the settings as they are) and layer B (on a
 * second context on the same device, given the --pair settings), without profiling. Returns
 * the exit code. */
static int run_pairs(const opts *o) {
    clmha_context *ctx[2] = {NULL, NULL};
    clmha_layer *layers[2][5][3]; /* [B?][weight dtype][cache dtype] */
    memset(layers, 0, sizeof layers);
    FILE *json = NULL;
    int rc = 0;
    clmha_context_options ob;
    clmha_context_options_init(&ob);
    ob.tune = o->pair;
    if (clmha_context_create(NULL, &ctx[0]) != CLMHA_OK ||
        clmha_context_create(&ob, &ctx[1]) != CLMHA_OK) {
        fprintf(stderr, "clmha-bench: %s\n", clmha_last_error());
        clmha_context_release(ctx[0]);
        return 1;
    }
    clmha_device_info dev;
    clmha_context_device(ctx[0], &dev);
    char set_a[512], set_b[512];
    clmha_context_settings(ctx[0], set_a, sizeof set_a);
    clmha_context_settings(ctx[1], set_b, sizeof set_b);
    if (make_layers(ctx[0], o, layers[0]) != 0 || make_layers(ctx[1], o, layers[1]) != 0) {
        rc = 1;
        goto done;
    }
    if (o->json != NULL && (json = fopen(o->json, "w")) == NULL) {
        fprintf(stderr, "clmha-bench: cannot write %s\n", o->json);
        rc = 1;
        goto done;
    }
    printf("clmha %s bench on %s (%s)\n", clmha_version_string(), dev.name, dev.platform_name);
    printf("layer: dim %zu, %zu heads of %zu; %zu runs per case and layer after %zu warm-up, "
           "alternating\nA: %s\nB: %s\n\n",
           o->dim, o->heads, o->head_dim, o->reps, o->warmup, set_a, set_b);
    printf("%-8s %-7s %-7s %3s %6s %6s %13s %13s %8s\n", "phase", "weights", "cache", "B", "T", "S",
           "A median ms", "B median ms", "B / A");
    for (int phase = 0; phase < 2; phase++) {
        int decode = phase == 0;
        if ((decode && !o->decode) || (!decode && !o->prefill)) {
            continue;
        }
        static const size_t dseq[] = {128, 512, 2048, 8192, 16384}, pseq[] = {128, 512, 2048};
        const size_t *seqs = o->user_seq ? o->seqs : decode ? dseq : pseq;
        size_t nseq = o->user_seq ? o->nseq : decode ? 5 : 3;
        for (size_t si = 0; si < nseq; si++) {
            for (size_t bi = 0; bi < o->nbatch; bi++) {
                for (int hk = 0; hk < (decode ? o->ncache : 1) * o->nwdt; hk++) {
                    const int cdt = decode ? o->cdt[hk / o->nwdt] : 0, w = o->wdt[hk % o->nwdt];
                    const char *dtname = decode ? CACHE_NAMES[cdt] : "none";
                    size_t S = seqs[si], B = o->batches[bi], T = decode ? 1 : S;
                    double ma, mb;
                    if (run_pair_case(ctx, layers[0][w][cdt], layers[1][w][cdt], o, decode, B, S,
                                      &ma, &mb) != 0) {
                        rc = 1;
                        goto done;
                    }
                    printf("%-8s %-7s %-7s %3zu %6zu %6zu %13.3f %13.3f %8.3f\n",
                           decode ? "decode" : "prefill", WEIGHT_NAMES[w], dtname, B, T, S,
                           ma * 1e3, mb * 1e3, mb / ma);
                    fflush(stdout);
                    if (json != NULL) {
                        fprintf(json,
                                "{\"phase\": \"%s\", \"B\": %zu, \"T\": %zu, \"S\": %zu, "
                                "\"dim\": %zu, \"heads\": %zu, \"head_dim\": %zu, "
                                "\"cache_dtype\": \"%s\", \"weight_dtype\": \"%s\", "
                                "\"device\": \"%s\", \"tuning\": \"%s\", "
                                "\"pair\": \"%s\", \"settings_a\": \"%s\", "
                                "\"settings_b\": \"%s\", \"median_a_s\": %.9g, "
                                "\"median_b_s\": %.9g, \"b_over_a\": %.6g}\n",
                                decode ? "decode" : "prefill", B, T, S, o->dim, o->heads,
                                o->head_dim, dtname, WEIGHT_NAMES[w], dev.name,
                                clmha_context_tuning_name(ctx[0]), o->pair, set_a, set_b, ma, mb,
                                mb / ma);
                    }
                }
            }
        }
    }
done:
    if (json != NULL) {
        fclose(json);
    }
    release_layers(layers[0]);
    release_layers(layers[1]);
    clmha_context_release(ctx[0]);
    clmha_context_release(ctx[1]);
    return rc;
}

int main(int argc, char **argv) {
    opts o;
    int rc = parse(argc, argv, &o);
    if (rc != 0) {
        return rc;
    }
    if (o.pair != NULL) {
        return run_pairs(&o);
    }
    clmha_context_options co;
    clmha_context_options_init(&co);
    co.profile = o.profile != 0;
    clmha_context *ctx = NULL;
    clmha_layer *layers[5][3]; /* [weight dtype][cache dtype] */
    memset(layers, 0, sizeof layers);
    FILE *json = NULL;
    if (clmha_context_create(&co, &ctx) != CLMHA_OK) {
        fprintf(stderr, "clmha-bench: %s\n", clmha_last_error());
        return 1;
    }
    clmha_device_info dev;
    clmha_context_device(ctx, &dev);
    const double t_build = now_s();
    if (make_layers(ctx, &o, layers) != 0) {
        rc = 1;
        goto done;
    }
    const double build_s = now_s() - t_build;
    if (o.json != NULL && (json = fopen(o.json, "w")) == NULL) {
        fprintf(stderr, "clmha-bench: cannot write %s\n", o.json);
        rc = 1;
        goto done;
    }
    int tty = isatty(fileno(stderr));
    fprintf(stderr, "measuring the device's ceilings...\n");
    const double bw = copy_bandwidth(ctx), gemm = sgemm_rate(ctx), gemv = sgemv_time(ctx, o.dim);
    clmha_profile discard;
    if (o.profile) {
        clmha_context_take_profile(ctx, &discard);
    }
    char settings[512];
    clmha_context_settings(ctx, settings, sizeof settings);
    printf("clmha %s bench on %s (%s)\nsettings: %s\n", clmha_version_string(), dev.name,
           dev.platform_name, settings);
    printf("layer: dim %zu, %zu heads of %zu; %zu runs per case after %zu warm-up\n", o.dim,
           o.heads, o.head_dim, o.reps, o.warmup);
    printf("layers built in %.3f s; each case reserves its shapes before its timed calls "
           "(JSON: layer_build_s, reserve_s)\n",
           build_s);
    printf("ceilings: copy bandwidth %.1f GB/s, CLBlast SGEMM (1024^3) ", bw * 1e-9);
    if (gemm > 0) {
        printf("%.1f GFLOP/s\n", gemm * 1e-9);
    } else {
        printf("n/a (CLBlast cannot run on this device)\n");
    }
    /* For the choice of a decode projection's kernel: compare with "proj ms" / 4 of a B = 1
     * decode case (clmha's own GEMM, bias included). */
    if (gemv > 0) {
        printf("CLBlast SGEMV, one row times %zu x %zu: %.3f ms per product\n\n", o.dim, o.dim,
               gemv * 1e3);
    } else {
        printf("CLBlast SGEMV: n/a\n\n");
    }
    printf("%-8s %-7s %-7s %3s %6s %6s %11s %17s %11s %11s %8s %8s %10s %8s %8s\n", "phase",
           "weights", "cache", "B", "T", "S", "median ms", "min..max ms", "attn ms", "proj ms",
           "of bw", "of gemm", "err vs f32", "t/first", "attn/1st");
    for (int phase = 0; phase < 2; phase++) {
        int decode = phase == 0;
        if ((decode && !o.decode) || (!decode && !o.prefill)) {
            continue;
        }
        static const size_t dseq[] = {128, 512, 2048, 8192, 16384}, pseq[] = {128, 512, 2048};
        const size_t *seqs = o.user_seq ? o.seqs : decode ? dseq : pseq;
        size_t nseq = o.user_seq ? o.nseq : decode ? 5 : 3;
        for (size_t si = 0; si < nseq; si++) {
            for (size_t bi = 0; bi < o.nbatch; bi++) {
                /* every listed dtype combination of this case, timed interleaved; the first
                 * row's output is the reference of the others' error when it is float32
                 * weights over a float32 cache */
                const int nk = (decode ? o.ncache : 1) * o.nwdt;
                clmha_layer *row_layers[15];
                result rs[15];
                memset(rs, 0, sizeof rs);
                for (int hk = 0; hk < nk; hk++) {
                    const int cdt = decode ? o.cdt[hk / o.nwdt] : 0, w = o.wdt[hk % o.nwdt];
                    row_layers[hk] = layers[w][cdt];
                }
                const size_t S = seqs[si], B = o.batches[bi], T = decode ? 1 : S;
                if (tty) {
                    fprintf(stderr, "\r%s B=%zu S=%zu ...   ", decode ? "decode" : "prefill", B, S);
                }
                if (run_cases(ctx, row_layers, (size_t)nk, &o, decode, B, S, rs) != 0) {
                    rc = 1;
                    goto done;
                }
                if (tty) {
                    fprintf(stderr, "\r%40s\r", "");
                }
                const bool has_base = o.wdt[0] == 0 && (!decode || o.cdt[0] == 0);
                for (int hk = 0; hk < nk; hk++) {
                    const int cdt = decode ? o.cdt[hk / o.nwdt] : 0, w = o.wdt[hk % o.nwdt];
                    const char *dtname = decode ? CACHE_NAMES[cdt] : "none";
                    const bool base = hk == 0 && has_base;
                    const result r = rs[hk];
                    const double err =
                        base || !has_base ? NAN : rel_error(r.out, rs[0].out, r.out_n, rs[0].out_n);
                    /* this row's times over the first row's, both measured interleaved */
                    const double vs_call = r.median_s / rs[0].median_s;
                    const double vs_attn = r.attn_s / rs[0].attn_s;
                    /* Attention reads every key and value once (decode) and does 4 FLOP per
                     * query-key-dim triple (scores and p x V), counting masked pairs too. */
                    double bytes =
                        2.0 * (double)(B * S * o.heads) *
                        (cdt == 2 ? (double)(o.head_dim + 4) : (double)o.head_dim * (cdt ? 2 : 4));
                    double flops = 4.0 * (double)B * (double)o.heads * (double)T * (double)S *
                                   (double)o.head_dim;
                    /* A ceiling that could not be measured (CLBlast cannot run on every device)
                     * leaves its fraction unknown: "n/a" in the table, null in JSON. */
                    double fbw = r.attn_s > 0 && bw > 0 ? bytes / r.attn_s / bw : NAN;
                    double fgemm = r.attn_s > 0 && gemm > 0 ? flops / r.attn_s / gemm : NAN;
                    char tbw[32], tgemm[32], jbw[32], jgemm[32], jcbw[32], jcgemm[32];
                    char tattn[32], tproj[32], jattn[32], jproj[32];
                    fmt_num(tattn, sizeof tattn, r.attn_s * 1e3, 3, "n/a");
                    fmt_num(tproj, sizeof tproj, r.proj_s * 1e3, 3, "n/a");
                    fmt_num(jattn, sizeof jattn, r.attn_s, 9, "null");
                    fmt_num(jproj, sizeof jproj, r.proj_s, 9, "null");
                    fmt_num(tbw, sizeof tbw, fbw, 3, "n/a");
                    fmt_num(tgemm, sizeof tgemm, fgemm, 3, "n/a");
                    fmt_num(jbw, sizeof jbw, fbw, 6, "null");
                    fmt_num(jgemm, sizeof jgemm, fgemm, 6, "null");
                    fmt_num(jcbw, sizeof jcbw, bw > 0 ? bw : NAN, 6, "null");
                    fmt_num(jcgemm, sizeof jcgemm, gemm > 0 ? gemm : NAN, 6, "null");
                    char terr[32], jerr[32];
                    fmt_num(terr, sizeof terr, base ? NAN : err, 6, base ? "-" : "n/a");
                    fmt_num(jerr, sizeof jerr, base ? NAN : err, 6, "null");
                    char tvc[32], tva[32], jvc[32], jva[32];
                    fmt_num(tvc, sizeof tvc, vs_call, 3, "n/a");
                    fmt_num(tva, sizeof tva, vs_attn, 3, "n/a");
                    fmt_num(jvc, sizeof jvc, vs_call, 6, "null");
                    fmt_num(jva, sizeof jva, vs_attn, 6, "null");
                    printf("%-8s %-7s %-7s %3zu %6zu %6zu %11.3f %8.3f..%-8.3f %11s %11s %8s %8s "
                           "%10s %8s %8s\n",
                           decode ? "decode" : "prefill", WEIGHT_NAMES[w], dtname, B, T, S,
                           r.median_s * 1e3, r.min_s * 1e3, r.max_s * 1e3, tattn, tproj, tbw, tgemm,
                           terr, tvc, tva);
                    fflush(stdout);
                    if (json != NULL) {
                        fprintf(
                            json,
                            "{\"phase\": \"%s\", \"B\": %zu, \"T\": %zu, \"S\": %zu, \"dim\": %zu, "
                            "\"heads\": %zu, \"head_dim\": %zu, \"cache_dtype\": \"%s\", "
                            "\"device\": \"%s\", \"tuning\": \"%s\", \"settings\": \"%s\", "
                            "\"median_s\": %.9g, "
                            "\"min_s\": %.9g, "
                            "\"max_s\": %.9g, \"attention_median_s\": %s, "
                            "\"projection_median_s\": %s, \"frac_bandwidth\": %s, "
                            "\"frac_gemm\": %s, \"copy_bandwidth_bytes_per_s\": %s, "
                            "\"sgemm_flops_per_s\": %s, \"layer_build_s\": %.6f, "
                            "\"reserve_s\": %.6f, \"weight_dtype\": \"%s\", "
                            "\"error_vs_float32\": %s, \"median_vs_first\": %s, "
                            "\"attention_vs_first\": %s}\n",
                            decode ? "decode" : "prefill", B, T, S, o.dim, o.heads, o.head_dim,
                            decode ? dtname : "none", dev.name, clmha_context_tuning_name(ctx),
                            settings, r.median_s, r.min_s, r.max_s, jattn, jproj, jbw, jgemm, jcbw,
                            jcgemm, build_s, r.reserve_s, WEIGHT_NAMES[w], jerr, jvc, jva);
                    }
                }
                for (int hk = 0; hk < nk; hk++) {
                    free(rs[hk].out);
                }
            }
        }
    }
done:
    if (json != NULL) {
        fclose(json);
    }
    release_layers(layers);
    clmha_context_release(ctx);
    return rc;
}
