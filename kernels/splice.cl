/*
 * splice.cl - the last step of a call, in one launch so that a call either changes nothing the
 * caller owns or completes: copies the output and the attention probabilities from the
 * workspace into the caller's tensors, and writes the freshly projected keys and values into
 * the key/value cache.
 *
 * The cache is (B, 2, S, H * D) with [:, 0] keys and [:, 1] values; the projections are
 * (B, Sn, H * D) each. Rows index .. index + Sn - 1 of every batch are overwritten, nothing
 * else is touched (positions outside the range stay byte-identical). One work-item a float:
 * the first n_out copy the output, the next n_p the probabilities, the rest splice.
 *
 * gemm_tail (built with -DTAIL after merge.cl and gemm.cl) is the same last step for calls whose
 * output projection is clmha's own GEMM: it merges split attention's partials, projects them
 * straight into the caller's output and splices the cache, all in one launch.
 *
 * CACHE_HALF: the cache holds IEEE half. The new keys and values were rounded to half by
 * to_half or by gemm_qkv4 (the attention of the same call read those halves), so the splice
 * copies their bits unchanged: what the call attended over is exactly what the cache keeps.
 */
#ifdef CACHE_HALF
#define CACHE_T ushort /* half bits, copied as they are */
#else
#define CACHE_T float
#endif
/* Copies elements [e0, e1) of row `row` of the new keys and values (rows [0, B * Sn) keys,
 * [B * Sn, 2 * B * Sn) values, HD elements each) to its place in the cache. */
static void splice_row(ulong row, ulong e0, ulong e1, __global const CACHE_T *src_k,
                       __global const CACHE_T *src_v, __global CACHE_T *cache, ulong c_off,
                       ulong B, ulong Sn, ulong S, ulong HD, ulong index) {
    const ulong n = B * Sn;
    const ulong which = row / n; /* 0 keys, 1 values */
    const ulong i = row - which * n; /* remainders as x - q * d: no div/rem pairs */
    const ulong b = i / Sn;
    const ulong s = i - b * Sn;
    __global CACHE_T *dst = cache + c_off + ((b * 2 + which) * S + index + s) * HD;
    __global const CACHE_T *src = (which ? src_v : src_k) + i * HD;
    for (ulong e = e0; e < e1; e++) {
        dst[e] = src[e];
    }
}

__kernel void commit(__global const float *y, __global float *out, ulong out_off, ulong n_out,
                     __global const float *ps, __global float *p, ulong p_off, ulong n_p,
                     __global const CACHE_T *src_k, __global const CACHE_T *src_v,
                     __global CACHE_T *cache, ulong c_off, ulong B, ulong Sn, ulong S, ulong HD,
                     ulong index, ulong n_splice) {
    ulong gid = get_global_id(0);
    if (gid < n_out) {
        out[out_off + gid] = y[gid];
        return;
    }
    gid -= n_out;
    if (gid < n_p) {
        p[p_off + gid] = ps[gid];
        return;
    }
    gid -= n_p;
    if (gid >= n_splice) {
        return;
    }
    const ulong row = gid / HD;
    const ulong e = gid - row * HD;
    splice_row(row, e, e + 1, src_k, src_v, cache, c_off, B, Sn, S, HD, index);
}

#ifdef TAIL
/* gemm_tail: the last launch of a call whose output projection is clmha's own GEMM (decode
 * steps), in place of attention_merge, the output projection and commit: built from
 * merge.cl + gemm.cl + splice.cl with -DTAIL, DV, HV (= H * DV, the projection's input width)
 * and GC, and GR rows a work-item (1, or the few-rows build's 4 for batched decode steps).
 * Work-groups [0, gemm_groups) project, gpr of them a block of GR rows r = b * T + t (of m):
 * they take the rows from o (nch == 1) or merge them from their H heads' chunk partials into
 * local memory (what attention_merge would have written), then each work-item writes GC
 * columns of out[r] = bias + row . w for the block's rows straight into the caller's output,
 * reading each weight once for all of them. The other work-groups splice the new keys and
 * values into the cache, `block` elements of a row a work-item. As with commit, the caller's
 * tensors change only if this one enqueue succeeds. */
__kernel void gemm_tail(__global const float *o, __global const float *part, int nch, int T,
                        int H, __global const float *w, __global const float *bias, int has_bias,
                        ulong n, ulong gpr, ulong gemm_groups, ulong m, __global float *out,
                        ulong out_off,
                        __global const CACHE_T *src_k, __global const CACHE_T *src_v,
                        __global CACHE_T *cache, ulong c_off, ulong B, ulong Sn, ulong S,
                        ulong HD, ulong index, ulong n_splice, ulong block) {
    __local float xs[GR * HV];
    __local float wts[MAX_CHUNKS];
    const ulong g = get_group_id(0);
    const int lid = (int)get_local_id(0), wg = (int)get_local_size(0);
    if (g >= gemm_groups) {
        const ulong j = (g - gemm_groups) * (ulong)wg + (ulong)lid;
        const ulong per_row = (HD + block - 1) / block;
        const ulong row = j / per_row;
        const ulong e0 = (j - row * per_row) * block;
        if (row * HD < n_splice) {
            splice_row(row, e0, min(HD, e0 + block), src_k, src_v, cache, c_off, B, Sn, S, HD,
                       index);
        }
        return;
    }
    const ulong rb = g / gpr;
    const ulong r0 = rb * GR;
    const ulong nr = min((ulong)GR, m - r0);
    const ulong cb = (g - rb * gpr) * (ulong)wg + (ulong)lid;
    __global float *y = out + out_off + r0 * n;
    if (nch == 1) {
        if (cb < n / GC) {
            gemm_rows(o + r0 * HV, HV, nr, w, n, cb * GC, bias, has_bias, y, 0);
        }
        return;
    }
    for (ulong u = 0; u < nr; u++) {
        const ulong b = (r0 + u) / (ulong)T;
        const ulong t = r0 + u - b * (ulong)T;
        for (int h = 0; h < H; h++) {
            __global const float *pr =
                part + ((b * (ulong)H + (ulong)h) * (ulong)T + t) * (ulong)nch * (DV + 2);
            const float inv = merge_weights(pr, nch, wts, lid, wg);
            __local float *dst = xs + u * HV + h * DV;
            MERGE_ROW(dst)
            barrier(CLK_LOCAL_MEM_FENCE); /* before the next head's weights overwrite wts */
        }
    }
    if (cb < n / GC) {
        gemm_rows_local(xs, HV, nr, w, n, cb * GC, bias, has_bias, y, 0);
    }
}
#endif

/* Rounds n new keys into kh and n new values into vh as IEEE half (vstore_half: round to
 * nearest even), for a half cache. */
__kernel void to_half(__global const float *k, __global const float *v, __global half *kh,
                      __global half *vh, ulong n) {
    const ulong gid = get_global_id(0);
    if (gid < n) {
        vstore_half(k[gid], gid, kh);
    } else if (gid < 2 * n) {
        vstore_half(v[gid - n], gid - n, vh);
    }
}
