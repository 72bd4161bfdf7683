/*
 * keras_h5.h - what the Keras weights-file reader (keras_layers.c: finding the attention layers)
 * shares with the loader (keras_weights.c): quiet HDF5 error printing, checked dataset shapes,
 * opening a file and locating one layer in it.
 */
#ifndef CLMHA_KERAS_H5_H
#define CLMHA_KERAS_H5_H

#include "internal.h"

#include <hdf5.h>

/* The sub-layers of an attention layer, in clmha_weight order (two weights each). */
extern const char *const clmha__keras_sublayers[4];

/* Silences HDF5's automatic error stack printing; restores it on leave. */
typedef struct h5_quiet {
    H5E_auto2_t func;
    void *data;
} h5_quiet;
void clmha__h5_quiet_enter(h5_quiet *q);
void clmha__h5_quiet_leave(const h5_quiet *q);

/* A dataset's shape, checked; rank -1 when absent or unusable. */
typedef struct ds_shape {
    int rank;
    size_t dims[CLMHA_MAX_RANK];
    size_t numel;
} ds_shape;

/* Shape of <group>/<sub>/vars/<idx>, requiring a float dataset of sane size whose stored data
 * is what its shape says. */
bool clmha__h5_dataset_shape(hid_t file, const char *group, const char *sub, int idx,
                             ds_shape *out);

/* As clmha__h5_dataset_shape, for a signed 8-bit integer dataset with @p int8. */
bool clmha__h5_var_shape(hid_t file, const char *group, const char *sub, int idx, bool int8,
                         ds_shape *out);

/* Whether dataset @p ds is Keras's bfloat16: 2-byte opaque data with the attribute dtype =
 * "bfloat16". */
bool clmha__h5_is_bfloat16(hid_t ds);

/* Whether <group>/<sub>/vars/<idx> exists. */
bool clmha__h5_var_exists(hid_t file, const char *group, const char *sub, int idx);

/* Reads <group>/<sub>/vars/<idx> (shape already checked) as @p type (H5T_NATIVE_FLOAT, which
 * widens Keras's bfloat16 too, or H5T_NATIVE_SCHAR) into @p out. */
bool clmha__h5_read_var(hid_t file, const char *group, const char *sub, int idx, hid_t type,
                        void *out);

/* Describes a layer whose query kernel is an int8 array: Keras's "int8" or "int4" quantized
 * layer (keras_quant.c); false with the reason in @p why when it is not one clmha loads. */
bool clmha__keras_describe_quant(hid_t file, const char *group, clmha_keras_layer_info *info,
                                 char *why, size_t why_len);

/* Reads the quantized kernels and the biases (float32, zeros where a sub-layer has none) of a
 * layer that clmha__keras_describe_quant described, checked against @p l's shapes, for
 * clmha__quant_install. */
clmha_status clmha__keras_read_quant(clmha_layer *l, hid_t file, const char *path,
                                     const clmha_keras_layer_info *info, int *bits, size_t *block,
                                     clmha__qkernel q[4], float *bias[4]);

/* Opens a weights file read-only; a failure says whether it is missing, not HDF5 or corrupt. */
clmha_status clmha__keras_open(clmha_context *ctx, const char *path, hid_t *file);

/* Finds attention layer @p name (as clmha_keras_find_layer) in an open file. */
clmha_status clmha__keras_locate(clmha_context *ctx, hid_t file, const char *path, const char *name,
                                 clmha_keras_layer_info *info);

#endif
