/* SPDX-License-Identifier: MIT */
/* The thread pool: file ops where the backend has no native path, and
 * eddy_to_thread (asyncio.to_thread).
 *
 * One pool per process, shared by every loop. Workers take ops from one FIFO
 * queue. A finished op goes back to the loop that submitted it (kept in
 * op->backend_data) through eddy__loop_post_completion, so op->complete always
 * runs on that loop's thread.
 *
 * Sizing (docs/files.md): up to the base count (EDDY_THREADPOOL_SIZE, default
 * 4) workers start as soon as work waits for one, and stay. Past it the pool
 * grows only while it is stalled, as Go's runtime adds a thread when every
 * other one is stuck in a syscall: a monitor thread, awake only while work
 * waits and no worker is idle, starts one more worker each time the queue
 * has not moved for STALL_NS, up to EDDY_THREADPOOL_MAX (default 64). Fast
 * ops (a cached pread takes microseconds) keep the queue moving, so a burst
 * of them does not grow the pool; four slow eddy_to_thread calls delay
 * everything else by about STALL_NS, not by their whole length. Workers
 * beyond the base exit after EDDY_THREADPOOL_IDLE_MS (default 10 s) idle. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifndef _WIN32
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#endif

#include "internal.h"

#define DEFAULT_WORKERS     4
#define DEFAULT_MAX_WORKERS 64
#define MAX_WORKERS         1024
#define DEFAULT_IDLE_MS     10000
#define MAX_IDLE_MS         (24 * 3600 * 1000)
/* How long the queue may stand still, every worker busy, before the monitor
 * adds one: far above a file op's cost (microseconds when cached, a few
 * milliseconds from a disk), far below what a user notices. */
#define STALL_NS (10 * (int64_t)1000000)

/* Set in op->backend_data (beside the loop pointer, which is aligned) while
 * the op waits in the queue; cleared when a worker takes it. */
#define QUEUED ((uintptr_t)1)

static struct {
    eddy__mutex lock;
    eddy__cond work_ready;
    eddy__cond monitor_wake;
    struct eddy__list queue; /* eddy_op, through op->link */
    unsigned queued;         /* ops in queue */
    unsigned workers;        /* threads started and not exited */
    unsigned idle;           /* workers waiting for work */
    unsigned base;           /* workers that never exit */
    unsigned max_workers;
    uint64_t taken;       /* ops ever taken from the queue: the monitor watches it move */
    bool monitor_running; /* the monitor thread exists */
    int64_t idle_ns;      /* how long a worker beyond the base waits for work */
} pool = {
    .lock = EDDY__MUTEX_INIT,
    .work_ready = EDDY__COND_INIT,
    .monitor_wake = EDDY__COND_INIT,
    .queue = {&pool.queue, &pool.queue},
};

static eddy__once pool_once = EDDY__ONCE_INIT;

/* ---- running one op -------------------------------------------------------- */

#ifdef _WIN32
/* Files and paths through Windows' own calls (win32/fs.c). */
int64_t eddy__op_execute_blocking(struct eddy_op *op)
{
    if (op->kind == EDDY_OP_WORK) return op->u.work.fn(op->u.work.arg);
    return eddy__win_file_op(op);
}
#else

#define RETRY_EINTR(r, call)                                                                       \
    do {                                                                                           \
        (r) = (call);                                                                              \
    } while ((r) < 0 && errno == EINTR)

static int64_t file_read(struct eddy_op *op)
{
    ssize_t r;
    int fd = (int)op->fd;
    if (op->u.io.offset < 0) /* the current position, as io_uring's offset -1 */
        RETRY_EINTR(r, read(fd, op->u.io.buf, op->u.io.len));
    else
        RETRY_EINTR(r, pread(fd, op->u.io.buf, op->u.io.len, (off_t)op->u.io.offset));
    return r < 0 ? -errno : r;
}

static int64_t file_write(struct eddy_op *op)
{
    ssize_t r;
    int fd = (int)op->fd;
    if (op->u.io.offset < 0)
        RETRY_EINTR(r, write(fd, op->u.io.buf, op->u.io.len));
    else
        RETRY_EINTR(r, pwrite(fd, op->u.io.buf, op->u.io.len, (off_t)op->u.io.offset));
    return r < 0 ? -errno : r;
}

static int64_t file_stat(struct eddy_op *op)
{
    int r;
    if (op->u.path.path)
        RETRY_EINTR(r, fstatat(AT_FDCWD, op->u.path.path, op->u.path.statbuf, op->u.path.flags));
    else
        RETRY_EINTR(r, fstat((int)op->fd, op->u.path.statbuf));
    return r < 0 ? -errno : 0;
}

int64_t eddy__op_execute_blocking(struct eddy_op *op)
{
    const char *path = op->u.path.path;
    int r;
    switch (op->kind) {
    case EDDY_OP_READ:
        return file_read(op);
    case EDDY_OP_WRITE:
        return file_write(op);
    case EDDY_OP_STAT:
        return file_stat(op);
    case EDDY_OP_WORK:
        return op->u.work.fn(op->u.work.arg);
    case EDDY_OP_FSYNC:
        RETRY_EINTR(r, fsync((int)op->fd));
        break;
    case EDDY_OP_OPEN:
        RETRY_EINTR(r, openat(AT_FDCWD, path, op->u.path.flags | O_CLOEXEC, op->u.path.mode));
        break;
    case EDDY_OP_UNLINK:
        RETRY_EINTR(r, unlinkat(AT_FDCWD, path, op->u.path.flags));
        break;
    case EDDY_OP_RENAME:
        RETRY_EINTR(r, renameat(AT_FDCWD, path, AT_FDCWD, op->u.path.path2));
        break;
    case EDDY_OP_MKDIR:
        RETRY_EINTR(r, mkdirat(AT_FDCWD, path, (mode_t)op->u.path.mode));
        break;
    default:
        return -ENOTSUP;
    }
    return r < 0 ? -errno : r;
}
#endif

/* ---- workers ---------------------------------------------------------------- */

static struct eddy_loop *op_loop(const struct eddy_op *op)
{
    return (struct eddy_loop *)(op->backend_data & ~QUEUED);
}

/* Waits on c (holding pool.lock) until signalled or about ns have passed.
 * Callers look at the monotonic clock themselves: a wake may be spurious, and
 * the system clock POSIX measures the wait on may jump. */
static void cond_wait_ns(eddy__cond *c, int64_t ns)
{
#ifdef _WIN32
    int64_t ms = (ns + 999999) / 1000000;
    SleepConditionVariableSRW(c, &pool.lock, ms > 0x7ffffffe ? 0x7ffffffe : (DWORD)ms, 0);
#else
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t nsec = ts.tv_nsec + ns % 1000000000;
    ts.tv_sec += (time_t)(ns / 1000000000 + nsec / 1000000000);
    ts.tv_nsec = (long)(nsec % 1000000000);
    pthread_cond_timedwait(c, &pool.lock, &ts);
#endif
}

/* Waits for work, holding pool.lock. False: this worker, beyond the base,
 * was idle for pool.idle_ns and must exit (it is no longer counted). */
static bool wait_for_work(void)
{
    int64_t since = eddy__monotonic_ns();
    while (eddy__list_empty(&pool.queue)) {
        pool.idle++;
        if (pool.workers <= pool.base) {
            eddy__cond_wait(&pool.work_ready, &pool.lock);
        } else {
            int64_t left = since + pool.idle_ns - eddy__monotonic_ns();
            if (left > 0) cond_wait_ns(&pool.work_ready, left);
        }
        pool.idle--;
        if (eddy__list_empty(&pool.queue) && pool.workers > pool.base &&
            eddy__monotonic_ns() - since >= pool.idle_ns) {
            pool.workers--;
            return false;
        }
    }
    return true;
}

static void worker_loop(void)
{
    eddy__mutex_lock(&pool.lock);
    while (wait_for_work()) {
        struct eddy_op *op =
            eddy__container_of(eddy__list_pop_front(&pool.queue), struct eddy_op, link);
        pool.queued--;
        pool.taken++;
        op->backend_data &= ~QUEUED;
        eddy__mutex_unlock(&pool.lock);

        /* From here the op is ours alone until it is posted back; after that
         * its memory may be gone (the waiting task resumes and returns). */
        op->result = eddy__op_execute_blocking(op);
        eddy__loop_post_completion(op_loop(op), op);

        eddy__mutex_lock(&pool.lock);
    }
    eddy__mutex_unlock(&pool.lock);
}

/* Work waits that no idle worker will take, and the pool may still grow. */
static bool pool_saturated(void)
{
    return pool.queued > pool.idle && pool.workers >= pool.base && pool.workers < pool.max_workers;
}

static int start_thread(bool monitor);

/* The monitor: while the pool is saturated, adds a worker each time the
 * queue has stood still for STALL_NS. Exits after pool.idle_ns with nothing
 * to watch; pool_submit starts it again. */
static void monitor_loop(void)
{
    eddy__mutex_lock(&pool.lock);
    int64_t since = eddy__monotonic_ns();
    for (;;) {
        if (!pool_saturated()) {
            int64_t left = since + pool.idle_ns - eddy__monotonic_ns();
            if (left <= 0) break;
            cond_wait_ns(&pool.monitor_wake, left);
            continue;
        }
        uint64_t taken = pool.taken;
        int64_t deadline = eddy__monotonic_ns() + STALL_NS, left;
        while ((left = deadline - eddy__monotonic_ns()) > 0)
            cond_wait_ns(&pool.monitor_wake, left);
        /* A failed start is tried again after the next STALL_NS. */
        if (pool_saturated() && pool.taken == taken) (void)start_thread(false);
        since = eddy__monotonic_ns();
    }
    pool.monitor_running = false;
    eddy__mutex_unlock(&pool.lock);
}

#ifdef _WIN32
static DWORD WINAPI worker_main(void *monitor)
{
    if (monitor)
        monitor_loop();
    else
        worker_loop();
    return 0;
}

/* Starts a worker (or the monitor). Called with pool.lock held. */
static int start_thread(bool monitor)
{
    HANDLE thread = CreateThread(NULL, 0, worker_main, monitor ? &pool : NULL, 0, NULL);
    if (!thread) return eddy__win_error(GetLastError());
    CloseHandle(thread); /* detached */
    if (monitor)
        pool.monitor_running = true;
    else
        pool.workers++;
    return 0;
}
#else
static void *worker_main(void *monitor)
{
    if (monitor)
        monitor_loop();
    else
        worker_loop();
    return NULL;
}

/* Starts a worker (or the monitor) with every signal blocked, so that
 * signals are delivered to the loop threads. Blocking them around
 * pthread_create leaves no window in which the new thread could take one.
 * Called with pool.lock held. */
static int start_thread(bool monitor)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_attr_t attr;
    int err = pthread_attr_init(&attr);
    if (err) return -err;
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_t thread;
    err = pthread_create(&thread, &attr, worker_main, monitor ? &pool : NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
    if (err) return err == EAGAIN ? -EAGAIN : -ENOMEM;
    if (monitor)
        pool.monitor_running = true;
    else
        pool.workers++;
    return 0;
}
#endif

/* ---- fork ---------------------------------------------------------------- */

/* The child has none of the workers: it starts afresh, lazily. Ops queued or
 * running in the parent stay the parent's. */
#ifndef _WIN32
static void fork_prepare(void)
{
    pthread_mutex_lock(&pool.lock);
}

static void fork_parent(void)
{
    pthread_mutex_unlock(&pool.lock);
}

static void fork_child(void)
{
    pthread_mutex_init(&pool.lock, NULL);
    pthread_cond_init(&pool.work_ready, NULL);
    pthread_cond_init(&pool.monitor_wake, NULL);
    eddy__list_init(&pool.queue);
    pool.queued = pool.workers = pool.idle = 0;
    pool.monitor_running = false;
}
#endif

/* A count from the environment, clamped to [lo, hi]; fallback if unset or
 * not a number. */
static long env_count(const char *name, long fallback, long lo, long hi)
{
    const char *env = getenv(name);
    if (!env || !*env) return fallback;
    char *end;
    long v = strtol(env, &end, 10);
    if (*end != '\0') return fallback;
    return v < lo ? lo : v > hi ? hi : v;
}

static void pool_setup(void)
{
    pool.base = (unsigned)env_count("EDDY_THREADPOOL_SIZE", DEFAULT_WORKERS, 1, MAX_WORKERS);
    long max = DEFAULT_MAX_WORKERS > pool.base ? DEFAULT_MAX_WORKERS : pool.base;
    pool.max_workers = (unsigned)env_count("EDDY_THREADPOOL_MAX", max, pool.base, MAX_WORKERS);
    pool.idle_ns =
        env_count("EDDY_THREADPOOL_IDLE_MS", DEFAULT_IDLE_MS, 1, MAX_IDLE_MS) * (int64_t)1000000;
#ifndef _WIN32
    pthread_atfork(fork_prepare, fork_parent, fork_child);
#endif
}

/* ---- the internal API -------------------------------------------------------- */

int eddy__pool_submit(struct eddy_loop *loop, struct eddy_op *op)
{
    eddy__once_run(&pool_once, pool_setup);
    eddy__mutex_lock(&pool.lock);
    op->backend_data = (uintptr_t)loop | QUEUED;
    eddy__list_push_back(&pool.queue, &op->link);
    pool.queued++;
    /* Start a worker when the idle ones cannot cover the queue. Failing is
     * fatal to this op only when no worker exists to take it later. */
    if (pool.queued > pool.idle && pool.workers < pool.base) {
        int err = start_thread(false);
        if (err && pool.workers == 0) {
            eddy__list_remove(&op->link);
            pool.queued--;
            op->backend_data = 0;
            eddy__mutex_unlock(&pool.lock);
            return err;
        }
    } else if (pool_saturated()) {
        /* Past the base, the monitor decides. Without it (no thread could be
         * started) the pool keeps the size it has. */
        if (pool.monitor_running)
            eddy__cond_signal(&pool.monitor_wake);
        else
            (void)start_thread(true);
    }
    eddy__cond_signal(&pool.work_ready);
    eddy__mutex_unlock(&pool.lock);
    return 0;
}

void eddy__pool_cancel(struct eddy_loop *loop, struct eddy_op *op)
{
    eddy__mutex_lock(&pool.lock);
    bool queued = op->backend_data & QUEUED;
    if (queued) {
        eddy__list_remove(&op->link);
        pool.queued--;
        op->backend_data &= ~QUEUED;
    }
    eddy__mutex_unlock(&pool.lock);
    /* A worker that took the op finishes it and posts it itself. */
    if (queued) {
        op->result = -ECANCELED;
        eddy__loop_post_completion(loop, op);
    }
}

/* ---- eddy_to_thread ---------------------------------------------------------- */

/* The op's own result cannot tell fn's return value from an error code, so
 * fn's value travels beside it. */
struct thread_call {
    intptr_t (*fn)(void *arg);
    void *arg;
    intptr_t value;
    bool ran;
};

static intptr_t run_thread_call(void *arg)
{
    struct thread_call *call = arg;
    call->value = call->fn(call->arg);
    call->ran = true;
    return 0;
}

int eddy_to_thread(intptr_t (*fn)(void *), void *arg, intptr_t *result)
{
    if (!fn) return -EINVAL;
    struct thread_call call = {.fn = fn, .arg = arg};
    struct eddy_op op;
    memset(&op, 0, sizeof op);
    op.kind = EDDY_OP_WORK;
    op.fd = -1;
    op.u.work.fn = run_thread_call;
    op.u.work.arg = &call;
    int64_t r = eddy__op_run(&op);
    if (!call.ran) return r < 0 ? (int)r : -ECANCELED;
    /* A call that started was awaited to its end; the cancellation stands. */
    struct eddy_task *t = eddy__current_task();
    if (t && eddy__task_cancelled(t)) return -ECANCELED;
    if (result) *result = call.value;
    return 0;
}
