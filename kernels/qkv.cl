/*
 * qkv.cl - self-attention's query, key and value projections as one CLBlast product (where
 * CLBlast, not clmha's own GEMM, takes them): pack_columns lays a weight matrix (or a bias row)
 * beside the others in one packed matrix, [Wq | Wk | Wv], whenever the weights have changed;
 * split_qkv copies the product's three column blocks into the query, key and value workspaces.
 */

/* dst[r, col0 + c] = src[r, c] for a (rows, cols) source and a destination dst_cols wide. */
__kernel void pack_columns(__global const float *src, ulong rows, ulong cols, __global float *dst,
                           ulong dst_cols, ulong col0) {
    const ulong gid = get_global_id(0);
    if (gid >= rows * cols) {
        return;
    }
    const ulong r = gid / cols;
    dst[r * dst_cols + col0 + (gid - r * cols)] = src[gid];
}

/* The (rows, nq + nk + nv) product: columns [0, nq) to q, [nq, nq + nk) to k, the rest to v. */
__kernel void split_qkv(__global const float *qkv, ulong rows, ulong nq, ulong nk, ulong nv,
                        __global float *q, __global float *k, __global float *v) {
    const ulong n = nq + nk + nv;
    const ulong gid = get_global_id(0);
    if (gid >= rows * n) {
        return;
    }
    const ulong r = gid / n;
    const ulong c = gid - r * n;
    const float x = qkv[gid];
    if (c < nq) {
        q[r * nq + c] = x;
    } else if (c < nq + nk) {
        k[r * nk + c - nq] = x;
    } else {
        v[r * nv + c - nq - nk] = x;
    }
}
