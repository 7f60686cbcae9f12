/* The point-cloud encoder of a `clip` file (docs/model-format.md, "Point encoder"): PointLLM's
 * Point-BERT design. The cloud is centred and scaled into the unit sphere; farthest point
 * sampling picks G centres; each centre's K nearest points, relative to it (and their
 * colours), go through a shared per-point MLP whose outputs are max-pooled per group into a
 * token (a mini-PointNet, all as GEMMs over the G·K points); a small MLP of the centre adds
 * its position; the ViT's pre-LN blocks run on the G tokens; post-LN; a projector (linear,
 * GELU, linear) into the language model's width. A loaded tower is read-only. */
#ifndef MMI_TOWER_POINTS_H
#define MMI_TOWER_POINTS_H

#include <stdatomic.h>
#include <stdint.h>

#include "gguf.h"
#include "points.h"
#include "vit.h"
#include "weights.h"

typedef struct {
    /* config */
    int n_groups, group_size; /* G centres, K points per group */
    int in_channels;          /* C: 3 (offsets) or 6 (offsets, colours) */
    int pointnet_hidden, pointnet_out, pos_hidden; /* H1, H2, Hp */
    int n_proj;               /* E: the language model's width */
    mmi_encoder enc;          /* D = enc.n_embd */
    /* weights */
    mmi_matrix pn0, pn1, pn2; /* [C -> H1] then ReLU, [H1 -> H2], max over K, [H2 -> D] */
    const float *pn0_b, *pn1_b, *pn2_b;
    mmi_matrix pos0, pos1;    /* [3 -> Hp] then GELU, [Hp -> D] */
    const float *pos0_b, *pos1_b;
    const float *post_ln_w, *post_ln_b;
    mmi_matrix mm0, mm2;      /* [D -> E] then GELU, [E -> E] */
    const float *mm0_b, *mm2_b;
    mmi_weights weights;
} mmi_point_tower;

/* The tower of a file with clip.has_point_encoder; MM_ERR_FORMAT names a missing or
 * ill-shaped key or tensor. Free with mmi_point_tower_free (also after a failed load). */
mm_status mmi_point_tower_load(const mmi_gguf *g, mmi_point_tower **out);
void mmi_point_tower_free(mmi_point_tower *t);

/* Centre on the mean and scale so the farthest point is at distance 1 (a single point, or all
 * points equal, are only centred): out[n][3]. */
void mmi_points_normalise(const float *xyz, size_t n, float *out);
/* Farthest point sampling of m indices from xyz[n][3], starting at index seed % n: each next
 * index is the point farthest from those chosen (squared distance, first index on ties);
 * min_dist[n] is scratch. */
void mmi_points_fps(const float *xyz, size_t n, int m, uint64_t seed, int32_t *out,
                    float *min_dist);
/* The k (<= n) nearest points of centre c, nearest first (ties: lower index first); dist[k]
 * is scratch. */
void mmi_points_knn(const float *xyz, size_t n, const float *c, int k, int32_t *out,
                    float *dist_scratch);

/* out[G][E] for a cloud of at least K points (MM_ERR_ARG otherwise); seed picks the first
 * centre. Colours are zeros for a cloud without them. cancel is read between blocks. */
mm_status mmi_point_tower_encode(const mmi_point_tower *t, const mm_points *points,
                                 uint64_t seed, float *out, const atomic_int *cancel);

#endif
