/* SPDX-License-Identifier: MIT */
/* Tasks: a future whose outcome is a coroutine's return value. The coroutine
 * runs on its own stack (lib/fiber.h); suspending switches back to the loop's
 * stack, and the loop resumes the task when something wakes it. A task gets
 * its stack when it first runs, so a task cancelled before it starts never
 * costs one. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#if EDDY__FIBER_ASAN
#include <sanitizer/asan_interface.h>
#endif

EDDY_API eddy_task *eddy_task_current(void)
{
    return eddy__current_task();
}

static void task_finish(struct eddy_task *t, intptr_t value)
{
    if (EDDY__UNLIKELY(t->scope != NULL)) eddy__scopes_abandon(t);
    uint8_t state = EDDY__FUT_RESULT;
    if (EDDY_IS_ERROR(value)) state = value == -ECANCELED ? EDDY__FUT_CANCELLED : EDDY__FUT_ERROR;
    t->state = EDDY__TASK_DONE;
    t->loop->live_tasks--;
    eddy__future_complete(&t->future, state, value);
}

static inline void task_enter(struct eddy_loop *loop, struct eddy_task *t);
static inline void task_leave(struct eddy_loop *loop, struct eddy_task *t);
static struct eddy_task *next_to_run(struct eddy_loop *loop);

/* A task that ended by switching straight into another (task_entry): its
 * stack goes back to the pool, and the loop's reference is dropped, by the
 * task it switched to (task_switch_out) once nothing runs on that stack. */
static __thread struct eddy_task *exited_task EDDY__TLS_MODEL;

static void task_release(struct eddy_loop *loop, struct eddy_task *t)
{
    eddy__stack_put(&loop->stacks, t->stack);
    t->stack = NULL;
    eddy_future_unref(&t->future); /* the loop's reference */
}

static void task_entry(void *arg)
{
    struct eddy_task *t = arg;
    intptr_t value = t->fn(t->arg);
    task_finish(t, value);
    struct eddy_loop *loop = t->loop;
    task_leave(loop, t);
    /* Straight into the next task when the loop's batch is done and the
     * next iteration would be trivial (task_switch_out): the task that joins
     * this one, often. In the middle of a batch the loop's stack is taken: a
     * burst of 100 000 tasks each ending straight into the next measured
     * 5-13 % slower per task (bench/spawn), where one task at a time gains
     * 18 %. */
    struct eddy_task *next = eddy__list_empty(&loop->batch) ? next_to_run(loop) : NULL;
    if (next) {
        task_enter(loop, next);
        exited_task = t;
        eddy__fiber_exit(&t->fiber, &next->fiber);
    }
    eddy__fiber_exit(&t->fiber, &loop->main_fiber);
}

static void check_canary(struct eddy_task *t)
{
    /* Memory below the stack is already corrupt: nothing safe is left to do. */
    if (EDDY__UNLIKELY(!eddy__stack_canary_ok(&t->loop->stacks, t->stack)))
        eddy__stack_overflowed(t->stack);
}

/* Loop flags that make a task's steps timed: debug reports, metrics, the
 * stall detector. */
#define TIMED_STEPS (EDDY_LOOP_DEBUG | EDDY_LOOP_METRICS | EDDY__LOOP_STALL)
#if defined(__GNUC__)
#define STEP_TIMING __attribute__((noinline, cold))
#else
#define STEP_TIMING
#endif

/* The timed part of task_enter and task_leave, out of the way of the switch,
 * which only tests the flags. */
static STEP_TIMING void task_step_begins(struct eddy_loop *loop)
{
    loop->task_started = eddy__monotonic_ns();
    if (loop->flags & EDDY__LOOP_STALL) eddy__stall_enter(loop, loop->task_started);
}

static STEP_TIMING void task_step_ends(struct eddy_loop *loop, struct eddy_task *t)
{
    if (loop->flags & EDDY__LOOP_STALL) eddy__stall_leave(loop);
    int64_t ran = eddy__monotonic_ns() - loop->task_started;
    if ((uint64_t)ran > loop->stats.longest_step_ns) loop->stats.longest_step_ns = ran;
    if ((loop->flags & EDDY_LOOP_DEBUG) && ran > EDDY__SLOW_TASK_NS)
        eddy__debug_report(loop, "task %llu (%s) ran %lld ms without awaiting",
                           (unsigned long long)t->id, eddy_task_name(t),
                           (long long)(ran / 1000000));
}

/* Bookkeeping as a task starts and stops running (either side of a switch). */
static inline void task_enter(struct eddy_loop *loop, struct eddy_task *t)
{
    t->state = EDDY__TASK_RUNNING;
    loop->current = t;
    if (EDDY__UNLIKELY(loop->flags & TIMED_STEPS)) task_step_begins(loop);
}

static inline void task_leave(struct eddy_loop *loop, struct eddy_task *t)
{
    if (EDDY__UNLIKELY(loop->flags & TIMED_STEPS)) task_step_ends(loop, t);
    /* With guard pages an overflow faults as it happens; without, the canary
     * tells at the next switch. */
    if (loop->flags & EDDY_LOOP_NO_GUARD_PAGES) check_canary(t);
}

static void task_ready_run(struct eddy__work *w);

/* Runs t until it (or a task it switched to directly) goes back to the loop's
 * stack; called by the loop from the ready queue. */
static void task_resume(struct eddy_task *t)
{
    struct eddy_loop *loop = t->loop;
    if (t->state == EDDY__TASK_CREATED) {
        if (t->cancel_requested) {
            task_finish(t, -ECANCELED);
            eddy_future_unref(&t->future);
            return;
        }
        int err = eddy__stack_get(&loop->stacks, &t->stack);
        if (err < 0) {
            task_finish(t, err);
            eddy_future_unref(&t->future);
            return;
        }
        /* names it in overflow reports */
        t->stack->owner = t;
        t->stack->number = t->id;
        eddy__fiber_init(&t->fiber, t->stack, task_entry, t);
    }
    eddy__stack_thread_prepare();
    task_enter(loop, t);
    eddy__fiber_switch(&loop->main_fiber, &t->fiber);
    /* Back from whichever task ran last: t may have handed over to others. */
    struct eddy_task *last = loop->current;
    loop->current = NULL;
    if (last->state == EDDY__TASK_DONE) task_release(loop, last);
}

static void task_ready_run(struct eddy__work *w)
{
    struct eddy_task *t = eddy__container_of(w, struct eddy_task, ready);
    task_resume(t);
}

/* The next item of the batch the loop is running, if it is a task that has
 * started already: the running task may switch straight into it, as the loop
 * would have right after, saving a trip through the loop's stack. */
static struct eddy_task *batch_next_task(struct eddy_loop *loop)
{
    struct eddy__list *node = loop->batch.next;
    if (node == &loop->batch) return NULL;
    struct eddy__work *w = eddy__container_of(node, struct eddy__work, link);
    if (w->run != task_ready_run) return NULL;
    struct eddy_task *next = eddy__container_of(w, struct eddy_task, ready);
    if (next->state == EDDY__TASK_CREATED) return NULL;
    eddy__list_remove(node);
    return next;
}

/* True when the next iteration would only take the ready queue as its batch:
 * nothing to poll, no timer, nothing posted by other threads, no stop. The
 * running task may then begin it itself instead of going through the loop. */
static bool iteration_is_trivial(const struct eddy_loop *loop)
{
    return !loop->stopping && !loop->ops_in_flight && !loop->backend.pending &&
           !eddy__timers_any(&loop->timers) &&
           !__atomic_load_n(&loop->remote_pending, __ATOMIC_RELAXED);
}

/* The task the running one may switch straight into, or NULL to go back to
 * the loop: the next of the batch, or of the next iteration when it would be
 * trivial. */
static struct eddy_task *next_to_run(struct eddy_loop *loop)
{
    struct eddy_task *next = batch_next_task(loop);
    if (!next && eddy__list_empty(&loop->batch) && iteration_is_trivial(loop)) {
        eddy__list_splice(&loop->batch, &loop->ready);
        loop->stats.iterations++;
        next = batch_next_task(loop);
    }
    return next;
}

/* Leaves the running task; returns when something resumes it. Inlined into
 * its two callers: one frame less on every suspended stack, which in a burst
 * of tasks is one cache line less to miss per switch (bench/spawn, warm
 * burst: 21.9 last-level misses per task instead of 24.9 under callgrind's
 * cache simulation, 6 % less time). */
#if defined(__GNUC__)
#define SWITCH_OUT_INLINE inline __attribute__((always_inline))
#else
#define SWITCH_OUT_INLINE inline
#endif
static SWITCH_OUT_INLINE int64_t task_switch_out(struct eddy_task *t)
{
    struct eddy_loop *loop = t->loop;
    task_leave(loop, t);
    struct eddy_task *next = next_to_run(loop);
    if (next == t) {
        /* A yield with nothing else ready: the task simply goes on. */
        task_enter(loop, t);
        return t->wake_result;
    }
    if (next) task_enter(loop, next);
    eddy__fiber_switch(&t->fiber, next ? &next->fiber : &loop->main_fiber);
    /* Resumed: by the loop, by a task that switched out, or by one that
     * ended, whose stack is free now. */
    struct eddy_task *exited = exited_task;
    if (exited) {
        exited_task = NULL;
        task_release(loop, exited);
    }
    return t->wake_result;
}

int64_t eddy__task_suspend(struct eddy_task *t)
{
    t->state = EDDY__TASK_SUSPENDED;
    return task_switch_out(t);
}

void eddy__task_wake(struct eddy_task *t, int64_t result)
{
    if (t->state != EDDY__TASK_SUSPENDED) return;
    t->state = EDDY__TASK_RUNNING;
    t->wake_result = result;
    t->abort_wait = NULL;
    t->wait_data = NULL;
    t->wait_kind = EDDY__WAIT_OTHER;
    eddy__loop_schedule(t->loop, &t->ready);
}

/* Task ids: each thread takes a block of them at a time, so that spawning
 * costs no atomic operation but once per block; unique in the process, never
 * reused (2^64 of them). */
#define TASK_ID_BLOCK 1024
static uint64_t task_ids_taken;
static __thread uint64_t task_id_next EDDY__TLS_MODEL, task_id_end EDDY__TLS_MODEL;

static uint64_t next_task_id(void)
{
    if (EDDY__UNLIKELY(task_id_next == task_id_end)) {
        task_id_next = __atomic_fetch_add(&task_ids_taken, TASK_ID_BLOCK, __ATOMIC_RELAXED) + 1;
        task_id_end = task_id_next + TASK_ID_BLOCK;
    }
    return task_id_next++;
}

/* Task structs a loop keeps for the next spawns, whatever its stack pool
 * holds (lib/stack.c keeps as many free stacks as its high-water mark). */
#define TASK_CACHE_FLOOR 64

/* The cache of freed task structs: a burst of 100 000 tasks ending together
 * would give their 25 MiB back to malloc, which trims its heap and makes the
 * next burst fault it in again (about 100 ns a task). The loop keeps as many
 * structs as its stack pool keeps free stacks (at least TASK_CACHE_FLOOR),
 * so the cache grows with the bursts and decays with the pool
 * (eddy__task_cache_fit, after each of the pool's decay steps). A cached
 * struct's first word links the list; under AddressSanitizer the rest is
 * poisoned until it is handed out again. */
static size_t task_cache_allowed(const struct eddy_loop *loop)
{
    size_t stacks = loop->stacks.free_count;
    return stacks > TASK_CACHE_FLOOR ? stacks : TASK_CACHE_FLOOR;
}

/* The most recently cached struct, taken off the cache; the cache must not
 * be empty. */
static struct eddy_task *task_cache_pop(struct eddy_loop *loop)
{
    struct eddy_task *t = loop->task_cache;
#if EDDY__FIBER_ASAN
    ASAN_UNPOISON_MEMORY_REGION(t, sizeof(*t));
#endif
    loop->task_cache = *(struct eddy_task **)t;
    loop->task_cache_count--;
    return t;
}

static struct eddy_task *task_alloc(struct eddy_loop *loop)
{
    if (loop->task_cache) return task_cache_pop(loop);
    struct eddy_task *t = malloc(sizeof(*t));
    if (t) loop->stats.allocations++;
    return t;
}

static void task_cache_put(struct eddy_loop *loop, struct eddy_task *t)
{
    *(struct eddy_task **)t = loop->task_cache;
    loop->task_cache = t;
    loop->task_cache_count++;
#if EDDY__FIBER_ASAN
    ASAN_POISON_MEMORY_REGION((char *)t + sizeof(void *), sizeof(*t) - sizeof(void *));
#endif
}

void eddy__task_cache_fit(struct eddy_loop *loop, bool all)
{
    size_t keep = all ? 0 : task_cache_allowed(loop);
    while (loop->task_cache_count > keep)
        free(task_cache_pop(loop));
}

EDDY_API eddy_task *eddy_spawn(eddy_loop *loop, eddy_task_fn fn, void *arg)
{
    if (!(loop = eddy__loop_here(loop)) || !fn) return NULL;
    struct eddy_task *t = task_alloc(loop);
    if (!t) return NULL;
    eddy__future_init(&t->future, loop, true);
    t->future.refs = 2; /* the caller's, and the loop's until the task ends */
    t->loop = loop;
    t->fn = fn;
    t->arg = arg;
    t->stack = NULL;
    t->ready.run = task_ready_run;
    t->state = EDDY__TASK_CREATED;
    t->cancel_requested = false;
    t->shield_depth = 0;
    t->cancel_level = -1;
    t->scope = NULL;
    eddy__timer_init(&t->scope_timer, loop, eddy__scope_timer_fire);
    t->wake_result = 0;
    t->abort_wait = NULL;
    t->wait_data = NULL;
    t->group = NULL;
    t->wait_kind = EDDY__WAIT_OTHER;
    t->id = next_task_id();
    t->name = NULL;
    eddy__list_push_back(&loop->tasks, &t->all_link);
    loop->live_tasks++;
    eddy__loop_schedule(loop, &t->ready);
    return t;
}

void eddy__task_free(struct eddy_task *t)
{
    struct eddy_loop *loop = t->future.loop; /* NULL once the loop was freed */
    eddy__list_remove(&t->all_link);
    if (loop && (loop->flags & EDDY_LOOP_DEBUG) && t->future.state == EDDY__FUT_ERROR &&
        !t->future.retrieved)
        eddy__debug_report(loop, "task %p failed with %s (%d) and its error was never retrieved",
                           (void *)t, eddy_strerror((int)t->future.value), (int)t->future.value);
    if (EDDY__UNLIKELY(t->name != NULL)) free(t->name); /* most tasks have none: no call */
    if (loop && loop->task_cache_count < task_cache_allowed(loop))
        task_cache_put(loop, t);
    else
        free(t);
}

/* The loop is being freed: tasks still referenced by their callers (done,
 * not yet joined or detached) forget it, so that dropping them later touches
 * no freed memory. */
void eddy__task_forget_loop(struct eddy_loop *loop)
{
    struct eddy__list *node;
    while ((node = eddy__list_pop_front(&loop->tasks))) {
        struct eddy_task *t = eddy__container_of(node, struct eddy_task, all_link);
        t->future.loop = NULL;
    }
}

EDDY_API eddy_future *eddy_task_future(eddy_task *t)
{
    return t ? &t->future : NULL;
}

EDDY_API int eddy_task_join(eddy_task *t, intptr_t *result)
{
    if (!t) return -EINVAL;
    struct eddy_task *self = eddy__current_task();
    if (eddy__future_foreign(&t->future))
        return self ? eddy__remote_wait(self, &t->future, true, result) : -EPERM;
    if (self == t) return -EDEADLK;
    int err = 0;
    if (self)
        err = eddy__future_wait(self, &t->future);
    else if (t->state != EDDY__TASK_DONE)
        return -EPERM;
    if (err == 0) err = eddy__future_outcome(&t->future, result);
    eddy_future_unref(&t->future);
    return err;
}

EDDY_API void eddy_task_detach(eddy_task *t)
{
    if (t) eddy_future_unref(&t->future); /* refuses a foreign thread too */
}

EDDY_API bool eddy_task_cancel(eddy_task *t)
{
    if (!t || eddy__future_foreign(&t->future) || t->state == EDDY__TASK_DONE) return false;
    if (t->cancel_requested) return true;
    t->cancel_requested = true;
    if (t->cancel_level < 0) t->cancel_level = 0;
    eddy__task_abort_wait(t);
    return true;
}

void eddy__task_abort_wait(struct eddy_task *t)
{
    if (t->state != EDDY__TASK_SUSPENDED || !t->abort_wait || !eddy__task_cancelled(t)) return;
    void (*abort_wait)(struct eddy_task *) = t->abort_wait;
    t->abort_wait = NULL;
    abort_wait(t);
}

void eddy__task_cancel_all(struct eddy_loop *loop)
{
    /* Cancelling ends a task only when it next runs, so the list does not
     * change under the walk; tasks already done just say false. */
    struct eddy__list *node;
    for (node = loop->tasks.next; node != &loop->tasks; node = node->next)
        eddy_task_cancel(eddy__container_of(node, struct eddy_task, all_link));
}

/* ---- awaits that need no future ------------------------------------------- */

struct sleep_wait {
    struct eddy_timer timer;
    struct eddy_task *task;
};

static void sleep_fire(struct eddy_timer *timer)
{
    struct sleep_wait *sw = eddy__container_of(timer, struct sleep_wait, timer);
    eddy__task_wake(sw->task, 0);
}

static void sleep_abort(struct eddy_task *t)
{
    struct sleep_wait *sw = t->wait_data;
    eddy__timer_stop(&sw->timer);
    eddy__task_wake(t, -ECANCELED);
}

EDDY_API int eddy_sleep(int64_t ns)
{
    struct eddy_task *t = eddy__current_task();
    if (!t) return -EPERM;
    if (ns < 0) return -EINVAL;
    if (eddy__task_cancelled(t)) return -ECANCELED;
    struct sleep_wait sw = {.task = t};
    eddy__timer_init(&sw.timer, t->loop, sleep_fire);
    int64_t now = eddy__loop_update_time(t->loop);
    int err = eddy__timer_start(&sw.timer, eddy__deadline_after(now, ns));
    if (err < 0) return err;
    t->abort_wait = sleep_abort;
    eddy__task_waits(t, EDDY__WAIT_SLEEP);
    t->wait_data = &sw;
    return (int)eddy__task_suspend(t);
}

EDDY_API int eddy_yield(void)
{
    struct eddy_task *t = eddy__current_task();
    if (!t) return -EPERM;
    if (eddy__task_cancelled(t)) return -ECANCELED;
    t->wake_result = 0;
    eddy__loop_schedule(t->loop, &t->ready);
    task_switch_out(t);
    return eddy__task_cancelled(t) ? -ECANCELED : 0;
}

EDDY_API void eddy_shield_begin(void)
{
    struct eddy_task *t = eddy__current_task();
    if (t) t->shield_depth++;
}

EDDY_API void eddy_shield_end(void)
{
    struct eddy_task *t = eddy__current_task();
    if (t && t->shield_depth > 0) t->shield_depth--;
}

/* ---- names and ids -------------------------------------------------------- */

EDDY_API int eddy_task_set_name(eddy_task *t, const char *name)
{
    if (!t || !name) return -EINVAL;
    if (eddy__future_foreign(&t->future)) return -EPERM;
    size_t len = strnlen(name, EDDY_TASK_NAME_MAX);
    char *copy = malloc(len + 1);
    if (!copy) return -ENOMEM;
    memcpy(copy, name, len);
    copy[len] = '\0';
    free(t->name);
    t->name = copy;
    return 0;
}

EDDY_API const char *eddy_task_name(const eddy_task *t)
{
    if (!t) return NULL;
    if (t->name) return t->name;
    const char *fn = eddy__symbol_name((const void *)(uintptr_t)t->fn, NULL);
    return fn ? fn : "task";
}

EDDY_API uint64_t eddy_task_id(const eddy_task *t)
{
    return t ? t->id : 0;
}
