/* SPDX-License-Identifier: MIT */
/* Several loops: eddy_run_threads (one loop per thread, pinned where the
 * platform allows) and eddy_spawn_threadsafe. A task spawned on another
 * loop is represented on the caller's loop by a proxy task: it posts the
 * spawn to the target loop, awaits a future of its own loop that the remote
 * task completes by a threadsafe post when it ends, and returns what the
 * remote task returned. Joining, detaching and cancelling the proxy are then
 * plain calls on the caller's own loop; cancelling it cancels the remote
 * task, and the proxy waits (deaf to its own cancellation) until that one
 * has ended. Nothing loop-bound crosses threads: only posts. */
#if defined(__linux__) && !defined(_GNU_SOURCE)
#define _GNU_SOURCE /* sched_getaffinity, pthread_setaffinity_np */
#endif
#include <stdlib.h>
#ifndef _WIN32
#include <pthread.h>
#include <sched.h>
#include <unistd.h>
#endif

#include "internal.h"

/* ---- eddy_spawn_threadsafe ------------------------------------------------ */

struct remote {
    unsigned refs; /* atomic: the proxy (or waiting thread), the remote side, each cancel post */
    eddy_loop *target;
    eddy_task_fn fn;
    void *arg;
    /* the caller's side: the loop to post the end to, and its future */
    eddy_loop *home;
    eddy_future *done;
    bool finished; /* home_complete ran (both on the home thread) */
    intptr_t result;
    /* the target's side, touched on its thread only */
    eddy_task *task;            /* detached; NULL once it ended */
    struct eddy__waiter ending; /* on the task's future: its end goes home */
    bool ended;
    bool proxy_ran; /* the home side's: proxy_main began */
    /* a plain thread waiting for the task to be made */
    eddy__mutex lock;
    eddy__cond made;
    bool created;
};

static void remote_unref(struct remote *r)
{
    if (__atomic_sub_fetch(&r->refs, 1, __ATOMIC_ACQ_REL)) return;
    eddy__mutex_destroy(&r->lock);
    free(r);
}

static void home_complete(void *arg)
{
    struct remote *r = arg;
    r->finished = true;
    if (!eddy_future_done(r->done)) (void)eddy_future_set_result(r->done, r->result);
    eddy_future_unref(r->done);
    remote_unref(r);
}

/* The home loop is being freed: its proxy has ended, only references go. */
static void home_dropped(void *arg)
{
    struct remote *r = arg;
    eddy_future_unref(r->done);
    remote_unref(r);
}

/* On the target loop: the remote side is over, with result; it goes home. */
static void remote_end(struct remote *r, intptr_t result)
{
    r->ended = true;
    r->task = NULL;
    r->result = result;
    if (eddy__call_soon_threadsafe_or(r->home, home_complete, home_dropped, r) < 0) {
        /* Out of memory: the proxy stays waiting; nothing else to do. */
    }
}

/* The remote task's future completed: whether fn returned, or the task was
 * cancelled before it began (a loop shutting down cancels every task). */
static void remote_task_ended(struct eddy__waiter *w, struct eddy_future *f)
{
    struct remote *r = eddy__container_of(w, struct remote, ending);
    remote_end(r, f->value);
}

static intptr_t remote_main(void *arg)
{
    struct remote *r = arg;
    return r->fn(r->arg);
}

/* On the target loop: makes the remote task. */
static void remote_spawn(void *arg)
{
    struct remote *r = arg;
    r->task = eddy_spawn(r->target, remote_main, r);
    if (!r->task) {
        remote_end(r, -ENOMEM);
        return;
    }
    r->ending.notify = remote_task_ended;
    eddy__future_add_waiter(eddy_task_future(r->task), &r->ending);
    eddy_task_detach(r->task); /* the loop keeps it until it ends */
}

/* The target loop was freed before it made the task. */
static void remote_spawn_dropped(void *arg)
{
    remote_end(arg, -ECANCELED);
}

/* On the target loop: the proxy was cancelled. A task that has not begun
 * ends at its first run, and its waiter says so. */
static void remote_cancel(void *arg)
{
    struct remote *r = arg;
    if (!r->ended && r->task) (void)eddy_task_cancel(r->task);
    remote_unref(r);
}

static void remote_cancel_dropped(void *arg)
{
    remote_unref(arg);
}

static intptr_t proxy_main(void *arg)
{
    struct remote *r = arg;
    r->proxy_ran = true;
    int err = eddy__call_soon_threadsafe_or(r->target, remote_spawn, remote_spawn_dropped, r);
    if (err < 0) {
        remote_unref(r); /* the remote side's reference */
        eddy_future_unref(r->done);
        eddy_future_unref(r->done);
        remote_unref(r);
        return err;
    }
    intptr_t v = 0;
    err = eddy_await(r->done, &v);
    if (err < 0 && !r->finished) {
        /* Cancelled: so is the remote task, and the proxy waits for its end,
         * deaf to its own cancellation, on a new future (the await cancelled
         * the first). home_complete runs on this thread: the swap is safe. */
        eddy_future *next = eddy_future_new(NULL);
        __atomic_add_fetch(&r->refs, 1, __ATOMIC_ACQ_REL);
        if (eddy__call_soon_threadsafe_or(r->target, remote_cancel, remote_cancel_dropped, r) < 0)
            remote_unref(r);
        if (next) {
            eddy_future_ref(next); /* home_complete's, in place of the first's */
            eddy_future_unref(r->done);
            eddy_future_unref(r->done);
            r->done = next;
            eddy_shield_begin();
            while (!r->finished && (err = eddy_await(r->done, &v)) == 0 && !r->finished) {
            }
            eddy_shield_end();
            err = r->finished ? 0 : err;
            v = r->result;
        }
    }
    eddy_future_unref(r->done);
    remote_unref(r);
    return err < 0 ? err : v;
}

/* The proxy ended; if it was cancelled before it began, nothing was posted
 * and its references are dropped here. */
static void proxy_done(eddy_future *f, void *arg)
{
    (void)f;
    struct remote *r = arg;
    if (!r->proxy_ran) {
        eddy_future_unref(r->done);
        eddy_future_unref(r->done);
        remote_unref(r); /* the proxy's */
        remote_unref(r); /* the remote side's */
    }
    remote_unref(r); /* its own */
}

/* A plain thread: the task is made on the target loop, and its reference
 * handed back once it exists. */
static void remote_spawn_for_thread(void *arg)
{
    struct remote *r = arg;
    eddy_task *t = eddy_spawn(r->target, r->fn, r->arg);
    eddy__mutex_lock(&r->lock);
    r->task = t;
    r->created = true;
    eddy__cond_signal(&r->made);
    eddy__mutex_unlock(&r->lock);
}

/* The target loop was freed first: the waiting thread gets NULL. */
static void remote_spawn_for_thread_dropped(void *arg)
{
    struct remote *r = arg;
    eddy__mutex_lock(&r->lock);
    r->created = true;
    r->ended = true;
    eddy__cond_signal(&r->made);
    eddy__mutex_unlock(&r->lock);
}

EDDY_API eddy_task *eddy_spawn_threadsafe(eddy_loop *loop, eddy_task_fn fn, void *arg)
{
    if (!loop || !fn) {
        errno = EINVAL;
        return NULL;
    }
    if (!eddy__loop_foreign(loop)) return eddy_spawn(loop, fn, arg);
    struct remote *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    if (eddy__mutex_init(&r->lock)) {
        free(r);
        errno = ENOMEM;
        return NULL;
    }
    eddy__cond c = EDDY__COND_INIT;
    r->made = c;
    r->target = loop;
    r->fn = fn;
    r->arg = arg;
    r->home = eddy__thread_loop;
    if (!r->home) {
        /* No loop here to hold a proxy: wait until the task exists. */
        r->refs = 1;
        int err = eddy__call_soon_threadsafe_or(loop, remote_spawn_for_thread,
                                                remote_spawn_for_thread_dropped, r);
        eddy__mutex_lock(&r->lock);
        while (err == 0 && !r->created)
            eddy__cond_wait(&r->made, &r->lock);
        eddy_task *t = r->task;
        bool freed = r->ended;
        eddy__mutex_unlock(&r->lock);
        remote_unref(r);
        if (err < 0 || !t) errno = err < 0 ? -err : freed ? ECANCELED : ENOMEM;
        return t;
    }
    r->done = eddy_future_new(r->home);
    if (!r->done) {
        remote_unref(r);
        return NULL;
    }
    eddy_future_ref(r->done); /* for home_complete */
    r->refs = 3;              /* the proxy's, the remote side's, proxy_done's */
    eddy_task *proxy = eddy_spawn(r->home, proxy_main, r);
    if (proxy && eddy_future_on_done(eddy_task_future(proxy), proxy_done, r) < 0) {
        eddy_task_detach(proxy); /* out of memory: it would leak if cancelled unstarted */
        (void)eddy_task_cancel(proxy);
        proxy = NULL;
    }
    if (!proxy) {
        eddy_future_unref(r->done);
        eddy_future_unref(r->done);
        eddy__mutex_destroy(&r->lock);
        free(r);
        errno = ENOMEM;
        return NULL;
    }
    return proxy;
}

/* ---- awaiting a future of another loop --------------------------------- */

/* A task of loop A (home) waits for a future of loop B (its owner). The
 * task posts a registration to B; on B's thread it adds a waiter to the
 * future (or finds it done), and the outcome comes home by a post to A,
 * which wakes the task. B's objects are touched on B's thread only, A's on
 * A's. The record is shared: refs is atomic, and `abandoned` (under lock)
 * says the task stopped waiting (cancelled, a scope expired, A shutting
 * down); B posts home only under the lock and only while it is false, so A
 * is alive for every post, and A's free drops a post still queued. */
struct remote_wait {
    unsigned refs; /* atomic: the waiting task's, B's side's, a post home's */
    eddy__mutex lock;
    bool abandoned; /* written by A under lock */
    /* A's side */
    eddy_loop *home;
    struct eddy_task *task;
    /* B's side */
    struct eddy_future *future;
    bool join; /* the caller's reference to the task is B's side's to drop */
    struct eddy__waiter waiter;
    struct eddy__work finish; /* drops B's references after a notify */
    /* the outcome, written on B before the post home, read on A after it */
    uint8_t state;
    intptr_t value;
};

static void remote_wait_unref(struct remote_wait *rw)
{
    if (__atomic_sub_fetch(&rw->refs, 1, __ATOMIC_ACQ_REL)) return;
    eddy__mutex_destroy(&rw->lock);
    free(rw);
}

/* On A: the outcome is in; wake the task unless it stopped waiting. */
static void remote_wait_home(void *arg)
{
    struct remote_wait *rw = arg;
    if (!rw->abandoned) eddy__task_wake(rw->task, 0);
    remote_wait_unref(rw);
}

/* A is being freed with the post still queued: its task has stopped waiting. */
static void remote_wait_home_dropped(void *arg)
{
    remote_wait_unref(arg);
}

/* On B: sends the outcome (state, value) home unless the task stopped waiting. */
static void remote_wait_send(struct remote_wait *rw, uint8_t state, intptr_t value)
{
    eddy__mutex_lock(&rw->lock);
    if (!rw->abandoned) {
        rw->state = state;
        rw->value = value;
        __atomic_add_fetch(&rw->refs, 1, __ATOMIC_ACQ_REL);
        if (eddy__call_soon_threadsafe_or(rw->home, remote_wait_home, remote_wait_home_dropped,
                                          rw) < 0)
            __atomic_sub_fetch(&rw->refs, 1, __ATOMIC_ACQ_REL); /* out of memory: it waits on */
    }
    eddy__mutex_unlock(&rw->lock);
}

/* On B: B's side is over; its reference to the future goes, then its own. */
static void remote_wait_finish(struct eddy__work *w)
{
    struct remote_wait *rw = eddy__container_of(w, struct remote_wait, finish);
    eddy_future_unref(rw->future);
    remote_wait_unref(rw);
}

static void remote_wait_notify(struct eddy__waiter *w, struct eddy_future *f)
{
    struct remote_wait *rw = eddy__container_of(w, struct remote_wait, waiter);
    f->retrieved = true;
    remote_wait_send(rw, f->state, f->value);
    /* Not here: the future completing is still walking its waiters. */
    rw->finish.run = remote_wait_finish;
    eddy__loop_schedule(f->loop, &rw->finish);
}

/* On B's thread, freeing B: a plain future still pending will never be done;
 * the task gets -ECANCELED. The caller drops the future's reference. */
void eddy__remote_wait_dropped(struct eddy__waiter *w)
{
    struct remote_wait *rw = eddy__container_of(w, struct remote_wait, waiter);
    remote_wait_send(rw, EDDY__FUT_CANCELLED, -ECANCELED);
    remote_wait_unref(rw);
}

bool eddy__is_remote_wait(const struct eddy__waiter *w)
{
    return w->notify == remote_wait_notify;
}

/* On B: the registration. Also run instead by B's free when B is freed with
 * it queued: every task has ended then, and a plain future still pending is
 * dropped with the loop (eddy__remote_wait_dropped). */
static void remote_wait_register(void *arg)
{
    struct remote_wait *rw = arg;
    struct eddy_future *f = rw->future;
    eddy__mutex_lock(&rw->lock);
    bool abandoned = rw->abandoned;
    eddy__mutex_unlock(&rw->lock);
    if (abandoned) {
        /* The task stopped waiting before this ran: the future may be gone
         * (unless a join handed its reference over), so it is not touched. */
        if (rw->join) eddy_future_unref(f);
        remote_wait_unref(rw);
        return;
    }
    if (!rw->join) eddy_future_ref(f); /* B's side's, until its end */
    if (f->state != EDDY__FUT_PENDING) {
        f->retrieved = true;
        remote_wait_send(rw, f->state, f->value);
        eddy_future_unref(f);
        remote_wait_unref(rw);
        return;
    }
    rw->waiter.notify = remote_wait_notify;
    eddy__future_add_waiter(f, &rw->waiter);
}

/* The waiting task was cancelled (or a timeout scope expired): it stops at
 * once; a late outcome is dropped, and the future is left as it is. */
static void remote_wait_abort(struct eddy_task *t)
{
    struct remote_wait *rw = t->wait_data;
    eddy__mutex_lock(&rw->lock);
    rw->abandoned = true;
    eddy__mutex_unlock(&rw->lock);
    eddy__task_wake(t, -ECANCELED);
}

int eddy__remote_wait(struct eddy_task *t, struct eddy_future *f, bool join, intptr_t *value)
{
    struct remote_wait *rw = calloc(1, sizeof *rw);
    if (!rw) return -ENOMEM;
    if (eddy__mutex_init(&rw->lock)) {
        free(rw);
        return -ENOMEM;
    }
    rw->refs = 2; /* the task's, B's side's */
    rw->home = t->loop;
    rw->task = t;
    rw->future = f;
    rw->join = join;
    /* Cancelled already: the registration only drops a join's reference. */
    bool cancelled = eddy__task_cancelled(t);
    if (cancelled && !join) {
        eddy__mutex_destroy(&rw->lock);
        free(rw);
        return -ECANCELED;
    }
    rw->abandoned = cancelled;
    int err =
        eddy__call_soon_threadsafe_or(f->loop, remote_wait_register, remote_wait_register, rw);
    if (err < 0) {
        /* Out of memory, or the wake failed with the registration queued:
         * which one is not known, so the record stays for B's side (leaked
         * in the first case) and the task gives up. */
        eddy__mutex_lock(&rw->lock);
        rw->abandoned = true;
        eddy__mutex_unlock(&rw->lock);
        remote_wait_unref(rw);
        return err;
    }
    if (cancelled) {
        err = -ECANCELED;
    } else {
        t->abort_wait = remote_wait_abort;
        eddy__task_waits(t, EDDY__WAIT_OTHER);
        t->wait_data = rw;
        err = (int)eddy__task_suspend(t);
    }
    if (err == 0) {
        if (rw->state == EDDY__FUT_RESULT) {
            if (value) *value = rw->value;
        } else {
            err = rw->state == EDDY__FUT_CANCELLED ? -ECANCELED : (int)rw->value;
        }
    }
    remote_wait_unref(rw);
    return err;
}

/* ---- eddy_run_threads -------------------------------------------------------- */

struct runner {
    unsigned index, n;
    eddy_task_fn main;
    void *arg;
    int err;
#ifdef _WIN32
    HANDLE thread;
#else
    pthread_t thread;
#endif
};

/* Pins the calling thread to CPU index (modulo the CPUs it may use). */
static void pin(unsigned index)
{
#if defined(__linux__)
    cpu_set_t allowed;
    if (sched_getaffinity(0, sizeof allowed, &allowed) != 0) return;
    int count = CPU_COUNT(&allowed);
    if (count <= 1) return;
    int want = (int)(index % (unsigned)count);
    for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
        if (!CPU_ISSET(cpu, &allowed) || want--) continue;
        cpu_set_t one;
        CPU_ZERO(&one);
        CPU_SET(cpu, &one);
        (void)pthread_setaffinity_np(pthread_self(), sizeof one, &one);
        return;
    }
#elif defined(_WIN32)
    DWORD_PTR process, system;
    if (!GetProcessAffinityMask(GetCurrentProcess(), &process, &system)) return;
    unsigned count = 0;
    for (unsigned b = 0; b < sizeof(DWORD_PTR) * 8; b++)
        count += (process >> b) & 1;
    if (count <= 1) return;
    unsigned want = index % count;
    for (unsigned b = 0; b < sizeof(DWORD_PTR) * 8; b++) {
        if (!((process >> b) & 1) || want--) continue;
        (void)SetThreadAffinityMask(GetCurrentThread(), (DWORD_PTR)1 << b);
        return;
    }
#else
    (void)index; /* macOS has only affinity hints; the BSDs differ: not pinned */
#endif
}

static void runner_main(struct runner *r)
{
    pin(r->index);
    intptr_t result = 0;
    int err = eddy_run(r->main, r->arg, &result);
    r->err = err < 0 ? err : result < 0 ? (int)result : 0;
}

#ifdef _WIN32
static DWORD WINAPI runner_thread(void *arg)
{
    runner_main(arg);
    return 0;
}
#else
static void *runner_thread(void *arg)
{
    runner_main(arg);
    return NULL;
}
#endif

EDDY_API int eddy_run_threads(unsigned n, eddy_task_fn main, void *arg)
{
    if (n == 0 || n > 4096 || !main) return -EINVAL;
    struct runner *runners = calloc(n, sizeof *runners);
    if (!runners) return -ENOMEM;
    unsigned started = 0;
    int err = 0;
    for (; started < n; started++) {
        struct runner *r = &runners[started];
        *r = (struct runner){.index = started, .n = n, .main = main, .arg = arg};
#ifdef _WIN32
        r->thread = CreateThread(NULL, 0, runner_thread, r, 0, NULL);
        if (!r->thread) err = eddy__win_error(GetLastError());
#else
        int e = pthread_create(&r->thread, NULL, runner_thread, r);
        if (e) err = e == EAGAIN ? -EAGAIN : -ENOMEM;
#endif
        if (err) break;
    }
    for (unsigned i = 0; i < started; i++) {
#ifdef _WIN32
        WaitForSingleObject(runners[i].thread, INFINITE);
        CloseHandle(runners[i].thread);
#else
        pthread_join(runners[i].thread, NULL);
#endif
        if (!err) err = runners[i].err;
    }
    free(runners);
    return err;
}
