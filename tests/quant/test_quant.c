/*
 * Rotation and TurboQuant: the rotation is orthogonal and reproducible, the
 * codebooks match the known Lloyd-Max distortions, and encoding random unit
 * vectors reaches the distortion TurboQuant promises.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "quant/quant.h"
#include "support/support.h"

static void test_rht_preserves_norms_and_inverts(void **state) {
    (void)state;
    rotor_allocator a = cm_allocator_default();
    ts_rng r;
    ts_rng_init(&r, 1);
    size_t dims[] = {1, 2, 3, 7, 64, 100, 128, 384, 784, 1536};
    for (size_t t = 0; t < sizeof dims / sizeof dims[0]; t++) {
        size_t d = dims[t];
        rht rot;
        assert_int_equal(rht_init(&rot, &a, d, 3, 99), ROTOR_OK);
        assert_int_equal(rot.n, d);
        assert_true((rot.h & (rot.h - 1)) == 0 && rot.h <= d && 2 * rot.h > d);
        float *x = malloc(d * sizeof(float)), *y = malloc(rot.n * sizeof(float));
        float *back = malloc(d * sizeof(float));
        for (size_t j = 0; j < d; j++)
            x[j] = (float)ts_rng_normal(&r);
        rht_forward(&rot, x, y);
        double nx = 0, ny = 0, err = 0;
        for (size_t j = 0; j < d; j++)
            nx += (double)x[j] * x[j];
        for (size_t j = 0; j < rot.n; j++)
            ny += (double)y[j] * y[j];
        assert_true(fabs(nx - ny) <= 1e-5 * nx);
        rht_inverse(&rot, y, back);
        for (size_t j = 0; j < d; j++)
            err = fmax(err, fabs((double)back[j] - x[j]));
        assert_true(err <= 1e-5 * sqrt(nx));
        free(x);
        free(y);
        free(back);
        rht_release(&rot, &a);
    }
}

static void test_rht_is_determined_by_seed(void **state) {
    (void)state;
    rotor_allocator a = cm_allocator_default();
    rht r1, r2, r3;
    assert_int_equal(rht_init(&r1, &a, 300, 3, 7), ROTOR_OK);
    assert_int_equal(rht_init(&r2, &a, 300, 3, 7), ROTOR_OK);
    assert_int_equal(rht_init(&r3, &a, 300, 3, 8), ROTOR_OK);
    assert_memory_equal(r1.signs, r2.signs, 3 * 2 * r1.n * sizeof(float));
    assert_memory_not_equal(r1.signs, r3.signs, 3 * 2 * r1.n * sizeof(float));
    rht_release(&r1, &a);
    rht_release(&r2, &a);
    rht_release(&r3, &a);
    assert_int_equal(rht_init(&r1, &a, 0, 3, 7), ROTOR_ERR_DIMENSION);
    assert_int_equal(rht_init(&r1, &a, 10, 0, 7), ROTOR_ERR_INVALID_ARGUMENT);
}

/* Max (1960) Gaussian Lloyd-Max distortions, b = 1..4. */
static const double gaussian_mse[] = {0.3634, 0.1175, 0.0345, 0.0095};

static void test_codebook_converges_to_gaussian_lloyd_max(void **state) {
    (void)state;
    rotor_allocator a = cm_allocator_default();
    tq_codebook cb;
    for (unsigned b = 1; b <= 4; b++) {
        assert_int_equal(tq_codebook_solve(&a, b, (size_t)1 << 20, &cb), ROTOR_OK);
        assert_true(fabs(cb.mse - gaussian_mse[b - 1]) <= 0.002 * gaussian_mse[b - 1] + 5e-5);
        for (unsigned j = 0; j < cb.levels; j++)
            assert_true(cb.centroid[j] == -cb.centroid[cb.levels - 1 - j]);
        for (unsigned j = 0; j + 1 < cb.levels; j++)
            assert_true(cb.centroid[j] < cb.boundary[j] && cb.boundary[j] < cb.centroid[j + 1]);
    }
    /* Known Gaussian levels: +-0.7979 at 1 bit, outermost 2.7326 at 4 bits. */
    assert_int_equal(tq_codebook_solve(&a, 1, (size_t)1 << 20, &cb), ROTOR_OK);
    assert_true(fabs(cb.centroid[1] - 0.7979) < 1e-3);
    assert_int_equal(tq_codebook_solve(&a, 4, (size_t)1 << 20, &cb), ROTOR_OK);
    assert_true(fabs(cb.centroid[15] - 2.7326) < 2e-3);
    assert_int_equal(tq_codebook_solve(&a, 0, 128, &cb), ROTOR_ERR_INVALID_ARGUMENT);
    assert_int_equal(tq_codebook_solve(&a, 9, 128, &cb), ROTOR_ERR_INVALID_ARGUMENT);
    assert_int_equal(tq_codebook_solve(&a, 2, 1, &cb), ROTOR_ERR_DIMENSION);
}

static void test_tq_mse_within_paper_bound(void **state) {
    (void)state;
    /* The bar: the distortion of random unit vectors within 5 % of
     * the Gaussian Lloyd-Max figure for b = 1..4, at the dimensions
     * embeddings come in. With 200 vectors of >= 128 coordinates the
     * sampling error of the mean is well under 1 %. */
    rotor_allocator a = cm_allocator_default();
    ts_rng r;
    ts_rng_init(&r, 2);
    size_t dims[] = {128, 384, 768, 1536};
    enum { VECTORS = 200 };
    for (size_t t = 0; t < 4; t++) {
        size_t d = dims[t];
        double prev = 0;
        for (unsigned b = 1; b <= 4; b++) {
            tq q;
            assert_int_equal(tq_init(&q, &a, d, b, 1234), ROTOR_OK);
            float *x = malloc(d * sizeof(float)), *y = malloc(d * sizeof(float));
            float *scratch = malloc(q.rot.n * sizeof(float));
            uint8_t *code = malloc(q.code_bytes);
            double total = 0;
            for (int v = 0; v < VECTORS; v++) {
                double ss = 0;
                for (size_t j = 0; j < d; j++) {
                    x[j] = (float)ts_rng_normal(&r);
                    ss += (double)x[j] * x[j];
                }
                for (size_t j = 0; j < d; j++)
                    x[j] = (float)(x[j] / sqrt(ss));
                float norm;
                tq_encode(&q, x, scratch, code, &norm, NULL);
                tq_decode(&q, code, norm, scratch, y);
                double e = 0;
                for (size_t j = 0; j < d; j++)
                    e += ((double)x[j] - y[j]) * ((double)x[j] - y[j]);
                total += e;
            }
            double mse = total / VECTORS;
            print_message("# d=%zu b=%u mse=%.5f (Gaussian Lloyd-Max %.4f)\n", d, b, mse,
                          gaussian_mse[b - 1]);
            assert_true(fabs(mse - gaussian_mse[b - 1]) <= 0.05 * gaussian_mse[b - 1]);
            if (b > 1) /* each further bit divides the distortion by 3.1 to 4 */
                assert_true(prev / mse > 3.0 && prev / mse < 4.1);
            prev = mse;
            free(x);
            free(y);
            free(scratch);
            free(code);
            tq_release(&q, &a);
        }
    }
}

static void test_rotation_spreads_spiky_vectors(void **state) {
    (void)state;
    /* One-hot and two-hot inputs are the worst case for a structured
     * rotation; after three rounds their rotated coordinates must quantize
     * as well as those of random vectors (within 10 % at 2 bits). */
    rotor_allocator a = cm_allocator_default();
    ts_rng r;
    ts_rng_init(&r, 3);
    size_t dims[] = {100, 384, 768};
    for (size_t t = 0; t < 3; t++) {
        size_t d = dims[t];
        tq q;
        assert_int_equal(tq_init(&q, &a, d, 2, 77), ROTOR_OK);
        float *x = calloc(d, sizeof(float)), *y = malloc(d * sizeof(float));
        float *scratch = malloc(d * sizeof(float));
        uint8_t *code = malloc(q.code_bytes);
        double total = 0;
        enum { VECTORS = 300 };
        for (int v = 0; v < VECTORS; v++) {
            memset(x, 0, d * sizeof(float));
            size_t i = ts_rng_next(&r) % d, j = ts_rng_next(&r) % d;
            x[i] = 1.0f;
            if (v % 2)
                x[j] = (i == j) ? 1.0f : 0.5f;
            double ss = 0;
            for (size_t c = 0; c < d; c++)
                ss += (double)x[c] * x[c];
            float norm;
            tq_encode(&q, x, scratch, code, &norm, NULL);
            tq_decode(&q, code, norm, scratch, y);
            double e = 0;
            for (size_t c = 0; c < d; c++)
                e += ((double)x[c] - y[c]) * ((double)x[c] - y[c]);
            total += e / ss;
        }
        double mse = total / VECTORS;
        print_message("# spiky d=%zu b=2 mse=%.5f\n", d, mse);
        assert_true(fabs(mse - gaussian_mse[1]) <= 0.10 * gaussian_mse[1]);
        free(x);
        free(y);
        free(scratch);
        free(code);
        tq_release(&q, &a);
    }
}

static void random_unit(ts_rng *r, float *x, size_t d) {
    double ss = 0;
    for (size_t j = 0; j < d; j++) {
        x[j] = (float)ts_rng_normal(r);
        ss += (double)x[j] * x[j];
    }
    for (size_t j = 0; j < d; j++)
        x[j] = (float)(x[j] / sqrt(ss));
}

static void test_tq_ip_is_unbiased_and_mse_is_not(void **state) {
    (void)state;
    /* Pairs with <y, x> = 0.7 (y = 0.7 x + a unit-norm orthogonal part
     * scaled to |y| = 1). TurboQuant's Theorem 2 bounds the variance of one
     * estimate by (pi / 2d) |r|^2 |y|^2, about 1.6e-3 at d = 128 with a
     * 2-bit MSE stage (|r|^2 ~ 0.117), so the mean of 4000 errors has a
     * standard deviation under 7e-4: a tolerance of 4e-3 is over five of
     * them. The MSE estimate alone shrinks by its distortion, ~0.117 * 0.7 =
     * 0.08, far outside that. */
    rotor_allocator a = cm_allocator_default();
    ts_rng r;
    ts_rng_init(&r, 4);
    enum { D = 128, PAIRS = 4000 };
    tq_ip q;
    assert_int_equal(tq_ip_init(&q, &a, D, 3, 555), ROTOR_OK);
    float x[D], y[D], w[D], scratch[2 * D], yr[D], ys[D];
    uint8_t code[D], signs[D / 8];
    tq_ip_query qp = {yr, ys, 0};
    double err_ip = 0, err_mse = 0;
    for (int p = 0; p < PAIRS; p++) {
        random_unit(&r, x, D);
        random_unit(&r, w, D);
        double wx = 0;
        for (size_t j = 0; j < D; j++)
            wx += (double)w[j] * x[j];
        double wn = 0;
        for (size_t j = 0; j < D; j++) {
            w[j] = (float)(w[j] - wx * x[j]);
            wn += (double)w[j] * w[j];
        }
        double exact = 0;
        for (size_t j = 0; j < D; j++) {
            y[j] = (float)(0.7 * x[j] + sqrt(1 - 0.49) * w[j] / sqrt(wn));
            exact += (double)y[j] * x[j];
        }
        float norm, gamma;
        tq_ip_encode(&q, x, scratch, code, signs, &norm, &gamma);
        tq_ip_prepare(&q, y, &qp);
        err_ip += tq_ip_estimate(&q, &qp, code, signs, norm, gamma) - exact;
        err_mse += tq_mse_estimate(&q.mse, yr, code, norm) - exact;
    }
    err_ip /= PAIRS;
    err_mse /= PAIRS;
    print_message("# mean error: inner-product variant %+.5f, MSE variant %+.5f\n", err_ip,
                  err_mse);
    assert_true(fabs(err_ip) < 4e-3);
    assert_true(err_mse < -0.05);
    tq_ip_release(&q, &a);
    assert_int_equal(tq_ip_init(&q, &a, D, 1, 555), ROTOR_ERR_INVALID_ARGUMENT);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rht_preserves_norms_and_inverts),
        cmocka_unit_test(test_rht_is_determined_by_seed),
        cmocka_unit_test(test_codebook_converges_to_gaussian_lloyd_max),
        cmocka_unit_test(test_tq_mse_within_paper_bound),
        cmocka_unit_test(test_rotation_spreads_spiky_vectors),
        cmocka_unit_test(test_tq_ip_is_unbiased_and_mse_is_not),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
