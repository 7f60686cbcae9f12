/* mm-describe: ask a multimodal model about images or audio clips and stream its answer.
 *
 *   mm-describe -m model.gguf --mmproj mmproj.gguf --image photo.jpg [--image more.png] \
 *               [-p "Describe this image."] [options]
 *   mm-describe -m model.gguf --mmproj audio-mmproj.gguf --audio clip.wav [-p "..."]
 *   mm-describe -m model.gguf --tokens "1 3148 1001 29901"     (a model without tokenizer)
 *
 * The images, then the clips, are encoded by the model's towers and placed where the prompt
 * has its "<image>" / "<audio>" / "<media>" markers, in that order (or before the prompt), inside the model's chat template; the answer is printed as it is
 * generated (as token ids for a model without a tokenizer). Ctrl-C stops the generation
 * (mm_session_cancel from the signal handler). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "args.h"
#include "mm.h"

#define MAX_IMAGES 16
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

static int fail(const char *what, mm_status st)
{
    fprintf(stderr, "mm-describe: %s: %s: %s\n", what, mm_status_str(st), mm_last_error());
    return 1;
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
    const char *model_path = NULL, *mmproj_path = NULL, *system = NULL, *tokens = NULL;
    const char *prompt = NULL;
    const char *image_paths[MAX_IMAGES], *audio_paths[MAX_IMAGES], *stops[MAX_STOPS];
    arg_list images_arg = {image_paths, 0, MAX_IMAGES}, audio_arg = {audio_paths, 0, MAX_IMAGES};
    arg_list stops_arg = {stops, 0, MAX_STOPS};
    int verbose = 0;
    mm_options *options;
    mm_status st = mm_options_create(&options);
    if (st != MM_OK)
        return fail("options", st);
    const arg_spec specs[] = {
        ARG_MODEL(&model_path),
        ARG_MMPROJ(&mmproj_path),
        {"--image, -i", "FILE", ARG_TEXTS, &images_arg, (mm_opt)0, 0, 0,
         "PNG or JPEG; repeat for several (up to 16)"},
        {"--audio, -a", "FILE", ARG_TEXTS, &audio_arg, (mm_opt)0, 0, 0,
         "WAV clip; repeat for several (up to 16), placed after the images"},
        {"-p, --prompt", "TEXT", ARG_TEXT, &prompt, (mm_opt)0, 0, 0,
         "the question (default \"Describe this image.\", or \"Describe this audio.\" for "
         "clips alone); \"<image>\", \"<audio>\" or \"<media>\" marks where each goes"},
        {"-sys, --system-prompt, --system", "TEXT", ARG_TEXT, &system, (mm_opt)0, 0, 0,
         "a system message first"},
        {"--tokens", "IDS", ARG_TEXT, &tokens, (mm_opt)0, 0, 0,
         "the prompt as token ids (\"1 2 3\"), for a model without a tokenizer; the answer "
         "is printed as ids"},
        {"--stop", "TEXT", ARG_TEXTS, &stops_arg, (mm_opt)0, 0, 0,
         "stop when the answer contains TEXT (repeatable)"},
        ARG_N_PREDICT("256"),
        ARG_CTX,
        ARG_THREADS,
        ARG_TEMPLATE,
        ARG_SAMPLING,
        ARG_VERBOSE(&verbose),
    };
    arg_parser parser = {"mm-describe",
                         "-m MODEL.gguf [--mmproj MMPROJ.gguf] [--image FILE]... [--audio FILE]... "
                         "[-p PROMPT] [options]",
                         "Ask a multimodal model about images or audio clips; the answer streams "
                         "to stdout.",
                         specs, sizeof specs / sizeof specs[0], options, NULL, 0, 0, 0};
    int rc = args_parse(&parser, argc, argv);
    if (rc >= 0)
        return rc;
    if (!model_path)
        return args_refuse(&parser, "-m", "the model file is required");
    if (tokens && (images_arg.n > 0 || audio_arg.n > 0 || system))
        return args_refuse(&parser, "--tokens",
                           "takes the whole prompt: no --image, --audio or --system");
    int n_images = images_arg.n, n_clips = audio_arg.n, n_stops = stops_arg.n;
    if (!prompt)
        prompt = n_clips > 0 && n_images == 0 ? "Describe this audio." : "Describe this image.";
    int32_t *ids = NULL;
    size_t n_ids = 0;
    if (tokens && !args_token_ids("mm-describe", "--tokens", tokens, &ids, &n_ids))
        return 2;
    if (verbose)
        mm_set_log(args_print_log, NULL, MM_LOG_INFO);
    mm_options_set_progress(options, args_progress, NULL);

    mm_model *model;
    if ((st = mm_model_load(model_path, mmproj_path, options, &model)) != MM_OK)
        return fail("loading the model", st);
    mm_session *session;
    if ((st = mm_session_create(model, options, &session)) != MM_OK)
        return fail("creating a session", st);
    for (int i = 0; i < n_stops; i++)
        if ((st = mm_session_add_stop_string(session, stops[i])) != MM_OK)
            return fail("stop string", st);
    int text_out = mm_n_vocab(model) > 0; /* else the answer is printed as ids */

    /* Each image and clip encoded here (rather than inside the message call) so that the
     * progress line can say which one of how many. */
    mm_embeddings *images[2 * MAX_IMAGES];
    for (int i = 0; i < n_images; i++) {
        char label[48];
        snprintf(label, sizeof label, "image %d/%d", i + 1, n_images);
        mm_options_set_progress(options, args_progress, label);
        mm_image *image;
        if ((st = mm_image_load_file(image_paths[i], options, &image)) != MM_OK)
            return fail(image_paths[i], st);
        st = mm_image_encode(model, image, options, &images[i]);
        mm_image_free(image);
        if (st != MM_OK)
            return fail(image_paths[i], st);
    }
    for (int i = 0; i < n_clips; i++) {
        mm_audio *clip;
        mm_media *item;
        if ((st = mm_audio_load_file(audio_paths[i], options, &clip)) != MM_OK)
            return fail(audio_paths[i], st);
        if ((st = mm_media_from_audio(clip, &item)) == MM_OK)
            st = mm_media_encode(model, item, options, &images[n_images + i]);
        mm_media_free(item);
        mm_audio_free(clip);
        if (st != MM_OK)
            return fail(audio_paths[i], st);
    }

    current = session;
    signal(SIGINT, on_interrupt);
    double t0 = now();
    if (system && (st = mm_session_add_message(session, "system", system, strlen(system))) != 0)
        return fail("system message", st);
    if (ids)
        st = mm_session_add_tokens(session, ids, n_ids);
    else
        st = mm_session_add_message_embeddings(session, "user", prompt, strlen(prompt),
                                               (const mm_embeddings *const *)images,
                                               (size_t)(n_images + n_clips));
    for (int i = 0; i < n_images + n_clips; i++)
        mm_embeddings_free(images[i]);
    free(ids);
    if (st != MM_OK)
        return fail(tokens ? "--tokens" : "prompt", st);
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
        if (text_out)
            fwrite(piece, 1, len, stdout);
        else
            printf("%s%d", n_gen ? " " : "", (int)token);
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
            "%d tokens generated in %.2f s (%.1f/s)\n", n_images, n_clips, n_prompt, t_prompt,
            n_gen, t_gen, n_gen / (t_gen > 0 ? t_gen : 1));
    current = NULL;
    mm_session_free(session);
    mm_model_free(model);
    mm_options_free(options);
    return 0;
}
