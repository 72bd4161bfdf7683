/*
 * device.c - enumerating OpenCL platforms and devices, and choosing one from the explicit
 * options, the CLMHA_PLATFORM / CLMHA_DEVICE / CLMHA_DEVICE_TYPE environment variables, or
 * the default (the first GPU, else the first device). A value that matches nothing is an
 * error listing every device: never a silent fallback.
 */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

const char *clmha_device_type_name(cl_device_type type) {
    if (type & CL_DEVICE_TYPE_GPU) {
        return "gpu";
    }
    if (type & CL_DEVICE_TYPE_CPU) {
        return "cpu";
    }
    if (type & CL_DEVICE_TYPE_ACCELERATOR) {
        return "accelerator";
    }
    if (type & CL_DEVICE_TYPE_CUSTOM) {
        return "custom";
    }
    if (type & CL_DEVICE_TYPE_DEFAULT) {
        return "default";
    }
    return "other";
}

static void info_string(cl_device_id dev, cl_device_info what, char *out, size_t len) {
    out[0] = '\0';
    if (clGetDeviceInfo(dev, what, len, out, NULL) != CL_SUCCESS) {
        out[0] = '\0';
    }
    out[len - 1] = '\0';
}

static void platform_string(cl_platform_id p, cl_platform_info what, char *out, size_t len) {
    out[0] = '\0';
    if (clGetPlatformInfo(p, what, len, out, NULL) != CL_SUCCESS) {
        out[0] = '\0';
    }
    out[len - 1] = '\0';
}

clmha_status clmha__query_device(cl_platform_id platform, cl_device_id device,
                                 clmha_device_info *info) {
    memset(info, 0, sizeof *info);
    info->platform = platform;
    info->device = device;
    platform_string(platform, CL_PLATFORM_NAME, info->platform_name, sizeof info->platform_name);
    platform_string(platform, CL_PLATFORM_VENDOR, info->platform_vendor,
                    sizeof info->platform_vendor);
    platform_string(platform, CL_PLATFORM_VERSION, info->platform_version,
                    sizeof info->platform_version);
    info_string(device, CL_DEVICE_NAME, info->name, sizeof info->name);
    info_string(device, CL_DEVICE_VENDOR, info->vendor, sizeof info->vendor);
    info_string(device, CL_DEVICE_VERSION, info->version, sizeof info->version);
    info_string(device, CL_DRIVER_VERSION, info->driver_version, sizeof info->driver_version);

    cl_uint cu = 0;
    cl_ulong gmem = 0, lmem = 0, maxalloc = 0;
    size_t wg = 0;
    size_t items[3] = {0, 0, 0};
    cl_device_fp_config dfp = 0;
    cl_int err = clGetDeviceInfo(device, CL_DEVICE_TYPE, sizeof info->type, &info->type, NULL);
    err |= clGetDeviceInfo(device, CL_DEVICE_MAX_COMPUTE_UNITS, sizeof cu, &cu, NULL);
    err |= clGetDeviceInfo(device, CL_DEVICE_GLOBAL_MEM_SIZE, sizeof gmem, &gmem, NULL);
    err |= clGetDeviceInfo(device, CL_DEVICE_LOCAL_MEM_SIZE, sizeof lmem, &lmem, NULL);
    err |= clGetDeviceInfo(device, CL_DEVICE_MAX_MEM_ALLOC_SIZE, sizeof maxalloc, &maxalloc, NULL);
    err |= clGetDeviceInfo(device, CL_DEVICE_MAX_WORK_GROUP_SIZE, sizeof wg, &wg, NULL);
    err |= clGetDeviceInfo(device, CL_DEVICE_MAX_WORK_ITEM_SIZES, sizeof items, items, NULL);
    if (err != CL_SUCCESS) {
        return CLMHA_ERR_OPENCL;
    }
    /* Optional in OpenCL 1.2 without cl_khr_fp64: a failure just means no fp64. */
    if (clGetDeviceInfo(device, CL_DEVICE_DOUBLE_FP_CONFIG, sizeof dfp, &dfp, NULL) != CL_SUCCESS) {
        dfp = 0;
    }
    info->compute_units = cu;
    info->global_mem_bytes = gmem;
    info->local_mem_bytes = lmem;
    info->max_alloc_bytes = maxalloc;
    info->max_work_group_size = wg;
    memcpy(info->max_work_item_sizes, items, sizeof items);

    size_t ext_len = 0;
    if (clGetDeviceInfo(device, CL_DEVICE_EXTENSIONS, 0, NULL, &ext_len) == CL_SUCCESS &&
        ext_len > 0) {
        char *ext = malloc(ext_len + 1);
        if (ext != NULL) {
            if (clGetDeviceInfo(device, CL_DEVICE_EXTENSIONS, ext_len, ext, NULL) == CL_SUCCESS) {
                ext[ext_len] = '\0';
                info->fp16 = strstr(ext, "cl_khr_fp16") != NULL;
                info->fp64 = strstr(ext, "cl_khr_fp64") != NULL;
            }
            free(ext);
        }
    }
    info->fp64 = info->fp64 || dfp != 0;
    return CLMHA_OK;
}

/* A growing list of device descriptions. */
typedef struct device_list {
    clmha_device_info *items;
    size_t n;
} device_list;

/* Appends the devices of platform @p p (index @p pi) to @p out; a platform without devices
 * adds nothing, and a device that cannot describe itself is skipped. */
static clmha_status list_platform(cl_platform_id p, cl_uint pi, device_list *out) {
    cl_uint nd = 0;
    cl_int err = clGetDeviceIDs(p, CL_DEVICE_TYPE_ALL, 0, NULL, &nd);
    if (err == CL_DEVICE_NOT_FOUND || nd == 0) {
        return CLMHA_OK;
    }
    if (err != CL_SUCCESS) {
        return clmha__fail_cl(NULL, err, "clGetDeviceIDs");
    }
    cl_device_id *devs = calloc(nd, sizeof *devs);
    clmha_device_info *grown = realloc(out->items, (out->n + nd) * sizeof *grown);
    if (grown != NULL) {
        out->items = grown;
    }
    if (devs == NULL || grown == NULL) {
        free(devs);
        return clmha__fail(NULL, CLMHA_ERR_OUT_OF_HOST_MEMORY, "clmha_list_devices: out of memory");
    }
    err = clGetDeviceIDs(p, CL_DEVICE_TYPE_ALL, nd, devs, NULL);
    for (cl_uint d = 0; err == CL_SUCCESS && d < nd; d++) {
        clmha_device_info *info = &out->items[out->n];
        if (clmha__query_device(p, devs[d], info) == CLMHA_OK) {
            info->platform_index = pi;
            info->device_index = d;
            out->n++;
        }
    }
    free(devs);
    return err == CL_SUCCESS ? CLMHA_OK : clmha__fail_cl(NULL, err, "clGetDeviceIDs");
}

clmha_status clmha_list_devices(clmha_device_info **list, size_t *count) {
    if (list == NULL || count == NULL) {
        return clmha__fail(NULL, CLMHA_ERR_NULL_ARGUMENT,
                           "clmha_list_devices: list and count must not be NULL");
    }
    cl_uint np = 0;
    cl_int err = clGetPlatformIDs(0, NULL, &np);
    if (err == -1001 /* CL_PLATFORM_NOT_FOUND_KHR */ || (err == CL_SUCCESS && np == 0)) {
        return clmha__fail(NULL, CLMHA_ERR_NO_PLATFORM,
                           "no OpenCL platform found: install an ICD (Debian: pocl-opencl-icd) "
                           "and check OCL_ICD_VENDORS");
    }
    if (err != CL_SUCCESS) {
        return clmha__fail_cl(NULL, err, "clGetPlatformIDs");
    }
    cl_platform_id *plats = calloc(np, sizeof *plats);
    if (plats == NULL) {
        return clmha__fail(NULL, CLMHA_ERR_OUT_OF_HOST_MEMORY, "clmha_list_devices: out of memory");
    }
    device_list out = {NULL, 0};
    clmha_status st = CLMHA_OK;
    err = clGetPlatformIDs(np, plats, NULL);
    if (err != CL_SUCCESS) {
        st = clmha__fail_cl(NULL, err, "clGetPlatformIDs");
    }
    for (cl_uint p = 0; st == CLMHA_OK && p < np; p++) {
        st = list_platform(plats[p], p, &out);
    }
    free(plats);
    if (st == CLMHA_OK && out.n == 0) {
        st = clmha__fail(NULL, CLMHA_ERR_NO_PLATFORM,
                         "OpenCL platforms exist but none has a device (check the ICD and, for "
                         "PoCL, POCL_DEVICES)");
    }
    if (st != CLMHA_OK) {
        free(out.items);
        return st;
    }
    *list = out.items;
    *count = out.n;
    return CLMHA_OK;
}

void clmha_free_device_list(clmha_device_info *list) {
    free(list);
}

/* One selection value and where it came from, for messages. */
typedef struct spec {
    const char *value;
    const char *source; /* "option platform", "CLMHA_PLATFORM", ... */
} spec;

static spec pick(const clmha_context_options *o, const char *opt, const char *opt_name,
                 const char *env) {
    spec s = {NULL, NULL};
    if (opt != NULL && *opt != '\0') {
        s.value = opt;
        s.source = opt_name;
    } else if (o == NULL || o->use_environment) {
        s.value = clmha__getenv(env);
        s.source = env;
    }
    return s;
}

static void list_all(char *buf, size_t len, const clmha_device_info *list, size_t count) {
    size_t pos = strlen(buf);
    size_t last_p = (size_t)-1;
    for (size_t i = 0; i < count && pos < len; i++) {
        int n = 0;
        if (list[i].platform_index != last_p) {
            last_p = list[i].platform_index;
            n = snprintf(buf + pos, len - pos, "\n  platform %zu: %s (%s)", last_p,
                         list[i].platform_name, list[i].platform_vendor);
            pos += n > 0 ? (size_t)n : 0;
            if (pos >= len) {
                break;
            }
        }
        n = snprintf(buf + pos, len - pos, "\n    device %zu: %s [%s]", list[i].device_index,
                     list[i].name, clmha_device_type_name(list[i].type));
        pos += n > 0 ? (size_t)n : 0;
    }
}

/* Fails with @p status and a message that ends with the list of devices there are. */
static clmha_status with_devices(clmha_status status, const clmha_device_info *list, size_t count,
                                 const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static clmha_status with_devices(clmha_status status, const clmha_device_info *list, size_t count,
                                 const char *fmt, ...) {
    char msg[CLMHA__MSG_LEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    size_t used = strlen(msg);
    snprintf(msg + used, sizeof msg - used, ". Available devices:");
    list_all(msg, sizeof msg, list, count);
    return clmha__fail(NULL, status, "%s", msg);
}

/* The platform filter: the index, or the first platform whose name or vendor contains the
 * value; *have is false without a filter. */
static clmha_status match_platform(const spec *ps, const clmha_device_info *list, size_t count,
                                   bool *have, size_t *platform) {
    *have = false;
    if (ps->value == NULL) {
        return CLMHA_OK;
    }
    size_t idx;
    const bool by_index = clmha__parse_index(ps->value, &idx);
    for (size_t i = 0; i < count && !*have; i++) {
        *have = by_index ? list[i].platform_index == idx
                         : clmha__contains_ci(list[i].platform_name, ps->value) ||
                               clmha__contains_ci(list[i].platform_vendor, ps->value);
        *platform = list[i].platform_index;
    }
    if (!*have) {
        return with_devices(CLMHA_ERR_DEVICE_NOT_FOUND, list, count,
                            "%s=\"%s\" matches no platform (expected a platform index or a "
                            "substring of a platform name or vendor)",
                            ps->source, ps->value);
    }
    return CLMHA_OK;
}

/* The device-type filter (CL_DEVICE_TYPE_ALL without one). */
static clmha_status match_type(const spec *ts, const clmha_device_info *list, size_t count,
                               cl_device_type *type) {
    static const struct {
        const char *name;
        cl_device_type type;
    } types[] = {{"gpu", CL_DEVICE_TYPE_GPU},
                 {"cpu", CL_DEVICE_TYPE_CPU},
                 {"accelerator", CL_DEVICE_TYPE_ACCELERATOR},
                 {"all", CL_DEVICE_TYPE_ALL}};
    *type = CL_DEVICE_TYPE_ALL;
    if (ts->value == NULL) {
        return CLMHA_OK;
    }
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        if (strcasecmp(ts->value, types[i].name) == 0) {
            *type = types[i].type;
            return CLMHA_OK;
        }
    }
    return with_devices(CLMHA_ERR_INVALID_ARGUMENT, list, count,
                        "%s=\"%s\" is not a device type (expected gpu, cpu, accelerator or all)",
                        ts->source, ts->value);
}

/* The device among the candidates @p cand (indices into list, in enumeration order): the one
 * the device spec names (an index into the candidates or a substring of a name), else the first
 * GPU (where no type was asked for), else the first. @p why says which rule chose it. */
static clmha_status match_device(const spec *ds, bool have_type, const clmha_device_info *list,
                                 size_t count, const size_t *cand, size_t nc, const char *scope,
                                 size_t *pick_i, char *why, size_t why_len) {
    if (ds->value != NULL) {
        size_t idx;
        bool found = false;
        if (clmha__parse_index(ds->value, &idx)) {
            found = idx < nc;
            *pick_i = found ? cand[idx] : 0;
        }
        for (size_t c = 0; c < nc && !found && !clmha__parse_index(ds->value, &idx); c++) {
            found = clmha__contains_ci(list[cand[c]].name, ds->value);
            *pick_i = cand[c];
        }
        if (!found) {
            return with_devices(CLMHA_ERR_DEVICE_NOT_FOUND, list, count,
                                "%s=\"%s\" matches no device among %s (expected an index into "
                                "those devices or a substring of a device name)",
                                ds->source, ds->value, scope);
        }
        snprintf(why, why_len, "%s=\"%s\" among %s", ds->source, ds->value, scope);
        return CLMHA_OK;
    }
    *pick_i = cand[0];
    snprintf(why, why_len, "first device of %s", scope);
    if (have_type) {
        return CLMHA_OK;
    }
    for (size_t c = 0; c < nc; c++) {
        if (list[cand[c]].type & CL_DEVICE_TYPE_GPU) {
            *pick_i = cand[c];
            snprintf(why, why_len, "default: first GPU of %s", scope);
            return CLMHA_OK;
        }
    }
    snprintf(why, why_len, "default: no GPU, first device of %s", scope);
    return CLMHA_OK;
}

clmha_status clmha_select_device(const clmha_context_options *options,
                                 const clmha_device_info *list, size_t count, size_t *selected,
                                 char *reason, size_t reason_len) {
    if (list == NULL || selected == NULL) {
        return clmha__fail(NULL, CLMHA_ERR_NULL_ARGUMENT,
                           "clmha_select_device: list and selected must not be NULL");
    }
    if (count == 0) {
        return clmha__fail(NULL, CLMHA_ERR_NO_PLATFORM, "clmha_select_device: no devices");
    }
    const spec ps =
        pick(options, options ? options->platform : NULL, "option platform", "CLMHA_PLATFORM");
    const spec ts = pick(options, options ? options->device_type : NULL, "option device_type",
                         "CLMHA_DEVICE_TYPE");
    const spec ds =
        pick(options, options ? options->device : NULL, "option device", "CLMHA_DEVICE");
    bool have_platform;
    size_t platform = 0;
    cl_device_type type;
    clmha_status st = match_platform(&ps, list, count, &have_platform, &platform);
    if (st != CLMHA_OK || (st = match_type(&ts, list, count, &type)) != CLMHA_OK) {
        return st;
    }
    /* The candidates, in enumeration order. */
    size_t *cand = malloc(count * sizeof *cand);
    size_t nc = 0;
    if (cand == NULL) {
        return clmha__fail(NULL, CLMHA_ERR_OUT_OF_HOST_MEMORY,
                           "clmha_select_device: out of memory");
    }
    for (size_t i = 0; i < count; i++) {
        if ((!have_platform || list[i].platform_index == platform) &&
            (type == CL_DEVICE_TYPE_ALL || (list[i].type & type) != 0)) {
            cand[nc++] = i;
        }
    }
    char scope[256], why[512];
    snprintf(scope, sizeof scope, "%s%s%s%s", have_platform ? "platform " : "all platforms",
             have_platform ? ps.value : "", ts.value ? ", type " : "", ts.value ? ts.value : "");
    size_t pick_i = 0;
    st = nc == 0 ? with_devices(CLMHA_ERR_DEVICE_NOT_FOUND, list, count,
                                "no device is left after the filters (%s)", scope)
                 : match_device(&ds, ts.value != NULL, list, count, cand, nc, scope, &pick_i, why,
                                sizeof why);
    free(cand);
    if (st != CLMHA_OK) {
        return st;
    }
    if (have_platform && ds.value == NULL) {
        size_t used = strlen(why);
        snprintf(why + used, sizeof why - used, " (%s=\"%s\")", ps.source, ps.value);
    }
    *selected = pick_i;
    if (reason != NULL && reason_len > 0) {
        snprintf(reason, reason_len, "%s", why);
    }
    return CLMHA_OK;
}
