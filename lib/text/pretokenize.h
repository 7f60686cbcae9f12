/* Pre-tokenizers of byte-level BPE vocabularies: the regexes that cut text into words before
 * merging, written out by hand (tokenizer.ggml.pre names which one a vocabulary uses). */
#ifndef MMI_PRETOKENIZE_H
#define MMI_PRETOKENIZE_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    /* GPT-2: 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
    MMI_PRE_GPT2 = 1,
    /* LLaMA 3: (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
     *          ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+ */
    MMI_PRE_LLAMA3 = 2,
    /* Qwen2: as LLaMA 3 but \p{N} one digit at a time. */
    MMI_PRE_QWEN2 = 3,
    /* CLIP (on lowercased NFC text): <\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|
     * \p{L}+|\p{N}|[^\s\p{L}\p{N}]+ ; the whitespace between matches is dropped. */
    MMI_PRE_CLIP = 4
} mmi_pre_kind;

/* Length in characters of the word that starts at character i of a text, given the text's
 * code points cp[0..n) and their classes cls[0..n) (mmi_uclass values); i < n. Matches the
 * regex exactly: leftmost alternative first, greedy with backtracking. For MMI_PRE_CLIP a run
 * of whitespace comes back as a word of its own, for the caller to drop. */
size_t mmi_pretokenize_next(mmi_pre_kind kind, const uint32_t *cp, const uint8_t *cls, size_t i,
                            size_t n);

#endif
