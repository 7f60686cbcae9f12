/* mm-eval: exact-match accuracy of a vision-language model on questions about images.
 *
 *   mm-eval -m MODEL.gguf --mmproj MMPROJ.gguf QUESTIONS.tsv [--clip CLIP.gguf] [options]
 *
 * QUESTIONS.tsv holds one question a line: `image<TAB>question<TAB>expected answer`, with an
 * optional fourth column naming the question's type. Image paths are relative to the TSV's
 * folder (or absolute); blank lines and lines starting with '#' are skipped. Each question is
 * asked on its own, in a fresh conversation, through the model's chat template, and answered by
 * greedy decoding; the answer is right when it equals the expected one (spaces at either end
 * ignored). Without a type column the type is read off the question's first words, as
 * docs/scenes.md says: "Describe" or "What is in" -> caption, "How many" -> count, "What
 * colour" -> colour, "What shape" -> shape, "Where" -> position, "Is there" -> exist.
 *
 * Prints exact-match accuracy per type and overall. With --clip, also CLIP zero-shot accuracy:
 * the answers of the caption questions are the images' captions, and each image must score its
 * own caption highest among itself and the captions of the next N-1 images (in file order,
 * wrapping round), as tools/train/train.py measures it. An image that cannot be read, or a
 * question that fails, is counted wrong with a message on stderr; a malformed line is reported
 * and skipped. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mm.h"

#define MAX_ANSWER 4096
#define MAX_TYPES 32
#define MAX_TYPE_NAME 32

typedef struct {
    char name[MAX_TYPE_NAME];
    int right, total;
} tally;

typedef struct {
    tally types[MAX_TYPES]; /* in order of first appearance, the documented ones first */
    int n_types;
} scores;

/* One image with its caption, for the CLIP measurement. */
typedef struct {
    char *path;
    char *caption;
} captioned;

typedef struct {
    char text[MAX_ANSWER];
    size_t len;
} answer;

static void usage(const char *argv0)
{
    fprintf(stderr,
            "usage: %s -m MODEL.gguf --mmproj MMPROJ.gguf QUESTIONS.tsv [options]\n"
            "  -m, --model FILE      language model GGUF\n"
            "      --mmproj FILE     vision GGUF that goes with it\n"
            "      --clip FILE       also measure CLIP zero-shot caption choice with this model\n"
            "      --choices N       captions to choose among for --clip (default 10)\n"
            "  -n, --max-tokens N    most tokens an answer may have (default 64)\n"
            "  -t, --threads N       compute threads (default: all cores)\n"
            "      --template NAME   chat template (default: the model's)\n"
            "      --prompt TEXT     the message asked, where \"{question}\" stands for the\n"
            "                        question (default \"{question}\")\n"
            "      --wrong N         print up to N wrong answers (default 0)\n"
            "      --markdown        print the table in Markdown\n"
            "Lines of QUESTIONS.tsv: image<TAB>question<TAB>expected answer[<TAB>type]\n",
            argv0);
}

static int fail(const char *what, mm_status st)
{
    fprintf(stderr, "mm-eval: %s: %s: %s\n", what, mm_status_str(st), mm_last_error());
    return 1;
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

static int starts_with(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* The type of a question of the scene grammar (docs/scenes.md), from its first words. */
static const char *question_type(const char *q)
{
    while (isspace((unsigned char)*q))
        q++;
    if (starts_with(q, "Describe") || starts_with(q, "What is in"))
        return "caption";
    if (starts_with(q, "How many"))
        return "count";
    if (starts_with(q, "What colour"))
        return "colour";
    if (starts_with(q, "What shape"))
        return "shape";
    if (starts_with(q, "Where"))
        return "position";
    if (starts_with(q, "Is there"))
        return "exist";
    return "other";
}

/* The tally of a type, added on first use; types past MAX_TYPES share the last slot. */
static tally *tally_of(scores *s, const char *type)
{
    for (int i = 0; i < s->n_types; i++)
        if (strcmp(s->types[i].name, type) == 0)
            return &s->types[i];
    if (s->n_types == MAX_TYPES)
        return &s->types[MAX_TYPES - 1];
    tally *t = &s->types[s->n_types++];
    snprintf(t->name, sizeof t->name, "%s", type);
    return t;
}

/* s without spaces at either end, in place. */
static char *trim(char *s)
{
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    while (isspace((unsigned char)*s))
        s++;
    return s;
}

/* Split line at tabs into at most max fields; returns the number of fields found. */
static int split_tabs(char *line, char **fields, int max)
{
    int n = 0;
    for (char *p = line;; p++) {
        if (n < max)
            fields[n] = p;
        n++;
        p = strchr(p, '\t');
        if (!p)
            return n;
        *p = '\0';
    }
}

/* path as given when absolute, else relative to the folder `dir` (which ends with '/' or is
 * empty); NULL when out of memory. */
static char *join_path(const char *dir, const char *path)
{
    const char *base = path[0] == '/' ? "" : dir;
    size_t n = strlen(base) + strlen(path) + 1;
    char *out = malloc(n);
    if (out)
        snprintf(out, n, "%s%s", base, path);
    return out;
}

/* Collects generated text; anything past MAX_ANSWER is dropped (the answer is then wrong). */
static int collect(void *user, const char *piece, size_t len)
{
    answer *a = user;
    size_t room = sizeof a->text - 1 - a->len;
    if (len > room)
        len = room;
    memcpy(a->text + a->len, piece, len);
    a->len += len;
    a->text[a->len] = '\0';
    return 0;
}

/* The message asked: the --prompt text with "{question}" replaced, or the question alone. */
static char *render_prompt(const char *format, const char *question)
{
    const char *hole = format ? strstr(format, "{question}") : NULL;
    size_t head = hole ? (size_t)(hole - format) : 0;
    const char *tail = hole ? hole + strlen("{question}") : "";
    size_t n = head + strlen(question) + strlen(tail) + 1;
    char *out = malloc(n);
    if (out)
        snprintf(out, n, "%.*s%s%s", (int)head, hole ? format : "", question, tail);
    return out;
}

/* Answers one question about the image whose embeddings are given; MM_OK with the text. */
static mm_status ask(mm_session *session, const mm_embeddings *image, const char *message,
                     answer *out)
{
    out->len = 0;
    out->text[0] = '\0';
    mm_session_reset(session);
    mm_status st = mm_session_add_message_embeddings(session, "user", message, strlen(message),
                                                     &image, 1);
    if (st != MM_OK)
        return st;
    return mm_session_generate(session, NULL, collect, out);
}

/* CLIP zero-shot: how many images score their own caption highest among `choices`. */
static int clip_accuracy(const char *clip_path, const captioned *items, int n, int choices,
                         const mm_options *options, int *right)
{
    mm_model *clip;
    mm_status st = mm_model_load(clip_path, NULL, options, &clip);
    if (st != MM_OK)
        return fail(clip_path, st);
    size_t dim = mm_clip_embedding_size(clip);
    float *img = calloc((size_t)n * dim, sizeof(float));
    float *txt = calloc((size_t)n * dim, sizeof(float));
    char *usable = calloc((size_t)n, 1);
    int rc = 0;
    if (!dim) {
        fprintf(stderr, "mm-eval: %s is not a CLIP model (it needs both towers)\n", clip_path);
        rc = 1;
    } else if (!img || !txt || !usable) {
        fprintf(stderr, "mm-eval: out of memory for %d CLIP embeddings\n", n);
        rc = 1;
    }
    for (int i = 0; i < n && rc == 0; i++) {
        mm_image *image = NULL;
        st = mm_image_load_file(items[i].path, options, &image);
        if (st == MM_OK)
            st = mm_clip_image_embedding(clip, image, img + (size_t)i * dim, dim);
        if (st == MM_OK)
            st = mm_clip_text_embedding(clip, items[i].caption, txt + (size_t)i * dim, dim);
        mm_image_free(image);
        usable[i] = st == MM_OK;
        if (st != MM_OK)
            fprintf(stderr, "mm-eval: CLIP: %s: %s: %s (counted wrong)\n", items[i].path,
                    mm_status_str(st), mm_last_error());
    }
    *right = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        if (!usable[i])
            continue;
        const float *v = img + (size_t)i * dim;
        float own = mm_clip_similarity(v, txt + (size_t)i * dim, dim);
        int best = 1;
        for (int k = 1; k < choices; k++) {
            int j = (i + k) % n;
            /* a caption that could not be encoded is no rival; ties go to the truth */
            if (usable[j] && mm_clip_similarity(v, txt + (size_t)j * dim, dim) > own)
                best = 0;
        }
        *right += best;
    }
    free(img);
    free(txt);
    free(usable);
    mm_model_free(clip);
    return rc;
}

static void print_row(int markdown, const char *name, int right, int total)
{
    double pct = total ? 100.0 * right / total : 0.0;
    if (markdown)
        printf("| %s | %d | %d | %.1f %% |\n", name, right, total, pct);
    else
        printf("%-12s %7d %7d %8.1f %%\n", name, right, total, pct);
}

int main(int argc, char **argv)
{
    const char *model_path = NULL, *mmproj_path = NULL, *clip_path = NULL, *tsv_path = NULL;
    const char *prompt = NULL;
    int choices = 10, show_wrong = 0, markdown = 0;
    mm_options *options;
    mm_status st = mm_options_create(&options);
    if (st != MM_OK)
        return fail("options", st);
    mm_options_set_int(options, MM_OPT_MAX_TOKENS, 64);

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *value = i + 1 < argc ? argv[i + 1] : NULL;
        char *end = NULL;
        long v = value ? strtol(value, &end, 10) : 0;
        int is_int = value && *value && !*end;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(argv[0]);
            return 0;
        }
        if (!strcmp(a, "--markdown")) {
            markdown = 1;
            continue;
        }
        if (a[0] != '-') {
            if (tsv_path) {
                fprintf(stderr, "mm-eval: more than one TSV given: %s\n", a);
                return 2;
            }
            tsv_path = a;
            continue;
        }
        if (!value) {
            fprintf(stderr, "mm-eval: %s needs a value (or is unknown)\n", a);
            return 2;
        }
        i++;
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            model_path = value;
        } else if (!strcmp(a, "--mmproj")) {
            mmproj_path = value;
        } else if (!strcmp(a, "--clip")) {
            clip_path = value;
        } else if (!strcmp(a, "--prompt") && strstr(value, "{question}")) {
            prompt = value;
        } else if (!strcmp(a, "--template")) {
            if ((st = mm_options_set_string(options, MM_OPT_CHAT_TEMPLATE, value)) != MM_OK)
                return fail(a, st);
        } else if ((!strcmp(a, "-n") || !strcmp(a, "--max-tokens")) && is_int && v > 0) {
            if ((st = mm_options_set_int(options, MM_OPT_MAX_TOKENS, v)) != MM_OK)
                return fail(a, st);
        } else if ((!strcmp(a, "-t") || !strcmp(a, "--threads")) && is_int) {
            if ((st = mm_options_set_int(options, MM_OPT_N_THREADS, v)) != MM_OK)
                return fail(a, st);
        } else if (!strcmp(a, "--choices") && is_int && v >= 2) {
            choices = (int)v;
        } else if (!strcmp(a, "--wrong") && is_int && v >= 0) {
            show_wrong = (int)v;
        } else {
            fprintf(stderr, "mm-eval: unknown flag or bad value: %s %s\n", a, value);
            usage(argv[0]);
            return 2;
        }
    }
    if (!model_path || !mmproj_path || !tsv_path) {
        usage(argv[0]);
        return 2;
    }

    FILE *tsv = fopen(tsv_path, "r");
    if (!tsv) {
        perror(tsv_path);
        return 1;
    }
    /* the TSV's folder, with its final '/', prefixes relative image paths */
    const char *slash = strrchr(tsv_path, '/');
    char dir[4096];
    snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash - tsv_path + 1) : 0, tsv_path);

    mm_model *model;
    if ((st = mm_model_load(model_path, mmproj_path, options, &model)) != MM_OK)
        return fail(model_path, st);
    mm_session *session;
    if ((st = mm_session_create(model, options, &session)) != MM_OK)
        return fail("creating a session", st);

    static const char *const documented[] = {"caption", "count", "colour", "shape", "position",
                                             "exist"};
    scores sc = {0};
    for (size_t k = 0; k < sizeof documented / sizeof documented[0]; k++)
        tally_of(&sc, documented[k]);
    captioned *caps = NULL;
    int n_caps = 0, cap_room = 0, n_malformed = 0, n_shown = 0, rc = 0;
    static answer got;

    /* The image of the previous line stays encoded: a TSV lists an image's questions together. */
    char *last_path = NULL;
    mm_embeddings *last_embd = NULL;
    char last_error[512] = "";

    char *line = NULL;
    size_t line_room = 0;
    long line_no = 0;
    double t0 = now();
    while (getline(&line, &line_room, tsv) != -1) {
        line_no++;
        line[strcspn(line, "\r\n")] = '\0';
        if (line[0] == '\0' || line[0] == '#')
            continue;
        char *f[4];
        int n_fields = split_tabs(line, f, 4);
        if (n_fields < 3 || n_fields > 4 || !*trim(f[0]) || !*trim(f[1])) {
            fprintf(stderr, "mm-eval: %s:%ld: not image<TAB>question<TAB>answer[<TAB>type]; "
                    "skipped\n", tsv_path, line_no);
            n_malformed++;
            continue;
        }
        const char *image = trim(f[0]), *question = trim(f[1]), *expected = trim(f[2]);
        const char *type = n_fields == 4 && *trim(f[3]) ? trim(f[3]) : question_type(question);
        tally *t = tally_of(&sc, type);
        t->total++;

        char *path = join_path(dir, image);
        char *message = render_prompt(prompt, question);
        if (!path || !message) {
            fprintf(stderr, "mm-eval: out of memory\n");
            free(path);
            free(message);
            rc = 1;
            break;
        }
        if (!last_path || strcmp(path, last_path) != 0) {
            mm_embeddings_free(last_embd);
            last_embd = NULL;
            last_error[0] = '\0';
            free(last_path);
            last_path = path;
            path = NULL;
            mm_image *img;
            st = mm_image_load_file(last_path, options, &img);
            if (st == MM_OK) {
                st = mm_image_encode(model, img, options, &last_embd);
                mm_image_free(img);
            }
            if (st != MM_OK)
                snprintf(last_error, sizeof last_error, "%s: %s", mm_status_str(st),
                         mm_last_error());
        }
        free(path);
        if (strcmp(type, "caption") == 0) {
            /* one caption per image: the first caption line of its run of lines */
            if (!n_caps || strcmp(caps[n_caps - 1].path, last_path) != 0) {
                if (n_caps == cap_room) {
                    cap_room = cap_room ? 2 * cap_room : 256;
                    captioned *grown = realloc(caps, (size_t)cap_room * sizeof *caps);
                    if (!grown) {
                        fprintf(stderr, "mm-eval: out of memory\n");
                        free(message);
                        rc = 1;
                        break;
                    }
                    caps = grown;
                }
                caps[n_caps].path = strdup(last_path);
                caps[n_caps].caption = strdup(expected);
                if (!caps[n_caps].path || !caps[n_caps].caption) {
                    free(caps[n_caps].path);
                    free(caps[n_caps].caption);
                    fprintf(stderr, "mm-eval: out of memory\n");
                    free(message);
                    rc = 1;
                    break;
                }
                n_caps++;
            }
        }
        if (!last_embd) {
            fprintf(stderr, "mm-eval: %s:%ld: %s (counted wrong)\n", tsv_path, line_no,
                    last_error);
            free(message);
            continue;
        }
        st = ask(session, last_embd, message, &got);
        free(message);
        if (st != MM_OK) {
            fprintf(stderr, "mm-eval: %s:%ld: %s: %s (counted wrong)\n", tsv_path, line_no,
                    mm_status_str(st), mm_last_error());
            continue;
        }
        int right = strcmp(trim(got.text), expected) == 0;
        t->right += right;
        if (!right && n_shown < show_wrong) {
            n_shown++;
            printf("wrong %s:%ld [%s] %s\n  expected: %s\n  got:      %s\n", tsv_path, line_no,
                   type, question, expected, trim(got.text));
        }
    }
    double seconds = now() - t0;
    free(line);
    free(last_path);
    mm_embeddings_free(last_embd);
    fclose(tsv);

    int right_all = 0, total_all = 0;
    for (int i = 0; i < sc.n_types; i++) {
        right_all += sc.types[i].right;
        total_all += sc.types[i].total;
    }
    if (rc == 0) {
        if (markdown)
            printf("| type | right | total | accuracy |\n|---|---:|---:|---:|\n");
        else
            printf("%-12s %7s %7s %10s\n", "type", "right", "total", "accuracy");
        for (int i = 0; i < sc.n_types; i++)
            if (sc.types[i].total)
                print_row(markdown, sc.types[i].name, sc.types[i].right, sc.types[i].total);
        print_row(markdown, "overall", right_all, total_all);
    }
    if (rc == 0 && clip_path) {
        int clip_right = 0;
        if (n_caps < choices) {
            fprintf(stderr, "mm-eval: CLIP needs captions of at least %d images (caption "
                    "questions); the TSV has %d\n", choices, n_caps);
            rc = 1;
        } else if ((rc = clip_accuracy(clip_path, caps, n_caps, choices, options,
                                       &clip_right)) == 0) {
            char name[64];
            snprintf(name, sizeof name, "CLIP 1 of %d", choices);
            print_row(markdown, name, clip_right, n_caps);
        }
    }
    fprintf(stderr, "mm-eval: %d questions in %.1f s%s", total_all, seconds,
            n_malformed ? "" : "\n");
    if (n_malformed)
        fprintf(stderr, "; %d malformed lines skipped\n", n_malformed);

    for (int i = 0; i < n_caps; i++) {
        free(caps[i].path);
        free(caps[i].caption);
    }
    free(caps);
    mm_session_free(session);
    mm_model_free(model);
    mm_options_free(options);
    return rc;
}
