/*
 * Data set files: round trips for every writable format and element type,
 * conversion to float32, streaming reads, IDX (plain and gzip), and every
 * malformed file the readers must refuse with a sentence naming the file
 * and the fault. Malformed files are built byte by byte here, so each test
 * shows exactly what is wrong with its input.
 */
#include "support/support.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "storage/storage.h"

#ifndef ROTOR_SOURCE_DIR
#define ROTOR_SOURCE_DIR "."
#endif

static char *g_dir;

static int group_setup(void **state) {
    (void)state;
    g_dir = ts_tmpdir_create();
    return 0;
}

static int group_teardown(void **state) {
    (void)state;
    ts_tmpdir_remove(g_dir);
    g_dir = NULL;
    return 0;
}

/* A path in the test directory; freed by the caller. */
static char *tmp_path(const char *name) { return ts_path(g_dir, name); }

/* Reading `path` must fail with `want` and name the file and the words. */
#define EXPECT_READ_FAILS(path, want, ...)                                                         \
    do {                                                                                           \
        rotor_matrix m_;                                                                           \
        rotor_status st_ = rotor_matrix_read((path), -1, 0, &m_);                                  \
        TS_CHECK_ERROR(st_, (want), (path), __VA_ARGS__);                                          \
        assert_null(m_.data);                                                                      \
        assert_int_equal(m_.rows, 0);                                                              \
    } while (0)

/* ---- byte builder ------------------------------------------------------- */

typedef struct bytes {
    unsigned char *p;
    size_t n, cap;
} bytes;

static void put(bytes *b, const void *data, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        assert_non_null(b->p);
    }
    memcpy(b->p + b->n, data, n);
    b->n += n;
}

static void put_u32le(bytes *b, uint32_t v) {
    unsigned char x[4] = {(unsigned char)v, (unsigned char)(v >> 8), (unsigned char)(v >> 16),
                          (unsigned char)(v >> 24)};
    put(b, x, 4);
}

static void put_u32be(bytes *b, uint32_t v) {
    unsigned char x[4] = {(unsigned char)(v >> 24), (unsigned char)(v >> 16),
                          (unsigned char)(v >> 8), (unsigned char)v};
    put(b, x, 4);
}

static void put_f32(bytes *b, float v) { put(b, &v, 4); }

static void put_zeros(bytes *b, size_t n) {
    unsigned char z[256] = {0};
    while (n > 0) {
        size_t k = n < sizeof z ? n : sizeof z;
        put(b, z, k);
        n -= k;
    }
}

static void write_bytes(const char *path, const bytes *b) { ts_write_file(path, b->p, b->n); }

/* An fvecs body: rows records of dim floats, value = row + col / 1000. */
static void put_fvecs(bytes *b, size_t rows, size_t dim) {
    for (size_t i = 0; i < rows; i++) {
        put_u32le(b, (uint32_t)dim);
        for (size_t j = 0; j < dim; j++)
            put_f32(b, (float)i + (float)j / 1000.0f);
    }
}

/* A .npy file with the given version byte, dict text and payload. */
static void write_npy_raw(const char *path, int major, const char *dict, const void *data,
                          size_t n) {
    bytes b = {0};
    const unsigned char magic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};
    put(&b, magic, 6);
    unsigned char ver[2] = {(unsigned char)major, 0};
    put(&b, ver, 2);
    size_t prefix = major == 1 ? 10 : 12;
    size_t len = strlen(dict);
    size_t total = (prefix + len + 1 + 63) / 64 * 64;
    size_t hlen = total - prefix;
    if (major == 1) {
        unsigned char l[2] = {(unsigned char)hlen, (unsigned char)(hlen >> 8)};
        put(&b, l, 2);
    } else {
        put_u32le(&b, (uint32_t)hlen);
    }
    put(&b, dict, len);
    for (size_t i = 0; i < hlen - len - 1; i++)
        put(&b, " ", 1);
    put(&b, "\n", 1);
    if (n > 0)
        put(&b, data, n);
    write_bytes(path, &b);
    free(b.p);
}

/* An IDX byte image: magic 00 00 type ndim, sizes, then the payload given. */
static void put_idx(bytes *b, unsigned type, unsigned ndim, const uint32_t *dims,
                    const void *payload, size_t n) {
    unsigned char magic[4] = {0, 0, (unsigned char)type, (unsigned char)ndim};
    put(b, magic, 4);
    for (unsigned i = 0; i < ndim; i++)
        put_u32be(b, dims[i]);
    if (n > 0)
        put(b, payload, n);
}

static void write_gz(const char *path, const void *data, size_t n) {
    gzFile gz = gzopen(path, "wb6");
    assert_non_null(gz);
    if (n > 0)
        assert_int_equal(gzwrite(gz, data, (unsigned)n), (int)n);
    assert_int_equal(gzclose(gz), Z_OK);
}

/* ---- random matrices ---------------------------------------------------- */

static rotor_matrix random_matrix(ts_rng *rng, rotor_elem_type type, size_t rows, size_t cols) {
    rotor_matrix m = {NULL, rows, cols, type};
    size_t n = rows * cols, es = rotor_elem_size(type);
    m.data = malloc(n * es + 1);
    assert_non_null(m.data);
    for (size_t i = 0; i < n; i++) {
        uint64_t x = ts_rng_next(rng);
        switch (type) {
        case ROTOR_ELEM_F32: ((float *)m.data)[i] = (float)(ts_rng_normal(rng) * 100.0); break;
        case ROTOR_ELEM_U8: ((uint8_t *)m.data)[i] = (uint8_t)x; break;
        case ROTOR_ELEM_I8: ((int8_t *)m.data)[i] = (int8_t)(uint8_t)x; break;
        case ROTOR_ELEM_I32: ((int32_t *)m.data)[i] = (int32_t)(uint32_t)x; break;
        case ROTOR_ELEM_I64:
            ((int64_t *)m.data)[i] = (int64_t)(x >> 11);
            break; /* exact in double */
        }
    }
    return m;
}

static double elem_as_double(const rotor_matrix *m, size_t i) {
    switch (m->type) {
    case ROTOR_ELEM_F32: return ((const float *)m->data)[i];
    case ROTOR_ELEM_U8: return ((const uint8_t *)m->data)[i];
    case ROTOR_ELEM_I8: return ((const int8_t *)m->data)[i];
    case ROTOR_ELEM_I32: return ((const int32_t *)m->data)[i];
    case ROTOR_ELEM_I64: return (double)((const int64_t *)m->data)[i];
    }
    return 0;
}

/* Writes a random matrix, reads it back with its own type and as float32,
 * probes it, and compares. */
static void round_trip(const char *name, rotor_elem_type type, rotor_file_format format) {
    ts_rng rng;
    ts_rng_init(&rng, 1000 + (uint64_t)format * 10 + (uint64_t)type);
    char *path = tmp_path(name);
    const size_t rows = 37, cols = 13;
    rotor_matrix m = random_matrix(&rng, type, rows, cols);
    assert_int_equal(rotor_matrix_write(path, &m), ROTOR_OK);
    assert_string_equal(rotor_last_error(), "");

    rotor_file_info info;
    assert_int_equal(rotor_file_probe(path, &info), ROTOR_OK);
    assert_int_equal(info.format, format);
    assert_int_equal(info.type, type);
    assert_int_equal(info.rows, rows);
    assert_int_equal(info.cols, cols);
    assert_int_equal(info.compressed, 0);

    rotor_matrix back;
    assert_int_equal(rotor_matrix_read(path, -1, 0, &back), ROTOR_OK);
    assert_int_equal(back.type, type);
    assert_int_equal(back.rows, rows);
    assert_int_equal(back.cols, cols);
    assert_memory_equal(back.data, m.data, rows * cols * rotor_elem_size(type));
    rotor_matrix_free(&back);
    assert_null(back.data);

    rotor_matrix f;
    assert_int_equal(rotor_matrix_read(path, ROTOR_ELEM_F32, 0, &f), ROTOR_OK);
    assert_int_equal(f.type, ROTOR_ELEM_F32);
    assert_int_equal(f.rows, rows);
    for (size_t i = 0; i < rows * cols; i++)
        assert_true(((const float *)f.data)[i] == (float)elem_as_double(&m, i));
    rotor_matrix_free(&f);
    free(m.data);
    free(path);
}

static void test_fvecs_round_trip(void **state) {
    (void)state;
    round_trip("rt.fvecs", ROTOR_ELEM_F32, ROTOR_FORMAT_FVECS);
}

static void test_ivecs_round_trip(void **state) {
    (void)state;
    round_trip("rt.ivecs", ROTOR_ELEM_I32, ROTOR_FORMAT_IVECS);
}

static void test_bvecs_round_trip(void **state) {
    (void)state;
    round_trip("rt.bvecs", ROTOR_ELEM_U8, ROTOR_FORMAT_BVECS);
}

static void test_fbin_round_trip(void **state) {
    (void)state;
    round_trip("rt.fbin", ROTOR_ELEM_F32, ROTOR_FORMAT_FBIN);
}

static void test_u8bin_round_trip(void **state) {
    (void)state;
    round_trip("rt.u8bin", ROTOR_ELEM_U8, ROTOR_FORMAT_U8BIN);
}

static void test_i8bin_round_trip(void **state) {
    (void)state;
    round_trip("rt.i8bin", ROTOR_ELEM_I8, ROTOR_FORMAT_I8BIN);
}

static void test_ibin_round_trip(void **state) {
    (void)state;
    round_trip("rt.ibin", ROTOR_ELEM_I32, ROTOR_FORMAT_IBIN);
}

static void test_npy_round_trip_every_type(void **state) {
    (void)state;
    round_trip("rt_f32.npy", ROTOR_ELEM_F32, ROTOR_FORMAT_NPY);
    round_trip("rt_u8.npy", ROTOR_ELEM_U8, ROTOR_FORMAT_NPY);
    round_trip("rt_i8.npy", ROTOR_ELEM_I8, ROTOR_FORMAT_NPY);
    round_trip("rt_i32.npy", ROTOR_ELEM_I32, ROTOR_FORMAT_NPY);
    round_trip("rt_i64.npy", ROTOR_ELEM_I64, ROTOR_FORMAT_NPY);
}

/* The bytes on disk are the published layouts, not just self-consistent. */
static void test_written_files_have_the_published_layout(void **state) {
    (void)state;
    float x[6] = {1, 2, 3, 4, 5, 6};
    rotor_matrix m = {x, 2, 3, ROTOR_ELEM_F32};
    size_t n;

    char *p = tmp_path("layout.fvecs");
    assert_int_equal(rotor_matrix_write(p, &m), ROTOR_OK);
    unsigned char *b = ts_read_file(p, &n);
    assert_int_equal(n, 2 * (4 + 12));
    assert_int_equal(ds_le32(b), 3);
    assert_memory_equal(b + 4, x, 12);
    assert_int_equal(ds_le32(b + 16), 3);
    assert_memory_equal(b + 20, x + 3, 12);
    free(b);
    free(p);

    p = tmp_path("layout.fbin");
    assert_int_equal(rotor_matrix_write(p, &m), ROTOR_OK);
    b = ts_read_file(p, &n);
    assert_int_equal(n, 8 + 24);
    assert_int_equal(ds_le32(b), 2);
    assert_int_equal(ds_le32(b + 4), 3);
    assert_memory_equal(b + 8, x, 24);
    free(b);
    free(p);

    p = tmp_path("layout.npy");
    assert_int_equal(rotor_matrix_write(p, &m), ROTOR_OK);
    b = ts_read_file(p, &n);
    assert_int_equal(n, 128 + 24);
    assert_memory_equal(b, "\x93NUMPY\x01\x00", 8);
    assert_int_equal(b[8] | b[9] << 8, 118);
    assert_non_null(strstr((const char *)b + 10,
                           "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }"));
    assert_int_equal(b[127], '\n');
    assert_memory_equal(b + 128, x, 24);
    free(b);
    free(p);
}

static void test_format_is_told_by_extension(void **state) {
    (void)state;
    assert_int_equal(ds_format_from_path("a/b.fvecs"), ROTOR_FORMAT_FVECS);
    assert_int_equal(ds_format_from_path("B.IVECS"), ROTOR_FORMAT_IVECS);
    assert_int_equal(ds_format_from_path("x.y/z.bvecs"), ROTOR_FORMAT_BVECS);
    assert_int_equal(ds_format_from_path("q.fbin"), ROTOR_FORMAT_FBIN);
    assert_int_equal(ds_format_from_path("q.u8bin"), ROTOR_FORMAT_U8BIN);
    assert_int_equal(ds_format_from_path("q.i8bin"), ROTOR_FORMAT_I8BIN);
    assert_int_equal(ds_format_from_path("q.ibin"), ROTOR_FORMAT_IBIN);
    assert_int_equal(ds_format_from_path("q.npy"), ROTOR_FORMAT_NPY);
    assert_int_equal(ds_format_from_path("train-images-idx3-ubyte.gz"), ROTOR_FORMAT_UNKNOWN);
    assert_int_equal(ds_format_from_path("dir.fvecs/noext"), ROTOR_FORMAT_UNKNOWN);
    assert_int_equal(ds_format_from_path(".fvecs"), ROTOR_FORMAT_UNKNOWN);
    assert_string_equal(rotor_file_format_name(ROTOR_FORMAT_FVECS), "fvecs");
    assert_string_equal(rotor_file_format_name(ROTOR_FORMAT_I8BIN), "i8bin");
    assert_string_equal(rotor_file_format_name(ROTOR_FORMAT_NPY), "npy");
    assert_string_equal(rotor_file_format_name(ROTOR_FORMAT_IDX), "idx");
    assert_string_equal(rotor_file_format_name(ROTOR_FORMAT_UNKNOWN), "unknown");
    assert_string_equal(rotor_file_format_name((rotor_file_format)99), "unknown");
}

/* ---- conversion and partial reads --------------------------------------- */

static void test_read_converts_integers_to_float(void **state) {
    (void)state;
    uint8_t u[4] = {0, 1, 128, 255};
    int8_t s[4] = {-128, -1, 0, 127};
    int32_t w[4] = {-100000, -1, 0, 16777216};
    const struct {
        const char *name;
        void *data;
        rotor_elem_type type;
        float want[4];
    } cases[] = {
        {"conv.u8bin", u, ROTOR_ELEM_U8, {0, 1, 128, 255}},
        {"conv.i8bin", s, ROTOR_ELEM_I8, {-128, -1, 0, 127}},
        {"conv.ibin", w, ROTOR_ELEM_I32, {-100000, -1, 0, 16777216}},
        {"conv.bvecs", u, ROTOR_ELEM_U8, {0, 1, 128, 255}},
        {"conv_i8.npy", s, ROTOR_ELEM_I8, {-128, -1, 0, 127}},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        char *p = tmp_path(cases[c].name);
        rotor_matrix m = {cases[c].data, 2, 2, cases[c].type};
        assert_int_equal(rotor_matrix_write(p, &m), ROTOR_OK);
        rotor_matrix f;
        assert_int_equal(rotor_matrix_read(p, ROTOR_ELEM_F32, 0, &f), ROTOR_OK);
        assert_int_equal(f.type, ROTOR_ELEM_F32);
        assert_int_equal(f.rows, 2);
        assert_int_equal(f.cols, 2);
        assert_memory_equal(f.data, cases[c].want, sizeof cases[c].want);
        rotor_matrix_free(&f);
        free(p);
    }
}

static void test_read_rejects_other_target_types(void **state) {
    (void)state;
    char *p = tmp_path("target.u8bin");
    uint8_t u[4] = {1, 2, 3, 4};
    rotor_matrix m = {u, 2, 2, ROTOR_ELEM_U8};
    assert_int_equal(rotor_matrix_write(p, &m), ROTOR_OK);
    const int bad[] = {ROTOR_ELEM_U8, ROTOR_ELEM_I8, ROTOR_ELEM_I32, 7, -2};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        rotor_matrix out;
        rotor_status st = rotor_matrix_read(p, bad[i], 0, &out);
        TS_CHECK_ERROR(st, ROTOR_ERR_INVALID_ARGUMENT, p, "as_type", "ROTOR_ELEM_F32");
        assert_null(out.data);
    }
    free(p);
}

static void test_read_max_rows_reads_a_prefix(void **state) {
    (void)state;
    char *p = tmp_path("prefix.fvecs");
    bytes b = {0};
    put_fvecs(&b, 50, 6);
    write_bytes(p, &b);
    rotor_matrix m;
    assert_int_equal(rotor_matrix_read(p, -1, 7, &m), ROTOR_OK);
    assert_int_equal(m.rows, 7);
    assert_int_equal(m.cols, 6);
    assert_true(((float *)m.data)[6 * 6 + 5] == 6.005f);
    rotor_matrix_free(&m);
    assert_int_equal(rotor_matrix_read(p, ROTOR_ELEM_F32, 1000, &m), ROTOR_OK);
    assert_int_equal(m.rows, 50);
    rotor_matrix_free(&m);
    free(b.p);
    free(p);
}

static void test_matrix_free_accepts_zeroed_matrix(void **state) {
    (void)state;
    rotor_matrix m;
    memset(&m, 0, sizeof m);
    rotor_matrix_free(&m);
    rotor_matrix_free(NULL);
    assert_null(m.data);
}

static void test_entry_points_reject_null_arguments(void **state) {
    (void)state;
    rotor_matrix m;
    rotor_file_info info;
    size_t got = 5;
    TS_CHECK_ERROR(rotor_matrix_read(NULL, -1, 0, &m), ROTOR_ERR_INVALID_ARGUMENT, NULL, "path");
    TS_CHECK_ERROR(rotor_matrix_read("x.fvecs", -1, 0, NULL), ROTOR_ERR_INVALID_ARGUMENT, NULL,
                   "NULL");
    TS_CHECK_ERROR(rotor_file_probe(NULL, &info), ROTOR_ERR_INVALID_ARGUMENT, NULL, "path");
    TS_CHECK_ERROR(rotor_file_probe("x.fvecs", NULL), ROTOR_ERR_INVALID_ARGUMENT, NULL, "NULL");
    TS_CHECK_ERROR(rotor_reader_open("x.fvecs", NULL), ROTOR_ERR_INVALID_ARGUMENT, NULL, "NULL");
    TS_CHECK_ERROR(rotor_reader_read(NULL, &m, 1, &got), ROTOR_ERR_INVALID_ARGUMENT, NULL,
                   "reader");
    assert_int_equal(got, 0);
    TS_CHECK_ERROR(rotor_matrix_write(NULL, &m), ROTOR_ERR_INVALID_ARGUMENT, NULL, "path");
    TS_CHECK_ERROR(rotor_matrix_write("x.fvecs", NULL), ROTOR_ERR_INVALID_ARGUMENT, "x.fvecs",
                   "NULL");
    assert_null(rotor_reader_info(NULL));
    rotor_reader_close(NULL);
}

/* ---- streaming ---------------------------------------------------------- */

/* Reading `path` through the streaming reader in chunks of 1, 7 and 1000
 * rows gives the same bytes as the whole-file read. */
static void check_streaming(const char *path) {
    rotor_matrix whole;
    assert_int_equal(rotor_matrix_read(path, -1, 0, &whole), ROTOR_OK);
    size_t row_bytes = whole.cols * rotor_elem_size(whole.type);
    const size_t chunks[] = {1, 7, 1000};
    for (size_t c = 0; c < 3; c++) {
        rotor_reader *r;
        assert_int_equal(rotor_reader_open(path, &r), ROTOR_OK);
        const rotor_file_info *info = rotor_reader_info(r);
        assert_int_equal(info->rows, whole.rows);
        assert_int_equal(info->cols, whole.cols);
        assert_int_equal(info->type, whole.type);
        unsigned char *buf = malloc(chunks[c] * row_bytes);
        assert_non_null(buf);
        size_t done = 0, got, calls = 0;
        for (;;) {
            assert_int_equal(rotor_reader_read(r, buf, chunks[c], &got), ROTOR_OK);
            if (got == 0)
                break;
            assert_true(got <= chunks[c]);
            assert_true(done + got <= whole.rows);
            assert_memory_equal(buf, (unsigned char *)whole.data + done * row_bytes,
                                got * row_bytes);
            done += got;
            calls++;
        }
        assert_int_equal(done, whole.rows);
        assert_int_equal(calls, (whole.rows + chunks[c] - 1) / chunks[c]);
        /* Past the end stays at the end; asking for 0 rows reads none. */
        assert_int_equal(rotor_reader_read(r, buf, chunks[c], &got), ROTOR_OK);
        assert_int_equal(got, 0);
        assert_int_equal(rotor_reader_read(r, NULL, 0, &got), ROTOR_OK);
        assert_int_equal(got, 0);
        free(buf);
        rotor_reader_close(r);
    }
    rotor_matrix_free(&whole);
}

static void test_reader_streams_in_chunks(void **state) {
    (void)state;
    ts_rng rng;
    ts_rng_init(&rng, 77);
    const struct {
        const char *name;
        rotor_elem_type type;
    } cases[] = {
        {"stream.fvecs", ROTOR_ELEM_F32}, {"stream.bvecs", ROTOR_ELEM_U8},
        {"stream.ivecs", ROTOR_ELEM_I32}, {"stream.fbin", ROTOR_ELEM_F32},
        {"stream.i8bin", ROTOR_ELEM_I8},  {"stream.npy", ROTOR_ELEM_F32},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        char *p = tmp_path(cases[c].name);
        rotor_matrix m = random_matrix(&rng, cases[c].type, 2503, 17);
        assert_int_equal(rotor_matrix_write(p, &m), ROTOR_OK);
        check_streaming(p);
        free(m.data);
        free(p);
    }
    /* IDX, plain and gzip-compressed. */
    rotor_matrix m = random_matrix(&rng, ROTOR_ELEM_U8, 2503, 12);
    uint32_t dims[3] = {2503, 3, 4};
    bytes b = {0};
    put_idx(&b, 0x08, 3, dims, m.data, 2503 * 12);
    char *p = tmp_path("stream-idx3-ubyte");
    write_bytes(p, &b);
    check_streaming(p);
    free(p);
    p = tmp_path("stream-idx3-ubyte.gz");
    write_gz(p, b.p, b.n);
    check_streaming(p);
    free(p);
    free(b.p);
    free(m.data);
}

/* A NaN stops the stream at its chunk, and the reader keeps failing. */
static void test_reader_fails_at_nan_and_stays_failed(void **state) {
    (void)state;
    char *p = tmp_path("stream_nan.fbin");
    bytes b = {0};
    put_u32le(&b, 10);
    put_u32le(&b, 4);
    for (int i = 0; i < 40; i++)
        put_f32(&b, i == 6 * 4 + 2 ? NAN : (float)i);
    write_bytes(p, &b);
    rotor_reader *r;
    assert_int_equal(rotor_reader_open(p, &r), ROTOR_OK);
    float buf[4 * 4];
    size_t got;
    assert_int_equal(rotor_reader_read(r, buf, 4, &got), ROTOR_OK);
    assert_int_equal(got, 4);
    TS_CHECK_ERROR(rotor_reader_read(r, buf, 4, &got), ROTOR_ERR_NOT_FINITE, p, "row 6, column 2",
                   "NaN");
    assert_int_equal(got, 0);
    TS_CHECK_ERROR(rotor_reader_read(r, buf, 4, &got), ROTOR_ERR_NOT_FINITE, p, "row 6, column 2",
                   "NaN");
    rotor_reader_close(r);
    free(b.p);
    free(p);
}

/* ---- IDX ---------------------------------------------------------------- */

static void fill_images(uint8_t *px, size_t n) {
    for (size_t i = 0; i < n; i++)
        px[i] = (uint8_t)(i * 7 + i / 13);
}

static void check_images(const char *path, int compressed) {
    rotor_file_info info;
    assert_int_equal(rotor_file_probe(path, &info), ROTOR_OK);
    assert_int_equal(info.format, ROTOR_FORMAT_IDX);
    assert_int_equal(info.type, ROTOR_ELEM_U8);
    assert_int_equal(info.rows, 5);
    assert_int_equal(info.cols, 28 * 28);
    assert_int_equal(info.compressed, compressed);
    uint8_t px[5 * 28 * 28];
    fill_images(px, sizeof px);
    rotor_matrix m;
    assert_int_equal(rotor_matrix_read(path, -1, 0, &m), ROTOR_OK);
    assert_int_equal(m.type, ROTOR_ELEM_U8);
    assert_int_equal(m.rows, 5);
    assert_int_equal(m.cols, 784);
    assert_memory_equal(m.data, px, sizeof px);
    rotor_matrix_free(&m);
    assert_int_equal(rotor_matrix_read(path, ROTOR_ELEM_F32, 2, &m), ROTOR_OK);
    assert_int_equal(m.rows, 2);
    assert_true(((float *)m.data)[784 + 3] == (float)px[784 + 3]);
    rotor_matrix_free(&m);
}

static void image_file(bytes *b) {
    uint8_t px[5 * 28 * 28];
    fill_images(px, sizeof px);
    uint32_t dims[3] = {5, 28, 28};
    put_idx(b, 0x08, 3, dims, px, sizeof px);
}

static void test_idx_reads_images(void **state) {
    (void)state;
    bytes b = {0};
    image_file(&b);
    char *p = tmp_path("train-images-idx3-ubyte");
    write_bytes(p, &b);
    check_images(p, 0);
    free(p);
    free(b.p);
}

static void test_idx_gz_reads_images(void **state) {
    (void)state;
    bytes b = {0};
    image_file(&b);
    char *p = tmp_path("train-images-idx3-ubyte.gz");
    write_gz(p, b.p, b.n);
    check_images(p, 1);
    free(p);
    free(b.p);
}

static void test_idx_reads_labels_as_a_column(void **state) {
    (void)state;
    uint8_t labels[6] = {3, 1, 4, 1, 5, 9};
    uint32_t dims[1] = {6};
    bytes b = {0};
    put_idx(&b, 0x08, 1, dims, labels, 6);
    char *p = tmp_path("t10k-labels-idx1-ubyte.gz");
    write_gz(p, b.p, b.n);
    rotor_matrix m;
    assert_int_equal(rotor_matrix_read(p, -1, 0, &m), ROTOR_OK);
    assert_int_equal(m.rows, 6);
    assert_int_equal(m.cols, 1);
    assert_memory_equal(m.data, labels, 6);
    rotor_matrix_free(&m);
    free(p);
    free(b.p);
}

static void test_idx_gz_rejects_truncated_stream(void **state) {
    (void)state;
    bytes b = {0};
    image_file(&b);
    char *p = tmp_path("cut-idx3-ubyte.gz");
    write_gz(p, b.p, b.n);
    size_t n;
    unsigned char *gz = ts_read_file(p, &n);
    ts_write_file(p, gz, n / 2);
    /* The header is intact, so the probe succeeds; the data is cut short. */
    rotor_file_info info;
    assert_int_equal(rotor_file_probe(p, &info), ROTOR_OK);
    EXPECT_READ_FAILS(p, ROTOR_ERR_FORMAT, "truncated");
    free(gz);
    free(p);
    free(b.p);
}

static void test_idx_gz_rejects_fewer_rows_than_header_says(void **state) {
    (void)state;
    uint8_t px[3 * 4];
    memset(px, 1, sizeof px);
    uint32_t dims[3] = {4, 2, 2}; /* 4 rows claimed, 3 present */
    bytes b = {0};
    put_idx(&b, 0x08, 3, dims, px, sizeof px);
    char *p = tmp_path("short-idx3-ubyte.gz");
    write_gz(p, b.p, b.n);
    EXPECT_READ_FAILS(p, ROTOR_ERR_FORMAT, "truncated", "4 x 2 x 2 uint8", "ends after 28");
    free(p);
    free(b.p);
}

static void test_idx_rejects_trailing_bytes(void **state) {
    (void)state;
    uint8_t px[5 * 4];
    memset(px, 2, sizeof px);
    uint32_t dims[3] = {4, 2, 2}; /* 4 rows claimed, 5 present */
    bytes b = {0};
    put_idx(&b, 0x08, 3, dims, px, sizeof px);
    char *p = tmp_path("long-idx3-ubyte");
    write_bytes(p, &b);
    EXPECT_READ_FAILS(p, ROTOR_ERR_FORMAT, "trailing garbage", "4 x 2 x 2 uint8");
    free(p);
    p = tmp_path("long-idx3-ubyte.gz");
    write_gz(p, b.p, b.n);
    EXPECT_READ_FAILS(p, ROTOR_ERR_FORMAT, "trailing garbage");
    free(p);
    free(b.p);
}

static void test_idx_reads_2d_int8(void **state) {
    (void)state;
    int8_t v[6] = {-128, -1, 0, 1, 2, 127};
    uint32_t dims[2] = {3, 2};
    bytes b = {0};
    put_idx(&b, 0x09, 2, dims, v, sizeof v);
    char *p = tmp_path("signed-idx2-byte");
    write_bytes(p, &b);
    rotor_matrix m;
    assert_int_equal(rotor_matrix_read(p, ROTOR_ELEM_F32, 0, &m), ROTOR_OK);
    assert_int_equal(m.rows, 3);
    assert_int_equal(m.cols, 2);
    assert_true(((float *)m.data)[0] == -128.0f && ((float *)m.data)[5] == 127.0f);
    rotor_matrix_free(&m);
    free(p);
    free(b.p);
}

static void test_idx_gz_rejects_bad_checksum_and_corrupt_data(void **state) {
    (void)state;
    bytes b = {0};
    image_file(&b);
    char *p = tmp_path("crc-idx3-ubyte.gz");
    write_gz(p, b.p, b.n);
    size_t n;
    unsigned char *gz = ts_read_file(p, &n);
    gz[n - 7] ^= 0xff; /* a byte of the trailer's CRC-32 */
    ts_write_file(p, gz, n);
    EXPECT_READ_FAILS(p, ROTOR_ERR_CORRUPT, "checksum");
    /* Damaged deflate data: undecodable, or decoded wrong and caught by the
     * CRC; either way refused with the file's name, never read. */
    gz[n - 7] ^= 0xff;
    gz[n / 2] ^= 0x5a;
    ts_write_file(p, gz, n);
    rotor_matrix m;
    rotor_status st = rotor_matrix_read(p, -1, 0, &m);
    assert_true(st == ROTOR_ERR_FORMAT || st == ROTOR_ERR_CORRUPT);
    TS_CHECK_ERROR(st, st, p, "'");
    assert_null(strstr(rotor_last_error(), "<fd:"));
    free(gz);
    free(p);
    free(b.p);
}

static void test_idx_rejects_unsupported_element_type(void **state) {
    (void)state;
    float v[2] = {1, 2};
    uint32_t dims[2] = {1, 2};
    bytes b = {0};
    put_idx(&b, 0x0d, 2, dims, v, sizeof v);
    char *p = tmp_path("floats-idx2");
    write_bytes(p, &b);
    EXPECT_READ_FAILS(p, ROTOR_ERR_UNSUPPORTED, "float32", "uint8");
    free(p);
    free(b.p);
}

static void test_idx_rejects_dimension_zero(void **state) {
    (void)state;
    uint32_t dims[3] = {5, 0, 28};
    bytes b = {0};
    put_idx(&b, 0x08, 3, dims, NULL, 0);
    char *p = tmp_path("zero-idx3-ubyte");
    write_bytes(p, &b);
    EXPECT_READ_FAILS(p, ROTOR_ERR_FORMAT, "dimension 0");
    free(p);
    free(b.p);
}

static void test_idx_gz_rejects_header_larger_than_the_file_can_hold(void **state) {
    (void)state;
    uint32_t dims[3] = {4000000000u, 28, 28};
    bytes b = {0};
    put_idx(&b, 0x08, 3, dims, NULL, 0);
    put_zeros(&b, 100);
    char *p = tmp_path("liar-idx3-ubyte.gz");
    write_gz(p, b.p, b.n);
    EXPECT_READ_FAILS(p, ROTOR_ERR_FORMAT, "4000000000 x 28 x 28 uint8", "more than");
    rotor_file_info info;
    TS_CHECK_ERROR(rotor_file_probe(p, &info), ROTOR_ERR_FORMAT, p, "more than");
    free(p);
    free(b.p);
}

static void test_gzip_without_idx_magic_has_unknown_format(void **state) {
    (void)state;
    char *p = tmp_path("notes.txt.gz");
    write_gz(p, "hello world", 11);
    EXPECT_READ_FAILS(p, ROTOR_ERR_FORMAT, "gzip", "IDX", ".fvecs");
    free(p);
}

/* ---- files that are not there or not files ------------------------------ */

static void test_read_rejects_missing_file(void **state) {
    (void)state;
    char *p = tmp_path("nothing-here.fvecs");
    EXPECT_READ_FAILS(p, ROTOR_ERR_IO, "cannot open", "No such file");
    rotor_file_info info;
    TS_CHECK_ERROR(rotor_file_probe(p, &info), ROTOR_ERR_IO, p, "No such file");
    rotor_reader *r = (rotor_reader *)&info;
    TS_CHECK_ERROR(rotor_reader_open(p, &r), ROTOR_ERR_IO, p, "No such file");
    assert_null(r);
    free(p);
}

static void test_read_rejects_directory(void **state) {
    (void)state;
    char *p = tmp_path("adir.fbin");
    assert_int_equal(mkdir(p, 0700), 0);
    EXPECT_READ_FAILS(p, ROTOR_ERR_IO, "directory");
    rmdir(p);
    free(p);
}

static void test_read_rejects_unknown_extension(void **state) {
    (void)state;
    char *p = tmp_path("x.foo");
    bytes b = {0};
    put_fvecs(&b, 3, 4);
    write_bytes(p, &b);
    EXPECT_READ_FAILS(p, ROTOR_ERR_FORMAT, "cannot tell the format", "from its name",
                      ".fvecs, .ivecs, .bvecs, .fbin, .u8bin, .i8bin, .ibin, .npy");
    free(p);
    free(b.p);
}

static void test_read_rejects_empty_file(void **state) {
    (void)state;
    const char *names[] = {"e.fvecs", "e.ivecs", "e.bvecs", "e.fbin", "e.u8bin",
                           "e.i8bin", "e.ibin",  "e.npy",   "e-ubyte"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char *p = tmp_path(names[i]);
        ts_write_file(p, "", 0);
        EXPECT_READ_FAILS(p, ROTOR_ERR_FORMAT, "is empty");
        free(p);
    }
}

/* ---- *vecs faults ------------------------------------------------------- */

static void test_fvecs_rejects_truncated_record(void **state) {
    (void)state;
    char *p = tmp_path("base.fvecs");
    bytes b = {0};
    put_fvecs(&b, 20, 8); /* records of 36 bytes; 720 in all */
    b.n -= 10;
    write_bytes(p, &b);
    EXPECT_READ_FAILS(p, ROTOR_ERR_FORMAT, "truncated", "record 19 ends at byte 720",
                      "the file has 710");
    rotor_file_info info;
    TS_CHECK_ERROR(rotor_file_probe(p, &info), ROTOR_ERR_FORMAT, p, "truncated");
    free(p);
    free(b.p);
}

static void test_bvecs_rejects_partial_record_header(void **state) {
    (void)state;
    char *p = tmp_path("tiny.bvecs");
    ts_write_file(p, "\x04\x00", 2);
    EXPECT_READ_FAILS(p, ROTOR_ERR_FORMAT, "truncated", "record 0");
    free(p);
}

static void test_fvecs_rejects_inconsistent_dims(void **state) {
    (void)state;
    /* Record 5 is shorter, so the size is no longer a multiple: found when
     * the file is opened. */
    char *p = tmp_path("x.fvecs");
    bytes b = {0};
    put_fvecs(&b, 5, 8);
    put_fvecs(&b, 1, 4);
    put_fvecs(&b, 4, 8);
    write_bytes(p, &b);
    EXPECT_READ_FAILS(p, ROTOR_ERR_FORMAT, "record 5", "has dimension 4", "the first has 8");
    free(p);
    free(b.p);

    /* Records 5 and 6 (4 + 12 values) fill exactly two records of 8: the size
     * divides, so the fault is found while the rows are read. */
    p = tmp_path("y.fvecs");
    b = (bytes){0};
    put_fvecs(&b, 5, 8);
    put_fvecs(&b, 1, 4);
    put_fvecs(&b, 1, 12);
    put_fvecs(&b, 3, 8);
    write_bytes(p, &b);
    rotor_file_info info;
    assert_int_equal(rotor_file_probe(p, &info), ROTOR_OK);
    assert_int_equal(info.rows, 10);
    EXPECT_READ_FAILS(p, ROTOR_ERR_FORMAT, "record 5", "has dimension 4", "the first has 8");
    free(p);
    free(b.p);
}

static void test_fvecs_rejects_dimension_zero(void **state) {
    (void)state;
    char *p = tmp_path("zero.fvecs");
    bytes b = {0};
    put_u32le(&b, 0);
    put_u32le(&b, 0);
    write_bytes(p, &b);
    EXPECT_READ_FAILS(p, ROTOR_ERR_FORMAT, "dimension 0");
    free(p);
    free(b.p);
}

static void test_ivecs_rejects_negative_dimension(void **state) {
    (void)state;
    char *p = tmp_path("neg.ivecs");
    bytes b = {0};
    put_u32le(&b, (uint32_t)-3);
    put_zeros(&b, 12);
    write_bytes(p, &b);
    EXPECT_READ_FAILS(p, ROTOR_ERR_FORMAT, "dimension -3");
    free(p);
    free(b.p);
}

static void test_fvecs_rejects_absurd_dimension(void **state) {
    (void)state;
    char *p = tmp_path("huge.fvecs");
    bytes b = {0};
    put_u32le(&b, 1u << 30);
    put_zeros(&b, 64);
    write_bytes(p, &b);
    EXPECT_READ_FAILS(p, ROTOR_ERR_FORMAT, "dimension 1073741824", "limit");
    free(p);
    free(b.p);
}

static void test_fvecs_record_longer_than_the_file_is_truncated(void **state) {
    (void)state;
    char *p = tmp_path("long.fvecs");
    bytes b = {0};
    put_u32le(&b, 100000); /* a 400004-byte record in a 68-byte file */
    put_zeros(&b, 64);
    write_bytes(p, &b);
    EXPECT_READ_FAILS(p, ROTOR_ERR_FORMAT, "truncated", "record 0 ends at byte 400004",
                      "the file has 68");
    free(p);
    free(b.p);
}

/* ---- *bin faults -------------------------------------------------------- */

static void test_fbin_rejects_truncated_payload(void **state) {
    (void)state;
    char *p = tmp_path("base.fbin");
    bytes b = {0};
    put_u32le(&b, 1000);
    put_u32le(&b, 128);
    put_zeros(&b, 500000 - 8);
    write_bytes(p, &b);
    EXPECT_READ_FAILS(p, ROTOR_ERR_FORMAT, "is truncated",
                      "header says 1000 x 128 float32 (512008 bytes), file has 500000");
    rotor_file_info info;
    TS_CHECK_ERROR(rotor_file_probe(p, &info), ROTOR_ERR_FORMAT, p, "truncated");
    free(p);
    free(b.p);
}

static void test_fbin_rejects_trailing_garbage(void **state) {
    (void)state;
    char *p = tmp_path("extra.u8bin");
    bytes b = {0};
    put_u32le(&b, 3);
    put_u32le(&b, 4);
    put_zeros(&b, 12 + 5);
    write_bytes(p, &b);
    EXPECT_READ_FAILS(p, ROTOR_ERR_FORMAT, "5 bytes of trailing garbage", "3 x 4 uint8",
                      "file has 25");
    free(p);
    free(b.p);
}

static void test_fbin_rejects_short_header(void **state) {
    (void)state;
    char *p = tmp_path("short.ibin");
    ts_write_file(p, "\x01\x00\x00\x00\x02", 5);
    EXPECT_READ_FAILS(p, ROTOR_ERR_FORMAT, "truncated", "header");
    free(p);
}

static void test_fbin_rejects_dimension_zero(void **state) {
    (void)state;
    char *p = tmp_path("zero.i8bin");
    bytes b = {0};
    put_u32le(&b, 10);
    put_u32le(&b, 0);
    write_bytes(p, &b);
    EXPECT_READ_FAILS(p, ROTOR_ERR_FORMAT, "dimension 0");
    free(p);
    free(b.p);
}

static void test_fbin_rejects_absurd_dimension(void **state) {
    (void)state;
    char *p = tmp_path("wide.fbin");
    bytes b = {0};
    put_u32le(&b, 1);
    put_u32le(&b, 4000000000u);
    put_zeros(&b, 16);
    write_bytes(p, &b);
    EXPECT_READ_FAILS(p, ROTOR_ERR_FORMAT, "4000000000", "limit");
    free(p);
    free(b.p);
}

static void test_fbin_rejects_more_rows_than_the_file_holds(void **state) {
    (void)state;
    char *p = tmp_path("many.ibin");
    bytes b = {0};
    put_u32le(&b, 4000000000u);
    put_u32le(&b, 1000000);
    put_zeros(&b, 64);
    write_bytes(p, &b);
    EXPECT_READ_FAILS(p, ROTOR_ERR_FORMAT, "truncated", "4000000000 x 1000000 int32",
                      "file has 72");
    free(p);
    free(b.p);
}

/* ---- NaN and infinity --------------------------------------------------- */

static void test_read_rejects_nan_with_row_and_column(void **state) {
    (void)state;
    char *p = tmp_path("q.fvecs");
    bytes b = {0};
    for (int i = 0; i < 5; i++) {
        put_u32le(&b, 10);
        for (int j = 0; j < 10; j++)
            put_f32(&b, i == 3 && j == 7 ? NAN : 1.0f);
    }
    write_bytes(p, &b);
    EXPECT_READ_FAILS(p, ROTOR_ERR_NOT_FINITE, "row 3, column 7 is NaN");
    /* Rows before the bad one read fine. */
    rotor_matrix m;
    assert_int_equal(rotor_matrix_read(p, -1, 3, &m), ROTOR_OK);
    assert_int_equal(m.rows, 3);
    rotor_matrix_free(&m);
    /* The probe does not read data. */
    rotor_file_info info;
    assert_int_equal(rotor_file_probe(p, &info), ROTOR_OK);
    assert_int_equal(info.rows, 5);
    free(p);
    free(b.p);
}

static void test_read_rejects_infinity_in_fbin_and_npy(void **state) {
    (void)state;
    char *p = tmp_path("inf.fbin");
    bytes b = {0};
    put_u32le(&b, 3);
    put_u32le(&b, 2);
    for (int i = 0; i < 6; i++)
        put_f32(&b, i == 5 ? INFINITY : 0.5f);
    write_bytes(p, &b);
    EXPECT_READ_FAILS(p, ROTOR_ERR_NOT_FINITE, "row 2, column 1 is +inf");
    free(p);

    p = tmp_path("inf.npy");
    float v[6] = {0, -INFINITY, 0, 0, 0, 0};
    write_npy_raw(p, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 2), }", v, sizeof v);
    EXPECT_READ_FAILS(p, ROTOR_ERR_NOT_FINITE, "row 0, column 1 is -inf");
    free(p);
    free(b.p);
}

/* ---- .npy --------------------------------------------------------------- */

static void test_npy_reads_1d_as_a_column(void **state) {
    (void)state;
    char *p = tmp_path("ids.npy");
    int32_t v[5] = {5, 4, 3, 2, 1};
    write_npy_raw(p, 1, "{'descr': '<i4', 'fortran_order': False, 'shape': (5,), }", v, sizeof v);
    rotor_matrix m;
    assert_int_equal(rotor_matrix_read(p, -1, 0, &m), ROTOR_OK);
    assert_int_equal(m.type, ROTOR_ELEM_I32);
    assert_int_equal(m.rows, 5);
    assert_int_equal(m.cols, 1);
    assert_memory_equal(m.data, v, sizeof v);
    rotor_matrix_free(&m);
    free(p);
}

static void test_npy_reads_version_2_and_3_headers(void **state) {
    (void)state;
    uint8_t v[6] = {1, 2, 3, 4, 5, 6};
    for (int major = 2; major <= 3; major++) {
        char *p = tmp_path(major == 2 ? "v2.npy" : "v3.npy");
        write_npy_raw(p, major,
                      "{\"shape\": (2L, 3L), \"fortran_order\": False, "
                      "\"descr\": \"<u1\"}",
                      v, sizeof v);
        rotor_matrix m;
        assert_int_equal(rotor_matrix_read(p, -1, 0, &m), ROTOR_OK);
        assert_int_equal(m.type, ROTOR_ELEM_U8);
        assert_int_equal(m.rows, 2);
        assert_int_equal(m.cols, 3);
        assert_memory_equal(m.data, v, sizeof v);
        rotor_matrix_free(&m);
        free(p);
    }
}

static void test_npy_rejects_wrong_magic(void **state) {
    (void)state;
    char *p = tmp_path("magic.npy");
    ts_write_file(p, "\x93NUMPX\x01\x00\x10\x00{}              ", 26);
    EXPECT_READ_FAILS(p, ROTOR_ERR_FORMAT, "magic");
    free(p);
}

static void test_npy_rejects_big_endian(void **state) {
    (void)state;
    char *p = tmp_path("be.npy");
    float v[2] = {0, 0};
    write_npy_raw(p, 1, "{'descr': '>f4', 'fortran_order': False, 'shape': (1, 2), }", v, sizeof v);
    EXPECT_READ_FAILS(p, ROTOR_ERR_UNSUPPORTED, "big-endian", "'>f4'");
    free(p);
}

static void test_npy_rejects_unsupported_dtype(void **state) {
    (void)state;
    char *p = tmp_path("f8.npy");
    double v[2] = {0, 0};
    write_npy_raw(p, 1, "{'descr': '<f8', 'fortran_order': False, 'shape': (1, 2), }", v, sizeof v);
    EXPECT_READ_FAILS(p, ROTOR_ERR_UNSUPPORTED, "dtype '<f8'", "'<f4'");
    free(p);
    p = tmp_path("rec.npy");
    write_npy_raw(p, 1,
                  "{'descr': [('a', '<f4'), ('b', '<i4')], 'fortran_order': False, "
                  "'shape': (1,), }",
                  v, 8);
    EXPECT_READ_FAILS(p, ROTOR_ERR_UNSUPPORTED, "structured dtype");
    free(p);
}

static void test_npy_rejects_fortran_order(void **state) {
    (void)state;
    char *p = tmp_path("fortran.npy");
    float v[4] = {0, 0, 0, 0};
    write_npy_raw(p, 1, "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }", v, sizeof v);
    EXPECT_READ_FAILS(p, ROTOR_ERR_UNSUPPORTED, "Fortran order");
    free(p);
}

static void test_npy_rejects_3d_shape(void **state) {
    (void)state;
    char *p = tmp_path("cube.npy");
    float v[8] = {0};
    write_npy_raw(p, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2, 2), }", v,
                  sizeof v);
    EXPECT_READ_FAILS(p, ROTOR_ERR_UNSUPPORTED, "3-D", "(2, 2, 2)");
    free(p);
    p = tmp_path("scalar.npy");
    write_npy_raw(p, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (), }", v, 4);
    EXPECT_READ_FAILS(p, ROTOR_ERR_UNSUPPORTED, "0-D");
    free(p);
}

static void test_npy_rejects_malformed_header_dict(void **state) {
    (void)state;
    const struct {
        const char *dict;
        const char *word;
    } cases[] = {
        {"{'descr': '<f4', 'fortran_order': False, }", "lacks 'shape'"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), ", "expected"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), 'x': 1}", "unknown key 'x'"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2)} junk", "after the dict"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2, two)}", "integer"},
        {"{'descr': '<f4', 'fortran_order': Maybe, 'shape': (2, 2)}", "True or False"},
        {"{'descr': '<f4, 'fortran_order': False, 'shape': (2, 2)}", "expected"},
        {"{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (2, 2)}", "twice"},
        {"['descr', '<f4']", "expected '{'"},
        {"{'descr' '<f4', 'fortran_order': False, 'shape': (2, 2)}", "expected ':'"},
    };
    float v[4] = {0};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *p = tmp_path("dict.npy");
        write_npy_raw(p, 1, cases[i].dict, v, sizeof v);
        EXPECT_READ_FAILS(p, ROTOR_ERR_FORMAT, "malformed header", cases[i].word);
        free(p);
    }
}

static void test_npy_rejects_dimension_zero(void **state) {
    (void)state;
    char *p = tmp_path("zero.npy");
    write_npy_raw(p, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (5, 0), }", NULL, 0);
    EXPECT_READ_FAILS(p, ROTOR_ERR_FORMAT, "dimension 0");
    free(p);
}

static void test_npy_rejects_absurd_shape(void **state) {
    (void)state;
    char *p = tmp_path("absurd.npy");
    write_npy_raw(p, 1,
                  "{'descr': '<f4', 'fortran_order': False, "
                  "'shape': (99999999999999999999999, 4), }",
                  NULL, 0);
    EXPECT_READ_FAILS(p, ROTOR_ERR_FORMAT, "limits");
    free(p);
}

static void test_npy_rejects_truncated_data_and_trailing_garbage(void **state) {
    (void)state;
    float v[7] = {0};
    char *p = tmp_path("short.npy");
    write_npy_raw(p, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 2), }", v, 5 * 4);
    EXPECT_READ_FAILS(p, ROTOR_ERR_FORMAT, "truncated", "3 x 2 float32 (152 bytes)",
                      "file has 148");
    free(p);
    p = tmp_path("long.npy");
    write_npy_raw(p, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 2), }", v, 7 * 4);
    EXPECT_READ_FAILS(p, ROTOR_ERR_FORMAT, "4 bytes of trailing garbage");
    free(p);
}

static void test_npy_rejects_truncated_header(void **state) {
    (void)state;
    char *p = tmp_path("hdr.npy");
    ts_write_file(p, "\x93NUMPY\x01\x00\x76\x00{'descr'", 17);
    EXPECT_READ_FAILS(p, ROTOR_ERR_FORMAT, "truncated", "header needs 128 bytes");
    free(p);
    p = tmp_path("hdr2.npy");
    ts_write_file(p, "\x93NUMPY\x02\x00\x76", 9);
    EXPECT_READ_FAILS(p, ROTOR_ERR_FORMAT, "truncated");
    free(p);
    p = tmp_path("v9.npy");
    ts_write_file(p, "\x93NUMPY\x09\x00\x76\x00{}", 12);
    EXPECT_READ_FAILS(p, ROTOR_ERR_UNSUPPORTED, "version 9.0");
    free(p);
}

/* ---- writing ------------------------------------------------------------ */

static size_t count_entries(const char *dir, const char *prefix) {
    DIR *d = opendir(dir);
    assert_non_null(d);
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strncmp(e->d_name, prefix, strlen(prefix)) == 0)
            n++;
    closedir(d);
    return n;
}

static void test_write_replaces_whole_file_and_leaves_no_temporary(void **state) {
    (void)state;
    char *p = tmp_path("atomic.fbin");
    float a[4] = {1, 2, 3, 4}, c[2] = {9, 8};
    rotor_matrix m = {a, 2, 2, ROTOR_ELEM_F32};
    assert_int_equal(rotor_matrix_write(p, &m), ROTOR_OK);
    rotor_matrix n2 = {c, 1, 2, ROTOR_ELEM_F32};
    assert_int_equal(rotor_matrix_write(p, &n2), ROTOR_OK);
    rotor_matrix back;
    assert_int_equal(rotor_matrix_read(p, -1, 0, &back), ROTOR_OK);
    assert_int_equal(back.rows, 1);
    assert_memory_equal(back.data, c, sizeof c);
    rotor_matrix_free(&back);
    assert_int_equal(count_entries(g_dir, "atomic.fbin"), 1);
    struct stat sb;
    assert_int_equal(stat(p, &sb), 0);
    /* The umask applies, not mkstemp's fixed 0600. */
    mode_t mask = umask(022);
    umask(mask);
    assert_int_equal(sb.st_mode & 0777, 0666 & ~mask);
    free(p);
}

static void test_write_rejects_type_the_format_cannot_hold(void **state) {
    (void)state;
    char *p = tmp_path("mismatch.bvecs");
    float a[4] = {1, 2, 3, 4};
    rotor_matrix m = {a, 2, 2, ROTOR_ELEM_F32};
    TS_CHECK_ERROR(rotor_matrix_write(p, &m), ROTOR_ERR_INVALID_ARGUMENT, p, "uint8", "float32");
    assert_int_equal(count_entries(g_dir, "mismatch.bvecs"), 0);
    free(p);
    p = tmp_path("mismatch.ibin");
    uint8_t u[4] = {0};
    rotor_matrix mu = {u, 2, 2, ROTOR_ELEM_U8};
    TS_CHECK_ERROR(rotor_matrix_write(p, &mu), ROTOR_ERR_INVALID_ARGUMENT, p, "int32", "uint8");
    free(p);
}

static void test_write_rejects_nan_before_creating_the_file(void **state) {
    (void)state;
    char *p = tmp_path("nan.fvecs");
    float a[6] = {1, 2, 3, 4, NAN, 6};
    rotor_matrix m = {a, 2, 3, ROTOR_ELEM_F32};
    TS_CHECK_ERROR(rotor_matrix_write(p, &m), ROTOR_ERR_NOT_FINITE, p, "row 1, column 1", "NaN");
    assert_int_equal(count_entries(g_dir, "nan.fvecs"), 0);
    free(p);
}

static void test_write_rejects_unknown_extension_and_empty_matrix(void **state) {
    (void)state;
    float a[2] = {1, 2};
    rotor_matrix m = {a, 1, 2, ROTOR_ELEM_F32};
    char *p = tmp_path("out-idx3-ubyte");
    TS_CHECK_ERROR(rotor_matrix_write(p, &m), ROTOR_ERR_FORMAT, p, "cannot tell the format");
    free(p);
    p = tmp_path("empty.fvecs");
    rotor_matrix e = {a, 0, 2, ROTOR_ELEM_F32};
    TS_CHECK_ERROR(rotor_matrix_write(p, &e), ROTOR_ERR_EMPTY, p, "no rows");
    rotor_matrix z = {a, 1, 0, ROTOR_ELEM_F32};
    TS_CHECK_ERROR(rotor_matrix_write(p, &z), ROTOR_ERR_INVALID_ARGUMENT, p, "dimension 0");
    rotor_matrix bad = {a, 1, 2, (rotor_elem_type)9};
    TS_CHECK_ERROR(rotor_matrix_write(p, &bad), ROTOR_ERR_INVALID_ARGUMENT, p, "element type");
    assert_int_equal(count_entries(g_dir, "empty.fvecs"), 0);
    free(p);
}

static void test_write_into_missing_directory_fails_with_io(void **state) {
    (void)state;
    char *p = tmp_path("no/such/dir/x.fvecs");
    float a[2] = {1, 2};
    rotor_matrix m = {a, 1, 2, ROTOR_ELEM_F32};
    TS_CHECK_ERROR(rotor_matrix_write(p, &m), ROTOR_ERR_IO, p, "No such file");
    free(p);
}

/* ---- real data sets, when present --------------------------------------- */

static void test_real_siftsmall_base_is_10000_x_128(void **state) {
    (void)state;
    const char *p = ROTOR_SOURCE_DIR "/../shared/data/siftsmall/siftsmall_base.fvecs";
    if (access(p, R_OK) != 0) {
        printf("# skipped: %s is absent\n", p);
        skip();
    }
    rotor_file_info info;
    assert_int_equal(rotor_file_probe(p, &info), ROTOR_OK);
    assert_int_equal(info.rows, 10000);
    assert_int_equal(info.cols, 128);
    rotor_matrix m;
    assert_int_equal(rotor_matrix_read(p, ROTOR_ELEM_F32, 0, &m), ROTOR_OK);
    assert_int_equal(m.rows, 10000);
    assert_int_equal(m.cols, 128);
    rotor_matrix_free(&m);
}

static void test_real_fashion_mnist_t10k_is_10000_x_784(void **state) {
    (void)state;
    const char *p = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz";
    if (access(p, R_OK) != 0) {
        printf("# skipped: %s is absent\n", p);
        skip();
    }
    rotor_file_info info;
    assert_int_equal(rotor_file_probe(p, &info), ROTOR_OK);
    assert_int_equal(info.format, ROTOR_FORMAT_IDX);
    assert_int_equal(info.compressed, 1);
    rotor_matrix m;
    assert_int_equal(rotor_matrix_read(p, -1, 0, &m), ROTOR_OK);
    assert_int_equal(m.type, ROTOR_ELEM_U8);
    assert_int_equal(m.rows, 10000);
    assert_int_equal(m.cols, 784);
    rotor_matrix_free(&m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fvecs_round_trip),
        cmocka_unit_test(test_ivecs_round_trip),
        cmocka_unit_test(test_bvecs_round_trip),
        cmocka_unit_test(test_fbin_round_trip),
        cmocka_unit_test(test_u8bin_round_trip),
        cmocka_unit_test(test_i8bin_round_trip),
        cmocka_unit_test(test_ibin_round_trip),
        cmocka_unit_test(test_npy_round_trip_every_type),
        cmocka_unit_test(test_written_files_have_the_published_layout),
        cmocka_unit_test(test_format_is_told_by_extension),
        cmocka_unit_test(test_read_converts_integers_to_float),
        cmocka_unit_test(test_read_rejects_other_target_types),
        cmocka_unit_test(test_read_max_rows_reads_a_prefix),
        cmocka_unit_test(test_matrix_free_accepts_zeroed_matrix),
        cmocka_unit_test(test_entry_points_reject_null_arguments),
        cmocka_unit_test(test_reader_streams_in_chunks),
        cmocka_unit_test(test_reader_fails_at_nan_and_stays_failed),
        cmocka_unit_test(test_idx_reads_images),
        cmocka_unit_test(test_idx_gz_reads_images),
        cmocka_unit_test(test_idx_reads_labels_as_a_column),
        cmocka_unit_test(test_idx_gz_rejects_truncated_stream),
        cmocka_unit_test(test_idx_gz_rejects_fewer_rows_than_header_says),
        cmocka_unit_test(test_idx_rejects_trailing_bytes),
        cmocka_unit_test(test_idx_reads_2d_int8),
        cmocka_unit_test(test_idx_gz_rejects_bad_checksum_and_corrupt_data),
        cmocka_unit_test(test_idx_rejects_unsupported_element_type),
        cmocka_unit_test(test_idx_rejects_dimension_zero),
        cmocka_unit_test(test_idx_gz_rejects_header_larger_than_the_file_can_hold),
        cmocka_unit_test(test_gzip_without_idx_magic_has_unknown_format),
        cmocka_unit_test(test_read_rejects_missing_file),
        cmocka_unit_test(test_read_rejects_directory),
        cmocka_unit_test(test_read_rejects_unknown_extension),
        cmocka_unit_test(test_read_rejects_empty_file),
        cmocka_unit_test(test_fvecs_rejects_truncated_record),
        cmocka_unit_test(test_bvecs_rejects_partial_record_header),
        cmocka_unit_test(test_fvecs_rejects_inconsistent_dims),
        cmocka_unit_test(test_fvecs_rejects_dimension_zero),
        cmocka_unit_test(test_ivecs_rejects_negative_dimension),
        cmocka_unit_test(test_fvecs_rejects_absurd_dimension),
        cmocka_unit_test(test_fvecs_record_longer_than_the_file_is_truncated),
        cmocka_unit_test(test_fbin_rejects_truncated_payload),
        cmocka_unit_test(test_fbin_rejects_trailing_garbage),
        cmocka_unit_test(test_fbin_rejects_short_header),
        cmocka_unit_test(test_fbin_rejects_dimension_zero),
        cmocka_unit_test(test_fbin_rejects_absurd_dimension),
        cmocka_unit_test(test_fbin_rejects_more_rows_than_the_file_holds),
        cmocka_unit_test(test_read_rejects_nan_with_row_and_column),
        cmocka_unit_test(test_read_rejects_infinity_in_fbin_and_npy),
        cmocka_unit_test(test_npy_reads_1d_as_a_column),
        cmocka_unit_test(test_npy_reads_version_2_and_3_headers),
        cmocka_unit_test(test_npy_rejects_wrong_magic),
        cmocka_unit_test(test_npy_rejects_big_endian),
        cmocka_unit_test(test_npy_rejects_unsupported_dtype),
        cmocka_unit_test(test_npy_rejects_fortran_order),
        cmocka_unit_test(test_npy_rejects_3d_shape),
        cmocka_unit_test(test_npy_rejects_malformed_header_dict),
        cmocka_unit_test(test_npy_rejects_dimension_zero),
        cmocka_unit_test(test_npy_rejects_absurd_shape),
        cmocka_unit_test(test_npy_rejects_truncated_data_and_trailing_garbage),
        cmocka_unit_test(test_npy_rejects_truncated_header),
        cmocka_unit_test(test_write_replaces_whole_file_and_leaves_no_temporary),
        cmocka_unit_test(test_write_rejects_type_the_format_cannot_hold),
        cmocka_unit_test(test_write_rejects_nan_before_creating_the_file),
        cmocka_unit_test(test_write_rejects_unknown_extension_and_empty_matrix),
        cmocka_unit_test(test_write_into_missing_directory_fails_with_io),
        cmocka_unit_test(test_real_siftsmall_base_is_10000_x_128),
        cmocka_unit_test(test_real_fashion_mnist_t10k_is_10000_x_784),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
