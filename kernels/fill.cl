/*
 * fill.cl - sets a range of a buffer to a repeated value: the zero fill of a new cache and
 * the poison_buffers setting's NaN fill. A kernel rather than clEnqueueFillBuffer, so that every
 * byte clmha writes goes through code that tools such as Oclgrind follow (its
 * uninitialised-memory tracking does not see clEnqueueFillBuffer's writes). fill_words sets
 * n 32-bit words from word offset off; fill_bytes sets n bytes from byte offset off, for the
 * unaligned head and tail of a range.
 */
__kernel void fill_words(__global uint *dst, ulong off, ulong n, uint value) {
    const ulong gid = get_global_id(0);
    if (gid < n) {
        dst[off + gid] = value;
    }
}

__kernel void fill_bytes(__global uchar *dst, ulong off, ulong n, uchar value) {
    const ulong gid = get_global_id(0);
    if (gid < n) {
        dst[off + gid] = value;
    }
}
