/* SPDX-License-Identifier: MIT */
/* The thread pool: file ops where the backend has no native path, and
 * eddy_to_thread (asyncio.to_thread).
 *
 * One pool per process, shared by every loop. Workers are started on demand,
 * up to a fixed count (EDDY_THREADPOOL_SIZE, default 4), and take ops from one
 * FIFO queue. A finished op goes back to the loop that submitted it (kept in
 * op->backend_data) through eddy__loop_post_completion, so op->complete always
 * runs on that loop's thread. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifndef _WIN32
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>
#endif

#include "internal.h"

#define DEFAULT_WORKERS 4
#define MAX_WORKERS     1024

/* Set in op->backend_data (beside the loop pointer, which is aligned) while
 * the op waits in the queue; cleared when a worker takes it. */
#define QUEUED ((uintptr_t)1)

static struct {
    eddy__mutex lock;
    eddy__cond work_ready;
    struct eddy__list queue; /* eddy_op, through op->link */
    unsigned queued;         /* ops in queue */
    unsigned workers;        /* threads started */
    unsigned idle;           /* workers waiting for work */
    unsigned max_workers;
} pool = {
    .lock = EDDY__MUTEX_INIT,
    .work_ready = EDDY__COND_INIT,
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

static void worker_loop(void)
{
    eddy__mutex_lock(&pool.lock);
    for (;;) {
        while (eddy__list_empty(&pool.queue)) {
            pool.idle++;
            eddy__cond_wait(&pool.work_ready, &pool.lock);
            pool.idle--;
        }
        struct eddy_op *op =
            eddy__container_of(eddy__list_pop_front(&pool.queue), struct eddy_op, link);
        pool.queued--;
        op->backend_data &= ~QUEUED;
        eddy__mutex_unlock(&pool.lock);

        /* From here the op is ours alone until it is posted back; after that
         * its memory may be gone (the waiting task resumes and returns). */
        op->result = eddy__op_execute_blocking(op);
        eddy__loop_post_completion(op_loop(op), op);

        eddy__mutex_lock(&pool.lock);
    }
}

#ifdef _WIN32
static DWORD WINAPI worker_main(void *unused)
{
    worker_loop();
    return 0;
}

/* Called with pool.lock held. */
static int start_worker(void)
{
    HANDLE thread = CreateThread(NULL, 0, worker_main, NULL, 0, NULL);
    if (!thread) return eddy__win_error(GetLastError());
    CloseHandle(thread); /* detached: workers live as long as the process */
    pool.workers++;
    return 0;
}
#else
static void *worker_main(void *unused)
{
    worker_loop();
    return NULL;
}

/* Starts one worker with every signal blocked, so that signals are delivered
 * to the loop threads. Blocking them around pthread_create leaves no window
 * in which the new thread could take one. Called with pool.lock held. */
static int start_worker(void)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_attr_t attr;
    int err = pthread_attr_init(&attr);
    if (err) return -err;
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_t thread;
    err = pthread_create(&thread, &attr, worker_main, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
    if (err) return err == EAGAIN ? -EAGAIN : -ENOMEM;
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
    eddy__list_init(&pool.queue);
    pool.queued = pool.workers = pool.idle = 0;
}
#endif

static void pool_setup(void)
{
    unsigned n = DEFAULT_WORKERS;
    const char *env = getenv("EDDY_THREADPOOL_SIZE");
    if (env && *env) {
        char *end;
        long v = strtol(env, &end, 10);
        if (*end == '\0') n = v < 1 ? 1 : v > MAX_WORKERS ? MAX_WORKERS : (unsigned)v;
    }
    pool.max_workers = n;
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
    if (pool.queued > pool.idle && pool.workers < pool.max_workers) {
        int err = start_worker();
        if (err && pool.workers == 0) {
            eddy__list_remove(&op->link);
            pool.queued--;
            op->backend_data = 0;
            eddy__mutex_unlock(&pool.lock);
            return err;
        }
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
