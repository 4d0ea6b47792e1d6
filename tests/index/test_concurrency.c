/*
 * Many threads searching one index at once, batch search's own worker
 * threads, and searches beside a writer: threads search (single, batch,
 * filtered by labels, stats, get, contains) while one thread adds,
 * removes, updates and consolidates (adds filling the slots consolidation
 * freed), for every kind and graph layout.
 * A search never returns a key removed before it started, never a key
 * the index has not been given, and the index ends as a fresh one would
 * answer. Run under ThreadSanitizer in CI: a data race fails the test
 * there even when the results happen to be right.
 */
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support/support.h"

enum { N = 2000, D = 24, THREADS = 4, QUERIES_PER_THREAD = 40, K = 5 };

typedef struct job {
    const rotor_index *ix;
    const float *base;
    int failures;
} job;

static void *searcher(void *arg) {
    job *j = arg;
    for (int i = 0; i < QUERIES_PER_THREAD; i++) {
        size_t row = (size_t)(i * 37 % N);
        int64_t ids[K];
        float d[K];
        if (rotor_index_search(j->ix, NULL, j->base + row * D, D, K, ids, d) != ROTOR_OK ||
            ids[0] != (int64_t)row || d[0] != 0.0f)
            j->failures++;
    }
    return NULL;
}

static void test_concurrent_searches_on_one_index_agree(void **state) {
    (void)state;
    ts_rng r;
    ts_rng_init(&r, 5);
    float *base = malloc(N * D * sizeof(float));
    ts_fill_uniform(&r, base, N * D, 0, 1);
    rotor_matrix m = {base, N, D, ROTOR_ELEM_F32};
    rotor_index *ix = NULL;
    assert_int_equal(rotor_index_build(NULL, &m, &ix), ROTOR_OK);

    pthread_t t[THREADS];
    job jobs[THREADS];
    for (int i = 0; i < THREADS; i++) {
        jobs[i] = (job){ix, base, 0};
        assert_int_equal(pthread_create(&t[i], NULL, searcher, &jobs[i]), 0);
    }
    /* A batch search with its own workers, at the same time. */
    int64_t *ids = malloc(N * K * sizeof *ids);
    rotor_search_params sp = rotor_search_params_default();
    sp.threads = 3;
    assert_int_equal(rotor_index_search_batch(ix, &sp, &m, K, ids, NULL), ROTOR_OK);
    for (int i = 0; i < THREADS; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(jobs[i].failures, 0);
    }
    for (size_t i = 0; i < N; i++)
        assert_int_equal(ids[i * K], (int64_t)i);
    free(ids);
    rotor_index_close(ix);
    free(base);
}

/* ---- searches beside a writer ------------------------------------------ */

enum {
    LIVE_D = 16,
    LIVE_FIRST = 1500, /* built with these */
    LIVE_ROUNDS = 8,
    LIVE_BATCH = 60, /* added and removed a round */
    LIVE_ROWS = LIVE_FIRST + LIVE_ROUNDS * LIVE_BATCH * 2,
    LIVE_SEARCHERS = 2,
    LIVE_K = 10,
    LIVE_CLUSTERS = 12,
};

typedef struct live {
    rotor_index *ix;
    const float *rows; /* LIVE_ROWS x LIVE_D; key i is row i */
    /* Removals: the writer stamps each removed key with the epoch its
     * remove returned in, then publishes the epoch. */
    atomic_int removed_at[LIVE_ROWS];
    atomic_int epoch;
    atomic_int next_key; /* keys below it were given to the index */
    atomic_bool done;
    atomic_int violations, searches;
    char first_violation[200];
    atomic_flag reported;
} live;

__attribute__((format(printf, 2, 3))) static void live_violation(live *l, const char *fmt, ...) {
    atomic_fetch_add(&l->violations, 1);
    if (!atomic_flag_test_and_set(&l->reported)) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(l->first_violation, sizeof l->first_violation, fmt, ap);
        va_end(ap);
    }
}

/* Every key of a result: given to the index, not removed before `epoch`,
 * and no key twice. */
static void live_check(live *l, const int64_t *ids, size_t k, int epoch, int given) {
    for (size_t i = 0; i < k; i++) {
        if (ids[i] < 0)
            continue;
        if (ids[i] >= given) {
            live_violation(l, "key %ld returned before it was added (%d given)", (long)ids[i],
                           given);
            continue;
        }
        const int at = atomic_load(&l->removed_at[ids[i]]);
        if (at != 0 && at <= epoch)
            live_violation(l, "key %ld returned after its removal at epoch %d", (long)ids[i], at);
        for (size_t j = 0; j < i; j++)
            if (ids[j] == ids[i])
                live_violation(l, "key %ld returned twice (at %zu)", (long)ids[i], j);
    }
}

static void *live_searcher(void *arg) {
    live *l = arg;
    unsigned q = 0;
    const uint32_t label = 1;
    rotor_search_params filtered = rotor_search_params_default();
    filtered.filter = &(rotor_filter){.labels = &label, .nlabels = 1};
    while (!atomic_load(&l->done)) {
        q++;
        const int epoch = atomic_load(&l->epoch);
        const float *x = l->rows + (size_t)(q * 7919u % LIVE_ROWS) * LIVE_D;
        int64_t ids[4 * LIVE_K];
        float d[4 * LIVE_K];
        rotor_status st;
        /* The keys given are read after each call: the writer raises
         * their bound before each add. */
        switch (q % 4) {
        case 0:
            st = rotor_index_search(l->ix, NULL, x, LIVE_D, LIVE_K, ids, d);
            if (st == ROTOR_OK)
                live_check(l, ids, LIVE_K, epoch, atomic_load(&l->next_key));
            break;
        case 1: { /* a batch of 4 on 2 threads, and a filter */
            rotor_matrix m = {(void *)l->rows, 4, LIVE_D, ROTOR_ELEM_F32};
            rotor_search_params sp = filtered;
            sp.threads = 2;
            st = rotor_index_search_batch(l->ix, &sp, &m, LIVE_K, ids, d);
            if (st == ROTOR_OK)
                for (size_t i = 0; i < 4; i++)
                    live_check(l, ids + i * LIVE_K, LIVE_K, epoch, atomic_load(&l->next_key));
            break;
        }
        case 2: {
            rotor_index_stats s;
            st = rotor_index_stats_get(l->ix, &s);
            if (st == ROTOR_OK && s.count > (size_t)atomic_load(&l->next_key))
                live_violation(l, "stats count %zu above the keys given (%d)", s.count,
                               atomic_load(&l->next_key));
            break;
        }
        default: {
            const int64_t key = (int64_t)(q * 31u % (unsigned)atomic_load(&l->next_key));
            int found = 0;
            st = rotor_index_contains(l->ix, key, &found);
            const int at = atomic_load(&l->removed_at[key]);
            if (st == ROTOR_OK && found && at != 0 && at <= epoch)
                live_violation(l, "contains(%ld) after its removal at epoch %d", (long)key, at);
            /* Removed meanwhile or not, a get answers. */
            float v[LIVE_D];
            const rotor_status gst = rotor_index_get(l->ix, key, v);
            if (gst != ROTOR_OK && gst != ROTOR_ERR_NOT_FOUND)
                live_violation(l, "get(%ld) failed with status %d", (long)key, (int)gst);
            break;
        }
        }
        if (st != ROTOR_OK)
            live_violation(l, "a reading call failed with status %d (query %u)", (int)st, q);
        atomic_fetch_add(&l->searches, 1);
    }
    return NULL;
}

static rotor_labels live_labels(size_t n, uint64_t *off, uint32_t *val) {
    for (size_t i = 0; i < n; i++) {
        off[i] = i;
        val[i] = (uint32_t)(i % 3);
    }
    off[n] = n;
    return (rotor_labels){off, val, n};
}

/* Until the searchers made `more` more calls: on a busy machine they
 * might otherwise start after the writer is done. */
static void live_wait_for_searches(live *l, int more) {
    const int target = atomic_load(&l->searches) + more;
    while (atomic_load(&l->searches) < target)
        sched_yield();
}

/* The writer: each round adds LIVE_BATCH rows (with labels on some
 * rounds), removes LIVE_BATCH random live keys, updates a few in place,
 * and every other round consolidates; the searchers run in between and
 * throughout. */
static void live_write(live *l, ts_rng *r) {
    int next = LIVE_FIRST;
    bool *gone = calloc(LIVE_ROWS, 1);
    uint64_t off[LIVE_BATCH + 1];
    uint32_t val[LIVE_BATCH];
    for (int round = 0; round < LIVE_ROUNDS; round++) {
        live_wait_for_searches(l, LIVE_SEARCHERS);
        int64_t keys[LIVE_BATCH];
        for (int i = 0; i < LIVE_BATCH; i++)
            keys[i] = next + i;
        rotor_matrix m = {(void *)(l->rows + (size_t)next * LIVE_D), LIVE_BATCH, LIVE_D,
                          ROTOR_ELEM_F32};
        /* Given from now on: a search may return them before the add
         * returns, never before it starts. */
        atomic_store(&l->next_key, next + LIVE_BATCH);
        assert_int_equal(rotor_index_add_with_keys(l->ix, &m, keys), ROTOR_OK);
        if (round % 2 == 0) {
            const rotor_labels lab = live_labels(LIVE_BATCH, off, val);
            assert_int_equal(rotor_index_set_labels(l->ix, keys, &lab), ROTOR_OK);
        }
        next += LIVE_BATCH;

        int64_t victims[LIVE_BATCH];
        for (int i = 0; i < LIVE_BATCH;) {
            const int64_t key = (int64_t)(ts_rng_next(r) % (uint64_t)next);
            if (gone[key])
                continue;
            gone[key] = true;
            victims[i++] = key;
        }
        assert_int_equal(rotor_index_remove(l->ix, victims, LIVE_BATCH), ROTOR_OK);
        const int epoch = round + 1;
        for (int i = 0; i < LIVE_BATCH; i++)
            atomic_store(&l->removed_at[victims[i]], epoch);
        atomic_store(&l->epoch, epoch);

        /* A few live keys take the vector of a row not used otherwise. */
        int64_t moved[4];
        int nm = 0;
        for (int64_t key = 0; key < next && nm < 4; key += 97)
            if (!gone[key])
                moved[nm++] = key;
        rotor_matrix u = {(void *)(l->rows + (size_t)(LIVE_ROWS - 4) * LIVE_D), (size_t)nm, LIVE_D,
                          ROTOR_ELEM_F32};
        assert_int_equal(rotor_index_update(l->ix, &u, moved), ROTOR_OK);
        if (round % 2 == 1)
            assert_int_equal(rotor_index_consolidate(l->ix), ROTOR_OK);
    }
    free(gone);
}

static void live_case(const char *name, rotor_index_kind kind, const char *quant, const char *walk,
                      int neighbor_codes) {
    ts_rng r;
    ts_rng_init(&r, 77);
    float centres[LIVE_CLUSTERS * LIVE_D];
    for (size_t i = 0; i < LIVE_CLUSTERS * LIVE_D; i++)
        centres[i] = 4.0f * (float)ts_rng_normal(&r);
    float *rows = malloc((size_t)LIVE_ROWS * LIVE_D * sizeof(float));
    for (size_t i = 0; i < LIVE_ROWS; i++) {
        const float *c = centres + (ts_rng_next(&r) % LIVE_CLUSTERS) * LIVE_D;
        for (size_t j = 0; j < LIVE_D; j++)
            rows[i * LIVE_D + j] = c[j] + (float)ts_rng_normal(&r);
    }
    rotor_params p = rotor_params_default();
    p.kind = kind;
    if (quant != NULL) /* NULL: the default, "auto" */
        p.quant = quant;
    p.walk_quant = walk;
    if (neighbor_codes >= 0)
        p.neighbor_codes = neighbor_codes;
    p.threads = 2;
    p.calibrate = 0;
    uint64_t off[LIVE_FIRST + 1];
    uint32_t *val = malloc(LIVE_FIRST * sizeof *val);
    const rotor_labels lab = live_labels(LIVE_FIRST, off, val);
    p.labels = &lab;
    live *l = calloc(1, sizeof *l);
    l->rows = rows;
    atomic_store(&l->next_key, LIVE_FIRST);
    rotor_matrix m = {rows, LIVE_FIRST, LIVE_D, ROTOR_ELEM_F32};
    assert_int_equal(rotor_index_build(&p, &m, &l->ix), ROTOR_OK);
    free(val);

    pthread_t t[LIVE_SEARCHERS];
    for (int i = 0; i < LIVE_SEARCHERS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, live_searcher, l), 0);
    live_write(l, &r);
    atomic_store(&l->done, true);
    for (int i = 0; i < LIVE_SEARCHERS; i++)
        pthread_join(t[i], NULL);
    if (atomic_load(&l->violations) != 0)
        fail_msg("%s: %d violations; the first: %s", name, atomic_load(&l->violations),
                 l->first_violation);
    assert_true(atomic_load(&l->searches) > 0);

    /* What the searchers saw last is the index: it answers as a fresh
     * index over its live rows would, near enough (recall@10 >= 0.9
     * against exact neighbours among the live keys). */
    rotor_index_stats s;
    assert_int_equal(rotor_index_stats_get(l->ix, &s), ROTOR_OK);
    assert_int_equal(s.count, LIVE_FIRST); /* as many added as removed */
    /* Adds after a consolidation went into the slots it freed: 8 rounds
     * of 60 adds and 4 updates grew the index by less than they added. */
    assert_true(s.slots < LIVE_FIRST + LIVE_ROUNDS * (LIVE_BATCH + 4) - LIVE_BATCH);
    size_t hits = 0, total = 0;
    for (size_t q = 0; q < 50; q++) {
        const float *x = rows + (LIVE_ROWS - 100 + q) * LIVE_D;
        int64_t ids[LIVE_K];
        float d[LIVE_K];
        assert_int_equal(rotor_index_search(l->ix, NULL, x, LIVE_D, LIVE_K, ids, d), ROTOR_OK);
        /* Exact among the live keys, read back through get(). */
        float best[LIVE_K];
        int64_t best_id[LIVE_K];
        size_t have = 0;
        for (int64_t key = 0; key < atomic_load(&l->next_key); key++) {
            float v[LIVE_D];
            if (rotor_index_get(l->ix, key, v) != ROTOR_OK)
                continue;
            float dist = 0;
            for (size_t j = 0; j < LIVE_D; j++)
                dist += (v[j] - x[j]) * (v[j] - x[j]);
            if (have == LIVE_K && dist >= best[LIVE_K - 1])
                continue;
            size_t at = have < LIVE_K ? have++ : LIVE_K - 1;
            for (; at > 0 && best[at - 1] > dist; at--) {
                best[at] = best[at - 1];
                best_id[at] = best_id[at - 1];
            }
            best[at] = dist;
            best_id[at] = key;
        }
        for (size_t i = 0; i < LIVE_K; i++)
            for (size_t j = 0; j < LIVE_K; j++)
                hits += ids[i] == best_id[j];
        total += LIVE_K;
    }
    const double recall = (double)hits / (double)total;
    if (recall < 0.9)
        fail_msg("%s: recall@10 %.3f after the writes", name, recall);
    rotor_index_close(l->ix);
    free(l);
    free(rows);
}

static void test_searches_beside_a_writer(void **state) {
    (void)state;
    live_case("flat", ROTOR_INDEX_FLAT, "none", NULL, 0);
    live_case("flat sq8", ROTOR_INDEX_FLAT, "sq8", NULL, 0);
    live_case("vamana default", ROTOR_INDEX_VAMANA, NULL, NULL, -1);
    live_case("vamana full precision", ROTOR_INDEX_VAMANA, "none", NULL, 0);
    live_case("vamana pq8x4, neighbour codes", ROTOR_INDEX_VAMANA, "pq8x4", NULL, 1);
    live_case("vamana bin1fs walk, own codes", ROTOR_INDEX_VAMANA, "sq8", "bin1fs", 0);
    live_case("ivf sq8", ROTOR_INDEX_IVF, "sq8", NULL, 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_concurrent_searches_on_one_index_agree),
        cmocka_unit_test(test_searches_beside_a_writer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
