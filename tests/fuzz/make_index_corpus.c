/*
 * Writes the seed corpus of fuzz_index_open: one small index of each kind
 * and feature into the directory given (tests/fuzz/corpus/index_open).
 * Regenerate it when the index file format changes:
 *   build/.../tests/fuzz/make_index_corpus tests/fuzz/corpus/index_open
 * Small on purpose (64 vectors of 8 dimensions): libFuzzer mutates whole
 * files, and each section already takes a 4 KiB page.
 */
#include <stdio.h>

#include "rotor.h"

enum { N = 64, D = 8 };

static int copy_file(const char *from, const char *to) {
    FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
    int rc = in != NULL && out != NULL ? 0 : 1;
    char buf[4096];
    size_t n;
    while (rc == 0 && (n = fread(buf, 1, sizeof buf, in)) > 0)
        rc = fwrite(buf, 1, n, out) == n ? 0 : 1;
    if (in != NULL)
        fclose(in);
    if (out != NULL && fclose(out) != 0)
        rc = 1;
    return rc;
}

/* Files with an update log (storage/FORMAT.md): a record of every type,
 * rows of every element type, labels by key and by row and with added
 * rows; and one whose last record a crash cut short. */
static int write_logs(const char *dir, const float *base) {
    static const char *const from[] = {"flat", "vamana_labels"};
    for (size_t i = 0; i < 2; i++) {
        char src[4096], dst[4096];
        snprintf(src, sizeof src, "%s/%s.rotor", dir, from[i]);
        snprintf(dst, sizeof dst, "%s/%s_log.rotor", dir, from[i]);
        if (copy_file(src, dst) != 0) {
            fprintf(stderr, "cannot copy %s\n", src);
            return 1;
        }
        rotor_open_params op = rotor_open_params_default();
        op.writable = 1;
        rotor_index *ix = NULL;
        const int64_t keys[3] = {900, 901, 902}, gone[2] = {5, 901}, upd[1] = {7};
        uint8_t bytes[2 * D];
        for (size_t j = 0; j < sizeof bytes; j++)
            bytes[j] = (uint8_t)(j * 29);
        const rotor_matrix add = {(void *)base, 3, D, ROTOR_ELEM_F32};
        const rotor_matrix small = {bytes, 2, D, ROTOR_ELEM_U8};
        const rotor_matrix repl = {(void *)(base + 3 * D), 1, D, ROTOR_ELEM_F32};
        const uint64_t off[3] = {0, 2, 3};
        const uint32_t val[3] = {1, 70, 2};
        const rotor_labels by_key = {off, val, 2}, by_row = {off, val, 1};
        const int64_t ids[2] = {900, 4}, lkeys[2] = {903, 904};
        const rotor_matrix labelled = {(void *)(base + 4 * D), 2, D, ROTOR_ELEM_F32};
        if (rotor_index_open(dst, &op, &ix) != ROTOR_OK ||
            rotor_index_add_with_keys(ix, &add, keys) != ROTOR_OK ||
            rotor_index_add(ix, &small) != ROTOR_OK ||
            rotor_index_remove(ix, gone, 2) != ROTOR_OK ||
            rotor_index_update(ix, &repl, upd) != ROTOR_OK ||
            rotor_index_set_labels(ix, ids, &by_key) != ROTOR_OK ||
            rotor_index_set_labels(ix, NULL, &by_row) != ROTOR_OK ||
            rotor_index_add_with_labels(ix, &labelled, lkeys, &by_key) != ROTOR_OK ||
            rotor_index_sync(ix) != ROTOR_OK) {
            fprintf(stderr, "%s: %s\n", dst, rotor_last_error());
            rotor_index_close(ix);
            return 1;
        }
        rotor_index_close(ix);
    }
    char src[4096], dst[4096];
    snprintf(src, sizeof src, "%s/flat_log.rotor", dir);
    snprintf(dst, sizeof dst, "%s/flat_log_torn.rotor", dir);
    FILE *f = copy_file(src, dst) == 0 ? fopen(dst, "ab") : NULL;
    /* The start of a remove record, cut after its type. */
    static const unsigned char cut[] = {'R', 'L', 'G', '1', 2, 0, 0, 0, 6, 0, 0, 0, 0};
    if (f == NULL || fwrite(cut, 1, sizeof cut, f) != sizeof cut || fclose(f) != 0) {
        fprintf(stderr, "cannot write %s\n", dst);
        return 1;
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: make_index_corpus DIR\n");
        return 2;
    }
    static float base[N * D];
    uint64_t s = 12345;
    for (size_t i = 0; i < N * D; i++) {
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        base[i] = (float)(s >> 40) / (float)(1 << 24) - 0.5f;
    }
    const struct {
        const char *name;
        rotor_index_kind kind;
        rotor_metric metric;
        const char *quant, *walk_quant;
        int neighbor_codes, on_disk, keyed;
        int labelled;
        int removed; /* vectors removed: 10 consolidated, 2 more pending */
        uint64_t ram_budget;
        int bytes; /* rows of whole numbers 0..255: the vectors kept as bytes */
    } kinds[] = {
        {"flat", ROTOR_INDEX_FLAT, ROTOR_METRIC_L2, NULL, NULL, 0, 0, 0, 0, 0, 0, 0},
        {"flat_tq4_ip", ROTOR_INDEX_FLAT, ROTOR_METRIC_IP, "tq4", NULL, 0, 1, 0, 0, 0, 0, 0},
        {"vamana", ROTOR_INDEX_VAMANA, ROTOR_METRIC_L2, NULL, NULL, 0, 0, 0, 0, 0, 0, 0},
        {"vamana_pq4x4_cos", ROTOR_INDEX_VAMANA, ROTOR_METRIC_COSINE, "pq4x4", NULL, 1, 1, 0, 0, 0,
         0, 0},
        {"vamana_bin1_ids", ROTOR_INDEX_VAMANA, ROTOR_METRIC_L2, "bin1", NULL, 0, 0, 0, 0, 0, 0, 0},
        {"vamana_walk", ROTOR_INDEX_VAMANA, ROTOR_METRIC_L2, "tqip3", "pq2x4", 1, 0, 0, 0, 0, 0, 0},
        {"ivf_bin2", ROTOR_INDEX_IVF, ROTOR_METRIC_L2, "bin2", NULL, 0, 1, 0, 0, 0, 0, 0},
        {"vamana_bin1fs_sq8", ROTOR_INDEX_VAMANA, ROTOR_METRIC_COSINE, "sq8", "bin1fs", 1, 0, 0, 0,
         0, 0, 0},
        /* keys of the caller's, past 2^32: the keys section */
        {"vamana_sq8_keys", ROTOR_INDEX_VAMANA, ROTOR_METRIC_L2, "sq8", NULL, 0, 0, 1, 0, 0, 0, 0},
        /* labels (row i: i % 3, and 70 on every fifth): the labels section */
        {"vamana_labels", ROTOR_INDEX_VAMANA, ROTOR_METRIC_L2, "sq8", NULL, 0, 0, 0, 1, 0, 0, 0},
        /* removed vectors: the deleted section, emptied records, shorter lists */
        {"vamana_removed", ROTOR_INDEX_VAMANA, ROTOR_METRIC_L2, "sq8", "bin1fs", 1, 0, 1, 0, 1, 0,
         0},
        {"ivf_removed", ROTOR_INDEX_IVF, ROTOR_METRIC_L2, "bin2", NULL, 0, 0, 0, 0, 1, 0, 0},
        /* a RAM budget below the graph: the nodes section, opened on disk */
        {"vamana_budget", ROTOR_INDEX_VAMANA, ROTOR_METRIC_L2, "bin1", NULL, 0, 0, 0, 0, 0, 3000,
         0},
        /* byte rows: the vectors (bytes) section */
        {"vamana_bytes", ROTOR_INDEX_VAMANA, ROTOR_METRIC_L2, "sq8", NULL, 0, 0, 0, 0, 0, 0, 1},
        {"flat_bytes_ip", ROTOR_INDEX_FLAT, ROTOR_METRIC_IP, NULL, NULL, 0, 0, 0, 0, 0, 0, 1},
    };
    static float whole[N * D];
    for (size_t i = 0; i < N * D; i++)
        whole[i] = (float)(int)((base[i] + 0.5f) * 255.0f);
    static const int64_t plain_gone[12] = {3, 5, 8, 13, 21, 34, 55, 1, 2, 40, 41, 42};
    static uint64_t label_off[N + 1];
    static uint32_t label_val[2 * N];
    for (size_t i = 0, at = 0; i < N; i++) {
        label_off[i] = at;
        label_val[at++] = (uint32_t)(i % 3);
        if (i % 5 == 0)
            label_val[at++] = 70;
        label_off[i + 1] = at;
    }
    const rotor_labels labels = {label_off, label_val, N};
    static int64_t keys[N];
    for (size_t i = 0; i < N; i++)
        keys[i] = 1000000000000LL + 37 * (int64_t)((i * 13) % N);
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        rotor_params p = rotor_params_default();
        p.kind = kinds[i].kind;
        p.metric = kinds[i].metric;
        p.quant = kinds[i].quant;
        p.walk_quant = kinds[i].walk_quant;
        p.neighbor_codes = kinds[i].neighbor_codes;
        p.full_vectors = kinds[i].on_disk ? ROTOR_VECTORS_DISK : ROTOR_VECTORS_RAM;
        p.graph_degree = 8;
        p.build_list = 16;
        p.nlist = 4;
        p.threads = 1;
        p.labels = kinds[i].labelled ? &labels : NULL;
        p.ram_budget = kinds[i].ram_budget;
        rotor_matrix m = {kinds[i].bytes ? whole : base, N, D, ROTOR_ELEM_F32};
        rotor_index *ix = NULL;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s.rotor", argv[1], kinds[i].name);
        int64_t gone[12];
        for (size_t j = 0; j < 12; j++)
            gone[j] = kinds[i].keyed ? keys[plain_gone[j]] : plain_gone[j];
        if (rotor_index_build_with_keys(&p, &m, kinds[i].keyed ? keys : NULL, &ix) != ROTOR_OK ||
            (kinds[i].removed && (rotor_index_remove(ix, gone, 10) != ROTOR_OK ||
                                  rotor_index_remove(ix, gone + 10, 2) != ROTOR_OK)) ||
            rotor_index_save(ix, path) != ROTOR_OK) {
            fprintf(stderr, "%s: %s\n", kinds[i].name, rotor_last_error());
            rotor_index_close(ix);
            return 1;
        }
        rotor_index_close(ix);
    }
    return write_logs(argv[1], base);
}
