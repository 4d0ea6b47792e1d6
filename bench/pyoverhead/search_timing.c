/*
 * The C side of the Python overhead measurement (overhead.py runs both):
 * opens an index file, times rotor_index_search one query at a time (each
 * call timed alone; the median is printed) and rotor_index_search_batch
 * over every query on one thread (the median of --runs runs).
 *
 *   search_timing INDEX QUERIES K LIST RERANK RUNS
 *
 * Prints one line: "c single_median_ns N batch_median_s S batch_cpu_median_s C"
 * (C: the process's CPU time during the batch, steadier than wall time on a
 * shared machine).
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <rotor.h>

static double clock_s(clockid_t id) {
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double now(void) { return clock_s(CLOCK_MONOTONIC); }

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    if (argc != 7) {
        fprintf(stderr, "usage: search_timing INDEX QUERIES K LIST RERANK RUNS\n");
        return 2;
    }
    size_t k = (size_t)atoi(argv[3]);
    int runs = atoi(argv[6]);
    rotor_index *ix = NULL;
    rotor_matrix q = {0};
    if (rotor_index_open(argv[1], NULL, &ix) != ROTOR_OK ||
        rotor_matrix_read(argv[2], ROTOR_ELEM_F32, 0, &q) != ROTOR_OK) {
        fprintf(stderr, "search_timing: %s\n", rotor_last_error());
        return 1;
    }
    rotor_search_params sp = rotor_search_params_default();
    sp.threads = 1;
    sp.list_size = (uint32_t)atoi(argv[4]);
    sp.rerank = atoi(argv[5]);
    int64_t *ids = malloc(q.rows * k * sizeof *ids);
    float *dist = malloc(q.rows * k * sizeof *dist);
    double *lat = malloc(q.rows * (size_t)runs * sizeof *lat);
    double *batch = malloc((size_t)runs * sizeof *batch);
    double *cpu = malloc((size_t)runs * sizeof *cpu);
    if (ids == NULL || dist == NULL || lat == NULL || batch == NULL || cpu == NULL)
        return 1;
    const float *rows = q.data;
    /* Runs alternate single and batch passes, so both see the same machine. */
    for (int r = 0; r < runs; r++) {
        for (size_t i = 0; i < q.rows; i++) {
            double t0 = now();
            rotor_index_search(ix, &sp, rows + i * q.cols, q.cols, k, ids, dist);
            lat[(size_t)r * q.rows + i] = now() - t0;
        }
        double t0 = now(), c0 = clock_s(CLOCK_PROCESS_CPUTIME_ID);
        if (rotor_index_search_batch(ix, &sp, &q, k, ids, dist) != ROTOR_OK) {
            fprintf(stderr, "search_timing: %s\n", rotor_last_error());
            return 1;
        }
        batch[r] = now() - t0;
        cpu[r] = clock_s(CLOCK_PROCESS_CPUTIME_ID) - c0;
    }
    qsort(lat, q.rows * (size_t)runs, sizeof *lat, cmp);
    qsort(batch, (size_t)runs, sizeof *batch, cmp);
    qsort(cpu, (size_t)runs, sizeof *cpu, cmp);
    printf("c single_median_ns %.1f batch_median_s %.6f batch_cpu_median_s %.6f\n",
           1e9 * lat[q.rows * (size_t)runs / 2], batch[runs / 2], cpu[runs / 2]);
    free(ids);
    free(dist);
    free(lat);
    free(batch);
    free(cpu);
    rotor_matrix_free(&q);
    rotor_index_close(ix);
    return 0;
}
