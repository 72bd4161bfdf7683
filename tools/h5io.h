/*
 * h5io.h - small HDF5 helpers shared by clmha-run and the golden-data test: reading whole
 * datasets as float32 or as masks (bool, integer or float; nonzero = 1), scalar integers and
 * attributes, and writing float32 datasets. Errors come back as text in a caller's buffer.
 */
#ifndef CLMHA_H5IO_H
#define CLMHA_H5IO_H

#include <hdf5.h>
#include <stddef.h>
#include <stdint.h>

#define H5IO_MAX_RANK 8

typedef struct h5io_array {
    int rank;
    size_t dims[H5IO_MAX_RANK];
    size_t numel;
    float *f;    /* float data (h5io_read_float) */
    uint8_t *u8; /* mask data (h5io_read_mask) */
} h5io_array;

/* Each returns 1 when read, 0 when the dataset is absent, -1 on error (message in err). */
int h5io_read_float(hid_t file, const char *name, h5io_array *out, char *err, size_t errlen);
int h5io_read_mask(hid_t file, const char *name, h5io_array *out, char *err, size_t errlen);
/* As h5io_read_mask, with Keras's rule for the path its call takes: a bool mask attends where
 * true; an integer or float one where nonzero on Keras's fused path (ops.dot_product_attention),
 * and where > 0.5 on its explicit path (@p explicit_path: dropout, scores returned, or inputs of
 * rank > 3), as its Softmax layer takes masks. */
int h5io_read_mask_rule(hid_t file, const char *name, h5io_array *out, int explicit_path, char *err,
                        size_t errlen);
int h5io_read_int64(hid_t file, const char *name, int64_t *out, char *err, size_t errlen);
void h5io_free(h5io_array *a);

/* Attributes of an object (the file root for "/"); 1 read, 0 absent, -1 wrong type. */
int h5io_attr_string(hid_t obj, const char *name, char *buf, size_t len);
int h5io_attr_double(hid_t obj, const char *name, double *out);
int h5io_attr_ints(hid_t obj, const char *name, int64_t *out, size_t max, size_t *count);

/* Writes a float32 dataset; 0 on success. */
int h5io_write_float(hid_t file, const char *name, int rank, const size_t *dims, const float *data);

#endif
