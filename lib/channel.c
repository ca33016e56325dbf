/* SPDX-License-Identifier: MIT */
/* Channels: a bounded MPMC ring of intptr_t items under one mutex, the one
 * object (with the _threadsafe calls) that tasks of different loops and
 * plain threads share. A waiter is a node on its own stack, queued FIFO:
 * a task waits on a future of its own loop, which the thread that serves it
 * completes through eddy_call_soon_threadsafe; a plain thread waits on a
 * condition variable. Items go from hand to hand under the lock: a waiter
 * served is DONE before it is woken, so a wake that comes late (or a
 * cancellation that comes first) never loses an item. */
#include <stdlib.h>

#include "internal.h"

enum { WAITING, SERVED, CLOSED };

struct chan_waiter {
    struct eddy__list link;
    int state;     /* WAITING, SERVED (the item went through), CLOSED */
    intptr_t item; /* a sender's item, or what a receiver was handed */
    /* a task's: its loop and a future of that loop the server completes */
    eddy_loop *loop;
    eddy_future *future;
    /* a plain thread's */
    eddy__cond cond;
};

struct eddy_channel {
    eddy__mutex lock;
    size_t capacity, head, count;
    bool closed;
    struct eddy__list senders;   /* chan_waiter: full, waiting to put their item */
    struct eddy__list receivers; /* chan_waiter: empty, waiting for an item */
    intptr_t items[];
};

EDDY_API int eddy_channel_new(eddy_channel **out, size_t capacity)
{
    if (!out) return -EINVAL;
    *out = NULL;
    if (capacity == 0 || capacity > ((size_t)1 << 28)) return -EINVAL;
    struct eddy_channel *ch = calloc(1, sizeof *ch + capacity * sizeof(intptr_t));
    if (!ch) return -ENOMEM;
    int err = eddy__mutex_init(&ch->lock);
    if (err) {
        free(ch);
        return err;
    }
    ch->capacity = capacity;
    eddy__list_init(&ch->senders);
    eddy__list_init(&ch->receivers);
    *out = ch;
    return 0;
}

static void future_wake(void *arg)
{
    eddy_future *f = arg;
    if (!eddy_future_done(f)) (void)eddy_future_set_result(f, 0);
    eddy_future_unref(f);
}

/* Under the lock: w leaves its list in state; the wake it needs goes out
 * (the waiter's future reference passes to the posted callback). */
static void serve(struct chan_waiter *w, int state)
{
    eddy__list_remove(&w->link);
    w->state = state;
    if (!w->loop) {
        eddy__cond_signal(&w->cond);
        return;
    }
    /* Only out of memory can fail this post (a few dozen bytes); the task
     * would then sleep until cancelled, as any task whose wake was lost. */
    (void)eddy_call_soon_threadsafe(w->loop, future_wake, w->future);
}

static struct chan_waiter *first(struct eddy__list *l)
{
    return eddy__list_empty(l) ? NULL : eddy__container_of(l->next, struct chan_waiter, link);
}

/* Under the lock: an item leaves the ring; the first waiting sender's item
 * takes the slot. */
static intptr_t ring_take(struct eddy_channel *ch)
{
    intptr_t item = ch->items[ch->head];
    ch->head = (ch->head + 1) % ch->capacity;
    ch->count--;
    struct chan_waiter *s = first(&ch->senders);
    if (s) {
        ch->items[(ch->head + ch->count) % ch->capacity] = s->item;
        ch->count++;
        serve(s, SERVED);
    }
    return item;
}

/* Under the lock: send without waiting. 0, -EPIPE, -EAGAIN. */
static int send_now(struct eddy_channel *ch, intptr_t item)
{
    if (ch->closed) return -EPIPE;
    struct chan_waiter *r = first(&ch->receivers);
    if (r) {
        r->item = item;
        serve(r, SERVED);
        return 0;
    }
    if (ch->count == ch->capacity || !eddy__list_empty(&ch->senders)) return -EAGAIN;
    ch->items[(ch->head + ch->count) % ch->capacity] = item;
    ch->count++;
    return 0;
}

/* Under the lock: receive without waiting. 0, -EPIPE, -EAGAIN. */
static int recv_now(struct eddy_channel *ch, intptr_t *item)
{
    if (ch->count) {
        intptr_t v = ring_take(ch);
        if (item) *item = v;
        return 0;
    }
    return ch->closed ? -EPIPE : -EAGAIN;
}

/* Called with the lock held and w queued: waits until served, closed, or
 * (a task) cancelled; returns with the lock held and w off its list. */
static int wait_here(struct eddy_channel *ch, struct chan_waiter *w)
{
    if (!w->loop) {
        while (w->state == WAITING)
            eddy__cond_wait(&w->cond, &ch->lock);
        return 0;
    }
    int err = 0;
    while (w->state == WAITING) {
        eddy__mutex_unlock(&ch->lock);
        err = eddy_await(w->future, NULL);
        eddy__mutex_lock(&ch->lock);
        if (w->state == WAITING && err < 0) {
            /* Cancelled (or the loop is going): leave the queue, item kept. */
            eddy__list_remove(&w->link);
            eddy_future_unref(w->future); /* the server's reference, unused */
            return err;
        }
    }
    return 0;
}

/* The calling context's waiter: a task's (with a future of its loop), or a
 * plain thread's. -EPERM for a loop's thread outside a task: it would block
 * the loop. */
static int waiter_init(struct chan_waiter *w)
{
    *w = (struct chan_waiter){.state = WAITING};
    if (eddy__current_task()) {
        w->loop = eddy__thread_loop;
        w->future = eddy_future_new(w->loop);
        if (!w->future) return -ENOMEM;
        eddy_future_ref(w->future); /* for the server, who completes it */
        return 0;
    }
    if (eddy__thread_loop) return -EPERM;
    eddy__cond c = EDDY__COND_INIT;
    w->cond = c;
    return 0;
}

static void waiter_done(struct chan_waiter *w)
{
    if (w->future) eddy_future_unref(w->future);
}

EDDY_API int eddy_channel_send(eddy_channel *ch, intptr_t item)
{
    if (!ch) return -EINVAL;
    eddy__mutex_lock(&ch->lock);
    int err = send_now(ch, item);
    eddy__mutex_unlock(&ch->lock);
    if (err != -EAGAIN) return err;
    struct chan_waiter w;
    if ((err = waiter_init(&w)) < 0) return err;
    eddy__mutex_lock(&ch->lock);
    err = send_now(ch, item); /* it may have changed meanwhile */
    if (err == -EAGAIN) {
        w.item = item;
        eddy__list_push_back(&ch->senders, &w.link);
        err = wait_here(ch, &w);
        if (err == 0) err = w.state == SERVED ? 0 : -EPIPE;
    } else if (w.future) {
        eddy_future_unref(w.future); /* the server's reference, unused */
    }
    eddy__mutex_unlock(&ch->lock);
    waiter_done(&w);
    return err;
}

EDDY_API int eddy_channel_recv(eddy_channel *ch, intptr_t *item)
{
    if (!ch) return -EINVAL;
    eddy__mutex_lock(&ch->lock);
    int err = recv_now(ch, item);
    eddy__mutex_unlock(&ch->lock);
    if (err != -EAGAIN) return err;
    struct chan_waiter w;
    if ((err = waiter_init(&w)) < 0) return err;
    eddy__mutex_lock(&ch->lock);
    err = recv_now(ch, item);
    if (err == -EAGAIN) {
        eddy__list_push_back(&ch->receivers, &w.link);
        err = wait_here(ch, &w);
        if (err == 0 && w.state == SERVED) {
            if (item) *item = w.item;
        } else if (err == 0) {
            err = -EPIPE;
        }
    } else if (w.future) {
        eddy_future_unref(w.future);
    }
    eddy__mutex_unlock(&ch->lock);
    waiter_done(&w);
    return err;
}

EDDY_API int eddy_channel_try_send(eddy_channel *ch, intptr_t item)
{
    if (!ch) return -EINVAL;
    eddy__mutex_lock(&ch->lock);
    int err = send_now(ch, item);
    eddy__mutex_unlock(&ch->lock);
    return err;
}

EDDY_API int eddy_channel_try_recv(eddy_channel *ch, intptr_t *item)
{
    if (!ch) return -EINVAL;
    eddy__mutex_lock(&ch->lock);
    int err = recv_now(ch, item);
    eddy__mutex_unlock(&ch->lock);
    return err;
}

EDDY_API int eddy_channel_close(eddy_channel *ch)
{
    if (!ch) return -EINVAL;
    eddy__mutex_lock(&ch->lock);
    int err = ch->closed ? -EALREADY : 0;
    ch->closed = true;
    struct chan_waiter *w;
    while ((w = first(&ch->senders)))
        serve(w, CLOSED);
    /* Receivers wait only on an empty ring: all of them see the end. */
    while ((w = first(&ch->receivers)))
        serve(w, CLOSED);
    eddy__mutex_unlock(&ch->lock);
    return err;
}

EDDY_API void eddy_channel_free(eddy_channel *ch)
{
    if (!ch) return;
    eddy__mutex_destroy(&ch->lock);
    free(ch);
}
