/*
 * The IVF navigator through the public API: recall against a
 * double-precision brute force for every metric and quantizer, every list
 * probed equal to a flat scan, adds, batch = single search, padding, bad
 * parameters refused, every allocation failure reported without a leak,
 * and memory accounting.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "graph/nav_fixture.h"

/* IVF with 8 of 32 lists probed and 64 candidates reranked. */
static void test_ivf_recall(void **state) {
    const char *quants[] = {"tq4", "bin1", "bin1fs", "sq8", "pq16x4", NULL};
    check_recall(state, ROTOR_INDEX_IVF, quants, 0.90);
}

/* Inner product keeps codes of whole rows in the lists: every list probed,
 * the scan covers every code, as a flat scan does. */
static void test_ivf_all_lists_equal_flat(void **state) {
    fixture *f = *state;
    rotor_params p = graph_params(ROTOR_INDEX_IVF, ROTOR_METRIC_IP, "pq8x4");
    rotor_index *ix = build_n(f, &p, N);
    rotor_params pf = graph_params(ROTOR_INDEX_FLAT, ROTOR_METRIC_IP, "pq8x4");
    rotor_index *flat = build_n(f, &pf, N);
    rotor_search_params sp = rotor_search_params_default();
    sp.nprobe = 32;
    sp.rerank = 0;
    for (size_t q = 0; q < NQ; q++) {
        int64_t a[K], b[K];
        float ad[K], bd[K];
        assert_int_equal(rotor_index_search(ix, &sp, f->queries + q * D, D, K, a, ad), ROTOR_OK);
        assert_int_equal(rotor_index_search(flat, &sp, f->queries + q * D, D, K, b, bd), ROTOR_OK);
        for (size_t j = 0; j < K; j++)
            assert_float_equal(ad[j], bd[j], 1e-4f * fmaxf(1.0f, fabsf(bd[j])));
    }
    rotor_index_close(ix);
    rotor_index_close(flat);
}

/* Mean |estimate - exact distance| of the K results of every query,
 * searched by estimates alone (no rerank). */
static double estimate_error(const fixture *f, rotor_index *ix, rotor_metric metric,
                             const rotor_search_params *sp) {
    double err = 0;
    for (size_t q = 0; q < NQ; q++) {
        int64_t id[K];
        float est[K];
        const float *qv = f->queries + q * D;
        assert_int_equal(rotor_index_search(ix, sp, qv, D, K, id, est), ROTOR_OK);
        double qq = 0;
        for (size_t t = 0; t < D; t++)
            qq += (double)qv[t] * qv[t];
        for (size_t j = 0; j < K; j++) {
            const float *x = f->base + (size_t)id[j] * D;
            double ip = 0, xx = 0, l2 = 0;
            for (size_t t = 0; t < D; t++) {
                ip += (double)qv[t] * x[t];
                xx += (double)x[t] * x[t];
                l2 += ((double)qv[t] - x[t]) * ((double)qv[t] - x[t]);
            }
            const double exact = metric == ROTOR_METRIC_L2 ? l2 : 1.0 - ip / sqrt(qq * xx);
            err += fabs(est[j] - exact);
        }
    }
    return err / (NQ * K);
}

/* For L2 and cosine the lists hold codes of each row's residual to its
 * centroid: every list probed, the estimates of the same code size come
 * out far closer to the exact distances than a flat scan's codes of whole
 * rows, in the metric's own units (0.24-0.46x the error across seeds). PQ is left
 * out: its codebooks of whole rows already learn these few clusters'
 * centres, and its residual codes measured 0.83-1.05x across seeds. */
static void test_ivf_residual_codes_estimate_closer(void **state) {
    fixture *f = *state;
    const rotor_metric metrics[] = {ROTOR_METRIC_L2, ROTOR_METRIC_COSINE};
    const char *quants[] = {"sq8", "bin2", "tq4"};
    for (size_t m = 0; m < 2; m++) {
        for (size_t qi = 0; qi < 3; qi++) {
            rotor_params p = graph_params(ROTOR_INDEX_IVF, metrics[m], quants[qi]);
            rotor_index *ix = build_n(f, &p, N);
            rotor_params pf = graph_params(ROTOR_INDEX_FLAT, metrics[m], quants[qi]);
            rotor_index *flat = build_n(f, &pf, N);
            rotor_search_params sp = rotor_search_params_default();
            sp.nprobe = 32;
            sp.rerank = 0;
            const double e_ivf = estimate_error(f, ix, metrics[m], &sp);
            const double e_flat = estimate_error(f, flat, metrics[m], &sp);
            print_message("%s %s: mean estimate error ivf %.5f, flat %.5f\n",
                          metrics[m] == ROTOR_METRIC_L2 ? "l2" : "cosine", quants[qi], e_ivf,
                          e_flat);
            assert_true(e_ivf < 0.6 * e_flat);
            rotor_index_close(ix);
            rotor_index_close(flat);
        }
    }
}

/* Searched by estimates alone, a flat scan returns exactly the K smallest
 * estimates of all codes, ties to the smaller id: the scan keeps them in a
 * pool cut to the best K whenever it fills (2 K entries), so 3,000 codes
 * cut it many times. */
static void test_scan_returns_the_smallest_estimates(void **state) {
    fixture *f = *state;
    rotor_params pf = graph_params(ROTOR_INDEX_FLAT, ROTOR_METRIC_L2, "sq8");
    rotor_index *flat = build_n(f, &pf, N);
    const quant *q = flat->q;
    void *qs = malloc(q->query_bytes + 64);
    float *scratch = malloc((q->scratch_floats + 1) * sizeof(float));
    float *est = malloc(N * sizeof *est);
    rotor_search_params sp = rotor_search_params_default();
    sp.rerank = 0;
    for (size_t qi = 0; qi < NQ; qi++) {
        const float *qv = f->queries + qi * D;
        q->ops->prepare(q, qv, qs, scratch);
        q->ops->scan(q, qs, flat->codes, 0, N, est);
        int64_t id[K];
        float d[K];
        assert_int_equal(rotor_index_search(flat, &sp, qv, D, K, id, d), ROTOR_OK);
        for (size_t j = 0; j < K; j++) {
            size_t better = 0; /* codes ahead of result j: exactly j */
            for (size_t i = 0; i < N; i++)
                better += est[i] < d[j] || (est[i] == d[j] && (int64_t)i < id[j]);
            assert_int_equal(better, j);
            assert_true(est[id[j]] == d[j]);
        }
    }
    free(qs);
    free(scratch);
    free(est);
    rotor_index_close(flat);
}

/* The work a calibration prices: residual lists prepare the query once for
 * each probed list that holds codes (of 32 lists over N rows, nearly all),
 * lists of whole rows (inner product) never again; every centroid is
 * compared either way. */
static void test_work_counts_a_prepare_per_list(void **state) {
    fixture *f = *state;
    const rotor_metric metrics[] = {ROTOR_METRIC_L2, ROTOR_METRIC_IP};
    for (size_t mi = 0; mi < 2; mi++) {
        rotor_params p = graph_params(ROTOR_INDEX_IVF, metrics[mi], "pq8x4");
        rotor_index *ix = build_n(f, &p, N);
        nav_work w = {0};
        nav_search_params np = {.nprobe = 8, .rerank = 2 * K, .work = &w};
        for (size_t q = 0; q < NQ; q++) {
            int64_t id[K];
            float d[K];
            const uint64_t before = w.prepared;
            assert_int_equal(ix_search_nav(ix, &np, f->queries + q * D, K, id, d, NULL), ROTOR_OK);
            assert_true(w.prepared - before <= np.nprobe);
            if (metrics[mi] == ROTOR_METRIC_L2)
                assert_true(w.prepared - before >= 1);
        }
        assert_int_equal(w.probed, (uint64_t)NQ * 32);
        if (metrics[mi] == ROTOR_METRIC_L2)
            assert_true(w.prepared >= (uint64_t)NQ * np.nprobe * 9 / 10);
        else
            assert_int_equal(w.prepared, 0);
        rotor_index_close(ix);
    }
}

static void test_add(void **state) { check_add(state, ROTOR_INDEX_IVF); }

static void test_batch_equals_single(void **state) {
    check_batch_equals_single(state, ROTOR_INDEX_IVF);
}

static void test_padding(void **state) { check_padding(state, ROTOR_INDEX_IVF); }

static void test_alloc_failures(void **state) { check_alloc_failures(state, ROTOR_INDEX_IVF); }

static void test_bad_params(void **state) {
    fixture *f = *state;
    rotor_matrix m = {f->base, 100, D, ROTOR_ELEM_F32};
    rotor_index *ix = NULL;
    rotor_params p = graph_params(ROTOR_INDEX_IVF, ROTOR_METRIC_L2, NULL);
    assert_int_equal(rotor_index_build(&p, &m, &ix), ROTOR_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(rotor_last_error(), "quantizer"));
    p = graph_params(ROTOR_INDEX_IVF, ROTOR_METRIC_L2, "tq4");
    p.nlist = 101;
    assert_int_equal(rotor_index_build(&p, &m, &ix), ROTOR_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(rotor_last_error(), "101 lists"));
    assert_null(ix);
}

/* IVF lists hold their own copies of the codes, in whole blocks. */
static void test_stats(void **state) {
    fixture *f = *state;
    rotor_index_stats st;
    rotor_params pi = graph_params(ROTOR_INDEX_IVF, ROTOR_METRIC_L2, "pq8x4");
    rotor_index *fx = build_n(f, &pi, N);
    assert_int_equal(rotor_index_stats_get(fx, &st), ROTOR_OK);
    assert_true(st.bytes_graph_codes >= (size_t)N * 4);
    assert_true(st.bytes_graph >= (size_t)N * 4 + 32 * D * sizeof(float));
    assert_true(st.bytes_total >=
                st.bytes_vectors + st.bytes_codes + st.bytes_graph + st.bytes_graph_codes);
    rotor_index_close(fx);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ivf_recall),
        cmocka_unit_test(test_ivf_all_lists_equal_flat),
        cmocka_unit_test(test_ivf_residual_codes_estimate_closer),
        cmocka_unit_test(test_scan_returns_the_smallest_estimates),
        cmocka_unit_test(test_work_counts_a_prepare_per_list),
        cmocka_unit_test(test_add),
        cmocka_unit_test(test_batch_equals_single),
        cmocka_unit_test(test_padding),
        cmocka_unit_test(test_bad_params),
        cmocka_unit_test(test_alloc_failures),
        cmocka_unit_test(test_stats),
    };
    return cmocka_run_group_tests(tests, nav_setup, nav_teardown);
}
