/*
 * Out of memory is an error everywhere, in the SQLite manner: for a whole
 * build + save + open + search + add + search cycle of each index kind, the
 * allocation numbered N fails, for every N from 1 until the cycle runs
 * through. Each run must report ROTOR_ERR_OUT_OF_MEMORY from the step that
 * failed, leak nothing, and leave the index file on disk either as it was
 * before the cycle (the save did not finish) or whole and openable.
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "support/support.h"

enum { N = 400, D = 16, K = 5 };

typedef struct fixture {
    float *base;
    char *dir;
} fixture;

static int setup(void **state) {
    fixture *f = calloc(1, sizeof *f);
    ts_rng r;
    ts_rng_init(&r, 91);
    f->base = malloc((N + N / 4) * D * sizeof(float));
    ts_fill_uniform(&r, f->base, (N + N / 4) * D, -1, 1);
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

typedef struct config {
    const char *name;
    rotor_index_kind kind;
    const char *quant, *walk_quant;
} config;

static rotor_params params_of(const config *c) {
    rotor_params p = rotor_params_default();
    p.kind = c->kind;
    p.quant = c->quant;
    p.walk_quant = c->walk_quant;
    /* A calibration searches hundreds of times; its allocation failures
     * are cycled in test_tune on a smaller build. */
    p.calibrate = 0;
    p.graph_degree = 8;
    p.build_list = 16;
    p.nlist = 8;
    p.threads = 2;
    return p;
}

/* One cycle with `a`; returns the first failing step's status. */
static rotor_status cycle(const fixture *f, const config *c, const char *path, rotor_allocator a,
                          bool *saved) {
    rotor_params p = params_of(c);
    p.allocator = a;
    /* Labels (i % 3, and 7 on every 50th) go through the build, the file
     * and the filtered searches below: walked (1) and scanned (7). */
    static uint64_t off[N + 1];
    static uint32_t val[2 * N];
    for (size_t i = 0, at = 0; i < N; i++) {
        off[i] = at;
        val[at++] = (uint32_t)(i % 3);
        if (i % 50 == 0)
            val[at++] = 7;
        off[i + 1] = at;
    }
    const rotor_labels labels = {off, val, N};
    p.labels = &labels;
    rotor_matrix base = {f->base, N, D, ROTOR_ELEM_F32};
    rotor_matrix more = {f->base + N * D, N / 4, D, ROTOR_ELEM_F32};
    rotor_index *ix = NULL, *opened = NULL;
    int64_t ids[K];
    *saved = false;
    rotor_status st = rotor_index_build(&p, &base, &ix);
    if (st == ROTOR_OK)
        st = rotor_index_save(ix, path);
    if (st == ROTOR_OK) {
        *saved = true;
        rotor_open_params op = rotor_open_params_default();
        op.allocator = a;
        op.vectors = ROTOR_VECTORS_RAM;
        st = rotor_index_open(path, &op, &opened);
    }
    if (st == ROTOR_OK)
        st = rotor_index_search(opened, NULL, f->base, D, K, ids, NULL);
    const uint32_t walked = 1, scanned = 7;
    const rotor_filter filters[] = {{.labels = &walked, .nlabels = 1},
                                    {.labels = &scanned, .nlabels = 1}};
    for (size_t i = 0; i < 2 && st == ROTOR_OK; i++) {
        rotor_search_params sp = rotor_search_params_default();
        sp.filter = &filters[i];
        st = rotor_index_search(opened, &sp, f->base, D, K, ids, NULL);
    }
    if (st == ROTOR_OK)
        st = rotor_index_add(opened, &more);
    if (st == ROTOR_OK) {
        const int64_t added[] = {N, N + 1};
        const rotor_labels two = {off, val, 2};
        st = rotor_index_set_labels(opened, added, &two);
    }
    if (st == ROTOR_OK) {
        rotor_search_params sp = rotor_search_params_default();
        sp.threads = 2;
        rotor_matrix q = {f->base + N * D, 8, D, ROTOR_ELEM_F32};
        int64_t bids[8 * K];
        st = rotor_index_search_batch(opened, &sp, &q, K, bids, NULL);
    }
    rotor_index_close(opened);
    rotor_index_close(ix);
    return st;
}

static void test_every_allocation_fails_once(void **state) {
    fixture *f = *state;
    const config configs[] = {
        {"flat", ROTOR_INDEX_FLAT, NULL, NULL},
        {"flat tq4", ROTOR_INDEX_FLAT, "tq4", NULL},
        {"vamana pq4x4", ROTOR_INDEX_VAMANA, "pq4x4", NULL},
        {"vamana sq8 walking bin1fs", ROTOR_INDEX_VAMANA, "sq8", "bin1fs"},
        {"ivf bin2", ROTOR_INDEX_IVF, "bin2", NULL},
    };
    char *path = ts_path(f->dir, "cycle.rotor");
    for (size_t c = 0; c < sizeof configs / sizeof configs[0]; c++) {
        /* The file the failed cycles must leave alone: a small flat index. */
        rotor_params p0 = rotor_params_default();
        rotor_matrix m0 = {f->base, 10, D, ROTOR_ELEM_F32};
        rotor_index *ix0 = NULL;
        assert_int_equal(rotor_index_build(&p0, &m0, &ix0), ROTOR_OK);
        assert_int_equal(rotor_index_save(ix0, path), ROTOR_OK);
        rotor_index_close(ix0);
        size_t old_n;
        uint8_t *old = ts_read_file(path, &old_n);

        long at = 1, failures = 0;
        for (;; at++) {
            ts_counting_alloc ca = {0};
            ca.fail_at = at;
            bool saved;
            rotor_status st = cycle(f, &configs[c], path, ts_counting_allocator(&ca), &saved);
            assert_int_equal(ca.live, 0);
            if (st == ROTOR_OK)
                break;
            if (st != ROTOR_ERR_OUT_OF_MEMORY)
                fail_msg("%s, allocation %ld failing: status %d (%s)", configs[c].name, at, st,
                         rotor_last_error());
            failures++;
            if (!saved) {
                size_t n;
                uint8_t *now = ts_read_file(path, &n);
                assert_int_equal(n, old_n);
                assert_memory_equal(now, old, n);
                free(now);
            } else {
                /* Restore the old file for the next run. */
                ts_write_file(path, old, old_n);
            }
            assert_true(at < 20000);
        }
        print_message("%s: %ld allocations failed in turn, each reported and leak-free\n",
                      configs[c].name, failures);
        assert_true(failures > 10);
        free(old);
    }
    free(path);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_allocation_fails_once),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
