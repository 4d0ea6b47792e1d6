/*
 * rotor — the command-line tool. main parses (args.c), checks every path
 * (paths.c), then runs the command. Every failure ends in one line on
 * stderr and a non-zero exit: 2 for a usage mistake, 1 when the work itself
 * failed.
 */
#include <signal.h>
#include <stdio.h>

#include "cli.h"

/* In the order of cli_commands. */
static int (*const runners[])(const cli_opts *) = {
    cmd_gt,     cmd_bench, cmd_search, cmd_build,      cmd_info,
    cmd_verify, cmd_tune,  cmd_update, cmd_eval_quant,
};

int main(int argc, char **argv) {
    /* A write past RLIMIT_FSIZE then fails with EFBIG, which the writer
     * reports with the file's name, instead of killing the process and
     * leaving the old file's replacement half written. */
    signal(SIGXFSZ, SIG_IGN);
    if (sizeof runners / sizeof runners[0] != cli_n_commands)
        return cli_error(CLI_EXIT_FAIL, "internal error: %zu commands, %zu runners", cli_n_commands,
                         sizeof runners / sizeof runners[0]);
    const cli_command *c = NULL;
    cli_opts o;
    int rc = cli_parse(argc - 1, argv + 1, &c, &o);
    if (rc == CLI_PARSED_HELP) {
        if (c != NULL)
            cli_usage_command(c);
        else
            cli_usage_all();
        return CLI_EXIT_OK;
    }
    if (rc == CLI_PARSED_VERSION) {
        printf("rotor %s (simd %s)\n", rotor_version_string(), rotor_simd_level());
        return CLI_EXIT_OK;
    }
    if (rc != CLI_EXIT_OK)
        return rc;
    if ((rc = cli_check_paths(c, &o)) != CLI_EXIT_OK)
        return rc;
    return runners[c - cli_commands](&o);
}
