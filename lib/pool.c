/* Worker threads (see pool.h). */
#include "pool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <unistd.h>

#include "alloc.h"
#include "status.h"

#define MAX_THREADS 256
/* Polls of the job counter before a worker sleeps, and before a waiting caller yields: a few
 * microseconds, the gap between two products of one token, far less than one GEMM. */
#define SPIN_POLLS 2000

#if defined(__x86_64__) || defined(__i386__)
#  include <immintrin.h>
#  define cpu_relax() _mm_pause()
#else
#  define cpu_relax() ((void)0)
#endif

typedef struct {
    mmi_pool *pool;
    int part;
} worker_arg;

struct mmi_pool {
    int n_threads;                 /* team size counting the caller */
    pthread_t workers[MAX_THREADS];
    worker_arg args[MAX_THREADS];
    pthread_mutex_t lock;
    pthread_cond_t wake;
    /* The job: fn and ctx are written before `job` is bumped (release), read after it is seen
     * (acquire). */
    mmi_pool_fn fn;
    void *ctx;
    atomic_uint job;               /* jobs posted so far */
    atomic_int busy;               /* workers still on the current job */
    atomic_int parked;             /* idle workers sleep now instead of spinning */
    atomic_int quit;
};

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
    mmi_pool *p = ((worker_arg *)arg)->pool;
    int part = ((worker_arg *)arg)->part;
    unsigned seen = 0;
    for (;;) {
        seen = wait_for_job(p, seen);
        if (atomic_load_explicit(&p->quit, memory_order_acquire))
            return NULL;
        p->fn(p->ctx, part, p->n_threads);
        atomic_fetch_sub_explicit(&p->busy, 1, memory_order_release);
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
    atomic_init(&p->job, 0);
    atomic_init(&p->busy, 0);
    atomic_init(&p->parked, 0);
    atomic_init(&p->quit, 0);
    p->n_threads = 1;
    for (int i = 1; i < n_threads; i++) {
        p->args[i] = (worker_arg){p, i};
        if (pthread_create(&p->workers[i], NULL, worker_main, &p->args[i]) != 0) {
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

void mmi_pool_run(mmi_pool *p, mmi_pool_fn fn, void *ctx)
{
    if (!p || p->n_threads == 1) {
        fn(ctx, 0, 1);
        return;
    }
    p->fn = fn;
    p->ctx = ctx;
    atomic_store_explicit(&p->parked, 0, memory_order_relaxed);
    atomic_store_explicit(&p->busy, p->n_threads - 1, memory_order_relaxed);
    /* Under the lock, so that a worker about to sleep sees either the new job or the signal. */
    pthread_mutex_lock(&p->lock);
    atomic_fetch_add_explicit(&p->job, 1, memory_order_release);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);
    fn(ctx, 0, p->n_threads);
    for (int i = 0; atomic_load_explicit(&p->busy, memory_order_acquire) > 0; i++) {
        if (i < SPIN_POLLS)
            cpu_relax();
        else
            sched_yield(); /* a worker was descheduled: give it the core */
    }
}

void mmi_pool_park(mmi_pool *p)
{
    if (p)
        atomic_store_explicit(&p->parked, 1, memory_order_relaxed);
}
