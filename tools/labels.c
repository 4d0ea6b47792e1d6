/*
 * --labels files: text, one line per base row, the row's labels as
 * space-separated non-negative integers (an empty line: none). Read whole,
 * every line checked, the first fault named by its line number.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

rotor_search_params cli_search_params(const cli_opts *o) {
    rotor_search_params sp = rotor_search_params_default();
    sp.threads = o->threads;
    sp.rerank = o->rerank;
    sp.list_size = o->list_size;
    sp.nprobe = o->nprobe;
    sp.refine = o->refine;
    sp.start_points = o->starts;
    sp.max_neighbors = o->neighbors;
    sp.target_recall = (float)o->recall;
    sp.rerank_all = o->rerank_all;
    sp.rerank_window = o->rerank_window;
    sp.beam_width = o->beam;
    sp.filter = o->filtered ? &o->filter : NULL;
    sp.filter_scan = o->filter_scan;
    return sp;
}

typedef struct growing {
    void *p;
    size_t n, cap, size;
} growing;

static bool push(growing *g, const void *v) {
    if (g->n == g->cap) {
        size_t cap = g->cap ? 2 * g->cap : 1024;
        void *p = realloc(g->p, cap * g->size);
        if (p == NULL)
            return false;
        g->p = p;
        g->cap = cap;
    }
    memcpy((char *)g->p + g->n * g->size, v, g->size);
    g->n++;
    return true;
}

int cli_read_labels(const char *path, size_t rows, rotor_labels *out, uint64_t **off,
                    uint32_t **val) {
    *off = NULL;
    *val = NULL;
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return cli_error(CLI_EXIT_FAIL, "cannot open labels '%s': %s", path, strerror(errno));
    growing o = {.size = sizeof(uint64_t)}, v = {.size = sizeof(uint32_t)};
    int rc = CLI_EXIT_OK;
    char *line = NULL;
    size_t cap = 0, lineno = 0;
    ssize_t len;
    const uint64_t zero = 0;
    if (!push(&o, &zero))
        rc = cli_error(CLI_EXIT_FAIL, "out of memory reading labels '%s'", path);
    while (rc == CLI_EXIT_OK && (len = getline(&line, &cap, f)) >= 0) {
        lineno++;
        if (lineno > rows) {
            rc = cli_error(CLI_EXIT_FAIL, "labels '%s' has more lines than the %zu vectors", path,
                           rows);
            break;
        }
        if ((size_t)len != strlen(line)) {
            rc = cli_error(CLI_EXIT_FAIL, "labels '%s' line %zu holds a NUL byte", path, lineno);
            break;
        }
        for (char *p = line; rc == CLI_EXIT_OK;) {
            p += strspn(p, " \t\r\n");
            if (*p == '\0')
                break;
            const size_t digits = strspn(p, "0123456789");
            const char after = p[digits];
            errno = 0;
            const unsigned long long x = digits > 0 ? strtoull(p, NULL, 10) : 0;
            if (digits == 0 || digits > 10 || x > UINT32_MAX || errno != 0 ||
                (after != '\0' && strchr(" \t\r\n", after) == NULL)) {
                const size_t bad = strcspn(p, " \t\r\n");
                rc = cli_error(CLI_EXIT_FAIL,
                               "labels '%s' line %zu: '%.*s' is not a label (a whole number "
                               "from 0 to 4294967295)",
                               path, lineno, (int)(bad < 40 ? bad : 40), p);
                break;
            }
            const uint32_t lab = (uint32_t)x;
            if (!push(&v, &lab))
                rc = cli_error(CLI_EXIT_FAIL, "out of memory reading labels '%s'", path);
            p += digits;
        }
        const uint64_t end = v.n;
        if (rc == CLI_EXIT_OK && !push(&o, &end))
            rc = cli_error(CLI_EXIT_FAIL, "out of memory reading labels '%s'", path);
    }
    if (rc == CLI_EXIT_OK && ferror(f))
        rc = cli_error(CLI_EXIT_FAIL, "cannot read labels '%s': %s", path, strerror(errno));
    if (rc == CLI_EXIT_OK && lineno != rows)
        rc = cli_error(CLI_EXIT_FAIL, "labels '%s' has %zu lines for %zu vectors", path, lineno,
                       rows);
    free(line);
    fclose(f);
    *off = o.p;
    *val = v.p;
    *out = (rotor_labels){*off, *val, rows};
    return rc;
}
