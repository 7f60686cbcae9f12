/* The point-cloud encoder (tower_points.h). */
#include "tower_points.h"

#include <float.h>
#include <math.h>
#include <string.h>

#include "alloc.h"
#include "ops.h"
#include "status.h"

#define MAX_GROUPS     4096
#define MAX_GROUP_SIZE 1024

static mm_status load(mmi_point_tower *t, const mmi_gguf *g)
{
    mmi_weights *w = &t->weights;
    MMI_TRY(mmi_weights_dim(g, "clip.point.n_groups", MAX_GROUPS, &t->n_groups));
    MMI_TRY(mmi_weights_dim(g, "clip.point.group_size", MAX_GROUP_SIZE, &t->group_size));
    MMI_TRY(mmi_weights_dim(g, "clip.point.in_channels", 6, &t->in_channels));
    if (t->in_channels != 3 && t->in_channels != 6)
        return mmi_fail(MM_ERR_FORMAT, "%s: clip.point.in_channels = %d (3 or 6 expected)",
                        mmi_gguf_path(g), t->in_channels);
    MMI_TRY(mmi_weights_dim(g, "clip.point.pointnet_hidden_length", MMI_MAX_DIM,
                            &t->pointnet_hidden));
    MMI_TRY(mmi_weights_dim(g, "clip.point.pointnet_length", MMI_MAX_DIM, &t->pointnet_out));
    MMI_TRY(mmi_weights_dim(g, "clip.point.position_length", MMI_MAX_DIM, &t->pos_hidden));
    MMI_TRY(mmi_weights_dim(g, "clip.point.projection_dim", MMI_MAX_DIM, &t->n_proj));
    MMI_TRY(mmi_encoder_load(&t->enc, g, w, "clip.point", "p"));
    MMI_TRY(mmi_tower_act(g, "clip.point", &t->enc.act));
    int C = t->in_channels, H1 = t->pointnet_hidden, H2 = t->pointnet_out;
    int Hp = t->pos_hidden, D = t->enc.n_embd, E = t->n_proj;
    MMI_TRY(mmi_weights_matrix(w, 1, &t->pn0, C, H1, "p.pn.0.weight"));
    MMI_TRY(mmi_weights_vector(w, 1, &t->pn0_b, H1, "p.pn.0.bias"));
    MMI_TRY(mmi_weights_matrix(w, 1, &t->pn1, H1, H2, "p.pn.1.weight"));
    MMI_TRY(mmi_weights_vector(w, 1, &t->pn1_b, H2, "p.pn.1.bias"));
    MMI_TRY(mmi_weights_matrix(w, 1, &t->pn2, H2, D, "p.pn.2.weight"));
    MMI_TRY(mmi_weights_vector(w, 1, &t->pn2_b, D, "p.pn.2.bias"));
    MMI_TRY(mmi_weights_matrix(w, 1, &t->pos0, 3, Hp, "p.pos.0.weight"));
    MMI_TRY(mmi_weights_vector(w, 1, &t->pos0_b, Hp, "p.pos.0.bias"));
    MMI_TRY(mmi_weights_matrix(w, 1, &t->pos1, Hp, D, "p.pos.1.weight"));
    MMI_TRY(mmi_weights_vector(w, 1, &t->pos1_b, D, "p.pos.1.bias"));
    MMI_TRY(mmi_weights_vector(w, 1, &t->post_ln_w, D, "p.post_ln.weight"));
    MMI_TRY(mmi_weights_vector(w, 1, &t->post_ln_b, D, "p.post_ln.bias"));
    MMI_TRY(mmi_weights_matrix(w, 1, &t->mm0, D, E, "p.mm.0.weight"));
    MMI_TRY(mmi_weights_vector(w, 1, &t->mm0_b, E, "p.mm.0.bias"));
    MMI_TRY(mmi_weights_matrix(w, 1, &t->mm2, E, E, "p.mm.2.weight"));
    MMI_TRY(mmi_weights_vector(w, 1, &t->mm2_b, E, "p.mm.2.bias"));
    return MM_OK;
}

mm_status mmi_point_tower_load(const mmi_gguf *g, mmi_point_tower **out)
{
    *out = NULL;
    mmi_point_tower *t = mmi_calloc(1, sizeof *t);
    if (!t)
        return mmi_fail(MM_ERR_NOMEM, "%s: out of memory for the point encoder",
                        mmi_gguf_path(g));
    mmi_weights_init(&t->weights, g);
    mm_status st = load(t, g);
    if (st != MM_OK) {
        mmi_point_tower_free(t);
        return st;
    }
    *out = t;
    return MM_OK;
}

void mmi_point_tower_free(mmi_point_tower *t)
{
    if (!t)
        return;
    mmi_encoder_free(&t->enc);
    mmi_weights_free(&t->weights);
    mmi_free(t);
}

void mmi_points_normalise(const float *xyz, size_t n, float *out)
{
    double c[3] = {0, 0, 0}, radius = 0;
    for (size_t i = 0; i < n; i++)
        for (int j = 0; j < 3; j++)
            c[j] += xyz[3 * i + j];
    for (int j = 0; j < 3; j++)
        c[j] /= (double)n;
    for (size_t i = 0; i < n; i++) {
        double d2 = 0;
        for (int j = 0; j < 3; j++)
            d2 += (xyz[3 * i + j] - c[j]) * (xyz[3 * i + j] - c[j]);
        radius = d2 > radius ? d2 : radius;
    }
    radius = sqrt(radius);
    double scale = radius > 0 ? 1 / radius : 1;
    for (size_t i = 0; i < n; i++)
        for (int j = 0; j < 3; j++)
            out[3 * i + j] = (float)((xyz[3 * i + j] - c[j]) * scale);
}

static float dist2(const float *a, const float *b)
{
    float dx = a[0] - b[0], dy = a[1] - b[1], dz = a[2] - b[2];
    return dx * dx + dy * dy + dz * dz;
}

void mmi_points_fps(const float *xyz, size_t n, int m, uint64_t seed, int32_t *out,
                    float *min_dist)
{
    size_t last = (size_t)(seed % n);
    out[0] = (int32_t)last;
    for (size_t i = 0; i < n; i++)
        min_dist[i] = FLT_MAX;
    for (int k = 1; k < m; k++) {
        size_t far = 0;
        float far_d = -1;
        for (size_t i = 0; i < n; i++) {
            float d = dist2(xyz + 3 * i, xyz + 3 * last);
            if (d < min_dist[i])
                min_dist[i] = d;
            if (min_dist[i] > far_d) {
                far_d = min_dist[i];
                far = i;
            }
        }
        out[k] = (int32_t)(last = far);
    }
}

void mmi_points_knn(const float *xyz, size_t n, const float *c, int k, int32_t *out,
                    float *dist)
{
    /* Insertion into the sorted k best: O(n·k) at worst, and k is small. A later point with an
     * equal distance goes after the earlier ones, so ties keep index order. */
    int have = 0;
    for (size_t i = 0; i < n; i++) {
        float d = dist2(xyz + 3 * i, c);
        if (have == k && d >= dist[k - 1])
            continue;
        int at = have < k ? have++ : k - 1;
        while (at > 0 && dist[at - 1] > d) {
            dist[at] = dist[at - 1];
            out[at] = out[at - 1];
            at--;
        }
        dist[at] = d;
        out[at] = (int32_t)i;
    }
}

mm_status mmi_point_tower_encode(const mmi_point_tower *t, const mm_points *points,
                                 uint64_t seed, float *out, const atomic_int *cancel)
{
    size_t n = points->n_points;
    int G = t->n_groups, K = t->group_size, C = t->in_channels;
    int H1 = t->pointnet_hidden, H2 = t->pointnet_out, Hp = t->pos_hidden;
    int D = t->enc.n_embd, E = t->n_proj;
    if (n < (size_t)K)
        return mmi_fail(MM_ERR_ARG, "point cloud of %zu points, fewer than the encoder's group "
                        "size %d", n, K);
    size_t GK = (size_t)G * K, at = 0;
    size_t n_scratch = mmi_encoder_scratch_floats(&t->enc, G, 1);
    size_t need_pn = GK * ((size_t)C + H1 + H2) + (size_t)G * D;
    size_t need_proj = (size_t)G * (Hp > E ? Hp : E);
    /* Layout: points, distances, centres, tokens, the small MLPs' hidden rows, then the
     * PointNet's rows or the blocks' scratch (never live at once), then neighbour indices. */
    float *s = NULL;
    for (int pass = 0; pass < 2; pass++) {
        at = 0;
        float *xyz = mmi_carve(s, &at, 3 * n);
        float *dist = mmi_carve(s, &at, n);
        float *centres = mmi_carve(s, &at, 3 * (size_t)G);
        float *x = mmi_carve(s, &at, (size_t)G * D);
        float *pos = mmi_carve(s, &at, need_proj);
        float *work = mmi_carve(s, &at, need_pn > n_scratch ? need_pn : n_scratch);
        int32_t *idx = (int32_t *)mmi_carve(s, &at, GK + (size_t)G);
        if (pass == 0) {
            s = mmi_array(at, sizeof(float));
            if (!s)
                return mmi_fail(MM_ERR_NOMEM, "point encoder: out of memory for %zu floats",
                                at);
            continue;
        }
        int32_t *centre_idx = idx + GK;
        mmi_points_normalise(points->xyz, n, xyz);
        mmi_points_fps(xyz, n, G, seed, centre_idx, dist);
        float *feat = work, *h1 = feat + GK * C, *h2 = h1 + GK * H1;
        for (int gi = 0; gi < G; gi++) {
            const float *c = xyz + 3 * (size_t)centre_idx[gi];
            memcpy(centres + 3 * (size_t)gi, c, 3 * sizeof(float));
            int32_t *nb = idx + (size_t)gi * K;
            mmi_points_knn(xyz, n, c, K, nb, dist);
            for (int j = 0; j < K; j++) {
                float *f = feat + ((size_t)gi * K + j) * C;
                const float *p = xyz + 3 * (size_t)nb[j];
                for (int d = 0; d < 3; d++)
                    f[d] = p[d] - c[d];
                for (int d = 3; d < C; d++)
                    f[d] = points->rgb ? points->rgb[3 * (size_t)nb[j] + d - 3] : 0;
            }
        }
        /* mini-PointNet over all G·K points at once, then a max over each group's K rows. */
        mmi_linear(h1, feat, (int)GK, &t->pn0, t->pn0_b);
        mmi_relu(h1, GK * H1);
        mmi_linear(h2, h1, (int)GK, &t->pn1, t->pn1_b);
        for (int gi = 0; gi < G; gi++) {
            float *pooled = h2 + (size_t)gi * H2; /* row gi·K's place is free once read */
            const float *rows = h2 + (size_t)gi * K * H2;
            for (int c = 0; c < H2; c++) {
                float m = rows[c];
                for (int j = 1; j < K; j++)
                    m = rows[(size_t)j * H2 + c] > m ? rows[(size_t)j * H2 + c] : m;
                pooled[c] = m;
            }
        }
        mmi_linear(x, h2, G, &t->pn2, t->pn2_b);
        mmi_linear(pos, centres, G, &t->pos0, t->pos0_b);
        mmi_gelu(pos, (size_t)G * Hp);
        float *pos_out = h2 + (size_t)G * H2; /* past the pooled rows, inside work */
        mmi_linear(pos_out, pos, G, &t->pos1, t->pos1_b);
        mmi_add(x, pos_out, (size_t)G * D);
        mm_status st = MM_OK;
        for (int l = 0; l < t->enc.n_layer && st == MM_OK; l++) {
            if (mmi_cancelled(cancel))
                st = mmi_fail(MM_ERR_CANCELLED, "point encoder: cancelled at block %d", l);
            else
                mmi_encoder_block(&t->enc, l, x, G, 1, NULL, work);
        }
        if (st == MM_OK) {
            mmi_layernorm(x, x, G, D, t->post_ln_w, t->post_ln_b, t->enc.eps);
            mmi_linear(pos, x, G, &t->mm0, t->mm0_b);
            mmi_gelu(pos, (size_t)G * E);
            mmi_linear(out, pos, G, &t->mm2, t->mm2_b);
        }
        mmi_free(s);
        return st;
    }
    return MM_OK;
}
