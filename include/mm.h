/*
 * libmm — run multimodal language models (image + text in, text out) and CLIP.
 *
 * The whole public API. Conventions that hold for every function below:
 *  - Handles are opaque; no struct layout is part of the ABI.
 *  - Every fallible call returns mm_status; MM_OK is 0. Constructors return their object
 *    through an `out` pointer that is set to NULL on failure.
 *  - On failure, mm_last_error() on the same thread describes the problem (file, offset, key,
 *    expected vs found).
 *  - Every *_free accepts NULL. Inputs are copied before a call returns, so the caller may
 *    release them afterwards. Memory the library returns is owned by the library: never free() it.
 *  - Thread safety is stated per function. "Any thread" means the call may run concurrently with
 *    any other call.
 *  - The library never writes to stdout or stderr; see mm_set_log().
 *
 * Numbers given to enum constants below are part of the ABI and are never reused or renumbered.
 */
#ifndef MM_H
#define MM_H

#include <stddef.h>
#include <stdint.h>

#define MM_VERSION_MAJOR 0
#define MM_VERSION_MINOR 1
#define MM_VERSION_PATCH 0
/* MAJOR*10000 + MINOR*100 + PATCH, comparable with mm_version_number(). */
#define MM_VERSION_NUMBER (MM_VERSION_MAJOR * 10000 + MM_VERSION_MINOR * 100 + MM_VERSION_PATCH)
/* Equals the soname major (libmm.so.1); bumped only if the ABI ever breaks. */
#define MM_ABI_VERSION 1

#if defined(_WIN32) && !defined(MM_STATIC)
#  ifdef MM_BUILDING
#    define MM_API __declspec(dllexport)
#  else
#    define MM_API __declspec(dllimport)
#  endif
#elif defined(__GNUC__)
#  define MM_API __attribute__((visibility("default")))
#else
#  define MM_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------------------------------------
 * Status, errors, logging, version
 * ------------------------------------------------------------------------------------------- */

typedef enum mm_status {
    MM_OK              = 0,
    MM_ERR_ARG         = 1,  /* invalid argument: NULL handle, bad size, out-of-range value */
    MM_ERR_NOMEM       = 2,  /* an allocation failed */
    MM_ERR_IO          = 3,  /* a file could not be opened, read or mapped */
    MM_ERR_FORMAT      = 4,  /* malformed or hostile input data (model file, image, text) */
    MM_ERR_UNSUPPORTED = 5,  /* well-formed but not supported: unknown option key, tensor type */
    MM_ERR_CTX_FULL    = 6,  /* the input would not fit in the session's context */
    MM_ERR_CANCELLED   = 7,  /* stopped by mm_session_cancel() */
    MM_ERR_STATE       = 8,  /* call not valid in the object's current state */
    MM_ERR_LIMIT       = 9   /* input exceeds a configured limit (image size, pixel budget) */
} mm_status;

/* Static English name of a status, e.g. "invalid argument". Never NULL. Any thread. */
MM_API const char *mm_status_str(mm_status status);

/* Detail of the last failure on the calling thread ("" if none yet). Valid until the next
 * failing libmm call on this thread. Successful calls leave it unchanged. Any thread. */
MM_API const char *mm_last_error(void);

typedef enum mm_log_level {
    MM_LOG_DEBUG = 0,
    MM_LOG_INFO  = 1,
    MM_LOG_WARN  = 2,
    MM_LOG_ERROR = 3
} mm_log_level;

/* Receives one complete message (no trailing newline). Called on the thread inside the libmm
 * call that logs, possibly from several threads at once. */
typedef void (*mm_log_fn)(void *user, mm_log_level level, const char *message);

/* Route messages at or above min_level to fn; fn == NULL silences the library (the default).
 * Set it before other threads use the library: swapping it while they log is not synchronised. */
MM_API void mm_set_log(mm_log_fn fn, void *user, mm_log_level min_level);

/* Runtime version as MM_VERSION_NUMBER, and as "MAJOR.MINOR.PATCH" (static). Any thread. */
MM_API unsigned mm_version_number(void);
MM_API const char *mm_version_string(void);
/* MM_ABI_VERSION of the library actually loaded; bindings refuse a value they were not made
 * for. Any thread. */
MM_API int mm_abi_version(void);

/* ---------------------------------------------------------------------------------------------
 * Options: a bag of typed values under numbered keys (the zstd/curl pattern)
 *
 * One mm_options may be passed to any call that takes options; each call reads the keys that
 * concern it and ignores the rest. Keys absent from the bag take the documented default.
 * ------------------------------------------------------------------------------------------- */

typedef struct mm_options mm_options;

typedef enum mm_opt_type {
    MM_OPT_TYPE_INT    = 1,
    MM_OPT_TYPE_FLOAT  = 2,
    MM_OPT_TYPE_STRING = 3
} mm_opt_type;

/* Keys. 100s: loading and threads; 200s: sessions and generation; 300s: images; 400s: audio;
 * 500s: video; 600s: points.
 * Image detail (MM_OPT_IMAGE_DETAIL): "low" is one view of the whole image at the tower's
 * size; "high" is the model's tiling (LLaVA-1.6: a grid of tiles chosen from the file's
 * pinpoints plus an overview) when the model has one; "auto" is high when the model tiles,
 * else low. mm_image_token_count says what an image costs at each level.
 * Matrix precision (MM_OPT_MATMUL_PRECISION, read where threads are started: sessions, image
 * encoding): "bf16" multiplies batches of rows (prompts, image patches) in bf16 with f32 sums,
 * where the processor has AVX512_BF16 (elsewhere, and for quantized weights, in f32); about 3
 * significant digits per product instead of 7 (docs/performance.md gives the measured effect).
 * Single tokens are decoded alike in both. Any other value is MM_ERR_ARG from the call that
 * reads it.
 * Threads: MM_OPT_N_THREADS sizes libmm's own threads; the matrix products run on OpenBLAS's
 * threads, which libmm leaves as the host set them (OPENBLAS_NUM_THREADS, or
 * openblas_set_num_threads): give both the same count (docs/performance.md). */
typedef enum mm_opt {
    MM_OPT_N_THREADS       = 100, /* int, libmm's own compute threads; default 0 = one per CPU */
    MM_OPT_USE_MMAP        = 101, /* int 0/1, map model files instead of reading them; default 1 */
    MM_OPT_MATMUL_PRECISION = 102, /* string: "f32" (default) or "bf16" (below) */
    MM_OPT_N_CTX           = 200, /* int, context length in tokens; default 0 = model's trained */
    MM_OPT_MAX_TOKENS      = 201, /* int, tokens one generate call may produce; default 256 */
    MM_OPT_SEED            = 202, /* int, sampler seed; default 0 */
    MM_OPT_TEMPERATURE     = 203, /* float >= 0, 0 = greedy; default 0 */
    MM_OPT_TOP_K           = 204, /* int >= 0, 0 = off; default 0 */
    MM_OPT_TOP_P           = 205, /* float in (0,1], 1 = off; default 1 */
    MM_OPT_MIN_P           = 206, /* float in [0,1), 0 = off; default 0 */
    MM_OPT_REPEAT_PENALTY  = 207, /* float > 0, 1 = off; default 1 */
    MM_OPT_REPEAT_LAST_N   = 208, /* int >= 0, tokens the penalty looks back on; default 64 */
    MM_OPT_CHAT_TEMPLATE   = 209, /* string: llava chatml phi3 llama2 raw; default: model's */
    MM_OPT_IMAGE_MAX_SIDE  = 300, /* int, largest width or height accepted; default 16384 */
    MM_OPT_IMAGE_MAX_PIXELS= 301, /* int, largest width*height accepted; default 64 Mi pixels */
    MM_OPT_IMAGE_MAX_TOTAL_PIXELS = 302, /* int, pixels of all images of one call; default 128 Mi */
    MM_OPT_IMAGE_DETAIL    = 303, /* string: "low", "high", "auto"; default "auto" (above) */
    MM_OPT_AUDIO_MAX_SECONDS = 400,/* int, longest audio clip read from a file; default 600 */
    MM_OPT_VIDEO_FRAMES    = 500, /* int, frames sampled uniformly from a clip; default 8 */
    MM_OPT_VIDEO_INTERVAL  = 501, /* float seconds, one frame every S (0 = use VIDEO_FRAMES) */
    MM_OPT_VIDEO_MAX_FRAMES= 502, /* int, most frames a clip may give; default 64 */
    MM_OPT_VIDEO_MAX_SECONDS = 503, /* int, longest clip read from a file; default 3600 */
    MM_OPT_POINTS_MAX_COUNT = 600 /* int, most points read from a PLY file; default 4 Mi */
} mm_opt;

/* Budgets: what one call may cost is bounded before the work starts, never found out after.
 *  - Images (per image, every decode): MM_OPT_IMAGE_MAX_SIDE (default 16384) and
 *    MM_OPT_IMAGE_MAX_PIXELS (default 64 Mi) against the size in the file's header, before
 *    pixel memory is allocated; libjpeg's working memory at most 6 bytes per
 *    MM_OPT_IMAGE_MAX_PIXELS pixel + 2 MiB; data cut short or corrupt is MM_ERR_FORMAT.
 *  - Images of one request (mm_session_add_messages_json): MM_OPT_IMAGE_MAX_TOTAL_PIXELS
 *    (default 128 Mi) summed from the headers, and the positions the images take against the
 *    free context, both before any is decoded; then one decoded image in memory at a time.
 *  - Audio (per clip read from WAV): MM_OPT_AUDIO_MAX_SECONDS (default 600) against the length
 *    in the file's header, before sample memory is allocated; a clip's rows are planned from
 *    its length before it is resampled or encoded.
 *  - Point clouds (per PLY file): MM_OPT_POINTS_MAX_COUNT (default 4 Mi) against the vertex
 *    count in the header, and every declared count against the bytes present, before point
 *    memory is allocated.
 *  - Context (MM_OPT_N_CTX): every mm_session_add_* call counts its positions before any work;
 *    text that cannot fit is refused from its length before it is tokenized (no token stands
 *    for more bytes than the longest entry of the vocabulary).
 *  - Generation: MM_OPT_MAX_TOKENS tokens per call.
 *  - JSON (fixed): depth 64, 2^20 values. */

/* Create an empty bag. Free with mm_options_free(). Any thread. */
MM_API mm_status mm_options_create(mm_options **out);
/* Deep copy (strings included). */
MM_API mm_status mm_options_copy(const mm_options *src, mm_options **out);
MM_API void mm_options_free(mm_options *options);

/* Set a key. MM_ERR_UNSUPPORTED for an unknown key, MM_ERR_ARG for a value of the wrong type or
 * out of the key's range (the bag is then unchanged). Strings are copied. A bag is not
 * synchronised: one thread writes it at a time; reading it from several threads is fine. */
MM_API mm_status mm_options_set_int(mm_options *options, mm_opt key, int64_t value);
MM_API mm_status mm_options_set_float(mm_options *options, mm_opt key, double value);
MM_API mm_status mm_options_set_string(mm_options *options, mm_opt key, const char *value);
/* Remove a key so it reverts to its default. */
MM_API mm_status mm_options_unset(mm_options *options, mm_opt key);

/* Read a key: the value set, or the key's default when unset. options may be NULL (all defaults).
 * A string result stays valid until the key is next set or the bag is freed; for an unset
 * string key whose default depends on the model, *value is NULL. */
MM_API mm_status mm_options_get_int(const mm_options *options, mm_opt key, int64_t *value);
MM_API mm_status mm_options_get_float(const mm_options *options, mm_opt key, double *value);
MM_API mm_status mm_options_get_string(const mm_options *options, mm_opt key, const char **value);

/* Static name of a key ("n_threads") and its value type; NULL / MM_ERR_UNSUPPORTED if unknown. */
MM_API const char *mm_option_name(mm_opt key);
MM_API mm_status mm_option_type(mm_opt key, mm_opt_type *type);

/* Progress of long operations, reported through a callback kept in the options bag (a function
 * pointer cannot go through the typed setters). A call given these options calls
 * fn(user, stage, done, total) on its own thread as work completes: done grows from 0 to total,
 * the last call has done == total, and the unit depends on the stage. Return 0 to go on; any
 * other value stops the operation, which then fails with MM_ERR_CANCELLED and leaves nothing
 * half-made (a load frees what it read; a session stays usable). */
typedef enum mm_progress_stage {
    MM_PROGRESS_MODEL_LOAD   = 1, /* mm_model_load: unit = tensors read */
    MM_PROGRESS_IMAGE_ENCODE = 2  /* mm_image_encode(_pixels): unit = vision encoder blocks */
} mm_progress_stage;

typedef int (*mm_progress_fn)(void *user, mm_progress_stage stage, uint64_t done, uint64_t total);

/* Set the callback (fn == NULL removes it); mm_options_copy copies it with `user`, which the
 * library never dereferences. MM_ERR_ARG if options is NULL. Thread rules as for the setters. */
MM_API mm_status mm_options_set_progress(mm_options *options, mm_progress_fn fn, void *user);

/* ---------------------------------------------------------------------------------------------
 * Models
 * ------------------------------------------------------------------------------------------- */

typedef struct mm_model mm_model;

/* Load a model from GGUF files laid out as llama.cpp lays them out: `path` is a language model
 * (general.architecture "llama", ...) or a CLIP file (architecture "clip"); `mmproj_path` is the
 * vision file that goes with a language model, or NULL. Reads MM_OPT_USE_MMAP and the progress
 * callback (MM_PROGRESS_MODEL_LOAD; stopping it gives MM_ERR_CANCELLED) from options (NULL for
 * defaults). Errors: MM_ERR_IO (cannot read), MM_ERR_FORMAT (malformed file, message
 * names the file, key or tensor and offset), MM_ERR_UNSUPPORTED (architecture or tensor type).
 * The files must fit each other (else MM_ERR_FORMAT naming both): the vocabulary has exactly as
 * many tokens as token_embd.weight and the output have rows, special token ids lie inside it,
 * and a vision file given with a language model has a projector (a CLIP dual-encoder file does
 * not) whose output width is the language model's embedding width. Strings compared as names
 * (general.architecture, ...) must not hold a NUL byte.
 * A model is immutable after load and may be used by any number of threads and sessions at
 * once. */
MM_API mm_status mm_model_load(const char *path, const char *mmproj_path,
                               const mm_options *options, mm_model **out);
/* Release the caller's reference. Sessions created on the model keep their own reference, so
 * the model may be freed before them. Accepts NULL. */
MM_API void mm_model_free(mm_model *model);
/* The family of the model's language model, as its file's general.architecture names it:
 * "llama" (also Mistral), "qwen2", "phi3", "qwen2vl" (Qwen2-VL) or "opt" (docs/model-format.md
 * §1-2). NULL for a model without language model (a CLIP file) and for NULL. The string lives
 * as long as the library. */
MM_API const char *mm_model_family(const mm_model *model);

/* Metadata of a loaded model, read-only, for tools such as mm-info (the llama.h pattern). The
 * entries are the GGUF key/value pairs of the model's files: the main file's in file order,
 * then the vision file's (a key present in both appears twice). Any thread. */
MM_API size_t mm_model_meta_count(const mm_model *model);
/* Key number `index` ("general.architecture"), owned by the model; NULL for NULL or an index
 * out of range. */
MM_API const char *mm_model_meta_key(const mm_model *model, size_t index);
/* Value number `index` as text: a string as it is, an integer in decimal, a float as %.9g,
 * a bool as true/false, a numeric array of up to 16 items as "[1, 2, 3]", other arrays as
 * "[32000 strings]", "[100 numbers]", "[3 bools]". Written NUL-terminated into
 * buf[0..capacity); *len (may be NULL) receives the text's length without the NUL whether
 * it fits or not. Errors: MM_ERR_ARG (NULL model, index out of range, buf NULL with
 * capacity > 0, capacity <= the length: nothing is written then, *len says how much is
 * needed). */
MM_API mm_status mm_model_meta_value(const mm_model *model, size_t index, char *buf,
                                     size_t capacity, size_t *len);
/* Tensors of the model's files, in the same order as the metadata. Tensor `index`: its name,
 * its type's name as ggml spells it ("F32", "F16", "BF16", "Q8_0", "Q4_0"; both owned by the
 * model) and the bytes of its data in the file; any output pointer may be NULL. Errors:
 * MM_ERR_ARG (NULL model, index out of range). Any thread. */
MM_API size_t mm_model_tensor_count(const mm_model *model);
MM_API mm_status mm_model_tensor_info(const mm_model *model, size_t index, const char **name,
                                      const char **type, uint64_t *n_bytes);
/* Memory the model takes: *weight_bytes, its tensors' data in the files (mapped, or read when
 * MM_OPT_USE_MMAP is 0) plus the copies made at load for tensor types the kernels do not read
 * as stored; *kv_bytes, the KV cache a session of n_ctx positions allocates (n_ctx 0: the
 * model's trained context; 0 bytes for a model without a language model). Either pointer may
 * be NULL. Errors: MM_ERR_ARG (NULL model, n_ctx < 0). Any thread. */
MM_API mm_status mm_model_memory(const mm_model *model, int n_ctx, uint64_t *weight_bytes,
                                 uint64_t *kv_bytes);

/* ---- section: images (image.c, preprocess.c) ---- */

/* A decoded picture held as 8-bit RGB. Immutable once created: any number of threads may read
 * it and pass it to encoding calls at once. Free with mm_image_free(). */
typedef struct mm_image mm_image;

/* Layout of caller pixels given to mm_image_from_pixels(); 8 bits per sample. */
typedef enum mm_pixel_format {
    MM_PIXEL_RGB8  = 1,  /* R, G, B */
    MM_PIXEL_RGBA8 = 2,  /* R, G, B, A; alpha is dropped (not composited) */
    MM_PIXEL_BGR8  = 3   /* B, G, R (OpenCV order) */
} mm_pixel_format;

/* Decode a PNG or JPEG image from a file (the format is sniffed from the magic bytes, not the
 * name). The result is what PIL's Image.open(...).convert('RGB') gives, so models see the pixels
 * their reference pipelines saw:
 *  - alpha (RGBA, grey+alpha, transparent palette entries) is dropped, not composited: the stored
 *    colour of a transparent pixel is kept, as PIL's convert('RGB') does;
 *  - 16-bit samples keep their high byte; 1/2/4-bit grey is scaled to 0..255; no gamma or
 *    colour-profile correction;
 *  - JPEG EXIF orientation is applied (the image comes out upright), which PIL's plain decode
 *    does not do; Adobe CMYK/YCCK JPEGs are converted to RGB.
 * Reads MM_OPT_IMAGE_MAX_SIDE and MM_OPT_IMAGE_MAX_PIXELS from options (NULL for defaults): a
 * larger declared size fails with MM_ERR_LIMIT before pixel memory is allocated, and libjpeg's
 * working memory is capped at 6 bytes per MM_OPT_IMAGE_MAX_PIXELS pixel plus 2 MiB (a progressive
 * JPEG holds 2 bytes per sample until its last scan: a progressive CMYK image over 3/4 of the
 * pixel limit exceeds it, MM_ERR_LIMIT).
 * A file whose pixels are not all there is refused, not painted grey: a PNG or JPEG that ends
 * early, and (stricter than PIL) a JPEG whose entropy-coded data stops at a marker or is corrupt.
 * Errors: MM_ERR_ARG (NULL path or out), MM_ERR_IO (cannot open or read), MM_ERR_FORMAT (not PNG
 * or JPEG, corrupt or truncated data; the message names the problem), MM_ERR_LIMIT,
 * MM_ERR_NOMEM. Any thread. */
MM_API mm_status mm_image_load_file(const char *path, const mm_options *options, mm_image **out);

/* Same as mm_image_load_file(), from `size` bytes at `data` (copied as needed; the caller keeps
 * ownership). */
MM_API mm_status mm_image_load_memory(const void *data, size_t size, const mm_options *options,
                                      mm_image **out);

/* Copy caller pixels: `height` rows of `width` pixels, row y starting at pixels + y * stride
 * (stride >= width * bytes per pixel). Errors: MM_ERR_ARG (NULL pointer, width or height <= 0,
 * stride too small, unknown format), MM_ERR_NOMEM. No size limit is applied beyond that. Any
 * thread. */
MM_API mm_status mm_image_from_pixels(const uint8_t *pixels, int width, int height, size_t stride,
                                      mm_pixel_format format, mm_image **out);

/* Size in pixels; 0 for NULL. Any thread. */
MM_API int mm_image_width(const mm_image *image);
MM_API int mm_image_height(const mm_image *image);
/* The RGB8 pixels, rows packed (3 * width bytes per row, top row first), owned by the image and
 * valid until mm_image_free(); NULL for NULL. Any thread. */
MM_API const uint8_t *mm_image_pixels(const mm_image *image);

/* Release an image. Accepts NULL. */
MM_API void mm_image_free(mm_image *image);

/* ---- section: audio (audio.c) ---- */

/* An audio clip held as mono float samples at its own sample rate. Immutable once created: any
 * number of threads may read it and pass it to encoding calls at once. Free with
 * mm_audio_free(). An audio encoder resamples it to its own rate (Whisper: 16 kHz) when
 * libmm was built with libsoxr (mm_audio_resampling_available()). */
typedef struct mm_audio mm_audio;

/* Read a WAV file: RIFF (little-endian) or RIFX (big-endian); PCM 8 (unsigned), 16, 24 or 32
 * bits, or IEEE float 32 or 64 bits; plain or WAVE_FORMAT_EXTENSIBLE; any channel count, the
 * channels averaged into one. Integer samples are scaled by the full range of their size
 * (x / 32768 for 16 bits), as soundfile and librosa load them. Reads MM_OPT_AUDIO_MAX_SECONDS
 * from options (NULL for defaults): a longer clip fails with MM_ERR_LIMIT before sample memory
 * is allocated.
 * Errors: MM_ERR_ARG (NULL path or out), MM_ERR_IO (cannot open or read), MM_ERR_FORMAT (not
 * WAV, corrupt or truncated data, a sample that is not a finite number; the message names the
 * problem), MM_ERR_UNSUPPORTED (MP3, FLAC, Ogg, AIFF, RF64 or a compressed WAV; the message
 * names the format), MM_ERR_LIMIT, MM_ERR_NOMEM. Any thread. */
MM_API mm_status mm_audio_load_file(const char *path, const mm_options *options, mm_audio **out);

/* Same as mm_audio_load_file(), from `size` bytes at `data` (the caller keeps ownership). */
MM_API mm_status mm_audio_load_memory(const void *data, size_t size, const mm_options *options,
                                      mm_audio **out);

/* Copy caller samples: n_frames frames of n_channels interleaved float samples (nominally in
 * [-1, 1]) at sample_rate Hz; the channels are averaged into one. Errors: MM_ERR_ARG (NULL
 * pointer, n_frames 0, n_channels not in [1, 1024], sample_rate not in [1, 1000000], a sample
 * that is not a finite number), MM_ERR_NOMEM. Any thread. */
MM_API mm_status mm_audio_from_samples(const float *samples, size_t n_frames, int n_channels,
                                       int sample_rate, mm_audio **out);

/* Sample rate in Hz and length in (mono) samples; 0 for NULL. Any thread. */
MM_API int mm_audio_sample_rate(const mm_audio *audio);
MM_API size_t mm_audio_n_samples(const mm_audio *audio);
/* The mono samples, owned by the clip and valid until mm_audio_free(); NULL for NULL. */
MM_API const float *mm_audio_samples(const mm_audio *audio);

/* Release a clip. Accepts NULL. */
MM_API void mm_audio_free(mm_audio *audio);

/* 1 when this build resamples clips to an encoder's rate (libsoxr), else 0: a clip at another
 * rate is then refused with MM_ERR_UNSUPPORTED by the calls that encode it. Any thread. */
MM_API int mm_audio_resampling_available(void);

/* ---- section: video (video.c, ext/video_ffmpeg.c) ---- */

/* A video clip: frames chosen at known times (seconds). The frames are sampled when the clip is
 * made, as LLaVA-NeXT-Video's references do: with MM_OPT_VIDEO_INTERVAL = S > 0, the first
 * frame at or after each multiple of S from the first frame's time; else MM_OPT_VIDEO_FRAMES = N
 * frames uniformly, frame floor(i * total / N) for i < N (all of them when total <= N). More
 * than MM_OPT_VIDEO_MAX_FRAMES sampled frames is MM_ERR_LIMIT. Each frame goes through the
 * vision tower like an image (mm_media_from_video). Immutable once made: any thread may read
 * it; free it once with mm_video_free(). */
typedef struct mm_video mm_video;

/* From caller frames: frames[n_frames] with their times (seconds, non-decreasing, finite; NULL:
 * frame i at i seconds). The sampled frames are copied: the caller's may go after the call.
 * Errors: MM_ERR_ARG (NULL argument, no frames, a NULL frame, times out of order or not
 * finite), MM_ERR_LIMIT (too many sampled frames), MM_ERR_NOMEM. */
MM_API mm_status mm_video_from_frames(const mm_image *const *frames, const double *times,
                                      size_t n_frames, const mm_options *options,
                                      mm_video **out);
/* Read a clip from a file through FFmpeg (libavformat, libavcodec, libswscale), seeking to the
 * sampled frames where the container allows. Frame size (MM_OPT_IMAGE_MAX_SIDE /
 * MM_OPT_IMAGE_MAX_PIXELS), duration (MM_OPT_VIDEO_MAX_SECONDS) and frame count are checked
 * before any frame is decoded. Errors: MM_ERR_UNSUPPORTED (a build without FFmpeg, see
 * mm_video_files_available(); a codec FFmpeg cannot decode), MM_ERR_IO, MM_ERR_FORMAT (not a
 * video, corrupt or truncated data, no video stream, no frames), MM_ERR_LIMIT, MM_ERR_NOMEM. */
MM_API mm_status mm_video_load_file(const char *path, const mm_options *options,
                                    mm_video **out);
/* The same for a file's bytes in memory (data only read during the call). */
MM_API mm_status mm_video_load_memory(const void *data, size_t size, const mm_options *options,
                                      mm_video **out);
/* 1 when this build reads video files (FFmpeg), else 0. Any thread. */
MM_API int mm_video_files_available(void);
/* Sampled frames; NULL gives 0. */
MM_API size_t mm_video_n_frames(const mm_video *video);
/* Frame i (owned by the clip) and its time in seconds; NULL / 0 when out of range. */
MM_API const mm_image *mm_video_frame(const mm_video *video, size_t i);
MM_API double mm_video_frame_time(const mm_video *video, size_t i);
/* Release a clip. Accepts NULL. */
MM_API void mm_video_free(mm_video *video);

/* ---- section: point clouds (points.c) ---- */

/* A point cloud: n points of float x, y, z, with optional colours (R, G, B in [0, 1]) and
 * normals. Immutable once created: any number of threads may read it at once. Free with
 * mm_points_free(). */
typedef struct mm_points mm_points;

/* Read a PLY file: ASCII, binary_little_endian or binary_big_endian 1.0. The points are the
 * "vertex" element's x, y, z (any PLY number type), with red, green, blue (uchar scaled by
 * 1/255, ushort by 1/65535, float or double taken as they are and required in [0, 1]) and
 * nx, ny, nz when all three of a group are present; other properties, lists and elements
 * before the vertex element are skipped by their declared types, and what follows it is not
 * read. Reads MM_OPT_POINTS_MAX_COUNT from options (NULL for defaults): more points fail with
 * MM_ERR_LIMIT before point memory is allocated.
 * Errors: MM_ERR_ARG (NULL path or out), MM_ERR_IO (cannot open or read), MM_ERR_FORMAT (not
 * PLY, a malformed header, data cut short, a count the data cannot hold, no vertex element or
 * no points, a coordinate that is not a finite float, a colour outside [0, 1]; the message
 * names the problem), MM_ERR_LIMIT, MM_ERR_NOMEM. Any thread. */
MM_API mm_status mm_points_load_file(const char *path, const mm_options *options,
                                     mm_points **out);

/* Same as mm_points_load_file(), from `size` bytes at `data` (the caller keeps ownership). */
MM_API mm_status mm_points_load_memory(const void *data, size_t size, const mm_options *options,
                                       mm_points **out);

/* Copy caller arrays: n_points rows of x, y, z in `xyz`, and when `rgb` is not NULL as many
 * rows of R, G, B in [0, 1]. Errors: MM_ERR_ARG (NULL xyz or out, n_points 0, a coordinate
 * that is not a finite number, a colour outside [0, 1]), MM_ERR_NOMEM. No count limit is
 * applied. Any thread. */
MM_API mm_status mm_points_from_arrays(const float *xyz, const float *rgb, size_t n_points,
                                       mm_points **out);

/* Number of points; 0 for NULL. Any thread. */
MM_API size_t mm_points_count(const mm_points *points);
/* The rows of 3 floats (x y z; R G B; nx ny nz), owned by the cloud and valid until
 * mm_points_free(); NULL for NULL, and colours or normals NULL when the cloud has none. */
MM_API const float *mm_points_xyz(const mm_points *points);
MM_API const float *mm_points_rgb(const mm_points *points);
MM_API const float *mm_points_normals(const mm_points *points);

/* Release a point cloud. Accepts NULL. */
MM_API void mm_points_free(mm_points *points);

/* ---- section: media (media.c) ---- */

/* One media item of a message, for mm_session_add_message_media(): an image, an audio clip or
 * a video, borrowed (not copied), so the image, clip or video must outlive the handle. Any thread; free with
 * mm_media_free(). Errors: MM_ERR_ARG (NULL argument), MM_ERR_NOMEM. */
typedef struct mm_media mm_media;
MM_API mm_status mm_media_from_image(const mm_image *image, mm_media **out);
MM_API mm_status mm_media_from_audio(const mm_audio *audio, mm_media **out);
/* A clip's frames as one item: every frame through the vision tower in one batch, pooled as
 * the file says (LLaVA-NeXT-Video: clip.vision.spatial_pool_stride), the rows frame after
 * frame, no separator. */
MM_API mm_status mm_media_from_video(const mm_video *video, mm_media **out);
/* Release a handle (not the image or clip). Accepts NULL. */
MM_API void mm_media_free(mm_media *media);

/* ---- section: vision encoding and CLIP (vit.c, connector.c, clip.c) ---- */

/* Image embeddings: n_tokens rows of n_embd floats, row-major, owned by the handle. For a model
 * with a projector (LLaVA) they are the rows that take the image's place in the language
 * model's input; for a vision-only file without one (CLIP, SigLIP) they are the tower's last
 * hidden state as HF's vision model returns it (SigLIP: after post_layernorm; CLIP: before it,
 * class token first). An mm_embeddings is immutable: any thread may read it; free it once. */
typedef struct mm_embeddings mm_embeddings;

/* Preprocess `image` as the model file says (resize, crop, normalise; at MM_OPT_IMAGE_DETAIL
 * "high", the tiles and the overview) and run the vision encoder and projector: the rows a
 * session would put in the context for it (LLaVA-1.6: packed, with its newline rows). Reads
 * MM_OPT_IMAGE_DETAIL, MM_OPT_N_THREADS (threads started for this call) and the progress
 * callback from options (NULL for defaults). Errors: MM_ERR_ARG (NULL argument, model without a
 * vision encoder, unknown detail), MM_ERR_NOMEM. The model is only read: any number of threads
 * may encode with one model at once. */
MM_API mm_status mm_image_encode(const mm_model *model, const mm_image *image,
                                 const mm_options *options, mm_embeddings **out);
/* The same for a caller who preprocesses: planar_chw holds 3 planes (R, G, B) of height rows
 * of width floats, already normalised as the model expects. Any size from one patch up is
 * taken: the patch grid is floor(height/patch) × floor(width/patch) and position embeddings are
 * resized bicubically when it differs from the trained grid (as HF's interpolate_pos_encoding).
 * MM_ERR_LIMIT when the grid exceeds 16384 patches. The pixels are only read during the call. */
MM_API mm_status mm_image_encode_pixels(const mm_model *model, const float *planar_chw,
                                        int width, int height, const mm_options *options,
                                        mm_embeddings **out);
/* What an image of width x height pixels will cost, without decoding or encoding anything:
 * the positions it takes in a session's context (*n_positions) and the views the vision tower
 * runs on (*n_views: 1, or the tiles plus the overview; may be NULL), at the options'
 * MM_OPT_IMAGE_DETAIL (NULL options: "auto"; Qwen2-VL: a row per 2x2 patch window of the
 * image's own smart_resize grid at every level). Equal to what mm_image_encode and a session's
 * mm_session_add_message_images then produce. Errors: MM_ERR_ARG (NULL model or n_positions,
 * width or height < 1, unknown detail, model without a vision encoder), MM_ERR_LIMIT. Any
 * thread. */
MM_API mm_status mm_image_token_count(const mm_model *model, int width, int height,
                                      const mm_options *options, size_t *n_positions,
                                      int *n_views);
/* Getters; NULL gives 0 / NULL. data holds n_tokens * n_embd floats valid until
 * mm_embeddings_free. */
MM_API size_t mm_embeddings_n_tokens(const mm_embeddings *embeddings);
MM_API size_t mm_embeddings_n_embd(const mm_embeddings *embeddings);
MM_API const float *mm_embeddings_data(const mm_embeddings *embeddings);
MM_API void mm_embeddings_free(mm_embeddings *embeddings);

/* The embedding rows (each one position) the model turns the item into, known without
 * encoding it: for an image, the vision tower's token count at the default detail ("auto");
 * for a video, its frames times the rows of one frame (the tower's patches pooled as the file
 * says; mm_video_n_frames gives the frames); for audio, the rows of its 30-second chunks (Whisper-style encoders: 25 per second of audio for Qwen2-Audio, rounded
 * per chunk as the encoder pools). Errors: MM_ERR_ARG (NULL argument), MM_ERR_STATE (the model
 * has no tower for this kind of media), MM_ERR_UNSUPPORTED (a clip at another rate without
 * resampling, mm_audio_resampling_available()). Any thread. */
MM_API mm_status mm_media_n_tokens(const mm_model *model, const mm_media *media,
                                   size_t *n_tokens);
/* Encode one media item by the model's tower for its kind (an image as mm_image_encode does;
 * a clip resampled to the encoder's rate, then its chunks), e.g. on another thread before
 * mm_session_add_message_embeddings(). Reads MM_OPT_N_THREADS and, for images,
 * MM_OPT_IMAGE_DETAIL from options (NULL: defaults).
 * Errors as mm_media_n_tokens, and MM_ERR_NOMEM. */
MM_API mm_status mm_media_encode(const mm_model *model, const mm_media *media,
                                 const mm_options *options, mm_embeddings **out);

/* CLIP (a `clip` file holding both towers). Embeddings are unit-length vectors in the joint
 * space, so their dot product is the cosine similarity. All functions only read the model:
 * any thread. They fail with MM_ERR_ARG for NULL arguments, a model that is not a CLIP dual
 * encoder, or an output of the wrong size (n must equal mm_clip_embedding_size). */

/* Size of the joint embedding space; 0 for a model that is not a CLIP dual encoder or NULL. */
MM_API size_t mm_clip_embedding_size(const mm_model *model);
/* The factor applied to cosines before the softmax: exp(learned logit_scale). */
MM_API mm_status mm_clip_logit_scale(const mm_model *model, float *scale);
/* The image's embedding out[n]: preprocessed as the file says, the vision tower's pooled output
 * (post-layernorm of the class token) through the visual projection, L2-normalised. */
MM_API mm_status mm_clip_image_embedding(const mm_model *model, const mm_image *image,
                                         float *out, size_t n);
/* From normalised planar pixels, as mm_image_encode_pixels takes them. */
MM_API mm_status mm_clip_image_embedding_pixels(const mm_model *model, const float *planar_chw,
                                                int width, int height, float *out, size_t n);
/* Text through the model's own tokenizer (start and end tokens added; text longer than the
 * model's context is cut to fit, keeping the end token, as HF's truncation does).
 * MM_ERR_UNSUPPORTED when the file carries no tokenizer: use the _tokens variant. */
MM_API mm_status mm_clip_text_embedding(const mm_model *model, const char *text, float *out,
                                        size_t n);
/* Token ids as given (include the start and end tokens yourself). The pooled position is the
 * first end-of-text id (or, for the legacy configuration, the largest id), as HF does.
 * MM_ERR_ARG for an id outside the vocabulary or more ids than the context holds. */
MM_API mm_status mm_clip_text_embedding_tokens(const mm_model *model, const int32_t *ids,
                                               size_t n_ids, float *out, size_t n);
/* Cosine similarity of a[n] and b[n] (0 when either is all zeros). Any thread. */
MM_API float mm_clip_similarity(const float *a, const float *b, size_t n);
/* Zero-shot classification: probs[i] = softmax over labels of logit_scale · cos(image,
 * label i). probs has n_labels entries and sums to 1. Labels are encoded as given (add a
 * prompt such as "a photo of a ..." yourself). */
MM_API mm_status mm_clip_classify(const mm_model *model, const mm_image *image,
                                  const char *const *labels, size_t n_labels, float *probs);

/* ---- section: tokenizer (tokenizer.c) ---- */

/* The model's tokenizer (from the tokenizer.ggml.* keys of the language model or CLIP file):
 * SentencePiece-style BPE ("llama") or byte-level BPE ("gpt2"), as llama.cpp runs them, or
 * CLIP's lowercasing BPE ("clip"). A file naming a tokenizer or pre-tokenizer libmm does not
 * implement is refused at load (MM_ERR_UNSUPPORTED) rather than tokenized differently.
 * The model is read-only, so every function here may be called from any thread at once.
 * Size convention for the calls that fill a caller's buffer: *n_out (or *len) always receives
 * the size the full result needs; when that exceeds `capacity`, the call returns MM_ERR_ARG,
 * and the buffer's contents are unspecified. Call once with capacity 0 (buffer may be NULL)
 * to learn the size. */

typedef enum mm_tokenize_flags {
    MM_TOKENIZE_ADD_SPECIAL   = 1, /* add BOS/EOS as the model file asks (add_bos_token...) */
    MM_TOKENIZE_PARSE_SPECIAL = 2  /* control tokens written in the text ("<|im_end|>") become
                                      those tokens; without it they are tokenized as text */
} mm_tokenize_flags;

typedef enum mm_detokenize_flags {
    MM_DETOKENIZE_RENDER_SPECIAL     = 1, /* write control tokens' text ("</s>"); else skipped */
    MM_DETOKENIZE_KEEP_LEADING_SPACE = 2  /* keep the space a "llama" vocabulary puts before the
                                             first word; by default it is removed, so that
                                             detokenize(tokenize(s)) == s */
} mm_detokenize_flags;

/* Encode text[0..text_len) (UTF-8; pass strlen(text) for a C string) into token ids. flags:
 * a mask of mm_tokenize_flags. Errors: MM_ERR_ARG (NULL model/n_ids, text NULL with a non-zero
 * length, ids NULL with capacity > 0, capacity too small), MM_ERR_STATE (model has no
 * tokenizer), MM_ERR_FORMAT (text is not valid UTF-8; the message gives the byte offset: text
 * is never silently altered), MM_ERR_LIMIT (text over 256 MiB), MM_ERR_NOMEM. */
MM_API mm_status mm_tokenize(const mm_model *model, const char *text, size_t text_len,
                             unsigned flags, int32_t *ids, size_t capacity, size_t *n_ids);

/* Decode ids into UTF-8 text, NUL-terminated: `capacity` must be at least *text_len + 1.
 * Bytes that do not form valid UTF-8 (a character cut off at the end, stray byte tokens) come
 * out as U+FFFD, so the result is always valid UTF-8. flags: a mask of mm_detokenize_flags.
 * Errors: MM_ERR_ARG (NULL arguments, an id out of range, capacity too small), MM_ERR_STATE
 * (no tokenizer). */
MM_API mm_status mm_detokenize(const mm_model *model, const int32_t *ids, size_t n_ids,
                               unsigned flags, char *text, size_t capacity, size_t *text_len);

/* The raw bytes one token stands for (not NUL-terminated; may be part of a UTF-8 character,
 * e.g. a <0xE2> byte token): the building block for streaming. Control tokens give their text
 * (e.g. "</s>"). Errors: MM_ERR_ARG (NULL, id out of range, capacity too small),
 * MM_ERR_STATE (no tokenizer). */
MM_API mm_status mm_token_to_piece(const mm_model *model, int32_t id, char *buf,
                                   size_t capacity, size_t *len);

/* Vocabulary size; 0 if the model has no tokenizer. */
MM_API int32_t mm_n_vocab(const mm_model *model);
/* Begin/end-of-sequence ids; -1 if the vocabulary has none or the model has no tokenizer. */
MM_API int32_t mm_token_bos(const mm_model *model);
MM_API int32_t mm_token_eos(const mm_model *model);
/* Non-zero if generating `id` ends a turn (EOS, or an end-of-turn token like <|im_end|>). */
MM_API int mm_token_is_eog(const mm_model *model, int32_t id);

/* ---- section: sessions and generation (session.c, decoder.c, sampler.c, chat.c) ---- */

/* A session is one conversation with a model's language model: the positions evaluated so far
 * (its KV cache, sized at creation), the chat state and the sampler. Input is evaluated as it
 * is added, so a later turn reuses everything before it; nothing is re-encoded.
 *
 * Threads: a session is used by one thread at a time (different sessions on one model may run
 * on different threads at once); mm_session_cancel() alone may be called from any thread.
 * Re-entry: a callback of a session call (the mm_piece_fn of mm_session_generate) must not call
 * that session again: every mm_session_* call on it except mm_session_cancel() then fails with
 * MM_ERR_STATE (mm_session_reset, mm_session_clear_stop_strings and mm_session_free do nothing,
 * and mm_last_error() says why). Other sessions may be used from a callback.
 * Memory: everything a session needs for its context is allocated by mm_session_create();
 * adding input and generating allocate only per call (tokenizing a text), never per token.
 * Atomicity: every mm_session_add_* call is all-or-nothing. It first checks that its input
 * fits (MM_ERR_CTX_FULL, with the positions needed and free in the message, before any work);
 * if it then fails or is cancelled, the conversation is left as it was before the call.
 * BOS: when the vocabulary asks for it (tokenizer.ggml.add_bos_token), the session puts BOS
 * first in a conversation begun with text, a message or embeddings (not with token ids). */
typedef struct mm_session mm_session;

/* Create a session on a model with a language model. Keeps its own reference to the model (the
 * caller may free the model first). Reads from options (NULL for defaults): MM_OPT_N_CTX
 * (positions; 0 = the model's context_length), MM_OPT_N_THREADS (the session's compute
 * threads, started here and idle between calls until mm_session_free), MM_OPT_CHAT_TEMPLATE,
 * and the generation keys as mm_session_set_options(). The KV cache takes
 * 2 x layers x n_ctx x kv_width floats.
 * Errors: MM_ERR_ARG (NULL model/out, unknown template name), MM_ERR_STATE (the model has no
 * language model), MM_ERR_NOMEM (the message gives the size). */
MM_API mm_status mm_session_create(mm_model *model, const mm_options *options,
                                   mm_session **out);
/* Free a session (releases its model reference). Accepts NULL. */
MM_API void mm_session_free(mm_session *session);

/* Replace the generation settings: MM_OPT_MAX_TOKENS, MM_OPT_TEMPERATURE, MM_OPT_TOP_K,
 * MM_OPT_TOP_P, MM_OPT_MIN_P, MM_OPT_REPEAT_PENALTY, MM_OPT_REPEAT_LAST_N, MM_OPT_SEED; keys
 * absent from the bag take their defaults (greedy, 256 tokens). Restarts the random sequence
 * from the seed, so the same seed, settings and input give the same tokens. Sampling follows
 * llama.cpp: repetition penalty over the last repeat_last_n tokens of the conversation (prompt
 * included), then top-k, top-p, min-p, temperature, draw. */
MM_API mm_status mm_session_set_options(mm_session *session, const mm_options *options);

/* Append text as it is, tokenized (text[0..len), UTF-8). flags: 0 or MM_TOKENIZE_PARSE_SPECIAL
 * (control-token text such as "<|im_end|>" becomes that token). Errors: MM_ERR_ARG,
 * MM_ERR_STATE (model without tokenizer), MM_ERR_FORMAT (invalid UTF-8), MM_ERR_CTX_FULL,
 * MM_ERR_CANCELLED, MM_ERR_NOMEM. */
MM_API mm_status mm_session_add_text(mm_session *session, const char *text, size_t len,
                                     unsigned flags);

/* Append a chat message: text[0..len) wrapped in the session's chat template for role
 * "system", "user" or "assistant". Templates (MM_OPT_CHAT_TEMPLATE, else the model file's
 * tokenizer.chat_template when it is one of these, else "llava" for a model with a vision
 * encoder and "raw" otherwise):
 *   "llava"  (alias "vicuna"; LLaVA-1.5)  USER: <image>\n{text} ASSISTANT:  ... answer</s>
 *   "chatml"  <|im_start|>{role}\n{text}<|im_end|>\n ... <|im_start|>assistant\n  (Qwen2)
 *   "phi3"    <|{role}|>\n{text}<|end|>\n ... <|assistant|>\n  answer<|end|>\n
 *   "llama2"  [INST] <<SYS>>\n{system}\n<</SYS>>\n\n{text} [/INST] answer </s><s>[INST] ...
 *   "raw"     the text alone.
 * A user message ends with the template's answer prompt ("ASSISTANT:"), so mm_session_generate
 * next produces the answer; the next message first closes that answer (with </s>, <|im_end|>,
 * ... unless generation already ended on it). An assistant message added while an answer is
 * open becomes that answer. With "llama2" a system message is held and written inside the next
 * user message's [INST] (anything else added before that user message: MM_ERR_STATE). Each
 * message is tokenized on its own. Only the template's own markup makes control tokens: text
 * in a message stays text whatever it holds, so "</s>", "<|im_end|>" or "<s>[INST]" typed by a
 * user are the tokens of those characters, never end-of-sequence or turn tokens, and a message
 * cannot end its turn or open another (mm_session_add_text with MM_TOKENIZE_PARSE_SPECIAL is
 * the way to write control tokens as text). Templates whose markup is plain text ("llava":
 * "USER:", "ASSISTANT:") give the same tokens for that text wherever it comes from. The ids are
 * otherwise those of the whole rendered text tokenized at once, as llama.cpp does. Errors as
 * mm_session_add_text, and MM_ERR_ARG for an unknown role. */
MM_API mm_status mm_session_add_message(mm_session *session, const char *role, const char *text,
                                        size_t len);

/* The same with pictures: images[i] goes where the text has its i-th "<image>" marker; a text
 * without markers gets the images at its start, each followed by "\n" (LLaVA's
 * "USER: <image>\n{text}"); with markers their number must equal n_images (MM_ERR_ARG). Each
 * image is preprocessed and encoded by the model's vision tower inside this call, after the
 * whole message is known to fit (MM_ERR_CTX_FULL before any encoding) and before anything is
 * evaluated; mm_session_cancel() stops the encoding too. Text between images is tokenized
 * piece by piece, as llama.cpp does. Qwen2-VL: each picture at its own resolution, between
 * <|vision_start|> and <|vision_end|>, its rows at their M-RoPE grid positions. Errors also:
 * MM_ERR_STATE (no vision encoder loaded). */
MM_API mm_status mm_session_add_message_images(mm_session *session, const char *role,
                                               const char *text, size_t len,
                                               const mm_image *const *images, size_t n_images);
/* The same with images and audio clips in one message: media[i] goes where the text has its
 * i-th marker ("<media>", or its aliases "<image>" and "<audio>"), or at the start as for
 * images. Each item is encoded by the model's tower for its kind (vision, or the audio encoder
 * after resampling the clip to its rate) inside this call, after the whole message is known to
 * fit. Errors as mm_session_add_message_images, and MM_ERR_STATE when the model has no tower
 * for an item's kind, MM_ERR_UNSUPPORTED for a clip that needs resampling in a build without
 * it. */
MM_API mm_status mm_session_add_message_media(mm_session *session, const char *role,
                                              const char *text, size_t len,
                                              const mm_media *const *media, size_t n_media);
/* The same with images encoded beforehand by mm_image_encode() (e.g. on other threads, or
 * reused): rows of the language model's embedding width (else MM_ERR_ARG), only read during
 * the call. */
MM_API mm_status mm_session_add_message_embeddings(mm_session *session, const char *role,
                                                   const char *text, size_t len,
                                                   const mm_embeddings *const *images,
                                                   size_t n_images);

/* Append token ids (each < the model's vocabulary size, else MM_ERR_ARG). Works without a
 * tokenizer. No BOS is added. Errors: MM_ERR_ARG, MM_ERR_CTX_FULL, MM_ERR_CANCELLED. */
MM_API mm_status mm_session_add_tokens(mm_session *session, const int32_t *ids, size_t n_ids);

/* Append precomputed input embeddings (e.g. image embeddings from the vision tower):
 * n_rows rows of n_embd floats, row-major; n_embd must equal the language model's embedding
 * width (MM_ERR_ARG otherwise, naming both). Each row takes one position. */
MM_API mm_status mm_session_add_embeddings(mm_session *session, const float *embd,
                                           size_t n_rows, size_t n_embd);

/* Stop strings: generation ends when the text it produces contains one; the text before it is
 * delivered, the stop string and anything after it are not. Text that might be the start of
 * a stop string is held back until that is decided. The string is copied. Errors: MM_ERR_ARG
 * (NULL or empty), MM_ERR_NOMEM. Clear removes them all. */
MM_API mm_status mm_session_add_stop_string(mm_session *session, const char *stop);
MM_API void mm_session_clear_stop_strings(mm_session *session);

/* Receives each piece of generated text (UTF-8, whole characters, not NUL-terminated); a
 * non-zero return stops generation (mm_session_stop_reason() then says MM_STOP_CALLBACK). */
typedef int (*mm_piece_fn)(void *user, const char *piece, size_t len);

/* Why the last generation ended. */
typedef enum mm_stop_reason {
    MM_STOP_NONE       = 0, /* none ended yet, or it ended with an error */
    MM_STOP_EOG        = 1, /* the model produced an end-of-generation token */
    MM_STOP_MAX_TOKENS = 2, /* MM_OPT_MAX_TOKENS tokens were produced */
    MM_STOP_STRING     = 3, /* a stop string appeared */
    MM_STOP_CALLBACK   = 4  /* the callback returned non-zero */
} mm_stop_reason;

/* Generate up to MM_OPT_MAX_TOKENS tokens, streaming their text to fn (may be NULL). options:
 * NULL keeps the session's settings; otherwise as mm_session_set_options(), and they stay in
 * force afterwards. Ends at an end-of-generation token of the vocabulary, a stop string, the
 * token budget or the callback (MM_OK for all four), or with MM_ERR_CANCELLED, or
 * MM_ERR_CTX_FULL when the context fills. Every generated token stays in the conversation;
 * the last one enters the KV cache with the next input or generation. Without a tokenizer no
 * text is produced and only the budget ends generation. Errors also: MM_ERR_STATE (nothing
 * added yet). */
MM_API mm_status mm_session_generate(mm_session *session, const mm_options *options,
                                     mm_piece_fn fn, void *user);

/* Pull-style generation for bindings: each call produces one token. MM_OK with *piece != NULL:
 * *token is the new token and *piece, *len its text (len may be 0, e.g. half a character, or
 * text held back for a stop string); valid until the next call on the session. MM_OK with
 * *piece == NULL (and *token -1): the generation has ended; see mm_session_stop_reason(). The
 * next call after the end starts a new generation that continues the conversation. Settings
 * as given to mm_session_set_options(). Errors as mm_session_generate(). */
MM_API mm_status mm_session_next(mm_session *session, int32_t *token, const char **piece,
                                  size_t *len);

/* Why the last generation on the session ended (MM_STOP_NONE for NULL, while one runs, or
 * when it ended with an error). */
MM_API mm_stop_reason mm_session_stop_reason(const mm_session *session);

/* The logits of the last evaluated position: *n_vocab floats, valid until the next call that
 * adds input, generates or resets. Errors: MM_ERR_ARG, MM_ERR_STATE (nothing evaluated). */
MM_API mm_status mm_session_logits(const mm_session *session, const float **logits,
                                   size_t *n_vocab);

/* Context size in positions, and positions in use (0 for NULL). */
MM_API int mm_session_n_ctx(const mm_session *session);
MM_API int mm_session_n_past(const mm_session *session);
/* Name of the chat template in use ("llava", "chatml", "phi3", "llama2", "raw"); NULL for
 * NULL. */
MM_API const char *mm_session_chat_template(const mm_session *session);

/* Stop the call in progress on this session as soon as possible (between two layers of the
 * model): it returns MM_ERR_CANCELLED and the session stays usable, as it was before that call
 * (for generation: with the tokens produced so far). The one session function that may be
 * called from any thread, at any time; a cancel that arrives while no call is running is
 * dropped when the next call begins. Accepts NULL. */
MM_API void mm_session_cancel(mm_session *session);

/* Forget the conversation (positions, chat state); settings and stop strings stay.
 * Accepts NULL. */
MM_API void mm_session_reset(mm_session *session);

/* ---- section: conversations as JSON (chatjson.c) ---- */

/* Append a conversation written as the OpenAI or Anthropic chat APIs take it: json[0..len) is
 * a JSON array of messages, or an object with "messages" (other keys such as "model" are
 * ignored) and, Anthropic-style, an optional "system" (a string or text blocks). A message is
 * {"role": "system" | "developer" | "user" | "assistant", "content": string | array of parts};
 * parts are {"type": "text", "text": ...} ("input_text" too), {"type": "image_url",
 * "image_url": {"url": "data:image/png;base64,..."}} (or the URL string itself; "input_image"
 * too), and {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg",
 * "data": ...}}, and audio as OpenAI sends it: {"type": "input_audio", "input_audio":
 * {"data": BASE64, "format": "wav"}} (other formats MM_ERR_UNSUPPORTED), and video:
 * {"type": "video_url", "video_url": {"url": "data:video/mp4;base64,..."}} (read through FFmpeg,
 * mm_video_load_memory), or its frames as consecutive image_url parts of a message with the
 * same "video" member ({"type": "image_url", "image_url": {...}, "video": "clip1"}): one clip,
 * frames one second apart, sampled by the MM_OPT_VIDEO_* options (docs/video.md). Media must be
 * inline: nothing is fetched, so http(s) and file URLs are MM_ERR_UNSUPPORTED. Images, clips
 * and videos go through mm_session_add_message_media(), as the template places media.
 * Each message goes through the session's chat template as mm_session_add_message_images()
 * takes it: images before all of a message's text go where the template puts images (LLaVA:
 * first, each followed by a newline), an image after some text stays at its place in the text;
 * consecutive text parts are joined by a newline. As there, control-token text in a message
 * ("</s>", "<|im_end|>") stays text.
 * The whole request is checked before the session changes or any pixel is decoded, and a
 * failure there leaves the session as it was (audio clips and videos are read then, with
 * MM_OPT_AUDIO_MAX_SECONDS and the video limits checked from their headers): the JSON (strict RFC 8259: UTF-8, no duplicate keys
 * where libmm reads, depth at most 64, at most 2^20 values; canonical padded base64), each
 * image's size read from its header (MM_OPT_IMAGE_MAX_SIDE, MM_OPT_IMAGE_MAX_PIXELS), the pixels
 * of all its images together (MM_OPT_IMAGE_MAX_TOTAL_PIXELS: MM_ERR_LIMIT) and the positions all
 * images take against the free context (MM_ERR_CTX_FULL); options NULL for defaults. Messages
 * are then added in order; each image is decoded as its message is added and encoded before the
 * next is decoded, so one decoded picture is in memory at a time (mm_session_cancel() stops the
 * encoding too). If the session refuses a message (MM_ERR_CTX_FULL, MM_ERR_CANCELLED, an image
 * whose data turns out cut short or corrupt: MM_ERR_FORMAT, ...), the messages before it stay
 * added and the error text says how many. The JSON is only read during the call.
 * Errors: MM_ERR_ARG (NULL session, json NULL with len > 0), MM_ERR_FORMAT (malformed JSON,
 * base64, data URL or image, a message of the wrong shape, text containing "<image>"; the text
 * names the place, e.g. "messages[2].content[1].image_url: base64: length 5 is not a multiple
 * of 4"), MM_ERR_UNSUPPORTED (unknown role or part type, remote URL, non-image media type),
 * MM_ERR_STATE (images for a model without vision encoder, audio without an audio encoder),
 * MM_ERR_LIMIT, MM_ERR_NOMEM, and the errors of mm_session_add_message_media. One thread at a
 * time, as every session call. */
MM_API mm_status mm_session_add_messages_json(mm_session *session, const char *json, size_t len,
                                              const mm_options *options);

/* ---- section: chat requests and responses (chatjson.c) ---- */

/* A whole request body as the OpenAI Chat Completions API (POST /v1/chat/completions) or the
 * Anthropic Messages API (POST /v1/messages) takes it: the conversation, read as
 * mm_session_add_messages_json() reads it (an OpenAI image_url may carry "detail": "auto",
 * "low" or "high"), and the generation settings:
 *   "max_tokens", "max_completion_tokens" (whole number >= 1)   -> MM_OPT_MAX_TOKENS
 *   "temperature" (number >= 0)                                  -> MM_OPT_TEMPERATURE
 *   "top_p" (number in (0,1])                                    -> MM_OPT_TOP_P
 *   "top_k" (whole number >= 0, Anthropic)                       -> MM_OPT_TOP_K
 *   "seed" (whole number >= 0, OpenAI)                           -> MM_OPT_SEED
 *   "stop" (a string or an array of strings, OpenAI), "stop_sequences" (an array, Anthropic):
 *       stop strings; "n" (only 1), "stream" (true/false), "model" (a string).
 * null counts as absent; other keys are ignored. A request is Anthropic-shaped when it has a
 * top-level "system" or "stop_sequences", or an Anthropic image part ({"type": "image"});
 * otherwise OpenAI-shaped (mm_chat_request_set_api() overrides, e.g. by the URL it came to).
 * The request is immutable apart from the API shape and its last response; one thread at a
 * time. */
typedef struct mm_chat_request mm_chat_request;

typedef enum mm_chat_api {
    MM_CHAT_API_OPENAI    = 1, /* response: chat.completion with choices[0].message */
    MM_CHAT_API_ANTHROPIC = 2  /* response: message with content blocks */
} mm_chat_api;

/* Parse and check a request (strict JSON, every image's base64 decoded, every setting in
 * range). Errors: MM_ERR_ARG (NULL out, json NULL with len > 0), MM_ERR_FORMAT (malformed JSON
 * or shape; a setting of the wrong type or out of range, the message naming it, e.g.
 * "max_tokens: a whole number in [1, 2147483647] expected, found number 1.5 (offset 14)"),
 * MM_ERR_UNSUPPORTED (as mm_session_add_messages_json; "n" other than 1), MM_ERR_LIMIT,
 * MM_ERR_NOMEM. Any thread. */
MM_API mm_status mm_chat_request_parse(const char *json, size_t len, mm_chat_request **out);
MM_API void mm_chat_request_free(mm_chat_request *request);

/* The API shape the response will take; 0 for NULL. Setting it: MM_ERR_ARG for NULL or a value
 * that is not an mm_chat_api. */
MM_API mm_chat_api mm_chat_request_api(const mm_chat_request *request);
MM_API mm_status mm_chat_request_set_api(mm_chat_request *request, mm_chat_api api);

/* The request's generation settings as an options bag holding exactly the keys it gives (the
 * others read as their defaults); owned by the request. NULL for NULL. */
MM_API const mm_options *mm_chat_request_options(const mm_chat_request *request);
/* Its stop strings, in the order given ("stop" first, then "stop_sequences"); index out of
 * range or NULL request: NULL / 0. Owned by the request. */
MM_API size_t mm_chat_request_n_stop(const mm_chat_request *request);
MM_API const char *mm_chat_request_stop(const mm_chat_request *request, size_t index);
/* "model" as given (NULL when absent), and whether "stream" is true (0 for NULL). */
MM_API const char *mm_chat_request_model(const mm_chat_request *request);
MM_API int mm_chat_request_stream(const mm_chat_request *request);

/* Append the request's conversation to the session: exactly mm_session_add_messages_json() on
 * its JSON (same options, checks, atomicity and errors), without parsing it again. */
MM_API mm_status mm_session_add_chat_request(mm_session *session,
                                             const mm_chat_request *request,
                                             const mm_options *options);

/* Generate the answer to the request and give back the API's response object. Settings: the
 * keys of `options` (NULL: none), overridden by the request's own (mm_chat_request_options);
 * keys neither sets take their defaults; they stay in force afterwards, as with
 * mm_session_generate(). The request's stop strings apply for this call only, with the
 * session's own. Text streams to fn as mm_session_generate() streams it (fn may be NULL).
 * *response (NUL-terminated, *len bytes without the NUL; len may be NULL) is owned by the
 * request, valid until its next response or mm_chat_request_free(). Always valid JSON (UTF-8,
 * strings escaped; bytes that form no UTF-8 character become U+FFFD):
 *   OpenAI:    {"id":"chatcmpl-...","object":"chat.completion","created":<unix time>,
 *               "model":<request's model, else "libmm">,"choices":[{"index":0,"message":
 *               {"role":"assistant","content":<text>},"finish_reason":"stop"|"length"}],
 *               "usage":{"prompt_tokens":P,"completion_tokens":C,"total_tokens":P+C}}
 *   Anthropic: {"id":"msg_...","type":"message","role":"assistant","model":...,"content":
 *               [{"type":"text","text":<text>}],"stop_reason":"end_turn"|"max_tokens"|
 *               "stop_sequence","stop_sequence":<the stop string>|null,
 *               "usage":{"input_tokens":P,"output_tokens":C}}
 * "length" / "max_tokens" when the token budget or the context ran out, else "stop" /
 * "end_turn" (end-of-generation token or fn stopping it) or "stop_sequence". P counts the
 * positions in the context when generation began; C the tokens generated (an end-of-generation
 * token included). The text holds no stop string. Errors: MM_ERR_ARG (NULL session, request
 * or response), MM_ERR_CANCELLED, MM_ERR_NOMEM and those of mm_session_generate() (not
 * MM_ERR_CTX_FULL: a full context ends the answer with "length"). */
MM_API mm_status mm_session_generate_response(mm_session *session, mm_chat_request *request,
                                              const mm_options *options, mm_piece_fn fn,
                                              void *user, const char **response, size_t *len);

#ifdef __cplusplus
}
#endif

#endif /* MM_H */
