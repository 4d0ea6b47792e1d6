#include <string.h>

#include "common/pool.h"

unsigned cm_thread_count(uint32_t requested, size_t work) {
    unsigned n = requested == 0 ? cm_cpu_count() : requested;
    if (work < n)
        n = work == 0 ? 1u : (unsigned)work;
    return n > CM_MAX_THREADS ? CM_MAX_THREADS : n;
}

/* Runs chunks until none is left. worker: the calling pool thread's number. */
static void pool_work(cm_pool *p, unsigned worker) {
    size_t c;
    while ((c = atomic_fetch_add(&p->next, 1)) < p->nchunks)
        p->fn(p->ctx, c, worker);
}

typedef struct pool_thread {
    cm_pool *p;
    unsigned worker;
} pool_thread;

static void *pool_main(void *arg) {
    cm_pool *p = ((pool_thread *)arg)->p;
    const unsigned worker = ((pool_thread *)arg)->worker;
    unsigned long seen = 0;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->quit && p->gen == seen)
            pthread_cond_wait(&p->wake, &p->mu);
        if (p->quit)
            break;
        seen = p->gen;
        pthread_mutex_unlock(&p->mu);
        pool_work(p, worker);
        pthread_mutex_lock(&p->mu);
        if (--p->busy == 0)
            pthread_cond_signal(&p->idle);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

rotor_status cm_pool_start(cm_pool *p, const rotor_allocator *a, unsigned threads) {
    memset(p, 0, sizeof *p);
    p->a = a;
    atomic_init(&p->next, 0);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->wake, NULL);
    pthread_cond_init(&p->idle, NULL);
    if (threads > CM_MAX_THREADS)
        threads = CM_MAX_THREADS;
    if (threads <= 1)
        return ROTOR_OK;
    /* Thread ids, then each worker's (pool, number) argument. */
    const size_t n = threads - 1;
    p->tid = cm_alloc(a, n * (sizeof(pthread_t) + sizeof(pool_thread)), "worker threads");
    if (p->tid == NULL) {
        pthread_cond_destroy(&p->idle);
        pthread_cond_destroy(&p->wake);
        pthread_mutex_destroy(&p->mu);
        return ROTOR_ERR_OUT_OF_MEMORY;
    }
    pool_thread *args = (pool_thread *)(p->tid + n);
    for (size_t i = 0; i < n; i++) {
        args[i] = (pool_thread){p, (unsigned)i + 1};
        if (pthread_create(&p->tid[i], NULL, pool_main, &args[i]) != 0)
            break;
        p->nworkers++;
    }
    return ROTOR_OK;
}

void cm_pool_run(cm_pool *p, cm_job_fn fn, void *ctx, size_t nchunks) {
    p->fn = fn;
    p->ctx = ctx;
    p->nchunks = nchunks;
    atomic_store(&p->next, 0);
    if (p->nworkers == 0) {
        pool_work(p, 0);
        return;
    }
    pthread_mutex_lock(&p->mu);
    p->busy = p->nworkers;
    p->gen++;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    pool_work(p, 0);
    pthread_mutex_lock(&p->mu);
    while (p->busy > 0)
        pthread_cond_wait(&p->idle, &p->mu);
    pthread_mutex_unlock(&p->mu);
}

void cm_pool_stop(cm_pool *p) {
    pthread_mutex_lock(&p->mu);
    p->quit = true;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    for (unsigned i = 0; i < p->nworkers; i++)
        pthread_join(p->tid[i], NULL);
    cm_free(p->a, p->tid);
    pthread_cond_destroy(&p->idle);
    pthread_cond_destroy(&p->wake);
    pthread_mutex_destroy(&p->mu);
}
