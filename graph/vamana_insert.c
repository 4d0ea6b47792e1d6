/*
 * Inserting into a Vamana graph that searches are reading: the adds after
 * a build (rotor.h, "Threads").
 *
 * The algorithm is the build's single pass (vamana_build.c): a greedy
 * search for the new point, RobustPrune of what it expanded, a back edge
 * from every neighbour it keeps, a list that overflows the slack pruned
 * back to R. What differs is how a change reaches the records. Inserting
 * threads take turns on a record with its spin lock, as in a build, but a
 * search takes no lock at all: it holds the index shared for a whole query
 * (graph_space.publish). So an insertion computes every record it changes
 * (the new point's, and each neighbour's with the back edge or the prune,
 * neighbour codes included) into images of its own, holding the spin
 * locks of those nodes (taken in ascending order, so two insertions never
 * wait on each other), and then copies the images over the records while
 * it holds the index exclusively: the searches stopped for that copy are
 * held for a few microseconds once per insertion, and never see a record
 * half written or an id without its code.
 *
 * A back edge appended past R sits in the slack, where a search never
 * reads (it reads at most R ids of a record; the neighbour-code block has
 * R slots); the list is flagged and pruned back to R at the end of the
 * add (vm_trim_live). The new points themselves are linked before the
 * index counts them, and a search passes over ids at or past its count,
 * so the whole add appears at once.
 */
#include <stdbool.h>
#include <string.h>

#include "graph/vamana.h"

void vm_image_codes(const vamana *g, const graph_space *s, uint32_t *rec, uint32_t from,
                    uint8_t *code) {
    if (!g->neighbor_codes)
        return;
    const quant *walk = g->walk_q;
    const uint32_t end = rec[0] < g->p.degree ? rec[0] : g->p.degree;
    uint8_t *block = (uint8_t *)rec + g->block_off;
    for (uint32_t j = from; j < end; j++)
        quant_copy(walk, block, j, s->walk_codes, rec[1 + j], code);
}

/* Copies n images over their records, searches held. */
static void publish(vamana *g, const graph_space *s, const uint8_t *img, const uint32_t *target,
                    size_t n) {
    graph_publish_begin(s);
    for (size_t i = 0; i < n; i++)
        memcpy(node_of(g, target[i]), img + i * g->node_bytes, g->node_bytes);
    graph_publish_end(s);
}

/* Sorts a few ids ascending (at most R + 1: insertion sort). */
static void sort_ids(uint32_t *a, size_t n) {
    for (size_t i = 1; i < n; i++) {
        const uint32_t v = a[i];
        size_t j = i;
        for (; j > 0 && a[j - 1] > v; j--)
            a[j] = a[j - 1];
        a[j] = v;
    }
}

/* Inserts p into u's list of deg < R ids (img + 1) before the first
 * neighbour farther from u, and returns where. A list begins with its
 * prune's picks, nearest first, and a walk may read only its first ones
 * (nav_search_params.neighbors): an edge appended at the end hid the
 * added points from it (48-d points around 32 centres, 17,000 added in
 * batches of 500 to 2,000: recall at L 16 reading 32 of 64 neighbours
 * 0.929, in place 0.971, built in one piece 0.975; adds took 8-13 % more
 * CPU). The build's own back edges are appended: its second pass prunes
 * every point's list again. */
static uint32_t insert_in_place(const graph_space *s, const simd_ops *ops, uint32_t u,
                                uint32_t *img, uint32_t deg, uint32_t p) {
    const size_t d = s->dim;
    const float *xu = s->vectors + (size_t)u * d;
    const float dp = ops->l2sq_f32(xu, s->vectors + (size_t)p * d, d);
    uint32_t pos = 0;
    while (pos < deg && ops->l2sq_f32(xu, s->vectors + (size_t)img[1 + pos] * d, d) <= dp)
        pos++;
    memmove(img + 2 + pos, img + 1 + pos, (deg - pos) * sizeof *img);
    img[1 + pos] = p;
    img[0] = deg + 1;
    return pos;
}

/* The image of u's record with the edge u -> p added; false (no image)
 * when u already links to p. */
static bool back_edge_image(vamana *g, const graph_space *s, const simd_ops *ops, vm_worker *w,
                            uint32_t u, uint32_t p, float alpha, uint32_t *img) {
    const uint32_t *rec = node_of(g, u);
    const uint32_t deg = rec[0];
    for (uint32_t j = 0; j < deg; j++)
        if (rec[1 + j] == p)
            return false;
    memcpy(img, rec, g->node_bytes);
    if (deg < g->p.degree) {
        vm_image_codes(g, s, img, insert_in_place(s, ops, u, img, deg, p), w->code);
        return true;
    }
    if (deg < g->slots) { /* past R: the trim prunes it */
        img[1 + deg] = p;
        img[0] = deg + 1;
        vm_image_codes(g, s, img, deg, w->code);
        g->dirty[u] = 1;
        return true;
    }
    const float *xu = s->vectors + (size_t)u * s->dim;
    vm_score_ids(s, ops, xu, rec + 1, deg, w->sc->prune);
    vm_score_ids(s, ops, xu, &p, 1, w->sc->prune + deg);
    img[0] = vm_robust_prune(g, s, ops, w->sc, u, (size_t)deg + 1, alpha, img + 1);
    vm_image_codes(g, s, img, 0, w->code);
    return true;
}

void vm_insert_live(vamana *g, const graph_space *s, const simd_ops *ops, vm_worker *w, uint32_t p,
                    float alpha, size_t list) {
    vm_scratch *sc = w->sc;
    const float *x = s->vectors + (size_t)p * s->dim;
    vm_build_search(g, s, ops, sc, x, list, NULL, 0);
    const size_t n = sc->pool_size;
    memcpy(sc->prune, sc->pool, n * sizeof *sc->pool);
    /* Earlier points of this add may have linked to p already. */
    vm_node_lock(g, p);
    const uint32_t deg = node_of(g, p)[0];
    memcpy(sc->nbrs, node_of(g, p) + 1, deg * sizeof(uint32_t));
    vm_node_unlock(g, p);
    vm_score_ids(s, ops, x, sc->nbrs, deg, sc->prune + n);
    const uint32_t *chosen = sc->nbrs;
    const uint32_t kept = vm_robust_prune(g, s, ops, sc, p, n + deg, alpha, sc->nbrs);

    size_t held = 0;
    w->held[held++] = p;
    for (uint32_t j = 0; j < kept; j++)
        w->held[held++] = chosen[j];
    sort_ids(w->held, held);
    for (size_t i = 0; i < held; i++)
        vm_node_lock(g, w->held[i]);

    uint32_t *img = (uint32_t *)w->img;
    memcpy(img, node_of(g, p), g->node_bytes);
    img[0] = kept;
    memcpy(img + 1, chosen, kept * sizeof *chosen);
    vm_image_codes(g, s, img, 0, w->code);
    w->target[0] = p;
    size_t nimg = 1;
    for (uint32_t j = 0; j < kept; j++) {
        img = (uint32_t *)(w->img + nimg * g->node_bytes);
        if (back_edge_image(g, s, ops, w, chosen[j], p, alpha, img))
            w->target[nimg++] = chosen[j];
    }
    publish(g, s, w->img, w->target, nimg);
    for (size_t i = 0; i < held; i++)
        vm_node_unlock(g, w->held[i]);
}

/* No insertion runs during the trim, and each node is one worker's: the
 * records are read without their locks. */
void vm_trim_live(vamana *g, const graph_space *s, const simd_ops *ops, vm_worker *w,
                  const uint32_t *ids, size_t n, float alpha) {
    for (size_t i = 0; i < n; i++) {
        const uint32_t u = ids[i];
        const uint32_t *rec = node_of(g, u);
        uint32_t *img = (uint32_t *)(w->img + i * g->node_bytes);
        memcpy(img, rec, g->node_bytes);
        vm_score_ids(s, ops, s->vectors + (size_t)u * s->dim, rec + 1, rec[0], w->sc->prune);
        img[0] = vm_robust_prune(g, s, ops, w->sc, u, rec[0], alpha, img + 1);
        vm_image_codes(g, s, img, 0, w->code);
    }
    if (n > 0)
        publish(g, s, w->img, ids, n);
}

bool vm_link(vamana *g, const graph_space *s, uint32_t v, uint32_t u, uint32_t slot, uint8_t *img,
             uint8_t *code) {
    const uint32_t *old = node_of(g, v);
    for (uint32_t j = 0; j < old[0]; j++)
        if (old[1 + j] == u)
            return false; /* v, itself linked in since, led to u already */
    uint32_t *rec = (uint32_t *)img;
    memcpy(rec, old, g->node_bytes);
    uint32_t pos;
    if (rec[0] < g->p.degree) {
        pos = insert_in_place(s, simd_ops_get(), v, rec, rec[0], u);
    } else {
        pos = slot < g->p.degree ? slot : g->p.degree - 1;
        rec[1 + pos] = u;
    }
    vm_image_codes(g, s, rec, pos, code);
    publish(g, s, img, &v, 1);
    return true;
}

/* Whether one of u's out-neighbours links back to u (a cheap stand-in
 * for "u is reached": the edges into a new point come from the
 * neighbours it chose, unless a prune dropped them). */
static bool linked_back(const vamana *g, uint32_t u) {
    const uint32_t *rec = node_of(g, u);
    for (uint32_t j = 0; j < rec[0]; j++) {
        const uint32_t *v = node_of(g, rec[1 + j]);
        for (uint32_t t = 0; t < v[0]; t++)
            if (v[1 + t] == u)
                return true;
    }
    return false;
}

void vm_link_new_points(vamana *g, const graph_space *s, vm_worker *w, const uint32_t *points,
                        size_t n) {
    for (size_t i = 0; i < n; i++) {
        const uint32_t u = points[i];
        const uint32_t *rec = node_of(g, u);
        if (rec[0] > 0 && !linked_back(g, u))
            vm_link(g, s, rec[1], u, g->p.degree - 1, w->img, w->code);
    }
}
