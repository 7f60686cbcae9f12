/* Resource bounds of hostile requests (issue 16): each request runs in a child process that
 * loads a tiny LLaVA pair, then measures its own peak RSS (getrusage) and the wall time of the
 * one call; the parent checks the status and the bounds. These are bounds on what a refusal may
 * cost, not timings: the requests are refused long before any model work. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"
#include "tiny_llama.h"

#define MIB (1024.0 * 1024.0)

static char text_path[512], vision_path[512];

static void write_models(void)
{
    tiny_llama c = tiny_llama_default;
    c.vocab_path = test_vectors_path("tokenizer/ggml-vocab-llama-spm.gguf");
    snprintf(text_path, sizeof text_path, "%s", tiny_temp_path("resources_text.gguf"));
    snprintf(vision_path, sizeof vision_path, "%s", tiny_temp_path("resources_vision.gguf"));
    ck_assert_ok(tiny_llama_write(&c, text_path));
    ck_assert_ok(tiny_vision_write(vision_path, c.n_embd));
}

static void remove_models(void)
{
    unlink(text_path);
    unlink(vision_path);
}

typedef enum { REQUEST_JSON, REQUEST_TEXT, REQUEST_MESSAGE } request_kind;

typedef struct {
    mm_status st;
    double seconds;      /* wall time of the one call */
    double growth_mib;   /* peak RSS during the call minus peak RSS before it */
    double peak_mib;     /* the child's peak RSS */
} measure;

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static double peak_rss_mib(void)
{
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return (double)u.ru_maxrss * 1024.0 / MIB; /* Linux: kilobytes */
}

/* Run one request of `len` bytes on a fresh session of n_ctx positions in a child process. */
static measure run_child(request_kind kind, const char *input, size_t len, int n_ctx)
{
    int fds[2];
    ck_assert_int_eq(pipe(fds), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        close(fds[0]);
        measure m = {0};
        mm_model *model;
        mm_session *s;
        mm_options *o;
        if (mm_model_load(text_path, vision_path, NULL, &model) != MM_OK ||
            mm_options_create(&o) != MM_OK || mm_options_set_int(o, MM_OPT_N_CTX, n_ctx) ||
            mm_session_create(model, o, &s) != MM_OK)
            _exit(2);
        double before = peak_rss_mib(), t0 = now();
        m.st = kind == REQUEST_JSON ? mm_session_add_messages_json(s, input, len, NULL)
             : kind == REQUEST_TEXT ? mm_session_add_text(s, input, len, 0)
                                    : mm_session_add_message(s, "user", input, len);
        m.seconds = now() - t0;
        m.peak_mib = peak_rss_mib();
        m.growth_mib = m.peak_mib - before;
        ssize_t written = write(fds[1], &m, sizeof m);
        _exit(written == (ssize_t)sizeof m ? 0 : 3);
    }
    close(fds[1]);
    measure m;
    ssize_t got = read(fds[0], &m, sizeof m);
    close(fds[0]);
    int status;
    struct rusage usage;
    ck_assert_int_eq(wait4(pid, &status, 0, &usage), pid);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                  "the child died (signal %d) or failed (exit %d)",
                  WIFSIGNALED(status) ? WTERMSIG(status) : 0,
                  WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    ck_assert_int_eq(got, (ssize_t)sizeof m);
    return m;
}

/* Under ASan (make SANITIZE=1) or valgrind (MM_TEST_TIME_SCALE > 1, tests/valgrind.sh) the RSS
 * holds the tool's shadow memory and redzones too, and every access is checked: allow 4 times
 * the memory there, and 4 times the time under ASan (valgrind sets its own time scale). */
static double memory_scale(void)
{
#if defined(__SANITIZE_ADDRESS__)
    return 4;
#else
    return test_time_scale() > 1 ? 4 : 1;
#endif
}

static double time_scale(void)
{
#if defined(__SANITIZE_ADDRESS__)
    return 4 * test_time_scale();
#else
    return test_time_scale();
#endif
}

static void check_bounds(const char *what, measure m, mm_status expected, double max_seconds,
                         double max_growth_mib)
{
    printf("%s: status %d, %.3f s, peak RSS +%.1f MiB (child peak %.1f MiB)\n", what, (int)m.st,
           m.seconds, m.growth_mib, m.peak_mib);
    ck_assert_msg(m.st == expected, "%s: status %d, expected %d", what, (int)m.st,
                  (int)expected);
    ck_assert_msg(m.seconds < max_seconds * time_scale(), "%s: %.3f s, bound %.2f s", what,
                  m.seconds, max_seconds * time_scale());
    ck_assert_msg(m.growth_mib < max_growth_mib * memory_scale(),
                  "%s: peak RSS grew %.1f MiB, bound %.0f MiB", what, m.growth_mib,
                  max_growth_mib * memory_scale());
}

/* One user message: n_baseline then n_progressive bomb JPEGs (tests/data/gen_bombs.py: a few
 * hundred bytes declaring 16384x4096 each), then a question. */
static char *bomb_json(int n_baseline, int n_progressive)
{
    char *baseline = test_file_base64("tests/data/images/bomb_baseline.jpg");
    char *progressive = test_file_base64("tests/data/images/bomb_progressive.jpg");
    size_t cap = (size_t)(n_baseline + n_progressive) * (strlen(baseline) + 100) + 200, len = 0;
    char *json = malloc(cap);
    len += (size_t)snprintf(json, cap, "{\"model\":\"x\",\"messages\":[{\"role\":\"user\","
                            "\"content\":[");
    for (int i = 0; i < n_baseline + n_progressive; i++)
        len += (size_t)snprintf(json + len, cap - len, "{\"type\":\"image_url\",\"image_url\":"
                                "{\"url\":\"data:image/jpeg;base64,%s\"}},",
                                i < n_baseline ? baseline : progressive);
    snprintf(json + len, cap - len, "{\"type\":\"text\",\"text\":\"Describe them.\"}]}]}");
    free(baseline);
    free(progressive);
    return json;
}

START_TEST(a_dozen_bomb_jpegs_in_chat_json)
{
    char *json = bomb_json(6, 6);
    ck_assert_uint_lt(strlen(json), 11 * 1024);
    check_bounds("12 bomb JPEGs in chat JSON", run_child(REQUEST_JSON, json, strlen(json), 4096),
                 MM_ERR_LIMIT, 1.0, 50);
    free(json);
    /* Within the pixel budget of the call each bomb is decoded, and refused as cut short. */
    json = bomb_json(1, 0);
    check_bounds("1 baseline bomb JPEG in chat JSON",
                 run_child(REQUEST_JSON, json, strlen(json), 4096), MM_ERR_FORMAT, 1.0, 50);
    free(json);
    json = bomb_json(0, 1);
    check_bounds("1 progressive bomb JPEG in chat JSON",
                 run_child(REQUEST_JSON, json, strlen(json), 4096), MM_ERR_FORMAT, 1.0, 50);
    free(json);
}
END_TEST

START_TEST(sixteen_mib_of_text_into_64_positions)
{
    size_t n = (size_t)16 << 20;
    char *text = malloc(n);
    for (size_t i = 0; i < n; i++)
        text[i] = "The cat sat on the mat. "[i % 24];
    check_bounds("16 MiB of text, 64 positions", run_child(REQUEST_TEXT, text, n, 64),
                 MM_ERR_CTX_FULL, 0.5, 100);
    check_bounds("16 MiB message, 64 positions", run_child(REQUEST_MESSAGE, text, n, 64),
                 MM_ERR_CTX_FULL, 0.5, 100);
    /* The same as chat JSON: the 16 MiB document is parsed and checked (UTF-8, escapes: linear,
     * about 2 bytes kept per byte), then the text refused before it is tokenized; the parse
     * gets a bound of 1 s. */
    size_t cap = n + 64;
    char *json = malloc(cap);
    int head = snprintf(json, cap, "[{\"role\":\"user\",\"content\":\"");
    memcpy(json + head, text, n);
    size_t len = (size_t)head + n;
    len += (size_t)snprintf(json + len, cap - len, "\"}]");
    check_bounds("16 MiB of text in chat JSON, 64 positions", run_child(REQUEST_JSON, json, len, 64),
                 MM_ERR_CTX_FULL, 1.0, 100);
    free(json);
    free(text);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("resources");
    TCase *tc = tcase_create("resources");
    tcase_set_timeout(tc, 120);
    tcase_add_unchecked_fixture(tc, write_models, remove_models);
    tcase_add_test(tc, a_dozen_bomb_jpegs_in_chat_json);
    tcase_add_test(tc, sixteen_mib_of_text_into_64_positions);
    suite_add_tcase(s, tc);
    return test_run_suite(s);
}
