/* Vision stages that the HF parity cases do not reach on their own: position-table resizing
 * (against PyTorch), patch embedding on a hand-computed case. */
#include <math.h>
#include <string.h>

#include "data/bicubic_ref.h"
#include "patchify.h"
#include "testutil.h"

/* Reference: torch in float64 on the same inputs; float32 weights and sums here stay within
 * 2e-6 (torch's own float32 path differs from float64 by up to 1e-6 on these cases). */
START_TEST(bicubic_matches_torch)
{
    static const float *const src[] = {bicubic_src0, bicubic_src1, bicubic_src2, bicubic_src3};
    static const float *const dst[] = {bicubic_dst0, bicubic_dst1, bicubic_dst2, bicubic_dst3};
    static const int *const cases[] = {bicubic_case0, bicubic_case1, bicubic_case2,
                                       bicubic_case3};
    ck_assert_int_eq(BICUBIC_N_CASES, 4);
    for (int n = 0; n < BICUBIC_N_CASES; n++) {
        const int *c = cases[n];
        float out[256];
        int count = c[3] * c[4] * c[2];
        ck_assert_int_le(count, 256);
        mmi_resize_bicubic(src[n], c[0], c[1], c[2], out, c[3], c[4]);
        for (int i = 0; i < count; i++)
            ck_assert_msg(fabsf(out[i] - dst[n][i]) <= 2e-6f, "case %d [%d]: %.9g vs torch %.9g",
                          n, i, (double)out[i], (double)dst[n][i]);
    }
}
END_TEST

START_TEST(patchify_hand_case)
{
    /* 3 channels of 4×2 pixels, P = 2: 2 patches (top, bottom), D = 2. Filter 0 sums the red
     * patch, filter 1 takes the blue top-right pixel. Pixels: channel c, row y, col x holds
     * 100c + 10y + x. */
    float chw[3 * 4 * 2];
    for (int c = 0; c < 3; c++)
        for (int y = 0; y < 4; y++)
            for (int x = 0; x < 2; x++)
                chw[(c * 4 + y) * 2 + x] = (float)(100 * c + 10 * y + x);
    float w[2 * 12] = {0};
    for (int i = 0; i < 4; i++)
        w[i] = 1; /* filter 0, channel 0, all (ky, kx) */
    w[12 + 2 * 4 + 0 * 2 + 1] = 1; /* filter 1, channel 2, ky 0, kx 1 */
    const float bias[2] = {0.5f, -1};
    const float class_embd[2] = {7, 8};
    /* Table for a 1×1 grid is resized to the 2×1 grid: a constant stays constant. */
    const float pos[2 * 2] = {0.25f, 0.75f, 1000, 2000};
    mmi_patch_embed pe = {.patch_size = 2, .n_embd = 2, .pos_grid = 1,
                          .weight = {w, 12, 2}, .bias = bias, .class_embd = class_embd,
                          .pos = pos};
    ck_assert_int_eq(mmi_patch_tokens(&pe, 2, 4), 3);
    ck_assert_int_eq(mmi_patch_tokens(&pe, 3, 5), 3); /* partial patches dropped */
    float scratch[64], x[6];
    ck_assert_uint_le(mmi_patch_scratch_floats(&pe, 2, 4), 64);
    mmi_patchify(&pe, chw, 2, 4, x, scratch);
    /* top patch red sum: 0+1+10+11 = 22; bottom: 20+21+30+31 = 102. Blue (c=2) top-right:
     * 201 (row 0) and 221 (row 2). */
    const float want[6] = {7.25f, 8.75f, 22 + 0.5f + 1000, 201 - 1 + 2000, 102 + 0.5f + 1000,
                           221 - 1 + 2000};
    for (int i = 0; i < 6; i++)
        ck_assert_float_eq_tol(x[i], want[i], 1e-3f);
}
END_TEST

static Suite *vision_suite(void)
{
    Suite *s = suite_create("vision");
    TCase *tc = tcase_create("stages");
    tcase_add_test(tc, bicubic_matches_torch);
    tcase_add_test(tc, patchify_hand_case);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return test_run_suite(vision_suite());
}
