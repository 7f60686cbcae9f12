/* mm-clip: zero-shot image classification with a CLIP model.
 *
 *   mm-clip MODEL.gguf IMAGE LABEL [LABEL ...]
 *
 * Prints, for each label, the probability that it describes the image (softmax over the labels
 * of the model's logit scale times the cosine similarity), highest first. Write labels as
 * sentences ("a photo of a cat"): CLIP was trained on captions. A label that starts with '#'
 * is taken as comma-separated token ids ("#49406,320,1929,49407") for models whose file has no
 * tokenizer. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mm.h"

/* Parse "#id,id,..." into ids; returns the count, or 0 if malformed. */
static size_t parse_ids(const char *s, int32_t *ids, size_t cap)
{
    size_t n = 0;
    for (s++; *s && n < cap; n++) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v < 0 || v > INT32_MAX || (*end && *end != ','))
            return 0;
        ids[n] = (int32_t)v;
        s = *end ? end + 1 : end;
    }
    return *s ? 0 : n;
}

static int fail(const char *what, mm_status st)
{
    fprintf(stderr, "mm-clip: %s: %s (%s)\n", what, mm_last_error(), mm_status_str(st));
    return 1;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: %s MODEL.gguf IMAGE LABEL [LABEL ...]\n", argv[0]);
        return 2;
    }
    mm_model *model;
    mm_status st = mm_model_load(argv[1], NULL, NULL, &model);
    if (st != MM_OK)
        return fail(argv[1], st);
    size_t dim = mm_clip_embedding_size(model);
    if (!dim) {
        fprintf(stderr, "mm-clip: %s is not a CLIP model (it needs both towers)\n", argv[1]);
        mm_model_free(model);
        return 1;
    }
    mm_image *image;
    st = mm_image_load_file(argv[2], NULL, &image);
    if (st != MM_OK) {
        mm_model_free(model);
        return fail(argv[2], st);
    }

    int n_labels = argc - 3;
    float *image_embd = malloc(dim * sizeof(float));
    float *text_embd = malloc(dim * sizeof(float));
    float *logits = malloc((size_t)n_labels * sizeof(float));
    int *order = malloc((size_t)n_labels * sizeof(int));
    float scale;
    int rc = 0;
    if (!image_embd || !text_embd || !logits || !order) {
        fprintf(stderr, "mm-clip: out of memory\n");
        rc = 1;
        goto done;
    }
    st = mm_clip_logit_scale(model, &scale);
    if (st == MM_OK)
        st = mm_clip_image_embedding(model, image, image_embd, dim);
    if (st != MM_OK) {
        rc = fail(argv[2], st);
        goto done;
    }
    for (int i = 0; i < n_labels; i++) {
        const char *label = argv[3 + i];
        int32_t ids[512];
        if (label[0] == '#') {
            size_t n = parse_ids(label, ids, sizeof ids / sizeof ids[0]);
            st = n ? mm_clip_text_embedding_tokens(model, ids, n, text_embd, dim) : MM_ERR_ARG;
            if (!n)
                fprintf(stderr, "mm-clip: '%s' is not a list of token ids\n", label);
        } else {
            st = mm_clip_text_embedding(model, label, text_embd, dim);
        }
        if (st != MM_OK) {
            rc = fail(label, st);
            goto done;
        }
        logits[i] = scale * mm_clip_similarity(image_embd, text_embd, dim);
        order[i] = i;
    }
    /* softmax, then labels by decreasing probability */
    float max = logits[0], sum = 0.0f;
    for (int i = 1; i < n_labels; i++)
        max = logits[i] > max ? logits[i] : max;
    for (int i = 0; i < n_labels; i++)
        sum += logits[i] = expf(logits[i] - max);
    for (int i = 1; i < n_labels; i++)
        for (int j = i; j > 0 && logits[order[j]] > logits[order[j - 1]]; j--) {
            int t = order[j];
            order[j] = order[j - 1];
            order[j - 1] = t;
        }
    for (int i = 0; i < n_labels; i++)
        printf("%.4f  %s\n", logits[order[i]] / sum, argv[3 + order[i]]);
done:
    free(image_embd);
    free(text_embd);
    free(logits);
    free(order);
    mm_image_free(image);
    mm_model_free(model);
    return rc;
}
