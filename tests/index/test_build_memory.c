/*
 * A graph build within a memory cap (rotor_params.build_memory,
 * graph/vamana_shards.c): a cap below what the build needs in one piece
 * splits it into overlapping shards, built one at a time and merged, and
 * the merged graph searches about as well as the one built in one piece,
 * built from a matrix (records in memory) or from a file under a RAM
 * budget (records in a file beside the output, node pages written from
 * them). A cap too small for any shard is refused with the smallest cap
 * that would do; so is a cap on an index kind without a graph, and on a
 * graph linked on decoded codes. A cancelled build in shards stops and
 * leaks nothing.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support/support.h"

enum { N = 12000, NQ = 200, D = 32, K = 10, CLUSTERS = 60, LIST = 24 };

typedef struct fixture {
    float *base, *queries;
    int64_t *gt;
    char *dir, *base_path;
} fixture;

static int setup(void **state) {
    fixture *f = calloc(1, sizeof *f);
    ts_rng r;
    ts_rng_init(&r, 1812);
    f->base = malloc((N + NQ) * D * sizeof(float));
    f->queries = f->base + N * D;
    ts_fill_clustered(&r, f->base, N + NQ, D, CLUSTERS, 3.0f);
    f->gt = malloc(NQ * K * sizeof *f->gt);
    double *gd = malloc(NQ * K * sizeof *gd);
    ts_brute_force(f->base, N, f->queries, NQ, D, ROTOR_METRIC_L2, K, f->gt, gd);
    free(gd);
    f->dir = ts_tmpdir_create();
    f->base_path = ts_path(f->dir, "base.fbin");
    /* .fbin: u32 rows, u32 columns, then the rows. */
    const size_t bytes = 8 + (size_t)N * D * sizeof(float);
    uint8_t *file = malloc(bytes);
    const uint32_t head[2] = {N, D};
    memcpy(file, head, 8);
    memcpy(file + 8, f->base, (size_t)N * D * sizeof(float));
    ts_write_file(f->base_path, file, bytes);
    free(file);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    free(f->base);
    free(f->gt);
    free(f->base_path);
    ts_tmpdir_remove(f->dir);
    free(f);
    return 0;
}

static rotor_params graph_params(uint64_t build_memory) {
    rotor_params p = rotor_params_default();
    p.kind = ROTOR_INDEX_VAMANA;
    p.quant = "none";
    p.graph_degree = 24;
    p.build_list = 48;
    p.threads = 2;
    p.calibrate = 0;
    p.build_memory = build_memory;
    return p;
}

static double recall(const fixture *f, const rotor_index *ix) {
    rotor_search_params sp = rotor_search_params_default();
    sp.list_size = LIST;
    rotor_matrix q = {f->queries, NQ, D, ROTOR_ELEM_F32};
    int64_t ids[NQ * K];
    float dists[NQ * K];
    assert_int_equal(rotor_index_search_batch(ix, &sp, &q, K, ids, dists), ROTOR_OK);
    size_t hit = 0;
    for (size_t i = 0; i < NQ * K; i++)
        for (size_t j = 0; j < K; j++)
            hit += ids[i] == f->gt[(i / K) * K + j];
    return (double)hit / (NQ * K);
}

/* The smallest cap the build accepts, read from its refusal of 1 byte:
 * the sentence names it. */
static uint64_t least_cap(const rotor_params *base, const fixture *f, const char *out) {
    rotor_params p = *base;
    p.build_memory = 1;
    rotor_status st;
    if (out != NULL) {
        st = rotor_index_build_file(&p, f->base_path, out);
    } else {
        rotor_matrix m = {f->base, N, D, ROTOR_ELEM_F32};
        rotor_index *ix = NULL;
        st = rotor_index_build(&p, &m, &ix);
        assert_null(ix);
    }
    const char *words[] = {"build memory", "too small", "at least", NULL};
    ts_check_error(st, ROTOR_ERR_INVALID_ARGUMENT, NULL, words);
    const char *at = strstr(rotor_last_error(), "at least ");
    unsigned long long least = 0;
    assert_int_equal(sscanf(at, "at least %llu", &least), 1);
    assert_true(least > 0);
    return least;
}

static void test_shards_from_a_matrix(void **state) {
    const fixture *f = *state;
    rotor_matrix m = {f->base, N, D, ROTOR_ELEM_F32};
    rotor_params p = graph_params(0);
    /* With the calibration, rows are held out of the build in shards and
     * inserted into the merged graph after it. */
    p.calibrate = 1;
    rotor_index *whole = NULL;
    assert_int_equal(rotor_index_build(&p, &m, &whole), ROTOR_OK);
    rotor_index_stats s;
    rotor_index_stats_get(whole, &s);
    assert_int_equal(s.build_shards, 0);
    const double r_whole = recall(f, whole);

    /* Half again the least: several shards of a few thousand points
     * (records in memory make the build in one piece only about 1.6
     * times the least here). */
    const uint64_t least = least_cap(&p, f, NULL);
    p.build_memory = least + least / 2;
    /* On one thread, so the bar below measures one fixed graph: a sharded
     * build's recall here depends on the order the points go in (20
     * shards of about 1,200 points: with two threads, which interleave
     * differently each run, 0.961-0.996; on one thread 0.987 every time,
     * and 0.952-0.996 over build seeds 1000-1005). The file test below
     * keeps two threads. */
    p.threads = 1;
    rotor_index *sharded = NULL;
    assert_int_equal(rotor_index_build(&p, &m, &sharded), ROTOR_OK);
    rotor_index_stats_get(sharded, &s);
    assert_true(s.build_shards >= 2);
    assert_int_equal(s.count, N);
    /* Saved and verified: every record's degree and ids check. */
    char *path = ts_path(f->dir, "from_matrix.rotor");
    assert_int_equal(rotor_index_save(sharded, path), ROTOR_OK);
    assert_int_equal(rotor_index_verify(path), ROTOR_OK);
    free(path);
    const double r_sharded = recall(f, sharded);
    if (r_sharded < r_whole - 0.03 || r_sharded < 0.9)
        fail_msg("recall@%d in %zu shards %.3f, in one piece %.3f", K, s.build_shards, r_sharded,
                 r_whole);

    /* A cap the build in one piece fits: no shards, the same graph. */
    p.build_memory = (uint64_t)1 << 40;
    p.threads = 2;
    rotor_index *roomy = NULL;
    assert_int_equal(rotor_index_build(&p, &m, &roomy), ROTOR_OK);
    rotor_index_stats_get(roomy, &s);
    assert_int_equal(s.build_shards, 0);
    rotor_index_close(roomy);
    rotor_index_close(sharded);
    rotor_index_close(whole);
}

/* From a file under a RAM budget, as a set larger than memory is built:
 * the node pages are written from the merged records, and the file opened
 * under the budget says how many shards built it. */
static void test_shards_from_a_file(void **state) {
    const fixture *f = *state;
    char *one = ts_path(f->dir, "one.rotor"), *sharded = ts_path(f->dir, "sharded.rotor");
    rotor_params p = graph_params(0);
    p.quant = "auto";
    p.ram_budget = (uint64_t)48 * N;
    assert_int_equal(rotor_index_build_file(&p, f->base_path, one), ROTOR_OK);
    /* The least named before the build counts no codes: twice it leaves
     * room for them and still splits the build. */
    const uint64_t least = least_cap(&p, f, sharded);
    p.build_memory = 2 * least;
    assert_int_equal(rotor_index_build_file(&p, f->base_path, sharded), ROTOR_OK);

    double r[2];
    const char *paths[2] = {one, sharded};
    for (int i = 0; i < 2; i++) {
        rotor_open_params op = rotor_open_params_default();
        op.io = ROTOR_IO_PREAD;
        rotor_index *ix = NULL;
        assert_int_equal(rotor_index_open(paths[i], &op, &ix), ROTOR_OK);
        rotor_index_stats s;
        rotor_index_stats_get(ix, &s);
        assert_true(s.graph_on_disk > 0);
        if (i == 0)
            assert_int_equal(s.build_shards, 0);
        else
            assert_true(s.build_shards >= 3);
        r[i] = recall(f, ix);
        rotor_index_close(ix);
    }
    if (r[1] < r[0] - 0.03 || r[1] < 0.85)
        fail_msg("recall@%d on disk in shards %.3f, in one piece %.3f", K, r[1], r[0]);

    /* Opened with the graph in RAM, every record checks. */
    assert_int_equal(rotor_index_verify(sharded), ROTOR_OK);
    free(one);
    free(sharded);
}

static void test_refusals(void **state) {
    const fixture *f = *state;
    rotor_matrix m = {f->base, N, D, ROTOR_ELEM_F32};
    rotor_index *ix = NULL;
    rotor_params p = graph_params(1 << 20);
    p.kind = ROTOR_INDEX_IVF;
    p.quant = "pq8";
    const char *ivf[] = {"build memory", "vamana", NULL};
    ts_check_error(rotor_index_build(&p, &m, &ix), ROTOR_ERR_INVALID_ARGUMENT, NULL, ivf);
    assert_null(ix);
    p = graph_params(1 << 20);
    p.quant = "pq8";
    p.build_space = ROTOR_BUILD_CODES;
    const char *codes[] = {"memory cap", "full vectors", NULL};
    ts_check_error(rotor_index_build(&p, &m, &ix), ROTOR_ERR_INVALID_ARGUMENT, NULL, codes);
    assert_null(ix);
    assert_int_equal(rotor_params_check(&p), ROTOR_ERR_INVALID_ARGUMENT);
}

static int cancel_after(void *opaque, uint64_t done, uint64_t total) {
    (void)total;
    return done >= *(uint64_t *)opaque;
}

static void test_cancel(void **state) {
    const fixture *f = *state;
    rotor_matrix m = {f->base, N, D, ROTOR_ELEM_F32};
    rotor_params p = graph_params(0);
    const uint64_t least = least_cap(&p, f, NULL);
    p.build_memory = least + least / 4;
    uint64_t stop = N / 2; /* a few shards in */
    p.progress = cancel_after;
    p.progress_opaque = &stop;
    rotor_index *ix = NULL;
    const char *words[] = {"cancelled", NULL};
    ts_check_error(rotor_index_build(&p, &m, &ix), ROTOR_ERR_CANCELLED, NULL, words);
    assert_null(ix);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shards_from_a_matrix),
        cmocka_unit_test(test_shards_from_a_file),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_cancel),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
