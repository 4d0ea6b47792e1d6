/*
 * Searches beside writers (rotor.h, "Threads").
 *
 * Two locks: `writer`, a mutex every writer (add, remove, update,
 * consolidate, set_labels, tune) holds for its whole call, so writers
 * take turns; and `readers`, a reader-writer lock every search (and every
 * other reading call) holds shared for one query. A writer does its work
 * (converting, encoding, the graph searches and prunes that find a new
 * point's links, the prunes of a consolidation) while searches go on,
 * reading the index as it was, and takes `readers` exclusively only to
 * publish what it computed: the records one insertion rewrites, a code
 * store's new codes, a bitset, the count. A search therefore waits at
 * most for one such publication (microseconds: a few records copied),
 * never for a whole add or consolidation, and never meets a half-made
 * change: everything it reads is either from before a publication or
 * from after it.
 *
 * New points are linked into the graph before they are counted; a
 * search bounds every id by the count it started with and passes over
 * the others, so an add becomes visible at once, when its count is
 * published with its keys.
 *
 * `readers` prefers writers: once a writer waits, new searches queue
 * behind it, so a stream of searches cannot starve a writer, and the
 * wait a writer adds to a search is bounded by the searches already
 * running. An empty index's first batch (the build) holds `readers` for
 * the whole call: there is nothing to search until it is linked.
 *
 * Calls that read a lot but change nothing (save) take `writer` instead
 * of `readers`: no writer can run meanwhile, and searches are not held
 * up by a long read.
 */
#include <errno.h>
#include <string.h>

#include "index/index_internal.h"

struct ix_sync {
    pthread_rwlock_t readers;
    pthread_mutex_t writer;
    /* The writer holds `readers` exclusively for its whole call; set and
     * read only by the writer holding `writer`. */
    bool whole;
};

rotor_status ix_sync_create(rotor_index *ix) {
    ix_sync *s = cm_alloc(&ix->alloc, sizeof *s, "the index's locks");
    if (s == NULL)
        return ROTOR_ERR_OUT_OF_MEMORY;
    memset(s, 0, sizeof *s);
    pthread_rwlockattr_t attr;
    int err = pthread_rwlockattr_init(&attr);
    if (err == 0) {
        err = pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
        if (err == 0)
            err = pthread_rwlock_init(&s->readers, &attr);
        pthread_rwlockattr_destroy(&attr);
    }
    if (err == 0) {
        err = pthread_mutex_init(&s->writer, NULL);
        if (err != 0)
            pthread_rwlock_destroy(&s->readers);
    }
    if (err != 0) {
        cm_free(&ix->alloc, s);
        return cm_fail(err == ENOMEM ? ROTOR_ERR_OUT_OF_MEMORY : ROTOR_ERR_IO,
                       "cannot create the index's locks: %s", strerror(err));
    }
    ix->sync = s;
    return ROTOR_OK;
}

void ix_sync_free(rotor_index *ix) {
    if (ix->sync == NULL)
        return;
    pthread_mutex_destroy(&ix->sync->writer);
    pthread_rwlock_destroy(&ix->sync->readers);
    cm_free(&ix->alloc, ix->sync);
    ix->sync = NULL;
}

/* The locks cannot fail here: they are valid, never taken twice by one
 * thread, and (rwlock) never held by more readers than a process has
 * threads. */
void ix_read_begin(const rotor_index *ix) { pthread_rwlock_rdlock(&ix->sync->readers); }

void ix_read_end(const rotor_index *ix) { pthread_rwlock_unlock(&ix->sync->readers); }

void ix_write_begin(const rotor_index *ix) { pthread_mutex_lock(&ix->sync->writer); }

void ix_write_hold(const rotor_index *ix) {
    if (!ix->sync->whole)
        pthread_rwlock_wrlock(&ix->sync->readers);
    ix->sync->whole = true;
}

void ix_write_end(const rotor_index *ix) {
    if (ix->sync->whole)
        pthread_rwlock_unlock(&ix->sync->readers);
    ix->sync->whole = false;
    pthread_mutex_unlock(&ix->sync->writer);
}

void ix_publish_begin(const rotor_index *ix) {
    if (!ix->sync->whole)
        pthread_rwlock_wrlock(&ix->sync->readers);
}

void ix_publish_end(const rotor_index *ix) {
    if (!ix->sync->whole)
        pthread_rwlock_unlock(&ix->sync->readers);
}

pthread_rwlock_t *ix_publish_lock(const rotor_index *ix) {
    return ix->sync->whole ? NULL : &ix->sync->readers;
}
