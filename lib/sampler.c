/* Token sampling (see sampler.h). */
#include "sampler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "options.h"
#include "status.h"

void mmi_sampler_params_from_options(mmi_sampler_params *p, const mm_options *o)
{
    p->temperature = (float)mmi_opt_float(o, MM_OPT_TEMPERATURE);
    p->top_k = (int)mmi_opt_int(o, MM_OPT_TOP_K);
    p->top_p = (float)mmi_opt_float(o, MM_OPT_TOP_P);
    p->min_p = (float)mmi_opt_float(o, MM_OPT_MIN_P);
    p->repeat_penalty = (float)mmi_opt_float(o, MM_OPT_REPEAT_PENALTY);
    p->repeat_last_n = (int)mmi_opt_int(o, MM_OPT_REPEAT_LAST_N);
    p->seed = (uint64_t)mmi_opt_int(o, MM_OPT_SEED);
}

/* ---- xoshiro256**, seeded through splitmix64 ---- */

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t xoshiro_next(uint64_t s[4])
{
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double mmi_sampler_uniform(mmi_sampler *s)
{
    return (double)(xoshiro_next(s->rng) >> 11) * 0x1.0p-53;
}

/* ---- setup ---- */

mm_status mmi_sampler_init(mmi_sampler *s, int n_vocab)
{
    memset(s, 0, sizeof *s);
    s->cand = mmi_array((size_t)n_vocab, sizeof *s->cand);
    s->seen = mmi_calloc((size_t)n_vocab, 1);
    if (!s->cand || !s->seen) {
        mmi_sampler_free(s);
        return mmi_fail(MM_ERR_NOMEM, "sampler: out of memory for %d candidates", n_vocab);
    }
    s->n_vocab = n_vocab;
    mmi_sampler_params defaults;
    mmi_sampler_params_from_options(&defaults, NULL);
    mmi_sampler_set_params(s, &defaults);
    return MM_OK;
}

void mmi_sampler_free(mmi_sampler *s)
{
    mmi_free(s->cand);
    mmi_free(s->seen);
    memset(s, 0, sizeof *s);
}

void mmi_sampler_set_params(mmi_sampler *s, const mmi_sampler_params *params)
{
    s->params = *params;
    uint64_t x = params->seed;
    for (int i = 0; i < 4; i++)
        s->rng[i] = splitmix64(&x);
}

/* ---- filters ---- */

static void apply_repeat_penalty(mmi_sampler *s, const int32_t *history, size_t n_history)
{
    float penalty = s->params.repeat_penalty;
    size_t last_n = (size_t)s->params.repeat_last_n;
    if (penalty == 1.0f || last_n == 0)
        return;
    size_t first = n_history > last_n ? n_history - last_n : 0;
    for (size_t i = first; i < n_history; i++) {
        int32_t id = history[i];
        if (id < 0 || id >= s->n_vocab || s->seen[id])
            continue;
        s->seen[id] = 1;
        float *l = &s->cand[id].logit; /* candidates are still in id order here */
        *l = *l <= 0.0f ? *l * penalty : *l / penalty;
    }
    for (size_t i = first; i < n_history; i++)
        if (history[i] >= 0 && history[i] < s->n_vocab)
            s->seen[history[i]] = 0;
}

static int by_logit_desc(const void *a, const void *b)
{
    const mmi_candidate *x = a, *y = b;
    if (x->logit != y->logit)
        return x->logit > y->logit ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

/* p = softmax(logit / temperature) over the first n candidates, sorted so that the first is
 * the largest. Working on differences from it keeps a tiny temperature from overflowing. */
static void softmax_candidates(mmi_candidate *c, int n, float temperature)
{
    if (!isfinite(c[0].logit)) { /* every logit was -inf or NaN: take the first */
        for (int i = 0; i < n; i++)
            c[i].p = i == 0;
        return;
    }
    double sum = 0.0;
    for (int i = 0; i < n; i++) {
        c[i].p = expf((c[i].logit - c[0].logit) / temperature);
        sum += c[i].p;
    }
    for (int i = 0; i < n; i++)
        c[i].p = (float)(c[i].p / sum);
}

int mmi_sampler_candidates(mmi_sampler *s, const float *logits, const int32_t *history,
                           size_t n_history)
{
    const mmi_sampler_params *p = &s->params;
    mmi_candidate *c = s->cand;
    int n = s->n_vocab;
    /* NaN sorts as -inf, so a broken logit can neither win nor upset the sort. */
    for (int i = 0; i < n; i++)
        c[i] = (mmi_candidate){.id = i, .logit = isnan(logits[i]) ? -INFINITY : logits[i]};
    apply_repeat_penalty(s, history, n_history);

    if (p->temperature <= 0.0f) {
        int best = 0;
        for (int i = 1; i < n; i++)
            if (c[i].logit > c[best].logit)
                best = i;
        c[0] = c[best];
        c[0].p = 1.0f;
        return 1;
    }

    qsort(c, (size_t)n, sizeof *c, by_logit_desc);
    if (p->top_k > 0 && p->top_k < n)
        n = p->top_k;
    if (p->top_p < 1.0f) {
        softmax_candidates(c, n, 1.0f);
        double cum = 0.0;
        for (int i = 0; i < n; i++) {
            cum += c[i].p;
            if (cum >= p->top_p) {
                n = i + 1;
                break;
            }
        }
    }
    if (p->min_p > 0.0f) {
        float min_logit = c[0].logit + logf(p->min_p);
        int keep = 1;
        while (keep < n && c[keep].logit >= min_logit)
            keep++;
        n = keep;
    }
    softmax_candidates(c, n, p->temperature);
    return n;
}

int32_t mmi_sampler_sample(mmi_sampler *s, const float *logits, const int32_t *history,
                           size_t n_history)
{
    int n = mmi_sampler_candidates(s, logits, history, n_history);
    if (n == 1)
        return s->cand[0].id;
    double target = mmi_sampler_uniform(s), cum = 0.0;
    for (int i = 0; i < n; i++) {
        cum += s->cand[i].p;
        if (target < cum)
            return s->cand[i].id;
    }
    return s->cand[n - 1].id; /* rounding left the sum just below the draw */
}
