/*
 * clmha-programs - lists the OpenCL programs a layer builds, with the exact build options the
 * library passes, for each row of the tuning table and a few representative layers: the input of
 * tools/gpu-report.sh, which compiles them with the GPU vendors' compilers. Runs on any OpenCL
 * device (PoCL will do): the row's settings come from the table, not from the device, except the
 * work-group and local-memory limits, which the device and CLMHA_TUNE's max_local_mem cap.
 *
 * Output: one line per program a layer builds, tab-separated: row, key_dim, cache dtype, kernel
 * file (its headers included at build), options. Usage: clmha-programs [ROW ...] (default: every
 * row). The quantized and 16-bit-policy layers' programs (quant.cl, quant_cpu.cl, gemm16.cl) are
 * listed under key_dim 64, float32.
 */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The layers the report covers: GPT-2's head dim, a head dim that is not a power of two
 * (Whisper/OPT-350m-like 80) and a large one, with float32, float16 and int8 caches. */
static const int head_dims[] = {64, 80, 128};
static const clmha_dtype cache_dtypes[] = {CLMHA_FLOAT32, CLMHA_FLOAT16, CLMHA_INT8};

/* Quantizes @p layer to int8 and two more layers of @p cfg to int4 (groups of 128) and int4/-1,
 * and makes a float16 and a bfloat16 layer, so that the context holds every quant.cl,
 * quant_cpu.cl and gemm16.cl program; 0 on success. */
static int list_quantized(clmha_context *ctx, const clmha_layer_config *cfg, clmha_layer *layer) {
    static const char *const modes[] = {"int4", "int4/-1"};
    if (clmha_layer_quantize(layer, "int8") != CLMHA_OK) {
        return 1;
    }
    for (int m = 0; m < 2; m++) {
        clmha_layer *q = NULL;
        if (clmha_layer_create(ctx, cfg, 768, 768, 0, &q) != CLMHA_OK ||
            clmha_layer_quantize(q, modes[m]) != CLMHA_OK) {
            clmha_layer_release(q);
            return 1;
        }
        clmha_layer_release(q);
    }
    /* and the 16-bit dtype policies' (gemm16.cl), float16 and bfloat16 */
    for (int p = 0; p < 2; p++) {
        clmha_layer_config c = *cfg;
        c.dtype_policy = p ? CLMHA_POLICY_BFLOAT16 : CLMHA_POLICY_FLOAT16;
        clmha_layer *q = NULL;
        if (clmha_layer_create(ctx, &c, 768, 768, 0, &q) != CLMHA_OK) {
            return 1;
        }
        clmha_layer_release(q);
    }
    return 0;
}

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
            /* The quantized layers' programs (quant.cl), once a row: int8 on this layer,
             * int4 in groups (Keras's default) and per column on two more. */
            if (i == 0 && j == 0 && list_quantized(ctx, &cfg, layer) != 0) {
                fprintf(stderr, "clmha-programs: row %s, quantized layers: %s\n", row,
                        clmha_last_error());
                clmha_layer_release(layer);
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
        printf("usage: clmha-programs [ROW ...]\n"
               "Lists the programs (file, build options) a layer builds under each tuning row\n"
               "(default: every row), for key_dim 64, 80 and 128 and float32 and float16 caches,\n"
               "and the int8 and int4 quantized layers' programs.\n");
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
