/* SPDX-License-Identifier: MIT */
/* Queues: FIFO, LIFO and priority order, bounds, arrival order of blocked
 * putters and getters (no barging), cancellation before, while and after a
 * waiter is chosen (asyncio's Queue lost items this way: python/asyncio
 * #270), task_done/join, shutdown both ways, freeing with waiters, bad input,
 * and a million items through a bounded queue under random cancellations. */
#include "helpers.h"

static eddy_queue *queue_with(size_t maxsize, int order, int (*compare)(intptr_t, intptr_t))
{
    eddy_queue_options o = {.maxsize = maxsize, .order = order, .compare = compare};
    eddy_queue *q = NULL;
    cr_assert(eq(int, eddy_queue_new(&q, &o), 0));
    return q;
}

static int by_value(intptr_t a, intptr_t b)
{
    return (a > b) - (a < b);
}

/* By tens only: items with the same tens are equal. */
static int by_tens(intptr_t a, intptr_t b)
{
    return by_value(a / 10, b / 10);
}

static void expect_items(eddy_queue *q, const intptr_t *want, int n)
{
    for (int i = 0; i < n; i++) {
        intptr_t v = -1;
        cr_assert(eq(int, eddy_queue_try_get(q, &v), 0), "item %d", i);
        cr_expect(eq(iptr, v, want[i]), "item %d", i);
    }
    cr_expect(eq(int, eddy_queue_try_get(q, NULL), -EAGAIN));
}

Test(queue, orders, .timeout = TEST_TIMEOUT)
{
    const intptr_t in[] = {5, 1, 4, 2, 3};
    eddy_queue *fifo = queue_with(0, EDDY_QUEUE_FIFO, NULL);
    eddy_queue *lifo = queue_with(0, EDDY_QUEUE_LIFO, NULL);
    eddy_queue *prio = queue_with(0, EDDY_QUEUE_PRIORITY, by_value);
    for (int i = 0; i < 5; i++) {
        cr_assert(eq(int, eddy_queue_try_put(fifo, in[i]), 0));
        cr_assert(eq(int, eddy_queue_try_put(lifo, in[i]), 0));
        cr_assert(eq(int, eddy_queue_try_put(prio, in[i]), 0));
    }
    cr_expect(eq(long, (long)eddy_queue_size(fifo), 5));
    expect_items(fifo, (const intptr_t[]){5, 1, 4, 2, 3}, 5);
    expect_items(lifo, (const intptr_t[]){3, 2, 4, 1, 5}, 5);
    expect_items(prio, (const intptr_t[]){1, 2, 3, 4, 5}, 5);
    eddy_queue_free(fifo);
    eddy_queue_free(lifo);
    eddy_queue_free(prio);

    /* Equal priorities come out in the order they went in. */
    eddy_queue *tens = queue_with(0, EDDY_QUEUE_PRIORITY, by_tens);
    const intptr_t t_in[] = {21, 11, 22, 12, 23, 13, 1, 14};
    for (int i = 0; i < 8; i++)
        cr_assert(eq(int, eddy_queue_try_put(tens, t_in[i]), 0));
    expect_items(tens, (const intptr_t[]){1, 11, 12, 13, 14, 21, 22, 23}, 8);
    eddy_queue_free(tens);

    /* A FIFO ring that wraps and grows keeps its order. */
    eddy_queue *ring = queue_with(0, EDDY_QUEUE_FIFO, NULL);
    intptr_t next_in = 0, next_out = 0;
    for (int round = 0; round < 50; round++) {
        for (int i = 0; i < 7 + round; i++)
            cr_assert(eq(int, eddy_queue_try_put(ring, next_in++), 0));
        for (int i = 0; i < 5 + round; i++) {
            intptr_t v;
            cr_assert(eq(int, eddy_queue_try_get(ring, &v), 0));
            cr_assert(eq(iptr, v, next_out++));
        }
    }
    cr_expect(eq(long, (long)eddy_queue_size(ring), (long)(next_in - next_out)));
    eddy_queue_free(ring);
}

Test(queue, bounds_and_bad_input, .timeout = TEST_TIMEOUT)
{
    eddy_queue *q = NULL;
    cr_assert(eq(int, eddy_queue_new(&q, NULL), 0)); /* unbounded FIFO */
    for (int i = 0; i < 1000; i++)
        cr_assert(eq(int, eddy_queue_try_put(q, i), 0));
    cr_expect(eq(long, (long)eddy_queue_size(q), 1000));
    eddy_queue_free(q);

    q = queue_with(2, EDDY_QUEUE_FIFO, NULL);
    cr_expect(eq(int, eddy_queue_try_get(q, NULL), -EAGAIN));
    cr_expect(eq(int, eddy_queue_try_put(q, 1), 0));
    cr_expect(eq(int, eddy_queue_try_put(q, 2), 0));
    cr_expect(eq(int, eddy_queue_try_put(q, 3), -EAGAIN));
    cr_expect(eq(long, (long)eddy_queue_size(q), 2));
    /* Outside a task the waiting calls are refused. */
    intptr_t v;
    cr_expect(eq(int, eddy_queue_put(q, 3), -EPERM));
    cr_expect(eq(int, eddy_queue_get(q, &v), -EPERM));
    cr_expect(eq(int, eddy_queue_join(q), -EPERM));
    /* task_done: no more than were put. */
    cr_expect(eq(int, eddy_queue_task_done(q), 0));
    cr_expect(eq(int, eddy_queue_task_done(q), 0));
    cr_expect(eq(int, eddy_queue_task_done(q), -EINVAL));
    eddy_queue_free(q);

    eddy_queue_options bad = {.order = 3};
    cr_expect(eq(int, eddy_queue_new(&q, &bad), -EINVAL));
    bad.order = -1;
    cr_expect(eq(int, eddy_queue_new(&q, &bad), -EINVAL));
    bad.order = EDDY_QUEUE_PRIORITY; /* without compare */
    cr_expect(eq(int, eddy_queue_new(&q, &bad), -EINVAL));
    bad = (eddy_queue_options){.maxsize = SIZE_MAX};
    cr_expect(eq(int, eddy_queue_new(&q, &bad), -EINVAL));
    cr_expect(eq(int, eddy_queue_new(NULL, NULL), -EINVAL));
    cr_expect(eq(int, eddy_queue_put(NULL, 1), -EINVAL));
    cr_expect(eq(int, eddy_queue_get(NULL, &v), -EINVAL));
    cr_expect(eq(int, eddy_queue_try_put(NULL, 1), -EINVAL));
    cr_expect(eq(int, eddy_queue_try_get(NULL, &v), -EINVAL));
    cr_expect(eq(long, (long)eddy_queue_size(NULL), -EINVAL));
    cr_expect(eq(int, eddy_queue_task_done(NULL), -EINVAL));
    cr_expect(eq(int, eddy_queue_join(NULL), -EINVAL));
    cr_expect(eq(int, eddy_queue_shutdown(NULL, false), -EINVAL));
    eddy_queue_free(NULL);
}

/* ---- waiters --------------------------------------------------------------------- */

struct qctx {
    eddy_queue *q;
    struct trace tr;
};

struct qactor {
    struct qctx *c;
    char name;
    intptr_t item; /* put: what to put; get: what was got */
    int result;
    eddy_task *task;
};

static intptr_t getter(void *arg)
{
    struct qactor *a = arg;
    a->result = eddy_queue_get(a->c->q, &a->item);
    if (a->result == 0) trace_add(&a->c->tr, (char)a->item);
    return a->result;
}

static intptr_t putter(void *arg)
{
    struct qactor *a = arg;
    a->result = eddy_queue_put(a->c->q, a->item);
    if (a->result == 0) trace_add(&a->c->tr, a->name);
    return a->result;
}

static intptr_t joiner(void *arg)
{
    struct qactor *a = arg;
    a->result = eddy_queue_join(a->c->q);
    if (a->result == 0) trace_add(&a->c->tr, a->name);
    return a->result;
}

static void qstart(eddy_task_fn fn, struct qactor *a, struct qctx *c, char name, intptr_t item)
{
    a->c = c;
    a->name = name;
    a->item = item;
    a->result = 1;
    a->task = eddy_spawn(NULL, fn, a);
    cr_assert(ne(ptr, a->task, NULL));
}

static void qjoin(struct qactor *a, int n)
{
    for (int i = 0; i < n; i++)
        eddy_task_join(a[i].task, NULL);
}

static void settle(void)
{
    for (int i = 0; i < 4; i++)
        cr_assert(eq(int, eddy_yield(), 0));
}

static void scenario(eddy_task_fn fn, size_t maxsize)
{
    struct qctx c = {.q = queue_with(maxsize, EDDY_QUEUE_FIFO, NULL)};
    eddy_loop *loop = new_virtual_loop();
    int err = run_task(loop, fn, &c, NULL);
    eddy_loop_free(loop);
    cr_assert(eq(int, err, 0), "scenario: %s", eddy_strerror(err));
    eddy_queue_free(c.q);
}

/* Getters wait in arrival order; an item put while they wait is theirs (the
 * putter cannot take it back). */
static intptr_t getters_fifo(void *arg)
{
    struct qctx *c = arg;
    struct qactor g[3];
    for (int i = 0; i < 3; i++)
        qstart(getter, &g[i], c, (char)('A' + i), 0);
    settle();
    cr_assert(eq(int, eddy_queue_put(c->q, 'x'), 0));
    cr_expect(eq(long, (long)eddy_queue_size(c->q), 1)); /* until the getter runs */
    cr_expect(eq(int, eddy_queue_try_get(c->q, NULL), -EAGAIN));
    cr_assert(eq(int, eddy_queue_put(c->q, 'y'), 0));
    cr_assert(eq(int, eddy_queue_put(c->q, 'z'), 0));
    qjoin(g, 3);
    cr_expect(eq(iptr, g[0].item, 'x'));
    cr_expect(eq(iptr, g[1].item, 'y'));
    cr_expect(eq(iptr, g[2].item, 'z'));
    cr_expect(eq(long, (long)eddy_queue_size(c->q), 0));
    return 0;
}

/* eddy_queue_options grows by its size (docs/decisions.md), as the loop's do. */
Test(queue, options_by_size, .timeout = TEST_TIMEOUT)
{
    eddy_queue *q = NULL;
    eddy_queue_options first = {.maxsize = 2, .order = EDDY_QUEUE_LIFO}; /* size 0 */
    cr_assert(eq(int, eddy_queue_new(&q, &first), 0));
    cr_assert(eq(int, eddy_queue_try_put(q, 1), 0));
    cr_assert(eq(int, eddy_queue_try_put(q, 2), 0));
    cr_assert(eq(int, eddy_queue_try_put(q, 3), -EAGAIN), "maxsize read from a size-0 struct");
    intptr_t item = 0;
    cr_assert(eq(int, eddy_queue_try_get(q, &item), 0));
    cr_assert(eq(iptr, item, 2), "order read from a size-0 struct");
    eddy_queue_free(q);

    eddy_queue_options sized = EDDY_QUEUE_OPTIONS_INIT(.maxsize = 1);
    cr_assert(eq(int, eddy_queue_new(&q, &sized), 0));
    eddy_queue_free(q);

    eddy_queue_options odd = {.size = 3};
    cr_assert(eq(int, eddy_queue_new(&q, &odd), -EINVAL), "a size that is no layout's");
    /* A later release's larger struct: fine while what this library does not
     * know is zero, refused otherwise. */
    struct {
        eddy_queue_options known;
        uint64_t later;
    } bigger = {.known = {.size = sizeof bigger, .maxsize = 1}};
    cr_assert(eq(int, eddy_queue_new(&q, &bigger.known), 0));
    eddy_queue_free(q);
    bigger.later = 1;
    cr_assert(eq(int, eddy_queue_new(&q, &bigger.known), -EINVAL));
}

Test(queue, getters_are_served_in_arrival_order, .timeout = TEST_TIMEOUT)
{
    scenario(getters_fifo, 0);
}

/* Putters blocked on a full queue get in in arrival order. */
static intptr_t putters_fifo(void *arg)
{
    struct qctx *c = arg;
    cr_assert(eq(int, eddy_queue_put(c->q, 'a'), 0));
    cr_assert(eq(int, eddy_queue_put(c->q, 'b'), 0));
    struct qactor p[3];
    for (int i = 0; i < 3; i++)
        qstart(putter, &p[i], c, (char)('C' + i), 'c' + i);
    settle();
    cr_expect(eq(str, c->tr.buf, ""));
    intptr_t got[5];
    for (int i = 0; i < 5; i++) {
        cr_assert(eq(int, eddy_queue_get(c->q, &got[i]), 0));
        /* A slot freed for a putter is not for a try_put. */
        if (i < 3) cr_expect(eq(int, eddy_queue_try_put(c->q, 'X'), -EAGAIN));
        settle();
    }
    qjoin(p, 3);
    for (int i = 0; i < 5; i++)
        cr_expect(eq(iptr, got[i], 'a' + i));
    cr_expect(eq(str, c->tr.buf, "CDE"));
    return 0;
}

Test(queue, putters_are_served_in_arrival_order, .timeout = TEST_TIMEOUT)
{
    scenario(putters_fifo, 2);
}

/* python/asyncio #270: a getter chosen for an item and cancelled before it
 * runs must leave the item to the next getter. */
static intptr_t get_cancelled_after_chosen(void *arg)
{
    struct qctx *c = arg;
    struct qactor g[3];
    for (int i = 0; i < 3; i++)
        qstart(getter, &g[i], c, (char)('A' + i), 0);
    settle();
    eddy_task_cancel(g[1].task);                      /* while waiting */
    cr_assert(eq(int, eddy_queue_put(c->q, 'x'), 0)); /* chosen: A */
    eddy_task_cancel(g[0].task);
    settle();
    cr_expect(eq(int, g[0].result, -ECANCELED));
    cr_expect(eq(int, g[1].result, -ECANCELED));
    cr_expect(eq(int, g[2].result, 0));
    cr_expect(eq(iptr, g[2].item, 'x'));
    /* With nobody waiting, the item stays in the queue. */
    qjoin(&g[0], 1);
    qstart(getter, &g[0], c, 'A', 0);
    settle();
    cr_assert(eq(int, eddy_queue_put(c->q, 'y'), 0));
    eddy_task_cancel(g[0].task);
    qjoin(g, 3);
    cr_expect(eq(int, g[0].result, -ECANCELED));
    intptr_t v = 0;
    cr_expect(eq(int, eddy_queue_try_get(c->q, &v), 0));
    cr_expect(eq(iptr, v, 'y'));
    cr_expect(eq(str, c->tr.buf, "x"));
    return 0;
}

Test(queue, getter_cancelled_after_chosen_leaves_the_item, .timeout = TEST_TIMEOUT)
{
    scenario(get_cancelled_after_chosen, 0);
}

/* A putter given a slot and cancelled before it runs: its item never gets
 * in, the slot goes to the next putter. One cancelled while it waits: its
 * item never gets in either. */
static intptr_t put_cancelled_after_chosen(void *arg)
{
    struct qctx *c = arg;
    cr_assert(eq(int, eddy_queue_put(c->q, 'a'), 0));
    struct qactor p[3];
    qstart(putter, &p[0], c, 'B', 'b');
    qstart(putter, &p[1], c, 'C', 'c');
    qstart(putter, &p[2], c, 'D', 'd');
    settle();
    eddy_task_cancel(p[1].task); /* while waiting */
    intptr_t v = 0;
    cr_assert(eq(int, eddy_queue_get(c->q, &v), 0)); /* frees the slot: chosen, B */
    cr_expect(eq(iptr, v, 'a'));
    eddy_task_cancel(p[0].task);
    settle();
    qjoin(p, 3);
    cr_expect(eq(int, p[0].result, -ECANCELED));
    cr_expect(eq(int, p[1].result, -ECANCELED));
    cr_expect(eq(int, p[2].result, 0));
    cr_expect(eq(long, (long)eddy_queue_size(c->q), 1));
    cr_expect(eq(int, eddy_queue_get(c->q, &v), 0));
    cr_expect(eq(iptr, v, 'd'));
    return 0;
}

Test(queue, putter_cancelled_after_chosen_passes_the_slot, .timeout = TEST_TIMEOUT)
{
    scenario(put_cancelled_after_chosen, 1);
}

static intptr_t cancelled_before(void *arg)
{
    struct qctx *c = arg;
    cr_assert(eq(int, eddy_queue_put(c->q, 1), 0));
    eddy_task_cancel(eddy_task_current());
    intptr_t v = 0;
    cr_expect(eq(int, eddy_queue_get(c->q, &v), -ECANCELED));
    cr_expect(eq(int, eddy_queue_put(c->q, 2), -ECANCELED));
    cr_expect(eq(int, eddy_queue_join(c->q), -ECANCELED));
    cr_expect(eq(long, (long)eddy_queue_size(c->q), 1));
    /* The calls that never wait still work. */
    cr_expect(eq(int, eddy_queue_try_get(c->q, &v), 0));
    cr_expect(eq(int, eddy_queue_task_done(c->q), 0));
    return 0;
}

static intptr_t cancelled_before_main(void *arg)
{
    eddy_task *t = eddy_spawn(NULL, cancelled_before, arg);
    cr_assert(eq(int, eddy_task_join(t, NULL), 0));
    return 0;
}

Test(queue, cancelled_task_waits_for_nothing, .timeout = TEST_TIMEOUT)
{
    scenario(cancelled_before_main, 0);
}

/* ---- join ------------------------------------------------------------------------- */

static intptr_t join_main(void *arg)
{
    struct qctx *c = arg;
    struct qactor j[2];
    cr_expect(eq(int, eddy_queue_join(c->q), 0)); /* nothing put: at once */
    cr_assert(eq(int, eddy_queue_put(c->q, 1), 0));
    cr_assert(eq(int, eddy_queue_put(c->q, 2), 0));
    qstart(joiner, &j[0], c, 'J', 0);
    qstart(joiner, &j[1], c, 'K', 0);
    settle();
    cr_assert(eq(int, eddy_queue_get(c->q, NULL), 0));
    cr_assert(eq(int, eddy_queue_get(c->q, NULL), 0));
    cr_assert(eq(int, eddy_queue_task_done(c->q), 0));
    eddy_task_cancel(j[1].task);
    settle();
    cr_expect(eq(str, c->tr.buf, ""));
    cr_assert(eq(int, eddy_queue_task_done(c->q), 0));
    cr_expect(eq(int, eddy_queue_task_done(c->q), -EINVAL));
    qjoin(j, 2);
    cr_expect(eq(int, j[0].result, 0));
    cr_expect(eq(int, j[1].result, -ECANCELED));
    return 0;
}

Test(queue, join_waits_for_task_done, .timeout = TEST_TIMEOUT)
{
    scenario(join_main, 0);
}

/* ---- shutdown ----------------------------------------------------------------------- */

/* Not immediate: waiting putters and later puts fail; gets drain, then fail. */
static intptr_t shutdown_drains(void *arg)
{
    struct qctx *c = arg;
    cr_assert(eq(int, eddy_queue_put(c->q, 'a'), 0));
    cr_assert(eq(int, eddy_queue_put(c->q, 'b'), 0));
    struct qactor p, g[3], j;
    qstart(putter, &p, c, 'P', 'p');
    qstart(joiner, &j, c, 'J', 0);
    settle();
    cr_assert(eq(int, eddy_queue_shutdown(c->q, false), 0));
    cr_expect(eq(int, eddy_queue_put(c->q, 'x'), -EPIPE));
    cr_expect(eq(int, eddy_queue_try_put(c->q, 'x'), -EPIPE));
    for (int i = 0; i < 3; i++)
        qstart(getter, &g[i], c, (char)('A' + i), 0);
    qjoin(g, 3);
    qjoin(&p, 1);
    cr_expect(eq(int, p.result, -EPIPE));
    cr_expect(eq(int, g[0].result, 0));
    cr_expect(eq(int, g[1].result, 0));
    cr_expect(eq(int, g[2].result, -EPIPE));
    cr_expect(eq(str, c->tr.buf, "ab"));
    cr_expect(eq(int, eddy_queue_try_get(c->q, NULL), -EPIPE));
    cr_expect(eq(int, j.result, 1), "join returned before task_done");
    cr_assert(eq(int, eddy_queue_task_done(c->q), 0));
    cr_assert(eq(int, eddy_queue_task_done(c->q), 0));
    qjoin(&j, 1);
    cr_expect(eq(int, j.result, 0));
    return 0;
}

Test(queue, shutdown_lets_gets_drain, .timeout = TEST_TIMEOUT)
{
    scenario(shutdown_drains, 2);
}

/* Waiting getters of an empty queue get -EPIPE at shutdown. */
static intptr_t shutdown_wakes_getters(void *arg)
{
    struct qctx *c = arg;
    struct qactor g[2];
    qstart(getter, &g[0], c, 'A', 0);
    qstart(getter, &g[1], c, 'B', 0);
    settle();
    cr_assert(eq(int, eddy_queue_shutdown(c->q, false), 0));
    qjoin(g, 2);
    cr_expect(eq(int, g[0].result, -EPIPE));
    cr_expect(eq(int, g[1].result, -EPIPE));
    return 0;
}

Test(queue, shutdown_wakes_waiting_getters, .timeout = TEST_TIMEOUT)
{
    scenario(shutdown_wakes_getters, 0);
}

/* Immediate: the items are dropped and count as done, so join returns;
 * waiting putters fail. */
static intptr_t shutdown_immediate(void *arg)
{
    struct qctx *c = arg;
    struct qactor j, p;
    cr_assert(eq(int, eddy_queue_put(c->q, 'a'), 0)); /* full */
    qstart(putter, &p, c, 'P', 'p');
    qstart(joiner, &j, c, 'J', 0);
    settle();
    cr_expect(eq(int, j.result, 1), "join returned with an item not done");
    cr_assert(eq(int, eddy_queue_shutdown(c->q, true), 0));
    cr_expect(eq(long, (long)eddy_queue_size(c->q), 0));
    qjoin(&p, 1);
    qjoin(&j, 1);
    cr_expect(eq(int, p.result, -EPIPE));
    cr_expect(eq(int, j.result, 0));
    cr_expect(eq(int, eddy_queue_task_done(c->q), -EINVAL));
    cr_expect(eq(int, eddy_queue_get(c->q, NULL), -EPIPE));
    return 0;
}

Test(queue, shutdown_immediate_drops_the_items, .timeout = TEST_TIMEOUT)
{
    scenario(shutdown_immediate, 1);
}

/* Immediate, with an item set aside for a getter that has not run yet: the
 * getter finds the queue empty (-EPIPE); a put started after fails. */
static intptr_t shutdown_immediate_chosen_getter(void *arg)
{
    struct qctx *c = arg;
    struct qactor g, p;
    qstart(getter, &g, c, 'G', 0);
    settle();
    cr_assert(eq(int, eddy_queue_put(c->q, 'a'), 0)); /* set aside for G */
    qstart(putter, &p, c, 'P', 'p');
    cr_assert(eq(int, eddy_queue_shutdown(c->q, true), 0));
    qjoin(&g, 1);
    qjoin(&p, 1);
    cr_expect(eq(int, g.result, -EPIPE));
    cr_expect(eq(int, p.result, -EPIPE));
    cr_expect(eq(int, eddy_queue_join(c->q), 0));
    return 0;
}

Test(queue, shutdown_immediate_reaches_chosen_getters, .timeout = TEST_TIMEOUT)
{
    scenario(shutdown_immediate_chosen_getter, 1);
}

/* ---- free with waiters -------------------------------------------------------------- */

static intptr_t free_with_waiters(void *arg)
{
    struct qctx *c = arg;
    struct qctx full = {.q = queue_with(1, EDDY_QUEUE_FIFO, NULL)};
    struct qactor g[2], p[2], j;
    qstart(getter, &g[0], c, 'A', 0);
    qstart(getter, &g[1], c, 'B', 0);
    cr_assert(eq(int, eddy_queue_put(full.q, 'f'), 0));
    qstart(putter, &p[0], &full, 'P', 'p');
    qstart(putter, &p[1], &full, 'Q', 'q');
    qstart(joiner, &j, &full, 'J', 0);
    settle();
    cr_assert(eq(int, eddy_queue_put(c->q, 'x'), 0));    /* set aside for A */
    cr_assert(eq(int, eddy_queue_get(full.q, NULL), 0)); /* a slot set aside for P */
    eddy_queue_free(c->q);
    eddy_queue_free(full.q);
    c->q = NULL;
    qjoin(g, 2);
    qjoin(p, 2);
    qjoin(&j, 1);
    cr_expect(eq(int, g[0].result, -ECANCELED));
    cr_expect(eq(int, g[1].result, -ECANCELED));
    cr_expect(eq(int, p[0].result, -ECANCELED));
    cr_expect(eq(int, p[1].result, -ECANCELED));
    cr_expect(eq(int, j.result, -ECANCELED));
    return 0;
}

Test(queue, freeing_wakes_waiters_with_ecanceled, .timeout = TEST_TIMEOUT)
{
    scenario(free_with_waiters, 0);
}

/* ---- stress --------------------------------------------------------------------------- */

/* 1 000 000 items through a queue of 8 between 4 producers and 4
 * consumers, while the main task cancels one of them at random every few
 * turns (while it waits, after it was chosen, or before it started) and
 * starts another in its place. A producer whose put is cancelled hands the
 * item back; a consumer records what it got. Every item must be got exactly
 * once. */
#define STRESS_ITEMS   1000000
#define STRESS_WORKERS 4
#define STRESS_MAXSIZE 8

struct stress {
    eddy_queue *q;
    uint8_t *seen;
    intptr_t next;         /* the next item never produced */
    intptr_t returned[64]; /* items whose put was cancelled */
    int nreturned;
    long got, duplicates, cancelled_puts, cancelled_gets;
};

/* The next item to put (false when all were put), and back if not put. */
static bool stress_pick(struct stress *s, intptr_t *item)
{
    if (s->nreturned)
        *item = s->returned[--s->nreturned];
    else if (s->next < STRESS_ITEMS)
        *item = s->next++;
    else
        return false;
    return true;
}

static void stress_unpick(struct stress *s, intptr_t item)
{
    s->returned[s->nreturned++] = item;
}

static void stress_record(struct stress *s, intptr_t item)
{
    if (s->seen[item]++) s->duplicates++;
    s->got++;
}

static intptr_t stress_producer(void *arg)
{
    struct stress *s = arg;
    intptr_t item;
    while (stress_pick(s, &item)) {
        int err = eddy_queue_put(s->q, item);
        if (err < 0) {
            stress_unpick(s, item);
            s->cancelled_puts++;
            return err;
        }
    }
    return 0;
}

static intptr_t stress_consumer(void *arg)
{
    struct stress *s = arg;
    for (;;) {
        intptr_t item;
        int err = eddy_queue_get(s->q, &item);
        if (err == -ECANCELED) s->cancelled_gets++;
        if (err < 0) return err;
        stress_record(s, item);
    }
}

/* Sometimes the main task gets or puts an item itself right before it
 * cancels: that chooses a waiting putter or getter, which is then often the
 * one cancelled, before it ran. */
static void stress_choose(struct stress *s, bool producer)
{
    intptr_t item;
    if (producer) {
        if (eddy_queue_try_get(s->q, &item) == 0) stress_record(s, item);
    } else if (stress_pick(s, &item) && eddy_queue_try_put(s->q, item) < 0) {
        stress_unpick(s, item);
    }
}

static uint32_t rng_next(uint32_t *state) /* xorshift32 */
{
    *state ^= *state << 13;
    *state ^= *state >> 17;
    *state ^= *state << 5;
    return *state;
}

/* Replaces the workers that have ended; producers only while work is left. */
static void stress_refill(struct stress *s, eddy_task **producers, eddy_task **consumers)
{
    for (int i = 0; i < STRESS_WORKERS; i++) {
        if (producers[i] && eddy_future_done(eddy_task_future(producers[i]))) {
            eddy_task_join(producers[i], NULL);
            producers[i] = NULL;
        }
        if (!producers[i] && (s->nreturned || s->next < STRESS_ITEMS))
            cr_assert(ne(ptr, producers[i] = eddy_spawn(NULL, stress_producer, s), NULL));
        if (consumers[i] && eddy_future_done(eddy_task_future(consumers[i]))) {
            eddy_task_join(consumers[i], NULL);
            consumers[i] = NULL;
        }
        if (!consumers[i])
            cr_assert(ne(ptr, consumers[i] = eddy_spawn(NULL, stress_consumer, s), NULL));
    }
}

static intptr_t stress_main(void *arg)
{
    struct stress *s = arg;
    eddy_task *producers[STRESS_WORKERS] = {0}, *consumers[STRESS_WORKERS] = {0};
    uint32_t rng = 12345;
    long cancels = 0, stalled = 0, last_got = 0;
    while (s->got < STRESS_ITEMS) {
        stress_refill(s, producers, consumers);
        uint32_t r = rng_next(&rng);
        if (r % 4 == 0) {
            bool producer = (r >> 8) & 1;
            if ((r >> 9) & 1) stress_choose(s, producer);
            uint32_t who = (r >> 10) % STRESS_WORKERS;
            eddy_task *t = producer ? producers[who] : consumers[who];
            if (t && eddy_task_cancel(t)) cancels++;
        }
        cr_assert(eq(int, eddy_yield(), 0));
        bool producing = s->nreturned || s->next < STRESS_ITEMS;
        for (int i = 0; i < STRESS_WORKERS && !producing; i++)
            producing = producers[i] && !eddy_future_done(eddy_task_future(producers[i]));
        /* Everything put and the queue empty, yet items missing: lost. */
        if (!producing && eddy_queue_size(s->q) == 0 && s->got < STRESS_ITEMS) break;
        /* Nothing got for many turns: a wake-up was lost. */
        stalled = s->got == last_got ? stalled + 1 : 0;
        last_got = s->got;
        cr_assert(lt(long, stalled, 10000), "no progress at %ld items", s->got);
    }
    cr_assert(eq(int, eddy_queue_shutdown(s->q, false), 0));
    for (int i = 0; i < STRESS_WORKERS; i++) {
        if (producers[i]) eddy_task_join(producers[i], NULL);
        if (consumers[i]) eddy_task_join(consumers[i], NULL);
    }
    cr_log_info("stress: %ld cancellations, %ld puts and %ld gets cancelled", cancels,
                s->cancelled_puts, s->cancelled_gets);
    cr_expect(gt(long, s->cancelled_puts, 100));
    cr_expect(gt(long, s->cancelled_gets, 100));
    return 0;
}

Test(queue, a_million_items_under_random_cancellation, .timeout = TEST_TIMEOUT)
{
    struct stress s = {.q = queue_with(STRESS_MAXSIZE, EDDY_QUEUE_FIFO, NULL)};
    s.seen = calloc(STRESS_ITEMS, 1);
    cr_assert(ne(ptr, s.seen, NULL));
    eddy_loop *loop = new_loop();
    int64_t t0 = wall_ns();
    cr_assert(eq(int, run_task(loop, stress_main, &s, NULL), 0));
    int64_t wall = wall_ns() - t0;
    eddy_loop_free(loop);
    long missing = 0;
    for (long i = 0; i < STRESS_ITEMS; i++)
        missing += s.seen[i] == 0;
    cr_expect(eq(long, s.got, STRESS_ITEMS));
    cr_expect(eq(long, missing, 0));
    cr_expect(eq(long, s.duplicates, 0));
    cr_expect(eq(long, (long)eddy_queue_size(s.q), 0));
    cr_log_info("stress: %lld ms", (long long)(wall / NS_PER_MS));
    free(s.seen);
    eddy_queue_free(s.q);
}

/* ---- timeout scopes ------------------------------------------------------------------ */

/* A get and a put under timeout scopes expire without taking or leaving an
 * item; the queue works as before afterwards. */
static intptr_t scoped_waits(void *arg)
{
    struct qctx *c = arg;
    eddy_timeout scope;
    intptr_t v = 0;
    cr_assert(eq(int, eddy_timeout_begin(&scope, 5 * NS_PER_MS), 0));
    cr_expect(eq(int, eddy_queue_get(c->q, &v), -ECANCELED));
    cr_expect(eq(int, eddy_timeout_end(&scope), -ETIMEDOUT));
    cr_assert(eq(int, eddy_queue_put(c->q, 'a'), 0)); /* full now */
    cr_assert(eq(int, eddy_timeout_begin(&scope, 5 * NS_PER_MS), 0));
    cr_expect(eq(int, eddy_queue_put(c->q, 'b'), -ECANCELED));
    cr_expect(eq(int, eddy_timeout_end(&scope), -ETIMEDOUT));
    cr_expect(eq(long, (long)eddy_queue_size(c->q), 1));
    cr_expect(eq(int, eddy_queue_get(c->q, &v), 0));
    cr_expect(eq(iptr, v, 'a'));
    cr_expect(eq(int, eddy_queue_try_get(c->q, &v), -EAGAIN));
    return 0;
}

Test(queue, timeout_scopes_end_waits_cleanly, .timeout = TEST_TIMEOUT)
{
    scenario(scoped_waits, 1);
}
