/*
 * io_uring refused at search time. A store or index opened with the auto
 * backend settles on io_uring at open, but each search thread's reader sets
 * up its own ring later, and the kernel can refuse it then (out of memory,
 * io_uring switched off since, no descriptor left). The reader must then
 * read with pread, the rows must be the same, and the store (and the
 * index's stats) must say that it fell back. Asked for io_uring explicitly,
 * the same refusal is an error with a sentence.
 *
 * The refusal is made real, for this process only, by lowering
 * RLIMIT_NOFILE to the descriptors already open: a ring is a descriptor.
 * Where io_uring is not permitted at all the cases skip, saying why.
 */
#include "support/support.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "storage/storage.h"

static char *g_dir;

static int group_setup(void **state) {
    (void)state;
    g_dir = ts_tmpdir_create();
    return 0;
}

static int group_teardown(void **state) {
    (void)state;
    ts_tmpdir_remove(g_dir);
    return 0;
}

static void skip_if_forced(void) {
    const char *e = getenv("ROTOR_IO");
    if (e != NULL && e[0] != '\0' && strcmp(e, "auto") != 0) {
        print_message("ROTOR_IO=%s forces a backend: skipped\n", e);
        skip();
    }
}

/* Lowers the soft descriptor limit to the lowest free descriptor, so that
 * no new one can be made; *saved gets the limit to restore. */
static void run_out_of_descriptors(struct rlimit *saved) {
    assert_int_equal(getrlimit(RLIMIT_NOFILE, saved), 0);
    int lowest_free = dup(0);
    assert_true(lowest_free >= 0);
    close(lowest_free);
    struct rlimit tight = {(rlim_t)lowest_free, saved->rlim_max};
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &tight), 0);
}

static void restore_descriptors(const struct rlimit *saved) {
    assert_int_equal(setrlimit(RLIMIT_NOFILE, saved), 0);
}

enum { ROWS = 64, ROW_BYTES = 256 };

static char *write_rows(const char *name) {
    unsigned char buf[ROWS * ROW_BYTES];
    for (size_t i = 0; i < sizeof buf; i++)
        buf[i] = (unsigned char)(i * 7 + i / ROW_BYTES);
    char *path = ts_path(g_dir, name);
    ts_write_file(path, buf, sizeof buf);
    return path;
}

typedef struct rows_seen {
    unsigned count;
    bool wrong;
} rows_seen;

static const uint32_t g_ids[] = {3, 0, 63, 17, 17, 40};

static void check_row(void *ctx, size_t j, const void *row) {
    rows_seen *s = ctx;
    const unsigned char *r = row;
    size_t base = (size_t)g_ids[j] * ROW_BYTES;
    for (size_t k = 0; k < ROW_BYTES; k++)
        if (r[k] != (unsigned char)((base + k) * 7 + (base + k) / ROW_BYTES))
            s->wrong = true;
    s->count++;
}

static vstore *open_store(const char *path, vstore_backend backend) {
    vstore_params p = {path, 0, ROW_BYTES, ROWS, backend, 0, 8, false, -1, 0, 0};
    rotor_allocator a = cm_allocator_default();
    vstore *v = NULL;
    rotor_status st = vstore_open(&a, &p, &v);
    if (st == ROTOR_OK && vstore_backend_used(v) != VSTORE_URING) {
        print_message("io_uring is not permitted here: the store reads with %s; skipped\n",
                      vstore_backend_name(vstore_backend_used(v)));
        vstore_close(v);
        skip();
    }
    if (st == ROTOR_ERR_UNSUPPORTED) {
        print_message("io_uring is not permitted here (%s): skipped\n", rotor_last_error());
        skip();
    }
    assert_int_equal(st, ROTOR_OK);
    return v;
}

static void test_auto_store_falls_back_to_pread_when_a_ring_is_refused(void **state) {
    (void)state;
    skip_if_forced();
    char *path = write_rows("auto.bin");
    vstore *v = open_store(path, VSTORE_AUTO);
    assert_false(vstore_fell_back(v));
    struct rlimit saved;
    run_out_of_descriptors(&saved);
    vstore_reader *r = NULL;
    rotor_status st = vstore_reader_get(v, &r);
    rows_seen seen = {0, false};
    if (st == ROTOR_OK)
        st = vstore_read(r, g_ids, sizeof g_ids / sizeof g_ids[0], check_row, &seen);
    restore_descriptors(&saved);
    assert_int_equal(st, ROTOR_OK);
    assert_int_equal(seen.count, sizeof g_ids / sizeof g_ids[0]);
    assert_false(seen.wrong);
    assert_true(vstore_fell_back(v));
    vstore_reader_put(v, r);
    vstore_close(v);
    free(path);
}

static void test_uring_store_fails_when_a_ring_is_refused(void **state) {
    (void)state;
    skip_if_forced();
    char *path = write_rows("uring.bin");
    vstore *v = open_store(path, VSTORE_URING);
    struct rlimit saved;
    run_out_of_descriptors(&saved);
    vstore_reader *r = NULL;
    rotor_status st = vstore_reader_get(v, &r);
    restore_descriptors(&saved);
    assert_int_not_equal(st, ROTOR_OK);
    assert_null(r);
    assert_non_null(strstr(rotor_last_error(), "io_uring"));
    assert_false(vstore_fell_back(v));
    vstore_close(v);
    free(path);
}

/* Through the public API: an index with its vectors on disk, opened with
 * the auto backend, searched while no ring can be made. */
static void test_index_search_falls_back_and_says_so_in_its_stats(void **state) {
    (void)state;
    skip_if_forced();
    enum { N = 300, DIM = 16, K = 5 };
    float *x = malloc(sizeof(float) * N * DIM);
    assert_non_null(x);
    ts_rng rng;
    ts_rng_init(&rng, 5);
    ts_fill_uniform(&rng, x, N * DIM, -1, 1);
    rotor_params p = rotor_params_default();
    p.quant = "tq4";
    p.full_vectors = ROTOR_VECTORS_DISK;
    rotor_matrix m = {x, N, DIM, ROTOR_ELEM_F32};
    rotor_index *built = NULL;
    assert_int_equal(rotor_index_build(&p, &m, &built), ROTOR_OK);
    char *path = ts_path(g_dir, "disk.rotor");
    assert_int_equal(rotor_index_save(built, path), ROTOR_OK);

    rotor_open_params op = rotor_open_params_default();
    op.io = ROTOR_IO_AUTO;
    rotor_index *ix = NULL;
    assert_int_equal(rotor_index_open(path, &op, &ix), ROTOR_OK);
    rotor_index_stats s;
    assert_int_equal(rotor_index_stats_get(ix, &s), ROTOR_OK);
    assert_int_equal(s.vectors_on_disk, 1);
    if (strcmp(s.io_backend, "io_uring") != 0) {
        print_message("io_uring is not permitted here (the index reads with %s): skipped\n",
                      s.io_backend);
        rotor_index_close(ix);
        rotor_index_close(built);
        free(path);
        free(x);
        skip();
    }
    assert_int_equal(s.io_fallback, 0);

    int64_t want[K], got[K];
    float dw[K], dg[K];
    assert_int_equal(rotor_index_search(built, NULL, x + 7 * DIM, DIM, K, want, dw), ROTOR_OK);
    struct rlimit saved;
    run_out_of_descriptors(&saved);
    rotor_status st = rotor_index_search(ix, NULL, x + 7 * DIM, DIM, K, got, dg);
    restore_descriptors(&saved);
    assert_int_equal(st, ROTOR_OK);
    for (int i = 0; i < K; i++) {
        assert_int_equal(got[i], want[i]);
        assert_true(fabsf(dg[i] - dw[i]) <= 1e-4f * (1 + fabsf(dw[i])));
    }
    assert_int_equal(rotor_index_stats_get(ix, &s), ROTOR_OK);
    assert_int_equal(s.io_fallback, 1);
    assert_string_equal(s.io_backend, "io_uring");
    rotor_index_close(ix);
    rotor_index_close(built);
    free(path);
    free(x);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_auto_store_falls_back_to_pread_when_a_ring_is_refused),
        cmocka_unit_test(test_uring_store_fails_when_a_ring_is_refused),
        cmocka_unit_test(test_index_search_falls_back_and_says_so_in_its_stats),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
