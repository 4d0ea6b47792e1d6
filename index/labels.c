/*
 * Labels: each point's set of non-negative integers, kept as compressed
 * rows (the order points were added), with the inverted lists built from
 * them: label -> its points, ascending. The rows are what the file keeps
 * (section 14, storage/FORMAT.md); the inverted lists are rebuilt at open
 * (one pass over the rows), so the file holds each fact once.
 *
 * Setting labels rebuilds both from the old rows and the new ones, into
 * fresh memory, and swaps it in only once everything is built: on failure
 * nothing changed.
 */
#include <stdlib.h>
#include <string.h>

#include "index/index_internal.h"

enum { LABELS_VERSION = 1, LABELS_HEADER = 24 };

rotor_status ix_point_of(const rotor_index *ix, int64_t id, uint32_t *point) {
    size_t slot;
    CM_FORWARD(ix_slot_of(ix, id, &slot));
    *point = (uint32_t)slot;
    return ROTOR_OK;
}

static void labels_release(const rotor_allocator *a, ix_labels *l) {
    cm_free(a, l->off);
    cm_free(a, l->val);
    cm_free(a, l->label);
    cm_free(a, l->post_off);
    cm_free(a, l->post);
    cm_free(a, l->sig);
    *l = (ix_labels){0};
}

void ix_labels_free(rotor_index *ix) { labels_release(&ix->alloc, &ix->labels); }

size_t ix_labels_bytes(const rotor_index *ix) {
    const ix_labels *l = &ix->labels;
    if (l->off == NULL)
        return 0;
    const size_t total = (size_t)l->off[l->rows];
    return (l->rows + 1) * sizeof *l->off + l->rows * sizeof *l->sig +
           2 * total * sizeof(uint32_t) + l->nlabels * (sizeof *l->label + sizeof *l->post_off) +
           sizeof *l->post_off;
}

static int cmp_u32(const void *a, const void *b) {
    const uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

/* Sorts v[0..n) and drops repeats; returns the new length. */
static size_t sort_unique(uint32_t *v, size_t n) {
    if (n < 2)
        return n;
    qsort(v, n, sizeof *v, cmp_u32);
    size_t m = 1;
    for (size_t i = 1; i < n; i++)
        if (v[i] != v[m - 1])
            v[m++] = v[i];
    return m;
}

/* The inverted lists of rows already in l (off, val, rows): counting sort
 * by label over the distinct labels. */
static rotor_status build_postings(const rotor_allocator *a, ix_labels *l) {
    const size_t total = (size_t)l->off[l->rows];
    uint32_t *all = cm_alloc(a, (total ? total : 1) * sizeof *all, "labels");
    if (all == NULL)
        return ROTOR_ERR_OUT_OF_MEMORY;
    memcpy(all, l->val, total * sizeof *all);
    const size_t n = sort_unique(all, total);
    l->nlabels = n;
    l->label = cm_alloc(a, (n ? n : 1) * sizeof *l->label, "labels");
    l->post_off = cm_calloc(a, (n + 1) * sizeof *l->post_off, "label lists");
    l->post = cm_alloc(a, (total ? total : 1) * sizeof *l->post, "label lists");
    if (l->label == NULL || l->post_off == NULL || l->post == NULL) {
        cm_free(a, all);
        return ROTOR_ERR_OUT_OF_MEMORY;
    }
    memcpy(l->label, all, n * sizeof *all);
    cm_free(a, all);
    l->sig = cm_calloc(a, (l->rows ? l->rows : 1) * sizeof *l->sig, "label signatures");
    if (l->sig == NULL)
        return ROTOR_ERR_OUT_OF_MEMORY;
    l->exact_sig = n == 0 || l->label[n - 1] < 64;
    uint64_t seen = 0;
    l->shared_bits = 0;
    for (size_t i = 0; i < n; i++) {
        const uint64_t bit = (uint64_t)1 << (l->label[i] & 63);
        l->shared_bits |= seen & bit;
        seen |= bit;
    }
    for (size_t r = 0; r < l->rows; r++)
        for (uint64_t j = l->off[r]; j < l->off[r + 1]; j++)
            l->sig[r] |= (uint64_t)1 << (l->val[j] & 63);
    l->labelled = 0;
    /* Each row's labels are ascending, so a row's slots are found by a
     * binary search each. */
    for (size_t r = 0; r < l->rows; r++) {
        l->labelled += l->off[r + 1] > l->off[r];
        for (uint64_t j = l->off[r]; j < l->off[r + 1]; j++) {
            const uint32_t *at = bsearch(&l->val[j], l->label, n, sizeof *l->label, cmp_u32);
            l->post_off[(size_t)(at - l->label) + 1]++;
        }
    }
    for (size_t i = 0; i < n; i++)
        l->post_off[i + 1] += l->post_off[i];
    /* Rows in order: each list comes out ascending. The fill cursor of
     * label i is post_off[i], restored afterwards from its neighbour. */
    for (size_t r = 0; r < l->rows; r++)
        for (uint64_t j = l->off[r]; j < l->off[r + 1]; j++) {
            const uint32_t *at = bsearch(&l->val[j], l->label, n, sizeof *l->label, cmp_u32);
            l->post[l->post_off[at - l->label]++] = (uint32_t)r;
        }
    for (size_t i = n; i > 0; i--)
        l->post_off[i] = l->post_off[i - 1];
    l->post_off[0] = 0;
    return ROTOR_OK;
}

static rotor_status check_labels_arg(const rotor_labels *in) {
    CM_RETURN_IF(in == NULL, ROTOR_ERR_INVALID_ARGUMENT, "labels must not be NULL");
    CM_RETURN_IF(in->rows > 0 && in->offsets == NULL, ROTOR_ERR_INVALID_ARGUMENT,
                 "labels: offsets must not be NULL");
    if (in->rows == 0)
        return ROTOR_OK;
    CM_RETURN_IF(in->offsets[0] != 0, ROTOR_ERR_INVALID_ARGUMENT,
                 "labels: offsets[0] is %llu, not 0", (unsigned long long)in->offsets[0]);
    for (size_t i = 0; i < in->rows; i++)
        CM_RETURN_IF(in->offsets[i + 1] < in->offsets[i], ROTOR_ERR_INVALID_ARGUMENT,
                     "labels: offsets[%zu] is below offsets[%zu]", i + 1, i);
    CM_RETURN_IF(in->offsets[in->rows] > 0 && in->values == NULL, ROTOR_ERR_INVALID_ARGUMENT,
                 "labels: values must not be NULL");
    CM_RETURN_IF(in->offsets[in->rows] > UINT32_MAX, ROTOR_ERR_INVALID_ARGUMENT,
                 "labels: %llu values are more than an index holds",
                 (unsigned long long)in->offsets[in->rows]);
    return ROTOR_OK;
}

rotor_status ix_labels_fit(const rotor_labels *labels, size_t rows) {
    if (labels == NULL)
        return ROTOR_OK;
    CM_FORWARD(check_labels_arg(labels));
    CM_RETURN_IF(labels->rows != rows, ROTOR_ERR_INVALID_ARGUMENT,
                 "labels are given for %zu vectors, not %zu", labels->rows, rows);
    return ROTOR_OK;
}

/* Labels built beside searches (st: how the building went) replace the
 * index's while searches are held; on failure they are released and the
 * index keeps its own. An index whose points carry no label keeps none. */
static rotor_status swap_in(rotor_index *ix, ix_labels *l, rotor_status st) {
    if (st != ROTOR_OK || l->off[l->rows] == 0)
        labels_release(&ix->alloc, l);
    if (st != ROTOR_OK)
        return st;
    ix_labels gone = ix->labels;
    ix_publish_begin(ix);
    ix->labels = *l;
    ix_publish_end(ix);
    labels_release(&ix->alloc, &gone);
    return ROTOR_OK;
}

/* New labels over `rows` points into *l: point u takes input row from[u]'s
 * labels, or keeps its own (UINT32_MAX). On failure *l holds nothing. */
static rotor_status build_from(const rotor_index *ix, const uint32_t *from, size_t rows,
                               const rotor_labels *in, ix_labels *l) {
    const rotor_allocator *a = &ix->alloc;
    const ix_labels *old = &ix->labels;
    *l = (ix_labels){.rows = rows};
    size_t total = 0;
    for (size_t u = 0; u < rows; u++) {
        size_t n = 0;
        if (from[u] != UINT32_MAX)
            n = (size_t)(in->offsets[from[u] + 1] - in->offsets[from[u]]);
        else
            (void)ix_labels_of(old, u, &n);
        total += n;
    }
    l->off = cm_alloc(a, (rows + 1) * sizeof *l->off, "labels");
    l->val = cm_alloc(a, (total ? total : 1) * sizeof *l->val, "labels");
    rotor_status st = l->off && l->val ? ROTOR_OK : ROTOR_ERR_OUT_OF_MEMORY;
    if (st == ROTOR_OK) {
        size_t at = 0;
        l->off[0] = 0;
        for (size_t u = 0; u < rows; u++) {
            size_t n;
            if (from[u] != UINT32_MAX) {
                const uint64_t lo = in->offsets[from[u]];
                n = (size_t)(in->offsets[from[u] + 1] - lo);
                memcpy(l->val + at, in->values + lo, n * sizeof *l->val);
                n = sort_unique(l->val + at, n);
            } else {
                const uint32_t *v = ix_labels_of(old, u, &n);
                if (n > 0)
                    memcpy(l->val + at, v, n * sizeof *l->val);
            }
            at += n;
            l->off[u + 1] = at;
        }
        st = build_postings(a, l);
    }
    if (st != ROTOR_OK)
        labels_release(a, l);
    return st;
}

/* The new labels are made beside searches and swapped in while they are
 * held. */
static rotor_status set_labels_locked(rotor_index *ix, const int64_t *ids, const rotor_labels *in) {
    CM_RETURN_IF(ids == NULL && in->rows > ix->count, ROTOR_ERR_INVALID_ARGUMENT,
                 "labels for %zu vectors, the index holds %zu", in->rows, ix->count);
    const rotor_allocator *a = &ix->alloc;
    const size_t rows = ix->count;
    /* Which input row each point takes its labels from (UINT32_MAX: it
     * keeps its own). */
    uint32_t *from = cm_alloc(a, (rows ? rows : 1) * sizeof *from, "labels");
    if (from == NULL)
        return ROTOR_ERR_OUT_OF_MEMORY;
    memset(from, 0xff, rows * sizeof *from);
    rotor_status st = ROTOR_OK;
    for (size_t i = 0; i < in->rows && st == ROTOR_OK; i++) {
        uint32_t u = (uint32_t)i;
        if (ids != NULL)
            st = ix_point_of(ix, ids[i], &u);
        if (st == ROTOR_OK && from[u] != UINT32_MAX)
            st = cm_fail(ROTOR_ERR_INVALID_ARGUMENT, "labels: id %lld is given twice",
                         (long long)ix_id_of(ix, u));
        if (st == ROTOR_OK)
            from[u] = (uint32_t)i;
    }
    ix_labels l = {0};
    if (st == ROTOR_OK)
        st = build_from(ix, from, rows, in, &l);
    cm_free(a, from);
    if (st != ROTOR_OK)
        return st;
    return swap_in(ix, &l, ROTOR_OK);
}

rotor_status ix_labels_stage_add(const rotor_index *ix, size_t n, const rotor_labels *in,
                                 ix_labels *out) {
    const rotor_allocator *a = &ix->alloc;
    const size_t reused = n < ix_free(ix) ? n : ix_free(ix);
    const size_t rows = ix->count + n - reused;
    uint32_t *from = cm_alloc(a, (rows ? rows : 1) * sizeof *from, "labels");
    if (from == NULL)
        return ROTOR_ERR_OUT_OF_MEMORY;
    memset(from, 0xff, rows * sizeof *from);
    for (size_t i = 0; i < n; i++)
        from[ix_slot_for_row(ix, n, i)] = (uint32_t)i;
    const rotor_status st = build_from(ix, from, rows, in, out);
    cm_free(a, from);
    return st;
}

void ix_labels_take_staged(rotor_index *ix, ix_labels *staged) {
    (void)swap_in(ix, staged, ROTOR_OK);
}

void ix_labels_drop_staged(rotor_index *ix, ix_labels *staged) {
    labels_release(&ix->alloc, staged);
}

rotor_status ix_labels_drop_removed(rotor_index *ix) {
    const ix_labels *old = &ix->labels;
    const rotor_allocator *a = &ix->alloc;
    if (old->off == NULL || ix->ndeleted == 0)
        return ROTOR_OK;
    size_t total = 0, dropped = 0;
    for (size_t u = 0; u < old->rows; u++) {
        size_t n;
        (void)ix_labels_of(old, u, &n);
        if (ix_is_deleted(ix, u))
            dropped += n;
        else
            total += n;
    }
    if (dropped == 0)
        return ROTOR_OK;
    ix_labels l = {.rows = old->rows};
    l.off = cm_alloc(a, (l.rows + 1) * sizeof *l.off, "labels");
    l.val = cm_alloc(a, (total ? total : 1) * sizeof *l.val, "labels");
    rotor_status st = l.off && l.val ? ROTOR_OK : ROTOR_ERR_OUT_OF_MEMORY;
    if (st == ROTOR_OK) {
        size_t at = 0;
        l.off[0] = 0;
        for (size_t u = 0; u < l.rows; u++) {
            size_t n;
            const uint32_t *v = ix_labels_of(old, u, &n);
            if (n > 0 && !ix_is_deleted(ix, u)) {
                memcpy(l.val + at, v, n * sizeof *v);
                at += n;
            }
            l.off[u + 1] = at;
        }
        st = build_postings(a, &l);
    }
    return swap_in(ix, &l, st);
}

rotor_status rotor_index_set_labels(rotor_index *ix, const int64_t *ids, const rotor_labels *in) {
    cm_clear_error();
    CM_RETURN_IF(ix == NULL, ROTOR_ERR_INVALID_ARGUMENT, "index must not be NULL");
    CM_FORWARD(check_labels_arg(in));
    ix_write_begin(ix);
    /* log.c: recorded in the file first when the index was opened writable. */
    const rotor_status st = ix_log_set_labels(ix, ids, in, set_labels_locked);
    ix_write_end(ix);
    return st;
}

rotor_status rotor_index_get_labels(const rotor_index *ix, int64_t id, uint32_t *out, size_t cap,
                                    size_t *count) {
    cm_clear_error();
    CM_RETURN_IF(ix == NULL || count == NULL, ROTOR_ERR_INVALID_ARGUMENT,
                 "index and count must not be NULL");
    CM_RETURN_IF(cap > 0 && out == NULL, ROTOR_ERR_INVALID_ARGUMENT,
                 "labels output must not be NULL");
    uint32_t u = 0;
    ix_read_begin(ix);
    const rotor_status st = ix_point_of(ix, id, &u);
    if (st == ROTOR_OK) {
        size_t n;
        const uint32_t *v = ix_labels_of(&ix->labels, u, &n);
        if (n > 0 && cap > 0)
            memcpy(out, v, (n < cap ? n : cap) * sizeof *out);
        *count = n;
    }
    ix_read_end(ix);
    return st;
}

/* ---- the section -----------------------------------------------------------
 * u32 version, u32 zero, u64 rows, u64 values; (rows + 1) u64 offsets;
 * then the values, u32 each: every row's ascending, each once. */

rotor_status ix_labels_save(const rotor_index *ix, ixf_writer *w) {
    const ix_labels *l = &ix->labels;
    if (l->off == NULL)
        return ROTOR_OK;
    const size_t total = (size_t)l->off[l->rows];
    uint8_t head[LABELS_HEADER], buf[4096];
    cm_put_le32(head, LABELS_VERSION);
    cm_put_le32(head + 4, 0);
    cm_put_le64(head + 8, l->rows);
    cm_put_le64(head + 16, total);
    CM_FORWARD(ixf_section_begin(w, IXF_SEC_LABELS));
    rotor_status st = ixf_append(w, head, sizeof head);
    size_t fill = 0;
    for (size_t i = 0; i <= l->rows && st == ROTOR_OK; i++) {
        cm_put_le64(buf + fill, l->off[i]);
        fill += 8;
        if (fill == sizeof buf || i == l->rows) {
            st = ixf_append(w, buf, fill);
            fill = 0;
        }
    }
    for (size_t i = 0; i < total && st == ROTOR_OK; i++) {
        cm_put_le32(buf + fill, l->val[i]);
        fill += 4;
        if (fill == sizeof buf || i + 1 == total) {
            st = ixf_append(w, buf, fill);
            fill = 0;
        }
    }
    if (st == ROTOR_OK)
        st = ixf_section_end(w);
    return st;
}

rotor_status ix_labels_load(rotor_index *ix) {
    const ixf_file *f = ix->file;
    const ixf_section sec = ixf_get(f, IXF_SEC_LABELS);
    if (sec.data == NULL)
        return ROTOR_OK;
    CM_FORWARD(ixf_check(f, IXF_SEC_LABELS));
    const uint8_t *b = sec.data;
    const char *path = ixf_path(f);
    CM_RETURN_IF(sec.size < LABELS_HEADER, ROTOR_ERR_FORMAT,
                 "'%s': the labels section holds %llu bytes, less than its header", path,
                 (unsigned long long)sec.size);
    CM_RETURN_IF(cm_get_le32(b) != LABELS_VERSION, ROTOR_ERR_FORMAT,
                 "'%s': the labels section has version %u; this library reads %u", path,
                 cm_get_le32(b), LABELS_VERSION);
    const uint64_t rows = cm_get_le64(b + 8), total = cm_get_le64(b + 16);
    CM_RETURN_IF(rows > ix->count || total > UINT32_MAX ||
                     sec.size != LABELS_HEADER + (rows + 1) * 8 + total * 4,
                 ROTOR_ERR_CORRUPT,
                 "'%s': the labels section's %llu rows and %llu labels do not fit its %llu bytes "
                 "and %zu vectors",
                 path, (unsigned long long)rows, (unsigned long long)total,
                 (unsigned long long)sec.size, ix->count);
    const rotor_allocator *a = &ix->alloc;
    ix_labels l = {.rows = (size_t)rows};
    l.off = cm_alloc(a, (l.rows + 1) * sizeof *l.off, "labels");
    l.val = cm_alloc(a, (total ? total : 1) * sizeof *l.val, "labels");
    if (l.off == NULL || l.val == NULL) {
        labels_release(a, &l);
        return ROTOR_ERR_OUT_OF_MEMORY;
    }
    const uint8_t *po = b + LABELS_HEADER, *pv = po + (rows + 1) * 8;
    rotor_status st = ROTOR_OK;
    for (size_t i = 0; i <= l.rows; i++)
        l.off[i] = cm_get_le64(po + 8 * i);
    for (size_t i = 0; i < total; i++)
        l.val[i] = cm_get_le32(pv + 4 * i);
    if (l.off[0] != 0 || l.off[l.rows] != total)
        st = cm_fail(ROTOR_ERR_CORRUPT, "'%s': the labels section's offsets do not span it", path);
    for (size_t r = 0; r < l.rows && st == ROTOR_OK; r++) {
        if (l.off[r + 1] < l.off[r] || l.off[r + 1] > total) {
            st = cm_fail(ROTOR_ERR_CORRUPT, "'%s': the labels section's row %zu has bad bounds",
                         path, r);
            break;
        }
        for (uint64_t j = l.off[r] + 1; j < l.off[r + 1]; j++)
            if (l.val[j] <= l.val[j - 1]) {
                st = cm_fail(ROTOR_ERR_CORRUPT,
                             "'%s': the labels section's row %zu is not ascending", path, r);
                break;
            }
    }
    if (st == ROTOR_OK)
        st = build_postings(a, &l);
    if (st != ROTOR_OK) {
        labels_release(a, &l);
        return st;
    }
    labels_release(a, &ix->labels);
    ix->labels = l;
    return ROTOR_OK;
}
