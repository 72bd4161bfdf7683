/*
 * fuzz_call.c - libFuzzer target for the call's argument validation. The input bytes choose
 * a tiny layer (heads, head dims, feature dims, output shape, attention axes, dropout) and the
 * ranks, shapes, dtypes and presence of every call argument (query, value, key, mask, cache
 * (float32 or float16, matching the layer's cache_dtype or not), key_lengths, causal, update
 * index, training, output, scores), mostly valid, sometimes off by one here or there. Every
 * call must either succeed or fail cleanly, and a failed call must leave the cache and the
 * output byte-for-byte as they were (abort otherwise, which libFuzzer reports).
 *
 * Build with -DCLMHA_BUILD_FUZZ=ON (see fuzz_weights.c); run:
 *   build-fuzz/tests/fuzz_call -max_total_time=300 corpus-dir
 */
#include <clmha.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static clmha_context *ctx;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    if (clmha_context_create(NULL, &ctx) != CLMHA_OK) {
        fprintf(stderr, "fuzz_call: %s\n", clmha_last_error());
        exit(1);
    }
    return 0;
}

typedef struct reader {
    const uint8_t *p;
    size_t n;
} reader;

static unsigned take(reader *r, unsigned range) {
    unsigned v = r->n ? *r->p : 0;
    if (r->n) {
        r->p++, r->n--;
    }
    return range ? v % range : v;
}

/* A dim: usually the wanted one, sometimes a neighbour or 1. */
static size_t dim(reader *r, size_t want) {
    unsigned c = take(r, 16);
    if (c == 0) {
        return want + 1;
    }
    if (c == 1 && want > 1) {
        return want - 1;
    }
    if (c == 2) {
        return 1;
    }
    return want;
}

static size_t esize(clmha_dtype dt) {
    return dt == CLMHA_UINT8 ? 1 : dt == CLMHA_FLOAT16 ? 2 : 4;
}

static clmha_tensor *tensor(reader *r, clmha_dtype dt, int rank, const size_t *want) {
    if (take(r, 12) == 0) {
        return NULL;
    }
    size_t shape[CLMHA_MAX_RANK];
    if (take(r, 10) == 0) {
        rank = 1 + (int)take(r, 5); /* a wrong rank */
    }
    for (int i = 0; i < rank; i++) {
        shape[i] = dim(r, i < 5 ? want[i] : 2);
    }
    clmha_tensor *t = NULL;
    if (clmha_tensor_create(ctx, dt, rank, shape, &t) != CLMHA_OK) {
        return NULL;
    }
    size_t bytes = clmha_tensor_numel(t) * esize(dt);
    uint8_t *fill = malloc(bytes);
    for (size_t i = 0; i < bytes; i++) {
        fill[i] = dt == CLMHA_UINT8 ? (uint8_t)take(r, 2) : (uint8_t)(i % 4 == 3 ? 0x3f : i);
    }
    clmha_tensor_write(t, fill, bytes);
    free(fill);
    return t;
}

static uint8_t *snapshot(const clmha_tensor *t, size_t *bytes) {
    if (t == NULL) {
        return NULL;
    }
    *bytes = clmha_tensor_numel(t) * esize(clmha_tensor_dtype(t));
    uint8_t *b = malloc(*bytes);
    clmha_tensor_read(t, b, *bytes);
    return b;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    reader r = {data, size};
    clmha_layer_config cfg;
    clmha_layer_config_init(&cfg);
    cfg.num_heads = 1 + (int)take(&r, 3);
    cfg.key_dim = 1 + (int)take(&r, 4);
    cfg.value_dim = (int)take(&r, 3) == 0 ? 1 + (int)take(&r, 4) : 0;
    cfg.use_bias = take(&r, 2);
    cfg.dropout = take(&r, 4) == 0 ? 0.5 : 0.0;
    cfg.seed = 1;
    cfg.output_rank = (int)take(&r, 3);
    cfg.output_shape[0] = 1 + take(&r, 3), cfg.output_shape[1] = 1 + take(&r, 3);
    if (take(&r, 4) == 0) {
        cfg.num_attention_axes = 1;
        cfg.attention_axes[0] = (int)take(&r, 7) - 3;
    }
    size_t Dq = 1 + take(&r, 4), Dv = 1 + take(&r, 4), Dk = take(&r, 2) ? 1 + take(&r, 4) : 0;
    cfg.cache_dtype = take(&r, 3) == 0 ? CLMHA_FLOAT16 : CLMHA_FLOAT32;
    clmha_layer *layer = NULL;
    if (clmha_layer_create(ctx, &cfg, Dq, Dv, Dk, &layer) != CLMHA_OK) {
        return 0;
    }
    size_t H = (size_t)cfg.num_heads, dk = (size_t)cfg.key_dim;
    size_t B = 1 + take(&r, 2), T = 1 + take(&r, 4), S = 1 + take(&r, 5), Sn = 1 + take(&r, 3);
    int mode = (int)take(&r, 3); /* none, static, update */
    size_t kvlen = mode == 0 ? S : Sn;
    size_t wq[8] = {B, T, Dq}, wv[8] = {B, kvlen, Dv}, wk[8] = {B, kvlen, Dk ? Dk : Dv};
    size_t wm[8] = {B, T, S}, wc[8] = {B, 2, S, H, dk};
    size_t out_f = cfg.output_rank == 0 ? Dq : cfg.output_shape[0];
    size_t wo[8] = {B, T, out_f, cfg.output_shape[1]}, wp[8] = {B, H, T, S};
    clmha_tensor *q = tensor(&r, CLMHA_FLOAT32, 3, wq);
    clmha_tensor *v = tensor(&r, CLMHA_FLOAT32, 3, wv);
    clmha_tensor *k = take(&r, 2) ? tensor(&r, CLMHA_FLOAT32, 3, wk) : NULL;
    clmha_tensor *m = take(&r, 2)
                          ? tensor(&r, CLMHA_UINT8, take(&r, 2) ? 3 : 2, take(&r, 2) ? wm : wm + 1)
                          : NULL;
    /* Mostly the layer's cache dtype, sometimes the other one. */
    const bool other = take(&r, 8) == 0;
    clmha_dtype cdt = (cfg.cache_dtype == CLMHA_FLOAT16) != other ? CLMHA_FLOAT16 : CLMHA_FLOAT32;
    clmha_tensor *c = mode ? tensor(&r, cdt, 5, wc) : NULL;
    clmha_tensor *o = tensor(&r, CLMHA_FLOAT32, 2 + (cfg.output_rank ? cfg.output_rank : 1), wo);
    clmha_tensor *p = take(&r, 3) == 0 ? tensor(&r, CLMHA_FLOAT32, 4, wp) : NULL;
    clmha_call_args a;
    clmha_call_args_init(&a);
    a.query = q, a.value = v, a.key = k, a.attention_mask = m, a.cache = c, a.output = o;
    a.attention_scores = p;
    a.has_cache_update_index = mode == 2 || take(&r, 16) == 0;
    a.cache_update_index = (int64_t)take(&r, 8) - 2;
    a.training = take(&r, 2);
    a.causal = take(&r, 4) == 0;
    size_t wl[8] = {B};
    clmha_tensor *lens =
        take(&r, 4) == 0 ? tensor(&r, take(&r, 6) ? CLMHA_INT32 : CLMHA_UINT8, 1, wl) : NULL;
    a.key_lengths = lens;
    size_t cb = 0, ob = 0;
    uint8_t *c0 = snapshot(c, &cb), *o0 = snapshot(o, &ob);
    if (clmha_layer_call(layer, &a) != CLMHA_OK) {
        size_t n;
        uint8_t *c1 = snapshot(c, &n), *o1 = snapshot(o, &n);
        if ((c && memcmp(c0, c1, cb) != 0) || (o && memcmp(o0, o1, ob) != 0)) {
            fprintf(stderr, "fuzz_call: a rejected call changed %s: %s\n",
                    c && memcmp(c0, c1, cb) ? "the cache" : "the output", clmha_last_error());
            abort();
        }
        free(c1), free(o1);
    } else {
        clmha_context_finish(ctx);
    }
    free(c0), free(o0);
    clmha_tensor_release(q), clmha_tensor_release(v), clmha_tensor_release(k);
    clmha_tensor_release(m), clmha_tensor_release(c), clmha_tensor_release(o);
    clmha_tensor_release(p), clmha_tensor_release(lens);
    clmha_layer_release(layer);
    return 0;
}
