/* Video files through FFmpeg (libavformat, libavcodec, libswscale, libavutil), the one
 * optional dependency of the video path: the only file that includes FFmpeg. Built without
 * it (MMI_HAVE_FFMPEG unset), mm_video_load_file answers MM_ERR_UNSUPPORTED.
 *
 * The stream's frame count and rate give every frame's time (frame i at i / rate), the options
 * sample them (video.c), and each sampled frame is reached by seeking to the key frame before
 * it and decoding forward, so a clip costs about one GOP per sampled frame rather than every
 * frame. Sizes and duration are checked from the headers before any frame is decoded. FFmpeg's
 * own log is silenced (libmm never prints). */
#include "video.h"

#include "status.h"

#ifdef MMI_HAVE_FFMPEG

#include <errno.h>
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/log.h>
#include <libavutil/pixdesc.h>
#include <libswscale/swscale.h>
#include <math.h>
#include <pthread.h>

#include "alloc.h"
#include "image.h"
#include "options.h"

/* Frames a stream may declare, whatever its duration says. */
#define MAX_STREAM_FRAMES (1 << 22)

int mmi_video_files_available(void)
{
    return 1;
}

static pthread_once_t quiet_once = PTHREAD_ONCE_INIT;
static void quiet(void)
{
    av_log_set_level(AV_LOG_QUIET);
}

static const char *av_error(int err, char *buf, size_t n)
{
    av_strerror(err, buf, n);
    return buf;
}

/* A file in memory, read through FFmpeg's custom I/O. */
typedef struct {
    const uint8_t *data;
    size_t size, at;
} memory_file;

static int memory_read(void *opaque, uint8_t *buf, int n)
{
    memory_file *m = opaque;
    size_t left = m->size - m->at, take = (size_t)n < left ? (size_t)n : left;
    if (take == 0)
        return AVERROR_EOF;
    memcpy(buf, m->data + m->at, take);
    m->at += take;
    return (int)take;
}

static int64_t memory_seek(void *opaque, int64_t offset, int whence)
{
    memory_file *m = opaque;
    if (whence & AVSEEK_SIZE)
        return (int64_t)m->size;
    int64_t base = (whence & 3) == SEEK_CUR ? (int64_t)m->at
                 : (whence & 3) == SEEK_END ? (int64_t)m->size : 0;
    if (offset > (int64_t)m->size - base || base + offset < 0)
        return AVERROR(EINVAL);
    m->at = (size_t)(base + offset);
    return (int64_t)m->at;
}

typedef struct {
    AVFormatContext *fmt;
    AVIOContext *io; /* reading from memory; NULL for a file */
    memory_file mem;
    AVCodecContext *dec;
    struct SwsContext *sws;
    AVPacket *pkt;
    AVFrame *frame;
    int stream;
    const char *path;
    int max_side;
    int64_t max_pixels;
} reader;

static void reader_close(reader *r)
{
    sws_freeContext(r->sws);
    av_frame_free(&r->frame);
    av_packet_free(&r->pkt);
    avcodec_free_context(&r->dec);
    avformat_close_input(&r->fmt);
    if (r->io)
        av_freep(&r->io->buffer);
    avio_context_free(&r->io);
}

static mm_status check_size(const reader *r, int w, int h)
{
    if (w <= 0 || h <= 0)
        return mmi_fail(MM_ERR_FORMAT, "%s: video frames of %dx%d pixels", r->path, w, h);
    if (w > r->max_side || h > r->max_side || (int64_t)w * h > r->max_pixels)
        return mmi_fail(MM_ERR_LIMIT, "%s: video frames of %dx%d pixels exceed "
                        "MM_OPT_IMAGE_MAX_SIDE (%d) or MM_OPT_IMAGE_MAX_PIXELS (%lld)", r->path,
                        w, h, r->max_side, (long long)r->max_pixels);
    return MM_OK;
}

static mm_status open_stream(reader *r, const mm_options *options, double *rate,
                             size_t *total)
{
    char err[128];
    if (r->mem.data) {
        enum { IO_BUFFER = 1 << 16 };
        uint8_t *buffer = av_malloc(IO_BUFFER);
        r->fmt = avformat_alloc_context();
        r->io = buffer ? avio_alloc_context(buffer, IO_BUFFER, 0, &r->mem, memory_read, NULL,
                                            memory_seek) : NULL;
        if (!r->io)
            av_free(buffer);
        if (!r->fmt || !r->io)
            return mmi_fail(MM_ERR_NOMEM, "%s: out of memory for the reader", r->path);
        r->fmt->pb = r->io;
        r->fmt->flags |= AVFMT_FLAG_CUSTOM_IO;
    }
    /* avformat_open_input frees the context when it fails */
    int rc = avformat_open_input(&r->fmt, r->mem.data ? NULL : r->path, NULL, NULL);
    if (rc < 0)
        return mmi_fail(rc == AVERROR(ENOENT) || rc == AVERROR(EACCES) ? MM_ERR_IO
                                                                        : MM_ERR_FORMAT,
                        "%s: cannot open as a video: %s", r->path, av_error(rc, err, sizeof err));
    if ((rc = avformat_find_stream_info(r->fmt, NULL)) < 0)
        return mmi_fail(MM_ERR_FORMAT, "%s: corrupt or truncated video: %s", r->path,
                        av_error(rc, err, sizeof err));
    const AVCodec *codec = NULL;
    r->stream = av_find_best_stream(r->fmt, AVMEDIA_TYPE_VIDEO, -1, -1, &codec, 0);
    if (r->stream == AVERROR_STREAM_NOT_FOUND)
        return mmi_fail(MM_ERR_FORMAT, "%s: no video stream", r->path);
    if (r->stream < 0 || !codec) {
        const AVStream *any = NULL;
        for (unsigned i = 0; i < r->fmt->nb_streams && !any; i++)
            if (r->fmt->streams[i]->codecpar->codec_type == AVMEDIA_TYPE_VIDEO)
                any = r->fmt->streams[i];
        return mmi_fail(MM_ERR_UNSUPPORTED, "%s: no decoder for the video codec '%s'", r->path,
                        any ? avcodec_get_name(any->codecpar->codec_id) : "?");
    }
    AVStream *st = r->fmt->streams[r->stream];
    MMI_TRY(check_size(r, st->codecpar->width, st->codecpar->height));

    AVRational fr = av_guess_frame_rate(r->fmt, st, NULL);
    *rate = fr.num > 0 && fr.den > 0 ? av_q2d(fr) : 0;
    double seconds = st->duration > 0 ? (double)st->duration * av_q2d(st->time_base)
                     : r->fmt->duration > 0 ? (double)r->fmt->duration / AV_TIME_BASE : 0;
    int64_t max_seconds = mmi_opt_int(options, MM_OPT_VIDEO_MAX_SECONDS);
    if (seconds > (double)max_seconds)
        return mmi_fail(MM_ERR_LIMIT, "%s: a clip of %.1f s is longer than "
                        "MM_OPT_VIDEO_MAX_SECONDS (%lld)", r->path, seconds,
                        (long long)max_seconds);
    double frames = st->nb_frames > 0 ? (double)st->nb_frames : floor(seconds * *rate + 0.5);
    if (!(*rate > 0) || !(frames >= 1))
        return mmi_fail(MM_ERR_FORMAT, "%s: zero-length video stream (%g frames at %g per "
                        "second)", r->path, frames, *rate);
    if (frames > MAX_STREAM_FRAMES)
        return mmi_fail(MM_ERR_LIMIT, "%s: the stream declares %.0f frames, more than %d",
                        r->path, frames, MAX_STREAM_FRAMES);
    *total = (size_t)frames;

    r->dec = avcodec_alloc_context3(codec);
    r->pkt = av_packet_alloc();
    r->frame = av_frame_alloc();
    if (!r->dec || !r->pkt || !r->frame)
        return mmi_fail(MM_ERR_NOMEM, "%s: out of memory for the decoder", r->path);
    if ((rc = avcodec_parameters_to_context(r->dec, st->codecpar)) < 0 ||
        (rc = avcodec_open2(r->dec, codec, NULL)) < 0)
        return mmi_fail(MM_ERR_UNSUPPORTED, "%s: cannot decode the video codec '%s': %s",
                        r->path, codec->name, av_error(rc, err, sizeof err));
    return MM_OK;
}

/* The next decoded frame into r->frame: 1, or 0 at the end of the stream. */
static mm_status next_frame(reader *r, int *got)
{
    char err[128];
    for (;;) {
        int rc = avcodec_receive_frame(r->dec, r->frame);
        if (rc == 0) {
            *got = 1;
            return MM_OK;
        }
        if (rc == AVERROR_EOF) {
            *got = 0;
            return MM_OK;
        }
        if (rc != AVERROR(EAGAIN))
            return mmi_fail(MM_ERR_FORMAT, "%s: corrupt video data: %s", r->path,
                            av_error(rc, err, sizeof err));
        rc = av_read_frame(r->fmt, r->pkt);
        if (rc == AVERROR_EOF) {
            avcodec_send_packet(r->dec, NULL); /* drain */
            continue;
        }
        if (rc < 0)
            return mmi_fail(MM_ERR_FORMAT, "%s: corrupt or truncated video: %s", r->path,
                            av_error(rc, err, sizeof err));
        if (r->pkt->stream_index == r->stream)
            rc = avcodec_send_packet(r->dec, r->pkt);
        av_packet_unref(r->pkt);
        if (rc < 0 && rc != AVERROR(EAGAIN) && rc != AVERROR_INVALIDDATA)
            return mmi_fail(MM_ERR_FORMAT, "%s: corrupt video data: %s", r->path,
                            av_error(rc, err, sizeof err));
    }
}

/* r->frame as RGB8. */
static mm_status convert(reader *r, mm_image **out)
{
    AVFrame *f = r->frame;
    MMI_TRY(check_size(r, f->width, f->height));
    r->sws = sws_getCachedContext(r->sws, f->width, f->height, f->format, f->width, f->height,
                                  AV_PIX_FMT_RGB24, SWS_BICUBIC, NULL, NULL, NULL);
    if (!r->sws)
        return mmi_fail(MM_ERR_UNSUPPORTED, "%s: cannot convert %s frames to RGB", r->path,
                        av_get_pix_fmt_name(f->format) ? av_get_pix_fmt_name(f->format) : "?");
    MMI_TRY(mmi_image_create(f->width, f->height, out));
    uint8_t *dst[4] = {(*out)->pixels};
    int stride[4] = {3 * f->width};
    sws_scale(r->sws, (const uint8_t *const *)f->data, f->linesize, 0, f->height, dst, stride);
    return MM_OK;
}

/* Decode up to the frame at `seconds` (the first whose time is not before it, less half a
 * frame for rounding), seeking to the key frame before it when that is ahead of where the
 * decoder is. */
static mm_status frame_at(reader *r, double seconds, double rate, double *decoded_to,
                          mm_image **out)
{
    AVStream *st = r->fmt->streams[r->stream];
    double tb = av_q2d(st->time_base), start = st->start_time != AV_NOPTS_VALUE
                                                   ? (double)st->start_time * tb : 0;
    double want = seconds - 0.5 / rate;
    if (want > *decoded_to &&
        av_seek_frame(r->fmt, r->stream, (int64_t)floor((start + seconds) / tb),
                      AVSEEK_FLAG_BACKWARD) >= 0)
        avcodec_flush_buffers(r->dec);
    for (;;) {
        int got;
        MMI_TRY(next_frame(r, &got));
        if (!got)
            return mmi_fail(MM_ERR_FORMAT, "%s: truncated video: no frame at %.3f s", r->path,
                            seconds);
        int64_t pts = r->frame->best_effort_timestamp;
        double t = pts == AV_NOPTS_VALUE ? *decoded_to + 1 / rate : (double)pts * tb - start;
        *decoded_to = t;
        if (t >= want) {
            mm_status s = convert(r, out);
            av_frame_unref(r->frame);
            return s;
        }
        av_frame_unref(r->frame);
    }
}

static mm_status load(reader *from, const mm_options *options, mm_video **out)
{
    pthread_once(&quiet_once, quiet);
    reader r = *from;
    r.max_side = (int)mmi_opt_int(options, MM_OPT_IMAGE_MAX_SIDE);
    r.max_pixels = mmi_opt_int(options, MM_OPT_IMAGE_MAX_PIXELS);
    const char *path = r.path;
    double rate = 0, *times = NULL, decoded_to = -INFINITY;
    size_t total = 0, *idx = NULL, n = 0;
    mm_video *v = NULL;
    mm_status st = open_stream(&r, options, &rate, &total);
    if (st == MM_OK && !(times = mmi_array(total, sizeof *times)))
        st = mmi_fail(MM_ERR_NOMEM, "%s: out of memory for %zu frame times", path, total);
    for (size_t i = 0; st == MM_OK && i < total; i++)
        times[i] = (double)i / rate;
    if (st == MM_OK)
        st = mmi_video_sample(times, total, options, &idx, &n);
    if (st == MM_OK)
        st = mmi_video_new(n, &v);
    for (size_t k = 0; st == MM_OK && k < n; k++) {
        v->times[k] = times[idx[k]];
        st = frame_at(&r, times[idx[k]], rate, &decoded_to, &v->frames[k]);
    }
    mmi_free(idx);
    mmi_free(times);
    reader_close(&r);
    if (st != MM_OK) {
        mm_video_free(v);
        return st;
    }
    *out = v;
    return MM_OK;
}

mm_status mmi_video_load_file(const char *path, const mm_options *options, mm_video **out)
{
    reader r = {.path = path};
    return load(&r, options, out);
}

mm_status mmi_video_load_memory(const void *data, size_t size, const mm_options *options,
                                mm_video **out)
{
    reader r = {.path = "video data", .mem = {data, size, 0}};
    if (size == 0)
        return mmi_fail(MM_ERR_FORMAT, "video data: empty");
    return load(&r, options, out);
}

#else

int mmi_video_files_available(void)
{
    return 0;
}

mm_status mmi_video_load_file(const char *path, const mm_options *options, mm_video **out)
{
    (void)options;
    (void)out;
    return mmi_fail(MM_ERR_UNSUPPORTED, "%s: this libmm was built without FFmpeg, so it reads "
                    "no video files (decode the frames and use mm_video_from_frames)", path);
}

mm_status mmi_video_load_memory(const void *data, size_t size, const mm_options *options,
                                mm_video **out)
{
    (void)data;
    (void)size;
    return mmi_video_load_file("video data", options, out);
}

#endif
