/* libmm's own worker threads: a fixed team that runs one job at a time, a loop over [0, n) cut
 * into chunks that the threads take as they become free, so a thread held up (another process
 * took its core) delays a job by one chunk at most. It serves the work libmm does itself
 * (element-wise ops, norms, softmax, converting and multiplying f16/bf16 weights); the GEMMs
 * run on OpenBLAS's threads, which are idle while a pool job runs, as the pool's threads are
 * during a BLAS call (docs/performance.md).
 *
 * Workers wait for the next job spinning for some microseconds, then asleep on a condition
 * variable, so back-to-back jobs (a token's matrix-vector products) start without a wake-up;
 * before a BLAS call they are parked (put to sleep at once), so they leave its threads alone.
 * A pool belongs to one thread at a time (a session, an encoding call): mmi_pool_run is not
 * reentrant. */
#ifndef MMI_POOL_H
#define MMI_POOL_H

#include <stddef.h>

#include "mm.h"

typedef struct mmi_pool mmi_pool;

/* One chunk: items [begin, end). */
typedef void (*mmi_pool_fn)(void *ctx, size_t begin, size_t end);

/* A team of n_threads threads counting the caller (0 = one per online CPU; capped at 256).
 * Threads that cannot be started are done without (the team is smaller, logged as a warning).
 * MM_ERR_NOMEM if the pool itself cannot be allocated. */
mm_status mmi_pool_create(int n_threads, mmi_pool **out);
void mmi_pool_free(mmi_pool *p); /* joins the workers; accepts NULL */
int mmi_pool_size(const mmi_pool *p); /* threads counting the caller; 1 for NULL */

/* fn over [0, n) in chunks of `chunk` items (the last one shorter), run by the calling thread
 * and the workers; returns when all are done. With p NULL, a team of one, or a single chunk,
 * fn(ctx, 0, n) runs here alone. */
void mmi_pool_run(mmi_pool *p, size_t n, size_t chunk, mmi_pool_fn fn, void *ctx);

/* The workers go to sleep now rather than spin for the next job: called before handing the
 * cores to OpenBLAS's threads, so that no spinning worker holds one of them. Accepts NULL. */
void mmi_pool_park(mmi_pool *p);

#endif
