/* Worker threads (see pool.h). */
#include "pool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <unistd.h>

#include "alloc.h"
#include "status.h"

#define MAX_THREADS 256
/* Polls of the job counter before a worker sleeps, and before a waiting caller yields: tens of
 * microseconds, the gap between two products of one token, far less than one GEMM. */
#define SPIN_POLLS 2000

#if defined(__x86_64__) || defined(__i386__)
#  include <immintrin.h>
#  define cpu_relax() _mm_pause()
#else
#  define cpu_relax() ((void)0)
#endif

struct mmi_pool {
    int n_threads;                 /* team size counting the caller */
    pthread_t workers[MAX_THREADS];
    pthread_mutex_t lock;
    pthread_cond_t wake;
    /* The job: fn, ctx, n and chunk are written before the job is posted (release) and read
     * by a thread only once it holds one of the job's chunks, so never while they change. */
    mmi_pool_fn fn;
    void *ctx;
    size_t n, chunk;
    atomic_size_t n_chunks;
    _Atomic uint64_t next;         /* job number << 32 | next chunk to take */
    atomic_size_t done;            /* chunks of the current job finished */
    atomic_uint job;               /* number of the job posted last */
    atomic_int parked;             /* idle workers sleep now instead of spinning */
    atomic_int quit;
};

/* Take and run chunks of job `job` until none is left (or the job is no longer current: a
 * thread that arrives late must not touch the next one). */
static void take_chunks(mmi_pool *p, unsigned job)
{
    uint64_t v = atomic_load_explicit(&p->next, memory_order_acquire);
    for (;;) {
        size_t c = (size_t)(v & 0xffffffffu);
        if ((unsigned)(v >> 32) != job ||
            c >= atomic_load_explicit(&p->n_chunks, memory_order_relaxed))
            return;
        if (!atomic_compare_exchange_weak_explicit(&p->next, &v, v + 1, memory_order_acq_rel,
                                                   memory_order_acquire))
            continue; /* v now holds the current value */
        size_t begin = c * p->chunk, end = begin + p->chunk < p->n ? begin + p->chunk : p->n;
        p->fn(p->ctx, begin, end);
        atomic_fetch_add_explicit(&p->done, 1, memory_order_release);
        v = atomic_load_explicit(&p->next, memory_order_acquire);
    }
}

static unsigned wait_for_job(mmi_pool *p, unsigned seen)
{
    for (int i = 0; i < SPIN_POLLS && !atomic_load_explicit(&p->parked, memory_order_relaxed);
         i++) {
        unsigned job = atomic_load_explicit(&p->job, memory_order_acquire);
        if (job != seen || atomic_load_explicit(&p->quit, memory_order_relaxed))
            return job;
        cpu_relax();
    }
    pthread_mutex_lock(&p->lock);
    unsigned job;
    while ((job = atomic_load_explicit(&p->job, memory_order_acquire)) == seen &&
           !atomic_load_explicit(&p->quit, memory_order_relaxed))
        pthread_cond_wait(&p->wake, &p->lock);
    pthread_mutex_unlock(&p->lock);
    return job;
}

static void *worker_main(void *arg)
{
    mmi_pool *p = arg;
    unsigned seen = 0;
    for (;;) {
        seen = wait_for_job(p, seen);
        if (atomic_load_explicit(&p->quit, memory_order_acquire))
            return NULL;
        take_chunks(p, seen);
    }
}

static int online_cpus(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0)
        return CPU_COUNT(&set);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

mm_status mmi_pool_create(int n_threads, mmi_pool **out)
{
    *out = NULL;
    if (n_threads <= 0)
        n_threads = online_cpus();
    if (n_threads > MAX_THREADS)
        n_threads = MAX_THREADS;
    mmi_pool *p = mmi_calloc(1, sizeof *p);
    if (!p)
        return mmi_fail(MM_ERR_NOMEM, "out of memory for a pool of %d threads", n_threads);
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->wake, NULL);
    atomic_init(&p->n_chunks, 0);
    atomic_init(&p->next, 0);
    atomic_init(&p->done, 0);
    atomic_init(&p->job, 0);
    atomic_init(&p->parked, 0);
    atomic_init(&p->quit, 0);
    p->n_threads = 1;
    for (int i = 1; i < n_threads; i++) {
        if (pthread_create(&p->workers[i], NULL, worker_main, p) != 0) {
            mmi_log(MM_LOG_WARN, "started %d of %d compute threads", i, n_threads);
            break;
        }
        p->n_threads = i + 1;
    }
    *out = p;
    return MM_OK;
}

void mmi_pool_free(mmi_pool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->lock);
    atomic_store_explicit(&p->quit, 1, memory_order_release);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);
    for (int i = 1; i < p->n_threads; i++)
        pthread_join(p->workers[i], NULL);
    pthread_cond_destroy(&p->wake);
    pthread_mutex_destroy(&p->lock);
    mmi_free(p);
}

int mmi_pool_size(const mmi_pool *p)
{
    return p ? p->n_threads : 1;
}

void mmi_pool_run(mmi_pool *p, size_t n, size_t chunk, mmi_pool_fn fn, void *ctx)
{
    if (chunk < n / 0xffffffffu + 1)
        chunk = n / 0xffffffffu + 1; /* chunk numbers fit in the low half of `next` */
    size_t n_chunks = (n + chunk - 1) / chunk;
    if (!p || p->n_threads == 1 || n_chunks <= 1) {
        if (n)
            fn(ctx, 0, n);
        return;
    }
    p->fn = fn;
    p->ctx = ctx;
    p->n = n;
    p->chunk = chunk;
    unsigned job = atomic_load_explicit(&p->job, memory_order_relaxed) + 1;
    atomic_store_explicit(&p->n_chunks, n_chunks, memory_order_relaxed);
    atomic_store_explicit(&p->done, 0, memory_order_relaxed);
    atomic_store_explicit(&p->parked, 0, memory_order_relaxed);
    atomic_store_explicit(&p->next, (uint64_t)job << 32, memory_order_release);
    /* Under the lock, so that a worker about to sleep sees either the new job or the signal. */
    pthread_mutex_lock(&p->lock);
    atomic_store_explicit(&p->job, job, memory_order_release);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);
    take_chunks(p, job);
    for (int i = 0; atomic_load_explicit(&p->done, memory_order_acquire) < n_chunks; i++) {
        if (i < SPIN_POLLS)
            cpu_relax();
        else
            sched_yield(); /* a worker holding a chunk lost its core: let it have this one */
    }
}

void mmi_pool_park(mmi_pool *p)
{
    if (p)
        atomic_store_explicit(&p->parked, 1, memory_order_relaxed);
}
