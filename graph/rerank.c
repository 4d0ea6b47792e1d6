/*
 * The last steps every navigator shares: scoring code stores into a top-k
 * of estimates, and scoring the best of those again on the full vectors.
 *
 * Selection touches only the estimates that beat the current k-th: after a
 * block is scored, first_below() skips to the next estimate under the
 * threshold with vector compares instead of a branch per code.
 *
 * Candidates go to the rerank best estimate first, so a store on disk reads
 * the likeliest first. When the quantizer bounds its estimates' errors
 * (quant.h, "error bounds of estimates") the rerank skips every candidate
 * whose lower bound exceeds the k-th exact distance found: the rerank depth
 * is then a maximum, the results the same as scoring every candidate.
 */
#include <stdlib.h>
#include <string.h>

#include "graph/graph.h"

float graph_exact_distance(const graph_space *s, const float *q, size_t id) {
    return graph_row_distance(simd_ops_get(), s, q, id);
}

/* ---- candidates, and which of them to skip ------------------------------
 *
 * Candidates are scored best estimate first, and one whose lower bound
 * exceeds the k-th exact distance found so far is skipped: that distance
 * only falls, so such a candidate can never enter. Every candidate is
 * looked at (its bound against the threshold: a comparison), but only
 * those that pass are scored. The order changes the work, never the
 * results; the estimate's order, nearly the exact one, scored as few as an
 * order by bound (SIFT and Fashion-MNIST, sq8: 12.7 to 13.1 per query at
 * depths 16 to 100, the same to a tenth) and needs no heap. A cheap bound that passes
 * is refined before the candidate is scored (quant_ops.refine_bounds), so
 * only the few near the threshold pay for the refinement. */

/* A bound as a comparison can use it: a NaN (from a damaged, unverified
 * file) bounds nothing. */
static float sane(float lb) { return lb >= -INFINITY ? lb : -INFINITY; }

/* Refines the bound of candidate i in place. */
static void refine_at(const graph_order *o, size_t i) {
    const quant *q = o->s->q;
    q->ops->refine_bounds(q, o->qs, o->s->codes, o->s->resid, o->ids + i, 1, o->lb + i);
    o->lb[i] = sane(o->lb[i]);
    o->fine[i] = 1;
}

bool graph_order_next(graph_order *o, uint32_t *id) {
    while (o->next < o->n) {
        const size_t i = o->next++;
        if (o->lb != NULL) {
            const float thr = cm_topk_threshold(o->top);
            if (o->lb[i] > thr)
                continue;
            if (o->fine != NULL && !o->fine[i]) {
                refine_at(o, i);
                if (o->lb[i] > thr)
                    continue;
            }
        }
        /* Handed-out ids gather at the front (i >= handed: nothing still
         * to be looked at is overwritten). */
        o->ids[o->handed] = o->ids[i];
        *id = o->ids[o->handed++];
        return true;
    }
    return false;
}

/* Whether bounds could stop this rerank: the last candidate (the worst
 * estimate) is bounded alone first, as tightly as the code allows, and
 * when even its bound is not past the k-th best estimate, where the k-th
 * exact distance probably ends up, the bounds would stop next to nothing
 * and all are scored without them. That spares computing them where a code
 * is too coarse for its bound to stop anything (4-bit PQ on SIFT or
 * Fashion-MNIST: a residual near a third of the neighbours' distance); it
 * changes the work, never the results. */
static bool bound_worth_it(const graph_space *s, const graph_cands *c, size_t k) {
    const quant *q = s->q;
    if (s->resid == NULL || c->qs == NULL || q == NULL || q->ops->lower_bounds == NULL || c->n <= k)
        return false;
    float last = c->est[c->n - 1];
    const uint32_t *id = c->ids + c->n - 1;
    q->ops->lower_bounds(q, c->qs, s->codes, s->resid, id, 1, &last);
    if (q->ops->refine_bounds != NULL)
        q->ops->refine_bounds(q, c->qs, s->codes, s->resid, id, 1, &last);
    return last > c->est[k - 1];
}

rotor_status graph_rerank(const graph_space *s, const float *query, graph_cands *c, cm_topk *top) {
    graph_order o = {.ids = c->ids, .n = c->n, .top = top, .s = s, .qs = c->qs};
    const quant *q = s->q;
    const bool bounded = bound_worth_it(s, c, top->k);
    /* Start the first lines of the likeliest candidates loading at once;
     * the kernel's sequential reads then find the rest streaming in.
     * (Keeping a few whole vectors in flight instead measured slower.)
     * With a bound only the first few are likely to be scored. */
    if (s->rerank == NULL) {
        const size_t vb = graph_row_bytes(s);
        const size_t ahead = bounded && 2 * top->k < c->n ? 2 * top->k : c->n;
        for (size_t j = 0; j < ahead; j++)
            prefetch_bytes(graph_row(s, c->ids[j]), vb < 256 ? vb : 256);
    }
    if (bounded) {
        /* The cheap bounds read each candidate's factors, at the start of
         * its code: scattered over the store, so they start loading
         * together. */
        if (q->ops->store == quant_plain_store)
            for (size_t j = 0; j < c->n; j++)
                __builtin_prefetch(s->codes + (size_t)c->ids[j] * q->code_bytes, 0, 3);
        /* The estimates come sorted: the k-th is where the k-th exact
         * distance probably ends up. */
        const float likely_kth = c->est[top->k - 1];
        q->ops->lower_bounds(q, c->qs, s->codes, s->resid, c->ids, c->n, c->est);
        o.lb = c->est;
        if (q->ops->refine_bounds != NULL) {
            o.fine = c->fine;
            memset(o.fine, 0, c->n);
        }
        for (size_t j = 0; j < c->n; j++) {
            o.lb[j] = sane(o.lb[j]);
            /* For a store on disk, those likely scored are refined now, to
             * count them: it reads them at once (graph_order.likely). */
            if (o.fine != NULL && s->rerank != NULL && o.lb[j] <= likely_kth)
                refine_at(&o, j);
            o.likely += o.lb[j] <= likely_kth;
        }
    }
    rotor_status st = ROTOR_OK;
    if (s->rerank != NULL) {
        st = s->rerank(s->rerank_ctx, query, &o, top);
    } else {
        const simd_ops *ops = simd_ops_get();
        uint32_t id;
        while (graph_order_next(&o, &id))
            cm_topk_push(top, graph_row_distance(ops, s, query, id), id);
    }
    c->scored = o.handed;
    if (s->reranked != NULL)
        *s->reranked += (uint32_t)o.handed;
    return st;
}

rotor_status graph_scan_begin(graph_scan *sc, const rotor_allocator *a, const quant *q,
                              const float *query, size_t k, const nav_search_params *p,
                              size_t extra_bytes, int64_t *ids, float *dists) {
    const size_t rerank = p->rerank;
    const size_t keep = rerank > k ? rerank : k;
    /* One block: [query state][scratch][estimates][extra][candidate heap
     * and ids], each part on a cache line. */
    const size_t qb = cm_round_up(q->query_bytes, CM_ALIGN);
    const size_t sb = cm_round_up(q->scratch_floats * sizeof(float), CM_ALIGN);
    const size_t bb = GRAPH_SCAN_BLOCK * sizeof(float);
    const size_t xb = cm_round_up(extra_bytes, CM_ALIGN);
    const size_t kb = cm_round_up(
        rerank > 0 ? keep * (sizeof(float) + sizeof(int64_t) + sizeof(uint32_t) + 1) : 0, CM_ALIGN);
    const size_t pool_cap = 2 * keep;
    const size_t pb = pool_cap * sizeof(uint64_t);
    uint8_t *mem = cm_alloc(a, qb + sb + bb + xb + kb + pb, "search state");
    if (mem == NULL)
        return ROTOR_ERR_OUT_OF_MEMORY;
    *sc = (graph_scan){.a = a,
                       .q = q,
                       .qstate = mem,
                       .scratch = (float *)(mem + qb),
                       .scale = 1.0f,
                       .block = (float *)(mem + qb + sb),
                       .extra = mem + qb + sb + bb,
                       .k = k,
                       .rerank = rerank,
                       .skip = p->skip != NULL ? *p->skip : SIZE_MAX,
                       .filter = p->filter,
                       .work = p->work,
                       .ids = ids,
                       .dists = dists,
                       .pool = (uint64_t *)(mem + qb + sb + bb + xb + kb),
                       .pool_cap = pool_cap,
                       .bar = keep > 0 ? INFINITY : -INFINITY,
                       .mem = mem};
    if (rerank > 0) {
        int64_t *cand_id = (int64_t *)(mem + qb + sb + bb + xb);
        float *cand_d = (float *)(cand_id + keep);
        sc->cand = (uint32_t *)(cand_d + keep);
        sc->fine = (uint8_t *)(sc->cand + keep);
        cm_topk_init(&sc->top, cand_d, cand_id, keep);
    } else {
        cm_topk_init(&sc->top, dists, ids, k);
    }
    if (query != NULL)
        q->ops->prepare(q, query, sc->qstate, sc->scratch);
    return ROTOR_OK;
}

void graph_scan_prepare(graph_scan *sc, const float *query) {
    sc->q->ops->prepare(sc->q, query, sc->qstate, sc->scratch);
}

/* ---- the pools' selection ------------------------------------------------ */

/* Splits key[lo..hi) (more than two entries) at p: the entries before p
 * are below those from p on, and lo < p. Branch-free: which side an entry
 * goes is as good as random, and a mispredicted branch per entry cost more
 * than the swap. p == hi only when every entry is equal. */
static size_t split_keys(uint64_t *key, size_t lo, size_t hi) {
    const uint64_t a = key[lo], b = key[lo + (hi - lo) / 2], c = key[hi - 1];
    const uint64_t pivot = a < b ? (b < c ? b : a < c ? c : a) : (a < c ? a : b < c ? c : b);
    size_t p = lo;
    for (size_t i = lo; i < hi; i++) {
        const uint64_t x = key[i];
        key[i] = key[p];
        key[p] = x;
        p += x < pivot;
    }
    if (p > lo)
        return p;
    /* Nothing below the pivot: it is the least, and its equals go first. */
    for (size_t i = lo; i < hi; i++) {
        const uint64_t x = key[i];
        key[i] = key[p];
        key[p] = x;
        p += x <= pivot;
    }
    return p;
}

static void insertion_sort_keys(uint64_t *key, size_t lo, size_t hi) {
    for (size_t i = lo + 1; i < hi; i++) {
        const uint64_t x = key[i];
        size_t j = i;
        for (; j > lo && key[j - 1] > x; j--)
            key[j] = key[j - 1];
        key[j] = x;
    }
}

enum { KEYS_SMALL = 16 }; /* ranges sorted by insertion */

void graph_select_keys(uint64_t *key, size_t n, size_t m) {
    size_t lo = 0, hi = n;
    while (hi - lo > KEYS_SMALL) {
        const size_t p = split_keys(key, lo, hi);
        if (p == m || p == hi)
            return;
        if (p > m)
            hi = p;
        else
            lo = p;
    }
    insertion_sort_keys(key, lo, hi);
}

static void sort_keys(uint64_t *key, size_t lo, size_t hi) {
    while (hi - lo > KEYS_SMALL) {
        const size_t p = split_keys(key, lo, hi);
        if (p == hi)
            return;
        /* The smaller side by recursion, so the depth stays logarithmic. */
        if (p - lo < hi - p) {
            sort_keys(key, lo, p);
            lo = p;
        } else {
            sort_keys(key, p, hi);
            hi = p;
        }
    }
    insertion_sort_keys(key, lo, hi);
}

void graph_sort_keys(uint64_t *key, size_t n) { sort_keys(key, 0, n); }

/* The pool is full: the best top.k stay, and the bar falls to the worst of
 * them (an estimate at or past it could not enter). */
static void pool_cut(graph_scan *sc) {
    const size_t k = sc->top.k;
    graph_select_keys(sc->pool, sc->pooled, k);
    uint64_t worst = sc->pool[0];
    for (size_t i = 1; i < k; i++)
        worst = sc->pool[i] > worst ? sc->pool[i] : worst;
    sc->pooled = k;
    sc->bar = graph_key_dist(worst);
}

static inline void pool_offer(graph_scan *sc, float d, int64_t id) {
    sc->pool[sc->pooled++] = graph_key(d, (uint32_t)id);
    if (sc->pooled == sc->pool_cap)
        pool_cut(sc);
}

void graph_scan_store(graph_scan *sc, const uint8_t *store, size_t first, size_t n,
                      const uint32_t *ids, size_t bound) {
    const simd_ops *ops = simd_ops_get();
    for (size_t start = 0; start < n; start += GRAPH_SCAN_BLOCK) {
        const size_t m = n - start < GRAPH_SCAN_BLOCK ? n - start : GRAPH_SCAN_BLOCK;
        sc->q->ops->scan(sc->q, sc->qstate, store, first + start, m, sc->block);
        if (sc->scale != 1.0f)
            for (size_t j = 0; j < m; j++)
                sc->block[j] *= sc->scale;
        if (sc->work != NULL)
            sc->work->scored += m;
        size_t i = ops->first_below(sc->block, 0, m, sc->bar);
        while (i < m) {
            const size_t id = ids != NULL ? ids[start + i] : first + start + i;
            if (id < bound && id != sc->skip &&
                (sc->filter == NULL || nav_filter_allows(sc->filter, (uint32_t)id)))
                pool_offer(sc, sc->block[i], (int64_t)id);
            i = ops->first_below(sc->block, i + 1, m, sc->bar);
        }
    }
}

void graph_scan_ids(graph_scan *sc, const uint8_t *store, size_t count, const uint32_t *ids,
                    size_t n) {
    const quant *q = sc->q;
    if (q->ops->store != quant_plain_store) {
        /* A blocked layout scores a whole block to estimate one code: the
         * ids are taken a block at a time, each block scored once for all
         * the listed ids it holds (ascending ids share blocks). */
        size_t j = 0;
        while (j < n) {
            const size_t b0 = ids[j] / GRAPH_SCAN_GATHER * GRAPH_SCAN_GATHER;
            const size_t m = count - b0 < GRAPH_SCAN_GATHER ? count - b0 : GRAPH_SCAN_GATHER;
            q->ops->scan(q, sc->qstate, store, b0, m, sc->block);
            if (sc->work != NULL)
                sc->work->scored += m;
            for (; j < n && ids[j] >= b0 && ids[j] < b0 + m; j++) {
                const float e = sc->block[ids[j] - b0];
                if (e < sc->bar && ids[j] != sc->skip)
                    pool_offer(sc, e, ids[j]);
            }
        }
        return;
    }
    /* Scattered codes: a few load ahead of the one scored (as the refine). */
    const bool plain = q->ops->store == quant_plain_store;
    enum { AHEAD = 16 };
    for (size_t j = 0; plain && j < AHEAD && j < n; j++)
        prefetch_bytes(store + (size_t)ids[j] * q->code_bytes, q->code_bytes);
    for (size_t j = 0; j < n; j++) {
        if (plain && j + AHEAD < n)
            prefetch_bytes(store + (size_t)ids[j + AHEAD] * q->code_bytes, q->code_bytes);
        float e;
        q->ops->scan(q, sc->qstate, store, ids[j], 1, &e);
        if (e < sc->bar && ids[j] != sc->skip)
            pool_offer(sc, e, ids[j]);
    }
    if (sc->work != NULL) {
        sc->work->scored += n;
        sc->work->gathered += n;
    }
}

void graph_exact_ids(const graph_space *s, const float *query, const uint32_t *ids, size_t n,
                     cm_topk *top) {
    const simd_ops *ops = simd_ops_get();
    const size_t vb = graph_row_bytes(s);
    for (size_t j = 0; j < n; j++) {
        if (j + 2 < n)
            prefetch_bytes(graph_row(s, ids[j + 2]), vb < 1024 ? vb : 1024);
        cm_topk_push(top, graph_row_distance(ops, s, query, ids[j]), ids[j]);
    }
}

rotor_status graph_scan_end(graph_scan *sc, const graph_space *s, const float *query) {
    /* The best top.k of the pool, ascending, as cm_topk_finish leaves them. */
    cm_topk *t = &sc->top;
    if (sc->pooled > t->k)
        graph_select_keys(sc->pool, sc->pooled, t->k);
    t->size = sc->pooled < t->k ? sc->pooled : t->k;
    graph_sort_keys(sc->pool, t->size);
    for (size_t i = 0; i < t->size; i++) {
        t->dist[i] = graph_key_dist(sc->pool[i]);
        t->id[i] = (int64_t)(uint32_t)sc->pool[i];
    }
    for (size_t i = t->size; i < t->k; i++) {
        t->dist[i] = INFINITY;
        t->id[i] = -1;
    }
    rotor_status st = ROTOR_OK;
    if (sc->rerank > 0) {
        for (size_t i = 0; i < sc->top.size; i++)
            sc->cand[i] = (uint32_t)sc->top.id[i];
        cm_topk exact;
        cm_topk_init(&exact, sc->dists, sc->ids, sc->k);
        /* Estimates of other codes than the index's (an IVF's residual
         * codes) have no bound the index's residuals give. */
        graph_cands c = {.ids = sc->cand,
                         .est = sc->top.dist,
                         .fine = sc->fine,
                         .n = sc->top.size,
                         .qs = sc->q == s->q ? sc->qstate : NULL};
        st = graph_rerank(s, query, &c, &exact);
        if (sc->work != NULL) /* what was scored, not what the bound skipped */
            sc->work->reranked += c.scored;
        cm_topk_finish(&exact);
    }
    cm_free(sc->a, sc->mem);
    return st;
}
