/*
 * Searches: one query, a batch of queries on the library's threads, and the
 * exact rerank of an index whose full vectors stay on disk.
 *
 * Entry points check everything a caller could get wrong before touching
 * the index, and prepare the queries (finite, normalised for cosine); the
 * navigator does the rest whatever its kind.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "common/pool.h"
#include "index/index_internal.h"

/* The rerank of an index whose vectors are on disk, as a graph_rerank_fn:
 * the candidates are read from the vector store in the order the rerank
 * hands them out, and each row is scored as its read completes. Without a
 * bound every candidate is read, as many at once as the reader holds. With
 * one, those the bound is likely to need go out at once (at least the
 * first k, read whatever the bound says: there is no k-th distance before
 * them; and every one whose bound is under the k-th best estimate, which
 * for a code whose bound stops little is all of them, in one wait), then
 * at most `window` reads are in flight, and the next candidate is asked
 * for only when a read completes, so the rerank skips on the distances
 * already scored. */
typedef struct disk_rerank {
    const rotor_index *ix;
    rotor_query_stats *stats; /* may be NULL */
    unsigned window;
} disk_rerank;

typedef struct row_scorer {
    const rotor_index *ix;
    const simd_ops *ops;
    const float *query;
    graph_order *order;
    cm_topk *top;
} row_scorer;

static vstore_next next_row(void *ctx, uint32_t *id) {
    const row_scorer *r = ctx;
    return graph_order_next(r->order, id) ? VSTORE_NEXT_ROW : VSTORE_NEXT_END;
}

static void score_row(void *ctx, size_t j, const void *row) {
    const row_scorer *r = ctx;
    cm_topk_push(r->top, graph_distance(r->ops, r->ix->metric, r->query, row, r->ix->dim),
                 graph_order_id(r->order, j));
}

static rotor_status rerank_from_disk(void *ctx, const float *query, graph_order *order,
                                     cm_topk *top) {
    const disk_rerank *dr = ctx;
    const vstore *store = dr->ix->store;
    vstore_reader *rd;
    CM_FORWARD(vstore_reader_get(store, &rd));
    row_scorer rs = {dr->ix, simd_ops_get(), query, order, top};
    size_t burst = SIZE_MAX;
    if (order->lb != NULL)
        burst = order->likely > top->k ? order->likely : top->k;
    rotor_status st = vstore_read_stream(rd, burst, dr->window, next_row, score_row, &rs);
    uint64_t reads, wait_ns;
    vstore_reader_take_stats(rd, &reads, &wait_ns);
    vstore_reader_put(store, rd);
    if (dr->stats != NULL) {
        dr->stats->reads += (uint32_t)reads;
        dr->stats->io_seconds += (double)wait_ns * 1e-9;
    }
    return st;
}

/* The navigator's settings for a search of k neighbours: the caller's,
 * those a search by recall picks from the calibration table for what the
 * caller left at its default, and the kind's defaults (0) for the rest. */
static rotor_status resolve(const rotor_index *ix, const rotor_search_params *sp, size_t k,
                            nav_search_params *np) {
    *np = (nav_search_params){
        .list = sp->list_size,
        .refine = sp->refine,
        .rerank = sp->rerank < 0 ? SIZE_MAX : (size_t)sp->rerank,
        .starts = sp->start_points,
        .neighbors = sp->max_neighbors,
        .nprobe = sp->nprobe,
        .rerank_all = sp->rerank_all != 0,
        .rerank_window = sp->rerank_window,
        .beam = sp->beam_width,
    };
    const bool exact = ix->q == NULL && ix->params.kind == ROTOR_INDEX_FLAT;
    if (sp->target_recall > 0 && !exact)
        CM_FORWARD(ix_recall_settings(ix, sp->target_recall, k, np));
    if (ix->q == NULL) {
        np->rerank = 0;
    } else if (np->rerank != 0) {
        size_t depth = np->rerank == SIZE_MAX ? 10 * k : np->rerank;
        depth = depth < k ? k : depth;
        np->rerank = depth < ix->count ? depth : ix->count;
    }
    return ROTOR_OK;
}

static rotor_status search_nav(const rotor_index *ix, const nav_search_params *np,
                               const float *query, size_t k, int64_t *ids, float *dists,
                               rotor_query_stats *qs) {
    graph_space s = ix_space(ix);
    if (np->rerank_all)
        s.resid = NULL;
    s.reranked = qs != NULL ? &qs->reranked : NULL;
    s.reads = qs != NULL ? &qs->reads : NULL;
    s.io_seconds = qs != NULL ? &qs->io_seconds : NULL;
    disk_rerank disk = {ix, qs, np->rerank_window ? np->rerank_window : IX_DEFAULT_RERANK_WINDOW};
    if (ix->store != NULL) {
        s.rerank = rerank_from_disk;
        s.rerank_ctx = &disk;
    }
    const ix_filter *xf = (const ix_filter *)np->filter;
    if (xf != NULL && xf->none) {
        for (size_t i = 0; i < k; i++) {
            ids[i] = -1;
            dists[i] = INFINITY;
        }
        return ROTOR_OK;
    }
    if (xf != NULL && xf->scan) {
        if (qs != NULL)
            qs->filter_scan = 1;
        return ix_filter_scan(ix, xf, &s, np, query, k, ids, dists);
    }
    if (xf == NULL)
        return ix->nav->ops->search(ix->nav, &s, query, k, np, ids, dists);
    bool gave_up = false;
    nav_search_params p = *np;
    p.filter_gave_up = xf->mode == 0 ? &gave_up : NULL;
    CM_FORWARD(ix->nav->ops->search(ix->nav, &s, query, k, &p, ids, dists));
    if (!gave_up)
        return ROTOR_OK;
    if (qs != NULL)
        qs->filter_scan = 1;
    return ix_filter_scan(ix, xf, &s, np, query, k, ids, dists);
}

rotor_status ix_search_nav(const rotor_index *ix, const nav_search_params *np, const float *query,
                           size_t k, int64_t *ids, float *dists, rotor_query_stats *qs) {
    if (qs == NULL)
        return search_nav(ix, np, query, k, ids, dists, NULL);
    *qs = (rotor_query_stats){0};
    /* The caller's counters, or the walk's own for this query. */
    nav_work own = {0};
    nav_search_params p = *np;
    nav_work *w = p.work != NULL ? p.work : &own;
    const nav_work before = *w;
    p.work = w;
    const rotor_status st = search_nav(ix, &p, query, k, ids, dists, qs);
    qs->hops = (uint32_t)(w->hops - before.hops);
    qs->estimated = (uint32_t)(w->scored + w->refined - before.scored - before.refined);
    return st;
}

typedef struct batch_job {
    const rotor_index *ix;
    const rotor_search_params *sp;
    const float *queries;
    size_t nq, k, chunk; /* queries per chunk */
    int64_t *ids;
    float *dists;
    atomic_int failed;
    /* Per worker: the first failure's status and sentence (error text is
     * per thread). */
    rotor_status *status;
    char (*error)[256];
} batch_job;

/* At most this many queries per chunk: a full-precision flat batch tiles
 * its scan over them (graph/flat.c). */
enum { BATCH_CHUNK = 64 };

/* Queries [lo, lo + n) with the settings and filter of the index as it
 * is now (a writer may have changed it since the last call): together
 * when the navigator shares work between them (n is the chunk), else
 * n = 1. */
static rotor_status queries_locked(const batch_job *job, size_t lo, size_t n, bool shared) {
    const rotor_index *ix = job->ix;
    const size_t k = job->k;
    const float *q = job->queries + lo * ix->dim;
    nav_search_params np;
    CM_FORWARD(resolve(ix, job->sp, k, &np));
    ix_filter xf;
    CM_FORWARD(ix_filter_compile(ix, job->sp->filter, job->sp->filter_scan, &np, &xf));
    rotor_status st;
    if (shared) {
        const graph_space s = ix_space(ix);
        st = ix->nav->ops->search_batch(ix->nav, &s, q, n, k, &np, job->ids + lo * k,
                                        job->dists + lo * k);
    } else {
        st = ix_search_nav(ix, &np, q, k, job->ids + lo * k, job->dists + lo * k,
                           job->sp->stats ? job->sp->stats + lo : NULL);
    }
    if (st == ROTOR_OK)
        ix_keys_publish(ix, job->ids + lo * k, n * k);
    ix_filter_free(&xf);
    return st;
}

/* The index is held for one query at a time, so a writer waits for one
 * query, not for a chunk or the batch; a navigator that shares work
 * between the queries of a chunk (a flat scan) holds it for the chunk. */
static void batch_chunk(void *ctx, size_t chunk, unsigned worker) {
    batch_job *job = ctx;
    if (atomic_load_explicit(&job->failed, memory_order_relaxed))
        return;
    const rotor_index *ix = job->ix;
    const size_t lo = chunk * job->chunk;
    const size_t n = job->nq - lo < job->chunk ? job->nq - lo : job->chunk;
    rotor_status st = ROTOR_ERR_UNSUPPORTED;
    if (ix->nav->ops->search_batch != NULL) {
        ix_read_begin(ix);
        st = queries_locked(job, lo, n, true);
        ix_read_end(ix);
    }
    if (st == ROTOR_ERR_UNSUPPORTED) {
        st = ROTOR_OK;
        for (size_t i = 0; i < n && st == ROTOR_OK; i++) {
            ix_read_begin(ix);
            st = queries_locked(job, lo + i, 1, false);
            ix_read_end(ix);
        }
    }
    if (st != ROTOR_OK && job->status[worker] == ROTOR_OK) {
        job->status[worker] = st;
        snprintf(job->error[worker], sizeof job->error[worker], "%s", rotor_last_error());
        atomic_store(&job->failed, 1);
    }
}

/* Queries split over the pool in chunks; each query's results belong to
 * one thread, so they are identical for any thread count. */
static rotor_status search_batch(const rotor_index *ix, const rotor_search_params *sp,
                                 const float *queries, size_t nq, size_t k, int64_t *ids,
                                 float *dists) {
    const unsigned want = cm_thread_count(sp->threads, nq);
    /* Small batches still spread over every thread. */
    size_t chunk = (nq + want - 1) / want;
    chunk = chunk < BATCH_CHUNK ? chunk : BATCH_CHUNK;
    batch_job job = {ix, sp, queries, nq, k, chunk, ids, dists, 0, NULL, NULL};
    cm_pool pool;
    CM_FORWARD(cm_pool_start(&pool, &ix->alloc, want));
    const unsigned threads = cm_pool_threads(&pool);
    job.status = cm_calloc(&ix->alloc, threads * (sizeof *job.status + sizeof *job.error),
                           "batch search state");
    rotor_status st = ROTOR_OK;
    if (job.status == NULL) {
        st = ROTOR_ERR_OUT_OF_MEMORY;
    } else {
        job.error = (char(*)[256])(job.status + threads);
        cm_pool_run(&pool, batch_chunk, &job, (nq + chunk - 1) / chunk);
        for (unsigned t = 0; t < threads && st == ROTOR_OK; t++)
            if (job.status[t] != ROTOR_OK)
                st = cm_fail(job.status[t], "%s", job.error[t]);
        cm_free(&ix->alloc, job.status);
    }
    cm_pool_stop(&pool);
    return st;
}

static rotor_status check_search(const rotor_index *ix, size_t k, const int64_t *ids) {
    CM_RETURN_IF(ix == NULL, ROTOR_ERR_INVALID_ARGUMENT, "index must not be NULL");
    CM_RETURN_IF(k == 0, ROTOR_ERR_INVALID_ARGUMENT, "k must be at least 1");
    CM_RETURN_IF(k > ((size_t)1 << 30), ROTOR_ERR_INVALID_ARGUMENT,
                 "k of %zu is larger than any result list rotor returns", k);
    CM_RETURN_IF(ids == NULL, ROTOR_ERR_INVALID_ARGUMENT, "ids output must not be NULL");
    return ROTOR_OK;
}

static rotor_status search_locked(const rotor_index *ix, const rotor_search_params *psp,
                                  const float *query, size_t dim, size_t k, int64_t *ids,
                                  float *distances);

rotor_status rotor_index_search(const rotor_index *ix, const rotor_search_params *params,
                                const float *query, size_t dim, size_t k, int64_t *ids,
                                float *distances) {
    cm_clear_error();
    CM_FORWARD(check_search(ix, k, ids));
    CM_RETURN_IF(query == NULL, ROTOR_ERR_INVALID_ARGUMENT, "query must not be NULL");
    CM_RETURN_IF(dim != ix->dim, ROTOR_ERR_DIMENSION, "query has %zu dimensions, index has %zu",
                 dim, ix->dim);
    rotor_search_params sp = params ? *params : rotor_search_params_default();
    CM_FORWARD(ix_search_params_check(&sp));
    ix_read_begin(ix);
    const rotor_status st = search_locked(ix, &sp, query, dim, k, ids, distances);
    ix_read_end(ix);
    return st;
}

static rotor_status search_locked(const rotor_index *ix, const rotor_search_params *psp,
                                  const float *query, size_t dim, size_t k, int64_t *ids,
                                  float *distances) {
    const rotor_search_params sp = *psp;
    nav_search_params np;
    CM_FORWARD(resolve(ix, &sp, k, &np));
    ix_filter xf;
    CM_FORWARD(ix_filter_compile(ix, sp.filter, sp.filter_scan, &np, &xf));

    float *dist_out = distances;
    float *dist_tmp = NULL;
    rotor_status st = ROTOR_OK;
    const float *q = query;
    float *qcopy = NULL;
    if (dist_out == NULL) {
        dist_tmp = cm_alloc(&ix->alloc, k * sizeof(float), "search distances");
        if (dist_tmp == NULL) {
            st = ROTOR_ERR_OUT_OF_MEMORY;
            goto done;
        }
        dist_out = dist_tmp;
    }
    for (size_t j = 0; j < dim; j++) {
        if (!isfinite(query[j])) {
            st = cm_fail(ROTOR_ERR_NOT_FINITE, "query column %zu is %s", j,
                         isnan(query[j]) ? "NaN" : "infinite");
            goto done;
        }
    }
    if ((st = ix_check_magnitude(query, dim, ix->metric, "query", 0)) != ROTOR_OK)
        goto done;
    if (ix->metric == ROTOR_METRIC_COSINE) {
        qcopy = cm_alloc(&ix->alloc, dim * sizeof(float), "query copy");
        if (qcopy == NULL) {
            st = ROTOR_ERR_OUT_OF_MEMORY;
            goto done;
        }
        rotor_matrix m = {(void *)query, 1, dim, ROTOR_ELEM_F32};
        st = ix_convert_rows(&m, ix->metric, qcopy, "query");
        if (st != ROTOR_OK)
            goto done;
        q = qcopy;
    }
    st = ix_search_nav(ix, &np, q, k, ids, dist_out, sp.stats);
    if (st == ROTOR_OK)
        ix_keys_publish(ix, ids, k);
done:
    ix_filter_free(&xf);
    cm_free(&ix->alloc, qcopy);
    cm_free(&ix->alloc, dist_tmp);
    return st;
}

rotor_status rotor_index_search_batch(const rotor_index *ix, const rotor_search_params *params,
                                      const rotor_matrix *queries, size_t k, int64_t *ids,
                                      float *distances) {
    cm_clear_error();
    CM_FORWARD(check_search(ix, k, ids));
    CM_FORWARD(ix_matrix_check(queries, "queries"));
    CM_RETURN_IF(queries->cols != ix->dim, ROTOR_ERR_DIMENSION,
                 "queries have %zu dimensions, index has %zu", queries->cols, ix->dim);
    rotor_search_params sp = params ? *params : rotor_search_params_default();
    CM_FORWARD(ix_search_params_check(&sp));
    size_t nk;
    CM_RETURN_IF(cm_mul_overflow(queries->rows, k, &nk), ROTOR_ERR_INVALID_ARGUMENT,
                 "%zu queries x k %zu results overflow", queries->rows, k);

    float *q = cm_alloc(&ix->alloc, queries->rows * queries->cols * sizeof(float), "queries");
    float *dist_tmp = NULL;
    if (q == NULL)
        return ROTOR_ERR_OUT_OF_MEMORY;
    rotor_status st = ix_convert_rows(queries, ix->metric, q, "queries");
    if (st == ROTOR_OK && distances == NULL) {
        dist_tmp = cm_alloc(&ix->alloc, nk * sizeof(float), "search distances");
        if (dist_tmp == NULL)
            st = ROTOR_ERR_OUT_OF_MEMORY;
    }
    if (st == ROTOR_OK)
        st = search_batch(ix, &sp, q, queries->rows, k, ids, distances ? distances : dist_tmp);
    cm_free(&ix->alloc, dist_tmp);
    cm_free(&ix->alloc, q);
    return st;
}
