/*
 * splice.cl - writes freshly projected keys and values into the key/value cache.
 *
 * The cache is (B, 2, S, H * D) with [:, 0] keys and [:, 1] values; the projections are
 * (B, Sn, H * D) each. Rows index .. index + Sn - 1 of every batch are overwritten, nothing
 * else is touched (positions outside the range stay byte-identical). One work-item a float.
 */
__kernel void cache_splice(__global const float *src_k, __global const float *src_v,
                           __global float *cache, ulong c_off, ulong B, ulong Sn, ulong S,
                           ulong HD, ulong index) {
    const ulong gid = get_global_id(0);
    const ulong n = B * Sn * HD;
    if (gid >= 2 * n) {
        return;
    }
    const ulong which = gid / n; /* 0 keys, 1 values */
    const ulong i = gid - which * n;
    const ulong e = i % HD;
    const ulong s = (i / HD) % Sn;
    const ulong b = i / (HD * Sn);
    const ulong dst = c_off + ((b * 2 + which) * S + index + s) * HD + e;
    cache[dst] = which ? src_v[i] : src_k[i];
}
