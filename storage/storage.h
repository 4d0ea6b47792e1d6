/*
 * storage/ — bytes on disk, no graph knowledge: readers and writers of data
 * set files (TEXMEX .fvecs/.ivecs/.bvecs, big-ann .fbin/.u8bin/.i8bin/.ibin,
 * NumPy .npy, (Fashion-)MNIST IDX, gzip or not), the vector store that
 * reads rows of a file for reranking (vstore.c), and the index file's
 * sections and checksums (ixfile.c). The public entry points of the data
 * set readers (rotor_file_probe, rotor_reader_*, rotor_matrix_*) are
 * defined here; this header holds what the rest of the library shares.
 * Private to the library.
 */
#ifndef ROTOR_STORAGE_H
#define ROTOR_STORAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/common.h"

/* The format a path's extension names (case-insensitive); ROTOR_FORMAT_UNKNOWN
 * if none does (the caller may then sniff the IDX magic). */
rotor_file_format ds_format_from_path(const char *path);

/* Element type stored by a format (IDX and NPY: from the header, so
 * ROTOR_ELEM_F32 is returned only as a placeholder). */
rotor_elem_type ds_format_elem_type(rotor_file_format format);

/* "float32", "uint8", "int8", "int32"; "unknown" otherwise. */
const char *ds_elem_name(rotor_elem_type type);

/* Largest row count or dimension a header may declare before it is called
 * absurd: protects against allocating terabytes from a corrupt header. */
#define DS_MAX_DIM ((size_t)1 << 20)
#define DS_MAX_ROWS ((size_t)1 << 40)

/* Deflate never expands data by more than about 1032:1, so a gzip file of
 * s bytes cannot hold more than this many times s uncompressed bytes. Lets a
 * gzip IDX header be called a liar before anything is allocated for it. */
#define DS_GZIP_MAX_RATIO 1032u

/* The extensions rotor_matrix_read understands, for error sentences. */
#define DS_FORMAT_LIST ".fvecs, .ivecs, .bvecs, .fbin, .u8bin, .i8bin, .ibin, .npy"

/* ---- the streaming reader (ds.c), shared with npy.c and idx.c ----------- */

struct gzFile_s;

struct rotor_reader {
    rotor_file_info info;
    char *path;             /* the caller's path, quoted in every sentence */
    int fd;                 /* -1 once zlib owns it */
    struct gzFile_s *gz;    /* set for gzip-compressed IDX */
    uint64_t file_size;     /* bytes on disk (compressed size for gzip) */
    uint64_t data_offset;   /* first payload byte (of the uncompressed stream for gzip) */
    uint64_t gz_pos;        /* uncompressed bytes consumed so far (gzip) */
    size_t elem_size;       /* bytes of one element in the file */
    size_t row_bytes;       /* cols * elem_size */
    size_t record_bytes;    /* bytes of one row on disk: row_bytes, + 4 for *vecs */
    size_t next_row;        /* rows handed out so far */
    unsigned char *scratch; /* *vecs records staged before their headers are stripped */
    size_t scratch_rows;
    bool gz_finished;         /* the end-of-stream check of gzip IDX has run */
    uint32_t gz_crc;          /* CRC-32 of the uncompressed bytes read so far (gzip) */
    unsigned char gz_tail[8]; /* the file's last 8 bytes: the trailer if nothing follows */
    char shape[96];           /* "1000 x 128 float32", for sentences */
    rotor_status failed;      /* a reader that failed keeps failing the same way */
    char failed_text[512];
};

/* Reads up to n bytes at `offset` of a plain file; *got < n only at the end
 * of the file. ROTOR_ERR_IO with strerror on failure. */
rotor_status ds_read_at(rotor_reader *r, void *buf, size_t n, uint64_t offset, size_t *got);

/* With info.rows/cols/type, data_offset and shape set: fills elem_size and
 * row_bytes, and checks that the payload ends exactly at the end of the file
 * (truncated, trailing garbage, sizes that overflow). */
rotor_status ds_check_payload(rotor_reader *r);

/* Little-endian and big-endian loads of header fields. */
static inline uint32_t ds_le32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint32_t ds_be32(const unsigned char *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

/* Bound on the retries of a read or write the kernel interrupted (EINTR) or
 * asked to repeat (EAGAIN): a signal storm or a stuck device becomes an
 * error instead of a hang. */
#define DS_MAX_RETRIES 1000u

/* Opens `path` for reading, once: without blocking (a FIFO or a device
 * would hold an open or a read forever), checked with fstat to be a regular
 * file, and switched back to blocking reads. Returns the descriptor, or -1
 * with the error set: "cannot open '<path>': <reason>" or "'<path>' is a FIFO,
 * not a regular file". */
int ds_open_input(const char *path);
/* "a FIFO", "a directory", ... for a stat mode, in sentences. */
const char *ds_file_kind(unsigned mode);
/* The same checks on a duplicate of a descriptor the caller opened. */
int ds_dup_input(int fd, const char *path);
/* A descriptor of its own for the file behind fd (through /proc/self/fd),
 * so that its flags (O_DIRECT) are not shared with fd; where /proc is
 * missing, a duplicate, and *shared is set. */
int ds_reopen_input(int fd, const char *path, bool *shared);

/* ---- outfile.c: how a file is replaced ------------------------------------
 *
 * Every writer goes through this: the target is checked
 * (rotor_path_check_output: missing or regular, a symbolic link followed),
 * the contents go to an unnamed file in its directory (a named, locked one
 * where the file system has no O_TMPFILE), and commit flushes it, gives it a
 * name and renames it over the target. A kill leaves the old file or the
 * new one; a failure leaves the old one and no temporary. */
typedef struct ds_out ds_out;

rotor_status ds_out_open(const rotor_allocator *a, const char *path, ds_out **out);
/* The same with a named, locked temporary even where O_TMPFILE works: the
 * way taken on file systems without it, reachable by tests. */
rotor_status ds_out_open_named(const rotor_allocator *a, const char *path, ds_out **out);
/* The temporary's name in the target's directory, "" while it has none. */
const char *ds_out_temp_name(const ds_out *o);
/* The descriptor to write (and read, for a spill file) through. */
int ds_out_fd(const ds_out *o);
/* True when both paths exist and are one file (device and inode: hard and
 * symbolic links included). */
bool ds_same_file(const char *a, const char *b);
/* The caller's path, for sentences. */
const char *ds_out_name(const ds_out *o);
/* fsync, link, rename over the target, fsync of the directory. Frees o
 * whatever the outcome; on failure the target is untouched. A target an
 * index opened writable holds (its update log's lock) is refused. */
rotor_status ds_out_commit(ds_out *o);
/* The same for a caller that holds the target's lock itself (a writable
 * index saved over its own file), handing back a descriptor of the new
 * file, open for reading and writing and holding its exclusive lock from
 * before it had the target's name; -1 on failure. */
rotor_status ds_out_commit_keep(ds_out *o, int *fd);
/* Drops the new contents, leaving the target untouched; accepts NULL. */
void ds_out_abort(ds_out *o);

/* All n bytes at `offset` of fd, retrying short and interrupted calls;
 * ROTOR_ERR_IO naming `what` when the system refuses or the file ends. */
rotor_status ds_pread_full(int fd, void *buf, size_t n, uint64_t offset, const char *what);
rotor_status ds_pwrite_full(int fd, const void *buf, size_t n, uint64_t offset, const char *what);

/* Writers of large files call this as they go (every DS_WRITE_BEHIND
 * bytes): it writes [from, to) of fd back to disk and, unless the writer
 * reads it next (keep), drops it from the page cache. Dirty pages cannot
 * be reclaimed until written, so without it a writer under a memory limit
 * is killed for pages it no longer needs; written pages are clean, and the
 * kernel reclaims those it needs without a further hint. */
#define DS_WRITE_BEHIND ((uint64_t)64 << 20)
void ds_write_behind(int fd, uint64_t from, uint64_t to, bool keep);

/* ---- npy.c -------------------------------------------------------------- */

/* Reads and checks the .npy header of r: fills info, data_offset, shape, and
 * checks the payload size. */
rotor_status npy_read_header(rotor_reader *r);

/* Writes the version 1.0 header (magic, length, dict, padding to 64 bytes) for
 * a C-order rows x cols matrix of `type` into buf; returns its length, or 0
 * if `cap` is too small. */
size_t npy_format_header(unsigned char *buf, size_t cap, rotor_elem_type type, size_t rows,
                         size_t cols);

/* ---- idx.c -------------------------------------------------------------- */

/* True if the first bytes of a file look like an IDX header or a gzip stream
 * (which idx_open then checks for an IDX header inside). */
bool idx_sniff(const unsigned char *head, size_t n);

/* Opens r as IDX, compressed or not: reads and checks the header, fills info,
 * data_offset and shape. */
rotor_status idx_open(rotor_reader *r);

/* Reads the next `bytes` payload bytes of a gzip IDX file into dst. */
rotor_status idx_gz_read(rotor_reader *r, void *dst, size_t bytes);

/* After the last row of a gzip IDX file: fails if data follows it or the
 * stream's checksum is wrong. */
rotor_status idx_gz_finish(rotor_reader *r);

/* Releases the zlib stream (and the descriptor it owns); accepts none. */
void idx_close(rotor_reader *r);

/* ---- vstore.c: rows of a file, read in batches ----------------------------
 *
 * A read-only array of `rows` fixed-size rows at `offset` in a file, read a
 * batch at a time: all of one query's rerank candidates go to the kernel in
 * one io_uring submission (registered buffers, O_DIRECT where the file
 * system allows it), or, where io_uring is not permitted, one pread each.
 * The backend is chosen once at open. Readers (a ring and its buffers) are
 * pooled in the store, so each search thread works on its own ring. */
typedef enum vstore_backend {
    VSTORE_AUTO = 0,  /* io_uring if the kernel permits it, else pread */
    VSTORE_URING = 1, /* io_uring, or fail */
    VSTORE_PREAD = 2, /* pread, one call per row */
} vstore_backend;

typedef struct vstore_params {
    const char *path;       /* quoted in every error sentence */
    uint64_t offset;        /* byte offset of row 0 in the file */
    size_t row_bytes;       /* bytes of one row, > 0 */
    size_t rows;            /* rows in the store; the file must hold them all */
    vstore_backend backend; /* VSTORE_AUTO by default */
    int direct;             /* -1 probe O_DIRECT and fall back; 0 never; 1 require */
    unsigned depth;         /* rows one submission holds, 0 = 64; larger batches loop */
    /* Rows packed into pages: rows_per_page rows side by side at the start
     * of each page of page_bytes, so that no row straddles a page (a read
     * of one row is one page, as a disk reads it). 0: rows end to end. */
    size_t rows_per_page, page_bytes;
    bool use_fd; /* read a duplicate of fd rather than opening path */
    int fd;
} vstore_params;

typedef struct vstore vstore;
typedef struct vstore_reader vstore_reader;

/* Opens the file read-only (or duplicates p->fd), checks it holds offset +
 * rows * row_bytes bytes, probes O_DIRECT and io_uring as asked. */
rotor_status vstore_open(const rotor_allocator *a, const vstore_params *p, vstore **out);
/* Releases the store and every pooled reader; accepts NULL. No reader may
 * be out. */
void vstore_close(vstore *v);
/* The backend chosen at open (never VSTORE_AUTO), and its name
 * ("io_uring", "pread"). */
vstore_backend vstore_backend_used(const vstore *v);
/* VSTORE_AUTO only: true when io_uring could not be used, at open (the
 * probe failed, so the store reads with pread) or later (a reader's ring
 * was refused and that reader reads with pread). VSTORE_URING fails
 * instead; VSTORE_PREAD never asked for io_uring. */
bool vstore_fell_back(const vstore *v);
const char *vstore_backend_name(vstore_backend b);
/* Whether reads bypass the page cache (O_DIRECT). */
bool vstore_direct(const vstore *v);

/* A reader from the store's pool, or a new one (its ring and buffers). Any
 * number of threads may get and put readers at once; a reader is used by
 * one thread at a time. */
rotor_status vstore_reader_get(const vstore *v, vstore_reader **out);
void vstore_reader_put(const vstore *v, vstore_reader *r);

/* Called once per row read: j is the row's position in the ids array, row
 * points at row_bytes bytes valid only during the call. */
typedef void (*vstore_row_fn)(void *ctx, size_t j, const void *row);

/* Reads rows ids[0..n) and hands each to fn as it arrives (in any order).
 * Batches of up to `depth` rows go out in one submission. An id >= rows
 * is ROTOR_ERR_INVALID_ARGUMENT; a failed or short read, ROTOR_ERR_IO with
 * the file, row and reason. */
rotor_status vstore_read(vstore_reader *r, const uint32_t *ids, size_t n, vstore_row_fn fn,
                         void *ctx);

/* What a source of rows answers: a row to read (*id set), none for now
 * (ask again after the next completion; with no read in flight that is
 * the end), or the end (it is not asked again). */
typedef enum vstore_next {
    VSTORE_NEXT_END = 0,
    VSTORE_NEXT_ROW = 1,
    VSTORE_NEXT_LATER = 2,
} vstore_next;
typedef vstore_next (*vstore_next_fn)(void *ctx, uint32_t *id);

/* Reads rows as `next` names them, until it says the end, handing each to
 * fn (ctx for both) with j its position in that sequence; rows arrive in
 * any order. The first `burst` go out as fast as the reader's slots allow;
 * after them at most `window` (>= 1) reads are in flight, and next is asked
 * for a row only when one can go out, after every completion that arrived
 * was handed to fn. So a caller that decides from the rows already scored
 * what to read next (a rerank that skips on a bound, a graph walk whose
 * next hop is the best candidate the records read so far gave) decides on
 * all but at most window - 1 of the rows before, and waits about one read
 * per `window` rows after the burst. (pread reads one row at a time, so
 * "later" from its source is the end.) An id >= rows ends the reads with
 * ROTOR_ERR_INVALID_ARGUMENT (the reads in flight are waited for); a failed
 * or short read, ROTOR_ERR_IO, as vstore_read. */
rotor_status vstore_read_stream(vstore_reader *r, size_t burst, unsigned window,
                                vstore_next_fn next, vstore_row_fn fn, void *ctx);

/* Rows read and nanoseconds spent waiting for them since the last call;
 * both counters restart at zero. */
void vstore_reader_take_stats(vstore_reader *r, uint64_t *reads, uint64_t *wait_ns);

/* ---- ixfile.c: the index file's container ----------------------------------
 *
 * One file: a 4 KiB first page holding a fixed header (the index's shape:
 * kind, metric, dimensions, counts, quantizer and navigator parameters) and
 * a table of sections, then the sections, each starting on a 4 KiB boundary
 * and checksummed with XXH3-64. What a section holds is its writer's
 * business; this layer only stores, bounds and checks bytes. The layout is
 * documented in storage/FORMAT.md. */
enum {
    IXF_PAGE = 4096,
    IXF_MAX_SECTIONS = 32,
    IXF_NAME = 32, /* quantizer names, tool version: NUL-padded */
};

/* Section ids: stable numbers in the file. */
typedef enum ixf_section_id {
    IXF_SEC_VECTORS = 1,    /* count x dim float32 */
    IXF_SEC_QUANT = 2,      /* the quantizer's parameter block (quant_save) */
    IXF_SEC_CODES = 3,      /* its code store of count codes */
    IXF_SEC_WALK_QUANT = 4, /* the graph's walking quantizer, when it differs */
    IXF_SEC_WALK_CODES = 5, /* its code store */
    IXF_SEC_GRAPH_META = 6, /* Vamana: layout, entry, starting points */
    IXF_SEC_GRAPH = 7,      /* Vamana: count node records */
    IXF_SEC_IVF_META = 8,   /* IVF: centroids and list sizes */
    IXF_SEC_IVF_IDS = 9,    /* IVF: every list's ids, end to end */
    IXF_SEC_IVF_CODES = 10, /* IVF: every list's code store, 64-byte aligned */
    IXF_SEC_TUNING = 11,    /* the calibration table and the automatic choice */
    IXF_SEC_RESIDUALS = 12, /* count float32 |x - x~| of the codes: their error bound */
    IXF_SEC_LABELS = 14,    /* each vector's labels, compressed rows */
    IXF_SEC_KEYS = 13,      /* count int64 keys, when some key is not its row number */
    IXF_SEC_DELETED = 15,   /* the removed vectors: a bitset over count, when some are */
    IXF_SEC_NODES = 16,     /* Vamana under a RAM budget: node records with vectors, in pages */
    IXF_SEC_IVF_QUANT = 17, /* IVF: the quantizer of residual list codes (quant_save) */
    IXF_SEC_VECTORS8 = 18,  /* instead of VECTORS: count x dim bytes, each coordinate's value */
} ixf_section_id;

/* The fixed header's description of the index (everything but the
 * container's own fields). */
typedef struct ixf_meta {
    uint32_t kind;   /* rotor_index_kind */
    uint32_t metric; /* rotor_metric */
    uint64_t dim, count;
    char quant[IXF_NAME];      /* "none" or a quantizer spec */
    char walk_quant[IXF_NAME]; /* "" or the graph's walking quantizer */
    uint64_t seed;
    uint32_t graph_degree, build_list, neighbor_codes, build_space, nlist;
    float alpha;
    uint32_t vectors_on_disk; /* the build's choice: open with vectors on disk */
    double train_seconds;
    char tool[IXF_NAME]; /* "rotor 0.1.0": the version that wrote the file */
    uint64_t created;    /* seconds since 1970 */
} ixf_meta;

/* ---- writing: a temporary file beside the target, renamed at commit ---- */
typedef struct ixf_writer ixf_writer;

rotor_status ixf_create(const rotor_allocator *a, const char *path, ixf_writer **out);
/* A section is opened, filled by any number of appends (streamed: it need
 * not be in memory at once) and closed; the next opens 4 KiB further on. */
rotor_status ixf_section_begin(ixf_writer *w, ixf_section_id id);
rotor_status ixf_append(ixf_writer *w, const void *data, size_t n);
/* Zero bytes up to the next multiple of `align` within the section. */
rotor_status ixf_pad(ixf_writer *w, size_t align);
rotor_status ixf_section_end(ixf_writer *w);
/* A whole section in one call: begin, one append, end. */
rotor_status ixf_put_section(ixf_writer *w, ixf_section_id id, const void *data, size_t n);
/* Writes the first page, fsyncs the file, renames it over `path` and
 * fsyncs the directory: the target is either untouched or whole. Frees w
 * whatever the outcome. */
rotor_status ixf_commit(ixf_writer *w, const ixf_meta *meta);
/* What ixf_commit_keep hands back: a descriptor of the new file (see
 * ds_out_commit_keep), its first page's checksum and its size. */
typedef struct ixf_kept {
    int fd;
    uint64_t checksum, size;
} ixf_kept;
/* ixf_commit for a writable index saved over its own file, whose lock it
 * holds: the target is not tested for a writer's lock, and the new file
 * comes back locked, for its update log to go on in. */
rotor_status ixf_commit_keep(ixf_writer *w, const ixf_meta *meta, ixf_kept *kept);
/* Drops the temporary file; accepts NULL. */
void ixf_abort(ixf_writer *w);

/* ---- reading: the whole file mapped read-only -------------------------- */
typedef struct ixf_file ixf_file;

typedef struct ixf_section {
    const uint8_t *data; /* inside the mapping; NULL when absent */
    uint64_t offset, size;
    uint64_t checksum; /* as recorded in the table */
} ixf_section;

typedef enum ixf_mode {
    IXF_MAP = 0,  /* map the file: pages load as they are touched */
    IXF_READ = 1, /* read it into memory of our own with pread, never map */
} ixf_mode;

/* Opens `path` (or, when fd >= 0, a duplicate of fd, `path` only naming
 * it), once and without blocking; checks the first page (magic, version,
 * endianness, header and table checksums, every section inside the size
 * it records, 4 KiB aligned, none twice); then maps that size of the file
 * or reads it. IXF_READ reads every byte but the vectors section, which
 * ixf_fill reads when it is wanted. Bytes past the recorded size are the
 * update log's (ixf_log_*), left to its reader. The descriptor stays open
 * until ixf_close. */
rotor_status ixf_open(const rotor_allocator *a, const char *path, int fd, ixf_mode mode,
                      ixf_file **out);
/* IXF_READ: reads the section into memory if it is not yet (only the
 * vectors and nodes sections can be missing); nothing to do for a mapping. */
rotor_status ixf_fill(ixf_file *f, ixf_section_id id);
/* Gives back the memory of a section the caller has copied out. IXF_READ:
 * its bytes read as zeros afterwards (the vectors section is read again by
 * ixf_fill); a mapping: its pages leave the process (read from the file
 * again if touched). */
void ixf_release(ixf_file *f, ixf_section_id id);
/* The open descriptor, for readers that go around the mapping. */
int ixf_fd(const ixf_file *f);
void ixf_close(ixf_file *f);
const ixf_meta *ixf_meta_of(const ixf_file *f);
const char *ixf_path(const ixf_file *f);
/* Where the update log starts (the size the first page records), and
 * the seed of its records' checksums (the first page's checksum). */
uint64_t ixf_log_start(const ixf_file *f);
uint64_t ixf_log_seed(const ixf_file *f);
/* The section `id` (data NULL, size 0 when the file has none). */
ixf_section ixf_get(const ixf_file *f, ixf_section_id id);
/* Hashes one section and compares with the table: ROTOR_ERR_CORRUPT naming
 * it on a mismatch. An absent section passes. */
rotor_status ixf_check(const ixf_file *f, ixf_section_id id);
/* Every section in turn. */
rotor_status ixf_check_all(const ixf_file *f);
/* Name of a section id ("graph"), for sentences. */
const char *ixf_section_name(uint32_t id);
/* Advises the kernel to read a section ahead (it will be used soon), or
 * that it will be read at random (no readahead). */
void ixf_advise(const ixf_file *f, ixf_section_id id, bool random);

/* ---- ixlog.c: the update log after the sections ---------------------------
 *
 * Records appended after the size the first page records (storage/
 * FORMAT.md, "The update log"): a 32-byte header (magic, type, sequence
 * number, payload bytes, XXH3-64 seeded with the first page's checksum)
 * and a payload of 8-byte aligned parts. This layer frames, checks,
 * appends, cuts back and syncs records; what a payload means is the index
 * layer's (index/log.c). */
enum { IXF_LOG_HEADER = 32 };

typedef enum ixf_log_type {
    IXF_LOG_ADD = 1,    /* vectors added, with their keys or none */
    IXF_LOG_REMOVE = 2, /* keys removed */
    IXF_LOG_UPDATE = 3, /* vectors replaced under their keys */
    IXF_LOG_LABELS = 4, /* labels set */
} ixf_log_type;

typedef struct ixf_log_record {
    uint32_t type;
    uint64_t seq;
    uint64_t offset;  /* of its header in the file */
    uint64_t size;    /* payload bytes, a multiple of 8 */
    uint8_t *payload; /* memory of the caller's allocator (ixf_log_record_free) */
} ixf_log_record;

/* The size of the file behind f now (the log grows past ixf_log_start). */
rotor_status ixf_file_size(const ixf_file *f, uint64_t *size);
/* Reads the record at byte `at` of f, whose file ends at `end`, as record
 * `seq` of the log. *whole is false, with nothing allocated, when no whole
 * record with a matching checksum starts there: the end of the log (an
 * append a crash cut short, or nothing). A whole record of an unknown
 * type or another sequence number is ROTOR_ERR_FORMAT: it was written
 * whole, and not by this layer. */
rotor_status ixf_log_read(const ixf_file *f, const rotor_allocator *a, uint64_t at, uint64_t end,
                          uint64_t seq, ixf_log_record *rec, bool *whole);
void ixf_log_record_free(const rotor_allocator *a, ixf_log_record *rec);
/* Looks for a whole record (any sequence number) at the 8-byte boundaries
 * of [from, end): after the end of a log, one means records were lost. */
rotor_status ixf_log_find_whole(const ixf_file *f, const rotor_allocator *a, uint64_t from,
                                uint64_t end, bool *found, uint64_t *at);

/* A piece of a payload; each starts on an 8-byte boundary (zeros pad the
 * one before). */
typedef struct ixf_part {
    const void *data;
    size_t size;
} ixf_part;

typedef struct ixf_log_writer ixf_log_writer;

/* Opens the file behind f for writing (a descriptor of its own, through
 * /proc or by path, checked to be the same file), takes its exclusive
 * lock (refused while another writer holds it), and cuts the file back
 * to `end`, the end of its last whole record; records continue from
 * sequence number `seq`. */
rotor_status ixf_log_writer_open(const ixf_file *f, const rotor_allocator *a, uint64_t end,
                                 uint64_t seq, ixf_log_writer **out);
void ixf_log_writer_close(ixf_log_writer *w);
/* Writes a record of `type` whose payload is the parts, after the last
 * one. It counts once ixf_log_commit says so; ixf_log_cancel takes it
 * back (its change failed). A failed write is cut back at once. */
rotor_status ixf_log_append(ixf_log_writer *w, uint32_t type, const ixf_part *parts, size_t n);
void ixf_log_commit(ixf_log_writer *w);
rotor_status ixf_log_cancel(ixf_log_writer *w);
/* fdatasync: every committed record is on disk. */
rotor_status ixf_log_sync(ixf_log_writer *w);
/* The end of the last committed record, and the next sequence number. */
uint64_t ixf_log_end(const ixf_log_writer *w);
uint64_t ixf_log_next_seq(const ixf_log_writer *w);
/* Whether the descriptor is the file `path` names now. */
bool ixf_log_is_file(const ixf_log_writer *w, const char *path);
/* After the index was saved over its file: appends go to the new file
 * (kept, from ixf_commit_keep, whose lock it holds), whose log is empty.
 * Clears a failure: the new file is whole. */
void ixf_log_rebase(ixf_log_writer *w, const ixf_kept *kept);

#endif /* ROTOR_STORAGE_H */
