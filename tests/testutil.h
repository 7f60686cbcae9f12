/* Helpers shared by the Check suites. */
#ifndef MM_TESTUTIL_H
#define MM_TESTUTIL_H

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mm.h"

/* Folder of the reference vectors (tests/vectors/README.md): $MM_VECTORS_DIR, else tests/vectors
 * (the tests run from the repository root). */
static inline const char *test_vectors_dir(void)
{
    const char *dir = getenv("MM_VECTORS_DIR");
    return dir && *dir ? dir : "tests/vectors";
}

/* Path of a file under the vectors folder, in a static buffer (one at a time). */
static inline const char *test_vectors_path(const char *relative)
{
    static char path[4096];
    snprintf(path, sizeof path, "%s/%s", test_vectors_dir(), relative);
    return path;
}

/* Wall-clock bounds in tests are multiplied by $MM_TEST_TIME_SCALE (default 1), which slow
 * instrumentation sets (tests/valgrind.sh). */
static inline double test_time_scale(void)
{
    const char *s = getenv("MM_TEST_TIME_SCALE");
    double scale = s ? atof(s) : 1.0;
    return scale > 0 ? scale : 1.0;
}

/* Run one suite with the usual runner; returns the process exit code. */
static inline int test_run_suite(Suite *suite)
{
    SRunner *runner = srunner_create(suite);
    srunner_run_all(runner, CK_NORMAL);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

/* The file at path (at most 64 KiB) as base64 (RFC 4648, padded), for data URLs; malloc'ed. */
static inline char *test_file_base64(const char *path)
{
    static const char digits[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    static unsigned char data[1 << 16];
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    size_t n = fread(data, 1, sizeof data, f);
    fclose(f);
    char *out = malloc(4 * (n / 3 + 1) + 1), *o = out;
    ck_assert_ptr_nonnull(out);
    for (size_t i = 0; i < n; i += 3) {
        unsigned long v = (unsigned long)data[i] << 16 |
                          (unsigned long)(i + 1 < n ? data[i + 1] : 0) << 8 |
                          (i + 2 < n ? data[i + 2] : 0);
        *o++ = digits[v >> 18];
        *o++ = digits[v >> 12 & 63];
        *o++ = i + 1 < n ? digits[v >> 6 & 63] : '=';
        *o++ = i + 2 < n ? digits[v & 63] : '=';
    }
    *o = '\0';
    return out;
}

#define ck_assert_status(expr, expected)                                                        \
    do {                                                                                        \
        mm_status st_ = (expr);                                                                 \
        ck_assert_msg(st_ == (expected), "%s returned %d (%s), expected %d; last error: %s",   \
                      #expr, (int)st_, mm_status_str(st_), (int)(expected), mm_last_error());   \
    } while (0)

#define ck_assert_ok(expr) ck_assert_status(expr, MM_OK)

/* Two sessions hold the same state: positions and bit-identical logits. */
static inline void test_assert_same_state(const mm_session *a, const mm_session *b)
{
    ck_assert_int_eq(mm_session_n_past(a), mm_session_n_past(b));
    const float *la, *lb;
    size_t na, nb;
    ck_assert_ok(mm_session_logits(a, &la, &na));
    ck_assert_ok(mm_session_logits(b, &lb, &nb));
    ck_assert_uint_eq(na, nb);
    ck_assert_int_eq(memcmp(la, lb, na * sizeof *la), 0);
}

#endif
