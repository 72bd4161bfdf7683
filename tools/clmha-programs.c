/*
 * clmha-programs - lists the OpenCL programs a layer builds, with the exact build options the
 * library passes, for each row of the tuning table and a few representative layers: the input of
 * tools/gpu-report.sh, which compiles them with the GPU vendors' compilers. Runs on any OpenCL
 * device (PoCL will do): the row's settings come from the table, not from the device, except the
 * work-group and local-memory limits, which the device and CLMHA_TUNE's max_local_mem cap.
 *
 * Output: one line per program a layer builds, tab-separated: row, key_dim, cache dtype, kernel
 * file (its headers included at build), options. Usage: clmha-programs [ROW ...] (default: every
 * row).
 */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The layers the report covers: GPT-2's head dim, a head dim that is not a power of two
 * (Whisper/OPT-350m-like 80) and a large one, with float32 and float16 caches. */
static const int head_dims[] = {64, 80, 128};
static const clmha_dtype cache_dtypes[] = {CLMHA_FLOAT32, CLMHA_FLOAT16};

static int list_row(const char *row) {
    char tune[64];
    snprintf(tune, sizeof tune, "row=%s", row);
    clmha_context_options o;
    clmha_context_options_init(&o);
    o.tune = tune; /* over CLMHA_TUNE, whose other keys still apply */
    for (size_t i = 0; i < sizeof head_dims / sizeof head_dims[0]; i++) {
        for (size_t j = 0; j < sizeof cache_dtypes / sizeof cache_dtypes[0]; j++) {
            clmha_context *ctx;
            if (clmha_context_create(&o, &ctx) != CLMHA_OK) {
                fprintf(stderr, "clmha-programs: %s\n", clmha_last_error());
                return 1;
            }
            clmha_layer_config cfg;
            clmha_layer_config_init(&cfg);
            cfg.num_heads = 12;
            cfg.key_dim = head_dims[i];
            cfg.cache_dtype = cache_dtypes[j];
            clmha_layer *layer;
            if (clmha_layer_create(ctx, &cfg, 768, 768, 0, &layer) != CLMHA_OK) {
                fprintf(stderr, "clmha-programs: row %s, key_dim %d: %s\n", row, head_dims[i],
                        clmha_last_error());
                clmha_context_release(ctx);
                return 1;
            }
            const char *std_prefix = "-cl-std=CL1.2";
            for (const clmha__program *p = ctx->programs; p != NULL; p = p->next) {
                const char *opts = p->options;
                if (strncmp(opts, std_prefix, strlen(std_prefix)) == 0) {
                    opts += strlen(std_prefix);
                    opts += *opts == ' ';
                }
                printf("%s\t%d\t%s\t%s\t%s\n", row, head_dims[i],
                       clmha__dtype_name(cache_dtypes[j]), p->name, opts);
            }
            clmha_layer_release(layer);
            clmha_context_release(ctx);
        }
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc > 1 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
        printf(
            "usage: clmha-programs [ROW ...]\n"
            "Lists the programs (file, build options) a layer builds under each tuning row\n"
            "(default: every row), for key_dim 64, 80 and 128 and float32 and float16 caches.\n");
        return 0;
    }
    if (argc > 1) {
        for (int i = 1; i < argc; i++) {
            if (list_row(argv[i]) != 0) {
                return 1;
            }
        }
        return 0;
    }
    char names[512];
    clmha__tuning_names(names, sizeof names);
    for (char *tok = strtok(names, ", "); tok != NULL; tok = strtok(NULL, ", ")) {
        if (list_row(tok) != 0) {
            return 1;
        }
    }
    return 0;
}
