/*
 * layer_case.c - runs one layer configuration on the device and compares it with the float64
 * reference (see layer_case.h).
 */
#include "layer_case.h"
#include "internal.h"
#include "reference.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *const mode_names[] = {"none", "static", "update"};

static void describe(const case_cfg *c, char *buf, size_t len) {
    snprintf(buf, len,
             "seed=%llu mode=%s B=%zu T=%zu S=%zu Sn=%zu H=%zu dk=%zu dv=%zu Dq=%zu Dk=%zu "
             "Dv=%zu bias=%d key=%d out_rank=%d mask=%d index=%zu scores=%d offsets=%d "
             "half_cache=%d int8_cache=%d self_input=%d",
             (unsigned long long)c->seed, mode_names[c->mode], c->B, c->T, c->S, c->Sn, c->H, c->dk,
             c->dv, c->Dq, c->Dk, c->Dv, c->use_bias, c->separate_key, c->out_rank, c->mask,
             c->index, c->scores, c->offsets, c->half_cache, c->int8_cache, c->self_input);
}

/* A float (or, for a half cache, half) tensor, either on its own or inside a larger buffer
 * between canary regions. */
typedef struct placed {
    clmha_tensor *t;
    cl_mem big;
    size_t pad, n, elem; /* canary elements on each side; tensor elements; bytes each */
} placed;

static const float CANARY = -7777.25f;
static const uint16_t CANARY_F16 = 0xC5A5;

static placed place_as(const case_cfg *c, clmha_dtype dt, int rank, const size_t *shape,
                       const void *data) {
    placed p = {0};
    p.n = 1;
    p.elem = dt == CLMHA_FLOAT16 ? 2 : dt == CLMHA_INT8 ? 1 : 4;
    for (int i = 0; i < rank; i++) {
        p.n *= shape[i];
    }
    p.pad = !c->offsets ? 0 : dt == CLMHA_INT8 ? 40 : 37; /* int8 caches start 4-aligned */
    size_t total = p.n + 2 * p.pad;
    unsigned char *host = malloc(total * p.elem);
    assert_non_null(host);
    for (size_t i = 0; i < total; i++) {
        memcpy(host + i * p.elem, p.elem == 2 ? (const void *)&CANARY_F16 : (const void *)&CANARY,
               p.elem);
    }
    if (data) {
        memcpy(host + p.pad * p.elem, data, p.n * p.elem);
    }
    if (!c->offsets) {
        assert_ok(clmha_tensor_create(ctx, dt, rank, shape, &p.t));
        if (data) {
            assert_ok(clmha_tensor_write(p.t, host, p.n * p.elem));
        }
        free(host);
        return p;
    }
    cl_int err;
    p.big = clCreateBuffer(clmha_context_cl_context(ctx), CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR,
                           total * p.elem, host, &err);
    assert_int_equal(err, CL_SUCCESS);
    assert_ok(clmha_tensor_wrap(ctx, dt, rank, shape, p.big, p.pad * p.elem, &p.t));
    free(host);
    return p;
}

static placed place(const case_cfg *c, int rank, const size_t *shape, const float *data) {
    return place_as(c, CLMHA_FLOAT32, rank, shape, data);
}

/* Checks the canaries around a placed tensor and releases it. */
static void unplace(placed *p, const char *what, const char *repro) {
    if (p->big != NULL) {
        size_t total = p->n + 2 * p->pad;
        unsigned char *host = malloc(total * p->elem);
        assert_non_null(host);
        assert_int_equal(clEnqueueReadBuffer(clmha_context_queue(ctx), p->big, CL_TRUE, 0,
                                             total * p->elem, host, 0, NULL, NULL),
                         CL_SUCCESS);
        const void *canary = p->elem == 2 ? (const void *)&CANARY_F16 : (const void *)&CANARY;
        for (size_t i = 0; i < p->pad; i++) {
            if (memcmp(host + i * p->elem, canary, p->elem) != 0 ||
                memcmp(host + (p->pad + p->n + i) * p->elem, canary, p->elem) != 0) {
                print_error("%s: canary around the tensor overwritten\n  reproduce: %s\n", what,
                            repro);
                fail();
            }
        }
        free(host);
        clReleaseMemObject(p->big);
    }
    clmha_tensor_release(p->t);
}

static bool masked(const case_cfg *c, test_rng *r, size_t b, size_t t, size_t j, size_t T) {
    switch (c->mask) {
    case MASK_CAUSAL: {
        /* keras-hub generation: key j allowed iff j <= cache_update_index + t (no-cache:
         * the query rows are the last T positions of the S keys). */
        size_t base = c->mode == MODE_UPDATE ? c->index : (c->S >= T ? c->S - T : 0);
        return j <= base + t;
    }
    case MASK_RANDOM:
        return rng_uniform(r) >= 0.25;
    case MASK_ROWS_OFF:
        /* Every third query row fully masked, the rest attend everywhere. */
        (void)b;
        return (t % 3) != 1;
    default:
        return rng_uniform(r) >= 0.3;
    }
}

/* An int8 cache after the call (cache8_before: as it was given): rows outside the update
 * byte-identical, each updated row within one step of the host's quantization of the reference's
 * float row (float rounding of the projections can move a value across a rounding tie; at most
 * 1 + 1/200 of them may) with the same scale up to float rounding; then the reference's output
 * and probabilities (rc->out, rc->probs) are recomputed over the device's rows. */
static bool check_int8_cache(const case_cfg *c, const ref_weights *rw, ref_call *rc,
                             const clmha_tensor *tc, const unsigned char *cache8_before,
                             const double *cache_ref, const char *repro) {
    const size_t H = c->H, dk = c->dk, row8 = dk + 4, S = c->S, Sn = c->Sn;
    const size_t rows = c->B * 2 * S * H;
    unsigned char *got = test_read(tc, NULL);
    float *kv_new = malloc(c->B * 2 * Sn * H * dk * sizeof *kv_new + 4);
    unsigned char want[4096 + 4];
    float xr[4096];
    assert_non_null(kv_new);
    assert_true(dk <= 4096);
    bool ok = true;
    size_t off_by_one = 0, quantized = 0;
    for (size_t i = 0; i < rows && ok; i++) {
        const size_t j = (i / H) % S, bw = i / (H * S); /* position; b * 2 + which */
        const unsigned char *g = got + i * row8;
        const bool updated = c->mode == MODE_UPDATE && j >= c->index && j < c->index + Sn;
        if (!updated) {
            if (memcmp(g, cache8_before + i * row8, row8) != 0) {
                print_error("int8 cache row %zu (position %zu) changed outside the update\n  "
                            "reproduce: %s\n",
                            i, j, repro);
                ok = false;
            }
            continue;
        }
        for (size_t e = 0; e < dk; e++) {
            xr[e] = (float)cache_ref[i * dk + e];
        }
        ref_i8_quantize(xr, dk, want);
        const float sg = ref_i8_scale(g, dk), sw = ref_i8_scale(want, dk);
        /* the projections' float rounding, relative and (tiny rows) absolute */
        if (!(fabsf(sg - sw) <= 1e-5f * sw + 1e-8f)) {
            print_error("int8 cache row %zu: scale %.9g, reference %.9g\n  reproduce: %s\n", i,
                        (double)sg, (double)sw, repro);
            ok = false;
        }
        for (size_t e = 0; e < dk && ok; e++) {
            const int d = (int)(signed char)g[e] - (int)(signed char)want[e];
            quantized++;
            off_by_one += d != 0;
            if (d > 1 || d < -1) {
                print_error("int8 cache row %zu element %zu: %d, reference %d\n  reproduce: %s\n",
                            i, e, (int)(signed char)g[e], (int)(signed char)want[e], repro);
                ok = false;
            }
        }
        const size_t bb = bw / 2, which = bw % 2, h = i % H;
        for (size_t e = 0; e < dk; e++) {
            kv_new[(((bb * 2 + which) * Sn + j - c->index) * H + h) * dk + e] =
                ref_i8_value(g, dk, e);
        }
    }
    if (ok && off_by_one > 1 + quantized / 200) {
        print_error("int8 cache: %zu of %zu values differ from the reference by one step\n  "
                    "reproduce: %s\n",
                    off_by_one, quantized, repro);
        ok = false;
    }
    if (ok && c->mode == MODE_UPDATE) {
        double *scratch = malloc(rows * dk * sizeof *scratch + 8);
        assert_non_null(scratch);
        ref_call again = *rc;
        again.kv_new = kv_new;
        again.cache_new = scratch;
        assert_true(ref_forward(rw, &again));
        free(scratch);
    }
    free(kv_new);
    free(got);
    return ok;
}

/* A switch setting of the test's context: its value where given, else @p def. */
static bool switch_setting(clmha__setting_id id, bool def) {
    size_t v;
    return clmha__setting(ctx, id, &v) ? v != 0 : def;
}

/* The attention kernel a call of case @p c must launch, by the rules docs/devices.md gives for
 * the context's tuning row and settings: attention_rows for probabilities (or split=0); where
 * split attention runs one work-item a group (the cpu row's split_wg of 1), query tiles for
 * T >= 2 (tile_rows of at least 2: at most 512 / value dim, 8 by default) and all heads a
 * work-item for T == 1; elsewhere the GPU query tiles for T >= 2 where the row has key tiles,
 * and the GPU split kernel. The query tiles and the all-heads kernel give way to the split
 * kernel of their family where their build needs more local memory than the device has; in
 * *fallback that kernel, or NULL where no fallback is possible. */
static const char *expected_attention(const case_cfg *c, const char **fallback) {
    size_t v;
    *fallback = NULL;
    if (c->scores || !switch_setting(CLMHA__SET_SPLIT, true)) {
        return "attention_rows";
    }
    size_t wg = ctx->tuning.split_wg == 1 ? 1 : 2; /* 2: any GPU group size */
    if (clmha__setting(ctx, CLMHA__SET_SPLIT_WG, &v)) {
        wg = v;
    }
    const bool tile = switch_setting(CLMHA__SET_TILE, true);
    if (wg == 1 && c->T >= 2) {
        size_t rows = 512 / c->dv < ctx->tuning.tile_rows ? 512 / c->dv : ctx->tuning.tile_rows;
        if (clmha__setting(ctx, CLMHA__SET_TILE_ROWS, &v)) {
            rows = v;
        }
        *fallback = "attention_split";
        return tile && rows >= 2 ? "attention_tile" : "attention_split";
    }
    if (wg == 1) {
        *fallback = "attention_split";
        return switch_setting(CLMHA__SET_HEADS, true) ? "attention_heads" : "attention_split";
    }
    *fallback = "attention_split_gpu";
    return c->T >= 2 && tile && ctx->tuning.key_tile > 0 ? "attention_qtile_gpu"
                                                         : "attention_split_gpu";
}

/* The plan the call took, from the kernels it launched (ctx->launched): the expected attention
 * kernel, and no gemm_tail where tail=0 or probabilities were asked for. */
static void check_plan(const case_cfg *c, const char *repro) {
    const char *fallback = NULL, *want = expected_attention(c, &fallback), *got = NULL;
    bool tail = false;
    char names[1024] = "";
    const size_t n = ctx->n_launched < CLMHA__LAUNCH_LOG ? ctx->n_launched : CLMHA__LAUNCH_LOG;
    for (size_t i = 0; i < n; i++) {
        const char *name = ctx->launched[i].name;
        const size_t used = strlen(names);
        snprintf(names + used, sizeof names - used, "%s%s", i ? ", " : "", name);
        tail = tail || strcmp(name, "gemm_tail") == 0;
        if (strncmp(name, "attention_", 10) == 0 && strcmp(name, "attention_merge") != 0) {
            if (got != NULL && strcmp(got, name) != 0) {
                print_error("two attention kernels in one call (%s, %s)\n  reproduce: %s\n", got,
                            name, repro);
                fail();
            }
            got = name;
        }
    }
    /* With local memory of 64 KiB or more (PoCL's CPU device) every preferred kernel fits; on
     * smaller devices (the capped stage, llvmpipe's 32 KiB) its family's split kernel may take
     * its place. */
    const bool roomy = ctx->info.local_mem_bytes >= 65536;
    const bool ok = got != NULL && (strcmp(got, want) == 0 ||
                                    (!roomy && fallback != NULL && strcmp(got, fallback) == 0));
    if (!ok) {
        print_error("attention kernel %s, expected %s%s%s (row %s, local memory %llu); launched: "
                    "%s\n  reproduce: %s\n",
                    got ? got : "none", want, !roomy && fallback ? " or " : "",
                    !roomy && fallback ? fallback : "", ctx->tuning.name,
                    (unsigned long long)ctx->info.local_mem_bytes, names, repro);
        fail();
    }
    if (tail && (c->scores || !switch_setting(CLMHA__SET_TAIL, true))) {
        print_error("gemm_tail ran with %s; launched: %s\n  reproduce: %s\n",
                    c->scores ? "probabilities asked for" : "tail=0", names, repro);
        fail();
    }
}

void run_case(const case_cfg *c) {
    char repro[512];
    describe(c, repro, sizeof repro);
    test_rng r = {c->seed * 7919 + 17};

    clmha_layer_config cfg;
    clmha_layer_config_init(&cfg);
    cfg.num_heads = (int)c->H;
    cfg.key_dim = (int)c->dk;
    cfg.value_dim = (int)c->dv;
    cfg.use_bias = c->use_bias;
    cfg.output_rank = c->out_rank;
    memcpy(cfg.output_shape, c->out_shape, sizeof c->out_shape);
    cfg.seed = (int64_t)c->seed;
    cfg.cache_dtype = c->half_cache ? CLMHA_FLOAT16 : c->int8_cache ? CLMHA_INT8 : CLMHA_FLOAT32;
    clmha_layer *layer = NULL;
    assert_ok(clmha_layer_create(ctx, &cfg, c->Dq, c->Dv, c->Dk, &layer));

    size_t N = c->out_rank == 0 ? c->Dq : c->out_shape[0] * (c->out_rank > 1 ? c->out_shape[1] : 1);
    size_t H = c->H, dk = c->dk, dv = c->dv;
    size_t nw[CLMHA_WEIGHT_COUNT] = {c->Dq * H * dk, H * dk, c->Dk * H * dk, H * dk,
                                     c->Dv * H * dv, H * dv, H * dv * N,     N};
    double fan[CLMHA_WEIGHT_COUNT] = {(double)c->Dq, 1, (double)c->Dk,    1,
                                      (double)c->Dv, 1, (double)(H * dv), 1};
    float *w[CLMHA_WEIGHT_COUNT] = {0};
    for (int i = 0; i < CLMHA_WEIGHT_COUNT; i++) {
        bool bias = (i % 2) == 1;
        if (bias && !c->use_bias) {
            continue;
        }
        w[i] = malloc(nw[i] * sizeof(float));
        double lim = bias ? 0.5 : 1.5 / sqrt(fan[i]);
        rng_fill(&r, w[i], nw[i], -lim, lim);
        assert_ok(clmha_layer_set_weight(layer, (clmha_weight)i, w[i], nw[i]));
    }

    size_t S = c->S, T = c->T, B = c->B, Sn = c->Sn;
    float *q = malloc(B * T * c->Dq * sizeof(float));
    float *v = malloc(B * Sn * c->Dv * sizeof(float) + 4);
    float *k = malloc(B * Sn * c->Dk * sizeof(float) + 4);
    float *cache = malloc(B * 2 * S * H * dk * sizeof(float) + 4);
    rng_fill(&r, q, B * T * c->Dq, -1, 1);
    rng_fill(&r, v, B * Sn * c->Dv, -1, 1);
    rng_fill(&r, k, B * Sn * c->Dk, -1, 1);
    rng_fill(&r, cache, B * 2 * S * H * dk, -1.5, 1.5);
    /* A half cache holds halves: the host's copy (and the reference's input) is rounded. */
    uint16_t *cache16 = NULL;
    if (c->half_cache) {
        cache16 = malloc(B * 2 * S * H * dk * sizeof *cache16 + 2);
        assert_non_null(cache16);
        for (size_t i = 0; i < B * 2 * S * H * dk; i++) {
            cache16[i] = half_from_float(cache[i]);
            cache[i] = half_to_float(cache16[i]);
        }
    }

    /* An int8 cache holds int8 rows: the host's copy (and the reference's input) is dequantized. */
    const size_t row8 = dk + 4;
    unsigned char *cache8 = NULL;
    if (c->int8_cache) {
        cache8 = malloc(B * 2 * S * H * row8);
        assert_non_null(cache8);
        for (size_t i = 0; i < B * 2 * S * H; i++) {
            ref_i8_quantize(cache + i * dk, dk, cache8 + i * row8);
            for (size_t e = 0; e < dk; e++) {
                cache[i * dk + e] = ref_i8_value(cache8 + i * row8, dk, e);
            }
        }
    }

    /* The mask, in its stored shape. */
    size_t md[3] = {1, 1, 1};
    int mrank = 3;
    switch (c->mask) {
    case MASK_FULL:
    case MASK_CAUSAL:
    case MASK_RANDOM:
    case MASK_ROWS_OFF:
        md[0] = B, md[1] = T, md[2] = S;
        break;
    case MASK_TS:
        md[1] = T, md[2] = S, mrank = 2;
        break;
    case MASK_1TS:
        md[1] = T, md[2] = S;
        break;
    case MASK_B1S:
        md[0] = B, md[2] = S;
        break;
    case MASK_BT1:
        md[0] = B, md[1] = T;
        break;
    case MASK_11S:
        md[2] = S;
        break;
    default:
        break;
    }
    uint8_t *mask = NULL;
    if (c->mask != MASK_NONE) {
        mask = malloc(md[0] * md[1] * md[2]);
        for (size_t b = 0; b < md[0]; b++) {
            for (size_t t = 0; t < md[1]; t++) {
                for (size_t j = 0; j < md[2]; j++) {
                    mask[(b * md[1] + t) * md[2] + j] = masked(c, &r, b, t, j, T) ? 1 : 0;
                }
            }
        }
    }

    /* Reference. */
    double *out_ref = malloc(B * T * N * sizeof(double));
    double *p_ref = c->scores ? malloc(B * H * T * S * sizeof(double)) : NULL;
    double *cache_ref = malloc(B * 2 * S * H * dk * sizeof(double) + 8);
    ref_weights rw = {H,    dk,   dv,   c->Dq, c->Dk, c->Dv, N,    c->use_bias,
                      w[0], w[1], w[2], w[3],  w[4],  w[5],  w[6], w[7]};
    ref_call rc = {B,
                   T,
                   q,
                   c->self_input     ? (c->separate_key ? q : NULL)
                   : c->separate_key ? k
                                     : NULL,
                   c->self_input ? q : v,
                   Sn,
                   mask,
                   {md[0], md[1], md[2]},
                   c->mode == MODE_NONE ? NULL : cache,
                   S,
                   c->mode == MODE_UPDATE,
                   c->index,
                   cache_ref,
                   out_ref,
                   p_ref,
                   c->half_cache,
                   0,
                   /* Keras's fused path, the layer's default fully_masked_rows (no dropout in
                    * these layers) */
                   !c->scores,
                   NULL};
    assert_true(ref_forward(&rw, &rc));

    /* Device. */
    size_t qs[3] = {B, T, c->Dq}, vs[3] = {B, Sn, c->Dv}, ks[3] = {B, Sn, c->Dk};
    size_t cs[5] = {B, 2, S, H, c->int8_cache ? row8 : dk}, ps[4] = {B, H, T, S};
    size_t os[4] = {B, T, c->out_rank ? c->out_shape[0] : c->Dq, c->out_shape[1]};
    int orank = 2 + (c->out_rank ? c->out_rank : 1);
    placed pq = place(c, 3, qs, q);
    placed pv = {0}, pk = {0}, pc = {0}, pp = {0};
    bool kv = c->mode != MODE_STATIC;
    if (kv && !c->self_input) {
        pv = place(c, 3, vs, v);
        if (c->separate_key) {
            pk = place(c, 3, ks, k);
        }
    }
    if (c->mode != MODE_NONE) {
        pc = c->half_cache   ? place_as(c, CLMHA_FLOAT16, 5, cs, cache16)
             : c->int8_cache ? place_as(c, CLMHA_INT8, 5, cs, cache8)
                             : place(c, 5, cs, cache);
    }
    placed po = place(c, orank, os, NULL);
    if (c->scores) {
        pp = place(c, 4, ps, NULL);
    }
    clmha_tensor *tm = NULL;
    if (mask) {
        tm = test_tensor_u8(ctx, mrank, mrank == 2 ? md + 1 : md, mask);
    }
    clmha_call_args a;
    clmha_call_args_init(&a);
    a.query = pq.t;
    a.value = c->self_input ? pq.t : pv.t; /* self-attention: one tensor for all three */
    a.key = c->self_input ? (c->separate_key ? pq.t : NULL) : pk.t;
    a.attention_mask = tm;
    a.cache = pc.t;
    a.has_cache_update_index = c->mode == MODE_UPDATE;
    a.cache_update_index = (int64_t)c->index;
    a.output = po.t;
    a.attention_scores = pp.t;
    clmha_context_stats before, after;
    assert_ok(clmha_context_get_stats(ctx, &before));
    assert_ok(clmha_layer_call(layer, &a));
    assert_ok(clmha_context_get_stats(ctx, &after));
    /* Every program a call can take was built (or loaded) when the layer was created. */
    if (after.programs_built_from_source + after.programs_loaded_from_cache !=
        before.programs_built_from_source + before.programs_loaded_from_cache) {
        print_error("the call built or loaded %llu program(s)\n  reproduce: %s\n",
                    (unsigned long long)(after.programs_built_from_source +
                                         after.programs_loaded_from_cache -
                                         before.programs_built_from_source -
                                         before.programs_loaded_from_cache),
                    repro);
        fail();
    }
    check_plan(c, repro);
    bool ok = true;
    if (c->int8_cache && c->mode != MODE_NONE) {
        /* The rows the device quantized are checked against the host's quantization of the
         * reference's, then the reference runs again over the device's rows: the attention
         * must match it at float32 tolerance. */
        ok = check_int8_cache(c, &rw, &rc, pc.t, cache8, cache_ref, repro);
    }

    const tol_rule tol = c->half_cache ? TOL_F16 : TOL_F32;
    float *out = test_read(po.t, NULL);
    ok = ok && compare_close("output", out, out_ref, B * T * N, tol, repro);
    if (ok && c->scores) {
        float *p = test_read(pp.t, NULL);
        ok = compare_close("attention_scores", p, p_ref, B * H * T * S, tol, repro);
        /* Masked probabilities are exactly 0. */
        for (size_t i = 0; ok && i < B * H * T * S; i++) {
            if (p_ref[i] == 0.0 && p[i] != 0.0f) {
                print_error("attention_scores[%zu] = %g for a masked key\n  reproduce: %s\n", i,
                            p[i], repro);
                ok = false;
            }
        }
        free(p);
    }
    if (ok && c->mode != MODE_NONE && !c->int8_cache) {
        size_t n = B * 2 * S * H * dk;
        float *cn = NULL;
        if (c->half_cache) {
            uint16_t *c16 = test_read(pc.t, NULL);
            cn = malloc(n * sizeof *cn + 4);
            assert_non_null(cn);
            /* The device rounds to nearest even as the reference does: its halves equal the
             * reference's, but for the rare value that float rounding moved across a half tie
             * (one ulp off) and tiny values, where the float projection's own error (about
             * 1e-7) spans several subnormal ulps. Rounding toward zero, say, would miss about
             * half of the values. */
            size_t off_by_one = 0, rounded = 0;
            for (size_t i = 0; i < n; i++) {
                cn[i] = half_to_float(c16[i]);
                uint16_t want = half_from_float((float)cache_ref[i]);
                size_t j = (i / (H * dk)) % S;
                rounded += c->mode == MODE_UPDATE && j >= c->index && j < c->index + Sn;
                if (c16[i] == want) {
                    continue;
                }
                double got = cn[i], ref = half_to_float(want);
                bool tiny = fabs(ref) < 1e-3 && fabs(got - ref) <= 1e-6;
                int d = (int)(c16[i] & 0x7fff) - (int)(want & 0x7fff);
                bool one_ulp = ((c16[i] ^ want) & 0x8000) == 0 && (d == 1 || d == -1);
                if (!tiny && !one_ulp) {
                    print_error("cache element %zu is half 0x%04x (%.6g), reference 0x%04x "
                                "(%.6g)\n  reproduce: %s\n",
                                i, c16[i], got, want, ref, repro);
                    ok = false;
                }
                off_by_one += !tiny;
            }
            if (off_by_one > 1 + rounded / 200) {
                print_error("cache: %zu of %zu halves differ from the reference by one ulp "
                            "(rounding is not to nearest even?)\n  reproduce: %s\n",
                            off_by_one, rounded, repro);
                ok = false;
            }
            free(c16);
        } else {
            cn = test_read(pc.t, NULL);
        }
        ok = ok && compare_close("cache", cn, cache_ref, n, tol, repro);
        /* Outside the updated range (everywhere in static mode) byte-identical. */
        for (size_t i = 0; ok && i < n; i++) {
            size_t j = (i / (H * dk)) % S;
            bool updated = c->mode == MODE_UPDATE && j >= c->index && j < c->index + Sn;
            if (!updated && memcmp(&cn[i], &cache[i], sizeof(float)) != 0) {
                print_error("cache element %zu (position %zu) changed outside the update\n  "
                            "reproduce: %s\n",
                            i, j, repro);
                ok = false;
            }
        }
        free(cn);
    }
    free(out);
    if (!ok) {
        fail_msg("case failed: %s", repro);
    }
    unplace(&pq, "query", repro);
    unplace(&pv, "value", repro);
    unplace(&pk, "key", repro);
    unplace(&pc, "cache", repro);
    unplace(&po, "output", repro);
    unplace(&pp, "attention_scores", repro);
    clmha_tensor_release(tm);
    clmha_layer_release(layer);
    for (int i = 0; i < CLMHA_WEIGHT_COUNT; i++) {
        free(w[i]);
    }
    free(q), free(v), free(k), free(cache), free(cache16), free(cache8), free(mask);
    free(out_ref), free(p_ref), free(cache_ref);
}
