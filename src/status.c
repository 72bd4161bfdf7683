/*
 * status.c - status names and messages (generated from CLMHA_STATUS_MAP), the thread-local
 * and per-context last error, OpenCL error names, and the log sink. The library itself never
 * prints: only a log sink the user asked for (a callback, or CLMHA_LOG) writes anywhere.
 */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static _Thread_local char thread_last_error[CLMHA__MSG_LEN];

const char *clmha_status_name(clmha_status status) {
    switch (status) {
#define CLMHA__STATUS_NAME(name, msg)                                                              \
    case CLMHA_##name:                                                                             \
        return #name;
        CLMHA_STATUS_MAP(CLMHA__STATUS_NAME)
#undef CLMHA__STATUS_NAME
    case CLMHA_STATUS_COUNT:
        break;
    }
    return "UNKNOWN";
}

const char *clmha_status_message(clmha_status status) {
    switch (status) {
#define CLMHA__STATUS_MSG(name, msg)                                                               \
    case CLMHA_##name:                                                                             \
        return msg;
        CLMHA_STATUS_MAP(CLMHA__STATUS_MSG)
#undef CLMHA__STATUS_MSG
    case CLMHA_STATUS_COUNT:
        break;
    }
    return "unknown status";
}

const char *clmha_last_error(void) {
    return thread_last_error;
}

const char *clmha_version_string(void) {
    return CLMHA_VERSION_STRING;
}

clmha_log_level clmha__env_log_level(void) {
    const char *v = clmha__getenv("CLMHA_LOG");
    if (v == NULL) {
        return CLMHA_LOG_WARN;
    }
    if (strcmp(v, "0") == 0 || strcasecmp(v, "off") == 0) {
        return CLMHA_LOG_OFF;
    }
    if (strcasecmp(v, "error") == 0) {
        return CLMHA_LOG_ERROR;
    }
    if (strcasecmp(v, "warn") == 0 || strcasecmp(v, "warning") == 0) {
        return CLMHA_LOG_WARN;
    }
    if (strcasecmp(v, "debug") == 0 || strcmp(v, "2") == 0) {
        return CLMHA_LOG_DEBUG;
    }
    /* "1", "info" and anything else that turns logging on. */
    return CLMHA_LOG_INFO;
}

static const char *level_name(clmha_log_level level) {
    switch (level) {
    case CLMHA_LOG_ERROR:
        return "error";
    case CLMHA_LOG_WARN:
        return "warn";
    case CLMHA_LOG_INFO:
        return "info";
    case CLMHA_LOG_DEBUG:
        return "debug";
    case CLMHA_LOG_OFF:
        break;
    }
    return "off";
}

static void vlog(const clmha_context *ctx, clmha_log_level level, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));
static void vlog(const clmha_context *ctx, clmha_log_level level, const char *fmt, va_list ap) {
    clmha_log_fn fn = ctx ? ctx->log_fn : NULL;
    void *user = ctx ? ctx->log_user : NULL;
    clmha_log_level max;
    if (fn != NULL) {
        max = ctx->log_level;
    } else if (ctx != NULL ? ctx->log_stderr : clmha__getenv("CLMHA_LOG") != NULL) {
        /* Only an explicit CLMHA_LOG makes the library write to stderr (read with a context's
         * use_environment only; before any context, always). */
        max = ctx ? ctx->log_level : clmha__env_log_level();
    } else {
        return;
    }
    if (level > max || level == CLMHA_LOG_OFF) {
        return;
    }
    char msg[CLMHA__MSG_LEN];
    vsnprintf(msg, sizeof msg, fmt, ap);
    if (fn != NULL) {
        fn(level, msg, user);
    } else {
        fprintf(stderr, "clmha %s: %s\n", level_name(level), msg);
    }
}

void clmha__log(const clmha_context *ctx, clmha_log_level level, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vlog(ctx, level, fmt, ap);
    va_end(ap);
}

clmha_status clmha__fail(clmha_context *ctx, clmha_status status, const char *fmt, ...) {
    /* Formatted apart first: an argument may be the last error itself (a message passed on
     * from a lower call), which vsnprintf must not read while it writes there. */
    char msg[CLMHA__MSG_LEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    memcpy(thread_last_error, msg, sizeof thread_last_error);
    if (ctx != NULL) {
        memcpy(ctx->last_error, thread_last_error, sizeof ctx->last_error);
    }
    clmha__log(ctx, CLMHA_LOG_ERROR, "%s: %s", clmha_status_name(status), thread_last_error);
    return status;
}

clmha_status clmha__check_alive(clmha_context *ctx, const char *fn) {
    if (ctx != NULL && ctx->broken) {
        return clmha__fail(ctx, CLMHA_ERR_CONTEXT_BROKEN,
                           "%s: the context's device reported %s earlier; its queue cannot be "
                           "trusted: release the context and create a new one",
                           fn, clmha__cl_error_name(ctx->last_cl_error));
    }
    return CLMHA_OK;
}

clmha_status clmha__fail_cl(clmha_context *ctx, cl_int err, const char *what) {
    if (ctx != NULL) {
        ctx->last_cl_error = err;
        /* After out-of-resources the queue may hold half-done work (on some drivers the
         * device is gone for good): refuse further work rather than crash later. */
        if (err == CL_OUT_OF_RESOURCES) {
            ctx->broken = true;
        }
    }
    clmha_status st = CLMHA_ERR_OPENCL;
    if (err == CL_MEM_OBJECT_ALLOCATION_FAILURE) {
        st = CLMHA_ERR_OUT_OF_DEVICE_MEMORY;
    } else if (err == CL_OUT_OF_HOST_MEMORY) {
        st = CLMHA_ERR_OUT_OF_HOST_MEMORY;
    }
    return clmha__fail(ctx, st, "%s failed with %s (%d)", what, clmha__cl_error_name(err),
                       (int)err);
}

const char *clmha__cl_error_name(cl_int err) {
    switch (err) {
#define E(x)                                                                                       \
    case x:                                                                                        \
        return #x;
        E(CL_SUCCESS)
        E(CL_DEVICE_NOT_FOUND)
        E(CL_DEVICE_NOT_AVAILABLE)
        E(CL_COMPILER_NOT_AVAILABLE)
        E(CL_MEM_OBJECT_ALLOCATION_FAILURE)
        E(CL_OUT_OF_RESOURCES)
        E(CL_OUT_OF_HOST_MEMORY)
        E(CL_PROFILING_INFO_NOT_AVAILABLE)
        E(CL_MEM_COPY_OVERLAP)
        E(CL_IMAGE_FORMAT_MISMATCH)
        E(CL_IMAGE_FORMAT_NOT_SUPPORTED)
        E(CL_BUILD_PROGRAM_FAILURE)
        E(CL_MAP_FAILURE)
        E(CL_MISALIGNED_SUB_BUFFER_OFFSET)
        E(CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST)
        E(CL_COMPILE_PROGRAM_FAILURE)
        E(CL_LINKER_NOT_AVAILABLE)
        E(CL_LINK_PROGRAM_FAILURE)
        E(CL_DEVICE_PARTITION_FAILED)
        E(CL_KERNEL_ARG_INFO_NOT_AVAILABLE)
        E(CL_INVALID_VALUE)
        E(CL_INVALID_DEVICE_TYPE)
        E(CL_INVALID_PLATFORM)
        E(CL_INVALID_DEVICE)
        E(CL_INVALID_CONTEXT)
        E(CL_INVALID_QUEUE_PROPERTIES)
        E(CL_INVALID_COMMAND_QUEUE)
        E(CL_INVALID_HOST_PTR)
        E(CL_INVALID_MEM_OBJECT)
        E(CL_INVALID_IMAGE_FORMAT_DESCRIPTOR)
        E(CL_INVALID_IMAGE_SIZE)
        E(CL_INVALID_SAMPLER)
        E(CL_INVALID_BINARY)
        E(CL_INVALID_BUILD_OPTIONS)
        E(CL_INVALID_PROGRAM)
        E(CL_INVALID_PROGRAM_EXECUTABLE)
        E(CL_INVALID_KERNEL_NAME)
        E(CL_INVALID_KERNEL_DEFINITION)
        E(CL_INVALID_KERNEL)
        E(CL_INVALID_ARG_INDEX)
        E(CL_INVALID_ARG_VALUE)
        E(CL_INVALID_ARG_SIZE)
        E(CL_INVALID_KERNEL_ARGS)
        E(CL_INVALID_WORK_DIMENSION)
        E(CL_INVALID_WORK_GROUP_SIZE)
        E(CL_INVALID_WORK_ITEM_SIZE)
        E(CL_INVALID_GLOBAL_OFFSET)
        E(CL_INVALID_EVENT_WAIT_LIST)
        E(CL_INVALID_EVENT)
        E(CL_INVALID_OPERATION)
        E(CL_INVALID_GL_OBJECT)
        E(CL_INVALID_BUFFER_SIZE)
        E(CL_INVALID_MIP_LEVEL)
        E(CL_INVALID_GLOBAL_WORK_SIZE)
        E(CL_INVALID_PROPERTY)
        E(CL_INVALID_IMAGE_DESCRIPTOR)
        E(CL_INVALID_COMPILER_OPTIONS)
        E(CL_INVALID_LINKER_OPTIONS)
        E(CL_INVALID_DEVICE_PARTITION_COUNT)
#undef E
    default:
        break;
    }
    return (err == -1001) ? "CL_PLATFORM_NOT_FOUND_KHR" : "unknown OpenCL error";
}
