/*
 * The index object: build, add, search entry points, stats and close.
 *
 * Entry points validate everything a caller could get wrong before touching
 * the index, so a failed call leaves the index exactly as it was: add()
 * converts and checks the new rows into fresh memory first and only then
 * commits them. The flat kind keeps float32 rows contiguously (normalised
 * for cosine, so cosine search is an inner-product scan).
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "index/index_internal.h"

/* A code store of `cap` codes holding the first `count` of `old`; stores
 * are laid out by position, so those are a prefix whatever the capacity. */
static uint8_t *grow_store(const rotor_index *ix, const quant *q, const uint8_t *old, size_t cap) {
    uint8_t *codes = cm_calloc_large(&ix->alloc, q->ops->store_bytes(q, cap), "index codes");
    if (codes != NULL && ix->count > 0)
        memcpy(codes, old, q->ops->store_bytes(q, ix->count));
    return codes;
}

/* The vectors (unless they are on disk) and code stores moved to fresh
 * memory of cap rows; on failure nothing changed. */
static rotor_status move_arrays(rotor_index *ix, size_t cap) {
    const bool in_ram = ix->store == NULL;
    size_t bytes;
    CM_RETURN_IF(cm_mul_overflow(cap, ix->dim, &bytes) ||
                     cm_mul_overflow(bytes, sizeof(float), &bytes),
                 ROTOR_ERR_OUT_OF_MEMORY, "index of %zu vectors of %zu dimensions is too large",
                 cap, ix->dim);
    float *v = in_ram ? cm_alloc_large(&ix->alloc, bytes, "index vectors") : NULL;
    uint8_t *codes = ix->q ? grow_store(ix, ix->q, ix->codes, cap) : NULL;
    uint8_t *nav = ix->nav_q ? grow_store(ix, ix->nav_q, ix->nav_codes, cap) : NULL;
    if ((in_ram && v == NULL) || (ix->q && codes == NULL) || (ix->nav_q && nav == NULL)) {
        cm_free(&ix->alloc, v);
        cm_free(&ix->alloc, codes);
        cm_free(&ix->alloc, nav);
        return ROTOR_ERR_OUT_OF_MEMORY;
    }
    if (in_ram && ix->count > 0)
        memcpy(v, ix->vectors, ix->count * ix->dim * sizeof(float));
    if (!ix->borrowed) { /* else they belong to the mapped file */
        cm_free(&ix->alloc, ix->vectors);
        cm_free(&ix->alloc, ix->codes);
        cm_free(&ix->alloc, ix->nav_codes);
    }
    ix->borrowed = false;
    ix->vectors = v;
    ix->codes = codes;
    ix->nav_codes = nav;
    ix->capacity = cap;
    return ROTOR_OK;
}

static rotor_status grow(rotor_index *ix, size_t need) {
    if (need <= ix->capacity)
        return ROTOR_OK;
    size_t cap = ix->capacity < 1024 ? 1024 : ix->capacity;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    return move_arrays(ix, cap);
}

rotor_status ix_own_arrays(rotor_index *ix) {
    if (ix->graph != NULL)
        CM_FORWARD(vamana_own(ix->graph));
    return ix->borrowed ? move_arrays(ix, ix->count > 0 ? ix->count : 1) : ROTOR_OK;
}

rotor_status ix_create(const rotor_params *params, size_t dim, size_t rows, rotor_index **out) {
    *out = NULL;
    rotor_params p = *params;
    quant_spec spec = {0};
    bool quantized = p.quant != NULL && strcmp(p.quant, "none") != 0;
    if (quantized)
        CM_FORWARD(quant_spec_parse(p.quant, &spec));

    rotor_index *ix = p.allocator.alloc(p.allocator.opaque, sizeof *ix, CM_ALIGN);
    CM_RETURN_IF(ix == NULL, ROTOR_ERR_OUT_OF_MEMORY, "out of memory allocating the index");
    memset(ix, 0, sizeof *ix);
    ix->params = p;
    ix->params.quant = NULL; /* not kept: the caller owns the strings */
    ix->params.graph_quant = NULL;
    ix->alloc = p.allocator;
    ix->metric = p.metric;
    ix->dim = dim;
    snprintf(ix->quant_name, sizeof ix->quant_name, "none");

    rotor_status st = ROTOR_OK;
    if (quantized) {
        quant_spec_name(&spec, ix->quant_name, sizeof ix->quant_name);
        st = quant_create(&spec, ix->dim, ix->metric, p.seed, &ix->alloc, &ix->q);
    }
    if (st == ROTOR_OK && p.graph_quant != NULL && strcmp(p.graph_quant, "none") != 0) {
        quant_spec nav;
        st = quant_spec_parse(p.graph_quant, &nav);
        if (st == ROTOR_OK) {
            quant_spec_name(&nav, ix->nav_name, sizeof ix->nav_name);
            st = quant_create(&nav, ix->dim, ix->metric, p.seed ^ 0x6e6176ULL, &ix->alloc,
                              &ix->nav_q);
        }
    }
    if (st == ROTOR_OK && p.kind == ROTOR_INDEX_VAMANA) {
        vamana_params vp = {
            .degree = p.graph_degree,
            .build_list = p.build_list,
            .alpha = p.alpha,
            .neighbor_codes = p.neighbor_codes != 0 && ix->q != NULL,
            .threads = ix_thread_count(p.threads, rows),
            .seed = p.seed,
            .progress = p.progress,
            .progress_opaque = p.progress_opaque,
        };
        st = vamana_create(&ix->alloc, &vp, ix->nav_q ? ix->nav_q : ix->q, &ix->graph);
    }
    if (st != ROTOR_OK) {
        rotor_index_close(ix);
        return st;
    }
    *out = ix;
    return ROTOR_OK;
}

rotor_status rotor_index_build(const rotor_params *params, const rotor_matrix *vectors,
                               rotor_index **out) {
    cm_clear_error();
    CM_RETURN_IF(out == NULL, ROTOR_ERR_INVALID_ARGUMENT, "output index pointer must not be NULL");
    *out = NULL;
    rotor_params p = params ? *params : rotor_params_default();
    CM_FORWARD(ix_params_check(&p));
    CM_FORWARD(ix_matrix_check(vectors, "base data"));
    rotor_index *ix;
    CM_FORWARD(ix_create(&p, vectors->cols, vectors->rows, &ix));
    rotor_status st = rotor_index_add(ix, vectors);
    if (st != ROTOR_OK) {
        rotor_index_close(ix);
        return st;
    }
    *out = ix;
    return ROTOR_OK;
}

/* Trains `q` on the build batch if it needs it (PQ codebooks, the centre
 * TurboQuant and binary codes subtract), on the rows exactly as they are
 * encoded: converted, checked and normalised for cosine. */
static rotor_status train(rotor_index *ix, quant *q, size_t n, const char *name) {
    if (ix->count == 0 && q->ops->train != NULL) {
        double t0 = cm_now();
        CM_FORWARD(q->ops->train(q, ix->vectors, n, ix->params.threads));
        ix->train_seconds += cm_now() - t0;
        q->trained = true;
    }
    CM_RETURN_IF(!q->trained, ROTOR_ERR_INVALID_ARGUMENT, "quantizer %s is not trained", name);
    return ROTOR_OK;
}

typedef struct encode_job {
    const rotor_index *ix;
    const quant *q;
    uint8_t *codes;
    size_t begin, end;
    float *scratch; /* q->scratch_floats, then one code */
} encode_job;

static void *encode_run(void *arg) {
    const encode_job *j = arg;
    const quant *q = j->q;
    uint8_t *code = (uint8_t *)(j->scratch + q->scratch_floats);
    for (size_t i = j->begin; i < j->end; i++) {
        q->ops->encode(q, j->ix->vectors + i * j->ix->dim, code, j->scratch);
        q->ops->store(q, j->codes, i, code);
    }
    return NULL;
}

/* Encodes rows [first, first + n) of ix->vectors into q's code store, on
 * the build's threads. Shares are cut at multiples of 32 rows, so no two
 * threads write into one 32-code fast-scan block. */
static rotor_status encode_rows(rotor_index *ix, const quant *q, uint8_t *codes, size_t first,
                                size_t n) {
    enum { MAX_THREADS = 64 };
    unsigned threads = ix_thread_count(ix->params.threads, n / 4096 + 1);
    if (threads > MAX_THREADS)
        threads = MAX_THREADS;
    const size_t per_thread =
        cm_round_up(q->scratch_floats * sizeof(float) + q->code_bytes, CM_ALIGN);
    uint8_t *mem = cm_alloc(&ix->alloc, threads * per_thread, "encoding scratch");
    if (mem == NULL)
        return ROTOR_ERR_OUT_OF_MEMORY;
    encode_job jobs[MAX_THREADS];
    pthread_t tid[MAX_THREADS];
    bool started[MAX_THREADS] = {false};
    /* Cut points at row numbers that are multiples of 32 (the first and
     * last excepted), whatever `first` is. */
    const size_t end = first + n, share = (n + threads - 1) / threads;
    size_t cut[MAX_THREADS + 1];
    cut[0] = first;
    for (unsigned t = 1; t < threads; t++) {
        size_t c = cm_round_up(first + t * share, 32);
        cut[t] = c < end ? c : end;
    }
    cut[threads] = end;
    for (unsigned t = 0; t < threads; t++) {
        size_t hi = cut[t + 1] > cut[t] ? cut[t + 1] : cut[t];
        jobs[t] = (encode_job){ix, q, codes, cut[t], hi, (float *)(mem + t * per_thread)};
    }
    for (unsigned t = 1; t < threads; t++)
        started[t] = pthread_create(&tid[t], NULL, encode_run, &jobs[t]) == 0;
    encode_run(&jobs[0]);
    for (unsigned t = 1; t < threads; t++) {
        if (started[t])
            pthread_join(tid[t], NULL);
        else
            encode_run(&jobs[t]); /* no thread: do its share here */
    }
    cm_free(&ix->alloc, mem);
    return ROTOR_OK;
}

/* Links new rows into the graph as seen through the codes: every row the
 * graph reads is the decoding of its code, so the links are those an index
 * holding codes alone would find. */
static rotor_status insert_from_codes(rotor_index *ix, const graph_space *s) {
    const quant *q = ix->q;
    size_t bytes;
    CM_RETURN_IF(cm_mul_overflow(s->count, s->dim * sizeof(float), &bytes), ROTOR_ERR_OUT_OF_MEMORY,
                 "decoded copy of %zu vectors is too large", s->count);
    float *decoded = cm_alloc(&ix->alloc, bytes, "decoded vectors");
    float *scratch =
        cm_alloc(&ix->alloc, q->scratch_floats * sizeof(float) + q->code_bytes, "decoding scratch");
    rotor_status st = ROTOR_OK;
    if (decoded == NULL || scratch == NULL) {
        st = ROTOR_ERR_OUT_OF_MEMORY;
    } else {
        uint8_t *code = (uint8_t *)(scratch + q->scratch_floats);
        for (size_t i = 0; i < s->count; i++) {
            q->ops->load(q, ix->codes, i, code);
            q->ops->decode(q, code, decoded + i * s->dim, scratch);
        }
        graph_space d = *s;
        d.vectors = decoded;
        st = vamana_insert(ix->graph, &d);
    }
    cm_free(&ix->alloc, scratch);
    cm_free(&ix->alloc, decoded);
    return st;
}

rotor_status rotor_index_add(rotor_index *ix, const rotor_matrix *vectors) {
    cm_clear_error();
    CM_RETURN_IF(ix == NULL, ROTOR_ERR_INVALID_ARGUMENT, "index must not be NULL");
    CM_FORWARD(ix_matrix_check(vectors, "added data"));
    CM_RETURN_IF(vectors->cols != ix->dim, ROTOR_ERR_DIMENSION,
                 "vectors have %zu dimensions, index has %zu", vectors->cols, ix->dim);
    CM_RETURN_IF(ix->store != NULL, ROTOR_ERR_UNSUPPORTED,
                 "an index whose full vectors are on disk takes no new vectors; open it with "
                 "its vectors in RAM to add");
    size_t need;
    CM_RETURN_IF(cm_add_overflow(ix->count, vectors->rows, &need), ROTOR_ERR_INVALID_ARGUMENT,
                 "adding %zu vectors overflows the index size", vectors->rows);
    /* Growing first is safe: the old rows are copied and the count is only
     * raised once every new row converted cleanly. */
    CM_FORWARD(grow(ix, need));
    CM_FORWARD(ix_convert_rows(vectors, ix->metric, ix->vectors + ix->count * ix->dim,
                               ix->count == 0 ? "base data" : "added data"));
    return ix_index_rows(ix, need);
}

rotor_status ix_index_rows(rotor_index *ix, size_t need) {
    const size_t added = need - ix->count;
    if (ix->q != NULL) {
        CM_FORWARD(train(ix, ix->q, added, ix->quant_name));
        CM_FORWARD(encode_rows(ix, ix->q, ix->codes, ix->count, added));
    }
    if (ix->nav_q != NULL) {
        CM_FORWARD(train(ix, ix->nav_q, added, ix->nav_name));
        CM_FORWARD(encode_rows(ix, ix->nav_q, ix->nav_codes, ix->count, added));
    }
    /* The navigators see the new rows before the index counts them, so a
     * failure here leaves the index as it was. */
    graph_space s = ix_space(ix);
    s.count = need;
    if (ix->graph != NULL)
        CM_FORWARD(ix->params.build_space == ROTOR_BUILD_CODES ? insert_from_codes(ix, &s)
                                                               : vamana_insert(ix->graph, &s));
    if (ix->params.kind == ROTOR_INDEX_IVF) {
        if (ix->ivf == NULL) {
            ivf_params fp = {ix->params.nlist, ix_thread_count(ix->params.threads, need),
                             ix->params.seed};
            CM_FORWARD(ivf_build(&ix->alloc, &fp, &s, &ix->ivf));
        } else {
            CM_FORWARD(ivf_add(ix->ivf, &s));
        }
    }
    ix->count = need;
    return ROTOR_OK;
}

graph_space ix_space(const rotor_index *ix) {
    return (graph_space){ix->vectors,
                         ix->count,
                         ix->dim,
                         ix->metric,
                         ix->q,
                         ix->codes,
                         ix->nav_q ? ix->nav_q : ix->q,
                         ix->nav_q ? ix->nav_codes : ix->codes,
                         NULL,
                         NULL};
}

rotor_status ix_search_one(const rotor_index *ix, const rotor_search_params *sp, const float *query,
                           size_t k, int64_t *ids, float *dists, rotor_query_stats *qs) {
    size_t rerank = ix_rerank_depth(ix, sp, k);
    graph_space s = ix_space(ix);
    if (qs != NULL)
        *qs = (rotor_query_stats){0};
    ix_disk_rerank disk = {ix, qs};
    if (ix->store != NULL) {
        s.rerank = ix_rerank_from_disk;
        s.rerank_ctx = &disk;
    }
    switch (ix->params.kind) {
    case ROTOR_INDEX_VAMANA: {
        size_t list = sp->list_size ? sp->list_size : 64;
        size_t refine = sp->refine ? sp->refine : 4 * rerank;
        vamana_search_params vp = {.list = list < k ? k : list,
                                   .refine = refine,
                                   .rerank = rerank,
                                   .starts = sp->start_points ? sp->start_points : 256};
        return vamana_search(ix->graph, &s, query, k, &vp, ids, dists);
    }
    case ROTOR_INDEX_IVF:
        return ivf_search(ix->ivf, &s, query, k, sp->nprobe ? sp->nprobe : 16, rerank, ids, dists);
    case ROTOR_INDEX_FLAT: break;
    }
    return ix->q != NULL ? flat_search_quant(ix, &s, query, k, rerank, ids, dists)
                         : flat_search(ix, query, k, ids, dists);
}

static rotor_status check_search(const rotor_index *ix, size_t k, const int64_t *ids) {
    CM_RETURN_IF(ix == NULL, ROTOR_ERR_INVALID_ARGUMENT, "index must not be NULL");
    CM_RETURN_IF(k == 0, ROTOR_ERR_INVALID_ARGUMENT, "k must be at least 1");
    CM_RETURN_IF(k > ((size_t)1 << 30), ROTOR_ERR_INVALID_ARGUMENT,
                 "k of %zu is larger than any result list rotor returns", k);
    CM_RETURN_IF(ids == NULL, ROTOR_ERR_INVALID_ARGUMENT, "ids output must not be NULL");
    return ROTOR_OK;
}

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

    float *dist_out = distances;
    float *dist_tmp = NULL;
    if (dist_out == NULL) {
        dist_tmp = cm_alloc(&ix->alloc, k * sizeof(float), "search distances");
        if (dist_tmp == NULL)
            return ROTOR_ERR_OUT_OF_MEMORY;
        dist_out = dist_tmp;
    }
    rotor_status st = ROTOR_OK;
    const float *q = query;
    float *qcopy = NULL;
    for (size_t j = 0; j < dim; j++) {
        if (!isfinite(query[j])) {
            st = cm_fail(ROTOR_ERR_NOT_FINITE, "query column %zu is %s", j,
                         isnan(query[j]) ? "NaN" : "infinite");
            goto done;
        }
    }
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
    st = ix_search_one(ix, &sp, q, k, ids, dist_out, sp.stats);
done:
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
    if (st == ROTOR_OK) {
        unsigned threads = ix_thread_count(sp.threads, queries->rows);
        st = ix_search_batch(ix, &sp, q, queries->rows, k, threads, ids,
                             distances ? distances : dist_tmp);
    }
    cm_free(&ix->alloc, dist_tmp);
    cm_free(&ix->alloc, q);
    return st;
}

rotor_status rotor_index_stats_get(const rotor_index *ix, rotor_index_stats *out) {
    cm_clear_error();
    CM_RETURN_IF(ix == NULL || out == NULL, ROTOR_ERR_INVALID_ARGUMENT,
                 "index and output must not be NULL");
    memset(out, 0, sizeof *out);
    out->kind = ix->params.kind;
    out->metric = ix->metric;
    out->count = ix->count;
    out->dim = ix->dim;
    const size_t vector_bytes = ix->count * ix->dim * sizeof(float);
    out->mapped = ix->file != NULL;
    if (ix->graph != NULL) {
        const uint32_t *ids, *off;
        out->graph_degree = vamana_max_degree(ix->graph);
        out->start_groups = vamana_start_groups(ix->graph, &ids, &out->start_points, &off);
    }
    if (ix->store != NULL) {
        out->vectors_on_disk = 1;
        out->bytes_vectors_disk = vector_bytes;
        out->direct_io = vstore_direct(ix->store);
        snprintf(out->io_backend, sizeof out->io_backend, "%s",
                 vstore_backend_name(vstore_backend_used(ix->store)));
        out->io_fallback = vstore_fell_back(ix->store);
        out->bytes_total = sizeof *ix;
    } else {
        out->bytes_vectors = vector_bytes;
        out->bytes_total = ix->capacity * ix->dim * sizeof(float) + sizeof *ix;
    }
    if (ix->q != NULL) {
        out->code_bytes = ix->q->code_bytes;
        out->bytes_codes = ix->q->ops->store_bytes(ix->q, ix->count);
        out->bytes_total += ix->q->ops->store_bytes(ix->q, ix->capacity);
    }
    if (ix->nav_q != NULL) {
        out->bytes_codes += ix->nav_q->ops->store_bytes(ix->nav_q, ix->count);
        out->bytes_total += ix->nav_q->ops->store_bytes(ix->nav_q, ix->capacity);
    }
    if (ix->graph != NULL) {
        out->bytes_graph = vamana_bytes_ids(ix->graph);
        out->bytes_graph_codes = vamana_bytes_codes(ix->graph);
    }
    if (ix->ivf != NULL) {
        out->bytes_graph = ivf_bytes(ix->ivf);
        out->bytes_graph_codes = ivf_bytes_codes(ix->ivf, ix->q);
    }
    out->bytes_total += out->bytes_graph + out->bytes_graph_codes;
    out->train_seconds = ix->train_seconds;
    char name[sizeof ix->nav_name + sizeof ix->quant_name + 1] = {0};
    if (ix->nav_q != NULL)
        snprintf(name, sizeof name, "%s+%s", ix->nav_name, ix->quant_name);
    else
        snprintf(name, sizeof name, "%s", ix->quant_name);
    memcpy(out->quant, name, sizeof out->quant - 1);
    out->quant[sizeof out->quant - 1] = '\0';
    return ROTOR_OK;
}

static rotor_status check_id(const rotor_index *ix, int64_t id) {
    CM_RETURN_IF(id < 0 || (uint64_t)id >= ix->count, ROTOR_ERR_INVALID_ARGUMENT,
                 "id %lld is outside the index (0 to %zu)", (long long)id,
                 ix->count == 0 ? 0 : ix->count - 1);
    return ROTOR_OK;
}

rotor_status rotor_index_reconstruct(const rotor_index *ix, int64_t id, float *out) {
    cm_clear_error();
    CM_RETURN_IF(ix == NULL || out == NULL, ROTOR_ERR_INVALID_ARGUMENT,
                 "index and output must not be NULL");
    CM_FORWARD(check_id(ix, id));
    if (ix->q == NULL) {
        memcpy(out, ix->vectors + (size_t)id * ix->dim, ix->dim * sizeof(float));
        return ROTOR_OK;
    }
    const quant *q = ix->q;
    float *scratch =
        cm_alloc(&ix->alloc, q->scratch_floats * sizeof(float) + q->code_bytes, "decoding scratch");
    if (scratch == NULL)
        return ROTOR_ERR_OUT_OF_MEMORY;
    uint8_t *code = (uint8_t *)(scratch + q->scratch_floats);
    q->ops->load(q, ix->codes, (size_t)id, code);
    q->ops->decode(q, code, out, scratch);
    cm_free(&ix->alloc, scratch);
    return ROTOR_OK;
}

rotor_status rotor_index_estimate(const rotor_index *ix, const float *query, size_t dim,
                                  const int64_t *ids, size_t n, float *distances) {
    cm_clear_error();
    CM_RETURN_IF(ix == NULL || query == NULL || (n > 0 && (ids == NULL || distances == NULL)),
                 ROTOR_ERR_INVALID_ARGUMENT, "index, query, ids and distances must not be NULL");
    CM_RETURN_IF(dim != ix->dim, ROTOR_ERR_DIMENSION, "query has %zu dimensions, index has %zu",
                 dim, ix->dim);
    for (size_t i = 0; i < n; i++)
        CM_FORWARD(check_id(ix, ids[i]));
    float *qn = cm_alloc(&ix->alloc, dim * sizeof(float), "query copy");
    if (qn == NULL)
        return ROTOR_ERR_OUT_OF_MEMORY;
    rotor_matrix m = {(void *)query, 1, dim, ROTOR_ELEM_F32};
    rotor_status st = ix_convert_rows(&m, ix->metric, qn, "query");
    const simd_ops *ops = simd_ops_get();
    if (st == ROTOR_OK && ix->q == NULL) {
        for (size_t i = 0; i < n; i++)
            distances[i] = ix_exact_distance(ix, ops, qn, (size_t)ids[i]);
    } else if (st == ROTOR_OK) {
        const quant *q = ix->q;
        size_t qbytes = cm_round_up(q->query_bytes, CM_ALIGN);
        void *qs = cm_alloc(&ix->alloc, qbytes + q->scratch_floats * sizeof(float), "query state");
        if (qs == NULL) {
            st = ROTOR_ERR_OUT_OF_MEMORY;
        } else {
            q->ops->prepare(q, qn, qs, (float *)((uint8_t *)qs + qbytes));
            for (size_t i = 0; i < n; i++)
                q->ops->scan(q, qs, ix->codes, (size_t)ids[i], 1, &distances[i]);
            cm_free(&ix->alloc, qs);
        }
    }
    cm_free(&ix->alloc, qn);
    return st;
}

size_t ix_rerank_depth(const rotor_index *ix, const rotor_search_params *sp, size_t k) {
    if (ix->q == NULL || sp->rerank == 0)
        return 0;
    size_t depth = sp->rerank < 0 ? 10 * k : (size_t)sp->rerank;
    if (depth < k)
        depth = k;
    return depth < ix->count ? depth : ix->count;
}

void rotor_index_close(rotor_index *ix) {
    if (ix == NULL)
        return;
    rotor_allocator a = ix->alloc;
    vamana_free(ix->graph);
    ivf_free(ix->ivf);
    quant_free(ix->q);
    quant_free(ix->nav_q);
    if (!ix->borrowed) {
        cm_free(&a, ix->nav_codes);
        cm_free(&a, ix->codes);
        if (ix->spill == NULL)
            cm_free(&a, ix->vectors);
    }
    ix_spill_release(ix);
    vstore_close(ix->store);
    ixf_close(ix->file); /* last: the navigators may borrow from it too */
    a.free(a.opaque, ix);
}
