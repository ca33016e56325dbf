/* SPDX-License-Identifier: MIT */
/* A tour of eddy in one program: tasks that sleep and yield, a timer
 * callback, a task group, a timeout, and the backend the loop picked. */
#include <eddy.h>
#include <inttypes.h>
#include <stdio.h>

#define MS (1000 * 1000LL)

static int64_t start;

static double elapsed_ms(void)
{
    return (double)(eddy_now(eddy_loop_current()) - start) / MS;
}

static intptr_t worker(void *arg)
{
    intptr_t id = (intptr_t)arg;
    int err = eddy_sleep(id * 20 * MS); /* suspends this task only */
    if (err < 0) return err;
    printf("  [%6.1f ms] worker %" PRIdPTR " woke up\n", elapsed_ms(), id);
    return id * id;
}

static void on_timer(void *arg)
{
    printf("  [%6.1f ms] timer callback: %s\n", elapsed_ms(), (const char *)arg);
}

static intptr_t sleeper(void *arg)
{
    (void)arg;
    return eddy_sleep(10 * 1000 * MS); /* far longer than the timeout below */
}

static intptr_t demo_main(void *arg)
{
    (void)arg;
    eddy_loop *loop = eddy_loop_current();
    start = eddy_now(loop);
    printf("eddy demo: loop running on the \"%s\" backend\n", eddy_loop_backend(loop));

    printf("1. three tasks sleeping 60, 20 and 40 ms, joined in spawn order:\n");
    eddy_task *tasks[3];
    intptr_t ids[3] = {3, 1, 2};
    for (int i = 0; i < 3; i++)
        tasks[i] = eddy_spawn(loop, worker, (void *)ids[i]);
    if (eddy_call_later(loop, 30 * MS, on_timer, "30 ms have passed", NULL) < 0) return -1;
    for (int i = 0; i < 3; i++) {
        intptr_t result;
        int err = eddy_task_join(tasks[i], &result);
        printf("  joined worker %" PRIdPTR ": %s, result %" PRIdPTR "\n", ids[i],
               err ? eddy_strerror(err) : "ok", result);
    }

    printf("2. a task group of 4 workers:\n");
    eddy_group *group = eddy_group_new(loop);
    for (intptr_t id = 1; id <= 4; id++)
        eddy_group_spawn(group, worker, (void *)id);
    int err = eddy_group_wait(group);
    eddy_group_free(group);
    printf("  group finished: %s\n", err ? eddy_strerror(err) : "all succeeded");

    printf("3. a 50 ms timeout on a task that sleeps 10 s:\n");
    eddy_task *slow = eddy_spawn(loop, sleeper, NULL);
    err = eddy_await_timeout(eddy_task_future(slow), 50 * MS, NULL);
    printf("  [%6.1f ms] await_timeout: %s (the task was cancelled and has ended: %s)\n",
           elapsed_ms(), eddy_strerror(err),
           eddy_future_done(eddy_task_future(slow)) ? "yes" : "no");
    eddy_task_detach(slow);
    return 0;
}

int main(void)
{
    intptr_t result;
    int err = eddy_run(demo_main, NULL, &result);
    if (err < 0) {
        fprintf(stderr, "demo failed: %s\n", eddy_strerror(err));
        return 1;
    }
    printf("done.\n");
    return 0;
}
