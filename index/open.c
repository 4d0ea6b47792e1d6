/*
 * Index files: rotor_index_open and rotor_index_verify.
 *
 * Design choices
 *   - Sections hold the in-memory arrays byte for byte (vectors, code
 *     stores, graph records, IVF lists), so opening maps the file and points
 *     the index into the mapping: nothing is parsed or copied, and a large
 *     index opens in milliseconds. Only the small parts are decoded and
 *     copied: the quantizers (rebuilt from their parameter blocks) and
 *     what the navigator decodes of its own sections (graph/nav_ops.open).
 *   - Open hashes the small sections it decodes, always; the large ones
 *     only with verify. Hashing every byte would make opening cost a full
 *     read of the file, vectors included, which is what mapping avoids.
 *     Instead every array from the file is checked for what a writer
 *     other than rotor could get wrong while the checksums still match:
 *     sizes, counts and parameters against the header at open; the ids a
 *     navigator holds where its open finds it cheap (IVF's contiguous
 *     lists), else where they are used (a graph search refuses a record it
 *     finds impossible) and whole at verify, at a loading open and at the
 *     first add. Codes and vectors hold no ids.
 *   - With the vectors on disk the mapping still covers them, but nothing
 *     touches those pages: reranks read rows through the vector store
 *     (io_uring, O_DIRECT; search.c), so RAM holds the graph and codes only.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "index/index_internal.h"

/* A quantizer from its block, checked against the header's description. */
static rotor_status load_quant(rotor_index *ix, ixf_section_id id, const char *name, quant **out) {
    const ixf_file *f = ix->file;
    ixf_section sec = ixf_get(f, id);
    CM_RETURN_IF(sec.data == NULL, ROTOR_ERR_FORMAT,
                 "'%s' names quantizer %s but holds no %s section", ixf_path(f), name,
                 ixf_section_name(id));
    CM_FORWARD(ixf_check(f, id));
    rotor_status st = quant_load(sec.data, (size_t)sec.size, &ix->alloc, out);
    if (st != ROTOR_OK)
        return cm_fail_prefix(st, ixf_path(f));
    char got[32];
    quant_spec_name(&(*out)->spec, got, sizeof got);
    CM_RETURN_IF(strcmp(got, name) != 0 || (*out)->dim != ix->dim || (*out)->metric != ix->metric,
                 ROTOR_ERR_FORMAT,
                 "'%s': the %s section holds a %s quantizer of %zu dimensions; the header says "
                 "%s of %zu",
                 ixf_path(f), ixf_section_name(id), got, (*out)->dim, name, ix->dim);
    CM_RETURN_IF(!(*out)->trained, ROTOR_ERR_FORMAT, "'%s': the %s section holds an untrained %s",
                 ixf_path(f), ixf_section_name(id), name);
    return ROTOR_OK;
}

/* The code store section of q, which must hold exactly `count` codes. */
static rotor_status map_codes(rotor_index *ix, ixf_section_id id, const quant *q, uint8_t **out) {
    ixf_section sec = ixf_get(ix->file, id);
    size_t want = q->ops->store_bytes(q, ix->count);
    CM_RETURN_IF(sec.data == NULL || sec.size != want, ROTOR_ERR_FORMAT,
                 "'%s': the %s section holds %" PRIu64 " bytes; %zu codes need %zu",
                 ixf_path(ix->file), ixf_section_name(id), sec.size, ix->count, want);
    *out = (uint8_t *)sec.data;
    return ROTOR_OK;
}

/* The residuals that bound the estimates of q, when the file has them (a
 * file written before they were kept has none: its reranks score every
 * candidate). Like the codes they are checked where used: a value that is
 * not a finite distance bounds nothing. */
static rotor_status map_residuals(rotor_index *ix) {
    ixf_section sec = ixf_get(ix->file, IXF_SEC_RESIDUALS);
    if (sec.data == NULL)
        return ROTOR_OK;
    const char *path = ixf_path(ix->file);
    CM_RETURN_IF(ix->q == NULL || ix->q->ops->residual == NULL, ROTOR_ERR_FORMAT,
                 "'%s' holds a residuals section, but its quantizer %s has no error bound", path,
                 ix->quant_name);
    CM_RETURN_IF(sec.size != (uint64_t)ix->count * sizeof(float), ROTOR_ERR_FORMAT,
                 "'%s': the residuals section holds %" PRIu64 " bytes; %zu vectors need %zu", path,
                 sec.size, ix->count, ix->count * sizeof(float));
    ix->resid = (float *)sec.data;
    return ROTOR_OK;
}

static vstore_backend to_backend(rotor_io_backend io) {
    switch (io) {
    case ROTOR_IO_URING: return VSTORE_URING;
    case ROTOR_IO_PREAD: return VSTORE_PREAD;
    case ROTOR_IO_AUTO: break;
    }
    return VSTORE_AUTO;
}

/* Rows of bytes are held in RAM, a quarter of the floats: the disk store
 * reads rows of floats, so an open that asks for them on disk is refused. */
static rotor_status place_rows8(rotor_index *ix, const rotor_open_params *op, ixf_section sec) {
    const ixf_file *f = ix->file;
    CM_RETURN_IF(ixf_get(f, IXF_SEC_VECTORS).data != NULL, ROTOR_ERR_FORMAT,
                 "'%s' holds its vectors twice, as floats and as bytes", ixf_path(f));
    CM_RETURN_IF(sec.size / ix->dim != ix->count || sec.size % ix->dim != 0, ROTOR_ERR_FORMAT,
                 "'%s': the vectors section holds %" PRIu64 " bytes; %zu vectors of %zu "
                 "one-byte coordinates need %zu",
                 ixf_path(f), sec.size, ix->count, ix->dim, ix->count * ix->dim);
    CM_RETURN_IF(op->vectors == ROTOR_VECTORS_DISK, ROTOR_ERR_UNSUPPORTED,
                 "'%s' keeps its vectors as bytes (every coordinate an integer 0..255), which "
                 "stay in RAM: open it with its vectors in RAM",
                 ixf_path(f));
    ix->rows8 = (uint8_t *)sec.data;
    return ROTOR_OK;
}

static rotor_status place_vectors(rotor_index *ix, const rotor_open_params *op) {
    const ixf_file *f = ix->file;
    const ixf_section bytes = ixf_get(f, IXF_SEC_VECTORS8);
    if (bytes.data != NULL)
        return place_rows8(ix, op, bytes);
    ixf_section sec = ixf_get(f, IXF_SEC_VECTORS);
    size_t row = ix->dim * sizeof(float);
    CM_RETURN_IF(sec.data == NULL || sec.size / row != ix->count || sec.size % row != 0,
                 ROTOR_ERR_FORMAT,
                 "'%s': the vectors section holds %" PRIu64 " bytes; %zu vectors of %zu "
                 "dimensions need %zu",
                 ixf_path(f), sec.size, ix->count, ix->dim, ix->count * row);
    bool disk = op->vectors == ROTOR_VECTORS_AS_SAVED ? ixf_meta_of(f)->vectors_on_disk != 0
                                                      : op->vectors == ROTOR_VECTORS_DISK;
    if (!disk) {
        CM_FORWARD(ixf_fill(ix->file, IXF_SEC_VECTORS));
        ix->vectors = (float *)ixf_get(f, IXF_SEC_VECTORS).data;
        return ROTOR_OK;
    }
    CM_RETURN_IF(ix->q == NULL, ROTOR_ERR_UNSUPPORTED,
                 "'%s' has no quantizer, so its searches compute every distance on the full "
                 "vectors: open it with its vectors in RAM",
                 ixf_path(f));
    vstore_params vp = {
        .path = ixf_path(f),
        .offset = sec.offset,
        .row_bytes = row,
        .rows = ix->count,
        .backend = to_backend(op->io),
        .direct = op->direct_io,
        .depth = 0,
        .use_fd = true, /* the file checked at open, not whatever the path names now */
        .fd = ixf_fd(f),
    };
    return vstore_open(&ix->alloc, &vp, &ix->store);
}

static rotor_status check_meta(const ixf_file *f) {
    const ixf_meta *m = ixf_meta_of(f);
    const char *path = ixf_path(f);
    CM_RETURN_IF(nav_ops_of((rotor_index_kind)m->kind) == NULL, ROTOR_ERR_FORMAT,
                 "'%s' holds an index of kind %u", path, m->kind);
    CM_RETURN_IF(m->metric > ROTOR_METRIC_COSINE, ROTOR_ERR_FORMAT, "'%s' has metric %u", path,
                 m->metric);
    CM_RETURN_IF(m->dim == 0 || m->dim > DS_MAX_DIM, ROTOR_ERR_FORMAT,
                 "'%s' declares %" PRIu64 " dimensions", path, m->dim);
    CM_RETURN_IF(m->count == 0 || m->count > UINT32_MAX, ROTOR_ERR_FORMAT,
                 "'%s' declares %" PRIu64 " vectors", path, m->count);
    CM_RETURN_IF(m->vectors_on_disk > 1 || m->neighbor_codes > 1, ROTOR_ERR_FORMAT,
                 "'%s' has a damaged header (flags out of range)", path);
    return ROTOR_OK;
}

/* Builds the index around an opened file; on failure the caller closes ix
 * (which closes the file). */
static rotor_status assemble(rotor_index *ix, const rotor_open_params *op) {
    const ixf_file *f = ix->file;
    const ixf_meta *m = ixf_meta_of(f);
    CM_FORWARD(check_meta(f));
    ix->metric = (rotor_metric)m->metric;
    ix->dim = (size_t)m->dim;
    ix->count = ix->capacity = (size_t)m->count;
    ix->train_seconds = m->train_seconds;
    snprintf(ix->quant_name, sizeof ix->quant_name, "%s", m->quant);
    snprintf(ix->walk_name, sizeof ix->walk_name, "%s", m->walk_quant);

    rotor_params *p = &ix->params;
    *p = rotor_params_default();
    p->kind = (rotor_index_kind)m->kind;
    p->metric = ix->metric;
    p->seed = m->seed;
    p->graph_degree = m->graph_degree;
    p->build_list = m->build_list;
    p->alpha = m->alpha;
    p->neighbor_codes = (int)m->neighbor_codes;
    p->build_space = (rotor_build_space)m->build_space;
    p->nlist = m->nlist;
    /* The build's choice, kept whatever this open does, so a save of the
     * opened index remembers it. */
    p->full_vectors = m->vectors_on_disk ? ROTOR_VECTORS_DISK : ROTOR_VECTORS_RAM;
    p->allocator = op->allocator;
    /* The header's parameters pass the checks a build's would. */
    bool quantized = strcmp(m->quant, "none") != 0;
    p->quant = quantized ? ix->quant_name : NULL;
    p->walk_quant = m->walk_quant[0] ? ix->walk_name : NULL;
    rotor_status st = ix_params_check(p);
    p->quant = p->walk_quant = NULL;
    if (st != ROTOR_OK)
        return cm_fail_prefix(ROTOR_ERR_FORMAT, ixf_path(f));
    if (op->verify) {
        CM_FORWARD(ixf_fill(ix->file, IXF_SEC_VECTORS));
        CM_FORWARD(ixf_fill(ix->file, IXF_SEC_NODES));
        CM_FORWARD(ixf_check_all(f));
    }

    if (quantized) {
        CM_FORWARD(load_quant(ix, IXF_SEC_QUANT, ix->quant_name, &ix->q));
        CM_FORWARD(map_codes(ix, IXF_SEC_CODES, ix->q, &ix->codes));
    }
    CM_FORWARD(map_residuals(ix));
    if (m->walk_quant[0]) {
        CM_FORWARD(load_quant(ix, IXF_SEC_WALK_QUANT, ix->walk_name, &ix->walk_q));
        CM_FORWARD(map_codes(ix, IXF_SEC_WALK_CODES, ix->walk_q, &ix->walk_codes));
        ix->shared_rotation = quant_same_rotation(ix->q, ix->walk_q);
    }
    CM_FORWARD(place_vectors(ix, op));
    CM_FORWARD(ix_tuning_load(ix));
    CM_FORWARD(ix_labels_load(ix));
    CM_FORWARD(ix_deleted_load(ix)); /* first: the key table leaves removed slots out */
    CM_FORWARD(ix_keys_load(ix));

    nav_params np = ix_nav_params(p, ix->q != NULL, ix->count);
    np.ram_budget = op->ram_budget;
    np.io_backend = (int)to_backend(op->io);
    np.direct_io = op->direct_io;
    const graph_space space = ix_space(ix);
    return nav_ops_of(p->kind)->open(&ix->alloc, &np, &space, f, &ix->nav);
}

static rotor_status check_open_params(const rotor_open_params *op) {
    CM_RETURN_IF(op->vectors < ROTOR_VECTORS_AS_SAVED || op->vectors > ROTOR_VECTORS_DISK,
                 ROTOR_ERR_INVALID_ARGUMENT, "unknown vectors place %d", (int)op->vectors);
    CM_RETURN_IF(op->io < ROTOR_IO_AUTO || op->io > ROTOR_IO_PREAD, ROTOR_ERR_INVALID_ARGUMENT,
                 "unknown I/O backend %d", (int)op->io);
    CM_RETURN_IF(op->direct_io < -1 || op->direct_io > 1, ROTOR_ERR_INVALID_ARGUMENT,
                 "direct_io must be -1, 0 or 1, not %d", op->direct_io);
    CM_RETURN_IF(op->load < -1 || op->load > 1, ROTOR_ERR_INVALID_ARGUMENT,
                 "load must be -1, 0 or 1, not %d", op->load);
    CM_RETURN_IF(op->writable != 0 && op->writable != 1, ROTOR_ERR_INVALID_ARGUMENT,
                 "writable must be 0 or 1, not %d", op->writable);
    CM_RETURN_IF(op->sync_each_change != 0 && op->sync_each_change != 1, ROTOR_ERR_INVALID_ARGUMENT,
                 "sync_each_change must be 0 or 1, not %d", op->sync_each_change);
    CM_RETURN_IF(op->sync_each_change && !op->writable, ROTOR_ERR_INVALID_ARGUMENT,
                 "sync_each_change needs writable: an index not opened writable keeps its "
                 "changes in memory");
    CM_RETURN_IF(op->allocator.alloc == NULL || op->allocator.free == NULL,
                 ROTOR_ERR_INVALID_ARGUMENT,
                 "the allocator needs both alloc and free (use rotor_open_params_default())");
    return ROTOR_OK;
}

/* load -1: whether a mapped open copies its arrays. A search touches a new
 * page at nearly every step, and the copy is on huge pages where the
 * system offers them: the TLB misses it saves made searches 4-14 % faster
 * (SIFT 500k, sq8 graph). A graph under a RAM budget stays on disk, and a
 * copy that would take more than half of the memory available could push
 * out the page cache the searches read from, or fail. */
static bool copy_pays(const rotor_index *ix) {
    rotor_index_stats st;
    ix_stats(ix, &st);
    if (st.graph_on_disk > 0 || st.graph_cached > 0)
        return false;
    const size_t bytes = st.bytes_vectors + st.bytes_codes + st.bytes_graph + st.bytes_graph_codes;
    return bytes <= cm_memory_available() / 2;
}

/* Opens `path`, or a duplicate of fd when fd >= 0. A loaded open and a
 * verification read the file (IXF_READ) rather than map it. */
static rotor_status open_index(const char *path, int fd, const rotor_open_params *params, bool read,
                               rotor_index **out) {
    CM_RETURN_IF(path == NULL || out == NULL, ROTOR_ERR_INVALID_ARGUMENT,
                 "path and output must not be NULL");
    *out = NULL;
    rotor_open_params op = params ? *params : rotor_open_params_default();
    CM_FORWARD(check_open_params(&op));
    ixf_file *f;
    CM_FORWARD(ixf_open(&op.allocator, path, fd, read || op.load == 1 ? IXF_READ : IXF_MAP, &f));
    rotor_index *ix = op.allocator.alloc(op.allocator.opaque, sizeof *ix, CM_ALIGN);
    if (ix == NULL) {
        ixf_close(f);
        return cm_fail(ROTOR_ERR_OUT_OF_MEMORY, "out of memory allocating the index");
    }
    memset(ix, 0, sizeof *ix);
    ix->alloc = op.allocator;
    ix->file = f;
    ix->borrowed = true;
    rotor_status st = ix_sync_create(ix);
    if (st == ROTOR_OK)
        st = assemble(ix, &op);
    bool copy = st == ROTOR_OK && (op.load == 1 || (op.load == -1 && !read && copy_pays(ix)));
    if (copy) {
        st = ix_own_arrays(ix);
        /* Unasked for, the copy gives way to the mapping when memory runs
         * short (each part moves whole or not at all). */
        if (st == ROTOR_ERR_OUT_OF_MEMORY && op.load == -1) {
            cm_clear_error();
            st = ROTOR_OK;
            copy = false;
        }
    }
    if (st == ROTOR_OK && copy) { /* copied out: the file's copy of them is not needed */
        static const ixf_section_id owned[] = {IXF_SEC_VECTORS, IXF_SEC_VECTORS8,
                                               IXF_SEC_CODES,   IXF_SEC_WALK_CODES,
                                               IXF_SEC_GRAPH,   IXF_SEC_RESIDUALS};
        for (size_t i = 0; i < sizeof owned / sizeof owned[0]; i++)
            ixf_release(f, owned[i]);
    }
    if (st == ROTOR_OK && ix->free_stale)
        st = ix_free_rebuild(ix); /* removals all consolidated: their slots are free */
    if (st == ROTOR_OK)
        st = ix_log_open(ix, &op); /* the changes made since the file was saved */
    if (st != ROTOR_OK) {
        rotor_index_close(ix);
        return st;
    }
    *out = ix;
    return ROTOR_OK;
}

rotor_status rotor_index_open(const char *path, const rotor_open_params *params,
                              rotor_index **out) {
    cm_clear_error();
    return open_index(path, -1, params, false, out);
}

rotor_status rotor_index_open_fd(int fd, const char *name, const rotor_open_params *params,
                                 rotor_index **out) {
    cm_clear_error();
    CM_RETURN_IF(fd < 0, ROTOR_ERR_INVALID_ARGUMENT, "descriptor %d is not open", fd);
    return open_index(name != NULL ? name : "(descriptor)", fd, params, false, out);
}

/* Never maps: a file changed under a mapping would fail the process, not
 * the check. */
static rotor_status verify_index(const char *path, int fd) {
    rotor_open_params op = rotor_open_params_default();
    op.vectors = ROTOR_VECTORS_RAM;
    op.ram_budget = ROTOR_RAM_UNLIMITED; /* every record checked in memory */
    op.verify = 1;
    rotor_index *ix;
    CM_FORWARD(open_index(path, fd, &op, true, &ix));
    rotor_status st = ix->nav->ops->check(ix->nav);
    for (size_t i = 0; st == ROTOR_OK && ix->vectors != NULL && i < ix->count * ix->dim; i++)
        if (!isfinite(ix->vectors[i]))
            st = cm_fail(ROTOR_ERR_FORMAT, "vector %zu holds a non-finite value", i / ix->dim);
    for (size_t i = 0; st == ROTOR_OK && ix->resid != NULL && i < ix->count; i++)
        if (!(ix->resid[i] >= 0.0f && ix->resid[i] < INFINITY))
            st = cm_fail(ROTOR_ERR_FORMAT, "the residual of vector %zu is %g, not a distance", i,
                         (double)ix->resid[i]);
    if (st != ROTOR_OK)
        st = cm_fail_prefix(st, path);
    rotor_index_close(ix);
    return st;
}

rotor_status rotor_index_verify(const char *path) {
    cm_clear_error();
    CM_RETURN_IF(path == NULL, ROTOR_ERR_INVALID_ARGUMENT, "path must not be NULL");
    return verify_index(path, -1);
}

rotor_status rotor_index_verify_fd(int fd, const char *name) {
    cm_clear_error();
    CM_RETURN_IF(fd < 0, ROTOR_ERR_INVALID_ARGUMENT, "descriptor %d is not open", fd);
    return verify_index(name != NULL ? name : "(descriptor)", fd);
}
