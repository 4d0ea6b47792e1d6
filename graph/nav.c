/*
 * The registry of navigators: the one place that lists the index kinds.
 */
#include "graph/graph.h"

const nav_ops *nav_ops_of(rotor_index_kind kind) {
    static const nav_ops *const all[] = {&flat_nav_ops, &vamana_nav_ops, &ivf_nav_ops};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (all[i]->kind == kind)
            return all[i];
    return NULL;
}
