/*
 * The beam search of a Vamana graph on quantized distances.
 *
 * Of the sampled starting points the nearest are scored first
 * (vamana_starts.c); then a sorted candidate list of L entries: the nearest
 * unexpanded entry is expanded until none is left. A per-thread visited
 * bitset (n / 8 bytes: it stays in cache where an array of tags would not)
 * forgets only the words a search touched and is consulted only for
 * estimates good enough to enter the list; the node expanded next is
 * prefetched while the current one is scored. The best candidates are then
 * (with a walking quantizer other than the index's) estimated again with
 * the index's codes, and the best `rerank` scored on the full vectors.
 *
 * A node's neighbours are scored in one of three ways, one helper each,
 * chosen by the record layout: a block of neighbour codes in the record,
 * the neighbours' own codes gathered from their records, or the full
 * vectors. Every candidate they score enters through offer().
 */
#include <math.h>
#include <string.h>

#include "graph/vamana.h"

enum { DEFAULT_STARTS = 256 };

/* One search in progress. */
typedef struct vm_walk {
    const vamana *g;
    const graph_space *s;
    const float *query;
    const quant *walk; /* NULL: full vectors */
    const simd_ops *ops;
    const void *qs; /* the walking quantizer's prepared query */
    vm_scratch *sc;
    vm_sink k;       /* the list, and the pool of a deep rerank or a filter */
    uint8_t *gather; /* own-code layout: the neighbours' codes, gathered */
    /* A node whose record is impossible (a degree past R, an id past the
     * graph), NO_NODE if none: such a file fails the search. */
    uint32_t bad;
    nav_work work; /* always counted: a few adds per node */
} vm_walk;

enum { NO_NODE = UINT32_MAX };

static inline void offer(vm_walk *w, float est, uint32_t id) { sink_offer(&w->k, est, id); }

/* True for a neighbour of u not visited yet, now marked. An id at or past
 * the search's count is a point an add is linking (passed over), or, past
 * every record, marks u's record impossible. */
static inline bool enters(vm_walk *w, uint32_t u, uint32_t id, uint32_t count) {
    if (CM_UNLIKELY(id >= count)) {
        if (id >= w->g->capacity)
            w->bad = u;
        return false;
    }
    return visit(w->sc, id);
}

/* u's neighbours not visited yet, now marked, into sc->nbrs; returns how
 * many. The ids are copied out of the record first, which an add may be
 * rewriting: each is then checked (enters) and marked from the copy. */
static uint32_t unvisited(vm_walk *w, uint32_t u, const uint32_t *nb, uint32_t deg,
                          uint32_t count) {
    uint32_t *ids = w->sc->nbrs;
    memcpy(ids, nb, deg * sizeof *ids);
    uint32_t past = 0;
    for (uint32_t j = 0; j < deg; j++)
        past |= ids[j] >= count;
    if (CM_LIKELY(!past))
        return (uint32_t)visit_all(w->sc, ids, deg, ids);
    uint32_t m = 0;
    for (uint32_t j = 0; j < deg; j++)
        if (enters(w, u, ids[j], count))
            ids[m++] = ids[j];
    return m;
}

/* Neighbour codes in the record: the whole block is scored anyway, so the
 * visited set is only consulted for the few estimates good enough to
 * enter; most neighbours fail the gate and cost no random access. */
static void expand_block(vm_walk *w, uint32_t u, const uint32_t *rec, uint32_t deg) {
    const vamana *g = w->g;
    const uint32_t *nb = rec + 1, count = (uint32_t)w->s->count;
    float *est = w->sc->est;
    w->walk->ops->scan(w->walk, w->qs, (const uint8_t *)rec + g->block_off, 0, deg, est);
    w->work.scored += deg;
    float gate = entry_gate(&w->k);
    for (uint32_t j = 0; j < deg; j++) {
        if (est[j] >= gate || !enters(w, u, nb[j], count))
            continue;
        offer(w, est[j], nb[j]);
        gate = entry_gate(&w->k);
    }
}

/* Own codes: the unvisited neighbours' codes, gathered into one store and
 * scored by one scan call (one fast-scan block), from the code store or
 * from the copies in their records (g->code_in_record). */
static void expand_own_codes(vm_walk *w, uint32_t u, const uint32_t *rec, uint32_t deg) {
    const vamana *g = w->g;
    const quant *q = w->walk;
    const size_t cb = q->code_bytes;
    /* Code i at from + i * stride. */
    const uint8_t *from = g->code_in_record ? g->nodes + g->block_off : w->s->walk_codes;
    const size_t stride = g->code_in_record ? g->node_bytes : cb;
    const uint32_t *ids = w->sc->nbrs;
    const uint32_t m = unvisited(w, u, rec + 1, deg, (uint32_t)w->s->count);
    for (uint32_t j = 0; j < m; j++)
        prefetch_bytes(from + (size_t)ids[j] * stride, cb);
    if (q->ops->store == quant_plain_store && cb >= 16) {
        for (uint32_t j = 0; j < m; j++)
            vm_copy_code(w->gather + (size_t)j * cb, from + (size_t)ids[j] * stride, cb);
    } else {
        for (uint32_t j = 0; j < m; j++)
            q->ops->store(q, w->gather, j, from + (size_t)ids[j] * stride);
    }
    if (m > 0)
        q->ops->scan(q, w->qs, w->gather, 0, m, w->sc->est);
    w->work.scored += m;
    w->work.gathered += m;
    for (uint32_t j = 0; j < m; j++)
        offer(w, w->sc->est[j], ids[j]);
}

/* No quantizer: exact distances on the full vectors. The unvisited
 * neighbours' rows are all requested before the first is scored, as the
 * own codes are; fetched one ahead, each miss was waited on alone (Debian
 * SIFT's 128-byte rows: 1.46x faster at L 24, 1.76x at L 128). A long
 * row's head is fetched ahead, its tail while the row before is scored. */
static void expand_floats(vm_walk *w, uint32_t u, const uint32_t *rec, uint32_t deg) {
    enum { HEAD = 256, TAIL = 512 };
    const graph_space *s = w->s;
    const size_t vb = graph_row_bytes(s);
    const uint32_t *ids = w->sc->nbrs;
    const uint32_t m = unvisited(w, u, rec + 1, deg, (uint32_t)w->s->count);
    for (uint32_t j = 0; j < m; j++)
        prefetch_bytes(graph_row(s, ids[j]), vb < HEAD ? vb : HEAD);
    w->work.scored += m;
    w->work.gathered += m;
    for (uint32_t j = 0; j < m; j++) {
        if (vb > HEAD && j + 1 < m)
            prefetch_bytes((const uint8_t *)graph_row(s, ids[j + 1]) + HEAD,
                           vb - HEAD < TAIL ? vb - HEAD : TAIL);
        offer(w, graph_row_distance(w->ops, s, w->query, ids[j]), ids[j]);
    }
}

static void add_work(const nav_search_params *p, const nav_work *w) {
    if (p->work == NULL)
        return;
    p->work->hops += w->hops;
    p->work->scored += w->scored;
    p->work->gathered += w->gathered;
    p->work->pooled += w->pooled;
    p->work->refined += w->refined;
    p->work->reranked += w->reranked;
}

/* The query rotated once for both quantizers (graph_space.shared_rotation);
 * rot NULL: each rotates its own. */
typedef struct vm_rotated {
    float *rot;
    double qq;
} vm_rotated;

static void *prepare_query(const quant *q, const float *query, const vm_rotated *r, uint8_t *mem) {
    float *scratch = (float *)(mem + cm_round_up(q->query_bytes, CM_ALIGN));
    if (r->rot != NULL)
        q->ops->prepare_rotated(q, r->rot, r->qq, mem, scratch);
    else
        q->ops->prepare(q, query, mem, scratch);
    return mem;
}

/* The walk's candidates cand[0..n) estimated again with the index's codes;
 * the best `keep` are left in `best`, sorted. Returns the index quantizer's
 * prepared query, which the rerank's bounds need. */
static const void *refine(const graph_space *s, const float *query, const vm_rotated *r,
                          uint8_t *qmem, const uint32_t *cand, size_t n, cm_topk *best) {
    const quant *q = s->q;
    const void *qs = prepare_query(q, query, r, qmem);
    /* The candidates' codes are scattered over the store: a few are kept
     * loading ahead of the one being scored, or each estimate waits on
     * memory (98 % of the refine's time, perf). */
    const bool plain = q->ops->store == quant_plain_store;
    enum { AHEAD = 16 };
    for (size_t j = 0; plain && j < AHEAD && j < n; j++)
        prefetch_bytes(s->codes + (size_t)cand[j] * q->code_bytes, q->code_bytes);
    for (size_t j = 0; j < n; j++) {
        if (plain && j + AHEAD < n)
            prefetch_bytes(s->codes + (size_t)cand[j + AHEAD] * q->code_bytes, q->code_bytes);
        float e;
        q->ops->scan(q, qs, s->codes, cand[j], 1, &e);
        cm_topk_push(best, e, cand[j]);
    }
    cm_topk_finish(best);
    return qs;
}

void vm_best_select(vm_best *h) {
    graph_select_keys(h->key, h->size, h->cap);
    h->size = h->cap;
    uint64_t worst = 0;
    for (size_t j = 0; j < h->size; j++)
        worst = h->key[j] > worst ? h->key[j] : worst;
    h->thr = graph_key_dist(worst);
}

void vm_best_finish(vm_best *h, bool sorted, float *dist, int64_t *id) {
    if (h->size > h->cap)
        vm_best_select(h);
    if (sorted)
        graph_sort_keys(h->key, h->size);
    for (size_t j = 0; j < h->size; j++) {
        const uint64_t v = h->key[j];
        dist[j] = graph_key_dist(v);
        id[j] = (int64_t)(uint32_t)v;
    }
}

/* With a filter, the route list (vm_sink) holds up to 2 L x count /
 * passing points the filter refuses, at most this many times L: twice what
 * the walk crosses, where allowed points are spread evenly, to meet L of
 * them. A full route list still nearer than the L-th allowed point says
 * they are not (the query's neighbourhood is refused): the search then
 * reports that it gave up, and the index scans the allowed points. Where
 * fewer pass than this allows for, the index scans them from the start
 * (index/filter.c). At 16 the cap cut short the walks of a filter a tenth
 * of the points pass, whose queries gave up and scanned needlessly
 * (Fashion-MNIST, L = 10: p99 latency 595 us, 240 us at 32, same recall). */
enum { FILTER_ROUTE_GROWTH = 32 };

/* The filter's own starting points, entered beside the graph's. */
static void enter_filter_starts(vm_walk *w, const nav_filter *f) {
    const uint32_t count = (uint32_t)w->s->count;
    for (size_t j = 0; j < f->nstarts; j++) {
        const uint32_t id = f->starts[j];
        if (id >= count || !visit(w->sc, id))
            continue;
        float e;
        if (w->walk != NULL)
            w->walk->ops->scan(w->walk, w->qs, w->s->walk_codes, id, 1, &e);
        else
            e = graph_exact_distance(w->s, w->query, id);
        w->work.scored++;
        w->work.gathered++;
        offer(w, e, id);
    }
}

rotor_status vamana_search(const nav *n, const graph_space *s, const float *query, size_t k,
                           const nav_search_params *p, int64_t *ids, float *dists) {
    const vamana *g = vamana_of(n);
    if (g->disk != NULL)
        return vm_disk_search(g, s, query, k, p, ids, dists);
    const nav_filter *filter = p->filter;
    size_t list = p->list ? p->list : NAV_DEFAULT_LIST;
    const size_t rerank = p->rerank;
    const size_t refine_depth = p->refine ? p->refine : 4 * rerank;
    const size_t want_starts = p->starts ? p->starts : DEFAULT_STARTS;
    const size_t nstarts = want_starts < g->nstarts ? want_starts : g->nstarts;
    const quant *walk = s->walk_q;
    const bool refining = walk != NULL && s->q != walk;
    /* How many of the walk's best candidates go on: to the refine, or
     * straight to the exact rerank. */
    size_t keep = 0;
    if (refining)
        keep = refine_depth > rerank ? refine_depth : rerank;
    else if (walk != NULL)
        keep = rerank;
    else if (list < k)
        keep = k; /* a full-precision walk on a short list: its best k seen */
    if (keep > 0 && keep < k)
        keep = k;
    /* A depth beyond the list keeps its own heap of the best estimates
     * seen, so a short list (fast) can still feed a deep rerank; a filter
     * keeps one of the allowed points, where the results come from. */
    const bool pooled = keep > list || filter != NULL;
    if (!pooled && list < k)
        list = k;
    const size_t pool_cap = !pooled ? 0 : keep > k ? keep : k;
    size_t route = 0;
    if (filter != NULL && !filter->route_in_list) {
        const size_t passing = filter->passing > 0 ? filter->passing : 1;
        const size_t grow = 2 * ((s->count + passing - 1) / passing);
        route = list * (grow < FILTER_ROUTE_GROWTH ? grow : FILTER_ROUTE_GROWTH);
    }
    const size_t second = refining ? (rerank > k ? rerank : k) : 0;
    vm_scratch *sc;
    /* The route list lies in the list's memory, after it; the refine's
     * best lie after the pool's reservoir. */
    const size_t pool_room = 2 * pool_cap;
    CM_FORWARD(vm_scratch_get(g, s, s->count, list + (route > 0 ? route + 1 : 0), 0,
                              pool_room + second, &sc));
    vm_best pool;
    vm_best_init(&pool, sc->best_id, pool_cap);
    vm_rotated rotated = {NULL, 0};
    if (refining && s->shared_rotation) {
        rotated.rot = (float *)(sc->qmem + vm_rotation_offset(s));
        /* The walk's scratch is free until it prepares. */
        rotated.qq = quant_rotate_query(
            walk, query, (float *)(sc->qmem + cm_round_up(walk->query_bytes, CM_ALIGN)),
            rotated.rot);
    }
    vm_walk w = {
        .g = g,
        .s = s,
        .query = query,
        .walk = walk,
        .ops = simd_ops_get(),
        .qs = walk ? prepare_query(walk, query, &rotated, sc->qmem) : NULL,
        .sc = sc,
        .k = {.l = {sc->list, sc->expanded, 0, list, 0},
              .pool = pooled ? &pool : NULL,
              .filter = filter,
              .route = {sc->list + list + 1, sc->expanded + list + 1, 0, route, 0}},
        .gather = g->own_code ? sc->qmem + vm_gather_offset(s) : NULL,
        .bad = NO_NODE,
    };
    void (*expand)(vm_walk *, uint32_t, const uint32_t *, uint32_t) =
        g->neighbor_codes ? expand_block
        : g->own_code     ? expand_own_codes
                          : expand_floats;

    visited_reset(sc);
    /* A point held out is marked seen before anything is scored, so no
     * list, start or pool ever takes it (unless it is the entry itself). */
    if (p->skip != NULL && *p->skip < s->count)
        visit(sc, *p->skip);
    float d0;
    if (walk != NULL)
        walk->ops->scan(walk, w.qs, s->walk_codes, g->entry, 1, &d0);
    else
        d0 = graph_exact_distance(s, query, g->entry);
    visit(sc, g->entry);
    offer(&w, d0, g->entry);
    w.work.scored += 1;
    if (nstarts > 0)
        w.work.scored += vm_enter_starts(g, w.qs, nstarts, sc, &w.k);
    if (filter != NULL)
        enter_filter_starts(&w, filter);

    vm_list *l = &w.k.l, *r = &w.k.route;
    bool route_turn = false;
    for (;;) {
        /* The nearest unexpanded of the list; filtered, in turn with the
         * nearest of the route list while it is nearer than the list's
         * last. */
        vm_list *from = l;
        size_t i = list_next(l);
        if (r->cap > 0) {
            const size_t j = list_next(r);
            const bool can_route =
                j < r->size && (l->size < l->cap || r->c[j].dist < l->c[l->size - 1].dist);
            if (can_route && (route_turn || i == l->size)) {
                from = r;
                i = j;
            }
            route_turn = !route_turn;
        }
        if (i == from->size)
            break;
        from->expanded[i] = 1;
        const uint32_t u = from->c[i].id;
        /* Fetch the likely next node's record while this one is scored:
         * its ids and its neighbours' codes, not a copy of its own code
         * (which expanding it does not read). */
        for (size_t j = i + 1; j < from->size; j++) {
            if (!from->expanded[j]) {
                prefetch_bytes(node_of(g, from->c[j].id),
                               g->code_in_record ? g->block_off : g->node_bytes);
                break;
            }
        }
        const uint32_t *rec = node_of(g, u);
        /* A record of a mapped file is checked where it is used (whole at
         * verify, load and add): the degree here, every id in the helpers
         * before it indexes memory. An add may leave ids past R in the
         * slack until it prunes the list: they are not read. */
        uint32_t deg = rec[0];
        if (CM_UNLIKELY(deg > g->p.degree)) {
            if (deg > g->slots) {
                w.bad = u;
                break;
            }
            deg = g->p.degree;
        }
        if (p->neighbors != 0 && deg > p->neighbors) /* its prune's first picks */
            deg = (uint32_t)p->neighbors;
        expand(&w, u, rec, deg);
        w.work.hops++;
    }
    if (filter != NULL && p->filter_gave_up != NULL && r->cap > 0 && r->size == r->cap &&
        (l->size < l->cap || r->c[r->size - 1].dist < l->c[l->size - 1].dist))
        *p->filter_gave_up = true;
    if (CM_UNLIKELY(w.bad != NO_NODE)) {
        vm_scratch_put(g, sc);
        if (vm_check_record(g, w.bad, node_of(g, w.bad)) == ROTOR_OK) /* changed meanwhile */
            return cm_fail(ROTOR_ERR_CORRUPT,
                           "the graph section: node %u changed while it was read", w.bad);
        return cm_fail_prefix(ROTOR_ERR_CORRUPT, "the graph section");
    }

    /* The candidates that go on, best estimate first (for a rerank that
     * reads from disk; a refine orders them itself): the pool, or the head
     * of the list. */
    if (pooled) {
        w.work.pooled += pool.taken;
        vm_best_finish(&pool, !refining, sc->best_d, sc->best_id);
    }
    size_t nc = pooled ? pool.size : (keep < l->size ? keep : l->size);
    uint32_t *cand = sc->cand;
    /* Their estimates by the walking codes: the pool's own, or copied from
     * the list into the pool's unused room (at least list + 1 entries). */
    float *est = sc->best_d;
    const void *est_qs = w.qs;
    for (size_t j = 0; j < nc; j++) {
        cand[j] = pooled ? (uint32_t)sc->best_id[j] : l->c[j].id;
        if (!pooled)
            est[j] = l->c[j].dist;
    }
    if (p->nwalked != NULL && !refining) {
        memcpy(p->walked, cand, nc * sizeof *cand);
        *p->nwalked = nc;
    }
    w.work.refined += refining ? nc : 0;
    if (refining && nc > 0) {
        cm_topk best;
        cm_topk_init(&best, sc->best_d + pool_room, sc->best_id + pool_room,
                     rerank > 0 ? second : k);
        est_qs = refine(s, query, &rotated, sc->qmem + vm_qstate_bytes(walk), cand, nc, &best);
        est = best.dist;
        if (rerank == 0) {
            memcpy(dists, best.dist, k * sizeof *dists);
            memcpy(ids, best.id, k * sizeof *ids);
            vm_scratch_put(g, sc);
            add_work(p, &w.work);
            return ROTOR_OK;
        }
        nc = best.size;
        for (size_t j = 0; j < nc; j++)
            cand[j] = (uint32_t)best.id[j];
    }

    cm_topk top;
    cm_topk_init(&top, dists, ids, k);
    rotor_status st = ROTOR_OK;
    if (walk != NULL && rerank > 0) {
        /* The estimates are the index quantizer's: the walk's own when it
         * walks on them, else the refine's. */
        graph_cands c = {.ids = cand, .est = est, .fine = sc->fine, .n = nc, .qs = est_qs};
        st = graph_rerank(s, query, &c, &top);
        w.work.reranked += c.scored; /* what was scored, not what the bound skipped */
    } else if (pooled) {
        for (size_t j = 0; j < pool.size && j < k; j++)
            cm_topk_push(&top, sc->best_d[j], sc->best_id[j]);
    } else {
        for (size_t j = 0; j < l->size && j < k; j++)
            cm_topk_push(&top, l->c[j].dist, l->c[j].id);
    }
    cm_topk_finish(&top);
    vm_scratch_put(g, sc);
    add_work(p, &w.work);
    return st;
}
