/* Worker slots and the bounded job queue. Each slot is a thread with its own session on the one
 * shared model; a job is shared by its slot and the connection that waits for it (two
 * references), so whichever finishes last frees it. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "server.h"

#include "alloc.h"

mms_job *mms_job_new(mms_job_fn run, void *request, void (*free_request)(void *))
{
    mms_job *job = calloc(1, sizeof *job);
    if (!job)
        return NULL;
    job->run = run;
    job->request = request;
    job->free_request = free_request;
    job->refs = 1;
    pthread_mutex_init(&job->mu, NULL);
    pthread_cond_init(&job->changed, NULL);
    return job;
}

void mms_job_release(mms_job *job)
{
    if (!job)
        return;
    pthread_mutex_lock(&job->mu);
    int last = --job->refs == 0;
    pthread_mutex_unlock(&job->mu);
    if (!last)
        return;
    if (job->free_request)
        job->free_request(job->request);
    mmi_free(job->out.data);
    pthread_cond_destroy(&job->changed);
    pthread_mutex_destroy(&job->mu);
    free(job);
}

void mms_job_cancel(mms_job *job)
{
    pthread_mutex_lock(&job->mu);
    job->cancelled = 1;
    mm_session_cancel(job->running);
    pthread_mutex_unlock(&job->mu);
}

int mms_job_cancelled(mms_job *job)
{
    pthread_mutex_lock(&job->mu);
    int cancelled = job->cancelled;
    pthread_mutex_unlock(&job->mu);
    return cancelled;
}

void mms_job_emit(mms_job *job, const char *text)
{
    pthread_mutex_lock(&job->mu);
    mmi_json_write_raw(&job->out, text);
    pthread_cond_broadcast(&job->changed);
    pthread_mutex_unlock(&job->mu);
}

void mms_job_start(mms_job *job)
{
    pthread_mutex_lock(&job->mu);
    job->started = 1;
    pthread_cond_broadcast(&job->changed);
    pthread_mutex_unlock(&job->mu);
}

void mms_job_finish(mms_job *job, int status)
{
    pthread_mutex_lock(&job->mu);
    job->status = status;
    job->done = 1;
    job->running = NULL;
    pthread_cond_broadcast(&job->changed);
    pthread_mutex_unlock(&job->mu);
}

/* Waits (job->mu held) up to 100 ms for a change. */
static void wait_a_little(mms_job *job)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_nsec += 100 * 1000 * 1000;
    if (until.tv_nsec >= 1000 * 1000 * 1000) {
        until.tv_sec++;
        until.tv_nsec -= 1000 * 1000 * 1000;
    }
    pthread_cond_timedwait(&job->changed, &job->mu, &until);
}

int mms_job_wait(mms_job *job, int fd, int until_started)
{
    pthread_mutex_lock(&job->mu);
    while (!job->done && !(until_started && job->started)) {
        pthread_mutex_unlock(&job->mu);
        if (mms_http_client_gone(fd)) {
            mms_job_cancel(job);
            return 0;
        }
        pthread_mutex_lock(&job->mu);
        if (!job->done && !(until_started && job->started))
            wait_a_little(job);
    }
    pthread_mutex_unlock(&job->mu);
    return 1;
}

ssize_t mms_job_read(mms_job *job, int fd, char *buf, size_t max)
{
    pthread_mutex_lock(&job->mu);
    while (job->out_read == job->out.len && !job->done) {
        pthread_mutex_unlock(&job->mu);
        if (mms_http_client_gone(fd)) {
            mms_job_cancel(job);
            return -1;
        }
        pthread_mutex_lock(&job->mu);
        if (job->out_read == job->out.len && !job->done)
            wait_a_little(job);
    }
    ssize_t n = -1;
    if (job->out.status == MM_OK) {
        size_t left = job->out.len - job->out_read;
        n = (ssize_t)(left < max ? left : max);
        memcpy(buf, job->out.data + job->out_read, (size_t)n);
        job->out_read += (size_t)n;
    }
    pthread_mutex_unlock(&job->mu);
    return n;
}

int mms_queue_push(mms_queue *q, mms_job *job)
{
    pthread_mutex_lock(&q->mu);
    int ok = !q->stopping && q->waiting < q->capacity;
    if (ok) {
        pthread_mutex_lock(&job->mu);
        job->refs++;
        pthread_mutex_unlock(&job->mu);
        job->next = NULL;
        if (q->tail)
            q->tail->next = job;
        else
            q->head = job;
        q->tail = job;
        q->waiting++;
        pthread_cond_signal(&q->ready);
    }
    pthread_mutex_unlock(&q->mu);
    return ok;
}

static void *slot_main(void *arg)
{
    mms_slot *slot = arg;
    mms_queue *q = slot->queue;
    for (;;) {
        pthread_mutex_lock(&q->mu);
        while (!q->head && !q->stopping)
            pthread_cond_wait(&q->ready, &q->mu);
        mms_job *job = q->head;
        if (!job) { /* stopping, and nothing left to do */
            pthread_mutex_unlock(&q->mu);
            return NULL;
        }
        q->head = job->next;
        if (!q->head)
            q->tail = NULL;
        q->waiting--;
        pthread_mutex_unlock(&q->mu);

        pthread_mutex_lock(&job->mu);
        int skip = job->cancelled; /* its client left while it waited */
        job->running = skip ? NULL : slot->session;
        pthread_mutex_unlock(&job->mu);
        if (skip)
            mms_job_finish(job, 499);
        else
            job->run(slot, job);
        mms_job_release(job);
    }
}

int mms_queue_start(mms_queue *q, mm_model *model, const mm_options *options, unsigned n_slots,
                    unsigned capacity, char *err, size_t err_size)
{
    *q = (mms_queue){.capacity = capacity};
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->ready, NULL);
    if (!(q->slots = calloc(n_slots, sizeof *q->slots))) {
        snprintf(err, err_size, "out of memory");
        return 0;
    }
    for (; q->n_slots < n_slots; q->n_slots++) {
        mms_slot *slot = &q->slots[q->n_slots];
        slot->queue = q;
        mm_status st = model ? mm_session_create(model, options, &slot->session) : MM_OK;
        if (st != MM_OK) {
            snprintf(err, err_size, "session %u: %s: %s", q->n_slots, mm_status_str(st),
                     mm_last_error());
            mms_queue_stop(q);
            return 0;
        }
        if ((errno = pthread_create(&slot->thread, NULL, slot_main, slot)) != 0) {
            mm_session_free(slot->session);
            snprintf(err, err_size, "cannot start a worker thread");
            mms_queue_stop(q);
            return 0;
        }
    }
    return 1;
}

void mms_queue_stop(mms_queue *q)
{
    pthread_mutex_lock(&q->mu);
    q->stopping = 1;
    pthread_cond_broadcast(&q->ready);
    pthread_mutex_unlock(&q->mu);
    for (unsigned i = 0; i < q->n_slots; i++) {
        pthread_join(q->slots[i].thread, NULL);
        mm_session_free(q->slots[i].session);
    }
    free(q->slots);
    q->slots = NULL;
    q->n_slots = 0;
    pthread_cond_destroy(&q->ready);
    pthread_mutex_destroy(&q->mu);
}
