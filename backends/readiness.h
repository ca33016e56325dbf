/* SPDX-License-Identifier: MIT */
/* Completions over readiness, shared by the readiness backends (epoll.c,
 * kqueue.c; docs/design.md, "Layers").
 *
 * submit tries the syscall at once (the fast path); only when it would block
 * is the op parked on its fd's reader or writer queue, and the backend asked,
 * through its arm hook, to report that direction's readiness. When the backend
 * sees readiness it calls eddy__rd_serve, which retries the parked ops of that
 * direction in arrival order until one would block again.
 *
 * RECV and SEND marked EDDY_OP_F_PIPE are read and write on a FIFO or a
 * terminal that lib/fs.c made non-blocking: they park as socket ops do.
 *
 * Completions happen only inside the backend's poll: cancelled ops, and ops
 * still parked on an fd being closed, wait on a deferred list that
 * eddy__rd_complete_deferred completes with -ECANCELED. File ops and
 * EDDY_OP_WORK are not handled here: lib/ sends them to the thread pool.
 *
 * The backend's state begins with a struct eddy__readiness; b->impl points at
 * it, so both the backend and this file reach theirs from b. */
#ifndef EDDY_READINESS_H
#define EDDY_READINESS_H

#include "backend.h"

/* struct eddy__rd_fd.armed: the directions the backend was asked to report. */
enum {
    EDDY__RD_ARMED_IN = 1 << 0,
    EDDY__RD_ARMED_OUT = 1 << 1,
};

/* Readiness is remembered per fd and direction (as mio and Tokio do): in a
 * direction that is armed (edge-triggered: a report for each new edge), a
 * ready bit set by the backend's report and cleared when a syscall says the
 * fd has nothing more (EAGAIN, or a short read of a stream socket or a short
 * send) tells whether the next op should try its syscall at once or park at
 * once. A direction not armed is unknown: its ops try. */
struct eddy__rd_fd {
    struct eddy__list readers; /* ACCEPT, RECV, RECVMSG waiting for input */
    struct eddy__list writers; /* CONNECT, SEND, SENDMSG waiting for output */
    uint8_t armed;             /* EDDY__RD_ARMED_*, kept by the backend's hooks */
    uint8_t ready;             /* EDDY__RD_ARMED_* bits: reported and not used up since */
    uint8_t ended;             /* EDDY__RD_ARMED_* bits: a hang-up was reported (final) */
    int error;                 /* a socket error the backend reported, not yet delivered */
};

struct eddy__rd_hooks {
    /* An op parks on fd, waiting for input (or output), and that direction
     * is not armed: ask to be told when fd becomes ready in it, set the bits
     * of st->armed that now are, return 0 or a negative code (the op then
     * completes at once with it). A report must not be lost: readiness that
     * arrived before the arm counts. */
    int (*arm)(struct eddy_backend *b, int fd, struct eddy__rd_fd *st, bool input);
    /* fd is armed and about to be closed (its number may be reused at once):
     * stop watching it. st->armed is cleared afterwards. */
    void (*disarm)(struct eddy_backend *b, int fd, struct eddy__rd_fd *st);
};

struct eddy__readiness {
    const struct eddy__rd_hooks *hooks;
    struct eddy__rd_fd *fds; /* indexed by fd, grown on demand */
    size_t fd_count;
    struct eddy__list deferred; /* ops to complete with -ECANCELED */
};

void eddy__rd_init(struct eddy__readiness *rd, const struct eddy__rd_hooks *hooks);
void eddy__rd_destroy(struct eddy__readiness *rd);

/* The op kinds done here: the socket ops. */
bool eddy__rd_handles(enum eddy_op_kind kind);

/* The backend ops' submit and cancel, as backend.h describes them. */
int eddy__rd_submit(struct eddy_backend *b, struct eddy_op *op);
void eddy__rd_cancel(struct eddy_backend *b, struct eddy_op *op);

/* The state of fd, or NULL if nothing was ever parked on it. */
struct eddy__rd_fd *eddy__rd_fd_lookup(struct eddy__readiness *rd, intptr_t fd);

/* fd is ready for input (or output): marks it so and retries its parked ops
 * of that direction (a report for an fd with nothing parked is remembered
 * for the next op). A backend that reports a hang-up in that direction (the
 * peer's end of stream, EPOLLRDHUP, EV_EOF) marks it in st->ended first:
 * that readiness is final, no later read uses it up (a short read may stop
 * at the end of the stream, whose report came already). error: the socket
 * error (errno value) the backend's report carried, or 0. A backend that had
 * to read SO_ERROR to report it (libkqueue does) cleared it from the socket:
 * the next op that finds nothing to do (would block, or reads the end of the
 * stream) gets it instead. Returns how many completed. */
int eddy__rd_serve(struct eddy_backend *b, struct eddy__rd_fd *st, bool input, int error);

/* Retries the parked ops of every fd, both directions: for a backend that
 * may have lost readiness reports. Returns how many completed. */
int eddy__rd_serve_all(struct eddy_backend *b);

/* Arming fd in one direction failed after the fact (err < 0): the ops parked
 * in it complete with err. Returns how many completed. */
int eddy__rd_fail(struct eddy_backend *b, struct eddy__rd_fd *st, bool input, int err);

/* Whether poll has cancellations to complete (then it must not block). */
bool eddy__rd_has_deferred(const struct eddy__readiness *rd);
int eddy__rd_complete_deferred(struct eddy_backend *b);

#endif /* EDDY_READINESS_H */
