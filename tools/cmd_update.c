/*
 * rotor update: removes vectors from an index file and adds others.
 *
 * The file is opened writable, so each change is appended to its update
 * log (storage/FORMAT.md) and the log synced before the command reports
 * success: a change is then on disk, and the command costs the size of
 * the change, not of the index. A crash meanwhile leaves the file with
 * the changes recorded so far, each whole. --compact rewrites the file
 * instead, with its log folded into its sections (a save over the file,
 * atomic): what a long log needs now and then, since every open replays
 * it. A file that keeps its full vectors on disk cannot replay added
 * vectors when opened that way, so adds to it are always compacted.
 *
 * Removes go first, so an added vector may take a key removed by the same
 * command: that is how a vector is replaced. Both are checked against the
 * index before either is made (every key to remove present and given
 * once, no key to add taken), so bad input changes nothing; what can still
 * fail after the removal is recorded is the machine (memory, disk), and
 * the error then says the removal stands.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

static int cmp_key(const void *a, const void *b) {
    const int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static bool in_sorted(const int64_t *v, size_t n, int64_t key) {
    return n > 0 && bsearch(&key, v, n, sizeof *v, cmp_key) != NULL;
}

/* The library's own refusals, made before anything changes: a key to
 * remove that no vector has or that is given twice, a key to add given
 * twice or held by a vector this command does not remove. */
static int check_keys(const rotor_index *ix, const char *path, const int64_t *gone, size_t ngone,
                      const int64_t *keys, size_t nkeys) {
    int64_t *g = malloc((ngone + nkeys + 1) * sizeof *g);
    if (g == NULL)
        return cli_error(CLI_EXIT_FAIL, "update: out of memory checking the keys");
    int64_t *k = g + ngone;
    if (ngone > 0) /* gone and keys are NULL when not given */
        memcpy(g, gone, ngone * sizeof *g);
    if (nkeys > 0)
        memcpy(k, keys, nkeys * sizeof *k);
    qsort(g, ngone, sizeof *g, cmp_key);
    qsort(k, nkeys, sizeof *k, cmp_key);
    int rc = CLI_EXIT_OK;
    for (size_t i = 0; i < ngone && rc == CLI_EXIT_OK; i++) {
        int found = 0;
        if (i > 0 && g[i] == g[i - 1])
            rc = cli_error(CLI_EXIT_FAIL, "update: '%s' is unchanged: key %lld is given twice",
                           path, (long long)g[i]);
        else if (rotor_index_contains(ix, g[i], &found) != ROTOR_OK || !found)
            rc = cli_error(CLI_EXIT_FAIL,
                           "update: '%s' is unchanged: no vector has key %lld to remove", path,
                           (long long)g[i]);
    }
    for (size_t i = 1; i < nkeys && rc == CLI_EXIT_OK; i++)
        if (k[i] == k[i - 1])
            rc = cli_error(CLI_EXIT_FAIL, "update: '%s' is unchanged: key %lld is given twice",
                           path, (long long)k[i]);
    for (size_t i = 0; i < nkeys && rc == CLI_EXIT_OK; i++) {
        int found = 0;
        if (rotor_index_contains(ix, keys[i], &found) == ROTOR_OK && found &&
            !in_sorted(g, ngone, keys[i]))
            rc = cli_error(CLI_EXIT_FAIL,
                           "update: '%s' is unchanged: key %lld of row %zu is already in the "
                           "index (remove it in the same command to replace its vector)",
                           path, (long long)keys[i], i);
    }
    free(g);
    return rc;
}

int cmd_update(const cli_opts *o) {
    const char *path = NULL;
    int fd;
    bool is_index;
    int rc = cli_open_file_arg(o, "update", &path, &fd, &is_index);
    if (rc)
        return rc;
    if (!is_index) {
        close(fd);
        return cli_error(CLI_EXIT_USAGE, "update: '%s' is not a rotor index file", path);
    }
    /* Every input is read and checked before the index is touched. */
    int64_t *gone = NULL, *keys = NULL;
    size_t ngone = 0;
    rotor_matrix add = {0};
    if (o->remove != NULL)
        rc = cli_read_key_list(o->remove, &gone, &ngone);
    if (rc == CLI_EXIT_OK && o->add != NULL)
        rc = cli_read_f32(o->add, "vectors to add", 0, &add);
    if (rc == CLI_EXIT_OK && o->keys != NULL)
        rc = cli_read_keys(o->keys, add.rows, &keys);
    rotor_labels labels;
    uint64_t *label_off = NULL;
    uint32_t *label_val = NULL;
    if (rc == CLI_EXIT_OK && o->labels != NULL)
        rc = cli_read_labels(o->labels, add.rows, &labels, &label_off, &label_val);
    rotor_index *ix = NULL;
    rotor_status st = ROTOR_OK;
    bool compact = o->compact;
    rotor_open_params op = rotor_open_params_default();
    op.writable = !compact;
    if (rc == CLI_EXIT_OK)
        st = rotor_index_open_fd(fd, path, &op, &ix);
    rotor_index_stats s;
    if (rc == CLI_EXIT_OK && st == ROTOR_OK && add.rows > 0 &&
        rotor_index_stats_get(ix, &s) == ROTOR_OK && s.vectors_on_disk) {
        /* Its opens could not replay added vectors: fold them in. */
        rotor_index_close(ix);
        ix = NULL;
        op.vectors = ROTOR_VECTORS_RAM;
        op.writable = 0;
        compact = true;
        st = rotor_index_open_fd(fd, path, &op, &ix);
    }
    close(fd);
    if (rc == CLI_EXIT_OK && st != ROTOR_OK)
        rc = cli_lib_error(st, "update: '%s' is unchanged", path);
    if (rc == CLI_EXIT_OK)
        rc = check_keys(ix, path, gone, ngone, keys, keys != NULL ? add.rows : 0);
    /* Compacting, the changes are made in memory and the file replaced
     * at the end, all or nothing; else each is recorded as it is made. */
    bool recorded = false;
    if (rc == CLI_EXIT_OK && ngone > 0) {
        st = rotor_index_remove(ix, gone, ngone);
        recorded = st == ROTOR_OK && !compact;
    }
    if (rc == CLI_EXIT_OK && st == ROTOR_OK && add.rows > 0)
        st = rotor_index_add_with_labels(ix, &add, keys, o->labels != NULL ? &labels : NULL);
    if (rc == CLI_EXIT_OK && st == ROTOR_OK)
        st = compact ? rotor_index_save(ix, path) : rotor_index_sync(ix);
    if (rc == CLI_EXIT_OK && st != ROTOR_OK) {
        /* A key the index holds already, or one it lacks, is bad data in
         * the files given, not a usage mistake: exit 1. */
        cli_lib_error(st, "update: '%s' %s", path,
                      recorded ? "holds the removals, not the additions" : "is unchanged");
        if (recorded)
            (void)rotor_index_sync(ix); /* the file as the sentence says, on disk */
        rc = CLI_EXIT_FAIL;
    }
    if (rc == CLI_EXIT_OK && rotor_index_stats_get(ix, &s) == ROTOR_OK && !o->quiet) {
        printf("update: %s: %zu removed, %zu added; %zu vectors, %zu removed not yet "
               "consolidated, %zu slots free\n",
               path, ngone, add.rows, s.count, s.unconsolidated, s.free_slots);
        if (compact)
            printf("update: %s rewritten with its update log folded in\n", path);
        else
            printf("update: recorded in its update log and synced (%zu records, %zu bytes; "
                   "'rotor update %s --compact' folds them in)\n",
                   s.log_records, s.log_bytes, path);
    }
    rotor_index_close(ix);
    free(gone);
    free(keys);
    free(label_off);
    free(label_val);
    free(add.data);
    return rc;
}
