/*
 * rotor eval-quant: what each quantizer costs and keeps, on real data.
 *
 * For every spec it builds a flat index over the base with that quantizer
 * and measures, through the public API only:
 *   - bits per dimension and bytes per vector, correction factors included;
 *   - training seconds (zero for TurboQuant and binary codes) and encoding
 *     throughput;
 *   - mse: |x^ - x|^2 / |x|^2 over a sample of base vectors, x^ from
 *     rotor_index_reconstruct (for cosine the index holds unit vectors, so
 *     this is the MSE of unit-normalised vectors; for quantizers that scale
 *     with the vector, as TurboQuant does, it is the same number);
 *   - ip_bias and ip_var: the inner product implied by the index's distance
 *     estimate (rotor_index_estimate) minus the exact one, divided by
 *     |q||x|, over query x base pairs. For L2 the implied inner product is
 *     (|x|^2 + |q|^2 - estimate) / 2 with exact norms;
 *   - recall@10 of the exhaustive scan over codes, without rerank and with
 *     the best 10k candidates reranked on full vectors.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"

enum { MSE_SAMPLE = 2000, PAIR_QUERIES = 100, PAIR_ROWS = 200 };

typedef struct quant_result {
    char quant[32];
    double bits_per_dim, train_s, encode_per_s, mse, ip_bias, ip_var, r10, r10_rerank, qps,
        qps_rerank;
    size_t bytes_per_vector;
} quant_result;

static double dot(const float *a, const float *b, size_t d) {
    double s = 0;
    for (size_t j = 0; j < d; j++)
        s += (double)a[j] * b[j];
    return s;
}

static int measure(const cli_opts *o, const char *spec, const rotor_matrix *base,
                   const rotor_matrix *queries, const rotor_matrix *gt, quant_result *r) {
    const size_t d = base->cols, nq = queries->rows, k = o->k;
    rotor_params p = rotor_params_default();
    p.metric = o->metric;
    p.quant = spec;
    p.threads = o->threads;
    rotor_index *ix = NULL;
    double t0 = cli_now();
    rotor_status st = rotor_index_build(&p, base, &ix);
    double build_s = cli_now() - t0;
    if (st != ROTOR_OK)
        return cli_lib_error(st, "eval-quant %s", spec);
    rotor_index_stats stats;
    rotor_index_stats_get(ix, &stats);
    snprintf(r->quant, sizeof r->quant, "%s", stats.quant);
    r->bytes_per_vector = stats.code_bytes;
    r->bits_per_dim = 8.0 * (double)stats.code_bytes / (double)d;
    r->train_s = stats.train_seconds;
    r->encode_per_s = (double)base->rows / fmax(build_s - stats.train_seconds, 1e-9);

    int rc = CLI_EXIT_OK;
    float *x = malloc(2 * d * sizeof *x);
    float *qn = malloc(d * sizeof *qn);
    int64_t *ids = malloc(nq * k * sizeof *ids);
    float *dists = malloc(nq * k * sizeof *dists);
    if (x == NULL || qn == NULL || ids == NULL || dists == NULL) {
        rc = cli_error(CLI_EXIT_FAIL, "out of memory evaluating %s", spec);
        goto done;
    }
    /* The index's own copy of a vector (normalised for cosine) is what its
     * code approximates: compare against that. */
    float *xr = x + d;
    size_t sample = base->rows < MSE_SAMPLE ? base->rows : MSE_SAMPLE;
    double mse = 0;
    for (size_t s = 0; s < sample; s++) {
        size_t id = s * (base->rows / sample);
        const float *orig = (const float *)base->data + id * d;
        double nn = dot(orig, orig, d);
        double scale = o->metric == ROTOR_METRIC_COSINE && nn > 0 ? 1.0 / sqrt(nn) : 1.0;
        if ((st = rotor_index_reconstruct(ix, (int64_t)id, xr)) != ROTOR_OK) {
            rc = cli_lib_error(st, "eval-quant %s", spec);
            goto done;
        }
        double e = 0, norm2 = 0;
        for (size_t j = 0; j < d; j++) {
            double v = orig[j] * scale;
            e += (xr[j] - v) * (xr[j] - v);
            norm2 += v * v;
        }
        mse += norm2 > 0 ? e / norm2 : 0;
    }
    r->mse = mse / (double)sample;

    /* Inner-product estimates over query x row pairs. */
    double sum = 0, sum2 = 0;
    size_t pairs = 0;
    size_t pq = nq < PAIR_QUERIES ? nq : PAIR_QUERIES;
    int64_t row_ids[PAIR_ROWS];
    float est[PAIR_ROWS];
    size_t rows = base->rows < PAIR_ROWS ? base->rows : PAIR_ROWS;
    for (size_t i = 0; i < rows; i++)
        row_ids[i] = (int64_t)((i * 7919u + 13u) % base->rows);
    for (size_t qi = 0; qi < pq; qi++) {
        const float *q = (const float *)queries->data + qi * d;
        if ((st = rotor_index_estimate(ix, q, d, row_ids, rows, est)) != ROTOR_OK) {
            rc = cli_lib_error(st, "eval-quant %s", spec);
            goto done;
        }
        double qq = dot(q, q, d);
        double qs = o->metric == ROTOR_METRIC_COSINE && qq > 0 ? 1.0 / sqrt(qq) : 1.0;
        for (size_t j = 0; j < d; j++)
            qn[j] = (float)(q[j] * qs);
        qq = dot(qn, qn, d);
        for (size_t i = 0; i < rows; i++) {
            const float *xb = (const float *)base->data + (size_t)row_ids[i] * d;
            double xx = dot(xb, xb, d);
            double xs = o->metric == ROTOR_METRIC_COSINE && xx > 0 ? 1.0 / sqrt(xx) : 1.0;
            for (size_t j = 0; j < d; j++)
                x[j] = (float)(xb[j] * xs);
            xx = dot(x, x, d);
            double exact = dot(qn, x, d), implied;
            switch (o->metric) {
            case ROTOR_METRIC_L2: implied = (xx + qq - est[i]) / 2; break;
            case ROTOR_METRIC_IP: implied = -est[i]; break;
            default: implied = 1.0 - est[i]; break;
            }
            double scale = sqrt(xx * qq);
            if (scale <= 0)
                continue;
            double e = (implied - exact) / scale;
            sum += e;
            sum2 += e * e;
            pairs++;
        }
    }
    r->ip_bias = pairs ? sum / (double)pairs : NAN;
    r->ip_var = pairs ? sum2 / (double)pairs - r->ip_bias * r->ip_bias : NAN;

    /* Exhaustive scans, one query at a time on one thread. */
    for (int pass = 0; pass < 2; pass++) {
        rotor_search_params sp = rotor_search_params_default();
        sp.rerank = pass == 0 ? 0 : -1;
        double s0 = cli_now();
        for (size_t qi = 0; qi < nq; qi++) {
            st = rotor_index_search(ix, &sp, (const float *)queries->data + qi * d, d, k,
                                    ids + qi * k, dists + qi * k);
            if (st != ROTOR_OK) {
                rc = cli_lib_error(st, "eval-quant %s", spec);
                goto done;
            }
        }
        double qps = (double)nq / (cli_now() - s0);
        double rec = k >= 10 ? cli_recall_at(base, queries, gt, ids, k, 10, o->metric) : NAN;
        if (pass == 0) {
            r->r10 = rec;
            r->qps = qps;
        } else {
            r->r10_rerank = rec;
            r->qps_rerank = qps;
        }
    }
done:
    free(x);
    free(qn);
    free(ids);
    free(dists);
    rotor_index_close(ix);
    return rc;
}

static void json_number(FILE *f, const char *key, double v) {
    if (isnan(v) || isinf(v))
        fprintf(f, ",\"%s\":null", key);
    else
        fprintf(f, ",\"%s\":%.9g", key, v);
}

int cmd_eval_quant(const cli_opts *o) {
    if (o->base == NULL || o->queries == NULL || o->gt == NULL || o->quant == NULL)
        return cli_error(CLI_EXIT_USAGE, "eval-quant needs --base, --queries, --gt and --quant; "
                                         "see 'rotor eval-quant --help'");
    if (o->k < 10)
        return cli_error(CLI_EXIT_USAGE, "eval-quant measures recall@10: --k must be at least 10");
    rotor_matrix base = {0}, queries = {0}, gt = {0};
    int rc;
    if ((rc = cli_load_eval_data(o, 0, &base, &queries, &gt)))
        goto done;
    printf("rotor eval-quant  base %zu x %zu  %zu queries  metric %s  simd %s\n", base.rows,
           base.cols, queries.rows, rotor_metric_name(o->metric), rotor_simd_level());
    printf("%-8s %6s %6s %8s %11s %8s %9s %9s %8s %10s %8s\n", "quant", "bits/d", "B/vec",
           "train_s", "encode/s", "mse", "ip_bias", "ip_sd", "R@10", "R@10+rr", "scanQPS");
    char *specs = strdup(o->quant);
    if (specs == NULL) {
        rc = cli_error(CLI_EXIT_FAIL, "out of memory");
        goto done;
    }
    char *save = NULL;
    for (char *spec = strtok_r(specs, ",", &save); spec; spec = strtok_r(NULL, ",", &save)) {
        quant_result r;
        memset(&r, 0, sizeof r);
        if (!o->quiet)
            fprintf(stderr, "eval-quant: %s\n", spec);
        if ((rc = measure(o, spec, &base, &queries, &gt, &r)))
            break;
        printf("%-8s %6.2f %6zu %8.3f %11.0f %8.5f %+9.5f %9.5f %8.4f %10.4f %8.1f\n", r.quant,
               r.bits_per_dim, r.bytes_per_vector, r.train_s, r.encode_per_s, r.mse, r.ip_bias,
               sqrt(r.ip_var), r.r10, r.r10_rerank, r.qps);
        fflush(stdout);
        if (o->json != NULL) {
            /* Formatted in memory, appended with one write (cli_append_line),
             * so a full disk says so and leaves no half line. */
            char *line = NULL;
            size_t line_len = 0;
            FILE *f = open_memstream(&line, &line_len);
            if (f == NULL) {
                rc = cli_error(CLI_EXIT_FAIL, "out of memory formatting a JSON line for '%s'",
                               o->json);
                break;
            }
            fprintf(f, "{\"tool\":\"rotor\",\"version\":\"%s\",\"kind\":\"eval-quant\",\"quant\":",
                    rotor_version_string());
            cli_json_string(f, r.quant);
            fprintf(f,
                    ",\"metric\":\"%s\",\"simd\":\"%s\",\"n_base\":%zu,\"dim\":%zu,"
                    "\"n_queries\":%zu,\"bytes_per_vector\":%zu",
                    rotor_metric_name(o->metric), rotor_simd_level(), base.rows, base.cols,
                    queries.rows, r.bytes_per_vector);
            json_number(f, "bits_per_dim", r.bits_per_dim);
            json_number(f, "train_seconds", r.train_s);
            json_number(f, "encode_vectors_per_s", r.encode_per_s);
            json_number(f, "mse", r.mse);
            json_number(f, "ip_bias", r.ip_bias);
            json_number(f, "ip_var", r.ip_var);
            json_number(f, "recall_at_10", r.r10);
            json_number(f, "recall_at_10_rerank", r.r10_rerank);
            json_number(f, "scan_qps", r.qps);
            json_number(f, "scan_qps_rerank", r.qps_rerank);
            fprintf(f, ",\"timestamp\":%lld}\n", (long long)time(NULL));
            if (fclose(f) != 0)
                rc = cli_error(CLI_EXIT_FAIL, "out of memory formatting a JSON line for '%s'",
                               o->json);
            else
                rc = cli_append_line(o->json, line, line_len);
            free(line);
            if (rc != CLI_EXIT_OK)
                break;
        }
    }
    free(specs);
done:
    rotor_matrix_free(&base);
    rotor_matrix_free(&queries);
    rotor_matrix_free(&gt);
    return rc;
}
