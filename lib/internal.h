/* SPDX-License-Identifier: MIT */
/* The engine's internal structures and helpers, shared by lib/ files only. */
#ifndef EDDY_INTERNAL_H
#define EDDY_INTERNAL_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "eddy.h"
#include "fiber.h"
#include "list.h"
#include "sys.h"
#include "../backends/backend.h"

#define EDDY__DEFAULT_STACK_SIZE (256 * 1024)
#define EDDY__SLOW_TASK_NS       (100 * 1000 * 1000)

#if defined(__GNUC__)
#define EDDY__LIKELY(x)   __builtin_expect(!!(x), 1)
#define EDDY__UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#define EDDY__LIKELY(x)   (x)
#define EDDY__UNLIKELY(x) (x)
#endif

/* ---- ready queue --------------------------------------------------------- */

/* A unit of work on the ready queue: a callback, a task to resume, a done
 * callback to deliver. Embedded in whatever owns it. */
struct eddy__work {
    struct eddy__list link;
    void (*run)(struct eddy__work *w);
};

/* ---- timers -------------------------------------------------------------- */

enum {
    EDDY__TIMER_OWNED = 1 << 0, /* the caller holds the handle (eddy_call_later out != NULL) */
    EDDY__TIMER_FIRED = 1 << 1,
    EDDY__TIMER_PUBLIC = 1 << 2, /* allocated by eddy_call_later */
    EDDY__TIMER_DEAD = 1 << 3,   /* cancelled, left in the heap until it surfaces */
};

struct eddy_timer {
    int64_t deadline;    /* loop clock, ns */
    uint32_t heap_index; /* UINT32_MAX when not armed; EDDY__IN_WHEEL_* in the wheel */
    uint32_t flags;      /* EDDY__TIMER_* */
    uint64_t seq;        /* arming order: equal deadlines fire first-in first-out */
    union {
        struct eddy__list link;       /* armed in the wheel: its bucket */
        struct eddy_timer *next_free; /* public timers: their slab's free list */
    };
    struct eddy_loop *loop;
    union {
        void (*fire)(struct eddy_timer *t); /* internal timers (sleep, timeouts) */
        eddy_callback cb;                   /* public timers (EDDY__TIMER_PUBLIC) */
    };
    void *arg; /* public timers */
};

/* A heap slot: the timer's key beside it, so sifting never dereferences. */
struct eddy__heap_entry {
    int64_t deadline;
    uint64_t seq;
    struct eddy_timer *timer;
};

/* Where an armed timer that is not in the heap is (its heap_index). */
#define EDDY__IN_WHEEL_NEAR     (UINT32_MAX - 1)
#define EDDY__IN_WHEEL_FAR      (UINT32_MAX - 2)
#define EDDY__IN_WHEEL_OVERFLOW (UINT32_MAX - 3)
#define EDDY__WHEEL_SLOTS       256

/* Timers not due soon wait in a two-level wheel of unsorted buckets, where
 * arming and stopping are O(1); they reach the heap when theirs is the
 * earliest bucket (lib/timer.c). */
struct eddy__timer_wheel {
    int64_t tick;         /* near ticks (2^24 ns) up to this one are in the heap */
    size_t count;         /* timers in buckets or in overflow */
    int64_t overflow_min; /* no overflow deadline is earlier; INT64_MAX when empty */
    uint64_t used[2][EDDY__WHEEL_SLOTS / 64]; /* non-empty buckets, near and far */
    struct eddy__list slots[2][EDDY__WHEEL_SLOTS];
    struct eddy__list overflow;
};

struct eddy__timer_heap {
    struct eddy__heap_entry *items;
    size_t count, capacity;
    size_t dead; /* cancelled public timers still in items */
    uint64_t next_seq;
    struct eddy__list slabs, partial_slabs; /* public timers' memory (lib/timer.c) */
    size_t empty_slabs;
    int64_t trim_at; /* when spare empty slabs go; 0 = none waiting */
    struct eddy__timer_wheel wheel;
};

void eddy__timers_init(struct eddy__timer_heap *h, int64_t now);
void eddy__timer_init(struct eddy_timer *t, struct eddy_loop *loop,
                      void (*fire)(struct eddy_timer *));
/* The latest deadline a timer can have: later ones are clamped to it, so that
 * INT64_MAX always means "no timer" (eddy__timers_next). */
#define EDDY__DEADLINE_MAX (INT64_MAX - 1)
/* now + delay_ns, saturated at EDDY__DEADLINE_MAX (delay_ns >= 0). */
static inline int64_t eddy__deadline_after(int64_t now, int64_t delay_ns)
{
    return delay_ns > EDDY__DEADLINE_MAX - now ? EDDY__DEADLINE_MAX : now + delay_ns;
}
/* Arms t to fire at deadline (clamped to EDDY__DEADLINE_MAX). 0 or -ENOMEM. */
int eddy__timer_start(struct eddy_timer *t, int64_t deadline);
void eddy__timer_stop(struct eddy_timer *t);
static inline bool eddy__timer_pending(const struct eddy_timer *t)
{
    return t->heap_index != UINT32_MAX;
}
/* The earliest live deadline, or INT64_MAX with no timer. */
int64_t eddy__timers_next(struct eddy__timer_heap *h);
/* Timers that will still fire. */
static inline size_t eddy__timers_live(const struct eddy__timer_heap *h)
{
    return h->count - h->dead + h->wheel.count;
}
/* Any timer armed, live or cancelled-but-not-yet-dropped. */
static inline bool eddy__timers_any(const struct eddy__timer_heap *h)
{
    return h->count || h->wheel.count;
}
/* Fires every timer due at now; returns spare timer memory after a while. */
void eddy__timers_run(struct eddy_loop *loop, int64_t now);
void eddy__timers_destroy(struct eddy_loop *loop);

/* ---- futures ------------------------------------------------------------- */

enum { EDDY__FUT_PENDING = 0, EDDY__FUT_RESULT, EDDY__FUT_ERROR, EDDY__FUT_CANCELLED };

/* Someone to notify when a future is done. notify runs inline in the call that
 * completes the future and may only queue work, never run user code. */
struct eddy__waiter {
    struct eddy__list link;
    void (*notify)(struct eddy__waiter *w, struct eddy_future *f);
};

struct eddy_future {
    struct eddy_loop *loop;
    uint32_t refs;
    uint8_t state;
    bool is_task;
    bool retrieved; /* the outcome was read (for "never retrieved" reports) */
    intptr_t value; /* result, or the error code */
    struct eddy__list waiters;
};

void eddy__future_init(struct eddy_future *f, struct eddy_loop *loop, bool is_task);
/* The loop is being freed: plain futures drop the done callbacks that can no
 * longer run (releasing a future no one else holds) and forget the loop. */
void eddy__futures_forget_loop(struct eddy_loop *loop);
/* Sets the outcome and notifies the waiters. f must be pending. */
void eddy__future_complete(struct eddy_future *f, uint8_t state, intptr_t value);
void eddy__future_add_waiter(struct eddy_future *f, struct eddy__waiter *w);
static inline void eddy__future_remove_waiter(struct eddy__waiter *w)
{
    eddy__list_remove(&w->link);
}
/* The outcome as eddy_future_result gives it (f must be done). */
int eddy__future_outcome(const struct eddy_future *f, intptr_t *value);
/* Waits for f without reading its outcome: 0 once done, -ECANCELED if the
 * task was cancelled first (f is then cancelled too, as asyncio's await does). */
int eddy__future_wait(struct eddy_task *t, struct eddy_future *f);
/* Waits, in task t, for f of another thread's loop (lib/threads.c); the
 * outcome as eddy__future_outcome. join: the caller's reference to the task f
 * is dropped on f's loop's thread. */
int eddy__remote_wait(struct eddy_task *t, struct eddy_future *f, bool join, intptr_t *value);
/* Whether w is such a wait's waiter on f; its loop being freed drops it
 * (the task gets -ECANCELED) before dropping f's reference it held. */
bool eddy__is_remote_wait(const struct eddy__waiter *w);
void eddy__remote_wait_dropped(struct eddy__waiter *w);
/* A task's wait for a future (its wait_data meanwhile). */
struct eddy__future_wait {
    struct eddy__waiter waiter;
    struct eddy_task *task;
    struct eddy_future *future;
};

/* ---- tasks --------------------------------------------------------------- */

struct eddy__scope;

/* What a suspended task waits on, for eddy_loop_dump (lib/introspect.c). */
enum {
    EDDY__WAIT_OTHER = 0,
    EDDY__WAIT_SLEEP,  /* wait_data: lib/task.c's sleep_wait */
    EDDY__WAIT_OP,     /* wait_data: the eddy_op */
    EDDY__WAIT_FUTURE, /* wait_data: the eddy__future_wait (await, join) */
    EDDY__WAIT_GROUP,  /* wait_data: the eddy_group */
    EDDY__WAIT_GATHER, /* wait_data: lib/group.c's multi_wait (gather, wait_any) */
    EDDY__WAIT_SYNC,   /* a lock, event, condition, semaphore, barrier or queue */
};

enum {
    EDDY__TASK_CREATED = 0, /* spawned, never run: no stack yet */
    EDDY__TASK_RUNNING,     /* on the CPU, or ready to be resumed */
    EDDY__TASK_SUSPENDED,   /* waiting for a wake */
    EDDY__TASK_DONE,
};

struct eddy_task {
    struct eddy_future future; /* first: a task is its own future */
    struct eddy_loop *loop;
    eddy_task_fn fn;
    void *arg;
    struct eddy__fiber fiber;
    struct eddy__stack *stack;
    struct eddy__work ready;    /* on the ready queue when runnable */
    struct eddy__list all_link; /* loop->tasks, until the task is freed */
    uint8_t state;
    bool cancel_requested;
    uint8_t wait_kind; /* EDDY__WAIT_*, while suspended */
    unsigned shield_depth;
    /* Awaits fail with -ECANCELED while shield_depth <= cancel_level: 0 once
     * the task is cancelled, a timeout scope's shield depth once that scope
     * has expired (lib/timeout.c), -1 while nothing cancels the task. */
    int cancel_level;
    struct eddy__scope *scope;     /* innermost timeout scope, or NULL */
    struct eddy_timer scope_timer; /* armed at the earliest deadline of the open scopes */
    int64_t wake_result;           /* what the suspended await returns */
    /* How to abort the current wait when the task is cancelled: called once,
     * on the loop thread; it wakes the task (or, for an op, asks the backend
     * and lets the op's completion wake it). NULL while not waiting. */
    void (*abort_wait)(struct eddy_task *t);
    void *wait_data;
    struct eddy_group *group; /* the group that spawned it (lib/group.c), or NULL */
    /* Two words more, not a name buffer: spawning 100 000 tasks at once is
     * bound by the memory their structs take (bench/spawn). */
    uint64_t id; /* eddy_task_id: unique in the process */
    char *name;  /* malloc'd by eddy_task_set_name; NULL: the entry function's */
};

/* Suspends the running task until eddy__task_wake; returns the wake value.
 * The caller sets t->abort_wait/wait_data first (or NULL when the wait cannot
 * be aborted). */
int64_t eddy__task_suspend(struct eddy_task *t);
/* Makes a suspended task runnable; its suspend returns result. */
void eddy__task_wake(struct eddy_task *t, int64_t result);
/* True when an await of the running task must fail with -ECANCELED now. */
static inline bool eddy__task_cancelled(const struct eddy_task *t)
{
    return (int)t->shield_depth <= t->cancel_level;
}
/* Aborts t's current wait if t is suspended in one and cancelled at its
 * shield depth; a wait is aborted at most once. */
void eddy__task_abort_wait(struct eddy_task *t);
/* The scope timer's callback (lib/timeout.c). */
void eddy__scope_timer_fire(struct eddy_timer *timer);
/* A task ends with scopes still open: forgets them (lib/timeout.c). */
void eddy__scopes_abandon(struct eddy_task *t);
/* Frees a task whose last reference went (reports an unretrieved error). */
void eddy__task_free(struct eddy_task *t);
void eddy__task_cancel_all(struct eddy_loop *loop);
void eddy__task_forget_loop(struct eddy_loop *loop);
/* Frees the cached task structs beyond what the stack pool's free stacks
 * allow (all of them when all is true): after the pool's decay steps and
 * when the loop is freed. */
void eddy__task_cache_fit(struct eddy_loop *loop, bool all);
/* Says what t is about to wait on (before eddy__task_suspend). */
static inline void eddy__task_waits(struct eddy_task *t, uint8_t kind)
{
    t->wait_kind = kind;
}
/* The name of the function at addr (NULL when unknown); *offset is addr's
 * distance from its start. Uses dladdr where libc has it (lib/stack.c). */
const char *eddy__symbol_name(const void *addr, uintptr_t *offset);
/* The file name of the object holding addr (NULL when unknown), and addr's
 * offset from where it is loaded: what addr2line -e takes. */
const char *eddy__module_name(const void *addr, uintptr_t *offset);
/* The task waiting for g to end, or NULL (lib/group.c). */
struct eddy_task *eddy__group_waiter(const struct eddy_group *g);
/* The futures a gather or wait_any waits on, from its task's wait_data. */
struct eddy_future *const *eddy__gather_futures(const void *wait_data, size_t *n);
/* The start of that wait_data (lib/group.c checks it), for the dump. */
struct eddy__gather_view {
    struct eddy_task *task;
    struct eddy_future *const *fs;
    size_t n;
};
/* The loop is being freed: groups still to be freed forget it. */
void eddy__groups_forget_loop(struct eddy_loop *loop);

/* ---- ops ----------------------------------------------------------------- */

/* Task-only: submits op and waits for its final completion (the op lifetime
 * rule: if the task is cancelled meanwhile, the op is cancelled in the backend
 * and still awaited). Returns op->result, -ECANCELED if the op was cancelled,
 * or a submission error. -EPERM outside a task. */
int64_t eddy__op_run(struct eddy_op *op);

/* ---- thread pool (lib/pool.c) -------------------------------------------- */

struct eddy__pool;
/* Runs op (a file op or EDDY_OP_WORK) on a worker thread; its completion comes
 * back to loop through eddy__loop_post_completion. 0 or -ENOMEM. */
int eddy__pool_submit(struct eddy_loop *loop, struct eddy_op *op);
/* Removes op if no worker has started it (then completes it with -ECANCELED
 * from the loop, not inline). */
void eddy__pool_cancel(struct eddy_loop *loop, struct eddy_op *op);
/* Executes a file op or EDDY_OP_WORK synchronously (worker threads). */
int64_t eddy__op_execute_blocking(struct eddy_op *op);

/* ---- sockets (lib/net.c) for streams (lib/stream.c) ---------------------- */

struct addrinfo;
/* Task-only: getaddrinfo for a TCP connect, in the thread pool. */
int eddy__tcp_resolve(const char *host, uint16_t port, struct addrinfo **out);
/* Task-only: a new TCP socket connected to addr (closed again on failure). */
int eddy__tcp_connect_addr(eddy_sock **out, const struct sockaddr *addr, socklen_t len);
/* What ops on s name (lib/net.c): its descriptor, or a direct one (EDDY_FD_DIRECT). */
intptr_t eddy__sock_op_fd(const eddy_sock *s);
/* Task-only: Happy Eyeballs over n addresses in the order given (lib/stream.c). */
int eddy__connect_race(eddy_sock **out, const struct sockaddr *const *addrs, const socklen_t *lens,
                       size_t n, int64_t delay_ns);
/* Task-only: eddy_recv on a stream socket that lets the backend lend bytes
 * it holds (EDDY_OP_F_LEND) instead of copying them into buf: then *lent
 * points at them and *token is what the backend's release() takes; else
 * *lent is NULL and any bytes are in buf. */
ssize_t eddy__recv_lend(eddy_sock *s, void *buf, size_t len, const void **lent, int64_t *token);

/* ---- streams (lib/stream.c) for sendfile (lib/sendfile.c) --------------- */

/* Task-only: flushes st's write buffer, then holds later writes back until
 * release; *sock is the socket to send on (NULL: not a plain socket). */
int eddy__stream_hold(eddy_stream *st, eddy_sock **sock);
/* Whether the stream is being closed (the holder must stop and release). */
bool eddy__stream_closing(const eddy_stream *st);
/* Ends the hold with sendfile's result (a send error sticks); st may be freed
 * once it returns. */
void eddy__stream_release(eddy_stream *st, int64_t result);

/* ---- loop ---------------------------------------------------------------- */

/* Reads a caller's options struct (led by size_t size; 0 = layouts[0], the
 * first published layout) into dst, this library's layout (the last of
 * layouts, dst_size bytes): what the caller's layout lacks is 0. -EINVAL for
 * a size that is no layout's, or a later one whose fields this library does
 * not know are not all 0. Reads no byte of src past its size. */
int eddy__options_read(void *dst, size_t dst_size, const void *src, const size_t *layouts,
                       size_t n_layouts);

struct eddy__callback;
struct eddy__stall;

/* loop->flags: internal bits, above the public EDDY_LOOP_* ones. */
#define EDDY__LOOP_STALL (1u << 31) /* the stall detector watches (lib/introspect.c) */

/* A memory region registered with a loop (eddy_buffer_register). */
struct eddy__buf_region {
    char *base; /* NULL: a free index */
    size_t len;
    unsigned calls; /* reads and writes in it in progress */
};

struct eddy_loop {
    struct eddy_backend backend;
    uint8_t caps[EDDY_CAP_COUNT]; /* eddy_support per eddy_cap, from the backend at creation */
    unsigned flags;
    size_t stack_size;
    bool running;
    bool stopping;
    bool closing;        /* eddy_loop_free drops queued work without running it */
    int64_t now;         /* cached clock for the current iteration */
    int64_t virtual_now; /* under EDDY_LOOP_VIRTUAL_TIME */

    struct eddy__list ready; /* eddy__work for the next iteration */
    struct eddy__list batch; /* what the current iteration still has to run */
    int64_t task_started;    /* debug mode: when the running task was resumed */
    struct eddy__timer_heap timers;
    unsigned live_tasks;     /* tasks not yet done */
    struct eddy__list tasks; /* every task not yet freed */
    unsigned ops_in_flight;  /* ops submitted by tasks and not yet completed */

    struct eddy__fiber main_fiber; /* the loop's own stack */
    struct eddy_task *current;
    struct eddy__stack_pool stacks;
    struct eddy_task *task_cache; /* freed task structs kept for spawns (lib/task.c) */
    size_t task_cache_count;

    /* call_soon_threadsafe and thread-pool completions arrive here */
    eddy__mutex remote_lock;
    struct eddy__list remote;     /* eddy__work */
    struct eddy__list remote_ops; /* eddy_op completed by the pool, via op->link */
    unsigned remote_pending;      /* threadsafe calls queued, not yet drained */
    struct eddy__pool *pool;

    struct eddy__callback *callback_free; /* freelist for eddy_call_soon */
    struct eddy__list watches;            /* eddy_watch, while started (lib/watch.c) */
    struct eddy__list futures;            /* plain futures not yet freed (lib/future.c) */
    struct eddy__list groups;             /* groups not yet freed (lib/group.c) */

    /* The thread the loop belongs to (eddy__thread_id), set when a thread
     * first runs it; 0 before, when whoever holds the loop may set it up. */
    uint64_t owner;

    /* eddy_loop_fd (lib/loop.c): a poll set holding the backend's descriptor
     * and a timer that fires when work is ready or a deadline is due; -1
     * until asked for. */
    int embed_fd;
    int embed_timer;
    /* eddy_buffer_register's regions (lib/fs.c), by the backend's index;
     * NULL until the first. */
    struct eddy__buf_region *bufs;
    /* Kept last, away from the fields the switch and spawn paths use. */
    /* eddy_loop_metrics: plain counters; the times only with
     * EDDY_LOOP_METRICS or EDDY_LOOP_DEBUG (they take clock reads). */
    struct {
        uint64_t iterations, idle_ns, run_ns, ops_submitted, ops_completed;
        uint64_t longest_step_ns, allocations;
    } stats;
    int64_t stall_ns;          /* the stall detector's threshold; 0 = off */
    struct eddy__stall *stall; /* its watchdog, once started (lib/introspect.c) */
    /* in eddy_debug_registry's loops (lib/registry.c) */
    struct eddy__list registry_link;
};

/* An op (or a watch, a signal watcher) starts or stops keeping the loop busy. */
static inline void eddy__loop_op_started(struct eddy_loop *loop)
{
    loop->ops_in_flight++;
    loop->stats.ops_submitted++;
}
static inline void eddy__loop_op_ended(struct eddy_loop *loop)
{
    loop->ops_in_flight--;
    loop->stats.ops_completed++;
}

static inline void eddy__loop_schedule(struct eddy_loop *loop, struct eddy__work *w)
{
    eddy__list_push_back(&loop->ready, &w->link);
}
/* eddy_call_soon_threadsafe whose post, if the loop is freed before running
 * it, runs dropped(arg) instead (on the freeing thread; NULL: nothing). */
int eddy__call_soon_threadsafe_or(struct eddy_loop *loop, eddy_callback cb, eddy_callback dropped,
                                  void *arg);
/* Thread-safe: queues a completed pool op for the loop and wakes it. */
void eddy__loop_post_completion(struct eddy_loop *loop, struct eddy_op *op);
/* Stops every watch of a loop being freed (lib/watch.c). */
void eddy__watches_stop_all(struct eddy_loop *loop);
/* Stops the signal watchers of a loop shutting down (lib/signal.c). */
void eddy__signals_stop_all(struct eddy_loop *loop);
/* The stall detector (lib/introspect.c): whether this platform has it; a
 * task of loop starts (started = its clock reading) or stops running; the
 * loop is being freed. */
bool eddy__stall_supported(void);
void eddy__stall_enter(struct eddy_loop *loop, int64_t started);
void eddy__stall_leave(struct eddy_loop *loop);
void eddy__stall_stop(struct eddy_loop *loop);
/* A new loop joins the debug registry, a loop being freed leaves it
 * (lib/registry.c): eddy-ps finds the loops there. */
void eddy__registry_add(struct eddy_loop *loop);
void eddy__registry_remove(struct eddy_loop *loop);
/* Reads the clock (virtual or monotonic) into loop->now. */
int64_t eddy__loop_update_time(struct eddy_loop *loop);
/* Runs one iteration; block says whether it may wait in the backend. */
int eddy__loop_iterate(struct eddy_loop *loop, bool block);
bool eddy__loop_alive(const struct eddy_loop *loop);
/* The compiled-in backends in preference order, NULL-terminated (lib/loop.c). */
extern const struct eddy_backend_ops *const eddy__backends[];
/* Fills loop->caps from its backend, less what EDDY_CAPS_DISABLE names (lib/caps.c). */
void eddy__loop_caps_init(struct eddy_loop *loop);
void eddy__debug_report(struct eddy_loop *loop, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* initial-exec: one load from the thread pointer, not a __tls_get_addr call
 * per access (the variable is small enough for the static TLS surplus that
 * dlopen'd libraries may use). */
#ifdef _WIN32
#define EDDY__TLS_MODEL /* PE has no TLS models */
#else
#define EDDY__TLS_MODEL __attribute__((tls_model("initial-exec")))
#endif
extern __thread struct eddy_loop *eddy__thread_loop EDDY__TLS_MODEL;

/* The task running on this thread, or NULL on the loop's own stack: inline,
 * as every call that may suspend asks (one TLS load and one field). */
static inline struct eddy_task *eddy__current_task(void)
{
    struct eddy_loop *loop = eddy__thread_loop;
    return loop ? loop->current : NULL;
}

/* ---- thread identity ------------------------------------------------------ */

/* This thread's number once it has bound a loop (never 0, never reused). */
extern __thread uint64_t eddy__thread_number EDDY__TLS_MODEL;
/* This thread's number, given on first use. */
uint64_t eddy__thread_id(void);
/* True when the calling thread may not touch loop: it is bound to another
 * thread. One TLS load and a compare, on every loop-bound public call. */
static inline bool eddy__loop_foreign(const struct eddy_loop *loop)
{
    uint64_t owner = __atomic_load_n(&loop->owner, __ATOMIC_RELAXED);
    return EDDY__UNLIKELY(owner != eddy__thread_number) && owner != 0;
}
/* The loop a constructor works on: loop, or the thread's running loop for
 * NULL; NULL, with errno EPERM, when that loop is another thread's. */
struct eddy_loop *eddy__loop_here(struct eddy_loop *loop);
/* As eddy__loop_foreign for what a future or task belongs to; a NULL loop
 * (freed already) belongs to nobody. */
static inline bool eddy__future_foreign(const struct eddy_future *f)
{
    return f->loop && eddy__loop_foreign(f->loop);
}

#endif /* EDDY_INTERNAL_H */
