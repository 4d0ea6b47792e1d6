/*
 * The Vamana graph (Subramanya et al., "DiskANN", NeurIPS 2019), private to
 * graph/: what its files share. The graph is split by phase:
 *
 *   vamana.c         the object: create, free, the scratch pool, stats
 *   vamana_build.c   insertion: greedy search, RobustPrune, back edges
 *   vamana_starts.c  the sampled starting points, their groups and how a
 *                    search enters them
 *   vamana_search.c  the beam search on quantized distances
 *   vamana_io.c      the graph's sections of the index file
 *   vamana_disk.c    the records on disk under a RAM budget: their pages,
 *                    the cache and the beam search that reads them
 *   vamana_shards.c  a build within a memory cap: overlapping shards built
 *                    one at a time and merged
 *
 * Node record, node_bytes each (a multiple of 16, or of 64 with codes):
 *
 *   [degree u32][R + slack neighbour ids u32][neighbours' codes, if kept]
 *
 * With neighbour codes the codes are a store of R slots holding copies of
 * the neighbours' walking codes (SymphonyQG's idea), so expanding a node is
 * one sequential read and one scan call over all its neighbours: for 4-bit
 * PQ that is exactly one 32-code fast-scan block. Without them (own_code:
 * R times less memory) a neighbour scored by id costs the two or three
 * lines of its code, gathered with the others into one store and scored by
 * one scan. Codes stored end to end are read from the walking code store;
 * a fast-scan store spreads a code over its whole 32-code block, so there
 * each record carries a copy of its node's code (code_in_record).
 */
#ifndef ROTOR_GRAPH_VAMANA_H
#define ROTOR_GRAPH_VAMANA_H

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "graph/graph.h"

typedef struct vm_cand {
    float dist;
    uint32_t id;
} vm_cand;

/* Per-thread working memory, pooled on the graph so searches reuse it. */
typedef struct vm_scratch {
    struct vm_scratch *next;
    uint64_t *visited;              /* one bit per node, visited_words words */
    uint32_t *touched;              /* the words of `visited` this search set bits in */
    size_t visited_words, ntouched; /* touched holds visited_words + 1 slots */
    vm_cand *list;                  /* list_cap + 1 sorted candidates */
    uint8_t *expanded;
    size_t list_cap;
    vm_cand *pool; /* nodes a build search expanded */
    size_t pool_size, pool_cap;
    uint32_t *nbrs;       /* slots + 1 ids copied out of a node */
    uint32_t *seen;       /* as many: a node's list as a build's insertion read it */
    vm_cand *picks;       /* the groups of starting points a search scans */
    float *est;           /* R estimates (rounded up to a block of 32), or MAX_STARTS */
    vm_cand *prune;       /* prune candidates, pool_cap + R + 1 */
    uint8_t *gone;        /* occluded flags, same count */
    uint64_t *prune_keys; /* the prune's sort (graph_key), same count */
    uint8_t *qmem;        /* quantizer query state and scratch */
    uint8_t *bqmem;       /* build: build_q's query state, then its scratch */
    size_t qmem_size;
    float *best_d; /* a search's best estimates for a deep rerank */
    int64_t *best_id;
    uint32_t *cand; /* the candidates that go on to refine and rerank */
    uint8_t *fine;  /* the rerank's flags: a candidate's bound is refined */
    size_t best_cap;
    /* Record images of an insertion beside searches (vamana_insert.c),
     * kept with the scratch so a stream of small adds allocates them once:
     * img_cap images, and twice as many node ids. */
    uint8_t *img;
    uint32_t *img_ids;
    size_t img_cap;
} vm_scratch;

typedef struct vm_pool {
    pthread_mutex_t lock;
    vm_scratch *free;
} vm_pool;

/* Starting points of a quantized search: a uniform sample of up to
 * MAX_STARTS nodes whose walking codes are kept together, grouped around
 * leaders (about sqrt(n) groups of sqrt(n)), of which a search scores
 * nav_search_params.starts (vamana_starts.c). */
enum { SCORE_BLOCK = 32, MIN_STARTS = 4096, MAX_STARTS = 16384, GROUP_ITERS = 8 };

typedef struct vamana {
    nav base;
    nav_params p;
    const quant *walk_q; /* the code a search walks on; NULL: the full vectors */
    /* Records hold copies of their neighbours' walking codes (else, with a
     * walking quantizer, the walk gathers the neighbours' own codes:
     * own_code; from a copy in each record when the store interleaves its
     * codes, code_in_record, else from the store). */
    bool neighbor_codes, own_code, code_in_record;
    size_t count, capacity;
    /* Points added since the last repair of unreached nodes: an add runs
     * it (a pass over the whole graph) once they reach 1/16 of the graph,
     * so a stream of small adds pays it a little at a time. */
    size_t unrepaired;
    /* Id slots per node: R plus build slack. A full list is pruned back to
     * R only when it overflows the slack, so a node gaining reverse edges
     * is pruned once per few edges instead of at every one; a last pass
     * prunes every list still longer than R. */
    uint32_t slots;
    size_t node_bytes, block_off, block_bytes;
    uint8_t *nodes;
    /* The records belong to a mapped index file: never freed, copied to
     * memory of the graph's own by the first insert (vamana_io.c). */
    bool borrowed;
    /* The records are a mapping of that many bytes of an unnamed file (a
     * build within a memory cap: vamana_shards.c), unmapped when freed. */
    size_t mapped_bytes;
    /* Shards the build was split into; 0: built in one piece. */
    size_t shards;
    atomic_uchar *locks; /* capacity spin locks */
    uint8_t *dirty;      /* capacity: list changed since its codes were copied */
    uint32_t entry;
    /* The sampled starting points, scored together at the start of a
     * quantized search (vamana_starts.c); start_codes holds their walking
     * codes. Group i is starts[group_off[i] .. group_off[i + 1]), its
     * leader first; leader_codes holds the leaders' codes. ngroups 0: one
     * flat sample. */
    uint32_t *starts;
    uint8_t *start_codes;
    size_t nstarts;
    uint32_t *group_off;
    uint8_t *leader_codes;
    size_t ngroups;
    vm_pool *pool;
    /* During a build: an 8-bit copy of every vector (vamana_build.c), what
     * the build's searches score; NULL otherwise. */
    quant *build_q;
    uint8_t *build_codes;
    size_t build_stride; /* from one copy to the next: its code, then its decoded |x~|^2 */
    /* The records on disk (vamana_disk.c), nodes NULL; NULL: in memory. */
    struct vm_disk *disk;
} vamana;

static inline const vamana *vamana_of(const nav *n) { return (const vamana *)n; }

/* Id slots of a record of degree R, and its bytes with a code block of
 * block_bytes (a multiple of 64 with neighbour codes, else of 16). */
static inline uint32_t vm_slots(uint32_t degree) { return degree + (degree * 3 + 9) / 10; }
static inline size_t vm_node_bytes(uint32_t degree, size_t block_bytes, bool neighbor_codes) {
    return cm_round_up(4 * ((size_t)vm_slots(degree) + 1) + block_bytes,
                       neighbor_codes ? CM_ALIGN : 16);
}

static inline uint32_t *node_of(const vamana *g, size_t u) {
    return (uint32_t *)(g->nodes + u * g->node_bytes);
}

/* ---- vamana.c ------------------------------------------------------------ */

rotor_status vamana_create(const rotor_allocator *a, const nav_params *p, const graph_space *s,
                           nav **out);
void vamana_free(nav *n);
/* A scratch from the pool, or a new one, sized for `nodes` nodes, a list of
 * `list` entries, (build) a prune over `pool` candidates and (search) a
 * rerank heap of `best` entries. */
rotor_status vm_scratch_get(const vamana *g, const graph_space *s, size_t nodes, size_t list,
                            size_t pool, size_t best, vm_scratch **out);
void vm_scratch_put(const vamana *g, vm_scratch *sc);
/* Room in sc for n record images and 2n node ids. */
rotor_status vm_scratch_images(const vamana *g, vm_scratch *sc, size_t n);
/* Query-state bytes of one quantizer (state, then its scratch). */
size_t vm_qstate_bytes(const quant *q);
/* Where the query rotated for both quantizers (s->shared_rotation) lies in
 * a search's query memory: after the walking quantizer's state and the
 * refining one's. */
size_t vm_rotation_offset(const graph_space *s);
/* Where its gather store starts: after that. */
size_t vm_gather_offset(const graph_space *s);

/* Clears what the last search set: a few hundred words, not n / 64. */
static inline void visited_reset(vm_scratch *sc) {
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

/* visit() over ids[0..n), the ones not visited before written to out
 * (ids itself will do: out never passes the id read); returns how many.
 * Without a branch on the bit: whether a neighbour was visited is a coin
 * toss the predictor loses, and the test-and-branch loop had been a
 * quarter of the time of the build's expansions (perf, 100-d word
 * vectors). Each word is written to touched's next slot and kept only
 * when it was empty (the spare slot past the words takes the last). */
static inline size_t visit_all(vm_scratch *sc, const uint32_t *ids, size_t n, uint32_t *out) {
    uint64_t *visited = sc->visited;
    uint32_t *touched = sc->touched;
    size_t nt = sc->ntouched, m = 0;
    for (size_t j = 0; j < n; j++) {
        const uint32_t id = ids[j];
        const size_t w = id >> 6;
        const uint64_t bit = (uint64_t)1 << (id & 63), old = visited[w];
        touched[nt] = (uint32_t)w;
        nt += old == 0;
        visited[w] = old | bit;
        out[m] = id;
        m += (old & bit) == 0;
    }
    sc->ntouched = nt;
    return m;
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
    /* The place after every entry d does not beat, by halving a window
     * without a branch on the comparison: which half holds it is a coin
     * toss the predictor loses, and the branching search had been a
     * tenth of a build (perf, 25-d word vectors). */
    const vm_cand *base = l->c;
    size_t n = l->size;
    while (n > 1) {
        const size_t half = n / 2;
        base += base[half].dist <= d ? half : 0;
        n -= half;
    }
    const size_t lo = (size_t)(base - l->c) + (n == 1 && base->dist <= d);
    /* Entries from lo move one down; a full list drops its last. */
    const size_t end = l->size < l->cap ? l->size : l->cap - 1;
    memmove(l->c + lo + 1, l->c + lo, (end - lo) * sizeof *l->c);
    memmove(l->expanded + lo + 1, l->expanded + lo, end - lo);
    l->c[lo] = (vm_cand){d, id};
    l->expanded[lo] = 0;
    if (l->size < l->cap)
        l->size++;
    if (lo < l->cur)
        l->cur = lo;
    return true;
}

/* Copies a code of cb >= 16 bytes in 16-byte steps, the last one ending at
 * the code's end: gathering neighbours' codes, a memcpy of a length known
 * only at run time cost more than the code's scoring (perf, a search of
 * 25-d word vectors with sq8 codes: 43 % of it with the copy, 38 % now,
 * the rest the misses on the codes). */
static inline void vm_copy_code(uint8_t *dst, const uint8_t *src, size_t cb) {
    for (size_t o = 0; o + 16 < cb; o += 16)
        memcpy(dst + o, src + o, 16);
    memcpy(dst + cb - 16, src + cb - 16, 16);
}

/* The position of the nearest unexpanded candidate, or size if none. */
static inline size_t list_next(vm_list *l) {
    while (l->cur < l->size && l->expanded[l->cur])
        l->cur++;
    return l->cur;
}

/* ---- vamana_build.c ------------------------------------------------------ */

rotor_status vamana_insert(nav *n, const graph_space *s);

/* A node's record is read or written by an inserting thread only under
 * its spin lock (one byte per node). */
static inline void vm_node_lock(const vamana *g, size_t u) {
    while (atomic_exchange_explicit(&g->locks[u], 1, memory_order_acquire))
        while (atomic_load_explicit(&g->locks[u], memory_order_relaxed))
            __builtin_ia32_pause();
}

static inline void vm_node_unlock(const vamana *g, size_t u) {
    atomic_store_explicit(&g->locks[u], 0, memory_order_release);
}

/* Greedy search for vector `x` on squared L2 (estimated on the build's
 * 8-bit copy when there is one, else exact), from the entry and the nseeds
 * nodes `seeds` (not in sc->nbrs), reading node records under their locks;
 * the expanded nodes are left in sc->pool. */
void vm_build_search(const vamana *g, const graph_space *s, const simd_ops *ops, vm_scratch *sc,
                     const float *x, size_t list, const uint32_t *seeds, size_t nseeds);

/* Nodes a build's or an add's thread takes at a time; the dimension from
 * which a build scores an 8-bit copy of the vectors (vamana_build.c). */
enum { VM_CHUNK = 32, VM_BUILD_CODES_MIN_DIM = 32 };

/* An inserting thread's working memory. */
typedef struct vm_worker {
    vm_scratch *sc;
    uint8_t *code; /* one walking code */
    /* Insertion beside searches (vamana_insert.c): new images of up to
     * max(R + 1, VM_CHUNK) records, the nodes they belong to, and the
     * nodes locked. */
    uint8_t *img;
    uint32_t *target, *held;
} vm_worker;
rotor_status vamana_derive(const nav *src, const rotor_allocator *a, const nav_params *p,
                           const graph_space *s, nav **out);
/* The records (and their locks and flags) moved to fresh memory of cap
 * nodes, checked on the way when they were borrowed; on failure nothing
 * changed. */
rotor_status vm_move_records(vamana *g, size_t cap);
/* RobustPrune of point p over sc->prune[0..n) (distances to p filled in):
 * writes at most R ids to out and returns how many. */
uint32_t vm_robust_prune(const vamana *g, const graph_space *s, const simd_ops *ops, vm_scratch *sc,
                         uint32_t p, size_t n, float alpha, uint32_t *out);
/* The same, then filled up to `fill` ids (at most R) with the nearest
 * candidates the prune occluded (a consolidation's re-link:
 * vamana_consolidate.c says why). */
uint32_t vm_robust_prune_filled(const vamana *g, const graph_space *s, const simd_ops *ops,
                                vm_scratch *sc, uint32_t p, size_t n, float alpha, uint32_t fill,
                                uint32_t *out);
/* out[j] = (squared L2 from x to ids[j], ids[j]): prune candidates. */
void vm_score_ids(const graph_space *s, const simd_ops *ops, const float *x, const uint32_t *ids,
                  size_t n, vm_cand *out);
/* Copies the walking codes of node u's neighbours into its record (code:
 * scratch for one code) and clears its dirty flag. */
void vm_refresh_codes(vamana *g, const graph_space *s, size_t u, uint8_t *code);
/* Frees (or unmaps) the records, their locks and flags. */
void vm_release_records(vamana *g);
/* The points of an insertion in their seeded random order: the nreused
 * slots `reused`, then [first, first + n - nreused). */
void vm_insertion_order(uint64_t seed, size_t first, const uint32_t *reused, size_t nreused,
                        size_t n, uint32_t *order);
/* The first nstarts points of `order` become the starting points
 * (g->starts and start_codes allocated for nstarts), grouped. `code`:
 * scratch for one walking code. */
rotor_status vm_sample_starts(vamana *g, const graph_space *s, const uint32_t *order,
                              size_t nstarts, uint8_t *code);
/* The live point nearest to the mean of all points: the entry of every
 * search. */
rotor_status vm_medoid(const vamana *g, const graph_space *s, uint32_t *out);

/* ---- vamana_shards.c ----------------------------------------------------- */

/* Bytes a build of s in one piece is expected to use (its records, the
 * build's 8-bit copy, the full vectors it reads at random, the index's
 * code stores): what nav_params.build_memory is compared with. */
uint64_t vm_build_bytes(const vamana *g, const graph_space *s);
/* The build of a fresh graph within nav_params.build_memory: the points
 * split into overlapping shards that each fit, each shard built alone and
 * its lists merged into the graph's. */
rotor_status vm_build_sharded(vamana *g, const graph_space *s);

/* ---- vamana_insert.c ----------------------------------------------------- */

/* Inserting points into a graph that searches are reading (s->publish):
 * what changes is computed into record images beside the searches, and
 * the images are copied over the records while they are held. */
/* Links point p (a greedy search, RobustPrune, the back edges; a list
 * that outgrows the slack is pruned). p's new neighbours get back edges
 * before their first farther neighbour while their lists have room, else
 * in the slack, which searches do not read: a list longer than R is
 * flagged dirty for vm_trim_live. */
void vm_insert_live(vamana *g, const graph_space *s, const simd_ops *ops, vm_worker *w, uint32_t p,
                    float alpha, size_t list);
/* Prunes the lists of nodes ids[0..n) that an add grew past R back to
 * R, in one publication; at most VM_CHUNK nodes. */
void vm_trim_live(vamana *g, const graph_space *s, const simd_ops *ops, vm_worker *w,
                  const uint32_t *ids, size_t n, float alpha);
/* After an add that left the repair of unreached nodes for later: every
 * one of the n new `points` that none of its out-neighbours links back to
 * (their prunes, at insertion or at the trim, all dropped it) is linked
 * from its nearest one, so a search can reach it. */
void vm_link_new_points(vamana *g, const graph_space *s, vm_worker *w, const uint32_t *points,
                        size_t n);
/* Adds the edge v -> u (before v's first farther neighbour, or in place
 * of v's neighbour at `slot` when v is full; nothing, and false, when v
 * links to u already): how an unreached node is linked in. `img`: room
 * for one record. */
bool vm_link(vamana *g, const graph_space *s, uint32_t v, uint32_t u, uint32_t slot, uint8_t *img,
             uint8_t *code);
/* Links every live node the entry does not reach (a build's repair; w:
 * a build search's scratch with one record image and a code; seen: a byte
 * per node; stack: a uint32_t per node). */
void vm_connect_unreached(vamana *g, const graph_space *s, vm_worker *w, uint8_t *seen,
                          uint32_t *stack);
/* Copies the walking codes of the neighbours at positions [from,
 * min(degree, R)) of record image `rec` into its code block (neighbour-
 * code layouts; nothing otherwise). */
void vm_image_codes(const vamana *g, const graph_space *s, uint32_t *rec, uint32_t from,
                    uint8_t *code);

/* ---- vamana_consolidate.c ------------------------------------------------ */
/* FreshDiskANN's delete consolidation (nav_ops.consolidate). */
rotor_status vamana_consolidate(nav *n, const graph_space *s, const uint64_t *deleted,
                                size_t deleted_bits, unsigned threads);
/* ROTOR_ERR_CORRUPT, naming the fault, when node u's record holds an
 * impossible list: a degree above R, an id outside the graph, or a loop. */
rotor_status vm_check_record(const vamana *g, size_t u, const uint32_t *rec);

/* ---- vamana_starts.c ----------------------------------------------------- */

/* How many points a build samples as starting points for n nodes. */
size_t vm_start_sample_size(size_t n);
/* Groups the sampled starting points around leaders. */
rotor_status vm_group_starts(vamana *g, const graph_space *s);
/* Starting point j starts from node `to` from now on: its id and walking
 * code (`code`: scratch for one). Its group keeps its leader's code, which
 * only tells where the group lies. Searches may be reading: the caller
 * publishes. */
void vm_move_start(vamana *g, const graph_space *s, size_t j, uint32_t to, uint8_t *code);
/* Copies each group's leader code into the leaders' store. */
rotor_status vm_fill_leader_codes(vamana *g);
/* g's starting points grouped as src's, which sampled the same points of
 * the same vectors, with g's walking codes (`code`: scratch for one): the
 * grouping's k-means depends on neither graph's codes. g->starts has room
 * for src->nstarts. */
rotor_status vm_copy_groups(vamana *g, const graph_space *s, const vamana *src, uint8_t *code);
/* The pool: the best `cap` estimates a walk scored, ordered by (estimate,
 * id) as cm_topk orders them. It is offered most of what a deep walk
 * scores (about 470 entries a query for 120 kept: SIFT-like 1M, L = 32),
 * so an offer only appends to a reservoir of twice `cap`; when it fills,
 * a selection keeps the best `cap` and tightens the threshold. A heap
 * paid a sift of seven levels on most offers and a heapsort at the end.
 * Entries are ordered keys (graph_key, graph.h). The keys lie in the
 * memory of the ids it leaves (vm_best_finish). */
typedef struct vm_best {
    uint64_t *key; /* room for 2 cap */
    size_t cap, size;
    size_t taken; /* entries pushed, all told */
    float thr;    /* +inf until the first selection, then the cap-th estimate */
} vm_best;

/* `mem` holds 2 cap entries. */
static inline void vm_best_init(vm_best *h, int64_t *mem, size_t cap) {
    h->key = (uint64_t *)mem;
    h->cap = cap;
    h->size = 0;
    h->taken = 0;
    h->thr = INFINITY;
}

/* Keeps the best `cap` entries (vamana_search.c). */
void vm_best_select(vm_best *h);

/* Offered only below thr (sink_offer), so nothing is compared here. */
static inline void vm_best_push(vm_best *h, float d, uint32_t id) {
    h->key[h->size++] = graph_key(d, id);
    h->taken++;
    if (h->size == 2 * h->cap)
        vm_best_select(h);
}

/* The best `cap` entries, ascending when `sorted`: dist[j] and id[j],
 * j < size (id is the memory the keys were in). */
void vm_best_finish(vm_best *h, bool sorted, float *dist, int64_t *id);

/* Where a search's scored candidates go: the list it walks (L entries)
 * and, when there is one, a deeper pool of the best estimates for a
 * rerank. With a filter, the list takes only points it allows, the pool
 * (then always there: it holds the results) too, and the others go to a
 * second list, `route`, while they are nearer than the list's last: the
 * walk expands the two in turn, so it crosses points the filter refuses
 * (a graph is connected through them, not around them) yet always
 * advances among allowed ones, even when every point near the query is
 * refused (Fashion-MNIST's sneakers seen from a shirt). It ends when
 * neither has anything left worth expanding. Without a filter this is the
 * plain beam search; a filter that allows everything expands the same
 * nodes. */
typedef struct vm_sink {
    vm_list l;
    vm_best *pool;
    const nav_filter *filter;
    vm_list route;
} vm_sink;

/* The estimate a candidate must beat to be worth scoring further: to
 * enter the list or the pool. */
static inline float entry_gate(const vm_sink *k) {
    const vm_list *l = &k->l;
    float gate = l->size < l->cap ? INFINITY : l->c[l->size - 1].dist;
    if (k->pool != NULL && k->pool->thr > gate)
        gate = k->pool->thr;
    return gate;
}

/* A scored candidate enters the list, and the pool if it is good enough;
 * with a filter, one it refuses enters the route list instead, or the list
 * itself when the filter says so (it then only keeps it out of the pool,
 * where results come from). */
static inline void sink_offer(vm_sink *k, float est, uint32_t id) {
    if (k->filter == NULL || nav_filter_allows(k->filter, id)) {
        list_insert(&k->l, est, id);
        if (k->pool != NULL && est < k->pool->thr)
            vm_best_push(k->pool, est, id);
    } else if (k->l.size < k->l.cap || est < k->l.c[k->l.size - 1].dist) {
        list_insert(k->filter->route_in_list ? &k->l : &k->route, est, id);
    }
}

/* Scores `want` starting points (all of them if fewer, fewer only when
 * the nearest groups it sorted hold fewer) besides the groups' leaders,
 * and enters the best into the sink; returns how many it scored. */
size_t vm_enter_starts(const vamana *g, const void *qs, size_t want, vm_scratch *sc, vm_sink *k);

/* ---- vamana_search.c, vamana_io.c ---------------------------------------- */

rotor_status vamana_search(const nav *n, const graph_space *s, const float *query, size_t k,
                           const nav_search_params *p, int64_t *ids, float *dists);
rotor_status vamana_save(const nav *n, const graph_space *s, ixf_writer *w);
rotor_status vamana_open(const rotor_allocator *a, const nav_params *p, const graph_space *s,
                         const ixf_file *f, nav **out);
rotor_status vamana_check(const nav *n);
rotor_status vamana_own(nav *n);

/* ---- vamana_disk.c ------------------------------------------------------- */

/* Records a beam reads at once by default: DiskANN's beam width. */
enum { VM_DEFAULT_BEAM = 4 };

/* The nodes section: a record per node (its ids and full vector, from
 * s->vectors) in 4 KiB pages, with the build's budget in its header. */
rotor_status vm_nodes_save(const vamana *g, const graph_space *s, uint64_t budget, ixf_writer *w);
/* A graph on disk saved: its graph and nodes sections copied from its file. */
rotor_status vm_disk_save(const vamana *g, ixf_writer *w);
/* After the graph's sections are opened: under a budget (p's, or the
 * file's when p gives none) that cannot hold the records, reads them from
 * the nodes section from now on, with a cache of those nearest the
 * starting points; else leaves the graph in memory. */
rotor_status vm_disk_open(vamana *g, const nav_params *p, const graph_space *s, const ixf_file *f);
void vm_disk_free(vamana *g);
void vm_disk_stats(const vamana *g, const graph_space *s, nav_stats *out);
rotor_status vm_disk_search(const vamana *g, const graph_space *s, const float *query, size_t k,
                            const nav_search_params *p, int64_t *ids, float *dists);

#endif /* ROTOR_GRAPH_VAMANA_H */
