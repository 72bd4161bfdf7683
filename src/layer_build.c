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

/* A build of gemm_bias4 and gemm_qkv4 with *rows rows of CLMHA__GEMM_BLOCK_COLS columns a
 * work-item: *rows is @p def or the setting @p id (gemm_rows or gemm_rows_few; their ranges
 * are the parser's); 1 builds nothing. */
static clmha_status build_gemm_rows(clmha_layer *l, clmha__setting_id id, size_t def, size_t *rows,
                                    clmha__kernel *k_gemm, clmha__kernel *k_qkv) {
    clmha_context *ctx = l->ctx;
    if (!clmha__setting(ctx, id, rows)) {
        *rows = def;
    }
    if (*rows == 1) {
        return CLMHA_OK;
    }
    char defines[48];
    snprintf(defines, sizeof defines, "-DGC=%d -DGR=%zu", CLMHA__GEMM_BLOCK_COLS, *rows);
    cl_program prog;
    clmha_status st = clmha__program_get(ctx, "gemm.cl", defines, &prog);
    if (st == CLMHA_OK) {
        st = clmha__kernel_create(ctx, prog, "gemm_bias4", k_gemm);
    }
    if (st == CLMHA_OK) {
        st = clmha__kernel_create(ctx, prog, "gemm_qkv4", k_qkv);
    }
    return st;
}

/* gemm_tail, the last launch of calls whose output projection takes the own GEMM: built from
 * merge.cl, gemm.cl and splice.cl with the output's columns a work-item (32 on CPUs where they
 * divide the output width, else 4), one work-item a group for 32 columns, else the own GEMM's
 * group size; one row a work-item, and where the few-rows build of the own GEMM exists (CPUs)
 * also with its rows (use_tail_few), for batched decode steps. Off (the merge, output
 * projection and commit launches instead) with tail=0, an output width that is not a
 * multiple of 4, or where its merged rows (H * DV floats each) and chunk weights do not fit in
 * local memory or the kernel allows fewer work-items. Needs gemm.cl's kernels built (wg_gemm,
 * gemm_few). */
static clmha_status build_tail(clmha_layer *l) {
    clmha_context *ctx = l->ctx;
    const size_t hv = l->heads * l->dv;
    l->use_tail = switch_on(ctx, CLMHA__SET_TAIL, true) && l->out_features % 4 == 0 &&
                  (hv + CLMHA__MAX_CHUNKS) * sizeof(float) <= ctx->info.local_mem_bytes &&
                  !l->gemm_k_long;
    if (!l->use_tail) {
        return CLMHA_OK;
    }
    l->tail_cols = clmha__gemm_cols(l, l->out_features);
    l->wg_tail = l->tail_cols > 4 ? 1 : l->wg_gemm;
    l->use_tail_few =
        l->gemm_few > 1 && l->tail_cols == CLMHA__GEMM_BLOCK_COLS &&
        (l->gemm_few * hv + CLMHA__MAX_CHUNKS) * sizeof(float) <= ctx->info.local_mem_bytes;
    for (int few = 0; few < (l->use_tail_few ? 2 : 1); few++) {
        for (int half = 0; half < (l->half_cache ? 2 : 1); half++) {
            char defines[160], rows[24] = "";
            if (few) {
                snprintf(rows, sizeof rows, " -DGR=%zu", l->gemm_few);
            }
            snprintf(defines, sizeof defines, "-DDV=%zu -DHV=%zu -DGC=%zu -DMAX_CHUNKS=%d%s%s",
                     l->dv, hv, l->tail_cols, CLMHA__MAX_CHUNKS, rows, half ? " -DCACHE_HALF" : "");
            clmha__kernel *k = few ? (half ? &l->k_tail_few_half : &l->k_tail_few)
                                   : (half ? &l->k_tail_half : &l->k_tail);
            cl_program prog;
            clmha_status st = clmha__program_get(ctx, "tail.cl", defines, &prog);
            if (st == CLMHA_OK) {
                st = clmha__kernel_create(ctx, prog, "gemm_tail", k);
            }
            if (st != CLMHA_OK) {
                return st;
            }
            if (k->max_wg < l->wg_tail || k->local_mem > ctx->info.local_mem_bytes) {
                clmha__log(ctx, CLMHA_LOG_INFO,
                           "gemm_tail%s off: it allows %zu work-items (needs %zu) and needs %llu "
                           "bytes of local memory",
                           few ? " (few rows)" : "", k->max_wg, l->wg_tail,
                           (unsigned long long)k->local_mem);
                *(few ? &l->use_tail_few : &l->use_tail) = false;
            }
        }
    }
    return CLMHA_OK;
}

/* The attention kernels for one cache dtype (half: KV_HALF): attention_rows.cl's with wg
 * work-items a group, and either attention_cpu.cl's (wg_split 1) or attention_gpu.cl's. */
static clmha_status build_attention_family(clmha_layer *l, size_t wg, bool half) {
    clmha_context *ctx = l->ctx;
    const char *kv = half ? " -DKV_HALF" : "";
    char defines[256];
    cl_program prog;
    clmha_status st;
    /* GPUs (the split kernel several work-items a group) take the rows kernel's dot products
     * four lanes wide: sixteen hold too many registers in flight. */
    snprintf(defines, sizeof defines, "-DDK=%zu -DDV=%zu -DWG=%zu%s%s", l->dk, l->dv, wg,
             l->wg_split > 1 ? " -DQK_VEC=4" : "", kv);
    clmha__kernel *rows = half ? &l->k_attention_half : &l->k_attention;
    clmha__kernel *split = half ? &l->k_split_half : &l->k_split;
    clmha__kernel_release(rows);
    clmha__kernel_release(split);
    if ((st = clmha__program_get(ctx, "attention_rows.cl", defines, &prog)) != CLMHA_OK ||
        (st = clmha__kernel_create(ctx, prog, "attention_rows", rows)) != CLMHA_OK) {
        return st;
    }
    if (l->wg_split == 1) {
        clmha__kernel *heads = half ? &l->k_heads_half : &l->k_heads;
        clmha__kernel *tile = half ? &l->k_tile_half : &l->k_tile;
        clmha__kernel_release(heads);
        clmha__kernel_release(tile);
        snprintf(defines, sizeof defines, "-DDK=%zu -DDV=%zu -DTQ=%zu -DNH=%zu -DKEY_BLOCK=%d%s",
                 l->dk, l->dv, l->tile_rows, l->use_heads ? l->heads : 1, l->key_block ? 1 : 0, kv);
        if ((st = clmha__program_get(ctx, "attention_cpu.cl", defines, &prog)) != CLMHA_OK ||
            (st = clmha__kernel_create(ctx, prog, "attention_split", split)) != CLMHA_OK ||
            (st = clmha__kernel_create(ctx, prog, "attention_heads", heads)) != CLMHA_OK ||
            (st = clmha__kernel_create(ctx, prog, "attention_tile", tile)) != CLMHA_OK) {
            return st;
        }
        return CLMHA_OK;
    }
    clmha__kernel *qtile = half ? &l->k_qtile_half : &l->k_qtile;
    clmha__kernel_release(qtile);
    snprintf(defines, sizeof defines, "-DDK=%zu -DDV=%zu -DWGS=%zu -DLK=%zu -DLQ=%zu -DKT=%zu%s",
             l->dk, l->dv, l->wg_split, l->lanes_key, l->lanes_query, l->key_tile, kv);
    if ((st = clmha__program_get(ctx, "attention_gpu.cl", defines, &prog)) != CLMHA_OK ||
        (st = clmha__kernel_create(ctx, prog, "attention_split_gpu", split)) != CLMHA_OK ||
        (st = clmha__kernel_create(ctx, prog, "attention_qtile_gpu", qtile)) != CLMHA_OK) {
        return st;
    }
    return CLMHA_OK;
}

/* The attention kernels (rows, split, and the family's tiles) and the merge; the rows kernel's
 * work-group size wg shrinks to what the compiled kernel allows; the split, all-heads and tile
 * kernels are turned off where the compiled kernels cannot take their settings. */
static clmha_status build_attention(clmha_layer *l, size_t wg) {
    clmha_context *ctx = l->ctx;
    clmha_status st;
    for (int attempt = 0; attempt < 2; attempt++) {
        size_t lmem = (l->dk + 2 * wg) * sizeof(float);
        if (lmem > ctx->info.local_mem_bytes) {
            return clmha__fail(ctx, CLMHA_ERR_DEVICE_LIMIT,
                               "key_dim %zu needs %zu bytes of local memory in the attention "
                               "kernel; device \"%s\" has %llu",
                               l->dk, lmem, ctx->info.name,
                               (unsigned long long)ctx->info.local_mem_bytes);
        }
        size_t kmax = SIZE_MAX, gmax = SIZE_MAX;
        for (int half = 0; half < (l->half_cache ? 2 : 1); half++) {
            if ((st = build_attention_family(l, wg, half != 0)) != CLMHA_OK) {
                return st;
            }
            const clmha__kernel *rows = half ? &l->k_attention_half : &l->k_attention;
            kmax = kmax < rows->max_wg ? kmax : rows->max_wg;
            if (l->wg_split > 1) { /* the GPU kernels are built for exactly wg_split */
                const clmha__kernel *split = half ? &l->k_split_half : &l->k_split;
                const clmha__kernel *qtile = half ? &l->k_qtile_half : &l->k_qtile;
                gmax = gmax < split->max_wg ? gmax : split->max_wg;
                gmax = gmax < qtile->max_wg ? gmax : qtile->max_wg;
            }
        }
        /* A device may allow the GPU kernels fewer work-items than it allows in general
         * (Mesa's llvmpipe: 32): they are built again for that many. */
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
            break;
        }
        if (kmax >= wg) {
            continue; /* only the GPU kernels again, with the same wg */
        }
        if (attempt == 1 || kmax == 0) {
            return clmha__fail(ctx, CLMHA_ERR_DEVICE_LIMIT,
                               "the attention kernel allows only %zu work-items on device \"%s\"",
                               kmax, ctx->info.name);
        }
        wg = pow2_floor(kmax);
    }
    l->wg_attention = wg;
    char dv_define[48];
    cl_program prog;
    snprintf(dv_define, sizeof dv_define, "-DDV=%zu -DMAX_CHUNKS=%d", l->dv, CLMHA__MAX_CHUNKS);
    if ((st = clmha__program_get(ctx, "merge.cl", dv_define, &prog)) != CLMHA_OK ||
        (st = clmha__kernel_create(ctx, prog, "attention_merge", &l->k_merge)) != CLMHA_OK) {
        return st;
    }
    /* The split kernels must take their work-group sizes (merge runs with wg); where the
     * compiled kernel allows fewer, calls use attention_rows alone. */
    if (l->use_split && (l->k_split.max_wg < l->wg_split || l->k_merge.max_wg < wg ||
                         (l->half_cache && l->k_split_half.max_wg < l->wg_split) ||
                         l->k_split.local_mem > ctx->info.local_mem_bytes)) {
        clmha__log(ctx, CLMHA_LOG_INFO,
                   "split attention off: its kernels allow %zu and %zu work-items (need %zu, %zu)",
                   l->k_split.max_wg, l->k_merge.max_wg, l->wg_split, wg);
        l->use_split = false;
    }
    if (l->use_heads &&
        (!l->use_split || l->k_heads.local_mem > ctx->info.local_mem_bytes ||
         (l->half_cache && l->k_heads_half.local_mem > ctx->info.local_mem_bytes))) {
        clmha__log(ctx, CLMHA_LOG_INFO,
                   "all-heads attention off: it needs %llu bytes of local memory",
                   (unsigned long long)l->k_heads.local_mem);
        l->use_heads = false;
    }
    if (l->use_tile && (l->k_tile.local_mem > ctx->info.local_mem_bytes ||
                        (l->half_cache && l->k_tile_half.local_mem > ctx->info.local_mem_bytes))) {
        clmha__log(ctx, CLMHA_LOG_INFO,
                   "query tiles off: their queries need %llu bytes of local memory",
                   (unsigned long long)l->k_tile.local_mem);
        l->use_tile = false;
    }
    if (l->use_qtile && (!l->use_split || l->k_qtile.max_wg < l->wg_split ||
                         l->k_qtile.local_mem > ctx->info.local_mem_bytes ||
                         (l->half_cache && l->k_qtile_half.max_wg < l->wg_split))) {
        clmha__log(ctx, CLMHA_LOG_INFO, "query tiles off: the kernel allows %zu work-items",
                   l->k_qtile.max_wg);
        l->use_qtile = false;
    }
    return CLMHA_OK;
}

/* Builds the programs and kernels; the attention work-group size starts at the tuning table's
 * (64, a multiple of every GPU's SIMD width) and shrinks to what the device and kernel allow. */
clmha_status clmha__build_kernels(clmha_layer *l) {
    clmha_context *ctx = l->ctx;
    clmha_status st;
    cl_program prog;
    size_t wg = pow2_floor(ctx->info.max_work_group_size < ctx->info.max_work_item_sizes[0]
                               ? ctx->info.max_work_group_size
                               : ctx->info.max_work_item_sizes[0]);
    if (wg > ctx->tuning.wg) {
        wg = pow2_floor(ctx->tuning.wg);
    }
    if ((st = split_settings(l, wg)) != CLMHA_OK || (st = clmha__fill_prepare(ctx)) != CLMHA_OK) {
        return st;
    }
    if ((st = build_attention(l, wg)) != CLMHA_OK) {
        return st;
    }
    if ((st = clmha__program_get(ctx, "bias.cl", "", &prog)) != CLMHA_OK ||
        (st = clmha__kernel_create(ctx, prog, "fill_bias", &l->k_fill)) != CLMHA_OK) {
        return st;
    }
    if ((st = clmha__program_get(ctx, "gather.cl", "", &prog)) != CLMHA_OK ||
        (st = clmha__kernel_create(ctx, prog, "gather_rows", &l->k_gather)) != CLMHA_OK ||
        (st = clmha__kernel_create(ctx, prog, "gather_mask", &l->k_gather_mask)) != CLMHA_OK) {
        return st;
    }
    l->wg_gather =
        pow2_floor(l->k_gather.max_wg < l->k_gather_mask.max_wg ? l->k_gather.max_wg
                                                                : l->k_gather_mask.max_wg);
    l->wg_gather = l->wg_gather < 256 ? l->wg_gather : 256;
    if ((st = clmha__program_get(ctx, "gemm.cl", "", &prog)) != CLMHA_OK ||
        (st = clmha__kernel_create(ctx, prog, "gemm_acc", &l->k_gemm)) != CLMHA_OK ||
        (st = clmha__kernel_create(ctx, prog, "gemm_bias4", &l->k_gemm4)) != CLMHA_OK ||
        (st = clmha__kernel_create(ctx, prog, "gemm_qkv4", &l->k_qkv)) != CLMHA_OK) {
        return st;
    }
    l->wg_gemm = pow2_floor(l->k_gemm.max_wg < 64 ? l->k_gemm.max_wg : 64);
    l->wg_gemm = l->wg_gemm < l->k_gemm4.max_wg ? l->wg_gemm : pow2_floor(l->k_gemm4.max_wg);
    l->wg_gemm = l->wg_gemm < l->k_qkv.max_wg ? l->wg_gemm : pow2_floor(l->k_qkv.max_wg);
    /* Where the tuning table says (CPUs), also 32 columns a work-item (gemm_cols: 4 or 32). */
    size_t cols = ctx->tuning.gemm_cols;
    clmha__setting(ctx, CLMHA__SET_GEMM_COLS, &cols);
    l->gemm_wide = cols == 32 ? 32 : 0;
    if (l->gemm_wide != 0 &&
        ((st = clmha__program_get(ctx, "gemm.cl", "-DGC=32", &prog)) != CLMHA_OK ||
         (st = clmha__kernel_create(ctx, prog, "gemm_bias4", &l->k_gemm_wide)) != CLMHA_OK ||
         (st = clmha__kernel_create(ctx, prog, "gemm_qkv4", &l->k_qkv_wide)) != CLMHA_OK)) {
        return st;
    }
    /* Where the 32-column build is (CPUs): the table's rows of 32 columns a work-item (12) for
     * products of many rows (prefill), unless gemm=clblast leaves those to CLBlast, and
     * its few rows (4) for 3 to gemm_small_m rows (batched decode steps). */
    const bool cpu_rows = l->gemm_wide != 0;
    if ((st = build_gemm_rows(l, CLMHA__SET_GEMM_ROWS,
                              cpu_rows && !ctx->clblast_only ? ctx->tuning.gemm_rows : 1,
                              &l->gemm_rows, &l->k_gemm_blk, &l->k_qkv_blk)) != CLMHA_OK ||
        (st = build_gemm_rows(l, CLMHA__SET_GEMM_ROWS_FEW, cpu_rows ? ctx->tuning.gemm_rows_few : 1,
                              &l->gemm_few, &l->k_gemm_few, &l->k_qkv_few)) != CLMHA_OK) {
        return st;
    }
    if (!cpu_rows) {
        l->gemm_few = 1; /* the few-rows build goes with the 32-column one */
    }
    if ((st = clmha__program_get(ctx, "splice.cl", "", &prog)) != CLMHA_OK ||
        (st = clmha__kernel_create(ctx, prog, "commit", &l->k_commit)) != CLMHA_OK) {
        return st;
    }
    if (l->half_cache &&
        ((st = clmha__program_get(ctx, "splice.cl", "-DCACHE_HALF", &prog)) != CLMHA_OK ||
         (st = clmha__kernel_create(ctx, prog, "commit", &l->k_commit_half)) != CLMHA_OK ||
         (st = clmha__kernel_create(ctx, prog, "to_half", &l->k_to_half)) != CLMHA_OK)) {
        return st;
    }
    /* Self-attention's projections as one CLBlast product: where CLBlast may take all three
     * (clmha__project_qkv_blas_fits) and the three input dims are equal, unless
     * qkv_fuse=0. */
    const size_t nq = l->heads * l->dk, nv = l->heads * l->dv;
    l->fuse_blas = switch_on(ctx, CLMHA__SET_QKV_FUSE, true) && l->dq_in == l->dk_in &&
                   l->dq_in == l->dv_in && clmha__clblast_may_take(l, nq) &&
                   clmha__clblast_may_take(l, nv);
    if (l->fuse_blas) {
        if ((st = clmha__program_get(ctx, "qkv.cl", "", &prog)) != CLMHA_OK ||
            (st = clmha__kernel_create(ctx, prog, "pack_columns", &l->k_pack)) != CLMHA_OK ||
            (st = clmha__kernel_create(ctx, prog, "split_qkv", &l->k_split_qkv)) != CLMHA_OK) {
            return st;
        }
        size_t m =
            l->k_pack.max_wg < l->k_split_qkv.max_wg ? l->k_pack.max_wg : l->k_split_qkv.max_wg;
        l->wg_qkv = pow2_floor(m < 256 ? m : 256);
    }
    /* The own GEMM's work-items loop over the whole input width, a few iterations an input
     * element (4 bounds every build): widths past item_loops / 4 go to CLBlast, or where it
     * cannot run to gemm_acc in slices of the width (projection.c). */
    size_t k_max = l->dq_in > l->dk_in ? l->dq_in : l->dk_in;
    k_max = k_max > l->dv_in ? k_max : l->dv_in;
    k_max = k_max > l->heads * l->dv ? k_max : l->heads * l->dv;
    l->gemm_k_long = k_max > ctx->item_loops / 4;
    if (l->gemm_k_long) {
        clmha__log(ctx, CLMHA_LOG_INFO,
                   "input width %zu: projections on CLBlast (the own GEMM would loop past %zu "
                   "iterations a work-item)",
                   k_max, ctx->item_loops);
    }
    if ((st = build_tail(l)) != CLMHA_OK) {
        return st;
    }
    l->wg_fill = pow2_floor(l->k_fill.max_wg < 256 ? l->k_fill.max_wg : 256);
    l->wg_commit = pow2_floor(l->k_commit.max_wg < 256 ? l->k_commit.max_wg : 256);
    if (l->half_cache) {
        size_t m = l->k_commit_half.max_wg < l->k_to_half.max_wg ? l->k_commit_half.max_wg
                                                                 : l->k_to_half.max_wg;
        l->wg_commit = l->wg_commit < m ? l->wg_commit : pow2_floor(m);
    }
    return clmha__regularize_build(l);
}
