/* Choosing the next token from logits, with llama.cpp's semantics and order:
 *   repetition penalty -> top-k -> top-p -> min-p -> temperature -> draw.
 *  - repetition penalty p over the distinct ids among the last repeat_last_n tokens of the
 *    sequence (prompt included): a positive logit is divided by p, a negative one multiplied;
 *  - top-k keeps the k largest logits (0 = off);
 *  - top-p keeps the smallest prefix of the sorted candidates whose probabilities (softmax at
 *    temperature 1 over the candidates left) sum to at least p (1 = off);
 *  - min-p keeps candidates whose probability is at least min_p times the largest (0 = off);
 *  - temperature divides the logits; 0 means greedy: the largest penalized logit wins (ties go
 *    to the lower id) and no random number is drawn.
 * Ties in ranking are broken by id, so a seed fixes the output exactly.
 *
 * The random numbers come from xoshiro256** (Blackman & Vigna, 2018) whose 256-bit state is
 * filled from the 64-bit seed by splitmix64; a draw is the top 53 bits of one output scaled to
 * [0, 1). The same seed, settings and logits always give the same tokens on every platform. */
#ifndef MMI_SAMPLER_H
#define MMI_SAMPLER_H

#include <stddef.h>
#include <stdint.h>

#include "mm.h"

typedef struct {
    float temperature;
    int top_k;
    float top_p;
    float min_p;
    float repeat_penalty;
    int repeat_last_n;
    uint64_t seed;
} mmi_sampler_params;

/* The MM_OPT_TEMPERATURE .. MM_OPT_REPEAT_LAST_N and MM_OPT_SEED values of a bag (NULL:
 * defaults, i.e. greedy). */
void mmi_sampler_params_from_options(mmi_sampler_params *p, const mm_options *options);

typedef struct {
    int32_t id;
    float logit;
    float p; /* probability after the last step that computed it */
} mmi_candidate;

typedef struct {
    mmi_sampler_params params;
    int n_vocab;
    mmi_candidate *cand;  /* [n_vocab] work array */
    unsigned char *seen;  /* [n_vocab] marks for the repetition penalty, kept all zero */
    uint64_t rng[4];      /* xoshiro256** state */
} mmi_sampler;

/* Allocate the work arrays for a vocabulary (MM_ERR_NOMEM); params start as the defaults. */
mm_status mmi_sampler_init(mmi_sampler *s, int n_vocab);
void mmi_sampler_free(mmi_sampler *s);
/* Take new settings and restart the random sequence from params->seed. */
void mmi_sampler_set_params(mmi_sampler *s, const mmi_sampler_params *params);

/* Apply every filter to logits[n_vocab] given the sequence so far (history[n_history], ids < 0
 * such as image positions are ignored) and leave the surviving candidates in s->cand[0..n)
 * with p their final probabilities: ranked (larger logit first, then lower id) when top-k or
 * top-p is on, else in id order. Returns n (1 in greedy mode: the winner with p = 1). Never
 * allocates. */
int mmi_sampler_candidates(mmi_sampler *s, const float *logits, const int32_t *history,
                           size_t n_history);
/* The next token: the filters above, then one draw. */
int32_t mmi_sampler_sample(mmi_sampler *s, const float *logits, const int32_t *history,
                           size_t n_history);
/* One uniform draw in [0, 1) from the sampler's generator (exposed for tests). */
double mmi_sampler_uniform(mmi_sampler *s);

#endif
