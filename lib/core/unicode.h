/* UTF-8 decoding and the Unicode character classes the pre-tokenizer regexes need. */
#ifndef MMI_UNICODE_H
#define MMI_UNICODE_H

#include <stddef.h>
#include <stdint.h>

/* Decode the character at s[0..n), n >= 1, strictly (no overlong forms, surrogates or code
 * points above U+10FFFF). Returns its length (1-4) and sets *cp; 0 if s[0..n) is a valid start
 * cut off by n; -k if the first k bytes (the longest valid start, at least 1) form no
 * character, so that a caller replacing them with U+FFFD resumes at s + k. */
int mmi_utf8_decode(const unsigned char *s, size_t n, uint32_t *cp);

/* Offset of the first byte of s[0..n) that is not part of a valid character (a character cut
 * off at the end counts as invalid), or n when all of it is valid UTF-8. */
size_t mmi_utf8_check(const char *s, size_t n);

/* Write cp (<= U+10FFFF) as UTF-8 into out; returns the length (1-4). */
size_t mmi_utf8_encode(uint32_t cp, char out[4]);

typedef enum {
    MMI_UC_OTHER = 0,  /* not in the classes below: punctuation, symbols, marks, unassigned */
    MMI_UC_LETTER = 1, /* \p{L} */
    MMI_UC_NUMBER = 2, /* \p{N} */
    MMI_UC_SPACE = 3   /* \s: the White_Space property */
} mmi_uclass;

mmi_uclass mmi_unicode_class(uint32_t cp);

/* Most code points one code point decomposes into (canonical decomposition, Hangul too). */
#define MMI_UNICODE_MAX_DECOMPOSITION 4

/* Full canonical decomposition of cp into out (at most MMI_UNICODE_MAX_DECOMPOSITION code
 * points, not yet in canonical order); returns the count. */
size_t mmi_unicode_decompose(uint32_t cp, uint32_t *out);

/* Turn a fully decomposed sequence into NFC in place: canonical ordering, then canonical
 * composition. Returns the new length (never longer). */
size_t mmi_unicode_compose(uint32_t *cps, size_t n);

/* Full lowercase mapping of one code point (as Rust's char::to_lowercase and Python's
 * str.lower on a lone character): writes 1 or 2 code points, returns the count. */
size_t mmi_unicode_lower(uint32_t cp, uint32_t out[2]);
/* Unicode version of the tables, e.g. "14.0.0". */
const char *mmi_unicode_version(void);

#endif
