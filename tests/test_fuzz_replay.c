/* Replays the committed fuzz inputs through the fuzz targets (tests/fuzz/targets.h) in the normal
 * build: every seed of tests/fuzz/corpus/<target>/ and every input a fuzzer found a problem with,
 * kept in tests/fuzz/regressions/<target>/ after the fix. A broken rule aborts, naming the file. */
#include <dirent.h>

#include "fuzz/targets.h"
#include "testutil.h"

/* Feed every file of dir to target t; returns how many there were (0 for a missing folder). */
static int replay_dir(const char *dir, size_t t)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        FILE *f = fopen(path, "rb");
        ck_assert_msg(f != NULL, "cannot open %s", path);
        ck_assert_int_eq(fseek(f, 0, SEEK_END), 0);
        long size = ftell(f);
        ck_assert_int_ge(size, 0);
        rewind(f);
        uint8_t *data = malloc(size ? (size_t)size : 1);
        ck_assert_ptr_nonnull(data);
        ck_assert_uint_eq(fread(data, 1, (size_t)size, f), (size_t)size);
        fclose(f);
        fuzz_input_name = path;
        ck_assert_int_eq(fuzz_one(t, data, (size_t)size), 0);
        free(data);
        n++;
    }
    closedir(d);
    return n;
}

START_TEST(replay_target)
{
    const char *name = fuzz_targets[_i].name;
    char dir[256];
    snprintf(dir, sizeof dir, "tests/fuzz/corpus/%s", name);
    int seeds = replay_dir(dir, (size_t)_i);
    ck_assert_msg(seeds > 0, "%s: no seed inputs in %s", name, dir);
    snprintf(dir, sizeof dir, "tests/fuzz/regressions/%s", name);
    replay_dir(dir, (size_t)_i);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("fuzz_replay");
    TCase *tc = tcase_create("replay");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, replay_target, 0, (int)(sizeof fuzz_targets / sizeof fuzz_targets[0]));
    suite_add_tcase(s, tc);
    return test_run_suite(s);
}
