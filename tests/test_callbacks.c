/* SPDX-License-Identifier: MIT */
/* eddy_call_soon, the iteration rule (run what was ready when the iteration
 * began), eddy_loop_run's end and eddy_loop_stop. */
#include "helpers.h"

/* ---- FIFO ------------------------------------------------------------------ */

struct fifo {
    int order[100];
    int count;
};

struct fifo_item {
    struct fifo *fifo;
    int index;
};

static void fifo_cb(void *arg)
{
    struct fifo_item *item = arg;
    item->fifo->order[item->fifo->count++] = item->index;
}

Test(callbacks, call_soon_runs_in_fifo_order, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_loop();
    struct fifo fifo = {.count = 0};
    struct fifo_item items[100];
    for (int i = 0; i < 100; i++) {
        items[i] = (struct fifo_item){&fifo, i};
        cr_assert(eq(int, eddy_call_soon(loop, fifo_cb, &items[i]), 0));
    }
    cr_assert(eq(int, fifo.count, 0), "call_soon ran a callback inline");
    cr_assert(eq(int, eddy_loop_run(loop), 0));
    cr_assert(eq(int, fifo.count, 100));
    for (int i = 0; i < 100; i++)
        cr_assert(eq(int, fifo.order[i], i));
    eddy_loop_free(loop);
}

/* ---- the iteration rule ---------------------------------------------------- */

struct repeat {
    eddy_loop *loop;
    struct trace *trace;
    char name;
    int runs, limit;
};

static void repeat_cb(void *arg)
{
    struct repeat *r = arg;
    trace_add(r->trace, r->name);
    if (++r->runs < r->limit) cr_assert(eq(int, eddy_call_soon(r->loop, repeat_cb, r), 0));
}

Test(callbacks, self_rescheduling_callbacks_interleave, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_loop();
    struct trace tr = {.len = 0};
    struct repeat a = {loop, &tr, 'A', 0, 5}, b = {loop, &tr, 'B', 0, 5};
    cr_assert(eq(int, eddy_call_soon(loop, repeat_cb, &a), 0));
    cr_assert(eq(int, eddy_call_soon(loop, repeat_cb, &b), 0));
    cr_assert(eq(int, eddy_loop_run(loop), 0));
    cr_assert(eq(str, tr.buf, "ABABABABAB"));
    eddy_loop_free(loop);
}

static void stop_cb(void *arg)
{
    eddy_loop_stop(arg);
}

/* A callback that keeps re-scheduling itself does not starve the stop queued
 * behind it, and what it queued during an iteration waits for the next one. */
Test(callbacks, iteration_runs_only_what_was_ready, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_loop();
    struct trace tr = {.len = 0};
    struct repeat a = {loop, &tr, 'A', 0, 1000};
    cr_assert(eq(int, eddy_call_soon(loop, repeat_cb, &a), 0));
    cr_assert(eq(int, eddy_call_soon(loop, stop_cb, loop), 0));
    cr_assert(eq(int, eddy_loop_run(loop), 0));
    cr_assert(eq(int, a.runs, 1), "the re-scheduled callback ran in the iteration that queued it");

    /* The loop resumes where it stopped. */
    a.limit = 4;
    cr_assert(eq(int, eddy_loop_run(loop), 0));
    cr_assert(eq(int, a.runs, 4));
    cr_assert(eq(str, tr.buf, "AAAA"));
    eddy_loop_free(loop);
}

struct chain {
    eddy_loop *loop;
    struct trace *trace;
};

static void chain_late(void *arg)
{
    struct chain *c = arg;
    trace_add(c->trace, 'L');
}

static void chain_first(void *arg)
{
    struct chain *c = arg;
    trace_add(c->trace, '1');
    cr_assert(eq(int, eddy_call_soon(c->loop, chain_late, c), 0));
}

static void chain_second(void *arg)
{
    struct chain *c = arg;
    trace_add(c->trace, '2');
}

/* What a callback queues runs after everything that was already queued. */
Test(callbacks, queued_during_iteration_runs_after_queue, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_loop();
    struct trace tr = {.len = 0};
    struct chain c = {loop, &tr};
    cr_assert(eq(int, eddy_call_soon(loop, chain_first, &c), 0));
    cr_assert(eq(int, eddy_call_soon(loop, chain_second, &c), 0));
    cr_assert(eq(int, eddy_loop_run(loop), 0));
    cr_assert(eq(str, tr.buf, "12L"));
    eddy_loop_free(loop);
}

/* ---- eddy_loop_run's end and eddy_loop_stop -------------------------------- */

Test(callbacks, run_on_empty_loop_returns_at_once, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_loop();
    int64_t start = wall_ns();
    cr_assert(eq(int, eddy_loop_run(loop), 0));
    cr_assert(eq(int, eddy_loop_run(loop), 0));
    cr_assert(lt(i64, wall_ns() - start, 2 * NS_PER_SEC));
    eddy_loop_free(loop);
}

static void count_cb(void *arg)
{
    (*(int *)arg)++;
}

Test(callbacks, run_returns_when_nothing_is_pending, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_loop();
    int count = 0;
    cr_assert(eq(int, eddy_call_soon(loop, count_cb, &count), 0));
    cr_assert(eq(int, eddy_call_soon(loop, count_cb, &count), 0));
    cr_assert(eq(int, eddy_loop_run(loop), 0));
    cr_assert(eq(int, count, 2));
    /* And it can be run again for new work. */
    cr_assert(eq(int, eddy_call_soon(loop, count_cb, &count), 0));
    cr_assert(eq(int, eddy_loop_run(loop), 0));
    cr_assert(eq(int, count, 3));
    eddy_loop_free(loop);
}

/* eddy_loop_stop returns after the current iteration: callbacks that were
 * ready with the stop still run, those queued meanwhile wait. */
Test(callbacks, stop_finishes_current_iteration, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_loop();
    int count = 0;
    struct trace tr = {.len = 0};
    struct chain c = {loop, &tr};
    cr_assert(eq(int, eddy_call_soon(loop, stop_cb, loop), 0));
    cr_assert(eq(int, eddy_call_soon(loop, count_cb, &count), 0));
    cr_assert(eq(int, eddy_call_soon(loop, chain_first, &c), 0));
    cr_assert(eq(int, eddy_loop_run(loop), 0));
    cr_assert(eq(int, count, 1), "a callback ready in the stopping iteration did not run");
    cr_assert(eq(str, tr.buf, "1"), "work queued in the stopping iteration ran anyway");
    cr_assert(eq(int, eddy_loop_run(loop), 0));
    cr_assert(eq(str, tr.buf, "1L"));
    eddy_loop_free(loop);
}

static void timer_stop_cb(void *arg)
{
    eddy_loop_stop(arg);
}

/* A stop ends eddy_loop_run even though a timer is still pending. */
Test(callbacks, stop_with_pending_timer, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_virtual_loop();
    int fired = 0;
    eddy_timer *far_timer = NULL;
    cr_assert(eq(int, eddy_call_later(loop, NS_PER_HOUR, count_cb, &fired, &far_timer), 0));
    cr_assert(eq(int, eddy_call_later(loop, NS_PER_MS, timer_stop_cb, loop, NULL), 0));
    cr_assert(eq(int, eddy_loop_run(loop), 0));
    cr_assert(eq(int, fired, 0));
    cr_assert(eq(int, eddy_timer_cancel(far_timer), 0));
    eddy_loop_free(loop);
}

/* ---- context ------------------------------------------------------------- */

struct context_seen {
    eddy_loop *loop;
    eddy_task *task;
    int runs;
};

static void context_cb(void *arg)
{
    struct context_seen *s = arg;
    s->loop = eddy_loop_current();
    s->task = eddy_task_current();
    s->runs++;
}

Test(callbacks, loop_current_inside_callback, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_loop();
    struct context_seen seen = {(eddy_loop *)1, (eddy_task *)1, 0};
    cr_assert(eq(ptr, eddy_loop_current(), NULL));
    cr_assert(eq(int, eddy_call_soon(loop, context_cb, &seen), 0));
    cr_assert(eq(int, eddy_loop_run(loop), 0));
    cr_assert(eq(int, seen.runs, 1));
    cr_assert(eq(ptr, seen.loop, loop));
    cr_assert(eq(ptr, seen.task, NULL), "a plain callback runs outside any task");
    cr_assert(eq(ptr, eddy_loop_current(), NULL));
    eddy_loop_free(loop);
}

Test(callbacks, backend_is_named, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_loop();
    const char *name = eddy_loop_backend(loop);
    cr_assert(ne(ptr, (void *)name, NULL));
    cr_assert(strlen(name) > 0);
    eddy_loop_free(loop);
}

static intptr_t schedule_from_task(void *arg)
{
    struct chain *c = arg;
    cr_assert(eq(int, eddy_call_soon(eddy_loop_current(), chain_late, c), 0));
    trace_add(c->trace, 'T');
    return 0;
}

Test(callbacks, call_soon_from_task_runs_after_it_suspends, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_loop();
    struct trace tr = {.len = 0};
    struct chain c = {loop, &tr};
    intptr_t result = -1;
    cr_assert(eq(int, run_task(loop, schedule_from_task, &c, &result), 0));
    cr_assert(eq(str, tr.buf, "TL"));
    eddy_loop_free(loop);
}

static void requeue_count_cb(void *arg)
{
    int *count = arg;
    (*count)++;
    cr_assert(eq(int, eddy_call_soon(eddy_loop_current(), requeue_count_cb, count), 0));
}

/* As in asyncio: a stop requested before the run lets exactly one iteration
 * happen, without blocking, so stop-then-run steps a loop one iteration at a
 * time (a callback that requeues itself would otherwise run forever). */
Test(callbacks, stop_before_run_runs_one_iteration, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_loop();
    int count = 0;
    eddy_timer *far_timer = NULL;
    cr_assert(eq(int, eddy_call_later(loop, NS_PER_HOUR, count_cb, &count, &far_timer), 0));
    cr_assert(eq(int, eddy_call_soon(loop, requeue_count_cb, &count), 0));
    for (int step = 1; step <= 3; step++) {
        eddy_loop_stop(loop);
        int64_t start = wall_ns();
        cr_assert(eq(int, eddy_loop_run(loop), 0));
        cr_assert(lt(i64, wall_ns() - start, NS_PER_SEC), "a stopped run must not block");
        cr_assert(eq(int, count, step));
    }
    cr_assert(eq(int, eddy_timer_cancel(far_timer), 0));
    eddy_loop_free(loop);
}
