/*
 * Remove, update and consolidate, for every kind with the default build
 * (quant "auto"): a removed key is never returned by any search (single,
 * batch, filtered, scanned), before or after consolidation; recall after
 * removing a fifth and consolidating stays near a fresh build over the
 * same live vectors; update replaces a vector under its key; unknown,
 * negative and repeated keys are refused with the index unchanged;
 * removals survive a save and an open; a removed key can be added again;
 * freed slots take later adds;
 * and every allocation failure of a remove, update or consolidate leaves
 * the index as it was (or, for the consolidation a remove starts, the
 * remove made and the consolidation left for later).
 */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "index/index_internal.h"
#include "support/support.h"

static double now_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

enum { N = 4000, NQ = 100, D = 24, K = 10, CLUSTERS = 16 };

typedef struct fixture {
    float *base, *queries;
    char *dir;
} fixture;

static int setup(void **state) {
    fixture *f = calloc(1, sizeof *f);
    ts_rng r;
    ts_rng_init(&r, 2024);
    f->base = malloc((N + NQ) * D * sizeof(float));
    f->queries = f->base + N * D;
    ts_fill_clustered(&r, f->base, N + NQ, D, CLUSTERS, 4.0f);
    f->dir = ts_tmpdir_create();
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    free(f->base);
    ts_tmpdir_remove(f->dir);
    free(f);
    return 0;
}

/* The default build of each kind ("auto" picks full precision for the
 * small flat and graph indexes here), and a graph walking fast-scan codes
 * kept in its records, whose copies consolidation must refresh. */
enum { KINDS_N = 4 };
static const rotor_index_kind KINDS[KINDS_N] = {ROTOR_INDEX_FLAT, ROTOR_INDEX_VAMANA,
                                                ROTOR_INDEX_IVF, ROTOR_INDEX_VAMANA};

static rotor_params params_at(size_t c) {
    rotor_params p = rotor_params_default(); /* quant "auto" */
    p.kind = KINDS[c];
    p.calibrate = 0;
    p.threads = 2;
    /* Partitions fixed: a fresh build over fewer vectors would otherwise
     * cut fewer, larger ones, and probe more of the data at one nprobe. */
    if (KINDS[c] == ROTOR_INDEX_IVF)
        p.nlist = 64;
    if (c == 3) {
        p.quant = "sq8";
        p.walk_quant = "bin2fs";
        p.neighbor_codes = 1;
    }
    return p;
}

static rotor_params params_of(rotor_index_kind kind) { return params_at((size_t)kind); }

static rotor_index *build(const float *rows, size_t n, const int64_t *keys, rotor_params p) {
    rotor_matrix m = {(void *)rows, n, D, ROTOR_ELEM_F32};
    rotor_index *ix = NULL;
    assert_int_equal(rotor_index_build_with_keys(&p, &m, keys, &ix), ROTOR_OK);
    return ix;
}

static rotor_index_stats stats_of(const rotor_index *ix) {
    rotor_index_stats s;
    assert_int_equal(rotor_index_stats_get(ix, &s), ROTOR_OK);
    return s;
}

static bool has(const rotor_index *ix, int64_t key) {
    int found = -1;
    assert_int_equal(rotor_index_contains(ix, key, &found), ROTOR_OK);
    return found == 1;
}

static void search_all(const fixture *f, const rotor_index *ix, const rotor_search_params *sp,
                       int64_t *ids) {
    rotor_matrix q = {f->queries, NQ, D, ROTOR_ELEM_F32};
    assert_int_equal(rotor_index_search_batch(ix, sp, &q, K, ids, NULL), ROTOR_OK);
}

/* Every search path of ix returns no key marked in `gone`, and some. */
static void assert_none_removed(const fixture *f, const rotor_index *ix, const bool *gone) {
    int64_t ids[NQ * K];
    rotor_search_params sp = rotor_search_params_default();
    const int scans[] = {0, 1, -1};
    for (size_t m = 0; m < 3; m++) {
        sp.filter_scan = scans[m];
        search_all(f, ix, &sp, ids);
        size_t found = 0;
        for (size_t i = 0; i < NQ * K; i++) {
            assert_true(ids[i] >= -1 && ids[i] < N);
            if (ids[i] >= 0) {
                assert_false(gone[ids[i]]);
                found++;
            }
        }
        assert_true(found > NQ * K / 2);
    }
    /* Queries at removed vectors themselves, one at a time. */
    for (size_t u = 0, tried = 0; u < N && tried < 20; u++) {
        if (!gone[u])
            continue;
        tried++;
        int64_t one[K];
        assert_int_equal(rotor_index_search(ix, NULL, f->base + u * D, D, K, one, NULL), ROTOR_OK);
        for (size_t j = 0; j < K; j++)
            assert_true(one[j] < 0 || !gone[one[j]]);
    }
}

/* Random removes in rounds, searches after each: no removed key ever comes
 * back, lookups no longer find them, and the counts add up; then the same
 * after consolidating. */
static void removed_keys_are_never_returned(void **state) {
    fixture *f = *state;
    for (size_t c = 0; c < KINDS_N; c++) {
        rotor_index *ix = build(f->base, N, NULL, params_at(c));
        bool *gone = calloc(N, sizeof *gone);
        ts_rng r;
        ts_rng_init(&r, 77 + c);
        size_t removed = 0;
        for (size_t round = 0; round < 6; round++) {
            int64_t keys[60];
            size_t n = 0;
            while (n < 60) {
                const int64_t k = (int64_t)(ts_rng_next(&r) % N);
                bool dup = gone[k];
                for (size_t j = 0; j < n; j++)
                    dup = dup || keys[j] == k;
                if (!dup)
                    keys[n++] = k;
            }
            assert_int_equal(rotor_index_remove(ix, keys, n), ROTOR_OK);
            for (size_t j = 0; j < n; j++)
                gone[keys[j]] = true;
            removed += n;
            assert_none_removed(f, ix, gone);
            rotor_index_stats s = stats_of(ix);
            assert_int_equal(s.count, N - removed);
            assert_int_equal(s.slots, N);
            assert_int_equal(s.deleted, removed);
            float v[D];
            assert_false(has(ix, keys[0]));
            TS_CHECK_ERROR(rotor_index_get(ix, keys[0], v), ROTOR_ERR_NOT_FOUND, NULL, "key");
            TS_CHECK_ERROR(rotor_index_reconstruct(ix, keys[0], v), ROTOR_ERR_NOT_FOUND, NULL,
                           "key");
        }
        /* 360 of 4000 is past the threshold: consolidated on the way. */
        assert_true(stats_of(ix).unconsolidated < removed);
        assert_int_equal(rotor_index_consolidate(ix), ROTOR_OK);
        assert_int_equal(stats_of(ix).unconsolidated, 0);
        assert_none_removed(f, ix, gone);
        /* A calibration after removals measures the live vectors only, and
         * a search by recall still returns none of the removed. */
        assert_int_equal(rotor_index_tune(ix, NULL, 2), ROTOR_OK);
        rotor_tuning t;
        assert_int_equal(rotor_index_tuning(ix, &t), ROTOR_OK);
        assert_true(t.rows > 0);
        int64_t ids[NQ * K];
        rotor_search_params sp = rotor_search_params_default();
        sp.target_recall =
            t.row[t.rows - 1].recall_low > 0.8f ? 0.8f : t.row[t.rows - 1].recall_low;
        search_all(f, ix, &sp, ids);
        for (size_t i = 0; i < NQ * K; i++)
            assert_true(ids[i] >= 0 && !gone[ids[i]]);
        free(gone);
        rotor_index_close(ix);
    }
}

/* recall@K of ids against the exact neighbours among the live rows. */
static double recall_live(const fixture *f, const int64_t *ids, const float *live,
                          const int64_t *live_keys, size_t nlive) {
    int64_t *gt = malloc(NQ * K * sizeof *gt);
    ts_brute_force(live, nlive, f->queries, NQ, D, ROTOR_METRIC_L2, K, gt, NULL);
    size_t hit = 0;
    for (size_t q = 0; q < NQ; q++)
        for (size_t a = 0; a < K; a++)
            for (size_t b = 0; b < K; b++)
                hit += ids[q * K + b] == live_keys[gt[q * K + a]];
    free(gt);
    return (double)hit / (NQ * K);
}

/* Removing a fifth and consolidating keeps recall within 0.02 of a fresh
 * build over the same live vectors (under the same keys), at the same
 * search settings. */
static void recall_holds_after_consolidation(void **state) {
    fixture *f = *state;
    float *live = malloc(N * D * sizeof *live);
    int64_t *live_keys = malloc(N * sizeof *live_keys);
    int64_t *gone_keys = malloc(N * sizeof *gone_keys);
    size_t nlive = 0, ngone = 0;
    ts_rng r;
    ts_rng_init(&r, 5);
    for (size_t i = 0; i < N; i++) {
        if (ts_rng_next(&r) % 5 == 0) {
            gone_keys[ngone++] = (int64_t)i;
        } else {
            memcpy(live + nlive * D, f->base + i * D, D * sizeof *live);
            live_keys[nlive++] = (int64_t)i;
        }
    }
    for (size_t c = 0; c < KINDS_N; c++) {
        rotor_params p = params_at(c);
        rotor_index *ix = build(f->base, N, NULL, p);
        int64_t ids[NQ * K];
        rotor_search_params sp = rotor_search_params_default();
        sp.list_size = 32;
        sp.nprobe = 4;
        sp.filter_scan = -1; /* the walk, not a scan of the live points */
        /* Removed in batches of 1 %, each remove consolidating past 5 %. */
        for (size_t i = 0; i < ngone; i += N / 100) {
            const size_t n = ngone - i < N / 100 ? ngone - i : N / 100;
            assert_int_equal(rotor_index_remove(ix, gone_keys + i, n), ROTOR_OK);
        }
        search_all(f, ix, &sp, ids);
        const double pending = recall_live(f, ids, live, live_keys, nlive);
        const size_t left = stats_of(ix).unconsolidated;
        const double t0 = now_seconds();
        assert_int_equal(rotor_index_consolidate(ix), ROTOR_OK);
        const double secs = now_seconds() - t0;
        search_all(f, ix, &sp, ids);
        const double after = recall_live(f, ids, live, live_keys, nlive);
        rotor_index *fresh = build(live, nlive, live_keys, p);
        search_all(f, fresh, &sp, ids);
        const double want = recall_live(f, ids, live, live_keys, nlive);
        rotor_index_stats s = stats_of(ix);
        print_message("%s (%s): recall@10 with %zu removed %.3f, consolidated %.3f (last %zu in "
                      "%.1f ms), fresh build %.3f\n",
                      rotor_index_kind_name(KINDS[c]), s.quant, ngone, pending, after, left,
                      secs * 1e3, want);
        assert_int_equal(s.count, nlive);
        assert_true(after >= want - 0.02);
        rotor_index_close(fresh);
        rotor_index_close(ix);
    }
    free(live);
    free(live_keys);
    free(gone_keys);
}

/* An update moves a key to its new vector: a search for the new vector
 * finds the key, one at the old vector no longer does, get returns the new
 * vector; the old one's slot is a removed one. */
/* After a consolidation no live record links to a removed node, and an
 * add that reuses half the freed slots keeps it so for the other half: its links and the repair of
 * unreached nodes leave the removed ones out (they once were linked back in, one graph search
 * each), while every live node stays reachable from the entry. */
static void adds_leave_removed_nodes_out(void **state) {
    fixture *f = *state;
    rotor_params p = params_of(ROTOR_INDEX_VAMANA);
    const size_t first = N / 2;
    rotor_index *ix = build(f->base, first, NULL, p);
    int64_t *gone = malloc(first * sizeof *gone);
    size_t ngone = 0;
    for (size_t i = 0; i < first; i += 3)
        gone[ngone++] = (int64_t)i;
    assert_int_equal(rotor_index_remove(ix, gone, ngone), ROTOR_OK);
    assert_int_equal(rotor_index_consolidate(ix), ROTOR_OK);
    assert_int_equal(stats_of(ix).free_slots, ngone);
    /* Half the freed slots are reused, the rest stay removed. */
    rotor_matrix m = {f->base + first * D, ngone / 2, D, ROTOR_ELEM_F32};
    assert_int_equal(rotor_index_add(ix, &m), ROTOR_OK);
    assert_int_equal(stats_of(ix).free_slots, ngone - ngone / 2);

    const nav *g = ix->nav;
    const size_t n = vamana_count(g);
    assert_int_equal(n, first);
    uint8_t *seen = calloc(n, 1);
    uint32_t *stack = malloc(n * sizeof *stack);
    size_t top = 0, reached = 0;
    const uint32_t entry = vamana_entry(g);
    assert_false(ix_is_deleted(ix, entry));
    seen[entry] = 1;
    stack[top++] = entry;
    while (top > 0) {
        const uint32_t u = stack[--top];
        reached++;
        const uint32_t *nb;
        const uint32_t deg = vamana_neighbors(g, u, &nb);
        for (uint32_t j = 0; j < deg; j++) {
            if (ix_is_deleted(ix, nb[j]))
                fail_msg("live node %u links to removed node %u", u, nb[j]);
            if (!seen[nb[j]]) {
                seen[nb[j]] = 1;
                stack[top++] = nb[j];
            }
        }
    }
    assert_int_equal(reached, n - (ngone - ngone / 2));
    free(seen);
    free(stack);
    free(gone);
    rotor_index_close(ix);
}

static void update_replaces_a_vector(void **state) {
    fixture *f = *state;
    for (size_t c = 0; c < KINDS_N; c++) {
        rotor_index *ix = build(f->base, N, NULL, params_at(c));
        const int64_t keys[2] = {5, 900};
        float rows[2 * D];
        for (size_t j = 0; j < D; j++) { /* near rows 3000 and 3001, in other places */
            rows[j] = f->base[3000 * D + j] + 0.01f;
            rows[D + j] = f->base[3001 * D + j] - 0.01f;
        }
        rotor_matrix m = {rows, 2, D, ROTOR_ELEM_F32};
        assert_int_equal(rotor_index_update(ix, &m, keys), ROTOR_OK);
        for (size_t i = 0; i < 2; i++) {
            int64_t ids[2];
            assert_int_equal(rotor_index_search(ix, NULL, rows + i * D, D, 2, ids, NULL), ROTOR_OK);
            assert_true(ids[0] == keys[i] || ids[1] == keys[i]);
            int64_t old[1];
            assert_int_equal(
                rotor_index_search(ix, NULL, f->base + (size_t)keys[i] * D, D, 1, old, NULL),
                ROTOR_OK);
            assert_true(old[0] != keys[i]);
            float v[D];
            assert_int_equal(rotor_index_get(ix, keys[i], v), ROTOR_OK);
            assert_memory_equal(v, rows + i * D, sizeof v);
        }
        rotor_index_stats s = stats_of(ix);
        assert_int_equal(s.count, N);
        assert_int_equal(s.slots, N + 2);
        assert_int_equal(s.deleted, 2);
        rotor_index_close(ix);
    }
}

typedef struct snapshot {
    rotor_index_stats s;
    int64_t ids[NQ * K];
} snapshot;

static snapshot snap(const fixture *f, const rotor_index *ix) {
    snapshot s;
    s.s = stats_of(ix);
    search_all(f, ix, NULL, s.ids);
    return s;
}

static void assert_unchanged(const fixture *f, const rotor_index *ix, const snapshot *before) {
    snapshot now = snap(f, ix);
    assert_int_equal(now.s.count, before->s.count);
    assert_int_equal(now.s.slots, before->s.slots);
    assert_int_equal(now.s.deleted, before->s.deleted);
    assert_int_equal(now.s.unconsolidated, before->s.unconsolidated);
    assert_int_equal(now.s.free_slots, before->s.free_slots);
    assert_int_equal(now.s.user_keys, before->s.user_keys);
    assert_memory_equal(now.ids, before->ids, sizeof now.ids);
}

/* Unknown, negative and repeated keys, and bad rows for an update, are
 * refused, named, and change nothing, for an index with and without a
 * key table. */
static void bad_calls_change_nothing(void **state) {
    fixture *f = *state;
    int64_t *table_keys = malloc(N * sizeof *table_keys);
    for (size_t i = 0; i < N; i++)
        table_keys[i] = 1000000 + 7 * (int64_t)i;
    for (size_t t = 0; t < 2; t++) {
        const int64_t *bk = t ? table_keys : NULL;
        rotor_index *ix = build(f->base, N, bk, params_of(ROTOR_INDEX_VAMANA));
        const int64_t k0 = bk ? bk[0] : 0, k1 = bk ? bk[1] : 1, k2 = bk ? bk[2] : 2;
        assert_int_equal(rotor_index_remove(ix, &k2, 1), ROTOR_OK);
        snapshot before = snap(f, ix);
        int64_t keys[3] = {k0, 4444444, k1};
        TS_CHECK_ERROR(rotor_index_remove(ix, keys, 3), ROTOR_ERR_NOT_FOUND, NULL, "4444444");
        assert_unchanged(f, ix, &before);
        keys[1] = k2; /* removed already */
        TS_CHECK_ERROR(rotor_index_remove(ix, keys, 3), ROTOR_ERR_NOT_FOUND, NULL, "key");
        assert_unchanged(f, ix, &before);
        keys[1] = -3;
        TS_CHECK_ERROR(rotor_index_remove(ix, keys, 3), ROTOR_ERR_INVALID_ARGUMENT, NULL, "-3",
                       "negative");
        keys[1] = k0;
        TS_CHECK_ERROR(rotor_index_remove(ix, keys, 3), ROTOR_ERR_INVALID_ARGUMENT, NULL, "twice");
        assert_unchanged(f, ix, &before);
        assert_true(has(ix, k0) && has(ix, k1));

        float rows[3 * D];
        memcpy(rows, f->queries, sizeof rows);
        rotor_matrix m = {rows, 3, D, ROTOR_ELEM_F32};
        TS_CHECK_ERROR(rotor_index_update(ix, &m, keys), ROTOR_ERR_INVALID_ARGUMENT, NULL, "twice");
        keys[1] = 4444444;
        TS_CHECK_ERROR(rotor_index_update(ix, &m, keys), ROTOR_ERR_NOT_FOUND, NULL, "4444444");
        keys[1] = bk ? bk[3] : 3;
        rows[D + 5] = NAN;
        TS_CHECK_ERROR(rotor_index_update(ix, &m, keys), ROTOR_ERR_NOT_FINITE, NULL, "NaN");
        rows[D + 5] = 0;
        rotor_matrix wide = {rows, 1, D - 1, ROTOR_ELEM_F32};
        TS_CHECK_ERROR(rotor_index_update(ix, &wide, keys), ROTOR_ERR_DIMENSION, NULL, "23", "24");
        assert_unchanged(f, ix, &before);
        for (size_t i = 0; i < 3; i++)
            assert_true(has(ix, keys[i]));
        float v[D];
        assert_int_equal(rotor_index_get(ix, keys[1], v), ROTOR_OK);
        assert_memory_equal(v, f->base + (bk ? 3 : 3) * D, sizeof v);
        /* And then it works. */
        assert_int_equal(rotor_index_update(ix, &m, keys), ROTOR_OK);
        assert_int_equal(rotor_index_get(ix, keys[1], v), ROTOR_OK);
        assert_memory_equal(v, rows + D, sizeof v);
        rotor_index_close(ix);
    }
    free(table_keys);
}

/* A removed key may be added again, with or without a key table, and is
 * then found like any other; adds without keys continue the slots. */
static void removed_keys_can_come_back(void **state) {
    fixture *f = *state;
    rotor_index *ix = build(f->base, N, NULL, params_of(ROTOR_INDEX_VAMANA));
    const int64_t k = 7;
    assert_int_equal(rotor_index_remove(ix, &k, 1), ROTOR_OK);
    assert_false(has(ix, k));
    rotor_matrix one = {f->queries, 1, D, ROTOR_ELEM_F32};
    assert_int_equal(rotor_index_add_with_keys(ix, &one, &k), ROTOR_OK);
    assert_true(has(ix, k));
    int64_t id[1];
    assert_int_equal(rotor_index_search(ix, NULL, f->queries, D, 1, id, NULL), ROTOR_OK);
    assert_true(id[0] == k);
    assert_int_equal(stats_of(ix).user_keys, 1);
    /* Without keys, rows take the next slot numbers as keys. */
    rotor_matrix two = {f->queries + D, 1, D, ROTOR_ELEM_F32};
    assert_int_equal(rotor_index_add(ix, &two), ROTOR_OK);
    assert_true(has(ix, N + 1));
    /* Removing many keys of the table and adding them back keeps every
     * probe chain right: each key is found at its slot. */
    int64_t many[500];
    for (size_t i = 0; i < 500; i++)
        many[i] = (int64_t)(3 * i + 100);
    assert_int_equal(rotor_index_remove(ix, many, 500), ROTOR_OK);
    for (size_t i = 0; i < N; i++)
        assert_true(has(ix, (int64_t)i) == (i == 7 || i < 100 || i >= 1600 || (i - 100) % 3 != 0));
    rotor_matrix back = {f->base + 100 * D, 500, D, ROTOR_ELEM_F32};
    assert_int_equal(rotor_index_add_with_keys(ix, &back, many), ROTOR_OK);
    for (size_t i = 0; i < N; i++)
        assert_true(has(ix, (int64_t)i));
    float v[D];
    assert_int_equal(rotor_index_get(ix, many[1], v), ROTOR_OK);
    assert_memory_equal(v, f->base + 101 * D, sizeof v);
    rotor_index_close(ix);
}

static rotor_index *open_with(const char *path, int load, rotor_vectors_place where) {
    rotor_open_params op = rotor_open_params_default();
    op.load = load;
    op.vectors = where;
    rotor_index *o = NULL;
    assert_int_equal(rotor_index_open(path, &op, &o), ROTOR_OK);
    return o;
}

/* Removals survive a save and an open (mapped, loaded, vectors on disk),
 * consolidated or not; an opened index can be consolidated and saved
 * again; verify accepts every such file. */
static void removals_survive_save_and_open(void **state) {
    fixture *f = *state;
    char *path = ts_path(f->dir, "removed.rotor");
    char *again = ts_path(f->dir, "again.rotor");
    for (size_t c = 0; c < KINDS_N; c++) {
        rotor_params p = params_at(c);
        if (KINDS[c] == ROTOR_INDEX_FLAT)
            p.quant = "sq8"; /* so it can be opened with vectors on disk */
        rotor_index *ix = build(f->base, N, NULL, p);
        bool *gone = calloc(N, sizeof *gone);
        int64_t keys[150];
        for (size_t i = 0; i < 150; i++) {
            keys[i] = (int64_t)(i * 23 % N);
            gone[keys[i]] = true;
        }
        assert_int_equal(rotor_index_remove(ix, keys, 100), ROTOR_OK); /* 2.5 %: pending */
        assert_int_equal(rotor_index_save(ix, path), ROTOR_OK);
        assert_int_equal(rotor_index_verify(path), ROTOR_OK);
        for (int load = 0; load < 2; load++) {
            /* Vectors on disk need codes to walk on. */
            const int disks = strcmp(stats_of(ix).quant, "none") != 0 ? 2 : 1;
            for (int disk = 0; disk < disks; disk++) {
                rotor_index *o =
                    open_with(path, load, disk ? ROTOR_VECTORS_DISK : ROTOR_VECTORS_RAM);
                rotor_index_stats s = stats_of(o);
                assert_int_equal(s.count, N - 100);
                assert_int_equal(s.deleted, 100);
                assert_int_equal(s.unconsolidated, 100);
                assert_false(has(o, keys[0]));
                bool g100[N];
                memcpy(g100, gone, sizeof g100);
                for (size_t i = 100; i < 150; i++)
                    g100[keys[i]] = false;
                assert_none_removed(f, o, g100);
                /* Removing more and consolidating an opened index. */
                assert_int_equal(rotor_index_remove(o, keys + 100, 50), ROTOR_OK);
                assert_int_equal(rotor_index_consolidate(o), ROTOR_OK);
                assert_none_removed(f, o, gone);
                assert_int_equal(rotor_index_save(o, again), ROTOR_OK);
                rotor_index_close(o);
                assert_int_equal(rotor_index_verify(again), ROTOR_OK);
                o = open_with(again, load, ROTOR_VECTORS_AS_SAVED);
                s = stats_of(o);
                assert_int_equal(s.deleted, 150);
                assert_int_equal(s.unconsolidated, 0);
                assert_none_removed(f, o, gone);
                rotor_index_close(o);
            }
        }
        free(gone);
        rotor_index_close(ix);
    }
    free(path);
    free(again);
}

/* Every allocation of a remove (with the consolidation it starts), of an
 * update, of a consolidation and of adds into freed slots (without and
 * with keys) fails in turn: each failure is reported with the index
 * unchanged, or (the remove's own consolidation) the remove made and the
 * consolidation left pending; nothing leaks. */
static void allocation_failures_change_nothing(void **state) {
    fixture *f = *state;
    for (size_t c = 0; c < KINDS_N; c++) {
        rotor_params p = params_at(c);
        ts_counting_alloc ca = {0};
        p.allocator = ts_counting_allocator(&ca);
        enum { M = 400 }; /* every failure point builds afresh: keep builds small */
        int64_t keys[100];
        for (size_t i = 0; i < 100; i++)
            keys[i] = (int64_t)(i * 7 % M);
        long failures = 0;
        const int64_t new_keys[10] = {5000, 5001, 5002, 5003, 5004, 5005, 5006, 5007, 5008, 5009};
        for (int op = 0; op < 5; op++) {
            for (long at = 1;; at++) {
                ca.fail_at = 0;
                rotor_index *ix = build(f->base, M, NULL, p);
                if (op == 2)
                    assert_int_equal(rotor_index_remove(ix, keys, 20), ROTOR_OK); /* pending */
                if (op >= 3) { /* 100 free slots */
                    assert_int_equal(rotor_index_remove(ix, keys, 100), ROTOR_OK);
                    assert_int_equal(rotor_index_consolidate(ix), ROTOR_OK);
                    assert_int_equal(stats_of(ix).free_slots, 100);
                }
                snapshot before = snap(f, ix);
                ca.fail_at = ca.calls + at;
                rotor_status st;
                rotor_matrix m = {f->queries, 10, D, ROTOR_ELEM_F32};
                if (op == 0)
                    st = rotor_index_remove(ix, keys, 100); /* a quarter: consolidates */
                else if (op == 1)
                    st = rotor_index_update(ix, &m, keys);
                else if (op == 2)
                    st = rotor_index_consolidate(ix);
                else
                    st = rotor_index_add_with_keys(ix, &m, op == 4 ? new_keys : NULL);
                const bool hit = ca.calls >= ca.fail_at;
                ca.fail_at = 0;
                if (st == ROTOR_OK && op == 0 && hit) {
                    /* The consolidation failed, not the remove. */
                    const rotor_index_stats s = stats_of(ix);
                    assert_true(s.unconsolidated > 0 || s.free_slots < s.deleted);
                    assert_false(has(ix, keys[0]));
                    failures++;
                } else if (st != ROTOR_OK) {
                    assert_int_equal(st, ROTOR_ERR_OUT_OF_MEMORY);
                    assert_unchanged(f, ix, &before);
                    failures++;
                }
                rotor_index_close(ix);
                assert_int_equal(ca.live, 0);
                if (!hit)
                    break;
                assert_true(at < 1000);
            }
        }
        print_message("%s: %ld allocation failures of remove, update, consolidate, add\n",
                      rotor_index_kind_name(KINDS[c]), failures);
        assert_true(failures >= 3);
    }
}

/* A consolidation frees the removed slots and adds fill them before they
 * grow the index, for every kind, with keys of the caller's and with the
 * slot numbers: the slot count stays put, each new vector is found under
 * its key (get, search), carries none of the labels its slot's old
 * vector had, the keys removed and not given again stay gone, and a
 * saved and reopened index reuses its free slots too. */
static void freed_slots_take_new_vectors(void **state) {
    fixture *f = *state;
    enum { GONE = N / 4, FIRST = 600, SECOND = GONE - FIRST + 200 };
    uint64_t *off = malloc((N + 1) * sizeof *off);
    uint32_t *val = malloc(N * sizeof *val);
    for (size_t i = 0; i <= N; i++)
        off[i] = i;
    for (size_t i = 0; i < N; i++)
        val[i] = (uint32_t)(i % 5);
    const rotor_labels labels = {off, val, N};
    int64_t *keys = malloc(N * sizeof *keys), *gone = malloc(GONE * sizeof *gone);
    int64_t *added = malloc((FIRST + SECOND) * sizeof *added);
    float *rows = malloc((FIRST + SECOND) * D * sizeof *rows);
    for (size_t j = 0; j < FIRST + SECOND; j++)
        for (size_t t = 0; t < D; t++)
            rows[j * D + t] = f->base[(j * 7 % N) * D + t] + 0.5f;
    for (size_t c = 0; c < 2 * KINDS_N; c++) {
        const bool keyed = c % 2 == 1;
        rotor_params p = params_at(c / 2);
        p.labels = &labels;
        for (size_t i = 0; i < N; i++)
            keys[i] = keyed ? 1000000 + (int64_t)i : (int64_t)i;
        rotor_index *ix = build(f->base, N, keyed ? keys : NULL, p);
        for (size_t i = 0; i < GONE; i++)
            gone[i] = keys[4 * i];
        assert_int_equal(rotor_index_remove(ix, gone, GONE), ROTOR_OK);
        assert_int_equal(rotor_index_consolidate(ix), ROTOR_OK);
        rotor_index_stats s = stats_of(ix);
        assert_int_equal(s.free_slots, GONE);
        assert_int_equal(s.slots, N);

        /* Saved and opened, the removed slots are free again. */
        char *path = ts_path(f->dir, "freed.rotor");
        assert_int_equal(rotor_index_save(ix, path), ROTOR_OK);
        rotor_index *o = open_with(path, 0, ROTOR_VECTORS_RAM);
        assert_int_equal(stats_of(o).free_slots, GONE);
        rotor_matrix all = {rows, GONE, D, ROTOR_ELEM_F32};
        assert_int_equal(rotor_index_add(o, &all), ROTOR_OK);
        assert_int_equal(stats_of(o).slots, N);
        assert_int_equal(stats_of(o).free_slots, 0);
        rotor_index_close(o);
        free(path);

        /* The first adds take free slots, lowest first: without keys of
         * their own, the rows take those slots' numbers. */
        for (size_t j = 0; j < FIRST + SECOND; j++)
            added[j] = keyed ? 2000000 + (int64_t)j
                             : (j < GONE ? 4 * (int64_t)j : N + (int64_t)(j - GONE));
        rotor_matrix m1 = {rows, FIRST, D, ROTOR_ELEM_F32};
        assert_int_equal(rotor_index_add_with_keys(ix, &m1, keyed ? added : NULL), ROTOR_OK);
        for (size_t j = 0; j < FIRST; j++) /* the keys given are exactly these */
            assert_true(has(ix, added[j]));
        s = stats_of(ix);
        assert_int_equal(s.slots, N);
        assert_int_equal(s.free_slots, GONE - FIRST);
        assert_int_equal(s.deleted, GONE - FIRST);
        assert_int_equal(s.count, N - GONE + FIRST);
        rotor_matrix m2 = {rows + FIRST * D, SECOND, D, ROTOR_ELEM_F32};
        assert_int_equal(rotor_index_add_with_keys(ix, &m2, keyed ? added + FIRST : NULL),
                         ROTOR_OK);
        s = stats_of(ix);
        assert_int_equal(s.slots, N + 200);
        assert_int_equal(s.free_slots, 0);
        assert_int_equal(s.deleted, 0);

        size_t hits = 0;
        for (size_t j = 0; j < FIRST + SECOND; j++) {
            assert_true(has(ix, added[j]));
            float v[D];
            assert_int_equal(rotor_index_get(ix, added[j], v), ROTOR_OK);
            assert_memory_equal(v, rows + j * D, sizeof v);
            size_t nl = 9;
            assert_int_equal(rotor_index_get_labels(ix, added[j], NULL, 0, &nl), ROTOR_OK);
            assert_int_equal(nl, 0);
            int64_t id[1];
            assert_int_equal(rotor_index_search(ix, NULL, rows + j * D, D, 1, id, NULL), ROTOR_OK);
            hits += id[0] == added[j];
        }
        print_message("%s %s: %zu of %zu added vectors are their own nearest\n",
                      rotor_index_kind_name(p.kind), keyed ? "keyed" : "slot numbers", hits,
                      (size_t)(FIRST + SECOND));
        assert_true(hits >= (FIRST + SECOND) * 95 / 100);
        if (keyed)
            for (size_t i = 0; i < GONE; i++)
                assert_false(has(ix, gone[i]));
        /* A label filter passes no new vector: they carry none. */
        rotor_filter flt = {0};
        const uint32_t label = 0;
        flt.labels = &label;
        flt.nlabels = 1;
        rotor_search_params sp = rotor_search_params_default();
        sp.filter = &flt;
        for (size_t j = 0; j < 50; j++) {
            int64_t id[K];
            assert_int_equal(rotor_index_search(ix, &sp, rows + j * D, D, K, id, NULL), ROTOR_OK);
            for (size_t t = 0; t < K; t++) {
                if (id[t] < 0)
                    continue;
                uint32_t got[4];
                size_t nl = 0;
                assert_int_equal(rotor_index_get_labels(ix, id[t], got, 4, &nl), ROTOR_OK);
                assert_true(nl == 1 && got[0] == 0);
            }
        }
        rotor_index_close(ix);
    }
    free(off);
    free(val);
    free(keys);
    free(gone);
    free(added);
    free(rows);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(removed_keys_are_never_returned),
        cmocka_unit_test(recall_holds_after_consolidation),
        cmocka_unit_test(adds_leave_removed_nodes_out),
        cmocka_unit_test(update_replaces_a_vector),
        cmocka_unit_test(bad_calls_change_nothing),
        cmocka_unit_test(removed_keys_can_come_back),
        cmocka_unit_test(removals_survive_save_and_open),
        cmocka_unit_test(freed_slots_take_new_vectors),
        cmocka_unit_test(allocation_failures_change_nothing),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
