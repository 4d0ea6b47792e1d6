/*
 * What the fuzz targets share: an allocator that counts live blocks and
 * refuses any single block over a budget (as a service with a memory limit
 * would, so the target checks that a refusal is ROTOR_ERR_OUT_OF_MEMORY
 * with nothing leaked instead of exhausting the fuzzer's own limit), and a
 * check that aborts, naming the broken promise, for libFuzzer to report.
 */
#ifndef ROTOR_FUZZ_SUPPORT_H
#define ROTOR_FUZZ_SUPPORT_H

#include <stdio.h>
#include <stdlib.h>

#include "rotor.h"

typedef struct fuzz_budget {
    long live;  /* blocks allocated and not yet freed */
    size_t cap; /* largest block granted */
} fuzz_budget;

static void *fuzz_alloc(void *opaque, size_t size, size_t align) {
    fuzz_budget *b = opaque;
    if (size > b->cap)
        return NULL;
    size_t rounded = (size + align - 1) / align * align;
    void *p = aligned_alloc(align, rounded ? rounded : align);
    if (p != NULL)
        b->live++;
    return p;
}

static void fuzz_free(void *opaque, void *p) {
    fuzz_budget *b = opaque;
    if (p != NULL)
        b->live--;
    free(p);
}

static inline rotor_allocator fuzz_allocator(fuzz_budget *b) {
    return (rotor_allocator){fuzz_alloc, fuzz_free, b};
}

static inline void fuzz_require(const char *target, int cond, const char *what) {
    if (!cond) {
        fprintf(stderr, "%s: %s (last error: %s)\n", target, what, rotor_last_error());
        abort();
    }
}

#endif
