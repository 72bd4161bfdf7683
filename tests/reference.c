/*
 * reference.c - the float64 reference of SPEC.md's forward pass, step by step:
 *  1. q = query . Wq + bq; 2. k, v by mode (projection, static cache, or projection spliced
 *  into the cache); 3. s = (q / sqrt(dk)) . k; 4. masked scores get -1e9 added, softmax over
 *  the keys, masked probabilities set to 0; 6. o = p . v; 7. out = o . Wo + bo.
 * Written for clarity, not speed: plain loops in double.
 */
#include "reference.h"
#include "half.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* A projected key or value as a half cache keeps it: float, then half (round to nearest even,
 * tools/half.h), back to double. */
static double as_half(double x) {
    return (double)half_to_float(half_from_float((float)x));
}

/* y[rows, n] = x[rows, k] . W[k, n] + b, all in double. */
static void dense(const float *xf, const double *xd, size_t rows, size_t k, const float *w,
                  const float *b, size_t n, double *y) {
    for (size_t r = 0; r < rows; r++) {
        for (size_t j = 0; j < n; j++) {
            double acc = b ? (double)b[j] : 0.0;
            for (size_t i = 0; i < k; i++) {
                double x = xf ? (double)xf[r * k + i] : xd[r * k + i];
                acc += x * (double)w[i * n + j];
            }
            y[r * n + j] = acc;
        }
    }
}

/* Whether the call's mask keeps key j for query row (b, h, t): its dims (B|1, T|1, S|1), or with
 * mask_heads (H|1) (B|1, H|1, T|1, S|1). */
static bool mask_keep(const ref_call *c, size_t b, size_t h, size_t t, size_t j) {
    if (c->mask == NULL) {
        return true;
    }
    const size_t MH = c->mask_heads ? c->mask_heads : 1;
    const size_t mb = c->mask_dims[0] == 1 ? 0 : b, mh = MH == 1 ? 0 : h;
    const size_t mt = c->mask_dims[1] == 1 ? 0 : t, ms = c->mask_dims[2] == 1 ? 0 : j;
    return c->mask[((mb * MH + mh) * c->mask_dims[1] + mt) * c->mask_dims[2] + ms] != 0;
}

bool ref_forward(const ref_weights *w, ref_call *c) {
    const size_t B = c->B, T = c->T, H = w->H, dk = w->dk, dv = w->dv;
    const bool has_cache = c->cache != NULL;
    const bool project_kv = !has_cache || c->update;
    const size_t S = has_cache ? c->S : c->Sn;
    if (has_cache && dk != dv) {
        return false;
    }
    if (c->update && c->index + c->Sn > S) {
        return false;
    }
    double *q = malloc(B * T * H * dk * sizeof *q);
    double *k = malloc(B * S * H * dk * sizeof *k);
    double *v = malloc(B * S * H * dv * sizeof *v);
    double *o = malloc(B * T * H * dv * sizeof *o);
    double *kn = NULL, *vn = NULL;
    double *s = malloc(S * sizeof *s);
    if (!q || !k || !v || !o || !s) {
        return false;
    }
    dense(c->query, NULL, B * T, w->Dq, w->wq, w->use_bias ? w->bq : NULL, H * dk, q);
    if (project_kv) {
        kn = malloc(B * c->Sn * H * dk * sizeof *kn);
        vn = malloc(B * c->Sn * H * dv * sizeof *vn);
        const float *key = c->key ? c->key : c->value;
        dense(key, NULL, B * c->Sn, w->Dk, w->wk, w->use_bias ? w->bk : NULL, H * dk, kn);
        dense(c->value, NULL, B * c->Sn, w->Dv, w->wv, w->use_bias ? w->bv : NULL, H * dv, vn);
        if (c->kv_new != NULL) {
            for (size_t i = 0; i < B * c->Sn * H * dk; i++) {
                const size_t b = i / (c->Sn * H * dk), r = i - b * c->Sn * H * dk;
                kn[i] = c->kv_new[(b * 2 + 0) * c->Sn * H * dk + r];
                vn[i] = c->kv_new[(b * 2 + 1) * c->Sn * H * dk + r];
            }
        } else if (c->half_kv) {
            for (size_t i = 0; i < B * c->Sn * H * dk; i++) {
                kn[i] = as_half(kn[i]);
            }
            for (size_t i = 0; i < B * c->Sn * H * dv; i++) {
                vn[i] = as_half(vn[i]);
            }
        }
    }
    /* Step 2: keys and values (B, S, H, d). */
    const size_t hk = H * dk, hv = H * dv;
    for (size_t b = 0; b < B; b++) {
        for (size_t j = 0; j < S; j++) {
            for (size_t e = 0; e < hk; e++) {
                double kv, vv;
                if (!has_cache) {
                    kv = kn[(b * S + j) * hk + e];
                    vv = vn[(b * S + j) * hv + (e < hv ? e : 0)];
                } else if (c->update && j >= c->index && j < c->index + c->Sn) {
                    kv = kn[(b * c->Sn + j - c->index) * hk + e];
                    vv = vn[(b * c->Sn + j - c->index) * hv + e];
                } else {
                    kv = c->cache[((b * 2 + 0) * S + j) * hk + e];
                    vv = c->cache[((b * 2 + 1) * S + j) * hk + e];
                }
                k[(b * S + j) * hk + e] = kv;
                if (has_cache) {
                    v[(b * S + j) * hv + e] = vv;
                    c->cache_new[((b * 2 + 0) * S + j) * hk + e] = kv;
                    c->cache_new[((b * 2 + 1) * S + j) * hk + e] = vv;
                }
            }
            if (!has_cache) {
                for (size_t e = 0; e < hv; e++) {
                    v[(b * S + j) * hv + e] = vn[(b * S + j) * hv + e];
                }
            }
        }
    }
    /* Steps 3-6 per (b, h, t). */
    const double scale = 1.0 / sqrt((double)dk);
    for (size_t b = 0; b < B; b++) {
        for (size_t h = 0; h < H; h++) {
            for (size_t t = 0; t < T; t++) {
                double mx = -INFINITY;
                for (size_t j = 0; j < S; j++) {
                    double acc = 0;
                    for (size_t d = 0; d < dk; d++) {
                        acc += q[((b * T + t) * H + h) * dk + d] * scale *
                               k[(b * S + j) * hk + h * dk + d];
                    }
                    s[j] = mask_keep(c, b, h, t, j) ? acc : acc - 1e9;
                    mx = fmax(mx, s[j]);
                }
                double sum = 0;
                for (size_t j = 0; j < S; j++) {
                    s[j] = exp(s[j] - mx);
                    sum += s[j];
                }
                for (size_t j = 0; j < S; j++) {
                    s[j] /= sum;
                    if (!mask_keep(c, b, h, t, j)) {
                        s[j] = 0;
                    }
                    if (c->probs) {
                        c->probs[((b * H + h) * T + t) * S + j] = s[j];
                    }
                }
                bool any = false;
                for (size_t j = 0; j < S; j++) {
                    any = any || mask_keep(c, b, h, t, j);
                }
                for (size_t d = 0; d < dv; d++) {
                    double acc = 0;
                    for (size_t j = 0; j < S; j++) {
                        acc += (any || !c->masked_mean ? s[j] : 1.0 / (double)S) *
                               v[(b * S + j) * hv + h * dv + d];
                    }
                    o[((b * T + t) * H + h) * dv + d] = acc;
                }
            }
        }
    }
    dense(NULL, o, B * T, H * dv, w->wo, w->use_bias ? w->bo : NULL, w->N, c->out);
    free(q);
    free(k);
    free(v);
    free(o);
    free(s);
    free(kn);
    free(vn);
    return true;
}

void ref_i8_quantize(const float *x, size_t d, unsigned char *row) {
    float amax = 0.0f;
    bool finite = true;
    for (size_t e = 0; e < d; e++) {
        finite = finite && isfinite(x[e]);
        amax = fabsf(x[e]) > amax ? fabsf(x[e]) : amax;
    }
    const float scale = finite ? amax / 127.0f : NAN;
    for (size_t e = 0; e < d; e++) {
        double q = scale > 0.0f ? nearbyint((double)x[e] / (double)scale) : 0.0;
        q = q > 127.0 ? 127.0 : q < -127.0 ? -127.0 : q;
        row[e] = (unsigned char)(signed char)q;
    }
    memcpy(row + d, &scale, sizeof scale);
}

float ref_i8_scale(const unsigned char *row, size_t d) {
    float s;
    memcpy(&s, row + d, sizeof s);
    return s;
}

float ref_i8_value(const unsigned char *row, size_t d, size_t e) {
    return (float)(signed char)row[e] * ref_i8_scale(row, d);
}
