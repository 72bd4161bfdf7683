/*
 * bias.cl - fills a (rows, cols) row-major block with a broadcast bias row (or zeros), the
 * first half of every projection: the GEMM that follows accumulates into it (beta = 1), which
 * gives x . W + b without a separate pass over the output.
 */
__kernel void fill_bias(__global float *dst, ulong off, ulong rows, ulong cols,
                        __global const float *bias, int has_bias) {
    const ulong gid = get_global_id(0);
    if (gid >= rows * cols) {
        return;
    }
    dst[off + gid] = has_bias ? bias[gid % cols] : 0.0f;
}
