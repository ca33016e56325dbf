/* SPDX-License-Identifier: MIT */
/* The debug registry (lib/registry.h): the loops of the process, for
 * eddy-ps in another process and eddy_loop_dump in this one. A loop joins
 * it when created and leaves it when freed; nothing per task or per switch
 * touches it (the tasks are found through each loop's own task list). */
#include "registry.h"

#include "internal.h"
#include "sync.h"

#define FIELD(type, member)                                                                        \
    {                                                                                              \
        (uint32_t) offsetof(type, member), (uint32_t)sizeof(((type *)0)->member)                   \
    }

/* The sleep wait of lib/task.c starts with its timer. */
struct sleep_wait_view {
    struct eddy_timer timer;
};

EDDY_API struct eddy__debug_registry eddy_debug_registry = {
    .magic = {'e', 'd', 'd', 'y', 'l', 'o', 'o', 'p'}, /* EDDY__REGISTRY_MAGIC, no NUL */
    .version = EDDY__REGISTRY_VERSION,
    .size = sizeof(struct eddy__debug_registry),
    .pointer_size = sizeof(void *),
    .loops = {&eddy_debug_registry.loops, &eddy_debug_registry.loops},
    .layout =
        {
            .loop_link = FIELD(struct eddy_loop, registry_link),
            .loop_tasks = FIELD(struct eddy_loop, tasks),
            .loop_current = FIELD(struct eddy_loop, current),
            .loop_backend = FIELD(struct eddy_loop, backend.ops),
            .backend_name = FIELD(struct eddy_backend_ops, name),
            .loop_now = FIELD(struct eddy_loop, now),
            .loop_in_flight = FIELD(struct eddy_loop, ops_in_flight),
            .loop_owner = FIELD(struct eddy_loop, owner),
            .loop_iterations = FIELD(struct eddy_loop, stats.iterations),
            .loop_allocations = FIELD(struct eddy_loop, stats.allocations),
            .loop_submitted = FIELD(struct eddy_loop, stats.ops_submitted),
            .loop_completed = FIELD(struct eddy_loop, stats.ops_completed),
            .list_prev = FIELD(struct eddy__list, prev),
            .list_next = FIELD(struct eddy__list, next),
            .task_size = sizeof(struct eddy_task),
            .task_link = FIELD(struct eddy_task, all_link),
            .task_id = FIELD(struct eddy_task, id),
            .task_name = FIELD(struct eddy_task, name),
            .task_fn = FIELD(struct eddy_task, fn),
            .task_state = FIELD(struct eddy_task, state),
            .task_wait_kind = FIELD(struct eddy_task, wait_kind),
            .task_wait_data = FIELD(struct eddy_task, wait_data),
            .task_cancelled = FIELD(struct eddy_task, cancel_requested),
            .task_group = FIELD(struct eddy_task, group),
            .task_scope = FIELD(struct eddy_task, scope),
            .task_scope_deadline = FIELD(struct eddy_task, scope_timer.deadline),
            .task_scope_armed = FIELD(struct eddy_task, scope_timer.heap_index),
            .task_stack = FIELD(struct eddy_task, stack),
#if EDDY_CONTEXT_UCONTEXT
            .task_sp = {0, 0},
#else
            .task_sp = FIELD(struct eddy_task, fiber.sp),
#endif
            .stack_lo = FIELD(struct eddy__stack, lo),
            .stack_size = FIELD(struct eddy__stack, size),
#ifdef EDDY__SAVED_FP
            .saved_fp = EDDY__SAVED_FP,
            .saved_pc = EDDY__SAVED_PC,
#else
            .saved_fp = EDDY__DEBUG_NO_SLOT,
            .saved_pc = EDDY__DEBUG_NO_SLOT,
#endif
            .future_is_task = FIELD(struct eddy_future, is_task),
            .timer_deadline = FIELD(struct sleep_wait_view, timer.deadline),
            .op_kind = FIELD(struct eddy_op, kind),
            .op_fd = FIELD(struct eddy_op, fd),
            .op_state = FIELD(struct eddy_op, state),
            .future_wait_future = FIELD(struct eddy__future_wait, future),
            .gather_futures = FIELD(struct eddy__gather_view, fs),
            .gather_count = FIELD(struct eddy__gather_view, n),
            .sync_object = FIELD(struct eddy__sync_waiter, object),
            .sync_kind = FIELD(struct eddy__sync_waiter, object_kind),
            .lock_owner = FIELD(struct eddy__lock_view, owner),
            .lock_owner_id = FIELD(struct eddy__lock_view, owner_id),
            .name_max = EDDY_TASK_NAME_MAX,
        },
};

/* The values registry.h promises a reader. */
#define SAME(a, b) ((int)(a) == (int)(b))
_Static_assert(offsetof(struct eddy_task, future) == 0, "a task's address is its future's");
_Static_assert(sizeof EDDY__REGISTRY_MAGIC == sizeof eddy_debug_registry.magic + 1,
               "the magic fills its 8 bytes");
_Static_assert(SAME(EDDY__TASK_CREATED, EDDY__DEBUG_TASK_CREATED) &&
                   SAME(EDDY__TASK_RUNNING, EDDY__DEBUG_TASK_RUNNING) &&
                   SAME(EDDY__TASK_SUSPENDED, EDDY__DEBUG_TASK_SUSPENDED) &&
                   SAME(EDDY__TASK_DONE, EDDY__DEBUG_TASK_DONE),
               "task states: registry.h's (bump EDDY__REGISTRY_VERSION)");
_Static_assert(SAME(EDDY__WAIT_OTHER, EDDY__DEBUG_WAIT_OTHER) &&
                   SAME(EDDY__WAIT_SLEEP, EDDY__DEBUG_WAIT_SLEEP) &&
                   SAME(EDDY__WAIT_OP, EDDY__DEBUG_WAIT_OP) &&
                   SAME(EDDY__WAIT_FUTURE, EDDY__DEBUG_WAIT_FUTURE) &&
                   SAME(EDDY__WAIT_GROUP, EDDY__DEBUG_WAIT_GROUP) &&
                   SAME(EDDY__WAIT_GATHER, EDDY__DEBUG_WAIT_GATHER) &&
                   SAME(EDDY__WAIT_SYNC, EDDY__DEBUG_WAIT_SYNC),
               "wait kinds: registry.h's (bump EDDY__REGISTRY_VERSION)");
_Static_assert(SAME(EDDY__SYNC_UNKNOWN, EDDY__DEBUG_SYNC_UNKNOWN) &&
                   SAME(EDDY__SYNC_LOCK, EDDY__DEBUG_SYNC_LOCK) &&
                   SAME(EDDY__SYNC_EVENT, EDDY__DEBUG_SYNC_EVENT) &&
                   SAME(EDDY__SYNC_COND, EDDY__DEBUG_SYNC_COND) &&
                   SAME(EDDY__SYNC_SEM, EDDY__DEBUG_SYNC_SEM) &&
                   SAME(EDDY__SYNC_BARRIER, EDDY__DEBUG_SYNC_BARRIER) &&
                   SAME(EDDY__SYNC_QUEUE_GET, EDDY__DEBUG_SYNC_QUEUE_GET) &&
                   SAME(EDDY__SYNC_QUEUE_PUT, EDDY__DEBUG_SYNC_QUEUE_PUT) &&
                   SAME(EDDY__SYNC_QUEUE_JOIN, EDDY__DEBUG_SYNC_QUEUE_JOIN),
               "sync kinds: registry.h's (bump EDDY__REGISTRY_VERSION)");
_Static_assert(SAME(EDDY_OP_RECV, EDDY__DEBUG_OP_RECV) && SAME(EDDY_OP_POLL, EDDY__DEBUG_OP_POLL) &&
                   SAME(EDDY_OP_KIND_COUNT, EDDY__DEBUG_OP_COUNT),
               "op kinds: registry.h's names (bump EDDY__REGISTRY_VERSION)");
_Static_assert(SAME(EDDY_OP_STATE_CANCELLING, EDDY__DEBUG_OP_CANCELLING),
               "op states: registry.h's (bump EDDY__REGISTRY_VERSION)");

/* Loops are created and freed on any thread, rarely: a spin lock is enough,
 * and needs no initialisation before the first loop. */
static void registry_change_begin(struct eddy__debug_registry *r)
{
    while (__atomic_exchange_n(&r->lock, 1, __ATOMIC_ACQUIRE))
        ;
    __atomic_store_n(&r->generation, r->generation + 1, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_RELEASE);
}

static void registry_change_end(struct eddy__debug_registry *r)
{
    __atomic_store_n(&r->generation, r->generation + 1, __ATOMIC_RELEASE);
    __atomic_store_n(&r->lock, 0, __ATOMIC_RELEASE);
}

void eddy__registry_add(struct eddy_loop *loop)
{
    registry_change_begin(&eddy_debug_registry);
    eddy__list_push_back(&eddy_debug_registry.loops, &loop->registry_link);
    registry_change_end(&eddy_debug_registry);
}

void eddy__registry_remove(struct eddy_loop *loop)
{
    registry_change_begin(&eddy_debug_registry);
    eddy__list_remove(&loop->registry_link);
    registry_change_end(&eddy_debug_registry);
}
