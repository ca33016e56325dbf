/* SPDX-License-Identifier: MIT */
/* eddy_call_soon_threadsafe: delivery from many threads, exactly once and in
 * each thread's order, and prompt wake-ups of a loop blocked in its backend. */
#include <pthread.h>
#include <unistd.h>

#include "helpers.h"

#define THREADS 4
#define CALLS   10000

struct delivery;

struct call {
    struct delivery *d;
    int thread;
    int index;
};

struct delivery {
    eddy_loop *loop;
    eddy_future *all_delivered;
    struct call calls[THREADS][CALLS];
    int seen[THREADS][CALLS];
    int last[THREADS];
    int count;
    int out_of_order;
    int post_errors; /* atomic */
    pthread_t threads[THREADS];
    int thread_index[THREADS];
};

static void delivered_cb(void *arg)
{
    struct call *c = arg;
    struct delivery *d = c->d;
    d->seen[c->thread][c->index]++;
    if (c->index <= d->last[c->thread]) d->out_of_order++;
    d->last[c->thread] = c->index;
    if (++d->count == THREADS * CALLS)
        cr_expect(eq(int, eddy_future_set_result(d->all_delivered, d->count), 0));
}

struct poster {
    struct delivery *d;
    int thread;
};

static struct poster posters[THREADS];

static void *post_calls(void *arg)
{
    struct poster *p = arg;
    struct delivery *d = p->d;
    for (int i = 0; i < CALLS; i++) {
        struct call *c = &d->calls[p->thread][i];
        if (eddy_call_soon_threadsafe(d->loop, delivered_cb, c) != 0)
            __atomic_add_fetch(&d->post_errors, 1, __ATOMIC_SEQ_CST);
        if (i % 1000 == 0) sched_yield();
    }
    return NULL;
}

static intptr_t receive_all(void *arg)
{
    struct delivery *d = arg;
    for (int t = 0; t < THREADS; t++) {
        posters[t] = (struct poster){d, t};
        if (pthread_create(&d->threads[t], NULL, post_calls, &posters[t]) != 0) return -EAGAIN;
    }
    intptr_t v = 0;
    int err = eddy_await(d->all_delivered, &v);
    return err < 0 ? err : v;
}

Test(threadsafe, four_threads_deliver_exactly_once, .timeout = TEST_TIMEOUT)
{
    struct delivery *d = calloc(1, sizeof(*d));
    cr_assert(ne(ptr, d, NULL));
    d->loop = new_loop();
    d->all_delivered = eddy_future_new(d->loop);
    cr_assert(ne(ptr, d->all_delivered, NULL));
    for (int t = 0; t < THREADS; t++) {
        d->last[t] = -1;
        for (int i = 0; i < CALLS; i++)
            d->calls[t][i] = (struct call){d, t, i};
    }
    intptr_t v = 0;
    cr_assert(eq(int, run_task(d->loop, receive_all, d, &v), 0));
    for (int t = 0; t < THREADS; t++)
        cr_assert(eq(int, pthread_join(d->threads[t], NULL), 0));
    cr_assert(eq(iptr, v, THREADS * CALLS));
    cr_assert(eq(int, d->post_errors, 0));
    cr_assert(eq(int, d->count, THREADS *CALLS));
    for (int t = 0; t < THREADS; t++)
        for (int i = 0; i < CALLS; i++)
            cr_assert(eq(int, d->seen[t][i], 1), "call %d of thread %d delivered %d times", i, t,
                      d->seen[t][i]);
    cr_assert(eq(int, d->out_of_order, 0), "calls from one thread ran out of their order");
    eddy_future_unref(d->all_delivered);
    eddy_loop_free(d->loop);
    free(d);
}

/* ---- waking a blocked loop ------------------------------------------------------- */

struct wake {
    eddy_loop *loop;
    eddy_future *woken;
    int64_t posted_at; /* atomic */
    int64_t ran_at;
    int post_result;
    pthread_t thread;
};

static void wake_cb(void *arg)
{
    struct wake *w = arg;
    w->ran_at = wall_ns();
    cr_expect(eq(int, eddy_future_set_result(w->woken, 1), 0));
}

static void *post_later(void *arg)
{
    struct wake *w = arg;
    usleep(50 * 1000);
    __atomic_store_n(&w->posted_at, wall_ns(), __ATOMIC_SEQ_CST);
    w->post_result = eddy_call_soon_threadsafe(w->loop, wake_cb, w);
    return NULL;
}

static intptr_t wait_for_wake(void *arg)
{
    struct wake *w = arg;
    if (pthread_create(&w->thread, NULL, post_later, w) != 0) return -EAGAIN;
    /* Nothing else is ready: the loop blocks in its backend. */
    int err = eddy_await(w->woken, NULL);
    /* A far timer may still be pending: end eddy_loop_run now. */
    eddy_loop_stop(eddy_loop_current());
    return err;
}

static void never_cb(void *arg)
{
    (*(int *)arg)++;
}

static void check_prompt_wake(unsigned flags, int64_t far_timer_ns)
{
    struct wake w = {.loop = loop_with(flags, 0), .post_result = 1};
    w.woken = eddy_future_new(w.loop);
    cr_assert(ne(ptr, w.woken, NULL));
    int far_fired = 0;
    eddy_timer *far_timer = NULL;
    if (far_timer_ns > 0)
        cr_assert(
            eq(int, eddy_call_later(w.loop, far_timer_ns, never_cb, &far_fired, &far_timer), 0));
    int64_t start = wall_ns();
    eddy_task *t = eddy_spawn(w.loop, wait_for_wake, &w);
    cr_assert(ne(ptr, t, NULL));
    cr_assert(eq(int, eddy_loop_run(w.loop), 0));
    cr_assert(eq(int, pthread_join(w.thread, NULL), 0));
    cr_assert(eq(int, w.post_result, 0));
    cr_assert(eq(int, eddy_task_join(t, NULL), 0));
    if (far_timer) cr_assert(eq(int, eddy_timer_cancel(far_timer), 0), "the far timer fired");
    cr_assert(eq(int, far_fired, 0));
    int64_t posted = __atomic_load_n(&w.posted_at, __ATOMIC_SEQ_CST);
    cr_assert(ge(i64, w.ran_at, posted));
    cr_assert(lt(i64, w.ran_at - posted, NS_PER_SEC), "the loop woke %lld ms after the post",
              (long long)((w.ran_at - posted) / NS_PER_MS));
    cr_assert(lt(i64, wall_ns() - start, 5 * NS_PER_SEC));
    eddy_future_unref(w.woken);
    eddy_loop_free(w.loop);
}

Test(threadsafe, wakes_loop_blocked_without_deadline, .timeout = TEST_TIMEOUT)
{
    check_prompt_wake(0, 0);
}

Test(threadsafe, wakes_loop_blocked_until_far_timer, .timeout = TEST_TIMEOUT)
{
    check_prompt_wake(0, 30 * NS_PER_SEC);
}

Test(threadsafe, wakes_virtual_time_loop, .timeout = TEST_TIMEOUT)
{
    check_prompt_wake(EDDY_LOOP_VIRTUAL_TIME, 0);
}

/* ---- before the loop runs, and from the loop thread ---------------------------- */

struct ordered {
    int order[4];
    int count;
};

struct ordered_call {
    struct ordered *o;
    int index;
};

static void ordered_cb(void *arg)
{
    struct ordered_call *c = arg;
    c->o->order[c->o->count++] = c->index;
}

Test(threadsafe, calls_before_run_are_delivered_in_order, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_loop();
    struct ordered o = {.count = 0};
    struct ordered_call calls[4];
    for (int i = 0; i < 4; i++) {
        calls[i] = (struct ordered_call){&o, i};
        cr_assert(eq(int, eddy_call_soon_threadsafe(loop, ordered_cb, &calls[i]), 0));
    }
    cr_assert(eq(int, o.count, 0), "a threadsafe call ran inline");
    cr_assert(eq(int, eddy_loop_run(loop), 0));
    cr_assert(eq(int, o.count, 4));
    for (int i = 0; i < 4; i++)
        cr_assert(eq(int, o.order[i], i));
    eddy_loop_free(loop);
}

Test(threadsafe, from_the_loop_thread, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_loop();
    struct ordered o = {.count = 0};
    struct ordered_call first = {&o, 1}, second = {&o, 2};
    cr_assert(eq(int, eddy_call_soon(loop, ordered_cb, &first), 0));
    cr_assert(eq(int, eddy_call_soon_threadsafe(loop, ordered_cb, &second), 0));
    cr_assert(eq(int, eddy_loop_run(loop), 0));
    cr_assert(eq(int, o.count, 2));
    cr_assert(eq(int, o.order[0], 1));
    cr_assert(eq(int, o.order[1], 2));
    eddy_loop_free(loop);
}
