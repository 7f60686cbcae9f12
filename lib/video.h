/* Video clips: frames sampled at known times, each a picture for the vision tower.
 *
 * Video exists only here: a clip is its sampled frames, and its media row (mmi_video_ops) runs
 * them through the vision tower as one batch of views (vit.h mmi_vision_encode_frames, which
 * pools them as the file says). Files are read by ext/video_ffmpeg.c. */
#ifndef MMI_VIDEO_H
#define MMI_VIDEO_H

#include <stddef.h>

#include "mm.h"

struct mm_video {
    size_t n_frames;
    mm_image **frames; /* [n_frames], owned */
    double *times;     /* [n_frames] seconds */
};

/* A clip of n_frames frames, all NULL and at time 0 (for a loader to fill); mm_video_free frees
 * what is there. */
mm_status mmi_video_new(size_t n_frames, mm_video **out);

/* Which of `total` frames (frame i at times[i] seconds) the options sample, in order:
 * idx[*n_out] (allocated with mmi_array), as mm.h's video section says. */
mm_status mmi_video_sample(const double *times, size_t total, const mm_options *options,
                           size_t **idx, size_t *n_out);

/* mm_video_from_frames after the argument checks. */
mm_status mmi_video_from_frames(const mm_image *const *frames, const double *times,
                                size_t n_frames, const mm_options *options, mm_video **out);

/* The clip's frames as the vision tower takes them, *chw[n_frames][3][side][side] (allocated
 * with mmi_array): LlavaNextVideoImageProcessor's steps, the shortest edge resized to the
 * file's size and centre-cropped, whatever the file does with images. */
struct mmi_vision;
mm_status mmi_video_frame_pixels(const struct mmi_vision *v, const mm_video *clip, float **chw,
                                 int *side);

/* ext/video_ffmpeg.c: read and sample a file (mm_video_load_file). */
int mmi_video_files_available(void);
mm_status mmi_video_load_file(const char *path, const mm_options *options, mm_video **out);
mm_status mmi_video_load_memory(const void *data, size_t size, const mm_options *options,
                                mm_video **out);

#endif
