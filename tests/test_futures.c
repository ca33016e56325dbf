/* SPDX-License-Identifier: MIT */
/* Futures: outcomes, deferred done callbacks, reference counting, awaiting. */
#include "helpers.h"

struct done_seen {
    int runs;
    eddy_future *future;
    int err;
    intptr_t value;
    bool was_done;
};

static void done_cb(eddy_future *f, void *arg)
{
    struct done_seen *s = arg;
    s->runs++;
    s->future = f;
    s->was_done = eddy_future_done(f);
    s->value = -1;
    s->err = eddy_future_result(f, &s->value);
}

Test(futures, new_future_is_pending, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_loop();
    eddy_future *f = eddy_future_new(loop);
    cr_assert(ne(ptr, f, NULL));
    cr_assert(not(eddy_future_done(f)));
    intptr_t v = 77;
    cr_assert(eq(int, eddy_future_result(f, &v), -EAGAIN));
    cr_assert(eq(iptr, v, 77), "result wrote the value of a pending future");
    eddy_future_unref(f);
    eddy_loop_free(loop);
}

Test(futures, set_result_then_result, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_loop();
    eddy_future *f = eddy_future_new(loop);
    cr_assert(eq(int, eddy_future_set_result(f, 1234), 0));
    cr_assert(eddy_future_done(f));
    intptr_t v = 0;
    cr_assert(eq(int, eddy_future_result(f, &v), 0));
    cr_assert(eq(iptr, v, 1234));
    /* A result may be any intptr_t, a pointer included, and NULL value is allowed. */
    cr_assert(eq(int, eddy_future_result(f, NULL), 0));
    eddy_future_unref(f);
    eddy_loop_free(loop);
}

Test(futures, done_callback_is_deferred, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_loop();
    eddy_future *f = eddy_future_new(loop);
    struct done_seen seen = {0};
    cr_assert(eq(int, eddy_future_on_done(f, done_cb, &seen), 0));
    cr_assert(eq(int, eddy_future_set_result(f, 5), 0));
    cr_assert(eq(int, seen.runs, 0), "the done callback ran inside set_result");
    cr_assert(eq(int, eddy_loop_run(loop), 0));
    cr_assert(eq(int, seen.runs, 1));
    cr_assert(eq(ptr, seen.future, f));
    cr_assert(seen.was_done);
    cr_assert(eq(int, seen.err, 0));
    cr_assert(eq(iptr, seen.value, 5));
    eddy_future_unref(f);
    eddy_loop_free(loop);
}

struct iteration_probe {
    eddy_loop *loop;
    eddy_future *future;
    struct done_seen *seen;
    int seen_at_set;
    int seen_in_same_iteration;
};

static void probe_after(void *arg)
{
    struct iteration_probe *p = arg;
    p->seen_in_same_iteration = p->seen->runs;
}

static void probe_set(void *arg)
{
    struct iteration_probe *p = arg;
    cr_assert(eq(int, eddy_future_set_result(p->future, 9), 0));
    p->seen_at_set = p->seen->runs;
}

/* Set from a callback: the done callback runs on a later iteration, after
 * what was already queued in this one. */
Test(futures, done_callback_runs_from_ready_queue, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_loop();
    eddy_future *f = eddy_future_new(loop);
    struct done_seen seen = {0};
    struct iteration_probe p = {loop, f, &seen, -1, -1};
    cr_assert(eq(int, eddy_future_on_done(f, done_cb, &seen), 0));
    cr_assert(eq(int, eddy_call_soon(loop, probe_set, &p), 0));
    cr_assert(eq(int, eddy_call_soon(loop, probe_after, &p), 0));
    cr_assert(eq(int, eddy_loop_run(loop), 0));
    cr_assert(eq(int, p.seen_at_set, 0));
    cr_assert(eq(int, p.seen_in_same_iteration, 0));
    cr_assert(eq(int, seen.runs, 1));
    eddy_future_unref(f);
    eddy_loop_free(loop);
}

Test(futures, on_done_of_done_future_is_deferred, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_loop();
    eddy_future *f = eddy_future_new(loop);
    cr_assert(eq(int, eddy_future_set_error(f, -EIO), 0));
    struct done_seen seen = {0};
    cr_assert(eq(int, eddy_future_on_done(f, done_cb, &seen), 0));
    cr_assert(eq(int, seen.runs, 0), "on_done ran the callback inline");
    cr_assert(eq(int, eddy_loop_run(loop), 0));
    cr_assert(eq(int, seen.runs, 1));
    cr_assert(eq(int, seen.err, -EIO));
    eddy_future_unref(f);
    eddy_loop_free(loop);
}

struct order_log {
    int order[8];
    int count;
};

struct order_item {
    struct order_log *log;
    int index;
};

static void order_cb(eddy_future *f, void *arg)
{
    struct order_item *item = arg;
    item->log->order[item->log->count++] = item->index;
}

Test(futures, done_callbacks_run_in_registration_order, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_loop();
    eddy_future *f = eddy_future_new(loop);
    struct order_log log = {.count = 0};
    struct order_item items[8];
    for (int i = 0; i < 8; i++) {
        items[i] = (struct order_item){&log, i};
        cr_assert(eq(int, eddy_future_on_done(f, order_cb, &items[i]), 0));
    }
    cr_assert(eq(int, eddy_future_set_result(f, 0), 0));
    cr_assert(eq(int, eddy_loop_run(loop), 0));
    cr_assert(eq(int, log.count, 8));
    for (int i = 0; i < 8; i++)
        cr_assert(eq(int, log.order[i], i));
    eddy_future_unref(f);
    eddy_loop_free(loop);
}

Test(futures, set_twice_is_ealready, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_loop();
    eddy_future *f = eddy_future_new(loop);
    cr_assert(eq(int, eddy_future_set_result(f, 1), 0));
    cr_assert(eq(int, eddy_future_set_result(f, 2), -EALREADY));
    cr_assert(eq(int, eddy_future_set_error(f, -EIO), -EALREADY));
    cr_assert(not(eddy_future_cancel(f)));
    intptr_t v = 0;
    cr_assert(eq(int, eddy_future_result(f, &v), 0));
    cr_assert(eq(iptr, v, 1), "a second set changed the outcome");
    eddy_future_unref(f);
    eddy_loop_free(loop);
}

Test(futures, set_error, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_loop();
    eddy_future *f = eddy_future_new(loop);
    cr_assert(eq(int, eddy_future_set_error(f, -EIO), 0));
    cr_assert(eddy_future_done(f));
    intptr_t v = 55;
    cr_assert(eq(int, eddy_future_result(f, &v), -EIO));
    cr_assert(eq(int, eddy_future_set_result(f, 1), -EALREADY));
    eddy_future_unref(f);

    /* The whole error range is accepted. */
    f = eddy_future_new(loop);
    cr_assert(eq(int, eddy_future_set_error(f, -4095), 0));
    cr_assert(eq(int, eddy_future_result(f, NULL), -4095));
    eddy_future_unref(f);
    eddy_loop_free(loop);
}

Test(futures, set_error_with_non_error_is_einval, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_loop();
    eddy_future *f = eddy_future_new(loop);
    cr_assert(eq(int, eddy_future_set_error(f, 0), -EINVAL));
    cr_assert(eq(int, eddy_future_set_error(f, 5), -EINVAL));
    cr_assert(eq(int, eddy_future_set_error(f, -4096), -EINVAL));
    cr_assert(eq(int, eddy_future_set_error(f, INT32_MIN), -EINVAL));
    cr_assert(not(eddy_future_done(f)), "a rejected set_error completed the future");
    cr_assert(eq(int, eddy_future_result(f, NULL), -EAGAIN));
    eddy_future_unref(f);
    eddy_loop_free(loop);
}

Test(futures, cancel, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_loop();
    eddy_future *f = eddy_future_new(loop);
    struct done_seen seen = {0};
    cr_assert(eq(int, eddy_future_on_done(f, done_cb, &seen), 0));
    cr_assert(eddy_future_cancel(f));
    cr_assert(eddy_future_done(f));
    cr_assert(eq(int, eddy_future_result(f, NULL), -ECANCELED));
    cr_assert(not(eddy_future_cancel(f)), "cancelling twice returned true");
    cr_assert(eq(int, eddy_future_set_result(f, 1), -EALREADY));
    cr_assert(eq(int, seen.runs, 0));
    cr_assert(eq(int, eddy_loop_run(loop), 0));
    cr_assert(eq(int, seen.runs, 1), "cancelling did not run the done callback");
    cr_assert(eq(int, seen.err, -ECANCELED));
    eddy_future_unref(f);
    eddy_loop_free(loop);
}

Test(futures, cancel_done_future_is_false, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_loop();
    eddy_future *f = eddy_future_new(loop);
    cr_assert(eq(int, eddy_future_set_error(f, -ENOENT), 0));
    cr_assert(not(eddy_future_cancel(f)));
    cr_assert(eq(int, eddy_future_result(f, NULL), -ENOENT));
    eddy_future_unref(f);
    eddy_loop_free(loop);
}

/* ---- reference counting ---------------------------------------------------- */

/* The creator drops its reference right after completing the future; the
 * pending done callback still gets a valid future (Valgrind/ASan check). */
Test(futures, callback_keeps_future_alive, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_loop();
    eddy_future *f = eddy_future_new(loop);
    struct done_seen seen = {0};
    cr_assert(eq(int, eddy_future_on_done(f, done_cb, &seen), 0));
    cr_assert(eq(int, eddy_future_set_result(f, 31), 0));
    eddy_future_unref(f);
    cr_assert(eq(int, eddy_loop_run(loop), 0));
    cr_assert(eq(int, seen.runs, 1));
    cr_assert(eq(int, seen.err, 0));
    cr_assert(eq(iptr, seen.value, 31));
    eddy_loop_free(loop);
}

/* The same while the future is still pending when the creator lets go. */
Test(futures, callback_keeps_pending_future_alive, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_virtual_loop();
    eddy_future *f = eddy_future_new(loop);
    struct done_seen seen = {0};
    cr_assert(eq(int, eddy_future_on_done(f, done_cb, &seen), 0));
    set_result_later(loop, f, NS_PER_MS, 8);
    eddy_future_unref(f);
    cr_assert(eq(int, eddy_loop_run(loop), 0));
    cr_assert(eq(int, seen.runs, 1));
    cr_assert(eq(iptr, seen.value, 8));
    eddy_loop_free(loop);
}

Test(futures, ref_and_unref, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_loop();
    eddy_future *f = eddy_future_new(loop);
    eddy_future_ref(f);
    eddy_future_ref(f);
    eddy_future_unref(f);
    eddy_future_unref(f);
    /* Still the creator's reference: usable. */
    cr_assert(eq(int, eddy_future_set_result(f, 3), 0));
    intptr_t v = 0;
    cr_assert(eq(int, eddy_future_result(f, &v), 0));
    cr_assert(eq(iptr, v, 3));
    eddy_future_unref(f);
    eddy_loop_free(loop);
}

/* Pending futures whose only references are their own done callbacks can
 * never complete: freeing the loop releases them (LeakSanitizer, in the ASan
 * build, fails the suite if it does not), without running the callbacks. */
Test(futures, loop_free_releases_pending_futures_with_callbacks, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_loop();
    struct done_seen seen = {0};
    for (int i = 0; i < 1000; i++) {
        eddy_future *f = eddy_future_new(loop);
        cr_assert(ne(ptr, f, NULL));
        cr_assert(eq(int, eddy_future_on_done(f, done_cb, &seen), 0));
        cr_assert(eq(int, eddy_future_on_done(f, done_cb, &seen), 0));
        eddy_future_unref(f);
    }
    cr_assert(eq(int, eddy_loop_run(loop), 0), "nothing keeps the loop alive");
    eddy_loop_free(loop);
    cr_assert(eq(int, seen.runs, 0));
}

/* A future its creator still holds outlives the loop: its callbacks are gone
 * (they never run), and completing and dropping it touch no freed memory. */
Test(futures, future_outlives_its_loop, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_loop();
    struct done_seen seen = {0};
    eddy_future *f = eddy_future_new(loop);
    cr_assert(ne(ptr, f, NULL));
    cr_assert(eq(int, eddy_future_on_done(f, done_cb, &seen), 0));
    eddy_loop_free(loop);
    cr_assert(not(eddy_future_done(f)));
    cr_assert(eq(int, eddy_future_on_done(f, done_cb, &seen), -EINVAL), "no loop to run it");
    cr_assert(eq(int, eddy_future_set_result(f, 5), 0));
    intptr_t v = 0;
    cr_assert(eq(int, eddy_future_result(f, &v), 0));
    cr_assert(eq(iptr, v, 5));
    eddy_future_unref(f);
    cr_assert(eq(int, seen.runs, 0));
}

/* ---- awaiting ------------------------------------------------------------------ */

struct await_probe {
    eddy_future *future;
    int err;
    intptr_t value;
    int64_t elapsed;
};

static intptr_t await_task(void *arg)
{
    struct await_probe *p = arg;
    int64_t start = loop_now();
    p->value = -1;
    p->err = eddy_await(p->future, &p->value);
    p->elapsed = loop_now() - start;
    return p->err < 0 ? p->err : p->value;
}

Test(futures, await_value_set_by_timer, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_virtual_loop();
    eddy_future *f = eddy_future_new(loop);
    set_result_later(loop, f, 15 * NS_PER_MS, 4242);
    struct await_probe p = {f, 1, 0, 0};
    intptr_t result = 0;
    cr_assert(eq(int, run_task(loop, await_task, &p, &result), 0));
    cr_assert(eq(int, p.err, 0));
    cr_assert(eq(iptr, p.value, 4242));
    cr_assert(eq(iptr, result, 4242));
    cr_assert(eq(i64, p.elapsed, 15 * NS_PER_MS));
    eddy_future_unref(f);
    eddy_loop_free(loop);
}

Test(futures, await_error, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_virtual_loop();
    eddy_future *f = eddy_future_new(loop);
    set_error_later(loop, f, NS_PER_MS, -EPIPE);
    struct await_probe p = {f, 1, 0, 0};
    intptr_t result = 0;
    cr_assert(eq(int, run_task(loop, await_task, &p, &result), -EPIPE));
    cr_assert(eq(int, p.err, -EPIPE));
    eddy_future_unref(f);
    eddy_loop_free(loop);
}

Test(futures, await_done_future_returns_at_once, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_virtual_loop();
    eddy_future *f = eddy_future_new(loop);
    cr_assert(eq(int, eddy_future_set_result(f, 17), 0));
    struct await_probe p = {f, 1, 0, 0};
    intptr_t result = 0;
    cr_assert(eq(int, run_task(loop, await_task, &p, &result), 0));
    cr_assert(eq(iptr, p.value, 17));
    cr_assert(eq(i64, p.elapsed, 0));
    eddy_future_unref(f);
    eddy_loop_free(loop);
}

Test(futures, many_tasks_await_one_future, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_virtual_loop();
    eddy_future *f = eddy_future_new(loop);
    enum { N = 10 };
    struct await_probe p[N];
    eddy_task *t[N];
    for (int i = 0; i < N; i++) {
        p[i] = (struct await_probe){f, 1, 0, 0};
        t[i] = eddy_spawn(loop, await_task, &p[i]);
        cr_assert(ne(ptr, t[i], NULL));
    }
    set_result_later(loop, f, 3 * NS_PER_MS, 99);
    cr_assert(eq(int, eddy_loop_run(loop), 0));
    for (int i = 0; i < N; i++) {
        intptr_t v = 0;
        cr_assert(eq(int, eddy_task_join(t[i], &v), 0));
        cr_assert(eq(iptr, v, 99));
        cr_assert(eq(i64, p[i].elapsed, 3 * NS_PER_MS));
    }
    eddy_future_unref(f);
    eddy_loop_free(loop);
}

static intptr_t new_future_in_task(void *arg)
{
    eddy_future *f = eddy_future_new(NULL); /* the current loop */
    if (!f) return -ENOMEM;
    set_result_later(NULL, f, NS_PER_MS, 12);
    intptr_t v = 0;
    int err = eddy_await(f, &v);
    eddy_future_unref(f);
    return err < 0 ? err : v;
}

Test(futures, new_with_null_loop_uses_current, .timeout = TEST_TIMEOUT)
{
    intptr_t result = 0;
    cr_assert(eq(int, run_virtual(new_future_in_task, NULL, &result), 0));
    cr_assert(eq(iptr, result, 12));
}

/* A task's future: done once the task ended, with its outcome. */
Test(futures, task_future_outcome, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_virtual_loop();
    eddy_task *t = eddy_spawn(loop, task_sleep_arg, (void *)(intptr_t)(2 * NS_PER_MS));
    cr_assert(ne(ptr, t, NULL));
    eddy_future *f = eddy_task_future(t);
    cr_assert(ne(ptr, f, NULL));
    struct done_seen seen = {0};
    cr_assert(eq(int, eddy_future_on_done(f, done_cb, &seen), 0));
    cr_assert(not(eddy_future_done(f)));
    cr_assert(eq(int, eddy_future_result(f, NULL), -EAGAIN));
    cr_assert(eq(int, eddy_loop_run(loop), 0));
    cr_assert(eddy_future_done(f));
    cr_assert(eq(int, seen.runs, 1));
    cr_assert(eq(int, seen.err, 0));
    cr_assert(eq(iptr, seen.value, 2 * NS_PER_MS));
    intptr_t v = 0;
    cr_assert(eq(int, eddy_task_join(t, &v), 0));
    cr_assert(eq(iptr, v, 2 * NS_PER_MS));
    eddy_loop_free(loop);
}
