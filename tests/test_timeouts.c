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

/* ---- timeout scopes (eddy_timeout_*) -------------------------------------------- */

#define MS NS_PER_MS

/* What one scope saw: the awaits inside it and how it ended. */
struct scope_run {
    int first;      /* the first await inside the scope */
    int second;     /* an await right after it, still inside */
    int ended;      /* eddy_timeout_end */
    int after;      /* an await once the scope has ended */
    bool expired;   /* eddy_timeout_expired after the end */
    int64_t cut_at; /* when the first await returned, from the task's start */
};

static intptr_t one_scope_task(void *arg)
{
    struct scope_run *r = arg;
    int64_t start = loop_now();
    eddy_timeout scope;
    cr_assert(eq(int, eddy_timeout_begin(&scope, 50 * MS), 0));
    r->first = eddy_sleep(NS_PER_HOUR);
    r->cut_at = loop_now() - start;
    r->second = eddy_sleep(MS);
    r->ended = eddy_timeout_end(&scope);
    r->expired = eddy_timeout_expired(&scope);
    r->after = eddy_sleep(MS);
    return 0;
}

Test(timeout_scopes, expiry_cancels_awaits_until_the_end, .timeout = TEST_TIMEOUT)
{
    struct scope_run r = {1, 1, 1, 1, false, 0};
    intptr_t v;
    cr_assert(eq(int, run_virtual(one_scope_task, &r, &v), 0));
    cr_assert(eq(int, r.first, -ECANCELED));
    cr_assert(eq(i64, r.cut_at, 50 * MS));
    cr_assert(eq(int, r.second, -ECANCELED), "the expiry is sticky inside the scope");
    cr_assert(eq(int, r.ended, -ETIMEDOUT));
    cr_assert(r.expired);
    cr_assert(eq(int, r.after, 0), "the expiry outlived its scope");
}

static intptr_t scope_in_time_task(void *arg)
{
    int64_t *elapsed = arg;
    int64_t start = loop_now();
    eddy_timeout scope;
    cr_assert(eq(int, eddy_timeout_begin(&scope, 100 * MS), 0));
    cr_assert(eq(int, eddy_sleep(10 * MS), 0));
    cr_assert(not(eddy_timeout_expired(&scope)));
    int ended = eddy_timeout_end(&scope);
    *elapsed = loop_now() - start;
    return ended;
}

Test(timeout_scopes, block_done_in_time_ends_with_zero, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_virtual_loop();
    int64_t elapsed = 0, start = eddy_now(loop);
    intptr_t v = 1;
    cr_assert(eq(int, run_task(loop, scope_in_time_task, &elapsed, &v), 0));
    cr_assert(eq(iptr, v, 0));
    cr_assert(eq(i64, elapsed, 10 * MS));
    cr_assert(eq(i64, eddy_now(loop) - start, 10 * MS), "the scope's timer outlived it");
    eddy_loop_free(loop);
}

/* Three scopes nested, with the given deadlines (outer first); each end's
 * result, innermost first, and when the innermost await was cut short. */
struct nested {
    int64_t deadlines[3];
    int ends[3];
    int64_t cut_at;
};

static intptr_t nested_task(void *arg)
{
    struct nested *n = arg;
    int64_t start = loop_now();
    eddy_timeout scopes[3];
    for (int i = 0; i < 3; i++)
        cr_assert(eq(int, eddy_timeout_begin(&scopes[i], n->deadlines[i]), 0));
    cr_assert(eq(int, eddy_sleep(NS_PER_HOUR), -ECANCELED));
    n->cut_at = loop_now() - start;
    for (int i = 2; i >= 0; i--)
        n->ends[2 - i] = eddy_timeout_end(&scopes[i]);
    return 0;
}

static void run_nested(int64_t outer, int64_t middle, int64_t inner, int e_inner, int e_middle,
                       int e_outer, int64_t cut_at)
{
    struct nested n = {.deadlines = {outer, middle, inner}};
    intptr_t v;
    cr_assert(eq(int, run_virtual(nested_task, &n, &v), 0));
    cr_assert(eq(i64, n.cut_at, cut_at));
    cr_assert(eq(int, n.ends[0], e_inner), "inner scope");
    cr_assert(eq(int, n.ends[1], e_middle), "middle scope");
    cr_assert(eq(int, n.ends[2], e_outer), "outer scope");
}

Test(timeout_scopes, nested_three_deep_inner_fires, .timeout = TEST_TIMEOUT)
{
    run_nested(30 * MS, 20 * MS, 10 * MS, -ETIMEDOUT, 0, 0, 10 * MS);
}

Test(timeout_scopes, nested_three_deep_middle_fires, .timeout = TEST_TIMEOUT)
{
    run_nested(30 * MS, 10 * MS, 20 * MS, -ECANCELED, -ETIMEDOUT, 0, 10 * MS);
}

Test(timeout_scopes, nested_three_deep_outer_fires, .timeout = TEST_TIMEOUT)
{
    run_nested(10 * MS, 20 * MS, 30 * MS, -ECANCELED, -ECANCELED, -ETIMEDOUT, 10 * MS);
}

/* asyncio's rule: equal deadlines resolve to the outermost scope. */
Test(timeout_scopes, nested_equal_deadlines_resolve_to_the_outermost, .timeout = TEST_TIMEOUT)
{
    run_nested(10 * MS, 10 * MS, 10 * MS, -ECANCELED, -ECANCELED, -ETIMEDOUT, 10 * MS);
}

/* The inner scope fired, then the outer one while the inner was still open. */
static intptr_t both_fire_task(void *arg)
{
    int *ends = arg;
    eddy_timeout outer, inner;
    cr_assert(eq(int, eddy_timeout_begin(&outer, 20 * MS), 0));
    cr_assert(eq(int, eddy_timeout_begin(&inner, 10 * MS), 0));
    cr_assert(eq(int, eddy_sleep(NS_PER_HOUR), -ECANCELED));
    eddy_shield_begin(); /* cleanup inside the inner scope, past the outer deadline */
    cr_assert(eq(int, eddy_sleep(15 * MS), 0));
    eddy_shield_end();
    ends[0] = eddy_timeout_end(&inner);
    ends[1] = eddy_timeout_end(&outer);
    return 0;
}

Test(timeout_scopes, outer_firing_while_inner_is_open_wins, .timeout = TEST_TIMEOUT)
{
    int ends[2] = {1, 1};
    intptr_t v;
    cr_assert(eq(int, run_virtual(both_fire_task, ends, &v), 0));
    cr_assert(eq(int, ends[0], -ECANCELED));
    cr_assert(eq(int, ends[1], -ETIMEDOUT));
}

/* ---- a real cancellation is never a timeout ---- */

struct cancelled_scope {
    int sleep;
    int ended;
    bool expired;
};

static intptr_t cancelled_scope_task(void *arg)
{
    struct cancelled_scope *c = arg;
    eddy_timeout scope;
    cr_assert(eq(int, eddy_timeout_begin(&scope, 10 * MS), 0));
    c->sleep = eddy_sleep(NS_PER_HOUR);
    eddy_shield_begin(); /* the task is cancelled here, after the deadline */
    eddy_sleep(20 * MS);
    eddy_shield_end();
    c->ended = eddy_timeout_end(&scope);
    c->expired = eddy_timeout_expired(&scope);
    return 0;
}

Test(timeout_scopes, cancel_before_the_deadline_is_ecanceled, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_virtual_loop();
    struct cancelled_scope c = {1, 1, true};
    eddy_task *t = eddy_spawn(loop, cancelled_scope_task, &c);
    cancel_task_later(loop, t, 5 * MS);
    cr_assert(eq(int, eddy_loop_run(loop), 0));
    cr_assert(eq(int, c.sleep, -ECANCELED));
    cr_assert(eq(int, c.ended, -ECANCELED));
    cr_assert(c.expired, "the deadline passed during the shielded cleanup");
    cr_assert(eq(int, eddy_task_join(t, NULL), 0));
    eddy_loop_free(loop);
}

Test(timeout_scopes, cancel_after_the_deadline_is_still_ecanceled, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_virtual_loop();
    struct cancelled_scope c = {1, 1, false};
    eddy_task *t = eddy_spawn(loop, cancelled_scope_task, &c);
    cancel_task_later(loop, t, 15 * MS);
    cr_assert(eq(int, eddy_loop_run(loop), 0));
    cr_assert(eq(int, c.sleep, -ECANCELED));
    cr_assert(c.expired);
    cr_assert(eq(int, c.ended, -ECANCELED));
    cr_assert(eq(int, eddy_task_join(t, NULL), 0));
    eddy_loop_free(loop);
}

/* ---- shields ---- */

static intptr_t shield_inside_scope_task(void *arg)
{
    int *r = arg;
    eddy_timeout scope;
    cr_assert(eq(int, eddy_timeout_begin(&scope, 10 * MS), 0));
    eddy_shield_begin();
    r[0] = eddy_sleep(20 * MS); /* the deadline passes meanwhile */
    eddy_shield_end();
    r[1] = eddy_yield();
    r[2] = eddy_timeout_end(&scope);
    return 0;
}

Test(timeout_scopes, shield_inside_a_scope_ignores_its_expiry, .timeout = TEST_TIMEOUT)
{
    int r[3] = {1, 1, 1};
    intptr_t v;
    cr_assert(eq(int, run_virtual(shield_inside_scope_task, r, &v), 0));
    cr_assert(eq(int, r[0], 0));
    cr_assert(eq(int, r[1], -ECANCELED), "the expiry is delivered after the shield");
    cr_assert(eq(int, r[2], -ETIMEDOUT));
}

/* Cleanup under a shield may still bound its own awaits with a scope. */
static intptr_t scope_inside_shield_task(void *arg)
{
    int *r = arg;
    eddy_shield_begin();
    eddy_timeout scope;
    cr_assert(eq(int, eddy_timeout_begin(&scope, 10 * MS), 0));
    r[0] = eddy_sleep(NS_PER_HOUR);
    r[1] = eddy_timeout_end(&scope);
    eddy_shield_end();
    return 0;
}

Test(timeout_scopes, scope_inside_a_shield_fires, .timeout = TEST_TIMEOUT)
{
    int r[2] = {1, 1};
    intptr_t v;
    cr_assert(eq(int, run_virtual(scope_inside_shield_task, r, &v), 0));
    cr_assert(eq(int, r[0], -ECANCELED));
    cr_assert(eq(int, r[1], -ETIMEDOUT));
}

/* ---- reschedule ---- */

static intptr_t reschedule_task(void *arg)
{
    int64_t *cut_at = arg;
    int64_t start = loop_now();
    eddy_timeout scope;
    cr_assert(eq(int, eddy_timeout_begin(&scope, -1), 0)); /* no deadline yet */
    cr_assert(eq(int, eddy_sleep(5 * MS), 0));
    cr_assert(eq(int, eddy_timeout_reschedule(&scope, eddy_now(NULL) + 10 * MS), 0));
    cr_assert(eq(int, eddy_sleep(5 * MS), 0));
    /* Pushed back: the first deadline no longer applies. */
    cr_assert(eq(int, eddy_timeout_reschedule(&scope, eddy_now(NULL) + 20 * MS), 0));
    cr_assert(eq(int, eddy_sleep(NS_PER_HOUR), -ECANCELED));
    *cut_at = loop_now() - start;
    cr_assert(eq(int, eddy_timeout_reschedule(&scope, eddy_now(NULL) + MS), -EALREADY));
    cr_assert(eq(int, eddy_timeout_end(&scope), -ETIMEDOUT));
    /* Removing the deadline. */
    cr_assert(eq(int, eddy_timeout_begin(&scope, 10 * MS), 0));
    cr_assert(eq(int, eddy_timeout_reschedule(&scope, -1), 0));
    cr_assert(eq(int, eddy_sleep(30 * MS), 0));
    /* A deadline in the past expires at the next await. */
    cr_assert(eq(int, eddy_timeout_reschedule(&scope, 0), 0));
    cr_assert(eq(int, eddy_sleep(NS_PER_HOUR), -ECANCELED));
    cr_assert(eq(int, eddy_timeout_end(&scope), -ETIMEDOUT));
    return 0;
}

Test(timeout_scopes, reschedule_moves_and_removes_the_deadline, .timeout = TEST_TIMEOUT)
{
    int64_t cut_at = 0;
    intptr_t v = 0;
    cr_assert(eq(int, run_virtual(reschedule_task, &cut_at, &v), 0));
    cr_assert(eq(i64, cut_at, 30 * MS));
}

/* ---- bad input ---- */

static intptr_t other_task_ends_scope(void *arg)
{
    return eddy_timeout_end(arg);
}

static intptr_t scope_misuse_task(void *arg)
{
    eddy_timeout outer, inner, never;
    memset(&never, 0, sizeof never);
    cr_assert(eq(int, eddy_timeout_begin(NULL, MS), -EINVAL));
    cr_assert(eq(int, eddy_timeout_end(NULL), -EINVAL));
    cr_assert(eq(int, eddy_timeout_reschedule(NULL, 0), -EINVAL));
    cr_assert(eq(int, eddy_timeout_end(&never), -EINVAL), "a scope never begun");
    cr_assert(not(eddy_timeout_expired(NULL)));
    cr_assert(eq(int, eddy_timeout_begin(&outer, 10 * MS), 0));
    cr_assert(eq(int, eddy_timeout_begin(&inner, 20 * MS), 0));
    cr_assert(eq(int, eddy_timeout_end(&outer), -EINVAL), "ended before the inner scope");
    eddy_task *other = eddy_spawn(NULL, other_task_ends_scope, &inner);
    cr_assert(eq(int, eddy_task_join(other, NULL), -EPERM), "another task ended this scope");
    cr_assert(eq(int, eddy_timeout_end(&inner), 0));
    cr_assert(eq(int, eddy_timeout_end(&inner), -EINVAL), "ended twice");
    cr_assert(eq(int, eddy_timeout_end(&outer), 0));
    /* A huge timeout saturates rather than wraps. */
    cr_assert(eq(int, eddy_timeout_begin(&outer, INT64_MAX), 0));
    cr_assert(eq(int, eddy_sleep(MS), 0));
    cr_assert(eq(int, eddy_timeout_end(&outer), 0));
    return 0;
}

Test(timeout_scopes, bad_input, .timeout = TEST_TIMEOUT)
{
    eddy_timeout scope;
    cr_assert(eq(int, eddy_timeout_begin(&scope, MS), -EPERM), "outside a task");
    intptr_t v;
    cr_assert(eq(int, run_virtual(scope_misuse_task, NULL, &v), 0));
}

/* A task that returns inside a scope leaves no timer behind that points into
 * its (reused) stack. */
static intptr_t abandon_scope_task(void *arg)
{
    eddy_timeout scope;
    cr_assert(eq(int, eddy_timeout_begin(&scope, 10 * MS), 0));
    return 0;
}

static intptr_t sleeper_after_abandon(void *arg)
{
    /* Runs on the stack the first task gave back. */
    char scribble[512];
    memset(scribble, 0xa5, sizeof scribble);
    int err = eddy_sleep(30 * MS);
    return err + scribble[7] - (char)0xa5;
}

Test(timeout_scopes, task_ending_inside_a_scope_leaves_no_timer, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_virtual_loop();
    int64_t start = eddy_now(loop);
    intptr_t v = 1;
    cr_assert(eq(int, run_task(loop, abandon_scope_task, NULL, &v), 0));
    cr_assert(eq(i64, eddy_now(loop) - start, 0), "the loop waited for an abandoned deadline");
    cr_assert(eq(int, run_task(loop, sleeper_after_abandon, NULL, &v), 0));
    cr_assert(eq(iptr, v, 0));
    eddy_loop_free(loop);
}

/* ---- eddy_await_timeout inside another task's eddy_await_timeout ---- */

static intptr_t inner_wait_for_task(void *arg)
{
    eddy_future *f = arg;
    intptr_t v = 0;
    return eddy_await_timeout(f, 10 * MS, &v);
}

static intptr_t outer_wait_for_task(void *arg)
{
    eddy_future *f = arg;
    eddy_task *b = eddy_spawn(NULL, inner_wait_for_task, f);
    intptr_t v = 0;
    int err = eddy_await_timeout(eddy_task_future(b), 10 * MS, &v);
    cr_assert(eq(int, err, -ETIMEDOUT));
    cr_assert(eq(int, eddy_task_join(b, NULL), -ECANCELED), "the inner wait_for timed out");
    return 0;
}

/* asyncio: the inner wait_for sees the outer one's cancellation, so the inner
 * task ends cancelled rather than timed out with its own deadline. */
Test(timeout_scopes, wait_for_inside_wait_for_with_the_same_deadline, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_virtual_loop();
    eddy_future *f = eddy_future_new(loop);
    intptr_t v = 0;
    cr_assert(eq(int, run_task(loop, outer_wait_for_task, f, &v), 0));
    cr_assert(eq(iptr, v, 0));
    eddy_future_unref(f);
    eddy_loop_free(loop);
}

/* eddy_now(NULL) is the current loop's clock (deadlines computed from it fire). */
static intptr_t now_null_task(void *arg)
{
    cr_assert(eq(i64, eddy_now(NULL), eddy_now(eddy_loop_current())));
    eddy_timeout scope;
    cr_assert(eq(int, eddy_timeout_begin(&scope, -1), 0));
    cr_assert(eq(int, eddy_timeout_reschedule(&scope, eddy_now(NULL) + 5 * MS), 0));
    cr_assert(eq(int, eddy_sleep(NS_PER_HOUR), -ECANCELED));
    cr_assert(eq(int, eddy_timeout_end(&scope), -ETIMEDOUT));
    return 0;
}

Test(timeout_scopes, now_null_is_the_current_loop, .timeout = TEST_TIMEOUT)
{
    cr_assert(eq(i64, eddy_now(NULL), -EINVAL), "no loop on this thread");
    intptr_t v = 0;
    cr_assert(eq(int, run_virtual(now_null_task, NULL, &v), 0));
}

/* ---- a scope over socket calls, on each backend's own I/O ---- */

struct scoped_recv {
    ssize_t cut;    /* the recv the deadline cut short */
    int ended;      /* its scope's end */
    ssize_t later;  /* a recv after the scope, once the peer has sent */
    int64_t cut_ns; /* wall time the first recv took */
    char byte;
};

static intptr_t scoped_recv_task(void *arg)
{
    struct scoped_recv *r = arg;
    eddy_sock *listener = NULL, *client = NULL, *server = NULL;
    cr_assert(eq(int, eddy_tcp_listen(&listener, "127.0.0.1", 0, 0), 0));
    cr_assert(
        eq(int, eddy_tcp_connect(&client, "127.0.0.1", (uint16_t)eddy_sock_port(listener)), 0));
    cr_assert(eq(int, eddy_accept(listener, &server), 0));
    eddy_timeout scope;
    cr_assert(eq(int, eddy_timeout_begin(&scope, 50 * MS), 0));
    int64_t start = wall_ns();
    r->cut = eddy_recv(server, &r->byte, 1);
    r->cut_ns = wall_ns() - start;
    r->ended = eddy_timeout_end(&scope);
    /* The connection is intact: a byte sent now is the next one received. */
    cr_assert(eq(sz, (size_t)eddy_send(client, "x", 1), 1));
    r->later = eddy_recv(server, &r->byte, 1);
    eddy_sock_close(client);
    eddy_sock_close(server);
    eddy_sock_close(listener);
    return 0;
}

Test(timeout_scopes, deadline_cuts_a_recv_short, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_loop();
    struct scoped_recv r = {1, 1, 0, 0, 0};
    intptr_t v;
    cr_assert(eq(int, run_task(loop, scoped_recv_task, &r, &v), 0));
    cr_assert(eq(sz, (size_t)r.cut, (size_t)-ECANCELED));
    cr_assert(eq(int, r.ended, -ETIMEDOUT));
    cr_assert(ge(i64, r.cut_ns, 45 * MS));
    cr_assert(lt(i64, r.cut_ns, 5 * NS_PER_SEC));
    cr_assert(eq(sz, (size_t)r.later, 1));
    cr_assert(eq(chr, r.byte, 'x'));
    eddy_loop_free(loop);
}
