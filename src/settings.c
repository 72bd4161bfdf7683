/*
 * settings.c - the one surface through which launch settings override the device's row of the
 * tuning table: the keys ("split_wg", "tail", ...) with their ranges, the parser of their
 * string form ("split_wg=32,tail=0": CLMHA_TUNE and clmha_context_options.tune), the
 * conversion of clmha_settings (options.settings) to it, and how the sources merge
 * (options.settings over options.tune over CLMHA_TUNE over the device's tuned file, tuned.c,
 * key by key). What each setting does is decided where it is used (context.c, layer_build.c);
 * docs/devices.md lists them.
 */
#include "internal.h"

#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum key_kind {
    KIND_ROW,    /* a row of the tuning table by name */
    KIND_SWITCH, /* 0 or 1 (off or on) */
    KIND_CHOICE, /* one of the '|'-separated words; its index is the value */
    KIND_COUNT,  /* a whole number from lo to hi */
    KIND_POW2,   /* a power of two from lo to hi */
    KIND_EITHER, /* lo or hi */
} key_kind;

typedef struct key_def {
    const char *key;
    key_kind kind;
    size_t lo, hi;
    const char *words; /* KIND_CHOICE */
    const char *what;  /* what the value is, for error messages */
} key_def;

static const key_def keys[CLMHA__SET_COUNT] = {
    [CLMHA__SET_ROW] = {"row", KIND_ROW, 0, 0, NULL, "a row of the tuning table"},
    [CLMHA__SET_MAX_WG] = {"max_work_group_size", KIND_COUNT, 1, SIZE_MAX, NULL,
                           "the most work-items a work-group clmha assumes the device allows"},
    [CLMHA__SET_MAX_LOCAL_MEM] = {"max_local_mem", KIND_COUNT, 1024, SIZE_MAX, NULL,
                                  "bytes of local memory clmha assumes the device has"},
    [CLMHA__SET_MAX_ITEM_LOOPS] = {"max_item_loops", KIND_COUNT, 16, SIZE_MAX, NULL,
                                   "loop iterations a work-item does at most"},
    [CLMHA__SET_POISON] = {"poison_buffers", KIND_SWITCH, 0, 1, NULL,
                           "new buffers filled with NaN"},
    [CLMHA__SET_GEMM] = {"gemm", KIND_CHOICE, 0, 2, "auto|clblast|own",
                         "the kernels that take the projections"},
    [CLMHA__SET_GEMM_SMALL_M] = {"gemm_small_m", KIND_COUNT, 1, 1u << 20, NULL,
                                 "most rows of a product the own GEMM takes where CLBlast runs"},
    [CLMHA__SET_GEMM_COLS] = {"gemm_cols", KIND_EITHER, 4, 32, NULL,
                              "output columns a work-item of the own GEMM takes"},
    [CLMHA__SET_GEMM_ROWS] = {"gemm_rows", KIND_COUNT, 1, 32, NULL,
                              "rows a work-item of the own GEMM takes in products of many rows"},
    [CLMHA__SET_GEMM_ROWS_FEW] = {"gemm_rows_few", KIND_COUNT, 1, 8, NULL,
                                  "rows a work-item of the own GEMM takes in products of 3 to "
                                  "gemm_small_m rows"},
    [CLMHA__SET_SPLIT] = {"split", KIND_SWITCH, 0, 1, NULL, "split attention"},
    [CLMHA__SET_SPLIT_WG] = {"split_wg", KIND_POW2, 1, 1u << 16, NULL,
                             "work-items a work-group of split attention"},
    [CLMHA__SET_SPLIT_CHUNK] = {"split_chunk", KIND_COUNT, 1, INT_MAX, NULL,
                                "the fewest keys a chunk of split attention takes"},
    [CLMHA__SET_HEADS] = {"heads", KIND_SWITCH, 0, 1, NULL, "the all-heads decode kernel"},
    [CLMHA__SET_KEY_BLOCK] = {"key_block", KIND_SWITCH, 0, 1, NULL, "keys sixteen at a time"},
    [CLMHA__SET_TILE] = {"tile", KIND_SWITCH, 0, 1, NULL, "query tiles"},
    [CLMHA__SET_TILE_ROWS] = {"tile_rows", KIND_COUNT, 1, 16, NULL,
                              "query rows a one-work-item query tile takes"},
    [CLMHA__SET_KEY_TILE] = {"key_tile", KIND_POW2, 1, 1u << 16, NULL,
                             "keys a key tile of the GPU query tiles holds"},
    [CLMHA__SET_TAIL] = {"tail", KIND_SWITCH, 0, 1, NULL, "gemm_tail, the fused last launch"},
    [CLMHA__SET_QKV_FUSE] = {"qkv_fuse", KIND_SWITCH, 0, 1, NULL,
                             "self-attention's projections as one CLBlast product"},
    [CLMHA__SET_PREFETCH] = {"prefetch", KIND_SWITCH, 0, 1, NULL,
                             "CPU decode attention prefetches the next block of keys"},
};

const char *clmha__setting_key(clmha__setting_id id) {
    return keys[id].key;
}

/* The allowed values of @p d, for error messages. */
static void allowed(const key_def *d, char *buf, size_t len) {
    switch (d->kind) {
    case KIND_ROW: {
        char names[160];
        clmha__tuning_names(names, sizeof names);
        snprintf(buf, len, "one of %s", names);
        break;
    }
    case KIND_SWITCH:
        snprintf(buf, len, "0 or 1 (also off or on)");
        break;
    case KIND_CHOICE:
        snprintf(buf, len, "one of %s", d->words);
        break;
    case KIND_COUNT:
        if (d->hi == SIZE_MAX) {
            snprintf(buf, len, "a whole number >= %zu", d->lo);
        } else {
            snprintf(buf, len, "a whole number from %zu to %zu", d->lo, d->hi);
        }
        break;
    case KIND_POW2:
        snprintf(buf, len, "a power of two from %zu to %zu", d->lo, d->hi);
        break;
    case KIND_EITHER:
        snprintf(buf, len, "%zu or %zu", d->lo, d->hi);
        break;
    }
}

/* The index of @p word among the '|'-separated @p words, or -1. */
static int word_index(const char *words, const char *word) {
    const size_t n = strlen(word);
    int i = 0;
    for (const char *w = words; *w != '\0'; i++) {
        const size_t m = strcspn(w, "|");
        if (m == n && strncmp(w, word, n) == 0) {
            return i;
        }
        w += m + (w[m] == '|');
    }
    return -1;
}

/* Parses @p value for @p d into *v (and the row's name into @p row): false when it is not
 * one of the allowed values. */
static bool parse_value(const key_def *d, const char *value, size_t *v, char *row, size_t row_len) {
    switch (d->kind) {
    case KIND_ROW:
        if (clmha__tuning_named(value) == NULL || strlen(value) >= row_len) {
            return false;
        }
        strcpy(row, value);
        *v = 1;
        return true;
    case KIND_SWITCH:
        if (strcmp(value, "1") == 0 || strcmp(value, "on") == 0) {
            *v = 1;
        } else if (strcmp(value, "0") == 0 || strcmp(value, "off") == 0) {
            *v = 0;
        } else {
            return false;
        }
        return true;
    case KIND_CHOICE: {
        const int i = word_index(d->words, value);
        *v = i < 0 ? 0 : (size_t)i;
        return i >= 0;
    }
    case KIND_COUNT:
        return clmha__parse_index(value, v) && *v >= d->lo && *v <= d->hi;
    case KIND_POW2:
        return clmha__parse_index(value, v) && *v >= d->lo && *v <= d->hi && (*v & (*v - 1)) == 0;
    case KIND_EITHER:
        return clmha__parse_index(value, v) && (*v == d->lo || *v == d->hi);
    }
    return false;
}

/* Copies [from, to) into @p buf without the spaces at either end. */
static void trimmed(const char *from, const char *to, char *buf, size_t len) {
    while (from < to && (*from == ' ' || *from == '\t')) {
        from++;
    }
    while (to > from && (to[-1] == ' ' || to[-1] == '\t')) {
        to--;
    }
    size_t n = (size_t)(to - from);
    n = n < len - 1 ? n : len - 1;
    memcpy(buf, from, n);
    buf[n] = '\0';
}

bool clmha__settings_try(const char *text, const char *source, clmha__settings *s, char *err,
                         size_t err_len) {
    clmha__settings out = *s; /* *s changes only when the whole text is valid */
    for (const char *p = text; *p != '\0';) {
        const size_t n = strcspn(p, ",");
        char item[160], key[64], value[96];
        if (n >= sizeof item) {
            snprintf(err, err_len, "%s: \"%.40s...\" is longer than any setting (%zu characters)",
                     source, p, n);
            return false;
        }
        trimmed(p, p + n, item, sizeof item);
        p += n + (p[n] == ',');
        if (item[0] == '\0') {
            continue; /* "a=1,,b=2" and a trailing comma */
        }
        const char *eq = strchr(item, '=');
        if (eq == NULL) {
            snprintf(err, err_len,
                     "%s: \"%s\" is not key=value (settings are \"key=value,...\", "
                     "e.g. \"split_wg=32,tail=0\")",
                     source, item);
            return false;
        }
        trimmed(item, eq, key, sizeof key);
        trimmed(eq + 1, item + strlen(item), value, sizeof value);
        int id = -1;
        for (int i = 0; i < CLMHA__SET_COUNT; i++) {
            if (strcmp(keys[i].key, key) == 0) {
                id = i;
            }
        }
        if (id < 0) {
            char names[512];
            size_t used = 0;
            for (int i = 0; i < CLMHA__SET_COUNT && used < sizeof names; i++) {
                int w =
                    snprintf(names + used, sizeof names - used, "%s%s", i ? ", " : "", keys[i].key);
                used += w > 0 ? (size_t)w : 0;
            }
            snprintf(err, err_len, "%s: unknown setting \"%s\" (the settings: %s)", source, key,
                     names);
            return false;
        }
        const key_def *d = &keys[id];
        size_t v = 0;
        if (!parse_value(d, value, &v, out.row, sizeof out.row)) {
            char what[200];
            allowed(d, what, sizeof what);
            snprintf(err, err_len, "%s: %s=\"%s\" is not %s (%s)", source, d->key, value, what,
                     d->what);
            return false;
        }
        out.v[id] = v;
        out.from[id] = source;
    }
    *s = out;
    return true;
}

clmha_status clmha__settings_parse(clmha_context *ctx, const char *text, const char *source,
                                   clmha__settings *s) {
    char err[CLMHA__MSG_LEN];
    if (!clmha__settings_try(text, source, s, err, sizeof err)) {
        return clmha__fail(ctx, CLMHA_ERR_INVALID_ARGUMENT, "%s", err);
    }
    return CLMHA_OK;
}

/* Appends "key=value," to @p buf for a field of options.settings that is set. */
static void add_size(char *buf, size_t len, clmha__setting_id id, size_t v) {
    if (v != 0) {
        const size_t used = strlen(buf);
        snprintf(buf + used, len - used, "%s=%zu,", keys[id].key, v);
    }
}

static void add_switch(char *buf, size_t len, clmha__setting_id id, clmha_switch v) {
    if (v != CLMHA_SWITCH_DEFAULT) {
        const size_t used = strlen(buf);
        const char *text = v == CLMHA_SWITCH_ON ? "on" : v == CLMHA_SWITCH_OFF ? "off" : "?";
        snprintf(buf + used, len - used, "%s=%s,", keys[id].key, text);
    }
}

clmha_status clmha__settings_from_struct(clmha_context *ctx, const clmha_settings *c,
                                         clmha__settings *s) {
    const char *source = "options.settings";
    char text[1024] = "";
    if (c->row != NULL && c->row[0] != '\0') {
        if (strpbrk(c->row, ",=") != NULL || strlen(c->row) > 64) {
            char what[200];
            allowed(&keys[CLMHA__SET_ROW], what, sizeof what);
            return clmha__fail(ctx, CLMHA_ERR_INVALID_ARGUMENT, "%s: row=\"%.64s\" is not %s",
                               source, c->row, what);
        }
        snprintf(text, sizeof text, "row=%s,", c->row);
    }
    if ((unsigned)c->gemm > CLMHA_GEMM_OWN) {
        return clmha__fail(ctx, CLMHA_ERR_INVALID_ARGUMENT,
                           "%s: gemm=%d is not CLMHA_GEMM_AUTO, CLMHA_GEMM_CLBLAST or "
                           "CLMHA_GEMM_OWN",
                           source, (int)c->gemm);
    }
    const clmha_switch sw[] = {c->poison_buffers, c->split, c->heads,    c->key_block,
                               c->tile,           c->tail,  c->qkv_fuse, c->prefetch};
    const clmha__setting_id sw_id[] = {CLMHA__SET_POISON,    CLMHA__SET_SPLIT,   CLMHA__SET_HEADS,
                                       CLMHA__SET_KEY_BLOCK, CLMHA__SET_TILE,    CLMHA__SET_TAIL,
                                       CLMHA__SET_QKV_FUSE,  CLMHA__SET_PREFETCH};
    for (size_t i = 0; i < sizeof sw / sizeof sw[0]; i++) {
        if ((unsigned)sw[i] > CLMHA_SWITCH_OFF) {
            return clmha__fail(ctx, CLMHA_ERR_INVALID_ARGUMENT,
                               "%s: %s=%d is not CLMHA_SWITCH_DEFAULT, CLMHA_SWITCH_ON or "
                               "CLMHA_SWITCH_OFF",
                               source, keys[sw_id[i]].key, (int)sw[i]);
        }
        add_switch(text, sizeof text, sw_id[i], sw[i]);
    }
    if (c->gemm != CLMHA_GEMM_AUTO) {
        const size_t used = strlen(text);
        snprintf(text + used, sizeof text - used, "gemm=%s,",
                 c->gemm == CLMHA_GEMM_OWN ? "own" : "clblast");
    }
    add_size(text, sizeof text, CLMHA__SET_MAX_WG, c->max_work_group_size);
    add_size(text, sizeof text, CLMHA__SET_MAX_LOCAL_MEM, c->max_local_mem);
    add_size(text, sizeof text, CLMHA__SET_MAX_ITEM_LOOPS, c->max_item_loops);
    add_size(text, sizeof text, CLMHA__SET_GEMM_SMALL_M, c->gemm_small_m);
    add_size(text, sizeof text, CLMHA__SET_GEMM_COLS, c->gemm_cols);
    add_size(text, sizeof text, CLMHA__SET_GEMM_ROWS, c->gemm_rows);
    add_size(text, sizeof text, CLMHA__SET_GEMM_ROWS_FEW, c->gemm_rows_few);
    add_size(text, sizeof text, CLMHA__SET_SPLIT_WG, c->split_wg);
    add_size(text, sizeof text, CLMHA__SET_SPLIT_CHUNK, c->split_chunk);
    add_size(text, sizeof text, CLMHA__SET_TILE_ROWS, c->tile_rows);
    add_size(text, sizeof text, CLMHA__SET_KEY_TILE, c->key_tile);
    return clmha__settings_parse(ctx, text, source, s);
}

extern char **environ;

/* Warns about each CLMHA_* variable of the environment that clmha does not read (those of
 * its test suite, CLMHA_TEST_*, aside), rather than ignore a user's setting silently: one of
 * the per-setting variables CLMHA_TUNE replaced (CLMHA_ and the key in capitals, CLMHA_TUNING
 * for row) gets its CLMHA_TUNE spelling. Scans the environment instead of asking for each name,
 * so that a misspelt name is caught too. */
static void warn_unread_variables(const clmha_context *ctx) {
    static const char *const read[] = {"CLMHA_PLATFORM",  "CLMHA_DEVICE",     "CLMHA_DEVICE_TYPE",
                                       "CLMHA_CACHE_DIR", "CLMHA_KERNEL_DIR", "CLMHA_LOG",
                                       "CLMHA_PROFILE",   "CLMHA_TUNE"};
    for (char **e = environ; e != NULL && *e != NULL; e++) {
        const char *var = *e;
        const char *eq = strchr(var, '=');
        const size_t n = eq != NULL ? (size_t)(eq - var) : strlen(var);
        if (strncmp(var, "CLMHA_", 6) != 0 || strncmp(var, "CLMHA_TEST_", 11) == 0 || eq == NULL ||
            eq[1] == '\0') {
            continue;
        }
        bool known = false;
        for (size_t i = 0; i < sizeof read / sizeof read[0]; i++) {
            known = known || (strlen(read[i]) == n && strncmp(var, read[i], n) == 0);
        }
        if (known) {
            continue;
        }
        char key[64] = "";
        for (size_t i = 6; i < n && i - 6 + 1 < sizeof key; i++) {
            key[i - 6] = (char)(var[i] >= 'A' && var[i] <= 'Z' ? var[i] - 'A' + 'a' : var[i]);
            key[i - 5] = '\0';
        }
        int id = strcmp(key, "tuning") == 0 ? CLMHA__SET_ROW : -1;
        for (int i = 0; i < CLMHA__SET_COUNT && id < 0; i++) {
            id = strcmp(keys[i].key, key) == 0 ? i : -1;
        }
        if (id >= 0) {
            clmha__log(ctx, CLMHA_LOG_WARN,
                       "%.*s is no longer read: use CLMHA_TUNE=%s=%s (docs/devices.md)", (int)n,
                       var, keys[id].key, eq + 1);
        } else {
            clmha__log(ctx, CLMHA_LOG_WARN,
                       "%.*s is not a variable clmha reads (docs/devices.md lists them)", (int)n,
                       var);
        }
    }
}

clmha_status clmha__settings_resolve(clmha_context *ctx, const clmha_context_options *o,
                                     clmha__settings *s) {
    memset(s, 0, sizeof *s);
    clmha_status st = CLMHA_OK;
    clmha__tuned_init(ctx);
    if (o == NULL || o->use_tuned) {
        clmha__tuned_load(ctx, s);
    }
    if (o == NULL || o->use_environment) {
        const char *env = clmha__getenv("CLMHA_TUNE");
        if (env != NULL && (st = clmha__settings_parse(ctx, env, "CLMHA_TUNE", s)) != CLMHA_OK) {
            return st;
        }
        warn_unread_variables(ctx);
    }
    if (o != NULL && o->tune != NULL &&
        (st = clmha__settings_parse(ctx, o->tune, "options.tune", s)) != CLMHA_OK) {
        return st;
    }
    if (o != NULL && o->settings != NULL) {
        st = clmha__settings_from_struct(ctx, o->settings, s);
    }
    return st;
}

bool clmha__setting(const clmha_context *ctx, clmha__setting_id id, size_t *v) {
    if (ctx->settings.from[id] == NULL) {
        return false;
    }
    *v = ctx->settings.v[id];
    return true;
}

const char *clmha__setting_source(const clmha_context *ctx, clmha__setting_id id) {
    return ctx->settings.from[id];
}

size_t clmha_context_settings(const clmha_context *ctx, char *buf, size_t len) {
    char tmp[1];
    if (buf == NULL || len == 0) {
        buf = tmp, len = 1;
    }
    buf[0] = '\0';
    if (ctx == NULL) {
        return 0;
    }
    size_t used = 0;
    int w = snprintf(buf, len, "row=%s (%s)", ctx->tuning.name,
                     ctx->settings.from[CLMHA__SET_ROW] ? ctx->settings.from[CLMHA__SET_ROW]
                                                        : "the device's row");
    used += w > 0 ? (size_t)w : 0;
    for (int i = 0; i < CLMHA__SET_COUNT; i++) {
        if (i == CLMHA__SET_ROW || ctx->settings.from[i] == NULL) {
            continue;
        }
        const key_def *d = &keys[i];
        char value[32];
        const size_t v = ctx->settings.v[i];
        if (d->kind == KIND_CHOICE) {
            const char *word = d->words;
            for (size_t k = 0; k < v; k++) {
                word += strcspn(word, "|") + 1;
            }
            snprintf(value, sizeof value, "%.*s", (int)strcspn(word, "|"), word);
        } else {
            snprintf(value, sizeof value, "%zu", v);
        }
        w = snprintf(buf + (used < len ? used : len - 1), used < len ? len - used : 1,
                     ", %s=%s (%s)", d->key, value, ctx->settings.from[i]);
        used += w > 0 ? (size_t)w : 0;
    }
    return used;
}
