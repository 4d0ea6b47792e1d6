/*
 * Every no-training quantizer behind the common interface: specs parse and
 * refuse cleanly, codes round-trip through the store, the scan's estimates
 * agree with exact distances as closely as each code's distortion allows,
 * and the RaBitQ-corrected estimates (binary and TurboQuant) are unbiased
 * where a plain reconstruction is not.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "quant/bq_impl.h"
#include "quant/quant.h"
#include "support/support.h"

static void test_spec_parse_accepts_and_refuses(void **state) {
    (void)state;
    quant_spec s;
    char name[32];
    const char *good[] = {"tq1",    "tq8",    "tqip2", "tqip8", "bin1", "bin2",
                          "bin1fs", "bin2fs", "sq8",   "pq16",  "pq8x4"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        assert_int_equal(quant_spec_parse(good[i], &s), ROTOR_OK);
        quant_spec_name(&s, name, sizeof name);
        assert_string_equal(name, good[i]);
    }
    const char *bad[] = {"tq0", "tq9", "tqip1", "bin3",  "bin3fs", "bin1f", "sq4",
                         "sq",  "pq0", "pq",    "pq8x5", "x",      "",      "tq4 "};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(quant_spec_parse(bad[i], &s), ROTOR_ERR_INVALID_ARGUMENT);
        assert_non_null(strstr(rotor_last_error(), bad[i]));
    }
}

typedef struct estimate_stats {
    double rel_err_sd; /* of (estimate - exact) / (|q| |x|) for inner products */
    double bias;
} estimate_stats;

/* Encodes n random vectors (with a common offset, so inner products are
 * large and L2 centring matters),
 * scans them with q, and compares with exact inner products. */
static estimate_stats run(const char *spec, rotor_metric metric, size_t d, size_t n) {
    rotor_allocator a = cm_allocator_default();
    ts_rng r;
    ts_rng_init(&r, 21);
    quant_spec sp;
    assert_int_equal(quant_spec_parse(spec, &sp), ROTOR_OK);
    quant *q = NULL;
    assert_int_equal(quant_create(&sp, d, metric, 3, &a, &q), ROTOR_OK);
    float *x = malloc(n * d * sizeof(float));
    for (size_t i = 0; i < n * d; i++)
        x[i] = (float)ts_rng_normal(&r) + 1.0f;
    if (metric != ROTOR_METRIC_L2) /* IP and cosine indexes hold unit vectors */
        for (size_t i = 0; i < n; i++) {
            double s = 0;
            for (size_t j = 0; j < d; j++)
                s += (double)x[i * d + j] * x[i * d + j];
            for (size_t j = 0; j < d; j++)
                x[i * d + j] = (float)(x[i * d + j] / sqrt(s));
        }
    if (q->ops->train)
        assert_int_equal(q->ops->train(q, x, n, 1), ROTOR_OK);
    uint8_t *store = calloc(1, q->ops->store_bytes(q, n));
    uint8_t *code = malloc(q->code_bytes), *back = malloc(q->code_bytes);
    float *scratch = malloc(q->scratch_floats * sizeof(float));
    for (size_t i = 0; i < n; i++) {
        q->ops->encode(q, x + i * d, code, scratch);
        q->ops->store(q, store, i, code);
        q->ops->load(q, store, i, back);
        assert_memory_equal(code, back, q->code_bytes);
    }
    void *qs = aligned_alloc(64, cm_round_up(q->query_bytes, 64));
    float *est = malloc(n * sizeof(float));
    double sum = 0, sum2 = 0;
    size_t count = 0;
    float *qv = malloc(d * sizeof(float));
    for (int t = 0; t < 20; t++) {
        double qq = 0;
        for (size_t j = 0; j < d; j++) {
            qv[j] = (float)ts_rng_normal(&r) + 1.0f;
            qq += (double)qv[j] * qv[j];
        }
        if (metric != ROTOR_METRIC_L2) {
            for (size_t j = 0; j < d; j++)
                qv[j] = (float)(qv[j] / sqrt(qq));
            qq = 1;
        }
        q->ops->prepare(q, qv, qs, scratch);
        q->ops->scan(q, qs, store, 0, n, est);
        for (size_t i = 0; i < n; i++) {
            double ip = 0, xx = 0;
            for (size_t j = 0; j < d; j++) {
                ip += (double)qv[j] * x[i * d + j];
                xx += (double)x[i * d + j] * x[i * d + j];
            }
            double implied = metric == ROTOR_METRIC_L2   ? (xx + qq - est[i]) / 2
                             : metric == ROTOR_METRIC_IP ? -est[i]
                                                         : 1.0 - est[i];
            double e = (implied - ip) / sqrt(xx * qq);
            sum += e;
            sum2 += e * e;
            count++;
        }
    }
    estimate_stats out;
    out.bias = sum / (double)count;
    out.rel_err_sd = sqrt(sum2 / (double)count - out.bias * out.bias);
    free(qv);
    free(est);
    free(qs);
    free(scratch);
    free(code);
    free(back);
    free(store);
    free(x);
    quant_free(q);
    return out;
}

static void test_estimates_track_exact_distances(void **state) {
    (void)state;
    /* The spread of a TurboQuant estimate is about sqrt(D_mse / d) of |q||x|
     * (the error vector has squared norm D_mse |x|^2, spread over d
     * directions); at d = 128 that is 0.053 (1 bit) down to 0.0086 (4 bits).
     * The bounds below leave 50 % of margin; binary codes sit near
     * TurboQuant at the same bits. */
    struct {
        const char *spec;
        double max_sd;
    } cases[] = {{"tq1", 0.08},    {"tq2", 0.045},    {"tq4", 0.013}, {"tq8", 0.002},
                 {"tqip2", 0.09},  {"tqip4", 0.03},   {"bin1", 0.08}, {"bin2", 0.045},
                 {"bin1fs", 0.08}, {"bin2fs", 0.045}, {"sq8", 0.002}};
    rotor_metric metrics[] = {ROTOR_METRIC_L2, ROTOR_METRIC_IP, ROTOR_METRIC_COSINE};
    for (size_t m = 0; m < 3; m++)
        for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
            estimate_stats s = run(cases[c].spec, metrics[m], 128, 500);
            print_message("# %-6s %-6s bias %+.5f sd %.5f\n", cases[c].spec,
                          rotor_metric_name(metrics[m]), s.bias, s.rel_err_sd);
            assert_true(s.rel_err_sd < cases[c].max_sd);
        }
}

/* Mean of (<q, decode(x)> - <q, x>) / (|q| |x|): the estimate a plain
 * reconstruction gives, on the same offset unit vectors as run(). */
static double decoded_ip_bias(const char *spec, size_t d, size_t n) {
    rotor_allocator a = cm_allocator_default();
    ts_rng r;
    ts_rng_init(&r, 22);
    quant_spec sp;
    quant *q = NULL;
    assert_int_equal(quant_spec_parse(spec, &sp), ROTOR_OK);
    assert_int_equal(quant_create(&sp, d, ROTOR_METRIC_IP, 3, &a, &q), ROTOR_OK);
    float *x = malloc(d * sizeof(float)), *y = malloc(d * sizeof(float));
    float *qv = malloc(d * sizeof(float)), *scratch = malloc(q->scratch_floats * sizeof(float));
    uint8_t *code = malloc(q->code_bytes);
    double sum = 0;
    for (size_t i = 0; i < n; i++) {
        double xx = 0, qq = 0;
        for (size_t j = 0; j < d; j++) {
            x[j] = (float)ts_rng_normal(&r) + 1.0f;
            qv[j] = (float)ts_rng_normal(&r) + 1.0f;
            xx += (double)x[j] * x[j];
            qq += (double)qv[j] * qv[j];
        }
        q->ops->encode(q, x, code, scratch);
        q->ops->decode(q, code, y, scratch);
        double exact = 0, plain = 0;
        for (size_t j = 0; j < d; j++) {
            exact += (double)qv[j] * x[j];
            plain += (double)qv[j] * y[j];
        }
        sum += (plain - exact) / sqrt(xx * qq);
    }
    free(x);
    free(y);
    free(qv);
    free(scratch);
    free(code);
    quant_free(q);
    return sum / (double)n;
}

static void test_scan_estimates_are_unbiased_unlike_plain_reconstruction(void **state) {
    (void)state;
    /* A reconstruction from nearest codewords is shorter than the vector
     * (the centroids are conditional means), so <q, x^> shrinks inner
     * products: on these offset vectors (inner products near 0.5) 1-bit
     * codes keep only ~2/pi of them. The scan instead divides by each
     * vector's own <u, u^> (RaBitQ's correction), for binary and TurboQuant
     * codes alike. Over 20 x 500 pairs the mean relative error of an
     * unbiased estimator with sd <= 0.07 stays within
     * 5 / sqrt(10000) * 0.07 = 0.0035 (the pairs share queries, so this is
     * generous rather than exact). */
    estimate_stats b1 = run("bin1", ROTOR_METRIC_IP, 128, 500);
    estimate_stats b2 = run("bin2", ROTOR_METRIC_IP, 128, 500);
    estimate_stats f1 = run("bin1fs", ROTOR_METRIC_IP, 128, 500);
    estimate_stats f2 = run("bin2fs", ROTOR_METRIC_IP, 128, 500);
    estimate_stats t1 = run("tq1", ROTOR_METRIC_IP, 128, 500);
    estimate_stats t2 = run("tq2", ROTOR_METRIC_IP, 128, 500);
    double plain1 = decoded_ip_bias("tq1", 128, 500);
    print_message("# mean relative error: bin1 %+.5f bin2 %+.5f bin1fs %+.5f bin2fs %+.5f "
                  "tq1 %+.5f tq2 %+.5f, tq1 reconstruction %+.5f\n",
                  b1.bias, b2.bias, f1.bias, f2.bias, t1.bias, t2.bias, plain1);
    assert_true(fabs(b1.bias) < 0.0035);
    assert_true(fabs(b2.bias) < 0.0035);
    assert_true(fabs(f1.bias) < 0.0035);
    assert_true(fabs(f2.bias) < 0.0035);
    assert_true(fabs(t1.bias) < 0.0035);
    assert_true(fabs(t2.bias) < 0.0035);
    assert_true(plain1 < -0.1);
}

static void test_decode_error_matches_distortion(void **state) {
    (void)state;
    rotor_allocator a = cm_allocator_default();
    ts_rng r;
    ts_rng_init(&r, 8);
    const size_t d = 256;
    struct {
        const char *spec;
        double lo, hi;
    } cases[] = {{"tq2", 0.10, 0.13},
                 {"tq4", 0.008, 0.011},
                 {"bin1", 0.30, 0.42},
                 {"bin2", 0.10, 0.13},
                 {"bin1fs", 0.30, 0.42},
                 {"bin2fs", 0.10, 0.13},
                 /* a grid of 255 steps over +-3 sd: (6 / 255)^2 / 12 per unit variance */
                 {"sq8", 2e-5, 1e-4}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        quant_spec sp;
        quant *q;
        assert_int_equal(quant_spec_parse(cases[c].spec, &sp), ROTOR_OK);
        assert_int_equal(quant_create(&sp, d, ROTOR_METRIC_IP, 5, &a, &q), ROTOR_OK);
        float x[256], y[256];
        float *scratch = malloc(q->scratch_floats * sizeof(float));
        uint8_t *code = malloc(q->code_bytes);
        double total = 0;
        for (int v = 0; v < 200; v++) {
            for (size_t j = 0; j < d; j++)
                x[j] = (float)ts_rng_normal(&r);
            q->ops->encode(q, x, code, scratch);
            q->ops->decode(q, code, y, scratch);
            double e = 0, n2 = 0;
            for (size_t j = 0; j < d; j++) {
                e += ((double)x[j] - y[j]) * ((double)x[j] - y[j]);
                n2 += (double)x[j] * x[j];
            }
            total += e / n2;
        }
        double mse = total / 200;
        print_message("# decode %-5s relative mse %.5f\n", cases[c].spec, mse);
        assert_true(mse > cases[c].lo && mse < cases[c].hi);
        free(scratch);
        free(code);
        quant_free(q);
    }
}

/* The fast-scan binary scan is RaBitQ's estimate mult * <v, q'> with
 * <v, q'> summed from uint8 tables, so it lies within mult * fields *
 * delta / 2 of the same sum in double: checked for both widths, every
 * metric, ranges of ids that start and end inside blocks, and dimensions
 * that leave the last 4-bit field partly empty. */
static void test_binary_fastscan_within_table_rounding_of_exact_sum(void **state) {
    (void)state;
    rotor_allocator a = cm_allocator_default();
    ts_rng r;
    ts_rng_init(&r, 31);
    const size_t n = 100, first = 5;
    const size_t dims[] = {128, 131, 10};
    const rotor_metric metrics[] = {ROTOR_METRIC_L2, ROTOR_METRIC_IP, ROTOR_METRIC_COSINE};
    for (unsigned bits = 1; bits <= 2; bits++)
        for (size_t di = 0; di < 3; di++)
            for (size_t mi = 0; mi < 3; mi++) {
                const size_t d = dims[di];
                quant_spec sp;
                quant *q;
                assert_int_equal(quant_spec_parse(bits == 1 ? "bin1fs" : "bin2fs", &sp), ROTOR_OK);
                assert_int_equal(quant_create(&sp, d, metrics[mi], 9, &a, &q), ROTOR_OK);
                const bq_state *s = q->impl;
                float *x = malloc(n * d * sizeof(float)), *qv = malloc(d * sizeof(float));
                float *rot = malloc(d * sizeof(float)), *diff = malloc(d * sizeof(float));
                float *scratch = malloc(q->scratch_floats * sizeof(float));
                float *est = malloc(n * sizeof(float));
                uint8_t *codes = malloc(n * q->code_bytes);
                uint8_t *store = calloc(1, q->ops->store_bytes(q, n));
                void *qs = aligned_alloc(64, cm_round_up(q->query_bytes, 64));
                for (size_t i = 0; i < n * d; i++)
                    x[i] = (float)ts_rng_normal(&r) + 0.5f;
                for (size_t j = 0; j < d; j++)
                    qv[j] = (float)ts_rng_normal(&r) + 0.5f;
                if (metrics[mi] != ROTOR_METRIC_L2) { /* unit rows, as such indexes hold */
                    for (size_t i = 0; i <= n; i++) {
                        float *v = i < n ? x + i * d : qv;
                        double ss = 0;
                        for (size_t j = 0; j < d; j++)
                            ss += (double)v[j] * v[j];
                        for (size_t j = 0; j < d; j++)
                            v[j] = (float)(v[j] / sqrt(ss));
                    }
                }
                assert_int_equal(q->ops->train(q, x, n, 1), ROTOR_OK);
                for (size_t i = 0; i < n; i++) {
                    q->ops->encode(q, x + i * d, codes + i * q->code_bytes, scratch);
                    q->ops->store(q, store, i, codes + i * q->code_bytes);
                }
                q->ops->prepare(q, qv, qs, scratch);
                q->ops->scan(q, qs, store, first, n - first, est);
                const bqfs_qhead *h = qs;
                double qq = 0;
                for (size_t j = 0; j < d; j++) {
                    diff[j] = qv[j] - s->centroid[j];
                    qq += (double)diff[j] * diff[j];
                }
                rht_forward(&s->rot, diff, rot);
                for (size_t i = first; i < n; i++) {
                    const uint8_t *code = codes + i * q->code_bytes;
                    float f[5];
                    memcpy(f, code, s->nfloats * sizeof(float));
                    const uint8_t *sign = code + s->nfloats * sizeof(float);
                    const uint8_t *mag = sign + s->plane_bytes;
                    double vq = 0;
                    for (size_t j = 0; j < d; j++) {
                        double v = (sign[j / 8] >> (j % 8)) & 1 ? 1.0 : -1.0;
                        if (bits == 2)
                            v *= (mag[j / 8] >> (j % 8)) & 1 ? s->c1 : s->c0;
                        vq += v * rot[j];
                    }
                    const double ip = f[1] * vq;
                    const double ref = metrics[mi] == ROTOR_METRIC_L2
                                           ? (double)f[0] * f[0] + qq - 2 * ip
                                       : metrics[mi] == ROTOR_METRIC_IP ? -ip
                                                                        : 1 - ip;
                    double bound = fabs(f[1]) * (double)s->groups * h->delta / 2;
                    if (metrics[mi] == ROTOR_METRIC_L2)
                        bound *= 2;
                    const double err = fabs(est[i - first] - ref);
                    if (err > bound + 1e-4 * (1 + fabs(ref)))
                        fail_msg("bin%ufs d=%zu %s vector %zu: estimate %g, exact sum %g, bound %g",
                                 bits, d, rotor_metric_name(metrics[mi]), i, est[i - first], ref,
                                 bound);
                }
                free(x);
                free(qv);
                free(rot);
                free(diff);
                free(scratch);
                free(est);
                free(codes);
                free(store);
                free(qs);
                quant_free(q);
            }
}

static void test_sq8_refuses_dimensions_its_integer_sum_cannot_hold(void **state) {
    (void)state;
    rotor_allocator a = cm_allocator_default();
    quant_spec sp;
    quant *q = NULL;
    assert_int_equal(quant_spec_parse("sq8", &sp), ROTOR_OK);
    assert_int_equal(quant_create(&sp, 65537, ROTOR_METRIC_IP, 1, &a, &q), ROTOR_ERR_DIMENSION);
    assert_null(q);
    assert_non_null(strstr(rotor_last_error(), "65536"));
    assert_int_equal(quant_create(&sp, 65536, ROTOR_METRIC_IP, 1, &a, &q), ROTOR_OK);
    quant_free(q);
}

/* One rotation serves quantizers that rotate alike: prepare_rotated on
 * quant_rotate_query's output writes the very bytes prepare does, for every
 * kind with a rotation; equal seeds and centres rotate alike, another seed
 * or another centre (training on other rows) does not, and kinds without a
 * rotation (PQ) never do. */
static void test_one_rotation_prepares_every_kind_alike(void **state) {
    (void)state;
    rotor_allocator a = cm_allocator_default();
    ts_rng r;
    ts_rng_init(&r, 29);
    const size_t d = 100, n = 64;
    float *x = malloc(n * d * sizeof(float));
    for (size_t i = 0; i < n * d; i++)
        x[i] = (float)ts_rng_normal(&r) + 0.5f;
    const char *specs[] = {"bin1", "bin2", "bin1fs", "bin2fs", "sq8"};
    quant *qs[5];
    for (size_t t = 0; t < 5; t++) {
        quant_spec sp;
        assert_int_equal(quant_spec_parse(specs[t], &sp), ROTOR_OK);
        assert_int_equal(quant_create(&sp, d, ROTOR_METRIC_L2, 7, &a, &qs[t]), ROTOR_OK);
        assert_int_equal(qs[t]->ops->train(qs[t], x, n, 1), ROTOR_OK);
        assert_non_null(qs[t]->ops->rotation);
        assert_non_null(qs[t]->ops->prepare_rotated);
        float *scratch = malloc(qs[t]->scratch_floats * sizeof(float));
        float *rot = malloc(d * sizeof(float));
        uint8_t *want = calloc(1, qs[t]->query_bytes), *got = calloc(1, qs[t]->query_bytes);
        const float *query = x + 5 * d;
        qs[t]->ops->prepare(qs[t], query, want, scratch);
        const double qq = quant_rotate_query(qs[t], query, scratch, rot);
        qs[t]->ops->prepare_rotated(qs[t], rot, qq, got, scratch);
        assert_memory_equal(got, want, qs[t]->query_bytes);
        free(scratch);
        free(rot);
        free(want);
        free(got);
    }
    for (size_t t = 1; t < 5; t++)
        assert_true(quant_same_rotation(qs[0], qs[t]));
    quant_spec sp;
    quant *other_seed = NULL, *other_centre = NULL, *pq = NULL;
    assert_int_equal(quant_spec_parse("sq8", &sp), ROTOR_OK);
    assert_int_equal(quant_create(&sp, d, ROTOR_METRIC_L2, 8, &a, &other_seed), ROTOR_OK);
    assert_int_equal(other_seed->ops->train(other_seed, x, n, 1), ROTOR_OK);
    assert_false(quant_same_rotation(qs[0], other_seed));
    assert_int_equal(quant_create(&sp, d, ROTOR_METRIC_L2, 7, &a, &other_centre), ROTOR_OK);
    assert_int_equal(other_centre->ops->train(other_centre, x, n / 2, 1), ROTOR_OK);
    assert_false(quant_same_rotation(qs[0], other_centre));
    assert_int_equal(quant_spec_parse("pq25x4", &sp), ROTOR_OK);
    assert_int_equal(quant_create(&sp, d, ROTOR_METRIC_L2, 7, &a, &pq), ROTOR_OK);
    assert_false(quant_same_rotation(qs[0], pq));
    assert_false(quant_same_rotation(pq, pq));
    quant_free(other_seed);
    quant_free(other_centre);
    quant_free(pq);
    for (size_t t = 0; t < 5; t++)
        quant_free(qs[t]);
    free(x);
}

/* quant_sq8_l2_ids is quant_sq8_l2 of each picked code, bit for bit:
 * codes of several dimensions (around the kernels' steps of 16 and 64)
 * each followed by its norm at a stride of whole lines, as a build lays
 * them out, ids repeated and out of order, counts past a chunk of 64. */
static void test_sq8_l2_ids_equals_pairs(void **state) {
    (void)state;
    rotor_allocator a = cm_allocator_default();
    ts_rng r;
    ts_rng_init(&r, 43);
    static const size_t dims[] = {1, 17, 25, 64, 100, 131};
    enum { N = 90, PICKS = 150 };
    for (size_t di = 0; di < sizeof dims / sizeof dims[0]; di++) {
        const size_t d = dims[di];
        float *x = malloc(N * d * sizeof(float));
        for (size_t i = 0; i < N * d; i++)
            x[i] = (float)ts_rng_normal(&r) * (i % 3 ? 1.0f : 4.0f);
        quant_spec sp;
        quant *q = NULL;
        assert_int_equal(quant_spec_parse("sq8", &sp), ROTOR_OK);
        assert_int_equal(quant_create(&sp, d, ROTOR_METRIC_L2, 5, &a, &q), ROTOR_OK);
        assert_int_equal(q->ops->train(q, x, N, 1), ROTOR_OK);
        const size_t stride = (q->code_bytes + sizeof(float) + 63) / 64 * 64;
        uint8_t *store = calloc(N, stride);
        float *scratch = malloc(q->scratch_floats * sizeof(float));
        for (size_t i = 0; i < N; i++) {
            uint8_t *c = store + i * stride;
            q->ops->encode(q, x + i * d, c, scratch);
            const float norm2 = quant_sq8_norm2(q, c);
            memcpy(c + q->code_bytes, &norm2, sizeof norm2);
        }
        uint32_t ids[PICKS];
        float out[PICKS];
        uint8_t *bytes = malloc(d);
        for (size_t i = 0; i < PICKS; i++)
            ids[i] = (uint32_t)(ts_rng_next(&r) % N);
        for (size_t u = 0; u < N; u += 7) {
            const uint8_t *cu = store + u * stride;
            float nu;
            memcpy(&nu, cu + q->code_bytes, sizeof nu);
            const size_t n = u % 2 ? PICKS : u % 5;
            quant_sq8_l2_ids(q, cu, nu, store, stride, ids, n, bytes, out);
            for (size_t i = 0; i < n; i++) {
                const uint8_t *cv = store + ids[i] * stride;
                float nv;
                memcpy(&nv, cv + q->code_bytes, sizeof nv);
                const float want = quant_sq8_l2(q, cu, nu, cv, nv);
                assert_memory_equal(&out[i], &want, sizeof want);
            }
        }
        free(bytes);
        free(scratch);
        free(store);
        quant_free(q);
        free(x);
    }
}

/* Code against code: quant_sq8_l2 of two encoded vectors, with their
 * quant_sq8_norm2, is within a rounding of the exact squared distance for
 * far pairs and for near ones (a point and a copy moved by 5 %, the pairs
 * a build's prunes compare): the error shrinks with the pair's distance
 * instead of staying a fraction of the norms. It is symmetric, and a code
 * against itself is 0. */
static void test_sq8_code_distance_tracks_exact_distance(void **state) {
    (void)state;
    rotor_allocator a = cm_allocator_default();
    ts_rng r;
    ts_rng_init(&r, 41);
    const size_t d = 200, n = 400;
    float *x = malloc(n * d * sizeof(float));
    for (size_t i = 0; i < n / 2 * d; i++)
        x[i] = (float)ts_rng_normal(&r) + 1.0f;
    for (size_t i = n / 2 * d; i < n * d; i++) /* row i + n/2 is row i moved a little */
        x[i] = x[i - n / 2 * d] + 0.05f * (float)ts_rng_normal(&r);
    quant_spec sp;
    quant *q = NULL;
    assert_int_equal(quant_spec_parse("sq8", &sp), ROTOR_OK);
    assert_int_equal(quant_create(&sp, d, ROTOR_METRIC_L2, 3, &a, &q), ROTOR_OK);
    assert_int_equal(q->ops->train(q, x, n, 1), ROTOR_OK);
    uint8_t *codes = malloc(n * q->code_bytes);
    float *norm2 = malloc(n * sizeof(float));
    float *scratch = malloc(q->scratch_floats * sizeof(float));
    for (size_t i = 0; i < n; i++) {
        q->ops->encode(q, x + i * d, codes + i * q->code_bytes, scratch);
        norm2[i] = quant_sq8_norm2(q, codes + i * q->code_bytes);
    }
    double worst_near = 0.0, worst_far = 0.0;
    for (size_t i = 0; i < n / 2; i++) {
        const size_t pairs[2][2] = {{i, i + n / 2}, {i, (i + 7) % (n / 2)}};
        for (size_t k = 0; k < 2; k++) {
            const size_t u = pairs[k][0], v = pairs[k][1];
            double exact = 0.0;
            for (size_t j = 0; j < d; j++)
                exact += (double)(x[u * d + j] - x[v * d + j]) * (x[u * d + j] - x[v * d + j]);
            const uint8_t *cu = codes + u * q->code_bytes, *cv = codes + v * q->code_bytes;
            const float est = quant_sq8_l2(q, cu, norm2[u], cv, norm2[v]);
            assert_true(est == quant_sq8_l2(q, cv, norm2[v], cu, norm2[u]));
            double *worst = k == 0 ? &worst_near : &worst_far;
            *worst = fmax(*worst, fabs(est - exact) / exact);
        }
        const uint8_t *ci = codes + i * q->code_bytes;
        assert_true(quant_sq8_l2(q, ci, norm2[i], ci, norm2[i]) == 0.0f);
    }
    print_message("# worst relative error: near %.4f far %.4f\n", worst_near, worst_far);
    /* Near pairs are 0.5 apart squared against squared norms of 200: the
     * stored norms' form, t_a^2 + t_b^2 - 2 t_a t_b <u_a, u_b>, misses by
     * some 2e-3 of the norms there, most of the distance itself. */
    assert_true(worst_near < 0.25);
    assert_true(worst_far < 0.01);
    free(scratch);
    free(norm2);
    free(codes);
    quant_free(q);
    free(x);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spec_parse_accepts_and_refuses),
        cmocka_unit_test(test_estimates_track_exact_distances),
        cmocka_unit_test(test_scan_estimates_are_unbiased_unlike_plain_reconstruction),
        cmocka_unit_test(test_decode_error_matches_distortion),
        cmocka_unit_test(test_binary_fastscan_within_table_rounding_of_exact_sum),
        cmocka_unit_test(test_sq8_refuses_dimensions_its_integer_sum_cannot_hold),
        cmocka_unit_test(test_one_rotation_prepares_every_kind_alike),
        cmocka_unit_test(test_sq8_code_distance_tracks_exact_distance),
        cmocka_unit_test(test_sq8_l2_ids_equals_pairs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
