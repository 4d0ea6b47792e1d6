/*
 * index/ — the public API: ties a quantizer, a navigator and a vector store
 * into one rotor_index. This header is the only place where struct
 * rotor_index is complete. Private to the library.
 */
#ifndef ROTOR_INDEX_INTERNAL_H
#define ROTOR_INDEX_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/common.h"
#include "graph/graph.h"
#include "quant/quant.h"
#include "simd/simd.h"
#include "storage/storage.h"

struct rotor_index {
    rotor_params params;
    rotor_allocator alloc;
    rotor_metric metric;
    size_t dim;
    size_t count;
    size_t capacity; /* rows `vectors` has room for */
    /* count x dim float32, row-major, unpadded; normalised for cosine. */
    float *vectors;
    /* The quantizer and its code store (NULL for full precision). The store
     * has room for `capacity` codes, in the quantizer's layout. */
    quant *q;
    uint8_t *codes;
    /* A graph's own walking codes when params.graph_quant names another
     * quantizer (NULL otherwise: the graph walks on q). */
    quant *nav_q;
    uint8_t *nav_codes;
    char quant_name[32];
    char nav_name[32];
    double train_seconds;
    /* The navigator: NULL for the flat kind. */
    vamana *graph;
    ivf *ivf;
    /* An index opened from a file (persist.c): the mapping that vectors,
     * codes and nav_codes point into while `borrowed` (the first add
     * copies them to memory of the index's own). */
    ixf_file *file;
    bool borrowed;
    /* Full vectors on disk: `vectors` is NULL and reranks read rows
     * through this store. */
    vstore *store;
    /* A streaming build (persist.c): `vectors` is this mapping of a
     * deleted spill file, not memory of the index's own. */
    void *spill;
    size_t spill_bytes;
};

/* index.c: an empty index of `dim` dimensions for checked params, sized
 * for a first batch of `rows` (graph threads); nothing is encoded yet. */
rotor_status ix_create(const rotor_params *p, size_t dim, size_t rows, rotor_index **out);
/* Encodes rows [count, need) already in `vectors` and links them into the
 * navigator (training the quantizers on a first batch), then counts them. */
rotor_status ix_index_rows(rotor_index *ix, size_t need);
/* Copies the graph, codes and in-RAM vectors an opened index borrows from
 * its mapped file into memory of its own (rotor_open_params.load). */
rotor_status ix_own_arrays(rotor_index *ix);
/* persist.c: unmaps a streaming build's spill; nothing without one. */
void ix_spill_release(rotor_index *ix);

/* params.c: validation with a sentence for every rejection. */
rotor_status ix_params_check(const rotor_params *p);
rotor_status ix_search_params_check(const rotor_search_params *p);
rotor_status ix_matrix_check(const rotor_matrix *m, const char *what);

/* Copies `m` (any accepted element type) into dst as float32 rows, checking
 * every value is finite and normalising rows for cosine. `first_row` is only
 * used to number rows in error sentences. */
rotor_status ix_convert_rows(const rotor_matrix *m, rotor_metric metric, float *dst,
                             const char *what);

/* Resolves a thread count: 0 means one per core; never more than `work`. */
unsigned ix_thread_count(uint32_t requested, size_t work);

/* Resolves rotor_search_params.rerank for a search of k neighbours. */
size_t ix_rerank_depth(const rotor_index *ix, const rotor_search_params *sp, size_t k);

/* The index's vectors and codes as the navigators see them. */
graph_space ix_space(const rotor_index *ix);

/* One prepared query (checked, normalised for cosine) on any kind; `qs`
 * (may be NULL) receives what it cost. */
rotor_status ix_search_one(const rotor_index *ix, const rotor_search_params *sp, const float *query,
                           size_t k, int64_t *ids, float *dists, rotor_query_stats *qs);

/* persist.c: the rerank of an index whose vectors are on disk, as a
 * graph_rerank_fn; ctx is an ix_disk_rerank. */
typedef struct ix_disk_rerank {
    const rotor_index *ix;
    rotor_query_stats *stats; /* may be NULL */
} ix_disk_rerank;
rotor_status ix_rerank_from_disk(void *ctx, const float *query, const uint32_t *ids, size_t n,
                                 cm_topk *top);

/* flat.c */
rotor_status flat_search(const rotor_index *ix, const float *query, size_t k, int64_t *ids,
                         float *dists);
/* Scan of the codes, then rerank of the best `rerank` (>= k, or 0 for none). */
rotor_status flat_search_quant(const rotor_index *ix, const graph_space *s, const float *query,
                               size_t k, size_t rerank, int64_t *ids, float *dists);
/* Exact distance of a (prepared: normalised for cosine) query to row id. */
float ix_exact_distance(const rotor_index *ix, const simd_ops *ops, const float *q, size_t id);
/* The same to a vector given by address (a row read from disk). */
float ix_distance_to(const rotor_index *ix, const simd_ops *ops, const float *q, const float *x);
/* Queries split over threads: the tiled exact scan for a full-precision
 * flat index, ix_search_one per query otherwise. */
rotor_status ix_search_batch(const rotor_index *ix, const rotor_search_params *sp,
                             const float *queries, size_t nq, size_t k, unsigned threads,
                             int64_t *ids, float *dists);

#endif /* ROTOR_INDEX_INTERNAL_H */
