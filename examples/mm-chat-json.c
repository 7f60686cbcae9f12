/* mm-chat-json: answer a conversation written as the OpenAI or Anthropic chat APIs take it.
 *
 *   mm-chat-json [options] MODEL.gguf [MMPROJ.gguf] < conversation.json
 *   mm-chat-json [options] MODEL.gguf [MMPROJ.gguf] -f conversation.json
 *
 * The conversation is a JSON array of messages or an object with "messages" (and optionally an
 * Anthropic "system"); images are inline data URLs or base64 sources, e.g.
 *   [{"role": "user", "content": [
 *       {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0..."}},
 *       {"type": "text", "text": "What is in this picture?"}]}]
 * The request's own settings (max_tokens, temperature, top_p, top_k, seed, stop) apply over the
 * options given here. The response object (OpenAI's chat.completion, or Anthropic's message
 * when the request is Anthropic-shaped) is printed to stdout. Options: -n MAX_TOKENS,
 * -t TEMPERATURE, -s SEED, -c N_CTX, -T TEMPLATE (llava, chatml, llama2, raw). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mm.h"

static int show_progress(void *user, mm_progress_stage stage, uint64_t done, uint64_t total)
{
    static const char *names[] = {"", "loading", "encoding image"};
    (void)user;
    fprintf(stderr, "\r%s: %3d%%", names[stage], total ? (int)(100 * done / total) : 100);
    if (done == total)
        fputs("\r\033[K", stderr); /* done: clear the line */
    return 0;
}

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

static int usage(const char *argv0)
{
    fprintf(stderr, "usage: %s [-n max_tokens] [-t temperature] [-s seed] [-c n_ctx] "
                    "[-T template] [-f conversation.json] MODEL.gguf [MMPROJ.gguf]\n", argv0);
    return 2;
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
    const char *file = NULL;
    mm_status st = MM_OK;
    int opt;
    while ((opt = getopt(argc, argv, "n:t:s:c:T:f:")) != -1 && st == MM_OK) {
        switch (opt) {
        case 'n': st = mm_options_set_int(opts, MM_OPT_MAX_TOKENS, atoll(optarg)); break;
        case 't': st = mm_options_set_float(opts, MM_OPT_TEMPERATURE, atof(optarg)); break;
        case 's': st = mm_options_set_int(opts, MM_OPT_SEED, atoll(optarg)); break;
        case 'c': st = mm_options_set_int(opts, MM_OPT_N_CTX, atoll(optarg)); break;
        case 'T': st = mm_options_set_string(opts, MM_OPT_CHAT_TEMPLATE, optarg); break;
        case 'f': file = optarg; break;
        default: return usage(argv[0]);
        }
    }
    if (st != MM_OK)
        return fail("option", st);
    if (optind >= argc || argc - optind > 2)
        return usage(argv[0]);
    if (isatty(STDERR_FILENO))
        mm_options_set_progress(opts, show_progress, NULL);

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
    int rc = 1;
    if ((st = mm_chat_request_parse(json, len, &request)) != MM_OK)
        rc = fail(file ? file : "request", st);
    else if ((st = mm_model_load(argv[optind], optind + 1 < argc ? argv[optind + 1] : NULL,
                                 opts, &model)) != MM_OK)
        rc = fail(argv[optind], st);
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
