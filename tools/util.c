#include <stdarg.h>
#include <stdlib.h>
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
    p->last_done = UINT64_MAX;
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
    /* The end is drawn at once, but only once: a build calibrating after
     * its graph keeps reporting everything done. */
    if (now - p->last_draw < 0.1 && (done < p->total || done == p->last_done))
        return;
    p->last_draw = now;
    p->last_done = done;
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

bool cli_index_is_kind(const cli_opts *o) {
    const char *kind = o->index ? o->index : "flat";
    return strcmp(kind, "flat") == 0 || strcmp(kind, "vamana") == 0 || strcmp(kind, "ivf") == 0;
}

int cli_open_index(const cli_opts *o, bool verify, rotor_index **ix, double *seconds) {
    if (access(o->index, F_OK) != 0)
        return cli_error(CLI_EXIT_USAGE,
                         "--index '%s' is neither a kind (flat, vamana, ivf) nor an index file",
                         o->index);
    rotor_open_params op = rotor_open_params_default();
    op.vectors = (rotor_vectors_place)o->full_vectors;
    op.io = o->io;
    op.verify = verify;
    op.load = o->load;
    op.ram_budget = o->ram_budget;
    double t0 = cli_now();
    rotor_status st = rotor_index_open(o->index, &op, ix);
    if (seconds != NULL)
        *seconds = cli_now() - t0;
    if (st != ROTOR_OK)
        return cli_lib_error(st, "cannot open index");
    return CLI_EXIT_OK;
}

int cli_index_params(const cli_opts *o, rotor_params *p) {
    *p = rotor_params_default();
    const char *kind = o->index ? o->index : "flat";
    if (strcmp(kind, "flat") == 0)
        p->kind = ROTOR_INDEX_FLAT;
    else if (strcmp(kind, "vamana") == 0)
        p->kind = ROTOR_INDEX_VAMANA;
    else if (strcmp(kind, "ivf") == 0)
        p->kind = ROTOR_INDEX_IVF;
    else
        return cli_error(CLI_EXIT_USAGE, "unknown index kind '%s'; use flat, vamana or ivf", kind);
    p->metric = o->metric;
    if (o->quant != NULL)
        p->quant = o->quant;
    if (o->target_recall > 0)
        p->target_recall = (float)o->target_recall;
    if (o->calibrate >= 0)
        p->calibrate = o->calibrate;
    p->threads = o->build_threads;
    if (o->degree)
        p->graph_degree = o->degree;
    if (o->build_list)
        p->build_list = o->build_list;
    else if (p->build_list != 0 && p->build_list < p->graph_degree)
        p->build_list = p->graph_degree;
    if (o->alpha > 0)
        p->alpha = (float)o->alpha;
    if (o->neighbor_codes >= 0)
        p->neighbor_codes = o->neighbor_codes;
    if (o->build_space != NULL && strcmp(o->build_space, "codes") == 0)
        p->build_space = ROTOR_BUILD_CODES;
    p->nlist = o->nlist;
    p->walk_quant = o->walk_quant;
    if (o->full_vectors != 0)
        p->full_vectors = o->full_vectors;
    p->ram_budget = o->ram_budget;
    p->build_memory = o->build_memory;
    return CLI_EXIT_OK;
}

int cli_build_progress(void *opaque, uint64_t done, uint64_t total) {
    cli_progress *p = opaque;
    p->total = total;
    cli_progress_update(p, done);
    return 0;
}

int cli_build_index(const cli_opts *o, const rotor_matrix *base, rotor_index **ix,
                    double *seconds) {
    rotor_params p;
    int rc = cli_index_params(o, &p);
    if (rc != CLI_EXIT_OK)
        return rc;
    rotor_labels labels;
    uint64_t *off = NULL;
    uint32_t *val = NULL;
    if (o->labels != NULL && (rc = cli_read_labels(o->labels, base->rows, &labels, &off, &val))) {
        free(off);
        free(val);
        return rc;
    }
    p.labels = o->labels != NULL ? &labels : NULL;
    cli_progress prog;
    cli_progress_start(&prog, "build", base->rows, o->quiet || p.kind != ROTOR_INDEX_VAMANA);
    p.progress = cli_build_progress;
    p.progress_opaque = &prog;
    double t0 = cli_now();
    rotor_status st = rotor_index_build(&p, base, ix);
    free(off);
    free(val);
    if (seconds != NULL)
        *seconds = cli_now() - t0;
    cli_progress_finish(&prog);
    if (st != ROTOR_OK)
        return cli_lib_error(st, "cannot index '%s'", o->base);
    return CLI_EXIT_OK;
}

int cli_require(const char *value, const char *flag, const char *cmd) {
    if (value == NULL)
        return cli_error(CLI_EXIT_USAGE, "%s needs %s; see 'rotor %s --help'", cmd, flag, cmd);
    return CLI_EXIT_OK;
}

const char *cli_elem_type_name(rotor_elem_type t) {
    switch (t) {
    case ROTOR_ELEM_F32: return "float32";
    case ROTOR_ELEM_U8: return "uint8";
    case ROTOR_ELEM_I8: return "int8";
    case ROTOR_ELEM_I32: return "int32";
    case ROTOR_ELEM_I64: return "int64";
    }
    return "unknown";
}

const char *cli_quant_label(const rotor_index_stats *s, char *buf, size_t size) {
    if (s->walk_quant[0] != '\0')
        snprintf(buf, size, "%s+%s", s->walk_quant, s->quant);
    else
        snprintf(buf, size, "%s", s->quant);
    return buf;
}

void cli_note_io_fallback(const rotor_index *ix, const char *path, bool quiet) {
    rotor_index_stats s;
    if (quiet || ix == NULL || rotor_index_stats_get(ix, &s) != ROTOR_OK || !s.io_fallback)
        return;
    fprintf(stderr,
            "rotor: note: io_uring could not be used for '%s' (refused at open or at a "
            "search); its vectors were read with pread instead\n",
            path);
}

void cli_print_tuning(FILE *f, const rotor_index *ix, bool table) {
    rotor_tuning t;
    if (rotor_index_tuning(ix, &t) != ROTOR_OK)
        return;
    if (t.candidates > 0) {
        fprintf(f,
                "auto config:   %zu candidates measured on %zu sampled vectors with %zu held-out "
                "queries in %.1f s; target recall@10 %.3f\n",
                t.candidates, t.sample, t.sample_queries, t.auto_seconds, (double)t.target_recall);
        for (size_t i = 0; i < t.candidates; i++) {
            const rotor_auto_candidate *c = &t.candidate[i];
            char name[72];
            if (c->walk_quant[0])
                snprintf(name, sizeof name, "%s+%s", c->walk_quant, c->quant);
            else
                snprintf(name, sizeof name, "%s", c->quant);
            fprintf(f, "  %s %-14s %-16s ", c->chosen ? "*" : " ", name,
                    strcmp(c->quant, "none") == 0 ? "full precision"
                    : c->neighbor_codes           ? "neighbour codes"
                                                  : "own codes");
            if (c->cost_ns > 0 && c->list_size > 0)
                fprintf(f,
                        "reaches %.3f at L/nprobe=%u rerank=%u: %.1f us per query (model, "
                        "mean with 0.99)\n",
                        (double)c->recall, c->list_size, c->rerank, (double)c->cost_ns / 1000);
            else if (c->cost_ns > 0) /* IVF: the sample's lists scanned whole */
                fprintf(f,
                        "reaches %.3f scanning every list, rerank=%u: %.1f us per query (model, "
                        "mean with 0.99)\n",
                        (double)c->recall, c->rerank, (double)c->cost_ns / 1000);
            else if (c->cost_ns < 0)
                fprintf(f, "stopped at recall %.3f: cannot come under %.1f us per query\n",
                        (double)c->recall, (double)-c->cost_ns / 1000);
            else
                fprintf(f, "best recall %.3f: below the target or 0.99\n", (double)c->recall);
        }
    }
    if (t.rows == 0) {
        fprintf(f, "calibration:   none (searches by recall are refused)\n");
        return;
    }
    float top = 0;
    for (size_t i = 0; i < t.rows; i++)
        top = t.row[i].recall_low > top ? t.row[i].recall_low : top;
    fprintf(f,
            "calibration:   %zu settings measured at recall@%u on %u held-out queries in %.1f s; "
            "--recall up to %.3f\n",
            t.rows, t.k, t.queries, t.calibration_seconds, (double)top);
    if (t.rows_as_queries)
        fprintf(f,
                "               (queries were rows of the index; when yours come from elsewhere, "
                "'rotor tune FILE --queries Q' with a random sample of them)\n");
    if (!table)
        return;
    fprintf(f, "  %8s %9s %8s %8s %8s %8s %8s %8s %10s\n", "L", "neighbors", "starts", "nprobe",
            "rerank", "refine", "recall", "low", "us(model)");
    for (size_t i = 0; i < t.rows; i++) {
        const rotor_calibration_row *r = &t.row[i];
        fprintf(f, "  %8u %9u %8u %8u %8u %8u %8.4f %8.4f %10.1f\n", r->list_size, r->max_neighbors,
                r->start_points, r->nprobe, r->rerank, r->refine, (double)r->recall,
                (double)r->recall_low, (double)r->cost_ns / 1000);
    }
}
