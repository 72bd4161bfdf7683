/*
 * masked_rows.cl - masked_rows_mean: Keras's result for a fully masked query row where Keras
 * takes its fused path (ops.dot_product_attention: no dropout, no scores returned, rank-3
 * inputs). There every masked score becomes one large negative number before the softmax, so a
 * row with no key left weighs all S keys alike and its output is the mean of all S value rows;
 * the attention kernels gave such a row zeros (Keras's explicit path). Launched after them (and
 * the merge) on calls that can have such rows (a mask, key_lengths, or a causal rule that can
 * leave a row no key), with the layer's fully_masked_rows = KERAS.
 *
 * One work-group per query row r = (b * H + h) * T + t, of any power-of-two size up to 256: its
 * work-items look for a key the row attends (the mask, the causal end and key_lengths, as the
 * attention kernels read them); where there is none they write the mean of the row's S value
 * rows (cached or new, as the kernels read them) into the row of o. A launch adds the value rows
 * j0 .. j1 - 1 (the first, j0 = 0, starts from 0): the host cuts the keys into launches that
 * keep a work-item within the device's loop budget (Mesa's llvmpipe ends one after 65535).
 */
#include "attention_common.clh"

__kernel void masked_rows_mean(ATTENTION_ARGS, int j0, int j1) {
    __local int any[256];
    const int lid = (int)get_local_id(0), wg = (int)get_local_size(0);
    (void)q, (void)q_off, (void)k, (void)scale, (void)kn, (void)kn_bstride; /* keys: unused */
    const ulong r = get_group_id(0);
    const row_info ri = row_setup(r, T, H, S, k_off, k_bstride, v_off, v_bstride, m_off, m_sb,
                                  m_sh, m_st, causal, causal_base, lens, lens_off, has_lens);
    int found = 0;
    for (int j = lid; j < ri.end && !found; j += wg) {
        found = !has_mask || mask[ri.m_base + (ulong)j * m_ss] != 0;
    }
    any[lid] = found;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int w = wg / 2; w > 0; w >>= 1) {
        if (lid < w) {
            any[lid] |= any[lid + w];
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    if (any[0] || S == 0) {
        return;
    }
    const ulong o_row = ((ri.b * (ulong)T + (ulong)ri.t) * (ulong)H + (ulong)ri.h) * DV;
    const float w = 1.0f / (float)S;
    for (int d = lid; d < DV; d += wg) {
        float x = j0 == 0 ? 0.0f : o[o_row + d];
        for (int j = j0; j < j1; j++) {
            __global const KV_T *vr =
                key_row(v, ri.v_base, ri.v_step, vn, ri.b * vn_bstride + (ulong)ri.h * VROW, new_lo,
                        new_hi, (ulong)j);
            x = fma(w * VALUE_SCALE(vr), LOAD_KV(d, vr), x);
        }
        o[o_row + d] = x;
    }
}
