/* yes_llava: write a tiny LLaVA pair whose greedy answer to any question is "yes", by
 * construction, for testing programs that ask questions (tests/run_5.d/mm_eval).
 *
 *   tests/yes_llava VOCAB.gguf OUT_DIR        writes OUT_DIR/text.gguf and OUT_DIR/vision.gguf
 *
 * The text model (tests/tiny_llama.h, the vocabulary copied from VOCAB.gguf) has every block's
 * attention output and feed-forward down projection set to zero, so each block passes its input
 * through and the last hidden state at a position is the embedding x of the token there. The
 * final norm's weight is 1, so the head sees u = rmsnorm(x), with |u|^2 = n_embd. The head is
 * zero except two rows: row "yes" = 10 u(c), where c is the last token of the llava template's
 * answer prompt ("ASSISTANT:"), and row EOS = 10 u(yes). After the prompt the logit of "yes" is
 * 10 n_embd = 320 while every other is 0 or 10 u(yes).u(c) (|.| < 320 for distinct random
 * vectors); after "yes" EOS wins the same way. So the model says "yes" and stops, whatever the
 * image (tests/tiny_llama.h's vision file) and question. */
#include <math.h>

#include "tiny_llama.h"

typedef struct {
    int32_t prompt_end, yes, eos;
    int n_embd;
    float *embd; /* the token embeddings, copied when written */
} yes_plan;

/* u = rmsnorm(x) with unit weight, as the decoder computes it (eps 1e-5). */
static void rms_normed(const float *x, int n, float *u)
{
    double ss = 0.0;
    for (int i = 0; i < n; i++)
        ss += (double)x[i] * x[i];
    float scale = (float)(1.0 / sqrt(ss / n + 1e-5));
    for (int i = 0; i < n; i++)
        u[i] = x[i] * scale;
}

static void shape_weights(const char *name, float *v, size_t n, void *user)
{
    yes_plan *p = user;
    const int e = p->n_embd;
    if (strcmp(name, "token_embd.weight") == 0) {
        p->embd = malloc(n * sizeof *v);
        if (p->embd)
            memcpy(p->embd, v, n * sizeof *v);
    } else if (strstr(name, "attn_output.weight") || strstr(name, "ffn_down.weight")) {
        memset(v, 0, n * sizeof *v);
    } else if (strcmp(name, "output_norm.weight") == 0) {
        for (size_t i = 0; i < n; i++)
            v[i] = 1.0f;
    } else if (strcmp(name, "output.weight") == 0 && p->embd) {
        memset(v, 0, n * sizeof *v);
        rms_normed(p->embd + (size_t)p->prompt_end * e, e, v + (size_t)p->yes * e);
        rms_normed(p->embd + (size_t)p->yes * e, e, v + (size_t)p->eos * e);
        for (int i = 0; i < e; i++) {
            v[(size_t)p->yes * e + i] *= 10.0f;
            v[(size_t)p->eos * e + i] *= 10.0f;
        }
    }
}

/* The last id of text as the model's tokenizer splits it. */
static int32_t last_token(const mm_model *m, const char *text)
{
    int32_t ids[64];
    size_t n = 0;
    if (mm_tokenize(m, text, strlen(text), 0, ids, 64, &n) != MM_OK || n == 0)
        return -1;
    return ids[n - 1];
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s VOCAB.gguf OUT_DIR\n", argv[0]);
        return 2;
    }
    char text_path[4096], vision_path[4096];
    snprintf(text_path, sizeof text_path, "%s/text.gguf", argv[2]);
    snprintf(vision_path, sizeof vision_path, "%s/vision.gguf", argv[2]);

    /* first the plain model, to read the ids the tokenizer gives */
    tiny_llama c = tiny_llama_default;
    c.vocab_path = argv[1];
    mm_model *m;
    mm_status st = tiny_llama_load(&c, &m);
    if (st != MM_OK) {
        fprintf(stderr, "yes_llava: %s: %s\n", argv[1], mm_last_error());
        return 1;
    }
    yes_plan plan = {.prompt_end = last_token(m, "ASSISTANT:"), .yes = last_token(m, "yes"),
                     .eos = mm_token_eos(m), .n_embd = c.n_embd};
    mm_model_free(m);
    if (plan.prompt_end < 0 || plan.yes < 0 || plan.eos < 0) {
        fprintf(stderr, "yes_llava: the vocabulary lacks 'ASSISTANT:', 'yes' or an EOS\n");
        return 1;
    }

    c.hook = shape_weights;
    c.hook_user = &plan;
    st = tiny_llama_write(&c, text_path);
    if (st == MM_OK && !plan.embd)
        st = MM_ERR_NOMEM;
    if (st == MM_OK)
        st = tiny_vision_write(vision_path, c.n_embd);
    free(plan.embd);
    if (st != MM_OK) {
        fprintf(stderr, "yes_llava: writing %s: %s\n", argv[2], mm_last_error());
        return 1;
    }
    return 0;
}
