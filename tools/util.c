#include <stdarg.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

int cli_error(int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("rotor: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return code;
}

int cli_lib_error(rotor_status st, const char *fmt, ...) {
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    const char *why = rotor_last_error();
    if (why[0] == '\0')
        why = rotor_strerror(st);
    return cli_error(st == ROTOR_ERR_INVALID_ARGUMENT ? CLI_EXIT_USAGE : CLI_EXIT_FAIL, "%s: %s",
                     what, why);
}

int cli_read_f32(const char *path, const char *role, size_t max_rows, rotor_matrix *out) {
    rotor_status st = rotor_matrix_read(path, ROTOR_ELEM_F32, max_rows, out);
    if (st != ROTOR_OK)
        return cli_lib_error(st, "cannot read %s", role);
    return CLI_EXIT_OK;
}

void cli_progress_start(cli_progress *p, const char *label, uint64_t total, bool quiet) {
    p->label = label;
    p->total = total;
    p->started = cli_now();
    p->last_draw = 0;
    p->enabled = !quiet && isatty(STDERR_FILENO);
}

static void draw(cli_progress *p, uint64_t done) {
    enum { WIDTH = 30 };
    double frac = p->total ? (double)done / (double)p->total : 1.0;
    int fill = (int)(frac * WIDTH);
    char bar[WIDTH + 1];
    for (int i = 0; i < WIDTH; i++)
        bar[i] = i < fill ? '#' : '.';
    bar[WIDTH] = '\0';
    double elapsed = cli_now() - p->started;
    double eta = frac > 0 ? elapsed * (1 - frac) / frac : 0;
    fprintf(stderr, "\r%-12s [%s] %5.1f%%  %6.1fs elapsed, %6.1fs left ", p->label, bar, 100 * frac,
            elapsed, eta);
    fflush(stderr);
}

void cli_progress_update(cli_progress *p, uint64_t done) {
    if (!p->enabled)
        return;
    double now = cli_now();
    if (now - p->last_draw < 0.1 && done < p->total)
        return;
    p->last_draw = now;
    draw(p, done);
}

void cli_progress_finish(cli_progress *p) {
    if (!p->enabled)
        return;
    draw(p, p->total);
    fputc('\n', stderr);
}

double cli_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

double cli_thread_cpu(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

size_t cli_peak_rss(void) {
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0)
        return 0;
    return (size_t)ru.ru_maxrss * 1024; /* Linux reports KiB */
}

void cli_json_string(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}
