/* The endpoints. A request is read and checked on its connection's thread (bad input gets its
 * 4xx there, without taking a place in the queue); the work runs as a job on a slot; the reply
 * is the job's output, whole or as server-sent events. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "server.h"

#include "alloc.h"    /* libmm's JSON reader and data-URL decoder, reused for the requests */
#include "chatjson.h"

#define MAX_EMBEDDING_INPUTS 256

static const char *error_type(int status)
{
    switch (status) {
    case 401: return "authentication_error";
    case 404: return "not_found_error";
    case 413: return "request_too_large";
    case 429: case 503: return "overloaded_error";
    default: return status >= 500 ? "api_error" : "invalid_request_error";
    }
}

static int is_anthropic(const char *path)
{
    return strncmp(path, "/v1/messages", 12) == 0;
}

static void write_error(mmi_json_writer *w, const char *path, int status, const char *message)
{
    if (is_anthropic(path)) {
        mmi_json_write_raw(w, "{\"type\":\"error\",\"error\":{\"type\":\"");
        mmi_json_write_raw(w, error_type(status));
        mmi_json_write_raw(w, "\",\"message\":");
        mmi_json_write_string(w, message, strlen(message));
        mmi_json_write_raw(w, "}}");
    } else {
        mmi_json_write_raw(w, "{\"error\":{\"message\":");
        mmi_json_write_string(w, message, strlen(message));
        mmi_json_write_raw(w, ",\"type\":\"");
        mmi_json_write_raw(w, error_type(status));
        mmi_json_write_raw(w, "\",\"param\":null,\"code\":");
        mmi_json_write_int(w, status);
        mmi_json_write_raw(w, "}}");
    }
}

void mms_reply_error(mms_reply *reply, const char *path, int status, const char *message)
{
    reply->status = status;
    reply->content_type = "application/json";
    mmi_free(reply->body.data);
    reply->body = (mmi_json_writer){0};
    write_error(&reply->body, path, status, message);
    if (status == 503 || status == 429)
        reply->retry_after = 1;
}

/* The HTTP status for a libmm failure on a request's input: the client's fault unless memory
 * ran out or the server could not read its own files. */
static int status_for(mm_status st)
{
    switch (st) {
    case MM_ERR_NOMEM: return 503;
    case MM_ERR_IO: return 500;
    default: return 400;
    }
}

static void reply_mm_error(mms_reply *reply, const char *path, const char *what, mm_status st)
{
    char message[512];
    snprintf(message, sizeof message, "%s: %s: %s", what, mm_status_str(st), mm_last_error());
    mms_reply_error(reply, path, status_for(st), message);
}

/* ---- jobs and their replies ---- */

typedef struct {
    mms_job *job;
    int fd;
} stream_ctx;

static ssize_t stream_read(void *stream, char *buf, size_t max)
{
    stream_ctx *s = stream;
    return mms_job_read(s->job, s->fd, buf, max);
}

static void stream_close(void *stream)
{
    stream_ctx *s = stream;
    mms_job_cancel(s->job); /* a no-op when it is done; frees the slot when the client left */
    mms_job_release(s->job);
    free(s);
}

/* Queues the job and turns it into the reply: the whole body when it is done, or (streamed)
 * a stream once it has accepted its input. Takes the caller's reference. */
static void run_job(mms_server *srv, mms_request *req, mms_reply *reply, mms_job *job,
                    int streamed)
{
    if (!mms_queue_push(&srv->queue, job)) {
        mms_job_release(job);
        mms_reply_error(reply, req->path, 503, srv->draining ? "the server is shutting down"
                                                              : "all slots busy and the queue is "
                                                                "full; retry later");
        return;
    }
    if (!mms_job_wait(job, req->fd, streamed)) { /* the client left */
        mms_job_release(job);
        reply->status = 499;
        return;
    }
    pthread_mutex_lock(&job->mu);
    int failed = job->done && job->status != 200;
    pthread_mutex_unlock(&job->mu);
    if (streamed && !failed) {
        stream_ctx *s = malloc(sizeof *s);
        if (!s) {
            mms_job_cancel(job);
            mms_job_release(job);
            mms_reply_error(reply, req->path, 503, "out of memory");
            return;
        }
        *s = (stream_ctx){job, req->fd};
        reply->status = 200;
        reply->content_type = "text/event-stream";
        reply->stream = s;
        reply->read = stream_read;
        reply->close = stream_close;
        return;
    }
    reply->status = job->status; /* done: nothing else touches the job now */
    reply->content_type = "application/json";
    reply->body = job->out;
    job->out = (mmi_json_writer){0};
    mms_job_release(job);
}

/* ---- chat: /v1/chat/completions and /v1/messages ---- */

typedef struct {
    mms_server *srv;
    mm_chat_request *request;
    mm_chat_api api;
    char id[48];
    long long created;
    mms_job *job; /* while it runs */
    mmi_json_writer event; /* the event being written */
} chat_job;

static void free_chat(void *p)
{
    chat_job *c = p;
    mm_chat_request_free(c->request);
    mmi_free(c->event.data);
    free(c);
}

static const char *chat_model(const chat_job *c)
{
    const char *model = mm_chat_request_model(c->request);
    return model ? model : c->srv->model_id;
}

/* One server-sent event; Anthropic's carry their type as the event name. */
static void send_event(chat_job *c, const char *anthropic_type)
{
    mmi_json_writer out = {0};
    if (anthropic_type) {
        mmi_json_write_raw(&out, "event: ");
        mmi_json_write_raw(&out, anthropic_type);
        mmi_json_write_raw(&out, "\n");
    }
    mmi_json_write_raw(&out, "data: ");
    mmi_json_write_raw(&out, c->event.status == MM_OK && c->event.data ? c->event.data : "");
    mmi_json_write_raw(&out, "\n\n");
    if (out.status == MM_OK)
        mms_job_emit(c->job, out.data);
    mmi_free(out.data);
    mmi_free(c->event.data);
    c->event = (mmi_json_writer){0};
}

static void openai_chunk_head(chat_job *c)
{
    mmi_json_writer *w = &c->event;
    mmi_json_write_raw(w, "{\"id\":\"");
    mmi_json_write_raw(w, c->id);
    mmi_json_write_raw(w, "\",\"object\":\"chat.completion.chunk\",\"created\":");
    mmi_json_write_int(w, c->created);
    mmi_json_write_raw(w, ",\"model\":");
    mmi_json_write_string(w, chat_model(c), strlen(chat_model(c)));
}

static void stream_begin(chat_job *c, int prompt_tokens)
{
    mmi_json_writer *w = &c->event;
    if (c->api == MM_CHAT_API_ANTHROPIC) {
        mmi_json_write_raw(w, "{\"type\":\"message_start\",\"message\":{\"id\":\"");
        mmi_json_write_raw(w, c->id);
        mmi_json_write_raw(w, "\",\"type\":\"message\",\"role\":\"assistant\",\"model\":");
        mmi_json_write_string(w, chat_model(c), strlen(chat_model(c)));
        mmi_json_write_raw(w, ",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,"
                              "\"usage\":{\"input_tokens\":");
        mmi_json_write_int(w, prompt_tokens);
        mmi_json_write_raw(w, ",\"output_tokens\":0}}}");
        send_event(c, "message_start");
        mmi_json_write_raw(w, "{\"type\":\"content_block_start\",\"index\":0,"
                              "\"content_block\":{\"type\":\"text\",\"text\":\"\"}}");
        send_event(c, "content_block_start");
    } else {
        openai_chunk_head(c);
        mmi_json_write_raw(w, ",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\","
                              "\"content\":\"\"},\"finish_reason\":null}]}");
        send_event(c, NULL);
    }
}

static int on_piece(void *user, const char *piece, size_t len)
{
    chat_job *c = user;
    if (mms_job_cancelled(c->job))
        return 1;
    if (!mm_chat_request_stream(c->request) || len == 0)
        return 0;
    mmi_json_writer *w = &c->event;
    if (c->api == MM_CHAT_API_ANTHROPIC) {
        mmi_json_write_raw(w, "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":"
                              "{\"type\":\"text_delta\",\"text\":");
        mmi_json_write_string(w, piece, len);
        mmi_json_write_raw(w, "}}");
        send_event(c, "content_block_delta");
    } else {
        openai_chunk_head(c);
        mmi_json_write_raw(w, ",\"choices\":[{\"index\":0,\"delta\":{\"content\":");
        mmi_json_write_string(w, piece, len);
        mmi_json_write_raw(w, "},\"finish_reason\":null}]}");
        send_event(c, NULL);
    }
    return 0;
}

/* Member key of object in the response the library wrote, copied: a string, a whole number,
 * or null when absent. */
static void copy_member(mmi_json_writer *w, const mmi_json *doc, const mmi_json_value *object,
                        const char *key)
{
    const mmi_json_value *v = NULL;
    int64_t n;
    if (object && mmi_json_member(doc, object, key, &v) == MM_OK && v) {
        if (v->type == MMI_JSON_STRING) {
            mmi_json_write_string(w, v->str, v->len);
            return;
        }
        if (mmi_json_int(v, INT64_MIN, INT64_MAX, key, &n) == MM_OK) {
            mmi_json_write_int(w, n);
            return;
        }
    }
    mmi_json_write_raw(w, "null");
}

/* The closing events, with the finish reason and usage of the response object the library
 * wrote, so that they say exactly what a reply not streamed says. */
static void stream_end(chat_job *c, const char *response, size_t len)
{
    mmi_json doc;
    if (mmi_json_parse(response, len, &doc) != MM_OK)
        return;
    const mmi_json_value *root = &doc.values[0], *choices = NULL, *usage = NULL;
    mmi_json_member(&doc, root, "usage", &usage);
    mmi_json_writer *w = &c->event;
    if (c->api == MM_CHAT_API_ANTHROPIC) {
        mmi_json_write_raw(w, "{\"type\":\"content_block_stop\",\"index\":0}");
        send_event(c, "content_block_stop");
        mmi_json_write_raw(w, "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":");
        copy_member(w, &doc, root, "stop_reason");
        mmi_json_write_raw(w, ",\"stop_sequence\":");
        copy_member(w, &doc, root, "stop_sequence");
        mmi_json_write_raw(w, "},\"usage\":{\"output_tokens\":");
        copy_member(w, &doc, usage, "output_tokens");
        mmi_json_write_raw(w, "}}");
        send_event(c, "message_delta");
        mmi_json_write_raw(w, "{\"type\":\"message_stop\"}");
        send_event(c, "message_stop");
    } else {
        openai_chunk_head(c);
        mmi_json_write_raw(w, ",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":");
        mmi_json_member(&doc, root, "choices", &choices);
        copy_member(w, &doc, choices ? mmi_json_first(&doc, choices) : NULL, "finish_reason");
        mmi_json_write_raw(w, "}],\"usage\":{");
        static const char *counts[] = {"prompt_tokens", "completion_tokens", "total_tokens"};
        for (int i = 0; i < 3; i++) {
            mmi_json_write_raw(w, i ? ",\"" : "\"");
            mmi_json_write_raw(w, counts[i]);
            mmi_json_write_raw(w, "\":");
            copy_member(w, &doc, usage, counts[i]);
        }
        mmi_json_write_raw(w, "}}");
        send_event(c, NULL);
        mmi_json_write_raw(w, "[DONE]");
        send_event(c, NULL);
    }
    mmi_json_free(&doc);
}

static void finish_with_error(chat_job *c, const char *what, mm_status st, int began)
{
    char message[512];
    snprintf(message, sizeof message, "%s: %s: %s", what, mm_status_str(st), mm_last_error());
    const char *path = c->api == MM_CHAT_API_ANTHROPIC ? "/v1/messages" : "/v1/chat/completions";
    mmi_json_writer w = {0};
    write_error(began ? &c->event : &w, path, status_for(st), message);
    if (began) /* the stream's 200 is sent: the error is its last event */
        send_event(c, c->api == MM_CHAT_API_ANTHROPIC ? "error" : NULL);
    else if (w.status == MM_OK)
        mms_job_emit(c->job, w.data);
    mmi_free(w.data);
    mms_job_finish(c->job, began ? 200 : status_for(st));
}

static void run_chat(mms_slot *slot, mms_job *job)
{
    chat_job *c = job->request;
    mms_server *srv = c->srv;
    mm_session *s = slot->session;
    c->job = job;
    int streamed = mm_chat_request_stream(c->request);
    mm_session_reset(s);
    mm_status st = mm_session_add_chat_request(s, c->request, srv->options);
    if (st != MM_OK) {
        if (mms_job_cancelled(job))
            mms_job_finish(job, 499);
        else
            finish_with_error(c, "messages", st, 0);
        return;
    }
    if (streamed)
        stream_begin(c, mm_session_n_past(s));
    mms_job_start(job);
    const char *response = NULL;
    size_t len = 0;
    st = mm_session_generate_response(s, c->request, srv->options, on_piece, c, &response, &len);
    if (mms_job_cancelled(job)) {
        mms_job_finish(job, 499);
        return;
    }
    if (st != MM_OK) {
        finish_with_error(c, "generation", st, streamed);
        return;
    }
    if (streamed) {
        stream_end(c, response, len);
    } else {
        mms_job_emit(job, response);
    }
    mms_job_finish(job, 200);
}

static void serve_chat(mms_server *srv, mms_request *req, mms_reply *reply, mm_chat_api api)
{
    static unsigned long long counter;
    if (!srv->model) {
        mms_reply_error(reply, req->path, 400, "this server has no language model loaded "
                                               "(it serves /v1/embeddings only)");
        return;
    }
    mm_chat_request *request = NULL;
    mm_status st = mm_chat_request_parse(req->body, req->len, &request);
    if (st != MM_OK) {
        reply_mm_error(reply, req->path, "request", st);
        return;
    }
    mm_chat_request_set_api(request, api);
    int64_t max_tokens = 0;
    if (mm_options_get_int(mm_chat_request_options(request), MM_OPT_MAX_TOKENS, &max_tokens) ==
            MM_OK && max_tokens > srv->max_tokens) {
        char message[128];
        snprintf(message, sizeof message, "max_tokens %lld is over this server's limit of %d",
                 (long long)max_tokens, srv->max_tokens);
        mm_chat_request_free(request);
        mms_reply_error(reply, req->path, 400, message);
        return;
    }
    chat_job *c = calloc(1, sizeof *c);
    mms_job *job = c ? mms_job_new(run_chat, c, free_chat) : NULL;
    if (!job) {
        free(c);
        mm_chat_request_free(request);
        mms_reply_error(reply, req->path, 503, "out of memory");
        return;
    }
    *c = (chat_job){.srv = srv, .request = request, .api = api, .created = (long long)time(NULL)};
    snprintf(c->id, sizeof c->id, "%s%llu", api == MM_CHAT_API_ANTHROPIC ? "msg_" : "chatcmpl-",
             __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED));
    run_job(srv, req, reply, job, mm_chat_request_stream(request));
}

/* ---- /v1/embeddings on the CLIP file ---- */

typedef struct {
    mms_server *srv;
    mmi_json doc;
    const mmi_json_value *inputs[MAX_EMBEDDING_INPUTS];
    size_t n_inputs;
    int base64; /* "encoding_format": "base64": little-endian float32, as OpenAI's */
} embed_job;

static void free_embed(void *p)
{
    embed_job *e = p;
    mmi_json_free(&e->doc);
    free(e);
}

static int is_data_url(const mmi_json_value *v)
{
    return v->len >= 5 && strncmp(v->str, "data:", 5) == 0;
}

/* One input's embedding: an image given as a data URL, else text. */
static mm_status embed_one(const mms_server *srv, const mmi_json_value *input, float *out,
                           size_t n)
{
    if (!is_data_url(input))
        return mm_clip_text_embedding(srv->clip, input->str, out, n);
    const char *type;
    size_t type_len, size;
    uint8_t *bytes;
    mm_status st = mmi_data_url_decode(input->str, input->len, &type, &type_len, &bytes, &size);
    if (st != MM_OK)
        return st;
    mm_image *image = NULL;
    st = mm_image_load_memory(bytes, size, srv->options, &image);
    mmi_free(bytes);
    if (st == MM_OK)
        st = mm_clip_image_embedding(srv->clip, image, out, n);
    mm_image_free(image);
    return st;
}

/* A float as JSON: the shortest text that reads back as the same float (9 significant digits
 * always do); null for a non-finite value, which JSON has no word for. */
static void write_float(mmi_json_writer *w, float v)
{
    char text[32] = "null";
    for (int digits = 6; isfinite(v) && digits <= 9; digits++) {
        snprintf(text, sizeof text, "%.*g", digits, (double)v);
        if (strtof(text, NULL) == v)
            break;
    }
    mmi_json_write_raw(w, text);
}

/* bytes[0..n) as one JSON string of standard padded base64. */
static void write_base64(mmi_json_writer *w, const void *bytes, size_t n)
{
    static const char digits[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const unsigned char *p = bytes;
    char quad[5] = {0};
    mmi_json_write_raw(w, "\"");
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0) |
                     (i + 2 < n ? p[i + 2] : 0);
        quad[0] = digits[v >> 18];
        quad[1] = digits[(v >> 12) & 63];
        quad[2] = i + 1 < n ? digits[(v >> 6) & 63] : '=';
        quad[3] = i + 2 < n ? digits[v & 63] : '=';
        mmi_json_write_raw(w, quad);
    }
    mmi_json_write_raw(w, "\"");
}

static void run_embed(mms_slot *slot, mms_job *job)
{
    embed_job *e = job->request;
    const mms_server *srv = e->srv;
    size_t n = mm_clip_embedding_size(srv->clip), n_tokens = 0;
    float *embedding = malloc(n * sizeof *embedding);
    mmi_json_writer w = {0};
    (void)slot;
    mmi_json_write_raw(&w, "{\"object\":\"list\",\"data\":[");
    for (size_t i = 0; i < e->n_inputs && embedding; i++) {
        const mmi_json_value *input = e->inputs[i];
        mm_status st = embed_one(srv, input, embedding, n);
        if (st != MM_OK) {
            char message[512];
            snprintf(message, sizeof message, "input[%zu]: %s: %s", i, mm_status_str(st),
                     mm_last_error());
            mmi_free(w.data);
            w = (mmi_json_writer){0};
            write_error(&w, "/v1/embeddings", status_for(st), message);
            if (w.status == MM_OK)
                mms_job_emit(job, w.data);
            mmi_free(w.data);
            free(embedding);
            mms_job_finish(job, status_for(st));
            return;
        }
        size_t ids = 0; /* the capacity-0 call only counts */
        if (!is_data_url(input))
            mm_tokenize(srv->clip, input->str, input->len, MM_TOKENIZE_ADD_SPECIAL, NULL, 0,
                        &ids);
        n_tokens += ids;
        mmi_json_write_raw(&w, i ? ",{\"object\":\"embedding\",\"index\":"
                                 : "{\"object\":\"embedding\",\"index\":");
        mmi_json_write_int(&w, (int64_t)i);
        mmi_json_write_raw(&w, ",\"embedding\":");
        if (e->base64) {
            write_base64(&w, embedding, n * sizeof *embedding); /* x86, ARM: little-endian */
        } else {
            for (size_t k = 0; k < n; k++) {
                mmi_json_write_raw(&w, k ? "," : "[");
                write_float(&w, embedding[k]);
            }
            mmi_json_write_raw(&w, "]");
        }
        mmi_json_write_raw(&w, "}");
    }
    mmi_json_write_raw(&w, "],\"model\":");
    mmi_json_write_string(&w, srv->clip_id, strlen(srv->clip_id));
    mmi_json_write_raw(&w, ",\"usage\":{\"prompt_tokens\":");
    mmi_json_write_int(&w, (int64_t)n_tokens);
    mmi_json_write_raw(&w, ",\"total_tokens\":");
    mmi_json_write_int(&w, (int64_t)n_tokens);
    mmi_json_write_raw(&w, "}}");
    int ok = embedding && w.status == MM_OK;
    if (!ok) {
        mmi_free(w.data);
        w = (mmi_json_writer){0};
        write_error(&w, "/v1/embeddings", 503, "out of memory");
    }
    if (w.status == MM_OK)
        mms_job_emit(job, w.data);
    mmi_free(w.data);
    free(embedding);
    mms_job_finish(job, ok ? 200 : 503);
}

/* Reads {"input": string | [string, ...], "encoding_format": "float" | "base64", "model"}. */
static int read_embed_request(embed_job *e, char *message, size_t size)
{
    const mmi_json *doc = &e->doc;
    const mmi_json_value *root = &doc->values[0], *input = NULL, *format = NULL;
    if (root->type != MMI_JSON_OBJECT) {
        snprintf(message, size, "the request must be a JSON object");
        return 0;
    }
    if (mmi_json_member(doc, root, "input", &input) != MM_OK ||
        mmi_json_member(doc, root, "encoding_format", &format) != MM_OK) {
        snprintf(message, size, "%s", mm_last_error());
        return 0;
    }
    if (format && format->type != MMI_JSON_NULL) {
        e->base64 = format->type == MMI_JSON_STRING && strcmp(format->str, "base64") == 0;
        if (!e->base64 && !(format->type == MMI_JSON_STRING && !strcmp(format->str, "float"))) {
            snprintf(message, size, "encoding_format: \"float\" or \"base64\" expected");
            return 0;
        }
    }
    if (input && input->type == MMI_JSON_STRING) {
        e->inputs[e->n_inputs++] = input;
        return 1;
    }
    if (!input || input->type != MMI_JSON_ARRAY || input->n_children == 0) {
        snprintf(message, size, "input: a string or a non-empty array of strings expected "
                                "(texts, or images as data URLs)");
        return 0;
    }
    if (input->n_children > MAX_EMBEDDING_INPUTS) {
        snprintf(message, size, "input: %u items, at most %d in one request",
                 input->n_children, MAX_EMBEDDING_INPUTS);
        return 0;
    }
    for (const mmi_json_value *v = mmi_json_first(doc, input); v;
         v = mmi_json_next(doc, input, v)) {
        if (v->type != MMI_JSON_STRING) {
            snprintf(message, size, "input[%zu]: a string expected, found %s (token arrays "
                     "are not taken)", e->n_inputs, mmi_json_type_name(v->type));
            return 0;
        }
        e->inputs[e->n_inputs++] = v;
    }
    return 1;
}

static void serve_embeddings(mms_server *srv, mms_request *req, mms_reply *reply)
{
    if (!srv->clip) {
        mms_reply_error(reply, req->path, 400, "this server has no CLIP model loaded "
                                               "(start it with --clip FILE)");
        return;
    }
    embed_job *e = calloc(1, sizeof *e);
    if (!e) {
        mms_reply_error(reply, req->path, 503, "out of memory");
        return;
    }
    e->srv = srv;
    char message[512];
    mm_status st = mmi_json_parse(req->body, req->len, &e->doc);
    if (st != MM_OK) {
        free(e);
        reply_mm_error(reply, req->path, "request", st);
        return;
    }
    if (!read_embed_request(e, message, sizeof message)) {
        free_embed(e);
        mms_reply_error(reply, req->path, 400, message);
        return;
    }
    mms_job *job = mms_job_new(run_embed, e, free_embed);
    if (!job) {
        free_embed(e);
        mms_reply_error(reply, req->path, 503, "out of memory");
        return;
    }
    run_job(srv, req, reply, job, 0);
}

/* ---- GET endpoints and routing ---- */

static void serve_models(mms_server *srv, mms_reply *reply)
{
    mmi_json_writer *w = &reply->body;
    const char *ids[] = {srv->model ? srv->model_id : NULL, srv->clip ? srv->clip_id : NULL};
    int first = 1;
    mmi_json_write_raw(w, "{\"object\":\"list\",\"data\":[");
    for (size_t i = 0; i < 2; i++) {
        if (!ids[i])
            continue;
        mmi_json_write_raw(w, first ? "{\"id\":" : ",{\"id\":");
        mmi_json_write_string(w, ids[i], strlen(ids[i]));
        mmi_json_write_raw(w, ",\"object\":\"model\",\"created\":0,\"owned_by\":\"libmm\"}");
        first = 0;
    }
    mmi_json_write_raw(w, "]}");
    reply->status = 200;
}

void mms_serve(void *app, mms_request *req, mms_reply *reply)
{
    mms_server *srv = app;
    static const struct {
        const char *method, *path;
        int endpoint;
    } routes[] = {
        {"GET", "/health", 0},   {"GET", "/v1/models", 1},      {"POST", "/v1/chat/completions", 2},
        {"POST", "/v1/messages", 3}, {"POST", "/v1/embeddings", 4},
    };
    int known_path = 0;
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        if (strcmp(req->path, routes[i].path) != 0)
            continue;
        known_path = 1;
        if (strcmp(req->method, routes[i].method) != 0)
            continue;
        if (srv->draining) {
            mms_reply_error(reply, req->path, 503, "the server is shutting down");
            return;
        }
        switch (routes[i].endpoint) {
        case 0:
            reply->status = 200;
            mmi_json_write_raw(&reply->body, "{\"status\":\"ok\"}");
            return;
        case 1: serve_models(srv, reply); return;
        case 2: serve_chat(srv, req, reply, MM_CHAT_API_OPENAI); return;
        case 3: serve_chat(srv, req, reply, MM_CHAT_API_ANTHROPIC); return;
        default: serve_embeddings(srv, req, reply); return;
        }
    }
    char message[160];
    if (known_path)
        snprintf(message, sizeof message, "%.16s is not allowed on %s", req->method, req->path);
    else
        snprintf(message, sizeof message, "no endpoint %.100s", req->path);
    mms_reply_error(reply, req->path, known_path ? 405 : 404, message);
}
