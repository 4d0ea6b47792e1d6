/*
 * Index files through the public API: a saved and reopened index answers
 * exactly as the original did, for every kind, with its vectors in RAM or
 * on disk (io_uring and pread); every damaged, truncated, foreign or newer
 * file is refused with its own status and a sentence, and searching an
 * unverified damaged file stays in bounds (ASan watches); saving is atomic;
 * an opened index takes adds; every allocation failure of open is reported
 * without a leak.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <xxhash.h>

#include "support/support.h"

enum { N = 1500, NQ = 40, D = 24, K = 10, CLUSTERS = 30 };

typedef struct fixture {
    float *base, *queries;
    char *dir;
} fixture;

static int setup(void **state) {
    fixture *f = calloc(1, sizeof *f);
    ts_rng r;
    ts_rng_init(&r, 77);
    float centres[CLUSTERS * D];
    for (size_t i = 0; i < CLUSTERS * D; i++)
        centres[i] = (float)ts_rng_normal(&r);
    f->base = malloc((N + NQ) * D * sizeof(float));
    f->queries = f->base + N * D;
    for (size_t i = 0; i < N + NQ; i++) {
        const float *c = centres + (ts_rng_next(&r) % CLUSTERS) * D;
        for (size_t j = 0; j < D; j++)
            f->base[i * D + j] = c[j] + 0.3f * (float)ts_rng_normal(&r);
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

/* One configuration of each kind and feature a file has to carry. */
typedef struct config {
    const char *name;
    rotor_index_kind kind;
    rotor_metric metric;
    const char *quant, *walk_quant;
    int neighbor_codes;
} config;

static const config configs[] = {
    {"flat", ROTOR_INDEX_FLAT, ROTOR_METRIC_L2, NULL, NULL, 0},
    {"flat-tq4", ROTOR_INDEX_FLAT, ROTOR_METRIC_IP, "tq4", NULL, 0},
    {"vamana", ROTOR_INDEX_VAMANA, ROTOR_METRIC_L2, NULL, NULL, 0},
    {"vamana-pq", ROTOR_INDEX_VAMANA, ROTOR_METRIC_COSINE, "pq12x4", NULL, 1},
    {"vamana-bin2-ids", ROTOR_INDEX_VAMANA, ROTOR_METRIC_L2, "bin2", NULL, 0},
    {"vamana-walk", ROTOR_INDEX_VAMANA, ROTOR_METRIC_L2, "tq4", "pq12x4", 1},
    {"ivf", ROTOR_INDEX_IVF, ROTOR_METRIC_L2, "pq8", NULL, 0},
    {"ivf-cos", ROTOR_INDEX_IVF, ROTOR_METRIC_COSINE, "bin1", NULL, 0},
    {"vamana-bin1fs", ROTOR_INDEX_VAMANA, ROTOR_METRIC_COSINE, "bin1fs", NULL, 1},
    {"vamana-sq8-walk", ROTOR_INDEX_VAMANA, ROTOR_METRIC_L2, "sq8", "bin2fs", 1},
};
enum { NCONFIGS = sizeof configs / sizeof configs[0] };

static rotor_index *build(const fixture *f, const config *c, size_t n) {
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
    rotor_matrix m = {f->base, n, D, ROTOR_ELEM_F32};
    rotor_index *ix = NULL;
    assert_int_equal(rotor_index_build(&p, &m, &ix), ROTOR_OK);
    return ix;
}

static void search_all(const fixture *f, const rotor_index *ix, int64_t *ids, float *dists) {
    rotor_search_params sp = rotor_search_params_default();
    sp.threads = 1;
    sp.rerank = 30;
    sp.list_size = 40;
    sp.nprobe = 4;
    rotor_matrix q = {f->queries, NQ, D, ROTOR_ELEM_F32};
    assert_int_equal(rotor_index_search_batch(ix, &sp, &q, K, ids, dists), ROTOR_OK);
}

static rotor_index *open_with(const char *path, rotor_vectors_place place, rotor_io_backend io,
                              int load) {
    rotor_open_params op = rotor_open_params_default();
    op.vectors = place;
    op.io = io;
    op.load = load;
    rotor_index *ix = NULL;
    rotor_status st = rotor_index_open(path, &op, &ix);
    if (st != ROTOR_OK)
        fail_msg("open '%s': %s", path, rotor_last_error());
    return ix;
}

static bool uring_permitted(const char *path) {
    rotor_open_params op = rotor_open_params_default();
    op.vectors = ROTOR_VECTORS_DISK;
    op.io = ROTOR_IO_URING;
    rotor_index *ix = NULL;
    bool ok = rotor_index_open(path, &op, &ix) == ROTOR_OK;
    rotor_index_close(ix);
    return ok;
}

/* configs[c] built over every row and saved as `name` in the fixture's
 * directory; the path is the caller's to free. */
static char *save_config(const fixture *f, size_t c, const char *name) {
    rotor_index *ix = build(f, &configs[c], N);
    char *path = ts_path(f->dir, name);
    assert_int_equal(rotor_index_save(ix, path), ROTOR_OK);
    rotor_index_close(ix);
    return path;
}

static void test_round_trip(void **state) {
    fixture *f = *state;
    int64_t want_ids[NQ * K], got_ids[NQ * K];
    float want_d[NQ * K], got_d[NQ * K];
    for (size_t c = 0; c < NCONFIGS; c++) {
        rotor_index *ix = build(f, &configs[c], N);
        search_all(f, ix, want_ids, want_d);
        char name[64];
        snprintf(name, sizeof name, "%s.rotor", configs[c].name);
        char *path = ts_path(f->dir, name);
        assert_int_equal(rotor_index_save(ix, path), ROTOR_OK);
        rotor_index_stats before;
        rotor_index_stats_get(ix, &before);
        rotor_index_close(ix);

        /* RAM, then disk through each backend, each mapped and then copied
         * into memory (load): same ids, same distances. */
        rotor_vectors_place places[] = {ROTOR_VECTORS_RAM, ROTOR_VECTORS_DISK, ROTOR_VECTORS_DISK};
        rotor_io_backend ios[] = {ROTOR_IO_AUTO, ROTOR_IO_PREAD, ROTOR_IO_URING};
        for (int mode = 0; mode < 6; mode++) {
            const int m = mode / 2, load = mode % 2;
            if (places[m] == ROTOR_VECTORS_DISK && configs[c].quant == NULL) {
                rotor_open_params op = rotor_open_params_default();
                op.vectors = ROTOR_VECTORS_DISK;
                rotor_index *bad = NULL;
                assert_int_equal(rotor_index_open(path, &op, &bad), ROTOR_ERR_UNSUPPORTED);
                assert_null(bad);
                assert_non_null(strstr(rotor_last_error(), "no quantizer"));
                continue;
            }
            if (ios[m] == ROTOR_IO_URING && !uring_permitted(path)) {
                print_message("io_uring not permitted here (%s): only pread checked\n",
                              rotor_last_error());
                continue;
            }
            rotor_index *re = open_with(path, places[m], ios[m], load);
            rotor_index_stats after;
            rotor_index_stats_get(re, &after);
            assert_int_equal(after.count, before.count);
            assert_int_equal(after.kind, before.kind);
            assert_string_equal(after.quant, before.quant);
            assert_int_equal(after.start_points, before.start_points);
            assert_int_equal(after.start_groups, before.start_groups);
            assert_int_equal(after.mapped, 1);
            assert_int_equal(after.vectors_on_disk, places[m] == ROTOR_VECTORS_DISK);
            if (after.vectors_on_disk) {
                assert_int_equal(after.bytes_vectors, 0);
                assert_int_equal(after.bytes_vectors_disk, before.bytes_vectors);
                assert_string_equal(after.io_backend,
                                    ios[m] == ROTOR_IO_PREAD ? "pread" : "io_uring");
            }
            search_all(f, re, got_ids, got_d);
            assert_memory_equal(got_ids, want_ids, sizeof want_ids);
            assert_memory_equal(got_d, want_d, sizeof want_d);
            rotor_index_close(re);
        }
        free(path);
    }
}

/* With vectors on disk, the reads a query makes are the candidates it
 * reranks, and they are reported per query. */
static void test_disk_reads_reported(void **state) {
    fixture *f = *state;
    char *path = save_config(f, 3, "reads.rotor");
    rotor_index *re = open_with(path, ROTOR_VECTORS_DISK, ROTOR_IO_AUTO, 0);
    rotor_query_stats qs[NQ];
    memset(qs, 0xff, sizeof qs);
    rotor_search_params sp = rotor_search_params_default();
    sp.rerank = 25;
    sp.list_size = 40;
    sp.stats = qs;
    sp.threads = 2; /* two searches at once, each with its own ring */
    int64_t ids[NQ * K];
    rotor_matrix q = {f->queries, NQ, D, ROTOR_ELEM_F32};
    assert_int_equal(rotor_index_search_batch(re, &sp, &q, K, ids, NULL), ROTOR_OK);
    for (size_t i = 0; i < NQ; i++) {
        assert_int_equal(qs[i].reads, 25);
        assert_true(qs[i].io_seconds >= 0 && qs[i].io_seconds < 10);
    }
    /* An index with vectors in RAM reads nothing. */
    rotor_index *ram = open_with(path, ROTOR_VECTORS_RAM, ROTOR_IO_AUTO, 0);
    assert_int_equal(rotor_index_search(ram, &sp, f->queries, D, K, ids, NULL), ROTOR_OK);
    assert_int_equal(qs[0].reads, 0);
    rotor_index_close(ram);
    rotor_index_close(re);
    free(path);
}

/* full_vectors = DISK is remembered by the file and followed by default. */
static void test_saved_place(void **state) {
    fixture *f = *state;
    rotor_params p = rotor_params_default();
    p.kind = ROTOR_INDEX_FLAT;
    p.quant = "bin2";
    p.full_vectors = ROTOR_VECTORS_DISK;
    rotor_matrix m = {f->base, N, D, ROTOR_ELEM_F32};
    rotor_index *ix = NULL;
    assert_int_equal(rotor_index_build(&p, &m, &ix), ROTOR_OK);
    rotor_index_stats s;
    rotor_index_stats_get(ix, &s);
    assert_int_equal(s.vectors_on_disk, 0); /* a built index keeps them in RAM */
    char *path = ts_path(f->dir, "place.rotor");
    assert_int_equal(rotor_index_save(ix, path), ROTOR_OK);
    rotor_index_close(ix);
    assert_int_equal(rotor_index_open(path, NULL, &ix), ROTOR_OK);
    rotor_index_stats_get(ix, &s);
    assert_int_equal(s.vectors_on_disk, 1);
    rotor_index_close(ix);
    ix = open_with(path, ROTOR_VECTORS_RAM, ROTOR_IO_AUTO, 0);
    rotor_index_stats_get(ix, &s);
    assert_int_equal(s.vectors_on_disk, 0);
    /* Saved again from RAM, the file still says disk. */
    assert_int_equal(rotor_index_save(ix, path), ROTOR_OK);
    rotor_index_close(ix);
    assert_int_equal(rotor_index_open(path, NULL, &ix), ROTOR_OK);
    rotor_index_stats_get(ix, &s);
    assert_int_equal(s.vectors_on_disk, 1);
    rotor_index_close(ix);
    /* Without a quantizer, disk is refused at build. */
    p.quant = NULL;
    assert_int_equal(rotor_index_build(&p, &m, &ix), ROTOR_ERR_INVALID_ARGUMENT);
    free(path);
}

/* ---- damage ------------------------------------------------------------------ */

static uint8_t *read_all(const char *path, size_t *n) { return ts_read_file(path, n); }

static void write_all(const char *path, const void *data, size_t n) {
    ts_write_file(path, data, n);
}

static uint32_t le32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t le64(const uint8_t *p) { return le32(p) | (uint64_t)le32(p + 4) << 32; }
static void put32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static void put64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* FORMAT.md: header fields the damage tests reach. */
enum { H_VERSION = 8, H_SECTIONS = 20, H_CHECKSUM = 32, H_DIM = 48, H_COUNT = 56, H_TABLE = 256 };

/* After editing a header field, its checksum is made right again, so the
 * field's own check is what refuses the file. */
static void reseal(uint8_t *file) {
    size_t used = H_TABLE + 32 * (size_t)le32(file + H_SECTIONS);
    memset(file + H_CHECKSUM, 0, 8);
    put64(file + H_CHECKSUM, XXH3_64bits(file, used));
}

/* The table entry of the section of `kind` (FORMAT.md), which must be
 * there. */
static uint8_t *section_entry(uint8_t *file, uint32_t kind) {
    uint8_t *e = NULL;
    for (uint32_t s = 0; s < le32(file + H_SECTIONS); s++)
        if (le32(file + H_TABLE + 32 * s) == kind)
            e = file + H_TABLE + 32 * s;
    assert_non_null(e);
    return e;
}

/* After editing the bytes of the section at table entry e: its checksum
 * and the header's made right again. */
static void reseal_section(uint8_t *file, uint8_t *e) {
    put64(e + 24, XXH3_64bits(file + le64(e + 8), le64(e + 16)));
    reseal(file);
}

/* Both ways of opening (mapped, loaded) refuse path as a format error
 * whose message says `says` (and names the file, with named). */
static void refused_both_ways(const char *path, bool named, const char *says) {
    for (int load = 0; load < 2; load++) {
        rotor_open_params op = rotor_open_params_default();
        op.load = load;
        rotor_index *ix = NULL;
        TS_CHECK_ERROR(rotor_index_open(path, &op, &ix), ROTOR_ERR_FORMAT, named ? path : NULL,
                       says);
        assert_null(ix);
    }
}

static rotor_status try_open(const char *path, int verify) {
    rotor_open_params op = rotor_open_params_default();
    op.verify = verify;
    op.vectors = ROTOR_VECTORS_RAM;
    rotor_index *ix = NULL;
    rotor_status st = rotor_index_open(path, &op, &ix);
    if (st == ROTOR_OK) {
        assert_non_null(ix);
        rotor_index_close(ix);
    } else {
        assert_null(ix);
        assert_true(strlen(rotor_last_error()) > 10);
    }
    return st;
}

static char *saved_graph(fixture *f, const char *name, size_t *n, uint8_t **bytes) {
    char *path = save_config(f, 5, name); /* every vamana section, two quantizers */
    *bytes = read_all(path, n);
    return path;
}

/* A flipped byte in any section: verify and a verifying open say which
 * section; a plain open refuses the small sections it decodes and, for the
 * big ones it only maps, gives an index whose searches stay in bounds or
 * refuse a graph record they find impossible. */
static void test_flipped_bytes(void **state) {
    fixture *f = *state;
    size_t n;
    uint8_t *good;
    char *path = saved_graph(f, "flip.rotor", &n, &good);
    assert_int_equal(rotor_index_verify(path), ROTOR_OK);
    uint32_t nsec = le32(good + H_SECTIONS);
    assert_true(nsec >= 6);
    uint8_t *bad = malloc(n);
    for (uint32_t s = 0; s < nsec; s++) {
        const uint8_t *e = good + H_TABLE + 32 * s;
        uint64_t off = le64(e + 8), size = le64(e + 16);
        for (int where = 0; where < 3; where++) {
            memcpy(bad, good, n);
            uint64_t at = off + (where == 0 ? 0 : where == 1 ? size / 2 : size - 1);
            bad[at] ^= 0x5a;
            write_all(path, bad, n);
            assert_int_equal(rotor_index_verify(path), ROTOR_ERR_CORRUPT);
            assert_non_null(strstr(rotor_last_error(), "checksum"));
            assert_int_equal(try_open(path, 1), ROTOR_ERR_CORRUPT);
            rotor_status st = try_open(path, 0);
            assert_true(st == ROTOR_OK || st == ROTOR_ERR_CORRUPT);
            if (st == ROTOR_OK) {
                rotor_index *ix = open_with(path, ROTOR_VECTORS_RAM, ROTOR_IO_AUTO, 0);
                int64_t ids[K];
                float d[K];
                for (size_t q = 0; q < NQ; q++) {
                    st = rotor_index_search(ix, NULL, f->queries + q * D, D, K, ids, d);
                    if (st == ROTOR_ERR_CORRUPT) {
                        assert_non_null(strstr(rotor_last_error(), "the graph section"));
                        continue;
                    }
                    assert_int_equal(st, ROTOR_OK);
                    for (size_t i = 0; i < K; i++)
                        assert_true(ids[i] >= -1 && ids[i] < N);
                }
                rotor_index_close(ix);
            }
        }
    }
    /* The header itself. */
    for (size_t at = 0; at < H_TABLE + 32 * nsec; at += 7) {
        memcpy(bad, good, n);
        bad[at] ^= 0x01;
        write_all(path, bad, n);
        rotor_status st = try_open(path, 0);
        assert_true(st == ROTOR_ERR_CORRUPT || st == ROTOR_ERR_FORMAT ||
                    st == ROTOR_ERR_UNSUPPORTED);
        assert_int_not_equal(rotor_index_verify(path), ROTOR_OK);
    }
    free(bad);
    free(good);
    free(path);
}

/* Damage inside the graph records that keeps the checksum right (a file
 * written by something else): verify and a loading open refuse it; a
 * mapped open, which reads records only where searches use them, fails the
 * first search that meets one, and the first add; each names the section. */
static void test_forged_graph(void **state) {
    fixture *f = *state;
    size_t n;
    uint8_t *bytes;
    char *path = saved_graph(f, "forged.rotor", &n, &bytes);
    uint8_t *e = section_entry(bytes, 7); /* the graph section */
    const uint64_t off = le64(e + 8), size = le64(e + 16);
    for (uint64_t at = off; at < off + size; at += 97)
        put32(bytes + at, 0xfffffff0u); /* huge degrees and ids */
    reseal_section(bytes, e);
    write_all(path, bytes, n);
    assert_int_equal(rotor_index_verify(path), ROTOR_ERR_CORRUPT);
    assert_non_null(strstr(rotor_last_error(), "graph node"));
    /* Copying the records into memory checks them as an add would. */
    rotor_open_params lp = rotor_open_params_default();
    lp.load = 1;
    rotor_index *loaded = NULL;
    assert_int_equal(rotor_index_open(path, &lp, &loaded), ROTOR_ERR_CORRUPT);
    assert_null(loaded);
    assert_non_null(strstr(rotor_last_error(), "graph node"));
    rotor_index *ix = open_with(path, ROTOR_VECTORS_RAM, ROTOR_IO_AUTO, 0);
    int64_t ids[K];
    TS_CHECK_ERROR(rotor_index_search(ix, NULL, f->queries, D, K, ids, NULL), ROTOR_ERR_CORRUPT,
                   NULL, "the graph section", "graph node");
    rotor_matrix m = {f->queries, 1, D, ROTOR_ELEM_F32};
    TS_CHECK_ERROR(rotor_index_add(ix, &m), ROTOR_ERR_CORRUPT, NULL, "graph node");
    rotor_index_close(ix);
    free(bytes);
    free(path);
}

/* A graph of codes stored end to end, saved as earlier versions did with
 * a copy of each node's code in its record (layout 2, where this version
 * writes 3 and reads the code store): refused with what to do. */
static void test_old_own_code_layout(void **state) {
    fixture *f = *state;
    char *path = save_config(f, 4, "old_layout.rotor"); /* bin2, own codes */
    size_t n;
    uint8_t *bytes = read_all(path, &n);
    uint8_t *e = section_entry(bytes, 6); /* the graph header */
    const uint64_t off = le64(e + 8);
    assert_int_equal(le32(bytes + off + 40), 3);
    assert_int_equal(le64(bytes + off + 24), 0); /* no code block in a record */
    put32(bytes + off + 40, 2);
    reseal_section(bytes, e);
    write_all(path, bytes, n);
    refused_both_ways(path, true, "a layout of earlier versions: build the index again");
    free(bytes);
    free(path);
}

/* A graph header whose groups of starting points do not split them, with
 * every checksum right: refused by name, whichever way it is opened. */
static void test_forged_groups(void **state) {
    fixture *f = *state;
    size_t n;
    uint8_t *good;
    char *path = saved_graph(f, "groups.rotor", &n, &good);
    const uint8_t *e = section_entry(good, 6); /* the graph header */
    const uint64_t off = le64(e + 8), size = le64(e + 16);
    const uint32_t starts = le32(good + off + 36), groups = le32(good + off + 44);
    /* N = 1500 nodes, all of them sampled, in sqrt(1500) = 39 groups. */
    assert_int_equal(starts, N);
    assert_int_equal(groups, 39);
    const uint64_t offsets = off + size - 4 * ((uint64_t)groups + 1);
    assert_int_equal(le32(good + offsets), 0);
    assert_int_equal(le32(good + offsets + 4 * groups), starts);
    struct {
        uint64_t at;
        uint32_t value;
        const char *says;
    } edits[] = {
        {off + 44, starts + 1, "groups of"},                     /* more groups than points */
        {off + 44, groups - 1, "header holds"},                  /* the offsets' size disagrees */
        {offsets, 1, "do not split"},                            /* not starting at 0 */
        {offsets + 4 * groups, starts - 1, "do not split"},      /* not ending at P */
        {offsets + 8, le32(good + offsets + 4), "do not split"}, /* an empty group */
    };
    uint8_t *bad = malloc(n);
    for (size_t i = 0; i < sizeof edits / sizeof edits[0]; i++) {
        memcpy(bad, good, n);
        put32(bad + edits[i].at, edits[i].value);
        reseal_section(bad, bad + (e - good));
        write_all(path, bad, n);
        refused_both_ways(path, false, edits[i].says);
    }
    free(bad);
    free(good);
    free(path);
}

static void test_truncated(void **state) {
    fixture *f = *state;
    size_t n;
    uint8_t *good;
    char *path = saved_graph(f, "trunc.rotor", &n, &good);
    size_t cuts[] = {0, 1, 7, 8, 100, 4095, 4096, 4097, 8192, n / 3, n / 2, n - 4096, n - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        write_all(path, good, cuts[i]);
        assert_int_equal(try_open(path, 0), ROTOR_ERR_FORMAT);
        if (cuts[i] >= 4096)
            assert_non_null(strstr(rotor_last_error(), "truncated"));
        else if (cuts[i] < 8)
            assert_non_null(strstr(rotor_last_error(), "not a rotor index"));
    }
    /* Bytes appended after the end are the update log's place: bytes
     * that are no whole record there are an append a crash cut short,
     * ignored (test_log covers the log itself). */
    uint8_t *longer = calloc(n + 10, 1);
    memcpy(longer, good, n);
    write_all(path, longer, n + 10);
    rotor_index *ix = NULL;
    assert_int_equal(rotor_index_open(path, NULL, &ix), ROTOR_OK);
    rotor_index_stats s;
    assert_int_equal(rotor_index_stats_get(ix, &s), ROTOR_OK);
    assert_int_equal(s.log_records, 0);
    assert_int_equal(s.log_tail_bytes, 10);
    rotor_index_close(ix);
    assert_int_equal(rotor_index_verify(path), ROTOR_OK);
    free(longer);
    free(good);
    free(path);
}

static void test_foreign_and_versions(void **state) {
    fixture *f = *state;
    /* A data set file is not an index. */
    char *fv = ts_path(f->dir, "data.fvecs");
    rotor_matrix m = {f->base, 10, D, ROTOR_ELEM_F32};
    assert_int_equal(rotor_matrix_write(fv, &m), ROTOR_OK);
    assert_int_equal(try_open(fv, 0), ROTOR_ERR_FORMAT);
    assert_non_null(strstr(rotor_last_error(), "not a rotor index"));
    assert_int_equal(rotor_index_open("/nonexistent/x.rotor", NULL, &(rotor_index *){NULL}),
                     ROTOR_ERR_IO);
    free(fv);

    size_t n;
    uint8_t *good;
    char *path = saved_graph(f, "ver.rotor", &n, &good);
    uint8_t *bad = malloc(n);
    struct {
        size_t field;
        uint64_t value;
        int wide;
        rotor_status want;
        const char *says;
    } edits[] = {
        {H_VERSION, 2, 0, ROTOR_ERR_UNSUPPORTED, "version 2"},
        {H_VERSION, 0, 0, ROTOR_ERR_FORMAT, "never existed"},
        {H_COUNT, (uint64_t)1 << 40, 1, ROTOR_ERR_FORMAT, "vectors"},
        {H_COUNT, N + 1, 1, ROTOR_ERR_FORMAT, "section"},
        {H_DIM, (uint64_t)1 << 33, 1, ROTOR_ERR_FORMAT, "dimensions"},
        {H_DIM, D + 1, 1, ROTOR_ERR_FORMAT, "dimensions"},
        {H_SECTIONS, 1000, 0, ROTOR_ERR_FORMAT, "sections"},
        {H_TABLE + 8, ((uint64_t)1 << 50) + 1, 1, ROTOR_ERR_FORMAT, "4 KiB"},
        {H_TABLE + 16, (uint64_t)1 << 50, 1, ROTOR_ERR_FORMAT, "past the end"},
    };
    for (size_t i = 0; i < sizeof edits / sizeof edits[0]; i++) {
        memcpy(bad, good, n);
        if (edits[i].wide)
            put64(bad + edits[i].field, edits[i].value);
        else
            put32(bad + edits[i].field, (uint32_t)edits[i].value);
        if (edits[i].field != H_SECTIONS)
            reseal(bad);
        write_all(path, bad, n);
        assert_int_equal(try_open(path, 0), edits[i].want);
        if (strstr(rotor_last_error(), edits[i].says) == NULL)
            fail_msg("edit %zu: '%s' does not say '%s'", i, rotor_last_error(), edits[i].says);
    }
    free(bad);
    free(good);
    free(path);
}

static void test_dimension_at_search(void **state) {
    fixture *f = *state;
    char *path = save_config(f, 3, "dim.rotor");
    rotor_index *ix = open_with(path, ROTOR_VECTORS_DISK, ROTOR_IO_AUTO, 0);
    int64_t ids[K];
    assert_int_equal(rotor_index_search(ix, NULL, f->queries, D + 1, K, ids, NULL),
                     ROTOR_ERR_DIMENSION);
    assert_non_null(strstr(rotor_last_error(), "25 dimensions, index has 24"));
    /* k larger than the index pads. */
    int64_t many[N + 5];
    assert_int_equal(rotor_index_search(ix, NULL, f->queries, D, N + 5, many, NULL), ROTOR_OK);
    assert_int_equal(many[N + 4], -1);
    rotor_index_close(ix);
    free(path);
}

/* ---- saving ------------------------------------------------------------------ */

static size_t count_entries(const char *dir) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, "ls -A '%s' | wc -l", dir);
    FILE *p = popen(cmd, "r");
    size_t n = 0;
    assert_int_equal(fscanf(p, "%zu", &n), 1);
    pclose(p);
    return n;
}

static void test_save_atomic(void **state) {
    fixture *f = *state;
    char *dir = ts_tmpdir_create();
    char *path = ts_path(dir, "a.rotor");
    rotor_index *small = build(f, &configs[1], 200);
    rotor_index *big = build(f, &configs[1], N);
    assert_int_equal(rotor_index_save(small, path), ROTOR_OK);
    assert_int_equal(count_entries(dir), 1); /* no temporary left */

    /* Replacing the file the open index maps: the old mapping lives on. */
    rotor_index *opened = open_with(path, ROTOR_VECTORS_RAM, ROTOR_IO_AUTO, 0);
    assert_int_equal(rotor_index_save(big, path), ROTOR_OK);
    assert_int_equal(count_entries(dir), 1);
    rotor_index_stats s;
    rotor_index_stats_get(opened, &s);
    assert_int_equal(s.count, 200);
    int64_t ids[K];
    assert_int_equal(rotor_index_search(opened, NULL, f->queries, D, K, ids, NULL), ROTOR_OK);
    rotor_index *now = open_with(path, ROTOR_VECTORS_RAM, ROTOR_IO_AUTO, 0);
    rotor_index_stats_get(now, &s);
    assert_int_equal(s.count, N);
    /* Saving an opened index over its own file. */
    assert_int_equal(rotor_index_save(now, path), ROTOR_OK);
    assert_int_equal(rotor_index_verify(path), ROTOR_OK);
    rotor_index_close(now);
    rotor_index_close(opened);

    /* A directory that does not exist: an I/O error, nothing written. */
    char *nowhere = ts_path(dir, "missing/b.rotor");
    assert_int_equal(rotor_index_save(small, nowhere), ROTOR_ERR_IO);
    assert_non_null(strstr(rotor_last_error(), "missing/b.rotor"));
    assert_int_equal(count_entries(dir), 1);
    rotor_index_close(small);
    rotor_index_close(big);
    free(nowhere);
    free(path);
    ts_tmpdir_remove(dir);
}

/* An index opened from a file takes adds (its arrays are copied first) and
 * finds the new vectors; with vectors on disk, adds are refused. */
static void test_add_after_open(void **state) {
    fixture *f = *state;
    const size_t first = N - 300;
    for (size_t c = 0; c < NCONFIGS; c++) {
        rotor_index *ix = build(f, &configs[c], first);
        char *path = ts_path(f->dir, "add.rotor");
        assert_int_equal(rotor_index_save(ix, path), ROTOR_OK);
        rotor_index_close(ix);
        ix = open_with(path, ROTOR_VECTORS_RAM, ROTOR_IO_AUTO, 0);
        rotor_index_stats s0, s;
        rotor_index_stats_get(ix, &s0);
        rotor_matrix more = {f->base + first * D, N - first, D, ROTOR_ELEM_F32};
        assert_int_equal(rotor_index_add(ix, &more), ROTOR_OK);
        rotor_index_stats_get(ix, &s);
        assert_int_equal(s.count, N);
        /* The build's sample of starting points outlives adds. */
        assert_int_equal(s.start_points, s0.start_points);
        assert_int_equal(s.start_groups, s0.start_groups);
        if (configs[c].kind == ROTOR_INDEX_VAMANA && configs[c].quant != NULL)
            assert_int_equal(s.start_points, first);
        /* Queries at the new vectors find the true nearest neighbour (the
         * vector itself, except by inner product). */
        rotor_search_params sp = rotor_search_params_default();
        sp.rerank = 50;
        sp.list_size = 50;
        sp.nprobe = 20;
        size_t hits = 0;
        for (size_t i = first; i < N; i += 30) {
            int64_t id, truth;
            double truth_d;
            ts_brute_force(f->base, N, f->base + i * D, 1, D, configs[c].metric, 1, &truth,
                           &truth_d);
            assert_int_equal(rotor_index_search(ix, &sp, f->base + i * D, D, 1, &id, NULL),
                             ROTOR_OK);
            hits += id == truth;
        }
        if (hits < 9)
            fail_msg("%s: %zu of 10 added vectors found", configs[c].name, hits);
        /* Saved again, the grown index reopens whole. */
        assert_int_equal(rotor_index_save(ix, path), ROTOR_OK);
        assert_int_equal(rotor_index_verify(path), ROTOR_OK);
        rotor_index_close(ix);
        if (configs[c].quant != NULL) {
            ix = open_with(path, ROTOR_VECTORS_DISK, ROTOR_IO_AUTO, 0);
            assert_int_equal(rotor_index_add(ix, &more), ROTOR_ERR_UNSUPPORTED);
            rotor_index_close(ix);
        }
        free(path);
    }
}

static bool has_section(const char *path, uint32_t kind, uint64_t *size) {
    size_t n;
    uint8_t *file = read_all(path, &n);
    bool found = false;
    for (uint32_t i = 0; i < le32(file + H_SECTIONS); i++) {
        const uint8_t *e = file + H_TABLE + 32 * i;
        if (le32(e) == kind) {
            found = true;
            *size = le64(e + 16);
        }
    }
    free(file);
    return found;
}

enum { SEC_VECTORS = 1, SEC_VECTORS8 = 18 };

/* Rows of whole numbers 0..255 are kept as bytes once built and saved
 * so, a quarter of the floats; every kind answers from them, mapped or loaded, exactly as it
 * did from the floats, reads them back as the same floats, calibrates and
 * consolidates over them, and an add of other rows widens them. Rows
 * normalised for cosine stay floats. */
static void test_byte_rows(void **state) {
    const fixture *f = *state;
    float *base = malloc((N + NQ) * D * sizeof(float));
    for (size_t i = 0; i < (N + NQ) * D; i++)
        base[i] = floorf(fminf(fmaxf(128.0f + 40.0f * f->base[i], 0.0f), 255.0f));
    const fixture bf = {base, base + N * D, f->dir};
    int64_t want_ids[NQ * K], got_ids[NQ * K];
    float want_d[NQ * K], got_d[NQ * K], row[D];
    char *path = ts_path(f->dir, "bytes.rotor");
    for (size_t c = 0; c < NCONFIGS; c++) {
        const config *cf = &configs[c];
        rotor_index *ix = build(&bf, cf, N);
        const bool cosine = cf->metric == ROTOR_METRIC_COSINE;
        rotor_index_stats bs;
        rotor_index_stats_get(ix, &bs);
        assert_int_equal(bs.bytes_vectors, N * D * (cosine ? sizeof(float) : 1));
        search_all(&bf, ix, want_ids, want_d);
        assert_int_equal(rotor_index_save(ix, path), ROTOR_OK);
        rotor_index_close(ix);
        uint64_t size = 0;
        assert_int_equal(has_section(path, SEC_VECTORS8, &size), !cosine);
        assert_int_equal(has_section(path, SEC_VECTORS, &size), cosine);
        if (cosine)
            continue;
        assert_int_equal(rotor_index_verify(path), ROTOR_OK);
        for (int load = 0; load < 2; load++) {
            rotor_index *re = open_with(path, ROTOR_VECTORS_RAM, ROTOR_IO_AUTO, load);
            rotor_index_stats st;
            rotor_index_stats_get(re, &st);
            assert_int_equal(st.bytes_vectors, N * D);
            search_all(&bf, re, got_ids, got_d);
            assert_memory_equal(got_ids, want_ids, sizeof want_ids);
            assert_memory_equal(got_d, want_d, sizeof want_d);
            assert_int_equal(rotor_index_get(re, 7, row), ROTOR_OK);
            assert_memory_equal(row, base + 7 * D, sizeof row);
            rotor_index_close(re);
        }
        rotor_open_params op = rotor_open_params_default();
        op.vectors = ROTOR_VECTORS_DISK;
        rotor_index *bad = NULL;
        TS_CHECK_ERROR(rotor_index_open(path, &op, &bad), ROTOR_ERR_UNSUPPORTED, path, "as bytes");
        assert_null(bad);

        /* Calibrated and consolidated over widened copies, still bytes. */
        rotor_index *re = open_with(path, ROTOR_VECTORS_RAM, ROTOR_IO_AUTO, 0);
        if (cf->quant != NULL || cf->kind != ROTOR_INDEX_FLAT)
            assert_int_equal(rotor_index_tune(re, NULL, 1), ROTOR_OK);
        const int64_t gone[] = {3, 11, 12};
        assert_int_equal(rotor_index_remove(re, gone, 3), ROTOR_OK);
        assert_int_equal(rotor_index_consolidate(re), ROTOR_OK);
        assert_int_equal(rotor_index_save(re, path), ROTOR_OK);
        assert_true(has_section(path, SEC_VECTORS8, &size));
        assert_int_equal(size, N * D);

        /* A row that is not bytes: the index widens and saves floats. */
        float extra[D];
        for (size_t j = 0; j < D; j++)
            extra[j] = base[(N + 1) * D + j] + 0.25f;
        rotor_matrix m = {extra, 1, D, ROTOR_ELEM_F32};
        assert_int_equal(rotor_index_add(re, &m), ROTOR_OK);
        assert_int_equal(rotor_index_get(re, 7, row), ROTOR_OK);
        assert_memory_equal(row, base + 7 * D, sizeof row);
        rotor_search_params sp = rotor_search_params_default();
        sp.rerank = 50;
        sp.list_size = 50;
        sp.nprobe = 20;
        int64_t id = -1;
        assert_int_equal(rotor_index_search(re, &sp, extra, D, 1, &id, NULL), ROTOR_OK);
        if (cf->metric == ROTOR_METRIC_L2)
            assert_int_equal(id, 3); /* the freed slot the add reused */
        assert_int_equal(rotor_index_save(re, path), ROTOR_OK);
        rotor_index_close(re);
        assert_true(has_section(path, SEC_VECTORS, &size));
        assert_false(has_section(path, SEC_VECTORS8, &size));
        assert_int_equal(rotor_index_verify(path), ROTOR_OK);
    }
    free(path);
    free(base);
}

static void test_open_alloc_failures(void **state) {
    fixture *f = *state;
    char *path = save_config(f, 5, "oom.rotor");
    for (int mode = 0; mode < 4; mode++) {
        const int disk = mode & 1, load = mode >> 1;
        long fail_at = 1;
        for (;; fail_at++) {
            ts_counting_alloc state_alloc = {0};
            state_alloc.fail_at = fail_at;
            rotor_open_params op = rotor_open_params_default();
            op.allocator = ts_counting_allocator(&state_alloc);
            op.vectors = disk ? ROTOR_VECTORS_DISK : ROTOR_VECTORS_RAM;
            op.load = load;
            rotor_index *re = NULL;
            rotor_status st = rotor_index_open(path, &op, &re);
            if (st == ROTOR_OK) {
                int64_t ids[K];
                st = rotor_index_search(re, NULL, f->queries, D, K, ids, NULL);
                rotor_index_close(re);
                assert_int_equal(state_alloc.live, 0);
                if (st == ROTOR_OK)
                    break;
            } else {
                assert_null(re);
            }
            assert_int_equal(st, ROTOR_ERR_OUT_OF_MEMORY);
            assert_int_equal(state_alloc.live, 0);
        }
        assert_true(fail_at > 3);
    }
    /* Saving fails cleanly too. */
    for (long fail_at = 1;; fail_at++) {
        ts_counting_alloc state_alloc = {0};
        rotor_index *copy = NULL;
        rotor_open_params op = rotor_open_params_default();
        op.allocator = ts_counting_allocator(&state_alloc);
        assert_int_equal(rotor_index_open(path, &op, &copy), ROTOR_OK);
        state_alloc.fail_at = state_alloc.calls + fail_at;
        rotor_status st = rotor_index_save(copy, path);
        rotor_index_close(copy);
        assert_int_equal(state_alloc.live, 0);
        if (rotor_index_verify(path) != ROTOR_OK) /* old or new, never half */
            fail_msg("after a failed save: %s", rotor_last_error());
        if (st == ROTOR_OK)
            break;
        assert_int_equal(st, ROTOR_ERR_OUT_OF_MEMORY);
    }
    free(path);
}

/* The streaming build gives the index an in-memory build gives, leaves no
 * spill file behind, and refuses bad input with the row it failed on. */
static void test_build_file(void **state) {
    fixture *f = *state;
    char *dir = ts_tmpdir_create();
    char *input = ts_path(dir, "base.fbin");
    char *path = ts_path(dir, "streamed.rotor");
    rotor_matrix m = {f->base, N, D, ROTOR_ELEM_F32};
    assert_int_equal(rotor_matrix_write(input, &m), ROTOR_OK);
    int64_t want_ids[NQ * K], got_ids[NQ * K];
    float want_d[NQ * K], got_d[NQ * K];
    const size_t picks[] = {1, 3, 5, 6};
    for (size_t i = 0; i < sizeof picks / sizeof picks[0]; i++) {
        const config *c = &configs[picks[i]];
        rotor_index *ix = build(f, c, N);
        search_all(f, ix, want_ids, want_d);
        rotor_index_close(ix);
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
        assert_int_equal(rotor_index_build_file(&p, input, path), ROTOR_OK);
        assert_int_equal(count_entries(dir), 2); /* input and index, no spill */
        ix = open_with(path, ROTOR_VECTORS_RAM, ROTOR_IO_AUTO, 0);
        search_all(f, ix, got_ids, got_d);
        assert_memory_equal(got_ids, want_ids, sizeof want_ids);
        assert_memory_equal(got_d, want_d, sizeof want_d);
        rotor_index_close(ix);
    }
    /* Bad input: nothing is left behind, the old index stays whole. */
    rotor_params p = rotor_params_default();
    p.quant = "tq4";
    size_t n;
    uint8_t *bytes = read_all(input, &n); /* .fbin: 8 header bytes, then the floats */
    const float nan = NAN;
    memcpy(bytes + 8 + (700 * D + 3) * sizeof(float), &nan, sizeof nan);
    write_all(input, bytes, n);
    free(bytes);
    assert_int_equal(rotor_index_build_file(&p, input, path), ROTOR_ERR_NOT_FINITE);
    assert_non_null(strstr(rotor_last_error(), "NaN"));
    assert_non_null(strstr(rotor_last_error(), "row 700"));
    assert_int_equal(count_entries(dir), 2);
    assert_int_equal(rotor_index_verify(path), ROTOR_OK);
    char *ids = ts_path(dir, "ids.ivecs");
    int32_t id_rows[4] = {0, 1, 2, 3};
    rotor_matrix im = {id_rows, 2, 2, ROTOR_ELEM_I32};
    assert_int_equal(rotor_matrix_write(ids, &im), ROTOR_OK);
    assert_int_equal(rotor_index_build_file(&p, ids, path), ROTOR_ERR_INVALID_ARGUMENT);
    assert_int_equal(rotor_index_build_file(&p, "/nonexistent.fbin", path), ROTOR_ERR_IO);
    char *nowhere = ts_path(dir, "missing/x.rotor");
    assert_int_equal(rotor_index_build_file(&p, input, nowhere), ROTOR_ERR_IO);
    assert_int_equal(count_entries(dir), 3);
    free(nowhere);
    free(ids);
    free(path);
    free(input);
    ts_tmpdir_remove(dir);
}

static void test_bad_arguments(void **state) {
    fixture *f = *state;
    rotor_index *ix = NULL;
    assert_int_equal(rotor_index_open(NULL, NULL, &ix), ROTOR_ERR_INVALID_ARGUMENT);
    rotor_open_params op = rotor_open_params_default();
    op.direct_io = 5;
    assert_int_equal(rotor_index_open("x", &op, &ix), ROTOR_ERR_INVALID_ARGUMENT);
    op = rotor_open_params_default();
    op.vectors = (rotor_vectors_place)9;
    assert_int_equal(rotor_index_open("x", &op, &ix), ROTOR_ERR_INVALID_ARGUMENT);
    op = rotor_open_params_default();
    op.load = 2;
    assert_int_equal(rotor_index_open("x", &op, &ix), ROTOR_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(rotor_last_error(), "load must be -1, 0 or 1"));
    assert_int_equal(rotor_index_save(NULL, "x"), ROTOR_ERR_INVALID_ARGUMENT);
    assert_int_equal(rotor_index_verify("/nonexistent/file"), ROTOR_ERR_IO);
    (void)f;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),           cmocka_unit_test(test_disk_reads_reported),
        cmocka_unit_test(test_saved_place),          cmocka_unit_test(test_flipped_bytes),
        cmocka_unit_test(test_forged_graph),         cmocka_unit_test(test_forged_groups),
        cmocka_unit_test(test_old_own_code_layout),  cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_foreign_and_versions), cmocka_unit_test(test_dimension_at_search),
        cmocka_unit_test(test_save_atomic),          cmocka_unit_test(test_add_after_open),
        cmocka_unit_test(test_open_alloc_failures),  cmocka_unit_test(test_build_file),
        cmocka_unit_test(test_bad_arguments),        cmocka_unit_test(test_byte_rows),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
