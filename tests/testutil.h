/* Helpers shared by the Check suites. */
#ifndef MM_TESTUTIL_H
#define MM_TESTUTIL_H

#include <check.h>
#include <stdio.h>
#include <stdlib.h>

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

#define ck_assert_status(expr, expected)                                                        \
    do {                                                                                        \
        mm_status st_ = (expr);                                                                 \
        ck_assert_msg(st_ == (expected), "%s returned %d (%s), expected %d; last error: %s",   \
                      #expr, (int)st_, mm_status_str(st_), (int)(expected), mm_last_error());   \
    } while (0)

#define ck_assert_ok(expr) ck_assert_status(expr, MM_OK)

#endif
