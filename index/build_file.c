/*
 * rotor_index_build_file: an index file built from a vector file without
 * holding the vectors in memory. The rows are converted into a spill file
 * beside the output, which the build maps: the kernel keeps the pages the
 * build is using and may drop the rest.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "index/index_internal.h"

void ix_spill_release(rotor_index *ix) {
    if (ix->spill != NULL)
        munmap(ix->spill, ix->spill_bytes);
    ix->spill = NULL;
}

/* Converts every row of the reader (checked, normalised for cosine) into
 * float32 rows appended to fd, a chunk at a time. */
static rotor_status spill_rows(const rotor_allocator *a, rotor_reader *r, rotor_metric metric,
                               int fd, const char *spill_path) {
    const rotor_file_info *info = rotor_reader_info(r);
    const size_t in_row = info->cols * rotor_elem_size(info->type);
    const size_t out_row = info->cols * sizeof(float);
    size_t chunk = (16u << 20) / out_row;
    if (chunk == 0)
        chunk = 1;
    uint8_t *in = cm_alloc(a, chunk * in_row, "a chunk of input rows");
    float *out = cm_alloc(a, chunk * out_row, "a chunk of converted rows");
    rotor_status st = in && out ? ROTOR_OK : ROTOR_ERR_OUT_OF_MEMORY;
    size_t done = 0, got = 0;
    uint64_t written = 0, flushed = 0;
    while (st == ROTOR_OK) {
        st = rotor_reader_read(r, in, chunk, &got);
        if (st != ROTOR_OK || got == 0)
            break;
        rotor_matrix m = {in, got, info->cols, info->type};
        st = ix_convert_rows(&m, metric, out, "base data");
        if (st != ROTOR_OK) {
            char where[64];
            snprintf(where, sizeof where, "rows from %zu on", done);
            st = cm_fail_prefix(st, where);
            break;
        }
        const uint8_t *p = (const uint8_t *)out;
        size_t left = got * out_row;
        unsigned retries = 0;
        while (left > 0 && st == ROTOR_OK) {
            ssize_t w = write(fd, p, left);
            if (w < 0 && (errno == EINTR || errno == EAGAIN) && ++retries <= DS_MAX_RETRIES)
                continue;
            if (w <= 0)
                st = cm_fail(ROTOR_ERR_IO, "cannot write the spill file beside '%s': %s",
                             spill_path, w < 0 ? strerror(errno) : "no progress");
            else {
                p += w;
                left -= (size_t)w;
                written += (uint64_t)w;
            }
        }
        /* Written back, so a build under a memory limit can have the pages
         * reclaimed, but kept: the build reads every row next, and with
         * the pages dropped its first pass read them back 4 KiB at a time
         * (Fashion-MNIST's 188 MB: 3.4 s of a 47 s one-thread build). */
        if (written - flushed >= DS_WRITE_BEHIND) {
            ds_write_behind(fd, flushed, written, true);
            flushed = written;
        }
        done += got;
    }
    cm_free(a, in);
    cm_free(a, out);
    return st;
}

rotor_status rotor_index_build_file(const rotor_params *params, const char *input_path,
                                    const char *out_path) {
    return rotor_index_build_file_with_keys(params, input_path, NULL, 0, out_path);
}

rotor_status rotor_index_build_file_with_keys(const rotor_params *params, const char *input_path,
                                              const int64_t *keys, size_t nkeys,
                                              const char *out_path) {
    cm_clear_error();
    CM_RETURN_IF(input_path == NULL || out_path == NULL, ROTOR_ERR_INVALID_ARGUMENT,
                 "input and output paths must not be NULL");
    rotor_params p = params ? *params : rotor_params_default();
    CM_FORWARD(ix_params_check(&p));
    CM_RETURN_IF(ds_same_file(input_path, out_path), ROTOR_ERR_INVALID_ARGUMENT,
                 "'%s' is the input file '%s': writing it would destroy the vectors", out_path,
                 input_path);
    rotor_reader *r;
    CM_FORWARD(rotor_reader_open(input_path, &r));
    const rotor_file_info info = *rotor_reader_info(r);
    rotor_status st = ROTOR_OK;
    if (info.type != ROTOR_ELEM_F32 && info.type != ROTOR_ELEM_U8 && info.type != ROTOR_ELEM_I8)
        st = cm_fail(ROTOR_ERR_INVALID_ARGUMENT, "'%s' holds %s ids, not vectors", input_path,
                     "int32");
    else if (info.rows == 0)
        st = cm_fail(ROTOR_ERR_EMPTY, "'%s' has no rows", input_path);
    else if (keys != NULL && nkeys != info.rows)
        st = cm_fail(ROTOR_ERR_INVALID_ARGUMENT, "%zu keys were given for the %zu rows of '%s'",
                     nkeys, info.rows, input_path);
    if (st == ROTOR_OK)
        st = ix_labels_fit(p.labels, info.rows);
    /* A cap too small is refused before the vectors are converted. */
    if (st == ROTOR_OK)
        st = ix_check_build_memory(&p, info.rows, info.cols, true);
    rotor_index *ix = NULL;
    if (st == ROTOR_OK)
        st = ix_create(&p, info.cols, info.rows, &ix);
    if (st == ROTOR_OK)
        ix->hold_out = p.ram_budget == 0; /* rows held out only for the calibration */
    /* Before the input is read: a bad key is refused before any work. */
    if (st == ROTOR_OK)
        st = ix_keys_stage(ix, keys, info.rows, NULL, 0);

    /* The converted rows go to a spill file beside the output, which the
     * build maps: the kernel keeps the pages the build is using and may
     * drop the rest, so the vectors need not fit in memory. It is deleted
     * as soon as it is mapped; the mapping lives until the index closes. */
    size_t bytes = 0;
    if (st == ROTOR_OK && (cm_mul_overflow(info.rows, info.cols * sizeof(float), &bytes) ||
                           bytes > (size_t)SSIZE_MAX))
        st = cm_fail(ROTOR_ERR_INVALID_ARGUMENT, "'%s' is too large to index", input_path);
    ds_out *spill = NULL; /* never committed: unnamed, gone with its descriptor */
    if (st == ROTOR_OK)
        st = ds_out_open(&p.allocator, out_path, &spill);
    if (spill != NULL) {
        int fd = ds_out_fd(spill);
        st = spill_rows(&p.allocator, r, p.metric, fd, out_path);
        if (st == ROTOR_OK) {
            void *map = mmap(NULL, bytes, PROT_READ, MAP_SHARED, fd, 0);
            if (map == MAP_FAILED) {
                st = cm_fail(ROTOR_ERR_IO, "cannot map the spill file beside '%s': %s", out_path,
                             strerror(errno));
            } else {
                ix->spill = map;
                ix->spill_bytes = bytes;
                ix->vectors = map;
                ix->capacity = info.rows;
            }
        }
        ds_out_abort(spill);
    }
    rotor_reader_close(r);
    if (st == ROTOR_OK && ix->q != NULL) {
        ix->codes = cm_calloc(&ix->alloc, ix->q->ops->store_bytes(ix->q, info.rows), "index codes");
        if (ix->codes == NULL)
            st = ROTOR_ERR_OUT_OF_MEMORY;
    }
    if (st == ROTOR_OK && ix->q != NULL && ix->q->ops->residual != NULL) {
        ix->resid = cm_alloc(&ix->alloc, info.rows * sizeof(float), "residuals");
        if (ix->resid == NULL)
            st = ROTOR_ERR_OUT_OF_MEMORY;
    }
    if (st == ROTOR_OK && ix->walk_q != NULL) {
        ix->walk_codes = cm_calloc(&ix->alloc, ix->walk_q->ops->store_bytes(ix->walk_q, info.rows),
                                   "index codes");
        if (ix->walk_codes == NULL)
            st = ROTOR_ERR_OUT_OF_MEMORY;
    }
    /* Random access from here on: readahead would only evict pages in use. */
    if (st == ROTOR_OK)
        (void)madvise(ix->spill, bytes, MADV_RANDOM);
    if (st == ROTOR_OK) {
        ix->spill_beside = out_path;
        st = ix_index_rows(ix, info.rows);
        ix->spill_beside = NULL;
    }
    if (st == ROTOR_OK)
        ix_keys_commit(ix);
    if (st == ROTOR_OK)
        st = ix_build_calibrate(ix);
    if (st == ROTOR_OK && p.labels != NULL)
        st = rotor_index_set_labels(ix, NULL, p.labels);
    if (st == ROTOR_OK)
        st = rotor_index_save(ix, out_path);
    rotor_index_close(ix);
    return st;
}
