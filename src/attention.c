/*
 * attention.c - the layer call: validation of every argument (shapes, dtypes, contexts, the
 * cache mode, the mask's broadcast, sizes) before anything is enqueued, then the enqueued
 * pipeline: query projection, key/value projections, cache splice, masked attention, output
 * projection. No host synchronisation inside; the workspace grows only when shapes grow.
 */
#include "internal.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

void clmha_call_args_init(clmha_call_args *args) {
    if (args != NULL) {
        memset(args, 0, sizeof *args);
    }
}

/* Everything the enqueue step needs, computed by validation. */
typedef struct plan {
    size_t B, T, S, Sn; /* Sn: rows of key/value input (S* in update mode) */
    bool has_cache, update, project_kv;
    size_t index;
    cl_ulong m_sb, m_st, m_ss;
} plan;

static clmha_status check_tensor(clmha_context *ctx, const clmha_tensor *t, const char *name,
                                 clmha_dtype dtype) {
    if (t->ctx != ctx) {
        return clmha__fail(ctx, CLMHA_ERR_CONTEXT_MISMATCH,
                           "%s belongs to another clmha context than the layer", name);
    }
    if (t->dtype != dtype) {
        return clmha__fail(ctx, CLMHA_ERR_INVALID_ARGUMENT, "%s has dtype %s; expected %s", name,
                           t->dtype == CLMHA_UINT8 ? "uint8" : "float32",
                           dtype == CLMHA_UINT8 ? "uint8" : "float32");
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
    size_t ea = a->offset + a->numel * (a->dtype == CLMHA_UINT8 ? 1 : 4);
    size_t eb = b->offset + b->numel * (b->dtype == CLMHA_UINT8 ? 1 : 4);
    return a->offset < eb && b->offset < ea;
}

static clmha_status validate(clmha_layer *l, const clmha_call_args *a, plan *p) {
    clmha_context *ctx = l->ctx;
    clmha_status st;
    char want[256];
    memset(p, 0, sizeof *p);
    if (a->query == NULL || a->output == NULL) {
        return clmha__fail(ctx, CLMHA_ERR_NULL_ARGUMENT, "clmha_layer_call: args.%s is NULL",
                           a->query == NULL ? "query" : "output");
    }
    p->has_cache = a->cache != NULL;
    p->update = p->has_cache && a->has_cache_update_index;
    p->project_kv = !p->has_cache || p->update;

    /* query (B, T, Dq) */
    if ((st = check_tensor(ctx, a->query, "query", CLMHA_FLOAT32)) != CLMHA_OK) {
        return st;
    }
    if (a->query->rank > 3) {
        return clmha__fail(ctx, CLMHA_ERR_UNSUPPORTED,
                           "query has rank %d; inputs of rank > 3 (attention_axes over several "
                           "axes) are not supported yet: use rank-3 (B, T, dim) inputs",
                           a->query->rank);
    }
    snprintf(want, sizeof want, "(B, T, %zu): rank 3 with the query dim the layer was built for",
             l->dq_in);
    if (a->query->rank != 3 || a->query->shape[2] != l->dq_in) {
        return shape_error(ctx, "query", a->query, want);
    }
    p->B = a->query->shape[0];
    p->T = a->query->shape[1];

    /* attention_axes: with rank-3 inputs only the sequence axis (1, or -2) exists. */
    for (int i = 0; i < l->cfg.num_attention_axes; i++) {
        int ax = l->cfg.attention_axes[i];
        int norm = ax < 0 ? ax + 3 : ax;
        if (norm != 1) {
            return clmha__fail(ctx, CLMHA_ERR_INVALID_ARGUMENT,
                               "config.attention_axes[%d] is %d; with rank-3 inputs the only "
                               "attention axis is 1 (or -2)",
                               i, ax);
        }
    }
    if (a->training && l->cfg.dropout > 0.0) {
        return clmha__fail(ctx, CLMHA_ERR_UNSUPPORTED,
                           "training with dropout %g is not implemented yet; call with "
                           "training = false (inference) or build the layer with dropout 0",
                           l->cfg.dropout);
    }
    if (a->has_cache_update_index && !p->has_cache) {
        return clmha__fail(ctx, CLMHA_ERR_INVALID_ARGUMENT,
                           "cache_update_index is set but cache is NULL; an update index needs a "
                           "cache");
    }

    /* cache (B, 2, S, H, dk) */
    if (p->has_cache) {
        if ((st = check_tensor(ctx, a->cache, "cache", CLMHA_FLOAT32)) != CLMHA_OK) {
            return st;
        }
        if (l->dk != l->dv) {
            return clmha__fail(ctx, CLMHA_ERR_INVALID_ARGUMENT,
                               "a cache needs key_dim == value_dim; the layer has key_dim %zu "
                               "and value_dim %zu",
                               l->dk, l->dv);
        }
        snprintf(want, sizeof want, "(%zu, 2, S, %zu, %zu) = (B, 2, S, num_heads, key_dim)", p->B,
                 l->heads, l->dk);
        const size_t *c = a->cache->shape;
        if (a->cache->rank != 5 || c[0] != p->B || c[1] != 2 || c[3] != l->heads || c[4] != l->dk) {
            return shape_error(ctx, "cache", a->cache, want);
        }
        p->S = c[2];
    }

    /* value (B, S*, Dv) and key (B, S*, Dk), unless the cache is static. */
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

    /* attention_mask: rank 2 (T, S) or 3 (B, T, S), each dim equal or 1. */
    if (a->attention_mask != NULL) {
        const clmha_tensor *m = a->attention_mask;
        if ((st = check_tensor(ctx, m, "attention_mask", CLMHA_UINT8)) != CLMHA_OK) {
            return st;
        }
        snprintf(want, sizeof want,
                 "broadcastable to (%zu, %zu, %zu) = (B, T, S): rank 2 or 3, "
                 "each dim equal or 1",
                 p->B, p->T, p->S);
        size_t d[3] = {1, 1, 1};
        if (m->rank == 2) {
            d[1] = m->shape[0];
            d[2] = m->shape[1];
        } else if (m->rank == 3) {
            memcpy(d, m->shape, sizeof d);
        } else {
            return shape_error(ctx, "attention_mask", m, want);
        }
        size_t full[3] = {p->B, p->T, p->S};
        for (int i = 0; i < 3; i++) {
            if (d[i] != 1 && d[i] != full[i]) {
                return shape_error(ctx, "attention_mask", m, want);
            }
        }
        p->m_ss = d[2] == 1 ? 0 : 1;
        p->m_st = d[1] == 1 ? 0 : d[2];
        p->m_sb = d[0] == 1 ? 0 : d[1] * d[2];
    }

    /* output (B, T, *output_shape) */
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

    /* Outputs must not overlap any input (or each other). */
    const clmha_tensor *ins[] = {a->query, p->project_kv ? a->value : NULL,
                                 p->project_kv ? a->key : NULL, a->attention_mask, a->cache};
    const char *in_names[] = {"query", "value", "key", "attention_mask", "cache"};
    const clmha_tensor *outs[] = {a->output, a->attention_scores};
    const char *out_names[] = {"output", "attention_scores"};
    for (int o = 0; o < 2; o++) {
        for (int i = 0; i < 5; i++) {
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
    size_t rows_q, rows_kv, tmp;
    if (p->T > INT_MAX || p->S > INT_MAX || l->heads > INT_MAX || p->B > INT_MAX ||
        !clmha__mul(p->B, p->T, &rows_q) || !clmha__mul(p->B, p->Sn, &rows_kv) ||
        !clmha__mul(rows_q, l->heads * (l->dk > l->dv ? l->dk : l->dv), &tmp) ||
        !clmha__mul(rows_kv, l->heads * (l->dk > l->dv ? l->dk : l->dv), &tmp) ||
        !clmha__mul(p->B * l->heads, p->T, &tmp) || !clmha__mul(tmp, p->S, &tmp)) {
        return clmha__fail(ctx, CLMHA_ERR_OUT_OF_RANGE,
                           "the call's sizes (B %zu, T %zu, S %zu, heads %zu) overflow the "
                           "library's index range",
                           p->B, p->T, p->S, l->heads);
    }
    return CLMHA_OK;
}

static clmha_status enqueue_splice(clmha_layer *l, const clmha_call_args *a, const plan *p) {
    clmha_context *ctx = l->ctx;
    cl_kernel k = l->k_splice;
    cl_ulong c_off = a->cache->offset / sizeof(float), B = p->B, Sn = p->Sn, S = p->S;
    cl_ulong HD = l->heads * l->dk, idx = p->index;
    cl_mem cache = a->cache->buffer;
    const clmha__karg args[] = {CLMHA__ARG(l->ws_k), CLMHA__ARG(l->ws_v), CLMHA__ARG(cache),
                                CLMHA__ARG(c_off),   CLMHA__ARG(B),       CLMHA__ARG(Sn),
                                CLMHA__ARG(S),       CLMHA__ARG(HD),      CLMHA__ARG(idx)};
    clmha_status st = clmha__set_args(ctx, k, "cache_splice", args, 9);
    if (st != CLMHA_OK) {
        return st;
    }
    size_t total = 2 * p->B * p->Sn * l->heads * l->dk;
    return clmha__launch(ctx, k, "cache_splice", (total + l->wg_splice - 1) / l->wg_splice,
                         l->wg_splice);
}

static clmha_status enqueue_attention(clmha_layer *l, const clmha_call_args *a, const plan *p) {
    clmha_context *ctx = l->ctx;
    cl_kernel k = l->k_attention;
    const char *n = "attention_rows";
    cl_mem kb, vb;
    cl_ulong k_off, v_off, k_bs, v_bs;
    if (p->has_cache) {
        kb = vb = a->cache->buffer;
        k_off = a->cache->offset / sizeof(float);
        v_off = k_off + p->S * l->heads * l->dk;
        k_bs = v_bs = 2 * p->S * l->heads * l->dk;
    } else {
        kb = l->ws_k;
        vb = l->ws_v;
        k_off = v_off = 0;
        k_bs = p->S * l->heads * l->dk;
        v_bs = p->S * l->heads * l->dv;
    }
    cl_ulong q_off = 0;
    cl_mem mask = a->attention_mask ? a->attention_mask->buffer : NULL;
    cl_ulong m_off = a->attention_mask ? a->attention_mask->offset : 0;
    cl_int has_mask = a->attention_mask != NULL;
    cl_mem probs = a->attention_scores ? a->attention_scores->buffer : NULL;
    cl_ulong p_off = a->attention_scores ? a->attention_scores->offset / sizeof(float) : 0;
    cl_int has_p = a->attention_scores != NULL;
    cl_int T = (cl_int)p->T, S = (cl_int)p->S, H = (cl_int)l->heads;
    /* Keras scales the query by 1/sqrt(key_dim) before the dot product (in float32). */
    cl_float scale = (cl_float)(1.0 / sqrt((double)l->dk));
    cl_ulong m_sb = p->m_sb, m_st = p->m_st, m_ss = p->m_ss;
    const clmha__karg args[] = {
        CLMHA__ARG(l->ws_q), CLMHA__ARG(q_off),    CLMHA__ARG(kb),      CLMHA__ARG(k_off),
        CLMHA__ARG(k_bs),    CLMHA__ARG(vb),       CLMHA__ARG(v_off),   CLMHA__ARG(v_bs),
        CLMHA__ARG(mask),    CLMHA__ARG(m_off),    CLMHA__ARG(m_sb),    CLMHA__ARG(m_st),
        CLMHA__ARG(m_ss),    CLMHA__ARG(has_mask), CLMHA__ARG(l->ws_o), CLMHA__ARG(probs),
        CLMHA__ARG(p_off),   CLMHA__ARG(has_p),    CLMHA__ARG(T),       CLMHA__ARG(S),
        CLMHA__ARG(H),       CLMHA__ARG(scale)};
    clmha_status st = clmha__set_args(ctx, k, n, args, sizeof args / sizeof args[0]);
    if (st != CLMHA_OK) {
        return st;
    }
    return clmha__launch(ctx, k, n, p->B * l->heads * p->T, l->wg_attention);
}

clmha_status clmha_layer_call(clmha_layer *l, const clmha_call_args *a) {
    if (l == NULL || a == NULL) {
        return clmha__fail(l ? l->ctx : NULL, CLMHA_ERR_NULL_ARGUMENT,
                           "clmha_layer_call: %s is NULL", l ? "args" : "layer");
    }
    plan p;
    clmha_status st = validate(l, a, &p);
    if (st != CLMHA_OK) {
        return st;
    }
    size_t rows_q = p.B * p.T, rows_kv = p.B * p.Sn;
    /* Workspace first: an allocation failure must leave everything untouched. */
    if ((st = clmha__workspace(l, &l->ws_q, &l->cap_q, rows_q * l->heads * l->dk)) ||
        (st = clmha__workspace(l, &l->ws_o, &l->cap_o, rows_q * l->heads * l->dv))) {
        return st;
    }
    if (p.project_kv &&
        ((st = clmha__workspace(l, &l->ws_k, &l->cap_k, rows_kv * l->heads * l->dk)) ||
         (st = clmha__workspace(l, &l->ws_v, &l->cap_v, rows_kv * l->heads * l->dv)))) {
        return st;
    }
    cl_mem *w = l->weights;
    const clmha_tensor *key = a->key ? a->key : a->value;
    if ((st = clmha__project(l, "query", a->query->buffer, a->query->offset / sizeof(float), rows_q,
                             l->dq_in, w[CLMHA_WEIGHT_QUERY_KERNEL], l->heads * l->dk,
                             w[CLMHA_WEIGHT_QUERY_BIAS], l->ws_q, 0)) != CLMHA_OK) {
        return st;
    }
    if (p.project_kv) {
        if ((st = clmha__project(l, "key", key->buffer, key->offset / sizeof(float), rows_kv,
                                 l->dk_in, w[CLMHA_WEIGHT_KEY_KERNEL], l->heads * l->dk,
                                 w[CLMHA_WEIGHT_KEY_BIAS], l->ws_k, 0)) != CLMHA_OK ||
            (st = clmha__project(l, "value", a->value->buffer, a->value->offset / sizeof(float),
                                 rows_kv, l->dv_in, w[CLMHA_WEIGHT_VALUE_KERNEL], l->heads * l->dv,
                                 w[CLMHA_WEIGHT_VALUE_BIAS], l->ws_v, 0)) != CLMHA_OK) {
            return st;
        }
    }
    if (p.update && (st = enqueue_splice(l, a, &p)) != CLMHA_OK) {
        return st;
    }
    if ((st = enqueue_attention(l, a, &p)) != CLMHA_OK) {
        return st;
    }
    return clmha__project(l, "output", l->ws_o, 0, rows_q, l->heads * l->dv,
                          w[CLMHA_WEIGHT_OUTPUT_KERNEL], l->out_features,
                          w[CLMHA_WEIGHT_OUTPUT_BIAS], a->output->buffer,
                          a->output->offset / sizeof(float));
}
