/*
 * rotor verify: reads every byte of a file. A data set's rows go through the
 * streaming reader, an index's sections through rotor_index_verify, which
 * reads rather than maps. The file is opened once, without blocking.
 */
#include <stdlib.h>
#include <unistd.h>

#include "cli.h"

int cmd_verify(const cli_opts *o) {
    const char *path = NULL;
    int fd;
    bool is_index;
    int rc = cli_open_file_arg(o, "verify", &path, &fd, &is_index);
    if (rc)
        return rc;
    if (is_index) {
        rotor_status st = rotor_index_verify_fd(fd, path);
        close(fd);
        if (st != ROTOR_OK)
            return cli_error(CLI_EXIT_FAIL, "verify: %s", rotor_last_error());
        printf("ok: %s is a sound rotor index (every section's checksum and id, every record "
               "of its update log checked)\n",
               path);
        return CLI_EXIT_OK;
    }
    rotor_reader *r = NULL;
    rotor_status st = rotor_reader_open_fd(fd, path, &r);
    close(fd);
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
    printf("ok: %s holds %zu rows of %zu %s (%s)\n", path, total, info->cols,
           cli_elem_type_name(info->type), rotor_file_format_name(info->format));
    rotor_reader_close(r);
    return CLI_EXIT_OK;
}
