/*
 * tuned.c - the tuned settings of a device, kept in the cache folder: a small text file whose
 * name hashes the platform, device name, driver version and clmha version, written by
 * clmha_context_save_tuned (clmha-tune) and loaded by every later context on that device under
 * the explicit settings (settings.c). The file repeats what it was made for, so a copied,
 * stale or corrupt file is recognised and ignored with a warning instead of steering launches.
 *
 * Format (one "field: value" a line, after the header line):
 *   clmha tuned settings 1
 *   platform: Portable Computing Language
 *   device: pthread-haswell-AMD EPYC
 *   driver: 3.1
 *   clmha: 0.1.0
 *   settings: split_chunk=512,tail=1
 *   note: clmha-tune 2026-12-03: decode 0.93, prefill 0.98 of the row's time
 */
#include "internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

#define TUNED_HEADER "clmha tuned settings 1"

/* The identity fields a file must repeat, in file order. */
static void identity(const clmha_context *ctx, const char *out[4]) {
    out[0] = ctx->info.platform_name;
    out[1] = ctx->info.name;
    out[2] = ctx->info.driver_version;
    out[3] = CLMHA_VERSION_STRING;
}

static const char *const field_names[4] = {"platform", "device", "driver", "clmha"};

void clmha__tuned_init(clmha_context *ctx) {
    ctx->tuned_path[0] = '\0';
    if (ctx->cache_dir == NULL) {
        return;
    }
    const char *id[4];
    identity(ctx, id);
    XXH3_state_t *h = XXH3_createState();
    if (h == NULL) {
        return;
    }
    XXH3_64bits_reset(h);
    for (int i = 0; i < 4; i++) {
        XXH3_64bits_update(h, id[i], strlen(id[i]) + 1); /* the NUL separates the fields */
    }
    const unsigned long long key = (unsigned long long)XXH3_64bits_digest(h);
    XXH3_freeState(h);
    snprintf(ctx->tuned_path, sizeof ctx->tuned_path, "%s/tuned-%016llx.txt", ctx->cache_dir, key);
    snprintf(ctx->tuned_source, sizeof ctx->tuned_source, "tuned: %s", ctx->tuned_path);
}

/* Copies line @p line's value after "name: " into @p out; false when the line is not that
 * field. */
static bool field(const char *line, const char *name, char *out, size_t len) {
    const size_t n = strlen(name);
    if (strncmp(line, name, n) != 0 || line[n] != ':' || line[n + 1] != ' ') {
        return false;
    }
    snprintf(out, len, "%s", line + n + 2);
    return true;
}

void clmha__tuned_load(clmha_context *ctx, clmha__settings *s) {
    if (ctx->tuned_path[0] == '\0') {
        return;
    }
    FILE *f = fopen(ctx->tuned_path, "r");
    if (f == NULL) {
        return; /* not tuned: the usual case */
    }
    char lines[8][1024];
    int n = 0;
    bool too_long = false;
    while (n < 8 && fgets(lines[n], sizeof lines[n], f) != NULL) {
        const size_t len = strlen(lines[n]);
        if (len > 0 && lines[n][len - 1] == '\n') {
            lines[n][len - 1] = '\0';
        } else if (!feof(f)) {
            too_long = true;
        }
        n++;
    }
    const bool more = fgetc(f) != EOF;
    fclose(f);
    const char *why = NULL;
    char value[1024], made_for[1100] = "";
    const char *id[4];
    identity(ctx, id);
    if (too_long || more || n < 6 || strcmp(lines[0], TUNED_HEADER) != 0) {
        why = "not a tuned-settings file of this clmha";
    } else {
        for (int i = 0; i < 4 && why == NULL; i++) {
            if (!field(lines[1 + i], field_names[i], value, sizeof value)) {
                why = "not a tuned-settings file of this clmha";
            } else if (strcmp(value, id[i]) != 0) {
                snprintf(made_for, sizeof made_for, "made for %s \"%.1000s\", this is \"%s\"",
                         field_names[i], value, id[i]);
                why = made_for;
            }
        }
    }
    char err[CLMHA__MSG_LEN];
    if (why == NULL && !field(lines[5], "settings", value, sizeof value)) {
        why = "no settings line";
    } else if (why == NULL && !clmha__settings_try(value, ctx->tuned_source, s, err, sizeof err)) {
        why = err;
    }
    if (why != NULL) {
        clmha__log(ctx, CLMHA_LOG_WARN, "ignored the tuned settings in \"%s\": %s", ctx->tuned_path,
                   why);
        return;
    }
    clmha__log(ctx, CLMHA_LOG_INFO, "tuned settings from \"%s\": %s", ctx->tuned_path, value);
}

clmha_status clmha_context_save_tuned(clmha_context *ctx, const char *settings, const char *note,
                                      char *path, size_t path_len) {
    if (ctx == NULL || settings == NULL) {
        return clmha__fail(ctx, CLMHA_ERR_NULL_ARGUMENT,
                           "clmha_context_save_tuned: %s must not be NULL",
                           ctx == NULL ? "ctx" : "settings");
    }
    if (ctx->tuned_path[0] == '\0') {
        return clmha__fail(ctx, CLMHA_ERR_INVALID_ARGUMENT,
                           "clmha_context_save_tuned: the context's binary cache is off, and "
                           "tuned settings are kept in the cache folder");
    }
    clmha__settings check;
    memset(&check, 0, sizeof check);
    clmha_status st = clmha__settings_parse(ctx, settings, "clmha_context_save_tuned", &check);
    if (st != CLMHA_OK) {
        return st;
    }
    if (strpbrk(settings, "\n\r") != NULL || (note != NULL && strpbrk(note, "\n\r") != NULL)) {
        return clmha__fail(ctx, CLMHA_ERR_INVALID_ARGUMENT,
                           "clmha_context_save_tuned: settings and note must be one line each");
    }
    if (strlen(settings) > 900 || (note != NULL && strlen(note) > 900)) {
        return clmha__fail(ctx, CLMHA_ERR_INVALID_ARGUMENT,
                           "clmha_context_save_tuned: settings and note must be at most 900 "
                           "characters each");
    }
    if (!clmha__make_dirs(ctx->cache_dir)) {
        return clmha__fail(ctx, CLMHA_ERR_IO,
                           "clmha_context_save_tuned: cannot create the cache folder \"%s\": %s",
                           ctx->cache_dir, strerror(errno));
    }
    const char *id[4];
    identity(ctx, id);
    char tmp[4300];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", ctx->tuned_path, (long)getpid());
    FILE *f = fopen(tmp, "w");
    if (f == NULL) {
        return clmha__fail(ctx, CLMHA_ERR_IO, "clmha_context_save_tuned: cannot write \"%s\": %s",
                           tmp, strerror(errno));
    }
    bool ok = fprintf(f, "%s\n", TUNED_HEADER) > 0;
    for (int i = 0; i < 4; i++) {
        ok = ok && fprintf(f, "%s: %s\n", field_names[i], id[i]) > 0;
    }
    ok = ok && fprintf(f, "settings: %s\nnote: %s\n", settings, note != NULL ? note : "") > 0;
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, ctx->tuned_path) != 0) {
        remove(tmp);
        return clmha__fail(ctx, CLMHA_ERR_IO, "clmha_context_save_tuned: writing \"%s\" failed",
                           ctx->tuned_path);
    }
    if (path != NULL && path_len > 0) {
        snprintf(path, path_len, "%s", ctx->tuned_path);
    }
    return CLMHA_OK;
}

const char *clmha_context_tuned_path(const clmha_context *ctx) {
    return ctx == NULL || ctx->tuned_path[0] == '\0' ? NULL : ctx->tuned_path;
}
