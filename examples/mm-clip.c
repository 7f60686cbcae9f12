/* mm-clip: zero-shot image classification with a CLIP model.
 *
 *   mm-clip -m MODEL.gguf --image IMAGE LABEL [LABEL ...]
 *   mm-clip MODEL.gguf IMAGE LABEL [LABEL ...]
 *
 * Prints, for each label, the probability that it describes the image (softmax over the labels
 * of the model's logit scale times the cosine similarity), highest first. Write labels as
 * sentences ("a photo of a cat"): CLIP was trained on captions. A label that starts with '#'
 * is taken as token ids ("#49406,320,1929,49407") for models whose file has no tokenizer. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "mm.h"

static int fail(const char *what, mm_status st)
{
    fprintf(stderr, "mm-clip: %s: %s (%s)\n", what, mm_last_error(), mm_status_str(st));
    return 1;
}

int main(int argc, char **argv)
{
    const char *model_path = NULL, *image_path = NULL;
    const char **positional = malloc((size_t)argc * sizeof *positional);
    if (!positional)
        return 1;
    mm_options *options;
    if (mm_options_create(&options) != MM_OK)
        return 1;
    const arg_spec specs[] = {
        ARG_MODEL(&model_path),
        {"--image, -i", "FILE", ARG_TEXT, &image_path, (mm_opt)0, 0, 0, "PNG or JPEG"},
    };
    arg_parser parser = {"mm-clip", "-m MODEL.gguf --image IMAGE LABEL [LABEL ...]",
                         "Zero-shot classification with a CLIP model: the probability of each "
                         "label, highest first. A label \"#1,2,3\" is token ids. MODEL.gguf "
                         "and IMAGE may also come first without -m and --image.",
                         specs, sizeof specs / sizeof specs[0], options, positional, 1, argc, 0};
    int rc = args_parse(&parser, argc, argv);
    if (rc >= 0) {
        free(positional);
        mm_options_free(options);
        return rc;
    }
    const char **labels = positional;
    int n_labels = parser.n_positional;
    if (!model_path && n_labels > 0) {
        model_path = *labels++;
        n_labels--;
    }
    if (!image_path && n_labels > 0) {
        image_path = *labels++;
        n_labels--;
    }
    if (!model_path || !image_path || n_labels < 1)
        return args_refuse(&parser, "mm-clip", "a model, an image and at least one label");
    mm_options_set_progress(options, args_progress, NULL);
    mm_model *model;
    mm_status st = mm_model_load(model_path, NULL, options, &model);
    if (st != MM_OK)
        return fail(model_path, st);
    size_t dim = mm_clip_embedding_size(model);
    if (!dim) {
        fprintf(stderr, "mm-clip: %s is not a CLIP model (it needs both towers)\n", model_path);
        mm_model_free(model);
        return 1;
    }
    mm_image *image;
    st = mm_image_load_file(image_path, options, &image);
    if (st != MM_OK) {
        mm_model_free(model);
        return fail(image_path, st);
    }

    float *image_embd = malloc(dim * sizeof(float));
    float *text_embd = malloc(dim * sizeof(float));
    float *logits = malloc((size_t)n_labels * sizeof(float));
    int *order = malloc((size_t)n_labels * sizeof(int));
    float scale;
    rc = 0;
    if (!image_embd || !text_embd || !logits || !order) {
        fprintf(stderr, "mm-clip: out of memory\n");
        rc = 1;
        goto done;
    }
    st = mm_clip_logit_scale(model, &scale);
    if (st == MM_OK)
        st = mm_clip_image_embedding(model, image, image_embd, dim);
    if (st != MM_OK) {
        rc = fail(image_path, st);
        goto done;
    }
    for (int i = 0; i < n_labels; i++) {
        const char *label = labels[i];
        int32_t *ids;
        size_t n;
        if (label[0] == '#') {
            if (!args_token_ids("mm-clip", "label", label + 1, &ids, &n)) {
                rc = 2;
                goto done;
            }
            st = mm_clip_text_embedding_tokens(model, ids, n, text_embd, dim);
            free(ids);
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
        printf("%.4f  %s\n", logits[order[i]] / sum, labels[order[i]]);
done:
    free(image_embd);
    free(text_embd);
    free(logits);
    free(order);
    mm_image_free(image);
    mm_model_free(model);
    mm_options_free(options);
    free(positional);
    return rc;
}
