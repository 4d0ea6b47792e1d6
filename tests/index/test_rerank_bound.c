/*
 * The rerank that stops on the quantizer's error bound (graph/rerank.c,
 * quant.h "error bounds of estimates"): for every kind (flat, vamana with
 * and without a refining quantizer, IVF), quantizer with a bound and
 * metric, its top k equal those of scoring every candidate, id for id and
 * distance for distance, with vectors in RAM and on disk (pread and
 * io_uring, any window of reads in flight), single and batch searches; it
 * scores no more candidates, and for fine codes far fewer; on disk every
 * vector scored is one read. Quantizers without a bound, files written before
 * residuals were kept, and searches that ask for every candidate score the
 * whole depth. A residual damaged on disk fails verify.
 */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "support/support.h"

enum { N = 2000, NQ = 40, D = 32, K = 10, DEPTH = 60, CLUSTERS = 40 };

typedef struct fixture {
    float *base, *queries;
    char *dir;
} fixture;

static int setup(void **state) {
    fixture *f = calloc(1, sizeof *f);
    ts_rng r;
    ts_rng_init(&r, 1207);
    float centres[CLUSTERS * D];
    for (size_t i = 0; i < CLUSTERS * D; i++)
        centres[i] = (float)ts_rng_normal(&r) + 2.0f;
    f->base = malloc((N + NQ) * D * sizeof(float));
    f->queries = f->base + N * D;
    for (size_t i = 0; i < N + NQ; i++) {
        const float *c = centres + (ts_rng_next(&r) % CLUSTERS) * D;
        for (size_t j = 0; j < D; j++)
            f->base[i * D + j] = c[j] + 0.4f * (float)ts_rng_normal(&r);
    }
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
    rotor_index_kind kind;
    rotor_metric metric;
    const char *quant, *walk_quant;
    int neighbor_codes;
    bool bound; /* the quantizer has one */
    /* Fine codes: the bound must spare most of the depth. (On these
     * uncentred clusters cosine's 8-bit grid spends itself on the common
     * direction: sq8 under cosine spares about a third.) */
    bool strong;
} config;

static const config configs[] = {
    {ROTOR_INDEX_FLAT, ROTOR_METRIC_L2, "sq8", NULL, 0, true, true},
    {ROTOR_INDEX_FLAT, ROTOR_METRIC_IP, "pq16x4", NULL, 0, true, false},
    {ROTOR_INDEX_FLAT, ROTOR_METRIC_COSINE, "tq4", NULL, 0, true, false},
    {ROTOR_INDEX_FLAT, ROTOR_METRIC_L2, "pq16", NULL, 0, true, false},
    {ROTOR_INDEX_FLAT, ROTOR_METRIC_IP, "tqip3", NULL, 0, true, false},
    {ROTOR_INDEX_FLAT, ROTOR_METRIC_L2, "bin2", NULL, 0, false, false},
    {ROTOR_INDEX_VAMANA, ROTOR_METRIC_COSINE, "sq8", NULL, 1, true, false},
    {ROTOR_INDEX_VAMANA, ROTOR_METRIC_L2, "pq16x4", NULL, 1, true, false},
    {ROTOR_INDEX_VAMANA, ROTOR_METRIC_IP, "tq8", NULL, 0, true, true},
    {ROTOR_INDEX_VAMANA, ROTOR_METRIC_L2, "sq8", "bin1fs", 1, true, true},
    {ROTOR_INDEX_VAMANA, ROTOR_METRIC_COSINE, "bin1fs", NULL, 1, false, false},
    {ROTOR_INDEX_IVF, ROTOR_METRIC_IP, "sq8", NULL, 0, true, true},
    {ROTOR_INDEX_IVF, ROTOR_METRIC_COSINE, "pq16x4", NULL, 0, true, false},
    {ROTOR_INDEX_IVF, ROTOR_METRIC_L2, "tq4", NULL, 0, true, false},
};
enum { NCONFIGS = sizeof configs / sizeof configs[0] };

static rotor_index *build(const fixture *f, const config *c, rotor_vectors_place place) {
    rotor_params p = rotor_params_default();
    p.kind = c->kind;
    p.metric = c->metric;
    p.quant = c->quant;
    p.walk_quant = c->walk_quant;
    p.neighbor_codes = c->neighbor_codes;
    p.graph_degree = 16;
    p.build_list = 40;
    p.nlist = 20;
    p.threads = 1;
    p.full_vectors = place;
    rotor_matrix m = {f->base, N, D, ROTOR_ELEM_F32};
    rotor_index *ix = NULL;
    assert_int_equal(rotor_index_build(&p, &m, &ix), ROTOR_OK);
    return ix;
}

static rotor_search_params params(int all, unsigned window) {
    rotor_search_params sp = rotor_search_params_default();
    sp.threads = 1;
    sp.rerank = DEPTH;
    sp.list_size = 40; /* a rerank deeper than the list: vamana's pool */
    sp.nprobe = 4;
    sp.refine = 120;
    sp.rerank_all = all;
    sp.rerank_window = window;
    return sp;
}

/* Every query searched one at a time: ids, distances and stats. */
static void search_each(const fixture *f, const rotor_index *ix, rotor_search_params sp,
                        int64_t *ids, float *dists, rotor_query_stats *qs) {
    for (size_t i = 0; i < NQ; i++) {
        sp.stats = qs + i;
        rotor_status st =
            rotor_index_search(ix, &sp, f->queries + i * D, D, K, ids + i * K, dists + i * K);
        if (st != ROTOR_OK)
            fail_msg("search: %s", rotor_last_error());
    }
}

static size_t total(const rotor_query_stats *qs, bool reads) {
    size_t s = 0;
    for (size_t i = 0; i < NQ; i++)
        s += reads ? qs[i].reads : qs[i].reranked;
    return s;
}

static const char *name_of(const config *c, char *buf, size_t n) {
    snprintf(buf, n, "%s %s %s%s%s", rotor_index_kind_name(c->kind), rotor_metric_name(c->metric),
             c->quant, c->walk_quant ? "+" : "", c->walk_quant ? c->walk_quant : "");
    return buf;
}

/* The results with the bound equal those of scoring every candidate. */
static void assert_same(const config *c, const int64_t *ids, const float *d, const int64_t *ids0,
                        const float *d0, const char *what) {
    char name[96];
    for (size_t i = 0; i < NQ * K; i++)
        if (ids[i] != ids0[i] || memcmp(&d[i], &d0[i], sizeof(float)) != 0)
            fail_msg("%s (%s): query %zu rank %zu: id %lld distance %.9g, every candidate gives "
                     "id %lld distance %.9g",
                     name_of(c, name, sizeof name), what, i / K, i % K, (long long)ids[i],
                     (double)d[i], (long long)ids0[i], (double)d0[i]);
}

static void test_bound_equals_all_in_ram(void **state) {
    fixture *f = *state;
    int64_t ids0[NQ * K], ids[NQ * K], idsb[NQ * K];
    float d0[NQ * K], d[NQ * K], db[NQ * K];
    rotor_query_stats q0[NQ], q1[NQ], qb[NQ];
    for (size_t c = 0; c < NCONFIGS; c++) {
        const config *cf = &configs[c];
        rotor_index *ix = build(f, cf, ROTOR_VECTORS_RAM);
        search_each(f, ix, params(1, 0), ids0, d0, q0);
        search_each(f, ix, params(0, 0), ids, d, q1);
        assert_same(cf, ids, d, ids0, d0, "RAM");
        /* The batch search answers alike, with the same stats. */
        rotor_search_params sp = params(0, 0);
        sp.threads = 2;
        sp.stats = qb;
        rotor_matrix q = {f->queries, NQ, D, ROTOR_ELEM_F32};
        assert_int_equal(rotor_index_search_batch(ix, &sp, &q, K, idsb, db), ROTOR_OK);
        assert_same(cf, idsb, db, ids0, d0, "batch");
        const size_t all = total(q0, false), bounded = total(q1, false);
        assert_int_equal(total(qb, false), bounded);
        assert_int_equal(total(q1, true), 0); /* nothing on disk */
        char name[96];
        print_message("%-34s scored %5.1f of %5.1f per query\n", name_of(cf, name, sizeof name),
                      (double)bounded / NQ, (double)all / NQ);
        assert_int_equal(all, (size_t)NQ * DEPTH);
        if (!cf->bound)
            assert_int_equal(bounded, all);
        assert_true(bounded <= all);
        assert_true(bounded >= (size_t)NQ * K);
        if (cf->strong)
            assert_true(bounded < all / 2);
        rotor_index_close(ix);
    }
}

static rotor_index *open_disk(const char *path, rotor_io_backend io) {
    rotor_open_params op = rotor_open_params_default();
    op.vectors = ROTOR_VECTORS_DISK;
    op.io = io;
    rotor_index *ix = NULL;
    return rotor_index_open(path, &op, &ix) == ROTOR_OK ? ix : NULL;
}

/* On disk: the same answers as in RAM, one read per vector scored; read
 * one at a time (pread) exactly the candidates the RAM rerank scored. */
static void test_bound_on_disk(void **state) {
    fixture *f = *state;
    static const size_t which[] = {0, 2, 6, 7, 9, 10, 11, 12};
    int64_t ids0[NQ * K], ids_ram[NQ * K], ids[NQ * K];
    float d0[NQ * K], d_ram[NQ * K], d[NQ * K];
    rotor_query_stats q0[NQ], q_ram[NQ], qs[NQ];
    bool uring_tried = false;
    for (size_t w = 0; w < sizeof which / sizeof which[0]; w++) {
        const config *cf = &configs[which[w]];
        rotor_index *built = build(f, cf, ROTOR_VECTORS_DISK);
        search_each(f, built, params(1, 0), ids0, d0, q0);
        search_each(f, built, params(0, 0), ids_ram, d_ram, q_ram);
        char *path = ts_path(f->dir, "disk.rotor");
        assert_int_equal(rotor_index_save(built, path), ROTOR_OK);
        rotor_index_close(built);
        const rotor_io_backend ios[] = {ROTOR_IO_PREAD, ROTOR_IO_URING};
        for (size_t b = 0; b < 2; b++) {
            rotor_index *ix = open_disk(path, ios[b]);
            if (ix == NULL) {
                assert_int_equal(ios[b], ROTOR_IO_URING);
                if (!uring_tried)
                    print_message("io_uring is not permitted here: %s\n", rotor_last_error());
                uring_tried = true;
                continue;
            }
            search_each(f, ix, params(1, 0), ids, d, qs);
            assert_same(cf, ids, d, ids0, d0, "disk, every candidate");
            assert_int_equal(total(qs, true), (size_t)NQ * DEPTH);
            const unsigned windows[] = {1, 3, 64};
            for (size_t wi = 0; wi < 3; wi++) {
                search_each(f, ix, params(0, windows[wi]), ids, d, qs);
                assert_same(cf, ids, d, ids0, d0, "disk, bound");
                for (size_t i = 0; i < NQ; i++) {
                    assert_int_equal(qs[i].reads, qs[i].reranked);
                    assert_true(qs[i].reads <= DEPTH);
                    /* pread reads one row at a time, deciding on each as
                     * the RAM rerank does; io_uring reads ahead the ones
                     * the bound will likely need, and then a window. */
                    if (ios[b] == ROTOR_IO_PREAD)
                        assert_int_equal(qs[i].reads, q_ram[i].reranked);
                    else
                        assert_true(qs[i].reads >= q_ram[i].reranked);
                }
            }
            rotor_index_close(ix);
        }
        free(path);
    }
}

/* The corpus of the fuzz target holds files written before residuals were
 * kept: they open, verify and search, scoring the whole depth, and a save
 * of such an index (even after adds) still has no bound. */
static void test_old_files_fixed_depth(void **state) {
    fixture *f = *state;
    (void)f;
    const char *names[] = {"old_vamana_pq4x4_cos.rotor", "old_flat_tq4_ip.rotor",
                           "old_vamana_walk.rotor", "old_vamana_bin1fs_sq8.rotor"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", ROTOR_INDEX_CORPUS, names[i]);
        if (rotor_index_verify(path) != ROTOR_OK)
            fail_msg("verify %s: %s", path, rotor_last_error());
        rotor_open_params op = rotor_open_params_default();
        op.vectors = ROTOR_VECTORS_RAM;
        rotor_index *ix = NULL;
        assert_int_equal(rotor_index_open(path, &op, &ix), ROTOR_OK);
        rotor_index_stats st;
        assert_int_equal(rotor_index_stats_get(ix, &st), ROTOR_OK);
        float q[64] = {0.1f, -0.2f, 0.3f};
        assert_true(st.dim <= 64);
        rotor_search_params sp = rotor_search_params_default();
        rotor_query_stats qs;
        sp.rerank = 20;
        sp.stats = &qs;
        int64_t ids[5];
        float d[5];
        assert_int_equal(rotor_index_search(ix, &sp, q, st.dim, 5, ids, d), ROTOR_OK);
        assert_int_equal(qs.reranked, 20);
        /* adds keep it without residuals, so saved it stays at the fixed depth */
        rotor_matrix m = {f->base, 10, st.dim, ROTOR_ELEM_F32};
        assert_int_equal(rotor_index_add(ix, &m), ROTOR_OK);
        assert_int_equal(rotor_index_search(ix, &sp, q, st.dim, 5, ids, d), ROTOR_OK);
        assert_int_equal(qs.reranked, 20);
        char *copy = ts_path(f->dir, "old-copy.rotor");
        assert_int_equal(rotor_index_save(ix, copy), ROTOR_OK);
        rotor_index_close(ix);
        assert_int_equal(rotor_index_open(copy, &op, &ix), ROTOR_OK);
        assert_int_equal(rotor_index_search(ix, &sp, q, st.dim, 5, ids, d), ROTOR_OK);
        assert_int_equal(qs.reranked, 20);
        rotor_index_close(ix);
        free(copy);
    }
}

static uint32_t le32(const uint8_t *p) {
    return p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t le64(const uint8_t *p) { return le32(p) | (uint64_t)le32(p + 4) << 32; }
static void put64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* FORMAT.md: the section count, the header checksum and the table. */
enum { H_SECTIONS = 20, H_CHECKSUM = 32, H_TABLE = 256, SEC_RESIDUALS = 12 };

/* A residual that is not a distance, written with correct checksums: verify
 * names it; a plain open searches as if the vector had no bound. */
static void test_forged_residuals(void **state) {
    fixture *f = *state;
    rotor_index *ix = build(f, &configs[0], ROTOR_VECTORS_RAM);
    int64_t ids0[NQ * K], ids[NQ * K];
    float d0[NQ * K], d[NQ * K];
    rotor_query_stats qs[NQ];
    search_each(f, ix, params(1, 0), ids0, d0, qs);
    char *path = ts_path(f->dir, "forged.rotor");
    assert_int_equal(rotor_index_save(ix, path), ROTOR_OK);
    rotor_index_close(ix);
    size_t n;
    uint8_t *file = ts_read_file(path, &n);
    const uint32_t nsec = le32(file + H_SECTIONS);
    uint8_t *entry = NULL;
    for (uint32_t s = 0; s < nsec; s++)
        if (le32(file + H_TABLE + 32 * s) == SEC_RESIDUALS)
            entry = file + H_TABLE + 32 * s;
    assert_non_null(entry);
    const uint64_t off = le64(entry + 8), size = le64(entry + 16);
    assert_int_equal(size, (uint64_t)N * sizeof(float));
    const float bad[] = {NAN, -1.0f, INFINITY};
    for (size_t b = 0; b < 3; b++) {
        for (size_t i = 0; i < N; i += 3) /* a third of the vectors */
            memcpy(file + off + i * sizeof(float), &bad[b], sizeof(float));
        put64(entry + 24, XXH3_64bits(file + off, size));
        memset(file + H_CHECKSUM, 0, 8);
        put64(file + H_CHECKSUM, XXH3_64bits(file, H_TABLE + 32 * (size_t)nsec));
        ts_write_file(path, file, n);
        TS_CHECK_ERROR(rotor_index_verify(path), ROTOR_ERR_FORMAT, path, "residual", "vector 0",
                       "not a distance");
        rotor_open_params op = rotor_open_params_default();
        assert_int_equal(rotor_index_open(path, &op, &ix), ROTOR_OK);
        search_each(f, ix, params(0, 0), ids, d, qs);
        assert_same(&configs[0], ids, d, ids0, d0, "forged residuals");
        rotor_index_close(ix);
    }
    free(file);
    free(path);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bound_equals_all_in_ram),
        cmocka_unit_test(test_bound_on_disk),
        cmocka_unit_test(test_old_files_fixed_depth),
        cmocka_unit_test(test_forged_residuals),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
