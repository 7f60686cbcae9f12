/* Images as media parts (media.h): the plan and the encoding of one picture by the model's
 * vision tower and connector. */
#include <stdio.h>

#include "image.h"
#include "media.h"
#include "status.h"
#include "vit.h"

static mm_status image_plan(const mm_model *m, const void *source, const mmi_media_params *p,
                            mmi_media_plan *out)
{
    (void)source;
    (void)p;
    const mmi_vision *v = m->vision;
    if (!v)
        return mmi_fail(MM_ERR_STATE, "the model has no vision encoder (load an mmproj file "
                        "with it)");
    /* Every image becomes one view of the trained side (a GGUF file's crop size is its image
     * size), so the cost is known before any preprocessing; image_encode checks it. */
    int side = v->preprocess.image_size, n_tokens, n_embd;
    MMI_TRY(mmi_vision_output_shape(v, side, side, &n_tokens, &n_embd));
    *out = (mmi_media_plan){(size_t)n_tokens, n_tokens, 1, n_embd};
    return MM_OK;
}

/* Preprocess the image as the vision file says and run the tower and projector into rows. */
static mm_status image_encode(const mm_model *m, const void *source, const mmi_media_params *p,
                              const mmi_media_plan *plan, float *rows, const atomic_int *cancel)
{
    (void)p;
    const mmi_vision *v = m->vision;
    mmi_views views;
    MMI_TRY(mmi_vision_preprocess(v, source, &views));
    mm_status st = MM_OK;
    if (views.n_views != plan->n_views || views.size != v->preprocess.image_size)
        st = mmi_fail(MM_ERR_UNSUPPORTED, "image: preprocessing gave %d views of side %d, "
                      "expected %d of %d", views.n_views, views.size, plan->n_views,
                      v->preprocess.image_size);
    if (st == MM_OK)
        st = mmi_vision_encode(v, views.pixels, views.size, views.size, rows, cancel);
    mmi_views_free(&views);
    return st;
}

const mmi_media_ops mmi_image_ops = {"image", image_plan, image_encode};

/* An image still in its file's bytes: planned from the size in its header, decoded when it is
 * encoded and freed as soon as it is, so that a message's pictures are never all decoded at
 * once. The plan is the decoded image's: the header gives its exact size. */
static mm_status image_bytes_plan(const mm_model *m, const void *source,
                                  const mmi_media_params *p, mmi_media_plan *out)
{
    const mmi_image_bytes *src = source;
    mm_image header = {0}; /* the size alone: a plan reads no pixel */
    MMI_TRY(mmi_image_size_memory(src->data, src->size, src->options, &header.width,
                                  &header.height));
    return image_plan(m, &header, p, out);
}

static mm_status image_bytes_encode(const mm_model *m, const void *source,
                                    const mmi_media_params *p, const mmi_media_plan *plan,
                                    float *rows, const atomic_int *cancel)
{
    const mmi_image_bytes *src = source;
    mm_image *image;
    mm_status st = mmi_image_load_memory(src->data, src->size, src->options, &image);
    if (st != MM_OK) { /* the header was fine: the data is cut short or corrupt */
        char detail[400];
        snprintf(detail, sizeof detail, "%s", mm_last_error());
        return mmi_fail(st, "%s: %s", src->place, detail);
    }
    st = image_encode(m, image, p, plan, rows, cancel);
    mmi_image_free(image);
    return st;
}

const mmi_media_ops mmi_image_bytes_ops = {"image", image_bytes_plan, image_bytes_encode};
