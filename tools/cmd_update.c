/*
 * rotor update: removes vectors from an index file and adds others, then
 * writes the file back in place, atomically (rotor_index_save), so the
 * file holds the old index or the updated one, never a part. Removes go
 * first, so an added vector may take a key removed by the same command:
 * that is how a vector is replaced.
 */
#include <stdlib.h>
#include <unistd.h>

#include "cli.h"

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
    rotor_index *ix = NULL;
    rotor_status st = ROTOR_OK;
    if (rc == CLI_EXIT_OK) {
        rotor_open_params op = rotor_open_params_default();
        st = rotor_index_open_fd(fd, path, &op, &ix);
    }
    close(fd);
    if (rc == CLI_EXIT_OK && st == ROTOR_OK && ngone > 0)
        st = rotor_index_remove(ix, gone, ngone);
    if (rc == CLI_EXIT_OK && st == ROTOR_OK && add.rows > 0)
        st = rotor_index_add_with_keys(ix, &add, keys);
    if (rc == CLI_EXIT_OK && st == ROTOR_OK)
        st = rotor_index_save(ix, path);
    /* A key the index holds already, or one it lacks, is bad data in the
     * files given, not a usage mistake: exit 1, as for a bad keys file. */
    if (rc == CLI_EXIT_OK && st != ROTOR_OK) {
        cli_lib_error(st, "update: '%s' is unchanged", path);
        rc = CLI_EXIT_FAIL;
    }
    if (rc == CLI_EXIT_OK) {
        rotor_index_stats s;
        rotor_index_stats_get(ix, &s);
        if (!o->quiet)
            printf("update: %s: %zu removed, %zu added; %zu vectors, %zu removed not yet "
                   "reclaimed\n",
                   path, ngone, add.rows, s.count, s.deleted);
    }
    rotor_index_close(ix);
    free(gone);
    free(keys);
    free(add.data);
    return rc;
}
