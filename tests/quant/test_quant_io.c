/*
 * Quantizer parameter blocks (quant/quant_io.c): every kind comes back from
 * its block behaving bit for bit as it did (same codes, same decoded
 * vectors, same scan distances), and re-saves to the same bytes; every
 * malformed block is refused with ROTOR_ERR_FORMAT (or UNSUPPORTED for a
 * newer version) and a sentence naming the fault; truncation at any length
 * and flips of any header byte neither crash, read out of bounds (ASan), nor
 * leak (counting allocator); allocation failures during a load leak nothing.
 *
 * The fuzz corpus in tests/fuzz/corpus/quant_load is checked here too: its
 * valid_* blocks must load and re-save identically, its bad_* blocks must
 * fail. ROTOR_WRITE_QUANT_CORPUS=DIR regenerates it into DIR.
 */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quant/quant.h"
#include "support/support.h"

#define HDR 56
enum {
    OFF_VERSION = 4,
    OFF_HEADER = 8,
    OFF_KIND = 12,
    OFF_BITS = 16,
    OFF_M = 20,
    OFF_DIM = 24,
    OFF_METRIC = 32,
    OFF_SEED = 36,
    OFF_TRAINED = 44,
    OFF_PAYLOAD = 48,
};

static void put_u32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put_u64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* A quantizer of `spec` over `dim` dimensions, trained as an index would
 * train it on `n` random rows (offset from the origin so the L2 centre is
 * not zero; unit rows for IP and cosine). n = 0 leaves it untrained. */
static quant *make(const char *spec, rotor_metric metric, size_t dim, size_t n, uint64_t seed,
                   const rotor_allocator *a) {
    ts_rng r;
    ts_rng_init(&r, seed);
    quant_spec sp;
    assert_int_equal(quant_spec_parse(spec, &sp), ROTOR_OK);
    quant *q = NULL;
    assert_int_equal(quant_create(&sp, dim, metric, seed * 7 + 1, a, &q), ROTOR_OK);
    if (n == 0)
        return q;
    float *x = malloc(n * dim * sizeof(float));
    for (size_t i = 0; i < n; i++) {
        double ss = 0;
        for (size_t j = 0; j < dim; j++) {
            x[i * dim + j] = (float)ts_rng_normal(&r) + 0.5f + (float)(j % 3);
            ss += (double)x[i * dim + j] * x[i * dim + j];
        }
        if (metric != ROTOR_METRIC_L2)
            for (size_t j = 0; j < dim; j++)
                x[i * dim + j] = (float)(x[i * dim + j] / sqrt(ss));
    }
    assert_int_equal(q->ops->train(q, x, n, 1), ROTOR_OK);
    q->trained = true;
    free(x);
    return q;
}

static uint8_t *save(const quant *q, size_t *size) {
    *size = quant_saved_size(q);
    uint8_t *b = malloc(*size);
    assert_int_equal(quant_save(q, b, *size), ROTOR_OK);
    return b;
}

/* Encodes, stores, decodes and scans the same n vectors and queries with
 * both quantizers; every output must be identical to the bit. */
static void assert_same_behaviour(const quant *a, const quant *b, uint64_t seed) {
    assert_int_equal(a->code_bytes, b->code_bytes);
    assert_int_equal(a->query_bytes, b->query_bytes);
    assert_int_equal(a->scratch_floats, b->scratch_floats);
    assert_int_equal(a->trained, b->trained);
    const size_t d = a->dim, n = 45; /* more than one 32-code fast-scan block */
    ts_rng r;
    ts_rng_init(&r, seed);
    float *x = malloc(n * d * sizeof(float)), *qv = malloc(d * sizeof(float));
    for (size_t i = 0; i < n * d; i++)
        x[i] = (float)ts_rng_normal(&r) + 0.5f;
    size_t sb = a->ops->store_bytes(a, n);
    uint8_t *sa = calloc(1, sb), *sb2 = calloc(1, sb);
    uint8_t *ca = malloc(a->code_bytes), *cb = malloc(b->code_bytes);
    float *scratch = malloc((a->scratch_floats + 1) * sizeof(float));
    float *da = malloc(d * sizeof(float)), *db = malloc(d * sizeof(float));
    for (size_t i = 0; i < n; i++) {
        a->ops->encode(a, x + i * d, ca, scratch);
        b->ops->encode(b, x + i * d, cb, scratch);
        assert_memory_equal(ca, cb, a->code_bytes);
        a->ops->store(a, sa, i, ca);
        b->ops->store(b, sb2, i, cb);
        a->ops->decode(a, ca, da, scratch);
        b->ops->decode(b, cb, db, scratch);
        assert_memory_equal(da, db, d * sizeof(float));
    }
    size_t qbytes = cm_round_up(a->query_bytes, 64);
    void *qa = aligned_alloc(64, qbytes), *qb = aligned_alloc(64, qbytes);
    float *ea = malloc(n * sizeof(float)), *eb = malloc(n * sizeof(float));
    for (int t = 0; t < 3; t++) {
        for (size_t j = 0; j < d; j++)
            qv[j] = (float)ts_rng_normal(&r);
        a->ops->prepare(a, qv, qa, scratch);
        b->ops->prepare(b, qv, qb, scratch);
        a->ops->scan(a, qa, sa, 0, n, ea);
        b->ops->scan(b, qb, sb2, 0, n, eb);
        assert_memory_equal(ea, eb, n * sizeof(float));
    }
    free(ea);
    free(eb);
    free(qa);
    free(qb);
    free(da);
    free(db);
    free(scratch);
    free(ca);
    free(cb);
    free(sa);
    free(sb2);
    free(x);
    free(qv);
}

typedef struct kind_case {
    const char *spec;
    rotor_metric metric;
    size_t dim;
    size_t train_rows; /* 0: untrained */
} kind_case;

static const kind_case cases[] = {
    {"tq2", ROTOR_METRIC_IP, 100, 0},       /* not a power of two: two windows */
    {"tq4", ROTOR_METRIC_L2, 64, 200},      /* trained centre */
    {"tqip3", ROTOR_METRIC_COSINE, 48, 0},  /* QJL matrix rebuilt from the seed */
    {"bin1", ROTOR_METRIC_IP, 96, 0},       /* */
    {"bin2", ROTOR_METRIC_L2, 128, 300},    /* with centroid */
    {"pq8", ROTOR_METRIC_L2, 32, 400},      /* 256 centroids of 4 dimensions */
    {"pq16x4", ROTOR_METRIC_IP, 64, 300},   /* fast-scan, 16 centroids of 4 */
    {"bin1fs", ROTOR_METRIC_COSINE, 70, 0}, /* fast-scan, a half-empty last field */
    {"bin2fs", ROTOR_METRIC_L2, 64, 200},   /* fast-scan, with centroid */
    {"sq8", ROTOR_METRIC_L2, 50, 100},      /* with centre */
};
#define NCASES (sizeof cases / sizeof cases[0])

static void test_round_trip_gives_identical_codes_and_distances(void **state) {
    (void)state;
    ts_counting_alloc cs = {0};
    rotor_allocator a = ts_counting_allocator(&cs);
    for (size_t c = 0; c < NCASES; c++) {
        const kind_case *k = &cases[c];
        quant *q = make(k->spec, k->metric, k->dim, k->train_rows, 31 + c, &a);
        size_t size;
        uint8_t *b = save(q, &size);
        quant *back = NULL;
        assert_int_equal(quant_load(b, size, &a, &back), ROTOR_OK);
        assert_non_null(back);
        assert_int_equal(back->spec.kind, q->spec.kind);
        assert_int_equal(back->spec.bits, q->spec.bits);
        assert_int_equal(back->spec.m, q->spec.m);
        assert_int_equal(back->dim, q->dim);
        assert_int_equal(back->metric, q->metric);
        assert_true(back->seed == q->seed);
        assert_same_behaviour(q, back, 77 + c);
        /* The block is canonical: saving what was loaded gives it back. */
        size_t size2;
        uint8_t *b2 = save(back, &size2);
        assert_int_equal(size2, size);
        assert_memory_equal(b, b2, size);
        free(b);
        free(b2);
        quant_free(back);
        quant_free(q);
    }
    assert_int_equal(cs.live, 0);
}

static void test_block_holds_only_trained_state(void **state) {
    (void)state;
    rotor_allocator a = cm_allocator_default();
    /* tqip at 48 dimensions: the QJL matrix alone would be 9 KiB. */
    quant *q = make("tqip3", ROTOR_METRIC_IP, 48, 0, 5, &a);
    assert_int_equal(quant_saved_size(q), HDR + 48 * sizeof(float));
    quant_free(q);
    q = make("pq16x4", ROTOR_METRIC_L2, 64, 0, 5, &a);
    assert_int_equal(quant_saved_size(q), HDR); /* untrained: no payload */
    quant_free(q);
}

static void test_untrained_pq_round_trips_untrained(void **state) {
    (void)state;
    ts_counting_alloc cs = {0};
    rotor_allocator a = ts_counting_allocator(&cs);
    quant *q = make("pq8", ROTOR_METRIC_L2, 32, 0, 9, &a);
    size_t size;
    uint8_t *b = save(q, &size);
    assert_int_equal(size, HDR);
    quant *back = NULL;
    assert_int_equal(quant_load(b, size, &a, &back), ROTOR_OK);
    assert_false(back->trained);
    assert_true(back->needs_training);
    /* The seed came back with it: training both on the same rows gives the
     * same codebooks. */
    ts_rng r;
    ts_rng_init(&r, 10);
    const size_t n = 300;
    float *x = malloc(n * 32 * sizeof(float));
    ts_fill_uniform(&r, x, n * 32, -1.0f, 1.0f);
    assert_int_equal(q->ops->train(q, x, n, 1), ROTOR_OK);
    assert_int_equal(back->ops->train(back, x, n, 2), ROTOR_OK);
    q->trained = back->trained = true;
    assert_same_behaviour(q, back, 11);
    free(x);
    free(b);
    quant_free(back);
    quant_free(q);
    assert_int_equal(cs.live, 0);
}

/* ---- malformed blocks --------------------------------------------------- */

/* A saved block of `spec` to corrupt. */
static uint8_t *block_of(const char *spec, rotor_metric metric, size_t dim, size_t rows,
                         size_t *size) {
    rotor_allocator a = cm_allocator_default();
    quant *q = make(spec, metric, dim, rows, 3, &a);
    uint8_t *b = save(q, size);
    quant_free(q);
    return b;
}

/* Loads a block that must be refused with `status` and a sentence holding
 * `words`; nothing may be left allocated. */
static void assert_refused(const uint8_t *b, size_t size, rotor_status status, const char *words) {
    ts_counting_alloc cs = {0};
    rotor_allocator a = ts_counting_allocator(&cs);
    quant *q = (quant *)(uintptr_t)1; /* must be reset to NULL */
    rotor_status st = quant_load(b, size, &a, &q);
    if (st != status || strstr(rotor_last_error(), words) == NULL)
        fail_msg("expected status %d and '%s', got %d and '%s'", (int)status, words, (int)st,
                 rotor_last_error());
    assert_null(q);
    assert_int_equal(cs.live, 0);
}

static void test_refuses_foreign_magic(void **state) {
    (void)state;
    size_t size;
    uint8_t *b = block_of("tq4", ROTOR_METRIC_L2, 16, 0, &size);
    memcpy(b, "XXXX", 4);
    assert_refused(b, size, ROTOR_ERR_FORMAT, "magic 'XXXX', expected 'RQNT'");
    memcpy(b, "RQ\x01\xff", 4);
    assert_refused(b, size, ROTOR_ERR_FORMAT, "magic 'RQ\\x01\\xff'");
    free(b);
}

static void test_refuses_block_shorter_than_header(void **state) {
    (void)state;
    size_t size;
    uint8_t *b = block_of("tq4", ROTOR_METRIC_L2, 16, 0, &size);
    assert_refused(b, 40, ROTOR_ERR_FORMAT,
                   "quantizer block of 40 bytes is shorter than its 56-byte header");
    assert_refused(b, 3, ROTOR_ERR_FORMAT, "3 bytes is shorter than its 56-byte header");
    assert_refused(NULL, 0, ROTOR_ERR_FORMAT, "0 bytes is shorter");
    free(b);
}

static void test_refuses_newer_version_as_unsupported(void **state) {
    (void)state;
    size_t size;
    uint8_t *b = block_of("tq4", ROTOR_METRIC_L2, 16, 0, &size);
    put_u32(b + OFF_VERSION, 7);
    assert_refused(b, size, ROTOR_ERR_UNSUPPORTED,
                   "quantizer block version 7 is newer than this library's 1");
    put_u32(b + OFF_VERSION, 0);
    assert_refused(b, size, ROTOR_ERR_FORMAT, "version 0 is not one this library wrote");
    free(b);
}

static void test_refuses_other_header_size(void **state) {
    (void)state;
    size_t size;
    uint8_t *b = block_of("tq4", ROTOR_METRIC_L2, 16, 0, &size);
    put_u32(b + OFF_HEADER, 64);
    assert_refused(b, size, ROTOR_ERR_FORMAT, "header size is 64, expected 56");
    free(b);
}

static void test_refuses_unknown_kind(void **state) {
    (void)state;
    size_t size;
    uint8_t *b = block_of("tq4", ROTOR_METRIC_L2, 16, 0, &size);
    put_u32(b + OFF_KIND, 9);
    assert_refused(b, size, ROTOR_ERR_FORMAT, "quantizer kind 9 is unknown");
    put_u32(b + OFF_KIND, 0);
    assert_refused(b, size, ROTOR_ERR_FORMAT, "quantizer kind 0 is unknown");
    free(b);
}

static void test_refuses_bits_the_kind_does_not_take(void **state) {
    (void)state;
    size_t size;
    uint8_t *b = block_of("tq4", ROTOR_METRIC_L2, 16, 0, &size);
    put_u32(b + OFF_BITS, 12);
    assert_refused(b, size, ROTOR_ERR_FORMAT, "tq takes 1 to 8 bits, the block says 12");
    put_u32(b + OFF_BITS, 0);
    assert_refused(b, size, ROTOR_ERR_FORMAT, "tq takes 1 to 8 bits, the block says 0");
    put_u32(b + OFF_KIND, QUANT_TQIP);
    put_u32(b + OFF_BITS, 1);
    assert_refused(b, size, ROTOR_ERR_FORMAT, "tqip takes 2 to 8 bits, the block says 1");
    put_u32(b + OFF_KIND, QUANT_BIN);
    put_u32(b + OFF_BITS, 3);
    assert_refused(b, size, ROTOR_ERR_FORMAT, "bin takes 1 or 2 bits, the block says 3");
    free(b);
    b = block_of("pq4", ROTOR_METRIC_L2, 16, 0, &size);
    put_u32(b + OFF_BITS, 4);
    assert_refused(b, size, ROTOR_ERR_FORMAT, "pq takes 8 bits per subspace, the block says 4");
    put_u32(b + OFF_KIND, QUANT_PQ4);
    put_u32(b + OFF_BITS, 8);
    assert_refused(b, size, ROTOR_ERR_FORMAT, "takes 4 bits per subspace, the block says 8");
    free(b);
}

static void test_refuses_subspaces_that_do_not_fit(void **state) {
    (void)state;
    size_t size;
    uint8_t *b = block_of("tq4", ROTOR_METRIC_L2, 16, 0, &size);
    put_u32(b + OFF_M, 4);
    assert_refused(b, size, ROTOR_ERR_FORMAT, "tq4 has no subspaces, the block says 4");
    free(b);
    b = block_of("pq16", ROTOR_METRIC_L2, 128, 0, &size);
    put_u32(b + OFF_M, 0);
    assert_refused(b, size, ROTOR_ERR_FORMAT, "pq needs 1 or more subspaces, the block says 0");
    put_u32(b + OFF_M, 16);
    put_u64(b + OFF_DIM, 100);
    assert_refused(b, size, ROTOR_ERR_FORMAT,
                   "pq16 needs a dimension divisible by 16, the block says 100");
    put_u32(b + OFF_M, 200); /* more subspaces than dimensions */
    put_u64(b + OFF_DIM, 128);
    assert_refused(b, size, ROTOR_ERR_FORMAT, "pq200 needs a dimension divisible by 200");
    free(b);
}

static void test_refuses_zero_and_absurd_dimensions(void **state) {
    (void)state;
    size_t size;
    uint8_t *b = block_of("bin1", ROTOR_METRIC_IP, 16, 0, &size);
    put_u64(b + OFF_DIM, 0);
    assert_refused(b, size, ROTOR_ERR_FORMAT, "dimension 0");
    put_u64(b + OFF_DIM, (uint64_t)1 << 21);
    assert_refused(b, size, ROTOR_ERR_FORMAT, "dimension 2097152, more than the 1048576");
    put_u64(b + OFF_DIM, UINT64_MAX);
    assert_refused(b, size, ROTOR_ERR_FORMAT, "dimension 18446744073709551615");
    free(b);
}

static void test_refuses_unknown_metric(void **state) {
    (void)state;
    size_t size;
    uint8_t *b = block_of("tq4", ROTOR_METRIC_L2, 16, 0, &size);
    put_u32(b + OFF_METRIC, 5);
    assert_refused(b, size, ROTOR_ERR_FORMAT, "metric 5 is unknown");
    free(b);
}

static void test_refuses_bad_trained_flag(void **state) {
    (void)state;
    size_t size;
    uint8_t *b = block_of("tq4", ROTOR_METRIC_L2, 16, 0, &size);
    put_u32(b + OFF_TRAINED, 2);
    assert_refused(b, size, ROTOR_ERR_FORMAT, "trained flag is 2, expected 0 or 1");
    put_u32(b + OFF_TRAINED, 0);
    assert_refused(b, size, ROTOR_ERR_FORMAT, "tq4 needs no training");
    free(b);
}

static void test_refuses_payload_size_the_header_does_not_imply(void **state) {
    (void)state;
    size_t size;
    uint8_t *b = block_of("pq16", ROTOR_METRIC_L2, 128, 300, &size);
    assert_int_equal(size, HDR + 128 * 256 * 4);
    put_u64(b + OFF_PAYLOAD, 1000);
    assert_refused(b, size, ROTOR_ERR_FORMAT,
                   "payload of 1000 bytes, expected 131072 for pq16 of 128 dimensions");
    put_u64(b + OFF_PAYLOAD, UINT64_MAX);
    assert_refused(b, size, ROTOR_ERR_FORMAT, "payload of 18446744073709551615 bytes");
    /* An untrained PQ block carries no codebooks. */
    put_u64(b + OFF_PAYLOAD, 128 * 256 * 4);
    put_u32(b + OFF_TRAINED, 0);
    assert_refused(b, size, ROTOR_ERR_FORMAT, "expected 0 for untrained pq16 of 128 dimensions");
    free(b);
}

static void test_refuses_trailing_bytes(void **state) {
    (void)state;
    size_t size;
    uint8_t *b = block_of("tq4", ROTOR_METRIC_L2, 16, 0, &size);
    uint8_t *longer = calloc(1, size + 3);
    memcpy(longer, b, size);
    assert_refused(longer, size + 3, ROTOR_ERR_FORMAT, "has 3 trailing bytes");
    free(longer);
    free(b);
}

/* Every prefix of a real block, copied to a buffer of exactly that length
 * so ASan sees any read past it. */
static void test_refuses_every_truncation(void **state) {
    (void)state;
    const struct {
        const char *spec;
        rotor_metric metric;
        size_t dim, rows;
    } blocks[] = {
        {"tq3", ROTOR_METRIC_L2, 24, 50},
        {"pq4x4", ROTOR_METRIC_L2, 8, 40},
        {"pq2", ROTOR_METRIC_IP, 4, 0},
    };
    for (size_t k = 0; k < sizeof blocks / sizeof blocks[0]; k++) {
        size_t size;
        uint8_t *b =
            block_of(blocks[k].spec, blocks[k].metric, blocks[k].dim, blocks[k].rows, &size);
        for (size_t len = 0; len < size; len++) {
            uint8_t *cut = malloc(len ? len : 1);
            memcpy(cut, b, len);
            assert_refused(cut, len, ROTOR_ERR_FORMAT,
                           len < HDR ? "is shorter than its 56-byte header" : "is truncated");
            free(cut);
        }
        free(b);
    }
}

/* Loads b and, if accepted, checks the quantizer is whole: it re-saves to
 * the same bytes and encodes and scans without fault. Returns whether the
 * block was accepted. */
static bool load_checked(const uint8_t *b, size_t size) {
    ts_counting_alloc cs = {0};
    rotor_allocator a = ts_counting_allocator(&cs);
    quant *q = NULL;
    rotor_status st = quant_load(b, size, &a, &q);
    if (st != ROTOR_OK) {
        assert_true(st == ROTOR_ERR_FORMAT || st == ROTOR_ERR_UNSUPPORTED);
        assert_null(q);
        assert_true(rotor_last_error()[0] != '\0');
    } else {
        size_t size2;
        uint8_t *b2 = save(q, &size2);
        assert_int_equal(size2, size);
        assert_memory_equal(b, b2, size);
        free(b2);
        assert_same_behaviour(q, q, 1);
        quant_free(q);
    }
    assert_int_equal(cs.live, 0);
    return st == ROTOR_OK;
}

static void test_header_byte_flips_never_crash(void **state) {
    (void)state;
    const uint8_t masks[] = {0x01, 0x02, 0x80, 0xff};
    size_t accepted = 0;
    for (size_t c = 0; c < NCASES; c++) {
        const kind_case *k = &cases[c];
        /* Small shapes of every kind: each accepted flip builds a quantizer. */
        size_t dim = k->dim > 32 ? 32 : k->dim;
        size_t size;
        uint8_t *b = block_of(k->spec, k->metric, dim, k->train_rows, &size);
        for (size_t i = 0; i < HDR; i++)
            for (size_t m = 0; m < sizeof masks; m++) {
                b[i] ^= masks[m];
                accepted += load_checked(b, size);
                b[i] ^= masks[m];
            }
        free(b);
    }
    /* At least every flipped seed bit gives a valid, different quantizer. */
    assert_true(accepted >= NCASES * 8 * sizeof masks);
}

static void test_refuses_non_finite_payload(void **state) {
    (void)state;
    size_t size;
    uint8_t *b = block_of("pq8", ROTOR_METRIC_L2, 32, 300, &size);
    /* Centroid 3 of subspace 2, coordinate 1: (2 * 256 + 3) * dsub + 1. */
    const float nan = NAN, inf = INFINITY;
    uint8_t *p = b + HDR + ((2 * 256 + 3) * 4 + 1) * sizeof(float);
    float keep;
    memcpy(&keep, p, sizeof keep);
    memcpy(p, &nan, sizeof nan);
    assert_refused(b, size, ROTOR_ERR_FORMAT, "pq8 centroid 3 of subspace 2 holds NaN");
    memcpy(p, &inf, sizeof inf);
    assert_refused(b, size, ROTOR_ERR_FORMAT, "centroid 3 of subspace 2 holds infinity");
    memcpy(p, &keep, sizeof keep);
    load_checked(b, size);
    free(b);

    b = block_of("tq4", ROTOR_METRIC_L2, 16, 50, &size);
    memcpy(b + HDR + 5 * sizeof(float), &nan, sizeof nan);
    assert_refused(b, size, ROTOR_ERR_FORMAT, "tq4 TurboQuant centre holds NaN at dimension 5");
    free(b);
    b = block_of("bin2", ROTOR_METRIC_L2, 16, 50, &size);
    memcpy(b + HDR + 15 * sizeof(float), &inf, sizeof inf);
    assert_refused(b, size, ROTOR_ERR_FORMAT,
                   "bin2 binary centroid holds infinity at dimension 15");
    free(b);
}

static void test_refuses_centre_under_inner_product(void **state) {
    (void)state;
    size_t size;
    uint8_t *b = block_of("tqip3", ROTOR_METRIC_IP, 16, 0, &size);
    const float half = 0.5f;
    memcpy(b + HDR + 3 * sizeof(float), &half, sizeof half);
    assert_refused(b, size, ROTOR_ERR_FORMAT, "centre for inner product is not zero");
    free(b);
    b = block_of("bin1", ROTOR_METRIC_COSINE, 16, 0, &size);
    memcpy(b + HDR, &half, sizeof half);
    assert_refused(b, size, ROTOR_ERR_FORMAT, "centroid for cosine is not zero");
    free(b);
}

/* A block every field of which is in range, but whose quantizer cannot be
 * built: tqip's QJL matrix at 20000 dimensions passes 2^28 cells. */
static void test_refuses_block_that_cannot_be_rebuilt(void **state) {
    (void)state;
    const size_t dim = 20000, size = HDR + dim * sizeof(float);
    size_t small;
    uint8_t *head = block_of("tqip2", ROTOR_METRIC_IP, 16, 0, &small);
    uint8_t *b = calloc(1, size);
    memcpy(b, head, HDR);
    put_u64(b + OFF_DIM, dim);
    put_u64(b + OFF_PAYLOAD, dim * sizeof(float));
    assert_refused(b, size, ROTOR_ERR_FORMAT, "quantizer block cannot be rebuilt: the QJL sketch");
    free(b);
    free(head);
}

static void test_every_allocation_failure_is_reported_and_leak_free(void **state) {
    (void)state;
    for (size_t c = 0; c < NCASES; c++) {
        size_t size;
        uint8_t *b =
            block_of(cases[c].spec, cases[c].metric, cases[c].dim, cases[c].train_rows, &size);
        for (long fail = 1;; fail++) {
            ts_counting_alloc cs = {.fail_at = fail};
            rotor_allocator a = ts_counting_allocator(&cs);
            quant *q = NULL;
            rotor_status st = quant_load(b, size, &a, &q);
            if (st == ROTOR_OK) {
                quant_free(q);
                assert_int_equal(cs.live, 0);
                break;
            }
            assert_int_equal(st, ROTOR_ERR_OUT_OF_MEMORY);
            assert_null(q);
            assert_non_null(strstr(rotor_last_error(), "out of memory"));
            assert_int_equal(cs.live, 0);
        }
        free(b);
    }
}

static void test_save_refuses_short_buffer(void **state) {
    (void)state;
    rotor_allocator a = cm_allocator_default();
    quant *q = make("tq4", ROTOR_METRIC_L2, 16, 0, 1, &a);
    uint8_t b[HDR + 16 * 4];
    assert_int_equal(quant_save(q, b, sizeof b - 1), ROTOR_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(rotor_last_error(), "needs 120 bytes, the buffer has 119"));
    assert_int_equal(quant_save(q, b, sizeof b), ROTOR_OK);
    quant_free(q);
}

/* ---- the fuzz corpus ---------------------------------------------------- */

static void write_block(const char *dir, const char *name, const uint8_t *b, size_t n) {
    char *path = ts_path(dir, name);
    ts_write_file(path, b, n);
    free(path);
}

/* The seed corpus of tests/fuzz/fuzz_quant_load.c: small valid blocks of
 * every kind and a few broken ones. Written on request only; the files are
 * committed. */
static void write_corpus(const char *dir) {
    static const struct {
        const char *name, *spec;
        rotor_metric metric;
        size_t dim, rows;
    } valid[] = {
        {"valid_tq4_l2", "tq4", ROTOR_METRIC_L2, 16, 40},
        {"valid_tq1_ip", "tq1", ROTOR_METRIC_IP, 5, 0},
        {"valid_tqip3_cos", "tqip3", ROTOR_METRIC_COSINE, 8, 0},
        {"valid_bin1_ip", "bin1", ROTOR_METRIC_IP, 9, 0},
        {"valid_bin2_l2", "bin2", ROTOR_METRIC_L2, 12, 40},
        {"valid_pq2_l2", "pq2", ROTOR_METRIC_L2, 4, 300},
        {"valid_pq2x4_ip", "pq2x4", ROTOR_METRIC_IP, 8, 40},
        {"valid_pq4_untrained", "pq4", ROTOR_METRIC_L2, 16, 0},
        {"valid_bin1fs_cos", "bin1fs", ROTOR_METRIC_COSINE, 9, 0},
        {"valid_bin2fs_l2", "bin2fs", ROTOR_METRIC_L2, 6, 30},
        {"valid_sq8_ip", "sq8", ROTOR_METRIC_IP, 12, 0},
    };
    for (size_t i = 0; i < sizeof valid / sizeof valid[0]; i++) {
        size_t size;
        uint8_t *b = block_of(valid[i].spec, valid[i].metric, valid[i].dim, valid[i].rows, &size);
        write_block(dir, valid[i].name, b, size);
        if (i == 0) {
            write_block(dir, "bad_truncated", b, size - 5);
            write_block(dir, "bad_header_only", b, 40);
            b[0] = 'X';
            write_block(dir, "bad_magic", b, size);
            b[0] = 'R';
            put_u32(b + OFF_VERSION, 2);
            write_block(dir, "bad_version", b, size);
            put_u32(b + OFF_VERSION, 1);
            put_u32(b + OFF_KIND, 9);
            write_block(dir, "bad_kind", b, size);
            put_u32(b + OFF_KIND, QUANT_TQ);
            put_u64(b + OFF_DIM, 1u << 30);
            write_block(dir, "bad_dim_absurd", b, size);
        }
        if (strcmp(valid[i].spec, "pq2") == 0) {
            const float nan = NAN;
            memcpy(b + HDR + (256 * 2 + 3) * sizeof(float), &nan, sizeof nan);
            write_block(dir, "bad_nan_centroid", b, size);
        }
        if (strcmp(valid[i].spec, "pq4") == 0) {
            put_u64(b + OFF_DIM, 18);
            write_block(dir, "bad_dim_not_divisible", b, size);
        }
        free(b);
    }
    write_block(dir, "bad_empty", (const uint8_t *)"", 0);
}

static void test_corpus_blocks_load_and_resave_identically(void **state) {
    (void)state;
    const char *write_to = getenv("ROTOR_WRITE_QUANT_CORPUS");
    if (write_to != NULL && *write_to != '\0')
        write_corpus(write_to);
    DIR *d = opendir(ROTOR_QUANT_CORPUS);
    assert_non_null(d);
    size_t valid = 0, bad = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        bool is_valid = strncmp(e->d_name, "valid_", 6) == 0;
        if (!is_valid && strncmp(e->d_name, "bad_", 4) != 0)
            continue; /* past crashers: the replay test covers them */
        char *path = ts_path(ROTOR_QUANT_CORPUS, e->d_name);
        size_t n;
        uint8_t *b = ts_read_file(path, &n);
        ts_counting_alloc cs = {0};
        rotor_allocator a = ts_counting_allocator(&cs);
        quant *q = NULL;
        rotor_status st = quant_load(b, n, &a, &q);
        if (is_valid) {
            if (st != ROTOR_OK)
                fail_msg("%s: %s", e->d_name, rotor_last_error());
            load_checked(b, n);
            valid++;
        } else {
            if (st == ROTOR_OK)
                fail_msg("%s loads, yet it is meant to be refused", e->d_name);
            bad++;
        }
        quant_free(q);
        assert_int_equal(cs.live, 0);
        free(b);
        free(path);
    }
    closedir(d);
    assert_true(valid >= 5);
    assert_true(bad >= 5);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_gives_identical_codes_and_distances),
        cmocka_unit_test(test_block_holds_only_trained_state),
        cmocka_unit_test(test_untrained_pq_round_trips_untrained),
        cmocka_unit_test(test_refuses_foreign_magic),
        cmocka_unit_test(test_refuses_block_shorter_than_header),
        cmocka_unit_test(test_refuses_newer_version_as_unsupported),
        cmocka_unit_test(test_refuses_other_header_size),
        cmocka_unit_test(test_refuses_unknown_kind),
        cmocka_unit_test(test_refuses_bits_the_kind_does_not_take),
        cmocka_unit_test(test_refuses_subspaces_that_do_not_fit),
        cmocka_unit_test(test_refuses_zero_and_absurd_dimensions),
        cmocka_unit_test(test_refuses_unknown_metric),
        cmocka_unit_test(test_refuses_bad_trained_flag),
        cmocka_unit_test(test_refuses_payload_size_the_header_does_not_imply),
        cmocka_unit_test(test_refuses_trailing_bytes),
        cmocka_unit_test(test_refuses_every_truncation),
        cmocka_unit_test(test_header_byte_flips_never_crash),
        cmocka_unit_test(test_refuses_non_finite_payload),
        cmocka_unit_test(test_refuses_centre_under_inner_product),
        cmocka_unit_test(test_refuses_block_that_cannot_be_rebuilt),
        cmocka_unit_test(test_every_allocation_failure_is_reported_and_leak_free),
        cmocka_unit_test(test_save_refuses_short_buffer),
        cmocka_unit_test(test_corpus_blocks_load_and_resave_identically),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
