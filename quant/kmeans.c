/*
 * k-means under squared L2: k-means++ seeding (Arthur & Vassilvitskii,
 * SODA 2007, section 2.2: each new centre drawn with probability
 * proportional to D(x)^2, the squared distance to the nearest centre chosen
 * so far) followed by Lloyd iterations (assign every point to its nearest
 * centroid, move every centroid to the mean of its points) until no point
 * changes cluster or the iteration budget is spent.
 *
 * Determinism. The result must not depend on the number of threads, or an
 * index rebuilt on a bigger machine would quantize differently. So:
 *   - points are cut into fixed chunks of CHUNK points, whatever the thread
 *     count; threads take whole chunks, and each chunk writes only its own
 *     points' results and its own partial sums;
 *   - a per-point result (nearest centroid, its distance) depends on that
 *     point alone;
 *   - every sum the result depends on (the D^2 total that k-means++ samples
 *     from, the centroid means, the objective) is formed by one thread in
 *     index order, from chunk partials combined in chunk order.
 * Only the assignment step and the D^2 update of k-means++ run in parallel:
 * they cost O(n k dim), while the update step costs O(n dim).
 *
 * Empty clusters. Lloyd can leave a centroid with no points (a bad seed, or
 * data with many duplicates). Such a centroid would be wasted for good, so
 * it is moved onto the point of the largest cluster that lies farthest from
 * that cluster's centroid: the split that most reduces the error there, and
 * a choice made without randomness. FAISS instead splits a random cluster by
 * perturbing its centroid; that needs a scale for the perturbation and does
 * nothing for a centroid at the origin.
 *
 * Distances. For few dimensions (a PQ subspace has 2 to 16 coordinates) a
 * SIMD kernel call per (point, centroid) pair is mostly call and
 * horizontal-sum overhead, so up to COLS_MAX_DIM the centroids are kept
 * transposed and the argmin_l2sq_f32_cols kernel computes 16 centroids per
 * vector register (km_nearest_t); k-means++ there uses a plain loop per
 * pair. Above it the simd_ops row kernels do the work. Training PQ16 over
 * 128 dimensions (dsub 8, 65,536 rows, one thread) took 23 s with plain
 * loops, 11 s with 4-wide vector loops and 3.6-3.8 s with the AVX2 and
 * AVX-512 column kernels.
 *
 * Threads live in one pool (common/pool.h) for the whole run, since k-means++
 * alone needs k parallel rounds and starting threads per round would cost
 * more than the rounds.
 */
#include <math.h>
#include <string.h>

#include "common/pool.h"
#include "quant/kmeans.h"
#include "simd/simd.h"

/* Points per unit of parallel work: large enough that taking a chunk costs
 * nothing next to its work, small enough to balance 2-16 threads on the
 * 65,536-point samples PQ trains on. Part of the result's definition only
 * through summation order, which is fixed for a given value. */
enum { CHUNK = 512 };

/* Up to this many dimensions the column kernel beats a row-kernel call per
 * centroid: measured with 256 centroids, 8.7x faster at 8 dimensions, 1.8x
 * at 64, and 1.7x slower at 128, where the row kernel's long FMA runs win. */
enum { COLS_MAX_DIM = 64 };

/* ---- distances ---------------------------------------------------------- */

void km_transpose(const float *c, size_t k, size_t dim, float *ct) {
    const size_t kp = km_pad(k);
    for (size_t t = 0; t < dim; t++) {
        for (size_t j = 0; j < k; j++)
            ct[t * kp + j] = c[j * dim + t];
        for (size_t j = k; j < kp; j++)
            ct[t * kp + j] = 0.0f;
    }
}

static uint32_t nearest_cols(const simd_ops *ops, const float *x, const float *ct, size_t k,
                             size_t dim, float *dist) {
    return ops->argmin_l2sq_f32_cols(x, ct, k, dim, km_pad(k), dist);
}

static uint32_t nearest_rows(const simd_ops *ops, const float *x, const float *c, size_t k,
                             size_t dim, float *dist) {
    enum { BATCH = 256 };
    float d[BATCH];
    float best = INFINITY;
    uint32_t best_j = 0;
    for (size_t j0 = 0; j0 < k; j0 += BATCH) {
        size_t m = k - j0 < BATCH ? k - j0 : BATCH;
        ops->l2sq_f32_rows(x, c + j0 * dim, m, dim, dim, d);
        for (size_t jj = 0; jj < m; jj++) {
            if (d[jj] < best || j0 + jj == 0) {
                best = d[jj];
                best_j = (uint32_t)(j0 + jj);
            }
        }
    }
    *dist = best;
    return best_j;
}

uint32_t km_nearest_t(const float *x, const float *ct, size_t k, size_t dim, float *dist) {
    float d;
    uint32_t j = nearest_cols(simd_ops_get(), x, ct, k, dim, &d);
    if (dist != NULL)
        *dist = d;
    return j;
}

uint32_t km_nearest(const float *x, const float *c, size_t k, size_t dim, float *dist) {
    float d;
    uint32_t j = nearest_rows(simd_ops_get(), x, c, k, dim, &d);
    if (dist != NULL)
        *dist = d;
    return j;
}

/* One pair for k-means++ with few dimensions, where a kernel call would
 * cost more than the arithmetic. */
static float l2sq_small(const float *a, const float *b, size_t dim) {
    float s = 0.0f;
    for (size_t t = 0; t < dim; t++) {
        float diff = a[t] - b[t];
        s += diff * diff;
    }
    return s;
}

/* ---- the parallel steps ------------------------------------------------- */

typedef struct run {
    const simd_ops *ops;
    const float *x;
    size_t n, dim, stride, k;
    bool small;        /* dim <= COLS_MAX_DIM: transposed table and plain loops */
    const float *c;    /* k x dim */
    const float *ct;   /* dim x km_pad(k), when small */
    const float *newc; /* k-means++: the centre just chosen */
    uint32_t *assign;
    float *dist;
    size_t *chunk_changes;
    double *chunk_sum;
} run;

static void chunk_range(const run *r, size_t chunk, size_t *lo, size_t *hi) {
    *lo = chunk * CHUNK;
    *hi = *lo + CHUNK < r->n ? *lo + CHUNK : r->n;
}

/* Nearest centroid of every point of the chunk; counts changed assignments
 * and sums the distances (in index order, in double). */
static void assign_chunk(void *ctx, size_t chunk, unsigned worker) {
    (void)worker;
    run *r = ctx;
    size_t lo, hi, changes = 0;
    chunk_range(r, chunk, &lo, &hi);
    double sum = 0;
    for (size_t i = lo; i < hi; i++) {
        const float *xi = r->x + i * r->stride;
        float d;
        uint32_t j = r->small ? nearest_cols(r->ops, xi, r->ct, r->k, r->dim, &d)
                              : nearest_rows(r->ops, xi, r->c, r->k, r->dim, &d);
        changes += j != r->assign[i];
        r->assign[i] = j;
        r->dist[i] = d;
        sum += d;
    }
    r->chunk_changes[chunk] = changes;
    r->chunk_sum[chunk] = sum;
}

/* k-means++: D^2 of every point of the chunk lowered by the new centre. */
static void seed_chunk(void *ctx, size_t chunk, unsigned worker) {
    (void)worker;
    run *r = ctx;
    size_t lo, hi;
    chunk_range(r, chunk, &lo, &hi);
    double sum = 0;
    for (size_t i = lo; i < hi; i++) {
        const float *xi = r->x + i * r->stride;
        float d =
            r->small ? l2sq_small(xi, r->newc, r->dim) : r->ops->l2sq_f32(xi, r->newc, r->dim);
        if (d < r->dist[i])
            r->dist[i] = d;
        sum += r->dist[i];
    }
    r->chunk_sum[chunk] = sum;
}

/* ---- seeding ------------------------------------------------------------ */

/* Uniform in [0, 1), 53 bits. */
static double uniform01(uint64_t *state) {
    return (double)(cm_splitmix64(state) >> 11) * 0x1.0p-53;
}

static size_t uniform_index(uint64_t *state, size_t n) {
    size_t i = (size_t)(uniform01(state) * (double)n);
    return i < n ? i : n - 1;
}

/* The point at which the running sum of D^2 first exceeds u * total, found
 * chunk by chunk from the chunk partials and then point by point. Rounding
 * can leave u just past the last positive term; that term is then taken, so
 * a point at distance zero (already a centre) is never drawn. */
static size_t draw_d2(const run *r, size_t nchunks, double total, uint64_t *rng) {
    double target = uniform01(rng) * total;
    double cum = 0;
    size_t chunk = 0;
    for (; chunk + 1 < nchunks; chunk++) {
        if (cum + r->chunk_sum[chunk] > target)
            break;
        cum += r->chunk_sum[chunk];
    }
    size_t last_positive = r->n;
    for (; chunk < nchunks; chunk++) {
        size_t lo, hi;
        chunk_range(r, chunk, &lo, &hi);
        for (size_t i = lo; i < hi; i++) {
            if (r->dist[i] > 0) {
                cum += r->dist[i];
                last_positive = i;
                if (cum > target)
                    return i;
            }
        }
    }
    if (last_positive < r->n)
        return last_positive;
    /* Only reached if every point from the chosen chunk on is a centre
     * already; search backwards for any point that is not. */
    for (size_t i = r->n; i-- > 0;)
        if (r->dist[i] > 0)
            return i;
    return 0;
}

static void copy_point(const run *r, size_t i, float *dst) {
    memcpy(dst, r->x + i * r->stride, r->dim * sizeof(float));
}

static void seed_plusplus(run *r, cm_pool *p, size_t nchunks, float *c, uint64_t seed) {
    uint64_t rng = seed;
    copy_point(r, uniform_index(&rng, r->n), c);
    for (size_t i = 0; i < r->n; i++)
        r->dist[i] = INFINITY;
    for (size_t j = 1; j < r->k; j++) {
        r->newc = c + (j - 1) * r->dim;
        cm_pool_run(p, seed_chunk, r, nchunks);
        double total = 0;
        for (size_t ch = 0; ch < nchunks; ch++)
            total += r->chunk_sum[ch];
        /* Every point is a centre already (fewer distinct points than k):
         * the remaining centres repeat points, and empty-cluster handling
         * keeps them from all claiming the same points. */
        size_t pick = total > 0 ? draw_d2(r, nchunks, total, &rng) : uniform_index(&rng, r->n);
        copy_point(r, pick, c + j * r->dim);
    }
}

/* ---- Lloyd -------------------------------------------------------------- */

/* Moves each centroid to the mean of its points, summing in index order in
 * double. Returns how many empty clusters had to be re-seeded. */
static size_t update(run *r, float *c, double *sums, size_t *counts) {
    const size_t k = r->k, dim = r->dim;
    memset(sums, 0, k * dim * sizeof(double));
    memset(counts, 0, k * sizeof(size_t));
    for (size_t i = 0; i < r->n; i++) {
        const float *xi = r->x + i * r->stride;
        double *s = sums + (size_t)r->assign[i] * dim;
        for (size_t t = 0; t < dim; t++)
            s[t] += xi[t];
        counts[r->assign[i]]++;
    }
    for (size_t j = 0; j < k; j++) {
        if (counts[j] == 0)
            continue;
        double inv = 1.0 / (double)counts[j];
        for (size_t t = 0; t < dim; t++)
            c[j * dim + t] = (float)(sums[j * dim + t] * inv);
    }
    size_t reseeded = 0;
    for (size_t j = 0; j < k; j++) {
        if (counts[j] != 0)
            continue;
        /* n >= k and a cluster is empty, so some cluster holds two or more
         * points: the largest one gives up its farthest point. */
        size_t big = 0;
        for (size_t l = 1; l < k; l++)
            if (counts[l] > counts[big])
                big = l;
        size_t far = r->n;
        for (size_t i = 0; i < r->n; i++)
            if (r->assign[i] == big && (far == r->n || r->dist[i] > r->dist[far]))
                far = i;
        copy_point(r, far, c + j * dim);
        r->assign[far] = (uint32_t)j;
        r->dist[far] = 0.0f;
        counts[big]--;
        counts[j] = 1;
        reseeded++;
    }
    return reseeded;
}

static rotor_status check_shape(const float *x, size_t n, size_t dim, size_t stride, size_t k) {
    CM_RETURN_IF(dim == 0, ROTOR_ERR_DIMENSION, "k-means needs at least 1 dimension");
    CM_RETURN_IF(stride < dim, ROTOR_ERR_INVALID_ARGUMENT,
                 "k-means rows are %zu floats apart, fewer than their %zu dimensions", stride, dim);
    CM_RETURN_IF(k == 0, ROTOR_ERR_INVALID_ARGUMENT, "k-means needs at least 1 cluster");
    CM_RETURN_IF(k > UINT32_MAX, ROTOR_ERR_INVALID_ARGUMENT,
                 "k-means takes at most %u clusters, not %zu", (unsigned)UINT32_MAX, k);
    size_t bytes;
    CM_RETURN_IF(cm_mul_overflow(k, dim, &bytes) || cm_mul_overflow(bytes, sizeof(double), &bytes),
                 ROTOR_ERR_INVALID_ARGUMENT,
                 "k-means with %zu clusters of %zu dimensions is too "
                 "large",
                 k, dim);
    for (size_t i = 0; i < n; i++)
        for (size_t t = 0; t < dim; t++)
            CM_RETURN_IF(!isfinite(x[i * stride + t]), ROTOR_ERR_NOT_FINITE,
                         "k-means input row %zu holds NaN or infinity at dimension %zu", i, t);
    return ROTOR_OK;
}

/* A run over n points and k centroids; its arrays are set by the caller. */
static run run_of(const float *x, size_t n, size_t dim, size_t stride, const float *centroids,
                  size_t k) {
    return (run){
        .ops = simd_ops_get(),
        .x = x,
        .n = n,
        .dim = dim,
        .stride = stride,
        .k = k,
        .small = dim <= COLS_MAX_DIM,
        .c = centroids,
    };
}

rotor_status km_train(const rotor_allocator *a, const float *x, size_t n, size_t dim, size_t stride,
                      const km_params *p, float *centroids, uint32_t *assign, km_stats *stats) {
    CM_FORWARD(check_shape(x, n, dim, stride, p->k));
    CM_RETURN_IF(n < p->k, ROTOR_ERR_INVALID_ARGUMENT,
                 "k-means needs at least as many points as clusters: %zu points for %zu "
                 "clusters",
                 n, p->k);
    const size_t k = p->k, nchunks = (n + CHUNK - 1) / CHUNK;
    const unsigned iters = p->iters == 0 ? KM_DEFAULT_ITERS : p->iters;
    run r = run_of(x, n, dim, stride, centroids, k);
    /* Sizes: k * dim * sizeof(double) was checked; n entries exist as the
     * caller's input, so n * 4 bytes cannot overflow. */
    uint32_t *own_assign = NULL;
    cm_pool pl;
    km_stats s = {0};
    double *sums = NULL;
    size_t *counts = NULL;
    float *ct = NULL;
    rotor_status st = ROTOR_ERR_OUT_OF_MEMORY;
    if (assign == NULL)
        assign = own_assign = cm_alloc(a, n * sizeof(uint32_t), "k-means assignments");
    r.assign = assign;
    r.dist = cm_alloc(a, n * sizeof(float), "k-means distances");
    r.chunk_changes = cm_alloc(a, nchunks * sizeof(size_t), "k-means chunk counts");
    r.chunk_sum = cm_alloc(a, nchunks * sizeof(double), "k-means chunk sums");
    sums = cm_alloc(a, k * dim * sizeof(double), "k-means sums");
    counts = cm_alloc(a, k * sizeof(size_t), "k-means counts");
    if (r.small)
        r.ct = ct = cm_alloc(a, dim * km_pad(k) * sizeof(float), "k-means transposed centroids");
    if (assign == NULL || r.dist == NULL || r.chunk_changes == NULL || r.chunk_sum == NULL ||
        sums == NULL || counts == NULL || (r.small && ct == NULL))
        goto out;
    st = cm_pool_start(&pl, a, cm_thread_count(p->threads, nchunks));
    if (st != ROTOR_OK)
        goto out;

    seed_plusplus(&r, &pl, nchunks, centroids, p->seed);
    for (size_t i = 0; i < n; i++)
        assign[i] = UINT32_MAX;
    for (;;) {
        if (r.small)
            km_transpose(centroids, k, dim, ct);
        cm_pool_run(&pl, assign_chunk, &r, nchunks);
        size_t changes = 0;
        for (size_t ch = 0; ch < nchunks; ch++)
            changes += r.chunk_changes[ch];
        if (changes == 0) {
            s.converged = true;
            break;
        }
        /* The assignment after the last update is kept, so `assign` and
         * the objective describe the centroids returned. */
        if (s.iters == iters)
            break;
        s.reseeded += update(&r, centroids, sums, counts);
        s.iters++;
    }
    cm_pool_stop(&pl);
    for (size_t ch = 0; ch < nchunks; ch++)
        s.objective += r.chunk_sum[ch];
    if (stats != NULL)
        *stats = s;
    st = ROTOR_OK;
out:
    cm_free(a, own_assign);
    cm_free(a, r.dist);
    cm_free(a, r.chunk_changes);
    cm_free(a, r.chunk_sum);
    cm_free(a, sums);
    cm_free(a, counts);
    cm_free(a, ct);
    return st;
}

rotor_status km_assign(const rotor_allocator *a, const float *x, size_t n, size_t dim,
                       size_t stride, const float *centroids, size_t k, unsigned threads,
                       uint32_t *assign, float *dist) {
    CM_FORWARD(check_shape(x, 0, dim, stride, k));
    const size_t nchunks = (n + CHUNK - 1) / CHUNK;
    run r = run_of(x, n, dim, stride, centroids, k);
    r.assign = assign;
    r.dist = dist;
    float *own_dist = NULL, *ct = NULL;
    cm_pool pl;
    rotor_status st = ROTOR_ERR_OUT_OF_MEMORY;
    if (dist == NULL)
        r.dist = own_dist = cm_alloc(a, (n ? n : 1) * sizeof(float), "k-means distances");
    r.chunk_changes = cm_alloc(a, (nchunks ? nchunks : 1) * sizeof(size_t), "k-means counts");
    r.chunk_sum = cm_alloc(a, (nchunks ? nchunks : 1) * sizeof(double), "k-means sums");
    if (r.small)
        r.ct = ct = cm_alloc(a, dim * km_pad(k) * sizeof(float), "k-means transposed centroids");
    if (r.dist == NULL || r.chunk_changes == NULL || r.chunk_sum == NULL || (r.small && !ct))
        goto out;
    if (r.small)
        km_transpose(centroids, k, dim, ct);
    /* assign_chunk counts changes against the old value; give it one. */
    for (size_t i = 0; i < n; i++)
        assign[i] = UINT32_MAX;
    st = cm_pool_start(&pl, a, cm_thread_count(threads, nchunks));
    if (st != ROTOR_OK)
        goto out;
    cm_pool_run(&pl, assign_chunk, &r, nchunks);
    cm_pool_stop(&pl);
out:
    cm_free(a, own_dist);
    cm_free(a, r.chunk_changes);
    cm_free(a, r.chunk_sum);
    cm_free(a, ct);
    return st;
}

rotor_status km_cluster_order(const rotor_allocator *a, const float *x, size_t dim,
                              size_t per_cluster, size_t max_clusters, unsigned threads,
                              uint64_t seed, uint32_t *order, size_t n) {
    size_t k = per_cluster > 0 ? n / per_cluster : 0;
    if (k > max_clusters)
        k = max_clusters;
    if (k < 2)
        return ROTOR_OK;
    /* 32 points a centre place the centres well enough for an order. */
    const size_t ns = 32 * k < n ? 32 * k : n;
    float *rows = cm_alloc(a, (ns + k) * dim * sizeof *rows, "cluster order sample");
    uint32_t *cluster = cm_alloc(a, n * sizeof *cluster, "cluster order");
    size_t *start = cm_calloc(a, (k + 1) * sizeof *start, "cluster order");
    uint32_t *sorted = cm_alloc(a, n * sizeof *sorted, "cluster order");
    rotor_status st = rows && cluster && start && sorted ? ROTOR_OK : ROTOR_ERR_OUT_OF_MEMORY;
    float *centre = rows != NULL ? rows + ns * dim : NULL;
    /* The sample's rows, then every block of as many, gathered: the
     * points are assigned, not every row of x. */
    for (size_t b = 0; st == ROTOR_OK && b < n; b += ns) {
        const size_t m = n - b < ns ? n - b : ns;
        for (size_t i = 0; i < m; i++)
            memcpy(rows + i * dim, x + (size_t)order[b + i] * dim, dim * sizeof *rows);
        if (b == 0) {
            const km_params kp = {.k = k, .iters = 8, .threads = threads, .seed = seed};
            st = km_train(a, rows, m, dim, dim, &kp, centre, NULL, NULL);
        }
        if (st == ROTOR_OK)
            st = km_assign(a, rows, m, dim, dim, centre, k, threads, cluster + b, NULL);
    }
    if (st == ROTOR_OK) {
        for (size_t i = 0; i < n; i++)
            start[cluster[i] + 1]++;
        for (size_t c = 0; c < k; c++)
            start[c + 1] += start[c];
        for (size_t i = 0; i < n; i++)
            sorted[start[cluster[i]]++] = order[i];
        memcpy(order, sorted, n * sizeof *order);
    }
    cm_free(a, sorted);
    cm_free(a, start);
    cm_free(a, cluster);
    cm_free(a, rows);
    return st;
}
