/* SPDX-License-Identifier: MIT */
/* eddy: asyncio's model in C -- one event loop per thread, stackful tasks that
 * suspend at await, futures, timers, sockets and files over pluggable backends.
 *
 * Conventions: every call that can fail returns >= 0 on success or a negative
 * errno-style code (-EINVAL, -ECANCELED, ...), named by eddy_strerror(). Calls
 * marked "task-only" suspend the calling task and return -EPERM outside a task.
 *
 * Threads: a loop belongs to the thread that first runs it (eddy_loop_run,
 * eddy_run); before that, whoever holds it may set it up. From any other
 * thread, the calls on the loop or on its futures, tasks, timers and groups
 * are refused: -EPERM, NULL with errno EPERM, false, or for void calls
 * nothing at all. Only eddy_call_soon_threadsafe may be called from any
 * thread, and eddy_loop_free once the owner is done with the loop.
 * A wait that could only end once the waiter itself has ended (a task
 * awaiting its own future, a group child waiting on its group) is -EDEADLK. */
#ifndef EDDY_H
#define EDDY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>
#if defined(_MSC_VER) && !defined(_SSIZE_T_DEFINED) && !defined(_SSIZE_T_)
typedef intptr_t ssize_t; /* MSVC has no ssize_t; mingw-w64 and POSIX do */
#define _SSIZE_T_DEFINED
#define _SSIZE_T_
#endif

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#if defined(EDDY_BUILDING)
#define EDDY_API __declspec(dllexport)
#elif defined(EDDY_STATIC)
#define EDDY_API
#else
#define EDDY_API __declspec(dllimport)
#endif
#elif defined(__GNUC__)
#define EDDY_API __attribute__((visibility("default")))
#else
#define EDDY_API
#endif

/* EDDY_NODISCARD marks a result to check that a caller may still drop with
 * a (void) cast (a cleanup path: a last send, a sync); EDDY_MUST_USE one
 * that is never right to drop (a new handle or allocation, or the error of
 * the call that makes one). Both are C23's (and C++17's) [[nodiscard]],
 * which (void) silences. Before C23, GCC's warn_unused_result does not give
 * way to (void): EDDY_NODISCARD is then nothing under GCC (Clang's, which
 * does give way, stays), and only EDDY_MUST_USE keeps it. Both go before
 * EDDY_API. */
#if defined(__cplusplus) && __cplusplus >= 201703L
#define EDDY__STD_NODISCARD 1
#elif !defined(__cplusplus) && defined(__STDC_VERSION__) && __STDC_VERSION__ > 201710L &&          \
    defined(__has_c_attribute)
#if __has_c_attribute(nodiscard)
#define EDDY__STD_NODISCARD 1
#endif
#endif
#if defined(EDDY__STD_NODISCARD)
#define EDDY_NODISCARD [[nodiscard]]
#define EDDY_MUST_USE  [[nodiscard]]
#elif defined(__clang__)
#define EDDY_NODISCARD __attribute__((warn_unused_result))
#define EDDY_MUST_USE  __attribute__((warn_unused_result))
#elif defined(__GNUC__)
#define EDDY_NODISCARD
#define EDDY_MUST_USE __attribute__((warn_unused_result))
#else
#define EDDY_NODISCARD
#define EDDY_MUST_USE
#endif

/* ---- version ---------------------------------------------------------- */

/* The version of the header a program was compiled with; configure.ac reads
 * the release number from these three lines. eddy_version() gives the
 * library's own at run time, to compare with EDDY_VERSION_HEX. */
#define EDDY_VERSION_MAJOR 0
#define EDDY_VERSION_MINOR 1
#define EDDY_VERSION_PATCH 0
#define EDDY_VERSION_HEX                                                                           \
    ((EDDY_VERSION_MAJOR << 16) | (EDDY_VERSION_MINOR << 8) | EDDY_VERSION_PATCH)

/* The running library's version as EDDY_VERSION_HEX encodes it (0x000100 for 0.1.0). */
EDDY_API unsigned eddy_version(void);
/* The running library's version as "MAJOR.MINOR.PATCH". */
EDDY_API const char *eddy_version_string(void);

/* ---- errors ---------------------------------------------------------- */

/* A short description of a negative error code (or "success" for 0). */
EDDY_API const char *eddy_strerror(int err);
/* True when a task's return value (or any intptr_t) is an error code. */
#define EDDY_IS_ERROR(v) ((intptr_t)(v) < 0 && (intptr_t)(v) >= -4095)

/* ---- loop ------------------------------------------------------------ */

typedef struct eddy_loop eddy_loop;
typedef struct eddy_timer eddy_timer;
typedef struct eddy_task eddy_task; /* tasks, below */

enum {
    EDDY_LOOP_DEBUG = 1 << 0,          /* report slow tasks and unretrieved errors */
    EDDY_LOOP_VIRTUAL_TIME = 1 << 1,   /* the clock jumps to the next deadline when idle */
    EDDY_LOOP_NO_GUARD_PAGES = 1 << 2, /* canary-checked stacks without guard pages */
    EDDY_LOOP_METRICS = 1 << 3,        /* eddy_loop_metrics measures times too */
};

/* Option structs grow by their size (docs/decisions.md, ABI): each begins
 * with size_t size, which says how much of it the caller laid out. 0 means
 * the first published layout, so `eddy_loop_options o = {.backend = "epoll"}`
 * keeps working in every release; EDDY_LOOP_OPTIONS_INIT(...) sets size to
 * the layout compiled against, which fields added in later releases need to
 * be read. A library older than the caller's header gets a larger size: the
 * fields it does not know must be 0 (else -EINVAL), and it reads no byte
 * past size. Fields are only ever added at the end, with no padding. */
typedef struct eddy_loop_options {
    size_t size;          /* sizeof(eddy_loop_options), or 0: the first layout (these fields) */
    const char *backend;  /* NULL or "auto", "io_uring", "epoll", "kqueue", "iocp" */
    size_t stack_size;    /* default task stack; 0 = library default (256 KiB) */
    unsigned flags;       /* EDDY_LOOP_* */
    unsigned queue_depth; /* submission queue hint; 0 = default */
    /* (0.2) Stall detector: a task that runs longer than this without
     * awaiting is reported on stderr with its backtrace, taken while it still
     * runs (docs/debugging.md). 0 = off, or 100 ms under EDDY_LOOP_DEBUG. */
    int64_t stall_ns;
} eddy_loop_options;

/* An initialiser with size set: EDDY_LOOP_OPTIONS_INIT(.backend = "epoll"). */
#define EDDY_LOOP_OPTIONS_INIT(...)                                                                \
    {                                                                                              \
        .size = sizeof(eddy_loop_options), __VA_ARGS__                                             \
    }

/* Creates a loop. opts may be NULL. Returns 0, -EINVAL for bad options (a
 * size that is no layout's, options this library does not know), -ENOENT
 * for an unknown backend name, -ENOMEM, or the backend's error. */
EDDY_MUST_USE EDDY_API int eddy_loop_new(eddy_loop **out, const eddy_loop_options *opts);
/* Cancels live tasks and runs them to their end, then frees the loop. Any
 * thread may free a loop that is not running (the caller takes it over: its
 * owner must be done with it); a running loop is left alone. */
EDDY_API void eddy_loop_free(eddy_loop *loop);
/* Runs until no task, timer, callback or op is pending, or eddy_loop_stop;
 * the first run binds the loop to the calling thread. Returns 0, -EINVAL for
 * NULL, -EPERM on another thread than the first run's, -EBUSY when the loop
 * (or another loop on this thread) is already running. */
EDDY_API int eddy_loop_run(eddy_loop *loop);
/* Makes eddy_loop_run return after the current iteration. Does nothing from
 * another thread: post a callback that calls it (eddy_call_soon_threadsafe). */
EDDY_API void eddy_loop_stop(eddy_loop *loop);
/* The name of the backend the loop runs on ("epoll", "io_uring", ...). */
EDDY_API const char *eddy_loop_backend(const eddy_loop *loop);
/* The loop running on this thread, or NULL. */
EDDY_API eddy_loop *eddy_loop_current(void);
/* Monotonic time in ns (virtual under EDDY_LOOP_VIRTUAL_TIME). loop NULL = the
 * current loop; -EINVAL when there is none, -EPERM from another thread than
 * the loop's. */
EDDY_API int64_t eddy_now(eddy_loop *loop);

typedef void (*eddy_callback)(void *arg);
/* Runs cb(arg) on the next iteration, after what is already queued. 0,
 * -EINVAL, -ENOMEM, -EPERM from another thread than the loop's. */
EDDY_NODISCARD EDDY_API int eddy_call_soon(eddy_loop *loop, eddy_callback cb, void *arg);
/* The same, callable from any thread (the only such call); wakes the loop. */
EDDY_NODISCARD EDDY_API int eddy_call_soon_threadsafe(eddy_loop *loop, eddy_callback cb, void *arg);
/* Runs cb(arg) after delay_ns (>= 0; a deadline past the clock's range is
 * the clock's last instant). out == NULL: the timer frees itself after
 * firing. out != NULL: the caller owns the handle, valid even after it fired,
 * and releases it with eddy_timer_cancel exactly once. -EPERM off the loop's thread. */
EDDY_NODISCARD EDDY_API int eddy_call_later(eddy_loop *loop, int64_t delay_ns, eddy_callback cb,
                                            void *arg, eddy_timer **out);
/* Stops the timer if still pending and frees the handle. Returns 0 if it was
 * pending, -EALREADY if it had fired already, -EINVAL for NULL, -EPERM off
 * the loop's thread (the handle is then kept). */
EDDY_API int eddy_timer_cancel(eddy_timer *t);

typedef intptr_t (*eddy_task_fn)(void *arg);
/* asyncio.run: a new loop, main run as a task to completion, then the other
 * tasks cancelled and run to their end, and the loop freed. Returns what
 * eddy_task_join would for main, or the loop's creation error. */
EDDY_API int eddy_run(eddy_task_fn main, void *arg, intptr_t *result);

/* ---- embedding and several loops (docs/threads.md) ------------------------ */

/* One iteration of the loop (libuv's UV_RUN_ONCE), waiting at most timeout_ns
 * for I/O or a deadline (0 = not at all, < 0 = until something happens).
 * Binds the loop to the thread as eddy_loop_run. Returns 1 while the loop
 * has work left (tasks, timers, ops), 0 when it has none, -EINVAL, -EPERM on
 * another thread than the loop's, -EBUSY inside a running loop. */
EDDY_NODISCARD EDDY_API int eddy_loop_run_once(eddy_loop *loop, int64_t timeout_ns);
/* A descriptor that polls readable when the loop has work (I/O done, a
 * threadsafe post, a task ready, a timer due), for a foreign loop to call
 * eddy_loop_run_once(loop, 0) then. Owned by the loop. -ENOTSUP on Windows. */
EDDY_NODISCARD EDDY_API intptr_t eddy_loop_fd(const eddy_loop *loop);
/* Spawns fn(arg) on loop from any thread (run_coroutine_threadsafe). On the
 * loop's own thread, eddy_spawn. From a thread running another loop, the
 * reference is to a proxy task of that loop: join, detach or cancel it there
 * (cancelling it cancels the remote task; its join gives the remote task's
 * result once that has ended). From a plain thread, waits until the task
 * exists on loop (which must be running) and returns it: only loop's thread
 * may join or detach it. NULL, errno EINVAL, ENOMEM, or ECANCELED (from a
 * plain thread: loop was freed before it made the task). */
EDDY_MUST_USE EDDY_API eddy_task *eddy_spawn_threadsafe(eddy_loop *loop, eddy_task_fn fn, void *arg);
/* Runs n loops on n new threads (each pinned to a CPU where the platform
 * allows), eddy_run(main, arg) on each, and returns once all have ended: 0,
 * or the first (by thread index) error: a loop's, or main's negative result.
 * -EINVAL for n == 0 or > 4096 or a NULL main. */
EDDY_API int eddy_run_threads(unsigned n, eddy_task_fn main, void *arg);

/* ---- futures ----------------------------------------------------------- */

/* Reference counted; the creator holds one reference. Done callbacks run from
 * the loop's ready queue, never inline in the call that completes the future.
 * A future is its loop's: from another thread the calls below are refused
 * (-EPERM, NULL, false; ref and unref do nothing). Freeing the loop drops the
 * done callbacks of pending futures without running them (releasing a future
 * only they held); a future still referenced outlives the loop. */
typedef struct eddy_future eddy_future;
/* A new pending future on loop (NULL = the current loop); NULL on -ENOMEM,
 * or with errno EPERM from another thread than the loop's. */
EDDY_MUST_USE EDDY_API eddy_future *eddy_future_new(eddy_loop *loop);
EDDY_API void eddy_future_ref(eddy_future *f);
EDDY_API void eddy_future_unref(eddy_future *f);
/* Completes f. -EALREADY if done, -EINVAL for NULL or a task's future. */
EDDY_API int eddy_future_set_result(eddy_future *f, intptr_t value);
/* Fails f with err (a negative code in [-4095, -1], else -EINVAL). */
EDDY_API int eddy_future_set_error(eddy_future *f, int err);
/* Cancels f (outcome -ECANCELED); false if already done. On a task's future
 * it requests the task's cancellation, as eddy_task_cancel. */
EDDY_API bool eddy_future_cancel(eddy_future *f);
/* True once f has a value, an error, or was cancelled. */
EDDY_API bool eddy_future_done(const eddy_future *f);
/* 0 and the value, f's error, -EAGAIN while pending, -EINVAL for NULL,
 * -EPERM off the loop's thread. */
EDDY_API int eddy_future_result(const eddy_future *f, intptr_t *value);
/* Calls cb(f, arg) from the ready queue once f is done (next iteration if it
 * is done already). 0, -EINVAL (also once the loop is freed), -ENOMEM, -EPERM. */
EDDY_NODISCARD EDDY_API int eddy_future_on_done(eddy_future *f,
                                                void (*cb)(eddy_future *f, void *arg), void *arg);
/* Task-only: suspends until f is done; returns its outcome as
 * eddy_future_result. If the task is cancelled meanwhile, f is cancelled too
 * (as asyncio's await does) and -ECANCELED is returned. -EDEADLK for the
 * task's own future. A future of another thread's loop is awaited by posts
 * (docs/threads.md); it must stay referenced there until the await returns. */
EDDY_API int eddy_await(eddy_future *f, intptr_t *value);
/* Task-only: eddy_await with a limit (asyncio.wait_for), inside a timeout
 * scope. When timeout_ns passes, f is cancelled (a task's future: the task is
 * cancelled and awaited to its end) and -ETIMEDOUT is returned; an enclosing
 * scope's expiry or the caller's cancellation gives -ECANCELED instead.
 * timeout_ns < 0 waits forever. -EDEADLK and -EPERM as eddy_await; across
 * loops the wait stops at the limit and f is left as it is. */
EDDY_API int eddy_await_timeout(eddy_future *f, int64_t timeout_ns, intptr_t *value);

/* ---- tasks --------------------------------------------------------------- */

/* create_task: fn(arg) runs as a task from the next iteration on. loop NULL =
 * the current loop. Returns a reference to join or detach; NULL on -ENOMEM, a
 * NULL fn, no loop, or (errno EPERM) another thread than the loop's. */
EDDY_MUST_USE EDDY_API eddy_task *eddy_spawn(eddy_loop *loop, eddy_task_fn fn, void *arg);
/* The task's future (borrowed: the task is its own future). */
EDDY_API eddy_future *eddy_task_future(eddy_task *t);
/* Task-only: awaits t, then drops the reference. 0 and fn's result, or the
 * task's error (-ECANCELED for a task cancelled before it started). Outside a
 * task, a task already done is joined without waiting; else -EPERM. A task
 * joining itself gets -EDEADLK. A task joins another thread's loop's task
 * by posts (docs/threads.md); a plain thread gets -EPERM. */
EDDY_API int eddy_task_join(eddy_task *t, intptr_t *result);
/* Drops the reference; the loop frees the task when it ends. (Nothing from
 * another thread than the loop's.) */
EDDY_API void eddy_task_detach(eddy_task *t);
/* Requests cancellation (sticky: the task's awaits return -ECANCELED until it
 * ends, outside shields). False once the task is done, or from another thread. */
EDDY_API bool eddy_task_cancel(eddy_task *t);
/* The task running on this thread, or NULL. */
EDDY_API eddy_task *eddy_task_current(void);
/* Task-only: suspends for ns (>= 0; INT64_MAX: as long as the clock goes,
 * which virtual time reaches at once). 0, or -ECANCELED. */
EDDY_API int eddy_sleep(int64_t ns);
/* Task-only: lets every other ready task run once (asyncio.sleep(0)). 0, or -ECANCELED. */
EDDY_API int eddy_yield(void);
/* Between begin and end, awaits of the calling task ignore its cancellation,
 * which is delivered at the first await after the outermost end. Nests. */
EDDY_API void eddy_shield_begin(void);
EDDY_API void eddy_shield_end(void);

/* ---- seeing inside a running program ------------------------------------ */

/* The longest task name kept, in bytes (longer ones are cut there). */
#define EDDY_TASK_NAME_MAX 31
/* Names t (a copy, cut at EDDY_TASK_NAME_MAX bytes). 0, -EINVAL for NULL,
 * -ENOMEM, -EPERM from another thread than the task's loop's. */
EDDY_API int eddy_task_set_name(eddy_task *t, const char *name);
/* t's name: the one set, else its entry function's (through the dynamic
 * symbol table), else "task". NULL for NULL. Valid until it is renamed or freed. */
EDDY_API const char *eddy_task_name(const eddy_task *t);
/* t's id: unique in the process and never reused, from 1; 0 for NULL. */
EDDY_API uint64_t eddy_task_id(const eddy_task *t);

/* What a loop has done so far (docs/debugging.md). Grows by its leading
 * size as option structs do: the caller sets size (0: the first layout),
 * the library fills no more than that many bytes. */
typedef struct eddy_loop_metrics_t {
    size_t size;              /* sizeof(eddy_loop_metrics_t), or 0: the first layout */
    uint64_t iterations;      /* loop iterations */
    uint64_t idle_ns;         /* time waiting in the backend (*) */
    uint64_t run_ns;          /* time running tasks and callbacks (*) */
    uint64_t ops_submitted;   /* ops (and watches) that went in flight */
    uint64_t ops_completed;   /* of those, ended: submitted = completed + in_flight */
    uint64_t ops_in_flight;   /* now */
    uint64_t tasks_alive;     /* tasks not yet ended */
    uint64_t tasks_ready;     /* of those, ready to run now */
    uint64_t longest_step_ns; /* longest a task ran without awaiting (*) */
    uint64_t allocations;     /* task and callback allocations made by the loop */
} eddy_loop_metrics_t;        /* (*) with EDDY_LOOP_METRICS or EDDY_LOOP_DEBUG, else 0 */

/* Fills m with loop's counters. 0, -EINVAL (NULL, a size too small to hold
 * a field), -EPERM from another thread than the loop's. */
EDDY_NODISCARD EDDY_API int eddy_loop_metrics(eddy_loop *loop, eddy_loop_metrics_t *m);
/* Writes every task of loop to out: id, name, state, what it waits on, who
 * awaits it, its backtrace; then the tree of who awaits whom. 0, -EINVAL,
 * -EPERM from another thread than the loop's, -EIO if writing failed. */
EDDY_API int eddy_loop_dump(eddy_loop *loop, FILE *out);

/* ---- timeout scopes ------------------------------------------------------------ */

/* asyncio.timeout / Trio's fail_after: a deadline over a whole block of awaits.
 * Declare one on the stack, begin it, await as usual, end it:
 *
 *     eddy_timeout scope;
 *     eddy_timeout_begin(&scope, 2 * 1000000000LL);
 *     ssize_t n = eddy_recv(s, buf, sizeof buf);   (-ECANCELED once it expires)
 *     int err = eddy_timeout_end(&scope);          (-ETIMEDOUT if it expired)
 *
 * Once the deadline passes, every await of the task inside the scope returns
 * -ECANCELED (sticky, as a cancellation) until the scope ends. Scopes nest and
 * end in the reverse order of their beginning; awaits inside a shield begun
 * within the scope ignore its expiry, and a scope begun inside a shield works.
 * The fields are private; the type is complete so that it can live on the stack. */
typedef struct eddy_timeout {
    uint64_t opaque_[14];
} eddy_timeout;
/* Task-only: begins a scope whose deadline is timeout_ns from now (< 0: none
 * yet, see _reschedule). 0, -EPERM outside a task, -EINVAL for NULL, -ENOMEM. */
EDDY_NODISCARD EDDY_API int eddy_timeout_begin(eddy_timeout *t, int64_t timeout_ns);
/* Moves the deadline to deadline_ns on the eddy_now clock (< 0: none; in the
 * past: it expires on the next iteration). -EALREADY once it has expired,
 * -EINVAL for a scope that is not active, -EPERM from another task. */
EDDY_NODISCARD EDDY_API int eddy_timeout_reschedule(eddy_timeout *t, int64_t deadline_ns);
/* Ends the innermost scope: -ETIMEDOUT if its deadline fired (and neither an
 * enclosing scope's deadline nor eddy_task_cancel also applies), -ECANCELED
 * if the task is cancelled or an enclosing scope expired, else 0. -EINVAL for a
 * scope that is not the calling task's innermost, -EPERM outside a task. */
EDDY_API int eddy_timeout_end(eddy_timeout *t);
/* True once the scope's deadline has fired (also after it ended). */
EDDY_API bool eddy_timeout_expired(const eddy_timeout *t);

/* ---- combinators and structured concurrency ------------------------------ */

/* Task-only: waits for all n futures; 0, or the first error to occur (after all
 * have finished). If the caller is cancelled, the futures still pending are
 * cancelled and -ECANCELED returned. -EDEADLK if one is the caller's own
 * future, -EPERM if one is another thread's loop's. */
EDDY_API int eddy_gather(eddy_future *const *fs, size_t n);
/* Task-only: the index of the first of n futures to be done (the lowest index
 * if several already are); -ETIMEDOUT after timeout_ns (< 0: no limit). The
 * futures are left as they are. -EDEADLK and -EPERM as eddy_gather. */
EDDY_API int eddy_wait_any(eddy_future *const *fs, size_t n, int64_t timeout_ns);

/* TaskGroup: when one child fails, the others are cancelled. */
typedef struct eddy_group eddy_group;
/* NULL = the current loop; NULL on -ENOMEM, no loop, or (errno EPERM)
 * another thread than the loop's. */
EDDY_MUST_USE EDDY_API eddy_group *eddy_group_new(eddy_loop *loop);
/* Spawns a child; the pointer is borrowed, valid until eddy_group_free. NULL
 * on -ENOMEM, a NULL argument, a group whose wait has returned, or (errno
 * EPERM) another thread than the loop's. */
EDDY_API eddy_task *eddy_group_spawn(eddy_group *g, eddy_task_fn fn, void *arg);
/* Task-only: waits until every child has ended; 0, or the first failure. If
 * the caller is cancelled, the children are cancelled and awaited, and
 * -ECANCELED is returned. -EDEADLK from one of the group's own children,
 * -EBUSY while another task waits, -EPERM off the loop's thread. */
EDDY_API int eddy_group_wait(eddy_group *g);
/* Frees the group. Children still alive are cancelled; called from a task,
 * it awaits their end, otherwise they end on the loop's next iterations.
 * While a task waits on the group, the children are cancelled and that wait
 * (then -ECANCELED, or the first failure) frees it. Called from one of its
 * own children (which cannot wait for itself) or from another thread, it does
 * nothing: the group stays for its owner to free. */
EDDY_API void eddy_group_free(eddy_group *g);

/* ---- synchronisation and queues -------------------------------------------- */

/* asyncio's Lock, Event, Condition, Semaphore, Barrier and Queue for the tasks
 * of one loop (docs/sync.md). Objects come from _new (0, -EINVAL for a bad
 * argument, -ENOMEM) and go with _free, which wakes the tasks still waiting
 * on them with -ECANCELED. Every wait is task-only, served in arrival order,
 * and cancellable: a task cancelled while waiting, or after it was chosen but
 * before it ran, gets -ECANCELED and what it was given goes to the next one. */

typedef struct eddy_lock eddy_lock;
/* A new unlocked lock in *out. */
EDDY_MUST_USE EDDY_API int eddy_lock_new(eddy_lock **out);
/* Frees l (NULL: nothing); tasks waiting for it get -ECANCELED. */
EDDY_API void eddy_lock_free(eddy_lock *l);
/* Task-only: takes l, suspending while another holds it. 0, -ECANCELED,
 * -EDEADLK if the caller holds it already. */
EDDY_NODISCARD EDDY_API int eddy_lock_acquire(eddy_lock *l);
/* Takes l if it is free (from a task or a callback); never suspends. 0 or -EBUSY. */
EDDY_NODISCARD EDDY_API int eddy_lock_try_acquire(eddy_lock *l);
/* Releases l, handing it to the first waiter if any. 0, or -EPERM when the
 * caller (task, or callback for a lock taken outside a task) does not hold it. */
EDDY_API int eddy_lock_release(eddy_lock *l);
/* True while l is held (or handed to a waiter that has not run yet). */
EDDY_API bool eddy_lock_locked(const eddy_lock *l);

typedef struct eddy_event eddy_event;
/* A new event, not set, in *out. */
EDDY_MUST_USE EDDY_API int eddy_event_new(eddy_event **out);
/* Frees e (NULL: nothing); tasks waiting on it get -ECANCELED. */
EDDY_API void eddy_event_free(eddy_event *e);
/* Sets e and wakes every waiter (they return 0 even if e is cleared before
 * they run). 0 or -EINVAL. */
EDDY_API int eddy_event_set(eddy_event *e);
/* Clears e: later waits suspend again. 0 or -EINVAL. */
EDDY_API int eddy_event_clear(eddy_event *e);
/* True while e is set. */
EDDY_API bool eddy_event_is_set(const eddy_event *e);
/* Task-only: suspends until e is set (0 at once if it is). 0 or -ECANCELED. */
EDDY_API int eddy_event_wait(eddy_event *e);

typedef struct eddy_cond eddy_cond;
/* A new condition over lock (which must outlive it) in *out. */
EDDY_MUST_USE EDDY_API int eddy_cond_new(eddy_cond **out, eddy_lock *lock);
/* Frees c (NULL: nothing); its waiters get -ECANCELED, with the lock held. */
EDDY_API void eddy_cond_free(eddy_cond *c);
/* Task-only, with the lock held: releases it, suspends until notified, and
 * takes it again before returning, even when cancelled. 0, -ECANCELED (lock
 * held), -EPERM if the caller does not hold the lock. */
EDDY_NODISCARD EDDY_API int eddy_cond_wait(eddy_cond *c);
/* With the lock held: wakes up to n waiters (n >= 0), the longest waiting
 * first. How many were woken, -EPERM without the lock, -EINVAL. */
EDDY_API int eddy_cond_notify(eddy_cond *c, int n);
/* With the lock held: wakes every waiter. How many, or -EPERM, -EINVAL. */
EDDY_API int eddy_cond_notify_all(eddy_cond *c);

typedef struct eddy_sem eddy_sem;
/* A new semaphore with value permits (>= 0) in *out; bounded: releases may
 * not raise it above value (asyncio.BoundedSemaphore). */
EDDY_MUST_USE EDDY_API int eddy_sem_new(eddy_sem **out, int value, bool bounded);
/* Frees s (NULL: nothing); tasks waiting on it get -ECANCELED. */
EDDY_API void eddy_sem_free(eddy_sem *s);
/* Task-only: takes a permit, suspending while there is none. 0 or -ECANCELED. */
EDDY_NODISCARD EDDY_API int eddy_sem_acquire(eddy_sem *s);
/* Takes a permit if one is free; never suspends. 0 or -EBUSY. */
EDDY_NODISCARD EDDY_API int eddy_sem_try_acquire(eddy_sem *s);
/* Returns a permit, to the first waiter if any. 0, or -EOVERFLOW past the
 * bound of a bounded semaphore (or past INT_MAX). */
EDDY_API int eddy_sem_release(eddy_sem *s);
/* The free permits (>= 0), or -EINVAL. */
EDDY_API int eddy_sem_value(const eddy_sem *s);

typedef struct eddy_barrier eddy_barrier;
/* A new barrier for parties (> 0) tasks in *out. */
EDDY_MUST_USE EDDY_API int eddy_barrier_new(eddy_barrier **out, int parties);
/* Frees b (NULL: nothing); tasks waiting at it get -ECANCELED. */
EDDY_API void eddy_barrier_free(eddy_barrier *b);
/* Task-only: suspends until parties tasks have called it, then all go on and
 * the barrier starts over. The caller's arrival index (0 .. parties-1),
 * -EPIPE if the barrier is or gets aborted or reset, -ECANCELED. */
EDDY_API int eddy_barrier_wait(eddy_barrier *b);
/* Breaks b: waiters and later waits get -EPIPE until eddy_barrier_reset. 0 or -EINVAL. */
EDDY_API int eddy_barrier_abort(eddy_barrier *b);
/* Makes b whole and empty again; tasks waiting at it get -EPIPE. 0 or -EINVAL. */
EDDY_API int eddy_barrier_reset(eddy_barrier *b);

typedef struct eddy_queue eddy_queue;
enum { EDDY_QUEUE_FIFO = 0, EDDY_QUEUE_LIFO = 1, EDDY_QUEUE_PRIORITY = 2 };
/* Grows by its size as eddy_loop_options does (0: the first layout). */
typedef struct eddy_queue_options {
    size_t size;                            /* sizeof(eddy_queue_options), or 0 */
    size_t maxsize;                         /* 0 = unbounded */
    int order;                              /* EDDY_QUEUE_FIFO, _LIFO or _PRIORITY */
    int (*compare)(intptr_t a, intptr_t b); /* PRIORITY: < 0 when a comes out first */
} eddy_queue_options;
#define EDDY_QUEUE_OPTIONS_INIT(...)                                                               \
    {                                                                                              \
        .size = sizeof(eddy_queue_options), __VA_ARGS__                                            \
    }
/* A new queue of intptr_t items in *out; o NULL = unbounded FIFO. -EINVAL for
 * an unknown order or PRIORITY without compare. */
EDDY_MUST_USE EDDY_API int eddy_queue_new(eddy_queue **out, const eddy_queue_options *o);
/* Frees q and its items' slots (not what they point to); tasks waiting on it
 * (put, get, join) get -ECANCELED. */
EDDY_API void eddy_queue_free(eddy_queue *q);
/* Task-only: adds item, suspending while q is full. 0, -EPIPE once q is shut
 * down, -ECANCELED, -ENOMEM. */
EDDY_NODISCARD EDDY_API int eddy_queue_put(eddy_queue *q, intptr_t item);
/* Task-only: takes the next item into *item (may be NULL), suspending while q
 * is empty. 0, -EPIPE once q is shut down and drained, -ECANCELED. */
EDDY_NODISCARD EDDY_API int eddy_queue_get(eddy_queue *q, intptr_t *item);
/* put without suspending: 0, -EAGAIN when full, -EPIPE, -ENOMEM. */
EDDY_NODISCARD EDDY_API int eddy_queue_try_put(eddy_queue *q, intptr_t item);
/* get without suspending: 0, -EAGAIN when empty, -EPIPE when shut down and empty. */
EDDY_NODISCARD EDDY_API int eddy_queue_try_get(eddy_queue *q, intptr_t *item);
/* The items in q (>= 0), or -EINVAL. */
EDDY_API ssize_t eddy_queue_size(const eddy_queue *q);
/* One item taken earlier is fully processed. 0, or -EINVAL when called more
 * times than items were put. */
EDDY_API int eddy_queue_task_done(eddy_queue *q);
/* Task-only: suspends until every item put has been marked done. 0 or -ECANCELED. */
EDDY_API int eddy_queue_join(eddy_queue *q);
/* Shuts q down (Python 3.13): puts fail with -EPIPE; gets drain what is left,
 * then fail with -EPIPE. immediate: the items are dropped and count as done. */
EDDY_API int eddy_queue_shutdown(eddy_queue *q, bool immediate);

/* ---- channels (docs/threads.md) ------------------------------------------ */

/* A bounded MPMC channel of intptr_t items, the one object that tasks of
 * different loops and plain threads may share. Tasks wait without blocking
 * their loop; a plain thread (with no loop) blocks; a loop's thread outside a
 * task may only use the _try_ calls. FIFO: items come out in the order they
 * went in, so per sender too. */
typedef struct eddy_channel eddy_channel;
/* A new channel holding up to capacity (1 .. 2^28) items. 0, -EINVAL, -ENOMEM. */
EDDY_MUST_USE EDDY_API int eddy_channel_new(eddy_channel **out, size_t capacity);
/* Sends item, waiting while the channel is full. 0, -EPIPE once closed (the
 * item was not sent), -ECANCELED (a task cancelled while waiting: not sent),
 * -EPERM on a loop's thread outside a task, -EINVAL, -ENOMEM. */
EDDY_NODISCARD EDDY_API int eddy_channel_send(eddy_channel *ch, intptr_t item);
/* Receives the next item into *item (may be NULL), waiting while the channel
 * is empty. 0, -EPIPE once closed and drained, -ECANCELED (nothing taken),
 * -EPERM, -EINVAL, -ENOMEM. */
EDDY_NODISCARD EDDY_API int eddy_channel_recv(eddy_channel *ch, intptr_t *item);
/* send without waiting: 0, -EAGAIN when full, -EPIPE once closed. Any thread. */
EDDY_NODISCARD EDDY_API int eddy_channel_try_send(eddy_channel *ch, intptr_t item);
/* recv without waiting: 0, -EAGAIN when empty, -EPIPE once closed and drained. */
EDDY_NODISCARD EDDY_API int eddy_channel_try_recv(eddy_channel *ch, intptr_t *item);
/* Closes ch: sends fail with -EPIPE from now on (waiting senders too), the
 * receivers drain what is buffered, then get -EPIPE. Wakes every waiter.
 * 0, -EALREADY when closed already, -EINVAL. Any thread. */
EDDY_API int eddy_channel_close(eddy_channel *ch);
/* Frees ch (NULL: nothing), once nobody uses or waits on it any more. */
EDDY_API void eddy_channel_free(eddy_channel *ch);

/* ---- sockets --------------------------------------------------------------- */

/* TCP, UDP and Unix stream sockets. Calls marked task-only suspend the calling
 * task until done and return -EPERM outside a task; cancelling the task ends
 * the call with -ECANCELED once its op has been withdrawn (docs/sockets.md).
 * TCP sockets have TCP_NODELAY on by default, as in Go. Writes never raise
 * SIGPIPE: a write to a closed peer returns -EPIPE. A length above SSIZE_MAX
 * is -EINVAL for every send and receive. A socket belongs to the loop it was
 * opened on: a call from a task of another loop is -EPERM. */
typedef struct eddy_sock eddy_sock;
struct sockaddr;
struct sockaddr_storage;

/* Task-only: a TCP listener on host:port. host NULL = every address (IPv6 and
 * IPv4), a numeric address, or a name (resolved in the thread pool); port 0 =
 * ephemeral (see eddy_sock_port); backlog <= 0 = SOMAXCONN. SO_REUSEADDR is set. */
EDDY_MUST_USE EDDY_API int eddy_tcp_listen(eddy_sock **out, const char *host, uint16_t port,
                                           int backlog);
/* eddy_tcp_listen's options; grows by its size as eddy_loop_options does. */
typedef struct eddy_listen_options {
    size_t size;         /* sizeof(eddy_listen_options), or 0: the first layout */
    int backlog;         /* <= 0 = SOMAXCONN */
    bool reuseport;      /* SO_REUSEPORT: each loop binds its own listener to the port */
    bool v6only;         /* host NULL: IPv6 only, not IPv4 as well (IPV6_V6ONLY) */
    uint8_t reserved[2]; /* 0 */
} eddy_listen_options;
#define EDDY_LISTEN_OPTIONS_INIT(...)                                                              \
    {                                                                                              \
        .size = sizeof(eddy_listen_options), __VA_ARGS__                                           \
    }
/* Task-only: eddy_tcp_listen with options (o NULL = the defaults). -EINVAL for
 * bad options, -ENOTSUP for reuseport where the system has no SO_REUSEPORT. */
EDDY_MUST_USE EDDY_API int eddy_tcp_listen_opts(eddy_sock **out, const char *host, uint16_t port,
                                                const eddy_listen_options *o);
/* Task-only: connects to host:port. Numeric hosts are used as they are; names
 * are resolved with getaddrinfo in the thread pool and each address is tried in
 * turn. 0, -ECONNREFUSED, -ENXIO (no such host), -ECANCELED, ... */
EDDY_MUST_USE EDDY_API int eddy_tcp_connect(eddy_sock **out, const char *host, uint16_t port);
/* Task-only: waits for the next connection on listener. When the process is
 * out of descriptors (EMFILE, ENFILE) it backs off (1 ms doubling to 100 ms)
 * and retries rather than spin. 0, or -EINVAL, -ECANCELED, ... */
EDDY_MUST_USE EDDY_API int eddy_accept(eddy_sock *listener, eddy_sock **out);
/* Task-only: receives up to len (> 0, <= SSIZE_MAX; else -EINVAL) bytes.
 * The count, 0 when the peer has closed, or -ECONNRESET, -ECANCELED, ... */
EDDY_NODISCARD EDDY_API ssize_t eddy_recv(eddy_sock *s, void *buf, size_t len);
/* Task-only: sends all len bytes, suspending while the socket is full. len, or
 * an error (-EPIPE, -ECONNRESET, -ECANCELED, ...). */
EDDY_NODISCARD EDDY_API ssize_t eddy_send(eddy_sock *s, const void *buf, size_t len);

enum { EDDY_SHUT_RD = 0, EDDY_SHUT_WR = 1, EDDY_SHUT_RDWR = 2 };
/* Task-only: shuts down reading, writing (the peer then reads 0) or both. */
EDDY_API int eddy_sock_shutdown(eddy_sock *s, int how);
/* Closes s and frees it. Calls pending on s in other tasks end with -ECANCELED
 * first: in a task, close cancels them and waits (deaf to its own
 * cancellation) until they have returned, then closes the fd. Outside a task
 * (a callback on the socket's loop, or after the loop ended), it cancels them
 * and returns at once; the fd is closed when the last of them has returned.
 * Calls made once close has begun get -EBADF. 0 or the close error. */
EDDY_API int eddy_sock_close(eddy_sock *s);
/* The local port of a TCP or UDP socket; -EINVAL for NULL or a Unix socket. */
EDDY_API int eddy_sock_port(const eddy_sock *s);
/* The native descriptor (fd, or SOCKET on Windows), for setsockopt. */
EDDY_API intptr_t eddy_sock_fd(const eddy_sock *s);
/* Turns TCP_NODELAY on or off on a TCP socket. 0 or a negative code. */
EDDY_API int eddy_sock_nodelay(eddy_sock *s, bool on);

/* Fills out with the numeric IPv4 or IPv6 address host ("127.0.0.1", "::1",
 * "[::1]") and port; no lookup. 0 or -EINVAL. */
EDDY_NODISCARD EDDY_API int eddy_addr_parse(struct sockaddr_storage *out, const char *host,
                                            uint16_t port);
/* Task-only: a UDP socket bound to host:port (as eddy_tcp_listen: NULL = every
 * address, port 0 = ephemeral). */
EDDY_MUST_USE EDDY_API int eddy_udp_bind(eddy_sock **out, const char *host, uint16_t port);
/* Task-only: sends one datagram to (an IPv4 or IPv6 address; NULL on a socket
 * connected by other means). The bytes sent, or a negative code. */
EDDY_NODISCARD EDDY_API ssize_t eddy_sendto(eddy_sock *s, const void *buf, size_t len,
                                            const struct sockaddr *to);
/* Task-only: receives one datagram (truncated to len) and, if from is not
 * NULL, its sender (IPv4 senders on a dual-stack socket as plain IPv4). */
EDDY_NODISCARD EDDY_API ssize_t eddy_recvfrom(eddy_sock *s, void *buf, size_t len,
                                              struct sockaddr_storage *from);

/* Task-only: a Unix stream listener at path ("@name": Linux's abstract
 * namespace). An existing file at path gives -EADDRINUSE; close does not
 * remove it. Accept with eddy_accept. */
EDDY_MUST_USE EDDY_API int eddy_unix_listen(eddy_sock **out, const char *path, int backlog);
/* Task-only: connects to the Unix stream socket at path. */
EDDY_MUST_USE EDDY_API int eddy_unix_connect(eddy_sock **out, const char *path);

/* ---- streams and servers ----------------------------------------------------- */

/* asyncio's StreamReader/StreamWriter and start_server over any connected
 * eddy_sock (docs/streams.md). Reads are buffered: readline, readuntil and
 * readexactly take what they need from the read buffer and keep the rest;
 * writes copy into a write buffer and never wait, and the buffer goes out in
 * one send per loop iteration (or at eddy_stream_drain) while the stream's
 * owner goes on. A stream belongs to its loop; one task reads at a time
 * (another gets -EBUSY), any number may write and drain. */
#ifdef _WIN32
#ifndef EDDY_IOVEC_DEFINED
#define EDDY_IOVEC_DEFINED
/* mingw has no <sys/uio.h>: POSIX's struct iovec, field for field. */
struct iovec {
    void *iov_base;
    size_t iov_len;
};
#endif
#else
#include <sys/uio.h>
#endif

typedef struct eddy_stream eddy_stream;
typedef struct eddy_server eddy_server;
typedef struct eddy_file eddy_file; /* a file (files, below) */

/* Grows by its size as eddy_loop_options does (0: the first layout). */
typedef struct eddy_stream_options {
    size_t size;       /* sizeof(eddy_stream_options), or 0 */
    size_t limit;      /* read buffer limit; 0 = 64 KiB */
    size_t high_mark;  /* drain waits while more than this is buffered; 0 = 64 KiB */
    size_t low_mark;   /* ... until at most this is; 0 = high_mark / 4 */
} eddy_stream_options; /* NULL = defaults */
#define EDDY_STREAM_OPTIONS_INIT(...)                                                              \
    {                                                                                              \
        .size = sizeof(eddy_stream_options), __VA_ARGS__                                           \
    }

/* A stream over the connected socket s, which it takes (eddy_stream_close
 * closes it, and so does a failing open). o may be NULL. 0, -EINVAL (NULL,
 * low_mark > high_mark, a listener), -ENOMEM. */
EDDY_MUST_USE EDDY_API int eddy_stream_open(eddy_stream **out, eddy_sock *s,
                                            const eddy_stream_options *o);
/* Task-only: connects a stream to host:port (asyncio's open_connection). A
 * name with several addresses is raced as RFC 8305's Happy Eyeballs: families
 * interleaved, the next attempt 250 ms after the last began or as soon as it
 * fails, the first connected wins. 0, or eddy_tcp_connect's codes. */
EDDY_MUST_USE EDDY_API int eddy_open_connection(eddy_stream **out, const char *host, uint16_t port,
                                                const eddy_stream_options *o);
/* Task-only: up to len buffered or newly received bytes; suspends only when
 * none are buffered. The count, 0 at EOF, or an error (-ECONNRESET, ...). */
EDDY_NODISCARD EDDY_API ssize_t eddy_stream_read(eddy_stream *st, void *buf, size_t len);
/* Task-only: exactly n bytes. n, or -EPIPE at EOF first (the bytes that did
 * arrive stay buffered for eddy_stream_read and peek), or an error. */
EDDY_NODISCARD EDDY_API ssize_t eddy_stream_readexactly(eddy_stream *st, void *buf, size_t n);
/* Task-only: the bytes through the first sep (seplen > 0), copied to buf. The
 * count with sep; -EOVERFLOW when they would not fit in cap or the read
 * buffer's limit (the bytes stay buffered); -EPIPE at EOF before sep. */
EDDY_NODISCARD EDDY_API ssize_t eddy_stream_readuntil(eddy_stream *st, const void *sep,
                                                      size_t seplen, void *buf, size_t cap);
/* Task-only: readuntil "\n", except that at EOF it returns what is left (a
 * partial line; 0 when nothing is). */
EDDY_NODISCARD EDDY_API ssize_t eddy_stream_readline(eddy_stream *st, void *buf, size_t cap);
/* Task-only: points *data at the buffered bytes (valid until the next call on
 * st) and sets *len, without copying. Suspends when nothing is buffered that
 * an earlier peek has not shown already, so peek again for more. 0 (*len 0
 * at EOF), -EOVERFLOW when the buffer holds limit bytes already, an error. */
EDDY_NODISCARD EDDY_API int eddy_stream_peek(eddy_stream *st, const void **data, size_t *len);
/* Drops the first n buffered bytes (after a peek). 0, -EINVAL past the end. */
EDDY_API int eddy_stream_consume(eddy_stream *st, size_t n);
/* Copies len bytes into the write buffer; never suspends. Past the high mark
 * it still buffers (drain is the brake). 0, or the error that ended writing
 * (-EPIPE after write_eof or a failed send, -ECONNRESET, -EBADF), -ENOMEM. */
EDDY_NODISCARD EDDY_API int eddy_stream_write(eddy_stream *st, const void *buf, size_t len);
/* eddy_stream_write of n buffers in order, all or none. */
EDDY_NODISCARD EDDY_API int eddy_stream_writev(eddy_stream *st, const struct iovec *iov, int n);
/* Task-only: starts sending what is buffered and, while more than the high
 * mark is, waits until at most the low mark is. Any number of tasks may drain
 * at once; they return in arrival order. 0, the send error, -ECANCELED. */
EDDY_NODISCARD EDDY_API int eddy_stream_drain(eddy_stream *st);
/* The bytes written and not yet sent (asyncio's get_write_buffer_size). */
EDDY_API size_t eddy_stream_write_buffer_size(const eddy_stream *st);
/* Task-only: sends everything buffered, then shuts the socket's write side
 * (the peer reads EOF; reading goes on). Writes then fail with -EPIPE. */
EDDY_API int eddy_stream_write_eof(eddy_stream *st);
/* Sends what it can of the write buffer (in a task: waits for it, within the
 * task's cancellation and timeout scope), ends a read or drain in other tasks
 * (-EBADF), closes the socket and frees st. 0 or the first error seen. */
EDDY_API int eddy_stream_close(eddy_stream *st);
/* Task-only: sends count bytes of the regular file f from offset (SIZE_MAX:
 * to its end) after what is buffered and before later writes, without a copy
 * through user space where the system allows (EDDY_CAP_SENDFILE). The count
 * sent (fewer at the end of the file), -EINVAL, -ENOTSUP, the send error,
 * -ECANCELED (some bytes may have gone: the stream's position is lost). */
EDDY_NODISCARD EDDY_API ssize_t eddy_stream_sendfile(eddy_stream *st, eddy_file *f, int64_t offset,
                                                     size_t count);

/* TLS over OpenSSL on a stream (docs/tls.md). Grows by its size as
 * eddy_loop_options does (0: the first layout); reserved must be zero. */
typedef struct eddy_tls_options {
    size_t size;                      /* sizeof(eddy_tls_options), or 0 */
    const char *server_name;          /* connect side: SNI and the name verified; NULL = no SNI,
                                         no name check */
    const char *ca_file;              /* NULL = the system's trust store; server side: given,
                                         clients must present a certificate it signed */
    const char *cert_file, *key_file; /* server certificate, or client certificate */
    const char *const *alpn;          /* NULL-terminated protocol list, or NULL */
    bool server;                      /* accept side; else connect side */
    bool insecure;    /* connect side: skip certificate verification (never the default) */
    char reserved[6]; /* zero */
} eddy_tls_options;
#define EDDY_TLS_OPTIONS_INIT(...)                                                                 \
    {                                                                                              \
        .size = sizeof(eddy_tls_options), __VA_ARGS__                                              \
    }
/* Task-only: runs a TLS handshake on st (client or server side, as o says)
 * and from then on st reads and writes through TLS; returns after the
 * handshake, within the task's cancellation and timeout scope. Unsent bytes
 * are sent first; received, unread ones are the peer's first TLS bytes. 0,
 * -EACCES (a certificate refused, by either side), -EPROTO (not TLS, no
 * common protocol or ALPN), -ECONNRESET (closed mid-handshake), -EINVAL,
 * -ENOENT (a file missing), -ECANCELED, -ENOTSUP (built without OpenSSL).
 * A failed handshake leaves every later call failing with its code;
 * eddy_stream_close still frees st. */
EDDY_MUST_USE EDDY_API int eddy_stream_start_tls(eddy_stream *st, const eddy_tls_options *o);
/* The protocol ALPN agreed on st's TLS connection, or NULL (none, no TLS). */
EDDY_API const char *eddy_stream_alpn(const eddy_stream *st);

/* asyncio's start_server: takes the listener and accepts on it in a task of
 * its own; each connection becomes a stream and a task that runs
 * handler(stream, arg), and the server closes the stream when the handler
 * returns (whatever it returns; one failing handler does not stop others), so
 * the handler must not close it.
 * Task-only. 0, -EINVAL (NULL, not a listener), -ENOMEM. */
EDDY_MUST_USE EDDY_API int eddy_serve(eddy_server **out, eddy_sock *listener,
                                      intptr_t (*handler)(eddy_stream *, void *), void *arg);
/* Stops accepting and closes the listener; handlers go on. Never suspends. */
EDDY_API int eddy_server_close(eddy_server *srv);
/* Task-only: waits until the server is closed and every handler has ended,
 * then frees it. Cancelled: closes the server, cancels the handlers, waits
 * for them, frees it and returns -ECANCELED. 0 or the accept error that
 * stopped the server. */
EDDY_API int eddy_server_wait(eddy_server *srv);

/* ---- files ------------------------------------------------------------------ */

/* Regular files and paths, task-only: each call suspends the calling task
 * until done. On backends without native file I/O (epoll, kqueue) the work
 * runs in the thread pool. A cancelled call returns -ECANCELED if the work
 * had not started, else its result (docs/files.md). */
struct stat;

/* Opens path with open(2) flags (O_RDONLY, O_CREAT, ...; O_CLOEXEC is added)
 * and mode. 0, or -ENOENT, -EACCES, ... */
EDDY_MUST_USE EDDY_API int eddy_file_open(eddy_file **out, const char *path, int flags, int mode);
/* Reads up to len (<= SSIZE_MAX, else -EINVAL) bytes at offset (>= 0; -1 =
 * the file's current position, which then advances). The count (short at end
 * of file, 0 past it) or a negative code. */
EDDY_NODISCARD EDDY_API ssize_t eddy_file_read(eddy_file *f, void *buf, size_t len, int64_t offset);
/* Writes all len bytes at offset (>= 0; -1 = the current position). len, or
 * a negative code. */
EDDY_NODISCARD EDDY_API ssize_t eddy_file_write(eddy_file *f, const void *buf, size_t len,
                                                int64_t offset);
/* Flushes f's data and metadata to storage (fsync). */
EDDY_NODISCARD EDDY_API int eddy_file_sync(eddy_file *f);
/* fstat: fills st for the open file. */
EDDY_NODISCARD EDDY_API int eddy_file_stat(eddy_file *f, struct stat *st);
/* The native descriptor, or -EINVAL for NULL. */
EDDY_API intptr_t eddy_file_fd(const eddy_file *f);
/* Waits for calls on f in other tasks to finish, closes it and frees f.
 * Outside a task the fd is closed at once. 0 or the close error. */
EDDY_API int eddy_file_close(eddy_file *f);
/* Registers the caller's memory [base, base + len) (len <= 1 GiB) with loop
 * (NULL: the current loop): file reads and writes wholly inside it skip the
 * kernel's page pinning (io_uring's READ_FIXED). 0, -EINVAL, -EEXIST
 * (overlaps one), -ENOSPC (64 already), -EPERM, -ENOTSUP (capability
 * registered_buffers), -ENOMEM (RLIMIT_MEMLOCK). */
EDDY_NODISCARD EDDY_API int eddy_buffer_register(eddy_loop *loop, void *base, size_t len);
/* Unregisters the region registered at base: 0, -ENOENT (none there), -EBUSY
 * (a read or write in it is in progress), -EINVAL, -EPERM. */
EDDY_NODISCARD EDDY_API int eddy_buffer_unregister(eddy_loop *loop, void *base);

/* stat(2) on path. */
EDDY_NODISCARD EDDY_API int eddy_fs_stat(const char *path, struct stat *st);
/* Removes a file (unlink). */
EDDY_API int eddy_fs_unlink(const char *path);
/* Removes an empty directory. */
EDDY_API int eddy_fs_rmdir(const char *path);
/* Renames from to to, replacing to if it exists (rename(2)). */
EDDY_NODISCARD EDDY_API int eddy_fs_rename(const char *from, const char *to);
/* Creates a directory with mode (before the umask). -EEXIST if it exists. */
EDDY_NODISCARD EDDY_API int eddy_fs_mkdir(const char *path, int mode);

/* ---- descriptors eddy does not own -------------------------------------------- */

/* Readiness of a descriptor that belongs to someone else (a library such as
 * libcurl, c-ares or libpq, a tty, a pipe end): asyncio's add_reader and
 * add_writer, libuv's uv_poll. An error or hang-up on the descriptor counts as
 * ready: the owner's next call on it reports the condition. Stop waiting
 * before the descriptor is closed (docs/loop.md). Windows: sockets only (fd is
 * a SOCKET); a pipe, file or console handle gives -ENOTSUP (capability watch_fd). */
enum { EDDY_READABLE = 1, EDDY_WRITABLE = 2 };

/* Task-only: waits until fd is readable (or writable). 0 when it is,
 * -ETIMEDOUT after timeout_ns (< 0: no limit), -ECANCELED, -EBADF for a
 * descriptor that is not open, -ENOTSUP where the backend cannot watch. */
EDDY_API int eddy_wait_readable(intptr_t fd, int64_t timeout_ns);
EDDY_API int eddy_wait_writable(intptr_t fd, int64_t timeout_ns);

/* A watch calls cb(w, revents, arg) from the loop (never inline) whenever fd
 * is ready in one of events (EDDY_READABLE | EDDY_WRITABLE), again at every
 * iteration while it stays so (level-triggered). A started watch keeps
 * eddy_loop_run running; eddy_loop_free stops the watches left. */
typedef struct eddy_watch eddy_watch;
/* Starts watching fd on loop (NULL = the current loop). 0, -EINVAL (bad
 * events, NULL cb or no loop), -EBADF, -EEXIST when fd is watched already on
 * that loop, -ENOTSUP, -ENOMEM, -EPERM from another thread than the loop's. */
EDDY_MUST_USE EDDY_API int eddy_watch_start(eddy_watch **out, eddy_loop *loop, intptr_t fd,
                                            unsigned events,
                                            void (*cb)(eddy_watch *w, unsigned revents, void *arg),
                                            void *arg);
/* Changes what is watched (0 pauses the watch). 0, -EINVAL, or -EPERM off
 * the loop's thread. */
EDDY_API int eddy_watch_update(eddy_watch *w, unsigned events);
/* Stops the watch and frees it (callable from its own callback); no callback
 * follows. 0, -EINVAL for NULL, or -EPERM off the loop's thread. */
EDDY_API int eddy_watch_stop(eddy_watch *w);

/* ---- signals ------------------------------------------------------------------ */

/* asyncio's add_signal_handler, libuv's uv_signal (docs/signals.md). While a
 * loop waits for a signal, eddy's handler catches it process-wide; every loop
 * with a watcher or a waiting task for it gets each delivery, on its own
 * thread. Deliveries the loop has not looked at yet coalesce (as POSIX's do).
 * When the last watcher or wait of a signal in the process ends, the
 * signal's previous disposition comes back. Pool threads block every signal.
 * SIGKILL, SIGSTOP and the faults (SIGSEGV, SIGBUS, SIGFPE, SIGILL) cannot be
 * handled: -EINVAL. Windows: SIGINT (Ctrl+C) and SIGBREAK (Ctrl+Break) as
 * console control events; any other signal -ENOTSUP. */
typedef struct eddy_signal eddy_signal;

/* Task-only: waits until one of the n signals in signums arrives and returns
 * it (the first of signums, if several came together). -EINVAL for NULL, n ==
 * 0 or a signal that cannot be caught, -ECANCELED (cancellation or a timeout
 * scope's expiry), -ENOTSUP. A signal is caught only while a wait or watcher
 * wants it: for a loop that waits again and again, keep a watcher too. */
EDDY_API int eddy_signal_wait(const int *signums, size_t n);
/* Calls cb(arg) from loop (NULL = the current loop; never inline, never in the
 * signal handler) after each delivery of signum, until eddy_signal_stop. A
 * started watcher keeps eddy_loop_run running; eddy_loop_free (and eddy_run's
 * end) stops it. 0, -EINVAL, -ENOTSUP, -ENOMEM. */
EDDY_MUST_USE EDDY_API int eddy_signal_start(eddy_signal **out, eddy_loop *loop, int signum,
                                             eddy_callback cb, void *arg);
/* Stops the watcher and frees it (callable from its own callback); no
 * callback follows. Call it on the watcher's loop. 0, or -EINVAL for NULL. */
EDDY_API int eddy_signal_stop(eddy_signal *s);

/* ---- pipes, adopted descriptors and subprocesses ---------------------------------- */

/* Sockets and pipe ends made elsewhere, as eddy sockets: eddy_recv, eddy_send
 * and eddy_sock_close work on them as on eddy's own (docs/processes.md). A
 * pipe end or terminal is read and written with read(2) and write(2), as the
 * loop's backend does it natively (io_uring reads it as a file; epoll and
 * kqueue wait for readiness on it made O_NONBLOCK), never a blocking call in
 * the thread pool; a write to a pipe whose reader is gone returns -EPIPE and
 * raises no SIGPIPE. These need no loop or task. Windows: fd is a HANDLE; a
 * pipe is a named pipe read and written with overlapped ReadFile and
 * WriteFile; eddy_sock_open takes a SOCKET (TCP or UDP), made non-inheritable
 * (docs/processes.md, "Windows"). */

/* Adopts fd, an existing TCP, UDP or Unix stream socket (inherited
 * listeners, socketpair ends, systemd socket activation; uv_tcp_open): made
 * non-blocking and close-on-exec; s owns fd from now on. 0, -EBADF,
 * -ENOTSOCK, -EPROTONOSUPPORT (another kind of socket), -ENOMEM (fd is then
 * still the caller's). */
EDDY_MUST_USE EDDY_API int eddy_sock_open(eddy_sock **out, intptr_t fd);
/* A new pipe, as pipe(2): ends[0] reads, ends[1] writes; both close-on-exec.
 * 0, -EMFILE, -ENOMEM. */
EDDY_MUST_USE EDDY_API int eddy_pipe(eddy_sock *ends[2]);
/* Adopts fd, an existing pipe end, FIFO or terminal (asyncio's
 * connect_read_pipe): s owns it from now on. On epoll and kqueue the fd is
 * made O_NONBLOCK, which a terminal shares with every process that has it
 * open. 0, -EBADF, -EINVAL for another kind of file (a socket: eddy_sock_open;
 * a regular file: eddy_file_open), -ENOMEM (fd is then still the caller's). */
EDDY_MUST_USE EDDY_API int eddy_pipe_open(eddy_sock **out, intptr_t fd);

typedef struct eddy_process eddy_process;
#ifdef _WIN32
/* Windows has no <sys/wait.h> and no SIGKILL: eddy_process_wait's status and
 * eddy_process_kill use POSIX's encoding and number there too. */
#ifndef SIGKILL
#define SIGKILL 9
#endif
#ifndef WIFEXITED
#define WIFEXITED(status)   (((status)&0x7f) == 0)
#define WEXITSTATUS(status) (((status) >> 8) & 0xff)
#define WIFSIGNALED(status) (((status)&0x7f) != 0)
#define WTERMSIG(status)    ((status)&0x7f)
#endif
#endif
enum { EDDY_STDIO_INHERIT = 0, EDDY_STDIO_PIPE, EDDY_STDIO_NULL, EDDY_STDIO_FD };
enum {
    EDDY_PROCESS_NEW_GROUP = 1 << 0, /* the child leads a new process group (setpgid(0, 0)) */
};
/* What to run and how (asyncio's create_subprocess_exec). Grows by its size
 * as eddy_loop_options does: size 0 is this first layout. */
typedef struct eddy_process_options {
    size_t size;       /* sizeof(eddy_process_options), or 0: the first layout (these fields) */
    const char *file;  /* searched in the parent's PATH when it has no '/'; NULL = argv[0] */
    char *const *argv; /* argv[0] included, NULL-terminated */
    char *const *env;  /* "NAME=value" strings, NULL-terminated; NULL = inherit */
    const char *cwd;   /* the child's working directory; NULL = inherit */
    unsigned flags;    /* EDDY_PROCESS_* */
    struct {
        int mode;    /* EDDY_STDIO_*: inherit, a pipe, /dev/null, or fd */
        intptr_t fd; /* for EDDY_STDIO_FD: the parent's descriptor the child gets */
    } stdio[3];      /* stdin, stdout, stderr; a zeroed struct inherits all three */
} eddy_process_options;

/* An initialiser with size set: EDDY_PROCESS_OPTIONS_INIT(.argv = argv). */
#define EDDY_PROCESS_OPTIONS_INIT(...)                                                             \
    {                                                                                              \
        .size = sizeof(eddy_process_options), __VA_ARGS__                                          \
    }

/* Starts a child (posix_spawn: the cost does not grow with the parent's
 * memory; CreateProcessW on Windows). It gets an empty signal mask, default
 * signal dispositions, and no descriptor (or handle) of the parent's but its
 * stdio. 0, -EINVAL (NULL options or argv,
 * argv[0] NULL, an unknown mode or flag), -EBADF (an EDDY_STDIO_FD fd that is
 * not open), -EPERM (a piped stdio and no loop running on this thread: its
 * stream needs one), -ENOENT or -EACCES (the executable: reported by spawn,
 * not as a child exiting 127), -ENOTSUP where the loop's backend cannot
 * watch children (capability subprocess), -ENOMEM, -EMFILE. */
EDDY_MUST_USE EDDY_API int eddy_process_spawn(eddy_process **out, const eddy_process_options *o);
/* The parent's end of a piped stdin (or stdout, stderr) as a stream on the
 * spawning loop; NULL unless piped, or once closed. Borrowed: the process
 * owns it and eddy_process_free closes it (eddy_stream_close: what is
 * buffered is sent when it can be); the caller may close it first with
 * eddy_stream_close (stdin: the child then reads end of file; a pipe has no
 * eddy_stream_write_eof). Raw bytes: eddy_stream_read, or peek and consume. */
EDDY_API eddy_stream *eddy_process_stdin(eddy_process *p);
EDDY_API eddy_stream *eddy_process_stdout(eddy_process *p);
EDDY_API eddy_stream *eddy_process_stderr(eddy_process *p);
/* Task-only: waits until the child exits and reaps it; *status (may be NULL)
 * as waitpid gives it (WIFEXITED, WEXITSTATUS, WTERMSIG). Returns at once
 * once reaped. Cancel-safe: cancellation or a timeout scope ends the wait
 * with -ECANCELED and leaves child and object as they were. -ECHILD when
 * something else reaped the child (waitpid(-1), SIGCHLD ignored). */
EDDY_NODISCARD EDDY_API int eddy_process_wait(eddy_process *p, int *status);
/* Sends signum to the child (0: only checks it is there). -ESRCH once the
 * child is reaped: never signals a recycled pid. -EINVAL for a bad signal.
 * Windows: SIGKILL and SIGTERM are TerminateProcess, others -ENOTSUP. */
EDDY_NODISCARD EDDY_API int eddy_process_kill(eddy_process *p, int signum);
/* The child's process id; -EINVAL for NULL. */
EDDY_API intptr_t eddy_process_pid(const eddy_process *p);
/* Closes the stdio pipes still open and frees p; no wait may be in progress.
 * A child still running is neither killed nor left a zombie: it is reaped
 * in the background when it exits. */
EDDY_API void eddy_process_free(eddy_process *p);

/* ---- thread pool ------------------------------------------------------------ */

/* Task-only: runs fn(arg) on a pool thread and suspends until it returns; 0
 * and its return value in *result, -ECANCELED if the task was cancelled before
 * a worker started it (a started call is awaited to its end, then
 * -ECANCELED), -EPERM outside a task, -EINVAL for NULL fn. */
EDDY_API int eddy_to_thread(intptr_t (*fn)(void *arg), void *arg, intptr_t *result);

/* ---- capabilities ----------------------------------------------------------- */

/* What a backend offers, per capability (docs/capabilities.md, docs/platforms.md).
 * An op whose capability is EDDY_NONE on the loop's backend returns -ENOTSUP. */

/* How a capability is offered: not at all, emulated (e.g. through the thread
 * pool), or by the backend itself. */
typedef enum eddy_support { EDDY_NONE = 0, EDDY_EMULATED = 1, EDDY_NATIVE = 2 } eddy_support;
/* What a program may need. Grows at the end only, before EDDY_CAP_COUNT. */
typedef enum eddy_cap {
    EDDY_CAP_TCP,
    EDDY_CAP_UDP,
    EDDY_CAP_UNIX_SOCKETS,
    EDDY_CAP_FILE_IO,
    EDDY_CAP_TIMERS,
    EDDY_CAP_CANCEL,
    EDDY_CAP_WAKEUP,
    EDDY_CAP_WATCH_FD,
    EDDY_CAP_SIGNALS,
    EDDY_CAP_SUBPROCESS,
    EDDY_CAP_DNS,
    EDDY_CAP_MULTISHOT_ACCEPT,
    EDDY_CAP_MULTISHOT_RECV,
    EDDY_CAP_BUFFER_RING,
    EDDY_CAP_ZEROCOPY_SEND,
    EDDY_CAP_SENDFILE,
    EDDY_CAP_TLS,
    EDDY_CAP_MSG_RING, /* io_uring loops wake each other with IORING_OP_MSG_RING */
    EDDY_CAP_DIRECT_DESCRIPTORS,
    EDDY_CAP_REGISTERED_FILES,
    EDDY_CAP_RECV_BUNDLE,
    EDDY_CAP_BUFFER_RING_INCREMENTAL,
    EDDY_CAP_REGISTERED_BUFFERS, /* file reads and writes in eddy_buffer_register's memory */
    EDDY_CAP_COUNT
} eddy_cap;
/* The capability's name, the enum's lowercase tail ("tcp", "file_io", ...);
 * NULL for a value out of range. */
EDDY_API const char *eddy_cap_name(eddy_cap cap);
/* What loop's backend offers on this machine (as probed when the loop was
 * created); EDDY_NONE for a NULL loop or a cap out of range. */
EDDY_API eddy_support eddy_loop_supports(const eddy_loop *loop, eddy_cap cap);
/* What the named backend offers: probed on this machine when the backend can
 * run here, else the table's value for its platform. EDDY_NONE for bad input. */
EDDY_API eddy_support eddy_backend_supports(const char *backend, eddy_cap cap);
/* 0 when a loop can run on backend here, else why not: the kernel's refusal
 * (-ENOSYS, -EPERM, -ENOMEM, ...), -ENOTSUP when not built for this platform,
 * -ENOENT for an unknown name, -EINVAL for NULL. Probed once per process. */
EDDY_MUST_USE EDDY_API int eddy_backend_available(const char *backend);
/* The backends compiled in, in the order a default loop tries them: stores up
 * to max names in names (which may be NULL) and returns how many there are. */
EDDY_API size_t eddy_backends(const char **names, size_t max);

#ifdef __cplusplus
}
#endif
#endif /* EDDY_H */
