/*
 * attention.c - carries out a layer call's plan (plan.c decides it): query projection,
 * key/value projections, the gathers of inputs of rank > 3, masked attention (new keys and
 * values read from the workspace), output projection into the workspace, and one commit launch
 * that copies output and probabilities out and splices the cache (or gemm_tail, which also
 * merges and projects). Everything the caller owns is written by that last launch alone, so a
 * failure anywhere before it (a driver error, an injected fault) leaves the caller's tensors
 * and the cache as they were. No host synchronisation inside; the workspace grows only when
 * shapes grow (clmha_layer_reserve grows it ahead of the calls).
 */
#include "plan.h"

#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

void clmha_call_args_init(clmha_call_args *args) {
    if (args != NULL) {
        memset(args, 0, sizeof *args);
    }
}

/* Sets the ten arguments from @p first on that splice.cl's commit and gemm_tail share: the new
 * keys and values (halves or int8 rows for a narrow cache), the cache and its element offset, B,
 * Sn, S, a position's elements H * kv_row,
 * the update index and the number of elements to splice (0 without an update), which it stores
 * in @p n_splice. */
static clmha_status set_splice_args(clmha_layer *l, const clmha_call_args *a, const plan *p,
                                    const clmha__kernel *k, size_t first, cl_ulong *n_splice) {
    cl_mem kk = !p->update ? NULL : p->narrow ? l->ws_kh : l->ws_k;
    cl_mem vv = !p->update ? NULL : p->narrow ? l->ws_vh : l->ws_v;
    cl_mem cache = p->update ? a->cache->buffer : NULL;
    cl_ulong c_off = p->update ? a->cache->offset / clmha__dtype_size(a->cache->dtype) : 0;
    cl_ulong B = p->B, Sn = p->Sn, S = p->S, HD = l->heads * l->kv_row, idx = p->index;
    *n_splice = p->update ? 2 * B * Sn * HD : 0;
    const clmha__karg args[] = {CLMHA__ARG(kk),       CLMHA__ARG(vv), CLMHA__ARG(cache),
                                CLMHA__ARG(c_off),    CLMHA__ARG(B),  CLMHA__ARG(Sn),
                                CLMHA__ARG(S),        CLMHA__ARG(HD), CLMHA__ARG(idx),
                                CLMHA__ARG(*n_splice)};
    return clmha__set_args_from(l->ctx, k, first, args, 10);
}

/* The last launch of a call: output and probabilities out of the workspace, new keys and
 * values into the cache. One enqueue, so a failure before it leaves the caller's tensors as
 * they were. */
static clmha_status enqueue_commit(clmha_layer *l, const clmha_call_args *a, const plan *p) {
    l->ctx->prof_category = CLMHA__PROF_OTHER;
    cl_mem y = l->ws_y, out = a->output->buffer;
    cl_ulong out_off = a->output->offset / sizeof(float), n_out = a->output->numel;
    cl_mem ps = a->attention_scores ? l->ws_p : NULL;
    cl_mem pd = a->attention_scores ? a->attention_scores->buffer : NULL;
    cl_ulong p_off = a->attention_scores ? a->attention_scores->offset / sizeof(float) : 0;
    cl_ulong n_p = a->attention_scores ? a->attention_scores->numel : 0, n_splice = 0;
    const clmha__karg args[] = {CLMHA__ARG(y),     CLMHA__ARG(out), CLMHA__ARG(out_off),
                                CLMHA__ARG(n_out), CLMHA__ARG(ps),  CLMHA__ARG(pd),
                                CLMHA__ARG(p_off), CLMHA__ARG(n_p)};
    const clmha__kernel *k = &l->kern[CLMHA__K_COMMIT(p->narrow)];
    clmha_status st = clmha__set_args(l->ctx, k, args, 8);
    if (st == CLMHA_OK) {
        st = set_splice_args(l, a, p, k, 8, &n_splice);
    }
    if (st != CLMHA_OK) {
        return st;
    }
    size_t total = (size_t)(n_out + n_p + n_splice);
    return clmha__launch(l->ctx, k, (total + l->wg_commit - 1) / l->wg_commit, l->wg_commit);
}

/* A narrow cache: rounds the new keys and values (ws_k, ws_v) to half (to_half, one element a
 * work-item) or quantizes them to int8 rows (to_int8, one head row a work-item) into ws_kh and
 * ws_vh, which the attention reads and the commit copies into the cache. */
static clmha_status enqueue_to_narrow(clmha_layer *l, const plan *p) {
    l->ctx->prof_category = CLMHA__PROF_ATTENTION;
    const clmha__kernel *k = &l->kern[CLMHA__K_TO_NARROW];
    cl_ulong n = p->rows_kv * l->heads * (l->int8_cache ? 1 : l->dk);
    cl_int d = (cl_int)l->dk;
    const clmha__karg args[] = {CLMHA__ARG(l->ws_k),  CLMHA__ARG(l->ws_v), CLMHA__ARG(l->ws_kh),
                                CLMHA__ARG(l->ws_vh), CLMHA__ARG(n),       CLMHA__ARG(d)};
    clmha_status st = clmha__set_args(l->ctx, k, args, l->int8_cache ? 6 : 5);
    if (st != CLMHA_OK) {
        return st;
    }
    size_t total = (size_t)(2 * n);
    return clmha__launch(l->ctx, k, (total + l->wg_commit - 1) / l->wg_commit, l->wg_commit);
}

/* Floats of workspace for @p rows new rows of keys (or values) as the narrow cache keeps them:
 * halves two to a float, or int8 rows of kv_row bytes. */
static size_t narrow_floats(const clmha_layer *l, size_t rows) {
    return l->int8_cache ? (rows * l->heads * l->kv_row + 3) / 4
                         : (rows * l->heads * l->dk + 1) / 2;
}

/* Enqueues a row gather (rows of row_len floats) or, with row_len 0, a mask gather. */
static clmha_status enqueue_gather(clmha_layer *l, cl_mem src, size_t src_off, cl_mem dst,
                                   size_t row_len, size_t n, const gather *g) {
    l->ctx->prof_category = CLMHA__PROF_ATTENTION;
    cl_ulong8 dims, strides;
    for (int i = 0; i < 8; i++) {
        dims.s[i] = i < (int)g->nd ? g->dims[i] : 1;
        strides.s[i] = i < (int)g->nd ? g->strides[i] : 0;
    }
    cl_ulong off = src_off, rl = row_len, count = n;
    cl_uint nd = g->nd;
    clmha_status st;
    size_t total;
    const clmha__kernel *k = &l->kern[row_len > 0 ? CLMHA__K_GATHER : CLMHA__K_GATHER_MASK];
    if (row_len > 0) {
        const clmha__karg args[] = {CLMHA__ARG(src),  CLMHA__ARG(off),    CLMHA__ARG(dst),
                                    CLMHA__ARG(rl),   CLMHA__ARG(count),  CLMHA__ARG(nd),
                                    CLMHA__ARG(dims), CLMHA__ARG(strides)};
        st = clmha__set_args(l->ctx, k, args, 8);
        total = n * row_len;
    } else {
        const clmha__karg args[] = {CLMHA__ARG(src),    CLMHA__ARG(off), CLMHA__ARG(dst),
                                    CLMHA__ARG(count),  CLMHA__ARG(nd),  CLMHA__ARG(dims),
                                    CLMHA__ARG(strides)};
        st = clmha__set_args(l->ctx, k, args, 7);
        total = n;
    }
    if (st != CLMHA_OK) {
        return st;
    }
    return clmha__launch(l->ctx, k, (total + l->wg_gather - 1) / l->wg_gather, l->wg_gather);
}

/* The values of ATTENTION_ARGS (attention_common.clh), what every attention kernel takes
 * first, kept here so that their addresses outlive the clSetKernelArg calls. */
typedef struct attention_args {
    cl_mem qb, kb, vb, mask, o, kn, vn, lens;
    cl_ulong q_off, k_off, v_off, k_bs, v_bs, m_off, m_sb, m_st, m_ss, m_sh;
    cl_ulong new_lo, new_hi, kn_bs, vn_bs, lens_off;
    cl_int has_mask, T, S, H, causal, has_lens;
    cl_long causal_base;
    cl_float scale;
} attention_args;

/* The common arguments of a call's attention kernel: queries from the workspace, keys and
 * values from the cache or the workspace, the mask, causality and key lengths. */
static void attention_args_fill(const clmha_layer *l, const clmha_call_args *a, const plan *p,
                                attention_args *v) {
    *v = (attention_args){0};
    v->qb = p->general ? l->ws_q2 : l->ws_q;
    if (p->has_cache) {
        v->kb = v->vb = a->cache->buffer;
        v->k_off = a->cache->offset / clmha__dtype_size(a->cache->dtype);
        v->v_off = v->k_off + p->S * l->heads * l->kv_row;
        v->k_bs = v->v_bs = 2 * p->S * l->heads * l->kv_row;
    } else {
        v->kb = p->general ? l->ws_k2 : l->ws_k;
        v->vb = p->general ? l->ws_v2 : l->ws_v;
        v->k_bs = p->S * l->heads * l->dk;
        v->v_bs = p->S * l->heads * l->dv;
    }
    const clmha_tensor *m = a->attention_mask;
    v->mask = p->general && m ? l->ws_m : m ? m->buffer : NULL;
    v->m_off = !p->general && m ? m->offset : 0;
    v->has_mask = m != NULL;
    v->m_sb = p->m_sb;
    v->m_st = p->m_st;
    v->m_ss = p->m_ss;
    v->m_sh = p->m_sh;
    /* An update's new keys and values are read from the workspace: the cache is written only
     * by the final commit. */
    v->kn = !p->update ? NULL : p->narrow ? l->ws_kh : l->ws_k;
    v->vn = !p->update ? NULL : p->narrow ? l->ws_vh : l->ws_v;
    v->new_lo = p->update ? p->index : 0;
    v->new_hi = p->update ? p->index + p->Sn : 0;
    v->kn_bs = p->Sn * l->heads * (p->narrow ? l->kv_row : l->dk);
    v->vn_bs = p->Sn * l->heads * (p->narrow ? l->kv_row : l->dv);
    v->causal = a->causal;
    v->causal_base = !a->causal ? 0 : p->update ? (cl_long)p->index : (cl_long)p->S - (cl_long)p->T;
    v->lens = a->key_lengths ? a->key_lengths->buffer : NULL;
    v->lens_off = a->key_lengths ? a->key_lengths->offset / 4 : 0;
    v->has_lens = a->key_lengths != NULL;
    v->T = (cl_int)p->T;
    v->S = (cl_int)p->S;
    v->H = (cl_int)l->heads;
    /* Keras scales the query by 1/sqrt(key_dim) before the dot product (in float32). */
    v->scale = (cl_float)(1.0 / sqrt((double)l->dk));
    v->o = l->ws_o;
}

#define ATTENTION_NARGS 31

/* Sets the common arguments (0 .. ATTENTION_NARGS-1) of attention kernel @p k. */
static clmha_status attention_args_set(clmha_context *ctx, const clmha__kernel *k,
                                       const attention_args *v) {
    const clmha__karg args[ATTENTION_NARGS] = {
        CLMHA__ARG(v->qb),          CLMHA__ARG(v->q_off),  CLMHA__ARG(v->kb),
        CLMHA__ARG(v->k_off),       CLMHA__ARG(v->k_bs),   CLMHA__ARG(v->vb),
        CLMHA__ARG(v->v_off),       CLMHA__ARG(v->v_bs),   CLMHA__ARG(v->mask),
        CLMHA__ARG(v->m_off),       CLMHA__ARG(v->m_sb),   CLMHA__ARG(v->m_st),
        CLMHA__ARG(v->m_ss),        CLMHA__ARG(v->m_sh),   CLMHA__ARG(v->has_mask),
        CLMHA__ARG(v->o),           CLMHA__ARG(v->T),      CLMHA__ARG(v->S),
        CLMHA__ARG(v->H),           CLMHA__ARG(v->scale),  CLMHA__ARG(v->kn),
        CLMHA__ARG(v->vn),          CLMHA__ARG(v->new_lo), CLMHA__ARG(v->new_hi),
        CLMHA__ARG(v->kn_bs),       CLMHA__ARG(v->vn_bs),  CLMHA__ARG(v->causal),
        CLMHA__ARG(v->causal_base), CLMHA__ARG(v->lens),   CLMHA__ARG(v->lens_off),
        CLMHA__ARG(v->has_lens)};
    return clmha__set_args(ctx, k, args, ATTENTION_NARGS);
}

/* attention_merge of the chunks' partials of @p rows query rows into the attention output. */
static clmha_status enqueue_merge(clmha_layer *l, const plan *p, const attention_args *v,
                                  size_t rows) {
    cl_mem part = l->ws_part;
    cl_int nch = p->nch;
    const clmha__karg margs[] = {CLMHA__ARG(part), CLMHA__ARG(v->o), CLMHA__ARG(nch),
                                 CLMHA__ARG(v->T), CLMHA__ARG(v->H)};
    const clmha__kernel *k = &l->kern[CLMHA__K_MERGE];
    clmha_status st = clmha__set_args(l->ctx, k, margs, 5);
    return st != CLMHA_OK ? st : clmha__launch(l->ctx, k, rows, l->wg_attention);
}

/* The chunked kernels (split, all heads, query tiles): nch chunks of `chunk` keys a row,
 * partials in ws_part when nch > 1, merged by attention_merge here or by gemm_tail (plan.tail).
 * Work-groups: split, one row (T == 1 all heads: one query position) a chunk; query tiles,
 * tile_rows rows for one work-item (CPUs) or wg_split / lanes_query rows (GPUs) a chunk. */
static clmha_status enqueue_chunked(clmha_layer *l, const plan *p, const attention_args *v) {
    clmha_context *ctx = l->ctx;
    const clmha__kernel *ks = &l->kern[CLMHA__K_ATTN(p->kernel, p->narrow)];
    size_t groups = p->B * l->heads * p->T, wg = l->wg_split;
    if (p->kernel == CLMHA__ATT_TILE) {
        groups = p->B * l->heads * ((p->T + l->tile_rows - 1) / l->tile_rows);
        wg = 1;
    } else if (p->kernel == CLMHA__ATT_QTILE) {
        const size_t rows = l->wg_split / l->lanes_query;
        groups = p->B * l->heads * ((p->T + rows - 1) / rows);
    } else if (p->kernel == CLMHA__ATT_HEADS) {
        groups = p->B * p->T;
    }
    cl_mem part = p->nch > 1 ? l->ws_part : NULL;
    cl_int nch = p->nch, chunk = p->chunk;
    const clmha__karg extra[] = {CLMHA__ARG(part), CLMHA__ARG(nch), CLMHA__ARG(chunk)};
    clmha_status st = attention_args_set(ctx, ks, v);
    if (st == CLMHA_OK) {
        st = clmha__set_args_from(ctx, ks, ATTENTION_NARGS, extra, 3);
    }
    if (st == CLMHA_OK) {
        st = clmha__launch(ctx, ks, groups * (size_t)p->nch, wg);
    }
    if (st != CLMHA_OK || p->nch == 1 || p->tail) {
        return st;
    }
    return enqueue_merge(l, p, v, p->B * l->heads * p->T);
}

/* attention_rows (probabilities, dropout, or a layer without the chunked kernels): one launch
 * (pass 0) for rows of one chunk; else each chunk's statistics (pass 1), then its probabilities
 * and partial output (pass 2), merged like the split kernels' (the statistics after the
 * partials in ws_part). */
static clmha_status enqueue_rows(clmha_layer *l, const clmha_call_args *a, const plan *p,
                                 const attention_args *v) {
    clmha_context *ctx = l->ctx;
    const clmha__kernel *k = &l->kern[CLMHA__K_ATTN(CLMHA__ATT_ROWS, p->narrow)];
    const bool drop = a->training && l->cfg.dropout > 0.0;
    cl_mem probs = a->attention_scores ? l->ws_p : NULL;
    cl_ulong p_off = 0;
    cl_int has_p = a->attention_scores != NULL;
    cl_float rate = drop ? (cl_float)l->cfg.dropout : 0.0f;
    cl_uint counter = drop ? l->dropout_calls : 0;
    cl_uint seed_lo = (cl_uint)l->seed, seed_hi = (cl_uint)(l->seed >> 32);
    const size_t rows = p->B * l->heads * p->T;
    cl_mem part = p->nch > 1 ? l->ws_part : NULL;
    cl_ulong stats_off = p->nch > 1 ? rows * (size_t)p->nch * (l->dv + 2) : 0;
    cl_int nch = p->nch, chunk = p->chunk, pass = p->nch > 1 ? 1 : 0;
    const clmha__karg extra[] = {CLMHA__ARG(probs),   CLMHA__ARG(p_off),   CLMHA__ARG(has_p),
                                 CLMHA__ARG(rate),    CLMHA__ARG(counter), CLMHA__ARG(seed_lo),
                                 CLMHA__ARG(seed_hi), CLMHA__ARG(part),    CLMHA__ARG(stats_off),
                                 CLMHA__ARG(nch),     CLMHA__ARG(chunk),   CLMHA__ARG(pass)};
    const size_t ne = sizeof extra / sizeof extra[0];
    clmha_status st = attention_args_set(ctx, k, v);
    if (st == CLMHA_OK) {
        st = clmha__set_args_from(ctx, k, ATTENTION_NARGS, extra, ne);
    }
    if (st == CLMHA_OK) {
        st = clmha__launch(ctx, k, rows * (size_t)p->nch, l->wg_attention);
    }
    if (st != CLMHA_OK || p->nch == 1) {
        return st;
    }
    pass = 2;
    const clmha__karg second[] = {CLMHA__ARG(pass)};
    st = clmha__set_args_from(ctx, k, ATTENTION_NARGS + ne - 1, second, 1);
    if (st == CLMHA_OK) {
        st = clmha__launch(ctx, k, rows * (size_t)p->nch, l->wg_attention);
    }
    if (st != CLMHA_OK || p->tail) {
        return st;
    }
    return enqueue_merge(l, p, v, rows);
}

/* The attention kernel the plan chose, into ws_o (and the probabilities into ws_p), then where
 * the plan says Keras's fused-path result for fully masked rows (masked_rows_mean). */
static clmha_status enqueue_attention(clmha_layer *l, const clmha_call_args *a, const plan *p) {
    l->ctx->prof_category = CLMHA__PROF_ATTENTION;
    attention_args v;
    attention_args_fill(l, a, p, &v);
    clmha_status st =
        p->kernel == CLMHA__ATT_ROWS ? enqueue_rows(l, a, p, &v) : enqueue_chunked(l, p, &v);
    if (st != CLMHA_OK || !p->masked_mean) {
        return st;
    }
    const clmha__kernel *k = &l->kern[CLMHA__K_MASKED_MEAN(p->narrow)];
    if ((st = attention_args_set(l->ctx, k, &v)) != CLMHA_OK) {
        return st;
    }
    for (size_t j = 0; j < p->S && st == CLMHA_OK; j += p->mean_keys) {
        cl_int j0 = (cl_int)j, j1 = (cl_int)(p->S - j < p->mean_keys ? p->S : j + p->mean_keys);
        const clmha__karg span[] = {CLMHA__ARG(j0), CLMHA__ARG(j1)};
        st = clmha__set_args_from(l->ctx, k, ATTENTION_NARGS, span, 2);
        if (st == CLMHA_OK) {
            st = clmha__launch(l->ctx, k, p->B * l->heads * p->T, l->wg_masked);
        }
    }
    return st;
}

/* The last launch of a call whose output projection takes the own GEMM (plan.tail): the chunk
 * merge (split attention), the output projection straight into the caller's output and the
 * cache splice, in one enqueue (see enqueue_commit). */
static clmha_status enqueue_tail(clmha_layer *l, const clmha_call_args *a, const plan *p) {
    clmha_context *ctx = l->ctx;
    ctx->prof_category = CLMHA__PROF_PROJECTION;
    const cl_mem *w = l->weights;
    cl_mem o = l->ws_o, part = p->nch > 1 ? l->ws_part : NULL;
    cl_int nch = p->nch, T = (cl_int)p->T, H = (cl_int)l->heads;
    cl_mem wo = w[CLMHA_WEIGHT_OUTPUT_KERNEL], bo = w[CLMHA_WEIGHT_OUTPUT_BIAS];
    cl_int has_bias = bo != NULL;
    const size_t wg = l->wg_tail, cols = l->tail_cols;
    cl_ulong n = l->out_features;
    /* an int8 layer's kernel has its columns padded (to a multiple of tail_cols) */
    cl_ulong np = l->quant_bits != 0 ? clmha__quant_out_np(l) : n;
    cl_ulong gpr = (np / cols + wg - 1) / wg, m = p->rows_q;
    cl_ulong gemm_groups = (p->rows_q + p->tail_rows - 1) / p->tail_rows * gpr;
    cl_mem out = a->output->buffer;
    cl_ulong out_off = a->output->offset / sizeof(float), n_splice = 0;
    /* One work-item a cache row where a group is one work-item (CPUs), else one an element. */
    cl_ulong HD = l->heads * l->kv_row, block = wg == 1 ? HD : 1;
    const clmha__karg args[] = {CLMHA__ARG(o),   CLMHA__ARG(part),        CLMHA__ARG(nch),
                                CLMHA__ARG(T),   CLMHA__ARG(H),           CLMHA__ARG(wo),
                                CLMHA__ARG(bo),  CLMHA__ARG(has_bias),    CLMHA__ARG(n),
                                CLMHA__ARG(gpr), CLMHA__ARG(gemm_groups), CLMHA__ARG(m),
                                CLMHA__ARG(out), CLMHA__ARG(out_off)};
    const clmha__kernel *k = &l->kern[CLMHA__K_TAIL(p->tail_rows > 1, p->narrow)];
    const size_t na = sizeof args / sizeof args[0];
    clmha_status st = clmha__set_args(ctx, k, args, na);
    if (st == CLMHA_OK) {
        st = set_splice_args(l, a, p, k, na, &n_splice);
    }
    /* and an int8 layer's kernel scales and padded width */
    const clmha__karg last[] = {CLMHA__ARG(block), CLMHA__ARG(l->qscale[3]), CLMHA__ARG(np)};
    if (st == CLMHA_OK) {
        st = clmha__set_args_from(ctx, k, na + 10, last, l->quant_bits != 0 ? 3 : 1);
    }
    if (st != CLMHA_OK) {
        return st;
    }
    const size_t splice_items = (size_t)(n_splice / HD * ((HD + block - 1) / block));
    return clmha__launch(ctx, k, (size_t)gemm_groups + (splice_items + wg - 1) / wg, wg);
}

/* Grows every workspace buffer the call needs, before anything is enqueued. */
static clmha_status reserve(clmha_layer *l, const clmha_call_args *a, const plan *p) {
    size_t hk = l->heads * l->dk, hv = l->heads * l->dv;
    clmha_status st;
    if ((st = clmha__workspace(l, &l->ws_q, &l->cap_q, p->rows_q * hk)) ||
        (st = clmha__workspace(l, &l->ws_o, &l->cap_o, p->rows_q * hv)) ||
        (st = clmha__workspace(l, &l->ws_y, &l->cap_y, p->rows_q * l->out_features)) ||
        (a->attention_scores &&
         (st = clmha__workspace(l, &l->ws_p, &l->cap_p, a->attention_scores->numel)))) {
        return st;
    }
    if (p->project_kv && ((st = clmha__workspace(l, &l->ws_k, &l->cap_k, p->rows_kv * hk)) ||
                          (st = clmha__workspace(l, &l->ws_v, &l->cap_v, p->rows_kv * hv)))) {
        return st;
    }
    if (p->nch > 1 &&
        (st = clmha__workspace(l, &l->ws_part, &l->cap_part,
                               p->B * l->heads * p->T * (size_t)p->nch * (l->dv + 4)))) {
        return st;
    }
    if (p->narrow && p->update &&
        ((st = clmha__workspace(l, &l->ws_kh, &l->cap_kh, narrow_floats(l, p->rows_kv))) ||
         (st = clmha__workspace(l, &l->ws_vh, &l->cap_vh, narrow_floats(l, p->rows_kv))))) {
        return st;
    }
    const size_t rows_max = p->rows_q > p->rows_kv ? p->rows_q : p->rows_kv;
    if ((st = clmha__quant_reserve(l, rows_max)) || (st = clmha__policy_reserve(l, rows_max))) {
        return st;
    }
    if (p->qkv == QKV_BLAS && (st = clmha__project_qkv_blas_reserve(l, p->rows_q)) != CLMHA_OK) {
        return st;
    }
    if (p->general && ((st = clmha__workspace(l, &l->ws_q2, &l->cap_q2, p->rows_q * hk)) ||
                       (st = clmha__workspace(l, &l->ws_k2, &l->cap_k2, p->rows_kv * hk)) ||
                       (st = clmha__workspace(l, &l->ws_v2, &l->cap_v2, p->rows_kv * hv)) ||
                       (st = clmha__workspace(l, &l->ws_o2, &l->cap_o2, p->rows_q * hv)) ||
                       (p->mask_elems > 0 && (st = clmha__workspace(l, &l->ws_m, &l->cap_m,
                                                                    (p->mask_elems + 3) / 4))))) {
        return st;
    }
    return CLMHA_OK;
}

clmha_status clmha_layer_reserve(clmha_layer *l, size_t max_batch, size_t max_query_len,
                                 size_t max_kv_len, size_t max_cache_len, bool with_scores) {
    if (l == NULL) {
        return clmha__fail(NULL, CLMHA_ERR_NULL_ARGUMENT, "clmha_layer_reserve: layer is NULL");
    }
    size_t S = max_kv_len > max_cache_len ? max_kv_len : max_cache_len, rq, rkv, sc, tmp;
    if (max_batch == 0 || max_query_len == 0 || max_kv_len == 0 ||
        !clmha__mul(max_batch, max_query_len, &rq) || !clmha__mul(max_batch, max_kv_len, &rkv) ||
        !clmha__mul(rq, l->heads, &tmp) || !clmha__mul(tmp, S, &sc) ||
        !clmha__mul(rq, l->heads * (l->dk > l->dv ? l->dk : l->dv), &tmp) ||
        !clmha__mul(rkv, l->heads * (l->dk > l->dv ? l->dk : l->dv), &tmp) ||
        !clmha__mul(rq, l->out_features, &tmp)) {
        return clmha__fail(l->ctx, CLMHA_ERR_INVALID_ARGUMENT,
                           "clmha_layer_reserve: sizes must be >= 1 and their products must fit "
                           "(batch %zu, query %zu, key/value %zu, cache %zu)",
                           max_batch, max_query_len, max_kv_len, max_cache_len);
    }
    size_t hk = l->heads * l->dk, hv = l->heads * l->dv;
    clmha_status st;
    /* Projections of more rows than the own GEMM takes go to CLBlast: have it build now. */
    if (l->quant_bits == 0 && l->w16 == 0 &&
        (!clmha__own_gemm_takes(l, rq, hk) || !clmha__own_gemm_takes(l, rq, l->out_features) ||
         !clmha__own_gemm_takes(l, rkv, hk) || !clmha__own_gemm_takes(l, rkv, hv)) &&
        (st = clmha__clblast_warm(l->ctx)) != CLMHA_OK) {
        return st;
    }
    if ((st = clmha__workspace(l, &l->ws_q, &l->cap_q, rq * hk)) ||
        (st = clmha__workspace(l, &l->ws_o, &l->cap_o, rq * hv)) ||
        (st = clmha__workspace(l, &l->ws_y, &l->cap_y, rq * l->out_features)) ||
        (st = clmha__workspace(l, &l->ws_k, &l->cap_k, rkv * hk)) ||
        (st = clmha__workspace(l, &l->ws_v, &l->cap_v, rkv * hv)) ||
        (with_scores && (st = clmha__workspace(l, &l->ws_p, &l->cap_p, sc))) ||
        ((st = clmha__workspace(
              l, &l->ws_part, &l->cap_part,
              clmha__part_floats(l, rq,
                                 max_kv_len > max_cache_len ? max_kv_len : max_cache_len)))) ||
        (l->narrow_cache &&
         ((st = clmha__workspace(l, &l->ws_kh, &l->cap_kh, narrow_floats(l, rkv))) ||
          (st = clmha__workspace(l, &l->ws_vh, &l->cap_vh, narrow_floats(l, rkv)))))) {
        return st;
    }
    if ((st = clmha__quant_reserve(l, rq > rkv ? rq : rkv)) != CLMHA_OK ||
        (st = clmha__policy_reserve(l, rq > rkv ? rq : rkv)) != CLMHA_OK) {
        return st;
    }
    /* Self-attention's one CLBlast product (calls of at most that many rows each way). */
    const size_t rself = rq < rkv ? rq : rkv;
    if (clmha__project_qkv_blas_fits(l, rself) &&
        (st = clmha__project_qkv_blas_reserve(l, rself)) != CLMHA_OK) {
        return st;
    }
    return CLMHA_OK;
}

/* Projection @p proj (0..3: query, key, value, output) of @p m rows of x (from x_off floats)
 * into y: quant.cl's for a quantized layer, gemm16.cl's for a 16-bit dtype policy, else the own
 * GEMM or CLBlast. */
static clmha_status project(clmha_layer *l, int proj, cl_mem x, size_t x_off, size_t m, cl_mem y) {
    static const char *const what[4] = {"query", "key", "value", "output"};
    if (l->quant_bits != 0) {
        return clmha__project_quant(l, proj, x, x_off, m, y, 0);
    }
    if (l->w16 != 0) {
        return clmha__project_w16(l, proj, x, x_off, m, y, 0);
    }
    const size_t k[4] = {l->dq_in, l->dk_in, l->dv_in, l->heads * l->dv};
    const size_t n[4] = {l->heads * l->dk, l->heads * l->dk, l->heads * l->dv, l->out_features};
    return clmha__project(l, what[proj], x, x_off, m, k[proj], l->weights[2 * proj], n[proj],
                          l->weights[2 * proj + 1], y, 0);
}

/* The projections of the call's inputs into the workspace (self-attention's as one launch or
 * one product where the plan says), the gathers of rank > 3 inputs into the canonical layout,
 * and a half cache's new keys and values rounded to half. */
static clmha_status enqueue_inputs(clmha_layer *l, const clmha_call_args *a, const plan *p) {
    const clmha_tensor *key = a->key ? a->key : a->value;
    const size_t hk = l->heads * l->dk, hv = l->heads * l->dv;
    /* A half cache's new keys and values: rounded by gemm_qkv4 where it runs, else to_half;
     * an int8 cache's: quantized by to_int8. */
    const bool qkv_half = p->qkv == QKV_OWN && p->narrow && p->update && !l->int8_cache;
    const size_t x_off = a->query->offset / sizeof(float);
    clmha_status st;
    l->prepared.valid = false; /* the caller's tensors may have changed since the last call */
    if (p->qkv == QKV_OWN) {
        st = clmha__project_qkv(l, a->query->buffer, x_off, p->rows_q, qkv_half ? l->ws_kh : NULL,
                                qkv_half ? l->ws_vh : NULL);
    } else if (p->qkv == QKV_BLAS) {
        st = clmha__project_qkv_blas(l, a->query->buffer, x_off, p->rows_q);
    } else if (p->qkv == QKV_QUANT) {
        st = clmha__project_quant_qkv(l, a->query->buffer, x_off, p->rows_q);
    } else {
        st = project(l, 0, a->query->buffer, x_off, p->rows_q, l->ws_q);
    }
    if (st != CLMHA_OK) {
        return st;
    }
    if (p->project_kv && p->qkv == QKV_APART) {
        if ((st = project(l, 1, key->buffer, key->offset / sizeof(float), p->rows_kv, l->ws_k)) !=
                CLMHA_OK ||
            (st = project(l, 2, a->value->buffer, a->value->offset / sizeof(float), p->rows_kv,
                          l->ws_v)) != CLMHA_OK) {
            return st;
        }
    }
    if (p->general &&
        ((st = enqueue_gather(l, l->ws_q, 0, l->ws_q2, hk, p->rows_q, &p->gq)) != CLMHA_OK ||
         (st = enqueue_gather(l, l->ws_k, 0, l->ws_k2, hk, p->rows_kv, &p->gk)) != CLMHA_OK ||
         (st = enqueue_gather(l, l->ws_v, 0, l->ws_v2, hv, p->rows_kv, &p->gk)) != CLMHA_OK ||
         (a->attention_mask &&
          (st = enqueue_gather(l, a->attention_mask->buffer, a->attention_mask->offset, l->ws_m, 0,
                               p->mask_elems, &p->gm)) != CLMHA_OK))) {
        return st;
    }
    if (p->narrow && p->update && !qkv_half) {
        return enqueue_to_narrow(l, p);
    }
    return CLMHA_OK;
}

/* After the attention: the output gathered back to the query's layout (rank > 3), then either
 * gemm_tail, or the output projection, the activity sums and the commit. */
static clmha_status enqueue_outputs(clmha_layer *l, const clmha_call_args *a, const plan *p) {
    const size_t hk = l->heads * l->dk, hv = l->heads * l->dv;
    clmha_status st;
    if (p->general &&
        (st = enqueue_gather(l, l->ws_o, 0, l->ws_o2, hv, p->rows_q, &p->go)) != CLMHA_OK) {
        return st;
    }
    if (p->tail) {
        return enqueue_tail(l, a, p);
    }
    if ((st = project(l, 3, p->general ? l->ws_o2 : l->ws_o, 0, p->rows_q, l->ws_y)) != CLMHA_OK) {
        return st;
    }
    if (l->act != NULL) {
        /* Keras's activity regularizer sits on each dense projection that ran. */
        size_t batch = a->query->shape[0];
        memset(l->act_valid, 0, sizeof l->act_valid);
        if ((st = clmha__activity_sums(l, 0, l->ws_q, p->rows_q * hk, batch)) != CLMHA_OK ||
            (p->project_kv &&
             ((st = clmha__activity_sums(l, 1, l->ws_k, p->rows_kv * hk, batch)) != CLMHA_OK ||
              (st = clmha__activity_sums(l, 2, l->ws_v, p->rows_kv * hv, batch)) != CLMHA_OK)) ||
            (st = clmha__activity_sums(l, 3, l->ws_y, p->rows_q * l->out_features, batch)) !=
                CLMHA_OK) {
            return st;
        }
    }
    return enqueue_commit(l, a, p);
}

clmha_status clmha_layer_call(clmha_layer *l, const clmha_call_args *a) {
    if (l == NULL || a == NULL) {
        return clmha__fail(l ? l->ctx : NULL, CLMHA_ERR_NULL_ARGUMENT,
                           "clmha_layer_call: %s is NULL", l ? "args" : "layer");
    }
    plan p;
    clmha_status st = clmha__check_alive(l->ctx, "clmha_layer_call");
    if (st != CLMHA_OK) {
        return st;
    }
    l->ctx->n_launched = 0; /* the record of this call's launches starts here */
    st = clmha__plan_call(l, a, &p);
    if (st != CLMHA_OK) {
        return st;
    }
    if ((st = reserve(l, a, &p)) != CLMHA_OK || (st = enqueue_inputs(l, a, &p)) != CLMHA_OK ||
        (st = enqueue_attention(l, a, &p)) != CLMHA_OK) {
        return st;
    }
    if (a->training && l->cfg.dropout > 0.0) {
        l->dropout_calls++;
    }
    return enqueue_outputs(l, a, &p);
}
