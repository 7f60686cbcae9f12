/* mm-server: serve a libmm model over HTTP with the OpenAI and Anthropic APIs.
 *
 *   mm-server -m MODEL.gguf [--mmproj VISION.gguf] [--clip CLIP.gguf] [options]
 *
 * Endpoints: POST /v1/chat/completions, POST /v1/messages (Anthropic), POST /v1/embeddings (the
 * CLIP file: text, or images as data URLs), GET /v1/models, GET /health. Prints
 * "listening on http://HOST:PORT" once it serves; SIGTERM or SIGINT lets running requests
 * finish, then exits. Options are llama-server's where it has them (--help). */
#include <errno.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "server.h"

typedef struct {
    const char *model, *mmproj, *clip, *host, *api_key, *alias;
    long port, parallel, queue, n_ctx, threads, timeout, max_body_mib, max_tokens, n_predict,
        image_max_side, image_max_pixels;
} server_args;

static void usage(FILE *f)
{
    fputs("usage: mm-server -m MODEL.gguf [--mmproj VISION.gguf] [--clip CLIP.gguf] [options]\n"
          "  -m, --model FILE        language model, or a CLIP file to serve embeddings only\n"
          "      --mmproj FILE       the language model's vision file\n"
          "      --clip FILE         a CLIP dual encoder for /v1/embeddings\n"
          "      --host ADDR         address to listen on (default 127.0.0.1)\n"
          "      --port N            port (default 8080; 0: any free port)\n"
          "  -np, --parallel N       requests worked on at once, one session each (default 1)\n"
          "      --queue N           requests waiting beyond those; more get 503 (default 16)\n"
          "  -c, --ctx-size N        context per session (default: the model's)\n"
          "  -t, --threads N         threads per session (default: CPUs / parallel)\n"
          "  -n, --n-predict N       max_tokens when a request gives none (default 256)\n"
          "      --max-tokens N      largest max_tokens a request may ask (default 4096)\n"
          "      --api-key KEY       require \"Authorization: Bearer KEY\" (not for /health)\n"
          "      --timeout S         idle connection timeout, and the most a request may take\n"
          "                          to arrive, in seconds (default 30)\n"
          "      --max-body MIB      largest request body in MiB (default 32)\n"
          "      --image-max-side N  largest image width or height (default 4096)\n"
          "      --image-max-pixels N  largest width*height (default 16777216)\n"
          "  -a, --alias NAME        model name in /v1/models (default: the file's name)\n"
          "  -h, --help\n", f);
}

/* A whole number in [lo, hi], or a message and 0. */
static int number(const char *name, const char *text, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = text ? strtol(text, &end, 10) : 0;
    if (!text || errno || end == text || *end || v < lo || v > hi) {
        fprintf(stderr, "mm-server: %s: a whole number in [%ld, %ld] expected, got '%s'\n",
                name, lo, hi, text ? text : "");
        return 0;
    }
    *out = v;
    return 1;
}

static int parse_args(int argc, char **argv, server_args *a)
{
    *a = (server_args){.host = "127.0.0.1", .port = 8080, .parallel = 1, .queue = 16,
                       .timeout = 30, .max_body_mib = 32, .max_tokens = 4096, .n_predict = 256,
                       .image_max_side = 4096, .image_max_pixels = 16777216};
    static const struct {
        const char *short_name, *long_name;
        size_t field;  /* offsetof in server_args */
        int is_number; /* a long in [lo, hi], else a string */
        long lo, hi;
    } opts[] = {
#define S(f) offsetof(server_args, f), 0, 0, 0
#define N(f, lo, hi) offsetof(server_args, f), 1, lo, hi
        {"-m", "--model", S(model)},
        {NULL, "--mmproj", S(mmproj)},
        {NULL, "--clip", S(clip)},
        {NULL, "--host", S(host)},
        {NULL, "--api-key", S(api_key)},
        {"-a", "--alias", S(alias)},
        {NULL, "--port", N(port, 0, 65535)},
        {"-np", "--parallel", N(parallel, 1, 64)},
        {NULL, "--queue", N(queue, 0, 4096)},
        {"-c", "--ctx-size", N(n_ctx, 0, 1 << 24)},
        {"-t", "--threads", N(threads, 0, 1024)},
        {NULL, "--timeout", N(timeout, 1, 86400)},
        {NULL, "--max-body", N(max_body_mib, 1, 4096)},
        {NULL, "--max-tokens", N(max_tokens, 1, 1 << 24)},
        {"-n", "--n-predict", N(n_predict, 1, 1 << 24)},
        {NULL, "--image-max-side", N(image_max_side, 1, 1 << 20)},
        {NULL, "--image-max-pixels", N(image_max_pixels, 1, 1L << 30)},
#undef S
#undef N
    };
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            exit(0);
        }
        size_t k = 0, n_opts = sizeof opts / sizeof opts[0];
        while (k < n_opts && !((opts[k].short_name && !strcmp(argv[i], opts[k].short_name)) ||
                               !strcmp(argv[i], opts[k].long_name)))
            k++;
        if (k == n_opts) {
            fprintf(stderr, "mm-server: unknown option '%s' (--help lists them)\n", argv[i]);
            return 0;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "mm-server: %s needs a value\n", argv[i]);
            return 0;
        }
        const char *value = argv[++i];
        void *field = (char *)a + opts[k].field;
        if (!opts[k].is_number)
            *(const char **)field = value;
        else if (!number(opts[k].long_name, value, opts[k].lo, opts[k].hi, field))
            return 0;
    }
    if (!a->model && !a->clip) {
        fprintf(stderr, "mm-server: no model: give -m MODEL.gguf (or --clip CLIP.gguf)\n");
        return 0;
    }
    if (a->n_predict > a->max_tokens) {
        fprintf(stderr, "mm-server: --n-predict %ld is over --max-tokens %ld\n", a->n_predict,
                a->max_tokens);
        return 0;
    }
    return 1;
}

static const char *file_name(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

static mm_model *load(const char *path, const char *mmproj, const mm_options *options)
{
    mm_model *model = NULL;
    mm_status st = mm_model_load(path, mmproj, options, &model);
    if (st != MM_OK)
        fprintf(stderr, "mm-server: %s: %s: %s\n", path, mm_status_str(st), mm_last_error());
    return model;
}

int main(int argc, char **argv)
{
    server_args a;
    if (!parse_args(argc, argv, &a)) {
        usage(stderr);
        return 2;
    }
    /* Signals are taken by sigwait below, never by the serving threads started after this. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    signal(SIGPIPE, SIG_IGN);

    mms_server srv = {.max_tokens = (int)a.max_tokens};
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    long threads = a.threads ? a.threads : cpus > a.parallel ? cpus / a.parallel : 1;
    if (mm_options_create(&srv.options) != MM_OK ||
        mm_options_set_int(srv.options, MM_OPT_N_THREADS, threads) != MM_OK ||
        mm_options_set_int(srv.options, MM_OPT_N_CTX, a.n_ctx) != MM_OK ||
        mm_options_set_int(srv.options, MM_OPT_MAX_TOKENS, a.n_predict) != MM_OK ||
        mm_options_set_int(srv.options, MM_OPT_IMAGE_MAX_SIDE, a.image_max_side) != MM_OK ||
        mm_options_set_int(srv.options, MM_OPT_IMAGE_MAX_PIXELS, a.image_max_pixels) != MM_OK) {
        fprintf(stderr, "mm-server: options: %s\n", mm_last_error());
        return 1;
    }
    int rc = 1;
    mms_http *http = NULL;
    int queue_started = 0;
    if (a.model && !(srv.model = load(a.model, a.mmproj, srv.options)))
        goto done;
    if (a.clip && !(srv.clip = load(a.clip, NULL, srv.options)))
        goto done;
    if (srv.model && !a.mmproj && !a.clip && mm_clip_embedding_size(srv.model)) {
        srv.clip = srv.model; /* -m named a CLIP file: embeddings only */
        srv.model = NULL;
    }
    srv.model_id = a.alias ? a.alias : a.model ? file_name(a.model) : NULL;
    srv.clip_id = a.clip ? file_name(a.clip) : srv.model_id;

    char err[256];
    if (!mms_queue_start(&srv.queue, srv.model, srv.options, (unsigned)a.parallel,
                         (unsigned)a.queue, err, sizeof err)) {
        fprintf(stderr, "mm-server: %s\n", err);
        goto done;
    }
    queue_started = 1;
    mms_http_config config = {
        .host = a.host, .port = (int)a.port, .timeout_s = (unsigned)a.timeout,
        .max_body = (size_t)a.max_body_mib << 20, .api_key = a.api_key,
        /* connections beyond the slots and the queue only wait to be refused */
        .max_connections = (unsigned)(a.parallel + a.queue + 16),
    };
    if (!mms_http_start(&config, mms_serve, &srv, &http, err, sizeof err)) {
        fprintf(stderr, "mm-server: %s\n", err);
        goto done;
    }
    printf("mm-server: listening on http://%s:%d (%ld parallel, %ld queued, %ld threads each)\n",
           a.host, mms_http_port(http), a.parallel, a.queue, threads);
    fflush(stdout);

    int sig = 0;
    while (sigwait(&stop, &sig) != 0)
        ;
    fprintf(stderr, "mm-server: signal %d: finishing the requests under way\n", sig);
    srv.draining = 1;
    mms_http_quiesce(http);
    while (mms_http_in_flight(http) > 0)
        usleep(20 * 1000);
    rc = 0;
done:
    mms_http_stop(http);
    if (queue_started)
        mms_queue_stop(&srv.queue);
    if (srv.clip != srv.model)
        mm_model_free(srv.clip);
    mm_model_free(srv.model);
    mm_options_free(srv.options);
    if (rc == 0)
        fprintf(stderr, "mm-server: stopped\n");
    return rc;
}
