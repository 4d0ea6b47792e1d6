/*
 * Recall as ann-benchmarks counts it, shared by bench and eval-quant.
 */
#include <math.h>

#include "cli.h"

double cli_exact_distance(rotor_metric m, const float *q, const float *x, size_t d) {
    double acc = 0, qq = 0, xx = 0;
    for (size_t j = 0; j < d; j++) {
        if (m == ROTOR_METRIC_L2) {
            double t = (double)q[j] - x[j];
            acc += t * t;
        } else {
            acc += (double)q[j] * x[j];
            qq += (double)q[j] * q[j];
            xx += (double)x[j] * x[j];
        }
    }
    if (m == ROTOR_METRIC_IP)
        return -acc;
    if (m == ROTOR_METRIC_COSINE)
        return qq > 0 && xx > 0 ? 1.0 - acc / sqrt(qq * xx) : 1.0;
    return acc;
}

/* How many of the first `at` true neighbours of a query exist: a filtered
 * ground truth ends in -1 where fewer vectors pass than asked for. */
static size_t true_count(const int32_t *row, size_t at) {
    size_t n = 0;
    while (n < at && row[n] >= 0)
        n++;
    return n;
}

/* Where recall reads a vector by id: the base matrix, or (base NULL) the
 * index, copied into row. NULL for an id neither holds. */
typedef struct recall_rows {
    const rotor_matrix *base;
    const rotor_index *ix;
    float *row;
} recall_rows;

static const float *row_of(const recall_rows *r, int64_t id) {
    if (id < 0)
        return NULL;
    if (r->base != NULL)
        return (size_t)id < r->base->rows
                   ? (const float *)r->base->data + (size_t)id * r->base->cols
                   : NULL;
    return rotor_index_get(r->ix, id, r->row) == ROTOR_OK ? r->row : NULL;
}

/* Mean over queries of |{returned among the first `at`} within the true
 * at-th distance| / at (over the true neighbours there are, for a filtered
 * ground truth; a query with none is left out). NAN when a true neighbour
 * has no vector. */
static double recall_by_distance(const recall_rows *r, const rotor_matrix *queries,
                                 const rotor_matrix *gt, const int64_t *ids, size_t k, size_t at,
                                 rotor_metric metric) {
    const size_t d = queries->cols;
    const int32_t *g = gt->data;
    double total = 0;
    size_t counted = 0;
    for (size_t qi = 0; qi < queries->rows; qi++) {
        const float *q = (const float *)queries->data + qi * d;
        const size_t want = true_count(g + qi * gt->cols, at);
        if (want == 0)
            continue;
        const float *x = row_of(r, g[qi * gt->cols + want - 1]);
        if (x == NULL)
            return NAN;
        double limit = cli_exact_distance(metric, q, x, d);
        limit += 1e-6 * fmax(1.0, fabs(limit));
        size_t hits = 0;
        for (size_t j = 0; j < at; j++) {
            x = row_of(r, ids[qi * k + j]);
            hits += x != NULL && cli_exact_distance(metric, q, x, d) <= limit;
        }
        total += (double)(hits < want ? hits : want) / (double)want;
        counted++;
    }
    return counted > 0 ? total / (double)counted : 1.0;
}

double cli_recall_at(const rotor_matrix *base, const rotor_matrix *queries, const rotor_matrix *gt,
                     const int64_t *ids, size_t k, size_t at, rotor_metric metric) {
    const recall_rows r = {.base = base};
    return recall_by_distance(&r, queries, gt, ids, k, at, metric);
}

double cli_recall_at_index(const rotor_index *ix, const rotor_matrix *queries,
                           const rotor_matrix *gt, const int64_t *ids, size_t k, size_t at,
                           rotor_metric metric, float *row) {
    const recall_rows r = {.ix = ix, .row = row};
    return recall_by_distance(&r, queries, gt, ids, k, at, metric);
}

double cli_recall_ids(const rotor_matrix *gt, const int64_t *ids, size_t k, size_t at, size_t nq) {
    const int32_t *g = gt->data;
    double total = 0;
    size_t counted = 0;
    for (size_t qi = 0; qi < nq; qi++) {
        const size_t want = true_count(g + qi * gt->cols, at);
        if (want == 0)
            continue;
        size_t hits = 0;
        for (size_t j = 0; j < at; j++)
            for (size_t t = 0; t < want; t++)
                if (ids[qi * k + j] == g[qi * gt->cols + t]) {
                    hits++;
                    break;
                }
        total += (double)hits / (double)want;
        counted++;
    }
    return counted > 0 ? total / (double)counted : 1.0;
}

int cli_load_eval_data(const cli_opts *o, size_t index_rows, rotor_matrix *base,
                       rotor_matrix *queries, rotor_matrix *gt) {
    int rc;
    if ((o->base != NULL && (rc = cli_read_f32(o->base, "base vectors", 0, base))) ||
        (rc = cli_read_f32(o->queries, "queries", o->max_queries, queries)))
        return rc;
    if (o->base != NULL && index_rows != 0 && base->rows != index_rows)
        return cli_error(CLI_EXIT_FAIL, "the base '%s' has %zu rows, the index %zu vectors",
                         o->base, base->rows, index_rows);
    rotor_status st = rotor_matrix_read(o->gt, -1, queries->rows, gt);
    if (st != ROTOR_OK)
        return cli_lib_error(st, "cannot read ground truth");
    if ((rc = cli_check_gt(o, gt, o->base != NULL ? base->rows : index_rows, queries->rows)))
        return rc;
    if (o->base != NULL && queries->cols != base->cols)
        return cli_error(CLI_EXIT_FAIL, "queries in '%s' have %zu dimensions, base in '%s' has %zu",
                         o->queries, queries->cols, o->base, base->cols);
    return CLI_EXIT_OK;
}

int cli_check_gt(const cli_opts *o, const rotor_matrix *gt, size_t base_rows, size_t nq) {
    if (gt->type != ROTOR_ELEM_I32)
        return cli_error(CLI_EXIT_FAIL, "ground truth '%s' must hold int32 ids", o->gt);
    if (gt->rows < nq)
        return cli_error(CLI_EXIT_FAIL, "ground truth '%s' has %zu rows, there are %zu queries",
                         o->gt, gt->rows, nq);
    size_t need = o->k < 10 ? o->k : 10;
    if (gt->cols < need)
        return cli_error(CLI_EXIT_FAIL, "ground truth '%s' has %zu neighbours per query, need %zu",
                         o->gt, gt->cols, need);
    const int32_t *g = gt->data;
    for (size_t i = 0; i < nq * gt->cols; i++) {
        /* Filtered: -1 past the last vector the filter allows. */
        const bool end = o->filtered && g[i] == -1 && (i % gt->cols == 0 || g[i - 1] < 0);
        if (!end && (g[i] < 0 || (size_t)g[i] >= base_rows))
            return cli_error(CLI_EXIT_FAIL,
                             "ground truth '%s' row %zu names id %d, the base has %zu rows", o->gt,
                             i / gt->cols, (int)g[i], base_rows);
    }
    return CLI_EXIT_OK;
}
