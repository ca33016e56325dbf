/* SPDX-License-Identifier: MIT */
/* The debug registry: every live loop of the process, in a list reachable
 * from one exported data symbol, eddy_debug_registry, with a table of the
 * offsets and sizes of the fields a reader walks (loops, tasks, their
 * saved contexts, names, states, what they wait on). A reader in another
 * process (tools/eddy-ps) finds the symbol in the ELF symbol tables of the
 * process's mappings and reads it with process_vm_readv, without this
 * library's headers: it learns every layout from the table, as CPython's
 * _Py_DebugOffsets lets external tools read an interpreter. The in-process
 * dump (eddy_loop_dump) reads through the same table (lib/taskdump.c).
 *
 * This header is what both sides share. Only fixed-width types: the
 * registry's own layout is fixed by its version, and a version bump is due
 * whenever a field below changes meaning or place, or an enum value here
 * changes (lib/registry.c checks them against the library's own enums). */
#ifndef EDDY_REGISTRY_H
#define EDDY_REGISTRY_H

#include <stdint.h>

#include "list.h"

#define EDDY__REGISTRY_MAGIC   "eddyloop" /* 8 bytes, no NUL kept */
#define EDDY__REGISTRY_VERSION 1
#define EDDY__REGISTRY_SYMBOL  "eddy_debug_registry"

/* Where a field is in its struct, and how many bytes it takes (integers and
 * pointers: 1, 2, 4 or 8; an embedded struct: its size). */
struct eddy__debug_field {
    uint32_t offset;
    uint32_t size;
};

/* Task states (task.state). */
enum {
    EDDY__DEBUG_TASK_CREATED = 0,
    EDDY__DEBUG_TASK_RUNNING = 1,
    EDDY__DEBUG_TASK_SUSPENDED = 2,
    EDDY__DEBUG_TASK_DONE = 3,
};
/* What a suspended task waits on (task.wait_kind), and what wait_data is. */
enum {
    EDDY__DEBUG_WAIT_OTHER = 0,
    EDDY__DEBUG_WAIT_SLEEP = 1,  /* a struct starting with its timer */
    EDDY__DEBUG_WAIT_OP = 2,     /* the op */
    EDDY__DEBUG_WAIT_FUTURE = 3, /* a future wait (future_wait.future) */
    EDDY__DEBUG_WAIT_GROUP = 4,  /* the group */
    EDDY__DEBUG_WAIT_GATHER = 5, /* a gather wait (gather.futures, gather.count) */
    EDDY__DEBUG_WAIT_SYNC = 6,   /* a sync waiter (sync_waiter.object, .kind) */
};
/* The objects a sync waiter waits on (sync_waiter.kind). */
enum {
    EDDY__DEBUG_SYNC_UNKNOWN = 0,
    EDDY__DEBUG_SYNC_LOCK = 1, /* object: the lock (lock.owner) */
    EDDY__DEBUG_SYNC_EVENT = 2,
    EDDY__DEBUG_SYNC_COND = 3,
    EDDY__DEBUG_SYNC_SEM = 4,
    EDDY__DEBUG_SYNC_BARRIER = 5,
    EDDY__DEBUG_SYNC_QUEUE_GET = 6,
    EDDY__DEBUG_SYNC_QUEUE_PUT = 7,
    EDDY__DEBUG_SYNC_QUEUE_JOIN = 8,
};
/* The op kinds (op.kind), in backends/backend.h's order. */
#define EDDY__DEBUG_OP_NAMES                                                                       \
    {                                                                                              \
        "none", "accept", "connect", "recv", "send", "recvmsg", "sendmsg", "shutdown", "close",    \
            "read", "write", "fsync", "open", "stat", "unlink", "rename", "mkdir", "work", "poll", \
            "splice"                                                                               \
    }
#define EDDY__DEBUG_OP_RECV  3
#define EDDY__DEBUG_OP_POLL  18
#define EDDY__DEBUG_OP_COUNT 20
/* An op being cancelled (op.state). */
#define EDDY__DEBUG_OP_CANCELLING 2
/* No frame walk: the context switch keeps no frame pointer where this
 * reader can find it (ucontext, Windows). */
#define EDDY__DEBUG_NO_SLOT UINT32_MAX

struct eddy__debug_layout {
    /* the loop */
    struct eddy__debug_field loop_link;      /* list node in registry.loops */
    struct eddy__debug_field loop_tasks;     /* list head of task.all_link */
    struct eddy__debug_field loop_current;   /* the running task, or 0 */
    struct eddy__debug_field loop_backend;   /* pointer to the backend's ops */
    struct eddy__debug_field backend_name;   /* in those ops: pointer to the name */
    struct eddy__debug_field loop_now;       /* loop clock, ns */
    struct eddy__debug_field loop_in_flight; /* ops in flight */
    struct eddy__debug_field loop_owner;     /* the thread's number (0: none yet) */
    /* counters that change as the loop works: a reader compares them before
     * and after it walks the tasks */
    struct eddy__debug_field loop_iterations;
    struct eddy__debug_field loop_allocations;
    struct eddy__debug_field loop_submitted;
    struct eddy__debug_field loop_completed;
    /* list nodes: {prev, next} */
    struct eddy__debug_field list_prev;
    struct eddy__debug_field list_next;
    /* a task (its address is its future's) */
    uint32_t task_size;
    struct eddy__debug_field task_link; /* node in loop.tasks */
    struct eddy__debug_field task_id;
    struct eddy__debug_field task_name; /* char *, NUL-terminated, or 0 */
    struct eddy__debug_field task_fn;   /* entry function */
    struct eddy__debug_field task_state;
    struct eddy__debug_field task_wait_kind;
    struct eddy__debug_field task_wait_data;
    struct eddy__debug_field task_cancelled;
    struct eddy__debug_field task_group;
    struct eddy__debug_field task_scope;          /* innermost timeout scope, or 0 */
    struct eddy__debug_field task_scope_deadline; /* its timer's deadline ... */
    struct eddy__debug_field task_scope_armed;    /* ... which is armed unless this is ~0 */
    struct eddy__debug_field task_stack;          /* pointer to its stack, or 0 */
    struct eddy__debug_field task_sp;             /* saved stack pointer */
    struct eddy__debug_field stack_lo;            /* in the stack: usable [lo, lo + size) */
    struct eddy__debug_field stack_size;
    /* the saved context, in words from the saved stack pointer */
    uint32_t saved_fp;
    uint32_t saved_pc;
    /* futures, timers, ops and waits */
    struct eddy__debug_field future_is_task;
    struct eddy__debug_field timer_deadline;
    struct eddy__debug_field op_kind;
    struct eddy__debug_field op_fd;
    struct eddy__debug_field op_state;
    struct eddy__debug_field future_wait_future;
    struct eddy__debug_field gather_futures; /* pointer to an array of future pointers */
    struct eddy__debug_field gather_count;
    struct eddy__debug_field sync_object;
    struct eddy__debug_field sync_kind;
    struct eddy__debug_field lock_owner;    /* the task holding it, or 0 */
    struct eddy__debug_field lock_owner_id; /* that task's id (an ended one's successor differs) */
    uint32_t name_max;                      /* a task name's longest length */
};

struct eddy__debug_registry {
    char magic[8];    /* EDDY__REGISTRY_MAGIC */
    uint32_t version; /* EDDY__REGISTRY_VERSION */
    uint32_t size;    /* of this struct */
    uint32_t pointer_size;
    uint32_t reserved;
    /* Even while the loop list is still; odd while a loop joins or leaves
     * it. A reader takes it before and after its walk, and walks again when
     * the two differ or are odd (a seqlock). */
    uint64_t generation;
    uint32_t lock; /* writers' spin lock (creating and freeing loops) */
    uint32_t reserved2;
    /* Every loop not yet freed, through loop_link: {prev, next}. */
    struct eddy__list loops;
    struct eddy__debug_layout layout;
};

/* The library's registry (lib/registry.c). */
extern struct eddy__debug_registry eddy_debug_registry;

#endif /* EDDY_REGISTRY_H */
