/*
 * rotor_index_save: the index's arrays written byte for byte into the
 * sections of one file (storage/FORMAT.md), so that opening can map them
 * instead of parsing: the quantizers' parameter blocks, their code stores
 * (and the residuals that bound the first one's estimates), the
 * navigator's own sections, and the full vectors last, so the
 * in-memory sections sit together at the front.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "index/index_internal.h"

static rotor_status put_quant(const rotor_index *ix, ixf_writer *w, ixf_section_id id,
                              const quant *q) {
    size_t n = quant_saved_size(q);
    uint8_t *buf = cm_alloc(&ix->alloc, n, "a quantizer block");
    if (buf == NULL)
        return ROTOR_ERR_OUT_OF_MEMORY;
    rotor_status st = quant_save(q, buf, n);
    if (st == ROTOR_OK)
        st = ixf_put_section(w, id, buf, n);
    cm_free(&ix->alloc, buf);
    return st;
}

static void fill_meta(const rotor_index *ix, const nav_stats *ns, ixf_meta *m) {
    memset(m, 0, sizeof *m);
    const rotor_params *p = &ix->params;
    m->kind = (uint32_t)p->kind;
    m->metric = (uint32_t)ix->metric;
    m->dim = ix->dim;
    m->count = ix->count;
    snprintf(m->quant, sizeof m->quant, "%s", ix->quant_name);
    snprintf(m->walk_quant, sizeof m->walk_quant, "%s", ix->walk_q ? ix->walk_name : "");
    m->seed = p->seed;
    m->graph_degree = p->graph_degree;
    m->build_list = p->build_list;
    m->neighbor_codes = p->neighbor_codes != 0 && p->ram_budget == 0; /* the RAM records' */
    m->build_space = (uint32_t)p->build_space;
    m->nlist = ns->partitions ? ns->partitions : p->nlist;
    m->alpha = p->alpha;
    m->vectors_on_disk = p->full_vectors == ROTOR_VECTORS_DISK;
    m->train_seconds = ix->train_seconds;
    snprintf(m->tool, sizeof m->tool, "rotor %s", rotor_version_string());
    m->created = (uint64_t)time(NULL);
}

/* The vectors section as bytes, narrowed a slice at a time. */
static rotor_status put_bytes(const rotor_index *ix, ixf_writer *w, const float *vectors) {
    if (ix->rows8 != NULL)
        return ixf_put_section(w, IXF_SEC_VECTORS8, ix->rows8, ix->count * ix->dim);
    enum { SLICE = 1 << 14 };
    uint8_t buf[SLICE];
    CM_FORWARD(ixf_section_begin(w, IXF_SEC_VECTORS8));
    const size_t n = ix->count * ix->dim;
    for (size_t at = 0; at < n; at += SLICE) {
        const size_t m = n - at < SLICE ? n - at : SLICE;
        for (size_t i = 0; i < m; i++)
            buf[i] = (uint8_t)vectors[at + i];
        CM_FORWARD(ixf_append(w, buf, m));
    }
    return ixf_section_end(w);
}

static rotor_status save_locked(const rotor_index *ix, const char *path) {
    CM_RETURN_IF(ix->count == 0, ROTOR_ERR_EMPTY, "an empty index cannot be saved");
    /* Over the file a writable index appends to: its log goes on in the
     * new file (log.c). */
    if (ix_log_writes_to(ix, path))
        return ix_log_save_over(ix, path);
    return ix_save(ix, path, NULL);
}

rotor_status ix_save(const rotor_index *ix, const char *path, ixf_kept *kept) {
    /* Vectors on disk are copied from the file this index was opened from:
     * it stays mapped and unchanged even if `path` names it. */
    const void *vectors = ix->vectors;
    if (ix->store != NULL) {
        /* A loaded open reads the vectors section only now (ixf_fill). */
        CM_FORWARD(ixf_fill(ix->file, IXF_SEC_VECTORS));
        vectors = ixf_get(ix->file, IXF_SEC_VECTORS).data;
    }
    ixf_writer *w;
    CM_FORWARD(ixf_create(&ix->alloc, path, &w));
    rotor_status st = ROTOR_OK;
    if (ix->q != NULL) {
        st = put_quant(ix, w, IXF_SEC_QUANT, ix->q);
        if (st == ROTOR_OK)
            st = ixf_put_section(w, IXF_SEC_CODES, ix->codes,
                                 ix->q->ops->store_bytes(ix->q, ix->count));
    }
    if (st == ROTOR_OK && ix->resid != NULL)
        st = ixf_put_section(w, IXF_SEC_RESIDUALS, ix->resid, ix->count * sizeof(float));
    if (st == ROTOR_OK && ix->walk_q != NULL) {
        st = put_quant(ix, w, IXF_SEC_WALK_QUANT, ix->walk_q);
        if (st == ROTOR_OK)
            st = ixf_put_section(w, IXF_SEC_WALK_CODES, ix->walk_codes,
                                 ix->walk_q->ops->store_bytes(ix->walk_q, ix->count));
    }
    if (st == ROTOR_OK)
        st = ix_tuning_save(ix, w);
    if (st == ROTOR_OK)
        st = ix_labels_save(ix, w);
    if (st == ROTOR_OK)
        st = ix_keys_save(ix, w);
    if (st == ROTOR_OK)
        st = ix_deleted_save(ix, w);
    graph_space space = ix_space(ix);
    space.vectors = vectors; /* a graph's node pages hold them (vectors on disk: the file's) */
    if (st == ROTOR_OK && ix->nav->ops->save != NULL)
        st = ix->nav->ops->save(ix->nav, &space, w);
    /* Last, so the in-memory sections sit together at the front. */
    if (st == ROTOR_OK && (ix->rows8 != NULL || ix_rows_fit_bytes(ix, vectors, ix->count)))
        st = put_bytes(ix, w, vectors);
    else if (st == ROTOR_OK)
        st = ixf_put_section(w, IXF_SEC_VECTORS, vectors, ix->count * ix->dim * sizeof(float));
    if (st != ROTOR_OK) {
        ixf_abort(w);
        return st;
    }
    nav_stats ns;
    ix->nav->ops->stats(ix->nav, &space, &ns);
    ixf_meta m;
    fill_meta(ix, &ns, &m);
    return kept != NULL ? ixf_commit_keep(w, &m, kept) : ixf_commit(w, &m);
}

/* A save reads the whole index but changes nothing: it takes the
 * writers' turn, so no writer runs meanwhile, and searches go on. */
rotor_status rotor_index_save(const rotor_index *ix, const char *path) {
    cm_clear_error();
    CM_RETURN_IF(ix == NULL || path == NULL, ROTOR_ERR_INVALID_ARGUMENT,
                 "index and path must not be NULL");
    ix_write_begin(ix);
    const rotor_status st = save_locked(ix, path);
    ix_write_end(ix);
    return st;
}
