/*
 * The measurements behind the cost model of index/tune.c: opens an index
 * file and, for a grid of search settings, runs the queries one at a time on
 * one thread, printing per setting the work every search counted
 * (nav_work) beside the thread CPU time it took. fit.py fits the model's
 * constants to these lines.
 *
 *   work_timing INDEX QUERIES [MAX_QUERIES [LOAD]]
 *
 * LOAD 1 copies the index into memory (rotor_open_params.load), as the
 * benchmarks in bench/RESULTS.md do; a walk on other codes is measured at
 * three refine depths (the default, and once and twice the rerank).
 *
 * Built against the library's internals (it reads nav_work), from the
 * repository root, after a release build into build/rel:
 *   cc -O2 -I. -Iinclude bench/costfit/work_timing.c build/rel/librotor.a \
 *      -luring -lxxhash -lz -lpthread -lm -o work_timing
 * Prints CSV: quant,walk,nbr,dim,count,code_bytes,walk_bytes,node_bytes,disk,list,rerank,
 *             refine,hops,scored,gathered,pooled,refined,reranked,probed,ns,row_bytes
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "index/index_internal.h"

static double cpu_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: work_timing INDEX QUERIES [MAX_QUERIES]\n");
        return 2;
    }
    rotor_open_params op = rotor_open_params_default();
    op.load = argc > 4 && atoi(argv[4]) == 1;
    rotor_index *ix;
    if (rotor_index_open(argv[1], &op, &ix) != ROTOR_OK) {
        fprintf(stderr, "work_timing: %s\n", rotor_last_error());
        return 1;
    }
    rotor_reader *r;
    if (rotor_reader_open(argv[2], &r) != ROTOR_OK) {
        fprintf(stderr, "work_timing: %s\n", rotor_last_error());
        return 1;
    }
    const rotor_file_info fi = *rotor_reader_info(r), *info = &fi;
    size_t nq = info->rows, d = info->cols;
    if (argc > 3 && (size_t)atol(argv[3]) < nq)
        nq = (size_t)atol(argv[3]);
    void *raw = malloc(nq * d * rotor_elem_size(info->type));
    size_t got = 0;
    rotor_reader_read(r, raw, nq, &got);
    rotor_reader_close(r);
    float *q = malloc(nq * d * sizeof *q);
    rotor_matrix m = {raw, nq, d, info->type};
    if (ix_convert_rows(&m, ix->metric, q, "queries") != ROTOR_OK) {
        fprintf(stderr, "work_timing: %s\n", rotor_last_error());
        return 1;
    }
    nav_stats ns;
    graph_space space = ix_space(ix);
    ix->nav->ops->stats(ix->nav, &space, &ns);
    const double node_bytes = (double)(ns.bytes_ids + ns.bytes_codes) / (double)ix->count;
    const bool ivf = ix->params.kind == ROTOR_INDEX_IVF;
    static const unsigned lists[] = {10, 16, 24, 32, 48, 64, 96, 128, 192};
    static const unsigned reranks[] = {10, 30, 100};
    const size_t nr = ix->q ? 3 : 1;
    const size_t nf = ix->walk_q ? 3 : 1;
    int64_t ids[10];
    float dist[10];
    for (size_t a = 0; a < sizeof lists / sizeof lists[0]; a++) {
        for (size_t b = 0; b < nr * nf; b++) {
            nav_work w = {0};
            const size_t rerank = ix->q ? reranks[b / nf] : 0;
            nav_search_params np = {.rerank = rerank, .refine = rerank * (b % nf), .work = &w};
            if (ivf)
                np.nprobe = lists[a] / 4;
            else
                np.list = lists[a];
            /* A warm-up pass, then the least of three timed ones: on a
             * shared machine a neighbour's load only ever adds time. */
            double t = 0;
            for (int pass = 0; pass < 4; pass++) {
                memset(&w, 0, sizeof w);
                const double t0 = cpu_ns();
                for (size_t i = 0; i < nq; i++)
                    ix_search_nav(ix, &np, q + i * d, 10, ids, dist, NULL);
                const double tp = (cpu_ns() - t0) / (double)nq;
                t = pass == 1 || tp < t ? tp : t;
                if (pass == 3)
                    printf("%s,%s,%d,%zu,%zu,%zu,%zu,%.0f,%d,%zu,%zu,%zu,%.2f,%.2f,%.2f,%.2f,%.2f,%"
                           ".2f,%.2f,%.0f,%zu\n",
                           ix->quant_name, ix->walk_q ? ix->walk_name : ix->quant_name,
                           ix->params.neighbor_codes, d, ix->count, ix->q ? ix->q->code_bytes : 0,
                           ix->walk_q ? ix->walk_q->code_bytes
                           : ix->q    ? ix->q->code_bytes
                                      : 0,
                           node_bytes, ix->store != NULL, ivf ? np.nprobe : np.list, np.rerank,
                           np.refine, (double)w.hops / nq, (double)w.scored / nq,
                           (double)w.gathered / nq, (double)w.pooled / nq, (double)w.refined / nq,
                           (double)w.reranked / nq, (double)w.probed / nq, t,
                           graph_row_bytes(&space));
            }
        }
    }
    rotor_index_close(ix);
    free(raw);
    free(q);
    return 0;
}
