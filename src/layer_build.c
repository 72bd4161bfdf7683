/*
 * layer_build.c - a new layer's kernels: the settings resolved against the layer's shapes and
 * the device (split attention's work-group and chunks, query and key tiles, the GPU kernels'
 * lanes within local memory, the own GEMM's builds and where CLBlast takes over, gemm_tail),
 * and every program those choices need built (or loaded from the binary cache) here, at
 * creation, never inside a call.
 */
#include "internal.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>

static size_t pow2_floor(size_t x) {
    size_t p = 1;
    while (p * 2 <= x) {
        p *= 2;
    }
    return p;
}

/* The lanes a key row of attention_split_gpu: enough for one vector (4 floats, or 1 where a
 * head dim is not a multiple of 4) of the longer head dim a lane, at most 32 and wgs. */
static size_t gpu_lanes_key(const clmha_layer *l, size_t wgs) {
    const size_t vw = l->dk % 4 == 0 && l->dv % 4 == 0 ? 4 : 1;
    const size_t d = l->dk > l->dv ? l->dk : l->dv;
    size_t lk = 1;
    while (lk * vw < d && lk < 32 && lk < wgs) {
        lk *= 2;
    }
    return lk;
}

/* The lanes a query row of attention_qtile_gpu: at most the tuning row's lane_floats output
 * elements a lane (16 unless the row says otherwise). */
static size_t gpu_lanes_query(const clmha_layer *l, size_t wgs) {
    const size_t per_lane = l->ctx->tuning.lane_floats ? l->ctx->tuning.lane_floats : 16;
    size_t lq = 1;
    while (lq * per_lane < l->dv && lq < wgs) {
        lq *= 2;
    }
    return lq;
}

/* Local memory (bytes) of attention_split_gpu with wgs work-items (attention_gpu.cl's arrays). */
static size_t split_gpu_lds(const clmha_layer *l, size_t wgs) {
    const size_t lk = gpu_lanes_key(l, wgs), lg = wgs / lk;
    const size_t pt = lg * lk * (lk + 1), cb = lg * l->dv;
    return ((pt > cb ? pt : cb) + wgs + 2 * lg) * sizeof(float) + wgs * sizeof(cl_int);
}

/* Local memory (bytes) of attention_qtile_gpu with wgs work-items and key tiles of kt. */
static size_t qtile_gpu_lds(const clmha_layer *l, size_t wgs, size_t kt) {
    const size_t qr = wgs / gpu_lanes_query(l, wgs);
    return (qr * l->dk + kt * (l->dk + 1) + kt * l->dv + qr * kt) * sizeof(float) + qr * kt;
}

/* A switch setting: its value where given, else @p def. */
static bool switch_on(const clmha_context *ctx, clmha__setting_id id, bool def) {
    size_t v;
    return clmha__setting(ctx, id, &v) ? v != 0 : def;
}

/* A setting whose allowed values depend on the layer and device: fails when it is given and
 * larger than @p most, naming the key, its source and why. */
static clmha_status setting_within(clmha_layer *l, clmha__setting_id id, size_t most,
                                   const char *why, size_t *v, bool *given) {
    *given = clmha__setting(l->ctx, id, v);
    if (*given && *v > most) {
        return clmha__fail(l->ctx, CLMHA_ERR_INVALID_ARGUMENT,
                           "%s: %s=%zu is more than this layer can take on this device: at most "
                           "%zu (%s)",
                           clmha__setting_source(l->ctx, id), clmha__setting_key(id), *v, most,
                           why);
    }
    return CLMHA_OK;
}

/* The split attention's settings: split=0 turns it off; split_wg (a power of two) and
 * split_chunk (keys) override the tuning table's defaults (one work-item a work-group on CPUs,
 * which streams its keys with vector loads, else wg_cap as local memory allows; chunks of at
 * least 256 keys). */
static clmha_status split_settings(clmha_layer *l, size_t wg_cap) {
    clmha_context *ctx = l->ctx;
    l->use_split = switch_on(ctx, CLMHA__SET_SPLIT, true);
    size_t wgs = ctx->tuning.split_wg == 1 ? 1 : wg_cap;
    while (wgs > 1 && split_gpu_lds(l, wgs) > ctx->info.local_mem_bytes) {
        wgs /= 2;
    }
    size_t v;
    bool given;
    clmha_status st = setting_within(l, CLMHA__SET_SPLIT_WG, wg_cap,
                                     "the attention kernels' work-group limit", &v, &given);
    if (st != CLMHA_OK) {
        return st;
    }
    wgs = given ? v : wgs;
    l->wg_split = wgs;
    l->lanes_key = gpu_lanes_key(l, wgs);
    l->lanes_query = gpu_lanes_query(l, wgs);
    /* All heads of a query position in one work-item where one work-item streams the keys
     * (CPUs), when the heads' queries, outputs and softmax states fit in half the local memory;
     * heads=0 turns it off. Without it the kernel is built for one head (NH = 1), so its
     * local arrays never exceed a device's limit. */
    l->use_heads = wgs == 1 && switch_on(ctx, CLMHA__SET_HEADS, true) &&
                   l->heads * (l->dk + l->dv + 2) * sizeof(float) <= ctx->info.local_mem_bytes / 2;
    /* It and the query tiles take keys sixteen at a time where the head dims are multiples of
     * 16; key_block=0 makes them take keys one at a time. */
    l->key_block = switch_on(ctx, CLMHA__SET_KEY_BLOCK, true);
    /* The CPU kernels' blocks of keys ask the cache for the next block's lines while they
     * compute (PREFETCH; where the kernel compiler is clang for an x86 or Arm CPU, else the
     * define does nothing); prefetch=0 turns it off. */
    l->prefetch = switch_on(ctx, CLMHA__SET_PREFETCH, true);
    /* Query tiles where one work-item streams the keys (CPUs); tile=0 turns them off. */
    const bool tile = switch_on(ctx, CLMHA__SET_TILE, true);
    l->use_tile = wgs == 1 && tile;
    /* Each row keeps its output in private memory: at most 512 floats in all (2 KiB; Mesa's
     * llvmpipe computes wrong results from 4 KiB on), and the table's rows (8 on CPUs: more
     * measured no faster on PoCL); the queries are in local memory. */
    l->tile_rows = 512 / l->dv;
    l->tile_rows = l->tile_rows > ctx->tuning.tile_rows ? ctx->tuning.tile_rows : l->tile_rows;
    if (clmha__setting(ctx, CLMHA__SET_TILE_ROWS, &v)) {
        l->tile_rows = v; /* 1 to 16, checked by the parser */
    }
    l->use_tile = l->use_tile && l->tile_rows >= 2; /* one row a tile: the split kernel */
    /* Elsewhere (GPUs), query tiles of wg_split / lanes_query rows with key tiles in local
     * memory: KT keys and values (the table's key_tile at most; 0: no query tiles), within the
     * row's tile_local bytes and half the local memory. */
    l->use_qtile = wgs >= 2 && ctx->tuning.key_tile > 0 && tile;
    size_t budget = ctx->info.local_mem_bytes / 2;
    budget = ctx->tuning.tile_local != 0 && ctx->tuning.tile_local < budget ? ctx->tuning.tile_local
                                                                            : budget;
    l->key_tile = pow2_floor(ctx->tuning.key_tile > 0 ? ctx->tuning.key_tile : 1);
    while (l->key_tile > 1 && wgs >= 2 && qtile_gpu_lds(l, wgs, l->key_tile) > budget) {
        l->key_tile /= 2;
    }
    if ((st = setting_within(l, CLMHA__SET_KEY_TILE, l->key_tile,
                             "what local memory allows for this layer's key tiles", &v, &given)) !=
        CLMHA_OK) {
        return st;
    }
    l->key_tile = given ? v : l->key_tile;
    l->split_min_chunk = ctx->tuning.split_chunk;
    if (clmha__setting(ctx, CLMHA__SET_SPLIT_CHUNK, &v)) {
        l->split_min_chunk = v; /* 1 to INT_MAX, checked by the parser */
    }
    return CLMHA_OK;
}

/* The own GEMM's builds beside the 4-column one (no kernel is built here): where the tuning
 * table says (CPUs), 32 columns a work-item (gemm_cols: 4 or 32); where that build is, the
 * table's blocks (gemm_rows rows, 12 or 6, of its block columns, 32 or 16) for products of many
 * rows (prefill), unless gemm=clblast leaves those to CLBlast, and its few rows (gemm_rows_few,
 * 4, of 32 columns) for 3 to gemm_small_m rows (batched decode steps). The settings' ranges are
 * the parser's. */
static void gemm_settings(clmha_layer *l) {
    clmha_context *ctx = l->ctx;
    size_t cols = ctx->tuning.gemm_cols;
    clmha__setting(ctx, CLMHA__SET_GEMM_COLS, &cols);
    l->gemm_wide = cols == 32 ? 32 : 0;
    const bool cpu_rows = l->gemm_wide != 0;
    if (!clmha__setting(ctx, CLMHA__SET_GEMM_ROWS, &l->gemm_rows)) {
        l->gemm_rows = cpu_rows && !ctx->clblast_only ? ctx->tuning.gemm_rows : 1;
    }
    l->gemm_block_cols = ctx->tuning.gemm_block_cols;
    if (!clmha__setting(ctx, CLMHA__SET_GEMM_ROWS_FEW, &l->gemm_few)) {
        l->gemm_few = ctx->tuning.gemm_rows_few;
    }
    if (!cpu_rows) {
        l->gemm_few = 1; /* the few-rows build goes with the 32-column one */
    }
}

/* Where each projection may run, and whether calls may end with gemm_tail (before any kernel is
 * built; the compiled kernels' limits may still turn gemm_tail off, fit_limits).
 *
 * Self-attention's projections run as one CLBlast product where CLBlast may take all three
 * (clmha__project_qkv_blas_fits) and the three input dims are equal, unless qkv_fuse=0.
 *
 * The own GEMM's work-items loop over the whole input width, a few iterations an input element
 * (4 bounds every build): widths past item_loops / 4 (gemm_k_long) go to CLBlast, or where it
 * cannot run to gemm_acc in slices of the width (projection.c).
 *
 * gemm_tail is the last launch of calls whose output projection takes the own GEMM: built with
 * the output's columns a work-item (32 on CPUs where they divide the output width, else 4), one
 * row a work-item, and where the few-rows build of the own GEMM exists (CPUs) also with its
 * rows (use_tail_few), for batched decode steps. Off (the merge, output projection and commit
 * launches instead) with tail=0, an output width that is not a multiple of 4, a gemm_k_long
 * width, or where its merged rows (H * DV floats each) and chunk weights do not fit in local
 * memory. */
static void route_settings(clmha_layer *l) {
    clmha_context *ctx = l->ctx;
    const size_t nq = l->heads * l->dk, hv = l->heads * l->dv;
    /* a 16-bit dtype policy's projections take gemm16.cl alone */
    l->fuse_blas = l->w16 == 0 && switch_on(ctx, CLMHA__SET_QKV_FUSE, true) &&
                   l->dq_in == l->dk_in && l->dq_in == l->dv_in && clmha__clblast_may_take(l, nq) &&
                   clmha__clblast_may_take(l, hv);
    size_t k_max = l->dq_in > l->dk_in ? l->dq_in : l->dk_in;
    k_max = k_max > l->dv_in ? k_max : l->dv_in;
    k_max = k_max > hv ? k_max : hv;
    l->gemm_k_long = k_max > ctx->item_loops / 4;
    if (l->gemm_k_long) {
        clmha__log(ctx, CLMHA_LOG_INFO,
                   "input width %zu: projections on CLBlast (the own GEMM would loop past %zu "
                   "iterations a work-item)",
                   k_max, ctx->item_loops);
    }
    l->use_tail =
        l->w16 == 0 && switch_on(ctx, CLMHA__SET_TAIL, true) && l->out_features % 4 == 0 &&
        (hv + CLMHA__MAX_CHUNKS) * sizeof(float) <= ctx->info.local_mem_bytes && !l->gemm_k_long;
    l->tail_cols = clmha__gemm_cols(l, l->out_features);
    l->use_tail_few =
        l->use_tail && l->gemm_few > 1 && l->tail_cols == CLMHA__GEMM_BLOCK_COLS &&
        (l->gemm_few * hv + CLMHA__MAX_CHUNKS) * sizeof(float) <= ctx->info.local_mem_bytes;
}

/* How to build one of a layer's kernels: its file, its name in the file and the build options
 * the layer's settings give it. */
typedef struct recipe {
    const char *file, *name;
    char defines[192];
} recipe;

/* The recipe of an attention kernel: attention_rows.cl's with wg_attention work-items a group,
 * and either attention_cpu.cl's (wg_split 1: split, all heads, query tiles for one work-item)
 * or attention_gpu.cl's (split and query tiles for wg_split work-items); false for the other
 * family's and for half builds without a half cache. */
static bool attention_recipe(const clmha_layer *l, clmha__att v, bool half, recipe *r) {
    const char *kv = !half ? "" : l->int8_cache ? " -DKV_I8" : " -DKV_HALF";
    const bool cpu = l->wg_split == 1;
    if (half && !l->narrow_cache) {
        return false;
    }
    if (v == CLMHA__ATT_ROWS) {
        /* GPUs (the split kernel several work-items a group) take the rows kernel's dot
         * products four lanes wide: sixteen hold too many registers in flight. */
        *r = (recipe){"attention_rows.cl", "attention_rows", ""};
        snprintf(r->defines, sizeof r->defines, "-DDK=%zu -DDV=%zu -DWG=%zu%s%s", l->dk, l->dv,
                 l->wg_attention, cpu ? "" : " -DQK_VEC=4", kv);
    } else if (cpu) {
        static const char *const names[] = {"", "attention_split", "attention_heads",
                                            "attention_tile", ""};
        if (v == CLMHA__ATT_QTILE) {
            return false;
        }
        *r = (recipe){"attention_cpu.cl", names[v], ""};
        /* Without all heads a work-item the kernels are built for one head (NH = 1), so their
         * local arrays never exceed a device's limit. */
        snprintf(r->defines, sizeof r->defines,
                 "-DDK=%zu -DDV=%zu -DTQ=%zu -DNH=%zu -DKEY_BLOCK=%d -DPREFETCH=%d%s", l->dk, l->dv,
                 l->tile_rows, l->use_heads ? l->heads : 1, l->key_block ? 1 : 0,
                 l->prefetch ? 1 : 0, kv);
    } else {
        if (v != CLMHA__ATT_SPLIT && v != CLMHA__ATT_QTILE) {
            return false;
        }
        *r = (recipe){"attention_gpu.cl",
                      v == CLMHA__ATT_SPLIT ? "attention_split_gpu" : "attention_qtile_gpu", ""};
        snprintf(r->defines, sizeof r->defines,
                 "-DDK=%zu -DDV=%zu -DWGS=%zu -DLK=%zu -DLQ=%zu -DKT=%zu%s", l->dk, l->dv,
                 l->wg_split, l->lanes_key, l->lanes_query, l->key_tile, kv);
    }
    return true;
}

/* The recipe of an own-GEMM build of gemm_bias4 (qkv false) or gemm_qkv4; false where the
 * layer's settings leave that build out. */
static bool gemm_recipe(const clmha_layer *l, clmha__gemm_build b, bool qkv, recipe *r) {
    *r = (recipe){"gemm.cl", qkv ? "gemm_qkv4" : "gemm_bias4", ""};
    const size_t rows = b == CLMHA__GEMM_FEW ? l->gemm_few : l->gemm_rows;
    switch (b) {
    case CLMHA__GEMM_COLS4:
        return true;
    case CLMHA__GEMM_COLS32:
        snprintf(r->defines, sizeof r->defines, "-DGC=%d", CLMHA__GEMM_BLOCK_COLS);
        return l->gemm_wide != 0;
    case CLMHA__GEMM_FEW:
    case CLMHA__GEMM_BLOCKED:
        snprintf(r->defines, sizeof r->defines, "-DGC=%zu -DGR=%zu",
                 b == CLMHA__GEMM_FEW ? (size_t)CLMHA__GEMM_BLOCK_COLS : l->gemm_block_cols, rows);
        return rows > 1;
    default:
        return false;
    }
}

/* The recipe of a product over a quantized layer's (quant.cl, quant_cpu.cl) or a 16-bit dtype
 * policy's (gemm16.cl) weights: kernel @p id >= CLMHA__K_QUANT_FIRST. */
static bool weights_recipe(const clmha_layer *l, int id, recipe *r) {
    if (id >= CLMHA__K_TO16) {
        /* a 16-bit dtype policy's conversion and products (gemm16.cl) */
        /* the products sixteen columns a work-item (gemm16_cpu.cl) where the own GEMM takes 32 */
        const bool wide = id >= CLMHA__K_W16_FIRST && l->gemm_wide != 0;
        *r = (recipe){wide ? "gemm16_cpu.cl" : "gemm16.cl",
                      id == CLMHA__K_TO16      ? "to16"
                      : id == CLMHA__K_ROUND16 ? "round_rows"
                      : wide                   ? "gemm_w16w"
                                               : "gemm_w16",
                      ""};
        snprintf(r->defines, sizeof r->defines, "-DRB=%d%s",
                 id == CLMHA__K_W16(1) ? CLMHA__QUANT_ROWS : 1, l->w16 == 2 ? " -DW_BF16" : "");
        return l->w16 != 0;
    }
    if (id == CLMHA__K_QUANT_QKV) {
        /* self-attention's three int8 products in one launch: the wide layout's one-row build */
        *r = (recipe){"quant_cpu.cl", "gemm_i8w_qkv", ""};
        snprintf(r->defines, sizeof r->defines, "-DRB=1 -DCU=%d", CLMHA__QUANT_WIDE_COLS / 16);
        return l->quant_bits == 8 && l->quant_wide;
    }
    /* a quantized layer's products (quant.cl), one row or QUANT_ROWS rows a work-item, in the
     * GPU or the wide (CPU) layout */
    const int bits = id >= CLMHA__K_QUANT(4, 0) ? 4 : 8;
    static const char *const names[2][2] = {{"gemm_i8", "gemm_q4"}, {"gemm_i8w", "gemm_q4w"}};
    *r = (recipe){l->quant_wide ? "quant_cpu.cl" : "quant.cl",
                  names[l->quant_wide ? 1 : 0][bits == 4], ""};
    const bool many = id == CLMHA__K_QUANT(bits, 1);
    snprintf(r->defines, sizeof r->defines, "-DRB=%d -DCU=%d%s", many ? CLMHA__QUANT_ROWS : 1,
             bits == 8 && l->quant_wide && !many ? CLMHA__QUANT_WIDE_COLS / 16 : 1,
             bits == 4 && l->quant_block == 0 ? " -DQDIV" : "");
    return l->quant_bits == bits;
}

/* The recipe of splice.cl's kernels: commit for a float32 cache, and for the layer's narrow
 * cache commit and to_half (half) or to_int8 (int8 rows). */
static bool splice_recipe(const clmha_layer *l, int id, recipe *r) {
    if (id == CLMHA__K_COMMIT(0)) {
        *r = (recipe){"splice.cl", "commit", ""};
        return true;
    }
    *r = (recipe){"splice.cl",
                  id != CLMHA__K_TO_NARROW ? "commit"
                  : l->int8_cache          ? "to_int8"
                                           : "to_half",
                  ""};
    snprintf(r->defines, sizeof r->defines, "%s", l->int8_cache ? "-DCACHE_I8" : "-DCACHE_HALF");
    return l->narrow_cache;
}

/* The recipe of a gemm_tail build (tail.cl): one row or the few-rows build's rows a work-item,
 * by cache dtype; an int8 layer's (quantized after its creation, clmha__quant_install) has one
 * row a work-item and its own product. */
static bool tail_recipe(const clmha_layer *l, int id, recipe *r) {
    const bool few = id >= CLMHA__K_TAIL(1, 0), half = (id - CLMHA__K_TAIL_FIRST) % 2 != 0;
    char rows[24] = "";
    if (few) {
        snprintf(rows, sizeof rows, " -DGR=%zu", l->gemm_few);
    }
    *r = (recipe){"tail.cl", "gemm_tail", ""};
    const bool i8 = l->quant_bits == 8;
    char quant[32] = "";
    if (i8) {
        snprintf(quant, sizeof quant, " -DQUANT_I8 -DCU=%d", CLMHA__QUANT_WIDE_COLS / 16);
    }
    snprintf(r->defines, sizeof r->defines, "-DDV=%zu -DHV=%zu -DGC=%zu -DMAX_CHUNKS=%d%s%s%s",
             l->dv, l->heads * l->dv, l->tail_cols, CLMHA__MAX_CHUNKS, rows, quant,
             !half           ? ""
             : l->int8_cache ? " -DCACHE_I8"
                             : " -DCACHE_HALF");
    return (few ? l->use_tail_few : l->use_tail) && (!half || l->narrow_cache) &&
           (l->quant_bits == 0 || (i8 && !few));
}

/* The recipe of kernel @p id for this layer; false where its settings never take it. */
static bool kernel_recipe(const clmha_layer *l, int id, recipe *r) {
    if (id < CLMHA__K_MERGE) {
        return attention_recipe(l, (clmha__att)(id / 2), id % 2 != 0, r);
    }
    if (id >= CLMHA__K_GEMM_FIRST && id < CLMHA__K_GEMM_ACC) {
        const int b = (id - CLMHA__K_GEMM_FIRST) / 2;
        return gemm_recipe(l, (clmha__gemm_build)b, (id - CLMHA__K_GEMM_FIRST) % 2 != 0, r);
    }
    if (id >= CLMHA__K_TAIL_FIRST) {
        return tail_recipe(l, id, r);
    }
    if (id >= CLMHA__K_QUANT_FIRST) {
        return weights_recipe(l, id, r);
    }
    switch (id) {
    case CLMHA__K_QUANT_ROWS:
        *r = (recipe){"quant.cl", "quantize_rows", ""};
        snprintf(r->defines, sizeof r->defines, "-DQWG=%zu", l->wg_quant);
        return l->quant_bits == 8;
    case CLMHA__K_MERGE:
        *r = (recipe){"merge.cl", "attention_merge", ""};
        snprintf(r->defines, sizeof r->defines, "-DDV=%zu -DMAX_CHUNKS=%d", l->dv,
                 CLMHA__MAX_CHUNKS);
        return true;
    case CLMHA__K_COMMIT(0):
    case CLMHA__K_COMMIT(1):
    case CLMHA__K_TO_NARROW:
        return splice_recipe(l, id, r);
    case CLMHA__K_GEMM_ACC:
        *r = (recipe){"gemm.cl", "gemm_acc", ""};
        return true;
    case CLMHA__K_FILL_BIAS:
        *r = (recipe){"bias.cl", "fill_bias", ""};
        return true;
    case CLMHA__K_GATHER:
    case CLMHA__K_GATHER_MASK:
        *r = (recipe){"gather.cl", id == CLMHA__K_GATHER ? "gather_rows" : "gather_mask", ""};
        return true;
    case CLMHA__K_PACK:
    case CLMHA__K_SPLIT_QKV:
        *r = (recipe){"qkv.cl", id == CLMHA__K_PACK ? "pack_columns" : "split_qkv", ""};
        return l->fuse_blas;
    case CLMHA__K_MASKED_MEAN(0):
    case CLMHA__K_MASKED_MEAN(1):
        /* Keras's fused-path result for fully masked rows (masked_rows.cl). */
        *r = (recipe){"masked_rows.cl", "masked_rows_mean", ""};
        snprintf(r->defines, sizeof r->defines, "-DDK=%zu -DDV=%zu%s", l->dk, l->dv,
                 id != CLMHA__K_MASKED_MEAN(1) ? ""
                 : l->int8_cache               ? " -DKV_I8"
                                               : " -DKV_HALF");
        return l->cfg.fully_masked_rows == CLMHA_FULLY_MASKED_KERAS &&
               (id == CLMHA__K_MASKED_MEAN(0) || l->narrow_cache);
    case CLMHA__K_SUM:
    case CLMHA__K_CONSTRAIN:
        /* the activity sums' groups take wg_attention work-items, a power of two the device
         * accepts */
        *r = (recipe){"regularize.cl", id == CLMHA__K_SUM ? "sum_abs_sq" : "constrain", ""};
        snprintf(r->defines, sizeof r->defines, "-DWG=%zu", l->wg_attention);
        return true;
    default:
        return false;
    }
}

/* Builds (or loads) kernels first..end-1 that the layer's settings take, releasing any earlier
 * build of each: the one loop every kernel of a layer is made by. */
clmha_status clmha__build_kernels_in(clmha_layer *l, int first, int end) {
    for (int id = first; id < end; id++) {
        recipe r;
        clmha__kernel_release(&l->kern[id]);
        if (!kernel_recipe(l, id, &r)) {
            continue;
        }
        cl_program prog;
        clmha_status st = clmha__program_get(l->ctx, r.file, r.defines, &prog);
        if (st == CLMHA_OK) {
            st = clmha__kernel_create(l->ctx, prog, r.name, &l->kern[id]);
        }
        if (st != CLMHA_OK) {
            return st;
        }
    }
    return CLMHA_OK;
}

/* The smaller of @p m and kernel @p id's work-group limit, where that kernel was built. */
static size_t kernel_wg_min(const clmha_layer *l, int id, size_t m) {
    const clmha__kernel *k = &l->kern[id];
    return k->k != NULL && k->max_wg < m ? k->max_wg : m;
}

/* The attention kernels, with the rows kernel's work-group size wg shrunk to what the compiled
 * kernel allows, and the GPU kernels (built for exactly wg_split) built again for fewer
 * work-items where the compiled kernels allow fewer than the device does (Mesa's llvmpipe:
 * 32). */
static clmha_status build_attention(clmha_layer *l, size_t wg) {
    clmha_context *ctx = l->ctx;
    for (int attempt = 0; attempt < 2; attempt++) {
        size_t lmem = (l->dk + 2 * wg) * sizeof(float);
        if (lmem > ctx->info.local_mem_bytes) {
            return clmha__fail(ctx, CLMHA_ERR_DEVICE_LIMIT,
                               "key_dim %zu needs %zu bytes of local memory in the attention "
                               "kernel; device \"%s\" has %llu",
                               l->dk, lmem, ctx->info.name,
                               (unsigned long long)ctx->info.local_mem_bytes);
        }
        l->wg_attention = wg;
        clmha_status st = clmha__build_kernels_in(l, CLMHA__K_ATT_FIRST, CLMHA__K_MERGE);
        if (st != CLMHA_OK) {
            return st;
        }
        size_t kmax = SIZE_MAX, gmax = SIZE_MAX;
        for (int half = 0; half < 2; half++) {
            kmax = kernel_wg_min(l, CLMHA__K_ATTN(CLMHA__ATT_ROWS, half), kmax);
            if (l->wg_split > 1) {
                gmax = kernel_wg_min(l, CLMHA__K_ATTN(CLMHA__ATT_SPLIT, half), gmax);
                gmax = kernel_wg_min(l, CLMHA__K_ATTN(CLMHA__ATT_QTILE, half), gmax);
            }
        }
        const bool gpu_fits = l->wg_split == 1 || gmax >= l->wg_split || gmax < 2;
        if (!gpu_fits) {
            l->wg_split = pow2_floor(gmax);
            l->lanes_key = gpu_lanes_key(l, l->wg_split);
            l->lanes_query = gpu_lanes_query(l, l->wg_split);
            clmha__log(ctx, CLMHA_LOG_INFO,
                       "the GPU attention kernels allow %zu work-items: built again for %zu", gmax,
                       l->wg_split);
        }
        if (kmax >= wg && gpu_fits) {
            return CLMHA_OK;
        }
        if (kmax >= wg) {
            continue; /* only the GPU kernels' size changes */
        }
        if (attempt == 1 || kmax == 0) {
            break;
        }
        wg = pow2_floor(kmax);
    }
    return clmha__fail(ctx, CLMHA_ERR_DEVICE_LIMIT,
                       "the attention kernel allows only %zu work-items on device \"%s\"",
                       l->kern[CLMHA__K_ATTN(CLMHA__ATT_ROWS, 0)].max_wg, ctx->info.name);
}

/* Whether kernel @p id (both cache dtypes' builds where the layer has a half cache) allows
 * @p wg work-items and fits in local memory. */
static bool variant_fits(const clmha_layer *l, clmha__att v, size_t wg) {
    for (int half = 0; half < (l->narrow_cache ? 2 : 1); half++) {
        const clmha__kernel *k = &l->kern[CLMHA__K_ATTN(v, half)];
        if (k->k == NULL || k->max_wg < wg || k->local_mem > l->ctx->info.local_mem_bytes) {
            return false;
        }
    }
    return true;
}

/* The work-group sizes of the layer's launches, from the compiled kernels' limits; the split,
 * all-heads, tile and gemm_tail variants are turned off where their compiled kernels cannot
 * take their settings (calls then use attention_rows, the split kernel, or the merge, output
 * projection and commit launches). */
static void fit_limits(clmha_layer *l) {
    clmha_context *ctx = l->ctx;
    const size_t wg = l->wg_attention;
    l->wg_gather =
        pow2_floor(kernel_wg_min(l, CLMHA__K_GATHER_MASK, kernel_wg_min(l, CLMHA__K_GATHER, 256)));
    size_t m = kernel_wg_min(l, CLMHA__K_GEMM_ACC, 64);
    m = kernel_wg_min(l, CLMHA__K_GEMM(CLMHA__GEMM_COLS4, 0), m);
    l->wg_gemm = pow2_floor(kernel_wg_min(l, CLMHA__K_GEMM(CLMHA__GEMM_COLS4, 1), m));
    l->wg_fill = pow2_floor(kernel_wg_min(l, CLMHA__K_FILL_BIAS, 256));
    m = kernel_wg_min(l, CLMHA__K_COMMIT(0), 256);
    m = kernel_wg_min(l, CLMHA__K_COMMIT(1), m);
    l->wg_commit = pow2_floor(kernel_wg_min(l, CLMHA__K_TO_NARROW, m));
    l->wg_qkv =
        pow2_floor(kernel_wg_min(l, CLMHA__K_PACK, kernel_wg_min(l, CLMHA__K_SPLIT_QKV, 256)));
    l->wg_sum = wg;
    m = kernel_wg_min(l, CLMHA__K_MASKED_MEAN(0), 256);
    l->wg_masked = pow2_floor(kernel_wg_min(l, CLMHA__K_MASKED_MEAN(1), m));
    l->wg_constrain = kernel_wg_min(l, CLMHA__K_CONSTRAIN, 64);
    const clmha__kernel *merge = &l->kern[CLMHA__K_MERGE];
    if (l->use_split && (!variant_fits(l, CLMHA__ATT_SPLIT, l->wg_split) || merge->max_wg < wg)) {
        clmha__log(ctx, CLMHA_LOG_INFO,
                   "split attention off: its kernels allow %zu and %zu work-items (need %zu, %zu)",
                   l->kern[CLMHA__K_ATTN(CLMHA__ATT_SPLIT, 0)].max_wg, merge->max_wg, l->wg_split,
                   wg);
        l->use_split = false;
    }
    const unsigned long long heads_lds = l->kern[CLMHA__K_ATTN(CLMHA__ATT_HEADS, 0)].local_mem;
    if (l->use_heads && (!l->use_split || !variant_fits(l, CLMHA__ATT_HEADS, 1))) {
        clmha__log(ctx, CLMHA_LOG_INFO,
                   "all-heads attention off: it needs %llu bytes of local memory", heads_lds);
        l->use_heads = false;
    }
    if (l->use_tile && !variant_fits(l, CLMHA__ATT_TILE, 1)) {
        clmha__log(ctx, CLMHA_LOG_INFO,
                   "query tiles off: their queries need %llu bytes of local memory",
                   (unsigned long long)l->kern[CLMHA__K_ATTN(CLMHA__ATT_TILE, 0)].local_mem);
        l->use_tile = false;
    }
    if (l->use_qtile && (!l->use_split || !variant_fits(l, CLMHA__ATT_QTILE, l->wg_split))) {
        clmha__log(ctx, CLMHA_LOG_INFO, "query tiles off: the kernel allows %zu work-items",
                   l->kern[CLMHA__K_ATTN(CLMHA__ATT_QTILE, 0)].max_wg);
        l->use_qtile = false;
    }
    l->wg_tail = l->tail_cols > 4 ? 1 : l->wg_gemm;
    for (int few = 0; few < 2; few++) {
        bool *use = few ? &l->use_tail_few : &l->use_tail;
        for (int half = 0; half < (l->narrow_cache ? 2 : 1) && *use; half++) {
            const clmha__kernel *k = &l->kern[CLMHA__K_TAIL(few, half)];
            if (k->max_wg < l->wg_tail || k->local_mem > ctx->info.local_mem_bytes) {
                clmha__log(ctx, CLMHA_LOG_INFO,
                           "gemm_tail%s off: it allows %zu work-items (needs %zu) and needs %llu "
                           "bytes of local memory",
                           few ? " (few rows)" : "", k->max_wg, l->wg_tail,
                           (unsigned long long)k->local_mem);
                *use = false;
            }
        }
    }
    l->use_tail_few = l->use_tail_few && l->use_tail;
}

/* Resolves the settings, then builds every kernel they can take: the attention work-group size
 * starts at the tuning table's (64, a multiple of every GPU's SIMD width) and shrinks to what
 * the device and kernel allow. */
clmha_status clmha__build_kernels(clmha_layer *l) {
    clmha_context *ctx = l->ctx;
    clmha_status st;
    size_t wg = pow2_floor(ctx->info.max_work_group_size < ctx->info.max_work_item_sizes[0]
                               ? ctx->info.max_work_group_size
                               : ctx->info.max_work_item_sizes[0]);
    if (wg > ctx->tuning.wg) {
        wg = pow2_floor(ctx->tuning.wg);
    }
    if ((st = split_settings(l, wg)) != CLMHA_OK) {
        return st;
    }
    gemm_settings(l);
    route_settings(l);
    if ((st = clmha__fill_prepare(ctx)) != CLMHA_OK || (st = build_attention(l, wg)) != CLMHA_OK ||
        (st = clmha__build_kernels_in(l, CLMHA__K_MERGE, CLMHA__K_COUNT)) != CLMHA_OK) {
        return st;
    }
    fit_limits(l);
    return clmha__regularize_build(l);
}
