/* Whisper's log-mel spectrogram, as transformers' WhisperFeatureExtractor computes it:
 *
 *   - the clip is cut or zero-padded to n_frames · hop samples (one chunk);
 *   - STFT with a periodic Hann window of n_fft = 400, hop 160, centred frames (the chunk
 *     reflect-padded by n_fft / 2 on both sides), the last frame dropped; power |X|²;
 *   - a mel filter bank of n_mels triangles on the Slaney scale from 0 to 8 kHz with Slaney
 *     (area) normalisation, built in double as HF's mel_filter_bank builds it;
 *   - log10(max(mel, 1e-10)), floored at (its maximum over the chunk) − 8, then (x + 4) / 4.
 *
 * The STFT is one matrix product: the frames [n_frames][n_fft] times a window-weighted DFT
 * basis [2 · n_bins][n_fft] (cos rows, then sin rows) through BLAS; the mel bank is a second
 * product. Input is 16 kHz (MMI_MEL_RATE); resampling is the caller's (ext/resample.h). */
#ifndef MMI_MEL_H
#define MMI_MEL_H

#include <stddef.h>

#include "mm.h"

#define MMI_MEL_RATE 16000
#define MMI_MEL_N_FFT 400
#define MMI_MEL_HOP 160
#define MMI_MEL_BINS (MMI_MEL_N_FFT / 2 + 1) /* one-sided spectrum: 201 */

typedef struct {
    int n_mels, n_frames; /* features [n_mels][n_frames] per chunk */
    float *basis;         /* [2 · MMI_MEL_BINS][MMI_MEL_N_FFT]: w[n] cos(2πkn/N), w[n] sin(…) */
    float *filters;       /* [MMI_MEL_BINS][n_mels] */
} mmi_mel;

/* Build the basis and the filter bank; MM_ERR_NOMEM. */
mm_status mmi_mel_init(mmi_mel *mel, int n_mels, int n_frames);
void mmi_mel_free(mmi_mel *mel);

/* The filter bank alone, filters[MMI_MEL_BINS][n_mels], in double. */
void mmi_mel_filter_bank(int n_mels, double *filters);

size_t mmi_mel_scratch_floats(const mmi_mel *mel);
/* Features out[n_mels][n_frames] of the chunk starting at samples[0] (n samples available; the
 * first n_frames · hop are used, zeros after the end). Returns the frames that start inside
 * the clip, ceil(min(n, n_frames · hop) / hop) (HF's attention mask sum). */
int mmi_log_mel(const mmi_mel *mel, const float *samples, size_t n, float *out, float *scratch);

#endif
