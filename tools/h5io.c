/*
 * h5io.c - HDF5 helpers for clmha-run and the golden-data test (see h5io.h).
 */
#include "h5io.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ELEMS ((size_t)1 << 31)

/* Opens a dataset and checks its shape; fills out's shape. 1 ok, 0 absent, -1 error. */
static int open_shape(hid_t file, const char *name, hid_t *ds, h5io_array *out, char *err,
                      size_t errlen) {
    memset(out, 0, sizeof *out);
    if (H5Lexists(file, name, H5P_DEFAULT) <= 0) {
        return 0;
    }
    *ds = H5Dopen2(file, name, H5P_DEFAULT);
    if (*ds < 0) {
        snprintf(err, errlen, "dataset \"%s\" cannot be opened", name);
        return -1;
    }
    hid_t sp = H5Dget_space(*ds);
    int rank = sp >= 0 ? H5Sget_simple_extent_ndims(sp) : -1;
    hsize_t dims[H5S_MAX_RANK];
    if (rank < 0 || rank > H5IO_MAX_RANK || H5Sget_simple_extent_dims(sp, dims, NULL) < 0) {
        snprintf(err, errlen, "dataset \"%s\" has an unusable shape (rank %d)", name, rank);
        if (sp >= 0) {
            H5Sclose(sp);
        }
        H5Dclose(*ds);
        return -1;
    }
    H5Sclose(sp);
    out->rank = rank;
    out->numel = 1;
    for (int i = 0; i < rank; i++) {
        if (dims[i] == 0 || dims[i] > MAX_ELEMS || out->numel > MAX_ELEMS / dims[i]) {
            snprintf(err, errlen, "dataset \"%s\" has an empty or too large dim %d", name, i);
            H5Dclose(*ds);
            return -1;
        }
        out->dims[i] = (size_t)dims[i];
        out->numel *= (size_t)dims[i];
    }
    return 1;
}

int h5io_read_float(hid_t file, const char *name, h5io_array *out, char *err, size_t errlen) {
    hid_t ds;
    int r = open_shape(file, name, &ds, out, err, errlen);
    if (r <= 0) {
        return r;
    }
    hid_t ty = H5Dget_type(ds);
    H5T_class_t cls = H5Tget_class(ty);
    H5Tclose(ty);
    if (cls != H5T_FLOAT) {
        snprintf(err, errlen, "dataset \"%s\" is not a float array (expected float32 or float64)",
                 name);
        H5Dclose(ds);
        return -1;
    }
    out->f = malloc(out->numel * sizeof(float));
    if (out->f == NULL ||
        H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, out->f) < 0) {
        snprintf(err, errlen, "reading dataset \"%s\" failed", name);
        H5Dclose(ds);
        h5io_free(out);
        return -1;
    }
    H5Dclose(ds);
    return 1;
}

int h5io_read_mask(hid_t file, const char *name, h5io_array *out, char *err, size_t errlen) {
    return h5io_read_mask_rule(file, name, out, 0, err, errlen);
}

int h5io_read_mask_rule(hid_t file, const char *name, h5io_array *out, int explicit_path, char *err,
                        size_t errlen) {
    hid_t ds;
    int r = open_shape(file, name, &ds, out, err, errlen);
    if (r <= 0) {
        return r;
    }
    hid_t ty = H5Dget_type(ds);
    H5T_class_t cls = H5Tget_class(ty);
    double *d = malloc(out->numel * sizeof(double));
    out->u8 = malloc(out->numel);
    herr_t rd = -1;
    if (d != NULL && out->u8 != NULL) {
        if (cls == H5T_ENUM) {
            /* h5py stores bool as an enum over int8: read the raw base integers. */
            hid_t base = H5Tget_super(ty);
            hid_t native = H5Tget_native_type(base, H5T_DIR_ASCEND);
            size_t sz = H5Tget_size(native);
            unsigned char *raw = sz <= 8 ? malloc(out->numel * sz) : NULL;
            if (raw != NULL && H5Dread(ds, ty, H5S_ALL, H5S_ALL, H5P_DEFAULT, raw) >= 0) {
                for (size_t i = 0; i < out->numel; i++) {
                    int nz = 0;
                    for (size_t b = 0; b < sz; b++) {
                        nz |= raw[i * sz + b];
                    }
                    d[i] = nz ? 1.0 : 0.0;
                }
                rd = 0;
            }
            free(raw);
            H5Tclose(native);
            H5Tclose(base);
        } else if (cls == H5T_INTEGER || cls == H5T_FLOAT) {
            rd = H5Dread(ds, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, d);
        } else {
            snprintf(err, errlen, "dataset \"%s\" is not bool, integer or float", name);
        }
    }
    H5Tclose(ty);
    H5Dclose(ds);
    if (rd < 0) {
        if (err[0] == '\0') {
            snprintf(err, errlen, "reading dataset \"%s\" failed", name);
        }
        free(d);
        h5io_free(out);
        return -1;
    }
    /* An enum (h5py's bool) was read as 0 or 1: either rule keeps its true values. */
    for (size_t i = 0; i < out->numel; i++) {
        out->u8[i] = explicit_path ? d[i] > 0.5 : d[i] != 0.0;
    }
    free(d);
    return 1;
}

int h5io_read_int64(hid_t file, const char *name, int64_t *out, char *err, size_t errlen) {
    h5io_array a;
    hid_t ds;
    int r = open_shape(file, name, &ds, &a, err, errlen);
    if (r <= 0) {
        return r;
    }
    hid_t ty = H5Dget_type(ds);
    H5T_class_t cls = H5Tget_class(ty);
    H5Tclose(ty);
    long long v = 0;
    if (cls != H5T_INTEGER || a.numel != 1 ||
        H5Dread(ds, H5T_NATIVE_LLONG, H5S_ALL, H5S_ALL, H5P_DEFAULT, &v) < 0) {
        snprintf(err, errlen, "dataset \"%s\" must be a single integer", name);
        H5Dclose(ds);
        return -1;
    }
    H5Dclose(ds);
    *out = (int64_t)v;
    return 1;
}

void h5io_free(h5io_array *a) {
    free(a->f);
    free(a->u8);
    a->f = NULL;
    a->u8 = NULL;
}

static hid_t open_attr(hid_t obj, const char *name) {
    if (H5Aexists(obj, name) <= 0) {
        return -1;
    }
    return H5Aopen(obj, name, H5P_DEFAULT);
}

int h5io_attr_string(hid_t obj, const char *name, char *buf, size_t len) {
    hid_t a = open_attr(obj, name);
    if (a < 0) {
        return 0;
    }
    hid_t ty = H5Aget_type(a);
    int r = -1;
    if (H5Tget_class(ty) == H5T_STRING) {
        if (H5Tis_variable_str(ty) > 0) {
            char *s = NULL;
            hid_t mt = H5Tcopy(H5T_C_S1);
            H5Tset_size(mt, H5T_VARIABLE);
            H5Tset_cset(mt, H5Tget_cset(ty)); /* h5py writes UTF-8 */
            if (H5Aread(a, mt, &s) >= 0 && s != NULL) {
                snprintf(buf, len, "%s", s);
                H5free_memory(s);
                r = 1;
            }
            H5Tclose(mt);
        } else {
            size_t sz = H5Tget_size(ty);
            char *s = calloc(sz + 1, 1);
            if (s != NULL && H5Aread(a, ty, s) >= 0) {
                snprintf(buf, len, "%s", s);
                r = 1;
            }
            free(s);
        }
    }
    H5Tclose(ty);
    H5Aclose(a);
    return r;
}

int h5io_attr_double(hid_t obj, const char *name, double *out) {
    hid_t a = open_attr(obj, name);
    if (a < 0) {
        return 0;
    }
    hid_t sp = H5Aget_space(a);
    int r =
        (H5Sget_simple_extent_npoints(sp) == 1 && H5Aread(a, H5T_NATIVE_DOUBLE, out) >= 0) ? 1 : -1;
    H5Sclose(sp);
    H5Aclose(a);
    return r;
}

int h5io_attr_ints(hid_t obj, const char *name, int64_t *out, size_t max, size_t *count) {
    hid_t a = open_attr(obj, name);
    *count = 0;
    if (a < 0) {
        return 0;
    }
    hid_t sp = H5Aget_space(a);
    hssize_t n = H5Sget_simple_extent_npoints(sp);
    int r = -1;
    if (n >= 0 && (size_t)n <= max && n <= 64) {
        long long buf[64];
        if (n == 0 || H5Aread(a, H5T_NATIVE_LLONG, buf) >= 0) {
            for (hssize_t i = 0; i < n; i++) {
                out[i] = (int64_t)buf[i];
            }
            *count = (size_t)n;
            r = 1;
        }
    }
    H5Sclose(sp);
    H5Aclose(a);
    return r;
}

int h5io_write_float(hid_t file, const char *name, int rank, const size_t *dims,
                     const float *data) {
    hsize_t d[H5IO_MAX_RANK];
    for (int i = 0; i < rank; i++) {
        d[i] = dims[i];
    }
    hid_t sp = H5Screate_simple(rank, d, NULL);
    if (sp < 0) {
        return -1;
    }
    hid_t ds = H5Dcreate2(file, name, H5T_IEEE_F32LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    int r = -1;
    if (ds >= 0) {
        r = H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0 ? 0 : -1;
        H5Dclose(ds);
    }
    H5Sclose(sp);
    return r;
}
