#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "common/pool.h"
#include "common/topk.h"
#include "support/support.h"

static void test_fail_sets_last_error_with_numbers(void **state) {
    (void)state;
    rotor_status st =
        cm_fail(ROTOR_ERR_DIMENSION, "query has %d dimensions, index has %d", 768, 384);
    assert_int_equal(st, ROTOR_ERR_DIMENSION);
    assert_string_equal(rotor_last_error(), "query has 768 dimensions, index has 384");
    cm_fail_prefix(st, "search");
    assert_string_equal(rotor_last_error(), "search: query has 768 dimensions, index has 384");
    cm_clear_error();
    assert_string_equal(rotor_last_error(), "");
}

static void *other_thread(void *arg) {
    (void)arg;
    cm_fail(ROTOR_ERR_IO, "other thread");
    return NULL;
}

static void test_last_error_is_per_thread(void **state) {
    (void)state;
    cm_fail(ROTOR_ERR_FORMAT, "main thread");
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, other_thread, NULL), 0);
    pthread_join(t, NULL);
    assert_string_equal(rotor_last_error(), "main thread");
}

static void test_strerror_names_every_status(void **state) {
    (void)state;
    for (int s = ROTOR_OK; s <= ROTOR_ERR_NOT_FOUND; s++)
        assert_string_not_equal(rotor_strerror((rotor_status)s), "unknown status");
    assert_string_equal(rotor_strerror((rotor_status)999), "unknown status");
}

static void test_alloc_failure_records_sentence(void **state) {
    (void)state;
    ts_counting_alloc c = {0, 0, 1};
    rotor_allocator a = ts_counting_allocator(&c);
    assert_null(cm_alloc(&a, 100, "test block"));
    assert_non_null(
        strstr(rotor_last_error(), "out of memory allocating 100 bytes for test block"));
    void *p = cm_alloc(&a, 100, "test block");
    assert_non_null(p);
    assert_int_equal((uintptr_t)p % CM_ALIGN, 0);
    cm_free(&a, p);
    assert_int_equal(c.live, 0);
}

static void test_topk_keeps_smallest_sorted_and_pads(void **state) {
    (void)state;
    ts_rng r;
    ts_rng_init(&r, 7);
    enum { N = 1000, K = 17 };
    float vals[N];
    for (int i = 0; i < N; i++)
        vals[i] = (float)(ts_rng_next(&r) % 200); /* many ties */
    float d[K];
    int64_t id[K];
    cm_topk t;
    cm_topk_init(&t, d, id, K);
    for (int i = 0; i < N; i++)
        cm_topk_push(&t, vals[i], i);
    cm_topk_finish(&t);
    /* Reference: stable selection by (value, id). */
    bool taken[N] = {false};
    for (int j = 0; j < K; j++) {
        int best = -1;
        for (int i = 0; i < N; i++)
            if (!taken[i] && (best < 0 || vals[i] < vals[best]))
                best = i;
        taken[best] = true;
        assert_int_equal(id[j], best);
        assert_true(d[j] == vals[best]);
    }

    cm_topk_init(&t, d, id, K);
    cm_topk_push(&t, 3.0f, 9);
    cm_topk_push(&t, 1.0f, 4);
    cm_topk_finish(&t);
    assert_int_equal(id[0], 4);
    assert_int_equal(id[1], 9);
    for (int j = 2; j < K; j++) {
        assert_int_equal(id[j], -1);
        assert_true(isinf(d[j]) && d[j] > 0);
    }
}

static void test_topk_threshold_is_kth_distance(void **state) {
    (void)state;
    float d[3];
    int64_t id[3];
    cm_topk t;
    cm_topk_init(&t, d, id, 3);
    assert_true(isinf(cm_topk_threshold(&t)));
    cm_topk_push(&t, 5, 0);
    cm_topk_push(&t, 2, 1);
    cm_topk_push(&t, 9, 2);
    assert_true(cm_topk_threshold(&t) == 9.0f);
    cm_topk_push(&t, 1, 3);
    assert_true(cm_topk_threshold(&t) == 5.0f);
}

typedef struct pool_job {
    _Atomic int *runs; /* per chunk */
    _Atomic int bad_worker;
    unsigned threads;
} pool_job;

static void count_chunk(void *ctx, size_t chunk, unsigned worker) {
    pool_job *j = ctx;
    j->runs[chunk]++;
    if (worker >= j->threads)
        j->bad_worker = 1;
}

/* Every chunk runs exactly once per job, on a worker numbered below the
 * pool's thread count, job after job on the same threads. */
static void test_pool_runs_every_chunk_once(void **state) {
    (void)state;
    rotor_allocator a = cm_allocator_default();
    const unsigned asked[] = {1, 2, 5};
    for (size_t t = 0; t < 3; t++) {
        cm_pool pool;
        assert_int_equal(cm_pool_start(&pool, &a, asked[t]), ROTOR_OK);
        assert_true(cm_pool_threads(&pool) >= 1 && cm_pool_threads(&pool) <= asked[t]);
        for (size_t nchunks = 0; nchunks < 300; nchunks += 37) {
            _Atomic int runs[300] = {0};
            pool_job j = {runs, 0, cm_pool_threads(&pool)};
            cm_pool_run(&pool, count_chunk, &j, nchunks);
            for (size_t c = 0; c < 300; c++)
                assert_int_equal(runs[c], c < nchunks ? 1 : 0);
            assert_int_equal(j.bad_worker, 0);
        }
        cm_pool_stop(&pool);
    }
}

static void test_thread_count_rule(void **state) {
    (void)state;
    assert_int_equal(cm_thread_count(4, 100), 4);
    assert_int_equal(cm_thread_count(4, 3), 3); /* never more than the work */
    assert_int_equal(cm_thread_count(4, 0), 1); /* at least one */
    assert_int_equal(cm_thread_count(0, 1000),
                     cm_cpu_count() < CM_MAX_THREADS ? cm_cpu_count() : CM_MAX_THREADS);
    assert_int_equal(cm_thread_count(100000, 1000000), CM_MAX_THREADS);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fail_sets_last_error_with_numbers),
        cmocka_unit_test(test_last_error_is_per_thread),
        cmocka_unit_test(test_strerror_names_every_status),
        cmocka_unit_test(test_pool_runs_every_chunk_once),
        cmocka_unit_test(test_thread_count_rule),
        cmocka_unit_test(test_alloc_failure_records_sentence),
        cmocka_unit_test(test_topk_keeps_smallest_sorted_and_pads),
        cmocka_unit_test(test_topk_threshold_is_kth_distance),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
