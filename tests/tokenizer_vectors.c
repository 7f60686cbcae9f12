/* Tokenizer conformance runner: tests/tokenizer_vectors DIR
 *
 * For every NAME.gguf in DIR that has NAME.gguf.inp and NAME.gguf.out beside it (llama.cpp's
 * vocab test files), encodes each test string of the .inp without special tokens and compares
 * with the ids on the matching line of the .out. Prints one line per vocabulary; exits non-zero
 * on any mismatch, on a vocabulary that cannot be read, or if DIR holds no such triple (a
 * .gguf with neither test file beside it is skipped).
 *
 * File format, as llama.cpp's test-tokenizer-0 reads it: the .inp is test strings separated by
 * lines "__ggml_vocab_test__"; each string's text is everything between the newline that ends
 * the previous separator line and the newline that starts the next one (so a string may be
 * empty or consist of newlines, and the file ends with a separator line). The .out has one
 * line per string: the ids, separated by spaces. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"
#include "mm.h"
#include "tokenizer.h"

#define SEPARATOR "\n__ggml_vocab_test__\n"

static char *read_file(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 4096, n = 0;
    char *data = malloc(cap + 2);
    while (data) {
        n += fread(data + n, 1, cap - n, f);
        if (n < cap)
            break;
        cap *= 2;
        char *bigger = realloc(data, cap + 2);
        if (!bigger)
            free(data);
        data = bigger;
    }
    int failed = !data || ferror(f);
    fclose(f);
    if (failed) {
        free(data);
        return NULL;
    }
    *size = n;
    return data;
}

/* Split the .inp text in place into strings; returns how many (at most max). Like a reader
 * that appends "\n" to every line, a last line without one gets it. */
static size_t split_inputs(char *text, size_t size, char **strings, size_t *lens, size_t max)
{
    if (size == 0 || text[size - 1] != '\n')
        text[size++] = '\n';
    text[size] = '\0';
    size_t n = 0, start = 0, seplen = strlen(SEPARATOR);
    for (size_t i = 0; i + seplen <= size && n < max; i++) {
        if (memcmp(text + i, SEPARATOR, seplen) == 0) {
            strings[n] = text + start;
            lens[n++] = i - start;
            i += seplen - 1;
            start = i + 1;
        }
    }
    return n;
}

/* Parse one .out line of ids; returns the count, or -1 on a malformed line. */
static long parse_ids(const char *line, size_t len, int32_t *ids, size_t max)
{
    size_t n = 0;
    const char *p = line, *end = line + len;
    while (p < end) {
        if (*p == ' ' || *p == '\r') {
            p++;
            continue;
        }
        char *next;
        errno = 0;
        long v = strtol(p, &next, 10);
        if (next == p || next > end || errno || v < 0 || v > INT32_MAX || n == max)
            return -1;
        ids[n++] = (int32_t)v;
        p = next;
    }
    return (long)n;
}

static void print_ids(const char *label, const int32_t *ids, size_t n)
{
    fprintf(stderr, "    %s:", label);
    for (size_t i = 0; i < n; i++)
        fprintf(stderr, " %d", (int)ids[i]);
    fprintf(stderr, "\n");
}

static int exists(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f)
        fclose(f);
    return f != NULL;
}

/* Check one vocabulary; returns 0 when every string matches, -1 when it has no test files. */
static int check_vocab(const char *dir, const char *name)
{
    char path[4096], inp_path[4200], out_path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    snprintf(inp_path, sizeof inp_path, "%s.inp", path);
    snprintf(out_path, sizeof out_path, "%s.out", path);
    if (!exists(inp_path) && !exists(out_path)) {
        printf("%s: no .inp/.out beside it, skipped\n", name);
        return -1;
    }
    size_t inp_size, out_size;
    char *inp = read_file(inp_path, &inp_size);
    char *out = read_file(out_path, &out_size);
    mmi_gguf *g = NULL;
    mmi_tokenizer *tok = NULL;
    int failed = 1;
    enum { MAX_STRINGS = 100000, MAX_IDS = 1 << 20 };
    char **strings = malloc(MAX_STRINGS * sizeof *strings);
    size_t *lens = malloc(MAX_STRINGS * sizeof *lens);
    int32_t *expected = malloc(MAX_IDS * sizeof *expected);
    mmi_tokens got = {0};
    if (!inp || !out || !strings || !lens || !expected) {
        printf("%s: cannot read %s or %s\n", name, inp_path, out_path);
        goto done;
    }
    if (mmi_gguf_open(path, 1, &g) != MM_OK || mmi_tokenizer_load(g, &tok) != MM_OK) {
        printf("%s: cannot load the vocabulary: %s\n", name, mm_last_error());
        goto done;
    }
    size_t n = split_inputs(inp, inp_size, strings, lens, MAX_STRINGS);
    size_t n_lines = 0, matched = 0;
    const char *line = out, *out_end = out + out_size;
    for (size_t s = 0; s < n && line < out_end; s++, n_lines++) {
        const char *eol = memchr(line, '\n', (size_t)(out_end - line));
        size_t line_len = eol ? (size_t)(eol - line) : (size_t)(out_end - line);
        long n_expected = parse_ids(line, line_len, expected, MAX_IDS);
        line += line_len + 1;
        got.n = 0;
        mm_status st = mmi_tokenize(tok, strings[s], lens[s], 0, &got);
        if (n_expected < 0 || st != MM_OK) {
            fprintf(stderr, "%s: string %zu: %s\n", name, s + 1,
                    n_expected < 0 ? "malformed .out line" : mm_last_error());
            continue;
        }
        /* The bound the session refuses long text with before tokenizing must hold. */
        if ((size_t)n_expected < mmi_tokenizer_min_tokens(tok, lens[s])) {
            fprintf(stderr, "%s: string %zu: %ld tokens, under the lower bound %zu\n", name,
                    s + 1, n_expected, mmi_tokenizer_min_tokens(tok, lens[s]));
            continue;
        }
        if ((size_t)n_expected == got.n &&
            memcmp(expected, got.ids, got.n * sizeof *got.ids) == 0) {
            matched++;
            continue;
        }
        fprintf(stderr, "%s: string %zu differs: \"%.*s\"\n", name, s + 1, (int)lens[s],
                strings[s]);
        print_ids("expected", expected, (size_t)n_expected);
        print_ids("got     ", got.ids, got.n);
    }
    for (; line < out_end; n_lines++) { /* lines left over: the files disagree */
        const char *eol = memchr(line, '\n', (size_t)(out_end - line));
        line = eol ? eol + 1 : out_end;
    }
    printf("%s: %zu of %zu strings match\n", name, matched, n);
    if (n_lines != n)
        printf("%s: the .inp has %zu strings but the .out %zu lines\n", name, n, n_lines);
    failed = n == 0 || matched != n || n_lines != n;
done:
    mmi_tokens_free(&got);
    mmi_tokenizer_free(tok);
    if (g)
        mmi_gguf_close(g);
    free(inp);
    free(out);
    free(strings);
    free(lens);
    free(expected);
    return failed;
}

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    DIR *d = opendir(argv[1]);
    if (!d) {
        fprintf(stderr, "%s: cannot open %s\n", argv[0], argv[1]);
        return 1;
    }
    char *names[1024];
    size_t n = 0;
    for (struct dirent *e; (e = readdir(d)) && n < 1024;) {
        size_t len = strlen(e->d_name);
        if (len > 5 && strcmp(e->d_name + len - 5, ".gguf") == 0)
            names[n++] = strdup(e->d_name);
    }
    closedir(d);
    qsort(names, n, sizeof *names, compare_names);
    int failures = 0, checked = 0;
    for (size_t i = 0; i < n; i++) {
        int r = names[i] ? check_vocab(argv[1], names[i]) : 1;
        failures += r > 0;
        checked += r >= 0;
        free(names[i]);
    }
    if (checked == 0)
        printf("%s: no *.gguf with .inp and .out in %s\n", argv[0], argv[1]);
    return failures || checked == 0 ? 1 : 0;
}
