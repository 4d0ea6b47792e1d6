/*
 * User keys: searches of every kind return the keys the vectors were given
 * (exactly the row numbers' results mapped through them); bad keys (negative,
 * twice in a batch, taken by the index) are refused and leave the index as
 * it was; keys survive a save and an open (mapped, loaded, vectors on disk)
 * and a damaged keys section is refused; an index whose keys are its row
 * numbers keeps no table and writes no section; the table grows under many
 * small adds; every allocation failure of a keyed add leaves the index
 * unchanged.
 */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "support/support.h"

enum { N = 1500, NQ = 20, D = 16, K = 10, CLUSTERS = 12 };

typedef struct fixture {
    float *base, *queries;
    int64_t *keys; /* N + N of them: the base's, then those of added rows */
    char *dir;
} fixture;

/* Keys past 2^32, scattered, none a row number. */
static int64_t key_of(size_t i) { return 5000000000LL + (int64_t)((i * 7919) % (2 * N)) * 1013; }

static int setup(void **state) {
    fixture *f = calloc(1, sizeof *f);
    ts_rng r;
    ts_rng_init(&r, 1414);
    float centres[CLUSTERS * D];
    for (size_t i = 0; i < CLUSTERS * D; i++)
        centres[i] = (float)ts_rng_normal(&r);
    f->base = malloc((2 * N + NQ) * D * sizeof(float));
    f->queries = f->base + 2 * N * D;
    for (size_t i = 0; i < 2 * N + NQ; i++) {
        const float *c = centres + (ts_rng_next(&r) % CLUSTERS) * D;
        for (size_t j = 0; j < D; j++)
            f->base[i * D + j] = c[j] + 0.5f * (float)ts_rng_normal(&r);
    }
    f->keys = malloc(2 * N * sizeof *f->keys);
    for (size_t i = 0; i < 2 * N; i++)
        f->keys[i] = key_of(i);
    f->dir = ts_tmpdir_create();
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    free(f->base);
    free(f->keys);
    ts_tmpdir_remove(f->dir);
    free(f);
    return 0;
}

static rotor_params params_of(rotor_index_kind kind) {
    rotor_params p = rotor_params_default(); /* quant "auto", calibrated */
    p.kind = kind;
    p.threads = 1; /* one thread: the two builds compared are the same graph */
    return p;
}

static rotor_index *build(const fixture *f, rotor_params p, size_t n, const int64_t *keys) {
    rotor_matrix m = {f->base, n, D, ROTOR_ELEM_F32};
    rotor_index *ix = NULL;
    assert_int_equal(rotor_index_build_with_keys(&p, &m, keys, &ix), ROTOR_OK);
    return ix;
}

static void search_all(const fixture *f, const rotor_index *ix, int64_t *ids, float *d) {
    rotor_matrix q = {f->queries, NQ, D, ROTOR_ELEM_F32};
    rotor_search_params sp = rotor_search_params_default();
    sp.threads = 2;
    assert_int_equal(rotor_index_search_batch(ix, &sp, &q, K, ids, d), ROTOR_OK);
}

static rotor_index_stats stats_of(const rotor_index *ix) {
    rotor_index_stats s;
    assert_int_equal(rotor_index_stats_get(ix, &s), ROTOR_OK);
    return s;
}

static int has(const rotor_index *ix, int64_t key) {
    int found = -1;
    assert_int_equal(rotor_index_contains(ix, key, &found), ROTOR_OK);
    assert_true(found == 0 || found == 1);
    return found;
}

/* A keyed build and a plain one of the same rows and parameters are the
 * same index: the keyed one's results are the plain one's row numbers
 * mapped through the keys, for single and batch searches, every kind. */
static void test_search_returns_keys(void **state) {
    fixture *f = *state;
    const rotor_index_kind kinds[] = {ROTOR_INDEX_FLAT, ROTOR_INDEX_VAMANA, ROTOR_INDEX_IVF};
    for (size_t c = 0; c < 3; c++) {
        rotor_index *plain = build(f, params_of(kinds[c]), N, NULL);
        rotor_index *keyed = build(f, params_of(kinds[c]), N, f->keys);
        int64_t rows[NQ * K], got[NQ * K];
        float rd[NQ * K], gd[NQ * K];
        search_all(f, plain, rows, rd);
        search_all(f, keyed, got, gd);
        size_t hits = 0;
        for (size_t i = 0; i < NQ * K; i++) {
            assert_true(rows[i] >= 0 && rows[i] < N);
            assert_true(got[i] == f->keys[rows[i]]);
            assert_true(gd[i] == rd[i]);
            hits += has(keyed, got[i]);
        }
        assert_int_equal(hits, NQ * K);
        int64_t one[K];
        assert_int_equal(rotor_index_search(keyed, NULL, f->queries, D, K, one, NULL), ROTOR_OK);
        assert_memory_equal(one, got, sizeof one);
        /* A row searched for finds its own key first (exact for flat). */
        assert_int_equal(rotor_index_search(keyed, NULL, f->base + 77 * D, D, 1, one, NULL),
                         ROTOR_OK);
        assert_true(one[0] == f->keys[77]);
        /* k past the index: the padding stays -1. */
        int64_t *all = malloc((N + 5) * sizeof *all);
        assert_int_equal(rotor_index_search(keyed, NULL, f->queries, D, N + 5, all, NULL),
                         ROTOR_OK);
        assert_true(all[N + 4] == -1);
        free(all);
        rotor_index_stats s = stats_of(keyed);
        print_message("%s, quant %s: keys cost %.1f bytes per vector\n",
                      rotor_index_kind_name(kinds[c]), s.quant, (double)s.bytes_keys / N);
        assert_int_equal(s.user_keys, 1);
        assert_true(s.bytes_keys >= N * 8 && s.bytes_keys <= N * 8 + N * 11);
        assert_int_equal(stats_of(plain).user_keys, 0);
        rotor_index_close(plain);
        rotor_index_close(keyed);
    }
}

/* Everything the index answers, compared before and after a refused call. */
typedef struct snapshot {
    size_t count;
    int user_keys;
    int64_t ids[NQ * K];
} snapshot;

static snapshot snap(const fixture *f, const rotor_index *ix) {
    snapshot s;
    s.count = stats_of(ix).count;
    s.user_keys = stats_of(ix).user_keys;
    search_all(f, ix, s.ids, NULL);
    return s;
}

static void assert_unchanged(const fixture *f, const rotor_index *ix, const snapshot *before) {
    snapshot now = snap(f, ix);
    assert_int_equal(now.count, before->count);
    assert_int_equal(now.user_keys, before->user_keys);
    assert_memory_equal(now.ids, before->ids, sizeof now.ids);
}

static void test_bad_keys_refused(void **state) {
    fixture *f = *state;
    rotor_params p = params_of(ROTOR_INDEX_VAMANA);
    p.quant = "sq8";
    p.calibrate = 0;
    rotor_matrix m = {f->base, 100, D, ROTOR_ELEM_F32};
    int64_t keys[200];
    for (size_t i = 0; i < 200; i++)
        keys[i] = 1000 + 3 * (int64_t)i;
    rotor_index *ix = (rotor_index *)1;

    keys[40] = keys[7];
    TS_CHECK_ERROR(rotor_index_build_with_keys(&p, &m, keys, &ix), ROTOR_ERR_INVALID_ARGUMENT, NULL,
                   "key 1021", "twice", "rows 7 and 40");
    assert_null(ix);
    keys[40] = -5;
    TS_CHECK_ERROR(rotor_index_build_with_keys(&p, &m, keys, &ix), ROTOR_ERR_INVALID_ARGUMENT, NULL,
                   "key -5", "row 40", "negative");
    assert_null(ix);
    keys[40] = 1000 + 3 * 40;

    ix = build(f, p, 100, keys);
    snapshot before = snap(f, ix);
    rotor_matrix more = {f->base + 100 * D, 50, D, ROTOR_ELEM_F32};
    int64_t add[50];
    for (size_t i = 0; i < 50; i++)
        add[i] = 9000 + (int64_t)i;
    add[30] = keys[99]; /* taken by the index */
    TS_CHECK_ERROR(rotor_index_add_with_keys(ix, &more, add), ROTOR_ERR_INVALID_ARGUMENT, NULL,
                   "key 1297", "row 30", "already in the index");
    assert_unchanged(f, ix, &before);
    for (size_t i = 0; i < 30; i++)
        assert_int_equal(has(ix, add[i]), 0); /* the batch's staged keys are gone */
    add[30] = add[49];
    TS_CHECK_ERROR(rotor_index_add_with_keys(ix, &more, add), ROTOR_ERR_INVALID_ARGUMENT, NULL,
                   "key 9049", "rows 30 and 49");
    assert_unchanged(f, ix, &before);
    add[30] = -1;
    TS_CHECK_ERROR(rotor_index_add_with_keys(ix, &more, add), ROTOR_ERR_INVALID_ARGUMENT, NULL,
                   "negative");
    assert_unchanged(f, ix, &before);
    /* A bad vector after good keys: the keys go back out with the rows. */
    add[30] = 9030;
    float bad[50 * D];
    memcpy(bad, more.data, sizeof bad);
    bad[45 * D + 3] = NAN;
    rotor_matrix nan_rows = {bad, 50, D, ROTOR_ELEM_F32};
    assert_int_equal(rotor_index_add_with_keys(ix, &nan_rows, add), ROTOR_ERR_NOT_FINITE);
    assert_unchanged(f, ix, &before);
    assert_int_equal(has(ix, 9000), 0);
    /* The same batch, fixed, goes in. */
    assert_int_equal(rotor_index_add_with_keys(ix, &more, add), ROTOR_OK);
    assert_int_equal(stats_of(ix).count, 150);
    assert_int_equal(has(ix, 9049), 1);
    assert_int_equal(has(ix, 1000), 1);

    /* Row numbers continue: 150.. are free here, so rotor_index_add takes them. */
    rotor_matrix two = {f->base + 150 * D, 2, D, ROTOR_ELEM_F32};
    assert_int_equal(rotor_index_add(ix, &two), ROTOR_OK);
    assert_int_equal(has(ix, 150), 1);
    assert_int_equal(has(ix, 151), 1);
    int64_t id[1];
    assert_int_equal(rotor_index_search(ix, NULL, f->base + 151 * D, D, 1, id, NULL), ROTOR_OK);
    assert_true(id[0] == 151);
    rotor_index_close(ix);

    /* Row numbers that collide with the caller's keys are refused. */
    int64_t low[100];
    for (size_t i = 0; i < 100; i++)
        low[i] = 100 + (int64_t)i; /* the next add would take 100, 101 */
    ix = build(f, p, 100, low);
    before = snap(f, ix);
    TS_CHECK_ERROR(rotor_index_add(ix, &two), ROTOR_ERR_INVALID_ARGUMENT, NULL, "row 0", "key 100",
                   "number of its slot");
    assert_unchanged(f, ix, &before);
    rotor_index_close(ix);

    /* An index of row numbers stays one when a keyed add is refused. */
    ix = build(f, p, 100, NULL);
    before = snap(f, ix);
    add[0] = 5000;
    add[1] = 3; /* row 3's key */
    rotor_matrix pair = {f->base + 100 * D, 2, D, ROTOR_ELEM_F32};
    TS_CHECK_ERROR(rotor_index_add_with_keys(ix, &pair, add), ROTOR_ERR_INVALID_ARGUMENT, NULL,
                   "key 3", "already in the index");
    assert_unchanged(f, ix, &before);
    assert_int_equal(stats_of(ix).bytes_keys, 0);
    assert_int_equal(has(ix, 5000), 0);
    rotor_index_close(ix);
}

static bool file_has_section(const char *path, uint32_t id) {
    size_t n;
    uint8_t *b = ts_read_file(path, &n);
    uint32_t sections;
    memcpy(&sections, b + 20, 4);
    bool found = false;
    for (uint32_t i = 0; i < sections; i++) {
        uint32_t sid;
        memcpy(&sid, b + 256 + 32 * i, 4);
        found = found || sid == id;
    }
    free(b);
    return found;
}

enum { SEC_KEYS = 13 };

/* Row numbers cost nothing: no table, no section, whether the keys were
 * left out or given as row numbers, and adds that continue them. */
static void test_row_numbers_keep_no_table(void **state) {
    fixture *f = *state;
    rotor_params p = params_of(ROTOR_INDEX_FLAT);
    int64_t rows[200];
    for (size_t i = 0; i < 200; i++)
        rows[i] = (int64_t)i;
    rotor_index *ix = build(f, p, 100, rows);
    rotor_index_stats s = stats_of(ix);
    assert_int_equal(s.user_keys, 0);
    assert_int_equal(s.bytes_keys, 0);
    rotor_matrix more = {f->base + 100 * D, 100, D, ROTOR_ELEM_F32};
    assert_int_equal(rotor_index_add_with_keys(ix, &more, rows + 100), ROTOR_OK);
    assert_int_equal(stats_of(ix).user_keys, 0);
    char *path = ts_path(f->dir, "rows.rotor");
    assert_int_equal(rotor_index_save(ix, path), ROTOR_OK);
    assert_false(file_has_section(path, SEC_KEYS));
    const size_t total = stats_of(ix).bytes_total;

    /* One key of the caller's: the table appears, and is counted. */
    rotor_matrix one = {f->base + 200 * D, 1, D, ROTOR_ELEM_F32};
    const int64_t big = 1LL << 40;
    assert_int_equal(rotor_index_add_with_keys(ix, &one, &big), ROTOR_OK);
    s = stats_of(ix);
    assert_int_equal(s.user_keys, 1);
    assert_true(s.bytes_keys >= 201 * 8);
    assert_true(s.bytes_total >= total + s.bytes_keys);
    assert_int_equal(has(ix, 199), 1);
    assert_int_equal(has(ix, big), 1);
    assert_int_equal(has(ix, 200), 0);
    assert_int_equal(rotor_index_save(ix, path), ROTOR_OK);
    assert_true(file_has_section(path, SEC_KEYS));
    free(path);
    rotor_index_close(ix);
}

static void test_contains_get_reconstruct_estimate(void **state) {
    fixture *f = *state;
    rotor_params p = params_of(ROTOR_INDEX_VAMANA);
    p.quant = "tq4";
    p.calibrate = 0;
    rotor_index *ix = build(f, p, 300, f->keys);
    float v[D], r[D];
    for (size_t i = 0; i < 300; i += 37) {
        assert_int_equal(rotor_index_get(ix, f->keys[i], v), ROTOR_OK);
        assert_memory_equal(v, f->base + i * D, sizeof v); /* the stored vector, exactly */
        assert_int_equal(rotor_index_reconstruct(ix, f->keys[i], r), ROTOR_OK);
        double err = 0;
        for (size_t j = 0; j < D; j++)
            err += (r[j] - v[j]) * (r[j] - v[j]);
        assert_true(err > 0 && err < 0.5 * D); /* the decoded code: near, not equal */
    }
    TS_CHECK_ERROR(rotor_index_get(ix, f->keys[300], v), ROTOR_ERR_NOT_FOUND, NULL, "no vector",
                   "key");
    TS_CHECK_ERROR(rotor_index_get(ix, 3, v), ROTOR_ERR_NOT_FOUND, NULL, "key 3");
    TS_CHECK_ERROR(rotor_index_get(ix, -2, v), ROTOR_ERR_INVALID_ARGUMENT, NULL, "negative");
    assert_int_equal(rotor_index_reconstruct(ix, 3, r), ROTOR_ERR_NOT_FOUND);
    assert_int_equal(has(ix, -1), 0);
    assert_int_equal(has(ix, f->keys[299]), 1);
    assert_int_equal(has(ix, f->keys[300]), 0);
    assert_int_equal(has(ix, INT64_MAX), 0);
    assert_string_equal(rotor_strerror(ROTOR_ERR_NOT_FOUND), "key not found");

    /* The estimates of the keys a search returned are its distances. */
    rotor_search_params sp = rotor_search_params_default();
    sp.rerank = 0;
    int64_t ids[K];
    float d[K], e[K];
    assert_int_equal(rotor_index_search(ix, &sp, f->queries, D, K, ids, d), ROTOR_OK);
    assert_int_equal(rotor_index_estimate(ix, f->queries, D, ids, K, e), ROTOR_OK);
    for (size_t j = 0; j < K; j++)
        assert_true(e[j] == d[j]);
    ids[4] = 12;
    assert_int_equal(rotor_index_estimate(ix, f->queries, D, ids, K, e), ROTOR_ERR_NOT_FOUND);
    rotor_index_close(ix);
}

static rotor_index *open_with(const char *path, rotor_vectors_place place, int load) {
    rotor_open_params op = rotor_open_params_default();
    op.vectors = place;
    op.load = load;
    op.io = ROTOR_IO_PREAD;
    op.direct_io = 0;
    rotor_index *ix = NULL;
    assert_int_equal(rotor_index_open(path, &op, &ix), ROTOR_OK);
    return ix;
}

static void test_save_open_round_trip(void **state) {
    fixture *f = *state;
    rotor_params p = params_of(ROTOR_INDEX_VAMANA);
    p.quant = "sq8"; /* a quantizer, so the vectors may stay on disk */
    rotor_index *ix = build(f, p, N, f->keys);
    int64_t want[NQ * K], got[NQ * K];
    search_all(f, ix, want, NULL);
    char *path = ts_path(f->dir, "keys.rotor");
    assert_int_equal(rotor_index_save(ix, path), ROTOR_OK);
    assert_true(file_has_section(path, SEC_KEYS));
    assert_int_equal(rotor_index_verify(path), ROTOR_OK);
    const rotor_vectors_place places[] = {ROTOR_VECTORS_RAM, ROTOR_VECTORS_DISK};
    for (int load = 0; load <= 1; load++) {
        for (size_t pl = 0; pl < 2; pl++) {
            rotor_index *o = open_with(path, places[pl], load);
            search_all(f, o, got, NULL);
            assert_memory_equal(got, want, sizeof got);
            assert_int_equal(stats_of(o).user_keys, 1);
            float v[D];
            assert_int_equal(rotor_index_get(o, f->keys[N - 1], v), ROTOR_OK);
            assert_memory_equal(v, f->base + (N - 1) * D, sizeof v);
            assert_int_equal(rotor_index_get(o, f->keys[N], v), ROTOR_ERR_NOT_FOUND);
            rotor_index_close(o);
        }
    }
    /* Adds to an opened index take new keys and refuse its own. */
    rotor_index *o = open_with(path, ROTOR_VECTORS_RAM, 0);
    rotor_matrix more = {f->base + N * D, 100, D, ROTOR_ELEM_F32};
    assert_int_equal(rotor_index_add_with_keys(o, &more, f->keys + N - 1),
                     ROTOR_ERR_INVALID_ARGUMENT);
    assert_int_equal(rotor_index_add_with_keys(o, &more, f->keys + N), ROTOR_OK);
    assert_int_equal(rotor_index_save(o, path), ROTOR_OK);
    rotor_index_close(o);
    o = open_with(path, ROTOR_VECTORS_RAM, 0);
    assert_int_equal(stats_of(o).count, N + 100);
    int64_t id[1];
    assert_int_equal(rotor_index_search(o, NULL, f->base + (N + 50) * D, D, 1, id, NULL), ROTOR_OK);
    assert_true(id[0] == f->keys[N + 50]);
    rotor_index_close(o);
    rotor_index_close(ix);

    /* The streaming build takes keys too, and checks their number. */
    char *fbin = ts_path(f->dir, "base.fbin");
    rotor_matrix m = {f->base, 500, D, ROTOR_ELEM_F32};
    assert_int_equal(rotor_matrix_write(fbin, &m), ROTOR_OK);
    p.quant = "sq8";
    TS_CHECK_ERROR(rotor_index_build_file_with_keys(&p, fbin, f->keys, 499, path),
                   ROTOR_ERR_INVALID_ARGUMENT, fbin, "499 keys", "500 rows");
    int64_t dup[500];
    memcpy(dup, f->keys, sizeof dup);
    dup[499] = dup[0];
    TS_CHECK_ERROR(rotor_index_build_file_with_keys(&p, fbin, dup, 500, path),
                   ROTOR_ERR_INVALID_ARGUMENT, NULL, "twice", "rows 0 and 499");
    assert_int_equal(rotor_index_build_file_with_keys(&p, fbin, f->keys, 500, path), ROTOR_OK);
    o = open_with(path, ROTOR_VECTORS_RAM, 0);
    assert_int_equal(rotor_index_search(o, NULL, f->base + 123 * D, D, 1, id, NULL), ROTOR_OK);
    assert_true(id[0] == f->keys[123]);
    rotor_index_close(o);
    free(fbin);
    free(path);
}

static void put64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* A keys section that passes its checksum but holds a key twice, a
 * negative key or the wrong number of keys is refused at open and by
 * verify. The checksums are made right again after each edit, as a
 * writer with a bug would have made them. */
static void test_damaged_keys_refused(void **state) {
    fixture *f = *state;
    rotor_params p = params_of(ROTOR_INDEX_FLAT);
    p.quant = NULL;
    rotor_index *ix = build(f, p, 64, f->keys);
    char *path = ts_path(f->dir, "damaged.rotor");
    assert_int_equal(rotor_index_save(ix, path), ROTOR_OK);
    rotor_index_close(ix);
    size_t n;
    uint8_t *good = ts_read_file(path, &n);
    uint32_t sections;
    memcpy(&sections, good + 20, 4);
    uint8_t *entry = NULL;
    for (uint32_t i = 0; i < sections; i++) {
        uint32_t sid;
        memcpy(&sid, good + 256 + 32 * i, 4);
        if (sid == SEC_KEYS)
            entry = good + 256 + 32 * i;
    }
    assert_non_null(entry);
    uint64_t off, size;
    memcpy(&off, entry + 8, 8);
    memcpy(&size, entry + 16, 8);
    assert_int_equal(size, 64 * 8);
    const size_t eoff = (size_t)(entry - good);
    struct {
        const char *what;
        size_t at;
        uint64_t value;
        uint64_t size;
    } cases[] = {
        {"have key", 8 * 10, (uint64_t)f->keys[3], 64 * 8},
        {"negative key", 8 * 20, (uint64_t)-7, 64 * 8},
        {"need 512", 0, (uint64_t)f->keys[0], 63 * 8},
    };
    for (size_t c = 0; c < 3; c++) {
        uint8_t *b = malloc(n);
        memcpy(b, good, n);
        uint8_t *e = b + eoff;
        put64(b + off + cases[c].at, cases[c].value);
        put64(e + 16, cases[c].size);
        memset(b + off + cases[c].size, 0, 64 * 8 - cases[c].size); /* the file stays tidy */
        put64(e + 24, XXH3_64bits(b + off, (size_t)cases[c].size));
        memset(b + 32, 0, 8);
        put64(b + 32, XXH3_64bits(b, 256 + 32 * (size_t)sections));
        ts_write_file(path, b, n);
        free(b);
        rotor_index *o = NULL;
        TS_CHECK_ERROR(rotor_index_open(path, NULL, &o), ROTOR_ERR_FORMAT, path, "keys",
                       cases[c].what);
        assert_null(o);
        assert_int_equal(rotor_index_verify(path), ROTOR_ERR_FORMAT);
    }
    free(good);
    free(path);
}

/* One row at a time, thousands of times: the table doubles many times
 * over and every key stays found, from the first non-row-number key on. */
static void test_table_grows_under_many_adds(void **state) {
    fixture *f = *state;
    rotor_params p = params_of(ROTOR_INDEX_FLAT);
    p.quant = NULL;
    rotor_index *ix = build(f, p, 10, NULL);
    enum { ADDS = 2 * N - 10 };
    size_t last_bytes = 0, growths = 0;
    for (size_t i = 10; i < 2 * N; i++) {
        rotor_matrix one = {f->base + i * D, 1, D, ROTOR_ELEM_F32};
        const int64_t key = f->keys[i];
        assert_int_equal(rotor_index_add_with_keys(ix, &one, &key), ROTOR_OK);
        const size_t bytes = stats_of(ix).bytes_keys;
        growths += bytes != last_bytes;
        last_bytes = bytes;
    }
    print_message("%d single adds, the key arrays grew %zu times, %.1f bytes per key\n", ADDS,
                  growths, (double)last_bytes / (2 * N));
    assert_true(growths >= 3);
    for (size_t i = 0; i < 10; i++)
        assert_int_equal(has(ix, (int64_t)i), 1);
    for (size_t i = 10; i < 2 * N; i++)
        assert_int_equal(has(ix, f->keys[i]), 1);
    for (size_t i = 10; i < 2 * N; i += 97) {
        int64_t id[1];
        assert_int_equal(rotor_index_search(ix, NULL, f->base + i * D, D, 1, id, NULL), ROTOR_OK);
        assert_true(id[0] == f->keys[i]);
    }
    rotor_index_close(ix);
}

/* Every allocation of a keyed add fails in turn, on an index of row
 * numbers (the add builds the table) and on a keyed one (it grows it): each
 * failure is reported, leaves the index answering as before, and leaks
 * nothing; then the add goes through. The same for a keyed build, save
 * and open. */
static void test_allocation_failures_leave_index_unchanged(void **state) {
    fixture *f = *state;
    for (int keyed = 0; keyed <= 1; keyed++) {
        ts_counting_alloc ca = {0};
        rotor_params p = params_of(ROTOR_INDEX_VAMANA);
        p.quant = "sq8";
        p.calibrate = 0;
        p.allocator = ts_counting_allocator(&ca);
        /* 1024 keys fill the first key array: the add must grow it. */
        rotor_index *ix = build(f, p, 1024, keyed ? f->keys : NULL);
        snapshot before = snap(f, ix);
        rotor_matrix more = {f->base + 1024 * D, 200, D, ROTOR_ELEM_F32};
        long failures = 0;
        for (long at = 1;; at++) {
            ca.fail_at = ca.calls + at;
            rotor_status st = rotor_index_add_with_keys(ix, &more, f->keys + 1024);
            ca.fail_at = 0;
            if (st == ROTOR_OK)
                break;
            assert_int_equal(st, ROTOR_ERR_OUT_OF_MEMORY);
            failures++;
            assert_unchanged(f, ix, &before);
            assert_int_equal(has(ix, f->keys[1024]), 0);
            assert_true(at < 5000);
        }
        print_message("%s: %ld failed allocations of an add, each leaving the index as it was\n",
                      keyed ? "keyed" : "row numbers", failures);
        assert_true(failures >= 3);
        assert_int_equal(has(ix, f->keys[1223]), 1);
        rotor_index_close(ix);
        assert_int_equal(ca.live, 0);
    }

    char *path = ts_path(f->dir, "cycle.rotor");
    for (long at = 1;; at++) {
        ts_counting_alloc ca = {0};
        ca.fail_at = at;
        rotor_params p = params_of(ROTOR_INDEX_FLAT);
        p.quant = NULL;
        p.allocator = ts_counting_allocator(&ca);
        rotor_matrix m = {f->base, 300, D, ROTOR_ELEM_F32};
        rotor_index *ix = NULL, *o = NULL;
        rotor_status st = rotor_index_build_with_keys(&p, &m, f->keys, &ix);
        if (st == ROTOR_OK)
            st = rotor_index_save(ix, path);
        if (st == ROTOR_OK) {
            rotor_open_params op = rotor_open_params_default();
            op.allocator = p.allocator;
            st = rotor_index_open(path, &op, &o);
        }
        if (st == ROTOR_OK) {
            int64_t id[1];
            st = rotor_index_search(o, NULL, f->base + 5 * D, D, 1, id, NULL);
            assert_true(st != ROTOR_OK || id[0] == f->keys[5]);
        }
        rotor_index_close(o);
        rotor_index_close(ix);
        assert_int_equal(ca.live, 0);
        if (st == ROTOR_OK)
            break;
        assert_int_equal(st, ROTOR_ERR_OUT_OF_MEMORY);
        assert_true(at < 5000);
    }
    free(path);
}

static int odd_tens(void *opaque, int64_t id) {
    (void)opaque;
    return id % 20 == 11; /* keys 10 i + 1 with i odd */
}

/* Filters and labels name vectors by key too: a predicate is handed keys,
 * an allow-list is indexed by key, labels are set by key. */
static void test_filters_and_labels_use_keys(void **state) {
    fixture *f = *state;
    rotor_params p = params_of(ROTOR_INDEX_FLAT);
    enum { M = 200 };
    int64_t keys[M];
    for (size_t i = 0; i < M; i++)
        keys[i] = 10 * (int64_t)i + 1;
    rotor_index *ix = build(f, p, M, keys);
    rotor_filter flt = {0};
    flt.predicate = odd_tens;
    rotor_search_params sp = rotor_search_params_default();
    sp.filter = &flt;
    int64_t ids[K];
    assert_int_equal(rotor_index_search(ix, &sp, f->queries, D, K, ids, NULL), ROTOR_OK);
    for (size_t j = 0; j < K; j++)
        assert_true(ids[j] % 20 == 11);
    /* Only key 51 (row 5) allowed. */
    uint64_t allow[(10 * M + 63) / 64] = {0};
    allow[51 / 64] |= 1ULL << (51 % 64);
    rotor_filter only = {0};
    only.allow = allow;
    only.allow_bits = 10 * M;
    sp.filter = &only;
    assert_int_equal(rotor_index_search(ix, &sp, f->queries, D, K, ids, NULL), ROTOR_OK);
    assert_true(ids[0] == 51 && ids[1] == -1);
    /* Label 7 on the vectors with keys 31 and 1991. */
    const int64_t who[] = {31, 1991};
    const uint64_t off[] = {0, 1, 2};
    const uint32_t val[] = {7, 7};
    rotor_labels l = {off, val, 2};
    assert_int_equal(rotor_index_set_labels(ix, who, &l), ROTOR_OK);
    const int64_t missing[] = {31, 32};
    assert_int_equal(rotor_index_set_labels(ix, missing, &l), ROTOR_ERR_NOT_FOUND);
    uint32_t got[4];
    size_t n = 0;
    assert_int_equal(rotor_index_get_labels(ix, 1991, got, 4, &n), ROTOR_OK);
    assert_true(n == 1 && got[0] == 7);
    const uint32_t seven = 7;
    rotor_filter lab = {0};
    lab.labels = &seven;
    lab.nlabels = 1;
    sp.filter = &lab;
    assert_int_equal(rotor_index_search(ix, &sp, f->queries, D, K, ids, NULL), ROTOR_OK);
    assert_true((ids[0] == 31 && ids[1] == 1991) || (ids[0] == 1991 && ids[1] == 31));
    assert_true(ids[2] == -1);
    rotor_index_close(ix);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_search_returns_keys),
        cmocka_unit_test(test_bad_keys_refused),
        cmocka_unit_test(test_row_numbers_keep_no_table),
        cmocka_unit_test(test_contains_get_reconstruct_estimate),
        cmocka_unit_test(test_save_open_round_trip),
        cmocka_unit_test(test_damaged_keys_refused),
        cmocka_unit_test(test_table_grows_under_many_adds),
        cmocka_unit_test(test_allocation_failures_leave_index_unchanged),
        cmocka_unit_test(test_filters_and_labels_use_keys),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
