/*
 * init.c - Keras's weight initializers on the host, drawn from Random123's Philox4x32-10
 * counter-based generator. The key is the layer seed; the counter is (element index, weight
 * stream, attempt), so every element is an independent, reproducible draw: the same seed gives
 * the same weights on any device and in any order. Distributions follow Keras: VarianceScaling
 * for the glorot/he/lecun families (truncated normal with stddev sqrt(scale / n) / .8796...),
 * redraws beyond two standard deviations for truncated normals.
 */
#include "internal.h"

#include <Random123/philox.h>
#include <math.h>

/* The stddev of a unit normal truncated to [-2, 2], which Keras divides by so that the
 * truncated distribution has the intended variance. */
#define TRUNC_STDDEV_CORRECTION 0.87962566103423978

static const double TWO_PI = 6.283185307179586476925286766559;

/* Two uniforms in (0, 1] with 53 random bits each, for (element, stream, attempt). */
static void draw2(uint64_t seed, uint32_t stream, uint64_t index, uint32_t attempt, double *u1,
                  double *u2) {
    philox4x32_ctr_t c = {{(uint32_t)index, (uint32_t)(index >> 32), stream, attempt}};
    philox4x32_key_t k = {{(uint32_t)seed, (uint32_t)(seed >> 32)}};
    philox4x32_ctr_t r = philox4x32(c, k);
    uint64_t a = ((uint64_t)r.v[0] << 32 | r.v[1]) >> 11;
    uint64_t b = ((uint64_t)r.v[2] << 32 | r.v[3]) >> 11;
    const double ulp = 1.0 / 9007199254740992.0; /* 2^-53 */
    *u1 = ((double)a + 1.0) * ulp;
    *u2 = ((double)b + 1.0) * ulp;
}

static double normal(uint64_t seed, uint32_t stream, uint64_t i, uint32_t attempt) {
    double u1, u2;
    draw2(seed, stream, i, attempt, &u1, &u2);
    return sqrt(-2.0 * log(u1)) * cos(TWO_PI * u2);
}

static double truncated(uint64_t seed, uint32_t stream, uint64_t i) {
    for (uint32_t attempt = 0;; attempt++) {
        double z = normal(seed, stream, i, attempt);
        if (fabs(z) <= 2.0) {
            return z;
        }
    }
}

static double uniform(uint64_t seed, uint32_t stream, uint64_t i) {
    double u1, u2;
    draw2(seed, stream, i, 0, &u1, &u2);
    return u1 - 0.5 * (1.0 / 9007199254740992.0); /* centre the (0, 1] lattice in [0, 1) */
}

/* An initializer as a distribution: uniform on [lo, hi), normal or truncated normal of mean and
 * stddev, or the constant c; the variance-scaling kinds from the fans, as Keras computes them. */
typedef struct distribution {
    enum { UNIFORM, NORMAL, TRUNCATED, CONSTANT } kind;
    double lo, hi, mean, stddev, c;
} distribution;

static bool distribution_of(const clmha_initializer *init, double fan_in, double fan_out,
                            distribution *d) {
    *d = (distribution){CONSTANT, 0, 0, 0, 0, 0};
    switch (init->kind) {
    case CLMHA_INIT_GLOROT_UNIFORM:
        d->hi = sqrt(6.0 / (fan_in + fan_out));
        d->lo = -d->hi;
        d->kind = UNIFORM;
        break;
    case CLMHA_INIT_HE_UNIFORM:
        d->hi = sqrt(6.0 / fan_in);
        d->lo = -d->hi;
        d->kind = UNIFORM;
        break;
    case CLMHA_INIT_LECUN_UNIFORM:
        d->hi = sqrt(3.0 / fan_in);
        d->lo = -d->hi;
        d->kind = UNIFORM;
        break;
    case CLMHA_INIT_GLOROT_NORMAL:
        d->stddev = sqrt(2.0 / (fan_in + fan_out)) / TRUNC_STDDEV_CORRECTION;
        d->kind = TRUNCATED;
        break;
    case CLMHA_INIT_HE_NORMAL:
        d->stddev = sqrt(2.0 / fan_in) / TRUNC_STDDEV_CORRECTION;
        d->kind = TRUNCATED;
        break;
    case CLMHA_INIT_LECUN_NORMAL:
        d->stddev = sqrt(1.0 / fan_in) / TRUNC_STDDEV_CORRECTION;
        d->kind = TRUNCATED;
        break;
    case CLMHA_INIT_RANDOM_UNIFORM:
        d->lo = init->minval;
        d->hi = init->maxval;
        d->kind = UNIFORM;
        break;
    case CLMHA_INIT_RANDOM_NORMAL:
        d->mean = init->mean;
        d->stddev = init->stddev;
        d->kind = NORMAL;
        break;
    case CLMHA_INIT_TRUNCATED_NORMAL:
        d->mean = init->mean;
        d->stddev = init->stddev;
        d->kind = TRUNCATED;
        break;
    case CLMHA_INIT_ZEROS:
        break;
    case CLMHA_INIT_ONES:
        d->c = 1.0;
        break;
    case CLMHA_INIT_CONSTANT:
        d->c = init->value;
        break;
    default:
        return false;
    }
    return true;
}

clmha_status clmha__init_fill(clmha_context *ctx, const clmha_initializer *init, uint64_t seed,
                              uint32_t stream, double fan_in, double fan_out, float *out,
                              size_t n) {
    distribution dist;
    if (!distribution_of(init, fan_in, fan_out, &dist)) {
        return clmha__fail(ctx, CLMHA_ERR_INVALID_ARGUMENT, "unknown initializer kind %d",
                           (int)init->kind);
    }
    for (size_t i = 0; i < n; i++) {
        double x;
        switch (dist.kind) {
        case UNIFORM:
            x = dist.lo + (dist.hi - dist.lo) * uniform(seed, stream, i);
            break;
        case NORMAL:
            x = dist.mean + dist.stddev * normal(seed, stream, i, 0);
            break;
        case TRUNCATED:
            x = dist.mean + dist.stddev * truncated(seed, stream, i);
            break;
        case CONSTANT:
        default:
            x = dist.c;
            break;
        }
        out[i] = (float)x;
        if (!isfinite(out[i])) { /* a mean and stddev near float32's limit */
            return clmha__fail(ctx, CLMHA_ERR_INVALID_ARGUMENT,
                               "the initializer gives %g for weight element %zu, outside "
                               "float32's range",
                               x, i);
        }
    }
    return CLMHA_OK;
}
