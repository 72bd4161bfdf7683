/*
 * clmha-bench - benchmarks the layer on the selected OpenCL device: a decode step (T = 1 into
 * a cache of S positions) and a prefill (T = S), GPT-2-small-sized by default, over sequence
 * lengths and batch sizes. In the same run it measures the device's own ceilings (a float4
 * copy kernel's bandwidth and CLBlast's SGEMM rate) and reports, per case: the median and
 * spread of the whole call over repeated runs after warm-up, the device time of attention and
 * projections (from clmha's profiling), attention bytes / time as a fraction of the copy
 * bandwidth (decode) and attention FLOP/s as a fraction of the SGEMM rate (prefill).
 */
#include <clmha.h>

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
    int half[2], nhalf; /* cache dtypes: 0 float32, 1 float16 */
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
               "  --cache-dtype T[,T]  float32 and/or float16: the decode cache's dtype (default\n"
               "                   float32; prefill has no cache and runs once)\n"
               "  --json FILE      also write one JSON object per case, one per line\n"
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

static int parse(int argc, char **argv, opts *o) {
    memset(o, 0, sizeof *o);
    o->decode = o->prefill = 1;
    o->dim = 768, o->heads = 12, o->head_dim = 64, o->reps = 10, o->warmup = 2;
    o->batches[0] = 1, o->batches[1] = 4, o->nbatch = 2;
    o->nhalf = 1;
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
            o->nhalf = 0;
            for (const char *s = v; *s && o->nhalf < 2;) {
                size_t len = strcspn(s, ",");
                if (len == 7 && !strncmp(s, "float32", 7)) {
                    o->half[o->nhalf++] = 0;
                } else if (len == 7 && !strncmp(s, "float16", 7)) {
                    o->half[o->nhalf++] = 1;
                } else {
                    o->nhalf = 0;
                    break;
                }
                s += len + (s[len] == ',');
            }
            if (o->nhalf == 0) {
                fprintf(stderr, "clmha-bench: --cache-dtype is float32, float16 or both "
                                "(float32,float16)\n");
                return 2;
            }
        } else if (!strcmp(a, "--json")) {
            o->json = v;
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
} result;

/* Runs one case; returns 0 on success (the message is printed otherwise). */
static int run_case(clmha_context *ctx, clmha_layer *layer, const opts *o, int decode, size_t B,
                    size_t S, result *res) {
    const size_t D = o->dim, T = decode ? 1 : S;
    clmha_tensor *x = NULL, *y = NULL, *cache = NULL;
    size_t xs[3] = {B, T, D};
    int rc = 1;
    double *wall = calloc(o->reps, sizeof(double)), *attn = calloc(o->reps, sizeof(double));
    double *proj = calloc(o->reps, sizeof(double));
    float *host = malloc(B * T * D * sizeof(float));
    for (size_t i = 0; i < B * T * D; i++) {
        host[i] = (float)((double)((i * 2654435761u) % 1000) / 1000.0 - 0.5);
    }
    if (clmha_tensor_create(ctx, CLMHA_FLOAT32, 3, xs, &x) != CLMHA_OK ||
        clmha_tensor_write(x, host, B * T * D * sizeof(float)) != CLMHA_OK ||
        clmha_tensor_create(ctx, CLMHA_FLOAT32, 3, xs, &y) != CLMHA_OK ||
        (decode && clmha_layer_create_cache(layer, B, S, &cache) != CLMHA_OK)) {
        fprintf(stderr, "clmha-bench: %s\n", clmha_last_error());
        goto done;
    }
    clmha_call_args a;
    clmha_call_args_init(&a);
    a.query = x, a.value = x, a.output = y, a.causal = true;
    if (decode) {
        /* The step that writes the last position and attends to all S. */
        a.cache = cache, a.has_cache_update_index = true;
        a.cache_update_index = (int64_t)(S - 1);
    }
    clmha_profile prof;
    for (size_t r = 0; r < o->warmup + o->reps; r++) {
        clmha_context_take_profile(ctx, &prof);
        double t0 = now_s();
        if (clmha_layer_call(layer, &a) != CLMHA_OK || clmha_context_finish(ctx) != CLMHA_OK) {
            fprintf(stderr, "clmha-bench: %s\n", clmha_last_error());
            goto done;
        }
        double t = now_s() - t0;
        clmha_context_take_profile(ctx, &prof);
        if (r >= o->warmup) {
            wall[r - o->warmup] = t;
            attn[r - o->warmup] = prof.attention_s;
            proj[r - o->warmup] = prof.projection_s;
        }
    }
    res->median_s = median(wall, o->reps);
    res->min_s = wall[0];
    res->max_s = wall[o->reps - 1];
    res->attn_s = median(attn, o->reps);
    res->proj_s = median(proj, o->reps);
    rc = 0;
done:
    clmha_tensor_release(x), clmha_tensor_release(y), clmha_tensor_release(cache);
    free(wall), free(attn), free(proj), free(host);
    return rc;
}

int main(int argc, char **argv) {
    opts o;
    int rc = parse(argc, argv, &o);
    if (rc != 0) {
        return rc;
    }
    clmha_context_options co;
    clmha_context_options_init(&co);
    co.profile = true;
    clmha_context *ctx = NULL;
    clmha_layer *layers[2] = {NULL, NULL}; /* float32 cache, float16 cache */
    FILE *json = NULL;
    if (clmha_context_create(&co, &ctx) != CLMHA_OK) {
        fprintf(stderr, "clmha-bench: %s\n", clmha_last_error());
        return 1;
    }
    clmha_device_info dev;
    clmha_context_device(ctx, &dev);
    clmha_layer_config cfg;
    clmha_layer_config_init(&cfg);
    cfg.num_heads = (int)o.heads, cfg.key_dim = (int)o.head_dim, cfg.seed = 1;
    for (int h = 0; h < 2; h++) {
        cfg.cache_dtype = h ? CLMHA_FLOAT16 : CLMHA_FLOAT32;
        bool wanted = h == 0 ? o.prefill != 0 : false;
        for (int k = 0; k < o.nhalf; k++) {
            wanted = wanted || (o.decode && o.half[k] == h);
        }
        if (wanted && clmha_layer_create(ctx, &cfg, o.dim, o.dim, 0, &layers[h]) != CLMHA_OK) {
            fprintf(stderr, "clmha-bench: %s\n", clmha_last_error());
            rc = 1;
            goto done;
        }
    }
    if (o.json != NULL && (json = fopen(o.json, "w")) == NULL) {
        fprintf(stderr, "clmha-bench: cannot write %s\n", o.json);
        rc = 1;
        goto done;
    }
    int tty = isatty(fileno(stderr));
    fprintf(stderr, "measuring the device's ceilings...\n");
    const double bw = copy_bandwidth(ctx), gemm = sgemm_rate(ctx), gemv = sgemv_time(ctx, o.dim);
    clmha_profile discard;
    clmha_context_take_profile(ctx, &discard);
    printf("clmha %s bench on %s (%s)\n", clmha_version_string(), dev.name, dev.platform_name);
    printf("layer: dim %zu, %zu heads of %zu; %zu runs per case after %zu warm-up\n", o.dim,
           o.heads, o.head_dim, o.reps, o.warmup);
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
    printf("%-8s %-7s %3s %6s %6s %11s %17s %11s %11s %8s %8s\n", "phase", "cache", "B", "T", "S",
           "median ms", "min..max ms", "attn ms", "proj ms", "of bw", "of gemm");
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
                for (int hk = 0; hk < (decode ? o.nhalf : 1); hk++) {
                    const int half = decode ? o.half[hk] : 0;
                    const char *dtname = decode ? (half ? "float16" : "float32") : "none";
                    clmha_layer *layer = layers[half];
                    size_t S = seqs[si], B = o.batches[bi], T = decode ? 1 : S;
                    if (tty) {
                        fprintf(stderr, "\r%s B=%zu S=%zu ...   ", decode ? "decode" : "prefill", B,
                                S);
                    }
                    result r;
                    if (run_case(ctx, layer, &o, decode, B, S, &r) != 0) {
                        rc = 1;
                        goto done;
                    }
                    if (tty) {
                        fprintf(stderr, "\r%40s\r", "");
                    }
                    /* Attention reads every key and value once (decode) and does 4 FLOP per
                     * query-key-dim triple (scores and p x V), counting masked pairs too. */
                    double bytes =
                        2.0 * (double)(B * S * o.heads * o.head_dim) * (half ? 2.0 : 4.0);
                    double flops = 4.0 * (double)B * (double)o.heads * (double)T * (double)S *
                                   (double)o.head_dim;
                    /* A ceiling that could not be measured (CLBlast cannot run on every device)
                     * leaves its fraction unknown: "n/a" in the table, null in JSON. */
                    double fbw = r.attn_s > 0 && bw > 0 ? bytes / r.attn_s / bw : NAN;
                    double fgemm = r.attn_s > 0 && gemm > 0 ? flops / r.attn_s / gemm : NAN;
                    char tbw[32], tgemm[32], jbw[32], jgemm[32], jcbw[32], jcgemm[32];
                    fmt_num(tbw, sizeof tbw, fbw, 3, "n/a");
                    fmt_num(tgemm, sizeof tgemm, fgemm, 3, "n/a");
                    fmt_num(jbw, sizeof jbw, fbw, 6, "null");
                    fmt_num(jgemm, sizeof jgemm, fgemm, 6, "null");
                    fmt_num(jcbw, sizeof jcbw, bw > 0 ? bw : NAN, 6, "null");
                    fmt_num(jcgemm, sizeof jcgemm, gemm > 0 ? gemm : NAN, 6, "null");
                    printf("%-8s %-7s %3zu %6zu %6zu %11.3f %8.3f..%-8.3f %11.3f %11.3f %8s %8s\n",
                           decode ? "decode" : "prefill", dtname, B, T, S, r.median_s * 1e3,
                           r.min_s * 1e3, r.max_s * 1e3, r.attn_s * 1e3, r.proj_s * 1e3, tbw,
                           tgemm);
                    fflush(stdout);
                    if (json != NULL) {
                        fprintf(
                            json,
                            "{\"phase\": \"%s\", \"B\": %zu, \"T\": %zu, \"S\": %zu, \"dim\": %zu, "
                            "\"heads\": %zu, \"head_dim\": %zu, \"cache_dtype\": \"%s\", "
                            "\"device\": \"%s\", \"median_s\": %.9g, \"min_s\": %.9g, "
                            "\"max_s\": %.9g, \"attention_median_s\": %.9g, "
                            "\"projection_median_s\": %.9g, \"frac_bandwidth\": %s, "
                            "\"frac_gemm\": %s, \"copy_bandwidth_bytes_per_s\": %s, "
                            "\"sgemm_flops_per_s\": %s}\n",
                            decode ? "decode" : "prefill", B, T, S, o.dim, o.heads, o.head_dim,
                            decode ? dtname : "none", dev.name, r.median_s, r.min_s, r.max_s,
                            r.attn_s, r.proj_s, jbw, jgemm, jcbw, jcgemm);
                    }
                }
            }
        }
    }
done:
    if (json != NULL) {
        fclose(json);
    }
    clmha_layer_release(layers[0]);
    clmha_layer_release(layers[1]);
    clmha_context_release(ctx);
    return rc;
}
