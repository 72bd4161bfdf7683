/*
 * plan.c - the planner of a layer call: after call_args.c has checked the arguments and laid
 * out the call's canonical shapes, it decides everything the call runs (plan.h): the attention
 * kernel and its chunks within the loop budget of a work-item, whether gemm_tail ends the
 * call, and how self-attention's projections run. attention.c only carries the plan out.
 */
#include "plan.h"

#include <stdint.h>

/* Two tensors are the same data: one buffer, offset, dtype and element count. */
static bool same_region(const clmha_tensor *a, const clmha_tensor *b) {
    return a != NULL && b != NULL && a->buffer == b->buffer && a->offset == b->offset &&
           a->dtype == b->dtype && a->numel == b->numel;
}

/* Loop iterations over d elements in the CPU kernels' vector loops (16 or 4 lanes, else one). */
static size_t vec_loops(size_t d) {
    return d % 16 == 0 ? d / 16 : d % 4 == 0 ? d / 4 : d;
}

/* The most keys one work-group of kernel @p k may take in a chunk, so that none of its
 * work-items loops more than the context's item_loops times in all: an upper bound of each
 * kernel's loop iterations a key (counting every loop, as Mesa's llvmpipe does, unrolled or not:
 * llvmpipe does not unroll what the pragmas ask), after a share for the query, output and merge
 * loops. */
static size_t item_keys(const clmha_layer *l, int k) {
    const size_t dk = l->dk, dv = l->dv, budget = l->ctx->item_loops;
    const size_t fixed = 4 * (dk + dv) + 2 * CLMHA__MAX_CHUNKS;
    const size_t left = budget > 2 * fixed ? budget - fixed : budget / 2;
    const size_t key = 3 + vec_loops(dk) + 2 * vec_loops(dv); /* key loop, dot, rescale, add */
    size_t per_key_x64; /* iterations of 64 keys, for the kernels that share keys */
    switch (k) {
    case CLMHA__ATT_HEADS:
        per_key_x64 = 64 * (l->heads * key + 4);
        break;
    case CLMHA__ATT_TILE:
        per_key_x64 = 64 * (l->tile_rows * (key + 16) + 32);
        break;
    case CLMHA__ATT_QTILE: { /* a tile of KT keys: staging, NKL scores over DK, maximum, p x V */
        const size_t kt = l->key_tile, wgs = l->wg_split, lq = l->lanes_query;
        const size_t nkl = (kt + lq - 1) / lq, ndl = (dv + lq - 1) / lq;
        const size_t tile = (kt * dk + wgs - 1) / wgs + (kt * dv + wgs - 1) / wgs + dk * (1 + nkl) +
                            nkl + kt * (2 + ndl) + 4;
        per_key_x64 = (64 * tile + kt - 1) / kt;
        break;
    }
    case CLMHA__ATT_SPLIT:
        if (l->wg_split > 1) { /* a step of wg_split keys: LK partials, sums, maximum, p x V */
            const size_t lk = l->lanes_key, vw = dk % 4 == 0 && dv % 4 == 0 ? 4 : 1;
            const size_t nqi = (dk / vw + lk - 1) / lk, nai = (dv / vw + lk - 1) / lk;
            const size_t step = lk * (1 + nqi) + 2 * lk + lk * (1 + nai) + nqi + nai + 4;
            per_key_x64 = (64 * step + l->wg_split - 1) / l->wg_split;
        } else {
            per_key_x64 = 64 * key;
        }
        break;
    case CLMHA__ATT_ROWS: { /* a tile of WG keys: WG values of NDV elements, two dot products */
        const size_t wg = l->wg_attention, ndv = (dv + wg - 1) / wg;
        per_key_x64 = (64 * (wg * (2 + ndv) + 2 * (dk / 4 + 2)) + wg - 1) / wg;
        break;
    }
    default:
        return SIZE_MAX;
    }
    const size_t keys = left * 64 / per_key_x64;
    return keys > 2 ? keys : 2; /* at least 2, so that tiny budgets (tests) still merge */
}

/* Chooses the attention kernel and its chunks. Calls that want the probabilities or apply
 * dropout take the two-pass attention_rows; the others, where the layer has them: query tiles
 * for T >= 2 (attention_tile on CPUs, attention_qtile_gpu elsewhere), all heads a work-group for
 * single queries (attention_heads, CPUs), else the split kernel (attention_split or
 * attention_split_gpu). Chunks: see the comment in the body. */
static void plan_attention(const clmha_layer *l, const clmha_call_args *a, plan *p) {
    const bool drop = a->training && l->cfg.dropout > 0.0;
    p->nch = 1;
    p->chunk = (int)p->S;
    /* gemm_tail needs the output projection on the own GEMM one row a work-item, or the
     * few-rows build's rows where the layer has that tail (not the row-blocked build's many),
     * or an int8 layer's one-row product (at most two rows, as gemm_i8w's one-row build), and
     * nothing read after it: no probabilities to copy, no activity sums of the projected
     * output, no rank > 3 gather. */
    const size_t gr = l->quant_bits != 0 ? (p->rows_q <= CLMHA__QUANT_ONE_ROW_MAX ? 1 : 0)
                                         : clmha__gemm_rows_taken(l, p->rows_q, l->out_features);
    p->tail_rows = gr == 1 && l->use_tail                           ? 1
                   : gr > 1 && gr == l->gemm_few && l->use_tail_few ? gr
                                                                    : 0;
    p->tail = p->tail_rows > 0 && !p->general && a->attention_scores == NULL && l->act == NULL;
    if (!l->use_split || a->attention_scores != NULL || drop) {
        p->kernel = CLMHA__ATT_ROWS;
    } else if (p->T >= 2 && (l->use_tile || l->use_qtile)) {
        p->kernel = l->use_tile ? CLMHA__ATT_TILE : CLMHA__ATT_QTILE;
    } else {
        /* attention_heads reads one mask row for all heads: not for a mask with a head dim. */
        p->kernel = l->use_heads && p->T == 1 && p->m_sh == 0 ? CLMHA__ATT_HEADS : CLMHA__ATT_SPLIT;
    }
    if (p->S == 0) {
        return;
    }
    /* Split kernels: chunks for about groups_per_cu work-groups a compute unit, none shorter
     * than the layer's minimum chunk. Query tiles and attention_rows: one chunk. Either way no
     * chunk longer than a work-item may loop over (item_keys). */
    size_t nch = 1;
    if (p->kernel == CLMHA__ATT_SPLIT || p->kernel == CLMHA__ATT_HEADS) {
        size_t rows = p->B * (p->kernel == CLMHA__ATT_HEADS ? 1 : l->heads) * p->T;
        size_t target = l->ctx->tuning.groups_per_cu *
                        (size_t)(l->ctx->info.compute_units ? l->ctx->info.compute_units : 1);
        size_t by_rows = (target + rows - 1) / rows;
        size_t by_len = (p->S + l->split_min_chunk - 1) / l->split_min_chunk;
        nch = by_rows < by_len ? by_rows : by_len;
    }
    const size_t cap = item_keys(l, p->kernel);
    const size_t by_cap = (p->S + cap - 1) / cap;
    nch = nch > by_cap ? nch : by_cap;
    nch = nch < 1 ? 1 : nch > CLMHA__MAX_CHUNKS ? CLMHA__MAX_CHUNKS : nch;
    size_t chunk = (p->S + nch - 1) / nch;
    p->nch = (int)((p->S + chunk - 1) / chunk);
    p->chunk = (int)chunk;
}

/* The most partials' floats a call of `rows` query rows (B * T) can need: plan_attention makes at
 * most groups_per_cu * compute units + rows work-groups of one row (all heads' rows for
 * attention_heads), each writing DV + 2 floats a head it covers. */
size_t clmha__part_floats(const clmha_layer *l, size_t rows, size_t keys) {
    const size_t by_target =
        l->ctx->tuning.groups_per_cu *
            (size_t)(l->ctx->info.compute_units ? l->ctx->info.compute_units : 1) +
        rows;
    /* Chunks that keep a work-item within its loop budget (plan_attention), at any kernel. */
    size_t cap = SIZE_MAX;
    for (int k = 0; k < CLMHA__ATT_COUNT; k++) {
        const size_t c = item_keys(l, k);
        cap = c < cap ? c : cap;
    }
    size_t nch = (keys + cap - 1) / cap;
    nch = nch < 1 ? 1 : nch > CLMHA__MAX_CHUNKS ? CLMHA__MAX_CHUNKS : nch;
    const size_t by_cap = rows * nch;
    return (by_target > by_cap ? by_target : by_cap) * l->heads * (l->dv + 4);
}

/* Whether a call gives its fully masked rows the mean of the values (plan.masked_mean), and
 * whether a work-item of masked_rows_mean stays within the loop budget there. */
static clmha_status plan_masked_mean(const clmha_layer *l, const clmha_call_args *a, plan *p) {
    const bool fused = l->cfg.dropout == 0.0 && a->attention_scores == NULL && !p->general;
    const long causal_base = p->update ? (long)p->index : (long)p->S - (long)p->T;
    p->masked_mean =
        l->cfg.fully_masked_rows == CLMHA_FULLY_MASKED_KERAS && fused && p->S > 0 &&
        (a->attention_mask != NULL || a->key_lengths != NULL || (a->causal && causal_base < 0));
    if (!p->masked_mean) {
        return CLMHA_OK;
    }
    p->tail = p->tail && p->nch == 1; /* the row must be finished in ws_o before the mean */
    /* A work-item loops over its mask bytes (S / wg), the reduction (log2 wg <= 8), then over a
     * launch's keys for each of its value elements: launches of mean_keys keys keep that within
     * the loop budget. */
    const size_t wg = l->wg_masked, per_key = (l->dv + wg - 1) / wg;
    const size_t scan = (p->S + wg - 1) / wg + 8;
    if (scan >= l->ctx->item_loops) {
        return clmha__fail(l->ctx, CLMHA_ERR_DEVICE_LIMIT,
                           "clmha_layer_call: looking for a fully masked row among %zu keys would "
                           "take a work-item past this device's %zu loop iterations; create the "
                           "layer with fully_masked_rows = CLMHA_FULLY_MASKED_ZEROS",
                           p->S, l->ctx->item_loops);
    }
    p->mean_keys = (l->ctx->item_loops - scan) / per_key;
    p->mean_keys = p->mean_keys < 1 ? 1 : p->mean_keys;
    return CLMHA_OK;
}

clmha_status clmha__plan_call(clmha_layer *l, const clmha_call_args *a, plan *p) {
    clmha_status st = clmha__check_call(l, a, p);
    if (st != CLMHA_OK) {
        return st;
    }
    plan_attention(l, a, p);
    if ((st = plan_masked_mean(l, a, p)) != CLMHA_OK) {
        return st;
    }
    const clmha_tensor *key = a->key ? a->key : a->value;
    /* Self-attention (query, key and value one tensor): one launch of the own GEMM or of an
     * int8 layer's product, or one CLBlast product, where they take all three projections. */
    const bool self = p->project_kv && same_region(a->query, a->value) &&
                      same_region(a->query, key) && p->rows_q == p->rows_kv;
    p->qkv = !self                                         ? QKV_APART
             : clmha__project_qkv_fits(l, p->rows_q)       ? QKV_OWN
             : clmha__project_quant_qkv_fits(l, p->rows_q) ? QKV_QUANT
             : clmha__project_qkv_blas_fits(l, p->rows_q)  ? QKV_BLAS
                                                           : QKV_APART;
    return CLMHA_OK;
}
