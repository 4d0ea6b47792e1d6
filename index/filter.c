/*
 * Filtered search: a rotor_filter compiled once per search call into the
 * test the navigators call inside their loops (nav_filter), an estimate of
 * how many points pass, starting points among them, and the choice between
 * searching for them (a graph walk that routes through every point but
 * keeps only allowed ones; IVF probing further) and scanning them all.
 *
 * The scan enumerates the points from the smallest source the filter has
 * (a label's inverted list, the allow-list's set bits, else every point),
 * tests each, and scores the codes of those that pass (then reranks) or,
 * in a full-precision index, their vectors: exact over the allowed points
 * up to the codes' error, so recall cannot fall below what the codes give,
 * however few pass.
 */
#include <stdlib.h>
#include <string.h>

#include "index/index_internal.h"

/* ---- the test ---------------------------------------------------------------- */

/* Sorted a and b share an element. */
static bool meets_any(const uint32_t *a, size_t na, const uint32_t *b, size_t nb) {
    size_t i = 0, j = 0;
    while (i < na && j < nb) {
        if (a[i] == b[j])
            return true;
        if (a[i] < b[j])
            i++;
        else
            j++;
    }
    return false;
}

/* Sorted `want` is within sorted `have`. */
static bool meets_all(const uint32_t *have, size_t nh, const uint32_t *want, size_t nw) {
    size_t i = 0;
    for (size_t j = 0; j < nw; j++) {
        while (i < nh && have[i] < want[j])
            i++;
        if (i == nh || have[i] != want[j])
            return false;
        i++;
    }
    return true;
}

static bool filter_allows(const nav_filter *nf, uint32_t u) {
    const ix_filter *x = (const ix_filter *)nf;
    if (ix_is_deleted(x->ix, u))
        return false;
    if (x->f.nlabels > 0) {
        const ix_labels *l = &x->ix->labels;
        const uint64_t sig = u < l->rows ? l->sig[u] : 0;
        if (x->f.all ? (sig & x->mask) != x->mask : (sig & x->mask) == 0)
            return false;
        if (!x->sig_decides) {
            size_t n;
            const uint32_t *v = ix_labels_of(l, u, &n);
            if (x->f.all ? !meets_all(v, n, x->labels, x->nlabels)
                         : !meets_any(v, n, x->labels, x->nlabels))
                return false;
        }
    }
    if (x->points != NULL) {
        if (!cm_bit_get(x->points, u))
            return false;
    } else if (x->f.allow != NULL && (u >= x->f.allow_bits || !cm_bit_get(x->f.allow, u))) {
        return false; /* ids are points: the index has no keys of its own */
    }
    return x->f.predicate == NULL || x->f.predicate(x->f.opaque, ix_id_of(x->ix, u)) != 0;
}

/* ---- what passes --------------------------------------------------------------- */

static int cmp_u32(const void *a, const void *b) {
    const uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

/* The inverted list of label `lab`; NULL (n 0) when no point carries it. */
static const uint32_t *posting(const ix_labels *l, uint32_t lab, size_t *n) {
    *n = 0;
    if (l->nlabels == 0)
        return NULL;
    const uint32_t *at = bsearch(&lab, l->label, l->nlabels, sizeof lab, cmp_u32);
    if (at == NULL)
        return NULL;
    const size_t i = (size_t)(at - l->label);
    *n = (size_t)(l->post_off[i + 1] - l->post_off[i]);
    return l->post + l->post_off[i];
}

static size_t popcount_below(const uint64_t *bits, size_t nbits) {
    size_t c = 0;
    for (size_t w = 0; w < nbits / 64; w++)
        c += (size_t)__builtin_popcountll(bits[w]);
    if (nbits % 64)
        c += (size_t)__builtin_popcountll(bits[nbits / 64] & ((UINT64_C(1) << (nbits % 64)) - 1));
    return c;
}

/* Points a predicate is tried on to estimate its share. */
enum { PREDICATE_SAMPLE = 256 };
/* Starting points per filter label: spread over its list. */
enum { STARTS_PER_LABEL = 8, MAX_FILTER_STARTS = 32 };

/* An upper estimate of the points that pass: exact for one label or an
 * allow-list alone, the smaller of the parts' counts for several, a
 * sample's share for a predicate. */
static size_t estimate_passing(ix_filter *x) {
    const rotor_index *ix = x->ix;
    /* Removed points are in the label lists and bitsets still: every part
     * is capped by the live count, an upper estimate however they fall. */
    size_t est = ix_live(ix);
    if (x->f.nlabels > 0) {
        size_t sum = 0, least = SIZE_MAX;
        for (size_t i = 0; i < x->nlabels; i++) {
            size_t n;
            (void)posting(&ix->labels, x->labels[i], &n);
            sum += n;
            least = n < least ? n : least;
        }
        const size_t lab = x->f.all ? least : sum;
        est = lab < est ? lab : est;
    }
    if (x->points != NULL || x->f.allow != NULL) {
        const uint64_t *bits = x->points != NULL ? x->points : x->f.allow;
        const size_t nb = x->points != NULL             ? ix->count
                          : x->f.allow_bits < ix->count ? x->f.allow_bits
                                                        : ix->count;
        const size_t c = popcount_below(bits, nb);
        est = c < est ? c : est;
    }
    if (est > 0 && x->f.predicate != NULL) {
        size_t hits = 0;
        const size_t step = ix->count > PREDICATE_SAMPLE ? ix->count / PREDICATE_SAMPLE : 1;
        size_t tried = 0;
        for (size_t u = 0; u < ix->count && tried < PREDICATE_SAMPLE; u += step) {
            if (ix_is_deleted(ix, u))
                continue; /* its key is gone: the predicate never sees it */
            hits += x->f.predicate(x->f.opaque, ix_id_of(ix, (uint32_t)u)) != 0;
            tried++;
        }
        /* None in the sample: rare, not absent; half a hit is the guess. */
        const double share = hits > 0 ? (double)hits / (double)tried : 0.5 / (double)tried;
        const size_t c = (size_t)(share * (double)ix_live(ix)) + 1;
        if (tried > 0)
            est = c < est ? c : est;
    }
    return est;
}

/* Starting points among the filter labels' own points, spread over each
 * label's list; each must pass the whole filter. Only for a filter that
 * passes under 1 / STARTS_BELOW of the points: above that the graph's own
 * sampled starting points, scored anyway, hold allowed ones near the
 * query, and each extra start costs a code scored alone (at 784
 * dimensions a fast-scan block, 0.6 us: 64 of them took a third of a
 * search that every point passes, Fashion-MNIST). */
enum { STARTS_BELOW = 16 };

static rotor_status pick_starts(ix_filter *x) {
    if (x->f.nlabels == 0 || x->nav.passing * STARTS_BELOW >= x->ix->count)
        return ROTOR_OK;
    x->starts = cm_alloc(&x->ix->alloc, MAX_FILTER_STARTS * sizeof *x->starts, "filter starts");
    if (x->starts == NULL)
        return ROTOR_ERR_OUT_OF_MEMORY;
    size_t m = 0;
    for (size_t i = 0; i < x->nlabels && m < MAX_FILTER_STARTS; i++) {
        size_t n;
        const uint32_t *p = posting(&x->ix->labels, x->labels[i], &n);
        const size_t want = n < STARTS_PER_LABEL ? n : STARTS_PER_LABEL;
        for (size_t j = 0; j < want && m < MAX_FILTER_STARTS; j++) {
            const uint32_t u = p[j * n / want];
            if (filter_allows(&x->nav, u))
                x->starts[m++] = u;
        }
    }
    x->nav.starts = x->starts;
    x->nav.nstarts = m;
    return ROTOR_OK;
}

/* ---- search or scan ---------------------------------------------------------------
 *
 * Scanning costs one code (or vector) per point the enumeration visits;
 * searching costs about what an unfiltered search does, times how much
 * further it must go to meet as many allowed points: count / passing (at
 * most 16x). A graph search of list L expands about L records of R
 * neighbours (N, when it reads only the first N of each list); an IVF
 * search scans nprobe lists of count / nlist codes. A scanned code costs
 * SCAN_PER_CODE of one scored in a search's loop (it is read alone, and
 * at a scattered address). Measured on Fashion-MNIST (784-d, bin1fs walk
 * + sq8, refine 400, rerank 100, one thread): at 10 % passing the walk
 * and the scan cross near L = 24, where the modelled
 * walk (24 x 10 x 32 = 7,680 codes) is 1.3x the scan's 6,000; at 1 % the
 * scan ran 5.5x the walk's QPS at L = 16 (and recall 1.0 against 0.87);
 * at 50 % the walk ran 10x the scan's. */
#define SCAN_PER_CODE 1.3
enum { FILTER_GROWTH = 16 };

static bool scan_is_cheaper(const rotor_index *ix, const nav_search_params *np, size_t visits,
                            size_t passing) {
    const double grow_raw = (double)ix->count / (double)(passing ? passing : 1);
    const double grow = grow_raw < FILTER_GROWTH ? grow_raw : FILTER_GROWTH;
    /* From the parameters, not the navigator's statistics: an IVF index
     * would add up every list's size for each search. */
    double search;
    switch (ix->params.kind) {
    case ROTOR_INDEX_VAMANA: {
        const double list = (double)(np->list ? np->list : NAV_DEFAULT_LIST);
        const uint32_t degree = ix->params.graph_degree;
        const double width = np->neighbors && np->neighbors < degree ? np->neighbors : degree;
        search = list * grow * width;
        break;
    }
    case ROTOR_INDEX_IVF: {
        const double parts = ix->params.nlist ? ix->params.nlist : 1;
        double probe = (double)(np->nprobe ? np->nprobe : NAV_DEFAULT_NPROBE) * grow;
        probe = probe < parts ? probe : parts;
        search = probe * (double)ix->count / parts;
        break;
    }
    default: /* flat: the search scans every code anyway */ search = (double)ix->count; break;
    }
    return (double)visits * SCAN_PER_CODE < search;
}

/* How many points the scan's enumeration visits (each tested). */
static size_t scan_visits(const ix_filter *x) {
    const rotor_index *ix = x->ix;
    size_t best = ix->count;
    if (x->f.nlabels > 0) {
        size_t sum = 0, least = SIZE_MAX;
        for (size_t i = 0; i < x->nlabels; i++) {
            size_t n;
            (void)posting(&ix->labels, x->labels[i], &n);
            sum += n;
            least = n < least ? n : least;
        }
        best = x->f.all ? least : sum;
    }
    return best;
}

/* The allow-lists as one bitset over points: the ids listed, and/or the
 * set bits of a bitset over keys, each looked up; both given: a point
 * must be in both. */
static rotor_status allow_points(ix_filter *x) {
    const rotor_index *ix = x->ix;
    const size_t words = (ix->count + 63) / 64;
    x->points = cm_calloc(&ix->alloc, (words ? words : 1) * sizeof *x->points, "allow-list");
    if (x->points == NULL)
        return ROTOR_ERR_OUT_OF_MEMORY;
    uint32_t u;
    for (size_t i = 0; i < x->f.n_allow_ids; i++)
        if (ix_find_point(ix, x->f.allow_ids[i], &u))
            cm_bit_set(x->points, u);
    if (x->f.allow == NULL)
        return ROTOR_OK;
    uint64_t *into = x->points, *other = NULL;
    if (x->f.allow_ids != NULL) {
        other = cm_calloc(&ix->alloc, (words ? words : 1) * sizeof *other, "allow-list");
        if (other == NULL)
            return ROTOR_ERR_OUT_OF_MEMORY;
        into = other;
    }
    for (size_t w = 0; w * 64 < x->f.allow_bits; w++) {
        uint64_t bits = x->f.allow[w];
        while (bits) {
            const size_t id = w * 64 + (size_t)__builtin_ctzll(bits);
            bits &= bits - 1;
            if (id < x->f.allow_bits && ix_find_point(ix, (int64_t)id, &u))
                cm_bit_set(into, u);
        }
    }
    if (other != NULL) {
        for (size_t w = 0; w < words; w++)
            x->points[w] &= other[w];
        cm_free(&ix->alloc, other);
    }
    return ROTOR_OK;
}

static rotor_status compile(const rotor_index *ix, const rotor_filter *f, int mode,
                            nav_search_params *np, ix_filter *out);

rotor_status ix_filter_compile(const rotor_index *ix, const rotor_filter *f, int mode,
                               nav_search_params *np, ix_filter *out) {
    *out = (ix_filter){.ix = ix};
    np->filter = NULL;
    /* Removed points are refused by every search, by the filter's test:
     * an index with removals compiles one even when the caller gave none. */
    static const rotor_filter no_condition = {0};
    if (f == NULL && (ix->ndeleted == 0 || (ix->pending == 0 && !ix->reusing && ix_live(ix) > 0 &&
                                            ix->nav->ops->consolidated_drops_removed)))
        return ROTOR_OK; /* nothing removed that a search could meet */
    const rotor_status st = compile(ix, f != NULL ? f : &no_condition, mode, np, out);
    if (st != ROTOR_OK) {
        ix_filter_free(out);
        np->filter = NULL;
    }
    return st;
}

/* Whether every point carries one of an "any of" filter's labels, when
 * their signature bits decide it: the words are read once per mask and
 * set of labels (a set of labels is replaced whole, with nothing known),
 * since a search that asks may be one of thousands with the same filter. */
static bool every_point_carries(const ix_filter *x) {
    const rotor_index *ix = x->ix;
    ix_labels *l = (ix_labels *)&ix->labels; /* its two remembered masks only */
    if (!x->sig_decides || l->rows < ix->count)
        return false;
    if (atomic_load_explicit(&l->covered_by, memory_order_relaxed) == x->mask)
        return true;
    if (atomic_load_explicit(&l->not_covered_by, memory_order_relaxed) == x->mask)
        return false;
    for (size_t u = 0; u < ix->count; u++) {
        if ((l->sig[u] & x->mask) == 0) {
            atomic_store_explicit(&l->not_covered_by, x->mask, memory_order_relaxed);
            return false;
        }
    }
    atomic_store_explicit(&l->covered_by, x->mask, memory_order_relaxed);
    return true;
}

static rotor_status compile(const rotor_index *ix, const rotor_filter *f, int mode,
                            nav_search_params *np, ix_filter *out) {
    CM_RETURN_IF(f->nlabels > 0 && f->labels == NULL, ROTOR_ERR_INVALID_ARGUMENT,
                 "filter: labels must not be NULL");
    CM_RETURN_IF(f->allow_bits > 0 && f->allow == NULL, ROTOR_ERR_INVALID_ARGUMENT,
                 "filter: allow must not be NULL");
    CM_RETURN_IF(f->n_allow_ids > 0 && f->allow_ids == NULL, ROTOR_ERR_INVALID_ARGUMENT,
                 "filter: allow_ids must not be NULL");
    out->f = *f;
    out->mode = mode;
    out->nav.allows = filter_allows;
    if (f->nlabels > 0) {
        out->labels = cm_alloc(&ix->alloc, f->nlabels * sizeof *out->labels, "filter labels");
        if (out->labels == NULL)
            return ROTOR_ERR_OUT_OF_MEMORY;
        memcpy(out->labels, f->labels, f->nlabels * sizeof *out->labels);
        qsort(out->labels, f->nlabels, sizeof *out->labels, cmp_u32);
        size_t m = 1;
        for (size_t i = 1; i < f->nlabels; i++)
            if (out->labels[i] != out->labels[m - 1])
                out->labels[m++] = out->labels[i];
        out->nlabels = m;
        for (size_t i = 0; i < m; i++)
            out->mask |= (uint64_t)1 << (out->labels[i] & 63);
        /* A label absent from the index sets no bit, so it is refused
         * right; two of the filter's on one bit are shared when both are
         * carried, and an absent one makes "all of" pass nothing anyway. */
        out->sig_decides = ix->labels.exact_sig || (out->mask & ix->labels.shared_bits) == 0;
    }
    if (f->allow == NULL)
        out->f.allow_bits = 0;
    if (f->allow_ids != NULL || (f->allow != NULL && ix_has_keys(ix)))
        CM_FORWARD(allow_points(out));
    const size_t passing = estimate_passing(out);
    out->nav.passing = passing;
    /* Provably none: a label no point carries, or an empty allow-list. */
    const bool exact_parts = f->predicate == NULL;
    out->none = passing == 0 && (exact_parts || f->nlabels > 0);
    if (out->none) {
        np->filter = &out->nav;
        return ROTOR_OK;
    }
    /* Provably all: one label every point carries, or an allow-list of
     * every point, and nothing else, in an index without removals. The
     * search then runs unfiltered. */
    const bool allow = f->allow != NULL || f->allow_ids != NULL;
    const int parts = (f->nlabels > 0) + allow + (f->predicate != NULL);
    if (parts == 1 && exact_parts && ix->ndeleted == 0 && passing == ix->count &&
        (allow || out->nlabels == 1 || f->all || every_point_carries(out)))
        return ROTOR_OK;
    /* Removals alone, no more of them pending than FreshDiskANN leaves
     * unconsolidated: they walk in the list (graph.h). */
    out->nav.route_in_list = parts == 0 && ix->pending * 10 <= ix_live(ix);
    CM_FORWARD(pick_starts(out));
    out->scan = mode > 0 || (mode == 0 && scan_is_cheaper(ix, np, scan_visits(out), passing));
    np->filter = &out->nav;
    return ROTOR_OK;
}

void ix_filter_free(ix_filter *x) {
    if (x->ix == NULL)
        return;
    cm_free(&x->ix->alloc, x->points);
    x->points = NULL;
    cm_free(&x->ix->alloc, x->labels);
    cm_free(&x->ix->alloc, x->starts);
    x->labels = NULL;
    x->starts = NULL;
}

/* ---- the scan ------------------------------------------------------------------- */

enum { SCAN_CHUNK = 512 };

typedef struct scan_sink {
    const graph_space *s;
    const float *query;
    graph_scan *sc; /* codes; NULL: exact distances into top */
    cm_topk *top;
    uint32_t buf[SCAN_CHUNK];
    size_t n;
} scan_sink;

static void flush(scan_sink *k) {
    if (k->n == 0)
        return;
    if (k->sc != NULL)
        graph_scan_ids(k->sc, k->s->codes, k->s->count, k->buf, k->n);
    else
        graph_exact_ids(k->s, k->query, k->buf, k->n, k->top);
    k->n = 0;
}

static inline void take(scan_sink *k, const ix_filter *x, uint32_t u) {
    if (!filter_allows(&x->nav, u))
        return;
    k->buf[k->n++] = u;
    if (k->n == SCAN_CHUNK)
        flush(k);
}

/* Every point that passes, once each, into the sink: from the smallest
 * inverted list (all of), from each list skipping points an earlier list
 * gave (any of), from the allow-list's bits, or from every point. */
static void enumerate(const ix_filter *x, scan_sink *k) {
    const rotor_index *ix = x->ix;
    const ix_labels *l = &ix->labels;
    if (x->f.nlabels > 0 && x->f.all) {
        size_t best = 0, least = SIZE_MAX;
        for (size_t i = 0; i < x->nlabels; i++) {
            size_t n;
            (void)posting(l, x->labels[i], &n);
            if (n < least) {
                least = n;
                best = i;
            }
        }
        size_t n;
        const uint32_t *p = posting(l, x->labels[best], &n);
        for (size_t j = 0; j < n; j++)
            take(k, x, p[j]);
    } else if (x->f.nlabels > 0) {
        for (size_t i = 0; i < x->nlabels; i++) {
            size_t n;
            const uint32_t *p = posting(l, x->labels[i], &n);
            for (size_t j = 0; j < n; j++) {
                size_t nv;
                const uint32_t *v = ix_labels_of(l, p[j], &nv);
                /* Given already by an earlier label's list. */
                if (i > 0 && meets_any(v, nv, x->labels, i))
                    continue;
                take(k, x, p[j]);
            }
        }
    } else if (x->points != NULL || x->f.allow != NULL) {
        const uint64_t *allow = x->points != NULL ? x->points : x->f.allow;
        const size_t nb = x->points != NULL             ? ix->count
                          : x->f.allow_bits < ix->count ? x->f.allow_bits
                                                        : ix->count;
        for (size_t w = 0; w * 64 < nb; w++) {
            uint64_t bits = allow[w];
            while (bits) {
                const size_t u = w * 64 + (size_t)__builtin_ctzll(bits);
                bits &= bits - 1;
                if (u < nb)
                    take(k, x, (uint32_t)u);
            }
        }
    } else {
        for (size_t u = 0; u < ix->count; u++)
            take(k, x, (uint32_t)u);
    }
    flush(k);
}

rotor_status ix_filter_scan(const rotor_index *ix, const ix_filter *x, const graph_space *s,
                            const nav_search_params *np, const float *query, size_t k, int64_t *ids,
                            float *dists) {
    scan_sink *sink = cm_alloc(&ix->alloc, sizeof *sink, "filtered scan");
    if (sink == NULL)
        return ROTOR_ERR_OUT_OF_MEMORY;
    *sink = (scan_sink){.s = s, .query = query};
    rotor_status st = ROTOR_OK;
    nav_search_params p = *np;
    p.filter = NULL; /* tested while enumerating */
    if (ix->q != NULL) {
        graph_scan sc;
        st = graph_scan_begin(&sc, &ix->alloc, ix->q, query, k, &p, 0, ids, dists);
        if (st == ROTOR_OK) {
            sink->sc = &sc;
            enumerate(x, sink);
            st = graph_scan_end(&sc, s, query);
        }
    } else {
        cm_topk top;
        cm_topk_init(&top, dists, ids, k);
        sink->top = &top;
        enumerate(x, sink);
        cm_topk_finish(&top);
    }
    cm_free(&ix->alloc, sink);
    return st;
}
