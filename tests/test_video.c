/* Video: frame sampling against hand-computed indices, the pooling op against hand values, a
 * clip's encoding against its frames encoded one at a time, the session's media path, and
 * files made by the `ffmpeg` command read back through FFmpeg (or refused without it). */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mm.h"
#include "ops.h"
#include "testutil.h"
#include "tiny_llama.h"

enum { N_FRAMES = 10 };

/* Frames 1x1 .. 10x1 wide: a sampled frame says which it was by its width. */
static mm_image *frames[N_FRAMES];

static void make_frames(void)
{
    uint8_t px[3 * N_FRAMES] = {0};
    for (int i = 0; i < N_FRAMES; i++)
        ck_assert_ok(mm_image_from_pixels(px, i + 1, 1, 3 * N_FRAMES, MM_PIXEL_RGB8,
                                          &frames[i]));
}

static void free_frames(void)
{
    for (int i = 0; i < N_FRAMES; i++)
        mm_image_free(frames[i]);
}

/* The frames a clip of frames[0..n) at times (NULL: i seconds) samples, by index. */
static mm_status sampled(size_t n, const double *times, int n_sample, double interval, int max,
                         int *idx, size_t *n_out)
{
    mm_options *o;
    ck_assert_ok(mm_options_create(&o));
    ck_assert_ok(mm_options_set_int(o, MM_OPT_VIDEO_FRAMES, n_sample));
    ck_assert_ok(mm_options_set_float(o, MM_OPT_VIDEO_INTERVAL, interval));
    ck_assert_ok(mm_options_set_int(o, MM_OPT_VIDEO_MAX_FRAMES, max));
    mm_video *v;
    mm_status st = mm_video_from_frames((const mm_image *const *)frames, times, n, o, &v);
    mm_options_free(o);
    if (st != MM_OK)
        return st;
    *n_out = mm_video_n_frames(v);
    for (size_t i = 0; i < *n_out; i++)
        idx[i] = mm_image_width(mm_video_frame(v, i)) - 1;
    mm_video_free(v);
    return MM_OK;
}

START_TEST(uniform_sampling_is_hfs_index_rule)
{
    /* np.arange(0, total, total / n).astype(int) */
    static const struct { size_t total; int n; int want[N_FRAMES]; size_t n_want; } cases[] = {
        {8, 4, {0, 2, 4, 6}, 4}, {10, 4, {0, 2, 5, 7}, 4}, {10, 3, {0, 3, 6}, 3},
        {7, 3, {0, 2, 4}, 3}, {3, 8, {0, 1, 2}, 3}, {10, 1, {0}, 1},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        int idx[N_FRAMES];
        size_t n;
        ck_assert_ok(sampled(cases[c].total, NULL, cases[c].n, 0, 64, idx, &n));
        ck_assert_uint_eq(n, cases[c].n_want);
        for (size_t i = 0; i < n; i++)
            ck_assert_int_eq(idx[i], cases[c].want[i]);
    }
}
END_TEST

START_TEST(interval_sampling_takes_the_first_frame_at_each_step)
{
    const double t[N_FRAMES] = {0.25, 0.75, 1.25, 1.75, 2.25, 2.75, 3.25, 3.75, 4.25, 4.75};
    int idx[N_FRAMES];
    size_t n;
    /* steps from 0.25: 0.25, 1.45, 2.65, 3.85 -> frames at 0.25, 1.75, 2.75, 4.25 */
    ck_assert_ok(sampled(N_FRAMES, t, 8, 1.2, 64, idx, &n));
    ck_assert_uint_eq(n, 4);
    ck_assert_int_eq(idx[0], 0);
    ck_assert_int_eq(idx[1], 3);
    ck_assert_int_eq(idx[2], 5);
    ck_assert_int_eq(idx[3], 8);
    mm_video *v;
    ck_assert_ok(mm_video_from_frames((const mm_image *const *)frames, t, 2, NULL, &v));
    ck_assert(mm_video_frame_time(v, 1) == 0.75);
    mm_video_free(v);
}
END_TEST

START_TEST(limits_and_bad_times_are_refused)
{
    int idx[N_FRAMES];
    size_t n;
    ck_assert_status(sampled(N_FRAMES, NULL, 8, 0, 4, idx, &n), MM_ERR_LIMIT);
    ck_assert_status(sampled(N_FRAMES, NULL, 8, 0.5, 8, idx, &n), MM_ERR_LIMIT); /* 19 */
    ck_assert(strstr(mm_last_error(), "MM_OPT_VIDEO_MAX_FRAMES"));
    const double back[3] = {0, 2, 1}, nan_t[2] = {0, NAN};
    ck_assert_status(sampled(3, back, 8, 0, 64, idx, &n), MM_ERR_ARG);
    ck_assert(strstr(mm_last_error(), "frame 2"));
    ck_assert_status(sampled(2, nan_t, 8, 0, 64, idx, &n), MM_ERR_ARG);
    ck_assert(strstr(mm_last_error(), "not finite"));
}
END_TEST

START_TEST(pooling_matches_hand_values)
{
    /* a 5x5 grid of 2 channels (c0 = 10 r + col, c1 = -c0) pooled by 2: the last row and
     * column are dropped */
    float x[5 * 5 * 2], out[2 * 2 * 2];
    for (int r = 0; r < 5; r++)
        for (int c = 0; c < 5; c++) {
            x[(r * 5 + c) * 2] = (float)(10 * r + c);
            x[(r * 5 + c) * 2 + 1] = -(float)(10 * r + c);
        }
    mmi_pool2d(out, x, 5, 5, 2, 2, MMI_POOL_AVG);
    const float avg[8] = {5.5f, -5.5f, 7.5f, -7.5f, 25.5f, -25.5f, 27.5f, -27.5f};
    for (int i = 0; i < 8; i++)
        ck_assert_float_eq(out[i], avg[i]);
    mmi_pool2d(out, x, 5, 5, 2, 2, MMI_POOL_MAX);
    const float max[8] = {11, 0, 13, -2, 31, -20, 33, -22};
    for (int i = 0; i < 8; i++)
        ck_assert_float_eq(out[i], max[i]);
}
END_TEST

/* ---- encoding and sessions on a tiny LLaVA-NeXT-Video-style pair ---- */

static mm_model *pair;

static void load_pair(void)
{
    char text_path[512];
    snprintf(text_path, sizeof text_path, "%s", tiny_temp_path("video_text.gguf"));
    const char *vision_path = tiny_temp_path("video_vision.gguf");
    tiny_vision v = tiny_vision_default;
    v.image_size = 32; /* a 4x4 patch grid, pooled by 2: 4 rows per frame */
    v.pool_stride = 2;
    tiny_llama c = tiny_llama_default;
    c.vocab_path = test_vectors_path("tokenizer/ggml-vocab-llama-spm.gguf");
    ck_assert_ok(tiny_llama_write(&c, text_path));
    ck_assert_ok(tiny_vision_write_sized(vision_path, c.n_embd, &v));
    ck_assert_ok(mm_model_load(text_path, vision_path, NULL, &pair));
    unlink(text_path);
    unlink(vision_path);
}

static void free_pair(void)
{
    mm_model_free(pair);
}

static mm_image *picture(int w, int h, int seed)
{
    uint8_t *px = malloc((size_t)w * h * 3);
    for (int i = 0; i < w * h * 3; i++)
        px[i] = (uint8_t)((i * 37 + seed * 101) % 251);
    mm_image *img;
    ck_assert_ok(mm_image_from_pixels(px, w, h, (size_t)w * 3, MM_PIXEL_RGB8, &img));
    free(px);
    return img;
}

static mm_embeddings *encode_clip(const mm_image *const *f, size_t n)
{
    mm_video *v;
    mm_media *m;
    mm_embeddings *e;
    ck_assert_ok(mm_video_from_frames(f, NULL, n, NULL, &v));
    ck_assert_ok(mm_media_from_video(v, &m));
    size_t count;
    ck_assert_ok(mm_media_n_tokens(pair, m, &count));
    ck_assert_ok(mm_media_encode(pair, m, NULL, &e));
    ck_assert_uint_eq(mm_embeddings_n_tokens(e), count);
    mm_media_free(m);
    mm_video_free(v);
    return e;
}

START_TEST(a_clip_is_its_frames_one_after_another)
{
    /* The batch of three frames gives the rows each frame gives alone (attention stays within
     * a frame), 4 pooled rows per frame. */
    mm_image *f[3] = {picture(40, 32, 1), picture(32, 50, 2), picture(33, 33, 3)};
    mm_embeddings *all = encode_clip((const mm_image *const *)f, 3);
    size_t E = mm_embeddings_n_embd(all);
    ck_assert_uint_eq(mm_embeddings_n_tokens(all), 3 * 4);
    for (int i = 0; i < 3; i++) {
        mm_embeddings *one = encode_clip((const mm_image *const *)&f[i], 1);
        ck_assert_uint_eq(mm_embeddings_n_tokens(one), 4);
        const float *a = mm_embeddings_data(all) + (size_t)i * 4 * E,
                    *b = mm_embeddings_data(one);
        for (size_t k = 0; k < 4 * E; k++)
            ck_assert_msg(fabsf(a[k] - b[k]) <= 1e-5f * fmaxf(1, fabsf(b[k])),
                          "frame %d value %zu: %g alone, %g in the batch", i, k, b[k], a[k]);
        mm_embeddings_free(one);
    }
    mm_embeddings_free(all);
    for (int i = 0; i < 3; i++)
        mm_image_free(f[i]);
}
END_TEST

START_TEST(a_clip_in_a_message_is_its_encoded_rows)
{
    mm_image *f[2] = {picture(40, 32, 4), picture(40, 32, 5)}, *still = picture(20, 20, 6);
    mm_video *v;
    ck_assert_ok(mm_video_from_frames((const mm_image *const *)f, NULL, 2, NULL, &v));
    mm_media *clip, *pic;
    ck_assert_ok(mm_media_from_video(v, &clip));
    ck_assert_ok(mm_media_from_image(still, &pic));
    mm_embeddings *ec, *ep;
    ck_assert_ok(mm_media_encode(pair, clip, NULL, &ec));
    ck_assert_ok(mm_media_encode(pair, pic, NULL, &ep));
    mm_session *s1, *s2;
    ck_assert_ok(mm_session_create(pair, NULL, &s1));
    ck_assert_ok(mm_session_create(pair, NULL, &s2));
    const mm_media *media[2] = {clip, pic};
    const char *text = "Watch <video> then <image> now";
    ck_assert_ok(mm_session_add_message_media(s1, "user", text, strlen(text), media, 2));
    const mm_embeddings *rows[2] = {ec, ep};
    const char *same = "Watch <media> then <media> now";
    ck_assert_ok(mm_session_add_message_embeddings(s2, "user", same, strlen(same), rows, 2));
    test_assert_same_state(s1, s2);
    mm_session_free(s1);
    mm_session_free(s2);
    mm_embeddings_free(ec);
    mm_embeddings_free(ep);
    mm_media_free(clip);
    mm_media_free(pic);
    mm_video_free(v);
    mm_image_free(f[0]);
    mm_image_free(f[1]);
    mm_image_free(still);
}
END_TEST

/* ---- chat JSON ---- */

static char *frame_url(int i)
{
    char rel[64];
    snprintf(rel, sizeof rel, "hf/llava_next_video/frame_%02d.png", i);
    char *b64 = test_file_base64(test_vectors_path(rel));
    ck_assert_ptr_nonnull(b64);
    char *url = malloc(strlen(b64) + 32);
    sprintf(url, "data:image/png;base64,%s", b64);
    free(b64);
    return url;
}

START_TEST(json_frames_marked_as_one_video)
{
    /* Two image_url parts with the same "video" are one clip of two frames, at one marker. */
    char *f0 = frame_url(0), *f1 = frame_url(1);
    size_t cap = strlen(f0) + strlen(f1) + 512;
    char *json = malloc(cap);
    snprintf(json, cap, "[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"Look\"},"
             "{\"type\":\"image_url\",\"image_url\":{\"url\":\"%s\"},\"video\":\"c\"},"
             "{\"type\":\"image_url\",\"image_url\":{\"url\":\"%s\"},\"video\":\"c\"},"
             "{\"type\":\"text\",\"text\":\"now\"}]}]", f0, f1);
    mm_session *s1, *s2;
    ck_assert_ok(mm_session_create(pair, NULL, &s1));
    ck_assert_ok(mm_session_create(pair, NULL, &s2));
    ck_assert_ok(mm_session_add_messages_json(s1, json, strlen(json), NULL));
    mm_image *frames[2];
    ck_assert_ok(mm_image_load_file(test_vectors_path("hf/llava_next_video/frame_00.png"), NULL,
                                    &frames[0]));
    ck_assert_ok(mm_image_load_file(test_vectors_path("hf/llava_next_video/frame_01.png"), NULL,
                                    &frames[1]));
    mm_video *v;
    mm_media *m;
    ck_assert_ok(mm_video_from_frames((const mm_image *const *)frames, NULL, 2, NULL, &v));
    ck_assert_ok(mm_media_from_video(v, &m));
    const mm_media *media[1] = {m};
    ck_assert_ok(mm_session_add_message_media(s2, "user", "Look<video>now", 14, media, 1));
    test_assert_same_state(s1, s2);
    /* a frame that is not an image is named */
    const char *bad = "[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":"
                      "{\"url\":\"data:image/png;base64,AAAA\"},\"video\":\"c\"}]}]";
    int before = mm_session_n_past(s1);
    ck_assert_status(mm_session_add_messages_json(s1, bad, strlen(bad), NULL), MM_ERR_FORMAT);
    ck_assert(strstr(mm_last_error(), "video \"c\", frame 0"));
    ck_assert_int_eq(mm_session_n_past(s1), before);
    mm_media_free(m);
    mm_video_free(v);
    mm_image_free(frames[0]);
    mm_image_free(frames[1]);
    mm_session_free(s1);
    mm_session_free(s2);
    free(json);
    free(f0);
    free(f1);
}
END_TEST

static int make_mp4(void);
static char mp4_path[512];

START_TEST(json_video_url_is_the_file)
{
    mm_session *s1;
    ck_assert_ok(mm_session_create(pair, NULL, &s1));
    const char *remote = "[{\"role\":\"user\",\"content\":[{\"type\":\"video_url\","
                         "\"video_url\":{\"url\":\"https://example.com/a.mp4\"}}]}]";
    ck_assert_status(mm_session_add_messages_json(s1, remote, strlen(remote), NULL),
                     MM_ERR_UNSUPPORTED);
    const char *not_video = "[{\"role\":\"user\",\"content\":[{\"type\":\"video_url\","
                            "\"video_url\":{\"url\":\"data:image/png;base64,AAAA\"}}]}]";
    ck_assert_status(mm_session_add_messages_json(s1, not_video, strlen(not_video), NULL),
                     MM_ERR_UNSUPPORTED);
    ck_assert(strstr(mm_last_error(), "is not a video"));
    if (!mm_video_files_available()) {
        mm_session_free(s1);
        return; /* an_mp4_reads_back_its_sampled_frames checks the refusal */
    }
    ck_assert(make_mp4());
    char *b64 = test_file_base64(mp4_path);
    size_t cap = strlen(b64) + 256;
    char *json = malloc(cap);
    snprintf(json, cap, "[{\"role\":\"user\",\"content\":[{\"type\":\"video_url\",\"video_url\":"
             "{\"url\":\"data:video/mp4;base64,%s\"}},{\"type\":\"text\",\"text\":\"What happens?\"}]}]",
             b64);
    ck_assert_ok(mm_session_add_messages_json(s1, json, strlen(json), NULL));
    mm_session *s2;
    ck_assert_ok(mm_session_create(pair, NULL, &s2));
    mm_video *v;
    mm_media *m;
    ck_assert_ok(mm_video_load_file(mp4_path, NULL, &v));
    ck_assert_ok(mm_media_from_video(v, &m));
    const mm_media *media[1] = {m};
    ck_assert_ok(mm_session_add_message_media(s2, "user", "What happens?", 13, media, 1));
    test_assert_same_state(s1, s2);
    mm_media_free(m);
    mm_video_free(v);
    mm_session_free(s1);
    mm_session_free(s2);
    free(json);
    free(b64);
    unlink(mp4_path);
}
END_TEST

/* ---- files ---- */

/* 10 frames of 64x48 at 10 per second, frame t a flat colour (20 t, 200 - 15 t, 90), through
 * the `ffmpeg` command; 0 when the command is missing. */
static int make_mp4(void)
{
    snprintf(mp4_path, sizeof mp4_path, "%s", tiny_temp_path("clip.mp4"));
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "ffmpeg -loglevel error -y -f rawvideo -pix_fmt rgb24 -s 64x48 "
             "-r 10 -i - -c:v mpeg4 -q:v 2 -g 4 -pix_fmt yuv420p '%s'", mp4_path);
    FILE *p = popen(cmd, "w");
    if (!p)
        return 0;
    static uint8_t px[64 * 48 * 3];
    for (int t = 0; t < 10; t++) {
        for (int i = 0; i < 64 * 48; i++) {
            px[3 * i] = (uint8_t)(20 * t);
            px[3 * i + 1] = (uint8_t)(200 - 15 * t);
            px[3 * i + 2] = 90;
        }
        fwrite(px, 1, sizeof px, p);
    }
    return pclose(p) == 0;
}

START_TEST(an_mp4_reads_back_its_sampled_frames)
{
    if (!mm_video_files_available()) {
        mm_video *v;
        ck_assert_status(mm_video_load_file("any.mp4", NULL, &v), MM_ERR_UNSUPPORTED);
        ck_assert(strstr(mm_last_error(), "FFmpeg"));
        return;
    }
    ck_assert_msg(make_mp4(), "the ffmpeg command (tools/install-deps.sh) made no MP4");
    mm_options *o;
    ck_assert_ok(mm_options_create(&o));
    ck_assert_ok(mm_options_set_int(o, MM_OPT_VIDEO_FRAMES, 4));
    mm_video *v;
    ck_assert_ok(mm_video_load_file(mp4_path, o, &v));
    ck_assert_uint_eq(mm_video_n_frames(v), 4);
    const int want[4] = {0, 2, 5, 7}; /* floor(k * 10 / 4) */
    for (int k = 0; k < 4; k++) {
        const mm_image *f = mm_video_frame(v, (size_t)k);
        ck_assert_int_eq(mm_image_width(f), 64);
        ck_assert_int_eq(mm_image_height(f), 48);
        ck_assert_msg(fabs(mm_video_frame_time(v, (size_t)k) - want[k] / 10.0) < 1e-9,
                      "frame %d at %g s", k, mm_video_frame_time(v, (size_t)k));
        /* the middle pixel is the frame's colour, less the codec's loss */
        const uint8_t *c = mm_image_pixels(f) + 3 * (24 * 64 + 32);
        int t = want[k];
        ck_assert_msg(abs(c[0] - 20 * t) <= 6 && abs(c[1] - (200 - 15 * t)) <= 6 &&
                      abs(c[2] - 90) <= 6, "frame %d: %d %d %d, want frame %d", k, c[0], c[1],
                      c[2], t);
    }
    mm_video_free(v);
    /* one every 0.3 s: frames 0, 3, 6, 9 */
    ck_assert_ok(mm_options_set_float(o, MM_OPT_VIDEO_INTERVAL, 0.3));
    ck_assert_ok(mm_video_load_file(mp4_path, o, &v));
    ck_assert_uint_eq(mm_video_n_frames(v), 4);
    ck_assert(fabs(mm_video_frame_time(v, 3) - 0.9) < 1e-9);
    mm_video_free(v);
    /* limits before decoding */
    ck_assert_ok(mm_options_set_int(o, MM_OPT_IMAGE_MAX_SIDE, 32));
    ck_assert_status(mm_video_load_file(mp4_path, o, &v), MM_ERR_LIMIT);
    ck_assert(strstr(mm_last_error(), "64x48"));
    mm_options_free(o);
    unlink(mp4_path);
}
END_TEST

static void write_bytes(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(data, 1, n, f), n);
    fclose(f);
}

START_TEST(broken_files_are_named)
{
    if (!mm_video_files_available())
        return; /* an_mp4_reads_back_its_sampled_frames checks the refusal */
    mm_video *v = NULL;
    ck_assert_status(mm_video_load_file("/nonexistent/clip.mp4", NULL, &v), MM_ERR_IO);
    ck_assert_ptr_null(v);
    const char *path = tiny_temp_path("broken.mp4");
    write_bytes(path, "", 0);
    ck_assert_status(mm_video_load_file(path, NULL, &v), MM_ERR_FORMAT);
    ck_assert(strstr(mm_last_error(), path));
    write_bytes(path, "not a video at all, just some words", 35);
    ck_assert_status(mm_video_load_file(path, NULL, &v), MM_ERR_FORMAT);
    /* a real file cut short: every prefix fails cleanly or gives frames */
    ck_assert(make_mp4());
    FILE *f = fopen(mp4_path, "rb");
    static unsigned char data[1 << 20];
    size_t n = fread(data, 1, sizeof data, f);
    fclose(f);
    ck_assert_uint_gt(n, 1000);
    for (size_t cut = 8; cut < n; cut += n / 7) {
        write_bytes(path, data, cut);
        mm_status st = mm_video_load_file(path, NULL, &v);
        ck_assert_msg(st == MM_OK || st == MM_ERR_FORMAT, "cut at %zu: %s", cut,
                      mm_last_error());
        if (st == MM_OK)
            mm_video_free(v);
    }
    unlink(path);
    unlink(mp4_path);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("video");
    TCase *sampling = tcase_create("sampling");
    tcase_add_checked_fixture(sampling, make_frames, free_frames);
    tcase_add_test(sampling, uniform_sampling_is_hfs_index_rule);
    tcase_add_test(sampling, interval_sampling_takes_the_first_frame_at_each_step);
    tcase_add_test(sampling, limits_and_bad_times_are_refused);
    tcase_add_test(sampling, pooling_matches_hand_values);
    suite_add_tcase(s, sampling);
    TCase *encode = tcase_create("encode");
    tcase_add_checked_fixture(encode, load_pair, free_pair);
    tcase_add_test(encode, a_clip_is_its_frames_one_after_another);
    tcase_add_test(encode, a_clip_in_a_message_is_its_encoded_rows);
    tcase_add_test(encode, json_frames_marked_as_one_video);
    tcase_add_test(encode, json_video_url_is_the_file);
    suite_add_tcase(s, encode);
    TCase *files = tcase_create("files");
    tcase_set_timeout(files, 60 * test_time_scale());
    tcase_add_test(files, an_mp4_reads_back_its_sampled_frames);
    tcase_add_test(files, broken_files_are_named);
    suite_add_tcase(s, files);
    return test_run_suite(s);
}
