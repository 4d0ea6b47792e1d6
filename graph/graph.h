/*
 * graph/ — the navigators: structures that find a query's candidates among
 * a set of vectors, using the quantizers of quant/ and the kernels of
 * simd/, saved into and opened from the index file of storage/. The vectors
 * and codes themselves belong to the caller (index/): a navigator holds
 * ids, plus, where it pays, copies of codes. Private to the library.
 *
 * Every kind is one table of operations (nav_ops, like quant_ops), so
 * index/ combines a quantizer, a navigator and a vector store without
 * naming any kind; a new kind is a new nav_ops in this folder and one line
 * in nav_ops_of (nav.c), plus its sections in storage/FORMAT.md.
 *
 *   nav.c            the registry of kinds
 *   rerank.c         the scan of code stores into a top-k, the exact rerank
 *                    of candidates, exact distances: shared by every kind
 *   flat.c           every vector (or code) compared with the query
 *   ivf.c            an inverted file: k-means partitions with code lists
 *   vamana*.c        the Vamana proximity graph (DiskANN), split by phase
 *                    behind vamana.h: build, starting points, search, file
 */
#ifndef ROTOR_GRAPH_H
#define ROTOR_GRAPH_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "common/common.h"
#include "common/topk.h"
#include "quant/quant.h"
#include "simd/simd.h"
#include "storage/storage.h"

typedef struct graph_space graph_space;

/* A rerank's candidates, handed out one at a time by graph_order_next to
 * be scored exactly into `top`, best estimate first. With lower bounds of
 * their exact distances (lb), a candidate whose bound exceeds the k-th
 * exact distance `top` holds by then is skipped: that distance only falls,
 * so it could never enter, and the top k equal those of scoring them all.
 * (Strictly exceeds: one at exactly the k-th distance could still win its
 * tie by id.) */
typedef struct graph_order {
    uint32_t *ids; /* the ones handed out gather at the front */
    float *lb;     /* NULL: no bounds, every candidate is handed out */
    /* With bounds whose quantizer refines them (quant_ops.refine_bounds):
     * which are refined. lb starts as cheap bounds; one that does not
     * settle its candidate is refined before the candidate is handed out,
     * so only those near the threshold pay for it. NULL: lb is final. */
    uint8_t *fine;
    const graph_space *s;
    const void *qs;
    size_t n;
    size_t next;   /* candidates looked at */
    size_t handed; /* and handed out */
    const cm_topk *top;
    /* With bounds: how many have a bound below the k-th best estimate, the
     * likely k-th distance. Those are probably all scored, so a store on
     * disk reads the first that many at once, not a few at a time: this
     * changes what is read and when, never the results. */
    size_t likely;
} graph_order;

/* The next candidate to score, or false when none is left that could enter
 * the top k. */
bool graph_order_next(graph_order *o, uint32_t *id);
/* The j-th candidate graph_order_next handed out. */
static inline uint32_t graph_order_id(const graph_order *o, size_t j) { return o->ids[j]; }

/* Scores the candidates `order` hands out exactly against a prepared query
 * and pushes (distance, id) into `top`, asking for the next one only once
 * the previous ones are in `top` (it skips on what they showed), except
 * that the first max(top->k, order->likely) may go out at once. */
typedef rotor_status (*graph_rerank_fn)(void *ctx, const float *query, graph_order *order,
                                        cm_topk *top);

/* The vectors a navigator is built over and searched in. Borrowed for the
 * duration of a call; the caller keeps them alive and unchanged. */
struct graph_space {
    const float *vectors; /* count x dim float32, row-major; normalised for cosine */
    /* Or, instead (vectors NULL), count x dim bytes, each the value of its
     * coordinate: rows of integers 0..255 (SIFT-like and image data) held
     * in a quarter of the memory. Searches read them through
     * graph_row_distance; a build or an insert needs `vectors`. */
    const uint8_t *rows8;
    size_t count;
    size_t dim;
    rotor_metric metric;
    /* The index's codes (rotor_params.quant; NULL: full precision): what a
     * flat or IVF search scans, and what a graph refines its walk's best
     * candidates with when it walks on other codes. */
    const quant *q;
    const uint8_t *codes;
    /* The codes a graph walks on: q and codes themselves, or the walking
     * quantizer's (rotor_params.walk_quant). NULL: walk the full vectors. */
    const quant *walk_q;
    const uint8_t *walk_codes;
    /* walk_q (another than q) and q rotate alike (quant_same_rotation): a
     * search rotates its query once for both. */
    bool shared_rotation;
    /* The exact rerank when the vectors are not in memory (vectors NULL):
     * the index reads them from its store. NULL: read `vectors`. */
    graph_rerank_fn rerank;
    void *rerank_ctx;
    /* count residuals |x - x~| of q's codes (quant_ops.residual), which
     * bound its estimates' errors so a rerank can stop early. NULL: no
     * bound (a quantizer without one, an index file written before them,
     * or a search that asked to score every candidate). */
    const float *resid;
    /* NULL, or a counter the rerank adds the vectors it scored to. */
    uint32_t *reranked;
    /* NULL, or counters a search that reads its graph from disk adds its
     * reads and its seconds waiting for them to. */
    uint32_t *reads;
    double *io_seconds;
    /* An insert or consolidation beside searches: the lock the navigator
     * holds exclusively while it changes anything a search reads (records,
     * lists, the entry). NULL: nobody searches meanwhile. A search bounds
     * every id by `count` (an insert links new points before the index
     * counts them) and reads at most R ids of a record. */
    pthread_rwlock_t *publish;
    /* Points the index removed (bit u of `deleted`, u < deleted_bits): an
     * insert links nothing new to them; a build leaves them out of the
     * graph altogether (rows held out, added later as reused slots are).
     * NULL: none. */
    const uint64_t *deleted;
    size_t deleted_bits;
    /* An insert's points below the navigator's count: removed slots that a
     * consolidation left with nothing leading to them (no edge, no list),
     * now holding new vectors and codes, taken in again beside the new
     * points [count, s->count). Their bits in `deleted` are still set (the
     * index clears them when it counts the add); the insert treats them as
     * the new points they are. */
    const uint32_t *reused;
    size_t nreused;
    /* A build within a memory cap may keep its records in an unnamed file
     * in the directory of this path, mapped (the kernel writes back what
     * it needs the memory for). NULL: in memory. */
    const char *spill_beside;
};

static inline bool graph_removed(const graph_space *s, size_t u) {
    return u < s->deleted_bits && cm_bit_get(s->deleted, u);
}

static inline void graph_publish_begin(const graph_space *s) {
    if (s->publish != NULL)
        pthread_rwlock_wrlock(s->publish);
}
static inline void graph_publish_end(const graph_space *s) {
    if (s->publish != NULL)
        pthread_rwlock_unlock(s->publish);
}

/* ---- the navigator interface -------------------------------------------- */

/* Build parameters of every kind; each reads its own. */
typedef struct nav_params {
    /* Vamana */
    uint32_t degree;     /* R: most neighbours per node */
    uint32_t build_list; /* L: candidate list of the build's searches */
    float alpha;         /* RobustPrune's second-pass factor (> 1 keeps long edges) */
    bool neighbor_codes; /* copy neighbours' walking codes into each node */
    bool from_codes;     /* link on the decoded codes of q, not the full vectors */
    /* Vamana: the most bytes the graph may keep in memory; 0: all of it.
     * A build with a budget writes node pages (vm_nodes_save) an open
     * within the budget reads its records from; an open given 0 keeps the
     * budget the file was built with. */
    uint64_t ram_budget;
    bool node_codes; /* node pages carry the neighbours' walking codes */
    /* Vamana: the most bytes a build may use (vm_build_bytes); 0: no cap.
     * A build that would need more is split into shards
     * (vamana_shards.c). */
    uint64_t build_memory;
    int io_backend; /* vstore_backend of the node pages */
    int direct_io;  /* vstore_params.direct */
    /* IVF */
    uint32_t nlist; /* partitions; 0 = about 2 sqrt(n) (4 sqrt(n) for ip) */
    /* All */
    unsigned threads; /* build threads, >= 1 */
    uint64_t seed;    /* every random choice */
    rotor_progress_fn progress;
    void *progress_opaque;
} nav_params;

/* What one search read, counted when nav_search_params.work is set: the
 * measure of cost by which index/tune.c compares configurations (counts
 * repeat exactly where times on a shared machine do not). Added to, not
 * overwritten. */
typedef struct nav_work {
    uint64_t hops;     /* graph records expanded */
    uint64_t scored;   /* codes (or, walking full vectors, vectors) estimated */
    uint64_t gathered; /* of those, read one by one from scattered memory */
    uint64_t pooled;   /* entries the pool of a deep refine or rerank took */
    uint64_t refined;  /* candidates estimated again with the index's codes */
    uint64_t reranked; /* candidates scored on their full vectors */
    uint64_t probed;   /* IVF: centroids compared */
    uint64_t prepared; /* IVF with residual lists: the query prepared again, a list each */
} nav_work;

/* A search's filter as the navigators see it (index/filter.c compiles a
 * rotor_filter into one): which points may be results. The others are
 * still walked through, so a graph is crossed as it was built. */
typedef struct nav_filter nav_filter;
struct nav_filter {
    /* True for a point that may be a result; called from any number of
     * searching threads, only for points good enough to enter a result. */
    bool (*allows)(const nav_filter *f, uint32_t id);
    /* About how many points pass, of the navigator's count: how far a
     * walk or a probe must go to meet as many of them as without a
     * filter. */
    size_t passing;
    /* Points that pass, spread over them, to start a graph walk from (a
     * label's own members, as Filtered-DiskANN's per-label starting
     * points): a walk then begins among them even where they are few and
     * far from the graph's entry. */
    const uint32_t *starts;
    size_t nstarts;
    /* Few points are refused and they lie anywhere (removed points waiting
     * for a consolidation): a graph walk keeps them in its list like any
     * other, as FreshDiskANN walks its deleted nodes, and only its results
     * skip them. Costs what an unfiltered walk costs; a route list beside
     * the list would expand each refused point on top of L allowed ones. */
    bool route_in_list;
};

static inline bool nav_filter_allows(const nav_filter *f, uint32_t id) { return f->allows(f, id); }

/* The defaults of nav_search_params.list (vamana) and .nprobe (IVF). */
enum { NAV_DEFAULT_LIST = 64, NAV_DEFAULT_NPROBE = 16 };

/* Search parameters; 0 asks for the kind's default, except rerank. */
typedef struct nav_search_params {
    size_t list;      /* vamana: candidate list, >= k */
    size_t refine;    /* vamana walking other codes: candidates estimated again with q */
    size_t rerank;    /* candidates scored exactly; 0: return the estimates */
    size_t starts;    /* vamana: sampled starting points scored first */
    size_t neighbors; /* vamana: the first this many of each node's list read; 0: all */
    size_t nprobe;    /* IVF: partitions scanned */
    /* NULL, or a point the search treats as absent: a query taken from the
     * index is searched as if it had been held out of it, which is how a
     * calibration measures recall on the index's own rows. */
    const uint32_t *skip;
    const nav_filter *filter; /* NULL: every point may be a result */
    /* NULL, or set true when a filtered search ran out of its budget of
     * refused points before meeting allowed ones (the query's neighbourhood
     * is refused): its answer may miss allowed points, and the caller
     * should scan them instead. */
    bool *filter_gave_up;
    nav_work *work; /* NULL, or counts added to */
    /* For the index's rerank (index/search.c): score every candidate,
     * ignoring the residuals' bound (rotor_search_params.rerank_all); and
     * reads in flight after the first, with vectors on disk (0: default). */
    bool rerank_all;
    unsigned rerank_window;
    /* A graph on disk: record reads in flight, 0: default. */
    unsigned beam;
    /* NULL, or where a graph in memory walking the index's own codes
     * leaves the candidates it hands to the rerank, best estimate first
     * (at most `rerank`), and *nwalked their count: a calibration reranks
     * them at several depths from one walk. Others leave *nwalked as it
     * was. */
    uint32_t *walked;
    size_t *nwalked;
} nav_search_params;

/* What a navigator holds, for rotor_index_stats. */
typedef struct nav_stats {
    size_t bytes_ids;   /* adjacency, list ids, centroids */
    size_t bytes_codes; /* copies of codes it keeps beside them */
    uint32_t degree;    /* graphs: most neighbours per node */
    size_t start_points, start_groups;
    uint32_t partitions; /* IVF: lists */
    /* A graph on disk: records read from it, and those kept in memory;
     * disk_codes: the records hold the walking codes, RAM none. */
    size_t disk_nodes, cached_nodes;
    bool disk_codes;
    size_t build_shards; /* a graph built in shards: how many; else 0 */
} nav_stats;

typedef struct nav nav;

typedef struct nav_ops {
    rotor_index_kind kind;
    const char *name;
    /* An empty navigator over the shape of `s` (dimensions, metric,
     * quantizers; no points yet). */
    rotor_status (*create)(const rotor_allocator *a, const nav_params *p, const graph_space *s,
                           nav **out);
    /* Takes in points [count, s->count) of `s` and s->reused: on an empty
     * navigator this is the build. Memory is reserved before any structure changes, so a
     * failure leaves the navigator as it was; a cancellation through the
     * progress callback (build only) leaves it unusable. */
    rotor_status (*insert)(nav *n, const graph_space *s);
    /* The k nearest of a prepared query (normalised for cosine), from any
     * number of threads at once. */
    rotor_status (*search)(const nav *n, const graph_space *s, const float *query, size_t k,
                           const nav_search_params *p, int64_t *ids, float *dists);
    /* nq queries at once on the calling thread, where a kind can share work
     * between them. NULL, or ROTOR_ERR_UNSUPPORTED returned before anything
     * is written (nothing to share for this space): the caller searches
     * one query at a time. */
    rotor_status (*search_batch)(const nav *n, const graph_space *s, const float *queries,
                                 size_t nq, size_t k, const nav_search_params *p, int64_t *ids,
                                 float *dists);
    void (*stats)(const nav *n, const graph_space *s, nav_stats *out);
    /* Its sections of the index file (storage/FORMAT.md); NULL: none. */
    rotor_status (*save)(const nav *n, const graph_space *s, ixf_writer *w);
    /* A navigator over `s` from the sections of `f`, borrowing the large
     * ones from the mapping (copied, and checked, by the first insert or
     * by own); it asks the kernel to read ahead the sections its searches
     * will read. */
    rotor_status (*open)(const rotor_allocator *a, const nav_params *p, const graph_space *s,
                         const ixf_file *f, nav **out);
    /* Reads every id it holds: each inside the index (verify). */
    rotor_status (*check)(const nav *n);
    /* Copies what it borrows from a mapped file into memory of its own,
     * checking it as an insert would (rotor_open_params.load). */
    rotor_status (*own)(nav *n);
    void (*free)(nav *n);
    /* A navigator over the same points and links as `src`, laid out for the
     * codes of `s` (another walking quantizer, neighbour codes or not),
     * without linking anything again: how the automatic configuration
     * tries several codes on one sample graph. NULL: not offered. */
    rotor_status (*derive)(const nav *src, const rotor_allocator *a, const nav_params *p,
                           const graph_space *s, nav **out);
    /* Repairs the navigator around removed points: bit u of deleted (for
     * u < deleted_bits) set means point u is gone. Afterwards no structure
     * leads to a removed point (a graph's live nodes are re-linked around
     * them, an IVF list drops them), so searches no longer spend work on
     * them; searches still refuse them by their filter either way. Reads
     * s->vectors (which must be set). Everything is allocated before
     * anything changes: on failure the navigator is as it was. `threads`
     * as nav_params.threads. NULL: nothing to repair (flat). */
    rotor_status (*consolidate)(nav *n, const graph_space *s, const uint64_t *deleted,
                                size_t deleted_bits, unsigned threads);
    /* True when, once consolidated, a search meets no removed point at all
     * while one point is live (IVF: they are in no list; a graph: no edge,
     * entry or starting point leads to them), so it needs no filter for
     * them. */
    bool consolidated_drops_removed;
} nav_ops;

/* The head of every navigator: each kind's struct starts with it. */
struct nav {
    const nav_ops *ops;
    rotor_allocator alloc;
};

/* The navigator of an index kind (nav.c); NULL for an unknown kind. */
const nav_ops *nav_ops_of(rotor_index_kind kind);

extern const nav_ops flat_nav_ops;
extern const nav_ops vamana_nav_ops;
extern const nav_ops ivf_nav_ops;
/* The lists an IVF of `count` rows trains when none are asked for: about
 * 2 sqrt(count) with residual lists (metric other than inner product),
 * 4 sqrt(count) otherwise. */
uint32_t ivf_default_lists(size_t count, rotor_metric metric);

/* ---- ordered keys (rerank.c) ---------------------------------------------
 *
 * The pools of passing estimates (graph_scan's, the graph walk's vm_best)
 * hold an (estimate, id) entry as one integer: the estimate's bits made
 * order-preserving (negatives flipped, -0 taken as +0, as a float compare
 * has them) above the id, so a comparison is one integer compare and keys
 * order as cm_topk orders (estimate, id). */
static inline uint64_t graph_key(float d, uint32_t id) {
    d += 0.0f;
    uint32_t b;
    memcpy(&b, &d, sizeof b);
    b = b & 0x80000000u ? ~b : b | 0x80000000u;
    return (uint64_t)b << 32 | id;
}

static inline float graph_key_dist(uint64_t key) {
    uint32_t b = (uint32_t)(key >> 32);
    b = b & 0x80000000u ? b & 0x7fffffffu : ~b;
    float d;
    memcpy(&d, &b, sizeof d);
    return d;
}

/* The m least of key[0..n) moved to key[0..m), in no order. */
void graph_select_keys(uint64_t *key, size_t n, size_t m);
/* key[0..n) in ascending order. */
void graph_sort_keys(uint64_t *key, size_t n);

/* ---- Vamana inspection (vamana.c), for tests and tools ------------------- */

size_t vamana_count(const nav *g);
uint32_t vamana_entry(const nav *g);
uint32_t vamana_max_degree(const nav *g);
/* The sampled starting points and their groups: returns the number of
 * groups; group i is (*ids)[(*off)[i] .. (*off)[i + 1]), its leader first
 * (no groups: *off is NULL and *ids holds *nstarts points). */
size_t vamana_start_groups(const nav *g, const uint32_t **ids, size_t *nstarts,
                           const uint32_t **off);
/* Out-degree of `node`; *nbrs points at its neighbour ids. */
uint32_t vamana_neighbors(const nav *g, size_t node, const uint32_t **nbrs);

/* ---- Vamana build memory (vamana_shards.c), for index/ ------------------ */

/* Refuses, naming the least it would take, a p->build_memory that cannot
 * hold a build in shards of n points of dim dimensions even before any
 * codes are counted (records_in_file: the build keeps its records in a
 * file): checked before a build starts its work (vamana_shards.c). */
rotor_status vamana_check_build_memory(const nav_params *p, size_t n, size_t dim,
                                       bool records_in_file);

/* ---- scan, top-k and rerank (rerank.c): every kind's last steps ---------- */

/* Starts loading the cache lines of [p, p + bytes) for reading. */
static inline void prefetch_bytes(const void *p, size_t bytes) {
    /* Every line the bytes touch: from p's line, not from p (112 bytes
     * from the middle of a line touch three). */
    const uintptr_t first = (uintptr_t)p & ~(uintptr_t)63, end = (uintptr_t)p + bytes;
    for (uintptr_t line = first; line < end; line += 64)
        __builtin_prefetch((const void *)line, 0, 3);
}

/* Exact distance of a prepared query to the vector at x. Inline, with the
 * kernel table fetched once by the caller: at 100 dimensions a distance
 * costs about 80 instructions, and a call plus a table lookup per distance
 * measured a sixth of that again. */
static inline float graph_distance(const simd_ops *ops, rotor_metric m, const float *q,
                                   const float *x, size_t dim) {
    if (m == ROTOR_METRIC_L2)
        return ops->l2sq_f32(q, x, dim);
    return cm_ip_distance(m, ops->dot_f32(q, x, dim), 0, 0);
}
/* The exact distance of q to vector `id` of s, from its floats or bytes. */
static inline float graph_row_distance(const simd_ops *ops, const graph_space *s, const float *q,
                                       size_t id) {
    if (s->rows8 == NULL)
        return graph_distance(ops, s->metric, q, s->vectors + id * s->dim, s->dim);
    const uint8_t *x = s->rows8 + id * s->dim;
    if (s->metric == ROTOR_METRIC_L2)
        return ops->l2sq_f32_u8(q, x, s->dim);
    return cm_ip_distance(s->metric, ops->dot_f32_u8(q, x, s->dim), 0, 0);
}
/* Where vector `id` of s starts, and its size in bytes. */
static inline const void *graph_row(const graph_space *s, size_t id) {
    return s->rows8 != NULL ? (const void *)(s->rows8 + id * s->dim)
                            : (const void *)(s->vectors + id * s->dim);
}
static inline size_t graph_row_bytes(const graph_space *s) {
    return s->rows8 != NULL ? s->dim : s->dim * sizeof(float);
}
/* The same as graph_row_distance, with the kernels of this machine. */
float graph_exact_distance(const graph_space *s, const float *q, size_t id);
/* The candidates of an exact rerank: ids best estimate first, and their
 * estimates by s->q with the prepared query qs. The rerank reorders ids and
 * overwrites est (with lower bounds) and fine. qs NULL: no estimates to
 * bound. */
typedef struct graph_cands {
    uint32_t *ids;
    float *est;
    uint8_t *fine; /* n bytes of scratch */
    size_t n;
    const void *qs;
    size_t scored; /* set by the rerank: how many it scored */
} graph_cands;

/* The exact rerank of candidates into `top`, from s->vectors or through
 * s->rerank: best estimate first, skipping those that provably cannot
 * enter when q bounds its estimates and s->resid is set; else all. */
rotor_status graph_rerank(const graph_space *s, const float *query, graph_cands *c, cm_topk *top);

/* GRAPH_SCAN_GATHER: the window graph_scan_ids scores at once in a blocked
 * layout, a multiple of every fast-scan block (32 codes). */
enum { GRAPH_SCAN_BLOCK = 512, GRAPH_SCAN_GATHER = 32 };

/* A scan of code stores by one quantizer: the query prepared once, codes
 * scored a block at a time, the best estimates kept (`rerank` of them, or k
 * when there is no rerank), then reranked exactly best first. Flat scans
 * one store, IVF a store per probed list. */
typedef struct graph_scan {
    const rotor_allocator *a;
    const quant *q;
    void *qstate;
    float *scratch; /* q's scratch_floats, for prepare */
    float scale;    /* estimates are multiplied by it (1: as scanned) */
    float *block;   /* GRAPH_SCAN_BLOCK estimates */
    void *extra;    /* the caller's bytes, asked for at begin */
    cm_topk top;    /* the best estimates, once the scan ends */
    /* Estimates below `bar` gather here unsorted until it is full, then
     * the best top.k of them stay and bar falls to the worst kept: a code
     * that passes costs an append, not a heap update. */
    uint64_t *pool; /* (estimate, id) as one ordered key each */
    size_t pooled, pool_cap;
    float bar;
    uint32_t *cand;           /* their ids, best first, for the rerank */
    uint8_t *fine;            /* the rerank's scratch flags */
    size_t k, rerank;         /* rerank 0: `top` writes the caller's results directly */
    size_t skip;              /* nav_search_params.skip, SIZE_MAX for none */
    const nav_filter *filter; /* nav_search_params.filter */
    nav_work *work;           /* NULL, or counts added to */
    int64_t *ids;
    float *dists;
    uint8_t *mem;
} graph_scan;

/* Prepares the query for q (query NULL: not yet, see graph_scan_prepare)
 * and sets up the top-k into ids/dists (k each), keeping p->rerank
 * estimates for the rerank; `extra_bytes` (aligned to CM_ALIGN) come with
 * it for the caller. */
rotor_status graph_scan_begin(graph_scan *sc, const rotor_allocator *a, const quant *q,
                              const float *query, size_t k, const nav_search_params *p,
                              size_t extra_bytes, int64_t *ids, float *dists);
/* Prepares `query` for the scan's quantizer, in place of what was: the
 * stores scored next are scored against it. */
void graph_scan_prepare(graph_scan *sc, const float *query);
/* Scores codes [first, first + n) of `store`; their ids are ids[i] (ids
 * NULL: first + i); an id at or past `bound` (an unverified file) is
 * skipped. */
void graph_scan_store(graph_scan *sc, const uint8_t *store, size_t first, size_t n,
                      const uint32_t *ids, size_t bound);
/* Scores the codes of points ids[0..n) of `store` (the index's store of
 * all `count` points, in any layout): the scan of a list of points, such
 * as those a filter allows, which the caller has already filtered. In a
 * blocked layout, ascending ids cost one block scan per block touched. */
void graph_scan_ids(graph_scan *sc, const uint8_t *store, size_t count, const uint32_t *ids,
                    size_t n);
/* The exact distances of points ids[0..n) of s->vectors into top. */
void graph_exact_ids(const graph_space *s, const float *query, const uint32_t *ids, size_t n,
                     cm_topk *top);
/* Reranks the kept estimates on the full vectors (when asked to), writes
 * the results and releases the scan. */
rotor_status graph_scan_end(graph_scan *sc, const graph_space *s, const float *query);

#endif /* ROTOR_GRAPH_H */
