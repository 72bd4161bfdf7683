/*
 * timing.h - the host clock and the median of a set of times, shared by clmha-demo and
 * clmha-bench.
 */
#ifndef CLMHA_TOOLS_TIMING_H
#define CLMHA_TOOLS_TIMING_H

#include <stddef.h>
#include <stdlib.h>
#include <time.h>

/* Seconds on the wall clock. */
static inline double now_s(void) {
    struct timespec ts;
    timespec_get(&ts, TIME_UTC);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static inline int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Sorts @p v (n >= 1 values) and returns their median. */
static inline double median(double *v, size_t n) {
    qsort(v, n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

#endif
