/*
 * Test support: a seeded random generator that says its seed (so a failure
 * can be replayed with ROTOR_TEST_SEED), random data, temporary directories
 * and a counting allocator that can be told to fail.
 */
#ifndef ROTOR_TEST_SUPPORT_H
#define ROTOR_TEST_SUPPORT_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "rotor.h"

typedef struct ts_rng {
    uint64_t s[4];
} ts_rng;

/* Seeds from ROTOR_TEST_SEED if set, else from `default_seed`; prints the seed. */
void ts_rng_init(ts_rng *r, uint64_t default_seed);
uint64_t ts_rng_next(ts_rng *r);
/* Uniform in [0, 1). */
double ts_rng_uniform(ts_rng *r);
/* Standard normal. */
double ts_rng_normal(ts_rng *r);
/* n floats uniform in [lo, hi). */
void ts_fill_uniform(ts_rng *r, float *x, size_t n, float lo, float hi);
/* n rows of dim floats in `clusters` clusters, as embeddings are: centres
 * drawn N(0, spread^2) per coordinate, each row a random centre plus
 * N(0, 1) noise. */
void ts_fill_clustered(ts_rng *r, float *x, size_t n, size_t dim, size_t clusters, float spread);

/* A fresh empty directory under $TMPDIR, removed with ts_tmpdir_remove. */
char *ts_tmpdir_create(void);
void ts_tmpdir_remove(char *dir);
/* dir + "/" + name, malloc'd. */
char *ts_path(const char *dir, const char *name);
/* Writes bytes to a file; asserts success. */
void ts_write_file(const char *path, const void *data, size_t n);
/* Reads a whole file (malloc'd); asserts success. */
void *ts_read_file(const char *path, size_t *n);

/* An allocator that counts live blocks and fails the allocation numbered
 * `fail_at` (1-based; 0 = never). Thread-safe, as rotor requires of every
 * allocator: batch search allocates from its worker threads. */
typedef struct ts_counting_alloc {
    _Atomic long live;
    _Atomic long calls;
    long fail_at;
} ts_counting_alloc;
rotor_allocator ts_counting_allocator(ts_counting_alloc *state);

/* Asserts the status and that the last error sentence names `path` (when
 * not NULL) and every word of the NULL-terminated `words`, starts
 * lower-case and has no final period: the library's error contract. */
void ts_check_error(rotor_status st, rotor_status want, const char *path, const char *const *words);
#define TS_CHECK_ERROR(st, want, path, ...)                                                        \
    do {                                                                                           \
        const char *const ts_words_[] = {__VA_ARGS__, NULL};                                       \
        ts_check_error((st), (want), (path), ts_words_);                                           \
    } while (0)

/* Exact k nearest neighbours by a double-precision full scan; ids ascending
 * by distance (ties by id). For checking approximate and SIMD results. */
void ts_brute_force(const float *base, size_t n, const float *queries, size_t nq, size_t dim,
                    rotor_metric metric, size_t k, int64_t *ids, double *dists);

#endif
