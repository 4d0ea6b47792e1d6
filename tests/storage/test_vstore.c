/*
 * The vector store: every backend (pread, io_uring) with and without
 * O_DIRECT reads back rows whose bytes are known, at row sizes and offsets
 * chosen so that O_DIRECT spans are unaligned at both ends and the last
 * row's span runs past the end of the file. Batches are larger than the
 * submission depth, hold duplicates and the last row, and fn must see each
 * position exactly once. Streamed reads stop where their source says,
 * within the window of reads in flight. Then the errors (each with its
 * sentence), the
 * allocation failure points, ROTOR_IO, and two threads sharing a store.
 *
 * An io_uring case on a machine that does not permit io_uring is skipped
 * with a line saying why, never passed silently. ROTOR_IO set in the
 * environment forces one backend on every store; the cases for the other
 * backend then skip, saying so.
 */
#include "support/support.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "storage/storage.h"

static char *g_dir;
/* ROTOR_IO as the test found it; restored after the cases that change it. */
static char *g_env_io;

static int group_setup(void **state) {
    (void)state;
    g_dir = ts_tmpdir_create();
    const char *e = getenv("ROTOR_IO");
    g_env_io = e != NULL ? strdup(e) : NULL;
    return 0;
}

static int group_teardown(void **state) {
    (void)state;
    ts_tmpdir_remove(g_dir);
    g_dir = NULL;
    free(g_env_io);
    return 0;
}

static void restore_env_io(void) {
    if (g_env_io != NULL)
        setenv("ROTOR_IO", g_env_io, 1);
    else
        unsetenv("ROTOR_IO");
}

/* ---- the file under test ------------------------------------------------ */

/* Byte k of row i: a hash of (i, k), so a row read from the wrong place, or
 * shifted by any number of bytes, never matches. */
static void expected_row(uint32_t i, size_t row_bytes, unsigned char *out) {
    uint64_t h = 0;
    for (size_t k = 0; k < row_bytes; k++) {
        if (k % 8 == 0) {
            h = ((uint64_t)i << 32 | k) * 0x9e3779b97f4a7c15ULL;
            h ^= h >> 29;
            h *= 0xbf58476d1ce4e5b9ULL;
            h ^= h >> 32;
        }
        out[k] = (unsigned char)(h >> (8 * (k % 8)));
    }
}

/* Writes `name`: `offset` bytes of junk, then `rows` rows, `per_page` of
 * them at the start of each page of `page_bytes` (junk after them; 0: end
 * to end), nothing after the last page. Returns the path (freed by the
 * caller). */
static char *write_paged_store(const char *name, uint64_t offset, size_t row_bytes, size_t rows,
                               size_t per_page, size_t page_bytes) {
    if (per_page == 0) {
        per_page = 1;
        page_bytes = row_bytes;
    }
    char *path = ts_path(g_dir, name);
    size_t size = (size_t)offset + (rows + per_page - 1) / per_page * page_bytes;
    unsigned char *b = malloc(size);
    assert_non_null(b);
    ts_rng rng;
    ts_rng_init(&rng, 11);
    for (size_t i = 0; i < size; i++)
        b[i] = (unsigned char)ts_rng_next(&rng);
    for (size_t i = 0; i < rows; i++)
        expected_row((uint32_t)i, row_bytes,
                     b + offset + i / per_page * page_bytes + i % per_page * row_bytes);
    ts_write_file(path, b, size);
    free(b);
    return path;
}

static char *write_store(const char *name, uint64_t offset, size_t row_bytes, size_t rows) {
    return write_paged_store(name, offset, row_bytes, rows, 0, 0);
}

static vstore_params params(const char *path, uint64_t offset, size_t row_bytes, size_t rows,
                            vstore_backend backend, int direct, unsigned depth) {
    vstore_params p = {path, offset, row_bytes, rows, backend, direct, depth, false, -1, 0, 0};
    return p;
}

/* Skips the case when ROTOR_IO forces a backend other than `want`. */
static void skip_if_forced_away(vstore_backend want) {
    if (g_env_io == NULL || g_env_io[0] == '\0' || strcmp(g_env_io, "auto") == 0)
        return;
    bool forced_pread = strcmp(g_env_io, "pread") == 0;
    if ((want == VSTORE_URING && forced_pread) || (want == VSTORE_PREAD && !forced_pread)) {
        print_message("ROTOR_IO=%s forces another backend than %s: skipped\n", g_env_io,
                      vstore_backend_name(want));
        skip();
    }
}

/* Opens a store with `backend`; an io_uring store that the machine does not
 * permit skips the case, printing the reason. */
static vstore *open_or_skip(const vstore_params *p) {
    skip_if_forced_away(p->backend);
    rotor_allocator a = cm_allocator_default();
    vstore *v = NULL;
    rotor_status st = vstore_open(&a, p, &v);
    if (st == ROTOR_ERR_UNSUPPORTED && p->backend == VSTORE_URING) {
        print_message("io_uring is not permitted here (%s): skipped\n", rotor_last_error());
        skip();
    }
    if (st != ROTOR_OK)
        fail_msg("vstore_open: %s", rotor_last_error());
    assert_int_equal(vstore_backend_used(v), p->backend);
    return v;
}

/* ---- what fn saw -------------------------------------------------------- */

typedef struct seen {
    const uint32_t *ids;
    size_t n, row_bytes;
    unsigned *count; /* calls per position */
    size_t calls, wrong_bytes, bad_j;
    unsigned char *expect;
} seen;

static void seen_init(seen *s, const uint32_t *ids, size_t n, size_t row_bytes) {
    memset(s, 0, sizeof *s);
    s->ids = ids;
    s->n = n;
    s->row_bytes = row_bytes;
    s->count = calloc(n + 1, sizeof *s->count);
    s->expect = malloc(row_bytes);
    assert_non_null(s->count);
    assert_non_null(s->expect);
}

static void seen_free(seen *s) {
    free(s->count);
    free(s->expect);
}

/* Records rather than asserts: a failed assertion would jump out of
 * vstore_read with reads in flight. */
static void on_row(void *ctx, size_t j, const void *row) {
    seen *s = ctx;
    s->calls++;
    if (j >= s->n) {
        s->bad_j++;
        return;
    }
    s->count[j]++;
    expected_row(s->ids[j], s->row_bytes, s->expect);
    if (memcmp(row, s->expect, s->row_bytes) != 0)
        s->wrong_bytes++;
}

/* Reads ids through r and asserts fn saw every position once with the
 * right bytes. */
static void read_and_check(vstore_reader *r, const uint32_t *ids, size_t n, size_t row_bytes) {
    seen s;
    seen_init(&s, ids, n, row_bytes);
    rotor_status st = vstore_read(r, ids, n, on_row, &s);
    if (st != ROTOR_OK)
        fail_msg("vstore_read of %zu rows: %s", n, rotor_last_error());
    assert_int_equal(s.calls, n);
    assert_int_equal(s.bad_j, 0);
    assert_int_equal(s.wrong_bytes, 0);
    for (size_t j = 0; j < n; j++)
        if (s.count[j] != 1)
            fail_msg("position %zu (row %u) was handed over %u times", j, ids[j], s.count[j]);
    seen_free(&s);
}

/* Random batches of every interesting size: empty, one, around the depth
 * and several times it; each holds a duplicate and the last row. */
static void read_random_batches(vstore_reader *r, size_t rows, size_t row_bytes, unsigned depth,
                                ts_rng *rng) {
    const size_t sizes[] = {0, 1, 2, 5, depth - 1, depth, depth + 1, 3 * depth + 7, 200};
    uint32_t *ids = malloc(sizeof *ids * (3 * depth + 200));
    assert_non_null(ids);
    for (size_t round = 0; round < 3; round++)
        for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
            size_t n = sizes[s];
            for (size_t j = 0; j < n; j++)
                ids[j] = (uint32_t)(ts_rng_next(rng) % rows);
            if (n >= 2) {
                ids[n - 1] = ids[0];
                ids[n / 2] = (uint32_t)(rows - 1);
            }
            read_and_check(r, n == 0 ? NULL : ids, n, row_bytes);
        }
    /* Every row once, in order: catches a span computed wrong for a few ids. */
    uint32_t *all = malloc(sizeof *all * rows);
    assert_non_null(all);
    for (size_t i = 0; i < rows; i++)
        all[i] = (uint32_t)i;
    read_and_check(r, all, rows, row_bytes);
    free(all);
    free(ids);
}

/* ---- reading every layout through every backend ------------------------- */

typedef struct layout {
    size_t row_bytes, rows;
    uint64_t offset;
    size_t per_page, page_bytes; /* 0: rows end to end */
} layout;

/* 12 and 4100 bytes straddle every alignment; 512 and 3072 are aligned to
 * 512 only; an offset of 333 moves every row off its usual boundary. Rows
 * in pages (a graph's records on disk): several to a 4 KiB page with junk
 * after them, the last page partly used, and one row to a larger page. */
static const layout layouts[] = {
    {12, 1000, 4096, 0, 0},     {512, 200, 4096, 0, 0},    {3072, 200, 4096, 0, 0},
    {4100, 150, 4096, 0, 0},    {3072, 90, 333, 0, 0},     {772, 301, 4096, 5, 4096},
    {100, 700, 8192, 40, 4096}, {5000, 20, 4096, 1, 8192},
};

static void read_all_layouts(vstore_backend backend, int direct, unsigned depth) {
    ts_rng rng;
    ts_rng_init(&rng, 20240607);
    for (size_t i = 0; i < sizeof layouts / sizeof layouts[0]; i++) {
        const layout *l = &layouts[i];
        char name[64];
        snprintf(name, sizeof name, "rows_%zu_%zu_%llu_%zu.bin", l->row_bytes, l->rows,
                 (unsigned long long)l->offset, l->per_page);
        char *path =
            write_paged_store(name, l->offset, l->row_bytes, l->rows, l->per_page, l->page_bytes);
        vstore_params p = params(path, l->offset, l->row_bytes, l->rows, backend, direct, depth);
        p.rows_per_page = l->per_page;
        p.page_bytes = l->page_bytes;
        vstore *v = open_or_skip(&p);
        if (direct == 0)
            assert_false(vstore_direct(v));
        print_message("%s, %zu-byte rows at %llu, depth %u: direct %s\n",
                      vstore_backend_name(vstore_backend_used(v)), l->row_bytes,
                      (unsigned long long)l->offset, depth, vstore_direct(v) ? "yes" : "no");
        vstore_reader *r;
        assert_int_equal(vstore_reader_get(v, &r), ROTOR_OK);
        read_random_batches(r, l->rows, l->row_bytes, depth == 0 ? 64 : depth, &rng);
        vstore_reader_put(v, r);
        vstore_close(v);
        unlink(path);
        free(path);
    }
}

static void test_pread_buffered_reads_every_row(void **state) {
    (void)state;
    read_all_layouts(VSTORE_PREAD, 0, 8);
}

static void test_pread_direct_reads_every_row(void **state) {
    (void)state;
    read_all_layouts(VSTORE_PREAD, -1, 8);
}

static void test_uring_buffered_reads_every_row(void **state) {
    (void)state;
    read_all_layouts(VSTORE_URING, 0, 8);
}

static void test_uring_direct_reads_every_row(void **state) {
    (void)state;
    read_all_layouts(VSTORE_URING, -1, 8);
}

static void test_uring_direct_default_depth_reads_every_row(void **state) {
    (void)state;
    read_all_layouts(VSTORE_URING, -1, 0);
}

/* With no locked memory allowed, registering the buffer fails where the
 * limit applies; the reader must fall back to plain reads and stay right. */
static void test_uring_reads_right_without_locked_memory(void **state) {
    (void)state;
    struct rlimit old;
    assert_int_equal(getrlimit(RLIMIT_MEMLOCK, &old), 0);
    struct rlimit none = {0, old.rlim_max};
    assert_int_equal(setrlimit(RLIMIT_MEMLOCK, &none), 0);
    char *path = write_store("memlock.bin", 4096, 3072, 100);
    vstore_params p = params(path, 4096, 3072, 100, VSTORE_URING, -1, 16);
    skip_if_forced_away(VSTORE_URING);
    rotor_allocator a = cm_allocator_default();
    vstore *v = NULL;
    rotor_status st = vstore_open(&a, &p, &v);
    vstore_reader *r = NULL;
    if (st == ROTOR_OK)
        st = vstore_reader_get(v, &r);
    char why[512];
    snprintf(why, sizeof why, "%s", rotor_last_error());
    if (st == ROTOR_OK) {
        ts_rng rng;
        ts_rng_init(&rng, 5);
        read_random_batches(r, 100, 3072, 16, &rng);
        vstore_reader_put(v, r);
    }
    vstore_close(v);
    assert_int_equal(setrlimit(RLIMIT_MEMLOCK, &old), 0);
    unlink(path);
    free(path);
    if (st == ROTOR_ERR_UNSUPPORTED) {
        print_message("io_uring is not permitted here (%s): skipped\n", why);
        skip();
    }
    if (st != ROTOR_OK)
        fail_msg("io_uring without locked memory: %s", why);
}

static void test_auto_names_the_backend_it_chose(void **state) {
    (void)state;
    char *path = write_store("auto.bin", 4096, 512, 10);
    rotor_allocator a = cm_allocator_default();
    vstore_params p = params(path, 4096, 512, 10, VSTORE_AUTO, -1, 0);
    vstore *v;
    assert_int_equal(vstore_open(&a, &p, &v), ROTOR_OK);
    vstore_backend b = vstore_backend_used(v);
    assert_true(b == VSTORE_URING || b == VSTORE_PREAD);
    const char *name = vstore_backend_name(b);
    assert_true(strcmp(name, "io_uring") == 0 || strcmp(name, "pread") == 0);
    assert_string_equal(vstore_backend_name(VSTORE_URING), "io_uring");
    assert_string_equal(vstore_backend_name(VSTORE_PREAD), "pread");
    print_message("auto chose %s, O_DIRECT %s\n", name, vstore_direct(v) ? "yes" : "no");
    vstore_close(v);
    free(path);
}

/* direct = 1 either gets O_DIRECT or says why not; it never quietly
 * buffers. */
static void test_direct_required_is_honoured_or_refused(void **state) {
    (void)state;
    char *path = write_store("direct.bin", 4096, 3072, 20);
    rotor_allocator a = cm_allocator_default();
    vstore_params p = params(path, 4096, 3072, 20, VSTORE_AUTO, 1, 0);
    vstore *v = NULL;
    rotor_status st = vstore_open(&a, &p, &v);
    if (st == ROTOR_OK) {
        assert_true(vstore_direct(v));
        vstore_reader *r;
        assert_int_equal(vstore_reader_get(v, &r), ROTOR_OK);
        uint32_t ids[] = {19, 0, 7};
        read_and_check(r, ids, 3, 3072);
        vstore_reader_put(v, r);
        vstore_close(v);
    } else {
        TS_CHECK_ERROR(st, ROTOR_ERR_UNSUPPORTED, path, "O_DIRECT");
        assert_null(v);
        print_message("O_DIRECT refused here: %s\n", rotor_last_error());
    }
    free(path);
}

/* ---- stats and the pool ------------------------------------------------- */

static void stats_for(vstore_backend backend) {
    char *path = write_store("stats.bin", 4096, 3072, 50);
    vstore_params p = params(path, 4096, 3072, 50, backend, -1, 4);
    vstore *v = open_or_skip(&p);
    vstore_reader *r;
    assert_int_equal(vstore_reader_get(v, &r), ROTOR_OK);
    uint64_t reads = 99, ns = 99;
    vstore_reader_take_stats(r, &reads, &ns);
    assert_int_equal(reads, 0);
    assert_int_equal(ns, 0);
    uint32_t ids[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 49, 1};
    read_and_check(r, ids, 11, 3072);
    read_and_check(r, ids, 3, 3072);
    read_and_check(r, ids, 0, 3072);
    vstore_reader_take_stats(r, &reads, &ns);
    assert_int_equal(reads, 14);
    assert_true(ns > 0);
    vstore_reader_take_stats(r, &reads, &ns);
    assert_int_equal(reads, 0);
    assert_int_equal(ns, 0);
    vstore_reader_put(v, r);
    vstore_close(v);
    free(path);
}

static void test_pread_stats_count_rows_and_reset(void **state) {
    (void)state;
    stats_for(VSTORE_PREAD);
}

static void test_uring_stats_count_rows_and_reset(void **state) {
    (void)state;
    stats_for(VSTORE_URING);
}

static void test_readers_are_pooled(void **state) {
    (void)state;
    char *path = write_store("pool.bin", 0, 64, 10);
    rotor_allocator a = cm_allocator_default();
    vstore_params p = params(path, 0, 64, 10, VSTORE_AUTO, -1, 0);
    vstore *v;
    assert_int_equal(vstore_open(&a, &p, &v), ROTOR_OK);
    vstore_reader *r1, *r2, *r3;
    assert_int_equal(vstore_reader_get(v, &r1), ROTOR_OK);
    assert_int_equal(vstore_reader_get(v, &r2), ROTOR_OK);
    assert_ptr_not_equal(r1, r2);
    vstore_reader_put(v, r1);
    assert_int_equal(vstore_reader_get(v, &r3), ROTOR_OK);
    assert_ptr_equal(r3, r1);
    uint32_t ids[] = {9, 0};
    read_and_check(r3, ids, 2, 64);
    read_and_check(r2, ids, 2, 64);
    vstore_reader_put(v, r3);
    vstore_reader_put(v, r2);
    vstore_reader_put(v, NULL);
    vstore_close(v);
    vstore_close(NULL);
    free(path);
}

/* ---- errors ------------------------------------------------------------- */

static void test_file_shorter_than_the_rows_is_format_error(void **state) {
    (void)state;
    char *path = write_store("short.bin", 4096, 3072, 10);
    rotor_allocator a = cm_allocator_default();
    vstore_params p = params(path, 4096, 3072, 11, VSTORE_AUTO, -1, 0);
    vstore *v = (vstore *)&a; /* must be reset to NULL */
    TS_CHECK_ERROR(vstore_open(&a, &p, &v), ROTOR_ERR_FORMAT, path, "holds 34816 bytes",
                   "needs 37888");
    assert_null(v);
    /* One byte short of the last row. */
    p = params(path, 4097, 3072, 10, VSTORE_PREAD, 0, 0);
    TS_CHECK_ERROR(vstore_open(&a, &p, &v), ROTOR_ERR_FORMAT, path, "needs 34817");
    free(path);
}

static void test_missing_file_and_directory_are_io_errors(void **state) {
    (void)state;
    char *path = ts_path(g_dir, "absent.bin");
    rotor_allocator a = cm_allocator_default();
    vstore_params p = params(path, 0, 16, 1, VSTORE_AUTO, -1, 0);
    vstore *v;
    TS_CHECK_ERROR(vstore_open(&a, &p, &v), ROTOR_ERR_IO, path, "No such file");
    assert_null(v);
    p.path = g_dir;
    TS_CHECK_ERROR(vstore_open(&a, &p, &v), ROTOR_ERR_IO, g_dir, "not a regular file");
    free(path);
}

static void test_bad_parameters_are_invalid_arguments(void **state) {
    (void)state;
    char *path = write_store("params.bin", 0, 16, 4);
    rotor_allocator a = cm_allocator_default();
    vstore *v;
    vstore_params p = params(path, 0, 0, 4, VSTORE_AUTO, -1, 0);
    TS_CHECK_ERROR(vstore_open(&a, &p, &v), ROTOR_ERR_INVALID_ARGUMENT, path, "at least one byte");
    p = params(path, 0, 16, 0, VSTORE_AUTO, -1, 0);
    TS_CHECK_ERROR(vstore_open(&a, &p, &v), ROTOR_ERR_INVALID_ARGUMENT, path, "at least one row");
    p = params(path, 0, 16, SIZE_MAX / 8, VSTORE_AUTO, -1, 0);
    TS_CHECK_ERROR(vstore_open(&a, &p, &v), ROTOR_ERR_INVALID_ARGUMENT, path, "overflows");
    p = params(path, UINT64_MAX - 10, 16, 1, VSTORE_AUTO, -1, 0);
    TS_CHECK_ERROR(vstore_open(&a, &p, &v), ROTOR_ERR_INVALID_ARGUMENT, path, "overflows");
    p = params(path, 0, 16, 4, VSTORE_AUTO, 2, 0);
    TS_CHECK_ERROR(vstore_open(&a, &p, &v), ROTOR_ERR_INVALID_ARGUMENT, NULL, "direct", "2");
    p = params(path, 0, 16, 4, (vstore_backend)7, -1, 0);
    TS_CHECK_ERROR(vstore_open(&a, &p, &v), ROTOR_ERR_INVALID_ARGUMENT, NULL, "backend 7");
    p = params(path, 0, 16, 4, VSTORE_AUTO, -1, 100000);
    TS_CHECK_ERROR(vstore_open(&a, &p, &v), ROTOR_ERR_INVALID_ARGUMENT, NULL, "100000");
    p = params(path, 0, 16, 4, VSTORE_AUTO, -1, 0);
    p.rows_per_page = 3;
    p.page_bytes = 40;
    TS_CHECK_ERROR(vstore_open(&a, &p, &v), ROTOR_ERR_INVALID_ARGUMENT, path, "do not fit");
    free(path);
}

static void id_out_of_range_for(vstore_backend backend) {
    char *path = write_store("range.bin", 4096, 12, 30);
    vstore_params p = params(path, 4096, 12, 30, backend, -1, 4);
    vstore *v = open_or_skip(&p);
    vstore_reader *r;
    assert_int_equal(vstore_reader_get(v, &r), ROTOR_OK);
    uint32_t ids[] = {0, 29, 30, 1};
    seen s;
    seen_init(&s, ids, 4, 12);
    TS_CHECK_ERROR(vstore_read(r, ids, 4, on_row, &s), ROTOR_ERR_INVALID_ARGUMENT, path, "row 30",
                   "30 rows");
    assert_int_equal(s.calls, 0);
    seen_free(&s);
    uint32_t huge[] = {UINT32_MAX};
    TS_CHECK_ERROR(vstore_read(r, huge, 1, on_row, &s), ROTOR_ERR_INVALID_ARGUMENT, path,
                   "4294967295");
    /* The reader is still good. */
    read_and_check(r, ids, 2, 12);
    uint64_t reads;
    vstore_reader_take_stats(r, &reads, NULL);
    assert_int_equal(reads, 2);
    vstore_reader_put(v, r);
    vstore_close(v);
    free(path);
}

static void test_pread_id_out_of_range_is_invalid_argument(void **state) {
    (void)state;
    id_out_of_range_for(VSTORE_PREAD);
}

static void test_uring_id_out_of_range_is_invalid_argument(void **state) {
    (void)state;
    id_out_of_range_for(VSTORE_URING);
}

/* ---- streamed reads: a source that stops on what it has seen ------------- */

typedef struct stream {
    seen s;
    size_t issued, stop_after; /* the source ends once this many rows were handed over */
    size_t burst;
    unsigned window;
    size_t over_window; /* times a row was asked for with the window full */
    size_t bad_at;      /* position whose id is past the file (SIZE_MAX: none) */
} stream;

static vstore_next stream_next(void *ctx, uint32_t *id) {
    stream *t = ctx;
    if (t->s.calls >= t->stop_after || t->issued == t->s.n)
        return VSTORE_NEXT_END;
    if (t->issued >= t->burst && t->issued - t->s.calls >= t->window)
        t->over_window++;
    *id = t->issued == t->bad_at ? 1000000u : t->s.ids[t->issued];
    t->issued++;
    return VSTORE_NEXT_ROW;
}

/* A source that names a row only once the one before arrived (a walk
 * that needs the record it waits for): "later" while one is in flight. */
static vstore_next one_at_a_time(void *ctx, uint32_t *id) {
    stream *t = ctx;
    if (t->issued == t->s.n)
        return VSTORE_NEXT_END;
    if (t->issued > t->s.calls)
        return VSTORE_NEXT_LATER;
    *id = t->s.ids[t->issued++];
    return VSTORE_NEXT_ROW;
}

/* Rows come as the source names them; it is asked only when a read can go
 * out, after the completions that arrived were handed over, so with one
 * read in flight it stops exactly where it wants, and with w at most w - 1
 * rows later; the burst goes out first whatever the window. */
static void stream_for(vstore_backend backend, int direct) {
    char *path = write_store("stream.bin", 4096, 3072, 120);
    vstore_params p = params(path, 4096, 3072, 120, backend, direct, 16);
    vstore *v = open_or_skip(&p);
    vstore_reader *r;
    assert_int_equal(vstore_reader_get(v, &r), ROTOR_OK);
    uint32_t ids[100];
    for (size_t j = 0; j < 100; j++)
        ids[j] = (uint32_t)((j * 37) % 120);
    const unsigned windows[] = {1, 2, 5, 16};
    const size_t bursts[] = {0, 10, 40};
    for (size_t w = 0; w < 4; w++)
        for (size_t b = 0; b < 3; b++) {
            stream t = {
                .stop_after = 30, .burst = bursts[b], .window = windows[w], .bad_at = SIZE_MAX};
            seen_init(&t.s, ids, 100, 3072);
            rotor_status st = vstore_read_stream(r, t.burst, t.window, stream_next, on_row, &t);
            if (st != ROTOR_OK)
                fail_msg("vstore_read_stream: %s", rotor_last_error());
            assert_int_equal(t.s.wrong_bytes, 0);
            assert_int_equal(t.s.bad_j, 0);
            assert_int_equal(t.s.calls, t.issued); /* every row asked for was handed over */
            for (size_t j = 0; j < t.issued; j++)
                assert_int_equal(t.s.count[j], 1);
            assert_int_equal(t.over_window, 0);
            /* pread reads one row at a time: it stops exactly; io_uring
             * sends the burst before any completion */
            size_t most = 30;
            if (backend != VSTORE_PREAD) {
                most = 30 + windows[w] - 1;
                most = most > bursts[b] ? most : bursts[b];
            }
            assert_true(t.issued >= 30);
            assert_true(t.issued <= most);
            uint64_t reads;
            vstore_reader_take_stats(r, &reads, NULL);
            assert_int_equal(reads, t.issued);
            seen_free(&t.s);
        }
    /* A source that says "later" while its read is in flight is asked
     * again after the completion, and reads every row, whatever the window. */
    for (size_t w = 0; w < 4; w++) {
        stream t = {.window = windows[w]};
        seen_init(&t.s, ids, 100, 3072);
        rotor_status st = vstore_read_stream(r, 0, t.window, one_at_a_time, on_row, &t);
        if (st != ROTOR_OK)
            fail_msg("vstore_read_stream: %s", rotor_last_error());
        assert_int_equal(t.issued, 100);
        assert_int_equal(t.s.calls, 100);
        assert_int_equal(t.s.wrong_bytes, 0);
        for (size_t j = 0; j < 100; j++)
            assert_int_equal(t.s.count[j], 1);
        vstore_reader_take_stats(r, NULL, NULL);
        seen_free(&t.s);
    }
    /* A row past the file ends the reads with a sentence; those in flight
     * are waited for (the rows before the bad one that had landed were
     * handed over), and the reader keeps working. */
    stream t = {.stop_after = 100, .burst = 0, .window = 4, .bad_at = 20};
    seen_init(&t.s, ids, 100, 3072);
    TS_CHECK_ERROR(vstore_read_stream(r, 0, 4, stream_next, on_row, &t), ROTOR_ERR_INVALID_ARGUMENT,
                   path, "row 1000000", "position 20", "120 rows");
    assert_true(t.s.calls <= 20 && t.s.calls + 3 >= 20);
    if (backend == VSTORE_PREAD)
        assert_int_equal(t.s.calls, 20);
    assert_int_equal(t.s.wrong_bytes, 0);
    seen_free(&t.s);
    TS_CHECK_ERROR(vstore_read_stream(r, 0, 0, stream_next, on_row, &t), ROTOR_ERR_INVALID_ARGUMENT,
                   path, "window");
    read_and_check(r, ids, 50, 3072);
    vstore_reader_put(v, r);
    vstore_close(v);
    free(path);
}

static void test_pread_stream_stops_where_the_source_says(void **state) {
    (void)state;
    stream_for(VSTORE_PREAD, -1);
}

static void test_uring_stream_stops_where_the_source_says(void **state) {
    (void)state;
    stream_for(VSTORE_URING, 0);
    stream_for(VSTORE_URING, -1);
}

/* A file truncated under an open store: the read of a row past the new end
 * fails with a sentence naming the file and row, and the reader keeps
 * working for rows that are still there. */
static void truncated_after_open_for(vstore_backend backend, int direct) {
    char *path = write_store("trunc.bin", 4096, 3072, 40);
    vstore_params p = params(path, 4096, 3072, 40, backend, direct, 8);
    vstore *v = open_or_skip(&p);
    vstore_reader *r;
    assert_int_equal(vstore_reader_get(v, &r), ROTOR_OK);
    /* Row 39 loses its last 100 bytes. */
    assert_int_equal(truncate(path, 4096 + 40 * 3072 - 100), 0);
    uint32_t ids[] = {3, 39, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
    seen s;
    seen_init(&s, ids, 13, 3072);
    TS_CHECK_ERROR(vstore_read(r, ids, 13, on_row, &s), ROTOR_ERR_IO, path, "row 39", "short read");
    assert_true(s.calls < 13);
    assert_int_equal(s.wrong_bytes, 0);
    seen_free(&s);
    uint32_t ok[] = {38, 0, 38, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    read_and_check(r, ok, 13, 3072);
    vstore_reader_put(v, r);
    vstore_close(v);
    unlink(path);
    free(path);
}

static void test_pread_truncated_file_is_io_error(void **state) {
    (void)state;
    truncated_after_open_for(VSTORE_PREAD, 0);
    truncated_after_open_for(VSTORE_PREAD, -1);
}

static void test_uring_truncated_file_is_io_error(void **state) {
    (void)state;
    truncated_after_open_for(VSTORE_URING, 0);
    truncated_after_open_for(VSTORE_URING, -1);
}

static void test_rotor_io_overrides_and_rejects_unknown_values(void **state) {
    (void)state;
    char *path = write_store("env.bin", 0, 32, 8);
    rotor_allocator a = cm_allocator_default();
    vstore *v;

    vstore_params p = params(path, 0, 32, 8, VSTORE_AUTO, 0, 0);
    setenv("ROTOR_IO", "bogus", 1);
    TS_CHECK_ERROR(vstore_open(&a, &p, &v), ROTOR_ERR_INVALID_ARGUMENT, NULL, "ROTOR_IO", "bogus",
                   "uring, pread or auto");
    assert_null(v);

    p.backend = VSTORE_URING;
    setenv("ROTOR_IO", "pread", 1);
    assert_int_equal(vstore_open(&a, &p, &v), ROTOR_OK);
    assert_int_equal(vstore_backend_used(v), VSTORE_PREAD);
    vstore_close(v);

    p.backend = VSTORE_PREAD;
    setenv("ROTOR_IO", "uring", 1);
    rotor_status st = vstore_open(&a, &p, &v);
    if (st == ROTOR_OK) {
        assert_int_equal(vstore_backend_used(v), VSTORE_URING);
        vstore_close(v);
    } else {
        TS_CHECK_ERROR(st, ROTOR_ERR_UNSUPPORTED, path, "io_uring");
    }

    setenv("ROTOR_IO", "auto", 1);
    assert_int_equal(vstore_open(&a, &p, &v), ROTOR_OK);
    assert_int_not_equal(vstore_backend_used(v), VSTORE_AUTO);
    vstore_close(v);

    restore_env_io();
    free(path);
}

/* Every allocation of open, reader_get and read fails in turn: each
 * failure is ROTOR_ERR_OUT_OF_MEMORY and leaves nothing allocated. */
static void allocation_failures_for(vstore_backend backend) {
    char *path = write_store("oom.bin", 4096, 3072, 20);
    vstore_params p = params(path, 4096, 3072, 20, backend, -1, 8);
    vstore_close(open_or_skip(&p)); /* skips if the backend is unavailable */
    long failures = 0;
    for (long fail_at = 1;; fail_at++) {
        assert_true(fail_at < 100);
        ts_counting_alloc state = {0, 0, fail_at};
        rotor_allocator a = ts_counting_allocator(&state);
        vstore *v = NULL;
        rotor_status st = vstore_open(&a, &p, &v);
        vstore_reader *r = NULL;
        if (st == ROTOR_OK)
            st = vstore_reader_get(v, &r);
        if (st == ROTOR_OK) {
            uint32_t ids[] = {19, 0, 4, 4};
            seen s;
            seen_init(&s, ids, 4, 3072);
            st = vstore_read(r, ids, 4, on_row, &s);
            assert_int_equal(s.wrong_bytes, 0);
            seen_free(&s);
            vstore_reader_put(v, r);
        }
        vstore_close(v);
        assert_int_equal(state.live, 0);
        if (st == ROTOR_OK) {
            assert_true(state.calls < fail_at); /* nothing was left to fail */
            break;
        }
        TS_CHECK_ERROR(st, ROTOR_ERR_OUT_OF_MEMORY, NULL, "out of memory");
        failures++;
    }
    print_message("%s: %ld allocation failure points\n", vstore_backend_name(backend), failures);
    assert_true(failures >= 4);
    free(path);
}

static void test_pread_allocation_failures_leak_nothing(void **state) {
    (void)state;
    allocation_failures_for(VSTORE_PREAD);
}

static void test_uring_allocation_failures_leak_nothing(void **state) {
    (void)state;
    allocation_failures_for(VSTORE_URING);
}

/* ---- two threads, one store --------------------------------------------- */

typedef struct worker {
    vstore *v;
    size_t rows, row_bytes;
    uint64_t seed;
    rotor_status st;
    size_t calls, wrong, rounds;
    char error[512];
} worker;

static void *worker_main(void *arg) {
    worker *w = arg;
    uint64_t x = w->seed;
    uint32_t ids[150];
    unsigned char *expect = malloc(w->row_bytes);
    for (size_t round = 0; round < 200 && w->st == ROTOR_OK; round++) {
        vstore_reader *r;
        w->st = vstore_reader_get(w->v, &r);
        if (w->st != ROTOR_OK)
            break;
        size_t n = 1 + (size_t)(x % 150);
        for (size_t j = 0; j < n; j++) {
            x = x * 6364136223846793005ULL + 1442695040888963407ULL;
            ids[j] = (uint32_t)((x >> 33) % w->rows);
        }
        seen s;
        memset(&s, 0, sizeof s);
        s.ids = ids;
        s.n = n;
        s.row_bytes = w->row_bytes;
        unsigned count[150] = {0};
        s.count = count;
        s.expect = expect;
        w->st = vstore_read(r, ids, n, on_row, &s);
        vstore_reader_put(w->v, r);
        w->calls += s.calls;
        w->wrong += s.wrong_bytes + s.bad_j;
        for (size_t j = 0; j < n; j++)
            w->wrong += count[j] != 1;
        if (s.calls != n)
            w->wrong++;
        w->rounds++;
    }
    if (w->st != ROTOR_OK)
        snprintf(w->error, sizeof w->error, "%s", rotor_last_error());
    free(expect);
    return NULL;
}

static void concurrency_for(vstore_backend backend) {
    char *path = write_store("threads.bin", 4096, 4100, 300);
    vstore_params p = params(path, 4096, 4100, 300, backend, -1, 16);
    vstore *v = open_or_skip(&p);
    worker w[2];
    pthread_t t[2];
    for (int i = 0; i < 2; i++) {
        memset(&w[i], 0, sizeof w[i]);
        w[i].v = v;
        w[i].rows = 300;
        w[i].row_bytes = 4100;
        w[i].seed = 1234567u + (uint64_t)i * 7654321u;
        assert_int_equal(pthread_create(&t[i], NULL, worker_main, &w[i]), 0);
    }
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_join(t[i], NULL), 0);
    for (int i = 0; i < 2; i++) {
        if (w[i].st != ROTOR_OK)
            fail_msg("thread %d: %s", i, w[i].error);
        assert_int_equal(w[i].rounds, 200);
        assert_int_equal(w[i].wrong, 0);
        assert_true(w[i].calls >= 200);
    }
    vstore_close(v);
    free(path);
}

static void test_concurrency_two_threads_pread(void **state) {
    (void)state;
    concurrency_for(VSTORE_PREAD);
}

static void test_concurrency_two_threads_uring(void **state) {
    (void)state;
    concurrency_for(VSTORE_URING);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pread_buffered_reads_every_row),
        cmocka_unit_test(test_pread_direct_reads_every_row),
        cmocka_unit_test(test_uring_buffered_reads_every_row),
        cmocka_unit_test(test_uring_direct_reads_every_row),
        cmocka_unit_test(test_uring_direct_default_depth_reads_every_row),
        cmocka_unit_test(test_uring_reads_right_without_locked_memory),
        cmocka_unit_test(test_auto_names_the_backend_it_chose),
        cmocka_unit_test(test_direct_required_is_honoured_or_refused),
        cmocka_unit_test(test_pread_stats_count_rows_and_reset),
        cmocka_unit_test(test_uring_stats_count_rows_and_reset),
        cmocka_unit_test(test_readers_are_pooled),
        cmocka_unit_test(test_file_shorter_than_the_rows_is_format_error),
        cmocka_unit_test(test_missing_file_and_directory_are_io_errors),
        cmocka_unit_test(test_bad_parameters_are_invalid_arguments),
        cmocka_unit_test(test_pread_id_out_of_range_is_invalid_argument),
        cmocka_unit_test(test_uring_id_out_of_range_is_invalid_argument),
        cmocka_unit_test(test_pread_truncated_file_is_io_error),
        cmocka_unit_test(test_uring_truncated_file_is_io_error),
        cmocka_unit_test(test_pread_stream_stops_where_the_source_says),
        cmocka_unit_test(test_uring_stream_stops_where_the_source_says),
        cmocka_unit_test(test_rotor_io_overrides_and_rejects_unknown_values),
        cmocka_unit_test(test_pread_allocation_failures_leak_nothing),
        cmocka_unit_test(test_uring_allocation_failures_leak_nothing),
        cmocka_unit_test(test_concurrency_two_threads_pread),
        cmocka_unit_test(test_concurrency_two_threads_uring),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
