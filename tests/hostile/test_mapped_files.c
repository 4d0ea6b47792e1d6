/*
 * Mapped files. An index opened with `load` 1 reads its file with pread and
 * never maps it: no mapping of the file is left in the process, and a file
 * truncated under the open index (what another program must not do to a
 * mapped index, which would end the process with SIGBUS) changes nothing
 * for its searches. Opened by default or with `load` 0, the same file is
 * mapped: the check below would see it, so the first assertion can fail;
 * the default open copies the arrays of an index this small out of the
 * mapping, `load` 0 does not. A loaded index with its vectors on disk still
 * saves them whole.
 */
#include "support/support.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rotor.h"

enum { N = 3000, DIM = 24, K = 5 };

/* Whether /proc/self/maps lists `path`. */
static bool mapped(const char *path) {
    FILE *f = fopen("/proc/self/maps", "r");
    assert_non_null(f);
    char line[4096];
    bool found = false;
    while (fgets(line, sizeof line, f) != NULL)
        if (strstr(line, path) != NULL)
            found = true;
    fclose(f);
    return found;
}

/* N x DIM uniform rows (malloc'd), built into an index by p and saved to
 * path; the built index is returned for its answers. */
static rotor_index *build_saved(const rotor_params *p, uint64_t seed, const char *path,
                                float **rows) {
    float *x = malloc(sizeof(float) * N * DIM);
    assert_non_null(x);
    ts_rng rng;
    ts_rng_init(&rng, seed);
    ts_fill_uniform(&rng, x, N * DIM, -1, 1);
    rotor_matrix m = {x, N, DIM, ROTOR_ELEM_F32};
    rotor_index *built = NULL;
    assert_int_equal(rotor_index_build(p, &m, &built), ROTOR_OK);
    assert_int_equal(rotor_index_save(built, path), ROTOR_OK);
    *rows = x;
    return built;
}

/* One kind of index: built, saved, opened mapped (the check sees the
 * mapping), then loaded: no mapping, and the same answers after the file is
 * truncated under it, so nothing of the index still lives in the file or in
 * the parts of its copy that the load gave back. */
static void check_kind(const char *dir, const rotor_params *p, const char *name) {
    char *path = ts_path(dir, name);
    float *x;
    rotor_index *built = build_saved(p, 9, path, &x);

    /* The default open maps (the check can see it) and, the index being
     * small, copies its arrays; load 0 maps only. */
    rotor_index *ix = NULL;
    rotor_index_stats st;
    assert_int_equal(rotor_index_open(path, NULL, &ix), ROTOR_OK);
    assert_true(mapped(path));
    assert_int_equal(rotor_index_stats_get(ix, &st), ROTOR_OK);
    assert_int_equal(st.copied, 1);
    rotor_index_close(ix);
    assert_false(mapped(path));
    rotor_open_params op = rotor_open_params_default();
    op.load = 0;
    assert_int_equal(rotor_index_open(path, &op, &ix), ROTOR_OK);
    assert_true(mapped(path));
    assert_int_equal(rotor_index_stats_get(ix, &st), ROTOR_OK);
    assert_int_equal(st.copied, 0);
    rotor_index_close(ix);

    op.load = 1;
    assert_int_equal(rotor_index_open(path, &op, &ix), ROTOR_OK);
    assert_false(mapped(path));
    assert_int_equal(rotor_index_stats_get(ix, &st), ROTOR_OK);
    assert_int_equal(st.copied, 1);
    assert_int_equal(truncate(path, 0), 0);
    rotor_search_params sp = rotor_search_params_default();
    sp.nprobe = 4;
    int64_t want[K], got[K];
    float dw[K], dg[K];
    for (int q = 0; q < 20; q++) {
        const float *query = x + (size_t)q * 17 % N * DIM;
        assert_int_equal(rotor_index_search(built, &sp, query, DIM, K, want, dw), ROTOR_OK);
        assert_int_equal(rotor_index_search(ix, &sp, query, DIM, K, got, dg), ROTOR_OK);
        assert_memory_equal(got, want, sizeof want);
        assert_memory_equal(dg, dw, sizeof dw);
    }
    rotor_index_close(ix);
    rotor_index_close(built);
    free(x);
    free(path);
}

static void test_loaded_index_is_never_mapped_and_survives_truncation(void **state) {
    (void)state;
    char *dir = ts_tmpdir_create();
    rotor_params p = rotor_params_default();
    p.threads = 1;
    p.quant = "tq4";
    check_kind(dir, &p, "flat.rotor");
    p.kind = ROTOR_INDEX_VAMANA;
    p.quant = "sq8";
    check_kind(dir, &p, "vamana.rotor");
    p.walk_quant = "bin1fs";
    check_kind(dir, &p, "walk.rotor");
    p.kind = ROTOR_INDEX_IVF;
    p.quant = "pq8x4";
    p.walk_quant = NULL;
    p.nlist = 8;
    check_kind(dir, &p, "ivf.rotor");
    ts_tmpdir_remove(dir);
}

/* A loaded index with its vectors on disk holds no copy of them, yet saves
 * them whole: the save reads them from the file then. */
static void test_loaded_disk_index_saves_its_vectors(void **state) {
    (void)state;
    char *dir = ts_tmpdir_create();
    char *path = ts_path(dir, "d.rotor");
    char *copy = ts_path(dir, "copy.rotor");
    rotor_params p = rotor_params_default();
    p.quant = "tq4";
    p.full_vectors = ROTOR_VECTORS_DISK;
    float *x;
    rotor_index *built = build_saved(&p, 10, path, &x);
    rotor_open_params op = rotor_open_params_default();
    op.load = 1;
    op.io = ROTOR_IO_PREAD;
    rotor_index *ix = NULL;
    assert_int_equal(rotor_index_open(path, &op, &ix), ROTOR_OK);
    rotor_status saved = rotor_index_save(ix, copy);
    if (saved != ROTOR_OK)
        fail_msg("save: %s", rotor_last_error());
    rotor_index_close(ix);
    assert_int_equal(rotor_index_verify(copy), ROTOR_OK);
    size_t n0, n1;
    char *a = ts_read_file(path, &n0), *b = ts_read_file(copy, &n1);
    assert_int_equal(n0, n1);
    /* Equal but for the header's creation time and checksum. */
    assert_memory_equal(a + 4096, b + 4096, n0 - 4096);
    free(a);
    free(b);
    rotor_index_close(built);
    free(x);
    free(copy);
    free(path);
    ts_tmpdir_remove(dir);
}

/* An allocator with no block larger than SMALL_BLOCK: enough to open an
 * index, not to copy its arrays. */
enum { SMALL_BLOCK = 160 << 10 };

static void *small_alloc(void *opaque, size_t size, size_t align) {
    (void)opaque;
    if (size > SMALL_BLOCK)
        return NULL;
    size_t rounded = (size + align - 1) / align * align;
    return aligned_alloc(align, rounded == 0 ? align : rounded);
}

static void small_free(void *opaque, void *p) {
    (void)opaque;
    free(p);
}

/* The copy the default open makes unasked gives way to the mapping when
 * its memory cannot be had: the open succeeds, mapped, with the same
 * answers; asked for (load 1), the same shortage fails the open. */
static void test_default_open_maps_when_the_copy_finds_no_memory(void **state) {
    (void)state;
    char *dir = ts_tmpdir_create();
    char *path = ts_path(dir, "v.rotor");
    rotor_params p = rotor_params_default();
    p.kind = ROTOR_INDEX_VAMANA;
    p.quant = "sq8";
    p.threads = 1;
    float *x;
    rotor_index *built = build_saved(&p, 11, path, &x);

    rotor_open_params op = rotor_open_params_default();
    op.allocator = (rotor_allocator){small_alloc, small_free, NULL};
    rotor_index *ix = NULL;
    rotor_status opened = rotor_index_open(path, &op, &ix);
    if (opened != ROTOR_OK)
        fail_msg("open: %s", rotor_last_error());
    rotor_index_stats st;
    assert_int_equal(rotor_index_stats_get(ix, &st), ROTOR_OK);
    assert_int_equal(st.copied, 0);
    assert_true(mapped(path));
    int64_t want[K], got[K];
    for (int q = 0; q < 20; q++) {
        const float *query = x + (size_t)q * 31 % N * DIM;
        assert_int_equal(rotor_index_search(built, NULL, query, DIM, K, want, NULL), ROTOR_OK);
        assert_int_equal(rotor_index_search(ix, NULL, query, DIM, K, got, NULL), ROTOR_OK);
        assert_memory_equal(got, want, sizeof want);
    }
    rotor_index_close(ix);

    op.load = 1;
    ix = NULL;
    assert_int_equal(rotor_index_open(path, &op, &ix), ROTOR_ERR_OUT_OF_MEMORY);
    assert_null(ix);
    rotor_index_close(built);
    free(x);
    free(path);
    ts_tmpdir_remove(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_loaded_index_is_never_mapped_and_survives_truncation),
        cmocka_unit_test(test_loaded_disk_index_saves_its_vectors),
        cmocka_unit_test(test_default_open_maps_when_the_copy_finds_no_memory),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
