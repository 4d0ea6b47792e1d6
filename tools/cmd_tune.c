/*
 * rotor tune: measures an index file's calibration table again, with the
 * given queries (exact neighbours computed over the index's vectors) or
 * with rows of the index searched as if held out, and writes the file back
 * in place, atomically.
 */
#include <stdlib.h>
#include <unistd.h>

#include "cli.h"

int cmd_tune(const cli_opts *o) {
    const char *path = NULL;
    int fd;
    bool is_index;
    int rc = cli_open_file_arg(o, "tune", &path, &fd, &is_index);
    if (rc)
        return rc;
    if (!is_index) {
        close(fd);
        return cli_error(CLI_EXIT_USAGE, "tune: '%s' is not a rotor index file", path);
    }
    rotor_open_params op = rotor_open_params_default();
    rotor_index *ix = NULL;
    rotor_status st = rotor_index_open_fd(fd, path, &op, &ix);
    close(fd);
    if (st != ROTOR_OK)
        return cli_lib_error(st, "tune");
    rotor_matrix queries = {0};
    if (o->queries != NULL &&
        (rc = cli_read_f32(o->queries, "queries", o->max_queries, &queries))) {
        rotor_index_close(ix);
        return rc;
    }
    double t0 = cli_now();
    st = rotor_index_tune(ix, o->queries ? &queries : NULL, o->threads);
    double seconds = cli_now() - t0;
    if (st == ROTOR_OK)
        st = rotor_index_save(ix, path);
    if (st == ROTOR_OK) {
        cli_print_tuning(stdout, ix, true);
        printf("tune: %s calibrated in %.1f s and saved\n", path, seconds);
    }
    free(queries.data);
    rotor_index_close(ix);
    return st == ROTOR_OK ? CLI_EXIT_OK : cli_lib_error(st, "tune");
}
