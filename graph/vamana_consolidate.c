/*
 * Delete consolidation of a Vamana graph (Singh et al., "FreshDiskANN",
 * 2021, Algorithm 4).
 *
 * A removed node stays in the graph until consolidation: searches walk
 * through it (it still joins its neighbourhoods) and the index's filter
 * keeps it out of every result. Consolidation then re-links every live
 * node p that has a removed out-neighbour: its candidates are its live
 * out-neighbours and the live out-neighbours of each removed one, and
 * RobustPrune (alpha, R: the build's) picks p's new list among them, so
 * the paths that ran through the removed nodes now run around them. The
 * removed nodes' own lists are emptied afterwards: no live node points at
 * them any more, and an empty list makes one reached anyway (the entry
 * of an old search, a sampled starting point) a dead end rather than a
 * path into other removed nodes.
 *
 * Work: a pass over every record, and a prune of each live node with a
 * removed neighbour over up to R + R^2 candidates (R distances per kept
 * neighbour, against the candidates not yet occluded); with a fraction f
 * of nodes removed, about 1 - (1 - f)^R of the live nodes are pruned.
 *
 * Threads: live nodes are split over the pool. A thread writes only the
 * records of the live nodes it prunes and reads only those records and
 * the removed nodes', which nobody writes until every prune is done: no
 * lock is needed between them. Searches may be reading meanwhile
 * (graph_space.publish): each chunk of nodes is re-linked into record
 * images (neighbour codes included), and the images are copied over the
 * records in one publication per chunk.
 *
 * The prune's candidates are a node's own neighbourhood, not the wide set
 * a build's search gathers, so it keeps fewer of them than a build would,
 * and nothing adds back the reverse edges an insert adds: round after
 * round the lists thin out and searches reach fewer of the true
 * neighbours. So the re-linked list is filled back to the length it had,
 * removed neighbours included, with the candidates the prune occluded,
 * nearest first: a re-link replaces what was removed. A list that was
 * full is filled to one short of R: a full list prunes every back edge an
 * insert brings it, and leaves the repair of an unreached node (below) no
 * room to link from without giving up an edge, which cut off other nodes
 * on unclustered 48-d data. On Fashion-MNIST (30,000 points, 8 rounds of
 * 10 % removed, consolidated at 5 %, and as many added) recall@10 at list
 * size 10 fell 0.0123 below a fresh build over the same points with the
 * plain prune, 0.0064 with lists filled back, and 0.0124 with lists
 * filled to R (with removals alone, filling to R did best: 0.0013,
 * against 0.0075 filled back and 0.0129 plain).
 *
 * Re-pruning a list can drop the last edge into a live node (nothing adds
 * the reverse edges an insert adds), which leaves it unreachable: 38 to 92
 * of 27,000 live nodes after each consolidation of a churned Fashion-MNIST
 * index, 447 of 2,500 on i.i.d. 128-d Gaussian data with R = 16. The
 * build's repair then links each such node from the nearest node a search
 * for it expands: none is left on Fashion-MNIST. Where the lists near it
 * are all full the repair gives up an edge of one, which can cut off
 * another (179 of those 2,500 stay unreached).
 *
 * Afterwards a removed node's slot is free: the index puts a later add's
 * vector there (graph_space.reused), and the insert links it like a new
 * node. Departures from the paper: the sampled starting points on removed
 * nodes move to live neighbours of theirs (DiskANN starts from one
 * medoid only). The graph of a build on decoded codes (build_space codes)
 * is re-pruned on the full vectors.
 */
#include <math.h>
#include <string.h>

#include "common/pool.h"
#include "graph/vamana.h"

enum { CONS_CHUNK = 64 };

typedef struct cons_worker {
    vm_scratch *sc;
    uint32_t *cand; /* candidate ids, slots + slots^2 */
    uint8_t *code;  /* one walking code */
    uint8_t *img;   /* CONS_CHUNK record images */
    uint32_t *target;
} cons_worker;

typedef struct cons_job {
    vamana *g;
    const graph_space *s;
    const uint64_t *deleted;
    size_t deleted_bits;
    cons_worker *w;
    int phase; /* 0: prune live nodes, 1: empty removed ones */
} cons_job;

static inline bool gone(const cons_job *j, size_t u) {
    return u < j->deleted_bits && cm_bit_get(j->deleted, u);
}

/* The image of live node u's record re-linked around its removed
 * neighbours; false (no image) when it has none. */
static bool relink(const cons_job *j, cons_worker *w, uint32_t u, uint32_t *img) {
    vamana *g = j->g;
    const uint32_t *rec = node_of(g, u);
    const uint32_t deg = rec[0];
    bool touched = false;
    for (uint32_t i = 0; i < deg && !touched; i++)
        touched = gone(j, rec[1 + i]);
    if (!touched)
        return false;
    size_t m = 0;
    for (uint32_t i = 0; i < deg; i++) {
        const uint32_t v = rec[1 + i];
        if (!gone(j, v)) {
            w->cand[m++] = v;
            continue;
        }
        const uint32_t *vrec = node_of(g, v);
        for (uint32_t t = 0; t < vrec[0]; t++)
            if (vrec[1 + t] != u && !gone(j, vrec[1 + t]))
                w->cand[m++] = vrec[1 + t];
    }
    const simd_ops *ops = simd_ops_get();
    const graph_space *s = j->s;
    vm_score_ids(s, ops, s->vectors + (size_t)u * s->dim, w->cand, m, w->sc->prune);
    memcpy(img, rec, g->node_bytes);
    const uint32_t fill = deg < g->p.degree ? deg : g->p.degree - 1;
    img[0] = vm_robust_prune_filled(g, s, ops, w->sc, u, m, g->p.alpha, fill, img + 1);
    vm_image_codes(g, s, img, 0, w->code);
    return true;
}

static void cons_chunk(void *ctx, size_t chunk, unsigned worker) {
    const cons_job *j = ctx;
    vamana *g = j->g;
    cons_worker *w = &j->w[worker];
    const size_t b = chunk * CONS_CHUNK, e = b + CONS_CHUNK < g->count ? b + CONS_CHUNK : g->count;
    size_t n = 0;
    for (size_t u = b; u < e; u++) {
        if (j->phase == 0 && !gone(j, u)) {
            if (relink(j, w, (uint32_t)u, (uint32_t *)(w->img + n * g->node_bytes)))
                w->target[n++] = (uint32_t)u;
        } else if (j->phase == 1 && gone(j, u) && node_of(g, u)[0] > 0) {
            w->target[n++] = (uint32_t)u;
        }
    }
    if (n == 0)
        return;
    graph_publish_begin(j->s);
    for (size_t i = 0; i < n; i++) {
        if (j->phase == 0)
            memcpy(node_of(g, w->target[i]), w->img + i * g->node_bytes, g->node_bytes);
        else
            node_of(g, w->target[i])[0] = 0; /* nothing to copy for an empty list */
    }
    graph_publish_end(j->s);
}

/* Starting points on removed nodes move to the first live node of their
 * lists (the nearest the prune kept), else to the entry, before the lists
 * are emptied: then nothing in the graph leads a search to a removed
 * node, and searches of a consolidated index run without a filter. The
 * sample keeps its size under churn, and a freed slot is never a start. */
static void move_removed_starts(const cons_job *j, uint8_t *code) {
    vamana *g = j->g;
    size_t first = 0;
    while (first < g->nstarts && !gone(j, g->starts[first]))
        first++;
    if (first == g->nstarts)
        return;
    graph_publish_begin(j->s);
    for (size_t i = first; i < g->nstarts; i++) {
        if (!gone(j, g->starts[i]))
            continue;
        const uint32_t *rec = node_of(g, g->starts[i]);
        uint32_t to = g->entry;
        for (uint32_t t = 0; t < rec[0]; t++) {
            if (!gone(j, rec[1 + t])) {
                to = rec[1 + t];
                break;
            }
        }
        vm_move_start(g, j->s, i, to, code);
    }
    graph_publish_end(j->s);
}

/* The live node nearest to the removed entry: the entry was the medoid,
 * so this stays near the centre; UINT32_MAX when none is live. */
static uint32_t live_entry(const cons_job *j) {
    const vamana *g = j->g;
    const graph_space *s = j->s;
    const simd_ops *ops = simd_ops_get();
    const float *x = s->vectors + (size_t)g->entry * s->dim;
    uint32_t best = UINT32_MAX;
    float best_d = INFINITY;
    for (size_t u = 0; u < g->count; u++) {
        if (gone(j, u))
            continue;
        const float d = ops->l2sq_f32(x, s->vectors + u * s->dim, s->dim);
        if (best == UINT32_MAX || d < best_d) {
            best = (uint32_t)u;
            best_d = d;
        }
    }
    return best;
}

rotor_status vamana_consolidate(nav *n, const graph_space *s, const uint64_t *deleted,
                                size_t deleted_bits, unsigned threads) {
    vamana *g = (vamana *)n;
    CM_RETURN_IF(g->disk != NULL, ROTOR_ERR_UNSUPPORTED,
                 "the graph stays on disk under this RAM budget, so it cannot be consolidated: "
                 "open the index with a budget that holds the graph");
    CM_RETURN_IF(s->vectors == NULL, ROTOR_ERR_UNSUPPORTED,
                 "consolidating a graph needs its full vectors");
    if (g->count == 0)
        return ROTOR_OK;
    /* Records of a mapped file are copied (and checked) first: the
     * mapping is read-only. */
    if (g->borrowed) {
        graph_publish_begin(s);
        rotor_status mst = vm_move_records(g, g->count);
        graph_publish_end(s);
        CM_FORWARD(mst);
    }
    const rotor_allocator *a = &g->base.alloc;
    cm_pool pool;
    CM_FORWARD(cm_pool_start(&pool, a, cm_thread_count(threads, g->count / CONS_CHUNK + 1)));
    const unsigned nt = cm_pool_threads(&pool);
    cons_job job = {.g = g, .s = s, .deleted = deleted, .deleted_bits = deleted_bits};
    job.w = cm_calloc(a, nt * sizeof *job.w, "consolidation workers");
    /* The reachability repair's, allocated with the rest before any change. */
    uint8_t *seen = cm_alloc(a, g->count, "reachability marks");
    uint32_t *stack = cm_alloc(a, g->count * sizeof *stack, "reachability stack");
    vm_worker repair = {0};
    if (g->walk_q != NULL)
        repair.code = cm_alloc(a, g->walk_q->code_bytes, "code copy");
    rotor_status st =
        job.w && seen && stack && (repair.code || !g->walk_q) ? ROTOR_OK : ROTOR_ERR_OUT_OF_MEMORY;
    if (st == ROTOR_OK)
        st = vm_scratch_get(g, s, s->count, g->p.build_list, 2 * (size_t)g->p.build_list + 64, 0,
                            &repair.sc);
    if (st == ROTOR_OK)
        st = vm_scratch_images(g, repair.sc, 1);
    if (st == ROTOR_OK)
        repair.img = repair.sc->img;
    const size_t most = (size_t)g->slots + (size_t)g->slots * g->slots;
    const size_t code_bytes = g->neighbor_codes ? g->walk_q->code_bytes : 0;
    for (unsigned t = 0; t < nt && st == ROTOR_OK; t++) {
        cons_worker *w = &job.w[t];
        st = vm_scratch_get(g, s, 1, 0, most, 0, &w->sc);
        w->cand = cm_alloc(a, most * sizeof *w->cand, "consolidation candidates");
        w->img = cm_alloc(a, CONS_CHUNK * g->node_bytes, "record images");
        w->target = cm_alloc(a, CONS_CHUNK * sizeof *w->target, "record images");
        w->code = code_bytes ? cm_alloc(a, code_bytes, "code copy") : NULL;
        if (st == ROTOR_OK &&
            (w->cand == NULL || w->img == NULL || w->target == NULL || (code_bytes && !w->code)))
            st = ROTOR_ERR_OUT_OF_MEMORY;
    }
    if (st == ROTOR_OK) {
        const size_t chunks = (g->count + CONS_CHUNK - 1) / CONS_CHUNK;
        cm_pool_run(&pool, cons_chunk, &job, chunks);
        if (gone(&job, g->entry)) {
            const uint32_t e = live_entry(&job);
            graph_publish_begin(s);
            g->entry = e != UINT32_MAX ? e : g->entry;
            graph_publish_end(s);
        }
        move_removed_starts(&job, repair.code);
        job.phase = 1;
        cm_pool_run(&pool, cons_chunk, &job, chunks);
        vm_connect_unreached(g, s, &repair, seen, stack);
    }
    for (unsigned t = 0; job.w != NULL && t < nt; t++) {
        if (job.w[t].sc != NULL)
            vm_scratch_put(g, job.w[t].sc);
        cm_free(a, job.w[t].cand);
        cm_free(a, job.w[t].img);
        cm_free(a, job.w[t].target);
        cm_free(a, job.w[t].code);
    }
    cm_free(a, job.w);
    if (repair.sc != NULL)
        vm_scratch_put(g, repair.sc);
    cm_free(a, repair.code);
    cm_free(a, seen);
    cm_free(a, stack);
    cm_pool_stop(&pool);
    return st;
}
