/*
 * The allocator hook. Every block an index owns goes through the
 * rotor_allocator in its params, so a host can account for or limit rotor's
 * memory per index, and a test can make the n-th allocation fail. The
 * library never replaces the host's malloc.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "common/common.h"

static void *default_alloc(void *opaque, size_t size, size_t align) {
    (void)opaque;
    /* aligned_alloc wants a size that is a multiple of the alignment. */
    size_t rounded;
    if (cm_add_overflow(size, align - 1, &rounded))
        return NULL;
    rounded = rounded / align * align;
    return aligned_alloc(align, rounded == 0 ? align : rounded);
}

static void default_free(void *opaque, void *p) {
    (void)opaque;
    free(p);
}

rotor_allocator cm_allocator_default(void) {
    rotor_allocator a = {default_alloc, default_free, NULL};
    return a;
}

void *cm_alloc(const rotor_allocator *a, size_t size, const char *what) {
    void *p = a->alloc(a->opaque, size, CM_ALIGN);
    if (p == NULL)
        cm_fail(ROTOR_ERR_OUT_OF_MEMORY, "out of memory allocating %zu bytes for %s", size, what);
    return p;
}

void *cm_calloc(const rotor_allocator *a, size_t size, const char *what) {
    void *p = cm_alloc(a, size, what);
    if (p != NULL)
        memset(p, 0, size);
    return p;
}

enum { HUGE_PAGE = 2u << 20 };

void *cm_alloc_large(const rotor_allocator *a, size_t size, const char *what) {
    void *p = cm_alloc(a, size, what);
#ifdef MADV_HUGEPAGE
    if (p != NULL && size >= 2 * (size_t)HUGE_PAGE) {
        const uintptr_t lo = ((uintptr_t)p + HUGE_PAGE - 1) & ~(uintptr_t)(HUGE_PAGE - 1);
        const uintptr_t hi = ((uintptr_t)p + size) & ~(uintptr_t)(HUGE_PAGE - 1);
        /* Advice only: a refusal (no THP, or memory that is not anonymous)
         * costs speed, never correctness. */
        if (hi > lo)
            (void)madvise((void *)lo, hi - lo, MADV_HUGEPAGE);
    }
#endif
    return p;
}

void *cm_calloc_large(const rotor_allocator *a, size_t size, const char *what) {
    void *p = cm_alloc_large(a, size, what);
    if (p != NULL)
        memset(p, 0, size);
    return p;
}

void cm_free(const rotor_allocator *a, void *p) {
    if (p != NULL)
        a->free(a->opaque, p);
}
