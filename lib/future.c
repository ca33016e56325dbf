/* SPDX-License-Identifier: MIT */
/* Futures: pending -> done with a value, an error, or cancelled. Completion
 * notifies waiters inline, but a waiter only queues work (a task to resume,
 * a done callback to run), so user code never runs inside the setter. */
#include <stdlib.h>

#include "internal.h"

void eddy__future_init(struct eddy_future *f, struct eddy_loop *loop, bool is_task)
{
    f->loop = loop;
    f->refs = 1;
    f->state = EDDY__FUT_PENDING;
    f->is_task = is_task;
    f->retrieved = false;
    f->value = 0;
    eddy__list_init(&f->waiters);
}

void eddy__future_complete(struct eddy_future *f, uint8_t state, intptr_t value)
{
    f->state = state;
    f->value = value;
    /* notify may remove other waiters (a group cancelling siblings never
     * touches this list, but be safe): pop one at a time. */
    struct eddy__list *node;
    while ((node = eddy__list_pop_front(&f->waiters))) {
        struct eddy__waiter *w = eddy__container_of(node, struct eddy__waiter, link);
        w->notify(w, f);
    }
}

void eddy__future_add_waiter(struct eddy_future *f, struct eddy__waiter *w)
{
    eddy__list_push_back(&f->waiters, &w->link);
}

int eddy__future_outcome(const struct eddy_future *f, intptr_t *value)
{
    ((struct eddy_future *)f)->retrieved = true;
    switch (f->state) {
    case EDDY__FUT_RESULT:
        if (value) *value = f->value;
        return 0;
    case EDDY__FUT_CANCELLED:
        return -ECANCELED;
    default:
        return (int)f->value;
    }
}

/* A future made by eddy_future_new: on its loop's list, so that freeing the
 * loop can release one that only its own done callbacks keep alive. */
struct plain_future {
    struct eddy_future future;
    struct eddy__list link; /* loop->futures, until freed or the loop goes */
};

EDDY_API eddy_future *eddy_future_new(eddy_loop *loop)
{
    if (!(loop = eddy__loop_here(loop))) return NULL;
    struct plain_future *pf = malloc(sizeof(*pf));
    if (!pf) return NULL;
    eddy__future_init(&pf->future, loop, false);
    eddy__list_push_back(&loop->futures, &pf->link);
    return &pf->future;
}

EDDY_API void eddy_future_ref(eddy_future *f)
{
    if (f && !eddy__future_foreign(f)) f->refs++;
}

EDDY_API void eddy_future_unref(eddy_future *f)
{
    if (!f || eddy__future_foreign(f) || --f->refs > 0) return;
    if (f->is_task) {
        eddy__task_free((struct eddy_task *)f);
        return;
    }
    struct plain_future *pf = eddy__container_of(f, struct plain_future, future);
    if (f->loop) eddy__list_remove(&pf->link);
    free(pf);
}

static int future_set(eddy_future *f, uint8_t state, intptr_t value)
{
    if (!f || f->is_task) return -EINVAL;
    if (eddy__future_foreign(f)) return -EPERM;
    if (f->state != EDDY__FUT_PENDING) return -EALREADY;
    eddy__future_complete(f, state, value);
    return 0;
}

EDDY_API int eddy_future_set_result(eddy_future *f, intptr_t value)
{
    return future_set(f, EDDY__FUT_RESULT, value);
}

EDDY_API int eddy_future_set_error(eddy_future *f, int err)
{
    if (!EDDY_IS_ERROR(err)) return -EINVAL;
    return future_set(f, err == -ECANCELED ? EDDY__FUT_CANCELLED : EDDY__FUT_ERROR, err);
}

EDDY_API bool eddy_future_cancel(eddy_future *f)
{
    if (!f || eddy__future_foreign(f)) return false;
    if (f->is_task) return eddy_task_cancel((eddy_task *)f);
    return future_set(f, EDDY__FUT_CANCELLED, -ECANCELED) == 0;
}

EDDY_API bool eddy_future_done(const eddy_future *f)
{
    return f && f->state != EDDY__FUT_PENDING;
}

EDDY_API int eddy_future_result(const eddy_future *f, intptr_t *value)
{
    if (!f) return -EINVAL;
    if (eddy__future_foreign(f)) return -EPERM;
    if (f->state == EDDY__FUT_PENDING) return -EAGAIN;
    return eddy__future_outcome(f, value);
}

/* ---- done callbacks -------------------------------------------------------- */

struct done_callback {
    struct eddy__waiter waiter;
    struct eddy__work work;
    struct eddy_future *future; /* referenced until the callback has run */
    void (*cb)(eddy_future *f, void *arg);
    void *arg;
};

static void done_callback_run(struct eddy__work *w)
{
    struct done_callback *dc = eddy__container_of(w, struct done_callback, work);
    if (!dc->future->loop->closing) dc->cb(dc->future, dc->arg);
    eddy_future_unref(dc->future);
    free(dc);
}

static void done_callback_notify(struct eddy__waiter *w, struct eddy_future *f)
{
    struct done_callback *dc = eddy__container_of(w, struct done_callback, waiter);
    eddy__loop_schedule(f->loop, &dc->work);
}

/* Frees the done callbacks still waiting on plain futures of a loop being
 * freed: they can never run, and each holds a reference to its future. The
 * futures still referenced afterwards forget the loop, as tasks do. */
void eddy__futures_forget_loop(struct eddy_loop *loop)
{
    struct eddy__list *node;
    while ((node = eddy__list_pop_front(&loop->futures))) {
        struct plain_future *pf = eddy__container_of(node, struct plain_future, link);
        struct eddy_future *f = &pf->future;
        f->loop = NULL; /* off the list: unref must not remove it again */
        struct eddy__list *w;
        while ((w = eddy__list_pop_front(&f->waiters))) {
            /* Every task has ended, so only done callbacks and waits of
             * other loops' tasks can be left. */
            struct eddy__waiter *waiter = eddy__container_of(w, struct eddy__waiter, link);
            if (eddy__is_remote_wait(waiter))
                eddy__remote_wait_dropped(waiter);
            else
                free(eddy__container_of(waiter, struct done_callback, waiter));
            /* Each holds a reference: the last one goes with the last of them. */
            bool last = f->refs == 1;
            eddy_future_unref(f);
            if (last) break;
        }
    }
}

EDDY_API int eddy_future_on_done(eddy_future *f, void (*cb)(eddy_future *, void *), void *arg)
{
    if (!f || !cb || !f->loop) return -EINVAL;
    if (eddy__loop_foreign(f->loop)) return -EPERM;
    struct done_callback *dc = malloc(sizeof(*dc));
    if (!dc) return -ENOMEM;
    dc->waiter.notify = done_callback_notify;
    dc->work.run = done_callback_run;
    dc->future = f;
    dc->cb = cb;
    dc->arg = arg;
    f->refs++;
    if (f->state == EDDY__FUT_PENDING)
        eddy__future_add_waiter(f, &dc->waiter);
    else
        eddy__loop_schedule(f->loop, &dc->work);
    return 0;
}

/* ---- awaiting -------------------------------------------------------------- */

static void future_wait_notify(struct eddy__waiter *w, struct eddy_future *f)
{
    struct eddy__future_wait *fw = eddy__container_of(w, struct eddy__future_wait, waiter);
    eddy__task_wake(fw->task, 0);
}

/* The awaiting task was cancelled: stop waiting and, as asyncio's await
 * does, cancel what it waited on. */
static void future_wait_abort(struct eddy_task *t)
{
    struct eddy__future_wait *fw = t->wait_data;
    eddy__future_remove_waiter(&fw->waiter);
    eddy__task_wake(t, -ECANCELED);
    eddy_future_cancel(fw->future);
}

int eddy__future_wait(struct eddy_task *t, struct eddy_future *f)
{
    if (eddy__task_cancelled(t)) {
        eddy_future_cancel(f);
        return -ECANCELED;
    }
    if (f->state != EDDY__FUT_PENDING) return 0;
    struct eddy__future_wait fw = {.waiter.notify = future_wait_notify, .task = t, .future = f};
    eddy__future_add_waiter(f, &fw.waiter);
    t->abort_wait = future_wait_abort;
    eddy__task_waits(t, EDDY__WAIT_FUTURE);
    t->wait_data = &fw;
    return (int)eddy__task_suspend(t);
}

EDDY_API int eddy_await(eddy_future *f, intptr_t *value)
{
    struct eddy_task *t = eddy__current_task();
    if (!f) return -EINVAL;
    if (!t) return -EPERM;
    if (eddy__future_foreign(f)) return eddy__remote_wait(t, f, false, value);
    if (&t->future == f) return -EDEADLK; /* a task awaiting itself would never wake */
    int err = eddy__future_wait(t, f);
    if (err < 0) return err;
    return eddy__future_outcome(f, value);
}
