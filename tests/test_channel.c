/* SPDX-License-Identifier: MIT */
/* eddy_channel: items between loops on different threads in order and none
 * lost, MPMC, close, plain threads that block, and cancelled waiters. */
#include <pthread.h>

#include "helpers.h"

#define ITEMS 100000

Test(channel, bad_input)
{
    eddy_channel *ch = NULL;
    cr_expect(eq(int, eddy_channel_new(NULL, 1), -EINVAL));
    cr_expect(eq(int, eddy_channel_new(&ch, 0), -EINVAL));
    cr_expect(eq(ptr, ch, NULL));
    cr_expect(eq(int, eddy_channel_send(NULL, 1), -EINVAL));
    cr_expect(eq(int, eddy_channel_recv(NULL, NULL), -EINVAL));
    cr_expect(eq(int, eddy_channel_try_send(NULL, 1), -EINVAL));
    cr_expect(eq(int, eddy_channel_try_recv(NULL, NULL), -EINVAL));
    cr_expect(eq(int, eddy_channel_close(NULL), -EINVAL));
    eddy_channel_free(NULL);
}

Test(channel, try_calls_and_close)
{
    eddy_channel *ch;
    cr_assert(eq(int, eddy_channel_new(&ch, 2), 0));
    intptr_t v = 0;
    cr_expect(eq(int, eddy_channel_try_recv(ch, &v), -EAGAIN));
    cr_expect(eq(int, eddy_channel_try_send(ch, 1), 0));
    cr_expect(eq(int, eddy_channel_try_send(ch, 2), 0));
    cr_expect(eq(int, eddy_channel_try_send(ch, 3), -EAGAIN));
    cr_expect(eq(int, eddy_channel_close(ch), 0));
    cr_expect(eq(int, eddy_channel_close(ch), -EALREADY));
    cr_expect(eq(int, eddy_channel_try_send(ch, 4), -EPIPE));
    cr_expect(eq(int, eddy_channel_send(ch, 4), -EPIPE), "a plain thread, closed");
    cr_expect(eq(int, eddy_channel_try_recv(ch, &v), 0));
    cr_expect(eq(iptr, v, 1));
    cr_expect(eq(int, eddy_channel_recv(ch, &v), 0), "buffered items drain after close");
    cr_expect(eq(iptr, v, 2));
    cr_expect(eq(int, eddy_channel_try_recv(ch, &v), -EPIPE));
    cr_expect(eq(int, eddy_channel_recv(ch, &v), -EPIPE));
    eddy_channel_free(ch);
}

/* ---- loops on threads ------------------------------------------------------ */

struct side {
    eddy_channel *ch;
    int index;        /* producer or consumer number */
    intptr_t count;   /* items to send, or received */
    int out_of_order; /* consumer: an item of a producer before an earlier one */
    intptr_t last[2]; /* consumer: the last item seen from each producer */
    unsigned char *seen;
    int err;
    pthread_t thread;
    eddy_task_fn fn;
};

static intptr_t produce(void *arg)
{
    struct side *s = arg;
    for (intptr_t i = 0; i < s->count; i++) {
        int err = eddy_channel_send(s->ch, (intptr_t)s->index * ITEMS + i);
        if (err < 0) return err;
    }
    return 0;
}

static intptr_t consume(void *arg)
{
    struct side *s = arg;
    s->last[0] = s->last[1] = -1;
    intptr_t v;
    int err;
    while ((err = eddy_channel_recv(s->ch, &v)) == 0) {
        intptr_t producer = v / ITEMS, i = v % ITEMS;
        if (producer < 0 || producer > 1) return -ERANGE;
        if (i <= s->last[producer]) s->out_of_order++;
        s->last[producer] = i;
        __atomic_add_fetch(&s->seen[v], 1, __ATOMIC_RELAXED);
        s->count++;
    }
    return err == -EPIPE ? 0 : err;
}

/* A thread with a loop of its own running s->fn(s) as a task. */
static void *loop_thread(void *arg)
{
    struct side *s = arg;
    intptr_t result = 0;
    int err = eddy_run(s->fn, s, &result);
    s->err = err < 0 ? err : (int)result;
    return NULL;
}

static void start(struct side *s, eddy_task_fn fn)
{
    s->fn = fn;
    cr_assert(eq(int, pthread_create(&s->thread, NULL, loop_thread, s), 0));
}

Test(channel, hundred_thousand_items_between_two_loops_in_order, .timeout = TEST_TIMEOUT)
{
    eddy_channel *ch;
    cr_assert(eq(int, eddy_channel_new(&ch, 64), 0));
    unsigned char *seen = calloc(2 * ITEMS, 1);
    cr_assert(ne(ptr, seen, NULL));
    struct side producer = {.ch = ch, .index = 0, .count = ITEMS};
    struct side consumer = {.ch = ch, .seen = seen};
    start(&consumer, consume);
    start(&producer, produce);
    pthread_join(producer.thread, NULL);
    cr_expect(eq(int, producer.err, 0), "producer: %s", eddy_strerror(producer.err));
    cr_expect(eq(int, eddy_channel_close(ch), 0));
    pthread_join(consumer.thread, NULL);
    cr_expect(eq(int, consumer.err, 0), "consumer: %s", eddy_strerror(consumer.err));
    cr_expect(eq(iptr, consumer.count, ITEMS));
    cr_expect(eq(int, consumer.out_of_order, 0));
    int missing = 0;
    for (int i = 0; i < ITEMS; i++)
        missing += seen[i] != 1;
    cr_expect(eq(int, missing, 0));
    free(seen);
    eddy_channel_free(ch);
}

/* Round trips between two loops, each waking the other for every item: on
 * io_uring through IORING_OP_MSG_RING where the kernel has it, and through
 * the eventfd with EDDY_CAPS_DISABLE=msg_ring; elsewhere the backend's wake. */
struct volley {
    eddy_channel *there, *back;
    eddy_support msg_ring[2]; /* what each loop reports */
    int err[2];
    pthread_t thread[2];
};

#define VOLLEYS 10000

static intptr_t serve_volleys(void *arg)
{
    struct volley *v = arg;
    v->msg_ring[1] = eddy_loop_supports(eddy_loop_current(), EDDY_CAP_MSG_RING);
    intptr_t item;
    while (eddy_channel_recv(v->there, &item) == 0)
        if (eddy_channel_send(v->back, item + 1) < 0) return -EIO;
    return 0;
}

static intptr_t send_volleys(void *arg)
{
    struct volley *v = arg;
    v->msg_ring[0] = eddy_loop_supports(eddy_loop_current(), EDDY_CAP_MSG_RING);
    int err = 0;
    for (intptr_t i = 0; i < VOLLEYS && !err; i++) {
        intptr_t item;
        if (eddy_channel_send(v->there, i) < 0 || eddy_channel_recv(v->back, &item) < 0 ||
            item != i + 1)
            err = -EPROTO;
    }
    (void)eddy_channel_close(v->there);
    return err;
}

struct volley_side {
    struct volley *v;
    int index;
};

static void *run_volley_side(void *arg)
{
    struct volley_side *vs = arg;
    intptr_t result = -1;
    int err = eddy_run(vs->index ? serve_volleys : send_volleys, vs->v, &result);
    vs->v->err[vs->index] = err < 0 ? err : (int)result;
    return NULL;
}

static void volley(bool msg_ring)
{
    if (msg_ring)
        unsetenv("EDDY_CAPS_DISABLE");
    else
        setenv("EDDY_CAPS_DISABLE", "msg_ring", 1);
    struct volley v = {0};
    cr_assert(eq(int, eddy_channel_new(&v.there, 1), 0));
    cr_assert(eq(int, eddy_channel_new(&v.back, 1), 0));
    struct volley_side sides[2] = {{&v, 0}, {&v, 1}};
    for (int i = 0; i < 2; i++)
        cr_assert(eq(int, pthread_create(&v.thread[i], NULL, run_volley_side, &sides[i]), 0));
    for (int i = 0; i < 2; i++) {
        pthread_join(v.thread[i], NULL);
        cr_expect(eq(int, v.err[i], 0), "loop %d: %s", i, eddy_strerror(v.err[i]));
    }
    cr_expect(eq(int, (int)v.msg_ring[0], (int)v.msg_ring[1]));
    if (!msg_ring) cr_expect(eq(int, (int)v.msg_ring[0], (int)EDDY_NONE), "disabled, yet reported");
    unsetenv("EDDY_CAPS_DISABLE");
    eddy_channel_free(v.there);
    eddy_channel_free(v.back);
}

Test(channel, loops_wake_each_other_with_and_without_msg_ring, .timeout = TEST_TIMEOUT)
{
    volley(true);
    volley(false);
}

Test(channel, two_producers_two_consumers, .timeout = TEST_TIMEOUT)
{
    eddy_channel *ch;
    cr_assert(eq(int, eddy_channel_new(&ch, 16), 0));
    unsigned char *seen = calloc(2 * ITEMS, 1);
    cr_assert(ne(ptr, seen, NULL));
    enum { PER_PRODUCER = ITEMS / 4 };
    struct side producers[2], consumers[2];
    for (int i = 0; i < 2; i++) {
        consumers[i] = (struct side){.ch = ch, .index = i, .seen = seen};
        producers[i] = (struct side){.ch = ch, .index = i, .count = PER_PRODUCER};
        start(&consumers[i], consume);
    }
    for (int i = 0; i < 2; i++)
        start(&producers[i], produce);
    for (int i = 0; i < 2; i++) {
        pthread_join(producers[i].thread, NULL);
        cr_expect(eq(int, producers[i].err, 0));
    }
    cr_expect(eq(int, eddy_channel_close(ch), 0));
    intptr_t total = 0;
    for (int i = 0; i < 2; i++) {
        pthread_join(consumers[i].thread, NULL);
        cr_expect(eq(int, consumers[i].err, 0));
        cr_expect(eq(int, consumers[i].out_of_order, 0), "FIFO per sender");
        total += consumers[i].count;
    }
    cr_expect(eq(iptr, total, 2 * PER_PRODUCER));
    int wrong = 0;
    for (int p = 0; p < 2; p++)
        for (int i = 0; i < ITEMS; i++)
            wrong += seen[p * ITEMS + i] != (i < PER_PRODUCER);
    cr_expect(eq(int, wrong, 0), "every item exactly once");
    free(seen);
    eddy_channel_free(ch);
}

/* ---- plain threads --------------------------------------------------------- */

static void *plain_receiver(void *arg)
{
    struct side *s = arg;
    intptr_t v;
    int err;
    while ((err = eddy_channel_recv(s->ch, &v)) == 0)
        s->count += v;
    s->err = err;
    return NULL;
}

static intptr_t send_one_to_ten(void *arg)
{
    eddy_channel *ch = arg;
    for (intptr_t i = 1; i <= 10; i++) {
        eddy_sleep(NS_PER_MS); /* the receiver blocks meanwhile */
        int err = eddy_channel_send(ch, i);
        if (err < 0) return err;
    }
    return eddy_channel_close(ch);
}

Test(channel, a_plain_thread_blocks_until_a_task_sends, .timeout = TEST_TIMEOUT)
{
    eddy_channel *ch;
    cr_assert(eq(int, eddy_channel_new(&ch, 1), 0));
    struct side r = {.ch = ch};
    cr_assert(eq(int, pthread_create(&r.thread, NULL, plain_receiver, &r), 0));
    eddy_loop *loop = new_loop();
    intptr_t v = -1;
    cr_expect(eq(int, run_task(loop, send_one_to_ten, ch, &v), 0));
    cr_expect(eq(iptr, v, 0));
    pthread_join(r.thread, NULL);
    cr_expect(eq(int, r.err, -EPIPE));
    cr_expect(eq(iptr, r.count, 55));
    eddy_loop_free(loop);
    eddy_channel_free(ch);
}

static void *plain_sender(void *arg)
{
    struct side *s = arg;
    for (intptr_t i = 0; i < 1000; i++)
        if ((s->err = eddy_channel_send(s->ch, i)) < 0) break;
    return NULL;
}

static intptr_t receive_thousand_in_order(void *arg)
{
    eddy_channel *ch = arg;
    for (intptr_t i = 0; i < 1000; i++) {
        intptr_t v;
        int err = eddy_channel_recv(ch, &v);
        if (err < 0) return err;
        if (v != i) return -ERANGE;
    }
    return 0;
}

Test(channel, a_plain_thread_blocks_while_full, .timeout = TEST_TIMEOUT)
{
    eddy_channel *ch;
    cr_assert(eq(int, eddy_channel_new(&ch, 3), 0));
    struct side s = {.ch = ch};
    cr_assert(eq(int, pthread_create(&s.thread, NULL, plain_sender, &s), 0));
    eddy_loop *loop = new_loop();
    intptr_t v = -1;
    cr_expect(eq(int, run_task(loop, receive_thousand_in_order, ch, &v), 0));
    cr_expect(eq(iptr, v, 0));
    pthread_join(s.thread, NULL);
    cr_expect(eq(int, s.err, 0));
    eddy_loop_free(loop);
    eddy_channel_free(ch);
}

/* ---- close and cancellation ------------------------------------------------ */

static intptr_t recv_task(void *arg)
{
    intptr_t v = -1;
    int err = eddy_channel_recv(arg, &v);
    return err < 0 ? err : v;
}

static intptr_t send_task(void *arg)
{
    return eddy_channel_send(arg, 99);
}

static void close_cb(void *arg)
{
    cr_expect(eq(int, eddy_channel_close(arg), 0));
}

Test(channel, close_wakes_every_waiter, .timeout = TEST_TIMEOUT)
{
    eddy_channel *empty, *full;
    cr_assert(eq(int, eddy_channel_new(&empty, 1), 0));
    cr_assert(eq(int, eddy_channel_new(&full, 1), 0));
    cr_assert(eq(int, eddy_channel_try_send(full, 1), 0));
    eddy_loop *loop = new_loop();
    eddy_task *r1 = eddy_spawn(loop, recv_task, empty);
    eddy_task *r2 = eddy_spawn(loop, recv_task, empty);
    eddy_task *s1 = eddy_spawn(loop, send_task, full);
    cr_assert(eq(int, eddy_call_later(loop, 5 * NS_PER_MS, close_cb, empty, NULL), 0));
    cr_assert(eq(int, eddy_call_later(loop, 5 * NS_PER_MS, close_cb, full, NULL), 0));
    cr_expect(eq(int, eddy_loop_run(loop), 0));
    intptr_t v = 0;
    cr_expect(eq(int, eddy_task_join(r1, &v), -EPIPE));
    cr_expect(eq(int, eddy_task_join(r2, &v), -EPIPE));
    cr_expect(eq(int, eddy_task_join(s1, &v), -EPIPE));
    cr_expect(eq(int, eddy_channel_try_recv(full, &v), 0), "the buffered item survives close");
    cr_expect(eq(iptr, v, 1));
    cr_expect(eq(int, eddy_channel_try_recv(full, &v), -EPIPE), "the refused send left nothing");
    eddy_loop_free(loop);
    eddy_channel_free(empty);
    eddy_channel_free(full);
}

static void cancel_cb(void *arg)
{
    cr_expect(eddy_task_cancel(arg));
}

Test(channel, a_cancelled_receiver_takes_nothing, .timeout = TEST_TIMEOUT)
{
    eddy_channel *ch;
    cr_assert(eq(int, eddy_channel_new(&ch, 1), 0));
    eddy_loop *loop = new_loop();
    eddy_task *t = eddy_spawn(loop, recv_task, ch);
    cr_assert(eq(int, eddy_call_later(loop, NS_PER_MS, cancel_cb, t, NULL), 0));
    cr_expect(eq(int, eddy_loop_run(loop), 0));
    cr_expect(eq(int, eddy_task_join(t, NULL), -ECANCELED));
    cr_expect(eq(int, eddy_channel_try_send(ch, 7), 0), "the cancelled receiver left the queue");
    intptr_t v = 0;
    cr_expect(eq(int, eddy_channel_try_recv(ch, &v), 0));
    cr_expect(eq(iptr, v, 7));
    eddy_loop_free(loop);
    eddy_channel_free(ch);
}

struct race {
    eddy_channel *ch;
    eddy_task *task;
};

/* Hands the waiting receiver an item, then cancels it before it runs. */
static void serve_then_cancel(void *arg)
{
    struct race *r = arg;
    cr_expect(eq(int, eddy_channel_try_send(r->ch, 42), 0));
    cr_expect(eddy_task_cancel(r->task));
}

Test(channel, an_item_handed_to_a_receiver_cancelled_meanwhile_is_not_lost, .timeout = TEST_TIMEOUT)
{
    eddy_channel *ch;
    cr_assert(eq(int, eddy_channel_new(&ch, 1), 0));
    eddy_loop *loop = new_loop();
    struct race r = {ch, eddy_spawn(loop, recv_task, ch)};
    cr_assert(ne(ptr, r.task, NULL));
    cr_assert(eq(int, eddy_call_later(loop, NS_PER_MS, serve_then_cancel, &r, NULL), 0));
    cr_expect(eq(int, eddy_loop_run(loop), 0));
    intptr_t v = 0;
    cr_expect(eq(int, eddy_task_join(r.task, &v), 0), "the item was the task's already");
    cr_expect(eq(iptr, v, 42));
    cr_expect(eq(int, eddy_channel_try_recv(ch, &v), -EAGAIN));
    eddy_loop_free(loop);
    eddy_channel_free(ch);
}

Test(channel, a_cancelled_sender_sends_nothing, .timeout = TEST_TIMEOUT)
{
    eddy_channel *ch;
    cr_assert(eq(int, eddy_channel_new(&ch, 1), 0));
    cr_assert(eq(int, eddy_channel_try_send(ch, 1), 0));
    eddy_loop *loop = new_loop();
    eddy_task *t = eddy_spawn(loop, send_task, ch);
    cr_assert(eq(int, eddy_call_later(loop, NS_PER_MS, cancel_cb, t, NULL), 0));
    cr_expect(eq(int, eddy_loop_run(loop), 0));
    cr_expect(eq(int, eddy_task_join(t, NULL), -ECANCELED));
    intptr_t v = 0;
    cr_expect(eq(int, eddy_channel_try_recv(ch, &v), 0));
    cr_expect(eq(iptr, v, 1));
    cr_expect(eq(int, eddy_channel_try_recv(ch, &v), -EAGAIN), "the cancelled send left nothing");
    eddy_loop_free(loop);
    eddy_channel_free(ch);
}

static void blocking_recv_in_callback(void *arg)
{
    intptr_t v;
    cr_expect(eq(int, eddy_channel_recv(arg, &v), -EPERM), "would block the loop");
}

Test(channel, a_loop_thread_outside_a_task_may_not_block, .timeout = TEST_TIMEOUT)
{
    eddy_channel *ch;
    cr_assert(eq(int, eddy_channel_new(&ch, 1), 0));
    eddy_loop *loop = new_loop();
    cr_assert(eq(int, eddy_call_soon(loop, blocking_recv_in_callback, ch), 0));
    cr_expect(eq(int, eddy_loop_run(loop), 0));
    eddy_loop_free(loop);
    eddy_channel_free(ch);
}
