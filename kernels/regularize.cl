/*
 * regularize.cl - what Keras's regularizers and constraints need on the device.
 *
 * sum_abs_sq: partial sums of |x| and x^2 over a projection's output (the activity
 * regularizer's inputs), one pair per work-group, reduced in local memory; the host adds the
 * pairs. float accumulation.
 *
 * constrain: Keras's weight constraints applied in place, one work-item per column of the
 * weight viewed as (outer, A, inner), the constraint's axis being the A dim:
 *   kind 1 max_norm:     w * clip(n, 0, max) / (eps + n)
 *   kind 2 min_max_norm: w * (rate * clip(n, min, max) + (1 - rate) * n) / (eps + n)
 *   kind 3 non_neg:      max(w, 0)
 *   kind 4 unit_norm:    w / (eps + n)
 * with n = sqrt(sum of w^2 along the axis) and eps = 1e-7 (Keras's backend.epsilon()).
 */
#ifndef WG
#define WG 64
#endif

__kernel void sum_abs_sq(__global const float *x, ulong n, __global float *out, ulong out_off) {
    __local float la[WG];
    __local float ls[WG];
    const int lid = (int)get_local_id(0);
    const ulong stride = get_global_size(0);
    float a = 0.0f, s = 0.0f;
    for (ulong i = get_global_id(0); i < n; i += stride) {
        const float v = x[i];
        a += fabs(v);
        s = fma(v, v, s);
    }
    la[lid] = a;
    ls[lid] = s;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int w = WG / 2; w > 0; w >>= 1) {
        if (lid < w) {
            la[lid] += la[lid + w];
            ls[lid] += ls[lid + w];
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    if (lid == 0) {
        out[out_off + 2 * get_group_id(0)] = la[0];
        out[out_off + 2 * get_group_id(0) + 1] = ls[0];
    }
}

__kernel void constrain(__global float *w, ulong outer, ulong A, ulong inner, int kind,
                        float max_value, float min_value, float rate) {
    const ulong col = get_global_id(0);
    if (col >= outer * inner) {
        return;
    }
    const ulong o = col / inner;
    const ulong base = o * A * inner + (col - o * inner);
    if (kind == 3) {
        for (ulong k = 0; k < A; k++) {
            w[base + k * inner] = fmax(w[base + k * inner], 0.0f);
        }
        return;
    }
    float sq = 0.0f;
    for (ulong k = 0; k < A; k++) {
        const float v = w[base + k * inner];
        sq = fma(v, v, sq);
    }
    const float norm = sqrt(sq);
    float desired = norm;
    if (kind == 1) {
        desired = clamp(norm, 0.0f, max_value);
    } else if (kind == 2) {
        desired = rate * clamp(norm, min_value, max_value) + (1.0f - rate) * norm;
    } else if (kind == 4) {
        desired = 1.0f;
    }
    const float scale = desired / (1e-7f + norm);
    for (ulong k = 0; k < A; k++) {
        w[base + k * inner] *= scale;
    }
}
