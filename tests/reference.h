/*
 * reference.h - a float64 host reference of Keras's CachedMultiHeadAttention forward pass,
 * written from SPEC.md alone (no library code), for comparing every device result.
 */
#ifndef CLMHA_TEST_REFERENCE_H
#define CLMHA_TEST_REFERENCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct ref_weights {
    size_t H, dk, dv;  /* heads, key_dim, value_dim */
    size_t Dq, Dk, Dv; /* input feature dims */
    size_t N;          /* prod(output_shape) */
    bool use_bias;
    const float *wq, *bq; /* (Dq, H, dk), (H, dk) */
    const float *wk, *bk; /* (Dk, H, dk), (H, dk) */
    const float *wv, *bv; /* (Dv, H, dv), (H, dv) */
    const float *wo, *bo; /* (H, dv, N), (N) */
} ref_weights;

typedef struct ref_call {
    size_t B, T;
    const float *query;       /* (B, T, Dq) */
    const float *key, *value; /* (B, Sn, Dk|Dv); key NULL = value; unused in static mode */
    size_t Sn;
    const uint8_t *mask; /* NULL or shape mask_dims broadcast to (B, T, S) */
    size_t mask_dims[3]; /* (B|1, T|1, S|1); a rank-2 mask is given as (1, T, S) */
    /* Cache mode: cache (B, 2, S, H, dk) as float, updated in place (as float) in update mode;
     * cache_new receives the updated cache in double. */
    const float *cache;
    size_t S; /* cache length; ignored without a cache */
    bool update;
    size_t index;
    double *cache_new; /* (B, 2, S, H, dk), only with a cache */
    double *out;       /* (B, T, N) */
    double *probs;     /* (B, H, T, S) or NULL */
    /* A half cache: new keys and values are rounded to float, then to IEEE half (nearest
     * even), as the device stores them; the cache given must hold half-representable values. */
    bool half_kv;
    /* A mask with a head dim: its dims are (B|1, mask_heads, T|1, S|1), mask_heads H or 1
     * (mask_dims giving the other three); 0: no head dim. */
    size_t mask_heads;
    /* Keras's fused path (ops.dot_product_attention: no dropout, no scores, rank-3 inputs): a
     * fully masked row attends to all S keys alike, its output the mean of the values; false:
     * its explicit path, zeros (the probabilities are 0 either way here). */
    bool masked_mean;
    /* When set (update mode): the new keys and values as the cache keeps them, (B, 2, Sn, H, dk)
     * as float, used instead of the projections (an int8 cache's dequantized rows). */
    const float *kv_new;
} ref_call;

/* Runs the forward pass; returns false on an inconsistent call (a test bug). */
bool ref_forward(const ref_weights *w, ref_call *c);

/* clmha's int8 cache rows (docs/api.md), written from that description: a row of d values is d
 * int8 q[e] = round-half-even(x[e] / scale), scale = amax / 127 (as float, amax the row's
 * largest magnitude; 0 for a row of zeros, NaN for a row holding NaN or infinity, q = 0 then),
 * followed by the float scale's 4 bytes. */
void ref_i8_quantize(const float *x, size_t d, unsigned char *row);
/* Element e of such a row as float: q[e] * scale. */
float ref_i8_value(const unsigned char *row, size_t d, size_t e);
/* The row's scale. */
float ref_i8_scale(const unsigned char *row, size_t d);

#endif
