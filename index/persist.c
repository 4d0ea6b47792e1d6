/*
 * Index files: rotor_index_save, rotor_index_open, rotor_index_verify, and
 * the rerank of an index whose full vectors stay on disk.
 *
 * Design choices
 *   - Sections hold the in-memory arrays byte for byte (vectors, code
 *     stores, graph records, IVF lists), so opening maps the file and points
 *     the index into the mapping: nothing is parsed or copied, and a large
 *     index opens in milliseconds. Only the small parts are decoded and
 *     copied: the quantizers (rebuilt from their parameter blocks), the
 *     graph's starting points, the IVF centroids.
 *   - Open hashes the small sections it decodes, always; the large ones
 *     only with verify. Reading a whole index to hash it would make opening
 *     cost a full read of the file, which is what mapping avoids. Instead,
 *     every array from the file is either checked at open (sizes, counts,
 *     parameters, against the header) or bounded where it is used (graph
 *     degrees and ids, IVF ids), so an unverified damaged file yields poor
 *     results, never an out-of-bounds read.
 *   - With the vectors on disk the mapping still covers them, but nothing
 *     touches those pages: reranks read rows through the vector store
 *     (io_uring, O_DIRECT), so RAM holds the graph and codes only.
 *   - The rerank asks for its candidates best estimate first in one batch,
 *     and scores each row as its read completes.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "index/index_internal.h"

/* ---- save ------------------------------------------------------------------- */

static rotor_status put_section(ixf_writer *w, ixf_section_id id, const void *data, size_t n) {
    CM_FORWARD(ixf_section_begin(w, id));
    CM_FORWARD(ixf_append(w, data, n));
    return ixf_section_end(w);
}

static rotor_status put_quant(const rotor_index *ix, ixf_writer *w, ixf_section_id id,
                              const quant *q) {
    size_t n = quant_saved_size(q);
    uint8_t *buf = cm_alloc(&ix->alloc, n, "a quantizer block");
    if (buf == NULL)
        return ROTOR_ERR_OUT_OF_MEMORY;
    rotor_status st = quant_save(q, buf, n);
    if (st == ROTOR_OK)
        st = put_section(w, id, buf, n);
    cm_free(&ix->alloc, buf);
    return st;
}

static rotor_status put_graph(const rotor_index *ix, ixf_writer *w) {
    size_t n = vamana_meta_bytes(ix->graph), nodes_bytes;
    uint8_t *buf = cm_alloc(&ix->alloc, n, "a graph header");
    if (buf == NULL)
        return ROTOR_ERR_OUT_OF_MEMORY;
    vamana_meta_write(ix->graph, buf);
    rotor_status st = put_section(w, IXF_SEC_GRAPH_META, buf, n);
    cm_free(&ix->alloc, buf);
    const uint8_t *nodes = vamana_nodes(ix->graph, &nodes_bytes);
    if (st == ROTOR_OK)
        st = put_section(w, IXF_SEC_GRAPH, nodes, nodes_bytes);
    return st;
}

static rotor_status put_ivf(const rotor_index *ix, ixf_writer *w) {
    const ivf *f = ix->ivf;
    size_t n = ivf_meta_bytes(f);
    uint8_t *buf = cm_alloc(&ix->alloc, n, "an IVF header");
    if (buf == NULL)
        return ROTOR_ERR_OUT_OF_MEMORY;
    ivf_meta_write(f, buf);
    rotor_status st = put_section(w, IXF_SEC_IVF_META, buf, n);
    cm_free(&ix->alloc, buf);
    const uint32_t *ids;
    const uint8_t *codes;
    size_t size;
    if (st == ROTOR_OK)
        st = ixf_section_begin(w, IXF_SEC_IVF_IDS);
    for (uint32_t l = 0; st == ROTOR_OK && l < ivf_nlist(f); l++) {
        ivf_list_view(f, l, &ids, &codes, &size);
        st = ixf_append(w, ids, size * sizeof *ids);
    }
    if (st == ROTOR_OK)
        st = ixf_section_end(w);
    if (st == ROTOR_OK)
        st = ixf_section_begin(w, IXF_SEC_IVF_CODES);
    for (uint32_t l = 0; st == ROTOR_OK && l < ivf_nlist(f); l++) {
        ivf_list_view(f, l, &ids, &codes, &size);
        st = ixf_append(w, codes, ix->q->ops->store_bytes(ix->q, size));
        if (st == ROTOR_OK)
            st = ixf_pad(w, CM_ALIGN);
    }
    if (st == ROTOR_OK)
        st = ixf_section_end(w);
    return st;
}

static void fill_meta(const rotor_index *ix, ixf_meta *m) {
    memset(m, 0, sizeof *m);
    const rotor_params *p = &ix->params;
    m->kind = (uint32_t)p->kind;
    m->metric = (uint32_t)ix->metric;
    m->dim = ix->dim;
    m->count = ix->count;
    snprintf(m->quant, sizeof m->quant, "%s", ix->quant_name);
    snprintf(m->nav_quant, sizeof m->nav_quant, "%s", ix->nav_q ? ix->nav_name : "");
    m->seed = p->seed;
    m->graph_degree = p->graph_degree;
    m->build_list = p->build_list;
    m->neighbor_codes = p->neighbor_codes != 0;
    m->build_space = (uint32_t)p->build_space;
    m->nlist = ix->ivf ? ivf_nlist(ix->ivf) : p->nlist;
    m->alpha = p->alpha;
    m->vectors_on_disk = p->full_vectors == ROTOR_VECTORS_DISK;
    m->train_seconds = ix->train_seconds;
    snprintf(m->tool, sizeof m->tool, "rotor %s", rotor_version_string());
    m->created = (uint64_t)time(NULL);
}

rotor_status rotor_index_save(const rotor_index *ix, const char *path) {
    cm_clear_error();
    CM_RETURN_IF(ix == NULL || path == NULL, ROTOR_ERR_INVALID_ARGUMENT,
                 "index and path must not be NULL");
    CM_RETURN_IF(ix->count == 0, ROTOR_ERR_EMPTY, "an empty index cannot be saved");
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
            st =
                put_section(w, IXF_SEC_CODES, ix->codes, ix->q->ops->store_bytes(ix->q, ix->count));
    }
    if (st == ROTOR_OK && ix->nav_q != NULL) {
        st = put_quant(ix, w, IXF_SEC_NAV_QUANT, ix->nav_q);
        if (st == ROTOR_OK)
            st = put_section(w, IXF_SEC_NAV_CODES, ix->nav_codes,
                             ix->nav_q->ops->store_bytes(ix->nav_q, ix->count));
    }
    if (st == ROTOR_OK && ix->graph != NULL)
        st = put_graph(ix, w);
    if (st == ROTOR_OK && ix->ivf != NULL)
        st = put_ivf(ix, w);
    /* Last, so the in-memory sections sit together at the front. */
    if (st == ROTOR_OK)
        st = put_section(w, IXF_SEC_VECTORS, vectors, ix->count * ix->dim * sizeof(float));
    if (st != ROTOR_OK) {
        ixf_abort(w);
        return st;
    }
    ixf_meta m;
    fill_meta(ix, &m);
    return ixf_commit(w, &m);
}

/* ---- open ------------------------------------------------------------------- */

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

static vstore_backend to_backend(rotor_io_backend io) {
    switch (io) {
    case ROTOR_IO_URING: return VSTORE_URING;
    case ROTOR_IO_PREAD: return VSTORE_PREAD;
    case ROTOR_IO_AUTO: break;
    }
    return VSTORE_AUTO;
}

static rotor_status place_vectors(rotor_index *ix, const rotor_open_params *op) {
    const ixf_file *f = ix->file;
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
    CM_RETURN_IF(m->kind > ROTOR_INDEX_IVF, ROTOR_ERR_FORMAT, "'%s' holds an index of kind %u",
                 path, m->kind);
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
    snprintf(ix->nav_name, sizeof ix->nav_name, "%s", m->nav_quant);

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
    p->graph_quant = m->nav_quant[0] ? ix->nav_name : NULL;
    rotor_status st = ix_params_check(p);
    p->quant = p->graph_quant = NULL;
    if (st != ROTOR_OK)
        return cm_fail_prefix(ROTOR_ERR_FORMAT, ixf_path(f));
    if (op->verify) {
        CM_FORWARD(ixf_fill(ix->file, IXF_SEC_VECTORS));
        CM_FORWARD(ixf_check_all(f));
    }

    if (quantized) {
        CM_FORWARD(load_quant(ix, IXF_SEC_QUANT, ix->quant_name, &ix->q));
        CM_FORWARD(map_codes(ix, IXF_SEC_CODES, ix->q, &ix->codes));
    }
    if (m->nav_quant[0]) {
        CM_FORWARD(load_quant(ix, IXF_SEC_NAV_QUANT, ix->nav_name, &ix->nav_q));
        CM_FORWARD(map_codes(ix, IXF_SEC_NAV_CODES, ix->nav_q, &ix->nav_codes));
    }
    CM_FORWARD(place_vectors(ix, op));

    if (p->kind == ROTOR_INDEX_VAMANA) {
        vamana_params vp = {
            .degree = p->graph_degree,
            .build_list = p->build_list,
            .alpha = p->alpha,
            .neighbor_codes = p->neighbor_codes != 0 && ix->q != NULL,
            .threads = ix_thread_count(p->threads, ix->count),
            .seed = p->seed,
        };
        ixf_section meta = ixf_get(f, IXF_SEC_GRAPH_META), nodes = ixf_get(f, IXF_SEC_GRAPH);
        CM_RETURN_IF(meta.data == NULL || nodes.data == NULL, ROTOR_ERR_FORMAT,
                     "'%s' holds a vamana index without its graph sections", ixf_path(f));
        CM_FORWARD(ixf_check(f, IXF_SEC_GRAPH_META));
        st = vamana_open(&ix->alloc, &vp, ix->nav_q ? ix->nav_q : ix->q, ix->count, meta.data,
                         (size_t)meta.size, nodes.data, (size_t)nodes.size, &ix->graph);
        if (st != ROTOR_OK)
            return cm_fail_prefix(st, ixf_path(f));
        ixf_advise(f, IXF_SEC_GRAPH, false);
    } else if (p->kind == ROTOR_INDEX_IVF) {
        ixf_section meta = ixf_get(f, IXF_SEC_IVF_META), ids = ixf_get(f, IXF_SEC_IVF_IDS),
                    codes = ixf_get(f, IXF_SEC_IVF_CODES);
        CM_RETURN_IF(meta.data == NULL || ids.data == NULL || codes.data == NULL, ROTOR_ERR_FORMAT,
                     "'%s' holds an IVF index without its list sections", ixf_path(f));
        CM_FORWARD(ixf_check(f, IXF_SEC_IVF_META));
        ivf_params fp = {p->nlist, ix_thread_count(p->threads, ix->count), p->seed};
        st = ivf_open(&ix->alloc, &fp, ix->q, ix->dim, ix->count, meta.data, (size_t)meta.size,
                      ids.data, (size_t)ids.size, codes.data, (size_t)codes.size, &ix->ivf);
        if (st != ROTOR_OK)
            return cm_fail_prefix(st, ixf_path(f));
        ixf_advise(f, IXF_SEC_IVF_CODES, false);
    }
    if (p->kind == ROTOR_INDEX_FLAT || ix->nav_q != NULL)
        ixf_advise(f, IXF_SEC_CODES, false);
    ixf_advise(f, IXF_SEC_NAV_CODES, false);
    return ROTOR_OK;
}

static rotor_status check_open_params(const rotor_open_params *op) {
    CM_RETURN_IF(op->vectors < ROTOR_VECTORS_AS_SAVED || op->vectors > ROTOR_VECTORS_DISK,
                 ROTOR_ERR_INVALID_ARGUMENT, "unknown vectors place %d", (int)op->vectors);
    CM_RETURN_IF(op->io < ROTOR_IO_AUTO || op->io > ROTOR_IO_PREAD, ROTOR_ERR_INVALID_ARGUMENT,
                 "unknown I/O backend %d", (int)op->io);
    CM_RETURN_IF(op->direct_io < -1 || op->direct_io > 1, ROTOR_ERR_INVALID_ARGUMENT,
                 "direct_io must be -1, 0 or 1, not %d", op->direct_io);
    CM_RETURN_IF(op->load != 0 && op->load != 1, ROTOR_ERR_INVALID_ARGUMENT,
                 "load must be 0 or 1, not %d", op->load);
    CM_RETURN_IF(op->allocator.alloc == NULL || op->allocator.free == NULL,
                 ROTOR_ERR_INVALID_ARGUMENT,
                 "the allocator needs both alloc and free (use rotor_open_params_default())");
    return ROTOR_OK;
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
    CM_FORWARD(ixf_open(&op.allocator, path, fd, read || op.load ? IXF_READ : IXF_MAP, &f));
    rotor_index *ix = op.allocator.alloc(op.allocator.opaque, sizeof *ix, CM_ALIGN);
    if (ix == NULL) {
        ixf_close(f);
        return cm_fail(ROTOR_ERR_OUT_OF_MEMORY, "out of memory allocating the index");
    }
    memset(ix, 0, sizeof *ix);
    ix->alloc = op.allocator;
    ix->file = f;
    ix->borrowed = true;
    rotor_status st = assemble(ix, &op);
    if (st == ROTOR_OK && op.load)
        st = ix_own_arrays(ix);
    if (st == ROTOR_OK && op.load) { /* copied out: the file's copy of them is not needed */
        static const ixf_section_id owned[] = {IXF_SEC_VECTORS, IXF_SEC_CODES, IXF_SEC_NAV_CODES,
                                               IXF_SEC_GRAPH};
        for (size_t i = 0; i < sizeof owned / sizeof owned[0]; i++)
            ixf_release(f, owned[i]);
    }
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
    op.verify = 1;
    rotor_index *ix;
    CM_FORWARD(open_index(path, fd, &op, true, &ix));
    rotor_status st = ROTOR_OK;
    if (ix->graph != NULL)
        st = vamana_check(ix->graph);
    if (st == ROTOR_OK && ix->ivf != NULL)
        st = ivf_check(ix->ivf);
    for (size_t i = 0; st == ROTOR_OK && i < ix->count * ix->dim; i++)
        if (!isfinite(ix->vectors[i]))
            st = cm_fail(ROTOR_ERR_FORMAT, "vector %zu holds a non-finite value", i / ix->dim);
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

/* ---- streaming build --------------------------------------------------------- */

void ix_spill_release(rotor_index *ix) {
    if (ix->spill != NULL)
        munmap(ix->spill, ix->spill_bytes);
    ix->spill = NULL;
}

/* Converts every row of the reader (checked, normalised for cosine) into
 * float32 rows appended to fd, a chunk at a time. */
static rotor_status spill_rows(const rotor_allocator *a, rotor_reader *r, rotor_metric metric,
                               int fd, const char *spill_path) {
    const rotor_file_info *info = rotor_reader_info(r);
    const size_t in_row = info->cols * rotor_elem_size(info->type);
    const size_t out_row = info->cols * sizeof(float);
    size_t chunk = (16u << 20) / out_row;
    if (chunk == 0)
        chunk = 1;
    uint8_t *in = cm_alloc(a, chunk * in_row, "a chunk of input rows");
    float *out = cm_alloc(a, chunk * out_row, "a chunk of converted rows");
    rotor_status st = in && out ? ROTOR_OK : ROTOR_ERR_OUT_OF_MEMORY;
    size_t done = 0, got = 0;
    uint64_t written = 0, flushed = 0;
    while (st == ROTOR_OK) {
        st = rotor_reader_read(r, in, chunk, &got);
        if (st != ROTOR_OK || got == 0)
            break;
        rotor_matrix m = {in, got, info->cols, info->type};
        st = ix_convert_rows(&m, metric, out, "base data");
        if (st != ROTOR_OK) {
            char where[64];
            snprintf(where, sizeof where, "rows from %zu on", done);
            st = cm_fail_prefix(st, where);
            break;
        }
        const uint8_t *p = (const uint8_t *)out;
        size_t left = got * out_row;
        unsigned retries = 0;
        while (left > 0 && st == ROTOR_OK) {
            ssize_t w = write(fd, p, left);
            if (w < 0 && (errno == EINTR || errno == EAGAIN) && ++retries <= DS_MAX_RETRIES)
                continue;
            if (w <= 0)
                st = cm_fail(ROTOR_ERR_IO, "cannot write the spill file beside '%s': %s",
                             spill_path, w < 0 ? strerror(errno) : "no progress");
            else {
                p += w;
                left -= (size_t)w;
                written += (uint64_t)w;
            }
        }
        if (written - flushed >= DS_WRITE_BEHIND) {
            ds_write_behind(fd, flushed, written);
            flushed = written;
        }
        done += got;
    }
    cm_free(a, in);
    cm_free(a, out);
    return st;
}

rotor_status rotor_index_build_file(const rotor_params *params, const char *input_path,
                                    const char *out_path) {
    cm_clear_error();
    CM_RETURN_IF(input_path == NULL || out_path == NULL, ROTOR_ERR_INVALID_ARGUMENT,
                 "input and output paths must not be NULL");
    rotor_params p = params ? *params : rotor_params_default();
    CM_FORWARD(ix_params_check(&p));
    CM_RETURN_IF(ds_same_file(input_path, out_path), ROTOR_ERR_INVALID_ARGUMENT,
                 "'%s' is the input file '%s': writing it would destroy the vectors", out_path,
                 input_path);
    rotor_reader *r;
    CM_FORWARD(rotor_reader_open(input_path, &r));
    const rotor_file_info info = *rotor_reader_info(r);
    rotor_status st = ROTOR_OK;
    if (info.type != ROTOR_ELEM_F32 && info.type != ROTOR_ELEM_U8 && info.type != ROTOR_ELEM_I8)
        st = cm_fail(ROTOR_ERR_INVALID_ARGUMENT, "'%s' holds %s ids, not vectors", input_path,
                     "int32");
    else if (info.rows == 0)
        st = cm_fail(ROTOR_ERR_EMPTY, "'%s' has no rows", input_path);
    rotor_index *ix = NULL;
    if (st == ROTOR_OK)
        st = ix_create(&p, info.cols, info.rows, &ix);

    /* The converted rows go to a spill file beside the output, which the
     * build maps: the kernel keeps the pages the build is using and may
     * drop the rest, so the vectors need not fit in memory. It is deleted
     * as soon as it is mapped; the mapping lives until the index closes. */
    size_t bytes = 0;
    if (st == ROTOR_OK && (cm_mul_overflow(info.rows, info.cols * sizeof(float), &bytes) ||
                           bytes > (size_t)SSIZE_MAX))
        st = cm_fail(ROTOR_ERR_INVALID_ARGUMENT, "'%s' is too large to index", input_path);
    ds_out *spill = NULL; /* never committed: unnamed, gone with its descriptor */
    if (st == ROTOR_OK)
        st = ds_out_open(&p.allocator, out_path, &spill);
    if (spill != NULL) {
        int fd = ds_out_fd(spill);
        st = spill_rows(&p.allocator, r, p.metric, fd, out_path);
        if (st == ROTOR_OK) {
            void *map = mmap(NULL, bytes, PROT_READ, MAP_SHARED, fd, 0);
            if (map == MAP_FAILED) {
                st = cm_fail(ROTOR_ERR_IO, "cannot map the spill file beside '%s': %s", out_path,
                             strerror(errno));
            } else {
                ix->spill = map;
                ix->spill_bytes = bytes;
                ix->vectors = map;
                ix->capacity = info.rows;
            }
        }
        ds_out_abort(spill);
    }
    rotor_reader_close(r);
    if (st == ROTOR_OK && ix->q != NULL) {
        ix->codes = cm_calloc(&ix->alloc, ix->q->ops->store_bytes(ix->q, info.rows), "index codes");
        if (ix->codes == NULL)
            st = ROTOR_ERR_OUT_OF_MEMORY;
    }
    if (st == ROTOR_OK && ix->nav_q != NULL) {
        ix->nav_codes =
            cm_calloc(&ix->alloc, ix->nav_q->ops->store_bytes(ix->nav_q, info.rows), "index codes");
        if (ix->nav_codes == NULL)
            st = ROTOR_ERR_OUT_OF_MEMORY;
    }
    /* Random access from here on: readahead would only evict pages in use. */
    if (st == ROTOR_OK)
        (void)madvise(ix->spill, bytes, MADV_RANDOM);
    if (st == ROTOR_OK)
        st = ix_index_rows(ix, info.rows);
    if (st == ROTOR_OK)
        st = rotor_index_save(ix, out_path);
    rotor_index_close(ix);
    return st;
}

/* ---- rerank from disk ------------------------------------------------------- */

typedef struct row_scorer {
    const rotor_index *ix;
    const simd_ops *ops;
    const float *query;
    const uint32_t *ids;
    cm_topk *top;
} row_scorer;

static void score_row(void *ctx, size_t j, const void *row) {
    const row_scorer *r = ctx;
    cm_topk_push(r->top, ix_distance_to(r->ix, r->ops, r->query, row), r->ids[j]);
}

rotor_status ix_rerank_from_disk(void *ctx, const float *query, const uint32_t *ids, size_t n,
                                 cm_topk *top) {
    const ix_disk_rerank *dr = ctx;
    const vstore *store = dr->ix->store;
    vstore_reader *rd;
    CM_FORWARD(vstore_reader_get(store, &rd));
    row_scorer rs = {dr->ix, simd_ops_get(), query, ids, top};
    rotor_status st = vstore_read(rd, ids, n, score_row, &rs);
    uint64_t reads, wait_ns;
    vstore_reader_take_stats(rd, &reads, &wait_ns);
    vstore_reader_put(store, rd);
    if (dr->stats != NULL) {
        dr->stats->reads += (uint32_t)reads;
        dr->stats->io_seconds += (double)wait_ns * 1e-9;
    }
    return st;
}
