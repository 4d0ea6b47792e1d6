/*
 * IDX files, the format of (Fashion-)MNIST: a big-endian magic 00 00 TT NN
 * (TT the element type, 0x08 uint8 or 0x09 int8 here; NN the number of
 * dimensions), NN big-endian uint32 sizes, then the elements row-major.
 * Images are 0x00000803 (n x rows x cols) and become an n x (rows*cols)
 * matrix; labels are 0x00000801 and become n x 1. Files usually come
 * gzip-compressed ("train-images-idx3-ubyte.gz").
 *
 * Design choices
 *   - IDX has no extension of its own, so it is recognised by its magic;
 *     ds.c sniffs only names that claim no other format. A gzip stream is
 *     taken as IDX only once the first bytes inside it carry the IDX magic.
 *   - Gzip files are read with zlib's gzread, in order: deflate cannot seek,
 *     and the streaming reader only ever moves forward anyway. A plain IDX
 *     file goes through the same pread path as .fbin.
 *   - The size of a gzip file's contents is unknown until it is read, so a
 *     header is checked against what the compressed size could possibly hold
 *     (deflate tops out near 1032:1) before any row buffer is sized from it.
 *     The end of the stream is checked after the last row: a short stream is
 *     "truncated", extra bytes are "trailing garbage", and a bad CRC-32 or
 *     length in the gzip trailer is ROTOR_ERR_CORRUPT (a checksum mismatch);
 *     other undecodable data is ROTOR_ERR_FORMAT.
 *   - zlib's gzread skips bytes after the last gzip member that do not start
 *     another one. The member must end the file: its trailer (CRC-32 and
 *     length of what was read, which zlib has checked) must be the file's
 *     last 8 bytes, else whatever follows it is trailing garbage.
 *   - Types 0x0B-0x0E (int16, int32, float32, float64) exist in the IDX spec
 *     but no ANN data set uses them; they are refused as unsupported with
 *     their name rather than guessed at.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "storage/storage.h"

#define IDX_MAX_NDIM 3
/* Largest single gzread: its length is an unsigned int and it returns int. */
#define IDX_GZ_CHUNK ((size_t)1 << 30)

static bool is_gzip(const unsigned char *b, size_t n) {
    return n >= 2 && b[0] == 0x1f && b[1] == 0x8b;
}

static const char *idx_type_name(unsigned code) {
    switch (code) {
    case 0x08: return "uint8";
    case 0x09: return "int8";
    case 0x0b: return "int16";
    case 0x0c: return "int32";
    case 0x0d: return "float32";
    case 0x0e: return "float64";
    }
    return NULL;
}

bool idx_sniff(const unsigned char *head, size_t n) {
    if (is_gzip(head, n))
        return true;
    return n >= 4 && head[0] == 0 && head[1] == 0 && idx_type_name(head[2]) != NULL && head[3] >= 1;
}

/* A zlib failure as a sentence: the descriptor's errno, a stream that ends
 * early, or corrupt data. */
static rotor_status gz_fail(rotor_reader *r) {
    int err = Z_OK;
    const char *msg = gzerror(r->gz, &err);
    if (err == Z_ERRNO)
        return cm_fail(ROTOR_ERR_IO, "cannot read '%s': %s", r->path, strerror(errno));
    if (err == Z_BUF_ERROR)
        return cm_fail(ROTOR_ERR_FORMAT,
                       "'%s' is truncated: the gzip stream ends after %llu uncompressed bytes",
                       r->path, (unsigned long long)r->gz_pos);
    if (err == Z_MEM_ERROR)
        return cm_fail(ROTOR_ERR_OUT_OF_MEMORY, "out of memory decompressing '%s'", r->path);
    if (msg == NULL || *msg == '\0')
        msg = "unknown zlib error";
    /* zlib prefixes the name it was given, "<fd:3>: ", which says nothing. */
    const char *colon = strncmp(msg, "<fd:", 4) == 0 ? strstr(msg, ">: ") : NULL;
    if (colon != NULL)
        msg = colon + 3;
    /* The stream's trailer holds a CRC-32 and the length; zlib's words for
     * their mismatch are "incorrect data check" and "incorrect length check". */
    if (err == Z_DATA_ERROR && strstr(msg, "check") != NULL)
        return cm_fail(ROTOR_ERR_CORRUPT, "'%s' is corrupt: its gzip checksum does not match (%s)",
                       r->path, msg);
    return cm_fail(ROTOR_ERR_FORMAT, "'%s' is not valid gzip data: %s", r->path, msg);
}

/* Reads up to n bytes of the uncompressed stream; *got < n only at its end. */
static rotor_status gz_read_some(rotor_reader *r, void *dst, size_t n, size_t *got) {
    unsigned char *p = dst;
    *got = 0;
    while (*got < n) {
        size_t want = n - *got < IDX_GZ_CHUNK ? n - *got : IDX_GZ_CHUNK;
        int k = gzread(r->gz, p + *got, (unsigned)want);
        if (k < 0)
            return gz_fail(r);
        if (k == 0) {
            /* gzread reports a cut-off stream as a plain end; gzerror says. */
            int err = Z_OK;
            (void)gzerror(r->gz, &err);
            if (err != Z_OK)
                return gz_fail(r);
            break;
        }
        r->gz_crc = (uint32_t)crc32(r->gz_crc, p + *got, (unsigned)k);
        *got += (size_t)k;
        r->gz_pos += (uint64_t)k;
    }
    return ROTOR_OK;
}

rotor_status idx_gz_read(rotor_reader *r, void *dst, size_t bytes) {
    size_t got;
    CM_FORWARD(gz_read_some(r, dst, bytes, &got));
    if (got < bytes)
        return cm_fail(ROTOR_ERR_FORMAT,
                       "'%s' is truncated: header says %s (%llu bytes uncompressed), the data "
                       "ends after %llu",
                       r->path, r->shape,
                       (unsigned long long)(r->data_offset + (uint64_t)r->info.rows * r->row_bytes),
                       (unsigned long long)r->gz_pos);
    return ROTOR_OK;
}

static rotor_status gz_trailing(const rotor_reader *r) {
    return cm_fail(ROTOR_ERR_FORMAT,
                   "'%s' has trailing garbage: bytes follow the end of its gzip stream", r->path);
}

rotor_status idx_gz_finish(rotor_reader *r) {
    r->gz_finished = true;
    unsigned char extra[64];
    size_t got;
    CM_FORWARD(gz_read_some(r, extra, sizeof extra, &got));
    if (got > 0)
        return cm_fail(ROTOR_ERR_FORMAT,
                       "'%s' has trailing garbage: header says %s (%llu bytes uncompressed), the "
                       "data goes on",
                       r->path, r->shape,
                       (unsigned long long)r->data_offset +
                           (unsigned long long)r->info.rows * r->row_bytes);
    unsigned char want[8];
    for (int i = 0; i < 4; i++) {
        want[i] = (unsigned char)(r->gz_crc >> (8 * i));
        want[4 + i] = (unsigned char)(r->gz_pos >> (8 * i));
    }
    if (memcmp(want, r->gz_tail, sizeof want) != 0)
        return gz_trailing(r);
    return ROTOR_OK;
}

void idx_close(rotor_reader *r) {
    if (r->gz != NULL) {
        gzclose(r->gz); /* also closes the descriptor it was given */
        r->gz = NULL;
        r->fd = -1;
    }
}

/* Reads header bytes from the start of the file, plain or through zlib. */
static rotor_status read_head(rotor_reader *r, unsigned char *buf, size_t n, uint64_t off,
                              size_t *got) {
    if (r->gz != NULL)
        return gz_read_some(r, buf, n, got);
    return ds_read_at(r, buf, n, off, got);
}

static rotor_status open_gzip(rotor_reader *r) {
    /* Reads go through pread elsewhere, which leaves the offset at 0. */
    if (lseek(r->fd, 0, SEEK_SET) != 0)
        return cm_fail(ROTOR_ERR_IO, "cannot read '%s': %s", r->path, strerror(errno));
    size_t got = 0;
    if (r->file_size >= sizeof r->gz_tail)
        CM_FORWARD(
            ds_read_at(r, r->gz_tail, sizeof r->gz_tail, r->file_size - sizeof r->gz_tail, &got));
    r->gz_crc = (uint32_t)crc32(0, NULL, 0);
    gzFile gz = gzdopen(r->fd, "rb");
    if (gz == NULL)
        return cm_fail(ROTOR_ERR_OUT_OF_MEMORY, "out of memory opening '%s' with zlib", r->path);
    r->gz = gz;
    r->fd = -1; /* zlib owns it now */
    if (gzbuffer(gz, 1u << 17) != 0)
        return cm_fail(ROTOR_ERR_OUT_OF_MEMORY, "cannot size the zlib buffer for '%s'", r->path);
    r->info.compressed = 1;
    return ROTOR_OK;
}

rotor_status idx_open(rotor_reader *r) {
    unsigned char head[4];
    size_t got;
    CM_FORWARD(ds_read_at(r, head, sizeof head, 0, &got));
    if (is_gzip(head, got))
        CM_FORWARD(open_gzip(r));
    if (r->gz != NULL)
        CM_FORWARD(read_head(r, head, sizeof head, 0, &got));
    if (got < 4 || head[0] != 0 || head[1] != 0 || idx_type_name(head[2]) == NULL || head[3] == 0) {
        if (r->gz != NULL)
            return cm_fail(ROTOR_ERR_FORMAT,
                           "'%s' is gzip-compressed but holds no IDX magic, and its name does not "
                           "tell the format; use one of " DS_FORMAT_LIST
                           ", or an IDX file (gzip or not)",
                           r->path);
        return cm_fail(ROTOR_ERR_FORMAT, "'%s' does not start with an IDX magic", r->path);
    }
    unsigned code = head[2], ndim = head[3];
    if (code != 0x08 && code != 0x09)
        return cm_fail(ROTOR_ERR_UNSUPPORTED,
                       "'%s' is an IDX file of %s elements (magic 0x%08lx); only uint8 and "
                       "int8 are supported",
                       r->path, idx_type_name(code), (unsigned long)ds_be32(head));
    if (ndim > IDX_MAX_NDIM)
        return cm_fail(ROTOR_ERR_UNSUPPORTED,
                       "'%s' is a %u-D IDX file (magic 0x%08lx); 1-, 2- and 3-D are supported",
                       r->path, ndim, (unsigned long)ds_be32(head));

    unsigned char sizes[4 * IDX_MAX_NDIM];
    CM_FORWARD(read_head(r, sizes, 4 * ndim, 4, &got));
    if (got < 4 * ndim)
        return cm_fail(ROTOR_ERR_FORMAT,
                       "'%s' is truncated: its IDX header of %u sizes is cut short", r->path, ndim);
    r->gz_pos = 4 + 4 * ndim;
    size_t dims[IDX_MAX_NDIM];
    size_t cols = 1;
    bool overflow = false;
    for (unsigned i = 0; i < ndim; i++) {
        dims[i] = ds_be32(sizes + 4 * i);
        if (i > 0)
            overflow |= cm_mul_overflow(cols, dims[i], &cols);
    }
    int len = snprintf(r->shape, sizeof r->shape, "%zu", dims[0]);
    for (unsigned i = 1; i < ndim && len > 0 && (size_t)len < sizeof r->shape; i++)
        len += snprintf(r->shape + len, sizeof r->shape - (size_t)len, " x %zu", dims[i]);
    if (len > 0 && (size_t)len < sizeof r->shape)
        snprintf(r->shape + len, sizeof r->shape - (size_t)len, " %s", idx_type_name(code));

    if (cols == 0)
        return cm_fail(ROTOR_ERR_FORMAT, "'%s' has IDX shape %s: dimension 0", r->path, r->shape);
    if (overflow || cols > DS_MAX_DIM || dims[0] > DS_MAX_ROWS)
        return cm_fail(ROTOR_ERR_FORMAT,
                       "'%s' has IDX shape %s: a row of more than %zu elements is not plausible",
                       r->path, r->shape, DS_MAX_DIM);
    r->info.format = ROTOR_FORMAT_IDX;
    r->info.type = code == 0x08 ? ROTOR_ELEM_U8 : ROTOR_ELEM_I8;
    r->info.rows = dims[0];
    r->info.cols = cols;
    r->data_offset = 4 + 4 * ndim;
    if (r->gz == NULL)
        return ds_check_payload(r);

    r->elem_size = 1;
    r->row_bytes = cols;
    r->record_bytes = cols;
    uint64_t need = (uint64_t)r->info.rows * cols + r->data_offset; /* < 2^61 */
    uint64_t can = r->file_size * DS_GZIP_MAX_RATIO;                /* file_size < 2^63/1032 */
    if (r->file_size > UINT64_MAX / DS_GZIP_MAX_RATIO)
        can = UINT64_MAX;
    if (need > can)
        return cm_fail(ROTOR_ERR_FORMAT,
                       "'%s' header says %s (%llu bytes uncompressed), more than %llu gzip "
                       "bytes can hold",
                       r->path, r->shape, (unsigned long long)need,
                       (unsigned long long)r->file_size);
    return ROTOR_OK;
}
