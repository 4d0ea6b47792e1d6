/*
 * The Vamana navigator through the public API: recall against a
 * double-precision brute force for every metric and quantizer, the graph's
 * invariants, a seeded single-thread build that repeats exactly, a
 * two-thread build, a graph linked on decoded codes, a walking quantizer,
 * the starting points and their groups, a list shorter than k, adds,
 * batch = single search, padding, bad parameters refused, every allocation
 * failure reported without a leak, cancellation, memory accounting, walks
 * reading only the first neighbours, and the default degree.
 */
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "graph/nav_fixture.h"
#include "graph/vamana.h"

/* With L = 64 on 3,000 clustered points a Vamana search finds nearly all
 * true neighbours (measured 0.97-1.00 for every pair below); 0.95 leaves
 * room for seeds while still catching a broken graph or rerank, which fall
 * far below it. */
static void test_vamana_recall(void **state) {
    const char *quants[] = {"none",   "tq4", "bin1",   "bin2", "bin1fs",
                            "bin2fs", "sq8", "pq16x4", "pq16", NULL};
    check_recall(state, ROTOR_INDEX_VAMANA, quants, 0.95);
}

static void adjacency(const rotor_index *ix, uint32_t **out, size_t *len) {
    const nav *g = ix->nav;
    size_t n = vamana_count(g), R = vamana_max_degree(g);
    uint32_t *a = calloc(n * (R + 1), sizeof *a);
    for (size_t u = 0; u < n; u++) {
        const uint32_t *nb;
        uint32_t deg = vamana_neighbors(g, u, &nb);
        a[u * (R + 1)] = deg;
        memcpy(a + u * (R + 1) + 1, nb, deg * sizeof *nb);
    }
    *out = a;
    *len = n * (R + 1);
}

static void test_vamana_deterministic(void **state) {
    fixture *f = *state;
    rotor_params p = graph_params(ROTOR_INDEX_VAMANA, ROTOR_METRIC_L2, "tq4");
    p.threads = 1;
    rotor_index *a = build_n(f, &p, N), *b = build_n(f, &p, N);
    p.seed = 43;
    rotor_index *c = build_n(f, &p, N);
    uint32_t *ga, *gb, *gc;
    size_t la, lb, lc;
    adjacency(a, &ga, &la);
    adjacency(b, &gb, &lb);
    adjacency(c, &gc, &lc);
    assert_int_equal(la, lb);
    assert_memory_equal(ga, gb, la * sizeof *ga);
    assert_int_equal(vamana_entry(a->nav), vamana_entry(b->nav));
    /* Another seed inserts in another order: another graph. */
    assert_int_equal(la, lc);
    assert_memory_not_equal(ga, gc, la * sizeof *ga);
    free(ga);
    free(gb);
    free(gc);
    rotor_index_close(a);
    rotor_index_close(b);
    rotor_index_close(c);
}

/* Two one-thread builds walking a code of 32-code blocks keep the same
 * starting points' codes to the last byte: the grouping's copy fills a
 * block's columns past the last point with zeros, not with whatever its
 * buffer held (a file written twice is the same file). */
static void test_starting_point_codes_repeat(void **state) {
    fixture *f = *state;
    rotor_params p = graph_params(ROTOR_INDEX_VAMANA, ROTOR_METRIC_L2, "sq8");
    p.walk_quant = "bin2fs";
    p.threads = 1;
    rotor_index *a = build_n(f, &p, N), *b = build_n(f, &p, N);
    const vamana *ga = (const vamana *)a->nav, *gb = (const vamana *)b->nav;
    assert_true(ga->nstarts > 0);
    assert_true(ga->nstarts % 32 != 0); /* a block with columns past the last */
    assert_int_equal(ga->nstarts, gb->nstarts);
    const size_t bytes = ga->walk_q->ops->store_bytes(ga->walk_q, ga->nstarts);
    assert_memory_equal(ga->start_codes, gb->start_codes, bytes);
    rotor_index_close(a);
    rotor_index_close(b);
}

/* A graph linked on the decoded codes: valid, as good here (4-bit codes
 * keep the clusters apart), and not the graph of the full vectors. */
static void test_build_from_codes(void **state) {
    fixture *f = *state;
    rotor_params p = graph_params(ROTOR_INDEX_VAMANA, ROTOR_METRIC_COSINE, "tq4");
    p.threads = 1;
    rotor_index *full = build_n(f, &p, N);
    p.build_space = ROTOR_BUILD_CODES;
    rotor_index *codes = build_n(f, &p, N);
    check_graph(codes);
    rotor_search_params sp = rotor_search_params_default();
    sp.list_size = 64;
    sp.rerank = 64;
    assert_true(recall(f, codes, N, ROTOR_METRIC_COSINE, &sp) >= 0.95);
    uint32_t *ga, *gb;
    size_t la, lb;
    adjacency(full, &ga, &la);
    adjacency(codes, &gb, &lb);
    assert_int_equal(la, lb);
    assert_memory_not_equal(ga, gb, la * sizeof *ga);
    free(ga);
    free(gb);
    /* Adds link through the codes too. */
    rotor_matrix more = {f->queries, NQ, D, ROTOR_ELEM_F32};
    assert_int_equal(rotor_index_add(codes, &more), ROTOR_OK);
    check_graph(codes);
    rotor_index_close(full);
    rotor_index_close(codes);
}

/* Walking on one code and refining with another: recall as good as either,
 * the estimates returned without rerank are the refining quantizer's, and
 * both code stores are counted. */
static void test_walk_quant(void **state) {
    fixture *f = *state;
    const rotor_metric metrics[] = {ROTOR_METRIC_L2, ROTOR_METRIC_COSINE};
    /* tq4 codes: 16 bytes + 8 of factors, and a residual float; pq8x4: 4
     * bytes in whole blocks of 32. sq8: 32 bytes + 12 of factors, and a
     * residual; bin1fs: 8 fields of 4 bits and two floats per code, in
     * whole blocks of 32. (Only the index's quantizer keeps residuals, for
     * the rerank's bound.) */
    const struct {
        const char *quant, *walk;
        size_t bytes;
    } pairs[] = {
        {"tq4", "pq8x4", (size_t)N * 28 + (N + 31) / 32 * 32 * 4},
        {"sq8", "bin1fs", (size_t)N * 48 + (N + 31) / 32 * (32 * 4 + 256)},
    };
    for (size_t c = 0; c < 2 * 2; c++) {
        const size_t mi = c % 2, pi = c / 2;
        rotor_params p = graph_params(ROTOR_INDEX_VAMANA, metrics[mi], pairs[pi].quant);
        p.walk_quant = pairs[pi].walk;
        rotor_index *ix = build_n(f, &p, N);
        check_graph(ix);
        rotor_search_params sp = rotor_search_params_default();
        sp.list_size = 32;
        sp.rerank = 20;
        sp.refine = 80;
        double r = recall(f, ix, N, metrics[mi], &sp);
        print_message("vamana %s %s+%s: recall@10 %.4f\n", rotor_metric_name(metrics[mi]),
                      pairs[pi].walk, pairs[pi].quant, r);
        assert_true(r >= 0.95);
        /* Without rerank the distances are the refining code's estimates. */
        sp.rerank = 0;
        int64_t ids[K];
        float d[K], e[K];
        assert_int_equal(rotor_index_search(ix, &sp, f->queries, D, K, ids, d), ROTOR_OK);
        assert_int_equal(rotor_index_estimate(ix, f->queries, D, ids, K, e), ROTOR_OK);
        for (size_t j = 0; j < K; j++) {
            assert_float_equal(d[j], e[j], 1e-5f * fmaxf(1.0f, fabsf(e[j])));
            assert_true(j == 0 || d[j] >= d[j - 1]);
        }
        rotor_index_stats st;
        assert_int_equal(rotor_index_stats_get(ix, &st), ROTOR_OK);
        assert_string_equal(st.quant, pairs[pi].quant);
        assert_string_equal(st.walk_quant, pairs[pi].walk);
        assert_int_equal(st.bytes_codes, pairs[pi].bytes);
        rotor_index_close(ix);
    }
    rotor_matrix m = {f->base, 100, D, ROTOR_ELEM_F32};
    rotor_index *ix = NULL;
    rotor_params p = graph_params(ROTOR_INDEX_VAMANA, ROTOR_METRIC_L2, NULL);
    p.walk_quant = "pq8x4";
    assert_int_equal(rotor_index_build(&p, &m, &ix), ROTOR_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(rotor_last_error(), "needs quant"));
    p = graph_params(ROTOR_INDEX_IVF, ROTOR_METRIC_L2, "tq4");
    p.walk_quant = "pq8x4";
    assert_int_equal(rotor_index_build(&p, &m, &ix), ROTOR_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(rotor_last_error(), "vamana indexes only"));
    p = graph_params(ROTOR_INDEX_VAMANA, ROTOR_METRIC_L2, "tq4");
    p.walk_quant = "pq7";
    assert_int_equal(rotor_index_build(&p, &m, &ix), ROTOR_ERR_INVALID_ARGUMENT);
    assert_null(ix);
}

/* The index keeps up to 16384 sampled starting points (here all 3,000
 * nodes); a search scores about as many as asked (whole groups, at least
 * one), at most those. Scoring them all makes the rerank pool a full
 * scan's best estimates, so a short list finds what a flat bin1fs scan with
 * the same rerank finds. */
static void test_start_points(void **state) {
    fixture *f = *state;
    rotor_params p = graph_params(ROTOR_INDEX_VAMANA, ROTOR_METRIC_L2, "bin1fs");
    rotor_index *ix = build_n(f, &p, N);
    rotor_search_params sp = rotor_search_params_default();
    sp.list_size = 10;
    sp.rerank = 40;
    double r_default = recall(f, ix, N, ROTOR_METRIC_L2, &sp);
    sp.start_points = 1;
    double r_one = recall(f, ix, N, ROTOR_METRIC_L2, &sp);
    sp.start_points = 16384;
    double r_all = recall(f, ix, N, ROTOR_METRIC_L2, &sp);
    rotor_index_close(ix);
    p = graph_params(ROTOR_INDEX_FLAT, ROTOR_METRIC_L2, "bin1fs");
    ix = build_n(f, &p, N);
    double r_flat = recall(f, ix, N, ROTOR_METRIC_L2, &sp);
    rotor_index_close(ix);
    print_message("start points 1: %.4f, 256: %.4f, all: %.4f, flat scan: %.4f\n", r_one, r_default,
                  r_all, r_flat);
    assert_true(r_all >= r_flat - 0.005);
}

/* How many queries two settings answer with different ids. */
static size_t answers_differ(const fixture *f, const rotor_index *ix, const rotor_search_params *x,
                             const rotor_search_params *y) {
    size_t n = 0;
    for (size_t q = 0; q < NQ; q++) {
        int64_t a[K], b[K];
        assert_int_equal(rotor_index_search(ix, x, f->queries + q * D, D, K, a, NULL), ROTOR_OK);
        assert_int_equal(rotor_index_search(ix, y, f->queries + q * D, D, K, b, NULL), ROTOR_OK);
        n += memcmp(a, b, sizeof a) != 0;
    }
    return n;
}

static double l2sq(const float *a, const float *b, size_t d) {
    double s = 0;
    for (size_t i = 0; i < d; i++)
        s += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
    return s;
}

/* A walk may keep a list shorter than k: its results come from the heap of
 * the best estimates (or distances) it scored, so every query still gets k
 * distinct points, and scoring every starting point makes a quantized list
 * of 2 find what a flat scan with the same rerank finds. A full-precision
 * walk returns its k nearest seen, nearest first, at their exact
 * distances, and walks less than a list of k. */
static void test_short_list(void **state) {
    fixture *f = *state;
    rotor_params p = graph_params(ROTOR_INDEX_VAMANA, ROTOR_METRIC_L2, "bin1fs");
    rotor_index *ix = build_n(f, &p, N);
    rotor_search_params sp = rotor_search_params_default();
    sp.list_size = 2;
    sp.rerank = 40;
    for (size_t q = 0; q < NQ; q++) {
        int64_t ids[K];
        assert_int_equal(rotor_index_search(ix, &sp, f->queries + q * D, D, K, ids, NULL),
                         ROTOR_OK);
        for (size_t j = 0; j < K; j++) {
            assert_true(ids[j] >= 0 && ids[j] < N);
            for (size_t i = 0; i < j; i++)
                assert_true(ids[i] != ids[j]);
        }
    }
    /* Not a list of k in disguise: from one starting point, with no
     * deeper rerank to hide it, some query's answer differs. */
    rotor_search_params narrow = sp, ten = sp;
    narrow.rerank = ten.rerank = K;
    narrow.start_points = ten.start_points = 1;
    ten.list_size = K;
    assert_true(answers_differ(f, ix, &narrow, &ten) > 0);
    sp.start_points = 16384;
    const double r_short = recall(f, ix, N, ROTOR_METRIC_L2, &sp);
    rotor_index_close(ix);
    p = graph_params(ROTOR_INDEX_FLAT, ROTOR_METRIC_L2, "bin1fs");
    ix = build_n(f, &p, N);
    const double r_flat = recall(f, ix, N, ROTOR_METRIC_L2, &sp);
    rotor_index_close(ix);
    print_message("list 2, all starts: %.4f, flat scan: %.4f\n", r_short, r_flat);
    assert_true(r_short >= r_flat - 0.005);

    p = graph_params(ROTOR_INDEX_VAMANA, ROTOR_METRIC_L2, "none");
    ix = build_n(f, &p, N);
    rotor_search_params two = rotor_search_params_default();
    two.list_size = 2;
    for (size_t q = 0; q < NQ; q++) {
        const float *x = f->queries + q * D;
        int64_t ids[K];
        float dist[K];
        assert_int_equal(rotor_index_search(ix, &two, x, D, K, ids, dist), ROTOR_OK);
        for (size_t j = 0; j < K; j++) {
            assert_true(ids[j] >= 0 && ids[j] < N);
            const double exact = l2sq(x, f->base + (size_t)ids[j] * D, D);
            assert_true(fabs(dist[j] - exact) <= 1e-4 * (1 + exact));
            assert_true(j == 0 || dist[j - 1] <= dist[j]);
            for (size_t i = 0; i < j; i++)
                assert_true(ids[i] != ids[j]);
        }
    }
    two.list_size = 1;
    ten = two;
    ten.list_size = K;
    assert_true(answers_differ(f, ix, &two, &ten) > 0);
    rotor_index_close(ix);
}

/* The sampled starting points (all 3,000 nodes here) are filed in
 * sqrt(3,000) = 55 groups, each led by one of its points, and every point
 * sits in the group of its nearest leader: what lets a search score the
 * leaders and then only the nearest groups. */
static void test_start_groups(void **state) {
    fixture *f = *state;
    rotor_params p = graph_params(ROTOR_INDEX_VAMANA, ROTOR_METRIC_L2, "bin1fs");
    rotor_index *ix = build_n(f, &p, N);
    rotor_index_stats st;
    assert_int_equal(rotor_index_stats_get(ix, &st), ROTOR_OK);
    assert_int_equal(st.start_points, N);
    assert_int_equal(st.start_groups, 55);
    const uint32_t *ids, *off;
    size_t nstarts;
    const size_t groups = vamana_start_groups(ix->nav, &ids, &nstarts, &off);
    assert_int_equal(groups, 55);
    assert_int_equal(nstarts, N);
    assert_int_equal(off[0], 0);
    assert_int_equal(off[groups], N);
    unsigned char seen[N] = {0};
    for (size_t c = 0; c < groups; c++) {
        assert_true(off[c] < off[c + 1]);
        for (uint32_t j = off[c]; j < off[c + 1]; j++) {
            assert_true(ids[j] < N);
            assert_int_equal(seen[ids[j]]++, 0);
            const float *x = f->base + (size_t)ids[j] * D;
            const double own = l2sq(x, f->base + (size_t)ids[off[c]] * D, D);
            for (size_t o = 0; o < groups; o++)
                assert_true(own <= l2sq(x, f->base + (size_t)ids[off[o]] * D, D) * 1.0001);
        }
    }
    /* 32 points of the nearest group land the walk where scoring all
     * 3,000 does: as good as a flat scan with the same rerank. */
    rotor_search_params sp = rotor_search_params_default();
    sp.list_size = 10;
    sp.rerank = 40;
    sp.start_points = 32;
    const double r_group = recall(f, ix, N, ROTOR_METRIC_L2, &sp);
    rotor_index_close(ix);
    p = graph_params(ROTOR_INDEX_FLAT, ROTOR_METRIC_L2, "bin1fs");
    ix = build_n(f, &p, N);
    const double r_flat = recall(f, ix, N, ROTOR_METRIC_L2, &sp);
    rotor_index_close(ix);
    print_message("nearest group of starting points: %.4f, flat scan: %.4f\n", r_group, r_flat);
    assert_true(r_group >= r_flat - 0.02);
}

/* A graph derived for other codes groups its starting points as a build
 * of the same points does, whether it groups them itself (from a source
 * without starting points) or takes the groups of a source that has them
 * (the automatic choice's samples). */
static void test_derived_start_groups(void **state) {
    fixture *f = *state;
    rotor_params p = graph_params(ROTOR_INDEX_VAMANA, ROTOR_METRIC_L2, "bin1fs");
    p.graph_degree = 32;
    rotor_index *grouped = build_n(f, &p, N);
    rotor_params pn = graph_params(ROTOR_INDEX_VAMANA, ROTOR_METRIC_L2, "none");
    pn.graph_degree = 32;
    rotor_index *plain = build_n(f, &pn, N);
    const graph_space space = ix_space(grouped);
    const nav_params np = ix_nav_params(&p, true, N);
    const uint32_t *want_ids, *want_off;
    size_t want_n;
    const size_t want = vamana_start_groups(grouped->nav, &want_ids, &want_n, &want_off);
    assert_true(want > 1);
    const rotor_index *sources[2] = {plain, grouped};
    for (size_t k = 0; k < 2; k++) {
        nav *d = NULL;
        assert_int_equal(vamana_nav_ops.derive(sources[k]->nav, &grouped->alloc, &np, &space, &d),
                         ROTOR_OK);
        const uint32_t *ids, *off;
        size_t n;
        assert_int_equal(vamana_start_groups(d, &ids, &n, &off), want);
        assert_int_equal(n, want_n);
        assert_memory_equal(ids, want_ids, n * sizeof *ids);
        assert_memory_equal(off, want_off, (want + 1) * sizeof *off);
        d->ops->free(d);
    }
    rotor_index_close(plain);
    rotor_index_close(grouped);
}

/* A search scores every group's leader, then the nearest groups' points
 * until it holds the starting points it asked for, the last group cut
 * short (k-means groups near dense data are several times the mean size,
 * and whole groups had scored 4-5 times what was asked), and reports how
 * many it scored; the points entered are the nearest groups' own. */
static void test_start_points_scored_as_asked(void **state) {
    fixture *f = *state;
    rotor_params p = graph_params(ROTOR_INDEX_VAMANA, ROTOR_METRIC_L2, "sq8");
    rotor_index *ix = build_n(f, &p, N);
    const vamana *g = vamana_of(ix->nav);
    const graph_space s = ix_space(ix);
    const size_t groups = g->ngroups;
    assert_true(groups >= 2);
    vm_scratch *sc = NULL;
    enum { LIST = 16 };
    assert_int_equal(vm_scratch_get(g, &s, s.count, LIST, 0, 0, &sc), ROTOR_OK);
    const quant *walk = g->walk_q;
    const size_t wants[] = {1, 31, 32, 33, 100, 500, N - 1};
    for (size_t qi = 0; qi < 20; qi++) {
        const float *query = f->queries + qi * D;
        walk->ops->prepare(walk, query, sc->qmem,
                           (float *)(sc->qmem + cm_round_up(walk->query_bytes, CM_ALIGN)));
        float best_lead = INFINITY;
        for (size_t c = 0; c < groups; c++) {
            float lead;
            walk->ops->scan(walk, sc->qmem, g->leader_codes, c, 1, &lead);
            best_lead = lead < best_lead ? lead : best_lead;
        }
        for (size_t wi = 0; wi < sizeof wants / sizeof wants[0]; wi++) {
            visited_reset(sc);
            vm_sink k = {.l = {sc->list, sc->expanded, 0, LIST, 0}};
            const size_t scored = vm_enter_starts(g, sc->qmem, wants[wi], sc, &k);
            assert_int_equal(scored, wants[wi]);
            /* What entered comes from the groups nearest the query by
             * their leaders: the best entry is at least as near as the
             * nearest leader's estimate. */
            assert_true(k.l.size > 0);
            assert_true(k.l.c[0].dist <= best_lead);
        }
    }
    vm_scratch_put(g, sc);
    rotor_index_close(ix);
}

/* The sample of starting points is n / 8 of the points, at least 4096
 * (all of a smaller set): of 5,000 points, 4,096 in 128 groups. */
static void test_start_sample(void **state) {
    fixture *f = *state;
    enum { M = 5000 };
    float *x = malloc(M * D * sizeof *x);
    for (size_t i = 0; i < M; i++)
        for (size_t j = 0; j < D; j++)
            x[i * D + j] = f->base[(i % N) * D + j] + (i >= N ? 0.01f : 0.0f);
    rotor_params p = graph_params(ROTOR_INDEX_VAMANA, ROTOR_METRIC_L2, "bin1fs");
    rotor_matrix m = {x, M, D, ROTOR_ELEM_F32};
    rotor_index *ix = NULL;
    assert_int_equal(rotor_index_build(&p, &m, &ix), ROTOR_OK);
    rotor_index_stats st;
    assert_int_equal(rotor_index_stats_get(ix, &st), ROTOR_OK);
    assert_int_equal(st.start_points, 4096);
    assert_int_equal(st.start_groups, 64); /* sqrt(4096) */
    rotor_index_close(ix);
    free(x);
}

/* Hundreds of equal points (k-means cannot split them into groups): the
 * build succeeds with at most one group per distinct point, and a search
 * returns k of them at distance 0. */
static void test_equal_points(void **state) {
    (void)state;
    enum { M = 600 };
    float *x = malloc(M * D * sizeof *x);
    for (size_t i = 0; i < M; i++)
        for (size_t j = 0; j < D; j++)
            x[i * D + j] = i < M - 2 ? 0.5f : (float)(i + j);
    rotor_params p = graph_params(ROTOR_INDEX_VAMANA, ROTOR_METRIC_L2, "bin1fs");
    rotor_matrix m = {x, M, D, ROTOR_ELEM_F32};
    rotor_index *ix = NULL;
    assert_int_equal(rotor_index_build(&p, &m, &ix), ROTOR_OK);
    rotor_index_stats st;
    assert_int_equal(rotor_index_stats_get(ix, &st), ROTOR_OK);
    assert_int_equal(st.start_points, M);
    assert_true(st.start_groups <= 3);
    rotor_search_params sp = rotor_search_params_default();
    int64_t ids[K];
    float d[K];
    assert_int_equal(rotor_index_search(ix, &sp, x, D, K, ids, d), ROTOR_OK);
    for (size_t i = 0; i < K; i++) {
        assert_true(ids[i] >= 0 && ids[i] < M - 2);
        assert_true(d[i] == 0.0f);
    }
    rotor_index_close(ix);
    free(x);
}

/* Two threads build a valid graph of the same quality. */
static void test_vamana_threads(void **state) {
    fixture *f = *state;
    rotor_params p = graph_params(ROTOR_INDEX_VAMANA, ROTOR_METRIC_L2, NULL);
    p.threads = 2;
    rotor_index *ix = build_n(f, &p, N);
    check_graph(ix);
    rotor_search_params sp = rotor_search_params_default();
    sp.list_size = 64;
    assert_true(recall(f, ix, N, ROTOR_METRIC_L2, &sp) >= 0.95);
    rotor_index_close(ix);
}

static void test_add(void **state) { check_add(state, ROTOR_INDEX_VAMANA); }

/* Adds of one point at a time do not repair unreached nodes each time
 * (a pass over the graph): each new point is linked from a neighbour as
 * it is inserted, and the repair runs once a sixteenth of the graph is
 * new. After each single add the new point has an edge into it (a small
 * degree makes prunes drop new points often); a batch of a sixteenth
 * repairs the graph whole; and at the default degree single adds search
 * as well as one batch add of the same points. */
static rotor_index *add_singly(const fixture *f, const rotor_params *p, size_t last) {
    rotor_index *ix = build_n(f, p, N / 2);
    for (size_t u = N / 2; u < last; u++) {
        rotor_matrix one = {f->base + u * D, 1, D, ROTOR_ELEM_F32};
        assert_int_equal(rotor_index_add(ix, &one), ROTOR_OK);
        bool linked = false;
        for (size_t v = 0; v < u && !linked; v++) {
            const uint32_t *nb;
            const uint32_t deg = vamana_neighbors(ix->nav, v, &nb);
            for (uint32_t j = 0; j < deg && !linked; j++)
                linked = nb[j] == u;
        }
        if (!linked)
            fail_msg("point %zu has no edge into it after its add", u);
    }
    rotor_matrix rest = {f->base + last * D, N - last, D, ROTOR_ELEM_F32};
    if (last < N)
        assert_int_equal(rotor_index_add(ix, &rest), ROTOR_OK);
    return ix;
}

static void test_add_one_at_a_time(void **state) {
    fixture *f = *state;
    rotor_params p = graph_params(ROTOR_INDEX_VAMANA, ROTOR_METRIC_L2, "pq8x4");
    p.threads = 1; /* the same graph every run */
    rotor_params thin = p;
    thin.graph_degree = 6;
    thin.build_list = 24;
    rotor_index *ix = add_singly(f, &thin, N - N / 8);
    check_graph(ix);
    rotor_index_close(ix);

    rotor_search_params sp = rotor_search_params_default();
    sp.list_size = 32;
    sp.rerank = 32;
    ix = add_singly(f, &p, N);
    rotor_index *batch = add_singly(f, &p, N / 2);
    const double single = recall(f, ix, N, ROTOR_METRIC_L2, &sp);
    const double once = recall(f, batch, N, ROTOR_METRIC_L2, &sp);
    if (single < once - 0.02)
        fail_msg("recall@10 %.3f after single adds, %.3f after one batch add", single, once);
    rotor_index_close(batch);
    rotor_index_close(ix);
}

/* Links into removed nodes, and live nodes the entry does not reach. */
static void links_to_removed(const rotor_index *ix, size_t *links, size_t *unreached) {
    const nav *g = ix->nav;
    const size_t n = vamana_count(g);
    uint8_t *seen = calloc(n, 1);
    uint32_t *stack = malloc(n * sizeof *stack);
    *links = 0;
    for (size_t u = 0; u < n; u++) {
        const uint32_t *nb;
        const uint32_t deg = vamana_neighbors(g, u, &nb);
        for (uint32_t j = 0; j < deg; j++)
            *links += !ix_is_deleted(ix, u) && ix_is_deleted(ix, nb[j]);
    }
    size_t top = 0;
    seen[vamana_entry(g)] = 1;
    stack[top++] = vamana_entry(g);
    while (top > 0) {
        const uint32_t *nb;
        const uint32_t deg = vamana_neighbors(g, stack[--top], &nb);
        for (uint32_t j = 0; j < deg; j++)
            if (!seen[nb[j]]) {
                seen[nb[j]] = 1;
                stack[top++] = nb[j];
            }
    }
    *unreached = 0;
    for (size_t u = 0; u < n; u++)
        *unreached += !seen[u] && !ix_is_deleted(ix, u);
    free(seen);
    free(stack);
}

/* Consolidation re-prunes the lists that pointed at removed nodes, which
 * can drop the last edge into a live node; it repairs that as a build
 * does, so every live node stays reachable. Unclustered 48-d data, where
 * the first consolidation cut off 38 of 1,667 live nodes without it. */
static void test_consolidation_keeps_live_reachable(void **state) {
    (void)state;
    enum { ROWS = 2000, DIM = 48, ROUNDS = 4 };
    float *x = malloc(ROWS * DIM * sizeof *x);
    int64_t *keys = malloc(ROWS * sizeof *keys);
    ts_rng r;
    ts_rng_init(&r, 7);
    for (size_t i = 0; i < ROWS * DIM; i++)
        x[i] = (float)ts_rng_normal(&r);
    for (size_t i = 0; i < ROWS; i++)
        keys[i] = (int64_t)i;
    rotor_params p = graph_params(ROTOR_INDEX_VAMANA, ROTOR_METRIC_L2, "sq8");
    p.walk_quant = "bin1fs";
    rotor_matrix m = {x, ROWS, DIM, ROTOR_ELEM_F32};
    rotor_index *ix = NULL;
    assert_int_equal(rotor_index_build(&p, &m, &ix), ROTOR_OK);
    size_t live = ROWS;
    for (size_t round = 0; round < ROUNDS; round++) {
        const size_t gone = live / 6;
        for (size_t i = 0; i < gone; i++) {
            const size_t j = i + ts_rng_next(&r) % (live - i);
            const int64_t t = keys[i];
            keys[i] = keys[j];
            keys[j] = t;
        }
        assert_int_equal(rotor_index_remove(ix, keys, gone), ROTOR_OK);
        assert_int_equal(rotor_index_consolidate(ix), ROTOR_OK);
        memmove(keys, keys + gone, (live - gone) * sizeof *keys);
        live -= gone;
        size_t links, unreached;
        links_to_removed(ix, &links, &unreached);
        assert_int_equal(links, 0);
        assert_int_equal(unreached, 0);
    }
    rotor_index_close(ix);
    free(keys);
    free(x);
}

static void test_batch_equals_single(void **state) {
    check_batch_equals_single(state, ROTOR_INDEX_VAMANA);
}

static void test_padding(void **state) { check_padding(state, ROTOR_INDEX_VAMANA); }

static void test_alloc_failures(void **state) { check_alloc_failures(state, ROTOR_INDEX_VAMANA); }

static void test_bad_params(void **state) {
    fixture *f = *state;
    rotor_matrix m = {f->base, 100, D, ROTOR_ELEM_F32};
    rotor_index *ix = NULL;
    rotor_params p = graph_params(ROTOR_INDEX_VAMANA, ROTOR_METRIC_L2, NULL);
    p.graph_degree = 1;
    assert_int_equal(rotor_index_build(&p, &m, &ix), ROTOR_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(rotor_last_error(), "degree"));
    p = graph_params(ROTOR_INDEX_VAMANA, ROTOR_METRIC_L2, NULL);
    p.build_list = 8;
    assert_int_equal(rotor_index_build(&p, &m, &ix), ROTOR_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(rotor_last_error(), "build list"));
    p = graph_params(ROTOR_INDEX_VAMANA, ROTOR_METRIC_L2, NULL);
    p.alpha = 0.5f;
    assert_int_equal(rotor_index_build(&p, &m, &ix), ROTOR_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(rotor_last_error(), "alpha"));
    p.alpha = NAN;
    assert_int_equal(rotor_index_build(&p, &m, &ix), ROTOR_ERR_INVALID_ARGUMENT);
    p = graph_params(ROTOR_INDEX_VAMANA, ROTOR_METRIC_L2, NULL);
    p.build_space = ROTOR_BUILD_CODES;
    assert_int_equal(rotor_index_build(&p, &m, &ix), ROTOR_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(rotor_last_error(), "needs a quantizer"));
    assert_null(ix);

    p = graph_params(ROTOR_INDEX_VAMANA, ROTOR_METRIC_L2, "tq4");
    ix = build_n(f, &p, 100);
    int64_t ids[K];
    assert_int_equal(rotor_index_search(ix, NULL, f->queries, D - 1, K, ids, NULL),
                     ROTOR_ERR_DIMENSION);
    float q[D];
    memcpy(q, f->queries, sizeof q);
    q[0] = INFINITY;
    assert_int_equal(rotor_index_search(ix, NULL, q, D, K, ids, NULL), ROTOR_ERR_NOT_FINITE);
    rotor_search_params sp = rotor_search_params_default();
    sp.list_size = 200000;
    assert_int_equal(rotor_index_search(ix, &sp, f->queries, D, K, ids, NULL),
                     ROTOR_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(rotor_last_error(), "list size"));
    sp = rotor_search_params_default();
    sp.start_points = 16385;
    assert_int_equal(rotor_index_search(ix, &sp, f->queries, D, K, ids, NULL),
                     ROTOR_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(rotor_last_error(), "start_points"));
    rotor_index_close(ix);
}

static int cancel_at_half(void *opaque, uint64_t done, uint64_t total) {
    int *calls = opaque;
    (*calls)++;
    return done * 2 >= total;
}

static void test_cancel(void **state) {
    fixture *f = *state;
    ts_counting_alloc ca = {0};
    int calls = 0;
    rotor_params p = graph_params(ROTOR_INDEX_VAMANA, ROTOR_METRIC_L2, "tq4");
    p.allocator = ts_counting_allocator(&ca);
    p.progress = cancel_at_half;
    p.progress_opaque = &calls;
    rotor_matrix m = {f->base, N, D, ROTOR_ELEM_F32};
    rotor_index *ix = NULL;
    assert_int_equal(rotor_index_build(&p, &m, &ix), ROTOR_ERR_CANCELLED);
    assert_non_null(strstr(rotor_last_error(), "cancelled"));
    assert_null(ix);
    assert_true(calls > 1);
    assert_int_equal(ca.live, 0);
}

/* f's N points and NQ queries, each a unit normal around one of `count`
 * centres drawn at `spread` times a unit normal (seeded). */
static void fill_around_centres(fixture *f, uint64_t seed, size_t count, float spread) {
    ts_rng r;
    ts_rng_init(&r, seed);
    float *centres = malloc(count * D * sizeof *centres);
    for (size_t i = 0; i < count * D; i++)
        centres[i] = spread * (float)ts_rng_normal(&r);
    for (size_t i = 0; i < N + NQ; i++) {
        float *x = i < N ? f->base + i * D : f->queries + (i - N) * D;
        const float *c = centres + (ts_rng_next(&r) % count) * D;
        for (size_t j = 0; j < D; j++)
            x[j] = c[j] + (float)ts_rng_normal(&r);
    }
    free(centres);
}

/* A search may read only the first of each node's neighbours: with as
 * many as the degree or more it is the search that reads them all; with
 * fewer it scores at most that many a hop, and a longer list makes up the
 * recall. */
static void test_narrow_walk(void **state) {
    fixture *f = *state;
    rotor_params p = graph_params(ROTOR_INDEX_VAMANA, ROTOR_METRIC_L2, "sq8");
    p.neighbor_codes = 0;
    p.graph_degree = 32;
    p.build_list = 64;
    rotor_index *ix = build_n(f, &p, N);
    rotor_search_params sp = rotor_search_params_default();
    sp.rerank = 20;
    sp.start_points = 1;
    rotor_query_stats all, some;
    int64_t ids[K], ids2[K];
    float d[K], d2[K];
    size_t narrower = 0;
    for (size_t i = 0; i < NQ; i++) {
        const float *q = f->queries + i * D;
        sp.stats = &all;
        sp.max_neighbors = 0;
        assert_int_equal(rotor_index_search(ix, &sp, q, D, K, ids, d), ROTOR_OK);
        const uint32_t widths[] = {32, 33, 1000};
        for (size_t w = 0; w < 3; w++) {
            sp.max_neighbors = widths[w];
            sp.stats = &some;
            assert_int_equal(rotor_index_search(ix, &sp, q, D, K, ids2, d2), ROTOR_OK);
            assert_memory_equal(ids, ids2, sizeof ids);
            assert_int_equal(some.estimated, all.estimated);
        }
        sp.max_neighbors = 8;
        assert_int_equal(rotor_index_search(ix, &sp, q, D, K, ids2, d2), ROTOR_OK);
        /* The entry and one starting point, then at most 8 a hop. */
        assert_true(some.estimated <= 2 + 8 * some.hops);
        narrower += some.estimated < all.estimated;
    }
    assert_true(narrower > NQ / 2);
    sp.stats = NULL;
    sp.start_points = 0;
    sp.max_neighbors = 16;
    sp.list_size = 96;
    assert_true(recall(f, ix, N, ROTOR_METRIC_L2, &sp) >= 0.95);
    rotor_index_close(ix);

    /* Sixteen clusters far apart: a list's first neighbours must include
     * the prune's long edges out of the cluster, not only the nearest
     * (on such data, 3,000 points around 16 centres, lists sorted by
     * distance reached 0.42 at 16 of 64 and L 128; in the prune's order
     * 0.98). */
    fixture far = {malloc(N * D * sizeof(float)), malloc(NQ * D * sizeof(float))};
    fill_around_centres(&far, 7, 16, 4);
    p = graph_params(ROTOR_INDEX_VAMANA, ROTOR_METRIC_L2, "none");
    p.graph_degree = 64;
    p.build_list = 100;
    p.threads = 1;
    ix = build_n(&far, &p, N);
    sp = rotor_search_params_default();
    sp.max_neighbors = 16;
    sp.list_size = 128;
    const double got = recall(&far, ix, N, ROTOR_METRIC_L2, &sp);
    if (got < 0.95)
        fail_msg("16 of 64 neighbours on far clusters: recall %.4f", got);
    rotor_index_close(ix);

    /* Points around 32 nearer centres, a tenth built and the rest added in
     * batches: an add links its points in where a walk reading the first
     * neighbours meets them. */
    fill_around_centres(&far, 11, 32, 2);
    p.quant = "sq8";
    p.neighbor_codes = 0;
    ix = build_n(&far, &p, N / 10);
    for (size_t at = N / 10; at < N; at += N / 10) {
        rotor_matrix batch = {far.base + at * D, N / 10, D, ROTOR_ELEM_F32};
        assert_int_equal(rotor_index_add(ix, &batch), ROTOR_OK);
    }
    /* Half of the half width with a short list: 0.985 (built whole:
     * 1.0); with the back edges appended at the end of the lists, 0.69. */
    sp.rerank = 40;
    sp.list_size = 12;
    sp.max_neighbors = 16;
    const double added = recall(&far, ix, N, ROTOR_METRIC_L2, &sp);
    if (added < 0.95)
        fail_msg("16 of 64 neighbours after adds: recall %.4f", added);
    rotor_index_close(ix);
    free(far.base);
    free(far.queries);
}

/* A graph given no degree takes 64 unless its records copy their
 * neighbours' codes (32: the records would double), or the build list
 * given is shorter; a degree given is kept. */
static void test_default_degree(void **state) {
    fixture *f = *state;
    const struct {
        const char *quant;
        int neighbor_codes;
        uint32_t degree, build_list, want;
    } cases[] =
        {
            {"none", 1, 0, 0, 64},  {"sq8", 1, 0, 0, 32},   {"sq8", 0, 0, 0, 64},
            {"pq8x4", 1, 0, 0, 32}, {"none", 1, 0, 48, 48}, {"sq8", 0, 40, 0, 40},
            {"auto", 1, 0, 0, 0}, /* as the codes chosen say */
        };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        rotor_params p = graph_params(ROTOR_INDEX_VAMANA, ROTOR_METRIC_L2, cases[i].quant);
        p.graph_degree = cases[i].degree;
        p.build_list = cases[i].build_list;
        p.neighbor_codes = cases[i].neighbor_codes;
        rotor_index *ix = build_n(f, &p, N / 2);
        rotor_index_stats st;
        assert_int_equal(rotor_index_stats_get(ix, &st), ROTOR_OK);
        const uint32_t want = cases[i].want ? cases[i].want : st.bytes_graph_codes > 0 ? 32 : 64;
        if (st.graph_degree != want)
            fail_msg("quant %s: degree %u, expected %u", cases[i].quant, st.graph_degree, want);
        check_graph(ix);
        rotor_index_close(ix);
    }
}

static void test_stats(void **state) {
    fixture *f = *state;
    rotor_params p = graph_params(ROTOR_INDEX_VAMANA, ROTOR_METRIC_L2, "pq8x4");
    rotor_index *ix = build_n(f, &p, N);
    rotor_index_stats st;
    assert_int_equal(rotor_index_stats_get(ix, &st), ROTOR_OK);
    assert_int_equal(st.kind, ROTOR_INDEX_VAMANA);
    assert_int_equal(st.bytes_vectors, (size_t)N * D * sizeof(float));
    /* ids: degree + 16 neighbours per node at least; codes: 16 slots of 4
     * bytes each (8 subspaces x 4 bits) in one 32-code block per node. */
    assert_true(st.bytes_graph >= (size_t)N * 17 * 4);
    assert_int_equal(st.bytes_graph_codes, (size_t)N * 32 * 4);
    assert_true(st.bytes_total >=
                st.bytes_vectors + st.bytes_codes + st.bytes_graph + st.bytes_graph_codes);
    rotor_index_close(ix);

    /* Without neighbours' codes each node carries only its own code (8
     * bytes of pq16x4, whose fast-scan store spreads a code over a block),
     * gathered from the records by id: the same search. */
    p.quant = "pq16x4";
    p.neighbor_codes = 0;
    ix = build_n(f, &p, N);
    assert_int_equal(rotor_index_stats_get(ix, &st), ROTOR_OK);
    assert_int_equal(st.bytes_graph_codes, (size_t)N * 8);
    rotor_search_params sp = rotor_search_params_default();
    sp.list_size = 64;
    sp.rerank = 64;
    assert_true(recall(f, ix, N, ROTOR_METRIC_L2, &sp) >= 0.95);
    rotor_index_close(ix);

    /* Codes stored end to end (sq8) are gathered from the code store
     * itself: the records hold ids only. */
    p.quant = "sq8";
    ix = build_n(f, &p, N);
    assert_int_equal(rotor_index_stats_get(ix, &st), ROTOR_OK);
    assert_int_equal(st.bytes_graph_codes, 0);
    assert_true(st.bytes_codes >= (size_t)N * D);
    assert_true(recall(f, ix, N, ROTOR_METRIC_L2, &sp) >= 0.95);
    rotor_index_close(ix);
}

static int cmp_key(const void *a, const void *b) {
    const uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* The walk's pool keeps the `cap` least (estimate, id) pairs of what it
 * took, in that order when asked (or in any order), and what its threshold
 * turned away is no nearer than the worst it keeps: negative estimates
 * (inner product), many ties, -0 equal to +0, repeated pairs, and caps
 * from 1 to past the number offered. */
/* The candidate list against a stable sort of everything offered: an
 * entry goes after every entry at its distance, a full list drops its
 * last, expanded marks move with their entries, and the cursor comes back
 * to an entry inserted before it. */
static void test_list_order(void **state) {
    (void)state;
    ts_rng r;
    ts_rng_init(&r, 67);
    enum { OFFERED = 300 };
    for (size_t cap = 1; cap <= 130; cap = cap * 2 + 1) {
        vm_cand *c = malloc(cap * sizeof *c), all[OFFERED];
        uint8_t *expanded = malloc(cap);
        vm_list l = {c, expanded, 0, cap, 0};
        size_t nall = 0;
        for (uint32_t id = 0; id < OFFERED; id++) {
            const float d = (float)(ts_rng_next(&r) % 23);
            const bool better = l.size < cap || d < l.c[l.size - 1].dist;
            assert_int_equal(list_insert(&l, d, id), better);
            /* the reference: inserted after every equal entry */
            size_t at = nall;
            while (at > 0 && all[at - 1].dist > d)
                at--;
            memmove(all + at + 1, all + at, (nall - at) * sizeof *all);
            all[at] = (vm_cand){d, id};
            nall++;
            assert_int_equal(l.size, nall < cap ? nall : cap);
            for (size_t j = 0; j < l.size; j++) {
                assert_true(l.c[j].dist == all[j].dist);
                assert_int_equal(l.c[j].id, all[j].id);
                /* entries whose id is a multiple of 3 were expanded */
                assert_int_equal(l.expanded[j], l.c[j].id % 3 == 0 && l.c[j].id != id);
            }
            if (better) {
                size_t pos = 0;
                while (l.c[pos].id != id)
                    pos++;
                assert_true(l.cur <= pos);
            }
            const size_t next = list_next(&l);
            for (size_t j = 0; j < next; j++)
                assert_true(l.expanded[j]);
            if (id % 3 == 0 && better) {
                size_t pos = 0;
                while (l.c[pos].id != id)
                    pos++;
                l.expanded[pos] = 1;
            }
        }
        free(c);
        free(expanded);
    }
}

static void test_pool_keeps_the_best(void **state) {
    (void)state;
    ts_rng r;
    ts_rng_init(&r, 61);
    enum { OFFERED = 500 };
    float d[OFFERED];
    uint64_t taken[OFFERED];
    for (size_t cap = 1; cap <= 600; cap = cap * 3 + 1) {
        for (int sorted = 0; sorted < 2; sorted++) {
            int64_t *mem = malloc(2 * cap * sizeof *mem);
            float *got_d = malloc(cap * sizeof *got_d);
            vm_best h;
            vm_best_init(&h, mem, cap);
            size_t ntaken = 0;
            float nearest_refused = INFINITY;
            for (size_t i = 0; i < OFFERED; i++) {
                /* few distinct values, both signs: many ties */
                d[i] = (float)((int)(ts_rng_next(&r) % 41) - 20) * 0.25f;
                if (d[i] == 0 && i % 2)
                    d[i] = -0.0f;
                const uint32_t id = (uint32_t)(ts_rng_next(&r) % 300);
                if (d[i] < h.thr) {
                    vm_best_push(&h, d[i], id);
                    taken[ntaken++] = graph_key(d[i], id);
                } else if (d[i] < nearest_refused) {
                    nearest_refused = d[i];
                }
            }
            const size_t want = ntaken < cap ? ntaken : cap;
            vm_best_finish(&h, sorted, got_d, mem);
            assert_int_equal(h.size, want);
            qsort(taken, ntaken, sizeof *taken, cmp_key);
            uint64_t *got = malloc((want ? want : 1) * sizeof *got);
            for (size_t j = 0; j < want; j++) {
                got[j] = graph_key(got_d[j], (uint32_t)mem[j]);
                if (sorted && j > 0)
                    assert_true(got[j - 1] <= got[j]);
            }
            qsort(got, want, sizeof *got, cmp_key);
            for (size_t j = 0; j < want; j++)
                assert_true(got[j] == taken[j]);
            if (want > 0)
                assert_true(nearest_refused >= graph_key_dist(got[want - 1]));
            free(got);
            free(mem);
            free(got_d);
        }
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vamana_recall),
        cmocka_unit_test(test_vamana_deterministic),
        cmocka_unit_test(test_starting_point_codes_repeat),
        cmocka_unit_test(test_vamana_threads),
        cmocka_unit_test(test_build_from_codes),
        cmocka_unit_test(test_walk_quant),
        cmocka_unit_test(test_start_points),
        cmocka_unit_test(test_short_list),
        cmocka_unit_test(test_start_groups),
        cmocka_unit_test(test_derived_start_groups),
        cmocka_unit_test(test_start_points_scored_as_asked),
        cmocka_unit_test(test_equal_points),
        cmocka_unit_test(test_start_sample),
        cmocka_unit_test(test_add),
        cmocka_unit_test(test_add_one_at_a_time),
        cmocka_unit_test(test_consolidation_keeps_live_reachable),
        cmocka_unit_test(test_batch_equals_single),
        cmocka_unit_test(test_padding),
        cmocka_unit_test(test_bad_params),
        cmocka_unit_test(test_alloc_failures),
        cmocka_unit_test(test_cancel),
        cmocka_unit_test(test_stats),
        cmocka_unit_test(test_narrow_walk),
        cmocka_unit_test(test_default_degree),
        cmocka_unit_test(test_pool_keeps_the_best),
        cmocka_unit_test(test_list_order),
    };
    return cmocka_run_group_tests(tests, nav_setup, nav_teardown);
}
