/*
 * regularize.c - Keras's regularizers and constraints: defaults, the regularization loss
 * (weights on the host in double; the activity regularizer from per-call partial sums made on
 * the device), and constraints applied in place on the device.
 */
#include "internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

clmha_regularizer clmha_regularizer_default(clmha_regularizer_kind kind) {
    clmha_regularizer r = {kind, 0.0, 0.0};
    if (kind == CLMHA_REGULARIZER_L1) {
        r.l1 = 0.01;
    } else if (kind == CLMHA_REGULARIZER_L2) {
        r.l2 = 0.01;
    }
    return r;
}

clmha_constraint clmha_constraint_default(clmha_constraint_kind kind) {
    clmha_constraint c = {kind, 0.0, 0.0, 0.0, 0};
    if (kind == CLMHA_CONSTRAINT_MAX_NORM) {
        c.max_value = 2.0;
    } else if (kind == CLMHA_CONSTRAINT_MIN_MAX_NORM) {
        c.min_value = 0.0;
        c.max_value = 1.0;
        c.rate = 1.0;
    }
    return c;
}

clmha_status clmha__regularize_build(clmha_layer *l) {
    l->act_groups = 32;
    if (l->cfg.activity_regularizer.kind == CLMHA_REGULARIZER_NONE) {
        return CLMHA_OK;
    }
    return clmha__buffer_create(l->ctx, 4 * l->act_groups * 2 * sizeof(float),
                                "the activity-regularizer sums", &l->act);
}

clmha_status clmha__activity_sums(clmha_layer *l, int slot, cl_mem x, size_t n, size_t batch) {
    l->ctx->prof_category = CLMHA__PROF_OTHER;
    cl_ulong nn = n, off = (cl_ulong)slot * l->act_groups * 2;
    const clmha__karg args[] = {CLMHA__ARG(x), CLMHA__ARG(nn), CLMHA__ARG(l->act), CLMHA__ARG(off)};
    clmha_status st = clmha__set_args(l->ctx, &l->kern[CLMHA__K_SUM], args, 4);
    if (st == CLMHA_OK) {
        st = clmha__launch(l->ctx, &l->kern[CLMHA__K_SUM], l->act_groups, l->wg_sum);
    }
    if (st == CLMHA_OK) {
        l->act_valid[slot] = true;
        l->act_batch[slot] = batch;
    }
    return st;
}

static double regularize(const clmha_regularizer *r, double abs_sum, double sq_sum) {
    switch (r->kind) {
    case CLMHA_REGULARIZER_L1:
        return r->l1 * abs_sum;
    case CLMHA_REGULARIZER_L2:
        return r->l2 * sq_sum;
    case CLMHA_REGULARIZER_L1L2:
        return r->l1 * abs_sum + r->l2 * sq_sum;
    case CLMHA_REGULARIZER_NONE:
    default:
        return 0.0;
    }
}

clmha_status clmha_layer_regularization_loss(clmha_layer *l, double *weights_loss,
                                             double *activity_loss) {
    if (l == NULL) {
        return clmha__fail(NULL, CLMHA_ERR_NULL_ARGUMENT,
                           "clmha_layer_regularization_loss: layer is NULL");
    }
    clmha_status st = clmha__check_alive(l->ctx, "clmha_layer_regularization_loss");
    if (st != CLMHA_OK) {
        return st;
    }
    if (weights_loss != NULL) {
        double total = 0.0;
        for (int w = 0; w < CLMHA_WEIGHT_COUNT && st == CLMHA_OK; w++) {
            const clmha_regularizer *r =
                (w % 2) ? &l->cfg.bias_regularizer : &l->cfg.kernel_regularizer;
            /* a quantized kernel carries no regularizer (nor constraint), as in Keras */
            if (l->weights[w] == NULL || r->kind == CLMHA_REGULARIZER_NONE ||
                (l->quant_bits != 0 && w % 2 == 0)) {
                continue;
            }
            int rank;
            size_t shape[CLMHA_MAX_RANK], n = 1;
            clmha_layer_weight_shape(l, (clmha_weight)w, &rank, shape);
            for (int i = 0; i < rank; i++) {
                n *= shape[i];
            }
            float *host = malloc(n * sizeof(float));
            if (host == NULL) {
                return clmha__fail(l->ctx, CLMHA_ERR_OUT_OF_HOST_MEMORY, "out of memory");
            }
            st = clmha_layer_get_weight(l, (clmha_weight)w, host, n);
            double a = 0.0, q = 0.0;
            for (size_t i = 0; i < n; i++) {
                a += fabs((double)host[i]);
                q += (double)host[i] * (double)host[i];
            }
            free(host);
            total += regularize(r, a, q);
        }
        if (st != CLMHA_OK) {
            return st;
        }
        *weights_loss = total;
    }
    if (activity_loss != NULL) {
        double total = 0.0;
        if (l->act != NULL) {
            size_t n = 4 * l->act_groups * 2;
            float *sums = malloc(n * sizeof(float));
            if (sums == NULL) {
                return clmha__fail(l->ctx, CLMHA_ERR_OUT_OF_HOST_MEMORY, "out of memory");
            }
            cl_int err = clEnqueueReadBuffer(l->ctx->queue, l->act, CL_TRUE, 0, n * sizeof(float),
                                             sums, 0, NULL, NULL);
            if (err != CL_SUCCESS) {
                free(sums);
                return clmha__fail_cl(l->ctx, err, "reading the activity-regularizer sums");
            }
            for (int slot = 0; slot < 4; slot++) {
                if (!l->act_valid[slot]) {
                    continue;
                }
                double a = 0.0, q = 0.0;
                for (size_t g = 0; g < l->act_groups; g++) {
                    a += sums[(slot * l->act_groups + g) * 2];
                    q += sums[(slot * l->act_groups + g) * 2 + 1];
                }
                total +=
                    regularize(&l->cfg.activity_regularizer, a, q) / (double)l->act_batch[slot];
            }
            free(sums);
        }
        *activity_loss = total;
    }
    return CLMHA_OK;
}

/* The (outer, A, inner) view of a weight for a constraint along @p axis. */
static bool constraint_view(const clmha_layer *l, clmha_weight w, int axis, size_t *outer,
                            size_t *A, size_t *inner) {
    int rank;
    size_t shape[CLMHA_MAX_RANK];
    clmha_layer_weight_shape(l, w, &rank, shape);
    int a = axis < 0 ? axis + rank : axis;
    if (a < 0 || a >= rank) {
        return false;
    }
    *outer = *inner = 1;
    for (int i = 0; i < a; i++) {
        *outer *= shape[i];
    }
    for (int i = a + 1; i < rank; i++) {
        *inner *= shape[i];
    }
    *A = shape[a];
    return true;
}

clmha_status clmha_layer_apply_constraints(clmha_layer *l) {
    if (l == NULL) {
        return clmha__fail(NULL, CLMHA_ERR_NULL_ARGUMENT,
                           "clmha_layer_apply_constraints: layer is NULL");
    }
    clmha_status st = clmha__check_alive(l->ctx, "clmha_layer_apply_constraints");
    if (st != CLMHA_OK) {
        return st;
    }
    size_t outer[CLMHA_WEIGHT_COUNT], A[CLMHA_WEIGHT_COUNT], inner[CLMHA_WEIGHT_COUNT];
    /* Every axis is checked before anything is enqueued. */
    for (int w = 0; w < CLMHA_WEIGHT_COUNT; w++) {
        const clmha_constraint *c = (w % 2) ? &l->cfg.bias_constraint : &l->cfg.kernel_constraint;
        if (l->weights[w] == NULL || c->kind == CLMHA_CONSTRAINT_NONE ||
            (l->quant_bits != 0 && w % 2 == 0)) {
            continue;
        }
        int axis = c->kind == CLMHA_CONSTRAINT_NON_NEG ? 0 : c->axis;
        if (!constraint_view(l, (clmha_weight)w, axis, &outer[w], &A[w], &inner[w])) {
            return clmha__fail(l->ctx, CLMHA_ERR_INVALID_ARGUMENT,
                               "config.%s.axis is %d, but %s has no such axis",
                               (w % 2) ? "bias_constraint" : "kernel_constraint", c->axis,
                               clmha_weight_name((clmha_weight)w));
        }
    }
    for (int w = 0; w < CLMHA_WEIGHT_COUNT; w++) {
        const clmha_constraint *c = (w % 2) ? &l->cfg.bias_constraint : &l->cfg.kernel_constraint;
        if (l->weights[w] == NULL || c->kind == CLMHA_CONSTRAINT_NONE ||
            (l->quant_bits != 0 && w % 2 == 0)) {
            continue;
        }
        l->qkv_packed = false; /* the packed copy is made again before it is next read */
        cl_ulong o = outer[w], a = A[w], in = inner[w];
        cl_int kind = (cl_int)c->kind;
        cl_float maxv = (cl_float)c->max_value, minv = (cl_float)c->min_value;
        cl_float rate = (cl_float)c->rate;
        const clmha__karg args[] = {
            CLMHA__ARG(l->weights[w]), CLMHA__ARG(o),    CLMHA__ARG(a),    CLMHA__ARG(in),
            CLMHA__ARG(kind),          CLMHA__ARG(maxv), CLMHA__ARG(minv), CLMHA__ARG(rate)};
        if ((st = clmha__set_args(l->ctx, &l->kern[CLMHA__K_CONSTRAIN], args, 8)) != CLMHA_OK ||
            (st = clmha__launch(l->ctx, &l->kern[CLMHA__K_CONSTRAIN],
                                (outer[w] * inner[w] + l->wg_constrain - 1) / l->wg_constrain,
                                l->wg_constrain)) != CLMHA_OK ||
            (st = clmha__policy_sync(l, (clmha_weight)w)) != CLMHA_OK) { /* its 16-bit copy */
            return st;
        }
    }
    return CLMHA_OK;
}
