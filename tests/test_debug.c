/* SPDX-License-Identifier: MIT */
/* EDDY_LOOP_DEBUG reports: a task running too long without awaiting, and a
 * failed task dropped without anyone retrieving its error. Without the flag,
 * nothing is printed. stderr is captured in a temporary file. */
#include <stdio.h>
#include <unistd.h>

#include "helpers.h"

struct capture {
    FILE *file;
    int saved_fd;
};

static void capture_begin(struct capture *c)
{
    fflush(stderr);
    c->file = tmpfile();
    cr_assert(ne(ptr, c->file, NULL));
    c->saved_fd = dup(STDERR_FILENO);
    cr_assert(ge(int, c->saved_fd, 0));
    cr_assert(ge(int, dup2(fileno(c->file), STDERR_FILENO), 0));
}

/* Restores stderr and returns what was written meanwhile (malloc'd). */
static char *capture_end(struct capture *c)
{
    fflush(stderr);
    cr_assert(ge(int, dup2(c->saved_fd, STDERR_FILENO), 0));
    close(c->saved_fd);
    cr_assert(eq(int, fseek(c->file, 0, SEEK_END), 0));
    long size = ftell(c->file);
    cr_assert(ge(long, size, 0));
    rewind(c->file);
    char *text = calloc(1, (size_t)size + 1);
    cr_assert(ne(ptr, text, NULL));
    size_t got = fread(text, 1, (size_t)size, c->file);
    text[got] = '\0';
    fclose(c->file);
    /* Echo it, so a failing run shows what the library said. */
    fputs(text, stderr);
    return text;
}

/* ---- scenarios ------------------------------------------------------------- */

static intptr_t busy_task(void *arg)
{
    int64_t until = wall_ns() + 150 * NS_PER_MS;
    while (wall_ns() < until) {
    }
    return 0;
}

static void run_busy_task(unsigned flags)
{
    eddy_loop *loop = loop_with(flags, 0);
    intptr_t v = 1;
    cr_assert(eq(int, run_task(loop, busy_task, NULL, &v), 0));
    cr_assert(eq(iptr, v, 0));
    eddy_loop_free(loop);
}

static void run_dropped_failure(unsigned flags)
{
    eddy_loop *loop = loop_with(flags, 0);
    eddy_task *t = eddy_spawn(loop, task_return_arg, (void *)(intptr_t)-EIO);
    cr_assert(ne(ptr, t, NULL));
    eddy_task_detach(t);
    cr_assert(eq(int, eddy_loop_run(loop), 0));
    eddy_loop_free(loop);
}

/* Dropped after it ended, rather than before. */
static void run_dropped_after_end(unsigned flags)
{
    eddy_loop *loop = loop_with(flags, 0);
    eddy_task *t = eddy_spawn(loop, task_return_arg, (void *)(intptr_t)-ENOENT);
    cr_assert(ne(ptr, t, NULL));
    cr_assert(eq(int, eddy_loop_run(loop), 0));
    eddy_task_detach(t);
    eddy_loop_free(loop);
}

static void run_quiet_work(unsigned flags)
{
    eddy_loop *loop = loop_with(flags, 0);
    /* A joined failure, a dropped success, a short task. */
    eddy_task *failed = eddy_spawn(loop, task_return_arg, (void *)(intptr_t)-EIO);
    eddy_task *ok = eddy_spawn(loop, task_return_arg, (void *)(intptr_t)3);
    eddy_task *sleeper = eddy_spawn(loop, task_sleep_arg, (void *)(intptr_t)NS_PER_MS);
    cr_assert(failed && ok && sleeper);
    eddy_task_detach(ok);
    cr_assert(eq(int, eddy_loop_run(loop), 0));
    cr_assert(eq(int, eddy_task_join(failed, NULL), -EIO));
    cr_assert(eq(int, eddy_task_join(sleeper, NULL), 0));
    eddy_loop_free(loop);
}

/* ---- with the flag ------------------------------------------------------------ */

Test(debug, slow_task_is_reported, .timeout = TEST_TIMEOUT)
{
    struct capture c;
    capture_begin(&c);
    run_busy_task(EDDY_LOOP_DEBUG);
    char *text = capture_end(&c);
    cr_assert(ne(ptr, strstr(text, "without awaiting"), NULL), "stderr was: \"%s\"", text);
    free(text);
}

Test(debug, dropped_failure_is_reported, .timeout = TEST_TIMEOUT)
{
    struct capture c;
    capture_begin(&c);
    run_dropped_failure(EDDY_LOOP_DEBUG);
    char *text = capture_end(&c);
    cr_assert(ne(ptr, strstr(text, "never retrieved"), NULL), "stderr was: \"%s\"", text);
    free(text);
}

Test(debug, failure_dropped_after_end_is_reported, .timeout = TEST_TIMEOUT)
{
    struct capture c;
    capture_begin(&c);
    run_dropped_after_end(EDDY_LOOP_DEBUG);
    char *text = capture_end(&c);
    cr_assert(ne(ptr, strstr(text, "never retrieved"), NULL), "stderr was: \"%s\"", text);
    free(text);
}

Test(debug, retrieved_errors_and_quick_tasks_are_quiet, .timeout = TEST_TIMEOUT)
{
    struct capture c;
    capture_begin(&c);
    run_quiet_work(EDDY_LOOP_DEBUG);
    char *text = capture_end(&c);
    cr_assert(eq(ptr, strstr(text, "never retrieved"), NULL), "stderr was: \"%s\"", text);
    cr_assert(eq(ptr, strstr(text, "without awaiting"), NULL), "stderr was: \"%s\"", text);
    free(text);
}

/* ---- without it ----------------------------------------------------------------- */

Test(debug, nothing_printed_without_flag, .timeout = TEST_TIMEOUT)
{
    struct capture c;
    capture_begin(&c);
    run_busy_task(0);
    run_dropped_failure(0);
    run_dropped_after_end(0);
    run_quiet_work(0);
    char *text = capture_end(&c);
    cr_assert(eq(str, text, ""), "stderr was: \"%s\"", text);
    free(text);
}
