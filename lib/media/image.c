/* PNG and JPEG decoding into RGB8 (see image.h for what is kept and what is dropped).
 *
 * This is the only file that includes png.h and jpeglib.h. Both libraries report fatal errors by
 * longjmp: each decoder runs inside one function that owns the setjmp and keeps everything it
 * allocates in a job struct owned by its caller, so a longjmp leaks nothing and the caller
 * frees what was allocated. Neither library ever writes to stderr: their messages go to mmi_log.
 */
#include "image.h"

#include <limits.h>
#include <setjmp.h>
#include <stdio.h>   /* before jpeglib.h, which uses FILE */
#include <string.h>

#include <jerror.h>
#include <jpeglib.h>
#include <png.h>

#include "alloc.h"
#include "options.h"
#include "status.h"

/* A hostile progressive JPEG can hold thousands of tiny scans, each one a full pass over the
 * coefficients; real encoders write about ten. */
#define JPEG_MAX_SCANS 1000

/* libjpeg's working memory is capped from the pixel budget: a progressive (or multi-scan) image
 * keeps every DCT coefficient until its last scan, 2 bytes per sample, so 4 components of an
 * image of MM_OPT_IMAGE_MAX_PIXELS take 8 bytes per pixel; the slack covers the tables and row
 * buffers of an image of the largest side. A header whose sampling factors pad a thin image
 * to many more blocks than it has pixels then fails instead of allocating them. */
#define JPEG_BYTES_PER_PIXEL 6
#define JPEG_MEMORY_SLACK (2 << 20)

mm_status mmi_image_create(int width, int height, mm_image **out)
{
    *out = NULL;
    if (width <= 0 || height <= 0)
        return mmi_fail(MM_ERR_ARG, "image size %dx%d is not positive", width, height);
    mm_image *image = mmi_calloc(1, sizeof *image);
    uint8_t *pixels = mmi_array((size_t)width * (size_t)height, 3);
    if (!image || !pixels) {
        mmi_free(image);
        mmi_free(pixels);
        return mmi_fail(MM_ERR_NOMEM, "out of memory for a %dx%d RGB image", width, height);
    }
    image->width = width;
    image->height = height;
    image->pixels = pixels;
    *out = image;
    return MM_OK;
}

void mmi_image_free(mm_image *image)
{
    if (!image)
        return;
    mmi_free(image->pixels);
    mmi_free(image);
}

/* ---- encoded input: a memory buffer or an open file ---- */

typedef struct {
    const uint8_t *data; /* memory input, or NULL when reading `file` */
    size_t size, pos;
    FILE *file;
    const char *name;    /* for messages: the path or "<memory>" */
    int64_t max_side, max_pixels;
    int header_only;     /* stop once the size is known and checked ... */
    int width, height;   /* ... and leave it here (as shown: EXIF orientation applied) */
} image_source;

static size_t source_read(image_source *src, void *dst, size_t n)
{
    if (src->file)
        return fread(dst, 1, n, src->file);
    size_t left = src->size - src->pos;
    if (n > left)
        n = left;
    memcpy(dst, src->data + src->pos, n);
    src->pos += n;
    return n;
}

/* Refuse a declared size before anything is allocated for it. */
static mm_status check_size(const image_source *src, const char *format, uint64_t width,
                            uint64_t height)
{
    if (width == 0 || height == 0)
        return mmi_fail(MM_ERR_FORMAT, "%s: %s header declares an empty %llux%llu image",
                        src->name, format, (unsigned long long)width,
                        (unsigned long long)height);
    if (width > (uint64_t)src->max_side || height > (uint64_t)src->max_side)
        return mmi_fail(MM_ERR_LIMIT, "%s: %s image is %llux%llu, over the largest side "
                        "allowed (MM_OPT_IMAGE_MAX_SIDE = %lld)", src->name, format,
                        (unsigned long long)width, (unsigned long long)height,
                        (long long)src->max_side);
    if (width * height > (uint64_t)src->max_pixels)
        return mmi_fail(MM_ERR_LIMIT, "%s: %s image is %llux%llu = %llu pixels, over the "
                        "budget (MM_OPT_IMAGE_MAX_PIXELS = %lld)", src->name, format,
                        (unsigned long long)width, (unsigned long long)height,
                        (unsigned long long)(width * height), (long long)src->max_pixels);
    return MM_OK;
}

/* ---- PNG ---- */

typedef struct {
    image_source *src;
    int out_of_memory;   /* an allocation for libpng failed */
    char message[256];   /* libpng's error text */
    mm_image *image;     /* result; freed by the caller on failure */
    png_bytep *rows;     /* row pointers into image->pixels */
} png_job;

static void png_on_error(png_structp png, png_const_charp message)
{
    png_job *job = png_get_error_ptr(png);
    snprintf(job->message, sizeof job->message, "%s", message);
    png_longjmp(png, 1);
}

static void png_on_warning(png_structp png, png_const_charp message)
{
    png_job *job = png_get_error_ptr(png);
    mmi_log(MM_LOG_WARN, "%s: PNG: %s", job->src->name, message);
}

static void png_on_read(png_structp png, png_bytep dst, size_t n)
{
    png_job *job = png_get_io_ptr(png);
    if (source_read(job->src, dst, n) != n)
        png_error(png, "data is truncated");
}

/* libpng allocates through the library's allocator, so tests can fail its allocations too. */
static png_voidp png_on_malloc(png_structp png, png_alloc_size_t size)
{
    void *p = mmi_malloc(size);
    if (!p)
        ((png_job *)png_get_mem_ptr(png))->out_of_memory = 1;
    return p;
}

static void png_on_free(png_structp png, png_voidp p)
{
    (void)png;
    mmi_free(p);
}

/* Owns the setjmp: only `job` (caller's memory) carries state across a longjmp. */
static mm_status png_run(png_structp png, png_infop info, png_job *job)
{
    if (setjmp(png_jmpbuf(png)))
        return mmi_fail(job->out_of_memory ? MM_ERR_NOMEM : MM_ERR_FORMAT, "%s: PNG: %s",
                        job->src->name, job->message);

    png_set_read_fn(png, job, png_on_read);
    /* Our own limits apply (and give MM_ERR_LIMIT), not libpng's default of 1e6 per side. */
    png_set_user_limits(png, PNG_UINT_31_MAX, PNG_UINT_31_MAX);
    png_read_info(png, info);
    png_uint_32 width, height;
    int depth, color, interlace;
    png_get_IHDR(png, info, &width, &height, &depth, &color, &interlace, NULL, NULL);
    MMI_TRY(check_size(job->src, "PNG", width, height));
    job->src->width = (int)width;
    job->src->height = (int)height;
    if (job->src->header_only)
        return MM_OK;

    /* Everything to 8-bit RGB, alpha dropped, as PIL's convert('RGB'). */
    if (color == PNG_COLOR_TYPE_PALETTE)
        png_set_palette_to_rgb(png);
    if (color == PNG_COLOR_TYPE_GRAY && depth < 8)
        png_set_expand_gray_1_2_4_to_8(png);
    if (depth == 16)
        png_set_strip_16(png);   /* keeps the high byte */
    png_set_strip_alpha(png);
    if (color == PNG_COLOR_TYPE_GRAY || color == PNG_COLOR_TYPE_GRAY_ALPHA)
        png_set_gray_to_rgb(png);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    if (png_get_channels(png, info) != 3 || png_get_bit_depth(png, info) != 8 ||
        png_get_rowbytes(png, info) != (size_t)width * 3)
        return mmi_fail(MM_ERR_FORMAT, "%s: PNG: colour type %d at %d bits did not convert to "
                        "RGB8", job->src->name, color, depth);

    MMI_TRY(mmi_image_create((int)width, (int)height, &job->image));
    job->rows = mmi_array(height, sizeof *job->rows);
    if (!job->rows)
        return mmi_fail(MM_ERR_NOMEM, "%s: out of memory for PNG row pointers", job->src->name);
    for (png_uint_32 y = 0; y < height; y++)
        job->rows[y] = job->image->pixels + (size_t)y * width * 3;
    png_read_image(png, job->rows);
    return MM_OK;
}

static mm_status png_decode(image_source *src, mm_image **out)
{
    png_job job = {.src = src};
    png_structp png = png_create_read_struct_2(PNG_LIBPNG_VER_STRING, &job, png_on_error,
                                               png_on_warning, &job, png_on_malloc, png_on_free);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!info) {
        png_destroy_read_struct(&png, NULL, NULL);
        return mmi_fail(MM_ERR_NOMEM, "%s: libpng could not allocate its state", src->name);
    }
    mm_status st = png_run(png, info, &job);
    png_destroy_read_struct(&png, &info, NULL);
    mmi_free(job.rows);
    if (st != MM_OK) {
        mmi_image_free(job.image);
        return st;
    }
    *out = job.image;
    return MM_OK;
}

/* ---- JPEG ---- */

typedef struct {
    struct jpeg_error_mgr pub; /* first: libjpeg hands us a pointer to it */
    jmp_buf jump;
    char message[JMSG_LENGTH_MAX];
    const char *name;
} jpeg_errors;

typedef struct {
    image_source *src;
    struct jpeg_progress_mgr progress;
    mm_image *image;     /* result; freed by the caller on failure */
    uint8_t *row;        /* one decoded scanline */
} jpeg_job;

static void jpeg_on_error(j_common_ptr cinfo)
{
    jpeg_errors *err = (jpeg_errors *)cinfo->err;
    cinfo->err->format_message(cinfo, err->message);
    longjmp(err->jump, 1);
}

static void jpeg_on_output(j_common_ptr cinfo)
{
    char text[JMSG_LENGTH_MAX];
    cinfo->err->format_message(cinfo, text);
    mmi_log(MM_LOG_WARN, "%s: JPEG: %s", ((jpeg_errors *)cinfo->err)->name, text);
}

/* Warnings (level -1) are logged, except those that mean pixels are missing: the file ends
 * early (PIL refuses that too: "image file is truncated"), the entropy-coded data stops at a
 * marker before the image is complete, or it is corrupt. libjpeg would paint the missing
 * pixels grey and carry on, so a few hundred bytes could stand for a huge picture. (PIL
 * accepts the last two; libmm does not.) Trace messages (level >= 0) are dropped. */
static void jpeg_on_message(j_common_ptr cinfo, int level)
{
    if (level >= 0)
        return;
    int code = cinfo->err->msg_code;
    if (code == JWRN_JPEG_EOF || code == JWRN_HIT_MARKER || code == JWRN_MUST_RESYNC ||
        code == JWRN_HUFF_BAD_CODE)
        cinfo->err->error_exit(cinfo);
    if (cinfo->err->num_warnings++ == 0)
        cinfo->err->output_message(cinfo);
}

static void jpeg_on_progress(j_common_ptr cinfo)
{
    j_decompress_ptr d = (j_decompress_ptr)cinfo;
    if (d->input_scan_number > JPEG_MAX_SCANS) {
        jpeg_errors *err = (jpeg_errors *)cinfo->err;
        snprintf(err->message, sizeof err->message, "more than %d progressive scans",
                 JPEG_MAX_SCANS);
        longjmp(err->jump, 1);
    }
}

/* EXIF orientation (TIFF tag 0x0112 in IFD0 of the APP1 "Exif" segment): 1..8, 1 if absent or
 * unreadable. Every offset is checked against the segment. */
static int exif_orientation(const uint8_t *tiff, size_t n)
{
    if (n < 8)
        return 1;
    int big = tiff[0] == 'M' && tiff[1] == 'M';
    if (!big && !(tiff[0] == 'I' && tiff[1] == 'I'))
        return 1;
#define EXIF_U16(p) (big ? (unsigned)((p)[0] << 8 | (p)[1]) : (unsigned)((p)[1] << 8 | (p)[0]))
#define EXIF_U32(p) (big ? (uint32_t)EXIF_U16(p) << 16 | EXIF_U16((p) + 2) \
                         : (uint32_t)EXIF_U16((p) + 2) << 16 | EXIF_U16(p))
    if (EXIF_U16(tiff + 2) != 42)
        return 1;
    uint32_t ifd = EXIF_U32(tiff + 4);
    if (ifd > n - 2)
        return 1;
    unsigned count = EXIF_U16(tiff + ifd);
    for (unsigned i = 0; i < count; i++) {
        size_t entry = (size_t)ifd + 2 + (size_t)i * 12;
        if (entry + 12 > n)
            break;
        const uint8_t *e = tiff + entry;
        if (EXIF_U16(e) == 0x0112 && EXIF_U16(e + 2) == 3 && EXIF_U32(e + 4) >= 1) {
            unsigned value = EXIF_U16(e + 8);
            return value >= 1 && value <= 8 ? (int)value : 1;
        }
    }
#undef EXIF_U16
#undef EXIF_U32
    return 1;
}

static int jpeg_orientation(j_decompress_ptr cinfo)
{
    for (jpeg_saved_marker_ptr m = cinfo->marker_list; m; m = m->next)
        if (m->marker == JPEG_APP0 + 1 && m->data_length >= 6 && !memcmp(m->data, "Exif\0\0", 6))
            return exif_orientation(m->data + 6, m->data_length - 6);
    return 1;
}

/* Where decoded pixel (x, y) of a w x h picture lands once EXIF orientation is applied:
 * index = origin + x * step_x + y * step_y (in pixels) in an image of out_w columns. */
typedef struct {
    int out_w, out_h;
    ptrdiff_t origin, step_x, step_y;
} orient_map;

static orient_map orient_map_make(int orientation, int w, int h)
{
    /* x' = ax*x + bx*y + cx, y' = ay*x + by*y + cy for orientations 1..8 (TIFF 6.0 tag 274). */
    static const int coef[8][4] = {
        /* ax bx ay by */
        {1, 0, 0, 1},   /* 1 as stored */
        {-1, 0, 0, 1},  /* 2 mirrored left-right */
        {-1, 0, 0, -1}, /* 3 rotated 180 */
        {1, 0, 0, -1},  /* 4 mirrored top-bottom */
        {0, 1, 1, 0},   /* 5 transposed */
        {0, -1, 1, 0},  /* 6 rotated 90 clockwise */
        {0, -1, -1, 0}, /* 7 transversed */
        {0, 1, -1, 0},  /* 8 rotated 90 counter-clockwise */
    };
    const int *c = coef[orientation - 1];
    orient_map m;
    int swap = orientation >= 5;
    m.out_w = swap ? h : w;
    m.out_h = swap ? w : h;
    /* A negative coefficient counts back from the far edge of the source axis it reads. */
    ptrdiff_t cx = (c[0] < 0 ? w - 1 : 0) + (c[1] < 0 ? h - 1 : 0);
    ptrdiff_t cy = (c[2] < 0 ? w - 1 : 0) + (c[3] < 0 ? h - 1 : 0);
    m.origin = cy * m.out_w + cx;
    m.step_x = (ptrdiff_t)c[2] * m.out_w + c[0];
    m.step_y = (ptrdiff_t)c[3] * m.out_w + c[1];
    return m;
}

/* (a * b) / 255 rounded, as PIL's MULDIV255. */
static int muldiv255(int a, int b)
{
    int t = a * b + 128;
    return ((t >> 8) + t) >> 8;
}

/* Owns the setjmp: only `job` (caller's memory) and cinfo carry state across a longjmp. */
static mm_status jpeg_run(j_decompress_ptr cinfo, jpeg_errors *err, jpeg_job *job)
{
    /* libjpeg allocates with plain malloc (its memory manager cannot be replaced at run time);
     * what it allocates is bounded by the size checked below and freed by
     * jpeg_destroy_decompress, even after an error. */
    if (setjmp(err->jump)) {
        if (err->pub.msg_code == JERR_NO_BACKING_STORE) /* over max_memory_to_use */
            return mmi_fail(MM_ERR_LIMIT, "%s: JPEG: decoding needs more than %ld bytes of "
                            "working memory (%d per pixel of MM_OPT_IMAGE_MAX_PIXELS = %lld, "
                            "plus %d)", job->src->name, cinfo->mem->max_memory_to_use,
                            JPEG_BYTES_PER_PIXEL, (long long)job->src->max_pixels,
                            JPEG_MEMORY_SLACK);
        return mmi_fail(err->pub.msg_code == JERR_OUT_OF_MEMORY ? MM_ERR_NOMEM : MM_ERR_FORMAT,
                        "%s: JPEG: %s", job->src->name, err->message);
    }

    jpeg_create_decompress(cinfo);     /* clears every field but err */
    int64_t max_memory = job->src->max_pixels > (LONG_MAX - JPEG_MEMORY_SLACK) / JPEG_BYTES_PER_PIXEL
                       ? LONG_MAX : job->src->max_pixels * JPEG_BYTES_PER_PIXEL + JPEG_MEMORY_SLACK;
    cinfo->mem->max_memory_to_use = (long)max_memory;
    cinfo->progress = &job->progress;
    if (job->src->file)
        jpeg_stdio_src(cinfo, job->src->file);
    else
        jpeg_mem_src(cinfo, job->src->data, (unsigned long)job->src->size);
    jpeg_save_markers(cinfo, JPEG_APP0 + 1, 0xffff);
    jpeg_read_header(cinfo, TRUE);
    MMI_TRY(check_size(job->src, "JPEG", cinfo->image_width, cinfo->image_height));
    int swap = jpeg_orientation(cinfo) >= 5;
    job->src->width = (int)(swap ? cinfo->image_height : cinfo->image_width);
    job->src->height = (int)(swap ? cinfo->image_width : cinfo->image_height);
    if (job->src->header_only)
        return MM_OK;

    int cmyk = cinfo->jpeg_color_space == JCS_CMYK || cinfo->jpeg_color_space == JCS_YCCK;
    cinfo->out_color_space = cinfo->jpeg_color_space == JCS_GRAYSCALE ? JCS_GRAYSCALE
                           : cmyk ? JCS_CMYK : JCS_RGB;
    cinfo->dct_method = JDCT_ISLOW;       /* PIL's settings: the library defaults */
    cinfo->do_fancy_upsampling = TRUE;
    jpeg_start_decompress(cinfo);

    int w = (int)cinfo->output_width, h = (int)cinfo->output_height;
    int components = cinfo->output_components;
    orient_map map = orient_map_make(jpeg_orientation(cinfo), w, h);
    MMI_TRY(mmi_image_create(map.out_w, map.out_h, &job->image));
    job->row = mmi_array((size_t)w, (size_t)components);
    if (!job->row)
        return mmi_fail(MM_ERR_NOMEM, "%s: out of memory for a JPEG scanline", job->src->name);
    /* PIL reads Adobe CMYK as inverted ("CMYK;I"). */
    int invert = cmyk && cinfo->saw_Adobe_marker ? 255 : 0;

    while (cinfo->output_scanline < cinfo->output_height) {
        int y = (int)cinfo->output_scanline;
        JSAMPROW row = job->row;
        if (jpeg_read_scanlines(cinfo, &row, 1) != 1)
            return mmi_fail(MM_ERR_FORMAT, "%s: JPEG: no data for row %d", job->src->name, y);
        for (int x = 0; x < w; x++) {
            const uint8_t *s = job->row + (size_t)x * components;
            uint8_t *d = job->image->pixels + 3 * (map.origin + x * map.step_x + y * map.step_y);
            if (components == 1) {
                d[0] = d[1] = d[2] = s[0];
            } else if (components == 3) {
                d[0] = s[0], d[1] = s[1], d[2] = s[2];
            } else { /* CMYK -> RGB as PIL's cmyk2rgb */
                int nk = 255 - (s[3] ^ invert);
                for (int c = 0; c < 3; c++) {
                    int v = nk - muldiv255(s[c] ^ invert, nk);
                    d[c] = (uint8_t)(v < 0 ? 0 : v);
                }
            }
        }
    }
    /* No jpeg_finish_decompress: every pixel is in, and a missing EOI after them is harmless. */
    return MM_OK;
}

static mm_status jpeg_decode(image_source *src, mm_image **out)
{
    struct jpeg_decompress_struct cinfo;
    jpeg_errors err;
    jpeg_job job = {.src = src, .progress = {.progress_monitor = jpeg_on_progress}};
    memset(&cinfo, 0, sizeof cinfo);
    cinfo.err = jpeg_std_error(&err.pub);
    err.pub.error_exit = jpeg_on_error;
    err.pub.emit_message = jpeg_on_message;
    err.pub.output_message = jpeg_on_output;
    err.name = src->name;
    mm_status st = jpeg_run(&cinfo, &err, &job);
    jpeg_destroy_decompress(&cinfo);
    mmi_free(job.row);
    if (st != MM_OK) {
        mmi_image_free(job.image);
        return st;
    }
    *out = job.image;
    return MM_OK;
}

/* ---- entry points ---- */

static const uint8_t png_magic[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};

/* Pick the decoder from the first bytes and run it from the start of the input. */
static mm_status decode(image_source *src, const mm_options *options, mm_image **out)
{
    *out = NULL;
    src->max_side = mmi_opt_int(options, MM_OPT_IMAGE_MAX_SIDE);
    src->max_pixels = mmi_opt_int(options, MM_OPT_IMAGE_MAX_PIXELS);
    uint8_t magic[8];
    size_t n = source_read(src, magic, sizeof magic);
    if (src->file) {
        if (ferror(src->file))
            return mmi_fail(MM_ERR_IO, "%s: read error", src->name);
        if (fseek(src->file, 0, SEEK_SET) != 0)
            return mmi_fail(MM_ERR_IO, "%s: cannot seek back to the start", src->name);
    } else {
        src->pos = 0;
    }
    if (n == sizeof magic && !memcmp(magic, png_magic, sizeof magic))
        return png_decode(src, out);
    if (n >= 3 && magic[0] == 0xff && magic[1] == 0xd8 && magic[2] == 0xff)
        return jpeg_decode(src, out);
    return mmi_fail(MM_ERR_FORMAT, "%s: not a PNG or JPEG image (first bytes %02x %02x %02x %02x, "
                    "%zu bytes read)", src->name, n > 0 ? magic[0] : 0, n > 1 ? magic[1] : 0,
                    n > 2 ? magic[2] : 0, n > 3 ? magic[3] : 0, n);
}

mm_status mmi_image_load_file(const char *path, const mm_options *options, mm_image **out)
{
    *out = NULL;
    FILE *file = fopen(path, "rb");
    if (!file)
        return mmi_fail(MM_ERR_IO, "%s: cannot open image file", path);
    image_source src = {.file = file, .name = path};
    mm_status st = decode(&src, options, out);
    if (st == MM_OK && ferror(file)) {
        mmi_image_free(*out);
        *out = NULL;
        st = mmi_fail(MM_ERR_IO, "%s: read error", path);
    }
    fclose(file);
    return st;
}

mm_status mmi_image_load_memory(const void *data, size_t size, const mm_options *options,
                                mm_image **out)
{
    image_source src = {.data = data, .size = size, .name = "<memory>"};
    return decode(&src, options, out);
}

mm_status mmi_image_size_memory(const void *data, size_t size, const mm_options *options,
                                int *width, int *height)
{
    image_source src = {.data = data, .size = size, .name = "<memory>", .header_only = 1};
    mm_image *none;
    MMI_TRY(decode(&src, options, &none));
    *width = src.width;
    *height = src.height;
    return MM_OK;
}

mm_status mmi_image_from_pixels(const uint8_t *pixels, int width, int height, size_t stride,
                                mm_pixel_format format, mm_image **out)
{
    *out = NULL;
    size_t bpp = format == MM_PIXEL_RGBA8 ? 4 : 3;
    if (format != MM_PIXEL_RGB8 && format != MM_PIXEL_RGBA8 && format != MM_PIXEL_BGR8)
        return mmi_fail(MM_ERR_ARG, "unknown pixel format %d", (int)format);
    if (width <= 0 || height <= 0)
        return mmi_fail(MM_ERR_ARG, "image size %dx%d is not positive", width, height);
    if ((size_t)width > SIZE_MAX / bpp || stride < (size_t)width * bpp)
        return mmi_fail(MM_ERR_ARG, "stride %zu is less than %d pixels of %zu bytes", stride,
                        width, bpp);
    mm_image *image;
    MMI_TRY(mmi_image_create(width, height, &image));
    for (int y = 0; y < height; y++) {
        const uint8_t *s = pixels + (size_t)y * stride;
        uint8_t *d = image->pixels + (size_t)y * width * 3;
        if (format == MM_PIXEL_RGB8) {
            memcpy(d, s, (size_t)width * 3);
            continue;
        }
        for (int x = 0; x < width; x++, s += bpp, d += 3) {
            int bgr = format == MM_PIXEL_BGR8;
            d[0] = s[bgr ? 2 : 0];
            d[1] = s[1];
            d[2] = s[bgr ? 0 : 2];
        }
    }
    *out = image;
    return MM_OK;
}
