/* Tensor lookup with shape checks, and one-time conversion to f32 where needed (see weights.h). */
#include "weights.h"

#include <stdarg.h>
#include <stdio.h>

#include "alloc.h"

void mmi_weights_init(mmi_weights *w, const mmi_gguf *file)
{
    *w = (mmi_weights){.file = file};
}

void mmi_weights_free(mmi_weights *w)
{
    for (size_t i = 0; i < w->n_owned; i++)
        mmi_free(w->owned[i]);
    mmi_free(w->owned);
    *w = (mmi_weights){0};
}

/* The tensor `name` checked against the shape, or *out = NULL when it is absent and optional. */
static mm_status find(mmi_weights *w, int required, uint32_t n_dims, const uint64_t *ne,
                      const char *name, const mmi_tensor **out)
{
    *out = NULL;
    if (!required && !mmi_gguf_find_tensor(w->file, name))
        return MM_OK;
    return mmi_gguf_get_tensor(w->file, name, n_dims, ne, out);
}

/* The tensor's values as f32: where they lie for aligned F32 data, else converted into a
 * buffer the mmi_weights owns. */
static mm_status as_f32(mmi_weights *w, const mmi_tensor *t, const float **out)
{
    if (t->type == MMI_TENSOR_F32 && (uintptr_t)t->data % sizeof(float) == 0) {
        *out = t->data;
        return MM_OK;
    }
    if (w->n_owned == w->cap_owned) {
        size_t cap = w->cap_owned ? 2 * w->cap_owned : 16;
        float **grown = mmi_realloc(w->owned, cap * sizeof *grown);
        if (!grown)
            return mmi_fail(MM_ERR_NOMEM, "%s: out of memory loading %s", mmi_gguf_path(w->file),
                            t->name);
        w->owned = grown;
        w->cap_owned = cap;
    }
    float *data = mmi_array(t->n_elements, sizeof(float));
    if (!data)
        return mmi_fail(MM_ERR_NOMEM, "%s: out of memory converting %s (%llu values)",
                        mmi_gguf_path(w->file), t->name, (unsigned long long)t->n_elements);
    mm_status st = mmi_tensor_to_f32(t, 0, t->n_elements, data);
    if (st != MM_OK) {
        mmi_free(data);
        return st;
    }
    w->owned[w->n_owned++] = data;
    w->owned_bytes += t->n_elements * sizeof(float);
    *out = data;
    return MM_OK;
}

static mm_status get_v(mmi_weights *w, int required, const float **out, uint32_t n_dims,
                       const uint64_t *ne, const char *fmt, va_list ap)
{
    char name[128];
    const mmi_tensor *t;
    *out = NULL;
    vsnprintf(name, sizeof name, fmt, ap);
    MMI_TRY(find(w, required, n_dims, ne, name, &t));
    return t ? as_f32(w, t, out) : MM_OK;
}

mm_status mmi_weights_get(mmi_weights *w, int required, const float **out, uint32_t n_dims,
                          const uint64_t *ne, const char *name, ...)
{
    va_list ap;
    va_start(ap, name);
    mm_status st = get_v(w, required, out, n_dims, ne, name, ap);
    va_end(ap);
    return st;
}

mm_status mmi_weights_matrix(mmi_weights *w, int required, mmi_matrix *out, int n_in, int n_out,
                             const char *name, ...)
{
    const uint64_t ne[2] = {(uint64_t)n_in, (uint64_t)n_out};
    char full[128];
    va_list ap;
    va_start(ap, name);
    vsnprintf(full, sizeof full, name, ap);
    va_end(ap);
    *out = (mmi_matrix){NULL, n_in, n_out, MMI_TENSOR_F32};
    const mmi_tensor *t;
    MMI_TRY(find(w, required, 2, ne, full, &t));
    if (!t)
        return MM_OK;
    /* Matrices stay in the file, whatever their type: the kernels read them as they are. Only
     * float data the file placed off its element alignment is converted. */
    const mmi_type_traits *tt = mmi_type(t->type);
    if (tt->block_elems > 1 || (uintptr_t)t->data % tt->block_bytes == 0) {
        out->data = t->data;
        out->type = t->type;
        return MM_OK;
    }
    const float *data;
    MMI_TRY(as_f32(w, t, &data));
    out->data = data;
    return MM_OK;
}

mm_status mmi_weights_vector(mmi_weights *w, int required, const float **out, int n,
                             const char *name, ...)
{
    const uint64_t ne[1] = {(uint64_t)n};
    va_list ap;
    va_start(ap, name);
    mm_status st = get_v(w, required, out, 1, ne, name, ap);
    va_end(ap);
    return st;
}

static mm_status check_dim(const mmi_gguf *g, const char *key, int64_t v, int max, int *out)
{
    if (v < 1 || v > max)
        return mmi_fail(MM_ERR_FORMAT, "%s: %s = %lld is out of range [1, %d]", mmi_gguf_path(g),
                        key, (long long)v, max);
    *out = (int)v;
    return MM_OK;
}

mm_status mmi_weights_dim(const mmi_gguf *g, const char *key, int max, int *out)
{
    int64_t v;
    MMI_TRY(mmi_gguf_get_int(g, key, &v));
    return check_dim(g, key, v, max, out);
}

mm_status mmi_weights_dim_or(const mmi_gguf *g, const char *key, int64_t def, int max, int *out)
{
    int64_t v;
    MMI_TRY(mmi_gguf_get_int_or(g, key, def, &v));
    return check_dim(g, key, v, max, out);
}
