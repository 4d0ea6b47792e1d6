/*
 * Building a Vamana graph: insertion of points by greedy search and
 * RobustPrune.
 *
 * Every point is inserted by a greedy search for itself from the entry
 * point (the medoid) and its current neighbours with a candidate list of
 * L, then RobustPrune picks at most R out-neighbours among them and the
 * nodes the search expanded: the nearest candidate p* is kept and every
 * candidate p' with alpha * d(p*, p') <= d(p, p') is dropped, since p*
 * already leads there. Each kept neighbour gets the reverse edge; a list
 * may grow 30 % past R before it is pruned back, and a last pass trims
 * every list to R. Two passes: alpha = 1 with the full list links each
 * point to its near neighbours; the second, alpha > 1 with four fifths of
 * the list, adds the longer edges that make searches converge in few
 * hops. Both passes take the points cluster by cluster, so that
 * consecutive searches find what they read still in cache. A node no
 * search can reach (pruning can orphan one) is then linked in. Distances
 * at build are squared L2 on the stored vectors for every metric (cosine
 * vectors are normalised, so the order is the same; inner-product indexes
 * get a Euclidean graph that the search then walks by inner product); a
 * build's searches and prunes estimate them on an 8-bit copy of the
 * vectors (build_codes_make).
 *
 * Threads insert different points at once, on one pool (common/pool.h). A
 * node's record is only read or written under its own spin lock (one byte
 * per node), held for a copy or a prune of that one node, never two at a
 * time, so there is no lock order to get wrong. One thread inserts in the
 * seeded order and builds the same graph every time; more threads
 * interleave and may not.
 */
#include <math.h>
#include <string.h>

#include "common/pool.h"
#include "graph/vamana.h"
#include "quant/kmeans.h"

/* The second pass's list: four fifths of the first's, at least the
 * degree (see the pass loop in insert_points). */
static size_t second_pass_list(size_t list, size_t degree) {
    const size_t l = list * 4 / 5;
    return l > degree ? l : degree < list ? degree : list;
}

/* Points a cluster of a build's insertion order holds, and the most
 * clusters (each point's nearest centroid costs k distances). */
enum { ORDER_CLUSTER_POINTS = 1024, ORDER_MAX_CLUSTERS = 256 };

/* Where in a worker's bqmem the build search gathers a node's neighbours'
 * codes: after build_q's query state and scratch. */
static size_t build_gather_offset(const quant *bq) {
    return cm_round_up(cm_round_up(bq->query_bytes, CM_ALIGN) + bq->scratch_floats * sizeof(float),
                       CM_ALIGN);
}

/* Scores the nodes of ids[0..n) not visited yet (marking them) and
 * offers them to the build search's list l; ids may be sc->nbrs, where
 * they are gathered. */
static void score_unvisited(const vamana *g, const graph_space *s, const simd_ops *ops,
                            vm_scratch *sc, vm_list *l, const float *x, const uint32_t *ids,
                            size_t n) {
    const size_t d = s->dim;
    const size_t m = visit_all(sc, ids, n, sc->nbrs);
    const quant *bq = g->build_q;
    if (bq != NULL) {
        /* Gathered, then scored in one scan: a scan a code spent more on
         * its call and its scalar tail than on the code (callgrind, 15,000
         * 100-d word vectors: 45 % of a build's instructions in one-code
         * scans, about 190 a code). */
        const size_t cb = bq->code_bytes;
        uint8_t *gather = sc->bqmem + build_gather_offset(bq);
        for (size_t j = 0; j < m; j++)
            prefetch_bytes(g->build_codes + (size_t)sc->nbrs[j] * g->build_stride, cb);
        for (size_t j = 0; j < m; j++)
            vm_copy_code(gather + j * cb, g->build_codes + (size_t)sc->nbrs[j] * g->build_stride,
                         cb);
        if (m > 0)
            bq->ops->scan(bq, sc->bqmem, gather, 0, m, sc->est);
        for (size_t j = 0; j < m; j++)
            list_insert(l, sc->est[j], sc->nbrs[j]);
        return;
    }
    /* Every unvisited node's first lines start loading at once, and the
     * one after next in full, so the misses overlap. */
    for (size_t j = 0; j < m; j++)
        prefetch_bytes(s->vectors + (size_t)sc->nbrs[j] * d, d * 4 < 128 ? d * 4 : 128);
    for (size_t j = 0; j < m; j++) {
        if (j + 2 < m)
            prefetch_bytes(s->vectors + (size_t)sc->nbrs[j + 2] * d, d * 4);
        float dist = ops->l2sq_f32(x, s->vectors + (size_t)sc->nbrs[j] * d, d);
        list_insert(l, dist, sc->nbrs[j]);
    }
}

void vm_build_search(const vamana *g, const graph_space *s, const simd_ops *ops, vm_scratch *sc,
                     const float *x, size_t list, const uint32_t *seeds, size_t nseeds) {
    const size_t d = s->dim;
    vm_list l = {sc->list, sc->expanded, 0, list, 0};
    visited_reset(sc);
    sc->pool_size = 0;
    visit(sc, g->entry);
    const quant *bq = g->build_q;
    float e0;
    if (bq != NULL) {
        bq->ops->prepare(bq, x, sc->bqmem,
                         (float *)(sc->bqmem + cm_round_up(bq->query_bytes, CM_ALIGN)));
        bq->ops->scan(bq, sc->bqmem, g->build_codes + (size_t)g->entry * g->build_stride, 0, 1,
                      &e0);
    } else {
        e0 = ops->l2sq_f32(x, s->vectors + (size_t)g->entry * d, d);
    }
    list_insert(&l, e0, g->entry);
    /* The seeds are scored as an expansion's neighbours are. */
    score_unvisited(g, s, ops, sc, &l, x, seeds, nseeds);
    size_t i;
    while ((i = list_next(&l)) < l.size) {
        l.expanded[i] = 1;
        vm_cand u = l.c[i];
        /* The likely next record loads while this one's neighbours are
         * scored, as in the search: waiting on records was a sixth of a
         * build's time (perf, 100-d word vectors). */
        for (size_t j = i + 1; j < l.size; j++) {
            if (!l.expanded[j]) {
                prefetch_bytes(node_of(g, l.c[j].id), (g->slots + 1) * sizeof(uint32_t));
                break;
            }
        }
        if (sc->pool_size < sc->pool_cap - g->slots - 1)
            sc->pool[sc->pool_size++] = u;
        vm_node_lock(g, u.id);
        const uint32_t *rec = node_of(g, u.id);
        uint32_t deg = rec[0];
        memcpy(sc->nbrs, rec + 1, deg * sizeof(uint32_t));
        vm_node_unlock(g, u.id);
        score_unvisited(g, s, ops, sc, &l, x, sc->nbrs, deg);
    }
}

/* Squared L2 between points a and b for a prune: on the build's 8-bit
 * copies while they exist (each copy's decoded norm follows its code,
 * build_codes_make), on the float rows otherwise (an add, a
 * consolidation). Exact float distances had been a fifth of a build
 * (perf, Fashion-MNIST), spent on comparisons with a 20 % margin; the
 * copies' decoded vectors are within a rounding of them, and the graphs
 * searched the same (recall within 0.001 at every list on Fashion-MNIST,
 * 100-d word vectors and a 768-d set). */
static inline float pair_l2(const vamana *g, const graph_space *s, const simd_ops *ops, uint32_t a,
                            uint32_t b) {
    if (g->build_q == NULL)
        return ops->l2sq_f32(s->vectors + (size_t)a * s->dim, s->vectors + (size_t)b * s->dim,
                             s->dim);
    const uint8_t *ca = g->build_codes + (size_t)a * g->build_stride;
    const uint8_t *cb = g->build_codes + (size_t)b * g->build_stride;
    const size_t at = g->build_q->code_bytes;
    float na, nb;
    memcpy(&na, ca + at, sizeof na);
    memcpy(&nb, cb + at, sizeof nb);
    return quant_sq8_l2(g->build_q, ca, na, cb, nb);
}

/* Sorts by (distance, id) in place, as graph keys (one integer compare
 * each, the same order) by the pools' branch-free quicksort: the
 * heapsort it replaced, branching on every comparison, was 8 % of a
 * one-thread build (perf, 100-d word vectors), and the graphs are the
 * same. keys holds n (the scratch's: a prune allocates nothing, and
 * cannot fail halfway through a build). */
static void sort_cands(vm_cand *c, size_t n, uint64_t *keys) {
    for (size_t i = 0; i < n; i++)
        keys[i] = graph_key(c[i].dist, c[i].id);
    graph_sort_keys(keys, n);
    for (size_t i = 0; i < n; i++)
        c[i] = (vm_cand){graph_key_dist(keys[i]), (uint32_t)keys[i]};
}

/* Marks gone the candidates after c[i] not gone yet that c[i] occludes
 * (alpha d(c[i], c[j]) <= d(p, c[j])). On the 8-bit copies their
 * distances to c[i] are taken in one call: a call per pair (the call, the
 * copies' heads, a horizontal sum each) had been a fifth of a build's
 * instructions (callgrind, 20,000 100-d word vectors). The sorted keys'
 * memory holds the candidates' ids, then their distances (m of each). */
static void occlude(const vamana *g, const graph_space *s, const simd_ops *ops, vm_scratch *sc,
                    const vm_cand *c, size_t i, size_t m, float alpha) {
    if (g->build_q == NULL) {
        for (size_t j = i + 1; j < m; j++)
            if (!sc->gone[j] && alpha * pair_l2(g, s, ops, c[i].id, c[j].id) <= c[j].dist)
                sc->gone[j] = 1;
        return;
    }
    uint32_t *ids = (uint32_t *)sc->prune_keys;
    float *dist = (float *)(ids + m);
    size_t n = 0;
    for (size_t j = i + 1; j < m; j++) {
        ids[n] = c[j].id;
        n += !sc->gone[j];
    }
    const uint8_t *a = g->build_codes + (size_t)c[i].id * g->build_stride;
    float norm2;
    memcpy(&norm2, a + g->build_q->code_bytes, sizeof norm2);
    quant_sq8_l2_ids(g->build_q, a, norm2, g->build_codes, g->build_stride, ids, n,
                     sc->bqmem + build_gather_offset(g->build_q), dist);
    /* Without a branch on whether c[j] is gone (a coin toss the predictor
     * lost: the loop's branch had been a third of prune's time, perf); a
     * gone one reads the next distance, or the spare past the last. */
    dist[n] = INFINITY;
    size_t t = 0;
    for (size_t j = i + 1; j < m; j++) {
        const uint8_t live = !sc->gone[j];
        sc->gone[j] |= live & (alpha * dist[t] <= c[j].dist);
        t += live;
    }
}

/* RobustPrune, then the occluded candidates nearest p after the kept ones
 * up to `fill` ids. */
static uint32_t prune(const vamana *g, const graph_space *s, const simd_ops *ops, vm_scratch *sc,
                      uint32_t p, size_t n, float alpha, uint32_t fill, uint32_t *out) {
    vm_cand *c = sc->prune;
    sort_cands(c, n, sc->prune_keys);
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
        occlude(g, s, ops, sc, c, i, m, alpha);
    }
    /* Below R, the loop above saw every candidate: the occluded ones are
     * exactly those marked, nearest first. */
    if (fill > g->p.degree)
        fill = g->p.degree;
    for (size_t i = 0; i < m && kept < fill; i++)
        if (sc->gone[i])
            out[kept++] = c[i].id;
    return kept;
}

uint32_t vm_robust_prune(const vamana *g, const graph_space *s, const simd_ops *ops, vm_scratch *sc,
                         uint32_t p, size_t n, float alpha, uint32_t *out) {
    return prune(g, s, ops, sc, p, n, alpha, 0, out);
}

uint32_t vm_robust_prune_filled(const vamana *g, const graph_space *s, const simd_ops *ops,
                                vm_scratch *sc, uint32_t p, size_t n, float alpha, uint32_t fill,
                                uint32_t *out) {
    return prune(g, s, ops, sc, p, n, alpha, fill, out);
}

/* out[j] = (squared L2 from x to ids[j], ids[j]): prune candidates. */
void vm_score_ids(const graph_space *s, const simd_ops *ops, const float *x, const uint32_t *ids,
                  size_t n, vm_cand *out) {
    for (size_t j = 0; j < n; j++)
        out[j] = (vm_cand){ops->l2sq_f32(x, s->vectors + (size_t)ids[j] * s->dim, s->dim), ids[j]};
}

/* out[j] = (pair_l2 from point u to ids[j], ids[j]): prune candidates. */
static void score_build(const vamana *g, const graph_space *s, const simd_ops *ops, uint32_t u,
                        const uint32_t *ids, size_t n, vm_cand *out) {
    for (size_t j = 0; j < n; j++)
        out[j] = (vm_cand){pair_l2(g, s, ops, u, ids[j]), ids[j]};
}

/* Adds the edge u -> p, pruning u's list when it is full. */
static void add_back_edge(vamana *g, const graph_space *s, const simd_ops *ops, vm_scratch *sc,
                          uint32_t u, uint32_t p, float alpha) {
    vm_node_lock(g, u);
    uint32_t *rec = node_of(g, u);
    uint32_t deg = rec[0];
    for (uint32_t j = 0; j < deg; j++) {
        if (rec[1 + j] == p) {
            vm_node_unlock(g, u);
            return;
        }
    }
    if (deg < g->slots) {
        rec[1 + deg] = p;
        rec[0] = deg + 1;
    } else {
        score_build(g, s, ops, u, rec + 1, deg, sc->prune);
        score_build(g, s, ops, u, &p, 1, sc->prune + deg);
        rec[0] = vm_robust_prune(g, s, ops, sc, u, (size_t)deg + 1, alpha, rec + 1);
    }
    g->dirty[u] = 1;
    vm_node_unlock(g, u);
}

/* Ids of the list rec now holds that were not in seen[0..nseen) nor are in
 * out[0..kept), added to out while it has fewer than `room`: the back
 * edges other threads gave a node while its own insertion pruned the list
 * it had read. Returns the new count. */
static uint32_t keep_new_edges(const uint32_t *rec, const uint32_t *seen, uint32_t nseen,
                               uint32_t *out, uint32_t kept, uint32_t room) {
    if (rec[0] == nseen && memcmp(rec + 1, seen, nseen * sizeof *seen) == 0)
        return kept;
    for (uint32_t j = 0; j < rec[0] && kept < room; j++) {
        const uint32_t v = rec[1 + j];
        bool known = false;
        for (uint32_t i = 0; i < nseen && !known; i++)
            known = seen[i] == v;
        for (uint32_t i = 0; i < kept && !known; i++)
            known = out[i] == v;
        if (!known)
            out[kept++] = v;
    }
    return kept;
}

static void insert_point(vamana *g, const graph_space *s, const simd_ops *ops, vm_scratch *sc,
                         uint32_t p, float alpha, size_t list) {
    const size_t d = s->dim;
    const float *x = s->vectors + (size_t)p * d;
    /* p's current neighbours (the first pass's, and back edges) seed its
     * search, which then skips the walk down from the entry: the graphs
     * searched the same (recall within 0.0003 at every list, 100-d word
     * vectors) and a one-thread build of them took 6-10 % less. The prune
     * reconsiders them too. */
    vm_node_lock(g, p);
    uint32_t *rec = node_of(g, p);
    uint32_t deg = rec[0];
    memcpy(sc->seen, rec + 1, deg * sizeof(uint32_t));
    vm_node_unlock(g, p);
    vm_build_search(g, s, ops, sc, x, list, sc->seen, deg);
    const size_t n = sc->pool_size;
    memcpy(sc->prune, sc->pool, n * sizeof *sc->pool);
    score_build(g, s, ops, p, sc->seen, deg, sc->prune + n);
    uint32_t *chosen = sc->nbrs;
    const uint32_t kept = vm_robust_prune(g, s, ops, sc, p, n + deg, alpha, chosen);
    vm_node_lock(g, p);
    /* Other threads may have linked p to their points meanwhile (back
     * edges): writing the pruned list alone lost them (with two threads,
     * one or two edges a build of 12,000 points; more with more threads).
     * The slack holds them; the trim prunes what grew past R. */
    const uint32_t all = keep_new_edges(rec, sc->seen, deg, chosen, kept, g->slots);
    memcpy(rec + 1, chosen, all * sizeof(uint32_t));
    rec[0] = all;
    g->dirty[p] = 1;
    vm_node_unlock(g, p);
    /* chosen lives in sc->nbrs, which the back edges do not touch. */
    for (uint32_t j = 0; j < kept; j++)
        add_back_edge(g, s, ops, sc, chosen[j], p, alpha);
}

/* Marks in `seen` every node reachable from the entry. */
static void mark_reachable(const vamana *g, uint8_t *seen, uint32_t *stack) {
    memset(seen, 0, g->count);
    size_t top = 0;
    seen[g->entry] = 1;
    stack[top++] = g->entry;
    while (top > 0) {
        const uint32_t *rec = node_of(g, stack[--top]);
        for (uint32_t j = 0; j < rec[0]; j++) {
            uint32_t v = rec[1 + j];
            if (!seen[v]) {
                seen[v] = 1;
                stack[top++] = v;
            }
        }
    }
}

/* The slot of full record rec that a new edge takes: the farthest
 * neighbour that another edge still leads to (indeg counts them), so the
 * link does not orphan the node it drops; the last slot if every
 * neighbour has only this edge. */
static uint32_t slot_to_give(const vamana *g, const uint32_t *rec, const uint32_t *indeg) {
    for (uint32_t j = g->p.degree; j-- > 0;)
        if (indeg[rec[1 + j]] > 1)
            return j;
    return g->p.degree - 1;
}

/* Pruning can leave a node with no in-edge from the rest of the graph,
 * which no search would ever reach. Each such node is linked from the
 * nearest live node a search for it expands (all reachable), preferring
 * one with a free slot; a full one gives up its farthest edge among those
 * whose target another edge reaches, and the check repeats until every
 * live node is reached. Giving up the farthest edge alone orphaned its
 * target often enough in a graph of degree 6 that eight rounds left one
 * node of 3,000 unreached. Removed nodes are left alone: a consolidation
 * emptied or will empty them, and nothing should lead to them. */
void vm_connect_unreached(vamana *g, const graph_space *s, vm_worker *w, uint8_t *seen,
                          uint32_t *stack) {
    const simd_ops *ops = simd_ops_get();
    vm_scratch *sc = w->sc;
    for (unsigned round = 0; round < 8; round++) {
        mark_reachable(g, seen, stack);
        /* The marking is done with the stack: it counts in-edges now. */
        uint32_t *indeg = stack;
        memset(indeg, 0, g->count * sizeof *indeg);
        for (size_t u = 0; u < g->count; u++) {
            const uint32_t *rec = node_of(g, u);
            for (uint32_t j = 0; j < rec[0]; j++)
                indeg[rec[1 + j]]++;
        }
        bool all = true;
        for (size_t u = 0; u < g->count; u++) {
            if (seen[u] || graph_removed(s, u))
                continue;
            all = false;
            vm_build_search(g, s, ops, sc, s->vectors + u * s->dim, g->p.build_list, NULL, 0);
            sort_cands(sc->pool, sc->pool_size, sc->prune_keys);
            size_t pick = 0;
            for (size_t j = 0; j < sc->pool_size; j++) {
                const uint32_t v = sc->pool[j].id;
                if (v != u && !graph_removed(s, v) && node_of(g, v)[0] < g->p.degree) {
                    pick = j;
                    break;
                }
            }
            uint32_t v = sc->pool[pick].id;
            if (v == u || graph_removed(s, v))
                continue;
            const uint32_t *rv = node_of(g, v);
            const uint32_t slot = rv[0] < g->p.degree ? rv[0] : slot_to_give(g, rv, indeg);
            const uint32_t dropped = slot < rv[0] ? rv[1 + slot] : UINT32_MAX;
            if (vm_link(g, s, v, (uint32_t)u, slot, w->img, w->code)) {
                if (dropped != UINT32_MAX)
                    indeg[dropped]--;
                indeg[u]++;
            }
            seen[u] = 1;
        }
        if (all)
            break;
    }
}

/* Copies the codes of a node's neighbours into its record. */
void vm_refresh_codes(vamana *g, const graph_space *s, size_t u, uint8_t *code) {
    const quant *walk = g->walk_q;
    uint32_t *rec = node_of(g, u);
    uint8_t *block = (uint8_t *)rec + g->block_off;
    for (uint32_t j = 0; j < rec[0]; j++)
        quant_copy(walk, block, j, s->walk_codes, rec[1 + j], code);
    g->dirty[u] = 0;
}

enum { PHASE_INSERT, PHASE_TRIM, PHASE_CODES, PHASE_ENCODE };

/* Prunes a list longer than R (grown into the slack) back to R. */
static void trim_node(vamana *g, const graph_space *s, const simd_ops *ops, vm_scratch *sc,
                      uint32_t u, float alpha) {
    uint32_t *rec = node_of(g, u);
    if (rec[0] <= g->p.degree)
        return;
    score_build(g, s, ops, u, rec + 1, rec[0], sc->prune);
    rec[0] = vm_robust_prune(g, s, ops, sc, u, rec[0], alpha, rec + 1);
    g->dirty[u] = 1;
}

typedef struct build_job {
    vamana *g;
    const graph_space *s;
    vm_worker *w;          /* one per pool thread */
    const uint32_t *order; /* points to insert */
    size_t n;
    float alpha;
    size_t list; /* the build searches' candidate list this pass */
    int phase;   /* PHASE_* */
    /* Adds to a built graph (vamana_insert.c): records change by images,
     * searches may be reading them. */
    bool live;
    /* Progress of an insertion pass, reported by the calling thread. */
    bool reports;
    uint64_t progress_base, progress_total;
    atomic_size_t done;
    atomic_int stop; /* the progress callback asked to cancel */
} build_job;

enum { CHUNK = VM_CHUNK };

static void build_chunk(void *ctx, size_t chunk, unsigned worker) {
    build_job *job = ctx;
    if (atomic_load_explicit(&job->stop, memory_order_relaxed))
        return;
    vamana *g = job->g;
    vm_worker *w = &job->w[worker];
    const simd_ops *ops = simd_ops_get();
    const size_t b = chunk * CHUNK, e = b + CHUNK < job->n ? b + CHUNK : job->n;
    for (size_t i = b; i < e; i++) {
        if (job->phase == PHASE_ENCODE) {
            uint8_t *code = g->build_codes + i * g->build_stride;
            g->build_q->ops->encode(
                g->build_q, job->s->vectors + i * job->s->dim, code,
                (float *)(w->sc->bqmem + cm_round_up(g->build_q->query_bytes, CM_ALIGN)));
            const float norm2 = quant_sq8_norm2(g->build_q, code);
            memcpy(code + g->build_q->code_bytes, &norm2, sizeof norm2);
        } else if (job->phase == PHASE_INSERT && job->live)
            vm_insert_live(g, job->s, ops, w, job->order[i], job->alpha, job->list);
        else if (job->phase == PHASE_INSERT)
            insert_point(g, job->s, ops, w->sc, job->order[i], job->alpha, job->list);
        else if (job->phase == PHASE_TRIM && job->live) {
            /* The chunk's nodes (of the grown ones), in one publication. */
            vm_trim_live(g, job->s, ops, w, job->order + b, e - b, job->alpha);
            break;
        } else if (job->phase == PHASE_TRIM)
            trim_node(g, job->s, ops, w->sc, (uint32_t)i, job->alpha);
        else if (g->dirty[i])
            vm_refresh_codes(g, job->s, i, w->code);
    }
    size_t done = atomic_fetch_add(&job->done, e - b) + (e - b);
    if (worker == 0 && job->reports && g->p.progress != NULL &&
        g->p.progress(g->p.progress_opaque, job->progress_base + done, job->progress_total))
        atomic_store(&job->stop, 1);
}

/* Runs one phase over `n` items on the pool; false if it was cancelled. */
static bool run_phase(cm_pool *pool, build_job *job, size_t n) {
    job->n = n;
    atomic_store(&job->done, 0);
    cm_pool_run(pool, build_chunk, job, (n + CHUNK - 1) / CHUNK);
    return !atomic_load(&job->stop);
}

static void build_codes_drop(vamana *g, vm_worker *w, unsigned threads) {
    for (unsigned t = 0; w != NULL && t < threads; t++) {
        if (w[t].sc != NULL) {
            cm_free(&g->base.alloc, w[t].sc->bqmem);
            w[t].sc->bqmem = NULL;
        }
    }
    quant_free(g->build_q);
    cm_free(&g->base.alloc, g->build_codes);
    g->build_q = NULL;
    g->build_codes = NULL;
}

/* The build's searches read every vector at random, several times each:
 * at 768 dimensions they spent most of a build waiting on float rows.
 * They score an 8-bit copy instead (sq8: one u8 x i8 dot product, a
 * quarter of the bytes, estimates within a fraction of a percent), made
 * here, on the build's threads, and dropped when the build ends; the
 * prunes compare code with code (score_build). Graphs built this way searched the same
 * (recall within 0.001 on 200,000 768-d embeddings) and built 19 % faster
 * (1M: 318 s instead of 401 s).
 * Below 32 dimensions the copy is not made. From 17 (where a float row
 * passes a cache line) it would pay: at 25 (word vectors) it took a
 * graph's build from 10.9 s to 8.7 s, and the graphs searched the same
 * (recall within 0.002 at lists of 10-100). But the automatic choice links
 * its sample graph the same way, and on that sample its model then priced
 * full precision under sq8 (11.1 against 12.0 us a query, 12.2 against
 * 12.0 before): the no-flag index took full precision and searched at
 * 0.66-0.80x the QPS of the sq8 one at recall 0.90-0.95. Since the model
 * prices a full-precision walk's reads (tune.c), one such build kept sq8
 * by 3 % (12.2 against 12.6 us): too near a tie to turn this on unmeasured. */
static rotor_status build_codes_make(vamana *g, const graph_space *s, cm_pool *pool,
                                     build_job *job) {
    vm_worker *w = job->w;
    const unsigned threads = cm_pool_threads(pool);
    if (s->dim < VM_BUILD_CODES_MIN_DIM)
        return ROTOR_OK;
    const quant_spec spec = {QUANT_SQ, 8, 0};
    CM_FORWARD(
        quant_create(&spec, s->dim, ROTOR_METRIC_L2, g->p.seed, &g->base.alloc, &g->build_q));
    quant *q = g->build_q;
    rotor_status st = q->ops->train(q, s->vectors, s->count, threads);
    /* Each copy starts on a cache line and fills whole ones: a 112-byte
     * copy (100-d) at 112-byte steps touched 2.5 lines on average, and
     * the build searches wait on those loads more than on anything else
     * (perf: the copies' gather was a third of a build's time). The
     * copy's decoded norm, which the prunes read, takes the padding. */
    g->build_stride = cm_round_up(q->code_bytes + sizeof(float), 64);
    size_t bytes = 0;
    if (st == ROTOR_OK && cm_mul_overflow(s->count, g->build_stride, &bytes))
        st = cm_fail(ROTOR_ERR_OUT_OF_MEMORY, "8-bit copy of %zu vectors is too large", s->count);
    if (st == ROTOR_OK) {
        g->build_codes = cm_alloc_large(&g->base.alloc, bytes, "build codes");
        if (g->build_codes == NULL)
            st = ROTOR_ERR_OUT_OF_MEMORY;
    }
    const size_t qb = build_gather_offset(q) + (size_t)g->slots * q->code_bytes;
    for (unsigned t = 0; st == ROTOR_OK && t < threads; t++) {
        w[t].sc->bqmem = cm_alloc(&g->base.alloc, qb, "build query state");
        if (w[t].sc->bqmem == NULL)
            st = ROTOR_ERR_OUT_OF_MEMORY;
    }
    if (st == ROTOR_OK) {
        job->phase = PHASE_ENCODE;
        run_phase(pool, job, s->count);
    }
    if (st != ROTOR_OK)
        build_codes_drop(g, w, threads);
    return st;
}

rotor_status vm_check_record(const vamana *g, size_t u, const uint32_t *rec) {
    CM_RETURN_IF(rec[0] > g->p.degree, ROTOR_ERR_CORRUPT,
                 "graph node %zu claims %u neighbours, more than the degree %u", u, rec[0],
                 g->p.degree);
    for (uint32_t j = 0; j < rec[0]; j++)
        CM_RETURN_IF(rec[1 + j] >= g->count || rec[1 + j] == u, ROTOR_ERR_CORRUPT,
                     "graph node %zu links to %u, not another of the %zu nodes", u, rec[1 + j],
                     g->count);
    return ROTOR_OK;
}

rotor_status vm_move_records(vamana *g, size_t cap) {
    size_t bytes;
    CM_RETURN_IF(cm_mul_overflow(cap, g->node_bytes, &bytes) || cap > UINT32_MAX,
                 ROTOR_ERR_OUT_OF_MEMORY, "a graph of %zu nodes is too large", cap);
    uint8_t *nodes = cm_calloc_large(&g->base.alloc, bytes, "graph nodes");
    atomic_uchar *locks = cm_calloc(&g->base.alloc, cap, "graph locks");
    uint8_t *dirty = cm_calloc(&g->base.alloc, cap, "graph flags");
    if (nodes == NULL || locks == NULL || dirty == NULL) {
        cm_free(&g->base.alloc, nodes);
        cm_free(&g->base.alloc, (void *)locks);
        cm_free(&g->base.alloc, dirty);
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
        rotor_status st = ROTOR_OK;
        for (size_t u = 0; u < g->count && st == ROTOR_OK; u++)
            st = vm_check_record(g, u, (const uint32_t *)(nodes + u * g->node_bytes));
        if (st != ROTOR_OK) {
            cm_free(&g->base.alloc, nodes);
            cm_free(&g->base.alloc, (void *)locks);
            cm_free(&g->base.alloc, dirty);
            return st;
        }
    }
    vm_release_records(g);
    g->nodes = nodes;
    g->locks = locks;
    g->dirty = dirty;
    g->capacity = cap;
    return ROTOR_OK;
}

void vm_insertion_order(uint64_t seed, size_t first, const uint32_t *reused, size_t nreused,
                        size_t n, uint32_t *order) {
    uint64_t rng = seed ^ (0x5bd1e995ULL * (first + 1));
    for (size_t i = 0; i < nreused; i++)
        order[i] = reused[i];
    for (size_t i = nreused; i < n; i++)
        order[i] = (uint32_t)(first + i - nreused);
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)(cm_splitmix64(&rng) % i);
        uint32_t t = order[i - 1];
        order[i - 1] = order[j];
        order[j] = t;
    }
}

/* The first points of the build's random order are a uniform sample;
 * later adds keep it. */
rotor_status vm_sample_starts(vamana *g, const graph_space *s, const uint32_t *order,
                              size_t nstarts, uint8_t *code) {
    for (size_t i = 0; i < nstarts; i++) {
        g->starts[i] = order[i];
        quant_copy(g->walk_q, g->start_codes, i, s->walk_codes, order[i], code);
    }
    g->nstarts = nstarts;
    rotor_status st = vm_group_starts(g, s);
    if (st != ROTOR_OK)
        g->nstarts = 0;
    return st;
}

/* Makes room for `n` nodes; on failure nothing changed. */
static rotor_status reserve(vamana *g, size_t n) {
    if (n <= g->capacity && !g->borrowed)
        return ROTOR_OK;
    if (g->borrowed && n <= g->capacity) /* reused slots are written in place */
        return vm_move_records(g, g->capacity);
    size_t cap = g->capacity ? g->capacity : 1024;
    while (cap < n)
        cap = cap > SIZE_MAX / 2 ? n : cap * 2;
    return vm_move_records(g, cap);
}

rotor_status vm_medoid(const vamana *g, const graph_space *s, uint32_t *out) {
    const simd_ops *ops = simd_ops_get();
    const size_t d = s->dim;
    double *col = cm_calloc(&g->base.alloc, d * (sizeof(double) + sizeof(float)), "graph centre");
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
        if (graph_removed(s, i))
            continue;
        float dist = ops->l2sq_f32(mean, s->vectors + i * d, d);
        if (dist < best_d) {
            best_d = dist;
            best = (uint32_t)i;
        }
    }
    cm_free(&g->base.alloc, col);
    *out = best;
    return ROTOR_OK;
}

/* A reused slot's own code. Nothing leads a search to a free slot (no
 * edge, no starting point: vamana_consolidate.c), but the publication
 * keeps this ordered before the edges that will. */
static void reused_codes(vamana *g, const graph_space *s) {
    if (s->nreused == 0 || !g->code_in_record)
        return;
    graph_publish_begin(s);
    for (size_t i = 0; i < s->nreused; i++) {
        const uint32_t u = s->reused[i];
        s->walk_q->ops->load(s->walk_q, s->walk_codes, u, (uint8_t *)node_of(g, u) + g->block_off);
    }
    graph_publish_end(s);
}

/* The repair of an insertion that reused slots sees them live: their bits
 * in `deleted` are cleared in a copy (*bits, NULL when there is nothing
 * to clear). */
static rotor_status repair_space(const vamana *g, const graph_space *s, graph_space *out,
                                 uint64_t **bits) {
    *out = *s;
    *bits = NULL;
    if (s->nreused == 0 || s->deleted == NULL)
        return ROTOR_OK;
    const size_t words = (s->deleted_bits + 63) / 64;
    *bits = cm_alloc(&g->base.alloc, words * sizeof **bits, "the removed points");
    if (*bits == NULL)
        return ROTOR_ERR_OUT_OF_MEMORY;
    memcpy(*bits, s->deleted, words * sizeof **bits);
    for (size_t i = 0; i < s->nreused; i++)
        cm_bit_clear(*bits, s->reused[i]);
    out->deleted = *bits;
    return ROTOR_OK;
}

/* A build's order without the points its space marks removed (the rows
 * an index holds out until it has calibrated, then adds); returns how
 * many remain. */
static size_t drop_removed(const graph_space *s, uint32_t *order, size_t n) {
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (!graph_removed(s, order[i]))
            order[m++] = order[i];
    return m;
}

static rotor_status insert_points(vamana *g, const graph_space *s) {
    const size_t first = g->count;
    size_t n = s->count - first + s->nreused;
    const rotor_allocator *a = &g->base.alloc;
    /* Searches may read the graph during an add (not a build): moving the
     * records is published, new records are not read until linked. */
    graph_publish_begin(s);
    rotor_status rst = reserve(g, s->count);
    graph_publish_end(s);
    CM_FORWARD(rst);
    if (g->code_in_record)
        for (size_t i = first; i < s->count; i++)
            s->walk_q->ops->load(s->walk_q, s->walk_codes, i,
                                 (uint8_t *)node_of(g, i) + g->block_off);

    /* Everything the insertion needs is allocated before the first link. */
    cm_pool pool;
    CM_FORWARD(cm_pool_start(&pool, a, cm_thread_count(g->p.threads, n)));
    const unsigned threads = cm_pool_threads(&pool);
    build_job job = {.g = g, .s = s, .live = first > 0};
    job.w = cm_calloc(a, threads * sizeof *job.w, "build workers");
    /* A build repairs unreached nodes; an add once the points added since
     * the last repair reach 1/16 of the graph (vm_link_new_points links
     * every new point from somewhere meanwhile). `order` doubles as the
     * repair's stack, hence its size then. */
    const bool repair = !job.live || (g->unrepaired + n) * 16 >= s->count;
    uint32_t *order = cm_alloc(a, (repair ? s->count : n) * sizeof *order, "insertion order");
    uint8_t *seen = repair ? cm_alloc(a, s->count, "reachability marks") : NULL;
    /* An add's trim visits only the lists it grew past R, listed here. */
    uint32_t *grown = job.live ? cm_alloc(a, s->count * sizeof *grown, "grown lists") : NULL;
    graph_space rs;
    uint64_t *rs_bits = NULL;
    rotor_status st = job.w && order && (seen || !repair) && (grown || !job.live)
                          ? ROTOR_OK
                          : ROTOR_ERR_OUT_OF_MEMORY;
    if (st == ROTOR_OK && repair)
        st = repair_space(g, s, &rs, &rs_bits);
    vm_worker *w = job.w;
    const size_t code_bytes = s->walk_q ? s->walk_q->code_bytes : 0;
    for (unsigned t = 0; t < threads && st == ROTOR_OK; t++) {
        st = vm_scratch_get(g, s, s->count, g->p.build_list, 2 * (size_t)g->p.build_list + 64, 0,
                            &w[t].sc);
        if (st == ROTOR_OK && code_bytes > 0) {
            w[t].code = cm_alloc(a, code_bytes, "code copy");
            if (w[t].code == NULL)
                st = ROTOR_ERR_OUT_OF_MEMORY;
        }
        /* Record images: every worker's for an add, one for the links of
         * unreached nodes of a build. */
        if (st == ROTOR_OK && (job.live || t == 0)) {
            const size_t most = (size_t)g->p.degree + 1 > VM_CHUNK ? g->p.degree + 1 : VM_CHUNK;
            st = vm_scratch_images(g, w[t].sc, most);
            if (st == ROTOR_OK) {
                w[t].img = w[t].sc->img;
                w[t].target = w[t].sc->img_ids;
                w[t].held = w[t].target + most;
            }
        }
    }
    if (st == ROTOR_OK && first == 0)
        st = build_codes_make(g, s, &pool, &job);
    if (st == ROTOR_OK && first == 0)
        st = vm_medoid(g, s, &g->entry);
    if (st == ROTOR_OK) {
        vm_insertion_order(g->p.seed, first, s->reused, s->nreused, n, order);
        if (first == 0 && s->deleted != NULL)
            n = drop_removed(s, order, n);
    }
    size_t nstarts = g->walk_q != NULL && first == 0 ? vm_start_sample_size(n) : 0;
    if (st == ROTOR_OK && nstarts > 0) {
        g->starts = cm_alloc(a, nstarts * sizeof *g->starts, "graph starting points");
        g->start_codes =
            cm_calloc(a, g->walk_q->ops->store_bytes(g->walk_q, nstarts), "graph starting points");
        if (g->starts == NULL || g->start_codes == NULL)
            st = ROTOR_ERR_OUT_OF_MEMORY;
    }
    if (st == ROTOR_OK) {
        if (nstarts > 0)
            st = vm_sample_starts(g, s, order, nstarts, w[0].code);
        else
            reused_codes(g, s);
    }
    /* A build, or an add, takes its points cluster by cluster:
     * consecutive searches then read the same neighbourhood, whose records
     * and codes are still in cache (the build had waited on them for most
     * of its time, perf). With clusters of 1,024 or 4,096 points each pass
     * of a one-thread build of 100-d word vectors took 10-30 % less
     * (clusters of 16,384: up to 13 %), and the graphs searched as well or
     * better (recall within 0.0015 at lists of 12-24, up to 0.0015 higher
     * at 48-128). */
    if (st == ROTOR_OK)
        st = km_cluster_order(&g->base.alloc, s->vectors, s->dim, ORDER_CLUSTER_POINTS,
                              ORDER_MAX_CLUSTERS, g->p.threads, g->p.seed, order, n);
    if (st == ROTOR_OK) {
        graph_publish_begin(s);
        g->count = s->count;
        graph_publish_end(s);

        const bool build = first == 0;
        const unsigned passes = build ? 2 : 1;
        job.order = order;
        job.phase = PHASE_INSERT;
        job.reports = build;
        job.progress_total = (uint64_t)passes * n;
        for (unsigned pass = 0; pass < passes && st == ROTOR_OK; pass++) {
            /* The first pass's list decides how near the neighbours it
             * finds are, and the second pass, seeded with them, cannot
             * make up for near neighbours the first missed: on a 768-d
             * embedding set (200,000 points, the graph walked on full
             * vectors) a first list of 64 against 100 gave recall 0.84 /
             * 0.91 / 0.95 at L 10 / 16 / 32 against 0.92 / 0.96 / 0.98,
             * and a second list of 150 after the first of 64 only 0.87 /
             * 0.92 / 0.96. A second list of 80 after the first of 100 kept
             * that (0.92 / 0.96 / 0.98); on Debian SIFT it gave the
             * recall of the former 64 / 100 within 0.004 at L 10 and
             * 0.0015 from L 24 on, for 2 % fewer distances. A list costs
             * less in the first pass, whose graph is still thin: one-thread
             * graph builds took about what they took (Debian SIFT 78.7 ->
             * 76.8 s, the 768-d set 29.2 -> 32.1 s, 100-d word vectors 8.8
             * -> 9.7 s). An add has one pass, with the whole list. */
            const bool last = pass + 1 == passes;
            job.alpha = last ? g->p.alpha : 1.0f;
            job.list = pass == 0 ? g->p.build_list : second_pass_list(g->p.build_list, g->p.degree);
            job.progress_base = (uint64_t)pass * n;
            if (!run_phase(&pool, &job, n))
                st = cm_fail(ROTOR_ERR_CANCELLED, "graph build cancelled by the caller");
        }
        job.reports = false;
        if (st == ROTOR_OK && job.live) {
            size_t ngrown = 0;
            for (size_t u = 0; u < g->count; u++) {
                if (g->dirty[u] && node_of(g, u)[0] > g->p.degree)
                    grown[ngrown++] = (uint32_t)u;
                g->dirty[u] = 0;
            }
            job.order = grown;
            job.phase = PHASE_TRIM;
            run_phase(&pool, &job, ngrown);
        } else if (st == ROTOR_OK) {
            job.phase = PHASE_TRIM;
            run_phase(&pool, &job, g->count);
        }
        if (st == ROTOR_OK && repair) {
            vm_connect_unreached(g, &rs, &w[0], seen, order);
            g->unrepaired = 0;
        } else if (st == ROTOR_OK) {
            vm_link_new_points(g, s, &w[0], order, n);
            g->unrepaired += n;
        }
        /* An add's images carried their codes. */
        if (st == ROTOR_OK && g->neighbor_codes && !job.live) {
            job.phase = PHASE_CODES;
            run_phase(&pool, &job, g->count);
        }
    }
    build_codes_drop(g, w, threads);
    for (unsigned t = 0; w != NULL && t < threads; t++) {
        if (w[t].sc != NULL)
            vm_scratch_put(g, w[t].sc);
        cm_free(a, w[t].code);
    }
    cm_free(a, w);
    cm_free(a, rs_bits);
    cm_free(a, grown);
    cm_free(a, order);
    cm_free(a, seen);
    cm_pool_stop(&pool);
    return st;
}

/* Links the points as seen through the index's codes: every vector the
 * graph reads is the decoding of its code, so the links are those an index
 * holding codes alone would find. */
static rotor_status insert_from_codes(vamana *g, const graph_space *s) {
    const rotor_allocator *a = &g->base.alloc;
    const quant *q = s->q;
    size_t bytes;
    CM_RETURN_IF(cm_mul_overflow(s->count, s->dim * sizeof(float), &bytes), ROTOR_ERR_OUT_OF_MEMORY,
                 "decoded copy of %zu vectors is too large", s->count);
    float *decoded = cm_alloc(a, bytes, "decoded vectors");
    float *scratch =
        cm_alloc(a, q->scratch_floats * sizeof(float) + q->code_bytes, "decoding scratch");
    rotor_status st = ROTOR_OK;
    if (decoded == NULL || scratch == NULL) {
        st = ROTOR_ERR_OUT_OF_MEMORY;
    } else {
        uint8_t *code = (uint8_t *)(scratch + q->scratch_floats);
        for (size_t i = 0; i < s->count; i++) {
            q->ops->load(q, s->codes, i, code);
            q->ops->decode(q, code, decoded + i * s->dim, scratch);
        }
        graph_space d = *s;
        d.vectors = decoded;
        st = insert_points(g, &d);
    }
    cm_free(a, scratch);
    cm_free(a, decoded);
    return st;
}

rotor_status vamana_insert(nav *n, const graph_space *s) {
    vamana *g = (vamana *)n;
    if (s->count == g->count && s->nreused == 0)
        return ROTOR_OK;
    CM_RETURN_IF(g->disk != NULL, ROTOR_ERR_UNSUPPORTED,
                 "the graph stays on disk under this RAM budget, so it takes no adds: open the "
                 "index with a budget that holds the graph");
    CM_RETURN_IF(g->walk_q != NULL && s->walk_codes == NULL, ROTOR_ERR_INVALID_ARGUMENT,
                 "a graph walking on codes needs its quantizer's codes");
    CM_RETURN_IF(s->count > UINT32_MAX, ROTOR_ERR_INVALID_ARGUMENT,
                 "a graph holds at most %u points, not %zu", UINT32_MAX, s->count);
    if (g->p.from_codes)
        return insert_from_codes(g, s);
    /* A fresh build that would not fit its memory cap goes in shards. */
    if (g->count == 0 && s->nreused == 0 && g->p.build_memory > 0 &&
        vm_build_bytes(g, s) > g->p.build_memory)
        return vm_build_sharded(g, s);
    return insert_points(g, s);
}

/* Whether src grouped the starting points a graph of the same points
 * samples from `order` with `seed`: then its groups serve (the automatic
 * choice derives a graph for every candidate code from one sample graph,
 * and grouped the same points once for each, 4 % of a Fashion-MNIST
 * build). marks: scratch of count bytes. */
static bool same_starts(const vamana *src, uint64_t seed, const uint32_t *order, size_t nstarts,
                        uint8_t *marks) {
    if (src->ngroups == 0 || src->nstarts != nstarts || src->p.seed != seed)
        return false;
    memset(marks, 0, src->count);
    for (size_t i = 0; i < nstarts; i++)
        marks[order[i]] = 1;
    for (size_t i = 0; i < nstarts; i++)
        if (!marks[src->starts[i]])
            return false;
    return true;
}

rotor_status vamana_derive(const nav *src_nav, const rotor_allocator *a, const nav_params *p,
                           const graph_space *s, nav **out) {
    *out = NULL;
    const vamana *src = vamana_of(src_nav);
    CM_RETURN_IF(s->count != src->count || p->degree != src->p.degree, ROTOR_ERR_INVALID_ARGUMENT,
                 "a derived graph keeps the points and degree of its source");
    nav *n;
    CM_FORWARD(vamana_create(a, p, s, &n));
    vamana *g = (vamana *)n;
    const size_t count = s->count;
    const quant *walk = g->walk_q;
    const size_t nstarts = walk != NULL ? vm_start_sample_size(count) : 0;
    /* The order, a code, marks of count bytes (same_starts). */
    uint32_t *order = cm_alloc(a, count * sizeof *order + count + (walk ? walk->code_bytes : 0) + 1,
                               "insertion order");
    rotor_status st = order != NULL ? reserve(g, count) : ROTOR_ERR_OUT_OF_MEMORY;
    if (st == ROTOR_OK && nstarts > 0) {
        g->starts = cm_alloc(a, nstarts * sizeof *g->starts, "graph starting points");
        g->start_codes =
            cm_calloc(a, walk->ops->store_bytes(walk, nstarts), "graph starting points");
        if (g->starts == NULL || g->start_codes == NULL)
            st = ROTOR_ERR_OUT_OF_MEMORY;
    }
    if (st == ROTOR_OK) {
        uint8_t *code = (uint8_t *)(order + count);
        uint8_t *marks = code + (walk ? walk->code_bytes : 0);
        for (size_t u = 0; u < count; u++) {
            const uint32_t *rec = node_of(src, u);
            uint32_t *dst = node_of(g, u);
            memcpy(dst, rec, (1 + (size_t)rec[0]) * sizeof *rec);
            if (g->code_in_record)
                walk->ops->load(walk, s->walk_codes, u, (uint8_t *)dst + g->block_off);
        }
        g->count = count;
        g->entry = src->entry;
        for (size_t u = 0; g->neighbor_codes && u < count; u++)
            vm_refresh_codes(g, s, u, code);
        if (nstarts > 0) {
            vm_insertion_order(g->p.seed, 0, NULL, 0, count, order);
            st = same_starts(src, g->p.seed, order, nstarts, marks)
                     ? vm_copy_groups(g, s, src, code)
                     : vm_sample_starts(g, s, order, nstarts, code);
        }
    }
    cm_free(a, order);
    if (st != ROTOR_OK) {
        vamana_free(n);
        return st;
    }
    *out = n;
    return ROTOR_OK;
}
