/* mm-server: serve a libmm model over HTTP with the OpenAI and Anthropic APIs.
 *
 *   mm-server -m MODEL.gguf [--mmproj VISION.gguf] [--clip CLIP.gguf] [options]
 *
 * Endpoints: POST /v1/chat/completions, POST /v1/messages (Anthropic), POST /v1/embeddings (the
 * CLIP file: text, or images as data URLs), GET /v1/models, GET /health. Prints
 * "listening on http://HOST:PORT" once it serves; SIGTERM or SIGINT lets running requests
 * finish, then exits. Options are llama-server's where it has them (--help). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "args.h" /* examples/args.h: the command line of every libmm program */
#include "server.h"

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
    mms_server srv = {0};
    if (mm_options_create(&srv.options) != MM_OK)
        return 1;
    /* the server's defaults, before the command line may change them */
    mm_options_set_int(srv.options, MM_OPT_MAX_TOKENS, 256);
    mm_options_set_int(srv.options, MM_OPT_IMAGE_MAX_SIDE, 4096);
    mm_options_set_int(srv.options, MM_OPT_IMAGE_MAX_PIXELS, 4096 * 4096);
    const char *model = NULL, *mmproj = NULL, *clip = NULL, *host = "127.0.0.1",
               *api_key = NULL, *alias = NULL;
    long long port = 8080, parallel = 1, queue = 16, threads = 0, timeout = 30, max_body = 32,
              max_tokens = 4096;
    int verbose = 0;
    const arg_spec specs[] = {
        ARG_MODEL(&model),
        ARG_MMPROJ(&mmproj),
        {"--clip", "FILE", ARG_TEXT, &clip, (mm_opt)0, 0, 0,
         "a CLIP dual encoder for /v1/embeddings (-m may also name a CLIP file alone)"},
        {"--host", "ADDR", ARG_TEXT, &host, (mm_opt)0, 0, 0,
         "address to listen on (default 127.0.0.1)"},
        {"--port", "N", ARG_INT, &port, (mm_opt)0, 0, 65535,
         "port (default 8080; 0: any free port)"},
        {"-np, --parallel", "N", ARG_INT, &parallel, (mm_opt)0, 1, 64,
         "requests worked on at once, one session each (default 1)"},
        {"--queue", "N", ARG_INT, &queue, (mm_opt)0, 0, 4096,
         "requests that wait for a session; more get 503 (default 16)"},
        {"-t, --threads", "N", ARG_INT, &threads, (mm_opt)0, 0, 1024,
         "threads per session (default: CPUs / parallel)"},
        ARG_CTX,
        ARG_N_PREDICT("256, for requests without max_tokens"),
        {"--max-tokens-limit", "N", ARG_INT, &max_tokens, (mm_opt)0, 1, 1 << 24,
         "the most max_tokens a request may ask (default 4096)"},
        ARG_TEMPLATE,
        ARG_SAMPLING,
        {"--api-key", "KEY", ARG_TEXT, &api_key, (mm_opt)0, 0, 0,
         "require \"Authorization: Bearer KEY\" (not for /health)"},
        {"--timeout", "S", ARG_INT, &timeout, (mm_opt)0, 1, 86400,
         "idle connection timeout, and the most a request may take to arrive (default 30)"},
        {"--max-body", "MIB", ARG_INT, &max_body, (mm_opt)0, 1, 4096,
         "largest request body in MiB (default 32)"},
        ARG_OPT("--image-max-side", "N", MM_OPT_IMAGE_MAX_SIDE,
                "largest image width or height (default 4096)"),
        ARG_OPT("--image-max-pixels", "N", MM_OPT_IMAGE_MAX_PIXELS,
                "largest image width x height (default 16777216)"),
        {"-a, --alias", "NAME", ARG_TEXT, &alias, (mm_opt)0, 0, 0,
         "the model's name in /v1/models (default: its file name)"},
        ARG_VERBOSE(&verbose),
    };
    arg_parser parser = {"mm-server", "-m MODEL.gguf [--mmproj VISION.gguf] [--clip CLIP.gguf] "
                         "[options]",
                         "Serve the model over HTTP: POST /v1/chat/completions, /v1/messages "
                         "(Anthropic), /v1/embeddings (CLIP); GET /v1/models, /health. Request "
                         "settings override the sampling options given here (docs/server.md).",
                         specs, sizeof specs / sizeof specs[0], srv.options, NULL, 0, 0, 0};
    int parsed = args_parse(&parser, argc, argv);
    int64_t n_predict = 0;
    mm_options_get_int(srv.options, MM_OPT_MAX_TOKENS, &n_predict);
    if (parsed < 0 && !model && !clip)
        parsed = args_refuse(&parser, "-m", "a model file is required (or --clip CLIP.gguf)");
    if (parsed < 0 && n_predict > max_tokens)
        parsed = args_refuse(&parser, "-n", "over --max-tokens-limit");
    if (parsed >= 0) {
        mm_options_free(srv.options);
        return parsed;
    }
    if (verbose)
        mm_set_log(args_print_log, NULL, MM_LOG_INFO);
    srv.max_tokens = (int)max_tokens;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    if (!threads)
        threads = cpus > parallel ? cpus / parallel : 1;
    mm_options_set_int(srv.options, MM_OPT_N_THREADS, threads);

    /* Signals are taken by sigwait below, never by the serving threads started after this. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    signal(SIGPIPE, SIG_IGN);

    int rc = 1;
    mms_http *http = NULL;
    int queue_started = 0;
    if (model && !(srv.model = load(model, mmproj, srv.options)))
        goto done;
    if (clip && !(srv.clip = load(clip, NULL, srv.options)))
        goto done;
    if (srv.model && !mmproj && !clip && mm_clip_embedding_size(srv.model)) {
        srv.clip = srv.model; /* -m named a CLIP file: embeddings only */
        srv.model = NULL;
    }
    srv.model_id = alias ? alias : model ? file_name(model) : NULL;
    srv.clip_id = clip ? file_name(clip) : srv.model_id;

    char err[256];
    if (!mms_queue_start(&srv.queue, srv.model, srv.options, (unsigned)parallel,
                         (unsigned)queue, err, sizeof err)) {
        fprintf(stderr, "mm-server: %s\n", err);
        goto done;
    }
    queue_started = 1;
    mms_http_config config = {
        .host = host, .port = (int)port, .timeout_s = (unsigned)timeout,
        .max_body = (size_t)max_body << 20, .api_key = api_key,
        /* connections beyond the slots and the queue only wait to be refused */
        .max_connections = (unsigned)(parallel + queue + 16),
    };
    if (!mms_http_start(&config, mms_serve, &srv, &http, err, sizeof err)) {
        fprintf(stderr, "mm-server: %s\n", err);
        goto done;
    }
    printf("mm-server: listening on http://%s:%d (%lld parallel, %lld queued, %lld threads "
           "each)\n", host, mms_http_port(http), parallel, queue, threads);
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
