/* SPDX-License-Identifier: MIT */
/* Readiness of descriptors eddy does not own (libcurl's, c-ares', libpq's
 * sockets, a tty, a pipe end): eddy_wait_readable/_writable for tasks, and
 * eddy_watch_* for libraries that want callbacks (asyncio's add_reader,
 * libuv's uv_poll). Both are EDDY_OP_POLL ops: one-shot readiness, one
 * direction per op, which the backend reports with its own machinery
 * (IORING_OP_POLL_ADD, epoll, kqueue; on Windows IOCTL_AFD_POLL, for sockets
 * only: the backend answers -ENOTSUP for any other handle, and -EBADF for one
 * closed under the op, so both calls pass those on). A watch re-arms its op
 * after each callback, so a descriptor left ready is reported again at the
 * next iteration (level-triggered, as uv_poll and add_reader are). */
#include <stdlib.h>

#include "internal.h"

/* ---- tasks ---------------------------------------------------------------------- */

static int wait_ready(intptr_t fd, unsigned event, int64_t timeout_ns)
{
    struct eddy_task *t = eddy__current_task();
    if (!t) return -EPERM;
    if (fd < 0) return -EBADF;
    struct eddy_op op = {.kind = EDDY_OP_POLL, .fd = fd, .u.io.flags = (int)event};
    if (timeout_ns < 0) {
        int64_t r = eddy__op_run(&op);
        return r < 0 ? (int)r : 0;
    }
    eddy_timeout scope;
    int err = eddy_timeout_begin(&scope, timeout_ns);
    if (err < 0) return err;
    int64_t r = eddy__op_run(&op);
    int ended = eddy_timeout_end(&scope);
    if (r >= 0) return 0; /* ready, even if the deadline came in the same iteration */
    return ended < 0 ? ended : (int)r;
}

EDDY_API int eddy_wait_readable(intptr_t fd, int64_t timeout_ns)
{
    return wait_ready(fd, EDDY_READABLE, timeout_ns);
}

EDDY_API int eddy_wait_writable(intptr_t fd, int64_t timeout_ns)
{
    return wait_ready(fd, EDDY_WRITABLE, timeout_ns);
}

/* ---- watches -------------------------------------------------------------------- */

#define EVENTS (EDDY_READABLE | EDDY_WRITABLE)

struct eddy_watch {
    struct eddy_loop *loop;
    intptr_t fd;
    unsigned events;       /* what the owner wants reported */
    unsigned armed;        /* directions whose op is in flight */
    unsigned ready;        /* directions reported and not yet delivered */
    struct eddy_op ops[2]; /* [0] readable, [1] writable */
    struct eddy__work deliver;
    bool deliver_queued;
    bool stopped; /* the owner let go: freed once nothing refers to it */
    void (*cb)(eddy_watch *w, unsigned revents, void *arg);
    void *arg;
    struct eddy__list link; /* loop->watches, while not stopped */
};

static unsigned op_event(const struct eddy_op *op)
{
    return (unsigned)op->u.io.flags;
}

static void free_if_unused(struct eddy_watch *w)
{
    if (w->stopped && !w->armed && !w->deliver_queued) free(w);
}

static void queue_delivery(struct eddy_watch *w)
{
    if (w->deliver_queued) return;
    w->deliver_queued = true;
    eddy__loop_schedule(w->loop, &w->deliver);
}

/* From the backend's poll: never runs the owner's code (deliver does). */
static void watch_op_complete(struct eddy_op *op)
{
    struct eddy_watch *w = op->data;
    unsigned event = op_event(op);
    w->armed &= ~event;
    eddy__loop_op_ended(w->loop);
    if (w->stopped) {
        free_if_unused(w);
        return;
    }
    /* A cancelled op was withdrawn by _update; an error is reported as
     * readiness, once: the owner's own call on the fd then says what it is. */
    if (op->result == -ECANCELED || !(w->events & event)) return;
    w->ready |= event;
    if (op->result < 0) w->events &= ~event;
    queue_delivery(w);
}

/* Submits the poll op of one direction. 0 or a negative code. */
static int arm(struct eddy_watch *w, unsigned event)
{
    struct eddy_op *op = &w->ops[event == EDDY_READABLE ? 0 : 1];
    *op = (struct eddy_op){.kind = EDDY_OP_POLL, .fd = w->fd, .u.io.flags = (int)event};
    op->complete = watch_op_complete;
    op->data = w;
    op->state = EDDY_OP_STATE_IN_FLIGHT;
    eddy__list_init(&op->link);
    struct eddy_backend *b = &w->loop->backend;
    int status = b->ops->submit(b, op);
    if (status < 0) return status;
    if (status == EDDY_OP_DONE) { /* ready now (a readiness backend's fast path) */
        if (op->result < 0) return (int)op->result;
        w->ready |= event;
        queue_delivery(w);
        return 0;
    }
    w->armed |= event;
    eddy__loop_op_started(w->loop);
    return 0;
}

static void disarm(struct eddy_watch *w, unsigned event)
{
    if (!(w->armed & event)) return;
    struct eddy_op *op = &w->ops[event == EDDY_READABLE ? 0 : 1];
    if (op->state != EDDY_OP_STATE_IN_FLIGHT) return;
    op->state = EDDY_OP_STATE_CANCELLING;
    w->loop->backend.ops->cancel(&w->loop->backend, op);
}

/* Arms what the owner wants and is neither armed nor waiting to be delivered.
 * A direction that cannot be armed is reported ready (the owner's call then
 * meets the error) and dropped. */
static void rearm(struct eddy_watch *w)
{
    for (unsigned event = EDDY_READABLE; event <= EDDY_WRITABLE; event <<= 1) {
        if (!(w->events & event) || (w->armed & event) || (w->ready & event)) continue;
        if (arm(w, event) < 0) {
            w->events &= ~event;
            w->ready |= event;
            queue_delivery(w);
        }
    }
}

static void watch_deliver(struct eddy__work *work)
{
    struct eddy_watch *w = eddy__container_of(work, struct eddy_watch, deliver);
    if (!w->stopped && !w->loop->closing) {
        unsigned revents = w->ready & w->events;
        w->ready = 0;
        /* deliver_queued stays set meanwhile: a stop from the callback must
         * not free w under this frame, and a report must not queue it twice. */
        if (revents) w->cb(w, revents, w->arg);
    }
    w->deliver_queued = false;
    if (w->stopped || w->loop->closing) {
        free_if_unused(w);
        return;
    }
    rearm(w);
    if (w->ready) queue_delivery(w); /* what could not be armed, or came meanwhile */
}

static bool fd_watched(struct eddy_loop *loop, intptr_t fd)
{
    struct eddy__list *node;
    for (node = loop->watches.next; node != &loop->watches; node = node->next)
        if (eddy__container_of(node, struct eddy_watch, link)->fd == fd) return true;
    return false;
}

EDDY_API int eddy_watch_start(eddy_watch **out, eddy_loop *loop, intptr_t fd, unsigned events,
                              void (*cb)(eddy_watch *w, unsigned revents, void *arg), void *arg)
{
    if (!out) return -EINVAL;
    *out = NULL;
    if (!loop) loop = eddy_loop_current();
    if (!loop || !cb || (events & ~(unsigned)EVENTS)) return -EINVAL;
    if (eddy__loop_foreign(loop)) return -EPERM;
    if (fd < 0) return -EBADF;
    if (loop->caps[EDDY_CAP_WATCH_FD] == EDDY_NONE) return -ENOTSUP;
    if (fd_watched(loop, fd)) return -EEXIST;
    struct eddy_watch *w = calloc(1, sizeof *w);
    if (!w) return -ENOMEM;
    w->loop = loop;
    w->fd = fd;
    w->events = events;
    w->cb = cb;
    w->arg = arg;
    w->deliver.run = watch_deliver;
    for (unsigned event = EDDY_READABLE; event <= EDDY_WRITABLE; event <<= 1) {
        if (!(events & event)) continue;
        int err = arm(w, event);
        if (err < 0) {
            /* Nothing reached the owner yet: withdraw what was armed. */
            w->stopped = true;
            disarm(w, EDDY_READABLE);
            eddy__list_init(&w->link);
            if (w->deliver_queued) eddy__list_remove(&w->deliver.link);
            w->deliver_queued = false;
            free_if_unused(w);
            return err;
        }
    }
    eddy__list_push_back(&loop->watches, &w->link);
    *out = w;
    return 0;
}

EDDY_API int eddy_watch_update(eddy_watch *w, unsigned events)
{
    if (!w || w->stopped || (events & ~(unsigned)EVENTS)) return -EINVAL;
    if (eddy__loop_foreign(w->loop)) return -EPERM;
    w->events = events;
    w->ready &= events;
    for (unsigned event = EDDY_READABLE; event <= EDDY_WRITABLE; event <<= 1)
        if (!(events & event)) disarm(w, event);
    rearm(w);
    return 0;
}

EDDY_API int eddy_watch_stop(eddy_watch *w)
{
    if (!w || w->stopped) return -EINVAL;
    if (eddy__loop_foreign(w->loop)) return -EPERM;
    w->stopped = true;
    eddy__list_remove(&w->link);
    disarm(w, EDDY_READABLE);
    disarm(w, EDDY_WRITABLE);
    free_if_unused(w);
    return 0;
}

void eddy__watches_stop_all(struct eddy_loop *loop)
{
    struct eddy__list *node;
    while ((node = eddy__list_pop_front(&loop->watches))) {
        struct eddy_watch *w = eddy__container_of(node, struct eddy_watch, link);
        eddy__list_init(&w->link);
        eddy_watch_stop(w);
    }
}
