/* SPDX-License-Identifier: MIT */
/* Locks, events, conditions, semaphores and barriers for the tasks of one
 * loop (asyncio.Lock ... asyncio.Barrier), on the waiter lists of sync.h.
 *
 * Hand-off: when a lock or a permit is released with tasks waiting, it is
 * given to the first waiter there and then, never left for whoever runs
 * next to grab, so waiters are served strictly in arrival order. A waiter
 * that is cancelled after it was given something, before its task ran,
 * passes it to the next waiter (or puts it back) and returns -ECANCELED:
 * nothing is lost and nothing is held by a task that gave up. */
#include <limits.h>
#include <stdlib.h>

#include "sync.h"

/* ---- waiter lists ---------------------------------------------------------- */

static void sync_abort(struct eddy_task *t)
{
    struct eddy__sync_waiter *w = t->wait_data;
    if (w->count) (*w->count)--;
    eddy__sync_finish(w, -ECANCELED);
}

void eddy__sync_wait(struct eddy_task *t, struct eddy__list *list, struct eddy__sync_waiter *w,
                     bool cancellable)
{
    w->task = t;
    w->state = EDDY__WAITER_WAITING;
    w->result = 0;
    eddy__list_push_back(list, &w->link);
    t->abort_wait = cancellable ? sync_abort : NULL;
    eddy__task_waits(t, EDDY__WAIT_SYNC);
    t->wait_data = w;
    eddy__task_suspend(t);
}

struct eddy__sync_waiter *eddy__sync_first(struct eddy__list *list)
{
    if (eddy__list_empty(list)) return NULL;
    return eddy__container_of(list->next, struct eddy__sync_waiter, link);
}

void eddy__sync_grant(struct eddy__sync_waiter *w, struct eddy__list *granted)
{
    eddy__list_remove(&w->link);
    eddy__list_push_back(granted, &w->link);
    w->state = EDDY__WAITER_GRANTED;
    eddy__task_wake(w->task, 0);
}

void eddy__sync_finish(struct eddy__sync_waiter *w, int result)
{
    eddy__list_remove(&w->link);
    w->state = EDDY__WAITER_DONE;
    w->result = result;
    eddy__task_wake(w->task, 0);
}

size_t eddy__sync_finish_all(struct eddy__list *list, int result, bool granted)
{
    size_t n = 0;
    struct eddy__list *node;
    while ((node = eddy__list_pop_front(list))) {
        struct eddy__sync_waiter *w = eddy__container_of(node, struct eddy__sync_waiter, link);
        w->state = EDDY__WAITER_DONE;
        w->result = result;
        /* A granted waiter's task is runnable already, or (a condition's)
         * waiting for its lock under another waiter: no wake. */
        if (!granted) eddy__task_wake(w->task, 0);
        n++;
    }
    return n;
}

/* The task of a task-only call: NULL (and *err = -EPERM or -ECANCELED) when
 * the call must return at once. */
static struct eddy_task *waiting_task(int *err)
{
    struct eddy_task *t = eddy__current_task();
    *err = !t ? -EPERM : eddy__task_cancelled(t) ? -ECANCELED : 0;
    return *err ? NULL : t;
}

/* ---- lock -------------------------------------------------------------------- */

struct eddy_lock {
    uint64_t thread; /* the thread it belongs to (eddy__sync_foreign); 0 until bound */
    bool locked;
    struct eddy_task *owner; /* NULL when taken outside a task (try_acquire) */
    struct eddy__list waiting;
    uint64_t owner_id;         /* owner's id: another task may have the address of one that ended */
    struct eddy__list granted; /* the next owner, woken but not yet run */
};
_Static_assert(offsetof(struct eddy_lock, owner) == offsetof(struct eddy__lock_view, owner) &&
                   sizeof(((struct eddy_lock *)0)->owner) == sizeof(void *) &&
                   offsetof(struct eddy_lock, owner_id) ==
                       offsetof(struct eddy__lock_view, owner_id),
               "the dump reads a lock's owner where sync.h's eddy__lock_view has it");

EDDY_API int eddy_lock_new(eddy_lock **out)
{
    if (!out) return -EINVAL;
    struct eddy_lock *l = calloc(1, sizeof(*l));
    if (!l) return -ENOMEM;
    eddy__list_init(&l->waiting);
    eddy__list_init(&l->granted);
    *out = l;
    return 0;
}

EDDY_API void eddy_lock_free(eddy_lock *l)
{
    if (!l) return;
    eddy__sync_finish_all(&l->waiting, -ECANCELED, false);
    eddy__sync_finish_all(&l->granted, -ECANCELED, true);
    free(l);
}

static void set_owner(struct eddy_lock *l, struct eddy_task *t)
{
    l->owner = t;
    l->owner_id = t ? eddy_task_id(t) : 0;
}

/* Whether t (NULL: outside a task) holds l: the same task, not a later one
 * at the address of an owner that ended without releasing it. */
static bool owned_by(const struct eddy_lock *l, struct eddy_task *t)
{
    return l->locked && l->owner == t && (!t || l->owner_id == eddy_task_id(t));
}

/* Gives l to its first waiter, or unlocks it. */
static void lock_pass(struct eddy_lock *l)
{
    struct eddy__sync_waiter *w = eddy__sync_first(&l->waiting);
    if (w) {
        set_owner(l, w->task);
        eddy__sync_grant(w, &l->granted);
    } else {
        l->locked = false;
        set_owner(l, NULL);
    }
}

/* t takes l, waiting if need be. Not cancellable: keeps the lock even if t
 * is cancelled meanwhile (a condition's re-acquire). */
static int lock_take(struct eddy_lock *l, struct eddy_task *t, bool cancellable)
{
    if (!l->locked) {
        l->locked = true;
        set_owner(l, t);
        return 0;
    }
    struct eddy__sync_waiter w = {.object = l, .object_kind = EDDY__SYNC_LOCK};
    eddy__sync_wait(t, &l->waiting, &w, cancellable);
    if (w.state == EDDY__WAITER_DONE) return w.result; /* cancelled, or l freed */
    eddy__sync_take(&w);
    if (cancellable && eddy__task_cancelled(t)) {
        lock_pass(l); /* cancelled after it was handed over: to the next one */
        return -ECANCELED;
    }
    return 0;
}

EDDY_API int eddy_lock_acquire(eddy_lock *l)
{
    if (!l) return -EINVAL;
    if (eddy__sync_foreign(&l->thread)) return -EPERM;
    int err;
    struct eddy_task *t = waiting_task(&err);
    if (!t) return err;
    if (owned_by(l, t)) return -EDEADLK;
    return lock_take(l, t, true);
}

EDDY_API int eddy_lock_try_acquire(eddy_lock *l)
{
    if (!l) return -EINVAL;
    if (eddy__sync_foreign(&l->thread)) return -EPERM;
    if (l->locked) return -EBUSY;
    l->locked = true;
    set_owner(l, eddy__current_task());
    return 0;
}

EDDY_API int eddy_lock_release(eddy_lock *l)
{
    if (!l) return -EINVAL;
    if (eddy__sync_foreign(&l->thread)) return -EPERM;
    if (!owned_by(l, eddy__current_task())) return -EPERM;
    lock_pass(l);
    return 0;
}

EDDY_API bool eddy_lock_locked(const eddy_lock *l)
{
    return l && l->locked;
}

/* ---- event -------------------------------------------------------------------- */

struct eddy_event {
    uint64_t thread; /* the thread it belongs to (eddy__sync_foreign); 0 until bound */
    bool set;
    struct eddy__list waiting;
};

EDDY_API int eddy_event_new(eddy_event **out)
{
    if (!out) return -EINVAL;
    struct eddy_event *e = calloc(1, sizeof(*e));
    if (!e) return -ENOMEM;
    eddy__list_init(&e->waiting);
    *out = e;
    return 0;
}

EDDY_API void eddy_event_free(eddy_event *e)
{
    if (!e) return;
    eddy__sync_finish_all(&e->waiting, -ECANCELED, false);
    free(e);
}

EDDY_API int eddy_event_set(eddy_event *e)
{
    if (!e) return -EINVAL;
    if (eddy__sync_foreign(&e->thread)) return -EPERM;
    if (e->set) return 0;
    e->set = true;
    eddy__sync_finish_all(&e->waiting, 0, false);
    return 0;
}

EDDY_API int eddy_event_clear(eddy_event *e)
{
    if (!e) return -EINVAL;
    if (eddy__sync_foreign(&e->thread)) return -EPERM;
    e->set = false;
    return 0;
}

EDDY_API bool eddy_event_is_set(const eddy_event *e)
{
    return e && e->set;
}

/* The result of a wait whose waiter was finished: a task cancelled after it
 * was woken, before it ran, still sees -ECANCELED (the sticky rule). */
static int finished_result(struct eddy_task *t, const struct eddy__sync_waiter *w)
{
    if (w->result >= 0 && eddy__task_cancelled(t)) return -ECANCELED;
    return w->result;
}

EDDY_API int eddy_event_wait(eddy_event *e)
{
    if (!e) return -EINVAL;
    if (eddy__sync_foreign(&e->thread)) return -EPERM;
    int err;
    struct eddy_task *t = waiting_task(&err);
    if (!t) return err;
    if (e->set) return 0;
    struct eddy__sync_waiter w = {.object = e, .object_kind = EDDY__SYNC_EVENT};
    eddy__sync_wait(t, &e->waiting, &w, true);
    return finished_result(t, &w);
}

/* ---- condition ---------------------------------------------------------------- */

struct eddy_cond {
    uint64_t thread; /* the thread it belongs to (eddy__sync_foreign); 0 until bound */
    struct eddy_lock *lock;
    struct eddy__list waiting;
    struct eddy__list granted; /* notified, until they hold the lock again */
};

EDDY_API int eddy_cond_new(eddy_cond **out, eddy_lock *lock)
{
    if (!out || !lock) return -EINVAL;
    struct eddy_cond *c = calloc(1, sizeof(*c));
    if (!c) return -ENOMEM;
    c->lock = lock;
    eddy__list_init(&c->waiting);
    eddy__list_init(&c->granted);
    *out = c;
    return 0;
}

EDDY_API void eddy_cond_free(eddy_cond *c)
{
    if (!c) return;
    eddy__sync_finish_all(&c->waiting, -ECANCELED, false);
    eddy__sync_finish_all(&c->granted, -ECANCELED, true);
    free(c);
}

static int cond_notify(struct eddy_cond *c, int n)
{
    int woken = 0;
    struct eddy__sync_waiter *w;
    while (woken < n && (w = eddy__sync_first(&c->waiting))) {
        eddy__sync_grant(w, &c->granted);
        woken++;
    }
    return woken;
}

static bool holds(const struct eddy_lock *l)
{
    return owned_by(l, eddy__current_task());
}

EDDY_API int eddy_cond_wait(eddy_cond *c)
{
    if (!c) return -EINVAL;
    if (eddy__sync_foreign(&c->thread)) return -EPERM;
    int err;
    struct eddy_task *t = waiting_task(&err);
    if (!t) return err;
    struct eddy_lock *lock = c->lock;
    if (!holds(lock)) return -EPERM;
    lock_pass(lock);
    struct eddy__sync_waiter w = {.object = c, .object_kind = EDDY__SYNC_COND};
    eddy__sync_wait(t, &c->waiting, &w, true);
    /* Notified (GRANTED), the waiter stays on c->granted while it waits for
     * the lock, so that freeing c meanwhile is seen. */
    err = lock_take(lock, t, false);
    if (err < 0) {
        if (w.state == EDDY__WAITER_GRANTED) eddy__sync_take(&w);
        return err; /* the lock was freed: returns without it */
    }
    if (w.state == EDDY__WAITER_DONE) return finished_result(t, &w);
    eddy__sync_take(&w);
    if (eddy__task_cancelled(t)) {
        /* Notified, then cancelled: the wake-up goes to another waiter. */
        cond_notify(c, 1);
        return -ECANCELED;
    }
    return 0;
}

EDDY_API int eddy_cond_notify(eddy_cond *c, int n)
{
    if (!c || n < 0) return -EINVAL;
    if (eddy__sync_foreign(&c->thread)) return -EPERM;
    if (!holds(c->lock)) return -EPERM;
    return cond_notify(c, n);
}

EDDY_API int eddy_cond_notify_all(eddy_cond *c)
{
    return eddy_cond_notify(c, INT_MAX);
}

/* ---- semaphore ------------------------------------------------------------------- */

struct eddy_sem {
    uint64_t thread; /* the thread it belongs to (eddy__sync_foreign); 0 until bound */
    int value;
    int bound; /* bounded: the initial value, which releases may not exceed */
    bool bounded;
    struct eddy__list waiting;
    struct eddy__list granted; /* given a permit, not yet run */
};

EDDY_API int eddy_sem_new(eddy_sem **out, int value, bool bounded)
{
    if (!out || value < 0) return -EINVAL;
    struct eddy_sem *s = calloc(1, sizeof(*s));
    if (!s) return -ENOMEM;
    s->value = s->bound = value;
    s->bounded = bounded;
    eddy__list_init(&s->waiting);
    eddy__list_init(&s->granted);
    *out = s;
    return 0;
}

EDDY_API void eddy_sem_free(eddy_sem *s)
{
    if (!s) return;
    eddy__sync_finish_all(&s->waiting, -ECANCELED, false);
    eddy__sync_finish_all(&s->granted, -ECANCELED, true);
    free(s);
}

/* A permit comes back: to the first waiter, or to the count. */
static int sem_give(struct eddy_sem *s)
{
    if ((s->bounded && s->value >= s->bound) || s->value == INT_MAX) return -EOVERFLOW;
    struct eddy__sync_waiter *w = eddy__sync_first(&s->waiting);
    if (w)
        eddy__sync_grant(w, &s->granted);
    else
        s->value++;
    return 0;
}

EDDY_API int eddy_sem_acquire(eddy_sem *s)
{
    if (!s) return -EINVAL;
    if (eddy__sync_foreign(&s->thread)) return -EPERM;
    int err;
    struct eddy_task *t = waiting_task(&err);
    if (!t) return err;
    if (s->value > 0) { /* waiters only ever wait at 0: no barging */
        s->value--;
        return 0;
    }
    struct eddy__sync_waiter w = {.object = s, .object_kind = EDDY__SYNC_SEM};
    eddy__sync_wait(t, &s->waiting, &w, true);
    if (w.state == EDDY__WAITER_DONE) return w.result;
    eddy__sync_take(&w);
    if (eddy__task_cancelled(t)) {
        sem_give(s); /* cannot overflow: the permit was taken from the bound */
        return -ECANCELED;
    }
    return 0;
}

EDDY_API int eddy_sem_try_acquire(eddy_sem *s)
{
    if (!s) return -EINVAL;
    if (eddy__sync_foreign(&s->thread)) return -EPERM;
    if (s->value == 0) return -EBUSY;
    s->value--;
    return 0;
}

EDDY_API int eddy_sem_release(eddy_sem *s)
{
    if (!s) return -EINVAL;
    if (eddy__sync_foreign(&s->thread)) return -EPERM;
    return sem_give(s);
}

EDDY_API int eddy_sem_value(const eddy_sem *s)
{
    return s ? s->value : -EINVAL;
}

/* ---- barrier ---------------------------------------------------------------------- */

struct eddy_barrier {
    uint64_t thread; /* the thread it belongs to (eddy__sync_foreign); 0 until bound */
    unsigned parties;
    unsigned count; /* arrived and waiting in this round */
    bool broken;
    struct eddy__list waiting;
};

EDDY_API int eddy_barrier_new(eddy_barrier **out, int parties)
{
    if (!out || parties <= 0) return -EINVAL;
    struct eddy_barrier *b = calloc(1, sizeof(*b));
    if (!b) return -ENOMEM;
    b->parties = (unsigned)parties;
    eddy__list_init(&b->waiting);
    *out = b;
    return 0;
}

EDDY_API void eddy_barrier_free(eddy_barrier *b)
{
    if (!b) return;
    eddy__sync_finish_all(&b->waiting, -ECANCELED, false);
    free(b);
}

EDDY_API int eddy_barrier_wait(eddy_barrier *b)
{
    if (!b) return -EINVAL;
    if (eddy__sync_foreign(&b->thread)) return -EPERM;
    int err;
    struct eddy_task *t = waiting_task(&err);
    if (!t) return err;
    if (b->broken) return -EPIPE;
    if (b->count + 1 == b->parties) {
        /* The last one: the others pass in arrival order (indices are
         * given now, so that a party that left does not leave a gap). */
        int index = 0;
        struct eddy__sync_waiter *w;
        while ((w = eddy__sync_first(&b->waiting)))
            eddy__sync_finish(w, index++);
        b->count = 0;
        return index;
    }
    b->count++;
    struct eddy__sync_waiter w = {
        .count = &b->count, .object = b, .object_kind = EDDY__SYNC_BARRIER};
    eddy__sync_wait(t, &b->waiting, &w, true);
    return finished_result(t, &w);
}

EDDY_API int eddy_barrier_abort(eddy_barrier *b)
{
    if (!b) return -EINVAL;
    if (eddy__sync_foreign(&b->thread)) return -EPERM;
    b->broken = true;
    b->count = 0;
    eddy__sync_finish_all(&b->waiting, -EPIPE, false);
    return 0;
}

EDDY_API int eddy_barrier_reset(eddy_barrier *b)
{
    if (!b) return -EINVAL;
    if (eddy__sync_foreign(&b->thread)) return -EPERM;
    b->count = 0;
    eddy__sync_finish_all(&b->waiting, -EPIPE, false);
    b->broken = false;
    return 0;
}
