/*
 * What an index measures about itself: exact neighbours of held-out
 * queries, the calibration table (recall and cost of search settings) a
 * search by recall reads, and the automatic choice of codes and layout at
 * build (rotor_params.quant "auto").
 *
 * Recall is measured: on the index's own rows searched as if held out
 * (nav_search_params.skip), or on queries the caller gives, against exact
 * neighbours. Cost is modelled from the work every search counts
 * (nav_work): records expanded, codes scored in sequence or gathered one
 * by one, candidates refined, vectors reranked or read from disk, each
 * weighted by what it takes on a typical machine (model_ns). Counts repeat
 * exactly from run to run, so a build with a seed chooses the same
 * configuration every time, which timings on a shared machine would not;
 * and a small sample sits in cache where the full index will not, so its
 * timings would favour layouts that read memory at random.
 *
 * The automatic choice builds one graph on a sample (one thread: the same
 * graph every time) made of held-out queries' nearest rows of the whole
 * input (sample_neighbourhoods), lays it out again for each candidate's
 * codes without linking anything anew (nav_ops.derive; the links do not
 * depend on the codes), prices the work at the input's size, and keeps the
 * candidate whose cheapest settings reaching the target recall and 0.99
 * cost least together (their geometric mean).
 *
 * Both run inside a build, the automatic choice before the graph and the
 * calibration after it, and together they can take as long as the graph:
 * they poll the build's progress callback (between chunks of queries and
 * settings, and through the sample graph's own build) so a request to stop
 * is honoured within a fraction of a second rather than at the next phase.
 */
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "common/pool.h"
#include "index/index_internal.h"
#include "quant/kmeans.h"

enum {
    TUNE_K = 10, /* recall@10, what users ask for */
    /* Rows searched as held out when calibrating: at recall 0.95 the
     * standard error of the mean is then about 0.0025 (at 400 it was 0.004,
     * and a 400-query table overstated its pick by 0.01 in one build of
     * four: SIFT-like 100k). */
    CALIB_QUERIES = 1000,
    /* A build holds up to a hundredth of its rows out of the graph as
     * calibration queries, and at least HOLD_OUT_MIN, or it skips the
     * queries' own nodes instead. The table then measures a smaller graph
     * than the one searched, and at short lists recall moves with the
     * size: holding out a twentieth, a 6,000-row set's table rated
     * settings 0.01-0.03 above what outside queries reached on the full
     * graph (a one-pass graph of 95 % of the rows gives those queries
     * the same lift); a hundredth cost 0.004 at 100,000 rows. */
    HOLD_OUT_DIVISOR = 100,
    HOLD_OUT_MIN = 200,
    /* An index too small to hold rows out searches a tenth of its rows as
     * queries, at least HOLD_OUT_MIN: with as many as CALIB_QUERIES, a
     * 2,000-row graph's table took 30 times its graph to measure. */
    SELF_QUERY_DIVISOR = 10,
    SAMPLE_QUERIES = 200, /* held-out rows of the automatic choice */
    SAMPLE_MIN = 2000,    /* the smallest sample worth a graph */
    SAMPLE_MAX = 20000,   /* enough to rank codes; more only costs time */
    SAMPLE_DIVISOR = 20,  /* a sample of n / 20 keeps the choice near a tenth of the build */
    /* Rows of each query's neighbourhood in the sample (a small input's
     * sample grows to hold them, up to a tenth of it). At 10 a query's
     * neighbourhood is its answer and nothing in the sample competes with
     * it; on Fashion-MNIST 20 chose a 1-bit walk, which ran at 0.73-0.97x
     * the QPS of the pq196x4 that 30 and more chose. */
    SAMPLE_NEIGHBOURHOOD = 50,
    AUTO_MIN_ROWS = 1000, /* below it every configuration is fast: full precision */
    EVAL_CHUNK = 16,      /* queries per pool chunk */
    MAX_CANDIDATES = 8,
};

/* ---- the cost model -------------------------------------------------------
 *
 * Nanoseconds per unit of counted work. A query costs its preparation
 * (the rotation and lookup tables of quantized searches: 8.7 ns a
 * dimension); an estimate, a fast-scan code 0.014 ns per 4-bit lookup in
 * a graph's blocks and 0.09 elsewhere (an IVF's lists, a single code), an
 * 8-bit scalar code 0.1 ns per dimension, an exact distance 0.23 ns per
 * dimension of floats and 0.1 per dimension of a row of bytes
 * (ix_narrow_rows). Codes the fit did not see (8-bit PQ, TurboQuant,
 * popcount binary) are priced by their bytes; a vector read from an SSD
 * at a typical NVMe read.
 *
 * Reads from memory are priced by the size of the array they fall in, at
 * the size of the index modelled: the automatic choice searches a sample
 * of 20,000 rows that sits in cache where the index of a million will
 * not. A record expanded costs 520 ns (its list and visited-set work and
 * its fetch) and 33 ns more for every doubling of the graph's records past
 * NS_CACHE_BYTES: the walk waits on each record. A code gathered from the
 * records of the own-code layout, a code refined and a vector reranked
 * cost 8 ns a doubling of their array: they are read together and
 * overlap. A full-precision walk's rows, requested together too, cost
 * what a reranked row does (8 ns a doubling of the vectors' array): the
 * fit had found them next to free (0.5 ns a doubling), but on 100-d word
 * vectors (110,000 x 400 bytes) a full-precision walk then priced 3 %
 * over sq8 own codes at recall 0.95 and ran at 0.47-0.66x their QPS at
 * 0.90-0.99, and the automatic choice, which prices a sample at the
 * index's size, took it where the 8-bit codes' 112-byte rows run faster
 * (the 25-d set measured 0.66-0.80x as well). An entry
 * the pool of a deep refine or rerank takes costs 47 ns (the append, its
 * share of the selections, and the list and visited-set work of a
 * candidate the pool's looser threshold lets in).
 *
 * Fitted by bench/costfit (least of three timed passes a setting) to 12
 * indexes: SIFT-like 50k / 200k / 1M with a binary walk refined by sq8 and
 * with sq8 own codes, 1M pq64x4, full precision at 50k and 200k, 768-d
 * 200k pq192x4 and binary + sq8, Fashion-MNIST pq196x4; every index's
 * median within 11 %. The sizes turn choices: from 50k to 1M a gathered
 * own code grew 1.7-fold in time, a record with its neighbours' codes
 * 1.1-fold. Then, the other constants held, the full-precision walk's
 * (once it fetched its rows together; it had waited on each, 31 ns a
 * doubling) and the graph's fast-scan lookup (0.09 before: the walks on
 * pq196x4 and pq96x4 ran at 0.67-0.73 of their price) to 198 settings of
 * twelve indexes: Debian SIFT and Fashion-MNIST at full precision on rows
 * of bytes, 25 / 100 / 200-d word vectors at full precision and sq8,
 * Debian SIFT sq8, Fashion-MNIST pq196x4, wordnet-384 pq96x4, the 768-d
 * set binary + sq8; medians 0.86-1.12. The IVF's lookups were not fitted
 * again. */
#define NS_QUERY 1460.0
#define NS_QUERY_DIM 8.7
#define NS_HOP 520.0
#define NS_HOP_FAR 33.0
#define NS_POOL_ENTRY 47.0
#define NS_READ_FAR 8.0
#define NS_DISK_READ 4000.0
#define NS_CACHE_BYTES (8.0 * 1024 * 1024)

/* A code scanned in an IVF's list pays, beyond the price of its lookups,
 * its own corrections where 16-centroid PQ codes pay none (the graphs'
 * fit above already holds them for the graphs' walks and refines):
 * - fast-scan binary: two floats of its block read and combined with its
 *   sum, 0.3-0.4 of the lookups' time of bin2fs at 128 dimensions (perf,
 *   an IVF of Debian SIFT);
 * - 8-bit scalar: three floats gathered, eight codes finished together;
 *   perf of an IVF of 25-d word vectors with sq8 lists: 4.9 ns a code
 *   where the per-dimension price gives 2.5, and the pq25x4 lists the
 *   model rated 3 % dearer ran at 1.6-2.0x its QPS. */
#define NS_BINFS_LIST_CODE 2.0
#define NS_SQ_LIST_CODE 2.5

/* One estimate of a code already in cache; `block`: in a graph's block of
 * fast-scan codes. */
static double code_ns(const quant *q, size_t dim, bool block) {
    const double lookup = block ? 0.014 : 0.09;
    switch (q->spec.kind) {
    case QUANT_PQ4: return lookup * (double)q->spec.m;
    case QUANT_BINFS: return lookup * (double)(q->spec.bits * dim) / 4.0;
    case QUANT_SQ: return 0.098 * (double)dim;
    case QUANT_PQ: return 0.4 * (double)q->spec.m;
    default: return 0.3 * (double)q->code_bytes;
    }
}

/* One more preparation of a query for a list of residual codes: an IVF
 * prepares the query's residual to each list it probes, by a quantizer of
 * the index's kind and size (its tables, and for binary and scalar codes
 * the rotation). Per kind, from timing each kind's prepare at 100, 128 and
 * 200 dimensions (one thread, AVX2): 16-centroid PQ 1.5 ns a dimension and
 * 7 ns a subspace (pq64x4 at 128: 560 ns), fast-scan binary 4 ns a
 * dimension and 1.5 a bit (bin2fs at 128: 860 ns), 8-bit scalar 6.5 ns a
 * dimension, TurboQuant 2.7. Unpriced, the choice took bin2fs where
 * pq d/2 x4 ran 1.1-1.6x its QPS. */
static double list_prepare_ns(const quant *q, size_t dim) {
    const double d = (double)dim;
    if (q == NULL)
        return 0;
    switch (q->spec.kind) {
    case QUANT_PQ4: return 1.5 * d + 7.0 * (double)q->spec.m;
    case QUANT_BINFS: return (4.0 + 1.5 * (double)q->spec.bits) * d;
    case QUANT_SQ: return 6.5 * d;
    default: return 2.7 * d;
    }
}

/* Doublings of an array of `bytes` past what the caches hold. */
static double past_cache(double bytes) {
    return bytes > NS_CACHE_BYTES ? log2(bytes / NS_CACHE_BYTES) : 0.0;
}

/* One exact distance to a full vector already in cache; `bytes`: rows of a
 * byte a coordinate. */
static double row_ns(size_t dim, bool bytes) { return (bytes ? 0.098 : 0.235) * (double)dim; }

/* A full vector read from memory, among n of them. */
static double vector_read_ns(double n, size_t dim, bool bytes) {
    return NS_READ_FAR * past_cache(n * (double)(dim * (bytes ? 1 : sizeof(float))));
}

/* Modelled nanoseconds per query of work w summed over nq queries, on an
 * index laid out as ix is with `rows` rows (a sample priced at the size
 * of the index it stands for; 0: ix's own) whose full vectors are rows of
 * bytes if `bytes`. scan_scale: how many of the
 * codes a sequential scan scored would be scored in the index modelled
 * (IVF sampled as a flat scan); 1 otherwise. prepare_scale: the same for
 * an IVF's per-list preparations of the query. */
static double model_ns(const rotor_index *ix, const nav_work *w, size_t nq, double scan_scale,
                       double prepare_scale, size_t rows, bool bytes) {
    const size_t d = ix->dim;
    const double n = (double)(rows > ix->count ? rows : ix->count);
    const quant *walk = ix->walk_q ? ix->walk_q : ix->q;
    const bool graph = ix->params.kind == ROTOR_INDEX_VAMANA;
    nav_stats ns = {0};
    graph_space space = ix_space(ix);
    ix->nav->ops->stats(ix->nav, &space, &ns);
    /* Graph records; for IVF, a list's codes are read in sequence. */
    const double record =
        graph && ix->count > 0 ? (double)(ns.bytes_ids + ns.bytes_codes) / (double)ix->count : 0;
    const double records = past_cache(n * record);
    double t = (double)nq * (NS_QUERY + (ix->q != NULL ? NS_QUERY_DIM * (double)d : 0));
    t += (double)w->hops * (NS_HOP + NS_HOP_FAR * records);
    t += (double)w->pooled * NS_POOL_ENTRY;
    const double sequential = (double)(w->scored - w->gathered) * scan_scale;
    if (walk == NULL) {
        /* A graph's rows are read where its walk leads, a flat scan's in
         * one stream. */
        t += (double)w->scored * (row_ns(d, bytes) + (graph ? vector_read_ns(n, d, bytes) : 0));
    } else {
        t += (sequential + (double)w->gathered) * code_ns(walk, d, graph) +
             (double)w->gathered * NS_READ_FAR * records;
        if (ix->params.kind == ROTOR_INDEX_IVF)
            t += sequential * (walk->spec.kind == QUANT_SQ      ? NS_SQ_LIST_CODE
                               : walk->spec.kind == QUANT_BINFS ? NS_BINFS_LIST_CODE
                                                                : 0.0);
    }
    if (ix->q != NULL)
        t += (double)w->refined *
             (NS_READ_FAR * past_cache(n * (double)ix->q->code_bytes) + code_ns(ix->q, d, false));
    t += (double)w->reranked *
         ((ix->store != NULL ? NS_DISK_READ : vector_read_ns(n, d, bytes)) + row_ns(d, bytes));
    t += (double)w->probed * row_ns(d, bytes);
    t += (double)w->prepared * prepare_scale * list_prepare_ns(ix->q, d);
    return t / (double)(nq ? nq : 1);
}

/* ---- stop requests --------------------------------------------------------
 *
 * The build's progress callback, asked whether to stop. It is called only
 * on the thread that started the build (worker 0 of a pool, the sample
 * graph's reporting thread), as rotor.h promises; the other workers read
 * the answer. Once it has asked to stop it is not called again. */

typedef struct build_poll {
    rotor_progress_fn fn; /* NULL: never stops */
    void *opaque;
    uint64_t done, total; /* what it is told: nothing done yet, or all of it */
    atomic_int stop;
} build_poll;

static bool stopped(build_poll *p) {
    return p != NULL && atomic_load_explicit(&p->stop, memory_order_relaxed);
}

/* Called on the build's own thread only. */
static bool poll_stop(build_poll *p) {
    if (p == NULL || p->fn == NULL)
        return false;
    if (!stopped(p) && p->fn(p->opaque, p->done, p->total))
        atomic_store(&p->stop, 1);
    return stopped(p);
}

static rotor_status cancelled(void) {
    return cm_fail(ROTOR_ERR_CANCELLED, "build cancelled by the caller");
}

/* The sample graph's build reports its own progress; the caller hears only
 * that the configuration is under way. */
static int sample_progress(void *opaque, uint64_t done, uint64_t total) {
    (void)done;
    (void)total;
    return poll_stop(opaque);
}

/* ---- exact neighbours -------------------------------------------------- */

typedef struct exact_job {
    const nav *flat;
    const graph_space *s;
    const float *queries;
    size_t nq, k; /* k answers per query */
    int64_t *ids;
    float *dists;
    const nav_filter *live; /* NULL, or the removed points' refusal */
    build_poll *poll;
} exact_job;

enum { EXACT_CHUNK = 32 };

static void exact_chunk(void *ctx, size_t chunk, unsigned worker) {
    const exact_job *j = ctx;
    if (worker == 0 ? poll_stop(j->poll) : stopped(j->poll))
        return;
    const size_t lo = chunk * EXACT_CHUNK, n = j->nq - lo < EXACT_CHUNK ? j->nq - lo : EXACT_CHUNK;
    const nav_search_params np = {.filter = j->live};
    if (j->live == NULL) {
        (void)j->flat->ops->search_batch(j->flat, j->s, j->queries + lo * j->s->dim, n, j->k, &np,
                                         j->ids + lo * j->k, j->dists + lo * j->k);
        return;
    }
    /* The tiled batch takes no filter: a query at a time (a full-precision
     * scan cannot fail). */
    for (size_t i = lo; i < lo + n; i++)
        (void)j->flat->ops->search(j->flat, j->s, j->queries + i * j->s->dim, j->k, &np,
                                   j->ids + i * j->k, j->dists + i * j->k);
}

/* Answers an exact search asks for beyond TUNE_K, to drop the held-out
 * rows among them: a few hundred rows of many thousands rarely place even
 * one in a query's nearest. */
enum { HELD_SPARE = 16 };

static bool is_held(const uint64_t *held, int64_t u) {
    return held != NULL && u >= 0 && cm_bit_get(held, (size_t)u);
}

/* The exact kout nearest of each query among `count` rows of `base` into
 * gt (nq x kout), and (kth not NULL) the distance of the last of them into
 * kth[i] (-INFINITY when there is none). self[i] (when self is not NULL)
 * is the row query i was taken from, and held (when not NULL) marks rows
 * the graph held out: both are left out of the answers. */
static rotor_status exact_neighbours(const rotor_allocator *a, const float *base, size_t count,
                                     size_t dim, rotor_metric metric, const float *queries,
                                     const uint32_t *self, const uint64_t *held, size_t nq,
                                     unsigned threads, const nav_filter *live, build_poll *poll,
                                     size_t kout, int64_t *gt, float *kth) {
    const size_t k = kout + (held != NULL ? HELD_SPARE : self != NULL),
                 want = k < count ? k : count;
    graph_space s = {.vectors = base, .count = count, .dim = dim, .metric = metric};
    nav_params np = {.threads = 1};
    nav *flat;
    CM_FORWARD(flat_nav_ops.create(a, &np, &s, &flat));
    rotor_status st = flat_nav_ops.insert(flat, &s);
    int64_t *ids = cm_alloc(a, nq * want * (sizeof(int64_t) + sizeof(float)), "exact neighbours");
    cm_pool pool;
    if (st == ROTOR_OK && ids == NULL)
        st = ROTOR_ERR_OUT_OF_MEMORY;
    if (st == ROTOR_OK)
        st = cm_pool_start(&pool, a, cm_thread_count(threads, nq / EXACT_CHUNK + 1));
    if (st == ROTOR_OK) {
        exact_job job = {flat, &s, queries, nq, want, ids, (float *)(ids + nq * want), live, poll};
        cm_pool_run(&pool, exact_chunk, &job, (nq + EXACT_CHUNK - 1) / EXACT_CHUNK);
        cm_pool_stop(&pool);
        if (stopped(poll))
            st = cancelled();
        const float *dists = (const float *)(ids + nq * want);
        for (size_t i = 0; st == ROTOR_OK && i < nq; i++) {
            size_t m = 0;
            float last = -INFINITY;
            for (size_t j = 0; j < want && m < kout; j++)
                if (ids[i * want + j] >= 0 &&
                    (self == NULL || ids[i * want + j] != (int64_t)self[i]) &&
                    !is_held(held, ids[i * want + j])) {
                    gt[i * kout + m++] = ids[i * want + j];
                    last = dists[i * want + j];
                }
            if (kth != NULL)
                kth[i] = last;
            for (; m < kout; m++)
                gt[i * kout + m] = -1;
        }
    }
    cm_free(a, ids);
    flat->ops->free(flat);
    return st;
}

/* ---- the settings grid --------------------------------------------------- */

/* Lists shorter than k serve too: the results come from a heap of the
 * best estimates (or distances) the walk scored (graph/vamana_search.c):
 * on Fashion-MNIST a filter half the points pass reached recall 0.95 at
 * L = 8, and one a tenth pass at L = 4. */
static const uint32_t LISTS[] = {4,  6,  8,  10,  12,  16,  20,  24,  32,  40,  48,
                                 64, 80, 96, 128, 160, 192, 224, 256, 320, 384, 512};
static const uint32_t PROBES[] = {1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256};
static const uint32_t RERANKS[] = {10, 15, 20, 30, 40, 60, 80, 120, 160, 240, 320, 480, 640, 1000};

#define COUNT_OF(a) (sizeof(a) / sizeof((a)[0]))

/* ---- one search setting over the queries --------------------------------- */

/* Rerank depths measured on one walk (as many as RERANKS holds), and the
 * deepest of them. */
enum { SHARED_DEPTHS = 14, SHARED_MAX_DEPTH = 1000 };
_Static_assert(COUNT_OF(RERANKS) <= SHARED_DEPTHS, "one walk measures every depth");

/* A query that a shorter list (or fewer probes) answered with all its true
 * neighbours is not searched again at longer ones of the same knobs (see
 * answered() for the depths): it counts as answered, and the cost of a
 * setting is the work of every PRICED_EVERY-th query, which is always
 * searched. A longer list walks much what the shorter one walked and
 * more, and keeps the better estimates. The longest lists, which reach the
 * highest recall, cost most of a calibration and answer few queries the
 * shorter ones did not: on the 100-d word vectors (sq8, one thread) lists
 * of 128 and more took 5.9 s of its 7.9. Sets of fewer queries than
 * PRICED_MIN are all priced and searched. */
enum { PRICED_EVERY = 4, PRICED_MIN = 400, ANSWERED_TRACKS = 8, DEPTH_SLOTS = SHARED_DEPTHS + 1 };

/* The shortest list (or fewest probes) at which each query had all its
 * true neighbours, per rerank depth, for one combination of the knobs a
 * list does not change. */
typedef struct answered_track {
    uint32_t starts, neighbors, refine_times;
    uint32_t *first; /* nq x DEPTH_SLOTS; UINT32_MAX: not yet */
} answered_track;

typedef struct eval_slot {
    nav_work work;
    double sum, sum2; /* per-query recall and its square */
    /* A walk shared by several rerank depths: the same per depth, and the
     * candidates each depth reranks, summed over the queries. */
    double dsum[SHARED_DEPTHS], dsum2[SHARED_DEPTHS];
    uint64_t dtaken[SHARED_DEPTHS];
    bool unshared; /* the navigator did not hand its candidates out */
    rotor_status st;
    char error[256];
} eval_slot;

typedef struct eval_job {
    const rotor_index *ix;
    nav_search_params np;
    const float *queries;
    const uint32_t *self; /* NULL: external queries */
    const int64_t *gt;    /* nq x TUNE_K */
    const float *base;    /* the rows gt counts in, as floats */
    const float *kth;     /* nq: the distance of each query's TUNE_K-th */
    const simd_ops *ops;
    size_t nq;
    eval_slot *slot; /* one per worker */
    int64_t *ids;    /* per worker: TUNE_K ids, then TUNE_K distances */
    /* 0, or the ascending rerank depths one walk is measured at (np.rerank
     * is the deepest), with per worker SHARED_MAX_DEPTH candidate ids. */
    size_t ndepths;
    const uint32_t *depths;
    uint32_t *walked;
    build_poll *poll;
    size_t priced_every;
    uint32_t *first;                   /* NULL, or the answered track of these knobs */
    uint32_t outer;                    /* the list, or the probes */
    uint8_t depth_slot[SHARED_DEPTHS]; /* where each depth measured is in `first` */
} eval_job;

/* How many of query i's true neighbours there are (fewer than TUNE_K in
 * an index of fewer live rows). */
static size_t query_truth(const eval_job *j, size_t i) {
    const int64_t *g = j->gt + i * TUNE_K;
    size_t truth = 0;
    for (size_t a = 0; a < TUNE_K; a++)
        truth += g[a] >= 0;
    return truth;
}

/* Recall as the benchmarks count it: a result is one of the k nearest
 * when its exact distance is no larger than the k-th's, so a twin of a
 * true neighbour counts as the neighbour (with duplicate rows, recall by
 * ids misses whichever twin a search returns, and the table then promised
 * less than searches gave). */
static bool is_hit(const eval_job *j, size_t i, int64_t id) {
    const float *q = j->queries + i * j->ix->dim;
    const float bar = j->kth[i] + 1e-6f * fabsf(j->kth[i]);
    return graph_distance(j->ops, j->ix->metric, q, j->base + (size_t)id * j->ix->dim,
                          j->ix->dim) <= bar;
}

static void add_recall(double *sum, double *sum2, size_t hit, size_t truth) {
    hit = hit < truth ? hit : truth;
    const double r = truth ? (double)hit / (double)truth : 1.0;
    *sum += r;
    *sum2 += r * r;
}

/* Query i had all its true neighbours at the t-th depth measured. */
static void note_answer(const eval_job *j, size_t i, size_t t) {
    if (j->first != NULL) {
        uint32_t *f = &j->first[i * DEPTH_SLOTS + j->depth_slot[t]];
        *f = j->outer < *f ? j->outer : *f;
    }
}

/* Query i's recall at each depth of a shared walk, from the candidates it
 * handed on, best estimate first: a rerank of the first `depth` returns
 * the TUNE_K nearest of them, which hold every hit among them up to
 * TUNE_K (the rerank's bound only skips candidates that cannot enter). */
static void add_depths(const eval_job *j, eval_slot *out, size_t i, const uint32_t *walked,
                       size_t nwalked, bool priced) {
    const size_t truth = query_truth(j, i);
    size_t upto = 0, hits = 0;
    for (size_t t = 0; t < j->ndepths; t++) {
        const size_t depth = j->depths[t] < nwalked ? j->depths[t] : nwalked;
        for (; upto < depth; upto++)
            hits += is_hit(j, i, walked[upto]);
        add_recall(&out->dsum[t], &out->dsum2[t], hits < TUNE_K ? hits : TUNE_K, truth);
        if (priced)
            out->dtaken[t] += depth;
        if (hits >= truth)
            note_answer(j, i, t);
    }
}

/* Whether query i had all its true neighbours at a list no longer than
 * this one and a rerank depth shallower than the shallowest measured. At
 * the same depth a longer list that finds a point estimated better than a
 * true neighbour pushes it past the depth: when answers at a depth stood
 * for that depth, the table rated Fashion-MNIST (4-bit PQ walk) at L 16
 * and a rerank of 15 at 0.9604 where its searches found 0.9586, and the
 * 100-d word vectors (sq8) at L 10-12 and 10 0.0006 high. Answers at a
 * shallower depth leave a margin: the tables of seven sets (word vectors
 * of 25, 100 and 200 dimensions, Fashion-MNIST, Debian SIFT, wordnet-384
 * and a 768-d set walked on 1-bit codes) kept every row's recall to the
 * fourth digit. A walk on full vectors (no rerank) keeps the best
 * distances it found, which a longer list only improves. */
static bool answered(const eval_job *j, size_t i) {
    if (j->first == NULL)
        return false;
    const uint32_t *f = &j->first[i * DEPTH_SLOTS];
    const size_t below = j->depth_slot[0];
    if (below == 0)
        return f[0] <= j->outer;
    for (size_t t = 0; t < below; t++)
        if (f[t] <= j->outer)
            return true;
    return false;
}

static void eval_chunk(void *ctx, size_t chunk, unsigned worker) {
    eval_job *j = ctx;
    eval_slot *out = &j->slot[worker];
    if (out->st != ROTOR_OK || (worker == 0 ? poll_stop(j->poll) : stopped(j->poll)))
        return;
    int64_t *ids = j->ids + worker * 2 * TUNE_K;
    float *dists = (float *)(ids + TUNE_K);
    nav_search_params np = j->np;
    uint32_t *walked = j->ndepths > 0 ? j->walked + (size_t)worker * SHARED_MAX_DEPTH : NULL;
    size_t nwalked = 0;
    np.walked = walked;
    np.nwalked = walked != NULL ? &nwalked : NULL;
    const size_t lo = chunk * EVAL_CHUNK, hi = lo + EVAL_CHUNK < j->nq ? lo + EVAL_CHUNK : j->nq;
    for (size_t i = lo; i < hi; i++) {
        const bool priced = i % j->priced_every == 0;
        if (!priced && answered(j, i)) {
            for (size_t t = 0; t < j->ndepths; t++)
                add_recall(&out->dsum[t], &out->dsum2[t], 1, 1);
            if (j->ndepths == 0)
                add_recall(&out->sum, &out->sum2, 1, 1);
            continue;
        }
        np.work = priced ? &out->work : NULL;
        np.skip = j->self ? &j->self[i] : NULL;
        nwalked = SIZE_MAX;
        rotor_status st =
            ix_search_nav(j->ix, &np, j->queries + i * j->ix->dim, TUNE_K, ids, dists, NULL);
        if (st != ROTOR_OK) {
            out->st = st;
            snprintf(out->error, sizeof out->error, "%s", rotor_last_error());
            return;
        }
        if (walked != NULL) {
            if (nwalked == SIZE_MAX) {
                out->unshared = true;
                return;
            }
            add_depths(j, out, i, walked, nwalked, priced);
            continue;
        }
        size_t hit = 0;
        for (size_t b = 0; b < TUNE_K && ids[b] >= 0; b++)
            hit += is_hit(j, i, ids[b]);
        const size_t truth = query_truth(j, i);
        add_recall(&out->sum, &out->sum2, hit, truth);
        if (hit >= truth)
            note_answer(j, i, 0);
    }
}

/* A set of queries with their exact neighbours, and the pool that runs
 * them. */
typedef struct tune_set {
    const float *queries;
    const uint32_t *self;
    const int64_t *gt;
    size_t nq;
    cm_pool *pool;
    eval_slot *slot;
    int64_t *ids;
    double scan_scale;
    /* How many of the per-list preparations a search counted the index
     * modelled would make: 1, or for a sample IVF probed whole the lists
     * its share scan_scale of the codes fills at the index's list size. */
    double prepare_scale;
    bool all_lists;         /* IVF: every list probed, a scan of all the codes */
    size_t rows;            /* the index priced has this many rows (0: its own) */
    const nav_filter *live; /* NULL, or the removed points' refusal */
    build_poll *poll;       /* NULL outside a build */
    const float *base;      /* the rows gt counts in, as floats */
    const float *kth;       /* nq: the distance of each query's TUNE_K-th */
    uint32_t *walked;       /* per worker SHARED_MAX_DEPTH: a shared walk's candidates */
    bool bytes;             /* the index priced keeps its rows as bytes */
    uint32_t neighbors;     /* vamana: the grid's walks read this many of each list; 0: all */
    size_t priced_every;    /* 1: every query is priced and searched */
    answered_track track[ANSWERED_TRACKS];
    size_t ntracks;
} tune_set;

/* A row of the table: np's settings, the recall summed over the queries
 * and the work they did. */
static rotor_calibration_row table_row(const rotor_index *ix, const tune_set *set,
                                       const nav_search_params *np, double sum, double sum2,
                                       const nav_work *w) {
    const double n = (double)set->nq, mean = sum / n;
    const double var = n > 1 ? (sum2 - n * mean * mean) / (n - 1) : 0;
    return (rotor_calibration_row){
        .list_size = (uint32_t)np->list,
        .rerank = (uint32_t)np->rerank,
        .refine = (uint32_t)np->refine,
        .nprobe = (uint32_t)np->nprobe,
        .start_points = (uint32_t)np->starts,
        .max_neighbors = (uint32_t)np->neighbors,
        .recall = (float)mean,
        /* Two standard errors: a search by recall takes the cheapest of
         * many rows above the target, and would favour the ones whose
         * queries happened to be easy. */
        .recall_low = (float)(mean - 2 * sqrt(var > 0 ? var / n : 0)),
        .cost_ns = (float)model_ns(ix, w, (set->nq + set->priced_every - 1) / set->priced_every,
                                   set->scan_scale, set->prepare_scale, set->rows, set->bytes),
    };
}

/* Where rerank depth `rerank` is kept in an answered track: 0 for none
 * (a walk on full vectors), else after RERANKS' index; SIZE_MAX for a
 * depth off the grid. */
static size_t depth_slot(size_t rerank) {
    if (rerank == 0)
        return 0;
    for (size_t x = 0; x < COUNT_OF(RERANKS); x++)
        if (RERANKS[x] == rerank)
            return x + 1;
    return SIZE_MAX;
}

/* The answered track of np's knobs, made on first use; NULL when the set
 * prices every query, a depth is off the grid or the tracks are full. */
static rotor_status answered_track_of(const rotor_index *ix, tune_set *set,
                                      const nav_search_params *np, const uint32_t *depths,
                                      size_t ndepths, eval_job *job) {
    job->first = NULL;
    if (set->priced_every == 1)
        return ROTOR_OK;
    for (size_t d = 0; d < (ndepths > 0 ? ndepths : 1); d++) {
        const size_t slot = depth_slot(ndepths > 0 ? depths[d] : np->rerank);
        if (slot == SIZE_MAX)
            return ROTOR_OK;
        job->depth_slot[d] = (uint8_t)slot;
    }
    const uint32_t starts = (uint32_t)np->starts, neighbors = (uint32_t)np->neighbors;
    const uint32_t times =
        np->refine > 0 && np->rerank > 0 ? (uint32_t)(np->refine / np->rerank) : 0;
    answered_track *t = NULL;
    for (size_t x = 0; x < set->ntracks && t == NULL; x++)
        if (set->track[x].starts == starts && set->track[x].neighbors == neighbors &&
            set->track[x].refine_times == times)
            t = &set->track[x];
    if (t == NULL) {
        if (set->ntracks == ANSWERED_TRACKS)
            return ROTOR_OK;
        uint32_t *first =
            cm_alloc(&ix->alloc, set->nq * DEPTH_SLOTS * sizeof *first, "calibration answers");
        if (first == NULL)
            return ROTOR_ERR_OUT_OF_MEMORY;
        memset(first, 0xff, set->nq * DEPTH_SLOTS * sizeof *first);
        t = &set->track[set->ntracks++];
        *t = (answered_track){starts, neighbors, times, first};
    }
    job->first = t->first;
    job->outer = (uint32_t)(ix->params.kind == ROTOR_INDEX_IVF ? np->nprobe : np->list);
    return ROTOR_OK;
}

/* Searches every query of `set` with np into rows[0], or, with ndepths >
 * 0, walks once for each and reranks at each of depths[] (ascending, the
 * last np->rerank) into rows[0..ndepths). ROTOR_ERR_UNSUPPORTED, quietly:
 * the navigator does not hand its candidates out. */
static rotor_status evaluate_at(const rotor_index *ix, tune_set *set, const nav_search_params *np,
                                const uint32_t *depths, size_t ndepths,
                                rotor_calibration_row *rows) {
    const unsigned workers = cm_pool_threads(set->pool);
    memset(set->slot, 0, workers * sizeof *set->slot);
    eval_job job = {
        .ix = ix,
        .np = *np,
        .queries = set->queries,
        .self = set->self,
        .gt = set->gt,
        .base = set->base,
        .kth = set->kth,
        .ops = simd_ops_get(),
        .nq = set->nq,
        .slot = set->slot,
        .ids = set->ids,
        .ndepths = ndepths,
        .depths = depths,
        .walked = set->walked,
        .poll = set->poll,
        .priced_every = set->priced_every,
    };
    CM_FORWARD(answered_track_of(ix, set, np, depths, ndepths, &job));
    job.np.filter = set->live;
    if (poll_stop(set->poll))
        return cancelled();
    cm_pool_run(set->pool, eval_chunk, &job, (set->nq + EVAL_CHUNK - 1) / EVAL_CHUNK);
    if (stopped(set->poll))
        return cancelled();
    nav_work w = {0};
    double sum = 0, sum2 = 0, dsum[SHARED_DEPTHS] = {0}, dsum2[SHARED_DEPTHS] = {0};
    uint64_t dtaken[SHARED_DEPTHS] = {0};
    for (unsigned t = 0; t < workers; t++) {
        const eval_slot *sl = &set->slot[t];
        if (sl->st != ROTOR_OK)
            return cm_fail(sl->st, "%s", sl->error);
        if (sl->unshared)
            return ROTOR_ERR_UNSUPPORTED;
        w.hops += sl->work.hops;
        w.scored += sl->work.scored;
        w.gathered += sl->work.gathered;
        w.pooled += sl->work.pooled;
        w.refined += sl->work.refined;
        w.reranked += sl->work.reranked;
        w.probed += sl->work.probed;
        w.prepared += sl->work.prepared;
        sum += sl->sum;
        sum2 += sl->sum2;
        for (size_t d = 0; d < ndepths; d++) {
            dsum[d] += sl->dsum[d];
            dsum2[d] += sl->dsum2[d];
            dtaken[d] += sl->dtaken[d];
        }
    }
    if (ndepths == 0) {
        rows[0] = table_row(ix, set, np, sum, sum2, &w);
        return ROTOR_OK;
    }
    /* A shallower depth reranks fewer of the candidates: the exact
     * distances the deepest computed (what its bound did not skip), in
     * proportion. */
    const uint64_t reranked = w.reranked;
    for (size_t d = 0; d < ndepths; d++) {
        nav_search_params at = *np;
        at.rerank = depths[d];
        w.reranked =
            dtaken[ndepths - 1] > 0
                ? (uint64_t)((double)reranked * (double)dtaken[d] / (double)dtaken[ndepths - 1])
                : 0;
        rows[d] = table_row(ix, set, &at, dsum[d], dsum2[d], &w);
    }
    return ROTOR_OK;
}

/* Searches every query of `set` with np into a row of the table. */
static rotor_status evaluate(const rotor_index *ix, tune_set *set, const nav_search_params *np,
                             rotor_calibration_row *row) {
    return evaluate_at(ix, set, np, NULL, 0, row);
}

/* The recall a calibration's sweep stops at. */
#define CALIB_TOP 0.999f
/* Recall this close is the same: a setting that adds no more has reached
 * what its knob allows. */
#define SAME_RECALL 0.0005f
/* A deeper rerank costing at most this much more is as cheap. */
#define DEEPER_COST 0.01

/* A walk on other codes, whose best candidates are estimated again. */
static bool refines(const rotor_index *ix) { return ix->walk_q != NULL && ix->walk_q != ix->q; }

/* Rows kept: only those no other row beats in both cost and recall. */
static size_t keep_frontier(rotor_calibration_row *r, size_t n) {
    /* Insertion sort by cost (tables are a few hundred rows). */
    for (size_t i = 1; i < n; i++) {
        rotor_calibration_row x = r[i];
        size_t j = i;
        for (; j > 0 && r[j - 1].cost_ns > x.cost_ns; j--)
            r[j] = r[j - 1];
        r[j] = x;
    }
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (m == 0 || r[i].recall_low > r[m - 1].recall_low)
            r[m++] = r[i];
    return m;
}

static float best_recall(const rotor_calibration_row *r, size_t n) {
    float best = 0;
    for (size_t i = 0; i < n; i++)
        best = r[i].recall > best ? r[i].recall : best;
    return best;
}

/* A graph walking its own codes walks the same at every rerank depth its
 * list holds (deeper ones keep a pool of estimates), so one walk measures
 * several depths (evaluate_at): on 100-d word vectors (sq8) the
 * calibration took 10.7 s instead of 22.4, the same settings measured to
 * the same recall. */
static bool shares_walks(const rotor_index *ix, const tune_set *set) {
    return ix->params.kind == ROTOR_INDEX_VAMANA && ix->q != NULL && !refines(ix) &&
           set->live == NULL;
}

/* Measures the grid of the index's kind. With `stop_at` > 0 (the automatic
 * choice), a depth's sweep stops at the first setting reaching it; else at
 * CALIB_TOP or the grid's end. Rows go to *out (allocated).
 *
 * `beat` (INFINITY: none) is the cost a candidate of the automatic choice
 * must come under: the geometric mean of its cheapest settings reaching
 * the target and stop_at, b <= h, must be below it, so b h < beat^2, and
 * b is at least the cheapest row measured. A row costing more than
 * beat^2 over that can be neither, nor can the longer lists after it (the
 * walk only grows), nor a deeper depth when it is the depth's first row:
 * the sweep stops there and says so in *capped. On 100-d word vectors
 * this cut the choice's measuring of the losing candidates (a 1-bit walk
 * swept to deep reranks, 2.2 s) and kept its pick. */
static rotor_status sweep(const rotor_index *ix, tune_set *set, float stop_at, double beat,
                          rotor_calibration_row **out, size_t *nout, bool *capped) {
    const bool vamana = ix->params.kind == ROTOR_INDEX_VAMANA;
    const bool ivf = ix->params.kind == ROTOR_INDEX_IVF;
    const uint32_t *outer = vamana ? LISTS : ivf ? PROBES : NULL;
    size_t nouter = vamana ? COUNT_OF(LISTS) : ivf ? COUNT_OF(PROBES) : 1;
    uint32_t every_list[1];
    if (ivf && set->all_lists) {
        nav_stats ns;
        const graph_space space = ix_space(ix);
        ix->nav->ops->stats(ix->nav, &space, &ns);
        every_list[0] = (uint32_t)ns.partitions;
        outer = every_list;
        nouter = 1;
    }
    const size_t nrerank = ix->q != NULL ? COUNT_OF(RERANKS) : 1;
    rotor_calibration_row *rows =
        cm_alloc(&ix->alloc, nouter * nrerank * sizeof *rows, "calibration table");
    if (rows == NULL)
        return ROTOR_ERR_OUT_OF_MEMORY;
    const float stop = stop_at > 0 ? stop_at : CALIB_TOP;
    size_t n = 0;
    float prev_best = -1;
    /* The depths from this one on that the list holds are measured on
     * one walk, and the rows of the deeper ones kept until the sweep
     * reaches them (200-d word vectors: 12.2 s -> 10.2 s against four
     * depths a walk). */
    bool share = shares_walks(ix, set);
    rotor_calibration_row ahead[COUNT_OF(LISTS)][COUNT_OF(RERANKS)];
    bool have[COUNT_OF(LISTS)][COUNT_OF(RERANKS)] = {{false}};
    rotor_status st = ROTOR_OK;
    double least = INFINITY; /* the cheapest row measured */
    bool over = false;       /* every row left costs more than a win allows */
    *capped = false;
    for (size_t r = 0; r < nrerank && st == ROTOR_OK && !over; r++) {
        const size_t rerank = ix->q != NULL ? RERANKS[r] : 0;
        if (rerank > ix->count)
            break;
        size_t done = 0; /* rows of this depth */
        for (size_t o = 0; o < nouter && st == ROTOR_OK; o++) {
            nav_search_params np = {.rerank = rerank, .neighbors = set->neighbors};
            if (vamana)
                np.list = outer[o];
            if (ivf) {
                nav_stats ns;
                const graph_space space = ix_space(ix);
                ix->nav->ops->stats(ix->nav, &space, &ns);
                if (outer[o] > ns.partitions)
                    break;
                np.nprobe = outer[o];
            }
            if (share && have[o][r]) {
                rows[n] = ahead[o][r];
            } else if (share && outer[o] >= rerank) {
                uint32_t depths[SHARED_DEPTHS];
                size_t nd = 0;
                for (size_t x = r; x < nrerank && nd < SHARED_DEPTHS && RERANKS[x] <= outer[o] &&
                                   RERANKS[x] <= ix->count;
                     x++)
                    depths[nd++] = RERANKS[x];
                np.rerank = depths[nd - 1];
                st = evaluate_at(ix, set, &np, depths, nd, &ahead[o][r]);
                np.rerank = rerank;
                if (st == ROTOR_ERR_UNSUPPORTED) {
                    share = false;
                    st = evaluate(ix, set, &np, &rows[n]);
                } else if (st == ROTOR_OK) {
                    for (size_t d = 0; d < nd; d++)
                        have[o][r + d] = true;
                    rows[n] = ahead[o][r];
                }
            } else {
                st = evaluate(ix, set, &np, &rows[n]);
            }
            if (st != ROTOR_OK)
                break;
            const float got = rows[n++].recall;
            done++;
            least = fmin(least, rows[n - 1].cost_ns);
            if (rows[n - 1].cost_ns > beat * beat / least) {
                *capped = true;
                over = done == 1;
                break;
            }
            if (got >= stop)
                break;
            /* A longer list that found nothing more for three steps has
             * reached what this rerank depth allows. */
            if (done >= 4 && got <= rows[n - 4].recall + SAME_RECALL)
                break;
            /* The next depth, measured on the same walk, costs next to
             * nothing more and finds more: this depth's longer lists
             * cannot be cheaper by more than that for their recall, and
             * the next depth's sweep, which takes over, searches only
             * the queries this one did not answer (answered()). On the
             * 100-d word vectors a rerank of 10 stopped at L 16 instead
             * of 512. */
            if (share && r + 1 < nrerank && have[o][r + 1] &&
                ahead[o][r + 1].cost_ns <= rows[n - 1].cost_ns * (1 + DEEPER_COST) &&
                ahead[o][r + 1].recall > got + SAME_RECALL)
                break;
        }
        /* A deeper rerank that adds nothing over the last one: the codes
         * are not what limits recall, deeper ones will not help either. */
        if (st == ROTOR_OK && r > 0 && n > 0 && !over &&
            best_recall(rows, n) <= prev_best + SAME_RECALL)
            break;
        prev_best = best_recall(rows, n);
        /* A deeper rerank that already reached the goal at the smallest
         * list only costs more. */
        if (n > 0 && rows[n - 1].recall >= stop &&
            (rows[n - 1].list_size == LISTS[0] || rows[n - 1].nprobe == PROBES[0] || !outer))
            break;
    }
    if (st != ROTOR_OK) {
        cm_free(&ix->alloc, rows);
        return st;
    }
    *out = rows;
    *nout = n;
    return ROTOR_OK;
}

/* The knobs measured beside the sweep's grid. */
typedef enum { KNOB_REFINE, KNOB_NEIGHBORS, KNOB_STARTS } knob;

/* Each setting the sweep keeps (the frontier of cost and recall) measured
 * again with other values of one knob. The table grows to hold them. */
static rotor_status sweep_knob(const rotor_index *ix, tune_set *set, const uint32_t *values,
                               size_t nvalues, knob kn, rotor_calibration_row **table, size_t *n) {
    if (*n == 0)
        return ROTOR_OK;
    const size_t kept = keep_frontier(*table, *n);
    rotor_calibration_row *rows =
        cm_alloc(&ix->alloc, kept * (1 + nvalues) * sizeof *rows, "calibration table");
    if (rows == NULL)
        return ROTOR_ERR_OUT_OF_MEMORY;
    memcpy(rows, *table, kept * sizeof *rows);
    cm_free(&ix->alloc, *table);
    *table = rows;
    bool *grouped = cm_calloc(&ix->alloc, kept * sizeof *grouped, "calibration rows");
    if (grouped == NULL)
        return ROTOR_ERR_OUT_OF_MEMORY;
    /* The kept rows of one list whose depths it holds share their walks,
     * as in the sweep. Every setting is measured with every value: fewer
     * starting points pay more than the cost model says, at short lists
     * and long ones (a start in the list is a node the walk may expand):
     * 25-d word vectors at L 20 ran 14 % faster with 64 than with 256,
     * Debian SIFT at L 256 13 % faster, where the model priced the
     * default's scoring at 1-5 % of the search. */
    bool share = kn != KNOB_REFINE && shares_walks(ix, set);
    rotor_status st = ROTOR_OK;
    size_t m = kept;
    /* A setting dearer than the cheapest row promising CALIB_TOP gets no
     * variants: its recall is past what searches ask for but rarely, and
     * its walks are the longest. */
    double top = INFINITY;
    for (size_t i = 0; i < kept && top == INFINITY; i++)
        if (rows[i].recall_low >= CALIB_TOP)
            top = rows[i].cost_ns;
    for (size_t i = 0; i < kept && st == ROTOR_OK && rows[i].cost_ns <= top; i++) {
        if (grouped[i])
            continue;
        size_t group[SHARED_DEPTHS], ng = 0;
        const rotor_calibration_row *lead = &rows[i];
        for (size_t j = i; j < kept && ng < SHARED_DEPTHS && (j == i || share); j++) {
            const rotor_calibration_row *r = &rows[j];
            if (j == i || (!grouped[j] && r->list_size == lead->list_size &&
                           r->start_points == lead->start_points && r->refine == lead->refine &&
                           r->max_neighbors == lead->max_neighbors && r->rerank <= r->list_size &&
                           lead->rerank <= lead->list_size)) {
                /* Ascending depths. */
                size_t at = ng++;
                for (; at > 0 && rows[group[at - 1]].rerank > r->rerank; at--)
                    group[at] = group[at - 1];
                group[at] = j;
                grouped[j] = true;
            }
        }
        uint32_t depths[SHARED_DEPTHS];
        for (size_t g = 0; g < ng; g++)
            depths[g] = rows[group[g]].rerank;
        const size_t nd = ng;
        for (size_t v = 0; v < nvalues && st == ROTOR_OK; v++) {
            nav_search_params np = {.list = lead->list_size,
                                    .rerank = depths[nd - 1],
                                    .refine = lead->refine,
                                    .starts = lead->start_points,
                                    .neighbors = lead->max_neighbors};
            /* A multiple of the rerank; below it there is nothing to
             * refine. */
            if (kn == KNOB_REFINE)
                np.refine = values[v] * lead->rerank;
            else if (kn == KNOB_NEIGHBORS)
                np.neighbors = values[v];
            else
                np.starts = values[v];
            st = nd > 1 ? evaluate_at(ix, set, &np, depths, nd, &rows[m])
                        : evaluate(ix, set, &np, &rows[m]);
            if (st == ROTOR_ERR_UNSUPPORTED) {
                share = false;
                for (size_t d = 0; d < nd && (d == 0 || st == ROTOR_OK); d++) {
                    np.rerank = depths[d];
                    st = evaluate(ix, set, &np, &rows[m + d]);
                }
            }
            for (size_t d = 0; d < nd && st == ROTOR_OK; d++)
                if (rows[m + d].recall_low >= CALIB_TOP)
                    top = fmin(top, rows[m + d].cost_ns);
            m += nd;
        }
    }
    cm_free(&ix->alloc, grouped);
    CM_FORWARD(st);
    *n = m;
    return ROTOR_OK;
}

/* How deep a walk on other codes refines: the sweep above measures the
 * search's default, four times the rerank, and each setting it keeps is
 * measured again at two and one times. The walk keeps a pool of that
 * many of its best estimates when the list is shorter, and estimates each
 * again: at L = 32 and rerank 30 (SIFT-like 1M, binary walk, sq8 refine)
 * 120 cost 1.4x the time of 30 for recall 0.960 against 0.888, and L = 40
 * with 60 reached 0.956 at 1.24x the QPS of L = 32 with 120. */
static const uint32_t REFINE_TIMES[] = {2, 1};

/* Starting points scored before a walk. The sweep above scores the
 * search's default (256); each setting it keeps is measured again with
 * fewer and with more: a short list on a small graph spends much of its
 * time scoring them (Fashion-MNIST, L = 8: 32 scored ran 1.2x the QPS of
 * 256 at the same recall), while a large graph needs more to find the
 * query's region (768-d, 500,000 points: 0.936 -> 0.963 at L = 10).
 * Recall and cost move smoothly with the count, so the two ends are
 * measured and not the counts between: 64 and 128 took 1.5 s of the 100-d
 * word vectors' 10.6 s calibration (one thread), and without them the
 * cheapest rows at 0.90-0.998 of six sets were the same or at most 3 %
 * dearer (modelled). */
static const uint32_t STARTS[] = {32, 512};

/* A graph this wide is calibrated at half its width, reading the first
 * half of each list, and each setting kept is measured again reading
 * all of it: a list begins with its prune's picks, in the order it kept
 * them, so the first half is much what a graph of that degree would hold.
 * Reading every neighbour pays at high recall on hard data (200-d word
 * vectors, sq8: 0.99 at L 96 on a graph of degree 64 against L 224 at 32,
 * 1.4x the QPS) and costs below it (0.90: 0.92x), where the first half
 * walks as a graph of degree 32 does (the same recall within 0.002 at
 * every list on the word vectors and Debian SIFT). The grid at half the
 * width costs what it cost on a graph of degree 32; every setting it keeps
 * is then measured reading whole lists, and the starting points' variants
 * of the settings kept after that, at either width. */
enum { WIDE_DEGREE = 64 };

/* The neighbours a calibration's grid reads of each list: half of a wide
 * graph's (sweep_variants measures whole lists), else all. */
static uint32_t grid_neighbors(const rotor_index *ix) {
    if (ix->params.kind != ROTOR_INDEX_VAMANA)
        return 0;
    nav_stats ns;
    const graph_space space = ix_space(ix);
    ix->nav->ops->stats(ix->nav, &space, &ns);
    return ns.degree >= WIDE_DEGREE ? ns.degree / 2 : 0;
}

/* The knobs in turn, each on the settings the one before kept. Whole
 * lists before the starting points: measured after them, a wide graph's
 * whole lists were walked once for every number of starting points the
 * half-width rows kept at a list (four at most lists), and up to lists
 * whose recall no search asks for. On Debian SIFT's first 100,000 (sq8,
 * degree 64, one thread) the calibration took 20.2 s, of it 7.4 s whole
 * lists and 7.9 s starting points; in this order and with sweep_knob's
 * top, 10.3 s (1.2 s and 4.7 s), and searches by recall 0.90-0.999 took
 * the same lists and widths. */
static rotor_status sweep_variants(const rotor_index *ix, tune_set *set,
                                   rotor_calibration_row **table, size_t *n) {
    if (ix->params.kind != ROTOR_INDEX_VAMANA || *n == 0)
        return ROTOR_OK;
    if (refines(ix))
        CM_FORWARD(
            sweep_knob(ix, set, REFINE_TIMES, COUNT_OF(REFINE_TIMES), KNOB_REFINE, table, n));
    if (set->neighbors != 0) {
        const uint32_t all = 0;
        CM_FORWARD(sweep_knob(ix, set, &all, 1, KNOB_NEIGHBORS, table, n));
    }
    nav_stats ns;
    const graph_space space = ix_space(ix);
    ix->nav->ops->stats(ix->nav, &space, &ns);
    /* As many as the index keeps: the default already scores them. A walk
     * on full vectors scores none. */
    size_t nstarts = 0;
    while (ix->q != NULL && nstarts < COUNT_OF(STARTS) && STARTS[nstarts] < ns.start_points)
        nstarts++;
    if (nstarts > 0)
        CM_FORWARD(sweep_knob(ix, set, STARTS, nstarts, KNOB_STARTS, table, n));
    return ROTOR_OK;
}

/* ---- the calibration table ------------------------------------------------ */

void ix_tuning_free(rotor_index *ix) {
    cm_free(&ix->alloc, ix->tuning.row);
    cm_free(&ix->alloc, ix->tuning.candidate);
    memset(&ix->tuning, 0, sizeof ix->tuning);
}

/* Rows [0, count) sampled without repeats, seeded: the first `n` of a
 * partial shuffle. */
static rotor_status sample_rows(const rotor_allocator *a, size_t count, size_t n, uint64_t seed,
                                uint32_t **out) {
    uint32_t *all = cm_alloc(a, count * sizeof *all, "sampled rows");
    if (all == NULL)
        return ROTOR_ERR_OUT_OF_MEMORY;
    for (size_t i = 0; i < count; i++)
        all[i] = (uint32_t)i;
    uint64_t rng = seed ^ 0x7475e3ULL;
    for (size_t i = 0; i < n && i + 1 < count; i++) {
        size_t j = i + (size_t)(cm_splitmix64(&rng) % (count - i));
        uint32_t t = all[i];
        all[i] = all[j];
        all[j] = t;
    }
    *out = all;
    return ROTOR_OK;
}

/* The first `n` live rows of a sample drawn as above, over every slot:
 * removed ones are skipped (the sample is a prefix of a shuffle, so the
 * live ones among it are a uniform sample of the live). */
static rotor_status sample_live_rows(const rotor_index *ix, size_t n, uint32_t **out) {
    CM_FORWARD(sample_rows(&ix->alloc, ix->count, ix->count, ix->params.seed, out));
    uint32_t *all = *out;
    size_t m = 0;
    for (size_t i = 0; i < ix->count && m < n; i++)
        if (!ix_is_deleted(ix, all[i]))
            all[m++] = all[i];
    return ROTOR_OK;
}

rotor_status ix_hold_out(rotor_index *ix, size_t n) {
    /* IVF and flat indexes lose nothing around a row searched as skipped;
     * a graph does: the build pruned its neighbours' edges in its
     * presence, so without it they lack routes it stood for, and recall
     * measured that way falls 0.01 to 0.02 short of queries from outside
     * (SIFT-like 100k and 1M, bin2fs walk + sq8). */
    const size_t nq = n / HOLD_OUT_DIVISOR < CALIB_QUERIES ? n / HOLD_OUT_DIVISOR : CALIB_QUERIES;
    if (ix->params.kind != ROTOR_INDEX_VAMANA || !ix->params.calibrate || nq < HOLD_OUT_MIN)
        return ROTOR_OK;
    const rotor_allocator *a = &ix->alloc;
    uint32_t *rows;
    CM_FORWARD(sample_rows(a, n, nq, ix->params.seed, &rows));
    uint64_t *bits = cm_calloc(a, (n + 63) / 64 * sizeof *bits, "held-out rows");
    if (bits == NULL) {
        cm_free(a, rows);
        return ROTOR_ERR_OUT_OF_MEMORY;
    }
    for (size_t i = 0; i < nq; i++)
        cm_bit_set(bits, rows[i]);
    ix->held = rows;
    ix->nheld = nq;
    ix->held_bits = bits;
    return ROTOR_OK;
}

static rotor_status tune_set_open(const rotor_index *ix, tune_set *set, unsigned threads) {
    cm_pool *pool = cm_alloc(&ix->alloc, sizeof *pool, "calibration pool");
    if (pool == NULL)
        return ROTOR_ERR_OUT_OF_MEMORY;
    rotor_status st =
        cm_pool_start(pool, &ix->alloc, cm_thread_count(threads, set->nq / EVAL_CHUNK + 1));
    if (st != ROTOR_OK) {
        cm_free(&ix->alloc, pool);
        return st;
    }
    const unsigned w = cm_pool_threads(pool);
    set->pool = pool;
    set->slot = cm_calloc(&ix->alloc, w * sizeof *set->slot, "calibration workers");
    set->ids = cm_alloc(&ix->alloc, w * 2 * TUNE_K * sizeof *set->ids, "calibration answers");
    set->walked =
        cm_alloc(&ix->alloc, w * SHARED_MAX_DEPTH * sizeof *set->walked, "calibration candidates");
    set->priced_every = set->nq >= PRICED_MIN ? PRICED_EVERY : 1;
    if (set->slot == NULL || set->ids == NULL || set->walked == NULL)
        return ROTOR_ERR_OUT_OF_MEMORY;
    return ROTOR_OK;
}

static void tune_set_close(const rotor_index *ix, tune_set *set) {
    if (set->pool != NULL) {
        cm_pool_stop(set->pool);
        cm_free(&ix->alloc, set->pool);
    }
    cm_free(&ix->alloc, set->slot);
    cm_free(&ix->alloc, set->ids);
    cm_free(&ix->alloc, set->walked);
    for (size_t x = 0; x < set->ntracks; x++)
        cm_free(&ix->alloc, set->track[x].first);
    set->ntracks = 0;
    set->pool = NULL;
}

typedef struct live_test {
    nav_filter nav; /* first: the filter points at the whole */
    const rotor_index *ix;
} live_test;

static bool is_live(const nav_filter *f, uint32_t u) {
    return !ix_is_deleted(((const live_test *)f)->ix, u);
}

/* How many of `live` rows a calibration without held-out rows searches. */
static size_t self_queries(size_t live) {
    const size_t nq = live / SELF_QUERY_DIVISOR;
    if (nq < HOLD_OUT_MIN)
        return live < HOLD_OUT_MIN ? live : HOLD_OUT_MIN;
    return nq < CALIB_QUERIES ? nq : CALIB_QUERIES;
}

/* Queries a calibration takes in a row from one cluster of them (about
 * eight: a thousand queries make 125 clusters, each a region of the data
 * as wide as a build's cluster of a thousand points on a set of 100,000),
 * and the most clusters (more queries make larger clusters). */
enum { CALIB_QUERIES_A_CLUSTER = 8, CALIB_ORDER_CLUSTERS = 128 };

/* The calibration's queries (and their rows, unless NULL) in an order
 * taken cluster by cluster (km_cluster_order), into new arrays: a search
 * then reads much of what the one before it read, still in cache. The
 * table does not change (its costs are modelled from counts, its recall
 * summed over the queries), only the time it takes. */
static rotor_status order_queries(const rotor_allocator *a, const float *queries,
                                  const uint32_t *rows, size_t nq, size_t dim, unsigned threads,
                                  uint64_t seed, float **q_out, uint32_t **rows_out) {
    uint32_t *perm = cm_alloc(a, nq * sizeof *perm, "calibration order");
    float *q = cm_alloc(a, nq * dim * sizeof *q, "calibration queries");
    uint32_t *r = rows != NULL ? cm_alloc(a, nq * sizeof *r, "calibration rows") : NULL;
    rotor_status st = perm && q && (r || rows == NULL) ? ROTOR_OK : ROTOR_ERR_OUT_OF_MEMORY;
    for (size_t i = 0; st == ROTOR_OK && i < nq; i++)
        perm[i] = (uint32_t)i;
    if (st == ROTOR_OK)
        st = km_cluster_order(a, queries, dim, CALIB_QUERIES_A_CLUSTER, CALIB_ORDER_CLUSTERS,
                              threads, seed, perm, nq);
    if (st == ROTOR_OK) {
        for (size_t i = 0; i < nq; i++) {
            memcpy(q + i * dim, queries + (size_t)perm[i] * dim, dim * sizeof *q);
            if (r != NULL)
                r[i] = rows[perm[i]];
        }
        *q_out = q;
        *rows_out = r;
    } else {
        cm_free(a, q);
        cm_free(a, r);
    }
    cm_free(a, perm);
    return st;
}

rotor_status ix_calibrate(rotor_index *ix, const float *queries, size_t nq, unsigned threads,
                          bool in_build) {
    const double t0 = cm_now();
    /* After the graph: everything is done but this. */
    build_poll poll = {.done = ix->count, .total = ix->count};
    if (in_build) {
        poll.fn = ix->params.progress;
        poll.opaque = ix->params.progress_opaque;
    }
    const rotor_allocator *a = &ix->alloc;
    const float *base = NULL;
    float *widened;
    CM_FORWARD(ix_full_vectors(ix, &base, &widened));
    const uint32_t *rows = NULL; /* the query rows: held out, or sampled */
    uint32_t *sampled = NULL;
    float *own = NULL;
    rotor_status st = ROTOR_OK;
    const bool own_rows = queries == NULL;
    /* A build's held-out rows: no graph edge leads to them, so they are
     * searched as they are (not skipped) and answer for no query. */
    const bool held = own_rows && in_build && ix->held != NULL;
    /* Removed points are neither queries, nor answers, nor results (the
     * searches filter them as any search does; the exact answers, over
     * every slot, by the test below). */
    ix_filter live;
    nav_search_params lp = {0};
    st = ix_filter_compile(ix, NULL, 0, &lp, &live);
    if (st != ROTOR_OK) {
        cm_free(a, widened);
        return st;
    }
    const live_test lt = {{.allows = is_live}, ix};
    if (own_rows) {
        nq = held ? ix->nheld : self_queries(ix_live(ix));
        if (held) {
            rows = ix->held;
        } else {
            st = ix->ndeleted > 0 ? sample_live_rows(ix, nq, &sampled)
                                  : sample_rows(a, ix->count, nq, ix->params.seed, &sampled);
            rows = sampled;
        }
        own =
            st == ROTOR_OK ? cm_alloc(a, nq * ix->dim * sizeof *own, "calibration queries") : NULL;
        if (st == ROTOR_OK && own == NULL)
            st = ROTOR_ERR_OUT_OF_MEMORY;
        for (size_t i = 0; st == ROTOR_OK && i < nq; i++)
            memcpy(own + i * ix->dim, base + (size_t)rows[i] * ix->dim, ix->dim * sizeof *own);
        queries = own;
    }
    float *ordered = NULL;
    uint32_t *ordered_rows = NULL;
    if (st == ROTOR_OK)
        st = order_queries(a, queries, rows, nq, ix->dim, threads, ix->params.seed, &ordered,
                           &ordered_rows);
    if (st == ROTOR_OK) {
        queries = ordered;
        rows = ordered_rows;
    }
    int64_t *gt = st == ROTOR_OK
                      ? cm_alloc(a, nq * (TUNE_K * sizeof *gt + sizeof(float)), "exact neighbours")
                      : NULL;
    float *kth = gt != NULL ? (float *)(gt + nq * TUNE_K) : NULL;
    if (st == ROTOR_OK && gt == NULL)
        st = ROTOR_ERR_OUT_OF_MEMORY;
    if (st == ROTOR_OK)
        st = exact_neighbours(a, base, ix->count, ix->dim, ix->metric, queries, rows,
                              held ? ix->held_bits : NULL, nq, threads,
                              ix->ndeleted > 0 ? &lt.nav : NULL, &poll, TUNE_K, gt, kth);
    /* Rows of bytes are narrowed after the build's calibration. */
    const bool bytes = ix->rows8 != NULL || ix_rows_fit_bytes(ix, base, ix->count);
    tune_set set = {.queries = queries,
                    .self = held ? NULL : rows,
                    .gt = gt,
                    .nq = nq,
                    .scan_scale = 1.0,
                    .prepare_scale = 1.0,
                    .live = lp.filter,
                    .poll = &poll,
                    .base = base,
                    .kth = kth,
                    .bytes = bytes,
                    .neighbors = grid_neighbors(ix)};
    if (st == ROTOR_OK)
        st = tune_set_open(ix, &set, threads);
    rotor_calibration_row *table = NULL;
    size_t n = 0;
    bool capped;
    if (st == ROTOR_OK)
        st = sweep(ix, &set, 0, INFINITY, &table, &n, &capped);
    if (st == ROTOR_OK)
        st = sweep_variants(ix, &set, &table, &n);
    tune_set_close(ix, &set);
    ix_filter_free(&live);
    cm_free(a, gt);
    cm_free(a, own);
    cm_free(a, ordered);
    cm_free(a, ordered_rows);
    cm_free(a, sampled);
    cm_free(a, widened);
    if (st != ROTOR_OK) {
        cm_free(a, table);
        return st;
    }
    /* Measured beside searches; swapped in while they are held. */
    rotor_calibration_row *old = ix->tuning.row;
    const size_t rows_kept = keep_frontier(table, n);
    ix_publish_begin(ix);
    ix->tuning.row = table;
    ix->tuning.rows = rows_kept;
    ix->tuning.k = TUNE_K;
    ix->tuning.queries = (uint32_t)nq;
    ix->tuning.calibration_seconds = cm_now() - t0;
    ix->tuning.rows_as_queries = own_rows;
    ix_publish_end(ix);
    cm_free(a, old);
    return ROTOR_OK;
}

rotor_status ix_recall_settings(const rotor_index *ix, float target, size_t k,
                                nav_search_params *np) {
    const ix_tuning *t = &ix->tuning;
    CM_RETURN_IF(t->rows == 0, ROTOR_ERR_UNSUPPORTED,
                 "this index has no calibration table, so it cannot search by recall: "
                 "calibrate it (rotor tune, rotor_index_tune) or give the search settings");
    const rotor_calibration_row *best = NULL, *top = &t->row[0];
    for (size_t i = 0; i < t->rows; i++) {
        const rotor_calibration_row *r = &t->row[i];
        if (r->recall_low >= target && (best == NULL || r->cost_ns < best->cost_ns))
            best = r;
        if (r->recall_low > top->recall_low)
            top = r;
    }
    CM_RETURN_IF(best == NULL, ROTOR_ERR_UNSUPPORTED,
                 "recall %.3f cannot be promised: the calibration reached at most %.3f "
                 "(recall@%u on %u held-out queries)",
                 (double)target, (double)top->recall_low, t->k, t->queries);
    /* Deeper answers need proportionally deeper lists and reranks. */
    const size_t scale_num = k > t->k ? k : t->k, scale_den = t->k;
    if (np->list == 0 && best->list_size)
        np->list = (best->list_size * scale_num + scale_den - 1) / scale_den;
    if (np->rerank == SIZE_MAX)
        np->rerank = (best->rerank * scale_num + scale_den - 1) / scale_den;
    if (np->refine == 0)
        np->refine = (best->refine * scale_num + scale_den - 1) / scale_den;
    if (np->nprobe == 0)
        np->nprobe = best->nprobe;
    if (np->starts == 0)
        np->starts = best->start_points;
    if (np->neighbors == 0)
        np->neighbors = best->max_neighbors;
    return ROTOR_OK;
}

/* ---- the automatic configuration ------------------------------------------ */

typedef struct candidate {
    const char *quant, *walk; /* walk NULL: walk on quant */
    bool neighbor_codes;
    char qname[32], wname[32];
} candidate;

/* The subspace count nearest d / per dimensions each that divides d, with
 * subspaces of per / 2 to 2 per dimensions and at least two of them; 0 if
 * there is none. */
static size_t pq_subspaces_near(size_t d, size_t per) {
    size_t best = 0, best_gap = SIZE_MAX;
    for (size_t sub = per / 2 > 0 ? per / 2 : 1; sub <= 2 * per; sub++) {
        if (d % sub != 0 || d / sub < 2)
            continue;
        const size_t gap = sub > per ? sub - per : per - sub;
        if (gap < best_gap) {
            best = d / sub;
            best_gap = gap;
        }
    }
    return best;
}

/* The configurations worth measuring for this index. Neighbour codes for
 * the fast-scan codes (a few bits a dimension), and for 8-bit codes only
 * while R of them fit a page: copied R times into every node they cost R/4
 * times the vectors' memory. */
static size_t candidates_for(const rotor_index *ix, candidate *c) {
    const size_t d = ix->dim;
    const bool vamana = ix->params.kind == ROTOR_INDEX_VAMANA;
    const bool disk = ix->params.full_vectors == ROTOR_VECTORS_DISK;
    const bool nbr = vamana && !disk; /* disk mode keeps RAM at graph + codes */
    size_t n = 0;
    if (vamana && !disk)
        c[n++] = (candidate){.quant = "none"};
    c[n++] = (candidate){.quant = "sq8"};
    /* 8-bit codes beside the neighbours' ids while a record stays within a
     * 4 KiB page (up to about 120 dimensions at R = 32). */
    if (vamana && nbr && (size_t)ix->params.graph_degree * (d + 8) <= 4096)
        c[n++] = (candidate){.quant = "sq8", .neighbor_codes = true};
    /* 4-bit PQ at about a half and a quarter byte per dimension: the
     * subspace count must divide the dimension (25 has none near either). */
    size_t last_m = 0;
    for (size_t per = 2; per <= 4; per += 2) {
        const size_t m = pq_subspaces_near(d, per);
        if (m == 0 || m == last_m)
            continue;
        last_m = m;
        c[n] = (candidate){.neighbor_codes = nbr};
        snprintf(c[n].qname, sizeof c[n].qname, "pq%zux4", m);
        c[n].quant = c[n].qname;
        n++;
    }
    if (vamana) {
        c[n++] = (candidate){.quant = "sq8", .walk = "bin2fs", .neighbor_codes = nbr};
        c[n++] = (candidate){.quant = "sq8", .walk = "bin1fs", .neighbor_codes = nbr};
    } else {
        c[n++] = (candidate){.quant = "bin2fs"};
    }
    return n;
}

/* An index over rows `rows` of `sample` (already converted) with params p;
 * its navigator derived from `links` (vamana) or built (other kinds). */
static rotor_status sample_index(const rotor_params *params, const float *rows, size_t n,
                                 size_t dim, const rotor_index *links, rotor_index **out) {
    /* A sample of a few thousand rows builds in one piece whatever the
     * cap: the cap is for the index's own build. */
    rotor_params sp = *params;
    sp.build_memory = 0;
    const rotor_params *p = &sp;
    rotor_index *s;
    CM_FORWARD(ix_create(p, dim, n, &s));
    rotor_status st = ix_reserve(s, n);
    if (st == ROTOR_OK) {
        memcpy(s->vectors, rows, n * dim * sizeof(float));
        if (links == NULL) {
            st = ix_index_rows(s, n);
        } else {
            st = ix_encode_rows(s, n);
            nav *derived = NULL;
            if (st == ROTOR_OK) {
                graph_space space = ix_space(s);
                space.count = n;
                const nav_params np = ix_nav_params(p, s->q != NULL, n);
                st = links->nav->ops->derive(links->nav, &s->alloc, &np, &space, &derived);
            }
            if (st == ROTOR_OK) {
                s->nav->ops->free(s->nav);
                s->nav = derived;
                s->count = n;
            }
        }
    }
    if (st != ROTOR_OK) {
        rotor_index_close(s);
        return st;
    }
    *out = s;
    return ROTOR_OK;
}

/* The automatic choice weighs each candidate at the target and at this
 * recall too. The sample is a small graph, where coarse codes reach a
 * recall with shallow reranks that the full index needs far deeper: on
 * the 768-d set pq192x4 reached 0.95 on a 10,000-row sample at rerank 20
 * and looked cheaper than a binary walk refined with sq8, but the 200,000
 * row index needed rerank 60 there and ran at 0.67-0.72x the binary
 * walk's QPS. What a code needs for 0.99 on the sample shows how well it
 * ranks; a code that cannot reach it is not chosen (users ask for
 * 0.99 too). */
#define AUTO_HIGH_RECALL 0.99f

/* The cheapest row reaching `target`, or NULL. */
static const rotor_calibration_row *cheapest(const rotor_calibration_row *r, size_t n,
                                             float target) {
    const rotor_calibration_row *best = NULL;
    for (size_t i = 0; i < n; i++)
        if (r[i].recall >= target && (best == NULL || r[i].cost_ns < best->cost_ns))
            best = &r[i];
    return best;
}

/* The rows the automatic choice measures on: the nearest sn / nq rows of
 * all n to each of the nq held-out queries (pick holds sn uniform rows
 * and then the queries; on return its first sn rows are the sample). A
 * uniform sample is sn / n as dense as the input, and codes rank easily
 * there: on SIFT-like 1M a 2-bit walk needed 1.3x the list of sq8 own
 * codes on 20,000 uniform rows but 2.5-3x on the full graph, where it ran
 * at 0.7-0.8x their QPS, and pq192x4 looked as good as a 1-bit walk on the
 * 768-d set and ran at 0.7x. Around the queries the sample is as dense as
 * the input, where recall is measured, and those gaps show: the same
 * 768-d set with half the sample so drawn (the rest uniform) still chose
 * pq192x4. Neighbourhoods that overlap leave room for uniform rows. */
static rotor_status sample_neighbourhoods(const rotor_index *ix, size_t n, size_t sn, size_t nq,
                                          uint32_t *pick, build_poll *poll) {
    const rotor_allocator *a = &ix->alloc;
    const size_t each = sn / nq;
    if (each == 0)
        return ROTOR_OK;
    float *q = cm_alloc(a, nq * ix->dim * sizeof *q, "sample queries");
    int64_t *near = cm_alloc(a, nq * each * sizeof *near, "sample neighbourhoods");
    uint64_t *taken = cm_calloc(a, (n + 63) / 64 * sizeof *taken, "sample rows");
    uint32_t *out = cm_alloc(a, sn * sizeof *out, "sample rows");
    rotor_status st = q && near && taken && out ? ROTOR_OK : ROTOR_ERR_OUT_OF_MEMORY;
    for (size_t i = 0; st == ROTOR_OK && i < nq; i++) {
        memcpy(q + i * ix->dim, ix->vectors + (size_t)pick[sn + i] * ix->dim, ix->dim * sizeof *q);
        cm_bit_set(taken, pick[sn + i]); /* no query in the sample */
    }
    if (st == ROTOR_OK)
        st = exact_neighbours(a, ix->vectors, n, ix->dim, ix->metric, q, pick + sn, NULL, nq,
                              ix->params.threads, NULL, poll, each, near, NULL);
    size_t m = 0;
    for (size_t i = 0; st == ROTOR_OK && i < nq * each; i++)
        if (near[i] >= 0 && !cm_bit_get(taken, (size_t)near[i])) {
            cm_bit_set(taken, (size_t)near[i]);
            out[m++] = (uint32_t)near[i];
        }
    for (size_t i = 0; st == ROTOR_OK && i < sn && m < sn; i++)
        if (!cm_bit_get(taken, pick[i])) {
            cm_bit_set(taken, pick[i]);
            out[m++] = pick[i];
        }
    if (st == ROTOR_OK) /* m == sn: sn uniform rows besides the queries */
        memcpy(pick, out, sn * sizeof *pick);
    cm_free(a, q);
    cm_free(a, near);
    cm_free(a, taken);
    cm_free(a, out);
    return st;
}

/* What a rerank of the sample's IVF costs beyond its price at the
 * sample's depth, at the depth it stands for in the full index. Each
 * query's nearest rows are in the sample (sample_neighbourhoods), but
 * past them the sample holds about sn of the n rows, so the estimates
 * ranked there stand for n / sn times as many: on 100-d word vectors
 * pq25x4 reached 0.988 at rerank 60 on the sample and needed 320-480 on
 * the index, where pq50x4 ran 1.3-1.4x its QPS; priced so, pq25x4 is no
 * longer chosen. The graph's walk stays as it was measured: its lists
 * and reranks go together there. */
static double full_rerank_ns(const rotor_index *ix, const rotor_calibration_row *row, size_t n,
                             size_t sn, size_t nq, bool disk, bool bytes) {
    const double near = (double)(sn / nq), depth = (double)row->rerank;
    if (depth <= near || sn == 0)
        return 0;
    const double full = near + (depth - near) * (double)n / (double)sn;
    const double per =
        (disk ? NS_DISK_READ : vector_read_ns((double)n, ix->dim, bytes)) + row_ns(ix->dim, bytes);
    return (full - depth) * per;
}

rotor_status ix_auto_configure(rotor_index *ix, size_t n, char *quant_out, size_t quant_size,
                               char *walk, size_t walk_size, bool *neighbor_codes) {
    const double t0 = cm_now();
    const rotor_allocator *a = &ix->alloc;
    ix_tuning *t = &ix->tuning;
    candidate cand[MAX_CANDIDATES];
    const size_t ncand = candidates_for(ix, cand);
    const bool disk = ix->params.full_vectors == ROTOR_VECTORS_DISK;
    t->target_recall = ix->params.target_recall;
    const float high = t->target_recall > AUTO_HIGH_RECALL ? t->target_recall : AUTO_HIGH_RECALL;
    snprintf(quant_out, quant_size, "%s", disk ? "sq8" : "none");
    walk[0] = '\0';
    *neighbor_codes = false;
    if (ix->params.kind == ROTOR_INDEX_FLAT)
        return ROTOR_OK; /* exact by definition */
    if (ix->params.kind == ROTOR_INDEX_IVF)
        snprintf(quant_out, quant_size, "sq8");
    if (n < AUTO_MIN_ROWS)
        return ROTOR_OK;

    size_t sn = n / SAMPLE_DIVISOR;
    sn = sn < SAMPLE_MIN ? SAMPLE_MIN : sn > SAMPLE_MAX ? SAMPLE_MAX : sn;
    size_t nq = SAMPLE_QUERIES;
    /* Its graph is quick: with the larger sample the build stayed within
     * 1.2x of the one given the winning flags (Fashion-MNIST, 40,000 word
     * definitions). */
    const size_t room = nq * SAMPLE_NEIGHBOURHOOD;
    if (sn < room && sn < n / 10)
        sn = room < n / 10 ? room : n / 10;
    if (sn + nq > n)
        sn = n - nq;
    uint32_t *pick;
    CM_FORWARD(sample_rows(a, n, sn + nq, ix->params.seed ^ 0xa070ULL, &pick));
    float *rows = cm_alloc(a, (sn + nq) * ix->dim * sizeof *rows, "configuration sample");
    int64_t *gt = cm_alloc(a, nq * (TUNE_K * sizeof *gt + sizeof(float)), "exact neighbours");
    float *kth = gt != NULL ? (float *)(gt + nq * TUNE_K) : NULL;
    t->candidate = cm_calloc(a, ncand * sizeof *t->candidate, "configuration candidates");
    rotor_status st = rows && gt && t->candidate ? ROTOR_OK : ROTOR_ERR_OUT_OF_MEMORY;
    /* Before the graph: nothing of the n rows is indexed yet. */
    build_poll poll = {ix->params.progress, ix->params.progress_opaque, 0, n, 0};
    if (st == ROTOR_OK)
        st = sample_neighbourhoods(ix, n, sn, nq, pick, &poll);
    for (size_t i = 0; st == ROTOR_OK && i < sn + nq; i++)
        memcpy(rows + i * ix->dim, ix->vectors + (size_t)pick[i] * ix->dim, ix->dim * sizeof *rows);
    const float *queries = rows + sn * ix->dim;
    if (st == ROTOR_OK)
        st = exact_neighbours(a, rows, sn, ix->dim, ix->metric, queries, NULL, NULL, nq,
                              ix->params.threads, NULL, &poll, TUNE_K, gt, kth);

    /* One graph on the sample, on one thread so it is the same every time. */
    rotor_params sp = ix->params;
    sp.quant = "none";
    sp.walk_quant = NULL;
    sp.threads = 1;
    sp.calibrate = 0;
    sp.progress = poll.fn != NULL ? sample_progress : NULL;
    sp.progress_opaque = &poll;
    sp.full_vectors = ROTOR_VECTORS_RAM;
    const bool vamana = ix->params.kind == ROTOR_INDEX_VAMANA;
    /* The index will keep rows of bytes; the sample holds them as floats. */
    const bool bytes = ix_rows_fit_bytes(ix, ix->vectors, n);
    /* IVF: a sample IVF probed whole, a scan of every code of its lists,
     * which hold residuals to its centroids as the index's will: codes of
     * whole rows rank otherwise (on 100-d word vectors pq50x4 needed a
     * rerank of 120 to reach 0.95 on whole rows, 40 in residual lists). */
    rotor_index *links = NULL;
    if (st == ROTOR_OK && vamana)
        st = sample_index(&sp, rows, sn, ix->dim, NULL, &links);

    double best_cost = INFINITY;
    size_t chosen = ncand;
    /* The first candidate's sample with starting points: the later ones
     * derive from it and take its groups of them (vamana_derive). */
    rotor_index *grouped = NULL;
    for (size_t c = 0; st == ROTOR_OK && c < ncand; c++) {
        rotor_auto_candidate *rc = &t->candidate[c];
        snprintf(rc->quant, sizeof rc->quant, "%s", cand[c].quant);
        snprintf(rc->walk_quant, sizeof rc->walk_quant, "%s", cand[c].walk ? cand[c].walk : "");
        rc->neighbor_codes = cand[c].neighbor_codes;
        rotor_params cp = sp;
        cp.quant = cand[c].quant;
        cp.walk_quant = cand[c].walk;
        cp.neighbor_codes = cand[c].neighbor_codes;
        cp.threads = ix->params.threads; /* encoding and training repeat on any count */
        rotor_index *s = NULL;
        st = poll_stop(&poll) ? cancelled()
                              : sample_index(&cp, rows, sn, ix->dim, grouped ? grouped : links, &s);
        if (st != ROTOR_OK)
            break;
        tune_set set = {.queries = queries,
                        .gt = gt,
                        .nq = nq,
                        .scan_scale = 1.0,
                        .prepare_scale = 1.0,
                        .all_lists = !vamana,
                        .rows = n,
                        .poll = &poll,
                        .base = rows,
                        .kth = kth,
                        .bytes = bytes};
        if (!vamana) { /* an IVF scan reads about 4 sqrt(n) codes, not the sample */
            set.scan_scale = fmin(1.0, 4.0 * sqrt((double)n) / (double)sn);
            nav_stats ns = {0};
            const graph_space space = ix_space(s);
            s->nav->ops->stats(s->nav, &space, &ns);
            const double lists =
                ix->params.nlist ? ix->params.nlist : ivf_default_lists(n, ix->metric);
            if (ns.partitions > 0)
                set.prepare_scale =
                    set.scan_scale * (double)sn * lists / (double)n / (double)ns.partitions;
        }
        rotor_calibration_row *r = NULL;
        size_t nr = 0;
        bool capped = false;
        st = tune_set_open(s, &set, ix->params.threads);
        /* Costs the sweep sees are final only for a graph in memory (an
         * IVF's and a disk mode's reranks are priced after it). */
        if (st == ROTOR_OK)
            st = sweep(s, &set, high, vamana && !disk ? best_cost : INFINITY, &r, &nr, &capped);
        /* A walk on other codes at the refine depths a search by recall
         * may take. */
        if (st == ROTOR_OK && refines(s))
            st = sweep_knob(s, &set, REFINE_TIMES, COUNT_OF(REFINE_TIMES), KNOB_REFINE, &r, &nr);
        tune_set_close(s, &set);
        if (st == ROTOR_OK) {
            /* The sample's reranks read memory; in disk mode each is a
             * read from the disk. */
            const double extra = NS_DISK_READ - vector_read_ns((double)n, ix->dim, bytes);
            if (disk)
                for (size_t i = 0; i < nr; i++)
                    r[i].cost_ns += (float)(r[i].rerank * extra);
            if (!vamana)
                for (size_t i = 0; i < nr; i++)
                    r[i].cost_ns += (float)full_rerank_ns(ix, &r[i], n, sn, nq, disk, bytes);
            const rotor_calibration_row *b = cheapest(r, nr, ix->params.target_recall);
            const rotor_calibration_row *h = cheapest(r, nr, high);
            if (b != NULL && h != NULL) {
                rc->list_size = vamana ? b->list_size : 0; /* IVF: scanned whole */
                rc->rerank = b->rerank;
                rc->recall = b->recall;
                rc->cost_ns = (float)sqrt((double)b->cost_ns * (double)h->cost_ns);
                if (rc->cost_ns < best_cost) {
                    best_cost = rc->cost_ns;
                    chosen = c;
                }
            } else {
                for (size_t i = 0; i < nr; i++)
                    rc->recall = r[i].recall > rc->recall ? r[i].recall : rc->recall;
                if (capped)
                    rc->cost_ns = (float)-best_cost;
            }
        }
        cm_free(a, r);
        nav_stats ns = {0};
        if (vamana && grouped == NULL) {
            const graph_space space = ix_space(s);
            s->nav->ops->stats(s->nav, &space, &ns);
        }
        if (ns.start_groups > 0)
            grouped = s;
        else
            rotor_index_close(s);
    }
    rotor_index_close(grouped);
    /* None reached the target: the most accurate. */
    if (st == ROTOR_OK && chosen == ncand) {
        float top = -1;
        for (size_t c = 0; c < ncand; c++)
            if (t->candidate[c].recall > top) {
                top = t->candidate[c].recall;
                chosen = c;
            }
    }
    rotor_index_close(links);
    cm_free(a, rows);
    cm_free(a, gt);
    cm_free(a, pick);
    if (st != ROTOR_OK) {
        cm_free(a, t->candidate);
        t->candidate = NULL;
        return st;
    }
    t->candidate[chosen].chosen = 1;
    t->candidates = ncand;
    t->sample = sn;
    t->sample_queries = nq;
    snprintf(quant_out, quant_size, "%s", cand[chosen].quant);
    snprintf(walk, walk_size, "%s", cand[chosen].walk ? cand[chosen].walk : "");
    *neighbor_codes = cand[chosen].neighbor_codes;
    t->auto_seconds = cm_now() - t0;
    return ROTOR_OK;
}

/* ---- public entry points --------------------------------------------------- */

rotor_status rotor_index_tuning(const rotor_index *ix, rotor_tuning *out) {
    cm_clear_error();
    CM_RETURN_IF(ix == NULL || out == NULL, ROTOR_ERR_INVALID_ARGUMENT,
                 "index and output must not be NULL");
    ix_read_begin(ix);
    const ix_tuning *t = &ix->tuning;
    *out = (rotor_tuning){
        .k = t->k,
        .queries = t->queries,
        .rows = t->rows,
        .row = t->row,
        .calibration_seconds = t->calibration_seconds,
        .rows_as_queries = t->rows_as_queries,
        .target_recall = t->target_recall,
        .sample = t->sample,
        .sample_queries = t->sample_queries,
        .auto_seconds = t->auto_seconds,
        .candidates = t->candidates,
        .candidate = t->candidate,
    };
    ix_read_end(ix);
    return ROTOR_OK;
}

static rotor_status tune_locked(rotor_index *ix, const rotor_matrix *queries, uint32_t threads) {
    CM_RETURN_IF(ix_live(ix) == 0, ROTOR_ERR_EMPTY, "an empty index has nothing to calibrate");
    if (queries == NULL)
        return ix_calibrate(ix, NULL, 0, threads, false);
    float *q = cm_alloc(&ix->alloc, queries->rows * ix->dim * sizeof *q, "calibration queries");
    if (q == NULL)
        return ROTOR_ERR_OUT_OF_MEMORY;
    rotor_status st = ix_convert_rows(queries, ix->metric, q, "calibration queries");
    if (st == ROTOR_OK)
        st = ix_calibrate(ix, q, queries->rows, threads, false);
    cm_free(&ix->alloc, q);
    return st;
}

/* A writer: its searches run beside other searches, the table is
 * swapped in at the end. */
rotor_status rotor_index_tune(rotor_index *ix, const rotor_matrix *queries, uint32_t threads) {
    cm_clear_error();
    CM_RETURN_IF(ix == NULL, ROTOR_ERR_INVALID_ARGUMENT, "index must not be NULL");
    if (queries != NULL) {
        CM_FORWARD(ix_matrix_check(queries, "calibration queries"));
        CM_RETURN_IF(queries->cols != ix->dim, ROTOR_ERR_DIMENSION,
                     "calibration queries have %zu dimensions, index has %zu", queries->cols,
                     ix->dim);
    }
    ix_write_begin(ix);
    const rotor_status st = tune_locked(ix, queries, threads);
    ix_write_end(ix);
    return st;
}

rotor_status rotor_search_params_for_recall(const rotor_index *ix, float recall, size_t k,
                                            rotor_search_params *sp) {
    cm_clear_error();
    CM_RETURN_IF(ix == NULL || sp == NULL, ROTOR_ERR_INVALID_ARGUMENT,
                 "index and params must not be NULL");
    CM_RETURN_IF(!(recall > 0 && recall <= 1), ROTOR_ERR_INVALID_ARGUMENT,
                 "recall must be above 0 and at most 1, not %g", (double)recall);
    CM_RETURN_IF(k == 0, ROTOR_ERR_INVALID_ARGUMENT, "k must be at least 1");
    sp->target_recall = 0;
    if (ix->q == NULL && ix->params.kind == ROTOR_INDEX_FLAT)
        return ROTOR_OK; /* exact */
    nav_search_params np = {
        .list = sp->list_size,
        .rerank = sp->rerank < 0 ? SIZE_MAX : (size_t)sp->rerank,
        .refine = sp->refine,
        .nprobe = sp->nprobe,
        .starts = sp->start_points,
        .neighbors = sp->max_neighbors,
    };
    ix_read_begin(ix);
    const rotor_status st = ix_recall_settings(ix, recall, k, &np);
    ix_read_end(ix);
    CM_FORWARD(st);
    sp->list_size = (uint32_t)np.list;
    if (sp->rerank < 0 && np.rerank != SIZE_MAX)
        sp->rerank = (int64_t)np.rerank;
    sp->refine = (uint32_t)np.refine;
    sp->nprobe = (uint32_t)np.nprobe;
    sp->start_points = (uint32_t)np.starts;
    sp->max_neighbors = (uint32_t)np.neighbors;
    return ROTOR_OK;
}
