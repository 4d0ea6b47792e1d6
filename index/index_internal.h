/*
 * index/ — the public API: ties a quantizer, a navigator (graph/nav_ops,
 * whatever its kind) and a vector store into one rotor_index. This header
 * is the only place where struct rotor_index is complete. Private to the
 * library.
 *
 *   index.c       build, add, stats, reconstruct, estimate, close
 *   search.c      single and batch search, the rerank from disk
 *   params.c      defaults and validation
 *   save.c        rotor_index_save
 *   open.c        rotor_index_open and rotor_index_verify
 *   build_file.c  the streaming build of a file into an index file
 *   keys.c        user keys: the slot of a key, the key of a slot, the keys section
 *   remove.c      remove, update, consolidate; the deleted section
 *   sync.c        searches beside writers: the index's two locks
 *   log.c         the update log: changes of an index opened writable
 *                 appended to its file, replayed at open
 */
#ifndef ROTOR_INDEX_INTERNAL_H
#define ROTOR_INDEX_INTERNAL_H

#include <float.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/common.h"
#include "graph/graph.h"
#include "quant/quant.h"
#include "simd/simd.h"
#include "storage/storage.h"

/* What the index measured about itself (tune.c): the calibration table
 * and the automatic configuration's candidates, saved in the tuning
 * section. */
typedef struct ix_tuning {
    uint32_t k, queries;
    rotor_calibration_row *row;
    size_t rows;
    double calibration_seconds;
    bool rows_as_queries;
    float target_recall;
    size_t sample, sample_queries;
    double auto_seconds;
    rotor_auto_candidate *candidate;
    size_t candidates;
} ix_tuning;

/* Labels (labels.c): each point's set, compressed rows over points
 * [0, rows) (later points carry none), and the inverted lists a filter
 * starts from and a filtered scan enumerates. Memory of the index's own,
 * also for a mapped file (read and checked at open). */
typedef struct ix_labels {
    size_t rows;
    uint64_t *off;      /* rows + 1 */
    uint32_t *val;      /* off[rows]: each row's labels ascending, each once */
    size_t nlabels;     /* distinct labels */
    uint32_t *label;    /* nlabels, ascending */
    uint64_t *post_off; /* nlabels + 1 */
    uint32_t *post;     /* off[rows]: each label's points ascending */
    size_t labelled;    /* points with at least one label */
    /* Per point, bit (label % 64) of each label it carries: a filter's
     * test reads one word instead of the rows, and when every label is
     * below 64 (exact) the word is the whole answer. */
    uint64_t *sig; /* rows */
    bool exact_sig;
    /* The bits of sig that more than one label sets: a filter whose labels
     * all have bits of their own is answered by the word alone. */
    uint64_t shared_bits;
    /* A mask of signature bits every point was found to carry one of, and
     * one some point lacks: what the last "any of" filters whose counts
     * allowed everything learnt (filter.c), kept so that the points are
     * read once per mask and set of labels. Zero: none known. */
    _Atomic uint64_t covered_by, not_covered_by;
} ix_labels;
/* User keys (keys.c). Navigators, codes and vectors know a vector by its
 * slot, its row number; the public API knows it by its key. While every
 * key is its slot nothing is kept (`key` NULL): the identity costs no
 * memory and no lookup. The first other key materialises `key` (slot ->
 * key) and the hash table (key -> slot): open addressing with linear
 * probing over a power-of-two number of buckets, each holding a slot or
 * IX_NO_SLOT, the key compared through `key`, so a bucket is 4 bytes. */
typedef struct ix_keys {
    int64_t *key; /* room for `cap` slots; NULL: every key is its slot */
    size_t cap;
    uint32_t *table; /* `buckets` entries, at most 3/4 of them used */
    size_t buckets;
    /* An add in progress: the keys of its first `staged` rows are in the
     * table already, and `fresh` says the add materialised the table (a
     * rollback returns to the identity). Row i lands in slot reused[i]
     * for i < nreused, in count + i - nreused after that. */
    size_t staged;
    bool fresh;
    const uint32_t *reused;
    size_t nreused;
} ix_keys;

/* sync.c: the locks of searches beside writers. */
typedef struct ix_sync ix_sync;
typedef struct ix_log ix_log; /* log.c */

struct rotor_index {
    rotor_params params;
    rotor_allocator alloc;
    rotor_metric metric;
    size_t dim;
    size_t count;
    size_t capacity; /* rows `vectors` has room for */
    /* count x dim float32, row-major, unpadded; normalised for cosine. */
    float *vectors;
    /* Or, instead (vectors NULL), count x dim bytes: the vectors of a file
     * saved with every coordinate an integer 0..255 (save.c), a quarter
     * of the memory, scored bit for bit as their floats. Searches read
     * them; the first change widens them back to `vectors` (move_arrays),
     * and what only reads full vectors gets a widened copy
     * (ix_full_vectors). count rows, whatever the capacity; belongs to
     * the mapped file while `borrowed`. */
    uint8_t *rows8;
    /* The quantizer and its code store (NULL for full precision). The store
     * has room for `capacity` codes, in the quantizer's layout. */
    quant *q;
    uint8_t *codes;
    /* A graph's walking codes when params.walk_quant names another
     * quantizer (NULL otherwise: the graph walks on q). */
    quant *walk_q;
    uint8_t *walk_codes;
    /* walk_q and q rotate alike (same seed and centre): a search rotates
     * its query once for both. Set once both are trained or loaded. */
    bool shared_rotation;
    /* Per vector, |x - x~| of q's code (quant_ops.residual): what bounds
     * the error of q's estimates, so a rerank can stop early. Room for
     * `capacity`; NULL when q has no bound, or for an index opened from a
     * file written before residuals were kept (and every add to it). */
    float *resid;
    char quant_name[32];
    char walk_name[32];
    double train_seconds;
    nav *nav;
    /* An index opened from a file (open.c): the mapping that vectors,
     * codes and walk_codes point into while `borrowed` (the first add
     * copies them to memory of the index's own). */
    ixf_file *file;
    bool borrowed;
    /* Full vectors on disk: `vectors` is NULL and reranks read rows
     * through this store. */
    vstore *store;
    /* A streaming build (build_file.c): `vectors` is this mapping of a
     * deleted spill file, not memory of the index's own. */
    void *spill;
    size_t spill_bytes;
    /* During that build: the output path, beside which a build within
     * rotor_params.build_memory keeps the graph's records (borrowed). */
    const char *spill_beside;
    /* quant "auto": the first batch chooses the codes (tune.c) before it
     * is encoded. */
    bool auto_quant;
    /* The build was given no graph degree: configure() sets the default
     * for the codes it configures (ix_default_degree). */
    bool default_degree;
    /* A build calibrates on rows it holds out of the graph (held, nheld;
     * bit u of held_bits for row u) until the table is measured: queries
     * the graph was not pruned around, as the user's are (tune.c). Set by
     * the build entry points (hold_out) before the first batch. */
    bool hold_out;
    uint32_t *held;
    size_t nheld;
    uint64_t *held_bits;
    ix_tuning tuning;
    ix_labels labels;
    ix_keys keys;
    /* Removed slots (remove.c): bit u of `deleted` is set once slot u's
     * vector is removed; slots at or past deleted_bits are live (the
     * bitset grows at removes, not at adds). A removed slot keeps its
     * vector, codes and record, but no key, until an add reuses it, and
     * every search tests it out (filter.c). `ndeleted` counts the set
     * bits; `pending` those not yet consolidated: the navigator may still
     * route through them. */
    uint64_t *deleted;
    size_t deleted_bits;
    size_t ndeleted, pending;
    /* Free slots (remove.c): the removed slots a consolidation left with
     * nothing leading to them and no labels, ascending; adds take
     * free_slot[free_at ..] before appending. Read and changed by writers
     * only; free_at changes while searches are held (stats read it).
     * free_stale: a consolidation could not list them (out of memory), the
     * next one tries again. `reusing`: an add is filling free slots, so
     * every search filters removed slots out, even those of a navigator
     * that needs no filter once consolidated (IVF files them before the
     * add is counted). */
    uint32_t *free_slot;
    size_t nfree_slots, free_at;
    bool free_stale, reusing;
    /* Searches beside writers (sync.c); the pointer is set once, at
     * creation, so a const index still locks. */
    ix_sync *sync;
    /* An index opened from a file: what the file's update log held and,
     * opened writable, where each change goes (log.c). NULL for a built
     * index. */
    ix_log *log;
};

/* sync.c. Every reading call holds the index shared (ix_read_*) while
 * it reads; every writer holds the writer's turn (ix_write_*) for its
 * whole call, and the index exclusively (ix_publish_*) only while it
 * changes what searches read. ix_write_hold: the writer holds the index
 * exclusively for the rest of its call (then ix_publish_* do nothing and
 * ix_publish_lock is NULL). */
rotor_status ix_sync_create(rotor_index *ix);
void ix_sync_free(rotor_index *ix);
void ix_read_begin(const rotor_index *ix);
void ix_read_end(const rotor_index *ix);
void ix_write_begin(const rotor_index *ix);
void ix_write_hold(const rotor_index *ix);
void ix_write_end(const rotor_index *ix);
void ix_publish_begin(const rotor_index *ix);
void ix_publish_end(const rotor_index *ix);
/* What a navigator takes exclusively to publish its changes. */
pthread_rwlock_t *ix_publish_lock(const rotor_index *ix);

/* Whether slot u's vector was removed. */
static inline bool ix_is_deleted(const rotor_index *ix, size_t u) {
    return u < ix->deleted_bits && cm_bit_get(ix->deleted, u);
}
/* Vectors a search can return: the slots in use less the removed. */
static inline size_t ix_live(const rotor_index *ix) { return ix->count - ix->ndeleted; }
/* Free slots the next adds take. */
static inline size_t ix_free(const rotor_index *ix) { return ix->nfree_slots - ix->free_at; }
/* The slot row i of an add of n rows will land in: free slots first
 * (lowest first), then past the count. */
static inline size_t ix_slot_for_row(const rotor_index *ix, size_t n, size_t i) {
    const size_t r = n < ix_free(ix) ? n : ix_free(ix);
    return i < r ? ix->free_slot[ix->free_at + i] : ix->count + i - r;
}

/* index.c: an empty index of `dim` dimensions for checked params, sized
 * for a first batch of `rows` (graph threads); nothing is encoded yet. */
rotor_status ix_create(const rotor_params *p, size_t dim, size_t rows, rotor_index **out);
/* rotor_index_add_with_keys for a writer that holds its turn already
 * (ix_write_begin): an update's add. */
rotor_status ix_add(rotor_index *ix, const rotor_matrix *vectors, const int64_t *keys);
/* Encodes rows [count, need) already in `vectors` and links them into the
 * navigator (training the quantizers on a first batch), then counts them.
 * A first batch of an "auto" index first chooses its codes. */
rotor_status ix_index_rows(rotor_index *ix, size_t need);
/* The end of a build: the calibration table, unless params.calibrate is 0
 * or the searches are exact. */
rotor_status ix_build_calibrate(rotor_index *ix);
/* Room for `need` rows in the vectors and code stores. */
rotor_status ix_reserve(rotor_index *ix, size_t need);
/* Trains (first batch) and encodes rows [count, need) without linking. */
rotor_status ix_encode_rows(rotor_index *ix, size_t need);
/* Copies the navigator, codes and in-RAM vectors an opened index borrows
 * from its mapped file into memory of its own (rotor_open_params.load). */
rotor_status ix_own_arrays(rotor_index *ix);
/* build_file.c: unmaps a streaming build's spill; nothing without one. */
void ix_spill_release(rotor_index *ix);

/* params.c: validation with a sentence for every rejection. */
rotor_status ix_params_check(const rotor_params *p);
/* rotor_params.quant: full precision (NULL, "none"), "auto", or a name. */
bool ix_quant_none(const char *name);
bool ix_quant_auto(const char *name);
bool ix_quant_named(const char *name);
rotor_status ix_search_params_check(const rotor_search_params *p);
/* rotor_search_params.rerank_window: the default, and the most a reader's
 * ring holds at once (a vector store's default depth). */
enum { IX_DEFAULT_RERANK_WINDOW = 4, IX_MAX_RERANK_WINDOW = 64 };
rotor_status ix_matrix_check(const rotor_matrix *m, const char *what);
/* The navigator's build parameters from checked index parameters, for an
 * index of `count` vectors (which bounds the threads). */
nav_params ix_nav_params(const rotor_params *p, bool quantized, size_t count);
/* Refuses a vamana build memory cap too small for any build in shards of
 * rows x cols, before the build does any work (the build checks again,
 * codes counted). */
rotor_status ix_check_build_memory(const rotor_params *p, size_t rows, size_t cols,
                                   bool records_in_file);

/* The largest squared norm a float32 row may have under L2 or IP: every
 * distance term (|x - q|^2 <= 2 |x|^2 + 2 |q|^2, |<x, q>|, a quantizer's
 * |x - c|^2 around a centre of such rows) then stays finite. Above it
 * every distance overflows to infinity and a search returns the same ids
 * for any query, so such rows are refused instead. */
#define IX_MAX_SQUARED_NORM (FLT_MAX / 4)
/* ROTOR_ERR_NOT_FINITE, naming row i of `what`, when a row of finite values
 * is beyond IX_MAX_SQUARED_NORM (cosine rows are normalised in double and
 * need no bound). */
rotor_status ix_check_magnitude(const float *row, size_t d, rotor_metric metric, const char *what,
                                size_t i);
/* Copies `m` (any accepted element type) into dst as float32 rows, checking
 * every value is finite and every row's magnitude, and normalising rows for
 * cosine; `what` names the rows in error sentences. */
rotor_status ix_convert_rows(const rotor_matrix *m, rotor_metric metric, float *dst,
                             const char *what);

/* Whether `vectors` (`count` rows of the index) can be kept as bytes
 * (rows8): every coordinate a whole number 0..255 (no negative zero, so
 * the widened row is the same bits), in RAM (a store on disk and a graph's
 * node pages read floats), and not normalised for cosine. */
bool ix_rows_fit_bytes(const rotor_index *ix, const float *vectors, size_t count);
/* A built index's float rows replaced by bytes when they fit (a failure
 * to allocate keeps the floats). */
void ix_narrow_rows(rotor_index *ix);
/* rotor_index_stats_get's figures, for a caller that holds the read lock
 * or owns the index outright (an open in progress). */
void ix_stats(const rotor_index *ix, rotor_index_stats *out);
/* Row `slot` of the vectors in RAM (floats or bytes) as floats. */
rotor_status ix_row_get(const rotor_index *ix, size_t slot, float *out);
/* The full vectors as floats, for work that reads them all (a
 * consolidation's pruning, a calibration): `vectors` in RAM, the file's
 * section when they are on disk, or (rows of bytes) a widened copy the
 * caller frees with cm_free (*widened, NULL otherwise). */
rotor_status ix_full_vectors(const rotor_index *ix, const float **out, float **widened);
/* The index's vectors and codes as the navigators see them. */
graph_space ix_space(const rotor_index *ix);
/* The build's defaults that depend on other parameters (graph degree and
 * build list: 0 asks for them). The degree resolved is the narrow one
 * (ix_default_degree(p, false)) until the codes are known. */
void ix_params_resolve(rotor_params *p);
/* The graph degree a build not given one takes: `wide` for a graph whose
 * records keep no neighbours' codes, or under a RAM budget; at most the
 * build list when one is given. */
uint32_t ix_default_degree(const rotor_params *p, bool wide);
/* The quantizer a build under a RAM budget of `budget` bytes for `count`
 * vectors of `dim` dimensions takes for quant "auto". */
void ix_budget_quant(size_t dim, size_t count, uint64_t budget, bool node_codes, size_t degree,
                     char *name, size_t size);

/* tune.c: the calibration table, measured with `queries` (nq of them,
 * converted) or, when NULL, with rows of the index searched as held out.
 * in_build: part of a build, whose progress callback (ix->params) may stop
 * it; elsewhere that callback is not called (its owner may be gone). */
rotor_status ix_calibrate(rotor_index *ix, const float *queries, size_t nq, unsigned threads,
                          bool in_build);
/* The automatic choice over the first n rows of ix->vectors: the quantizer
 * ("none" for full precision), the walking one ("" for the same) and the
 * layout; the candidates go to ix->tuning. */
rotor_status ix_auto_configure(rotor_index *ix, size_t n, char *quant_out, size_t quant_size,
                               char *walk, size_t walk_size, bool *neighbor_codes);
/* Fills the settings a search by recall picks into np (only those left at
 * their defaults: list 0, rerank SIZE_MAX, refine 0, nprobe 0). */
rotor_status ix_recall_settings(const rotor_index *ix, float target, size_t k,
                                nav_search_params *np);
void ix_tuning_free(rotor_index *ix);
/* A build's calibration queries, chosen among its n rows and held out of
 * the graph (ix->held); none where there is no graph to hold them out of,
 * no calibration, or too few rows to spare them. */
rotor_status ix_hold_out(rotor_index *ix, size_t n);
/* Links the held-out rows into the graph and forgets them. */
rotor_status ix_link_held(rotor_index *ix);
/* storage of the tuning section (save.c, open.c) */
rotor_status ix_tuning_save(const rotor_index *ix, ixf_writer *w);
rotor_status ix_tuning_load(rotor_index *ix);

/* keys.c. Staging puts the keys of n new rows (NULL: the numbers of
 * their slots) into the table beside the committed ones, refusing a
 * negative key or one that is taken (by the index or earlier in the
 * batch); on failure nothing changed. The first nreused rows land in the
 * free slots `reused` (kept until the commit or rollback), the rest past
 * the count. The add then commits them (after raising the count and
 * clearing the reused slots' removed bits) or rolls them back, which
 * cannot fail. */
rotor_status ix_keys_stage(rotor_index *ix, const int64_t *keys, size_t n, const uint32_t *reused,
                           size_t nreused);
void ix_keys_commit(rotor_index *ix);
void ix_keys_rollback(rotor_index *ix);
/* The slot of `key`: ROTOR_ERR_NOT_FOUND (or ROTOR_ERR_INVALID_ARGUMENT
 * for a negative key) with a sentence when no vector has it. */
rotor_status ix_slot_of(const rotor_index *ix, int64_t key, size_t *slot);
static inline int64_t ix_key_of(const rotor_index *ix, size_t slot) {
    return ix->keys.key != NULL ? ix->keys.key[slot] : (int64_t)slot;
}
/* Takes the key of live slot `slot` out of the lookup (the table's entry
 * by backward-shift deletion, so every other key's probe still ends at
 * it); cannot fail. Restored by ix_keys_restore, which cannot fail either
 * (the table only lost entries since). */
void ix_keys_drop(rotor_index *ix, size_t slot);
void ix_keys_restore(rotor_index *ix, size_t slot);
/* Search results from slots to keys, in place (-1 stays -1). */
void ix_keys_publish(const rotor_index *ix, int64_t *ids, size_t n);
size_t ix_keys_bytes(const rotor_index *ix);
void ix_keys_free(rotor_index *ix);
/* The keys section (save.c, open.c); nothing for the identity. */
rotor_status ix_keys_save(const rotor_index *ix, ixf_writer *w);
rotor_status ix_keys_load(rotor_index *ix);

/* labels.c: the labels section (storage/FORMAT.md), its memory, and the
 * point a public id names. */
/* Labels given to a build of `rows` rows (NULL passes), checked before
 * the build starts. */
rotor_status ix_labels_fit(const rotor_labels *labels, size_t rows);
rotor_status ix_labels_save(const rotor_index *ix, ixf_writer *w);
rotor_status ix_labels_load(rotor_index *ix);
void ix_labels_free(rotor_index *ix);
size_t ix_labels_bytes(const rotor_index *ix);
/* The point of id `id`, quietly: false when no vector has it. */
bool ix_find_point(const rotor_index *ix, int64_t id, uint32_t *point);
/* Whether some key is not its point (the index keeps a key table). */
static inline bool ix_has_keys(const rotor_index *ix) { return ix->keys.key != NULL; }
/* The point of public id `id` (its key: ix_slot_of), or
 * ROTOR_ERR_NOT_FOUND / ROTOR_ERR_INVALID_ARGUMENT naming it. */
rotor_status ix_point_of(const rotor_index *ix, int64_t id, uint32_t *point);
/* The public id of a point (what a search returns for it): its key. */
static inline int64_t ix_id_of(const rotor_index *ix, uint32_t point) {
    return ix_key_of(ix, point);
}
/* The labels of point u: *n of them at the returned address, ascending. */
static inline const uint32_t *ix_labels_of(const ix_labels *l, size_t u, size_t *n) {
    if (u >= l->rows) {
        *n = 0;
        return NULL;
    }
    *n = (size_t)(l->off[u + 1] - l->off[u]);
    return l->val + l->off[u];
}

/* filter.c: a rotor_filter compiled for one search call: the navigators'
 * nav_filter (first, so one points at the other), and whether its points
 * are few enough to be scanned rather than searched for. */
typedef struct ix_filter {
    nav_filter nav;
    const rotor_index *ix;
    rotor_filter f;
    uint32_t *labels; /* f's labels, ascending, each once */
    size_t nlabels;
    uint64_t mask;    /* their bits in ix_labels.sig */
    bool sig_decides; /* no other label shares those bits: mask tells all */
    /* The allow-lists as a bitset over points (count bits), when they
     * are not one already: given as ids, or as a bitset over keys that
     * are not points. NULL: f.allow is read directly. */
    uint64_t *points;
    bool none;        /* provably nothing passes */
    bool scan;        /* search by scanning the points that pass */
    int mode;         /* rotor_search_params.filter_scan */
    uint32_t *starts; /* nav.starts */
} ix_filter;
/* Compiles `f` for searches with settings np (resolved) on ix; mode as
 * rotor_search_params.filter_scan. Sets np->filter, or leaves it NULL when
 * the filter provably allows every point. */
rotor_status ix_filter_compile(const rotor_index *ix, const rotor_filter *f, int mode,
                               nav_search_params *np, ix_filter *out);
void ix_filter_free(ix_filter *xf);
/* The exact search among the points a compiled filter allows. */
rotor_status ix_filter_scan(const rotor_index *ix, const ix_filter *xf, const graph_space *s,
                            const nav_search_params *np, const float *query, size_t k, int64_t *ids,
                            float *dists);

/* remove.c: the deleted section (storage/FORMAT.md), read after the
 * header's count is known and before the keys (which skip removed slots). */
rotor_status ix_deleted_save(const rotor_index *ix, ixf_writer *w);
rotor_status ix_deleted_load(rotor_index *ix);
void ix_deleted_free(rotor_index *ix);
/* Lists every removed slot as free (ix->free_slot), once none is pending
 * consolidation, dropping their labels first; on failure (memory) none is
 * free and free_stale says so. In the writer's turn. */
rotor_status ix_free_rebuild(rotor_index *ix);
/* labels.c: removed slots lose their labels (before they are reused). */
rotor_status ix_labels_drop_removed(rotor_index *ix);
/* labels.c: the labels the index will have once an add of n rows has put
 * row i into slot ix_slot_for_row(ix, n, i) with labels `in` (checked by
 * ix_labels_fit): made before the add, so that it cannot fail after it.
 * Then exactly one of take (swapped in while searches are held) or drop. */
rotor_status ix_labels_stage_add(const rotor_index *ix, size_t n, const rotor_labels *in,
                                 ix_labels *out);
void ix_labels_take_staged(rotor_index *ix, ix_labels *staged);
void ix_labels_drop_staged(rotor_index *ix, ix_labels *staged);

/* log.c: the update log (storage/FORMAT.md). Each public call that
 * changes an index hands its arguments and the function that makes the
 * change to one of these, in the writer's turn: for an index opened
 * writable the record is written, the change made, and the record cut off
 * again if it failed; otherwise the change is just made. */
typedef rotor_status (*ix_add_fn)(rotor_index *ix, const rotor_matrix *vectors, const int64_t *keys,
                                  const rotor_labels *labels);
typedef rotor_status (*ix_remove_fn)(rotor_index *ix, const int64_t *keys, size_t n);
typedef rotor_status (*ix_labels_fn)(rotor_index *ix, const int64_t *ids,
                                     const rotor_labels *labels);
rotor_status ix_log_add(rotor_index *ix, const rotor_matrix *vectors, const int64_t *keys,
                        const rotor_labels *labels, ix_add_fn apply);
rotor_status ix_log_update(rotor_index *ix, const rotor_matrix *vectors, const int64_t *keys,
                           ix_add_fn apply);
rotor_status ix_log_remove(rotor_index *ix, const int64_t *keys, size_t n, ix_remove_fn apply);
rotor_status ix_log_set_labels(rotor_index *ix, const int64_t *ids, const rotor_labels *labels,
                               ix_labels_fn apply);
/* At the end of an open: replays the file's log into the index and, for
 * a writable open, starts appending to it; with op->verify a log broken
 * in its middle is refused. */
rotor_status ix_log_open(rotor_index *ix, const rotor_open_params *op);
void ix_log_close(rotor_index *ix);
void ix_log_stats(const rotor_index *ix, rotor_index_stats *out);
/* Whether `path` names the file a writable index appends to; a save over
 * it goes through ix_log_save_over, which goes on appending to the new
 * file. Both in the writer's turn. */
bool ix_log_writes_to(const rotor_index *ix, const char *path);
rotor_status ix_log_save_over(const rotor_index *ix, const char *path);

/* save.c: writes the index to `path`, in the writer's turn; with `kept`,
 * for a writable index saved over its own file, the new file's descriptor
 * comes back locked. */
rotor_status ix_save(const rotor_index *ix, const char *path, ixf_kept *kept);

/* search.c: one query through the navigator with its settings resolved. */
rotor_status ix_search_nav(const rotor_index *ix, const nav_search_params *np, const float *query,
                           size_t k, int64_t *ids, float *dists, rotor_query_stats *qs);
#endif /* ROTOR_INDEX_INTERNAL_H */
