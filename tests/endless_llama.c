/* endless_llama: write a tiny random-weight llama that never ends an answer by itself, for
 * tests that need a generation to run until it is stopped (tests/server/run.sh: a client that
 * leaves mid-stream must free its slot).
 *
 *   tests/endless_llama VOCAB.gguf OUT.gguf
 *
 * tests/tiny_llama.h's model, wider and with a long context, the vocabulary copied from
 * VOCAB.gguf. The head's row of the end-of-sequence token is zero, so its logit is always 0,
 * while the largest of the other ~32000 random logits is positive: greedy decoding never picks
 * it, and only max_tokens, the context or a cancel ends the answer. */
#include "tiny_llama.h"

typedef struct {
    int32_t eos;
    int n_embd;
} eos_row;

static void zero_eos_row(const char *name, float *values, size_t n, void *user)
{
    const eos_row *r = user;
    if (strcmp(name, "output.weight") == 0 && (size_t)(r->eos + 1) * r->n_embd <= n)
        memset(values + (size_t)r->eos * r->n_embd, 0, (size_t)r->n_embd * sizeof *values);
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s VOCAB.gguf OUT.gguf\n", argv[0]);
        return 2;
    }
    tiny_llama c = tiny_llama_default;
    c.vocab_path = argv[1];
    c.n_embd = 128;
    c.n_ff = 256;
    c.head_dim = 32;
    c.n_ctx = 32768;
    mm_model *m;
    if (tiny_llama_load(&c, &m) != MM_OK) { /* first, to read the end-of-sequence id */
        fprintf(stderr, "endless_llama: %s: %s\n", argv[1], mm_last_error());
        return 1;
    }
    eos_row row = {.eos = mm_token_eos(m), .n_embd = c.n_embd};
    mm_model_free(m);
    c.hook = zero_eos_row;
    c.hook_user = &row;
    if (row.eos < 0 || tiny_llama_write(&c, argv[2]) != MM_OK) {
        fprintf(stderr, "endless_llama: %s: %s\n", argv[2], row.eos < 0 ? "no EOS token" :
                mm_last_error());
        return 1;
    }
    return 0;
}
