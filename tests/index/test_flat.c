/*
 * The flat index: exact results for every metric against a double-precision
 * brute force, the padding contract, and refusal of bad input without
 * changing the index or leaking memory.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "support/support.h"

enum { N = 700, NQ = 23, D = 37 };

typedef struct fixture {
    float *base, *queries;
} fixture;

static int setup(void **state) {
    fixture *f = calloc(1, sizeof *f);
    ts_rng r;
    ts_rng_init(&r, 11);
    f->base = malloc(N * D * sizeof(float));
    f->queries = malloc(NQ * D * sizeof(float));
    ts_fill_uniform(&r, f->base, N * D, -1, 1);
    ts_fill_uniform(&r, f->queries, NQ * D, -1, 1);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    free(f->base);
    free(f->queries);
    free(f);
    return 0;
}

static rotor_index *build(const fixture *f, rotor_metric metric) {
    rotor_params p = rotor_params_default();
    p.metric = metric;
    rotor_matrix m = {f->base, N, D, ROTOR_ELEM_F32};
    rotor_index *ix = NULL;
    assert_int_equal(rotor_index_build(&p, &m, &ix), ROTOR_OK);
    return ix;
}

/* Float kernels sum in another order than the double reference, so a
 * returned id may differ from the reference only where the two reference
 * distances are within float rounding of each other. */
static void assert_same_neighbours(const int64_t *got, const float *got_d, const int64_t *want,
                                   const double *want_d, size_t k) {
    for (size_t j = 0; j < k; j++) {
        double tol = 1e-4 * fmax(1.0, fabs(want_d[j]));
        assert_true(fabs((double)got_d[j] - want_d[j]) <= tol);
        if (got[j] != want[j])
            assert_true(fabs(want_d[j] - (double)got_d[j]) <= tol);
    }
}

static void check_metric(fixture *f, rotor_metric metric) {
    enum { K = 10 };
    rotor_index *ix = build(f, metric);
    int64_t want[NQ * K];
    double want_d[NQ * K];
    ts_brute_force(f->base, N, f->queries, NQ, D, metric, K, want, want_d);

    int64_t got[NQ * K];
    float got_d[NQ * K];
    for (size_t q = 0; q < NQ; q++)
        assert_int_equal(
            rotor_index_search(ix, NULL, f->queries + q * D, D, K, got + q * K, got_d + q * K),
            ROTOR_OK);
    assert_same_neighbours(got, got_d, want, want_d, NQ * K);

    int64_t got_b[NQ * K];
    float got_bd[NQ * K];
    rotor_matrix qm = {f->queries, NQ, D, ROTOR_ELEM_F32};
    assert_int_equal(rotor_index_search_batch(ix, NULL, &qm, K, got_b, got_bd), ROTOR_OK);
    assert_same_neighbours(got_b, got_bd, want, want_d, NQ * K);
    rotor_index_close(ix);
}

static void test_flat_l2_matches_brute_force(void **state) {
    check_metric(*state, ROTOR_METRIC_L2);
}
static void test_flat_ip_matches_brute_force(void **state) {
    check_metric(*state, ROTOR_METRIC_IP);
}
static void test_flat_cosine_matches_brute_force(void **state) {
    check_metric(*state, ROTOR_METRIC_COSINE);
}

static void test_batch_results_do_not_depend_on_thread_count(void **state) {
    fixture *f = *state;
    enum { K = 5 };
    rotor_index *ix = build(f, ROTOR_METRIC_L2);
    rotor_matrix qm = {f->queries, NQ, D, ROTOR_ELEM_F32};
    int64_t ref[NQ * K], got[NQ * K];
    float ref_d[NQ * K], got_d[NQ * K];
    rotor_search_params sp = rotor_search_params_default();
    sp.threads = 1;
    assert_int_equal(rotor_index_search_batch(ix, &sp, &qm, K, ref, ref_d), ROTOR_OK);
    for (uint32_t t = 2; t <= 7; t++) {
        sp.threads = t;
        assert_int_equal(rotor_index_search_batch(ix, &sp, &qm, K, got, got_d), ROTOR_OK);
        assert_memory_equal(ref, got, sizeof ref);
        assert_memory_equal(ref_d, got_d, sizeof ref_d);
    }
    rotor_index_close(ix);
}

static void test_search_k_larger_than_index_pads_minus_one(void **state) {
    fixture *f = *state;
    rotor_params p = rotor_params_default();
    rotor_matrix m = {f->base, 3, D, ROTOR_ELEM_F32};
    rotor_index *ix = NULL;
    assert_int_equal(rotor_index_build(&p, &m, &ix), ROTOR_OK);
    int64_t ids[8];
    float d[8];
    assert_int_equal(rotor_index_search(ix, NULL, f->base + D, D, 8, ids, d), ROTOR_OK);
    assert_int_equal(ids[0], 1);
    assert_true(d[0] == 0.0f);
    for (int j = 3; j < 8; j++) {
        assert_int_equal(ids[j], -1);
        assert_true(isinf(d[j]) && d[j] > 0);
    }
    /* distances may be NULL */
    assert_int_equal(rotor_index_search(ix, NULL, f->base, D, 8, ids, NULL), ROTOR_OK);
    assert_int_equal(ids[0], 0);
    rotor_index_close(ix);
}

static void test_search_rejects_wrong_dimension_with_both_numbers(void **state) {
    fixture *f = *state;
    rotor_index *ix = build(f, ROTOR_METRIC_L2);
    int64_t ids[4];
    assert_int_equal(rotor_index_search(ix, NULL, f->queries, D + 1, 4, ids, NULL),
                     ROTOR_ERR_DIMENSION);
    assert_string_equal(rotor_last_error(), "query has 38 dimensions, index has 37");
    rotor_matrix qm = {f->queries, 2, D - 1, ROTOR_ELEM_F32};
    assert_int_equal(rotor_index_search_batch(ix, NULL, &qm, 4, ids, NULL), ROTOR_ERR_DIMENSION);
    assert_non_null(strstr(rotor_last_error(), "36 dimensions, index has 37"));
    assert_int_equal(rotor_index_search(ix, NULL, f->queries, D, 0, ids, NULL),
                     ROTOR_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(rotor_last_error(), "k must be at least 1"));
    rotor_index_close(ix);
}

static void test_nan_and_inf_are_refused_with_position(void **state) {
    fixture *f = *state;
    float *bad = malloc(N * D * sizeof(float));
    memcpy(bad, f->base, N * D * sizeof(float));
    bad[5 * D + 3] = NAN;
    rotor_matrix m = {bad, N, D, ROTOR_ELEM_F32};
    rotor_index *ix = (rotor_index *)0x1;
    assert_int_equal(rotor_index_build(NULL, &m, &ix), ROTOR_ERR_NOT_FINITE);
    assert_null(ix);
    assert_string_equal(rotor_last_error(), "base data row 5, column 3 is NaN");

    ix = build(f, ROTOR_METRIC_L2);
    bad[5 * D + 3] = INFINITY;
    rotor_matrix add = {bad, 10, D, ROTOR_ELEM_F32};
    assert_int_equal(rotor_index_add(ix, &add), ROTOR_ERR_NOT_FINITE);
    assert_non_null(strstr(rotor_last_error(), "row 5, column 3 is infinite"));
    rotor_index_stats s;
    assert_int_equal(rotor_index_stats_get(ix, &s), ROTOR_OK);
    assert_int_equal(s.count, N); /* the failed add changed nothing */

    float q[D];
    memcpy(q, f->queries, sizeof q);
    q[D - 1] = -INFINITY;
    int64_t ids[3];
    assert_int_equal(rotor_index_search(ix, NULL, q, D, 3, ids, NULL), ROTOR_ERR_NOT_FINITE);
    assert_non_null(strstr(rotor_last_error(), "query column 36 is infinite"));
    rotor_index_close(ix);
    free(bad);
}

/* Finite values whose squares overflow float32 (about 1e19 and up) would
 * turn every distance into infinity and every answer into the same ids:
 * refused by build, add, search and batch search, naming the row, for L2
 * and IP; cosine rows are normalised in double and are fine. */
static void test_huge_finite_values_are_refused_with_row(void **state) {
    fixture *f = *state;
    float *bad = malloc(N * D * sizeof(float));
    memcpy(bad, f->base, N * D * sizeof(float));
    bad[7 * D + 2] = 1e19f;
    const rotor_metric metrics[] = {ROTOR_METRIC_L2, ROTOR_METRIC_IP};
    for (size_t mi = 0; mi < 2; mi++) {
        rotor_params p = rotor_params_default();
        p.metric = metrics[mi];
        rotor_matrix m = {bad, N, D, ROTOR_ELEM_F32};
        rotor_index *ix = NULL;
        TS_CHECK_ERROR(rotor_index_build(&p, &m, &ix), ROTOR_ERR_NOT_FINITE, NULL, "row 7",
                       "overflow");
        assert_null(ix);
        /* Just under the bound is accepted. */
        bad[7 * D + 2] = 9e18f;
        assert_int_equal(rotor_index_build(&p, &m, &ix), ROTOR_OK);
        bad[7 * D + 2] = 1e19f;
        rotor_matrix add = {bad, 10, D, ROTOR_ELEM_F32};
        TS_CHECK_ERROR(rotor_index_add(ix, &add), ROTOR_ERR_NOT_FINITE, NULL, "row 7");
        rotor_index_stats s;
        assert_int_equal(rotor_index_stats_get(ix, &s), ROTOR_OK);
        assert_int_equal(s.count, N);
        int64_t ids[3];
        TS_CHECK_ERROR(rotor_index_search(ix, NULL, bad + 7 * D, D, 3, ids, NULL),
                       ROTOR_ERR_NOT_FINITE, NULL, "query", "overflow");
        rotor_matrix qs = {bad, 8, D, ROTOR_ELEM_F32};
        int64_t bids[8 * 3];
        TS_CHECK_ERROR(rotor_index_search_batch(ix, NULL, &qs, 3, bids, NULL), ROTOR_ERR_NOT_FINITE,
                       NULL, "queries row 7");
        rotor_index_close(ix);
    }
    rotor_params p = rotor_params_default();
    p.metric = ROTOR_METRIC_COSINE;
    rotor_matrix m = {bad, N, D, ROTOR_ELEM_F32};
    rotor_index *ix = NULL;
    assert_int_equal(rotor_index_build(&p, &m, &ix), ROTOR_OK);
    int64_t ids[1];
    assert_int_equal(rotor_index_search(ix, NULL, bad + 7 * D, D, 1, ids, NULL), ROTOR_OK);
    assert_int_equal(ids[0], 7);
    rotor_index_close(ix);
    free(bad);
}

static void test_empty_and_zero_dimension_input_refused(void **state) {
    fixture *f = *state;
    rotor_index *ix = NULL;
    rotor_matrix empty = {f->base, 0, D, ROTOR_ELEM_F32};
    assert_int_equal(rotor_index_build(NULL, &empty, &ix), ROTOR_ERR_EMPTY);
    assert_string_equal(rotor_last_error(), "base data has no rows");
    rotor_matrix zero = {f->base, 5, 0, ROTOR_ELEM_F32};
    assert_int_equal(rotor_index_build(NULL, &zero, &ix), ROTOR_ERR_DIMENSION);
    assert_int_equal(rotor_index_build(NULL, NULL, &ix), ROTOR_ERR_INVALID_ARGUMENT);
    rotor_matrix i32 = {f->base, 5, D, ROTOR_ELEM_I32};
    assert_int_equal(rotor_index_build(NULL, &i32, &ix), ROTOR_ERR_INVALID_ARGUMENT);
    assert_null(ix);
}

static void test_add_appends_ids_and_checks_dimension(void **state) {
    fixture *f = *state;
    rotor_matrix first = {f->base, 100, D, ROTOR_ELEM_F32};
    rotor_index *ix = NULL;
    assert_int_equal(rotor_index_build(NULL, &first, &ix), ROTOR_OK);
    rotor_matrix rest = {f->base + 100 * D, N - 100, D, ROTOR_ELEM_F32};
    assert_int_equal(rotor_index_add(ix, &rest), ROTOR_OK);
    int64_t id;
    assert_int_equal(rotor_index_search(ix, NULL, f->base + 650 * D, D, 1, &id, NULL), ROTOR_OK);
    assert_int_equal(id, 650);
    rotor_matrix wrong = {f->base, 2, D + 2, ROTOR_ELEM_F32};
    assert_int_equal(rotor_index_add(ix, &wrong), ROTOR_ERR_DIMENSION);
    assert_string_equal(rotor_last_error(), "vectors have 39 dimensions, index has 37");
    rotor_index_close(ix);
}

static void test_uint8_input_is_converted(void **state) {
    (void)state;
    uint8_t base[4 * 3] = {0, 0, 0, 10, 10, 10, 200, 200, 200, 255, 0, 255};
    rotor_matrix m = {base, 4, 3, ROTOR_ELEM_U8};
    rotor_index *ix = NULL;
    assert_int_equal(rotor_index_build(NULL, &m, &ix), ROTOR_OK);
    float q[3] = {198, 201, 199};
    int64_t id;
    float d;
    assert_int_equal(rotor_index_search(ix, NULL, q, 3, 1, &id, &d), ROTOR_OK);
    assert_int_equal(id, 2);
    assert_true(d == 6.0f);
    uint8_t qb[3] = {255, 1, 254};
    rotor_matrix qm = {qb, 1, 3, ROTOR_ELEM_U8};
    assert_int_equal(rotor_index_search_batch(ix, NULL, &qm, 1, &id, &d), ROTOR_OK);
    assert_int_equal(id, 3);
    assert_true(d == 2.0f);
    rotor_index_close(ix);
}

static void test_every_allocation_failure_is_clean(void **state) {
    fixture *f = *state;
    /* Fail the 1st, 2nd, ... allocation of a build + search + batch until
     * one whole pass succeeds: each failure must report out of memory and
     * leave no block behind. */
    const char *quants[] = {NULL, "tq2", "bin1"};
    for (size_t qi = 0; qi < 3; qi++)
        for (long fail_at = 1;; fail_at++) {
            ts_counting_alloc c = {0, 0, fail_at};
            rotor_params p = rotor_params_default();
            p.metric = ROTOR_METRIC_COSINE;
            p.quant = quants[qi];
            p.calibrate = 0; /* its allocations are cycled in test_tune */
            p.allocator = ts_counting_allocator(&c);
            rotor_matrix m = {f->base, N, D, ROTOR_ELEM_F32};
            rotor_matrix qm = {f->queries, NQ, D, ROTOR_ELEM_F32};
            rotor_index *ix = NULL;
            int64_t ids[NQ * 3];
            rotor_status st = rotor_index_build(&p, &m, &ix);
            if (st == ROTOR_OK)
                st = rotor_index_search(ix, NULL, f->queries, D, 3, ids, NULL);
            if (st == ROTOR_OK)
                st = rotor_index_search_batch(ix, NULL, &qm, 3, ids, NULL);
            rotor_index_close(ix);
            assert_int_equal(c.live, 0);
            if (st == ROTOR_OK) {
                assert_true(fail_at > 3);
                break;
            }
            assert_int_equal(st, ROTOR_ERR_OUT_OF_MEMORY);
            assert_non_null(strstr(rotor_last_error(), "out of memory"));
        }
}

static void test_stats_report_count_and_bytes(void **state) {
    fixture *f = *state;
    rotor_index *ix = build(f, ROTOR_METRIC_IP);
    rotor_index_stats s;
    assert_int_equal(rotor_index_stats_get(ix, &s), ROTOR_OK);
    assert_int_equal(s.count, N);
    assert_int_equal(s.dim, D);
    assert_int_equal(s.metric, ROTOR_METRIC_IP);
    assert_int_equal(s.bytes_vectors, (size_t)N * D * sizeof(float));
    assert_true(s.bytes_total >= s.bytes_vectors);
    rotor_index_close(ix);
    rotor_index_close(NULL);
}

static void test_quantized_flat_reranks_to_exact_answers(void **state) {
    fixture *f = *state;
    /* With 4-bit codes and the default rerank depth of 10k, the exact top-10
     * survives the estimate almost always; the rerank makes the returned
     * distances exact. With rerank off the distances are estimates. */
    enum { K = 10 };
    const char *specs[] = {"tq4", "bin2", "tqip4"};
    rotor_metric metrics[] = {ROTOR_METRIC_L2, ROTOR_METRIC_IP, ROTOR_METRIC_COSINE};
    for (size_t s = 0; s < 3; s++)
        for (size_t m = 0; m < 3; m++) {
            rotor_params p = rotor_params_default();
            p.metric = metrics[m];
            p.quant = specs[s];
            rotor_matrix base = {f->base, N, D, ROTOR_ELEM_F32};
            rotor_index *ix = NULL;
            assert_int_equal(rotor_index_build(&p, &base, &ix), ROTOR_OK);
            rotor_index_stats st;
            assert_int_equal(rotor_index_stats_get(ix, &st), ROTOR_OK);
            assert_string_equal(st.quant, specs[s]);
            assert_true(st.code_bytes > 0 && st.code_bytes < D * sizeof(float));
            int64_t want[NQ * K], got[NQ * K];
            double want_d[NQ * K];
            float got_d[NQ * K];
            ts_brute_force(f->base, N, f->queries, NQ, D, metrics[m], K, want, want_d);
            size_t hits = 0;
            for (size_t q = 0; q < NQ; q++) {
                assert_int_equal(rotor_index_search(ix, NULL, f->queries + q * D, D, K, got + q * K,
                                                    got_d + q * K),
                                 ROTOR_OK);
                for (size_t j = 0; j < K; j++)
                    for (size_t i = 0; i < K; i++)
                        hits += got[q * K + j] == want[q * K + i];
                /* reranked: the first distance is exact */
                assert_true(fabs(got_d[q * K] - want_d[q * K]) <=
                                1e-4 * fmax(1.0, fabs(want_d[q * K])) ||
                            got[q * K] != want[q * K]);
            }
            print_message("# %s %s recall@10 with rerank %.3f\n", specs[s],
                          rotor_metric_name(metrics[m]), (double)hits / (NQ * K));
            assert_true(hits >= 0.95 * NQ * K);

            rotor_search_params sp = rotor_search_params_default();
            sp.rerank = 0;
            float est[K];
            assert_int_equal(rotor_index_search(ix, &sp, f->queries, D, K, got, got_d), ROTOR_OK);
            assert_int_equal(rotor_index_estimate(ix, f->queries, D, got, K, est), ROTOR_OK);
            for (size_t j = 0; j < K; j++)
                assert_true(est[j] == got_d[j]);
            float rec[D];
            assert_int_equal(rotor_index_reconstruct(ix, 3, rec), ROTOR_OK);
            assert_int_equal(rotor_index_reconstruct(ix, N, rec), ROTOR_ERR_NOT_FOUND);
            assert_non_null(strstr(rotor_last_error(), "no vector has key"));
            sp.rerank = -2;
            assert_int_equal(rotor_index_search(ix, &sp, f->queries, D, K, got, NULL),
                             ROTOR_ERR_INVALID_ARGUMENT);
            rotor_index_close(ix);
        }
    rotor_params p = rotor_params_default();
    p.quant = "tq9";
    rotor_matrix base = {f->base, N, D, ROTOR_ELEM_F32};
    rotor_index *ix = NULL;
    assert_int_equal(rotor_index_build(&p, &base, &ix), ROTOR_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(rotor_last_error(), "tq9"));
    assert_null(ix);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_flat_l2_matches_brute_force),
        cmocka_unit_test(test_flat_ip_matches_brute_force),
        cmocka_unit_test(test_flat_cosine_matches_brute_force),
        cmocka_unit_test(test_batch_results_do_not_depend_on_thread_count),
        cmocka_unit_test(test_search_k_larger_than_index_pads_minus_one),
        cmocka_unit_test(test_search_rejects_wrong_dimension_with_both_numbers),
        cmocka_unit_test(test_nan_and_inf_are_refused_with_position),
        cmocka_unit_test(test_huge_finite_values_are_refused_with_row),
        cmocka_unit_test(test_empty_and_zero_dimension_input_refused),
        cmocka_unit_test(test_add_appends_ids_and_checks_dimension),
        cmocka_unit_test(test_uint8_input_is_converted),
        cmocka_unit_test(test_every_allocation_failure_is_clean),
        cmocka_unit_test(test_stats_report_count_and_bytes),
        cmocka_unit_test(test_quantized_flat_reranks_to_exact_answers),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
