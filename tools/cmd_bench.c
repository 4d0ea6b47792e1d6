/*
 * rotor bench: build an index over a base file, run every query one at a
 * time (the ann-benchmarks protocol) on N threads, and report recall, QPS
 * and latency as a table and as JSON lines.
 *
 * Recall is counted by distance, as ann-benchmarks does: a returned id is a
 * hit if its exact distance (recomputed here in double precision from the
 * base vectors, never taken from the index) is within the true k-th
 * distance. Ties at the k-th distance therefore count, whatever order the
 * ground-truth file gave them in.
 *
 * The machine this runs on may be shared, so beside wall-clock QPS the CPU
 * time of the search threads is reported: QPS per CPU-second stays readable
 * when other work steals cycles.
 */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

typedef struct bench_ctx {
    const rotor_index *ix;
    const rotor_matrix *queries;
    rotor_search_params sp;
    size_t k;
    atomic_size_t next;
    int64_t *ids;
    float *dists;
    double *latency;
    rotor_query_stats *qstats; /* per query */
    rotor_status status;
    char error[512];
    pthread_mutex_t lock;
} bench_ctx;

typedef struct worker {
    bench_ctx *ctx;
    double cpu;
} worker;

static void *bench_worker(void *arg) {
    worker *w = arg;
    bench_ctx *c = w->ctx;
    const size_t d = c->queries->cols;
    double cpu0 = cli_thread_cpu();
    for (;;) {
        size_t qi = atomic_fetch_add(&c->next, 1);
        if (qi >= c->queries->rows)
            break;
        const float *q = (const float *)c->queries->data + qi * d;
        rotor_search_params sp = c->sp;
        sp.stats = c->qstats ? c->qstats + qi : NULL;
        double t0 = cli_now();
        rotor_status st =
            rotor_index_search(c->ix, &sp, q, d, c->k, c->ids + qi * c->k, c->dists + qi * c->k);
        c->latency[qi] = cli_now() - t0;
        if (st != ROTOR_OK) {
            pthread_mutex_lock(&c->lock);
            if (c->status == ROTOR_OK) {
                c->status = st;
                snprintf(c->error, sizeof c->error, "%s", rotor_last_error());
            }
            pthread_mutex_unlock(&c->lock);
            break;
        }
    }
    w->cpu = cli_thread_cpu() - cpu0;
    return NULL;
}

typedef struct run_result {
    double wall, cpu, qps, mean_us, p99_us;
    double reads_mean, reads_p99, io_us_mean; /* vectors on disk */
    double scored_mean;                       /* quantized: vectors the rerank scored */
    double hops_mean, estimated_mean;         /* the walk's records and estimates */
} run_result;

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int run_once(bench_ctx *c, unsigned threads, run_result *out) {
    worker w[1024];
    pthread_t tid[1024];
    atomic_store(&c->next, 0);
    double t0 = cli_now();
    unsigned started = 0;
    for (unsigned t = 0; t < threads; t++) {
        w[t].ctx = c;
        w[t].cpu = 0;
        if (pthread_create(&tid[t], NULL, bench_worker, &w[t]) != 0)
            break;
        started++;
    }
    for (unsigned t = 0; t < started; t++)
        pthread_join(tid[t], NULL);
    if (started < threads)
        return cli_error(CLI_EXIT_FAIL, "could only start %u of %u threads", started, threads);
    if (c->status != ROTOR_OK)
        return cli_error(CLI_EXIT_FAIL, "search failed: %s", c->error);
    size_t nq = c->queries->rows;
    out->wall = cli_now() - t0;
    out->cpu = 0;
    for (unsigned t = 0; t < threads; t++)
        out->cpu += w[t].cpu;
    out->qps = (double)nq / out->wall;
    double *sorted = malloc(nq * sizeof *sorted);
    if (sorted == NULL)
        return cli_error(CLI_EXIT_FAIL, "out of memory for %zu latencies", nq);
    memcpy(sorted, c->latency, nq * sizeof *sorted);
    qsort(sorted, nq, sizeof *sorted, cmp_double);
    double sum = 0;
    for (size_t i = 0; i < nq; i++)
        sum += sorted[i];
    out->mean_us = 1e6 * sum / (double)nq;
    size_t p99 = (size_t)ceil(0.99 * (double)nq);
    out->p99_us = 1e6 * sorted[p99 == 0 ? 0 : p99 - 1];
    out->reads_mean = out->reads_p99 = out->io_us_mean = out->scored_mean = 0;
    if (c->qstats != NULL) {
        double io = 0, scored = 0, hops = 0, estimated = 0;
        sum = 0;
        for (size_t i = 0; i < nq; i++) {
            sorted[i] = c->qstats[i].reads;
            sum += sorted[i];
            io += c->qstats[i].io_seconds;
            scored += c->qstats[i].reranked;
            hops += c->qstats[i].hops;
            estimated += c->qstats[i].estimated;
        }
        out->scored_mean = scored / (double)nq;
        out->hops_mean = hops / (double)nq;
        out->estimated_mean = estimated / (double)nq;
        qsort(sorted, nq, sizeof *sorted, cmp_double);
        out->reads_mean = sum / (double)nq;
        out->reads_p99 = sorted[p99 == 0 ? 0 : p99 - 1];
        out->io_us_mean = 1e6 * io / (double)nq;
    }
    free(sorted);
    return CLI_EXIT_OK;
}

static const char *base_name(const char *path) {
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

typedef struct bench_point {
    const char *params;
    double r1, r10;
    const run_result *med;
} bench_point;

static int append_json(const cli_opts *o, const char *dataset, size_t nq, unsigned threads,
                       const rotor_index_stats *stats, double build_s, const bench_point *pt) {
    /* The line is formatted in memory and appended with one write, so a
     * full disk leaves the file as it was, not with half a line. */
    char *line = NULL;
    size_t line_len = 0;
    FILE *f = open_memstream(&line, &line_len);
    if (f == NULL)
        return cli_error(CLI_EXIT_FAIL, "out of memory formatting a JSON line for '%s'", o->json);
    const run_result *med = pt->med;
    fprintf(f, "{\"tool\":\"rotor\",\"version\":\"%s\",\"method\":", rotor_version_string());
    cli_json_string(f, rotor_index_kind_name(stats->kind));
    if (stats->mapped) {
        fprintf(f, ",\"index_file\":");
        cli_json_string(f, base_name(o->index));
        fprintf(f, ",\"copied\":%s", stats->copied ? "true" : "false");
    }
    fprintf(f, ",\"params\":");
    cli_json_string(f, pt->params);
    fprintf(f, ",\"quant\":");
    cli_json_string(f, stats->quant);
    fprintf(f, ",\"walk_quant\":"); /* "" when the walk uses quant */
    cli_json_string(f, stats->walk_quant);
    fprintf(f, ",\"dataset\":");
    cli_json_string(f, dataset);
    fprintf(f,
            ",\"metric\":\"%s\",\"simd\":\"%s\",\"n_base\":%zu,\"dim\":%zu,\"n_queries\":%zu,"
            "\"k\":%zu,\"threads\":%u,\"runs\":%u,\"recall_at_1\":%.6f,",
            rotor_metric_name(stats->metric), rotor_simd_level(), stats->count, stats->dim, nq,
            o->k, threads, o->runs, pt->r1);
    if (isnan(pt->r10))
        fprintf(f, "\"recall_at_10\":null,");
    else
        fprintf(f, "\"recall_at_10\":%.6f,", pt->r10);
    if (stats->vectors_on_disk)
        fprintf(f,
                "\"vectors_on_disk\":true,\"io_backend\":\"%s\",\"direct_io\":%s,"
                "\"bytes_vectors_disk\":%zu,\"reads_mean\":%.3f,\"reads_p99\":%.1f,"
                "\"io_us_mean\":%.3f,",
                stats->io_backend, stats->direct_io ? "true" : "false", stats->bytes_vectors_disk,
                med->reads_mean, med->reads_p99, med->io_us_mean);
    if (stats->graph_on_disk > 0)
        fprintf(f, "\"graph_on_disk\":%zu,\"graph_cached\":%zu,\"beam_width\":%u,",
                stats->graph_on_disk, stats->graph_cached, o->beam ? o->beam : 4);
    if (strcmp(stats->quant, "none") != 0)
        fprintf(f, "\"rerank_bound\":%s,\"scored_mean\":%.3f,", o->rerank_all ? "false" : "true",
                med->scored_mean);
    fprintf(f, "\"hops_mean\":%.3f,\"estimated_mean\":%.3f,", med->hops_mean, med->estimated_mean);
    if (o->filtered) {
        fprintf(f, "\"filter\":");
        cli_json_string(f, o->filter_text);
        fprintf(f, ",\"filter_scan\":\"%s\",",
                o->filter_scan > 0   ? "always"
                : o->filter_scan < 0 ? "never"
                                     : "auto");
    }
    fprintf(f,
            "\"qps\":%.3f,\"mean_latency_us\":%.3f,\"p99_latency_us\":%.3f,"
            "\"%s\":%.6f,\"index_bytes\":%zu,\"bytes_vectors\":%zu,"
            "\"bytes_codes\":%zu,\"bytes_graph\":%zu,\"bytes_graph_codes\":%zu,"
            "\"peak_rss_bytes\":%zu,\"cpu_seconds\":%.6f,\"wall_seconds\":%.6f,"
            "\"timestamp\":%lld}\n",
            med->qps, med->mean_us, med->p99_us, stats->mapped ? "open_seconds" : "build_seconds",
            build_s, stats->bytes_total, stats->bytes_vectors, stats->bytes_codes,
            stats->bytes_graph, stats->bytes_graph_codes, cli_peak_rss(), med->cpu, med->wall,
            (long long)time(NULL));
    if (fclose(f) != 0) {
        free(line);
        return cli_error(CLI_EXIT_FAIL, "out of memory formatting a JSON line for '%s'", o->json);
    }
    int rc = cli_append_line(o->json, line, line_len);
    free(line);
    return rc;
}

int cmd_bench(const cli_opts *o) {
    const bool from_file = o->index != NULL && !cli_index_is_kind(o);
    if (o->index == NULL || (o->base == NULL && !from_file) || o->queries == NULL || o->gt == NULL)
        return cli_error(CLI_EXIT_USAGE, "bench needs --index, --queries, --gt and (unless "
                                         "--index is a file) --base; see 'rotor bench --help'");
    rotor_params check; /* the options' parameters, checked before any work */
    int rc = from_file ? CLI_EXIT_OK : cli_index_params(o, &check);
    if (rc != CLI_EXIT_OK)
        return rc;
    unsigned threads = o->threads ? o->threads : 1;
    rotor_matrix base = {0}, queries = {0}, gt = {0};
    rotor_index *ix = NULL;
    float *row = NULL;      /* a vector read back from the index (no --base) */
    bool ids_noted = false; /* said once that recall fell back to counting ids */
    bench_ctx c;
    memset(&c, 0, sizeof c);
    pthread_mutex_init(&c.lock, NULL);

    double build_s;
    rotor_index_stats stats;
    if (from_file) {
        if ((rc = cli_open_index(o, false, &ix, &build_s)))
            goto done;
        rotor_index_stats_get(ix, &stats);
        if ((rc = cli_load_eval_data(o, stats.count, &base, &queries, &gt)))
            goto done;
    } else {
        if ((rc = cli_load_eval_data(o, 0, &base, &queries, &gt)) ||
            (rc = cli_build_index(o, &base, &ix, &build_s)))
            goto done;
        rotor_index_stats_get(ix, &stats);
    }
    const char *kind = rotor_index_kind_name(stats.kind);
    const rotor_metric metric = stats.metric;
    if (queries.cols != stats.dim) {
        rc = cli_error(CLI_EXIT_FAIL, "queries in '%s' have %zu dimensions, the index has %zu",
                       o->queries, queries.cols, stats.dim);
        goto done;
    }
    /* Parsed with the other flags; only an opened file's kind is new here. */
    const cli_sweep sw = o->sweep_values;
    if ((rc = cli_check_sweep_kind(o, kind)))
        goto done;
    const size_t n_nav = sw.nav.n ? sw.nav.n : 1, n_nbrs = sw.neighbors.n ? sw.neighbors.n : 1,
                 n_starts = sw.starts.n ? sw.starts.n : 1, n_refine = sw.refine.n ? sw.refine.n : 1,
                 n_rerank = sw.rerank.n ? sw.rerank.n : 1;
    const char *dataset = base_name(o->base ? o->base : o->index);

    size_t nq = queries.rows, k = o->k;
    c.ix = ix;
    c.queries = &queries;
    c.sp = cli_search_params(o);
    c.sp.threads = 0;       /* bench runs queries one at a time on its own threads */
    c.sp.target_recall = 0; /* resolved below into settings it can report */
    /* Resolved here, so the line printed names the settings searched. */
    if (o->recall > 0) {
        rotor_status st = rotor_search_params_for_recall(ix, (float)o->recall, k, &c.sp);
        if (st != ROTOR_OK) {
            rc = cli_lib_error(st, "bench --recall %g", o->recall);
            goto done;
        }
    }
    c.k = k;
    c.ids = malloc(nq * k * sizeof *c.ids);
    c.dists = malloc(nq * k * sizeof *c.dists);
    c.latency = malloc(nq * sizeof *c.latency);
    /* What each query's walk did, and its rerank scored (and read, on disk). */
    const bool quantized = strcmp(stats.quant, "none") != 0;
    c.qstats = malloc(nq * sizeof *c.qstats);
    row = base.data == NULL ? malloc(stats.dim * sizeof *row) : NULL;
    if (c.ids == NULL || c.dists == NULL || c.latency == NULL || c.qstats == NULL ||
        (base.data == NULL && row == NULL)) {
        rc = cli_error(CLI_EXIT_FAIL, "out of memory for %zu x %zu results", nq, k);
        goto done;
    }

    printf("rotor bench  %s  base %zu x %zu (%s)  %zu queries  metric %s  k %zu  simd %s\n", kind,
           stats.count, stats.dim, dataset, nq, rotor_metric_name(metric), k, rotor_simd_level());
    double n = (double)stats.count;
    printf("bytes per vector: full vectors %.1f%s, codes %.1f, graph %.1f, graph codes %.1f\n",
           (double)(stats.bytes_vectors + stats.bytes_vectors_disk) / n,
           stats.vectors_on_disk ? " (on disk)" : "", (double)stats.bytes_codes / n,
           (double)stats.bytes_graph / n, (double)stats.bytes_graph_codes / n);
    if (from_file && stats.graph_on_disk == 0)
        printf("opened: %s\n", stats.copied ? "graph, codes and vectors copied into memory"
                                            : "mapped, searches read the file's pages");
    if (stats.graph_on_disk > 0)
        printf("graph on disk under the RAM budget: %zu records cached, %zu read as searches "
               "expand them (reads are records)\n",
               stats.graph_cached, stats.graph_on_disk);
    if (stats.vectors_on_disk)
        printf("vectors on disk, read with %s%s; reads and I/O wait are per query\n",
               stats.io_backend, stats.direct_io ? " and O_DIRECT" : " through the page cache");
    if (base.data == NULL)
        printf("no --base: recall by distance to the index's own vectors\n");
    printf("%-8s %-26s %7s %9s %9s %10s %10s %9s %8s %9s %10s", "method", "params", "threads",
           "recall@1", "recall@10", "QPS", "mean_us", "p99_us", from_file ? "open_s" : "build_s",
           "index_MiB", "QPS/cpu_s");
    if (stats.vectors_on_disk)
        printf(" %7s %9s %8s", "reads", "reads_p99", "io_us");
    if (quantized)
        printf(" %7s", "scored");
    printf("\n");
    /* Every combination, the navigator's list outermost and the rerank
     * innermost: settings that share a walk are measured one after
     * another. */
    for (size_t si = 0; si < n_nav * n_nbrs * n_starts * n_refine * n_rerank; si++) {
        size_t at = si;
        const size_t i_rerank = at % n_rerank;
        at /= n_rerank;
        const size_t i_refine = at % n_refine;
        at /= n_refine;
        const size_t i_starts = at % n_starts;
        at /= n_starts;
        const size_t i_nbrs = at % n_nbrs, i_nav = at / n_nbrs;
        if (sw.neighbors.n > 0)
            c.sp.max_neighbors = sw.neighbors.v[i_nbrs];
        if (sw.nav.n > 0) {
            if (sw.nprobe)
                c.sp.nprobe = sw.nav.v[i_nav];
            else
                c.sp.list_size = sw.nav.v[i_nav];
        }
        if (sw.starts.n > 0)
            c.sp.start_points = sw.starts.v[i_starts];
        if (sw.refine.n > 0)
            c.sp.refine = sw.refine.v[i_refine];
        if (sw.rerank.n > 0)
            c.sp.rerank = sw.rerank.v[i_rerank];
        run_result runs[1000];
        for (unsigned r = 0; r < o->runs; r++) {
            if (!o->quiet && isatty(STDERR_FILENO))
                fprintf(stderr, "bench: run %u of %u, %zu queries on %u thread%s\r", r + 1, o->runs,
                        nq, threads, threads == 1 ? "" : "s");
            if ((rc = run_once(&c, threads, &runs[r])))
                goto done;
        }
        /* The median run by QPS: robust to a neighbour's burst on a shared machine. */
        for (unsigned i = 1; i < o->runs; i++)
            for (unsigned j = i; j > 0 && runs[j - 1].qps > runs[j].qps; j--) {
                run_result t = runs[j];
                runs[j] = runs[j - 1];
                runs[j - 1] = t;
            }
        const run_result *med = &runs[o->runs / 2];

        /* What the search used, resolved as the library resolves it. */
        char params[160] = "", label[72];
        size_t len = 0;
        if (stats.quant[0] != '\0' && strcmp(stats.quant, "none") != 0)
            len += (size_t)snprintf(params + len, sizeof params - len, "%s,",
                                    cli_quant_label(&stats, label, sizeof label));
        size_t list = c.sp.list_size ? c.sp.list_size : (k > 64 ? k : 64);
        if (stats.kind == ROTOR_INDEX_VAMANA)
            len += (size_t)snprintf(params + len, sizeof params - len, "R=%u,L=%zu,",
                                    stats.graph_degree, list);
        if (stats.kind == ROTOR_INDEX_VAMANA && c.sp.max_neighbors != 0 &&
            c.sp.max_neighbors < stats.graph_degree)
            len += (size_t)snprintf(params + len, sizeof params - len, "N=%u,", c.sp.max_neighbors);
        if (stats.kind == ROTOR_INDEX_VAMANA && c.sp.start_points != 0)
            len += (size_t)snprintf(params + len, sizeof params - len, "S=%u,", c.sp.start_points);
        if (stats.kind == ROTOR_INDEX_IVF)
            len += (size_t)snprintf(params + len, sizeof params - len, "nprobe=%u,",
                                    c.sp.nprobe ? c.sp.nprobe : 16);
        if (stats.graph_on_disk > 0) {
            /* Records read in beams; their exact distances are the results. */
            len += (size_t)snprintf(params + len, sizeof params - len, "beam=%u,",
                                    c.sp.beam_width ? c.sp.beam_width : 4);
        } else if (strcmp(stats.quant, "none") != 0) {
            long long rr = c.sp.rerank < 0 ? 10 * (long long)k : c.sp.rerank;
            if (stats.walk_quant[0] != '\0') /* walks on one code, refines on another */
                len += (size_t)snprintf(params + len, sizeof params - len, "refine=%lld,",
                                        c.sp.refine ? (long long)c.sp.refine : 4 * rr);
            len += (size_t)snprintf(params + len, sizeof params - len, "rerank=%lld,", rr);
            if (o->rerank_all) /* the fixed depth, for comparisons */
                len += (size_t)snprintf(params + len, sizeof params - len, "bound=off,");
            if (o->rerank_window && stats.vectors_on_disk)
                len += (size_t)snprintf(params + len, sizeof params - len, "window=%u,",
                                        o->rerank_window);
        }
        if (len > 0)
            params[len - 1] = '\0';
        double r1, r10 = NAN;
        if (base.data != NULL) {
            r1 = cli_recall_at(&base, &queries, &gt, c.ids, k, 1, metric);
            if (k >= 10)
                r10 = cli_recall_at(&base, &queries, &gt, c.ids, k, 10, metric);
        } else {
            /* The index's own vectors: ties at the k-th distance count as
             * with --base, whichever of them the ground truth lists. */
            r1 = cli_recall_at_index(ix, &queries, &gt, c.ids, k, 1, metric, row);
            if (k >= 10)
                r10 = cli_recall_at_index(ix, &queries, &gt, c.ids, k, 10, metric, row);
            if (isnan(r1) || (k >= 10 && isnan(r10))) {
                if (!ids_noted)
                    printf("(a ground-truth id is not a key of the index: recall counts ids)\n");
                ids_noted = true;
                r1 = cli_recall_ids(&gt, c.ids, k, 1, nq);
                r10 = k >= 10 ? cli_recall_ids(&gt, c.ids, k, 10, nq) : NAN;
            }
        }
        printf("%-8s %-26s %7u %9.4f %9.4f %10.1f %10.1f %9.1f %8.2f %9.1f %10.1f", kind,
               len ? params : "-", threads, r1, r10, med->qps, med->mean_us, med->p99_us, build_s,
               (double)stats.bytes_total / (1 << 20), med->cpu > 0 ? (double)nq / med->cpu : 0.0);
        if (stats.vectors_on_disk)
            printf(" %7.1f %9.0f %8.1f", med->reads_mean, med->reads_p99, med->io_us_mean);
        if (quantized)
            printf(" %7.1f", med->scored_mean);
        printf("\n");
        fflush(stdout);
        bench_point pt = {params, r1, r10, med};
        if (o->json != NULL && (rc = append_json(o, dataset, nq, threads, &stats, build_s, &pt)))
            goto done;
    }
    if (stats.mapped)
        cli_note_io_fallback(ix, o->index, o->quiet);
    rc = CLI_EXIT_OK;
done:
    free(row);
    free(c.ids);
    free(c.dists);
    free(c.latency);
    free(c.qstats);
    pthread_mutex_destroy(&c.lock);
    rotor_index_close(ix);
    rotor_matrix_free(&base);
    rotor_matrix_free(&queries);
    rotor_matrix_free(&gt);
    return rc;
}
