/*
 * Parameter defaults and validation. Every rejection names the field, the
 * value and the allowed range, so a caller never has to guess which of a
 * dozen settings was wrong.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "common/pool.h"
#include "index/index_internal.h"

rotor_params rotor_params_default(void) {
    rotor_params p;
    memset(&p, 0, sizeof p);
    p.kind = ROTOR_INDEX_FLAT;
    p.metric = ROTOR_METRIC_L2;
    p.threads = 0;
    p.seed = 42;
    p.graph_degree = 0; /* ix_params_resolve */
    p.build_list = 0;
    p.alpha = 1.2f;
    p.neighbor_codes = 1;
    p.nlist = 0;
    p.full_vectors = ROTOR_VECTORS_RAM;
    p.quant = "auto";
    p.target_recall = 0.95f;
    p.calibrate = 1;
    p.allocator = cm_allocator_default();
    return p;
}

rotor_open_params rotor_open_params_default(void) {
    rotor_open_params p;
    memset(&p, 0, sizeof p);
    p.vectors = ROTOR_VECTORS_AS_SAVED;
    p.io = ROTOR_IO_AUTO;
    p.direct_io = -1;
    p.verify = 0;
    p.load = -1;
    p.allocator = cm_allocator_default();
    return p;
}

rotor_search_params rotor_search_params_default(void) {
    rotor_search_params p;
    memset(&p, 0, sizeof p);
    p.threads = 0;
    p.rerank = -1;
    return p;
}

const char *rotor_metric_name(rotor_metric metric) {
    switch (metric) {
    case ROTOR_METRIC_L2: return "l2";
    case ROTOR_METRIC_IP: return "ip";
    case ROTOR_METRIC_COSINE: return "cosine";
    }
    return "unknown";
}

rotor_status rotor_metric_parse(const char *name, rotor_metric *out) {
    cm_clear_error();
    CM_RETURN_IF(name == NULL || out == NULL, ROTOR_ERR_INVALID_ARGUMENT,
                 "metric name and output must not be NULL");
    static const rotor_metric all[] = {ROTOR_METRIC_L2, ROTOR_METRIC_IP, ROTOR_METRIC_COSINE};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        if (strcmp(name, rotor_metric_name(all[i])) == 0) {
            *out = all[i];
            return ROTOR_OK;
        }
    }
    return cm_fail(ROTOR_ERR_INVALID_ARGUMENT, "unknown metric '%s'; use l2, ip or cosine", name);
}

const char *rotor_index_kind_name(rotor_index_kind kind) {
    const nav_ops *ops = nav_ops_of(kind);
    return ops != NULL ? ops->name : "unknown";
}

rotor_status ix_params_check(const rotor_params *p) {
    CM_RETURN_IF(nav_ops_of(p->kind) == NULL, ROTOR_ERR_INVALID_ARGUMENT, "unknown index kind %d",
                 (int)p->kind);
    if (p->kind == ROTOR_INDEX_VAMANA) {
        CM_RETURN_IF(p->graph_degree != 0 && (p->graph_degree < 2 || p->graph_degree > 1024),
                     ROTOR_ERR_INVALID_ARGUMENT, "graph degree must be between 2 and 1024, not %u",
                     p->graph_degree);
        CM_RETURN_IF(p->build_list != 0 && (p->build_list < p->graph_degree || p->build_list < 2 ||
                                            p->build_list > 100000),
                     ROTOR_ERR_INVALID_ARGUMENT,
                     "build list must be between the graph degree (%u) and 100000, not %u",
                     p->graph_degree > 2 ? p->graph_degree : 2, p->build_list);
        CM_RETURN_IF(!(p->alpha >= 1.0f && p->alpha <= 4.0f), ROTOR_ERR_INVALID_ARGUMENT,
                     "alpha must be between 1 and 4, not %g", (double)p->alpha);
        CM_RETURN_IF(p->build_space != ROTOR_BUILD_FULL && p->build_space != ROTOR_BUILD_CODES,
                     ROTOR_ERR_INVALID_ARGUMENT, "unknown build space %d", (int)p->build_space);
        CM_RETURN_IF(p->build_space == ROTOR_BUILD_CODES && !ix_quant_named(p->quant),
                     ROTOR_ERR_INVALID_ARGUMENT,
                     "building a graph from codes needs a quantizer named (--quant)");
    }
    bool has_walk = p->walk_quant != NULL && strcmp(p->walk_quant, "none") != 0;
    CM_RETURN_IF(has_walk && p->kind != ROTOR_INDEX_VAMANA, ROTOR_ERR_INVALID_ARGUMENT,
                 "walk_quant applies to vamana indexes only");
    CM_RETURN_IF(has_walk && !ix_quant_named(p->quant), ROTOR_ERR_INVALID_ARGUMENT,
                 "walk_quant '%s' needs quant named too: the codes the walk's candidates are "
                 "estimated again with (\"auto\" chooses both)",
                 p->walk_quant);
    CM_RETURN_IF(p->kind == ROTOR_INDEX_IVF && ix_quant_none(p->quant), ROTOR_ERR_INVALID_ARGUMENT,
                 "an IVF index scans codes: give a quantizer (auto, or for example pq32x4)");
    CM_RETURN_IF(!(p->target_recall >= 0.5f && p->target_recall <= 1.0f),
                 ROTOR_ERR_INVALID_ARGUMENT, "target recall must be between 0.5 and 1, not %g",
                 (double)p->target_recall);
    CM_RETURN_IF(p->metric != ROTOR_METRIC_L2 && p->metric != ROTOR_METRIC_IP &&
                     p->metric != ROTOR_METRIC_COSINE,
                 ROTOR_ERR_INVALID_ARGUMENT, "unknown metric %d", (int)p->metric);
    CM_RETURN_IF(p->full_vectors != ROTOR_VECTORS_AS_SAVED &&
                     p->full_vectors != ROTOR_VECTORS_RAM && p->full_vectors != ROTOR_VECTORS_DISK,
                 ROTOR_ERR_INVALID_ARGUMENT, "unknown full_vectors place %d", p->full_vectors);
    CM_RETURN_IF(p->full_vectors == ROTOR_VECTORS_DISK && ix_quant_none(p->quant),
                 ROTOR_ERR_INVALID_ARGUMENT,
                 "full vectors on disk need a quantizer: without codes every distance is "
                 "computed on the full vectors");
    CM_RETURN_IF(p->ram_budget > 0 && p->kind != ROTOR_INDEX_VAMANA, ROTOR_ERR_INVALID_ARGUMENT,
                 "a RAM budget applies to vamana indexes only");
    CM_RETURN_IF(p->ram_budget > 0 && ix_quant_none(p->quant), ROTOR_ERR_INVALID_ARGUMENT,
                 "a graph under a RAM budget walks on codes: give a quantizer (auto, or for "
                 "example pq32)");
    CM_RETURN_IF(p->build_memory > 0 && p->kind != ROTOR_INDEX_VAMANA, ROTOR_ERR_INVALID_ARGUMENT,
                 "a build memory cap applies to vamana indexes only");
    CM_RETURN_IF(p->build_memory > 0 && p->build_space == ROTOR_BUILD_CODES,
                 ROTOR_ERR_INVALID_ARGUMENT,
                 "a build within a memory cap links on the full vectors, not on decoded codes");
    CM_RETURN_IF(p->allocator.alloc == NULL || p->allocator.free == NULL,
                 ROTOR_ERR_INVALID_ARGUMENT,
                 "the allocator needs both alloc and free (use rotor_params_default())");
    return ROTOR_OK;
}

uint32_t ix_default_degree(const rotor_params *p, bool wide) {
    /* A graph on disk pays a read per hop: DiskANN's wider graph takes
     * fewer (SIFT-like 1M under 64 bytes a vector: recall 0.95 at 28.5
     * reads with R = 64, 32.6 with R = 32). In memory a wide graph pays at
     * high recall on hard data, and a search reads only the first half
     * of each list where that is cheaper (rotor_search_params
     * .max_neighbors, which the calibration sets): on 100-d and 200-d word
     * vectors (sq8) 0.99 ran 1.53x and 1.4x the QPS at degree 64, on
     * Debian SIFT's rows 1.1-1.2x. Records that copy their neighbours'
     * codes would double, and walked at 64 ran 0.82-0.88x (Fashion-MNIST,
     * pq392x4): those stay at 32. */
    const uint32_t r = wide || p->ram_budget > 0 ? 64 : 32;
    return p->build_list != 0 && p->build_list < r ? p->build_list : r;
}

void ix_params_resolve(rotor_params *p) {
    const bool budget = p->ram_budget > 0;
    if (p->graph_degree == 0)
        p->graph_degree = ix_default_degree(p, false);
    if (p->build_list == 0)
        p->build_list = budget ? 128 : 100;
    if (p->build_list < p->graph_degree)
        p->build_list = p->graph_degree;
}

void ix_budget_quant(size_t dim, size_t count, uint64_t budget, bool node_codes, size_t degree,
                     char *name, size_t size) {
    /* 8-bit PQ (a byte a subspace) at the most subspaces that divide the
     * dimension and fit: half the budget when the codes are in RAM (the
     * rest is the cache's); when the node pages carry them instead, what
     * one 4 KiB page leaves beside a record's ids and vector, if that is
     * more (ids and codes padded to 64 bytes, as vamana_disk.c lays
     * them out). */
    uint64_t per = count > 0 ? budget / count / 2 : 1;
    /* From a few hundred dimensions up, rotated binary codes (RaBitQ's
     * estimate errs by O(1 / sqrt(d))) rank a walk's candidates far better
     * than PQ of a similar size, whose contiguous subspaces share an
     * anisotropic vector's variance unevenly: 768-d embeddings, 200k,
     * codes in the pages: recall 0.806 at 33 reads with pq64, 0.965 with
     * bin1fs, and with bin2fs 0.953 at 18 reads. Their records span a few
     * pages (bin2fs: five), which costs less than the reads they save.
     * In RAM, 2-bit codes where half the budget holds them, else 1-bit
     * (a code is d / 4 or d / 8 bytes and at most 24 of factors). */
    if (dim >= 256 && (node_codes || dim / 8 + 24 <= per)) {
        snprintf(name, size, node_codes || dim / 4 + 24 <= per ? "bin2fs" : "bin1fs");
        return;
    }
    const uint64_t fixed = cm_round_up(4 + 4 * degree, 64) + cm_round_up(4 * dim, 64);
    if (node_codes && fixed < 4096 && (4096 - fixed) / 64 * 64 / degree > per)
        per = (4096 - fixed) / 64 * 64 / degree;
    size_t m = 1;
    for (size_t c = 1; c <= dim && c <= per; c++)
        if (dim % c == 0)
            m = c;
    snprintf(name, size, "pq%zu", m);
}

bool ix_quant_none(const char *name) { return name == NULL || strcmp(name, "none") == 0; }
bool ix_quant_auto(const char *name) { return name != NULL && strcmp(name, "auto") == 0; }
bool ix_quant_named(const char *name) { return !ix_quant_none(name) && !ix_quant_auto(name); }

rotor_status ix_search_params_check(const rotor_search_params *p) {
    CM_RETURN_IF(p->rerank < -1, ROTOR_ERR_INVALID_ARGUMENT,
                 "rerank must be -1 (automatic), 0 (none) or a count, not %lld",
                 (long long)p->rerank);
    CM_RETURN_IF(p->list_size > 100000, ROTOR_ERR_INVALID_ARGUMENT,
                 "search list size must be at most 100000, not %u", p->list_size);
    CM_RETURN_IF(p->start_points > 16384, ROTOR_ERR_INVALID_ARGUMENT,
                 "start_points must be at most 16384, not %u", p->start_points);
    CM_RETURN_IF(p->beam_width > 64, ROTOR_ERR_INVALID_ARGUMENT,
                 "beam_width must be at most 64, not %u", p->beam_width);
    CM_RETURN_IF(!(p->target_recall >= 0.0f && p->target_recall <= 1.0f),
                 ROTOR_ERR_INVALID_ARGUMENT, "target recall must be between 0 and 1, not %g",
                 (double)p->target_recall);
    CM_RETURN_IF(p->rerank_all != 0 && p->rerank_all != 1, ROTOR_ERR_INVALID_ARGUMENT,
                 "rerank_all must be 0 or 1, not %d", p->rerank_all);
    CM_RETURN_IF(p->filter_scan < -1 || p->filter_scan > 1, ROTOR_ERR_INVALID_ARGUMENT,
                 "filter_scan must be -1, 0 or 1, not %d", (int)p->filter_scan);
    CM_RETURN_IF(p->rerank_window > IX_MAX_RERANK_WINDOW, ROTOR_ERR_INVALID_ARGUMENT,
                 "rerank_window must be at most %d, not %u", IX_MAX_RERANK_WINDOW,
                 p->rerank_window);
    return ROTOR_OK;
}

rotor_status ix_matrix_check(const rotor_matrix *m, const char *what) {
    CM_RETURN_IF(m == NULL, ROTOR_ERR_INVALID_ARGUMENT, "%s must not be NULL", what);
    CM_RETURN_IF(m->type != ROTOR_ELEM_F32 && m->type != ROTOR_ELEM_U8 && m->type != ROTOR_ELEM_I8,
                 ROTOR_ERR_INVALID_ARGUMENT,
                 "%s must hold float32, uint8 or int8 elements, not type %d", what, (int)m->type);
    CM_RETURN_IF(m->rows == 0, ROTOR_ERR_EMPTY, "%s has no rows", what);
    CM_RETURN_IF(m->cols == 0, ROTOR_ERR_DIMENSION, "%s has 0 dimensions", what);
    CM_RETURN_IF(m->data == NULL, ROTOR_ERR_INVALID_ARGUMENT, "%s has no data (NULL)", what);
    size_t bytes;
    CM_RETURN_IF(
        cm_mul_overflow(m->rows, m->cols, &bytes) || cm_mul_overflow(bytes, sizeof(float), &bytes),
        ROTOR_ERR_INVALID_ARGUMENT, "%s of %zu x %zu is too large", what, m->rows, m->cols);
    return ROTOR_OK;
}

rotor_status ix_check_magnitude(const float *row, size_t d, rotor_metric metric, const char *what,
                                size_t i) {
    if (metric == ROTOR_METRIC_COSINE)
        return ROTOR_OK; /* normalised in double: no float32 term grows with it */
    double s = 0;
    for (size_t j = 0; j < d; j++)
        s += (double)row[j] * row[j];
    CM_RETURN_IF(s > IX_MAX_SQUARED_NORM, ROTOR_ERR_NOT_FINITE,
                 "%s row %zu has a squared norm of %.3g: its distances would overflow float32 "
                 "(rows must stay below %.3g)",
                 what, i, s, (double)IX_MAX_SQUARED_NORM);
    return ROTOR_OK;
}

static void normalise(float *x, size_t d) {
    double s = 0;
    for (size_t j = 0; j < d; j++)
        s += (double)x[j] * x[j];
    if (s > 0) {
        float inv = (float)(1.0 / sqrt(s));
        for (size_t j = 0; j < d; j++)
            x[j] *= inv;
    }
}

rotor_status ix_convert_rows(const rotor_matrix *m, rotor_metric metric, float *dst,
                             const char *what) {
    size_t d = m->cols;
    for (size_t i = 0; i < m->rows; i++) {
        float *row = dst + i * d;
        switch (m->type) {
        case ROTOR_ELEM_F32: {
            const float *src = (const float *)m->data + i * d;
            for (size_t j = 0; j < d; j++) {
                if (!isfinite(src[j]))
                    return cm_fail(ROTOR_ERR_NOT_FINITE, "%s row %zu, column %zu is %s", what, i, j,
                                   isnan(src[j]) ? "NaN" : "infinite");
                row[j] = src[j];
            }
            CM_FORWARD(ix_check_magnitude(row, d, metric, what, i));
            break;
        }
        case ROTOR_ELEM_U8: {
            const uint8_t *src = (const uint8_t *)m->data + i * d;
            for (size_t j = 0; j < d; j++)
                row[j] = (float)src[j];
            break;
        }
        case ROTOR_ELEM_I8: {
            const int8_t *src = (const int8_t *)m->data + i * d;
            for (size_t j = 0; j < d; j++)
                row[j] = (float)src[j];
            break;
        }
        default:
            return cm_fail(ROTOR_ERR_INVALID_ARGUMENT, "%s has unsupported element type %d", what,
                           (int)m->type);
        }
        if (metric == ROTOR_METRIC_COSINE)
            normalise(row, d);
    }
    return ROTOR_OK;
}

nav_params ix_nav_params(const rotor_params *p, bool quantized, size_t count) {
    return (nav_params){
        .degree = p->graph_degree,
        .build_list = p->build_list,
        .alpha = p->alpha,
        /* Under a budget the records in RAM carry their own codes and
         * neighbor_codes asks for the neighbours' in the node pages. */
        .neighbor_codes = p->neighbor_codes != 0 && quantized && p->ram_budget == 0,
        .node_codes = p->neighbor_codes != 0 && p->ram_budget > 0,
        .from_codes = p->build_space == ROTOR_BUILD_CODES,
        .nlist = p->nlist,
        .threads = cm_thread_count(p->threads, count),
        .seed = p->seed,
        .progress = p->progress,
        .progress_opaque = p->progress_opaque,
        .ram_budget = p->ram_budget,
        .build_memory = p->build_memory,
        .direct_io = -1,
    };
}

rotor_status ix_check_build_memory(const rotor_params *p, size_t rows, size_t cols,
                                   bool records_in_file) {
    if (p->build_memory == 0)
        return ROTOR_OK;
    rotor_params r = *p;
    if (r.graph_degree == 0) /* the widest the codes may make it */
        r.graph_degree = ix_default_degree(&r, true);
    ix_params_resolve(&r);
    const nav_params np = ix_nav_params(&r, false, rows);
    return vamana_check_build_memory(&np, rows, cols, records_in_file);
}

rotor_status rotor_params_check(const rotor_params *params) {
    cm_clear_error();
    CM_RETURN_IF(params == NULL, ROTOR_ERR_INVALID_ARGUMENT, "params must not be NULL");
    quant_spec spec;
    if (ix_quant_named(params->quant))
        CM_FORWARD(quant_spec_parse(params->quant, &spec));
    if (params->walk_quant != NULL && strcmp(params->walk_quant, "none") != 0)
        CM_FORWARD(quant_spec_parse(params->walk_quant, &spec));
    return ix_params_check(params);
}
