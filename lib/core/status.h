/* Internal error reporting and logging. Library code reports every failure through mmi_fail()
 * so that mm_last_error() always names the problem, and logs only through mmi_log(). */
#ifndef MMI_STATUS_H
#define MMI_STATUS_H

#include <stdatomic.h>

#include "mm.h"

#if defined(__GNUC__)
#  define MMI_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#  define MMI_PRINTF(f, a)
#endif

/* Record a formatted message as this thread's last error and return st. */
mm_status mmi_fail(mm_status st, const char *fmt, ...) MMI_PRINTF(2, 3);

/* Send a message to the user's log callback, if any accepts this level. */
void mmi_log(mm_log_level level, const char *fmt, ...) MMI_PRINTF(2, 3);

/* Whether a cancellation flag (may be NULL) is raised: the one check every long loop makes
 * between its steps. */
static inline int mmi_cancelled(const atomic_int *cancel)
{
    return cancel && atomic_load(cancel);
}

/* Propagate a failure: the callee has already set the message. */
#define MMI_TRY(expr)                          \
    do {                                       \
        mm_status mmi_try_st_ = (expr);        \
        if (mmi_try_st_ != MM_OK)              \
            return mmi_try_st_;                \
    } while (0)

#endif
