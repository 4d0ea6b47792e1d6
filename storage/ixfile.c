/*
 * The index file's container: a first page with the header and the section
 * table, then 4 KiB-aligned sections, each with its XXH3-64 checksum.
 * storage/FORMAT.md documents every byte; this file is the only code that
 * reads or writes the container.
 *
 * Design choices
 *   - Sections start on 4 KiB boundaries so that a mapping of the file hands
 *     every section to its user page-aligned (SIMD loads, fast-scan blocks),
 *     and so that the vector section can be read with O_DIRECT.
 *   - The header and the table share one checksum: both are tiny, both are
 *     read at every open, and neither means anything without the other.
 *   - Opening reads the first page only, checks it completely, then maps the
 *     file, or (IXF_READ: verify, and opens that must not depend on the file
 *     staying unchanged) reads it whole into memory with pread. The file is
 *     opened once, without blocking, and kept open for the vector store. Section checksums are
 * computed when asked (ixf_check): hashing runs at memory speed, but hashing a section means
 * reading it, and an index bigger than the page cache would open at disk speed instead of at once.
 * The index layer decides which sections to hash at open.
 *   - The writer streams: a section is appended in pieces, hashed as it goes,
 *     so a section need never be in memory whole (vectors of a build bigger
 *     than RAM). The first page is written last, after every section is on
 *     disk, then fsync, rename over the target, fsync of the directory
 *     (outfile.c): a crash leaves the old file or the new one, never half of
 *     one, and no temporary.
 *   - Every field is little-endian and read byte by byte at a fixed offset,
 *     so no check depends on a value not yet checked. The sections' contents
 *     are little-endian too (floats, ids, codes copied as they are in
 *     memory): a big-endian host refuses to write or read index files.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define XXH_STATIC_LINKING_ONLY /* XXH3_state_t by value: no allocation behind our back */
#include <xxhash.h>

#include "storage/storage.h"

#define IXF_MAGIC "ROTORIDX"
#define IXF_VERSION 1u
#define IXF_ENDIAN 0x0a0b0c0du
#define IXF_HEADER 256u /* bytes of the fixed header; the table follows */
#define IXF_ENTRY 32u   /* bytes of one table entry */

/* Fixed header offsets (FORMAT.md). */
enum {
    H_MAGIC = 0,
    H_VERSION = 8,
    H_ENDIAN = 12,
    H_HEADER_BYTES = 16,
    H_SECTIONS = 20,
    H_FILE_SIZE = 24,
    H_CHECKSUM = 32,
    H_KIND = 40,
    H_METRIC = 44,
    H_DIM = 48,
    H_COUNT = 56,
    H_QUANT = 64,
    H_WALK_QUANT = 96,
    H_SEED = 128,
    H_DEGREE = 136,
    H_BUILD_LIST = 140,
    H_NEIGHBOR_CODES = 144,
    H_BUILD_SPACE = 148,
    H_NLIST = 152,
    H_ALPHA = 156,
    H_ON_DISK = 160,
    H_TRAIN_SECONDS = 168,
    H_TOOL = 176,
    H_CREATED = 208,
};

static bool host_little_endian(void) {
    const uint16_t one = 1;
    return *(const uint8_t *)&one == 1;
}

const char *ixf_section_name(uint32_t id) {
    switch (id) {
    case IXF_SEC_VECTORS: return "vectors";
    case IXF_SEC_QUANT: return "quantizer";
    case IXF_SEC_CODES: return "codes";
    case IXF_SEC_WALK_QUANT: return "walking quantizer";
    case IXF_SEC_WALK_CODES: return "walking codes";
    case IXF_SEC_GRAPH_META: return "graph header";
    case IXF_SEC_GRAPH: return "graph";
    case IXF_SEC_IVF_META: return "IVF header";
    case IXF_SEC_IVF_IDS: return "IVF ids";
    case IXF_SEC_IVF_CODES: return "IVF codes";
    case IXF_SEC_TUNING: return "tuning";
    case IXF_SEC_RESIDUALS: return "residuals";
    case IXF_SEC_LABELS: return "labels";
    case IXF_SEC_KEYS: return "keys";
    case IXF_SEC_DELETED: return "deleted";
    case IXF_SEC_NODES: return "nodes";
    case IXF_SEC_IVF_QUANT: return "IVF quantizer";
    case IXF_SEC_VECTORS8: return "vectors (bytes)";
    }
    return "unknown";
}

/* ---- writing ---------------------------------------------------------------- */

typedef struct ixf_entry {
    uint32_t id;
    uint64_t offset, size, checksum;
} ixf_entry;

struct ixf_writer {
    XXH3_state_t hash; /* first: the state wants 64-byte alignment */
    rotor_allocator alloc;
    char *path;
    ds_out *out;
    int fd;
    uint64_t pos;     /* next byte of the file */
    uint64_t flushed; /* bytes before this are on disk and out of the cache */
    bool open_section;
    unsigned nsections;
    ixf_entry sections[IXF_MAX_SECTIONS];
};

static rotor_status write_all(ixf_writer *w, const void *data, size_t n) {
    const uint8_t *p = data;
    unsigned retries = 0;
    while (n > 0) {
        ssize_t got = pwrite(w->fd, p, n, (off_t)w->pos);
        if (got < 0 && (errno == EINTR || errno == EAGAIN) && ++retries <= DS_MAX_RETRIES)
            continue;
        if (got <= 0)
            return cm_fail(ROTOR_ERR_IO, "cannot write '%s': %s", w->path,
                           got < 0 ? strerror(errno) : "no progress");
        p += got;
        n -= (size_t)got;
        w->pos += (uint64_t)got;
        if (w->pos - w->flushed >= DS_WRITE_BEHIND) {
            ds_write_behind(w->fd, w->flushed, w->pos, false);
            w->flushed = w->pos;
        }
    }
    return ROTOR_OK;
}

rotor_status ixf_create(const rotor_allocator *a, const char *path, ixf_writer **out) {
    *out = NULL;
    CM_RETURN_IF(!host_little_endian(), ROTOR_ERR_UNSUPPORTED,
                 "index files are little-endian and this host is not");
    ixf_writer *w = cm_calloc(a, sizeof *w, "an index file writer");
    if (w == NULL)
        return ROTOR_ERR_OUT_OF_MEMORY;
    w->alloc = *a;
    w->fd = -1;
    size_t len = strlen(path);
    w->path = cm_alloc(a, len + 1, "a file name");
    if (w->path == NULL) {
        ixf_abort(w);
        return ROTOR_ERR_OUT_OF_MEMORY;
    }
    memcpy(w->path, path, len + 1);
    rotor_status st = ds_out_open(a, path, &w->out);
    if (st != ROTOR_OK) {
        ixf_abort(w);
        return st;
    }
    w->fd = ds_out_fd(w->out);
    w->pos = w->flushed = IXF_PAGE; /* the first page is written at commit */
    *out = w;
    return ROTOR_OK;
}

rotor_status ixf_section_begin(ixf_writer *w, ixf_section_id id) {
    CM_RETURN_IF(w->open_section || w->nsections == IXF_MAX_SECTIONS, ROTOR_ERR_INVALID_ARGUMENT,
                 "index file writer misused: section %u", (unsigned)id);
    static const uint8_t zeros[IXF_PAGE];
    uint64_t aligned = (w->pos + IXF_PAGE - 1) / IXF_PAGE * IXF_PAGE;
    CM_FORWARD(write_all(w, zeros, (size_t)(aligned - w->pos)));
    w->sections[w->nsections] = (ixf_entry){.id = (uint32_t)id, .offset = w->pos};
    XXH3_64bits_reset(&w->hash);
    w->open_section = true;
    return ROTOR_OK;
}

rotor_status ixf_append(ixf_writer *w, const void *data, size_t n) {
    CM_RETURN_IF(!w->open_section, ROTOR_ERR_INVALID_ARGUMENT,
                 "index file writer misused: append outside a section");
    if (n == 0)
        return ROTOR_OK;
    XXH3_64bits_update(&w->hash, data, n);
    return write_all(w, data, n);
}

rotor_status ixf_pad(ixf_writer *w, size_t align) {
    static const uint8_t zeros[IXF_PAGE];
    ixf_entry *e = &w->sections[w->nsections];
    uint64_t used = w->pos - e->offset;
    uint64_t pad = (align - used % align) % align;
    return pad > 0 ? ixf_append(w, zeros, (size_t)pad) : ROTOR_OK;
}

rotor_status ixf_section_end(ixf_writer *w) {
    CM_RETURN_IF(!w->open_section, ROTOR_ERR_INVALID_ARGUMENT,
                 "index file writer misused: no section to end");
    ixf_entry *e = &w->sections[w->nsections++];
    e->size = w->pos - e->offset;
    e->checksum = XXH3_64bits_digest(&w->hash);
    w->open_section = false;
    return ROTOR_OK;
}

rotor_status ixf_put_section(ixf_writer *w, ixf_section_id id, const void *data, size_t n) {
    CM_FORWARD(ixf_section_begin(w, id));
    CM_FORWARD(ixf_append(w, data, n));
    return ixf_section_end(w);
}

static void put_name(uint8_t *p, const char *s) {
    size_t n = strnlen(s, IXF_NAME - 1);
    memcpy(p, s, n);
}

static void fill_first_page(const ixf_writer *w, const ixf_meta *m, uint8_t *page) {
    memset(page, 0, IXF_PAGE);
    memcpy(page + H_MAGIC, IXF_MAGIC, 8);
    cm_put_le32(page + H_VERSION, IXF_VERSION);
    cm_put_le32(page + H_ENDIAN, IXF_ENDIAN);
    cm_put_le32(page + H_HEADER_BYTES, IXF_HEADER);
    cm_put_le32(page + H_SECTIONS, w->nsections);
    cm_put_le64(page + H_FILE_SIZE, w->pos);
    cm_put_le32(page + H_KIND, m->kind);
    cm_put_le32(page + H_METRIC, m->metric);
    cm_put_le64(page + H_DIM, m->dim);
    cm_put_le64(page + H_COUNT, m->count);
    put_name(page + H_QUANT, m->quant);
    put_name(page + H_WALK_QUANT, m->walk_quant);
    cm_put_le64(page + H_SEED, m->seed);
    cm_put_le32(page + H_DEGREE, m->graph_degree);
    cm_put_le32(page + H_BUILD_LIST, m->build_list);
    cm_put_le32(page + H_NEIGHBOR_CODES, m->neighbor_codes);
    cm_put_le32(page + H_BUILD_SPACE, m->build_space);
    cm_put_le32(page + H_NLIST, m->nlist);
    uint32_t alpha_bits;
    memcpy(&alpha_bits, &m->alpha, 4);
    cm_put_le32(page + H_ALPHA, alpha_bits);
    cm_put_le32(page + H_ON_DISK, m->vectors_on_disk);
    uint64_t train_bits;
    memcpy(&train_bits, &m->train_seconds, 8);
    cm_put_le64(page + H_TRAIN_SECONDS, train_bits);
    put_name(page + H_TOOL, m->tool);
    cm_put_le64(page + H_CREATED, m->created);
    for (unsigned i = 0; i < w->nsections; i++) {
        uint8_t *e = page + IXF_HEADER + i * IXF_ENTRY;
        cm_put_le32(e, w->sections[i].id);
        cm_put_le64(e + 8, w->sections[i].offset);
        cm_put_le64(e + 16, w->sections[i].size);
        cm_put_le64(e + 24, w->sections[i].checksum);
    }
    size_t used = IXF_HEADER + w->nsections * IXF_ENTRY;
    cm_put_le64(page + H_CHECKSUM, XXH3_64bits(page, used));
}

static rotor_status commit(ixf_writer *w, const ixf_meta *meta, ixf_kept *kept) {
    rotor_status st = ROTOR_OK;
    if (w->open_section)
        st = cm_fail(ROTOR_ERR_INVALID_ARGUMENT, "index file writer misused: a section is open");
    uint8_t *page = st == ROTOR_OK ? cm_alloc(&w->alloc, IXF_PAGE, "an index header") : NULL;
    if (st == ROTOR_OK && page == NULL)
        st = ROTOR_ERR_OUT_OF_MEMORY;
    if (st == ROTOR_OK) {
        fill_first_page(w, meta, page);
        if (kept != NULL) {
            kept->checksum = cm_get_le64(page + H_CHECKSUM);
            kept->size = w->pos;
        }
        uint64_t end = w->pos;
        w->pos = 0;
        w->flushed = 0;
        st = write_all(w, page, IXF_PAGE);
        w->pos = end;
    }
    cm_free(&w->alloc, page);
    if (st == ROTOR_OK) {
        ds_out *o = w->out;
        w->out = NULL;
        w->fd = -1;
        st = kept != NULL ? ds_out_commit_keep(o, &kept->fd) : ds_out_commit(o);
    }
    ixf_abort(w);
    return st;
}

rotor_status ixf_commit(ixf_writer *w, const ixf_meta *meta) { return commit(w, meta, NULL); }

rotor_status ixf_commit_keep(ixf_writer *w, const ixf_meta *meta, ixf_kept *kept) {
    kept->fd = -1;
    return commit(w, meta, kept);
}

void ixf_abort(ixf_writer *w) {
    if (w == NULL)
        return;
    ds_out_abort(w->out); /* closes w->fd */
    rotor_allocator a = w->alloc;
    cm_free(&a, w->path);
    cm_free(&a, w);
}

/* ---- reading ---------------------------------------------------------------- */

struct ixf_file {
    rotor_allocator alloc;
    char *path;
    int fd;             /* kept open: the vector store reads through it */
    const uint8_t *map; /* the mapping, or the copy read with pread */
    bool copied;        /* IXF_READ: map is memory of our own */
    /* IXF_READ: which of the sections read only when asked (vectors,
     * nodes: bit id) are in the copy. */
    uint32_t lazy_read;
    /* The size the first page records: what is mapped or copied. The
     * update log (ixlog.c) follows it and is read with pread, so the
     * mapping never covers bytes a writer appends or cuts off. */
    uint64_t size;
    uint64_t checksum; /* the first page's, which seeds every log record's */
    ixf_meta meta;
    unsigned nsections;
    ixf_entry sections[IXF_MAX_SECTIONS];
};

static void get_name(char *dst, const uint8_t *src) {
    memcpy(dst, src, IXF_NAME);
    dst[IXF_NAME - 1] = '\0';
}

/* Everything in the first page, checked. `size` is the file's real size. */
static rotor_status parse_first_page(ixf_file *f, const uint8_t *page, uint64_t size) {
    const char *path = f->path;
    CM_RETURN_IF(size < 8 || memcmp(page + H_MAGIC, IXF_MAGIC, 8) != 0, ROTOR_ERR_FORMAT,
                 "'%s' is not a rotor index (no ROTORIDX magic at its start)", path);
    CM_RETURN_IF(size < IXF_PAGE, ROTOR_ERR_FORMAT,
                 "'%s' is truncated: %" PRIu64 " bytes, shorter than its %u-byte header", path,
                 size, IXF_PAGE);
    uint32_t version = cm_get_le32(page + H_VERSION);
    CM_RETURN_IF(version > IXF_VERSION, ROTOR_ERR_UNSUPPORTED,
                 "'%s' has index format version %u; this build of rotor reads version %u", path,
                 version, IXF_VERSION);
    CM_RETURN_IF(version != IXF_VERSION, ROTOR_ERR_FORMAT,
                 "'%s' has index format version %u, which never existed", path, version);
    CM_RETURN_IF(cm_get_le32(page + H_ENDIAN) != IXF_ENDIAN, ROTOR_ERR_FORMAT,
                 "'%s' has a damaged byte-order mark", path);
    uint32_t header = cm_get_le32(page + H_HEADER_BYTES), nsec = cm_get_le32(page + H_SECTIONS);
    CM_RETURN_IF(header != IXF_HEADER, ROTOR_ERR_FORMAT,
                 "'%s' declares a %u-byte header; version %u headers are %u bytes", path, header,
                 IXF_VERSION, IXF_HEADER);
    CM_RETURN_IF(nsec == 0 || nsec > IXF_MAX_SECTIONS, ROTOR_ERR_FORMAT,
                 "'%s' declares %u sections; an index has 1 to %u", path, nsec, IXF_MAX_SECTIONS);
    /* The checksum covers the header (with its own field zero) and table. */
    size_t used = IXF_HEADER + nsec * IXF_ENTRY;
    uint8_t copy[IXF_HEADER + IXF_MAX_SECTIONS * IXF_ENTRY];
    memcpy(copy, page, used);
    memset(copy + H_CHECKSUM, 0, 8);
    CM_RETURN_IF(XXH3_64bits(copy, used) != cm_get_le64(page + H_CHECKSUM), ROTOR_ERR_CORRUPT,
                 "'%s' is corrupt: the header checksum does not match", path);
    uint64_t recorded = cm_get_le64(page + H_FILE_SIZE);
    CM_RETURN_IF(size < recorded, ROTOR_ERR_FORMAT,
                 "'%s' is truncated: %" PRIu64 " bytes of the %" PRIu64 " it was written with",
                 path, size, recorded);
    CM_RETURN_IF(recorded < IXF_PAGE, ROTOR_ERR_FORMAT,
                 "'%s' records a size of %" PRIu64 " bytes, less than its first page", path,
                 recorded);
    /* Bytes past `recorded` are the update log's (ixlog.c), not refused. */
    size = recorded;
    f->checksum = cm_get_le64(page + H_CHECKSUM);

    uint64_t prev_end = IXF_PAGE;
    for (unsigned i = 0; i < nsec; i++) {
        const uint8_t *e = page + IXF_HEADER + i * IXF_ENTRY;
        ixf_entry s = {cm_get_le32(e), cm_get_le64(e + 8), cm_get_le64(e + 16),
                       cm_get_le64(e + 24)};
        const char *name = ixf_section_name(s.id);
        CM_RETURN_IF(strcmp(name, "unknown") == 0 || cm_get_le32(e + 4) != 0, ROTOR_ERR_FORMAT,
                     "'%s' has a section of unknown kind %u", path, s.id);
        for (unsigned j = 0; j < i; j++)
            CM_RETURN_IF(f->sections[j].id == s.id, ROTOR_ERR_FORMAT,
                         "'%s' holds the %s section twice", path, name);
        CM_RETURN_IF(s.offset % IXF_PAGE != 0 || s.offset < prev_end, ROTOR_ERR_FORMAT,
                     "'%s': the %s section starts at byte %" PRIu64
                     ", not on a free 4 KiB boundary",
                     path, name, s.offset);
        CM_RETURN_IF(s.size > size || s.offset > size - s.size, ROTOR_ERR_FORMAT,
                     "'%s': the %s section (%" PRIu64 " bytes at %" PRIu64
                     ") runs past the end of the index (%" PRIu64 " bytes)",
                     path, name, s.size, s.offset, size);
        prev_end = s.offset + s.size;
        f->sections[i] = s;
    }
    f->nsections = nsec;

    ixf_meta *m = &f->meta;
    m->kind = cm_get_le32(page + H_KIND);
    m->metric = cm_get_le32(page + H_METRIC);
    m->dim = cm_get_le64(page + H_DIM);
    m->count = cm_get_le64(page + H_COUNT);
    get_name(m->quant, page + H_QUANT);
    get_name(m->walk_quant, page + H_WALK_QUANT);
    m->seed = cm_get_le64(page + H_SEED);
    m->graph_degree = cm_get_le32(page + H_DEGREE);
    m->build_list = cm_get_le32(page + H_BUILD_LIST);
    m->neighbor_codes = cm_get_le32(page + H_NEIGHBOR_CODES);
    m->build_space = cm_get_le32(page + H_BUILD_SPACE);
    m->nlist = cm_get_le32(page + H_NLIST);
    uint32_t alpha_bits = cm_get_le32(page + H_ALPHA);
    memcpy(&m->alpha, &alpha_bits, 4);
    m->vectors_on_disk = cm_get_le32(page + H_ON_DISK);
    uint64_t train_bits = cm_get_le64(page + H_TRAIN_SECONDS);
    memcpy(&m->train_seconds, &train_bits, 8);
    get_name(m->tool, page + H_TOOL);
    m->created = cm_get_le64(page + H_CREATED);
    return ROTOR_OK;
}

/* Reads [from, to) of the file into the copy. */
static rotor_status read_range(ixf_file *f, uint64_t from, uint64_t to) {
    uint8_t *dst = (uint8_t *)f->map;
    unsigned retries = 0;
    while (from < to) {
        size_t want = to - from < ((size_t)1 << 30) ? (size_t)(to - from) : (size_t)1 << 30;
        ssize_t r = pread(f->fd, dst + from, want, (off_t)from);
        if (r < 0 && (errno == EINTR || errno == EAGAIN) && ++retries <= DS_MAX_RETRIES)
            continue;
        if (r <= 0)
            return cm_fail(ROTOR_ERR_IO, "cannot read '%s': %s", f->path,
                           r < 0 ? strerror(errno) : "the file shrank while being read");
        from += (uint64_t)r;
    }
    return ROTOR_OK;
}

static const ixf_entry *find(const ixf_file *f, ixf_section_id id);

/* The sections an IXF_READ open leaves on disk until asked (ixf_fill):
 * an index with its vectors on disk never needs them in memory, nor one
 * whose graph stays on disk its node pages. */
static bool lazy_section(uint32_t id) { return id == IXF_SEC_VECTORS || id == IXF_SEC_NODES; }

/* IXF_READ: the whole file but the lazy sections. Sections do not
 * overlap, so the bytes between them are read in order. */
static rotor_status read_copy(ixf_file *f) {
    void *buf = f->alloc.alloc(f->alloc.opaque, (size_t)f->size, IXF_PAGE);
    CM_RETURN_IF(buf == NULL, ROTOR_ERR_OUT_OF_MEMORY,
                 "out of memory reading '%s' (%" PRIu64 " bytes) into memory", f->path, f->size);
    f->map = buf;
    f->copied = true;
    uint64_t at = 0;
    for (;;) {
        const ixf_entry *next = NULL;
        for (unsigned i = 0; i < f->nsections; i++) {
            const ixf_entry *e = &f->sections[i];
            if (lazy_section(e->id) && e->size > 0 && e->offset >= at &&
                (next == NULL || e->offset < next->offset))
                next = e;
        }
        if (next == NULL)
            return read_range(f, at, f->size);
        CM_FORWARD(read_range(f, at, next->offset));
        at = next->offset + next->size;
    }
}

rotor_status ixf_fill(ixf_file *f, ixf_section_id id) {
    const ixf_entry *e = find(f, id);
    if (!f->copied || !lazy_section(id) || e == NULL || e->size == 0 || (f->lazy_read & (1u << id)))
        return ROTOR_OK;
    CM_FORWARD(read_range(f, e->offset, e->offset + e->size));
    f->lazy_read |= 1u << id;
    return ROTOR_OK;
}

void ixf_release(ixf_file *f, ixf_section_id id) {
    const ixf_entry *e = find(f, id);
    if (e == NULL || e->size == 0)
        return;
    /* Whole pages inside the section only (sections start on pages of a
     * page-aligned copy or mapping): its bytes are dropped, its neighbours
     * keep theirs. A mapping's pages leave the process, not the page
     * cache, and would be read from the file again if touched. */
    uint64_t from = e->offset, to = (e->offset + e->size) / IXF_PAGE * IXF_PAGE;
    if (to > from)
        (void)madvise((void *)(f->map + from), (size_t)(to - from), MADV_DONTNEED);
    if (f->copied && lazy_section(id))
        f->lazy_read &= ~(1u << id); /* ixf_fill reads it again if asked */
}

int ixf_fd(const ixf_file *f) { return f->fd; }

rotor_status ixf_open(const rotor_allocator *a, const char *path, int fd, ixf_mode mode,
                      ixf_file **out) {
    *out = NULL;
    CM_RETURN_IF(!host_little_endian(), ROTOR_ERR_UNSUPPORTED,
                 "index files are little-endian and this host is not");
    ixf_file *f = cm_calloc(a, sizeof *f, "an index file");
    if (f == NULL)
        return ROTOR_ERR_OUT_OF_MEMORY;
    f->alloc = *a;
    f->fd = -1;
    rotor_status st = ROTOR_OK;
    size_t len = strlen(path);
    f->path = cm_alloc(a, len + 1, "a file name");
    if (f->path == NULL)
        st = ROTOR_ERR_OUT_OF_MEMORY;
    else
        memcpy(f->path, path, len + 1);
    if (st == ROTOR_OK) {
        f->fd = fd < 0 ? ds_open_input(path) : ds_dup_input(fd, path);
        if (f->fd < 0)
            st = ROTOR_ERR_IO; /* the sentence is set */
    }
    struct stat sb;
    if (st == ROTOR_OK && fstat(f->fd, &sb) != 0)
        st = cm_fail(ROTOR_ERR_IO, "cannot stat '%s': %s", path, strerror(errno));
    uint8_t page[IXF_PAGE] = {0};
    uint64_t size = st == ROTOR_OK ? (uint64_t)sb.st_size : 0;
    if (st == ROTOR_OK) {
        size_t want = size < IXF_PAGE ? (size_t)size : IXF_PAGE, got = 0;
        unsigned retries = 0;
        while (got < want) {
            ssize_t r = pread(f->fd, page + got, want - got, (off_t)got);
            if (r < 0 && (errno == EINTR || errno == EAGAIN) && ++retries <= DS_MAX_RETRIES)
                continue;
            if (r <= 0) {
                st = cm_fail(ROTOR_ERR_IO, "cannot read '%s': %s", path,
                             r < 0 ? strerror(errno) : "the file shrank while being read");
                break;
            }
            got += (size_t)r;
        }
    }
    if (st == ROTOR_OK)
        st = parse_first_page(f, page, size);
    if (st == ROTOR_OK)
        size = f->size = cm_get_le64(page + H_FILE_SIZE);
    if (st == ROTOR_OK && mode == IXF_READ) {
        st = read_copy(f);
    } else if (st == ROTOR_OK) {
        void *map = mmap(NULL, (size_t)size, PROT_READ, MAP_SHARED, f->fd, 0);
        if (map == MAP_FAILED)
            st = cm_fail(ROTOR_ERR_IO, "cannot map '%s' (%" PRIu64 " bytes): %s", path, size,
                         strerror(errno));
        else
            f->map = map;
    }
    if (st != ROTOR_OK) {
        ixf_close(f);
        return st;
    }
    *out = f;
    return ROTOR_OK;
}

void ixf_close(ixf_file *f) {
    if (f == NULL)
        return;
    rotor_allocator a = f->alloc;
    if (f->map != NULL && f->copied)
        cm_free(&a, (void *)f->map);
    else if (f->map != NULL)
        munmap((void *)f->map, (size_t)f->size);
    if (f->fd >= 0)
        close(f->fd);
    cm_free(&a, f->path);
    cm_free(&a, f);
}

const ixf_meta *ixf_meta_of(const ixf_file *f) { return &f->meta; }
uint64_t ixf_log_start(const ixf_file *f) { return f->size; }
uint64_t ixf_log_seed(const ixf_file *f) { return f->checksum; }
const char *ixf_path(const ixf_file *f) { return f->path; }

static const ixf_entry *find(const ixf_file *f, ixf_section_id id) {
    for (unsigned i = 0; i < f->nsections; i++)
        if (f->sections[i].id == (uint32_t)id)
            return &f->sections[i];
    return NULL;
}

ixf_section ixf_get(const ixf_file *f, ixf_section_id id) {
    const ixf_entry *e = find(f, id);
    if (e == NULL)
        return (ixf_section){0};
    return (ixf_section){f->map + e->offset, e->offset, e->size, e->checksum};
}

/* XXH3-64 of a section read with pread a few MiB at a time: hashing a
 * mapped section through the mapping would make every page of it
 * resident, the vectors, graph and node pages of an index that keeps them
 * on disk included, which are the RAM it was opened to spare. */
enum { HASH_CHUNK = 4 << 20 };

static rotor_status hash_by_reading(const ixf_file *f, const ixf_entry *e, uint64_t *out) {
    uint8_t *buf = cm_alloc(&f->alloc, HASH_CHUNK, "a buffer to check a section");
    if (buf == NULL)
        return ROTOR_ERR_OUT_OF_MEMORY;
    XXH3_state_t h;
    XXH3_INITSTATE(&h);
    XXH3_64bits_reset(&h);
    rotor_status st = ROTOR_OK;
    unsigned retries = 0;
    for (uint64_t at = 0; at < e->size;) {
        const size_t want = e->size - at < HASH_CHUNK ? (size_t)(e->size - at) : HASH_CHUNK;
        const ssize_t r = pread(f->fd, buf, want, (off_t)(e->offset + at));
        if (r < 0 && (errno == EINTR || errno == EAGAIN) && ++retries <= DS_MAX_RETRIES)
            continue;
        if (r <= 0) {
            st = cm_fail(ROTOR_ERR_IO, "cannot read '%s': %s", f->path,
                         r < 0 ? strerror(errno) : "the file shrank while being read");
            break;
        }
        XXH3_64bits_update(&h, buf, (size_t)r);
        at += (uint64_t)r;
    }
    cm_free(&f->alloc, buf);
    *out = XXH3_64bits_digest(&h);
    return st;
}

rotor_status ixf_check(const ixf_file *f, ixf_section_id id) {
    const ixf_entry *e = find(f, id);
    if (e == NULL)
        return ROTOR_OK;
    uint64_t sum;
    /* A section smaller than a read's chunk is one the open decodes from
     * the mapping anyway: hashed there, with no buffer. */
    if (!f->copied && e->size > HASH_CHUNK)
        CM_FORWARD(hash_by_reading(f, e, &sum));
    else
        sum = XXH3_64bits(f->map + e->offset, (size_t)e->size);
    CM_RETURN_IF(sum != e->checksum, ROTOR_ERR_CORRUPT,
                 "'%s' is corrupt: the checksum of its %s section (%" PRIu64 " bytes at %" PRIu64
                 ") does not match",
                 f->path, ixf_section_name(e->id), e->size, e->offset);
    return ROTOR_OK;
}

/* Bytes no checksum covers (the rest of the first page, the padding before
 * each section) are written as zeros; anything else there is damage. */
static rotor_status check_zero(const ixf_file *f, uint64_t from, uint64_t to) {
    for (uint64_t i = from; i < to; i++)
        CM_RETURN_IF(f->map[i] != 0, ROTOR_ERR_CORRUPT,
                     "'%s' is corrupt: byte %" PRIu64 ", outside every section, is not zero",
                     f->path, i);
    return ROTOR_OK;
}

rotor_status ixf_check_all(const ixf_file *f) {
    uint64_t end = IXF_HEADER + (uint64_t)f->nsections * IXF_ENTRY;
    for (unsigned i = 0; i < f->nsections; i++) {
        const ixf_entry *e = &f->sections[i];
        CM_FORWARD(check_zero(f, end, e->offset));
        CM_FORWARD(ixf_check(f, (ixf_section_id)e->id));
        end = e->offset + e->size;
    }
    return check_zero(f, end, f->size);
}

void ixf_advise(const ixf_file *f, ixf_section_id id, bool random) {
    const ixf_entry *e = find(f, id);
    if (e == NULL || e->size == 0 || f->copied)
        return;
    /* Advice is page-granular; sections start on pages, so no neighbour is
     * affected but the tail page's. A refusal costs only speed. */
    (void)madvise((void *)(f->map + e->offset), (size_t)e->size,
                  random ? MADV_RANDOM : MADV_WILLNEED);
}
