/*
 * graph/ — navigation structures over a set of vectors, built and searched
 * with the quantizers of quant/ and the kernels of simd/. The vectors and
 * codes themselves belong to the caller (index/): a graph holds ids only,
 * plus, where it pays, copies of its neighbours' codes. Private to the
 * library.
 *
 *   vamana.c   the Vamana proximity graph (DiskANN): build by greedy search
 *              and RobustPrune, beam search on quantized distances
 *   ivf.c      an inverted file: k-means partitions with code lists
 */
#ifndef ROTOR_GRAPH_H
#define ROTOR_GRAPH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/common.h"
#include "common/topk.h"
#include "quant/quant.h"

/* Scores candidates ids[0..n) exactly against a prepared query and pushes
 * (distance, id) into `top`. The ids come best estimate first, so a store
 * that reads vectors from disk can read the likeliest first. */
typedef rotor_status (*graph_rerank_fn)(void *ctx, const float *query, const uint32_t *ids,
                                        size_t n, cm_topk *top);

/* The vectors a structure is built over and searched in. Borrowed for the
 * duration of a call; the caller keeps them alive and unchanged. */
typedef struct graph_space {
    const float *vectors; /* count x dim float32, row-major; normalised for cosine */
    size_t count;
    size_t dim;
    rotor_metric metric;
    const quant *q;       /* NULL: navigate on the full vectors */
    const uint8_t *codes; /* q's store of all `count` codes (q != NULL) */
    /* The codes a graph walks on: q and codes, or another quantizer whose
     * candidates q then estimates again (vamana_search's refine). */
    const quant *nav_q;
    const uint8_t *nav_codes;
    /* The exact rerank when the vectors are not in memory (vectors NULL):
     * the index reads them from its store. NULL: read `vectors`. */
    graph_rerank_fn rerank;
    void *rerank_ctx;
} graph_space;

/* ---- Vamana (vamana.c) --------------------------------------------------
 *
 * Each node is one fixed-size record: its out-degree, R neighbour ids and,
 * with `neighbor_codes`, a code store of R slots in the quantizer's layout
 * holding the codes of those neighbours, so expanding a node reads one
 * contiguous block and scores all its neighbours with one scan call (for
 * 4-bit PQ, one fast-scan block of 32); without, but with a quantizer, the
 * node's own code, which a search gathers from the neighbours' records. */
typedef struct vamana_params {
    uint32_t degree;     /* R: most neighbours per node */
    uint32_t build_list; /* L: candidate list of the build's searches */
    float alpha;         /* RobustPrune's second-pass factor (> 1 keeps long edges) */
    bool neighbor_codes; /* copy neighbours' codes into each node (needs a quantizer) */
    unsigned threads;    /* build threads, >= 1 */
    uint64_t seed;       /* insertion order */
    rotor_progress_fn progress;
    void *progress_opaque;
} vamana_params;

typedef struct vamana vamana;

/* `q` (NULL: the graph walks on floats) is the code the graph walks on and
 * fixes the node layout. */
rotor_status vamana_create(const rotor_allocator *a, const vamana_params *p, const quant *q,
                           vamana **out);
void vamana_free(vamana *g);

/* Links points [vamana_count(g), s->count) of `s` into the graph. On an
 * empty graph this is the build: the entry point is the medoid, then two
 * passes over every point in a seeded random order, the first pruning with
 * alpha = 1, the second with p->alpha. Later calls insert the new points in
 * one pass with p->alpha. Memory is reserved before any link changes, so a
 * failure leaves the graph as it was; a cancellation through the progress
 * callback (build only) leaves it unusable, and the caller discards it. */
rotor_status vamana_insert(vamana *g, const graph_space *s);

typedef struct vamana_search_params {
    size_t list;   /* candidate list, >= k */
    size_t refine; /* with a second quantizer: candidates estimated again */
    size_t rerank; /* candidates scored on the full vectors; 0: the estimates */
    size_t starts; /* sampled starting points scored first (at most those stored) */
} vamana_search_params;

/* Beam search with a candidate list of p->list entries on s->nav_q's
 * estimates, starting from the first p->starts sampled points; when s->q
 * differs, the best p->refine candidates are estimated again with s->q;
 * then the best p->rerank are scored exactly on the full vectors (0: return
 * the estimates). `query` is prepared (normalised for cosine). Any number of
 * threads may search one graph at once. */
rotor_status vamana_search(const vamana *g, const graph_space *s, const float *query, size_t k,
                           const vamana_search_params *p, int64_t *ids, float *dists);

size_t vamana_count(const vamana *g);
uint32_t vamana_entry(const vamana *g);
uint32_t vamana_max_degree(const vamana *g);
/* The sampled starting points and their groups: returns the number of
 * groups; group i is (*ids)[(*off)[i] .. (*off)[i + 1]), its leader first
 * (no groups: *off is NULL and *ids holds *nstarts points). */
size_t vamana_start_groups(const vamana *g, const uint32_t **ids, size_t *nstarts,
                           const uint32_t **off);
/* Out-degree of `node`; *nbrs points at its neighbour ids. */
uint32_t vamana_neighbors(const vamana *g, size_t node, const uint32_t **nbrs);
/* Bytes of the adjacency (ids) and of the neighbour-code copies. */
size_t vamana_bytes_ids(const vamana *g);
size_t vamana_bytes_codes(const vamana *g);

/* Persistence: a small header section (layout, entry point, starting
 * points) and the node records exactly as they are in memory. */
size_t vamana_meta_bytes(const vamana *g);
void vamana_meta_write(const vamana *g, uint8_t *dst);
const uint8_t *vamana_nodes(const vamana *g, size_t *bytes);
/* A graph of `count` nodes over records in `nodes` (borrowed from a mapped
 * file: never freed, copied, and checked, by the first insert). The header
 * must describe the layout p and q give. Records are not read: a search
 * bounds every degree and id it follows, so damaged records cost recall,
 * never memory safety. */
rotor_status vamana_open(const rotor_allocator *a, const vamana_params *p, const quant *q,
                         size_t count, const uint8_t *meta, size_t meta_bytes, const uint8_t *nodes,
                         size_t nodes_bytes, vamana **out);
/* Reads every record: degrees within R, every id another node. */
rotor_status vamana_check(const vamana *g);
/* Copies the records of a graph opened from a file into memory of its own
 * (huge pages where offered; cm_alloc_large), checking every neighbour list
 * as the first insert would; a no-op for a graph that owns its records. */
rotor_status vamana_own(vamana *g);

/* ---- IVF (ivf.c) -------------------------------------------------------- */

typedef struct ivf_params {
    uint32_t nlist;   /* partitions; 0 = about 4 sqrt(n) */
    unsigned threads; /* >= 1 */
    uint64_t seed;
} ivf_params;

typedef struct ivf ivf;

/* Trains the partitions on (a sample of) s's vectors and files every point
 * in its nearest partition; the codes are copied into per-list stores in
 * the quantizer's layout (s->q required). */
rotor_status ivf_build(const rotor_allocator *a, const ivf_params *p, const graph_space *s,
                       ivf **out);
/* Files points [ivf_count(f), s->count) into their partitions. */
rotor_status ivf_add(ivf *f, const graph_space *s);
void ivf_free(ivf *f);
/* Scans the `nprobe` partitions nearest to the query, then reranks the best
 * `rerank` estimates on full vectors (0: return the estimates). */
rotor_status ivf_search(const ivf *f, const graph_space *s, const float *query, size_t k,
                        size_t nprobe, size_t rerank, int64_t *ids, float *dists);
size_t ivf_count(const ivf *f);
uint32_t ivf_nlist(const ivf *f);
/* Centroids and list ids; and the lists' copies of the codes of `q`. */
size_t ivf_bytes(const ivf *f);
size_t ivf_bytes_codes(const ivf *f, const quant *q);

/* Persistence: a header section (centroids, list sizes), then every list's
 * ids end to end, then every list's code store padded to 64 bytes. */
size_t ivf_meta_bytes(const ivf *f);
void ivf_meta_write(const ivf *f, uint8_t *dst);
void ivf_list_view(const ivf *f, uint32_t l, const uint32_t **ids, const uint8_t **codes,
                   size_t *size);
/* Lists over ids and codes borrowed from a mapped file (copied, and
 * checked, when ivf_add grows them); search skips any id >= count. */
rotor_status ivf_open(const rotor_allocator *a, const ivf_params *p, const quant *q, size_t dim,
                      size_t count, const uint8_t *meta, size_t meta_bytes, const uint8_t *ids,
                      size_t ids_bytes, const uint8_t *codes, size_t codes_bytes, ivf **out);
/* Reads every list: every id below the count. */
rotor_status ivf_check(const ivf *f);

/* ---- shared (vamana.c) --------------------------------------------------- */

/* Exact distance of a prepared query to vector `id`, in the index's
 * convention (squared L2, -IP, 1 - cos). */
float graph_exact_distance(const graph_space *s, const float *q, size_t id);
/* The exact rerank of candidates (best estimate first) into `top`: from
 * s->vectors, or through s->rerank. */
rotor_status graph_rerank(const graph_space *s, const float *query, const uint32_t *ids, size_t n,
                          cm_topk *top);

#endif /* ROTOR_GRAPH_H */
