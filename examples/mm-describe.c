/* mm-describe: ask a multimodal model about images or audio clips and stream its answer.
 *
 *   mm-describe -m model.gguf --mmproj mmproj.gguf -i photo.jpg [-i more.png] \
 *               [-a clip.wav] [-p "Describe this image."] [options]
 *
 * The images and clips, in command-line order, are encoded by the model's towers and placed
 * where the prompt has its "<image>" / "<audio>" / "<media>" markers (or before the prompt),
 * inside the model's chat template; the answer is printed as it is generated. Ctrl-C stops the
 * generation (mm_session_cancel from the signal handler). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mm.h"

#define MAX_MEDIA 16
#define MAX_STOPS 8

static mm_session *volatile current; /* for the Ctrl-C handler */
static volatile sig_atomic_t interrupted;

/* Stops the token in progress (between two layers) and the loop. */
static void on_interrupt(int sig)
{
    (void)sig;
    interrupted = 1;
    mm_session_cancel(current); /* an atomic store: safe in a signal handler */
}

static void usage(const char *argv0)
{
    fprintf(stderr,
            "usage: %s -m MODEL.gguf [--mmproj MMPROJ.gguf] [-i IMAGE]... [-a AUDIO]... "
            "[-p PROMPT]\n"
            "  -m, --model FILE        language model GGUF\n"
            "      --mmproj FILE       vision or audio GGUF (projector) that goes with it\n"
            "  -i, --image FILE        PNG or JPEG; repeat for several\n"
            "  -a, --audio FILE        WAV clip; repeat for several (up to %d media in all)\n"
            "  -p, --prompt TEXT       the question (default \"Describe this image.\", or\n"
            "                          \"Describe this audio.\" for clips alone); \"<image>\",\n"
            "                          \"<audio>\" or \"<media>\" marks where each goes\n"
            "  -s, --system TEXT       a system message first\n"
            "  -n, --max-tokens N      most tokens to generate (default 256)\n"
            "  -c, --ctx N             context size in tokens (default: the model's)\n"
            "  -t, --threads N         compute threads (default: all cores)\n"
            "      --template NAME     llava, vicuna, chatml, llama2 or raw (default: model's)\n"
            "      --temp F            temperature, 0 = greedy (default 0)\n"
            "      --top-k N           keep the N most likely tokens (0 = off)\n"
            "      --top-p F           nucleus sampling (1 = off)\n"
            "      --min-p F           drop tokens below F x the most likely (0 = off)\n"
            "      --repeat-penalty F  penalty for repeated tokens (1 = off)\n"
            "      --repeat-last-n N   tokens the penalty looks back on (default 64)\n"
            "      --seed N            sampler seed (default 0)\n"
            "      --stop TEXT         stop when the answer contains TEXT (repeatable)\n"
            "  -v, --verbose           library log messages on stderr\n",
            argv0, MAX_MEDIA);
}

static void print_log(void *user, mm_log_level level, const char *message)
{
    static const char *const names[] = {"debug", "info", "warn", "error"};
    (void)user;
    fprintf(stderr, "[libmm %s] %s\n", names[level], message);
}

/* The progress line on a terminal: "loading  42%", rewritten in place, erased when done. */
static int show_progress(void *user, mm_progress_stage stage, uint64_t done, uint64_t total)
{
    static const char *const names[] = {"", "loading", "encoding image"};
    (void)user;
    if (done >= total)
        fputs("\r\033[K", stderr);
    else
        fprintf(stderr, "\r%s %3d%%", names[stage], (int)(100 * done / total));
    return 0;
}

static int fail(const char *what, mm_status st)
{
    fprintf(stderr, "mm-describe: %s: %s: %s\n", what, mm_status_str(st), mm_last_error());
    return 1;
}

/* Set an option from a flag's text; returns 0 if the value does not parse or is refused. */
static int set_option(mm_options *o, mm_opt key, const char *value)
{
    char *end;
    mm_opt_type type;
    if (mm_option_type(key, &type) != MM_OK)
        return 0;
    if (type == MM_OPT_TYPE_STRING)
        return mm_options_set_string(o, key, value) == MM_OK;
    if (type == MM_OPT_TYPE_INT) {
        long long v = strtoll(value, &end, 10);
        return *value && !*end && mm_options_set_int(o, key, v) == MM_OK;
    }
    double v = strtod(value, &end);
    return *value && !*end && mm_options_set_float(o, key, v) == MM_OK;
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
    static const struct { const char *flag; mm_opt key; } option_flags[] = {
        {"-n", MM_OPT_MAX_TOKENS}, {"--max-tokens", MM_OPT_MAX_TOKENS},
        {"-c", MM_OPT_N_CTX}, {"--ctx", MM_OPT_N_CTX},
        {"-t", MM_OPT_N_THREADS}, {"--threads", MM_OPT_N_THREADS},
        {"--template", MM_OPT_CHAT_TEMPLATE}, {"--temp", MM_OPT_TEMPERATURE},
        {"--top-k", MM_OPT_TOP_K}, {"--top-p", MM_OPT_TOP_P}, {"--min-p", MM_OPT_MIN_P},
        {"--repeat-penalty", MM_OPT_REPEAT_PENALTY}, {"--repeat-last-n", MM_OPT_REPEAT_LAST_N},
        {"--seed", MM_OPT_SEED},
    };
    const char *model_path = NULL, *mmproj_path = NULL, *system = NULL;
    const char *prompt = NULL;
    const char *media_paths[MAX_MEDIA], *stops[MAX_STOPS];
    int is_audio[MAX_MEDIA], n_media = 0, n_images = 0, n_stops = 0;
    mm_options *options;
    mm_status st = mm_options_create(&options);
    if (st != MM_OK)
        return fail("options", st);

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *value = i + 1 < argc ? argv[i + 1] : NULL;
        size_t k, n_flags = sizeof option_flags / sizeof option_flags[0];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(argv[0]);
            return 0;
        }
        if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) {
            mm_set_log(print_log, NULL, MM_LOG_INFO);
            continue;
        }
        if (!value) {
            fprintf(stderr, "mm-describe: %s needs a value (or is unknown)\n", a);
            return 2;
        }
        i++;
        for (k = 0; k < n_flags && strcmp(a, option_flags[k].flag) != 0; k++)
            ;
        if (k < n_flags) {
            if (!set_option(options, option_flags[k].key, value)) {
                fprintf(stderr, "mm-describe: %s %s: %s\n", a, value, mm_last_error());
                return 2;
            }
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            model_path = value;
        } else if (!strcmp(a, "--mmproj")) {
            mmproj_path = value;
        } else if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) {
            prompt = value;
        } else if (!strcmp(a, "-s") || !strcmp(a, "--system")) {
            system = value;
        } else if ((!strcmp(a, "-i") || !strcmp(a, "--image") || !strcmp(a, "-a") ||
                    !strcmp(a, "--audio")) && n_media < MAX_MEDIA) {
            is_audio[n_media] = !strcmp(a, "-a") || !strcmp(a, "--audio");
            n_images += !is_audio[n_media];
            media_paths[n_media++] = value;
        } else if (!strcmp(a, "--stop") && n_stops < MAX_STOPS) {
            stops[n_stops++] = value;
        } else {
            fprintf(stderr, "mm-describe: unknown or repeated too often: %s\n", a);
            usage(argv[0]);
            return 2;
        }
    }
    if (!model_path) {
        usage(argv[0]);
        return 2;
    }
    if (isatty(STDERR_FILENO))
        mm_options_set_progress(options, show_progress, NULL);

    mm_model *model;
    if ((st = mm_model_load(model_path, mmproj_path, options, &model)) != MM_OK)
        return fail("loading the model", st);
    mm_session *session;
    if ((st = mm_session_create(model, options, &session)) != MM_OK)
        return fail("creating a session", st);
    for (int i = 0; i < n_stops; i++)
        if ((st = mm_session_add_stop_string(session, stops[i])) != MM_OK)
            return fail("stop string", st);

    if (!prompt)
        prompt = n_media > n_images && n_images == 0 ? "Describe this audio."
                                                     : "Describe this image.";
    /* Each file read as what its flag says, then wrapped as a media item. */
    mm_image *images[MAX_MEDIA] = {0};
    mm_audio *clips[MAX_MEDIA] = {0};
    mm_media *media[MAX_MEDIA];
    for (int i = 0; i < n_media; i++) {
        st = is_audio[i] ? mm_audio_load_file(media_paths[i], options, &clips[i])
                         : mm_image_load_file(media_paths[i], options, &images[i]);
        if (st == MM_OK)
            st = is_audio[i] ? mm_media_from_audio(clips[i], &media[i])
                             : mm_media_from_image(images[i], &media[i]);
        if (st != MM_OK)
            return fail(media_paths[i], st);
    }

    current = session;
    signal(SIGINT, on_interrupt);
    double t0 = now();
    if (system && (st = mm_session_add_message(session, "system", system, strlen(system))) != 0)
        return fail("system message", st);
    /* Encodes the media with the model's towers, then evaluates the whole message. */
    st = mm_session_add_message_media(session, "user", prompt, strlen(prompt),
                                      (const mm_media *const *)media, (size_t)n_media);
    for (int i = 0; i < n_media; i++) {
        mm_media_free(media[i]);
        mm_image_free(images[i]);
        mm_audio_free(clips[i]);
    }
    if (st != MM_OK)
        return fail("prompt", st);
    int n_prompt = mm_session_n_past(session);
    double t_prompt = now() - t0;

    /* The pull API, one token per call (mm_session_generate with a callback does the same). */
    t0 = now();
    int n_gen = 0;
    for (;;) {
        int32_t token;
        const char *piece;
        size_t len;
        if (interrupted) {
            st = MM_ERR_CANCELLED;
            break;
        }
        if ((st = mm_session_next(session, &token, &piece, &len)) != MM_OK || !piece)
            break;
        fwrite(piece, 1, len, stdout);
        fflush(stdout);
        n_gen++;
    }
    double t_gen = now() - t0;
    printf("\n");
    if (st == MM_ERR_CANCELLED)
        fprintf(stderr, "mm-describe: stopped\n");
    else if (st == MM_ERR_CTX_FULL)
        fprintf(stderr, "mm-describe: the context is full (-c for a larger one)\n");
    else if (st != MM_OK)
        return fail("generation", st);
    fprintf(stderr, "mm-describe: %d image(s), %d clip(s) and a prompt of %d positions in %.2f s; "
            "%d tokens generated in %.2f s (%.1f/s)\n", n_images, n_media - n_images, n_prompt,
            t_prompt, n_gen, t_gen,
            n_gen / (t_gen > 0 ? t_gen : 1));
    current = NULL;
    mm_session_free(session);
    mm_model_free(model);
    mm_options_free(options);
    return 0;
}
