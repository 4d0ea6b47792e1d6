/*
 * A bounded top-k collector: keeps the k smallest (distance, id) pairs seen
 * so far in a max-heap, so the current k-th distance (the admission
 * threshold) is at the root. Ties are broken by id, the smaller id winning,
 * so results do not depend on the order candidates arrive in (threads,
 * blocks). Header-only: it sits in every search's inner loop.
 *
 *      dist[0] = worst kept = threshold       (heap root)
 *      dist[1..size) heap order, children 2i+1, 2i+2
 */
#ifndef ROTOR_COMMON_TOPK_H
#define ROTOR_COMMON_TOPK_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

typedef struct cm_topk {
    float *dist;
    int64_t *id;
    size_t k;
    size_t size;
} cm_topk;

/* `dist` and `id` have room for k entries. */
static inline void cm_topk_init(cm_topk *t, float *dist, int64_t *id, size_t k) {
    t->dist = dist;
    t->id = id;
    t->k = k;
    t->size = 0;
}

/* Candidates at or above this distance cannot enter. */
static inline float cm_topk_threshold(const cm_topk *t) {
    return t->size < t->k ? INFINITY : t->dist[0];
}

static inline int cm_topk_worse(float da, int64_t ia, float db, int64_t ib) {
    return da > db || (da == db && ia > ib);
}

static inline void cm_topk_sift_down(cm_topk *t, size_t i) {
    float d = t->dist[i];
    int64_t id = t->id[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= t->size)
            break;
        if (c + 1 < t->size && cm_topk_worse(t->dist[c + 1], t->id[c + 1], t->dist[c], t->id[c]))
            c++;
        if (!cm_topk_worse(t->dist[c], t->id[c], d, id))
            break;
        t->dist[i] = t->dist[c];
        t->id[i] = t->id[c];
        i = c;
    }
    t->dist[i] = d;
    t->id[i] = id;
}

/* Offers one candidate; O(log k) when it enters, O(1) when it does not. */
static inline void cm_topk_push(cm_topk *t, float d, int64_t id) {
    if (t->size < t->k) {
        size_t i = t->size++;
        while (i > 0) {
            size_t p = (i - 1) / 2;
            if (!cm_topk_worse(d, id, t->dist[p], t->id[p]))
                break;
            t->dist[i] = t->dist[p];
            t->id[i] = t->id[p];
            i = p;
        }
        t->dist[i] = d;
        t->id[i] = id;
        return;
    }
    if (t->k == 0 || !cm_topk_worse(t->dist[0], t->id[0], d, id))
        return;
    t->dist[0] = d;
    t->id[0] = id;
    cm_topk_sift_down(t, 0);
}

/* Sorts the kept entries ascending in place (heap sort) and pads the
 * remaining k - size slots with id -1, distance +inf. */
static inline void cm_topk_finish(cm_topk *t) {
    size_t n = t->size;
    while (t->size > 1) {
        size_t last = t->size - 1;
        float d = t->dist[0];
        int64_t id = t->id[0];
        t->dist[0] = t->dist[last];
        t->id[0] = t->id[last];
        t->dist[last] = d;
        t->id[last] = id;
        t->size--;
        cm_topk_sift_down(t, 0);
    }
    t->size = n;
    for (size_t i = n; i < t->k; i++) {
        t->dist[i] = INFINITY;
        t->id[i] = -1;
    }
}

#endif /* ROTOR_COMMON_TOPK_H */
