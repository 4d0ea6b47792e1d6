/*
 * storage/ — bytes on disk, no graph knowledge. For now: readers and
 * writers of data set files (TEXMEX .fvecs/.ivecs/.bvecs, big-ann .fbin/
 * .u8bin/.i8bin/.ibin, NumPy .npy, (Fashion-)MNIST IDX, gzip or not). The
 * public entry points (rotor_file_probe, rotor_reader_*, rotor_matrix_*) are
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
    bool gz_finished;    /* the end-of-stream check of gzip IDX has run */
    char shape[96];      /* "1000 x 128 float32", for sentences */
    rotor_status failed; /* a reader that failed keeps failing the same way */
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

#endif /* ROTOR_STORAGE_H */
