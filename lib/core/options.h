/* Reading option values inside the library. Values in a bag were range-checked when set, so
 * these never fail: an unset key (or a NULL bag) yields the key's default. */
#ifndef MMI_OPTIONS_H
#define MMI_OPTIONS_H

#include "mm.h"

int64_t mmi_opt_int(const mm_options *options, mm_opt key);
double mmi_opt_float(const mm_options *options, mm_opt key);
const char *mmi_opt_string(const mm_options *options, mm_opt key); /* NULL if unset, no default */

/* Set in dst every key set in src (src's values win). On failure (MM_ERR_NOMEM) dst may hold
 * some of them: merge into a bag of your own. */
mm_status mmi_options_merge(mm_options *dst, const mm_options *src);

/* Report progress to the bag's callback, if any. MM_ERR_CANCELLED (with a message naming the
 * stage) when the callback asks to stop: the caller then unwinds and returns that status. */
mm_status mmi_progress(const mm_options *options, mm_progress_stage stage, uint64_t done,
                       uint64_t total);

#endif
