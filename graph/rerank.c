/*
 * The last steps every navigator shares: scoring code stores into a top-k
 * of estimates, and scoring the best of those again on the full vectors.
 *
 * Selection touches only the estimates that beat the current k-th: after a
 * block is scored, first_below() skips to the next estimate under the
 * threshold with vector compares instead of a branch per code. Candidates
 * go to the rerank best estimate first, so a store on disk reads the
 * likeliest first.
 */
#include <string.h>

#include "graph/graph.h"

float graph_exact_distance(const graph_space *s, const float *q, size_t id) {
    return graph_distance(simd_ops_get(), s->metric, q, s->vectors + id * s->dim, s->dim);
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
    const simd_ops *ops = simd_ops_get();
    for (size_t j = 0; j < n; j++)
        cm_topk_push(
            top,
            graph_distance(ops, s->metric, query, s->vectors + (size_t)ids[j] * s->dim, s->dim),
            ids[j]);
    return ROTOR_OK;
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
    const size_t kb = rerank > 0 ? keep * (sizeof(float) + sizeof(int64_t) + sizeof(uint32_t)) : 0;
    uint8_t *mem = cm_alloc(a, qb + sb + bb + xb + kb, "search state");
    if (mem == NULL)
        return ROTOR_ERR_OUT_OF_MEMORY;
    *sc = (graph_scan){.a = a,
                       .q = q,
                       .qstate = mem,
                       .block = (float *)(mem + qb + sb),
                       .extra = mem + qb + sb + bb,
                       .k = k,
                       .rerank = rerank,
                       .skip = p->skip != NULL ? *p->skip : SIZE_MAX,
                       .work = p->work,
                       .ids = ids,
                       .dists = dists,
                       .mem = mem};
    if (rerank > 0) {
        int64_t *cand_id = (int64_t *)(mem + qb + sb + bb + xb);
        float *cand_d = (float *)(cand_id + keep);
        sc->cand = (uint32_t *)(cand_d + keep);
        cm_topk_init(&sc->top, cand_d, cand_id, keep);
    } else {
        cm_topk_init(&sc->top, dists, ids, k);
    }
    q->ops->prepare(q, query, sc->qstate, (float *)(mem + qb));
    return ROTOR_OK;
}

void graph_scan_store(graph_scan *sc, const uint8_t *store, size_t first, size_t n,
                      const uint32_t *ids, size_t bound) {
    const simd_ops *ops = simd_ops_get();
    for (size_t start = 0; start < n; start += GRAPH_SCAN_BLOCK) {
        const size_t m = n - start < GRAPH_SCAN_BLOCK ? n - start : GRAPH_SCAN_BLOCK;
        sc->q->ops->scan(sc->q, sc->qstate, store, first + start, m, sc->block);
        if (sc->work != NULL)
            sc->work->scored += m;
        size_t i = ops->first_below(sc->block, 0, m, cm_topk_threshold(&sc->top));
        while (i < m) {
            const size_t id = ids != NULL ? ids[start + i] : first + start + i;
            if (id < bound && id != sc->skip)
                cm_topk_push(&sc->top, sc->block[i], (int64_t)id);
            i = ops->first_below(sc->block, i + 1, m, cm_topk_threshold(&sc->top));
        }
    }
}

rotor_status graph_scan_end(graph_scan *sc, const graph_space *s, const float *query) {
    cm_topk_finish(&sc->top);
    rotor_status st = ROTOR_OK;
    if (sc->rerank > 0) {
        for (size_t i = 0; i < sc->top.size; i++)
            sc->cand[i] = (uint32_t)sc->top.id[i];
        if (sc->work != NULL)
            sc->work->reranked += sc->top.size;
        cm_topk exact;
        cm_topk_init(&exact, sc->dists, sc->ids, sc->k);
        st = graph_rerank(s, query, sc->cand, sc->top.size, &exact);
        cm_topk_finish(&exact);
    }
    cm_free(sc->a, sc->mem);
    return st;
}
