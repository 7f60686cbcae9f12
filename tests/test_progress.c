/* The progress callback kept in an options bag: set, clear, copy, and stopping an operation. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gguf.h"
#include "mm.h"
#include "options.h"
#include "testutil.h"

typedef struct {
    int calls, stop_at_call;
    mm_progress_stage stage;
    uint64_t done, total;
} progress_log;

static int record(void *user, mm_progress_stage stage, uint64_t done, uint64_t total)
{
    progress_log *log = user;
    log->calls++;
    log->stage = stage;
    log->done = done;
    log->total = total;
    return log->calls == log->stop_at_call;
}

START_TEST(callback_set_copied_and_cleared)
{
    mm_options *o, *copy;
    progress_log log = {0};
    ck_assert_ok(mm_options_create(&o));
    ck_assert_ok(mmi_progress(o, MM_PROGRESS_MODEL_LOAD, 0, 5)); /* no callback: nothing */
    ck_assert_ok(mm_options_set_progress(o, record, &log));
    ck_assert_ok(mmi_progress(o, MM_PROGRESS_IMAGE_ENCODE, 3, 24));
    ck_assert_int_eq(log.calls, 1);
    ck_assert_int_eq(log.stage, MM_PROGRESS_IMAGE_ENCODE);
    ck_assert_uint_eq(log.done, 3);
    ck_assert_uint_eq(log.total, 24);

    ck_assert_ok(mm_options_copy(o, &copy));
    ck_assert_ok(mmi_progress(copy, MM_PROGRESS_PREFILL, 7, 9));
    ck_assert_int_eq(log.calls, 2);
    ck_assert_int_eq(log.stage, MM_PROGRESS_PREFILL);

    ck_assert_ok(mm_options_set_progress(o, NULL, &log));
    ck_assert_ok(mmi_progress(o, MM_PROGRESS_PREFILL, 1, 9));
    ck_assert_int_eq(log.calls, 2);
    ck_assert_ok(mmi_progress(NULL, MM_PROGRESS_PREFILL, 1, 9)); /* NULL bag: defaults */
    ck_assert_ok(mmi_progress(copy, MM_PROGRESS_PREFILL, 8, 9)); /* the copy keeps its own */
    ck_assert_int_eq(log.calls, 3);
    mm_options_free(copy);
    mm_options_free(o);
    ck_assert_int_eq(mm_options_set_progress(NULL, record, NULL), MM_ERR_ARG);
}
END_TEST

START_TEST(nonzero_return_cancels_with_a_message)
{
    mm_options *o;
    progress_log log = {.stop_at_call = 2};
    ck_assert_ok(mm_options_create(&o));
    ck_assert_ok(mm_options_set_progress(o, record, &log));
    ck_assert_ok(mmi_progress(o, MM_PROGRESS_IMAGE_ENCODE, 0, 12));
    ck_assert_int_eq(mmi_progress(o, MM_PROGRESS_IMAGE_ENCODE, 4, 12), MM_ERR_CANCELLED);
    ck_assert_str_eq(mm_last_error(), "image encoding cancelled by the progress callback at 4/12");
    mm_options_free(o);
}
END_TEST

/* A GGUF file with `n_tensors` small tensors under a clip architecture, in a temporary file. */
static void write_model(char *path, int n_tensors)
{
    strcpy(path, "/tmp/mm-progress-XXXXXX");
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    close(fd);
    mmi_gguf_writer *w;
    ck_assert_ok(mmi_gguf_writer_create(&w));
    ck_assert_ok(mmi_gguf_writer_add_string(w, "general.architecture", "clip"));
    float values[4] = {1, 2, 3, 4};
    uint64_t ne[1] = {4};
    for (int i = 0; i < n_tensors; i++) {
        char name[32];
        snprintf(name, sizeof name, "t.%d", i);
        ck_assert_ok(mmi_gguf_writer_add_tensor(w, name, MMI_TENSOR_F32, 1, ne, values));
    }
    ck_assert_ok(mmi_gguf_writer_write_file(w, path));
    mmi_gguf_writer_free(w);
}

/* The load reports 0 of the tensors of both files before reading any tower; stopping there
 * fails the load with MM_ERR_CANCELLED and no model. */
START_TEST(model_load_reports_and_can_be_stopped)
{
    char text_path[64], vision_path[64];
    write_model(text_path, 5);
    write_model(vision_path, 3);
    mm_options *o;
    progress_log log = {.stop_at_call = 1};
    ck_assert_ok(mm_options_create(&o));
    ck_assert_ok(mm_options_set_progress(o, record, &log));
    mm_model *m = (mm_model *)&log;
    ck_assert_int_eq(mm_model_load(text_path, vision_path, o, &m), MM_ERR_CANCELLED);
    ck_assert_ptr_null(m);
    ck_assert_int_eq(log.calls, 1);
    ck_assert_int_eq(log.stage, MM_PROGRESS_MODEL_LOAD);
    ck_assert_uint_eq(log.done, 0);
    ck_assert_uint_eq(log.total, 8);
    ck_assert_str_eq(mm_last_error(), "model load cancelled by the progress callback at 0/8");
    mm_options_free(o);
    unlink(text_path);
    unlink(vision_path);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("progress");
    TCase *tc = tcase_create("progress");
    tcase_add_test(tc, callback_set_copied_and_cleared);
    tcase_add_test(tc, nonzero_return_cancels_with_a_message);
    tcase_add_test(tc, model_load_reports_and_can_be_stopped);
    suite_add_tcase(s, tc);
    return test_run_suite(s);
}
