/* SPDX-License-Identifier: MIT */
/* eddy_call_later and eddy_timer_cancel: deadline order, FIFO among equal
 * deadlines, owned handles, large counts; eddy_now. */
#include <unistd.h>

#include "helpers.h"

#define MANY 100000

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint64_t rng_next(void)
{
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return rng_state = x;
}

struct fired {
    eddy_loop *loop;
    int *order;
    int64_t *at;
    int count;
};

struct shot {
    struct fired *fired;
    int index;
};

static void record_cb(void *arg)
{
    struct shot *s = arg;
    struct fired *f = s->fired;
    if (f->at) f->at[f->count] = eddy_now(f->loop);
    f->order[f->count++] = s->index;
}

static void count_cb(void *arg)
{
    (*(int *)arg)++;
}

Test(timers, fire_in_deadline_order, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_virtual_loop();
    static const int64_t delays_ms[] = {30, 10, 20, 0, 25, 5};
    enum { N = sizeof(delays_ms) / sizeof(delays_ms[0]) };
    int order[N];
    int64_t at[N];
    struct fired fired = {loop, order, at, 0};
    struct shot shots[N];
    int64_t start = eddy_now(loop);
    for (int i = 0; i < N; i++) {
        shots[i] = (struct shot){&fired, i};
        cr_assert(eq(
            int, eddy_call_later(loop, delays_ms[i] * NS_PER_MS, record_cb, &shots[i], NULL), 0));
    }
    cr_assert(eq(int, eddy_loop_run(loop), 0));
    cr_assert(eq(int, fired.count, N));
    static const int expected[N] = {3, 5, 1, 2, 4, 0};
    for (int i = 0; i < N; i++) {
        cr_assert(eq(int, order[i], expected[i]), "position %d", i);
        cr_assert(eq(i64, at[i] - start, delays_ms[expected[i]] * NS_PER_MS),
                  "timer %d fired at the wrong virtual time", expected[i]);
    }
    eddy_loop_free(loop);
}

Test(timers, fire_in_deadline_order_real_clock, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_loop();
    static const int64_t delays_ms[] = {60, 20, 40};
    int order[3];
    int64_t at[3];
    struct fired fired = {loop, order, at, 0};
    struct shot shots[3];
    int64_t start = eddy_now(loop);
    for (int i = 0; i < 3; i++) {
        shots[i] = (struct shot){&fired, i};
        cr_assert(eq(
            int, eddy_call_later(loop, delays_ms[i] * NS_PER_MS, record_cb, &shots[i], NULL), 0));
    }
    cr_assert(eq(int, eddy_loop_run(loop), 0));
    cr_assert(eq(int, fired.count, 3));
    cr_assert(eq(int, order[0], 1));
    cr_assert(eq(int, order[1], 2));
    cr_assert(eq(int, order[2], 0));
    for (int i = 0; i < 3; i++)
        cr_assert(ge(i64, at[i] - start, delays_ms[order[i]] * NS_PER_MS), "timer fired early");
    cr_assert(lt(i64, wall_ns() - start, 10 * NS_PER_SEC));
    eddy_loop_free(loop);
}

Test(timers, equal_deadlines_fire_first_in_first_out, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_virtual_loop();
    enum { N = 64 };
    int order[N];
    struct fired fired = {loop, order, NULL, 0};
    struct shot shots[N];
    for (int i = 0; i < N; i++) {
        shots[i] = (struct shot){&fired, i};
        cr_assert(eq(int, eddy_call_later(loop, 5 * NS_PER_MS, record_cb, &shots[i], NULL), 0));
    }
    cr_assert(eq(int, eddy_loop_run(loop), 0));
    cr_assert(eq(int, fired.count, N));
    for (int i = 0; i < N; i++)
        cr_assert(eq(int, order[i], i));
    eddy_loop_free(loop);
}

Test(timers, zero_delay_fires, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_loop();
    int count = 0;
    cr_assert(eq(int, eddy_call_later(loop, 0, count_cb, &count, NULL), 0));
    cr_assert(eq(int, count, 0), "a timer fired inline");
    cr_assert(eq(int, eddy_loop_run(loop), 0));
    cr_assert(eq(int, count, 1));
    eddy_loop_free(loop);
}

/* ---- owned handles ----------------------------------------------------------- */

Test(timers, cancel_before_firing, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_virtual_loop();
    int count = 0;
    eddy_timer *t = NULL;
    int64_t start = eddy_now(loop);
    cr_assert(eq(int, eddy_call_later(loop, NS_PER_SEC, count_cb, &count, &t), 0));
    cr_assert(ne(ptr, t, NULL));
    cr_assert(eq(int, eddy_timer_cancel(t), 0));
    cr_assert(eq(int, eddy_loop_run(loop), 0));
    cr_assert(eq(int, count, 0), "a cancelled timer fired");
    cr_assert(eq(i64, eddy_now(loop), start), "a cancelled timer still moved virtual time");
    eddy_loop_free(loop);
}

Test(timers, cancel_after_firing, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_virtual_loop();
    int count = 0;
    eddy_timer *t = NULL;
    cr_assert(eq(int, eddy_call_later(loop, NS_PER_MS, count_cb, &count, &t), 0));
    cr_assert(eq(int, eddy_loop_run(loop), 0));
    cr_assert(eq(int, count, 1));
    /* The handle stays valid after firing; cancel releases it (Valgrind checks). */
    cr_assert(eq(int, eddy_timer_cancel(t), -EALREADY));
    eddy_loop_free(loop);
}

Test(timers, owned_timer_fires_once, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_virtual_loop();
    int count = 0;
    eddy_timer *t = NULL;
    cr_assert(eq(int, eddy_call_later(loop, NS_PER_MS, count_cb, &count, &t), 0));
    cr_assert(eq(int, eddy_loop_run(loop), 0));
    cr_assert(eq(int, eddy_loop_run(loop), 0));
    cr_assert(eq(int, count, 1));
    cr_assert(eq(int, eddy_timer_cancel(t), -EALREADY));
    eddy_loop_free(loop);
}

struct canceller {
    eddy_timer *victim;
    int result;
};

static void cancel_cb(void *arg)
{
    struct canceller *c = arg;
    c->result = eddy_timer_cancel(c->victim);
}

Test(timers, cancel_from_another_timer, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_virtual_loop();
    int count = 0;
    struct canceller c = {NULL, 1};
    int64_t start = eddy_now(loop);
    cr_assert(eq(int, eddy_call_later(loop, 20 * NS_PER_MS, count_cb, &count, &c.victim), 0));
    cr_assert(eq(int, eddy_call_later(loop, 10 * NS_PER_MS, cancel_cb, &c, NULL), 0));
    cr_assert(eq(int, eddy_loop_run(loop), 0));
    cr_assert(eq(int, c.result, 0));
    cr_assert(eq(int, count, 0));
    cr_assert(eq(i64, eddy_now(loop) - start, 10 * NS_PER_MS));
    eddy_loop_free(loop);
}

struct rearm {
    eddy_loop *loop;
    int64_t at[3];
    int count;
};

static void rearm_cb(void *arg)
{
    struct rearm *r = arg;
    r->at[r->count++] = eddy_now(r->loop);
    if (r->count < 3)
        cr_assert(eq(int, eddy_call_later(r->loop, 7 * NS_PER_MS, rearm_cb, r, NULL), 0));
}

Test(timers, timer_arms_timer, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_virtual_loop();
    struct rearm r = {loop, {0}, 0};
    int64_t start = eddy_now(loop);
    cr_assert(eq(int, eddy_call_later(loop, 7 * NS_PER_MS, rearm_cb, &r, NULL), 0));
    cr_assert(eq(int, eddy_loop_run(loop), 0));
    cr_assert(eq(int, r.count, 3));
    for (int i = 0; i < 3; i++)
        cr_assert(eq(i64, r.at[i] - start, (i + 1) * 7 * NS_PER_MS));
    eddy_loop_free(loop);
}

/* ---- large counts ----------------------------------------------------------- */

Test(timers, many_random_deadlines_fire_in_order, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_virtual_loop();
    int64_t *delays = malloc(MANY * sizeof(*delays));
    int *order = malloc(MANY * sizeof(*order));
    int64_t *at = malloc(MANY * sizeof(*at));
    struct shot *shots = malloc(MANY * sizeof(*shots));
    cr_assert(delays && order && at && shots);
    struct fired fired = {loop, order, at, 0};
    int64_t start = eddy_now(loop);
    for (int i = 0; i < MANY; i++) {
        /* Few distinct values, so equal deadlines are common too. */
        delays[i] = (int64_t)(rng_next() % 5000) * 1000;
        shots[i] = (struct shot){&fired, i};
        cr_assert(eq(int, eddy_call_later(loop, delays[i], record_cb, &shots[i], NULL), 0));
    }
    cr_assert(eq(int, eddy_loop_run(loop), 0));
    cr_assert(eq(int, fired.count, MANY));
    for (int i = 0; i < MANY; i++) {
        int k = order[i];
        cr_assert(eq(i64, at[i] - start, delays[k]), "timer %d fired at the wrong time", k);
        if (i > 0) {
            int prev = order[i - 1];
            bool in_order = delays[prev] < delays[k] || (delays[prev] == delays[k] && prev < k);
            cr_assert(in_order, "timer %d (delay %lld) fired after %d (delay %lld)", k,
                      (long long)delays[k], prev, (long long)delays[prev]);
        }
    }
    free(delays);
    free(order);
    free(at);
    free(shots);
    eddy_loop_free(loop);
}

Test(timers, many_started_then_cancelled, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_virtual_loop();
    eddy_timer **handles = malloc(MANY * sizeof(*handles));
    cr_assert(ne(ptr, handles, NULL));
    int count = 0;
    int64_t start = eddy_now(loop);
    for (int i = 0; i < MANY; i++) {
        int64_t delay = (int64_t)(rng_next() % 1000000) * 1000 + 1;
        cr_assert(eq(int, eddy_call_later(loop, delay, count_cb, &count, &handles[i]), 0));
    }
    /* Cancel in a scrambled order, so removals hit every part of the queue. */
    for (int i = 0; i < MANY; i++) {
        int j = i + (int)(rng_next() % (uint64_t)(MANY - i));
        eddy_timer *tmp = handles[i];
        handles[i] = handles[j];
        handles[j] = tmp;
        cr_assert(eq(int, eddy_timer_cancel(handles[i]), 0));
    }
    cr_assert(eq(int, eddy_loop_run(loop), 0));
    cr_assert(eq(int, count, 0));
    cr_assert(eq(i64, eddy_now(loop), start));
    free(handles);
    eddy_loop_free(loop);
}

Test(timers, many_half_cancelled, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_virtual_loop();
    eddy_timer **handles = malloc(MANY * sizeof(*handles));
    int *counts = calloc(MANY, sizeof(*counts));
    cr_assert(handles && counts);
    for (int i = 0; i < MANY; i++) {
        int64_t delay = (int64_t)(rng_next() % 100000) * 1000;
        cr_assert(eq(int, eddy_call_later(loop, delay, count_cb, &counts[i], &handles[i]), 0));
    }
    for (int i = 1; i < MANY; i += 2)
        cr_assert(eq(int, eddy_timer_cancel(handles[i]), 0));
    cr_assert(eq(int, eddy_loop_run(loop), 0));
    for (int i = 0; i < MANY; i++)
        cr_assert(eq(int, counts[i], i % 2 == 0), "timer %d", i);
    for (int i = 0; i < MANY; i += 2)
        cr_assert(eq(int, eddy_timer_cancel(handles[i]), -EALREADY));
    free(handles);
    free(counts);
    eddy_loop_free(loop);
}

struct ordered {
    int64_t last_deadline;
    int fired;
    int out_of_order;
};

struct ordered_timer {
    struct ordered *o;
    int64_t deadline;
};

static void ordered_cb(void *arg)
{
    struct ordered_timer *ot = arg;
    if (ot->deadline < ot->o->last_deadline) ot->o->out_of_order++;
    ot->o->last_deadline = ot->deadline;
    ot->o->fired++;
}

/* Cancelling most timers makes the queue drop its cancelled entries in bulk;
 * the survivors must still fire exactly once each, in deadline order. */
Test(timers, mostly_cancelled_survivors_fire_in_order, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_virtual_loop();
    enum { N = 10000 };
    eddy_timer **handles = malloc(N * sizeof(*handles));
    struct ordered_timer *timers = malloc(N * sizeof(*timers));
    cr_assert(handles && timers);
    struct ordered o = {0};
    int64_t start = eddy_now(loop);
    for (int i = 0; i < N; i++) {
        int64_t delay = (int64_t)(rng_next() % 1000000) * 1000;
        timers[i] = (struct ordered_timer){&o, start + delay};
        cr_assert(eq(int, eddy_call_later(loop, delay, ordered_cb, &timers[i], &handles[i]), 0));
    }
    for (int i = 0; i < N; i++)
        if (i % 10 != 0) cr_assert(eq(int, eddy_timer_cancel(handles[i]), 0));
    cr_assert(eq(int, eddy_loop_run(loop), 0));
    cr_assert(eq(int, o.fired, N / 10));
    cr_assert(eq(int, o.out_of_order, 0));
    for (int i = 0; i < N; i += 10)
        cr_assert(eq(int, eddy_timer_cancel(handles[i]), -EALREADY));
    free(handles);
    free(timers);
    eddy_loop_free(loop);
}

/* ---- the clock ---------------------------------------------------------------- */

Test(timers, now_is_monotonic, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_loop();
    int64_t prev = eddy_now(loop);
    cr_assert(ge(i64, prev, 0));
    for (int i = 0; i < MANY; i++) {
        int64_t now = eddy_now(loop);
        cr_assert(ge(i64, now, prev), "eddy_now went backwards");
        prev = now;
    }
    usleep(20 * 1000);
    cr_assert(ge(i64, eddy_now(loop) - prev, 20 * NS_PER_MS));
    eddy_loop_free(loop);
}

Test(timers, virtual_now_stands_still_without_timers, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_virtual_loop();
    int64_t start = eddy_now(loop);
    usleep(20 * 1000);
    cr_assert(eq(i64, eddy_now(loop), start));
    eddy_loop_free(loop);
}

Test(timers, self_freeing_timer_survives_loop_free, .timeout = TEST_TIMEOUT)
{
    /* A timer never fired is released by eddy_loop_free (Valgrind checks). */
    eddy_loop *loop = new_loop();
    int count = 0;
    cr_assert(eq(int, eddy_call_later(loop, NS_PER_HOUR, count_cb, &count, NULL), 0));
    eddy_loop_free(loop);
    cr_assert(eq(int, count, 0));
}

/* ---- the wheel: timers far from due, moved towards the heap as time passes */

enum { ARMED, CANCELLED, FIRED };

struct model {
    eddy_loop *loop;
    int n;
    int64_t start;
    int64_t *delays;
    eddy_timer **handles;
    int *state;
    int *order;
    int64_t *at;
    int fired;
};

struct model_shot {
    struct model *m;
    int index;
};

/* Fires timer index; cancels one other timer still armed, so that timers are
 * also cancelled wherever the wheel holds them when time has moved on. */
static void model_cb(void *arg)
{
    struct model_shot *s = arg;
    struct model *m = s->m;
    cr_assert(eq(int, m->state[s->index], ARMED), "timer %d fired but was not armed", s->index);
    m->state[s->index] = FIRED;
    m->at[m->fired] = eddy_now(m->loop);
    m->order[m->fired++] = s->index;
    int victim = (int)(rng_next() % (uint64_t)m->n);
    if (m->state[victim] == ARMED) {
        cr_assert(eq(int, eddy_timer_cancel(m->handles[victim]), 0));
        m->state[victim] = CANCELLED;
    }
}

/* Delays around every boundary of the timer structures (multiples of 2^24
 * and 2^32 ns, and past 2^40 ns, about 18 minutes), and plain random ones. */
static int64_t model_delay(void)
{
    static const int64_t units[] = {1, 1 << 24, (int64_t)1 << 32, (int64_t)1 << 40};
    int64_t unit = units[rng_next() % 4];
    switch (rng_next() % 4) {
    case 0:
        return (int64_t)(rng_next() % 4) * unit; /* on a boundary */
    case 1:
        return (int64_t)(rng_next() % 300 + 1) * unit - 1; /* just before one */
    case 2:
        return (int64_t)(rng_next() % (uint64_t)(unit * 300)); /* anywhere below */
    default:
        return (int64_t)(rng_next() % 1000) * NS_PER_SEC / 10; /* 0.1 s steps: ties */
    }
}

Test(timers, wheel_levels_fire_in_deadline_order, .timeout = TEST_TIMEOUT)
{
    enum { N = 20000 };
    struct model m = {.loop = new_virtual_loop(), .n = N};
    m.delays = malloc(N * sizeof(*m.delays));
    m.handles = malloc(N * sizeof(*m.handles));
    m.state = malloc(N * sizeof(*m.state));
    m.order = malloc(N * sizeof(*m.order));
    m.at = malloc(N * sizeof(*m.at));
    struct model_shot *shots = malloc(N * sizeof(*shots));
    cr_assert(m.delays && m.handles && m.state && m.order && m.at && shots);
    m.start = eddy_now(m.loop);
    for (int i = 0; i < N; i++) {
        m.delays[i] = model_delay();
        m.state[i] = ARMED;
        shots[i] = (struct model_shot){&m, i};
        cr_assert(
            eq(int, eddy_call_later(m.loop, m.delays[i], model_cb, &shots[i], &m.handles[i]), 0));
    }
    for (int i = 0; i < N; i += 3) { /* a third cancelled before anything runs */
        cr_assert(eq(int, eddy_timer_cancel(m.handles[i]), 0));
        m.state[i] = CANCELLED;
    }
    cr_assert(eq(int, eddy_loop_run(m.loop), 0));
    int armed = 0;
    for (int i = 0; i < N; i++)
        armed += m.state[i] == ARMED;
    cr_assert(eq(int, armed, 0), "%d timers never fired", armed);
    for (int i = 0; i < m.fired; i++) {
        int k = m.order[i];
        cr_assert(eq(i64, m.at[i] - m.start, m.delays[k]), "timer %d fired at the wrong time", k);
        if (i > 0) {
            int prev = m.order[i - 1];
            bool in_order =
                m.delays[prev] < m.delays[k] || (m.delays[prev] == m.delays[k] && prev < k);
            cr_assert(in_order, "timer %d (delay %lld) fired after %d (delay %lld)", k,
                      (long long)m.delays[k], prev, (long long)m.delays[prev]);
        }
    }
    for (int i = 0; i < N; i++)
        if (m.state[i] == FIRED) cr_assert(eq(int, eddy_timer_cancel(m.handles[i]), -EALREADY));
    cr_assert(m.fired > N / 3, "only %d timers fired", m.fired);
    free(m.delays);
    free(m.handles);
    free(m.state);
    free(m.order);
    free(m.at);
    free(shots);
    eddy_loop_free(m.loop);
}

Test(timers, cancelled_far_timers_let_the_loop_end, .timeout = TEST_TIMEOUT)
{
    /* Real clock: were a cancelled timer still waited for, this would hang. */
    eddy_loop *loop = new_loop();
    eddy_timer *t[3];
    int count = 0;
    cr_assert(eq(int, eddy_call_later(loop, NS_PER_SEC, count_cb, &count, &t[0]), 0));
    cr_assert(eq(int, eddy_call_later(loop, NS_PER_HOUR, count_cb, &count, &t[1]), 0));
    cr_assert(eq(int, eddy_call_later(loop, 100 * NS_PER_HOUR, count_cb, &count, &t[2]), 0));
    for (int i = 0; i < 3; i++)
        cr_assert(eq(int, eddy_timer_cancel(t[i]), 0));
    cr_assert(eq(int, eddy_loop_run(loop), 0));
    cr_assert(eq(int, count, 0));
    eddy_loop_free(loop);
}

Test(timers, fired_handle_released_after_loop_free, .timeout = TEST_TIMEOUT)
{
    /* The handle outlives its loop; releasing it must not touch the loop
     * (AddressSanitizer saw a use after free here). */
    eddy_loop *loop = new_virtual_loop();
    eddy_timer *fired, *armed;
    int count = 0;
    cr_assert(eq(int, eddy_call_later(loop, NS_PER_MS, count_cb, &count, &fired), 0));
    cr_assert(eq(int, eddy_loop_run(loop), 0));
    cr_assert(eq(int, count, 1));
    cr_assert(eq(int, eddy_call_later(loop, NS_PER_HOUR, count_cb, &count, &armed), 0));
    eddy_loop_free(loop);
    cr_assert(eq(int, eddy_timer_cancel(fired), -EALREADY));
    cr_assert(eq(int, eddy_timer_cancel(armed), 0));
    cr_assert(eq(int, count, 1));
}
