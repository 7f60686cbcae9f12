/* Audio in: the WAV reader (lib/audio.c), resampling (lib/ext/resample.c) and Whisper's log-mel
 * features (lib/mel.c).
 *
 * References: tests/vectors/hf/whisper_features (WhisperFeatureExtractor of transformers
 * 4.45.1, torch STFT path; waveforms as int16 / 32768) and sample values worked out by hand
 * from the WAV specification for the formats the vectors do not cover. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "audio.h"
#include "resample.h"
#include "mel.h"
#include "mm.h"
#include "safetensors.h"
#include "testutil.h"
#include "tiny_llama.h"

#define CASE "hf/whisper_features/"

/* ---- WAV files written here, byte by byte ---- */

typedef struct {
    unsigned char b[4096];
    size_t n;
    int big; /* RIFX */
} wav_buf;

static void put(wav_buf *w, uint64_t v, int bytes)
{
    for (int i = 0; i < bytes; i++)
        w->b[w->n + i] = (unsigned char)(v >> 8 * (w->big ? bytes - 1 - i : i));
    w->n += (size_t)bytes;
}

static void put_id(wav_buf *w, const char *id)
{
    memcpy(w->b + w->n, id, 4);
    w->n += 4;
}

/* A WAV of `frames` frames whose samples are given as raw little-endian integers of `bits`
 * (written in the file's byte order); tag 1 PCM, 3 float, 0xfffe extensible (sub-format
 * `sub`). */
static void wav_make(wav_buf *w, int big, int tag, int sub, int channels, int rate, int bits,
                     const uint64_t *samples, int n_samples)
{
    memset(w, 0, sizeof *w);
    w->big = big;
    put_id(w, big ? "RIFX" : "RIFF");
    put(w, 0, 4); /* patched below */
    put_id(w, "WAVE");
    put_id(w, "LIST"); /* a chunk to skip, odd-sized: padded */
    put(w, 3, 4);
    put_id(w, "abc");
    put_id(w, "fmt ");
    put(w, tag == 0xfffe ? 40 : 16, 4);
    put(w, (uint64_t)tag, 2);
    put(w, (uint64_t)channels, 2);
    put(w, (uint64_t)rate, 4);
    put(w, (uint64_t)rate * channels * bits / 8, 4);
    put(w, (uint64_t)channels * bits / 8, 2);
    put(w, (uint64_t)bits, 2);
    if (tag == 0xfffe) {
        static const unsigned char data4[8] = {0x80, 0, 0, 0xaa, 0, 0x38, 0x9b, 0x71};
        put(w, 22, 2);
        put(w, (uint64_t)bits, 2);
        put(w, 0, 4);
        put(w, (uint64_t)sub, 4);
        put(w, 0, 2);
        put(w, 0x10, 2);
        memcpy(w->b + w->n, data4, 8);
        w->n += 8;
    }
    put_id(w, "data");
    put(w, (uint64_t)n_samples * bits / 8, 4);
    for (int i = 0; i < n_samples; i++)
        put(w, samples[i], bits / 8);
    size_t end = w->n;
    w->n = 4;
    put(w, end - 8, 4);
    w->n = end;
}

static uint64_t f32_bits(float x)
{
    uint32_t u;
    memcpy(&u, &x, 4);
    return u;
}

static uint64_t f64_bits(double x)
{
    uint64_t u;
    memcpy(&u, &x, 8);
    return u;
}

static mm_audio *wav_load(const wav_buf *w)
{
    mm_audio *a = NULL;
    ck_assert_ok(mm_audio_load_memory(w->b, w->n, NULL, &a));
    return a;
}

START_TEST(every_sample_format_reads_as_soundfile_scales_it)
{
    /* Per format: three mono samples and the values soundfile/libsndfile give them. */
    static const struct {
        int tag, bits;
        uint64_t raw[3];
        float want[3];
    } cases[] = {
        {1, 8, {0, 128, 255}, {-1.0f, 0.0f, 127.0f / 128}},
        {1, 16, {0x8000, 0x4000, 0xffff}, {-1.0f, 0.5f, -1.0f / 32768}},
        {1, 24, {0x800000, 0x400000, 0xffffff}, {-1.0f, 0.5f, -1.0f / 8388608}},
        {1, 32, {0x80000000u, 0x40000000u, 0xffffffffu}, {-1.0f, 0.5f, -1.0f / 2147483648.0f}},
        {3, 32, {0, 0, 0}, {0.25f, -0.75f, 1.5f}},
        {3, 64, {0, 0, 0}, {0.125f, -0.5f, 2.0f}},
    };
    for (int big = 0; big < 2; big++)
        for (int ext = 0; ext < 2; ext++)
            for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
                uint64_t raw[3];
                for (int i = 0; i < 3; i++)
                    raw[i] = cases[c].tag == 1 ? cases[c].raw[i]
                             : cases[c].bits == 32 ? f32_bits(cases[c].want[i])
                                                   : f64_bits(cases[c].want[i]);
                wav_buf w;
                wav_make(&w, big, ext ? 0xfffe : cases[c].tag, cases[c].tag, 1, 22050,
                         cases[c].bits, raw, 3);
                mm_audio *a = wav_load(&w);
                ck_assert_int_eq(mm_audio_sample_rate(a), 22050);
                ck_assert_uint_eq(mm_audio_n_samples(a), 3);
                for (int i = 0; i < 3; i++)
                    ck_assert_msg(mm_audio_samples(a)[i] == cases[c].want[i],
                                  "%s %s tag %d %d-bit sample %d: %.9g, want %.9g",
                                  big ? "RIFX" : "RIFF", ext ? "extensible" : "plain",
                                  cases[c].tag, cases[c].bits, i, mm_audio_samples(a)[i],
                                  cases[c].want[i]);
                mm_audio_free(a);
            }
}
END_TEST

START_TEST(channels_are_averaged_into_one)
{
    /* Three channels of 16-bit PCM: (0.5 + 0.25 - 0.75) / 3 = 0, (1/2 + 1/2 + -1) / 3 = 0, ... */
    const uint64_t raw[6] = {0x4000, 0x2000, 0xa000, 0x6000, 0x0000, 0x0000};
    wav_buf w;
    wav_make(&w, 0, 1, 1, 3, 8000, 16, raw, 6);
    mm_audio *a = wav_load(&w);
    ck_assert_uint_eq(mm_audio_n_samples(a), 2);
    ck_assert_float_eq_tol(mm_audio_samples(a)[0], 0.0f, 1e-7);
    ck_assert_float_eq_tol(mm_audio_samples(a)[1], 0.75f / 3, 1e-7);
    mm_audio_free(a);

    const float stereo[6] = {1.0f, 0.0f, -0.5f, -0.25f, 0.2f, 0.4f};
    ck_assert_ok(mm_audio_from_samples(stereo, 3, 2, 44100, &a));
    ck_assert_int_eq(mm_audio_sample_rate(a), 44100);
    ck_assert_uint_eq(mm_audio_n_samples(a), 3);
    ck_assert_float_eq_tol(mm_audio_samples(a)[0], 0.5f, 1e-7);
    ck_assert_float_eq_tol(mm_audio_samples(a)[1], -0.375f, 1e-7);
    ck_assert_float_eq_tol(mm_audio_samples(a)[2], 0.3f, 1e-7);
    mm_audio_free(a);
}
END_TEST

START_TEST(vector_wavs_read_as_the_reference_waveforms)
{
    static const char *clips[] = {"chirp_16k_4500ms", "short_16k_600ms", "sr22050_2000ms"};
    static const int rates[] = {16000, 16000, 22050};
    st_file io;
    ck_assert_msg(st_load(&io, test_vectors_path(CASE "io.safetensors")) == 0, "%s", io.error);
    for (int c = 0; c < 3; c++) {
        char path[256], name[128];
        snprintf(path, sizeof path, CASE "%s.wav", clips[c]);
        snprintf(name, sizeof name, "%s.waveform", clips[c]);
        mm_audio *a;
        ck_assert_ok(mm_audio_load_file(test_vectors_path(path), NULL, &a));
        int64_t shape[ST_MAX_DIMS];
        int ndim;
        size_t n;
        float *ref = st_read_f32(&io, name, shape, &ndim, &n);
        ck_assert_ptr_nonnull(ref);
        ck_assert_int_eq(mm_audio_sample_rate(a), rates[c]);
        ck_assert_uint_eq(mm_audio_n_samples(a), n);
        ck_assert_int_eq(memcmp(mm_audio_samples(a), ref, n * sizeof(float)), 0);
        free(ref);
        mm_audio_free(a);
    }
    st_free(&io);
}
END_TEST

/* ---- hostile and unsupported input ---- */

static void expect_failure(const void *data, size_t size, mm_status want, const char *words)
{
    mm_audio *a = (mm_audio *)1;
    ck_assert_status(mm_audio_load_memory(data, size, NULL, &a), want);
    ck_assert_ptr_null(a);
    ck_assert_msg(strstr(mm_last_error(), words) != NULL, "message '%s' lacks '%s'",
                  mm_last_error(), words);
}

START_TEST(other_formats_are_refused_by_name)
{
    expect_failure("fLaC\0\0\0\x22", 8, MM_ERR_UNSUPPORTED, "FLAC");
    expect_failure("OggS\0\x02\0\0", 8, MM_ERR_UNSUPPORTED, "Ogg");
    expect_failure("ID3\x04\0\0\0\0", 8, MM_ERR_UNSUPPORTED, "MP3");
    expect_failure("\xff\xfb\x90\x64", 4, MM_ERR_UNSUPPORTED, "MP3");
    expect_failure("FORM\0\0\0\x10" "AIFF", 12, MM_ERR_UNSUPPORTED, "AIFF");
    expect_failure("RF64\xff\xff\xff\xff" "WAVE", 12, MM_ERR_UNSUPPORTED, "RF64");
    expect_failure("hello world!", 12, MM_ERR_FORMAT, "not a WAV");
    expect_failure("RIFF", 4, MM_ERR_FORMAT, "not a WAV");

    const uint64_t raw[2] = {1, 2};
    wav_buf w;
    wav_make(&w, 0, 2, 0, 1, 8000, 16, raw, 2); /* MS ADPCM */
    expect_failure(w.b, w.n, MM_ERR_UNSUPPORTED, "0x0002");
    wav_make(&w, 0, 1, 0, 1, 8000, 12, raw, 2);
    expect_failure(w.b, w.n, MM_ERR_UNSUPPORTED, "12-bit");
    wav_make(&w, 0, 0xfffe, 0x55, 1, 8000, 16, raw, 2);
    expect_failure(w.b, w.n, MM_ERR_UNSUPPORTED, "0x0055");
}
END_TEST

START_TEST(malformed_headers_are_named)
{
    const uint64_t raw[4] = {1, 2, 3, 4};
    wav_buf w;
    wav_make(&w, 0, 1, 1, 2, 8000, 16, raw, 4);
    size_t fmt = 12 + 12; /* RIFF header, LIST chunk */
    size_t data = fmt + 8 + 16;

    wav_buf bad = w;
    bad.b[fmt + 8 + 2] = 0; /* channels 0 */
    expect_failure(bad.b, bad.n, MM_ERR_FORMAT, "channel count 0");
    bad = w;
    bad.b[fmt + 8 + 12] = 3; /* block align 3 for 2 x 16 bits */
    expect_failure(bad.b, bad.n, MM_ERR_FORMAT, "block align");
    bad = w;
    memset(bad.b + fmt + 8 + 4, 0, 4); /* rate 0 */
    expect_failure(bad.b, bad.n, MM_ERR_FORMAT, "sample rate");
    bad = w;
    bad.b[fmt + 4] = 12; /* fmt chunk too short */
    expect_failure(bad.b, bad.n, MM_ERR_FORMAT, "fmt chunk of 12 bytes");
    bad = w;
    bad.b[data + 4] = 7; /* data size not a whole number of frames */
    expect_failure(bad.b, bad.n, MM_ERR_FORMAT, "whole");
    bad = w;
    bad.b[data + 4] = 0; /* no samples */
    expect_failure(bad.b, bad.n, MM_ERR_FORMAT, "whole, non-zero");
    bad = w;
    memcpy(bad.b + fmt, "junk", 4); /* no fmt chunk before data */
    expect_failure(bad.b, bad.n, MM_ERR_FORMAT, "before the fmt");
    bad = w;
    bad.b[data + 4] = 0xe8; /* declares 1000 bytes, 16 present */
    bad.b[data + 5] = 0x03;
    expect_failure(bad.b, bad.n, MM_ERR_FORMAT, "truncated");
    bad = w;
    memcpy(bad.b + data, "junk", 4);
    expect_failure(bad.b, bad.n, MM_ERR_FORMAT, "without a data chunk");
    bad = w;
    bad.b[12 + 6] = 1; /* the LIST chunk declares 64 KiB */
    expect_failure(bad.b, bad.n, MM_ERR_FORMAT, "runs past the end");

    const uint64_t nan_raw[1] = {f32_bits(NAN)};
    wav_make(&bad, 0, 3, 3, 1, 8000, 32, nan_raw, 1);
    expect_failure(bad.b, bad.n, MM_ERR_FORMAT, "not a finite number");
}
END_TEST

START_TEST(every_truncation_fails_cleanly)
{
    const uint64_t raw[6] = {1, 2, 3, 4, 5, 6};
    wav_buf w;
    wav_make(&w, 1, 0xfffe, 1, 2, 8000, 24, raw, 6);
    for (size_t n = 0; n < w.n; n++) {
        mm_audio *a = (mm_audio *)1;
        mm_status st = mm_audio_load_memory(w.b, n, NULL, &a);
        ck_assert_msg(st == MM_ERR_FORMAT, "%zu of %zu bytes: %s", n, w.n, mm_status_str(st));
        ck_assert_ptr_null(a);
    }
    mm_audio *a = wav_load(&w);
    mm_audio_free(a);
}
END_TEST

START_TEST(long_clips_are_refused_before_allocating)
{
    /* A header declaring 2 s of 8 kHz audio over a limit of 1 s: refused before the samples
     * (or the data, which is absent here) are read. */
    const uint64_t raw[2] = {0, 0};
    wav_buf w;
    wav_make(&w, 0, 1, 1, 1, 8000, 8, raw, 2);
    size_t data = 12 + 12 + 8 + 16;
    w.b[data + 4] = 16000 & 0xff;
    w.b[data + 5] = 16000 >> 8;
    mm_options *o;
    ck_assert_ok(mm_options_create(&o));
    ck_assert_ok(mm_options_set_int(o, MM_OPT_AUDIO_MAX_SECONDS, 1));
    mm_audio *a;
    mmi_alloc_largest();
    ck_assert_status(mm_audio_load_memory(w.b, w.n, o, &a), MM_ERR_LIMIT);
    ck_assert_msg(strstr(mm_last_error(), "MM_OPT_AUDIO_MAX_SECONDS"), "%s", mm_last_error());
    ck_assert_uint_lt(mmi_alloc_largest(), 1000);
    mm_options_free(o);
}
END_TEST

START_TEST(bad_arguments_are_refused)
{
    const float x[2] = {0.0f, NAN};
    mm_audio *a = (mm_audio *)1;
    ck_assert_status(mm_audio_from_samples(x, 0, 1, 16000, &a), MM_ERR_ARG);
    ck_assert_ptr_null(a);
    ck_assert_status(mm_audio_from_samples(x, 1, 0, 16000, &a), MM_ERR_ARG);
    ck_assert_status(mm_audio_from_samples(x, 1, 1, 0, &a), MM_ERR_ARG);
    ck_assert_status(mm_audio_from_samples(x, 2, 1, 16000, &a), MM_ERR_ARG);
    ck_assert_status(mm_audio_from_samples(x, SIZE_MAX / 2, 3, 16000, &a), MM_ERR_ARG);
    ck_assert_status(mm_audio_load_file("/nonexistent/clip.wav", NULL, &a), MM_ERR_IO);
}
END_TEST

START_TEST(allocation_failures_are_reported)
{
    const uint64_t raw[4] = {1, 2, 3, 4};
    wav_buf w;
    wav_make(&w, 0, 1, 1, 2, 8000, 16, raw, 4);
    long live = mmi_alloc_live();
    for (long n = 1;; n++) {
        mm_audio *a;
        mmi_alloc_fail_at(n);
        mm_status st = mm_audio_load_memory(w.b, w.n, NULL, &a);
        mmi_alloc_fail_at(0);
        if (st == MM_OK) {
            mm_audio_free(a);
            break;
        }
        ck_assert_status(st, MM_ERR_NOMEM);
        ck_assert_int_eq(mmi_alloc_live(), live);
    }
}
END_TEST

/* ---- features ---- */

static st_file io;

static void load_io(void)
{
    ck_assert_msg(st_load(&io, test_vectors_path(CASE "io.safetensors")) == 0, "%s", io.error);
}

static void free_io(void)
{
    st_free(&io);
}

static float *ref_tensor(const char *clip, const char *what, size_t *n)
{
    char name[128];
    snprintf(name, sizeof name, "%s%s%s", clip, clip[0] ? "." : "", what);
    int64_t shape[ST_MAX_DIMS];
    int ndim;
    float *x = st_read_f32(&io, name, shape, &ndim, n);
    ck_assert_msg(x != NULL, "%s: %s", name, io.error);
    return x;
}

START_TEST(mel_filter_bank_matches_hf)
{
    size_t n;
    float *ref = ref_tensor("", "mel_filters", &n);
    ck_assert_uint_eq(n, MMI_MEL_BINS * 80);
    double *f = malloc(n * sizeof *f);
    mmi_mel_filter_bank(80, f);
    double worst = 0;
    for (size_t i = 0; i < n; i++)
        worst = fmax(worst, fabs(f[i] - ref[i]));
    /* The reference is HF's float64 bank stored as float32: half an ulp of its largest value
     * (0.0262) is 1e-9. */
    ck_assert_msg(worst < 2e-9, "mel filters differ by %g", worst);
    free(f);
    free(ref);
}
END_TEST

/* Features of samples[n] as the 80-band, 400-frame extractor of the case computes them. */
static float *features_of(const float *samples, size_t n, int *frames)
{
    mmi_mel mel;
    ck_assert_ok(mmi_mel_init(&mel, 80, 400));
    float *scratch = malloc(mmi_mel_scratch_floats(&mel) * sizeof(float));
    float *out = malloc(80 * 400 * sizeof(float));
    *frames = mmi_log_mel(&mel, samples, n, out, scratch);
    free(scratch);
    mmi_mel_free(&mel);
    return out;
}

START_TEST(features_match_whisper_feature_extractor)
{
    /* The clip past 4 s (truncated), the clip under 1 s (padded), and the 22.05 kHz clip from
     * the reference's own resampled waveform. Tolerance: the case's advice, 1e-4 (float32
     * STFT rounding; HF's own float64 path is within 5.7e-6). */
    static const char *clips[] = {"chirp_16k_4500ms", "short_16k_600ms", "sr22050_2000ms"};
    static const int mask_sums[] = {400, 60, 200};
    for (int c = 0; c < 3; c++) {
        size_t n;
        float *wave = ref_tensor(clips[c], c == 2 ? "waveform_16k" : "waveform", &n);
        int frames;
        float *got = features_of(wave, n, &frames);
        size_t count;
        float *ref = ref_tensor(clips[c], "input_features", &count);
        ck_assert_uint_eq(count, 80 * 400);
        double err = 0;
        for (size_t i = 0; i < count; i++)
            err = fmax(err, fabs((double)got[i] - ref[i]));
        ck_assert_msg(err <= 1e-4, "%s: features differ by %g", clips[c], err);
        free(ref);
        free(got);
        ck_assert_int_eq(frames, mask_sums[c]);
        free(wave);
    }
}
END_TEST

START_TEST(resampled_clip_matches_the_reference_features)
{
    size_t n;
    float *wave = ref_tensor("sr22050_2000ms", "waveform", &n);
    float *y;
    size_t n_y;
    if (!mmi_resampling_available()) {
        ck_assert_status(mmi_resample_audio(wave, n, 22050, 16000, &y, &n_y), MM_ERR_UNSUPPORTED);
        ck_assert_msg(strstr(mm_last_error(), "libsoxr"), "%s", mm_last_error());
        free(wave);
        return;
    }
    ck_assert_ok(mmi_resample_audio(wave, n, 22050, 16000, &y, &n_y));
    ck_assert_uint_eq(n_y, 32000); /* torchaudio's length too: ceil(44100 · 320 / 441) */
    int frames;
    float *got = features_of(y, n_y, &frames);
    ck_assert_int_eq(frames, 200);
    size_t count;
    float *ref = ref_tensor("sr22050_2000ms", "input_features", &count);
    /* The reference resampled with torchaudio's Hann-windowed sinc (6 zero crossings, rolloff
     * 0.99), whose wide transition band attenuates from about 6.6 kHz; libmm uses soxr's HQ
     * filter (passband flat to 0.913 of 8 kHz = 7.3 kHz), which is what librosa.load(sr=16000)
     * applies in HF's own Qwen2-Audio and Whisper examples. The two agree where both are flat:
     * mel bands whose upper edge is below 6.4 kHz (the first 74 of 80) are compared, within
     * 0.04 anywhere (measured 0.030, in the last frames of the clip, where the filters' end
     * handling differs) and 1e-3 on average (measured 2.3e-4). The 6 top bands measure how
     * each filter rolls off, not libmm, and are not compared. */
    double worst = 0, sum = 0;
    for (int m = 0; m < 74; m++)
        for (int t = 0; t < 400; t++) {
            double d = fabs((double)got[m * 400 + t] - ref[m * 400 + t]);
            worst = fmax(worst, d);
            sum += d;
        }
    ck_assert_msg(worst <= 0.04, "features of the resampled clip differ by %g", worst);
    ck_assert_msg(sum / (74 * 400) <= 1e-3, "mean feature error %g", sum / (74 * 400));
    free(ref);
    free(got);
    mmi_free(y);
    free(wave);
}
END_TEST

/* ---- clips in sessions: a tiny llama with a tiny qwen2a audio file (chunks of 2 s) ---- */

static mm_model *pair;

static void load_pair(void)
{
    tiny_llama c = tiny_llama_default;
    c.vocab_path = test_vectors_path("tokenizer/ggml-vocab-llama-spm.gguf");
    c.n_ctx = 256;
    char text_path[512];
    snprintf(text_path, sizeof text_path, "%s", tiny_temp_path("audio_text.gguf"));
    const char *audio_path = tiny_temp_path("audio.gguf");
    ck_assert_ok(tiny_llama_write(&c, text_path));
    ck_assert_ok(tiny_audio_write(audio_path, c.n_embd, 32, 100));
    ck_assert_ok(mm_model_load(text_path, audio_path, NULL, &pair));
    unlink(text_path);
    unlink(audio_path);
}

static void free_pair(void)
{
    mm_model_free(pair);
}

static mm_audio *chirp(size_t n, int rate)
{
    float *x = malloc(n * sizeof *x);
    for (size_t i = 0; i < n; i++)
        x[i] = 0.3f * sinf(2e-3f * (float)i * (float)i / (float)rate);
    mm_audio *a;
    ck_assert_ok(mm_audio_from_samples(x, n, 1, rate, &a));
    free(x);
    return a;
}

/* HF's num_audio_tokens per chunk of `len` 16 kHz samples, in Python's floor division:
 * (((L - 1) // 2 + 1) - 2) // 2 + 1 with L = ceil(len / 160) frames. */
static long hf_tokens(long len)
{
    long frames = (len + 159) / 160, rows = (frames - 1) / 2 + 1, x = rows - 2;
    return (x < 0 ? -((-x + 1) / 2) : x / 2) + 1;
}

START_TEST(token_counts_follow_qwen2_audio)
{
    static const struct { size_t n; int rate; } clips[] = {
        {20800, 16000}, {56000, 16000}, {32000, 16000}, {32160, 16000}, {640, 16000},
        {22050, 22050}, {33075, 44100},
    };
    for (size_t i = 0; i < sizeof clips / sizeof clips[0]; i++) {
        mm_audio *a = chirp(clips[i].n, clips[i].rate);
        mm_media *m;
        ck_assert_ok(mm_media_from_audio(a, &m));
        long at16 = (long)ceil((double)clips[i].n * 16000 / clips[i].rate), want = 0;
        for (long at = 0; at < at16; at += 32000)
            want += hf_tokens(at16 - at < 32000 ? at16 - at : 32000);
        size_t n = 0;
        if (clips[i].rate != 16000 && !mm_audio_resampling_available()) {
            ck_assert_status(mm_media_n_tokens(pair, m, &n), MM_ERR_UNSUPPORTED);
        } else {
            ck_assert_ok(mm_media_n_tokens(pair, m, &n));
            ck_assert_msg((long)n == want, "%zu samples at %d Hz: %zu rows, HF gives %ld",
                          clips[i].n, clips[i].rate, n, want);
            mm_embeddings *e;
            ck_assert_ok(mm_media_encode(pair, m, NULL, &e));
            ck_assert_uint_eq(mm_embeddings_n_tokens(e), n);
            ck_assert_uint_eq(mm_embeddings_n_embd(e), 32);
            mm_embeddings_free(e);
        }
        mm_media_free(m);
        mm_audio_free(a);
    }
    /* 60 samples: one frame, one conv row, nothing left after pooling. */
    mm_audio *a = chirp(60, 16000);
    mm_media *m;
    ck_assert_ok(mm_media_from_audio(a, &m));
    size_t n;
    ck_assert_status(mm_media_n_tokens(pair, m, &n), MM_ERR_ARG);
    ck_assert_msg(strstr(mm_last_error(), "too short"), "%s", mm_last_error());
    mm_media_free(m);
    mm_audio_free(a);
}
END_TEST

static mm_session *pair_session(void)
{
    mm_options *o;
    ck_assert_ok(mm_options_create(&o));
    ck_assert_ok(mm_options_set_string(o, MM_OPT_CHAT_TEMPLATE, "chatml"));
    mm_session *s;
    ck_assert_ok(mm_session_create(pair, o, &s));
    mm_options_free(o);
    return s;
}

/* Same positions and the same last logits. */
static void assert_same_state(const mm_session *a, const mm_session *b)
{
    ck_assert_int_eq(mm_session_n_past(a), mm_session_n_past(b));
    const float *la, *lb;
    size_t na, nb;
    ck_assert_ok(mm_session_logits(a, &la, &na));
    ck_assert_ok(mm_session_logits(b, &lb, &nb));
    ck_assert_uint_eq(na, nb);
    ck_assert_int_eq(memcmp(la, lb, na * sizeof *la), 0);
}

START_TEST(a_clip_in_a_message_is_its_encoded_rows)
{
    /* Two chunks (3.5 s): the message through the media path equals the same message with the
     * clip encoded beforehand and given as rows. */
    mm_audio *a = chirp(56000, 16000);
    mm_media *m;
    ck_assert_ok(mm_media_from_audio(a, &m));
    mm_embeddings *e;
    ck_assert_ok(mm_media_encode(pair, m, NULL, &e));
    mm_session *s1 = pair_session(), *s2 = pair_session();
    const mm_media *media[1] = {m};
    const mm_embeddings *rows[1] = {e};
    ck_assert_ok(mm_session_add_message_media(s1, "user", "Hear <audio> now", 16, media, 1));
    ck_assert_ok(mm_session_add_message_embeddings(s2, "user", "Hear <media> now", 16, rows, 1));
    assert_same_state(s1, s2);
    ck_assert_int_gt(mm_session_n_past(s1), 87);

    /* The audio file has no vision tower. */
    mm_image *img;
    const uint8_t px[3] = {1, 2, 3};
    ck_assert_ok(mm_image_from_pixels(px, 1, 1, 3, MM_PIXEL_RGB8, &img));
    mm_media *pic;
    ck_assert_ok(mm_media_from_image(img, &pic));
    const mm_media *mixed[2] = {m, pic};
    int before = mm_session_n_past(s1);
    ck_assert_status(mm_session_add_message_media(s1, "user", "<audio> and <image>", 19, mixed,
                                                  2), MM_ERR_STATE);
    ck_assert_int_eq(mm_session_n_past(s1), before);
    mm_media_free(pic);
    mm_image_free(img);
    mm_session_free(s1);
    mm_session_free(s2);
    mm_embeddings_free(e);
    mm_media_free(m);
    mm_audio_free(a);
}
END_TEST

static char *base64(const unsigned char *b, size_t n)
{
    static const char digits[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *out = malloc(4 * ((n + 2) / 3) + 1), *o = out;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)b[i] << 16 | (i + 1 < n ? (uint32_t)b[i + 1] << 8 : 0) |
                     (i + 2 < n ? b[i + 2] : 0);
        *o++ = digits[v >> 18 & 63];
        *o++ = digits[v >> 12 & 63];
        *o++ = i + 1 < n ? digits[v >> 6 & 63] : '=';
        *o++ = i + 2 < n ? digits[v & 63] : '=';
    }
    *o = '\0';
    return out;
}

START_TEST(chat_json_takes_input_audio_parts)
{
    const char *path = test_vectors_path("hf/qwen2_audio/audio.wav");
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    unsigned char *wav = malloc(1 << 20);
    size_t n = fread(wav, 1, 1 << 20, f);
    fclose(f);
    char *b64 = base64(wav, n);
    size_t cap = strlen(b64) + 512;
    char *json = malloc(cap);
    snprintf(json, cap, "{\"messages\": [{\"role\": \"user\", \"content\": ["
             "{\"type\": \"input_audio\", \"input_audio\": {\"data\": \"%s\", "
             "\"format\": \"wav\"}}, {\"type\": \"text\", \"text\": \"now\"}]}]}", b64);

    mm_audio *a;
    ck_assert_ok(mm_audio_load_file(path, NULL, &a));
    mm_media *m;
    ck_assert_ok(mm_media_from_audio(a, &m));
    const mm_media *media[1] = {m};
    mm_session *s1 = pair_session(), *s2 = pair_session();
    ck_assert_ok(mm_session_add_messages_json(s1, json, strlen(json), NULL));
    ck_assert_ok(mm_session_add_message_media(s2, "user", "now", 3, media, 1));
    assert_same_state(s1, s2);

    /* Another format, broken base64, a clip over the options' limit: refused, nothing added. */
    char *fmt = strstr(json, "\"wav\"");
    memcpy(fmt, "\"mp3\"", 5);
    ck_assert_status(mm_session_add_messages_json(s1, json, strlen(json), NULL),
                     MM_ERR_UNSUPPORTED);
    ck_assert_msg(strstr(mm_last_error(), "mp3"), "%s", mm_last_error());
    memcpy(fmt, "\"wav\"", 5);
    char *data = strstr(json, "\"data\": \"") + 9;
    char saved = data[5];
    data[5] = '*';
    ck_assert_status(mm_session_add_messages_json(s1, json, strlen(json), NULL), MM_ERR_FORMAT);
    data[5] = saved;
    mm_options *o;
    ck_assert_ok(mm_options_create(&o));
    ck_assert_ok(mm_options_set_int(o, MM_OPT_AUDIO_MAX_SECONDS, 1));
    int before = mm_session_n_past(s1);
    ck_assert_status(mm_session_add_messages_json(s1, json, strlen(json), o), MM_ERR_LIMIT);
    ck_assert_int_eq(mm_session_n_past(s1), before);
    mm_options_free(o);

    mm_session_free(s1);
    mm_session_free(s2);
    mm_media_free(m);
    mm_audio_free(a);
    free(json);
    free(b64);
    free(wav);
}
END_TEST

START_TEST(bad_audio_files_are_named)
{
    static const struct {
        const char *projector, *drop;
        int n_mels;
        mm_status want;
        const char *words;
    } cases[] = {
        {"ultravox", NULL, 32, MM_ERR_UNSUPPORTED, "'ultravox' is not supported"},
        {NULL, "a.position_embd.weight", 32, MM_ERR_FORMAT, "a.position_embd.weight"},
        {NULL, "mm.a.fc.weight", 32, MM_ERR_FORMAT, "mm.a.fc.weight"},
        {NULL, "a.conv1d.2.weight", 32, MM_ERR_FORMAT, "a.conv1d.2.weight"},
        {NULL, "a.post_ln.bias", 32, MM_ERR_FORMAT, "a.post_ln.bias"},
        {NULL, NULL, 600, MM_ERR_FORMAT, "num_mel_bins = 600"},
    };
    const char *path = tiny_temp_path("bad_audio.gguf");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ck_assert_ok(tiny_audio_write_with(path, 32, cases[i].n_mels, 100, cases[i].projector,
                                           cases[i].drop));
        mm_model *m = NULL;
        long live = mmi_alloc_live();
        ck_assert_status(mm_model_load(path, NULL, NULL, &m), cases[i].want);
        ck_assert_ptr_null(m);
        ck_assert_int_eq(mmi_alloc_live(), live);
        ck_assert_msg(strstr(mm_last_error(), cases[i].words), "case %zu: '%s' lacks '%s'", i,
                      mm_last_error(), cases[i].words);
    }
    unlink(path);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("audio");
    TCase *wav = tcase_create("wav");
    tcase_add_test(wav, every_sample_format_reads_as_soundfile_scales_it);
    tcase_add_test(wav, channels_are_averaged_into_one);
    tcase_add_test(wav, vector_wavs_read_as_the_reference_waveforms);
    tcase_add_test(wav, other_formats_are_refused_by_name);
    tcase_add_test(wav, malformed_headers_are_named);
    tcase_add_test(wav, every_truncation_fails_cleanly);
    tcase_add_test(wav, long_clips_are_refused_before_allocating);
    tcase_add_test(wav, bad_arguments_are_refused);
    tcase_add_test(wav, allocation_failures_are_reported);
    suite_add_tcase(s, wav);
    TCase *mel = tcase_create("features");
    tcase_add_checked_fixture(mel, load_io, free_io);
    tcase_add_test(mel, mel_filter_bank_matches_hf);
    tcase_add_test(mel, features_match_whisper_feature_extractor);
    tcase_add_test(mel, resampled_clip_matches_the_reference_features);
    suite_add_tcase(s, mel);
    TCase *session = tcase_create("session");
    tcase_add_unchecked_fixture(session, load_pair, free_pair);
    tcase_set_timeout(session, 120);
    tcase_add_test(session, token_counts_follow_qwen2_audio);
    tcase_add_test(session, a_clip_in_a_message_is_its_encoded_rows);
    tcase_add_test(session, chat_json_takes_input_audio_parts);
    tcase_add_test(session, bad_audio_files_are_named);
    suite_add_tcase(s, session);
    return test_run_suite(s);
}
