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
 * and skipped. Ctrl-C stops the run and prints the table of the questions answered so far. */
#include <ctype.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "args.h"
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

/* The command line (the generation settings go into an options bag). */
typedef struct {
    const char *model, *mmproj, *clip, *tsv, *prompt;
    long long choices, show_wrong;
    int markdown;
} settings;

/* What one pass over the TSV found. */
typedef struct {
    scores sc;
    captioned *caps; /* caption of each image that has a caption question, in file order */
    int n_caps, cap_room;
    int n_malformed, n_shown;
} results;

static mm_session *volatile current; /* for the Ctrl-C handler */
static volatile sig_atomic_t interrupted;

/* Stops the question in progress (mm_session_cancel is an atomic store) and the run. */
static void on_interrupt(int sig)
{
    (void)sig;
    interrupted = 1;
    mm_session_cancel(current);
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
    return strncasecmp(s, prefix, strlen(prefix)) == 0;
}

/* The type of a question of the scene grammar (docs/scenes.md), from its first words in any
 * case (as tools/train/scenes.py's question_type). */
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

/* Reads the command line into *s and *options; returns -1 to go on, else the exit status. */
static int parse_args(int argc, char **argv, settings *s, mm_options *options)
{
    const char *positional[1];
    const arg_spec specs[] = {
        ARG_MODEL(&s->model),
        ARG_MMPROJ(&s->mmproj),
        {"--clip", "FILE", ARG_TEXT, &s->clip, (mm_opt)0, 0, 0,
         "also measure CLIP zero-shot caption choice with this model"},
        {"--choices", "N", ARG_INT, &s->choices, (mm_opt)0, 2, 1 << 20,
         "captions to choose among for --clip (default 10)"},
        ARG_N_PREDICT("64"),
        ARG_THREADS,
        ARG_TEMPLATE,
        {"-p, --prompt", "TEXT", ARG_TEXT, &s->prompt, (mm_opt)0, 0, 0,
         "the message asked, where \"{question}\" stands for the question (default "
         "\"{question}\")"},
        {"--wrong", "N", ARG_INT, &s->show_wrong, (mm_opt)0, 0, 1 << 30,
         "print up to N wrong answers (default 0)"},
        {"--markdown", NULL, ARG_SWITCH, &s->markdown, (mm_opt)0, 0, 0,
         "print the table in Markdown"},
    };
    arg_parser parser = {"mm-eval", "-m MODEL.gguf --mmproj MMPROJ.gguf QUESTIONS.tsv [options]",
                         "Exact-match accuracy of a vision-language model on the questions of "
                         "QUESTIONS.tsv, lines of image<TAB>question<TAB>expected "
                         "answer[<TAB>type]. Ctrl-C prints the table so far.",
                         specs, sizeof specs / sizeof specs[0], options, positional, 1, 1, 0};
    int rc = args_parse(&parser, argc, argv);
    if (rc >= 0)
        return rc;
    s->tsv = positional[0];
    if (!s->model || !s->mmproj)
        return args_refuse(&parser, s->model ? "--mmproj" : "-m", "is required");
    if (s->prompt && !strstr(s->prompt, "{question}"))
        return args_refuse(&parser, "--prompt", "has no \"{question}\"");
    return -1;
}

/* Keeps the caption of a caption question for the CLIP measurement: the first of each run of
 * lines on one image. Returns 0 when out of memory. */
static int keep_caption(results *r, const char *path, const char *caption)
{
    if (r->n_caps && strcmp(r->caps[r->n_caps - 1].path, path) == 0)
        return 1;
    if (r->n_caps == r->cap_room) {
        int room = r->cap_room ? 2 * r->cap_room : 256;
        captioned *grown = realloc(r->caps, (size_t)room * sizeof *grown);
        if (!grown)
            return 0;
        r->caps = grown;
        r->cap_room = room;
    }
    captioned *c = &r->caps[r->n_caps];
    c->path = strdup(path);
    c->caption = strdup(caption);
    if (!c->path || !c->caption) {
        free(c->path);
        free(c->caption);
        return 0;
    }
    r->n_caps++;
    return 1;
}

/* Asks every question of the TSV; 0, or 1 when out of memory. */
static int run(const settings *s, FILE *tsv, mm_model *model, mm_session *session,
               const mm_options *options, results *r)
{
    static const char *const documented[] = {"caption", "count", "colour", "shape", "position",
                                             "exist"};
    for (size_t k = 0; k < sizeof documented / sizeof documented[0]; k++)
        tally_of(&r->sc, documented[k]);
    /* the TSV's folder, with its final '/', prefixes relative image paths */
    const char *slash = strrchr(s->tsv, '/');
    char dir[4096];
    snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash - s->tsv + 1) : 0, s->tsv);

    /* The image of the previous line stays encoded: a TSV lists an image's questions together. */
    char *last_path = NULL, last_error[512] = "";
    mm_embeddings *last_embd = NULL;
    static answer got;
    char *line = NULL;
    size_t line_room = 0;
    long line_no = 0;
    int rc = 0;
    long n_lines = 0; /* for the progress line */
    while (getline(&line, &line_room, tsv) != -1)
        n_lines++;
    rewind(tsv);
    while (rc == 0 && !interrupted && getline(&line, &line_room, tsv) != -1) {
        line_no++;
        args_progress_line("answering", (unsigned long long)line_no,
                           (unsigned long long)n_lines + 1);
        line[strcspn(line, "\r\n")] = '\0';
        if (line[0] == '\0' || line[0] == '#')
            continue;
        char *f[4];
        int n_fields = split_tabs(line, f, 4);
        if (n_fields < 3 || n_fields > 4 || !*trim(f[0]) || !*trim(f[1])) {
            fprintf(stderr, "mm-eval: %s:%ld: not image<TAB>question<TAB>answer[<TAB>type]; "
                    "skipped\n", s->tsv, line_no);
            r->n_malformed++;
            continue;
        }
        const char *image = trim(f[0]), *question = trim(f[1]), *expected = trim(f[2]);
        const char *type = n_fields == 4 && *trim(f[3]) ? trim(f[3]) : question_type(question);
        tally *t = tally_of(&r->sc, type);

        char *path = join_path(dir, image);
        char *message = render_prompt(s->prompt, question);
        rc = path && message ? 0 : 1;
        if (rc == 0 && (!last_path || strcmp(path, last_path) != 0)) {
            mm_embeddings_free(last_embd);
            last_embd = NULL;
            free(last_path);
            last_path = path;
            path = NULL;
            mm_image *img;
            mm_status st = mm_image_load_file(last_path, options, &img);
            if (st == MM_OK) {
                st = mm_image_encode(model, img, options, &last_embd);
                mm_image_free(img);
            }
            if (st != MM_OK)
                snprintf(last_error, sizeof last_error, "%s: %s", mm_status_str(st),
                         mm_last_error());
        }
        free(path);
        if (rc == 0 && strcmp(type, "caption") == 0 && !keep_caption(r, last_path, expected))
            rc = 1;
        if (rc != 0) {
            fprintf(stderr, "mm-eval: out of memory\n");
        } else if (!last_embd) {
            t->total++;
            fprintf(stderr, "mm-eval: %s:%ld: %s (counted wrong)\n", s->tsv, line_no,
                    last_error);
        } else {
            mm_status st = ask(session, last_embd, message, &got);
            if (st == MM_ERR_CANCELLED && interrupted) { /* not answered: not counted */
                free(message);
                break;
            }
            t->total++;
            int right = st == MM_OK && strcmp(trim(got.text), expected) == 0;
            t->right += right;
            if (st != MM_OK)
                fprintf(stderr, "mm-eval: %s:%ld: %s: %s (counted wrong)\n", s->tsv, line_no,
                        mm_status_str(st), mm_last_error());
            else if (!right && r->n_shown < s->show_wrong) {
                r->n_shown++;
                printf("wrong %s:%ld [%s] %s\n  expected: %s\n  got:      %s\n", s->tsv,
                       line_no, type, question, expected, trim(got.text));
            }
        }
        free(message);
    }
    args_progress_line("answering", 1, 1);
    free(line);
    free(last_path);
    mm_embeddings_free(last_embd);
    return rc;
}

static void print_table(const settings *s, const results *r)
{
    int right = 0, total = 0;
    if (s->markdown)
        printf("| type | right | total | accuracy |\n|---|---:|---:|---:|\n");
    else
        printf("%-12s %7s %7s %10s\n", "type", "right", "total", "accuracy");
    for (int i = 0; i < r->sc.n_types; i++) {
        const tally *t = &r->sc.types[i];
        right += t->right;
        total += t->total;
        if (t->total)
            print_row(s->markdown, t->name, t->right, t->total);
    }
    print_row(s->markdown, "overall", right, total);
}

int main(int argc, char **argv)
{
    settings s = {NULL, NULL, NULL, NULL, NULL, 10, 0, 0};
    mm_options *options = NULL;
    mm_status st = mm_options_create(&options);
    if (st == MM_OK)
        st = mm_options_set_int(options, MM_OPT_MAX_TOKENS, 64);
    if (st != MM_OK)
        return fail("options", st);
    int rc = parse_args(argc, argv, &s, options);
    if (rc >= 0) {
        mm_options_free(options);
        return rc;
    }
    FILE *tsv = fopen(s.tsv, "r");
    if (!tsv) {
        perror(s.tsv);
        mm_options_free(options);
        return 1;
    }
    mm_options_set_progress(options, args_progress, NULL);
    mm_model *model = NULL;
    mm_session *session = NULL;
    results r = {0};
    const char *what = s.model;
    if ((st = mm_model_load(s.model, s.mmproj, options, &model)) == MM_OK &&
        (st = mm_session_create(model, options, &session)) != MM_OK)
        what = "creating a session";
    rc = st != MM_OK ? fail(what, st) : 0;
    mm_options_set_progress(options, NULL, NULL); /* one line for the questions instead */

    double t0 = now();
    current = session;
    signal(SIGINT, on_interrupt);
    if (rc == 0)
        rc = run(&s, tsv, model, session, options, &r);
    if (rc == 0 && interrupted)
        printf("(interrupted: the questions answered so far)\n");
    if (rc == 0)
        print_table(&s, &r);
    if (rc == 0 && s.clip && !interrupted) {
        int clip_right = 0;
        if (r.n_caps < s.choices) {
            fprintf(stderr, "mm-eval: CLIP needs captions of at least %lld images (caption "
                    "questions); the TSV has %d\n", s.choices, r.n_caps);
            rc = 1;
        } else if ((rc = clip_accuracy(s.clip, r.caps, r.n_caps, (int)s.choices, options,
                                       &clip_right)) == 0) {
            char name[64];
            snprintf(name, sizeof name, "CLIP 1 of %lld", s.choices);
            print_row(s.markdown, name, clip_right, r.n_caps);
        }
    }
    if (rc == 0)
        fprintf(stderr, "mm-eval: %s in %.1f s; %d malformed lines skipped\n", s.tsv,
                now() - t0, r.n_malformed);
    if (rc == 0 && interrupted)
        rc = 130; /* as a shell reports a program stopped by SIGINT */

    signal(SIGINT, SIG_DFL);
    current = NULL;
    for (int i = 0; i < r.n_caps; i++) {
        free(r.caps[i].path);
        free(r.caps[i].caption);
    }
    free(r.caps);
    fclose(tsv);
    mm_session_free(session);
    mm_model_free(model);
    mm_options_free(options);
    return rc;
}
