/*
 * tuning.c - the per-device table of clmha's launch settings (work-group sizes, chunk and tile
 * sizes, the own GEMM's builds and where it takes over from CLBlast): which row a device takes
 * and what that row holds. The row setting picks a row by name; the other settings override
 * single values (settings.c, docs/devices.md). Whatever a row says, the layer clamps every
 * setting to what the compiled kernel (CL_KERNEL_WORK_GROUP_SIZE) and the device's local memory
 * allow.
 */
#include "internal.h"

#include <stdio.h>
#include <string.h>

/* A row applies to devices of any of the types in `type` whose vendor or name contains one of
 * the '|'-separated words of `match` (case-insensitive; NULL: any) and, where `lanes_below` is
 * set, whose native float vector (CL_DEVICE_NATIVE_VECTOR_WIDTH_FLOAT) is known and narrower.
 * The first row that applies wins; the last applies to every device. */
typedef struct tuning_row {
    cl_device_type type;
    const char *match;
    cl_uint lanes_below;
    clmha__tuning t;
} tuning_row;

/* The GPU rows share the kernels' shapes; what differs is justified row by row. Figures called
 * "the report" are docs/gpu-report.md's (tools/gpu-report.sh): at 64 work-items the decode split
 * kernel uses at most 64 registers on sm_80 and runs 14-16 waves a SIMD on gfx1030/gfx1100, the
 * prefill tile kernel 78-92 registers and 8 waves with key tiles within 16 KiB. */
#define GPU_ROW(NAME, WG, GROUPS_PER_CU, KEY_TILE, LANE_FLOATS)                                    \
    {                                                                                              \
        .name = (NAME), .small_m = 3, .wg = (WG), .split_wg = 0, .split_chunk = 256,               \
        .groups_per_cu = (GROUPS_PER_CU), .gemm_cols = 4, .gemm_rows = 1, .gemm_block_cols = 32,   \
        .gemm_rows_few = 1, .tile_rows = 8, .key_tile = (KEY_TILE), .tile_local = 16384,           \
        .lane_floats = (LANE_FLOATS)                                                               \
    }

/* The CPU rows. Measured on PoCL (AVX-512, docs/performance.md): one work-item streams a chunk
 * of keys with 16-wide vector loads; the own GEMM wins up to about 12 rows and, with blocks of
 * 12 rows x 32 columns, beyond. Those blocks' sums take 24 of AVX-512's 32 registers of 16
 * floats. CPUs with 8 float lanes (AVX2, 16 registers) spilled most of them in PoCL's build on
 * a Zen 3: its prefill projections took 12 x 32 blocks 39 ms at T = 512, 2 x 32 blocks 23 ms
 * and 6 x 16 blocks (12 registers of sums) 18 ms (8 x 16: 45 ms). The batched decode build's 4
 * x 32 was as fast as 1 or 2 rows there, so it stays. 4-lane CPUs (SSE, NEON) take the narrow
 * row, not measured. */
#define CPU_ROW(NAME, GEMM_ROWS, BLOCK_COLS)                                                       \
    {                                                                                              \
        .name = (NAME), .small_m = 12, .wg = 64, .split_wg = 1, .split_chunk = 256,                \
        .groups_per_cu = 4, .gemm_cols = 32, .gemm_rows = (GEMM_ROWS),                             \
        .gemm_block_cols = (BLOCK_COLS), .gemm_rows_few = 4, .tile_rows = 8, .key_tile = 64,       \
        .lane_floats = 16                                                                          \
    }

static const tuning_row rows[] = {
    {CL_DEVICE_TYPE_CPU, NULL, 16, CPU_ROW("cpu_narrow", 6, 16)},
    {CL_DEVICE_TYPE_CPU, NULL, 0, CPU_ROW("cpu", 12, 32)},
    /* NVIDIA: warps of 32, up to 32 resident blocks an SM (sm_80). The report's 64 registers
     * leave room for 16 decode work-groups of 64 an SM, so decode aims at 8 groups a compute
     * unit (an SM) rather than 4, to keep more of the cache's reads in flight. */
    {CL_DEVICE_TYPE_GPU | CL_DEVICE_TYPE_ACCELERATOR, "NVIDIA", 0,
     GPU_ROW("nvidia", 64, 8, 64, 16)},
    /* AMD (GCN/CDNA wave64, RDNA wave32; vendor "Advanced Micro Devices", or Mesa's "AMD"):
     * 64 work-items are one GCN wavefront or two RDNA ones; 64 KiB of LDS a CU. The report's
     * 14-16 waves a SIMD for the decode kernel fit 8 groups a CU. */
    {CL_DEVICE_TYPE_GPU | CL_DEVICE_TYPE_ACCELERATOR, "Advanced Micro Devices|AMD", 0,
     GPU_ROW("amd_gpu", 64, 8, 64, 16)},
    /* Intel (Gen9 to Xe): IGC compiles SIMD8, 16 or 32 (the report shows which); groups of 64
     * are a multiple of each. Compute units are EUs, so 4 groups a compute unit is already
     * hundreds of groups; 64 KiB of shared local memory a sub-slice. With 16 output floats a
     * lane IGC compiles the prefill kernel SIMD8 only; with 8 (twice the lanes a row) SIMD16
     * (tgllp, head dims 64 and 128). */
    {CL_DEVICE_TYPE_GPU | CL_DEVICE_TYPE_ACCELERATOR, "Intel", 0,
     GPU_ROW("intel_gpu", 64, 4, 64, 8)},
    /* Arm Mali (Bifrost, Valhall): local memory is ordinary system memory behind the same
     * caches as global memory (Arm's Mali OpenCL guide), so staging key tiles in it buys
     * nothing: no query tiles (key_tile 0), prefill takes the split kernel a row a group. */
    {CL_DEVICE_TYPE_GPU | CL_DEVICE_TYPE_ACCELERATOR, "Mali", 0, GPU_ROW("mali", 64, 4, 0, 16)},
    /* Qualcomm Adreno: waves of 64 or 128 fibers (Qualcomm's Adreno OpenCL guide asks for
     * work-group sizes that are multiples of them); 32 KiB of fast local memory, half of it for
     * key tiles. */
    {CL_DEVICE_TYPE_GPU | CL_DEVICE_TYPE_ACCELERATOR, "Adreno|Qualcomm", 0,
     GPU_ROW("adreno", 128, 4, 64, 16)},
    /* Every other device: the GPU defaults above. */
    {~(cl_device_type)0, NULL, 0, GPU_ROW("gpu", 64, 4, 64, 16)},
};

/* Whether @p text contains one of the '|'-separated words of @p words (case-insensitive). */
static bool contains_any(const char *text, const char *words) {
    char word[64];
    for (const char *w = words; *w != '\0';) {
        size_t n = strcspn(w, "|");
        if (n > 0 && n < sizeof word) {
            memcpy(word, w, n);
            word[n] = '\0';
            if (clmha__contains_ci(text, word)) {
                return true;
            }
        }
        w += n + (w[n] == '|');
    }
    return false;
}

const clmha__tuning *clmha__tuning_for(const clmha_device_info *info) {
    const size_t n = sizeof rows / sizeof rows[0];
    cl_uint lanes = 0; /* unknown: no device to ask (a description only), or it did not say */
    if (info->device != NULL && clGetDeviceInfo(info->device, CL_DEVICE_NATIVE_VECTOR_WIDTH_FLOAT,
                                                sizeof lanes, &lanes, NULL) != CL_SUCCESS) {
        lanes = 0;
    }
    for (size_t i = 0; i + 1 < n; i++) {
        if ((rows[i].type & info->type) != 0 &&
            (rows[i].lanes_below == 0 || (lanes != 0 && lanes < rows[i].lanes_below)) &&
            (rows[i].match == NULL || contains_any(info->vendor, rows[i].match) ||
             contains_any(info->name, rows[i].match))) {
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
