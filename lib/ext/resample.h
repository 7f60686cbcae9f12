/* Sample-rate conversion of mono clips, the one optional dependency of the audio path.
 *
 * Built with libsoxr (MMI_HAVE_SOXR, found by pkg-config) it converts at soxr's very-high
 * quality (28-bit, linear phase; passband to 0.99 of the lower Nyquist, close to the
 * windowed-sinc rolloff of the torchaudio resampler the HF references use). libsoxr over
 * libsamplerate: it is faster at equal quality, its filters are specified by passband and
 * rejection rather than named presets, and it is the resampler FFmpeg and SoX ship. Built
 * without it, only equal rates pass and anything else is MM_ERR_UNSUPPORTED. */
#ifndef MMI_RESAMPLE_H
#define MMI_RESAMPLE_H

#include <stddef.h>

#include "mm.h"

/* 1 when rates may differ in mmi_resample_audio. */
int mmi_resampling_available(void);

/* Samples n_in samples at rate_in become at rate_out: ceil(n_in · out / in), the length
 * torchaudio and librosa give. */
double mmi_resampled_length(size_t n_in, int rate_in, int rate_out);

/* Convert in[n_in] at rate_in to *out[*n_out] at rate_out, n_out = mmi_resampled_length
 * (allocated with mmi_array; the caller frees it). */
mm_status mmi_resample_audio(const float *in, size_t n_in, int rate_in, int rate_out, float **out,
                       size_t *n_out);

#endif
