/* Audio clips: WAV files read into mono float samples, or copied from caller samples.
 *
 * What "read" means here is what the HF pipelines see after soundfile/librosa loading with
 * mono=True: integer PCM scaled to [-1, 1) by the full range of its container (8-bit unsigned
 * (x - 128) / 128, 16-bit x / 32768, 24-bit x / 2^23, 32-bit x / 2^31), float samples as
 * stored, and every channel averaged into one (librosa.to_mono). The clip keeps its own sample
 * rate; the encoder resamples it to its rate (resample.h).
 *
 * The WAV reader is a RIFF chunk walker of its own (RIFF little-endian and RIFX big-endian,
 * format tags PCM, IEEE float and WAVE_FORMAT_EXTENSIBLE with those sub-formats): the layout is
 * a header, not a codec, and reading it here lets every declared size be checked against the
 * bytes present before anything is allocated. Compressed formats (MP3, FLAC, Ogg, ADPCM WAV)
 * are refused with MM_ERR_UNSUPPORTED naming the format. */
#ifndef MMI_AUDIO_H
#define MMI_AUDIO_H

#include <stddef.h>

#include "mm.h"

struct mm_audio {
    int sample_rate;  /* Hz */
    size_t n_samples; /* mono samples */
    float *samples;   /* [n_samples] */
};

/* Read a WAV clip. Clips longer than MM_OPT_AUDIO_MAX_SECONDS are refused with MM_ERR_LIMIT
 * before the samples are allocated; malformed or truncated data gives MM_ERR_FORMAT naming the
 * problem. */
mm_status mmi_audio_load_file(const char *path, const mm_options *options, mm_audio **out);
mm_status mmi_audio_load_memory(const void *data, size_t size, const mm_options *options,
                                mm_audio **out);
/* Mix n_frames interleaved frames of n_channels float samples into a new mono clip. */
mm_status mmi_audio_from_samples(const float *samples, size_t n_frames, int n_channels,
                                 int sample_rate, mm_audio **out);
void mmi_audio_free(mm_audio *audio);

#endif
