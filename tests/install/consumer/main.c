/*
 * main.c - a tiny outside program built against the installed clmha (by CMake's
 * find_package and by pkg-config): it creates a context and a layer and runs one call.
 */
#include <clmha.h>

#include <stdio.h>

int main(void) {
    clmha_context *ctx = NULL;
    clmha_layer *layer = NULL;
    clmha_tensor *x = NULL, *y = NULL;
    int rc = 1;
    clmha_layer_config cfg;
    clmha_layer_config_init(&cfg);
    cfg.num_heads = 2;
    cfg.key_dim = 4;
    cfg.seed = 1;
    size_t shape[3] = {1, 3, 8};
    float in[24], out[24];
    for (int i = 0; i < 24; i++) {
        in[i] = (float)i / 24.0f;
    }
    if (clmha_context_create(NULL, &ctx) != CLMHA_OK ||
        clmha_layer_create(ctx, &cfg, 8, 8, 0, &layer) != CLMHA_OK ||
        clmha_tensor_create(ctx, CLMHA_FLOAT32, 3, shape, &x) != CLMHA_OK ||
        clmha_tensor_create(ctx, CLMHA_FLOAT32, 3, shape, &y) != CLMHA_OK ||
        clmha_tensor_write(x, in, sizeof in) != CLMHA_OK) {
        fprintf(stderr, "consumer: %s\n", clmha_last_error());
        goto done;
    }
    clmha_call_args a;
    clmha_call_args_init(&a);
    a.query = x;
    a.value = x;
    a.output = y;
    if (clmha_layer_call(layer, &a) != CLMHA_OK || clmha_tensor_read(y, out, sizeof out)) {
        fprintf(stderr, "consumer: %s\n", clmha_last_error());
        goto done;
    }
    printf("clmha %s consumer ok: out[0] = %g\n", clmha_version_string(), (double)out[0]);
    rc = 0;
done:
    clmha_tensor_release(x);
    clmha_tensor_release(y);
    clmha_layer_release(layer);
    clmha_context_release(ctx);
    return rc;
}
