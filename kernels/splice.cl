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
 * gemm_tail (tail.cl) is the same last step for calls whose output projection is clmha's own
 * GEMM: it merges split attention's partials, projects them straight into the caller's output
 * and splices the cache, all in one launch.
 *
 * CACHE_HALF: the cache holds IEEE half. The new keys and values were rounded to half by
 * to_half or by gemm_qkv4 (the attention of the same call read those halves), so the splice
 * copies their bits unchanged: what the call attended over is exactly what the cache keeps.
 * CACHE_I8 likewise: the new rows were quantized by to_int8, and the splice copies their bytes.
 */
#include "splice_rows.clh"

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

/* Quantizes n rows of d new keys (rows [0, n)) and n rows of d new values (rows [n, 2n)) into
 * an int8 cache's rows (attention_common.clh's KV_I8): q = rint(x / scale) with scale = amax /
 * 127, amax the row's largest magnitude, so that q is in [-127, 127] (ties to even). A row of
 * zeros has scale 0 and q = 0; a row holding a NaN or an infinity gets the scale NaN (the
 * attention over it is NaN, as over the float row), q = 0. One work-item a row; the rows of kq
 * and vq are d + 4 bytes apart, the scale's 4 bytes after the values. */
__kernel void to_int8(__global const float *k, __global const float *v, __global char *kq,
                      __global char *vq, ulong n, int d) {
    const ulong gid = get_global_id(0);
    if (gid >= 2 * n) {
        return;
    }
    const ulong row = gid < n ? gid : gid - n;
    __global const float *x = (gid < n ? k : v) + row * (ulong)d;
    __global char *dst = (gid < n ? kq : vq) + row * (ulong)(d + 4);
    float amax = 0.0f;
    int finite = 1;
    for (int e = 0; e < d; e++) {
        const float a = fabs(x[e]);
        finite &= isfinite(a);
        amax = fmax(amax, a);
    }
    const float scale = !finite ? NAN : amax / 127.0f;
    for (int e = 0; e < d; e++) {
        const float qf = scale > 0.0f ? rint(x[e] / scale) : 0.0f;
        dst[e] = (char)clamp(qf, -127.0f, 127.0f);
    }
    vstore4(as_uchar4(scale), 0, (__global uchar *)(dst + d));
}
