/*
 * An inverted file (Jégou, Douze, Schmid, "Product quantization for nearest
 * neighbor search", TPAMI 2011): k-means cuts the space into nlist
 * partitions; a query scans the codes of the nprobe partitions whose
 * centroids are nearest, keeps the best estimates and reranks them on the
 * full vectors.
 *
 * Each list is a code store of the quantizer's own layout (for 4-bit PQ,
 * 32-code fast-scan blocks) plus the ids of its rows, so a probe is one
 * sequential scan() call per list, the access pattern fast-scan was made
 * for. For L2 and cosine the lists hold codes of each row's residual to
 * its list's centroid, by a quantizer of the index's kind trained on
 * residuals, and a probe prepares the query's residual to that centroid:
 * the residuals are a few times shorter than the rows, so a code of the
 * same size ranks far better. On Debian SIFT 500k with pq64x4, codes of
 * whole rows needed a rerank of 320 to reach recall@10 0.90 at nprobe 32,
 * residual codes 80. Inner product keeps codes of the whole rows (its
 * scores do not split over a centroid and a residual the way a distance
 * does with one prepared query), as do files written before.
 * The index's own codes of whole rows stay beside the lists: a filtered
 * search scans them (index/filter.c).
 *
 * The centroids are trained on at most SAMPLE_PER_LIST points per list (a
 * seeded sample); partitions are found with squared L2 for every metric,
 * which for normalised (cosine) data orders like the cosine distance.
 */
#include <math.h>
#include <string.h>

#include "common/topk.h"
#include "graph/graph.h"
#include "quant/kmeans.h"
#include "simd/simd.h"

enum { SAMPLE_PER_LIST = 48, TRAIN_ITERS = 12 };

typedef struct ivf_list {
    uint32_t *ids;
    uint8_t *codes; /* the quantizer's store of `cap` codes */
    size_t size, cap;
    bool borrowed; /* ids and codes live in a mapped index file (ivf_open) */
} ivf_list;

typedef struct ivf {
    nav base;
    uint32_t nlist; /* 0 until the first insert trains the partitions */
    unsigned threads;
    uint64_t seed;
    size_t dim, count;
    size_t listed;    /* ids in the lists: count less the points consolidated out */
    float *centroids; /* nlist x dim */
    /* A probe ranks the lists by |c|^2 / 2 - q.c, which orders them as
     * |q - c|^2 does, from half_sq (|c|^2 / 2 per centroid) and a copy of
     * the centroids by columns (dim rows of km_pad(nlist) floats, padding
     * zero): one FMA a coordinate for 16 centroids. A distance per row
     * paid its loop and horizontal sum: on SIFT at nprobe 32 the distances
     * to 1,415 centroids were 13-16 % of a search's instructions, on 25-d
     * word vectors at nprobe 8 30 %. Neither is stored in the file. */
    float *half_sq;
    float *cols;
    ivf_list *lists;
    /* The lists' quantizer: of residuals to the centroids, scoring L2
     * (cosine: on the unit rows, where the distance is half of it). NULL:
     * the lists hold the index's codes of whole rows. */
    quant *rq;
} ivf;

static const ivf *ivf_of(const nav *n) { return (const ivf *)n; }

/* The quantizer of the lists' codes. */
static const quant *list_quant(const ivf *f, const graph_space *s) {
    return f->rq != NULL ? f->rq : s->q;
}

/* Fills half_sq and cols from the centroids. */
static rotor_status centroid_layout(ivf *f) {
    const simd_ops *ops = simd_ops_get();
    const size_t stride = km_pad(f->nlist);
    f->half_sq = cm_alloc(&f->base.alloc, (size_t)f->nlist * sizeof(float), "IVF centroid norms");
    f->cols = cm_alloc(&f->base.alloc, f->dim * stride * sizeof(float), "IVF centroids");
    if (f->half_sq == NULL || f->cols == NULL)
        return ROTOR_ERR_OUT_OF_MEMORY;
    for (uint32_t l = 0; l < f->nlist; l++) {
        const float *c = f->centroids + (size_t)l * f->dim;
        f->half_sq[l] = 0.5f * ops->dot_f32(c, c, f->dim);
    }
    km_transpose(f->centroids, f->nlist, f->dim, f->cols);
    return ROTOR_OK;
}

static void ivf_stats(const nav *n, const graph_space *s, nav_stats *out) {
    const ivf *f = ivf_of(n);
    *out = (nav_stats){.partitions = f->nlist};
    out->bytes_ids = (size_t)f->nlist * ((f->dim + 1) * sizeof(float) + sizeof(ivf_list)) +
                     (f->nlist > 0 ? f->dim * km_pad(f->nlist) * sizeof(float) : 0);
    const quant *lq = list_quant(f, s);
    for (uint32_t l = 0; l < f->nlist; l++) {
        out->bytes_ids += f->lists[l].cap * sizeof(uint32_t);
        out->bytes_codes += lq->ops->store_bytes(lq, f->lists[l].cap);
    }
}

static void ivf_free(nav *n) {
    ivf *f = (ivf *)n;
    if (f == NULL)
        return;
    rotor_allocator a = f->base.alloc;
    if (f->lists != NULL) {
        for (uint32_t l = 0; l < f->nlist; l++) {
            if (f->lists[l].borrowed)
                continue;
            cm_free(&a, f->lists[l].ids);
            cm_free(&a, f->lists[l].codes);
        }
    }
    cm_free(&a, f->lists);
    cm_free(&a, f->centroids);
    cm_free(&a, f->half_sq);
    cm_free(&a, f->cols);
    quant_free(f->rq);
    cm_free(&a, f);
}

static rotor_status ivf_create(const rotor_allocator *a, const nav_params *p, const graph_space *s,
                               nav **out) {
    *out = NULL;
    CM_RETURN_IF(s->q == NULL, ROTOR_ERR_INVALID_ARGUMENT, "an IVF index needs a quantizer");
    ivf *f = cm_calloc(a, sizeof *f, "IVF index");
    if (f == NULL)
        return ROTOR_ERR_OUT_OF_MEMORY;
    f->base = (nav){&ivf_nav_ops, *a};
    f->threads = p->threads ? p->threads : 1;
    f->seed = p->seed;
    f->dim = s->dim;
    /* The partition count asked for; fixed by the first insert. */
    f->nlist = p->nlist;
    *out = &f->base;
    return ROTOR_OK;
}

static rotor_status list_move(ivf *f, const quant *q, ivf_list *l, size_t cap);

/* Grows list `l` to hold `need` codes; on failure it is unchanged. */
static rotor_status list_reserve(ivf *f, const quant *q, ivf_list *l, size_t need) {
    if (need <= l->cap)
        return ROTOR_OK;
    size_t cap = l->cap < 32 ? 32 : l->cap;
    while (cap < need)
        cap *= 2;
    return list_move(f, q, l, cap);
}

/* List `l` moved to memory of its own with room for `cap` codes. */
static rotor_status list_move(ivf *f, const quant *q, ivf_list *l, size_t cap) {
    uint32_t *ids = cm_alloc(&f->base.alloc, cap * sizeof *ids, "IVF list ids");
    uint8_t *codes = cm_calloc(&f->base.alloc, q->ops->store_bytes(q, cap), "IVF list codes");
    if (ids == NULL || codes == NULL) {
        cm_free(&f->base.alloc, ids);
        cm_free(&f->base.alloc, codes);
        return ROTOR_ERR_OUT_OF_MEMORY;
    }
    if (l->size > 0) {
        memcpy(ids, l->ids, l->size * sizeof *ids);
        /* Stores are laid out by position: the first `size` codes are a
         * prefix of the store whatever its capacity. */
        memcpy(codes, l->codes, q->ops->store_bytes(q, l->size));
    }
    if (l->borrowed) {
        /* Ids from a file were never read whole; later searches trust a
         * list of the index's own, so they are checked on the way in. */
        for (size_t i = 0; i < l->size; i++) {
            if (ids[i] >= f->count) {
                cm_free(&f->base.alloc, ids);
                cm_free(&f->base.alloc, codes);
                return cm_fail(ROTOR_ERR_CORRUPT,
                               "an IVF list holds id %u of an index of %zu vectors; the index "
                               "file is damaged",
                               ids[i], f->count);
            }
        }
    } else {
        cm_free(&f->base.alloc, l->ids);
        cm_free(&f->base.alloc, l->codes);
    }
    l->borrowed = false;
    l->ids = ids;
    l->codes = codes;
    l->cap = cap;
    return ROTOR_OK;
}

/* The i-th point an insert files: the reused slots, then the new ones. */
static inline uint32_t added_point(const graph_space *s, size_t first, size_t i) {
    return i < s->nreused ? s->reused[i] : (uint32_t)(first + i - s->nreused);
}

/* The residual codes of the n points an insert files (added_point order),
 * point i in the list assign[i], into *out (n codes, end to end). */
static rotor_status encode_residuals(const ivf *f, const graph_space *s, size_t first, size_t n,
                                     const uint32_t *assign, uint8_t **out) {
    const quant *rq = f->rq;
    const rotor_allocator *a = &f->base.alloc;
    const size_t dim = f->dim;
    uint8_t *codes = cm_alloc(a, n * rq->code_bytes, "IVF residual codes");
    float *work = cm_alloc(a, (dim + rq->scratch_floats) * sizeof *work, "IVF residual");
    if (codes == NULL || work == NULL) {
        cm_free(a, codes);
        cm_free(a, work);
        return ROTOR_ERR_OUT_OF_MEMORY;
    }
    for (size_t i = 0; i < n; i++) {
        const float *x = s->vectors + (size_t)added_point(s, first, i) * dim;
        const float *c = f->centroids + (size_t)assign[i] * dim;
        for (size_t j = 0; j < dim; j++)
            work[j] = x[j] - c[j];
        rq->ops->encode(rq, work, codes + i * rq->code_bytes, work + dim);
    }
    cm_free(a, work);
    *out = codes;
    return ROTOR_OK;
}

/* Files points s->reused and [f->count, s->count) into their partitions. */
static rotor_status add_points(ivf *f, const graph_space *s) {
    const size_t first = f->count, fresh = s->count - first, n = fresh + s->nreused;
    if (n == 0)
        return ROTOR_OK;
    const quant *q = list_quant(f, s);
    const rotor_allocator *a = &f->base.alloc;
    CM_RETURN_IF(s->count > UINT32_MAX, ROTOR_ERR_INVALID_ARGUMENT,
                 "an IVF index holds at most %u points, not %zu", UINT32_MAX, s->count);
    uint32_t *assign = cm_alloc(a, n * sizeof *assign + q->code_bytes, "IVF assignment");
    size_t *need = cm_calloc(a, f->nlist * sizeof *need, "IVF list sizes");
    /* Reused slots are scattered: their rows are gathered to be assigned. */
    float *rows =
        s->nreused > 0 ? cm_alloc(a, s->nreused * s->dim * sizeof *rows, "IVF rows") : NULL;
    rotor_status st =
        assign && need && (rows || s->nreused == 0) ? ROTOR_OK : ROTOR_ERR_OUT_OF_MEMORY;
    for (size_t i = 0; st == ROTOR_OK && i < s->nreused; i++)
        memcpy(rows + i * s->dim, s->vectors + (size_t)s->reused[i] * s->dim,
               s->dim * sizeof *rows);
    if (st == ROTOR_OK && s->nreused > 0)
        st = km_assign(a, rows, s->nreused, s->dim, s->dim, f->centroids, f->nlist, f->threads,
                       assign, NULL);
    if (st == ROTOR_OK && fresh > 0)
        st = km_assign(a, s->vectors + first * s->dim, fresh, s->dim, s->dim, f->centroids,
                       f->nlist, f->threads, assign + s->nreused, NULL);
    cm_free(a, rows);
    /* Residual codes are encoded before searches are held. */
    uint8_t *staged = NULL;
    if (st == ROTOR_OK && f->rq != NULL)
        st = encode_residuals(f, s, first, n, assign, &staged);
    /* The assignment is computed beside searches; the lists change while
     * they are held (a list grows by moving, and its last fast-scan block
     * holds codes searches read). Searches pass over the new ids until the
     * index counts them. */
    graph_publish_begin(s);
    if (st == ROTOR_OK) {
        for (size_t i = 0; i < n; i++)
            need[assign[i]]++;
        /* Every list is grown before any row is filed, so a failure leaves
         * the lists as they were (larger capacity is harmless). */
        for (uint32_t l = 0; l < f->nlist && st == ROTOR_OK; l++)
            st = list_reserve(f, q, &f->lists[l], f->lists[l].size + need[l]);
    }
    if (st == ROTOR_OK) {
        uint8_t *code = (uint8_t *)(assign + n);
        for (size_t i = 0; i < n; i++) {
            ivf_list *l = &f->lists[assign[i]];
            const uint32_t u = added_point(s, first, i);
            if (staged != NULL) {
                memcpy(code, staged + i * q->code_bytes, q->code_bytes);
                q->ops->store(q, l->codes, l->size, code);
            } else {
                quant_copy(q, l->codes, l->size, s->codes, u, code);
            }
            l->ids[l->size++] = u;
        }
        f->count = s->count;
        f->listed += n;
    }
    graph_publish_end(s);
    cm_free(a, staged);
    cm_free(a, assign);
    cm_free(a, need);
    return st;
}

/* The lists' quantizer, of the index's kind, trained on the residuals of
 * the ns sampled rows to their nearest centroids (sample is overwritten;
 * work holds at least ns u32). */
static rotor_status train_residuals(ivf *f, const graph_space *s, float *sample, size_t ns,
                                    uint32_t *work) {
    const rotor_allocator *a = &f->base.alloc;
    const size_t dim = f->dim;
    CM_FORWARD(km_assign(a, sample, ns, dim, dim, f->centroids, f->nlist, f->threads, work, NULL));
    for (size_t i = 0; i < ns; i++)
        for (size_t j = 0; j < dim; j++)
            sample[i * dim + j] -= f->centroids[(size_t)work[i] * dim + j];
    quant *rq;
    CM_FORWARD(quant_create(&s->q->spec, dim, ROTOR_METRIC_L2, f->seed ^ 0x7e5d0a1cULL, a, &rq));
    rotor_status st = ROTOR_OK;
    if (rq->ops->train != NULL) {
        st = rq->ops->train(rq, sample, ns, f->threads);
        rq->trained = st == ROTOR_OK;
    }
    if (st != ROTOR_OK) {
        quant_free(rq);
        return st;
    }
    f->rq = rq;
    return ROTOR_OK;
}

uint32_t ivf_default_lists(size_t count, rotor_metric metric) {
    /* A probe of residual lists prepares the query again (for pq64x4 at
     * 128 dimensions as much work as scanning 200-300 codes), so fewer,
     * longer lists win: at 2 sqrt(n) Debian SIFT 500k (pq64x4) ran
     * 1.3-1.4x and 100-d word vectors (pq50x4) 1.1-1.3x the QPS of
     * 4 sqrt(n) at recall@10 0.90 and 0.95; 1.4 sqrt(n) measured as
     * 2 sqrt(n) on SIFT. */
    const size_t per = metric != ROTOR_METRIC_IP ? 4 : 16;
    size_t guess = 4;
    while (guess * guess < per * count)
        guess++;
    return (uint32_t)(guess < count ? guess : count);
}

/* Trains the partitions on a seeded sample of the first batch. */
static rotor_status train(ivf *f, const graph_space *s) {
    const rotor_allocator *a = &f->base.alloc;
    if (f->nlist == 0)
        f->nlist = ivf_default_lists(s->count, s->metric);
    CM_RETURN_IF(f->nlist > s->count, ROTOR_ERR_INVALID_ARGUMENT,
                 "an IVF index of %u lists needs at least that many vectors, not %zu", f->nlist,
                 s->count);
    f->centroids = cm_alloc(a, (size_t)f->nlist * s->dim * sizeof(float), "IVF centroids");
    f->lists = cm_calloc(a, (size_t)f->nlist * sizeof *f->lists, "IVF lists");
    rotor_status st = f->centroids && f->lists ? ROTOR_OK : ROTOR_ERR_OUT_OF_MEMORY;

    /* A seeded sample without replacement (partial Fisher-Yates on ids). */
    size_t ns = (size_t)f->nlist * SAMPLE_PER_LIST;
    if (ns > s->count)
        ns = s->count;
    float *sample = NULL;
    uint32_t *perm = NULL;
    if (st == ROTOR_OK) {
        sample = cm_alloc(a, ns * s->dim * sizeof(float), "IVF training sample");
        perm = cm_alloc(a, s->count * sizeof *perm, "IVF training sample");
        st = sample && perm ? ROTOR_OK : ROTOR_ERR_OUT_OF_MEMORY;
    }
    if (st == ROTOR_OK) {
        uint64_t rng = f->seed ^ 0x1f0e5a2b3c4d6e7fULL;
        for (size_t i = 0; i < s->count; i++)
            perm[i] = (uint32_t)i;
        for (size_t i = 0; i < ns; i++) {
            size_t j = i + (size_t)(cm_splitmix64(&rng) % (s->count - i));
            uint32_t t = perm[i];
            perm[i] = perm[j];
            perm[j] = t;
            memcpy(sample + i * s->dim, s->vectors + (size_t)perm[i] * s->dim,
                   s->dim * sizeof(float));
        }
        km_params kp = {f->nlist, TRAIN_ITERS, f->threads, f->seed};
        st = km_train(a, sample, ns, s->dim, s->dim, &kp, f->centroids, NULL, NULL);
    }
    if (st == ROTOR_OK)
        st = centroid_layout(f);
    if (st == ROTOR_OK && s->metric != ROTOR_METRIC_IP)
        st = train_residuals(f, s, sample, ns, perm);
    cm_free(a, sample);
    cm_free(a, perm);
    if (st != ROTOR_OK) {
        /* Untrained again: a failed build leaves the navigator empty. */
        cm_free(a, f->centroids);
        cm_free(a, f->half_sq);
        cm_free(a, f->cols);
        cm_free(a, f->lists);
        quant_free(f->rq);
        f->centroids = NULL;
        f->half_sq = NULL;
        f->cols = NULL;
        f->lists = NULL;
        f->rq = NULL;
    }
    return st;
}

static rotor_status ivf_insert(nav *n, const graph_space *s) {
    ivf *f = (ivf *)n;
    if (s->count == f->count && s->nreused == 0)
        return ROTOR_OK;
    if (f->lists == NULL)
        CM_FORWARD(train(f, s));
    return add_points(f, s);
}

static inline bool removed(const uint64_t *deleted, size_t bits, uint32_t u) {
    return u < bits && cm_bit_get(deleted, u);
}

/* Removed points leave their lists: the ids and codes after each move up,
 * in order, within the list's store (for a fast-scan layout, a code is
 * loaded from its block and stored into the earlier position). Lists of a
 * mapped file are copied first; a failure there leaves every list holding
 * what it held. The lists' capacity stays. */
static rotor_status ivf_consolidate(nav *n, const graph_space *s, const uint64_t *deleted,
                                    size_t bits, unsigned threads) {
    (void)threads; /* a pass over 4 bytes an id: one thread is enough */
    ivf *f = (ivf *)n;
    const quant *q = list_quant(f, s);
    uint8_t *code = cm_alloc(&f->base.alloc, q->code_bytes, "IVF code copy");
    if (code == NULL)
        return ROTOR_ERR_OUT_OF_MEMORY;
    /* Lists are compacted in place, searches held: a pass of memory moves,
     * far shorter than a graph's prunes. */
    graph_publish_begin(s);
    rotor_status st = ROTOR_OK;
    for (uint32_t li = 0; li < f->nlist && st == ROTOR_OK; li++) {
        ivf_list *l = &f->lists[li];
        bool any = false;
        for (size_t i = 0; i < l->size && !any; i++)
            any = removed(deleted, bits, l->ids[i]);
        if (any && l->borrowed)
            st = list_move(f, q, l, l->size > 0 ? l->size : 1);
    }
    for (uint32_t li = 0; li < f->nlist && st == ROTOR_OK; li++) {
        ivf_list *l = &f->lists[li];
        if (l->borrowed)
            continue; /* nothing removed from it */
        size_t m = 0;
        for (size_t i = 0; i < l->size; i++) {
            if (removed(deleted, bits, l->ids[i]))
                continue;
            if (m != i) {
                quant_copy(q, l->codes, m, l->codes, i, code);
                l->ids[m] = l->ids[i];
            }
            m++;
        }
        f->listed -= l->size - m;
        l->size = m;
    }
    graph_publish_end(s);
    cm_free(&f->base.alloc, code);
    return st;
}

/* With a filter, how many times nprobe a search may probe: it goes on
 * past nprobe lists until it has scanned as many codes that pass as an
 * unfiltered search scans codes (estimated from the filter's share of
 * points), or this many times the lists. */
enum { FILTER_PROBE_GROWTH = 16 };

static rotor_status ivf_search(const nav *n, const graph_space *s, const float *query, size_t k,
                               const nav_search_params *p, int64_t *ids, float *dists) {
    const ivf *f = ivf_of(n);
    const simd_ops *ops = simd_ops_get();
    const size_t nlist = f->nlist;
    size_t nprobe = p->nprobe ? p->nprobe : NAV_DEFAULT_NPROBE;
    if (nprobe > nlist)
        nprobe = nlist;
    size_t most = nprobe;
    if (p->filter != NULL)
        most = nprobe * FILTER_PROBE_GROWTH < nlist ? nprobe * FILTER_PROBE_GROWTH : nlist;
    /* Beside the scan: the centroid distances, the query's residual and
     * the probe heap. With residual codes the query is prepared per list. */
    const size_t cb = cm_round_up(nlist * sizeof(float), CM_ALIGN);
    const size_t rb = cm_round_up(f->dim * sizeof(float), CM_ALIGN);
    graph_scan sc;
    CM_FORWARD(graph_scan_begin(&sc, &f->base.alloc, list_quant(f, s), f->rq ? NULL : query, k, p,
                                cb + rb + most * (sizeof(float) + sizeof(int64_t)), ids, dists));
    float *cdist = sc.extra;
    float *rquery = (float *)((uint8_t *)sc.extra + cb);
    int64_t *probe_id = (int64_t *)((uint8_t *)sc.extra + cb + rb);
    float *probe_d = (float *)(probe_id + most);
    /* Cosine rows are unit vectors: 1 - cos is half their squared L2. */
    if (f->rq != NULL && s->metric == ROTOR_METRIC_COSINE)
        sc.scale = 0.5f;

    ops->dot_f32_cols(query, f->cols, nlist, f->dim, km_pad(nlist), cdist);
    for (size_t l = 0; l < nlist; l++)
        cdist[l] = f->half_sq[l] - cdist[l];
    if (p->work != NULL)
        p->work->probed += nlist;
    cm_topk probes;
    cm_topk_init(&probes, probe_d, probe_id, most);
    for (size_t l = ops->first_below(cdist, 0, nlist, INFINITY); l < nlist;
         l = ops->first_below(cdist, l + 1, nlist, cm_topk_threshold(&probes)))
        cm_topk_push(&probes, cdist[l], (int64_t)l);
    cm_topk_finish(&probes);
    /* Filtered: codes scanned, and what an unfiltered search would scan in
     * passing ones (the first nprobe lists' codes). The share that pass is
     * of the ids in the lists: removed points consolidated out of them are
     * not there to be refused. */
    double scanned = 0, want = 0;
    for (size_t i = 0; i < nprobe; i++)
        want += (double)f->lists[probe_id[i]].size;
    const double share =
        p->filter != NULL && f->listed > 0 ? (double)p->filter->passing / (double)f->listed : 1;
    /* Ids of a mapped, unverified file are bounded before use. */
    size_t i = 0;
    for (; i < most && (i < nprobe || scanned * share < want); i++) {
        const ivf_list *l = &f->lists[probe_id[i]];
        /* The next list's first codes and ids load while this one is
         * scanned: a list holds about sqrt(n) / 2 codes, so a probe
         * would otherwise start on a miss. */
        if (i + 1 < most && probe_id[i + 1] >= 0) {
            const ivf_list *next = &f->lists[probe_id[i + 1]];
            const size_t bytes = sc.q->ops->store_bytes(sc.q, next->size);
            prefetch_bytes(next->codes, bytes < 1024 ? bytes : 1024);
            __builtin_prefetch(next->ids, 0, 3);
        }
        if (f->rq != NULL && l->size > 0) {
            const float *c = f->centroids + (size_t)probe_id[i] * f->dim;
            for (size_t j = 0; j < f->dim; j++)
                rquery[j] = query[j] - c[j];
            graph_scan_prepare(&sc, rquery);
            if (p->work != NULL)
                p->work->prepared++;
        }
        graph_scan_store(&sc, l->codes, 0, l->size, l->ids, s->count);
        scanned += (double)l->size;
    }
    if (p->filter != NULL && p->filter_gave_up != NULL && i == most && most < nlist &&
        scanned * share < want)
        *p->filter_gave_up = true;
    return graph_scan_end(&sc, s, query);
}

/* ---- persistence ------------------------------------------------------------ */

/*
 * Header section (little-endian, FORMAT.md): u32 nlist, u32 flags, then
 * nlist x dim float32 centroids, then nlist u64 list sizes. The ids section
 * holds every list's ids end to end; the codes section every list's code
 * store (store_bytes(size)), each padded to 64 bytes. Flag IVF_RESIDUAL:
 * the codes are of residuals, by the quantizer of the IVF quantizer
 * section (files without it hold the index's codes).
 */
enum { IVF_RESIDUAL = 1u };

static size_t meta_bytes(const ivf *f) {
    return 8 + (size_t)f->nlist * (f->dim * sizeof(float) + sizeof(uint64_t));
}

static void meta_write(const ivf *f, uint8_t *dst) {
    uint32_t head[2] = {f->nlist, f->rq != NULL ? IVF_RESIDUAL : 0};
    memcpy(dst, head, sizeof head);
    size_t cb = (size_t)f->nlist * f->dim * sizeof(float);
    memcpy(dst + 8, f->centroids, cb);
    for (uint32_t l = 0; l < f->nlist; l++) {
        uint64_t size = f->lists[l].size;
        memcpy(dst + 8 + cb + 8 * (size_t)l, &size, 8);
    }
}

static rotor_status ivf_save(const nav *n, const graph_space *s, ixf_writer *w) {
    const ivf *f = ivf_of(n);
    const size_t mb = meta_bytes(f);
    uint8_t *buf = cm_alloc(&f->base.alloc, mb, "an IVF header");
    if (buf == NULL)
        return ROTOR_ERR_OUT_OF_MEMORY;
    meta_write(f, buf);
    rotor_status st = ixf_put_section(w, IXF_SEC_IVF_META, buf, mb);
    cm_free(&f->base.alloc, buf);
    if (st == ROTOR_OK && f->rq != NULL) {
        const size_t qb = quant_saved_size(f->rq);
        buf = cm_alloc(&f->base.alloc, qb, "the IVF quantizer");
        st = buf != NULL ? quant_save(f->rq, buf, qb) : ROTOR_ERR_OUT_OF_MEMORY;
        if (st == ROTOR_OK)
            st = ixf_put_section(w, IXF_SEC_IVF_QUANT, buf, qb);
        cm_free(&f->base.alloc, buf);
    }
    const quant *lq = list_quant(f, s);
    if (st == ROTOR_OK)
        st = ixf_section_begin(w, IXF_SEC_IVF_IDS);
    for (uint32_t l = 0; st == ROTOR_OK && l < f->nlist; l++)
        st = ixf_append(w, f->lists[l].ids, f->lists[l].size * sizeof(uint32_t));
    if (st == ROTOR_OK)
        st = ixf_section_end(w);
    if (st == ROTOR_OK)
        st = ixf_section_begin(w, IXF_SEC_IVF_CODES);
    for (uint32_t l = 0; st == ROTOR_OK && l < f->nlist; l++) {
        st = ixf_append(w, f->lists[l].codes, lq->ops->store_bytes(lq, f->lists[l].size));
        if (st == ROTOR_OK)
            st = ixf_pad(w, CM_ALIGN);
    }
    if (st == ROTOR_OK)
        st = ixf_section_end(w);
    return st;
}

static rotor_status ivf_check(const nav *n) {
    const ivf *f = ivf_of(n);
    for (uint32_t l = 0; l < f->nlist; l++)
        for (size_t i = 0; i < f->lists[l].size; i++)
            CM_RETURN_IF(f->lists[l].ids[i] >= f->count, ROTOR_ERR_CORRUPT,
                         "the IVF ids section: list %u holds id %u of an index of %zu vectors", l,
                         f->lists[l].ids[i], f->count);
    return ROTOR_OK;
}

/* The lists' quantizer of a file whose lists hold residual codes: of the
 * index's kind and dimension, scoring L2, trained. */
static rotor_status open_residual_quant(const rotor_allocator *a, const graph_space *s,
                                        const ixf_file *file, quant **out) {
    const ixf_section sec = ixf_get(file, IXF_SEC_IVF_QUANT);
    CM_RETURN_IF(sec.data == NULL, ROTOR_ERR_FORMAT,
                 "the IVF header says its lists hold residual codes, but there is no IVF "
                 "quantizer section");
    CM_RETURN_IF(s->metric == ROTOR_METRIC_IP, ROTOR_ERR_FORMAT,
                 "the IVF lists of an inner-product index hold residual codes");
    CM_FORWARD(ixf_check(file, IXF_SEC_IVF_QUANT));
    quant *rq;
    CM_FORWARD(quant_load(sec.data, (size_t)sec.size, a, &rq));
    char got[32], want[32];
    quant_spec_name(&rq->spec, got, sizeof got);
    quant_spec_name(&s->q->spec, want, sizeof want);
    if (strcmp(got, want) != 0 || rq->dim != s->dim || rq->metric != ROTOR_METRIC_L2 ||
        !rq->trained) {
        rotor_status st = cm_fail(ROTOR_ERR_FORMAT,
                                  "the IVF quantizer section holds %s%s of %zu dimensions; the "
                                  "index's lists need a trained L2 %s of %zu",
                                  rq->trained ? "" : "an untrained ", got, rq->dim, want, s->dim);
        quant_free(rq);
        return st;
    }
    *out = rq;
    return ROTOR_OK;
}

/* Lists over ids and codes borrowed from the mapped file (copied, and
 * checked, when an insert grows them); search skips any id >= count. */
static rotor_status ivf_open(const rotor_allocator *a, const nav_params *p, const graph_space *s,
                             const ixf_file *file, nav **out) {
    *out = NULL;
    ixf_section msec = ixf_get(file, IXF_SEC_IVF_META), isec = ixf_get(file, IXF_SEC_IVF_IDS),
                csec = ixf_get(file, IXF_SEC_IVF_CODES);
    CM_RETURN_IF(msec.data == NULL || isec.data == NULL || csec.data == NULL, ROTOR_ERR_FORMAT,
                 "'%s' holds an IVF index without its list sections", ixf_path(file));
    CM_FORWARD(ixf_check(file, IXF_SEC_IVF_META));
    const uint8_t *meta = msec.data, *ids = isec.data, *codes = csec.data;
    const size_t meta_len = (size_t)msec.size, ids_bytes = (size_t)isec.size,
                 codes_bytes = (size_t)csec.size;
    const size_t count = s->count, dim = s->dim;
    CM_RETURN_IF(meta_len < 8, ROTOR_ERR_FORMAT, "the IVF header holds only %zu bytes", meta_len);
    uint32_t nlist, flags;
    memcpy(&nlist, meta, 4);
    memcpy(&flags, meta + 4, 4);
    CM_RETURN_IF(nlist == 0 || nlist > count || nlist != p->nlist, ROTOR_ERR_FORMAT,
                 "the IVF header declares %u lists for %zu vectors (parameters say %u)", nlist,
                 count, p->nlist);
    CM_RETURN_IF((flags & ~IVF_RESIDUAL) != 0, ROTOR_ERR_FORMAT,
                 "the IVF header holds flags %#x, which this version does not know", flags);
    const size_t cb = (size_t)nlist * dim * sizeof(float);
    CM_RETURN_IF(meta_len != 8 + cb + 8 * (size_t)nlist, ROTOR_ERR_FORMAT,
                 "the IVF header holds %zu bytes; %u lists of %zu dimensions need %zu", meta_len,
                 nlist, dim, 8 + cb + 8 * (size_t)nlist);
    nav *n;
    CM_FORWARD(ivf_create(a, p, s, &n));
    ivf *f = (ivf *)n;
    f->count = count;
    f->listed = 0;
    f->centroids = cm_alloc(a, cb, "IVF centroids");
    f->lists = cm_calloc(a, (size_t)nlist * sizeof *f->lists, "IVF lists");
    rotor_status st = f->centroids && f->lists ? ROTOR_OK : ROTOR_ERR_OUT_OF_MEMORY;
    if (st == ROTOR_OK && (flags & IVF_RESIDUAL))
        st = open_residual_quant(a, s, file, &f->rq);
    const quant *lq = list_quant(f, s);
    if (st == ROTOR_OK)
        memcpy(f->centroids, meta + 8, cb);
    for (size_t i = 0; st == ROTOR_OK && i < nlist * dim; i++)
        if (!isfinite(f->centroids[i]))
            st = cm_fail(ROTOR_ERR_FORMAT, "IVF centroid %zu holds a non-finite value", i / dim);
    if (st == ROTOR_OK)
        st = centroid_layout(f);
    /* Sizes are summed with overflow checks before any list is placed. */
    size_t total = 0, code_total = 0;
    for (uint32_t l = 0; st == ROTOR_OK && l < nlist; l++) {
        uint64_t size;
        memcpy(&size, meta + 8 + cb + 8 * (size_t)l, 8);
        if (size > count - total) {
            st = cm_fail(ROTOR_ERR_FORMAT, "the IVF lists hold more ids than the index's %zu",
                         count);
            break;
        }
        f->lists[l].ids = (uint32_t *)(ids + 4 * total);
        f->lists[l].codes = (uint8_t *)(codes + code_total);
        f->lists[l].size = f->lists[l].cap = (size_t)size;
        f->lists[l].borrowed = true;
        total += (size_t)size;
        f->listed = total;
        code_total += cm_round_up(lq->ops->store_bytes(lq, (size_t)size), CM_ALIGN);
    }
    /* Fewer ids than vectors: removed vectors consolidated out of their
     * lists (the index's deleted section says which). */
    if (st == ROTOR_OK && (ids_bytes != 4 * total || codes_bytes != code_total))
        st = cm_fail(ROTOR_ERR_FORMAT,
                     "the IVF sections hold %zu id bytes and %zu code bytes; the lists need "
                     "%zu and %zu",
                     ids_bytes, codes_bytes, 4 * total, code_total);
    if (st != ROTOR_OK) {
        ivf_free(n);
        return cm_fail_prefix(st, ixf_path(file));
    }
    f->nlist = nlist;
    /* The ids lie end to end: checking them all costs a read of 4 bytes a
     * vector, so they are checked here rather than where used. */
    st = ivf_check(n);
    if (st != ROTOR_OK) {
        ivf_free(n);
        return cm_fail_prefix(st, ixf_path(file));
    }
    ixf_advise(file, IXF_SEC_IVF_CODES, false);
    *out = n;
    return ROTOR_OK;
}

/* The lists stay in the mapping: searches bound every id they read, and
 * the first insert copies and checks them (list_reserve). */
static rotor_status ivf_own(nav *n) {
    (void)n;
    return ROTOR_OK;
}

const nav_ops ivf_nav_ops = {
    .kind = ROTOR_INDEX_IVF,
    .name = "ivf",
    .create = ivf_create,
    .insert = ivf_insert,
    .search = ivf_search,
    .search_batch = NULL,
    .stats = ivf_stats,
    .save = ivf_save,
    .open = ivf_open,
    .check = ivf_check,
    .own = ivf_own,
    .free = ivf_free,
    .consolidate = ivf_consolidate,
    .consolidated_drops_removed = true,
};
