/*
 * A Vamana build within a memory cap (nav_params.build_memory), for sets
 * whose build in one piece would not fit: DiskANN's merged build
 * (Subramanya et al., NeurIPS 2019, section 4.2). k-means on a sample
 * places shard centres; every point joins the shards of its two nearest
 * centres that have room, so neighbouring shards overlap and the merged
 * graph crosses between them. One shard at a time is built alone, as a
 * graph in memory over a copy of its vectors, with degree 2R/3 (DiskANN's
 * choice: a node's two lists together then hold about 4R/3 ids, few to
 * drop); its lists are then merged into the graph's records, each list in
 * order of distance and the two taken in turn, until R are kept. The
 * records are a mapping of an unnamed file beside the output when the
 * build comes from a file (graph_space.spill_beside): the kernel writes
 * back the ones the merge is done with instead of holding them all; the
 * shards' vectors are copied there too, each shard's together.
 *
 * Memory, in bytes, for n points of d dimensions (c: bytes of the index's
 * and walking codes a point, 4 more with residuals; b: d from 32
 * dimensions up, the build's 8-bit copy, else 0; N: the graph's record
 * bytes, 4 (R + slack + 1) rounded up to 16, plus a code):
 *
 *   in one piece:  n (4d + b + N + 15 + c)
 *   in shards:     n (10 + c) [+ n N without a file] + m (4d + b + N' + 19)
 *
 * where m is the largest shard and N' the records of degree 2R/3. The
 * sum is kept under fifteen sixteenths of the cap (the rest is for what
 * it leaves out: the allocator's slack, scratch), which sets m; the cap
 * must hold the fixed part and a shard of at least MIN_SHARD points. The
 * shards are as many as it takes for the points nearest each centre to
 * fill at most half a shard, with an eighth to spare, as a sample shows.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "graph/vamana.h"
#include "quant/kmeans.h"

enum {
    MIN_SHARD = 2048,   /* fewer points a shard and the overlap is most of it */
    SAMPLE_PER = 64,    /* sample points a shard centre is trained on */
    SAMPLE_MIN = 20000, /* at least */
    KM_ITERS = 12,
};

#define NO_SHARD UINT32_MAX

/* Bytes of the index's and the walking codes (and residuals) of n points. */
static uint64_t code_bytes(const graph_space *s, size_t n) {
    uint64_t b = 0;
    if (s->q != NULL)
        b += s->q->ops->store_bytes(s->q, n);
    if (s->walk_q != NULL && s->walk_q != s->q)
        b += s->walk_q->ops->store_bytes(s->walk_q, n);
    if (s->resid != NULL)
        b += 4 * (uint64_t)n;
    return b;
}

/* A point's bytes in a build in one piece over records of node_bytes:
 * its vector (read at random), the 8-bit copy, its record, its lock, flag,
 * place in the order and reachability mark, and while the order is sorted
 * by cluster its cluster and its place in the sorted copy. */
static uint64_t point_bytes(size_t dim, size_t node_bytes) {
    /* The build's 8-bit copy: a code (dim + 12 bytes) and a norm, in whole
     * cache lines. */
    const uint64_t copy = dim >= VM_BUILD_CODES_MIN_DIM ? cm_round_up(dim + 16, 64) : 0;
    return 4 * (uint64_t)dim + copy + node_bytes + 15;
}

uint64_t vm_build_bytes(const vamana *g, const graph_space *s) {
    return (uint64_t)s->count * point_bytes(s->dim, g->node_bytes) + code_bytes(s, s->count);
}

/* The shards' plan. */
typedef struct shard_plan {
    size_t nshards;
    size_t most;    /* points a shard may take */
    uint64_t fixed; /* bytes held all along */
    uint64_t per;   /* bytes a shard point costs */
} shard_plan;

/* The shards' degree: DiskANN's 2R/3. */
static uint32_t shard_degree(uint32_t R) { return R * 2 / 3 > 2 ? R * 2 / 3 : 2; }

/* Bytes a point costs throughout (two shard ids, a lock and a flag, the
 * codes, the records unless a file holds them), and a shard point (its
 * build's, and its id in the member list). */
static uint64_t fixed_bytes(size_t n, uint64_t codes, size_t node_bytes, bool records_in_file) {
    return (uint64_t)n * 10 + codes + (records_in_file ? 0 : (uint64_t)n * node_bytes);
}
static uint64_t shard_point_bytes(size_t dim, uint32_t R) {
    return point_bytes(dim, vm_node_bytes(shard_degree(R), 0, false)) + 4;
}

static rotor_status check_cap(uint64_t cap, size_t n, size_t dim, uint64_t fixed, uint64_t per) {
    const uint64_t least = fixed + (uint64_t)MIN_SHARD * per;
    CM_RETURN_IF(cap < least, ROTOR_ERR_INVALID_ARGUMENT,
                 "a build memory of %llu bytes is too small for %zu points of %zu dimensions: a "
                 "build in shards needs at least %llu (%llu held throughout, %llu a shard point)",
                 (unsigned long long)cap, n, dim, (unsigned long long)least,
                 (unsigned long long)fixed, (unsigned long long)per);
    return ROTOR_OK;
}

rotor_status vamana_check_build_memory(const nav_params *p, size_t n, size_t dim,
                                       bool records_in_file) {
    if (p->build_memory == 0)
        return ROTOR_OK;
    return check_cap(p->build_memory, n, dim,
                     fixed_bytes(n, 0, vm_node_bytes(p->degree, 0, false), records_in_file),
                     shard_point_bytes(dim, p->degree));
}

static rotor_status plan_shards(const vamana *g, const graph_space *s, size_t live,
                                shard_plan *out) {
    const uint64_t cap = g->p.build_memory;
    shard_plan p = {0};
    p.fixed =
        fixed_bytes(s->count, code_bytes(s, s->count), g->node_bytes, s->spill_beside != NULL);
    p.per = shard_point_bytes(s->dim, g->p.degree);
    CM_FORWARD(check_cap(cap, s->count, s->dim, p.fixed, p.per));
    const uint64_t least = p.fixed + (uint64_t)MIN_SHARD * p.per;
    /* A sixteenth of the cap for what the formula leaves out: the
     * allocator's slack, scratch, the quantizers. */
    const uint64_t usable_cap = cap - cap / 16;
    uint64_t most = usable_cap > least ? (usable_cap - p.fixed) / p.per : MIN_SHARD;
    p.most = most < s->count ? (size_t)most : s->count;
    /* Each point in two shards, an eighth of room to spare: a first
     * count, raised by place_centres while the shards come out uneven. */
    const uint64_t usable = (uint64_t)p.most - p.most / 8;
    p.nshards = (size_t)((2 * (uint64_t)live + usable - 1) / usable);
    if (p.nshards < 2)
        p.nshards = 2;
    *out = p;
    return ROTOR_OK;
}

/* Shard centres (plan->nshards of them, in *out): k-means on an even
 * sample of the live points, with more centres while the sample says the
 * points nearest some centre would fill more than half a shard (with an
 * eighth to spare): half is for the points whose second shard it is.
 * Clusters are uneven, so the average count rarely fits (DiskANN raises
 * its count the same way). */
static rotor_status place_centres(const vamana *g, const graph_space *s, shard_plan *plan,
                                  size_t live, float **out) {
    const rotor_allocator *a = &g->base.alloc;
    const size_t d = s->dim;
    size_t ns = 2 * plan->nshards * SAMPLE_PER;
    if (ns < SAMPLE_MIN)
        ns = SAMPLE_MIN;
    if (ns > plan->most) /* the sample takes no more than a shard */
        ns = plan->most;
    if (ns > live)
        ns = live;
    float *sample = cm_alloc_large(a, ns * d * sizeof(float), "the shards' sample");
    size_t *count = cm_alloc(a, ns * sizeof *count, "the shards' sample");
    float *centres = NULL;
    rotor_status st = sample && count ? ROTOR_OK : ROTOR_ERR_OUT_OF_MEMORY;
    /* Every (live / ns)-th live point, in order: the rows are read forward. */
    size_t taken = 0, seen = 0;
    for (size_t u = 0; st == ROTOR_OK && u < s->count && taken < ns; u++) {
        if (graph_removed(s, u))
            continue;
        if ((seen++ * ns) / live == taken)
            memcpy(sample + taken++ * d, s->vectors + u * d, d * sizeof(float));
    }
    const uint64_t room = (uint64_t)plan->most - plan->most / 8;
    for (unsigned tries = 0; st == ROTOR_OK; tries++) {
        const size_t k = plan->nshards;
        cm_free(a, centres);
        centres = cm_alloc(a, k * d * sizeof(float), "shard centres");
        if (centres == NULL) {
            st = ROTOR_ERR_OUT_OF_MEMORY;
            break;
        }
        km_params kp = {k, KM_ITERS, g->p.threads, g->p.seed};
        st = km_train(a, sample, taken, d, d, &kp, centres, NULL, NULL);
        if (st != ROTOR_OK)
            break;
        memset(count, 0, k * sizeof *count);
        for (size_t i = 0; i < taken; i++)
            count[km_nearest(sample + i * d, centres, k, d, NULL)]++;
        size_t biggest = 0;
        for (size_t c = 0; c < k; c++)
            biggest = count[c] > biggest ? count[c] : biggest;
        const uint64_t expect = 2 * (uint64_t)biggest * live / taken;
        /* Past a centre for 32 sample points the estimates mean little:
         * the assignment's capacity check takes over. */
        if (expect <= room || tries == 15 || 2 * k > taken / 32)
            break;
        const size_t more = (size_t)((k * expect + room - 1) / room);
        plan->nshards = more > k ? more : k + 1;
    }
    cm_free(a, sample);
    cm_free(a, count);
    if (st != ROTOR_OK) {
        cm_free(a, centres);
        return st;
    }
    *out = centres;
    return ROTOR_OK;
}

/* Each live point's two shards (shard_of[2u], shard_of[2u + 1]): its
 * nearest centres that still have room, in id order. */
static void assign_points(const graph_space *s, const shard_plan *plan, const float *centres,
                          float *dist, size_t *sizes, uint32_t *shard_of) {
    const simd_ops *ops = simd_ops_get();
    const size_t d = s->dim, k = plan->nshards;
    for (size_t u = 0; u < s->count; u++) {
        shard_of[2 * u] = shard_of[2 * u + 1] = NO_SHARD;
        if (graph_removed(s, u))
            continue;
        for (size_t c = 0; c < k; c++)
            dist[c] = ops->l2sq_f32(s->vectors + u * d, centres + c * d, d);
        for (int t = 0; t < 2; t++) {
            uint32_t best = NO_SHARD;
            for (size_t c = 0; c < k; c++)
                if (sizes[c] < plan->most && c != shard_of[2 * u] &&
                    (best == NO_SHARD || dist[c] < dist[best]))
                    best = (uint32_t)c;
            if (best == NO_SHARD)
                break;
            shard_of[2 * u + t] = best;
            sizes[best]++;
        }
    }
}

/* The graph's records, zeroed: in an unnamed file mapped when there is a
 * place for one, else in memory. Blocks are allocated up front, so a full
 * disk is an error here rather than a fault at the first write. */
static rotor_status records_make(vamana *g, const graph_space *s) {
    const rotor_allocator *a = &g->base.alloc;
    const size_t n = s->count;
    size_t bytes;
    CM_RETURN_IF(cm_mul_overflow(n, g->node_bytes, &bytes), ROTOR_ERR_OUT_OF_MEMORY,
                 "a graph of %zu nodes is too large", n);
    uint8_t *nodes = NULL;
    rotor_status st = ROTOR_OK;
    if (s->spill_beside != NULL) {
        ds_out *o;
        CM_FORWARD(ds_out_open(a, s->spill_beside, &o));
        const int fd = ds_out_fd(o), e = posix_fallocate(fd, 0, (off_t)bytes);
        if (e != 0) {
            st = cm_fail(ROTOR_ERR_IO, "cannot make room for the graph's records beside '%s': %s",
                         s->spill_beside, strerror(e));
        } else {
            void *map = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
            if (map == MAP_FAILED)
                st = cm_fail(ROTOR_ERR_IO, "cannot map the graph's records beside '%s': %s",
                             s->spill_beside, strerror(errno));
            else
                nodes = map;
        }
        /* The merge and the repair read records all over: without this
         * each fault would read ahead pages a tight cap evicts unread. */
        if (nodes != NULL)
            (void)madvise(nodes, bytes, MADV_RANDOM);
        ds_out_abort(o); /* unnamed: the mapping keeps it */
    } else {
        nodes = cm_calloc_large(a, bytes, "graph nodes");
        if (nodes == NULL)
            st = ROTOR_ERR_OUT_OF_MEMORY;
    }
    CM_FORWARD(st);
    atomic_uchar *locks = cm_calloc(a, n, "graph locks");
    uint8_t *dirty = cm_calloc(a, n, "graph flags");
    vm_release_records(g);
    g->nodes = nodes;
    g->mapped_bytes = s->spill_beside != NULL ? bytes : 0;
    g->locks = locks;
    g->dirty = dirty;
    g->capacity = n;
    return locks != NULL && dirty != NULL ? ROTOR_OK : ROTOR_ERR_OUT_OF_MEMORY;
}

/* The shards' vectors, each shard's together, written in one pass over
 * the vectors to an unnamed file beside the output: a shard is then one
 * sequential read. Gathered from the mapped vectors instead, each shard
 * read again every page holding one of its members (SIFT-like 1M in 20
 * shards under a 256 MiB cap: 4 million major faults, two thirds of a
 * 964-second build). Without a place for a file the vectors are in
 * memory, and a shard is gathered from them. */
typedef struct shard_store {
    ds_out *file;  /* NULL: gather from s->vectors */
    uint64_t *off; /* k + 1 byte offsets of the shards in the file */
} shard_store;

enum { STORE_BUFFER = 256 << 10 }; /* bytes a shard's rows wait in before a write */

/* Rows waiting to be written to the store, per shard. */
typedef struct store_buffers {
    uint8_t *rows; /* k * per rows */
    size_t per, row;
    size_t *fill;   /* rows waiting, per shard */
    uint64_t *done; /* rows written, per shard */
} store_buffers;

static rotor_status store_flush(const shard_store *ss, store_buffers *b, size_t c) {
    const rotor_status st =
        ds_pwrite_full(ds_out_fd(ss->file), b->rows + c * b->per * b->row, b->fill[c] * b->row,
                       ss->off[c] + b->done[c] * b->row, "the shards' vectors beside the output");
    b->done[c] += b->fill[c];
    b->fill[c] = 0;
    return st;
}

static rotor_status store_write(const vamana *g, const graph_space *s, const uint32_t *shard_of,
                                const size_t *sizes, size_t k, shard_store *ss) {
    const rotor_allocator *a = &g->base.alloc;
    store_buffers b = {.row = s->dim * sizeof(float)};
    b.per = STORE_BUFFER / b.row > 0 ? STORE_BUFFER / b.row : 1;
    ss->off = cm_alloc(a, (k + 1) * sizeof *ss->off, "shard offsets");
    b.fill = cm_calloc(a, k * sizeof *b.fill, "shard buffers");
    b.done = cm_calloc(a, k * sizeof *b.done, "shard buffers");
    b.rows = cm_alloc_large(a, k * b.per * b.row, "shard buffers");
    rotor_status st = ss->off && b.fill && b.done && b.rows ? ROTOR_OK : ROTOR_ERR_OUT_OF_MEMORY;
    if (st == ROTOR_OK) {
        ss->off[0] = 0;
        for (size_t c = 0; c < k; c++)
            ss->off[c + 1] = ss->off[c] + (uint64_t)sizes[c] * b.row;
        st = ds_out_open(a, s->spill_beside, &ss->file);
    }
    uint64_t flushed = 0;
    for (size_t u = 0; st == ROTOR_OK && u < s->count; u++) {
        for (size_t t = 0; t < 2 && st == ROTOR_OK; t++) {
            const uint32_t c = shard_of[2 * u + t];
            if (c == NO_SHARD)
                continue;
            memcpy(b.rows + (c * b.per + b.fill[c]++) * b.row, s->vectors + u * s->dim, b.row);
            if (b.fill[c] == b.per)
                st = store_flush(ss, &b, c);
        }
        /* Dirty pages are not reclaimed until written back. */
        const uint64_t written = (uint64_t)(2 * u + 2) * b.row;
        if (written - flushed >= DS_WRITE_BEHIND) {
            ds_write_behind(ds_out_fd(ss->file), 0, ss->off[k], false);
            flushed = written;
        }
    }
    for (size_t c = 0; st == ROTOR_OK && c < k; c++)
        if (b.fill[c] > 0)
            st = store_flush(ss, &b, c);
    cm_free(a, b.rows);
    cm_free(a, b.done);
    cm_free(a, b.fill);
    return st;
}

/* Shard c's vectors (its members, ascending) into vecs. */
static rotor_status store_read(const shard_store *ss, const graph_space *s, const uint32_t *members,
                               size_t m, size_t c, float *vecs) {
    const size_t d = s->dim;
    if (ss->file == NULL) {
        for (size_t i = 0; i < m; i++)
            memcpy(vecs + i * d, s->vectors + (size_t)members[i] * d, d * sizeof(float));
        return ROTOR_OK;
    }
    const int fd = ds_out_fd(ss->file);
    const uint64_t len = ss->off[c + 1] - ss->off[c];
    rotor_status st =
        ds_pread_full(fd, vecs, (size_t)len, ss->off[c], "the shards' vectors beside the output");
    /* Read once: the cache is better spent on the records. */
    (void)posix_fadvise(fd, (off_t)ss->off[c], (off_t)len, POSIX_FADV_DONTNEED);
    return st;
}

static void store_close(const rotor_allocator *a, shard_store *ss) {
    ds_out_abort(ss->file);
    cm_free(a, ss->off);
}

/* A shard build's progress, as a share of the whole build's. */
typedef struct shard_progress {
    const vamana *g;
    uint64_t base, points, total;
} shard_progress;

static int report_shard(void *ctx, uint64_t done, uint64_t total) {
    const shard_progress *sp = ctx;
    const uint64_t part = total > 0 ? sp->points * done / total : 0;
    return sp->g->p.progress(sp->g->p.progress_opaque, sp->base + part, sp->total);
}

/* Merges list b (ids, best first) into the record's list a (best first):
 * one of each in turn, skipping ids already kept, up to R. */
static void merge_lists(uint32_t *rec, const uint32_t *b, size_t nb, uint32_t R, uint32_t *out) {
    const uint32_t na = rec[0];
    const uint32_t *a = rec + 1;
    size_t i = 0, j = 0, k = 0;
    while (k < R && (i < na || j < nb)) {
        const bool from_a = j >= nb || (i < na && i <= j);
        const uint32_t id = from_a ? a[i++] : b[j++];
        bool dup = false;
        for (size_t t = 0; t < k && !dup; t++)
            dup = out[t] == id;
        if (!dup)
            out[k++] = id;
    }
    memcpy(rec + 1, out, k * sizeof *out);
    rec[0] = (uint32_t)k;
}

/* Builds a shard (its points `members`, ascending, their vectors `vecs`)
 * and merges its lists into the graph's records. */
static rotor_status build_shard(vamana *g, const graph_space *s, const uint32_t *members, size_t m,
                                const nav_params *sp, const float *vecs, shard_progress *prog) {
    const size_t d = s->dim;
    const uint32_t R = g->p.degree;
    const graph_space ss = {.vectors = vecs, .count = m, .dim = d, .metric = s->metric};
    nav *sub_nav;
    CM_FORWARD(vamana_create(&g->base.alloc, sp, &ss, &sub_nav));
    vamana *sub = (vamana *)sub_nav;
    if (g->p.progress != NULL) {
        sub->p.progress = report_shard;
        sub->p.progress_opaque = prog;
    }
    rotor_status st = vm_move_records(sub, m); /* exactly m: no doubling */
    if (st == ROTOR_OK)
        st = vamana_insert(sub_nav, &ss);
    const size_t cap = 2 * (size_t)R + 2;
    vm_cand *cand = st == ROTOR_OK
                        ? cm_alloc(&g->base.alloc, cap * (sizeof(vm_cand) + 8), "a merged list")
                        : NULL;
    if (st == ROTOR_OK && cand == NULL)
        st = ROTOR_ERR_OUT_OF_MEMORY;
    const simd_ops *ops = simd_ops_get();
    for (size_t v = 0; st == ROTOR_OK && v < m; v++) {
        const uint32_t *rec = node_of(sub, v);
        const size_t deg = rec[0] < sub->p.degree ? rec[0] : sub->p.degree;
        /* Nearest first: the back edges a build appends are not in order. */
        for (size_t j = 0; j < deg; j++) {
            const float dj = ops->l2sq_f32(vecs + v * d, vecs + (size_t)rec[1 + j] * d, d);
            size_t t = j;
            for (; t > 0 && cand[t - 1].dist > dj; t--)
                cand[t] = cand[t - 1];
            cand[t] = (vm_cand){dj, members[rec[1 + j]]};
        }
        uint32_t *ids = (uint32_t *)(cand + cap), *out = ids + R + 1;
        for (size_t j = 0; j < deg; j++)
            ids[j] = cand[j].id;
        merge_lists(node_of(g, members[v]), ids, deg, R, out);
    }
    cm_free(&g->base.alloc, cand);
    vamana_free(sub_nav);
    return st;
}

/* What follows the merge, as a build in one piece ends: each record's own
 * code, the entry, the starting points, the repair of unreached nodes and
 * the neighbours' codes. */
static rotor_status finish(vamana *g, const graph_space *s, size_t live) {
    const rotor_allocator *a = &g->base.alloc;
    const size_t n = s->count;
    const quant *walk = g->walk_q;
    uint8_t *code = walk != NULL ? cm_alloc(a, walk->code_bytes, "a code") : NULL;
    uint32_t *order = cm_alloc(a, n * sizeof *order, "insertion order");
    uint8_t *seen = cm_alloc(a, n, "reachability marks");
    rotor_status st = order && seen && (code || walk == NULL) ? ROTOR_OK : ROTOR_ERR_OUT_OF_MEMORY;
    for (size_t u = 0; st == ROTOR_OK && g->code_in_record && u < n; u++)
        walk->ops->load(walk, s->walk_codes, u, (uint8_t *)node_of(g, u) + g->block_off);
    g->count = n;
    if (st == ROTOR_OK)
        st = vm_medoid(g, s, &g->entry);
    const size_t nstarts = walk != NULL ? vm_start_sample_size(live) : 0;
    if (st == ROTOR_OK && nstarts > 0) {
        vm_insertion_order(g->p.seed, 0, NULL, 0, n, order);
        size_t kept = 0;
        for (size_t i = 0; i < n; i++)
            if (!graph_removed(s, order[i]))
                order[kept++] = order[i];
        g->starts = cm_alloc(a, nstarts * sizeof *g->starts, "graph starting points");
        g->start_codes =
            cm_calloc(a, walk->ops->store_bytes(walk, nstarts), "graph starting points");
        st = g->starts != NULL && g->start_codes != NULL
                 ? vm_sample_starts(g, s, order, nstarts, code)
                 : ROTOR_ERR_OUT_OF_MEMORY;
    }
    vm_worker w = {.code = code};
    if (st == ROTOR_OK)
        st = vm_scratch_get(g, s, n, g->p.build_list, 2 * (size_t)g->p.build_list + 64, 0, &w.sc);
    const size_t most = (size_t)g->p.degree + 1 > VM_CHUNK ? g->p.degree + 1 : VM_CHUNK;
    if (st == ROTOR_OK)
        st = vm_scratch_images(g, w.sc, most);
    if (st == ROTOR_OK) {
        w.img = w.sc->img;
        w.target = w.sc->img_ids;
        w.held = w.target + most;
        vm_connect_unreached(g, s, &w, seen, order);
    }
    for (size_t u = 0; st == ROTOR_OK && g->neighbor_codes && u < n; u++)
        vm_refresh_codes(g, s, u, code);
    if (w.sc != NULL)
        vm_scratch_put(g, w.sc);
    cm_free(a, code);
    cm_free(a, order);
    cm_free(a, seen);
    return st;
}

rotor_status vm_build_sharded(vamana *g, const graph_space *s) {
    const rotor_allocator *a = &g->base.alloc;
    const size_t n = s->count, d = s->dim;
    size_t live = 0;
    for (size_t u = 0; u < n; u++)
        live += !graph_removed(s, u);
    CM_RETURN_IF(live == 0, ROTOR_ERR_EMPTY, "a graph build needs at least one point");
    nav_params sp = g->p;
    sp.degree = shard_degree(g->p.degree);
    sp.neighbor_codes = sp.node_codes = sp.from_codes = false;
    sp.ram_budget = sp.build_memory = 0;
    sp.progress = NULL;
    shard_plan plan = {0};
    CM_FORWARD(plan_shards(g, s, live, &plan));

    float *centres = NULL;
    CM_FORWARD(place_centres(g, s, &plan, live, &centres));
    const size_t k = plan.nshards;
    float *dist = cm_alloc(a, k * sizeof *dist, "shard distances");
    size_t *sizes = cm_calloc(a, k * sizeof *sizes, "shard sizes");
    uint32_t *shard_of = cm_alloc_large(a, 2 * n * sizeof *shard_of, "shard assignments");
    rotor_status st = dist && sizes && shard_of ? records_make(g, s) : ROTOR_ERR_OUT_OF_MEMORY;
    if (st == ROTOR_OK)
        assign_points(s, &plan, centres, dist, sizes, shard_of);
    cm_free(a, centres);
    cm_free(a, dist);

    size_t biggest = 0, total = 0;
    for (size_t c = 0; c < k; c++) {
        biggest = sizes[c] > biggest ? sizes[c] : biggest;
        total += sizes[c];
    }
    uint32_t *members = NULL;
    float *vecs = NULL;
    if (st == ROTOR_OK) {
        members = cm_alloc_large(a, (biggest ? biggest : 1) * sizeof *members, "shard members");
        vecs = cm_alloc_large(a, (biggest ? biggest : 1) * d * sizeof(float), "shard vectors");
        if (members == NULL || vecs == NULL)
            st = ROTOR_ERR_OUT_OF_MEMORY;
    }
    shard_store store = {0};
    if (st == ROTOR_OK && s->spill_beside != NULL)
        st = store_write(g, s, shard_of, sizes, k, &store);
    shard_progress prog = {.g = g, .total = total};
    for (size_t c = 0; c < k && st == ROTOR_OK; c++) {
        size_t m = 0;
        for (size_t u = 0; u < n; u++)
            if (shard_of[2 * u] == c || shard_of[2 * u + 1] == c)
                members[m++] = (uint32_t)u;
        if (m == 0)
            continue;
        sp.seed = g->p.seed + c + 1;
        prog.points = m;
        st = store_read(&store, s, members, m, c, vecs);
        if (st == ROTOR_OK)
            st = build_shard(g, s, members, m, &sp, vecs, &prog);
        prog.base += m;
        if (st == ROTOR_OK && g->p.progress != NULL &&
            g->p.progress(g->p.progress_opaque, prog.base, total))
            st = cm_fail(ROTOR_ERR_CANCELLED, "graph build cancelled by the caller");
    }
    store_close(a, &store);
    cm_free(a, vecs);
    cm_free(a, members);
    cm_free(a, shard_of);
    cm_free(a, sizes);
    if (st == ROTOR_OK)
        st = finish(g, s, live);
    if (st == ROTOR_OK) {
        g->shards = k;
        return ROTOR_OK;
    }
    /* A failed build leaves the graph empty, as it found it. */
    vm_release_records(g);
    cm_free(a, g->starts);
    cm_free(a, g->start_codes);
    cm_free(a, g->group_off);
    cm_free(a, g->leader_codes);
    g->starts = NULL;
    g->start_codes = NULL;
    g->group_off = NULL;
    g->leader_codes = NULL;
    g->nstarts = g->ngroups = 0;
    g->count = g->capacity = 0;
    return st;
}
