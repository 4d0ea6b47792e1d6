/*
 * The graph's sections of the index file (storage/FORMAT.md): a header
 * (layout, entry point, starting points and their groups) and the node
 * records exactly as they are in memory, which an opened graph borrows from
 * the mapping.
 */
#include <inttypes.h>
#include <string.h>
#include <sys/mman.h>

#include "graph/vamana.h"

/*
 * Header section (little-endian, FORMAT.md):
 *   0 u32 degree R     4 u32 id slots      8 u64 node bytes
 *  16 u64 block offset 24 u64 block bytes 32 u32 entry
 *  36 u32 starting points S               40 u32 neighbour codes (0/1)
 *  44 u32 groups G     48 S u32 starting points, zero-padded to 64 bytes,
 *  then the starting points' code store (store_bytes(S) of the walking code),
 *  then (G > 0) G + 1 u32 group offsets
 */
enum { META_FIXED = 48 };

static size_t meta_starts_end(size_t nstarts) {
    return cm_round_up(META_FIXED + 4 * nstarts, CM_ALIGN);
}

/* Where the group offsets start: after the starting points' codes. */
static size_t meta_groups_at(const quant *walk, size_t nstarts) {
    return meta_starts_end(nstarts) + (walk != NULL ? walk->ops->store_bytes(walk, nstarts) : 0);
}

static size_t meta_bytes(const vamana *g) {
    return meta_groups_at(g->walk_q, g->nstarts) + (g->ngroups > 0 ? 4 * (g->ngroups + 1) : 0);
}

/* What follows the ids in a record: 0 nothing, 1 neighbours' codes, 2 the
 * node's own code (fast-scan stores), 3 nothing, the walk reading each
 * node's own code from the code store (codes end to end; earlier versions
 * wrote 2 for these too). */
enum { LAYOUT_OWN_CODE_IN_RECORD = 2 };
static uint32_t layout_mode(const vamana *g) {
    return g->neighbor_codes ? 1u : g->code_in_record ? 2u : g->own_code ? 3u : 0u;
}

static void le32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void le64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }
static uint32_t rd32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}
static uint64_t rd64(const uint8_t *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static void meta_write(const vamana *g, uint8_t *dst) {
    memset(dst, 0, meta_bytes(g));
    le32(dst, g->p.degree);
    le32(dst + 4, g->slots);
    le64(dst + 8, g->node_bytes);
    le64(dst + 16, g->block_off);
    le64(dst + 24, g->block_bytes);
    le32(dst + 32, g->entry);
    le32(dst + 36, (uint32_t)g->nstarts);
    le32(dst + 40, layout_mode(g));
    le32(dst + 44, (uint32_t)g->ngroups);
    if (g->nstarts > 0)
        memcpy(dst + META_FIXED, g->starts, 4 * g->nstarts);
    if (g->walk_q != NULL && g->nstarts > 0)
        memcpy(dst + meta_starts_end(g->nstarts), g->start_codes,
               g->walk_q->ops->store_bytes(g->walk_q, g->nstarts));
    if (g->ngroups > 0)
        memcpy(dst + meta_groups_at(g->walk_q, g->nstarts), g->group_off, 4 * (g->ngroups + 1));
}

rotor_status vamana_save(const nav *n, const graph_space *s, ixf_writer *w) {
    const vamana *g = vamana_of(n);
    const size_t mb = meta_bytes(g);
    uint8_t *buf = cm_alloc(&g->base.alloc, mb, "a graph header");
    if (buf == NULL)
        return ROTOR_ERR_OUT_OF_MEMORY;
    meta_write(g, buf);
    rotor_status st = ixf_put_section(w, IXF_SEC_GRAPH_META, buf, mb);
    cm_free(&g->base.alloc, buf);
    if (st == ROTOR_OK && g->disk != NULL)
        return vm_disk_save(g, w);
    /* Records in a mapped file (a build in shards) are read in order now. */
    if (g->mapped_bytes > 0)
        (void)madvise(g->nodes, g->mapped_bytes, MADV_SEQUENTIAL);
    if (st == ROTOR_OK)
        st = ixf_put_section(w, IXF_SEC_GRAPH, g->nodes, g->count * g->node_bytes);
    if (st == ROTOR_OK && g->p.ram_budget > 0)
        st = vm_nodes_save(g, s, g->p.ram_budget, w);
    return st;
}

/* The records are borrowed from the mapping and not read here: a search
 * bounds every degree and id it follows, so damaged records cost recall,
 * never memory safety; the first insert (or own) checks them all. */
static rotor_status open_sections(const rotor_allocator *a, const nav_params *p,
                                  const graph_space *s, const uint8_t *meta, size_t meta_len,
                                  const uint8_t *nodes, size_t nodes_bytes, nav **out) {
    const size_t count = s->count;
    CM_RETURN_IF(count == 0 || count > UINT32_MAX, ROTOR_ERR_FORMAT,
                 "a graph of %zu nodes cannot be opened", count);
    nav *n;
    CM_FORWARD(vamana_create(a, p, s, &n));
    vamana *g = (vamana *)n;
    /* The layout is a function of (R, quantizer, neighbour codes): the
     * header must say exactly what vamana_create derived. */
    rotor_status st = ROTOR_OK;
    if (meta_len < META_FIXED)
        st = cm_fail(ROTOR_ERR_FORMAT, "the graph header holds %zu bytes, fewer than %d", meta_len,
                     META_FIXED);
    else if (rd32(meta + 40) == LAYOUT_OWN_CODE_IN_RECORD && layout_mode(g) == 3)
        st = cm_fail(ROTOR_ERR_FORMAT, "the graph keeps a copy of each node's code in its record, "
                                       "a layout of earlier versions: build the index again");
    else if (rd32(meta) != g->p.degree || rd32(meta + 4) != g->slots ||
             rd64(meta + 8) != g->node_bytes || rd64(meta + 16) != g->block_off ||
             rd64(meta + 24) != g->block_bytes || rd32(meta + 40) != layout_mode(g))
        st = cm_fail(ROTOR_ERR_FORMAT,
                     "the graph header's node layout (degree %u, %" PRIu64
                     "-byte records) is not the one its parameters give (degree %u, %zu bytes)",
                     rd32(meta), rd64(meta + 8), g->p.degree, g->node_bytes);
    size_t nstarts = st == ROTOR_OK ? rd32(meta + 36) : 0;
    size_t ngroups = st == ROTOR_OK ? rd32(meta + 44) : 0;
    if (st == ROTOR_OK &&
        (nstarts > MAX_STARTS || nstarts > count || (g->walk_q == NULL && nstarts != 0)))
        st = cm_fail(ROTOR_ERR_FORMAT, "the graph header lists %zu starting points", nstarts);
    if (st == ROTOR_OK && ngroups > nstarts)
        st = cm_fail(ROTOR_ERR_FORMAT, "the graph header lists %zu groups of %zu starting points",
                     ngroups, nstarts);
    if (st == ROTOR_OK && rd32(meta + 32) >= count)
        st = cm_fail(ROTOR_ERR_FORMAT, "the graph's entry point %u is not one of its %zu nodes",
                     rd32(meta + 32), count);
    size_t want_meta = 0;
    if (st == ROTOR_OK) {
        want_meta = meta_groups_at(g->walk_q, nstarts) + (ngroups > 0 ? 4 * (ngroups + 1) : 0);
        size_t want_nodes;
        if (meta_len != want_meta)
            st = cm_fail(ROTOR_ERR_FORMAT, "the graph header holds %zu bytes, not %zu", meta_len,
                         want_meta);
        else if (cm_mul_overflow(count, g->node_bytes, &want_nodes) || nodes_bytes != want_nodes)
            st = cm_fail(ROTOR_ERR_FORMAT,
                         "the graph section holds %zu bytes; %zu nodes of %zu bytes need %zu",
                         nodes_bytes, count, g->node_bytes, count * g->node_bytes);
    }
    if (st == ROTOR_OK && nstarts > 0) {
        g->starts = cm_alloc(a, nstarts * sizeof *g->starts, "graph starting points");
        size_t sb = g->walk_q->ops->store_bytes(g->walk_q, nstarts);
        g->start_codes = cm_alloc(a, sb, "graph starting points");
        if (g->starts == NULL || g->start_codes == NULL)
            st = ROTOR_ERR_OUT_OF_MEMORY;
        else {
            memcpy(g->starts, meta + META_FIXED, 4 * nstarts);
            memcpy(g->start_codes, meta + meta_starts_end(nstarts), sb);
            for (size_t i = 0; i < nstarts && st == ROTOR_OK; i++)
                if (g->starts[i] >= count)
                    st = cm_fail(ROTOR_ERR_FORMAT,
                                 "the graph's starting point %u is not one of its %zu nodes",
                                 g->starts[i], count);
        }
    }
    if (st == ROTOR_OK && ngroups > 0) {
        g->group_off = cm_alloc(a, 4 * (ngroups + 1), "group offsets");
        if (g->group_off == NULL) {
            st = ROTOR_ERR_OUT_OF_MEMORY;
        } else {
            memcpy(g->group_off, meta + meta_groups_at(g->walk_q, nstarts), 4 * (ngroups + 1));
            /* Every group holds at least its leader, and together all. */
            bool ok = g->group_off[0] == 0 && g->group_off[ngroups] == nstarts;
            for (size_t c = 0; ok && c < ngroups; c++)
                ok = g->group_off[c] < g->group_off[c + 1];
            if (!ok)
                st = cm_fail(ROTOR_ERR_FORMAT,
                             "the graph's %zu groups do not split its %zu starting points", ngroups,
                             nstarts);
        }
    }
    g->nstarts = nstarts;
    if (st == ROTOR_OK && ngroups > 0) {
        g->ngroups = ngroups;
        st = vm_fill_leader_codes(g);
    }
    if (st != ROTOR_OK) {
        vamana_free(n);
        return st;
    }
    g->entry = rd32(meta + 32);
    g->nodes = (uint8_t *)nodes;
    g->borrowed = true;
    g->count = g->capacity = count;
    *out = n;
    return ROTOR_OK;
}

rotor_status vamana_open(const rotor_allocator *a, const nav_params *p, const graph_space *s,
                         const ixf_file *f, nav **out) {
    *out = NULL;
    ixf_section meta = ixf_get(f, IXF_SEC_GRAPH_META), nodes = ixf_get(f, IXF_SEC_GRAPH);
    CM_RETURN_IF(meta.data == NULL || nodes.data == NULL, ROTOR_ERR_FORMAT,
                 "'%s' holds a vamana index without its graph sections", ixf_path(f));
    CM_FORWARD(ixf_check(f, IXF_SEC_GRAPH_META));
    rotor_status st =
        open_sections(a, p, s, meta.data, (size_t)meta.size, nodes.data, (size_t)nodes.size, out);
    if (st == ROTOR_OK)
        st = vm_disk_open((vamana *)*out, p, s, f);
    if (st != ROTOR_OK) {
        vamana_free(*out);
        *out = NULL;
        return cm_fail_prefix(st, ixf_path(f));
    }
    if (vamana_of(*out)->disk == NULL)
        ixf_advise(f, IXF_SEC_GRAPH, false);
    /* The walk reads its codes by id; the refine reads the index's codes. */
    if (s->walk_q != NULL && s->walk_q != s->q) {
        ixf_advise(f, IXF_SEC_WALK_CODES, false);
        ixf_advise(f, IXF_SEC_CODES, false);
    }
    return ROTOR_OK;
}

rotor_status vamana_check(const nav *n) {
    const vamana *g = vamana_of(n);
    /* Records on disk are checked where they are read: the cache's as it
     * fills, the others by the search that expands them. */
    if (g->disk != NULL)
        return ROTOR_OK;
    for (size_t u = 0; u < g->count; u++) {
        rotor_status st = vm_check_record(g, u, node_of(g, u));
        if (st != ROTOR_OK)
            return cm_fail_prefix(st, "the graph section");
    }
    return ROTOR_OK;
}

rotor_status vamana_own(nav *n) {
    vamana *g = (vamana *)n;
    CM_RETURN_IF(g->disk != NULL, ROTOR_ERR_UNSUPPORTED,
                 "the graph stays on disk under this RAM budget, so it cannot be loaded or "
                 "changed: open the index with a budget that holds the graph");
    return g->borrowed ? vm_move_records(g, g->count > 0 ? g->count : 1) : ROTOR_OK;
}
