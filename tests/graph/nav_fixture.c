#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "graph/nav_fixture.h"

static void fill_clustered(ts_rng *r, float *x, size_t n, const float *centres) {
    for (size_t i = 0; i < n; i++) {
        const float *c = centres + (ts_rng_next(r) % CLUSTERS) * D;
        for (size_t j = 0; j < D; j++)
            x[i * D + j] = c[j] + 0.35f * (float)ts_rng_normal(r);
    }
}

int nav_setup(void **state) {
    fixture *f = calloc(1, sizeof *f);
    ts_rng r;
    ts_rng_init(&r, 2024);
    float centres[CLUSTERS * D];
    for (size_t i = 0; i < CLUSTERS * D; i++)
        centres[i] = (float)ts_rng_normal(&r);
    f->base = malloc(N * D * sizeof(float));
    f->queries = malloc(NQ * D * sizeof(float));
    fill_clustered(&r, f->base, N, centres);
    fill_clustered(&r, f->queries, NQ, centres);
    *state = f;
    return 0;
}

int nav_teardown(void **state) {
    fixture *f = *state;
    free(f->base);
    free(f->queries);
    free(f);
    return 0;
}

rotor_params graph_params(rotor_index_kind kind, rotor_metric metric, const char *spec) {
    rotor_params p = rotor_params_default();
    p.kind = kind;
    p.metric = metric;
    p.quant = spec;
    p.calibrate = 0; /* measured in test_tune */
    p.graph_degree = 16;
    p.build_list = 48;
    p.nlist = 32;
    return p;
}

rotor_index *build_n(const fixture *f, const rotor_params *p, size_t n) {
    rotor_matrix m = {f->base, n, D, ROTOR_ELEM_F32};
    rotor_index *ix = NULL;
    assert_int_equal(rotor_index_build(p, &m, &ix), ROTOR_OK);
    return ix;
}

double recall(const fixture *f, const rotor_index *ix, size_t n, rotor_metric metric,
              const rotor_search_params *sp) {
    int64_t want[NQ * K], got[NQ * K];
    double want_d[NQ * K];
    float got_d[NQ * K];
    ts_brute_force(f->base, n, f->queries, NQ, D, metric, K, want, want_d);
    size_t hits = 0;
    for (size_t q = 0; q < NQ; q++) {
        assert_int_equal(
            rotor_index_search(ix, sp, f->queries + q * D, D, K, got + q * K, got_d + q * K),
            ROTOR_OK);
        double kth = want_d[q * K + K - 1];
        for (size_t j = 0; j < K; j++) {
            int64_t id = got[q * K + j];
            assert_true(id >= -1 && id < (int64_t)n);
            if (id < 0)
                continue;
            /* The exact distance, recomputed from the data. */
            double d = 0, qq = 0, xx = 0;
            const float *qv = f->queries + q * D, *xv = f->base + id * D;
            for (size_t t = 0; t < D; t++) {
                if (metric == ROTOR_METRIC_L2)
                    d += ((double)qv[t] - xv[t]) * ((double)qv[t] - xv[t]);
                else
                    d -= (double)qv[t] * xv[t];
                qq += (double)qv[t] * qv[t];
                xx += (double)xv[t] * xv[t];
            }
            if (metric == ROTOR_METRIC_COSINE)
                d = 1 + d / sqrt(qq * xx);
            if (d <= kth + 1e-5 * fmax(1.0, fabs(kth)))
                hits++;
        }
    }
    return (double)hits / (NQ * K);
}

void check_graph(const rotor_index *ix) {
    const nav *g = ix->nav;
    assert_non_null(g);
    size_t n = vamana_count(g);
    assert_int_equal(n, ix->count);
    uint32_t R = vamana_max_degree(g);
    uint8_t *seen = calloc(n, 1);
    uint32_t *stack = malloc(n * sizeof *stack);
    for (size_t u = 0; u < n; u++) {
        const uint32_t *nb;
        uint32_t deg = vamana_neighbors(g, u, &nb);
        assert_true(deg <= R);
        assert_true(n == 1 || deg >= 1);
        for (uint32_t j = 0; j < deg; j++) {
            assert_true(nb[j] < n);
            assert_true(nb[j] != u);
            for (uint32_t t = 0; t < j; t++)
                assert_true(nb[t] != nb[j]);
        }
    }
    size_t top = 0, reached = 1;
    uint32_t entry = vamana_entry(g);
    assert_true(entry < n);
    seen[entry] = 1;
    stack[top++] = entry;
    while (top > 0) {
        uint32_t u = stack[--top];
        const uint32_t *nb;
        uint32_t deg = vamana_neighbors(g, u, &nb);
        for (uint32_t j = 0; j < deg; j++) {
            if (!seen[nb[j]]) {
                seen[nb[j]] = 1;
                reached++;
                stack[top++] = nb[j];
            }
        }
    }
    assert_int_equal(reached, n);
    free(seen);
    free(stack);
}

/* Deep enough for the recall floors: L 64, 8 of the lists, 64 reranked. */
static rotor_search_params deep_search(void) {
    rotor_search_params sp = rotor_search_params_default();
    sp.list_size = 64;
    sp.nprobe = 8;
    sp.rerank = 64;
    return sp;
}

void check_recall(void **state, rotor_index_kind kind, const char *const *quants, double floor) {
    fixture *f = *state;
    const rotor_metric metrics[] = {ROTOR_METRIC_L2, ROTOR_METRIC_IP, ROTOR_METRIC_COSINE};
    for (size_t mi = 0; mi < 3; mi++) {
        for (size_t qi = 0; quants[qi] != NULL; qi++) {
            rotor_params p = graph_params(kind, metrics[mi], quants[qi]);
            rotor_index *ix = build_n(f, &p, N);
            if (kind == ROTOR_INDEX_VAMANA)
                check_graph(ix);
            const rotor_search_params sp = deep_search();
            double r = recall(f, ix, N, metrics[mi], &sp);
            print_message("%s %s %s: recall@10 %.4f\n", rotor_index_kind_name(kind),
                          rotor_metric_name(metrics[mi]), quants[qi] ? quants[qi] : "none", r);
            assert_true(r >= floor);
            rotor_index_close(ix);
        }
    }
}

void check_add(void **state, rotor_index_kind kind) {
    fixture *f = *state;
    rotor_params p = graph_params(kind, ROTOR_METRIC_L2, "pq8x4");
    rotor_index *ix = build_n(f, &p, N / 2);
    rotor_matrix rest = {f->base + (N / 2) * D, N - N / 2, D, ROTOR_ELEM_F32};
    assert_int_equal(rotor_index_add(ix, &rest), ROTOR_OK);
    assert_int_equal(ix->count, N);
    if (kind == ROTOR_INDEX_VAMANA)
        check_graph(ix);
    const rotor_search_params sp = deep_search();
    assert_true(recall(f, ix, N, ROTOR_METRIC_L2, &sp) >= 0.90);
    /* A bad add changes nothing. */
    float bad[D] = {0};
    bad[3] = NAN;
    rotor_matrix bm = {bad, 1, D, ROTOR_ELEM_F32};
    assert_int_equal(rotor_index_add(ix, &bm), ROTOR_ERR_NOT_FINITE);
    assert_int_equal(ix->count, N);
    if (kind == ROTOR_INDEX_VAMANA)
        assert_int_equal(vamana_count(ix->nav), N);
    rotor_index_close(ix);
}

void check_batch_equals_single(void **state, rotor_index_kind kind) {
    fixture *f = *state;
    rotor_params p = graph_params(kind, ROTOR_METRIC_COSINE, "bin2");
    rotor_index *ix = build_n(f, &p, N);
    rotor_search_params sp = rotor_search_params_default();
    sp.threads = 3;
    int64_t single[NQ * K], batch[NQ * K];
    float sd[NQ * K], bd[NQ * K];
    for (size_t q = 0; q < NQ; q++)
        assert_int_equal(
            rotor_index_search(ix, &sp, f->queries + q * D, D, K, single + q * K, sd + q * K),
            ROTOR_OK);
    rotor_matrix qm = {f->queries, NQ, D, ROTOR_ELEM_F32};
    assert_int_equal(rotor_index_search_batch(ix, &sp, &qm, K, batch, bd), ROTOR_OK);
    assert_memory_equal(single, batch, sizeof single);
    assert_memory_equal(sd, bd, sizeof sd);
    rotor_index_close(ix);
}

void check_padding(void **state, rotor_index_kind kind) {
    fixture *f = *state;
    rotor_params p = graph_params(kind, ROTOR_METRIC_L2, "tq4");
    p.nlist = 4;
    rotor_index *ix = build_n(f, &p, 20);
    int64_t ids[30];
    float d[30];
    rotor_search_params sp = rotor_search_params_default();
    sp.nprobe = 4;
    assert_int_equal(rotor_index_search(ix, &sp, f->queries, D, 30, ids, d), ROTOR_OK);
    for (size_t j = 0; j < 20; j++) {
        assert_true(ids[j] >= 0 && ids[j] < 20);
        assert_true(j == 0 || d[j] >= d[j - 1]);
    }
    for (size_t j = 20; j < 30; j++) {
        assert_int_equal(ids[j], -1);
        assert_true(isinf(d[j]));
    }
    rotor_index_close(ix);
}

void check_alloc_failures(void **state, rotor_index_kind kind) {
    fixture *f = *state;
    size_t failures = 0;
    for (long at = 1;; at++) {
        ts_counting_alloc ca = {0};
        ca.fail_at = at;
        rotor_params p = graph_params(kind, ROTOR_METRIC_L2, "tq4");
        p.allocator = ts_counting_allocator(&ca);
        p.threads = 2;
        p.nlist = 8;
        rotor_matrix m = {f->base, 300, D, ROTOR_ELEM_F32};
        rotor_index *ix = NULL;
        rotor_status st = rotor_index_build(&p, &m, &ix);
        if (st == ROTOR_OK) {
            int64_t ids[K];
            st = rotor_index_search(ix, NULL, f->queries, D, K, ids, NULL);
            rotor_index_close(ix);
            if (st == ROTOR_OK) {
                assert_int_equal(ca.live, 0);
                break;
            }
        }
        assert_int_equal(st, ROTOR_ERR_OUT_OF_MEMORY);
        assert_non_null(strstr(rotor_last_error(), "out of memory"));
        if (ix == NULL)
            assert_int_equal(ca.live, 0);
        failures++;
        assert_true(at < 10000);
    }
    assert_true(failures > 5);
}
