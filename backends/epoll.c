/* The epoll backend: completions emulated over readiness (DESIGN.md section 2).
 *
 * submit() tries the syscall at once (the fast path); only when it would block
 * is the op parked on its fd's reader or writer queue. The fd is registered
 * once, edge-triggered for both directions, the first time an op parks on it,
 * so parking costs no epoll_ctl afterwards. An event retries the parked ops of
 * its direction in arrival order until one would block again.
 *
 * Completions happen only inside poll(): cancelled ops, and ops still parked on
 * an fd being closed, wait on a deferred list that poll() completes with
 * -ECANCELED. File ops and EDDY_OP_WORK are not ours (handles() says so): lib/
 * sends them to the thread pool. */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "backend.h"

#define DEFAULT_MAX_EVENTS 256
#define MIN_FD_TABLE       64

/* op->backend_data bits */
enum {
    OP_PARKED = 1 << 0,     /* on its fd's reader or writer queue */
    OP_DEFERRED = 1 << 1,   /* on the deferred list, to complete with -ECANCELED */
    OP_CONNECTING = 1 << 2, /* connect() said EINPROGRESS: wait for writability */
};

/* What try_op() returns when the syscall would block: park, or stay parked. */
#define WOULD_BLOCK INT64_MIN

#define RETRY_EINTR(r, call)                                                                       \
    do {                                                                                           \
        (r) = (call);                                                                              \
    } while ((r) < 0 && errno == EINTR)

struct fd_state {
    struct eddy__list readers; /* ACCEPT, RECV, RECVMSG waiting for input */
    struct eddy__list writers; /* CONNECT, SEND, SENDMSG waiting for output */
    bool registered;           /* in the epoll set */
};

struct epoll_state {
    int epfd;
    int wakefd;               /* eventfd: wake() writes, poll() drains */
    atomic_bool wake_pending; /* a wake was written and not yet drained */
    struct fd_state *fds;     /* indexed by fd, grown on demand */
    size_t fd_count;
    struct eddy__list deferred; /* ops to complete with -ECANCELED */
    int max_events;
    struct epoll_event events[];
};

static bool is_socket_kind(unsigned kind)
{
    return kind >= EDDY_OP_ACCEPT && kind <= EDDY_OP_CLOSE;
}

static bool waits_for_input(unsigned kind)
{
    return kind == EDDY_OP_ACCEPT || kind == EDDY_OP_RECV || kind == EDDY_OP_RECVMSG;
}

static int64_t syscall_result(ssize_t r)
{
    if (r >= 0) return r;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return WOULD_BLOCK;
    return -errno;
}

/* ---- the syscalls --------------------------------------------------------- */

static int64_t try_accept(struct eddy_op *op)
{
    int fd;
    /* A connection reset before we took it is the peer's business, not the
     * listener's: look for the next one. */
    do {
        fd =
            accept4((int)op->fd, op->u.addr.addr, op->u.addr.addrlen, SOCK_NONBLOCK | SOCK_CLOEXEC);
    } while (fd < 0 && (errno == EINTR || errno == ECONNABORTED));
    return syscall_result(fd);
}

/* Whether a connect that said EINPROGRESS has finished, and how. */
static int64_t connect_outcome(struct eddy_op *op)
{
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt((int)op->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) return -errno;
    if (err != 0) return -err;
    /* SO_ERROR is 0 both when connected and while still connecting. */
    struct sockaddr_storage peer;
    socklen_t peer_len = sizeof peer;
    if (getpeername((int)op->fd, (struct sockaddr *)&peer, &peer_len) == 0) return 0;
    return errno == ENOTCONN ? WOULD_BLOCK : -errno;
}

static int64_t try_connect(struct eddy_op *op)
{
    if (op->backend_data & OP_CONNECTING) return connect_outcome(op);
    if (connect((int)op->fd, op->u.addr.addr, op->u.addr.addrlen_value) == 0) return 0;
    /* An interrupted connect carries on asynchronously, as EINPROGRESS does.
     * EAGAIN (a full Unix-socket backlog) is reported, not waited on: no
     * readiness edge would tell us to try again. */
    if (errno == EINPROGRESS || errno == EINTR) {
        op->backend_data |= OP_CONNECTING;
        return WOULD_BLOCK;
    }
    return -errno;
}

/* One attempt at a socket op: its result, or WOULD_BLOCK. MSG_DONTWAIT keeps a
 * socket left in blocking mode from stalling the loop; MSG_NOSIGNAL turns
 * SIGPIPE into -EPIPE. */
static int64_t try_op(struct eddy_op *op)
{
    int fd = (int)op->fd;
    ssize_t r;
    switch (op->kind) {
    case EDDY_OP_ACCEPT:
        return try_accept(op);
    case EDDY_OP_CONNECT:
        return try_connect(op);
    case EDDY_OP_RECV:
        RETRY_EINTR(r, recv(fd, op->u.io.buf, op->u.io.len, op->u.io.flags | MSG_DONTWAIT));
        break;
    case EDDY_OP_SEND:
        RETRY_EINTR(
            r, send(fd, op->u.io.buf, op->u.io.len, op->u.io.flags | MSG_DONTWAIT | MSG_NOSIGNAL));
        break;
    case EDDY_OP_RECVMSG:
        RETRY_EINTR(r, recvmsg(fd, op->u.msg.msg, op->u.msg.flags | MSG_DONTWAIT));
        break;
    case EDDY_OP_SENDMSG:
        RETRY_EINTR(r, sendmsg(fd, op->u.msg.msg, op->u.msg.flags | MSG_DONTWAIT | MSG_NOSIGNAL));
        break;
    case EDDY_OP_SHUTDOWN:
        RETRY_EINTR(r, shutdown(fd, op->u.io.flags));
        return r < 0 ? -errno : 0;
    default:
        return -ENOTSUP;
    }
    return syscall_result(r);
}

/* ---- per-fd state --------------------------------------------------------- */

static struct fd_state *fd_lookup(struct epoll_state *ep, int fd)
{
    return (size_t)fd < ep->fd_count ? &ep->fds[fd] : NULL;
}

/* Makes room for fd. The queues are moved by splicing, so the ops parked on
 * them keep valid links. 0 or -ENOMEM. */
static int fd_table_grow(struct epoll_state *ep, int fd)
{
    size_t count = ep->fd_count ? ep->fd_count : MIN_FD_TABLE;
    while (count <= (size_t)fd)
        count *= 2;
    struct fd_state *fds = calloc(count, sizeof *fds);
    if (!fds) return -ENOMEM;
    for (size_t i = 0; i < count; i++) {
        eddy__list_init(&fds[i].readers);
        eddy__list_init(&fds[i].writers);
    }
    for (size_t i = 0; i < ep->fd_count; i++) {
        eddy__list_splice(&fds[i].readers, &ep->fds[i].readers);
        eddy__list_splice(&fds[i].writers, &ep->fds[i].writers);
        fds[i].registered = ep->fds[i].registered;
    }
    free(ep->fds);
    ep->fds = fds;
    ep->fd_count = count;
    return 0;
}

/* Edge-triggered for both directions, once per fd: a parked op then costs no
 * epoll_ctl. Adding reports the fd's current readiness, so nothing that
 * became ready after the op's EAGAIN is missed. */
static int fd_register(struct epoll_state *ep, int fd, struct fd_state *st)
{
    if (st->registered) return 0;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.fd = fd};
    if (epoll_ctl(ep->epfd, EPOLL_CTL_ADD, fd, &ev) < 0 && errno != EEXIST) return -errno;
    st->registered = true;
    return 0;
}

/* ---- completing ----------------------------------------------------------- */

static int finish_now(struct eddy_op *op, int64_t result)
{
    op->result = result;
    op->state = EDDY_OP_STATE_DONE;
    return EDDY_OP_DONE;
}

static void defer_cancel(struct epoll_state *ep, struct eddy_op *op)
{
    op->backend_data = OP_DEFERRED;
    op->state = EDDY_OP_STATE_CANCELLING;
    eddy__list_push_back(&ep->deferred, &op->link);
}

static void defer_queue(struct epoll_state *ep, struct eddy__list *queue)
{
    struct eddy__list *node;
    while ((node = eddy__list_pop_front(queue)))
        defer_cancel(ep, eddy__container_of(node, struct eddy_op, link));
}

/* A new fd's number was free until now: any state kept under it belongs to a
 * closed file (one closed without EDDY_OP_CLOSE), so forget it. */
static void forget_stale(struct epoll_state *ep, int64_t fd)
{
    struct fd_state *st = fd >= 0 ? fd_lookup(ep, (int)fd) : NULL;
    if (st && eddy__list_empty(&st->readers) && eddy__list_empty(&st->writers))
        st->registered = false;
}

/* Retries the ops parked on queue, oldest first, until one would block. */
static int serve_queue(struct eddy_backend *b, struct eddy__list *queue)
{
    int completed = 0;
    while (!eddy__list_empty(queue)) {
        struct eddy_op *op = eddy__container_of(queue->next, struct eddy_op, link);
        int64_t result = try_op(op);
        if (result == WOULD_BLOCK) break;
        eddy__list_remove(&op->link);
        op->backend_data = 0;
        if (op->kind == EDDY_OP_ACCEPT) forget_stale(b->impl, result);
        eddy__op_finish(b, op, result);
        completed++;
    }
    return completed;
}

static int complete_deferred(struct eddy_backend *b)
{
    struct epoll_state *ep = b->impl;
    int completed = 0;
    struct eddy__list *node;
    while ((node = eddy__list_pop_front(&ep->deferred))) {
        struct eddy_op *op = eddy__container_of(node, struct eddy_op, link);
        op->backend_data = 0;
        eddy__op_finish(b, op, -ECANCELED);
        completed++;
    }
    return completed;
}

/* ---- the ops table -------------------------------------------------------- */

static bool epoll_handles(const struct eddy_backend *b, enum eddy_op_kind kind)
{
    return is_socket_kind(kind);
}

/* Drops fd from epoll and from our table before closing it (the number may be
 * reused at once); what was parked on it ends with -ECANCELED. */
static int64_t close_fd(struct epoll_state *ep, int fd)
{
    struct fd_state *st = fd_lookup(ep, fd);
    if (st) {
        if (st->registered) epoll_ctl(ep->epfd, EPOLL_CTL_DEL, fd, NULL);
        st->registered = false;
        defer_queue(ep, &st->readers);
        defer_queue(ep, &st->writers);
    }
    /* Linux releases the fd even when close is interrupted: never retry. */
    if (close(fd) < 0 && errno != EINTR) return -errno;
    return 0;
}

static int park(struct eddy_backend *b, struct eddy_op *op)
{
    struct epoll_state *ep = b->impl;
    int fd = (int)op->fd;
    if ((size_t)fd >= ep->fd_count && fd_table_grow(ep, fd) < 0) return -ENOMEM;
    struct fd_state *st = &ep->fds[fd];
    int err = fd_register(ep, fd, st);
    if (err < 0) return finish_now(op, err);
    eddy__list_push_back(waits_for_input(op->kind) ? &st->readers : &st->writers, &op->link);
    op->backend_data |= OP_PARKED;
    op->state = EDDY_OP_STATE_IN_FLIGHT;
    b->pending++;
    return EDDY_OP_PENDING;
}

static int epoll_submit(struct eddy_backend *b, struct eddy_op *op)
{
    struct epoll_state *ep = b->impl;
    if (!is_socket_kind(op->kind)) return -ENOTSUP;
    if (op->fd < 0 || op->fd > INT_MAX) return finish_now(op, -EBADF);
    op->backend_data = 0;
    if (op->kind == EDDY_OP_CLOSE) return finish_now(op, close_fd(ep, (int)op->fd));
    if (op->kind == EDDY_OP_SHUTDOWN) return finish_now(op, try_op(op));

    /* Ops already parked in this direction go first: arrival order. */
    struct fd_state *st = fd_lookup(ep, (int)op->fd);
    struct eddy__list *queue = NULL;
    if (st) queue = waits_for_input(op->kind) ? &st->readers : &st->writers;
    if (!queue || eddy__list_empty(queue)) {
        int64_t result = try_op(op);
        if (result != WOULD_BLOCK) {
            if (op->kind == EDDY_OP_ACCEPT) forget_stale(ep, result);
            return finish_now(op, result);
        }
    }
    return park(b, op);
}

/* Only asks: the op completes from the next poll(). An op that is not parked
 * has completed already or is waiting on the deferred list. */
static void epoll_cancel(struct eddy_backend *b, struct eddy_op *op)
{
    if (!is_socket_kind(op->kind) || !(op->backend_data & OP_PARKED)) return;
    eddy__list_remove(&op->link);
    defer_cancel(b->impl, op);
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
    RETRY_EINTR(r, read(ep->wakefd, &count, sizeof count));
    atomic_store(&ep->wake_pending, false);
}

static int handle_event(struct eddy_backend *b, const struct epoll_event *ev)
{
    struct epoll_state *ep = b->impl;
    if (ev->data.fd == ep->wakefd) {
        drain_wake(ep);
        return 0;
    }
    struct fd_state *st = fd_lookup(ep, ev->data.fd);
    if (!st) return 0;
    /* On an error or hangup both directions retry: the syscall reports it. */
    int completed = 0;
    if (ev->events & (EPOLLIN | EPOLLRDHUP | EPOLLERR | EPOLLHUP))
        completed += serve_queue(b, &st->readers);
    if (ev->events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) completed += serve_queue(b, &st->writers);
    return completed;
}

static int epoll_poll(struct eddy_backend *b, int64_t timeout_ns)
{
    struct epoll_state *ep = b->impl;
    int timeout = eddy__list_empty(&ep->deferred) ? timeout_ms(timeout_ns) : 0;
    int n = epoll_wait(ep->epfd, ep->events, ep->max_events, timeout);
    if (n < 0) {
        if (errno != EINTR) return -errno;
        n = 0;
    }
    int completed = 0;
    for (int i = 0; i < n; i++)
        completed += handle_event(b, &ep->events[i]);
    return completed + complete_deferred(b);
}

/* Thread-safe. Only the first wake since the last drain writes: a burst of
 * wakes from other threads costs one syscall. */
static int epoll_wake(struct eddy_backend *b)
{
    struct epoll_state *ep = b->impl;
    if (atomic_exchange(&ep->wake_pending, true)) return 0;
    uint64_t one = 1;
    ssize_t r;
    RETRY_EINTR(r, write(ep->wakefd, &one, sizeof one));
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
    free(ep->fds);
    free(ep);
    b->impl = NULL;
}

static int epoll_init(struct eddy_backend *b, const eddy_loop_options *opts)
{
    int max_events = DEFAULT_MAX_EVENTS;
    if (opts && opts->queue_depth) max_events = opts->queue_depth < 4096 ? opts->queue_depth : 4096;
    struct epoll_state *ep = calloc(1, sizeof *ep + (size_t)max_events * sizeof ep->events[0]);
    if (!ep) return -ENOMEM;
    ep->max_events = max_events;
    eddy__list_init(&ep->deferred);
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
    case EDDY_CAP_WAKEUP: /* the eventfd */
        return EDDY_NATIVE;
    case EDDY_CAP_FILE_IO: /* handles() sends file ops to the thread pool */
    case EDDY_CAP_DNS:     /* getaddrinfo in the thread pool */
        return EDDY_EMULATED;
    default: /* watch_fd, signals, subprocess, zero-copy send, sendfile: not
                implemented yet; multishot ops and buffer rings: io_uring only */
        return EDDY_NONE;
    }
}

const struct eddy_backend_ops eddy__epoll_backend = {
    .name = "epoll",
    .init = epoll_init,
    .free = epoll_free,
    .submit = epoll_submit,
    .cancel = epoll_cancel,
    .poll = epoll_poll,
    .wake = epoll_wake,
    .handles = epoll_handles,
    .supports = epoll_supports,
};
