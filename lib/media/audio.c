/* WAV reading and caller samples into mono float clips (see audio.h). */
#include "audio.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "alloc.h"
#include "options.h"
#include "status.h"

#define MAX_CHANNELS 1024
#define MAX_RATE 1000000       /* Hz: above any recording format */
#define FRAMES_PER_READ 4096   /* frames converted per read of the data chunk */

static mm_status audio_create(size_t n_samples, int sample_rate, mm_audio **out)
{
    mm_audio *audio = mmi_calloc(1, sizeof *audio);
    float *samples = mmi_array(n_samples, sizeof *samples);
    if (!audio || !samples) {
        mmi_free(audio);
        mmi_free(samples);
        return mmi_fail(MM_ERR_NOMEM, "out of memory for %zu audio samples", n_samples);
    }
    audio->sample_rate = sample_rate;
    audio->n_samples = n_samples;
    audio->samples = samples;
    *out = audio;
    return MM_OK;
}

void mmi_audio_free(mm_audio *audio)
{
    if (!audio)
        return;
    mmi_free(audio->samples);
    mmi_free(audio);
}

/* ---- encoded input: a memory buffer or an open file, read at offsets ---- */

typedef struct {
    const uint8_t *data; /* memory input, or NULL when reading `file` */
    FILE *file;
    uint64_t size;       /* bytes in the input */
    const char *name;    /* for messages: the path or "<memory>" */
    int big_endian;      /* RIFX */
} wav_source;

static mm_status source_read(const wav_source *src, uint64_t offset, void *dst, size_t n)
{
    if (offset > src->size || n > src->size - offset)
        return mmi_fail(MM_ERR_FORMAT, "%s: truncated WAV: %zu bytes at offset %llu run past "
                        "the end (%llu bytes)", src->name, n, (unsigned long long)offset,
                        (unsigned long long)src->size);
    if (src->data) {
        memcpy(dst, src->data + offset, n);
        return MM_OK;
    }
    if (fseek(src->file, (long)offset, SEEK_SET) != 0 || fread(dst, 1, n, src->file) != n)
        return mmi_fail(MM_ERR_IO, "%s: read error at offset %llu", src->name,
                        (unsigned long long)offset);
    return MM_OK;
}

static uint32_t get_u16(const wav_source *src, const uint8_t *p)
{
    return src->big_endian ? (uint32_t)p[0] << 8 | p[1] : (uint32_t)p[1] << 8 | p[0];
}

static uint32_t get_u32(const wav_source *src, const uint8_t *p)
{
    return src->big_endian ? (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]
                           : (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0];
}

/* ---- the fmt chunk ---- */

enum { TAG_PCM = 1, TAG_FLOAT = 3, TAG_EXTENSIBLE = 0xfffe };

typedef struct {
    int tag;           /* TAG_PCM or TAG_FLOAT (an extensible file's sub-format) */
    int channels, rate;
    int bytes;         /* per sample: 1, 2, 3, 4 (PCM) or 4, 8 (float) */
    int block_align;   /* bytes per frame */
} wav_format;

static mm_status parse_fmt(const wav_source *src, const uint8_t *p, uint32_t size, wav_format *f)
{
    if (size < 16)
        return mmi_fail(MM_ERR_FORMAT, "%s: WAV fmt chunk of %u bytes (at least 16)", src->name,
                        size);
    uint32_t tag = get_u16(src, p), channels = get_u16(src, p + 2), rate = get_u32(src, p + 4);
    uint32_t block_align = get_u16(src, p + 12), bits = get_u16(src, p + 14);
    if (tag == TAG_EXTENSIBLE) {
        /* The sub-format GUID is {tag}-0000-0010-8000-00aa00389b71: Data1..3 in the file's
         * byte order, Data4 as bytes. */
        static const uint8_t data4[8] = {0x80, 0x00, 0x00, 0xaa, 0x00, 0x38, 0x9b, 0x71};
        if (size < 40)
            return mmi_fail(MM_ERR_FORMAT, "%s: WAVE_FORMAT_EXTENSIBLE fmt chunk of %u bytes "
                            "(40 needed)", src->name, size);
        const uint8_t *guid = p + 24;
        uint32_t sub = get_u32(src, guid);
        if (sub > 0xffff || get_u16(src, guid + 4) != 0 || get_u16(src, guid + 6) != 0x10 ||
            memcmp(guid + 8, data4, 8))
            return mmi_fail(MM_ERR_UNSUPPORTED, "%s: WAVE_FORMAT_EXTENSIBLE sub-format is not a "
                            "standard WAVE format GUID", src->name);
        tag = sub;
    }
    if (tag != TAG_PCM && tag != TAG_FLOAT)
        return mmi_fail(MM_ERR_UNSUPPORTED, "%s: WAV format tag 0x%04x (compressed, e.g. ADPCM "
                        "or MP3 in WAV) is not supported; PCM and IEEE float are", src->name, tag);
    int ok_bits = tag == TAG_PCM ? bits == 8 || bits == 16 || bits == 24 || bits == 32
                                 : bits == 32 || bits == 64;
    if (!ok_bits)
        return mmi_fail(MM_ERR_UNSUPPORTED, "%s: %u-bit %s WAV samples are not supported",
                        src->name, bits, tag == TAG_PCM ? "PCM" : "float");
    if (channels < 1 || channels > MAX_CHANNELS)
        return mmi_fail(MM_ERR_FORMAT, "%s: WAV channel count %u is not in [1, %d]", src->name,
                        channels, MAX_CHANNELS);
    if (rate < 1 || rate > MAX_RATE)
        return mmi_fail(MM_ERR_FORMAT, "%s: WAV sample rate %u Hz is not in [1, %d]", src->name,
                        rate, MAX_RATE);
    if (block_align != channels * (bits / 8))
        return mmi_fail(MM_ERR_FORMAT, "%s: WAV block align %u is not %u channels x %u bytes",
                        src->name, block_align, channels, bits / 8);
    *f = (wav_format){(int)tag, (int)channels, (int)rate, (int)bits / 8, (int)block_align};
    return MM_OK;
}

/* One sample at p as a float in [-1, 1) (floats as stored). */
static double sample_at(const wav_source *src, const wav_format *f, const uint8_t *p)
{
    uint8_t b[8];
    for (int i = 0; i < f->bytes; i++) /* little-endian order from here on */
        b[i] = src->big_endian ? p[f->bytes - 1 - i] : p[i];
    if (f->tag == TAG_FLOAT) {
        if (f->bytes == 4) {
            uint32_t u = (uint32_t)b[3] << 24 | (uint32_t)b[2] << 16 | (uint32_t)b[1] << 8 | b[0];
            float x;
            memcpy(&x, &u, 4);
            return x;
        }
        uint64_t u = 0;
        for (int i = 7; i >= 0; i--)
            u = u << 8 | b[i];
        double x;
        memcpy(&x, &u, 8);
        return x;
    }
    switch (f->bytes) {
    case 1: return ((int)b[0] - 128) / 128.0;
    case 2: return (int16_t)(b[1] << 8 | b[0]) / 32768.0;
    case 3: return (int32_t)((uint32_t)b[2] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[0] << 8)
                   / 2147483648.0;
    default: return (int32_t)((uint32_t)b[3] << 24 | (uint32_t)b[2] << 16 | (uint32_t)b[1] << 8 |
                              b[0]) / 2147483648.0;
    }
}

/* Convert the data chunk (n_frames frames at `offset`) into audio->samples, a block of frames
 * per read. */
static mm_status read_samples(const wav_source *src, const wav_format *f, uint64_t offset,
                              mm_audio *audio)
{
    uint8_t *block = mmi_array(FRAMES_PER_READ, (size_t)f->block_align);
    if (!block)
        return mmi_fail(MM_ERR_NOMEM, "%s: out of memory for a read buffer", src->name);
    mm_status st = MM_OK;
    for (size_t done = 0; done < audio->n_samples && st == MM_OK;) {
        size_t n = audio->n_samples - done < FRAMES_PER_READ ? audio->n_samples - done
                                                              : FRAMES_PER_READ;
        st = source_read(src, offset + (uint64_t)done * f->block_align, block,
                         n * (size_t)f->block_align);
        for (size_t i = 0; i < n && st == MM_OK; i++) {
            const uint8_t *frame = block + i * (size_t)f->block_align;
            double sum = 0;
            for (int c = 0; c < f->channels; c++)
                sum += sample_at(src, f, frame + (size_t)c * f->bytes);
            float x = (float)(sum / f->channels);
            if (!isfinite(x))
                st = mmi_fail(MM_ERR_FORMAT, "%s: WAV frame %zu is not a finite number",
                              src->name, done + i);
            audio->samples[done + i] = x;
        }
        done += n;
    }
    mmi_free(block);
    return st;
}

/* ---- the RIFF walk ---- */

/* Name a known non-WAV format from its first bytes, or NULL. */
static const char *other_format(const uint8_t *m, size_t n)
{
    if (n >= 4 && !memcmp(m, "fLaC", 4))
        return "FLAC";
    if (n >= 4 && !memcmp(m, "OggS", 4))
        return "Ogg";
    if (n >= 3 && (!memcmp(m, "ID3", 3) || (m[0] == 0xff && (m[1] & 0xe0) == 0xe0)))
        return "MP3";
    if (n >= 4 && (!memcmp(m, "RF64", 4) || !memcmp(m, "BW64", 4)))
        return "RF64";
    if (n >= 4 && !memcmp(m, "FORM", 4))
        return "AIFF";
    return NULL;
}

static mm_status decode(wav_source *src, const mm_options *options, mm_audio **out)
{
    *out = NULL;
    uint8_t head[12];
    size_t n_head = src->size < sizeof head ? (size_t)src->size : sizeof head;
    MMI_TRY(source_read(src, 0, head, n_head));
    const char *other = other_format(head, n_head);
    if (other)
        return mmi_fail(MM_ERR_UNSUPPORTED, "%s: %s audio is not supported (WAV only: PCM or "
                        "float, RIFF or RIFX)", src->name, other);
    if (n_head < 12 || (memcmp(head, "RIFF", 4) && memcmp(head, "RIFX", 4)) ||
        memcmp(head + 8, "WAVE", 4))
        return mmi_fail(MM_ERR_FORMAT, "%s: not a WAV file (no RIFF/RIFX WAVE header)",
                        src->name);
    src->big_endian = head[3] == 'X';

    /* Walk the chunks up to the end of the input (the RIFF size is often wrong in streamed
     * files, so the bytes present bound the walk); fmt must come before data. */
    wav_format f = {0};
    int have_fmt = 0;
    uint64_t at = 12;
    for (;;) {
        uint8_t chunk[8];
        if (src->size - at < 8)
            return mmi_fail(MM_ERR_FORMAT, "%s: WAV without a %s chunk", src->name,
                            have_fmt ? "data" : "fmt");
        MMI_TRY(source_read(src, at, chunk, 8));
        uint32_t size = get_u32(src, chunk + 4);
        uint64_t body = at + 8;
        if (!memcmp(chunk, "fmt ", 4)) {
            uint8_t fmt[40] = {0};
            if (size > src->size - body)
                return mmi_fail(MM_ERR_FORMAT, "%s: truncated WAV fmt chunk", src->name);
            MMI_TRY(source_read(src, body, fmt, size < sizeof fmt ? size : sizeof fmt));
            MMI_TRY(parse_fmt(src, fmt, size, &f));
            have_fmt = 1;
        } else if (!memcmp(chunk, "data", 4)) {
            if (!have_fmt)
                return mmi_fail(MM_ERR_FORMAT, "%s: WAV data chunk before the fmt chunk",
                                src->name);
            if (size == 0 || size % (uint32_t)f.block_align)
                return mmi_fail(MM_ERR_FORMAT, "%s: WAV data chunk of %u bytes is not a whole, "
                                "non-zero number of %d-byte frames", src->name, size,
                                f.block_align);
            size_t n_frames = size / (uint32_t)f.block_align;
            int64_t max_seconds = mmi_opt_int(options, MM_OPT_AUDIO_MAX_SECONDS);
            if ((double)n_frames > (double)max_seconds * f.rate)
                return mmi_fail(MM_ERR_LIMIT, "%s: %.1f s of audio is longer than "
                                "MM_OPT_AUDIO_MAX_SECONDS (%lld)", src->name,
                                (double)n_frames / f.rate, (long long)max_seconds);
            if (size > src->size - body)
                return mmi_fail(MM_ERR_FORMAT, "%s: truncated WAV: the data chunk declares %u "
                                "bytes, %llu are present", src->name, size,
                                (unsigned long long)(src->size - body));
            mm_audio *audio;
            MMI_TRY(audio_create(n_frames, f.rate, &audio));
            mm_status st = read_samples(src, &f, body, audio);
            if (st != MM_OK) {
                mmi_audio_free(audio);
                return st;
            }
            *out = audio;
            return MM_OK;
        }
        at = body + size + (size & 1); /* chunks are padded to even sizes */
        if (at > src->size)
            return mmi_fail(MM_ERR_FORMAT, "%s: WAV chunk '%.4s' runs past the end", src->name,
                            (const char *)chunk);
    }
}

mm_status mmi_audio_load_file(const char *path, const mm_options *options, mm_audio **out)
{
    *out = NULL;
    FILE *file = fopen(path, "rb");
    if (!file)
        return mmi_fail(MM_ERR_IO, "%s: cannot open audio file", path);
    long size = fseek(file, 0, SEEK_END) == 0 ? ftell(file) : -1;
    mm_status st;
    if (size < 0) {
        st = mmi_fail(MM_ERR_IO, "%s: cannot find the file's size", path);
    } else {
        wav_source src = {.file = file, .size = (uint64_t)size, .name = path};
        st = decode(&src, options, out);
    }
    fclose(file);
    return st;
}

mm_status mmi_audio_load_memory(const void *data, size_t size, const mm_options *options,
                                mm_audio **out)
{
    wav_source src = {.data = data, .size = size, .name = "<memory>"};
    return decode(&src, options, out);
}

mm_status mmi_audio_from_samples(const float *samples, size_t n_frames, int n_channels,
                                 int sample_rate, mm_audio **out)
{
    *out = NULL;
    if (n_frames == 0)
        return mmi_fail(MM_ERR_ARG, "audio clip of 0 frames");
    if (n_channels < 1 || n_channels > MAX_CHANNELS)
        return mmi_fail(MM_ERR_ARG, "channel count %d is not in [1, %d]", n_channels,
                        MAX_CHANNELS);
    if (sample_rate < 1 || sample_rate > MAX_RATE)
        return mmi_fail(MM_ERR_ARG, "sample rate %d Hz is not in [1, %d]", sample_rate, MAX_RATE);
    if (n_frames > SIZE_MAX / sizeof(float) / (size_t)n_channels)
        return mmi_fail(MM_ERR_ARG, "%zu frames of %d channels overflow a size", n_frames,
                        n_channels);
    mm_audio *audio;
    MMI_TRY(audio_create(n_frames, sample_rate, &audio));
    for (size_t i = 0; i < n_frames; i++) {
        double sum = 0;
        for (int c = 0; c < n_channels; c++)
            sum += samples[i * (size_t)n_channels + (size_t)c];
        audio->samples[i] = (float)(sum / n_channels);
        if (!isfinite(audio->samples[i])) {
            mmi_audio_free(audio);
            return mmi_fail(MM_ERR_ARG, "audio frame %zu is not a finite number", i);
        }
    }
    *out = audio;
    return MM_OK;
}
