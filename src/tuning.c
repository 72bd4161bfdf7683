/*
 * tuning.c - the per-device table of clmha's launch settings (work-group sizes, chunk and tile
 * sizes, the own GEMM's builds and where it takes over from CLBlast): which row a device takes
 * and what that row holds. CLMHA_TUNING picks a row by name; environment variables override
 * single settings (docs/devices.md). Whatever a row says, the layer clamps every setting to
 * what the compiled kernel (CL_KERNEL_WORK_GROUP_SIZE) and the device's local memory allow.
 */
#include "internal.h"

#include <stdio.h>
#include <string.h>

/* A row applies to devices of any of the types in `type` whose vendor or name contains
 * `match` (case-insensitive; NULL: any). The first row that applies wins; the last applies to
 * every device. */
typedef struct tuning_row {
    cl_device_type type;
    const char *match;
    clmha__tuning t;
} tuning_row;

static const tuning_row rows[] = {
    /* Measured on PoCL (AVX-512, docs/performance.md): one work-item streams a chunk of keys
     * with 16-wide vector loads; the own GEMM wins up to about 12 rows and, with 12 x 32
     * blocks, beyond. */
    {CL_DEVICE_TYPE_CPU,
     NULL,
     {.name = "cpu",
      .small_m = 12,
      .wg = 64,
      .split_wg = 1,
      .split_chunk = 256,
      .groups_per_cu = 4,
      .gemm_cols = 32,
      .gemm_rows = 12,
      .gemm_rows_few = 4,
      .tile_rows = 8,
      .key_tile = 64}},
    /* GPUs and everything else: not measured by clmha yet, so the safe defaults. Work-groups of
     * 64 (a multiple of every GPU's SIMD width: NVIDIA's 32, AMD's 32 or 64, Intel's 8 to 32,
     * Mali's 4 to 16, Adreno's 64 or 128), split attention with as many work-items a group as
     * local memory allows, query tiles with 64-key tiles in local memory, and CLBlast, whose
     * tiled kernels are tuned per GPU, for every product of more than 3 rows. A measured GPU
     * gets its own row above this one, matched by vendor or name. */
    {~(cl_device_type)0,
     NULL,
     {.name = "gpu",
      .small_m = 3,
      .wg = 64,
      .split_wg = 0,
      .split_chunk = 256,
      .groups_per_cu = 4,
      .gemm_cols = 4,
      .gemm_rows = 1,
      .gemm_rows_few = 1,
      .tile_rows = 8,
      .key_tile = 64}},
};

const clmha__tuning *clmha__tuning_for(const clmha_device_info *info) {
    const size_t n = sizeof rows / sizeof rows[0];
    for (size_t i = 0; i + 1 < n; i++) {
        if ((rows[i].type & info->type) != 0 &&
            (rows[i].match == NULL || clmha__contains_ci(info->vendor, rows[i].match) ||
             clmha__contains_ci(info->name, rows[i].match))) {
            return &rows[i].t;
        }
    }
    return &rows[n - 1].t;
}

const clmha__tuning *clmha__tuning_named(const char *name) {
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        if (strcmp(rows[i].t.name, name) == 0) {
            return &rows[i].t;
        }
    }
    return NULL;
}

size_t clmha__tuning_names(char *buf, size_t len) {
    size_t used = 0;
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        int w = snprintf(buf + used, len - used, "%s%s", i ? ", " : "", rows[i].t.name);
        if (w < 0 || (size_t)w >= len - used) {
            break;
        }
        used += (size_t)w;
    }
    return used;
}

const char *clmha_device_tuning_name(const clmha_device_info *info) {
    return info == NULL ? NULL : clmha__tuning_for(info)->name;
}
