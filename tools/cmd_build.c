/*
 * rotor build: an index file from a vector file. The library streams the
 * file, so the vectors never sit in memory whole.
 */
#include <stdlib.h>

#include "cli.h"

int cmd_build(const cli_opts *o) {
    int rc;
    if ((rc = cli_require(o->base, "--base", "build")) ||
        (rc = cli_require(o->out, "--out", "build")))
        return rc;
    if (!cli_index_is_kind(o))
        return cli_error(CLI_EXIT_USAGE, "build: --index takes flat, vamana or ivf, not '%s'",
                         o->index);
    rotor_params p;
    if ((rc = cli_index_params(o, &p)))
        return rc;
    rotor_labels labels;
    uint64_t *off = NULL;
    uint32_t *val = NULL;
    if (o->labels != NULL) {
        rotor_file_info info;
        rotor_status pst = rotor_file_probe(o->base, &info);
        if (pst != ROTOR_OK)
            return cli_lib_error(pst, "cannot read '%s'", o->base);
        if ((rc = cli_read_labels(o->labels, info.rows, &labels, &off, &val))) {
            free(off);
            free(val);
            return rc;
        }
        p.labels = &labels;
    }
    int64_t *keys = NULL;
    size_t nkeys = 0;
    if (o->keys != NULL) {
        rotor_file_info info;
        rotor_status pst = rotor_file_probe(o->base, &info);
        if (pst != ROTOR_OK)
            rc = cli_lib_error(pst, "cannot read '%s'", o->base);
        else
            rc = cli_read_keys(o->keys, nkeys = info.rows, &keys);
        if (rc) {
            free(off);
            free(val);
            return rc;
        }
    }
    cli_progress prog;
    cli_progress_start(&prog, "build", 1, o->quiet || p.kind != ROTOR_INDEX_VAMANA);
    p.progress = cli_build_progress;
    p.progress_opaque = &prog;
    double t0 = cli_now();
    rotor_status st = rotor_index_build_file_with_keys(&p, o->base, keys, nkeys, o->out);
    free(off);
    free(val);
    free(keys);
    double seconds = cli_now() - t0;
    cli_progress_finish(&prog);
    if (st != ROTOR_OK)
        return cli_lib_error(st, "cannot build '%s'", o->out);
    if (!o->quiet) {
        rotor_index *ix = NULL;
        rotor_open_params op = rotor_open_params_default();
        op.vectors = ROTOR_VECTORS_RAM;
        if ((st = rotor_index_open(o->out, &op, &ix)) != ROTOR_OK)
            return cli_lib_error(st, "cannot read back '%s'", o->out);
        rotor_index_stats s;
        rotor_index_stats_get(ix, &s);
        rotor_tuning t;
        rotor_index_tuning(ix, &t);
        cli_print_tuning(stderr, ix, false);
        if (t.candidates > 0)
            fprintf(stderr, "build: the automatic configuration took %.0f %% of the build\n",
                    100.0 * t.auto_seconds / seconds);
        const bool disk = p.full_vectors == ROTOR_VECTORS_DISK || p.ram_budget > 0;
        const double ram = (double)(s.bytes_codes + s.bytes_graph + s.bytes_graph_codes);
        fprintf(stderr,
                "build: RAM to search: graph %.1f MiB + codes %.1f MiB%s (%.0f bytes per "
                "vector)\n",
                (double)(s.bytes_graph + s.bytes_graph_codes) / (1 << 20),
                (double)s.bytes_codes / (1 << 20),
                disk ? "; full vectors stay on disk" : " + full vectors",
                (ram + (disk ? 0 : (double)s.bytes_vectors)) / (double)s.count);
        if (s.graph_on_disk > 0)
            fprintf(stderr,
                    "build: under the RAM budget the graph stays on disk: %zu of its records "
                    "cached in RAM\n",
                    s.graph_cached);
        if (s.build_shards > 0)
            fprintf(stderr,
                    "build: the graph was built in %zu overlapping shards within --build-memory "
                    "%.0f MiB and merged\n",
                    s.build_shards, (double)p.build_memory / (1 << 20));
        char label[72];
        fprintf(stderr,
                "build: %s index of %zu x %zu (%s, %s) in %.1f s -> %s (full vectors %s when "
                "opened; peak RSS %.0f MiB)\n",
                rotor_index_kind_name(s.kind), s.count, s.dim, rotor_metric_name(s.metric),
                cli_quant_label(&s, label, sizeof label), seconds, o->out,
                disk ? "on disk" : "in RAM", (double)cli_peak_rss() / (1 << 20));
        rotor_index_close(ix);
    }
    return CLI_EXIT_OK;
}
