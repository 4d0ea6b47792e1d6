/*
 * Exact (flat) search: every stored row is compared with the query.
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
 * Threads split the queries, never the rows, so each query's heap belongs to
 * one thread and results are identical for any thread count.
 *
 * With a quantizer the scan reads codes instead of floats: the query is
 * prepared once (rotated, tables built), the codes are scored a block at a
 * time by the quantizer's scan, the best `rerank` estimates are kept, and
 * those candidates alone are scored again on the full vectors.
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "common/topk.h"
#include "index/index_internal.h"

enum { SCAN_BLOCK = 512, QUERY_CHUNK = 64, ROW_BLOCK_BYTES = 256 * 1024 };

/* The inner-product kernels return similarities; results are distances. */
static inline float to_distance(rotor_metric m, float v) {
    return m == ROTOR_METRIC_L2 ? v : (m == ROTOR_METRIC_IP ? -v : 1.0f - v);
}

rotor_status flat_search(const rotor_index *ix, const float *q, size_t k, int64_t *ids,
                         float *dists) {
    const simd_ops *ops = simd_ops_get();
    const size_t d = ix->dim;
    const rotor_metric metric = ix->metric;
    float block[SCAN_BLOCK];
    cm_topk top;
    cm_topk_init(&top, dists, ids, k);

    for (size_t start = 0; start < ix->count; start += SCAN_BLOCK) {
        size_t n = ix->count - start < SCAN_BLOCK ? ix->count - start : SCAN_BLOCK;
        const float *rows = ix->vectors + start * d;
        if (metric == ROTOR_METRIC_L2) {
            ops->l2sq_f32_rows(q, rows, n, d, d, block);
        } else {
            ops->dot_f32_rows(q, rows, n, d, d, block);
            for (size_t i = 0; i < n; i++)
                block[i] = to_distance(metric, block[i]);
        }
        size_t i = ops->first_below(block, 0, n, cm_topk_threshold(&top));
        while (i < n) {
            cm_topk_push(&top, block[i], (int64_t)(start + i));
            i = ops->first_below(block, i + 1, n, cm_topk_threshold(&top));
        }
    }
    cm_topk_finish(&top);
    return ROTOR_OK;
}

float ix_exact_distance(const rotor_index *ix, const simd_ops *ops, const float *q, size_t id) {
    return ix_distance_to(ix, ops, q, ix->vectors + id * ix->dim);
}

float ix_distance_to(const rotor_index *ix, const simd_ops *ops, const float *q, const float *x) {
    if (ix->metric == ROTOR_METRIC_L2)
        return ops->l2sq_f32(q, x, ix->dim);
    return to_distance(ix->metric, ops->dot_f32(q, x, ix->dim));
}

rotor_status flat_search_quant(const rotor_index *ix, const graph_space *s, const float *query,
                               size_t k, size_t rerank, int64_t *ids, float *dists) {
    const quant *q = ix->q;
    const simd_ops *ops = simd_ops_get();
    size_t keep = rerank > k ? rerank : k;
    /* One block: [query state][scratch][candidate ids][candidate distances],
     * each part starting on a cache line. */
    size_t qbytes = cm_round_up(q->query_bytes, CM_ALIGN);
    size_t sbytes = cm_round_up(q->scratch_floats * sizeof(float), CM_ALIGN);
    size_t bytes = qbytes + sbytes +
                   (rerank > 0 ? keep * (sizeof(float) + sizeof(int64_t) + sizeof(uint32_t)) : 0);
    uint8_t *mem = cm_alloc(&ix->alloc, bytes, "search state");
    if (mem == NULL)
        return ROTOR_ERR_OUT_OF_MEMORY;
    void *qs = mem;
    float *scratch = (float *)(mem + qbytes);
    int64_t *cand_id = ids;
    float *cand_d = dists;
    if (rerank > 0) {
        cand_id = (int64_t *)(mem + qbytes + sbytes);
        cand_d = (float *)(cand_id + keep);
    }
    q->ops->prepare(q, query, qs, scratch);

    float block[SCAN_BLOCK];
    cm_topk top;
    cm_topk_init(&top, cand_d, cand_id, keep);
    for (size_t start = 0; start < ix->count; start += SCAN_BLOCK) {
        size_t n = ix->count - start < SCAN_BLOCK ? ix->count - start : SCAN_BLOCK;
        q->ops->scan(q, qs, ix->codes, start, n, block);
        size_t i = ops->first_below(block, 0, n, cm_topk_threshold(&top));
        while (i < n) {
            cm_topk_push(&top, block[i], (int64_t)(start + i));
            i = ops->first_below(block, i + 1, n, cm_topk_threshold(&top));
        }
    }
    rotor_status st = ROTOR_OK;
    cm_topk_finish(&top);
    if (rerank > 0) {
        /* Best estimates first: a store on disk reads them in that order. */
        uint32_t *cand = (uint32_t *)(cand_d + keep);
        for (size_t i = 0; i < top.size; i++)
            cand[i] = (uint32_t)cand_id[i];
        cm_topk exact;
        cm_topk_init(&exact, dists, ids, k);
        st = graph_rerank(s, query, cand, top.size, &exact);
        cm_topk_finish(&exact);
    }
    cm_free(&ix->alloc, mem);
    return st;
}

typedef struct batch_job {
    const rotor_index *ix;
    const rotor_search_params *sp;
    const float *queries;
    size_t q_begin, q_end, k;
    int64_t *ids;
    float *dists;
    rotor_status status;
    char error[256]; /* the worker's sentence: error text is per thread */
} batch_job;

static void scan_chunk(const batch_job *job, size_t q0, size_t nq, cm_topk *tops) {
    const rotor_index *ix = job->ix;
    const simd_ops *ops = simd_ops_get();
    const size_t d = ix->dim;
    size_t rows_per_block = ROW_BLOCK_BYTES / (d * sizeof(float));
    if (rows_per_block < 8)
        rows_per_block = 8;
    void (*x4)(const float *const[4], const float *, size_t, float[4]) =
        ix->metric == ROTOR_METRIC_L2 ? ops->l2sq_f32_x4 : ops->dot_f32_x4;

    for (size_t b = 0; b < ix->count; b += rows_per_block) {
        size_t b_end = b + rows_per_block < ix->count ? b + rows_per_block : ix->count;
        for (size_t g = 0; g < nq; g += 4) {
            size_t ng = nq - g < 4 ? nq - g : 4;
            const float *qs[4];
            for (size_t j = 0; j < 4; j++) /* a short group repeats its last query */
                qs[j] = job->queries + (q0 + g + (j < ng ? j : ng - 1)) * d;
            float thr[4];
            for (size_t j = 0; j < ng; j++)
                thr[j] = cm_topk_threshold(&tops[g + j]);
            for (size_t r = b; r < b_end; r++) {
                float out[4];
                x4(qs, ix->vectors + r * d, d, out);
                for (size_t j = 0; j < ng; j++) {
                    float dist = to_distance(ix->metric, out[j]);
                    if (dist < thr[j]) {
                        cm_topk_push(&tops[g + j], dist, (int64_t)r);
                        thr[j] = cm_topk_threshold(&tops[g + j]);
                    }
                }
            }
        }
    }
}

static void *batch_worker(void *arg) {
    batch_job *job = arg;
    if (job->ix->q != NULL || job->ix->params.kind != ROTOR_INDEX_FLAT) {
        for (size_t i = job->q_begin; i < job->q_end && job->status == ROTOR_OK; i++)
            job->status = ix_search_one(job->ix, job->sp, job->queries + i * job->ix->dim, job->k,
                                        job->ids + i * job->k, job->dists + i * job->k,
                                        job->sp->stats ? job->sp->stats + i : NULL);
        if (job->status != ROTOR_OK)
            snprintf(job->error, sizeof job->error, "%s", rotor_last_error());
        return NULL;
    }
    cm_topk tops[QUERY_CHUNK];
    for (size_t q0 = job->q_begin; q0 < job->q_end; q0 += QUERY_CHUNK) {
        size_t nq = job->q_end - q0 < QUERY_CHUNK ? job->q_end - q0 : QUERY_CHUNK;
        for (size_t j = 0; j < nq; j++)
            cm_topk_init(&tops[j], job->dists + (q0 + j) * job->k, job->ids + (q0 + j) * job->k,
                         job->k);
        scan_chunk(job, q0, nq, tops);
        for (size_t j = 0; j < nq; j++)
            cm_topk_finish(&tops[j]);
    }
    return NULL;
}

rotor_status ix_search_batch(const rotor_index *ix, const rotor_search_params *sp,
                             const float *queries, size_t nq, size_t k, unsigned threads,
                             int64_t *ids, float *dists) {
    enum { MAX_THREADS = 256 };
    if (threads > MAX_THREADS)
        threads = MAX_THREADS;
    batch_job jobs[MAX_THREADS];
    pthread_t tids[MAX_THREADS];
    bool started[MAX_THREADS];
    size_t per = (nq + threads - 1) / threads;
    for (unsigned t = 0; t < threads; t++) {
        size_t b = (size_t)t * per;
        jobs[t] = (batch_job){ix, sp,  queries, b < nq ? b : nq, b + per < nq ? b + per : nq,
                              k,  ids, dists,   ROTOR_OK,        ""};
    }
    /* Worker 0 runs on the calling thread. If a thread cannot be started its
     * share is done here too: slower, but the caller still gets its answer. */
    for (unsigned t = 1; t < threads; t++)
        started[t] = pthread_create(&tids[t], NULL, batch_worker, &jobs[t]) == 0;
    batch_worker(&jobs[0]);
    for (unsigned t = 1; t < threads; t++) {
        if (started[t])
            pthread_join(tids[t], NULL);
        else
            batch_worker(&jobs[t]);
    }
    for (unsigned t = 0; t < threads; t++)
        if (jobs[t].status != ROTOR_OK)
            return cm_fail(jobs[t].status, "%s", jobs[t].error);
    return ROTOR_OK;
}
