/*
 * The distance kernels of every SIMD level this machine runs, checked against
 * the scalar reference and against double-precision (or 64-bit integer)
 * arithmetic, and the dispatch that chooses among them.
 *
 * The kernel group runs once per level (scalar, avx2, avx512); a level the
 * CPU or OS cannot run is reported as skipped, test by test. Inputs are
 * random (seeded, see ROTOR_TEST_SEED) over lengths chosen around every
 * block size the kernels use (8, 16, 32, 64, 128) and typical embedding
 * sizes, at pointers misaligned by 1-3 floats or 1-63 bytes. Each array ends
 * exactly where its allocation ends, so AddressSanitizer reports any read
 * past the last element.
 *
 * The dispatch group reads ROTOR_SIMD: ctest runs it unset, set to "scalar"
 * and set to a bogus word (tests/simd/CMakeLists.txt). Pass --dispatch-only
 * to run just that group.
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "simd/simd.h"
#include "support/support.h"

/* ---- tolerances ----------------------------------------------------------
 *
 * A float sum of d terms computed in any order is within about
 * (d_chain) * 2^-24 * sum(|terms|) of the exact sum in the worst case, where
 * d_chain is the longest chain of additions (d for the scalar loop); with
 * round-to-nearest the errors are nearly independent and the typical error is
 * about sqrt(d_chain) * 2^-24 * sum(|terms|): 2.3e-6 for d = 1536. We allow
 * REL_TOL = 1e-5 of sum(|terms|) against the exact (double) value, four
 * times that, and twice as much between two float results, since each may
 * be off by the bound in opposite directions. A kernel that drops or repeats
 * one element of random data is off by about sum(|terms|) / d >= 6.5e-4 of
 * it, far outside.
 *
 * The cosine is dot / sqrt(|a|^2 |b|^2): the dot is off by REL_TOL *
 * sum|a_i b_i| <= REL_TOL * |a| |b| (Cauchy-Schwarz), each squared norm by
 * REL_TOL of itself, halved by the square root; so the cosine, and 1 minus
 * it, is within 2 * REL_TOL, plus the float rounding of the result.
 *
 * Integer and popcount kernels must match exactly, and the _rows and _x4
 * forms must match the single-pair kernel of their level bit for bit (their
 * accumulation order is the same by design; see the kernel files).
 */
#define REL_TOL 1e-5
#define COS_TOL (2 * REL_TOL + 1e-7)

static const size_t dims[] = {0,  1,  2,   3,   7,   8,   15,  16,  17,  31,  32,  33,   63,
                              64, 65, 127, 128, 129, 255, 256, 257, 384, 768, 784, 1000, 1536};
#define N_DIMS (sizeof(dims) / sizeof(dims[0]))

/* Misalignments of the two operands, in elements (floats) or bytes. */
static const size_t float_offsets[][2] = {{0, 0}, {1, 2}, {3, 1}, {2, 3}};
#define N_FLOAT_OFFSETS (sizeof(float_offsets) / sizeof(float_offsets[0]))
static const size_t byte_offsets[][2] = {{0, 0}, {1, 0}, {7, 33}, {31, 63}, {63, 5}};
#define N_BYTE_OFFSETS (sizeof(byte_offsets) / sizeof(byte_offsets[0]))

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            print_message(__VA_ARGS__);                                                            \
            fail_msg("check failed: %s", #cond);                                                   \
        }                                                                                          \
    } while (0)

/* ---- buffers ------------------------------------------------------------ */

/* `bytes` bytes starting `offset` bytes past a 64-byte boundary and ending at
 * the end of their allocation. */
typedef struct tbuf {
    void *base;
    void *p;
} tbuf;

static tbuf tbuf_make(size_t offset, size_t bytes) {
    tbuf b = {NULL, NULL};
    size_t total = offset + bytes;
    assert_int_equal(posix_memalign(&b.base, 64, total > 0 ? total : 1), 0);
    b.p = (char *)b.base + offset;
    return b;
}

static void tbuf_free(tbuf *b) { free(b->base); }

static tbuf floats_random(ts_rng *rng, size_t offset, size_t d) {
    tbuf b = tbuf_make(offset * sizeof(float), d * sizeof(float));
    ts_fill_uniform(rng, b.p, d, -1.0f, 1.0f);
    return b;
}

static tbuf bytes_random(ts_rng *rng, size_t offset, size_t n) {
    tbuf b = tbuf_make(offset, n);
    uint8_t *p = b.p;
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)ts_rng_next(rng);
    return b;
}

/* ---- the level under test ----------------------------------------------- */

static simd_level g_level;

/* The table of the level being tested, or the test is skipped with a line
 * saying why. */
static const simd_ops *ops_or_skip(void) {
    const simd_ops *ops = simd_ops_for(g_level);
    if (ops == NULL) {
        print_message("level %s is not supported by this CPU or OS: skipped\n",
                      simd_level_name(g_level));
        skip();
    }
    return ops;
}

static const simd_ops *scalar_ops(void) {
    const simd_ops *ops = simd_ops_for(SIMD_SCALAR);
    assert_non_null(ops);
    return ops;
}

/* ---- float kernels ------------------------------------------------------ */

typedef enum fkind { F_L2SQ, F_DOT, F_COS } fkind;

static const char *fkind_name(fkind k) {
    return k == F_L2SQ ? "l2sq_f32" : k == F_DOT ? "dot_f32" : "cos_dist_f32";
}

static float run_f(const simd_ops *ops, fkind k, const float *a, const float *b, size_t d) {
    switch (k) {
    case F_L2SQ: return ops->l2sq_f32(a, b, d);
    case F_DOT: return ops->dot_f32(a, b, d);
    case F_COS: return ops->cos_dist_f32(a, b, d);
    }
    return NAN;
}

/* The exact value (in double) and the tolerance a float result gets. */
static double ref_f(fkind k, const float *a, const float *b, size_t d, double *tol) {
    double sum = 0, mag = 0, na = 0, nb = 0;
    for (size_t i = 0; i < d; i++) {
        double x = a[i], y = b[i];
        if (k == F_L2SQ) {
            sum += (x - y) * (x - y);
        } else {
            sum += x * y;
            mag += fabs(x * y);
            na += x * x;
            nb += y * y;
        }
    }
    if (k == F_L2SQ) {
        *tol = REL_TOL * sum;
        return sum;
    }
    if (k == F_DOT) {
        *tol = REL_TOL * mag;
        return sum;
    }
    *tol = COS_TOL;
    if (na == 0 || nb == 0)
        return 1.0;
    double c = sum / sqrt(na * nb);
    return 1.0 - (c > 1 ? 1 : c < -1 ? -1 : c);
}

static void check_float_kernel(fkind k) {
    const simd_ops *ops = ops_or_skip();
    const simd_ops *ref = scalar_ops();
    ts_rng rng;
    ts_rng_init(&rng, 1000 + (uint64_t)k);
    for (size_t di = 0; di < N_DIMS; di++) {
        size_t d = dims[di];
        for (size_t oi = 0; oi < N_FLOAT_OFFSETS; oi++) {
            tbuf a = floats_random(&rng, float_offsets[oi][0], d);
            tbuf b = floats_random(&rng, float_offsets[oi][1], d);
            double tol;
            double exact = ref_f(k, a.p, b.p, d, &tol);
            double got = run_f(ops, k, a.p, b.p, d);
            double scalar = run_f(ref, k, a.p, b.p, d);
            CHECK(fabs(got - exact) <= tol, "%s %s d=%zu offsets %zu,%zu: %.9g, exact %.9g\n",
                  fkind_name(k), simd_level_name(g_level), d, float_offsets[oi][0],
                  float_offsets[oi][1], got, exact);
            CHECK(fabs(got - scalar) <= 2 * tol, "%s %s d=%zu: %.9g, scalar %.9g\n", fkind_name(k),
                  simd_level_name(g_level), d, got, scalar);
            tbuf_free(&a);
            tbuf_free(&b);
        }
    }
}

static void test_l2sq_f32_matches_scalar_and_double(void **state) {
    (void)state;
    check_float_kernel(F_L2SQ);
}

static void test_dot_f32_matches_scalar_and_double(void **state) {
    (void)state;
    check_float_kernel(F_DOT);
}

static void test_cos_dist_f32_matches_scalar_and_double(void **state) {
    (void)state;
    check_float_kernel(F_COS);
}

static void test_cos_dist_f32_is_one_for_zero_vectors_and_bounded(void **state) {
    (void)state;
    const simd_ops *ops = ops_or_skip();
    ts_rng rng;
    ts_rng_init(&rng, 1100);
    for (size_t di = 0; di < N_DIMS; di++) {
        size_t d = dims[di];
        tbuf z = tbuf_make(4, d * sizeof(float));
        memset(z.p, 0, d * sizeof(float));
        tbuf a = floats_random(&rng, 1, d);
        tbuf neg = floats_random(&rng, 2, d);
        float *pa = a.p, *pn = neg.p;
        for (size_t i = 0; i < d; i++)
            pn[i] = -pa[i];
        CHECK(ops->cos_dist_f32(z.p, a.p, d) == 1.0f, "zero a, d=%zu\n", d);
        CHECK(ops->cos_dist_f32(a.p, z.p, d) == 1.0f, "zero b, d=%zu\n", d);
        CHECK(ops->cos_dist_f32(z.p, z.p, d) == 1.0f, "both zero, d=%zu\n", d);
        if (d > 0) {
            /* Identical vectors give identical sums, so the cosine is exactly 1. */
            CHECK(ops->cos_dist_f32(a.p, a.p, d) == 0.0f, "a vs a, d=%zu\n", d);
            float opp = ops->cos_dist_f32(a.p, neg.p, d);
            CHECK(opp <= 2.0f && opp >= 2.0f - COS_TOL, "a vs -a, d=%zu: %.9g\n", d, opp);
        }
        tbuf_free(&z);
        tbuf_free(&a);
        tbuf_free(&neg);
    }
}

/* One query against `n` rows at a stride; every out[i] must equal the
 * single-pair kernel bit for bit. */
static void check_rows(int l2) {
    const simd_ops *ops = ops_or_skip();
    void (*rows)(const float *, const float *, size_t, size_t, size_t, float *) =
        l2 ? ops->l2sq_f32_rows : ops->dot_f32_rows;
    float (*single)(const float *, const float *, size_t) = l2 ? ops->l2sq_f32 : ops->dot_f32;
    static const size_t row_counts[] = {0, 1, 2, 5, 37};
    static const size_t pads[] = {0, 1, 5};
    ts_rng rng;
    ts_rng_init(&rng, 1200 + (uint64_t)l2);
    for (size_t di = 0; di < N_DIMS; di++) {
        size_t d = dims[di];
        for (size_t ni = 0; ni < sizeof(row_counts) / sizeof(row_counts[0]); ni++) {
            size_t n = row_counts[ni];
            for (size_t pi = 0; pi < sizeof(pads) / sizeof(pads[0]); pi++) {
                size_t stride = d + pads[pi];
                size_t total = n == 0 ? 0 : (n - 1) * stride + d; /* last row ends the block */
                tbuf q = floats_random(&rng, 1 + pi, d);
                tbuf base = floats_random(&rng, (ni + pi) % 4, total);
                tbuf out = tbuf_make(0, (n + 1) * sizeof(float));
                float *o = out.p;
                o[n] = 12345.0f; /* must survive: the kernel writes exactly n values */
                rows(q.p, base.p, n, d, stride, o);
                for (size_t i = 0; i < n; i++) {
                    float want = single(q.p, (const float *)base.p + i * stride, d);
                    CHECK(memcmp(&o[i], &want, sizeof(float)) == 0,
                          "%s_rows %s d=%zu n=%zu stride=%zu row %zu: %.9g, single %.9g\n",
                          l2 ? "l2sq_f32" : "dot_f32", simd_level_name(g_level), d, n, stride, i,
                          o[i], want);
                }
                CHECK(o[n] == 12345.0f, "rows kernel wrote past out[n-1], n=%zu\n", n);
                tbuf_free(&q);
                tbuf_free(&base);
                tbuf_free(&out);
            }
        }
    }
}

static void test_l2sq_f32_rows_equals_single_pair_bitwise(void **state) {
    (void)state;
    check_rows(1);
}

static void test_dot_f32_rows_equals_single_pair_bitwise(void **state) {
    (void)state;
    check_rows(0);
}

/* Four queries against one row, including the repeated query flat search
 * uses to fill a short group. */
static void check_x4(int l2) {
    const simd_ops *ops = ops_or_skip();
    void (*x4)(const float *const[4], const float *, size_t, float[4]) =
        l2 ? ops->l2sq_f32_x4 : ops->dot_f32_x4;
    float (*single)(const float *, const float *, size_t) = l2 ? ops->l2sq_f32 : ops->dot_f32;
    ts_rng rng;
    ts_rng_init(&rng, 1300 + (uint64_t)l2);
    for (size_t di = 0; di < N_DIMS; di++) {
        size_t d = dims[di];
        for (int repeat = 0; repeat < 2; repeat++) {
            tbuf qb[4], x = floats_random(&rng, 3, d);
            const float *q[4];
            for (int j = 0; j < 4; j++) {
                qb[j] = floats_random(&rng, (size_t)j, d);
                q[j] = qb[j].p;
            }
            if (repeat)
                q[3] = q[2] = q[1];
            float out[4];
            x4(q, x.p, d, out);
            for (int j = 0; j < 4; j++) {
                float want = single(q[j], x.p, d);
                CHECK(memcmp(&out[j], &want, sizeof(float)) == 0,
                      "%s_x4 %s d=%zu query %d: %.9g, single %.9g\n", l2 ? "l2sq_f32" : "dot_f32",
                      simd_level_name(g_level), d, j, out[j], want);
            }
            for (int j = 0; j < 4; j++)
                tbuf_free(&qb[j]);
            tbuf_free(&x);
        }
    }
}

/* A row of bytes scores bit for bit as the same row widened to floats,
 * at every length (tails of every size) and byte offset. */
static void check_f32_u8(int l2) {
    const simd_ops *ops = ops_or_skip();
    float (*mixed)(const float *, const uint8_t *, size_t) =
        l2 ? ops->l2sq_f32_u8 : ops->dot_f32_u8;
    float (*single)(const float *, const float *, size_t) = l2 ? ops->l2sq_f32 : ops->dot_f32;
    ts_rng rng;
    ts_rng_init(&rng, 1400 + (uint64_t)l2);
    for (size_t di = 0; di < N_DIMS; di++) {
        size_t d = dims[di];
        for (size_t off = 0; off < 4; off++) {
            tbuf q = floats_random(&rng, off, d);
            tbuf x = bytes_random(&rng, off * 5 % 7, d);
            const uint8_t *xb = x.p;
            float *wide = malloc((d > 0 ? d : 1) * sizeof(float));
            assert_non_null(wide);
            for (size_t i = 0; i < d; i++)
                wide[i] = (float)xb[i];
            float got = mixed(q.p, xb, d), want = single(q.p, wide, d);
            CHECK(memcmp(&got, &want, sizeof(float)) == 0,
                  "%s_u8 %s d=%zu offset %zu: %.9g, widened %.9g\n", l2 ? "l2sq_f32" : "dot_f32",
                  simd_level_name(g_level), d, off, got, want);
            free(wide);
            tbuf_free(&q);
            tbuf_free(&x);
        }
    }
}

static void test_l2sq_f32_u8_equals_widened_row_bitwise(void **state) {
    (void)state;
    check_f32_u8(1);
}

static void test_dot_f32_u8_equals_widened_row_bitwise(void **state) {
    (void)state;
    check_f32_u8(0);
}

static void test_l2sq_f32_x4_equals_single_pair_bitwise(void **state) {
    (void)state;
    check_x4(1);
}

static void test_dot_f32_x4_equals_single_pair_bitwise(void **state) {
    (void)state;
    check_x4(0);
}

/* ---- bit codes ---------------------------------------------------------- */

static void check_popcount(int use_and) {
    const simd_ops *ops = ops_or_skip();
    const simd_ops *ref = scalar_ops();
    uint64_t (*kern)(const uint8_t *, const uint8_t *, size_t) =
        use_and ? ops->and_popcount : ops->hamming;
    uint64_t (*kref)(const uint8_t *, const uint8_t *, size_t) =
        use_and ? ref->and_popcount : ref->hamming;
    ts_rng rng;
    ts_rng_init(&rng, 1400 + (uint64_t)use_and);
    for (size_t di = 0; di < N_DIMS; di++) {
        size_t n = dims[di];
        for (size_t oi = 0; oi < N_BYTE_OFFSETS; oi++) {
            tbuf a = bytes_random(&rng, byte_offsets[oi][0], n);
            tbuf b = bytes_random(&rng, byte_offsets[oi][1], n);
            const uint8_t *pa = a.p, *pb = b.p;
            uint64_t exact = 0; /* bit by bit */
            for (size_t i = 0; i < n; i++) {
                for (int bit = 0; bit < 8; bit++) {
                    int x = (pa[i] >> bit) & 1, y = (pb[i] >> bit) & 1;
                    exact += (uint64_t)(use_and ? (x & y) : (x != y));
                }
            }
            uint64_t got = kern(pa, pb, n), scalar = kref(pa, pb, n);
            CHECK(got == exact && scalar == exact,
                  "%s %s nbytes=%zu: %llu, scalar %llu, exact %llu\n",
                  use_and ? "and_popcount" : "hamming", simd_level_name(g_level), n,
                  (unsigned long long)got, (unsigned long long)scalar, (unsigned long long)exact);
            tbuf_free(&a);
            tbuf_free(&b);
        }
    }
}

static void test_hamming_matches_bit_count_exactly(void **state) {
    (void)state;
    check_popcount(0);
}

static void test_and_popcount_matches_bit_count_exactly(void **state) {
    (void)state;
    check_popcount(1);
}

/* ---- byte vectors ------------------------------------------------------- */

typedef enum bkind { B_DOT_U8, B_DOT_I8, B_DOT_U8I8, B_L2SQ_U8 } bkind;

static const char *bkind_name(bkind k) {
    static const char *names[] = {"dot_u8", "dot_i8", "dot_u8i8", "l2sq_u8"};
    return names[k];
}

/* The kernel's result widened to int64 (l2sq_u8 is unsigned). */
static int64_t run_b(const simd_ops *ops, bkind k, const void *a, const void *b, size_t d) {
    switch (k) {
    case B_DOT_U8: return ops->dot_u8(a, b, d);
    case B_DOT_I8: return ops->dot_i8(a, b, d);
    case B_DOT_U8I8: return ops->dot_u8i8(a, b, d);
    case B_L2SQ_U8: return (int64_t)ops->l2sq_u8(a, b, d);
    }
    return -1;
}

static int64_t ref_b(bkind k, const void *pa, const void *pb, size_t d) {
    const uint8_t *a = pa, *b = pb;
    int64_t sum = 0;
    for (size_t i = 0; i < d; i++) {
        int64_t x = k == B_DOT_I8 ? (int8_t)a[i] : a[i];
        int64_t y = k == B_DOT_I8 || k == B_DOT_U8I8 ? (int8_t)b[i] : b[i];
        sum += k == B_L2SQ_U8 ? (x - y) * (x - y) : x * y;
    }
    return sum;
}

static void check_byte_kernel(bkind k) {
    const simd_ops *ops = ops_or_skip();
    const simd_ops *ref = scalar_ops();
    ts_rng rng;
    ts_rng_init(&rng, 1500 + (uint64_t)k);
    for (size_t di = 0; di < N_DIMS; di++) {
        size_t d = dims[di];
        for (size_t oi = 0; oi < N_BYTE_OFFSETS; oi++) {
            tbuf a = bytes_random(&rng, byte_offsets[oi][0], d);
            tbuf b = bytes_random(&rng, byte_offsets[oi][1], d);
            int64_t exact = ref_b(k, a.p, b.p, d);
            int64_t got = run_b(ops, k, a.p, b.p, d), scalar = run_b(ref, k, a.p, b.p, d);
            CHECK(got == exact && scalar == exact, "%s %s d=%zu: %lld, scalar %lld, exact %lld\n",
                  bkind_name(k), simd_level_name(g_level), d, (long long)got, (long long)scalar,
                  (long long)exact);
            tbuf_free(&a);
            tbuf_free(&b);
        }
    }
}

static void test_dot_u8_matches_exactly(void **state) {
    (void)state;
    check_byte_kernel(B_DOT_U8);
}

static void test_dot_i8_matches_exactly(void **state) {
    (void)state;
    check_byte_kernel(B_DOT_I8);
}

static void test_dot_u8i8_matches_exactly(void **state) {
    (void)state;
    check_byte_kernel(B_DOT_U8I8);
}

/* dot_u8i8_ids against dot_u8i8 of the rows the ids pick, exactly: counts
 * around the kernels' step of four, ids repeated and out of order, rows
 * packed and spaced out, the last row ending at its allocation. */
static void test_dot_u8i8_ids_picks_rows(void **state) {
    (void)state;
    const simd_ops *ops = ops_or_skip();
    ts_rng rng;
    ts_rng_init(&rng, 1601);
    static const size_t counts[] = {0, 1, 3, 4, 5, 8, 13};
    enum { ROWS = 9, MAX_N = 13 };
    for (size_t di = 0; di < N_DIMS; di++) {
        const size_t d = dims[di];
        for (size_t si = 0; si < 2; si++) {
            const size_t stride = d + 7 * si;
            for (size_t ci = 0; ci < sizeof counts / sizeof counts[0]; ci++) {
                const size_t n = counts[ci];
                tbuf a = bytes_random(&rng, di % 5, d);
                tbuf r = bytes_random(&rng, ci % 7, (ROWS - 1) * stride + d);
                uint32_t ids[MAX_N];
                int32_t out[MAX_N];
                for (size_t i = 0; i < n; i++)
                    ids[i] = i == 0 ? ROWS - 1 : (uint32_t)(ts_rng_next(&rng) % ROWS);
                ops->dot_u8i8_ids(a.p, (const int8_t *)r.p, stride, ids, n, d, out);
                for (size_t i = 0; i < n; i++) {
                    const int32_t want =
                        (int32_t)ref_b(B_DOT_U8I8, a.p, (const uint8_t *)r.p + ids[i] * stride, d);
                    CHECK(out[i] == want,
                          "dot_u8i8_ids %s d=%zu n=%zu stride=%zu row %zu: %d, want %d\n",
                          simd_level_name(g_level), d, n, stride, i, out[i], want);
                }
                tbuf_free(&a);
                tbuf_free(&r);
            }
        }
    }
}

/* sq8_estimates against the formula of simd.h evaluated here in the same
 * order, bit for bit: code counts around the kernels' steps of 4, 8 and
 * 16, codes of 12 head bytes and d values packed and spaced out, the last
 * ending at its allocation, and the three metrics' constants. */
static void test_sq8_estimates_match_the_formula_bitwise(void **state) {
    (void)state;
    const simd_ops *ops = ops_or_skip();
    ts_rng rng;
    ts_rng_init(&rng, 1600);
    static const size_t counts[] = {0, 1, 3, 4, 5, 15, 16, 17, 33};
    static const float metric[3][3] = {{1.7f, 1, -2}, {0, 0, -1}, {1, 0, -1}};
    enum { MAX_N = 33 };
    for (size_t di = 0; di < N_DIMS; di++) {
        const size_t d = dims[di];
        for (size_t si = 0; si < 2; si++) {
            const size_t stride = 12 + d + 5 * si;
            for (size_t ci = 0; ci < sizeof counts / sizeof counts[0]; ci++) {
                const size_t n = counts[ci];
                tbuf a = bytes_random(&rng, di % 5, d);
                tbuf r = bytes_random(&rng, ci % 7, n > 0 ? (n - 1) * stride + 12 + d : 0);
                uint8_t *codes = r.p;
                for (size_t i = 0; i < n; i++) {
                    const float head[3] = {(float)(ts_rng_uniform(&rng) * 3),
                                           (float)(ts_rng_uniform(&rng) * 0.01),
                                           (float)(ts_rng_uniform(&rng) * 200 - 100)};
                    memcpy(codes + i * stride, head, sizeof head);
                }
                const float *m = metric[ci % 3];
                const float p[5] = {-0.37f, 0.0041f, m[0], m[1], m[2]};
                float out[MAX_N];
                ops->sq8_estimates(a.p, codes, n, d, stride, p, out);
                for (size_t i = 0; i < n; i++) {
                    const uint8_t *c = codes + i * stride;
                    float f[3];
                    memcpy(f, c, sizeof f);
                    const float dot = (float)ref_b(B_DOT_U8I8, a.p, c + 12, d);
                    const float ip = (f[0] * f[1]) * (p[0] * f[2] + p[1] * dot);
                    const float want = (p[2] + p[3] * (f[0] * f[0])) + p[4] * ip;
                    CHECK(memcmp(&out[i], &want, sizeof want) == 0,
                          "sq8_estimates %s d=%zu n=%zu stride=%zu code %zu: %.9g, want %.9g\n",
                          simd_level_name(g_level), d, n, stride, i, out[i], want);
                }
                tbuf_free(&a);
                tbuf_free(&r);
            }
        }
    }
}

static void test_l2sq_u8_matches_exactly(void **state) {
    (void)state;
    check_byte_kernel(B_L2SQ_U8);
}

/* tq_dot for every code width against a double-precision sum, with the code
 * bytes ending exactly at their allocation (ASan catches any over-read) and
 * random bits past the last field ignored. */
static void test_tq_dot_matches_double_for_every_width(void **state) {
    (void)state;
    const simd_ops *ops = ops_or_skip();
    ts_rng rng;
    ts_rng_init(&rng, 33);
    float table[256];
    for (int i = 0; i < 256; i++)
        table[i] = (float)(ts_rng_uniform(&rng) * 4 - 2);
    static const size_t widths_d[] = {1, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33, 100, 128, 384, 785};
    for (unsigned bits = 1; bits <= 8; bits++) {
        for (size_t t = 0; t < sizeof widths_d / sizeof widths_d[0]; t++) {
            size_t d = widths_d[t], nbytes = (d * bits + 7) / 8;
            tbuf y = floats_random(&rng, t % 3, d);
            tbuf c = bytes_random(&rng, t % 5, nbytes);
            const float *yv = y.p;
            const uint8_t *cv = c.p;
            double want = 0, scale = 0;
            for (size_t j = 0; j < d; j++) {
                unsigned code = 0;
                for (unsigned k = 0; k < bits; k++) {
                    size_t bit = j * bits + k;
                    code |= (unsigned)((cv[bit / 8] >> (bit % 8)) & 1) << k;
                }
                want += (double)yv[j] * table[code];
                scale += fabs((double)yv[j] * table[code]);
            }
            float got = ops->tq_dot(yv, table, cv, d, bits);
            CHECK(fabs(got - want) <= 1e-5 * scale + 1e-6,
                  "tq_dot %s bits=%u d=%zu: got %.9g want %.9g\n", simd_level_name(g_level), bits,
                  d, got, want);
            tbuf_free(&y);
            tbuf_free(&c);
        }
    }
}

/* masked_sum_f32 against a double-precision sum over the set bits, with the
 * mask ending exactly at its allocation. */
static void test_masked_sum_matches_double(void **state) {
    (void)state;
    const simd_ops *ops = ops_or_skip();
    ts_rng rng;
    ts_rng_init(&rng, 34);
    static const size_t lens[] = {0, 1, 5, 8, 9, 15, 16, 17, 31, 33, 100, 384, 785};
    for (size_t t = 0; t < sizeof lens / sizeof lens[0]; t++) {
        size_t d = lens[t], nbytes = (d + 7) / 8;
        tbuf v = floats_random(&rng, t % 3, d);
        tbuf m = bytes_random(&rng, t % 5, nbytes);
        const float *vv = v.p;
        const uint8_t *mv = m.p;
        double want = 0, scale = 0;
        for (size_t j = 0; j < d; j++)
            if ((mv[j / 8] >> (j % 8)) & 1) {
                want += vv[j];
                scale += fabs(vv[j]);
            }
        float got = ops->masked_sum_f32(vv, mv, d);
        CHECK(fabs(got - want) <= 1e-5 * scale + 1e-6, "masked_sum %s d=%zu: got %.9g want %.9g\n",
              simd_level_name(g_level), d, got, want);
        tbuf_free(&v);
        tbuf_free(&m);
    }
}

/* pq8_adc against a double-precision sum of table entries, for subspace
 * counts around every vector width and codes ending at their allocation. */
static void test_pq8_adc_matches_double(void **state) {
    (void)state;
    const simd_ops *ops = ops_or_skip();
    ts_rng rng;
    ts_rng_init(&rng, 35);
    static const size_t ms[] = {1, 2, 7, 8, 9, 15, 16, 17, 32, 33, 96, 98};
    enum { N = 9 };
    for (size_t t = 0; t < sizeof ms / sizeof ms[0]; t++) {
        size_t m = ms[t];
        tbuf tab = floats_random(&rng, 0, m * 256);
        tbuf codes = bytes_random(&rng, t % 7, m * N);
        const float *tv = tab.p;
        const uint8_t *cv = codes.p;
        float out[N];
        ops->pq8_adc(tv, cv, m, N, out);
        for (size_t i = 0; i < N; i++) {
            double want = 0, scale = 0;
            for (size_t k = 0; k < m; k++) {
                want += tv[k * 256 + cv[i * m + k]];
                scale += fabs(tv[k * 256 + cv[i * m + k]]);
            }
            CHECK(fabs(out[i] - want) <= 1e-5 * scale + 1e-6,
                  "pq8_adc %s m=%zu code %zu: got %.9g want %.9g\n", simd_level_name(g_level), m, i,
                  out[i], want);
        }
        tbuf_free(&tab);
        tbuf_free(&codes);
    }
}

/* fwht_f32 bit for bit against the scalar level, for every power of two up
 * to 2048 and unaligned buffers, with and without signs; and the scalar
 * level against the Hadamard matrix itself (entry (i, j) =
 * (-1)^popcount(i & j)) in double, its signed form against multiplying
 * first. */
static void test_fwht_matches_scalar_bitwise_and_the_matrix(void **state) {
    (void)state;
    const simd_ops *ops = ops_or_skip();
    const simd_ops *ref = scalar_ops();
    ts_rng rng;
    ts_rng_init(&rng, 41);
    for (size_t n = 1; n <= 2048; n *= 2) {
        tbuf x = floats_random(&rng, n % 5, n);
        float *got = malloc(n * sizeof(float)), *want = malloc(n * sizeof(float));
        memcpy(got, x.p, n * sizeof(float));
        memcpy(want, x.p, n * sizeof(float));
        tbuf signs = floats_random(&rng, (n + 1) % 5, n);
        float *sgot = malloc(n * sizeof(float)), *swant = malloc(n * sizeof(float));
        const float *xs = x.p, *sg = signs.p;
        memcpy(sgot, xs, n * sizeof(float));
        for (size_t j = 0; j < n; j++)
            swant[j] = xs[j] * sg[j];
        ops->fwht_f32(sgot, signs.p, n);
        ref->fwht_f32(swant, NULL, n);
        CHECK(memcmp(sgot, swant, n * sizeof(float)) == 0,
              "signed fwht %s n=%zu differs from multiplying first\n", simd_level_name(g_level), n);
        free(sgot);
        free(swant);
        tbuf_free(&signs);
        ops->fwht_f32(got, NULL, n);
        ref->fwht_f32(want, NULL, n);
        CHECK(memcmp(got, want, n * sizeof(float)) == 0, "fwht %s n=%zu differs from scalar\n",
              simd_level_name(g_level), n);
        if (n <= 256) {
            const float *in = x.p;
            for (size_t i = 0; i < n; i++) {
                double sum = 0, scale = 0;
                for (size_t j = 0; j < n; j++) {
                    sum += __builtin_popcountll(i & j) & 1 ? -(double)in[j] : in[j];
                    scale += fabs(in[j]);
                }
                CHECK(fabs(want[i] - sum) <= 1e-6 * scale + 1e-7,
                      "fwht n=%zu row %zu: got %.9g want %.9g\n", n, i, want[i], sum);
            }
        }
        free(got);
        free(want);
        tbuf_free(&x);
    }
}

/* range_f32 against a plain loop on every level, for lengths around the
 * vector widths and unaligned buffers, extremes anywhere. */
static void test_range_matches_a_plain_loop(void **state) {
    (void)state;
    const simd_ops *ops = ops_or_skip();
    ts_rng rng;
    ts_rng_init(&rng, 47);
    for (size_t n = 1; n <= 70; n++) {
        tbuf x = floats_random(&rng, n % 3, n);
        float *v = x.p;
        v[ts_rng_next(&rng) % n] = -7.5f;
        v[ts_rng_next(&rng) % n] = 9.25f;
        float want_lo = v[0], want_hi = v[0];
        for (size_t j = 1; j < n; j++) {
            want_lo = v[j] < want_lo ? v[j] : want_lo;
            want_hi = v[j] > want_hi ? v[j] : want_hi;
        }
        float lo, hi;
        ops->range_f32(v, n, &lo, &hi);
        CHECK(lo == want_lo && hi == want_hi, "range %s n=%zu: got [%g, %g] want [%g, %g]\n",
              simd_level_name(g_level), n, lo, hi, want_lo, want_hi);
        tbuf_free(&x);
    }
}

/* pq16_tables bit for bit against the scalar level, and each entry within
 * float rounding of a double-precision sum, for both metrics, subspaces of
 * 1 to 9 coordinates and counts that are not a multiple of anything. */
static void test_pq16_tables_match_scalar_bitwise(void **state) {
    (void)state;
    const simd_ops *ops = ops_or_skip();
    const simd_ops *ref = scalar_ops();
    ts_rng rng;
    ts_rng_init(&rng, 47);
    static const size_t ms[] = {1, 3, 8, 64, 197};
    static const size_t dsubs[] = {1, 2, 3, 4, 9};
    for (size_t a = 0; a < sizeof ms / sizeof ms[0]; a++) {
        for (size_t b = 0; b < sizeof dsubs / sizeof dsubs[0]; b++) {
            const size_t m = ms[a], dsub = dsubs[b];
            tbuf q = floats_random(&rng, a % 3, m * dsub);
            tbuf ct = floats_random(&rng, b % 3, m * dsub * 16);
            const float *qv = q.p, *cv = ct.p;
            float *got = malloc(m * 16 * sizeof *got), *want = malloc(m * 16 * sizeof *want);
            for (int l2 = 0; l2 < 2; l2++) {
                ops->pq16_tables(qv, cv, m, dsub, l2, got);
                ref->pq16_tables(qv, cv, m, dsub, l2, want);
                CHECK(memcmp(got, want, m * 16 * sizeof *got) == 0,
                      "pq16_tables %s m=%zu dsub=%zu l2=%d differs from scalar\n",
                      simd_level_name(g_level), m, dsub, l2);
                for (size_t s = 0; s < m; s++)
                    for (size_t j = 0; j < 16; j++) {
                        double e = 0, mag = 0;
                        for (size_t t = 0; t < dsub; t++) {
                            const double x = qv[s * dsub + t], c = cv[(s * dsub + t) * 16 + j];
                            const double v = l2 ? (x - c) * (x - c) : x * c;
                            e += v;
                            mag += fabs(v);
                        }
                        CHECK(fabs(got[s * 16 + j] - e) <= 1e-6 * (mag + 1e-30) * (double)dsub,
                              "pq16_tables m=%zu dsub=%zu l2=%d entry %zu/%zu: %.9g, not %.9g\n", m,
                              dsub, l2, s, j, got[s * 16 + j], e);
                    }
            }
            free(got);
            free(want);
            tbuf_free(&q);
            tbuf_free(&ct);
        }
    }
}

/* fastscan_quantize bit for bit against the scalar level (tables, step and
 * bias), writing only the tables' bytes; each entry within delta / 2 of
 * its float; flat tables, a table with an infinity (NaN entries go to 255)
 * and table counts that end inside a 128-byte group. */
static void test_fastscan_quantize_matches_scalar_bitwise(void **state) {
    (void)state;
    const simd_ops *ops = ops_or_skip();
    const simd_ops *ref = scalar_ops();
    ts_rng rng;
    ts_rng_init(&rng, 43);
    static const size_t ms[] = {1, 2, 3, 4, 5, 7, 96, 197};
    for (size_t t = 0; t < sizeof ms / sizeof ms[0]; t++) {
        for (int variant = 0; variant < 3; variant++) {
            const size_t m = ms[t];
            const size_t lut_bytes = ((m + 1) / 2 + 1) / 2 * 128;
            tbuf tab = floats_random(&rng, t % 3, m * 16);
            float *tv = tab.p;
            for (size_t i = 0; i < m * 16; i++)
                tv[i] *= (float)(1 + i % 5); /* tables of different ranges */
            if (variant == 1)                /* one flat table, and all flat when m == 1 */
                for (size_t j = 0; j < 16; j++)
                    tv[(m / 2) * 16 + j] = 0.25f;
            if (variant == 2)
                tv[m * 16 - 3] = INFINITY;
            uint8_t *got = malloc(lut_bytes), *want = malloc(lut_bytes);
            memset(got, 0xA5, lut_bytes);
            memset(want, 0xA5, lut_bytes);
            float gd, gb, wd, wb;
            ops->fastscan_quantize(tv, m, got, &gd, &gb);
            ref->fastscan_quantize(tv, m, want, &wd, &wb);
            CHECK(memcmp(got, want, lut_bytes) == 0 && memcmp(&gd, &wd, sizeof gd) == 0 &&
                      memcmp(&gb, &wb, sizeof gb) == 0,
                  "fastscan_quantize %s m=%zu variant %d differs from scalar\n",
                  simd_level_name(g_level), m, variant);
            /* Bytes of tables past m are left as they were. */
            for (size_t s = m; s < (m + 1) / 2 * 2; s++)
                for (size_t j = 0; j < 32; j++)
                    CHECK(want[simd_fastscan_table(s) + j] == 0xA5,
                          "fastscan_quantize m=%zu wrote table %zu\n", m, s);
            for (size_t s = 0; variant != 2 && s < m; s++) {
                float lo = tv[s * 16];
                for (size_t j = 1; j < 16; j++)
                    lo = tv[s * 16 + j] < lo ? tv[s * 16 + j] : lo;
                for (size_t j = 0; j < 16; j++) {
                    const uint8_t e = want[simd_fastscan_table(s) + j];
                    CHECK(e == want[simd_fastscan_table(s) + 16 + j] &&
                              fabs(lo + e * (double)wd - tv[s * 16 + j]) <= wd * 0.5001,
                          "fastscan_quantize m=%zu table %zu entry %zu: %u\n", m, s, j, e);
                }
            }
            if (variant == 2)
                CHECK(want[simd_fastscan_table(m - 1) + 13] == 255,
                      "fastscan_quantize: an infinite entry gives %u, not 255\n",
                      want[simd_fastscan_table(m - 1) + 13]);
            free(got);
            free(want);
            tbuf_free(&tab);
        }
    }
}

/* The largest terms at the longest lengths simd.h promises to be exact,
 * and one shorter (odd, so the tail code runs too). */
static void test_byte_kernels_exact_at_documented_length_limits(void **state) {
    (void)state;
    const simd_ops *ops = ops_or_skip();
    static const struct {
        bkind k;
        uint8_t a, b; /* every element; reinterpreted as int8 where signed */
        size_t d;
    } cases[] = {
        {B_DOT_U8, 255, 255, (size_t)1 << 15},
        {B_DOT_I8, 0x80, 0x80, ((size_t)1 << 17) - 1}, /* -128 * -128 */
        {B_DOT_U8I8, 255, 0x80, (size_t)1 << 16},      /* 255 * -128 */
        {B_L2SQ_U8, 0, 255, (size_t)1 << 16},
    };
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        for (size_t shorter = 0; shorter <= 1; shorter++) {
            size_t d = cases[c].d - shorter * 7;
            tbuf a = tbuf_make(3, d), b = tbuf_make(17, d);
            memset(a.p, cases[c].a, d);
            memset(b.p, cases[c].b, d);
            int64_t exact = ref_b(cases[c].k, a.p, b.p, d);
            int64_t got = run_b(ops, cases[c].k, a.p, b.p, d);
            CHECK(got == exact, "%s %s d=%zu: %lld, exact %lld\n", bkind_name(cases[c].k),
                  simd_level_name(g_level), d, (long long)got, (long long)exact);
            tbuf_free(&a);
            tbuf_free(&b);
        }
    }
}

/* ---- first_below -------------------------------------------------------- */

/* Every length up to 80 (all the block and tail paths), every start, and a
 * single value below the threshold at every position, or none. */
static void test_first_below_finds_first_value_below_threshold(void **state) {
    (void)state;
    const simd_ops *ops = ops_or_skip();
    for (size_t n = 0; n <= 80; n++) {
        tbuf buf = tbuf_make((n % 4) * sizeof(float), n * sizeof(float));
        float *v = buf.p;
        for (size_t pos = 0; pos <= n; pos++) { /* pos == n: none below */
            for (size_t i = 0; i < n; i++)
                v[i] = 1.0f + (float)i; /* all above 0.5 */
            if (pos < n)
                v[pos] = 0.25f;
            for (size_t from = 0; from <= n; from++) {
                size_t want = pos < n && pos >= from ? pos : n;
                size_t got = ops->first_below(v, from, n, 0.5f);
                CHECK(got == want, "n=%zu from=%zu below at %zu: got %zu\n", n, from, pos, got);
            }
        }
        tbuf_free(&buf);
    }
}

static void test_first_below_crafted_edges(void **state) {
    (void)state;
    const simd_ops *ops = ops_or_skip();
    enum { N = 53 };
    tbuf buf = tbuf_make(sizeof(float), N * sizeof(float));
    float *v = buf.p;
    for (size_t i = 0; i < N; i++)
        v[i] = 2.0f;

    assert_int_equal(ops->first_below(v, 0, 0, 10.0f), 0);     /* n = 0 */
    assert_int_equal(ops->first_below(v, N, N, 10.0f), N);     /* from = n */
    assert_int_equal(ops->first_below(v, 0, N, 2.0f), N);      /* equal is not below */
    assert_int_equal(ops->first_below(v, 0, N, -INFINITY), N); /* nothing is below -inf */
    assert_int_equal(ops->first_below(v, 0, N, INFINITY), 0);  /* everything finite is */
    assert_int_equal(ops->first_below(v, 7, N, 2.5f), 7);      /* first of many, from > 0 */

    v[0] = 1.0f; /* first element */
    assert_int_equal(ops->first_below(v, 0, N, 1.5f), 0);
    assert_int_equal(ops->first_below(v, 1, N, 1.5f), N); /* skipped by from */
    v[N - 1] = -INFINITY;                                 /* last element */
    assert_int_equal(ops->first_below(v, 1, N, 1.5f), N - 1);
    assert_int_equal(ops->first_below(v, 1, N - 1, 1.5f), N - 1); /* n excludes it */
    v[40] = nextafterf(1.5f, 0.0f);                               /* just below */
    assert_int_equal(ops->first_below(v, 1, N, 1.5f), 40);
    assert_int_equal(ops->first_below(v, 41, N, 1.5f), N - 1);
    tbuf_free(&buf);
}

/* The loop flat search runs: each hit restarts the scan after it. */
static void test_first_below_scan_matches_scalar_on_random_blocks(void **state) {
    (void)state;
    const simd_ops *ops = ops_or_skip();
    const simd_ops *ref = scalar_ops();
    ts_rng rng;
    ts_rng_init(&rng, 1600);
    for (int trial = 0; trial < 200; trial++) {
        size_t n = (size_t)(ts_rng_next(&rng) % 600);
        tbuf buf = floats_random(&rng, (size_t)trial % 4, n);
        const float *v = buf.p;
        float t = (float)(ts_rng_uniform(&rng) * 2.0 - 1.0);
        size_t i = ops->first_below(v, 0, n, t), j = ref->first_below(v, 0, n, t);
        for (;;) {
            CHECK(i == j, "n=%zu threshold %.9g: %zu, scalar %zu\n", n, t, i, j);
            if (i >= n)
                break;
            t = v[i]; /* tighten, as a heap does */
            i = ops->first_below(v, i + 1, n, t);
            j = ref->first_below(v, j + 1, n, t);
        }
        tbuf_free(&buf);
    }
}

/* ---- dispatch ----------------------------------------------------------- */

static simd_level expected_level(void) {
    simd_level hw = simd_level_hw();
    const char *env = getenv("ROTOR_SIMD");
    static const simd_level levels[] = {SIMD_SCALAR, SIMD_AVX2, SIMD_AVX512};
    if (env == NULL)
        return hw;
    for (size_t i = 0; i < 3; i++) {
        if (strcasecmp(env, simd_level_name(levels[i])) == 0)
            return levels[i] < hw ? levels[i] : hw; /* never raised */
    }
    return hw; /* unknown word: ignored */
}

static void *get_ops_thread(void *arg) {
    (void)arg;
    return (void *)simd_ops_get();
}

/* Runs first in the process, so the one-time choice happens under a race. */
static void test_simd_ops_get_returns_one_table_to_concurrent_first_callers(void **state) {
    (void)state;
    enum { THREADS = 8 };
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, get_ops_thread, NULL), 0);
    const simd_ops *mine = simd_ops_get();
    assert_non_null(mine);
    for (int i = 0; i < THREADS; i++) {
        void *theirs;
        assert_int_equal(pthread_join(t[i], &theirs), 0);
        assert_ptr_equal(theirs, mine);
    }
    assert_ptr_equal(simd_ops_get(), mine);
}

static void test_simd_ops_get_honours_rotor_simd(void **state) {
    (void)state;
    const char *env = getenv("ROTOR_SIMD");
    simd_level want = expected_level();
    const simd_ops *ops = simd_ops_get();
    print_message("ROTOR_SIMD=%s, hardware %s, expected %s, chosen %s\n", env ? env : "(unset)",
                  simd_level_name(simd_level_hw()), simd_level_name(want),
                  simd_level_name(ops->level));
    assert_int_equal(ops->level, want);
    assert_ptr_equal(ops, simd_ops_for(want));
    assert_string_equal(rotor_simd_level(), simd_level_name(want));
}

static void test_simd_ops_for_offers_exactly_the_hardware_levels(void **state) {
    (void)state;
    simd_level hw = simd_level_hw();
    for (int l = SIMD_SCALAR; l <= SIMD_AVX512; l++) {
        const simd_ops *ops = simd_ops_for((simd_level)l);
        if (l <= (int)hw) {
            assert_non_null(ops);
            assert_int_equal(ops->level, l);
        } else {
            assert_null(ops);
            print_message("level %s is not supported by this CPU or OS\n",
                          simd_level_name((simd_level)l));
        }
    }
    assert_null(simd_ops_for((simd_level)3));
}

static void test_simd_tables_fill_every_kernel(void **state) {
    (void)state;
    for (int l = SIMD_SCALAR; l <= SIMD_AVX512; l++) {
        const simd_ops *o = simd_ops_for((simd_level)l);
        if (o == NULL)
            continue;
        assert_true(o->l2sq_f32 && o->dot_f32 && o->cos_dist_f32);
        assert_true(o->l2sq_f32_rows && o->dot_f32_rows && o->l2sq_f32_x4 && o->dot_f32_x4);
        assert_true(o->l2sq_f32_u8 && o->dot_f32_u8);
        assert_true(o->hamming && o->and_popcount);
        assert_true(o->dot_u8 && o->dot_i8 && o->dot_u8i8 && o->dot_u8i8_ids && o->sq8_estimates &&
                    o->l2sq_u8);
        assert_true(o->first_below != NULL);
        assert_true(o->fastscan_accumulate && o->argmin_l2sq_f32_cols && o->dot_f32_cols &&
                    o->tq_dot && o->masked_sum_f32 && o->pq8_adc && o->fastscan_quantize &&
                    o->fwht_f32 && o->range_f32);
    }
}

static void test_simd_level_name_names_each_level(void **state) {
    (void)state;
    assert_string_equal(simd_level_name(SIMD_SCALAR), "scalar");
    assert_string_equal(simd_level_name(SIMD_AVX2), "avx2");
    assert_string_equal(simd_level_name(SIMD_AVX512), "avx512");
    assert_string_equal(simd_level_name((simd_level)9), "unknown");
}

int main(int argc, char **argv) {
    const struct CMUnitTest dispatch_tests[] = {
        cmocka_unit_test(test_simd_ops_get_returns_one_table_to_concurrent_first_callers),
        cmocka_unit_test(test_simd_ops_get_honours_rotor_simd),
        cmocka_unit_test(test_simd_ops_for_offers_exactly_the_hardware_levels),
        cmocka_unit_test(test_simd_tables_fill_every_kernel),
        cmocka_unit_test(test_simd_level_name_names_each_level),
    };
    const struct CMUnitTest kernel_tests[] = {
        cmocka_unit_test(test_l2sq_f32_matches_scalar_and_double),
        cmocka_unit_test(test_dot_f32_matches_scalar_and_double),
        cmocka_unit_test(test_cos_dist_f32_matches_scalar_and_double),
        cmocka_unit_test(test_cos_dist_f32_is_one_for_zero_vectors_and_bounded),
        cmocka_unit_test(test_l2sq_f32_rows_equals_single_pair_bitwise),
        cmocka_unit_test(test_dot_f32_rows_equals_single_pair_bitwise),
        cmocka_unit_test(test_l2sq_f32_x4_equals_single_pair_bitwise),
        cmocka_unit_test(test_l2sq_f32_u8_equals_widened_row_bitwise),
        cmocka_unit_test(test_dot_f32_u8_equals_widened_row_bitwise),
        cmocka_unit_test(test_dot_f32_x4_equals_single_pair_bitwise),
        cmocka_unit_test(test_hamming_matches_bit_count_exactly),
        cmocka_unit_test(test_and_popcount_matches_bit_count_exactly),
        cmocka_unit_test(test_dot_u8_matches_exactly),
        cmocka_unit_test(test_dot_i8_matches_exactly),
        cmocka_unit_test(test_dot_u8i8_matches_exactly),
        cmocka_unit_test(test_dot_u8i8_ids_picks_rows),
        cmocka_unit_test(test_sq8_estimates_match_the_formula_bitwise),
        cmocka_unit_test(test_l2sq_u8_matches_exactly),
        cmocka_unit_test(test_byte_kernels_exact_at_documented_length_limits),
        cmocka_unit_test(test_first_below_finds_first_value_below_threshold),
        cmocka_unit_test(test_first_below_crafted_edges),
        cmocka_unit_test(test_first_below_scan_matches_scalar_on_random_blocks),
        cmocka_unit_test(test_tq_dot_matches_double_for_every_width),
        cmocka_unit_test(test_masked_sum_matches_double),
        cmocka_unit_test(test_pq8_adc_matches_double),
        cmocka_unit_test(test_fwht_matches_scalar_bitwise_and_the_matrix),
        cmocka_unit_test(test_range_matches_a_plain_loop),
        cmocka_unit_test(test_fastscan_quantize_matches_scalar_bitwise),
        cmocka_unit_test(test_pq16_tables_match_scalar_bitwise),
    };

    print_message("# simd dispatch\n");
    int failed = cmocka_run_group_tests_name("simd dispatch", dispatch_tests, NULL, NULL);
    if (argc > 1 && strcmp(argv[1], "--dispatch-only") == 0)
        return failed;

    static const simd_level levels[] = {SIMD_SCALAR, SIMD_AVX2, SIMD_AVX512};
    for (size_t i = 0; i < sizeof(levels) / sizeof(levels[0]); i++) {
        char name[64];
        g_level = levels[i];
        snprintf(name, sizeof(name), "simd kernels, level %s", simd_level_name(g_level));
        print_message("# %s\n", name);
        failed += cmocka_run_group_tests_name(name, kernel_tests, NULL, NULL);
    }
    return failed;
}
