/*
 * rotor info and rotor verify, on data set files and index files. An index
 * file is told by the magic its first bytes carry (storage/FORMAT.md).
 * info reads only headers (an index is opened, which maps it and checks its
 * header); verify reads every byte: a data set's rows through the streaming
 * reader, an index's sections through rotor_index_verify.
 */
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static bool is_index_file(const char *path) {
    char magic[8] = {0};
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return false;
    size_t got = fread(magic, 1, sizeof magic, f);
    fclose(f);
    return got == sizeof magic && memcmp(magic, "ROTORIDX", 8) == 0;
}

static int index_info(const cli_opts *o, const char *path) {
    cli_opts io = *o;
    io.index = path;
    rotor_index *ix = NULL;
    double open_s;
    int rc = cli_open_index(&io, false, &ix, &open_s);
    if (rc)
        return rc;
    rotor_index_stats s;
    rotor_index_stats_get(ix, &s);
    const double n = (double)s.count;
    printf("file:          %s (rotor index)\n", path);
    printf("kind:          %s\n", rotor_index_kind_name(s.kind));
    printf("metric:        %s\n", rotor_metric_name(s.metric));
    printf("vectors:       %zu x %zu\n", s.count, s.dim);
    printf("quantizer:     %s (%zu bytes per code)\n", s.quant, s.code_bytes);
    if (s.start_points > 0)
        printf("start points:  %zu in %zu groups\n", s.start_points, s.start_groups);
    printf("full vectors:  %s, %.1f bytes per vector\n", s.vectors_on_disk ? "on disk" : "in RAM",
           (double)(s.vectors_on_disk ? s.bytes_vectors_disk : s.bytes_vectors) / n);
    if (s.vectors_on_disk)
        printf("vector reads:  %s%s\n", s.io_backend, s.direct_io ? ", O_DIRECT" : ", page cache");
    printf("RAM per vector: codes %.1f, graph %.1f, graph codes %.1f, full vectors %.1f bytes\n",
           (double)s.bytes_codes / n, (double)s.bytes_graph / n, (double)s.bytes_graph_codes / n,
           (double)s.bytes_vectors / n);
    printf("opened in:     %.3f s (mapped, header and small sections checked)\n", open_s);
    rotor_index_close(ix);
    return CLI_EXIT_OK;
}

static const char *type_name(rotor_elem_type t) {
    switch (t) {
    case ROTOR_ELEM_F32: return "float32";
    case ROTOR_ELEM_U8: return "uint8";
    case ROTOR_ELEM_I8: return "int8";
    case ROTOR_ELEM_I32: return "int32";
    }
    return "unknown";
}

static int one_path(const cli_opts *o, const char *cmd, const char **path) {
    if (o->argc_rest != 1)
        return cli_error(CLI_EXIT_USAGE, "%s takes exactly one FILE; see 'rotor %s --help'", cmd,
                         cmd);
    *path = o->argv_rest[0];
    return CLI_EXIT_OK;
}

int cmd_info(const cli_opts *o) {
    const char *path = NULL;
    int rc = one_path(o, "info", &path);
    if (rc)
        return rc;
    if (is_index_file(path))
        return index_info(o, path);
    rotor_file_info info;
    rotor_status st = rotor_file_probe(path, &info);
    if (st != ROTOR_OK)
        return cli_lib_error(st, "info");
    printf("file:       %s\n", path);
    printf("format:     %s%s\n", rotor_file_format_name(info.format),
           info.compressed ? " (gzip)" : "");
    printf("elements:   %s\n", type_name(info.type));
    printf("rows:       %zu\n", info.rows);
    printf("dimensions: %zu\n", info.cols);
    printf("data bytes: %zu\n", info.rows * info.cols * rotor_elem_size(info.type));
    return CLI_EXIT_OK;
}

int cmd_verify(const cli_opts *o) {
    const char *path = NULL;
    int rc = one_path(o, "verify", &path);
    if (rc)
        return rc;
    if (is_index_file(path)) {
        rotor_status st = rotor_index_verify(path);
        if (st != ROTOR_OK)
            return cli_error(CLI_EXIT_FAIL, "verify: %s", rotor_last_error());
        printf("ok: %s is a sound rotor index (every section's checksum and id checked)\n", path);
        return CLI_EXIT_OK;
    }
    rotor_reader *r = NULL;
    rotor_status st = rotor_reader_open(path, &r);
    if (st != ROTOR_OK)
        return cli_lib_error(st, "verify");
    const rotor_file_info *info = rotor_reader_info(r);
    size_t row_bytes = info->cols * rotor_elem_size(info->type);
    size_t chunk = row_bytes > 0 && row_bytes < (8u << 20) ? (8u << 20) / row_bytes : 1;
    void *buf = malloc(chunk * row_bytes);
    if (buf == NULL) {
        rotor_reader_close(r);
        return cli_error(CLI_EXIT_FAIL, "out of memory reading '%s'", path);
    }
    size_t total = 0, got = 0;
    do {
        st = rotor_reader_read(r, buf, chunk, &got);
        total += got;
    } while (st == ROTOR_OK && got > 0);
    free(buf);
    if (st != ROTOR_OK) {
        rotor_reader_close(r);
        return cli_lib_error(st, "verify");
    }
    printf("ok: %s holds %zu rows of %zu %s (%s)\n", path, total, info->cols, type_name(info->type),
           rotor_file_format_name(info->format));
    rotor_reader_close(r);
    return CLI_EXIT_OK;
}
