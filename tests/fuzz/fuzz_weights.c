/*
 * fuzz_weights.c - libFuzzer target for the Keras weights-file reader. Each input is written
 * to a file and handed to clmha_keras_list_layers(); every layer found that is small enough
 * is then created and loaded with clmha_layer_create_from_keras() on the default OpenCL
 * device. Any crash, sanitizer report or hang is a bug in the reader (or in libhdf5).
 *
 * Build: cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DCLMHA_BUILD_FUZZ=ON
 * Run:   build-fuzz/tests/fuzz_weights -max_total_time=300 corpus-dir tests/fuzz/corpus
 * Crashes found become files in tests/fuzz/regressions/, replayed by ctest (fuzz_regressions).
 */
#include <clmha.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static clmha_context *ctx;
static char path[64];

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    snprintf(path, sizeof path, "/tmp/clmha-fuzz-%d.h5", (int)getpid());
    if (clmha_context_create(NULL, &ctx) != CLMHA_OK) {
        fprintf(stderr, "fuzz_weights: %s\n", clmha_last_error());
        exit(1);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    FILE *f = fopen(path, "wb");
    if (f == NULL) {
        return 0;
    }
    fwrite(data, 1, size, f);
    fclose(f);
    clmha_keras_layer_info *list = NULL;
    size_t n = 0;
    if (clmha_keras_list_layers(path, &list, &n) == CLMHA_OK) {
        for (size_t i = 0; i < n && i < 4; i++) {
            const clmha_keras_layer_info *l = &list[i];
            size_t h = (size_t)l->num_heads;
            double out = 1;
            for (int d = 0; d < l->output_rank; d++) {
                out *= (double)l->output_shape[d];
            }
            double weights = (double)(l->query_dim + l->key_dim + l->value_dim) * (double)h *
                                 (double)l->head_key_dim +
                             (double)h * (double)l->head_value_dim * (out + 1);
            if (weights > 1e6 || l->output_rank > 2) {
                continue; /* creating huge layers tests the allocator, not the reader */
            }
            clmha_layer *layer = NULL;
            if (clmha_layer_create_from_keras(ctx, path, l->path, NULL, &layer) == CLMHA_OK) {
                clmha_layer_release(layer);
            }
        }
        free(list);
    }
    return 0;
}
