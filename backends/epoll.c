/* SPDX-License-Identifier: MIT */
/* The epoll backend: completions emulated over readiness (readiness.h holds
 * the emulation: fast path, per-fd queues, cancellation).
 *
 * An fd is registered once, edge-triggered for both directions, the first
 * time an op parks on it, so parking costs no epoll_ctl afterwards. An event
 * retries the parked ops of its direction in arrival order until one would
 * block again. */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "readiness.h"

#define DEFAULT_MAX_EVENTS 256

struct epoll_state {
    struct eddy__readiness rd; /* first: b->impl is also the readiness state */
    int epfd;
    int wakefd;               /* eventfd: wake() writes, poll() drains */
    atomic_bool wake_pending; /* a wake was written and not yet drained */
    int max_events;
    struct epoll_event events[];
};

/* Edge-triggered for both directions, once per fd: a parked op then costs no
 * epoll_ctl. Adding reports the fd's current readiness, so nothing that
 * became ready after the op's EAGAIN is missed. */
static int epoll_arm(struct eddy_backend *b, int fd, struct eddy__rd_fd *st, bool input)
{
    struct epoll_state *ep = b->impl;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.fd = fd};
    if (epoll_ctl(ep->epfd, EPOLL_CTL_ADD, fd, &ev) < 0 && errno != EEXIST) return -errno;
    st->armed = EDDY__RD_ARMED_IN | EDDY__RD_ARMED_OUT;
    return 0;
}

static void epoll_disarm(struct eddy_backend *b, int fd, struct eddy__rd_fd *st)
{
    struct epoll_state *ep = b->impl;
    epoll_ctl(ep->epfd, EPOLL_CTL_DEL, fd, NULL);
}

static const struct eddy__rd_hooks epoll_hooks = {.arm = epoll_arm, .disarm = epoll_disarm};

static bool epoll_handles(const struct eddy_backend *b, enum eddy_op_kind kind)
{
    return eddy__rd_handles(kind);
}

/* Rounds up: waking a little late is harmless, waking early spins. */
static int timeout_ms(int64_t timeout_ns)
{
    if (timeout_ns < 0) return -1;
    int64_t ms = timeout_ns / 1000000 + (timeout_ns % 1000000 != 0);
    return ms > INT_MAX ? INT_MAX : (int)ms;
}

/* Drained before wake_pending is cleared: a wake arriving in between skips
 * its write, but what it announced was queued before, and the loop looks at
 * its queues after this poll returns. */
static void drain_wake(struct epoll_state *ep)
{
    uint64_t count;
    ssize_t r;
    do {
        r = read(ep->wakefd, &count, sizeof count);
    } while (r < 0 && errno == EINTR);
    atomic_store(&ep->wake_pending, false);
}

static int handle_event(struct eddy_backend *b, const struct epoll_event *ev)
{
    struct epoll_state *ep = b->impl;
    if (ev->data.fd == ep->wakefd) {
        drain_wake(ep);
        return 0;
    }
    struct eddy__rd_fd *st = eddy__rd_fd_lookup(&ep->rd, ev->data.fd);
    if (!st) return 0;
    /* On an error or hangup both directions retry: the syscall reports it.
     * A hang-up stays: the end of the stream is read again and again. */
    if (ev->events & (EPOLLRDHUP | EPOLLHUP)) st->ended |= EDDY__RD_ARMED_IN;
    if (ev->events & EPOLLHUP) st->ended |= EDDY__RD_ARMED_OUT;
    int completed = 0;
    if (ev->events & (EPOLLIN | EPOLLRDHUP | EPOLLERR | EPOLLHUP))
        completed += eddy__rd_serve(b, st, true, 0);
    if (ev->events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) completed += eddy__rd_serve(b, st, false, 0);
    return completed;
}

/* What the events will touch went cold while the other descriptors were
 * served (each fd's state, the op parked first on it, in its task's frame):
 * asked for all at once before the first event is handled, the misses
 * overlap instead of coming one after the other. */
static void prefetch_events(struct epoll_state *ep, int n)
{
    for (int i = 0; i < n; i++)
        __builtin_prefetch(eddy__rd_fd_lookup(&ep->rd, ep->events[i].data.fd));
    for (int i = 0; i < n; i++) {
        struct eddy__rd_fd *st = eddy__rd_fd_lookup(&ep->rd, ep->events[i].data.fd);
        if (!st) continue;
        struct eddy__list *first =
            (ep->events[i].events & EPOLLIN) ? st->readers.next : st->writers.next;
        __builtin_prefetch(first);
        __builtin_prefetch(eddy__container_of(first, struct eddy_op, link));
    }
}

static int epoll_poll(struct eddy_backend *b, int64_t timeout_ns)
{
    struct epoll_state *ep = b->impl;
    int timeout = eddy__rd_has_deferred(&ep->rd) ? 0 : timeout_ms(timeout_ns);
    int n = epoll_wait(ep->epfd, ep->events, ep->max_events, timeout);
    if (n < 0) {
        if (errno != EINTR) return -errno;
        n = 0;
    }
    int completed = 0;
    if (n > 1) prefetch_events(ep, n);
    for (int i = 0; i < n; i++)
        completed += handle_event(b, &ep->events[i]);
    return completed + eddy__rd_complete_deferred(b);
}

/* Thread-safe. Only the first wake since the last drain writes: a burst of
 * wakes from other threads costs one syscall. */
static int epoll_wake(struct eddy_backend *b)
{
    struct epoll_state *ep = b->impl;
    if (atomic_exchange(&ep->wake_pending, true)) return 0;
    uint64_t one = 1;
    ssize_t r;
    do {
        r = write(ep->wakefd, &one, sizeof one);
    } while (r < 0 && errno == EINTR);
    if (r < 0 && errno != EAGAIN) { /* EAGAIN: the counter is full, a wake is due anyway */
        int err = -errno;
        atomic_store(&ep->wake_pending, false);
        return err;
    }
    return 0;
}

static void epoll_free(struct eddy_backend *b)
{
    struct epoll_state *ep = b->impl;
    if (!ep) return;
    close(ep->wakefd);
    close(ep->epfd);
    eddy__rd_destroy(&ep->rd);
    free(ep);
    b->impl = NULL;
}

static int epoll_init(struct eddy_backend *b, const eddy_loop_options *opts)
{
    int max_events = DEFAULT_MAX_EVENTS;
    if (opts && opts->queue_depth) max_events = opts->queue_depth < 4096 ? opts->queue_depth : 4096;
    struct epoll_state *ep = calloc(1, sizeof *ep + (size_t)max_events * sizeof ep->events[0]);
    if (!ep) return -ENOMEM;
    eddy__rd_init(&ep->rd, &epoll_hooks);
    ep->max_events = max_events;
    atomic_init(&ep->wake_pending, false);
    ep->wakefd = -1;
    int err = 0;
    ep->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (ep->epfd < 0) err = -errno;
    if (!err && (ep->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0) err = -errno;
    if (!err) {
        struct epoll_event ev = {.events = EPOLLIN, .data.fd = ep->wakefd};
        if (epoll_ctl(ep->epfd, EPOLL_CTL_ADD, ep->wakefd, &ev) < 0) err = -errno;
    }
    if (err) {
        if (ep->wakefd >= 0) close(ep->wakefd);
        if (ep->epfd >= 0) close(ep->epfd);
        free(ep);
        return err;
    }
    b->impl = ep;
    b->pending = 0;
    return 0;
}

/* The same on every Linux: nothing here depends on the kernel's version. */
static eddy_support epoll_supports(const struct eddy_backend *b, eddy_cap cap)
{
    switch (cap) {
    case EDDY_CAP_TCP:
    case EDDY_CAP_UDP:
    case EDDY_CAP_UNIX_SOCKETS:
    case EDDY_CAP_TIMERS: /* the loop's timers, as epoll_wait's timeout */
    case EDDY_CAP_CANCEL:
    case EDDY_CAP_WAKEUP:   /* the eventfd */
    case EDDY_CAP_WATCH_FD: /* the same readiness as eddy's own sockets */
    case EDDY_CAP_SIGNALS:  /* lib/signal.c's pipe, polled as a watched fd */
    case EDDY_CAP_SENDFILE: /* sendfile(2) on writability (lib/sendfile.c) */
        return EDDY_NATIVE;
    case EDDY_CAP_FILE_IO: /* handles() sends file ops to the thread pool */
    case EDDY_CAP_DNS:     /* getaddrinfo in the thread pool */
        return EDDY_EMULATED;
    case EDDY_CAP_SUBPROCESS: /* posix_spawn; exits through a pidfd, polled */
        return eddy__subprocess_support();
    default: /* zero-copy send: not
                implemented yet; multishot ops and buffer rings: io_uring only */
        return EDDY_NONE;
    }
}

/* The descriptor a foreign loop polls to embed this one (eddy_loop_fd). */
static intptr_t epoll_fd(const struct eddy_backend *b)
{
    return ((const struct epoll_state *)b->impl)->epfd;
}

const struct eddy_backend_ops eddy__epoll_backend = {
    .name = "epoll",
    .init = epoll_init,
    .free = epoll_free,
    .submit = eddy__rd_submit,
    .cancel = eddy__rd_cancel,
    .poll = epoll_poll,
    .wake = epoll_wake,
    .handles = epoll_handles,
    .supports = epoll_supports,
    .fd = epoll_fd,
};
