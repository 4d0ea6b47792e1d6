/*
 * The Vamana graph (Subramanya et al., "DiskANN", NeurIPS 2019).
 *
 * Build. Every point is inserted by a greedy search for itself from the
 * entry point (the medoid) with a candidate list of L, then RobustPrune
 * picks at most R out-neighbours among the nodes the search expanded: the
 * nearest candidate p* is kept and every candidate p' with
 * alpha * d(p*, p') <= d(p, p') is dropped, since p* already leads there.
 * Each kept neighbour gets the reverse edge; a list may grow 30 % past R
 * before it is pruned back, and a last pass trims every list to R. Two
 * passes: alpha = 1 with half the list connects the graph quickly; the
 * second, alpha > 1 with the full list, adds the longer edges that make
 * searches converge in few hops. A node no search can reach (pruning can
 * orphan one) is then linked in. Distances at build are squared L2 on the
 * stored vectors for every metric (cosine vectors are normalised, so the
 * order is the same; inner-product indexes get a Euclidean graph that the
 * search then walks by inner product); a build's searches estimate them on
 * an 8-bit copy of the vectors (build_codes_make), its prunes compute them.
 *
 * Threads insert different points at once. A node's record is only read or
 * written under its own spin lock (one byte per node), held for a copy or a
 * prune of that one node, never two at a time, so there is no lock order to
 * get wrong. One thread inserts in the seeded order and builds the same
 * graph every time; more threads interleave and may not.
 *
 * Node record, node_bytes each (a multiple of 16, or of 64 with codes):
 *
 *   [degree u32][R + slack neighbour ids u32][codes, with a quantizer]
 *
 * With neighbour codes the codes are a store of R slots holding copies of
 * the neighbours' codes in the walking quantizer's layout (SymphonyQG's
 * idea), so expanding a node is one sequential read and one scan call over
 * all its neighbours: for 4-bit PQ that is exactly one 32-code fast-scan
 * block. The copies are refreshed after each insert for every node whose
 * list changed. Without them (R times less memory) each record carries its
 * own node's code: a neighbour scored by id costs one or two lines of its
 * record, gathered with the others into one store and scored by one scan.
 *
 * Search. Of up to 16384 sampled starting points, filed in groups around
 * leaders, the leaders are scored, then the groups of the nearest until
 * about 256 (by default) points are; then a sorted candidate list of L
 * entries: the nearest unexpanded entry is expanded until none is left; a
 * per-thread visited bitset (n / 8 bytes: it stays in cache where an array
 * of tags would not) that forgets only the words a search touched,
 * consulted only for estimates good enough to enter the list; the node
 * expanded next is prefetched while the current one is scored. The best candidates are
 * then (with a second quantizer) estimated again, and the best `rerank`
 * scored on the full vectors.
 */
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "common/topk.h"
#include "graph/graph.h"
#include "quant/kmeans.h"
#include "simd/simd.h"

typedef struct vm_cand {
    float dist;
    uint32_t id;
} vm_cand;

/* Per-thread working memory, pooled on the graph so searches reuse it. */
typedef struct vm_scratch {
    struct vm_scratch *next;
    uint64_t *visited;              /* one bit per node, visited_words words */
    uint32_t *touched;              /* the words of `visited` this search set bits in */
    size_t visited_words, ntouched; /* touched holds visited_words slots */
    vm_cand *list;                  /* list_cap + 1 sorted candidates */
    uint8_t *expanded;
    size_t list_cap;
    vm_cand *pool; /* nodes a build search expanded */
    size_t pool_size, pool_cap;
    uint32_t *nbrs; /* slots + 1 ids copied out of a node */
    vm_cand *picks; /* the groups of starting points a search scans */
    float *est;     /* R estimates (rounded up to a block of 32), or MAX_STARTS */
    vm_cand *prune; /* prune candidates, pool_cap + R + 1 */
    uint8_t *gone;  /* occluded flags, same count */
    uint8_t *qmem;  /* quantizer query state and scratch */
    uint8_t *bqmem; /* build: build_q's query state, then its scratch */
    size_t qmem_size;
    float *best_d; /* a search's best estimates for a deep rerank */
    int64_t *best_id;
    uint32_t *cand; /* the candidates that go on to refine and rerank */
    size_t best_cap;
} vm_scratch;

typedef struct vm_pool {
    pthread_mutex_t lock;
    vm_scratch *free;
} vm_pool;

struct vamana {
    rotor_allocator alloc;
    vamana_params p;
    const quant *q;  /* layout of the neighbour-code stores; NULL without */
    const quant *wq; /* the code a search walks on (q, or own codes); NULL: floats */
    /* Without neighbour codes, each record carries its own node's code
     * (code_bytes at block_off), so scoring a neighbour by id reads one or
     * two lines of its record instead of a line per subspace of a fast-scan
     * block, and the record's ids arrive with it. */
    bool own_code;
    size_t count, capacity;
    /* Id slots per node: R plus build slack. A full list is pruned back to
     * R only when it overflows the slack, so a node gaining reverse edges
     * is pruned once per few edges instead of at every one; a last pass
     * prunes every list still longer than R. */
    uint32_t slots;
    size_t node_bytes, block_off, block_bytes;
    uint8_t *nodes;
    /* The records belong to a mapped index file: never freed, copied to
     * memory of the graph's own by the first insert (vamana_open). */
    bool borrowed;
    atomic_uchar *locks; /* capacity spin locks */
    uint8_t *dirty;      /* capacity: list changed since its codes were copied */
    uint32_t entry;
    /* Extra starting points, scored together at the start of a quantized
     * search (see choose_starts). */
    uint32_t *starts;
    uint8_t *start_codes; /* q's store of their codes */
    size_t nstarts;
    /* The starting points grouped around leaders (see group_starts): group
     * i is starts[group_off[i] .. group_off[i + 1]), its leader first;
     * leader_codes holds the leaders' codes. ngroups 0: one flat sample. */
    uint32_t *group_off;
    uint8_t *leader_codes;
    size_t ngroups;
    vm_pool *pool;
    /* During a build: an 8-bit copy of every vector (build_codes_make),
     * what the build's searches score; NULL otherwise. */
    quant *build_q;
    uint8_t *build_codes;
};

/* Starting points of a quantized search: a uniform sample of up to 16384
 * nodes whose codes are kept together, grouped around leaders (about
 * GROUP_SIZE points a group; group_starts), of which a search scores about
 * vamana_search_params.starts. A fast-scan pass over 32 codes costs about
 * as much as expanding one node; the sample lands the search near the
 * query instead of at the medoid of the whole set, and its best estimates
 * also feed a deep rerank. How many pay depends on the data
 * (rotor_search_params.start_points), so the index keeps enough for any. */
enum { SCORE_BLOCK = 32, MIN_STARTS = 4096, MAX_STARTS = 16384, GROUP_SIZE = 32, GROUP_ITERS = 8 };
#define FIRST_PASS_LIST(list, degree) ((list) / 2 > (degree) ? (list) / 2 : (degree))

static inline uint32_t *node_of(const vamana *g, size_t u) {
    return (uint32_t *)(g->nodes + u * g->node_bytes);
}

static inline void node_lock(const vamana *g, size_t u) {
    while (atomic_exchange_explicit(&g->locks[u], 1, memory_order_acquire))
        while (atomic_load_explicit(&g->locks[u], memory_order_relaxed))
            __builtin_ia32_pause();
}

static inline void node_unlock(const vamana *g, size_t u) {
    atomic_store_explicit(&g->locks[u], 0, memory_order_release);
}

size_t vamana_count(const vamana *g) { return g->count; }
uint32_t vamana_entry(const vamana *g) { return g->entry; }
uint32_t vamana_max_degree(const vamana *g) { return g->p.degree; }

size_t vamana_start_groups(const vamana *g, const uint32_t **ids, size_t *nstarts,
                           const uint32_t **off) {
    *ids = g->starts;
    *nstarts = g->nstarts;
    *off = g->group_off;
    return g->ngroups;
}

uint32_t vamana_neighbors(const vamana *g, size_t node, const uint32_t **nbrs) {
    const uint32_t *rec = node_of(g, node);
    *nbrs = rec + 1;
    return rec[0];
}

size_t vamana_bytes_ids(const vamana *g) {
    return g->count * (g->node_bytes - g->block_bytes) + g->capacity * 2;
}
size_t vamana_bytes_codes(const vamana *g) { return g->count * g->block_bytes; }

rotor_status vamana_create(const rotor_allocator *a, const vamana_params *p, const quant *q,
                           vamana **out) {
    *out = NULL;
    CM_RETURN_IF(p->degree < 2 || p->degree > 1024, ROTOR_ERR_INVALID_ARGUMENT,
                 "graph degree must be between 2 and 1024, not %u", p->degree);
    CM_RETURN_IF(p->build_list < p->degree || p->build_list > 100000, ROTOR_ERR_INVALID_ARGUMENT,
                 "build list must be between the degree (%u) and 100000, not %u", p->degree,
                 p->build_list);
    CM_RETURN_IF(!(p->alpha >= 1.0f && p->alpha <= 4.0f), ROTOR_ERR_INVALID_ARGUMENT,
                 "alpha must be between 1 and 4, not %g", (double)p->alpha);
    vamana *g = cm_calloc(a, sizeof *g, "graph");
    if (g == NULL)
        return ROTOR_ERR_OUT_OF_MEMORY;
    g->alloc = *a;
    g->p = *p;
    if (g->p.threads == 0)
        g->p.threads = 1;
    g->q = p->neighbor_codes ? q : NULL;
    g->wq = q;
    g->own_code = q != NULL && !p->neighbor_codes;
    g->slots = p->degree + (p->degree * 3 + 9) / 10;
    g->block_off = 4 * ((size_t)g->slots + 1);
    g->block_bytes = g->q          ? g->q->ops->store_bytes(g->q, p->degree)
                     : g->own_code ? q->code_bytes
                                   : 0;
    g->node_bytes = cm_round_up(g->block_off + g->block_bytes, g->q ? CM_ALIGN : 16);
    g->pool = cm_calloc(a, sizeof *g->pool, "graph scratch pool");
    rotor_status st = ROTOR_OK;
    if (g->pool == NULL)
        st = ROTOR_ERR_OUT_OF_MEMORY;
    else if (pthread_mutex_init(&g->pool->lock, NULL) != 0)
        st = cm_fail(ROTOR_ERR_THREAD, "cannot create the graph's mutex");
    if (st != ROTOR_OK) {
        cm_free(a, g->pool);
        cm_free(a, g);
        return st;
    }
    *out = g;
    return ROTOR_OK;
}

static void scratch_free(const vamana *g, vm_scratch *sc) {
    if (sc == NULL)
        return;
    const rotor_allocator *a = &g->alloc;
    cm_free(a, sc->visited);
    cm_free(a, sc->touched);
    cm_free(a, sc->list);
    cm_free(a, sc->expanded);
    cm_free(a, sc->pool);
    cm_free(a, sc->nbrs);
    cm_free(a, sc->picks);
    cm_free(a, sc->est);
    cm_free(a, sc->prune);
    cm_free(a, sc->gone);
    cm_free(a, sc->qmem);
    cm_free(a, sc->bqmem);
    cm_free(a, sc->best_d);
    cm_free(a, sc->best_id);
    cm_free(a, sc->cand);
    cm_free(a, sc);
}

void vamana_free(vamana *g) {
    if (g == NULL)
        return;
    rotor_allocator a = g->alloc;
    for (vm_scratch *sc = g->pool->free; sc != NULL;) {
        vm_scratch *next = sc->next;
        scratch_free(g, sc);
        sc = next;
    }
    pthread_mutex_destroy(&g->pool->lock);
    cm_free(&a, g->pool);
    if (!g->borrowed)
        cm_free(&a, g->nodes);
    cm_free(&a, (void *)g->locks);
    cm_free(&a, g->dirty);
    cm_free(&a, g->starts);
    cm_free(&a, g->start_codes);
    cm_free(&a, g->group_off);
    cm_free(&a, g->leader_codes);
    cm_free(&a, g);
}

static size_t qstate_bytes(const quant *q);

/* Where a search's gather store starts in its query memory: after the
 * walking quantizer's state and the refining one's. */
static size_t gather_offset(const graph_space *s) {
    return qstate_bytes(s->nav_q) + (s->q != s->nav_q ? qstate_bytes(s->q) : 0);
}

/* Grows one scratch array to hold `n` elements of `size` bytes. */
static rotor_status grow_array(const rotor_allocator *a, void **arr, size_t *cap, size_t n,
                               size_t size, bool zero, const char *what) {
    if (n <= *cap)
        return ROTOR_OK;
    void *p = zero ? cm_calloc(a, n * size, what) : cm_alloc(a, n * size, what);
    if (p == NULL)
        return ROTOR_ERR_OUT_OF_MEMORY;
    cm_free(a, *arr);
    *arr = p;
    *cap = n;
    return ROTOR_OK;
}

/* A scratch from the pool, or a new one, sized for `nodes` nodes, a list of
 * `list` entries, (build) a prune over `pool` candidates and (search) a
 * rerank heap of `best` entries. */
static rotor_status scratch_get(const vamana *g, const graph_space *s, size_t nodes, size_t list,
                                size_t pool, size_t best, vm_scratch **out) {
    pthread_mutex_lock(&g->pool->lock);
    vm_scratch *sc = g->pool->free;
    if (sc != NULL)
        g->pool->free = sc->next;
    pthread_mutex_unlock(&g->pool->lock);
    const rotor_allocator *a = &g->alloc;
    if (sc == NULL) {
        sc = cm_calloc(a, sizeof *sc, "search scratch");
        if (sc == NULL)
            return ROTOR_ERR_OUT_OF_MEMORY;
        /* Estimates of a node's neighbours, or of up to all starting
         * points (an ungrouped sample is scored in one scan). */
        const size_t r = cm_round_up((size_t)g->slots + 1, SCORE_BLOCK);
        const size_t e = r > MAX_STARTS ? r : MAX_STARTS;
        sc->nbrs = cm_alloc(a, r * sizeof *sc->nbrs, "neighbour ids");
        sc->est = cm_alloc(a, e * sizeof *sc->est, "neighbour estimates");
        sc->picks = cm_alloc(a, MAX_STARTS * sizeof *sc->picks, "groups of starting points");
        if (sc->nbrs == NULL || sc->est == NULL || sc->picks == NULL) {
            scratch_free(g, sc);
            return ROTOR_ERR_OUT_OF_MEMORY;
        }
    }
    rotor_status st = ROTOR_OK;
    const size_t words = (nodes + 63) / 64;
    if (words > sc->visited_words) {
        /* Fresh zeroed words: nothing is left to forget. */
        size_t cap = sc->visited_words, touched_cap = sc->visited_words;
        st = grow_array(a, (void **)&sc->visited, &cap, words + words / 4, sizeof(uint64_t), true,
                        "visited set");
        if (st == ROTOR_OK)
            st = grow_array(a, (void **)&sc->touched, &touched_cap, cap, sizeof(uint32_t), false,
                            "visited set");
        sc->visited_words = st == ROTOR_OK ? cap : 0;
        sc->ntouched = 0;
    }
    if (st == ROTOR_OK && list + 1 > sc->list_cap) {
        size_t lc = sc->list_cap, ec = sc->list_cap;
        st = grow_array(a, (void **)&sc->list, &lc, list + 1, sizeof(vm_cand), false,
                        "candidate list");
        if (st == ROTOR_OK)
            st = grow_array(a, (void **)&sc->expanded, &ec, list + 1, 1, false, "candidate list");
        if (st == ROTOR_OK)
            sc->list_cap = list + 1;
    }
    if (st == ROTOR_OK && pool > sc->pool_cap) {
        size_t pc = sc->pool_cap, rc = sc->pool_cap, gc = sc->pool_cap;
        size_t n = pool + g->slots + 1;
        st = grow_array(a, (void **)&sc->pool, &pc, n, sizeof(vm_cand), false, "prune pool");
        if (st == ROTOR_OK)
            st = grow_array(a, (void **)&sc->prune, &rc, n, sizeof(vm_cand), false, "prune pool");
        if (st == ROTOR_OK)
            st = grow_array(a, (void **)&sc->gone, &gc, n, 1, false, "prune pool");
        if (st == ROTOR_OK)
            sc->pool_cap = n;
    }
    if (best < list + 1)
        best = list + 1; /* the candidates can be the whole list */
    if (st == ROTOR_OK && best > sc->best_cap) {
        size_t dc = sc->best_cap, ic = sc->best_cap, cc = sc->best_cap;
        st = grow_array(a, (void **)&sc->best_d, &dc, best, sizeof(float), false, "rerank heap");
        if (st == ROTOR_OK)
            st = grow_array(a, (void **)&sc->best_id, &ic, best, sizeof(int64_t), false,
                            "rerank heap");
        if (st == ROTOR_OK)
            st = grow_array(a, (void **)&sc->cand, &cc, best, sizeof(uint32_t), false,
                            "rerank candidates");
        if (st == ROTOR_OK)
            sc->best_cap = best;
    }
    if (st == ROTOR_OK && s->nav_q != NULL) {
        size_t need = gather_offset(s) +
                      (g->own_code ? s->nav_q->ops->store_bytes(s->nav_q, g->slots + 1) : 0);
        st = grow_array(a, (void **)&sc->qmem, &sc->qmem_size, need, 1, false, "query state");
    }
    if (st != ROTOR_OK) {
        scratch_free(g, sc);
        return st;
    }
    *out = sc;
    return ROTOR_OK;
}

static void scratch_put(const vamana *g, vm_scratch *sc) {
    pthread_mutex_lock(&g->pool->lock);
    sc->next = g->pool->free;
    g->pool->free = sc;
    pthread_mutex_unlock(&g->pool->lock);
}

/* Clears what the last search set: a few hundred words, not n / 64. */
static void visited_reset(vm_scratch *sc) {
    for (size_t i = 0; i < sc->ntouched; i++)
        sc->visited[sc->touched[i]] = 0;
    sc->ntouched = 0;
}

/* Marks id visited; false if it already was. touched has a slot per word,
 * so it cannot overflow. */
static inline bool visit(vm_scratch *sc, uint32_t id) {
    const size_t w = id >> 6;
    const uint64_t bit = (uint64_t)1 << (id & 63), old = sc->visited[w];
    if (old & bit)
        return false;
    if (old == 0)
        sc->touched[sc->ntouched++] = (uint32_t)w;
    sc->visited[w] = old | bit;
    return true;
}

/* ---- the candidate list -------------------------------------------------- */

typedef struct vm_list {
    vm_cand *c;
    uint8_t *expanded;
    size_t size, cap;
    size_t cur; /* no unexpanded entry before this position */
} vm_list;

/* Inserts (d, id) keeping the list sorted and at most cap long; returns
 * false if it was not good enough. */
static inline bool list_insert(vm_list *l, float d, uint32_t id) {
    if (l->size == l->cap && (l->cap == 0 || d >= l->c[l->size - 1].dist))
        return false;
    size_t lo = 0, hi = l->size;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (l->c[mid].dist <= d)
            lo = mid + 1;
        else
            hi = mid;
    }
    /* Entries from lo move one down; a full list drops its last. */
    size_t end = l->size < l->cap ? l->size : l->cap - 1;
    for (size_t j = end; j > lo; j--) {
        l->c[j] = l->c[j - 1];
        l->expanded[j] = l->expanded[j - 1];
    }
    l->c[lo] = (vm_cand){d, id};
    l->expanded[lo] = 0;
    if (l->size < l->cap)
        l->size++;
    if (lo < l->cur)
        l->cur = lo;
    return true;
}

/* The estimate a candidate must beat to enter the list or, when there is
 * one, the deeper rerank heap. */
static inline float entry_gate(const vm_list *l, const cm_topk *pool) {
    float gate = l->size < l->cap ? INFINITY : l->c[l->size - 1].dist;
    if (pool != NULL && cm_topk_threshold(pool) > gate)
        gate = cm_topk_threshold(pool);
    return gate;
}

/* The position of the nearest unexpanded candidate, or size if none. */
static inline size_t list_next(vm_list *l) {
    while (l->cur < l->size && l->expanded[l->cur])
        l->cur++;
    return l->cur;
}

static inline void prefetch_bytes(const void *p, size_t bytes) {
    const char *c = p;
    for (size_t off = 0; off < bytes; off += 64)
        __builtin_prefetch(c + off, 0, 3);
}

rotor_status graph_rerank(const graph_space *s, const float *query, const uint32_t *ids, size_t n,
                          cm_topk *top) {
    if (s->rerank != NULL)
        return s->rerank(s->rerank_ctx, query, ids, n, top);
    const size_t vb = s->dim * sizeof(float);
    /* Start every candidate's first lines loading at once; the kernel's
     * sequential reads then find the rest streaming in. (Keeping a few
     * whole vectors in flight instead measured slower.) */
    for (size_t j = 0; j < n; j++)
        prefetch_bytes(s->vectors + (size_t)ids[j] * s->dim, vb < 256 ? vb : 256);
    for (size_t j = 0; j < n; j++)
        cm_topk_push(top, graph_exact_distance(s, query, ids[j]), ids[j]);
    return ROTOR_OK;
}

float graph_exact_distance(const graph_space *s, const float *q, size_t id) {
    const simd_ops *ops = simd_ops_get();
    const float *x = s->vectors + id * s->dim;
    switch (s->metric) {
    case ROTOR_METRIC_L2: return ops->l2sq_f32(q, x, s->dim);
    case ROTOR_METRIC_IP: return -ops->dot_f32(q, x, s->dim);
    case ROTOR_METRIC_COSINE: return 1.0f - ops->dot_f32(q, x, s->dim);
    }
    return 0.0f;
}

/* ---- build ---------------------------------------------------------------- */

/* Greedy search for vector `x` on squared L2 (estimated on the build's
 * 8-bit copy when there is one, else exact), reading node records under
 * their locks; the expanded nodes are left in sc->pool. */
static void build_search(const vamana *g, const graph_space *s, const simd_ops *ops, vm_scratch *sc,
                         const float *x, size_t list) {
    const size_t d = s->dim;
    vm_list l = {sc->list, sc->expanded, 0, list, 0};
    visited_reset(sc);
    sc->pool_size = 0;
    visit(sc, g->entry);
    const quant *bq = g->build_q;
    const size_t cb = bq != NULL ? bq->code_bytes : 0;
    float e0;
    if (bq != NULL) {
        bq->ops->prepare(bq, x, sc->bqmem,
                         (float *)(sc->bqmem + cm_round_up(bq->query_bytes, CM_ALIGN)));
        bq->ops->scan(bq, sc->bqmem, g->build_codes, g->entry, 1, &e0);
    } else {
        e0 = ops->l2sq_f32(x, s->vectors + (size_t)g->entry * d, d);
    }
    list_insert(&l, e0, g->entry);
    size_t i;
    while ((i = list_next(&l)) < l.size) {
        l.expanded[i] = 1;
        vm_cand u = l.c[i];
        if (sc->pool_size < sc->pool_cap - g->slots - 1)
            sc->pool[sc->pool_size++] = u;
        node_lock(g, u.id);
        const uint32_t *rec = node_of(g, u.id);
        uint32_t deg = rec[0];
        memcpy(sc->nbrs, rec + 1, deg * sizeof(uint32_t));
        node_unlock(g, u.id);
        size_t m = 0;
        for (uint32_t j = 0; j < deg; j++)
            if (visit(sc, sc->nbrs[j]))
                sc->nbrs[m++] = sc->nbrs[j];
        if (bq != NULL) {
            for (size_t j = 0; j < m; j++)
                prefetch_bytes(g->build_codes + (size_t)sc->nbrs[j] * cb, cb < 128 ? cb : 128);
            for (size_t j = 0; j < m; j++) {
                if (j + 2 < m)
                    prefetch_bytes(g->build_codes + (size_t)sc->nbrs[j + 2] * cb, cb);
                float e;
                bq->ops->scan(bq, sc->bqmem, g->build_codes, sc->nbrs[j], 1, &e);
                list_insert(&l, e, sc->nbrs[j]);
            }
            continue;
        }
        /* Every unvisited neighbour's first lines start loading at once,
         * and the one after next in full, so the misses overlap. */
        for (size_t j = 0; j < m; j++)
            prefetch_bytes(s->vectors + (size_t)sc->nbrs[j] * d, d * 4 < 128 ? d * 4 : 128);
        for (size_t j = 0; j < m; j++) {
            if (j + 2 < m)
                prefetch_bytes(s->vectors + (size_t)sc->nbrs[j + 2] * d, d * 4);
            float dist = ops->l2sq_f32(x, s->vectors + (size_t)sc->nbrs[j] * d, d);
            list_insert(&l, dist, sc->nbrs[j]);
        }
    }
}

static int cand_cmp(const void *a, const void *b) {
    const vm_cand *x = a, *y = b;
    if (x->dist != y->dist)
        return x->dist < y->dist ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

/* RobustPrune of point p over sc->prune[0..n) (distances to p filled in):
 * writes at most R ids to out and returns how many. */
static uint32_t robust_prune(const vamana *g, const graph_space *s, const simd_ops *ops,
                             vm_scratch *sc, uint32_t p, size_t n, float alpha, uint32_t *out) {
    const size_t d = s->dim;
    vm_cand *c = sc->prune;
    qsort(c, n, sizeof *c, cand_cmp);
    /* Drop p itself and duplicates (a candidate can be both expanded and an
     * old neighbour); sorted by (dist, id), duplicates are adjacent. */
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (c[i].id == p || (m > 0 && c[m - 1].id == c[i].id))
            continue;
        c[m++] = c[i];
    }
    memset(sc->gone, 0, m);
    uint32_t kept = 0;
    for (size_t i = 0; i < m && kept < g->p.degree; i++) {
        if (sc->gone[i])
            continue;
        out[kept++] = c[i].id;
        const float *xi = s->vectors + (size_t)c[i].id * d;
        for (size_t j = i + 1; j < m; j++) {
            if (sc->gone[j])
                continue;
            float dij = ops->l2sq_f32(xi, s->vectors + (size_t)c[j].id * d, d);
            if (alpha * dij <= c[j].dist)
                sc->gone[j] = 1;
        }
    }
    return kept;
}

/* out[j] = (squared L2 from x to ids[j], ids[j]): prune candidates. */
static void score_ids(const graph_space *s, const simd_ops *ops, const float *x,
                      const uint32_t *ids, size_t n, vm_cand *out) {
    for (size_t j = 0; j < n; j++)
        out[j] = (vm_cand){ops->l2sq_f32(x, s->vectors + (size_t)ids[j] * s->dim, s->dim), ids[j]};
}

/* Adds the edge u -> p, pruning u's list when it is full. */
static void add_back_edge(vamana *g, const graph_space *s, const simd_ops *ops, vm_scratch *sc,
                          uint32_t u, uint32_t p, float alpha) {
    node_lock(g, u);
    uint32_t *rec = node_of(g, u);
    uint32_t deg = rec[0];
    for (uint32_t j = 0; j < deg; j++) {
        if (rec[1 + j] == p) {
            node_unlock(g, u);
            return;
        }
    }
    if (deg < g->slots) {
        rec[1 + deg] = p;
        rec[0] = deg + 1;
    } else {
        const float *xu = s->vectors + (size_t)u * s->dim;
        score_ids(s, ops, xu, rec + 1, deg, sc->prune);
        score_ids(s, ops, xu, &p, 1, sc->prune + deg);
        rec[0] = robust_prune(g, s, ops, sc, u, (size_t)deg + 1, alpha, rec + 1);
    }
    g->dirty[u] = 1;
    node_unlock(g, u);
}

static void insert_point(vamana *g, const graph_space *s, const simd_ops *ops, vm_scratch *sc,
                         uint32_t p, float alpha, size_t list) {
    const size_t d = s->dim;
    const float *x = s->vectors + (size_t)p * d;
    build_search(g, s, ops, sc, x, list);
    const size_t n = sc->pool_size;
    memcpy(sc->prune, sc->pool, n * sizeof *sc->pool);
    /* The second pass also reconsiders p's current neighbours. */
    node_lock(g, p);
    uint32_t *rec = node_of(g, p);
    uint32_t deg = rec[0];
    memcpy(sc->nbrs, rec + 1, deg * sizeof(uint32_t));
    node_unlock(g, p);
    score_ids(s, ops, x, sc->nbrs, deg, sc->prune + n);
    uint32_t *chosen = sc->nbrs;
    uint32_t kept = robust_prune(g, s, ops, sc, p, n + deg, alpha, chosen);
    node_lock(g, p);
    memcpy(rec + 1, chosen, kept * sizeof(uint32_t));
    rec[0] = kept;
    g->dirty[p] = 1;
    node_unlock(g, p);
    /* chosen lives in sc->nbrs, which the back edges do not touch. */
    for (uint32_t j = 0; j < kept; j++)
        add_back_edge(g, s, ops, sc, chosen[j], p, alpha);
}

/* Marks in `seen` every node reachable from the entry; returns how many. */
static size_t mark_reachable(const vamana *g, uint8_t *seen, uint32_t *stack) {
    memset(seen, 0, g->count);
    size_t top = 0, reached = 1;
    seen[g->entry] = 1;
    stack[top++] = g->entry;
    while (top > 0) {
        const uint32_t *rec = node_of(g, stack[--top]);
        for (uint32_t j = 0; j < rec[0]; j++) {
            uint32_t v = rec[1 + j];
            if (!seen[v]) {
                seen[v] = 1;
                reached++;
                stack[top++] = v;
            }
        }
    }
    return reached;
}

/* Pruning can leave a node with no in-edge from the rest of the graph,
 * which no search would ever reach. Each such node is linked from the
 * nearest node a search for it expands (all reachable), preferring one
 * with a free slot; a full one gives up its farthest edge, and the check
 * repeats until every node is reached. */
static void connect_unreached(vamana *g, const graph_space *s, vm_scratch *sc, uint8_t *seen,
                              uint32_t *stack) {
    const simd_ops *ops = simd_ops_get();
    for (unsigned round = 0; round < 8; round++) {
        if (mark_reachable(g, seen, stack) == g->count)
            break;
        for (size_t u = 0; u < g->count; u++) {
            if (seen[u])
                continue;
            build_search(g, s, ops, sc, s->vectors + u * s->dim, g->p.build_list);
            qsort(sc->pool, sc->pool_size, sizeof *sc->pool, cand_cmp);
            size_t pick = 0;
            for (size_t j = 0; j < sc->pool_size; j++) {
                if (sc->pool[j].id != u && node_of(g, sc->pool[j].id)[0] < g->p.degree) {
                    pick = j;
                    break;
                }
            }
            uint32_t v = sc->pool[pick].id;
            if (v == u)
                continue;
            uint32_t *rec = node_of(g, v);
            if (rec[0] < g->p.degree)
                rec[1 + rec[0]++] = (uint32_t)u;
            else
                rec[g->p.degree] = (uint32_t)u;
            g->dirty[v] = 1;
            seen[u] = 1;
        }
    }
}

/* Copies the codes of a node's neighbours into its record. */
static void refresh_codes(vamana *g, const graph_space *s, size_t u, uint8_t *code) {
    const quant *q = g->q;
    uint32_t *rec = node_of(g, u);
    uint8_t *block = (uint8_t *)rec + g->block_off;
    for (uint32_t j = 0; j < rec[0]; j++) {
        q->ops->load(s->nav_q, s->nav_codes, rec[1 + j], code);
        q->ops->store(q, block, j, code);
    }
    g->dirty[u] = 0;
}

enum { PHASE_INSERT, PHASE_TRIM, PHASE_CODES, PHASE_ENCODE };

/* Prunes a list longer than R (grown into the slack) back to R. */
static void trim_node(vamana *g, const graph_space *s, const simd_ops *ops, vm_scratch *sc,
                      uint32_t u, float alpha) {
    uint32_t *rec = node_of(g, u);
    if (rec[0] <= g->p.degree)
        return;
    score_ids(s, ops, s->vectors + (size_t)u * s->dim, rec + 1, rec[0], sc->prune);
    rec[0] = robust_prune(g, s, ops, sc, u, rec[0], alpha, rec + 1);
    g->dirty[u] = 1;
}

typedef struct build_job {
    vamana *g;
    const graph_space *s;
    const uint32_t *order; /* points to insert */
    size_t n;
    float alpha;
    size_t list; /* the build searches' candidate list this pass */
    int phase;   /* PHASE_* */
    atomic_size_t next;
    atomic_size_t done;
    atomic_int stop;
} build_job;

typedef struct build_worker {
    build_job *job;
    vm_scratch *sc;
    uint8_t *code;
    bool reports; /* the calling thread reports progress */
    uint64_t progress_base, progress_total;
    bool cancelled;
} build_worker;

enum { CHUNK = 32, BUILD_CODES_MIN_DIM = 32 };

static void *build_run(void *arg) {
    build_worker *w = arg;
    build_job *job = w->job;
    vamana *g = job->g;
    const simd_ops *ops = simd_ops_get();
    for (;;) {
        if (atomic_load_explicit(&job->stop, memory_order_relaxed))
            break;
        size_t b = atomic_fetch_add(&job->next, CHUNK);
        if (b >= job->n)
            break;
        size_t e = b + CHUNK < job->n ? b + CHUNK : job->n;
        for (size_t i = b; i < e; i++) {
            if (job->phase == PHASE_ENCODE)
                g->build_q->ops->encode(
                    g->build_q, job->s->vectors + i * job->s->dim,
                    g->build_codes + i * g->build_q->code_bytes,
                    (float *)(w->sc->bqmem + cm_round_up(g->build_q->query_bytes, CM_ALIGN)));
            else if (job->phase == PHASE_INSERT)
                insert_point(g, job->s, ops, w->sc, job->order[i], job->alpha, job->list);
            else if (job->phase == PHASE_TRIM)
                trim_node(g, job->s, ops, w->sc, (uint32_t)i, job->alpha);
            else if (g->dirty[i])
                refresh_codes(g, job->s, i, w->code);
        }
        size_t done = atomic_fetch_add(&job->done, e - b) + (e - b);
        if (w->reports && job->phase == PHASE_INSERT && g->p.progress != NULL &&
            g->p.progress(g->p.progress_opaque, w->progress_base + done, w->progress_total)) {
            w->cancelled = true;
            atomic_store(&job->stop, 1);
        }
    }
    return NULL;
}

/* Runs one phase over `n` items on the graph's threads (the calling thread
 * is one of them); a thread that cannot start leaves its share to the
 * others, since they pull work from one counter. */
static bool run_phase(build_job *job, build_worker *w, unsigned threads) {
    pthread_t tid[64];
    bool started[64] = {false};
    atomic_store(&job->next, 0);
    atomic_store(&job->done, 0);
    for (unsigned t = 1; t < threads; t++)
        started[t] = pthread_create(&tid[t], NULL, build_run, &w[t]) == 0;
    build_run(&w[0]);
    for (unsigned t = 1; t < threads; t++)
        if (started[t])
            pthread_join(tid[t], NULL);
    return !w[0].cancelled;
}

static void build_codes_drop(vamana *g, build_worker *w, unsigned threads) {
    for (unsigned t = 0; t < threads; t++) {
        if (w[t].sc != NULL) {
            cm_free(&g->alloc, w[t].sc->bqmem);
            w[t].sc->bqmem = NULL;
        }
    }
    quant_free(g->build_q);
    cm_free(&g->alloc, g->build_codes);
    g->build_q = NULL;
    g->build_codes = NULL;
}

/* The build's searches read every vector at random, several times each:
 * at 768 dimensions they spent most of a build waiting on float rows.
 * They score an 8-bit copy instead (sq8: one u8 x i8 dot product, a
 * quarter of the bytes, estimates within a fraction of a percent), made
 * here, on the build's threads, and dropped when the build ends; RobustPrune
 * still compares exact distances. Graphs built this way searched the same
 * (recall within 0.001 on 200,000 768-d embeddings) and built 19 % faster
 * (1M: 318 s instead of 401 s).
 * Below 32 dimensions the rows are small and the copy is not made. */
static rotor_status build_codes_make(vamana *g, const graph_space *s, build_worker *w,
                                     unsigned threads) {
    if (s->dim < BUILD_CODES_MIN_DIM)
        return ROTOR_OK;
    const quant_spec spec = {QUANT_SQ, 8, 0};
    CM_FORWARD(quant_create(&spec, s->dim, ROTOR_METRIC_L2, g->p.seed, &g->alloc, &g->build_q));
    quant *q = g->build_q;
    rotor_status st = q->ops->train(q, s->vectors, s->count, threads);
    size_t bytes = 0;
    if (st == ROTOR_OK && cm_mul_overflow(s->count, q->code_bytes, &bytes))
        st = cm_fail(ROTOR_ERR_OUT_OF_MEMORY, "8-bit copy of %zu vectors is too large", s->count);
    if (st == ROTOR_OK) {
        g->build_codes = cm_alloc_large(&g->alloc, bytes, "build codes");
        if (g->build_codes == NULL)
            st = ROTOR_ERR_OUT_OF_MEMORY;
    }
    const size_t qb = cm_round_up(q->query_bytes, CM_ALIGN) + q->scratch_floats * sizeof(float);
    for (unsigned t = 0; st == ROTOR_OK && t < threads; t++) {
        w[t].sc->bqmem = cm_alloc(&g->alloc, qb, "build query state");
        if (w[t].sc->bqmem == NULL)
            st = ROTOR_ERR_OUT_OF_MEMORY;
    }
    if (st == ROTOR_OK) {
        build_job job = {.g = g, .s = s, .n = s->count, .phase = PHASE_ENCODE};
        for (unsigned t = 0; t < threads; t++)
            w[t].job = &job;
        run_phase(&job, w, threads);
    }
    if (st != ROTOR_OK)
        build_codes_drop(g, w, threads);
    return st;
}

/* The records (and their locks and flags) moved to fresh memory of cap
 * nodes; on failure nothing changed. */
static rotor_status move_records(vamana *g, size_t cap) {
    size_t bytes;
    CM_RETURN_IF(cm_mul_overflow(cap, g->node_bytes, &bytes) || cap > UINT32_MAX,
                 ROTOR_ERR_OUT_OF_MEMORY, "a graph of %zu nodes is too large", cap);
    uint8_t *nodes = cm_calloc_large(&g->alloc, bytes, "graph nodes");
    atomic_uchar *locks = cm_calloc(&g->alloc, cap, "graph locks");
    uint8_t *dirty = cm_calloc(&g->alloc, cap, "graph flags");
    if (nodes == NULL || locks == NULL || dirty == NULL) {
        cm_free(&g->alloc, nodes);
        cm_free(&g->alloc, (void *)locks);
        cm_free(&g->alloc, dirty);
        return ROTOR_ERR_OUT_OF_MEMORY;
    }
    if (g->count > 0) {
        memcpy(nodes, g->nodes, g->count * g->node_bytes);
        if (g->dirty != NULL)
            memcpy(dirty, g->dirty, g->count);
    }
    if (g->borrowed) {
        /* Records from a file were never read whole (search bounds every
         * id it follows); insertion trusts them, so they are checked once. */
        for (size_t u = 0; u < g->count; u++) {
            const uint32_t *rec = (const uint32_t *)(nodes + u * g->node_bytes);
            bool ok = rec[0] <= g->p.degree;
            for (uint32_t j = 0; ok && j < rec[0]; j++)
                ok = rec[1 + j] < g->count && rec[1 + j] != u;
            if (!ok) {
                cm_free(&g->alloc, nodes);
                cm_free(&g->alloc, (void *)locks);
                cm_free(&g->alloc, dirty);
                return cm_fail(ROTOR_ERR_CORRUPT,
                               "graph node %zu holds an impossible neighbour list; the index "
                               "file is damaged",
                               u);
            }
        }
    } else {
        cm_free(&g->alloc, g->nodes);
    }
    g->borrowed = false;
    cm_free(&g->alloc, (void *)g->locks);
    cm_free(&g->alloc, g->dirty);
    g->nodes = nodes;
    g->locks = locks;
    g->dirty = dirty;
    g->capacity = cap;
    return ROTOR_OK;
}

/* Makes room for `n` nodes; on failure nothing changed. */
static rotor_status reserve(vamana *g, size_t n) {
    if (n <= g->capacity)
        return ROTOR_OK;
    size_t cap = g->capacity ? g->capacity : 1024;
    while (cap < n)
        cap = cap > SIZE_MAX / 2 ? n : cap * 2;
    return move_records(g, cap);
}

rotor_status vamana_own(vamana *g) {
    return g->borrowed ? move_records(g, g->count > 0 ? g->count : 1) : ROTOR_OK;
}

/* The point nearest to the mean of all points: the entry of every search. */
static rotor_status medoid(const vamana *g, const graph_space *s, uint32_t *out) {
    const simd_ops *ops = simd_ops_get();
    const size_t d = s->dim;
    double *col = cm_calloc(&g->alloc, d * (sizeof(double) + sizeof(float)), "graph centre");
    if (col == NULL)
        return ROTOR_ERR_OUT_OF_MEMORY;
    float *mean = (float *)(col + d);
    for (size_t i = 0; i < s->count; i++) {
        const float *x = s->vectors + i * d;
        for (size_t j = 0; j < d; j++)
            col[j] += x[j];
    }
    for (size_t j = 0; j < d; j++)
        mean[j] = (float)(col[j] / (double)s->count);
    uint32_t best = 0;
    float best_d = INFINITY;
    for (size_t i = 0; i < s->count; i++) {
        float dist = ops->l2sq_f32(mean, s->vectors + i * d, d);
        if (dist < best_d) {
            best_d = dist;
            best = (uint32_t)i;
        }
    }
    cm_free(&g->alloc, col);
    *out = best;
    return ROTOR_OK;
}

/* Copies each group's leader code (the first of its starting points) into
 * the leaders' store. */
static rotor_status fill_leader_codes(vamana *g) {
    const quant *wq = g->wq;
    g->leader_codes = cm_calloc(&g->alloc, wq->ops->store_bytes(wq, g->ngroups), "group leaders");
    uint8_t *code = cm_alloc(&g->alloc, wq->code_bytes, "code copy");
    rotor_status st = ROTOR_OK;
    if (g->leader_codes == NULL || code == NULL) {
        st = ROTOR_ERR_OUT_OF_MEMORY;
    } else {
        for (size_t c = 0; c < g->ngroups; c++) {
            wq->ops->load(wq, g->start_codes, g->group_off[c], code);
            wq->ops->store(wq, g->leader_codes, c, code);
        }
    }
    cm_free(&g->alloc, code);
    return st;
}

/* Groups the starting points around leaders, so a search scores the
 * leaders and then only the groups nearest the query: the points it scores
 * are then near the query instead of a uniform sample, and a few hundred
 * do what thousands did. k-means (squared L2, like the build) places one
 * centre per GROUP_SIZE points; each centre's nearest member becomes a
 * leader, since a leader is scored with the walking code of a real point;
 * every point then joins its nearest leader, the side a query would pick.
 * The starts are reordered group by group, each leader first. */
static rotor_status group_starts(vamana *g, const graph_space *s) {
    const size_t n = g->nstarts, dim = s->dim;
    size_t k = n / GROUP_SIZE;
    if (k < 2)
        return ROTOR_OK;
    const rotor_allocator *a = &g->alloc;
    float *x = cm_alloc(a, n * dim * sizeof *x, "starting points");
    float *centre = cm_alloc(a, k * dim * sizeof *centre, "group centres");
    float *best = cm_alloc(a, k * sizeof *best, "group leaders");
    uint32_t *assign = cm_alloc(a, n * sizeof *assign, "group assignment");
    uint32_t *leader = cm_alloc(a, k * sizeof *leader, "group leaders");
    uint32_t *order = cm_alloc(a, n * sizeof *order, "group order");
    g->group_off = cm_calloc(a, (k + 1) * sizeof *g->group_off, "group offsets");
    uint8_t *codes = cm_alloc(a, g->wq->ops->store_bytes(g->wq, n), "starting points");
    uint8_t *code = cm_alloc(a, g->wq->code_bytes, "code copy");
    rotor_status st = ROTOR_OK;
    if (x == NULL || centre == NULL || best == NULL || assign == NULL || leader == NULL ||
        order == NULL || g->group_off == NULL || codes == NULL || code == NULL)
        st = ROTOR_ERR_OUT_OF_MEMORY;
    for (size_t i = 0; st == ROTOR_OK && i < n; i++)
        memcpy(x + i * dim, s->vectors + (size_t)g->starts[i] * dim, dim * sizeof *x);
    unsigned threads = g->p.threads > 64 ? 64 : g->p.threads;
    if (st == ROTOR_OK) {
        km_params kp = {k, GROUP_ITERS, threads, g->p.seed};
        st = km_train(a, x, n, dim, dim, &kp, centre, assign, NULL);
    }
    if (st == ROTOR_OK) {
        const simd_ops *ops = simd_ops_get();
        for (size_t c = 0; c < k; c++)
            best[c] = INFINITY;
        for (size_t i = 0; i < n; i++) {
            float d = ops->l2sq_f32(x + i * dim, centre + (size_t)assign[i] * dim, dim);
            if (d < best[assign[i]]) {
                best[assign[i]] = d;
                leader[assign[i]] = (uint32_t)i;
            }
        }
        /* A cluster k-means could not fill (many equal points) has no
         * leader and no group. */
        size_t kept = 0;
        for (size_t c = 0; c < k; c++)
            if (best[c] < INFINITY)
                leader[kept++] = leader[c];
        k = kept;
        for (size_t c = 0; c < k; c++)
            memcpy(centre + c * dim, x + (size_t)leader[c] * dim, dim * sizeof *x);
        if (k >= 2)
            st = km_assign(a, x, n, dim, dim, centre, k, threads, assign, NULL);
    }
    if (st == ROTOR_OK && k >= 2) {
        /* A duplicate of a leader may have pulled it into another group. */
        for (size_t c = 0; c < k; c++)
            assign[leader[c]] = (uint32_t)c;
        for (size_t i = 0; i < n; i++)
            g->group_off[assign[i] + 1]++;
        for (size_t c = 0; c < k; c++)
            g->group_off[c + 1] += g->group_off[c];
        /* Leaders first, then the members in sample order. */
        for (size_t c = 0; c < k; c++)
            order[g->group_off[c]++] = leader[c];
        for (size_t i = 0; i < n; i++)
            if (leader[assign[i]] != i)
                order[g->group_off[assign[i]]++] = (uint32_t)i;
        for (size_t c = k; c > 0; c--)
            g->group_off[c] = g->group_off[c - 1];
        g->group_off[0] = 0;
        for (size_t j = 0; j < n; j++) {
            g->wq->ops->load(g->wq, g->start_codes, order[j], code);
            g->wq->ops->store(g->wq, codes, j, code);
            assign[j] = g->starts[order[j]];
        }
        memcpy(g->starts, assign, n * sizeof *assign);
        memcpy(g->start_codes, codes, g->wq->ops->store_bytes(g->wq, n));
        g->ngroups = k;
        st = fill_leader_codes(g);
    }
    if (st != ROTOR_OK || g->ngroups == 0) {
        cm_free(a, g->group_off);
        cm_free(a, g->leader_codes);
        g->group_off = NULL;
        g->leader_codes = NULL;
        g->ngroups = 0;
    }
    cm_free(a, x);
    cm_free(a, centre);
    cm_free(a, best);
    cm_free(a, assign);
    cm_free(a, leader);
    cm_free(a, order);
    cm_free(a, codes);
    cm_free(a, code);
    return st;
}

/* How many points the build samples as starting points: n / 8, at least
 * MIN_STARTS (all of a smaller set), at most MAX_STARTS. Grouping costs
 * about S^2 d / 32 per k-means pass, too much for a sample a quarter of a
 * small set: on Fashion-MNIST (60,000 x 784) 16,384 points took 2.4 s of
 * a 12 s build; 7,500 take 0.45 s and search as well. */
static size_t start_sample_size(size_t n) {
    size_t s = n / 8;
    if (s < MIN_STARTS)
        s = MIN_STARTS;
    if (s > MAX_STARTS)
        s = MAX_STARTS;
    return s < n ? s : n;
}

rotor_status vamana_insert(vamana *g, const graph_space *s) {
    const size_t first = g->count, n = s->count - first;
    if (n == 0)
        return ROTOR_OK;
    CM_RETURN_IF(g->wq != NULL && s->nav_q == NULL, ROTOR_ERR_INVALID_ARGUMENT,
                 "a graph walking on codes needs its quantizer's codes");
    CM_RETURN_IF(s->count > UINT32_MAX, ROTOR_ERR_INVALID_ARGUMENT,
                 "a graph holds at most %u points, not %zu", UINT32_MAX, s->count);
    CM_FORWARD(reserve(g, s->count));
    if (g->own_code)
        for (size_t i = first; i < s->count; i++)
            s->nav_q->ops->load(s->nav_q, s->nav_codes, i, (uint8_t *)node_of(g, i) + g->block_off);
    unsigned threads = g->p.threads > 64 ? 64 : g->p.threads;
    if (threads > n)
        threads = (unsigned)n;

    /* Everything the insertion needs is allocated before the first link. */
    rotor_status st = ROTOR_OK;
    build_worker w[64];
    memset(w, 0, sizeof w);
    /* `order` doubles as the reachability check's stack, hence its size. */
    uint32_t *order = cm_alloc(&g->alloc, s->count * sizeof *order, "insertion order");
    uint8_t *seen = cm_alloc(&g->alloc, s->count, "reachability marks");
    if (order == NULL || seen == NULL) {
        cm_free(&g->alloc, order);
        cm_free(&g->alloc, seen);
        return ROTOR_ERR_OUT_OF_MEMORY;
    }
    size_t code_bytes = s->nav_q ? s->nav_q->code_bytes : 0;
    for (unsigned t = 0; t < threads && st == ROTOR_OK; t++) {
        st = scratch_get(g, s, s->count, g->p.build_list, 2 * (size_t)g->p.build_list + 64, 0,
                         &w[t].sc);
        if (st == ROTOR_OK && code_bytes > 0) {
            w[t].code = cm_alloc(&g->alloc, code_bytes, "code copy");
            if (w[t].code == NULL)
                st = ROTOR_ERR_OUT_OF_MEMORY;
        }
    }
    if (st == ROTOR_OK && first == 0)
        st = build_codes_make(g, s, w, threads);
    if (st == ROTOR_OK && first == 0)
        st = medoid(g, s, &g->entry);
    size_t nstarts = g->wq != NULL && first == 0 ? start_sample_size(n) : 0;
    if (st == ROTOR_OK && nstarts > 0) {
        g->starts = cm_alloc(&g->alloc, nstarts * sizeof *g->starts, "graph starting points");
        g->start_codes =
            cm_calloc(&g->alloc, g->wq->ops->store_bytes(g->wq, nstarts), "graph starting points");
        if (g->starts == NULL || g->start_codes == NULL)
            st = ROTOR_ERR_OUT_OF_MEMORY;
    }
    if (st == ROTOR_OK) {
        uint64_t rng = g->p.seed ^ (0x5bd1e995ULL * (first + 1));
        for (size_t i = 0; i < n; i++)
            order[i] = (uint32_t)(first + i);
        for (size_t i = n; i > 1; i--) {
            size_t j = (size_t)(cm_splitmix64(&rng) % i);
            uint32_t t = order[i - 1];
            order[i - 1] = order[j];
            order[j] = t;
        }
        /* The first points of the build's random order are a uniform
         * sample; later adds keep it. */
        if (nstarts > 0) {
            for (size_t i = 0; i < nstarts; i++) {
                g->starts[i] = order[i];
                s->nav_q->ops->load(s->nav_q, s->nav_codes, order[i], w[0].code);
                g->wq->ops->store(g->wq, g->start_codes, i, w[0].code);
            }
            g->nstarts = nstarts;
            st = group_starts(g, s);
            if (st != ROTOR_OK)
                g->nstarts = 0;
        }
    }
    if (st == ROTOR_OK) {
        g->count = s->count;

        const bool build = first == 0;
        const unsigned passes = build ? 2 : 1;
        build_job job = {.g = g, .s = s, .order = order, .n = n, .phase = PHASE_INSERT};
        for (unsigned t = 0; t < threads; t++) {
            w[t].job = &job;
            w[t].reports = t == 0 && build;
            w[t].progress_total = (uint64_t)passes * n;
        }
        for (unsigned pass = 0; pass < passes && st == ROTOR_OK; pass++) {
            /* The first pass only has to connect the graph, which a short
             * list does; the second, with the full list, places the long
             * edges searches depend on. */
            const bool last = pass + 1 == passes;
            job.alpha = last ? g->p.alpha : 1.0f;
            job.list = last ? g->p.build_list : FIRST_PASS_LIST(g->p.build_list, g->p.degree);
            w[0].progress_base = (uint64_t)pass * n;
            if (!run_phase(&job, w, threads))
                st = cm_fail(ROTOR_ERR_INVALID_ARGUMENT, "graph build cancelled by the caller");
        }
        if (st == ROTOR_OK) {
            job.phase = PHASE_TRIM;
            job.n = g->count;
            run_phase(&job, w, threads);
        }
        if (st == ROTOR_OK)
            connect_unreached(g, s, w[0].sc, seen, order);
        if (st == ROTOR_OK && g->q != NULL) {
            job.phase = PHASE_CODES;
            job.n = g->count;
            run_phase(&job, w, threads);
        }
    }
    build_codes_drop(g, w, threads);
    for (unsigned t = 0; t < threads; t++) {
        if (w[t].sc != NULL)
            scratch_put(g, w[t].sc);
        cm_free(&g->alloc, w[t].code);
    }
    cm_free(&g->alloc, order);
    cm_free(&g->alloc, seen);
    return st;
}

/* ---- search ---------------------------------------------------------------- */

/* Query-state bytes of one quantizer (state, then its scratch). */
static size_t qstate_bytes(const quant *q) {
    return q ? cm_round_up(q->query_bytes, CM_ALIGN) +
                   cm_round_up(q->scratch_floats * sizeof(float), CM_ALIGN)
             : 0;
}

static void *prepare_query(const quant *q, const float *query, uint8_t *mem) {
    q->ops->prepare(q, query, mem, (float *)(mem + cm_round_up(q->query_bytes, CM_ALIGN)));
    return mem;
}

/* Scores starting points [first, first + n) and enters the good ones. As
 * for a node's neighbours, only the estimates good enough to enter are
 * marked visited (thousands of starting points would otherwise touch as
 * many words of the visited set), and the others are skipped a vector at a
 * time. */
static void enter_start_range(const vamana *g, const quant *nq, const void *qs, size_t first,
                              size_t n, vm_scratch *sc, vm_list *l, cm_topk *pool) {
    const simd_ops *ops = simd_ops_get();
    const uint32_t *ids = g->starts + first;
    nq->ops->scan(nq, qs, g->start_codes, first, n, sc->est);
    float gate = entry_gate(l, pool);
    for (size_t j = ops->first_below(sc->est, 0, n, gate); j < n;
         j = ops->first_below(sc->est, j + 1, n, gate)) {
        if (!visit(sc, ids[j]))
            continue;
        list_insert(l, sc->est[j], ids[j]);
        if (pool != NULL && sc->est[j] < cm_topk_threshold(pool))
            cm_topk_push(pool, sc->est[j], ids[j]);
        gate = entry_gate(l, pool);
    }
}

/* Enters the best of about `want` starting points: all of them when
 * ungrouped or when as many are wanted, else the groups of the leaders
 * nearest the query, nearest first, until they hold `want` points. */
static void enter_starts(const vamana *g, const quant *nq, const void *qs, size_t want,
                         vm_scratch *sc, vm_list *l, cm_topk *pool) {
    if (g->ngroups == 0 || want >= g->nstarts) {
        enter_start_range(g, nq, qs, 0, want < g->nstarts ? want : g->nstarts, sc, l, pool);
        return;
    }
    const size_t k = g->ngroups;
    const size_t picks = (want * k + g->nstarts - 1) / g->nstarts;
    nq->ops->scan(nq, qs, g->leader_codes, 0, k, sc->est);
    /* The `picks` best leaders, sorted, by insertion: most fail the first
     * comparison. */
    size_t m = 0;
    for (size_t c = 0; c < k; c++) {
        const float d = sc->est[c];
        if (m == picks && d >= sc->picks[m - 1].dist)
            continue;
        size_t j = m < picks ? m++ : m - 1;
        for (; j > 0 && sc->picks[j - 1].dist > d; j--)
            sc->picks[j] = sc->picks[j - 1];
        sc->picks[j] = (vm_cand){d, (uint32_t)c};
    }
    for (size_t j = 0; j < m; j++) {
        const uint32_t c = sc->picks[j].id;
        enter_start_range(g, nq, qs, g->group_off[c], g->group_off[c + 1] - g->group_off[c], sc, l,
                          pool);
    }
}

rotor_status vamana_search(const vamana *g, const graph_space *s, const float *query, size_t k,
                           const vamana_search_params *p, int64_t *ids, float *dists) {
    size_t list = p->list;
    const size_t refine = p->refine, rerank = p->rerank;
    const size_t nstarts = p->starts < g->nstarts ? p->starts : g->nstarts;
    const quant *nq = s->nav_q; /* what the walk scores; NULL: full vectors */
    const bool refining = nq != NULL && s->q != nq;
    if (list < k)
        list = k;
    /* How many of the walk's best candidates go on: to the refine, or
     * straight to the exact rerank. */
    size_t keep = 0;
    if (refining)
        keep = refine > rerank ? refine : rerank;
    else if (nq != NULL)
        keep = rerank;
    if (keep > 0 && keep < k)
        keep = k;
    /* A depth beyond the list keeps its own heap of the best estimates
     * seen, so a short list (fast) can still feed a deep rerank. */
    const bool pooled = keep > list;
    const size_t second = refining ? (rerank > k ? rerank : k) : 0;
    vm_scratch *sc;
    CM_FORWARD(scratch_get(g, s, g->count, list, 0, (pooled ? keep : 0) + second, &sc));
    cm_topk pool;
    cm_topk_init(&pool, sc->best_d, sc->best_id, pooled ? keep : 0);
    const bool blocks = g->q != NULL;
    void *qs = nq ? prepare_query(nq, query, sc->qmem) : NULL;
    uint8_t *gather = g->own_code ? sc->qmem + gather_offset(s) : NULL;

    vm_list l = {sc->list, sc->expanded, 0, list, 0};
    visited_reset(sc);
    float d0;
    if (nq != NULL)
        nq->ops->scan(nq, qs, s->nav_codes, g->entry, 1, &d0);
    else
        d0 = graph_exact_distance(s, query, g->entry);
    visit(sc, g->entry);
    list_insert(&l, d0, g->entry);
    if (pooled)
        cm_topk_push(&pool, d0, g->entry);
    if (nstarts > 0)
        enter_starts(g, nq, qs, nstarts, sc, &l, pooled ? &pool : NULL);

    size_t i;
    while ((i = list_next(&l)) < l.size) {
        l.expanded[i] = 1;
        const uint32_t u = l.c[i].id;
        /* Fetch the likely next node while this one is scored. */
        for (size_t j = i + 1; j < l.size; j++) {
            if (!l.expanded[j]) {
                prefetch_bytes(node_of(g, l.c[j].id), blocks ? g->node_bytes : 64);
                break;
            }
        }
        const uint32_t *rec = node_of(g, u);
        /* A record from an unverified file may hold anything: the degree is
         * bounded here and every id below before it indexes memory. */
        const uint32_t deg = rec[0] <= g->p.degree ? rec[0] : 0;
        const uint32_t *nb = rec + 1;
        const uint32_t count = (uint32_t)g->count;
        if (blocks) {
            nq->ops->scan(nq, qs, (const uint8_t *)rec + g->block_off, 0, deg, sc->est);
            /* The whole block is scored anyway, so the visited set is only
             * consulted for the few estimates good enough to enter: most
             * neighbours fail the gate and cost no random access. */
            float gate = entry_gate(&l, pooled ? &pool : NULL);
            for (uint32_t j = 0; j < deg; j++) {
                if (sc->est[j] >= gate || nb[j] >= count || !visit(sc, nb[j]))
                    continue;
                list_insert(&l, sc->est[j], nb[j]);
                if (pooled && sc->est[j] < cm_topk_threshold(&pool))
                    cm_topk_push(&pool, sc->est[j], nb[j]);
                gate = entry_gate(&l, pooled ? &pool : NULL);
            }
        } else if (g->own_code) {
            /* The unvisited neighbours' own codes, gathered into one store
             * and scored by one scan call (one fast-scan block). */
            uint32_t m = 0;
            for (uint32_t j = 0; j < deg; j++) {
                if (nb[j] >= count || !visit(sc, nb[j]))
                    continue;
                sc->nbrs[m++] = nb[j];
                prefetch_bytes((const uint8_t *)node_of(g, nb[j]) + g->block_off, g->block_bytes);
            }
            for (uint32_t j = 0; j < m; j++)
                nq->ops->store(nq, gather, j,
                               (const uint8_t *)node_of(g, sc->nbrs[j]) + g->block_off);
            if (m > 0)
                nq->ops->scan(nq, qs, gather, 0, m, sc->est);
            for (uint32_t j = 0; j < m; j++) {
                list_insert(&l, sc->est[j], sc->nbrs[j]);
                if (pooled && sc->est[j] < cm_topk_threshold(&pool))
                    cm_topk_push(&pool, sc->est[j], sc->nbrs[j]);
            }
        } else if (nq != NULL) {
            for (uint32_t j = 0; j < deg; j++) {
                if (nb[j] >= count || !visit(sc, nb[j]))
                    continue;
                float e;
                nq->ops->scan(nq, qs, s->nav_codes, nb[j], 1, &e);
                list_insert(&l, e, nb[j]);
                if (pooled && e < cm_topk_threshold(&pool))
                    cm_topk_push(&pool, e, nb[j]);
            }
        } else {
            for (uint32_t j = 0; j < deg; j++) {
                if (nb[j] >= count || !visit(sc, nb[j]))
                    continue;
                if (j + 1 < deg)
                    prefetch_bytes(s->vectors + (size_t)nb[j + 1] * s->dim,
                                   s->dim * sizeof(float) < 512 ? s->dim * sizeof(float) : 512);
                list_insert(&l, graph_exact_distance(s, query, nb[j]), nb[j]);
            }
        }
    }

    /* The candidates that go on: the pool, or the head of the list. */
    /* Best estimate first, for a rerank that reads from disk. */
    if (pooled)
        cm_topk_finish(&pool);
    size_t n = pooled ? pool.size : (keep < l.size ? keep : l.size);
    uint32_t *cand = sc->cand;
    for (size_t j = 0; j < n; j++)
        cand[j] = pooled ? (uint32_t)pool.id[j] : l.c[j].id;
    if (refining && n > 0) {
        /* Estimated again, with the index's (better) quantizer. */
        const quant *q = s->q;
        void *qs2 = prepare_query(q, query, sc->qmem + qstate_bytes(nq));
        cm_topk best;
        cm_topk_init(&best, sc->best_d + (pooled ? keep : 0), sc->best_id + (pooled ? keep : 0),
                     rerank > 0 ? second : k);
        /* The candidates' codes are scattered over the store: a few are
         * kept loading ahead of the one being scored, or each estimate
         * waits on memory (98 % of the refine's time, perf). */
        const bool plain = q->ops->store == quant_plain_store;
        enum { AHEAD = 16 };
        for (size_t j = 0; plain && j < AHEAD && j < n; j++)
            prefetch_bytes(s->codes + (size_t)cand[j] * q->code_bytes, q->code_bytes);
        for (size_t j = 0; j < n; j++) {
            if (plain && j + AHEAD < n)
                prefetch_bytes(s->codes + (size_t)cand[j + AHEAD] * q->code_bytes, q->code_bytes);
            float e;
            q->ops->scan(q, qs2, s->codes, cand[j], 1, &e);
            cm_topk_push(&best, e, cand[j]);
        }
        if (rerank == 0) {
            cm_topk_finish(&best);
            memcpy(dists, best.dist, k * sizeof *dists);
            memcpy(ids, best.id, k * sizeof *ids);
            scratch_put(g, sc);
            return ROTOR_OK;
        }
        cm_topk_finish(&best);
        n = best.size;
        for (size_t j = 0; j < n; j++)
            cand[j] = (uint32_t)best.id[j];
    }

    cm_topk top;
    cm_topk_init(&top, dists, ids, k);
    rotor_status st = ROTOR_OK;
    if (nq != NULL && rerank > 0) {
        st = graph_rerank(s, query, cand, n, &top);
    } else {
        for (size_t j = 0; j < l.size && j < k; j++)
            cm_topk_push(&top, l.c[j].dist, l.c[j].id);
    }
    cm_topk_finish(&top);
    scratch_put(g, sc);
    return st;
}

/* ---- persistence ------------------------------------------------------------ */

/*
 * Header section (little-endian, FORMAT.md):
 *   0 u32 degree R     4 u32 id slots      8 u64 node bytes
 *  16 u64 block offset 24 u64 block bytes 32 u32 entry
 *  36 u32 starting points S               40 u32 neighbour codes (0/1)
 *  44 u32 groups G     48 S u32 starting points, zero-padded to 64 bytes,
 *  then the starting points' code store (store_bytes(S) of the walking code),
 *  then (G > 0) G + 1 u32 group offsets
 */
enum { META_FIXED = 48 };

static size_t meta_starts_end(size_t nstarts) {
    return cm_round_up(META_FIXED + 4 * nstarts, CM_ALIGN);
}

/* Where the group offsets start: after the starting points' codes. */
static size_t meta_groups_at(const quant *wq, size_t nstarts) {
    return meta_starts_end(nstarts) + (wq != NULL ? wq->ops->store_bytes(wq, nstarts) : 0);
}

size_t vamana_meta_bytes(const vamana *g) {
    return meta_groups_at(g->wq, g->nstarts) + (g->ngroups > 0 ? 4 * (g->ngroups + 1) : 0);
}

/* What follows the ids in a record: 0 nothing, 1 neighbours' codes, 2 the
 * node's own code. */
static uint32_t layout_mode(const vamana *g) { return g->q ? 1u : g->own_code ? 2u : 0u; }

static void le32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void le64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }
static uint32_t rd32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}
static uint64_t rd64(const uint8_t *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

void vamana_meta_write(const vamana *g, uint8_t *dst) {
    memset(dst, 0, vamana_meta_bytes(g));
    le32(dst, g->p.degree);
    le32(dst + 4, g->slots);
    le64(dst + 8, g->node_bytes);
    le64(dst + 16, g->block_off);
    le64(dst + 24, g->block_bytes);
    le32(dst + 32, g->entry);
    le32(dst + 36, (uint32_t)g->nstarts);
    le32(dst + 40, layout_mode(g));
    le32(dst + 44, (uint32_t)g->ngroups);
    if (g->nstarts > 0)
        memcpy(dst + META_FIXED, g->starts, 4 * g->nstarts);
    if (g->wq != NULL && g->nstarts > 0)
        memcpy(dst + meta_starts_end(g->nstarts), g->start_codes,
               g->wq->ops->store_bytes(g->wq, g->nstarts));
    if (g->ngroups > 0)
        memcpy(dst + meta_groups_at(g->wq, g->nstarts), g->group_off, 4 * (g->ngroups + 1));
}

const uint8_t *vamana_nodes(const vamana *g, size_t *bytes) {
    *bytes = g->count * g->node_bytes;
    return g->nodes;
}

rotor_status vamana_open(const rotor_allocator *a, const vamana_params *p, const quant *q,
                         size_t count, const uint8_t *meta, size_t meta_bytes, const uint8_t *nodes,
                         size_t nodes_bytes, vamana **out) {
    *out = NULL;
    CM_RETURN_IF(count == 0 || count > UINT32_MAX, ROTOR_ERR_FORMAT,
                 "a graph of %zu nodes cannot be opened", count);
    vamana *g;
    CM_FORWARD(vamana_create(a, p, q, &g));
    /* The layout is a function of (R, quantizer, neighbour codes): the
     * header must say exactly what vamana_create derived. */
    rotor_status st = ROTOR_OK;
    if (meta_bytes < META_FIXED)
        st = cm_fail(ROTOR_ERR_FORMAT, "the graph header holds %zu bytes, fewer than %d",
                     meta_bytes, META_FIXED);
    else if (rd32(meta) != g->p.degree || rd32(meta + 4) != g->slots ||
             rd64(meta + 8) != g->node_bytes || rd64(meta + 16) != g->block_off ||
             rd64(meta + 24) != g->block_bytes || rd32(meta + 40) != layout_mode(g))
        st = cm_fail(ROTOR_ERR_FORMAT,
                     "the graph header's node layout (degree %u, %" PRIu64
                     "-byte records) is not the one its parameters give (degree %u, %zu bytes)",
                     rd32(meta), rd64(meta + 8), g->p.degree, g->node_bytes);
    size_t nstarts = st == ROTOR_OK ? rd32(meta + 36) : 0;
    size_t ngroups = st == ROTOR_OK ? rd32(meta + 44) : 0;
    if (st == ROTOR_OK &&
        (nstarts > MAX_STARTS || nstarts > count || (g->wq == NULL && nstarts != 0)))
        st = cm_fail(ROTOR_ERR_FORMAT, "the graph header lists %zu starting points", nstarts);
    if (st == ROTOR_OK && ngroups > nstarts)
        st = cm_fail(ROTOR_ERR_FORMAT, "the graph header lists %zu groups of %zu starting points",
                     ngroups, nstarts);
    if (st == ROTOR_OK && rd32(meta + 32) >= count)
        st = cm_fail(ROTOR_ERR_FORMAT, "the graph's entry point %u is not one of its %zu nodes",
                     rd32(meta + 32), count);
    size_t want_meta = 0;
    if (st == ROTOR_OK) {
        want_meta = meta_groups_at(g->wq, nstarts) + (ngroups > 0 ? 4 * (ngroups + 1) : 0);
        size_t want_nodes;
        if (meta_bytes != want_meta)
            st = cm_fail(ROTOR_ERR_FORMAT, "the graph header holds %zu bytes, not %zu", meta_bytes,
                         want_meta);
        else if (cm_mul_overflow(count, g->node_bytes, &want_nodes) || nodes_bytes != want_nodes)
            st = cm_fail(ROTOR_ERR_FORMAT,
                         "the graph section holds %zu bytes; %zu nodes of %zu bytes need %zu",
                         nodes_bytes, count, g->node_bytes, count * g->node_bytes);
    }
    if (st == ROTOR_OK && nstarts > 0) {
        g->starts = cm_alloc(a, nstarts * sizeof *g->starts, "graph starting points");
        size_t sb = g->wq->ops->store_bytes(g->wq, nstarts);
        g->start_codes = cm_alloc(a, sb, "graph starting points");
        if (g->starts == NULL || g->start_codes == NULL)
            st = ROTOR_ERR_OUT_OF_MEMORY;
        else {
            memcpy(g->starts, meta + META_FIXED, 4 * nstarts);
            memcpy(g->start_codes, meta + meta_starts_end(nstarts), sb);
            for (size_t i = 0; i < nstarts && st == ROTOR_OK; i++)
                if (g->starts[i] >= count)
                    st = cm_fail(ROTOR_ERR_FORMAT,
                                 "the graph's starting point %u is not one of its %zu nodes",
                                 g->starts[i], count);
        }
    }
    if (st == ROTOR_OK && ngroups > 0) {
        g->group_off = cm_alloc(a, 4 * (ngroups + 1), "group offsets");
        if (g->group_off == NULL) {
            st = ROTOR_ERR_OUT_OF_MEMORY;
        } else {
            memcpy(g->group_off, meta + meta_groups_at(g->wq, nstarts), 4 * (ngroups + 1));
            /* Every group holds at least its leader, and together all. */
            bool ok = g->group_off[0] == 0 && g->group_off[ngroups] == nstarts;
            for (size_t c = 0; ok && c < ngroups; c++)
                ok = g->group_off[c] < g->group_off[c + 1];
            if (!ok)
                st = cm_fail(ROTOR_ERR_FORMAT,
                             "the graph's %zu groups do not split its %zu starting points", ngroups,
                             nstarts);
        }
    }
    g->nstarts = nstarts;
    if (st == ROTOR_OK && ngroups > 0) {
        g->ngroups = ngroups;
        st = fill_leader_codes(g);
    }
    if (st != ROTOR_OK) {
        vamana_free(g);
        return st;
    }
    g->entry = rd32(meta + 32);
    g->nodes = (uint8_t *)nodes;
    g->borrowed = true;
    g->count = g->capacity = count;
    *out = g;
    return ROTOR_OK;
}

rotor_status vamana_check(const vamana *g) {
    for (size_t u = 0; u < g->count; u++) {
        const uint32_t *rec = node_of(g, u);
        CM_RETURN_IF(rec[0] > g->p.degree, ROTOR_ERR_CORRUPT,
                     "graph node %zu claims %u neighbours, more than the degree %u", u, rec[0],
                     g->p.degree);
        for (uint32_t j = 0; j < rec[0]; j++)
            CM_RETURN_IF(rec[1 + j] >= g->count || rec[1 + j] == u, ROTOR_ERR_CORRUPT,
                         "graph node %zu links to %u, not another of the %zu nodes", u, rec[1 + j],
                         g->count);
    }
    return ROTOR_OK;
}
