/*
 * A graph under a RAM budget (rotor_params.ram_budget, graph/vamana_disk.c):
 * a build with a budget writes node pages; an open within a budget too
 * small for the graph reads the records it expands from them (pread and
 * io_uring alike), keeps only the walking codes and a cache in RAM, and
 * returns exact distances of real neighbours at a recall near the graph's
 * in RAM; a budget that holds the graph opens it in RAM. What a graph on
 * disk cannot do (adds, consolidation, load) is refused with a sentence;
 * so are budgets below the codes and budgets on files without node pages.
 * Both record layouts: ids beside the vector with the walking codes in
 * RAM, and the neighbours' codes in the record with none in RAM. A resave
 * keeps the pages; verify checks them.
 */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support/support.h"

enum { N = 6000, NQ = 60, D = 32, K = 10, CLUSTERS = 50, BUDGET_PER_VECTOR = 40 };

typedef struct fixture {
    float *base, *queries;
    int64_t *gt;
    char *dir;
    char *budget_path, *plain_path, *own_codes_path;
} fixture;

static rotor_index *build(const fixture *f, uint64_t budget, int neighbor_codes) {
    rotor_params p = rotor_params_default();
    p.kind = ROTOR_INDEX_VAMANA;
    p.ram_budget = budget; /* quant "auto", as a user leaves it */
    if (neighbor_codes >= 0)
        p.neighbor_codes = neighbor_codes;
    p.graph_degree = 24;
    p.build_list = 48;
    p.threads = 2;
    rotor_matrix m = {f->base, N, D, ROTOR_ELEM_F32};
    rotor_index *ix = NULL;
    rotor_status st = rotor_index_build(&p, &m, &ix);
    if (st != ROTOR_OK)
        fail_msg("build: %s", rotor_last_error());
    return ix;
}

static int setup(void **state) {
    fixture *f = calloc(1, sizeof *f);
    ts_rng r;
    ts_rng_init(&r, 1605);
    f->base = malloc((N + NQ) * D * sizeof(float));
    f->queries = f->base + N * D;
    ts_fill_clustered(&r, f->base, N + NQ, D, CLUSTERS, 3.0f);
    f->gt = malloc(NQ * K * sizeof *f->gt);
    double *gd = malloc(NQ * K * sizeof *gd);
    ts_brute_force(f->base, N, f->queries, NQ, D, ROTOR_METRIC_L2, K, f->gt, gd);
    free(gd);
    f->dir = ts_tmpdir_create();
    f->budget_path = ts_path(f->dir, "budget.rotor");
    f->plain_path = ts_path(f->dir, "plain.rotor");
    f->own_codes_path = ts_path(f->dir, "own_codes.rotor");
    rotor_index *ix = build(f, (uint64_t)BUDGET_PER_VECTOR * N, -1);
    assert_int_equal(rotor_index_save(ix, f->budget_path), ROTOR_OK);
    rotor_index_close(ix);
    ix = build(f, (uint64_t)BUDGET_PER_VECTOR * N, 0);
    assert_int_equal(rotor_index_save(ix, f->own_codes_path), ROTOR_OK);
    rotor_index_close(ix);
    ix = build(f, 0, -1);
    assert_int_equal(rotor_index_save(ix, f->plain_path), ROTOR_OK);
    rotor_index_close(ix);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    free(f->base);
    free(f->gt);
    free(f->budget_path);
    free(f->plain_path);
    free(f->own_codes_path);
    ts_tmpdir_remove(f->dir);
    free(f);
    return 0;
}

static rotor_status open_budget(const char *path, uint64_t budget, rotor_io_backend io,
                                rotor_index **ix) {
    rotor_open_params op = rotor_open_params_default();
    op.ram_budget = budget;
    op.io = io;
    *ix = NULL;
    return rotor_index_open(path, &op, ix);
}

static double recall(const fixture *f, const int64_t *ids) {
    size_t hit = 0;
    for (size_t q = 0; q < NQ; q++)
        for (size_t i = 0; i < K; i++)
            for (size_t j = 0; j < K; j++)
                hit += ids[q * K + i] == f->gt[q * K + j];
    return (double)hit / (NQ * K);
}

static void search_all(const fixture *f, const rotor_index *ix, uint32_t list, uint32_t beam,
                       int64_t *ids, float *dists, rotor_query_stats *qs) {
    rotor_search_params sp = rotor_search_params_default();
    sp.threads = 2; /* two searches at once, each with its own reader */
    sp.list_size = list;
    sp.beam_width = beam;
    sp.stats = qs;
    rotor_matrix q = {f->queries, NQ, D, ROTOR_ELEM_F32};
    rotor_status st = rotor_index_search_batch(ix, &sp, &q, K, ids, dists);
    if (st != ROTOR_OK)
        fail_msg("search: %s", rotor_last_error());
}

static bool uring_permitted(const char *path) {
    rotor_index *ix = NULL;
    bool ok = open_budget(path, 0, ROTOR_IO_URING, &ix) == ROTOR_OK;
    rotor_index_close(ix);
    return ok;
}

/* Opened as built: the graph is on disk, RAM holds the codes (or, with
 * neighbour codes in the records, none) and a cache within the budget, and
 * every result is a real neighbour at its exact distance, whichever
 * backend reads the records. */
static void graph_on_disk(const fixture *f, const char *path, bool codes_in_ram) {
    int64_t want_ids[NQ * K], ids[NQ * K];
    float want_d[NQ * K], dists[NQ * K];
    rotor_query_stats qs[NQ];
    const rotor_io_backend ios[] = {ROTOR_IO_PREAD, ROTOR_IO_URING};
    for (size_t b = 0; b < 2; b++) {
        if (ios[b] == ROTOR_IO_URING && !uring_permitted(path)) {
            print_message("io_uring not permitted here (%s): only pread checked\n",
                          rotor_last_error());
            continue;
        }
        rotor_index *ix;
        assert_int_equal(open_budget(path, 0, ios[b], &ix), ROTOR_OK);
        rotor_index_stats s;
        assert_int_equal(rotor_index_stats_get(ix, &s), ROTOR_OK);
        assert_int_equal(s.bytes_codes > 0, codes_in_ram);
        assert_true(s.graph_on_disk > 0);
        assert_true(s.graph_cached > 0);
        assert_int_equal(s.graph_on_disk + s.graph_cached, N);
        assert_int_equal(s.copied, 0); /* the default open copies no graph kept on disk */
        assert_int_equal(s.vectors_on_disk, 1);
        assert_int_equal(s.bytes_vectors, 0);
        /* What the search keeps in RAM stays within the budget. */
        assert_true(s.bytes_codes + s.bytes_graph + s.bytes_graph_codes <=
                    (size_t)BUDGET_PER_VECTOR * N);
        memset(qs, 0xff, sizeof qs);
        search_all(f, ix, 48, 4, ids, dists, qs);
        for (size_t q = 0; q < NQ; q++) {
            assert_true(qs[q].reads > 0 && qs[q].reads <= 48 + 4);
            assert_true(qs[q].io_seconds >= 0 && qs[q].io_seconds < 10);
            for (size_t i = 0; i < K; i++) {
                const float *x = f->base + ids[q * K + i] * D, *y = f->queries + q * D;
                double e = 0;
                for (size_t j = 0; j < D; j++)
                    e += ((double)x[j] - y[j]) * ((double)x[j] - y[j]);
                assert_true(fabs(e - dists[q * K + i]) <= 1e-3 * (1 + e));
            }
        }
        const double r = recall(f, ids);
        if (r < 0.9)
            fail_msg("recall@10 %.3f with the graph on disk", r);
        if (b == 0) {
            memcpy(want_ids, ids, sizeof ids);
            memcpy(want_d, dists, sizeof dists);
        } else {
            assert_memory_equal(ids, want_ids, sizeof ids);
            assert_memory_equal(dists, want_d, sizeof dists);
        }
        /* A longer list and a wider beam read more and find no less. */
        rotor_query_stats wide[NQ];
        int64_t ids2[NQ * K];
        search_all(f, ix, 96, 8, ids2, dists, wide);
        uint64_t short_reads = 0, long_reads = 0;
        for (size_t q = 0; q < NQ; q++) {
            short_reads += qs[q].reads;
            long_reads += wide[q].reads;
        }
        assert_true(long_reads > short_reads);
        assert_true(recall(f, ids2) >= r - 0.01);
        rotor_index_close(ix);
    }
}

static void test_graph_on_disk(void **state) {
    const fixture *f = *state;
    graph_on_disk(f, f->budget_path, false);
    graph_on_disk(f, f->own_codes_path, true);
}

/* A budget that holds the graph opens it in RAM, as does a file built
 * without one; the searches agree closely with the graph on disk. */
static void test_budget_that_holds_the_graph(void **state) {
    fixture *f = *state;
    const uint64_t budgets[] = {ROTOR_RAM_UNLIMITED, (uint64_t)1 << 30};
    for (size_t i = 0; i < 2; i++) {
        rotor_index *ix;
        assert_int_equal(open_budget(f->budget_path, budgets[i], ROTOR_IO_AUTO, &ix), ROTOR_OK);
        rotor_index_stats s;
        rotor_index_stats_get(ix, &s);
        assert_int_equal(s.graph_on_disk, 0);
        assert_int_equal(s.copied, 1); /* in RAM, small: the default open copies it */
        int64_t ids[NQ * K];
        float dists[NQ * K];
        search_all(f, ix, 48, 0, ids, dists, NULL);
        assert_true(recall(f, ids) >= 0.9);
        rotor_index_close(ix);
    }
}

static void test_refusals(void **state) {
    fixture *f = *state;
    rotor_index *ix;
    /* Below the walking codes alone. */
    TS_CHECK_ERROR(open_budget(f->budget_path, 1000, ROTOR_IO_AUTO, &ix),
                   ROTOR_ERR_INVALID_ARGUMENT, f->budget_path, "budget", "starting points");
    TS_CHECK_ERROR(open_budget(f->own_codes_path, 1000, ROTOR_IO_AUTO, &ix),
                   ROTOR_ERR_INVALID_ARGUMENT, f->own_codes_path, "budget", "walking codes");
    assert_null(ix);
    /* A file built without a budget has no pages to read records from. */
    TS_CHECK_ERROR(open_budget(f->plain_path, (uint64_t)BUDGET_PER_VECTOR * N, ROTOR_IO_AUTO, &ix),
                   ROTOR_ERR_UNSUPPORTED, f->plain_path, "node pages");
    assert_null(ix);
    /* Load would copy the graph into memory. */
    rotor_open_params op = rotor_open_params_default();
    op.load = 1;
    TS_CHECK_ERROR(rotor_index_open(f->budget_path, &op, &ix), ROTOR_ERR_UNSUPPORTED, NULL, "disk");
    assert_null(ix);

    assert_int_equal(open_budget(f->budget_path, 0, ROTOR_IO_AUTO, &ix), ROTOR_OK);
    rotor_matrix one = {f->queries, 1, D, ROTOR_ELEM_F32};
    TS_CHECK_ERROR(rotor_index_add(ix, &one), ROTOR_ERR_UNSUPPORTED, NULL, "disk");
    const int64_t gone[] = {f->gt[0], f->gt[1]};
    assert_int_equal(rotor_index_remove(ix, gone, 2), ROTOR_OK);
    TS_CHECK_ERROR(rotor_index_consolidate(ix), ROTOR_ERR_UNSUPPORTED, NULL, "disk");
    /* Removed vectors are never returned, though the walk reads them. */
    int64_t ids[NQ * K];
    search_all(f, ix, 48, 0, ids, NULL, NULL);
    for (size_t i = 0; i < NQ * K; i++)
        assert_true(ids[i] != gone[0] && ids[i] != gone[1]);
    /* No calibration table: a search by recall says so. */
    rotor_search_params sp = rotor_search_params_default();
    sp.target_recall = 0.9f;
    int64_t one_id[K];
    TS_CHECK_ERROR(rotor_index_search(ix, &sp, f->queries, D, K, one_id, NULL),
                   ROTOR_ERR_UNSUPPORTED, NULL, "calibrat");
    sp = rotor_search_params_default();
    sp.beam_width = 65;
    TS_CHECK_ERROR(rotor_index_search(ix, &sp, f->queries, D, K, one_id, NULL),
                   ROTOR_ERR_INVALID_ARGUMENT, NULL, "beam_width");
    rotor_index_close(ix);

    /* Build parameters: graphs only, and with codes. */
    rotor_params p = rotor_params_default();
    p.kind = ROTOR_INDEX_FLAT;
    p.ram_budget = 1 << 20;
    TS_CHECK_ERROR(rotor_params_check(&p), ROTOR_ERR_INVALID_ARGUMENT, NULL, "vamana");
    p.kind = ROTOR_INDEX_VAMANA;
    p.quant = "none";
    TS_CHECK_ERROR(rotor_params_check(&p), ROTOR_ERR_INVALID_ARGUMENT, NULL, "quantizer");
}

/* A graph on disk saved again keeps its pages (copied from its file);
 * verify passes on both files and fails on a damaged page. */
static void test_resave_and_verify(void **state) {
    fixture *f = *state;
    rotor_index *ix;
    assert_int_equal(open_budget(f->budget_path, 0, ROTOR_IO_AUTO, &ix), ROTOR_OK);
    int64_t want[NQ * K], got[NQ * K];
    search_all(f, ix, 48, 0, want, NULL, NULL);
    char *again = ts_path(f->dir, "again.rotor");
    assert_int_equal(rotor_index_save(ix, again), ROTOR_OK);
    rotor_index_close(ix);
    assert_int_equal(rotor_index_verify(f->budget_path), ROTOR_OK);
    assert_int_equal(rotor_index_verify(again), ROTOR_OK);
    assert_int_equal(open_budget(again, 0, ROTOR_IO_AUTO, &ix), ROTOR_OK);
    rotor_index_stats s;
    rotor_index_stats_get(ix, &s);
    assert_true(s.graph_on_disk > 0);
    search_all(f, ix, 48, 0, got, NULL, NULL);
    assert_memory_equal(got, want, sizeof want);
    rotor_index_close(ix);

    /* Opened with the graph in RAM (its vectors still on disk) and saved:
     * the pages are written again from the records and the file's vectors,
     * and the new file opens on disk as the old did. */
    assert_int_equal(open_budget(f->budget_path, ROTOR_RAM_UNLIMITED, ROTOR_IO_AUTO, &ix),
                     ROTOR_OK);
    char *from_ram = ts_path(f->dir, "from_ram.rotor");
    assert_int_equal(rotor_index_save(ix, from_ram), ROTOR_OK);
    rotor_index_close(ix);
    assert_int_equal(open_budget(from_ram, 0, ROTOR_IO_AUTO, &ix), ROTOR_OK);
    rotor_index_stats_get(ix, &s);
    assert_true(s.graph_on_disk > 0);
    search_all(f, ix, 48, 0, got, NULL, NULL);
    assert_memory_equal(got, want, sizeof want);
    rotor_index_close(ix);
    assert_int_equal(rotor_index_verify(from_ram), ROTOR_OK);
    free(from_ram);

    /* A byte of a record flipped: the nodes section's checksum. Its place
     * from the section table (storage/FORMAT.md: entries of 32 bytes from
     * byte 256, the count at 20). */
    size_t n;
    uint8_t *bytes = ts_read_file(again, &n);
    uint32_t sections;
    memcpy(&sections, bytes + 20, 4);
    uint64_t at = 0;
    for (uint32_t i = 0; i < sections; i++) {
        uint32_t id;
        memcpy(&id, bytes + 256 + 32 * i, 4);
        if (id == 16) /* nodes */
            memcpy(&at, bytes + 256 + 32 * i + 8, 8);
    }
    assert_true(at > 0 && at + 5000 < n);
    bytes[at + 4096 + 200] ^= 0x40; /* past the header page: the first records */
    ts_write_file(again, bytes, n);
    free(bytes);
    TS_CHECK_ERROR(rotor_index_verify(again), ROTOR_ERR_CORRUPT, again, "nodes");
    free(again);
}

/* quant "auto" under a budget, as rotor.h says: from 256 dimensions 2-bit
 * rotated codes in the pages (in RAM: 2 bits where half the budget holds
 * them, else 1 bit, else PQ); below, the PQ that fills half the budget
 * (codes in RAM) or what a page leaves (codes in the pages). */
static void test_codes_chosen_by_the_budget(void **state) {
    (void)state;
    enum { ROWS = 600, WIDE = 256 };
    float *x = malloc((size_t)ROWS * WIDE * sizeof *x);
    ts_rng r;
    ts_rng_init(&r, 77);
    for (size_t i = 0; i < (size_t)ROWS * WIDE; i++)
        x[i] = (float)ts_rng_normal(&r);
    const struct {
        size_t dim;
        uint64_t per_vector;
        int neighbor_codes;
        const char *want;
    } cases[] = {
        {WIDE, 40, 1, "bin2fs"}, /* in the pages, whatever the budget */
        {WIDE, 400, 0, "bin2fs"}, {WIDE, 120, 0, "bin1fs"}, {WIDE, 80, 0, "pq32"},
        {32, 40, 0, "pq16"},      {32, 40, 1, "pq32"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        rotor_params p = rotor_params_default();
        p.kind = ROTOR_INDEX_VAMANA;
        p.ram_budget = cases[c].per_vector * ROWS;
        p.neighbor_codes = cases[c].neighbor_codes;
        p.threads = 1;
        rotor_matrix m = {x, ROWS, cases[c].dim, ROTOR_ELEM_F32};
        rotor_index *ix = NULL;
        assert_int_equal(rotor_index_build(&p, &m, &ix), ROTOR_OK);
        rotor_index_stats s;
        rotor_index_stats_get(ix, &s);
        if (strcmp(s.quant, cases[c].want) != 0)
            fail_msg("%zu-d, %llu bytes a vector, neighbour codes %d: %s, not %s", cases[c].dim,
                     (unsigned long long)cases[c].per_vector, cases[c].neighbor_codes, s.quant,
                     cases[c].want);
        assert_int_equal(s.graph_degree, 64);
        rotor_index_close(ix);
    }
    free(x);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_graph_on_disk),
        cmocka_unit_test(test_budget_that_holds_the_graph),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_resave_and_verify),
        cmocka_unit_test(test_codes_chosen_by_the_budget),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
