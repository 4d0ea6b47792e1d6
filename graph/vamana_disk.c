/*
 * A Vamana graph whose records stay on disk, under a RAM budget (DiskANN's
 * terms: Subramanya et al., NeurIPS 2019). Memory holds the walking codes,
 * the sampled starting points and a cache of the records nearest them;
 * every other record is read from the index file's nodes section when the
 * search expands it.
 *
 * A record on disk holds a node's neighbour ids and its full vector, so
 * the read that gives the next hop also gives the node's exact distance:
 * the results are the best exact distances among the expanded nodes, and
 * nothing is read twice (no separate rerank). Records are packed into
 * 4 KiB pages that none straddles, so a record is one page read. With
 * neighbour codes (rotor_params.neighbor_codes; Starling's and
 * SymphonyQG's idea) a record also holds its neighbours' walking codes,
 * so the read that expands a node scores all its neighbours, and RAM
 * needs no walking codes at all: the budget goes to the cache.
 *
 * The search is a beam search on the codes, pipelined: `beam` record
 * reads stay in flight (io_uring), and each time one lands and is
 * expanded, the nearest candidate not expanded yet goes out next, so the
 * walk never waits for a whole beam (DiskANN submits a beam and waits for
 * all of it; the same reads a query, about 5 % more queries a second on
 * SIFT-like 1M). Each neighbour not seen yet is estimated from its code
 * (in memory, or in the record) and offered to the list. Cached records
 * cost no read.
 *
 * Nodes section (storage/FORMAT.md), little-endian:
 *   header page (4 KiB): 0 u32 version (1)   4 u32 degree R   8 u32 dim
 *     12 u32 record bytes  16 u32 records per page  20 u32 page bytes
 *     24 u64 count         32 u64 the build's RAM budget
 *     40 u32 neighbour codes (0/1)  44 u32 their offset in a record
 *     48 u32 their bytes  52 u32 shards the build was split into (0: one
 *     piece); zeros after
 *   then the pages, record u at page u / per_page, slot u % per_page:
 *     [degree u32][R ids u32, unused ones 0]
 *     (with neighbour codes: zeros to 64 bytes, the walking quantizer's
 *      store of R codes, the neighbours' in order, padded to 64 bytes)
 *     [dim float32] (with neighbour codes: zeros to 64 bytes)
 */
#include <inttypes.h>
#include <string.h>
#include <unistd.h>

#include "graph/vamana.h"

enum {
    NODE_PAGE = 4096,
    NODES_HEADER = 4096,
    NODES_VERSION = 1,
    MAX_BEAM = 64,
    CACHE_BATCH = 1024, /* records one read call of the cache's fill asks for */
    WRITE_PAGES = 64,   /* pages a save hands the writer at once */
};

#define NO_SLOT UINT32_MAX

/* Where the parts of a record lie. */
typedef struct node_layout {
    bool codes; /* neighbour codes in the record */
    size_t block_off, block_bytes, vec_off, rec_bytes;
} node_layout;

static node_layout layout_of(size_t R, size_t dim, const quant *walk, bool codes) {
    node_layout l = {.codes = codes && walk != NULL};
    const size_t ids_end = 4 + 4 * R;
    if (!l.codes) {
        l.vec_off = ids_end;
        l.rec_bytes = ids_end + 4 * dim;
        return l;
    }
    l.block_off = cm_round_up(ids_end, CM_ALIGN);
    l.block_bytes = cm_round_up(walk->ops->store_bytes(walk, R), CM_ALIGN);
    l.vec_off = l.block_off + l.block_bytes;
    l.rec_bytes = cm_round_up(l.vec_off + 4 * dim, CM_ALIGN);
    return l;
}

struct vm_disk {
    vstore *store;
    const ixf_file *file; /* for a save: the mapping's graph and nodes sections */
    node_layout lay;
    /* The cache: records of ncache nodes (cache_ids), found through an
     * open-addressing table of slots (hash_mask + 1 entries). */
    uint8_t *cache;
    uint32_t *cache_ids;
    size_t ncache;
    uint32_t *hash;
    size_t hash_mask;
};

/* Records per page and the page's size: as many as fit a 4 KiB page, or
 * one record to pages of its size rounded up to 4 KiB. */
static void page_shape(size_t rec, size_t *per_page, size_t *page_bytes) {
    if (rec <= NODE_PAGE) {
        *per_page = NODE_PAGE / rec;
        *page_bytes = NODE_PAGE;
    } else {
        *per_page = 1;
        *page_bytes = cm_round_up(rec, NODE_PAGE);
    }
}

/* ---- writing ------------------------------------------------------------- */

rotor_status vm_nodes_save(const vamana *g, const graph_space *s, uint64_t budget, ixf_writer *w) {
    const size_t R = g->p.degree, dim = s->dim;
    const quant *walk = s->walk_q;
    const node_layout lay = layout_of(R, dim, walk, g->p.node_codes);
    const size_t rec = lay.rec_bytes;
    size_t per_page, page_bytes;
    page_shape(rec, &per_page, &page_bytes);
    CM_RETURN_IF(s->vectors == NULL, ROTOR_ERR_UNSUPPORTED,
                 "the node pages need the full vectors, and this index has none in memory");
    const size_t pages = (g->count + per_page - 1) / per_page;
    const size_t chunk = WRITE_PAGES * page_bytes;
    uint8_t *buf = cm_alloc(&g->base.alloc, chunk > NODES_HEADER ? chunk : NODES_HEADER,
                            "a buffer of node pages");
    uint8_t *code = lay.codes ? cm_alloc(&g->base.alloc, walk->code_bytes, "a code") : NULL;
    if (buf == NULL || (lay.codes && code == NULL)) {
        cm_free(&g->base.alloc, buf);
        cm_free(&g->base.alloc, code);
        return ROTOR_ERR_OUT_OF_MEMORY;
    }
    memset(buf, 0, NODES_HEADER);
    cm_put_le32(buf, NODES_VERSION);
    cm_put_le32(buf + 4, (uint32_t)R);
    cm_put_le32(buf + 8, (uint32_t)dim);
    cm_put_le32(buf + 12, (uint32_t)rec);
    cm_put_le32(buf + 16, (uint32_t)per_page);
    cm_put_le32(buf + 20, (uint32_t)page_bytes);
    cm_put_le64(buf + 24, g->count);
    cm_put_le64(buf + 32, budget);
    cm_put_le32(buf + 40, lay.codes);
    cm_put_le32(buf + 44, (uint32_t)lay.block_off);
    cm_put_le32(buf + 48, (uint32_t)lay.block_bytes);
    cm_put_le32(buf + 52, (uint32_t)g->shards);
    rotor_status st = ixf_section_begin(w, IXF_SEC_NODES);
    if (st == ROTOR_OK)
        st = ixf_append(w, buf, NODES_HEADER);
    for (size_t p0 = 0; st == ROTOR_OK && p0 < pages; p0 += WRITE_PAGES) {
        const size_t np = pages - p0 < WRITE_PAGES ? pages - p0 : WRITE_PAGES;
        memset(buf, 0, np * page_bytes);
        for (size_t pg = 0; pg < np; pg++) {
            for (size_t j = 0; j < per_page; j++) {
                const size_t u = (p0 + pg) * per_page + j;
                if (u >= g->count)
                    break;
                uint8_t *r = buf + pg * page_bytes + j * rec;
                const uint32_t *src = node_of(g, u);
                const uint32_t deg = src[0] < R ? src[0] : (uint32_t)R;
                memcpy(r, &deg, 4);
                memcpy(r + 4, src + 1, 4 * (size_t)deg);
                /* From the code store, not the RAM record's copies: those
                 * may be waiting for a refresh. */
                for (uint32_t t = 0; lay.codes && t < deg; t++)
                    quant_copy(walk, r + lay.block_off, t, s->walk_codes, src[1 + t], code);
                memcpy(r + lay.vec_off, s->vectors + u * dim, 4 * dim);
            }
        }
        st = ixf_append(w, buf, np * page_bytes);
    }
    cm_free(&g->base.alloc, buf);
    cm_free(&g->base.alloc, code);
    return st == ROTOR_OK ? ixf_section_end(w) : st;
}

rotor_status vm_disk_save(const vamana *g, ixf_writer *w) {
    /* The records are not in memory: the file's own sections are copied
     * (the mapping stays unchanged while the index is open). */
    const ixf_section graph = ixf_get(g->disk->file, IXF_SEC_GRAPH);
    const ixf_section nodes = ixf_get(g->disk->file, IXF_SEC_NODES);
    CM_FORWARD(ixf_put_section(w, IXF_SEC_GRAPH, graph.data, (size_t)graph.size));
    return ixf_put_section(w, IXF_SEC_NODES, nodes.data, (size_t)nodes.size);
}

/* ---- opening ------------------------------------------------------------- */

/* The header of a nodes section, checked against the graph it belongs to.
 * Read from the file, not the mapping: a file read into memory (load)
 * leaves this section on disk. */
static rotor_status read_header(const vamana *g, const graph_space *s, const ixf_file *f,
                                const ixf_section *sec, node_layout *lay, size_t *per_page,
                                size_t *page_bytes, uint64_t *budget, size_t *shards) {
    CM_RETURN_IF(sec->size < NODES_HEADER, ROTOR_ERR_FORMAT,
                 "the nodes section holds %" PRIu64 " bytes, less than its header", sec->size);
    uint8_t h[64];
    CM_FORWARD(ds_pread_full(ixf_fd(f), h, sizeof h, sec->offset, "the nodes section's header"));
    const uint32_t codes = cm_get_le32(h + 40);
    CM_RETURN_IF(codes > 1 || (codes && s->walk_q == NULL), ROTOR_ERR_FORMAT,
                 "the nodes section's header says neighbour codes %u", codes);
    *lay = layout_of(g->p.degree, s->dim, s->walk_q, codes == 1);
    const size_t *rec = &lay->rec_bytes;
    page_shape(*rec, per_page, page_bytes);
    CM_RETURN_IF(cm_get_le32(h) != NODES_VERSION, ROTOR_ERR_UNSUPPORTED,
                 "the nodes section has version %u; this library reads version %d", cm_get_le32(h),
                 NODES_VERSION);
    CM_RETURN_IF(cm_get_le32(h + 4) != g->p.degree || cm_get_le32(h + 8) != s->dim ||
                     cm_get_le32(h + 12) != *rec || cm_get_le32(h + 16) != *per_page ||
                     cm_get_le32(h + 20) != *page_bytes || cm_get_le64(h + 24) != s->count ||
                     cm_get_le32(h + 44) != lay->block_off ||
                     cm_get_le32(h + 48) != lay->block_bytes,
                 ROTOR_ERR_FORMAT,
                 "the nodes section's layout (degree %u, %u dimensions, %" PRIu64
                 " records of %u bytes) is not the graph's (degree %u, %zu, %zu of %zu)",
                 cm_get_le32(h + 4), cm_get_le32(h + 8), cm_get_le64(h + 24), cm_get_le32(h + 12),
                 g->p.degree, s->dim, s->count, *rec);
    const uint64_t pages = (s->count + *per_page - 1) / *per_page;
    CM_RETURN_IF(sec->size != NODES_HEADER + pages * *page_bytes, ROTOR_ERR_FORMAT,
                 "the nodes section holds %" PRIu64 " bytes; %zu records need %" PRIu64, sec->size,
                 s->count, NODES_HEADER + pages * *page_bytes);
    *budget = cm_get_le64(h + 32);
    *shards = cm_get_le32(h + 52);
    return ROTOR_OK;
}

static uint64_t fixed_bytes(const graph_space *s, size_t nstarts, bool codes_on_disk) {
    /* The walking codes (unless the records hold them), the starting
     * points', and a search's visited set. */
    const quant *w = s->walk_q;
    return (codes_on_disk ? 0 : w->ops->store_bytes(w, s->count)) +
           w->ops->store_bytes(w, nstarts) + 4 * nstarts + (s->count + 7) / 8;
}

static uint32_t hash_id(uint32_t id) { return id * 0x9E3779B1u; }

static uint32_t cache_find(const struct vm_disk *d, uint32_t id) {
    if (d->ncache == 0)
        return NO_SLOT;
    for (size_t h = hash_id(id) & d->hash_mask;; h = (h + 1) & d->hash_mask) {
        const uint32_t slot = d->hash[h];
        if (slot == NO_SLOT || d->cache_ids[slot] == id)
            return slot;
    }
}

/* The cache's fill: records read in breadth-first order from the entry
 * and the starting points, where every search begins. */
typedef struct cache_fill {
    struct vm_disk *d;
    size_t first; /* slot of ids[0] */
} cache_fill;

static void keep_record(void *ctx, size_t j, const void *row) {
    cache_fill *cf = ctx;
    memcpy(cf->d->cache + (cf->first + j) * cf->d->lay.rec_bytes, row, cf->d->lay.rec_bytes);
}

static rotor_status fill_cache(vamana *g, const graph_space *s, struct vm_disk *d, size_t want) {
    const rotor_allocator *a = &g->base.alloc;
    const size_t count = s->count;
    size_t cap = 1;
    while (cap < 2 * want)
        cap *= 2;
    d->cache = cm_alloc(a, want * d->lay.rec_bytes, "the node cache");
    d->cache_ids = cm_alloc(a, want * sizeof *d->cache_ids, "the node cache");
    d->hash = cm_alloc(a, cap * sizeof *d->hash, "the node cache");
    uint64_t *seen = cm_calloc(a, (count + 63) / 64 * sizeof *seen, "the node cache's fill");
    rotor_status st = ROTOR_OK;
    if (d->cache == NULL || d->cache_ids == NULL || d->hash == NULL || seen == NULL)
        st = ROTOR_ERR_OUT_OF_MEMORY;
    vstore_reader *rd = NULL;
    if (st == ROTOR_OK)
        st = vstore_reader_get(d->store, &rd);
    size_t n = 0;
    if (st == ROTOR_OK) {
        memset(d->hash, 0xff, cap * sizeof *d->hash);
        d->hash_mask = cap - 1;
        /* Level 0: the entry and the starting points. */
        d->cache_ids[n++] = g->entry;
        cm_bit_set(seen, g->entry);
        for (size_t i = 0; i < g->nstarts && n < want; i++)
            if (!cm_bit_get(seen, g->starts[i])) {
                cm_bit_set(seen, g->starts[i]);
                d->cache_ids[n++] = g->starts[i];
            }
    }
    /* Read [done, n) a batch at a time; their neighbours join the queue. */
    for (size_t done = 0; st == ROTOR_OK && done < n;) {
        const size_t batch = n - done < CACHE_BATCH ? n - done : CACHE_BATCH;
        cache_fill cf = {d, done};
        st = vstore_read(rd, d->cache_ids + done, batch, keep_record, &cf);
        for (size_t i = done; st == ROTOR_OK && i < done + batch; i++) {
            const uint8_t *rec = d->cache + i * d->lay.rec_bytes;
            const uint32_t deg = cm_get_le32(rec);
            if (deg > g->p.degree) {
                st = cm_fail(ROTOR_ERR_CORRUPT, "the nodes section: record %u has degree %u",
                             d->cache_ids[i], deg);
                break;
            }
            for (uint32_t j = 0; j < deg && n < want; j++) {
                const uint32_t v = cm_get_le32(rec + 4 + 4 * (size_t)j);
                if (v >= count) {
                    st = cm_fail(ROTOR_ERR_CORRUPT,
                                 "the nodes section: record %u links to %u, past its %zu nodes",
                                 d->cache_ids[i], v, count);
                    break;
                }
                if (!cm_bit_get(seen, v)) {
                    cm_bit_set(seen, v);
                    d->cache_ids[n++] = v;
                }
            }
        }
        done += batch;
    }
    if (rd != NULL) {
        uint64_t reads, ns;
        vstore_reader_take_stats(rd, &reads, &ns); /* not a search's */
        vstore_reader_put(d->store, rd);
    }
    cm_free(a, seen);
    if (st != ROTOR_OK)
        return st;
    d->ncache = n;
    for (size_t i = 0; i < n; i++) {
        size_t h = hash_id(d->cache_ids[i]) & d->hash_mask;
        while (d->hash[h] != NO_SLOT)
            h = (h + 1) & d->hash_mask;
        d->hash[h] = (uint32_t)i;
    }
    return ROTOR_OK;
}

void vm_disk_free(vamana *g) {
    struct vm_disk *d = g->disk;
    if (d == NULL)
        return;
    const rotor_allocator *a = &g->base.alloc;
    vstore_close(d->store);
    cm_free(a, d->cache);
    cm_free(a, d->cache_ids);
    cm_free(a, d->hash);
    cm_free(a, d);
    g->disk = NULL;
}

rotor_status vm_disk_open(vamana *g, const nav_params *p, const graph_space *s, const ixf_file *f) {
    const ixf_section sec = ixf_get(f, IXF_SEC_NODES);
    node_layout lay = {0};
    size_t per_page = 0, page_bytes = 0;
    uint64_t saved = 0;
    if (sec.data != NULL)
        CM_FORWARD(read_header(g, s, f, &sec, &lay, &per_page, &page_bytes, &saved, &g->shards));
    const size_t rec = lay.rec_bytes;
    /* A save of this index writes its pages again, alike. */
    g->p.ram_budget = saved;
    g->p.node_codes = lay.codes;
    const uint64_t budget = p->ram_budget ? p->ram_budget : saved;
    if (budget == 0)
        return ROTOR_OK;
    /* A budget that holds the records as a search in memory reads them
     * (and the codes that the walk reads beside them) keeps them there. */
    const quant *w = s->walk_q;
    const uint64_t in_ram =
        (uint64_t)g->count * g->node_bytes + (w != NULL ? w->ops->store_bytes(w, s->count) : 0);
    if (budget >= in_ram)
        return ROTOR_OK;
    CM_RETURN_IF(sec.data == NULL, ROTOR_ERR_UNSUPPORTED,
                 "a RAM budget of %" PRIu64 " bytes cannot hold this graph (%" PRIu64
                 " bytes), and the file has no node pages to read it from: build it with a RAM "
                 "budget",
                 budget, in_ram);
    CM_RETURN_IF(w == NULL, ROTOR_ERR_UNSUPPORTED,
                 "a graph on disk is walked on codes, and this index has none");
    const uint64_t fixed = fixed_bytes(s, g->nstarts, lay.codes);
    CM_RETURN_IF(budget < fixed, ROTOR_ERR_INVALID_ARGUMENT,
                 "a RAM budget of %" PRIu64 " bytes (%.1f a vector) is below the %" PRIu64
                 " (%.1f a vector) that %sthe starting points and a visited bit per vector "
                 "need in memory",
                 budget, (double)budget / (double)s->count, fixed, (double)fixed / (double)s->count,
                 lay.codes ? "" : "the walking codes, ");
    const rotor_allocator *a = &g->base.alloc;
    struct vm_disk *d = cm_calloc(a, sizeof *d, "the graph on disk");
    if (d == NULL)
        return ROTOR_ERR_OUT_OF_MEMORY;
    g->disk = d;
    d->file = f;
    d->lay = lay;
    vstore_params vp = {
        .path = ixf_path(f),
        .offset = sec.offset + NODES_HEADER,
        .row_bytes = rec,
        .rows = s->count,
        .backend = (vstore_backend)p->io_backend,
        .direct = p->direct_io,
        .depth = MAX_BEAM,
        .use_fd = true,
        .fd = ixf_fd(f),
        .rows_per_page = per_page,
        .page_bytes = page_bytes,
    };
    rotor_status st = vstore_open(a, &vp, &d->store);
    /* The cache takes what the budget leaves: a record and its slot. */
    const size_t per_cached = rec + 3 * sizeof(uint32_t);
    size_t want = (size_t)((budget - fixed) / per_cached);
    if (want > s->count)
        want = s->count;
    if (st == ROTOR_OK && want > 0)
        st = fill_cache(g, s, d, want);
    if (st != ROTOR_OK) {
        vm_disk_free(g);
        return st;
    }
    /* Nothing reads the records in memory from now on. */
    g->nodes = NULL;
    return ROTOR_OK;
}

void vm_disk_stats(const vamana *g, const graph_space *s, nav_stats *out) {
    const struct vm_disk *d = g->disk;
    (void)s;
    out->bytes_ids = d->ncache * (d->lay.rec_bytes + 3 * sizeof(uint32_t));
    out->bytes_codes = 0;
    out->disk_codes = d->lay.codes;
    out->disk_nodes = g->count - d->ncache;
    out->cached_nodes = d->ncache;
}

/* ---- searching ----------------------------------------------------------- */

typedef struct dk_walk {
    const vamana *g;
    const struct vm_disk *d;
    const graph_space *s;
    const float *query;
    const quant *walk;
    const void *qs;
    const simd_ops *ops;
    vm_scratch *sc;
    vm_sink k;
    cm_topk *top;
    const nav_filter *filter;
    uint32_t skip;   /* a point searched as absent, or NO_NODE */
    uint8_t *gather; /* the neighbours' codes, gathered into one store */
    uint8_t *code;   /* one code */
    uint32_t bad;    /* a node whose record is impossible, or NO_NODE */
    uint32_t limit;  /* the first this many neighbours of a record read */
    nav_work work;
    /* The reads in flight: the stream's position of each and its node. */
    size_t issued;
    unsigned nflight;
    size_t flight_j[MAX_BEAM];
    uint32_t flight_id[MAX_BEAM];
} dk_walk;

enum { NO_NODE = UINT32_MAX };

/* Node u's record: its exact distance enters the results, its unseen
 * neighbours the list. */
static void expand_record(dk_walk *w, uint32_t u, const uint8_t *rec) {
    const node_layout *lay = &w->d->lay;
    const uint32_t all = cm_get_le32(rec), count = (uint32_t)w->s->count;
    if (CM_UNLIKELY(all > w->g->p.degree)) {
        w->bad = u;
        return;
    }
    const uint32_t deg = all < w->limit ? all : w->limit;
    const float *x = (const float *)(rec + lay->vec_off);
    if (u != w->skip && (w->filter == NULL || nav_filter_allows(w->filter, u)))
        cm_topk_push(w->top, graph_distance(w->ops, w->s->metric, w->query, x, w->s->dim), u);
    const quant *q = w->walk;
    if (lay->codes) {
        /* Every neighbour scored from the record; the visited set is asked
         * only for those good enough to enter. */
        float *est = w->sc->est;
        q->ops->scan(q, w->qs, rec + lay->block_off, 0, deg, est);
        w->work.scored += deg;
        float gate = entry_gate(&w->k);
        for (uint32_t j = 0; j < deg; j++) {
            const uint32_t v = cm_get_le32(rec + 4 + 4 * (size_t)j);
            if (CM_UNLIKELY(v >= count)) {
                w->bad = u;
                return;
            }
            if (est[j] >= gate || !visit(w->sc, v))
                continue;
            sink_offer(&w->k, est[j], v);
            gate = entry_gate(&w->k);
        }
        return;
    }
    uint32_t *ids = w->sc->nbrs;
    for (uint32_t j = 0; j < deg; j++) {
        ids[j] = cm_get_le32(rec + 4 + 4 * (size_t)j);
        if (CM_UNLIKELY(ids[j] >= count)) {
            w->bad = u;
            return;
        }
    }
    const uint32_t m = (uint32_t)visit_all(w->sc, ids, deg, ids);
    for (uint32_t j = 0; j < m; j++) {
        q->ops->load(q, w->s->walk_codes, ids[j], w->code);
        q->ops->store(q, w->gather, j, w->code);
    }
    if (m > 0)
        q->ops->scan(q, w->qs, w->gather, 0, m, w->sc->est);
    w->work.scored += m;
    w->work.gathered += m;
    for (uint32_t j = 0; j < m; j++)
        sink_offer(&w->k, w->sc->est[j], ids[j]);
}

/* The next record to read: the nearest candidate not expanded yet (cached
 * ones are expanded here, at no read), "later" while reads in flight may
 * still bring better ones. */
static vstore_next next_record(void *ctx, uint32_t *id) {
    dk_walk *w = ctx;
    vm_list *l = &w->k.l;
    while (w->bad == NO_NODE) {
        const size_t i = list_next(l);
        if (i == l->size)
            return w->nflight > 0 ? VSTORE_NEXT_LATER : VSTORE_NEXT_END;
        l->expanded[i] = 1;
        w->work.hops++;
        const uint32_t u = l->c[i].id;
        const uint32_t slot = cache_find(w->d, u);
        if (slot != NO_SLOT) {
            expand_record(w, u, w->d->cache + (size_t)slot * w->d->lay.rec_bytes);
            continue;
        }
        w->flight_j[w->nflight] = w->issued++;
        w->flight_id[w->nflight++] = u;
        *id = u;
        return VSTORE_NEXT_ROW;
    }
    return VSTORE_NEXT_END;
}

/* A record arrived: j is its place in the stream. */
static void on_record(void *ctx, size_t j, const void *row) {
    dk_walk *w = ctx;
    unsigned t = 0;
    while (w->flight_j[t] != j)
        t++;
    const uint32_t u = w->flight_id[t];
    w->nflight--;
    w->flight_j[t] = w->flight_j[w->nflight];
    w->flight_id[t] = w->flight_id[w->nflight];
    expand_record(w, u, row);
}

rotor_status vm_disk_search(const vamana *g, const graph_space *s, const float *query, size_t k,
                            const nav_search_params *p, int64_t *ids, float *dists) {
    const struct vm_disk *d = g->disk;
    const size_t list = p->list ? p->list : NAV_DEFAULT_LIST;
    size_t beam = p->beam ? p->beam : VM_DEFAULT_BEAM;
    beam = beam < MAX_BEAM ? beam : MAX_BEAM;
    const size_t want_starts = p->starts ? p->starts : 256;
    const size_t nstarts = want_starts < g->nstarts ? want_starts : g->nstarts;
    const quant *walk = s->walk_q;
    vm_scratch *sc;
    CM_FORWARD(vm_scratch_get(g, s, s->count, list, 0, 0, &sc));
    vstore_reader *rd;
    rotor_status st = vstore_reader_get(d->store, &rd);
    if (st != ROTOR_OK) {
        vm_scratch_put(g, sc);
        return st;
    }
    uint8_t *qmem = sc->qmem;
    float *scratch = (float *)(qmem + cm_round_up(walk->query_bytes, CM_ALIGN));
    walk->ops->prepare(walk, query, qmem, scratch);
    cm_topk top;
    cm_topk_init(&top, dists, ids, k);
    dk_walk w = {
        .g = g,
        .d = d,
        .s = s,
        .query = query,
        .walk = walk,
        .qs = qmem,
        .ops = simd_ops_get(),
        .sc = sc,
        .k = {.l = {sc->list, sc->expanded, 0, list, 0}},
        .top = &top,
        .filter = p->filter,
        .skip = p->skip != NULL ? *p->skip : NO_NODE,
        .gather = qmem + vm_gather_offset(s),
        .code = qmem + vm_gather_offset(s) + walk->ops->store_bytes(walk, g->slots + 1),
        .bad = NO_NODE,
        .limit =
            p->neighbors != 0 && p->neighbors < g->p.degree ? (uint32_t)p->neighbors : g->p.degree,
    };
    visited_reset(sc);
    if (w.skip < s->count)
        visit(sc, w.skip);
    float d0;
    walk->ops->scan(walk, w.qs, s->walk_codes, g->entry, 1, &d0);
    visit(sc, g->entry);
    sink_offer(&w.k, d0, g->entry);
    w.work.scored += 1;
    if (nstarts > 0)
        w.work.scored += vm_enter_starts(g, w.qs, nstarts, sc, &w.k);

    st = vstore_read_stream(rd, 0, (unsigned)beam, next_record, on_record, &w);
    uint64_t reads, wait_ns;
    vstore_reader_take_stats(rd, &reads, &wait_ns);
    vstore_reader_put(d->store, rd);
    vm_scratch_put(g, sc);
    if (s->reads != NULL)
        *s->reads += (uint32_t)reads;
    if (s->io_seconds != NULL)
        *s->io_seconds += (double)wait_ns * 1e-9;
    if (p->work != NULL) {
        p->work->hops += w.work.hops;
        p->work->scored += w.work.scored;
        p->work->gathered += w.work.gathered;
        p->work->reranked += w.work.hops;
    }
    CM_FORWARD(st);
    if (CM_UNLIKELY(w.bad != NO_NODE))
        return cm_fail(ROTOR_ERR_CORRUPT, "the nodes section: record %u is impossible", w.bad);
    cm_topk_finish(&top);
    return ROTOR_OK;
}
