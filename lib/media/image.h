/* Decoded images: PNG (libpng) and JPEG (libjpeg-turbo) into RGB8, or copied from caller pixels.
 *
 * What "decoded" means here is what the HF pipeline sees after PIL's Image.open(...).convert('RGB'):
 *  - alpha is dropped, not composited: PIL's convert('RGB') keeps the stored R,G,B of RGBA, LA and
 *    transparent-palette pixels unchanged (checked against the shared rgba vector), and the
 *    reference preprocessors consume exactly that;
 *  - grey is replicated into R = G = B; palette indices are looked up; 1/2/4-bit samples are
 *    scaled to 0..255 (x255, x85, x17); 16-bit samples keep their high byte, as PIL does for
 *    RGB/RGBA/LA. (PIL clips 16-bit *grey* to 255 instead, turning it white; libmm keeps the
 *    high byte there too);
 *  - no gamma, colour profile or sBIT handling (PIL applies none);
 *  - JPEG: libjpeg defaults as PIL uses them (islow IDCT, fancy upsampling), so pixels equal
 *    PIL's exactly with the same libjpeg-turbo; Adobe CMYK/YCCK is inverted and turned into RGB
 *    with PIL's cmyk2rgb rounding;
 *  - JPEG EXIF orientation IS applied (rotations/mirrors 2..8), which PIL's plain decode does not
 *    do (HF users call ImageOps.exif_transpose for that): a photo is encoded the way it was
 *    meant to be seen.
 */
#ifndef MMI_IMAGE_H
#define MMI_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#include "mm.h"

struct mm_image {
    int width, height;
    uint8_t *pixels;   /* RGB8, rows packed: pixel (x, y) at pixels[3 * (y * width + x)] */
};

/* An uninitialised width x height image (both > 0). */
mm_status mmi_image_create(int width, int height, mm_image **out);
void mmi_image_free(mm_image *image);

/* Decode PNG or JPEG, chosen by the magic bytes. Sizes over MM_OPT_IMAGE_MAX_SIDE or
 * MM_OPT_IMAGE_MAX_PIXELS are refused with MM_ERR_LIMIT before any pixel memory is allocated;
 * malformed or truncated data gives MM_ERR_FORMAT naming the problem. */
mm_status mmi_image_load_file(const char *path, const mm_options *options, mm_image **out);
mm_status mmi_image_load_memory(const void *data, size_t size, const mm_options *options,
                                mm_image **out);
/* The size an image would decode to (EXIF orientation applied), read from its header alone:
 * no pixel is decoded. The same checks and limits as decoding up to the header. */
mm_status mmi_image_size_memory(const void *data, size_t size, const mm_options *options,
                                int *width, int *height);
/* Copy caller pixels (rows `stride` bytes apart) into a new RGB8 image. */
mm_status mmi_image_from_pixels(const uint8_t *pixels, int width, int height, size_t stride,
                                mm_pixel_format format, mm_image **out);

#endif
