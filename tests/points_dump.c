/* Runs the point encoder of a GGUF file on a PLY cloud and writes its output rows as raw f32:
 *   tests/points_dump TOWER.gguf CLOUD.ply SEED OUT.f32
 * The parity check (tools/train/point_encoder.py --parity, tests/run_2.d/point_encoder) compares
 * them with the PyTorch reference. */
#include <stdio.h>
#include <stdlib.h>

#include "alloc.h"
#include "gguf.h"
#include "tower_points.h"

static int fail(const char *what)
{
    fprintf(stderr, "points_dump: %s: %s\n", what, mm_last_error());
    return 1;
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: %s TOWER.gguf CLOUD.ply SEED OUT.f32\n", argv[0]);
        return 2;
    }
    mmi_gguf *g;
    if (mmi_gguf_open(argv[1], 0, &g) != MM_OK)
        return fail("open");
    mmi_point_tower *t;
    if (mmi_point_tower_load(g, &t) != MM_OK)
        return fail("load");
    mm_points *points;
    if (mm_points_load_file(argv[2], NULL, &points) != MM_OK)
        return fail("points");
    size_t n = (size_t)t->n_groups * t->n_proj;
    float *out = malloc(n * sizeof *out);
    if (!out || mmi_point_tower_encode(t, points, strtoull(argv[3], NULL, 10), out, NULL) != MM_OK)
        return fail("encode");
    FILE *f = fopen(argv[4], "wb");
    if (!f || fwrite(out, sizeof *out, n, f) != n || fclose(f) != 0)
        return fail("write");
    free(out);
    mm_points_free(points);
    mmi_point_tower_free(t);
    mmi_gguf_close(g);
    return 0;
}
