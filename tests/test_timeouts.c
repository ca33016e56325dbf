/* SPDX-License-Identifier: MIT */
/* eddy_await_timeout (asyncio.wait_for) and eddy_wait_any's limit, all under
 * virtual time, so elapsed times are exact. */
#include "helpers.h"

struct timed {
    eddy_future *future;
    int64_t timeout;
    int err;
    intptr_t value;
    int64_t elapsed;
};

static intptr_t await_timeout_task(void *arg)
{
    struct timed *w = arg;
    int64_t start = loop_now();
    w->value = -1;
    w->err = eddy_await_timeout(w->future, w->timeout, &w->value);
    w->elapsed = loop_now() - start;
    return 0;
}

/* Runs await_timeout_task on loop and checks that the loop then ran dry. */
static void run_timed(eddy_loop *loop, struct timed *w)
{
    intptr_t v = 0;
    cr_assert(eq(int, run_task(loop, await_timeout_task, w, &v), 0));
}

Test(timeouts, pending_future_times_out_and_is_cancelled, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_virtual_loop();
    struct timed w = {.future = eddy_future_new(loop), .timeout = 50 * NS_PER_MS};
    cr_assert(ne(ptr, w.future, NULL));
    run_timed(loop, &w);
    cr_assert(eq(int, w.err, -ETIMEDOUT));
    cr_assert(eq(i64, w.elapsed, 50 * NS_PER_MS));
    cr_assert(eddy_future_done(w.future), "the timed-out future was not cancelled");
    cr_assert(eq(int, eddy_future_result(w.future, NULL), -ECANCELED));
    eddy_future_unref(w.future);
    eddy_loop_free(loop);
}

Test(timeouts, future_completed_in_time_gives_value, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_virtual_loop();
    struct timed w = {.future = eddy_future_new(loop), .timeout = 100 * NS_PER_MS};
    int64_t start = eddy_now(loop);
    set_result_later(loop, w.future, 10 * NS_PER_MS, 808);
    run_timed(loop, &w);
    cr_assert(eq(int, w.err, 0));
    cr_assert(eq(iptr, w.value, 808));
    cr_assert(eq(i64, w.elapsed, 10 * NS_PER_MS));
    /* The limit's timer went away with the wait: the loop did not run on to it. */
    cr_assert(eq(i64, eddy_now(loop) - start, 10 * NS_PER_MS));
    eddy_future_unref(w.future);
    eddy_loop_free(loop);
}

Test(timeouts, future_failing_in_time_gives_error, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_virtual_loop();
    struct timed w = {.future = eddy_future_new(loop), .timeout = 100 * NS_PER_MS};
    set_error_later(loop, w.future, 10 * NS_PER_MS, -ECONNRESET);
    run_timed(loop, &w);
    cr_assert(eq(int, w.err, -ECONNRESET));
    cr_assert(eq(i64, w.elapsed, 10 * NS_PER_MS));
    eddy_future_unref(w.future);
    eddy_loop_free(loop);
}

Test(timeouts, negative_timeout_waits_forever, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_virtual_loop();
    struct timed w = {.future = eddy_future_new(loop), .timeout = -1};
    set_result_later(loop, w.future, 5 * NS_PER_HOUR, 6);
    run_timed(loop, &w);
    cr_assert(eq(int, w.err, 0));
    cr_assert(eq(iptr, w.value, 6));
    cr_assert(eq(i64, w.elapsed, 5 * NS_PER_HOUR));
    eddy_future_unref(w.future);
    eddy_loop_free(loop);
}

Test(timeouts, zero_timeout, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_virtual_loop();
    /* Done already: its value, as asyncio.wait_for(fut, 0) gives. */
    struct timed done = {.future = eddy_future_new(loop), .timeout = 0};
    cr_assert(eq(int, eddy_future_set_result(done.future, 4), 0));
    run_timed(loop, &done);
    cr_assert(eq(int, done.err, 0));
    cr_assert(eq(iptr, done.value, 4));
    cr_assert(eq(i64, done.elapsed, 0));
    /* Pending: timed out at once, and cancelled. */
    struct timed pending = {.future = eddy_future_new(loop), .timeout = 0};
    run_timed(loop, &pending);
    cr_assert(eq(int, pending.err, -ETIMEDOUT));
    cr_assert(eq(i64, pending.elapsed, 0));
    cr_assert(eq(int, eddy_future_result(pending.future, NULL), -ECANCELED));
    eddy_future_unref(done.future);
    eddy_future_unref(pending.future);
    eddy_loop_free(loop);
}

/* ---- on tasks ------------------------------------------------------------------ */

struct slow_child {
    int sleep_result;
    int ended;
    int64_t ended_at;
};

static intptr_t slow_child_task(void *arg)
{
    struct slow_child *c = arg;
    c->sleep_result = eddy_sleep(NS_PER_HOUR);
    /* Cleanup that takes time, shielded: wait_for must wait for it. */
    eddy_shield_begin();
    int err = eddy_sleep(5 * NS_PER_MS);
    eddy_shield_end();
    c->ended = err == 0;
    c->ended_at = loop_now();
    return c->sleep_result;
}

struct task_timed {
    struct slow_child *child_state;
    int err;
    bool child_done_at_return;
    int64_t returned_at;
    int join_err;
};

static intptr_t await_task_timeout(void *arg)
{
    struct task_timed *w = arg;
    eddy_task *child = eddy_spawn(NULL, slow_child_task, w->child_state);
    if (!child) return -ENOMEM;
    intptr_t v = 0;
    w->err = eddy_await_timeout(eddy_task_future(child), 20 * NS_PER_MS, &v);
    w->child_done_at_return = eddy_future_done(eddy_task_future(child));
    w->returned_at = loop_now();
    w->join_err = eddy_task_join(child, NULL);
    return 0;
}

Test(timeouts, task_times_out_is_cancelled_and_ended, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_virtual_loop();
    struct slow_child c = {1, 0, 0};
    struct task_timed w = {&c, 1, false, 0, 1};
    int64_t start = eddy_now(loop);
    intptr_t v = 0;
    cr_assert(eq(int, run_task(loop, await_task_timeout, &w, &v), 0));
    cr_assert(eq(int, w.err, -ETIMEDOUT));
    cr_assert(w.child_done_at_return, "await_timeout returned before the task ended");
    cr_assert(eq(int, c.sleep_result, -ECANCELED));
    cr_assert(eq(int, c.ended, 1));
    cr_assert(eq(i64, c.ended_at - start, 25 * NS_PER_MS));
    cr_assert(ge(i64, w.returned_at, c.ended_at));
    cr_assert(eq(int, w.join_err, -ECANCELED));
    eddy_loop_free(loop);
}

static intptr_t await_quick_task(void *arg)
{
    eddy_task *child = eddy_spawn(NULL, task_sleep_arg, (void *)(intptr_t)(3 * NS_PER_MS));
    if (!child) return -ENOMEM;
    intptr_t v = 0;
    int err = eddy_await_timeout(eddy_task_future(child), NS_PER_SEC, &v);
    int join = eddy_task_join(child, NULL);
    if (err < 0) return err;
    if (join < 0) return join;
    return v;
}

Test(timeouts, task_done_in_time_gives_its_result, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_virtual_loop();
    int64_t start = eddy_now(loop);
    intptr_t v = 0;
    cr_assert(eq(int, run_task(loop, await_quick_task, NULL, &v), 0));
    cr_assert(eq(iptr, v, 3 * NS_PER_MS));
    cr_assert(eq(i64, eddy_now(loop) - start, 3 * NS_PER_MS));
    eddy_loop_free(loop);
}

/* A waiter cancelled before its limit: -ECANCELED, not -ETIMEDOUT. */
Test(timeouts, cancelled_while_waiting_with_limit, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_virtual_loop();
    struct timed w = {.future = eddy_future_new(loop), .timeout = NS_PER_SEC};
    eddy_task *t = eddy_spawn(loop, await_timeout_task, &w);
    cr_assert(ne(ptr, t, NULL));
    cancel_task_later(loop, t, 10 * NS_PER_MS);
    cr_assert(eq(int, eddy_loop_run(loop), 0));
    cr_assert(eq(int, w.err, -ECANCELED));
    cr_assert(eq(i64, w.elapsed, 10 * NS_PER_MS));
    cr_assert(eq(int, eddy_future_result(w.future, NULL), -ECANCELED));
    cr_assert(eq(int, eddy_task_join(t, NULL), 0));
    eddy_future_unref(w.future);
    eddy_loop_free(loop);
}

/* ---- eddy_wait_any ------------------------------------------------------------- */

struct any_timed {
    eddy_future *fs[3];
    int64_t timeout;
    int index;
    int64_t elapsed;
};

static intptr_t wait_any_task(void *arg)
{
    struct any_timed *w = arg;
    int64_t start = loop_now();
    w->index = eddy_wait_any(w->fs, 3, w->timeout);
    w->elapsed = loop_now() - start;
    return 0;
}

Test(timeouts, wait_any_times_out_and_leaves_futures, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_virtual_loop();
    struct any_timed w = {.timeout = 30 * NS_PER_MS};
    for (int i = 0; i < 3; i++)
        w.fs[i] = eddy_future_new(loop);
    intptr_t v = 0;
    cr_assert(eq(int, run_task(loop, wait_any_task, &w, &v), 0));
    cr_assert(eq(int, w.index, -ETIMEDOUT));
    cr_assert(eq(i64, w.elapsed, 30 * NS_PER_MS));
    for (int i = 0; i < 3; i++) {
        cr_assert(not(eddy_future_done(w.fs[i])), "future %d was touched", i);
        /* Still usable. */
        cr_assert(eq(int, eddy_future_set_result(w.fs[i], i), 0));
        eddy_future_unref(w.fs[i]);
    }
    eddy_loop_free(loop);
}

Test(timeouts, wait_any_done_before_limit, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_virtual_loop();
    struct any_timed w = {.timeout = 30 * NS_PER_MS};
    for (int i = 0; i < 3; i++)
        w.fs[i] = eddy_future_new(loop);
    int64_t start = eddy_now(loop);
    set_result_later(loop, w.fs[1], 12 * NS_PER_MS, 0);
    intptr_t v = 0;
    cr_assert(eq(int, run_task(loop, wait_any_task, &w, &v), 0));
    cr_assert(eq(int, w.index, 1));
    cr_assert(eq(i64, w.elapsed, 12 * NS_PER_MS));
    cr_assert(eq(i64, eddy_now(loop) - start, 12 * NS_PER_MS),
              "the limit's timer outlived the wait");
    cr_assert(not(eddy_future_done(w.fs[0])));
    cr_assert(not(eddy_future_done(w.fs[2])));
    for (int i = 0; i < 3; i++)
        eddy_future_unref(w.fs[i]);
    eddy_loop_free(loop);
}
