/*
 * A fork-join thread pool: the one way the library runs work on several
 * threads (index builds, encoding, batch search, k-means). Private to the
 * library.
 *
 * A job is `nchunks` units numbered 0..nchunks-1, pulled one at a time from
 * an atomic counter by every thread of the pool, the calling thread among
 * them, so shares balance themselves and a worker that could not be started
 * costs speed, never a result: the caller takes its chunks. cm_pool_run
 * returns when every chunk is done. A result that must not depend on the
 * thread count may depend on chunk numbers, never on which worker ran them.
 *
 * The pool lives for one operation (a build, a batch), so starting threads
 * is paid once per operation rather than once per phase or per k-means
 * round.
 */
#ifndef ROTOR_COMMON_POOL_H
#define ROTOR_COMMON_POOL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "common/common.h"

/* Most threads any pool starts: per-worker state is sized by it. */
#define CM_MAX_THREADS 256

/* Threads for `work` independent units: `requested`, or one per core when
 * 0, never more than the units (at least 1) nor CM_MAX_THREADS. */
unsigned cm_thread_count(uint32_t requested, size_t work);

/* Runs chunk `chunk` on worker `worker` (0 = the calling thread, then
 * 1..cm_pool_threads() - 1): the worker number indexes per-thread state. */
typedef void (*cm_job_fn)(void *ctx, size_t chunk, unsigned worker);

typedef struct cm_pool {
    pthread_mutex_t mu;
    pthread_cond_t wake; /* a new job, or quit */
    pthread_cond_t idle; /* the last worker finished the job */
    pthread_t *tid;
    unsigned nworkers; /* threads started, besides the caller */
    unsigned busy;     /* workers not yet done with the current job */
    unsigned long gen; /* job number, so a worker runs each job once */
    bool quit;
    cm_job_fn fn;
    void *ctx;
    size_t nchunks;
    atomic_size_t next; /* next chunk to take */
    const rotor_allocator *a;
} cm_pool;

/* Starts up to `threads` - 1 workers (the caller is the last thread); a
 * worker that cannot be started is simply missing. Fails only when out of
 * memory. */
rotor_status cm_pool_start(cm_pool *p, const rotor_allocator *a, unsigned threads);
/* Threads that run a job: the workers started plus the caller. */
static inline unsigned cm_pool_threads(const cm_pool *p) { return p->nworkers + 1; }
void cm_pool_run(cm_pool *p, cm_job_fn fn, void *ctx, size_t nchunks);
/* Joins the workers and releases the pool. */
void cm_pool_stop(cm_pool *p);

#endif /* ROTOR_COMMON_POOL_H */
