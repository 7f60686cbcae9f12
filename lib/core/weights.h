/* Weight lookup for the tower loaders: find a tensor by name, check its shape, and hand back
 * its data. Matrices (mmi_weights_matrix) are the mapped file's own bytes, of any type; other
 * tensors (vectors, tables) are the file's bytes for F32 and a buffer converted to f32 once at
 * load otherwise (owned by the mmi_weights and freed with it). */
#ifndef MMI_WEIGHTS_H
#define MMI_WEIGHTS_H

#include "gguf.h"
#include "ops.h"
#include "status.h"

typedef struct {
    const mmi_gguf *file;
    float **owned; /* converted buffers */
    size_t n_owned, cap_owned;
    uint64_t owned_bytes; /* their size: the memory loading took beyond the file */
} mmi_weights;

void mmi_weights_init(mmi_weights *w, const mmi_gguf *file);
void mmi_weights_free(mmi_weights *w);

/* Tensor `name` (printf format) of shape ne[0..n_dims-1] as f32. required = 0: an absent tensor
 * gives *out = NULL and MM_OK; a present one of another shape is still an error. */
mm_status mmi_weights_get(mmi_weights *w, int required, const float **out, uint32_t n_dims,
                          const uint64_t *ne, const char *name, ...) MMI_PRINTF(6, 7);

/* A [n_in, n_out] (ggml order) matrix as stored, any type; optional: data NULL when absent. */
mm_status mmi_weights_matrix(mmi_weights *w, int required, mmi_matrix *out, int n_in, int n_out,
                             const char *name, ...) MMI_PRINTF(6, 7);
/* A vector of n floats. */
mm_status mmi_weights_vector(mmi_weights *w, int required, const float **out, int n,
                             const char *name, ...) MMI_PRINTF(5, 6);

/* The largest width or count any model file may declare (widths, heads, vocabulary, layers):
 * keeps every product of two within size_t and every row length within int. The tensors must
 * exist anyway, which bounds the rest. */
#define MMI_MAX_DIM (1 << 20)

/* A size read from metadata key `key`: an integer in [1, max], else MM_ERR_FORMAT naming the
 * key, its value and the file. The _or form gives def when the key is absent (def itself is
 * checked too). */
mm_status mmi_weights_dim(const mmi_gguf *g, const char *key, int max, int *out);
mm_status mmi_weights_dim_or(const mmi_gguf *g, const char *key, int64_t def, int max, int *out);

#endif
