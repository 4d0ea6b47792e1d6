/*
 * rotor — approximate nearest-neighbour search over dense embeddings.
 *
 * This is the only public header. It needs nothing but <stddef.h> and
 * <stdint.h> and may be included from C or C++.
 *
 * Ownership
 *   - rotor copies whatever it keeps from caller arrays; a caller may free or
 *     reuse its input as soon as a call returns.
 *   - Output arrays are allocated by the caller. Search results are written as
 *     n * k ids and n * k distances; slots without a result hold id -1 and
 *     distance +inf.
 *
 * Keys
 *   Every vector carries a key, a non-negative int64 chosen by the caller
 *   (rotor_index_build_with_keys, rotor_index_add_with_keys) or, by
 *   default, its row number: 0, 1, 2, ... in the order vectors were added.
 *   Every `id` of this API is such a key: searches return keys, and
 *   rotor_index_get, rotor_index_reconstruct and rotor_index_estimate take
 *   them. Keys are unique within an index. An index whose keys are all row
 *   numbers keeps no key table at all.
 *   - Every object returned by a *_build / *_open / *_read call is released by
 *     exactly one matching *_close / *_free call, which accepts NULL.
 *   - Strings returned by rotor are owned by rotor. The text behind
 *     rotor_last_error() stays valid until the next rotor call on the same
 *     thread.
 *
 * Threads
 *   - Any number of threads may call any function on one index at once,
 *     except rotor_index_close, which no other call may overlap.
 *   - Functions taking `const rotor_index *` read the index (searches,
 *     stats, get, contains, labels, save). Functions taking `rotor_index *`
 *     change it (add, remove, update, consolidate, set_labels, tune): they
 *     run one at a time.
 *   - Searches run beside a writer. A writer does its work (converting,
 *     encoding, finding a new vector's links, re-linking around removed
 *     ones) while searches go on, and holds the index exclusively only to
 *     publish what it computed: a few records, a code store's new codes, a
 *     bitset, a count. A search waits at most for one such publication,
 *     never for a whole add or consolidation, and a publication waits for
 *     the queries already running; a batch search lets writers in between
 *     its queries (a flat index's, between chunks of 64). An index's first
 *     batch (its build) is the exception: searches of an empty index wait
 *     for it.
 *   - Every search sees the index between two publications, never within
 *     one: an add's vectors all appear at once (none before the add's
 *     last publication),
 *     a search that starts after rotor_index_remove returned never returns
 *     a removed key, and a search beside rotor_index_update finds a key's
 *     old vector, or neither, or its new one, never both.
 *   - A save (and rotor_index_sync) takes the writers' turn: no writer
 *     changes the index while it is written, and searches go on.
 *   - The last-error text is kept per thread.
 *
 * Errors
 *   Every fallible call returns a rotor_status; ROTOR_OK is 0. On failure,
 *   rotor_last_error() gives one sentence naming what was wrong, with the
 *   numbers involved ("query has 768 dimensions, index has 384"). The library
 *   never prints, never aborts and never exits.
 *
 * Distances
 *   Results are always ordered by increasing distance:
 *     ROTOR_METRIC_L2      squared Euclidean distance
 *     ROTOR_METRIC_IP      negated inner product, -<q, x>
 *     ROTOR_METRIC_COSINE  1 - cos(q, x); vectors are normalised on the way in
 */
#ifndef ROTOR_H
#define ROTOR_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ROTOR_VERSION_MAJOR 0
#define ROTOR_VERSION_MINOR 1
#define ROTOR_VERSION_PATCH 0
#define ROTOR_VERSION_NUMBER                                                                       \
    (ROTOR_VERSION_MAJOR * 10000 + ROTOR_VERSION_MINOR * 100 + ROTOR_VERSION_PATCH)

#if defined(_WIN32)
#define ROTOR_API
#elif defined(__GNUC__) && __GNUC__ >= 4
#define ROTOR_API __attribute__((visibility("default")))
#else
#define ROTOR_API
#endif

/* Runtime version, to compare with the ROTOR_VERSION_* macros one compiled with. */
ROTOR_API unsigned rotor_version(void);
ROTOR_API const char *rotor_version_string(void);

/* ---------------------------------------------------------------------------
 * Status codes. Values below 100 are stable across releases.
 * ------------------------------------------------------------------------ */
typedef enum rotor_status {
    ROTOR_OK = 0,
    ROTOR_ERR_INVALID_ARGUMENT = 1, /* a parameter is out of range or NULL */
    ROTOR_ERR_DIMENSION = 2,        /* vector dimension does not match */
    ROTOR_ERR_NOT_FINITE = 3,       /* input holds NaN or infinity */
    ROTOR_ERR_EMPTY = 4,            /* no vectors where some are required */
    ROTOR_ERR_OUT_OF_MEMORY = 5,    /* an allocation failed; nothing was changed */
    ROTOR_ERR_IO = 6,               /* the operating system refused a read or write */
    ROTOR_ERR_FORMAT = 7,           /* a file is malformed, truncated or foreign */
    ROTOR_ERR_CORRUPT = 8,          /* a checksum does not match */
    ROTOR_ERR_UNSUPPORTED = 9,      /* valid request this build or index cannot serve */
    ROTOR_ERR_THREAD = 10,          /* a worker thread could not be started */
    ROTOR_ERR_CANCELLED = 11,       /* the progress callback asked the work to stop */
    ROTOR_ERR_NOT_FOUND = 12,       /* no vector of the index has the key asked for */
} rotor_status;

/* A short fixed description of a status code ("invalid argument"). Never NULL. */
ROTOR_API const char *rotor_strerror(rotor_status status);

/* The sentence describing the last failure on this thread; "" if none. */
ROTOR_API const char *rotor_last_error(void);

/* ---------------------------------------------------------------------------
 * Vectors in and out.
 * ------------------------------------------------------------------------ */
typedef enum rotor_metric {
    ROTOR_METRIC_L2 = 0,
    ROTOR_METRIC_IP = 1,
    ROTOR_METRIC_COSINE = 2,
} rotor_metric;

/* Element types of a matrix. Indexes take float32, uint8 and int8 and convert
 * to float32; int32 appears only in ground-truth files, int64 only in .npy
 * files of keys and of search results that hold keys. */
typedef enum rotor_elem_type {
    ROTOR_ELEM_F32 = 0,
    ROTOR_ELEM_U8 = 1,
    ROTOR_ELEM_I8 = 2,
    ROTOR_ELEM_I32 = 3,
    ROTOR_ELEM_I64 = 4,
} rotor_elem_type;

/* A dense row-major matrix: rows * cols elements of `type`, contiguous. */
typedef struct rotor_matrix {
    void *data;
    size_t rows;
    size_t cols;
    rotor_elem_type type;
} rotor_matrix;

/* Bytes of one element of `type` (4, 1, 1, 4, 8); 0 for an unknown type. */
ROTOR_API size_t rotor_elem_size(rotor_elem_type type);

/* ---------------------------------------------------------------------------
 * Data set files.
 *
 * Formats are recognised by extension: .fvecs .ivecs .bvecs (TEXMEX),
 * .fbin .u8bin .i8bin .ibin (big-ann-benchmarks), .npy (float32, uint8, int8,
 * int32, int64; C order), and the IDX format of (Fashion-)MNIST by its magic number,
 * optionally gzip-compressed. Every malformed file is refused with a sentence
 * naming the file and the fault.
 * ------------------------------------------------------------------------ */
typedef enum rotor_file_format {
    ROTOR_FORMAT_UNKNOWN = 0,
    ROTOR_FORMAT_FVECS = 1,
    ROTOR_FORMAT_IVECS = 2,
    ROTOR_FORMAT_BVECS = 3,
    ROTOR_FORMAT_FBIN = 4,
    ROTOR_FORMAT_U8BIN = 5,
    ROTOR_FORMAT_I8BIN = 6,
    ROTOR_FORMAT_IBIN = 7,
    ROTOR_FORMAT_NPY = 8,
    ROTOR_FORMAT_IDX = 9,
} rotor_file_format;

/* Name of a format ("fvecs"), or "unknown". */
ROTOR_API const char *rotor_file_format_name(rotor_file_format format);

/* What a data set file holds, read from its header (and, for the TEXMEX
 * formats, its size) without reading the data. */
typedef struct rotor_file_info {
    rotor_file_format format;
    rotor_elem_type type;
    size_t rows;
    size_t cols;
    int compressed; /* 1 for gzip-compressed IDX */
} rotor_file_info;

ROTOR_API rotor_status rotor_file_probe(const char *path, rotor_file_info *info);

/* Streaming reader: rows are read in order, in chunks the caller chooses, so
 * files larger than memory can be processed. */
typedef struct rotor_reader rotor_reader;

ROTOR_API rotor_status rotor_reader_open(const char *path, rotor_reader **out);
/* The same on a descriptor the caller opened (it is duplicated; the caller
 * still closes its own); `name` only names the file in error sentences and
 * tells its format by extension. Every input, by path or descriptor, must be
 * a regular file: a FIFO, socket, device or directory is refused without
 * blocking (paths are opened with O_NONBLOCK and checked with fstat). */
ROTOR_API rotor_status rotor_reader_open_fd(int fd, const char *name, rotor_reader **out);
ROTOR_API const rotor_file_info *rotor_reader_info(const rotor_reader *reader);
/* Reads up to `max_rows` rows into `dst` (max_rows * cols elements of the
 * file's element type) and stores how many were read in *rows_read (0 at the
 * end). Every row is checked (record headers, NaN and infinity). */
ROTOR_API rotor_status rotor_reader_read(rotor_reader *reader, void *dst, size_t max_rows,
                                         size_t *rows_read);
ROTOR_API void rotor_reader_close(rotor_reader *reader);

/* Reads a whole file. With `as_type` >= 0 the elements are converted to that
 * type (only F32 targets are allowed); with -1 they keep the file's type.
 * `max_rows` = 0 reads every row; otherwise at most that many. The matrix is
 * released with rotor_matrix_free(). */
ROTOR_API rotor_status rotor_matrix_read(const char *path, int as_type, size_t max_rows,
                                         rotor_matrix *out);

/* Writes `m` in the format given by the extension of `path` (not IDX). The
 * file is written to a temporary name and renamed, so it appears whole or
 * not at all. */
ROTOR_API rotor_status rotor_matrix_write(const char *path, const rotor_matrix *m);

/* Frees the data of a matrix filled by rotor; accepts a zeroed matrix. */
ROTOR_API void rotor_matrix_free(rotor_matrix *m);

/* ---------------------------------------------------------------------------
 * Index parameters.
 * ------------------------------------------------------------------------ */
typedef enum rotor_index_kind {
    ROTOR_INDEX_FLAT = 0,   /* every vector scanned: exact, or every code then rerank */
    ROTOR_INDEX_VAMANA = 1, /* a proximity graph walked by beam search */
    ROTOR_INDEX_IVF = 2,    /* k-means partitions, the nearest few scanned */
} rotor_index_kind;

/* Memory for everything an index owns. alloc returns memory aligned to at
 * least `align` bytes (a power of two) or NULL; free accepts NULL. Both may
 * be called from several threads at once (searches allocate their scratch
 * from the calling thread, batch searches from their workers). */
typedef struct rotor_allocator {
    void *(*alloc)(void *opaque, size_t size, size_t align);
    void (*free)(void *opaque, void *ptr);
    void *opaque;
} rotor_allocator;

/* Progress of long work: `done` out of `total` units. Returning non-zero asks
 * the operation to stop; it then fails with ROTOR_ERR_CANCELLED after
 * releasing what it allocated. Called from the thread that started the work.
 * A build also calls it while it measures itself, so a stop is honoured
 * there too: while choosing its codes (quant "auto") with done 0 of the
 * rows, and while calibrating, after the graph, with done equal to total. */
typedef int (*rotor_progress_fn)(void *opaque, uint64_t done, uint64_t total);

/* What a graph is built from. */
typedef enum rotor_build_space {
    ROTOR_BUILD_FULL = 0,  /* the full vectors (default) */
    ROTOR_BUILD_CODES = 1, /* the vectors the codes decode to: the graph sees only what the
                              quantizer keeps, as an index built from codes alone would */
} rotor_build_space;

/* Where full vectors live (rotor_params.full_vectors, rotor_open_params). */
typedef enum rotor_vectors_place {
    ROTOR_VECTORS_AS_SAVED = 0, /* open: as the index was built to be opened */
    ROTOR_VECTORS_RAM = 1,      /* mapped into memory with the rest of the index */
    ROTOR_VECTORS_DISK = 2,     /* read from the file for each rerank */
} rotor_vectors_place;

typedef struct rotor_params {
    rotor_index_kind kind; /* default ROTOR_INDEX_FLAT */
    rotor_metric metric;   /* default ROTOR_METRIC_L2 */
    /* How vectors are compressed for the scan. "auto" (default) measures:
     * the build tries a few codes and layouts on a sample of the input
     * (vamana: full precision, sq8, 4-bit PQ at two sizes, binary fast-scan
     * walks refined by sq8; IVF: the codes alone) with held-out rows as
     * queries and exact neighbours, and keeps the cheapest that reaches
     * target_recall; rotor_index_tuning tells what it measured. A flat
     * index stays exact under "auto". NULL or "none" keeps full float32
     * precision. Otherwise one of:
     *   "tq1".."tq8"      TurboQuant, b bits per dimension, no training
     *   "tqip2".."tqip8"  TurboQuant for inner products: b-1 bits + 1-bit QJL
     *   "bin1", "bin2"    1-bit sign / 2-bit sign-magnitude codes with
     *                     RaBitQ-style corrections, no training
     *   "bin1fs", "bin2fs" the same codes in 32-code fast-scan blocks: scored
     *                     by table lookups, 4-5x faster; the walking code of
     *                     choice for a graph
     *   "pq<M>"           product quantization, M subspaces of 8 bits (trained)
     *   "pq<M>x4"         product quantization, 4-bit fast-scan codes (trained)
     * Full vectors are kept beside the codes to rerank candidates. The string
     * is copied. */
    const char *quant;
    uint32_t threads; /* build threads; 0 = one per core (default) */
    uint64_t seed;    /* for every random choice; default 42 */
    /* Vamana: the graph is built on the full vectors (or, with
     * build_space, on the decoded codes) by RobustPrune in two passes, and
     * searched on the codes when a quantizer is given. The progress
     * callback follows the two passes. */
    /* R, most neighbours per node, 2..1024; 0 (default): 32, or 64 under a
     * RAM budget (a graph on disk pays a read per hop, and a wider graph
     * takes fewer hops), at most build_list. */
    uint32_t graph_degree;
    /* L of the build's searches (half in pass 1), >= R; 0 (default): 100,
     * or 128 under a RAM budget; at least R. */
    uint32_t build_list;
    float alpha; /* pruning factor of the second pass, 1..4; default 1.2 */
    /* 1 (default): each node keeps a copy of its neighbours' codes beside
     * their ids, so one sequential read scores a node's whole neighbourhood
     * (more memory: R codes per node); 0: codes are read by id. Needs a
     * quantizer; ignored without one. quant "auto" decides it by
     * measurement. Under a RAM budget it applies to the node pages on
     * disk (see ram_budget); the graph in RAM keeps own codes. */
    int neighbor_codes;
    rotor_build_space build_space; /* needs a quantizer for ROTOR_BUILD_CODES */
    /* Vamana: the walking quantizer, the codes the graph walks on when
     * they should differ from `quant` (same spellings). A cheap fast-scan
     * code ("bin1fs") walks the graph; the best candidates it finds are
     * then estimated again with `quant` (say "sq8", more accurate) and only
     * the best of those are reranked on full vectors. NULL (default): walk
     * on `quant`. Needs `quant`. */
    const char *walk_quant;
    /* IVF: partitions; 0 (default) = about 2 sqrt(n) (4 sqrt(n) for inner
     * product, whose lists hold codes of whole rows). Needs a quantizer. */
    uint32_t nlist;
    /* Where an index saved from this one keeps its full vectors when it is
     * opened (rotor_index_open may override): ROTOR_VECTORS_RAM (default)
     * or ROTOR_VECTORS_DISK, where RAM holds the graph and codes only and
     * the rerank reads the few vectors it scores from disk. Disk needs a
     * quantizer. A built index always holds its vectors in RAM. */
    rotor_vectors_place full_vectors;
    /* quant "auto": the recall@10 the chosen configuration must reach on
     * the sample, 0.5..1; default 0.95. */
    float target_recall;
    /* 1 (default): a vamana, IVF or quantized flat build ends by measuring
     * its calibration table (recall and cost of its search settings on
     * rows of the index searched as if held out), which a search by
     * recall (rotor_search_params.target_recall) reads. 0: skipped. */
    int calibrate;
    /* NULL (default), or the labels of the rows built, in order (as
     * rotor_index_set_labels after the build; rows must match). */
    const struct rotor_labels *labels;
    rotor_allocator allocator;  /* default: the C library's aligned_alloc/free */
    rotor_progress_fn progress; /* default NULL */
    void *progress_opaque;
    /* Vamana: the most bytes a search of the saved index may keep in RAM,
     * 0 (default): no limit. With a budget the full vectors stay on disk
     * and the file also holds the graph's records in 4 KiB pages, each
     * node's neighbour ids beside its full vector (DiskANN's layout). An
     * open under a budget too small for the graph keeps only the walking
     * codes, the starting points and a cache of the records nearest them
     * in RAM, and a search reads the records it expands from disk, with
     * rotor_search_params.beam_width reads in flight; its results are the
     * exact distances of the records read, so nothing is read twice. With
     * neighbor_codes (the default) a record also holds its neighbours'
     * walking codes, so RAM needs none: the read that expands a node
     * scores its neighbours, and the budget goes to the cache. quant
     * "auto" then picks (no measured choice) rotated 2-bit codes
     * ("bin2fs"; 1-bit where RAM must hold them and 2 bits do not fit)
     * from 256 dimensions up, else the 8-bit product quantizer that fills
     * half the budget or, with neighbour codes, a 4 KiB page beside a
     * record's ids and vector, whichever is larger; and no calibration
     * table is measured (it would measure the graph in RAM).
     * The index built stays in RAM until it is saved and opened. */
    uint64_t ram_budget;
    /* Vamana: the most bytes the graph's build may use, 0 (default): no
     * cap. A build that would need more in one piece (about
     * n (4 d + d + 4 (1.3 R + 1) + 15) bytes plus the codes, with vectors
     * of d floats) is split into overlapping shards (k-means, each point
     * in its two nearest), built one at a time within the cap and merged
     * into one graph, as DiskANN's merged build; built from a file
     * (rotor_index_build_file), the merged records also wait in a file
     * beside the output rather than in memory. The formula, and the
     * smallest cap a build accepts, are in the README. */
    uint64_t build_memory;
} rotor_params;

ROTOR_API rotor_params rotor_params_default(void);
/* Checks build parameters as rotor_index_build would (quantizer specs
 * included) without building anything: for tools that refuse bad options
 * before starting work. */
ROTOR_API rotor_status rotor_params_check(const rotor_params *params);

/* ---------------------------------------------------------------------------
 * Labels and filters. A vector may carry a set of labels (non-negative
 * integers: a category, an owner, a tenant), kept in the index file; a
 * search may take a filter, and then returns only vectors it allows,
 * checked inside the search (a graph routes through the others, not
 * around them), or, when few pass, by an exact scan of those that do.
 * ------------------------------------------------------------------------ */

/* Labels of `rows` vectors, compressed rows: vector i carries
 * values[offsets[i] .. offsets[i + 1]) (any order, repeats ignored);
 * offsets has rows + 1 entries, offsets[0] = 0, never decreasing. */
typedef struct rotor_labels {
    const uint64_t *offsets;
    const uint32_t *values;
    size_t rows;
} rotor_labels;

/* A search's condition. A vector passes when it meets every part that is
 * set: labels (any of them, or all of them with all = 1; nlabels 0: no
 * label condition), an allow-list of ids as a bitset (bit i of allow, for
 * ids i < allow_bits: set = allowed; ids at or past allow_bits are not;
 * NULL: none) and/or as a list (allow_ids[0..n_allow_ids), any order; ids
 * no vector has are ignored; NULL: none; for large keys, where a bitset
 * over them would not do), and a predicate (nonzero = allowed; NULL:
 * none), which is called
 * from the searching threads, any number at once, and must not change the
 * index. A filter that allows nothing returns no result (ids -1). */
typedef struct rotor_filter {
    const uint32_t *labels;
    size_t nlabels;
    int all;
    const uint64_t *allow;
    size_t allow_bits;
    const int64_t *allow_ids;
    size_t n_allow_ids;
    int (*predicate)(void *opaque, int64_t id);
    void *opaque;
} rotor_filter;

/* What one query cost, filled when rotor_search_params.stats is set. */
typedef struct rotor_query_stats {
    uint32_t reads;    /* full vectors (or, graph on disk, node records) read from disk */
    double io_seconds; /* time spent waiting for those reads */
    uint32_t reranked; /* candidates scored on full vectors, in RAM or from disk */
    /* With a filter: 1 when so few vectors pass that they were all scored
     * (an exact scan of them) instead of searched for. */
    uint32_t filter_scan;
    /* The work of the walk or scan: graph records expanded (0 for flat and
     * IVF), and distances estimated on codes (or, without a quantizer, on
     * full vectors) before the rerank. */
    uint32_t hops;
    uint32_t estimated;
} rotor_query_stats;

typedef struct rotor_search_params {
    uint32_t threads; /* batch search threads; 0 = one per core (default) */
    /* Quantized indexes: how many candidates, by estimated distance, are
     * scored again on full vectors before the best k are returned, at
     * most (see rerank_all). -1 (default): 10 * k; 0: none, the estimates
     * are returned; N: N (at least k). Ignored by full-precision
     * indexes. */
    int64_t rerank;
    /* Vamana: the beam search's candidate list (L); larger is slower and
     * finds more. 0 (default) = max(k, 64). A search may walk with a
     * list shorter than k: its results come from a heap of the best
     * distances (or estimates) it scored, as does a rerank deeper than the
     * list. */
    uint32_t list_size;
    /* IVF: partitions scanned per query; 0 (default) = 16. */
    uint32_t nprobe;
    /* Vamana with a walk_quant: how many of the walk's best candidates
     * are estimated again with the index's quantizer before the rerank;
     * 0 (default) = 4 x the rerank depth. */
    uint32_t refine;
    /* NULL (default), or one entry per query searched (one for
     * rotor_index_search, queries->rows for a batch), overwritten. */
    rotor_query_stats *stats;
    /* Quantized vamana: how many of the index's sampled starting points
     * (a uniform sample of up to 16384 nodes, filed in about sqrt(n)
     * groups around leaders, every leader scored) are scored before the walk:
     * the groups of the leaders nearest the query, until they hold this
     * many, the last group cut short; 0 (default) = 256. More land the
     * walk nearer the query and feed a deep rerank; on 1M 128-d SIFT-like
     * vectors they only cost time. */
    uint32_t start_points;
    /* Vamana: how many of each node's neighbours, from the start of its
     * list, the walk reads; 0 (default) = all of them (graph_degree). A
     * list begins with the neighbours its last prune kept, in the order it
     * kept them (each the nearest in a direction those before it leave
     * open), then the edges added since: the first R' of a graph of
     * degree R are much what a graph of degree R' would hold. A wide graph
     * walked narrow scores fewer neighbours a hop where a short list
     * reaches the recall asked, and wide where it takes fewer hops (high
     * recall on hard data). A search by recall takes it from the
     * calibration table. */
    uint32_t max_neighbors;
    /* 0 (default): off. Otherwise the recall@k the search should reach:
     * the cheapest setting of the index's calibration table whose measured
     * recall (less two standard errors) reaches it sets list_size, rerank,
     * refine and nprobe, each unless given above (for k > 10 the list and
     * rerank depths scale with k). An index without a table, or a recall
     * above what its table reached, fails with ROTOR_ERR_UNSUPPORTED and a
     * sentence giving the highest recall it can promise: never a silent
     * answer below the target. */
    float target_recall;
    /* 0 (default): where the quantizer bounds the error of its estimates
     * (sq8, pq<M>, pq<M>x4, tq, tqip; not the binary codes) and the index
     * keeps the residuals that bound needs (built by this version; older
     * files have none), a `rerank` candidate whose lower bound of the
     * exact distance exceeds the k-th exact distance found so far is
     * skipped: the results are those of scoring all of them, with fewer
     * vectors scored (and read, with vectors on disk). 1: score every candidate, as without a bound
     * (for comparisons). */
    int rerank_all;
    /* Vectors on disk, reranks that skip on the bound: the candidates the
     * bound will likely need (at least k: those whose bound is under the
     * k-th best estimate) are read at once, then at most this many reads
     * are in flight, each decided on the k-th distance of the rows already
     * scored: the more in flight, the less the disk is waited for and the
     * more rows are read that a bound decided later would have skipped
     * (at most this many - 1 at the end). 0 (default) = 4. */
    uint32_t rerank_window;
    /* NULL (default), or the condition a result must meet (rotor_filter):
     * every query of the call is searched among the vectors it allows. */
    const struct rotor_filter *filter;
    /* With a filter: 0 (default) scans the vectors it allows instead of
     * searching among all when that is estimated cheaper (few pass); 1:
     * always scan them; -1: always search (for comparisons). */
    int32_t filter_scan;
    /* A graph on disk (rotor_open_params.ram_budget): how many record
     * reads are in flight at once; each time one lands, the list's nearest
     * node not expanded yet is read next. 0 (default) = 4, at most 64.
     * Wider waits for the disk less and reads a few more records. */
    uint32_t beam_width;
} rotor_search_params;

ROTOR_API rotor_search_params rotor_search_params_default(void);

/* ---------------------------------------------------------------------------
 * The index.
 * ------------------------------------------------------------------------ */
typedef struct rotor_index rotor_index;

/* Builds an index over `vectors` (F32, U8 or I8; converted to float32).
 * `params` may be NULL for the defaults. Rejects empty input, zero
 * dimensions and NaN/infinity. Row i gets key i. */
ROTOR_API rotor_status rotor_index_build(const rotor_params *params, const rotor_matrix *vectors,
                                         rotor_index **out);

/* The same, with `keys` (vectors->rows of them, copied) as the keys of
 * the rows; NULL gives row numbers, as rotor_index_build. A negative key
 * or a key given twice is refused (ROTOR_ERR_INVALID_ARGUMENT, naming
 * the key and the rows). */
ROTOR_API rotor_status rotor_index_build_with_keys(const rotor_params *params,
                                                   const rotor_matrix *vectors, const int64_t *keys,
                                                   rotor_index **out);

/* Adds vectors; each takes the number of the slot it lands in as its
 * key. Adds fill the slots consolidation freed (rotor_index_remove) first,
 * lowest first, then append: without removals the keys continue the row
 * numbers (count, count + 1, ...), after removals a key of a removed
 * vector may be given again, so an application that removes should give
 * keys of its own (rotor_index_add_with_keys). A key taken already (an
 * index with keys of the caller's) refuses the call. On failure the index
 * is unchanged. An index opened writable records the change in its file
 * (rotor_index_sync). */
ROTOR_API rotor_status rotor_index_add(rotor_index *index, const rotor_matrix *vectors);

/* Adds vectors with the given keys (vectors->rows of them, copied;
 * NULL: as rotor_index_add). A negative key, a key given twice, or a key
 * already in the index is refused with ROTOR_ERR_INVALID_ARGUMENT, and
 * the index is unchanged, as after any failure. The first key that is
 * not a row number builds the key table (memory: about 8 bytes per
 * vector for the keys, 5 to 11 for the hash table that finds them). */
ROTOR_API rotor_status rotor_index_add_with_keys(rotor_index *index, const rotor_matrix *vectors,
                                                 const int64_t *keys);

/* Adds vectors with keys (NULL: as rotor_index_add) and labels for them
 * (labels->rows == vectors->rows, as rotor_index_set_labels takes them;
 * NULL: none) as one change: when the call returns, the vectors are in
 * the index with their labels, or neither is (a search running beside
 * the call may meet the vectors a moment before their labels), and an
 * index opened writable records the two together (a crash never keeps
 * the vectors without their labels). Errors as rotor_index_add_with_keys
 * and rotor_index_set_labels. */
ROTOR_API rotor_status rotor_index_add_with_labels(rotor_index *index, const rotor_matrix *vectors,
                                                   const int64_t *keys, const rotor_labels *labels);

/* Removes the vectors with keys `keys[0..n)`: from the next search on, no
 * search returns them, and rotor_index_contains, _get, _reconstruct,
 * _estimate and the labels calls no longer find their keys, which may be
 * added again. All or nothing: a key no vector has (ROTOR_ERR_NOT_FOUND),
 * a negative key or a key given twice in the call
 * (ROTOR_ERR_INVALID_ARGUMENT), each named in the error sentence, leave
 * the index unchanged.
 *
 * A removed vector stays in the index's structure until a consolidation:
 * a graph still walks through it (it joins its neighbourhood), and every
 * search refuses it as a result (an index with removed vectors not yet
 * consolidated filters every search, as a rotor_filter would; a flat
 * index, which scans every slot, always does). Once the removed vectors
 * not yet consolidated exceed 5 % of the slots, remove (and update)
 * consolidate before returning, unless the full vectors are on disk (then
 * only rotor_index_consolidate does); if that consolidation runs out of
 * memory, the call still succeeds and the next one tries again.
 *
 * Slots are reused: a removed vector keeps its slot (its full vector,
 * codes and graph record) until a consolidation leaves nothing leading to
 * it; the slot is then free, and later adds put new vectors into free
 * slots before they grow the index. So under a steady stream of removes
 * and adds memory and file size stay put, within the slots awaiting
 * consolidation (rotor_index_stats: slots, deleted, free_slots). An index
 * saved with removals not yet consolidated reuses their slots after its
 * next consolidation. */
ROTOR_API rotor_status rotor_index_remove(rotor_index *index, const int64_t *keys, size_t n);

/* Replaces the vectors with keys `keys[0..vectors->rows)` by the rows of
 * `vectors`, under the same keys: a remove of those keys and an add of
 * the rows with them. Every key must be in the index and given once
 * (errors as rotor_index_remove); the rows are checked as rotor_index_add
 * checks them (dimensions, NaN or infinity, magnitude). On any failure the
 * index is unchanged: the old vectors are still found under their keys.
 * The new vectors carry no labels (rotor_index_set_labels). Not with the
 * full vectors on disk (ROTOR_ERR_UNSUPPORTED, as rotor_index_add). */
ROTOR_API rotor_status rotor_index_update(rotor_index *index, const rotor_matrix *vectors,
                                          const int64_t *keys);

/* Repairs the index around the vectors removed since the last
 * consolidation (FreshDiskANN's delete consolidation): a graph re-links
 * every node that pointed at a removed one over the removed one's
 * neighbours (RobustPrune, the build's alpha and degree) and empties the
 * removed nodes' lists, moving its entry and starting points off removed
 * nodes; an IVF index takes them out of its lists; a flat index has
 * nothing to repair.
 * Searches are exact about removals with or without it; it makes them
 * stop spending work on removed vectors. Cost: a pass over every node and
 * a prune of each live node that pointed at a removed one. With the full
 * vectors on disk, it reads all of them from the file. On failure the
 * index is as it was. Nothing to do: ROTOR_OK at once. */
ROTOR_API rotor_status rotor_index_consolidate(rotor_index *index);

/* Whether a vector has `key`: *found is 1 or 0 (0 for any negative key). */
ROTOR_API rotor_status rotor_index_contains(const rotor_index *index, int64_t key, int *found);

/* The full vector stored under `key` (dim floats; normalised for cosine
 * indexes), read from the file when the vectors stay on disk. A key no
 * vector has is ROTOR_ERR_NOT_FOUND; a negative one,
 * ROTOR_ERR_INVALID_ARGUMENT. */
ROTOR_API rotor_status rotor_index_get(const rotor_index *index, int64_t key, float *out);

/* The k nearest neighbours of one float32 query of `dim` elements: their
 * keys in `ids`. `ids` and `distances` hold k entries each; `distances`
 * may be NULL. k may exceed the index size: the tail is padded with -1 /
 * +inf. `params` may be NULL. */
ROTOR_API rotor_status rotor_index_search(const rotor_index *index,
                                          const rotor_search_params *params, const float *query,
                                          size_t dim, size_t k, int64_t *ids, float *distances);

/* The same for every row of `queries` (F32, U8 or I8), spread over threads.
 * `ids` and `distances` hold queries->rows * k entries each. */
ROTOR_API rotor_status rotor_index_search_batch(const rotor_index *index,
                                                const rotor_search_params *params,
                                                const rotor_matrix *queries, size_t k, int64_t *ids,
                                                float *distances);

typedef struct rotor_index_stats {
    rotor_index_kind kind;
    rotor_metric metric;
    size_t count;              /* vectors in the index: added and not removed */
    size_t dim;                /* dimensions of a vector */
    size_t bytes_vectors;      /* full-precision vectors kept in RAM */
    size_t bytes_codes;        /* compressed codes, with the float per vector that bounds
                                  their error where kept (0 without a quantizer) */
    size_t code_bytes;         /* bytes of one vector's code, factors included */
    size_t bytes_graph;        /* navigation structure: graph ids or IVF lists and centroids */
    size_t bytes_graph_codes;  /* copies of codes in the navigator: neighbour codes, IVF lists */
    double train_seconds;      /* time spent training the quantizer at build */
    size_t bytes_total;        /* everything the index holds */
    char quant[32];            /* the quantizer spec, "none" for full precision */
    char walk_quant[32];       /* vamana: the walking quantizer's spec, "" when it
                                  walks on `quant` */
    int mapped;                /* 1: opened from a file, its sections mapped */
    int copied;                /* 1: graph, codes and vectors in memory of the index's own
                                  (built, added to, or opened with load 1 or -1), not read
                                  from the file's pages */
    int vectors_on_disk;       /* 1: full vectors read from the file for reranks */
    size_t bytes_vectors_disk; /* full vectors left on disk */
    char io_backend[16];       /* reads of vectors on disk: "io_uring", "pread"; "" */
    int direct_io;             /* 1: those reads bypass the page cache (O_DIRECT) */
    uint32_t graph_degree;     /* vamana: R, most neighbours per node; 0 otherwise */
    size_t start_points;       /* quantized vamana: sampled starting points kept */
    size_t start_groups;       /* the groups they are filed in (0: scored as one sample) */
    int io_fallback;           /* 1: with ROTOR_IO_AUTO, io_uring could not be used for the
                                  vectors on disk: at open (io_backend is then "pread") or at
                                  some search whose ring was refused (ENOMEM, EPERM, io_uring
                                  disabled), which read with pread instead */
    size_t labelled;           /* vectors carrying at least one label */
    size_t labels;             /* distinct labels */
    size_t bytes_labels;       /* the labels and their posting lists (counted in bytes_total) */
    int user_keys;             /* 1: some key is not its row number (the index keeps a key
                                  table); 0: every key is the row number */
    size_t bytes_keys;         /* the keys and their hash table (0 without user keys) */
    size_t slots;              /* slots in use: count + deleted */
    size_t deleted;            /* removed vectors still holding their slot */
    size_t unconsolidated;     /* of those, removed since the last consolidation */
    size_t free_slots;         /* of those, slots the next adds take (consolidated) */
    int writable;              /* 1: opened writable, changes are appended to the file */
    size_t log_records;        /* records in the file's update log: those replayed at open and
                                  those appended since (0 after a save over the file) */
    size_t log_bytes;          /* the bytes of those records */
    size_t log_skipped;        /* of those records, changes that had failed when they were
                                  made (a crash came before their record was cut off) */
    size_t log_tail_bytes;     /* bytes after the log's last whole record when opened: an
                                  append a crash cut short, ignored (a writable open cuts
                                  them off) */
    size_t graph_on_disk;      /* vamana under a RAM budget: records read from disk by the
                                  searches (0: the graph is in RAM) */
    size_t graph_cached;       /* of the records, those a cache keeps in RAM */
    size_t build_shards;       /* vamana built within rotor_params.build_memory: the shards it
                                  was split into (0: built in one piece, or opened) */
} rotor_index_stats;

ROTOR_API rotor_status rotor_index_stats_get(const rotor_index *index, rotor_index_stats *out);

/* ---------------------------------------------------------------------------
 * What an index measured about itself: the calibration table a search by
 * recall reads, and what an automatic configuration tried.
 * ------------------------------------------------------------------------ */

/* One search setting and what it reached. Settings a kind does not use are
 * 0. Costs are modelled from the work each search counted (records
 * expanded, codes scored, vectors reranked or read from disk), weighted by
 * what each costs on a typical machine: they repeat exactly from run to
 * run, where times on a shared machine would not. */
typedef struct rotor_calibration_row {
    uint32_t list_size, rerank, refine, nprobe;
    uint32_t start_points;  /* vamana, quantized: as rotor_search_params' (0: its default) */
    uint32_t max_neighbors; /* vamana: as rotor_search_params' (0: all) */
    float recall;           /* mean recall@k over the calibration queries */
    float recall_low;       /* less two standard errors: what a search by recall relies on */
    float cost_ns;          /* modelled nanoseconds per query */
} rotor_calibration_row;

/* A configuration the automatic choice measured on its sample. */
typedef struct rotor_auto_candidate {
    char quant[32];      /* "none" for full precision */
    char walk_quant[32]; /* "" when the walk uses quant */
    int32_t neighbor_codes;
    /* Its cheapest setting reaching the target on the sample (list_size 0:
     * none did, or none reached 0.99), the recall there (or the best it
     * reached), and what the choice compares: the geometric mean of the
     * modelled costs of its cheapest settings reaching the target and
     * 0.99 (0: not both reached; negative: its measuring stopped once
     * every setting left would cost too much to come under -cost_ns, the
     * best of the candidates measured before it). */
    uint32_t list_size, rerank;
    float recall;
    float cost_ns;
    int32_t chosen;
} rotor_auto_candidate;

typedef struct rotor_tuning {
    /* The calibration table: `rows` settings measured at recall@k over
     * `queries` queries (0 rows: the index has none). */
    uint32_t k, queries;
    size_t rows;
    const rotor_calibration_row *row;
    double calibration_seconds;
    /* 1: the queries were rows of the index searched as if held out (the
     * build's calibration), 0: queries given to rotor_index_tune. Rows
     * stand for queries like them; queries of another kind (questions
     * against documents, images not in the set) may need more work for the
     * same recall: tune with a random sample of them. */
    int32_t rows_as_queries;
    /* The automatic configuration (0 candidates: the build was told its
     * configuration): the sample it measured, its held-out queries, the
     * target and the time it took. */
    float target_recall;
    size_t sample, sample_queries;
    double auto_seconds;
    size_t candidates;
    const rotor_auto_candidate *candidate;
} rotor_tuning;

/* The index's tuning record; the pointers stay valid until the index is
 * closed or tuned again. */
ROTOR_API rotor_status rotor_index_tuning(const rotor_index *index, rotor_tuning *out);

/* Measures the calibration table again (and keeps it: saved with the
 * index), with `queries` (float32, exact neighbours computed over the
 * index's full vectors) or, when NULL, with rows of the index searched as if
 * held out. threads 0 = one per core. */
ROTOR_API rotor_status rotor_index_tune(rotor_index *index, const rotor_matrix *queries,
                                        uint32_t threads);

/* What a search by recall would use: fills the settings of *params still
 * at their defaults (list_size, rerank, refine, nprobe) from the
 * calibration table for `recall` at k, and clears params->target_recall.
 * For a tool that reports the settings it searched with. Fails as such a
 * search would. */
ROTOR_API rotor_status rotor_search_params_for_recall(const rotor_index *index, float recall,
                                                      size_t k, rotor_search_params *params);

/* The index's version of the vector with key `id` (dim floats): the stored
 * vector, or for a quantized index the decoded code (rotor_index_get gives
 * the stored one). Cosine indexes hold normalised vectors. A key no vector
 * has is ROTOR_ERR_NOT_FOUND. */
ROTOR_API rotor_status rotor_index_reconstruct(const rotor_index *index, int64_t id, float *out);

/* The distances the index's scan would assign (estimates, for a quantized
 * index; exact otherwise) between one query and the vectors with keys
 * `ids[0..n)` (ROTOR_ERR_NOT_FOUND for a key no vector has). */
ROTOR_API rotor_status rotor_index_estimate(const rotor_index *index, const float *query,
                                            size_t dim, const int64_t *ids, size_t n,
                                            float *distances);

/* Gives vectors their labels, replacing what they carried: `ids` are the
 * ids searches return for them, their keys (NULL: the first labels->rows
 * vectors in the order they were added, every vector of an index just
 * built). A key no vector has is ROTOR_ERR_NOT_FOUND. On failure nothing changed. A
 * writer, as rotor_index_add ("Threads"). */
ROTOR_API rotor_status rotor_index_set_labels(rotor_index *index, const int64_t *ids,
                                              const rotor_labels *labels);

/* The labels of vector `id`: up to `cap` of them into out (ascending,
 * each once; out may be NULL when cap is 0); *count is how many it
 * carries. */
ROTOR_API rotor_status rotor_index_get_labels(const rotor_index *index, int64_t id, uint32_t *out,
                                              size_t cap, size_t *count);

/* Releases the index; NULL is accepted. */
ROTOR_API void rotor_index_close(rotor_index *index);

/* ---------------------------------------------------------------------------
 * Index files (format: storage/FORMAT.md in the source tree).
 * ------------------------------------------------------------------------ */

/* Writes the index to `path`: into an unnamed file in the same directory
 * (O_TMPFILE; a named, locked temporary where the file system lacks it),
 * flushed to disk, then given a name and renamed over `path` (and the
 * directory flushed), so `path` holds the old file or the new one whatever
 * happens, never a part, and a killed writer leaves no temporary behind
 * (a named one left by a kill is removed by the next writer of `path`).
 * Every section carries an XXH3-64 checksum.
 *
 * Output paths, for every writer of the library (index files, data sets):
 * a missing or regular file is replaced; a symbolic link is followed (the
 * link stays and the regular file it names is replaced; a link to nothing is
 * refused); anything else (directory, FIFO, socket, device) is refused with
 * ROTOR_ERR_IO before anything is written. A full disk (ENOSPC) or a file
 * size limit (EFBIG) fails with a sentence naming the file and the cause;
 * the old file stays whole. (A process that leaves SIGXFSZ at its default
 * action is killed by the kernel before it sees EFBIG; the rotor tool
 * ignores the signal.) */
ROTOR_API rotor_status rotor_index_save(const rotor_index *index, const char *path);

/* The output-path rule above, checked without writing: ROTOR_OK when `path`
 * may be written, else ROTOR_ERR_IO or ROTOR_ERR_INVALID_ARGUMENT with a
 * sentence. For tools that check every output before starting work. */
ROTOR_API rotor_status rotor_path_check_output(const char *path);

typedef enum rotor_io_backend {
    ROTOR_IO_AUTO = 0,  /* io_uring where the kernel permits it, else pread */
    ROTOR_IO_URING = 1, /* io_uring or fail */
    ROTOR_IO_PREAD = 2, /* one pread per vector */
} rotor_io_backend;

typedef struct rotor_open_params {
    rotor_vectors_place vectors; /* default ROTOR_VECTORS_AS_SAVED */
    rotor_io_backend io;         /* vectors on disk: default ROTOR_IO_AUTO */
    /* Vectors on disk: -1 (default) bypasses the page cache (O_DIRECT)
     * where the file system allows it; 0 reads through the cache; 1 fails
     * where O_DIRECT is refused. The environment variable ROTOR_IO
     * (auto, uring, pread) overrides `io`. */
    int direct_io;
    /* 1: hash every section before returning (reads the whole file); 0
     * (default): check the header, the section table and the small
     * sections only, so a large index opens at once. Searching a damaged
     * unverified file returns poor results, never reads out of bounds. */
    int verify;
    /* 1: read the file with pread instead of mapping it, then copy the
     * graph, the code stores and (when they stay in RAM) the vectors into
     * memory of the index's own, on huge pages where the system offers them
     * (transparent huge pages): the open reads all of it, and a search,
     * which touches a new page at nearly every step, runs 4-14 % faster for
     * the TLB misses it no longer takes. The graph's neighbour lists are
     * checked as they are copied. Nothing of the file stays mapped, so this
     * is the mode for callers who cannot promise the file stays unchanged
     * while the index is open (see "Mapped files" below). With vectors on
     * disk the vectors section is not read at open. 0: map the file; pages
     * load as searches touch them, and the open reads only what it checks.
     * -1 (rotor_open_params_default): map the file, then copy the same
     * arrays as 1 does when the graph is in RAM and the copy takes at most
     * half of the memory the system has available (rotor_index_stats.
     * copied says which), and stays mapped when an allocation for the copy
     * fails; the file's smaller sections stay mapped. */
    int load;
    /* 1: changes go to the file. The index keeps the file open for
     * writing (an exclusive lock on it: a second writable open of the
     * file, here or in another process, is refused with ROTOR_ERR_IO, and
     * so is a save by another index over it), and every add, update,
     * remove and set_labels that succeeds has been appended to the file's
     * update log before it returns; see "Durable changes" below. 0
     * (default): the file is only read; changes stay in memory until
     * rotor_index_save. */
    int writable;
    /* With writable: 1 flushes each change to disk (fdatasync) before its
     * call returns, as if rotor_index_sync followed it; 0 (default): only
     * rotor_index_sync does. */
    int sync_each_change;
    rotor_allocator allocator;
    /* Vamana: the most bytes the graph and its codes may keep in RAM. 0
     * (default): the budget the index was built with (rotor_params.
     * ram_budget), none if it had none. A budget that holds the whole
     * graph opens it in RAM, as without one; a smaller one needs a file
     * built with a budget (its node pages) and keeps the walking codes,
     * the starting points and a cache of records in RAM, the vectors on
     * disk; an index opened so takes no adds, removes or load (a
     * budget below the walking codes alone is refused, naming what they
     * need). ROTOR_RAM_UNLIMITED: all in RAM whatever the build said. */
    uint64_t ram_budget;
} rotor_open_params;

#define ROTOR_RAM_UNLIMITED UINT64_MAX

ROTOR_API rotor_open_params rotor_open_params_default(void);

/* Opens an index written by rotor_index_save. The file is mapped, not read
 * (unless params->load): its pages are loaded as searches touch them.
 * Truncated, foreign, damaged and newer-version files are refused, each with its own sentence
 * (ROTOR_ERR_FORMAT, ROTOR_ERR_CORRUPT, ROTOR_ERR_UNSUPPORTED). An opened
 * index may take rotor_index_add (its sections are then copied to memory)
 * unless its vectors are on disk. `params` may be NULL. The file is opened
 * once, without blocking, and must be a regular file; vectors left on disk
 * are read through that same descriptor.
 *
 * Mapped files. rotor never modifies the sections of an index file in
 * place: a save writes a new file and renames it over the old one, so an
 * index open on the old file keeps its pages, and a writable index (see
 * "Durable changes" below) only appends after them, where no mapping
 * reaches. Another program must not modify an index file in
 * place either (truncate it, write into it): the pages of a mapped file
 * change under the open index, and a truncated mapping ends the process with
 * SIGBUS on the next search that touches it. Callers that cannot promise
 * this open with `load` = 1, which reads the file instead of mapping it. */
ROTOR_API rotor_status rotor_index_open(const char *path, const rotor_open_params *params,
                                        rotor_index **out);
/* The same on a descriptor the caller opened (duplicated; the caller still
 * closes its own). `name` names the file in sentences. A writable open
 * opens the same file again for writing (through /proc/self/fd), so fd
 * may be read-only. */
ROTOR_API rotor_status rotor_index_open_fd(int fd, const char *name,
                                           const rotor_open_params *params, rotor_index **out);

/* Durable changes. An index opened with rotor_open_params.writable = 1
 * records each change in its file, in an update log after the sections
 * (storage/FORMAT.md), which every open of the file replays, so the
 * opened index holds the changes:
 *   - A change that returned ROTOR_OK (rotor_index_add, _add_with_keys,
 *     _update, _remove, _set_labels) has been written to the file: it
 *     survives the end of the process, by a crash or kill -9 included,
 *     but, until synced, not a power loss or a crash of the operating
 *     system.
 *   - rotor_index_sync flushes the file to disk: every change that
 *     returned before it was called then survives a power loss too. With
 *     sync_each_change, each change is flushed before it returns.
 *   - A change is all or nothing in the file too: a crash while it is
 *     written leaves it whole or absent, and the next open applies every
 *     whole record and ignores an unfinished one at the end. A change
 *     that fails leaves the file as it was: its record, written first, is
 *     cut off again. Only a crash in that instant keeps such a record;
 *     the next open then skips it if the change failed for its arguments
 *     (a missing or taken key, NaN), and makes the change if it failed
 *     for lack of memory.
 *   - Not recorded: rotor_index_consolidate (the next open consolidates
 *     as the replayed removes call for), rotor_index_tune's table; both
 *     reach the file with rotor_index_save.
 *   - rotor_index_save over the index's own file writes it whole with
 *     the log folded into its sections; the index then appends to the new
 *     file. Saved elsewhere, the index goes on appending to its file.
 *   - After a failed sync (the disk refused the data) the index takes no
 *     more changes (ROTOR_ERR_IO): the kernel may have dropped what it
 *     could not write, so the file's state is unknown. A save over the
 *     file writes it whole and lifts this.
 *   - With its full vectors on disk an index takes no new vectors (adds
 *     and updates are refused, as without writable); removes and labels
 *     are recorded. A file whose log adds vectors opens with its vectors
 *     in RAM only (ROTOR_ERR_UNSUPPORTED otherwise) until it is saved.
 *   - The file must not be rewritten by anything else while the index is
 *     open ("Mapped files" above); rotor's own saves over it are refused.
 * rotor_index_close does not sync. Not for an index that was not opened
 * writable (ROTOR_ERR_UNSUPPORTED). A sync takes the writers' turn: it
 * waits for a change in progress (which it then covers), and searches go
 * on meanwhile. */
ROTOR_API rotor_status rotor_index_sync(const rotor_index *index);

/* Builds an index over the vectors of a data set file (any format
 * rotor_reader_open reads) and saves it to `out_path`, without ever holding
 * the vectors in memory: the input is streamed once, converted to float32
 * into an unnamed temporary file beside `out_path` that the build maps (the
 * kernel keeps only the pages in use, and drops them under memory
 * pressure), and that disappears with the build, even a killed one. An
 * `out_path` that is the input file (any name of it) is refused. Memory holds the codes, the graph
 * or lists and the build's working sets. The result equals rotor_index_build on the same rows
 * followed by rotor_index_save. */
ROTOR_API rotor_status rotor_index_build_file(const rotor_params *params, const char *input_path,
                                              const char *out_path);
/* The same with keys for the rows (as rotor_index_build_with_keys):
 * `nkeys` must be the file's row count. */
ROTOR_API rotor_status rotor_index_build_file_with_keys(const rotor_params *params,
                                                        const char *input_path, const int64_t *keys,
                                                        size_t nkeys, const char *out_path);

/* Checks every byte of an index file: the header, every section's
 * checksum and the structure (every graph and list id in range). The file
 * is read with pread, never mapped, so a file changed or truncated by
 * another program fails the check instead of the process. */
ROTOR_API rotor_status rotor_index_verify(const char *path);
/* The same on a descriptor the caller opened (see rotor_index_open_fd). */
ROTOR_API rotor_status rotor_index_verify_fd(int fd, const char *name);

/* ---------------------------------------------------------------------------
 * Names and diagnostics.
 * ------------------------------------------------------------------------ */
ROTOR_API const char *rotor_metric_name(rotor_metric metric);
/* Parses "l2", "ip" or "cosine"; returns ROTOR_ERR_INVALID_ARGUMENT otherwise. */
ROTOR_API rotor_status rotor_metric_parse(const char *name, rotor_metric *out);
ROTOR_API const char *rotor_index_kind_name(rotor_index_kind kind);

/* The SIMD instruction set the distance kernels run on: "avx512", "avx2" or
 * "scalar". Chosen once from CPUID; the environment variable ROTOR_SIMD
 * (scalar, avx2, avx512) can lower it, never raise it past the hardware. */
ROTOR_API const char *rotor_simd_level(void);

#ifdef __cplusplus
}
#endif

#endif /* ROTOR_H */
