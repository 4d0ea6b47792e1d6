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
 * for. Codes are those of the whole vector, not of its residual to the
 * centroid: the same codes serve the flat and graph kinds, TurboQuant and
 * binary codes need no per-list state, and the rerank absorbs the loss.
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

enum { SAMPLE_PER_LIST = 48, TRAIN_ITERS = 12, SCAN_BLOCK = 512 };

typedef struct ivf_list {
    uint32_t *ids;
    uint8_t *codes; /* the quantizer's store of `cap` codes */
    size_t size, cap;
    bool borrowed; /* ids and codes live in a mapped index file (ivf_open) */
} ivf_list;

struct ivf {
    rotor_allocator alloc;
    ivf_params p;
    size_t dim, count;
    float *centroids; /* nlist x dim */
    ivf_list *lists;
};

size_t ivf_count(const ivf *f) { return f->count; }
uint32_t ivf_nlist(const ivf *f) { return f->p.nlist; }

size_t ivf_bytes(const ivf *f) {
    size_t b = (size_t)f->p.nlist * (f->dim * sizeof(float) + sizeof(ivf_list));
    for (uint32_t l = 0; l < f->p.nlist; l++)
        b += f->lists[l].cap * sizeof(uint32_t);
    return b;
}

size_t ivf_bytes_codes(const ivf *f, const quant *q) {
    size_t b = 0;
    for (uint32_t l = 0; l < f->p.nlist; l++)
        b += q->ops->store_bytes(q, f->lists[l].cap);
    return b;
}

void ivf_free(ivf *f) {
    if (f == NULL)
        return;
    rotor_allocator a = f->alloc;
    if (f->lists != NULL) {
        for (uint32_t l = 0; l < f->p.nlist; l++) {
            if (f->lists[l].borrowed)
                continue;
            cm_free(&a, f->lists[l].ids);
            cm_free(&a, f->lists[l].codes);
        }
    }
    cm_free(&a, f->lists);
    cm_free(&a, f->centroids);
    cm_free(&a, f);
}

/* Grows list `l` to hold `need` codes; on failure it is unchanged. */
static rotor_status list_reserve(ivf *f, const quant *q, ivf_list *l, size_t need) {
    if (need <= l->cap)
        return ROTOR_OK;
    size_t cap = l->cap < 32 ? 32 : l->cap;
    while (cap < need)
        cap *= 2;
    uint32_t *ids = cm_alloc(&f->alloc, cap * sizeof *ids, "IVF list ids");
    uint8_t *codes = cm_calloc(&f->alloc, q->ops->store_bytes(q, cap), "IVF list codes");
    if (ids == NULL || codes == NULL) {
        cm_free(&f->alloc, ids);
        cm_free(&f->alloc, codes);
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
                cm_free(&f->alloc, ids);
                cm_free(&f->alloc, codes);
                return cm_fail(ROTOR_ERR_CORRUPT,
                               "an IVF list holds id %u of an index of %zu vectors; the index "
                               "file is damaged",
                               ids[i], f->count);
            }
        }
    } else {
        cm_free(&f->alloc, l->ids);
        cm_free(&f->alloc, l->codes);
    }
    l->borrowed = false;
    l->ids = ids;
    l->codes = codes;
    l->cap = cap;
    return ROTOR_OK;
}

rotor_status ivf_add(ivf *f, const graph_space *s) {
    const size_t first = f->count, n = s->count - first;
    if (n == 0)
        return ROTOR_OK;
    const quant *q = s->q;
    CM_RETURN_IF(s->count > UINT32_MAX, ROTOR_ERR_INVALID_ARGUMENT,
                 "an IVF index holds at most %u points, not %zu", UINT32_MAX, s->count);
    uint32_t *assign = cm_alloc(&f->alloc, n * sizeof *assign + q->code_bytes, "IVF assignment");
    size_t *need = cm_calloc(&f->alloc, f->p.nlist * sizeof *need, "IVF list sizes");
    rotor_status st = assign && need ? ROTOR_OK : ROTOR_ERR_OUT_OF_MEMORY;
    if (st == ROTOR_OK)
        st = km_assign(&f->alloc, s->vectors + first * s->dim, n, s->dim, s->dim, f->centroids,
                       f->p.nlist, f->p.threads, assign, NULL);
    if (st == ROTOR_OK) {
        for (size_t i = 0; i < n; i++)
            need[assign[i]]++;
        /* Every list is grown before any row is filed, so a failure leaves
         * the lists as they were (larger capacity is harmless). */
        for (uint32_t l = 0; l < f->p.nlist && st == ROTOR_OK; l++)
            st = list_reserve(f, q, &f->lists[l], f->lists[l].size + need[l]);
    }
    if (st == ROTOR_OK) {
        uint8_t *code = (uint8_t *)(assign + n);
        for (size_t i = 0; i < n; i++) {
            ivf_list *l = &f->lists[assign[i]];
            q->ops->load(q, s->codes, first + i, code);
            q->ops->store(q, l->codes, l->size, code);
            l->ids[l->size++] = (uint32_t)(first + i);
        }
        f->count = s->count;
    }
    cm_free(&f->alloc, assign);
    cm_free(&f->alloc, need);
    return st;
}

rotor_status ivf_build(const rotor_allocator *a, const ivf_params *p, const graph_space *s,
                       ivf **out) {
    *out = NULL;
    CM_RETURN_IF(s->q == NULL, ROTOR_ERR_INVALID_ARGUMENT, "an IVF index needs a quantizer");
    ivf_params fp = *p;
    if (fp.threads == 0)
        fp.threads = 1;
    if (fp.nlist == 0) {
        size_t guess = 4;
        while (guess * guess < 16 * s->count)
            guess++;
        fp.nlist = (uint32_t)(guess < s->count ? guess : s->count);
    }
    CM_RETURN_IF(fp.nlist > s->count, ROTOR_ERR_INVALID_ARGUMENT,
                 "an IVF index of %u lists needs at least that many vectors, not %zu", fp.nlist,
                 s->count);
    ivf *f = cm_calloc(a, sizeof *f, "IVF index");
    if (f == NULL)
        return ROTOR_ERR_OUT_OF_MEMORY;
    f->alloc = *a;
    f->p = fp;
    f->dim = s->dim;
    f->centroids = cm_alloc(a, (size_t)fp.nlist * s->dim * sizeof(float), "IVF centroids");
    f->lists = cm_calloc(a, (size_t)fp.nlist * sizeof *f->lists, "IVF lists");
    rotor_status st = f->centroids && f->lists ? ROTOR_OK : ROTOR_ERR_OUT_OF_MEMORY;

    /* A seeded sample without replacement (partial Fisher-Yates on ids). */
    size_t ns = (size_t)fp.nlist * SAMPLE_PER_LIST;
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
        uint64_t rng = fp.seed ^ 0x1f0e5a2b3c4d6e7fULL;
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
        km_params kp = {fp.nlist, TRAIN_ITERS, fp.threads, fp.seed};
        st = km_train(a, sample, ns, s->dim, s->dim, &kp, f->centroids, NULL, NULL);
    }
    cm_free(a, sample);
    cm_free(a, perm);
    if (st == ROTOR_OK)
        st = ivf_add(f, s);
    if (st != ROTOR_OK) {
        ivf_free(f);
        return st;
    }
    *out = f;
    return ROTOR_OK;
}

rotor_status ivf_search(const ivf *f, const graph_space *s, const float *query, size_t k,
                        size_t nprobe, size_t rerank, int64_t *ids, float *dists) {
    const quant *q = s->q;
    const simd_ops *ops = simd_ops_get();
    const size_t nlist = f->p.nlist;
    if (nprobe > nlist)
        nprobe = nlist;
    const size_t keep = rerank > k ? rerank : k;
    /* [query state][quantizer scratch][centroid distances][probe heap]
     * [candidate heap][scan block], each part on a cache line. */
    const size_t qb = cm_round_up(q->query_bytes, CM_ALIGN);
    const size_t sb = cm_round_up(q->scratch_floats * sizeof(float), CM_ALIGN);
    const size_t cb = cm_round_up(nlist * sizeof(float), CM_ALIGN);
    const size_t pb = cm_round_up(nprobe * (sizeof(float) + sizeof(int64_t)), CM_ALIGN);
    const size_t kb =
        cm_round_up(keep * (sizeof(float) + sizeof(int64_t) + sizeof(uint32_t)), CM_ALIGN);
    uint8_t *mem = cm_alloc(&f->alloc, qb + sb + cb + pb + kb + SCAN_BLOCK * sizeof(float),
                            "IVF search state");
    if (mem == NULL)
        return ROTOR_ERR_OUT_OF_MEMORY;
    void *qs = mem;
    float *cdist = (float *)(mem + qb + sb);
    int64_t *probe_id = (int64_t *)(mem + qb + sb + cb);
    float *probe_d = (float *)(probe_id + nprobe);
    int64_t *cand_id = (int64_t *)(mem + qb + sb + cb + pb);
    float *cand_d = (float *)(cand_id + keep);
    uint32_t *cand = (uint32_t *)(cand_d + keep);
    float *block = (float *)(mem + qb + sb + cb + pb + kb);

    ops->l2sq_f32_rows(query, f->centroids, nlist, f->dim, f->dim, cdist);
    cm_topk probes;
    cm_topk_init(&probes, probe_d, probe_id, nprobe);
    for (size_t l = 0; l < nlist; l++)
        cm_topk_push(&probes, cdist[l], (int64_t)l);
    cm_topk_finish(&probes);

    q->ops->prepare(q, query, qs, (float *)(mem + qb));
    cm_topk top;
    const bool exact_after = rerank > 0;
    cm_topk_init(&top, exact_after ? cand_d : dists, exact_after ? cand_id : ids,
                 exact_after ? keep : k);
    for (size_t p = 0; p < nprobe; p++) {
        const ivf_list *l = &f->lists[probe_id[p]];
        for (size_t start = 0; start < l->size; start += SCAN_BLOCK) {
            size_t n = l->size - start < SCAN_BLOCK ? l->size - start : SCAN_BLOCK;
            q->ops->scan(q, qs, l->codes, start, n, block);
            size_t i = ops->first_below(block, 0, n, cm_topk_threshold(&top));
            while (i < n) {
                /* Ids of a mapped, unverified file are bounded before use. */
                if (l->ids[start + i] < f->count)
                    cm_topk_push(&top, block[i], (int64_t)l->ids[start + i]);
                i = ops->first_below(block, i + 1, n, cm_topk_threshold(&top));
            }
        }
    }
    rotor_status st = ROTOR_OK;
    if (exact_after) {
        /* Best estimates first: a store on disk reads them in that order. */
        cm_topk_finish(&top);
        for (size_t i = 0; i < top.size; i++)
            cand[i] = (uint32_t)cand_id[i];
        cm_topk exact;
        cm_topk_init(&exact, dists, ids, k);
        st = graph_rerank(s, query, cand, top.size, &exact);
        cm_topk_finish(&exact);
    } else {
        cm_topk_finish(&top);
    }
    cm_free(&f->alloc, mem);
    return st;
}

/* ---- persistence ------------------------------------------------------------ */

/*
 * Header section (little-endian, FORMAT.md): u32 nlist, u32 zero, then
 * nlist x dim float32 centroids, then nlist u64 list sizes. The ids section
 * holds every list's ids end to end; the codes section every list's code
 * store (store_bytes(size)), each padded to 64 bytes.
 */
size_t ivf_meta_bytes(const ivf *f) {
    return 8 + (size_t)f->p.nlist * (f->dim * sizeof(float) + sizeof(uint64_t));
}

void ivf_meta_write(const ivf *f, uint8_t *dst) {
    uint32_t head[2] = {f->p.nlist, 0};
    memcpy(dst, head, sizeof head);
    size_t cb = (size_t)f->p.nlist * f->dim * sizeof(float);
    memcpy(dst + 8, f->centroids, cb);
    for (uint32_t l = 0; l < f->p.nlist; l++) {
        uint64_t size = f->lists[l].size;
        memcpy(dst + 8 + cb + 8 * (size_t)l, &size, 8);
    }
}

void ivf_list_view(const ivf *f, uint32_t l, const uint32_t **ids, const uint8_t **codes,
                   size_t *size) {
    *ids = f->lists[l].ids;
    *codes = f->lists[l].codes;
    *size = f->lists[l].size;
}

rotor_status ivf_open(const rotor_allocator *a, const ivf_params *p, const quant *q, size_t dim,
                      size_t count, const uint8_t *meta, size_t meta_bytes, const uint8_t *ids,
                      size_t ids_bytes, const uint8_t *codes, size_t codes_bytes, ivf **out) {
    *out = NULL;
    CM_RETURN_IF(meta_bytes < 8, ROTOR_ERR_FORMAT, "the IVF header holds only %zu bytes",
                 meta_bytes);
    uint32_t nlist;
    memcpy(&nlist, meta, 4);
    CM_RETURN_IF(nlist == 0 || nlist > count || nlist != p->nlist, ROTOR_ERR_FORMAT,
                 "the IVF header declares %u lists for %zu vectors (parameters say %u)", nlist,
                 count, p->nlist);
    const size_t cb = (size_t)nlist * dim * sizeof(float);
    CM_RETURN_IF(meta_bytes != 8 + cb + 8 * (size_t)nlist, ROTOR_ERR_FORMAT,
                 "the IVF header holds %zu bytes; %u lists of %zu dimensions need %zu", meta_bytes,
                 nlist, dim, 8 + cb + 8 * (size_t)nlist);
    ivf *f = cm_calloc(a, sizeof *f, "IVF index");
    if (f == NULL)
        return ROTOR_ERR_OUT_OF_MEMORY;
    f->alloc = *a;
    f->p = *p;
    if (f->p.threads == 0)
        f->p.threads = 1;
    f->dim = dim;
    f->count = count;
    f->centroids = cm_alloc(a, cb, "IVF centroids");
    f->lists = cm_calloc(a, (size_t)nlist * sizeof *f->lists, "IVF lists");
    rotor_status st = f->centroids && f->lists ? ROTOR_OK : ROTOR_ERR_OUT_OF_MEMORY;
    if (st == ROTOR_OK)
        memcpy(f->centroids, meta + 8, cb);
    for (size_t i = 0; st == ROTOR_OK && i < nlist * dim; i++)
        if (!isfinite(f->centroids[i]))
            st = cm_fail(ROTOR_ERR_FORMAT, "IVF centroid %zu holds a non-finite value", i / dim);
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
        code_total += cm_round_up(q->ops->store_bytes(q, (size_t)size), CM_ALIGN);
    }
    if (st == ROTOR_OK && total != count)
        st = cm_fail(ROTOR_ERR_FORMAT, "the IVF lists hold %zu ids, the index %zu vectors", total,
                     count);
    if (st == ROTOR_OK && (ids_bytes != 4 * count || codes_bytes != code_total))
        st = cm_fail(ROTOR_ERR_FORMAT,
                     "the IVF sections hold %zu id bytes and %zu code bytes; the lists need "
                     "%zu and %zu",
                     ids_bytes, codes_bytes, 4 * count, code_total);
    if (st != ROTOR_OK) {
        ivf_free(f);
        return st;
    }
    *out = f;
    return ROTOR_OK;
}

rotor_status ivf_check(const ivf *f) {
    for (uint32_t l = 0; l < f->p.nlist; l++)
        for (size_t i = 0; i < f->lists[l].size; i++)
            CM_RETURN_IF(f->lists[l].ids[i] >= f->count, ROTOR_ERR_CORRUPT,
                         "IVF list %u holds id %u of an index of %zu vectors", l,
                         f->lists[l].ids[i], f->count);
    return ROTOR_OK;
}
