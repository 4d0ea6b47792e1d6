/*
 * Labels and filtered search: a filtered search never returns a vector the
 * filter refuses (over random labels and filters, every index kind, with
 * the default build, searched and scanned), finds the filtered neighbours
 * an exact scan of the allowed vectors finds, returns nothing for a filter
 * that allows nothing, and gives the same answers one query at a time and
 * in a batch; labels survive save, open and verify; bad labels are refused
 * and leave the index as it was.
 */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support/support.h"

enum { N = 4000, NQ = 40, D = 24, K = 10, CLUSTERS = 30, NLAB = 6 };

/* Label j is carried with probability SHARE[j]: from most vectors to a
 * handful, so every path (walk, wider walk, scan) is taken. */
static const double SHARE[NLAB] = {0.6, 0.2, 0.05, 0.01, 0.003, 0.0};

typedef struct fixture {
    float *base, *queries;
    uint64_t off[N + 1];
    uint32_t *val;
    char *dir;
} fixture;

static int setup(void **state) {
    fixture *f = calloc(1, sizeof *f);
    ts_rng r;
    ts_rng_init(&r, 77);
    float centres[CLUSTERS * D];
    for (size_t i = 0; i < CLUSTERS * D; i++)
        centres[i] = (float)ts_rng_normal(&r);
    f->base = malloc((N + NQ) * D * sizeof(float));
    f->queries = f->base + N * D;
    for (size_t i = 0; i < N + NQ; i++) {
        const float *c = centres + (ts_rng_next(&r) % CLUSTERS) * D;
        for (size_t j = 0; j < D; j++)
            f->base[i * D + j] = c[j] + 0.5f * (float)ts_rng_normal(&r);
    }
    f->val = malloc(N * NLAB * sizeof *f->val);
    size_t at = 0;
    for (size_t i = 0; i < N; i++) {
        f->off[i] = at;
        for (uint32_t j = 0; j < NLAB; j++)
            if ((double)(ts_rng_next(&r) % 1000000) < SHARE[j] * 1e6)
                f->val[at++] = j;
    }
    f->off[N] = at;
    f->dir = ts_tmpdir_create();
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    free(f->base);
    free(f->val);
    ts_tmpdir_remove(f->dir);
    free(f);
    return 0;
}

static bool carries(const fixture *f, size_t i, uint32_t lab) {
    for (uint64_t j = f->off[i]; j < f->off[i + 1]; j++)
        if (f->val[j] == lab)
            return true;
    return false;
}

static int odd_ids(void *opaque, int64_t id) {
    (void)opaque;
    return (int)(id & 1);
}

/* The filter's verdict on vector i, computed here independently. */
static bool passes(const fixture *f, const rotor_filter *flt, size_t i) {
    if (flt->nlabels > 0) {
        size_t hit = 0;
        for (size_t j = 0; j < flt->nlabels; j++)
            hit += carries(f, i, flt->labels[j]);
        if (flt->all ? hit < flt->nlabels : hit == 0)
            return false;
    }
    if (flt->allow != NULL && (i >= flt->allow_bits || !((flt->allow[i / 64] >> (i % 64)) & 1)))
        return false;
    return flt->predicate == NULL || flt->predicate(flt->opaque, (int64_t)i);
}

/* The exact filtered k nearest of query q (ids; -1 past the passing ones). */
static void exact(const fixture *f, const rotor_filter *flt, const float *q, int64_t *ids) {
    double best[K];
    for (size_t j = 0; j < K; j++) {
        best[j] = INFINITY;
        ids[j] = -1;
    }
    for (size_t i = 0; i < N; i++) {
        if (!passes(f, flt, i))
            continue;
        double d = 0;
        for (size_t c = 0; c < D; c++) {
            const double t = (double)q[c] - f->base[i * D + c];
            d += t * t;
        }
        if (d >= best[K - 1])
            continue;
        size_t j = K - 1;
        for (; j > 0 && best[j - 1] > d; j--) {
            best[j] = best[j - 1];
            ids[j] = ids[j - 1];
        }
        best[j] = d;
        ids[j] = (int64_t)i;
    }
}

/* Checks every result passes and returns the recall against the exact
 * filtered neighbours (1 when none pass and none are returned). */
static double check_search(const fixture *f, const rotor_index *ix, const rotor_filter *flt,
                           int mode) {
    rotor_search_params sp = rotor_search_params_default();
    sp.filter = flt;
    sp.filter_scan = mode;
    double hits = 0, want = 0;
    for (size_t qi = 0; qi < NQ; qi++) {
        const float *q = f->queries + qi * D;
        int64_t ids[K], truth[K];
        float dist[K];
        assert_int_equal(rotor_index_search(ix, &sp, q, D, K, ids, dist), ROTOR_OK);
        exact(f, flt, q, truth);
        for (size_t j = 0; j < K; j++) {
            if (ids[j] >= 0)
                assert_true(passes(f, flt, (size_t)ids[j]));
            if (truth[j] < 0)
                continue;
            want++;
            for (size_t t = 0; t < K; t++)
                hits += ids[t] == truth[j];
        }
    }
    return want > 0 ? hits / want : 1.0;
}

/* The fixture's points with the labels given (CSR over the N points), the
 * default build of `kind` but for the calibration. */
static rotor_index *build_labelled(const fixture *f, rotor_index_kind kind, const uint64_t *off,
                                   const uint32_t *val) {
    rotor_params p = rotor_params_default();
    p.kind = kind;
    p.threads = 2;
    p.calibrate = 0;
    rotor_labels labels = {off, val, N};
    p.labels = &labels;
    rotor_matrix m = {f->base, N, D, ROTOR_ELEM_F32};
    rotor_index *ix = NULL;
    if (rotor_index_build(&p, &m, &ix) != ROTOR_OK)
        fail_msg("build: %s", rotor_last_error());
    return ix;
}

static rotor_index *build(const fixture *f, rotor_index_kind kind) {
    return build_labelled(f, kind, f->off, f->val);
}

static void every_filter(const fixture *f, rotor_index *ix, double floor) {
    static uint64_t allow[(N + 63) / 64];
    for (size_t i = 0; i < N; i++)
        if (i % 7 == 0)
            allow[i / 64] |= UINT64_C(1) << (i % 64);
    const uint32_t l0 = 0, l1 = 1, l2 = 2, l3 = 3, l4 = 4, l5 = 5, pair01[] = {0, 1},
                   pair23[] = {3, 2}, pair02[] = {0, 2};
    const rotor_filter filters[] = {
        {.labels = &l0, .nlabels = 1},
        {.labels = &l1, .nlabels = 1},
        {.labels = &l2, .nlabels = 1},
        {.labels = &l3, .nlabels = 1},
        {.labels = &l4, .nlabels = 1},
        {.labels = &l5, .nlabels = 1}, /* nobody carries it */
        {.labels = pair23, .nlabels = 2},
        {.labels = pair01, .nlabels = 2, .all = 1},
        {.labels = pair02, .nlabels = 2, .all = 1},
        {.allow = allow, .allow_bits = N},
        {.predicate = odd_ids},
        {.labels = &l1, .nlabels = 1, .predicate = odd_ids},
        {.labels = &l0, .nlabels = 1, .allow = allow, .allow_bits = N / 2},
    };
    for (size_t i = 0; i < sizeof filters / sizeof *filters; i++)
        for (int mode = -1; mode <= 1; mode++) {
            const double r = check_search(f, ix, &filters[i], mode);
            /* A scan is exact up to the codes' error, a search is not. */
            const double want = mode == 1 ? 0.9 : floor;
            if (r < want)
                fail_msg("filter %zu, mode %d: recall %.3f below %.2f", i, mode, r, want);
        }
}

static void filters_hold_in_every_kind(void **state) {
    const fixture *f = *state;
    const rotor_index_kind kinds[] = {ROTOR_INDEX_FLAT, ROTOR_INDEX_VAMANA, ROTOR_INDEX_IVF};
    for (size_t i = 0; i < 3; i++) {
        rotor_index *ix = build(f, kinds[i]);
        rotor_index_stats s;
        assert_int_equal(rotor_index_stats_get(ix, &s), ROTOR_OK);
        assert_int_equal(s.labels, 5);
        every_filter(f, ix, kinds[i] == ROTOR_INDEX_FLAT ? 0.9 : 0.8);
        rotor_index_close(ix);
    }
}

/* Labels past 63 fall on signature bits (label % 64) other labels may
 * set too: where two labels share one, the test must read the rows, and 3
 * and 67 must not be mistaken for each other; where a label has its bit
 * alone, the word answers. */
static void large_labels_are_told_apart(void **state) {
    const fixture *f = *state;
    uint32_t *big = malloc(f->off[N] * sizeof *big);
    for (uint64_t j = 0; j < f->off[N]; j++)
        big[j] = f->val[j] == 3 ? 67 : f->val[j] + 64 * (f->val[j] % 2);
    rotor_index *ix = build_labelled(f, ROTOR_INDEX_VAMANA, f->off, big);
    const uint32_t l3 = 3, l67 = 67, l65 = 65, pair[] = {0, 65};
    const rotor_filter none = {.labels = &l3, .nlabels = 1};
    rotor_search_params sp = rotor_search_params_default();
    sp.filter = &none;
    int64_t ids[K];
    assert_int_equal(rotor_index_search(ix, &sp, f->queries, D, K, ids, NULL), ROTOR_OK);
    for (size_t j = 0; j < K; j++)
        assert_int_equal(ids[j], -1);
    /* 67 stands for the fixture's 3, 65 for 1: the fixture's verdicts hold. */
    const uint32_t f3 = 3, f1 = 1, fpair[] = {0, 1};
    const rotor_filter mapped[][2] = {
        {{.labels = &l67, .nlabels = 1}, {.labels = &f3, .nlabels = 1}},
        {{.labels = &l65, .nlabels = 1}, {.labels = &f1, .nlabels = 1}},
        {{.labels = pair, .nlabels = 2, .all = 1}, {.labels = fpair, .nlabels = 2, .all = 1}},
    };
    for (size_t i = 0; i < 3; i++) {
        sp.filter = &mapped[i][0];
        for (size_t qi = 0; qi < NQ; qi++) {
            assert_int_equal(rotor_index_search(ix, &sp, f->queries + qi * D, D, K, ids, NULL),
                             ROTOR_OK);
            for (size_t j = 0; j < K; j++)
                if (ids[j] >= 0)
                    assert_true(passes(f, &mapped[i][1], (size_t)ids[j]));
        }
    }
    rotor_index_close(ix);

    /* 3 on even rows and 67 on odd ones: bit 3 is shared, and the test
     * reads the rows; 65 keeps a bit of its own, which answers alone. */
    for (size_t i = 0; i < N; i++)
        for (uint64_t j = f->off[i]; j < f->off[i + 1]; j++)
            big[j] = f->val[j] == 3 ? (i % 2 ? 67 : 3) : f->val[j] == 1 ? 65 : f->val[j];
    ix = build_labelled(f, ROTOR_INDEX_VAMANA, f->off, big);
    const uint32_t both[] = {3, 67};
    const rotor_filter shared[] = {{.labels = &l3, .nlabels = 1},
                                   {.labels = &l67, .nlabels = 1},
                                   {.labels = both, .nlabels = 2},
                                   {.labels = &l65, .nlabels = 1}};
    sp.filter_scan = -1; /* the walk tests every point it meets */
    for (size_t i = 0; i < 4; i++) {
        sp.filter = &shared[i];
        size_t found = 0;
        for (size_t qi = 0; qi < NQ; qi++) {
            assert_int_equal(rotor_index_search(ix, &sp, f->queries + qi * D, D, K, ids, NULL),
                             ROTOR_OK);
            for (size_t j = 0; j < K; j++) {
                if (ids[j] < 0)
                    continue;
                found++;
                const size_t u = (size_t)ids[j];
                assert_true(passes(f, i == 3 ? &mapped[1][1] : &mapped[0][1], u));
                if (i < 2)
                    assert_int_equal(u % 2, i);
            }
        }
        assert_true(found > NQ);
    }
    rotor_index_close(ix);
    free(big);
}

/* With keys of the caller's, allow-lists name keys: as a bitset over
 * them, as a list, or both (a vector must be in both). */
static void allow_lists_name_keys(void **state) {
    const fixture *f = *state;
    int64_t *keys = malloc(N * sizeof *keys);
    for (size_t i = 0; i < N; i++)
        keys[i] = 2 * (int64_t)i + 1;
    rotor_params p = rotor_params_default();
    p.kind = ROTOR_INDEX_VAMANA;
    p.calibrate = 0;
    rotor_matrix m = {f->base, N, D, ROTOR_ELEM_F32};
    rotor_index *ix = NULL;
    assert_int_equal(rotor_index_build_with_keys(&p, &m, keys, &ix), ROTOR_OK);
    /* keys 1, 3, 5 (rows 0, 1, 2); bit 4 is no key */
    const uint64_t bits[1] = {(1u << 1) | (1u << 3) | (1u << 5) | (1u << 4)};
    const int64_t listed[] = {5, 7, 1000001};
    const rotor_filter as_bits = {.allow = bits, .allow_bits = 64};
    const rotor_filter as_list = {.allow_ids = listed, .n_allow_ids = 3};
    const rotor_filter both = {
        .allow = bits, .allow_bits = 64, .allow_ids = listed, .n_allow_ids = 3};
    const struct {
        const rotor_filter *flt;
        int64_t want[3];
        size_t n;
    } cases[] = {{&as_bits, {1, 3, 5}, 3}, {&as_list, {5, 7, 0}, 2}, {&both, {5, 0, 0}, 1}};
    for (size_t c = 0; c < 3; c++)
        for (int mode = -1; mode <= 1; mode++) {
            rotor_search_params sp = rotor_search_params_default();
            sp.filter = cases[c].flt;
            sp.filter_scan = mode;
            int64_t ids[K];
            assert_int_equal(rotor_index_search(ix, &sp, f->queries, D, K, ids, NULL), ROTOR_OK);
            size_t got = 0;
            for (size_t j = 0; j < K; j++) {
                if (ids[j] < 0)
                    continue;
                got++;
                bool listed_here = false;
                for (size_t w = 0; w < cases[c].n; w++)
                    listed_here = listed_here || ids[j] == cases[c].want[w];
                assert_true(listed_here);
            }
            /* A walk forced on two points of 4,000 may miss one; the
             * scan (chosen by itself here) finds them all. */
            if (mode >= 0)
                assert_int_equal(got, cases[c].n);
        }
    rotor_index_close(ix);
    free(keys);
}

/* Labels 100, 101 and 102 in turn on every point: "any of" all three
 * passes every point, so it is dropped before anything else is chosen (a
 * scan asked for too) and the search runs as without it, with the same
 * answers; two of them still scan. */
static void a_filter_everything_passes_is_no_filter(void **state) {
    const fixture *f = *state;
    uint64_t off[N + 1];
    uint32_t val[N];
    for (size_t i = 0; i <= N; i++)
        off[i] = i;
    for (size_t i = 0; i < N; i++)
        val[i] = 100 + (uint32_t)(i % 3);
    rotor_index *ix = build_labelled(f, ROTOR_INDEX_VAMANA, off, val);
    const uint32_t three[] = {102, 100, 101};
    const rotor_filter all = {.labels = three, .nlabels = 3}, two = {.labels = three, .nlabels = 2};
    rotor_search_params sp = rotor_search_params_default();
    int64_t plain[K], ids[K];
    rotor_query_stats st;
    for (int round = 0; round < 2; round++) { /* the second asks what the first learnt */
        for (size_t qi = 0; qi < NQ; qi++) {
            const float *q = f->queries + qi * D;
            sp.filter = NULL;
            sp.stats = NULL;
            sp.filter_scan = 0;
            assert_int_equal(rotor_index_search(ix, &sp, q, D, K, plain, NULL), ROTOR_OK);
            sp.filter = &all;
            sp.filter_scan = 1;
            sp.stats = &st;
            assert_int_equal(rotor_index_search(ix, &sp, q, D, K, ids, NULL), ROTOR_OK);
            assert_int_equal(st.filter_scan, 0);
            assert_memory_equal(ids, plain, sizeof ids);
            sp.filter = &two;
            assert_int_equal(rotor_index_search(ix, &sp, q, D, K, ids, NULL), ROTOR_OK);
            assert_int_equal(st.filter_scan, 1);
            for (size_t j = 0; j < K; j++)
                assert_true(ids[j] >= 0 && ids[j] % 3 != 1); /* 102 or 100 */
        }
    }
    rotor_index_close(ix);
}

/* The choice between walking and scanning prices the walk at the width
 * it reads: a quarter of the points pass, and at list 16 a walk reading
 * all 64 of each list is priced above the scan of that quarter, one
 * reading 8 below it. Either way the answers pass the filter. */
static void the_walk_is_priced_at_the_width_it_reads(void **state) {
    const fixture *f = *state;
    uint64_t off[N + 1];
    uint32_t val[N];
    size_t nval = 0;
    for (size_t i = 0; i < N; i++) {
        off[i] = nval;
        if (i % 4 == 0)
            val[nval++] = 7;
    }
    off[N] = nval;
    rotor_index *ix = build_labelled(f, ROTOR_INDEX_VAMANA, off, val);
    rotor_index_stats is;
    assert_int_equal(rotor_index_stats_get(ix, &is), ROTOR_OK);
    assert_int_equal(is.graph_degree, 64);
    const uint32_t seven = 7;
    const rotor_filter quarter = {.labels = &seven, .nlabels = 1};
    rotor_search_params sp = rotor_search_params_default();
    sp.filter = &quarter;
    sp.list_size = 16;
    rotor_query_stats st;
    sp.stats = &st;
    int64_t ids[K];
    const uint32_t widths[] = {0, 8};
    for (size_t w = 0; w < 2; w++) {
        sp.max_neighbors = widths[w];
        for (size_t qi = 0; qi < NQ; qi++) {
            assert_int_equal(rotor_index_search(ix, &sp, f->queries + qi * D, D, K, ids, NULL),
                             ROTOR_OK);
            assert_int_equal(st.filter_scan, w == 0);
            for (size_t j = 0; j < K; j++)
                assert_true(ids[j] >= 0 && ids[j] % 4 == 0);
        }
    }
    rotor_index_close(ix);
}

static void nothing_allowed_returns_nothing(void **state) {
    const fixture *f = *state;
    rotor_index *ix = build(f, ROTOR_INDEX_VAMANA);
    const uint32_t none = 5, absent = 12345;
    const rotor_filter filters[] = {{.labels = &none, .nlabels = 1},
                                    {.labels = &absent, .nlabels = 1},
                                    {.allow = (const uint64_t[]){0}, .allow_bits = 64}};
    for (size_t i = 0; i < 3; i++) {
        rotor_search_params sp = rotor_search_params_default();
        sp.filter = &filters[i];
        int64_t ids[K];
        float dist[K];
        assert_int_equal(rotor_index_search(ix, &sp, f->queries, D, K, ids, dist), ROTOR_OK);
        for (size_t j = 0; j < K; j++) {
            assert_int_equal(ids[j], -1);
            assert_true(isinf(dist[j]));
        }
    }
    rotor_index_close(ix);
}

static void batch_matches_single(void **state) {
    const fixture *f = *state;
    rotor_index *ix = build(f, ROTOR_INDEX_VAMANA);
    const uint32_t lab = 1;
    const rotor_filter flt = {.labels = &lab, .nlabels = 1};
    rotor_search_params sp = rotor_search_params_default();
    sp.filter = &flt;
    sp.threads = 2;
    rotor_query_stats stats[NQ];
    sp.stats = stats;
    int64_t batch[NQ * K], one[K];
    rotor_matrix q = {f->queries, NQ, D, ROTOR_ELEM_F32};
    assert_int_equal(rotor_index_search_batch(ix, &sp, &q, K, batch, NULL), ROTOR_OK);
    sp.stats = NULL;
    for (size_t i = 0; i < NQ; i++) {
        assert_int_equal(rotor_index_search(ix, &sp, f->queries + i * D, D, K, one, NULL),
                         ROTOR_OK);
        assert_memory_equal(one, batch + i * K, sizeof one);
    }
    /* A rare label is scanned, not searched for. */
    const uint32_t rare = 4;
    const rotor_filter few = {.labels = &rare, .nlabels = 1};
    sp.filter = &few;
    rotor_query_stats st;
    sp.stats = &st;
    assert_int_equal(rotor_index_search(ix, &sp, f->queries, D, K, one, NULL), ROTOR_OK);
    assert_int_equal(st.filter_scan, 1);
    rotor_index_close(ix);
}

static void labels_survive_save_and_open(void **state) {
    const fixture *f = *state;
    rotor_index *ix = build(f, ROTOR_INDEX_VAMANA);
    char path[4096];
    snprintf(path, sizeof path, "%s/labels.rotor", f->dir);
    assert_int_equal(rotor_index_save(ix, path), ROTOR_OK);
    rotor_index *back = NULL;
    rotor_open_params op = rotor_open_params_default();
    op.verify = 1;
    assert_int_equal(rotor_index_open(path, &op, &back), ROTOR_OK);
    for (size_t i = 0; i < N; i++) {
        uint32_t got[NLAB];
        size_t n;
        assert_int_equal(rotor_index_get_labels(back, (int64_t)i, got, NLAB, &n), ROTOR_OK);
        assert_int_equal(n, f->off[i + 1] - f->off[i]);
        for (size_t j = 0; j < n; j++)
            assert_true(carries(f, i, got[j]));
    }
    const uint32_t lab = 2;
    const rotor_filter flt = {.labels = &lab, .nlabels = 1};
    rotor_search_params sp = rotor_search_params_default();
    sp.filter = &flt;
    int64_t a[K], b[K];
    for (size_t qi = 0; qi < NQ; qi++) {
        assert_int_equal(rotor_index_search(ix, &sp, f->queries + qi * D, D, K, a, NULL), ROTOR_OK);
        assert_int_equal(rotor_index_search(back, &sp, f->queries + qi * D, D, K, b, NULL),
                         ROTOR_OK);
        assert_memory_equal(a, b, sizeof a);
    }
    rotor_index_close(back);
    rotor_index_close(ix);
}

static void bad_labels_change_nothing(void **state) {
    const fixture *f = *state;
    rotor_index *ix = build(f, ROTOR_INDEX_FLAT);
    const uint64_t off[] = {0, 1, 2};
    const uint32_t val[] = {9, 9};
    const int64_t twice[] = {3, 3}, outside[] = {3, N};
    rotor_labels l = {off, val, 2};
    assert_int_equal(rotor_index_set_labels(ix, twice, &l), ROTOR_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(rotor_last_error(), "twice"));
    assert_int_equal(rotor_index_set_labels(ix, outside, &l), ROTOR_ERR_NOT_FOUND);
    const uint64_t down[] = {0, 2, 1};
    rotor_labels bad = {down, val, 2};
    assert_int_equal(rotor_index_set_labels(ix, NULL, &bad), ROTOR_ERR_INVALID_ARGUMENT);
    uint32_t got[NLAB];
    size_t n;
    assert_int_equal(rotor_index_get_labels(ix, 3, got, NLAB, &n), ROTOR_OK);
    assert_int_equal(n, f->off[4] - f->off[3]);
    /* A good change lands, on those ids alone. */
    const int64_t two[] = {3, 5};
    assert_int_equal(rotor_index_set_labels(ix, two, &l), ROTOR_OK);
    assert_int_equal(rotor_index_get_labels(ix, 5, got, NLAB, &n), ROTOR_OK);
    assert_int_equal(n, 1);
    assert_int_equal(got[0], 9);
    assert_int_equal(rotor_index_get_labels(ix, 4, got, NLAB, &n), ROTOR_OK);
    assert_int_equal(n, f->off[5] - f->off[4]);
    /* Labels for a build must match its rows. */
    rotor_params p = rotor_params_default();
    p.labels = &l;
    rotor_matrix m = {f->base, N, D, ROTOR_ELEM_F32};
    rotor_index *none = NULL;
    assert_int_equal(rotor_index_build(&p, &m, &none), ROTOR_ERR_INVALID_ARGUMENT);
    assert_null(none);
    rotor_index_close(ix);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(filters_hold_in_every_kind),
        cmocka_unit_test(large_labels_are_told_apart),
        cmocka_unit_test(allow_lists_name_keys),
        cmocka_unit_test(a_filter_everything_passes_is_no_filter),
        cmocka_unit_test(the_walk_is_priced_at_the_width_it_reads),
        cmocka_unit_test(nothing_allowed_returns_nothing),
        cmocka_unit_test(batch_matches_single),
        cmocka_unit_test(labels_survive_save_and_open),
        cmocka_unit_test(bad_labels_change_nothing),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
