/*
 * Fuzz target for the CLI's argument parser (tools/args.c). The input is an
 * argument vector, the arguments separated by NUL bytes; cli_parse sees it
 * as main would (after the program name) and runs nothing.
 *
 * Besides "no crash, no out-of-bounds access" (the sanitizers' job), the
 * target aborts when an accepted command line breaks what the commands
 * rely on: a command is named, every value lies in the range the help
 * states, every string option points into the arguments it was given, and
 * a parsed --sweep holds at most 256 values per list, each up to 100000,
 * L and nprobe from 1. Usage errors print one line on stderr each; run
 * libFuzzer with -close_fd_mask=2 to keep them quiet.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { MAX_ARGS = 64, MAX_BYTES = 4096 };

static bool inside(const char *p, const char *buf, size_t n) {
    return p == NULL || (p >= buf && p < buf + n);
}

static void check_list(const cli_sweep_list *l, unsigned lo) {
    if (l->n > sizeof l->v / sizeof l->v[0])
        abort();
    for (size_t i = 0; i < l->n; i++)
        if (l->v[i] < lo || l->v[i] > 100000)
            abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > MAX_BYTES)
        return 0;
    static char buf[MAX_BYTES + 1];
    memcpy(buf, data, size);
    buf[size] = '\0';
    char *argv[MAX_ARGS + 1];
    int argc = 0;
    for (size_t at = 0; at <= size && argc < MAX_ARGS;) {
        argv[argc++] = buf + at;
        at += strlen(buf + at) + 1;
    }
    argv[argc] = NULL;

    const cli_command *cmd = NULL;
    cli_opts o;
    int rc = cli_parse(argc, argv, &cmd, &o);
    if (rc == CLI_EXIT_USAGE || rc == CLI_PARSED_HELP || rc == CLI_PARSED_VERSION)
        return 0;
    if (rc != CLI_EXIT_OK || cmd == NULL)
        abort();
    const char *strings[] = {o.base, o.queries, o.gt,         o.index,       o.out,  o.distances,
                             o.json, o.quant,   o.walk_quant, o.build_space, o.sweep};
    for (size_t i = 0; i < sizeof strings / sizeof strings[0]; i++)
        if (!inside(strings[i], buf, size + 1) || (strings[i] != NULL && strings[i][0] == '\0'))
            abort();
    if (o.k < 1 || o.k > (1u << 20) || o.starts > CLI_MAX_STARTS || o.runs < 1 || o.runs > 1000 ||
        o.threads > 1024 || o.argc_rest < 0 || o.argc_rest > argc)
        abort();
    if (o.alpha != 0 && !(o.alpha >= 1 && o.alpha <= 4))
        abort();
    if (o.neighbor_codes < -1 || o.neighbor_codes > 1 || o.load < -1 || o.load > 1)
        abort();
    if (o.rerank_all < 0 || o.rerank_all > 1 || o.rerank_window > CLI_MAX_RERANK_WINDOW)
        abort();
    if (!(cmd->flags & OPT_FILE_ARG) && o.argc_rest != 0)
        abort();
    if (o.sweep != NULL) {
        check_list(&o.sweep_values.nav, 1);
        check_list(&o.sweep_values.rerank, 0);
    }
    return 0;
}
