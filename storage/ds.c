/*
 * Data set files: format detection, the streaming reader, whole-file reads
 * and atomic writes, and the two headerless-ish families.
 *
 *   .fvecs .ivecs .bvecs  (TEXMEX) each row is a record: int32 d (little
 *                         endian), then d float32 / int32 / uint8 values.
 *   .fbin .u8bin .i8bin .ibin  (big-ann-benchmarks) uint32 n, uint32 d, then
 *                         n*d float32 / uint8 / int8 / int32, row-major.
 *   .npy  (npy.c) and IDX (idx.c, recognised by its magic, gzip or not).
 *
 * Design choices
 *   - The format comes from the extension. Only a name that claims no format
 *     is sniffed, for the IDX magic (MNIST files are called
 *     "train-images-idx3-ubyte.gz"): sniffing every file would misread a
 *     valid .u8bin whose row count happens to start with 00 00 08 03.
 *   - Plain files are read with pread at offsets computed from the header, not
 *     with stdio: a row's position is known, the reader needs no seek state,
 *     and payloads go straight into the caller's buffer. Only *vecs records
 *     pass through a ~1 MiB scratch buffer, to strip and check their
 *     per-record dimension. Gzip IDX is the one sequential case (gzread).
 *   - Nothing is allocated from a header before the header has been checked
 *     against the file size, so a lying header costs an error, not a
 *     terabyte malloc. For *vecs the row count is the file size divided by
 *     the record size, after the first record's dimension is checked; a size
 *     that does not divide is diagnosed by walking the record headers (a
 *     bounded number of them) to say which record is wrong.
 *   - Every float32 is checked as it is read; a NaN is reported with its row
 *     and column. Rows, records and columns in sentences count from 0, like
 *     the ids the index hands out.
 *   - Inputs are opened once, without blocking, and checked with fstat on
 *     that descriptor before anything is read: a FIFO or a device is
 *     refused at once instead of hanging the reader.
 *   - Writes go through outfile.c (an unnamed file renamed over the target
 *     once complete, so a kill leaves the old file or the new one). A matrix that
 *     holds NaN, or whose element type the format cannot store, is refused
 *     before any file is created: everything rotor writes it can read back.
 *   - Headers are decoded byte by byte; payloads are copied raw, which
 *     assumes a little-endian host (checked below at compile time).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "storage/storage.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the data set readers copy little-endian payloads raw: port them to big-endian hosts"
#endif

/* Payload bytes staged per step when records must be reshaped or converted. */
#define DS_CHUNK_BYTES ((size_t)1 << 20)
/* How many *vecs record headers a size mismatch is diagnosed from. */
#define DS_DIAGNOSE_RECORDS ((size_t)1 << 16)
/* Largest single pread/write: Linux moves at most ~2 GiB per call anyway. */
#define DS_IO_MAX ((size_t)1 << 30)

/* ---- names -------------------------------------------------------------- */

const char *rotor_file_format_name(rotor_file_format format) {
    switch (format) {
    case ROTOR_FORMAT_UNKNOWN: break;
    case ROTOR_FORMAT_FVECS: return "fvecs";
    case ROTOR_FORMAT_IVECS: return "ivecs";
    case ROTOR_FORMAT_BVECS: return "bvecs";
    case ROTOR_FORMAT_FBIN: return "fbin";
    case ROTOR_FORMAT_U8BIN: return "u8bin";
    case ROTOR_FORMAT_I8BIN: return "i8bin";
    case ROTOR_FORMAT_IBIN: return "ibin";
    case ROTOR_FORMAT_NPY: return "npy";
    case ROTOR_FORMAT_IDX: return "idx";
    }
    return "unknown";
}

const char *ds_elem_name(rotor_elem_type type) {
    switch (type) {
    case ROTOR_ELEM_F32: return "float32";
    case ROTOR_ELEM_U8: return "uint8";
    case ROTOR_ELEM_I8: return "int8";
    case ROTOR_ELEM_I32: return "int32";
    case ROTOR_ELEM_I64: return "int64";
    }
    return "unknown";
}

rotor_file_format ds_format_from_path(const char *path) {
    static const struct {
        const char *ext;
        rotor_file_format format;
    } table[] = {
        {".fvecs", ROTOR_FORMAT_FVECS}, {".ivecs", ROTOR_FORMAT_IVECS},
        {".bvecs", ROTOR_FORMAT_BVECS}, {".fbin", ROTOR_FORMAT_FBIN},
        {".u8bin", ROTOR_FORMAT_U8BIN}, {".i8bin", ROTOR_FORMAT_I8BIN},
        {".ibin", ROTOR_FORMAT_IBIN},   {".npy", ROTOR_FORMAT_NPY},
    };
    if (path == NULL)
        return ROTOR_FORMAT_UNKNOWN;
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    const char *dot = strrchr(base, '.');
    if (dot == NULL || dot == base)
        return ROTOR_FORMAT_UNKNOWN;
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (strcasecmp(dot, table[i].ext) == 0)
            return table[i].format;
    return ROTOR_FORMAT_UNKNOWN;
}

rotor_elem_type ds_format_elem_type(rotor_file_format format) {
    switch (format) {
    case ROTOR_FORMAT_IVECS:
    case ROTOR_FORMAT_IBIN: return ROTOR_ELEM_I32;
    case ROTOR_FORMAT_BVECS:
    case ROTOR_FORMAT_U8BIN: return ROTOR_ELEM_U8;
    case ROTOR_FORMAT_I8BIN: return ROTOR_ELEM_I8;
    case ROTOR_FORMAT_FVECS:
    case ROTOR_FORMAT_FBIN:
    case ROTOR_FORMAT_NPY:
    case ROTOR_FORMAT_IDX:
    case ROTOR_FORMAT_UNKNOWN: break;
    }
    return ROTOR_ELEM_F32;
}

static bool is_vecs(rotor_file_format f) {
    return f == ROTOR_FORMAT_FVECS || f == ROTOR_FORMAT_IVECS || f == ROTOR_FORMAT_BVECS;
}

static bool is_bin(rotor_file_format f) {
    return f == ROTOR_FORMAT_FBIN || f == ROTOR_FORMAT_U8BIN || f == ROTOR_FORMAT_I8BIN ||
           f == ROTOR_FORMAT_IBIN;
}

/* ---- low-level reads ---------------------------------------------------- */

rotor_status ds_read_at(rotor_reader *r, void *buf, size_t n, uint64_t offset, size_t *got) {
    unsigned char *p = buf;
    size_t done = 0;
    unsigned retries = 0;
    while (done < n) {
        size_t want = n - done < DS_IO_MAX ? n - done : DS_IO_MAX;
        ssize_t k = pread(r->fd, p + done, want, (off_t)(offset + done));
        if (k < 0) {
            if ((errno == EINTR || errno == EAGAIN) && ++retries <= DS_MAX_RETRIES)
                continue;
            *got = done;
            return cm_fail(ROTOR_ERR_IO, "cannot read '%s': %s", r->path, strerror(errno));
        }
        if (k == 0)
            break;
        done += (size_t)k;
    }
    *got = done;
    return ROTOR_OK;
}

rotor_status ds_pread_full(int fd, void *buf, size_t n, uint64_t offset, const char *what) {
    unsigned char *p = buf;
    size_t done = 0;
    unsigned retries = 0;
    while (done < n) {
        const size_t want = n - done < DS_IO_MAX ? n - done : DS_IO_MAX;
        const ssize_t k = pread(fd, p + done, want, (off_t)(offset + done));
        if (k < 0 && (errno == EINTR || errno == EAGAIN) && ++retries <= DS_MAX_RETRIES)
            continue;
        if (k <= 0)
            return cm_fail(ROTOR_ERR_IO, "cannot read %s: %s", what,
                           k < 0 ? strerror(errno) : "the file ended");
        done += (size_t)k;
    }
    return ROTOR_OK;
}

rotor_status ds_pwrite_full(int fd, const void *buf, size_t n, uint64_t offset, const char *what) {
    const unsigned char *p = buf;
    size_t done = 0;
    unsigned retries = 0;
    while (done < n) {
        const size_t want = n - done < DS_IO_MAX ? n - done : DS_IO_MAX;
        const ssize_t k = pwrite(fd, p + done, want, (off_t)(offset + done));
        if (k < 0 && (errno == EINTR || errno == EAGAIN) && ++retries <= DS_MAX_RETRIES)
            continue;
        if (k <= 0)
            return cm_fail(ROTOR_ERR_IO, "cannot write %s: %s", what,
                           k < 0 ? strerror(errno) : "no progress");
        done += (size_t)k;
    }
    return ROTOR_OK;
}

rotor_status ds_check_payload(rotor_reader *r) {
    r->elem_size = rotor_elem_size(r->info.type);
    size_t total;
    uint64_t end;
    if (cm_mul_overflow(r->info.cols, r->elem_size, &r->row_bytes) ||
        cm_mul_overflow(r->info.rows, r->row_bytes, &total) ||
        __builtin_add_overflow((uint64_t)total, r->data_offset, &end))
        return cm_fail(ROTOR_ERR_FORMAT, "'%s' header says %s, which overflows any file size",
                       r->path, r->shape);
    if (end > r->file_size)
        return cm_fail(ROTOR_ERR_FORMAT,
                       "'%s' is truncated: header says %s (%llu bytes), file has %llu", r->path,
                       r->shape, (unsigned long long)end, (unsigned long long)r->file_size);
    if (end < r->file_size)
        return cm_fail(ROTOR_ERR_FORMAT,
                       "'%s' has %llu bytes of trailing garbage: header says %s (%llu bytes), "
                       "file has %llu",
                       r->path, (unsigned long long)(r->file_size - end), r->shape,
                       (unsigned long long)end, (unsigned long long)r->file_size);
    r->record_bytes = r->row_bytes;
    return ROTOR_OK;
}

static void describe(rotor_reader *r) {
    snprintf(r->shape, sizeof r->shape, "%zu x %zu %s", r->info.rows, r->info.cols,
             ds_elem_name(r->info.type));
}

/* ---- *vecs -------------------------------------------------------------- */

/* The file size is not a whole number of records: say which record is
 * wrong, walking at most DS_DIAGNOSE_RECORDS record headers. */
static rotor_status vecs_diagnose(rotor_reader *r, int32_t dim, uint64_t rec) {
    uint64_t size = r->file_size;
    uint64_t last = size / rec; /* the record cut short, if the dimensions agree */
    for (uint64_t i = 1; i <= last && i < DS_DIAGNOSE_RECORDS; i++) {
        uint64_t off = i * rec;
        unsigned char b[4];
        size_t got;
        CM_FORWARD(ds_read_at(r, b, 4, off, &got));
        if (got < 4)
            break;
        int32_t d = (int32_t)ds_le32(b);
        if (d != dim)
            return cm_fail(ROTOR_ERR_FORMAT,
                           "record %llu of '%s' has dimension %ld, the first has %ld",
                           (unsigned long long)i, r->path, (long)d, (long)dim);
    }
    return cm_fail(ROTOR_ERR_FORMAT,
                   "'%s' is truncated: record %llu ends at byte %llu, the file "
                   "has %llu",
                   r->path, (unsigned long long)last, (unsigned long long)((last + 1) * rec),
                   (unsigned long long)size);
}

static rotor_status vecs_open(rotor_reader *r) {
    unsigned char b[4];
    size_t got;
    CM_FORWARD(ds_read_at(r, b, 4, 0, &got));
    if (got < 4)
        return cm_fail(ROTOR_ERR_FORMAT,
                       "'%s' is truncated: record 0 has no complete dimension header, the file "
                       "has %llu bytes",
                       r->path, (unsigned long long)r->file_size);
    int32_t dim = (int32_t)ds_le32(b);
    if (dim <= 0)
        return cm_fail(ROTOR_ERR_FORMAT, "'%s' record 0 has dimension %ld", r->path, (long)dim);
    if ((size_t)dim > DS_MAX_DIM)
        return cm_fail(ROTOR_ERR_FORMAT,
                       "'%s' record 0 claims dimension %ld, above the limit of %zu", r->path,
                       (long)dim, DS_MAX_DIM);
    r->info.type = ds_format_elem_type(r->info.format);
    r->info.cols = (size_t)dim;
    r->elem_size = rotor_elem_size(r->info.type);
    r->row_bytes = r->info.cols * r->elem_size;
    r->record_bytes = r->row_bytes + 4;
    uint64_t rec = r->record_bytes;
    if (r->file_size % rec != 0)
        return vecs_diagnose(r, dim, rec);
    uint64_t rows = r->file_size / rec;
    if (rows > DS_MAX_ROWS)
        return cm_fail(ROTOR_ERR_FORMAT, "'%s' holds %llu records, above the limit of %zu", r->path,
                       (unsigned long long)rows, DS_MAX_ROWS);
    r->info.rows = (size_t)rows;
    r->data_offset = 0;
    describe(r);
    return ROTOR_OK;
}

/* ---- *bin --------------------------------------------------------------- */

static rotor_status bin_open(rotor_reader *r) {
    unsigned char b[8];
    size_t got;
    CM_FORWARD(ds_read_at(r, b, 8, 0, &got));
    if (got < 8)
        return cm_fail(ROTOR_ERR_FORMAT,
                       "'%s' is truncated: the 8-byte header is cut short, the file has %llu "
                       "bytes",
                       r->path, (unsigned long long)r->file_size);
    uint32_t n = ds_le32(b), d = ds_le32(b + 4);
    r->info.type = ds_format_elem_type(r->info.format);
    if (d == 0)
        return cm_fail(ROTOR_ERR_FORMAT, "'%s' header says %lu rows of dimension 0", r->path,
                       (unsigned long)n);
    /* n is a uint32, always below DS_MAX_ROWS. */
    if (d > DS_MAX_DIM)
        return cm_fail(ROTOR_ERR_FORMAT,
                       "'%s' header says %lu x %lu: dimension above the limit of %zu", r->path,
                       (unsigned long)n, (unsigned long)d, DS_MAX_DIM);
    r->info.rows = n;
    r->info.cols = d;
    r->data_offset = 8;
    describe(r);
    return ds_check_payload(r);
}

/* ---- opening ------------------------------------------------------------ */

static void reader_free(rotor_reader *r) {
    if (r == NULL)
        return;
    rotor_allocator a = cm_allocator_default();
    idx_close(r);
    if (r->fd >= 0)
        close(r->fd);
    cm_free(&a, r->scratch);
    cm_free(&a, r->path);
    cm_free(&a, r);
}

/* Checks an input descriptor: a regular file, read in blocking mode from
 * now on. -1 with the error set otherwise (fd left open). */
static int check_input_fd(int fd, const char *path) {
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        cm_fail(ROTOR_ERR_IO, "cannot read '%s': %s", path, strerror(errno));
        return -1;
    }
    if (!S_ISREG(sb.st_mode)) {
        cm_fail(ROTOR_ERR_IO, "cannot read '%s': it is %s, not a regular file", path,
                ds_file_kind(sb.st_mode));
        return -1;
    }
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) != 0) {
        cm_fail(ROTOR_ERR_IO, "cannot read '%s': %s", path, strerror(errno));
        return -1;
    }
    return fd;
}

const char *ds_file_kind(unsigned mode) {
    mode_t m = (mode_t)mode;
    return S_ISREG(m)    ? "a regular file"
           : S_ISDIR(m)  ? "a directory"
           : S_ISFIFO(m) ? "a FIFO"
           : S_ISSOCK(m) ? "a socket"
           : S_ISCHR(m)  ? "a character device"
           : S_ISBLK(m)  ? "a block device"
                         : "not a regular file";
}

int ds_open_input(const char *path) {
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) {
        int e = errno;
        struct stat sb;
        /* A socket cannot be opened at all (ENXIO): say what it is. */
        if (stat(path, &sb) == 0 && !S_ISREG(sb.st_mode))
            cm_fail(ROTOR_ERR_IO, "cannot read '%s': it is %s, not a regular file", path,
                    ds_file_kind(sb.st_mode));
        else
            cm_fail(ROTOR_ERR_IO, "cannot open '%s': %s", path, strerror(e));
        return -1;
    }
    if (check_input_fd(fd, path) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

int ds_dup_input(int fd, const char *path) {
    int dup = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (dup < 0) {
        cm_fail(ROTOR_ERR_IO, "cannot read '%s': %s", path, strerror(errno));
        return -1;
    }
    if (check_input_fd(dup, path) < 0) {
        close(dup);
        return -1;
    }
    return dup;
}

int ds_reopen_input(int fd, const char *path, bool *shared) {
    char proc[64];
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
    int own = open(proc, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    *shared = own < 0;
    if (own < 0) /* no /proc: the same description, flags and all */
        return ds_dup_input(fd, path);
    if (check_input_fd(own, path) < 0) {
        close(own);
        return -1;
    }
    return own;
}

/* Opens a reader on `path`, or on a duplicate of `fd` when fd >= 0 (path
 * then only names it in sentences). */
static rotor_status reader_open_fd(const char *path, int fd, rotor_reader **out) {
    *out = NULL;
    CM_RETURN_IF(path == NULL, ROTOR_ERR_INVALID_ARGUMENT, "path is NULL");
    rotor_allocator a = cm_allocator_default();
    rotor_reader *r = cm_calloc(&a, sizeof *r, "a data set reader");
    if (r == NULL)
        return ROTOR_ERR_OUT_OF_MEMORY;
    r->fd = -1;
    size_t len = strlen(path);
    r->path = cm_alloc(&a, len + 1, "a file name");
    if (r->path == NULL) {
        reader_free(r);
        return ROTOR_ERR_OUT_OF_MEMORY;
    }
    memcpy(r->path, path, len + 1);

    rotor_status st = ROTOR_OK;
    r->fd = fd < 0 ? ds_open_input(path) : ds_dup_input(fd, path);
    struct stat sb;
    if (r->fd < 0) {
        st = ROTOR_ERR_IO; /* the sentence is set */
    } else if (fstat(r->fd, &sb) != 0) {
        st = cm_fail(ROTOR_ERR_IO, "cannot read '%s': %s", path, strerror(errno));
    } else if (sb.st_size == 0) {
        st = cm_fail(ROTOR_ERR_FORMAT, "'%s' is empty", path);
    }
    if (st != ROTOR_OK) {
        reader_free(r);
        return st;
    }
    r->file_size = (uint64_t)sb.st_size;
    r->info.format = ds_format_from_path(path);
    if (r->info.format == ROTOR_FORMAT_UNKNOWN) {
        unsigned char head[4];
        size_t got;
        st = ds_read_at(r, head, sizeof head, 0, &got);
        const char *dot = strrchr(path, '.');
        bool index_name = dot != NULL && strcasecmp(dot, ".rotor") == 0;
        if (st == ROTOR_OK && index_name && !idx_sniff(head, got))
            st = cm_fail(ROTOR_ERR_FORMAT,
                         "'%s' is not a rotor index (no ROTORIDX magic at its start) nor a data "
                         "set",
                         path);
        if (st == ROTOR_OK && !idx_sniff(head, got))
            st = cm_fail(ROTOR_ERR_FORMAT,
                         "cannot tell the format of '%s' from its name; use one of " DS_FORMAT_LIST
                         ", or an IDX file (gzip or not)",
                         path);
        if (st == ROTOR_OK)
            r->info.format = ROTOR_FORMAT_IDX;
    }
    if (st == ROTOR_OK) {
        if (is_vecs(r->info.format))
            st = vecs_open(r);
        else if (is_bin(r->info.format))
            st = bin_open(r);
        else if (r->info.format == ROTOR_FORMAT_NPY)
            st = npy_read_header(r);
        else
            st = idx_open(r);
    }
    if (st != ROTOR_OK) {
        reader_free(r);
        return st;
    }
    *out = r;
    return ROTOR_OK;
}

static rotor_status reader_open(const char *path, rotor_reader **out) {
    return reader_open_fd(path, -1, out);
}

rotor_status rotor_reader_open(const char *path, rotor_reader **out) {
    cm_clear_error();
    CM_RETURN_IF(out == NULL, ROTOR_ERR_INVALID_ARGUMENT, "reader output pointer is NULL");
    return reader_open(path, out);
}

rotor_status rotor_reader_open_fd(int fd, const char *name, rotor_reader **out) {
    cm_clear_error();
    CM_RETURN_IF(out == NULL, ROTOR_ERR_INVALID_ARGUMENT, "reader output pointer is NULL");
    *out = NULL;
    CM_RETURN_IF(fd < 0, ROTOR_ERR_INVALID_ARGUMENT, "descriptor %d is not open", fd);
    return reader_open_fd(name != NULL ? name : "(descriptor)", fd, out);
}

const rotor_file_info *rotor_reader_info(const rotor_reader *reader) {
    return reader ? &reader->info : NULL;
}

void rotor_reader_close(rotor_reader *reader) { reader_free(reader); }

rotor_status rotor_file_probe(const char *path, rotor_file_info *info) {
    cm_clear_error();
    CM_RETURN_IF(info == NULL, ROTOR_ERR_INVALID_ARGUMENT, "file info output pointer is NULL");
    memset(info, 0, sizeof *info);
    rotor_reader *r;
    CM_FORWARD(reader_open(path, &r));
    *info = r->info;
    reader_free(r);
    return ROTOR_OK;
}

/* ---- reading rows ------------------------------------------------------- */

/* Checks n float32 rows that start at row `first` of the file. */
static rotor_status check_finite(const rotor_reader *r, const float *rows, size_t n, size_t first) {
    size_t cols = r->info.cols, count = n * cols;
    for (size_t i = 0; i < count; i++) {
        uint32_t bits;
        memcpy(&bits, &rows[i], sizeof bits);
        if (CM_LIKELY((bits & 0x7f800000u) != 0x7f800000u))
            continue;
        const char *what = (bits & 0x007fffffu) ? "NaN" : (bits >> 31) ? "-inf" : "+inf";
        return cm_fail(ROTOR_ERR_NOT_FINITE, "'%s' row %zu, column %zu is %s", r->path,
                       first + i / cols, i % cols, what);
    }
    return ROTOR_OK;
}

static rotor_status shrank(const rotor_reader *r, uint64_t end) {
    return cm_fail(ROTOR_ERR_FORMAT,
                   "'%s' is truncated: it ended before byte %llu while being read (it had %llu "
                   "bytes when opened)",
                   r->path, (unsigned long long)end, (unsigned long long)r->file_size);
}

static rotor_status vecs_read(rotor_reader *r, unsigned char *dst, size_t n) {
    rotor_allocator a = cm_allocator_default();
    if (r->scratch == NULL) {
        size_t k = DS_CHUNK_BYTES / r->record_bytes;
        if (k == 0)
            k = 1;
        if (k > r->info.rows)
            k = r->info.rows;
        r->scratch = cm_alloc(&a, k * r->record_bytes, "a record buffer");
        if (r->scratch == NULL)
            return ROTOR_ERR_OUT_OF_MEMORY;
        r->scratch_rows = k;
    }
    size_t row = r->next_row;
    while (n > 0) {
        size_t k = n < r->scratch_rows ? n : r->scratch_rows;
        uint64_t off = (uint64_t)row * r->record_bytes;
        size_t bytes = k * r->record_bytes, got;
        CM_FORWARD(ds_read_at(r, r->scratch, bytes, off, &got));
        if (got < bytes)
            return shrank(r, off + bytes);
        for (size_t j = 0; j < k; j++) {
            const unsigned char *rec = r->scratch + j * r->record_bytes;
            int32_t d = (int32_t)ds_le32(rec);
            if (d < 0 || (size_t)d != r->info.cols)
                return cm_fail(ROTOR_ERR_FORMAT,
                               "record %zu of '%s' has dimension %ld, the first has %zu", row + j,
                               r->path, (long)d, r->info.cols);
            memcpy(dst + j * r->row_bytes, rec + 4, r->row_bytes);
        }
        if (r->info.type == ROTOR_ELEM_F32)
            CM_FORWARD(check_finite(r, (const float *)(const void *)dst, k, row));
        dst += k * r->row_bytes;
        row += k;
        n -= k;
    }
    return ROTOR_OK;
}

static rotor_status reader_read(rotor_reader *r, void *dst, size_t max_rows, size_t *rows_read) {
    *rows_read = 0;
    if (r->failed != ROTOR_OK)
        return cm_fail(r->failed, "%s", r->failed_text);
    size_t n = r->info.rows - r->next_row;
    if (max_rows < n)
        n = max_rows;
    rotor_status st = ROTOR_OK;
    if (n > 0) {
        size_t bytes = n * r->row_bytes; /* <= the checked payload size */
        if (is_vecs(r->info.format)) {
            st = vecs_read(r, dst, n);
        } else if (r->gz != NULL) {
            st = idx_gz_read(r, dst, bytes);
        } else {
            uint64_t off = r->data_offset + (uint64_t)r->next_row * r->row_bytes;
            size_t got;
            st = ds_read_at(r, dst, bytes, off, &got);
            if (st == ROTOR_OK && got < bytes)
                st = shrank(r, off + bytes);
            if (st == ROTOR_OK && r->info.type == ROTOR_ELEM_F32)
                st = check_finite(r, dst, n, r->next_row);
        }
    }
    if (st == ROTOR_OK && r->gz != NULL && r->next_row + n == r->info.rows && !r->gz_finished)
        st = idx_gz_finish(r);
    if (st != ROTOR_OK) {
        r->failed = st;
        snprintf(r->failed_text, sizeof r->failed_text, "%s", rotor_last_error());
        return st;
    }
    r->next_row += n;
    *rows_read = n;
    return ROTOR_OK;
}

rotor_status rotor_reader_read(rotor_reader *reader, void *dst, size_t max_rows,
                               size_t *rows_read) {
    cm_clear_error();
    if (rows_read != NULL)
        *rows_read = 0;
    CM_RETURN_IF(reader == NULL, ROTOR_ERR_INVALID_ARGUMENT, "reader is NULL");
    CM_RETURN_IF(rows_read == NULL, ROTOR_ERR_INVALID_ARGUMENT, "rows_read is NULL");
    CM_RETURN_IF(dst == NULL && max_rows > 0, ROTOR_ERR_INVALID_ARGUMENT,
                 "destination buffer is NULL");
    return reader_read(reader, dst, max_rows, rows_read);
}

/* ---- whole-file reads --------------------------------------------------- */

static void convert_to_f32(float *dst, const void *src, rotor_elem_type type, size_t n) {
    switch (type) {
    case ROTOR_ELEM_U8: {
        const uint8_t *s = src;
        for (size_t i = 0; i < n; i++)
            dst[i] = (float)s[i];
        break;
    }
    case ROTOR_ELEM_I8: {
        const int8_t *s = src;
        for (size_t i = 0; i < n; i++)
            dst[i] = (float)s[i];
        break;
    }
    case ROTOR_ELEM_I32: {
        const int32_t *s = src;
        for (size_t i = 0; i < n; i++)
            dst[i] = (float)s[i];
        break;
    }
    case ROTOR_ELEM_I64: {
        const int64_t *s = src;
        for (size_t i = 0; i < n; i++)
            dst[i] = (float)s[i];
        break;
    }
    case ROTOR_ELEM_F32: memcpy(dst, src, n * sizeof *dst); break;
    }
}

/* Reads `rows` rows of r into dst, converting when out_type differs. */
static rotor_status read_rows(rotor_reader *r, unsigned char *dst, size_t rows,
                              rotor_elem_type out_type) {
    rotor_allocator a = cm_allocator_default();
    size_t got;
    if (rows == 0) /* still runs the end-of-stream check of gzip IDX */
        return reader_read(r, NULL, 0, &got);
    if (out_type == r->info.type) {
        size_t done = 0;
        while (done < rows) {
            CM_FORWARD(reader_read(r, dst + done * r->row_bytes, rows - done, &got));
            if (got == 0)
                return cm_fail(ROTOR_ERR_FORMAT, "'%s' ended after %zu of %zu rows", r->path, done,
                               rows);
            done += got;
        }
        return ROTOR_OK;
    }
    size_t chunk = DS_CHUNK_BYTES / r->row_bytes;
    if (chunk == 0)
        chunk = 1;
    if (chunk > rows)
        chunk = rows;
    unsigned char *buf = cm_alloc(&a, chunk * r->row_bytes, "a conversion buffer");
    if (buf == NULL)
        return ROTOR_ERR_OUT_OF_MEMORY;
    size_t out_row = r->info.cols * sizeof(float), done = 0;
    rotor_status st = ROTOR_OK;
    while (done < rows) {
        size_t want = rows - done < chunk ? rows - done : chunk;
        st = reader_read(r, buf, want, &got);
        if (st != ROTOR_OK)
            break;
        if (got == 0) {
            st = cm_fail(ROTOR_ERR_FORMAT, "'%s' ended after %zu of %zu rows", r->path, done, rows);
            break;
        }
        convert_to_f32((float *)(void *)(dst + done * out_row), buf, r->info.type,
                       got * r->info.cols);
        done += got;
    }
    cm_free(&a, buf);
    return st;
}

rotor_status rotor_matrix_read(const char *path, int as_type, size_t max_rows, rotor_matrix *out) {
    cm_clear_error();
    CM_RETURN_IF(out == NULL, ROTOR_ERR_INVALID_ARGUMENT, "matrix output pointer is NULL");
    memset(out, 0, sizeof *out);
    CM_RETURN_IF(path == NULL, ROTOR_ERR_INVALID_ARGUMENT, "path is NULL");
    CM_RETURN_IF(as_type != -1 && as_type != (int)ROTOR_ELEM_F32, ROTOR_ERR_INVALID_ARGUMENT,
                 "cannot read '%s' as element type %d: as_type must be -1 (keep the file's type) "
                 "or ROTOR_ELEM_F32",
                 path, as_type);
    rotor_reader *r;
    CM_FORWARD(reader_open(path, &r));
    rotor_elem_type out_type = as_type == -1 ? r->info.type : ROTOR_ELEM_F32;
    size_t rows = r->info.rows;
    if (max_rows > 0 && max_rows < rows)
        rows = max_rows;
    size_t row_out = 0, bytes = 0;
    rotor_status st = ROTOR_OK;
    if (cm_mul_overflow(r->info.cols, rotor_elem_size(out_type), &row_out) ||
        cm_mul_overflow(rows, row_out, &bytes))
        st = cm_fail(ROTOR_ERR_FORMAT, "'%s' holds %s, too large for memory", path, r->shape);
    void *data = NULL;
    rotor_allocator a = cm_allocator_default();
    if (st == ROTOR_OK && bytes > 0) {
        data = cm_alloc(&a, bytes, "a data set");
        if (data == NULL)
            st = ROTOR_ERR_OUT_OF_MEMORY;
    }
    if (st == ROTOR_OK)
        st = read_rows(r, data, rows, out_type);
    if (st == ROTOR_OK) {
        out->data = data;
        out->rows = rows;
        out->cols = r->info.cols;
        out->type = out_type;
    } else {
        cm_free(&a, data);
    }
    reader_free(r);
    return st;
}

void rotor_matrix_free(rotor_matrix *m) {
    if (m == NULL)
        return;
    rotor_allocator a = cm_allocator_default();
    cm_free(&a, m->data);
    memset(m, 0, sizeof *m);
}

/* ---- writing ------------------------------------------------------------ */

typedef struct ds_writer {
    int fd;
    const char *path; /* the caller's name, for sentences */
    unsigned char *buf;
    size_t len, cap;
} ds_writer;

static rotor_status writer_flush(ds_writer *w) {
    size_t done = 0;
    unsigned retries = 0;
    while (done < w->len) {
        size_t want = w->len - done < DS_IO_MAX ? w->len - done : DS_IO_MAX;
        ssize_t k = write(w->fd, w->buf + done, want);
        if (k < 0 && (errno == EINTR || errno == EAGAIN) && ++retries <= DS_MAX_RETRIES)
            continue;
        if (k <= 0)
            return cm_fail(ROTOR_ERR_IO, "cannot write '%s': %s", w->path,
                           k < 0 ? strerror(errno) : "no progress");
        done += (size_t)k;
    }
    w->len = 0;
    return ROTOR_OK;
}

static rotor_status writer_put(ds_writer *w, const void *data, size_t n) {
    const unsigned char *p = data;
    while (n > 0) {
        if (w->len == w->cap)
            CM_FORWARD(writer_flush(w));
        size_t k = w->cap - w->len < n ? w->cap - w->len : n;
        memcpy(w->buf + w->len, p, k);
        w->len += k;
        p += k;
        n -= k;
    }
    return ROTOR_OK;
}

static rotor_status write_payload(ds_writer *w, rotor_file_format format, const rotor_matrix *m) {
    size_t row_bytes = m->cols * rotor_elem_size(m->type);
    const unsigned char *src = m->data;
    unsigned char head[8];
    if (is_bin(format)) {
        uint32_t n = (uint32_t)m->rows, d = (uint32_t)m->cols;
        for (int i = 0; i < 4; i++) {
            head[i] = (unsigned char)(n >> (8 * i));
            head[4 + i] = (unsigned char)(d >> (8 * i));
        }
        CM_FORWARD(writer_put(w, head, 8));
    } else if (format == ROTOR_FORMAT_NPY) {
        unsigned char npy[256];
        size_t len = npy_format_header(npy, sizeof npy, m->type, m->rows, m->cols);
        if (len == 0)
            return cm_fail(ROTOR_ERR_INVALID_ARGUMENT, "cannot format the header of '%s'", w->path);
        CM_FORWARD(writer_put(w, npy, len));
    }
    if (!is_vecs(format))
        return writer_put(w, src, m->rows * row_bytes);
    uint32_t d = (uint32_t)m->cols;
    for (int i = 0; i < 4; i++)
        head[i] = (unsigned char)(d >> (8 * i));
    for (size_t i = 0; i < m->rows; i++) {
        CM_FORWARD(writer_put(w, head, 4));
        CM_FORWARD(writer_put(w, src + i * row_bytes, row_bytes));
    }
    return ROTOR_OK;
}

void ds_write_behind(int fd, uint64_t from, uint64_t to, bool keep) {
    if (to <= from)
        return;
    /* Advice only: a file system without it just keeps the pages longer. */
    (void)sync_file_range(fd, (off_t)from, (off_t)(to - from),
                          SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
                              SYNC_FILE_RANGE_WAIT_AFTER);
    if (!keep)
        (void)posix_fadvise(fd, (off_t)from, (off_t)(to - from), POSIX_FADV_DONTNEED);
}

static rotor_status check_writable(const char *path, rotor_file_format format,
                                   const rotor_matrix *m) {
    size_t esize = rotor_elem_size(m->type);
    CM_RETURN_IF(esize == 0, ROTOR_ERR_INVALID_ARGUMENT,
                 "matrix to write to '%s' has unknown element type %d", path, (int)m->type);
    CM_RETURN_IF(m->rows == 0, ROTOR_ERR_EMPTY, "matrix to write to '%s' has no rows", path);
    CM_RETURN_IF(m->cols == 0, ROTOR_ERR_INVALID_ARGUMENT,
                 "matrix to write to '%s' has dimension 0", path);
    CM_RETURN_IF(m->data == NULL, ROTOR_ERR_INVALID_ARGUMENT, "matrix to write to '%s' has no data",
                 path);
    CM_RETURN_IF(m->cols > DS_MAX_DIM, ROTOR_ERR_INVALID_ARGUMENT,
                 "matrix to write to '%s' has dimension %zu, above the limit of %zu", path, m->cols,
                 DS_MAX_DIM);
    CM_RETURN_IF(m->rows > DS_MAX_ROWS || (is_bin(format) && m->rows > UINT32_MAX),
                 ROTOR_ERR_INVALID_ARGUMENT,
                 "matrix to write to '%s' has %zu rows, more than a .%s file can hold", path,
                 m->rows, rotor_file_format_name(format));
    size_t total;
    CM_RETURN_IF(cm_mul_overflow(m->rows, m->cols * esize, &total), ROTOR_ERR_INVALID_ARGUMENT,
                 "matrix to write to '%s' has %zu x %zu elements, which overflows", path, m->rows,
                 m->cols);
    if (format != ROTOR_FORMAT_NPY) {
        rotor_elem_type want = ds_format_elem_type(format);
        CM_RETURN_IF(m->type != want, ROTOR_ERR_INVALID_ARGUMENT,
                     "'%s' holds %s elements, the matrix has %s", path, ds_elem_name(want),
                     ds_elem_name(m->type));
    }
    if (m->type == ROTOR_ELEM_F32) {
        const float *x = m->data;
        for (size_t i = 0; i < m->rows * m->cols; i++) {
            uint32_t bits;
            memcpy(&bits, &x[i], sizeof bits);
            if ((bits & 0x7f800000u) == 0x7f800000u)
                return cm_fail(ROTOR_ERR_NOT_FINITE,
                               "row %zu, column %zu of the matrix to write to '%s' is %s",
                               i / m->cols, i % m->cols, path,
                               (bits & 0x007fffffu) ? "NaN"
                               : (bits >> 31)       ? "-inf"
                                                    : "+inf");
        }
    }
    return ROTOR_OK;
}

rotor_status rotor_matrix_write(const char *path, const rotor_matrix *m) {
    cm_clear_error();
    CM_RETURN_IF(path == NULL, ROTOR_ERR_INVALID_ARGUMENT, "path is NULL");
    CM_RETURN_IF(m == NULL, ROTOR_ERR_INVALID_ARGUMENT, "matrix to write to '%s' is NULL", path);
    rotor_file_format format = ds_format_from_path(path);
    CM_RETURN_IF(format == ROTOR_FORMAT_UNKNOWN, ROTOR_ERR_FORMAT,
                 "cannot tell the format of '%s' from its name; use one of " DS_FORMAT_LIST
                 " (IDX is read, never written)",
                 path);
    CM_FORWARD(check_writable(path, format, m));

    rotor_allocator a = cm_allocator_default();
    ds_writer w = {.fd = -1, .path = path, .cap = DS_CHUNK_BYTES};
    w.buf = cm_alloc(&a, w.cap, "a write buffer");
    if (w.buf == NULL)
        return ROTOR_ERR_OUT_OF_MEMORY;
    ds_out *o = NULL;
    rotor_status st = ds_out_open(&a, path, &o);
    if (st == ROTOR_OK) {
        w.fd = ds_out_fd(o);
        st = write_payload(&w, format, m);
        if (st == ROTOR_OK)
            st = writer_flush(&w);
        if (st == ROTOR_OK)
            st = ds_out_commit(o);
        else
            ds_out_abort(o);
    }
    cm_free(&a, w.buf);
    return st;
}
