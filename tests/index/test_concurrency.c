/*
 * Many threads searching one index at once (the const contract), and batch
 * search's own worker threads. Run under ThreadSanitizer in CI: a data race
 * fails the test there even when the results happen to be right.
 */
#include <pthread.h>
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

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_concurrent_searches_on_one_index_agree),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
