/*
 * merge.cl - attention_merge: the chunk partials of split attention merged into finished rows
 * (merge_rows.clh says how), where the call does not end with gemm_tail.
 */
#include "merge_rows.clh"

/* attention_merge: one work-group per row r = (b * H + h) * T + t, written to o in the
 * (B, T, H, DV) layout the output projection reads. Any work-group size. */
__kernel void attention_merge(__global const float *part, __global float *o, int nch, int T,
                              int H) {
    __local float wts[MAX_CHUNKS];
    const int lid = (int)get_local_id(0), wg = (int)get_local_size(0);
    const ulong r = get_group_id(0);
    const ulong rt = r / (ulong)T;
    const int t = (int)(r - rt * (ulong)T);
    const ulong b = rt / (ulong)H;
    const int h = (int)(rt - b * (ulong)H);
    __global const float *pr = part + r * (ulong)nch * (ulong)(DV + 2);
    const float inv = merge_weights(pr, nch, wts, lid, wg);
    __global float *dst = o + ((b * (ulong)T + (ulong)t) * (ulong)H + (ulong)h) * DV;
    MERGE_ROW(dst)
}
