/* SPDX-License-Identifier: MIT */
/* Completions over readiness: the fast path, the per-fd queues of parked ops
 * and the deferred list (readiness.h). Nothing here knows epoll or kqueue. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "readiness.h"

#define MIN_FD_TABLE 64

/* op->backend_data bits */
enum {
    OP_PARKED = 1 << 0,     /* on its fd's reader or writer queue */
    OP_DEFERRED = 1 << 1,   /* on the deferred list, to complete with -ECANCELED */
    OP_CONNECTING = 1 << 2, /* connect() said EINPROGRESS: wait for writability */
};

/* What try_op() returns when the syscall would block: park, or stay parked. */
#define WOULD_BLOCK INT64_MIN

/* Without MSG_NOSIGNAL (macOS), sockets carry SO_NOSIGPIPE instead: lib/net.c
 * sets it on the sockets it opens, accept() below on the ones it takes. */
#ifndef MSG_NOSIGNAL
#define MSG_NOSIGNAL 0
#endif

#define RETRY_EINTR(r, call)                                                                       \
    do {                                                                                           \
        (r) = (call);                                                                              \
    } while ((r) < 0 && errno == EINTR)

static bool waits_for_input(const struct eddy_op *op)
{
    unsigned kind = op->kind;
    return kind == EDDY_OP_ACCEPT || kind == EDDY_OP_RECV || kind == EDDY_OP_RECVMSG ||
           (kind == EDDY_OP_POLL && op->u.io.flags == EDDY_READABLE);
}

static uint8_t direction_bit(bool input)
{
    return input ? EDDY__RD_ARMED_IN : EDDY__RD_ARMED_OUT;
}

static int64_t syscall_result(ssize_t r)
{
    if (r >= 0) return r;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return WOULD_BLOCK;
    return -errno;
}

/* ---- the syscalls --------------------------------------------------------- */

/* accept, the new fd nonblocking and close-on-exec (and, where there is no
 * MSG_NOSIGNAL, without SIGPIPE). */
static int accept_nonblocking(int fd, struct sockaddr *addr, socklen_t *addrlen)
{
#if HAVE_ACCEPT4
    return accept4(fd, addr, addrlen, SOCK_NONBLOCK | SOCK_CLOEXEC);
#else
    int s = accept(fd, addr, addrlen);
    if (s < 0) return s;
    int flags = fcntl(s, F_GETFL);
    if (flags < 0 || fcntl(s, F_SETFL, flags | O_NONBLOCK) < 0 ||
        fcntl(s, F_SETFD, FD_CLOEXEC) < 0) {
        int err = errno;
        close(s);
        errno = err;
        return -1;
    }
#ifdef SO_NOSIGPIPE
    int one = 1;
    (void)setsockopt(s, SOL_SOCKET, SO_NOSIGPIPE, &one, sizeof one);
#endif
    return s;
#endif
}

static int64_t try_accept(struct eddy_op *op)
{
    int fd;
    /* A connection reset before we took it is the peer's business, not the
     * listener's: look for the next one. */
    do {
        fd = accept_nonblocking((int)op->fd, op->u.addr.addr, op->u.addr.addrlen);
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

/* Whether a descriptor eddy may know nothing about is ready now: someone
 * else reads it, so a readiness report seen earlier proves nothing. An error
 * or hang-up counts as ready: the owner's next call reports it. */
static int64_t try_poll(struct eddy_op *op)
{
    short want = op->u.io.flags == EDDY_READABLE ? POLLIN : POLLOUT;
    struct pollfd p = {.fd = (int)op->fd, .events = want};
    int r;
    RETRY_EINTR(r, poll(&p, 1, 0));
    if (r < 0) return -errno;
    if (p.revents & POLLNVAL) return -EBADF;
    if (p.revents & (want | POLLERR | POLLHUP)) return op->u.io.flags;
    return WOULD_BLOCK;
}

/* write(2) to a pipe without SIGPIPE: a FIFO whose reader is gone gives
 * EPIPE and no signal. SIGPIPE is blocked in this thread around the write;
 * the one the write raised (directed at this thread, so pending here) is
 * taken back before the mask is restored, unless one was pending before. */
static ssize_t write_nosigpipe(int fd, const void *buf, size_t len)
{
    sigset_t pipe_only, old, pending;
    sigemptyset(&pipe_only);
    sigaddset(&pipe_only, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_only, &old);
    bool was_pending = sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE);
    ssize_t r;
    RETRY_EINTR(r, write(fd, buf, len));
    int err = errno;
    int sig;
    if (r < 0 && err == EPIPE && !was_pending && sigpending(&pending) == 0 &&
        sigismember(&pending, SIGPIPE))
        sigwait(&pipe_only, &sig);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    errno = err;
    return r;
}

/* One attempt at a socket op: its result, or WOULD_BLOCK. MSG_DONTWAIT keeps a
 * socket left in blocking mode from stalling the loop; MSG_NOSIGNAL turns
 * SIGPIPE into -EPIPE. EDDY_OP_F_PIPE: RECV and SEND on a non-blocking FIFO
 * or terminal, through read and write. */
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
        if (op->flags & EDDY_OP_F_PIPE)
            RETRY_EINTR(r, read(fd, op->u.io.buf, op->u.io.len));
        else
            RETRY_EINTR(r, recv(fd, op->u.io.buf, op->u.io.len, op->u.io.flags | MSG_DONTWAIT));
        break;
    case EDDY_OP_SEND:
        if (op->flags & EDDY_OP_F_PIPE) {
            r = write_nosigpipe(fd, op->u.io.buf, op->u.io.len);
            break;
        }
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
    case EDDY_OP_POLL:
        return try_poll(op);
    default:
        return -ENOTSUP;
    }
    return syscall_result(r);
}

/* Whether op's result shows its fd has nothing more in op's direction for
 * now: it would block, or a read of a stream socket took less than asked
 * (the socket is empty: a datagram socket, a terminal or a peek says
 * nothing about the rest), or a send took less than offered (the buffer is
 * full). The end of a stream (0) and errors stay: they are reported again
 * at once, and no new edge would come for them. A poll never uses anything
 * up: it may watch a descriptor eddy does not read. */
static bool used_up(const struct eddy_op *op, int64_t result)
{
    if (result == WOULD_BLOCK) return op->kind != EDDY_OP_POLL;
    if (result <= 0) return false;
    switch (op->kind) {
    case EDDY_OP_RECV:
        return (op->flags & EDDY_OP_F_STREAM) && !(op->u.io.flags & (MSG_PEEK | MSG_OOB)) &&
               (uint64_t)result < op->u.io.len;
    case EDDY_OP_SEND:
        return (uint64_t)result < op->u.io.len;
    default:
        return false;
    }
}

/* try_op, and the socket error a backend reported for fd where the syscall
 * no longer sees it (eddy__rd_serve). An error the syscall returns itself is
 * that one: it is delivered once. Clears fd's ready bit in op's direction
 * when the result says it is used up. */
static int64_t attempt(struct eddy__rd_fd *st, struct eddy_op *op, bool input)
{
    int64_t result = try_op(op);
    if (!st) return result;
    if (st->error) {
        /* A poll only says "look": the error stays for the call that follows. */
        if (op->kind == EDDY_OP_POLL) return result == WOULD_BLOCK ? op->u.io.flags : result;
        bool nothing = result == WOULD_BLOCK ||
                       (result == 0 && (op->kind == EDDY_OP_RECV || op->kind == EDDY_OP_RECVMSG));
        if (nothing) result = -st->error;
        if (nothing || result < 0) st->error = 0;
    }
    uint8_t bit = direction_bit(input);
    if (used_up(op, result) && !(st->ended & bit)) st->ready &= (uint8_t)~bit;
    return result;
}

/* Whether fd is known to have nothing for an op in this direction: the
 * direction is armed (a report will come) and nothing was reported since it
 * was used up. A connect must make its call, a poll must ask. */
static bool known_not_ready(const struct eddy__rd_fd *st, const struct eddy_op *op, bool input)
{
    uint8_t bit = direction_bit(input);
    return st && (st->armed & bit) && !(st->ready & bit) && op->kind != EDDY_OP_POLL &&
           op->kind != EDDY_OP_CONNECT;
}

/* ---- per-fd state --------------------------------------------------------- */

struct eddy__rd_fd *eddy__rd_fd_lookup(struct eddy__readiness *rd, intptr_t fd)
{
    return fd >= 0 && (size_t)fd < rd->fd_count ? &rd->fds[fd] : NULL;
}

/* Makes room for fd. The queues are moved by splicing, so the ops parked on
 * them keep valid links. 0 or -ENOMEM. */
static int fd_table_grow(struct eddy__readiness *rd, int fd)
{
    size_t count = rd->fd_count ? rd->fd_count : MIN_FD_TABLE;
    while (count <= (size_t)fd)
        count *= 2;
    struct eddy__rd_fd *fds = calloc(count, sizeof *fds);
    if (!fds) return -ENOMEM;
    for (size_t i = 0; i < count; i++) {
        eddy__list_init(&fds[i].readers);
        eddy__list_init(&fds[i].writers);
    }
    for (size_t i = 0; i < rd->fd_count; i++) {
        eddy__list_splice(&fds[i].readers, &rd->fds[i].readers);
        eddy__list_splice(&fds[i].writers, &rd->fds[i].writers);
        fds[i].armed = rd->fds[i].armed;
        fds[i].ready = rd->fds[i].ready;
        fds[i].ended = rd->fds[i].ended;
        fds[i].error = rd->fds[i].error;
    }
    free(rd->fds);
    rd->fds = fds;
    rd->fd_count = count;
    return 0;
}

static struct eddy__list *queue_of(struct eddy__rd_fd *st, bool input)
{
    return input ? &st->readers : &st->writers;
}

/* ---- completing ----------------------------------------------------------- */

static int finish_now(struct eddy_op *op, int64_t result)
{
    op->result = result;
    op->state = EDDY_OP_STATE_DONE;
    return EDDY_OP_DONE;
}

static void defer_cancel(struct eddy__readiness *rd, struct eddy_op *op)
{
    op->backend_data = OP_DEFERRED;
    op->state = EDDY_OP_STATE_CANCELLING;
    eddy__list_push_back(&rd->deferred, &op->link);
}

static void defer_queue(struct eddy__readiness *rd, struct eddy__list *queue)
{
    struct eddy__list *node;
    while ((node = eddy__list_pop_front(queue)))
        defer_cancel(rd, eddy__container_of(node, struct eddy_op, link));
}

/* A new fd's number was free until now: any state kept under it belongs to a
 * closed file (one closed without EDDY_OP_CLOSE), so forget it. */
static void forget_stale(struct eddy__readiness *rd, int64_t fd)
{
    struct eddy__rd_fd *st = eddy__rd_fd_lookup(rd, fd);
    if (st && eddy__list_empty(&st->readers) && eddy__list_empty(&st->writers)) {
        st->armed = 0;
        st->ready = 0;
        st->ended = 0;
        st->error = 0;
    }
}

static void finish_parked(struct eddy_backend *b, struct eddy_op *op, int64_t result)
{
    eddy__list_remove(&op->link);
    op->backend_data = 0;
    eddy__op_finish(b, op, result);
}

int eddy__rd_serve(struct eddy_backend *b, struct eddy__rd_fd *st, bool input, int error)
{
    struct eddy__list *queue = queue_of(st, input);
    uint8_t bit = direction_bit(input);
    if (error) st->error = error;
    st->ready |= bit;
    int completed = 0;
    /* Until an op uses the readiness up: the next ones wait for the next report. */
    while (!eddy__list_empty(queue) && (st->ready & bit)) {
        struct eddy_op *op = eddy__container_of(queue->next, struct eddy_op, link);
        int64_t result = attempt(st, op, input);
        if (result == WOULD_BLOCK) break;
        if (op->kind == EDDY_OP_ACCEPT) forget_stale(b->impl, result);
        finish_parked(b, op, result);
        completed++;
    }
    return completed;
}

int eddy__rd_serve_all(struct eddy_backend *b)
{
    struct eddy__readiness *rd = b->impl;
    int completed = 0;
    for (size_t fd = 0; fd < rd->fd_count; fd++) {
        struct eddy__rd_fd *st = &rd->fds[fd];
        completed += eddy__rd_serve(b, st, true, 0) + eddy__rd_serve(b, st, false, 0);
    }
    return completed;
}

int eddy__rd_fail(struct eddy_backend *b, struct eddy__rd_fd *st, bool input, int err)
{
    struct eddy__list *queue = queue_of(st, input);
    int completed = 0;
    while (!eddy__list_empty(queue)) {
        finish_parked(b, eddy__container_of(queue->next, struct eddy_op, link), err);
        completed++;
    }
    return completed;
}

bool eddy__rd_has_deferred(const struct eddy__readiness *rd)
{
    return !eddy__list_empty(&rd->deferred);
}

int eddy__rd_complete_deferred(struct eddy_backend *b)
{
    struct eddy__readiness *rd = b->impl;
    int completed = 0;
    struct eddy__list *node;
    while ((node = eddy__list_pop_front(&rd->deferred))) {
        struct eddy_op *op = eddy__container_of(node, struct eddy_op, link);
        op->backend_data = 0;
        eddy__op_finish(b, op, -ECANCELED);
        completed++;
    }
    return completed;
}

/* ---- submit and cancel ---------------------------------------------------- */

bool eddy__rd_handles(enum eddy_op_kind kind)
{
    return (kind >= EDDY_OP_ACCEPT && kind <= EDDY_OP_CLOSE) || kind == EDDY_OP_POLL;
}

/* Stops watching fd before closing it (the number may be reused at once);
 * what was parked on it ends with -ECANCELED. */
static int64_t close_fd(struct eddy_backend *b, int fd)
{
    struct eddy__readiness *rd = b->impl;
    struct eddy__rd_fd *st = eddy__rd_fd_lookup(rd, fd);
    if (st) {
        if (st->armed) rd->hooks->disarm(b, fd, st);
        st->armed = 0;
        st->ready = 0;
        st->ended = 0;
        st->error = 0;
        defer_queue(rd, &st->readers);
        defer_queue(rd, &st->writers);
    }
    /* Linux releases the fd even when close is interrupted, and so do the
     * BSDs except in rare cases: never retry, a retry could close a reused
     * number. */
    if (close(fd) < 0 && errno != EINTR) return -errno;
    return 0;
}

static int park(struct eddy_backend *b, struct eddy_op *op)
{
    struct eddy__readiness *rd = b->impl;
    int fd = (int)op->fd;
    bool input = waits_for_input(op);
    uint8_t bit = direction_bit(input);
    if ((size_t)fd >= rd->fd_count && fd_table_grow(rd, fd) < 0) return -ENOMEM;
    struct eddy__rd_fd *st = &rd->fds[fd];
    /* A foreign descriptor may have been closed and its number reused behind
     * eddy's back, which the backend forgets silently: a poll always arms. */
    if (op->kind == EDDY_OP_POLL || !(st->armed & bit)) {
        uint8_t before = st->armed;
        int err = rd->hooks->arm(b, fd, st, input);
        if (err < 0) return finish_now(op, err);
        /* What is armed now starts unknown (ready: try), except this
         * direction, which just said it would block. */
        uint8_t armed_now = st->armed & (uint8_t)~before;
        st->ready = (uint8_t)((st->ready | armed_now) & ~(armed_now & bit));
    }
    eddy__list_push_back(queue_of(st, input), &op->link);
    op->backend_data |= OP_PARKED;
    op->state = EDDY_OP_STATE_IN_FLIGHT;
    b->pending++;
    return EDDY_OP_PENDING;
}

int eddy__rd_submit(struct eddy_backend *b, struct eddy_op *op)
{
    struct eddy__readiness *rd = b->impl;
    if (!eddy__rd_handles(op->kind)) return -ENOTSUP;
    if (op->fd < 0 || op->fd > INT_MAX) return finish_now(op, -EBADF);
    op->backend_data = 0;
    if (op->kind == EDDY_OP_CLOSE) return finish_now(op, close_fd(b, (int)op->fd));
    if (op->kind == EDDY_OP_SHUTDOWN) return finish_now(op, try_op(op));

    /* A connect makes a new socket's first readiness: what was remembered
     * under its number belongs to a file closed behind eddy's back. */
    if (op->kind == EDDY_OP_CONNECT) forget_stale(rd, op->fd);
    /* Ops already parked in this direction go first (arrival order); an fd
     * known to have nothing in it parks the op without a syscall. */
    bool input = waits_for_input(op);
    struct eddy__rd_fd *st = eddy__rd_fd_lookup(rd, op->fd);
    if ((!st || eddy__list_empty(queue_of(st, input))) && !known_not_ready(st, op, input)) {
        int64_t result = attempt(st, op, input);
        if (result != WOULD_BLOCK) {
            if (op->kind == EDDY_OP_ACCEPT) forget_stale(rd, result);
            return finish_now(op, result);
        }
    }
    return park(b, op);
}

/* Only asks: the op completes from the next poll(). An op that is not parked
 * has completed already or is waiting on the deferred list. */
void eddy__rd_cancel(struct eddy_backend *b, struct eddy_op *op)
{
    if (!eddy__rd_handles(op->kind) || !(op->backend_data & OP_PARKED)) return;
    eddy__list_remove(&op->link);
    defer_cancel(b->impl, op);
}

void eddy__rd_init(struct eddy__readiness *rd, const struct eddy__rd_hooks *hooks)
{
    rd->hooks = hooks;
    rd->fds = NULL;
    rd->fd_count = 0;
    eddy__list_init(&rd->deferred);
}

void eddy__rd_destroy(struct eddy__readiness *rd)
{
    free(rd->fds);
    rd->fds = NULL;
    rd->fd_count = 0;
}
