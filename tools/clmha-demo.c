/*
 * clmha-demo - the main job: an autoregressive decoding run of a GPT-2-small-sized
 * CachedMultiHeadAttention layer (768 dims, 12 heads of 64, seeded weights) on the selected
 * OpenCL device, the way keras-hub's generation loop drives it: prefill a prompt of P tokens
 * into the key/value cache with a causal mask (cache_update_index 0), then decode N tokens one
 * at a time (T = 1, cache_update_index = position). Every step is checked against a no-cache
 * recomputation over the whole prefix; it prints the device, prefill time, per-token latency,
 * tokens per second and the largest error, and fails if the error is out of tolerance.
 */
#include <clmha.h>

#include "timing.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct opts {
    size_t prompt, steps, batch, dim, heads, head_dim, cache_length;
    long long seed;
    int check, mask, half; /* half: the cache dtype, 0 float32, 1 float16, 2 int8 */
} opts;

static void usage(FILE *f) {
    fprintf(f, "usage: clmha-demo [options]\n"
               "\n"
               "Decodes with a GPT-2-small-sized CachedMultiHeadAttention layer on the OpenCL\n"
               "device chosen by CLMHA_PLATFORM / CLMHA_DEVICE / CLMHA_DEVICE_TYPE.\n"
               "\n"
               "  --prompt P     prompt tokens prefilled in one call (default 32)\n"
               "  --steps N      tokens decoded one at a time (default 32)\n"
               "  --batch B      sequences decoded together (default 1)\n"
               "  --dim D        model dim (default 768)\n"
               "  --heads H      attention heads (default 12)\n"
               "  --head-dim K   key/value dim per head (default 64)\n"
               "  --seed S       weight and input seed (default 2024)\n"
               "  --cache-length L  cache positions (default prompt + steps): a longer,\n"
               "                 preallocated cache as a generation loop keeps one\n"
               "  --mask         pass causal mask tensors instead of args.causal\n"
               "  --cache-dtype T  float32 (default), float16 or int8: the key/value cache's\n"
               "                 dtype (the check then allows half's rounding, 3e-3 of the\n"
               "                 largest output, or int8's quantization, 3e-2)\n"
               "  --no-check     skip the no-cache recomputation check\n"
               "  --help         this text\n");
}

static int parse(int argc, char **argv, opts *o) {
    *o = (opts){32, 32, 1, 768, 12, 64, 0, 2024, 1, 0, 0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        size_t *target = NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            exit(0);
        } else if (strcmp(a, "--no-check") == 0) {
            o->check = 0;
            continue;
        } else if (strcmp(a, "--mask") == 0) {
            o->mask = 1;
            continue;
        } else if (strcmp(a, "--cache-dtype") == 0 && i + 1 < argc) {
            const char *v = argv[++i];
            o->half = strcmp(v, "float16") == 0 ? 1 : strcmp(v, "int8") == 0 ? 2 : 0;
            if (!o->half && strcmp(v, "float32") != 0) {
                fprintf(stderr, "clmha-demo: --cache-dtype is float32, float16 or int8, not '%s'\n",
                        v);
                return 2;
            }
            continue;
        } else if (strcmp(a, "--cache-length") == 0) {
            target = &o->cache_length;
        } else if (strcmp(a, "--prompt") == 0) {
            target = &o->prompt;
        } else if (strcmp(a, "--steps") == 0) {
            target = &o->steps;
        } else if (strcmp(a, "--batch") == 0) {
            target = &o->batch;
        } else if (strcmp(a, "--dim") == 0) {
            target = &o->dim;
        } else if (strcmp(a, "--heads") == 0) {
            target = &o->heads;
        } else if (strcmp(a, "--head-dim") == 0) {
            target = &o->head_dim;
        } else if (strcmp(a, "--seed") == 0 && i + 1 < argc) {
            o->seed = atoll(argv[++i]);
            continue;
        } else {
            fprintf(stderr, "clmha-demo: unknown option '%s' (see --help)\n", a);
            return 2;
        }
        char *end = NULL;
        if (i + 1 >= argc || (*target = strtoull(argv[i + 1], &end, 10), *end != '\0') ||
            *target == 0 || *target > 1000000) {
            fprintf(stderr, "clmha-demo: %s needs a whole number from 1 to 1000000\n", a);
            return 2;
        }
        i++;
    }
    return 0;
}

/* Seeded input embeddings: a simple LCG, enough for a demo. */
static void fill(float *x, size_t n, unsigned long long *state) {
    for (size_t i = 0; i < n; i++) {
        *state = *state * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = (float)((double)(*state >> 40) / 16777216.0 * 2.0 - 1.0);
    }
}

/* Reports a failed clmha call; true when it succeeded. */
static int ok(clmha_status st) {
    if (st != CLMHA_OK) {
        fprintf(stderr, "clmha-demo: %s\n", clmha_last_error());
    }
    return st == CLMHA_OK;
}

/* A decode step's tensors (one token of each sequence, its mask row, its output) and host
 * staging: tok holds the step's input, then its output. */
typedef struct step_io {
    size_t B, D, CL, L;
    clmha_tensor *x, *mask, *out;
    float *tok;
    unsigned char *mask_host;
} step_io;

static int step_tensors(clmha_context *ctx, size_t B, size_t D, size_t CL, size_t L, step_io *s) {
    size_t ss[3] = {B, 1, D}, sm[3] = {B, 1, CL};
    *s = (step_io){B, D, CL, L, NULL, NULL, NULL, NULL, NULL};
    s->tok = malloc(B * D * sizeof(float));
    s->mask_host = malloc(B * CL);
    if (s->tok == NULL || s->mask_host == NULL) {
        fprintf(stderr, "clmha-demo: out of memory\n");
        return 0;
    }
    return ok(clmha_tensor_create(ctx, CLMHA_FLOAT32, 3, ss, &s->x)) &&
           ok(clmha_tensor_create(ctx, CLMHA_UINT8, 3, sm, &s->mask)) &&
           ok(clmha_tensor_create(ctx, CLMHA_FLOAT32, 3, ss, &s->out));
}

static void step_release(step_io *s) {
    clmha_tensor_release(s->x), clmha_tensor_release(s->mask), clmha_tensor_release(s->out);
    free(s->tok), free(s->mask_host);
}

/* Decodes the token at position @p pos of every sequence of @p x (B sequences of L tokens of D)
 * against the cache, writing its keys and values there; its output is left in s->tok. */
static int decode_step(clmha_context *ctx, clmha_layer *layer, const opts *o, const float *x,
                       size_t pos, step_io *s, clmha_tensor *cache) {
    for (size_t b = 0; b < s->B; b++) {
        memcpy(s->tok + b * s->D, x + (b * s->L + pos) * s->D, s->D * sizeof(float));
        for (size_t j = 0; j < s->CL; j++)
            s->mask_host[b * s->CL + j] = j <= pos;
    }
    clmha_call_args a;
    clmha_call_args_init(&a);
    a.query = s->x, a.value = s->x, a.cache = cache;
    a.attention_mask = o->mask ? s->mask : NULL, a.causal = !o->mask;
    a.output = s->out, a.has_cache_update_index = true, a.cache_update_index = (int64_t)pos;
    return ok(clmha_tensor_write(s->x, s->tok, s->B * s->D * sizeof(float))) &&
           ok(clmha_tensor_write(s->mask, s->mask_host, s->B * s->CL)) &&
           ok(clmha_layer_call(layer, &a)) && ok(clmha_context_finish(ctx)) &&
           ok(clmha_tensor_read(s->out, s->tok, s->B * s->D * sizeof(float)));
}

int main(int argc, char **argv) {
    opts o;
    int rc = parse(argc, argv, &o);
    if (rc != 0) {
        return rc;
    }
    rc = 1;
    const size_t B = o.batch, D = o.dim, P = o.prompt, N = o.steps, L = o.prompt + o.steps;
    /* The cache may be longer than the run fills, as a preallocated maximum length. */
    const size_t CL = o.cache_length > L ? o.cache_length : L;
    clmha_context *ctx = NULL;
    clmha_layer *layer = NULL;
    clmha_tensor *tx = NULL, *tcache = NULL, *tmask = NULL, *tout = NULL;
    step_io steps = {0, 0, 0, 0, NULL, NULL, NULL, NULL, NULL};
    float *x = malloc(B * L * D * sizeof(float));
    float *out = malloc(B * L * D * sizeof(float));
    float *step_out = malloc(B * N * D * sizeof(float));
    double *lat = malloc((N ? N : 1) * sizeof(double));
    unsigned char *mask = malloc(B * P * CL);
    if (!x || !out || !step_out || !lat || !mask) {
        fprintf(stderr, "clmha-demo: out of memory\n");
        goto done;
    }
    unsigned long long st = (unsigned long long)o.seed;
    fill(x, B * L * D, &st);

    const double t_start = now_s(); /* for the time to the first layer output */
    if (!ok(clmha_context_create(NULL, &ctx))) {
        goto done;
    }
    clmha_device_info dev;
    if (!ok(clmha_context_device(ctx, &dev))) {
        goto done;
    }
    printf("clmha %s decoding demo\n", clmha_version_string());
    printf("device: %s (%s, %s)\n", dev.name, dev.platform_name, clmha_device_type_name(dev.type));
    printf("layer: dim %zu, %zu heads of %zu; batch %zu, prompt %zu, decode %zu tokens, %s cache "
           "of %zu, causal %s\n",
           D, o.heads, o.head_dim, B, P, N,
           o.half == 2 ? "int8"
           : o.half    ? "float16"
                       : "float32",
           CL, o.mask ? "mask tensors" : "in the kernel");

    clmha_layer_config cfg;
    clmha_layer_config_init(&cfg);
    cfg.num_heads = (int)o.heads;
    cfg.key_dim = (int)o.head_dim;
    cfg.seed = o.seed;
    cfg.cache_dtype = o.half == 2 ? CLMHA_INT8 : o.half ? CLMHA_FLOAT16 : CLMHA_FLOAT32;
    cfg.bias_initializer = clmha_initializer_default(CLMHA_INIT_RANDOM_NORMAL);
    double t0 = now_s();
    if (!ok(clmha_layer_create(ctx, &cfg, D, D, 0, &layer))) {
        goto done;
    }
    printf("layer built in %.3f s (kernels from %s)\n", now_s() - t0,
           clmha_context_cache_dir(ctx) ? "source or the binary cache" : "source");
    /* The prompt's and the steps' shapes: workspace and CLBlast's program made now, so that no
     * call builds or allocates anything. */
    t0 = now_s();
    if (!ok(clmha_layer_reserve(layer, B, P, P, CL, false))) {
        goto done;
    }
    printf("shapes reserved in %.3f s\n", now_s() - t0);
    if (!step_tensors(ctx, B, D, CL, L, &steps)) {
        goto done;
    }

    /* Prefill: the prompt attends causally, written into cache positions [0, P). */
    size_t ps[3] = {B, P, D}, pm[3] = {B, P, CL};
    if (!ok(clmha_layer_create_cache(layer, B, CL, &tcache))) { /* zeroed, the layer's dtype */
        goto done;
    }
    float *prompt = malloc(B * P * D * sizeof(float));
    for (size_t b = 0; b < B; b++) {
        memcpy(prompt + b * P * D, x + b * L * D, P * D * sizeof(float));
        for (size_t t = 0; t < P; t++)
            for (size_t j = 0; j < CL; j++)
                mask[(b * P + t) * CL + j] = j <= t;
    }
    if (!ok(clmha_tensor_create(ctx, CLMHA_FLOAT32, 3, ps, &tx))) {
        goto done;
    }
    if (!ok(clmha_tensor_write(tx, prompt, B * P * D * sizeof(float)))) {
        goto done;
    }
    free(prompt);
    if (!ok(clmha_tensor_create(ctx, CLMHA_UINT8, 3, pm, &tmask))) {
        goto done;
    }
    if (!ok(clmha_tensor_write(tmask, mask, B * P * CL))) {
        goto done;
    }
    if (!ok(clmha_tensor_create(ctx, CLMHA_FLOAT32, 3, ps, &tout))) {
        goto done;
    }
    clmha_call_args a;
    clmha_call_args_init(&a);
    a.query = tx, a.value = tx, a.cache = tcache, a.output = tout;
    /* keras-hub's causal rule, either in the kernel or as a mask tensor. */
    a.attention_mask = o.mask ? tmask : NULL, a.causal = !o.mask;
    a.has_cache_update_index = true, a.cache_update_index = 0;
    if (!ok(clmha_layer_call(layer, &a))) { /* warm-up: the first run of each kernel */
        goto done;
    }
    if (!ok(clmha_context_finish(ctx))) {
        goto done;
    }
    /* Context, device, programs (from the binary cache when warm), weights and one prefill. */
    printf("first layer output %.1f ms after start (context, layer, first call)\n",
           (now_s() - t_start) * 1e3);
    /* And one decode step (position P, cleared below with the rest of the cache): a driver may
     * compile a kernel for its work-group size at its first launch (PoCL does, keeping the
     * result in its own cache), and the step's kernels are not the prefill's. */
    t0 = now_s();
    if (N > 0 && !decode_step(ctx, layer, &o, x, P, &steps, tcache)) {
        goto done;
    }
    printf("first decode step %.1f ms (warm-up: the first run of its kernels)\n",
           (now_s() - t0) * 1e3);
    if (!ok(clmha_tensor_zero(tcache))) {
        goto done;
    }
    t0 = now_s();
    if (!ok(clmha_layer_call(layer, &a))) {
        goto done;
    }
    if (!ok(clmha_context_finish(ctx))) {
        goto done;
    }
    double prefill = now_s() - t0;
    float *prefill_out = malloc(B * P * D * sizeof(float));
    if (!ok(clmha_tensor_read(tout, prefill_out, B * P * D * sizeof(float)))) {
        goto done;
    }

    /* Decode: one token per call, attending to every position up to itself. */
    for (size_t i = 0; i < N; i++) {
        t0 = now_s();
        if (!decode_step(ctx, layer, &o, x, P + i, &steps, tcache)) {
            goto done;
        }
        lat[i] = now_s() - t0;
        for (size_t b = 0; b < B; b++)
            memcpy(step_out + (b * N + i) * D, steps.tok + b * D, D * sizeof(float));
    }

    printf("prefill: %zu tokens in %.2f ms (%.0f tokens/s)\n", B * P, prefill * 1e3,
           (double)(B * P) / prefill);
    if (N > 0) {
        double total = 0;
        for (size_t i = 0; i < N; i++)
            total += lat[i];
        const double med = median(lat, N); /* sorts lat */
        printf("decode: %zu steps, per-token latency median %.3f ms (min %.3f, max %.3f), "
               "%.1f tokens/s\n",
               N, med * 1e3, lat[0] * 1e3, lat[N - 1] * 1e3, (double)(B * N) / total);
    }

    if (o.check) {
        /* The no-cache layer over the whole sequence with a causal mask gives every position's
         * output at once; each cached step must equal its row. */
        size_t fs[3] = {B, L, D}, fm[3] = {B, L, L};
        clmha_tensor *fx = NULL, *fmask = NULL, *fout = NULL;
        unsigned char *full = malloc(B * L * L);
        for (size_t b = 0; b < B; b++)
            for (size_t t = 0; t < L; t++)
                for (size_t j = 0; j < L; j++)
                    full[(b * L + t) * L + j] = j <= t;
        if (!ok(clmha_tensor_create(ctx, CLMHA_FLOAT32, 3, fs, &fx))) {
            goto done;
        }
        if (!ok(clmha_tensor_write(fx, x, B * L * D * sizeof(float)))) {
            goto done;
        }
        if (!ok(clmha_tensor_create(ctx, CLMHA_UINT8, 3, fm, &fmask))) {
            goto done;
        }
        if (!ok(clmha_tensor_write(fmask, full, B * L * L))) {
            goto done;
        }
        if (!ok(clmha_tensor_create(ctx, CLMHA_FLOAT32, 3, fs, &fout))) {
            goto done;
        }
        clmha_call_args_init(&a);
        a.query = fx, a.value = fx, a.attention_mask = fmask, a.output = fout;
        if (!ok(clmha_layer_call(layer, &a))) {
            goto done;
        }
        if (!ok(clmha_tensor_read(fout, out, B * L * D * sizeof(float)))) {
            goto done;
        }
        double max_err = 0, max_ref = 0;
        for (size_t b = 0; b < B; b++)
            for (size_t t = 0; t < L; t++)
                for (size_t d = 0; d < D; d++) {
                    double ref = out[(b * L + t) * D + d];
                    double got = t < P ? prefill_out[(b * P + t) * D + d]
                                       : step_out[(b * N + t - P) * D + d];
                    max_err = fmax(max_err, fabs(got - ref));
                    max_ref = fmax(max_ref, fabs(ref));
                }
        free(full);
        clmha_tensor_release(fx);
        clmha_tensor_release(fmask);
        clmha_tensor_release(fout);
        const double tol = o.half == 2 ? 3e-2 : o.half ? 3e-3 : 1e-5;
        int ok = max_err <= tol * max_ref + (o.half ? 1e-5 : 1e-6);
        printf("check: every cached step vs no-cache recomputation of the prefix: max |error| "
               "%.3g (max |output| %.3g) %s\n",
               max_err, max_ref, ok ? "OK" : "FAILED");
        if (!ok) {
            goto done;
        }
    }
    free(prefill_out);
    rc = 0;
done:
    clmha_tensor_release(tx);
    clmha_tensor_release(tcache);
    clmha_tensor_release(tmask);
    clmha_tensor_release(tout);
    step_release(&steps);
    clmha_layer_release(layer);
    clmha_context_release(ctx);
    free(x);
    free(out);
    free(step_out);
    free(lat);
    free(mask);
    return rc;
}
