/* Sample-rate conversion (see resample.h). The only file that includes soxr.h. */
#include "resample.h"

#include <math.h>
#include <string.h>

#include "alloc.h"
#include "status.h"

#ifdef MMI_HAVE_SOXR
#include <soxr.h>
#endif

int mmi_resampling_available(void)
{
#ifdef MMI_HAVE_SOXR
    return 1;
#else
    return 0;
#endif
}

double mmi_resampled_length(size_t n_in, int rate_in, int rate_out)
{
    return rate_in == rate_out ? (double)n_in : ceil((double)n_in * rate_out / rate_in);
}

mm_status mmi_resample_audio(const float *in, size_t n_in, int rate_in, int rate_out, float **out,
                       size_t *n_out)
{
    *out = NULL;
    double len = mmi_resampled_length(n_in, rate_in, rate_out);
    if (len > (double)(SIZE_MAX / sizeof(float)) || len < 1)
        return mmi_fail(MM_ERR_LIMIT, "resampling %zu samples from %d to %d Hz gives %.0f",
                        n_in, rate_in, rate_out, len);
#ifndef MMI_HAVE_SOXR
    if (rate_in != rate_out)
        return mmi_fail(MM_ERR_UNSUPPORTED, "audio at %d Hz needs resampling to %d Hz, and this "
                        "libmm was built without libsoxr", rate_in, rate_out);
#endif
    float *y = mmi_array((size_t)len, sizeof *y);
    if (!y)
        return mmi_fail(MM_ERR_NOMEM, "out of memory for %.0f resampled samples", len);
    if (rate_in == rate_out) {
        memcpy(y, in, n_in * sizeof *y);
        *out = y;
        *n_out = n_in;
        return MM_OK;
    }
#ifdef MMI_HAVE_SOXR
    soxr_quality_spec_t q = soxr_quality_spec(SOXR_HQ, 0);
    soxr_io_spec_t io = soxr_io_spec(SOXR_FLOAT32_I, SOXR_FLOAT32_I);
    size_t done = 0;
    soxr_error_t err = soxr_oneshot(rate_in, rate_out, 1, in, n_in, NULL, y, (size_t)len, &done,
                                    &io, &q, NULL);
    if (err) {
        mmi_free(y);
        return mmi_fail(MM_ERR_NOMEM, "resampling %d -> %d Hz failed: %s", rate_in, rate_out,
                        err);
    }
    memset(y + done, 0, ((size_t)len - done) * sizeof *y);
#endif
    *out = y;
    *n_out = (size_t)len;
    return MM_OK;
}
