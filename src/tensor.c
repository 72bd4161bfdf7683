/*
 * tensor.c - the device tensor: a shape, a dtype and a region of a cl_mem, either allocated
 * by clmha or wrapping (and retaining) an application's buffer; blocking host transfers.
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

/* Validates dtype, rank and shape and computes element count and byte size. */
static clmha_status check_shape(clmha_context *ctx, const char *fn, clmha_dtype dtype, int rank,
                                const size_t *shape, size_t *numel, size_t *bytes) {
    if (dtype != CLMHA_FLOAT32 && dtype != CLMHA_UINT8 && dtype != CLMHA_FLOAT16 &&
        dtype != CLMHA_INT32 && dtype != CLMHA_INT8) {
        return clmha__fail(ctx, CLMHA_ERR_INVALID_ARGUMENT,
                           "%s: dtype %d is not CLMHA_FLOAT32, CLMHA_UINT8, CLMHA_FLOAT16, "
                           "CLMHA_INT32 or CLMHA_INT8",
                           fn, (int)dtype);
    }
    if (rank < 1 || rank > CLMHA_MAX_RANK) {
        return clmha__fail(ctx, CLMHA_ERR_INVALID_ARGUMENT, "%s: rank is %d; expected 1..%d", fn,
                           rank, CLMHA_MAX_RANK);
    }
    if (shape == NULL) {
        return clmha__fail(ctx, CLMHA_ERR_NULL_ARGUMENT, "%s: shape is NULL", fn);
    }
    size_t n = 1;
    for (int i = 0; i < rank; i++) {
        if (shape[i] == 0) {
            return clmha__fail(ctx, CLMHA_ERR_INVALID_ARGUMENT,
                               "%s: shape[%d] is 0; every dim must be >= 1. Keras accepts "
                               "zero-sized dims (an empty batch or sequence, an empty result), "
                               "but an OpenCL buffer cannot be empty, so a clmha tensor cannot "
                               "be either: skip the call when there is nothing to compute",
                               fn, i);
        }
        if (!clmha__mul(n, shape[i], &n)) {
            return clmha__fail(ctx, CLMHA_ERR_OUT_OF_RANGE, "%s: the element count overflows", fn);
        }
    }
    size_t b;
    if (!clmha__mul(n, clmha__dtype_size(dtype), &b)) {
        return clmha__fail(ctx, CLMHA_ERR_OUT_OF_RANGE, "%s: the byte size overflows", fn);
    }
    if (b > ctx->info.max_alloc_bytes) {
        char s[256];
        clmha__shape_str(s, sizeof s, rank, shape);
        return clmha__fail(ctx, CLMHA_ERR_DEVICE_LIMIT,
                           "%s: a tensor of shape %s needs %zu bytes; device \"%s\" allows at "
                           "most %llu in one buffer",
                           fn, s, b, ctx->info.name, (unsigned long long)ctx->info.max_alloc_bytes);
    }
    *numel = n;
    *bytes = b;
    return CLMHA_OK;
}

static clmha_status make(clmha_context *ctx, clmha_dtype dtype, int rank, const size_t *shape,
                         size_t numel, cl_mem buffer, size_t offset, clmha_tensor **out) {
    clmha_tensor *t = calloc(1, sizeof *t);
    if (t == NULL) {
        return clmha__fail(ctx, CLMHA_ERR_OUT_OF_HOST_MEMORY, "tensor: out of memory");
    }
    t->ctx = ctx;
    t->dtype = dtype;
    t->rank = rank;
    memcpy(t->shape, shape, (size_t)rank * sizeof *shape);
    t->numel = numel;
    t->buffer = buffer;
    t->offset = offset;
    *out = t;
    return CLMHA_OK;
}

clmha_status clmha_tensor_create(clmha_context *ctx, clmha_dtype dtype, int rank,
                                 const size_t *shape, clmha_tensor **tensor) {
    if (ctx == NULL || tensor == NULL) {
        return clmha__fail(ctx, CLMHA_ERR_NULL_ARGUMENT, "clmha_tensor_create: %s is NULL",
                           ctx ? "tensor (the output pointer)" : "ctx");
    }
    size_t numel, bytes;
    clmha_status st = check_shape(ctx, "clmha_tensor_create", dtype, rank, shape, &numel, &bytes);
    if (st != CLMHA_OK) {
        return st;
    }
    cl_mem buf = NULL;
    st = clmha__buffer_create(ctx, bytes, "a tensor", &buf);
    if (st != CLMHA_OK) {
        return st;
    }
    st = make(ctx, dtype, rank, shape, numel, buf, 0, tensor);
    if (st != CLMHA_OK) {
        clReleaseMemObject(buf);
    }
    return st;
}

clmha_status clmha_tensor_wrap(clmha_context *ctx, clmha_dtype dtype, int rank, const size_t *shape,
                               cl_mem buffer, size_t offset_bytes, clmha_tensor **tensor) {
    if (ctx == NULL || tensor == NULL || buffer == NULL) {
        return clmha__fail(ctx, CLMHA_ERR_NULL_ARGUMENT, "clmha_tensor_wrap: %s is NULL",
                           ctx == NULL      ? "ctx"
                           : tensor == NULL ? "tensor"
                                            : "buffer");
    }
    size_t numel, bytes, end;
    clmha_status st = check_shape(ctx, "clmha_tensor_wrap", dtype, rank, shape, &numel, &bytes);
    if (st != CLMHA_OK) {
        return st;
    }
    size_t size = 0;
    cl_context bctx = NULL;
    if (clGetMemObjectInfo(buffer, CL_MEM_SIZE, sizeof size, &size, NULL) != CL_SUCCESS ||
        clGetMemObjectInfo(buffer, CL_MEM_CONTEXT, sizeof bctx, &bctx, NULL) != CL_SUCCESS) {
        return clmha__fail(ctx, CLMHA_ERR_INVALID_ARGUMENT,
                           "clmha_tensor_wrap: buffer is not a valid OpenCL buffer");
    }
    if (bctx != ctx->cl_ctx) {
        return clmha__fail(ctx, CLMHA_ERR_CONTEXT_MISMATCH,
                           "clmha_tensor_wrap: buffer belongs to another OpenCL context");
    }
    if (offset_bytes % clmha__dtype_size(dtype) != 0) {
        return clmha__fail(ctx, CLMHA_ERR_INVALID_ARGUMENT,
                           "clmha_tensor_wrap: offset_bytes %zu is not a multiple of the "
                           "element size %zu",
                           offset_bytes, clmha__dtype_size(dtype));
    }
    if (!clmha__add(offset_bytes, bytes, &end) || end > size) {
        return clmha__fail(ctx, CLMHA_ERR_OUT_OF_RANGE,
                           "clmha_tensor_wrap: the tensor needs bytes [%zu, %zu + %zu) but the "
                           "buffer has %zu",
                           offset_bytes, offset_bytes, bytes, size);
    }
    st = make(ctx, dtype, rank, shape, numel, buffer, offset_bytes, tensor);
    if (st == CLMHA_OK) {
        clRetainMemObject(buffer);
    }
    return st;
}

void clmha_tensor_release(clmha_tensor *tensor) {
    if (tensor == NULL) {
        return;
    }
    clReleaseMemObject(tensor->buffer);
    free(tensor);
}

static clmha_status transfer(const clmha_tensor *t, const char *fn, const void *host, void *hout,
                             size_t bytes) {
    if (t == NULL || (host == NULL && hout == NULL)) {
        return clmha__fail(t ? t->ctx : NULL, CLMHA_ERR_NULL_ARGUMENT, "%s: %s is NULL", fn,
                           t ? "host" : "tensor");
    }
    size_t want = t->numel * clmha__dtype_size(t->dtype);
    clmha_status st = clmha__check_alive(t->ctx, fn);
    if (st != CLMHA_OK) {
        return st;
    }
    if (bytes != want) {
        return clmha__fail(t->ctx, CLMHA_ERR_INVALID_ARGUMENT,
                           "%s: bytes is %zu; the tensor holds %zu", fn, bytes, want);
    }
    cl_int err = host ? clEnqueueWriteBuffer(t->ctx->queue, t->buffer, CL_TRUE, t->offset, bytes,
                                             host, 0, NULL, NULL)
                      : clEnqueueReadBuffer(t->ctx->queue, t->buffer, CL_TRUE, t->offset, bytes,
                                            hout, 0, NULL, NULL);
    if (err != CL_SUCCESS) {
        return clmha__fail_cl(t->ctx, err, fn);
    }
    return CLMHA_OK;
}

clmha_status clmha_tensor_write(clmha_tensor *tensor, const void *host, size_t bytes) {
    return transfer(tensor, "clmha_tensor_write", host, NULL, bytes);
}

clmha_status clmha_tensor_read(const clmha_tensor *tensor, void *host, size_t bytes) {
    return transfer(tensor, "clmha_tensor_read", NULL, host, bytes);
}

clmha_status clmha_tensor_zero(clmha_tensor *tensor) {
    if (tensor == NULL) {
        return clmha__fail(NULL, CLMHA_ERR_NULL_ARGUMENT, "clmha_tensor_zero: tensor is NULL");
    }
    return clmha__fill(tensor->ctx, tensor->buffer, tensor->offset,
                       tensor->numel * clmha__dtype_size(tensor->dtype), 0, "clmha_tensor_zero");
}

int clmha_tensor_rank(const clmha_tensor *tensor) {
    return tensor ? tensor->rank : 0;
}

size_t clmha_tensor_dim(const clmha_tensor *tensor, int axis) {
    if (tensor == NULL) {
        return 0;
    }
    if (axis < 0) {
        axis += tensor->rank;
    }
    return (axis >= 0 && axis < tensor->rank) ? tensor->shape[axis] : 0;
}

size_t clmha_tensor_numel(const clmha_tensor *tensor) {
    return tensor ? tensor->numel : 0;
}

clmha_dtype clmha_tensor_dtype(const clmha_tensor *tensor) {
    return tensor ? tensor->dtype : CLMHA_FLOAT32;
}

cl_mem clmha_tensor_buffer(const clmha_tensor *tensor) {
    return tensor ? tensor->buffer : NULL;
}

size_t clmha_tensor_offset(const clmha_tensor *tensor) {
    return tensor ? tensor->offset : 0;
}
