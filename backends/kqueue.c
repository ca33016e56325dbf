/* SPDX-License-Identifier: MIT */
/* The kqueue backend (macOS, the BSDs; Linux through libkqueue): completions
 * emulated over readiness, as on epoll (readiness.h holds the emulation: fast
 * path, per-fd queues, cancellation).
 *
 * - Each direction of an fd is armed once, the first time an op parks in it:
 *   EVFILT_READ or EVFILT_WRITE with EV_CLEAR (edge-triggered, kept until the
 *   fd is closed), so a later park costs nothing; only the directions in use
 *   are watched, so a socket that is only read gets no write events.
 *   (EV_ONESHOT would cost a change per park; docs/decisions.md.)
 * - Changes are not a syscall each: they wait in a changelist that the next
 *   poll hands to kevent along with the wait. An arm that fails (a file
 *   kqueue cannot watch, a number closed behind our back) comes back from
 *   that kevent as an EV_ERROR entry and completes its direction's ops.
 * - Deadlines are the loop's own timer heap, as kevent's timeout: no
 *   EVFILT_TIMER per timer.
 * - eddy_call_soon_threadsafe and the thread pool wake the loop with
 *   EVFILT_USER (NOTE_TRIGGER), or a pipe where the system has no EVFILT_USER.
 *
 * What this code does not rely on, because libkqueue (v2.7) differs from BSD
 * kqueue there: the `data` of an EVFILT_WRITE event (0 on AF_UNIX sockets
 * under libkqueue; we retry the syscall instead); re-adding a knote to change
 * its flags (libkqueue keeps the flags of the first add, so each knote is
 * added once, with EV_CLEAR, and never re-added); EV_RECEIPT (libkqueue
 * returns receipts, and errors, only with some other event, so a
 * receipt-only call could block forever: no receipts are asked for, and
 * under libkqueue changes are applied apart, see apply_changes). Other
 * libkqueue differences are worked around where they bite: SO_ERROR read to
 * fill in fflags (handle_event), events dropped when the list overflows
 * (kq_wait), knotes kept after a close (kq_disarm); docs/platforms.md lists
 * them all. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/event.h>
#include <sys/time.h>
#include <unistd.h>

#include "readiness.h"

#define DEFAULT_MAX_EVENTS 256
#define WAKE_IDENT         0 /* EVFILT_USER's ident: its own namespace, not an fd */

#if !defined(EVFILT_USER) && !defined(EDDY_KQUEUE_WAKE_PIPE)
#define EDDY_KQUEUE_WAKE_PIPE 1 /* a system without EVFILT_USER */
#endif

struct kq_state {
    struct eddy__readiness rd; /* first: b->impl is also the readiness state */
    int kqfd;
#if EDDY_KQUEUE_WAKE_PIPE
    int wake_pipe[2]; /* wake() writes a byte to [1]; [0] is watched for input */
#endif
    atomic_bool wake_pending; /* a wake was sent and not yet seen */
    struct kevent *changes;   /* waiting for the next kevent */
    int change_count;
    int change_capacity;
    struct kevent *events; /* room for max(max_events, change_capacity) */
    int event_capacity;
    int max_events;
    /* EVFILT_PROC: POLL ops marked EDDY_OP_F_PROC waiting for a child's exit
     * (one knote per process id, for all its ops), and those cancelled, to
     * complete at the next poll. */
    struct eddy__list procs, procs_done;
};

/* ---- the changelist ------------------------------------------------------- */

/* Grows the changelist, and the event list with it so that every change's
 * error fits in the poll's event list. 0 or -ENOMEM. */
static int changes_grow(struct kq_state *kq)
{
    int capacity = kq->change_capacity ? kq->change_capacity * 2 : 64;
    struct kevent *changes = realloc(kq->changes, (size_t)capacity * sizeof *changes);
    if (!changes) return -ENOMEM;
    kq->changes = changes;
    kq->change_capacity = capacity;
    if (capacity > kq->event_capacity) {
        struct kevent *events = realloc(kq->events, (size_t)capacity * sizeof *events);
        if (!events) return -ENOMEM;
        kq->events = events;
        kq->event_capacity = capacity;
    }
    return 0;
}

static int change_add_full(struct kq_state *kq, uintptr_t ident, short filter, unsigned short flags,
                           unsigned fflags, void *udata)
{
    if (kq->change_count == kq->change_capacity) {
        int err = changes_grow(kq);
        if (err < 0) return err;
    }
    EV_SET(&kq->changes[kq->change_count++], ident, filter, flags, fflags, 0, udata);
    return 0;
}

static int change_add(struct kq_state *kq, uintptr_t ident, short filter, unsigned short flags)
{
    return change_add_full(kq, ident, filter, flags, 0, NULL);
}

/* Takes fd's changes out of the changelist (fd is being closed: they must
 * not reach the kernel). Returns the armed bits they were for. */
static uint8_t changes_drop(struct kq_state *kq, int fd)
{
    uint8_t dropped = 0;
    int kept = 0;
    for (int i = 0; i < kq->change_count; i++) {
        struct kevent *c = &kq->changes[i];
        if (c->ident == (uintptr_t)fd && (c->filter == EVFILT_READ || c->filter == EVFILT_WRITE))
            dropped |= c->filter == EVFILT_READ ? EDDY__RD_ARMED_IN : EDDY__RD_ARMED_OUT;
        else
            kq->changes[kept++] = *c;
    }
    kq->change_count = kept;
    return dropped;
}

/* ---- the readiness hooks -------------------------------------------------- */

/* Adding a knote reports the fd's current readiness, so nothing that became
 * ready after the op's EAGAIN is missed, even though the add waits for the
 * next poll. */
static int kq_arm(struct eddy_backend *b, int fd, struct eddy__rd_fd *st, bool input)
{
    struct kq_state *kq = b->impl;
    int err = change_add(kq, (uintptr_t)fd, input ? EVFILT_READ : EVFILT_WRITE, EV_ADD | EV_CLEAR);
    if (err < 0) return err;
    st->armed |= input ? EDDY__RD_ARMED_IN : EDDY__RD_ARMED_OUT;
    return 0;
}

/* A kernel kqueue drops an fd's knotes when the fd is closed. libkqueue
 * cannot see the close: it would keep the knote, and a later add for the same
 * number would find it and change nothing, so the new fd would never be
 * watched. There, knotes already added are deleted first, as epoll's
 * EPOLL_CTL_DEL. */
static void kq_disarm(struct eddy_backend *b, int fd, struct eddy__rd_fd *st)
{
    struct kq_state *kq = b->impl;
    uint8_t added = st->armed & (uint8_t)~changes_drop(kq, fd);
#if EDDY_KQUEUE_LIBKQUEUE
    /* One call per filter: with no room for errors, libkqueue stops at the
     * first change that fails. */
    struct timespec zero = {0, 0};
    struct kevent del;
    if (added & EDDY__RD_ARMED_IN) {
        EV_SET(&del, fd, EVFILT_READ, EV_DELETE, 0, 0, 0);
        (void)kevent(kq->kqfd, &del, 1, NULL, 0, &zero);
    }
    if (added & EDDY__RD_ARMED_OUT) {
        EV_SET(&del, fd, EVFILT_WRITE, EV_DELETE, 0, 0, 0);
        (void)kevent(kq->kqfd, &del, 1, NULL, 0, &zero);
    }
#else
    (void)added;
#endif
}

static const struct eddy__rd_hooks kq_hooks = {.arm = kq_arm, .disarm = kq_disarm};

static bool kq_handles(const struct eddy_backend *b, enum eddy_op_kind kind)
{
    return eddy__rd_handles(kind);
}

/* ---- waking --------------------------------------------------------------- */

#if EDDY_KQUEUE_WAKE_PIPE
static int wake_setup(struct kq_state *kq)
{
    if (pipe(kq->wake_pipe) < 0) return -errno;
    for (int i = 0; i < 2; i++) {
        int flags = fcntl(kq->wake_pipe[i], F_GETFL);
        if (flags < 0 || fcntl(kq->wake_pipe[i], F_SETFL, flags | O_NONBLOCK) < 0 ||
            fcntl(kq->wake_pipe[i], F_SETFD, FD_CLOEXEC) < 0)
            return -errno;
    }
    return change_add(kq, (uintptr_t)kq->wake_pipe[0], EVFILT_READ, EV_ADD | EV_CLEAR);
}

static bool is_wake_event(const struct kq_state *kq, const struct kevent *ev)
{
    return ev->filter == EVFILT_READ && ev->ident == (uintptr_t)kq->wake_pipe[0];
}

static int wake_send(struct kq_state *kq)
{
    char byte = 1;
    ssize_t r;
    do {
        r = write(kq->wake_pipe[1], &byte, 1);
    } while (r < 0 && errno == EINTR);
    return r < 0 && errno != EAGAIN ? -errno : 0; /* EAGAIN: the pipe is full, a wake is due */
}

static void wake_drain(struct kq_state *kq)
{
    char buf[64];
    for (;;) {
        ssize_t r = read(kq->wake_pipe[0], buf, sizeof buf);
        if (r <= 0 && !(r < 0 && errno == EINTR)) break; /* empty (EAGAIN), or an error */
    }
}

static void wake_close(struct kq_state *kq)
{
    if (kq->wake_pipe[0] >= 0) close(kq->wake_pipe[0]);
    if (kq->wake_pipe[1] >= 0) close(kq->wake_pipe[1]);
}
#else
static int wake_setup(struct kq_state *kq)
{
    return change_add(kq, WAKE_IDENT, EVFILT_USER, EV_ADD | EV_CLEAR);
}

static bool is_wake_event(const struct kq_state *kq, const struct kevent *ev)
{
    return ev->filter == EVFILT_USER;
}

static int wake_send(struct kq_state *kq)
{
    struct kevent trigger;
    EV_SET(&trigger, WAKE_IDENT, EVFILT_USER, 0, NOTE_TRIGGER, 0, 0);
    int r;
    do {
        r = kevent(kq->kqfd, &trigger, 1, NULL, 0, NULL);
    } while (r < 0 && errno == EINTR);
    return r < 0 ? -errno : 0;
}

static void wake_drain(struct kq_state *kq)
{
    (void)kq; /* EV_CLEAR: reporting the event reset it */
}

static void wake_close(struct kq_state *kq)
{
    (void)kq;
}
#endif

/* Thread-safe. Only the first wake since the loop last saw one is sent: a
 * burst of wakes from other threads costs one syscall. */
static int kq_wake(struct eddy_backend *b)
{
    struct kq_state *kq = b->impl;
    if (atomic_exchange(&kq->wake_pending, true)) return 0;
    int err = wake_send(kq);
    if (err < 0) atomic_store(&kq->wake_pending, false);
    return err;
}

/* ---- child processes (EVFILT_PROC) ------------------------------------------------ */

/* An add's udata (a delete's is NULL): tells their errors apart. */
#define PROC_ADD ((void *)1)

static intptr_t proc_pid(const struct eddy_op *op)
{
    return (intptr_t)op->u.io.offset;
}

static bool proc_watched(struct kq_state *kq, intptr_t pid)
{
    struct eddy__list *node;
    for (node = kq->procs.next; node != &kq->procs; node = node->next)
        if (proc_pid(eddy__container_of(node, struct eddy_op, link)) == pid) return true;
    return false;
}

/* One knote per process, added with the first op that waits for it. */
static int proc_submit(struct eddy_backend *b, struct eddy_op *op)
{
    struct kq_state *kq = b->impl;
    if (proc_pid(op) <= 0) return -EINVAL;
    if (!proc_watched(kq, proc_pid(op))) {
        int err = change_add_full(kq, (uintptr_t)proc_pid(op), EVFILT_PROC, EV_ADD | EV_ONESHOT,
                                  NOTE_EXIT, PROC_ADD);
        if (err < 0) return err;
    }
    eddy__list_push_back(&kq->procs, &op->link);
    b->pending++;
    return EDDY_OP_PENDING;
}

static void proc_cancel(struct eddy_backend *b, struct eddy_op *op)
{
    struct kq_state *kq = b->impl;
    eddy__list_remove(&op->link);
    op->result = -ECANCELED;
    eddy__list_push_back(&kq->procs_done, &op->link);
    if (!proc_watched(kq, proc_pid(op)))
        (void)change_add_full(kq, (uintptr_t)proc_pid(op), EVFILT_PROC, EV_DELETE, 0, NULL);
}

/* The process pid has exited (result EDDY_READABLE: look), or its knote
 * failed: every op waiting for it completes. ESRCH means it was gone when
 * the knote was added (exited already, a zombie): look too. */
static int proc_done(struct eddy_backend *b, intptr_t pid, int64_t result)
{
    struct kq_state *kq = b->impl;
    int completed = 0;
    struct eddy__list *node = kq->procs.next;
    while (node != &kq->procs) {
        struct eddy_op *op = eddy__container_of(node, struct eddy_op, link);
        node = node->next;
        if (proc_pid(op) != pid) continue;
        eddy__list_remove(&op->link);
        eddy__op_finish(b, op, result);
        completed++;
    }
    return completed;
}

/* A change on EVFILT_PROC failed with err. libkqueue says EFAULT for every
 * add it refuses, a kernel ESRCH for a process already gone. */
static int proc_failed(struct eddy_backend *b, const struct kevent *change, int err)
{
    if (change->udata != PROC_ADD) return 0; /* a delete: the knote had fired */
#if EDDY_KQUEUE_LIBKQUEUE
    bool gone = err == ESRCH || err == EFAULT;
#else
    bool gone = err == ESRCH;
#endif
    return proc_done(b, (intptr_t)change->ident, gone ? EDDY_READABLE : -err);
}

static int procs_complete_cancelled(struct eddy_backend *b)
{
    struct kq_state *kq = b->impl;
    int completed = 0;
    struct eddy__list *node;
    while ((node = eddy__list_pop_front(&kq->procs_done))) {
        struct eddy_op *op = eddy__container_of(node, struct eddy_op, link);
        eddy__op_finish(b, op, op->result);
        completed++;
    }
    return completed;
}

static int kq_submit(struct eddy_backend *b, struct eddy_op *op)
{
    if (op->kind == EDDY_OP_POLL && (op->flags & EDDY_OP_F_PROC)) return proc_submit(b, op);
    return eddy__rd_submit(b, op);
}

static void kq_cancel(struct eddy_backend *b, struct eddy_op *op)
{
    if (op->kind == EDDY_OP_POLL && (op->flags & EDDY_OP_F_PROC))
        proc_cancel(b, op);
    else
        eddy__rd_cancel(b, op);
}

/* ---- polling -------------------------------------------------------------- */

/* The arm change failed with err (an errno value): the ops parked in its
 * direction complete with it. */
static int arm_failed(struct eddy_backend *b, const struct kevent *change, int err)
{
    struct kq_state *kq = b->impl;
    if (change->filter == EVFILT_PROC) return proc_failed(b, change, err);
    struct eddy__rd_fd *st = eddy__rd_fd_lookup(&kq->rd, (intptr_t)change->ident);
    if (!st || (change->filter != EVFILT_READ && change->filter != EVFILT_WRITE)) return 0;
    bool input = change->filter == EVFILT_READ;
    st->armed &= (uint8_t) ~(input ? EDDY__RD_ARMED_IN : EDDY__RD_ARMED_OUT);
    return eddy__rd_fail(b, st, input, -err);
}

/* wake_pending is cleared after the drain: a wake arriving in between skips
 * its send, but what it announced was queued before, and the loop looks at
 * its queues after this poll returns. */
static int handle_event(struct eddy_backend *b, const struct kevent *ev)
{
    struct kq_state *kq = b->impl;
    if (is_wake_event(kq, ev)) {
        wake_drain(kq);
        atomic_store(&kq->wake_pending, false);
        return 0;
    }
    if (ev->flags & EV_ERROR)
        return ev->data ? arm_failed(b, ev, (int)ev->data) : 0; /* 0: a receipt */
    if (ev->filter == EVFILT_PROC) return proc_done(b, (intptr_t)ev->ident, EDDY_READABLE);
    struct eddy__rd_fd *st = eddy__rd_fd_lookup(&kq->rd, (intptr_t)ev->ident);
    if (!st || (ev->filter != EVFILT_READ && ev->filter != EVFILT_WRITE)) return 0;
    bool input = ev->filter == EVFILT_READ;
    /* EV_EOF included: the syscall reports the end or the error, but under
     * libkqueue the error only comes in fflags (it read SO_ERROR to fill it
     * in, which cleared it from the socket). */
    int error = (ev->flags & EV_EOF) ? (int)ev->fflags : 0;
    if (ev->flags & EV_EOF) st->ended |= input ? EDDY__RD_ARMED_IN : EDDY__RD_ARMED_OUT;
    return eddy__rd_serve(b, st, input, error);
}

/* One kevent: hands over the changelist, waits up to timeout, handles what
 * came back (adding to *completed). The event list has room for an error per
 * change, so every change is applied and none of its errors is lost. Returns
 * the number of events, or a negative code. */
static int kq_wait(struct eddy_backend *b, const struct timespec *timeout, int *completed)
{
    struct kq_state *kq = b->impl;
    int capacity = kq->max_events > kq->change_count ? kq->max_events : kq->change_count;
    int n = kevent(kq->kqfd, kq->changes, kq->change_count, kq->events, capacity, timeout);
    kq->change_count = 0; /* applied, even when the wait is interrupted */
    if (n < 0) return errno == EINTR ? 0 : -errno;
    for (int i = 0; i < n; i++)
        *completed += handle_event(b, &kq->events[i]);
#if EDDY_KQUEUE_LIBKQUEUE
    /* libkqueue turns an epoll event for an fd watched both ways into two
     * kevents; when they overflow the event list it drops the rest of
     * epoll's batch, and with EV_CLEAR those reports never come again. A
     * full list is the sign: every parked op is retried. */
    if (n == capacity) *completed += eddy__rd_serve_all(b);
#endif
    return n;
}

#if EDDY_KQUEUE_LIBKQUEUE
/* libkqueue puts a failed change's error in the event list, but returns it
 * only along with some ready event: the ops the arm was for could wait
 * forever. So the changes go in by themselves, with no event list: libkqueue
 * then fails the call at the first change it cannot apply, and the changes
 * are applied again one by one (adding a knote that exists changes nothing)
 * to learn which. Returns how many ops completed. */
static int apply_changes(struct eddy_backend *b)
{
    struct kq_state *kq = b->impl;
    struct timespec zero = {0, 0};
    int completed = 0;
    if (kevent(kq->kqfd, kq->changes, kq->change_count, NULL, 0, &zero) < 0) {
        for (int i = 0; i < kq->change_count; i++) {
            struct kevent *change = &kq->changes[i];
            if (kevent(kq->kqfd, change, 1, NULL, 0, &zero) == 0) continue;
            /* libkqueue says EFAULT for every add it refuses: a closed fd
             * is told apart by asking the fd. */
            int err = errno;
            if (err == EFAULT && fcntl((int)change->ident, F_GETFD) < 0) err = errno;
            completed += arm_failed(b, change, err);
        }
    }
    kq->change_count = 0;
    return completed;
}
#endif

static int kq_poll(struct eddy_backend *b, int64_t timeout_ns)
{
    struct kq_state *kq = b->impl;
    int completed = 0;
#if EDDY_KQUEUE_LIBKQUEUE
    if (kq->change_count) completed = apply_changes(b);
#endif
    completed += procs_complete_cancelled(b);
    if (completed || eddy__rd_has_deferred(&kq->rd)) timeout_ns = 0;
    struct timespec ts;
    if (timeout_ns >= 0) {
        ts.tv_sec = (time_t)(timeout_ns / 1000000000);
        ts.tv_nsec = (long)(timeout_ns % 1000000000);
    }
    int n = kq_wait(b, timeout_ns >= 0 ? &ts : NULL, &completed);
    if (n < 0) return n;
    return completed + eddy__rd_complete_deferred(b);
}

/* ---- setup ---------------------------------------------------------------- */

static void kq_free(struct eddy_backend *b)
{
    struct kq_state *kq = b->impl;
    if (!kq) return;
    wake_close(kq);
    if (kq->kqfd >= 0) close(kq->kqfd);
    eddy__rd_destroy(&kq->rd);
    free(kq->changes);
    free(kq->events);
    free(kq);
    b->impl = NULL;
}

static int kq_init(struct eddy_backend *b, const eddy_loop_options *opts)
{
    int max_events = DEFAULT_MAX_EVENTS;
    if (opts && opts->queue_depth) max_events = opts->queue_depth < 4096 ? opts->queue_depth : 4096;
    struct kq_state *kq = calloc(1, sizeof *kq);
    if (!kq) return -ENOMEM;
    eddy__rd_init(&kq->rd, &kq_hooks);
    eddy__list_init(&kq->procs);
    eddy__list_init(&kq->procs_done);
#if EDDY_KQUEUE_WAKE_PIPE
    kq->wake_pipe[0] = kq->wake_pipe[1] = -1;
#endif
    atomic_init(&kq->wake_pending, false);
    kq->max_events = max_events;
    b->impl = kq;
    int err = 0;
    kq->events = calloc((size_t)max_events, sizeof *kq->events);
    if (!kq->events) err = -ENOMEM;
    kq->event_capacity = max_events;
    kq->kqfd = -1;
    if (!err && (kq->kqfd = kqueue()) < 0) err = -errno;
    if (!err)
        (void)fcntl(kq->kqfd, F_SETFD, FD_CLOEXEC); /* best effort: not every kqueue fd is a file */
    if (!err) err = wake_setup(kq);
    /* The wake's registration goes in now, so that a wake sent before the
     * first poll is not lost. */
    struct timespec zero = {0, 0};
    if (!err && kevent(kq->kqfd, kq->changes, kq->change_count, NULL, 0, &zero) < 0) err = -errno;
    kq->change_count = 0;
    if (err) {
        kq_free(b);
        return err;
    }
    b->pending = 0;
    return 0;
}

/* The same on every system with kqueue: nothing here is probed. */
static eddy_support kq_supports(const struct eddy_backend *b, eddy_cap cap)
{
    switch (cap) {
    case EDDY_CAP_TCP:
    case EDDY_CAP_UDP:
    case EDDY_CAP_UNIX_SOCKETS:
    case EDDY_CAP_TIMERS: /* the loop's timers, as kevent's timeout */
    case EDDY_CAP_CANCEL:
    case EDDY_CAP_WAKEUP:   /* EVFILT_USER */
    case EDDY_CAP_WATCH_FD: /* the same readiness as eddy's own sockets */
    case EDDY_CAP_SIGNALS:  /* lib/signal.c's pipe, polled as a watched fd */
        return EDDY_NATIVE;
    case EDDY_CAP_SUBPROCESS: /* posix_spawn; exits through EVFILT_PROC */
        return EDDY_NATIVE;
    case EDDY_CAP_FILE_IO: /* handles() sends file ops to the thread pool */
    case EDDY_CAP_DNS:     /* getaddrinfo in the thread pool */
        return EDDY_EMULATED;
    case EDDY_CAP_SENDFILE: /* lib/sendfile.c: sendfile(2) on writability, or a loop */
#if defined(__linux__) || defined(__FreeBSD__) || defined(__APPLE__)
        return EDDY_NATIVE;
#else
        return EDDY_EMULATED;
#endif
    default: /* zero-copy send: not implemented yet;
                multishot ops and buffer rings: io_uring only */
        return EDDY_NONE;
    }
}

/* The descriptor a foreign loop polls to embed this one (eddy_loop_fd). */
static intptr_t kq_fd(const struct eddy_backend *b)
{
    return ((const struct kq_state *)b->impl)->kqfd;
}

const struct eddy_backend_ops eddy__kqueue_backend = {
    .name = "kqueue",
    .init = kq_init,
    .free = kq_free,
    .submit = kq_submit,
    .cancel = kq_cancel,
    .poll = kq_poll,
    .wake = kq_wake,
    .handles = kq_handles,
    .supports = kq_supports,
    .fd = kq_fd,
};
