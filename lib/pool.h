/* libmm's own worker threads: a fixed team that runs one job at a time, each thread taking one
 * part of it. It serves the work libmm does itself (element-wise ops, norms, softmax, converting
 * and multiplying f16/bf16 weights); the GEMMs run on OpenBLAS's threads, which are idle while
 * a pool job runs, as the pool's threads are during a BLAS call (docs/performance.md).
 *
 * Workers wait for the next job spinning for some microseconds, then asleep on a condition
 * variable, so back-to-back jobs (a token's matrix-vector products) start without a wake-up;
 * before a BLAS call they are parked (put to sleep at once), so they leave its threads alone.
 * A pool belongs to one thread at a time (a session, an encoding call): mmi_pool_run is not
 * reentrant. */
#ifndef MMI_POOL_H
#define MMI_POOL_H

#include "mm.h"

typedef struct mmi_pool mmi_pool;

/* part = 0 .. n_parts-1; part 0 runs on the calling thread. */
typedef void (*mmi_pool_fn)(void *ctx, int part, int n_parts);

/* A team of n_threads threads counting the caller (0 = one per online CPU; capped at 256).
 * Threads that cannot be started are done without (the team is smaller, logged as a warning).
 * MM_ERR_NOMEM if the pool itself cannot be allocated. */
mm_status mmi_pool_create(int n_threads, mmi_pool **out);
void mmi_pool_free(mmi_pool *p); /* joins the workers; accepts NULL */
int mmi_pool_size(const mmi_pool *p); /* threads counting the caller; 1 for NULL */

/* fn(ctx, part, n_parts) for every part, parts spread over the team; returns when all are done.
 * n_parts is the team size, or 1 when p is NULL (then fn runs here alone). */
void mmi_pool_run(mmi_pool *p, mmi_pool_fn fn, void *ctx);

/* The workers go to sleep now rather than spin for the next job: called before handing the
 * cores to OpenBLAS's threads, so that no spinning worker holds one of them. Accepts NULL. */
void mmi_pool_park(mmi_pool *p);

#endif
