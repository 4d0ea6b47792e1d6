/*
 * The index file's container (storage/ixfile.c) on its own: sections
 * streamed in pieces come back byte for byte, 4 KiB aligned, with every
 * header field; each section's checksum catches a flipped byte in it and
 * only in it; the first page refuses a damaged magic, a newer version, a
 * damaged header and truncation (bytes past the recorded size are left to
 * the update log); the writer refuses to be
 * misused, and an aborted or committed write leaves no temporary behind.
 */
#include <dirent.h>
#include <stdlib.h>
#include <string.h>

#include "storage/storage.h"
#include "support/support.h"

typedef struct fixture {
    char *dir;
    uint8_t small[100], big[10000];
} fixture;

static int setup(void **state) {
    fixture *f = calloc(1, sizeof *f);
    f->dir = ts_tmpdir_create();
    for (size_t i = 0; i < sizeof f->small; i++)
        f->small[i] = (uint8_t)(i * 7 + 1);
    for (size_t i = 0; i < sizeof f->big; i++)
        f->big[i] = (uint8_t)(i * 13 + 5);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    ts_tmpdir_remove(f->dir);
    free(f);
    return 0;
}

static ixf_meta sample_meta(void) {
    ixf_meta m = {0};
    m.kind = ROTOR_INDEX_VAMANA;
    m.metric = ROTOR_METRIC_COSINE;
    m.dim = 768;
    m.count = 123456;
    strcpy(m.quant, "sq8");
    strcpy(m.walk_quant, "bin1fs");
    m.seed = 0x1234567890abcdefULL;
    m.graph_degree = 24;
    m.build_list = 77;
    m.neighbor_codes = 1;
    m.build_space = 1;
    m.nlist = 9;
    m.alpha = 1.25f;
    m.vectors_on_disk = 1;
    m.train_seconds = 3.5;
    strcpy(m.tool, "rotor test");
    m.created = 1700000000;
    return m;
}

/* Three sections: the small one whole, the big one in three pieces, an
 * empty one padded to 64 bytes; returns the path written. */
static char *write_sample(const fixture *f, const char *name) {
    char *path = ts_path(f->dir, name);
    ixf_writer *w = NULL;
    rotor_allocator a = cm_allocator_default();
    assert_int_equal(ixf_create(&a, path, &w), ROTOR_OK);
    assert_int_equal(ixf_put_section(w, IXF_SEC_QUANT, f->small, sizeof f->small), ROTOR_OK);
    assert_int_equal(ixf_section_begin(w, IXF_SEC_CODES), ROTOR_OK);
    assert_int_equal(ixf_append(w, f->big, 1), ROTOR_OK);
    assert_int_equal(ixf_append(w, f->big + 1, 4999), ROTOR_OK);
    assert_int_equal(ixf_append(w, f->big + 5000, 5000), ROTOR_OK);
    assert_int_equal(ixf_section_end(w), ROTOR_OK);
    assert_int_equal(ixf_section_begin(w, IXF_SEC_VECTORS), ROTOR_OK);
    assert_int_equal(ixf_append(w, f->small, 3), ROTOR_OK);
    assert_int_equal(ixf_pad(w, 64), ROTOR_OK);
    assert_int_equal(ixf_section_end(w), ROTOR_OK);
    ixf_meta m = sample_meta();
    assert_int_equal(ixf_commit(w, &m), ROTOR_OK);
    return path;
}

static size_t files_in(const char *dir) {
    DIR *d = opendir(dir);
    assert_non_null(d);
    size_t n = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

static void test_round_trip(void **state) {
    fixture *f = *state;
    char *path = write_sample(f, "a.rotor");
    rotor_allocator a = cm_allocator_default();
    ixf_file *file = NULL;
    assert_int_equal(ixf_open(&a, path, -1, IXF_MAP, &file), ROTOR_OK);
    assert_string_equal(ixf_path(file), path);
    const ixf_meta *m = ixf_meta_of(file), want = sample_meta();
    assert_int_equal(m->kind, want.kind);
    assert_int_equal(m->metric, want.metric);
    assert_int_equal(m->dim, want.dim);
    assert_int_equal(m->count, want.count);
    assert_string_equal(m->quant, want.quant);
    assert_string_equal(m->walk_quant, want.walk_quant);
    assert_true(m->seed == want.seed);
    assert_int_equal(m->graph_degree, want.graph_degree);
    assert_int_equal(m->build_list, want.build_list);
    assert_int_equal(m->neighbor_codes, want.neighbor_codes);
    assert_int_equal(m->build_space, want.build_space);
    assert_int_equal(m->nlist, want.nlist);
    assert_true(m->alpha == want.alpha);
    assert_int_equal(m->vectors_on_disk, want.vectors_on_disk);
    assert_true(m->train_seconds == want.train_seconds);
    assert_string_equal(m->tool, want.tool);
    assert_true(m->created == want.created);

    ixf_section s = ixf_get(file, IXF_SEC_QUANT);
    assert_int_equal(s.size, sizeof f->small);
    assert_memory_equal(s.data, f->small, sizeof f->small);
    assert_int_equal(s.offset % IXF_PAGE, 0);
    s = ixf_get(file, IXF_SEC_CODES);
    assert_int_equal(s.size, sizeof f->big);
    assert_memory_equal(s.data, f->big, sizeof f->big);
    assert_int_equal(s.offset % IXF_PAGE, 0);
    s = ixf_get(file, IXF_SEC_VECTORS);
    assert_int_equal(s.size, 64); /* 3 bytes, padded */
    assert_memory_equal(s.data, f->small, 3);
    for (size_t i = 3; i < 64; i++)
        assert_int_equal(s.data[i], 0);
    /* An absent section reads as empty and checks clean. */
    s = ixf_get(file, IXF_SEC_GRAPH);
    assert_null(s.data);
    assert_int_equal(s.size, 0);
    assert_int_equal(ixf_check(file, IXF_SEC_GRAPH), ROTOR_OK);
    assert_int_equal(ixf_check_all(file), ROTOR_OK);
    ixf_close(file);
    assert_int_equal(files_in(f->dir), 1); /* no temporary left */
    free(path);
}

/* A byte flipped inside one section fails that section's check alone. */
static void test_section_checksums(void **state) {
    fixture *f = *state;
    char *path = write_sample(f, "flip.rotor");
    size_t n;
    uint8_t *bytes = ts_read_file(path, &n);
    rotor_allocator a = cm_allocator_default();
    ixf_file *file = NULL;
    assert_int_equal(ixf_open(&a, path, -1, IXF_MAP, &file), ROTOR_OK);
    const uint64_t at = ixf_get(file, IXF_SEC_CODES).offset + 4321;
    ixf_close(file);
    bytes[at] ^= 0x10;
    ts_write_file(path, bytes, n);
    assert_int_equal(ixf_open(&a, path, -1, IXF_MAP, &file), ROTOR_OK);
    assert_int_equal(ixf_check(file, IXF_SEC_QUANT), ROTOR_OK);
    assert_int_equal(ixf_check(file, IXF_SEC_VECTORS), ROTOR_OK);
    const char *words[] = {"codes", "checksum", NULL};
    ts_check_error(ixf_check(file, IXF_SEC_CODES), ROTOR_ERR_CORRUPT, path, words);
    assert_int_equal(ixf_check_all(file), ROTOR_ERR_CORRUPT);
    ixf_close(file);

    /* A byte between sections, which no checksum covers, must stay zero. */
    bytes[at] ^= 0x10;
    assert_int_equal(ixf_open(&a, path, -1, IXF_MAP, &file), ROTOR_OK);
    const uint64_t gap = ixf_get(file, IXF_SEC_QUANT).offset + sizeof f->small + 10;
    ixf_close(file);
    bytes[gap] = 1;
    ts_write_file(path, bytes, n);
    assert_int_equal(ixf_open(&a, path, -1, IXF_MAP, &file), ROTOR_OK);
    const char *zero[] = {"not zero", NULL};
    ts_check_error(ixf_check_all(file), ROTOR_ERR_CORRUPT, path, zero);
    ixf_close(file);
    free(bytes);
    free(path);
}

/* Each damage of the first page or of the file's length, by name. */
static void test_first_page_refusals(void **state) {
    fixture *f = *state;
    char *path = write_sample(f, "page.rotor");
    size_t n;
    uint8_t *good = ts_read_file(path, &n);
    uint8_t *bad = malloc(n + 10);
    rotor_allocator a = cm_allocator_default();
    ixf_file *file = NULL;
    const struct {
        size_t at; /* byte to change; SIZE_MAX: change the length instead */
        uint8_t value;
        size_t len;
        rotor_status want;
        const char *word;
    } cases[] = {
        {0, 'X', 0, ROTOR_ERR_FORMAT, "not a rotor index"},
        {8, 2, 0, ROTOR_ERR_UNSUPPORTED, "version 2"},
        {8, 0, 0, ROTOR_ERR_FORMAT, "never existed"},
        {12, 0, 0, ROTOR_ERR_FORMAT, "byte-order"},
        {48, 1, 0, ROTOR_ERR_CORRUPT, "header checksum"},
        {SIZE_MAX, 0, 100, ROTOR_ERR_FORMAT, "truncated"},
        {SIZE_MAX, 0, IXF_PAGE + 1, ROTOR_ERR_FORMAT, "truncated"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        memcpy(bad, good, n);
        size_t len = n;
        if (cases[c].at != SIZE_MAX)
            bad[cases[c].at] = cases[c].value;
        else if (cases[c].len == (size_t)-1)
            len = n + 10; /* trailing zeros */
        else
            len = cases[c].len;
        if (len > n)
            memset(bad + n, 0, len - n);
        ts_write_file(path, bad, len);
        const char *words[] = {cases[c].word, NULL};
        ts_check_error(ixf_open(&a, path, -1, IXF_MAP, &file), cases[c].want, path, words);
        assert_null(file);
    }
    /* Bytes after the recorded size are the update log's: the container
     * maps up to the size and leaves them to the log's reader. */
    memcpy(bad, good, n);
    memset(bad + n, 0, 10);
    ts_write_file(path, bad, n + 10);
    assert_int_equal(ixf_open(&a, path, -1, IXF_MAP, &file), ROTOR_OK);
    assert_int_equal(ixf_log_start(file), n);
    ixf_close(file);
    free(bad);
    free(good);
    free(path);
}

/* The writer refuses to be misused, and an abort leaves nothing. */
static void test_writer_misuse(void **state) {
    fixture *f = *state;
    char *path = ts_path(f->dir, "misuse.rotor");
    rotor_allocator a = cm_allocator_default();
    ixf_writer *w = NULL;
    assert_int_equal(ixf_create(&a, path, &w), ROTOR_OK);
    assert_int_equal(ixf_append(w, f->small, 1), ROTOR_ERR_INVALID_ARGUMENT);
    assert_int_equal(ixf_section_end(w), ROTOR_ERR_INVALID_ARGUMENT);
    assert_int_equal(ixf_section_begin(w, IXF_SEC_CODES), ROTOR_OK);
    assert_int_equal(ixf_section_begin(w, IXF_SEC_QUANT), ROTOR_ERR_INVALID_ARGUMENT);
    ixf_meta m = sample_meta();
    assert_int_equal(ixf_commit(w, &m), ROTOR_ERR_INVALID_ARGUMENT);
    assert_int_equal(files_in(f->dir), 0); /* a failed commit leaves nothing */

    assert_int_equal(ixf_create(&a, path, &w), ROTOR_OK);
    for (unsigned i = 0; i < IXF_MAX_SECTIONS; i++)
        assert_int_equal(ixf_put_section(w, IXF_SEC_VECTORS, f->small, 1), ROTOR_OK);
    assert_int_equal(ixf_section_begin(w, IXF_SEC_VECTORS), ROTOR_ERR_INVALID_ARGUMENT);
    ixf_abort(w);
    assert_int_equal(files_in(f->dir), 0);
    ixf_abort(NULL);
    free(path);
}

/* A commit replaces an existing file whole; an abort leaves it as it was. */
static void test_replace_and_abort(void **state) {
    fixture *f = *state;
    char *path = write_sample(f, "same.rotor");
    size_t n1;
    uint8_t *first = ts_read_file(path, &n1);
    rotor_allocator a = cm_allocator_default();
    ixf_writer *w = NULL;
    assert_int_equal(ixf_create(&a, path, &w), ROTOR_OK);
    assert_int_equal(ixf_put_section(w, IXF_SEC_QUANT, f->big, 50), ROTOR_OK);
    ixf_abort(w);
    size_t n2;
    uint8_t *after = ts_read_file(path, &n2);
    assert_int_equal(n1, n2);
    assert_memory_equal(first, after, n1);
    free(after);

    assert_int_equal(ixf_create(&a, path, &w), ROTOR_OK);
    assert_int_equal(ixf_put_section(w, IXF_SEC_QUANT, f->big, 50), ROTOR_OK);
    ixf_meta m = sample_meta();
    m.count = 7;
    assert_int_equal(ixf_commit(w, &m), ROTOR_OK);
    ixf_file *file = NULL;
    assert_int_equal(ixf_open(&a, path, -1, IXF_MAP, &file), ROTOR_OK);
    assert_int_equal(ixf_meta_of(file)->count, 7);
    assert_int_equal(ixf_get(file, IXF_SEC_QUANT).size, 50);
    assert_null(ixf_get(file, IXF_SEC_CODES).data);
    ixf_close(file);
    assert_int_equal(files_in(f->dir), 1);
    free(first);
    free(path);
}

/* Every allocation of a write and an open may fail, reported, leak-free. */
static void test_alloc_failures(void **state) {
    fixture *f = *state;
    char *path = write_sample(f, "alloc.rotor");
    for (long at = 1; at < 100; at++) {
        ts_counting_alloc ca = {0};
        ca.fail_at = at;
        rotor_allocator a = ts_counting_allocator(&ca);
        ixf_file *file = NULL;
        rotor_status st = ixf_open(&a, path, -1, IXF_MAP, &file);
        if (st == ROTOR_OK)
            ixf_close(file);
        else
            assert_int_equal(st, ROTOR_ERR_OUT_OF_MEMORY);
        ixf_writer *w = NULL;
        rotor_status wst = ixf_create(&a, path, &w);
        if (wst == ROTOR_OK) {
            ixf_meta m = sample_meta();
            wst = ixf_put_section(w, IXF_SEC_QUANT, f->small, sizeof f->small);
            if (wst == ROTOR_OK)
                wst = ixf_commit(w, &m);
            else
                ixf_abort(w);
        }
        assert_true(wst == ROTOR_OK || wst == ROTOR_ERR_OUT_OF_MEMORY);
        assert_int_equal(ca.live, 0);
        if (st == ROTOR_OK && wst == ROTOR_OK)
            break;
    }
    assert_int_equal(files_in(f->dir), 1);
    free(path);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_section_checksums, setup, teardown),
        cmocka_unit_test_setup_teardown(test_first_page_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_writer_misuse, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replace_and_abort, setup, teardown),
        cmocka_unit_test_setup_teardown(test_alloc_failures, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
