/*
 * The update log (storage/FORMAT.md, "The update log"): an index opened
 * writable records every add, update, remove and set_labels in its file,
 * and every open replays them, for every kind: the reopened index holds
 * the same keys, vectors and labels as one that made the changes in
 * memory. A failed change leaves the file byte for byte as it was. A log
 * cut at every byte of its last record opens with the records before it
 * (and a writable open cuts the rest off); a damaged record ends the log
 * there, and verify refuses whole records after it; whole records with
 * impossible contents are refused by name; a record of a change that
 * failed is skipped. One writer per file; a save over the file folds the
 * log in and the index goes on appending to the new file. An index with
 * its vectors on disk records removals and labels and refuses adds. Every
 * allocation failure of a writable open and of a recorded change is
 * reported, leak-free, with the file unchanged. Searches, stats and syncs
 * run beside a writable index's writer.
 */
#include <fcntl.h>
#include <pthread.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "support/support.h"

enum { N = 600, D = 8, KMAX = 20000 };

typedef struct fixture {
    float *rows; /* N base rows, then 200 more to add */
    char *dir;
} fixture;

static int setup(void **state) {
    fixture *f = calloc(1, sizeof *f);
    ts_rng r;
    ts_rng_init(&r, 7070);
    f->rows = malloc((N + 200) * D * sizeof(float));
    ts_fill_uniform(&r, f->rows, (N + 200) * D, -1.0f, 1.0f);
    f->dir = ts_tmpdir_create();
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    free(f->rows);
    ts_tmpdir_remove(f->dir);
    free(f);
    return 0;
}

static uint64_t size_of(const char *path) {
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    return (uint64_t)sb.st_size;
}

/* An index of `kind` over the N base rows, saved to dir/name. */
static char *saved(const fixture *f, const char *name, rotor_index_kind kind, const char *quant,
                   rotor_vectors_place place) {
    rotor_params p = rotor_params_default();
    p.kind = kind;
    p.quant = quant;
    p.threads = 1;
    p.calibrate = 0;
    p.full_vectors = place;
    if (kind == ROTOR_INDEX_IVF)
        p.nlist = 8;
    rotor_matrix m = {f->rows, N, D, ROTOR_ELEM_F32};
    rotor_index *ix = NULL;
    assert_int_equal(rotor_index_build(&p, &m, &ix), ROTOR_OK);
    char *path = ts_path(f->dir, name);
    assert_int_equal(rotor_index_save(ix, path), ROTOR_OK);
    rotor_index_close(ix);
    return path;
}

static rotor_index *open_as(const char *path, int writable, rotor_vectors_place place) {
    rotor_open_params op = rotor_open_params_default();
    op.writable = writable;
    op.vectors = place;
    rotor_index *ix = NULL;
    rotor_status st = rotor_index_open(path, &op, &ix);
    if (st != ROTOR_OK)
        fail_msg("open of %s: %s", path, rotor_last_error());
    return ix;
}

static rotor_index_stats stats_of(const rotor_index *ix) {
    rotor_index_stats s;
    assert_int_equal(rotor_index_stats_get(ix, &s), ROTOR_OK);
    return s;
}

/* The changes every test makes, one record each: adds with keys (float32
 * and uint8 rows) and without, a remove, an update, labels by key and by
 * row. Returns how many. */
static size_t changes(const fixture *f, rotor_index *ix) {
    int64_t keys[20];
    for (int i = 0; i < 20; i++)
        keys[i] = 10000 + i;
    rotor_matrix add = {f->rows + N * D, 20, D, ROTOR_ELEM_F32};
    assert_int_equal(rotor_index_add_with_keys(ix, &add, keys), ROTOR_OK);
    const int64_t gone[3] = {3, 5, 10002};
    assert_int_equal(rotor_index_remove(ix, gone, 3), ROTOR_OK);
    const int64_t upd[2] = {7, 10005};
    rotor_matrix repl = {f->rows + (N + 20) * D, 2, D, ROTOR_ELEM_F32};
    assert_int_equal(rotor_index_update(ix, &repl, upd), ROTOR_OK);
    const int64_t lab_ids[3] = {1, 2, 10000};
    const uint64_t off[4] = {0, 1, 3, 3};
    const uint32_t val[3] = {1, 2, 3};
    rotor_labels l = {off, val, 3};
    assert_int_equal(rotor_index_set_labels(ix, lab_ids, &l), ROTOR_OK);
    uint8_t bytes[5 * D];
    for (size_t i = 0; i < sizeof bytes; i++)
        bytes[i] = (uint8_t)(i * 37);
    int64_t bkeys[5] = {20000 - 1, 20000 - 2, 20000 - 3, 20000 - 4, 20000 - 5};
    rotor_matrix b = {bytes, 5, D, ROTOR_ELEM_U8};
    assert_int_equal(rotor_index_add_with_keys(ix, &b, bkeys), ROTOR_OK);
    const uint64_t off2[3] = {0, 2, 2};
    const uint32_t val2[2] = {9, 4};
    rotor_labels l2 = {off2, val2, 2};
    assert_int_equal(rotor_index_set_labels(ix, NULL, &l2), ROTOR_OK);
    rotor_matrix plain = {f->rows + (N + 30) * D, 3, D, ROTOR_ELEM_F32};
    assert_int_equal(rotor_index_add(ix, &plain), ROTOR_OK);
    /* Vectors with their labels, one record each: with keys, and without
     * (the keys the add gives label them). */
    const int64_t lkeys[2] = {15000, 15001};
    const uint64_t off3[3] = {0, 1, 3};
    const uint32_t val3[3] = {6, 8, 7};
    rotor_labels l3 = {off3, val3, 2};
    rotor_matrix two = {f->rows + (N + 33) * D, 2, D, ROTOR_ELEM_F32};
    assert_int_equal(rotor_index_add_with_labels(ix, &two, lkeys, &l3), ROTOR_OK);
    rotor_matrix other = {f->rows + (N + 35) * D, 2, D, ROTOR_ELEM_F32};
    assert_int_equal(rotor_index_add_with_labels(ix, &other, NULL, &l3), ROTOR_OK);
    uint32_t got[4];
    size_t ngot = 0;
    assert_int_equal(rotor_index_get_labels(ix, 15001, got, 4, &ngot), ROTOR_OK);
    assert_int_equal(ngot, 2);
    assert_int_equal(got[0], 7);
    assert_int_equal(got[1], 8);
    return 9;
}

/* Asserts a and b hold the same keys, vectors and labels. */
static void same_facts(const rotor_index *a, const rotor_index *b) {
    rotor_index_stats sa = stats_of(a), sb = stats_of(b);
    assert_int_equal(sa.count, sb.count);
    assert_int_equal(sa.slots, sb.slots);
    assert_int_equal(sa.deleted, sb.deleted);
    for (int64_t k = 0; k < KMAX; k++) {
        int fa = 0, fb = 0;
        assert_int_equal(rotor_index_contains(a, k, &fa), ROTOR_OK);
        assert_int_equal(rotor_index_contains(b, k, &fb), ROTOR_OK);
        if (fa != fb)
            fail_msg("key %lld: %d in one index, %d in the other", (long long)k, fa, fb);
        if (!fa)
            continue;
        float va[D], vb[D];
        assert_int_equal(rotor_index_get(a, k, va), ROTOR_OK);
        assert_int_equal(rotor_index_get(b, k, vb), ROTOR_OK);
        assert_memory_equal(va, vb, sizeof va);
        uint32_t la[8], lb[8];
        size_t na, nb;
        assert_int_equal(rotor_index_get_labels(a, k, la, 8, &na), ROTOR_OK);
        assert_int_equal(rotor_index_get_labels(b, k, lb, 8, &nb), ROTOR_OK);
        assert_int_equal(na, nb);
        if (na > 0)
            assert_memory_equal(la, lb, na * sizeof *la);
    }
}

/* Every kind: the changes come back from the file, searches return live
 * keys, and a save elsewhere leaves the log behind while a save over the
 * file folds it in. */
static void test_round_trip_every_kind(void **state) {
    fixture *f = *state;
    const struct {
        rotor_index_kind kind;
        const char *quant;
    } kinds[] = {{ROTOR_INDEX_FLAT, NULL},
                 {ROTOR_INDEX_FLAT, "sq8"},
                 {ROTOR_INDEX_VAMANA, "sq8"},
                 {ROTOR_INDEX_IVF, "pq4x4"}};
    for (size_t c = 0; c < sizeof kinds / sizeof kinds[0]; c++) {
        char *path = saved(f, "kind.rotor", kinds[c].kind, kinds[c].quant, ROTOR_VECTORS_RAM);
        const uint64_t base = size_of(path);
        rotor_index *mem = open_as(path, 0, ROTOR_VECTORS_AS_SAVED);
        rotor_index *w = open_as(path, 1, ROTOR_VECTORS_AS_SAVED);
        assert_int_equal(stats_of(w).writable, 1);
        const size_t n = changes(f, w);
        changes(f, mem);
        same_facts(w, mem);
        rotor_index_stats s = stats_of(w);
        assert_int_equal(s.log_records, n);
        assert_int_equal(size_of(path), base + s.log_bytes);
        assert_int_equal(rotor_index_sync(w), ROTOR_OK);
        rotor_index_close(w);
        assert_int_equal(rotor_index_verify(path), ROTOR_OK);

        rotor_index *back = open_as(path, 0, ROTOR_VECTORS_AS_SAVED);
        s = stats_of(back);
        assert_int_equal(s.writable, 0);
        assert_int_equal(s.log_records, n);
        assert_int_equal(s.log_skipped, 0);
        assert_int_equal(s.log_tail_bytes, 0);
        same_facts(back, mem);
        float q[D] = {0};
        int64_t ids[10];
        assert_int_equal(rotor_index_search(back, NULL, q, D, 10, ids, NULL), ROTOR_OK);
        for (int i = 0; i < 10; i++) {
            int found = 0;
            assert_int_equal(rotor_index_contains(back, ids[i], &found), ROTOR_OK);
            assert_true(found);
        }
        /* Saved elsewhere: a whole file without a log. */
        char *other = ts_path(f->dir, "other.rotor");
        assert_int_equal(rotor_index_save(back, other), ROTOR_OK);
        rotor_index *folded = open_as(other, 0, ROTOR_VECTORS_AS_SAVED);
        assert_int_equal(stats_of(folded).log_records, 0);
        same_facts(folded, mem);
        rotor_index_close(folded);
        rotor_index_close(back);
        rotor_index_close(mem);
        free(other);
        free(path);
    }
}

/* A change that fails leaves the file byte for byte as it was, and the
 * index as it was. */
static void test_failed_change_leaves_file(void **state) {
    fixture *f = *state;
    char *path = saved(f, "fail.rotor", ROTOR_INDEX_FLAT, NULL, ROTOR_VECTORS_RAM);
    rotor_index *w = open_as(path, 1, ROTOR_VECTORS_AS_SAVED);
    rotor_matrix one = {f->rows + N * D, 1, D, ROTOR_ELEM_F32};
    const int64_t k0 = 12345;
    assert_int_equal(rotor_index_add_with_keys(w, &one, &k0), ROTOR_OK);
    size_t n;
    uint8_t *before = ts_read_file(path, &n);

    const int64_t taken = 4, missing = 99999, twice[2] = {8, 8};
    TS_CHECK_ERROR(rotor_index_add_with_keys(w, &one, &taken), ROTOR_ERR_INVALID_ARGUMENT, NULL,
                   "4");
    TS_CHECK_ERROR(rotor_index_remove(w, &missing, 1), ROTOR_ERR_NOT_FOUND, NULL, "99999");
    TS_CHECK_ERROR(rotor_index_remove(w, twice, 2), ROTOR_ERR_INVALID_ARGUMENT, NULL, "twice");
    TS_CHECK_ERROR(rotor_index_update(w, &one, &missing), ROTOR_ERR_NOT_FOUND, NULL, "99999");
    float bad[D] = {0};
    bad[3] = NAN;
    rotor_matrix nan = {bad, 1, D, ROTOR_ELEM_F32};
    const int64_t k1 = 777777;
    TS_CHECK_ERROR(rotor_index_add_with_keys(w, &nan, &k1), ROTOR_ERR_NOT_FINITE, NULL, "added");
    rotor_matrix wide = {f->rows, 1, D + 1, ROTOR_ELEM_F32};
    TS_CHECK_ERROR(rotor_index_add(w, &wide), ROTOR_ERR_DIMENSION, NULL, "dimensions");
    const uint64_t off[2] = {0, 1};
    const uint32_t val[1] = {5};
    rotor_labels l = {off, val, 1};
    TS_CHECK_ERROR(rotor_index_set_labels(w, &missing, &l), ROTOR_ERR_NOT_FOUND, NULL, "99999");
    const uint64_t back_off[2] = {1, 0};
    rotor_labels bad_l = {back_off, val, 1};
    assert_int_equal(rotor_index_set_labels(w, &k0, &bad_l), ROTOR_ERR_INVALID_ARGUMENT);
    /* Vectors with labels: a taken key, labels for other rows, bad labels,
     * NaN: the labels come to nothing either. */
    TS_CHECK_ERROR(rotor_index_add_with_labels(w, &one, &taken, &l), ROTOR_ERR_INVALID_ARGUMENT,
                   NULL, "4");
    rotor_matrix pair = {f->rows + N * D, 2, D, ROTOR_ELEM_F32};
    const int64_t k23[2] = {23, 24};
    TS_CHECK_ERROR(rotor_index_add_with_labels(w, &pair, k23, &l), ROTOR_ERR_INVALID_ARGUMENT, NULL,
                   "labels");
    assert_int_equal(rotor_index_add_with_labels(w, &one, &k1, &bad_l), ROTOR_ERR_INVALID_ARGUMENT);
    TS_CHECK_ERROR(rotor_index_add_with_labels(w, &nan, &k1, &l), ROTOR_ERR_NOT_FINITE, NULL,
                   "added");
    int found = 1;
    assert_int_equal(rotor_index_contains(w, k1, &found), ROTOR_OK);
    assert_false(found);
    assert_int_equal(stats_of(w).labelled, 0);

    size_t m;
    uint8_t *after = ts_read_file(path, &m);
    assert_int_equal(m, n);
    assert_memory_equal(before, after, n);
    assert_int_equal(stats_of(w).log_records, 1);
    rotor_index_close(w);
    rotor_index *back = open_as(path, 0, ROTOR_VECTORS_AS_SAVED);
    assert_int_equal(stats_of(back).count, N + 1);
    assert_int_equal(stats_of(back).log_skipped, 0);
    rotor_index_close(back);
    free(before);
    free(after);
    free(path);
}

/* Writes `changes` to a fresh file, noting where each record ends. */
static char *logged_file(const fixture *f, const char *name, uint64_t *ends, size_t *records) {
    char *path = saved(f, name, ROTOR_INDEX_FLAT, NULL, ROTOR_VECTORS_RAM);
    const uint64_t base = size_of(path);
    rotor_index *w = open_as(path, 1, ROTOR_VECTORS_AS_SAVED);
    int64_t keys[20];
    for (int i = 0; i < 20; i++)
        keys[i] = 10000 + i;
    rotor_matrix add = {f->rows + N * D, 20, D, ROTOR_ELEM_F32};
    const int64_t gone[3] = {3, 5, 10002};
    const int64_t upd[2] = {7, 10005};
    rotor_matrix repl = {f->rows + (N + 20) * D, 2, D, ROTOR_ELEM_F32};
    size_t i = 0;
    assert_int_equal(rotor_index_add_with_keys(w, &add, keys), ROTOR_OK);
    ends[i++] = base + stats_of(w).log_bytes;
    assert_int_equal(rotor_index_remove(w, gone, 3), ROTOR_OK);
    ends[i++] = base + stats_of(w).log_bytes;
    assert_int_equal(rotor_index_update(w, &repl, upd), ROTOR_OK);
    ends[i++] = base + stats_of(w).log_bytes;
    *records = i;
    rotor_index_close(w);
    return path;
}

/* The facts after the first `k` of logged_file's changes, from memory. */
static rotor_index *expected_after(const fixture *f, const char *base_path, size_t k) {
    rotor_index *ix = open_as(base_path, 0, ROTOR_VECTORS_AS_SAVED);
    int64_t keys[20];
    for (int i = 0; i < 20; i++)
        keys[i] = 10000 + i;
    rotor_matrix add = {f->rows + N * D, 20, D, ROTOR_ELEM_F32};
    const int64_t gone[3] = {3, 5, 10002};
    const int64_t upd[2] = {7, 10005};
    rotor_matrix repl = {f->rows + (N + 20) * D, 2, D, ROTOR_ELEM_F32};
    if (k > 0)
        assert_int_equal(rotor_index_add_with_keys(ix, &add, keys), ROTOR_OK);
    if (k > 1)
        assert_int_equal(rotor_index_remove(ix, gone, 3), ROTOR_OK);
    if (k > 2)
        assert_int_equal(rotor_index_update(ix, &repl, upd), ROTOR_OK);
    return ix;
}

/* A crash can cut the last record anywhere: at every byte the file opens
 * with the records before it, ignores the rest, verifies, and a writable
 * open cuts the rest off and appends after it. */
static void test_torn_tail_at_every_byte(void **state) {
    fixture *f = *state;
    uint64_t ends[8];
    size_t records;
    char *path = logged_file(f, "torn.rotor", ends, &records);
    size_t n;
    uint8_t *whole = ts_read_file(path, &n);
    assert_int_equal(n, ends[records - 1]);
    const uint64_t last = ends[records - 2];
    /* The sections alone: the file cut where its log starts. */
    rotor_index *w0 = open_as(path, 0, ROTOR_VECTORS_AS_SAVED);
    const uint64_t log_start = n - stats_of(w0).log_bytes;
    rotor_index_close(w0);
    char *base_path = ts_path(f->dir, "torn-base.rotor");
    ts_write_file(base_path, whole, (size_t)log_start);
    rotor_index *want = expected_after(f, base_path, records - 1);
    rotor_index *all = expected_after(f, base_path, records);
    for (uint64_t cut = last; cut <= n; cut++) {
        ts_write_file(path, whole, (size_t)cut);
        rotor_index *ix = open_as(path, 0, ROTOR_VECTORS_AS_SAVED);
        rotor_index_stats s = stats_of(ix);
        const bool complete = cut == n;
        assert_int_equal(s.log_records, complete ? records : records - 1);
        assert_int_equal(s.log_tail_bytes, complete ? 0 : cut - last);
        /* The facts are checked at a few cuts: each costs a full pass. */
        if (complete || cut == last || cut % 97 == 0)
            same_facts(ix, complete ? all : want);
        rotor_index_close(ix);
        if (rotor_index_verify(path) != ROTOR_OK)
            fail_msg("verify of the log cut at %llu: %s", (unsigned long long)cut,
                     rotor_last_error());
    }
    /* A writable open cuts an unfinished record off before appending. */
    ts_write_file(path, whole, (size_t)(last + 41));
    rotor_index *w = open_as(path, 1, ROTOR_VECTORS_AS_SAVED);
    assert_int_equal(size_of(path), last);
    const int64_t gone = 0;
    assert_int_equal(rotor_index_remove(w, &gone, 1), ROTOR_OK);
    rotor_index_close(w);
    rotor_index *ix = open_as(path, 0, ROTOR_VECTORS_AS_SAVED);
    assert_int_equal(stats_of(ix).log_records, records);
    assert_int_equal(stats_of(ix).log_tail_bytes, 0);
    int found = 1;
    assert_int_equal(rotor_index_contains(ix, 0, &found), ROTOR_OK);
    assert_false(found);
    rotor_index_close(ix);
    rotor_index_close(want);
    rotor_index_close(all);
    free(whole);
    free(base_path);
    free(path);
}

/* A flipped byte in a record ends the log there: the records before it
 * are applied, verify refuses the whole records after it; in the last
 * record it is a tail like any other. */
static void test_damaged_record_stops_replay(void **state) {
    fixture *f = *state;
    uint64_t ends[8];
    size_t records;
    char *path = logged_file(f, "damaged.rotor", ends, &records);
    size_t n;
    uint8_t *whole = ts_read_file(path, &n);
    uint8_t *bad = malloc(n);
    const uint64_t first_end = ends[0];
    /* In the second record's payload, then in its header's size field. */
    const uint64_t spots[2] = {first_end + 32 + 3, first_end + 16};
    for (int i = 0; i < 2; i++) {
        memcpy(bad, whole, n);
        bad[spots[i]] ^= 0x10;
        ts_write_file(path, bad, n);
        rotor_index *ix = open_as(path, 0, ROTOR_VECTORS_AS_SAVED);
        rotor_index_stats s = stats_of(ix);
        assert_int_equal(s.log_records, 1);
        assert_int_equal(s.log_tail_bytes, n - first_end);
        int found = 0;
        assert_int_equal(rotor_index_contains(ix, 3, &found), ROTOR_OK);
        assert_true(found); /* the remove was not applied */
        rotor_index_close(ix);
        TS_CHECK_ERROR(rotor_index_verify(path), ROTOR_ERR_CORRUPT, path, "update log",
                       "whole record");
        rotor_open_params op = rotor_open_params_default();
        op.verify = 1;
        assert_int_equal(rotor_index_open(path, &op, &ix), ROTOR_ERR_CORRUPT);
        assert_null(ix);
    }
    /* The last record damaged: an unfinished append, nothing after it. */
    memcpy(bad, whole, n);
    bad[n - 5] ^= 1;
    ts_write_file(path, bad, n);
    assert_int_equal(rotor_index_verify(path), ROTOR_OK);
    rotor_index *ix = open_as(path, 0, ROTOR_VECTORS_AS_SAVED);
    assert_int_equal(stats_of(ix).log_records, records - 1);
    rotor_index_close(ix);
    free(bad);
    free(whole);
    free(path);
}

/* ---- forged records ------------------------------------------------------ */

/* Appends a record with a correct checksum, as a writer would, but with
 * whatever type, number and payload the test gives. */
static void forge(const char *path, uint32_t type, uint64_t seq, const void *payload, size_t size) {
    size_t n;
    uint8_t *file = ts_read_file(path, &n);
    uint64_t seed = 0;
    for (int i = 7; i >= 0; i--)
        seed = seed << 8 | file[32 + i];
    const size_t padded = (size + 7) / 8 * 8;
    uint8_t *rec = calloc(1, 32 + padded);
    memcpy(rec, "RLG1", 4);
    for (int i = 0; i < 4; i++)
        rec[4 + i] = (uint8_t)(type >> (8 * i));
    for (int i = 0; i < 8; i++) {
        rec[8 + i] = (uint8_t)(seq >> (8 * i));
        rec[16 + i] = (uint8_t)((uint64_t)padded >> (8 * i));
    }
    memcpy(rec + 32, payload, size);
    XXH3_state_t h;
    XXH3_INITSTATE(&h); /* else a stale seed field skips deriving the secret */
    XXH3_64bits_reset_withSeed(&h, seed);
    XXH3_64bits_update(&h, rec, 24);
    XXH3_64bits_update(&h, rec + 32, padded);
    const uint64_t sum = XXH3_64bits_digest(&h);
    for (int i = 0; i < 8; i++)
        rec[24 + i] = (uint8_t)(sum >> (8 * i));
    uint8_t *out = malloc(n + 32 + padded);
    memcpy(out, file, n);
    memcpy(out + n, rec, 32 + padded);
    ts_write_file(path, out, n + 32 + padded);
    free(out);
    free(rec);
    free(file);
}

static void put64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* Whole records that no writer of this format writes are refused, naming
 * the record; a record of a change that fails (a key no vector has) is
 * skipped and counted. */
static void test_forged_records(void **state) {
    fixture *f = *state;
    size_t m_with;
    char *clean = saved(f, "clean.rotor", ROTOR_INDEX_FLAT, NULL, ROTOR_VECTORS_RAM);
    size_t n;
    uint8_t *base = ts_read_file(clean, &n);
    char *path = ts_path(f->dir, "forged.rotor");
    uint8_t p[256] = {0};
    const struct {
        uint32_t type;
        uint64_t seq;
        size_t size;
        void (*fill)(uint8_t *);
        const char *word;
    } cases[] = {
        {9, 0, 8, NULL, "unknown type"},
        {2, 1, 16, NULL, "numbered 1"},
        {2, 0, 0, NULL, "too short"},
        {1, 0, 24, NULL, "flags"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        ts_write_file(path, base, n);
        memset(p, 0, sizeof p);
        if (cases[c].type == 2)
            put64(p, 1); /* one key */
        if (cases[c].type == 1)
            p[0] = 7; /* flags */
        forge(path, cases[c].type, cases[c].seq, p, cases[c].size);
        rotor_index *ix = NULL;
        TS_CHECK_ERROR(rotor_index_open(path, NULL, &ix), ROTOR_ERR_FORMAT, path, cases[c].word);
        assert_null(ix);
        TS_CHECK_ERROR(rotor_index_verify(path), ROTOR_ERR_FORMAT, path, cases[c].word);
    }
    /* An add of rows with other dimensions; a remove announcing more keys
     * than it holds; labels whose offsets fall. */
    ts_write_file(path, base, n);
    memset(p, 0, sizeof p);
    p[4] = 0; /* float32 */
    put64(p + 8, 1);
    put64(p + 16, D + 1);
    forge(path, 1, 0, p, 24 + (D + 1) * 4);
    TS_CHECK_ERROR(rotor_index_verify(path), ROTOR_ERR_FORMAT, path, "dimensions");
    ts_write_file(path, base, n);
    memset(p, 0, sizeof p);
    put64(p, 5);
    forge(path, 2, 0, p, 8 + 2 * 8);
    TS_CHECK_ERROR(rotor_index_verify(path), ROTOR_ERR_FORMAT, path, "keys it announces");
    ts_write_file(path, base, n);
    memset(p, 0, sizeof p);
    put64(p + 8, 2);  /* rows, no ids */
    put64(p + 16, 0); /* offsets 0, 2, 1 */
    put64(p + 24, 2);
    put64(p + 32, 1);
    forge(path, 4, 0, p, 16 + 24 + 8);
    TS_CHECK_ERROR(rotor_index_verify(path), ROTOR_ERR_FORMAT, path, "out of order");

    /* A remove of a key no vector has, then a good one: the first is
     * skipped, the second applied. */
    ts_write_file(path, base, n);
    memset(p, 0, sizeof p);
    put64(p, 1);
    put64(p + 8, 99999);
    forge(path, 2, 0, p, 16);
    put64(p + 8, 11);
    forge(path, 2, 1, p, 16);
    assert_int_equal(rotor_index_verify(path), ROTOR_OK);
    rotor_index *ix = open_as(path, 0, ROTOR_VECTORS_AS_SAVED);
    rotor_index_stats s = stats_of(ix);
    assert_int_equal(s.log_records, 2);
    assert_int_equal(s.log_skipped, 1);
    assert_int_equal(s.count, N - 1);
    rotor_index_close(ix);
    /* Records copied onto another file do not match its seed: a tail. */
    uint8_t *with = ts_read_file(path, &m_with);
    const size_t log = m_with - n;
    float *other = malloc(N * D * sizeof *other);
    memcpy(other, f->rows + D, N * D * sizeof *other);
    rotor_matrix om = {other, N, D, ROTOR_ELEM_F32};
    rotor_index *oix = NULL;
    rotor_params op = rotor_params_default();
    op.calibrate = 0;
    assert_int_equal(rotor_index_build(&op, &om, &oix), ROTOR_OK);
    assert_int_equal(rotor_index_save(oix, path), ROTOR_OK);
    rotor_index_close(oix);
    free(other);
    size_t on;
    uint8_t *o = ts_read_file(path, &on);
    o = realloc(o, on + log);
    memcpy(o + on, with + n, log);
    ts_write_file(path, o, on + log);
    ix = open_as(path, 0, ROTOR_VECTORS_AS_SAVED);
    s = stats_of(ix);
    assert_int_equal(s.log_records, 0);
    assert_int_equal(s.log_tail_bytes, log);
    assert_int_equal(s.count, N);
    rotor_index_close(ix);
    free(o);
    free(with);
    free(base);
    free(clean);
    free(path);
}

/* One writer per file; a save of another index over it is refused while
 * it writes; a save over its own file folds the log in and it goes on
 * appending to the new file; sync and the flags' rules. */
static void test_writer_rules(void **state) {
    fixture *f = *state;
    char *path = saved(f, "rules.rotor", ROTOR_INDEX_VAMANA, "sq8", ROTOR_VECTORS_RAM);
    rotor_index *w = open_as(path, 1, ROTOR_VECTORS_AS_SAVED);
    rotor_open_params op = rotor_open_params_default();
    op.writable = 1;
    rotor_index *second = NULL;
    TS_CHECK_ERROR(rotor_index_open(path, &op, &second), ROTOR_ERR_IO, path, "writable");
    assert_null(second);
    rotor_index *reader = open_as(path, 0, ROTOR_VECTORS_AS_SAVED);
    TS_CHECK_ERROR(rotor_index_save(reader, path), ROTOR_ERR_IO, path, "writable");
    TS_CHECK_ERROR(rotor_index_sync(reader), ROTOR_ERR_UNSUPPORTED, NULL, "writable");

    const size_t n = changes(f, w);
    assert_int_equal(rotor_index_sync(w), ROTOR_OK);
    assert_int_equal(stats_of(w).log_records, n);
    /* Over its own file: the log folded in, the file whole and new. */
    assert_int_equal(rotor_index_save(w, path), ROTOR_OK);
    rotor_index_stats s = stats_of(w);
    assert_int_equal(s.log_records, 0);
    assert_int_equal(s.log_bytes, 0);
    const uint64_t compact = size_of(path);
    rotor_index *after = open_as(path, 0, ROTOR_VECTORS_AS_SAVED);
    assert_int_equal(stats_of(after).log_records, 0);
    same_facts(after, w);
    rotor_index_close(after);
    const int64_t gone = 10000;
    assert_int_equal(rotor_index_remove(w, &gone, 1), ROTOR_OK);
    assert_true(size_of(path) > compact);
    /* Still the one writer of the new file. */
    TS_CHECK_ERROR(rotor_index_open(path, &op, &second), ROTOR_ERR_IO, path, "writable");
    rotor_index_close(w);
    after = open_as(path, 0, ROTOR_VECTORS_AS_SAVED);
    assert_int_equal(stats_of(after).log_records, 1);
    int found = 1;
    assert_int_equal(rotor_index_contains(after, 10000, &found), ROTOR_OK);
    assert_false(found);
    rotor_index_close(after);
    /* Closed: the lock is gone, and the reader may save over the file. */
    assert_int_equal(rotor_index_save(reader, path), ROTOR_OK);
    rotor_index_close(reader);

    op.writable = 0;
    op.sync_each_change = 1;
    TS_CHECK_ERROR(rotor_index_open(path, &op, &second), ROTOR_ERR_INVALID_ARGUMENT, NULL,
                   "sync_each_change");
    op.writable = 2;
    TS_CHECK_ERROR(rotor_index_open(path, &op, &second), ROTOR_ERR_INVALID_ARGUMENT, NULL,
                   "writable");
    op.writable = 1;
    assert_int_equal(rotor_index_open(path, &op, &second), ROTOR_OK);
    const int64_t gone2 = 1;
    assert_int_equal(rotor_index_remove(second, &gone2, 1), ROTOR_OK);
    rotor_index_close(second);

    /* A descriptor opened read-only still gives a writable index. */
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    op.sync_each_change = 0;
    assert_int_equal(rotor_index_open_fd(fd, path, &op, &second), ROTOR_OK);
    close(fd);
    const int64_t gone3 = 2;
    assert_int_equal(rotor_index_remove(second, &gone3, 1), ROTOR_OK);
    rotor_index_close(second);
    after = open_as(path, 0, ROTOR_VECTORS_AS_SAVED);
    assert_int_equal(stats_of(after).log_records, 2);
    rotor_index_close(after);

    rotor_params p = rotor_params_default();
    p.calibrate = 0;
    rotor_matrix m = {f->rows, N, D, ROTOR_ELEM_F32};
    rotor_index *built = NULL;
    assert_int_equal(rotor_index_build(&p, &m, &built), ROTOR_OK);
    TS_CHECK_ERROR(rotor_index_sync(built), ROTOR_ERR_UNSUPPORTED, NULL, "writable");
    rotor_index_close(built);
    free(path);
}

/* With the vectors on disk: removals and labels are recorded, adds
 * refused with the file unchanged; a log that adds vectors (written by a
 * RAM open) opens with the vectors in RAM only, until a save folds it. */
static void test_vectors_on_disk(void **state) {
    fixture *f = *state;
    char *path = saved(f, "disk.rotor", ROTOR_INDEX_VAMANA, "sq8", ROTOR_VECTORS_DISK);
    rotor_index *w = open_as(path, 1, ROTOR_VECTORS_AS_SAVED);
    assert_int_equal(stats_of(w).vectors_on_disk, 1);
    const int64_t gone[2] = {10, 11};
    assert_int_equal(rotor_index_remove(w, gone, 2), ROTOR_OK);
    const uint64_t off[2] = {0, 1};
    const uint32_t val[1] = {6};
    rotor_labels l = {off, val, 1};
    const int64_t id = 12;
    assert_int_equal(rotor_index_set_labels(w, &id, &l), ROTOR_OK);
    const uint64_t before = size_of(path);
    rotor_matrix one = {f->rows + N * D, 1, D, ROTOR_ELEM_F32};
    TS_CHECK_ERROR(rotor_index_add(w, &one), ROTOR_ERR_UNSUPPORTED, NULL, "disk");
    TS_CHECK_ERROR(rotor_index_update(w, &one, &id), ROTOR_ERR_UNSUPPORTED, NULL, "disk");
    assert_int_equal(size_of(path), before);
    rotor_index_close(w);

    rotor_index *back = open_as(path, 0, ROTOR_VECTORS_AS_SAVED);
    assert_int_equal(stats_of(back).count, N - 2);
    size_t nl;
    uint32_t got[2];
    assert_int_equal(rotor_index_get_labels(back, 12, got, 2, &nl), ROTOR_OK);
    assert_int_equal(nl, 1);
    assert_int_equal(got[0], 6);
    rotor_index_close(back);

    w = open_as(path, 1, ROTOR_VECTORS_RAM);
    const int64_t k = 15000;
    assert_int_equal(rotor_index_add_with_keys(w, &one, &k), ROTOR_OK);
    rotor_index_close(w);
    rotor_index *ix = NULL;
    TS_CHECK_ERROR(rotor_index_open(path, NULL, &ix), ROTOR_ERR_UNSUPPORTED, path, "update log",
                   "RAM");
    assert_null(ix);
    w = open_as(path, 1, ROTOR_VECTORS_RAM);
    assert_int_equal(rotor_index_save(w, path), ROTOR_OK);
    rotor_index_close(w);
    back = open_as(path, 0, ROTOR_VECTORS_AS_SAVED);
    assert_int_equal(stats_of(back).vectors_on_disk, 1);
    int found = 0;
    assert_int_equal(rotor_index_contains(back, k, &found), ROTOR_OK);
    assert_true(found);
    float v[D];
    assert_int_equal(rotor_index_get(back, k, v), ROTOR_OK);
    assert_memory_equal(v, f->rows + N * D, sizeof v);
    rotor_index_close(back);
    free(path);
}

/* Every allocation of a writable open (which replays a log) fails in
 * turn, then every allocation of a recorded change: each reports out of
 * memory, leaks nothing and leaves the file as it was. */
static void test_allocation_failures(void **state) {
    fixture *f = *state;
    uint64_t ends[8];
    size_t records;
    char *path = logged_file(f, "alloc.rotor", ends, &records);
    size_t n;
    uint8_t *before = ts_read_file(path, &n);
    for (long k = 1;; k++) {
        ts_counting_alloc ca = {0};
        ca.fail_at = k;
        rotor_open_params op = rotor_open_params_default();
        op.allocator = ts_counting_allocator(&ca);
        op.writable = 1;
        rotor_index *ix = NULL;
        rotor_status st = rotor_index_open(path, &op, &ix);
        if (st == ROTOR_OK) {
            rotor_index_close(ix);
            assert_int_equal(ca.live, 0);
            break;
        }
        assert_int_equal(st, ROTOR_ERR_OUT_OF_MEMORY);
        assert_null(ix);
        assert_int_equal(ca.live, 0);
        assert_true(k < 10000);
    }
    size_t m;
    uint8_t *after = ts_read_file(path, &m);
    assert_int_equal(m, n);
    assert_memory_equal(before, after, n);
    free(after);

    int64_t keys[4] = {30000, 30001, 30002, 30003};
    rotor_matrix add = {f->rows + (N + 40) * D, 4, D, ROTOR_ELEM_F32};
    const int64_t gone[2] = {20, 21};
    const uint64_t off[3] = {0, 1, 2};
    const uint32_t val[2] = {3, 4};
    rotor_labels l = {off, val, 2};
    rotor_matrix add_two = {f->rows + (N + 40) * D, 2, D, ROTOR_ELEM_F32};
    for (int op_kind = 0; op_kind < 5; op_kind++) {
        for (long k = 1;; k++) {
            ts_counting_alloc ca = {0};
            rotor_open_params op = rotor_open_params_default();
            op.allocator = ts_counting_allocator(&ca);
            op.writable = 1;
            rotor_index *ix = NULL;
            assert_int_equal(rotor_index_open(path, &op, &ix), ROTOR_OK);
            const size_t count = stats_of(ix).count, labelled = stats_of(ix).labelled;
            ca.fail_at = ca.calls + k;
            rotor_status st = ROTOR_OK;
            switch (op_kind) {
            case 0: st = rotor_index_add_with_keys(ix, &add, keys); break;
            case 1: st = rotor_index_remove(ix, gone, 2); break;
            case 2: st = rotor_index_update(ix, &add, (const int64_t[]){0, 1, 2, 4}); break;
            case 3: st = rotor_index_set_labels(ix, gone, &l); break;
            default: st = rotor_index_add_with_labels(ix, &add_two, keys, &l); break;
            }
            const bool done = st == ROTOR_OK;
            if (!done) {
                assert_int_equal(st, ROTOR_ERR_OUT_OF_MEMORY);
                assert_int_equal(stats_of(ix).count, count);
                assert_int_equal(stats_of(ix).labelled, labelled);
                assert_int_equal(stats_of(ix).log_records, records);
                after = ts_read_file(path, &m);
                assert_int_equal(m, n);
                assert_memory_equal(before, after, n);
                free(after);
            }
            rotor_index_close(ix);
            assert_int_equal(ca.live, 0);
            if (done)
                break;
            assert_true(k < 10000);
        }
        /* The last run succeeded: put the file back for the next kind. */
        ts_write_file(path, before, n);
    }
    free(before);
    free(path);
}

/* Searches, stats and syncs from other threads beside a writer of a
 * writable index (TSan checks it in CI): every call succeeds, and the log
 * counts every change. */
typedef struct beside {
    rotor_index *ix;
    _Atomic int stop;
    int syncer;
    long calls;
} beside;

static void *beside_writer(void *arg) {
    beside *b = arg;
    float q[D] = {0};
    int64_t ids[5];
    while (!b->stop) {
        rotor_index_stats s;
        if (b->syncer)
            assert_int_equal(rotor_index_sync(b->ix), ROTOR_OK);
        assert_int_equal(rotor_index_search(b->ix, NULL, q, D, 5, ids, NULL), ROTOR_OK);
        assert_int_equal(rotor_index_stats_get(b->ix, &s), ROTOR_OK);
        assert_true(s.log_records <= 60);
        b->calls++;
    }
    return NULL;
}

static void test_beside_a_writer(void **state) {
    fixture *f = *state;
    char *path = saved(f, "beside.rotor", ROTOR_INDEX_VAMANA, "sq8", ROTOR_VECTORS_RAM);
    rotor_index *w = open_as(path, 1, ROTOR_VECTORS_AS_SAVED);
    beside b[2] = {{w, 0, 0, 0}, {w, 0, 1, 0}};
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&t[i], NULL, beside_writer, &b[i]), 0);
    for (int i = 0; i < 30; i++) {
        const int64_t k = 40000 + i;
        rotor_matrix one = {f->rows + (N + i) * D, 1, D, ROTOR_ELEM_F32};
        assert_int_equal(rotor_index_add_with_keys(w, &one, &k), ROTOR_OK);
        assert_int_equal(rotor_index_remove(w, &k, 1), ROTOR_OK);
    }
    for (int i = 0; i < 2; i++) {
        b[i].stop = 1;
        pthread_join(t[i], NULL);
    }
    assert_int_equal(stats_of(w).log_records, 60);
    rotor_index_close(w);
    rotor_index *back = open_as(path, 0, ROTOR_VECTORS_AS_SAVED);
    assert_int_equal(stats_of(back).log_records, 60);
    assert_int_equal(stats_of(back).count, N);
    rotor_index_close(back);
    free(path);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_every_kind),
        cmocka_unit_test(test_failed_change_leaves_file),
        cmocka_unit_test(test_torn_tail_at_every_byte),
        cmocka_unit_test(test_damaged_record_stops_replay),
        cmocka_unit_test(test_forged_records),
        cmocka_unit_test(test_writer_rules),
        cmocka_unit_test(test_vectors_on_disk),
        cmocka_unit_test(test_allocation_failures),
        cmocka_unit_test(test_beside_a_writer),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
