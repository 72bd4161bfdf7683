/*
 * half.h - IEEE binary16 ("half") to and from float on the host, in plain C (no _Float16, which
 * clang 14 lacks on x86-64): float to half rounds to nearest even, overflow gives infinity,
 * NaN stays NaN (quiet, payload's top bits kept). Used by clmha-run for --cache-dtype float16
 * and by the tests' reference; independent of the library, which converts on the device
 * (vload_half / vstore_half).
 */
#ifndef CLMHA_TOOLS_HALF_H
#define CLMHA_TOOLS_HALF_H

#include <math.h>
#include <stdint.h>
#include <string.h>

static inline uint16_t half_from_float(float f) {
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    const uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    const uint32_t a = x & 0x7fffffffu;
    if (a >= 0x7f800000u) { /* infinity, or NaN (kept quiet) */
        return (uint16_t)(sign | 0x7c00u | (a > 0x7f800000u ? 0x200u | ((a >> 13) & 0x3ffu) : 0u));
    }
    if (a >= 0x477ff000u) { /* >= 65520: rounds past the largest half, 65504 */
        return (uint16_t)(sign | 0x7c00u);
    }
    if (a < 0x38800000u) {      /* below 2^-14: a subnormal half (units of 2^-24), or zero */
        if (a <= 0x33000000u) { /* at most 2^-25: rounds to zero (2^-25 ties to even 0) */
            return sign;
        }
        const uint32_t mant = (a & 0x7fffffu) | 0x800000u;
        const int shift = 126 - (int)(a >> 23); /* 14 to 24 */
        uint32_t q = mant >> shift;
        const uint32_t rem = mant & ((1u << shift) - 1u), halfway = 1u << (shift - 1);
        if (rem > halfway || (rem == halfway && (q & 1u))) {
            q++; /* may carry into the smallest normal, which is the right encoding */
        }
        return (uint16_t)(sign | q);
    }
    uint32_t h = (a >> 13) - (112u << 10); /* exponent rebiased from 127 to 15 */
    const uint32_t rem = a & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) {
        h++; /* a carry into the exponent is the right encoding too */
    }
    return (uint16_t)(sign | h);
}

static inline float half_to_float(uint16_t h) {
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    const uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
    uint32_t x;
    if (e == 0) {
        const float v = ldexpf((float)m, -24); /* zero or subnormal, exact */
        return sign ? -v : v;
    }
    x = e == 31 ? sign | 0x7f800000u | (m << 13) : sign | ((e + 112u) << 23) | (m << 13);
    float f;
    memcpy(&f, &x, sizeof f);
    return f;
}

#endif
