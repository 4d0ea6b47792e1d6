/*
 * The error bounds of the quantizers' estimates (quant.h, "error bounds of
 * estimates"): for every kind that has one, under every metric, the lower
 * bound derived from an estimate and the vector's residual never exceeds
 * the exact distance, as the rerank computes it in float and as double
 * precision gives it, and a refined bound (where a kind has one) is no
 * lower than the cheap one and still a bound. A bound that is too loose would still be correct, so
 * the bound of the finest codes must also be tight enough to stop a rerank.
 * A residual that is not a finite non-negative number gives no bound.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "quant/quant.h"
#include "simd/simd.h"
#include "support/support.h"

enum { N = 400, D = 64, NQ = 16 };

/* Clustered rows with a common offset (so centring matters for L2), half of
 * them on a coarse integer grid like SIFT's bytes; unit rows for IP and
 * cosine. */
static void make_rows(ts_rng *r, float *x, size_t n, rotor_metric metric) {
    float centres[8][D];
    for (size_t c = 0; c < 8; c++)
        for (size_t j = 0; j < D; j++)
            centres[c][j] = (float)(4.0 * ts_rng_normal(r)) + 10.0f;
    for (size_t i = 0; i < n; i++) {
        const size_t c = (size_t)(ts_rng_uniform(r) * 8);
        for (size_t j = 0; j < D; j++) {
            float v = centres[c][j] + (float)ts_rng_normal(r);
            x[i * D + j] = i % 2 ? floorf(v) : v;
        }
        if (metric != ROTOR_METRIC_L2) {
            double s = 0;
            for (size_t j = 0; j < D; j++)
                s += (double)x[i * D + j] * x[i * D + j];
            for (size_t j = 0; j < D; j++)
                x[i * D + j] = (float)(x[i * D + j] / sqrt(s));
        }
    }
}

typedef struct bound_stats {
    double gap;   /* mean of (exact - bound) / spread of exact distances */
    size_t count; /* pairs checked */
} bound_stats;

static bound_stats check_bounds(ts_rng *r, const char *spec, rotor_metric metric) {
    rotor_allocator a = cm_allocator_default();
    quant_spec sp;
    assert_int_equal(quant_spec_parse(spec, &sp), ROTOR_OK);
    quant *q = NULL;
    assert_int_equal(quant_create(&sp, D, metric, 5, &a, &q), ROTOR_OK);
    assert_non_null(q->ops->residual);
    assert_non_null(q->ops->lower_bounds);
    float *x = malloc((N + NQ) * D * sizeof(float));
    make_rows(r, x, N + NQ, metric);
    const float *queries = x + N * D;
    if (q->ops->train)
        assert_int_equal(q->ops->train(q, x, N, 1), ROTOR_OK);
    q->trained = true;
    uint8_t *store = calloc(1, q->ops->store_bytes(q, N));
    uint8_t *code = malloc(q->code_bytes);
    float *scratch = malloc((q->scratch_floats + 1) * sizeof(float));
    float *resid = malloc(N * sizeof(float));
    uint32_t *ids = malloc(N * sizeof(uint32_t));
    for (size_t i = 0; i < N; i++) {
        q->ops->encode(q, x + i * D, code, scratch);
        q->ops->store(q, store, i, code);
        resid[i] = q->ops->residual(q, x + i * D, code, scratch);
        assert_true(resid[i] >= 0.0f && isfinite(resid[i]));
        ids[i] = (uint32_t)(N - 1 - i); /* any order */
    }
    void *qs = aligned_alloc(64, cm_round_up(q->query_bytes, 64));
    float *est = malloc(N * sizeof(float)), *lb = malloc(N * sizeof(float));
    float *cheap = malloc(N * sizeof(float));
    const simd_ops *ops = simd_ops_get();
    bound_stats out = {0, 0};
    for (size_t t = 0; t < NQ; t++) {
        const float *qv = queries + t * D;
        q->ops->prepare(q, qv, qs, scratch);
        for (size_t i = 0; i < N; i++)
            q->ops->scan(q, qs, store, ids[i], 1, &est[i]);
        memcpy(lb, est, N * sizeof(float));
        q->ops->lower_bounds(q, qs, store, resid, ids, N, lb);
        if (q->ops->refine_bounds != NULL) { /* tighter, and still a bound */
            memcpy(cheap, lb, N * sizeof(float));
            q->ops->refine_bounds(q, qs, store, resid, ids, N, lb);
            for (size_t i = 0; i < N; i++)
                assert_true(lb[i] >= cheap[i]);
        }
        double lo = INFINITY, hi = -INFINITY, gap = 0;
        for (size_t i = 0; i < N; i++) {
            const float *xv = x + (size_t)ids[i] * D;
            double ip = 0, l2 = 0;
            for (size_t j = 0; j < D; j++) {
                ip += (double)qv[j] * xv[j];
                l2 += ((double)qv[j] - xv[j]) * ((double)qv[j] - xv[j]);
            }
            const double exact = metric == ROTOR_METRIC_L2   ? l2
                                 : metric == ROTOR_METRIC_IP ? -ip
                                                             : 1.0 - ip;
            const float as_reranked = metric == ROTOR_METRIC_L2
                                          ? ops->l2sq_f32(qv, xv, D)
                                          : cm_ip_distance(metric, ops->dot_f32(qv, xv, D), 0, 0);
            if (!(lb[i] <= as_reranked && (double)lb[i] <= exact))
                fail_msg("%s %s: query %zu, vector %u: bound %.9g above the exact distance %.9g "
                         "(float %.9g; estimate %.9g, residual %.9g)",
                         spec, rotor_metric_name(metric), t, ids[i], (double)lb[i], exact,
                         (double)as_reranked, (double)est[i], (double)resid[ids[i]]);
            lo = exact < lo ? exact : lo;
            hi = exact > hi ? exact : hi;
            gap += exact - lb[i];
        }
        out.gap += gap / N / (hi - lo);
        out.count += N;
    }
    out.gap /= NQ;

    /* A residual that is not a finite non-negative number bounds nothing. */
    const float bad[] = {NAN, -1.0f, INFINITY};
    for (size_t b = 0; b < 3; b++) {
        float rr[1] = {bad[b]}, e[1];
        uint32_t id0[1] = {0};
        q->ops->scan(q, qs, store, 0, 1, e);
        q->ops->lower_bounds(q, qs, store, rr, id0, 1, e);
        assert_true(e[0] == -INFINITY);
        if (q->ops->refine_bounds != NULL) {
            q->ops->refine_bounds(q, qs, store, rr, id0, 1, e);
            assert_true(e[0] == -INFINITY);
        }
    }
    free(qs);
    free(est);
    free(lb);
    free(cheap);
    free(ids);
    free(resid);
    free(scratch);
    free(code);
    free(store);
    free(x);
    quant_free(q);
    return out;
}

static const char *const specs[] = {"sq8",   "tq2",  "tq4",    "tq8",
                                    "tqip3", "pq16", "pq16x4", "pq32x4"};
static const rotor_metric metrics[] = {ROTOR_METRIC_L2, ROTOR_METRIC_IP, ROTOR_METRIC_COSINE};

static void test_bounds_hold(void **state) {
    (void)state;
    ts_rng r;
    ts_rng_init(&r, 77);
    for (size_t s = 0; s < sizeof specs / sizeof specs[0]; s++)
        for (size_t m = 0; m < 3; m++) {
            bound_stats st = check_bounds(&r, specs[s], metrics[m]);
            print_message("%-7s %-6s %zu pairs, mean gap %.4f of the distance spread\n", specs[s],
                          rotor_metric_name(metrics[m]), st.count, st.gap);
            /* 8-bit codes bound within a few hundredths of the spread (under
             * IP and cosine these unit rows are nearly parallel, so the
             * spread itself is tiny). */
            if (metrics[m] == ROTOR_METRIC_L2 &&
                (strcmp(specs[s], "sq8") == 0 || strcmp(specs[s], "tq8") == 0))
                assert_true(st.gap < 0.05);
        }
}

/* Binary codes have no bound: the index keeps their fixed rerank depth. */
static void test_binary_codes_have_no_bound(void **state) {
    (void)state;
    rotor_allocator a = cm_allocator_default();
    const char *bin[] = {"bin1", "bin2", "bin1fs", "bin2fs"};
    for (size_t i = 0; i < 4; i++) {
        quant_spec sp;
        quant *q;
        assert_int_equal(quant_spec_parse(bin[i], &sp), ROTOR_OK);
        assert_int_equal(quant_create(&sp, D, ROTOR_METRIC_L2, 1, &a, &q), ROTOR_OK);
        assert_null(q->ops->residual);
        assert_null(q->ops->lower_bounds);
        quant_free(q);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bounds_hold),
        cmocka_unit_test(test_binary_codes_have_no_bound),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
