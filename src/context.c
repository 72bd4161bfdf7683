/*
 * context.c - the clmha_context: creation on a selected device or over an application's
 * OpenCL objects, option resolution (cache and kernel folders, logging), accessors, and
 * release of everything the context owns.
 */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

void clmha_context_options_init(clmha_context_options *options) {
    if (options == NULL) {
        return;
    }
    memset(options, 0, sizeof *options);
    options->use_environment = true;
    options->use_tuned = true;
}

/* Resolves the cache folder: option, CLMHA_CACHE_DIR, $XDG_CACHE_HOME/clmha, ~/.cache/clmha.
 * "off" (any case) disables the cache. Sets *out to NULL when off. */
static clmha_status resolve_cache_dir(clmha_context *ctx, const clmha_context_options *o,
                                      char **out) {
    const char *v = o->cache_dir;
    if (v == NULL && o->use_environment) {
        v = clmha__getenv("CLMHA_CACHE_DIR");
    }
    *out = NULL;
    if (v != NULL && strcasecmp(v, "off") == 0) {
        return CLMHA_OK;
    }
    if (v != NULL && v[0] == '\0') {
        return clmha__fail(ctx, CLMHA_ERR_INVALID_ARGUMENT,
                           "options.cache_dir is \"\"; expected a folder, \"off\" (no binary "
                           "cache) or NULL (CLMHA_CACHE_DIR, else $XDG_CACHE_HOME/clmha or "
                           "~/.cache/clmha)");
    }
    char buf[4096];
    if (v != NULL) {
        snprintf(buf, sizeof buf, "%s", v);
    } else {
        const char *xdg = clmha__getenv("XDG_CACHE_HOME");
        const char *home = clmha__getenv("HOME");
        if (xdg != NULL) {
            snprintf(buf, sizeof buf, "%s/clmha", xdg);
        } else if (home != NULL) {
            snprintf(buf, sizeof buf, "%s/.cache/clmha", home);
        } else {
            clmha__log(ctx, CLMHA_LOG_INFO, "no HOME or XDG_CACHE_HOME: binary cache off");
            return CLMHA_OK;
        }
    }
    *out = clmha__strdup(buf);
    if (*out == NULL) {
        return clmha__fail(ctx, CLMHA_ERR_OUT_OF_HOST_MEMORY,
                           "clmha_context_create: out of memory");
    }
    return CLMHA_OK;
}

/* The settings (settings.c: options.settings, options.tune, CLMHA_TUNE) and the row of the
 * tuning table (tuning.c) they name, else the device's. Of the settings, these apply to the
 * context: max_work_group_size and max_local_mem lower the limits clmha assumes for the device
 * (never raise them), so that a large device behaves like a small mobile GPU, which is how the
 * small-device paths are tested without one; max_item_loops lowers the loop budget; gemm picks
 * the projection kernel, gemm_small_m the most rows the own GEMM takes; poison_buffers fills
 * new buffers with NaN. The others apply to each layer (layer_build.c). */
static clmha_status apply_settings(clmha_context *ctx, const clmha_context_options *options) {
    clmha_status st = clmha__settings_resolve(ctx, options, &ctx->settings);
    if (st != CLMHA_OK) {
        return st;
    }
    size_t v = 0;
    const bool named = clmha__setting(ctx, CLMHA__SET_ROW, &v);
    ctx->tuning = named ? *clmha__tuning_named(ctx->settings.row) : *clmha__tuning_for(&ctx->info);
    ctx->small_m = ctx->tuning.small_m;
    /* The most loop iterations a work-item of an attention kernel or the own GEMM does in all
     * (internal.h): Mesa's llvmpipe ends a work-item silently after 65535 (its loop limiter
     * counts every loop of the invocation), so half of that there; elsewhere a bound that keeps
     * one work-item's time far from a GPU watchdog. */
    ctx->item_loops = clmha__contains_ci(ctx->info.name, "llvmpipe") ? 32768 : 1u << 20;
    if (clmha__setting(ctx, CLMHA__SET_MAX_ITEM_LOOPS, &v) && v < ctx->item_loops) {
        ctx->item_loops = v;
    }
    char in_force[512];
    clmha_context_settings(ctx, in_force, sizeof in_force);
    clmha__log(ctx, CLMHA_LOG_INFO, "settings: %s", in_force);
    bool capped = false;
    if (clmha__setting(ctx, CLMHA__SET_MAX_WG, &v)) {
        capped = true;
        if (v < ctx->info.max_work_group_size) {
            ctx->info.max_work_group_size = v;
        }
        for (int i = 0; i < 3; i++) {
            if (v < ctx->info.max_work_item_sizes[i]) {
                ctx->info.max_work_item_sizes[i] = v;
            }
        }
    }
    if (clmha__setting(ctx, CLMHA__SET_MAX_LOCAL_MEM, &v)) {
        capped = true;
        if (v < ctx->info.local_mem_bytes) {
            ctx->info.local_mem_bytes = v;
        }
    }
    ctx->poison = clmha__setting(ctx, CLMHA__SET_POISON, &v) && v != 0;
    if (clmha__setting(ctx, CLMHA__SET_GEMM, &v)) {
        if (v == 2) {
            ctx->own_gemm = true;
        } else if (v == 1) {
            ctx->small_m = 0;
            ctx->clblast_only = true;
        }
    }
    if (clmha__setting(ctx, CLMHA__SET_GEMM_SMALL_M, &v)) {
        ctx->small_m = v;
    }
    if (capped) {
        clmha__log(ctx, CLMHA_LOG_INFO, "device limits capped: work-group %zu, local memory %llu",
                   ctx->info.max_work_group_size, (unsigned long long)ctx->info.local_mem_bytes);
    }
    return CLMHA_OK;
}

clmha_status clmha__buffer_create(clmha_context *ctx, size_t bytes, const char *what, cl_mem *out) {
    cl_int err = CL_SUCCESS;
    cl_mem buf = clCreateBuffer(ctx->cl_ctx, CL_MEM_READ_WRITE, bytes, NULL, &err);
    if (err != CL_SUCCESS) {
        char msg[160];
        snprintf(msg, sizeof msg, "allocating %s (%zu bytes, clCreateBuffer)", what, bytes);
        return clmha__fail_cl(ctx, err, msg);
    }
    if (ctx->poison) {
        /* A quiet NaN in every float (and 0x7f in every other byte) until somebody writes. */
        clmha_status st = clmha__fill(ctx, buf, 0, bytes, 0x7fc0007fu, "poisoning a new buffer");
        if (st != CLMHA_OK) {
            clReleaseMemObject(buf);
            return st;
        }
    }
    *out = buf;
    return CLMHA_OK;
}

/* One fill launch: n units (words or bytes) from unit offset off. */
static clmha_status fill_launch(clmha_context *ctx, clmha__kernel *k, cl_mem buf, size_t off,
                                size_t n, cl_uint value, const char *what) {
    if (n == 0) {
        return CLMHA_OK;
    }
    cl_ulong off64 = off, n64 = n;
    cl_uchar byte = (cl_uchar)(value & 0xffu);
    const bool words = k == &ctx->k_fill_words;
    const clmha__karg args[] = {CLMHA__ARG(buf), CLMHA__ARG(off64), CLMHA__ARG(n64),
                                words ? (clmha__karg)CLMHA__ARG(value)
                                      : (clmha__karg)CLMHA__ARG(byte)};
    size_t local = k->max_wg < 256 ? k->max_wg : 256;
    while (local & (local - 1)) {
        local &= local - 1; /* a power of two */
    }
    clmha_status st = clmha__set_args(ctx, k, args, 4);
    if (st == CLMHA_OK) {
        st = clmha__launch(ctx, k, (n + local - 1) / local, local);
    }
    if (st != CLMHA_OK) {
        char msg[CLMHA__MSG_LEN];
        snprintf(msg, sizeof msg, "%s", clmha_last_error());
        cl_int code = ctx->last_cl_error;
        st = clmha__fail(ctx, st, "%s: %s", what, msg);
        ctx->last_cl_error = code;
    }
    return st;
}

clmha_status clmha__fill_prepare(clmha_context *ctx) {
    if (ctx->k_fill_words.k != NULL) {
        return CLMHA_OK;
    }
    cl_program prog = NULL;
    clmha_status st = clmha__program_get(ctx, "fill.cl", "", &prog);
    if (st == CLMHA_OK) {
        st = clmha__kernel_create(ctx, prog, "fill_words", &ctx->k_fill_words);
    }
    if (st == CLMHA_OK) {
        st = clmha__kernel_create(ctx, prog, "fill_bytes", &ctx->k_fill_bytes);
    }
    if (st != CLMHA_OK) {
        clmha__kernel_release(&ctx->k_fill_words);
        clmha__kernel_release(&ctx->k_fill_bytes);
    }
    return st;
}

clmha_status clmha__fill(clmha_context *ctx, cl_mem buf, size_t offset, size_t bytes,
                         cl_uint pattern, const char *what) {
    clmha_status prep = clmha__fill_prepare(ctx);
    if (prep != CLMHA_OK) {
        return prep;
    }
    /* Bytes before the first aligned word, whole words, then the bytes after the last. */
    size_t head = (4 - offset % 4) % 4;
    head = head < bytes ? head : bytes;
    size_t words = (bytes - head) / 4;
    size_t tail = bytes - head - words * 4;
    clmha_status st = fill_launch(ctx, &ctx->k_fill_bytes, buf, offset, head, pattern, what);
    if (st == CLMHA_OK) {
        st = fill_launch(ctx, &ctx->k_fill_words, buf, (offset + head) / 4, words, pattern, what);
    }
    if (st == CLMHA_OK) {
        st = fill_launch(ctx, &ctx->k_fill_bytes, buf, offset + head + words * 4, tail, pattern,
                         what);
    }
    return st;
}

/* Allocates a context and applies the options that do not depend on the device. */
static clmha_status context_alloc(const clmha_context_options *options, clmha_context **out) {
    clmha_context_options defaults;
    if (options == NULL) {
        clmha_context_options_init(&defaults);
        options = &defaults;
    }
    clmha_context *ctx = calloc(1, sizeof *ctx);
    if (ctx == NULL) {
        return clmha__fail(NULL, CLMHA_ERR_OUT_OF_HOST_MEMORY,
                           "clmha_context_create: out of memory");
    }
    ctx->log_fn = options->log_fn;
    ctx->log_user = options->log_user;
    /* CLMHA_LOG, like every variable, only with use_environment: it sets the level and sends
     * the messages to stderr where no log_fn takes them. */
    ctx->log_stderr = options->use_environment && clmha__getenv("CLMHA_LOG") != NULL;
    ctx->log_level = options->log_level != CLMHA_LOG_OFF ? options->log_level
                     : options->use_environment          ? clmha__env_log_level()
                                                         : CLMHA_LOG_WARN;
    clmha_status st = resolve_cache_dir(ctx, options, &ctx->cache_dir);
    if (st == CLMHA_OK) {
        const char *kd = options->kernel_dir;
        if (kd == NULL && options->use_environment) {
            kd = clmha__getenv("CLMHA_KERNEL_DIR");
        }
        if (kd != NULL && (ctx->kernel_dir = clmha__strdup(kd)) == NULL) {
            st = clmha__fail(ctx, CLMHA_ERR_OUT_OF_HOST_MEMORY,
                             "clmha_context_create: out of memory");
        }
    }
    if (st != CLMHA_OK) {
        clmha_context_release(ctx);
        return st;
    }
    *out = ctx;
    return CLMHA_OK;
}

clmha_status clmha_context_create(const clmha_context_options *options, clmha_context **out) {
    if (out == NULL) {
        return clmha__fail(NULL, CLMHA_ERR_NULL_ARGUMENT,
                           "clmha_context_create: ctx (the output pointer) must not be NULL");
    }
    clmha_context *ctx = NULL;
    clmha_device_info *list = NULL;
    size_t count = 0, sel = 0;
    char reason[512];
    clmha_status st = context_alloc(options, &ctx);
    if (st != CLMHA_OK) {
        return st;
    }
    st = clmha_list_devices(&list, &count);
    if (st == CLMHA_OK) {
        st = clmha_select_device(options, list, count, &sel, reason, sizeof reason);
    }
    if (st != CLMHA_OK) {
        /* Keep the message of the selection failure on the thread; mirror it in the log. */
        clmha__log(ctx, CLMHA_LOG_ERROR, "%s", clmha_last_error());
        goto cleanup;
    }
    ctx->info = list[sel];
    ctx->platform = list[sel].platform;
    ctx->device = list[sel].device;

    cl_int err = CL_SUCCESS;
    cl_context_properties props[] = {CL_CONTEXT_PLATFORM, (cl_context_properties)ctx->platform, 0};
    ctx->cl_ctx = clCreateContext(props, 1, &ctx->device, NULL, NULL, &err);
    if (err != CL_SUCCESS) {
        st = clmha__fail_cl(ctx, err, "clCreateContext");
        goto cleanup;
    }
    ctx->profile =
        (options && options->profile) ||
        ((options == NULL || options->use_environment) && clmha__getenv("CLMHA_PROFILE") != NULL &&
         strcmp(clmha__getenv("CLMHA_PROFILE"), "0") != 0);
    ctx->queue = clCreateCommandQueue(ctx->cl_ctx, ctx->device,
                                      ctx->profile ? CL_QUEUE_PROFILING_ENABLE : 0, &err);
    if (err != CL_SUCCESS) {
        st = clmha__fail_cl(ctx, err, "clCreateCommandQueue");
        goto cleanup;
    }
    if ((st = apply_settings(ctx, options)) != CLMHA_OK) {
        goto cleanup;
    }
    clmha__log(ctx, CLMHA_LOG_INFO, "device \"%s\" on \"%s\" (%s)", ctx->info.name,
               ctx->info.platform_name, reason);
    *out = ctx;
    ctx = NULL;
cleanup:
    clmha_free_device_list(list);
    clmha_context_release(ctx);
    return st;
}

clmha_status clmha_context_create_from_cl(cl_context cl_ctx, cl_device_id device,
                                          cl_command_queue queue,
                                          const clmha_context_options *options,
                                          clmha_context **out) {
    if (out == NULL || cl_ctx == NULL || device == NULL || queue == NULL) {
        return clmha__fail(NULL, CLMHA_ERR_NULL_ARGUMENT,
                           "clmha_context_create_from_cl: %s must not be NULL",
                           out == NULL      ? "ctx (the output pointer)"
                           : cl_ctx == NULL ? "cl_ctx"
                           : device == NULL ? "device"
                                            : "queue");
    }
    clmha_context *ctx = NULL;
    clmha_status st = context_alloc(options, &ctx);
    if (st != CLMHA_OK) {
        return st;
    }
    cl_context qctx = NULL;
    cl_device_id qdev = NULL;
    cl_command_queue_properties qprops = 0;
    cl_platform_id plat = NULL;
    cl_int err = clGetCommandQueueInfo(queue, CL_QUEUE_CONTEXT, sizeof qctx, &qctx, NULL);
    err |= clGetCommandQueueInfo(queue, CL_QUEUE_DEVICE, sizeof qdev, &qdev, NULL);
    err |= clGetCommandQueueInfo(queue, CL_QUEUE_PROPERTIES, sizeof qprops, &qprops, NULL);
    if (err != CL_SUCCESS) {
        st = clmha__fail(ctx, CLMHA_ERR_INVALID_ARGUMENT,
                         "clmha_context_create_from_cl: queue is not a valid command queue");
        goto cleanup;
    }
    if (qctx != cl_ctx || qdev != device) {
        st = clmha__fail(ctx, CLMHA_ERR_INVALID_ARGUMENT,
                         "clmha_context_create_from_cl: queue must belong to cl_ctx and device");
        goto cleanup;
    }
    if (qprops & CL_QUEUE_OUT_OF_ORDER_EXEC_MODE_ENABLE) {
        st = clmha__fail(ctx, CLMHA_ERR_INVALID_ARGUMENT,
                         "clmha_context_create_from_cl: queue must be in-order (clmha relies on "
                         "in-order execution between its kernels)");
        goto cleanup;
    }
    err = clGetDeviceInfo(device, CL_DEVICE_PLATFORM, sizeof plat, &plat, NULL);
    if (err != CL_SUCCESS || clmha__query_device(plat, device, &ctx->info) != CLMHA_OK) {
        st = clmha__fail(ctx, CLMHA_ERR_INVALID_ARGUMENT,
                         "clmha_context_create_from_cl: device is not a valid OpenCL device");
        goto cleanup;
    }
    if ((st = apply_settings(ctx, options)) != CLMHA_OK) {
        goto cleanup;
    }
    ctx->profile = options && options->profile;
    if (ctx->profile && !(qprops & CL_QUEUE_PROFILING_ENABLE)) {
        st = clmha__fail(ctx, CLMHA_ERR_INVALID_ARGUMENT,
                         "clmha_context_create_from_cl: options.profile needs a queue created "
                         "with CL_QUEUE_PROFILING_ENABLE");
        goto cleanup;
    }
    clRetainContext(cl_ctx);
    ctx->cl_ctx = cl_ctx;
    clRetainCommandQueue(queue);
    ctx->queue = queue;
    ctx->platform = plat;
    ctx->device = device;
    *out = ctx;
    ctx = NULL;
cleanup:
    clmha_context_release(ctx);
    return st;
}

void clmha_context_release(clmha_context *ctx) {
    if (ctx == NULL) {
        return;
    }
    if (ctx->queue != NULL) {
        clFinish(ctx->queue);
    }
    for (size_t i = 0; i < ctx->prof_n; i++) {
        clReleaseEvent(ctx->prof_events[i]);
        if (ctx->prof_starts[i] != NULL) {
            clReleaseEvent(ctx->prof_starts[i]);
        }
    }
    free(ctx->prof_events);
    free(ctx->prof_starts);
    free(ctx->prof_kinds);
    clmha__kernel_release(&ctx->k_fill_words);
    clmha__kernel_release(&ctx->k_fill_bytes);
    clmha__program *p = ctx->programs;
    while (p != NULL) {
        clmha__program *next = p->next;
        clReleaseProgram(p->program);
        free(p->name);
        free(p->options);
        free(p);
        p = next;
    }
    if (ctx->queue != NULL) {
        clReleaseCommandQueue(ctx->queue);
    }
    if (ctx->cl_ctx != NULL) {
        clReleaseContext(ctx->cl_ctx);
    }
    free(ctx->cache_dir);
    free(ctx->kernel_dir);
    free(ctx->build_log);
    free(ctx);
}

clmha_status clmha_context_finish(clmha_context *ctx) {
    if (ctx == NULL) {
        return clmha__fail(NULL, CLMHA_ERR_NULL_ARGUMENT, "clmha_context_finish: ctx is NULL");
    }
    clmha_status st = clmha__check_alive(ctx, "clmha_context_finish");
    if (st != CLMHA_OK) {
        return st;
    }
    cl_int err = clFinish(ctx->queue);
    if (err != CL_SUCCESS) {
        return clmha__fail_cl(ctx, err, "clFinish");
    }
    return CLMHA_OK;
}

const char *clmha_context_last_error(const clmha_context *ctx) {
    return ctx ? ctx->last_error : "";
}

cl_int clmha_context_last_cl_error(const clmha_context *ctx) {
    return ctx ? ctx->last_cl_error : 0;
}

int clmha_context_last_clblast_error(const clmha_context *ctx) {
    return ctx ? ctx->last_clblast_error : 0;
}

const char *clmha_context_build_log(const clmha_context *ctx) {
    return (ctx && ctx->build_log) ? ctx->build_log : "";
}

clmha_status clmha_context_device(const clmha_context *ctx, clmha_device_info *info) {
    if (ctx == NULL || info == NULL) {
        return clmha__fail(NULL, CLMHA_ERR_NULL_ARGUMENT, "clmha_context_device: %s is NULL",
                           ctx ? "info" : "ctx");
    }
    *info = ctx->info;
    return CLMHA_OK;
}

const char *clmha_context_tuning_name(const clmha_context *ctx) {
    return ctx ? ctx->tuning.name : NULL;
}

const char *clmha_context_cache_dir(const clmha_context *ctx) {
    return ctx ? ctx->cache_dir : NULL;
}

cl_context clmha_context_cl_context(const clmha_context *ctx) {
    return ctx ? ctx->cl_ctx : NULL;
}

cl_command_queue clmha_context_queue(const clmha_context *ctx) {
    return ctx ? ctx->queue : NULL;
}

clmha_status clmha_context_get_stats(const clmha_context *ctx, clmha_context_stats *stats) {
    if (ctx == NULL || stats == NULL) {
        return clmha__fail(NULL, CLMHA_ERR_NULL_ARGUMENT, "clmha_context_get_stats: %s is NULL",
                           ctx ? "stats" : "ctx");
    }
    *stats = ctx->stats;
    return CLMHA_OK;
}

cl_event *clmha__prof_slot(clmha_context *ctx) {
    if (!ctx->profile) {
        return NULL;
    }
    if (ctx->prof_n == ctx->prof_cap) {
        size_t cap = ctx->prof_cap ? 2 * ctx->prof_cap : 64;
        cl_event *ev = realloc(ctx->prof_events, cap * sizeof *ev);
        if (ev != NULL) {
            ctx->prof_events = ev;
        }
        int *kinds = realloc(ctx->prof_kinds, cap * sizeof *kinds);
        if (kinds != NULL) {
            ctx->prof_kinds = kinds;
        }
        cl_event *starts = realloc(ctx->prof_starts, cap * sizeof *starts);
        if (starts != NULL) {
            ctx->prof_starts = starts;
        }
        if (ev == NULL || kinds == NULL || starts == NULL) {
            return NULL; /* out of memory: this launch goes uncounted */
        }
        ctx->prof_cap = cap;
    }
    ctx->prof_events[ctx->prof_n] = NULL;
    return &ctx->prof_events[ctx->prof_n];
}

void clmha__prof_keep(clmha_context *ctx, cl_event *slot) {
    clmha__prof_keep_span(ctx, NULL, slot);
}

cl_event clmha__prof_marker(clmha_context *ctx) {
    cl_event m = NULL;
    if (ctx->profile && clEnqueueMarkerWithWaitList(ctx->queue, 0, NULL, &m) != CL_SUCCESS) {
        m = NULL;
    }
    return m;
}

void clmha__prof_keep_span(clmha_context *ctx, cl_event marker, cl_event *slot) {
    if (slot != NULL && *slot != NULL) {
        ctx->prof_starts[ctx->prof_n] = marker;
        ctx->prof_kinds[ctx->prof_n++] = ctx->prof_category;
    } else if (marker != NULL) {
        clReleaseEvent(marker);
    }
}

clmha_status clmha_context_take_profile(clmha_context *ctx, clmha_profile *out) {
    if (ctx == NULL || out == NULL) {
        return clmha__fail(ctx, CLMHA_ERR_NULL_ARGUMENT, "clmha_context_take_profile: %s is NULL",
                           ctx ? "profile" : "ctx");
    }
    if (!ctx->profile) {
        return clmha__fail(ctx, CLMHA_ERR_INVALID_ARGUMENT,
                           "clmha_context_take_profile: the context was created without "
                           "options.profile (or CLMHA_PROFILE=1)");
    }
    clmha_status st = clmha_context_finish(ctx);
    if (st != CLMHA_OK) {
        return st;
    }
    memset(out, 0, sizeof *out);
    for (size_t i = 0; i < ctx->prof_n; i++) {
        cl_ulong t0 = 0, t1 = 0;
        cl_event from = ctx->prof_starts[i] ? ctx->prof_starts[i] : ctx->prof_events[i];
        cl_profiling_info from_what =
            ctx->prof_starts[i] ? CL_PROFILING_COMMAND_END : CL_PROFILING_COMMAND_START;
        if (clGetEventProfilingInfo(from, from_what, sizeof t0, &t0, NULL) == CL_SUCCESS &&
            clGetEventProfilingInfo(ctx->prof_events[i], CL_PROFILING_COMMAND_END, sizeof t1, &t1,
                                    NULL) == CL_SUCCESS &&
            t1 >= t0) {
            double s = (double)(t1 - t0) * 1e-9;
            if (ctx->prof_kinds[i] == CLMHA__PROF_PROJECTION) {
                out->projection_s += s;
            } else if (ctx->prof_kinds[i] == CLMHA__PROF_ATTENTION) {
                out->attention_s += s;
            } else {
                out->other_s += s;
            }
            out->launches++;
        }
        clReleaseEvent(ctx->prof_events[i]);
        if (ctx->prof_starts[i] != NULL) {
            clReleaseEvent(ctx->prof_starts[i]);
        }
    }
    ctx->prof_n = 0;
    return CLMHA_OK;
}

clmha_status clmha_context_warm_up(clmha_context *ctx) {
    if (ctx == NULL) {
        return clmha__fail(NULL, CLMHA_ERR_NULL_ARGUMENT, "clmha_context_warm_up: ctx is NULL");
    }
    for (size_t i = 0; i < clmha__embedded_kernel_count; i++) {
        /* Every kernel file is a program; the headers (.clh) are only included by them. */
        const char *name = clmha__embedded_kernels[i].name;
        const size_t n = strlen(name);
        if (n < 3 || strcmp(name + n - 3, ".cl") != 0) {
            continue;
        }
        cl_program prog;
        clmha_status st = clmha__program_get(ctx, name, "", &prog);
        if (st != CLMHA_OK) {
            return st;
        }
    }
    return CLMHA_OK;
}
