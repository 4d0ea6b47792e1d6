/*
 * rotor gt: the exact nearest neighbours of each query, by the flat index
 * searched the same way as rotor search.
 */
#include "cli.h"

int cmd_gt(const cli_opts *o) {
    if (!o->k_set)
        return cli_error(CLI_EXIT_USAGE, "gt needs --k; see 'rotor gt --help'");
    return cli_run_search(o, "gt");
}
