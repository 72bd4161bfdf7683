/*
 * call_args.c - the checks of a layer call's arguments, before anything is enqueued: shapes,
 * dtypes, contexts, the cache mode, attention_axes, the mask's broadcast, overlaps and sizes,
 * each failure naming the argument and what was expected. It also lays out the call's canonical
 * shapes (plan.h): for inputs of rank > 3 the gathers into (B', T', H, d) (B' the batch and the
 * non-attention axes, T' (S') the query's (key's) attention axes in the given order, in which
 * layout the probabilities already are Keras's).
 */
#include "plan.h"

#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

static clmha_status check_tensor(clmha_context *ctx, const clmha_tensor *t, const char *name,
                                 clmha_dtype dtype) {
    if (t->ctx != ctx) {
        return clmha__fail(ctx, CLMHA_ERR_CONTEXT_MISMATCH,
                           "%s belongs to another clmha context than the layer", name);
    }
    if (t->dtype != dtype) {
        return clmha__fail(ctx, CLMHA_ERR_INVALID_ARGUMENT, "%s has dtype %s; expected %s", name,
                           clmha__dtype_name(t->dtype), clmha__dtype_name(dtype));
    }
    return CLMHA_OK;
}

static clmha_status shape_error(clmha_context *ctx, const char *name, const clmha_tensor *t,
                                const char *expected) {
    char s[256];
    clmha__shape_str(s, sizeof s, t->rank, t->shape);
    return clmha__fail(ctx, CLMHA_ERR_SHAPE_MISMATCH, "%s has shape %s; expected %s", name, s,
                       expected);
}

/* Two regions of the same buffer overlap. */
static bool overlaps(const clmha_tensor *a, const clmha_tensor *b) {
    if (a == NULL || b == NULL || a->buffer != b->buffer) {
        return false;
    }
    size_t ea = a->offset + a->numel * clmha__dtype_size(a->dtype);
    size_t eb = b->offset + b->numel * clmha__dtype_size(b->dtype);
    return a->offset < eb && b->offset < ea;
}

/* The attention axes for inputs of @p rank, as Keras resolves them: None means every axis
 * between batch and features; a negative axis a means a + rank. Fills the attention axes (in
 * the given order) and the other (batch) axes. */
static clmha_status resolve_axes(const clmha_layer *l, int rank, int *attn, int *na, int *batch,
                                 int *nb) {
    bool used[CLMHA_MAX_RANK] = {false};
    *na = 0;
    if (l->cfg.num_attention_axes == 0) {
        for (int a = 1; a <= rank - 2; a++) {
            attn[(*na)++] = a;
            used[a] = true;
        }
    }
    for (int i = 0; i < l->cfg.num_attention_axes; i++) {
        int ax = l->cfg.attention_axes[i];
        int norm = ax < 0 ? ax + rank : ax;
        if (norm < 1 || norm > rank - 2 || used[norm]) {
            return clmha__fail(l->ctx, CLMHA_ERR_INVALID_ARGUMENT,
                               "config.attention_axes[%d] is %d; with rank-%d inputs the "
                               "attention axes are distinct values in 1..%d (or %d..-2)",
                               i, ax, rank, rank - 2, -(rank - 1));
        }
        used[norm] = true;
        attn[(*na)++] = norm;
    }
    *nb = 0;
    for (int a = 1; a <= rank - 2; a++) {
        if (!used[a]) {
            batch[(*nb)++] = a;
        }
    }
    return CLMHA_OK;
}

/* The probabilities' shape for a query of shape q (rank r) and keys of shape k. */
static clmha_status scores_shape(const clmha_layer *l, int r, const size_t *q, const size_t *k,
                                 size_t S, int *rank, size_t *shape) {
    int attn[CLMHA_MAX_RANK], batch[CLMHA_MAX_RANK], na, nb;
    clmha_status st = resolve_axes(l, r, attn, &na, batch, &nb);
    if (st != CLMHA_OK) {
        return st;
    }
    if (2 + nb + 2 * na > CLMHA_MAX_RANK) {
        return clmha__fail(l->ctx, CLMHA_ERR_UNSUPPORTED,
                           "the attention probabilities would have rank %d; at most %d is "
                           "supported",
                           2 + nb + 2 * na, CLMHA_MAX_RANK);
    }
    int n = 0;
    shape[n++] = q[0];
    for (int i = 0; i < nb; i++) {
        shape[n++] = q[batch[i]];
    }
    shape[n++] = l->heads;
    for (int i = 0; i < na; i++) {
        shape[n++] = q[attn[i]];
    }
    for (int i = 0; i < na; i++) {
        shape[n++] = k ? k[attn[i]] : S;
    }
    *rank = n;
    return CLMHA_OK;
}

clmha_status clmha_layer_scores_shape(const clmha_layer *l, const clmha_tensor *query,
                                      const clmha_tensor *key_or_value, const clmha_tensor *cache,
                                      int *rank, size_t shape[CLMHA_MAX_RANK]) {
    if (l == NULL || query == NULL || rank == NULL || shape == NULL ||
        (key_or_value == NULL && cache == NULL)) {
        return clmha__fail(l ? l->ctx : NULL, CLMHA_ERR_NULL_ARGUMENT,
                           "clmha_layer_scores_shape: layer, query, rank, shape and one of "
                           "key_or_value and cache must not be NULL");
    }
    if (cache != NULL) {
        if (query->rank != 3 || cache->rank != 5) {
            return clmha__fail(l->ctx, CLMHA_ERR_SHAPE_MISMATCH,
                               "clmha_layer_scores_shape: a cache needs a rank-3 query and a "
                               "rank-5 cache");
        }
        return scores_shape(l, 3, query->shape, NULL, cache->shape[2], rank, shape);
    }
    if (query->rank < 3 || key_or_value->rank != query->rank) {
        return clmha__fail(l->ctx, CLMHA_ERR_SHAPE_MISMATCH,
                           "clmha_layer_scores_shape: query and key need the same rank >= 3");
    }
    return scores_shape(l, query->rank, query->shape, key_or_value->shape, 0, rank, shape);
}

/* The attention and batch axes of a rank > 3 call (resolve_axes). */
typedef struct axes {
    int attn[CLMHA_MAX_RANK], batch[CLMHA_MAX_RANK], na, nb;
} axes;

/* Rank > 3: no cache, causal mask or key lengths; value (and key) with the query's batch and
 * non-attention dims. */
static clmha_status general_inputs(clmha_layer *l, const clmha_call_args *a, const axes *x) {
    clmha_context *ctx = l->ctx;
    const clmha_tensor *q = a->query, *v = a->value;
    const int r = q->rank;
    char want[256];
    clmha_status st;
    if (a->cache != NULL || a->has_cache_update_index || a->causal || a->key_lengths) {
        return clmha__fail(ctx, CLMHA_ERR_INVALID_ARGUMENT,
                           "query has rank %d; %s needs rank-3 (B, T, dim) inputs%s", r,
                           a->causal        ? "args.causal"
                           : a->key_lengths ? "args.key_lengths"
                                            : "a cache (and cache_update_index)",
                           a->causal || a->key_lengths ? "" : ", as in Keras");
    }
    if (v == NULL) {
        return clmha__fail(ctx, CLMHA_ERR_NULL_ARGUMENT,
                           "args.value is NULL; value is required "
                           "without a cache");
    }
    if ((st = check_tensor(ctx, v, "value", CLMHA_FLOAT32)) != CLMHA_OK) {
        return st;
    }
    bool ok = v->rank == r && v->shape[0] == q->shape[0] && v->shape[r - 1] == l->dv_in;
    for (int i = 0; ok && i < x->nb; i++) {
        ok = v->shape[x->batch[i]] == q->shape[x->batch[i]];
    }
    if (!ok) {
        snprintf(want, sizeof want,
                 "rank %d, the query's batch and non-attention dims, and "
                 "feature dim %zu",
                 r, l->dv_in);
        return shape_error(ctx, "value", v, want);
    }
    if (a->key != NULL) {
        if ((st = check_tensor(ctx, a->key, "key", CLMHA_FLOAT32)) != CLMHA_OK) {
            return st;
        }
        ok = a->key->rank == r && a->key->shape[r - 1] == l->dk_in;
        for (int i = 0; ok && i < r - 1; i++) {
            ok = a->key->shape[i] == v->shape[i];
        }
        if (!ok) {
            snprintf(want, sizeof want, "value's dims with feature dim %zu", l->dk_in);
            return shape_error(ctx, "key", a->key, want);
        }
    } else if (l->dk_in != l->dv_in) {
        return clmha__fail(ctx, CLMHA_ERR_NULL_ARGUMENT,
                           "args.key is NULL, so key defaults to value, but the layer was built "
                           "for key dim %zu and value dim %zu",
                           l->dk_in, l->dv_in);
    }
    return CLMHA_OK;
}

/* Rank > 3: the canonical dims (B, batch axes, attention axes) and the gathers of the query,
 * key/value and output rows. */
static void general_layout(const clmha_call_args *a, const axes *x, plan *p) {
    const clmha_tensor *q = a->query, *v = a->value;
    const int r = q->rank, na = x->na, nb = x->nb;
    const int *attn = x->attn, *batch = x->batch;
    size_t qrs[CLMHA_MAX_RANK], vrs[CLMHA_MAX_RANK];
    qrs[r - 2] = vrs[r - 2] = 1;
    for (int i = r - 3; i >= 0; i--) {
        qrs[i] = qrs[i + 1] * q->shape[i + 1];
        vrs[i] = vrs[i + 1] * v->shape[i + 1];
    }
    int order[CLMHA_MAX_RANK], n = 0;
    order[n++] = 0;
    for (int i = 0; i < nb; i++) {
        order[n++] = batch[i];
    }
    for (int i = 0; i < na; i++) {
        order[n++] = attn[i];
    }
    p->B = q->shape[0];
    p->T = p->S = 1;
    for (int i = 0; i < nb; i++) {
        p->B *= q->shape[batch[i]];
    }
    for (int i = 0; i < na; i++) {
        p->T *= q->shape[attn[i]];
        p->S *= v->shape[attn[i]];
    }
    p->Sn = p->S;
    p->gq.nd = p->gk.nd = p->go.nd = (cl_uint)n;
    size_t cstride[CLMHA_MAX_RANK]; /* canonical row stride of each input axis */
    size_t acc = 1;
    for (int i = n - 1; i >= 0; i--) {
        p->gq.dims[i] = q->shape[order[i]];
        p->gq.strides[i] = qrs[order[i]];
        p->gk.dims[i] = v->shape[order[i]];
        p->gk.strides[i] = vrs[order[i]];
        cstride[order[i]] = acc;
        acc *= q->shape[order[i]];
    }
    for (int i = 0; i < r - 1; i++) { /* back to the query's own axis order */
        p->go.dims[i] = q->shape[i];
        p->go.strides[i] = cstride[i];
    }
    p->rows_q = p->B * p->T;
    p->rows_kv = p->B * p->S;
}

/* Rank > 3: the mask, broadcast (numpy rules, aligned right) to (B, batch..., q attn...,
 * k attn...), gathered into (B, T, S). */
static clmha_status general_mask(clmha_layer *l, const clmha_call_args *a, const axes *x, plan *p) {
    clmha_context *ctx = l->ctx;
    const clmha_tensor *q = a->query, *v = a->value, *m = a->attention_mask;
    const int na = x->na, nb = x->nb;
    const int *attn = x->attn, *batch = x->batch;
    char want[256];
    clmha_status st;
    if (m == NULL) {
        return CLMHA_OK;
    }
    if ((st = check_tensor(ctx, m, "attention_mask", CLMHA_UINT8)) != CLMHA_OK) {
        return st;
    }
    size_t full[2 * CLMHA_MAX_RANK];
    int nf = 0;
    full[nf++] = q->shape[0];
    for (int i = 0; i < nb; i++) {
        full[nf++] = q->shape[batch[i]];
    }
    for (int i = 0; i < na; i++) {
        full[nf++] = q->shape[attn[i]];
    }
    for (int i = 0; i < na; i++) {
        full[nf++] = v->shape[attn[i]];
    }
    char fs[128];
    clmha__shape_str(fs, sizeof fs, nf, full);
    snprintf(want, sizeof want,
             "broadcastable to %s = (B, *non-attention dims, *query "
             "attention dims, *key attention dims)",
             fs);
    if (nf > 8 || m->rank < 2 * na || m->rank > nf) {
        return shape_error(ctx, "attention_mask", m, want);
    }
    size_t mstride = 1;
    for (int i = nf - 1, j = m->rank - 1; i >= 0; i--, j--) {
        size_t d = j >= 0 ? m->shape[j] : 1;
        if (d != 1 && d != full[i]) {
            return shape_error(ctx, "attention_mask", m, want);
        }
        p->gm.dims[i] = full[i];
        p->gm.strides[i] = d == 1 ? 0 : mstride;
        mstride *= d;
    }
    p->gm.nd = (cl_uint)nf;
    p->mask_elems = p->B * p->T * p->S;
    p->m_ss = 1;
    p->m_st = p->S;
    p->m_sb = p->T * p->S;
    return CLMHA_OK;
}

/* Rank > 3: the output has the query's dims with the feature dim replaced by output_shape, the
 * scores Keras's shape for the attention axes. */
static clmha_status general_outputs(clmha_layer *l, const clmha_call_args *a) {
    clmha_context *ctx = l->ctx;
    const clmha_tensor *q = a->query, *v = a->value;
    const int r = q->rank;
    char want[256];
    clmha_status st;
    if ((st = check_tensor(ctx, a->output, "output", CLMHA_FLOAT32)) != CLMHA_OK) {
        return st;
    }
    bool ok = a->output->rank == r - 1 + l->out_rank;
    for (int i = 0; ok && i < r - 1; i++) {
        ok = a->output->shape[i] == q->shape[i];
    }
    for (int i = 0; ok && i < l->out_rank; i++) {
        ok = a->output->shape[r - 1 + i] == l->out_shape[i];
    }
    if (!ok) {
        return shape_error(ctx, "output", a->output,
                           "the query's dims with its feature dim replaced by output_shape");
    }
    if (a->attention_scores != NULL) {
        int sr;
        size_t ss[CLMHA_MAX_RANK];
        if ((st = check_tensor(ctx, a->attention_scores, "attention_scores", CLMHA_FLOAT32)) !=
                CLMHA_OK ||
            (st = scores_shape(l, r, q->shape, v->shape, 0, &sr, ss)) != CLMHA_OK) {
            return st;
        }
        ok = a->attention_scores->rank == sr;
        for (int i = 0; ok && i < sr; i++) {
            ok = a->attention_scores->shape[i] == ss[i];
        }
        if (!ok) {
            clmha__shape_str(want, sizeof want, sr, ss);
            return shape_error(ctx, "attention_scores", a->attention_scores, want);
        }
    }
    return CLMHA_OK;
}

/* Rank > 3: value/key shapes, the canonical sizes and the gathers. */
static clmha_status check_general(clmha_layer *l, const clmha_call_args *a, plan *p) {
    axes x;
    clmha_status st = resolve_axes(l, a->query->rank, x.attn, &x.na, x.batch, &x.nb);
    if (st != CLMHA_OK || (st = general_inputs(l, a, &x)) != CLMHA_OK) {
        return st;
    }
    general_layout(a, &x, p);
    if ((st = general_mask(l, a, &x, p)) != CLMHA_OK || (st = general_outputs(l, a)) != CLMHA_OK) {
        return st;
    }
    p->general = true;
    p->project_kv = true;
    return CLMHA_OK;
}

/* Rank 3: the cache (B, 2, S, H, dk), whose length is S. */
static clmha_status rank3_cache(clmha_layer *l, const clmha_call_args *a, plan *p) {
    clmha_context *ctx = l->ctx;
    clmha_status st;
    char want[256];
    if (a->has_cache_update_index && !p->has_cache) {
        return clmha__fail(ctx, CLMHA_ERR_INVALID_ARGUMENT,
                           "cache_update_index is set but cache is NULL; an update index needs a "
                           "cache");
    }
    if (p->has_cache) {
        if (a->cache->ctx == ctx && a->cache->dtype != l->cfg.cache_dtype) {
            return clmha__fail(ctx, CLMHA_ERR_INVALID_ARGUMENT,
                               "cache has dtype %s; this layer was created with cache_dtype %s",
                               clmha__dtype_name(a->cache->dtype),
                               clmha__dtype_name(l->cfg.cache_dtype));
        }
        if ((st = check_tensor(ctx, a->cache, "cache", l->cfg.cache_dtype)) != CLMHA_OK) {
            return st;
        }
        if (l->dk != l->dv) {
            return clmha__fail(ctx, CLMHA_ERR_INVALID_ARGUMENT,
                               "a cache needs key_dim == value_dim; the layer has key_dim %zu "
                               "and value_dim %zu",
                               l->dk, l->dv);
        }
        snprintf(want, sizeof want, "(%zu, 2, S, %zu, %zu) = (B, 2, S, num_heads, key_dim%s)", p->B,
                 l->heads, l->kv_row, l->int8_cache ? " + 4" : "");
        const size_t *c = a->cache->shape;
        if (a->cache->rank != 5 || c[0] != p->B || c[1] != 2 || c[3] != l->heads ||
            c[4] != l->kv_row) {
            return shape_error(ctx, "cache", a->cache, want);
        }
        /* int8 rows are read four bytes at a time, their scales as floats */
        if (l->int8_cache && a->cache->offset % 4 != 0) {
            return clmha__fail(ctx, CLMHA_ERR_INVALID_ARGUMENT,
                               "cache starts %zu bytes into its buffer; an int8 cache must start "
                               "at a multiple of 4 bytes",
                               a->cache->offset);
        }
        p->S = c[2];
    }
    return CLMHA_OK;
}

/* Rank 3: value (B, S*, Dv) and key (B, S*, Dk), unless the cache is static, and where they
 * update the cache the index they go to. */
static clmha_status rank3_inputs(clmha_layer *l, const clmha_call_args *a, plan *p) {
    clmha_context *ctx = l->ctx;
    clmha_status st;
    char want[256];
    if (p->project_kv) {
        if (a->value == NULL) {
            return clmha__fail(ctx, CLMHA_ERR_NULL_ARGUMENT,
                               "args.value is NULL; value is required %s",
                               p->update ? "to update the cache" : "without a cache");
        }
        if ((st = check_tensor(ctx, a->value, "value", CLMHA_FLOAT32)) != CLMHA_OK) {
            return st;
        }
        snprintf(want, sizeof want, "(%zu, S, %zu) = (B, S, value dim the layer was built for)",
                 p->B, l->dv_in);
        if (a->value->rank != 3 || a->value->shape[0] != p->B || a->value->shape[2] != l->dv_in) {
            return shape_error(ctx, "value", a->value, want);
        }
        p->Sn = a->value->shape[1];
        if (a->key != NULL) {
            if ((st = check_tensor(ctx, a->key, "key", CLMHA_FLOAT32)) != CLMHA_OK) {
                return st;
            }
            snprintf(want, sizeof want,
                     "(%zu, %zu, %zu): value's batch and length, the key dim "
                     "the layer was built for",
                     p->B, p->Sn, l->dk_in);
            if (a->key->rank != 3 || a->key->shape[0] != p->B || a->key->shape[1] != p->Sn ||
                a->key->shape[2] != l->dk_in) {
                return shape_error(ctx, "key", a->key, want);
            }
        } else if (l->dk_in != l->dv_in) {
            return clmha__fail(ctx, CLMHA_ERR_NULL_ARGUMENT,
                               "args.key is NULL, so key defaults to value, but the layer was "
                               "built for key dim %zu and value dim %zu",
                               l->dk_in, l->dv_in);
        }
        if (!p->has_cache) {
            p->S = p->Sn;
        }
    }
    if (p->update) {
        int64_t i = a->cache_update_index;
        if (i < 0 || (uint64_t)i > p->S || p->Sn > p->S - (size_t)i) {
            return clmha__fail(ctx, CLMHA_ERR_OUT_OF_RANGE,
                               "cache_update_index %lld with %zu new positions does not fit a "
                               "cache of length %zu; expected 0 <= index <= %zu",
                               (long long)i, p->Sn, p->S, p->Sn <= p->S ? p->S - p->Sn : (size_t)0);
        }
        p->index = (size_t)i;
    }
    return CLMHA_OK;
}

/* Rank 3: attention_mask, rank 2 (T, S), 3 (B, T, S) or 4 (B, H, T, S), each dim equal or 1,
 * as Keras takes them. */
static clmha_status rank3_mask(clmha_layer *l, const clmha_call_args *a, plan *p) {
    clmha_context *ctx = l->ctx;
    const clmha_tensor *m = a->attention_mask;
    if (m == NULL) {
        return CLMHA_OK;
    }
    clmha_status st = check_tensor(ctx, m, "attention_mask", CLMHA_UINT8);
    if (st != CLMHA_OK) {
        return st;
    }
    char want[256];
    snprintf(want, sizeof want,
             "broadcastable to (%zu, %zu, %zu, %zu) = (B, num_heads, T, S): rank 2 (T, S), 3 "
             "(B, T, S) or 4 (B, num_heads, T, S), each dim equal or 1",
             p->B, l->heads, p->T, p->S);
    /* (B, H, T, S), a missing dim 1: rank 2 is (T, S), rank 3 (B, T, S). */
    size_t d[4] = {1, 1, 1, 1};
    if (m->rank == 2) {
        d[2] = m->shape[0];
        d[3] = m->shape[1];
    } else if (m->rank == 3) {
        d[0] = m->shape[0];
        d[2] = m->shape[1];
        d[3] = m->shape[2];
    } else if (m->rank == 4) {
        memcpy(d, m->shape, sizeof d);
    } else {
        return shape_error(ctx, "attention_mask", m, want);
    }
    const size_t full[4] = {p->B, l->heads, p->T, p->S};
    for (int i = 0; i < 4; i++) {
        if (d[i] != 1 && d[i] != full[i]) {
            return shape_error(ctx, "attention_mask", m, want);
        }
    }
    p->m_ss = d[3] == 1 ? 0 : 1;
    p->m_st = d[2] == 1 ? 0 : d[3];
    p->m_sh = d[1] == 1 ? 0 : d[2] * d[3];
    p->m_sb = d[0] == 1 ? 0 : d[1] * d[2] * d[3];
    return CLMHA_OK;
}

/* Rank 3: output (B, T, *output_shape), attention_scores (B, H, T, S), key_lengths (B,). */
static clmha_status rank3_outputs(clmha_layer *l, const clmha_call_args *a, const plan *p) {
    clmha_context *ctx = l->ctx;
    clmha_status st;
    char want[256];
    if ((st = check_tensor(ctx, a->output, "output", CLMHA_FLOAT32)) != CLMHA_OK) {
        return st;
    }
    bool ok = a->output->rank == 2 + l->out_rank && a->output->shape[0] == p->B &&
              a->output->shape[1] == p->T;
    for (int i = 0; ok && i < l->out_rank; i++) {
        ok = a->output->shape[2 + i] == l->out_shape[i];
    }
    if (!ok) {
        size_t full[CLMHA_MAX_RANK + 2] = {p->B, p->T};
        memcpy(full + 2, l->out_shape, (size_t)l->out_rank * sizeof(size_t));
        clmha__shape_str(want, sizeof want, 2 + l->out_rank, full);
        strncat(want, " = (B, T, *output_shape)", sizeof want - strlen(want) - 1);
        return shape_error(ctx, "output", a->output, want);
    }
    if (a->attention_scores != NULL) {
        if ((st = check_tensor(ctx, a->attention_scores, "attention_scores", CLMHA_FLOAT32)) !=
            CLMHA_OK) {
            return st;
        }
        const size_t *s = a->attention_scores->shape;
        snprintf(want, sizeof want, "(%zu, %zu, %zu, %zu) = (B, num_heads, T, S)", p->B, l->heads,
                 p->T, p->S);
        if (a->attention_scores->rank != 4 || s[0] != p->B || s[1] != l->heads || s[2] != p->T ||
            s[3] != p->S) {
            return shape_error(ctx, "attention_scores", a->attention_scores, want);
        }
    }
    /* key_lengths (B,) int32 */
    if (a->key_lengths != NULL) {
        if ((st = check_tensor(ctx, a->key_lengths, "key_lengths", CLMHA_INT32)) != CLMHA_OK) {
            return st;
        }
        if (a->key_lengths->rank != 1 || a->key_lengths->shape[0] != p->B) {
            snprintf(want, sizeof want, "(%zu,) = (B,)", p->B);
            return shape_error(ctx, "key_lengths", a->key_lengths, want);
        }
    }
    return CLMHA_OK;
}

/* Rank 3: the three cache modes. */
static clmha_status check_rank3(clmha_layer *l, const clmha_call_args *a, plan *p) {
    axes x;
    p->B = a->query->shape[0];
    p->T = a->query->shape[1];
    clmha_status st = resolve_axes(l, 3, x.attn, &x.na, x.batch, &x.nb);
    if (st != CLMHA_OK || (st = rank3_cache(l, a, p)) != CLMHA_OK ||
        (st = rank3_inputs(l, a, p)) != CLMHA_OK || (st = rank3_mask(l, a, p)) != CLMHA_OK ||
        (st = rank3_outputs(l, a, p)) != CLMHA_OK) {
        return st;
    }
    p->rows_q = p->B * p->T;
    p->rows_kv = p->B * p->Sn;
    return CLMHA_OK;
}

clmha_status clmha__check_call(clmha_layer *l, const clmha_call_args *a, plan *p) {
    clmha_context *ctx = l->ctx;
    clmha_status st;
    memset(p, 0, sizeof *p);
    if (a->query == NULL || a->output == NULL) {
        return clmha__fail(ctx, CLMHA_ERR_NULL_ARGUMENT, "clmha_layer_call: args.%s is NULL",
                           a->query == NULL ? "query" : "output");
    }
    p->has_cache = a->cache != NULL;
    p->update = p->has_cache && a->has_cache_update_index;
    p->project_kv = !p->has_cache || p->update;
    p->narrow = p->has_cache && l->narrow_cache;
    if ((st = check_tensor(ctx, a->query, "query", CLMHA_FLOAT32)) != CLMHA_OK) {
        return st;
    }
    if (a->query->rank < 3 || a->query->shape[a->query->rank - 1] != l->dq_in) {
        char want[128];
        snprintf(want, sizeof want,
                 "(B, T, %zu): rank 3 (or more) with the query dim the layer "
                 "was built for",
                 l->dq_in);
        return shape_error(ctx, "query", a->query, want);
    }
    st = a->query->rank == 3 ? check_rank3(l, a, p) : check_general(l, a, p);
    if (st != CLMHA_OK) {
        return st;
    }

    /* Outputs must not overlap any input (or each other). */
    const clmha_tensor *ins[] = {a->query,
                                 p->project_kv ? a->value : NULL,
                                 p->project_kv ? a->key : NULL,
                                 a->attention_mask,
                                 a->cache,
                                 a->key_lengths};
    const char *in_names[] = {"query", "value", "key", "attention_mask", "cache", "key_lengths"};
    const clmha_tensor *outs[] = {a->output, a->attention_scores};
    const char *out_names[] = {"output", "attention_scores"};
    for (int o = 0; o < 2; o++) {
        for (int i = 0; i < 6; i++) {
            if (overlaps(outs[o], ins[i])) {
                return clmha__fail(ctx, CLMHA_ERR_INVALID_ARGUMENT,
                                   "%s overlaps %s in the same buffer; outputs need their own "
                                   "memory",
                                   out_names[o], in_names[i]);
            }
        }
    }
    if (overlaps(a->output, a->attention_scores)) {
        return clmha__fail(ctx, CLMHA_ERR_INVALID_ARGUMENT,
                           "output and attention_scores overlap in the same buffer");
    }

    /* Sizes: kernel arguments are int for T, S, H; every product must fit. */
    size_t hd = l->heads * (l->dk > l->dv ? l->dk : l->dv), tmp;
    if (p->T > INT_MAX || p->S > INT_MAX || l->heads > INT_MAX ||
        !clmha__mul(p->rows_q, hd, &tmp) || !clmha__mul(p->rows_kv, hd, &tmp) ||
        !clmha__mul(p->B * l->heads, p->T, &tmp) || !clmha__mul(tmp, p->S, &tmp)) {
        return clmha__fail(ctx, CLMHA_ERR_OUT_OF_RANGE,
                           "the call's sizes (B %zu, T %zu, S %zu, heads %zu) overflow the "
                           "library's index range",
                           p->B, p->T, p->S, l->heads);
    }
    return CLMHA_OK;
}
