/*
 * common/ — the bottom layer every other folder builds on: status helpers
 * that record the thread-local error sentence, the allocator hook, checked
 * size arithmetic and a few bit helpers. It depends on nothing but the public
 * header and the C library. Private to the library.
 */
#ifndef ROTOR_COMMON_H
#define ROTOR_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rotor.h"

#if defined(__GNUC__)
#define CM_PRINTF(fmt_idx, arg_idx) __attribute__((format(printf, fmt_idx, arg_idx)))
#define CM_LIKELY(x) __builtin_expect(!!(x), 1)
#define CM_UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#define CM_PRINTF(fmt_idx, arg_idx)
#define CM_LIKELY(x) (x)
#define CM_UNLIKELY(x) (x)
#endif

/* ---- errors ------------------------------------------------------------- */

/* Records a sentence for rotor_last_error() and returns `status`, so a
 * failure reads `return cm_fail(ROTOR_ERR_DIMENSION, "query has %zu ...", ...)`.
 * Sentences are lower-case, without a trailing period. */
rotor_status cm_fail(rotor_status status, const char *fmt, ...) CM_PRINTF(2, 3);

/* Prefixes the current sentence with "<prefix>: ", keeping the detail. */
rotor_status cm_fail_prefix(rotor_status status, const char *prefix);

/* Clears the sentence; public entry points call it so a stale message never
 * describes a later success. */
void cm_clear_error(void);

#define CM_RETURN_IF(cond, status, ...)                                                            \
    do {                                                                                           \
        if (CM_UNLIKELY(cond))                                                                     \
            return cm_fail((status), __VA_ARGS__);                                                 \
    } while (0)

#define CM_FORWARD(expr)                                                                           \
    do {                                                                                           \
        rotor_status cm_st_ = (expr);                                                              \
        if (CM_UNLIKELY(cm_st_ != ROTOR_OK))                                                       \
            return cm_st_;                                                                         \
    } while (0)

/* ---- memory ------------------------------------------------------------- */

/* Alignment of every block the library allocates: one cache line, which is
 * also what the widest (AVX-512) loads want. */
#define CM_ALIGN 64

/* The default allocator (aligned_alloc / free). */
rotor_allocator cm_allocator_default(void);

/* Allocates `size` bytes aligned to CM_ALIGN through `a`; on failure records
 * "out of memory allocating N bytes for <what>" and returns NULL. */
void *cm_alloc(const rotor_allocator *a, size_t size, const char *what);
/* The same, zero-filled. */
void *cm_calloc(const rotor_allocator *a, size_t size, const char *what);
/* cm_alloc and cm_calloc for the large arrays a search walks at random
 * (graph records, codes, vectors): the block is advised to the kernel as
 * huge-page memory before it is first touched, where the system takes
 * such advice (transparent huge pages in "madvise" mode). A search touches
 * a new page at nearly every step, and with 4 KiB pages each is a TLB miss;
 * this measured about 10 % of a search's time. The advice covers the 2 MiB
 * pages wholly inside the block, so it never reaches a neighbour's memory. */
void *cm_alloc_large(const rotor_allocator *a, size_t size, const char *what);
void *cm_calloc_large(const rotor_allocator *a, size_t size, const char *what);
void cm_free(const rotor_allocator *a, void *p);

/* Checked arithmetic: true if the result overflowed size_t. */
static inline bool cm_mul_overflow(size_t a, size_t b, size_t *out) {
    return __builtin_mul_overflow(a, b, out);
}
static inline bool cm_add_overflow(size_t a, size_t b, size_t *out) {
    return __builtin_add_overflow(a, b, out);
}

static inline size_t cm_round_up(size_t x, size_t to) { return (x + to - 1) / to * to; }

/* Bit u of a set kept as 64-bit words (removed points, held-out rows,
 * allow-lists). */
static inline bool cm_bit_get(const uint64_t *bits, size_t u) {
    return (bits[u >> 6] >> (u & 63)) & 1;
}
static inline void cm_bit_set(uint64_t *bits, size_t u) { bits[u >> 6] |= (uint64_t)1 << (u & 63); }
static inline void cm_bit_clear(uint64_t *bits, size_t u) {
    bits[u >> 6] &= ~((uint64_t)1 << (u & 63));
}

/* ---- distances ---------------------------------------------------------- */

/* The library's distance, smaller is better (rotor.h, "Distances"), from an
 * inner product <q, x> and, for L2, the squared norms |x|^2 and |q|^2:
 * |x|^2 + |q|^2 - 2 <q, x>, -<q, x>, or 1 - <q, x> for cosine (whose
 * vectors are unit). Every exact score and every quantizer's estimate that
 * works from an inner product goes through this one rule. */
static inline float cm_ip_distance(rotor_metric m, float ip, float xx, float qq) {
    switch (m) {
    case ROTOR_METRIC_L2: return xx + qq - 2 * ip;
    case ROTOR_METRIC_IP: return -ip;
    case ROTOR_METRIC_COSINE: break;
    }
    return 1 - ip;
}

/* ---- misc --------------------------------------------------------------- */

/* SplitMix64: the seeded stream behind every random choice the library
 * makes (rotation signs, sketch matrices, k-means seeding), so an index is
 * reproducible from its seed. */
/* Little-endian fields of the file formats, assembled byte by byte so
 * they read the same on any host and at any alignment. */
static inline void cm_put_le32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static inline void cm_put_le64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static inline uint32_t cm_get_le32(const uint8_t *p) {
    uint32_t v = 0;
    for (int i = 0; i < 4; i++)
        v |= (uint32_t)p[i] << (8 * i);
    return v;
}
static inline uint64_t cm_get_le64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static inline uint64_t cm_splitmix64(uint64_t *state) {
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Number of online processors, at least 1. */
unsigned cm_cpu_count(void);

/* Monotonic clock in seconds. */
double cm_now(void);

/* Bytes of memory the system could give without swapping (MemAvailable:
 * free memory and the page cache it can drop), or the free memory where
 * that is not reported; 0 if neither is known. */
size_t cm_memory_available(void);

#endif /* ROTOR_COMMON_H */
