/* SPDX-License-Identifier: MIT */
/* Waiter lists of the synchronisation primitives and queues (lib/sync.c,
 * lib/queue.c). A waiter lives on the waiting task's stack. It is WAITING on
 * its object's list until it is either finished (DONE: its result is final;
 * cancellation and free do this) or granted (GRANTED: what it waited for -- a
 * lock, a permit, an item, a slot -- is set aside for it at wake time, and it
 * sits on the object's granted list until its task runs and takes it, or,
 * cancelled meanwhile, passes it on). Freeing an object finishes every waiter
 * of both lists with -ECANCELED, so no task touches the object afterwards. */
#ifndef EDDY_SYNC_H
#define EDDY_SYNC_H

#include "internal.h"

enum { EDDY__WAITER_WAITING, EDDY__WAITER_GRANTED, EDDY__WAITER_DONE };

/* What a waiter waits on, for the dump (lib/registry.h's EDDY__DEBUG_SYNC_*). */
enum {
    EDDY__SYNC_UNKNOWN = 0,
    EDDY__SYNC_LOCK,
    EDDY__SYNC_EVENT,
    EDDY__SYNC_COND,
    EDDY__SYNC_SEM,
    EDDY__SYNC_BARRIER,
    EDDY__SYNC_QUEUE_GET,
    EDDY__SYNC_QUEUE_PUT,
    EDDY__SYNC_QUEUE_JOIN,
};

struct eddy__sync_waiter {
    struct eddy__list link; /* the object's waiting or granted list; itself once DONE */
    struct eddy_task *task;
    intptr_t value;  /* a queue put: the item; a barrier: the arrival index */
    int result;      /* once DONE */
    uint8_t state;   /* EDDY__WAITER_* */
    unsigned *count; /* when not NULL, decremented if the waiter leaves by cancellation */
    /* for the dump: the lock, event, ... or queue waited on, and its kind
     * (EDDY__SYNC_*) */
    const void *object;
    uint8_t object_kind;
};

/* The start of struct eddy_lock (lib/sync.c checks it): where the dump finds
 * the task holding a lock. */
struct eddy__lock_view {
    uint64_t thread;
    bool locked;
    struct eddy_task *owner;
    struct eddy__list waiting;
    uint64_t owner_id;
};

/* Puts w at the tail of list and suspends t until w is finished or granted.
 * cancellable: whether a cancellation of t (or its timeout scope's expiry)
 * finishes w with -ECANCELED. The caller has checked eddy__task_cancelled,
 * and set w's object and object_kind. */
void eddy__sync_wait(struct eddy_task *t, struct eddy__list *list, struct eddy__sync_waiter *w,
                     bool cancellable);
/* The first waiter of list, or NULL. */
struct eddy__sync_waiter *eddy__sync_first(struct eddy__list *list);
/* Moves a WAITING w to granted and makes its task runnable. */
void eddy__sync_grant(struct eddy__sync_waiter *w, struct eddy__list *granted);
/* Ends a WAITING w with result and makes its task runnable. */
void eddy__sync_finish(struct eddy__sync_waiter *w, int result);
/* Ends every waiter of list with result; a waiting list's tasks are made
 * runnable, a granted list's were already. Returns how many there were. */
size_t eddy__sync_finish_all(struct eddy__list *list, int result, bool granted);
/* Called by a task whose w was granted, when it runs: takes w off the
 * granted list. */
static inline void eddy__sync_take(struct eddy__sync_waiter *w)
{
    eddy__list_remove(&w->link);
    w->state = EDDY__WAITER_DONE;
    w->result = 0;
}

/* Locks, events, conditions, semaphores, barriers and queues have no loop of
 * their own: each belongs to the first thread that changes or waits on it
 * while running a loop, and calls from any other thread are refused (true
 * here: the caller returns -EPERM), as the loop-bound calls are. A thread
 * that never ran a loop may still set up an object no loop has used yet. */
static inline bool eddy__sync_foreign(uint64_t *thread)
{
    uint64_t me = eddy__thread_number;
    if (EDDY__LIKELY(*thread == me && me)) return false;
    if (*thread == 0) {
        *thread = me;
        return false;
    }
    return true;
}

#endif /* EDDY_SYNC_H */
