/*
 * User keys: every vector's key, an int64 of the caller's, and the way from
 * a key back to the vector's slot (its row in the vectors, codes and
 * navigator).
 *
 * The identity (key = slot: every index built without keys) is the common
 * case and keeps nothing: ix_key_of reads no memory, a lookup is a range
 * check, and the file has no keys section. The first key that is not its
 * slot materialises two arrays: `key`, slot -> key, and a hash table,
 * key -> slot.
 *
 * The table is open addressing with linear probing over 2^b buckets of 4
 * bytes, each the slot of its key (the key itself is compared through
 * `key`), at most 3/4 full: 5 to 11 bytes a vector besides the 8 of its
 * key. Buckets holding the keys, or chains, would cost 16 to 24 bytes a
 * vector for a lookup that is never on a search's path (results go from
 * slots to keys through `key`, not the table). Keys are mixed by
 * SplitMix64's finaliser before masking: callers' keys are often
 * sequential or multiples of a stride, which would crowd a masked table.
 *
 * Adds are all or nothing. Staging writes the new keys past the count and
 * inserts them into the table, each checked against what the table holds
 * (the index's keys and the batch's earlier ones). A refusal, or a later
 * failure of the add (encoding, linking), takes the batch's entries out
 * again in reverse order, which restores the table exactly: each bucket
 * cleared was empty before its entry went in, and no entry inserted
 * earlier was placed by probing past it. Growth happens before any entry
 * goes in, into new arrays, so an allocation failure changes nothing.
 */
#include <inttypes.h>
#include <string.h>

#include "index/index_internal.h"

#define IX_NO_SLOT UINT32_MAX

/* Keys converted per chunk when the section is written. */
enum { SAVE_CHUNK = 4096 };

static size_t bucket_of(int64_t key, size_t mask) {
    uint64_t z = (uint64_t)key;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return (size_t)(z ^ (z >> 31)) & mask;
}

/* The bucket holding `key`, or the empty one where it would go; the table
 * always has an empty bucket (at most 3/4 are used). */
static size_t probe(const int64_t *keys, const uint32_t *table, size_t buckets, int64_t key) {
    const size_t mask = buckets - 1;
    size_t b = bucket_of(key, mask);
    while (table[b] != IX_NO_SLOT && keys[table[b]] != key)
        b = (b + 1) & mask;
    return b;
}

/* Buckets for n keys: a power of two, at least 16, at most 3/4 used. */
static size_t buckets_for(size_t n) {
    size_t b = 16;
    while (b / 4 * 3 < n)
        b *= 2;
    return b;
}

void ix_keys_free(rotor_index *ix) {
    cm_free(&ix->alloc, ix->keys.key);
    cm_free(&ix->alloc, ix->keys.table);
    ix->keys = (ix_keys){0};
}

size_t ix_keys_bytes(const rotor_index *ix) {
    return ix->keys.cap * sizeof(int64_t) + ix->keys.buckets * sizeof(uint32_t);
}

/* A table of `buckets` holding the live slots of [0, n) of `keys` (unique
 * among them: a removed slot keeps its old key, which a later add may
 * have taken again). */
static uint32_t *table_of(const rotor_index *ix, const int64_t *keys, size_t n, size_t buckets) {
    uint32_t *t = cm_alloc_large(&ix->alloc, buckets * sizeof *t, "the key table");
    if (t == NULL)
        return NULL;
    memset(t, 0xff, buckets * sizeof *t);
    for (size_t i = 0; i < n; i++)
        if (!ix_is_deleted(ix, i))
            t[probe(keys, t, buckets, keys[i])] = (uint32_t)i;
    return t;
}

/* Room for `need` keys in `key` and the table, the identity materialised
 * first if the index had it; new arrays replace the old only once both
 * exist. */
static rotor_status make_room(rotor_index *ix, size_t need) {
    ix_keys *k = &ix->keys;
    const size_t count = ix->count;
    int64_t *key = k->key;
    size_t cap = k->cap;
    if (key == NULL || need > cap) {
        /* Exact for a build; doubling for adds, so n single adds copy O(n). */
        cap = key != NULL && cap <= SIZE_MAX / 4 && 2 * cap > need ? 2 * cap : need;
        key = cm_alloc_large(&ix->alloc, cap * sizeof *key, "the keys");
        if (key == NULL)
            return ROTOR_ERR_OUT_OF_MEMORY;
        for (size_t i = 0; i < count; i++)
            key[i] = k->key != NULL ? k->key[i] : (int64_t)i;
    }
    uint32_t *table = k->table;
    size_t buckets = k->buckets;
    if (table == NULL || need > buckets / 4 * 3) {
        buckets = buckets_for(need);
        table = table_of(ix, key, count, buckets);
        if (table == NULL) {
            if (key != k->key)
                cm_free(&ix->alloc, key);
            return ROTOR_ERR_OUT_OF_MEMORY;
        }
    }
    if (key != k->key) {
        cm_free(&ix->alloc, k->key);
        k->key = key;
        k->cap = cap;
    }
    if (table != k->table) {
        cm_free(&ix->alloc, k->table);
        k->table = table;
        k->buckets = buckets;
    }
    return ROTOR_OK;
}

/* The slot row i of a staged add lands in: the reused slots, then the
 * ones past the count. */
static size_t staged_slot(const rotor_index *ix, size_t i) {
    const ix_keys *k = &ix->keys;
    return i < k->nreused ? k->reused[i] : ix->count + i - k->nreused;
}

/* The row of a staged add that slot u holds (u is one of its slots). */
static size_t staged_row(const rotor_index *ix, size_t u) {
    const ix_keys *k = &ix->keys;
    if (u >= ix->count)
        return k->nreused + u - ix->count;
    size_t i = 0;
    while (i < k->nreused && k->reused[i] != u)
        i++;
    return i;
}

rotor_status ix_keys_stage(rotor_index *ix, const int64_t *keys, size_t n, const uint32_t *reused,
                           size_t nreused) {
    ix_keys *k = &ix->keys;
    const size_t count = ix->count;
    k->staged = 0;
    k->fresh = false;
    k->reused = reused;
    k->nreused = nreused;
    bool identity = true;
    for (size_t i = 0; keys != NULL && i < n; i++) {
        CM_RETURN_IF(keys[i] < 0, ROTOR_ERR_INVALID_ARGUMENT,
                     "key %" PRId64 " of row %zu is negative; keys are 0 or more", keys[i], i);
        identity = identity && keys[i] == (int64_t)staged_slot(ix, i);
    }
    if (k->key == NULL && identity)
        return ROTOR_OK; /* slot numbers: nothing to keep */
    /* Slots are uint32 in the table, IX_NO_SLOT marking an empty bucket. */
    const size_t fresh = n - nreused;
    CM_RETURN_IF(count >= IX_NO_SLOT || fresh >= IX_NO_SLOT - count, ROTOR_ERR_INVALID_ARGUMENT,
                 "an index with keys holds fewer than %" PRIu32 " vectors; it has %zu, %zu more "
                 "were given",
                 IX_NO_SLOT, count, n);
    k->fresh = k->key == NULL;
    rotor_status st = make_room(ix, count + fresh);
    if (st != ROTOR_OK) {
        k->fresh = false;
        return st;
    }
    for (size_t i = 0; i < n; i++) {
        const size_t slot = staged_slot(ix, i);
        const int64_t want = keys != NULL ? keys[i] : (int64_t)slot;
        const size_t b = probe(k->key, k->table, k->buckets, want);
        const uint32_t other = k->table[b];
        if (other == IX_NO_SLOT) {
            k->key[slot] = want;
            k->table[b] = (uint32_t)slot;
            k->staged = i + 1;
            continue;
        }
        /* The table holds live slots and this add's: a removed slot's key
         * left it, so one marked removed is a reused slot of this add. */
        if (other >= count || ix_is_deleted(ix, other))
            st = cm_fail(ROTOR_ERR_INVALID_ARGUMENT,
                         "key %" PRId64 " is given twice, for rows %zu "
                         "and %zu",
                         want, staged_row(ix, other), i);
        else if (keys != NULL)
            st = cm_fail(ROTOR_ERR_INVALID_ARGUMENT,
                         "key %" PRId64 " of row %zu is already in the index", want, i);
        else
            st = cm_fail(ROTOR_ERR_INVALID_ARGUMENT,
                         "row %zu would take key %" PRId64 ", the number of its slot, which the "
                         "index holds already; give the rows keys of their own",
                         i, want);
        ix_keys_rollback(ix);
        return st;
    }
    return ROTOR_OK;
}

void ix_keys_commit(rotor_index *ix) {
    ix->keys.staged = 0;
    ix->keys.fresh = false;
    ix->keys.reused = NULL;
    ix->keys.nreused = 0;
}

void ix_keys_rollback(rotor_index *ix) {
    ix_keys *k = &ix->keys;
    if (k->fresh) { /* the index had the identity before this add */
        ix_keys_free(ix);
        return;
    }
    for (size_t i = k->staged; i-- > 0;)
        k->table[probe(k->key, k->table, k->buckets, k->key[staged_slot(ix, i)])] = IX_NO_SLOT;
    k->staged = 0;
    k->reused = NULL;
    k->nreused = 0;
}

/* The slot of `key` among the committed ones. */
static bool find(const rotor_index *ix, int64_t key, size_t *slot) {
    const ix_keys *k = &ix->keys;
    *slot = 0;
    if (key < 0)
        return false;
    if (k->key == NULL) {
        *slot = (size_t)key;
        return (uint64_t)key < ix->count && !ix_is_deleted(ix, (size_t)key);
    }
    const uint32_t s = k->table[probe(k->key, k->table, k->buckets, key)];
    *slot = s;
    /* A reused slot's key is in the table while its add is staged; the
     * slot is still marked removed until the add is counted. */
    return s < ix->count && !ix_is_deleted(ix, s);
}

bool ix_find_point(const rotor_index *ix, int64_t id, uint32_t *point) {
    size_t slot;
    if (!find(ix, id, &slot))
        return false;
    *point = (uint32_t)slot;
    return true;
}

rotor_status ix_slot_of(const rotor_index *ix, int64_t key, size_t *slot) {
    *slot = 0;
    CM_RETURN_IF(key < 0, ROTOR_ERR_INVALID_ARGUMENT,
                 "key %" PRId64 " is negative; keys are 0 or more", key);
    CM_RETURN_IF(!find(ix, key, slot), ROTOR_ERR_NOT_FOUND, "no vector has key %" PRId64, key);
    return ROTOR_OK;
}

/* Backward-shift deletion (Knuth 6.4, Algorithm R): the hole left at b is
 * filled by the next entry of the run that may sit there (its home bucket
 * is not in (b, j], cyclically), and so on to the end of the run, so no
 * probe for a key still in the table meets an empty bucket before it. A
 * tombstone bucket would do with less work, but would make every later
 * probe longer until the table is rebuilt. */
void ix_keys_drop(rotor_index *ix, size_t slot) {
    ix_keys *k = &ix->keys;
    if (k->key == NULL)
        return; /* the identity: the deleted bit alone hides the slot */
    const size_t mask = k->buckets - 1;
    size_t b = probe(k->key, k->table, k->buckets, k->key[slot]);
    if (k->table[b] != (uint32_t)slot)
        return;
    for (size_t j = (b + 1) & mask; k->table[j] != IX_NO_SLOT; j = (j + 1) & mask) {
        const size_t home = bucket_of(k->key[k->table[j]], mask);
        if (((j - home) & mask) >= ((j - b) & mask)) {
            k->table[b] = k->table[j];
            b = j;
        }
    }
    k->table[b] = IX_NO_SLOT;
}

void ix_keys_restore(rotor_index *ix, size_t slot) {
    ix_keys *k = &ix->keys;
    if (k->key == NULL)
        return;
    k->table[probe(k->key, k->table, k->buckets, k->key[slot])] = (uint32_t)slot;
}

void ix_keys_publish(const rotor_index *ix, int64_t *ids, size_t n) {
    const int64_t *key = ix->keys.key;
    if (key == NULL)
        return;
    /* A slot past the count cannot come from a navigator; if a damaged
     * file ever produced one, it maps to no result, not to a stray read. */
    for (size_t i = 0; i < n; i++)
        if (ids[i] >= 0)
            ids[i] = (uint64_t)ids[i] < ix->count ? key[ids[i]] : -1;
}

rotor_status rotor_index_contains(const rotor_index *ix, int64_t key, int *found) {
    cm_clear_error();
    CM_RETURN_IF(ix == NULL || found == NULL, ROTOR_ERR_INVALID_ARGUMENT,
                 "index and found must not be NULL");
    size_t slot;
    ix_read_begin(ix);
    *found = find(ix, key, &slot);
    ix_read_end(ix);
    return ROTOR_OK;
}

typedef struct row_copy {
    float *out;
    size_t bytes;
} row_copy;

static void copy_row(void *ctx, size_t j, const void *row) {
    (void)j;
    const row_copy *c = ctx;
    memcpy(c->out, row, c->bytes);
}

static rotor_status get_locked(const rotor_index *ix, int64_t key, float *out) {
    size_t slot;
    CM_FORWARD(ix_slot_of(ix, key, &slot));
    if (ix->store == NULL)
        return ix_row_get(ix, slot, out);
    vstore_reader *rd;
    CM_FORWARD(vstore_reader_get(ix->store, &rd));
    const uint32_t id = (uint32_t)slot;
    row_copy c = {out, ix->dim * sizeof(float)};
    rotor_status st = vstore_read(rd, &id, 1, copy_row, &c);
    /* Not a search's read: kept out of the next search's statistics. */
    uint64_t reads, wait_ns;
    vstore_reader_take_stats(rd, &reads, &wait_ns);
    vstore_reader_put(ix->store, rd);
    return st;
}

rotor_status rotor_index_get(const rotor_index *ix, int64_t key, float *out) {
    cm_clear_error();
    CM_RETURN_IF(ix == NULL || out == NULL, ROTOR_ERR_INVALID_ARGUMENT,
                 "index and output must not be NULL");
    ix_read_begin(ix);
    const rotor_status st = get_locked(ix, key, out);
    ix_read_end(ix);
    return st;
}

rotor_status ix_keys_save(const rotor_index *ix, ixf_writer *w) {
    const int64_t *key = ix->keys.key;
    if (key == NULL)
        return ROTOR_OK; /* the identity: older readers open the file too */
    uint8_t *buf = cm_alloc(&ix->alloc, SAVE_CHUNK * 8, "the keys section");
    if (buf == NULL)
        return ROTOR_ERR_OUT_OF_MEMORY;
    rotor_status st = ixf_section_begin(w, IXF_SEC_KEYS);
    for (size_t i = 0; st == ROTOR_OK && i < ix->count; i += SAVE_CHUNK) {
        const size_t n = ix->count - i < SAVE_CHUNK ? ix->count - i : SAVE_CHUNK;
        for (size_t j = 0; j < n; j++)
            cm_put_le64(buf + 8 * j, (uint64_t)key[i + j]);
        st = ixf_append(w, buf, n * 8);
    }
    if (st == ROTOR_OK)
        st = ixf_section_end(w);
    cm_free(&ix->alloc, buf);
    return st;
}

rotor_status ix_keys_load(rotor_index *ix) {
    ixf_file *f = ix->file;
    const ixf_section sec = ixf_get(f, IXF_SEC_KEYS);
    if (sec.data == NULL)
        return ROTOR_OK; /* the identity, or a file from before keys */
    const char *path = ixf_path(f);
    CM_RETURN_IF(sec.size != (uint64_t)ix->count * 8, ROTOR_ERR_FORMAT,
                 "'%s': the keys section holds %" PRIu64 " bytes; %zu vectors need %zu", path,
                 sec.size, ix->count, ix->count * 8);
    CM_FORWARD(ixf_check(f, IXF_SEC_KEYS));
    ix_keys *k = &ix->keys;
    const size_t n = ix->count;
    k->buckets = buckets_for(n);
    k->cap = n;
    k->key = cm_alloc_large(&ix->alloc, n * sizeof *k->key, "the keys");
    k->table = cm_alloc_large(&ix->alloc, k->buckets * sizeof *k->table, "the key table");
    if (k->key == NULL || k->table == NULL) {
        ix_keys_free(ix);
        return ROTOR_ERR_OUT_OF_MEMORY;
    }
    memset(k->table, 0xff, k->buckets * sizeof *k->table);
    bool identity = true;
    for (size_t i = 0; i < n; i++) {
        const uint64_t v = cm_get_le64(sec.data + 8 * i);
        rotor_status st = ROTOR_OK;
        if (ix_is_deleted(ix, i) && v <= (uint64_t)INT64_MAX) {
            k->key[i] = (int64_t)v; /* kept, not looked up: a later add may reuse it */
        } else if (v > (uint64_t)INT64_MAX) {
            st = cm_fail(ROTOR_ERR_FORMAT,
                         "'%s': in the keys section, vector %zu has a negative key (%" PRId64 ")",
                         path, i, (int64_t)v);
        } else {
            k->key[i] = (int64_t)v;
            const size_t b = probe(k->key, k->table, k->buckets, k->key[i]);
            if (k->table[b] != IX_NO_SLOT)
                st = cm_fail(ROTOR_ERR_FORMAT,
                             "'%s': in the keys section, vectors %" PRIu32 " and %zu have key "
                             "%" PRIu64,
                             path, k->table[b], i, v);
            k->table[b] = (uint32_t)i;
        }
        if (st != ROTOR_OK) {
            ix_keys_free(ix);
            return st;
        }
        identity = identity && v == i;
    }
    /* Not written by rotor, but valid: kept as what it is, the identity. */
    if (identity)
        ix_keys_free(ix);
    ixf_release(f, IXF_SEC_KEYS); /* copied out */
    return ROTOR_OK;
}
