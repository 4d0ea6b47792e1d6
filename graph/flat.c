/*
 * The flat navigator: every stored row (or its code) is compared with the
 * query. It holds nothing of its own.
 *
 * One query at a time the scan is bound by memory bandwidth (Fashion-MNIST:
 * 60,000 x 784 floats = 188 MB per query), so the kernel streams rows with
 * prefetching into a small block of distances, and selection touches only
 * the distances that beat the current k-th: first_below() skips the rest of
 * a block with vector compares instead of a branch per row.
 *
 * A batch is different: the same rows serve many queries, so the work is
 * tiled to be bound by arithmetic instead. A block of rows sized to stay in
 * L2 is loaded once and compared with every query of a chunk, four queries
 * per kernel call (simd l2sq_f32_x4), so each row element loaded from cache
 * feeds four FMAs:
 *
 *   for each chunk of QUERY_CHUNK queries        (per thread)
 *     for each block of rows (~256 KiB)          (stays in L2)
 *       for each group of 4 queries in the chunk (stays in L1)
 *         for each row in the block: 4 distances -> 4 top-k heaps
 *
 * The caller splits the queries of a batch over threads, never the rows, so
 * each query's heap belongs to one thread and results are identical for
 * any thread count.
 *
 * With a quantizer the scan reads codes instead of floats (graph_scan in
 * rerank.c): the query is prepared once (rotated, tables built), the codes
 * are scored a block at a time, the best `rerank` estimates are kept, and
 * those candidates alone are scored again on the full vectors.
 */
#include <string.h>

#include "common/topk.h"
#include "graph/graph.h"

enum { SCAN_BLOCK = 512, QUERY_CHUNK = 64, ROW_BLOCK_BYTES = 256 * 1024 };

static rotor_status flat_create(const rotor_allocator *a, const nav_params *p, const graph_space *s,
                                nav **out) {
    (void)p;
    (void)s;
    nav *n = cm_calloc(a, sizeof *n, "flat navigator");
    if (n == NULL)
        return ROTOR_ERR_OUT_OF_MEMORY;
    n->ops = &flat_nav_ops;
    n->alloc = *a;
    *out = n;
    return ROTOR_OK;
}

static void flat_free(nav *n) {
    if (n != NULL) {
        rotor_allocator a = n->alloc;
        cm_free(&a, n);
    }
}

/* Every row is already in the store: nothing to link. */
static rotor_status flat_insert(nav *n, const graph_space *s) {
    (void)n;
    (void)s;
    return ROTOR_OK;
}

/* No sections: the scan reads the index's store of codes, all of it. */
static rotor_status flat_open(const rotor_allocator *a, const nav_params *p, const graph_space *s,
                              const ixf_file *f, nav **out) {
    if (s->q != NULL)
        ixf_advise(f, IXF_SEC_CODES, false);
    return flat_create(a, p, s, out);
}

static rotor_status flat_check(const nav *n) {
    (void)n;
    return ROTOR_OK;
}

static rotor_status flat_own(nav *n) {
    (void)n;
    return ROTOR_OK;
}

static void flat_stats(const nav *n, const graph_space *s, nav_stats *out) {
    (void)n;
    (void)s;
    *out = (nav_stats){0};
}

static rotor_status scan_floats(const graph_space *s, const float *q, size_t k,
                                const nav_filter *filter, int64_t *ids, float *dists) {
    const simd_ops *ops = simd_ops_get();
    const size_t d = s->dim;
    const rotor_metric metric = s->metric;
    float block[SCAN_BLOCK];
    cm_topk top;
    cm_topk_init(&top, dists, ids, k);

    for (size_t start = 0; start < s->count; start += SCAN_BLOCK) {
        size_t n = s->count - start < SCAN_BLOCK ? s->count - start : SCAN_BLOCK;
        if (s->rows8 != NULL) {
            for (size_t i = 0; i < n; i++)
                block[i] = graph_row_distance(ops, s, q, start + i);
        } else if (metric == ROTOR_METRIC_L2) {
            ops->l2sq_f32_rows(q, s->vectors + start * d, n, d, d, block);
        } else {
            ops->dot_f32_rows(q, s->vectors + start * d, n, d, d, block);
            for (size_t i = 0; i < n; i++)
                block[i] = cm_ip_distance(metric, block[i], 0, 0);
        }
        size_t i = ops->first_below(block, 0, n, cm_topk_threshold(&top));
        while (i < n) {
            if (filter == NULL || nav_filter_allows(filter, (uint32_t)(start + i)))
                cm_topk_push(&top, block[i], (int64_t)(start + i));
            i = ops->first_below(block, i + 1, n, cm_topk_threshold(&top));
        }
    }
    cm_topk_finish(&top);
    return ROTOR_OK;
}

static rotor_status flat_search(const nav *n, const graph_space *s, const float *query, size_t k,
                                const nav_search_params *p, int64_t *ids, float *dists) {
    if (s->q == NULL) {
        if (p->work != NULL)
            p->work->scored += s->count;
        return scan_floats(s, query, k, p->filter, ids, dists);
    }
    graph_scan sc;
    CM_FORWARD(graph_scan_begin(&sc, &n->alloc, s->q, query, k, p, 0, ids, dists));
    graph_scan_store(&sc, s->codes, 0, s->count, NULL, SIZE_MAX);
    return graph_scan_end(&sc, s, query);
}

/* Queries [q0, q0 + nq) of `queries` against every row, into tops. */
static void scan_chunk(const graph_space *s, const float *queries, size_t nq, cm_topk *tops) {
    const simd_ops *ops = simd_ops_get();
    const size_t d = s->dim;
    size_t rows_per_block = ROW_BLOCK_BYTES / (d * sizeof(float));
    if (rows_per_block < 8)
        rows_per_block = 8;
    void (*x4)(const float *const[4], const float *, size_t, float[4]) =
        s->metric == ROTOR_METRIC_L2 ? ops->l2sq_f32_x4 : ops->dot_f32_x4;

    for (size_t b = 0; b < s->count; b += rows_per_block) {
        size_t b_end = b + rows_per_block < s->count ? b + rows_per_block : s->count;
        for (size_t g = 0; g < nq; g += 4) {
            size_t ng = nq - g < 4 ? nq - g : 4;
            const float *qs[4];
            for (size_t j = 0; j < 4; j++) /* a short group repeats its last query */
                qs[j] = queries + (g + (j < ng ? j : ng - 1)) * d;
            float thr[4];
            for (size_t j = 0; j < ng; j++)
                thr[j] = cm_topk_threshold(&tops[g + j]);
            for (size_t r = b; r < b_end; r++) {
                float out[4];
                x4(qs, s->vectors + r * d, d, out);
                for (size_t j = 0; j < ng; j++) {
                    float dist = s->metric == ROTOR_METRIC_L2
                                     ? out[j]
                                     : cm_ip_distance(s->metric, out[j], 0, 0);
                    if (dist < thr[j]) {
                        cm_topk_push(&tops[g + j], dist, (int64_t)r);
                        thr[j] = cm_topk_threshold(&tops[g + j]);
                    }
                }
            }
        }
    }
}

/* A full-precision batch is tiled (see the top of this file); a quantized
 * or filtered one has nothing to share and is declined. */
static rotor_status flat_search_batch(const nav *n, const graph_space *s, const float *queries,
                                      size_t nq, size_t k, const nav_search_params *p, int64_t *ids,
                                      float *dists) {
    (void)n;
    if (s->q != NULL || p->filter != NULL || s->rows8 != NULL)
        return ROTOR_ERR_UNSUPPORTED;
    cm_topk tops[QUERY_CHUNK];
    for (size_t q0 = 0; q0 < nq; q0 += QUERY_CHUNK) {
        size_t m = nq - q0 < QUERY_CHUNK ? nq - q0 : QUERY_CHUNK;
        for (size_t j = 0; j < m; j++)
            cm_topk_init(&tops[j], dists + (q0 + j) * k, ids + (q0 + j) * k, k);
        scan_chunk(s, queries + q0 * s->dim, m, tops);
        for (size_t j = 0; j < m; j++)
            cm_topk_finish(&tops[j]);
    }
    return ROTOR_OK;
}

const nav_ops flat_nav_ops = {
    .kind = ROTOR_INDEX_FLAT,
    .name = "flat",
    .create = flat_create,
    .insert = flat_insert,
    .search = flat_search,
    .search_batch = flat_search_batch,
    .stats = flat_stats,
    .save = NULL,
    .open = flat_open,
    .check = flat_check,
    .own = flat_own,
    .free = flat_free,
};
