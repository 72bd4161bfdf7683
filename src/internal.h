/*
 * internal.h - private declarations shared by clmha's source files: the context, tensor and
 * layer structs, error reporting, checked size arithmetic, program builds and launches.
 * Internal non-static symbols are prefixed clmha__ and are never exported.
 */
#ifndef CLMHA_INTERNAL_H
#define CLMHA_INTERNAL_H

#include "clmha.h"

#include <stdarg.h>

#define CLMHA__MSG_LEN 2048

/* One compiled program, keyed by kernel file name and build options. */
typedef struct clmha__program {
    char *name;
    char *options;
    cl_program program;
    struct clmha__program *next;
} clmha__program;

/* Bytes per element and name of a dtype. */
static inline size_t clmha__dtype_size(clmha_dtype dt) {
    return dt == CLMHA_UINT8 || dt == CLMHA_INT8 ? 1 : dt == CLMHA_FLOAT16 ? 2 : 4;
}
static inline const char *clmha__dtype_name(clmha_dtype dt) {
    return dt == CLMHA_UINT8     ? "uint8"
           : dt == CLMHA_INT8    ? "int8"
           : dt == CLMHA_FLOAT16 ? "float16"
           : dt == CLMHA_INT32   ? "int32"
                                 : "float32";
}

/* A kernel with the limits the device gives it, asked once when it is created. */
typedef struct clmha__kernel {
    cl_kernel k;
    const char *name;   /* a string literal */
    size_t max_wg;      /* CL_KERNEL_WORK_GROUP_SIZE, at most max_work_item_sizes[0] */
    cl_ulong local_mem; /* CL_KERNEL_LOCAL_MEM_SIZE */
} clmha__kernel;

/* One row of the per-device tuning table (tuning.c): the defaults of a device's launch
 * settings, before environment overrides and the kernels' own limits. */
typedef struct clmha__tuning {
    const char *name;     /* the row's name: the row setting, clmha_device_tuning_name */
    size_t small_m;       /* products of at most this many rows take the own GEMM (CLBlast runs) */
    size_t wg;            /* the attention kernels' largest work-group (a power of two) */
    size_t split_wg;      /* split attention's work-group: 1, or 0 for wg as local memory allows */
    size_t split_chunk;   /* the fewest keys a split attention work-group takes */
    size_t groups_per_cu; /* split attention aims at this many work-groups a compute unit */
    size_t gemm_cols; /* own GEMM: 32 (the wide and multi-row builds) or 4 columns a work-item */
    size_t gemm_rows; /* rows of the row-blocked build (1: none) */
    size_t gemm_block_cols; /* ... and its columns a work-item: 32 or 16 */
    size_t gemm_rows_few;   /* rows of the few-rows build (1: none) */
    size_t tile_rows;       /* query tiles with one work-item a group: at most this many rows */
    size_t key_tile;        /* query tiles with several work-items: at most this many keys */
    size_t tile_local;      /* ... and at most this many bytes of local memory (0: half of it) */
    size_t lane_floats;     /* GPU query tiles: at most this many output floats a work-item */
} clmha__tuning;

/* The table row for a device (by type, then vendor or name), and the row called @p name
 * (NULL: none). */
const clmha__tuning *clmha__tuning_for(const clmha_device_info *info);
const clmha__tuning *clmha__tuning_named(const char *name);
/* Writes the rows' names, comma-separated, into @p buf; returns the length written. */
size_t clmha__tuning_names(char *buf, size_t len);

/* The launch settings that may override the tuning row (settings.c; docs/devices.md). */
typedef enum clmha__setting_id {
    CLMHA__SET_ROW,
    CLMHA__SET_MAX_WG,
    CLMHA__SET_MAX_LOCAL_MEM,
    CLMHA__SET_MAX_ITEM_LOOPS,
    CLMHA__SET_POISON,
    CLMHA__SET_GEMM, /* 0 auto, 1 clblast, 2 own */
    CLMHA__SET_GEMM_SMALL_M,
    CLMHA__SET_GEMM_COLS,
    CLMHA__SET_GEMM_ROWS,
    CLMHA__SET_GEMM_ROWS_FEW,
    CLMHA__SET_SPLIT,
    CLMHA__SET_SPLIT_WG,
    CLMHA__SET_SPLIT_CHUNK,
    CLMHA__SET_HEADS,
    CLMHA__SET_KEY_BLOCK,
    CLMHA__SET_TILE,
    CLMHA__SET_TILE_ROWS,
    CLMHA__SET_KEY_TILE,
    CLMHA__SET_TAIL,
    CLMHA__SET_QKV_FUSE,
    CLMHA__SET_PREFETCH,
    CLMHA__SET_COUNT
} clmha__setting_id;

/* The settings a context was given: v[id] where from[id] (the source: "CLMHA_TUNE",
 * "options.tune" or "options.settings") is not NULL; switches are 0 or 1. */
typedef struct clmha__settings {
    size_t v[CLMHA__SET_COUNT];
    const char *from[CLMHA__SET_COUNT];
    char row[32];
} clmha__settings;

/* Parses "key=value,..." from @p source over *s (all or nothing; a failure names the key and
 * its allowed values). */
clmha_status clmha__settings_parse(clmha_context *ctx, const char *text, const char *source,
                                   clmha__settings *s);
/* As clmha__settings_parse, but a failure only writes its message into @p err (for sources
 * whose errors are not the caller's: the tuned-settings file). */
bool clmha__settings_try(const char *text, const char *source, clmha__settings *s, char *err,
                         size_t err_len);
/* options.settings over *s, as clmha__settings_parse. */
clmha_status clmha__settings_from_struct(clmha_context *ctx, const clmha_settings *c,
                                         clmha__settings *s);
/* The settings of a new context: this device's tuned settings (tuned.c, unless
 * options.use_tuned is false), CLMHA_TUNE (when @p o is NULL or use_environment), then
 * options.tune, then options.settings, key by key. */
clmha_status clmha__settings_resolve(clmha_context *ctx, const clmha_context_options *o,
                                     clmha__settings *s);
/* Sets ctx->tuned_path (and the source name its settings carry) from the cache folder and the
 * device. */
void clmha__tuned_init(clmha_context *ctx);
/* Loads the tuned settings of the context's device from its cache folder into *s, where a
 * valid file is there (tuned.c); a corrupt or stale file is ignored with a warning. */
void clmha__tuned_load(clmha_context *ctx, clmha__settings *s);
/* mkdir -p; true when the folder exists afterwards (program.c). */
bool clmha__make_dirs(const char *dir);
/* Whether setting @p id was given (then *v is its value). */
bool clmha__setting(const clmha_context *ctx, clmha__setting_id id, size_t *v);
/* The key of a setting ("split_wg"), and where the context's value came from (NULL: unset). */
const char *clmha__setting_key(clmha__setting_id id);
const char *clmha__setting_source(const clmha_context *ctx, clmha__setting_id id);

/* One launch of a clmha kernel, as recorded for the tests (clmha__launched). */
typedef struct clmha__launch_rec {
    const char *name; /* the kernel's name */
    size_t groups, local;
} clmha__launch_rec;
#define CLMHA__LAUNCH_LOG 64

struct clmha_context {
    cl_platform_id platform;
    cl_device_id device;
    cl_context cl_ctx;
    cl_command_queue queue;
    clmha_device_info info;

    char *cache_dir;  /* NULL: binary cache off. */
    char *kernel_dir; /* NULL: embedded kernels. */
    clmha_log_fn log_fn;
    void *log_user;
    clmha_log_level log_level;
    bool log_stderr; /* CLMHA_LOG was set (and read): messages go to stderr without log_fn */

    clmha__program *programs;
    clmha_context_stats stats;
    /* The device's row of the tuning table, or the one the settings' row names. */
    clmha__tuning tuning;
    /* The settings that override the row (options.settings, options.tune, CLMHA_TUNE, the
     * tuned file). */
    clmha__settings settings;
    /* The tuned-settings file of this device in the cache folder ("" with the cache off), and
     * the source name its settings carry ("tuned: PATH"). */
    char tuned_path[4200];
    char tuned_source[4300];
    /* The most loop iterations one work-item of an attention kernel or the own GEMM may do
     * (keys are chunked over more work-groups and merged, a long input width is split into
     * launches): 32768 on Mesa's llvmpipe, which ends a work-item after 65535, else 2^20; the
     * max_item_loops setting lowers it. */
    size_t item_loops;
    /* CLBlast cannot run on this device (or gemm=own): projections use gemm.cl. */
    bool own_gemm;
    /* CLBlast has built its GEMM program on this context (clmha__clblast_warm). */
    bool clblast_warm;
    /* Projections of at most this many rows use gemm.cl even where CLBlast runs (CLBlast's
     * fixed cost dominates one-row products); SIZE_MAX-free: 0 means never. */
    size_t small_m;
    /* gemm=clblast: every projection through CLBlast (no row-blocked own GEMM either). */
    bool clblast_only;
    /* poison_buffers=1: new buffers are filled with NaN (finds uninitialised reads). */
    bool poison;
    /* The driver reported CL_OUT_OF_RESOURCES (or lost the device): nothing more is sent. */
    bool broken;
    /* Profiling: events of the launches since the last clmha_context_take_profile, each with
     * the category (clmha__prof_category) that was current when it was launched. */
    bool profile;
    int prof_category;
    cl_event *prof_events;
    cl_event *prof_starts; /* a marker before the launch(es), or NULL: then START..END */
    int *prof_kinds;
    size_t prof_n, prof_cap;

    char last_error[CLMHA__MSG_LEN];
    cl_int last_cl_error;
    int last_clblast_error;
    char *build_log;
    /* The kernels launched since the current (or last) clmha_layer_call began: the first
     * CLMHA__LAUNCH_LOG of them, n_launched counting all. What tells a test which plan ran. */
    clmha__launch_rec launched[CLMHA__LAUNCH_LOG];
    size_t n_launched;
    /* fill.cl's kernels, created on first use by clmha__fill. */
    clmha__kernel k_fill_words, k_fill_bytes;
};

/* The attention kernels a call can take (plan.c chooses, attention.c launches):
 * attention_rows (any call), the split kernel (attention_split on CPUs, attention_split_gpu
 * elsewhere), all heads a work-item (CPUs), query tiles for one work-item (CPUs) and for
 * several (GPUs). */
typedef enum clmha__att {
    CLMHA__ATT_ROWS,
    CLMHA__ATT_SPLIT,
    CLMHA__ATT_HEADS,
    CLMHA__ATT_TILE,
    CLMHA__ATT_QTILE,
    CLMHA__ATT_COUNT
} clmha__att;

/* The own GEMM's builds of gemm_bias4 and gemm_qkv4: 4 columns a work-item, 32 columns, the
 * few-rows build and the row-blocked build (projection.c picks one). */
typedef enum clmha__gemm_build {
    CLMHA__GEMM_COLS4,
    CLMHA__GEMM_COLS32,
    CLMHA__GEMM_FEW,
    CLMHA__GEMM_BLOCKED,
    CLMHA__GEMM_BUILDS
} clmha__gemm_build;

/* A layer's kernels, by index into clmha_layer.kern. The families come in tables: attention
 * by variant and cache dtype (CLMHA__K_ATTN), gemm_tail by row build and cache dtype
 * (CLMHA__K_TAIL), commit by cache dtype, the own GEMM by build and kind (CLMHA__K_GEMM).
 * gemm_tail comes last: it is the one kernel whose build depends on others' limits. */
typedef enum clmha__kernel_id {
    CLMHA__K_ATT_FIRST = 0,
    CLMHA__K_MERGE = CLMHA__K_ATT_FIRST + 2 * CLMHA__ATT_COUNT,
    CLMHA__K_COMMIT_FIRST,
    CLMHA__K_GEMM_FIRST = CLMHA__K_COMMIT_FIRST + 2,
    CLMHA__K_GEMM_ACC = CLMHA__K_GEMM_FIRST + 2 * CLMHA__GEMM_BUILDS,
    CLMHA__K_FILL_BIAS,
    CLMHA__K_GATHER,
    CLMHA__K_GATHER_MASK,
    CLMHA__K_TO_NARROW,
    CLMHA__K_PACK,
    CLMHA__K_SPLIT_QKV,
    CLMHA__K_SUM,
    CLMHA__K_CONSTRAIN,
    CLMHA__K_MASKED_MEAN_FIRST,
    CLMHA__K_QUANT_ROWS = CLMHA__K_MASKED_MEAN_FIRST + 2,
    CLMHA__K_QUANT_FIRST,
    CLMHA__K_QUANT_QKV = CLMHA__K_QUANT_FIRST + 4, /* gemm_i8w_qkv */
    CLMHA__K_TO16,
    CLMHA__K_ROUND16,
    CLMHA__K_W16_FIRST,
    CLMHA__K_TAIL_FIRST = CLMHA__K_W16_FIRST + 2,
    CLMHA__K_COUNT = CLMHA__K_TAIL_FIRST + 4
} clmha__kernel_id;
/* Attention variant @p v for a float32 (half 0) or the layer's float16 or int8 (half 1) cache. */
#define CLMHA__K_ATTN(v, half) (CLMHA__K_ATT_FIRST + 2 * (int)(v) + ((half) ? 1 : 0))
/* commit for a float32 or float16 cache. */
#define CLMHA__K_COMMIT(half) (CLMHA__K_COMMIT_FIRST + ((half) ? 1 : 0))
/* masked_rows_mean for a float32 or float16 cache. */
#define CLMHA__K_MASKED_MEAN(half) (CLMHA__K_MASKED_MEAN_FIRST + ((half) ? 1 : 0))
/* gemm_bias4 (qkv 0) or gemm_qkv4 (qkv 1) of own-GEMM build @p b. */
#define CLMHA__K_GEMM(b, qkv) (CLMHA__K_GEMM_FIRST + 2 * (int)(b) + ((qkv) ? 1 : 0))
/* A quantized layer's product (quant.cl): gemm_i8 (bits 8) or gemm_q4 (bits 4), one row (many 0)
 * or CLMHA__QUANT_ROWS rows (many 1) a work-item. */
#define CLMHA__K_QUANT(bits, many) (CLMHA__K_QUANT_FIRST + ((bits) == 4 ? 2 : 0) + ((many) ? 1 : 0))
#define CLMHA__QUANT_ROWS 4
/* The most rows a quantized or 16-bit product takes with its one-row build (decode steps);
 * more take the CLMHA__QUANT_ROWS build. */
#define CLMHA__QUANT_ONE_ROW_MAX 2
/* gemm_i8w's one-row build: columns a work-item (CU = this / 16) and the wide int8 layout's
 * column padding. */
#define CLMHA__QUANT_WIDE_COLS 64
/* gemm_w16 (a 16-bit dtype policy's product) one row (many 0) or CLMHA__QUANT_ROWS a work-item. */
#define CLMHA__K_W16(many) (CLMHA__K_W16_FIRST + ((many) ? 1 : 0))
/* gemm_tail one row (few 0) or the few-rows build's rows (few 1) a work-item, by cache dtype. */
#define CLMHA__K_TAIL(few, half) (CLMHA__K_TAIL_FIRST + ((few) ? 2 : 0) + ((half) ? 1 : 0))

struct clmha_tensor {
    clmha_context *ctx;
    clmha_dtype dtype;
    int rank;
    size_t shape[CLMHA_MAX_RANK];
    size_t numel;
    cl_mem buffer;
    size_t offset; /* bytes */
};

struct clmha_layer {
    clmha_context *ctx;
    clmha_layer_config cfg;
    size_t heads, dk, dv;       /* H, key_dim, value_dim */
    size_t dq_in, dk_in, dv_in; /* Dq, Dk, Dv: the input feature dims */
    int out_rank;               /* output feature shape */
    size_t out_shape[CLMHA_MAX_RANK];
    size_t out_features; /* prod(out_shape) */
    uint64_t seed;
    cl_mem weights[CLMHA_WEIGHT_COUNT];
    /* Every kernel the layer's calls can take, by clmha__kernel_id (built by one loop in
     * layer_build.c, released by one loop); a kernel never created has k NULL. */
    clmha__kernel kern[CLMHA__K_COUNT];
    /* gemm_bias4 and gemm_qkv4 built with GC = 32 columns a work-item (CPUs; gemm_wide 0
     * elsewhere or with gemm_cols=4), launched one work-item a group where every
     * product's columns are a multiple of 32. */
    size_t gemm_wide;
    /* The same kernels built with GR = gemm_rows rows of GC = gemm_block_cols columns a
     * work-item (the tuning row's: 12 x 32, or 6 x 16 on cpu_narrow; next to the 32-column
     * build; gemm_rows 1: not built, gemm_rows=1 or gemm=clblast): products of more rows than
     * small_m whose columns are a multiple of gemm_block_cols take them instead of CLBlast. */
    size_t gemm_rows, gemm_block_cols;
    /* And built with gemm_few rows of 32 columns a work-item (4 on CPUs; 1: not built, or
     * gemm_rows_few=1): products of 3 to small_m rows (batched decode steps) whose widths
     * are multiples of 32 take them, reading each weight once per gemm_few rows. */
    size_t gemm_few;
    size_t wg_attention, wg_fill, wg_commit, wg_gather, wg_gemm;
    size_t wg_masked; /* masked_rows_mean's work-group (fully_masked_rows = KERAS) */
    /* cache_dtype float16 or int8 (narrow_cache; int8_cache for int8): attention over half keys
     * and values or int8 rows (the kernels' narrow builds, KV_HALF or KV_I8), the narrow commit
     * and the rounding (to_half) or quantization (to_int8) of new keys and values into ws_kh and
     * ws_vh (capacities in floats). kv_row: a cached head row's elements (dk; dk + 4 for int8
     * rows, whose float scale follows the values). */
    bool narrow_cache, int8_cache;
    size_t kv_row;
    /* Split attention (attention_split + attention_merge, flash-decoding) for calls without
     * probabilities or dropout: its work-group size (WGS), the smallest chunk of keys a work-group
     * takes, and the partials' workspace (floats). */
    bool use_split;
    /* attention_heads (all heads of a query position a work-item, their states in local
     * memory): where the split kernel runs one work-item a group (CPUs), T == 1. */
    bool use_heads;
    bool key_block; /* the CPU kernels take sixteen keys at a time (KEY_BLOCK) */
    bool prefetch;  /* the CPU decode kernels prefetch the next block of keys (PREFETCH) */
    /* attention_tile (query tiles of TQ rows, one work-item a group): CPU devices, T >= 2. */
    bool use_tile;
    size_t tile_rows; /* TQ */
    /* Where the split kernel runs several work-items a group (GPUs), attention_gpu.cl's
     * kernels: attention_split_gpu with lanes_key (LK) work-items a key row, and
     * attention_qtile_gpu (T >= 2: query tiles of wg_split / lanes_query rows, lanes_query (LQ)
     * work-items a row, key tiles of key_tile (KT) keys in local memory). */
    bool use_qtile;
    size_t key_tile, lanes_key, lanes_query;
    /* gemm_tail (merge + output projection + cache splice in one launch, the last of a call
     * whose output projection takes the own GEMM one row a work-item), built with tail_cols
     * (GC) columns a work-item and launched wg_tail work-items a group; tail=0 turns it
     * off. use_tail_few: also built with the few-rows build's gemm_few rows a work-item
     * (CLMHA__K_TAIL(1, half)), for calls whose output projection that build takes (batched
     * decode). */
    bool use_tail, use_tail_few;
    /* An input width (or heads x value dim, the output projection's) so long that one
     * work-item of the own GEMM would loop past ctx->item_loops over it: CLBlast takes every
     * projection where it runs (clmha__own_gemm_takes), else gemm_acc in slices of the width
     * (own_gemm); no gemm_qkv4 and no gemm_tail. */
    bool gemm_k_long;
    size_t tail_cols, wg_tail;
    size_t wg_split, split_min_chunk;
    /* Self-attention's projections where CLBlast takes them (qkv.cl): one SGEMM over the packed
     * [Wq | Wk | Wv] (w_qkv, Din x (nq + nk + nv), and b_qkv) into ws_qkv, which split_qkv
     * copies into ws_q, ws_k and ws_v. Only for layers whose three input dims are equal;
     * qkv_fuse=0 turns it off. The packed copy is made when a call or reserve first needs
     * it and again after any weight changes (qkv_packed false). */
    bool fuse_blas, qkv_packed;
    size_t wg_qkv;
    cl_mem w_qkv, b_qkv, ws_qkv;
    size_t cap_qkv;
    cl_mem ws_part;
    size_t cap_part;
    cl_mem ws_kh, ws_vh;
    size_t cap_kh, cap_vh;
    /* Workspace, grown on demand and reused (float capacities). ws_*2 and ws_m hold the
     * canonical (rank > 3) copies and the broadcast mask; ws_y the output and ws_p the
     * probabilities until the commit kernel copies them out. */
    cl_mem ws_q, ws_k, ws_v, ws_o, ws_q2, ws_k2, ws_v2, ws_o2, ws_m, ws_y, ws_p;
    size_t cap_q, cap_k, cap_v, cap_o, cap_q2, cap_k2, cap_v2, cap_o2, cap_m, cap_y, cap_p;
    uint32_t dropout_calls; /* Philox counter: one per training call with dropout */
    /* Activity regularization of the last call: partial sums of |x| and x^2 per projection
     * (query, key, value, output), each of act_groups pairs, and each projection's batch. */
    size_t wg_sum, wg_constrain, act_groups;
    cl_mem act;
    bool act_valid[4];
    size_t act_batch[4];
    /* Keras quantization (quant.c): quant_bits 0 for float kernels, 8 for "int8" or 4 for
     * "int4"; quant_block, int4's input rows a scale group (0: one scale a column, Keras's
     * per-channel int4/-1). A quantized layer's kernels (weights[*_KERNEL]) hold the layouts of
     * quant.cl, its scales qscale[i] and int4's zero points qzero[i] (zeros per-channel) for
     * projection i (query, key, value, output); ws_xq / ws_xs the int8 input rows and their
     * scales (capacities in floats). Its projections take quant.cl only: no CLBlast, no fused
     * query/key/value launch, no gemm_tail. */
    int quant_bits;
    bool quant_wide; /* quant.cl's row-major layouts, sixteen columns a work-item (gemm_wide) */
    size_t quant_block, wg_quant;
    cl_mem qscale[4], qzero[4];
    cl_mem ws_xq, ws_xs;
    size_t cap_xq, cap_xs;
    /* A 16-bit Keras dtype policy (policy.c): w16 1 for float16, 2 for bfloat16 computation (0:
     * float32); w16_var, the variables are 16-bit too (the float32 buffers hold their values,
     * rounded). w16buf[w]: weight w's 16-bit copy (kernels [k][np], np the columns rounded up to
     * 4), made from the float32 variable by to16 after every change. The projections take
     * gemm16.cl only: no CLBlast, no fused query/key/value launch, no gemm_tail. */
    int w16;
    bool w16_var;
    cl_mem w16buf[CLMHA_WEIGHT_COUNT];
    cl_mem ws_x16; /* a projection's input rows rounded to the compute dtype (round_rows) */
    size_t cap_x16;
    /* The input rows ws_xq / ws_xs (int8) or ws_x16 (16-bit policies) hold, prepared in this
     * call: m rows of k values from float offset off of buf. Self-attention's query, key and
     * value are one tensor, so its key and value projections reuse the query's rows. Cleared at
     * the start of every call (a caller may change its tensors between calls). */
    struct {
        cl_mem buf;
        size_t off, m, k;
        bool valid;
    } prepared;
};

/* Whether the prepared input rows are @p m rows of @p k values from @p off of @p buf; if not,
 * records them as the ones about to be prepared. */
static inline bool clmha__prepared(clmha_layer *l, cl_mem buf, size_t off, size_t m, size_t k) {
    if (l->prepared.valid && l->prepared.buf == buf && l->prepared.off == off &&
        l->prepared.m == m && l->prepared.k == k) {
        return true;
    }
    l->prepared.buf = buf, l->prepared.off = off, l->prepared.m = m, l->prepared.k = k;
    l->prepared.valid = true;
    return false;
}

/* ---- errors and logging (status.c) ---- */

/* Records a failure: formats the message into the thread's last error and, when ctx is not
 * NULL, the context's; logs it at error level. Returns status for `return clmha__fail(...)`. */
clmha_status clmha__fail(clmha_context *ctx, clmha_status status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* As clmha__fail for a failed OpenCL call: records the raw code and names it in the message. */
clmha_status clmha__fail_cl(clmha_context *ctx, cl_int err, const char *what);

/* CLMHA_ERR_CONTEXT_BROKEN (with a message naming @p fn) when an earlier OpenCL call on the
 * context reported a fatal error, else CLMHA_OK. */
clmha_status clmha__check_alive(clmha_context *ctx, const char *fn);

/* The name of an OpenCL error code, e.g. "CL_OUT_OF_RESOURCES". */
const char *clmha__cl_error_name(cl_int err);

/* Sends a diagnostic to the context's log sink (or the default sink when ctx is NULL). */
void clmha__log(const clmha_context *ctx, clmha_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The level CLMHA_LOG asks for (CLMHA_LOG_WARN when unset). */
clmha_log_level clmha__env_log_level(void);

enum clmha__prof_category { CLMHA__PROF_OTHER = 0, CLMHA__PROF_PROJECTION, CLMHA__PROF_ATTENTION };

/* With profiling on, a place for the next launch's event (NULL otherwise); after the launch,
 * clmha__prof_keep() files it under the current category. */
cl_event *clmha__prof_slot(clmha_context *ctx);
void clmha__prof_keep(clmha_context *ctx, cl_event *slot);

/* For a library call that enqueues several kernels but returns one event (CLBlast): a marker
 * enqueued before it; clmha__prof_keep_span() then counts from the marker's end to the
 * returned event's end. NULL when profiling is off. */
cl_event clmha__prof_marker(clmha_context *ctx);
void clmha__prof_keep_span(clmha_context *ctx, cl_event marker, cl_event *slot);

/* ---- small helpers (util.c) ---- */

/* *out = a * b; false on overflow. */
static inline bool clmha__mul(size_t a, size_t b, size_t *out) {
    return !__builtin_mul_overflow(a, b, out);
}
static inline bool clmha__add(size_t a, size_t b, size_t *out) {
    return !__builtin_add_overflow(a, b, out);
}

/* strdup that returns NULL for NULL. */
char *clmha__strdup(const char *s);

/* Case-insensitive substring search. */
bool clmha__contains_ci(const char *haystack, const char *needle);

/* Parses a whole string as a non-negative decimal index. */
bool clmha__parse_index(const char *s, size_t *out);

/* Formats a shape as "(2, 5, 7)". */
void clmha__shape_str(char *buf, size_t len, int rank, const size_t *shape);

/* getenv that treats "" as unset. */
const char *clmha__getenv(const char *name);

/* Creates a read-write buffer of @p bytes; with ctx->poison, fills it with NaN first. @p what
 * names it in errors. */
clmha_status clmha__buffer_create(clmha_context *ctx, size_t bytes, const char *what, cl_mem *out);

/* Sets @p bytes of @p buf from byte @p offset to the repeated little-endian word @p pattern
 * (bytes outside whole aligned words get its low byte), with fill.cl's kernels rather than
 * clEnqueueFillBuffer. @p what names the fill in errors. */
clmha_status clmha__fill(clmha_context *ctx, cl_mem buf, size_t offset, size_t bytes,
                         cl_uint pattern, const char *what);
/* Builds fill.cl's kernels if the context has not yet: done when a layer is built, so that a
 * fill inside a call (poisoning a grown workspace) builds nothing. */
clmha_status clmha__fill_prepare(clmha_context *ctx);

/* ---- devices (device.c) ---- */

clmha_status clmha__query_device(cl_platform_id platform, cl_device_id device,
                                 clmha_device_info *info);

/* ---- programs and launches (program.c) ---- */

/* The source of an embedded kernel file, e.g. "merge.cl". */
typedef struct clmha__embedded_kernel {
    const char *name;
    const unsigned char *data;
    size_t size;
} clmha__embedded_kernel;
extern const clmha__embedded_kernel clmha__embedded_kernels[];
extern const size_t clmha__embedded_kernel_count;

/* The most chunks split attention cuts a query row's keys into; merge.cl and gemm_tail are
 * built with it (-DMAX_CHUNKS) and keep that many chunk weights in local memory. */
#define CLMHA__MAX_CHUNKS 256

/* The columns a work-item of the own GEMM's multi-row builds (row-blocked and few-rows) takes;
 * products of other widths do without them. */
#define CLMHA__GEMM_BLOCK_COLS 32

/* Returns the program for kernel file @p name built with @p defines (extra -D options), from
 * the context's list, the binary cache or a source build, in that order. The program stays
 * owned by the context. The file's `#include "x.clh"` lines bring in those headers. */
clmha_status clmha__program_get(clmha_context *ctx, const char *name, const char *defines,
                                cl_program *program);

/* Creates kernel @p kernel (a string literal) from a program and records its limits;
 * reports a missing name clearly. */
clmha_status clmha__kernel_create(clmha_context *ctx, cl_program program, const char *kernel,
                                  clmha__kernel *out);

/* Releases the kernel and clears its record (a no-op for one never created). */
void clmha__kernel_release(clmha__kernel *k);

/* Checks a 1-D launch of @p k with @p local work-items against the kernel's and the device's
 * limits, then enqueues it with global = groups * local. */
clmha_status clmha__launch(clmha_context *ctx, const clmha__kernel *k, size_t groups, size_t local);

/* One kernel argument: its size and a pointer to its value. */
typedef struct clmha__karg {
    size_t size;
    const void *value;
} clmha__karg;
#define CLMHA__ARG(v)                                                                              \
    { sizeof(v), &(v) }

/* Sets arguments 0..n-1 of @p k from @p args, naming the kernel and index on failure. */
clmha_status clmha__set_args(clmha_context *ctx, const clmha__kernel *k, const clmha__karg *args,
                             size_t n);
/* As clmha__set_args for arguments first..first+n-1. */
clmha_status clmha__set_args_from(clmha_context *ctx, const clmha__kernel *k, size_t first,
                                  const clmha__karg *args, size_t n);

/* ---- regularizers and constraints (regularize.c) ---- */

/* Makes the activity-regularizer sums' buffer where the layer has that regularizer (its
 * kernels are built with the layer's others, layer_build.c). */
clmha_status clmha__regularize_build(clmha_layer *layer);

/* Enqueues the activity sums of projection @p slot (0 query, 1 key, 2 value, 3 output) over
 * @p n floats of @p x, with @p batch the projection's batch size. */
clmha_status clmha__activity_sums(clmha_layer *layer, int slot, cl_mem x, size_t n, size_t batch);

/* ---- initialisers (init.c) ---- */

/* Fills @p out (n values) from @p init with Keras's fan rules. @p stream tells the weights of
 * one layer apart, so each gets an independent Philox stream under the same seed. */
clmha_status clmha__init_fill(clmha_context *ctx, const clmha_initializer *init, uint64_t seed,
                              uint32_t stream, double fan_in, double fan_out, float *out, size_t n);

/* ---- projections (projection.c) ---- */

/* y[M, N] = x[M, K] . W[K, N] + bias[N] (bias may be NULL), row-major, element offsets.
 * @p what names the projection in errors. */
clmha_status clmha__project(clmha_layer *layer, const char *what, cl_mem x, size_t x_off, size_t m,
                            size_t k, cl_mem w, size_t n, cl_mem bias, cl_mem y, size_t y_off);

/* Runs one tiny CLBlast SGEMM on the context, once, so that CLBlast builds its GEMM program in
 * clmha_layer_reserve rather than inside a call; a device whose limits CLBlast's kernels exceed
 * switches to clmha's own GEMM here. A no-op with the own GEMM. */
clmha_status clmha__clblast_warm(clmha_context *ctx);

/* Self-attention's query, key and value projections of @p m rows of x in one launch of the own
 * GEMM (gemm_qkv4) into ws_q, ws_k and ws_v, and the keys and values rounded to half into
 * @p kh and @p vh where they are not NULL; false from clmha__project_qkv_fits when the
 * projections would not take the own GEMM or a width is not a multiple of 4. */
bool clmha__project_qkv_fits(const clmha_layer *layer, size_t m);
clmha_status clmha__project_qkv(clmha_layer *layer, cl_mem x, size_t x_off, size_t m, cl_mem kh,
                                cl_mem vh);

/* Self-attention's three projections of @p m rows as one CLBlast product over the packed
 * weights (then split_qkv into ws_q, ws_k and ws_v): the layer fuses them (fuse_blas) and
 * CLBlast, not the own GEMM, would take each of them. */
bool clmha__project_qkv_blas_fits(const clmha_layer *layer, size_t m);
/* Makes the packed weights and a ws_qkv of @p m rows exist (allocating; no launch). */
clmha_status clmha__project_qkv_blas_reserve(clmha_layer *layer, size_t m);
/* The fused product of @p m rows of x: packs the weights first where they changed. Needs
 * clmha__project_qkv_blas_reserve for at least @p m rows. */
clmha_status clmha__project_qkv_blas(clmha_layer *layer, cl_mem x, size_t x_off, size_t m);

/* Some product of @p n columns (of more than small_m rows) goes to CLBlast: CLBlast runs and
 * the row-blocked own GEMM does not take that width. */
bool clmha__clblast_may_take(const clmha_layer *layer, size_t n);

/* A product of @p m rows and @p n columns takes clmha's own GEMM: CLBlast cannot run, or (no
 * input width too long for its work-items, gemm_k_long) few rows, or the row-blocked build takes
 * it. */
bool clmha__own_gemm_takes(const clmha_layer *layer, size_t m, size_t n);

/* The rows a work-item of the own GEMM takes in a product of @p m rows and @p n columns (n a
 * multiple of 4): 1, the few-rows build's or the row-blocked build's rows; 0 where CLBlast
 * takes it or n is not a multiple of 4. gemm_tail projects where this is 1 or gemm_few. */
size_t clmha__gemm_rows_taken(const clmha_layer *layer, size_t m, size_t n);

/* The columns a work-item of gemm_bias4 / gemm_qkv4 takes for products of @p n columns: the
 * layer's wide build (32, CPUs) where n is a multiple of it, else 4. */
size_t clmha__gemm_cols(const clmha_layer *layer, size_t n);

/* Resolves a new layer's settings against its shapes and the device and builds every kernel
 * its calls can take (layer_build.c). */
clmha_status clmha__build_kernels(clmha_layer *l);

/* Builds kernels first..end-1 that the layer's settings take (layer_build.c's one loop). */
clmha_status clmha__build_kernels_in(clmha_layer *l, int first, int end);

/* ---- Keras quantization (quant.c) ---- */

/* One projection's quantized kernel in Keras's flattened layout: k input rows (the reduced
 * dims) by n columns, q[k][n] in [-127, 127] (int8) or [-8, 7] (int4), scale[groups][n] and, for
 * int4 sub-channel groups, zero[groups][n] (NULL otherwise). */
typedef struct clmha__qkernel {
    size_t k, n, groups;
    int8_t *q;
    float *scale;
    int8_t *zero;
} clmha__qkernel;

/* Frees the arrays of @p q (not q itself). */
void clmha__qkernel_free(clmha__qkernel *q);

/* Parses a Keras quantization mode: "int8", "int4" (= "int4/128", Keras's default), "int4/N"
 * (N input rows a group, a multiple of 4) or "int4/-1" (one scale a column); bits 8 or 4 and the
 * block (0: per column). */
clmha_status clmha__quant_mode(clmha_context *ctx, const char *fn, const char *mode, int *bits,
                               size_t *block);

/* Makes @p l a quantized layer of @p bits / @p block with the four kernels @p q (in
 * clmha_weight order / 2), checked against the layer's shapes: builds the kernels, uploads the
 * layouts, then swaps them in. On failure the layer is unchanged. */
clmha_status clmha__quant_install(clmha_layer *l, int bits, size_t block,
                                  const clmha__qkernel q[4]);

/* Downloads quantized kernel @p w of a quantized layer as Keras's integer values (floats). */
clmha_status clmha__quant_get(const clmha_layer *l, clmha_weight w, float *data);

/* y[m, n] = projection @p proj (0..3: query, key, value, output) of the quantized layer applied
 * to x[m, k] (from x_off floats), bias included, into y from y_off. */
clmha_status clmha__project_quant(clmha_layer *l, int proj, cl_mem x, size_t x_off, size_t m,
                                  cl_mem y, size_t y_off);

/* The padded column count of the quantized layer's output kernel (what gemm_tail's int8 build
 * takes as np). */
size_t clmha__quant_out_np(const clmha_layer *l);

/* Self-attention's query, key and value projections of @p m rows of x by an int8 layer in one
 * launch (gemm_i8w_qkv) into ws_q, ws_k and ws_v, after one quantization of x; false from
 * clmha__project_quant_qkv_fits where that kernel does not take them (not an int8 layer in
 * the wide layout, more rows than its one-row build takes, different input widths). */
bool clmha__project_quant_qkv_fits(const clmha_layer *l, size_t m);
clmha_status clmha__project_quant_qkv(clmha_layer *l, cl_mem x, size_t x_off, size_t m);

/* ---- Keras dtype policies (policy.c) ---- */

/* Sets a new layer's w16 and w16_var from its config's dtype policy (before its kernels are
 * built: route_settings then leaves CLBlast, the fused launch and gemm_tail out). */
void clmha__policy_setup(clmha_layer *l);

/* Makes weight @p w's 16-bit copy from its float32 variable (rounding the variable itself for the
 * float16 / bfloat16 policies); a no-op for float32 layers. Enqueued. */
clmha_status clmha__policy_sync(clmha_layer *l, clmha_weight w);

/* Projection @p proj of a 16-bit-policy layer (as clmha__project_quant). */
clmha_status clmha__project_w16(clmha_layer *l, int proj, cl_mem x, size_t x_off, size_t m,
                                cl_mem y, size_t y_off);

/* The workspace an int8 layer's projections of up to @p m rows need (the quantized rows and
 * their scales); a no-op for other layers. */
clmha_status clmha__quant_reserve(clmha_layer *l, size_t m);

/* The workspace a 16-bit-policy layer's projections of up to @p m rows need (the rounded
 * rows); a no-op for other layers. */
clmha_status clmha__policy_reserve(clmha_layer *l, size_t m);

/* Makes *buf hold at least @p n floats, reallocating (never shrinking) when needed. */
clmha_status clmha__workspace(clmha_layer *layer, cl_mem *buf, size_t *cap, size_t n);

#endif /* CLMHA_INTERNAL_H */
