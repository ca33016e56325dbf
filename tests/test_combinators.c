/* SPDX-License-Identifier: MIT */
/* eddy_gather and eddy_wait_any, under virtual time. */
#include "helpers.h"

#define N 4

struct gathering {
    eddy_future *fs[N];
    size_t n;
    int err;
    int64_t elapsed;
    bool all_done_at_return;
};

static intptr_t gather_task(void *arg)
{
    struct gathering *g = arg;
    int64_t start = loop_now();
    g->err = eddy_gather(g->fs, g->n);
    g->elapsed = loop_now() - start;
    g->all_done_at_return = true;
    for (size_t i = 0; i < g->n; i++)
        if (!eddy_future_done(g->fs[i])) g->all_done_at_return = false;
    return g->err;
}

static void new_futures(eddy_loop *loop, eddy_future **fs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        fs[i] = eddy_future_new(loop);
        cr_assert(ne(ptr, fs[i], NULL));
    }
}

static void unref_futures(eddy_future **fs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        eddy_future_unref(fs[i]);
}

Test(combinators, gather_all_ok, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_virtual_loop();
    struct gathering g = {.n = N};
    new_futures(loop, g.fs, N);
    static const int delays_ms[N] = {40, 10, 30, 20};
    for (int i = 0; i < N; i++)
        set_result_later(loop, g.fs[i], delays_ms[i] * NS_PER_MS, 100 + i);
    intptr_t v = 0;
    cr_assert(eq(int, run_task(loop, gather_task, &g, &v), 0));
    cr_assert(eq(int, g.err, 0));
    cr_assert(g.all_done_at_return);
    cr_assert(eq(i64, g.elapsed, 40 * NS_PER_MS));
    for (int i = 0; i < N; i++) {
        intptr_t r = 0;
        cr_assert(eq(int, eddy_future_result(g.fs[i], &r), 0));
        cr_assert(eq(iptr, r, 100 + i));
    }
    unref_futures(g.fs, N);
    eddy_loop_free(loop);
}

Test(combinators, gather_returns_first_error_in_time_after_all, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_virtual_loop();
    struct gathering g = {.n = N};
    new_futures(loop, g.fs, N);
    set_error_later(loop, g.fs[0], 30 * NS_PER_MS, -EIO);
    set_error_later(loop, g.fs[1], 10 * NS_PER_MS, -ENOENT); /* first in time */
    set_result_later(loop, g.fs[2], 50 * NS_PER_MS, 1);      /* last */
    set_error_later(loop, g.fs[3], 20 * NS_PER_MS, -EPIPE);
    intptr_t v = 0;
    cr_assert(eq(int, run_task(loop, gather_task, &g, &v), -ENOENT));
    cr_assert(eq(int, g.err, -ENOENT));
    cr_assert(g.all_done_at_return, "gather returned before every future finished");
    cr_assert(eq(i64, g.elapsed, 50 * NS_PER_MS));
    /* The futures keep their own outcomes; gather cancels nothing on error. */
    cr_assert(eq(int, eddy_future_result(g.fs[0], NULL), -EIO));
    cr_assert(eq(int, eddy_future_result(g.fs[2], NULL), 0));
    cr_assert(eq(int, eddy_future_result(g.fs[3], NULL), -EPIPE));
    unref_futures(g.fs, N);
    eddy_loop_free(loop);
}

Test(combinators, gather_error_of_future_done_before, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_virtual_loop();
    struct gathering g = {.n = 2};
    new_futures(loop, g.fs, 2);
    cr_assert(eq(int, eddy_future_set_error(g.fs[1], -EACCES), 0));
    set_result_later(loop, g.fs[0], 5 * NS_PER_MS, 1);
    intptr_t v = 0;
    cr_assert(eq(int, run_task(loop, gather_task, &g, &v), -EACCES));
    cr_assert(eq(i64, g.elapsed, 5 * NS_PER_MS));
    unref_futures(g.fs, 2);
    eddy_loop_free(loop);
}

Test(combinators, gather_counts_cancellation_as_error, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_virtual_loop();
    struct gathering g = {.n = 2};
    new_futures(loop, g.fs, 2);
    struct later *l = later_new(LATER_CANCEL_FUTURE);
    l->future = g.fs[0];
    later_arm(loop, 5 * NS_PER_MS, l);
    set_result_later(loop, g.fs[1], 8 * NS_PER_MS, 1);
    intptr_t v = 0;
    cr_assert(eq(int, run_task(loop, gather_task, &g, &v), -ECANCELED));
    cr_assert(eq(i64, g.elapsed, 8 * NS_PER_MS));
    unref_futures(g.fs, 2);
    eddy_loop_free(loop);
}

Test(combinators, gather_nothing, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_virtual_loop();
    struct gathering g = {.n = 0};
    intptr_t v = 0;
    cr_assert(eq(int, run_task(loop, gather_task, &g, &v), 0));
    cr_assert(eq(i64, g.elapsed, 0));
    eddy_loop_free(loop);
}

Test(combinators, cancelling_gatherer_cancels_pending_futures, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_virtual_loop();
    struct gathering g = {.n = 3};
    new_futures(loop, g.fs, 3);
    cr_assert(eq(int, eddy_future_set_result(g.fs[1], 11), 0));
    eddy_task *t = eddy_spawn(loop, gather_task, &g);
    cr_assert(ne(ptr, t, NULL));
    cancel_task_later(loop, t, 10 * NS_PER_MS);
    cr_assert(eq(int, eddy_loop_run(loop), 0));
    cr_assert(eq(int, g.err, -ECANCELED));
    cr_assert(eq(i64, g.elapsed, 10 * NS_PER_MS));
    cr_assert(eq(int, eddy_future_result(g.fs[0], NULL), -ECANCELED));
    cr_assert(eq(int, eddy_future_result(g.fs[2], NULL), -ECANCELED));
    intptr_t r = 0;
    cr_assert(eq(int, eddy_future_result(g.fs[1], &r), 0), "a done future was changed");
    cr_assert(eq(iptr, r, 11));
    cr_assert(eq(int, eddy_task_join(t, NULL), -ECANCELED));
    unref_futures(g.fs, 3);
    eddy_loop_free(loop);
}

struct child_ended {
    int sleep_result;
};

static intptr_t sleeper(void *arg)
{
    struct child_ended *c = arg;
    c->sleep_result = eddy_sleep(NS_PER_HOUR);
    return c->sleep_result;
}

static intptr_t gather_tasks(void *arg)
{
    eddy_task *t[3];
    eddy_future *fs[3];
    for (int i = 0; i < 3; i++) {
        t[i] = eddy_spawn(NULL, task_sleep_arg, (void *)(intptr_t)((i + 1) * NS_PER_MS));
        if (!t[i]) return -ENOMEM;
        fs[i] = eddy_task_future(t[i]);
    }
    int err = eddy_gather(fs, 3);
    if (err < 0) return err;
    intptr_t sum = 0;
    for (int i = 0; i < 3; i++) {
        intptr_t v = 0;
        err = eddy_task_join(t[i], &v);
        if (err < 0) return err;
        sum += v;
    }
    return sum;
}

Test(combinators, gather_tasks, .timeout = TEST_TIMEOUT)
{
    intptr_t v = 0;
    cr_assert(eq(int, run_virtual(gather_tasks, NULL, &v), 0));
    cr_assert(eq(iptr, v, 6 * NS_PER_MS));
}

static intptr_t gather_tasks_cancelled(void *arg)
{
    struct child_ended *c = arg;
    eddy_task *t[2];
    eddy_future *fs[2];
    for (int i = 0; i < 2; i++) {
        t[i] = eddy_spawn(NULL, sleeper, &c[i]);
        if (!t[i]) return -ENOMEM;
        fs[i] = eddy_task_future(t[i]);
    }
    int err = eddy_gather(fs, 2);
    for (int i = 0; i < 2; i++)
        eddy_task_detach(t[i]);
    return err;
}

/* Cancelling the gatherer cancels the tasks it gathers, too. */
Test(combinators, cancelling_gatherer_cancels_tasks, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_virtual_loop();
    struct child_ended c[2] = {{1}, {1}};
    eddy_task *t = eddy_spawn(loop, gather_tasks_cancelled, c);
    cr_assert(ne(ptr, t, NULL));
    cancel_task_later(loop, t, 4 * NS_PER_MS);
    int64_t start = eddy_now(loop);
    cr_assert(eq(int, eddy_loop_run(loop), 0));
    cr_assert(eq(int, eddy_task_join(t, NULL), -ECANCELED));
    cr_assert(eq(int, c[0].sleep_result, -ECANCELED));
    cr_assert(eq(int, c[1].sleep_result, -ECANCELED));
    cr_assert(eq(i64, eddy_now(loop) - start, 4 * NS_PER_MS));
    eddy_loop_free(loop);
}

/* ---- wait_any ----------------------------------------------------------------- */

struct waiting_any {
    eddy_future *fs[N];
    int64_t timeout;
    int index;
    int64_t elapsed;
};

static intptr_t wait_any_task(void *arg)
{
    struct waiting_any *w = arg;
    int64_t start = loop_now();
    w->index = eddy_wait_any(w->fs, N, w->timeout);
    w->elapsed = loop_now() - start;
    return 0;
}

Test(combinators, wait_any_returns_first_done, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_virtual_loop();
    struct waiting_any w = {.timeout = -1};
    new_futures(loop, w.fs, N);
    set_result_later(loop, w.fs[0], 20 * NS_PER_MS, 0);
    set_result_later(loop, w.fs[2], 10 * NS_PER_MS, 0);
    intptr_t v = 0;
    cr_assert(eq(int, run_task(loop, wait_any_task, &w, &v), 0));
    cr_assert(eq(int, w.index, 2));
    cr_assert(eq(i64, w.elapsed, 10 * NS_PER_MS));
    /* The others were left as they were: 0 completed later by its timer, 1
     * and 3 still pending. */
    cr_assert(eq(int, eddy_future_result(w.fs[0], NULL), 0));
    cr_assert(not(eddy_future_done(w.fs[1])));
    cr_assert(not(eddy_future_done(w.fs[3])));
    unref_futures(w.fs, N);
    eddy_loop_free(loop);
}

Test(combinators, wait_any_lowest_index_when_several_done, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_virtual_loop();
    struct waiting_any w = {.timeout = -1};
    new_futures(loop, w.fs, N);
    cr_assert(eq(int, eddy_future_set_result(w.fs[3], 0), 0));
    cr_assert(eq(int, eddy_future_set_error(w.fs[1], -EIO), 0));
    intptr_t v = 0;
    cr_assert(eq(int, run_task(loop, wait_any_task, &w, &v), 0));
    cr_assert(eq(int, w.index, 1));
    cr_assert(eq(i64, w.elapsed, 0));
    cr_assert(not(eddy_future_done(w.fs[0])));
    cr_assert(not(eddy_future_done(w.fs[2])));
    unref_futures(w.fs, N);
    eddy_loop_free(loop);
}

Test(combinators, wait_any_counts_failure_as_done, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_virtual_loop();
    struct waiting_any w = {.timeout = NS_PER_SEC};
    new_futures(loop, w.fs, N);
    set_error_later(loop, w.fs[3], 2 * NS_PER_MS, -EIO);
    set_result_later(loop, w.fs[0], 3 * NS_PER_MS, 1);
    intptr_t v = 0;
    cr_assert(eq(int, run_task(loop, wait_any_task, &w, &v), 0));
    cr_assert(eq(int, w.index, 3));
    cr_assert(eq(i64, w.elapsed, 2 * NS_PER_MS));
    unref_futures(w.fs, N);
    eddy_loop_free(loop);
}

Test(combinators, cancelled_wait_any_leaves_futures, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_virtual_loop();
    struct waiting_any w = {.timeout = -1};
    new_futures(loop, w.fs, N);
    eddy_task *t = eddy_spawn(loop, wait_any_task, &w);
    cr_assert(ne(ptr, t, NULL));
    cancel_task_later(loop, t, 6 * NS_PER_MS);
    cr_assert(eq(int, eddy_loop_run(loop), 0));
    cr_assert(eq(int, w.index, -ECANCELED));
    cr_assert(eq(i64, w.elapsed, 6 * NS_PER_MS));
    for (int i = 0; i < N; i++)
        cr_assert(not(eddy_future_done(w.fs[i])), "future %d touched", i);
    cr_assert(eq(int, eddy_task_join(t, NULL), 0));
    unref_futures(w.fs, N);
    eddy_loop_free(loop);
}

static intptr_t wait_any_tasks(void *arg)
{
    eddy_task *t[3];
    eddy_future *fs[3];
    static const int delays_ms[3] = {9, 4, 6};
    for (int i = 0; i < 3; i++) {
        t[i] = eddy_spawn(NULL, task_sleep_arg, (void *)(intptr_t)(delays_ms[i] * NS_PER_MS));
        if (!t[i]) return -ENOMEM;
        fs[i] = eddy_task_future(t[i]);
    }
    int first = eddy_wait_any(fs, 3, -1);
    bool others_running = !eddy_future_done(fs[0]) && !eddy_future_done(fs[2]);
    for (int i = 0; i < 3; i++)
        if (eddy_task_join(t[i], NULL) < 0) return -EPROTO;
    return others_running ? first : -EPROTO;
}

Test(combinators, wait_any_on_tasks, .timeout = TEST_TIMEOUT)
{
    intptr_t v = 0;
    cr_assert(eq(int, run_virtual(wait_any_tasks, NULL, &v), 0));
    cr_assert(eq(iptr, v, 1));
}

/* Many futures: more than any small fixed buffer a combinator might use. */
static intptr_t gather_many(void *arg)
{
    enum { MANY = 1000 };
    eddy_future **fs = malloc(MANY * sizeof(*fs));
    if (!fs) return -ENOMEM;
    for (int i = 0; i < MANY; i++) {
        fs[i] = eddy_future_new(NULL);
        if (!fs[i]) return -ENOMEM;
        set_result_later(NULL, fs[i], (MANY - i) * NS_PER_MS, i);
    }
    int first = eddy_wait_any(fs, MANY, -1);
    int err = eddy_gather(fs, MANY);
    for (int i = 0; i < MANY; i++)
        eddy_future_unref(fs[i]);
    free(fs);
    if (err < 0) return err;
    return first;
}

Test(combinators, many_futures, .timeout = TEST_TIMEOUT)
{
    intptr_t v = 0;
    cr_assert(eq(int, run_virtual(gather_many, NULL, &v), 0));
    cr_assert(eq(iptr, v, 999));
}

/* ---- waiting on one's own future ------------------------------------------------- */

/* The caller's own future cannot be done while it waits: each wait that
 * includes it answers -EDEADLK at once, whatever else is in the list. */
struct self_wait {
    int gather, wait_any, wait_any_timeout, await_timeout;
};

static intptr_t wait_on_self(void *arg)
{
    struct self_wait *s = arg;
    eddy_future *fs[2] = {eddy_future_new(NULL), eddy_task_future(eddy_task_current())};
    cr_assert(ne(ptr, fs[0], NULL));
    set_result_later(NULL, fs[0], NS_PER_MS, 1);
    s->gather = eddy_gather(fs, 2);
    s->wait_any = eddy_wait_any(fs + 1, 1, -1);
    s->wait_any_timeout = eddy_wait_any(fs, 2, NS_PER_SEC);
    s->await_timeout = eddy_await_timeout(fs[1], NS_PER_SEC, NULL);
    eddy_future_unref(fs[0]);
    return 0;
}

Test(combinators, waits_on_own_future_are_edeadlk, .timeout = TEST_TIMEOUT)
{
    struct self_wait s = {1, 1, 1, 1};
    intptr_t v = -1;
    cr_assert(eq(int, run_virtual(wait_on_self, &s, &v), 0));
    cr_assert(eq(int, s.gather, -EDEADLK));
    cr_assert(eq(int, s.wait_any, -EDEADLK));
    cr_assert(eq(int, s.wait_any_timeout, -EDEADLK));
    cr_assert(eq(int, s.await_timeout, -EDEADLK));
}
