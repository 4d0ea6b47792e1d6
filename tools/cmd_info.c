/*
 * rotor info, on data set files and index files: it reads only headers (an
 * index is opened, which maps it and checks its header). An index file is
 * told by the magic its first bytes carry (storage/FORMAT.md). The file is
 * opened once, without blocking, and the library works on that descriptor.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

static int index_info(const cli_opts *o, const char *path, int fd) {
    rotor_open_params op = rotor_open_params_default();
    op.vectors = (rotor_vectors_place)o->full_vectors;
    op.io = o->io;
    op.ram_budget = o->ram_budget;
    op.load = 0; /* what it prints is in the small sections: nothing to copy */
    rotor_index *ix = NULL;
    double t0 = cli_now();
    rotor_status st = rotor_index_open_fd(fd, path, &op, &ix);
    double open_s = cli_now() - t0;
    if (st != ROTOR_OK)
        return cli_lib_error(st, "info");
    rotor_index_stats s;
    rotor_index_stats_get(ix, &s);
    const double n = (double)s.count;
    printf("file:          %s (rotor index)\n", path);
    printf("kind:          %s\n", rotor_index_kind_name(s.kind));
    printf("metric:        %s\n", rotor_metric_name(s.metric));
    printf("vectors:       %zu x %zu\n", s.count, s.dim);
    printf("removed:       %zu (%zu not yet consolidated; %zu slots free for the next adds); "
           "%zu slots\n",
           s.deleted, s.unconsolidated, s.free_slots, s.slots);
    char label[72];
    printf("quantizer:     %s (%zu bytes per code)\n", cli_quant_label(&s, label, sizeof label),
           s.code_bytes);
    if (s.user_keys)
        printf("keys:          user keys (%.1f bytes per vector with their table)\n",
               (double)s.bytes_keys / n);
    else
        printf("keys:          row numbers\n");
    if (s.labels > 0)
        printf("labels:        %zu distinct, on %zu vectors (%.1f bytes per vector)\n", s.labels,
               s.labelled, (double)s.bytes_labels / n);
    else
        printf("labels:        none\n");
    if (s.log_records > 0 || s.log_tail_bytes > 0) {
        printf("update log:    %zu record%s, %zu bytes (changes since the file was written, "
               "replayed at open; 'rotor update FILE --compact' folds them in)\n",
               s.log_records, s.log_records == 1 ? "" : "s", s.log_bytes);
        if (s.log_skipped > 0)
            printf("               %zu of them changes that had failed, skipped\n", s.log_skipped);
        if (s.log_tail_bytes > 0)
            printf("               then %zu bytes of an unfinished record, ignored (an append "
                   "a crash cut short)\n",
                   s.log_tail_bytes);
    } else {
        printf("update log:    none\n");
    }
    if (s.start_points > 0)
        printf("start points:  %zu in %zu groups\n", s.start_points, s.start_groups);
    const bool bytes = !s.vectors_on_disk && s.bytes_vectors == s.slots * s.dim;
    printf("full vectors:  %s, %.1f bytes per vector%s\n", s.vectors_on_disk ? "on disk" : "in RAM",
           (double)(s.vectors_on_disk ? s.bytes_vectors_disk : s.bytes_vectors) / n,
           bytes ? " (a byte a coordinate: every one a whole number 0..255)" : "");
    if (s.vectors_on_disk)
        printf("vector reads:  %s%s\n", s.io_backend, s.direct_io ? ", O_DIRECT" : ", page cache");
    if (s.graph_on_disk > 0)
        printf("graph:         on disk under the RAM budget: %zu records cached in RAM, the "
               "other %zu read by the searches\n",
               s.graph_cached, s.graph_on_disk);
    if (s.build_shards > 0)
        printf("graph build:   in %zu overlapping shards, merged (--build-memory)\n",
               s.build_shards);
    printf("RAM per vector: codes %.1f, graph %.1f, graph codes %.1f, full vectors %.1f bytes\n",
           (double)s.bytes_codes / n, (double)s.bytes_graph / n, (double)s.bytes_graph_codes / n,
           (double)s.bytes_vectors / n);
    printf("RAM searched:  %.1f MiB (graph and codes%s)\n",
           (double)(s.bytes_codes + s.bytes_graph + s.bytes_graph_codes + s.bytes_vectors) /
               (1 << 20),
           s.vectors_on_disk ? "; full vectors read from disk" : " and full vectors");
    cli_print_tuning(stdout, ix, true);
    printf("opened in:     %.3f s (mapped, header and small sections checked)\n", open_s);
    rotor_index_close(ix);
    return CLI_EXIT_OK;
}

int cmd_info(const cli_opts *o) {
    const char *path = NULL;
    int fd;
    bool is_index;
    int rc = cli_open_file_arg(o, "info", &path, &fd, &is_index);
    if (rc)
        return rc;
    if (is_index) {
        rc = index_info(o, path, fd);
        close(fd);
        return rc;
    }
    rotor_reader *r = NULL;
    rotor_status st = rotor_reader_open_fd(fd, path, &r);
    close(fd);
    if (st != ROTOR_OK)
        return cli_lib_error(st, "info");
    rotor_file_info info = *rotor_reader_info(r);
    rotor_reader_close(r);
    printf("file:       %s\n", path);
    printf("format:     %s%s\n", rotor_file_format_name(info.format),
           info.compressed ? " (gzip)" : "");
    printf("elements:   %s\n", cli_elem_type_name(info.type));
    printf("rows:       %zu\n", info.rows);
    printf("dimensions: %zu\n", info.cols);
    printf("data bytes: %zu\n", info.rows * info.cols * rotor_elem_size(info.type));
    return CLI_EXIT_OK;
}
