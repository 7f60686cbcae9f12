/* Status names, the thread-local last-error text, and the log callback. */
#include "status.h"

#include <stdarg.h>
#include <stdio.h>

static _Thread_local char last_error[512];

static mm_log_fn log_fn;
static void *log_user;
static mm_log_level log_min_level;

const char *mm_status_str(mm_status status)
{
    switch (status) {
    case MM_OK: return "ok";
    case MM_ERR_ARG: return "invalid argument";
    case MM_ERR_NOMEM: return "out of memory";
    case MM_ERR_IO: return "input/output error";
    case MM_ERR_FORMAT: return "malformed input";
    case MM_ERR_UNSUPPORTED: return "unsupported";
    case MM_ERR_CTX_FULL: return "context full";
    case MM_ERR_CANCELLED: return "cancelled";
    case MM_ERR_STATE: return "invalid state";
    case MM_ERR_LIMIT: return "limit exceeded";
    }
    return "unknown status";
}

const char *mm_last_error(void)
{
    return last_error;
}

mm_status mmi_fail(mm_status st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    mmi_log(MM_LOG_DEBUG, "%s: %s", mm_status_str(st), last_error);
    return st;
}

void mm_set_log(mm_log_fn fn, void *user, mm_log_level min_level)
{
    log_fn = fn;
    log_user = user;
    log_min_level = min_level;
}

void mmi_log(mm_log_level level, const char *fmt, ...)
{
    mm_log_fn fn = log_fn;
    if (!fn || level < log_min_level)
        return;
    char message[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    fn(log_user, level, message);
}
