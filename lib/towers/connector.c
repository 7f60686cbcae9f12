/* Projectors from vision features to language-model embeddings (see connector.h). */
#include "connector.h"

#include <string.h>

#include "status.h"

mm_status mmi_connector_load(mmi_connector *c, const mmi_gguf *g, mmi_weights *w, int n_in)
{
    const char *path = mmi_gguf_path(g);
    *c = (mmi_connector){.kind = MMI_CONNECTOR_NONE, .n_in = n_in, .n_out = n_in};
    int has_projector;
    MMI_TRY(mmi_gguf_get_bool_or(g, "clip.has_llava_projector", 0, &has_projector));
    const char *type = "mlp";
    if (mmi_gguf_has(g, "clip.projector_type"))
        MMI_TRY(mmi_gguf_get_string(g, "clip.projector_type", &type, NULL));
    else if (!has_projector)
        return MM_OK;
    if (strcmp(type, "qformer") == 0) {
        c->kind = MMI_CONNECTOR_QFORMER;
        MMI_TRY(mmi_qformer_load(&c->qformer, g, w, n_in));
        c->n_out = c->qformer.cfg.n_out;
        c->images_first = !mmi_gguf_has(g, "clip.image_token_id");
        return MM_OK;
    }
    if (strcmp(type, "perceiver") == 0) {
        c->kind = MMI_CONNECTOR_PERCEIVER;
        return mmi_resampler_load(&c->resampler, g, w, n_in); /* n_out = n_in */
    }
    /* Qwen2-VL's merger is an MLP on 2x2 patches side by side (the tower makes the rows). */
    if (strcmp(type, "mlp") == 0 || strcmp(type, "qwen2vl_merger") == 0)
        c->kind = MMI_CONNECTOR_MLP;
    else if (strcmp(type, "linear") == 0)
        c->kind = MMI_CONNECTOR_LINEAR;
    else
        return mmi_fail(MM_ERR_UNSUPPORTED, "%s: projector type '%s' is not supported", path,
                        type);

    /* The output width is the language model's: read it off mm.0 itself. */
    const mmi_tensor *t = mmi_gguf_find_tensor(g, "mm.0.weight");
    if (!t)
        return mmi_fail(MM_ERR_FORMAT, "%s: projector '%s' without tensor mm.0.weight", path, type);
    if (t->n_dims != 2 || t->ne[0] != (uint64_t)n_in || t->ne[1] < 1 || t->ne[1] > (1u << 20))
        return mmi_fail(MM_ERR_FORMAT,
                        "%s: mm.0.weight has shape [%llu, %llu], expected [%d, E] for %d-wide "
                        "vision features", path, (unsigned long long)t->ne[0],
                        (unsigned long long)t->ne[1], n_in, n_in);
    c->n_out = c->n_hidden = (int)t->ne[1];
    MMI_TRY(mmi_weights_matrix(w, 1, &c->mm0, n_in, c->n_out, "mm.0.weight"));
    MMI_TRY(mmi_weights_vector(w, 0, &c->mm0_b, c->n_out, "mm.0.bias"));
    if (c->kind == MMI_CONNECTOR_MLP) {
        /* The output width is mm.2's (LLaVA: mm.0's again; Qwen2-VL: the decoder's). */
        const mmi_tensor *t2 = mmi_gguf_find_tensor(g, "mm.2.weight");
        if (!t2)
            return mmi_fail(MM_ERR_FORMAT, "%s: projector '%s' without tensor mm.2.weight", path,
                            type);
        if (t2->n_dims != 2 || t2->ne[1] < 1 || t2->ne[1] > (1u << 20))
            return mmi_fail(MM_ERR_FORMAT, "%s: mm.2.weight has %u dims, [%llu, %llu, ...]",
                            path, t2->n_dims, (unsigned long long)t2->ne[0],
                            (unsigned long long)t2->ne[1]);
        c->n_out = (int)t2->ne[1];
        c->act = MMI_ACT_GELU;
        if (mmi_gguf_has(g, "clip.vision.projector.hidden_act")) {
            const char *act;
            MMI_TRY(mmi_gguf_get_string(g, "clip.vision.projector.hidden_act", &act, NULL));
            if (!mmi_act_from_name(act, &c->act))
                return mmi_fail(MM_ERR_UNSUPPORTED, "%s: projector activation '%s' is unknown",
                                path, act);
        }
        MMI_TRY(mmi_weights_matrix(w, 1, &c->mm2, c->n_hidden, c->n_out, "mm.2.weight"));
        MMI_TRY(mmi_weights_vector(w, 0, &c->mm2_b, c->n_out, "mm.2.bias"));
    }
    return MM_OK;
}

void mmi_connector_free(mmi_connector *c)
{
    mmi_qformer_free(&c->qformer);
    mmi_resampler_free(&c->resampler);
}

int mmi_connector_reads_last_state(const mmi_connector *c)
{
    return c->kind == MMI_CONNECTOR_QFORMER || c->kind == MMI_CONNECTOR_PERCEIVER;
}

int mmi_connector_n_tokens(const mmi_connector *c, int n)
{
    switch (c->kind) {
    case MMI_CONNECTOR_QFORMER: return c->qformer.cfg.n_query;
    case MMI_CONNECTOR_PERCEIVER: return c->resampler.cfg.n_latent;
    default: return n;
    }
}

int mmi_connector_n_embd(const mmi_connector *c)
{
    return c->n_out;
}

size_t mmi_connector_scratch_floats(const mmi_connector *c, int n)
{
    switch (c->kind) {
    case MMI_CONNECTOR_MLP: return (size_t)n * c->n_hidden;
    case MMI_CONNECTOR_QFORMER: return mmi_qformer_scratch_floats(&c->qformer, n);
    case MMI_CONNECTOR_PERCEIVER: return mmi_resampler_scratch_floats(&c->resampler, n);
    default: return 0;
    }
}

void mmi_connector_run(const mmi_connector *c, const float *x, int n, float *out, float *scratch)
{
    switch (c->kind) {
    case MMI_CONNECTOR_NONE:
        memcpy(out, x, sizeof(float) * (size_t)n * c->n_in);
        break;
    case MMI_CONNECTOR_LINEAR:
        mmi_linear(out, x, n, &c->mm0, c->mm0_b);
        break;
    case MMI_CONNECTOR_MLP:
        mmi_linear(scratch, x, n, &c->mm0, c->mm0_b);
        mmi_activate(c->act, scratch, (size_t)n * c->n_hidden);
        mmi_linear(out, scratch, n, &c->mm2, c->mm2_b);
        break;
    case MMI_CONNECTOR_QFORMER:
        mmi_qformer_run(&c->qformer, x, n, out, scratch);
        break;
    case MMI_CONNECTOR_PERCEIVER:
        mmi_resampler_run(&c->resampler, x, n, out, scratch);
        break;
    }
}
