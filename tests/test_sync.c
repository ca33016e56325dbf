/* SPDX-License-Identifier: MIT */
/* Locks, events, conditions, semaphores and barriers: arrival order, hand-off
 * (no barging), cancellation before, while and after a waiter is chosen
 * (the lost-wakeup bugs of asyncio's Lock, Semaphore and Condition, and of
 * anyio's), freeing with waiters, bad input. */
#include <pthread.h>

#include "helpers.h"

struct ctx {
    eddy_lock *lock;
    eddy_event *event;
    eddy_cond *cond;
    eddy_sem *sem;
    eddy_barrier *barrier;
    struct trace tr;
};

/* One task of a scenario: what it waited on returned result. */
struct actor {
    struct ctx *c;
    char name;
    int result;
    bool held_after; /* cond: whether it held the lock when the wait returned */
    eddy_task *task;
};

static eddy_task *start(eddy_task_fn fn, struct actor *a, struct ctx *c, char name)
{
    a->c = c;
    a->name = name;
    a->result = 1; /* not yet returned */
    a->task = eddy_spawn(NULL, fn, a);
    cr_assert(ne(ptr, a->task, NULL));
    return a->task;
}

/* Joins the actors (their outcome is in result). */
static void join_all(struct actor *a, int n)
{
    for (int i = 0; i < n; i++)
        eddy_task_join(a[i].task, NULL);
}

/* Lets every task that is ready run, a few times over. */
static void settle(void)
{
    for (int i = 0; i < 4; i++)
        cr_assert(eq(int, eddy_yield(), 0));
}

static void ctx_init(struct ctx *c)
{
    memset(c, 0, sizeof(*c));
    cr_assert(eq(int, eddy_lock_new(&c->lock), 0));
    cr_assert(eq(int, eddy_event_new(&c->event), 0));
    cr_assert(eq(int, eddy_cond_new(&c->cond, c->lock), 0));
    cr_assert(eq(int, eddy_sem_new(&c->sem, 0, false), 0));
    cr_assert(eq(int, eddy_barrier_new(&c->barrier, 3), 0));
}

static void ctx_free(struct ctx *c)
{
    eddy_cond_free(c->cond);
    eddy_lock_free(c->lock);
    eddy_event_free(c->event);
    eddy_sem_free(c->sem);
    eddy_barrier_free(c->barrier);
}

static void run_in_loop(eddy_task_fn fn, struct ctx *c)
{
    eddy_loop *loop = new_virtual_loop();
    int err = run_task(loop, fn, c, NULL);
    eddy_loop_free(loop);
    cr_assert(eq(int, err, 0), "scenario: %s", eddy_strerror(err));
}

/* Runs fn as the main task of a virtual-time loop, with a fresh ctx (an
 * object fn frees, it sets to NULL). */
static void run_scenario(eddy_task_fn fn)
{
    struct ctx c;
    ctx_init(&c);
    run_in_loop(fn, &c);
    ctx_free(&c);
}

/* ---- lock ------------------------------------------------------------------------ */

/* Takes the lock, notes its name, holds it over a yield, releases it. */
static intptr_t lock_actor(void *arg)
{
    struct actor *a = arg;
    a->result = eddy_lock_acquire(a->c->lock);
    if (a->result < 0) return a->result;
    trace_add(&a->c->tr, a->name);
    eddy_yield();
    cr_expect(eq(int, eddy_lock_release(a->c->lock), 0));
    return 0;
}

static intptr_t lock_fifo(void *arg)
{
    struct ctx *c = arg;
    struct actor a[5];
    cr_assert(eq(int, eddy_lock_acquire(c->lock), 0));
    for (int i = 0; i < 5; i++)
        start(lock_actor, &a[i], c, (char)('A' + i));
    settle();
    cr_assert(eq(int, eddy_lock_release(c->lock), 0));
    /* Handed to A already: the releaser cannot take it back (no barging). */
    cr_expect(eddy_lock_locked(c->lock));
    cr_expect(eq(int, eddy_lock_try_acquire(c->lock), -EBUSY));
    join_all(a, 5);
    cr_expect(eq(str, c->tr.buf, "ABCDE"));
    cr_expect(not(eddy_lock_locked(c->lock)));
    return 0;
}

Test(sync, lock_serves_waiters_in_arrival_order, .timeout = TEST_TIMEOUT)
{
    run_scenario(lock_fifo);
}

/* bpo-27585: the lock is handed to A, and A (then B) is cancelled before it
 * runs: C must still get the lock, and nobody may keep it. */
static intptr_t lock_cancel_after_chosen(void *arg)
{
    struct ctx *c = arg;
    struct actor a[3];
    cr_assert(eq(int, eddy_lock_acquire(c->lock), 0));
    for (int i = 0; i < 3; i++)
        start(lock_actor, &a[i], c, (char)('A' + i));
    settle();
    cr_assert(eq(int, eddy_lock_release(c->lock), 0)); /* chosen: A */
    eddy_task_cancel(a[0].task);
    eddy_task_cancel(a[1].task); /* still waiting */
    join_all(a, 3);
    cr_expect(eq(int, a[0].result, -ECANCELED));
    cr_expect(eq(int, a[1].result, -ECANCELED));
    cr_expect(eq(int, a[2].result, 0));
    cr_expect(eq(str, c->tr.buf, "C"));
    cr_expect(not(eddy_lock_locked(c->lock)));
    return 0;
}

Test(sync, lock_cancelled_after_hand_off_passes_it_on, .timeout = TEST_TIMEOUT)
{
    run_scenario(lock_cancel_after_chosen);
}

/* anyio #1145: the head waiter is cancelled and the lock released in the
 * same turn, before the cancelled task ran its cleanup: the next waiter must
 * not be stranded. */
static intptr_t lock_cancel_head_then_release(void *arg)
{
    struct ctx *c = arg;
    struct actor a[2];
    cr_assert(eq(int, eddy_lock_acquire(c->lock), 0));
    start(lock_actor, &a[0], c, 'A');
    start(lock_actor, &a[1], c, 'B');
    settle();
    eddy_task_cancel(a[0].task);
    cr_assert(eq(int, eddy_lock_release(c->lock), 0));
    join_all(a, 2);
    cr_expect(eq(int, a[0].result, -ECANCELED));
    cr_expect(eq(int, a[1].result, 0));
    cr_expect(eq(str, c->tr.buf, "B"));
    return 0;
}

Test(sync, lock_cancelled_head_does_not_strand_the_next, .timeout = TEST_TIMEOUT)
{
    run_scenario(lock_cancel_head_then_release);
}

/* Cancelled before it waits: -ECANCELED at once, even with the lock free. */
static intptr_t cancel_self_then(void *arg)
{
    struct ctx *c = arg;
    eddy_task_cancel(eddy_task_current());
    cr_expect(eq(int, eddy_lock_acquire(c->lock), -ECANCELED));
    cr_expect(not(eddy_lock_locked(c->lock)));
    cr_expect(eq(int, eddy_sem_acquire(c->sem), -ECANCELED));
    cr_expect(eq(int, eddy_event_wait(c->event), -ECANCELED));
    cr_expect(eq(int, eddy_barrier_wait(c->barrier), -ECANCELED));
    eddy_shield_begin();
    cr_expect(eq(int, eddy_lock_acquire(c->lock), 0)); /* shielded: works */
    cr_expect(eq(int, eddy_cond_wait(c->cond), 0));
    eddy_shield_end();
    cr_expect(eq(int, eddy_cond_wait(c->cond), -ECANCELED)); /* lock still held */
    cr_expect(eq(int, eddy_lock_release(c->lock), 0));
    return 0;
}

static intptr_t cancel_before_main(void *arg)
{
    struct ctx *c = arg;
    eddy_task *t = eddy_spawn(NULL, cancel_self_then, c);
    cr_assert(ne(ptr, t, NULL));
    /* The shielded cond wait needs a notification. */
    settle();
    cr_assert(eq(int, eddy_lock_acquire(c->lock), 0));
    cr_expect(eq(int, eddy_cond_notify(c->cond, 1), 1));
    cr_assert(eq(int, eddy_lock_release(c->lock), 0));
    intptr_t v = -1;
    eddy_task_join(t, &v);
    return 0;
}

Test(sync, cancelled_task_waits_for_nothing, .timeout = TEST_TIMEOUT)
{
    run_scenario(cancel_before_main);
}

static intptr_t release_by_other(void *arg)
{
    struct ctx *c = arg;
    return eddy_lock_release(c->lock);
}

static intptr_t lock_misuse_main(void *arg)
{
    struct ctx *c = arg;
    cr_assert(eq(int, eddy_lock_acquire(c->lock), 0));
    eddy_task *t = eddy_spawn(NULL, release_by_other, c);
    intptr_t v = 0;
    cr_assert(eq(int, eddy_task_join(t, &v), -EPERM));
    cr_assert(eq(int, eddy_lock_release(c->lock), 0));
    return 0;
}

Test(sync, lock_misuse_is_refused, .timeout = TEST_TIMEOUT)
{
    struct ctx c;
    ctx_init(&c);
    run_in_loop(lock_misuse_main, &c);
    /* Outside a task: waits are refused, try_acquire and release work. */
    cr_expect(eq(int, eddy_lock_acquire(c.lock), -EPERM));
    cr_expect(eq(int, eddy_lock_try_acquire(c.lock), 0));
    cr_expect(eq(int, eddy_lock_release(c.lock), 0));
    cr_expect(eq(int, eddy_lock_release(c.lock), -EPERM));
    ctx_free(&c);
}

/* A task that ends holding a lock leaves it locked (as asyncio's does), and
 * a later task at the same address is not its owner: its acquire waits (not
 * -EDEADLK), its release is -EPERM. */
static intptr_t take_and_end(void *arg)
{
    return eddy_lock_acquire(arg);
}

struct later_task {
    eddy_lock *lock;
    int acquire, scope, release;
};

static intptr_t acquire_in_scope(void *arg)
{
    struct later_task *l = arg;
    l->release = eddy_lock_release(l->lock);
    eddy_timeout scope;
    cr_assert(eq(int, eddy_timeout_begin(&scope, 20 * NS_PER_MS), 0));
    l->acquire = eddy_lock_acquire(l->lock);
    l->scope = eddy_timeout_end(&scope);
    return 0;
}

static bool owner_address_reused; /* not under ASan, which keeps freed memory aside */

static intptr_t owner_ended_main(void *arg)
{
    struct ctx *c = arg;
    eddy_task *a = eddy_spawn(NULL, take_and_end, c->lock);
    cr_assert(ne(ptr, a, NULL));
    intptr_t r = -1;
    cr_assert(eq(int, eddy_task_join(a, &r), 0));
    cr_assert(eq(int, (int)r, 0));
    cr_assert(eddy_lock_locked(c->lock));
    struct later_task l = {.lock = c->lock};
    eddy_task *b = NULL;
    for (int i = 0; i < 64 && b != a; i++) {
        if (b) cr_assert(eq(int, eddy_task_join(b, NULL), 0));
        l = (struct later_task){.lock = c->lock};
        b = eddy_spawn(NULL, acquire_in_scope, &l);
        cr_assert(ne(ptr, b, NULL));
    }
    cr_assert(eq(int, eddy_task_join(b, NULL), 0));
    owner_address_reused = b == a;
    if (!owner_address_reused) return 0;
    cr_expect(eq(int, l.release, -EPERM), "a task at the owner's address released the lock");
    cr_expect(eq(int, l.acquire, -ECANCELED), "acquire did not wait for the lock");
    cr_expect(eq(int, l.scope, -ETIMEDOUT));
    cr_expect(eddy_lock_locked(c->lock));
    return 0;
}

Test(sync, lock_owner_that_ended_is_not_a_later_task_at_its_address, .timeout = TEST_TIMEOUT)
{
    run_scenario(owner_ended_main);
    if (!owner_address_reused) cr_skip_test("no task reused the ended owner's address");
}

/* ---- freeing with waiters ------------------------------------------------------------ */

static intptr_t sem_actor(void *arg)
{
    struct actor *a = arg;
    a->result = eddy_sem_acquire(a->c->sem);
    if (a->result == 0) trace_add(&a->c->tr, a->name);
    return a->result;
}

static intptr_t event_actor(void *arg)
{
    struct actor *a = arg;
    a->result = eddy_event_wait(a->c->event);
    if (a->result == 0) trace_add(&a->c->tr, a->name);
    return a->result;
}

static intptr_t cond_actor(void *arg)
{
    struct actor *a = arg;
    int err = eddy_lock_acquire(a->c->lock);
    if (err < 0) return a->result = err;
    a->result = eddy_cond_wait(a->c->cond);
    a->held_after = eddy_lock_release(a->c->lock) == 0;
    if (a->result == 0) trace_add(&a->c->tr, a->name);
    return a->result;
}

static intptr_t barrier_actor(void *arg)
{
    struct actor *a = arg;
    a->result = eddy_barrier_wait(a->c->barrier);
    if (a->result >= 0) trace_add(&a->c->tr, a->name);
    return a->result;
}

/* Each object is freed with one task waiting on it, and (lock, semaphore)
 * one chosen but not yet run: all end with -ECANCELED, nothing touches the
 * freed memory (AddressSanitizer and Valgrind would tell). */
static intptr_t free_with_waiters(void *arg)
{
    struct ctx *c = arg;
    struct actor a[6];
    cr_assert(eq(int, eddy_lock_acquire(c->lock), 0));
    start(lock_actor, &a[0], c, 'L');
    start(lock_actor, &a[1], c, 'l');
    start(sem_actor, &a[2], c, 'S');
    start(sem_actor, &a[3], c, 's');
    start(event_actor, &a[4], c, 'E');
    start(barrier_actor, &a[5], c, 'B');
    settle();
    cr_assert(eq(int, eddy_lock_release(c->lock), 0)); /* chosen: L */
    cr_assert(eq(int, eddy_sem_release(c->sem), 0));   /* chosen: S */
    eddy_lock_free(c->lock);
    eddy_sem_free(c->sem);
    eddy_event_free(c->event);
    eddy_barrier_free(c->barrier);
    c->lock = NULL;
    c->sem = NULL;
    c->event = NULL;
    c->barrier = NULL;
    join_all(a, 6);
    for (int i = 0; i < 6; i++)
        cr_expect(eq(int, a[i].result, -ECANCELED), "actor %c", a[i].name);
    cr_expect(eq(str, c->tr.buf, ""));
    return 0;
}

Test(sync, freeing_wakes_waiters_with_ecanceled, .timeout = TEST_TIMEOUT)
{
    run_scenario(free_with_waiters);
}

static intptr_t free_cond_with_waiters(void *arg)
{
    struct ctx *c = arg;
    struct actor a[2];
    start(cond_actor, &a[0], c, 'A');
    start(cond_actor, &a[1], c, 'B');
    settle();
    cr_assert(eq(int, eddy_lock_acquire(c->lock), 0));
    cr_expect(eq(int, eddy_cond_notify(c->cond, 1), 1)); /* A waits for the lock now */
    eddy_cond_free(c->cond);
    c->cond = NULL;
    cr_assert(eq(int, eddy_lock_release(c->lock), 0));
    join_all(a, 2);
    cr_expect(eq(int, a[0].result, -ECANCELED));
    cr_expect(eq(int, a[1].result, -ECANCELED));
    cr_expect(a[0].held_after && a[1].held_after, "the lock is held when cond_wait returns");
    return 0;
}

Test(sync, freeing_a_condition_returns_its_waiters_the_lock, .timeout = TEST_TIMEOUT)
{
    run_scenario(free_cond_with_waiters);
}

/* ---- event ------------------------------------------------------------------------------ */

static intptr_t event_main(void *arg)
{
    struct ctx *c = arg;
    struct actor a[4];
    for (int i = 0; i < 4; i++)
        start(event_actor, &a[i], c, (char)('A' + i));
    settle();
    cr_expect(eq(str, c->tr.buf, ""));
    eddy_task_cancel(a[1].task); /* while waiting */
    cr_assert(eq(int, eddy_event_set(c->event), 0));
    cr_assert(eq(int, eddy_event_clear(c->event), 0)); /* the woken still pass */
    eddy_task_cancel(a[2].task);                       /* after it was woken, before it ran */
    join_all(a, 4);
    cr_expect(eq(int, a[0].result, 0));
    cr_expect(eq(int, a[1].result, -ECANCELED));
    cr_expect(eq(int, a[2].result, -ECANCELED));
    cr_expect(eq(int, a[3].result, 0));
    cr_expect(eq(str, c->tr.buf, "AD"));
    cr_expect(not(eddy_event_is_set(c->event)));
    cr_assert(eq(int, eddy_event_set(c->event), 0));
    cr_expect(eq(int, eddy_event_set(c->event), 0));
    cr_expect(eq(int, eddy_event_wait(c->event), 0)); /* set: no wait */
    return 0;
}

Test(sync, event_wakes_all_and_cancels_cleanly, .timeout = TEST_TIMEOUT)
{
    run_scenario(event_main);
}

/* ---- condition ---------------------------------------------------------------------------- */

static intptr_t cond_fifo(void *arg)
{
    struct ctx *c = arg;
    struct actor a[3];
    for (int i = 0; i < 3; i++)
        start(cond_actor, &a[i], c, (char)('A' + i));
    settle();
    cr_expect(eq(int, eddy_cond_notify(c->cond, 1), -EPERM)); /* without the lock */
    for (int i = 0; i < 3; i++) {
        cr_assert(eq(int, eddy_lock_acquire(c->lock), 0));
        cr_expect(eq(int, eddy_cond_notify(c->cond, 1), 1));
        cr_assert(eq(int, eddy_lock_release(c->lock), 0));
        settle();
    }
    join_all(a, 3);
    cr_expect(eq(str, c->tr.buf, "ABC"));
    for (int i = 0; i < 3; i++)
        cr_expect(a[i].held_after && a[i].result == 0);
    return 0;
}

Test(sync, cond_notifies_in_arrival_order, .timeout = TEST_TIMEOUT)
{
    run_scenario(cond_fifo);
}

/* cpython #111693: A is notified, then cancelled before it runs: the
 * notification goes to B; A returns -ECANCELED holding the lock. */
static intptr_t cond_cancel_after_notify(void *arg)
{
    struct ctx *c = arg;
    struct actor a[3];
    for (int i = 0; i < 3; i++)
        start(cond_actor, &a[i], c, (char)('A' + i));
    settle();
    cr_assert(eq(int, eddy_lock_acquire(c->lock), 0));
    cr_expect(eq(int, eddy_cond_notify(c->cond, 1), 1));
    cr_assert(eq(int, eddy_lock_release(c->lock), 0));
    eddy_task_cancel(a[0].task);
    settle();
    cr_expect(eq(int, a[0].result, -ECANCELED));
    cr_expect(a[0].held_after);
    cr_expect(eq(str, c->tr.buf, "B"));
    /* Cancelled while waiting for the lock after a notification (C): the
     * lock is taken anyway, the wake-up passed on (to no one left). */
    cr_assert(eq(int, eddy_lock_acquire(c->lock), 0));
    cr_expect(eq(int, eddy_cond_notify_all(c->cond), 1));
    settle();
    eddy_task_cancel(a[2].task);
    cr_assert(eq(int, eddy_lock_release(c->lock), 0));
    join_all(a, 3);
    cr_expect(eq(int, a[2].result, -ECANCELED));
    cr_expect(a[2].held_after);
    cr_expect(not(eddy_lock_locked(c->lock)));
    return 0;
}

Test(sync, cond_cancelled_after_notify_passes_the_wakeup, .timeout = TEST_TIMEOUT)
{
    run_scenario(cond_cancel_after_notify);
}

static intptr_t cond_cancel_while_waiting(void *arg)
{
    struct ctx *c = arg;
    struct actor a[2];
    start(cond_actor, &a[0], c, 'A');
    start(cond_actor, &a[1], c, 'B');
    settle();
    cr_assert(eq(int, eddy_lock_acquire(c->lock), 0));
    eddy_task_cancel(a[0].task); /* waiting; must get the lock back before it returns */
    settle();
    cr_expect(eq(int, a[0].result, 1), "A returned without the lock");
    cr_expect(eq(int, eddy_cond_notify(c->cond, 5), 1)); /* only B waits */
    cr_assert(eq(int, eddy_lock_release(c->lock), 0));
    join_all(a, 2);
    cr_expect(eq(int, a[0].result, -ECANCELED));
    cr_expect(a[0].held_after);
    cr_expect(eq(int, a[1].result, 0));
    cr_expect(eq(int, eddy_cond_wait(c->cond), -EPERM)); /* without the lock */
    return 0;
}

Test(sync, cond_cancelled_while_waiting_reacquires_the_lock, .timeout = TEST_TIMEOUT)
{
    run_scenario(cond_cancel_while_waiting);
}

/* ---- semaphore ----------------------------------------------------------------------------- */

static intptr_t sem_fifo(void *arg)
{
    struct ctx *c = arg;
    struct actor a[4];
    for (int i = 0; i < 4; i++)
        start(sem_actor, &a[i], c, (char)('A' + i));
    settle();
    cr_assert(eq(int, eddy_sem_release(c->sem), 0));
    /* Given to A: not to be taken by whoever comes next. */
    cr_expect(eq(int, eddy_sem_value(c->sem), 0));
    cr_expect(eq(int, eddy_sem_try_acquire(c->sem), -EBUSY));
    for (int i = 0; i < 3; i++)
        cr_assert(eq(int, eddy_sem_release(c->sem), 0));
    join_all(a, 4);
    cr_expect(eq(str, c->tr.buf, "ABCD"));
    return 0;
}

Test(sync, sem_serves_waiters_in_arrival_order, .timeout = TEST_TIMEOUT)
{
    run_scenario(sem_fifo);
}

/* cpython #90155: with two waiters on a semaphore at 0, cancelling the first
 * (while it waits, or after the release chose it) must not strand the
 * second, nor lose or add a permit. */
static intptr_t sem_cancel_races(void *arg)
{
    struct ctx *c = arg;
    struct actor a[4];
    start(sem_actor, &a[0], c, 'A');
    start(sem_actor, &a[1], c, 'B');
    settle();
    eddy_task_cancel(a[0].task); /* while waiting */
    cr_assert(eq(int, eddy_sem_release(c->sem), 0));
    settle();
    cr_expect(eq(int, a[0].result, -ECANCELED));
    cr_expect(eq(int, a[1].result, 0));

    start(sem_actor, &a[2], c, 'C');
    start(sem_actor, &a[3], c, 'D');
    settle();
    cr_assert(eq(int, eddy_sem_release(c->sem), 0)); /* chosen: C */
    eddy_task_cancel(a[2].task);
    join_all(a, 4);
    cr_expect(eq(int, a[2].result, -ECANCELED));
    cr_expect(eq(int, a[3].result, 0));
    cr_expect(eq(str, c->tr.buf, "BD"));
    cr_expect(eq(int, eddy_sem_value(c->sem), 0));
    return 0;
}

Test(sync, sem_cancelled_waiters_do_not_strand_others, .timeout = TEST_TIMEOUT)
{
    run_scenario(sem_cancel_races);
}

/* cpython #90155, the hang: with one permit, the holder cancels the one
 * waiter and releases; the permit must come back (value 1, not 0). */
static intptr_t sem_holder_cancels_waiter(void *arg)
{
    struct ctx *c = arg;
    cr_assert(eq(int, eddy_sem_release(c->sem), 0)); /* value 1 */
    cr_assert(eq(int, eddy_sem_acquire(c->sem), 0));
    struct actor b;
    start(sem_actor, &b, c, 'B');
    settle();
    eddy_task_cancel(b.task);
    cr_assert(eq(int, eddy_sem_release(c->sem), 0));
    join_all(&b, 1);
    cr_expect(eq(int, b.result, -ECANCELED));
    cr_expect(eq(int, eddy_sem_value(c->sem), 1));
    cr_expect(eq(int, eddy_sem_acquire(c->sem), 0)); /* no hang */
    return 0;
}

Test(sync, sem_holder_cancelling_a_waiter_keeps_the_permit, .timeout = TEST_TIMEOUT)
{
    run_scenario(sem_holder_cancels_waiter);
}

Test(sync, sem_bounds_and_bad_input, .timeout = TEST_TIMEOUT)
{
    eddy_sem *s = NULL;
    cr_expect(eq(int, eddy_sem_new(&s, -1, false), -EINVAL));
    cr_expect(eq(int, eddy_sem_new(NULL, 1, false), -EINVAL));
    cr_assert(eq(int, eddy_sem_new(&s, 2, true), 0));
    cr_expect(eq(int, eddy_sem_release(s), -EOVERFLOW));
    cr_expect(eq(int, eddy_sem_try_acquire(s), 0));
    cr_expect(eq(int, eddy_sem_try_acquire(s), 0));
    cr_expect(eq(int, eddy_sem_try_acquire(s), -EBUSY));
    cr_expect(eq(int, eddy_sem_value(s), 0));
    cr_expect(eq(int, eddy_sem_release(s), 0));
    cr_expect(eq(int, eddy_sem_release(s), 0));
    cr_expect(eq(int, eddy_sem_release(s), -EOVERFLOW));
    cr_expect(eq(int, eddy_sem_value(s), 2));
    cr_expect(eq(int, eddy_sem_acquire(s), -EPERM)); /* outside a task */
    eddy_sem_free(s);
    cr_assert(eq(int, eddy_sem_new(&s, 0, true), 0));
    cr_expect(eq(int, eddy_sem_release(s), -EOVERFLOW));
    eddy_sem_free(s);
    cr_assert(eq(int, eddy_sem_new(&s, 0, false), 0)); /* unbounded */
    for (int i = 0; i < 10; i++)
        cr_expect(eq(int, eddy_sem_release(s), 0));
    cr_expect(eq(int, eddy_sem_value(s), 10));
    eddy_sem_free(s);
}

/* ---- barrier ----------------------------------------------------------------------------- */

struct barrier_run {
    struct ctx *c;
    int index[2];
};

static intptr_t barrier_two_rounds(void *arg)
{
    struct barrier_run *r = arg;
    for (int round = 0; round < 2; round++) {
        r->index[round] = eddy_barrier_wait(r->c->barrier);
        if (r->index[round] < 0) return r->index[round];
    }
    return 0;
}

static intptr_t barrier_main(void *arg)
{
    struct ctx *c = arg;
    struct barrier_run r[3];
    eddy_task *t[3];
    for (int i = 0; i < 3; i++) {
        r[i].c = c;
        t[i] = eddy_spawn(NULL, barrier_two_rounds, &r[i]);
    }
    for (int i = 0; i < 3; i++)
        cr_expect(eq(int, eddy_task_join(t[i], NULL), 0));
    /* Arrival order: the tasks run in spawn order; the last to arrive goes
     * on at once, so it is the first at the second round. */
    for (int i = 0; i < 3; i++) {
        cr_expect(eq(int, r[i].index[0], i));
        cr_expect(eq(int, r[i].index[1], (i + 1) % 3));
    }

    /* A party that leaves (cancelled) leaves no gap in the indices. */
    struct actor a[4];
    start(barrier_actor, &a[0], c, 'A');
    start(barrier_actor, &a[1], c, 'B');
    settle();
    eddy_task_cancel(a[0].task);
    settle();
    start(barrier_actor, &a[2], c, 'C');
    settle();
    cr_expect(eq(str, c->tr.buf, ""));
    start(barrier_actor, &a[3], c, 'D');
    join_all(a, 4);
    cr_expect(eq(int, a[0].result, -ECANCELED));
    cr_expect(eq(int, a[1].result, 0));
    cr_expect(eq(int, a[2].result, 1));
    cr_expect(eq(int, a[3].result, 2));

    /* abort: -EPIPE to the waiters and to later waits, until reset. */
    start(barrier_actor, &a[0], c, 'a');
    settle();
    cr_assert(eq(int, eddy_barrier_abort(c->barrier), 0));
    cr_expect(eq(int, eddy_barrier_wait(c->barrier), -EPIPE));
    join_all(a, 1);
    cr_expect(eq(int, a[0].result, -EPIPE));
    cr_assert(eq(int, eddy_barrier_reset(c->barrier), 0));
    start(barrier_actor, &a[0], c, 'r');
    settle();
    cr_assert(eq(int, eddy_barrier_reset(c->barrier), 0)); /* with a waiter: -EPIPE to it */
    join_all(a, 1);
    cr_expect(eq(int, a[0].result, -EPIPE));
    start(barrier_actor, &a[0], c, 'x');
    start(barrier_actor, &a[1], c, 'y');
    cr_expect(eq(int, eddy_barrier_wait(c->barrier), 0)); /* main arrives first */
    join_all(a, 2);
    cr_expect(eq(int, a[0].result, 1));
    cr_expect(eq(int, a[1].result, 2));
    return 0;
}

Test(sync, barrier_indices_abort_and_reset, .timeout = TEST_TIMEOUT)
{
    run_scenario(barrier_main);
}

/* ---- bad input ------------------------------------------------------------------------------ */

Test(sync, bad_input_is_einval, .timeout = TEST_TIMEOUT)
{
    cr_expect(eq(int, eddy_lock_new(NULL), -EINVAL));
    cr_expect(eq(int, eddy_event_new(NULL), -EINVAL));
    cr_expect(eq(int, eddy_sem_new(NULL, 0, false), -EINVAL));
    cr_expect(eq(int, eddy_barrier_new(NULL, 1), -EINVAL));
    eddy_barrier *b = NULL;
    cr_expect(eq(int, eddy_barrier_new(&b, 0), -EINVAL));
    cr_expect(eq(int, eddy_barrier_new(&b, -3), -EINVAL));
    cr_expect(eq(ptr, b, NULL));
    eddy_cond *c = NULL;
    cr_expect(eq(int, eddy_cond_new(&c, NULL), -EINVAL));
    eddy_lock *l = NULL;
    cr_assert(eq(int, eddy_lock_new(&l), 0));
    cr_expect(eq(int, eddy_cond_new(NULL, l), -EINVAL));
    cr_assert(eq(int, eddy_cond_new(&c, l), 0));
    cr_expect(eq(int, eddy_cond_notify(c, -1), -EINVAL));
    cr_expect(eq(int, eddy_cond_notify(c, 1), -EPERM));
    cr_expect(eq(int, eddy_cond_wait(c), -EPERM)); /* outside a task */
    cr_assert(eq(int, eddy_lock_try_acquire(l), 0));
    cr_expect(eq(int, eddy_cond_notify(c, 1), 0)); /* held outside a task: no waiter */
    cr_expect(eq(int, eddy_cond_notify_all(c), 0));
    cr_assert(eq(int, eddy_lock_release(l), 0));
    eddy_cond_free(c);
    eddy_lock_free(l);

    cr_expect(eq(int, eddy_lock_acquire(NULL), -EINVAL));
    cr_expect(eq(int, eddy_lock_try_acquire(NULL), -EINVAL));
    cr_expect(eq(int, eddy_lock_release(NULL), -EINVAL));
    cr_expect(not(eddy_lock_locked(NULL)));
    cr_expect(eq(int, eddy_event_set(NULL), -EINVAL));
    cr_expect(eq(int, eddy_event_clear(NULL), -EINVAL));
    cr_expect(eq(int, eddy_event_wait(NULL), -EINVAL));
    cr_expect(not(eddy_event_is_set(NULL)));
    cr_expect(eq(int, eddy_cond_wait(NULL), -EINVAL));
    cr_expect(eq(int, eddy_cond_notify(NULL, 1), -EINVAL));
    cr_expect(eq(int, eddy_cond_notify_all(NULL), -EINVAL));
    cr_expect(eq(int, eddy_sem_acquire(NULL), -EINVAL));
    cr_expect(eq(int, eddy_sem_try_acquire(NULL), -EINVAL));
    cr_expect(eq(int, eddy_sem_release(NULL), -EINVAL));
    cr_expect(eq(int, eddy_sem_value(NULL), -EINVAL));
    cr_expect(eq(int, eddy_barrier_wait(NULL), -EINVAL));
    cr_expect(eq(int, eddy_barrier_abort(NULL), -EINVAL));
    cr_expect(eq(int, eddy_barrier_reset(NULL), -EINVAL));
    eddy_lock_free(NULL);
    eddy_event_free(NULL);
    eddy_cond_free(NULL);
    eddy_sem_free(NULL);
    eddy_barrier_free(NULL);

    eddy_event *e = NULL;
    cr_assert(eq(int, eddy_event_new(&e), 0));
    cr_expect(eq(int, eddy_event_wait(e), -EPERM)); /* outside a task */
    eddy_event_free(e);
    cr_assert(eq(int, eddy_barrier_new(&b, 2), 0));
    cr_expect(eq(int, eddy_barrier_wait(b), -EPERM));
    eddy_barrier_free(b);
}

/* ---- cancellation at a point in time -------------------------------------------------------- */

/* Under virtual time: a waiter cancelled by a timer 5 ms into its wait. */
static intptr_t timed_cancel(void *arg)
{
    struct ctx *c = arg;
    cr_assert(eq(int, eddy_lock_acquire(c->lock), 0));
    struct actor a[2];
    start(lock_actor, &a[0], c, 'A');
    start(lock_actor, &a[1], c, 'B');
    cancel_task_later(NULL, a[0].task, 5 * NS_PER_MS);
    int64_t t0 = loop_now();
    cr_assert(eq(int, eddy_sleep(10 * NS_PER_MS), 0));
    cr_expect(eq(int, a[0].result, -ECANCELED), "cancelled at 5 ms, while waiting");
    cr_expect(eq(i64, loop_now() - t0, 10 * NS_PER_MS));
    cr_assert(eq(int, eddy_lock_release(c->lock), 0));
    join_all(a, 2);
    cr_expect(eq(str, c->tr.buf, "B"));
    return 0;
}

Test(sync, waiter_cancelled_by_a_timer, .timeout = TEST_TIMEOUT)
{
    run_scenario(timed_cancel);
}

/* ---- timeout scopes -------------------------------------------------------------------- */

/* A wait under a timeout scope ends when the scope expires, and leaves no
 * waiter behind: the lock released afterwards is simply free. */
static intptr_t lock_in_scope(void *arg)
{
    struct actor *a = arg;
    eddy_timeout scope;
    cr_assert(eq(int, eddy_timeout_begin(&scope, 5 * NS_PER_MS), 0));
    int64_t t0 = loop_now();
    a->result = eddy_lock_acquire(a->c->lock);
    cr_expect(eq(i64, loop_now() - t0, 5 * NS_PER_MS));
    cr_expect(eq(int, eddy_timeout_end(&scope), -ETIMEDOUT));
    return a->result;
}

static intptr_t scope_main(void *arg)
{
    struct ctx *c = arg;
    cr_assert(eq(int, eddy_lock_acquire(c->lock), 0));
    struct actor a[2];
    start(lock_in_scope, &a[0], c, 'A');
    start(lock_actor, &a[1], c, 'B');
    cr_assert(eq(int, eddy_sleep(20 * NS_PER_MS), 0));
    cr_expect(eq(int, a[0].result, -ECANCELED));
    cr_assert(eq(int, eddy_lock_release(c->lock), 0));
    join_all(a, 2);
    cr_expect(eq(str, c->tr.buf, "B"));
    cr_expect(not(eddy_lock_locked(c->lock)));
    return 0;
}

Test(sync, timeout_scope_ends_a_lock_wait, .timeout = TEST_TIMEOUT)
{
    run_scenario(scope_main);
}

/* Three scopes deep around a semaphore wait; the middle one expires first:
 * the wait returns -ECANCELED, the inner scope ends with -ECANCELED, the
 * middle with -ETIMEDOUT, the outer with 0; the permit released later goes
 * to the next waiter, not to the one that timed out. */
static intptr_t sem_nested_scopes(void *arg)
{
    struct actor *a = arg;
    eddy_timeout outer, middle, inner;
    cr_assert(eq(int, eddy_timeout_begin(&outer, 30 * NS_PER_MS), 0));
    cr_assert(eq(int, eddy_timeout_begin(&middle, 10 * NS_PER_MS), 0));
    cr_assert(eq(int, eddy_timeout_begin(&inner, 20 * NS_PER_MS), 0));
    a->result = eddy_sem_acquire(a->c->sem);
    cr_expect(eq(int, eddy_timeout_end(&inner), -ECANCELED));
    cr_expect(eq(int, eddy_timeout_end(&middle), -ETIMEDOUT));
    cr_expect(eq(int, eddy_timeout_end(&outer), 0));
    return a->result;
}

static intptr_t nested_main(void *arg)
{
    struct ctx *c = arg;
    struct actor a[2];
    start(sem_nested_scopes, &a[0], c, 'A');
    start(sem_actor, &a[1], c, 'B');
    cr_assert(eq(int, eddy_sleep(15 * NS_PER_MS), 0));
    cr_expect(eq(int, a[0].result, -ECANCELED));
    cr_assert(eq(int, eddy_sem_release(c->sem), 0));
    join_all(a, 2);
    cr_expect(eq(int, a[1].result, 0));
    cr_expect(eq(str, c->tr.buf, "B"));
    cr_expect(eq(int, eddy_sem_value(c->sem), 0));
    return 0;
}

Test(sync, nested_timeout_scopes_around_a_semaphore, .timeout = TEST_TIMEOUT)
{
    run_scenario(nested_main);
}

/* ---- objects belong to one thread ------------------------------------------- */

struct foreign {
    eddy_lock *lock;
    eddy_event *event;
    eddy_queue *queue;
    int lock_try, event_set, queue_put, in_task_set;
};

static intptr_t foreign_task(void *arg)
{
    struct foreign *f = arg;
    f->in_task_set = eddy_event_set(f->event);
    return 0;
}

/* Another thread, running a loop of its own, then outside any loop. */
static void *foreign_thread(void *arg)
{
    struct foreign *f = arg;
    eddy_loop *loop = NULL;
    if (eddy_loop_new(&loop, NULL) == 0) {
        eddy_task *t = eddy_spawn(loop, foreign_task, f);
        if (t) eddy_task_detach(t);
        eddy_loop_run(loop);
        eddy_loop_free(loop);
    }
    f->lock_try = eddy_lock_try_acquire(f->lock);
    f->event_set = eddy_event_set(f->event);
    f->queue_put = eddy_queue_try_put(f->queue, 1);
    return NULL;
}

static intptr_t owner_task(void *arg)
{
    struct foreign *f = arg;
    cr_assert(eq(int, eddy_lock_acquire(f->lock), 0)); /* binds them to this thread */
    cr_assert(eq(int, eddy_lock_release(f->lock), 0));
    cr_assert(eq(int, eddy_event_clear(f->event), 0));
    cr_assert(eq(int, eddy_queue_try_put(f->queue, 7), 0));
    pthread_t th;
    cr_assert(eq(int, pthread_create(&th, NULL, foreign_thread, f), 0));
    cr_assert(eq(int, pthread_join(th, NULL), 0));
    /* Untouched by the other thread, and still usable here. */
    cr_assert(not(eddy_lock_locked(f->lock)));
    cr_assert(not(eddy_event_is_set(f->event)));
    cr_assert(eq(int, (int)eddy_queue_size(f->queue), 1));
    cr_assert(eq(int, eddy_lock_try_acquire(f->lock), 0));
    cr_assert(eq(int, eddy_lock_release(f->lock), 0));
    return 0;
}

Test(sync, objects_refuse_other_threads, .timeout = TEST_TIMEOUT)
{
    struct foreign f = {.lock_try = 1, .event_set = 1, .queue_put = 1, .in_task_set = 1};
    cr_assert(eq(int, eddy_lock_new(&f.lock), 0));
    cr_assert(eq(int, eddy_event_new(&f.event), 0));
    cr_assert(eq(int, eddy_queue_new(&f.queue, NULL), 0));
    intptr_t v;
    cr_assert(eq(int, run_virtual(owner_task, &f, &v), 0));
    cr_assert(eq(int, f.in_task_set, -EPERM), "a task of another loop set the event");
    cr_assert(eq(int, f.lock_try, -EPERM));
    cr_assert(eq(int, f.event_set, -EPERM));
    cr_assert(eq(int, f.queue_put, -EPERM));
    eddy_lock_free(f.lock);
    eddy_event_free(f.event);
    eddy_queue_free(f.queue);
}
