/* mm-chat-json: answer a request written as the OpenAI or Anthropic chat APIs take it.
 *
 *   mm-chat-json -m MODEL.gguf [--mmproj MMPROJ.gguf] [options] < request.json
 *   mm-chat-json -m MODEL.gguf [--mmproj MMPROJ.gguf] [options] -f request.json
 *
 * The request is a JSON array of messages or an object with "messages" (and optionally an
 * Anthropic "system"); images are inline data URLs or base64 sources, e.g.
 *   [{"role": "user", "content": [
 *       {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0..."}},
 *       {"type": "text", "text": "What is in this picture?"}]}]
 * The request's own settings (max_tokens, temperature, top_p, top_k, seed, stop) apply over the
 * options given here. The response object (OpenAI's chat.completion, or Anthropic's message
 * when the request is Anthropic-shaped) is printed to stdout. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "mm.h"

/* The whole of a stream, NUL-terminated, in *len bytes; NULL on failure. */
static char *read_all(FILE *f, size_t *len)
{
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        n += fread(buf + n, 1, cap - n - 1, f);
        if (n < cap - 1)
            break;
        char *bigger = realloc(buf, cap *= 2);
        if (!bigger)
            free(buf);
        buf = bigger;
    }
    if (!buf || ferror(f)) {
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

static int fail(const char *what, mm_status st)
{
    fprintf(stderr, "mm-chat-json: %s: %s: %s\n", what, mm_status_str(st), mm_last_error());
    return 1;
}

int main(int argc, char **argv)
{
    mm_options *opts;
    if (mm_options_create(&opts) != MM_OK)
        return 1;
    const char *file = NULL, *model_path = NULL, *mmproj_path = NULL, *positional[2];
    int verbose = 0;
    const arg_spec specs[] = {
        ARG_MODEL(&model_path),
        ARG_MMPROJ(&mmproj_path),
        {"-f, --file", "FILE", ARG_TEXT, &file, (mm_opt)0, 0, 0,
         "the request (default: standard input)"},
        ARG_N_PREDICT("256"),
        ARG_CTX,
        ARG_THREADS,
        ARG_TEMPLATE,
        ARG_SAMPLING,
        ARG_VERBOSE(&verbose),
    };
    arg_parser parser = {"mm-chat-json",
                         "-m MODEL.gguf [--mmproj MMPROJ.gguf] [options] [-f REQUEST.json]",
                         "Answer an OpenAI or Anthropic chat request (JSON) and print the API's "
                         "response object. The model files may also be given as MODEL.gguf "
                         "[MMPROJ.gguf] without -m.",
                         specs, sizeof specs / sizeof specs[0], opts, positional, 0, 2, 0};
    int rc = args_parse(&parser, argc, argv);
    if (rc < 0)
        rc = args_model_files(&parser, &model_path, &mmproj_path);
    if (rc >= 0)
        return rc;
    if (!model_path)
        return args_refuse(&parser, "-m", "the model file is required");
    if (verbose)
        mm_set_log(args_print_log, NULL, MM_LOG_INFO);
    mm_options_set_progress(opts, args_progress, NULL);
    mm_status st;

    FILE *in = file ? fopen(file, "rb") : stdin;
    size_t len = 0;
    char *json = in ? read_all(in, &len) : NULL;
    if (in && in != stdin)
        fclose(in);
    if (!json) {
        fprintf(stderr, "mm-chat-json: cannot read %s\n", file ? file : "standard input");
        return 1;
    }

    mm_chat_request *request = NULL;
    mm_model *model = NULL;
    mm_session *session = NULL;
    const char *response;
    rc = 1;
    if ((st = mm_chat_request_parse(json, len, &request)) != MM_OK)
        rc = fail(file ? file : "request", st);
    else if ((st = mm_model_load(model_path, mmproj_path, opts, &model)) != MM_OK)
        rc = fail(model_path, st);
    else if ((st = mm_session_create(model, opts, &session)) != MM_OK)
        rc = fail("session", st);
    else if ((st = mm_session_add_chat_request(session, request, opts)) != MM_OK)
        rc = fail(file ? file : "request", st);
    else if ((st = mm_session_generate_response(session, request, opts, NULL, NULL, &response,
                                                NULL)) != MM_OK)
        rc = fail("generation", st);
    else {
        puts(response);
        rc = 0;
    }
    mm_session_free(session);
    mm_chat_request_free(request);
    mm_model_free(model);
    mm_options_free(opts);
    free(json);
    return rc;
}
