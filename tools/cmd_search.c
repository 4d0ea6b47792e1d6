/*
 * rotor search: batch search of a query file, written out as id (and
 * distance) matrices. The queries go to the library in chunks so a progress
 * bar can follow. rotor gt (cmd_gt.c) runs the same with the exact index.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cli.h"

enum { CHUNK_ROWS = 1024 };

static bool is_npy(const char *path) {
    const size_t n = strlen(path);
    return n >= 4 && strcasecmp(path + n - 4, ".npy") == 0;
}

/* Writes ids (int64 from the library) as an int32 matrix, as every tool
 * reading ground truth expects; the keys of an index built with keys go to
 * .npy as int64, and to the int32 formats only if they fit. */
static int write_ids(const char *path, const int64_t *ids, size_t rows, size_t k, bool keys) {
    if (keys && is_npy(path)) {
        rotor_matrix m = {(void *)ids, rows, k, ROTOR_ELEM_I64};
        rotor_status st = rotor_matrix_write(path, &m);
        return st != ROTOR_OK ? cli_lib_error(st, "cannot write ids") : CLI_EXIT_OK;
    }
    for (size_t i = 0; i < rows * k; i++)
        if (ids[i] > INT32_MAX)
            return cli_error(CLI_EXIT_FAIL,
                             "key %lld does not fit the int32 ids of '%s'; write the ids to a "
                             ".npy file, which holds int64",
                             (long long)ids[i], path);
    int32_t *ids32 = malloc(rows * k * sizeof *ids32);
    if (ids32 == NULL)
        return cli_error(CLI_EXIT_FAIL, "out of memory for %zu result ids", rows * k);
    for (size_t i = 0; i < rows * k; i++)
        ids32[i] = (int32_t)ids[i];
    rotor_matrix m = {ids32, rows, k, ROTOR_ELEM_I32};
    rotor_status st = rotor_matrix_write(path, &m);
    free(ids32);
    if (st != ROTOR_OK)
        return cli_lib_error(st, "cannot write ids");
    return CLI_EXIT_OK;
}

int cli_run_search(const cli_opts *o, const char *cmd) {
    int rc;
    const bool from_file = !cli_index_is_kind(o);
    if ((!from_file && (rc = cli_require(o->base, "--base", cmd))) ||
        (rc = cli_require(o->queries, "--queries", cmd)) ||
        (rc = cli_require(o->out, "--out", cmd)))
        return rc;
    rotor_params check;
    if (!from_file && (rc = cli_index_params(o, &check)))
        return rc;

    rotor_matrix base = {0}, queries = {0};
    rotor_index *ix = NULL;
    int64_t *ids = NULL;
    float *dists = NULL;
    if ((!from_file && (rc = cli_read_f32(o->base, "base vectors", 0, &base))) ||
        (rc = cli_read_f32(o->queries, "queries", 0, &queries)))
        goto done;

    cli_opts bo = *o;
    if (bo.build_threads == 0)
        bo.build_threads = o->threads;
    if ((rc = from_file ? cli_open_index(o, true, &ix, NULL)
                        : cli_build_index(&bo, &base, &ix, NULL)))
        goto done;
    rotor_index_stats stats;
    rotor_index_stats_get(ix, &stats);
    rotor_status st;
    if (queries.cols != stats.dim) {
        rc = cli_error(CLI_EXIT_FAIL, "queries in '%s' have %zu dimensions, the index has %zu",
                       o->queries, queries.cols, stats.dim);
        goto done;
    }
    size_t k = o->k, nq = queries.rows;
    ids = malloc(nq * k * sizeof *ids);
    dists = malloc(nq * k * sizeof *dists);
    if (ids == NULL || dists == NULL) {
        rc = cli_error(CLI_EXIT_FAIL, "out of memory for %zu x %zu results", nq, k);
        goto done;
    }
    rotor_search_params sp = cli_search_params(o);
    cli_progress prog;
    cli_progress_start(&prog, cmd, nq, o->quiet);
    for (size_t r = 0; r < nq; r += CHUNK_ROWS) {
        size_t n = nq - r < CHUNK_ROWS ? nq - r : CHUNK_ROWS;
        rotor_matrix chunk = {(float *)queries.data + r * queries.cols, n, queries.cols,
                              ROTOR_ELEM_F32};
        st = rotor_index_search_batch(ix, &sp, &chunk, k, ids + r * k, dists + r * k);
        if (st != ROTOR_OK) {
            cli_progress_finish(&prog);
            rc = cli_lib_error(st, "search failed");
            goto done;
        }
        cli_progress_update(&prog, r + n);
    }
    cli_progress_finish(&prog);
    if (from_file)
        cli_note_io_fallback(ix, o->index, o->quiet);

    if ((rc = write_ids(o->out, ids, nq, k, stats.user_keys != 0)))
        goto done;
    if (o->distances != NULL) {
        rotor_matrix dm = {dists, nq, k, ROTOR_ELEM_F32};
        /* Distances past the index size are +inf, which no reader accepts;
         * a k that large is refused instead of writing an unreadable file. */
        if (k > stats.count) {
            rc = cli_error(CLI_EXIT_USAGE, "--distances needs k (%zu) <= base rows (%zu)", k,
                           stats.count);
            goto done;
        }
        st = rotor_matrix_write(o->distances, &dm);
        if (st != ROTOR_OK) {
            rc = cli_lib_error(st, "cannot write distances");
            goto done;
        }
    }
    if (!o->quiet)
        fprintf(stderr, "%s: %zu queries x %zu neighbours -> %s\n", cmd, nq, k, o->out);
done:
    free(ids);
    free(dists);
    rotor_index_close(ix);
    rotor_matrix_free(&base);
    rotor_matrix_free(&queries);
    return rc;
}

int cmd_search(const cli_opts *o) { return cli_run_search(o, "search"); }
