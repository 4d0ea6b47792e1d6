/*
 * Durable changes: an index opened writable appends each change it takes
 * to the update log of its file (storage/ixlog.c frames the records;
 * storage/FORMAT.md, "The update log", gives the bytes and the reasons),
 * and every open replays the log through the calls that made it.
 *
 * A record holds the call, not its effect: the rows and keys an add was
 * given, the keys a remove named, the labels set. Replaying the calls in
 * order from the sections' state reproduces every fact the API shows
 * (which keys are live, their vectors, their labels), while what is
 * derived from them (codes, graph links, consolidation) is derived again.
 * Recording effects instead (node records, code blocks) would tie the log
 * to each navigator's layout and make a record as large as the parts of
 * the graph an insert touched.
 *
 * Write-ahead, and taken back on failure
 *   - The record is written before the change is made: a change made
 *     first and then found unwritable (a full disk) could not always be
 *     undone (an insert into a graph cannot), and the rule is that a call
 *     that fails changes nothing. So: write the record; make the change;
 *     if the change fails, cut the record off again (ixf_log_cancel). All
 *     of it happens in the writer's turn (sync.c), so records follow each
 *     other in the order the changes were made, and a sync or a save never
 *     falls between a record and its change.
 *   - What a crash between the write and the cut can leave is a record
 *     of a change that failed. Its replay fails the same way (a call's
 *     success depends only on the facts above and its arguments, which
 *     replay reproduces), so a record whose change is refused at replay
 *     for its arguments (a key no vector has, a key taken, NaN) is
 *     skipped and counted: it changed nothing when it was made either.
 *     Failures of resources (memory, threads) fail the open instead.
 *   - With the vectors on disk an index takes no new vectors, so a log
 *     that adds vectors is refused by such an open rather than skipped
 *     (it would drop changes that were made): open it with its vectors
 *     in RAM, or save it to fold the log into the sections.
 *
 * Not recorded: consolidation (derived; replayed removes trigger it as
 * the original ones did), rotor_index_tune's table, and anything of an
 * index not opened writable; rotor_index_save writes all of it.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "index/index_internal.h"

/* Written in the writer's turn (sync.c); what stats read (the counts and
 * the bounds) only while searches are held. */
struct ix_log {
    ixf_log_writer *w;   /* NULL: not writable (or still replaying): changes stay in memory */
    bool sync_each;      /* rotor_open_params.sync_each_change */
    uint64_t start, end; /* the log's bytes: [start, end) */
    uint64_t tail;       /* bytes after its last whole record at open */
    size_t records;      /* whole records, replayed or appended since */
    size_t skipped;      /* of them, changes refused at replay */
};

enum { ADD_HEAD = 24, REMOVE_HEAD = 8, LABELS_HEAD = 16 };
enum { FLAG_KEYS = 1, FLAG_LABELS = 2 };

static bool recording(const rotor_index *ix) { return ix->log != NULL && ix->log->w != NULL; }

/* ---- recording ---------------------------------------------------------- */

/* Writes the record (and, asked to, syncs it) before the change is made. */
static rotor_status begin(rotor_index *ix, uint32_t type, const ixf_part *parts, size_t n) {
    ix_log *log = ix->log;
    CM_FORWARD(ixf_log_append(log->w, type, parts, n));
    if (log->sync_each) {
        const rotor_status st = ixf_log_sync(log->w);
        if (st != ROTOR_OK) {
            char why[512];
            snprintf(why, sizeof why, "%s", rotor_last_error());
            (void)ixf_log_cancel(log->w);
            return cm_fail(st, "%s", why);
        }
    }
    return ROTOR_OK;
}

/* Counts the record of a change made, or cuts off that of a change that
 * failed, keeping the change's own sentence (a cut that fails stops the
 * log, and the next change reports it). */
static rotor_status end(rotor_index *ix, rotor_status st) {
    ix_log *log = ix->log;
    if (st == ROTOR_OK) {
        ixf_log_commit(log->w);
        ix_publish_begin(ix);
        log->end = ixf_log_end(log->w);
        log->records++;
        ix_publish_end(ix);
        return ROTOR_OK;
    }
    char why[512];
    snprintf(why, sizeof why, "%s", rotor_last_error());
    (void)ixf_log_cancel(log->w);
    return cm_fail(st, "%s", why);
}

static void put_add_head(uint8_t *h, const rotor_matrix *m, const int64_t *keys,
                         const rotor_labels *labels) {
    cm_put_le32(h, (keys != NULL ? FLAG_KEYS : 0) | (labels != NULL ? FLAG_LABELS : 0));
    cm_put_le32(h + 4, (uint32_t)m->type);
    cm_put_le64(h + 8, m->rows);
    cm_put_le64(h + 16, m->cols);
}

/* Rows an add or update cannot take whatever the index holds are not
 * recorded: the call refuses them before changing anything. */
static bool recordable_rows(const rotor_index *ix, const rotor_matrix *m) {
    if (ix->store != NULL || m == NULL || m->cols != ix->dim)
        return false;
    if (ix_matrix_check(m, "added data") != ROTOR_OK) {
        cm_clear_error();
        return false;
    }
    return true;
}

/* Labels go with keys only (an add records the keys it gives). */
static rotor_status record_rows(rotor_index *ix, uint32_t type, const rotor_matrix *m,
                                const int64_t *keys, const rotor_labels *labels, ix_add_fn apply) {
    uint8_t head[ADD_HEAD];
    put_add_head(head, m, keys, labels);
    const size_t rows = m->rows;
    const ixf_part parts[5] = {
        {head, sizeof head},
        {m->data, rows * m->cols * rotor_elem_size(m->type)},
        {keys, keys != NULL ? rows * sizeof *keys : 0},
        {labels ? labels->offsets : NULL, labels ? (rows + 1) * sizeof *labels->offsets : 0},
        {labels ? labels->values : NULL,
         labels ? (size_t)labels->offsets[rows] * sizeof *labels->values : 0},
    };
    CM_FORWARD(begin(ix, type, parts, labels != NULL ? 5 : keys != NULL ? 3 : 2));
    return end(ix, apply(ix, m, keys, labels));
}

/* Rows without keys take the numbers of the slots they land in, which
 * depend on which slots were free, so on when consolidations ran (an
 * explicit one is not recorded, and one triggered by a remove depends on
 * the slot count): the record holds the keys the add gives, whatever
 * slots the replay puts the rows in. */
rotor_status ix_log_add(rotor_index *ix, const rotor_matrix *vectors, const int64_t *keys,
                        const rotor_labels *labels, ix_add_fn apply) {
    if (!recording(ix) || !recordable_rows(ix, vectors))
        return apply(ix, vectors, keys, labels);
    /* Labels the add refuses whatever the index holds are not recorded. */
    if (labels != NULL && ix_labels_fit(labels, vectors->rows) != ROTOR_OK) {
        cm_clear_error();
        return apply(ix, vectors, keys, labels);
    }
    if (keys != NULL)
        return record_rows(ix, IXF_LOG_ADD, vectors, keys, labels, apply);
    const size_t n = vectors->rows;
    int64_t *given = cm_alloc(&ix->alloc, (n ? n : 1) * sizeof *given, "the added keys");
    if (given == NULL)
        return ROTOR_ERR_OUT_OF_MEMORY;
    for (size_t i = 0; i < n; i++)
        given[i] = (int64_t)ix_slot_for_row(ix, n, i);
    const rotor_status st = record_rows(ix, IXF_LOG_ADD, vectors, given, labels, apply);
    cm_free(&ix->alloc, given);
    return st;
}

rotor_status ix_log_update(rotor_index *ix, const rotor_matrix *vectors, const int64_t *keys,
                           ix_add_fn apply) {
    if (!recording(ix) || keys == NULL || !recordable_rows(ix, vectors))
        return apply(ix, vectors, keys, NULL);
    return record_rows(ix, IXF_LOG_UPDATE, vectors, keys, NULL, apply);
}

rotor_status ix_log_remove(rotor_index *ix, const int64_t *keys, size_t n, ix_remove_fn apply) {
    if (!recording(ix) || n == 0 || keys == NULL)
        return apply(ix, keys, n); /* nothing to remove, or refused */
    uint8_t head[REMOVE_HEAD];
    cm_put_le64(head, n);
    const ixf_part parts[2] = {{head, sizeof head}, {keys, n * sizeof *keys}};
    CM_FORWARD(begin(ix, IXF_LOG_REMOVE, parts, 2));
    return end(ix, apply(ix, keys, n));
}

rotor_status ix_log_set_labels(rotor_index *ix, const int64_t *ids, const rotor_labels *labels,
                               ix_labels_fn apply) {
    if (!recording(ix) || labels == NULL || labels->rows == 0)
        return apply(ix, ids, labels);
    /* Offsets in order, so the values they span can be written. */
    if (ix_labels_fit(labels, labels->rows) != ROTOR_OK) {
        cm_clear_error();
        return apply(ix, ids, labels);
    }
    const size_t rows = labels->rows;
    uint8_t head[LABELS_HEAD];
    cm_put_le32(head, ids != NULL ? FLAG_KEYS : 0);
    cm_put_le32(head + 4, 0);
    cm_put_le64(head + 8, rows);
    ixf_part parts[4];
    size_t n = 0;
    parts[n++] = (ixf_part){head, sizeof head};
    if (ids != NULL)
        parts[n++] = (ixf_part){ids, rows * sizeof *ids};
    parts[n++] = (ixf_part){labels->offsets, (rows + 1) * sizeof *labels->offsets};
    parts[n++] = (ixf_part){labels->values, (size_t)labels->offsets[rows] * sizeof *labels->values};
    CM_FORWARD(begin(ix, IXF_LOG_LABELS, parts, n));
    return end(ix, apply(ix, ids, labels));
}

/* ---- replay --------------------------------------------------------------- */

static rotor_status malformed(const rotor_index *ix, const ixf_log_record *rec, const char *what) {
    return cm_fail(ROTOR_ERR_FORMAT,
                   "'%s': record %" PRIu64 " of its update log (byte %" PRIu64 ") %s",
                   ixf_path(ix->file), rec->seq, rec->offset, what);
}

static uint64_t pad8(uint64_t n) { return (n + 7) / 8 * 8; }

/* An add or an update: rows as the call gave them, and keys. */
static rotor_status replay_rows(rotor_index *ix, const ixf_log_record *rec) {
    const uint8_t *p = rec->payload;
    if (rec->size < ADD_HEAD)
        return malformed(ix, rec, "is too short for an add");
    const uint32_t flags = cm_get_le32(p), type = cm_get_le32(p + 4);
    const uint64_t rows = cm_get_le64(p + 8), cols = cm_get_le64(p + 16);
    const bool keyed = (flags & FLAG_KEYS) != 0, labelled = (flags & FLAG_LABELS) != 0;
    if (flags > (FLAG_KEYS | FLAG_LABELS) || (labelled && !keyed) ||
        (rec->type == IXF_LOG_UPDATE && (!keyed || labelled)))
        return malformed(ix, rec, "has impossible flags");
    if (type != ROTOR_ELEM_F32 && type != ROTOR_ELEM_U8 && type != ROTOR_ELEM_I8)
        return malformed(ix, rec, "holds rows of an unknown element type");
    if (cols != ix->dim)
        return malformed(ix, rec, "holds rows of other dimensions than the index's");
    const size_t esize = rotor_elem_size((rotor_elem_type)type);
    /* Every size below is bounded by the payload's before it is multiplied. */
    const uint64_t room = rec->size - ADD_HEAD;
    if (rows == 0 || rows > room / cols / esize)
        return malformed(ix, rec, "holds no rows, or more than it has room for");
    const uint64_t data = rows * cols * esize;
    const uint64_t want = pad8(data) + (keyed ? 8 * rows : 0);
    rotor_labels l = {0};
    if (labelled) {
        /* Then rows + 1 offsets and the values they span. */
        if (room < want || (room - want) / 8 < rows + 1)
            return malformed(ix, rec, "does not hold the labels it announces");
        const uint64_t *off = (const uint64_t *)(p + ADD_HEAD + want);
        const uint64_t left = room - want - 8 * (rows + 1), values = off[rows];
        if (values > left / 4 || pad8(4 * values) != left)
            return malformed(ix, rec, "does not hold the labels it announces");
        l = (rotor_labels){off, (const uint32_t *)(off + rows + 1), (size_t)rows};
        if (ix_labels_fit(&l, l.rows) != ROTOR_OK)
            return malformed(ix, rec, "holds label offsets out of order");
    } else if (room != want) {
        return malformed(ix, rec, "does not hold the rows and keys it announces");
    }
    if (ix->store != NULL)
        return cm_fail(ROTOR_ERR_UNSUPPORTED,
                       "'%s': its update log adds vectors (record %" PRIu64
                       "), which an index with its full vectors on disk cannot take: open it "
                       "with its vectors in RAM, and save it to fold the log into the file",
                       ixf_path(ix->file), rec->seq);
    const rotor_matrix m = {(void *)(p + ADD_HEAD), (size_t)rows, (size_t)cols,
                            (rotor_elem_type)type};
    const int64_t *keys = keyed ? (const int64_t *)(p + ADD_HEAD + pad8(data)) : NULL;
    return rec->type == IXF_LOG_UPDATE
               ? rotor_index_update(ix, &m, keys)
               : rotor_index_add_with_labels(ix, &m, keys, labelled ? &l : NULL);
}

static rotor_status replay_remove(rotor_index *ix, const ixf_log_record *rec) {
    if (rec->size < REMOVE_HEAD)
        return malformed(ix, rec, "is too short for a remove");
    const uint64_t n = cm_get_le64(rec->payload);
    if (n == 0 || n != (rec->size - REMOVE_HEAD) / 8)
        return malformed(ix, rec, "does not hold the keys it announces");
    return rotor_index_remove(ix, (const int64_t *)(rec->payload + REMOVE_HEAD), (size_t)n);
}

static rotor_status replay_labels(rotor_index *ix, const ixf_log_record *rec) {
    const uint8_t *p = rec->payload;
    if (rec->size < LABELS_HEAD)
        return malformed(ix, rec, "is too short for labels");
    const uint32_t flags = cm_get_le32(p);
    const uint64_t rows = cm_get_le64(p + 8);
    const bool keyed = flags == FLAG_KEYS;
    if (flags > FLAG_KEYS || cm_get_le32(p + 4) != 0)
        return malformed(ix, rec, "has impossible flags");
    const uint64_t room = rec->size - LABELS_HEAD, per_row = keyed ? 16 : 8;
    if (rows == 0 || room < 8 || rows > (room - 8) / per_row)
        return malformed(ix, rec, "holds no rows, or more than it has room for");
    const int64_t *ids = keyed ? (const int64_t *)(p + LABELS_HEAD) : NULL;
    const uint64_t *off = (const uint64_t *)(p + LABELS_HEAD + (keyed ? 8 * rows : 0));
    const uint64_t values = off[rows], left = room - per_row * rows - 8;
    if (values > left / 4 || pad8(4 * values) != left)
        return malformed(ix, rec, "does not hold the labels it announces");
    const rotor_labels l = {off, (const uint32_t *)(off + rows + 1), (size_t)rows};
    if (ix_labels_fit(&l, l.rows) != ROTOR_OK)
        return malformed(ix, rec, "holds label offsets out of order");
    return rotor_index_set_labels(ix, ids, &l);
}

/* Whether a change refused at replay was refused for its arguments: it
 * failed when it was made as well (see the top of the file). */
static bool refused_for_arguments(rotor_status st) {
    return st == ROTOR_ERR_INVALID_ARGUMENT || st == ROTOR_ERR_NOT_FOUND ||
           st == ROTOR_ERR_NOT_FINITE || st == ROTOR_ERR_EMPTY || st == ROTOR_ERR_DIMENSION;
}

static rotor_status replay(rotor_index *ix, const ixf_log_record *rec) {
    rotor_status st = ROTOR_OK;
    switch ((ixf_log_type)rec->type) {
    case IXF_LOG_ADD:
    case IXF_LOG_UPDATE: st = replay_rows(ix, rec); break;
    case IXF_LOG_REMOVE: st = replay_remove(ix, rec); break;
    case IXF_LOG_LABELS: st = replay_labels(ix, rec); break;
    }
    if (refused_for_arguments(st)) {
        cm_clear_error();
        ix->log->skipped++;
        return ROTOR_OK;
    }
    return st;
}

rotor_status ix_log_open(rotor_index *ix, const rotor_open_params *op) {
    ix_log *log = cm_calloc(&ix->alloc, sizeof *log, "the update log");
    if (log == NULL)
        return ROTOR_ERR_OUT_OF_MEMORY;
    ix->log = log;
    ixf_file *f = ix->file;
    uint64_t size;
    CM_FORWARD(ixf_file_size(f, &size));
    /* The replayed calls are not recorded again: there is no writer yet. */
    log->start = log->end = ixf_log_start(f);
    rotor_status st = ROTOR_OK;
    for (;;) {
        ixf_log_record rec;
        bool whole;
        st = ixf_log_read(f, &ix->alloc, log->end, size, log->records, &rec, &whole);
        if (st != ROTOR_OK || !whole)
            break;
        st = replay(ix, &rec);
        ixf_log_record_free(&ix->alloc, &rec);
        if (st != ROTOR_OK)
            break;
        log->end = rec.offset + IXF_LOG_HEADER + rec.size;
        log->records++;
    }
    CM_FORWARD(st);
    log->tail = size - log->end;
    if (op->verify && log->tail > 0) {
        /* A crash leaves one unfinished record at most: whole records
         * after it mean bytes were lost in the middle of the log. */
        bool found;
        uint64_t at;
        CM_FORWARD(ixf_log_find_whole(f, &ix->alloc, log->end, size, &found, &at));
        CM_RETURN_IF(found, ROTOR_ERR_CORRUPT,
                     "'%s' is corrupt: its update log breaks at byte %" PRIu64
                     " after %zu records, but a whole record follows at byte %" PRIu64,
                     ixf_path(f), log->end, log->records, at);
    }
    if (op->writable)
        CM_FORWARD(ixf_log_writer_open(f, &ix->alloc, log->end, log->records, &log->w));
    log->sync_each = op->sync_each_change != 0;
    return ROTOR_OK;
}

void ix_log_close(rotor_index *ix) {
    ix_log *log = ix->log;
    if (log == NULL)
        return;
    ixf_log_writer_close(log->w);
    cm_free(&ix->alloc, log);
    ix->log = NULL;
}

void ix_log_stats(const rotor_index *ix, rotor_index_stats *out) {
    const ix_log *log = ix->log;
    if (log == NULL)
        return;
    out->writable = log->w != NULL;
    out->log_records = log->records;
    out->log_bytes = (size_t)(log->end - log->start);
    out->log_skipped = log->skipped;
    out->log_tail_bytes = (size_t)log->tail;
}

bool ix_log_writes_to(const rotor_index *ix, const char *path) {
    return ix->log != NULL && ix->log->w != NULL && ixf_log_is_file(ix->log->w, path);
}

rotor_status ix_log_save_over(const rotor_index *ix, const char *path) {
    ix_log *log = ix->log;
    ixf_kept kept;
    CM_FORWARD(ix_save(ix, path, &kept));
    /* The new file holds every change: its log starts empty. */
    ixf_log_rebase(log->w, &kept);
    ix_publish_begin(ix);
    log->start = log->end = kept.size;
    log->records = log->skipped = 0;
    log->tail = 0;
    ix_publish_end(ix);
    return ROTOR_OK;
}

rotor_status rotor_index_sync(const rotor_index *ix) {
    cm_clear_error();
    CM_RETURN_IF(ix == NULL, ROTOR_ERR_INVALID_ARGUMENT, "index must not be NULL");
    CM_RETURN_IF(ix->log == NULL || ix->log->w == NULL, ROTOR_ERR_UNSUPPORTED,
                 "the index was not opened writable from a file: its changes stay in memory "
                 "until it is saved");
    /* In the writers' turn: after the changes that returned before it,
     * never between a record and its change; searches go on. */
    ix_write_begin(ix);
    const rotor_status st = ixf_log_sync(ix->log->w);
    ix_write_end(ix);
    return st;
}
