/*
 * Remove, update and consolidate (FreshDiskANN's deletes, Singh et al.
 * 2021, section 4).
 *
 * A remove is a tombstone: the slot's bit in ix->deleted, and its key out
 * of the lookup (keys.c), so the key is free to be added again. Nothing
 * else changes at once: the navigator still holds the point, and a graph
 * walk still routes through it (it joins its neighbourhood as before),
 * while every search refuses it as a result: an index with removals not
 * yet consolidated compiles a filter for every search (filter.c), whose
 * test rejects a removed slot before anything else; a graph walk keeps
 * removed points in its list as FreshDiskANN does (nav_filter
 * route_in_list). So a remove costs a key lookup per key, and is seen by
 * every search that starts after it returns. Once consolidated, nothing
 * leads a search to a removed point and searches run unfiltered again
 * (a flat index, which scans every slot, keeps the filter).
 *
 * Consolidation repairs the navigator around the removed points
 * (nav_ops.consolidate: a graph re-links their in-neighbours, IVF drops
 * them from their lists). It runs on demand and, at the end of a remove
 * or an update, once the removals not yet consolidated exceed
 * CONSOLIDATE_PERCENT of the slots. Below that a graph still searches
 * well: FreshDiskANN reports recall holding with up to 10 % of the points
 * deleted and unconsolidated, and consolidates at 1 to 10 %. Each
 * consolidation is a pass over every record, so the threshold sets its
 * amortised cost: at 5 %, a pass per 5 % of the index removed, 20 record
 * visits per removed point plus the prunes; lower would repeat the pass
 * more often for little, higher would leave searches routing through more
 * dead points (each takes a place in a walk's list, and every search
 * runs filtered meanwhile: about 2 % more instructions with 4 % of the
 * points pending on Fashion-MNIST).
 *
 * Slots are reused. A removed vector keeps its row of vectors, codes and
 * record until a consolidation leaves nothing leading to it (no edge into
 * it, no IVF list holding it; the graph's entry moved off it); it is then
 * free: its labels are dropped, and the next adds put new vectors into
 * free slots, lowest first, before they append past the last slot
 * (index.c). So an index under churn keeps its size: a slot is used by
 * one live vector, or is removed and waits for the consolidation that
 * frees it (at most CONSOLIDATE_PERCENT of the slots), or is free. A
 * removal not yet consolidated is never reused: searches may still route
 * through it. The free slots are the removed ones once none is pending,
 * so they need no section of the file: an index opened with removals
 * pending reuses nothing until its next consolidation.
 *
 * All or nothing: every key is looked up, and repeats found, into a new
 * bitset before anything changes; the keys then leave the table, which
 * cannot fail. An update stages the removal, adds the new rows under the
 * same keys (all or nothing itself), and puts the removal back if the add
 * fails. The automatic consolidation comes after the change is made: if
 * it fails (out of memory) the call still succeeds, searches stay exact
 * about what was removed, and the next remove, update or consolidate
 * tries again.
 */
#include <inttypes.h>
#include <string.h>

#include "common/pool.h"
#include "index/index_internal.h"

enum { CONSOLIDATE_PERCENT = 5 };
enum { DELETED_VERSION = 1, DELETED_HEADER = 24 };

void ix_deleted_free(rotor_index *ix) {
    cm_free(&ix->alloc, ix->deleted);
    cm_free(&ix->alloc, ix->free_slot);
    ix->deleted = NULL;
    ix->free_slot = NULL;
    ix->deleted_bits = ix->ndeleted = ix->pending = ix->nfree_slots = ix->free_at = 0;
}

rotor_status ix_free_rebuild(rotor_index *ix) {
    if (ix->pending > 0)
        return ROTOR_OK;
    ix->free_stale = true;
    uint32_t *list = NULL;
    if (ix->ndeleted > 0) {
        CM_FORWARD(ix_labels_drop_removed(ix));
        list = cm_alloc(&ix->alloc, ix->ndeleted * sizeof *list, "the free slots");
        if (list == NULL)
            return ROTOR_ERR_OUT_OF_MEMORY;
        size_t n = 0;
        for (size_t u = 0; u < ix->deleted_bits; u++)
            if (ix_is_deleted(ix, u))
                list[n++] = (uint32_t)u;
    }
    uint32_t *old = ix->free_slot;
    ix_publish_begin(ix);
    ix->free_slot = list;
    ix->nfree_slots = ix->ndeleted;
    ix->free_at = 0;
    ix_publish_end(ix);
    cm_free(&ix->alloc, old);
    ix->free_stale = false;
    return ROTOR_OK;
}

/* A removal looked up but not yet made: the new bitset, the slots, and
 * the old bitset kept to put it back. */
typedef struct staged {
    uint64_t *bits, *old;
    size_t old_bits;
    size_t *slots;
    size_t n;
} staged;

static void staged_free(rotor_index *ix, staged *s) {
    cm_free(&ix->alloc, s->bits);
    cm_free(&ix->alloc, s->slots);
    s->bits = NULL;
    s->slots = NULL;
}

/* Looks up every key into a bitset of the index's slots; nothing changes. */
static rotor_status look_up(rotor_index *ix, const int64_t *keys, size_t n, staged *s) {
    *s = (staged){.n = n};
    const size_t words = (ix->count + 63) / 64;
    s->bits = cm_calloc(&ix->alloc, (words ? words : 1) * sizeof *s->bits, "the deleted set");
    s->slots = cm_alloc(&ix->alloc, (n ? n : 1) * sizeof *s->slots, "the removed slots");
    if (s->bits == NULL || s->slots == NULL) {
        staged_free(ix, s);
        return ROTOR_ERR_OUT_OF_MEMORY;
    }
    if (ix->deleted != NULL)
        memcpy(s->bits, ix->deleted, (ix->deleted_bits + 63) / 64 * sizeof *s->bits);
    rotor_status st = ROTOR_OK;
    for (size_t i = 0; i < n && st == ROTOR_OK; i++) {
        size_t u;
        st = ix_slot_of(ix, keys[i], &u);
        if (st == ROTOR_OK && cm_bit_get(s->bits, u))
            st = cm_fail(ROTOR_ERR_INVALID_ARGUMENT, "key %" PRId64 " is given twice", keys[i]);
        if (st == ROTOR_OK) {
            cm_bit_set(s->bits, u);
            s->slots[i] = u;
        }
    }
    if (st != ROTOR_OK)
        staged_free(ix, s);
    return st;
}

/* Makes a looked-up removal: cannot fail. */
static void apply(rotor_index *ix, staged *s) {
    s->old = ix->deleted;
    s->old_bits = ix->deleted_bits;
    ix->deleted = s->bits;
    ix->deleted_bits = ix->count;
    s->bits = NULL;
    for (size_t i = 0; i < s->n; i++)
        ix_keys_drop(ix, s->slots[i]);
    ix->ndeleted += s->n;
    ix->pending += s->n;
}

/* Puts an applied removal back (the keys' slots are free in the table:
 * only the failed add touched it since, and it rolled back). */
static void undo(rotor_index *ix, staged *s) {
    for (size_t i = s->n; i-- > 0;)
        ix_keys_restore(ix, s->slots[i]);
    s->bits = ix->deleted;
    ix->deleted = s->old;
    ix->deleted_bits = s->old_bits;
    ix->ndeleted -= s->n;
    ix->pending -= s->n;
    s->old = NULL;
    staged_free(ix, s);
}

static void finish(rotor_index *ix, staged *s) {
    cm_free(&ix->alloc, s->old);
    s->old = NULL;
    staged_free(ix, s);
}

/* Beside searches: the navigator publishes its repairs itself. */
static rotor_status consolidate(rotor_index *ix) {
    if (ix->pending == 0)
        return ix->free_stale ? ix_free_rebuild(ix) : ROTOR_OK;
    const nav_ops *ops = ix->nav->ops;
    if (ops->consolidate != NULL) {
        graph_space s = ix_space(ix);
        s.publish = ix_publish_lock(ix);
        float *widened;
        CM_FORWARD(ix_full_vectors(ix, &s.vectors, &widened));
        const rotor_status st = ops->consolidate(ix->nav, &s, ix->deleted, ix->deleted_bits,
                                                 cm_thread_count(ix->params.threads, ix->count));
        cm_free(&ix->alloc, widened);
        CM_FORWARD(st);
    }
    ix_publish_begin(ix);
    ix->pending = 0;
    ix_publish_end(ix);
    /* The consolidation is made: a failure to list its free slots only
     * leaves them unused until the next add or consolidation lists them. */
    if (ix_free_rebuild(ix) != ROTOR_OK)
        cm_clear_error();
    return ROTOR_OK;
}

/* After a remove or an update: consolidates past the threshold. Vectors
 * on disk are left to an explicit consolidate, which reads them all. A
 * failure is not the call's (see the top of the file). */
static void maybe_consolidate(rotor_index *ix) {
    if (ix->store != NULL || ix->pending * 100 <= (size_t)CONSOLIDATE_PERCENT * ix->count)
        return;
    if (consolidate(ix) != ROTOR_OK)
        cm_clear_error();
}

/* The removal is published at once (the bitset and the keys, searches
 * held); the old bitset is freed after, when no search can hold it. */
static rotor_status remove_locked(rotor_index *ix, const int64_t *keys, size_t n) {
    staged s;
    CM_FORWARD(look_up(ix, keys, n, &s));
    ix_publish_begin(ix);
    apply(ix, &s);
    ix_publish_end(ix);
    finish(ix, &s);
    maybe_consolidate(ix);
    return ROTOR_OK;
}

rotor_status rotor_index_remove(rotor_index *ix, const int64_t *keys, size_t n) {
    cm_clear_error();
    CM_RETURN_IF(ix == NULL, ROTOR_ERR_INVALID_ARGUMENT, "index must not be NULL");
    CM_RETURN_IF(n > 0 && keys == NULL, ROTOR_ERR_INVALID_ARGUMENT, "keys must not be NULL");
    if (n == 0)
        return ROTOR_OK;
    ix_write_begin(ix);
    /* log.c: recorded in the file first when the index was opened writable. */
    const rotor_status st = ix_log_remove(ix, keys, n, remove_locked);
    ix_write_end(ix);
    return st;
}

/* A search beside an update finds the old vector, or neither, or the new
 * one: the removal is published before the add, never after. */
static rotor_status update_locked(rotor_index *ix, const rotor_matrix *vectors, const int64_t *keys,
                                  const rotor_labels *labels) {
    (void)labels; /* the new vectors carry none */
    staged s;
    CM_FORWARD(look_up(ix, keys, vectors->rows, &s));
    ix_publish_begin(ix);
    apply(ix, &s);
    ix_publish_end(ix);
    /* The add checks the rows (finite, magnitude) and stages the keys,
     * free again now, before it changes anything. */
    const rotor_status st = ix_add(ix, vectors, keys);
    if (st != ROTOR_OK) {
        ix_publish_begin(ix);
        undo(ix, &s);
        ix_publish_end(ix);
        return st;
    }
    finish(ix, &s);
    maybe_consolidate(ix);
    return ROTOR_OK;
}

rotor_status rotor_index_update(rotor_index *ix, const rotor_matrix *vectors, const int64_t *keys) {
    cm_clear_error();
    CM_RETURN_IF(ix == NULL, ROTOR_ERR_INVALID_ARGUMENT, "index must not be NULL");
    CM_FORWARD(ix_matrix_check(vectors, "updated vectors"));
    CM_RETURN_IF(keys == NULL, ROTOR_ERR_INVALID_ARGUMENT, "keys must not be NULL");
    CM_RETURN_IF(vectors->cols != ix->dim, ROTOR_ERR_DIMENSION,
                 "vectors have %zu dimensions, index has %zu", vectors->cols, ix->dim);
    ix_write_begin(ix);
    const rotor_status st = ix_log_update(ix, vectors, keys, update_locked);
    ix_write_end(ix);
    return st;
}

rotor_status rotor_index_consolidate(rotor_index *ix) {
    cm_clear_error();
    CM_RETURN_IF(ix == NULL, ROTOR_ERR_INVALID_ARGUMENT, "index must not be NULL");
    ix_write_begin(ix);
    const rotor_status st = consolidate(ix);
    ix_write_end(ix);
    return st;
}

/* ---- the section -----------------------------------------------------------
 * u32 version, u32 zero, u64 bits (the index's count), u64 removals not
 * yet consolidated; then ceil(bits / 64) u64 words, bit u of word u / 64
 * set for a removed vector u. */

rotor_status ix_deleted_save(const rotor_index *ix, ixf_writer *w) {
    if (ix->ndeleted == 0)
        return ROTOR_OK; /* older readers open the file too */
    uint8_t head[DELETED_HEADER], buf[4096];
    cm_put_le32(head, DELETED_VERSION);
    cm_put_le32(head + 4, 0);
    cm_put_le64(head + 8, ix->count);
    cm_put_le64(head + 16, ix->pending);
    CM_FORWARD(ixf_section_begin(w, IXF_SEC_DELETED));
    rotor_status st = ixf_append(w, head, sizeof head);
    const size_t words = (ix->count + 63) / 64, have = (ix->deleted_bits + 63) / 64;
    size_t fill = 0;
    for (size_t i = 0; i < words && st == ROTOR_OK; i++) {
        cm_put_le64(buf + fill, i < have ? ix->deleted[i] : 0);
        fill += 8;
        if (fill == sizeof buf || i + 1 == words) {
            st = ixf_append(w, buf, fill);
            fill = 0;
        }
    }
    if (st == ROTOR_OK)
        st = ixf_section_end(w);
    return st;
}

rotor_status ix_deleted_load(rotor_index *ix) {
    ixf_file *f = ix->file;
    const ixf_section sec = ixf_get(f, IXF_SEC_DELETED);
    if (sec.data == NULL)
        return ROTOR_OK;
    /* Small (a bit a vector) and read whole: always hashed. */
    CM_FORWARD(ixf_check(f, IXF_SEC_DELETED));
    const char *path = ixf_path(f);
    const uint8_t *b = sec.data;
    const size_t words = (ix->count + 63) / 64;
    CM_RETURN_IF(sec.size < DELETED_HEADER || cm_get_le32(b) != DELETED_VERSION, ROTOR_ERR_FORMAT,
                 "'%s': the deleted section is not of version %u", path, DELETED_VERSION);
    const uint64_t bits = cm_get_le64(b + 8), pending = cm_get_le64(b + 16);
    CM_RETURN_IF(bits != ix->count || sec.size != DELETED_HEADER + 8 * (uint64_t)words,
                 ROTOR_ERR_FORMAT,
                 "'%s': the deleted section covers %" PRIu64 " vectors in %" PRIu64
                 " bytes; the index has %zu",
                 path, bits, sec.size, ix->count);
    uint64_t *d = cm_alloc(&ix->alloc, (words ? words : 1) * sizeof *d, "the deleted set");
    if (d == NULL)
        return ROTOR_ERR_OUT_OF_MEMORY;
    size_t n = 0;
    for (size_t i = 0; i < words; i++) {
        d[i] = cm_get_le64(b + DELETED_HEADER + 8 * i);
        n += (size_t)__builtin_popcountll(d[i]);
    }
    rotor_status st = ROTOR_OK;
    if (ix->count % 64 != 0 && (d[words - 1] >> (ix->count % 64)) != 0)
        st = cm_fail(ROTOR_ERR_FORMAT, "'%s': the deleted section marks vectors past the %zu", path,
                     ix->count);
    else if (n == 0 || pending > n)
        st = cm_fail(ROTOR_ERR_FORMAT,
                     "'%s': the deleted section marks %zu vectors, %" PRIu64 " unconsolidated",
                     path, n, pending);
    if (st != ROTOR_OK) {
        cm_free(&ix->alloc, d);
        return st;
    }
    ix->deleted = d;
    ix->deleted_bits = ix->count;
    ix->ndeleted = n;
    ix->pending = (size_t)pending;
    /* The free slots are listed at the end of the open (open.c), once the
     * labels they must not carry are read. */
    ix->free_stale = pending == 0;
    ixf_release(f, IXF_SEC_DELETED);
    return ROTOR_OK;
}
