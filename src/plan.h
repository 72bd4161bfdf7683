/*
 * plan.h - the plan of one layer call (call_args.c checks the arguments and lays out the shapes,
 * plan.c decides the rest, attention.c carries it out): the canonical shapes and layouts, the
 * attention kernel and its chunks, whether the call ends with gemm_tail, how self-attention's
 * projections run, and the gathers of inputs of rank > 3.
 */
#ifndef CLMHA_PLAN_H
#define CLMHA_PLAN_H

#include "internal.h"

/* A gather: up to eight destination dims with their source strides, in rows. */
typedef struct gather {
    cl_uint nd;
    cl_ulong dims[8], strides[8];
} gather;

/* Everything the enqueue step needs, decided by clmha__plan_call. */
typedef struct plan {
    size_t B, T, S, Sn;     /* canonical batch, query and key lengths; Sn: key/value rows per
                               batch in update mode */
    size_t rows_q, rows_kv; /* rows of the projections */
    bool has_cache, update, project_kv;
    /* The cache is half or int8: the attention's build for it, new keys and values rounded to
     * half or quantized to int8 rows. */
    bool narrow;
    /* The attention kernel (plan_attention), and for the split kernels nch chunks of `chunk`
     * keys per query row (nch 1: no merge). */
    clmha__att kernel;
    int nch, chunk;
    /* The call ends with gemm_tail, which also merges the chunks, tail_rows rows a work-item
     * (1, or the few-rows build's). */
    bool tail;
    size_t tail_rows;
    /* Self-attention's projections: three (QKV_APART), one launch of the own GEMM (QKV_OWN),
     * one CLBlast product over the packed weights (QKV_BLAS) or one launch of an int8 layer's
     * gemm_i8w_qkv (QKV_QUANT). */
    enum { QKV_APART, QKV_OWN, QKV_BLAS, QKV_QUANT } qkv;
    /* Fully masked rows get Keras's fused-path result, the mean of the values
     * (masked_rows_mean after the attention): fully_masked_rows = KERAS, a call Keras would run
     * through ops.dot_product_attention, and a mask, key_lengths or a causal rule that can leave
     * a row no key. */
    bool masked_mean;
    size_t mean_keys; /* keys a masked_rows_mean launch adds */
    size_t index;
    cl_ulong m_sb, m_st, m_ss, m_sh; /* mask strides: batch, query, key, head (0: broadcast) */
    /* rank > 3 */
    bool general;
    gather gq, gk, go, gm;
    size_t mask_elems;
} plan;

/* Checks every argument of a call (shapes, dtypes, contexts, the cache mode, attention_axes,
 * the mask's broadcast, overlaps, sizes) and fills the plan's shapes, cache mode, mask strides
 * and gathers (call_args.c); on failure the message names the argument. */
clmha_status clmha__check_call(clmha_layer *l, const clmha_call_args *a, plan *p);

/* Checks every argument of a call (clmha__check_call) and decides its plan: the attention
 * kernel and its chunks, the tail, and self-attention's projections. Nothing is enqueued. */
clmha_status clmha__plan_call(clmha_layer *l, const clmha_call_args *a, plan *p);

/* The most partials' floats a call of @p rows query rows (B * T) over @p keys keys can need,
 * for clmha_layer_reserve. */
size_t clmha__part_floats(const clmha_layer *l, size_t rows, size_t keys);

#endif
