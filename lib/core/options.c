/* The options bag: a small array of (key, value) pairs checked against a table of known keys. */
#include "options.h"

#include <math.h>
#include <string.h>

#include "alloc.h"
#include "status.h"

typedef struct {
    mm_opt key;
    const char *name;
    mm_opt_type type;
    double min, max;     /* inclusive range for int and float values */
    double default_value;
} opt_spec;

#define INT_MAX_OPT 2147483647.0

static const opt_spec opt_specs[] = {
    {MM_OPT_N_THREADS, "n_threads", MM_OPT_TYPE_INT, 0, 1024, 0},
    {MM_OPT_USE_MMAP, "use_mmap", MM_OPT_TYPE_INT, 0, 1, 1},
    {MM_OPT_N_CTX, "n_ctx", MM_OPT_TYPE_INT, 0, 1 << 24, 0},
    {MM_OPT_MAX_TOKENS, "max_tokens", MM_OPT_TYPE_INT, 0, INT_MAX_OPT, 256},
    {MM_OPT_SEED, "seed", MM_OPT_TYPE_INT, 0, 18446744073709551615.0, 0},
    {MM_OPT_TEMPERATURE, "temperature", MM_OPT_TYPE_FLOAT, 0, 1e6, 0},
    {MM_OPT_TOP_K, "top_k", MM_OPT_TYPE_INT, 0, INT_MAX_OPT, 0},
    {MM_OPT_TOP_P, "top_p", MM_OPT_TYPE_FLOAT, 1e-9, 1, 1},
    {MM_OPT_MIN_P, "min_p", MM_OPT_TYPE_FLOAT, 0, 0.999999, 0},
    {MM_OPT_REPEAT_PENALTY, "repeat_penalty", MM_OPT_TYPE_FLOAT, 1e-6, 1e6, 1},
    {MM_OPT_REPEAT_LAST_N, "repeat_last_n", MM_OPT_TYPE_INT, 0, INT_MAX_OPT, 64},
    {MM_OPT_CHAT_TEMPLATE, "chat_template", MM_OPT_TYPE_STRING, 0, 0, 0},
    {MM_OPT_IMAGE_MAX_SIDE, "image_max_side", MM_OPT_TYPE_INT, 1, 1 << 20, 16384},
    {MM_OPT_IMAGE_MAX_PIXELS, "image_max_pixels", MM_OPT_TYPE_INT, 1, 1099511627776.0, 64 << 20},
    {MM_OPT_IMAGE_MAX_TOTAL_PIXELS, "image_max_total_pixels", MM_OPT_TYPE_INT, 1,
     1099511627776.0, 128 << 20},
    {MM_OPT_IMAGE_DETAIL, "image_detail", MM_OPT_TYPE_STRING, 0, 0, 0},
    {MM_OPT_MATMUL_PRECISION, "matmul_precision", MM_OPT_TYPE_STRING, 0, 0, 0},
    {MM_OPT_AUDIO_MAX_SECONDS, "audio_max_seconds", MM_OPT_TYPE_INT, 1, 86400, 600},
    {MM_OPT_VIDEO_FRAMES, "video_frames", MM_OPT_TYPE_INT, 1, 4096, 8},
    {MM_OPT_VIDEO_INTERVAL, "video_interval", MM_OPT_TYPE_FLOAT, 0, 86400, 0},
    {MM_OPT_VIDEO_MAX_FRAMES, "video_max_frames", MM_OPT_TYPE_INT, 1, 4096, 64},
    {MM_OPT_VIDEO_MAX_SECONDS, "video_max_seconds", MM_OPT_TYPE_INT, 1, 86400 * 7, 3600},
    {MM_OPT_POINTS_MAX_COUNT, "points_max_count", MM_OPT_TYPE_INT, 1, 1 << 30, 1 << 22},
};

typedef struct {
    mm_opt key;
    int64_t i;
    double f;
    char *s;
} opt_value;

struct mm_options {
    opt_value *values;
    size_t n_values, cap_values;
    mm_progress_fn progress;
    void *progress_user;
};

static const opt_spec *spec_find(mm_opt key)
{
    for (size_t i = 0; i < sizeof opt_specs / sizeof opt_specs[0]; i++)
        if (opt_specs[i].key == key)
            return &opt_specs[i];
    return NULL;
}

static const opt_value *value_find(const mm_options *o, mm_opt key)
{
    for (size_t i = 0; o && i < o->n_values; i++)
        if (o->values[i].key == key)
            return &o->values[i];
    return NULL;
}

mm_status mm_options_create(mm_options **out)
{
    if (!out)
        return mmi_fail(MM_ERR_ARG, "mm_options_create: out is NULL");
    *out = mmi_calloc(1, sizeof **out);
    if (!*out)
        return mmi_fail(MM_ERR_NOMEM, "mm_options_create: out of memory");
    return MM_OK;
}

void mm_options_free(mm_options *o)
{
    if (!o)
        return;
    for (size_t i = 0; i < o->n_values; i++)
        mmi_free(o->values[i].s);
    mmi_free(o->values);
    mmi_free(o);
}

mm_status mm_options_copy(const mm_options *src, mm_options **out)
{
    if (out)
        *out = NULL;
    if (!src || !out)
        return mmi_fail(MM_ERR_ARG, "mm_options_copy: %s is NULL", src ? "out" : "src");
    mm_options *o;
    MMI_TRY(mm_options_create(&o));
    mm_status st = mmi_options_merge(o, src);
    if (st != MM_OK) {
        mm_options_free(o);
        return st;
    }
    o->progress = src->progress;
    o->progress_user = src->progress_user;
    *out = o;
    return MM_OK;
}

static mm_status set_value(mm_options *o, const opt_value *v)
{
    const opt_spec *spec = spec_find(v->key);
    return spec->type == MM_OPT_TYPE_STRING ? mm_options_set_string(o, v->key, v->s)
         : spec->type == MM_OPT_TYPE_INT    ? mm_options_set_int(o, v->key, v->i)
                                            : mm_options_set_float(o, v->key, v->f);
}

mm_status mmi_options_merge(mm_options *dst, const mm_options *src)
{
    for (size_t i = 0; src && i < src->n_values; i++)
        MMI_TRY(set_value(dst, &src->values[i]));
    return MM_OK;
}

/* Find or append the slot for key; NULL on allocation failure. */
static opt_value *value_slot(mm_options *o, mm_opt key)
{
    opt_value *v = (opt_value *)value_find(o, key);
    if (v)
        return v;
    if (o->n_values == o->cap_values) {
        size_t cap = o->cap_values ? 2 * o->cap_values : 8;
        opt_value *values = mmi_realloc(o->values, cap * sizeof *values);
        if (!values)
            return NULL;
        o->values = values;
        o->cap_values = cap;
    }
    v = &o->values[o->n_values++];
    memset(v, 0, sizeof *v);
    v->key = key;
    return v;
}

static mm_status check_key(const mm_options *o, mm_opt key, mm_opt_type type, const char *fn,
                           const opt_spec **spec)
{
    if (!o)
        return mmi_fail(MM_ERR_ARG, "%s: options is NULL", fn);
    *spec = spec_find(key);
    if (!*spec)
        return mmi_fail(MM_ERR_UNSUPPORTED, "%s: unknown option key %d", fn, (int)key);
    if ((*spec)->type != type)
        return mmi_fail(MM_ERR_ARG, "%s: option '%s' does not take this type", fn, (*spec)->name);
    return MM_OK;
}

mm_status mm_options_set_int(mm_options *o, mm_opt key, int64_t value)
{
    const opt_spec *spec;
    MMI_TRY(check_key(o, key, MM_OPT_TYPE_INT, "mm_options_set_int", &spec));
    if ((double)value < spec->min || (double)value > spec->max)
        return mmi_fail(MM_ERR_ARG, "option '%s': value %lld outside [%.0f, %.0f]", spec->name,
                        (long long)value, spec->min, spec->max);
    opt_value *v = value_slot(o, key);
    if (!v)
        return mmi_fail(MM_ERR_NOMEM, "option '%s': out of memory", spec->name);
    v->i = value;
    return MM_OK;
}

mm_status mm_options_set_float(mm_options *o, mm_opt key, double value)
{
    const opt_spec *spec;
    MMI_TRY(check_key(o, key, MM_OPT_TYPE_FLOAT, "mm_options_set_float", &spec));
    if (!isfinite(value) || value < spec->min || value > spec->max)
        return mmi_fail(MM_ERR_ARG, "option '%s': value %g outside [%g, %g]", spec->name, value,
                        spec->min, spec->max);
    opt_value *v = value_slot(o, key);
    if (!v)
        return mmi_fail(MM_ERR_NOMEM, "option '%s': out of memory", spec->name);
    v->f = value;
    return MM_OK;
}

mm_status mm_options_set_string(mm_options *o, mm_opt key, const char *value)
{
    const opt_spec *spec;
    MMI_TRY(check_key(o, key, MM_OPT_TYPE_STRING, "mm_options_set_string", &spec));
    if (!value)
        return mmi_fail(MM_ERR_ARG, "option '%s': value is NULL", spec->name);
    char *copy = mmi_strdup(value);
    opt_value *v = copy ? value_slot(o, key) : NULL;
    if (!v) {
        mmi_free(copy);
        return mmi_fail(MM_ERR_NOMEM, "option '%s': out of memory", spec->name);
    }
    mmi_free(v->s);
    v->s = copy;
    return MM_OK;
}

mm_status mm_options_unset(mm_options *o, mm_opt key)
{
    if (!o)
        return mmi_fail(MM_ERR_ARG, "mm_options_unset: options is NULL");
    if (!spec_find(key))
        return mmi_fail(MM_ERR_UNSUPPORTED, "mm_options_unset: unknown option key %d", (int)key);
    opt_value *v = (opt_value *)value_find(o, key);
    if (v) {
        mmi_free(v->s);
        *v = o->values[--o->n_values];
    }
    return MM_OK;
}

static mm_status check_get(mm_opt key, mm_opt_type type, const void *value, const char *fn,
                           const opt_spec **spec)
{
    if (!value)
        return mmi_fail(MM_ERR_ARG, "%s: value is NULL", fn);
    *spec = spec_find(key);
    if (!*spec)
        return mmi_fail(MM_ERR_UNSUPPORTED, "%s: unknown option key %d", fn, (int)key);
    if ((*spec)->type != type)
        return mmi_fail(MM_ERR_ARG, "%s: option '%s' has another type", fn, (*spec)->name);
    return MM_OK;
}

mm_status mm_options_get_int(const mm_options *o, mm_opt key, int64_t *value)
{
    const opt_spec *spec;
    MMI_TRY(check_get(key, MM_OPT_TYPE_INT, value, "mm_options_get_int", &spec));
    const opt_value *v = value_find(o, key);
    *value = v ? v->i : (int64_t)spec->default_value;
    return MM_OK;
}

mm_status mm_options_get_float(const mm_options *o, mm_opt key, double *value)
{
    const opt_spec *spec;
    MMI_TRY(check_get(key, MM_OPT_TYPE_FLOAT, value, "mm_options_get_float", &spec));
    const opt_value *v = value_find(o, key);
    *value = v ? v->f : spec->default_value;
    return MM_OK;
}

mm_status mm_options_get_string(const mm_options *o, mm_opt key, const char **value)
{
    const opt_spec *spec;
    MMI_TRY(check_get(key, MM_OPT_TYPE_STRING, value, "mm_options_get_string", &spec));
    const opt_value *v = value_find(o, key);
    *value = v ? v->s : NULL;
    return MM_OK;
}

const char *mm_option_name(mm_opt key)
{
    const opt_spec *spec = spec_find(key);
    return spec ? spec->name : NULL;
}

mm_status mm_option_type(mm_opt key, mm_opt_type *type)
{
    const opt_spec *spec = spec_find(key);
    if (!type)
        return mmi_fail(MM_ERR_ARG, "mm_option_type: type is NULL");
    if (!spec)
        return mmi_fail(MM_ERR_UNSUPPORTED, "mm_option_type: unknown option key %d", (int)key);
    *type = spec->type;
    return MM_OK;
}

int64_t mmi_opt_int(const mm_options *o, mm_opt key)
{
    int64_t v = 0;
    mm_options_get_int(o, key, &v);
    return v;
}

double mmi_opt_float(const mm_options *o, mm_opt key)
{
    double v = 0;
    mm_options_get_float(o, key, &v);
    return v;
}

const char *mmi_opt_string(const mm_options *o, mm_opt key)
{
    const char *v = NULL;
    mm_options_get_string(o, key, &v);
    return v;
}

mm_status mm_options_set_progress(mm_options *o, mm_progress_fn fn, void *user)
{
    if (!o)
        return mmi_fail(MM_ERR_ARG, "mm_options_set_progress: options is NULL");
    o->progress = fn;
    o->progress_user = fn ? user : NULL;
    return MM_OK;
}

mm_status mmi_progress(const mm_options *o, mm_progress_stage stage, uint64_t done,
                       uint64_t total)
{
    static const char *const stage_names[] = {"", "model load", "image encoding"};
    if (!o || !o->progress || o->progress(o->progress_user, stage, done, total) == 0)
        return MM_OK;
    return mmi_fail(MM_ERR_CANCELLED, "%s cancelled by the progress callback at %llu/%llu",
                    stage_names[stage], (unsigned long long)done, (unsigned long long)total);
}
