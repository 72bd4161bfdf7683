/*
 * util.c - small string and shape helpers used across the library.
 */
#include "internal.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *clmha__strdup(const char *s) {
    if (s == NULL) {
        return NULL;
    }
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d != NULL) {
        memcpy(d, s, n);
    }
    return d;
}

bool clmha__contains_ci(const char *haystack, const char *needle) {
    size_t hn = strlen(haystack), nn = strlen(needle);
    if (nn == 0) {
        return true;
    }
    for (size_t i = 0; i + nn <= hn; i++) {
        size_t j = 0;
        while (j < nn &&
               tolower((unsigned char)haystack[i + j]) == tolower((unsigned char)needle[j])) {
            j++;
        }
        if (j == nn) {
            return true;
        }
    }
    return false;
}

bool clmha__parse_index(const char *s, size_t *out) {
    if (s == NULL || *s == '\0') {
        return false;
    }
    size_t v = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9') {
            return false;
        }
        size_t d = (size_t)(*p - '0');
        if (!clmha__mul(v, 10, &v) || !clmha__add(v, d, &v)) {
            return false;
        }
    }
    *out = v;
    return true;
}

void clmha__shape_str(char *buf, size_t len, int rank, const size_t *shape) {
    size_t pos = 0;
    int n = snprintf(buf, len, "(");
    pos = n > 0 ? (size_t)n : 0;
    for (int i = 0; i < rank && pos < len; i++) {
        n = snprintf(buf + pos, len - pos, "%s%zu", i ? ", " : "", shape[i]);
        pos += n > 0 ? (size_t)n : 0;
    }
    if (rank == 1 && pos < len) {
        n = snprintf(buf + pos, len - pos, ",");
        pos += n > 0 ? (size_t)n : 0;
    }
    if (pos < len) {
        snprintf(buf + pos, len - pos, ")");
    }
}

const char *clmha__getenv(const char *name) {
    const char *v = getenv(name);
    return (v != NULL && *v != '\0') ? v : NULL;
}
