/*
 * k-means under squared L2 (kmeans.c), shared by product quantization (one
 * run per subspace), IVF's coarse partition and the grouping of a graph's
 * starting points. Private to quant/ and the folders above it that cluster.
 *
 * The result is a function of (data, k, iterations, seed) only: threads
 * split the assignment of points to centroids, and every sum the result
 * depends on runs in a fixed order, so 1 thread and 16 threads give the
 * same centroids bit for bit. (The kernel level does matter: an AVX-512 and
 * a scalar build round distances differently; see simd/simd.h.)
 */
#ifndef ROTOR_KMEANS_H
#define ROTOR_KMEANS_H

#include <stddef.h>
#include <stdint.h>

#include "common/common.h"

#define KM_DEFAULT_ITERS 25

typedef struct km_params {
    size_t k;         /* clusters, 1 <= k <= n */
    unsigned iters;   /* Lloyd iterations at most; 0 = KM_DEFAULT_ITERS */
    unsigned threads; /* 0 = one per core (cm_cpu_count()) */
    uint64_t seed;    /* k-means++ draws */
} km_params;

typedef struct km_stats {
    unsigned iters;   /* Lloyd iterations run */
    bool converged;   /* stopped because no assignment changed */
    size_t reseeded;  /* empty clusters given a new centroid */
    double objective; /* sum of squared distances to the nearest centroid at the end */
} km_stats;

/* Clusters the n points of `dim` floats at x, x + stride, ... (stride >=
 * dim) into p->k centroids, written to `centroids` (k * dim floats,
 * row-major). k-means++ seeding, then Lloyd iterations until no point
 * changes cluster or p->iters have run. A cluster left empty takes the point
 * of the largest cluster farthest from its centroid.
 *
 * `assign` (n entries) and `stats` may be NULL; when given they receive each
 * point's final cluster and the run's figures. Fails on n < k, k == 0,
 * dim == 0, a non-finite input, or when out of memory. Worker threads that
 * cannot be started are done without: the result does not change. */
rotor_status km_train(const rotor_allocator *a, const float *x, size_t n, size_t dim, size_t stride,
                      const km_params *p, float *centroids, uint32_t *assign, km_stats *stats);

/* Nearest of k centroids (k * dim floats, row-major) to each of n points:
 * assign[i] and, unless NULL, dist[i] (squared L2). Ties go to the lowest
 * index. threads as in km_params. */
rotor_status km_assign(const rotor_allocator *a, const float *x, size_t n, size_t dim,
                       size_t stride, const float *centroids, size_t k, unsigned threads,
                       uint32_t *assign, float *dist);

/* Reorders order[0..n), rows of x (dim floats each, row-major), cluster by
 * cluster: k-means with k = n / per_cluster (at most max_clusters) on the
 * first of them, which should be a uniform sample, then each to its
 * nearest centre; within a cluster the order is kept. Points taken in this
 * order search, one after another, the same part of the data. With fewer
 * than two clusters' worth, nothing changes. Deterministic as km_train. */
rotor_status km_cluster_order(const rotor_allocator *a, const float *x, size_t dim,
                              size_t per_cluster, size_t max_clusters, unsigned threads,
                              uint64_t seed, uint32_t *order, size_t n);

/* ---- one point at a time, for encoders ----------------------------------
 *
 * With few dimensions (a PQ subspace has 2 to 16) a distance kernel call per
 * centroid costs more in call, mask and horizontal-sum overhead than the
 * arithmetic it does. The transposed form instead runs over 16 centroids at
 * once with the coordinates outermost (simd_ops argmin_l2sq_f32_cols). */

/* Columns of the transposed table: k rounded up to a multiple of 16. */
static inline size_t km_pad(size_t k) { return cm_round_up(k, 16); }

/* ct[t * km_pad(k) + j] = c[j * dim + t]; the padding columns are zero and
 * never chosen. ct: dim * km_pad(k) floats. */
void km_transpose(const float *c, size_t k, size_t dim, float *ct);

/* Index of the centroid nearest to x, from the transposed table; ties go to
 * the lowest index. *dist (unless NULL) gets its squared distance. */
uint32_t km_nearest_t(const float *x, const float *ct, size_t k, size_t dim, float *dist);

/* The same from the row-major table, through the SIMD distance kernels:
 * the better choice from about 16 dimensions up. */
uint32_t km_nearest(const float *x, const float *c, size_t k, size_t dim, float *dist);

#endif /* ROTOR_KMEANS_H */
