/* SPDX-License-Identifier: MIT */
/* The run loop: a ready queue of work, the timer heap, and one backend. An
 * iteration waits in the backend (not at all when work is ready), takes in
 * what other threads posted, fires due timers, then runs exactly what was
 * ready when it began, so work queued meanwhile waits for the next one. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#if defined(__linux__)
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <unistd.h>
#define EDDY__EMBED_EPOLL 1
#elif EDDY_HAVE_KQUEUE
#include <sys/event.h>
#include <unistd.h>
#define EDDY__EMBED_KQUEUE 1
#endif

__thread struct eddy_loop *eddy__thread_loop EDDY__TLS_MODEL;
__thread uint64_t eddy__thread_number EDDY__TLS_MODEL;

uint64_t eddy__thread_id(void)
{
    static uint64_t last_number;
    if (!eddy__thread_number)
        eddy__thread_number = __atomic_add_fetch(&last_number, 1, __ATOMIC_RELAXED);
    return eddy__thread_number;
}

struct eddy_loop *eddy__loop_here(struct eddy_loop *loop)
{
    if (!loop) loop = eddy__thread_loop;
    if (loop && eddy__loop_foreign(loop)) {
        errno = EPERM;
        return NULL;
    }
    return loop;
}

/* Binds loop to the calling thread if no thread has run it yet; -EPERM if it
 * belongs to another. */
static int loop_bind(struct eddy_loop *loop)
{
    if (eddy__loop_foreign(loop)) return -EPERM;
    __atomic_store_n(&loop->owner, eddy__thread_id(), __ATOMIC_RELAXED);
    return 0;
}

/* Preference order for "auto" (also eddy_backends()). */
const struct eddy_backend_ops *const eddy__backends[] = {
#if EDDY_HAVE_URING
    &eddy__uring_backend,
#endif
#if EDDY_HAVE_EPOLL
    &eddy__epoll_backend,
#endif
#if EDDY_HAVE_KQUEUE
    &eddy__kqueue_backend,
#endif
#if EDDY_HAVE_IOCP
    &eddy__iocp_backend,
#endif
    NULL,
};

/* Whether "auto" may choose ops. kqueue through libkqueue (Linux) is there to
 * test the backend, not to serve: a loop runs on it only when asked by name. */
static bool auto_tries(const struct eddy_backend_ops *ops)
{
#if EDDY_KQUEUE_LIBKQUEUE
    if (ops == &eddy__kqueue_backend) return false;
#endif
    return true;
}

/* Every backend eddy knows, compiled in or not, so that a name the platform
 * lacks gets -ENOTSUP rather than -ENOENT. */
static const char *const known_backends[] = {"io_uring", "epoll", "kqueue", "iocp"};

static int backend_open(struct eddy_loop *loop, const eddy_loop_options *opts)
{
    const char *name = opts ? opts->backend : NULL;
    if (!name || !*name) name = getenv("EDDY_BACKEND");
    if (name && (!*name || strcmp(name, "auto") == 0)) name = NULL;
    int err = -ENOENT;
    for (size_t i = 0; eddy__backends[i]; i++) {
        if (name ? strcmp(name, eddy__backends[i]->name) != 0 : !auto_tries(eddy__backends[i]))
            continue;
        loop->backend.ops = eddy__backends[i];
        err = eddy__backends[i]->init(&loop->backend, opts);
        if (err == 0 || name) return err;
    }
    if (!name) return err;
    for (size_t i = 0; i < sizeof(known_backends) / sizeof(known_backends[0]); i++)
        if (strcmp(name, known_backends[i]) == 0) return -ENOTSUP;
    return -ENOENT;
}

int64_t eddy__loop_update_time(struct eddy_loop *loop)
{
    loop->now = (loop->flags & EDDY_LOOP_VIRTUAL_TIME) ? loop->virtual_now : eddy__monotonic_ns();
    return loop->now;
}

/* The largest options struct a caller may pass: beyond it, a size is
 * garbage rather than a layout from a later release. */
#define OPTIONS_SIZE_MAX 4096

int eddy__options_read(void *dst, size_t dst_size, const void *src, const size_t *layouts,
                       size_t n_layouts)
{
    size_t size;
    memcpy(&size, src, sizeof size);
    if (size == 0) size = layouts[0];
    bool known = false;
    for (size_t i = 0; i < n_layouts; i++)
        known = known || size == layouts[i];
    /* A later release's layout: larger, and a whole struct led by a size_t. */
    bool later = size > dst_size && size <= OPTIONS_SIZE_MAX && size % _Alignof(size_t) == 0;
    if (!known && !later) return -EINVAL;
    const unsigned char *tail = (const unsigned char *)src + dst_size;
    for (size_t i = 0; later && i < size - dst_size; i++)
        if (tail[i]) return -EINVAL; /* an option this library does not know */
    memset(dst, 0, dst_size);
    memcpy(dst, src, size < dst_size ? size : dst_size);
    memcpy(dst, &dst_size, sizeof dst_size);
    return 0;
}

/* eddy_loop_options' layouts, oldest first: the size each release's header
 * gave it (0 from the caller means the first). A release that adds fields
 * adds the offset of the end of its last one. */
static const size_t loop_options_layouts[] = {
    offsetof(eddy_loop_options, queue_depth) + sizeof(unsigned), /* 0.1 */
    offsetof(eddy_loop_options, stall_ns) + sizeof(int64_t),     /* 0.2 */
};
_Static_assert(sizeof(eddy_loop_options) == offsetof(eddy_loop_options, stall_ns) + sizeof(int64_t),
               "eddy_loop_options: the last layout is the header's, with no tail padding");

EDDY_API int eddy_loop_new(eddy_loop **out, const eddy_loop_options *user_opts)
{
    if (!out) return -EINVAL;
    *out = NULL;
    eddy_loop_options copy, *opts = NULL;
    if (user_opts) {
        int err = eddy__options_read(&copy, sizeof copy, user_opts, loop_options_layouts,
                                     sizeof loop_options_layouts / sizeof loop_options_layouts[0]);
        if (err < 0) return err;
        opts = &copy;
    }
    unsigned known =
        EDDY_LOOP_DEBUG | EDDY_LOOP_VIRTUAL_TIME | EDDY_LOOP_NO_GUARD_PAGES | EDDY_LOOP_METRICS;
    if (opts && (opts->flags & ~known)) return -EINVAL;
    size_t stack_size = opts && opts->stack_size ? opts->stack_size : EDDY__DEFAULT_STACK_SIZE;
    if (opts && opts->stall_ns < 0) return -EINVAL;
    if (stack_size < 16 * 1024 || stack_size > ((size_t)1 << 30)) return -EINVAL;

    struct eddy_loop *loop = calloc(1, sizeof(*loop));
    if (!loop) return -ENOMEM;
    loop->flags = opts ? opts->flags : 0;
    loop->stack_size = stack_size;
    loop->stall_ns = opts && opts->stall_ns          ? opts->stall_ns
                     : loop->flags & EDDY_LOOP_DEBUG ? EDDY__SLOW_TASK_NS
                                                     : 0;
    if (loop->stall_ns && eddy__stall_supported()) loop->flags |= EDDY__LOOP_STALL;
    eddy__list_init(&loop->ready);
    eddy__list_init(&loop->batch);
    eddy__list_init(&loop->tasks);
    eddy__list_init(&loop->remote);
    eddy__list_init(&loop->remote_ops);
    eddy__list_init(&loop->watches);
    eddy__list_init(&loop->futures);
    eddy__list_init(&loop->groups);
    loop->embed_fd = loop->embed_timer = -1;
    int err = eddy__mutex_init(&loop->remote_lock);
    if (err) {
        free(loop);
        return err;
    }
    err =
        eddy__stack_pool_init(&loop->stacks, stack_size, !(loop->flags & EDDY_LOOP_NO_GUARD_PAGES));
    if (err == 0) {
        err = backend_open(loop, opts);
        if (err < 0) eddy__stack_pool_destroy(&loop->stacks);
    }
    if (err < 0) {
        eddy__mutex_destroy(&loop->remote_lock);
        free(loop);
        return err;
    }
    eddy__loop_caps_init(loop);
    eddy__timers_init(&loop->timers, eddy__loop_update_time(loop));
    eddy__registry_add(loop);
    *out = loop;
    return 0;
}

bool eddy__loop_alive(const struct eddy_loop *loop)
{
    return loop->live_tasks || eddy__timers_live(&loop->timers) ||
           !eddy__list_empty(&loop->ready) || loop->ops_in_flight || loop->backend.pending ||
           __atomic_load_n(&loop->remote_pending, __ATOMIC_ACQUIRE);
}

/* Takes in threadsafe callbacks and ops the thread pool finished. */
static void drain_remote(struct eddy_loop *loop)
{
    if (!__atomic_load_n(&loop->remote_pending, __ATOMIC_ACQUIRE)) return;
    struct eddy__list work, ops;
    eddy__list_init(&work);
    eddy__list_init(&ops);
    eddy__mutex_lock(&loop->remote_lock);
    eddy__list_splice(&work, &loop->remote);
    eddy__list_splice(&ops, &loop->remote_ops);
    __atomic_store_n(&loop->remote_pending, 0, __ATOMIC_RELEASE);
    eddy__mutex_unlock(&loop->remote_lock);
    eddy__list_splice(&loop->ready, &work);
    struct eddy__list *node;
    while ((node = eddy__list_pop_front(&ops))) {
        struct eddy_op *op = eddy__container_of(node, struct eddy_op, link);
        op->state = EDDY_OP_STATE_DONE;
        op->complete(op);
    }
}

void eddy__loop_post_completion(struct eddy_loop *loop, struct eddy_op *op)
{
    eddy__mutex_lock(&loop->remote_lock);
    eddy__list_push_back(&loop->remote_ops, &op->link);
    __atomic_store_n(&loop->remote_pending, 1, __ATOMIC_RELEASE);
    /* Wake under the lock: once it is released the loop may take the op,
     * finish its task and free itself (eddy_loop_free takes the lock last). */
    loop->backend.ops->wake(&loop->backend);
    eddy__mutex_unlock(&loop->remote_lock);
}

/* How long the backend may block: not at all when work is ready; else until
 * the next deadline. Under virtual time with no I/O in flight, the clock
 * jumps to that deadline instead of waiting for it. */
/* One decay step of the loop's spare memory when due: free stacks, then the
 * task structs kept beside them (lib/stack.c, lib/task.c). */
static void spare_memory_trim(struct eddy_loop *loop)
{
    eddy__stack_pool_trim(&loop->stacks, eddy__monotonic_ns());
    eddy__task_cache_fit(loop, false);
}

static int64_t poll_timeout(struct eddy_loop *loop, bool block)
{
    if (!block || loop->stopping || !eddy__list_empty(&loop->ready)) return 0;
    int64_t next = eddy__timers_next(&loop->timers);
    bool io = loop->ops_in_flight || loop->backend.pending ||
              __atomic_load_n(&loop->remote_pending, __ATOMIC_ACQUIRE);
    if (loop->flags & EDDY_LOOP_VIRTUAL_TIME) {
        if (next == INT64_MAX) return io || loop->live_tasks ? -1 : 0;
        if (!io) {
            if (next > loop->virtual_now) loop->virtual_now = next;
            return 0;
        }
        return next - loop->virtual_now;
    }
    /* About to idle with spare task stacks: a decay step when one is due,
     * and a wake-up for the next (lib/stack.c). */
    if (loop->stacks.excess) {
        spare_memory_trim(loop);
        if (loop->stacks.trim_at && loop->stacks.trim_at < next) next = loop->stacks.trim_at;
    }
    if (next == INT64_MAX) return -1;
    int64_t wait = next - eddy__monotonic_ns();
    return wait > 0 ? wait : 0;
}

/* One iteration whose wait in the backend lasts at most cap ns (< 0: no
 * limit beyond the loop's own). */
static int loop_iterate_capped(struct eddy_loop *loop, bool block, int64_t cap, bool always_poll)
{
    /* A loop that never idles still decays its stacks: a clock read every
     * 1024 iterations, not at each. */
    if (loop->stacks.excess && (++loop->stacks.trim_ticks & 1023) == 0) spare_memory_trim(loop);
    int64_t timeout = poll_timeout(loop, block);
    if (cap >= 0 && (timeout < 0 || timeout > cap)) timeout = cap;
    /* With work ready and no I/O in flight there is nothing to reap: skip the
     * syscall (threadsafe posts are seen through remote_pending). An embedded
     * loop polls anyway: its descriptor stays readable until a wake is reaped. */
    bool timed = loop->flags & (EDDY_LOOP_METRICS | EDDY_LOOP_DEBUG);
    loop->stats.iterations++;
    if (always_poll || timeout != 0 || loop->ops_in_flight || loop->backend.pending) {
        int64_t idle_from = timed && timeout != 0 ? eddy__monotonic_ns() : 0;
        int completed = loop->backend.ops->poll(&loop->backend, timeout);
        if (idle_from) loop->stats.idle_ns += eddy__monotonic_ns() - idle_from;
        if (completed < 0 && completed != -EINTR) return completed;
        /* Virtual time waited for real on I/O that did not come: jump. */
        if ((loop->flags & EDDY_LOOP_VIRTUAL_TIME) && timeout > 0 && completed == 0)
            loop->virtual_now += timeout;
    }
    drain_remote(loop);
    if (eddy__timers_any(&loop->timers) || loop->timers.empty_slabs > 1)
        eddy__timers_run(loop, eddy__loop_update_time(loop));

    /* The batch lives in the loop: a task that suspends may take the next
     * task from it and switch to it directly (lib/task.c). */
    eddy__list_splice(&loop->batch, &loop->ready);
    int64_t run_from = timed ? eddy__monotonic_ns() : 0;
    struct eddy__list *node;
    while ((node = eddy__list_pop_front(&loop->batch))) {
        struct eddy__work *w = eddy__container_of(node, struct eddy__work, link);
        w->run(w);
    }
    if (timed) loop->stats.run_ns += eddy__monotonic_ns() - run_from;
    return 0;
}

int eddy__loop_iterate(struct eddy_loop *loop, bool block)
{
    return loop_iterate_capped(loop, block, -1, false);
}

/* Makes loop the running loop of this thread (binding it on first use):
 * 0, -EINVAL, -EPERM (another thread's), -EBUSY (it, or another loop on
 * this thread, is running). loop_leave undoes it. */
static int loop_enter(struct eddy_loop *loop, struct eddy_loop **previous)
{
    if (!loop) return -EINVAL;
    if (loop_bind(loop) < 0) return -EPERM;
    if (loop->running || (eddy__thread_loop && eddy__thread_loop != loop)) return -EBUSY;
    *previous = eddy__thread_loop;
    eddy__thread_loop = loop;
    loop->running = true;
    return 0;
}

static void loop_leave(struct eddy_loop *loop, struct eddy_loop *previous)
{
    loop->running = false;
    loop->stopping = false;
    eddy__thread_loop = previous;
}

EDDY_API int eddy_loop_run(eddy_loop *loop)
{
    struct eddy_loop *previous;
    int err = loop_enter(loop, &previous);
    if (err < 0) return err;
    /* A stop requested before the run still lets one iteration (that does
     * not block) happen, as in asyncio. */
    while (err == 0 && eddy__loop_alive(loop)) {
        err = eddy__loop_iterate(loop, true);
        if (loop->stopping) break;
    }
    loop_leave(loop, previous);
    return err;
}

/* ---- embedding ------------------------------------------------------------ */

#if EDDY__EMBED_EPOLL || EDDY__EMBED_KQUEUE
/* How long until the loop has work of its own (ready work, a due timer):
 * 0 = now, -1 = none; what comes from the backend shows on its descriptor. */
static int64_t embed_due(struct eddy_loop *loop)
{
    if (!eddy__list_empty(&loop->ready) || loop->stopping) return 0;
    int64_t next = eddy__timers_next(&loop->timers);
    if (next == INT64_MAX) return -1;
    if (loop->flags & EDDY_LOOP_VIRTUAL_TIME) {
        bool io = loop->ops_in_flight || loop->backend.pending;
        return io && next > loop->virtual_now ? next - loop->virtual_now : 0;
    }
    int64_t wait = next - eddy__monotonic_ns();
    return wait > 0 ? wait : 0;
}
#endif

#if EDDY__EMBED_EPOLL
/* Linux: an epoll set with the backend's descriptor (an epoll set or a ring,
 * both pollable) and a timerfd. */
static int embed_open(struct eddy_loop *loop, intptr_t backend_fd)
{
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) return -errno;
    int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN};
    int err = tfd < 0 ? -errno : 0;
    if (!err && epoll_ctl(ep, EPOLL_CTL_ADD, (int)backend_fd, &ev) < 0) err = -errno;
    if (!err && epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &ev) < 0) err = -errno;
    if (err) {
        if (tfd >= 0) close(tfd);
        close(ep);
        return err;
    }
    loop->embed_fd = ep;
    loop->embed_timer = tfd;
    return 0;
}

static void embed_arm(struct eddy_loop *loop, int64_t due)
{
    uint64_t expirations;
    if (read(loop->embed_timer, &expirations, sizeof expirations) < 0) {
        /* EAGAIN: it had not fired; nothing to drain */
    }
    struct itimerspec its = {{0, 0}, {0, 0}};
    if (due >= 0) {
        if (due == 0) due = 1; /* 0 would disarm it */
        its.it_value.tv_sec = (time_t)(due / 1000000000);
        its.it_value.tv_nsec = (long)(due % 1000000000);
    }
    (void)timerfd_settime(loop->embed_timer, 0, &its, NULL);
}
#elif EDDY__EMBED_KQUEUE
/* BSD, macOS: a kqueue with the backend's kqueue (readable while it holds
 * events) and a one-shot EVFILT_TIMER. */
static int embed_open(struct eddy_loop *loop, intptr_t backend_fd)
{
    int kq = kqueue();
    if (kq < 0) return -errno;
    struct kevent ev;
    EV_SET(&ev, (uintptr_t)backend_fd, EVFILT_READ, EV_ADD, 0, 0, NULL);
    if (kevent(kq, &ev, 1, NULL, 0, NULL) < 0) {
        int err = -errno;
        close(kq);
        return err;
    }
    loop->embed_fd = kq;
    return 0;
}

static void embed_arm(struct eddy_loop *loop, int64_t due)
{
    struct kevent ev, out[4];
    struct timespec zero = {0, 0};
    /* Take in the events that made it readable (a fired timer, the backend's). */
    (void)kevent(loop->embed_fd, NULL, 0, out, 4, &zero);
    EV_SET(&ev, 1, EVFILT_TIMER, EV_DELETE, 0, 0, NULL);
    (void)kevent(loop->embed_fd, &ev, 1, NULL, 0, NULL);
    if (due < 0) return;
    int64_t ms = (due + 999999) / 1000000; /* EVFILT_TIMER counts ms by default */
    EV_SET(&ev, 1, EVFILT_TIMER, EV_ADD | EV_ONESHOT, 0, ms > 0 ? ms : 0, NULL);
    (void)kevent(loop->embed_fd, &ev, 1, NULL, 0, NULL);
}
#endif

EDDY_API intptr_t eddy_loop_fd(const eddy_loop *cloop)
{
    if (!cloop) return -EINVAL;
    if (eddy__loop_foreign(cloop)) return -EPERM;
#if EDDY__EMBED_EPOLL || EDDY__EMBED_KQUEUE
    /* Made on first use: the loop is the caller's to change, const or not. */
    struct eddy_loop *loop = (struct eddy_loop *)(uintptr_t)cloop;
    if (loop->embed_fd >= 0) return loop->embed_fd;
    if (!loop->backend.ops->fd) return -ENOTSUP;
    intptr_t backend_fd = loop->backend.ops->fd(&loop->backend);
    if (backend_fd < 0) return backend_fd;
    int err = embed_open(loop, backend_fd);
    if (err < 0) return err;
    embed_arm(loop, embed_due(loop));
    return loop->embed_fd;
#else
    return -ENOTSUP;
#endif
}

EDDY_API int eddy_loop_run_once(eddy_loop *loop, int64_t timeout_ns)
{
    struct eddy_loop *previous;
    int err = loop_enter(loop, &previous);
    if (err < 0) return err;
    if (eddy__loop_alive(loop) || loop->embed_fd >= 0)
        err = loop_iterate_capped(loop, eddy__loop_alive(loop), timeout_ns < 0 ? -1 : timeout_ns,
                                  loop->embed_fd >= 0);
    /* What the tasks just queued goes to the kernel now, not at the next
     * iteration: a foreign loop waits on the descriptor meanwhile. */
    if (err == 0 && (loop->ops_in_flight || loop->backend.pending)) {
        int completed = loop->backend.ops->poll(&loop->backend, 0);
        if (completed < 0 && completed != -EINTR) err = completed;
    }
    loop_leave(loop, previous);
#if EDDY__EMBED_EPOLL || EDDY__EMBED_KQUEUE
    if (loop->embed_fd >= 0) embed_arm(loop, embed_due(loop));
#endif
    if (err < 0) return err;
    return eddy__loop_alive(loop) ? 1 : 0;
}

EDDY_API void eddy_loop_stop(eddy_loop *loop)
{
    if (loop && !eddy__loop_foreign(loop)) loop->stopping = true;
}

EDDY_API const char *eddy_loop_backend(const eddy_loop *loop)
{
    return loop ? loop->backend.ops->name : NULL;
}

EDDY_API eddy_loop *eddy_loop_current(void)
{
    return eddy__thread_loop;
}

EDDY_API int64_t eddy_now(eddy_loop *loop)
{
    if (!loop) loop = eddy__thread_loop;
    if (!loop) return -EINVAL;
    if (eddy__loop_foreign(loop)) return -EPERM;
    return eddy__loop_update_time(loop);
}

/* Cancels the live tasks and runs the loop until they and their ops end. */
static void loop_shutdown(struct eddy_loop *loop)
{
    struct eddy_loop *previous = eddy__thread_loop;
    eddy__thread_loop = loop;
    loop->running = true;
    while (loop->live_tasks) {
        eddy__task_cancel_all(loop);
        if (eddy__loop_iterate(loop, true) < 0) break;
    }
    /* Then what keeps ops in flight on its own: watches and signal watchers
     * still started (after the tasks, whose cleanup may stop them itself). */
    eddy__watches_stop_all(loop);
    eddy__signals_stop_all(loop);
    while (loop->live_tasks || loop->ops_in_flight) {
        eddy__task_cancel_all(loop);
        if (eddy__loop_iterate(loop, true) < 0) break;
    }
    loop->running = false;
    eddy__thread_loop = previous;
}

/* ---- callbacks ------------------------------------------------------------ */

struct eddy__callback {
    struct eddy__work work;
    struct eddy_loop *loop;
    eddy_callback cb;
    eddy_callback dropped; /* threadsafe posts: run instead of cb by a loop being freed */
    void *arg;
};

static void callback_run(struct eddy__work *w)
{
    struct eddy__callback *c = eddy__container_of(w, struct eddy__callback, work);
    eddy_callback cb = c->cb;
    void *arg = c->arg;
    struct eddy_loop *loop = c->loop;
    /* Recycle before the call: the callback may schedule another. */
    *(struct eddy__callback **)c = loop->callback_free;
    loop->callback_free = c;
    if (!loop->closing) cb(arg);
}

static struct eddy__callback *callback_new(struct eddy_loop *loop, eddy_callback cb, void *arg)
{
    struct eddy__callback *c = loop->callback_free;
    if (c)
        loop->callback_free = *(struct eddy__callback **)c;
    else if (!(c = malloc(sizeof(*c))))
        return NULL;
    else
        loop->stats.allocations++;
    c->work.run = callback_run;
    c->loop = loop;
    c->cb = cb;
    c->arg = arg;
    return c;
}

EDDY_API int eddy_call_soon(eddy_loop *loop, eddy_callback cb, void *arg)
{
    if (!loop || !cb) return -EINVAL;
    if (eddy__loop_foreign(loop)) return -EPERM;
    struct eddy__callback *c = callback_new(loop, cb, arg);
    if (!c) return -ENOMEM;
    eddy__loop_schedule(loop, &c->work);
    return 0;
}

/* Threadsafe callbacks are malloc'd (the freelist belongs to the loop thread)
 * and freed by the loop after they ran. */
static void remote_callback_run(struct eddy__work *w)
{
    struct eddy__callback *c = eddy__container_of(w, struct eddy__callback, work);
    eddy_callback cb = c->cb, dropped = c->dropped;
    void *arg = c->arg;
    bool closing = c->loop->closing;
    free(c);
    if (!closing)
        cb(arg);
    else if (dropped)
        dropped(arg);
}

int eddy__call_soon_threadsafe_or(struct eddy_loop *loop, eddy_callback cb, eddy_callback dropped,
                                  void *arg)
{
    if (!loop || !cb) return -EINVAL;
    struct eddy__callback *c = malloc(sizeof(*c));
    if (!c) return -ENOMEM;
    c->work.run = remote_callback_run;
    c->loop = loop;
    c->cb = cb;
    c->dropped = dropped;
    c->arg = arg;
    eddy__mutex_lock(&loop->remote_lock);
    eddy__list_push_back(&loop->remote, &c->work.link);
    bool was_pending = __atomic_exchange_n(&loop->remote_pending, 1, __ATOMIC_ACQ_REL);
    /* One wake per batch: the loop drains everything queued when it wakes.
     * Under the lock, as in eddy__loop_post_completion. */
    int err = was_pending ? 0 : loop->backend.ops->wake(&loop->backend);
    if (err < 0) { /* not posted after all: an error means nothing was queued */
        eddy__list_remove(&c->work.link);
        __atomic_store_n(&loop->remote_pending, 0, __ATOMIC_RELEASE);
    }
    eddy__mutex_unlock(&loop->remote_lock);
    if (err < 0) free(c);
    return err;
}

EDDY_API int eddy_call_soon_threadsafe(eddy_loop *loop, eddy_callback cb, void *arg)
{
    return eddy__call_soon_threadsafe_or(loop, cb, NULL, arg);
}

struct eddy_backend *eddy__thread_backend(void)
{
    return eddy__thread_loop ? &eddy__thread_loop->backend : NULL;
}

/* Drops queued work without running user code (the loop is being freed). */
static void drop_ready(struct eddy_loop *loop)
{
    drain_remote(loop);
    loop->closing = true;
    struct eddy__list *node;
    while ((node = eddy__list_pop_front(&loop->ready))) {
        struct eddy__work *w = eddy__container_of(node, struct eddy__work, link);
        w->run(w);
    }
}

EDDY_API void eddy_loop_free(eddy_loop *loop)
{
    if (!loop || __atomic_load_n(&loop->running, __ATOMIC_RELAXED)) return;
    /* The one call another thread may make: once the owner is done with the
     * loop (it has returned from eddy_loop_run), freeing takes it over. */
    __atomic_store_n(&loop->owner, eddy__thread_id(), __ATOMIC_RELAXED);
    eddy__registry_remove(loop);
    loop_shutdown(loop);
    drop_ready(loop);
    eddy__task_forget_loop(loop);
    eddy__futures_forget_loop(loop);
    eddy__groups_forget_loop(loop);
    eddy__timers_destroy(loop);
    /* A thread that posted the last completion may still be inside wake(). */
    eddy__mutex_lock(&loop->remote_lock);
    eddy__mutex_unlock(&loop->remote_lock);
    loop->backend.ops->free(&loop->backend); /* its buffer table goes with it */
    free(loop->bufs);
    eddy__task_cache_fit(loop, true);
    eddy__stack_pool_destroy(&loop->stacks);
    eddy__stall_stop(loop);
    struct eddy__callback *c;
    while ((c = loop->callback_free)) {
        loop->callback_free = *(struct eddy__callback **)c;
        free(c);
    }
    eddy__mutex_destroy(&loop->remote_lock);
#if EDDY__EMBED_EPOLL || EDDY__EMBED_KQUEUE
    if (loop->embed_fd >= 0) close(loop->embed_fd);
    if (loop->embed_timer >= 0) close(loop->embed_timer);
#endif
    free(loop);
}

EDDY_API int eddy_run(eddy_task_fn main, void *arg, intptr_t *result)
{
    if (!main) return -EINVAL;
    if (eddy__thread_loop) return -EBUSY;
    eddy_loop *loop;
    int err = eddy_loop_new(&loop, NULL);
    if (err < 0) return err;
    (void)loop_bind(loop);
    eddy_task *t = eddy_spawn(loop, main, arg);
    if (!t) {
        eddy_loop_free(loop);
        return -ENOMEM;
    }
    eddy__thread_loop = loop;
    loop->running = true;
    while (!eddy_future_done(&t->future) && err == 0)
        err = eddy__loop_iterate(loop, true);
    loop->running = false;
    eddy__thread_loop = NULL;
    loop_shutdown(loop);
    if (err == 0)
        err = eddy_task_join(t, result);
    else
        eddy_task_detach(t);
    eddy_loop_free(loop);
    return err;
}

void eddy__debug_report(struct eddy_loop *loop, const char *fmt, ...)
{
    (void)loop;
    va_list ap;
    va_start(ap, fmt);
    fputs("eddy: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}
