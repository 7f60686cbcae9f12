/* Whisper log-mel features (see mel.h). */
#include "mel.h"

#include <math.h>
#include <string.h>

#include "alloc.h"
#include "ops.h"
#include "status.h"

/* The Slaney mel scale: linear below 1 kHz (3 mels per 200 Hz), logarithmic above. */
static double hz_to_mel(double hz)
{
    return hz < 1000.0 ? 3.0 * hz / 200.0 : 15.0 + log(hz / 1000.0) * (27.0 / log(6.4));
}

static double mel_to_hz(double mel)
{
    return mel < 15.0 ? 200.0 * mel / 3.0 : 1000.0 * exp(log(6.4) / 27.0 * (mel - 15.0));
}

void mmi_mel_filter_bank(int n_mels, double *filters)
{
    /* n_mels + 2 band edges evenly spaced in mels over 0..8 kHz; triangle m rises from edge m
     * to m + 1 and falls to m + 2, scaled by 2 / (width in Hz). */
    double edges[n_mels + 2];
    double top = hz_to_mel(8000.0);
    for (int i = 0; i < n_mels + 2; i++)
        edges[i] = mel_to_hz(top * i / (n_mels + 1));
    for (int k = 0; k < MMI_MEL_BINS; k++) {
        double f = (double)(MMI_MEL_RATE / 2) * k / (MMI_MEL_BINS - 1);
        for (int m = 0; m < n_mels; m++) {
            double down = (f - edges[m]) / (edges[m + 1] - edges[m]);
            double up = (edges[m + 2] - f) / (edges[m + 2] - edges[m + 1]);
            double w = fmax(0.0, fmin(down, up));
            filters[(size_t)k * n_mels + m] = w * 2.0 / (edges[m + 2] - edges[m]);
        }
    }
}

mm_status mmi_mel_init(mmi_mel *mel, int n_mels, int n_frames)
{
    mel->n_mels = n_mels;
    mel->n_frames = n_frames;
    mel->basis = mmi_array(2 * MMI_MEL_BINS * MMI_MEL_N_FFT, sizeof(float));
    mel->filters = mmi_array((size_t)MMI_MEL_BINS * n_mels, sizeof(float));
    double *filters = mmi_array((size_t)MMI_MEL_BINS * n_mels, sizeof(double));
    if (!mel->basis || !mel->filters || !filters) {
        mmi_free(filters);
        mmi_mel_free(mel);
        return mmi_fail(MM_ERR_NOMEM, "out of memory for a %d-band mel filter bank", n_mels);
    }
    const double two_pi = 6.283185307179586;
    for (int k = 0; k < MMI_MEL_BINS; k++)
        for (int n = 0; n < MMI_MEL_N_FFT; n++) {
            double w = 0.5 - 0.5 * cos(two_pi * n / MMI_MEL_N_FFT); /* periodic Hann */
            double a = two_pi * (double)((k * n) % MMI_MEL_N_FFT) / MMI_MEL_N_FFT;
            mel->basis[(size_t)k * MMI_MEL_N_FFT + n] = (float)(w * cos(a));
            mel->basis[(size_t)(MMI_MEL_BINS + k) * MMI_MEL_N_FFT + n] = (float)(w * sin(a));
        }
    mmi_mel_filter_bank(n_mels, filters);
    for (size_t i = 0; i < (size_t)MMI_MEL_BINS * n_mels; i++)
        mel->filters[i] = (float)filters[i];
    mmi_free(filters);
    return MM_OK;
}

void mmi_mel_free(mmi_mel *mel)
{
    mmi_free(mel->basis);
    mmi_free(mel->filters);
    mel->basis = mel->filters = NULL;
}

size_t mmi_mel_scratch_floats(const mmi_mel *mel)
{
    /* frames, then the spectrum (its power rows overwrite it in place) */
    return (size_t)mel->n_frames * (MMI_MEL_N_FFT + 2 * MMI_MEL_BINS);
}

/* Sample i of the chunk after centring: reflect-padded by N/2 at both ends of the chunk
 * (whose samples past the clip's end are zeros). */
static float centred(const float *x, size_t n, long len, long i)
{
    i -= MMI_MEL_N_FFT / 2;
    if (i < 0)
        i = -i;
    if (i >= len)
        i = 2 * (len - 1) - i;
    return (size_t)i < n ? x[i] : 0.0f;
}

int mmi_log_mel(const mmi_mel *mel, const float *samples, size_t n, float *out, float *scratch)
{
    const int T = mel->n_frames, B = MMI_MEL_BINS, N = MMI_MEL_N_FFT, M = mel->n_mels;
    const long len = (long)T * MMI_MEL_HOP;
    float *frames = scratch, *spec = scratch + (size_t)T * N;
    for (int t = 0; t < T; t++)
        for (int i = 0; i < N; i++)
            frames[(size_t)t * N + i] = centred(samples, n, len, (long)t * MMI_MEL_HOP + i);
    mmi_gemm_nt(T, 2 * B, N, 1.0f, frames, N, mel->basis, N, 0.0f, spec, 2 * B);
    float *power = spec; /* row t of power never overtakes row t of the spectrum */
    for (int t = 0; t < T; t++)
        for (int k = 0; k < B; k++) {
            float re = spec[(size_t)t * 2 * B + k], im = spec[(size_t)t * 2 * B + B + k];
            power[(size_t)t * B + k] = re * re + im * im;
        }
    float *mels = frames; /* [T][M] */
    mmi_gemm_nn(T, M, B, 1.0f, power, B, mel->filters, M, 0.0f, mels, M);
    float top = -INFINITY;
    for (int t = 0; t < T; t++)
        for (int m = 0; m < M; m++) {
            float v = log10f(fmaxf(mels[(size_t)t * M + m], 1e-10f));
            out[(size_t)m * T + t] = v;
            top = fmaxf(top, v);
        }
    for (size_t i = 0; i < (size_t)M * T; i++)
        out[i] = (fmaxf(out[i], top - 8.0f) + 4.0f) / 4.0f;
    size_t used = n < (size_t)len ? n : (size_t)len;
    return (int)((used + MMI_MEL_HOP - 1) / MMI_MEL_HOP);
}
