/* SPDX-License-Identifier: MIT */
/* EDDY_LOOP_VIRTUAL_TIME: the clock jumps to the next deadline when idle, so
 * long sleeps take no wall time and runs are deterministic. */
#include "helpers.h"

static intptr_t hour_of_seconds(void *arg)
{
    int64_t start = loop_now();
    for (int i = 0; i < 3600; i++) {
        int err = eddy_sleep(NS_PER_SEC);
        if (err < 0) return err;
        if (loop_now() - start != (int64_t)(i + 1) * NS_PER_SEC) return -EPROTO;
    }
    return loop_now() - start;
}

Test(virtual_time, an_hour_of_sleeps_takes_no_time, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_virtual_loop();
    int64_t wall_start = wall_ns();
    int64_t start = eddy_now(loop);
    intptr_t v = 0;
    cr_assert(eq(int, run_task(loop, hour_of_seconds, NULL, &v), 0));
    int64_t wall = wall_ns() - wall_start;
    cr_assert(eq(iptr, v, NS_PER_HOUR));
    cr_assert(eq(i64, eddy_now(loop) - start, NS_PER_HOUR));
    cr_assert(lt(i64, wall, 2 * NS_PER_SEC), "an hour of virtual sleeps took %lld ms",
              (long long)(wall / NS_PER_MS));
    eddy_loop_free(loop);
}

/* 60 tasks, each sleeping 60 times a different number of seconds. */
struct sleeper {
    int64_t step;
    int64_t total;
};

static intptr_t sleep_steps(void *arg)
{
    struct sleeper *s = arg;
    int64_t start = loop_now();
    for (int i = 0; i < 60; i++) {
        int err = eddy_sleep(s->step);
        if (err < 0) return err;
    }
    s->total = loop_now() - start;
    return 0;
}

Test(virtual_time, many_tasks_sleeping_various_times, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_virtual_loop();
    enum { N = 60 };
    struct sleeper s[N];
    eddy_task *t[N];
    int64_t wall_start = wall_ns();
    int64_t start = eddy_now(loop);
    for (int i = 0; i < N; i++) {
        s[i] = (struct sleeper){(i + 1) * NS_PER_SEC, 0};
        t[i] = eddy_spawn(loop, sleep_steps, &s[i]);
        cr_assert(ne(ptr, t[i], NULL));
    }
    cr_assert(eq(int, eddy_loop_run(loop), 0));
    for (int i = 0; i < N; i++) {
        cr_assert(eq(int, eddy_task_join(t[i], NULL), 0));
        cr_assert(eq(i64, s[i].total, 60 * s[i].step), "task %d", i);
    }
    /* The longest: 60 sleeps of 60 s. */
    cr_assert(eq(i64, eddy_now(loop) - start, NS_PER_HOUR));
    cr_assert(lt(i64, wall_ns() - wall_start, 2 * NS_PER_SEC));
    eddy_loop_free(loop);
}

/* ---- determinism --------------------------------------------------------------- */

struct run_log {
    int entries[256];
    int64_t times[256];
    int count;
};

struct ticker {
    struct run_log *log;
    int id;
    int64_t period;
    int ticks;
};

static intptr_t tick(void *arg)
{
    struct ticker *t = arg;
    for (int i = 0; i < t->ticks; i++) {
        int err = eddy_sleep(t->period);
        if (err < 0) return err;
        if (t->log->count < 256) {
            t->log->times[t->log->count] = loop_now();
            t->log->entries[t->log->count++] = t->id;
        }
    }
    return 0;
}

static void run_tickers(struct run_log *log, int64_t *origin)
{
    eddy_loop *loop = new_virtual_loop();
    *origin = eddy_now(loop);
    static const int64_t periods_ms[] = {7, 3, 5, 3, 11};
    struct ticker tickers[5];
    eddy_task *tasks[5];
    for (int i = 0; i < 5; i++) {
        tickers[i] = (struct ticker){log, i, periods_ms[i] * NS_PER_MS, 20};
        tasks[i] = eddy_spawn(loop, tick, &tickers[i]);
        cr_assert(ne(ptr, tasks[i], NULL));
    }
    cr_assert(eq(int, eddy_loop_run(loop), 0));
    for (int i = 0; i < 5; i++)
        cr_assert(eq(int, eddy_task_join(tasks[i], NULL), 0));
    eddy_loop_free(loop);
}

Test(virtual_time, ordering_is_deterministic, .timeout = TEST_TIMEOUT)
{
    struct run_log a = {.count = 0}, b = {.count = 0};
    int64_t origin_a, origin_b;
    run_tickers(&a, &origin_a);
    run_tickers(&b, &origin_b);
    cr_assert(eq(int, a.count, 100));
    cr_assert(eq(int, b.count, 100));
    for (int i = 0; i < a.count; i++) {
        cr_assert(eq(int, a.entries[i], b.entries[i]), "runs differ at entry %d", i);
        cr_assert(eq(i64, a.times[i] - origin_a, b.times[i] - origin_b));
        if (i > 0) {
            cr_assert(ge(i64, a.times[i], a.times[i - 1]), "time went backwards");
            /* Equal wake times: tasks resume in the order their sleeps began,
             * which for these tickers is the order of their ids (1 before 3). */
            if (a.times[i] == a.times[i - 1] && a.entries[i - 1] == 3)
                cr_assert(ne(int, a.entries[i], 1));
        }
    }
    /* Spot checks: at 3 ms tickers 1 and 3 (in spawn order), at 5 ms ticker 2. */
    cr_assert(eq(int, a.entries[0], 1));
    cr_assert(eq(int, a.entries[1], 3));
    cr_assert(eq(i64, a.times[0] - origin_a, 3 * NS_PER_MS));
    cr_assert(eq(int, a.entries[2], 2));
    cr_assert(eq(i64, a.times[2] - origin_a, 5 * NS_PER_MS));
}

/* ---- what moves the clock ---------------------------------------------------- */

static intptr_t yield_and_sleep_zero(void *arg)
{
    int64_t start = loop_now();
    for (int i = 0; i < 100; i++) {
        if (eddy_yield() < 0) return -EPROTO;
        if (eddy_sleep(0) < 0) return -EPROTO;
    }
    return loop_now() - start;
}

Test(virtual_time, yields_and_zero_sleeps_do_not_move_clock, .timeout = TEST_TIMEOUT)
{
    intptr_t v = -1;
    cr_assert(eq(int, run_virtual(yield_and_sleep_zero, NULL, &v), 0));
    cr_assert(eq(iptr, v, 0));
}

struct timer_hit {
    eddy_loop *loop;
    int64_t at;
    int hits;
};

static void hit_cb(void *arg)
{
    struct timer_hit *h = arg;
    h->at = eddy_now(h->loop);
    h->hits++;
}

Test(virtual_time, far_timer_fires_at_once, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_virtual_loop();
    struct timer_hit h = {loop, 0, 0};
    int64_t wall_start = wall_ns();
    int64_t start = eddy_now(loop);
    cr_assert(eq(int, eddy_call_later(loop, 24 * NS_PER_HOUR, hit_cb, &h, NULL), 0));
    cr_assert(eq(int, eddy_loop_run(loop), 0));
    cr_assert(eq(int, h.hits, 1));
    cr_assert(eq(i64, h.at - start, 24 * NS_PER_HOUR));
    cr_assert(lt(i64, wall_ns() - wall_start, 2 * NS_PER_SEC));
    eddy_loop_free(loop);
}

/* Virtual time does not jump while callbacks are ready: work first. */
struct busy {
    eddy_loop *loop;
    int rounds;
    int64_t start, seen_max;
};

static void busy_cb(void *arg)
{
    struct busy *b = arg;
    int64_t elapsed = eddy_now(b->loop) - b->start;
    if (elapsed > b->seen_max) b->seen_max = elapsed;
    if (++b->rounds < 1000) cr_assert(eq(int, eddy_call_soon(b->loop, busy_cb, b), 0));
}

Test(virtual_time, clock_waits_for_ready_work, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_virtual_loop();
    struct busy b = {loop, 0, eddy_now(loop), 0};
    struct timer_hit h = {loop, 0, 0};
    cr_assert(eq(int, eddy_call_later(loop, NS_PER_SEC, hit_cb, &h, NULL), 0));
    cr_assert(eq(int, eddy_call_soon(loop, busy_cb, &b), 0));
    cr_assert(eq(int, eddy_loop_run(loop), 0));
    cr_assert(eq(int, b.rounds, 1000));
    cr_assert(eq(i64, b.seen_max, 0), "the clock jumped while callbacks were ready");
    cr_assert(eq(int, h.hits, 1));
    cr_assert(eq(i64, h.at - b.start, NS_PER_SEC));
    eddy_loop_free(loop);
}

/* ---- deadlines at the end of time ---------------------------------------------- */

/* A deadline that saturates at the clock's limit is still a timer: virtual
 * time jumps to it (it used to be taken for "no timer", and the loop blocked
 * in its backend for ever). */
struct end_of_time {
    int order[2];
    int count;
    int64_t woke_at, after;
    int sleep_result, sleep_again;
};

static intptr_t sleep_for_ever(void *arg)
{
    struct end_of_time *e = arg;
    e->sleep_result = eddy_sleep(INT64_MAX);
    e->order[e->count++] = 2;
    e->woke_at = loop_now();
    /* The clock is at its limit: a further sleep saturates too, and ends. */
    e->sleep_again = eddy_sleep(NS_PER_SEC);
    e->after = loop_now();
    return 0;
}

static intptr_t sleep_an_hour(void *arg)
{
    struct end_of_time *e = arg;
    int err = eddy_sleep(NS_PER_HOUR);
    e->order[e->count++] = 1;
    return err;
}

Test(virtual_time, sleep_int64_max_jumps_to_the_end, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_virtual_loop();
    struct end_of_time e = {.sleep_result = 1, .sleep_again = 1};
    int64_t wall_start = wall_ns();
    eddy_task *forever = eddy_spawn(loop, sleep_for_ever, &e);
    eddy_task *hour = eddy_spawn(loop, sleep_an_hour, &e);
    cr_assert(forever && hour);
    cr_assert(eq(int, eddy_loop_run(loop), 0));
    cr_assert(eq(int, eddy_task_join(forever, NULL), 0));
    cr_assert(eq(int, eddy_task_join(hour, NULL), 0));
    cr_assert(eq(int, e.sleep_result, 0));
    cr_assert(eq(int, e.sleep_again, 0));
    cr_assert(eq(int, e.count, 2));
    cr_assert(eq(int, e.order[0], 1), "the hour's sleep ends first");
    cr_assert(eq(int, e.order[1], 2));
    cr_assert(gt(i64, e.woke_at, INT64_MAX - NS_PER_SEC), "the clock stopped short");
    cr_assert(ge(i64, e.after, e.woke_at));
    cr_assert(lt(i64, wall_ns() - wall_start, 2 * NS_PER_SEC));
    eddy_loop_free(loop);
}

Test(virtual_time, saturated_timers_fire_in_arming_order, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_virtual_loop();
    struct timer_hit first = {loop, 0, 0}, second = {loop, 0, 0};
    cr_assert(eq(int, eddy_call_later(loop, INT64_MAX, hit_cb, &first, NULL), 0));
    cr_assert(eq(int, eddy_call_later(loop, INT64_MAX - 1, hit_cb, &second, NULL), 0));
    cr_assert(eq(int, eddy_loop_run(loop), 0));
    cr_assert(eq(int, first.hits, 1));
    cr_assert(eq(int, second.hits, 1));
    cr_assert(eq(i64, first.at, second.at), "both deadlines saturate to the same instant");
    cr_assert(gt(i64, first.at, INT64_MAX - NS_PER_SEC));
    eddy_loop_free(loop);
}

/* Under the real clock the same sleep waits as long as the backend can, and
 * is cancelled like any other. */
Test(virtual_time, real_clock_sleep_int64_max_is_cancellable, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_loop();
    eddy_task *t = eddy_spawn(loop, task_sleep_arg, (void *)(intptr_t)INT64_MAX);
    cr_assert(ne(ptr, t, NULL));
    cancel_task_later(loop, t, 10 * NS_PER_MS);
    int64_t start = wall_ns();
    cr_assert(eq(int, eddy_loop_run(loop), 0));
    cr_assert(eq(int, eddy_task_join(t, NULL), -ECANCELED));
    cr_assert(lt(i64, wall_ns() - start, 2 * NS_PER_SEC));
    eddy_loop_free(loop);
}
