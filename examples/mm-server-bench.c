/* mm-server-bench: the same chat requests answered by a running mm-server over HTTP, or
 * in this process with the C API, by N concurrent clients / sessions; prints requests per
 * second and the latency percentiles (tools/server_bench.sh compares the two).
 *
 *   mm-server-bench -u http://127.0.0.1:PORT [-p SERVER_PID] -np N -r REQUESTS FILE.json...
 *   mm-server-bench -m MODEL.gguf [--mmproj VISION.gguf] -np N -r REQUESTS FILE.json...
 *
 * Besides wall-clock figures it prints the CPU time spent per request (this process's, or with
 * -p the server's, from /proc): on a machine shared with other work that is the steadier
 * measure of what serving over HTTP costs.
 * Each FILE is one POST /v1/chat/completions body; the REQUESTS requests cycle through them.
 * In-process, each of the N threads has its own session (one libmm thread each, as the server
 * runs with -t 1) on the one model and does what the server does per request: parse the
 * request, reset the session, add the conversation, generate the response object. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "args.h"
#include "mm.h"

typedef struct {
    char *text;
    size_t len;
} body;

typedef struct {
    const body *bodies;
    int n_bodies, n_requests;
    atomic_int next;      /* the next request to take */
    double *latency_ms;   /* per request */
    atomic_int failures;
    struct sockaddr_in server;
    mm_model *model;      /* in-process; NULL: over HTTP */
    pthread_barrier_t ready; /* the clock starts once every client is connected and warm */
} bench;

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return 1e3 * (double)t.tv_sec + 1e-6 * (double)t.tv_nsec;
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t k = write(fd, p, n);
        if (k <= 0)
            return 0;
        p += k;
        n -= (size_t)k;
    }
    return 1;
}

/* One request on a kept-alive connection; the status, or 0 when the connection failed. */
static int http_request(int fd, const body *b, char *buf, size_t cap)
{
    char head[256];
    int n = snprintf(head, sizeof head, "POST /v1/chat/completions HTTP/1.1\r\nHost: bench\r\n"
                     "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n", b->len);
    if (!write_all(fd, head, (size_t)n) || !write_all(fd, b->text, b->len))
        return 0;
    size_t got = 0;
    char *end = NULL;
    while (!(end = strstr(buf, "\r\n\r\n"))) { /* the headers */
        ssize_t k = read(fd, buf + got, cap - 1 - got);
        if (k <= 0)
            return 0;
        got += (size_t)k;
        buf[got] = '\0';
    }
    int status = atoi(buf + 9);
    const char *cl = strstr(buf, "Content-Length: ");
    if (!cl)
        cl = strstr(buf, "content-length: ");
    size_t want = (size_t)(end + 4 - buf) + (cl ? strtoul(cl + 16, NULL, 10) : 0);
    while (got < want && got < cap - 1) { /* the body */
        ssize_t k = read(fd, buf + got, cap - 1 - got);
        if (k <= 0)
            return 0;
        got += (size_t)k;
    }
    return status;
}

static int connect_to(const struct sockaddr_in *server)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    /* no Nagle delay between the headers and the body written after them */
    if (fd >= 0)
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (fd >= 0 && connect(fd, (const struct sockaddr *)server, sizeof *server) != 0) {
        close(fd);
        fd = -1;
    }
    return fd;
}

/* One request, in-process (session) or over the connection fd; whether it succeeded. */
static int run_one(const body *req, mm_session *session, const mm_options *opts, int fd,
                   char *buf, size_t cap)
{
    if (!session) {
        buf[0] = '\0';
        return fd >= 0 && http_request(fd, req, buf, cap) == 200;
    }
    mm_chat_request *r = NULL;
    const char *response;
    mm_session_reset(session);
    int ok = mm_chat_request_parse(req->text, req->len, &r) == MM_OK &&
             mm_session_add_chat_request(session, r, opts) == MM_OK &&
             mm_session_generate_response(session, r, opts, NULL, NULL, &response, NULL) ==
                 MM_OK;
    mm_chat_request_free(r);
    return ok;
}

static void *client_main(void *arg)
{
    bench *b = arg;
    static const size_t cap = 1 << 20;
    char *buf = malloc(cap);
    int fd = b->model ? -1 : connect_to(&b->server);
    mm_session *session = NULL;
    mm_options *opts = NULL;
    if (b->model && (mm_options_create(&opts) != MM_OK ||
                     mm_options_set_int(opts, MM_OPT_N_THREADS, 1) != MM_OK ||
                     mm_session_create(b->model, opts, &session) != MM_OK))
        fprintf(stderr, "mm-server-bench: session: %s\n", mm_last_error());
    int ready = buf && (b->model ? session != NULL : fd >= 0);
    if (ready) /* one untimed request, so that neither side is timed while it warms up */
        run_one(&b->bodies[0], session, opts, fd, buf, cap);
    pthread_barrier_wait(&b->ready);
    for (int i; (i = atomic_fetch_add(&b->next, 1)) < b->n_requests;) {
        double t0 = now_ms();
        int ok = ready && run_one(&b->bodies[i % b->n_bodies], session, opts, fd, buf, cap);
        b->latency_ms[i] = now_ms() - t0;
        if (!ok)
            atomic_fetch_add(&b->failures, 1);
    }
    if (fd >= 0)
        close(fd);
    mm_session_free(session);
    mm_options_free(opts);
    free(buf);
    return NULL;
}

static int by_value(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *text = NULL;
    long n = -1;
    if (f && fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0 &&
        (text = malloc((size_t)n + 1)) && fread(text, 1, (size_t)n, f) == (size_t)n) {
        text[n] = '\0';
        *len = (size_t)n;
    } else {
        free(text);
        text = NULL;
    }
    if (f)
        fclose(f);
    return text;
}

/* CPU seconds (user + system) used so far by process pid, or by this one for pid 0. */
static double cpu_seconds(long pid)
{
    if (pid == 0) {
        struct rusage u;
        getrusage(RUSAGE_SELF, &u);
        return (double)(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
               1e-6 * (double)(u.ru_utime.tv_usec + u.ru_stime.tv_usec);
    }
    char path[64], line[1024];
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    unsigned long utime = 0, stime = 0;
    const char *after_name = f && fgets(line, sizeof line, f) ? strrchr(line, ')') : NULL;
    /* fields 14 and 15 (utime, stime), counted from the state field, third overall */
    if (!after_name || sscanf(after_name + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu",
                              &utime, &stime) != 2)
        utime = stime = 0;
    if (f)
        fclose(f);
    return (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
}

int main(int argc, char **argv)
{
    static const char *files[4096];
    const char *url = NULL, *model_path = NULL, *mmproj = NULL;
    long long parallel = 1, n_requests = 100, server_pid = 0;
    const arg_spec specs[] = {
        {"-u, --url", "URL", ARG_TEXT, &url, (mm_opt)0, 0, 0,
         "a running mm-server, http://A.B.C.D:PORT"},
        {"-p, --pid", "PID", ARG_INT, &server_pid, (mm_opt)0, 1, 1 << 30,
         "the server's process, whose CPU time is then measured"},
        ARG_MODEL(&model_path),
        ARG_MMPROJ(&mmproj),
        {"-np, --parallel", "N", ARG_INT, &parallel, (mm_opt)0, 1, 256,
         "concurrent clients, or sessions in process (default 1)"},
        {"-r, --requests", "N", ARG_INT, &n_requests, (mm_opt)0, 1, 1 << 24,
         "requests in all (default 100)"},
    };
    arg_parser parser = {"mm-server-bench",
                         "(-u http://A.B.C.D:PORT [-p PID] | -m MODEL.gguf [--mmproj FILE]) "
                         "[-np N] [-r N] REQUEST.json...",
                         "The same chat requests through mm-server or in this process with the C "
                         "API: requests/s, latency, CPU time per request.",
                         specs, sizeof specs / sizeof specs[0], NULL, files, 1, 4096, 0};
    int rc = args_parse(&parser, argc, argv);
    if (rc < 0 && !url == !model_path)
        rc = args_refuse(&parser, "-u", "give either -u (a server) or -m (in process)");
    if (rc >= 0)
        return rc;
    bench b = {.n_bodies = parser.n_positional, .n_requests = (int)n_requests};
    body *bodies = calloc((size_t)b.n_bodies, sizeof *bodies);
    b.latency_ms = calloc((size_t)n_requests, sizeof *b.latency_ms);
    for (int k = 0; bodies && k < b.n_bodies; k++)
        if (!(bodies[k].text = read_file(files[k], &bodies[k].len))) {
            fprintf(stderr, "mm-server-bench: cannot read %s\n", files[k]);
            return 1;
        }
    b.bodies = bodies;
    if (url) {
        unsigned a, c, d, e, port;
        if (sscanf(url, "http://%u.%u.%u.%u:%u", &a, &c, &d, &e, &port) != 5)
            return args_refuse(&parser, "-u", "http://A.B.C.D:PORT expected");
        b.server.sin_family = AF_INET;
        b.server.sin_port = htons((uint16_t)port);
        b.server.sin_addr.s_addr = htonl(a << 24 | c << 16 | d << 8 | e);
    } else if (mm_model_load(model_path, mmproj, NULL, &b.model) != MM_OK) {
        fprintf(stderr, "mm-server-bench: %s: %s\n", model_path, mm_last_error());
        return 1;
    }

    pthread_t threads[256];
    pthread_barrier_init(&b.ready, NULL, (unsigned)parallel + 1);
    for (int k = 0; k < parallel; k++)
        pthread_create(&threads[k], NULL, client_main, &b);
    pthread_barrier_wait(&b.ready);
    double t0 = now_ms(), cpu0 = cpu_seconds(server_pid);
    for (int k = 0; k < parallel; k++)
        pthread_join(threads[k], NULL);
    double seconds = (now_ms() - t0) / 1e3, cpu = cpu_seconds(server_pid) - cpu0;
    qsort(b.latency_ms, (size_t)n_requests, sizeof *b.latency_ms, by_value);
    printf("%s parallel %d: %d requests in %.2f s, %.1f requests/s, latency p50 %.1f ms, "
           "p99 %.1f ms, CPU %.2f ms per request, %d failed\n", url ? "server " : "in-process",
           (int)parallel, b.n_requests, seconds, b.n_requests / seconds,
           b.latency_ms[b.n_requests / 2], b.latency_ms[(size_t)(0.99 * (b.n_requests - 1))],
           1e3 * cpu / b.n_requests,
           atomic_load(&b.failures));
    pthread_barrier_destroy(&b.ready);
    mm_model_free(b.model);
    for (int k = 0; k < b.n_bodies; k++)
        free(bodies[k].text);
    free(bodies);
    free(b.latency_ms);
    return atomic_load(&b.failures) ? 1 : 0;
}
