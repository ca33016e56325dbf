/* SPDX-License-Identifier: MIT */
/* The seam between the engine (lib/) and the I/O backends (one file per backend in backends/).
 *
 * Rules (docs/design.md, "The backend seam"):
 * - An op lives in its caller's frame or object; a backend never allocates or
 *   frees one, it only links it into its own queues through op->link.
 * - submit() either finishes the op at once (returns EDDY_OP_DONE with
 *   op->result set; complete is NOT called) or returns EDDY_OP_PENDING; then
 *   op->complete(op) is called exactly once, from poll(), on the loop thread.
 * - cancel() only asks: the op still completes once, with -ECANCELED or with
 *   its result if it won the race. cancel() never calls complete itself.
 * - complete never resumes a task inline; the engine only queues it.
 * A backend never calls into task or future code. */
#ifndef EDDY_BACKEND_H
#define EDDY_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#ifndef _WIN32
#include <sys/socket.h>
#endif

#include "eddy.h"
#include "list.h"

enum eddy_op_kind {
    EDDY_OP_NONE = 0,
    /* sockets (fd = socket) */
    EDDY_OP_ACCEPT,   /* u.addr: addr/addrlen may be NULL; result = new fd (nonblocking, cloexec) */
    EDDY_OP_CONNECT,  /* u.addr: addr, addrlen_value; result = 0 */
    EDDY_OP_RECV,     /* u.io: buf, len, flags; result = bytes (0 = peer closed) */
    EDDY_OP_SEND,     /* u.io: buf, len, flags; result = bytes sent (maybe partial) */
    EDDY_OP_RECVMSG,  /* u.msg: msg, flags; result = bytes */
    EDDY_OP_SENDMSG,  /* u.msg: msg, flags; result = bytes */
    EDDY_OP_SHUTDOWN, /* u.io.flags = how */
    EDDY_OP_CLOSE,    /* closes fd */
    /* files (fd = file) */
    EDDY_OP_READ,   /* u.io: buf, len, offset; result = bytes */
    EDDY_OP_WRITE,  /* u.io: buf, len, offset; result = bytes */
    EDDY_OP_FSYNC,  /* result = 0 */
    EDDY_OP_OPEN,   /* u.path: path, flags, mode; result = new fd */
    EDDY_OP_STAT,   /* u.path: path, statbuf (struct stat *); fd >= 0 and path NULL = fstat */
    EDDY_OP_UNLINK, /* u.path: path, flags (AT_REMOVEDIR for a directory) */
    EDDY_OP_RENAME, /* u.path: path -> path2 */
    EDDY_OP_MKDIR,  /* u.path: path, mode */
    /* generic */
    EDDY_OP_WORK, /* u.work: fn(arg) run in the thread pool; result = its return */
    /* any descriptor, eddy's or not (fd = it) */
    EDDY_OP_POLL, /* u.io.flags = EDDY_READABLE or EDDY_WRITABLE; result = that bit once the fd
                     is ready that way (or has an error or hang-up to report), -EBADF, ... */
    /* splice(2) (fd = the source): only where handles() says so (io_uring's
     * IORING_OP_SPLICE); lib/sendfile.c. u.splice: fd_out, off_in (-1: none),
     * len, flags (SPLICE_F_*); result = bytes moved (0 at the source's EOF),
     * -EAGAIN when a nonblocking end was not ready */
    EDDY_OP_SPLICE,
    EDDY_OP_KIND_COUNT
};

enum eddy_op_state {
    EDDY_OP_STATE_IDLE = 0,
    EDDY_OP_STATE_IN_FLIGHT,  /* submitted, pending */
    EDDY_OP_STATE_CANCELLING, /* cancel asked, final completion still to come */
    EDDY_OP_STATE_DONE,
};

/* Values submit() returns (or a negative code: the op was refused and
 * result is not set; complete will not be called). */
enum { EDDY_OP_DONE = 0, EDDY_OP_PENDING = 1 };

/* op->flags, set by lib/ when it makes the op. */
enum {
    /* SEND: the peer is on another host, so the payload may go zero-copy.
     * (A peer on this host holds a zero-copy send's buffer until it reads the
     * bytes: two peers each sending before reading would wait on each other.) */
    EDDY_OP_F_ZEROCOPY = 1 << 0, /* set only on SENDs of EDDY_ZEROCOPY_MIN bytes and more */
    /* RECV: the socket is a byte stream (TCP, Unix stream), so the backend
     * may read ahead into buffers of its own and hand the bytes to the next
     * RECVs in order (io_uring's multishot receive). u.io.offset then holds
     * the socket's serial number, unique in the process: what the backend
     * keeps under the fd belongs to that socket only (a socket closed
     * without an op leaves its number to the next one). */
    EDDY_OP_F_STREAM = 1 << 1,
    /* READ, WRITE (offset -1), or RECV, SEND from lib/fs.c on a backend
     * without native file I/O: fd is a FIFO or a terminal, not a socket.
     * RECV and SEND then mean read(2) and write(2) once the fd is ready (it
     * is O_NONBLOCK). A write must never raise SIGPIPE: -EPIPE instead. */
    EDDY_OP_F_PIPE = 1 << 2,
    /* POLL for a child's exit: u.io.offset is its process id, fd its pidfd
     * where the system has them (else the process id again). The op
     * completes (EDDY_READABLE) once the child has exited, without reaping
     * it, or is gone already. kqueue watches the id (EVFILT_PROC); io_uring
     * waits with IORING_OP_WAITID (WEXITED | WNOWAIT) on the pidfd where the
     * kernel has it (6.7+); elsewhere it is a poll of the pidfd. */
    EDDY_OP_F_PROC = 1 << 3,
    /* ACCEPT: the new socket may come as a direct descriptor (EDDY_FD_DIRECT):
     * lib/ can serve it, and it needs no setsockopt of its own (the listener's
     * options are inherited). */
    EDDY_OP_F_DIRECT = 1 << 4,
    /* RECV with EDDY_OP_F_STREAM (lib/stream.c): instead of copying bytes it
     * holds into u.io.buf, the backend may lend them: the op then completes
     * with u.io.buf pointing at them (result bytes, at most u.io.len) and
     * u.io.offset a token that lend_release() takes once they are read. A
     * u.io.buf left as it was means the bytes were copied there. */
    EDDY_OP_F_LEND = 1 << 5,
    /* READ, WRITE on a file: u.io.buf lies wholly inside the caller's memory
     * region that register_buf() put at index u.io.flags (io_uring's
     * READ_FIXED and WRITE_FIXED). lib/fs.c sets it only on a loop whose
     * backend has register_buf. */
    EDDY_OP_F_FIXED_BUF = 1 << 6,
};

/* How many memory regions one loop can register (eddy_buffer_register). */
#define EDDY_BUF_REGIONS 64

/* The smallest SEND a backend sends zero-copy by default: lib/ asks where a
 * socket's peer is (EDDY_OP_F_ZEROCOPY) only for sends this large. */
#define EDDY_ZEROCOPY_MIN (64 * 1024)

/* A direct descriptor: a slot of the backend's own descriptor table
 * (io_uring's registered files), no descriptor of the process. An ACCEPT
 * with EDDY_OP_F_DIRECT may complete with EDDY_FD_DIRECT | slot; ops on that
 * socket then name it so in op->fd, and a CLOSE frees the slot. Only the
 * backend that made one understands it; a system call that needs a real
 * descriptor gets one from ops->install. Real descriptors stay below it. */
#define EDDY_FD_DIRECT ((intptr_t)1 << 30)

static inline bool eddy__fd_direct(intptr_t fd)
{
#ifdef _WIN32
    (void)fd;
    return false; /* a SOCKET or HANDLE may have any bits */
#else
    return fd >= 0 && (fd & EDDY_FD_DIRECT);
#endif
}

struct eddy_op {
    uint8_t kind;  /* enum eddy_op_kind */
    uint8_t state; /* enum eddy_op_state, kept by the engine and the backend */
    uint8_t flags; /* EDDY_OP_F_*: hints from lib/ */
    intptr_t fd;   /* fd, or SOCKET/HANDLE on Windows */
    union {
        struct {
            void *buf;
            size_t len;
            int64_t offset;
            int flags;
        } io;
        struct {
            struct sockaddr *addr;
            socklen_t *addrlen;      /* accept: in/out, may be NULL */
            socklen_t addrlen_value; /* connect */
        } addr;
        struct {
            struct msghdr *msg;
            int flags;
        } msg;
        struct {
            const char *path;
            const char *path2;
            int flags;
            int mode;
            void *statbuf;
        } path;
        struct {
            intptr_t (*fn)(void *arg);
            void *arg;
        } work;
        struct {
            intptr_t fd_out;
            int64_t off_in;
            size_t len;
            unsigned flags;
        } splice;
    } u;
    int64_t result;                       /* >= 0, or a negative errno-style code */
    void (*complete)(struct eddy_op *op); /* the engine's: wakes whoever waits */
    void *data;                           /* the engine's: who waits (a task) */
    struct eddy__list link;               /* the backend's queues */
    uintptr_t backend_data;               /* scratch for the backend */
};

struct eddy_backend;

struct eddy_backend_ops {
    const char *name;
    /* Sets up b->impl. 0 or a negative code (the engine then tries the next). */
    int (*init)(struct eddy_backend *b, const eddy_loop_options *opts);
    void (*free)(struct eddy_backend *b);
    /* EDDY_OP_DONE, EDDY_OP_PENDING, or a negative code (-ENOTSUP, -ENOMEM). */
    int (*submit)(struct eddy_backend *b, struct eddy_op *op);
    void (*cancel)(struct eddy_backend *b, struct eddy_op *op);
    /* Flushes submissions, waits up to timeout_ns (-1 = no limit, 0 = do not
     * block) for completions or a wake, and completes what is done. Returns the
     * number of ops completed, or a negative code. */
    int (*poll)(struct eddy_backend *b, int64_t timeout_ns);
    /* The one call safe from any thread: makes a blocked poll return. */
    int (*wake)(struct eddy_backend *b);
    /* Whether this backend handles kind natively (else lib/ routes file ops
     * and EDDY_OP_WORK to the thread pool). */
    bool (*handles)(const struct eddy_backend *b, enum eddy_op_kind kind);
    /* What this initialised instance offers on this machine (its probe's
     * answer): never more than the code does. lib/caps.c holds the static table. */
    eddy_support (*supports)(const struct eddy_backend *b, eddy_cap cap);
    /* A descriptor that polls readable while completions or a wake wait to be
     * reaped (eddy_loop_fd), or -ENOTSUP; NULL = -ENOTSUP. */
    intptr_t (*fd)(const struct eddy_backend *b);
    /* A real descriptor on the file behind fd, a direct descriptor
     * (EDDY_FD_DIRECT): new, close-on-exec, the caller's to close; the slot
     * stays. Loop thread only, outside poll. NULL: no direct descriptors. */
    intptr_t (*install)(struct eddy_backend *b, intptr_t fd);
    /* A direct descriptor naming the file behind fd (which stays open) for
     * the ops on it that take one (READ, WRITE, FSYNC), or a negative code
     * (-ENOSPC: the table is full). Loop thread only. NULL: none. */
    intptr_t (*register_fd)(struct eddy_backend *b, intptr_t fd);
    /* Gives back the direct descriptor register_fd(b, fd) made (nothing if
     * it is not that: a loop freed since, another at its address). */
    void (*release)(struct eddy_backend *b, intptr_t direct, intptr_t fd);
    /* Gives back bytes a RECV lent (EDDY_OP_F_LEND), by its token. NULL on a
     * backend that never lends. */
    void (*lend_release)(struct eddy_backend *b, int64_t token);
    /* Registers the caller's memory [base, base + len) at index (below
     * EDDY_BUF_REGIONS) of the backend's buffer table, for READ and WRITE
     * with EDDY_OP_F_FIXED_BUF; 0 or a negative code (-ENOTSUP: none here).
     * unregister_buf empties the index. Loop thread only. NULL: none. */
    int (*register_buf)(struct eddy_backend *b, unsigned index, void *base, size_t len);
    void (*unregister_buf)(struct eddy_backend *b, unsigned index);
};

struct eddy_backend {
    const struct eddy_backend_ops *ops;
    void *impl;       /* the backend's own state */
    unsigned pending; /* ops submitted and not yet completed; kept by the backend */
};

/* The backends, one file each in backends/ (lib/loop.c lists the ones built). */
extern const struct eddy_backend_ops eddy__uring_backend;
extern const struct eddy_backend_ops eddy__epoll_backend;
extern const struct eddy_backend_ops eddy__iocp_backend;
extern const struct eddy_backend_ops eddy__kqueue_backend;

/* What EDDY_CAP_SUBPROCESS is on a POSIX backend whose poll ops can watch a
 * pidfd (lib/process.c probes pidfd_open once). */
eddy_support eddy__subprocess_support(void);

/* The backend of the loop this thread runs, or NULL (lib/loop.c): a wake
 * may go from that backend to another of its kind. */
struct eddy_backend *eddy__thread_backend(void);

/* Completes op from within poll: sets state and calls op->complete. Every
 * backend finishes pending ops through this one helper. */
static inline void eddy__op_finish(struct eddy_backend *b, struct eddy_op *op, int64_t result)
{
    op->result = result;
    op->state = EDDY_OP_STATE_DONE;
    b->pending--;
    op->complete(op);
}

#endif /* EDDY_BACKEND_H */
