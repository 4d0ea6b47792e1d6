/*
 * Starting points of a quantized search (DiskANN starts from one medoid;
 * this keeps many). The build keeps a uniform sample of n / 8 nodes (at
 * least MIN_STARTS, at most MAX_STARTS) whose walking codes sit together,
 * grouped around leaders; a search scores the leaders, then the groups of
 * the nearest until nav_search_params.starts points are scored. A
 * fast-scan pass over 32 codes costs about as much as expanding one node;
 * the sample lands the search near the query instead of at the medoid of
 * the whole set, and its best estimates also feed a deep rerank. How many
 * pay depends on the data (rotor_search_params.start_points), so the index
 * keeps enough for any.
 */
#include <math.h>
#include <string.h>

#include "graph/vamana.h"
#include "quant/kmeans.h"

rotor_status vm_fill_leader_codes(vamana *g) {
    const quant *walk = g->walk_q;
    g->leader_codes =
        cm_calloc(&g->base.alloc, walk->ops->store_bytes(walk, g->ngroups), "group leaders");
    uint8_t *code = cm_alloc(&g->base.alloc, walk->code_bytes, "code copy");
    rotor_status st = ROTOR_OK;
    if (g->leader_codes == NULL || code == NULL) {
        st = ROTOR_ERR_OUT_OF_MEMORY;
    } else {
        for (size_t c = 0; c < g->ngroups; c++)
            quant_copy(walk, g->leader_codes, c, g->start_codes, g->group_off[c], code);
    }
    cm_free(&g->base.alloc, code);
    return st;
}

rotor_status vm_copy_groups(vamana *g, const graph_space *s, const vamana *src, uint8_t *code) {
    const rotor_allocator *a = &g->base.alloc;
    const size_t n = src->nstarts;
    g->group_off = cm_alloc(a, (src->ngroups + 1) * sizeof *g->group_off, "group offsets");
    if (g->group_off == NULL)
        return ROTOR_ERR_OUT_OF_MEMORY;
    memcpy(g->group_off, src->group_off, (src->ngroups + 1) * sizeof *g->group_off);
    memcpy(g->starts, src->starts, n * sizeof *g->starts);
    for (size_t j = 0; j < n; j++)
        quant_copy(g->walk_q, g->start_codes, j, s->walk_codes, g->starts[j], code);
    g->nstarts = n;
    g->ngroups = src->ngroups;
    rotor_status st = vm_fill_leader_codes(g);
    if (st != ROTOR_OK) {
        cm_free(a, g->group_off);
        g->group_off = NULL;
        g->ngroups = 0;
        g->nstarts = 0;
    }
    return st;
}

void vm_move_start(vamana *g, const graph_space *s, size_t j, uint32_t to, uint8_t *code) {
    g->starts[j] = to;
    quant_copy(g->walk_q, g->start_codes, j, s->walk_codes, to, code);
}

/* Groups the starting points around leaders, so a search scores the
 * leaders and then only the groups nearest the query: the points it scores
 * are then near the query instead of a uniform sample, and a few hundred
 * do what thousands did. k-means (squared L2, like the build) places
 * about sqrt(n) centres: every search scores every leader, and with
 * groups cut to the points asked for (vm_enter_starts) larger groups cost
 * no recall: groups of 32, 64 and 128 (424 to 106 leaders of 13,600
 * starts, 200-d word vectors) reached the same recall (within 0.001),
 * and on Fashion-MNIST (7,500 starts) groups of 128 were within 0.002 of
 * 32 at every setting; sqrt(n) groups took 8.7 % fewer instructions a
 * search than groups of 32 (word vectors, L 48). Each centre's nearest member
 * becomes a leader, since a leader is scored with the walking code of a
 * real point; every point then joins its nearest leader, the side a query
 * would pick. The starts are reordered group by group, each leader
 * first. */
rotor_status vm_group_starts(vamana *g, const graph_space *s) {
    const size_t n = g->nstarts, dim = s->dim;
    size_t k = (size_t)lround(sqrt((double)n));
    if (k < 2)
        return ROTOR_OK;
    const rotor_allocator *a = &g->base.alloc;
    float *x = cm_alloc(a, n * dim * sizeof *x, "starting points");
    float *centre = cm_alloc(a, k * dim * sizeof *centre, "group centres");
    float *best = cm_alloc(a, k * sizeof *best, "group leaders");
    uint32_t *assign = cm_alloc(a, n * sizeof *assign, "group assignment");
    uint32_t *leader = cm_alloc(a, k * sizeof *leader, "group leaders");
    uint32_t *order = cm_alloc(a, n * sizeof *order, "group order");
    g->group_off = cm_calloc(a, (k + 1) * sizeof *g->group_off, "group offsets");
    /* Zeroed: a block's columns past n are copied over the store too,
     * and a file written twice should be the same file. */
    uint8_t *codes = cm_calloc(a, g->walk_q->ops->store_bytes(g->walk_q, n), "starting points");
    uint8_t *code = cm_alloc(a, g->walk_q->code_bytes, "code copy");
    rotor_status st = ROTOR_OK;
    if (x == NULL || centre == NULL || best == NULL || assign == NULL || leader == NULL ||
        order == NULL || g->group_off == NULL || codes == NULL || code == NULL)
        st = ROTOR_ERR_OUT_OF_MEMORY;
    for (size_t i = 0; st == ROTOR_OK && i < n; i++)
        memcpy(x + i * dim, s->vectors + (size_t)g->starts[i] * dim, dim * sizeof *x);
    unsigned threads = g->p.threads > 64 ? 64 : g->p.threads;
    if (st == ROTOR_OK) {
        km_params kp = {k, GROUP_ITERS, threads, g->p.seed};
        st = km_train(a, x, n, dim, dim, &kp, centre, assign, NULL);
    }
    if (st == ROTOR_OK) {
        const simd_ops *ops = simd_ops_get();
        for (size_t c = 0; c < k; c++)
            best[c] = INFINITY;
        for (size_t i = 0; i < n; i++) {
            float d = ops->l2sq_f32(x + i * dim, centre + (size_t)assign[i] * dim, dim);
            if (d < best[assign[i]]) {
                best[assign[i]] = d;
                leader[assign[i]] = (uint32_t)i;
            }
        }
        /* A cluster k-means could not fill (many equal points) has no
         * leader and no group. */
        size_t kept = 0;
        for (size_t c = 0; c < k; c++)
            if (best[c] < INFINITY)
                leader[kept++] = leader[c];
        k = kept;
        for (size_t c = 0; c < k; c++)
            memcpy(centre + c * dim, x + (size_t)leader[c] * dim, dim * sizeof *x);
        if (k >= 2)
            st = km_assign(a, x, n, dim, dim, centre, k, threads, assign, NULL);
    }
    if (st == ROTOR_OK && k >= 2) {
        /* A duplicate of a leader may have pulled it into another group. */
        for (size_t c = 0; c < k; c++)
            assign[leader[c]] = (uint32_t)c;
        for (size_t i = 0; i < n; i++)
            g->group_off[assign[i] + 1]++;
        for (size_t c = 0; c < k; c++)
            g->group_off[c + 1] += g->group_off[c];
        /* Leaders first, then the members in sample order. */
        for (size_t c = 0; c < k; c++)
            order[g->group_off[c]++] = leader[c];
        for (size_t i = 0; i < n; i++)
            if (leader[assign[i]] != i)
                order[g->group_off[assign[i]]++] = (uint32_t)i;
        for (size_t c = k; c > 0; c--)
            g->group_off[c] = g->group_off[c - 1];
        g->group_off[0] = 0;
        for (size_t j = 0; j < n; j++) {
            quant_copy(g->walk_q, codes, j, g->start_codes, order[j], code);
            assign[j] = g->starts[order[j]];
        }
        memcpy(g->starts, assign, n * sizeof *assign);
        memcpy(g->start_codes, codes, g->walk_q->ops->store_bytes(g->walk_q, n));
        g->ngroups = k;
        st = vm_fill_leader_codes(g);
    }
    if (st != ROTOR_OK || g->ngroups == 0) {
        cm_free(a, g->group_off);
        cm_free(a, g->leader_codes);
        g->group_off = NULL;
        g->leader_codes = NULL;
        g->ngroups = 0;
    }
    cm_free(a, x);
    cm_free(a, centre);
    cm_free(a, best);
    cm_free(a, assign);
    cm_free(a, leader);
    cm_free(a, order);
    cm_free(a, codes);
    cm_free(a, code);
    return st;
}

/* n / 8, at least MIN_STARTS (all of a smaller set), at most MAX_STARTS.
 * Grouping cost S^2 d / 32 a k-means pass while groups held 32 (now
 * S^1.5 d), too much for a sample a quarter of a small set: on
 * Fashion-MNIST (60,000 x 784) 16,384 points took 2.4 s of a 12 s build;
 * 7,500 took 0.45 s and searched as well. */
size_t vm_start_sample_size(size_t n) {
    size_t s = n / 8;
    if (s < MIN_STARTS)
        s = MIN_STARTS;
    if (s > MAX_STARTS)
        s = MAX_STARTS;
    return s < n ? s : n;
}

/* Scores starting points [first, first + n) and enters the good ones. As
 * for a node's neighbours, only the estimates good enough to enter are
 * marked visited (thousands of starting points would otherwise touch as
 * many words of the visited set), and the others are skipped a vector at a
 * time. */
static void enter_start_range(const vamana *g, const void *qs, size_t first, size_t n,
                              vm_scratch *sc, vm_sink *k) {
    const simd_ops *ops = simd_ops_get();
    const uint32_t *ids = g->starts + first;
    g->walk_q->ops->scan(g->walk_q, qs, g->start_codes, first, n, sc->est);
    float gate = entry_gate(k);
    for (size_t j = ops->first_below(sc->est, 0, n, gate); j < n;
         j = ops->first_below(sc->est, j + 1, n, gate)) {
        if (!visit(sc, ids[j]))
            continue;
        sink_offer(k, sc->est[j], ids[j]);
        gate = entry_gate(k);
    }
}

/* All of them when ungrouped or when as many are wanted, else the groups
 * of the leaders nearest the query, nearest first, until they hold `want`
 * points (the last group cut short: its members are a random sample of
 * it). Group sizes follow the data's density, and a query lands where
 * the data is dense: the nearest `want * groups / starts` groups held 4-5
 * times `want` (100,000 200-d word vectors, want 256: some 1,250 scored,
 * as many as the walk's own codes). Returns the starting points scored.
 * The leaders are not counted: the cost model (index/tune.c) was fitted
 * without them, their price folded into its constant a query, and
 * counting them moved Fashion-MNIST's choice to a walk on full vectors
 * that ran 0.70-0.78x the QPS of the codes it had chosen. */
size_t vm_enter_starts(const vamana *g, const void *qs, size_t want, vm_scratch *sc, vm_sink *k) {
    if (g->ngroups == 0 || want >= g->nstarts) {
        const size_t n = want < g->nstarts ? want : g->nstarts;
        enter_start_range(g, qs, 0, n, sc, k);
        return n;
    }
    const size_t ng = g->ngroups;
    /* Leaders enough, sorted, for groups down to a quarter of the mean
     * size: by insertion, most fail the first comparison. */
    size_t keep = 4 * ((want * ng + g->nstarts - 1) / g->nstarts);
    keep = keep < ng ? keep : ng;
    g->walk_q->ops->scan(g->walk_q, qs, g->leader_codes, 0, ng, sc->est);
    size_t m = 0;
    for (size_t c = 0; c < ng; c++) {
        const float d = sc->est[c];
        if (m == keep && d >= sc->picks[m - 1].dist)
            continue;
        size_t j = m < keep ? m++ : m - 1;
        for (; j > 0 && sc->picks[j - 1].dist > d; j--)
            sc->picks[j] = sc->picks[j - 1];
        sc->picks[j] = (vm_cand){d, (uint32_t)c};
    }
    size_t held = 0;
    for (size_t j = 0; j < m && held < want; j++) {
        const uint32_t c = sc->picks[j].id;
        const size_t size = g->group_off[c + 1] - g->group_off[c];
        const size_t n = size < want - held ? size : want - held;
        enter_start_range(g, qs, g->group_off[c], n, sc, k);
        held += n;
    }
    return held;
}
