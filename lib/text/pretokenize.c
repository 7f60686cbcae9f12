/* The pre-tokenizer regexes as hand-written matchers. Each alternative of a regex is tried in
 * order at the current position, as a backtracking regex engine would; the comments quote the
 * alternative being matched. */
#include "pretokenize.h"

#include <string.h>

#include "unicode.h"

/* Characters from i while the class is c. */
static size_t run_of(const uint8_t *cls, size_t i, size_t n, mmi_uclass c)
{
    size_t j = i;
    while (j < n && cls[j] == c)
        j++;
    return j - i;
}

static uint32_t ascii_lower(uint32_t c)
{
    return c >= 'A' && c <= 'Z' ? c + 32 : c;
}

/* 's|'t|'re|'ve|'m|'ll|'d, optionally ignoring case: length 2 or 3, or 0. */
static size_t contraction(const uint32_t *cp, size_t i, size_t n, int ignore_case)
{
    if (cp[i] != '\'' || i + 1 >= n)
        return 0;
    uint32_t a = ignore_case ? ascii_lower(cp[i + 1]) : cp[i + 1];
    if (a == 's' || a == 't' || a == 'm' || a == 'd')
        return 2;
    if (i + 2 >= n)
        return 0;
    uint32_t b = ignore_case ? ascii_lower(cp[i + 2]) : cp[i + 2];
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l'))
        return 3;
    return 0;
}

/* \s+(?!\S)|\s+ at a whitespace character: the whole run if it ends the text, else all but
 * its last character (left to start the next word), else the single character. */
static size_t trailing_space(const uint8_t *cls, size_t i, size_t n)
{
    size_t len = run_of(cls, i, n, MMI_UC_SPACE);
    if (i + len == n || len == 1)
        return len;
    return len - 1;
}

static size_t next_gpt2(const uint32_t *cp, const uint8_t *cls, size_t i, size_t n)
{
    size_t len = contraction(cp, i, n, 0);
    if (len)
        return len;
    /* ` ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+`: an optional space, then a run of one class. */
    size_t space = cp[i] == ' ' && i + 1 < n && cls[i + 1] != MMI_UC_SPACE;
    if (space || cls[i] != MMI_UC_SPACE)
        return space + run_of(cls, i + space, n, (mmi_uclass)cls[i + space]);
    return trailing_space(cls, i, n);
}

static int is_newline(uint32_t c)
{
    return c == '\r' || c == '\n';
}

static size_t next_llama3(const uint32_t *cp, const uint8_t *cls, size_t i, size_t n,
                          size_t max_digits)
{
    size_t len = contraction(cp, i, n, 1);
    if (len)
        return len;
    /* [^\r\n\p{L}\p{N}]?\p{L}+ */
    if (cls[i] == MMI_UC_LETTER)
        return run_of(cls, i, n, MMI_UC_LETTER);
    if (cls[i] != MMI_UC_NUMBER && !is_newline(cp[i]) && i + 1 < n &&
        cls[i + 1] == MMI_UC_LETTER)
        return 1 + run_of(cls, i + 1, n, MMI_UC_LETTER);
    /* \p{N}{1,3} (LLaMA 3) or \p{N} (Qwen2) */
    if (cls[i] == MMI_UC_NUMBER) {
        len = run_of(cls, i, n, MMI_UC_NUMBER);
        return len < max_digits ? len : max_digits;
    }
    /*  ?[^\s\p{L}\p{N}]+[\r\n]* */
    size_t space = cp[i] == ' ' && i + 1 < n && cls[i + 1] == MMI_UC_OTHER;
    if (space || cls[i] == MMI_UC_OTHER) {
        len = space + run_of(cls, i + space, n, MMI_UC_OTHER);
        while (i + len < n && is_newline(cp[i + len]))
            len++;
        return len;
    }
    /* \s*[\r\n]+ : backtracking leaves the match ending at the run's last newline. */
    size_t run = run_of(cls, i, n, MMI_UC_SPACE);
    for (size_t k = run; k > 0; k--)
        if (is_newline(cp[i + k - 1]))
            return k;
    return trailing_space(cls, i, n);
}

/* Whether the text at i spells `word` (ASCII). */
static int spells(const uint32_t *cp, size_t i, size_t n, const char *word)
{
    for (; *word; word++, i++)
        if (i >= n || cp[i] != (unsigned char)*word)
            return 0;
    return 1;
}

static size_t next_clip(const uint32_t *cp, const uint8_t *cls, size_t i, size_t n)
{
    static const char *const specials[] = {"<|startoftext|>", "<|endoftext|>"};
    for (int k = 0; k < 2; k++)
        if (spells(cp, i, n, specials[k]))
            return strlen(specials[k]);
    size_t len = contraction(cp, i, n, 0);
    if (len)
        return len;
    if (cls[i] == MMI_UC_NUMBER) /* \p{N}: one at a time */
        return 1;
    return run_of(cls, i, n, (mmi_uclass)cls[i]); /* \p{L}+, [^\s\p{L}\p{N}]+, or \s+ */
}

size_t mmi_pretokenize_next(mmi_pre_kind kind, const uint32_t *cp, const uint8_t *cls, size_t i,
                            size_t n)
{
    switch (kind) {
    case MMI_PRE_LLAMA3:
        return next_llama3(cp, cls, i, n, 3);
    case MMI_PRE_QWEN2:
        return next_llama3(cp, cls, i, n, 1);
    case MMI_PRE_CLIP:
        return next_clip(cp, cls, i, n);
    case MMI_PRE_GPT2:
    default:
        return next_gpt2(cp, cls, i, n);
    }
}
