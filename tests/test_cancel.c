/* SPDX-License-Identifier: MIT */
/* Cancellation: sticky, shields, before start, while awaiting a future, with
 * an op in flight on a pool thread, and on tasks already done. */
#include <pthread.h>
#include <unistd.h>

#include "helpers.h"

/* ---- sticky ------------------------------------------------------------------ */

struct sticky {
    eddy_future *future; /* pending, awaited after the cancellation */
    int first;           /* the sleep that was cancelled */
    int sleep_after, yield_after, sleep0_after, await_after;
    int64_t cancelled_at, ended_at;
};

static intptr_t sticky_task(void *arg)
{
    struct sticky *s = arg;
    s->first = eddy_sleep(NS_PER_HOUR);
    s->cancelled_at = loop_now();
    s->sleep_after = eddy_sleep(NS_PER_SEC);
    s->yield_after = eddy_yield();
    s->sleep0_after = eddy_sleep(0);
    s->await_after = eddy_await(s->future, NULL);
    s->ended_at = loop_now();
    return s->first;
}

Test(cancel, is_sticky, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_virtual_loop();
    struct sticky s = {.future = eddy_future_new(loop)};
    cr_assert(ne(ptr, s.future, NULL));
    int64_t start = eddy_now(loop);
    eddy_task *t = eddy_spawn(loop, sticky_task, &s);
    cr_assert(ne(ptr, t, NULL));
    cancel_task_later(loop, t, 10 * NS_PER_MS);
    cr_assert(eq(int, eddy_loop_run(loop), 0));
    cr_assert(eq(int, s.first, -ECANCELED));
    cr_assert(eq(i64, s.cancelled_at - start, 10 * NS_PER_MS),
              "the cancelled sleep did not end at once");
    cr_assert(eq(int, s.sleep_after, -ECANCELED));
    cr_assert(eq(int, s.yield_after, -ECANCELED));
    cr_assert(eq(int, s.sleep0_after, -ECANCELED));
    cr_assert(eq(int, s.await_after, -ECANCELED));
    cr_assert(eq(i64, s.ended_at, s.cancelled_at), "an await after the cancellation suspended");
    /* Awaiting a future from a cancelled task cancels the future. */
    cr_assert(eddy_future_done(s.future));
    cr_assert(eq(int, eddy_future_result(s.future, NULL), -ECANCELED));
    cr_assert(eq(int, eddy_task_join(t, NULL), -ECANCELED));
    cr_assert(eq(i64, eddy_now(loop) - start, 10 * NS_PER_MS));
    eddy_future_unref(s.future);
    eddy_loop_free(loop);
}

static intptr_t cancel_self(void *arg)
{
    int *after = arg;
    if (!eddy_task_cancel(eddy_task_current())) return -EPROTO;
    after[0] = eddy_yield();
    after[1] = eddy_sleep(NS_PER_MS);
    return 0; /* it may still end with a result */
}

Test(cancel, task_cancels_itself, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_virtual_loop();
    int after[2] = {1, 1};
    intptr_t v = -1;
    cr_assert(eq(int, run_task(loop, cancel_self, after, &v), 0));
    cr_assert(eq(iptr, v, 0));
    cr_assert(eq(int, after[0], -ECANCELED));
    cr_assert(eq(int, after[1], -ECANCELED));
    eddy_loop_free(loop);
}

/* ---- shields ------------------------------------------------------------------ */

struct shielded {
    int r_inside_long, r_inside_next, r_nested, r_after_inner_end, r_after;
    int64_t t_inside_long, t_after;
};

static intptr_t shield_task(void *arg)
{
    struct shielded *s = arg;
    int64_t start = loop_now();
    eddy_shield_begin();
    s->r_inside_long = eddy_sleep(100 * NS_PER_MS); /* cancelled at 10 ms */
    s->t_inside_long = loop_now() - start;
    s->r_inside_next = eddy_sleep(10 * NS_PER_MS);
    eddy_shield_begin();
    s->r_nested = eddy_yield();
    eddy_shield_end();
    s->r_after_inner_end = eddy_sleep(5 * NS_PER_MS); /* still in the outer shield */
    eddy_shield_end();
    int64_t before = loop_now();
    s->r_after = eddy_sleep(NS_PER_HOUR);
    s->t_after = loop_now() - before;
    return 0;
}

Test(cancel, shield_defers_cancellation, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_virtual_loop();
    struct shielded s;
    memset(&s, 0x55, sizeof(s));
    eddy_task *t = eddy_spawn(loop, shield_task, &s);
    cr_assert(ne(ptr, t, NULL));
    cancel_task_later(loop, t, 10 * NS_PER_MS);
    cr_assert(eq(int, eddy_loop_run(loop), 0));
    cr_assert(eq(int, s.r_inside_long, 0));
    cr_assert(eq(i64, s.t_inside_long, 100 * NS_PER_MS), "a shielded sleep was cut short");
    cr_assert(eq(int, s.r_inside_next, 0));
    cr_assert(eq(int, s.r_nested, 0));
    cr_assert(eq(int, s.r_after_inner_end, 0), "the cancellation arrived inside the outer shield");
    cr_assert(eq(int, s.r_after, -ECANCELED));
    cr_assert(eq(i64, s.t_after, 0));
    cr_assert(eq(int, eddy_task_join(t, NULL), 0));
    eddy_loop_free(loop);
}

struct cleanup {
    int first, cleanup, after;
    int64_t cleanup_took;
};

static intptr_t cleanup_task(void *arg)
{
    struct cleanup *c = arg;
    c->first = eddy_sleep(NS_PER_HOUR);
    eddy_shield_begin();
    int64_t start = loop_now();
    c->cleanup = eddy_sleep(20 * NS_PER_MS);
    c->cleanup_took = loop_now() - start;
    eddy_shield_end();
    c->after = eddy_yield();
    return c->first;
}

Test(cancel, cleanup_awaits_inside_shield_after_cancellation, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_virtual_loop();
    struct cleanup c = {1, 1, 1, 0};
    eddy_task *t = eddy_spawn(loop, cleanup_task, &c);
    cr_assert(ne(ptr, t, NULL));
    cancel_task_later(loop, t, NS_PER_MS);
    cr_assert(eq(int, eddy_loop_run(loop), 0));
    cr_assert(eq(int, c.first, -ECANCELED));
    cr_assert(eq(int, c.cleanup, 0));
    cr_assert(eq(i64, c.cleanup_took, 20 * NS_PER_MS));
    cr_assert(eq(int, c.after, -ECANCELED));
    cr_assert(eq(int, eddy_task_join(t, NULL), -ECANCELED));
    eddy_loop_free(loop);
}

/* ---- before start ----------------------------------------------------------------- */

static intptr_t set_flag(void *arg)
{
    *(int *)arg = 1;
    return 0;
}

Test(cancel, before_start_never_runs, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_virtual_loop();
    int ran = 0;
    eddy_task *t = eddy_spawn(loop, set_flag, &ran);
    cr_assert(ne(ptr, t, NULL));
    cr_assert(eddy_task_cancel(t));
    cr_assert(eddy_task_cancel(t), "a second cancel of a live task returned false");
    cr_assert(eq(int, eddy_loop_run(loop), 0));
    cr_assert(eq(int, ran, 0), "the function of a task cancelled before start ran");
    cr_assert(eddy_future_done(eddy_task_future(t)));
    cr_assert(eq(int, eddy_task_join(t, NULL), -ECANCELED));
    eddy_loop_free(loop);
}

static intptr_t spawn_and_cancel(void *arg)
{
    int *ran = arg;
    eddy_task *t = eddy_spawn(NULL, set_flag, ran);
    if (!t) return -ENOMEM;
    if (!eddy_task_cancel(t)) return -EPROTO;
    int err = eddy_task_join(t, NULL);
    return err == -ECANCELED ? 1 : -EPROTO;
}

Test(cancel, before_start_from_a_task, .timeout = TEST_TIMEOUT)
{
    int ran = 0;
    intptr_t v = 0;
    cr_assert(eq(int, run_virtual(spawn_and_cancel, &ran, &v), 0));
    cr_assert(eq(iptr, v, 1), "join of a task cancelled before start did not give -ECANCELED");
    cr_assert(eq(int, ran, 0));
}

/* ---- while awaiting ------------------------------------------------------------- */

struct awaiting {
    eddy_future *future;
    int err;
    int64_t at;
};

static intptr_t await_forever(void *arg)
{
    struct awaiting *a = arg;
    a->err = eddy_await(a->future, NULL);
    a->at = loop_now();
    return a->err;
}

Test(cancel, while_awaiting_future, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_virtual_loop();
    struct awaiting a = {eddy_future_new(loop), 1, 0};
    cr_assert(ne(ptr, a.future, NULL));
    int64_t start = eddy_now(loop);
    eddy_task *t = eddy_spawn(loop, await_forever, &a);
    cr_assert(ne(ptr, t, NULL));
    cancel_task_later(loop, t, 7 * NS_PER_MS);
    cr_assert(eq(int, eddy_loop_run(loop), 0));
    cr_assert(eq(int, a.err, -ECANCELED));
    cr_assert(eq(i64, a.at - start, 7 * NS_PER_MS));
    cr_assert(eddy_future_done(a.future), "the awaited future was not cancelled");
    cr_assert(eq(int, eddy_future_result(a.future, NULL), -ECANCELED));
    cr_assert(eq(int, eddy_task_join(t, NULL), -ECANCELED));
    eddy_future_unref(a.future);
    eddy_loop_free(loop);
}

/* Cancelling through the task's future is eddy_task_cancel. */
Test(cancel, through_task_future, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_virtual_loop();
    struct awaiting a = {eddy_future_new(loop), 1, 0};
    eddy_task *t = eddy_spawn(loop, await_forever, &a);
    cr_assert(ne(ptr, t, NULL));
    struct later *l = later_new(LATER_CANCEL_FUTURE);
    l->future = eddy_task_future(t);
    later_arm(loop, 3 * NS_PER_MS, l);
    cr_assert(eq(int, eddy_loop_run(loop), 0));
    cr_assert(eq(int, a.err, -ECANCELED));
    cr_assert(eq(int, eddy_future_result(a.future, NULL), -ECANCELED));
    cr_assert(eq(int, eddy_task_join(t, NULL), -ECANCELED));
    eddy_future_unref(a.future);
    eddy_loop_free(loop);
}

struct joiner {
    eddy_task *child;
    int child_sleep;
    int join_err;
};

static intptr_t sleeping_child(void *arg)
{
    struct joiner *j = arg;
    j->child_sleep = eddy_sleep(NS_PER_HOUR);
    return j->child_sleep;
}

static intptr_t joining_parent(void *arg)
{
    struct joiner *j = arg;
    j->child = eddy_spawn(NULL, sleeping_child, j);
    if (!j->child) return -ENOMEM;
    j->join_err = eddy_task_join(j->child, NULL);
    return j->join_err;
}

/* As asyncio's await: a task cancelled while joining another cancels it. */
Test(cancel, while_joining_cancels_the_joined_task, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_virtual_loop();
    struct joiner j = {NULL, 1, 1};
    eddy_task *parent = eddy_spawn(loop, joining_parent, &j);
    cr_assert(ne(ptr, parent, NULL));
    cancel_task_later(loop, parent, 5 * NS_PER_MS);
    int64_t start = eddy_now(loop);
    cr_assert(eq(int, eddy_loop_run(loop), 0));
    cr_assert(eq(int, j.join_err, -ECANCELED));
    cr_assert(eq(int, j.child_sleep, -ECANCELED));
    cr_assert(eq(i64, eddy_now(loop) - start, 5 * NS_PER_MS));
    cr_assert(eq(int, eddy_task_join(parent, NULL), -ECANCELED));
    eddy_loop_free(loop);
}

/* ---- done tasks ------------------------------------------------------------------ */

Test(cancel, done_task_returns_false, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_virtual_loop();
    eddy_task *t = eddy_spawn(loop, task_return_arg, (void *)(intptr_t)8);
    cr_assert(ne(ptr, t, NULL));
    cr_assert(eq(int, eddy_loop_run(loop), 0));
    cr_assert(not(eddy_task_cancel(t)));
    cr_assert(not(eddy_future_cancel(eddy_task_future(t))));
    intptr_t v = 0;
    cr_assert(eq(int, eddy_task_join(t, &v), 0), "cancelling a done task changed its outcome");
    cr_assert(eq(iptr, v, 8));
    eddy_loop_free(loop);
}

/* ---- an op in flight on a pool thread ------------------------------------------- */

struct worker_state {
    int started;  /* atomic */
    int finished; /* atomic */
    char *buffer; /* in the cancelled task's frame */
};

static intptr_t slow_worker(void *arg)
{
    struct worker_state *w = arg;
    __atomic_store_n(&w->started, 1, __ATOMIC_SEQ_CST);
    usleep(50 * 1000);
    memset(w->buffer, 'w', 64);
    __atomic_store_n(&w->finished, 1, __ATOMIC_SEQ_CST);
    return 64;
}

struct offloader {
    struct worker_state *worker;
    int err;
    int finished_at_return;
    int after;
    char seen;
};

static intptr_t offload_task(void *arg)
{
    struct offloader *o = arg;
    char buffer[64] = {0};
    o->worker->buffer = buffer;
    intptr_t result = 0;
    o->err = eddy_to_thread(slow_worker, o->worker, &result);
    o->finished_at_return = __atomic_load_n(&o->worker->finished, __ATOMIC_SEQ_CST);
    o->seen = buffer[63];
    o->after = eddy_yield();
    /* The frame (and buffer) is popped here. */
    return o->err;
}

struct canceller {
    eddy_task *target;
    struct worker_state *worker;
    int cancelled;
};

static intptr_t canceller_task(void *arg)
{
    struct canceller *c = arg;
    while (!__atomic_load_n(&c->worker->started, __ATOMIC_SEQ_CST)) {
        int err = eddy_sleep(NS_PER_MS);
        if (err < 0) return err;
    }
    c->cancelled = eddy_task_cancel(c->target);
    return 0;
}

Test(cancel, while_to_thread_in_flight_waits_for_worker, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_loop();
    struct worker_state w = {0, 0, NULL};
    struct offloader o = {&w, 1, 0, 1, 0};
    eddy_task *t = eddy_spawn(loop, offload_task, &o);
    cr_assert(ne(ptr, t, NULL));
    struct canceller c = {t, &w, 0};
    eddy_task *ct = eddy_spawn(loop, canceller_task, &c);
    cr_assert(ne(ptr, ct, NULL));
    cr_assert(eq(int, eddy_loop_run(loop), 0));
    cr_assert(eq(int, eddy_task_join(ct, NULL), 0));
    cr_assert(c.cancelled, "the task had ended before it was cancelled");
    cr_assert(eq(int, o.err, -ECANCELED));
    cr_assert(
        eq(int, o.finished_at_return, 1),
        "eddy_to_thread returned while the worker still ran (it could write into a dead frame)");
    cr_assert(eq(chr, o.seen, 'w'));
    cr_assert(eq(int, o.after, -ECANCELED));
    cr_assert(eq(int, eddy_task_join(t, NULL), -ECANCELED));
    eddy_loop_free(loop);
}

static intptr_t quick_worker(void *arg)
{
    return 3 * (intptr_t)arg;
}

static intptr_t offload_ok(void *arg)
{
    intptr_t result = 0;
    int err = eddy_to_thread(quick_worker, (void *)(intptr_t)14, &result);
    return err < 0 ? err : result;
}

Test(cancel, to_thread_returns_worker_result, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_loop();
    intptr_t v = 0;
    cr_assert(eq(int, run_task(loop, offload_ok, NULL, &v), 0));
    cr_assert(eq(iptr, v, 42));
    eddy_loop_free(loop);
}

static intptr_t offload_cancelled_first(void *arg)
{
    if (!eddy_task_cancel(eddy_task_current())) return -EPROTO;
    intptr_t result = 0;
    return eddy_to_thread(set_flag, arg, &result);
}

Test(cancel, to_thread_in_cancelled_task_never_starts, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_loop();
    int ran = 0;
    intptr_t v = 0;
    cr_assert(eq(int, run_task(loop, offload_cancelled_first, &ran, &v), -ECANCELED));
    cr_assert(eq(int, ran, 0));
    eddy_loop_free(loop);
}
