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
#include <stdio.h>
#include <string.h>

#include "common/pool.h"
#include "index/index_internal.h"

/* A code store of `cap` codes holding the first `count` of `old`; stores
 * are laid out by position, so those are a prefix whatever the capacity. */
static uint8_t *grow_store(const rotor_index *ix, const quant *q, const uint8_t *old, size_t cap) {
    uint8_t *codes = cm_calloc_large(&ix->alloc, q->ops->store_bytes(q, cap), "index codes");
    if (codes != NULL && ix->count > 0)
        memcpy(codes, old, q->ops->store_bytes(q, ix->count));
    return codes;
}

/* n coordinates of byte rows as the floats they hold. */
static void widen_rows(const uint8_t *in, size_t n, float *out) {
    for (size_t i = 0; i < n; i++)
        out[i] = (float)in[i];
}

/* The vectors (unless they are on disk) and code stores moved to fresh
 * memory of cap rows; on failure nothing changed. Rows of bytes stay bytes
 * unless `widen` (an add: its rows need not be bytes). */
static rotor_status move_arrays(rotor_index *ix, size_t cap, bool widen) {
    const bool in_ram = ix->store == NULL;
    const bool bytes8 = ix->rows8 != NULL && !widen;
    size_t bytes;
    CM_RETURN_IF(cm_mul_overflow(cap, ix->dim, &bytes) ||
                     cm_mul_overflow(bytes, bytes8 ? 1 : sizeof(float), &bytes),
                 ROTOR_ERR_OUT_OF_MEMORY, "index of %zu vectors of %zu dimensions is too large",
                 cap, ix->dim);
    void *v = in_ram ? cm_alloc_large(&ix->alloc, bytes, "index vectors") : NULL;
    uint8_t *codes = ix->q ? grow_store(ix, ix->q, ix->codes, cap) : NULL;
    uint8_t *walk = ix->walk_q ? grow_store(ix, ix->walk_q, ix->walk_codes, cap) : NULL;
    /* Residuals start with the index; one opened from a file without them
     * stays without (its old rows have none), and its reranks score every
     * candidate. */
    const bool with_resid =
        ix->q != NULL && ix->q->ops->residual != NULL && (ix->count == 0 || ix->resid != NULL);
    float *resid = with_resid ? cm_alloc_large(&ix->alloc, cap * sizeof(float), "residuals") : NULL;
    if ((in_ram && v == NULL) || (ix->q && codes == NULL) || (ix->walk_q && walk == NULL) ||
        (with_resid && resid == NULL)) {
        cm_free(&ix->alloc, v);
        cm_free(&ix->alloc, codes);
        cm_free(&ix->alloc, walk);
        cm_free(&ix->alloc, resid);
        return ROTOR_ERR_OUT_OF_MEMORY;
    }
    const size_t n = ix->count * ix->dim;
    if (bytes8) {
        memcpy(v, ix->rows8, n);
    } else if (in_ram && ix->rows8 != NULL) {
        widen_rows(ix->rows8, n, v);
    } else if (in_ram && n > 0) {
        memcpy(v, ix->vectors, n * sizeof(float));
    }
    if (with_resid && ix->count > 0)
        memcpy(resid, ix->resid, ix->count * sizeof(float));
    if (!ix->borrowed) { /* else they belong to the mapped file */
        cm_free(&ix->alloc, ix->vectors);
        cm_free(&ix->alloc, ix->rows8);
        cm_free(&ix->alloc, ix->codes);
        cm_free(&ix->alloc, ix->walk_codes);
        cm_free(&ix->alloc, ix->resid);
    }
    ix->borrowed = false;
    ix->vectors = bytes8 ? NULL : v;
    ix->rows8 = bytes8 ? v : NULL;
    ix->codes = codes;
    ix->walk_codes = walk;
    ix->resid = resid;
    ix->capacity = cap;
    return ROTOR_OK;
}

rotor_status ix_reserve(rotor_index *ix, size_t need) {
    /* Rows of bytes are widened: an added row need not be one. */
    const bool move = ix->borrowed || ix->rows8 != NULL;
    if (need <= ix->capacity && !move)
        return ROTOR_OK;
    if (move && need <= ix->capacity) /* reused slots are written in place */
        return move_arrays(ix, ix->capacity, true);
    size_t cap = ix->capacity < 1024 ? 1024 : ix->capacity;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    return move_arrays(ix, cap, true);
}

rotor_status ix_own_arrays(rotor_index *ix) {
    CM_FORWARD(ix->nav->ops->own(ix->nav));
    return ix->borrowed ? move_arrays(ix, ix->count > 0 ? ix->count : 1, false) : ROTOR_OK;
}

/* Creates the quantizers named (quant NULL: full precision; walk NULL:
 * walk on quant), their code stores for the index's capacity, and an empty
 * navigator laid out for them, in place of none of them. */
static rotor_status configure(rotor_index *ix, const char *quant_name, const char *walk_quant,
                              size_t rows) {
    const rotor_params *p = &ix->params;
    snprintf(ix->quant_name, sizeof ix->quant_name, "none");
    rotor_status st = ROTOR_OK;
    if (quant_name != NULL) {
        quant_spec spec;
        st = quant_spec_parse(quant_name, &spec);
        if (st == ROTOR_OK) {
            quant_spec_name(&spec, ix->quant_name, sizeof ix->quant_name);
            st = quant_create(&spec, ix->dim, ix->metric, p->seed, &ix->alloc, &ix->q);
        }
    }
    if (st == ROTOR_OK && walk_quant != NULL) {
        quant_spec walk;
        st = quant_spec_parse(walk_quant, &walk);
        if (st == ROTOR_OK) {
            quant_spec_name(&walk, ix->walk_name, sizeof ix->walk_name);
            /* The index codes' seed: with the same centre, the two
             * rotate alike and a search rotates its query once. */
            st = quant_create(&walk, ix->dim, ix->metric, p->seed, &ix->alloc, &ix->walk_q);
        }
    }
    if (st == ROTOR_OK && ix->capacity > 0 && ix->q != NULL) {
        ix->codes = cm_calloc_large(&ix->alloc, ix->q->ops->store_bytes(ix->q, ix->capacity),
                                    "index codes");
        if (ix->codes == NULL)
            st = ROTOR_ERR_OUT_OF_MEMORY;
    }
    /* The residuals that bound q's estimates start with the index (as in
     * move_arrays): an index configured by the automatic choice has them
     * as one given its codes by name does. */
    if (st == ROTOR_OK && ix->capacity > 0 && ix->q != NULL && ix->q->ops->residual != NULL &&
        ix->count == 0) {
        ix->resid = cm_alloc_large(&ix->alloc, ix->capacity * sizeof(float), "residuals");
        if (ix->resid == NULL)
            st = ROTOR_ERR_OUT_OF_MEMORY;
    }
    if (st == ROTOR_OK && ix->capacity > 0 && ix->walk_q != NULL) {
        ix->walk_codes = cm_calloc_large(
            &ix->alloc, ix->walk_q->ops->store_bytes(ix->walk_q, ix->capacity), "index codes");
        if (ix->walk_codes == NULL)
            st = ROTOR_ERR_OUT_OF_MEMORY;
    }
    if (st == ROTOR_OK && ix->default_degree) {
        rotor_params *w = &ix->params;
        w->graph_degree = ix_default_degree(w, !(w->neighbor_codes != 0 && ix->q != NULL));
        if (w->build_list < w->graph_degree)
            w->build_list = w->graph_degree;
    }
    if (st == ROTOR_OK) {
        const nav_params np = ix_nav_params(p, ix->q != NULL, rows);
        const graph_space s = ix_space(ix);
        st = nav_ops_of(p->kind)->create(&ix->alloc, &np, &s, &ix->nav);
    }
    return st;
}

/* Back to no quantizer and no navigator (a failed configure). */
static void unconfigure(rotor_index *ix) {
    if (ix->nav != NULL)
        ix->nav->ops->free(ix->nav);
    quant_free(ix->q);
    quant_free(ix->walk_q);
    cm_free(&ix->alloc, ix->codes);
    cm_free(&ix->alloc, ix->walk_codes);
    cm_free(&ix->alloc, ix->resid);
    ix->nav = NULL;
    ix->q = ix->walk_q = NULL;
    ix->codes = ix->walk_codes = NULL;
    ix->resid = NULL;
    ix->walk_name[0] = '\0';
    ix->shared_rotation = false;
}

rotor_status ix_create(const rotor_params *params, size_t dim, size_t rows, rotor_index **out) {
    *out = NULL;
    rotor_params p = *params;
    const bool default_degree = p.graph_degree == 0;
    ix_params_resolve(&p);
    rotor_index *ix = p.allocator.alloc(p.allocator.opaque, sizeof *ix, CM_ALIGN);
    CM_RETURN_IF(ix == NULL, ROTOR_ERR_OUT_OF_MEMORY, "out of memory allocating the index");
    memset(ix, 0, sizeof *ix);
    ix->params = p;
    ix->default_degree = default_degree && p.kind == ROTOR_INDEX_VAMANA;
    ix->alloc = p.allocator;
    if (ix_sync_create(ix) != ROTOR_OK) {
        p.allocator.free(p.allocator.opaque, ix);
        return ROTOR_ERR_OUT_OF_MEMORY;
    }
    if (p.ram_budget > 0) /* saved with its vectors and records on disk */
        ix->params.full_vectors = ROTOR_VECTORS_DISK;
    ix->params.quant = NULL; /* not kept: the caller owns the strings */
    ix->params.walk_quant = NULL;
    ix->params.labels = NULL; /* set by the build, not kept */
    ix->metric = p.metric;
    ix->dim = dim;
    /* "auto": the first batch chooses the codes and creates the navigator
     * for them (an IVF navigator cannot exist without codes). */
    ix->auto_quant = ix_quant_auto(p.quant);
    snprintf(ix->quant_name, sizeof ix->quant_name, "none");
    const bool named_walk = p.walk_quant != NULL && strcmp(p.walk_quant, "none") != 0;
    rotor_status st = ROTOR_OK;
    if (!ix->auto_quant)
        st = configure(ix, ix_quant_named(p.quant) ? p.quant : NULL,
                       named_walk ? p.walk_quant : NULL, rows);
    if (st != ROTOR_OK) {
        rotor_index_close(ix);
        return st;
    }
    *out = ix;
    return ROTOR_OK;
}

static rotor_status add_rows(rotor_index *ix, const rotor_matrix *vectors, const int64_t *keys,
                             const rotor_labels *labels);
static rotor_status index_rows(rotor_index *ix, size_t need, const uint32_t *reused,
                               size_t nreused);

rotor_status rotor_index_build(const rotor_params *params, const rotor_matrix *vectors,
                               rotor_index **out) {
    return rotor_index_build_with_keys(params, vectors, NULL, out);
}

rotor_status rotor_index_build_with_keys(const rotor_params *params, const rotor_matrix *vectors,
                                         const int64_t *keys, rotor_index **out) {
    cm_clear_error();
    CM_RETURN_IF(out == NULL, ROTOR_ERR_INVALID_ARGUMENT, "output index pointer must not be NULL");
    *out = NULL;
    rotor_params p = params ? *params : rotor_params_default();
    CM_FORWARD(ix_params_check(&p));
    CM_FORWARD(ix_matrix_check(vectors, "base data"));
    CM_FORWARD(ix_labels_fit(p.labels, vectors->rows));
    CM_FORWARD(ix_check_build_memory(&p, vectors->rows, vectors->cols, false));
    rotor_index *ix;
    CM_FORWARD(ix_create(&p, vectors->cols, vectors->rows, &ix));
    ix->hold_out = p.ram_budget == 0; /* rows held out only for the calibration */
    rotor_status st = add_rows(ix, vectors, keys, NULL);
    if (st == ROTOR_OK)
        st = ix_build_calibrate(ix);
    if (st == ROTOR_OK && p.labels != NULL)
        st = rotor_index_set_labels(ix, NULL, p.labels);
    if (st != ROTOR_OK) {
        rotor_index_close(ix);
        return st;
    }
    ix_narrow_rows(ix);
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
    /* Codes of a live index go here, row after row (code_bytes each), to
     * be stored while searches are held (publish_codes): a fast-scan
     * block's bytes hold nibbles or bits of 32 codes, some of which
     * searches read. NULL: straight into `codes`. */
    uint8_t *staged;
    float *resid; /* NULL: no residuals to compute */
    /* Reused slots (job rows [0, n) are slots[i]): their residuals are
     * staged too, after the codes, a search may read a slot's residual
     * once it is linked. NULL: rows [first, end). */
    const uint32_t *slots;
    float *staged_resid;
    size_t first, end;
    uint8_t *scratch; /* per worker: q->scratch_floats, then one code */
    size_t per_worker;
} encode_job;

/* Rows per chunk: a multiple of 32, so no two threads write into one
 * 32-code fast-scan block. */
enum { ENCODE_CHUNK = 4096 };

static void encode_chunk(void *arg, size_t chunk, unsigned worker) {
    const encode_job *j = arg;
    const quant *q = j->q;
    float *scratch = (float *)(j->scratch + worker * j->per_worker);
    uint8_t *code = (uint8_t *)(scratch + q->scratch_floats);
    /* Chunks are cut at absolute row numbers, whatever `first` is. */
    const size_t base = j->first / ENCODE_CHUNK * ENCODE_CHUNK;
    size_t lo = base + chunk * ENCODE_CHUNK, hi = lo + ENCODE_CHUNK;
    lo = lo > j->first ? lo : j->first;
    hi = hi < j->end ? hi : j->end;
    for (size_t i = lo; i < hi; i++) {
        const size_t row = j->slots != NULL ? j->slots[i] : i;
        const float *x = j->ix->vectors + row * j->ix->dim;
        q->ops->encode(q, x, code, scratch);
        if (j->staged != NULL)
            memcpy(j->staged + (i - j->first) * q->code_bytes, code, q->code_bytes);
        else
            q->ops->store(q, j->codes, i, code);
        if (j->resid != NULL && j->staged_resid != NULL)
            j->staged_resid[i] = q->ops->residual(q, x, code, scratch);
        else if (j->resid != NULL)
            j->resid[i] = q->ops->residual(q, x, code, scratch);
    }
}

/* Encodes rows [first, first + n) of ix->vectors, or (slots not NULL)
 * the n rows slots[0..n), into q's code store (and their residuals into
 * resid, unless NULL). In a live index (first > 0, or reused slots) the
 * codes are encoded beside searches and stored while they are held; the
 * residuals of rows past the count, which no search reaches yet, are
 * written at once. */
static rotor_status encode_rows(rotor_index *ix, cm_pool *pool, const quant *q, uint8_t *codes,
                                float *resid, size_t first, const uint32_t *slots, size_t n) {
    if (n == 0)
        return ROTOR_OK;
    const size_t per = cm_round_up(q->scratch_floats * sizeof(float) + q->code_bytes, CM_ALIGN);
    const bool live = first > 0 || slots != NULL;
    encode_job job = {.ix = ix,
                      .q = q,
                      .codes = codes,
                      .resid = resid,
                      .slots = slots,
                      .first = first,
                      .end = first + n,
                      .per_worker = per};
    job.scratch = cm_alloc(&ix->alloc, cm_pool_threads(pool) * per, "encoding scratch");
    if (live && job.scratch != NULL)
        job.staged = cm_alloc_large(&ix->alloc, n * q->code_bytes, "new codes");
    if (slots != NULL && resid != NULL && job.staged != NULL)
        job.staged_resid = cm_alloc(&ix->alloc, n * sizeof(float), "new residuals");
    if (job.scratch == NULL || (live && job.staged == NULL) ||
        (slots != NULL && resid != NULL && job.staged_resid == NULL)) {
        cm_free(&ix->alloc, job.staged);
        cm_free(&ix->alloc, job.scratch);
        return ROTOR_ERR_OUT_OF_MEMORY;
    }
    const size_t base = first / ENCODE_CHUNK * ENCODE_CHUNK;
    cm_pool_run(pool, encode_chunk, &job, (first + n - base + ENCODE_CHUNK - 1) / ENCODE_CHUNK);
    if (job.staged != NULL) {
        ix_publish_begin(ix);
        for (size_t i = 0; i < n; i++) {
            const size_t row = slots != NULL ? slots[i] : first + i;
            q->ops->store(q, codes, row, job.staged + i * q->code_bytes);
            if (job.staged_resid != NULL)
                resid[row] = job.staged_resid[i];
        }
        ix_publish_end(ix);
    }
    cm_free(&ix->alloc, job.staged_resid);
    cm_free(&ix->alloc, job.staged);
    cm_free(&ix->alloc, job.scratch);
    return ROTOR_OK;
}

/* Trains the quantizers on a first batch and encodes the new rows (the
 * nreused slots `reused`, then `added` rows past the count), on one pool
 * of the build's threads. */
static rotor_status encode_new_rows(rotor_index *ix, const uint32_t *reused, size_t nreused,
                                    size_t added) {
    if (ix->q == NULL && ix->walk_q == NULL)
        return ROTOR_OK; /* full precision: no threads to start */
    cm_pool pool;
    CM_FORWARD(cm_pool_start(&pool, &ix->alloc,
                             cm_thread_count(ix->params.threads, (added + nreused) / 4096 + 1)));
    rotor_status st = ROTOR_OK;
    if (ix->q != NULL) {
        st = train(ix, ix->q, added, ix->quant_name);
        if (st == ROTOR_OK)
            st = encode_rows(ix, &pool, ix->q, ix->codes, ix->resid, 0, reused, nreused);
        if (st == ROTOR_OK)
            st = encode_rows(ix, &pool, ix->q, ix->codes, ix->resid, ix->count, NULL, added);
    }
    if (st == ROTOR_OK && ix->walk_q != NULL) {
        st = train(ix, ix->walk_q, added, ix->walk_name);
        if (st == ROTOR_OK)
            st = encode_rows(ix, &pool, ix->walk_q, ix->walk_codes, NULL, 0, reused, nreused);
        if (st == ROTOR_OK)
            st = encode_rows(ix, &pool, ix->walk_q, ix->walk_codes, NULL, ix->count, NULL, added);
        if (st == ROTOR_OK && !ix->shared_rotation)
            ix->shared_rotation = quant_same_rotation(ix->q, ix->walk_q);
    }
    cm_pool_stop(&pool);
    return st;
}

rotor_status rotor_index_add(rotor_index *ix, const rotor_matrix *vectors) {
    cm_clear_error();
    CM_RETURN_IF(ix == NULL, ROTOR_ERR_INVALID_ARGUMENT, "index must not be NULL");
    return add_rows(ix, vectors, NULL, NULL);
}

rotor_status rotor_index_add_with_keys(rotor_index *ix, const rotor_matrix *vectors,
                                       const int64_t *keys) {
    cm_clear_error();
    CM_RETURN_IF(ix == NULL, ROTOR_ERR_INVALID_ARGUMENT, "index must not be NULL");
    return add_rows(ix, vectors, keys, NULL);
}

rotor_status rotor_index_add_with_labels(rotor_index *ix, const rotor_matrix *vectors,
                                         const int64_t *keys, const rotor_labels *labels) {
    cm_clear_error();
    CM_RETURN_IF(ix == NULL, ROTOR_ERR_INVALID_ARGUMENT, "index must not be NULL");
    return add_rows(ix, vectors, keys, labels);
}

/* The keys are staged first, so a taken key is refused before any work;
 * they stay staged (invisible to lookups) until the rows are counted.
 * Searches go on meanwhile (sync.c): they are held while the keys are
 * staged and the arrays grown, while the codes are stored, while the
 * navigator publishes its links, and for the count; the rows are
 * converted, encoded and linked beside them, in slots no search reads. */
/* Rows [0, r) of `vectors` converted into the free slots `reused`: into
 * a buffer beside searches, then copied while they are held (a flat scan
 * reads every row, removed or not), with rows [r, n) past the count. */
static rotor_status convert_reusing(rotor_index *ix, const rotor_matrix *vectors,
                                    const uint32_t *reused, size_t r) {
    const size_t d = ix->dim, n = vectors->rows;
    float *buf = cm_alloc_large(&ix->alloc, n * d * sizeof *buf, "added vectors");
    if (buf == NULL)
        return ROTOR_ERR_OUT_OF_MEMORY;
    rotor_status st = ix_convert_rows(vectors, ix->metric, buf, "added data");
    if (st == ROTOR_OK) {
        memcpy(ix->vectors + ix->count * d, buf + r * d, (n - r) * d * sizeof *buf);
        ix_publish_begin(ix);
        for (size_t i = 0; i < r; i++)
            memcpy(ix->vectors + (size_t)reused[i] * d, buf + i * d, d * sizeof *buf);
        ix_publish_end(ix);
    }
    cm_free(&ix->alloc, buf);
    return st;
}

static rotor_status add_locked(rotor_index *ix, const rotor_matrix *vectors, const int64_t *keys) {
    /* Free slots first (remove.c), lowest first; the rest past the count. */
    if (ix->free_stale && ix->pending == 0 && ix_free_rebuild(ix) != ROTOR_OK)
        cm_clear_error(); /* listed by a later add; this one appends */
    const size_t r = vectors->rows < ix_free(ix) ? vectors->rows : ix_free(ix);
    const uint32_t *reused = r > 0 ? ix->free_slot + ix->free_at : NULL;
    size_t need;
    CM_RETURN_IF(cm_add_overflow(ix->count, vectors->rows - r, &need), ROTOR_ERR_INVALID_ARGUMENT,
                 "adding %zu vectors overflows the index size", vectors->rows);
    /* Nothing to search yet: the first batch is a build, held whole. */
    if (ix->count == 0)
        ix_write_hold(ix);
    ix_publish_begin(ix);
    rotor_status st = ix_keys_stage(ix, keys, vectors->rows, reused, r);
    /* Growing first is safe: the old rows are copied and the count is only
     * raised once every new row converted cleanly. */
    if (st == ROTOR_OK) {
        st = ix_reserve(ix, need);
        if (st != ROTOR_OK)
            ix_keys_rollback(ix);
    }
    ix->reusing = st == ROTOR_OK && r > 0;
    ix_publish_end(ix);
    if (st != ROTOR_OK)
        return st;
    if (r > 0)
        st = convert_reusing(ix, vectors, reused, r);
    else
        st = ix_convert_rows(vectors, ix->metric, ix->vectors + ix->count * ix->dim,
                             ix->count == 0 ? "base data" : "added data");
    if (st == ROTOR_OK)
        st = index_rows(ix, need, reused, r);
    if (st != ROTOR_OK) {
        /* A reused slot keeps the new row and codes: it is still removed
         * and free, and nothing leads to it. */
        ix_publish_begin(ix);
        ix_keys_rollback(ix);
        ix->reusing = false;
        ix_publish_end(ix);
        return st;
    }
    ix_keys_commit(ix);
    return ROTOR_OK;
}

static rotor_status check_added(const rotor_index *ix, const rotor_matrix *vectors) {
    CM_FORWARD(ix_matrix_check(vectors, "added data"));
    CM_RETURN_IF(vectors->cols != ix->dim, ROTOR_ERR_DIMENSION,
                 "vectors have %zu dimensions, index has %zu", vectors->cols, ix->dim);
    CM_RETURN_IF(ix->store != NULL, ROTOR_ERR_UNSUPPORTED,
                 "an index whose full vectors are on disk takes no new vectors; open it with "
                 "its vectors in RAM to add");
    return ROTOR_OK;
}

rotor_status ix_add(rotor_index *ix, const rotor_matrix *vectors, const int64_t *keys) {
    CM_FORWARD(check_added(ix, vectors));
    return add_locked(ix, vectors, keys);
}

/* An add whose rows carry labels (NULL: none) is one change: the labels
 * are made first, for the slots the rows will take, so that nothing can
 * fail once the rows are in; they are swapped in right after. */
static rotor_status add_labelled(rotor_index *ix, const rotor_matrix *vectors, const int64_t *keys,
                                 const rotor_labels *labels) {
    CM_FORWARD(check_added(ix, vectors));
    if (labels == NULL)
        return add_locked(ix, vectors, keys);
    CM_FORWARD(ix_labels_fit(labels, vectors->rows));
    ix_labels staged;
    CM_FORWARD(ix_labels_stage_add(ix, vectors->rows, labels, &staged));
    const rotor_status st = add_locked(ix, vectors, keys);
    if (st != ROTOR_OK) {
        ix_labels_drop_staged(ix, &staged);
        return st;
    }
    ix_labels_take_staged(ix, &staged);
    return ROTOR_OK;
}

static rotor_status add_rows(rotor_index *ix, const rotor_matrix *vectors, const int64_t *keys,
                             const rotor_labels *labels) {
    ix_write_begin(ix);
    /* log.c: recorded in the file first when the index was opened writable. */
    const rotor_status st = ix_log_add(ix, vectors, keys, labels, add_labelled);
    ix_write_end(ix);
    return st;
}

rotor_status ix_encode_rows(rotor_index *ix, size_t need) {
    return encode_new_rows(ix, NULL, 0, need - ix->count);
}

/* The automatic choice, on the first batch, and the index configured for
 * it; on failure the index is as it was. */
static rotor_status choose_codes(rotor_index *ix, size_t n) {
    char name[32], walk[32];
    bool neighbor_codes;
    if (ix->params.ram_budget > 0) {
        ix_budget_quant(ix->dim, n, ix->params.ram_budget, ix->params.neighbor_codes != 0,
                        ix->params.graph_degree, name, sizeof name);
        walk[0] = 0;
        neighbor_codes = ix->params.neighbor_codes != 0; /* in the node pages */
    } else {
        CM_FORWARD(ix_auto_configure(ix, n, name, sizeof name, walk, sizeof walk, &neighbor_codes));
    }
    const int saved_nbr = ix->params.neighbor_codes;
    ix->params.neighbor_codes = neighbor_codes;
    rotor_status st =
        configure(ix, strcmp(name, "none") != 0 ? name : NULL, walk[0] ? walk : NULL, n);
    if (st != ROTOR_OK) {
        unconfigure(ix);
        ix->params.neighbor_codes = saved_nbr;
        return st;
    }
    ix->auto_quant = false;
    return ROTOR_OK;
}

/* ix_index_rows, with the first nreused rows in the free slots `reused`
 * (ix->free_slot + free_at). */
static rotor_status index_rows(rotor_index *ix, size_t need, const uint32_t *reused,
                               size_t nreused) {
    if (ix->count == 0 && ix->auto_quant)
        CM_FORWARD(choose_codes(ix, need));
    CM_FORWARD(encode_new_rows(ix, reused, nreused, need - ix->count));
    if (ix->count == 0 && ix->hold_out)
        CM_FORWARD(ix_hold_out(ix, need));
    /* The navigator sees the new rows before the index counts them, so a
     * failure here leaves the index as it was, and searches meanwhile
     * pass over them (reused slots are still marked removed). */
    graph_space s = ix_space(ix);
    s.count = need;
    if (ix->count == 0 && ix->held_bits != NULL) { /* the graph leaves them out */
        s.deleted = ix->held_bits;
        s.deleted_bits = need;
    }
    s.publish = ix->count > 0 ? ix_publish_lock(ix) : NULL;
    s.reused = reused;
    s.nreused = nreused;
    s.spill_beside = ix->spill_beside;
    CM_FORWARD(ix->nav->ops->insert(ix->nav, &s));
    ix_publish_begin(ix);
    for (size_t i = 0; i < nreused; i++)
        cm_bit_clear(ix->deleted, reused[i]);
    ix->ndeleted -= nreused;
    ix->free_at += nreused;
    ix->reusing = false;
    if (ix->params.kind == ROTOR_INDEX_IVF && ix->params.nlist == 0) {
        /* The partitions a first batch chose, kept as an opened file keeps
         * them: what a filtered search weighs without asking the lists. */
        nav_stats ns;
        ix->nav->ops->stats(ix->nav, &s, &ns);
        ix->params.nlist = ns.partitions;
    }
    ix->count = need;
    ix_publish_end(ix);
    return ROTOR_OK;
}

rotor_status ix_index_rows(rotor_index *ix, size_t need) { return index_rows(ix, need, NULL, 0); }

rotor_status ix_build_calibrate(rotor_index *ix) {
    rotor_status st = ROTOR_OK;
    /* Exact searches need no table; a graph built for a RAM budget is
     * searched on disk, which the table (measured in RAM) does not tell. */
    if (ix->params.calibrate && ix->params.ram_budget == 0 &&
        (ix->q != NULL || ix->params.kind != ROTOR_INDEX_FLAT))
        st = ix_calibrate(ix, NULL, 0, ix->params.threads, true);
    /* The held-out rows join the graph once measured; a failed (or
     * cancelled) calibration fails the build, which links nothing more. */
    return st == ROTOR_OK ? ix_link_held(ix) : st;
}

rotor_status ix_link_held(rotor_index *ix) {
    if (ix->held == NULL)
        return ROTOR_OK;
    /* Inserted as an add fills free slots: rows that are in the index
     * already, which no edge or starting point leads to. */
    graph_space s = ix_space(ix);
    s.reused = ix->held;
    s.nreused = ix->nheld;
    s.publish = ix_publish_lock(ix);
    const rotor_status st = ix->nav->ops->insert(ix->nav, &s);
    cm_free(&ix->alloc, ix->held);
    cm_free(&ix->alloc, ix->held_bits);
    ix->held = NULL;
    ix->held_bits = NULL;
    ix->nheld = 0;
    return st;
}

rotor_status ix_full_vectors(const rotor_index *ix, const float **out, float **widened) {
    *widened = NULL;
    *out = ix->vectors;
    if (ix->vectors != NULL)
        return ROTOR_OK;
    if (ix->rows8 != NULL) {
        const size_t n = ix->count * ix->dim;
        float *v = cm_alloc_large(&ix->alloc, (n > 0 ? n : 1) * sizeof *v, "widened vectors");
        if (v == NULL)
            return ROTOR_ERR_OUT_OF_MEMORY;
        widen_rows(ix->rows8, n, v);
        *out = *widened = v;
        return ROTOR_OK;
    }
    CM_RETURN_IF(ix->file == NULL, ROTOR_ERR_UNSUPPORTED, "the index holds no full vectors");
    CM_FORWARD(ixf_fill(ix->file, IXF_SEC_VECTORS));
    *out = (const float *)ixf_get(ix->file, IXF_SEC_VECTORS).data;
    return ROTOR_OK;
}

rotor_status ix_row_get(const rotor_index *ix, size_t slot, float *out) {
    if (ix->rows8 != NULL)
        widen_rows(ix->rows8 + slot * ix->dim, ix->dim, out);
    else
        memcpy(out, ix->vectors + slot * ix->dim, ix->dim * sizeof(float));
    return ROTOR_OK;
}

bool ix_rows_fit_bytes(const rotor_index *ix, const float *vectors, size_t count) {
    const rotor_params *p = &ix->params;
    if (vectors == NULL || ix->metric == ROTOR_METRIC_COSINE ||
        p->full_vectors == ROTOR_VECTORS_DISK || p->ram_budget != 0)
        return false;
    for (size_t i = 0; i < count * ix->dim; i++) {
        const float v = vectors[i];
        if (!(v >= 0.0f && v <= 255.0f) || v != (float)(uint8_t)v || signbit(v))
            return false;
    }
    return true;
}

void ix_narrow_rows(rotor_index *ix) {
    if (ix->borrowed || ix->spill != NULL || ix->store != NULL || ix->count == 0 ||
        !ix_rows_fit_bytes(ix, ix->vectors, ix->count))
        return;
    const size_t n = ix->count * ix->dim;
    uint8_t *rows = cm_alloc_large(&ix->alloc, n, "vectors as bytes");
    if (rows == NULL) { /* the floats serve as well */
        cm_clear_error();
        return;
    }
    for (size_t i = 0; i < n; i++)
        rows[i] = (uint8_t)ix->vectors[i];
    cm_free(&ix->alloc, ix->vectors);
    ix->vectors = NULL;
    ix->rows8 = rows; /* count rows: the next add widens them (ix_reserve) */
}

graph_space ix_space(const rotor_index *ix) {
    return (graph_space){
        .vectors = ix->vectors,
        .rows8 = ix->rows8,
        .count = ix->count,
        .dim = ix->dim,
        .metric = ix->metric,
        .q = ix->q,
        .codes = ix->codes,
        .walk_q = ix->walk_q ? ix->walk_q : ix->q,
        .walk_codes = ix->walk_q ? ix->walk_codes : ix->codes,
        .shared_rotation = ix->shared_rotation,
        .resid = ix->resid,
        .deleted = ix->deleted,
        .deleted_bits = ix->deleted_bits,
    };
}

void ix_stats(const rotor_index *ix, rotor_index_stats *out) {
    memset(out, 0, sizeof *out);
    out->kind = ix->params.kind;
    out->metric = ix->metric;
    out->count = ix_live(ix);
    out->slots = ix->count;
    out->deleted = ix->ndeleted;
    out->unconsolidated = ix->pending;
    out->free_slots = ix_free(ix);
    out->dim = ix->dim;
    const size_t row_bytes = ix->dim * (ix->rows8 != NULL ? 1 : sizeof(float));
    const size_t vector_bytes = ix->count * row_bytes;
    out->mapped = ix->file != NULL;
    const graph_space space = ix_space(ix);
    nav_stats ns;
    ix->nav->ops->stats(ix->nav, &space, &ns);
    out->copied = !ix->borrowed && ns.disk_nodes == 0;
    out->graph_degree = ns.degree;
    out->start_points = ns.start_points;
    out->start_groups = ns.start_groups;
    out->build_shards = ns.build_shards;
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
        out->bytes_total =
            (ix->rows8 != NULL ? vector_bytes : ix->capacity * row_bytes) + sizeof *ix;
    }
    if (ix->q != NULL) {
        out->code_bytes = ix->q->code_bytes;
        out->bytes_codes = ix->q->ops->store_bytes(ix->q, ix->count);
        out->bytes_total += ix->q->ops->store_bytes(ix->q, ix->capacity);
    }
    if (ix->resid != NULL) { /* a float per code: part of what the codes cost */
        out->bytes_codes += ix->count * sizeof(float);
        out->bytes_total += ix->capacity * sizeof(float);
    }
    if (ix->walk_q != NULL) {
        out->bytes_codes += ix->walk_q->ops->store_bytes(ix->walk_q, ix->count);
        out->bytes_total += ix->walk_q->ops->store_bytes(ix->walk_q, ix->capacity);
    }
    out->labelled = ix->labels.labelled;
    out->labels = ix->labels.nlabels;
    out->bytes_labels = ix_labels_bytes(ix);
    out->bytes_total += out->bytes_labels;
    out->user_keys = ix->keys.key != NULL;
    out->bytes_keys = ix_keys_bytes(ix);
    out->bytes_total += out->bytes_keys;
    out->bytes_graph = ns.bytes_ids;
    out->bytes_graph_codes = ns.bytes_codes;
    out->bytes_total += out->bytes_graph + out->bytes_graph_codes;
    if (ns.disk_nodes > 0) {
        /* A graph on disk reads only its walking codes in RAM (the index's
         * codes and residuals stay in the file, untouched). */
        const quant *w = space.walk_q;
        const size_t walk_bytes = ns.disk_codes ? 0 : w->ops->store_bytes(w, ix->count);
        out->bytes_total = out->bytes_total - out->bytes_codes + walk_bytes;
        out->bytes_codes = walk_bytes;
        out->graph_on_disk = ns.disk_nodes;
        out->graph_cached = ns.cached_nodes;
    }
    out->train_seconds = ix->train_seconds;
    snprintf(out->quant, sizeof out->quant, "%s", ix->quant_name);
    snprintf(out->walk_quant, sizeof out->walk_quant, "%s", ix->walk_q ? ix->walk_name : "");
    ix_log_stats(ix, out);
}

rotor_status rotor_index_stats_get(const rotor_index *ix, rotor_index_stats *out) {
    cm_clear_error();
    CM_RETURN_IF(ix == NULL || out == NULL, ROTOR_ERR_INVALID_ARGUMENT,
                 "index and output must not be NULL");
    ix_read_begin(ix);
    ix_stats(ix, out);
    ix_read_end(ix);
    return ROTOR_OK;
}

static rotor_status reconstruct_locked(const rotor_index *ix, int64_t id, float *out) {
    size_t slot;
    CM_FORWARD(ix_slot_of(ix, id, &slot));
    if (ix->q == NULL)
        return ix_row_get(ix, slot, out);
    const quant *q = ix->q;
    float *scratch =
        cm_alloc(&ix->alloc, q->scratch_floats * sizeof(float) + q->code_bytes, "decoding scratch");
    if (scratch == NULL)
        return ROTOR_ERR_OUT_OF_MEMORY;
    uint8_t *code = (uint8_t *)(scratch + q->scratch_floats);
    q->ops->load(q, ix->codes, slot, code);
    q->ops->decode(q, code, out, scratch);
    cm_free(&ix->alloc, scratch);
    return ROTOR_OK;
}

rotor_status rotor_index_reconstruct(const rotor_index *ix, int64_t id, float *out) {
    cm_clear_error();
    CM_RETURN_IF(ix == NULL || out == NULL, ROTOR_ERR_INVALID_ARGUMENT,
                 "index and output must not be NULL");
    ix_read_begin(ix);
    const rotor_status st = reconstruct_locked(ix, id, out);
    ix_read_end(ix);
    return st;
}

static rotor_status estimate_locked(const rotor_index *ix, const float *query, size_t dim,
                                    const int64_t *ids, size_t n, float *distances) {
    size_t *slot = cm_alloc(&ix->alloc, (n > 0 ? n : 1) * sizeof *slot, "slots of the keys");
    if (slot == NULL)
        return ROTOR_ERR_OUT_OF_MEMORY;
    rotor_status st = ROTOR_OK;
    for (size_t i = 0; i < n && st == ROTOR_OK; i++)
        st = ix_slot_of(ix, ids[i], &slot[i]);
    float *qn = st == ROTOR_OK ? cm_alloc(&ix->alloc, dim * sizeof(float), "query copy") : NULL;
    if (st != ROTOR_OK || qn == NULL) {
        cm_free(&ix->alloc, slot);
        return st != ROTOR_OK ? st : ROTOR_ERR_OUT_OF_MEMORY;
    }
    rotor_matrix m = {(void *)query, 1, dim, ROTOR_ELEM_F32};
    st = ix_convert_rows(&m, ix->metric, qn, "query");
    const simd_ops *ops = simd_ops_get();
    if (st == ROTOR_OK && ix->q == NULL) {
        const graph_space s = ix_space(ix);
        for (size_t i = 0; i < n; i++)
            distances[i] = graph_row_distance(ops, &s, qn, slot[i]);
    } else if (st == ROTOR_OK) {
        const quant *q = ix->q;
        size_t qbytes = cm_round_up(q->query_bytes, CM_ALIGN);
        void *qs = cm_alloc(&ix->alloc, qbytes + q->scratch_floats * sizeof(float), "query state");
        if (qs == NULL) {
            st = ROTOR_ERR_OUT_OF_MEMORY;
        } else {
            q->ops->prepare(q, qn, qs, (float *)((uint8_t *)qs + qbytes));
            for (size_t i = 0; i < n; i++)
                q->ops->scan(q, qs, ix->codes, slot[i], 1, &distances[i]);
            cm_free(&ix->alloc, qs);
        }
    }
    cm_free(&ix->alloc, qn);
    cm_free(&ix->alloc, slot);
    return st;
}

rotor_status rotor_index_estimate(const rotor_index *ix, const float *query, size_t dim,
                                  const int64_t *ids, size_t n, float *distances) {
    cm_clear_error();
    CM_RETURN_IF(ix == NULL || query == NULL || (n > 0 && (ids == NULL || distances == NULL)),
                 ROTOR_ERR_INVALID_ARGUMENT, "index, query, ids and distances must not be NULL");
    CM_RETURN_IF(dim != ix->dim, ROTOR_ERR_DIMENSION, "query has %zu dimensions, index has %zu",
                 dim, ix->dim);
    ix_read_begin(ix);
    const rotor_status st = estimate_locked(ix, query, dim, ids, n, distances);
    ix_read_end(ix);
    return st;
}

void rotor_index_close(rotor_index *ix) {
    if (ix == NULL)
        return;
    rotor_allocator a = ix->alloc;
    if (ix->nav != NULL)
        ix->nav->ops->free(ix->nav);
    quant_free(ix->q);
    quant_free(ix->walk_q);
    if (!ix->borrowed) {
        cm_free(&a, ix->walk_codes);
        cm_free(&a, ix->codes);
        cm_free(&a, ix->resid);
        if (ix->spill == NULL)
            cm_free(&a, ix->vectors);
        cm_free(&a, ix->rows8);
    }
    ix_spill_release(ix);
    ix_tuning_free(ix);
    cm_free(&a, ix->held);
    cm_free(&a, ix->held_bits);
    ix_labels_free(ix);
    ix_keys_free(ix);
    ix_deleted_free(ix);
    ix_log_close(ix);
    ix_sync_free(ix);
    vstore_close(ix->store);
    ixf_close(ix->file); /* last: the navigators may borrow from it too */
    a.free(a.opaque, ix);
}
