/* The command line of every example program, in one convention: a table of flags with
 * llama.cpp's names where llama.cpp has the flag (-m, --mmproj, --image, -p, -n, -t, -c,
 * --temp, --top-k, --top-p, --seed), values checked and refused with the reason
 * ("-n: 'abc' is not a whole number"), --help made from the table, and a progress line on a
 * terminal. Header-only and valid C11 and C++17, so that each example stays one file plus this
 * one. */
#ifndef MM_EXAMPLES_ARGS_H
#define MM_EXAMPLES_ARGS_H

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mm.h"

typedef enum {
    ARG_SWITCH, /* no value: *(int *)target = 1 */
    ARG_TEXT,   /* *(const char **)target = the value */
    ARG_TEXTS,  /* repeatable: the value is appended to *(arg_list *)target */
    ARG_INT,    /* a whole number in [min, max]: *(long long *)target */
    ARG_NUMBER, /* a number in [min, max]: *(double *)target */
    ARG_OPTION  /* a libmm option: set in the parser's options bag under `key` */
} arg_kind;

typedef struct {
    const char **items;
    int n, max;
} arg_list;

typedef struct {
    const char *names; /* accepted spellings, ", "-separated: "-n, --n-predict" */
    const char *value; /* what the value is ("N", "FILE"); NULL for a switch */
    arg_kind kind;
    void *target;
    mm_opt key;       /* ARG_OPTION */
    double min, max;  /* ARG_INT, ARG_NUMBER */
    const char *help;
} arg_spec;

/* Rows every program that loads a model shares. */
#define ARG_MODEL(target) \
    {"-m, --model", "FILE", ARG_TEXT, target, (mm_opt)0, 0, 0, "model GGUF file"}
#define ARG_MMPROJ(target)                                                             \
    {"--mmproj", "FILE", ARG_TEXT, target, (mm_opt)0, 0, 0,                            \
     "vision GGUF file (projector) that goes with the model"}
#define ARG_OPT(names, value, key, help) {names, value, ARG_OPTION, NULL, key, 0, 0, help}
#define ARG_THREADS                                                                        \
    ARG_OPT("-t, --threads", "N", MM_OPT_N_THREADS, "compute threads (default: one per core)")
#define ARG_CTX                                                                            \
    ARG_OPT("-c, --ctx-size", "N", MM_OPT_N_CTX, "context size in tokens (default: the model's)")
#define ARG_N_PREDICT(deflt)                                                               \
    ARG_OPT("-n, --n-predict, --max-tokens", "N", MM_OPT_MAX_TOKENS,                       \
            "most tokens to generate (default " deflt ")")
#define ARG_TEMPLATE                                                                       \
    ARG_OPT("--chat-template, --template", "NAME", MM_OPT_CHAT_TEMPLATE,                   \
            "llava, vicuna, chatml, llama2 or raw (default: the model's)")
#define ARG_SAMPLING                                                                       \
    ARG_OPT("--temp", "F", MM_OPT_TEMPERATURE, "temperature, 0 = greedy (default 0)"),     \
    ARG_OPT("--top-k", "N", MM_OPT_TOP_K, "keep the N most likely tokens (default 0 = off)"), \
    ARG_OPT("--top-p", "F", MM_OPT_TOP_P, "nucleus sampling (default 1 = off)"),           \
    ARG_OPT("--min-p", "F", MM_OPT_MIN_P, "drop tokens below F x the most likely (default 0)"), \
    ARG_OPT("--repeat-penalty", "F", MM_OPT_REPEAT_PENALTY,                                \
            "penalty for repeated tokens (default 1 = off)"),                              \
    ARG_OPT("--repeat-last-n", "N", MM_OPT_REPEAT_LAST_N,                                  \
            "tokens the penalty looks back on (default 64)"),                              \
    ARG_OPT("-s, --seed", "N", MM_OPT_SEED, "sampler seed (default 0)")
#define ARG_VERBOSE(target) \
    {"-v, --verbose", NULL, ARG_SWITCH, target, (mm_opt)0, 0, 0, "library log messages on stderr"}

typedef struct {
    const char *program;  /* "mm-describe": the prefix of every message */
    const char *synopsis; /* after "usage: PROGRAM " */
    const char *about;    /* printed by --help after the usage line */
    const arg_spec *specs;
    size_t n_specs;
    mm_options *options; /* where ARG_OPTION values go */
    const char **positional; /* the arguments that are not flags, in order */
    int min_positional, max_positional, n_positional;
} arg_parser;

static inline int args_name_matches(const char *names, const char *arg)
{
    size_t n = strlen(arg);
    for (const char *p = names; *p;) {
        size_t len = strcspn(p, ",");
        if (len == n && strncmp(p, arg, n) == 0)
            return 1;
        p += len;
        while (*p == ',' || *p == ' ')
            p++;
    }
    return 0;
}

static inline void args_usage(const arg_parser *p, FILE *out)
{
    fprintf(out, "usage: %s %s\n", p->program, p->synopsis);
    if (out != stdout)
        return;
    if (p->about)
        printf("\n%s\n", p->about);
    printf("\noptions:\n");
    for (size_t i = 0; i < p->n_specs; i++) {
        const arg_spec *s = &p->specs[i];
        char left[96];
        snprintf(left, sizeof left, "%s%s%s", s->names, s->value ? " " : "",
                 s->value ? s->value : "");
        /* The help in a column from 32, wrapped at 100; a long left part gets its own line. */
        if (strlen(left) > 28)
            printf("  %s\n%32s", left, "");
        else
            printf("  %-28s  ", left);
        for (const char *h = s->help; *h;) {
            size_t n = strlen(h);
            if (n > 68) {
                n = 68;
                while (n > 0 && h[n] != ' ')
                    n--;
                if (n == 0)
                    n = strcspn(h, " ");
            }
            printf("%.*s\n", (int)n, h);
            h += n;
            while (*h == ' ')
                h++;
            if (*h)
                printf("%32s", "");
        }
    }
    printf("  %-28s  %s\n", "-h, --help", "this text");
}

/* A refused argument: "PROGRAM: FLAG: reason", and the usage line. Returns 2. */
static inline int args_refuse(const arg_parser *p, const char *flag, const char *reason)
{
    fprintf(stderr, "%s: %s: %s\n", p->program, flag, reason);
    args_usage(p, stderr);
    return 2;
}

/* text as a whole number; 0 with the reason in `why` when it is not one. */
static inline int args_whole(const char *text, long long *out, char *why, size_t size)
{
    char *end;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (!*text || *end || end == text) {
        snprintf(why, size, "'%s' is not a whole number", text);
        return 0;
    }
    if (errno == ERANGE) {
        snprintf(why, size, "'%s' is too large", text);
        return 0;
    }
    *out = v;
    return 1;
}

static inline int args_number(const char *text, double *out, char *why, size_t size)
{
    char *end;
    double v = strtod(text, &end);
    if (!*text || *end || end == text || !isfinite(v)) {
        snprintf(why, size, "'%s' is not a number", text);
        return 0;
    }
    *out = v;
    return 1;
}

/* One flag's value into its target; 0 with the reason in `why` when refused. */
static inline int args_take(const arg_parser *p, const arg_spec *s, const char *value, char *why,
                            size_t size)
{
    long long whole;
    double number;
    switch (s->kind) {
    case ARG_SWITCH:
        *(int *)s->target = 1;
        return 1;
    case ARG_TEXT:
        *(const char **)s->target = value;
        return 1;
    case ARG_TEXTS: {
        arg_list *list = (arg_list *)s->target;
        if (list->n == list->max) {
            snprintf(why, size, "given more than %d times", list->max);
            return 0;
        }
        list->items[list->n++] = value;
        return 1;
    }
    case ARG_INT:
        if (!args_whole(value, &whole, why, size))
            return 0;
        if (whole < s->min || whole > s->max) {
            snprintf(why, size, "%lld is not in [%.0f, %.0f]", whole, s->min, s->max);
            return 0;
        }
        *(long long *)s->target = whole;
        return 1;
    case ARG_NUMBER:
        if (!args_number(value, &number, why, size))
            return 0;
        if (number < s->min || number > s->max) {
            snprintf(why, size, "%g is not in [%g, %g]", number, s->min, s->max);
            return 0;
        }
        *(double *)s->target = number;
        return 1;
    case ARG_OPTION: {
        mm_opt_type type;
        mm_status st = mm_option_type(s->key, &type);
        if (st == MM_OK && type == MM_OPT_TYPE_STRING)
            st = mm_options_set_string(p->options, s->key, value);
        else if (st == MM_OK && type == MM_OPT_TYPE_INT) {
            if (!args_whole(value, &whole, why, size))
                return 0;
            st = mm_options_set_int(p->options, s->key, whole);
        } else if (st == MM_OK) {
            if (!args_number(value, &number, why, size))
                return 0;
            st = mm_options_set_float(p->options, s->key, number);
        }
        if (st != MM_OK) /* the library says why: "value -1 outside [0, 2147483647]" */
            snprintf(why, size, "%s", mm_last_error());
        return st == MM_OK;
    }
    }
    return 0;
}

/* Read the command line. Returns -1 to go on, else the exit status: 0 after --help (printed to
 * stdout), 2 after a refused argument (the reason printed to stderr). */
static inline int args_parse(arg_parser *p, int argc, char **argv)
{
    char why[256];
    p->n_positional = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            args_usage(p, stdout);
            return 0;
        }
        if (a[0] != '-' || !a[1]) {
            if (p->n_positional == p->max_positional)
                return args_refuse(p, a, "one argument too many");
            p->positional[p->n_positional++] = a;
            continue;
        }
        const arg_spec *s = NULL;
        for (size_t k = 0; k < p->n_specs && !s; k++)
            if (args_name_matches(p->specs[k].names, a))
                s = &p->specs[k];
        if (!s)
            return args_refuse(p, a, "unknown option (--help lists them)");
        const char *value = NULL;
        if (s->value) {
            if (i + 1 == argc) {
                snprintf(why, sizeof why, "needs a value (%s)", s->value);
                return args_refuse(p, a, why);
            }
            value = argv[++i];
        }
        if (!args_take(p, s, value, why, sizeof why))
            return args_refuse(p, a, why);
    }
    if (p->n_positional < p->min_positional)
        return args_refuse(p, p->program, "missing arguments");
    return -1;
}

/* For a program that also takes its model files without flags: MODEL.gguf [MMPROJ.gguf] from
 * the positional arguments where -m / --mmproj were not given. Returns -1 to go on, else 2. */
static inline int args_model_files(const arg_parser *p, const char **model, const char **mmproj)
{
    int n = p->n_positional;
    if (n > 0 && (*model || n > 1 + !*mmproj))
        return args_refuse(p, p->positional[0], "model files given twice");
    if (!*model && n > 0)
        *model = p->positional[0];
    if (!*mmproj && n > 1)
        *mmproj = p->positional[1];
    return -1;
}

/* "1 2 3" (or "1,2,3") as token ids, into a malloc'ed array; 0 with the reason on stderr. */
static inline int args_token_ids(const char *program, const char *flag, const char *text,
                                 int32_t **ids, size_t *n_ids)
{
    size_t cap = strlen(text) / 2 + 1, n = 0;
    int32_t *out = (int32_t *)malloc(cap * sizeof *out);
    if (!out) {
        fprintf(stderr, "%s: %s: out of memory\n", program, flag);
        return 0;
    }
    for (const char *p = text;;) {
        while (*p == ' ' || *p == ',' || *p == '\t' || *p == '\n')
            p++;
        if (!*p)
            break;
        char *end;
        errno = 0;
        long long v = strtoll(p, &end, 10);
        if (end == p || errno == ERANGE || v < 0 || v > INT32_MAX ||
            (*end && *end != ' ' && *end != ',' && *end != '\t' && *end != '\n')) {
            size_t len = strcspn(p, " ,\t\n");
            fprintf(stderr, "%s: %s: '%.*s' is not a token id (a whole number >= 0)\n", program,
                    flag, (int)len, p);
            free(out);
            return 0;
        }
        out[n++] = (int32_t)v;
        p = end;
    }
    if (n == 0) {
        fprintf(stderr, "%s: %s: no token ids in '%s'\n", program, flag, text);
        free(out);
        return 0;
    }
    *ids = out;
    *n_ids = n;
    return 1;
}

/* ---- the progress line ---- */

/* "what  42%" on stderr, rewritten in place and erased when done == total; nothing when stderr
 * is not a terminal (a log file gets no carriage returns). */
static inline void args_progress_line(const char *what, unsigned long long done,
                                      unsigned long long total)
{
    if (!isatty(STDERR_FILENO))
        return;
    if (done >= total)
        fputs("\r\033[K", stderr);
    else
        fprintf(stderr, "\r\033[K%s %3d%%", what, (int)(100 * done / total));
}

/* The progress callback of mm_options_set_progress; user: a label such as "image 2/5" or NULL. */
static inline int args_progress(void *user, mm_progress_stage stage, uint64_t done,
                                uint64_t total)
{
    const char *label = (const char *)user;
    char what[96];
    snprintf(what, sizeof what, "%s%s%s", stage == MM_PROGRESS_MODEL_LOAD ? "loading" : "encoding",
             label ? " " : "", label ? label : "");
    args_progress_line(what, done, total);
    return 0;
}

static inline void args_print_log(void *user, mm_log_level level, const char *message)
{
    static const char *const names[] = {"debug", "info", "warn", "error"};
    (void)user;
    fprintf(stderr, "[libmm %s] %s\n", names[level], message);
}

#endif
