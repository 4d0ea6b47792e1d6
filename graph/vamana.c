/*
 * The Vamana graph object: its layout, the pool of per-thread scratch that
 * searches and builds draw from, its statistics and its table of
 * operations. See vamana.h for the record layout and the other phases.
 */
#include <string.h>
#include <sys/mman.h>

#include "graph/vamana.h"

size_t vamana_count(const nav *n) { return vamana_of(n)->count; }
uint32_t vamana_entry(const nav *n) { return vamana_of(n)->entry; }
uint32_t vamana_max_degree(const nav *n) { return vamana_of(n)->p.degree; }

size_t vamana_start_groups(const nav *n, const uint32_t **ids, size_t *nstarts,
                           const uint32_t **off) {
    const vamana *g = vamana_of(n);
    *ids = g->starts;
    *nstarts = g->nstarts;
    *off = g->group_off;
    return g->ngroups;
}

uint32_t vamana_neighbors(const nav *n, size_t node, const uint32_t **nbrs) {
    if (vamana_of(n)->nodes == NULL) { /* on disk */
        *nbrs = NULL;
        return 0;
    }
    const uint32_t *rec = node_of(vamana_of(n), node);
    *nbrs = rec + 1;
    return rec[0];
}

static void vamana_stats(const nav *n, const graph_space *s, nav_stats *out) {
    const vamana *g = vamana_of(n);
    *out = (nav_stats){
        .bytes_ids = g->count * (g->node_bytes - g->block_bytes) + g->capacity * 2,
        .bytes_codes = g->count * g->block_bytes,
        .degree = g->p.degree,
        .start_points = g->nstarts,
        .start_groups = g->ngroups,
        .build_shards = g->shards,
    };
    if (g->disk != NULL)
        vm_disk_stats(g, s, out);
}

/* Parameters arrive checked by the index (params.c); the layout is a
 * function of (R, walking quantizer, neighbour codes). */
rotor_status vamana_create(const rotor_allocator *a, const nav_params *p, const graph_space *s,
                           nav **out) {
    *out = NULL;
    const quant *walk = s->walk_q;
    vamana *g = cm_calloc(a, sizeof *g, "graph");
    if (g == NULL)
        return ROTOR_ERR_OUT_OF_MEMORY;
    g->base = (nav){&vamana_nav_ops, *a};
    g->p = *p;
    if (g->p.threads == 0)
        g->p.threads = 1;
    g->walk_q = walk;
    g->neighbor_codes = walk != NULL && p->neighbor_codes;
    g->own_code = walk != NULL && !p->neighbor_codes;
    g->slots = vm_slots(p->degree);
    g->block_off = 4 * ((size_t)g->slots + 1);
    g->code_in_record = g->own_code && walk->ops->store != quant_plain_store;
    g->block_bytes = g->neighbor_codes   ? walk->ops->store_bytes(walk, p->degree)
                     : g->code_in_record ? walk->code_bytes
                                         : 0;
    g->node_bytes = vm_node_bytes(p->degree, g->block_bytes, g->neighbor_codes);
    g->pool = cm_calloc(a, sizeof *g->pool, "graph scratch pool");
    rotor_status st = ROTOR_OK;
    if (g->pool == NULL)
        st = ROTOR_ERR_OUT_OF_MEMORY;
    else if (pthread_mutex_init(&g->pool->lock, NULL) != 0)
        st = cm_fail(ROTOR_ERR_THREAD, "cannot create the graph's mutex");
    if (st != ROTOR_OK) {
        cm_free(a, g->pool);
        cm_free(a, g);
        return st;
    }
    *out = &g->base;
    return ROTOR_OK;
}

static void scratch_free(const vamana *g, vm_scratch *sc) {
    if (sc == NULL)
        return;
    const rotor_allocator *a = &g->base.alloc;
    cm_free(a, sc->visited);
    cm_free(a, sc->touched);
    cm_free(a, sc->list);
    cm_free(a, sc->expanded);
    cm_free(a, sc->pool);
    cm_free(a, sc->nbrs);
    cm_free(a, sc->picks);
    cm_free(a, sc->est);
    cm_free(a, sc->prune);
    cm_free(a, sc->gone);
    cm_free(a, sc->prune_keys);
    cm_free(a, sc->qmem);
    cm_free(a, sc->bqmem);
    cm_free(a, sc->best_d);
    cm_free(a, sc->best_id);
    cm_free(a, sc->cand);
    cm_free(a, sc->fine);
    cm_free(a, sc->img);
    cm_free(a, sc->img_ids);
    cm_free(a, sc);
}

rotor_status vm_scratch_images(const vamana *g, vm_scratch *sc, size_t n) {
    if (n <= sc->img_cap)
        return ROTOR_OK;
    const rotor_allocator *a = &g->base.alloc;
    uint8_t *img = cm_alloc(a, n * g->node_bytes, "record images");
    uint32_t *ids = cm_alloc(a, 2 * n * sizeof *ids, "record images");
    if (img == NULL || ids == NULL) {
        cm_free(a, img);
        cm_free(a, ids);
        return ROTOR_ERR_OUT_OF_MEMORY;
    }
    cm_free(a, sc->img);
    cm_free(a, sc->img_ids);
    sc->img = img;
    sc->img_ids = ids;
    sc->img_cap = n;
    return ROTOR_OK;
}

void vm_release_records(vamana *g) {
    if (g->mapped_bytes > 0)
        munmap(g->nodes, g->mapped_bytes);
    else if (!g->borrowed)
        cm_free(&g->base.alloc, g->nodes);
    cm_free(&g->base.alloc, (void *)g->locks);
    cm_free(&g->base.alloc, g->dirty);
    g->nodes = NULL;
    g->locks = NULL;
    g->dirty = NULL;
    g->borrowed = false;
    g->mapped_bytes = 0;
}

void vamana_free(nav *n) {
    vamana *g = (vamana *)n;
    if (g == NULL)
        return;
    rotor_allocator a = g->base.alloc;
    for (vm_scratch *sc = g->pool->free; sc != NULL;) {
        vm_scratch *next = sc->next;
        scratch_free(g, sc);
        sc = next;
    }
    pthread_mutex_destroy(&g->pool->lock);
    cm_free(&a, g->pool);
    vm_disk_free(g);
    vm_release_records(g);
    cm_free(&a, g->starts);
    cm_free(&a, g->start_codes);
    cm_free(&a, g->group_off);
    cm_free(&a, g->leader_codes);
    cm_free(&a, g);
}

size_t vm_qstate_bytes(const quant *q) {
    return q ? cm_round_up(q->query_bytes, CM_ALIGN) +
                   cm_round_up(q->scratch_floats * sizeof(float), CM_ALIGN)
             : 0;
}

size_t vm_rotation_offset(const graph_space *s) {
    return vm_qstate_bytes(s->walk_q) + (s->q != s->walk_q ? vm_qstate_bytes(s->q) : 0);
}

size_t vm_gather_offset(const graph_space *s) {
    return vm_rotation_offset(s) +
           (s->shared_rotation ? cm_round_up(s->dim * sizeof(float), CM_ALIGN) : 0);
}

/* Grows one scratch array to hold `n` elements of `size` bytes. */
static rotor_status grow_array(const rotor_allocator *a, void **arr, size_t *cap, size_t n,
                               size_t size, bool zero, const char *what) {
    if (n <= *cap)
        return ROTOR_OK;
    void *p = zero ? cm_calloc(a, n * size, what) : cm_alloc(a, n * size, what);
    if (p == NULL)
        return ROTOR_ERR_OUT_OF_MEMORY;
    cm_free(a, *arr);
    *arr = p;
    *cap = n;
    return ROTOR_OK;
}

rotor_status vm_scratch_get(const vamana *g, const graph_space *s, size_t nodes, size_t list,
                            size_t pool, size_t best, vm_scratch **out) {
    pthread_mutex_lock(&g->pool->lock);
    vm_scratch *sc = g->pool->free;
    if (sc != NULL)
        g->pool->free = sc->next;
    pthread_mutex_unlock(&g->pool->lock);
    const rotor_allocator *a = &g->base.alloc;
    if (sc == NULL) {
        sc = cm_calloc(a, sizeof *sc, "search scratch");
        if (sc == NULL)
            return ROTOR_ERR_OUT_OF_MEMORY;
        /* Estimates of a node's neighbours, or of up to all starting
         * points (an ungrouped sample is scored in one scan). */
        const size_t r = cm_round_up((size_t)g->slots + 1, SCORE_BLOCK);
        const size_t e = r > MAX_STARTS ? r : MAX_STARTS;
        sc->nbrs = cm_alloc(a, 2 * r * sizeof *sc->nbrs, "neighbour ids");
        sc->seen = sc->nbrs != NULL ? sc->nbrs + r : NULL;
        sc->est = cm_alloc(a, e * sizeof *sc->est, "neighbour estimates");
        sc->picks = cm_alloc(a, MAX_STARTS * sizeof *sc->picks, "groups of starting points");
        if (sc->nbrs == NULL || sc->est == NULL || sc->picks == NULL) {
            scratch_free(g, sc);
            return ROTOR_ERR_OUT_OF_MEMORY;
        }
    }
    rotor_status st = ROTOR_OK;
    const size_t words = (nodes + 63) / 64;
    if (words > sc->visited_words) {
        /* Fresh zeroed words: nothing is left to forget. */
        size_t cap = sc->visited_words, touched_cap = sc->visited_words;
        st = grow_array(a, (void **)&sc->visited, &cap, words + words / 4, sizeof(uint64_t), true,
                        "visited set");
        if (st == ROTOR_OK)
            st = grow_array(a, (void **)&sc->touched, &touched_cap, cap + 1, sizeof(uint32_t),
                            false, "visited set");
        sc->visited_words = st == ROTOR_OK ? cap : 0;
        sc->ntouched = 0;
    }
    if (st == ROTOR_OK && list + 1 > sc->list_cap) {
        size_t lc = sc->list_cap, ec = sc->list_cap;
        st = grow_array(a, (void **)&sc->list, &lc, list + 1, sizeof(vm_cand), false,
                        "candidate list");
        if (st == ROTOR_OK)
            st = grow_array(a, (void **)&sc->expanded, &ec, list + 1, 1, false, "candidate list");
        if (st == ROTOR_OK)
            sc->list_cap = list + 1;
    }
    if (st == ROTOR_OK && pool > sc->pool_cap) {
        size_t pc = sc->pool_cap, rc = sc->pool_cap, gc = sc->pool_cap, kc = sc->pool_cap;
        size_t n = pool + g->slots + 1;
        st = grow_array(a, (void **)&sc->pool, &pc, n, sizeof(vm_cand), false, "prune pool");
        if (st == ROTOR_OK)
            st = grow_array(a, (void **)&sc->prune, &rc, n, sizeof(vm_cand), false, "prune pool");
        if (st == ROTOR_OK)
            st = grow_array(a, (void **)&sc->gone, &gc, n, 1, false, "prune pool");
        if (st == ROTOR_OK)
            st = grow_array(a, (void **)&sc->prune_keys, &kc, n, sizeof(uint64_t), false,
                            "prune pool");
        if (st == ROTOR_OK)
            sc->pool_cap = n;
    }
    if (best < list + 1)
        best = list + 1; /* the candidates can be the whole list */
    if (st == ROTOR_OK && best > sc->best_cap) {
        size_t dc = sc->best_cap, ic = sc->best_cap, cc = sc->best_cap, fc = sc->best_cap;
        st = grow_array(a, (void **)&sc->best_d, &dc, best, sizeof(float), false, "rerank heap");
        if (st == ROTOR_OK)
            st = grow_array(a, (void **)&sc->best_id, &ic, best, sizeof(int64_t), false,
                            "rerank heap");
        if (st == ROTOR_OK)
            st = grow_array(a, (void **)&sc->cand, &cc, best, sizeof(uint32_t), false,
                            "rerank candidates");
        if (st == ROTOR_OK)
            st = grow_array(a, (void **)&sc->fine, &fc, best, 1, false, "rerank candidates");
        if (st == ROTOR_OK)
            sc->best_cap = best;
    }
    if (st == ROTOR_OK && s->walk_q != NULL) {
        /* Own codes, or records on disk: the neighbours' codes gathered,
         * and (on disk) one code on its way there. */
        const quant *w = s->walk_q;
        size_t need = vm_gather_offset(s) +
                      (g->own_code || g->disk != NULL ? w->ops->store_bytes(w, g->slots + 1) : 0) +
                      (g->disk != NULL ? w->code_bytes : 0);
        st = grow_array(a, (void **)&sc->qmem, &sc->qmem_size, need, 1, false, "query state");
    }
    if (st != ROTOR_OK) {
        scratch_free(g, sc);
        return st;
    }
    *out = sc;
    return ROTOR_OK;
}

void vm_scratch_put(const vamana *g, vm_scratch *sc) {
    pthread_mutex_lock(&g->pool->lock);
    sc->next = g->pool->free;
    g->pool->free = sc;
    pthread_mutex_unlock(&g->pool->lock);
}

const nav_ops vamana_nav_ops = {
    .kind = ROTOR_INDEX_VAMANA,
    .name = "vamana",
    .create = vamana_create,
    .insert = vamana_insert,
    .search = vamana_search,
    .search_batch = NULL,
    .stats = vamana_stats,
    .save = vamana_save,
    .open = vamana_open,
    .check = vamana_check,
    .own = vamana_own,
    .free = vamana_free,
    .derive = vamana_derive,
    .consolidate = vamana_consolidate,
    .consolidated_drops_removed = true,
};
