/* Faults and threads around a whole conversation on a tiny LLaVA pair written by the test:
 *  - allocation failure: the model load, image decode, session, a message with the image and a
 *    sampled generation run with allocation 1, 2, 3, ... failing in turn until the run succeeds;
 *    every failing run returns MM_ERR_NOMEM with a message and frees everything (checked here
 *    by the allocator's count of live blocks, and by LSan under `make SANITIZE=1 test`);
 *  - threads: 4 threads share one mm_model, each with its own sessions, and produce exactly
 *    what the same conversations give one after another (`make tsan` runs this case under
 *    ThreadSanitizer);
 *  - cancellation from another thread while an image is being encoded and while a prompt is
 *    being evaluated: MM_ERR_CANCELLED, the session as it was, and usable afterwards. */
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include "alloc.h"
#include "testutil.h"
#include "tiny_llama.h"

/* The 16-token SentencePiece vocabulary of the GGUF fuzz seeds. */
#define SPM_VOCAB "tests/fuzz/corpus/gguf/llama_spm.gguf"
#define IMAGE_FILE "tests/data/images/rgb8.png"

static char text_path[512], vision_path[512];
static uint8_t *png; /* IMAGE_FILE's bytes */
static size_t png_size;

static void write_pair(const tiny_llama *c, const tiny_vision *v)
{
    snprintf(text_path, sizeof text_path, "%s", tiny_temp_path("robust_text.gguf"));
    snprintf(vision_path, sizeof vision_path, "%s", tiny_temp_path("robust_vision.gguf"));
    ck_assert_ok(tiny_llama_write(c, text_path));
    ck_assert_ok(tiny_vision_write_sized(vision_path, c->n_embd, v));
}

static void read_png(void)
{
    FILE *f = fopen(IMAGE_FILE, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", IMAGE_FILE);
    png = malloc(1 << 16);
    png_size = fread(png, 1, 1 << 16, f);
    fclose(f);
    ck_assert_uint_gt(png_size, 0);
}

static void small_pair(void)
{
    tiny_llama c = tiny_llama_default;
    c.vocab_path = SPM_VOCAB;
    c.n_ctx = 128;
    write_pair(&c, &tiny_vision_default);
    read_png();
}

static void remove_pair(void)
{
    unlink(text_path);
    unlink(vision_path);
    free(png);
}

/* ---- one conversation ---- */

#define MAX_GENERATED 16

typedef struct {
    const char *prompt;
    int64_t seed;
    int32_t tokens[MAX_GENERATED]; /* the first answer */
    size_t n_tokens;
    char text[512];                /* the streamed text of the second answer */
    size_t text_len;
    mm_stop_reason stops[2];       /* how each answer ended */
    int n_past;                    /* positions at the end */
    float logits[64];              /* the logits after the second answer */
    size_t n_logits;
} conversation;

static int collect_text(void *user, const char *piece, size_t len)
{
    conversation *c = user;
    if (c->text_len + len < sizeof c->text) {
        memcpy(c->text + c->text_len, piece, len);
        c->text_len += len;
    }
    return 0;
}

/* Decode the picture, open a session, ask about the picture, read a sampled answer token by
 * token, then a second turn streamed through a callback. Everything is freed on every path. */
static mm_status converse(mm_model *m, conversation *c)
{
    mm_image *image = NULL;
    mm_options *o = NULL;
    mm_session *s = NULL;
    c->n_tokens = c->text_len = c->n_logits = 0;
    mm_status st = mm_image_load_memory(png, png_size, NULL, &image);
    if (st == MM_OK)
        st = mm_options_create(&o);
    if (st == MM_OK)
        st = mm_options_set_int(o, MM_OPT_MAX_TOKENS, MAX_GENERATED / 2);
    if (st == MM_OK)
        st = mm_options_set_float(o, MM_OPT_TEMPERATURE, 0.9);
    if (st == MM_OK)
        st = mm_options_set_int(o, MM_OPT_TOP_K, 8);
    if (st == MM_OK)
        st = mm_options_set_int(o, MM_OPT_SEED, c->seed);
    if (st == MM_OK)
        st = mm_session_create(m, o, &s);
    if (st == MM_OK)
        st = mm_session_add_stop_string(s, "cab");
    const mm_image *images[1] = {image};
    if (st == MM_OK)
        st = mm_session_add_message_images(s, "user", c->prompt, strlen(c->prompt), images, 1);
    for (;;) {
        int32_t token;
        const char *piece;
        size_t len;
        if (st == MM_OK)
            st = mm_session_next(s, &token, &piece, &len);
        if (st != MM_OK || !piece)
            break;
        c->tokens[c->n_tokens++] = token;
    }
    c->stops[0] = mm_session_stop_reason(s);
    if (st == MM_OK)
        st = mm_session_add_message(s, "user", "b a c", 5);
    if (st == MM_OK)
        st = mm_session_generate(s, NULL, collect_text, c);
    c->stops[1] = mm_session_stop_reason(s);
    c->n_past = mm_session_n_past(s);
    const float *logits;
    if (st == MM_OK)
        st = mm_session_logits(s, &logits, &c->n_logits);
    if (st == MM_OK) {
        ck_assert_uint_le(c->n_logits, sizeof c->logits / sizeof c->logits[0]);
        memcpy(c->logits, logits, c->n_logits * sizeof *logits);
    }
    mm_session_free(s);
    mm_options_free(o);
    mm_image_free(image);
    return st;
}

static void expect_same(const conversation *a, const conversation *b)
{
    ck_assert_uint_eq(a->n_tokens, b->n_tokens);
    ck_assert_mem_eq(a->tokens, b->tokens, a->n_tokens * sizeof a->tokens[0]);
    ck_assert_uint_eq(a->text_len, b->text_len);
    ck_assert_mem_eq(a->text, b->text, a->text_len);
    ck_assert_int_eq(a->stops[0], b->stops[0]);
    ck_assert_int_eq(a->stops[1], b->stops[1]);
    ck_assert_int_eq(a->n_past, b->n_past);
    ck_assert_uint_eq(a->n_logits, b->n_logits);
    ck_assert_mem_eq(a->logits, b->logits, a->n_logits * sizeof a->logits[0]);
}

/* ---- allocation failure ---- */

static mm_status load_and_converse(conversation *c)
{
    mm_model *m;
    MMI_TRY(mm_model_load(text_path, vision_path, NULL, &m));
    mm_status st = converse(m, c);
    mm_model_free(m);
    return st;
}

START_TEST(every_allocation_failure_is_reported_and_leaks_nothing)
{
    conversation want = {.prompt = "What is <image> this? a b", .seed = 7}, got = want;
    long live = mmi_alloc_live();
    ck_assert_ok(load_and_converse(&want));
    ck_assert_int_eq(mmi_alloc_live(), live);
    ck_assert_uint_gt(want.n_tokens, 0);
    ck_assert_uint_gt(want.text_len, 0);
    long n;
    for (n = 1;; n++) {
        long before = mmi_alloc_live();
        mmi_alloc_fail_at(n);
        mm_status st = load_and_converse(&got);
        long used = mmi_alloc_fail_at(0);
        if (st == MM_OK) {
            ck_assert_int_lt(used, n); /* every allocation succeeded */
            break;
        }
        ck_assert_msg(st == MM_ERR_NOMEM, "allocation %ld failing gave %s: %s", n,
                      mm_status_str(st), mm_last_error());
        ck_assert_msg(mm_last_error()[0] != '\0', "allocation %ld: no message", n);
        ck_assert_msg(mmi_alloc_live() == before, "allocation %ld failing left %ld blocks", n,
                      mmi_alloc_live() - before);
    }
    fprintf(stderr, "test_robust: the conversation makes %ld allocations, each failed once\n",
            n - 1);
    ck_assert_int_gt(n, 50);
    expect_same(&got, &want);
}
END_TEST

/* ---- threads ---- */

#define N_THREADS 4
#define ROUNDS 3

static mm_model *shared_model;

static const char *const prompts[N_THREADS] = {"a b c", "<image> c b a ab", "bc\nab a",
                                               "c c c <image>"};

typedef struct {
    int index;
    conversation results[ROUNDS];
    mm_status st;
} worker;

static void *work(void *arg)
{
    worker *w = arg;
    for (int r = 0; r < ROUNDS && w->st == MM_OK; r++) {
        w->results[r] = (conversation){.prompt = prompts[w->index], .seed = 100 + w->index};
        w->st = converse(shared_model, &w->results[r]);
    }
    return NULL;
}

START_TEST(four_threads_share_a_model)
{
    ck_assert_ok(mm_model_load(text_path, vision_path, NULL, &shared_model));
    conversation want[N_THREADS];
    size_t n_tokens = 0, text_len = 0;
    for (int i = 0; i < N_THREADS; i++) {
        want[i] = (conversation){.prompt = prompts[i], .seed = 100 + i};
        ck_assert_ok(converse(shared_model, &want[i]));
        n_tokens += want[i].n_tokens;
        text_len += want[i].text_len;
    }
    /* Sampling may end an answer at once (</s>), but not all of them. */
    ck_assert_uint_ge(n_tokens, 2 * N_THREADS);
    ck_assert_uint_gt(text_len, 0);
    /* The conversations differ, so equal results mean each thread got its own. */
    ck_assert(want[0].n_tokens != want[1].n_tokens ||
              memcmp(want[0].tokens, want[1].tokens, want[0].n_tokens * sizeof(int32_t)));
    worker workers[N_THREADS];
    pthread_t threads[N_THREADS];
    for (int i = 0; i < N_THREADS; i++) {
        workers[i] = (worker){.index = i};
        ck_assert_int_eq(pthread_create(&threads[i], NULL, work, &workers[i]), 0);
    }
    for (int i = 0; i < N_THREADS; i++)
        pthread_join(threads[i], NULL);
    for (int i = 0; i < N_THREADS; i++) {
        ck_assert_msg(workers[i].st == MM_OK, "thread %d: %s", i, mm_status_str(workers[i].st));
        for (int r = 0; r < ROUNDS; r++)
            expect_same(&workers[i].results[r], &want[i]);
    }
    mm_model_free(shared_model);
}
END_TEST

/* ---- cancellation from another thread ---- */

typedef struct {
    mm_session *s;
    const mm_image *image;
    const char *text;
    long delay_ns;        /* before the first cancel */
    atomic_int running;
    mm_status st;
    char message[512];
} cancel_job;

static void *add_picture_message(void *arg)
{
    cancel_job *j = arg;
    const mm_image *images[1] = {j->image};
    j->st = mm_session_add_message_images(j->s, "user", j->text, strlen(j->text), images, 1);
    snprintf(j->message, sizeof j->message, "%s", mm_last_error());
    atomic_store(&j->running, 0);
    return NULL;
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Run the message on s from a worker thread while this thread cancels it repeatedly after
 * delay_ns: what did the call return, and with which message. */
static mm_status add_and_cancel(cancel_job *j)
{
    atomic_init(&j->running, 1);
    pthread_t thread;
    ck_assert_int_eq(pthread_create(&thread, NULL, add_picture_message, j), 0);
    const struct timespec delay = {j->delay_ns / 1000000000L, j->delay_ns % 1000000000L};
    const struct timespec tick = {0, 100000};
    nanosleep(&delay, NULL);
    while (atomic_load(&j->running)) {
        mm_session_cancel(j->s);
        nanosleep(&tick, NULL);
    }
    pthread_join(thread, NULL);
    return j->st;
}

START_TEST(cancel_mid_encode_and_mid_prefill)
{
    /* Big enough that encoding (196 patches, 6 blocks) and the prompt (about 600 positions
     * through 4 layers) each take milliseconds. */
    tiny_llama c = tiny_llama_default;
    c.vocab_path = SPM_VOCAB;
    c.n_embd = 64, c.n_ff = 128, c.n_layer = 4, c.head_dim = 16, c.n_ctx = 1024;
    const tiny_vision v = {.image_size = 112, .patch = 8, .n_embd = 64, .n_ff = 128,
                           .n_layer = 6, .n_head = 4};
    write_pair(&c, &v);
    read_png();
    mm_model *m;
    ck_assert_ok(mm_model_load(text_path, vision_path, NULL, &m));
    mm_image *image;
    ck_assert_ok(mm_image_load_memory(png, png_size, NULL, &image));
    char text[1300];
    for (size_t i = 0; i + 2 < sizeof text; i += 2)
        memcpy(text + i, "a ", 2);
    text[sizeof text - 2] = '\0';

    /* The uncancelled call: its duration and result. */
    mm_session *ref = NULL;
    ck_assert_ok(mm_session_create(m, NULL, &ref));
    mm_embeddings *e;
    double t0 = now();
    ck_assert_ok(mm_image_encode(m, image, NULL, &e));
    double t_encode = now() - t0;
    mm_embeddings_free(e);
    const mm_image *images[1] = {image};
    t0 = now();
    ck_assert_ok(mm_session_add_message_images(ref, "user", text, strlen(text), images, 1));
    double t_total = now() - t0;
    const float *want;
    size_t n_vocab;
    ck_assert_ok(mm_session_logits(ref, &want, &n_vocab));

    /* Cancel at points spread over the call until both stages have been hit. */
    mm_session *s;
    ck_assert_ok(mm_session_create(m, NULL, &s));
    int in_encode = 0, in_prefill = 0;
    for (int attempt = 0; attempt < 40 && !(in_encode && in_prefill); attempt++) {
        double at = (attempt % 2 ? t_encode + (t_total - t_encode) * 0.5 : t_encode * 0.5) *
                    (0.5 + 0.05 * (attempt / 2));
        cancel_job j = {.s = s, .image = image, .text = text, .delay_ns = (long)(at * 1e9)};
        mm_status st = add_and_cancel(&j);
        if (st == MM_OK) { /* finished before a cancel landed: start again */
            mm_session_reset(s);
            continue;
        }
        ck_assert_msg(st == MM_ERR_CANCELLED, "%s: %s", mm_status_str(st), j.message);
        ck_assert_int_eq(mm_session_n_past(s), 0); /* nothing of the message stayed */
        in_encode += strstr(j.message, "image encoding cancelled at block") != NULL;
        in_prefill += strstr(j.message, "decoder: cancelled at layer") != NULL;
    }
    fprintf(stderr, "test_robust: encoding %.1f ms, whole message %.1f ms; cancelled %d times "
            "while encoding, %d times while evaluating the prompt\n", 1e3 * t_encode,
            1e3 * t_total, in_encode, in_prefill);
    ck_assert_int_gt(in_encode, 0);
    ck_assert_int_gt(in_prefill, 0);
    /* Still usable: the same message now gives what it gives on a fresh session. */
    ck_assert_ok(mm_session_add_message_images(s, "user", text, strlen(text), images, 1));
    const float *got;
    ck_assert_ok(mm_session_logits(s, &got, &n_vocab));
    ck_assert_mem_eq(got, want, n_vocab * sizeof *got);
    mm_session_free(s);
    mm_session_free(ref);
    mm_image_free(image);
    mm_model_free(m);
    remove_pair();
}
END_TEST

int main(void)
{
    Suite *suite = suite_create("robust");
    TCase *oom = tcase_create("oom");
    tcase_add_unchecked_fixture(oom, small_pair, remove_pair);
    tcase_set_timeout(oom, 600);
    tcase_add_test(oom, every_allocation_failure_is_reported_and_leaks_nothing);
    suite_add_tcase(suite, oom);
    TCase *threads = tcase_create("threads");
    tcase_add_unchecked_fixture(threads, small_pair, remove_pair);
    tcase_set_timeout(threads, 600);
    tcase_add_test(threads, four_threads_share_a_model);
    suite_add_tcase(suite, threads);
    TCase *cancel = tcase_create("cancel");
    tcase_set_timeout(cancel, 600);
    tcase_add_test(cancel, cancel_mid_encode_and_mid_prefill);
    suite_add_tcase(suite, cancel);
    return test_run_suite(suite);
}
