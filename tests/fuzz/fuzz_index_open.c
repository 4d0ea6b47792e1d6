/*
 * Fuzz target for rotor_index_open, the reader of index files. libFuzzer's
 * bytes become a file (an anonymous memory file, opened by its /proc path,
 * since the API takes a path), which is opened through a counting allocator
 * that refuses blocks over a budget, once mapping only and once verifying
 * every section; an accepted index is searched, from RAM and with its
 * vectors read back through pread.
 *
 * Besides "no crash, no out-of-bounds access" (the sanitizers' job), the
 * target checks the reader's promises and aborts when one breaks:
 *   - a refusal is FORMAT, CORRUPT, UNSUPPORTED, OUT_OF_MEMORY or, for vectors
 *     that a disk open cannot read, IO; it leaves a sentence and no index;
 *   - a verifying open never accepts what a plain open refuses;
 *   - searches of an accepted index succeed and return keys it holds, whose
 *     vectors it gives back;
 *   - nothing stays allocated afterwards.
 *
 * Checksums would stop almost every mutation at the door, so each input is
 * also opened "resealed": its header checksum, the checksum of every
 * section the table places inside the file and that of every record of
 * the update log after them recomputed, as a writer that produced damaged
 * contents would have. That copy reaches the decoders of the header, the
 * table, every section and every record (and their replay).
 *
 * The seed corpus (corpus/index_open) holds small indexes of every kind,
 * and files with update logs, written by make_index_corpus.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define XXH_STATIC_LINKING_ONLY /* XXH3_state_t by value */
#include <xxhash.h>

#include "fuzz_support.h"
#include "rotor.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static fuzz_budget budget = {0, (size_t)64 << 20};

static void require(int cond, const char *what) { fuzz_require("fuzz_index_open", cond, what); }

static void search(const rotor_index *ix) {
    rotor_index_stats s;
    require(rotor_index_stats_get(ix, &s) == ROTOR_OK, "stats of an open index failed");
    if (s.dim > 4096)
        return;
    float *q = malloc(s.dim * sizeof *q);
    require(q != NULL, "out of memory in the fuzz target");
    for (size_t j = 0; j < s.dim; j++)
        q[j] = (float)((j * 5 + 1) % 9) / 9.0f - 0.4f;
    enum { K = 5 };
    int64_t ids[K];
    float d[K];
    rotor_status st = rotor_index_search(ix, NULL, q, s.dim, K, ids, d);
    /* Acceptable failures: a budget the search's scratch exceeds, and a graph
     * record a mapped open left unread that the search finds impossible. */
    require(st == ROTOR_OK || st == ROTOR_ERR_OUT_OF_MEMORY || st == ROTOR_ERR_CORRUPT,
            "a search of an open index failed");
    for (int i = 0; st == ROTOR_OK && i < K; i++) {
        int found = 0;
        require(ids[i] == -1 || (rotor_index_contains(ix, ids[i], &found) == ROTOR_OK && found),
                "a search returned a key the index does not hold");
    }
    /* A filtered search returns only vectors carrying the label (a file
     * without labels: none). */
    const uint32_t label = 1;
    const rotor_filter flt = {.labels = &label, .nlabels = 1};
    rotor_search_params sp = rotor_search_params_default();
    sp.filter = &flt;
    int64_t fids[K];
    rotor_status fst = rotor_index_search(ix, &sp, q, s.dim, K, fids, d);
    require(fst == ROTOR_OK || fst == ROTOR_ERR_OUT_OF_MEMORY || fst == ROTOR_ERR_CORRUPT,
            "a filtered search of an open index failed");
    for (int i = 0; fst == ROTOR_OK && i < K && fids[i] >= 0; i++) {
        uint32_t labs[64];
        size_t n = 0, hit = 0;
        require(rotor_index_get_labels(ix, fids[i], labs, 64, &n) == ROTOR_OK,
                "the labels of a key a filtered search returned could not be read");
        for (size_t j = 0; j < n && j < 64; j++)
            hit += labs[j] == label;
        require(hit == 1, "a filtered search returned a vector without the label");
    }
    if (st == ROTOR_OK && ids[0] >= 0) {
        st = rotor_index_get(ix, ids[0], q);
        require(st == ROTOR_OK || st == ROTOR_ERR_OUT_OF_MEMORY || st == ROTOR_ERR_IO,
                "the vector of a key a search returned could not be read");
    }
    free(q);
}

static rotor_status try_open(const char *path, int verify, int load, rotor_vectors_place place) {
    rotor_open_params op = rotor_open_params_default();
    op.allocator = fuzz_allocator(&budget);
    op.verify = verify;
    op.load = load;
    op.vectors = place;
    op.io = ROTOR_IO_PREAD;
    op.direct_io = 0;
    rotor_index *ix = NULL;
    rotor_status st = rotor_index_open(path, &op, &ix);
    if (st == ROTOR_OK) {
        require(ix != NULL, "an accepted file gave no index");
        search(ix);
        rotor_index_close(ix);
    } else {
        require(st == ROTOR_ERR_FORMAT || st == ROTOR_ERR_CORRUPT || st == ROTOR_ERR_UNSUPPORTED ||
                    st == ROTOR_ERR_OUT_OF_MEMORY ||
                    (st == ROTOR_ERR_IO && place == ROTOR_VECTORS_DISK),
                "refused with an unexpected status");
        require(ix == NULL, "a refused file left an index");
        require(rotor_last_error()[0] != '\0', "a refused file left no sentence");
    }
    require(budget.live == 0, "an open leaked");
    return st;
}

static uint64_t rd64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static void wr64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* FORMAT.md: the checksums a writer computes, recomputed over `buf`. */
static void reseal(uint8_t *buf, size_t size) {
    enum { SECTIONS = 20, CHECKSUM = 32, TABLE = 256, ENTRY = 32, MAX = 32 };
    if (size < TABLE + ENTRY * MAX)
        return;
    uint32_t n = (uint32_t)buf[SECTIONS] | (uint32_t)buf[SECTIONS + 1] << 8 |
                 (uint32_t)buf[SECTIONS + 2] << 16 | (uint32_t)buf[SECTIONS + 3] << 24;
    if (n > MAX)
        return;
    for (uint32_t i = 0; i < n; i++) {
        uint8_t *e = buf + TABLE + ENTRY * i;
        uint64_t off = rd64(e + 8), len = rd64(e + 16);
        if (off <= size && len <= size - off)
            wr64(e + 24, XXH3_64bits(buf + off, (size_t)len));
    }
    memset(buf + CHECKSUM, 0, 8);
    const uint64_t seed = XXH3_64bits(buf, TABLE + ENTRY * n);
    wr64(buf + CHECKSUM, seed);
    /* The update log's records, each with the header's new checksum as
     * its seed, as far as their sizes chain inside the input. */
    enum { FILE_SIZE = 24, REC = 32, REC_SIZE = 16, REC_SUM = 24 };
    for (uint64_t at = rd64(buf + FILE_SIZE); at <= size && size - at >= REC;) {
        uint8_t *r = buf + at;
        const uint64_t len = rd64(r + REC_SIZE);
        if (memcmp(r, "RLG1", 4) != 0 || len % 8 != 0 || len > size - at - REC)
            break;
        XXH3_state_t h;
        XXH3_INITSTATE(&h); /* else a stale seed field skips deriving the secret */
        XXH3_64bits_reset_withSeed(&h, seed);
        XXH3_64bits_update(&h, r, REC_SUM);
        XXH3_64bits_update(&h, r + REC, (size_t)len);
        wr64(r + REC_SUM, XXH3_64bits_digest(&h));
        at += REC + len;
    }
}

static void open_all_ways(const uint8_t *data, size_t size) {
    int fd = memfd_create("rotor-fuzz", 0);
    require(fd >= 0, "memfd_create failed");
    size_t done = 0;
    while (done < size) {
        ssize_t w = write(fd, data + done, size - done);
        require(w > 0, "cannot write the input");
        done += (size_t)w;
    }
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    /* Mapped: records are checked as searches reach them, the case a
     * fuzzer can hide a bad id in; the default open copies and checks
     * them all (with the vectors on disk here, the other reader). */
    rotor_status plain = try_open(path, 0, 0, ROTOR_VECTORS_RAM);
    rotor_status verified = try_open(path, 1, -1, ROTOR_VECTORS_RAM);
    require(plain == ROTOR_OK || verified != ROTOR_OK, "verify accepted what open refused");
    if (plain == ROTOR_OK)
        try_open(path, 0, -1, ROTOR_VECTORS_DISK);
    close(fd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    open_all_ways(data, size);
    uint8_t *copy = malloc(size ? size : 1);
    require(copy != NULL, "out of memory in the fuzz target");
    memcpy(copy, data, size);
    reseal(copy, size);
    open_all_ways(copy, size);
    free(copy);
    return 0;
}
