/* The HTTP layer on libmicrohttpd: one thread per connection (a handler may block while its job
 * runs), request bodies gathered up to a cap, the checks every endpoint shares (API key, body
 * size, content type, how long a request may take to arrive), and replies whole or streamed. */
#include <microhttpd.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "server.h"

#include "alloc.h"

struct mms_http {
    struct MHD_Daemon *daemon;
    mms_http_config config;
    mms_handler handler;
    void *app;
    pthread_mutex_t mu;
    unsigned in_flight;
};

/* One request on a connection, from its headers to the end of its reply. */
typedef struct {
    char *body;           /* the request body as it arrives, NUL-terminated */
    size_t len;
    struct timespec arrived;
    int refusal;          /* an error status decided from the headers, sent after the body */
    char message[128];    /* its message */
    size_t discarded;     /* body bytes read and dropped, for a refused request */
    int answered;
} request_state;

static double seconds_since(const struct timespec *t)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - t->tv_sec) + 1e-9 * (double)(now.tv_nsec - t->tv_nsec);
}

int mms_http_client_gone(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLRDHUP};
    return poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL));
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    mms_reply *reply = cls;
    (void)pos;
    ssize_t n = reply->read(reply->stream, buf, max);
    return n > 0 ? n : n == 0 ? MHD_CONTENT_READER_END_OF_STREAM
                             : MHD_CONTENT_READER_END_WITH_ERROR;
}

static void stream_close(void *cls)
{
    mms_reply *reply = cls;
    reply->close(reply->stream);
    free(reply);
}

static enum MHD_Result send_reply(struct MHD_Connection *conn, mms_reply *reply)
{
    struct MHD_Response *response;
    mms_reply *streamed = NULL;
    if (reply->stream) {
        streamed = malloc(sizeof *streamed);
        if (!streamed) {
            reply->close(reply->stream);
            return MHD_NO;
        }
        *streamed = *reply;
        response = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_read,
                                                     streamed, stream_close);
        if (!response) {
            stream_close(streamed);
            return MHD_NO;
        }
        MHD_add_response_header(response, "Cache-Control", "no-cache");
    } else {
        response = reply->body.status == MM_OK
                       ? MHD_create_response_from_buffer(reply->body.len, reply->body.data,
                                                         MHD_RESPMEM_MUST_COPY)
                       : NULL;
        mmi_free(reply->body.data);
        if (!response)
            return MHD_NO;
    }
    MHD_add_response_header(response, "Content-Type",
                            reply->content_type ? reply->content_type : "application/json");
    if (reply->retry_after > 0) {
        char seconds[16];
        snprintf(seconds, sizeof seconds, "%d", reply->retry_after);
        MHD_add_response_header(response, "Retry-After", seconds);
    }
    enum MHD_Result ok = MHD_queue_response(conn, (unsigned)reply->status, response);
    MHD_destroy_response(response);
    return ok;
}

/* A request refused from its headers: the reply is sent once its body has been read (and
 * dropped), since a client still sending would not see a reply sent earlier. */
static enum MHD_Result refuse(request_state *rs, int status, const char *message)
{
    rs->refusal = status;
    snprintf(rs->message, sizeof rs->message, "%s", message);
    return MHD_YES;
}

/* Constant-time comparison, so the key cannot be guessed a byte at a time from timings. */
static int same_key(const char *given, const char *key)
{
    size_t n = strlen(key), m = strlen(given);
    unsigned diff = (unsigned)(n ^ m);
    for (size_t i = 0; i < n; i++)
        diff |= (unsigned char)key[i] ^ (unsigned char)given[i < m ? i : 0];
    return diff == 0;
}

/* The checks made on the headers, before any of the body is read. */
static enum MHD_Result check_headers(mms_http *h, struct MHD_Connection *conn,
                                     request_state *rs, const char *path, const char *method)
{
    if (h->config.api_key && strcmp(path, "/health") != 0) {
        const char *auth = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization");
        const char *key = auth && strncasecmp(auth, "Bearer ", 7) == 0 ? auth + 7 : NULL;
        if (!key)  /* Anthropic's clients send the key as x-api-key */
            key = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "x-api-key");
        if (!key || !same_key(key, h->config.api_key))
            return refuse(rs, 401, "invalid or missing API key (Authorization: Bearer KEY)");
    }
    if (strcmp(method, "POST") != 0)
        return MHD_YES;
    const char *length = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
    unsigned long long declared = length ? strtoull(length, NULL, 10) : 0;
    if (declared > h->config.max_body) {
        char message[96];
        snprintf(message, sizeof message, "request body of %llu bytes is over the limit of %zu",
                 declared, h->config.max_body);
        if (declared > 4 * (unsigned long long)h->config.max_body) { /* not worth reading */
            mms_reply reply = {0};
            mms_reply_error(&reply, path, 413, message);
            rs->answered = 1;
            return send_reply(conn, &reply);
        }
        return refuse(rs, 413, message);
    }
    const char *type = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Type");
    size_t type_len = type ? strcspn(type, "; \t") : 0;
    if (!type || type_len != 16 || strncasecmp(type, "application/json", 16) != 0)
        return refuse(rs, 415, "the request body must be application/json");
    return MHD_YES;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **con_cls)
{
    mms_http *h = cls;
    request_state *rs = *con_cls;
    (void)version;
    if (!rs) { /* headers received */
        if (!(rs = calloc(1, sizeof *rs)))
            return MHD_NO;
        *con_cls = rs;
        clock_gettime(CLOCK_MONOTONIC, &rs->arrived);
        pthread_mutex_lock(&h->mu);
        h->in_flight++;
        pthread_mutex_unlock(&h->mu);
        return check_headers(h, conn, rs, url, method);
    }
    if (rs->answered)
        return MHD_NO; /* the client sent a body after its refusal: drop the connection */
    if (*upload_data_size) {
        /* Trickling in slower than the timeout allows, or a body larger than declared (or
         * chunked) far over the cap: close the connection; no reply can be sent mid-body. */
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (seconds_since(&rs->arrived) > h->config.timeout_s ||
            rs->discarded + n > 4 * h->config.max_body)
            return MHD_NO;
        if (!rs->refusal && rs->len + n > h->config.max_body)
            refuse(rs, 413, "request body over the size limit");
        if (rs->refusal) {
            rs->discarded += n;
            return MHD_YES;
        }
        char *body = realloc(rs->body, rs->len + n + 1);
        if (!body)
            return MHD_NO;
        memcpy(body + rs->len, upload_data, n);
        rs->body = body;
        rs->len += n;
        body[rs->len] = '\0';
        return MHD_YES;
    }
    if (rs->refusal) {
        mms_reply reply = {0};
        mms_reply_error(&reply, url, rs->refusal, rs->message);
        rs->answered = 1;
        return send_reply(conn, &reply);
    }
    /* The whole request is in: the handler may block while its job runs, so the idle timeout
     * is off until the reply is done (on_completed turns it back on). */
    MHD_set_connection_option(conn, MHD_CONNECTION_OPTION_TIMEOUT, 0);
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    mms_request req = {.method = method, .path = url, .body = rs->body ? rs->body : "",
                       .len = rs->len, .fd = info ? info->connect_fd : -1};
    mms_reply reply = {0};
    h->handler(h->app, &req, &reply);
    rs->answered = 1;
    return send_reply(conn, &reply);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode why)
{
    mms_http *h = cls;
    request_state *rs = *con_cls;
    (void)why;
    if (!rs)
        return;
    MHD_set_connection_option(conn, MHD_CONNECTION_OPTION_TIMEOUT, h->config.timeout_s);
    free(rs->body);
    free(rs);
    *con_cls = NULL;
    pthread_mutex_lock(&h->mu);
    h->in_flight--;
    pthread_mutex_unlock(&h->mu);
}

int mms_http_start(const mms_http_config *config, mms_handler handler, void *app,
                   mms_http **out, char *err, size_t err_size)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *addr = NULL;
    char port[8];
    snprintf(port, sizeof port, "%d", config->port);
    int rc = getaddrinfo(config->host, port, &hints, &addr);
    if (rc != 0) {
        snprintf(err, err_size, "cannot resolve host %s: %s", config->host, gai_strerror(rc));
        return 0;
    }
    mms_http *h = calloc(1, sizeof *h);
    if (!h) {
        freeaddrinfo(addr);
        snprintf(err, err_size, "out of memory");
        return 0;
    }
    h->config = *config;
    h->handler = handler;
    h->app = app;
    pthread_mutex_init(&h->mu, NULL);
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
                     MHD_USE_ITC | MHD_USE_POLL;
    if (addr->ai_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    h->daemon = MHD_start_daemon(
        flags, (uint16_t)config->port, NULL, NULL, on_request, h,
        MHD_OPTION_SOCK_ADDR, addr->ai_addr,
        MHD_OPTION_CONNECTION_TIMEOUT, config->timeout_s,
        MHD_OPTION_CONNECTION_LIMIT, config->max_connections,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, h,
        MHD_OPTION_END);
    freeaddrinfo(addr);
    if (!h->daemon) {
        snprintf(err, err_size, "cannot listen on %s:%d (in use, or not an address here?)",
                 config->host, config->port);
        pthread_mutex_destroy(&h->mu);
        free(h);
        return 0;
    }
    *out = h;
    return 1;
}

int mms_http_port(const mms_http *h)
{
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(h->daemon, MHD_DAEMON_INFO_BIND_PORT);
    return info ? info->port : -1;
}

void mms_http_quiesce(mms_http *h)
{
    MHD_socket listener = MHD_quiesce_daemon(h->daemon);
    if (listener != MHD_INVALID_SOCKET)
        close(listener);
}

unsigned mms_http_in_flight(mms_http *h)
{
    pthread_mutex_lock(&h->mu);
    unsigned n = h->in_flight;
    pthread_mutex_unlock(&h->mu);
    return n;
}

void mms_http_stop(mms_http *h)
{
    if (!h)
        return;
    MHD_stop_daemon(h->daemon);
    pthread_mutex_destroy(&h->mu);
    free(h);
}
