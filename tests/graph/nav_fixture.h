/*
 * What the navigator tests share: clustered data, parameters, recall against
 * a double-precision brute force, the graph's invariants, and the checks
 * every kind must pass (adds, batch = single search, padding, allocation
 * failures). Each kind's test file calls them with its kind.
 */
#ifndef ROTOR_TESTS_NAV_FIXTURE_H
#define ROTOR_TESTS_NAV_FIXTURE_H

#include "graph/graph.h"
#include "index/index_internal.h"
#include "support/support.h"

/* Clustered data, as embeddings are: a graph on uniform noise in 32
 * dimensions has little structure to find, and recall floors there would
 * test the data more than the index. */
enum { N = 3000, NQ = 60, D = 32, CLUSTERS = 40, K = 10 };

typedef struct fixture {
    float *base, *queries;
} fixture;

int nav_setup(void **state);
int nav_teardown(void **state);
rotor_params graph_params(rotor_index_kind kind, rotor_metric metric, const char *spec);
rotor_index *build_n(const fixture *f, const rotor_params *p, size_t n);
/* recall@K: the share of returned ids within the true K-th distance. */
double recall(const fixture *f, const rotor_index *ix, size_t n, rotor_metric metric,
              const rotor_search_params *sp);
/* Degrees within R, ids inside the index, no self loops or repeats, and
 * every node reachable from the entry point. */
void check_graph(const rotor_index *ix);
/* Recall of every metric and quantizer at least `floor`. */
void check_recall(void **state, rotor_index_kind kind, const char *const *quants, double floor);
/* Half built, half added: as good, and a bad add changes nothing. */
void check_add(void **state, rotor_index_kind kind);
void check_batch_equals_single(void **state, rotor_index_kind kind);
/* k beyond the index: the tail is padded. */
void check_padding(void **state, rotor_index_kind kind);
/* Every allocation a build and a search make may fail: each failure is
 * reported as out of memory and nothing leaks. */
void check_alloc_failures(void **state, rotor_index_kind kind);

#endif
