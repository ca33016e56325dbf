/* SPDX-License-Identifier: MIT */
/* Running one op from a task: the op lives in the task's frame, so the task
 * must not leave this function until the op's final completion, whatever
 * happens to the task meanwhile (the op lifetime rule, docs/design.md, "The op
 * and its lifetime"). */
#include "internal.h"

/* The capability each op kind needs from the loop's backend; NO_CAP: none. */
#define NO_CAP EDDY_CAP_COUNT
static const uint8_t op_caps[EDDY_OP_KIND_COUNT] = {
    [EDDY_OP_NONE] = NO_CAP,
    [EDDY_OP_ACCEPT] = EDDY_CAP_TCP, /* stream ops; a Unix connect is told apart below */
    [EDDY_OP_CONNECT] = EDDY_CAP_TCP,
    [EDDY_OP_RECV] = EDDY_CAP_TCP,
    [EDDY_OP_SEND] = EDDY_CAP_TCP,
    [EDDY_OP_RECVMSG] = EDDY_CAP_UDP,
    [EDDY_OP_SENDMSG] = EDDY_CAP_UDP,
    [EDDY_OP_SHUTDOWN] = EDDY_CAP_TCP,
    [EDDY_OP_CLOSE] = NO_CAP, /* whatever was opened can be closed */
    [EDDY_OP_READ] = EDDY_CAP_FILE_IO,
    [EDDY_OP_WRITE] = EDDY_CAP_FILE_IO,
    [EDDY_OP_FSYNC] = EDDY_CAP_FILE_IO,
    [EDDY_OP_OPEN] = EDDY_CAP_FILE_IO,
    [EDDY_OP_STAT] = EDDY_CAP_FILE_IO,
    [EDDY_OP_UNLINK] = EDDY_CAP_FILE_IO,
    [EDDY_OP_RENAME] = EDDY_CAP_FILE_IO,
    [EDDY_OP_MKDIR] = EDDY_CAP_FILE_IO,
    [EDDY_OP_WORK] = NO_CAP,
    [EDDY_OP_POLL] = EDDY_CAP_WATCH_FD,
    [EDDY_OP_SPLICE] = EDDY_CAP_SENDFILE,
};
_Static_assert(EDDY_OP_SPLICE + 1 == EDDY_OP_KIND_COUNT, "a new op kind needs its row in op_caps");

/* Whether the loop's backend offers what op needs (docs/design.md, "Backends
 * and the capability table"). */
static bool op_supported(const struct eddy_loop *loop, const struct eddy_op *op)
{
    unsigned cap = op->kind < EDDY_OP_KIND_COUNT ? op_caps[op->kind] : NO_CAP;
#ifdef AF_UNIX
    if (op->kind == EDDY_OP_CONNECT && op->u.addr.addr && op->u.addr.addr->sa_family == AF_UNIX)
        cap = EDDY_CAP_UNIX_SOCKETS;
#endif
    return cap == NO_CAP || loop->caps[cap] != EDDY_NONE;
}

static bool op_pooled(struct eddy_loop *loop, const struct eddy_op *op)
{
    return !loop->backend.ops->handles(&loop->backend, (enum eddy_op_kind)op->kind);
}

static void op_complete(struct eddy_op *op)
{
    struct eddy_task *t = op->data;
    eddy__loop_op_ended(t->loop);
    eddy__task_wake(t, 0);
}

/* The task was cancelled: ask for the op's cancellation, and keep waiting for
 * its completion (with -ECANCELED, or its result if it won the race). */
static void op_abort(struct eddy_task *t)
{
    struct eddy_op *op = t->wait_data;
    struct eddy_loop *loop = t->loop;
    if (op->state != EDDY_OP_STATE_IN_FLIGHT) return;
    op->state = EDDY_OP_STATE_CANCELLING;
    if (op_pooled(loop, op))
        eddy__pool_cancel(loop, op);
    else
        loop->backend.ops->cancel(&loop->backend, op);
}

int64_t eddy__op_run(struct eddy_op *op)
{
    struct eddy_task *t = eddy__current_task();
    if (!t) return -EPERM;
    if (eddy__task_cancelled(t)) return -ECANCELED;
    struct eddy_loop *loop = t->loop;
    if (EDDY__UNLIKELY(!op_supported(loop, op))) return -ENOTSUP;
    op->state = EDDY_OP_STATE_IN_FLIGHT;
    op->complete = op_complete;
    op->data = t;
    op->result = 0;
    eddy__list_init(&op->link);
    bool pooled = op_pooled(loop, op);
    int status = pooled ? eddy__pool_submit(loop, op) /* 0: queued */
                        : loop->backend.ops->submit(&loop->backend, op);
    if (status < 0) {
        op->state = EDDY_OP_STATE_DONE;
        return status;
    }
    if (status == EDDY_OP_DONE && !pooled) {
        op->state = EDDY_OP_STATE_DONE;
        return op->result;
    }
    eddy__loop_op_started(loop);
    t->abort_wait = op_abort;
    eddy__task_waits(t, EDDY__WAIT_OP);
    t->wait_data = op;
    /* Only op_complete wakes the task: abort never does, so the frame stays
     * alive until the kernel (or the worker) is done with it. */
    while (op->state != EDDY_OP_STATE_DONE)
        eddy__task_suspend(t);
    return op->result;
}
