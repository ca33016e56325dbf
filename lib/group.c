/* SPDX-License-Identifier: MIT */
/* Combinators (gather, wait_any, wait_for) and task groups, built on future
 * waiters: each wait hangs a small node on every future it watches, and the
 * task sleeps until the nodes' notifications say it may go on. */
#include <stdlib.h>

#include "internal.h"

/* Up to this many waiter nodes live in the caller's frame; more are malloc'd. */
#define LOCAL_NODES 16

struct multi_wait;

struct multi_node {
    struct eddy__waiter waiter;
    struct multi_wait *wait;
    size_t index;
};

struct multi_wait {
    struct eddy_task *task;
    struct eddy_future *const *fs;
    size_t n;
    struct multi_node *nodes;
    size_t remaining; /* gather: futures not done yet */
    int first_error;  /* gather: the first error to occur */
    ptrdiff_t winner; /* wait_any: the first index done, or -1 */
    struct eddy_timer timer;
};

_Static_assert(offsetof(struct multi_wait, fs) == offsetof(struct eddy__gather_view, fs) &&
                   offsetof(struct multi_wait, n) == offsetof(struct eddy__gather_view, n),
               "the dump reads a gather's futures where internal.h's eddy__gather_view has them");

struct eddy_future *const *eddy__gather_futures(const void *wait_data, size_t *n)
{
    const struct multi_wait *mw = wait_data;
    *n = mw->n;
    return mw->fs;
}

static int nodes_alloc(struct multi_wait *mw, struct multi_node *local)
{
    mw->nodes = mw->n <= LOCAL_NODES ? local : malloc(mw->n * sizeof(*mw->nodes));
    return mw->nodes ? 0 : -ENOMEM;
}

static void nodes_release(struct multi_wait *mw, struct multi_node *local)
{
    for (size_t i = 0; i < mw->n; i++)
        eddy__future_remove_waiter(&mw->nodes[i].waiter);
    if (mw->nodes != local) free(mw->nodes);
}

static void nodes_attach(struct multi_wait *mw,
                         void (*notify)(struct eddy__waiter *, struct eddy_future *))
{
    for (size_t i = 0; i < mw->n; i++) {
        struct multi_node *node = &mw->nodes[i];
        node->waiter.notify = notify;
        node->wait = mw;
        node->index = i;
        eddy__list_init(&node->waiter.link);
        if (!eddy_future_done(mw->fs[i])) eddy__future_add_waiter(mw->fs[i], &node->waiter);
    }
}

/* -EINVAL for a NULL array or future, -EPERM outside a task or for a future
 * of another thread's loop, -EDEADLK for the caller's own future (it cannot
 * be done while the caller waits). */
static int check_futures(struct eddy_task *t, struct eddy_future *const *fs, size_t n)
{
    if ((!fs && n) || n > INT32_MAX) return -EINVAL;
    for (size_t i = 0; i < n; i++)
        if (!fs[i]) return -EINVAL;
    if (!t) return -EPERM;
    for (size_t i = 0; i < n; i++) {
        if (eddy__future_foreign(fs[i])) return -EPERM;
        if (fs[i] == &t->future) return -EDEADLK;
    }
    return 0;
}

static void cancel_pending(struct eddy_future *const *fs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        eddy_future_cancel(fs[i]);
}

/* ---- gather ------------------------------------------------------------------ */

static void gather_notify(struct eddy__waiter *w, struct eddy_future *f)
{
    struct multi_node *node = eddy__container_of(w, struct multi_node, waiter);
    struct multi_wait *mw = node->wait;
    int outcome = eddy__future_outcome(f, NULL);
    if (outcome < 0 && mw->first_error == 0) mw->first_error = outcome;
    if (--mw->remaining == 0) eddy__task_wake(mw->task, 0);
}

static void multi_abort(struct eddy_task *t)
{
    eddy__task_wake(t, -ECANCELED);
}

EDDY_API int eddy_gather(eddy_future *const *fs, size_t n)
{
    struct eddy_task *t = eddy__current_task();
    int err = check_futures(t, fs, n);
    if (err < 0) return err;
    if (eddy__task_cancelled(t)) {
        cancel_pending(fs, n);
        return -ECANCELED;
    }
    struct multi_node local[LOCAL_NODES];
    struct multi_wait mw = {.task = t, .fs = fs, .n = n};
    for (size_t i = 0; i < n; i++) {
        if (!eddy_future_done(fs[i]))
            mw.remaining++;
        else if ((err = eddy__future_outcome(fs[i], NULL)) < 0 && mw.first_error == 0)
            mw.first_error = err;
    }
    if (mw.remaining == 0) return mw.first_error;
    if ((err = nodes_alloc(&mw, local)) < 0) return err;
    nodes_attach(&mw, gather_notify);
    t->abort_wait = multi_abort;
    eddy__task_waits(t, EDDY__WAIT_GATHER);
    t->wait_data = &mw;
    err = (int)eddy__task_suspend(t);
    nodes_release(&mw, local);
    if (err == -ECANCELED) {
        cancel_pending(fs, n);
        return err;
    }
    return mw.first_error;
}

/* ---- wait_any, wait_for ------------------------------------------------------ */

static void any_notify(struct eddy__waiter *w, struct eddy_future *f)
{
    struct multi_node *node = eddy__container_of(w, struct multi_node, waiter);
    struct multi_wait *mw = node->wait;
    if (mw->winner < 0) mw->winner = (ptrdiff_t)node->index;
    eddy__task_wake(mw->task, 0);
}

static void any_timeout(struct eddy_timer *timer)
{
    struct multi_wait *mw = eddy__container_of(timer, struct multi_wait, timer);
    eddy__task_wake(mw->task, -ETIMEDOUT);
}

/* The index of the first future done, -ETIMEDOUT, -ECANCELED or -ENOMEM. */
static int wait_first(struct eddy_task *t, struct eddy_future *const *fs, size_t n,
                      int64_t timeout_ns)
{
    if (eddy__task_cancelled(t)) return -ECANCELED;
    for (size_t i = 0; i < n; i++)
        if (eddy_future_done(fs[i])) return (int)i;
    if (timeout_ns == 0) return -ETIMEDOUT;
    struct multi_node local[LOCAL_NODES];
    struct multi_wait mw = {.task = t, .fs = fs, .n = n, .winner = -1};
    int err = nodes_alloc(&mw, local);
    if (err < 0) return err;
    eddy__timer_init(&mw.timer, t->loop, any_timeout);
    if (timeout_ns > 0) {
        int64_t now = eddy__loop_update_time(t->loop);
        err = eddy__timer_start(&mw.timer, eddy__deadline_after(now, timeout_ns));
        if (err < 0) {
            /* the nodes are not attached yet: nothing to unlink */
            if (mw.nodes != local) free(mw.nodes);
            return err;
        }
    }
    nodes_attach(&mw, any_notify);
    t->abort_wait = multi_abort;
    eddy__task_waits(t, EDDY__WAIT_GATHER);
    t->wait_data = &mw;
    err = (int)eddy__task_suspend(t);
    eddy__timer_stop(&mw.timer);
    nodes_release(&mw, local);
    return err < 0 ? err : (int)mw.winner;
}

EDDY_API int eddy_wait_any(eddy_future *const *fs, size_t n, int64_t timeout_ns)
{
    struct eddy_task *t = eddy__current_task();
    if (n == 0) return -EINVAL;
    int err = check_futures(t, fs, n);
    if (err < 0) return err;
    return wait_first(t, fs, n, timeout_ns);
}

EDDY_API int eddy_await_timeout(eddy_future *f, int64_t timeout_ns, intptr_t *value)
{
    struct eddy_task *t = eddy__current_task();
    int err = check_futures(t, &f, 1);
    if (err == -EPERM && t && eddy__future_foreign(f)) {
        /* Across loops: the wait stops at the deadline, f is left as it is. */
        if (timeout_ns < 0) return eddy_await(f, value);
        eddy_timeout scope;
        if ((err = eddy_timeout_begin(&scope, timeout_ns)) < 0) return err;
        err = eddy_await(f, value);
        int ended = eddy_timeout_end(&scope);
        return ended < 0 ? ended : err;
    }
    if (err < 0) return err;
    if (timeout_ns < 0) return eddy_await(f, value);
    eddy_timeout scope;
    err = eddy_timeout_begin(&scope, timeout_ns);
    if (err < 0) return err;
    err = eddy__future_wait(t, f); /* cut short: f is cancelled too */
    if (err < 0 && f->is_task && eddy_timeout_expired(&scope)) {
        /* wait_for: a timed-out task is awaited to its end. */
        eddy_shield_begin();
        eddy__future_wait(t, f);
        eddy_shield_end();
        f->retrieved = true;
    }
    int ended = eddy_timeout_end(&scope);
    if (ended < 0) return ended;
    if (err < 0) return err;
    return eddy__future_outcome(f, value);
}

/* ---- task groups --------------------------------------------------------------- */

struct group_child {
    struct eddy__waiter waiter;
    struct eddy__list link; /* eddy_group.children */
    struct eddy_group *group;
    struct eddy_task *task;
};

struct eddy_group {
    struct eddy_loop *loop; /* NULL once the loop is freed */
    struct eddy__list link; /* loop->groups, while loop is not NULL */
    struct eddy__list children;
    size_t live;
    int first_error;
    bool cancelling; /* the group cancelled its children */
    bool closed;     /* wait returned: no more children */
    bool freed;      /* eddy_group_free came while a task waited: the wait frees it */
    struct eddy_task *waiter;
};

struct eddy_task *eddy__group_waiter(const struct eddy_group *g)
{
    return g->waiter;
}

static void group_cancel_children(struct eddy_group *g)
{
    g->cancelling = true;
    struct eddy__list *node;
    for (node = g->children.next; node != &g->children; node = node->next)
        eddy_task_cancel(eddy__container_of(node, struct group_child, link)->task);
}

static void group_child_notify(struct eddy__waiter *w, struct eddy_future *f)
{
    struct group_child *child = eddy__container_of(w, struct group_child, waiter);
    struct eddy_group *g = child->group;
    int outcome = eddy__future_outcome(f, NULL);
    g->live--;
    bool ours = outcome == -ECANCELED && g->cancelling; /* cancelled by the group itself */
    if (outcome < 0 && !ours && g->first_error == 0) {
        g->first_error = outcome;
        group_cancel_children(g);
    }
    if (g->live == 0 && g->waiter) eddy__task_wake(g->waiter, 0);
}

EDDY_API eddy_group *eddy_group_new(eddy_loop *loop)
{
    if (!(loop = eddy__loop_here(loop))) return NULL;
    struct eddy_group *g = calloc(1, sizeof(*g));
    if (!g) return NULL;
    g->loop = loop;
    eddy__list_push_back(&loop->groups, &g->link);
    eddy__list_init(&g->children);
    return g;
}

EDDY_API eddy_task *eddy_group_spawn(eddy_group *g, eddy_task_fn fn, void *arg)
{
    if (!g || !fn || g->closed || !g->loop || !eddy__loop_here(g->loop)) return NULL;
    struct group_child *child = malloc(sizeof(*child));
    if (!child) return NULL;
    child->task = eddy_spawn(g->loop, fn, arg);
    if (!child->task) {
        free(child);
        return NULL;
    }
    child->task->group = g;
    child->group = g;
    child->waiter.notify = group_child_notify;
    eddy__future_add_waiter(&child->task->future, &child->waiter);
    eddy__list_push_back(&g->children, &child->link);
    g->live++;
    /* A group already failing cancels newcomers too. */
    if (g->cancelling) eddy_task_cancel(child->task);
    return child->task;
}

/* The waiting task was cancelled: cancel the children, and go on waiting
 * for them to end (no child outlives its group). */
static void group_wait_abort(struct eddy_task *t)
{
    group_cancel_children(t->wait_data);
}

static void group_destroy(struct eddy_group *g);

/* Waits until every child has ended; -ECANCELED if the caller was cancelled. */
static int group_join_children(struct eddy_group *g, struct eddy_task *t)
{
    bool cancelled = eddy__task_cancelled(t);
    if (cancelled) group_cancel_children(g);
    while (g->live > 0) {
        g->waiter = t;
        t->abort_wait = group_wait_abort;
        eddy__task_waits(t, EDDY__WAIT_GROUP);
        t->wait_data = g;
        eddy__task_suspend(t);
        g->waiter = NULL;
    }
    return cancelled || eddy__task_cancelled(t) ? -ECANCELED : 0;
}

EDDY_API int eddy_group_wait(eddy_group *g)
{
    struct eddy_task *t = eddy__current_task();
    if (!g) return -EINVAL;
    if (!t || t->loop != g->loop) return -EPERM;
    if (t->group == g) return -EDEADLK; /* the group would wait for its waiter */
    if (g->waiter) return -EBUSY;
    int err = group_join_children(g, t);
    g->closed = true;
    if (err == 0) err = g->first_error;
    if (g->freed) {
        group_destroy(g);
        if (err == 0) err = -ECANCELED;
    }
    return err;
}

EDDY_API void eddy_group_free(eddy_group *g)
{
    if (!g || (g->loop && eddy__loop_foreign(g->loop))) return;
    struct eddy_task *t = eddy__current_task();
    /* A child cannot wait for itself, nor free what its siblings and the
     * group's owner still use: the group stays, for its owner to free. */
    if (t && t->group == g) return;
    if (g->waiter) { /* a task waits on g: its wait ends, and frees g, once the children have */
        group_cancel_children(g);
        g->freed = true;
        return;
    }
    if (g->live > 0) {
        group_cancel_children(g);
        if (t && t->loop == g->loop) {
            eddy_shield_begin();
            group_join_children(g, t);
            eddy_shield_end();
        }
    }
    group_destroy(g);
}

/* Frees g and drops its references to its children, all ended or left to end
 * on their own. */
static void group_destroy(struct eddy_group *g)
{
    struct eddy__list *node;
    while ((node = eddy__list_pop_front(&g->children))) {
        struct group_child *child = eddy__container_of(node, struct group_child, link);
        eddy__future_remove_waiter(&child->waiter);
        child->task->group = NULL; /* a later group may have this address */
        eddy_task_detach(child->task);
        free(child);
    }
    if (g->loop) eddy__list_remove(&g->link);
    free(g);
}

void eddy__groups_forget_loop(struct eddy_loop *loop)
{
    struct eddy__list *node;
    while ((node = eddy__list_pop_front(&loop->groups)))
        eddy__container_of(node, struct eddy_group, link)->loop = NULL;
}
