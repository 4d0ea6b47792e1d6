/*
 * The update log: records appended to an index file after the size its
 * first page records, so that a change made to an opened index reaches
 * the file in one short write instead of a rewrite of every section.
 * storage/FORMAT.md ("The update log") documents the bytes and the
 * reasons; index/log.c decides what a record holds and replays it.
 *
 * What a crash can leave, and how the reader tells
 *   - A record is written by one pwritev at the end of the last whole
 *     one. A kill or a power loss during it leaves a prefix of it, or
 *     (power loss, file systems that extend the size before the data)
 *     zeros or stale bytes where it should be. No byte before it moves.
 *   - The reader therefore takes records while each is whole: its header
 *     in place, its payload inside the file, its checksum matching. The
 *     first that is not ends the log; what follows is the tail, ignored.
 *     A checksum that matches says the record was written whole by a
 *     writer of this file (the seed is the first page's checksum, so a
 *     record copied from another file does not match), so a whole record
 *     that is malformed is a refusal, never a tail.
 *   - The writer cuts the tail off before its first append, and cuts a
 *     record it wrote back off when the change it carries fails, so the
 *     file never holds bytes after the tail that a later reader could
 *     take for records.
 *
 * Durability
 *   - An append is a write into the page cache: it survives the process
 *     (kill -9 included) at once, and a power loss once synced
 *     (fdatasync, which also makes the new size durable; the file's name
 *     and directory do not change, so nothing else needs flushing).
 *   - A failed fdatasync may have dropped the pages it could not write
 *     (Linux marks them clean), so the file's state is unknown: the
 *     writer then refuses every append and sync, rather than report a
 *     later sync as making durable what may be gone. A save of the whole
 *     index (ixf_log_rebase) gives it a whole file again.
 *   - One writer per file: an exclusive flock, taken at open and held to
 *     the end. Two writers would interleave records; a save that renames
 *     a new file over a locked one is refused (outfile.c), since the
 *     writer's later records would go to a file no name reaches.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#define XXH_STATIC_LINKING_ONLY /* XXH3_state_t by value */
#include <xxhash.h>

#include "storage/storage.h"

#define LOG_MAGIC "RLG1"
enum { L_MAGIC = 0, L_TYPE = 4, L_SEQ = 8, L_SIZE = 16, L_CHECKSUM = 24 };
enum { MAX_PARTS = 8 };

static uint64_t pad8(uint64_t n) { return (8 - n % 8) % 8; }

static uint64_t record_checksum(XXH3_state_t *h, uint64_t seed, const uint8_t *header,
                                const ixf_part *parts, size_t n) {
    static const uint8_t zeros[8];
    /* A reset with a seed skips deriving its secret when the state's
     * seed field already holds that seed: a state on the stack holds
     * whatever a previous one left there, so it is cleared first (else a
     * long record's checksum depends on stale stack bytes). */
    XXH3_INITSTATE(h);
    XXH3_64bits_reset_withSeed(h, seed);
    XXH3_64bits_update(h, header, L_CHECKSUM);
    for (size_t i = 0; i < n; i++) {
        XXH3_64bits_update(h, parts[i].data, parts[i].size);
        XXH3_64bits_update(h, zeros, (size_t)pad8(parts[i].size));
    }
    return XXH3_64bits_digest(h);
}

static bool known_type(uint32_t t) { return t >= IXF_LOG_ADD && t <= IXF_LOG_LABELS; }

/* Reads n bytes at `at`: *got < n only at the end of the file. */
static rotor_status read_at(int fd, const char *path, void *buf, size_t n, uint64_t at,
                            size_t *got) {
    uint8_t *p = buf;
    unsigned retries = 0;
    *got = 0;
    while (*got < n) {
        ssize_t r = pread(fd, p + *got, n - *got, (off_t)(at + *got));
        if (r < 0 && (errno == EINTR || errno == EAGAIN) && ++retries <= DS_MAX_RETRIES)
            continue;
        if (r < 0)
            return cm_fail(ROTOR_ERR_IO, "cannot read the update log of '%s': %s", path,
                           strerror(errno));
        if (r == 0)
            break;
        *got += (size_t)r;
    }
    return ROTOR_OK;
}

rotor_status ixf_file_size(const ixf_file *f, uint64_t *size) {
    struct stat sb;
    CM_RETURN_IF(fstat(ixf_fd(f), &sb) != 0, ROTOR_ERR_IO, "cannot stat '%s': %s", ixf_path(f),
                 strerror(errno));
    *size = (uint64_t)sb.st_size;
    return ROTOR_OK;
}

/* ---- reading ---------------------------------------------------------------- */

void ixf_log_record_free(const rotor_allocator *a, ixf_log_record *rec) {
    cm_free(a, rec->payload);
    rec->payload = NULL;
}

/* Whether the header h (at byte `at` of a file ending at `end`) and the
 * payload it announces form a whole record; on success the payload is in
 * *payload (allocated), else nothing is. */
static rotor_status take_whole(const ixf_file *f, const rotor_allocator *a, const uint8_t *h,
                               uint64_t at, uint64_t end, uint8_t **payload, bool *whole) {
    *whole = false;
    *payload = NULL;
    if (memcmp(h + L_MAGIC, LOG_MAGIC, 4) != 0)
        return ROTOR_OK;
    const uint64_t size = cm_get_le64(h + L_SIZE);
    if (size % 8 != 0 || size > end - at - IXF_LOG_HEADER || size > SIZE_MAX - CM_ALIGN)
        return ROTOR_OK;
    uint8_t *p = cm_alloc(a, size ? (size_t)size : 1, "a record of the update log");
    if (p == NULL)
        return ROTOR_ERR_OUT_OF_MEMORY;
    size_t got;
    rotor_status st = read_at(ixf_fd(f), ixf_path(f), p, (size_t)size, at + IXF_LOG_HEADER, &got);
    if (st == ROTOR_OK && got == size) {
        XXH3_state_t hash;
        const ixf_part part = {p, (size_t)size};
        *whole =
            record_checksum(&hash, ixf_log_seed(f), h, &part, 1) == cm_get_le64(h + L_CHECKSUM);
    }
    if (st != ROTOR_OK || !*whole)
        cm_free(a, p);
    else
        *payload = p;
    return st;
}

rotor_status ixf_log_read(const ixf_file *f, const rotor_allocator *a, uint64_t at, uint64_t end,
                          uint64_t seq, ixf_log_record *rec, bool *whole) {
    *rec = (ixf_log_record){0};
    *whole = false;
    if (at > end || end - at < IXF_LOG_HEADER)
        return ROTOR_OK;
    uint8_t h[IXF_LOG_HEADER];
    size_t got;
    CM_FORWARD(read_at(ixf_fd(f), ixf_path(f), h, sizeof h, at, &got));
    if (got < sizeof h)
        return ROTOR_OK;
    uint8_t *payload;
    CM_FORWARD(take_whole(f, a, h, at, end, &payload, whole));
    if (!*whole)
        return ROTOR_OK;
    *rec = (ixf_log_record){
        .type = cm_get_le32(h + L_TYPE),
        .seq = cm_get_le64(h + L_SEQ),
        .offset = at,
        .size = cm_get_le64(h + L_SIZE),
        .payload = payload,
    };
    rotor_status st = ROTOR_OK;
    if (!known_type(rec->type))
        st = cm_fail(ROTOR_ERR_FORMAT,
                     "'%s': record %" PRIu64 " of its update log (byte %" PRIu64
                     ") has unknown type %u",
                     ixf_path(f), seq, at, rec->type);
    else if (rec->seq != seq)
        st = cm_fail(ROTOR_ERR_FORMAT,
                     "'%s': record %" PRIu64 " of its update log (byte %" PRIu64
                     ") is numbered %" PRIu64,
                     ixf_path(f), seq, at, rec->seq);
    if (st != ROTOR_OK) {
        ixf_log_record_free(a, rec);
        *whole = false;
    }
    return st;
}

rotor_status ixf_log_find_whole(const ixf_file *f, const rotor_allocator *a, uint64_t from,
                                uint64_t end, bool *found, uint64_t *at) {
    *found = false;
    if (from > end || end - from < IXF_LOG_HEADER)
        return ROTOR_OK;
    CM_RETURN_IF(end - from > SIZE_MAX / 2, ROTOR_ERR_OUT_OF_MEMORY,
                 "the tail of the update log of '%s' is too large to read", ixf_path(f));
    const size_t n = (size_t)(end - from);
    uint8_t *tail = cm_alloc(a, n, "the tail of the update log");
    if (tail == NULL)
        return ROTOR_ERR_OUT_OF_MEMORY;
    size_t got;
    rotor_status st = read_at(ixf_fd(f), ixf_path(f), tail, n, from, &got);
    /* Records start 8 bytes apart from the log's start, whatever came
     * before; a candidate needs only its magic to be read further. */
    for (size_t i = 0; st == ROTOR_OK && !*found && i + IXF_LOG_HEADER <= got; i += 8) {
        if (memcmp(tail + i, LOG_MAGIC, 4) != 0)
            continue;
        uint8_t *payload;
        st = take_whole(f, a, tail + i, from + i, from + got, &payload, found);
        if (*found) {
            cm_free(a, payload);
            *at = from + i;
        }
    }
    cm_free(a, tail);
    return st;
}

/* ---- writing ---------------------------------------------------------------- */

struct ixf_log_writer {
    XXH3_state_t hash; /* first: the state wants 64-byte alignment */
    rotor_allocator alloc;
    char *path;
    int fd;
    uint64_t seed;    /* the checksum seed of the file the log is in */
    uint64_t end;     /* after the last committed record */
    uint64_t seq;     /* the next record's number */
    uint64_t pending; /* bytes of a record written and not yet committed */
    /* ROTOR_OK, or why the log takes no more records (a failed sync, a
     * record that could not be cut back), with its sentence. */
    rotor_status failed;
    char why[384];
};

/* Stops the log, with the sentence in w->why. */
static rotor_status stop_log(ixf_log_writer *w) {
    w->failed = ROTOR_ERR_IO;
    return cm_fail(ROTOR_ERR_IO, "%s", w->why);
}

static rotor_status refuse_if_failed(const ixf_log_writer *w) {
    CM_RETURN_IF(w->failed != ROTOR_OK, w->failed, "%s", w->why);
    return ROTOR_OK;
}

/* Cuts the file back to the end of the last committed record. */
static rotor_status cut_back(ixf_log_writer *w) {
    w->pending = 0;
    unsigned retries = 0;
    while (ftruncate(w->fd, (off_t)w->end) != 0) {
        if (errno == EINTR && ++retries <= DS_MAX_RETRIES)
            continue;
        snprintf(w->why, sizeof w->why,
                 "the update log of '%s' holds a record of a change that failed and could not "
                 "be cut off (%s): the index takes no more changes until it is saved",
                 w->path, strerror(errno));
        return stop_log(w);
    }
    return ROTOR_OK;
}

rotor_status ixf_log_writer_open(const ixf_file *f, const rotor_allocator *a, uint64_t end,
                                 uint64_t seq, ixf_log_writer **out) {
    *out = NULL;
    const char *path = ixf_path(f);
    ixf_log_writer *w = cm_calloc(a, sizeof *w, "an update log writer");
    if (w == NULL)
        return ROTOR_ERR_OUT_OF_MEMORY;
    w->alloc = *a;
    w->fd = -1;
    w->seed = ixf_log_seed(f);
    w->end = end;
    w->seq = seq;
    const size_t len = strlen(path);
    w->path = cm_alloc(a, len + 1, "a file name");
    rotor_status st = w->path == NULL ? ROTOR_ERR_OUT_OF_MEMORY : ROTOR_OK;
    if (st == ROTOR_OK) {
        memcpy(w->path, path, len + 1);
        /* The file opened, not whatever its name means now: through /proc,
         * or, without /proc, by name and checked to be the same file. */
        char proc[64];
        snprintf(proc, sizeof proc, "/proc/self/fd/%d", ixf_fd(f));
        w->fd = open(proc, O_RDWR | O_CLOEXEC | O_NOCTTY);
        if (w->fd < 0 && errno == ENOENT)
            w->fd = open(path, O_RDWR | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (w->fd < 0)
            st = cm_fail(ROTOR_ERR_IO, "cannot open '%s' for writing: %s", path, strerror(errno));
    }
    struct stat mine, theirs;
    if (st == ROTOR_OK && (fstat(w->fd, &mine) != 0 || fstat(ixf_fd(f), &theirs) != 0))
        st = cm_fail(ROTOR_ERR_IO, "cannot stat '%s': %s", path, strerror(errno));
    if (st == ROTOR_OK && (mine.st_dev != theirs.st_dev || mine.st_ino != theirs.st_ino))
        st = cm_fail(ROTOR_ERR_IO,
                     "cannot write '%s': another file took its name after it was opened", path);
    /* A file system without flock keeps no two writers apart; one that
     * refuses because another holds the lock refuses this open. */
    if (st == ROTOR_OK && flock(w->fd, LOCK_EX | LOCK_NB) != 0 && errno == EWOULDBLOCK)
        st = cm_fail(ROTOR_ERR_IO,
                     "cannot write '%s': an index opened writable elsewhere is appending to it",
                     path);
    /* The tail a crash left goes before anything is appended. */
    if (st == ROTOR_OK && (uint64_t)mine.st_size > end && ftruncate(w->fd, (off_t)end) != 0)
        st = cm_fail(ROTOR_ERR_IO, "cannot cut the unfinished record off the end of '%s': %s", path,
                     strerror(errno));
    if (st != ROTOR_OK) {
        ixf_log_writer_close(w);
        return st;
    }
    *out = w;
    return ROTOR_OK;
}

void ixf_log_writer_close(ixf_log_writer *w) {
    if (w == NULL)
        return;
    rotor_allocator a = w->alloc;
    if (w->fd >= 0)
        close(w->fd); /* and its lock */
    cm_free(&a, w->path);
    cm_free(&a, w);
}

rotor_status ixf_log_append(ixf_log_writer *w, uint32_t type, const ixf_part *parts, size_t n) {
    CM_FORWARD(refuse_if_failed(w));
    CM_RETURN_IF(w->pending != 0 || n > MAX_PARTS || !known_type(type), ROTOR_ERR_INVALID_ARGUMENT,
                 "update log writer misused: record type %u, %zu parts", type, n);
    uint64_t size = 0;
    for (size_t i = 0; i < n; i++) {
        CM_RETURN_IF(parts[i].size > UINT64_MAX / 2 - size, ROTOR_ERR_INVALID_ARGUMENT,
                     "a record of %zu bytes is too large for the update log", parts[i].size);
        size += parts[i].size + pad8(parts[i].size);
    }
    uint8_t h[IXF_LOG_HEADER];
    memcpy(h + L_MAGIC, LOG_MAGIC, 4);
    cm_put_le32(h + L_TYPE, type);
    cm_put_le64(h + L_SEQ, w->seq);
    cm_put_le64(h + L_SIZE, size);
    cm_put_le64(h + L_CHECKSUM, record_checksum(&w->hash, w->seed, h, parts, n));

    static const uint8_t zeros[8];
    struct iovec iov[1 + 2 * MAX_PARTS];
    int cnt = 0;
    iov[cnt++] = (struct iovec){h, sizeof h};
    for (size_t i = 0; i < n; i++) {
        if (parts[i].size > 0)
            iov[cnt++] = (struct iovec){(void *)parts[i].data, parts[i].size};
        if (pad8(parts[i].size) > 0)
            iov[cnt++] = (struct iovec){(void *)zeros, (size_t)pad8(parts[i].size)};
    }
    /* One call for the whole record, resumed where a short write stopped. */
    uint64_t at = w->end;
    struct iovec *v = iov;
    unsigned retries = 0;
    while (cnt > 0) {
        ssize_t got = pwritev(w->fd, v, cnt > IOV_MAX ? IOV_MAX : cnt, (off_t)at);
        if (got < 0 && (errno == EINTR || errno == EAGAIN) && ++retries <= DS_MAX_RETRIES)
            continue;
        if (got <= 0) {
            const int e = got < 0 ? errno : EIO;
            (void)cut_back(w);
            return cm_fail(ROTOR_ERR_IO, "cannot append to the update log of '%s': %s", w->path,
                           strerror(e));
        }
        at += (uint64_t)got;
        w->pending += (uint64_t)got;
        for (size_t left = (size_t)got; left > 0;) {
            if (left >= v->iov_len) {
                left -= v->iov_len;
                v++;
                cnt--;
            } else {
                v->iov_base = (uint8_t *)v->iov_base + left;
                v->iov_len -= left;
                left = 0;
            }
        }
        while (cnt > 0 && v->iov_len == 0) {
            v++;
            cnt--;
        }
    }
    return ROTOR_OK;
}

void ixf_log_commit(ixf_log_writer *w) {
    w->end += w->pending;
    w->pending = 0;
    w->seq++;
}

rotor_status ixf_log_cancel(ixf_log_writer *w) { return w->pending ? cut_back(w) : ROTOR_OK; }

rotor_status ixf_log_sync(ixf_log_writer *w) {
    CM_FORWARD(refuse_if_failed(w));
    if (fdatasync(w->fd) != 0) {
        snprintf(w->why, sizeof w->why,
                 "cannot sync '%s' (%s): changes since the last sync may be lost, and the index "
                 "takes no more changes until it is saved",
                 w->path, strerror(errno));
        return stop_log(w);
    }
    return ROTOR_OK;
}

uint64_t ixf_log_end(const ixf_log_writer *w) { return w->end; }
uint64_t ixf_log_next_seq(const ixf_log_writer *w) { return w->seq; }

bool ixf_log_is_file(const ixf_log_writer *w, const char *path) {
    struct stat a, b;
    return fstat(w->fd, &a) == 0 && stat(path, &b) == 0 && a.st_dev == b.st_dev &&
           a.st_ino == b.st_ino;
}

void ixf_log_rebase(ixf_log_writer *w, const ixf_kept *kept) {
    close(w->fd);
    w->fd = kept->fd;
    w->seed = kept->checksum;
    w->end = kept->size;
    w->seq = 0;
    w->pending = 0;
    w->failed = ROTOR_OK;
    w->why[0] = '\0';
}
