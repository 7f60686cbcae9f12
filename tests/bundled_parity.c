/* bundled_parity: libmm on the bundled scenes model against the PyTorch values its training
 * exporter wrote (tools/train/export.py, copied by tools/train/ship.sh).
 *
 *   tests/bundled_parity LLAVA.gguf MMPROJ.gguf CLIP.gguf REFERENCE_DIR
 *
 * REFERENCE_DIR holds
 *   image.png                 the reference scene
 *   reference.safetensors     PyTorch's inputs, intermediates and outputs for it, computed with
 *                             the GGUF files' precision (ref_f16 for f16 files)
 *   prompts.tsv               `llava<TAB>question<TAB>ids` (the training pipeline's prompt, -1
 *                             where an image row goes) and `clip<TAB>caption<TAB>ids` lines
 * Checked, each within TOLERANCE (the projector output: FEATURE_TOLERANCE) as tests/hf_parity
 * measures it (largest |got - ref| / max(1, |ref|)):
 *   - projector output from the reference pixels and from image.png (decode + preprocess);
 *   - the ids a session feeds for a user message with the image, through the model's chat
 *     template, equal the training pipeline's, for every llava line of prompts.tsv;
 *   - language-model logits at every prompt position (fed one position at a time), then greedy
 *     generation: the same tokens, each chosen by the same logits;
 *   - CLIP image and text embeddings, text through the tokenizer equal to the training ids,
 *     and logits per image.
 * Prints a line per check; exits 1 if any fails (or a file is missing). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mm.h"
#include "safetensors.h"
#include "session.h"

#define TOLERANCE 1e-4
/* The projector's first layer starts as a ZCA whitening of the ViT features (eigenvalues floored
 * at 1e-4, so gains up to 100; tools/train/train.py init_projector): it magnifies the f32
 * summation-order differences of the ViT states (measured: up to 1.2e-4 on its output). The
 * logits after it are held to TOLERANCE. */
#define FEATURE_TOLERANCE 1e-3
#define MAX_IDS 256

static int n_failed, n_passed;

static void report(int ok, const char *what, const char *detail)
{
    printf("%s %s%s%s\n", ok ? "PASS" : "FAIL", what, *detail ? ": " : "", detail);
    if (ok)
        n_passed++;
    else
        n_failed++;
}

/* Stops the run: a missing file or a call that fails is a failed test, not a skip. */
static void die_if(int bad, const char *what, const char *detail)
{
    if (!bad)
        return;
    printf("FAIL %s: %s\n", what, detail);
    printf("bundled_parity: stopped after %d passed, %d failed\n", n_passed, n_failed + 1);
    exit(1);
}

static void check_call(mm_status st, const char *what)
{
    char detail[1024];
    snprintf(detail, sizeof detail, "%s: %s", mm_status_str(st), mm_last_error());
    die_if(st != MM_OK, what, detail);
}

static void compare_within(const char *what, const float *got, const float *ref, size_t n,
                           double tolerance)
{
    double worst = 0.0, max_abs = 0.0;
    int finite = 1;
    for (size_t i = 0; i < n; i++) {
        double err = fabs((double)got[i] - ref[i]);
        finite &= isfinite(got[i]) != 0;
        max_abs = err > max_abs ? err : max_abs;
        err /= fabs(ref[i]) > 1.0 ? fabs(ref[i]) : 1.0;
        worst = err > worst ? err : worst;
    }
    char detail[128];
    snprintf(detail, sizeof detail, "max_abs %.3e max_rel %.3e (tolerance %.0e, %zu values)",
             max_abs, worst, tolerance, n);
    report(finite && worst <= tolerance, what, detail);
}

static void compare(const char *what, const float *got, const float *ref, size_t n)
{
    compare_within(what, got, ref, n, TOLERANCE);
}

static float *tensor(st_file *f, const char *name, size_t want, size_t *count)
{
    size_t n = 0;
    float *x = st_read_f32(f, name, NULL, NULL, &n);
    die_if(!x, name, f->error);
    die_if(want && n != want, name, "unexpected size");
    if (count)
        *count = n;
    return x;
}

/* The -1-or-id list of a prompts.tsv line; returns the count, or -1 if malformed. */
static int parse_ids(char *s, int32_t *ids)
{
    int n = 0;
    for (char *tok = strtok(s, " "); tok; tok = strtok(NULL, " ")) {
        char *end;
        long v = strtol(tok, &end, 10);
        if (*end || v < -1 || v > INT32_MAX || n == MAX_IDS)
            return -1;
        ids[n++] = (int32_t)v;
    }
    return n;
}

static void format_ids(char *out, size_t cap, const int32_t *ids, int n)
{
    size_t len = 0;
    out[0] = '\0';
    for (int i = 0; i < n && len + 16 < cap; i++)
        len += (size_t)snprintf(out + len, cap - len, "%s%d", i ? " " : "", ids[i]);
}

/* The session's ids for a user message with the image equal the training pipeline's. */
static void check_prompt(mm_model *llava, const mm_embeddings *image, const char *question,
                         const int32_t *want, int n_want)
{
    mm_session *s;
    check_call(mm_session_create(llava, NULL, &s), "session");
    check_call(mm_session_add_message_embeddings(s, "user", question, strlen(question), &image,
                                                 1), question);
    const int32_t *got = mmi_session_history(s);
    int n_got = mm_session_n_past(s);
    int same = n_got == n_want && memcmp(got, want, (size_t)n_want * sizeof *want) == 0;
    char what[512], a[2048], b[2048], detail[4200];
    snprintf(what, sizeof what, "prompt ids of \"%s\"", question);
    format_ids(a, sizeof a, got, n_got);
    format_ids(b, sizeof b, want, n_want);
    snprintf(detail, sizeof detail, "%d ids%s%s%s%s", n_got, same ? "" : "\n  libmm:    ", same ? "" : a,
             same ? "" : "\n  training: ", same ? "" : b);
    report(same, what, detail);
    mm_session_free(s);
}

/* Logits at every prompt position, then greedy generation, against the reference. */
static void check_logits(mm_model *llava, const mm_embeddings *image, st_file *ref)
{
    size_t n_ids, n_logits, n_gen, n_step;
    float *ids = tensor(ref, "input_ids", 0, &n_ids);
    float *logits = tensor(ref, "logits", 0, &n_logits);
    float *gen = tensor(ref, "generated", 0, &n_gen);
    float *step_logits = tensor(ref, "generated_step_logits", 0, &n_step);
    size_t n_vocab = (size_t)mm_n_vocab(llava), n_embd = mm_embeddings_n_embd(image);
    die_if(n_logits != n_ids * n_vocab || n_step != n_gen * n_vocab, "logits",
           "sizes disagree with the model's vocabulary");

    /* the image rows are where the prompt repeats one id (the image token) once per row */
    size_t n_rows = mm_embeddings_n_tokens(image), first = 0, run = 0, row = 0;
    for (size_t p = 0; p < n_ids && run < n_rows; p++) {
        run = p > 0 && ids[p] == ids[p - 1] ? run + 1 : 1;
        first = p + 1 - run;
    }
    die_if(run < n_rows, "input_ids", "no run of image tokens as long as the image's rows");
    mm_session *s;
    check_call(mm_session_create(llava, NULL, &s), "session");
    float *got = malloc(n_logits * sizeof *got);
    die_if(!got, "logits", "out of memory");
    for (size_t p = 0; p < n_ids; p++) {
        int32_t id = (int32_t)ids[p];
        if (p >= first && p < first + n_rows) {
            check_call(mm_session_add_embeddings(s, mm_embeddings_data(image) + row++ * n_embd,
                                                 1, n_embd), "image row");
        } else {
            check_call(mm_session_add_tokens(s, &id, 1), "prompt token");
        }
        const float *l;
        size_t n;
        check_call(mm_session_logits(s, &l, &n), "logits");
        memcpy(got + p * n_vocab, l, n_vocab * sizeof *l);
    }
    compare("logits at every prompt position", got, logits, n_logits);

    /* greedy (the session default) for as many tokens as PyTorch produced */
    mm_options *o;
    check_call(mm_options_create(&o), "options");
    check_call(mm_options_set_int(o, MM_OPT_MAX_TOKENS, (int64_t)n_gen), "options");
    check_call(mm_session_set_options(s, o), "options");
    mm_options_free(o);
    float *got_step = calloc(n_step, sizeof *got_step);
    int32_t tokens[MAX_IDS], want[MAX_IDS];
    size_t n_made = 0;
    die_if(!got_step || n_gen > MAX_IDS, "generation", "out of memory or too long");
    for (;;) {
        int32_t token;
        const char *piece;
        size_t len;
        check_call(mm_session_next(s, &token, &piece, &len), "generation");
        if (!piece || n_made == n_gen)
            break;
        const float *l;
        size_t n;
        check_call(mm_session_logits(s, &l, &n), "logits"); /* those that chose token */
        memcpy(got_step + n_made * n_vocab, l, n_vocab * sizeof *l);
        tokens[n_made++] = token;
    }
    for (size_t i = 0; i < n_gen; i++)
        want[i] = (int32_t)gen[i];
    char a[2048], b[2048], detail[4200];
    format_ids(a, sizeof a, tokens, (int)n_made);
    format_ids(b, sizeof b, want, (int)n_gen);
    int same = n_made == n_gen && memcmp(tokens, want, n_gen * sizeof *want) == 0;
    snprintf(detail, sizeof detail, "%zu tokens%s%s%s%s", n_made, same ? "" : "\n  libmm:   ",
             same ? "" : a, same ? "" : "\n  PyTorch: ", same ? "" : b);
    report(same, "greedy tokens", detail);
    compare("logits of each greedy step", got_step, step_logits, n_step);
    free(got_step);
    free(got);
    free(ids);
    free(logits);
    free(gen);
    free(step_logits);
    mm_session_free(s);
}

static void check_clip(mm_model *clip, const mm_image *image, st_file *ref, FILE *prompts)
{
    size_t dim = mm_clip_embedding_size(clip), n_ids, n_text;
    die_if(!dim, "clip", "not a CLIP dual encoder");
    int64_t shape[ST_MAX_DIMS];
    float *ids = st_read_f32(ref, "clip_input_ids", shape, NULL, &n_ids);
    die_if(!ids, "clip_input_ids", ref->error);
    size_t n_captions = (size_t)shape[0], width = (size_t)shape[1];
    float *image_ref = tensor(ref, "clip_image_embeds", dim, NULL);
    float *text_ref = tensor(ref, "clip_text_embeds", n_captions * dim, &n_text);
    float *logits_ref = tensor(ref, "clip_logits_per_image", n_captions, NULL);
    float *image_embd = malloc(dim * sizeof(float));
    float *text_embd = malloc(n_text * sizeof(float));
    float *from_string = malloc(dim * sizeof(float));
    float *logits = malloc(n_captions * sizeof(float));
    die_if(!image_embd || !text_embd || !from_string || !logits, "clip", "out of memory");

    check_call(mm_clip_image_embedding(clip, image, image_embd, dim), "clip image");
    compare("CLIP image embedding (image.png)", image_embd, image_ref, dim);
    float scale;
    check_call(mm_clip_logit_scale(clip, &scale), "clip logit scale");
    for (size_t c = 0; c < n_captions; c++) {
        /* the padded row as PyTorch ran it: pooled at the first end-of-text, and the causal
         * mask keeps the padding after it from mattering */
        int32_t row[MAX_IDS];
        size_t n = width < MAX_IDS ? width : MAX_IDS;
        for (size_t k = 0; k < n; k++)
            row[k] = (int32_t)ids[c * width + k];
        check_call(mm_clip_text_embedding_tokens(clip, row, n, text_embd + c * dim, dim),
                   "clip text");
        logits[c] = scale * mm_clip_similarity(image_embd, text_embd + c * dim, dim);
    }
    compare("CLIP text embeddings (training ids)", text_embd, text_ref, n_text);
    compare("CLIP logits per image", logits, logits_ref, n_captions);

    /* captions through libmm's tokenizer give the training pipeline's ids: same embedding */
    char line[4096];
    int n_lines = 0;
    rewind(prompts);
    while (fgets(line, sizeof line, prompts)) {
        line[strcspn(line, "\r\n")] = '\0';
        char *kind = strtok(line, "\t"), *caption = strtok(NULL, "\t"), *list = strtok(NULL, "\t");
        if (!kind || strcmp(kind, "clip") != 0)
            continue;
        int32_t want[MAX_IDS];
        int n = list ? parse_ids(list, want) : -1;
        die_if(!caption || n < 2, "prompts.tsv", "malformed clip line");
        float *by_ids = image_embd; /* reused: the image embedding is no longer needed */
        check_call(mm_clip_text_embedding_tokens(clip, want, (size_t)n, by_ids, dim), caption);
        check_call(mm_clip_text_embedding(clip, caption, from_string, dim), caption);
        char what[128];
        snprintf(what, sizeof what, "CLIP caption %d through libmm's tokenizer = training ids",
                 n_lines);
        compare(what, from_string, by_ids, dim);
        n_lines++;
    }
    die_if(n_lines == 0, "prompts.tsv", "no clip lines");
    free(ids);
    free(image_ref);
    free(text_ref);
    free(logits_ref);
    free(image_embd);
    free(text_embd);
    free(from_string);
    free(logits);
}

/* dir/name, malloc'd. */
static char *in_dir(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *path = malloc(n);
    die_if(!path, name, "out of memory");
    snprintf(path, n, "%s/%s", dir, name);
    return path;
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: %s LLAVA.gguf MMPROJ.gguf CLIP.gguf REFERENCE_DIR\n", argv[0]);
        return 2;
    }
    st_file ref;
    char *path = in_dir(argv[4], "reference.safetensors");
    die_if(st_load(&ref, path) != 0, "reference", ref.error);
    free(path);
    path = in_dir(argv[4], "prompts.tsv");
    FILE *prompts = fopen(path, "r");
    die_if(!prompts, path, "cannot open");
    free(path);
    path = in_dir(argv[4], "image.png");
    mm_image *image;
    check_call(mm_image_load_file(path, NULL, &image), path);
    free(path);

    mm_model *llava, *clip;
    check_call(mm_model_load(argv[1], argv[2], NULL, &llava), argv[1]);
    check_call(mm_model_load(argv[3], NULL, NULL, &clip), argv[3]);

    /* the vision tower and projector, from the reference pixels and from the PNG */
    size_t n_pixels;
    float *pixels = tensor(&ref, "pixel_values", 0, &n_pixels);
    float *features = tensor(&ref, "image_features", 0, NULL);
    int side = (int)(sqrt((double)n_pixels / 3.0) + 0.5);
    mm_embeddings *from_pixels, *embd;
    check_call(mm_image_encode_pixels(llava, pixels, side, side, NULL, &from_pixels), "pixels");
    check_call(mm_image_encode(llava, image, NULL, &embd), "image.png");
    size_t n_features = mm_embeddings_n_tokens(embd) * mm_embeddings_n_embd(embd);
    compare_within("projector output (reference pixels)", mm_embeddings_data(from_pixels), features,
                   n_features, FEATURE_TOLERANCE);
    compare_within("projector output (image.png)", mm_embeddings_data(embd), features, n_features,
                   FEATURE_TOLERANCE);

    char line[4096];
    int n_prompts = 0;
    while (fgets(line, sizeof line, prompts)) {
        line[strcspn(line, "\r\n")] = '\0';
        char *kind = strtok(line, "\t"), *question = strtok(NULL, "\t"), *list = strtok(NULL, "\t");
        if (!kind || strcmp(kind, "llava") != 0)
            continue;
        int32_t want[MAX_IDS];
        int n = list ? parse_ids(list, want) : -1;
        die_if(!question || n < 1, "prompts.tsv", "malformed llava line");
        check_prompt(llava, embd, question, want, n);
        n_prompts++;
    }
    die_if(n_prompts == 0, "prompts.tsv", "no llava lines");
    check_logits(llava, embd, &ref);
    check_clip(clip, image, &ref, prompts);

    fclose(prompts);
    free(pixels);
    free(features);
    mm_embeddings_free(from_pixels);
    mm_embeddings_free(embd);
    mm_image_free(image);
    mm_model_free(llava);
    mm_model_free(clip);
    st_free(&ref);
    printf("bundled_parity: %d passed, %d failed\n", n_passed, n_failed);
    return n_failed ? 1 : 0;
}
