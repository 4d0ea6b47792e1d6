/*
 * The vector store: full-precision rows read back from a file to rerank a
 * search's candidates. A query needs a few dozen rows scattered over a file
 * far larger than memory, so what matters is how many of them are in
 * flight at once, not the cost of one read.
 *
 * Backends
 *   - io_uring: each reader owns one ring, so search threads never share a
 *     submission queue or contend on its lock. A reader keeps up to `depth`
 *     reads in flight: the slots that completions free are refilled and the
 *     new reads go out with the wait for the next completion in one
 *     io_uring_enter, and every row is handed to the caller as it lands, so
 *     scoring overlaps with the reads still in flight.
 *   - pread: one call per row. It is the fallback where io_uring is not
 *     permitted (seccomp, io_uring_disabled, old kernels), and the
 *     reference the io_uring path is tested against.
 *   The backend is settled at open by a real read through a throwaway ring,
 *   not by io_uring_queue_init alone, so a kernel that creates rings but
 *   refuses IORING_OP_READ (before 5.6) or O_DIRECT through io_uring falls
 *   back at open instead of failing later in a search. ROTOR_IO overrides
 *   the caller's choice so that CLI tests and benchmarks can force either.
 *
 * Buffers. A reader owns one allocation of `depth` slots. With io_uring it
 * is registered (read_fixed), which spares the kernel pinning the pages on
 * every read; registration counts against RLIMIT_MEMLOCK, and when that is
 * refused the same buffer is used with plain reads: slower, still correct.
 * The file is registered too, for the same reason (no fget/fput per read).
 *
 * O_DIRECT. Rerank reads are random and rarely reused, so the page cache
 * mostly evicts things that are reused. O_DIRECT is switched on with fcntl
 * on the descriptor that was checked, so the probe cannot look at another
 * file than the one stat said was long enough. Given the caller's
 * descriptor, the store reopens the same file through /proc/self/fd: the
 * flag belongs to the open file description, and a duplicate would pass
 * O_DIRECT on to the caller's reads. Rows are generally not
 * aligned, so a slot holds the aligned span around its row:
 *
 *     file   ...|  align  |  align  |  align  |...
 *                   [ ------ row ------ ]
 *     slot       [ skip  | row bytes    | tail ]      one slot = at most
 *                ^ start rounded down     ^ end up   row_bytes + align - 1
 *                                                    rounded up to align
 *
 * and the caller gets a pointer `skip` bytes in. The span of the last row
 * may run past the end of the file; a short read is fine as long as it
 * covers the row. The alignment is found by reading 512 and then 4096
 * bytes from a buffer aligned to exactly that, so the probe tests memory
 * and offset alignment together.
 *
 * Locking. The store is immutable after open except for the reader pool, a
 * free list under one mutex held only to push or pop. A reader is built
 * outside the lock. A reader whose ring failed mid-batch (reads possibly
 * still aimed at its buffer) is destroyed on put rather than reused.
 */
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "storage/storage.h"

/* Largest row: io_uring moves at most 2^31 bytes per read, and a rerank row
 * is a few KiB; a bigger request is a bug upstream. */
#define VS_MAX_ROW_BYTES ((size_t)1 << 30)
/* A ring of 4096 entries is already past the depth where NVMe stops
 * gaining from more reads in flight. */
#define VS_MAX_DEPTH 4096u
#define VS_DEFAULT_DEPTH 64u
/* Bound on -EAGAIN / -EINTR retries of one read or one submission. */
#define VS_MAX_RETRIES 1000u
/* Size of the buffer the O_DIRECT and io_uring probes read into. */
#define VS_PROBE_BYTES 8192u

typedef struct vs_pool {
    pthread_mutex_t lock;
    vstore_reader *free;
    atomic_bool fell_back; /* a reader went to pread: its ring was refused */
} vs_pool;

struct vstore {
    rotor_allocator alloc;
    char *path;
    int fd;
    uint64_t offset;
    size_t row_bytes, rows;
    size_t rows_per_page, page_bytes; /* rows end to end: 1 and row_bytes */
    vstore_backend backend;
    bool asked_auto; /* VSTORE_AUTO: a ring refused later falls back to pread */
    bool direct;
    size_t align;  /* O_DIRECT alignment, 1 when buffered */
    size_t stride; /* bytes between slots of a reader's buffer */
    unsigned depth;
    vs_pool *pool;
};

/* One read in flight: row `id`, the j-th its source named, whose span
 * [start, start + len) is read into a slot; the row begins `skip` bytes
 * into it. */
typedef struct vs_op {
    size_t j;
    uint32_t id;
    uint64_t start;
    size_t len, got, skip;
    unsigned retries;
} vs_op;

struct vstore_reader {
    vstore_reader *next;
    const vstore *v;
    unsigned char *buf; /* slots * v->stride bytes */
    unsigned slots;
    bool has_ring;
    bool fixed_buf, fixed_file;
    bool broken; /* its ring failed with reads possibly in flight */
    struct io_uring ring;
    vs_op *ops;         /* slots */
    unsigned *free_ids; /* stack of free slots */
    unsigned nfree;
    uint64_t reads, wait_ns;
};

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void *alloc_aligned(const rotor_allocator *a, size_t size, size_t align, const char *what) {
    void *p = a->alloc(a->opaque, size, align);
    if (p == NULL)
        cm_fail(ROTOR_ERR_OUT_OF_MEMORY, "out of memory allocating %zu bytes for %s", size, what);
    return p;
}

const char *vstore_backend_name(vstore_backend b) {
    switch (b) {
    case VSTORE_AUTO: return "auto";
    case VSTORE_URING: return "io_uring";
    case VSTORE_PREAD: return "pread";
    }
    return "unknown";
}

vstore_backend vstore_backend_used(const vstore *v) { return v->backend; }
bool vstore_fell_back(const vstore *v) { return atomic_load(&v->pool->fell_back); }
bool vstore_direct(const vstore *v) { return v->direct; }

/* ---- open --------------------------------------------------------------- */

/* The backend asked for, after ROTOR_IO has had its say. */
static rotor_status choose_backend(const vstore_params *p, vstore_backend *out) {
    *out = p->backend;
    const char *env = getenv("ROTOR_IO");
    if (env == NULL || env[0] == '\0')
        return ROTOR_OK;
    if (strcmp(env, "uring") == 0 || strcmp(env, "io_uring") == 0)
        *out = VSTORE_URING;
    else if (strcmp(env, "pread") == 0)
        *out = VSTORE_PREAD;
    else if (strcmp(env, "auto") == 0)
        *out = VSTORE_AUTO;
    else
        return cm_fail(ROTOR_ERR_INVALID_ARGUMENT,
                       "the environment variable ROTOR_IO is '%s'; it must be uring, pread or auto",
                       env);
    return ROTOR_OK;
}

/* Switches v->fd to O_DIRECT and finds the alignment it needs; leaves it
 * buffered (v->direct false) when the file system or device refuses, which
 * is an error only if `required`. */
static rotor_status probe_direct(vstore *v, unsigned char *probe, bool required) {
    int flags = fcntl(v->fd, F_GETFL);
    if (flags < 0 || fcntl(v->fd, F_SETFL, flags | O_DIRECT) != 0) {
        int e = errno;
        if (!required)
            return ROTOR_OK;
        return cm_fail(ROTOR_ERR_UNSUPPORTED, "'%s' cannot be read with O_DIRECT: %s", v->path,
                       strerror(e));
    }
    static const size_t aligns[] = {512, 4096};
    int last = 0;
    for (size_t i = 0; i < sizeof aligns / sizeof aligns[0]; i++) {
        size_t al = aligns[i];
        /* probe is 4096-aligned; probe + 512 is aligned to 512 and no more. */
        unsigned char *buf = probe + (al == 512 ? 512 : 0);
        ssize_t k;
        unsigned retries = 0;
        do
            k = pread(v->fd, buf, al, 0);
        while (k < 0 && (errno == EINTR || errno == EAGAIN) && ++retries <= VS_MAX_RETRIES);
        if (k >= 0) {
            v->direct = true;
            v->align = al;
            return ROTOR_OK;
        }
        last = errno;
        if (last != EINVAL)
            break;
    }
    if (fcntl(v->fd, F_SETFL, flags) != 0)
        return cm_fail(ROTOR_ERR_IO, "cannot switch '%s' back from O_DIRECT: %s", v->path,
                       strerror(errno));
    if (required)
        return cm_fail(ROTOR_ERR_UNSUPPORTED,
                       "'%s' cannot be read with O_DIRECT at 512 or 4096-byte alignment: %s",
                       v->path, strerror(last));
    return ROTOR_OK;
}

/* 0 if a ring can be created here and reads this file (O_DIRECT included),
 * else the negative errno that refused. */
static int probe_uring(const vstore *v, unsigned char *probe) {
    struct io_uring ring;
    int ret = io_uring_queue_init(2, &ring, 0);
    if (ret < 0)
        return ret;
    for (unsigned attempt = 0; attempt < VS_MAX_RETRIES; attempt++) {
        struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
        if (sqe == NULL) {
            ret = -EBUSY;
            break;
        }
        io_uring_prep_read(sqe, v->fd, probe, v->direct ? (unsigned)v->align : 512u, 0);
        unsigned retries = 0;
        do
            ret = io_uring_submit_and_wait(&ring, 1);
        while (ret == -EINTR && ++retries <= VS_MAX_RETRIES);
        if (ret < 0)
            break;
        struct io_uring_cqe *cqe;
        retries = 0;
        do
            ret = io_uring_wait_cqe(&ring, &cqe);
        while (ret == -EINTR && ++retries <= VS_MAX_RETRIES);
        if (ret < 0)
            break;
        ret = cqe->res < 0 ? cqe->res : 0;
        io_uring_cqe_seen(&ring, cqe);
        if (ret != -EAGAIN && ret != -EINTR)
            break;
    }
    io_uring_queue_exit(&ring);
    return ret;
}

static void store_free(vstore *v) {
    rotor_allocator a = v->alloc;
    if (v->fd >= 0)
        close(v->fd);
    cm_free(&a, v->path);
    cm_free(&a, v->pool);
    cm_free(&a, v);
}

/* Checks the parameters and the file, probes O_DIRECT and io_uring. */
static rotor_status store_setup(vstore *v, const vstore_params *p, vstore_backend want) {
    size_t bytes;
    uint64_t end;
    const size_t pages = (p->rows + v->rows_per_page - 1) / v->rows_per_page;
    CM_RETURN_IF(cm_mul_overflow(pages, v->page_bytes, &bytes) ||
                     __builtin_add_overflow(p->offset, (uint64_t)bytes, &end) ||
                     end > (uint64_t)INT64_MAX,
                 ROTOR_ERR_INVALID_ARGUMENT,
                 "a vector store of %zu rows of %zu bytes at offset %llu of '%s' overflows a file "
                 "offset",
                 p->rows, p->row_bytes, (unsigned long long)p->offset, v->path);

    /* Opened once and checked on the descriptor (ds_open_input); given a
     * descriptor, the store reads the very file its caller checked. */
    bool shared = false;
    v->fd = p->use_fd ? ds_reopen_input(p->fd, v->path, &shared) : ds_open_input(v->path);
    if (v->fd < 0)
        return ROTOR_ERR_IO; /* the sentence is set */
    struct stat sb;
    CM_RETURN_IF(fstat(v->fd, &sb) != 0, ROTOR_ERR_IO, "cannot read '%s': %s", v->path,
                 strerror(errno));
    CM_RETURN_IF((uint64_t)sb.st_size < end, ROTOR_ERR_FORMAT,
                 "'%s' holds %llu bytes, the vector store needs %llu (%zu rows of %zu bytes at "
                 "offset %llu)",
                 v->path, (unsigned long long)sb.st_size, (unsigned long long)end, p->rows,
                 p->row_bytes, (unsigned long long)p->offset);

    unsigned char *probe = alloc_aligned(&v->alloc, VS_PROBE_BYTES, 4096, "the i/o probe");
    if (probe == NULL)
        return ROTOR_ERR_OUT_OF_MEMORY;
    rotor_status st = ROTOR_OK;
    /* O_DIRECT is a flag of the open file description: on one shared with
     * the caller it would turn the caller's reads into O_DIRECT reads. */
    if (p->direct != 0 && shared && p->direct == 1)
        st = cm_fail(ROTOR_ERR_UNSUPPORTED,
                     "'%s' cannot be read with O_DIRECT here: no /proc to reopen it with", v->path);
    else if (p->direct != 0 && !shared)
        st = probe_direct(v, probe, p->direct == 1);
    if (st == ROTOR_OK && want != VSTORE_PREAD) {
        int e = probe_uring(v, probe);
        if (e == 0)
            v->backend = VSTORE_URING;
        else if (want == VSTORE_AUTO)
            atomic_store(&v->pool->fell_back, true);
        else if (want == VSTORE_URING)
            st = cm_fail(ROTOR_ERR_UNSUPPORTED,
                         "io_uring cannot read '%s' here (%s); use the pread backend "
                         "(ROTOR_IO=pread)",
                         v->path, strerror(-e));
    }
    cm_free(&v->alloc, probe);
    CM_FORWARD(st);

    size_t slot = v->row_bytes;
    if (v->direct)
        slot = cm_round_up(v->row_bytes + v->align - 1, v->align);
    v->stride = cm_round_up(slot, v->direct ? v->align : CM_ALIGN);
    return ROTOR_OK;
}

rotor_status vstore_open(const rotor_allocator *a, const vstore_params *p, vstore **out) {
    *out = NULL;
    CM_RETURN_IF(p->path == NULL, ROTOR_ERR_INVALID_ARGUMENT, "the vector store needs a path");
    const char *path = p->path;
    CM_RETURN_IF(p->row_bytes == 0, ROTOR_ERR_INVALID_ARGUMENT,
                 "rows of the vector store in '%s' must have at least one byte", path);
    CM_RETURN_IF(p->row_bytes > VS_MAX_ROW_BYTES, ROTOR_ERR_INVALID_ARGUMENT,
                 "rows of the vector store in '%s' have %zu bytes, more than the %zu it reads "
                 "at once",
                 path, p->row_bytes, VS_MAX_ROW_BYTES);
    CM_RETURN_IF(p->rows == 0, ROTOR_ERR_INVALID_ARGUMENT,
                 "the vector store in '%s' must have at least one row", path);
    CM_RETURN_IF(p->direct < -1 || p->direct > 1, ROTOR_ERR_INVALID_ARGUMENT,
                 "direct must be -1 (probe), 0 or 1, not %d", p->direct);
    CM_RETURN_IF(p->backend != VSTORE_AUTO && p->backend != VSTORE_URING &&
                     p->backend != VSTORE_PREAD,
                 ROTOR_ERR_INVALID_ARGUMENT, "unknown vector store backend %d", (int)p->backend);
    CM_RETURN_IF(p->depth > VS_MAX_DEPTH, ROTOR_ERR_INVALID_ARGUMENT,
                 "a vector store reads at most %u rows per submission, not %u", VS_MAX_DEPTH,
                 p->depth);
    size_t per_page = p->rows_per_page, page_bytes = p->page_bytes;
    if (per_page == 0) {
        per_page = 1;
        page_bytes = p->row_bytes;
    }
    CM_RETURN_IF(per_page > page_bytes / p->row_bytes, ROTOR_ERR_INVALID_ARGUMENT,
                 "%zu rows of %zu bytes do not fit a page of %zu bytes in '%s'", per_page,
                 p->row_bytes, page_bytes, path);
    vstore_backend want;
    CM_FORWARD(choose_backend(p, &want));

    vstore *v = cm_calloc(a, sizeof *v, "the vector store");
    if (v == NULL)
        return ROTOR_ERR_OUT_OF_MEMORY;
    v->alloc = *a;
    v->fd = -1;
    v->offset = p->offset;
    v->row_bytes = p->row_bytes;
    v->rows = p->rows;
    v->rows_per_page = per_page;
    v->page_bytes = page_bytes;
    v->backend = VSTORE_PREAD;
    v->asked_auto = want == VSTORE_AUTO;
    v->align = 1;
    v->depth = p->depth == 0 ? VS_DEFAULT_DEPTH : p->depth;
    size_t plen = strlen(path) + 1;
    v->path = cm_alloc(a, plen, "the vector store's path");
    v->pool = cm_calloc(a, sizeof *v->pool, "the vector store's reader pool");
    if (v->path == NULL || v->pool == NULL) {
        store_free(v);
        return ROTOR_ERR_OUT_OF_MEMORY;
    }
    memcpy(v->path, path, plen);
    rotor_status st = store_setup(v, p, want);
    if (st == ROTOR_OK && pthread_mutex_init(&v->pool->lock, NULL) != 0)
        st = cm_fail(ROTOR_ERR_THREAD, "cannot create the vector store's mutex");
    if (st != ROTOR_OK) {
        store_free(v);
        return st;
    }
    *out = v;
    return ROTOR_OK;
}

/* ---- readers ------------------------------------------------------------ */

static void reader_free(vstore_reader *r) {
    if (r == NULL)
        return;
    const rotor_allocator *a = &r->v->alloc;
    if (r->has_ring)
        io_uring_queue_exit(&r->ring); /* also unregisters the buffer and file */
    cm_free(a, r->buf);
    cm_free(a, r->ops);
    cm_free(a, r->free_ids);
    cm_free(a, r);
}

/* A ring of `slots` entries with the buffer (and file) registered where
 * the kernel allows it. */
static rotor_status reader_ring(vstore_reader *r) {
    const vstore *v = r->v;
    int ret = -EINVAL;
#ifdef IORING_SETUP_COOP_TASKRUN
    /* Completions are only looked at inside io_uring_enter, so the kernel
     * need not interrupt the thread to run their task work. */
    ret = io_uring_queue_init(r->slots, &r->ring, IORING_SETUP_COOP_TASKRUN);
#endif
    if (ret == -EINVAL)
        ret = io_uring_queue_init(r->slots, &r->ring, 0);
    if (ret < 0)
        return cm_fail(ret == -ENOMEM ? ROTOR_ERR_OUT_OF_MEMORY : ROTOR_ERR_IO,
                       "cannot create an io_uring ring of %u entries for '%s': %s", r->slots,
                       v->path, strerror(-ret));
    r->has_ring = true;
    struct iovec iov = {r->buf, (size_t)r->slots * v->stride};
    r->fixed_buf = io_uring_register_buffers(&r->ring, &iov, 1) == 0;
    r->fixed_file = io_uring_register_files(&r->ring, &v->fd, 1) == 0;
    return ROTOR_OK;
}

rotor_status vstore_reader_get(const vstore *v, vstore_reader **out) {
    *out = NULL;
    pthread_mutex_lock(&v->pool->lock);
    vstore_reader *r = v->pool->free;
    if (r != NULL)
        v->pool->free = r->next;
    pthread_mutex_unlock(&v->pool->lock);
    if (r != NULL) {
        r->next = NULL;
        *out = r;
        return ROTOR_OK;
    }
    const rotor_allocator *a = &v->alloc;
    r = cm_calloc(a, sizeof *r, "a vector store reader");
    if (r == NULL)
        return ROTOR_ERR_OUT_OF_MEMORY;
    r->v = v;
    /* pread reads one row at a time, so it needs one slot. */
    r->slots = v->backend == VSTORE_URING ? v->depth : 1;
    size_t bytes = (size_t)r->slots * v->stride; /* bounded by the checks at open */
    r->buf = alloc_aligned(a, bytes, v->direct ? v->align : CM_ALIGN, "a vector store reader");
    rotor_status st = r->buf == NULL ? ROTOR_ERR_OUT_OF_MEMORY : ROTOR_OK;
    if (st == ROTOR_OK && v->backend == VSTORE_URING) {
        r->ops = cm_alloc(a, r->slots * sizeof *r->ops, "a vector store reader");
        r->free_ids = cm_alloc(a, r->slots * sizeof *r->free_ids, "a vector store reader");
        if (r->ops == NULL || r->free_ids == NULL)
            st = ROTOR_ERR_OUT_OF_MEMORY;
        else
            st = reader_ring(r);
        /* The probe at open succeeded, but a ring can still be refused now
         * (ENOMEM, EPERM once io_uring is switched off, no descriptor left):
         * under VSTORE_AUTO this reader reads with pread instead, and the
         * store remembers it so that the caller can say so. */
        if (st != ROTOR_OK && r->ops != NULL && r->free_ids != NULL && v->asked_auto) {
            cm_clear_error();
            st = ROTOR_OK;
            atomic_store(&v->pool->fell_back, true);
        }
    }
    if (st != ROTOR_OK) {
        reader_free(r);
        return st;
    }
    if (r->free_ids != NULL) {
        for (unsigned i = 0; i < r->slots; i++)
            r->free_ids[i] = r->slots - 1 - i;
        r->nfree = r->slots;
    }
    *out = r;
    return ROTOR_OK;
}

void vstore_reader_put(const vstore *v, vstore_reader *r) {
    if (r == NULL)
        return;
    if (r->broken) {
        reader_free(r);
        return;
    }
    pthread_mutex_lock(&v->pool->lock);
    r->next = v->pool->free;
    v->pool->free = r;
    pthread_mutex_unlock(&v->pool->lock);
}

void vstore_reader_take_stats(vstore_reader *r, uint64_t *reads, uint64_t *wait_ns) {
    if (reads != NULL)
        *reads = r->reads;
    if (wait_ns != NULL)
        *wait_ns = r->wait_ns;
    r->reads = 0;
    r->wait_ns = 0;
}

void vstore_close(vstore *v) {
    if (v == NULL)
        return;
    for (vstore_reader *r = v->pool->free; r != NULL;) {
        vstore_reader *next = r->next;
        reader_free(r);
        r = next;
    }
    pthread_mutex_destroy(&v->pool->lock);
    store_free(v);
}

/* ---- reads -------------------------------------------------------------- */

/* The span of row `id`: aligned when the descriptor is O_DIRECT. */
static void row_span(const vstore *v, uint32_t id, vs_op *op) {
    const uint64_t at = v->offset + (uint64_t)(id / v->rows_per_page) * v->page_bytes +
                        (uint64_t)(id % v->rows_per_page) * v->row_bytes;
    op->start = at / v->align * v->align;
    op->skip = (size_t)(at - op->start);
    op->len = cm_round_up(op->skip + v->row_bytes, v->align);
    op->got = 0;
    op->retries = 0;
}

/* With O_DIRECT the kernel only stops at an unaligned byte at the end of
 * the file, and the rest could not be asked for anyway (EINVAL). */
static bool at_end(const vstore *v, const vs_op *op) {
    return v->direct && (op->start + op->got) % v->align != 0;
}

static rotor_status short_read(const vstore *v, uint32_t id, const vs_op *op) {
    return cm_fail(ROTOR_ERR_IO,
                   "short read of row %u of '%s': the file ended after %zu of the %zu bytes at "
                   "offset %llu (was it truncated?)",
                   id, v->path, op->got, op->skip + v->row_bytes, (unsigned long long)op->start);
}

static rotor_status read_failed(const vstore *v, uint32_t id, const vs_op *op, int err) {
    return cm_fail(ROTOR_ERR_IO, "cannot read row %u of '%s' (%zu bytes at offset %llu): %s", id,
                   v->path, op->len - op->got, (unsigned long long)(op->start + op->got),
                   strerror(err));
}

/* Where the rows to read come from, and how many may be in flight. */
typedef struct vs_source {
    vstore_next_fn next;
    void *ctx;
    size_t burst;    /* the first rows go out as fast as slots free up */
    unsigned window; /* then at most this many reads in flight, >= 1 */
} vs_source;

/* The next row id of the source, checked against the store: the end with
 * *st set when it names a row the file does not hold. */
static vstore_next source_next(const vstore *v, const vs_source *src, size_t j, uint32_t *id,
                               rotor_status *st) {
    const vstore_next n = src->next(src->ctx, id);
    if (n != VSTORE_NEXT_ROW)
        return n;
    if (*id >= v->rows) {
        *st = cm_fail(ROTOR_ERR_INVALID_ARGUMENT,
                      "row %u asked of '%s' (at position %zu), which holds %zu rows", *id, v->path,
                      j, v->rows);
        return VSTORE_NEXT_END;
    }
    return VSTORE_NEXT_ROW;
}

static rotor_status pread_rows(vstore_reader *r, const vs_source *src, vstore_row_fn fn,
                               void *ctx) {
    const vstore *v = r->v;
    uint64_t waited = 0;
    rotor_status st = ROTOR_OK;
    size_t j = 0, done = 0;
    uint32_t id;
    /* Nothing is ever in flight here: "later" ends the reads. */
    while (st == ROTOR_OK && source_next(v, src, j, &id, &st) == VSTORE_NEXT_ROW) {
        vs_op op;
        row_span(v, id, &op);
        while (op.got < op.skip + v->row_bytes) {
            uint64_t t0 = now_ns();
            ssize_t k = pread(v->fd, r->buf + op.got, op.len - op.got, (off_t)(op.start + op.got));
            int e = errno;
            waited += now_ns() - t0;
            if (k < 0) {
                if ((e != EINTR && e != EAGAIN) || ++op.retries > VS_MAX_RETRIES) {
                    st = read_failed(v, id, &op, e);
                    break;
                }
                continue;
            }
            op.got += (size_t)k;
            if (k == 0 || (op.got < op.skip + v->row_bytes && at_end(v, &op))) {
                st = short_read(v, id, &op);
                break;
            }
        }
        if (st == ROTOR_OK) {
            fn(ctx, j++, r->buf + op.skip);
            done++;
        }
    }
    r->reads += done;
    r->wait_ns += waited;
    return st;
}

/* Puts slot's (remaining) read on the submission queue. The queue has as
 * many entries as there are slots, and a slot has at most one read queued
 * or in flight, so there is always room. */
static void queue_read(vstore_reader *r, unsigned slot) {
    const vstore *v = r->v;
    vs_op *op = &r->ops[slot];
    struct io_uring_sqe *sqe = io_uring_get_sqe(&r->ring);
    unsigned char *dst = r->buf + (size_t)slot * v->stride + op->got;
    unsigned len = (unsigned)(op->len - op->got);
    int fd = r->fixed_file ? 0 : v->fd;
    if (r->fixed_buf)
        io_uring_prep_read_fixed(sqe, fd, dst, len, op->start + op->got, 0);
    else
        io_uring_prep_read(sqe, fd, dst, len, op->start + op->got);
    if (r->fixed_file)
        io_uring_sqe_set_flags(sqe, IOSQE_FIXED_FILE);
    io_uring_sqe_set_data64(sqe, slot);
}

/* Reads the source's rows with up to r->slots reads in flight (the
 * source's window once its burst is out). The source is asked for a row
 * only when one can go out, after the completions that arrived were handed
 * to fn, so what those rows showed decides whether it has more. After a
 * failure no new reads start, but the ones in flight are waited for, since
 * they write into the reader's buffer; only a ring that cannot even be
 * waited on leaves the reader broken. */
static rotor_status uring_rows(vstore_reader *r, const vs_source *src, vstore_row_fn fn,
                               void *ctx) {
    const vstore *v = r->v;
    rotor_status st = ROTOR_OK;
    size_t next = 0, done = 0;
    bool more = true;
    unsigned busy = 0, stalls = 0, interrupted = 0;
    uint64_t waited = 0;
    while (busy > 0 || (st == ROTOR_OK && more)) {
        while (st == ROTOR_OK && more && r->nfree > 0 &&
               (next < src->burst || busy < src->window)) {
            uint32_t id;
            const vstore_next n = source_next(v, src, next, &id, &st);
            if (n != VSTORE_NEXT_ROW) {
                more = n == VSTORE_NEXT_LATER; /* asked again after a completion */
                break;
            }
            unsigned slot = r->free_ids[--r->nfree];
            vs_op *op = &r->ops[slot];
            row_span(v, id, op);
            op->j = next++;
            op->id = id;
            queue_read(r, slot);
            busy++;
        }
        if (busy == 0)
            break; /* the source ended (or failed) with nothing in flight */
        uint64_t t0 = now_ns();
        int ret = 0;
        if (io_uring_sq_ready(&r->ring) > 0)
            ret = io_uring_submit_and_wait(&r->ring, 1);
        if (ret < 0 && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY) {
            r->broken = true;
            waited += now_ns() - t0;
            if (st == ROTOR_OK)
                st = cm_fail(ROTOR_ERR_IO, "cannot submit reads of '%s' to io_uring: %s", v->path,
                             strerror(-ret));
            break;
        }
        if (busy == io_uring_sq_ready(&r->ring)) {
            /* Nothing reached the kernel (it was short of resources or
             * interrupted), so there is nothing to wait for: try again. */
            waited += now_ns() - t0;
            if (++stalls > VS_MAX_RETRIES) {
                r->broken = true;
                if (st == ROTOR_OK)
                    st = cm_fail(ROTOR_ERR_IO, "io_uring keeps refusing reads of '%s': %s", v->path,
                                 strerror(-ret));
                break;
            }
            sched_yield();
            continue;
        }
        stalls = 0;
        struct io_uring_cqe *cqe;
        ret = io_uring_wait_cqe(&r->ring, &cqe);
        waited += now_ns() - t0;
        if (ret == -EINTR && ++interrupted <= VS_MAX_RETRIES)
            continue;
        interrupted = 0;
        if (ret < 0) {
            r->broken = true;
            if (st == ROTOR_OK)
                st = cm_fail(ROTOR_ERR_IO, "cannot wait for reads of '%s' from io_uring: %s",
                             v->path, strerror(-ret));
            break;
        }
        do {
            unsigned slot = (unsigned)io_uring_cqe_get_data64(cqe);
            int res = cqe->res;
            io_uring_cqe_seen(&r->ring, cqe);
            vs_op *op = &r->ops[slot];
            uint32_t id = op->id;
            bool again = false;
            if (res > 0) {
                op->got += (size_t)res;
                if (op->got >= op->skip + v->row_bytes) {
                    if (st == ROTOR_OK) {
                        fn(ctx, op->j, r->buf + (size_t)slot * v->stride + op->skip);
                        done++;
                    }
                } else if (at_end(v, op)) {
                    if (st == ROTOR_OK)
                        st = short_read(v, id, op);
                } else {
                    again = true; /* short read: ask for the rest */
                }
            } else if (res == 0) {
                if (st == ROTOR_OK)
                    st = short_read(v, id, op);
            } else if ((res == -EAGAIN || res == -EINTR) && ++op->retries <= VS_MAX_RETRIES) {
                again = true;
            } else if (st == ROTOR_OK) {
                st = read_failed(v, id, op, -res);
            }
            if (again && st == ROTOR_OK) {
                queue_read(r, slot);
            } else {
                r->free_ids[r->nfree++] = slot;
                busy--;
            }
        } while (io_uring_peek_cqe(&r->ring, &cqe) == 0);
    }
    r->reads += done;
    r->wait_ns += waited;
    return st;
}

static rotor_status read_source(vstore_reader *r, const vs_source *src, vstore_row_fn fn,
                                void *ctx) {
    if (r->broken)
        return cm_fail(ROTOR_ERR_IO, "this reader of '%s' failed earlier and must be put back",
                       r->v->path);
    if (r->has_ring)
        return uring_rows(r, src, fn, ctx);
    return pread_rows(r, src, fn, ctx);
}

/* vstore_read's source: the ids of an array, in order. */
typedef struct id_list {
    const uint32_t *ids;
    size_t n, next;
} id_list;

static vstore_next next_listed(void *ctx, uint32_t *id) {
    id_list *l = ctx;
    if (l->next == l->n)
        return VSTORE_NEXT_END;
    *id = l->ids[l->next++];
    return VSTORE_NEXT_ROW;
}

rotor_status vstore_read(vstore_reader *r, const uint32_t *ids, size_t n, vstore_row_fn fn,
                         void *ctx) {
    if (n == 0)
        return ROTOR_OK;
    const vstore *v = r->v;
    CM_RETURN_IF(ids == NULL || fn == NULL, ROTOR_ERR_INVALID_ARGUMENT,
                 "reading rows of '%s' needs ids and a function to hand them to", v->path);
    /* All ids are checked before any read starts, so a bad id costs no I/O
     * and the caller sees either every row or an error before the first. */
    for (size_t j = 0; j < n; j++)
        CM_RETURN_IF(ids[j] >= v->rows, ROTOR_ERR_INVALID_ARGUMENT,
                     "row %u asked of '%s' (at position %zu), which holds %zu rows", ids[j],
                     v->path, j, v->rows);
    id_list list = {ids, n, 0};
    const vs_source src = {next_listed, &list, SIZE_MAX, r->slots};
    return read_source(r, &src, fn, ctx);
}

rotor_status vstore_read_stream(vstore_reader *r, size_t burst, unsigned window,
                                vstore_next_fn next, vstore_row_fn fn, void *ctx) {
    CM_RETURN_IF(next == NULL || fn == NULL || window == 0, ROTOR_ERR_INVALID_ARGUMENT,
                 "reading rows of '%s' needs a source, a function to hand them to and a window "
                 "of at least one read",
                 r->v->path);
    const vs_source src = {next, ctx, burst, window};
    return read_source(r, &src, fn, ctx);
}
