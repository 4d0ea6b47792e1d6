/*
 * rotor info and rotor verify on data set files. info reads only the header;
 * verify streams every row through the library's reader, which checks record
 * headers, sizes and non-finite floats as it goes.
 */
#include <stdlib.h>

#include "cli.h"

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
