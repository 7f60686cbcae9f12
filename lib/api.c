/* Exported entry points for the library's handles: argument checks, then the stage that does
 * the work. (Status and log functions live in status.c, the options bag in options.c.) */
#include "mm.h"
#include "image.h"
#include "model.h"
#include "status.h"

unsigned mm_version_number(void)
{
    return MM_VERSION_NUMBER;
}

#define MMI_STR2(x) #x
#define MMI_STR(x) MMI_STR2(x)

const char *mm_version_string(void)
{
    return MMI_STR(MM_VERSION_MAJOR) "." MMI_STR(MM_VERSION_MINOR) "." MMI_STR(MM_VERSION_PATCH);
}

int mm_abi_version(void)
{
    return MM_ABI_VERSION;
}

/* ---- models ---- */

mm_status mm_model_load(const char *path, const char *mmproj_path, const mm_options *options,
                        mm_model **out)
{
    if (!out)
        return mmi_fail(MM_ERR_ARG, "mm_model_load: out is NULL");
    *out = NULL;
    if (!path)
        return mmi_fail(MM_ERR_ARG, "mm_model_load: path is NULL");
    return mmi_model_load(path, mmproj_path, options, out);
}

void mm_model_free(mm_model *model)
{
    mmi_model_release(model);
}

/* ---- images ---- */

mm_status mm_image_load_file(const char *path, const mm_options *options, mm_image **out)
{
    if (!out)
        return mmi_fail(MM_ERR_ARG, "mm_image_load_file: out is NULL");
    *out = NULL;
    if (!path)
        return mmi_fail(MM_ERR_ARG, "mm_image_load_file: path is NULL");
    return mmi_image_load_file(path, options, out);
}

mm_status mm_image_load_memory(const void *data, size_t size, const mm_options *options,
                               mm_image **out)
{
    if (!out)
        return mmi_fail(MM_ERR_ARG, "mm_image_load_memory: out is NULL");
    *out = NULL;
    if (!data)
        return mmi_fail(MM_ERR_ARG, "mm_image_load_memory: data is NULL");
    return mmi_image_load_memory(data, size, options, out);
}

mm_status mm_image_from_pixels(const uint8_t *pixels, int width, int height, size_t stride,
                               mm_pixel_format format, mm_image **out)
{
    if (!out)
        return mmi_fail(MM_ERR_ARG, "mm_image_from_pixels: out is NULL");
    *out = NULL;
    if (!pixels)
        return mmi_fail(MM_ERR_ARG, "mm_image_from_pixels: pixels is NULL");
    return mmi_image_from_pixels(pixels, width, height, stride, format, out);
}

int mm_image_width(const mm_image *image)
{
    return image ? image->width : 0;
}

int mm_image_height(const mm_image *image)
{
    return image ? image->height : 0;
}

const uint8_t *mm_image_pixels(const mm_image *image)
{
    return image ? image->pixels : NULL;
}

void mm_image_free(mm_image *image)
{
    mmi_image_free(image);
}

/* ---- vision encoding and CLIP ---- */

/* ---- tokenizer ---- */

/* ---- sessions and generation ---- */
