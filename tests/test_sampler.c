/* The sampler (lib/lm/sampler.c) against distributions worked out by hand, the published test
 * vectors of its generators, and llama.cpp's order of filters. */
#include <math.h>
#include <string.h>

#include "sampler.h"
#include "testutil.h"

#define ck_near(a, b, tol) ck_assert_msg(fabs((double)(a) - (double)(b)) <= (tol), \
                                         "%s = %.9g, expected %.9g", #a, (double)(a), (double)(b))

static mmi_sampler make(int n_vocab, mmi_sampler_params p)
{
    mmi_sampler s;
    ck_assert_ok(mmi_sampler_init(&s, n_vocab));
    mmi_sampler_set_params(&s, &p);
    return s;
}

/* Settings: everything off, temperature 1. */
static mmi_sampler_params plain(void)
{
    return (mmi_sampler_params){.temperature = 1, .top_p = 1, .repeat_penalty = 1,
                                .repeat_last_n = 64};
}

/* logits = ln(0.5, 0.25, 0.15, 0.1): the distribution at temperature 1 is those numbers. */
static float probs4[4];

static void setup_probs4(void)
{
    const double p[4] = {0.5, 0.25, 0.15, 0.1};
    for (int i = 0; i < 4; i++)
        probs4[i] = (float)log(p[i]);
}

/* The candidates left, as (id, p) pairs in order. */
static void check_candidates(mmi_sampler *s, int n, const int32_t *ids, const double *p)
{
    for (int i = 0; i < n; i++) {
        ck_assert_int_eq(s->cand[i].id, ids[i]);
        ck_near(s->cand[i].p, p[i], 2e-6);
    }
}

START_TEST(greedy_takes_the_largest_lower_id_on_ties)
{
    mmi_sampler s = make(4, (mmi_sampler_params){.top_p = 1, .repeat_penalty = 1});
    const float logits[4] = {1, 3, 3, 2};
    ck_assert_int_eq(mmi_sampler_candidates(&s, logits, NULL, 0), 1);
    ck_assert_int_eq(s.cand[0].id, 1);
    ck_assert_float_eq(s.cand[0].p, 1.0f);
    uint64_t before[4];
    memcpy(before, s.rng, sizeof before);
    ck_assert_int_eq(mmi_sampler_sample(&s, logits, NULL, 0), 1);
    ck_assert_mem_eq(s.rng, before, sizeof before); /* no random number drawn */
    mmi_sampler_free(&s);
}
END_TEST

START_TEST(temperature_reshapes_the_distribution)
{
    setup_probs4();
    mmi_sampler s = make(4, plain());
    ck_assert_int_eq(mmi_sampler_candidates(&s, probs4, NULL, 0), 4);
    check_candidates(&s, 4, (const int32_t[]){0, 1, 2, 3}, (const double[]){.5, .25, .15, .1});
    /* T = 2: p ∝ sqrt(p) = .70711, .5, .38730, .31623 (sum 1.91063). */
    mmi_sampler_params p = plain();
    p.temperature = 2;
    mmi_sampler_set_params(&s, &p);
    ck_assert_int_eq(mmi_sampler_candidates(&s, probs4, NULL, 0), 4);
    check_candidates(&s, 4, (const int32_t[]){0, 1, 2, 3},
                     (const double[]){0.37009034, 0.26169339, 0.20270683, 0.16550943});
    mmi_sampler_free(&s);
}
END_TEST

START_TEST(top_k_top_p_min_p_cut_where_expected)
{
    setup_probs4();
    /* The logits arrive in a shuffled order: ids must follow their values. */
    const float shuffled[4] = {probs4[2], probs4[0], probs4[3], probs4[1]};
    mmi_sampler_params p = plain();
    p.top_k = 2;
    mmi_sampler s = make(4, p);
    ck_assert_int_eq(mmi_sampler_candidates(&s, shuffled, NULL, 0), 2);
    check_candidates(&s, 2, (const int32_t[]){1, 3}, (const double[]){2.0 / 3, 1.0 / 3});

    p = plain();
    p.top_p = 0.7f; /* .5 < .7 <= .75: two kept */
    mmi_sampler_set_params(&s, &p);
    ck_assert_int_eq(mmi_sampler_candidates(&s, probs4, NULL, 0), 2);
    check_candidates(&s, 2, (const int32_t[]){0, 1}, (const double[]){2.0 / 3, 1.0 / 3});
    p.top_p = 0.8f; /* .75 < .8 <= .9: three kept, renormalised by .9 */
    mmi_sampler_set_params(&s, &p);
    ck_assert_int_eq(mmi_sampler_candidates(&s, probs4, NULL, 0), 3);
    check_candidates(&s, 3, (const int32_t[]){0, 1, 2}, (const double[]){5.0 / 9, 2.5 / 9, 1.5 / 9});

    p = plain();
    p.min_p = 0.4f; /* threshold .4 * .5 = .2: .25 stays, .15 goes */
    mmi_sampler_set_params(&s, &p);
    ck_assert_int_eq(mmi_sampler_candidates(&s, probs4, NULL, 0), 2);
    p.min_p = 0.25f; /* threshold .125: .15 stays, .1 goes */
    mmi_sampler_set_params(&s, &p);
    ck_assert_int_eq(mmi_sampler_candidates(&s, probs4, NULL, 0), 3);
    check_candidates(&s, 3, (const int32_t[]){0, 1, 2}, (const double[]){5.0 / 9, 2.5 / 9, 1.5 / 9});

    /* Chained: top-k 3 leaves .5/.9, .25/.9, .15/.9; top-p .8 on those (.5556, .8333) keeps
     * two; temperature 2 then gives sqrt(.5) : sqrt(.25) = .58579 : .41421. */
    p = plain();
    p.top_k = 3;
    p.top_p = 0.8f;
    p.temperature = 2;
    mmi_sampler_set_params(&s, &p);
    ck_assert_int_eq(mmi_sampler_candidates(&s, probs4, NULL, 0), 2);
    check_candidates(&s, 2, (const int32_t[]){0, 1}, (const double[]){0.58578644, 0.41421356});
    mmi_sampler_free(&s);
}
END_TEST

/* The heap selection of top-k equals sorting the whole vocabulary and cutting, ties included
 * (logits drawn from 16 values, so many are equal and the id decides). */
static int rank_desc(const void *a, const void *b)
{
    const mmi_candidate *x = a, *y = b;
    if (x->logit != y->logit)
        return x->logit > y->logit ? -1 : 1;
    return x->id - y->id;
}

START_TEST(top_k_selection_equals_a_full_sort)
{
    enum { V = 5000 };
    static float logits[V];
    static mmi_candidate all[V];
    uint32_t state = 7;
    for (int i = 0; i < V; i++) {
        state = state * 1664525u + 1013904223u;
        logits[i] = (float)(state >> 28) - 8.0f;
        all[i] = (mmi_candidate){.id = i, .logit = logits[i]};
    }
    qsort(all, V, sizeof *all, rank_desc);
    const int ks[] = {1, 2, 7, 40, 999, 4999};
    for (size_t j = 0; j < sizeof ks / sizeof ks[0]; j++) {
        mmi_sampler_params p = plain();
        p.top_k = ks[j];
        mmi_sampler s = make(V, p);
        ck_assert_int_eq(mmi_sampler_candidates(&s, logits, NULL, 0), ks[j]);
        for (int i = 0; i < ks[j]; i++)
            ck_assert_msg(s.cand[i].id == all[i].id, "k=%d rank %d: id %d, expected %d", ks[j],
                          i, s.cand[i].id, all[i].id);
        mmi_sampler_free(&s);
    }
    /* Top-p alone ranks a growing head of the vocabulary: the nucleus must be the ranked
     * prefix whose probabilities first reach p. */
    double sum = 0, cum = 0;
    for (int i = 0; i < V; i++)
        sum += exp((double)all[i].logit - all[0].logit);
    int want = 0;
    while (cum < 0.6)
        cum += exp((double)all[want++].logit - all[0].logit) / sum;
    ck_assert_int_gt(want, 256); /* beyond the first head the sampler ranks */
    mmi_sampler_params p = plain();
    p.top_p = 0.6f;
    mmi_sampler s = make(V, p);
    ck_assert_int_eq(mmi_sampler_candidates(&s, logits, NULL, 0), want);
    for (int i = 0; i < want; i++)
        ck_assert_int_eq(s.cand[i].id, all[i].id);
    mmi_sampler_free(&s);
}
END_TEST

START_TEST(repetition_penalty_as_llama_cpp)
{
    /* Positive logits are divided, negative ones multiplied, each distinct id once; ids < 0
     * (image positions) are skipped. */
    mmi_sampler_params p = plain();
    p.repeat_penalty = 2;
    mmi_sampler s = make(4, p);
    const float logits[4] = {2, -1, 0.5f, 3};
    const int32_t history[5] = {0, 1, 1, -1, 0};
    /* No top-k / top-p: the candidates stay in id order. */
    ck_assert_int_eq(mmi_sampler_candidates(&s, logits, history, 5), 4);
    ck_assert_int_eq(s.cand[3].id, 3);
    ck_assert_float_eq(s.cand[0].logit, 1.0f);
    ck_assert_float_eq(s.cand[1].logit, -2.0f);
    ck_assert_float_eq(s.cand[2].logit, 0.5f);
    ck_assert_float_eq(s.cand[3].logit, 3.0f);
    /* Only the last repeat_last_n = 1 token counts: 0, not 1. */
    p.repeat_last_n = 1;
    mmi_sampler_set_params(&s, &p);
    mmi_sampler_candidates(&s, logits, history, 5);
    ck_assert_float_eq(s.cand[0].logit, 1.0f);  /* id 0 penalised */
    ck_assert_float_eq(s.cand[1].logit, -1.0f); /* id 1 not */
    /* The penalty acts before top-k and in greedy mode: {5, 4, 1} with 0 seen, penalty 10,
     * gives {0.5, 4, 1}: top-k 1 and greedy both pick id 1. */
    const float l3[3] = {5, 4, 1};
    const int32_t seen[1] = {0};
    mmi_sampler s3 = make(3, (mmi_sampler_params){.temperature = 1, .top_k = 1, .top_p = 1,
                                                  .repeat_penalty = 10, .repeat_last_n = 8});
    ck_assert_int_eq(mmi_sampler_sample(&s3, l3, seen, 1), 1);
    s3.params.temperature = 0;
    ck_assert_int_eq(mmi_sampler_sample(&s3, l3, seen, 1), 1);
    ck_assert_int_eq(mmi_sampler_sample(&s3, l3, NULL, 0), 0);
    mmi_sampler_free(&s3);
    mmi_sampler_free(&s);
}
END_TEST

START_TEST(generators_match_published_vectors)
{
    mmi_sampler s = make(2, plain());
    /* splitmix64 from 0 gives 0xe220a8397b1dcdaf first (Vigna's splitmix64.c). */
    mmi_sampler_params p = plain();
    p.seed = 0;
    mmi_sampler_set_params(&s, &p);
    ck_assert_uint_eq(s.rng[0], 0xe220a8397b1dcdafull);
    /* xoshiro256** from state {1, 2, 3, 4}: 11520, 0, 1509978240, 1215971899390074240
     * (the rand_xoshiro crate's test vectors); a draw is the top 53 bits / 2^53. */
    const uint64_t expected[4] = {11520u, 0u, 1509978240u, 1215971899390074240ull};
    const uint64_t state[4] = {1, 2, 3, 4};
    memcpy(s.rng, state, sizeof state);
    for (int i = 0; i < 4; i++)
        ck_assert(mmi_sampler_uniform(&s) == (double)(expected[i] >> 11) * 0x1p-53);
    mmi_sampler_free(&s);
}
END_TEST

START_TEST(same_seed_same_tokens_and_frequencies_match)
{
    setup_probs4();
    mmi_sampler_params p = plain();
    p.seed = 1234;
    mmi_sampler a = make(4, p), b = make(4, p);
    enum { N = 20000 };
    int counts[4] = {0}, differ = 0;
    for (int i = 0; i < N; i++) {
        int32_t t = mmi_sampler_sample(&a, probs4, NULL, 0);
        ck_assert_int_eq(t, mmi_sampler_sample(&b, probs4, NULL, 0));
        counts[t]++;
    }
    /* Binomial standard deviation is at most sqrt(.25 / N) = .0035: 4.3 sigma. */
    const double want[4] = {.5, .25, .15, .1};
    for (int i = 0; i < 4; i++)
        ck_near((double)counts[i] / N, want[i], 0.015);
    /* Another seed gives another sequence; the first seed again gives the first one. */
    p.seed = 1235;
    mmi_sampler_set_params(&b, &p);
    p.seed = 1234;
    mmi_sampler_set_params(&a, &p);
    mmi_sampler c = make(4, p);
    for (int i = 0; i < 64; i++) {
        int32_t t = mmi_sampler_sample(&a, probs4, NULL, 0);
        differ += t != mmi_sampler_sample(&b, probs4, NULL, 0);
        ck_assert_int_eq(t, mmi_sampler_sample(&c, probs4, NULL, 0));
    }
    ck_assert_int_gt(differ, 0);
    mmi_sampler_free(&a);
    mmi_sampler_free(&b);
    mmi_sampler_free(&c);
}
END_TEST

START_TEST(nan_and_infinite_logits_are_harmless)
{
    mmi_sampler s = make(3, plain());
    const float logits[3] = {NAN, 1, 0};
    ck_assert_int_eq(mmi_sampler_candidates(&s, logits, NULL, 0), 3);
    ck_assert_int_eq(s.cand[0].id, 0);
    ck_assert_float_eq(s.cand[0].p, 0.0f);
    for (int i = 0; i < 100; i++)
        ck_assert_int_ne(mmi_sampler_sample(&s, logits, NULL, 0), 0);
    const float dead[3] = {-INFINITY, -INFINITY, NAN};
    int32_t t = mmi_sampler_sample(&s, dead, NULL, 0);
    ck_assert(t >= 0 && t < 3);
    /* A tiny temperature is greedy in effect, without overflow. */
    mmi_sampler_params p = plain();
    p.temperature = 1e-9f;
    mmi_sampler_set_params(&s, &p);
    ck_assert_int_eq(mmi_sampler_sample(&s, logits, NULL, 0), 1);
    ck_assert_float_eq(s.cand[1].p, 1.0f); /* id order: no top-k / top-p */
    mmi_sampler_free(&s);
}
END_TEST

START_TEST(options_reach_the_sampler)
{
    mm_options *o;
    ck_assert_ok(mm_options_create(&o));
    mmi_sampler_params p;
    mmi_sampler_params_from_options(&p, NULL);
    ck_assert_float_eq(p.temperature, 0.0f); /* default: greedy */
    ck_assert_float_eq(p.repeat_penalty, 1.0f);
    ck_assert_int_eq(p.repeat_last_n, 64);
    ck_assert_ok(mm_options_set_float(o, MM_OPT_TEMPERATURE, 0.7));
    ck_assert_ok(mm_options_set_int(o, MM_OPT_TOP_K, 40));
    ck_assert_ok(mm_options_set_float(o, MM_OPT_TOP_P, 0.9));
    ck_assert_ok(mm_options_set_float(o, MM_OPT_MIN_P, 0.05));
    ck_assert_ok(mm_options_set_float(o, MM_OPT_REPEAT_PENALTY, 1.1));
    ck_assert_ok(mm_options_set_int(o, MM_OPT_REPEAT_LAST_N, 32));
    ck_assert_ok(mm_options_set_int(o, MM_OPT_SEED, 99));
    mmi_sampler_params_from_options(&p, o);
    ck_assert_float_eq(p.temperature, 0.7f);
    ck_assert_int_eq(p.top_k, 40);
    ck_assert_float_eq(p.top_p, 0.9f);
    ck_assert_float_eq(p.min_p, 0.05f);
    ck_assert_float_eq(p.repeat_penalty, 1.1f);
    ck_assert_int_eq(p.repeat_last_n, 32);
    ck_assert_uint_eq(p.seed, 99);
    mm_options_free(o);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("sampler");
    TCase *tc = tcase_create("sampler");
    tcase_add_test(tc, greedy_takes_the_largest_lower_id_on_ties);
    tcase_add_test(tc, temperature_reshapes_the_distribution);
    tcase_add_test(tc, top_k_top_p_min_p_cut_where_expected);
    tcase_add_test(tc, top_k_selection_equals_a_full_sort);
    tcase_add_test(tc, repetition_penalty_as_llama_cpp);
    tcase_add_test(tc, generators_match_published_vectors);
    tcase_add_test(tc, same_seed_same_tokens_and_frequencies_match);
    tcase_add_test(tc, nan_and_infinite_logits_are_harmless);
    tcase_add_test(tc, options_reach_the_sampler);
    suite_add_tcase(s, tc);
    return test_run_suite(s);
}
