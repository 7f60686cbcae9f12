/* mm-server: an OpenAI- and Anthropic-compatible HTTP server on libmm.
 *
 *   http.c       the HTTP layer (the only file that knows libmicrohttpd): connections, body
 *                size cap, content type, API key, timeouts, streamed replies
 *   queue.c      the worker slots (one mm_session each) and the bounded queue of jobs
 *   api.c        the endpoints: read a request, run it as a job, shape the reply (JSON, SSE)
 *   mm-server.c  command line, model loading, signals
 * Requests are read and replies written with libmm's own JSON reader and writer (lib/json.h),
 * so the server links the library statically. */
#ifndef MMS_SERVER_H
#define MMS_SERVER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <sys/types.h>

#include "json.h"
#include "mm.h"

/* ---- HTTP (http.c) ---- */

typedef struct {
    const char *method, *path;
    const char *body; /* NUL-terminated, valid during the handler's call */
    size_t len;
    int fd;     /* the client's socket, for mms_http_client_gone */
} mms_request;

/* A reply: a whole body, or a stream the HTTP layer pulls from until it ends. */
typedef struct {
    int status;
    const char *content_type;
    mmi_json_writer body; /* mmi_json_writer, as every byte buffer here */
    int retry_after;  /* seconds for a Retry-After header; 0: none */
    void *stream;     /* non-NULL: streamed reply, body unused */
    /* Copies up to max bytes of the stream into buf; blocks until there are some. Returns the
     * count, 0 at the end, -1 when it ended badly (the connection is then closed). */
    ssize_t (*read)(void *stream, char *buf, size_t max);
    void (*close)(void *stream); /* called once, when the connection is done with it */
} mms_reply;

typedef void (*mms_handler)(void *app, mms_request *req, mms_reply *reply);

typedef struct {
    const char *host;
    int port;             /* 0: any free port */
    unsigned timeout_s;   /* idle connection timeout, and the time a request may take to arrive */
    size_t max_body;      /* bytes; larger requests get 413 */
    const char *api_key;  /* NULL: none; else "Authorization: Bearer KEY" or 401 */
    unsigned max_connections;
} mms_http_config;

typedef struct mms_http mms_http;

/* Starts serving on its own threads; on failure writes the reason into err. */
int mms_http_start(const mms_http_config *config, mms_handler handler, void *app,
                   mms_http **out, char *err, size_t err_size);
int mms_http_port(const mms_http *http);
/* Stop accepting connections; requests already received go on. */
void mms_http_quiesce(mms_http *http);
/* Requests received and not yet answered completely. */
unsigned mms_http_in_flight(mms_http *http);
void mms_http_stop(mms_http *http);
/* Whether the client behind a socket has hung up (non-blocking check). */
int mms_http_client_gone(int fd);

/* An error reply in the API's shape: OpenAI's {"error": {"message", "type", "code"}}, or
 * Anthropic's {"type": "error", "error": {...}} for paths under /v1/messages (api.c). */
void mms_reply_error(mms_reply *reply, const char *path, int status, const char *message);

/* ---- worker slots and the job queue (queue.c) ---- */

typedef struct mms_job mms_job;
typedef struct mms_slot mms_slot;

struct mms_slot {
    mm_session *session; /* NULL when the server has no language model */
    pthread_t thread;
    struct mms_queue *queue;
};

/* The work itself, run on a slot's thread. */
typedef void (*mms_job_fn)(mms_slot *slot, mms_job *job);

struct mms_job {
    mms_job_fn run;
    void *request;             /* what run reads (api.c's type), freed by free_request */
    void (*free_request)(void *request);
    pthread_mutex_t mu;        /* guards everything below */
    pthread_cond_t changed;
    int refs;                  /* the queue/slot and the connection each hold one */
    int cancelled;             /* the client went away */
    mm_session *running;       /* the session working on it, for mm_session_cancel */
    int started;               /* the input was accepted: a streamed reply may begin */
    int done;
    int status;                /* HTTP status of the reply */
    mmi_json_writer out;       /* the reply body (a stream's bytes, as they come) */
    size_t out_read;           /* bytes of out already passed on */
    struct mms_job *next;
};

typedef struct mms_queue {
    pthread_mutex_t mu;
    pthread_cond_t ready;
    mms_job *head, *tail;
    unsigned waiting, capacity;
    int stopping;
    mms_slot *slots;
    unsigned n_slots;
} mms_queue;

/* Creates n slots, each with a session on model (NULL: slots without sessions) made with
 * options, and starts their threads. */
int mms_queue_start(mms_queue *q, mm_model *model, const mm_options *options, unsigned n_slots,
                    unsigned capacity, char *err, size_t err_size);
/* Lets the slots finish every queued job, then joins them and frees their sessions. */
void mms_queue_stop(mms_queue *q);

mms_job *mms_job_new(mms_job_fn run, void *request, void (*free_request)(void *));
/* Queues a job (taking one reference for the slot that will run it); 0 when the queue is full
 * or stopping. */
int mms_queue_push(mms_queue *q, mms_job *job);
void mms_job_release(mms_job *job);
/* The client went away: stop the job's work as soon as possible. */
void mms_job_cancel(mms_job *job);
/* Waits until the job is done (or, with until_started, accepted its input), checking every
 * 100 ms that the client behind fd is still there; cancels the job and returns 0 if not. */
int mms_job_wait(mms_job *job, int fd, int until_started);
/* For a job's run: publish text of the reply / mark it started / finish it. */
void mms_job_emit(mms_job *job, const char *text);
void mms_job_start(mms_job *job);
void mms_job_finish(mms_job *job, int status);
/* Whether the job was cancelled; a run checks it between tokens. */
int mms_job_cancelled(mms_job *job);
/* Reads the next bytes of a job's reply as mms_reply.read does, watching the client on fd. */
ssize_t mms_job_read(mms_job *job, int fd, char *buf, size_t max);

/* ---- the endpoints (api.c) ---- */

typedef struct {
    mm_model *model;        /* language model (with its vision file), or NULL */
    mm_model *clip;         /* CLIP dual encoder for /v1/embeddings, or NULL */
    const char *model_id;   /* names reported by /v1/models and in replies */
    const char *clip_id;
    mms_queue queue;
    mm_options *options;    /* the server's settings under a request's own: the default
                               max_tokens, image limits */
    int max_tokens;         /* cap on a request's max_tokens */
    atomic_int draining;    /* SIGTERM received: new work gets 503 */
} mms_server;

void mms_serve(void *server, mms_request *req, mms_reply *reply);

#endif
