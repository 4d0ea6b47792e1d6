/*
 * Paths the CLI is given: outputs checked before any work starts, inputs
 * opened once without blocking.
 *
 * An output that names an input would destroy the data being read (rotor
 * build --base x.fvecs --out x.fvecs replaced the vectors with an index), so
 * outputs and inputs are compared by device and inode, which catches hard
 * links, symbolic links and different spellings of one path. The rule for
 * an output on its own (regular or missing, links followed) is the
 * library's, rotor_path_check_output, so the CLI and the writers agree.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"

typedef struct named_path {
    const char *flag, *path;
} named_path;

/* The absolute path `path` resolves to, whether it exists or not (then its
 * directory is resolved and its name appended); false when even the
 * directory cannot be resolved. */
static bool canonical(const char *path, char *out) {
    if (realpath(path, out) != NULL)
        return true;
    char dir[PATH_MAX];
    const char *slash = strrchr(path, '/');
    const char *name = slash ? slash + 1 : path;
    if (slash == NULL)
        snprintf(dir, sizeof dir, ".");
    else if (slash == path)
        snprintf(dir, sizeof dir, "/");
    else
        snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    char real[PATH_MAX];
    if (realpath(dir, real) == NULL)
        return false;
    return snprintf(out, PATH_MAX, "%s/%s", real, name) < PATH_MAX;
}

/* Same file: both exist and share device and inode (hard links, symbolic
 * links), or neither exists yet and both resolve to one name. */
static bool same_file(const char *a, const char *b) {
    struct stat sa, sb;
    if (stat(a, &sa) == 0 && stat(b, &sb) == 0)
        return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
    char ca[PATH_MAX], cb[PATH_MAX];
    return strcmp(a, b) == 0 || (canonical(a, ca) && canonical(b, cb) && strcmp(ca, cb) == 0);
}

int cli_check_paths(const cli_command *c, const cli_opts *o) {
    named_path outs[] = {{"--out", o->out}, {"--distances", o->distances}, {"--json", o->json}};
    named_path ins[] = {
        {"--base", o->base},
        {"--queries", o->queries},
        {"--gt", o->gt},
        {"--index", (c->flags & OPT_INDEX) && !cli_index_is_kind(o) ? o->index : NULL},
    };
    const size_t n_outs = sizeof outs / sizeof outs[0], n_ins = sizeof ins / sizeof ins[0];
    for (size_t i = 0; i < n_outs; i++) {
        if (outs[i].path == NULL)
            continue;
        if (rotor_path_check_output(outs[i].path) != ROTOR_OK)
            return cli_error(CLI_EXIT_FAIL, "%s: %s", outs[i].flag, rotor_last_error());
        for (size_t j = 0; j < i; j++)
            if (outs[j].path != NULL &&
                (strcmp(outs[i].path, outs[j].path) == 0 || same_file(outs[i].path, outs[j].path)))
                return cli_error(CLI_EXIT_USAGE, "%s and %s name the same file '%s'", outs[j].flag,
                                 outs[i].flag, outs[i].path);
        for (size_t j = 0; j < n_ins; j++)
            if (ins[j].path != NULL &&
                (strcmp(outs[i].path, ins[j].path) == 0 || same_file(outs[i].path, ins[j].path)))
                return cli_error(CLI_EXIT_USAGE,
                                 "%s '%s' is the %s file: writing it would destroy the input",
                                 outs[i].flag, outs[i].path, ins[j].flag);
    }
    return CLI_EXIT_OK;
}

static int not_regular(const char *path, mode_t m) {
    return cli_error(CLI_EXIT_FAIL, "cannot read '%s': it is %s, not a regular file", path,
                     S_ISDIR(m)    ? "a directory"
                     : S_ISFIFO(m) ? "a FIFO"
                     : S_ISSOCK(m) ? "a socket"
                     : S_ISCHR(m)  ? "a character device"
                     : S_ISBLK(m)  ? "a block device"
                                   : "something else");
}

int cli_open_input(const char *path, int *fd, bool *is_index) {
    *fd = -1;
    *is_index = false;
    int f = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (f < 0) {
        int e = errno;
        struct stat sb;
        /* A socket cannot be opened at all (ENXIO): say what it is. */
        if (stat(path, &sb) == 0 && !S_ISREG(sb.st_mode))
            return not_regular(path, sb.st_mode);
        return cli_error(CLI_EXIT_FAIL, "cannot open '%s': %s", path, strerror(e));
    }
    struct stat sb;
    if (fstat(f, &sb) != 0) {
        int e = errno;
        close(f);
        return cli_error(CLI_EXIT_FAIL, "cannot read '%s': %s", path, strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(f);
        return not_regular(path, sb.st_mode);
    }
    char magic[8] = {0};
    ssize_t got = pread(f, magic, sizeof magic, 0);
    /* An index is told by its magic; a name ending in .rotor is taken as
     * one too, so that a damaged magic is reported as "not a rotor index"
     * rather than as a data set of unknown format. */
    const char *dot = strrchr(path, '.');
    *is_index = (got == (ssize_t)sizeof magic && memcmp(magic, "ROTORIDX", 8) == 0) ||
                (dot != NULL && strcmp(dot, ".rotor") == 0);
    *fd = f;
    return CLI_EXIT_OK;
}

int cli_append_line(const char *path, const char *line, size_t len) {
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NONBLOCK | O_NOCTTY, 0666);
    if (fd < 0)
        return cli_error(CLI_EXIT_FAIL, "cannot append to '%s': %s", path, strerror(errno));
    struct stat sb;
    int rc = CLI_EXIT_OK;
    if (fstat(fd, &sb) != 0)
        rc = cli_error(CLI_EXIT_FAIL, "cannot append to '%s': %s", path, strerror(errno));
    else if (!S_ISREG(sb.st_mode))
        rc = cli_error(CLI_EXIT_FAIL, "cannot append to '%s': it is not a regular file", path);
    size_t done = 0;
    unsigned retries = 0;
    while (rc == CLI_EXIT_OK && done < len) {
        ssize_t k = write(fd, line + done, len - done);
        if (k < 0 && (errno == EINTR || errno == EAGAIN) && ++retries <= 1000)
            continue;
        if (k <= 0) {
            int e = k < 0 ? errno : EIO;
            /* Take back the part of the line that made it. */
            if (done > 0 && ftruncate(fd, sb.st_size) != 0)
                e = errno;
            rc = cli_error(CLI_EXIT_FAIL, "cannot append to '%s': %s", path, strerror(e));
        } else {
            done += (size_t)k;
        }
    }
    if (close(fd) != 0 && rc == CLI_EXIT_OK)
        rc = cli_error(CLI_EXIT_FAIL, "cannot append to '%s': %s", path, strerror(errno));
    return rc;
}

int cli_open_file_arg(const cli_opts *o, const char *cmd, const char **path, int *fd,
                      bool *is_index) {
    if (o->argc_rest != 1)
        return cli_error(CLI_EXIT_USAGE, "%s takes exactly one FILE; see 'rotor %s --help'", cmd,
                         cmd);
    *path = o->argv_rest[0];
    return cli_open_input(*path, fd, is_index);
}
