/*
 * program.c - kernel sources (embedded, or from CLMHA_KERNEL_DIR; a kernel file's
 * `#include "x.clh"` lines are replaced by those headers), program builds, the on-disk
 * program-binary cache, and checked kernel launches.
 *
 * The binary cache follows the design of ggml's: the file name is the XXH3-128 hash of
 * everything that can change the binary (source, build options, device name, driver version,
 * platform version, library version, cache-format version). The file starts with a header
 * (magic, format version, the key again, payload size and XXH3-64 checksum), is written to a
 * temporary file and renamed into place, and any problem reading it falls back to a source
 * build that replaces the file.
 */
#include "internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#define CACHE_MAGIC "CLMHABIN"
#define CACHE_FORMAT_VERSION 1u
#define BUILD_STD "-cl-std=CL1.2"

/* Header of a cache file; all fields little-endian as written by this host (the key covers
 * the device, so files never travel between machines usefully anyway). */
typedef struct cache_header {
    char magic[8];
    uint32_t format_version;
    uint32_t reserved;
    unsigned char key[16];
    uint64_t payload_size;
    uint64_t payload_hash;
} cache_header;

/* ---- sources ---- */

static clmha_status load_file(clmha_context *ctx, const char *name, char **src, size_t *len) {
    if (ctx->kernel_dir != NULL) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", ctx->kernel_dir, name);
        FILE *f = fopen(path, "rb");
        if (f == NULL) {
            return clmha__fail(ctx, CLMHA_ERR_KERNEL_SOURCE,
                               "kernel source \"%s\" not found (CLMHA_KERNEL_DIR is \"%s\"): %s",
                               path, ctx->kernel_dir, strerror(errno));
        }
        char *buf = NULL;
        size_t cap = 0, n = 0;
        for (;;) {
            if (n + 4096 + 1 > cap) {
                size_t ncap = cap ? cap * 2 : 65536;
                char *g = realloc(buf, ncap);
                if (g == NULL) {
                    free(buf);
                    fclose(f);
                    return clmha__fail(ctx, CLMHA_ERR_OUT_OF_HOST_MEMORY,
                                       "reading kernel source \"%s\": out of memory", path);
                }
                buf = g;
                cap = ncap;
            }
            size_t r = fread(buf + n, 1, cap - n - 1, f);
            n += r;
            if (r == 0) {
                break;
            }
        }
        int bad = ferror(f);
        fclose(f);
        if (bad) {
            free(buf);
            return clmha__fail(ctx, CLMHA_ERR_KERNEL_SOURCE, "reading kernel source \"%s\" failed",
                               path);
        }
        buf[n] = '\0';
        *src = buf;
        *len = n;
        return CLMHA_OK;
    }
    for (size_t i = 0; i < clmha__embedded_kernel_count; i++) {
        if (strcmp(clmha__embedded_kernels[i].name, name) == 0) {
            char *buf = malloc(clmha__embedded_kernels[i].size + 1);
            if (buf == NULL) {
                return clmha__fail(ctx, CLMHA_ERR_OUT_OF_HOST_MEMORY, "out of memory");
            }
            memcpy(buf, clmha__embedded_kernels[i].data, clmha__embedded_kernels[i].size);
            buf[clmha__embedded_kernels[i].size] = '\0';
            *src = buf;
            *len = clmha__embedded_kernels[i].size;
            return CLMHA_OK;
        }
    }
    return clmha__fail(ctx, CLMHA_ERR_KERNEL_SOURCE, "no embedded kernel named \"%s\"", name);
}

/* Appends @p n bytes of @p text to the growing buffer *buf (length *len, capacity *cap, always
 * NUL-terminated); false when out of memory. */
static bool append(char **buf, size_t *len, size_t *cap, const char *text, size_t n) {
    if (*len + n + 1 > *cap) {
        size_t ncap = *cap ? *cap : 4096;
        while (*len + n + 1 > ncap) {
            ncap *= 2;
        }
        char *g = realloc(*buf, ncap);
        if (g == NULL) {
            return false;
        }
        *buf = g, *cap = ncap;
    }
    memcpy(*buf + *len, text, n);
    *len += n;
    (*buf)[*len] = '\0';
    return true;
}

/* Appends the source of kernel file @p name to *buf with every line `#include "x.clh"`
 * replaced by that header's own source, headers included by headers too (at most @p depth
 * deep: the headers' include guards make a second copy of one harmless). The driver compiles
 * one self-contained text, whether the files are embedded or come from CLMHA_KERNEL_DIR. */
static clmha_status expand(clmha_context *ctx, const char *name, int depth, char **buf, size_t *len,
                           size_t *cap) {
    if (depth > 4) {
        return clmha__fail(ctx, CLMHA_ERR_KERNEL_SOURCE,
                           "kernel source \"%s\": headers nested more than 4 deep", name);
    }
    char *text = NULL;
    size_t n = 0;
    clmha_status st = load_file(ctx, name, &text, &n);
    for (const char *line = text; st == CLMHA_OK && line != NULL && *line != '\0';) {
        const char *nl = strchr(line, '\n');
        const size_t ll = nl ? (size_t)(nl - line) + 1 : strlen(line);
        const char *inc = "#include \"";
        if (strncmp(line, inc, strlen(inc)) == 0) {
            const char *open = line + strlen(inc), *close = memchr(open, '"', ll - strlen(inc));
            char header[256];
            if (close == NULL || close == open || (size_t)(close - open) >= sizeof header) {
                st = clmha__fail(ctx, CLMHA_ERR_KERNEL_SOURCE,
                                 "kernel source \"%s\": a malformed #include line", name);
                break;
            }
            memcpy(header, open, (size_t)(close - open));
            header[close - open] = '\0';
            st = expand(ctx, header, depth + 1, buf, len, cap);
        } else if (!append(buf, len, cap, line, ll)) {
            st = clmha__fail(ctx, CLMHA_ERR_OUT_OF_HOST_MEMORY, "out of memory");
        }
        line += ll;
    }
    free(text);
    return st;
}

/* The source of program @p name (one kernel file), its headers included. */
static clmha_status load_source(clmha_context *ctx, const char *name, char **src, size_t *len) {
    char *buf = NULL;
    size_t n = 0, cap = 0;
    clmha_status st = expand(ctx, name, 0, &buf, &n, &cap);
    if (st != CLMHA_OK) {
        free(buf);
        return st;
    }
    if (buf == NULL) {
        return clmha__fail(ctx, CLMHA_ERR_KERNEL_SOURCE, "kernel source \"%s\" is empty", name);
    }
    *src = buf;
    *len = n;
    return CLMHA_OK;
}

/* ---- the binary cache ---- */

static void hash_field(XXH3_state_t *s, const char *field) {
    /* Each field ends with a NUL so that ("ab", "c") and ("a", "bc") hash differently. */
    XXH3_128bits_update(s, field, strlen(field) + 1);
}

static bool cache_key(const clmha_context *ctx, const char *src, size_t len, const char *options,
                      XXH128_canonical_t *key) {
    XXH3_state_t *s = XXH3_createState();
    if (s == NULL) {
        return false;
    }
    char fmt[32];
    snprintf(fmt, sizeof fmt, "clmha-cache-format-%u", CACHE_FORMAT_VERSION);
    XXH3_128bits_reset(s);
    XXH3_128bits_update(s, src, len);
    XXH3_128bits_update(s, "", 1);
    hash_field(s, options);
    hash_field(s, ctx->info.name);
    hash_field(s, ctx->info.driver_version);
    hash_field(s, ctx->info.platform_version);
    hash_field(s, CLMHA_VERSION_STRING);
    hash_field(s, fmt);
    XXH128_canonicalFromHash(key, XXH3_128bits_digest(s));
    XXH3_freeState(s);
    return true;
}

static void cache_path(const clmha_context *ctx, const XXH128_canonical_t *key, char *path,
                       size_t len) {
    char hex[33];
    for (int i = 0; i < 16; i++) {
        snprintf(hex + 2 * i, 3, "%02x", key->digest[i]);
    }
    snprintf(path, len, "%s/%s.clbin", ctx->cache_dir, hex);
}

/* Reads and validates a cache file. Returns the payload (malloc'd) or NULL; *rejected tells a
 * present-but-bad file from a missing one. */
static unsigned char *cache_read(const char *path, const XXH128_canonical_t *key, size_t *size,
                                 bool *rejected) {
    *rejected = false;
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        return NULL;
    }
    cache_header h;
    unsigned char *payload = NULL;
    *rejected = true;
    if (fread(&h, sizeof h, 1, f) != 1 || memcmp(h.magic, CACHE_MAGIC, 8) != 0 ||
        h.format_version != CACHE_FORMAT_VERSION || memcmp(h.key, key->digest, 16) != 0 ||
        h.payload_size == 0 || h.payload_size > ((uint64_t)1 << 30)) {
        goto done;
    }
    payload = malloc((size_t)h.payload_size);
    if (payload == NULL || fread(payload, 1, (size_t)h.payload_size, f) != h.payload_size ||
        fgetc(f) != EOF || XXH3_64bits(payload, (size_t)h.payload_size) != h.payload_hash) {
        free(payload);
        payload = NULL;
        goto done;
    }
    *size = (size_t)h.payload_size;
    *rejected = false;
done:
    fclose(f);
    return payload;
}

bool clmha__make_dirs(const char *dir) {
    char tmp[4096];
    if (dir[0] == '\0') {
        return false;
    }
    snprintf(tmp, sizeof tmp, "%s", dir);
    for (char *p = tmp + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            if (mkdir(tmp, 0755) != 0 && errno != EEXIST) {
                return false;
            }
            *p = '/';
        }
    }
    if (mkdir(tmp, 0755) != 0 && errno != EEXIST) {
        return false;
    }
    struct stat st;
    return stat(tmp, &st) == 0 && S_ISDIR(st.st_mode);
}

static void cache_write(clmha_context *ctx, cl_program prog, const char *path,
                        const XXH128_canonical_t *key) {
    size_t bin_size = 0;
    unsigned char *bin = NULL;
    char tmp[4200];
    FILE *f = NULL;
    if (clGetProgramInfo(prog, CL_PROGRAM_BINARY_SIZES, sizeof bin_size, &bin_size, NULL) !=
            CL_SUCCESS ||
        bin_size == 0) {
        clmha__log(ctx, CLMHA_LOG_DEBUG, "binary cache: the driver gives no program binary");
        return;
    }
    bin = malloc(bin_size);
    if (bin == NULL ||
        clGetProgramInfo(prog, CL_PROGRAM_BINARIES, sizeof bin, &bin, NULL) != CL_SUCCESS) {
        goto done;
    }
    if (!clmha__make_dirs(ctx->cache_dir)) {
        clmha__log(ctx, CLMHA_LOG_WARN, "binary cache: cannot create folder \"%s\": %s",
                   ctx->cache_dir, strerror(errno));
        goto done;
    }
    cache_header h;
    memset(&h, 0, sizeof h);
    memcpy(h.magic, CACHE_MAGIC, 8);
    h.format_version = CACHE_FORMAT_VERSION;
    memcpy(h.key, key->digest, 16);
    h.payload_size = bin_size;
    h.payload_hash = XXH3_64bits(bin, bin_size);
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld.%p", path, (long)getpid(), (void *)&h);
    f = fopen(tmp, "wb");
    if (f == NULL) {
        clmha__log(ctx, CLMHA_LOG_WARN, "binary cache: cannot write \"%s\": %s", tmp,
                   strerror(errno));
        goto done;
    }
    bool ok = fwrite(&h, sizeof h, 1, f) == 1 && fwrite(bin, 1, bin_size, f) == bin_size;
    ok = (fclose(f) == 0) && ok;
    f = NULL;
    if (!ok || rename(tmp, path) != 0) {
        clmha__log(ctx, CLMHA_LOG_WARN, "binary cache: writing \"%s\" failed", path);
        remove(tmp);
        goto done;
    }
    ctx->stats.cache_files_written++;
done:
    free(bin);
}

/* ---- builds ---- */

static void keep_build_log(clmha_context *ctx, cl_program prog, const char *name,
                           const char *options) {
    size_t n = 0;
    char *log = NULL;
    if (clGetProgramBuildInfo(prog, ctx->device, CL_PROGRAM_BUILD_LOG, 0, NULL, &n) == CL_SUCCESS &&
        n > 0 && (log = malloc(n + 1)) != NULL) {
        if (clGetProgramBuildInfo(prog, ctx->device, CL_PROGRAM_BUILD_LOG, n, log, NULL) !=
            CL_SUCCESS) {
            log[0] = '\0';
        }
        log[n] = '\0';
    }
    const char *body = log ? log : "(the driver gave no build log)";
    size_t total = strlen(name) + strlen(options) + strlen(body) + 64;
    free(ctx->build_log);
    ctx->build_log = malloc(total);
    if (ctx->build_log != NULL) {
        snprintf(ctx->build_log, total, "program: %s\noptions: %s\n%s", name, options, body);
    }
    free(log);
}

/* Builds from a cached binary; false (and the program released) when the driver refuses it. */
/* Whether @p prog has every kernel the source declares ("__kernel ... void NAME("): a cache
 * file can carry a valid header around another program's binary, whose kernels would then be
 * missing at every run. A kernel inside an #if that the build leaves out counts as missing too,
 * which only costs a rebuild (clmha's own kernels have none). */
static bool has_source_kernels(cl_program prog, const char *src, size_t len) {
    size_t names_len = 0;
    if (clGetProgramInfo(prog, CL_PROGRAM_KERNEL_NAMES, 0, NULL, &names_len) != CL_SUCCESS ||
        names_len == 0) {
        return false;
    }
    char *names = malloc(names_len + 2);
    if (names == NULL ||
        clGetProgramInfo(prog, CL_PROGRAM_KERNEL_NAMES, names_len, names + 1, NULL) != CL_SUCCESS) {
        free(names);
        return false;
    }
    names[0] = ';'; /* ";a;b;" so that each name is found whole */
    names[names_len] = ';';
    names[names_len + 1] = '\0';
    bool all = true;
    const char *end = src + len;
    for (const char *p = src; all && (p = strstr(p, "__kernel")) != NULL && p < end; p += 8) {
        const char *v = strstr(p, "void");
        if (v == NULL) {
            break;
        }
        v += 4;
        while (*v == ' ' || *v == '\n' || *v == '\t') {
            v++;
        }
        size_t n = 0;
        while ((v[n] >= 'a' && v[n] <= 'z') || (v[n] >= 'A' && v[n] <= 'Z') ||
               (v[n] >= '0' && v[n] <= '9') || v[n] == '_') {
            n++;
        }
        char want[130];
        if (n == 0 || n > 120) {
            continue;
        }
        snprintf(want, sizeof want, ";%.*s;", (int)n, v);
        all = strstr(names, want) != NULL;
    }
    free(names);
    return all;
}

static bool build_from_binary(clmha_context *ctx, const unsigned char *bin, size_t size,
                              const char *options, cl_program *out) {
    cl_int status = CL_SUCCESS, err = CL_SUCCESS;
    cl_program prog =
        clCreateProgramWithBinary(ctx->cl_ctx, 1, &ctx->device, &size, &bin, &status, &err);
    if (err != CL_SUCCESS || status != CL_SUCCESS) {
        if (prog != NULL) {
            clReleaseProgram(prog);
        }
        return false;
    }
    if (clBuildProgram(prog, 1, &ctx->device, options, NULL, NULL) != CL_SUCCESS) {
        clReleaseProgram(prog);
        return false;
    }
    *out = prog;
    return true;
}

static clmha_status build_from_source(clmha_context *ctx, const char *name, const char *src,
                                      size_t len, const char *options, cl_program *out) {
    cl_int err = CL_SUCCESS;
    cl_program prog = clCreateProgramWithSource(ctx->cl_ctx, 1, &src, &len, &err);
    if (err != CL_SUCCESS) {
        return clmha__fail_cl(ctx, err, "clCreateProgramWithSource");
    }
    err = clBuildProgram(prog, 1, &ctx->device, options, NULL, NULL);
    if (err != CL_SUCCESS) {
        keep_build_log(ctx, prog, name, options);
        clReleaseProgram(prog);
        ctx->last_cl_error = err;
        /* The first line of the log usually names the error; the whole log is kept. */
        char first[256] = "";
        const char *log = ctx->build_log;
        for (int skip = 0; log != NULL && skip < 2; skip++) {
            log = strchr(log, '\n');
            log = log ? log + 1 : NULL;
        }
        if (log != NULL) {
            snprintf(first, sizeof first, "%s", log);
            char *nl = strchr(first, '\n');
            if (nl) {
                *nl = '\0';
            }
        }
        return clmha__fail(ctx, CLMHA_ERR_BUILD_FAILURE,
                           "building kernel program \"%s\" failed with %s (options: %s): %s; "
                           "the whole log is in clmha_context_build_log()",
                           name, clmha__cl_error_name(err), options, first);
    }
    ctx->stats.programs_built_from_source++;
    *out = prog;
    return CLMHA_OK;
}

clmha_status clmha__program_get(clmha_context *ctx, const char *name, const char *defines,
                                cl_program *program) {
    char options[1024];
    snprintf(options, sizeof options, "%s%s%s", BUILD_STD, *defines ? " " : "", defines);
    for (clmha__program *p = ctx->programs; p != NULL; p = p->next) {
        if (strcmp(p->name, name) == 0 && strcmp(p->options, options) == 0) {
            *program = p->program;
            return CLMHA_OK;
        }
    }
    char *src = NULL;
    size_t len = 0;
    cl_program prog = NULL;
    clmha__program *entry = NULL;
    clmha_status st = load_source(ctx, name, &src, &len);
    if (st != CLMHA_OK) {
        return st;
    }
    XXH128_canonical_t key;
    char path[4200] = "";
    bool use_cache = ctx->cache_dir != NULL && cache_key(ctx, src, len, options, &key);
    if (use_cache) {
        cache_path(ctx, &key, path, sizeof path);
        bool rejected = false;
        size_t size = 0;
        unsigned char *bin = cache_read(path, &key, &size, &rejected);
        if (bin != NULL && build_from_binary(ctx, bin, size, options, &prog) &&
            !has_source_kernels(prog, src, len)) {
            clReleaseProgram(prog);
            prog = NULL;
        }
        if (prog != NULL) {
            ctx->stats.programs_loaded_from_cache++;
            clmha__log(ctx, CLMHA_LOG_DEBUG, "program %s [%s] loaded from %s", name, options, path);
        } else if (bin != NULL || rejected) {
            ctx->stats.cache_files_rejected++;
            clmha__log(ctx, CLMHA_LOG_INFO, "binary cache: %s is corrupt or stale; rebuilding",
                       path);
        }
        free(bin);
    }
    if (prog == NULL) {
        st = build_from_source(ctx, name, src, len, options, &prog);
        if (st != CLMHA_OK) {
            goto cleanup;
        }
        clmha__log(ctx, CLMHA_LOG_DEBUG, "program %s [%s] built from source", name, options);
        if (use_cache) {
            cache_write(ctx, prog, path, &key);
        }
    }
    entry = calloc(1, sizeof *entry);
    if (entry == NULL || (entry->name = clmha__strdup(name)) == NULL ||
        (entry->options = clmha__strdup(options)) == NULL) {
        st = clmha__fail(ctx, CLMHA_ERR_OUT_OF_HOST_MEMORY, "out of memory");
        goto cleanup;
    }
    entry->program = prog;
    entry->next = ctx->programs;
    ctx->programs = entry;
    *program = prog;
    prog = NULL;
    entry = NULL;
cleanup:
    if (entry != NULL) {
        free(entry->name);
        free(entry->options);
        free(entry);
    }
    if (prog != NULL) {
        clReleaseProgram(prog);
    }
    free(src);
    return st;
}

clmha_status clmha__kernel_create(clmha_context *ctx, cl_program program, const char *kernel,
                                  clmha__kernel *out) {
    cl_int err = CL_SUCCESS;
    size_t wg = 0;
    cl_ulong lmem = 0;
    cl_kernel k = clCreateKernel(program, kernel, &err);
    if (err != CL_SUCCESS) {
        ctx->last_cl_error = err;
        return clmha__fail(
            ctx, err == CL_INVALID_KERNEL_NAME ? CLMHA_ERR_KERNEL_SOURCE : CLMHA_ERR_OPENCL,
            "creating kernel \"%s\" failed with %s", kernel, clmha__cl_error_name(err));
    }
    /* The kernel's limits on this device never change: ask once, check every launch. */
    err = clGetKernelWorkGroupInfo(k, ctx->device, CL_KERNEL_WORK_GROUP_SIZE, sizeof wg, &wg, NULL);
    if (err == CL_SUCCESS) {
        err = clGetKernelWorkGroupInfo(k, ctx->device, CL_KERNEL_LOCAL_MEM_SIZE, sizeof lmem, &lmem,
                                       NULL);
    }
    if (err != CL_SUCCESS) {
        clReleaseKernel(k);
        return clmha__fail_cl(ctx, err, "clGetKernelWorkGroupInfo");
    }
    out->k = k;
    out->name = kernel;
    out->max_wg = wg < ctx->info.max_work_item_sizes[0] ? wg : ctx->info.max_work_item_sizes[0];
    out->local_mem = lmem;
    return CLMHA_OK;
}

void clmha__kernel_release(clmha__kernel *k) {
    if (k->k != NULL) {
        clReleaseKernel(k->k);
    }
    *k = (clmha__kernel){0};
}

static clmha_status set_arg(clmha_context *ctx, const clmha__kernel *k, cl_uint index, size_t size,
                            const void *value) {
    cl_int err = clSetKernelArg(k->k, index, size, value);
    if (err != CL_SUCCESS) {
        ctx->last_cl_error = err;
        return clmha__fail(ctx, CLMHA_ERR_OPENCL, "setting argument %u of kernel %s failed with %s",
                           index, k->name, clmha__cl_error_name(err));
    }
    return CLMHA_OK;
}

clmha_status clmha__set_args(clmha_context *ctx, const clmha__kernel *k, const clmha__karg *args,
                             size_t n) {
    return clmha__set_args_from(ctx, k, 0, args, n);
}

clmha_status clmha__set_args_from(clmha_context *ctx, const clmha__kernel *k, size_t first,
                                  const clmha__karg *args, size_t n) {
    for (size_t i = 0; i < n; i++) {
        clmha_status st = set_arg(ctx, k, (cl_uint)(first + i), args[i].size, args[i].value);
        if (st != CLMHA_OK) {
            return st;
        }
    }
    return CLMHA_OK;
}

clmha_status clmha__launch(clmha_context *ctx, const clmha__kernel *k, size_t groups,
                           size_t local) {
    const char *name = k->name;
    if (local == 0 || local > k->max_wg || local > ctx->info.max_work_group_size) {
        return clmha__fail(ctx, CLMHA_ERR_DEVICE_LIMIT,
                           "kernel %s: work-group size %zu exceeds the limit %zu of this kernel "
                           "on device \"%s\"",
                           name, local, k->max_wg, ctx->info.name);
    }
    if (k->local_mem > ctx->info.local_mem_bytes) {
        return clmha__fail(ctx, CLMHA_ERR_DEVICE_LIMIT,
                           "kernel %s: needs %llu bytes of local memory, device \"%s\" has %llu",
                           name, (unsigned long long)k->local_mem, ctx->info.name,
                           (unsigned long long)ctx->info.local_mem_bytes);
    }
    size_t global;
    if (groups == 0) {
        return CLMHA_OK;
    }
    if (!clmha__mul(groups, local, &global)) {
        return clmha__fail(ctx, CLMHA_ERR_DEVICE_LIMIT, "kernel %s: %zu work-groups overflow", name,
                           groups);
    }
    cl_event *ev = clmha__prof_slot(ctx);
    cl_int err = clEnqueueNDRangeKernel(ctx->queue, k->k, 1, NULL, &global, &local, 0, NULL, ev);
    if (err == CL_SUCCESS) {
        if (ctx->n_launched < CLMHA__LAUNCH_LOG) {
            ctx->launched[ctx->n_launched] = (clmha__launch_rec){name, groups, local};
        }
        ctx->n_launched++;
        clmha__prof_keep(ctx, ev);
    }
    if (err != CL_SUCCESS) {
        char what[128];
        snprintf(what, sizeof what, "enqueueing kernel %s", name);
        return clmha__fail_cl(ctx, err, what);
    }
    return CLMHA_OK;
}
