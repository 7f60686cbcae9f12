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

/* Candidate order: larger logit first, then lower id. */
static int ranks_before(const mmi_candidate *x, const mmi_candidate *y)
{
    return x->logit != y->logit ? x->logit > y->logit : x->id < y->id;
}

static int by_rank(const void *a, const void *b)
{
    return ranks_before(a, b) ? -1 : ranks_before(b, a) ? 1 : 0;
}

/* Restore the heap below i of a heap whose root is the lowest-ranked of c[0..k). */
static void sift_down(mmi_candidate *c, int k, int i)
{
    for (;;) {
        int low = i, l = 2 * i + 1, r = l + 1;
        if (l < k && ranks_before(&c[low], &c[l]))
            low = l;
        if (r < k && ranks_before(&c[low], &c[r]))
            low = r;
        if (low == i)
            return;
        mmi_candidate t = c[i];
        c[i] = c[low];
        c[low] = t;
        i = low;
    }
}

/* Move the k best of c[0..n) to c[0..k), sorted, the rest behind them in some order: a heap
 * of the best k seen so far, O(n log k) instead of sorting the whole vocabulary. */
static void select_top_k(mmi_candidate *c, int n, int k)
{
    for (int i = k / 2 - 1; i >= 0; i--)
        sift_down(c, k, i);
    for (int i = k; i < n; i++)
        if (ranks_before(&c[i], &c[0])) {
            mmi_candidate evicted = c[0];
            c[0] = c[i];
            c[i] = evicted;
            sift_down(c, k, 0);
        }
    qsort(c, (size_t)k, sizeof *c, by_rank);
}

/* p = softmax(logit / temperature) over c[0..n). Working on differences from the largest logit
 * keeps a tiny temperature from overflowing. */
static void softmax_candidates(mmi_candidate *c, int n, float temperature)
{
    float max = c[0].logit;
    for (int i = 1; i < n; i++)
        max = c[i].logit > max ? c[i].logit : max;
    if (!isfinite(max)) { /* every logit was -inf or NaN: take the first */
        for (int i = 0; i < n; i++)
            c[i].p = i == 0;
        return;
    }
    double sum = 0.0;
    for (int i = 0; i < n; i++) {
        c[i].p = expf((c[i].logit - max) / temperature);
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
    /* NaN ranks as -inf, so a broken logit can neither win nor upset the ordering. */
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

    /* Only top-k and top-p need the order; without them the candidates stay in id order. */
    int ranked = 0;
    if (p->top_k > 0 && p->top_k < n) {
        select_top_k(c, n, p->top_k);
        n = p->top_k;
        ranked = n;
    }
    if (p->top_p < 1.0f) {
        softmax_candidates(c, n, 1.0f);
        /* Rank a growing head of the candidates until it holds the nucleus: a few hundred of
         * a large vocabulary usually do, without sorting all of it. */
        int k = ranked ? n : 256;
        for (;;) {
            if (k >= n)
                k = n;
            if (k > ranked) {
                select_top_k(c, n, k);
                ranked = k;
            }
            double cum = 0.0;
            int cut = 0;
            while (cut < k && cum < p->top_p)
                cum += c[cut++].p;
            if (cum >= p->top_p || k == n) {
                n = cut;
                break;
            }
            k *= 4;
        }
    }
    if (p->min_p > 0.0f) { /* keeps the order: the survivors are packed to the front */
        float max = c[0].logit;
        for (int i = 1; i < n; i++)
            max = c[i].logit > max ? c[i].logit : max;
        float min_logit = max + logf(p->min_p);
        int keep = 0;
        for (int i = 0; i < n; i++)
            if (c[i].logit >= min_logit)
                c[keep++] = c[i];
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
