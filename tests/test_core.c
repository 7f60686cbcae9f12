/* Status codes, errors, logging, version and the options bag. */
#include <math.h>
#include <pthread.h>
#include <string.h>

#include "alloc.h"
#include "mm.h"
#include "options.h"
#include "status.h"
#include "testutil.h"

START_TEST(status_names_are_distinct)
{
    /* Codes are part of the ABI: check the numbers, not just the names. */
    ck_assert_int_eq(MM_OK, 0);
    ck_assert_int_eq(MM_ERR_ARG, 1);
    ck_assert_int_eq(MM_ERR_NOMEM, 2);
    ck_assert_int_eq(MM_ERR_IO, 3);
    ck_assert_int_eq(MM_ERR_FORMAT, 4);
    ck_assert_int_eq(MM_ERR_UNSUPPORTED, 5);
    ck_assert_int_eq(MM_ERR_CTX_FULL, 6);
    ck_assert_int_eq(MM_ERR_CANCELLED, 7);
    ck_assert_int_eq(MM_ERR_STATE, 8);
    ck_assert_int_eq(MM_ERR_LIMIT, 9);
    for (int a = 0; a <= MM_ERR_LIMIT; a++)
        for (int b = a + 1; b <= MM_ERR_LIMIT; b++)
            ck_assert_str_ne(mm_status_str((mm_status)a), mm_status_str((mm_status)b));
    ck_assert_str_eq(mm_status_str((mm_status)999), "unknown status");
}
END_TEST

START_TEST(version_matches_header)
{
    ck_assert_uint_eq(mm_version_number(), MM_VERSION_NUMBER);
    ck_assert_int_eq(mm_abi_version(), MM_ABI_VERSION);
    char expected[32];
    snprintf(expected, sizeof expected, "%d.%d.%d", MM_VERSION_MAJOR, MM_VERSION_MINOR,
             MM_VERSION_PATCH);
    ck_assert_str_eq(mm_version_string(), expected);
}
END_TEST

typedef struct {
    int calls;
    mm_log_level level;
    char text[256];
} log_capture;

static void capture_log(void *user, mm_log_level level, const char *message)
{
    log_capture *c = user;
    c->calls++;
    c->level = level;
    snprintf(c->text, sizeof c->text, "%s", message);
}

START_TEST(log_callback_filters_by_level)
{
    log_capture c = {0};
    mmi_log(MM_LOG_ERROR, "before any callback");  /* silent by default: must not crash */
    mm_set_log(capture_log, &c, MM_LOG_WARN);
    mmi_log(MM_LOG_INFO, "ignored %d", 1);
    ck_assert_int_eq(c.calls, 0);
    mmi_log(MM_LOG_WARN, "kept %d", 2);
    ck_assert_int_eq(c.calls, 1);
    ck_assert_int_eq(c.level, MM_LOG_WARN);
    ck_assert_str_eq(c.text, "kept 2");
    mm_set_log(NULL, NULL, MM_LOG_DEBUG);
    mmi_log(MM_LOG_ERROR, "silenced");
    ck_assert_int_eq(c.calls, 1);
}
END_TEST

static void *other_thread_error(void *arg)
{
    (void)arg;
    mmi_fail(MM_ERR_IO, "error on the other thread");
    return NULL;
}

START_TEST(last_error_is_thread_local)
{
    ck_assert_int_eq(mmi_fail(MM_ERR_FORMAT, "bad byte at offset %d", 42), MM_ERR_FORMAT);
    ck_assert_str_eq(mm_last_error(), "bad byte at offset 42");
    pthread_t t;
    pthread_create(&t, NULL, other_thread_error, NULL);
    pthread_join(t, NULL);
    ck_assert_str_eq(mm_last_error(), "bad byte at offset 42");
}
END_TEST

START_TEST(options_defaults_and_round_trip)
{
    mm_options *o;
    ck_assert_ok(mm_options_create(&o));
    int64_t i;
    double f;
    const char *s;
    ck_assert_ok(mm_options_get_int(o, MM_OPT_MAX_TOKENS, &i));
    ck_assert_int_eq(i, 256);
    ck_assert_ok(mm_options_get_float(NULL, MM_OPT_TOP_P, &f));
    ck_assert_double_eq(f, 1.0);
    ck_assert_ok(mm_options_get_string(o, MM_OPT_CHAT_TEMPLATE, &s));
    ck_assert_ptr_null(s);

    ck_assert_ok(mm_options_set_int(o, MM_OPT_MAX_TOKENS, 7));
    ck_assert_ok(mm_options_set_float(o, MM_OPT_TEMPERATURE, 0.5));
    ck_assert_ok(mm_options_set_string(o, MM_OPT_CHAT_TEMPLATE, "chatml"));
    ck_assert_ok(mm_options_set_string(o, MM_OPT_CHAT_TEMPLATE, "llava"));
    ck_assert_int_eq(mmi_opt_int(o, MM_OPT_MAX_TOKENS), 7);
    ck_assert_double_eq(mmi_opt_float(o, MM_OPT_TEMPERATURE), 0.5);
    ck_assert_str_eq(mmi_opt_string(o, MM_OPT_CHAT_TEMPLATE), "llava");

    mm_options *copy;
    ck_assert_ok(mm_options_copy(o, &copy));
    ck_assert_ok(mm_options_unset(o, MM_OPT_MAX_TOKENS));
    ck_assert_int_eq(mmi_opt_int(o, MM_OPT_MAX_TOKENS), 256);
    ck_assert_int_eq(mmi_opt_int(copy, MM_OPT_MAX_TOKENS), 7);
    ck_assert_str_eq(mmi_opt_string(copy, MM_OPT_CHAT_TEMPLATE), "llava");
    mm_options_free(copy);
    mm_options_free(o);
    mm_options_free(NULL);
}
END_TEST

START_TEST(options_reject_bad_keys_types_and_ranges)
{
    mm_options *o;
    ck_assert_ok(mm_options_create(&o));
    ck_assert_status(mm_options_set_int(o, (mm_opt)12345, 1), MM_ERR_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(mm_last_error(), "12345"));
    ck_assert_status(mm_options_set_float(o, MM_OPT_MAX_TOKENS, 1.0), MM_ERR_ARG);
    ck_assert_status(mm_options_set_float(o, MM_OPT_TOP_P, 1.5), MM_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(mm_last_error(), "top_p"));
    ck_assert_status(mm_options_set_float(o, MM_OPT_TEMPERATURE, NAN), MM_ERR_ARG);
    ck_assert_status(mm_options_set_int(o, MM_OPT_USE_MMAP, 2), MM_ERR_ARG);
    ck_assert_status(mm_options_set_int(o, MM_OPT_N_THREADS, -1), MM_ERR_ARG);
    ck_assert_status(mm_options_set_string(o, MM_OPT_CHAT_TEMPLATE, NULL), MM_ERR_ARG);
    ck_assert_status(mm_options_set_int(NULL, MM_OPT_N_THREADS, 1), MM_ERR_ARG);
    ck_assert_status(mm_options_get_int(o, MM_OPT_N_THREADS, NULL), MM_ERR_ARG);
    ck_assert_status(mm_options_create(NULL), MM_ERR_ARG);
    /* A rejected set leaves the old value. */
    ck_assert_ok(mm_options_set_float(o, MM_OPT_TOP_P, 0.9));
    ck_assert_status(mm_options_set_float(o, MM_OPT_TOP_P, 2.0), MM_ERR_ARG);
    ck_assert_double_eq(mmi_opt_float(o, MM_OPT_TOP_P), 0.9);

    ck_assert_str_eq(mm_option_name(MM_OPT_TOP_K), "top_k");
    ck_assert_ptr_null(mm_option_name((mm_opt)1));
    mm_opt_type t;
    ck_assert_ok(mm_option_type(MM_OPT_TEMPERATURE, &t));
    ck_assert_int_eq(t, MM_OPT_TYPE_FLOAT);
    ck_assert_status(mm_option_type((mm_opt)1, &t), MM_ERR_UNSUPPORTED);
    mm_options_free(o);
}
END_TEST

START_TEST(options_survive_every_allocation_failure)
{
    for (long n = 1;; n++) {
        mmi_alloc_fail_at(n);
        mm_options *o = NULL;
        mm_status st = mm_options_create(&o);
        if (st == MM_OK)
            st = mm_options_set_string(o, MM_OPT_CHAT_TEMPLATE, "chatml");
        if (st == MM_OK)
            st = mm_options_set_int(o, MM_OPT_TOP_K, 5);
        mm_options *copy = NULL;
        if (st == MM_OK)
            st = mm_options_copy(o, &copy);
        mmi_alloc_fail_at(0);
        mm_options_free(copy);
        mm_options_free(o);
        if (st == MM_OK)
            break; /* every allocation has now failed once; LSan checks nothing leaked */
        ck_assert_int_eq(st, MM_ERR_NOMEM);
        ck_assert_ptr_nonnull(strstr(mm_last_error(), "out of memory"));
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("core");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, status_names_are_distinct);
    tcase_add_test(tc, version_matches_header);
    tcase_add_test(tc, log_callback_filters_by_level);
    tcase_add_test(tc, last_error_is_thread_local);
    tcase_add_test(tc, options_defaults_and_round_trip);
    tcase_add_test(tc, options_reject_bad_keys_types_and_ranges);
    tcase_add_test(tc, options_survive_every_allocation_failure);
    suite_add_tcase(s, tc);
    return test_run_suite(s);
}
