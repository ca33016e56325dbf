/* SPDX-License-Identifier: MIT */
/* Timeout scopes (asyncio.timeout, Trio's fail_after). A scope that expires
 * cancels the task's awaits the way eddy_task_cancel does, through the task's
 * cancel level and its abort_wait, so every wait in the library obeys scopes
 * without knowing about them; unlike a cancellation, the expiry lasts only
 * until the scope ends, where it becomes -ETIMEDOUT for the scope that fired.
 *
 * Who reports what, as asyncio does: the outermost expired scope ends with
 * -ETIMEDOUT; scopes inside it (expired or not) end with -ECANCELED; a task
 * that was really cancelled gets -ECANCELED from every scope. */
#include <stdalign.h>

#include "internal.h"

#define SCOPE_ACTIVE 0x65646479u /* magic of a scope between begin and end */
#define SCOPE_ENDED  0x646f6e65u

/* The scopes live in their callers' frames; the one timer they need lives in
 * the task (armed at the earliest deadline among them), so that a task that
 * returns without ending a scope leaves no timer pointing into its stack. */
struct eddy__scope {
    int64_t deadline; /* eddy_now clock; INT64_MAX: none */
    struct eddy_task *task;
    struct eddy__scope *parent; /* the enclosing scope of the same task */
    unsigned shield_depth;      /* the task's, when the scope began */
    uint32_t magic;
    bool expired;
};

_Static_assert(sizeof(struct eddy__scope) <= sizeof(eddy_timeout),
               "eddy_timeout is too small for a scope");
_Static_assert(alignof(struct eddy__scope) <= alignof(eddy_timeout),
               "eddy_timeout is not aligned enough for a scope");

static struct eddy__scope *scope_of(eddy_timeout *t)
{
    return (struct eddy__scope *)(void *)t;
}

/* The level at which the task's awaits are cancelled, from its cancellation
 * and the expired scopes still open. */
static int cancel_level(const struct eddy_task *task)
{
    int level = task->cancel_requested ? 0 : -1;
    for (const struct eddy__scope *s = task->scope; s; s = s->parent)
        if (s->expired && (int)s->shield_depth > level) level = (int)s->shield_depth;
    return level;
}

/* Arms the task's scope timer at the earliest deadline still to come. A
 * timer already due no later is left as it is: it re-arms itself when it
 * fires early, so moving a deadline later (a server's per-request deadline)
 * costs no timer operation. With no deadline left it stops, so that it does
 * not keep the loop alive. */
static int rearm(struct eddy_task *task)
{
    int64_t earliest = INT64_MAX;
    for (const struct eddy__scope *s = task->scope; s; s = s->parent)
        if (!s->expired && s->deadline < earliest) earliest = s->deadline;
    if (earliest == INT64_MAX) {
        eddy__timer_stop(&task->scope_timer);
        return 0;
    }
    if (eddy__timer_pending(&task->scope_timer) && task->scope_timer.deadline <= earliest) return 0;
    eddy__timer_stop(&task->scope_timer);
    return eddy__timer_start(&task->scope_timer, earliest);
}

void eddy__scope_timer_fire(struct eddy_timer *timer)
{
    struct eddy_task *task = eddy__container_of(timer, struct eddy_task, scope_timer);
    int64_t now = task->loop->now;
    for (struct eddy__scope *s = task->scope; s; s = s->parent)
        if (!s->expired && s->deadline <= now) s->expired = true;
    task->cancel_level = cancel_level(task);
    /* Re-arming a timer whose memory is the task's own cannot need more heap
     * than it just gave back. */
    (void)rearm(task);
    eddy__task_abort_wait(task);
}

void eddy__scopes_abandon(struct eddy_task *t)
{
    /* The scopes' frames are gone: only the task's own fields are touched. */
    eddy__timer_stop(&t->scope_timer);
    t->scope = NULL;
    t->cancel_level = t->cancel_requested ? 0 : -1;
    if (t->loop->flags & EDDY_LOOP_DEBUG)
        eddy__debug_report(t->loop, "task %p ended inside a timeout scope it never ended",
                           (void *)t);
}

/* The scope, if it is active and belongs to the running task; else the error. */
static int scope_check(eddy_timeout *t, struct eddy__scope **out)
{
    if (!t) return -EINVAL;
    struct eddy_task *task = eddy__current_task();
    if (!task) return -EPERM;
    struct eddy__scope *s = scope_of(t);
    if (s->magic != SCOPE_ACTIVE) return -EINVAL;
    if (s->task != task) return -EPERM;
    *out = s;
    return 0;
}

EDDY_API int eddy_timeout_begin(eddy_timeout *t, int64_t timeout_ns)
{
    if (!t) return -EINVAL;
    struct eddy_task *task = eddy__current_task();
    if (!task) return -EPERM;
    struct eddy__scope *s = scope_of(t);
    int64_t deadline = INT64_MAX;
    if (timeout_ns >= 0) {
        int64_t now = eddy__loop_update_time(task->loop);
        deadline = timeout_ns > INT64_MAX - 1 - now ? INT64_MAX - 1 : now + timeout_ns;
    }
    *s = (struct eddy__scope){.deadline = deadline,
                              .task = task,
                              .parent = task->scope,
                              .shield_depth = task->shield_depth,
                              .magic = SCOPE_ACTIVE};
    task->scope = s;
    int err = rearm(task);
    if (err < 0) {
        task->scope = s->parent;
        s->magic = SCOPE_ENDED;
    }
    return err;
}

EDDY_API int eddy_timeout_reschedule(eddy_timeout *t, int64_t deadline_ns)
{
    struct eddy__scope *s;
    int err = scope_check(t, &s);
    if (err < 0) return err;
    if (s->expired) return -EALREADY;
    int64_t previous = s->deadline;
    s->deadline = deadline_ns < 0            ? INT64_MAX
                  : deadline_ns == INT64_MAX ? INT64_MAX - 1
                                             : deadline_ns;
    err = rearm(s->task);
    if (err < 0) s->deadline = previous;
    return err;
}

EDDY_API int eddy_timeout_end(eddy_timeout *t)
{
    struct eddy__scope *s;
    int err = scope_check(t, &s);
    if (err < 0) return err;
    struct eddy_task *task = s->task;
    if (task->scope != s) return -EINVAL; /* an inner scope is still open */
    task->scope = s->parent;
    s->magic = SCOPE_ENDED;
    task->cancel_level = cancel_level(task);
    (void)rearm(task); /* never later than before: no new heap slot is needed */
    if (task->cancel_requested) return -ECANCELED;
    for (const struct eddy__scope *outer = s->parent; outer; outer = outer->parent)
        if (outer->expired) return -ECANCELED;
    return s->expired ? -ETIMEDOUT : 0;
}

EDDY_API bool eddy_timeout_expired(const eddy_timeout *t)
{
    if (!t) return false;
    const struct eddy__scope *s = (const struct eddy__scope *)(const void *)t;
    return (s->magic == SCOPE_ACTIVE || s->magic == SCOPE_ENDED) && s->expired;
}
