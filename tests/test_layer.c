/*
 * test_layer.c - the layer against the float64 reference (reference.c): 300+ seeded random
 * configurations over the three cache modes, batch, lengths 1..385, heads, head dims, feature
 * dims, biases, output shapes, every mask form, cache-update positions, tensors at offsets in
 * larger buffers with canaries; plus keras-hub's own checks (a token-by-token cache loop
 * equals one cached call; probabilities sum to 1) and static mode leaving the cache intact.
 */
#include "reference.h"
#include "support.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layer_case.h"

static const size_t LENS[] = {1, 7, 63, 64, 65, 113, 385};
static const size_t DIMS[] = {1, 8, 64, 72, 96, 128};
static const size_t HEADS[] = {1, 2, 12};

/* Draws configuration number i: sizes from the edge lists, capped so that the float64
 * reference stays fast; every mode, mask form and option is cycled through. */
static case_cfg random_case(uint64_t i) {
    test_rng r = {i * 1000003 + 11};
    case_cfg c;
    for (;;) {
        memset(&c, 0, sizeof c);
        c.seed = i;
        c.mode = (int)(i % 3);
        c.mask = (int)((i / 3) % MASK_KINDS);
        c.B = rng_uniform(&r) < 0.5 ? 1 : 3;
        c.T = LENS[rng_below(&r, 7)];
        c.S = LENS[rng_below(&r, 7)];
        c.H = HEADS[rng_below(&r, 3)];
        c.dk = DIMS[rng_below(&r, 6)];
        c.dv = c.mode == MODE_NONE && rng_uniform(&r) < 0.5 ? DIMS[rng_below(&r, 6)] : c.dk;
        c.Dq = 1 + rng_below(&r, 96);
        c.Dv = rng_uniform(&r) < 0.5 ? c.Dq : 1 + rng_below(&r, 96);
        c.separate_key = rng_uniform(&r) < 0.5;
        c.Dk = c.separate_key ? 1 + rng_below(&r, 96) : c.Dv;
        c.use_bias = rng_uniform(&r) < 0.7;
        c.scores = rng_uniform(&r) < 0.5;
        c.offsets = rng_uniform(&r) < 0.3;
        int o = (int)rng_below(&r, 3);
        c.out_rank = o;
        c.out_shape[0] = 1 + rng_below(&r, 24);
        c.out_shape[1] = 1 + rng_below(&r, 5);
        c.Sn = c.S;
        if (c.mode == MODE_UPDATE) {
            /* Single-token decode, or a chunk (chunked prefill) at index 0, the middle or the
             * end. */
            c.Sn = rng_uniform(&r) < 0.5 ? 1 : 1 + rng_below(&r, c.S);
            size_t where = rng_below(&r, 3);
            c.index = where == 0 ? 0 : where == 1 ? (c.S - c.Sn) / 2 : c.S - c.Sn;
        } else if (c.mode == MODE_STATIC) {
            c.Sn = 1;
        }
        double work = (double)c.B * (double)c.H * (double)c.T * (double)c.S * (double)(c.dk + c.dv);
        double proj = (double)c.B * (double)(c.T + c.S) * 96.0 * (double)(c.H * c.dk);
        if (work <= 3e6 && proj <= 6e6) {
            /* A third of the cached cases over a half cache and a third over an int8 one,
             * chosen from i alone so that the draws (and every other case) stay as they were. */
            c.half_cache = c.mode != MODE_NONE && (i / 3) % 3 == 1;
            c.int8_cache = c.mode != MODE_NONE && (i / 3) % 3 == 2;
            return c;
        }
    }
}

/* The sweep in three slices (case i in slice i % 3), each a test of its own, so that ctest runs
 * them side by side (test_layer_sweep_0 .. 2) and none runs long on a slow device. */
static void random_sweep(uint64_t slice) {
    const uint64_t n = 330;
    size_t per_mode[3] = {0, 0, 0}, half = 0, int8 = 0, count = 0;
    for (uint64_t i = slice; i < n; i += 3) {
        case_cfg c = random_case(i);
        run_case(&c);
        per_mode[c.mode]++;
        half += c.half_cache;
        int8 += c.int8_cache;
        count++;
    }
    print_message("%zu random configurations (slice %llu of 0..2) matched the reference (no cache "
                  "%zu, static %zu, update %zu; of the cached ones %zu over a half cache, %zu over "
                  "an int8 one)\n",
                  count, (unsigned long long)slice, per_mode[0], per_mode[1], per_mode[2], half,
                  int8);
}

static void random_sweep_0(void **state) {
    (void)state;
    random_sweep(0);
}

static void random_sweep_1(void **state) {
    (void)state;
    random_sweep(1);
}

static void random_sweep_2(void **state) {
    (void)state;
    random_sweep(2);
}

/* Named edge cases the random sweep might not hit. */
static void test_edge_cases(void **state) {
    (void)state;
    case_cfg base = {0};
    base.B = 1, base.T = 1, base.S = 1, base.Sn = 1, base.H = 1, base.dk = 1, base.dv = 1;
    base.Dq = base.Dk = base.Dv = 1;
    base.use_bias = true;
    case_cfg c = base;
    run_case(&c); /* everything 1 */
    c = base;
    c.mode = MODE_UPDATE, c.S = 385, c.index = 384, c.H = 12, c.dk = c.dv = 64,
    c.Dq = c.Dv = c.Dk = 48;
    c.mask = MASK_CAUSAL, c.scores = true, c.seed = 5;
    run_case(&c); /* update at S - 1 */
    c.index = 0, c.seed = 6;
    run_case(&c); /* update at 0 */
    c = base;
    c.mode = MODE_UPDATE, c.S = 113, c.Sn = 40, c.index = 50, c.H = 2, c.dk = c.dv = 72;
    c.Dq = c.Dv = c.Dk = 33, c.mask = MASK_CAUSAL, c.scores = true, c.offsets = true, c.seed = 7;
    c.T = 40, c.B = 3;
    run_case(&c); /* chunked prefill in the middle */
    c = base;
    c.T = 7, c.S = 65, c.Sn = 65, c.H = 2, c.dk = 128, c.dv = 8, c.Dq = 20, c.Dv = 30, c.Dk = 40;
    c.separate_key = true, c.mask = MASK_ROWS_OFF, c.scores = true, c.seed = 8, c.B = 3;
    c.out_rank = 2, c.out_shape[0] = 3, c.out_shape[1] = 4;
    run_case(&c); /* fully masked rows, dv != dk, tuple output */
}

/* keras-hub's test_cache_call_is_correct: a token-by-token loop over an updated cache gives
 * the same outputs and cache as one call with the whole sequence (causal mask). */
static void token_loop_equals_one_shot(clmha_dtype cache_dtype) {
    const size_t B = 2, S = 9, D = 16, H = 2, dk = 8;
    test_rng r = {99};
    clmha_layer_config cfg;
    clmha_layer_config_init(&cfg);
    cfg.num_heads = (int)H;
    cfg.key_dim = (int)dk;
    cfg.seed = 123;
    cfg.cache_dtype = cache_dtype;
    clmha_layer *layer = NULL;
    assert_ok(clmha_layer_create(ctx, &cfg, D, D, 0, &layer));
    float x[2 * 9 * 16];
    rng_fill(&r, x, B * S * D, -1, 1);
    float *zeros = calloc(B * 2 * S * H * dk, sizeof(float));
    const bool i8 = cache_dtype == CLMHA_INT8;
    const size_t row = i8 ? dk + 4 : dk; /* an int8 row carries its scale */
    size_t xs[3] = {B, S, D}, cs[5] = {B, 2, S, H, row}, ms[3] = {B, S, S};
    uint8_t causal[2 * 9 * 9];
    for (size_t b = 0; b < B; b++)
        for (size_t i = 0; i < S; i++)
            for (size_t j = 0; j < S; j++)
                causal[(b * S + i) * S + j] = j <= i;
    clmha_tensor *tx = test_tensor_f32(ctx, 3, xs, x);
    clmha_tensor *cache1 = NULL, *cache2 = NULL;
    const size_t cache_bytes =
        B * 2 * S * H * (i8 ? row : dk * (cache_dtype == CLMHA_FLOAT16 ? 2 : 4));
    assert_ok(clmha_tensor_create(ctx, cache_dtype, 5, cs, &cache1));
    assert_ok(clmha_tensor_write(cache1, zeros, cache_bytes)); /* zero bits in either dtype */
    clmha_tensor *out1 = test_tensor_f32(ctx, 3, xs, NULL);
    clmha_tensor *tm = test_tensor_u8(ctx, 3, ms, causal);
    clmha_call_args a;
    clmha_call_args_init(&a);
    a.query = tx, a.value = tx, a.attention_mask = tm, a.cache = cache1, a.output = out1;
    a.has_cache_update_index = true, a.cache_update_index = 0;
    assert_ok(clmha_layer_call(layer, &a));
    float *one = test_read(out1, NULL), *onec = test_read(cache1, NULL);

    assert_ok(clmha_tensor_create(ctx, cache_dtype, 5, cs, &cache2));
    assert_ok(clmha_tensor_write(cache2, zeros, cache_bytes));
    float loop[2 * 9 * 16];
    for (size_t i = 0; i < S; i++) {
        float xi[2 * 16];
        uint8_t mi[2 * 9];
        for (size_t b = 0; b < B; b++) {
            memcpy(xi + b * D, x + (b * S + i) * D, D * sizeof(float));
            for (size_t j = 0; j < S; j++)
                mi[b * S + j] = j <= i;
        }
        size_t xis[3] = {B, 1, D}, mis[3] = {B, 1, S};
        clmha_tensor *txi = test_tensor_f32(ctx, 3, xis, xi);
        clmha_tensor *tmi = test_tensor_u8(ctx, 3, mis, mi);
        clmha_tensor *oi = test_tensor_f32(ctx, 3, xis, NULL);
        clmha_call_args_init(&a);
        a.query = txi, a.value = txi, a.attention_mask = tmi, a.cache = cache2, a.output = oi;
        a.has_cache_update_index = true, a.cache_update_index = (int64_t)i;
        assert_ok(clmha_layer_call(layer, &a));
        float o[2 * 16];
        assert_ok(clmha_tensor_read(oi, o, sizeof o));
        for (size_t b = 0; b < B; b++)
            memcpy(loop + (b * S + i) * D, o + b * D, D * sizeof(float));
        clmha_tensor_release(txi), clmha_tensor_release(tmi), clmha_tensor_release(oi);
    }
    float *loopc = test_read(cache2, NULL);
    /* The loop's projections have 2 rows, the one-shot call's 18: where they take different
     * GEMM kernels their float results can differ in the last bit, and a value that close to a
     * half tie rounds to the neighbouring half (one ulp, 2^-11 relative). So with a half cache:
     * outputs within 1e-4 (a key or value left unrounded moves them by about 5e-4), and the
     * caches' halves equal but for a few one-ulp neighbours. With an int8 cache likewise a value
     * near a rounding tie may take the neighbouring step: the caches' values equal but for a few
     * one-step neighbours, their scales within float rounding, and the outputs within 1e-5 where
     * no value differs, else 1e-2 (one step is 1/127 of a row's largest magnitude). */
    double out_tol = cache_dtype == CLMHA_FLOAT16 ? 1e-4 : 1e-5;
    size_t neighbours = 0, n = B * 2 * S * H * dk;
    for (size_t i = 0; i < n && i8; i++) {
        const unsigned char *l8 = (const unsigned char *)loopc, *o8 = (const unsigned char *)onec;
        const size_t at = (i / dk) * row + i % dk;
        const int d = (int)(signed char)l8[at] - (int)(signed char)o8[at];
        assert_true(d >= -1 && d <= 1);
        neighbours += d != 0;
        if (i % dk == 0) {
            float sl, so;
            memcpy(&sl, l8 + at + dk, sizeof sl);
            memcpy(&so, o8 + at + dk, sizeof so);
            assert_close(sl, so, 1e-6 * fabs(so) + 1e-12);
        }
    }
    out_tol = i8 && neighbours > 0 ? 1e-2 : out_tol;
    for (size_t i = 0; i < B * S * D; i++)
        assert_close(loop[i], one[i], out_tol);
    for (size_t i = 0; i < n && !i8; i++) {
        if (cache_dtype == CLMHA_FLOAT16) {
            const uint16_t *l16 = (const uint16_t *)loopc, *o16 = (const uint16_t *)onec;
            int d = (int)l16[i] - (int)o16[i];
            assert_true(d >= -1 && d <= 1);
            neighbours += d != 0;
        } else {
            assert_close(loopc[i], onec[i], 1e-5);
        }
    }
    assert_true(neighbours <= 1 + n / 100);
    free(one), free(onec), free(loopc), free(zeros);
    clmha_tensor_release(tx), clmha_tensor_release(cache1), clmha_tensor_release(cache2);
    clmha_tensor_release(out1), clmha_tensor_release(tm);
    clmha_layer_release(layer);
}

/* Decoding token by token gives what one causal call over the whole sequence gives, with a
 * float, a half and an int8 cache. With a narrow cache this holds only because a call attends
 * over its new keys and values rounded to half or quantized, exactly as the cache keeps them (the
 * one-shot call sees every row fresh, the loop all but one from the cache). */
static void test_token_loop_equals_one_shot(void **state) {
    (void)state;
    token_loop_equals_one_shot(CLMHA_FLOAT32);
    token_loop_equals_one_shot(CLMHA_FLOAT16);
    token_loop_equals_one_shot(CLMHA_INT8);
}

/* Probabilities sum to 1 over every row that attends somewhere, and to 0 where fully masked. */
static void test_probabilities_sum_to_one(void **state) {
    (void)state;
    const size_t B = 2, T = 5, S = 70, D = 24, H = 3;
    test_rng r = {5};
    clmha_layer_config cfg;
    clmha_layer_config_init(&cfg);
    cfg.num_heads = (int)H;
    cfg.key_dim = 16;
    cfg.seed = 1;
    clmha_layer *layer = NULL;
    assert_ok(clmha_layer_create(ctx, &cfg, D, D, 0, &layer));
    float q[2 * 5 * 24], v[2 * 70 * 24];
    rng_fill(&r, q, B * T * D, -2, 2);
    rng_fill(&r, v, B * S * D, -2, 2);
    uint8_t m[2 * 5 * 70];
    for (size_t i = 0; i < B * T * S; i++)
        m[i] = ((i / S) % T == 2) ? 0 : rng_uniform(&r) < 0.5;
    size_t qs[3] = {B, T, D}, vs[3] = {B, S, D}, ms[3] = {B, T, S}, ps[4] = {B, H, T, S};
    clmha_tensor *tq = test_tensor_f32(ctx, 3, qs, q), *tv = test_tensor_f32(ctx, 3, vs, v);
    clmha_tensor *tm = test_tensor_u8(ctx, 3, ms, m), *to = test_tensor_f32(ctx, 3, qs, NULL);
    clmha_tensor *tp = test_tensor_f32(ctx, 4, ps, NULL);
    clmha_call_args a;
    clmha_call_args_init(&a);
    a.query = tq, a.value = tv, a.attention_mask = tm, a.output = to, a.attention_scores = tp;
    assert_ok(clmha_layer_call(layer, &a));
    float *p = test_read(tp, NULL), *o = test_read(to, NULL);
    for (size_t b = 0; b < B; b++)
        for (size_t h = 0; h < H; h++)
            for (size_t t = 0; t < T; t++) {
                double sum = 0;
                for (size_t j = 0; j < S; j++)
                    sum += p[((b * H + h) * T + t) * S + j];
                assert_close(sum, t == 2 ? 0.0 : 1.0, 1e-5);
            }
    /* A fully masked row's output is the output bias (zeros by default), never NaN. */
    for (size_t b = 0; b < B; b++)
        for (size_t d = 0; d < D; d++)
            assert_close(o[(b * T + 2) * D + d], 0.0, 0.0);
    free(p), free(o);
    clmha_tensor_release(tq), clmha_tensor_release(tv), clmha_tensor_release(tm);
    clmha_tensor_release(to), clmha_tensor_release(tp);
    clmha_layer_release(layer);
}

/* The shapes a layer reports: Keras's weight layouts and the output feature shape. */
static void test_shapes(void **state) {
    (void)state;
    clmha_layer_config cfg;
    clmha_layer_config_init(&cfg);
    cfg.num_heads = 3, cfg.key_dim = 5, cfg.value_dim = 7;
    cfg.output_rank = 2, cfg.output_shape[0] = 4, cfg.output_shape[1] = 6;
    clmha_layer *l = NULL;
    assert_ok(clmha_layer_create(ctx, &cfg, 10, 11, 12, &l));
    const size_t want[CLMHA_WEIGHT_COUNT][5] = {{3, 10, 3, 5},   {2, 3, 5},     {3, 12, 3, 5},
                                                {2, 3, 5},       {3, 11, 3, 7}, {2, 3, 7},
                                                {4, 3, 7, 4, 6}, {2, 4, 6}};
    for (int w = 0; w < CLMHA_WEIGHT_COUNT; w++) {
        int rank = 0;
        size_t shape[CLMHA_MAX_RANK];
        assert_ok(clmha_layer_weight_shape(l, (clmha_weight)w, &rank, shape));
        assert_int_equal(rank, want[w][0]);
        for (int i = 0; i < rank; i++)
            assert_int_equal(shape[i], want[w][1 + i]);
    }
    int rank;
    size_t shape[CLMHA_MAX_RANK];
    assert_ok(clmha_layer_output_shape(l, &rank, shape));
    assert_int_equal(rank, 2);
    assert_int_equal(shape[0], 4);
    assert_int_equal(shape[1], 6);
    clmha_layer_release(l);
    /* output_shape None: the query's last dim. */
    clmha_layer_config_init(&cfg);
    assert_ok(clmha_layer_create(ctx, &cfg, 10, 11, 0, &l));
    assert_ok(clmha_layer_output_shape(l, &rank, shape));
    assert_int_equal(rank, 1);
    assert_int_equal(shape[0], 10);
    assert_ok(clmha_layer_weight_shape(l, CLMHA_WEIGHT_KEY_KERNEL, &rank, shape));
    assert_int_equal(shape[0], 11); /* key defaults to value */
    clmha_layer_release(l);
}

/* Rank > 3 with attention_axes: the inputs are re-arranged on the host into the canonical
 * (B', T', D) form (B' = batch and non-attention axes, T' = attention axes in the given
 * order), the float64 reference runs on that, and the device's output rows and probabilities
 * must match it. Axes are drawn positive, negative and out of order. */
static void test_attention_axes_against_reference(void **state) {
    (void)state;
    for (uint64_t seed = 0; seed < 24; seed++) {
        test_rng r = {seed * 31 + 7};
        int rank = 4 + (int)rng_below(&r, 2); /* 4 or 5 */
        int n_inner = rank - 2;
        size_t qd[6], vd[6];
        qd[0] = vd[0] = 1 + rng_below(&r, 2);
        for (int i = 1; i <= n_inner; i++) {
            qd[i] = 1 + rng_below(&r, 4);
            vd[i] = qd[i];
        }
        /* Choose the attention axes (a random non-empty subset, random order). */
        int axes[4], na = 0;
        bool attn[6] = {false};
        for (int i = 1; i <= n_inner; i++) {
            if (rng_uniform(&r) < 0.5) {
                axes[na++] = i;
                attn[i] = true;
            }
        }
        if (na == 0) {
            axes[na++] = 1 + (int)rng_below(&r, (size_t)n_inner);
            attn[axes[0]] = true;
        }
        for (int i = na - 1; i > 0; i--) { /* shuffle */
            int j = (int)rng_below(&r, (size_t)i + 1), t = axes[i];
            axes[i] = axes[j], axes[j] = t;
        }
        for (int i = 1; i <= n_inner; i++) {
            if (attn[i]) {
                vd[i] = 1 + rng_below(&r, 5); /* key lengths differ on attention axes */
            }
        }
        const size_t H = 1 + rng_below(&r, 3), dk = 1 + rng_below(&r, 9), D = 3 + rng_below(&r, 9);
        const size_t dv = 1 + rng_below(&r, 9);
        clmha_layer_config cfg;
        clmha_layer_config_init(&cfg);
        cfg.num_heads = (int)H, cfg.key_dim = (int)dk, cfg.value_dim = (int)dv, cfg.seed = 3;
        cfg.bias_initializer = clmha_initializer_default(CLMHA_INIT_RANDOM_NORMAL);
        bool all_default = na == n_inner && seed % 3 == 0;
        if (!all_default) {
            cfg.num_attention_axes = na;
            for (int i = 0; i < na; i++) /* sometimes negative: a - rank */
                cfg.attention_axes[i] = rng_uniform(&r) < 0.5 ? axes[i] : axes[i] - rank;
        } else {
            for (int i = 0; i < na; i++) /* None means 1..n in order */
                axes[i] = i + 1;
        }
        clmha_layer *l = NULL;
        assert_ok(clmha_layer_create(ctx, &cfg, D, D, 0, &l));
        /* Canonical order of the inner axes: batch axes, then attention axes. */
        int order[6], no = 0;
        order[no++] = 0;
        for (int i = 1; i <= n_inner; i++)
            if (!attn[i])
                order[no++] = i;
        for (int i = 0; i < na; i++)
            order[no++] = axes[i];
        size_t Bc = 1, Tc = 1, Sc = 1, nq = 1, nv = 1;
        for (int i = 0; i <= n_inner; i++) {
            nq *= qd[i], nv *= vd[i];
            if (i == 0 || !attn[i])
                Bc *= qd[i];
        }
        for (int i = 0; i < na; i++)
            Tc *= qd[axes[i]], Sc *= vd[axes[i]];
        float *q = malloc(nq * D * sizeof(float)), *v = malloc(nv * D * sizeof(float));
        float *qc = malloc(nq * D * sizeof(float)), *vc = malloc(nv * D * sizeof(float));
        rng_fill(&r, q, nq * D, -1, 1);
        rng_fill(&r, v, nv * D, -1, 1);
        /* canon[i]: the canonical row of original row i, for query and value shapes. */
        size_t *cq = malloc(nq * sizeof(size_t)), *cv = malloc(nv * sizeof(size_t));
        for (int which = 0; which < 2; which++) {
            const size_t *d = which ? vd : qd;
            size_t n = which ? nv : nq, *canon = which ? cv : cq;
            for (size_t row = 0; row < n; row++) {
                size_t idx[6] = {0, 0, 0, 0, 0, 0}, rem = row;
                for (int i = n_inner; i >= 0; i--)
                    idx[i] = rem % d[i], rem /= d[i];
                size_t c = 0;
                for (int k = 0; k < no; k++)
                    c = c * d[order[k]] + idx[order[k]];
                canon[row] = c;
            }
        }
        for (size_t row = 0; row < nq; row++)
            memcpy(qc + cq[row] * D, q + row * D, D * sizeof(float));
        for (size_t row = 0; row < nv; row++)
            memcpy(vc + cv[row] * D, v + row * D, D * sizeof(float));
        /* A full mask in (B, batch..., q attn..., k attn...) order is (B', T', S') memory. */
        uint8_t *mask = malloc(Bc * Tc * Sc);
        for (size_t i = 0; i < Bc * Tc * Sc; i++)
            mask[i] = rng_uniform(&r) < 0.75;
        size_t md[12], nm = 0;
        md[nm++] = qd[0];
        for (int i = 1; i <= n_inner; i++)
            if (!attn[i])
                md[nm++] = qd[i];
        for (int i = 0; i < na; i++)
            md[nm++] = qd[axes[i]];
        for (int i = 0; i < na; i++)
            md[nm++] = vd[axes[i]];

        float *w[CLMHA_WEIGHT_COUNT];
        for (int i = 0; i < CLMHA_WEIGHT_COUNT; i++) {
            int wr;
            size_t ws[CLMHA_MAX_RANK], n = 1;
            assert_ok(clmha_layer_weight_shape(l, (clmha_weight)i, &wr, ws));
            for (int j = 0; j < wr; j++)
                n *= ws[j];
            w[i] = malloc(n * sizeof(float));
            assert_ok(clmha_layer_get_weight(l, (clmha_weight)i, w[i], n));
        }
        double *out_ref = malloc(Bc * Tc * D * sizeof(double));
        double *p_ref = malloc(Bc * H * Tc * Sc * sizeof(double));
        ref_weights rw = {H,    dk,   dv,   D,    D,    D,    D,    true,
                          w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]};
        ref_call rc = {Bc,    Tc, qc,   NULL,    vc,    Sc,    mask, {Bc, Tc, Sc}, NULL, 0,
                       false, 0,  NULL, out_ref, p_ref, false, 0,    false,        NULL};
        assert_true(ref_forward(&rw, &rc));

        size_t qs[6], vs[6];
        memcpy(qs, qd, sizeof qs), memcpy(vs, vd, sizeof vs);
        qs[rank - 1] = vs[rank - 1] = D;
        clmha_tensor *tq = test_tensor_f32(ctx, rank, qs, q),
                     *tv = test_tensor_f32(ctx, rank, vs, v);
        clmha_tensor *to = test_tensor_f32(ctx, rank, qs, NULL);
        clmha_tensor *tm = test_tensor_u8(ctx, (int)nm, md, mask);
        int sr;
        size_t ss[CLMHA_MAX_RANK];
        assert_ok(clmha_layer_scores_shape(l, tq, tv, NULL, &sr, ss));
        assert_int_equal(sr, 2 + (int)(no - 1 - na) + 2 * na);
        clmha_tensor *tp = test_tensor_f32(ctx, sr, ss, NULL);
        clmha_call_args a;
        clmha_call_args_init(&a);
        a.query = tq, a.value = tv, a.attention_mask = tm, a.output = to, a.attention_scores = tp;
        assert_ok(clmha_layer_call(l, &a));
        float *out = test_read(to, NULL), *pr = test_read(tp, NULL);
        double *out_c = malloc(nq * D * sizeof(double));
        for (size_t row = 0; row < nq; row++)
            for (size_t e = 0; e < D; e++)
                out_c[row * D + e] = out_ref[cq[row] * D + e];
        char repro[160];
        snprintf(repro, sizeof repro, "test_attention_axes_against_reference seed %llu rank %d",
                 (unsigned long long)seed, rank);
        assert_true(compare_close("output", out, out_c, nq * D, TOL_F32, repro));
        assert_true(compare_close("attention_scores", pr, p_ref, Bc * H * Tc * Sc, TOL_F32, repro));
        free(out), free(pr), free(out_c), free(out_ref), free(p_ref);
        for (int i = 0; i < CLMHA_WEIGHT_COUNT; i++)
            free(w[i]);
        free(q), free(v), free(qc), free(vc), free(cq), free(cv), free(mask);
        clmha_tensor_release(tq), clmha_tensor_release(tv), clmha_tensor_release(to);
        clmha_tensor_release(tm), clmha_tensor_release(tp);
        clmha_layer_release(l);
    }
}

/* The in-kernel rules equal the masks they stand for, bit for bit: args.causal and
 * args.key_lengths (lengths below 0, 0, inside, S and past S), alone or together, with or
 * without an extra mask tensor, in all three modes, through the two-pass kernel (probabilities
 * asked) and the split kernel (on CPUs the all-heads and query-tile kernels, with and without
 * their blocks of sixteen keys). The mask path itself is checked against the reference by the
 * random sweep. */
static void test_causal_flag_equals_mask(void **state) {
    (void)state;
    for (uint64_t seed = 0; seed < 48; seed++) {
        test_rng r = {seed + 500};
        int mode = (int)(seed % 3); /* none, static, update */
        size_t B = 1 + rng_below(&r, 3), S = 1 + rng_below(&r, 70), H = 1 + rng_below(&r, 3);
        /* Head dims of 16 (every fourth seed) let CPUs' kernels take keys sixteen at a time,
         * a row's block only where all sixteen keys are before its end and unmasked. */
        size_t dk = seed % 4 == 3 ? 16 : 4, D = 2 * dk;
        size_t T = mode == 2 ? 1 + rng_below(&r, S) : 1 + rng_below(&r, S);
        size_t Sn = mode == 0 ? S : mode == 1 ? 1 : T;
        size_t index = mode == 2 ? rng_below(&r, S - Sn + 1) : 0;
        bool extra = rng_uniform(&r) < 0.5;
        bool use_lens = (seed / 3) % 3 != 0, use_causal = (seed / 3) % 3 != 1;
        bool with_p = (seed / 9) % 2 == 0;
        int32_t lens[3];
        for (size_t b = 0; b < B; b++) {
            const int32_t picks[5] = {-2, 0, (int32_t)rng_below(&r, S + 1), (int32_t)S,
                                      (int32_t)S + 5};
            lens[b] = picks[rng_below(&r, 5)];
        }
        clmha_layer_config cfg;
        clmha_layer_config_init(&cfg);
        cfg.num_heads = (int)H, cfg.key_dim = (int)dk, cfg.seed = (int64_t)seed;
        clmha_layer *l = NULL;
        assert_ok(clmha_layer_create(ctx, &cfg, D, D, 0, &l));
        float *q = malloc(B * T * D * sizeof(float)), *v = malloc(B * Sn * D * sizeof(float));
        float *cache = malloc(B * 2 * S * H * dk * sizeof(float));
        rng_fill(&r, q, B * T * D, -1, 1);
        rng_fill(&r, v, B * Sn * D, -1, 1);
        rng_fill(&r, cache, B * 2 * S * H * dk, -1, 1);
        uint8_t *rand_m = malloc(B * T * S), *full_m = malloc(B * T * S);
        long base = mode == 2 ? (long)index : (long)S - (long)T;
        for (size_t b = 0; b < B; b++)
            for (size_t t = 0; t < T; t++)
                for (size_t j = 0; j < S; j++) {
                    size_t i = (b * T + t) * S + j;
                    rand_m[i] = extra ? rng_uniform(&r) < 0.7 : 1;
                    full_m[i] = rand_m[i] && (!use_causal || (long)j <= base + (long)t) &&
                                (!use_lens || (long)j < (long)lens[b]);
                }
        size_t qs[3] = {B, T, D}, vs[3] = {B, Sn, D}, cs[5] = {B, 2, S, H, dk};
        size_t ms[3] = {B, T, S}, ps[4] = {B, H, T, S}, ls[1] = {B};
        float *outs[2], *probs[2] = {NULL, NULL}, *caches[2];
        for (int way = 0; way < 2; way++) {
            clmha_tensor *tq = test_tensor_f32(ctx, 3, qs, q), *tv = test_tensor_f32(ctx, 3, vs, v);
            clmha_tensor *tc = test_tensor_f32(ctx, 5, cs, cache);
            clmha_tensor *tm = test_tensor_u8(ctx, 3, ms, way == 0 ? full_m : rand_m);
            clmha_tensor *to = test_tensor_f32(ctx, 3, qs, NULL);
            clmha_tensor *tp = with_p ? test_tensor_f32(ctx, 4, ps, NULL) : NULL;
            clmha_tensor *tl = NULL;
            assert_ok(clmha_tensor_create(ctx, CLMHA_INT32, 1, ls, &tl));
            assert_ok(clmha_tensor_write(tl, lens, B * sizeof(int32_t)));
            clmha_call_args a;
            clmha_call_args_init(&a);
            a.query = tq, a.value = tv, a.output = to, a.attention_scores = tp;
            a.cache = mode ? tc : NULL;
            a.has_cache_update_index = mode == 2, a.cache_update_index = (int64_t)index;
            a.attention_mask = (way == 0 || extra) ? tm : NULL;
            a.causal = way == 1 && use_causal;
            a.key_lengths = way == 1 && use_lens ? tl : NULL;
            assert_ok(clmha_layer_call(l, &a));
            outs[way] = test_read(to, NULL);
            probs[way] = with_p ? test_read(tp, NULL) : NULL;
            caches[way] = test_read(tc, NULL);
            clmha_tensor_release(tq), clmha_tensor_release(tv), clmha_tensor_release(tc);
            clmha_tensor_release(tm), clmha_tensor_release(to), clmha_tensor_release(tp);
            clmha_tensor_release(tl);
        }
        if (memcmp(outs[0], outs[1], B * T * D * sizeof(float)) != 0 ||
            (with_p && memcmp(probs[0], probs[1], B * H * T * S * sizeof(float)) != 0) ||
            memcmp(caches[0], caches[1], B * 2 * S * H * dk * sizeof(float)) != 0) {
            print_error("in-kernel rules differ from the mask: seed %llu mode %d B %zu T %zu S %zu "
                        "index %zu extra mask %d causal %d lengths %d probabilities %d\n",
                        (unsigned long long)seed, mode, B, T, S, index, extra, use_causal, use_lens,
                        with_p);
            fail();
        }
        for (int way = 0; way < 2; way++)
            free(outs[way]), free(probs[way]), free(caches[way]);
        free(q), free(v), free(cache), free(rand_m), free(full_m);
        clmha_layer_release(l);
    }
}

/* A new context (the environment's device) with profiling on. */
/* A context that records launches, with the settings @p tune (NULL: none). */
static clmha_context *profiling_context(const char *tune) {
    clmha_context_options o;
    clmha_context_options_init(&o);
    o.profile = true;
    o.tune = tune;
    clmha_context *pc = NULL;
    assert_ok(clmha_context_create(&o, &pc));
    return pc;
}

/* Profiling: device time by kind after a call, a fresh count after each take. */
static void test_profile(void **state) {
    (void)state;
    clmha_context *pc = profiling_context(NULL);
    clmha_layer_config cfg;
    clmha_layer_config_init(&cfg);
    cfg.num_heads = 2, cfg.key_dim = 8, cfg.seed = 1;
    clmha_layer *l = NULL;
    assert_ok(clmha_layer_create(pc, &cfg, 16, 16, 0, &l));
    size_t xs[3] = {2, 9, 16};
    float x[2 * 9 * 16];
    test_rng r = {8};
    rng_fill(&r, x, 2 * 9 * 16, -1, 1);
    clmha_tensor *tx = NULL, *to = NULL;
    assert_ok(clmha_tensor_create(pc, CLMHA_FLOAT32, 3, xs, &tx));
    assert_ok(clmha_tensor_write(tx, x, sizeof x));
    assert_ok(clmha_tensor_create(pc, CLMHA_FLOAT32, 3, xs, &to));
    clmha_profile prof;
    assert_ok(clmha_context_take_profile(pc, &prof)); /* start from zero */
    clmha_call_args a;
    clmha_call_args_init(&a);
    a.query = tx, a.value = tx, a.output = to;
    assert_ok(clmha_layer_call(l, &a));
    assert_ok(clmha_context_take_profile(pc, &prof));
    /* The input projections (one fused launch, or more), attention, the output projection and
     * commit (18 rows: no gemm_tail on CPUs, where the row-blocked own GEMM takes them). */
    assert_true(prof.launches >= 4);
    assert_true(prof.projection_s > 0 && prof.attention_s > 0 && prof.other_s > 0);
    assert_ok(clmha_context_take_profile(pc, &prof));
    assert_int_equal(prof.launches, 0);
    assert_true(prof.projection_s == 0 && prof.attention_s == 0);
    assert_int_equal(clmha_context_take_profile(ctx, &prof), CLMHA_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(clmha_last_error(), "without options.profile"));
    clmha_tensor_release(tx), clmha_tensor_release(to);
    clmha_layer_release(l);
    clmha_context_release(pc);
}

/* Self-attention (value and key the query tensor itself), which the own GEMM projects in one
 * launch (gemm_qkv4) where the widths allow, against the reference: no cache and updates, with
 * key given or not, widths that fuse and widths that do not. */
static void test_self_attention(void **state) {
    (void)state;
    for (uint64_t i = 0; i < 12; i++) {
        case_cfg c;
        memset(&c, 0, sizeof c);
        c.seed = 900 + i;
        c.mode = i % 2 ? MODE_UPDATE : MODE_NONE;
        c.mask = (int)(i % 3) == 0 ? MASK_NONE : MASK_CAUSAL;
        c.B = 1 + i % 3, c.T = i < 6 ? 1 + i % 3 : 9, c.H = 1 + i % 3;
        c.dk = c.dv = i % 4 == 3 ? 3 : 8; /* H * 3 is not a multiple of 4 for H = 1, 2 */
        c.Dq = c.Dk = c.Dv = 8 + i;
        c.S = c.mode == MODE_NONE ? c.T : c.T + 4;
        c.Sn = c.T;
        c.index = c.mode == MODE_UPDATE ? 4 - i % 5 : 0;
        c.separate_key = i % 4 == 1;
        c.use_bias = i % 5 != 2, c.scores = i % 2 == 0, c.offsets = i % 3 == 2;
        c.half_cache = c.mode == MODE_UPDATE && i % 4 == 1;
        c.int8_cache = c.mode == MODE_UPDATE && i % 4 == 3;
        c.self_input = true;
        run_case(&c);
    }
}

/* Decode steps of 1 to 5 sequences over caches long enough that split attention takes several
 * chunks (chunks of at least 256 keys), so the partials are merged: by gemm_tail where the layer
 * has it (one row a work-item, or with 3 to 5 rows the few-rows build's 4), and on a context
 * with tail=0 by attention_merge before the output projection and commit. Head dims of 16 and
 * 64 take the merge's sixteen-lane path where a work-item merges alone (CPUs, with 32 output
 * features: gemm_tail one work-item a group), 3 the scalar one; self-attention (one projection
 * launch, which rounds a half cache's keys and values itself) and separate inputs; float and
 * half caches. */
static void test_split_decode(void **state) {
    (void)state;
    clmha_context *fixture_ctx = ctx;
    for (int tail_off = 0; tail_off < 2; tail_off++) {
        if (tail_off) {
            ctx = test_context_tuned("tail=0"); /* run_case's context */
        }
        for (uint64_t i = 0; i < 9; i++) {
            case_cfg c;
            memset(&c, 0, sizeof c);
            c.seed = 1200 + i;
            c.mode = MODE_UPDATE, c.mask = i % 3 == 0 ? MASK_NONE : MASK_CAUSAL;
            /* From i = 6 on, 3 to 5 sequences: on CPUs the few-rows build of gemm_tail (4 rows a
             * work-item: one block of 3, one of 4, and one of 4 plus one of 1). */
            c.B = i < 6 ? 1 + i % 2 : i - 3, c.T = 1, c.H = 2 + i % 3;
            c.dk = c.dv = i % 3 == 0 ? 16 : i % 3 == 1 ? 64 : 3;
            /* 32: the own GEMM's wide build on CPUs */
            c.Dq = c.Dk = c.Dv = i < 3 || i >= 6 ? 32 : 16;
            c.S = i < 3 ? 600 : 1100;
            c.Sn = 1;
            c.index = i % 2 ? c.S - 1 : 300 + i;
            c.self_input = i % 2 == 0;
            c.separate_key = i % 4 == 1;
            c.use_bias = i != 4, c.offsets = i == 5;
            c.half_cache = i % 3 == 1 || i == 2;
            c.int8_cache = i == 3 || i == 6 || i == 8;
            run_case(&c);
        }
        if (tail_off) {
            clmha_context_release(ctx);
            ctx = fixture_ctx;
        }
    }
}

/* Products of many rows on CPUs take the own GEMM in blocks of rows x columns a work-item, 12 x
 * 32 (the "cpu" row) or 6 x 16 ("cpu_narrow") (gemm_bias4 / gemm_qkv4 built with GR and GC),
 * and products of 3 to 12 rows (batched decode steps) 4 rows of 32 columns: row counts that are
 * and are not multiples of the block, widths that are multiples of 32, and of 16 but not of 32
 * (CLBlast's on the "cpu" row), self-attention (the fused projection, which also rounds a half
 * cache's keys and values) and separate inputs, against the reference, on each CPU row
 * whichever the device takes. On other devices the same cases take CLBlast and the one-row
 * kernels, or the CPU rows' builds where those rows are named. */
static void many_row_cases(void);

static void test_many_row_projections(void **state) {
    (void)state;
    static const char *const tunes[] = {"row=cpu", "row=cpu_narrow"};
    clmha_context *fixture_ctx = ctx;
    for (size_t t = 0; t < sizeof tunes / sizeof tunes[0]; t++) {
        ctx = test_context_tuned(tunes[t]); /* run_case's context */
        many_row_cases();
        clmha_context_release(ctx);
        ctx = fixture_ctx;
    }
}

static void many_row_cases(void) {
    static const size_t rows[][2] = {{1, 13}, {1, 24}, {2, 25}, {3, 17}, {1, 49}, {4, 30},
                                     {1, 3},  {4, 1},  {3, 3},  {12, 1}, {5, 2}};
    for (uint64_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        const bool few = i >= 6;
        case_cfg c;
        memset(&c, 0, sizeof c);
        c.seed = 1300 + i;
        c.B = rows[i][0], c.T = rows[i][1];
        c.H = i % 2 && !few ? 3 : 2, c.dk = c.dv = 16; /* widths 48 and 32 */
        c.Dq = c.Dk = c.Dv = few ? 32 * (1 + i % 2) : i % 3 == 2 ? 48 : 16 + 16 * i;
        c.mode = i % 3 == 0 ? MODE_NONE : MODE_UPDATE;
        c.mask = i % 2 ? MASK_CAUSAL : MASK_NONE;
        c.S = c.mode == MODE_NONE ? c.T : c.T + 5;
        c.Sn = c.T, c.index = c.mode == MODE_UPDATE ? 5 - i % 3 : 0;
        c.self_input = i != 4 && i != 9, c.separate_key = i == 4 || i == 9;
        c.use_bias = i != 1, c.offsets = i == 3 || i == 8;
        c.half_cache = c.mode == MODE_UPDATE && i % 2 == 1;
        c.int8_cache = c.mode == MODE_UPDATE && i % 4 == 2;
        run_case(&c);
    }
}

/* Self-attention on CLBlast (here: 32 rows of widths 12, which the row-blocked own GEMM does not
 * take) is one SGEMM over a packed copy of the query, key and value weights. The copy follows
 * every change: clmha_layer_set_weight and clmha_layer_apply_constraints between calls show in
 * the next call's output, against the reference. The copy is made once per change (its six
 * launches in the first call after one, none in other calls), and the fused call launches three
 * fewer kernels than a layer on a context with qkv_fuse=0. Where CLBlast cannot run (the own GEMM
 * takes every projection), nothing is packed and every call launches the same. */
static void test_fused_projection_follows_weights(void **state) {
    (void)state;
    enum { NB = 2, L = 16, NH = 2, KD = 6, DM = NH * KD };
    clmha_context *pcs[2] = {profiling_context(NULL), profiling_context("qkv_fuse=0")};
    clmha_context *pc = pcs[0];
    clmha_layer_config cfg;
    clmha_layer_config_init(&cfg);
    cfg.num_heads = NH, cfg.key_dim = KD, cfg.seed = 31;
    cfg.bias_initializer = clmha_initializer_default(CLMHA_INIT_RANDOM_NORMAL);
    cfg.kernel_constraint = clmha_constraint_default(CLMHA_CONSTRAINT_MAX_NORM);
    cfg.kernel_constraint.max_value = 0.5; /* glorot_uniform's columns have norms near 1 */
    clmha_layer *l = NULL, *apart = NULL;
    assert_ok(clmha_layer_create(pc, &cfg, DM, DM, 0, &l));
    assert_ok(clmha_layer_create(pcs[1], &cfg, DM, DM, 0, &apart));
    test_rng r = {31};
    static float x[NB * L * DM], out[NB * L * DM], w[CLMHA_WEIGHT_COUNT][DM * DM];
    rng_fill(&r, x, NB * L * DM, -1, 1);
    size_t xs[3] = {NB, L, DM};
    clmha_tensor *tx[2], *to[2];
    clmha_call_args a[2];
    for (int k = 0; k < 2; k++) {
        tx[k] = test_tensor_f32(pcs[k], 3, xs, x), to[k] = test_tensor_f32(pcs[k], 3, xs, NULL);
        clmha_call_args_init(&a[k]);
        a[k].query = tx[k], a[k].value = tx[k], a[k].output = to[k];
    }
    /* Workspace (and the packed copy's buffers) allocated here, not in the counted calls (new
     * buffers are filled with NaN under poison_buffers=1); CLBlast refuses a small device
     * here too. */
    assert_ok(clmha_layer_reserve(l, NB, L, L, 0, false));
    assert_ok(clmha_layer_reserve(apart, NB, L, L, 0, false));
    clmha_profile prof;
    uint64_t launches[5];
    for (int step = 0; step < 5; step++) {
        const int k = step == 4; /* the layer on the qkv_fuse=0 context */
        clmha_layer *run = k ? apart : l;
        if (step == 2) { /* new value kernel and key bias */
            rng_fill(&r, w[CLMHA_WEIGHT_VALUE_KERNEL], DM * DM, -0.5, 0.5);
            rng_fill(&r, w[CLMHA_WEIGHT_KEY_BIAS], DM, -0.5, 0.5);
            assert_ok(clmha_layer_set_weight(l, CLMHA_WEIGHT_VALUE_KERNEL,
                                             w[CLMHA_WEIGHT_VALUE_KERNEL], DM * DM));
            assert_ok(
                clmha_layer_set_weight(l, CLMHA_WEIGHT_KEY_BIAS, w[CLMHA_WEIGHT_KEY_BIAS], DM));
        } else if (step == 3) { /* every kernel's columns scaled to norms of at most 0.5 */
            float before[DM * DM];
            assert_ok(clmha_layer_get_weight(l, CLMHA_WEIGHT_QUERY_KERNEL, before, DM * DM));
            assert_ok(clmha_layer_apply_constraints(l));
            assert_ok(clmha_layer_get_weight(l, CLMHA_WEIGHT_QUERY_KERNEL, w[0], DM * DM));
            assert_true(fabsf(before[0] - w[0][0]) > 0.1f * fabsf(before[0]));
        }
        assert_ok(clmha_context_take_profile(pcs[k], &prof)); /* not the set-up's launches */
        assert_ok(clmha_layer_call(run, &a[k]));
        assert_ok(clmha_context_take_profile(pcs[k], &prof));
        launches[step] = prof.launches;
        assert_ok(clmha_tensor_read(to[k], out, sizeof out));
        for (int i = 0; i < CLMHA_WEIGHT_COUNT; i++)
            assert_ok(clmha_layer_get_weight(run, (clmha_weight)i, w[i], i % 2 ? DM : DM * DM));
        static double ref[NB * L * DM];
        ref_weights rw = {NH,   KD,   KD,   DM,   DM,   DM,   DM,   true,
                          w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]};
        ref_call rc = {NB,    L, x,    NULL, x,    L,     NULL, {0, 0, 0}, NULL, 0,
                       false, 0, NULL, ref,  NULL, false, 0,    false,     NULL};
        assert_true(ref_forward(&rw, &rc));
        assert_true(compare_close("fused projection", out, ref, NB * L * DM, TOL_F32,
                                  "test_fused_projection_follows_weights"));
    }
    clmha_context_stats st;
    assert_ok(clmha_context_get_stats(pc, &st));
    if (st.clblast_builds_in_calls + st.clblast_builds_reserved > 0) {
        assert_int_equal(launches[0], launches[1] + 6); /* packed in the first call */
        assert_int_equal(launches[2], launches[1] + 6); /* and after each change */
        assert_int_equal(launches[3], launches[1] + 6);
        assert_int_equal(launches[4], launches[1] + 3); /* three products: three more */
    } else {
        for (int step = 1; step < 5; step++)
            assert_int_equal(launches[step], launches[0]);
    }
    for (int k = 0; k < 2; k++) {
        clmha_tensor_release(tx[k]), clmha_tensor_release(to[k]);
    }
    clmha_layer_release(l), clmha_layer_release(apart);
    clmha_context_release(pcs[0]), clmha_context_release(pcs[1]);
}

/* clmha_layer_reserve has CLBlast build its GEMM program when the reserved sizes mean CLBlast
 * projections, so no call builds one; without it the first such call does. */
static void test_reserve_builds_clblast(void **state) {
    (void)state;
    uint64_t reserved = 0;
    for (int with_reserve = 1; with_reserve >= 0; with_reserve--) {
        clmha_context *c = test_context(); /* fresh: CLBlast has built nothing on it */
        clmha_layer_config cfg;
        clmha_layer_config_init(&cfg);
        cfg.num_heads = 2, cfg.key_dim = 4, cfg.seed = 2;
        clmha_layer *l = NULL;
        assert_ok(clmha_layer_create(c, &cfg, 8, 8, 0, &l));
        if (with_reserve) {
            assert_ok(clmha_layer_reserve(l, 4, 32, 32, 0, false)); /* 128-row projections */
        }
        clmha_context_stats st;
        assert_ok(clmha_context_get_stats(c, &st));
        if (with_reserve) {
            reserved = st.clblast_builds_reserved; /* 0 where CLBlast cannot run (own GEMM) */
            assert_true(reserved <= 1);
        } else {
            assert_int_equal(st.clblast_builds_reserved, 0);
        }
        size_t xs[3] = {4, 32, 8};
        float x[4 * 32 * 8];
        test_rng r = {4};
        rng_fill(&r, x, 4 * 32 * 8, -1, 1);
        clmha_tensor *tx = test_tensor_f32(c, 3, xs, x), *to = test_tensor_f32(c, 3, xs, NULL);
        clmha_call_args a;
        clmha_call_args_init(&a);
        a.query = tx, a.value = tx, a.output = to;
        assert_ok(clmha_layer_call(l, &a));
        assert_ok(clmha_context_finish(c));
        assert_ok(clmha_context_get_stats(c, &st));
        assert_int_equal(st.clblast_builds_in_calls, with_reserve ? 0 : reserved);
        clmha_tensor_release(tx), clmha_tensor_release(to);
        clmha_layer_release(l);
        clmha_context_release(c);
    }
}

/* After clmha_layer_reserve, calls within the reserved sizes allocate nothing. */
static void test_reserve(void **state) {
    (void)state;
    clmha_layer_config cfg;
    clmha_layer_config_init(&cfg);
    cfg.num_heads = 2, cfg.key_dim = 4, cfg.seed = 2;
    clmha_layer *l = NULL;
    assert_ok(clmha_layer_create(ctx, &cfg, 8, 8, 0, &l));
    assert_ok(clmha_layer_reserve(l, 2, 16, 16, 32, true));
    assert_int_equal(clmha_layer_reserve(l, 0, 16, 16, 32, true), CLMHA_ERR_INVALID_ARGUMENT);
    clmha_context_stats before, after;
    assert_ok(clmha_context_get_stats(ctx, &before));
    clmha_tensor *cache = NULL;
    assert_ok(clmha_layer_create_cache(l, 2, 32, &cache));
    size_t ps[3] = {2, 16, 8}, ss[3] = {2, 1, 8}, sc[4] = {2, 2, 16, 32}, s1[4] = {2, 2, 1, 32};
    float x[2 * 16 * 8];
    test_rng r = {3};
    rng_fill(&r, x, 2 * 16 * 8, -1, 1);
    clmha_tensor *tp = test_tensor_f32(ctx, 3, ps, x), *op = test_tensor_f32(ctx, 3, ps, NULL);
    clmha_tensor *t1 = test_tensor_f32(ctx, 3, ss, x), *o1 = test_tensor_f32(ctx, 3, ss, NULL);
    clmha_tensor *pp = test_tensor_f32(ctx, 4, sc, NULL), *p1 = test_tensor_f32(ctx, 4, s1, NULL);
    clmha_call_args a;
    clmha_call_args_init(&a);
    a.query = tp, a.value = tp, a.cache = cache, a.output = op, a.attention_scores = pp;
    a.has_cache_update_index = true, a.cache_update_index = 0, a.causal = true;
    assert_ok(clmha_layer_call(l, &a)); /* prefill 16 */
    for (int step = 16; step < 32; step++) {
        a.query = t1, a.value = t1, a.output = o1, a.attention_scores = p1;
        a.cache_update_index = step;
        assert_ok(clmha_layer_call(l, &a)); /* decode steps */
    }
    assert_ok(clmha_context_get_stats(ctx, &after));
    assert_int_equal(after.workspace_allocations, before.workspace_allocations);
    /* Past the reserved sizes the workspace grows. */
    size_t big[3] = {2, 20, 8};
    clmha_tensor *tb = test_tensor_f32(ctx, 3, big, NULL), *ob = test_tensor_f32(ctx, 3, big, NULL);
    assert_ok(clmha_tensor_zero(tb));
    clmha_call_args_init(&a);
    a.query = tb, a.value = tb, a.output = ob;
    assert_ok(clmha_layer_call(l, &a));
    assert_ok(clmha_context_get_stats(ctx, &after));
    assert_true(after.workspace_allocations > before.workspace_allocations);
    clmha_tensor *all[] = {cache, tp, op, t1, o1, pp, p1, tb, ob};
    for (size_t i = 0; i < 9; i++)
        clmha_tensor_release(all[i]);
    clmha_layer_release(l);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shapes),
        cmocka_unit_test(test_profile),
        cmocka_unit_test(test_reserve),
        cmocka_unit_test(test_reserve_builds_clblast),
        cmocka_unit_test(test_fused_projection_follows_weights),
        cmocka_unit_test(test_self_attention),
        cmocka_unit_test(test_split_decode),
        cmocka_unit_test(test_many_row_projections),
        cmocka_unit_test(test_edge_cases),
        cmocka_unit_test(test_attention_axes_against_reference),
        cmocka_unit_test(test_token_loop_equals_one_shot),
        cmocka_unit_test(test_causal_flag_equals_mask),
        cmocka_unit_test(test_probabilities_sum_to_one),
        cmocka_unit_test(random_sweep_0),
        cmocka_unit_test(random_sweep_1),
        cmocka_unit_test(random_sweep_2),
    };
    /* CLMHA_TEST_FILTER=test_split_decode (a cmocka pattern, * and ? as wildcards) runs only
     * the tests it matches: ctest runs each random_sweep_K apart. CLMHA_TEST_PART=K/N runs the
     * named tests (not the sweeps) whose place in the list is K modulo N: ctest runs them as
     * three parts side by side, so that none of its programs runs for long. */
    const char *filter = getenv("CLMHA_TEST_FILTER");
    if (filter != NULL && *filter != '\0') {
        cmocka_set_test_filter(filter);
    }
    const size_t named = sizeof tests / sizeof tests[0] - 3; /* all but the three sweeps */
    const char *part = getenv("CLMHA_TEST_PART");
    unsigned k = 0, n = 0;
    if (part != NULL && *part != '\0') {
        if (sscanf(part, "%u/%u", &k, &n) != 2 || n == 0 || k >= n) {
            fprintf(stderr, "CLMHA_TEST_PART=\"%s\" is not K/N with K < N\n", part);
            return 2;
        }
        struct CMUnitTest chosen[sizeof tests / sizeof tests[0]];
        size_t count = 0;
        for (size_t i = 0; i < named; i++) {
            if (i % n == k) {
                chosen[count++] = tests[i];
            }
        }
        return _cmocka_run_group_tests("test_layer", chosen, count, test_setup_context,
                                       test_teardown_context);
    }
    return cmocka_run_group_tests(tests, test_setup_context, test_teardown_context);
}
