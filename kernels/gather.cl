/*
 * gather.cl - row permutations and broadcasts for inputs of rank > 3 (attention over several
 * axes). A destination row index is decomposed over up to eight dims (the last fastest); each
 * digit times its source stride, summed, gives the source row. With a stride of 0 for a
 * size-1 source dim the same kernel broadcasts. Rows of row_len elements move whole.
 */
#define DIGITS(dims) {dims.s0, dims.s1, dims.s2, dims.s3, dims.s4, dims.s5, dims.s6, dims.s7}

/* The loop is unrolled, so that the digits are indexed by constants and stay in registers (a
 * run-time index put them on the stack on NVIDIA's compiler). */
static ulong source_row(ulong r, uint nd, ulong8 dims8, ulong8 strides8) {
    const ulong dims[8] = DIGITS(dims8);
    const ulong strides[8] = DIGITS(strides8);
    ulong src = 0;
    _Pragma("unroll") for (int i = 7; i >= 0; i--) {
        if (i < (int)nd) {
            const ulong q = r / dims[i];
            src += (r - q * dims[i]) * strides[i]; /* r % dims[i], without a div/rem pair */
            r = q;
        }
    }
    return src;
}

__kernel void gather_rows(__global const float *src, ulong src_off, __global float *dst,
                          ulong row_len, ulong nrows, uint nd, ulong8 dims, ulong8 strides) {
    const ulong gid = get_global_id(0);
    if (gid >= nrows * row_len) {
        return;
    }
    const ulong r = gid / row_len;
    const ulong e = gid - r * row_len;
    dst[gid] = src[src_off + source_row(r, nd, dims, strides) * row_len + e];
}

__kernel void gather_mask(__global const uchar *src, ulong src_off, __global uchar *dst, ulong n,
                          uint nd, ulong8 dims, ulong8 strides) {
    const ulong gid = get_global_id(0);
    if (gid >= n) {
        return;
    }
    dst[gid] = src[src_off + source_row(gid, nd, dims, strides)];
}
