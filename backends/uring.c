/* SPDX-License-Identifier: MIT */
/* The io_uring backend: a completion backend over liburing (docs/design.md,
 * "Layers" and "Backends and the capability table").
 *
 * submit() only prepares an SQE: submissions accumulate during an iteration
 * and go to the kernel in poll(), with one io_uring_submit_and_wait per
 * iteration. Each op's SQE carries the op itself as user_data; its CQE
 * completes it. cancel() queues an IORING_OP_ASYNC_CANCEL keyed on the op and
 * lets the op's own CQE finish it (-ECANCELED, or its result if it won).
 *
 * What the running kernel offers is probed at init, not assumed: the setup
 * flags (SINGLE_ISSUER|DEFER_TASKRUN, else COOP_TASKRUN, else none), and the
 * opcodes. Socket ops are required; a file opcode the kernel lacks makes
 * handles() false for it, and lib/ sends that op to the thread pool.
 *
 * The ring belongs to one thread. With SINGLE_ISSUER it is created disabled
 * and enabled by the first poll(), so a loop may be created on one thread and
 * run on another; the ring fd is registered (a per-thread table) at the same
 * moment. poll() from any other thread afterwards returns -EEXIST.
 *
 * No op is lost: a full SQ is submitted and the SQE retried; an op that still
 * finds no room waits on a backlog that poll() drains. The CQ is four times
 * the SQ, and the kernel keeps what does not fit (IORING_FEAT_NODROP) until
 * poll() has made room.
 *
 * Listeners are served by a multishot accept (5.19+) while accepts wait on
 * them (see struct listener); EDDY_CAPS_DISABLE=multishot_accept turns it off.
 *
 * A SEND of ZC_MIN_DEFAULT bytes or more to a peer on another host (lib/
 * says which: EDDY_OP_F_ZEROCOPY) goes out as IORING_OP_SEND_ZC (6.0+) where
 * the kernel has it: its first CQE carries the result and, with
 * IORING_CQE_F_MORE, announces a notification (IORING_CQE_F_NOTIF) that comes
 * once the kernel no longer reads the buffer. The op completes only then: the
 * buffer is the caller's, often on a task's stack. A socket that cannot send
 * zero-copy (AF_UNIX: -EOPNOTSUPP) gets the op again as a plain SEND.
 * EDDY_CAPS_DISABLE=zerocopy_send turns it off; EDDY_URING_SEND_ZC_MIN (bytes)
 * moves the threshold and lets sends to peers on this host go zero-copy too,
 * for tests and bench/send-zc.c (over loopback, the peer holds the buffer
 * until it has read the bytes).
 *
 * A stream socket read in a loop gets a multishot receive into the loop's
 * provided-buffer ring (6.0+; see struct stream): its bytes are copied out
 * by the next eddy_recv, without a system call when they came before it, or
 * lent to a stream (EDDY_OP_F_LEND) until it gives them back (release()).
 * Bundles (6.10+) bring several buffers per CQE, and the ring is consumed
 * incrementally (6.12+): see struct buf_meta. EDDY_CAPS_DISABLE=
 * multishot_recv (or buffer_ring) turns it off; recv_bundle and
 * buffer_ring_incremental turn those off.
 *
 * The kernel wakes the ops waiting on one socket newest first: a socket has
 * at most one read and one write in the kernel, the others waiting in
 * arrival order behind them (see struct lanes).
 *
 * Accepted sockets come as direct descriptors (6.8+: slots of the ring's
 * registered file table, named with IOSQE_FIXED_FILE; no fget/fput per op
 * and no entry in the process's table) where lib/ allows it
 * (EDDY_OP_F_DIRECT); install() gives one a real descriptor on demand
 * (IORING_OP_FIXED_FD_INSTALL). Near a full table, accepts take plain
 * descriptors until slots free. EDDY_CAPS_DISABLE=direct_descriptors turns
 * it off (see "direct descriptors" below). */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include "backend.h"

/* Memcheck cannot see what the kernel writes through the ring: each
 * completion marks the bytes it wrote as defined. And Valgrind 3.19 does not
 * know that io_uring_enter blocks: it keeps every other thread stopped while
 * one waits there, so a wake from another thread would never come. Under
 * Valgrind, waits are cut into short slices. */
#if HAVE_VALGRIND_VALGRIND_H
#include <valgrind/memcheck.h>
#define MARK_DEFINED(addr, len) VALGRIND_MAKE_MEM_DEFINED((addr), (len))
#define UNDER_VALGRIND()        (RUNNING_ON_VALGRIND != 0)
#else
#define MARK_DEFINED(addr, len) ((void)(addr), (void)(len))
#define UNDER_VALGRIND()        false
#endif
#define VALGRIND_SLICE_NS (1000 * 1000)

/* How long at most a loop with only file I/O pending waits for half of it. */
#ifndef FILE_BATCH_WAIT_NS
#define FILE_BATCH_WAIT_NS (1000 * 1000)
#endif

#define DEFAULT_SQ_ENTRIES 256
#define CQ_PER_SQ          4
/* The kernel's own cap on one read or write (MAX_RW_COUNT); SQE lengths are 32 bits. */
#define MAX_IO_LEN 0x7ffff000u

/* IORING_OP_FIXED_FD_INSTALL (Linux 6.8), which liburing headers before 2.6 lack. */
#define OP_FIXED_FD_INSTALL 54

/* IORING_OP_WAITID (Linux 6.7), which liburing headers before 2.6 lack. */
#ifdef IORING_OP_WAITID
#define OP_WAITID IORING_OP_WAITID
#else
#define OP_WAITID 50
#endif
#ifndef P_PIDFD
#define P_PIDFD 3
#endif

/* user_data of the CQEs that complete no op (ops are aligned pointers). */
#define WAKE_TAG     ((uint64_t)1)
#define CANCEL_TAG   ((uint64_t)2)
#define MSG_WAKE_TAG ((uint64_t)3) /* a wake another ring sent (IORING_OP_MSG_RING) */
#define MSG_SENT_TAG ((uint64_t)5) /* the sender's CQE of a MSG_RING that failed */
#define LISTENER_TAG 4             /* or'ed into a struct listener pointer */
#define STREAM_TAG   6             /* or'ed into a struct stream pointer */
#define INSTALL_TAG  7             /* or'ed into a sequence number shifted by 3 (install()) */

/* Slots of the registered file table for direct descriptors (at most
 * RLIMIT_NOFILE; EDDY_URING_DIRECT_FILES=<n> sets it, for tests). */
#define DIRECT_FILES_DEFAULT 16384
#define FILE_SLOTS_MAX       256

/* Accepted connections a listener keeps for the next accepts; beyond that its
 * multishot accept is withdrawn until they are taken. */
#define LISTENER_READY_MAX 64

/* Sends of this many bytes and more go zero-copy (measured: docs/performance.md). */
#define ZC_MIN_DEFAULT (ZC_MIN_KIB * 1024)
#define ZC_MIN_KIB     64
_Static_assert(ZC_MIN_DEFAULT >= EDDY_ZEROCOPY_MIN, "lib/ flags the sends that may go zero-copy");

/* op->backend_data: flags in the low bits, a STAT op's statx slot above them */
enum {
    OP_BACKLOG = 1 << 0,     /* waits on s->backlog for an SQE */
    OP_CANCEL_WAIT = 1 << 1, /* in the kernel; its cancel waits on s->cancels for an SQE */
    OP_DEFERRED = 1 << 2,    /* cancelled before reaching the kernel: on s->deferred */
    OP_FLAGS = 7,
    OP_ACCEPT_WAIT = 1 << 3, /* an ACCEPT on its listener's waiters */
    OP_ZC = 1 << 4,          /* a SEND that went out as SEND_ZC */
    OP_ZC_NOTIF = 1 << 5,    /* its result is in op->result; its notification is to come */
    OP_NO_ZC = 1 << 6,       /* a SEND retried as a plain one (the socket refused zero-copy) */
    OP_RECV_WAIT = 1 << 7,   /* a RECV on its stream's waiters */
    OP_RECV_PLAIN = 1 << 8,  /* a RECV its stream sent to the kernel as a plain one */
    OP_LANE_WAIT = 1 << 9,   /* a socket read or write behind another (struct lanes) */
    OP_DIRECT = 1 << 10,     /* an ACCEPT into, or a CLOSE of, a direct descriptor */
    OP_NO_DIRECT = 1 << 11,  /* an ACCEPT retried plain (the file table was full) */
};

/* Multishot receive: the loop's buffer ring (group BUF_GROUP) has
 * RECV_BUFS_DEFAULT buffers of RECV_BUF_SIZE_DEFAULT bytes
 * (EDDY_URING_BUF_RING=<count>x<size> sets both, for tests); a socket keeps
 * at most STREAM_QUEUE_MAX of them filled for its next reads before its
 * multishot is withdrawn. A socket whose reads bring RECV_MULTISHOT_MAX bytes
 * and more (on average) is read with plain RECVs: the kernel then copies
 * straight into the caller's buffer, where a multishot costs a second copy
 * that weighs more than the re-arming it saves (measured:
 * docs/performance.md; EDDY_URING_RECV_MULTISHOT_MAX=<bytes> moves it, for
 * benchmarks). */
#define BUF_GROUP             0
#define RECV_BUFS_DEFAULT     256
#define RECV_BUF_SIZE_DEFAULT (16 * 1024)
#define STREAM_QUEUE_MAX      8
#define RECV_MULTISHOT_MAX    (8 * 1024)
/* Segments a socket may have lent to its stream at once (EDDY_OP_F_LEND):
 * past that its reads copy, so that a slow reader cannot hold the ring. */
#define STREAM_LEND_MAX 8
/* With incremental consumption a segment can be a few bytes: a socket may
 * queue this many times more of them (its bytes still bounded as above). */
#define STREAM_QUEUE_SEGS_INC 8

/* Linux 6.10 and 6.12 uapi, which liburing before 2.7 lacks. */
#define RECV_BUNDLE          (1U << 4)  /* IORING_RECVSEND_BUNDLE, in sqe->ioprio */
#define FEAT_RECVSEND_BUNDLE (1U << 14) /* IORING_FEAT_RECVSEND_BUNDLE */
#define PBUF_RING_INC        2          /* IOU_PBUF_RING_INC, in io_uring_buf_reg.flags */

/* Setup flags, best first; a kernel that rejects a set (-EINVAL) gets the next. */
static const unsigned setup_tiers[] = {
    IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_R_DISABLED |
        IORING_SETUP_SUBMIT_ALL,
    IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG | IORING_SETUP_SUBMIT_ALL,
    0,
};

/* The socket opcodes the backend cannot do without. */
static const unsigned char required_opcodes[] = {
    IORING_OP_ACCEPT,  IORING_OP_CONNECT, IORING_OP_RECV,         IORING_OP_SEND,
    IORING_OP_RECVMSG, IORING_OP_SENDMSG, IORING_OP_ASYNC_CANCEL, IORING_OP_READ,
};

/* The opcode behind each op kind that may or may not be there. */
static const unsigned char optional_opcodes[EDDY_OP_KIND_COUNT] = {
    [EDDY_OP_SHUTDOWN] = IORING_OP_SHUTDOWN, [EDDY_OP_CLOSE] = IORING_OP_CLOSE,
    [EDDY_OP_READ] = IORING_OP_READ,         [EDDY_OP_WRITE] = IORING_OP_WRITE,
    [EDDY_OP_FSYNC] = IORING_OP_FSYNC,       [EDDY_OP_OPEN] = IORING_OP_OPENAT,
    [EDDY_OP_STAT] = IORING_OP_STATX,        [EDDY_OP_UNLINK] = IORING_OP_UNLINKAT,
    [EDDY_OP_RENAME] = IORING_OP_RENAMEAT,   [EDDY_OP_MKDIR] = IORING_OP_MKDIRAT,
};

/* Where the kernel writes a STAT op's answer until it is copied out. */
struct stat_slot {
    struct statx stx;
    struct stat_slot *next; /* freelist */
};

/* A listening socket served by one multishot accept (Linux 5.19+): each
 * connection the kernel accepts completes the oldest waiting ACCEPT op, or
 * waits in ready[] for the next one, which then completes at once. The
 * multishot is armed while ops wait and withdrawn when none does, so it
 * never pins a socket nobody accepts on; closing the socket through the
 * backend withdraws it and closes the connections nobody took. */
struct listener {
    int fd;
    bool armed;                /* the multishot accept is in the kernel */
    bool disarming;            /* its cancel is queued */
    bool detached;             /* the socket was closed: freed by the multishot's last CQE */
    bool refused;              /* the kernel refused a multishot on it: single-shot accepts */
    bool direct;               /* its ACCEPTs take direct descriptors (EDDY_OP_F_DIRECT) */
    bool armed_direct;         /* its multishot accepts into the file table */
    struct eddy__list waiters; /* ACCEPT ops, oldest first */
    int *ready;                /* accepted fds, FIFO */
    unsigned ready_head, ready_count, ready_cap;
    struct eddy__list link; /* s->listener_list */
};

/* One buffer of the ring. Its bytes go out as segments (struct buf_seg),
 * queued for a socket's next reads or lent to a stream; it goes back to the
 * ring once the kernel is done filling it (out) and no segment is left in
 * it. With incremental consumption (IOU_PBUF_RING_INC, 6.12+) the kernel
 * keeps filling a buffer from where it stopped, for any socket, until it is
 * full. */
struct buf_meta {
    uint32_t filled; /* bytes the kernel has put in it since it went in the ring */
    uint32_t refs;   /* segments in it */
    int32_t succ;    /* the buffer put in the ring after it, where a bundle goes on; -1: none yet */
    bool out;        /* the kernel is done with it */
};

/* Bytes [off, off + len) of buffer bid: queued for a socket's next reads,
 * or lent to a stream through its socket (owner). */
struct buf_seg {
    uint32_t bid, off, len;
    int32_t next;         /* the socket's next queued segment, or the next free one; -1: none */
    struct stream *owner; /* lent: the socket whose count it is in */
};

/* A stream socket read through the ring (EDDY_OP_F_STREAM). Its RECVs wait
 * here in arrival order and are served one way at a time, so that bytes
 * keep their order: by a multishot receive into the loop's buffer ring
 * (once the socket is read in a loop: from its second RECV), whose
 * completions fill the oldest waiting RECV or, when none waits, stay queued
 * here for the next RECV to copy out without a system call; or, when the
 * multishot cannot be used (no buffers, refused, the stream ended), by one
 * plain RECV at a time. Never both at once. Closing the socket through the
 * backend withdraws the multishot and gives its buffers back; the struct
 * goes with the multishot's last CQE. */
struct stream {
    int fd;
    uint64_t serial;           /* the socket's (EDDY_OP_F_STREAM's u.io.offset) */
    bool armed;                /* the multishot is in the kernel */
    bool disarming;            /* its cancel is queued */
    bool detached;             /* the socket was closed: freed by the multishot's last CQE */
    bool plain_only;           /* refused, or the stream ended: plain RECVs from now on */
    bool plain_next;           /* the ring ran dry (-ENOBUFS): the next RECV goes plain */
    bool has_end;              /* end_result follows the queued bytes */
    bool broken;               /* bytes were dropped (no memory): end_result for good */
    bool retry;                /* on s->stream_retry: arming found no SQE */
    int end_result;            /* 0 (peer closed) or an error */
    unsigned recvs;            /* RECVs seen, up to 2 */
    uint32_t avg;              /* bytes a read brings: a moving average */
    struct eddy_op *plain;     /* the plain RECV in the kernel, if any */
    struct eddy__list waiters; /* RECV ops, oldest first */
    int32_t q_head, q_tail;    /* queued segments (struct buf_seg), -1: none */
    unsigned q_count;
    uint32_t q_bytes;
    unsigned lent;                /* segments lent to the stream reading it (EDDY_OP_F_LEND) */
    bool lending;                 /* its reads take lent segments: the multishot saves a copy */
    struct eddy__list link;       /* s->stream_list */
    struct eddy__list retry_link; /* s->stream_retry */
};

/* A socket's reads (RECV, RECVMSG) that no multishot serves, and its writes
 * (SEND, SENDMSG), go to the kernel one at a time in each direction; the
 * ops behind wait here, oldest first. The kernel wakes the ops waiting on a
 * socket newest first, so two of them in it at once would be served out of
 * arrival order (docs/sockets.md promises that order). Made on a socket's
 * first such op, freed when it is closed through the backend (or its number
 * comes back from the kernel). */
enum { LANE_READ, LANE_WRITE };

struct lanes {
    struct eddy_op *head[2];      /* the op in the kernel (or on the backlog), by direction */
    struct eddy__list waiting[2]; /* the ops behind it, oldest first */
};

/* Per-fd state (listeners, streams, lanes), found by fd: a table that grows to fit.
 * Real descriptors and direct ones (EDDY_FD_DIRECT) share it, interleaved:
 * fd_key(fd) is the index. */
struct fd_table {
    void **slots;
    size_t size;
};

static size_t fd_key(int fd)
{
    size_t n = (size_t)fd & ~(size_t)EDDY_FD_DIRECT;
    return fd & EDDY_FD_DIRECT ? n << 1 | 1 : n << 1;
}

static void *fd_table_get(const struct fd_table *t, int fd)
{
    return fd_key(fd) < t->size ? t->slots[fd_key(fd)] : NULL;
}

/* Makes room for fd (new slots NULL); false without memory. */
static bool fd_table_fit(struct fd_table *t, int fd)
{
    if (fd_key(fd) < t->size) return true;
    size_t size = t->size ? t->size : 64;
    while (size <= fd_key(fd))
        size *= 2;
    void **slots = realloc(t->slots, size * sizeof *slots);
    if (!slots) return false;
    memset(slots + t->size, 0, (size - t->size) * sizeof *slots);
    t->slots = slots;
    t->size = size;
    return true;
}

struct uring_state {
    struct io_uring ring;
    unsigned setup_flags; /* the set the kernel accepted */
    bool bound;           /* enabled (if created disabled) and owned by a thread */
    pthread_t owner;
    bool native[EDDY_OP_KIND_COUNT]; /* kinds that go through the ring */
    bool under_valgrind;             /* waits are cut into slices */

    int wakefd;               /* eventfd: wake() writes, a READ kept armed in the ring drains */
    uint64_t wake_value;      /* the armed READ's buffer */
    bool wake_armed;          /* that READ is queued or in the kernel */
    atomic_bool wake_pending; /* a wake was written and its CQE not yet reaped */
    bool msg_ring;            /* wakes io_uring loops with IORING_OP_MSG_RING (msg_ring_setup) */
    atomic_bool msg_target;   /* msg_ring, once enabled: other rings may post to this one */
    /* eddy_loop_fd: an eventfd registered with the ring, signalled as work
     * for the ring arrives (a deferred-taskrun ring does not poll readable
     * for it); poll() drains it. -1 until asked for. */
    int embed_efd;

    struct eddy__list backlog;  /* ops that found the SQ full, in arrival order */
    struct eddy__list cancels;  /* ops whose cancel found the SQ full */
    struct eddy__list deferred; /* ops to complete with -ECANCELED */
    struct stat_slot *free_slots;

    bool waitid;                     /* IORING_OP_WAITID (6.7+), for EDDY_OP_F_PROC */
    bool multishot_accept;           /* the kernel has it (and EDDY_CAPS_DISABLE does not say no) */
    bool send_zc;                    /* likewise for IORING_OP_SEND_ZC */
    size_t zc_min;                   /* sends of this many bytes and more go zero-copy */
    bool zc_any_peer;                /* EDDY_URING_SEND_ZC_MIN: peers on this host too */
    struct fd_table listeners;       /* struct listener *, by fd */
    struct eddy__list listener_list; /* every listener, detached ones included */

    bool multishot_recv;            /* the kernel has it, the buffer ring is registered */
    struct io_uring_buf_ring *br;   /* the buffer ring (NULL: none) */
    size_t br_map_len;              /* its mapping: the ring, then the buffers */
    char *bufs;                     /* buffer bid at bufs + bid * buf_size */
    struct buf_meta *buf_meta;      /* by bid */
    unsigned buf_count, buf_size;   /* buf_count: a power of two */
    unsigned bufs_held;             /* buffers filled and not yet given back */
    uint32_t recv_multishot_max;    /* sockets whose reads bring more go plain */
    struct fd_table streams;        /* struct stream *, by fd */
    struct eddy__list stream_list;  /* every stream, detached ones included */
    struct eddy__list stream_retry; /* streams to arm once there is room in the SQ */
    int32_t last_added;             /* the buffer put in the ring last (struct buf_meta.succ) */
    struct buf_seg *segs;           /* queued and lent segments, by index; the rest free */
    unsigned seg_cap;
    int32_t seg_free; /* the free list (struct buf_seg.next), -1: empty */
    bool recv_bundle; /* multishot receives take several buffers per CQE (6.10+) */
    bool buf_inc;     /* the ring is consumed incrementally (6.12+) */

    struct fd_table lanes; /* struct lanes *, by fd */
    unsigned file_ops;     /* READs and WRITEs on files (not pipes) pending */

    bool fd_install;         /* IORING_OP_FIXED_FD_INSTALL (6.8+) */
    bool direct;             /* accepts go into the file table (direct descriptors) */
    unsigned table_slots;    /* the file table's size; 0: none registered (or gone) */
    unsigned direct_slots;   /* its part for accepts (0: none) */
    unsigned direct_used;    /* slots taken, or promised to an ACCEPT in flight */
    unsigned direct_reserve; /* a multishot accepts direct only while more are free */
    uint64_t install_seq;    /* install()'s tags */
    uint64_t install_lost;   /* the tag of an install whose CQE did not come in time */
    bool reg_files;          /* files get a second name in the table (registered files) */
    bool reg_bufs;           /* a sparse buffer table (eddy_buffer_register) */
    unsigned file_base;      /* the first slot of their part */
    unsigned *file_free;     /* its free slots, a stack */
    int *file_fd;            /* by slot - file_base: the fd registered there, or -1 */
    unsigned file_free_count;
};

/* ---- SQEs ----------------------------------------------------------------- */

/* Enables a ring created disabled and registers its fd, on the first thread
 * that drives it; refuses any other thread afterwards. */
static int bind_thread(struct uring_state *s)
{
    if (s->bound) return pthread_equal(s->owner, pthread_self()) ? 0 : -EEXIST;
    if (s->setup_flags & IORING_SETUP_R_DISABLED) {
        /* io_uring_enable_rings() is declared by liburing 2.3 but not exported. */
        int err = io_uring_register(s->ring.ring_fd, IORING_REGISTER_ENABLE_RINGS, NULL, 0);
        if (err < 0) return err;
    }
    (void)io_uring_register_ring_fd(&s->ring); /* an optimisation: older kernels lack it */
    s->owner = pthread_self();
    s->bound = true;
    atomic_store(&s->msg_target, s->msg_ring); /* a disabled ring refuses MSG_RING */
    return 0;
}

/* A free SQE; when the SQ is full, submits what is queued and tries again.
 * NULL if there is still no room. */
static struct io_uring_sqe *get_sqe(struct uring_state *s)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&s->ring);
    if (sqe) return sqe;
    if (bind_thread(s) < 0 || io_uring_submit(&s->ring) <= 0) return NULL;
    return io_uring_get_sqe(&s->ring);
}

static unsigned io_len(size_t len)
{
    return len > MAX_IO_LEN ? MAX_IO_LEN : (unsigned)len;
}

static struct stat_slot *op_slot(const struct eddy_op *op)
{
    return (struct stat_slot *)(op->backend_data & ~(uintptr_t)OP_FLAGS);
}

/* The flags of any op: a STAT op's bits above OP_FLAGS are its slot's
 * address, not flags. */
static uintptr_t op_flags(const struct eddy_op *op)
{
    return op->kind == EDDY_OP_STAT ? op->backend_data & OP_FLAGS : op->backend_data;
}

static void prep_stat(struct io_uring_sqe *sqe, struct eddy_op *op)
{
    struct statx *stx = &op_slot(op)->stx;
    const char *path = op->u.path.path;
    int flags = op->u.path.flags;
    if (path)
        io_uring_prep_statx(sqe, AT_FDCWD, path, flags, STATX_BASIC_STATS, stx);
    else /* fstat */
        io_uring_prep_statx(sqe, (int)op->fd, "", flags | AT_EMPTY_PATH, STATX_BASIC_STATS, stx);
}

/* Whether op, a SEND, goes out zero-copy: large, and to a peer on another
 * host (EDDY_OP_F_ZEROCOPY) unless the threshold was set by hand. */
static bool wants_zc(const struct uring_state *s, const struct eddy_op *op)
{
    return s->send_zc && op->u.io.len >= s->zc_min && !(op->backend_data & OP_NO_ZC) &&
           ((op->flags & EDDY_OP_F_ZEROCOPY) || s->zc_any_peer);
}

/* A read or write on a FIFO or a terminal (EDDY_OP_F_PIPE). lib/fs.c sends
 * RECV and SEND only where READ and WRITE are not native here (a kernel
 * without IORING_FEAT_RW_CUR_POS): read and write at offset 0, which a
 * stream ignores. A write to a FIFO whose reader is gone raises SIGPIPE in
 * the thread that runs it; IOSQE_ASYNC runs it in an io-wq worker, which
 * ignores signals, rather than in the loop's thread, where the signal would
 * kill the process; a retry once the pipe has room goes back there too
 * (tests/test_files.c checks both). */
static void prep_pipe(struct io_uring_sqe *sqe, struct eddy_op *op)
{
    if (op->kind == EDDY_OP_RECV)
        io_uring_prep_read(sqe, (int)op->fd, op->u.io.buf, io_len(op->u.io.len), 0);
    else if (op->kind == EDDY_OP_SEND)
        io_uring_prep_write(sqe, (int)op->fd, op->u.io.buf, io_len(op->u.io.len), 0);
    if (op->kind == EDDY_OP_SEND || op->kind == EDDY_OP_WRITE) sqe->flags |= IOSQE_ASYNC;
}

/* A child's exit (EDDY_OP_F_PROC, fd its pidfd): waitid(P_PIDFD, fd, NULL,
 * WEXITED | WNOWAIT), which leaves the child for lib/process.c to reap.
 * liburing 2.6's io_uring_prep_waitid, spelled out for older headers. */
static void prep_waitid(struct io_uring_sqe *sqe, struct eddy_op *op)
{
    io_uring_prep_rw(OP_WAITID, sqe, (int)op->fd, NULL, P_PIDFD, 0);
    sqe->rw_flags = 0;                   /* waitid_flags */
    sqe->file_index = WEXITED | WNOWAIT; /* the options */
}

/* ---- direct descriptors --------------------------------------------------- */

static bool uses_fd(const struct eddy_op *op);

/* A direct descriptor's slot in the file table. */
static unsigned direct_slot(intptr_t fd)
{
    return (unsigned)(fd & ~EDDY_FD_DIRECT);
}

/* Points sqe at fd: a direct descriptor by its slot (IOSQE_FIXED_FILE). */
static void sqe_fd(struct io_uring_sqe *sqe, intptr_t fd)
{
    if (!eddy__fd_direct(fd)) return;
    sqe->fd = (int)direct_slot(fd);
    sqe->flags |= IOSQE_FIXED_FILE;
}

/* The kernel drops a connection it accepted into a full table (the accept
 * fails with -ENFILE), so slots are counted here and accepts go plain
 * before it is full: a single-shot ACCEPT takes a slot when a free one is
 * left (promised to it until its CQE); a multishot, which may accept a
 * whole listen queue at once, only while more than direct_reserve are free
 * (the listen queue's cap, net.core.somaxconn, at most half the table). */
static unsigned direct_free(const struct uring_state *s)
{
    return s->direct_slots - s->direct_used;
}

/* Whether op, an ACCEPT, goes into the file table. */
static bool accept_direct(const struct uring_state *s, const struct eddy_op *op)
{
    return s->direct && direct_free(s) > 0 && (op->flags & EDDY_OP_F_DIRECT) &&
           !(op->backend_data & OP_NO_DIRECT);
}

/* A direct descriptor is closed: its slot is free. */
static void direct_release(struct uring_state *s)
{
    if (s->direct_used) s->direct_used--;
}

/* An ACCEPT into a free slot of the file table, or a CLOSE of a direct
 * descriptor (a direct accept takes no SOCK_CLOEXEC: the slot is no
 * descriptor of the process). */
static void prep_direct(struct uring_state *s, struct io_uring_sqe *sqe, struct eddy_op *op)
{
    if (op->kind == EDDY_OP_ACCEPT) {
        io_uring_prep_accept(sqe, (int)op->fd, op->u.addr.addr, op->u.addr.addrlen, SOCK_NONBLOCK);
        sqe->file_index = IORING_FILE_INDEX_ALLOC;
        s->direct_used++; /* promised to it */
    } else {
        io_uring_prep_close_direct(sqe, direct_slot(op->fd));
    }
    op->backend_data |= OP_DIRECT;
}

/* Closes fd, a real or a direct descriptor, at once (what a listener kept
 * and nobody took). */
static void fd_close_any(struct uring_state *s, int fd)
{
    if (!eddy__fd_direct(fd)) {
        close(fd);
        return;
    }
    int none = -1;
    if (s->table_slots) (void)io_uring_register_files_update(&s->ring, direct_slot(fd), &none, 1);
    direct_release(s);
}

/* Fills sqe for op. Socket writes never raise SIGPIPE, as on every backend. */
static void prep_op(struct uring_state *s, struct io_uring_sqe *sqe, struct eddy_op *op)
{
    int fd = (int)op->fd;
    switch (op->kind) {
    case EDDY_OP_ACCEPT:
        io_uring_prep_accept(sqe, fd, op->u.addr.addr, op->u.addr.addrlen,
                             SOCK_NONBLOCK | SOCK_CLOEXEC);
        break;
    case EDDY_OP_CONNECT:
        io_uring_prep_connect(sqe, fd, op->u.addr.addr, op->u.addr.addrlen_value);
        break;
    case EDDY_OP_RECV:
        io_uring_prep_recv(sqe, fd, op->u.io.buf, io_len(op->u.io.len), op->u.io.flags);
        break;
    case EDDY_OP_SEND:
        if (wants_zc(s, op)) {
            io_uring_prep_send_zc(sqe, fd, op->u.io.buf, io_len(op->u.io.len),
                                  op->u.io.flags | MSG_NOSIGNAL, 0);
            op->backend_data |= OP_ZC;
            break;
        }
        io_uring_prep_send(sqe, fd, op->u.io.buf, io_len(op->u.io.len),
                           op->u.io.flags | MSG_NOSIGNAL);
        break;
    case EDDY_OP_RECVMSG:
        io_uring_prep_recvmsg(sqe, fd, op->u.msg.msg, (unsigned)op->u.msg.flags);
        break;
    case EDDY_OP_SENDMSG:
        io_uring_prep_sendmsg(sqe, fd, op->u.msg.msg, (unsigned)op->u.msg.flags | MSG_NOSIGNAL);
        break;
    case EDDY_OP_SHUTDOWN:
        io_uring_prep_shutdown(sqe, fd, op->u.io.flags);
        break;
    case EDDY_OP_CLOSE:
        io_uring_prep_close(sqe, fd);
        break;
    case EDDY_OP_READ: /* offset -1: the file position (IORING_FEAT_RW_CUR_POS) */
        if (op->flags & EDDY_OP_F_FIXED_BUF) /* a registered buffer, at index u.io.flags */
            io_uring_prep_read_fixed(sqe, fd, op->u.io.buf, io_len(op->u.io.len),
                                     (uint64_t)op->u.io.offset, op->u.io.flags);
        else
            io_uring_prep_read(sqe, fd, op->u.io.buf, io_len(op->u.io.len),
                               (uint64_t)op->u.io.offset);
        break;
    case EDDY_OP_WRITE:
        if (op->flags & EDDY_OP_F_FIXED_BUF)
            io_uring_prep_write_fixed(sqe, fd, op->u.io.buf, io_len(op->u.io.len),
                                      (uint64_t)op->u.io.offset, op->u.io.flags);
        else
            io_uring_prep_write(sqe, fd, op->u.io.buf, io_len(op->u.io.len),
                                (uint64_t)op->u.io.offset);
        break;
    case EDDY_OP_FSYNC:
        io_uring_prep_fsync(sqe, fd, 0);
        break;
    case EDDY_OP_OPEN:
        io_uring_prep_openat(sqe, AT_FDCWD, op->u.path.path, op->u.path.flags | O_CLOEXEC,
                             (mode_t)op->u.path.mode);
        break;
    case EDDY_OP_STAT:
        prep_stat(sqe, op);
        break;
    case EDDY_OP_UNLINK:
        io_uring_prep_unlinkat(sqe, AT_FDCWD, op->u.path.path, op->u.path.flags);
        break;
    case EDDY_OP_RENAME:
        io_uring_prep_renameat(sqe, AT_FDCWD, op->u.path.path, AT_FDCWD, op->u.path.path2, 0);
        break;
    case EDDY_OP_MKDIR:
        io_uring_prep_mkdirat(sqe, AT_FDCWD, op->u.path.path, (mode_t)op->u.path.mode);
        break;
    case EDDY_OP_POLL: /* one-shot: a watch re-arms it after each report (level-triggered) */
        if ((op->flags & EDDY_OP_F_PROC) && s->waitid) {
            prep_waitid(sqe, op);
            break;
        }
        io_uring_prep_poll_add(sqe, fd, op->u.io.flags == EDDY_READABLE ? POLLIN : POLLOUT);
        break;
    case EDDY_OP_SPLICE: /* lib/sendfile.c: file -> pipe, pipe -> socket */
        io_uring_prep_splice(sqe, fd, op->u.splice.off_in, (int)op->u.splice.fd_out, -1,
                             io_len(op->u.splice.len), op->u.splice.flags);
        break;
    }
    if (op->flags & EDDY_OP_F_PIPE) prep_pipe(sqe, op);
    if ((op->kind == EDDY_OP_ACCEPT && accept_direct(s, op)) ||
        (op->kind == EDDY_OP_CLOSE && eddy__fd_direct(op->fd)))
        prep_direct(s, sqe, op);
    else if (uses_fd(op))
        sqe_fd(sqe, op->fd);
    io_uring_sqe_set_data(sqe, op);
}

/* Its own CQE is of no interest: skipped on success where the kernel can. */
static void prep_cancel(struct uring_state *s, struct io_uring_sqe *sqe, struct eddy_op *op)
{
    io_uring_prep_cancel64(sqe, (uint64_t)(uintptr_t)op, 0);
    io_uring_sqe_set_data64(sqe, CANCEL_TAG);
    if (s->ring.features & IORING_FEAT_CQE_SKIP) sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
}

/* The wake READ, blocking on the eventfd: the kernel polls it for us. */
static void arm_wake(struct uring_state *s)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&s->ring);
    if (!sqe) return; /* the next poll tries again */
    io_uring_prep_read(sqe, s->wakefd, &s->wake_value, sizeof s->wake_value, 0);
    io_uring_sqe_set_data64(sqe, WAKE_TAG);
    s->wake_armed = true;
}

/* Moves what waited for room in the SQ into it, cancels first, oldest first. */
static void flush_waiting(struct uring_state *s)
{
    struct io_uring_sqe *sqe;
    while (!eddy__list_empty(&s->cancels) && (sqe = get_sqe(s))) {
        struct eddy_op *op =
            eddy__container_of(eddy__list_pop_front(&s->cancels), struct eddy_op, link);
        op->backend_data &= ~(uintptr_t)OP_CANCEL_WAIT;
        prep_cancel(s, sqe, op);
    }
    while (!eddy__list_empty(&s->backlog) && (sqe = get_sqe(s))) {
        struct eddy_op *op =
            eddy__container_of(eddy__list_pop_front(&s->backlog), struct eddy_op, link);
        op->backend_data &= ~(uintptr_t)OP_BACKLOG;
        prep_op(s, sqe, op);
    }
}

/* Sends op to the kernel, behind the backlog if there is one: ops on one fd
 * keep their order. */
static void send_op(struct uring_state *s, struct eddy_op *op)
{
    struct io_uring_sqe *sqe = eddy__list_empty(&s->backlog) ? get_sqe(s) : NULL;
    if (!sqe) {
        op->backend_data |= OP_BACKLOG;
        eddy__list_push_back(&s->backlog, &op->link);
        return;
    }
    prep_op(s, sqe, op);
}

/* ---- statx ---------------------------------------------------------------- */

static struct stat_slot *slot_get(struct uring_state *s)
{
    struct stat_slot *slot = s->free_slots;
    if (slot)
        s->free_slots = slot->next;
    else
        slot = malloc(sizeof *slot);
    return slot;
}

static void slot_put(struct uring_state *s, struct stat_slot *slot)
{
    slot->next = s->free_slots;
    s->free_slots = slot;
}

/* The struct stat that fstatat/fstat would have filled (glibc's own statx
 * conversion). */
static void stat_from_statx(struct stat *st, const struct statx *x)
{
    memset(st, 0, sizeof *st);
    st->st_dev = makedev(x->stx_dev_major, x->stx_dev_minor);
    st->st_ino = x->stx_ino;
    st->st_mode = x->stx_mode;
    st->st_nlink = x->stx_nlink;
    st->st_uid = x->stx_uid;
    st->st_gid = x->stx_gid;
    st->st_rdev = makedev(x->stx_rdev_major, x->stx_rdev_minor);
    st->st_size = (off_t)x->stx_size;
    st->st_blksize = (blksize_t)x->stx_blksize;
    st->st_blocks = (blkcnt_t)x->stx_blocks;
    st->st_atim.tv_sec = x->stx_atime.tv_sec;
    st->st_atim.tv_nsec = x->stx_atime.tv_nsec;
    st->st_mtim.tv_sec = x->stx_mtime.tv_sec;
    st->st_mtim.tv_nsec = x->stx_mtime.tv_nsec;
    st->st_ctim.tv_sec = x->stx_ctime.tv_sec;
    st->st_ctim.tv_nsec = x->stx_ctime.tv_nsec;
}

/* ---- completing ----------------------------------------------------------- */

static int finish_now(struct eddy_op *op, int64_t result)
{
    op->result = result;
    op->state = EDDY_OP_STATE_DONE;
    return EDDY_OP_DONE;
}

/* The bytes a successful op had the kernel write into the caller's memory. */
static void mark_written(struct eddy_op *op, int64_t result)
{
    switch (op->kind) {
    case EDDY_OP_RECV:
    case EDDY_OP_READ:
        MARK_DEFINED(op->u.io.buf, (size_t)result);
        break;
    case EDDY_OP_RECVMSG: {
        struct msghdr *msg = op->u.msg.msg;
        size_t left = (size_t)result;
        for (size_t i = 0; i < msg->msg_iovlen && left > 0; i++) {
            size_t n = msg->msg_iov[i].iov_len < left ? msg->msg_iov[i].iov_len : left;
            MARK_DEFINED(msg->msg_iov[i].iov_base, n);
            left -= n;
        }
        MARK_DEFINED(msg, sizeof *msg);
        if (msg->msg_name) MARK_DEFINED(msg->msg_name, msg->msg_namelen);
        if (msg->msg_control) MARK_DEFINED(msg->msg_control, msg->msg_controllen);
        break;
    }
    case EDDY_OP_ACCEPT:
        if (op->u.addr.addrlen) {
            MARK_DEFINED(op->u.addr.addrlen, sizeof *op->u.addr.addrlen);
            if (op->u.addr.addr) MARK_DEFINED(op->u.addr.addr, *op->u.addr.addrlen);
        }
        break;
    case EDDY_OP_STAT:
        MARK_DEFINED(&op_slot(op)->stx, sizeof(struct statx));
        break;
    }
}

static void stream_plain_done(struct uring_state *s, struct eddy_op *op, int64_t result);
static void lane_done(struct uring_state *s, struct eddy_op *op);

/* A read or write of a file (not a FIFO or a terminal): it ends on its own. */
static bool is_file_io(const struct eddy_op *op)
{
    return (op->kind == EDDY_OP_READ || op->kind == EDDY_OP_WRITE) && !(op->flags & EDDY_OP_F_PIPE);
}

static void finish(struct eddy_backend *b, struct eddy_op *op, int64_t result)
{
    struct uring_state *s = b->impl;
    if (result >= 0) mark_written(op, result);
    if (op->kind == EDDY_OP_POLL && result > 0) /* revents: any of them means "look" */
        result = (result & POLLNVAL) ? -EBADF : op->u.io.flags;
    else if (op->kind == EDDY_OP_POLL && result == 0 && (op->flags & EDDY_OP_F_PROC))
        result = op->u.io.flags; /* WAITID: the child has exited */
    if (op_flags(op) & OP_RECV_PLAIN) stream_plain_done(s, op, result);
    if (is_file_io(op)) s->file_ops--;
    lane_done(s, op);
    if (op->kind == EDDY_OP_STAT) {
        struct stat_slot *slot = op_slot(op);
        if (result == 0) stat_from_statx(op->u.path.statbuf, &slot->stx);
        slot_put(s, slot);
    }
    op->backend_data = 0;
    eddy__op_finish(b, op, result);
}

static int complete_deferred(struct eddy_backend *b)
{
    struct uring_state *s = b->impl;
    int completed = 0;
    struct eddy__list *node;
    while ((node = eddy__list_pop_front(&s->deferred))) {
        finish(b, eddy__container_of(node, struct eddy_op, link), -ECANCELED);
        completed++;
    }
    return completed;
}

/* ---- multishot accept ---------------------------------------------------- */

static uint64_t listener_tag(const struct listener *l)
{
    return (uint64_t)(uintptr_t)l | LISTENER_TAG;
}

static struct listener *listener_find(const struct uring_state *s, int fd)
{
    return fd_table_get(&s->listeners, fd);
}

/* The listener of fd, made on its first accept. NULL on -ENOMEM. */
static struct listener *listener_get(struct uring_state *s, int fd)
{
    struct listener *l = listener_find(s, fd);
    if (l) return l;
    if (!fd_table_fit(&s->listeners, fd) || !(l = calloc(1, sizeof *l))) return NULL;
    l->fd = fd;
    eddy__list_init(&l->waiters);
    eddy__list_push_back(&s->listener_list, &l->link);
    s->listeners.slots[fd_key(fd)] = l;
    return l;
}

static bool listener_push(struct listener *l, int fd)
{
    if (l->ready_count == l->ready_cap) {
        unsigned cap = l->ready_cap ? 2 * l->ready_cap : 16;
        int *ready = malloc(cap * sizeof *ready);
        if (!ready) return false;
        for (unsigned i = 0; i < l->ready_count; i++)
            ready[i] = l->ready[(l->ready_head + i) % l->ready_cap];
        free(l->ready);
        l->ready = ready;
        l->ready_cap = cap;
        l->ready_head = 0;
    }
    l->ready[(l->ready_head + l->ready_count++) % l->ready_cap] = fd;
    return true;
}

static int listener_pop(struct listener *l)
{
    int fd = l->ready[l->ready_head];
    l->ready_head = (l->ready_head + 1) % l->ready_cap;
    l->ready_count--;
    return fd;
}

static void listener_free(struct uring_state *s, struct listener *l)
{
    while (l->ready_count)
        fd_close_any(s, listener_pop(l));
    eddy__list_remove(&l->link);
    free(l->ready);
    free(l);
}

static void listener_arm(struct uring_state *s, struct listener *l)
{
    struct io_uring_sqe *sqe = get_sqe(s);
    if (!sqe) return; /* the next poll tries again */
    l->armed_direct = l->direct && s->direct && direct_free(s) > s->direct_reserve;
    if (l->armed_direct)
        io_uring_prep_multishot_accept_direct(sqe, l->fd, NULL, NULL, SOCK_NONBLOCK);
    else
        io_uring_prep_multishot_accept(sqe, l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    io_uring_sqe_set_data64(sqe, listener_tag(l));
    l->armed = true;
}

static void listener_disarm(struct uring_state *s, struct listener *l)
{
    struct io_uring_sqe *sqe = get_sqe(s);
    if (!sqe) return;
    io_uring_prep_cancel64(sqe, listener_tag(l), 0);
    io_uring_sqe_set_data64(sqe, CANCEL_TAG);
    if (s->ring.features & IORING_FEAT_CQE_SKIP) sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
    l->disarming = true;
}

/* Before each submission: armed exactly while some ACCEPT waits. */
static void listeners_reconcile(struct uring_state *s)
{
    struct eddy__list *node;
    for (node = s->listener_list.next; node != &s->listener_list; node = node->next) {
        struct listener *l = eddy__container_of(node, struct listener, link);
        bool wanted = !l->detached && !eddy__list_empty(&l->waiters);
        if (wanted && !l->armed)
            listener_arm(s, l);
        else if (!wanted && l->armed && !l->disarming)
            listener_disarm(s, l);
    }
}

static void defer_op(struct uring_state *s, struct eddy_op *op)
{
    op->backend_data = OP_DEFERRED;
    eddy__list_push_back(&s->deferred, &op->link);
}

/* The socket of fd is gone (closed through the backend, or its number came
 * back from the kernel, so it was closed by other means): its waiters end
 * with -ECANCELED, the connections nobody took are closed, and the multishot
 * is withdrawn at once, not to pin the socket. */
static void listener_detach(struct uring_state *s, int fd)
{
    struct listener *l = listener_find(s, fd);
    if (!l) return;
    s->listeners.slots[fd_key(fd)] = NULL;
    struct eddy__list *node;
    while ((node = eddy__list_pop_front(&l->waiters)))
        defer_op(s, eddy__container_of(node, struct eddy_op, link));
    l->detached = true;
    if (!l->armed) {
        listener_free(s, l);
        return;
    }
    while (l->ready_count)
        fd_close_any(s, listener_pop(l));
    if (!l->disarming) listener_disarm(s, l);
}

/* An ACCEPT without an address to fill: served by its listener's multishot.
 * -ENOMEM: take the single-shot path (no memory, or the kernel refused). */
static int accept_submit(struct eddy_backend *b, struct eddy_op *op)
{
    struct uring_state *s = b->impl;
    struct listener *l = listener_get(s, (int)op->fd);
    if (!l || l->refused) return -ENOMEM;
    if (eddy__list_empty(&l->waiters) && !l->ready_count && !l->armed)
        l->direct = op->flags & EDDY_OP_F_DIRECT; /* what the ACCEPTs allow */
    else if (l->direct && !(op->flags & EDDY_OP_F_DIRECT))
        return -ENOMEM; /* a real descriptor wanted: single-shot */
    if (l->ready_count) return finish_now(op, listener_pop(l));
    op->backend_data = OP_ACCEPT_WAIT;
    eddy__list_push_back(&l->waiters, &op->link);
    b->pending++;
    return EDDY_OP_PENDING;
}

/* The kernel refused the multishot with -EINVAL (no multishot accept there,
 * or a socket that does not listen): this socket's accepts go single-shot,
 * starting with those waiting, and get the kernel's own answer. */
static void multishot_refused(struct uring_state *s, struct listener *l)
{
    l->refused = true;
    struct eddy__list *node;
    while ((node = eddy__list_pop_front(&l->waiters))) {
        struct eddy_op *op = eddy__container_of(node, struct eddy_op, link);
        op->backend_data = OP_BACKLOG;
        eddy__list_push_back(&s->backlog, &op->link);
    }
}

static void fd_forget(struct uring_state *s, int fd);

/* The file table is nearly full (or full, which the counting should keep
 * from happening: that connection is lost): the direct multishot is
 * withdrawn, and one of plain descriptors armed in its place
 * (listeners_reconcile) until slots free. */
static int listener_full(struct uring_state *s, struct listener *l)
{
    if (l->armed && !l->disarming) listener_disarm(s, l);
    if (l->detached && !l->armed) listener_free(s, l);
    return 0;
}

/* A CQE of a listener's multishot: a connection (or an error) for the
 * oldest waiting ACCEPT, else one kept for the next. */
static int listener_cqe(struct eddy_backend *b, struct listener *l, const struct io_uring_cqe *cqe)
{
    struct uring_state *s = b->impl;
    int res = cqe->res;
    if (!(cqe->flags & IORING_CQE_F_MORE)) l->armed = l->disarming = false;
    if (l->armed_direct && res >= 0) {
        res |= (int)EDDY_FD_DIRECT;
        s->direct_used++;
        if (direct_free(s) <= s->direct_reserve && l->armed && !l->disarming)
            listener_disarm(s, l); /* re-armed plain */
    }
    if (l->armed_direct && res == -ENFILE) return listener_full(s, l);
    if (l->detached) {
        if (res >= 0) fd_close_any(s, res);
        if (!l->armed) listener_free(s, l);
        return 0;
    }
    if (res == -EINVAL && !l->armed) {
        multishot_refused(s, l);
        return 0;
    }
    if (res == -ECANCELED) return 0; /* withdrawn */
    if (res >= 0) fd_forget(s, res); /* that number was free: what was kept under it is stale */
    if (!eddy__list_empty(&l->waiters)) {
        struct eddy_op *op =
            eddy__container_of(eddy__list_pop_front(&l->waiters), struct eddy_op, link);
        finish(b, op, res);
        return 1;
    }
    if (res >= 0 && !listener_push(l, res)) fd_close_any(s, res); /* no memory: client reset */
    if (l->ready_count >= LISTENER_READY_MAX && l->armed && !l->disarming) listener_disarm(s, l);
    return 0;
}

static void listeners_free(struct uring_state *s)
{
    while (!eddy__list_empty(&s->listener_list))
        listener_free(s, eddy__container_of(s->listener_list.next, struct listener, link));
    free(s->listeners.slots);
}

/* ---- multishot receive ---------------------------------------------------- */

static uint64_t stream_tag(const struct stream *st)
{
    return (uint64_t)(uintptr_t)st | STREAM_TAG;
}

static struct stream *stream_find(const struct uring_state *s, int fd)
{
    return fd_table_get(&s->streams, fd);
}

static void stream_detach(struct uring_state *s, int fd);
static void lanes_detach(struct uring_state *s, int fd);

/* The stream of the socket serial under fd, made on its first RECV; one of
 * another socket that had fd before (closed without an op) is dropped.
 * NULL on -ENOMEM. */
static struct stream *stream_get(struct uring_state *s, int fd, uint64_t serial)
{
    struct stream *st = stream_find(s, fd);
    if (st && st->serial == serial) return st;
    if (st) stream_detach(s, fd);
    if (!fd_table_fit(&s->streams, fd) || !(st = calloc(1, sizeof *st))) return NULL;
    st->fd = fd;
    st->serial = serial;
    st->q_head = st->q_tail = -1;
    eddy__list_init(&st->waiters);
    eddy__list_init(&st->retry_link);
    eddy__list_push_back(&s->stream_list, &st->link);
    s->streams.slots[fd_key(fd)] = st;
    return st;
}

/* Puts buffer bid (back) in the ring, empty. */
static void buf_put(struct uring_state *s, unsigned bid)
{
    struct buf_meta *m = &s->buf_meta[bid];
    m->filled = 0;
    m->out = false;
    m->succ = -1;
    if (s->last_added >= 0) s->buf_meta[s->last_added].succ = (int32_t)bid;
    s->last_added = (int32_t)bid;
    io_uring_buf_ring_add(s->br, s->bufs + (size_t)bid * s->buf_size, s->buf_size,
                          (unsigned short)bid, io_uring_buf_ring_mask(s->buf_count), 0);
    io_uring_buf_ring_advance(s->br, 1);
}

/* Gives buffer bid back to the kernel. */
static void buf_give_back(struct uring_state *s, unsigned bid)
{
    buf_put(s, bid);
    s->bufs_held--;
}

/* A segment of bid is gone: the buffer goes back once it has none and the
 * kernel is done with it. */
static void buf_unref(struct uring_state *s, unsigned bid)
{
    struct buf_meta *m = &s->buf_meta[bid];
    if (--m->refs == 0 && m->out) buf_give_back(s, bid);
}

/* A free segment (the pool grows by doubling), or -1 without memory. */
static int32_t seg_get(struct uring_state *s)
{
    if (s->seg_free < 0) {
        unsigned cap = s->seg_cap ? s->seg_cap * 2 : 2 * s->buf_count;
        struct buf_seg *segs = cap > INT32_MAX ? NULL : realloc(s->segs, cap * sizeof *segs);
        if (!segs) return -1;
        for (unsigned i = s->seg_cap; i < cap; i++)
            segs[i].next = i + 1 < cap ? (int32_t)(i + 1) : -1;
        s->seg_free = (int32_t)s->seg_cap;
        s->segs = segs;
        s->seg_cap = cap;
    }
    int32_t i = s->seg_free;
    s->seg_free = s->segs[i].next;
    return i;
}

static void seg_put(struct uring_state *s, int32_t i)
{
    unsigned bid = s->segs[i].bid;
    s->segs[i].next = s->seg_free;
    s->seg_free = i;
    buf_unref(s, bid);
}

/* Queues bytes [off, off + len) of buffer bid for st's next reads; false
 * without memory. */
static bool stream_queue(struct uring_state *s, struct stream *st, unsigned bid, uint32_t off,
                         uint32_t len)
{
    int32_t i = seg_get(s);
    if (i < 0) return false;
    s->segs[i] = (struct buf_seg){.bid = bid, .off = off, .len = len, .next = -1};
    s->buf_meta[bid].refs++;
    if (st->q_tail >= 0)
        s->segs[st->q_tail].next = i;
    else
        st->q_head = i;
    st->q_tail = i;
    st->q_count++;
    st->q_bytes += len;
    return true;
}

/* Takes the first queued segment off st's queue (it stays allocated). */
static int32_t stream_unqueue(struct uring_state *s, struct stream *st)
{
    int32_t i = st->q_head;
    st->q_head = s->segs[i].next;
    if (st->q_head < 0) st->q_tail = -1;
    st->q_count--;
    st->q_bytes -= s->segs[i].len;
    return i;
}

static void stream_pop(struct uring_state *s, struct stream *st)
{
    seg_put(s, stream_unqueue(s, st));
}

/* The res bytes of a CQE from buffer bid on (a bundle goes on into the
 * buffers put in the ring after it), queued for st (NULL: dropped). The
 * buffers the kernel is done with are marked out: all it touched, or with
 * incremental consumption the full ones. False when memory ran out (the
 * bytes are dropped). */
static bool bufs_take(struct uring_state *s, struct stream *st, unsigned bid, uint32_t res)
{
    bool ok = true;
    for (uint32_t left = res;;) {
        struct buf_meta *m = &s->buf_meta[bid];
        int32_t succ = m->succ; /* before the buffer can go back to the ring */
        uint32_t take = s->buf_size - m->filled < left ? s->buf_size - m->filled : left;
        MARK_DEFINED(s->bufs + (size_t)bid * s->buf_size + m->filled, take);
        if (take && st && ok) ok = stream_queue(s, st, bid, m->filled, take);
        m->filled += take;
        left -= take;
        if (!s->buf_inc || m->filled == s->buf_size) {
            m->out = true;
            s->bufs_held++;
            if (m->refs == 0) buf_give_back(s, bid);
        }
        if (left == 0 || succ < 0) return ok;
        bid = (unsigned)succ;
    }
}

/* Whether a RECV that may take a lent segment (EDDY_OP_F_LEND) gets st's
 * first one: it fits, and st has fewer than STREAM_LEND_MAX lent. */
static bool stream_may_lend(const struct uring_state *s, const struct stream *st,
                            const struct eddy_op *op)
{
    return (op->flags & EDDY_OP_F_LEND) && st->q_head >= 0 && st->lent < STREAM_LEND_MAX &&
           s->segs[st->q_head].len <= op->u.io.len;
}

/* What a RECV gets from the queue: st's first segment lent (see
 * EDDY_OP_F_LEND), or as many queued bytes as fit in its buffer, else the
 * end of the stream. The queue must hold something. */
static int64_t stream_take(struct uring_state *s, struct stream *st, struct eddy_op *op)
{
    if (stream_may_lend(s, st, op)) {
        int32_t i = stream_unqueue(s, st);
        struct buf_seg *g = &s->segs[i];
        g->owner = st;
        st->lent++;
        op->u.io.buf = s->bufs + (size_t)g->bid * s->buf_size + g->off;
        op->u.io.offset = i;
        return g->len;
    }
    char *dst = op->u.io.buf;
    size_t want = op->u.io.len, got = 0;
    while (got < want && st->q_head >= 0) {
        struct buf_seg *g = &s->segs[st->q_head];
        size_t n = g->len < want - got ? g->len : want - got;
        memcpy(dst + got, s->bufs + (size_t)g->bid * s->buf_size + g->off, n);
        g->off += (uint32_t)n;
        g->len -= (uint32_t)n;
        st->q_bytes -= (uint32_t)n;
        got += n;
        if (g->len == 0) stream_pop(s, st);
    }
    if (got > 0) return (int64_t)got;
    if (!st->broken) st->has_end = false; /* told once; the RECVs after it ask the kernel */
    return st->end_result;
}

static bool stream_has_data(const struct stream *st)
{
    return st->q_head >= 0 || st->has_end;
}

static void stream_retry_later(struct uring_state *s, struct stream *st)
{
    if (!st->retry) eddy__list_push_back(&s->stream_retry, &st->retry_link);
    st->retry = true;
}

static void stream_disarm(struct uring_state *s, struct stream *st)
{
    struct io_uring_sqe *sqe = get_sqe(s);
    if (!sqe) {
        stream_retry_later(s, st);
        return;
    }
    io_uring_prep_cancel64(sqe, stream_tag(st), 0);
    io_uring_sqe_set_data64(sqe, CANCEL_TAG);
    if (s->ring.features & IORING_FEAT_CQE_SKIP) sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
    st->disarming = true;
}

/* Whether st's multishot should rest: enough is queued for its reader, or
 * its reads are big enough that plain RECVs, copying once, beat it (unless
 * its stream takes lent segments, which copy once too). */
static bool stream_should_rest(const struct uring_state *s, const struct stream *st)
{
    unsigned segs = s->buf_inc ? STREAM_QUEUE_MAX * STREAM_QUEUE_SEGS_INC : STREAM_QUEUE_MAX;
    return st->q_count >= segs || st->q_bytes >= STREAM_QUEUE_MAX * s->buf_size ||
           (!st->lending && st->avg >= s->recv_multishot_max);
}

/* Whether st's next reads may go through its multishot. */
static bool stream_wants_multishot(const struct uring_state *s, const struct stream *st)
{
    return s->multishot_recv && !st->plain_only && !st->plain_next && st->recvs >= 2 &&
           s->bufs_held < s->buf_count && !stream_should_rest(s, st);
}

/* Sends st's oldest waiting RECV to the kernel as a plain one. */
static void stream_send_plain(struct uring_state *s, struct stream *st)
{
    struct eddy_op *op =
        eddy__container_of(eddy__list_pop_front(&st->waiters), struct eddy_op, link);
    st->plain = op;
    st->plain_next = false;
    op->backend_data = OP_RECV_PLAIN;
    send_op(s, op);
}

/* After any change to st: RECVs wait with nothing queued, and neither the
 * multishot nor a plain RECV is in the kernel: start one of them. */
static void stream_kick(struct uring_state *s, struct stream *st)
{
    if (st->detached || eddy__list_empty(&st->waiters) || stream_has_data(st)) return;
    if (st->armed || st->plain) return;
    if (!stream_wants_multishot(s, st)) {
        stream_send_plain(s, st);
        return;
    }
    struct io_uring_sqe *sqe = get_sqe(s);
    if (!sqe) {
        stream_retry_later(s, st);
        return;
    }
    io_uring_prep_recv_multishot(sqe, st->fd, NULL, 0, 0);
    sqe_fd(sqe, st->fd);
    if (s->recv_bundle) sqe->ioprio |= RECV_BUNDLE;
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = BUF_GROUP;
    io_uring_sqe_set_data64(sqe, stream_tag(st));
    st->armed = true;
}

/* Completes the waiting RECVs that the queue can serve. */
static int stream_serve(struct eddy_backend *b, struct stream *st)
{
    struct uring_state *s = b->impl;
    int completed = 0;
    while (!eddy__list_empty(&st->waiters) && stream_has_data(st)) {
        struct eddy_op *op =
            eddy__container_of(eddy__list_pop_front(&st->waiters), struct eddy_op, link);
        op->backend_data = 0;
        finish(b, op, stream_take(s, st, op));
        completed++;
    }
    return completed;
}

static void stream_free(struct uring_state *s, struct stream *st)
{
    while (st->q_head >= 0)
        stream_pop(s, st);
    eddy__list_remove(&st->link);
    eddy__list_remove(&st->retry_link);
    free(st);
}

/* The socket of fd is gone (closed through the backend, or its number came
 * back from the kernel): its waiting RECVs end with -ECANCELED, its buffers
 * go back to the ring, and its multishot is withdrawn. */
static void stream_detach(struct uring_state *s, int fd)
{
    struct stream *st = stream_find(s, fd);
    if (!st) return;
    s->streams.slots[fd_key(fd)] = NULL;
    struct eddy__list *node;
    while ((node = eddy__list_pop_front(&st->waiters)))
        defer_op(s, eddy__container_of(node, struct eddy_op, link));
    st->detached = true;
    st->plain = NULL; /* it completes on its own; nothing of st is left to it */
    /* armed or lent: its last CQE, or the last release, frees it */
    if (!st->armed && !st->lent) {
        stream_free(s, st);
        return;
    }
    while (st->q_head >= 0)
        stream_pop(s, st);
    if (!st->disarming) stream_disarm(s, st);
}

/* Whatever the backend kept under fd's number is stale or going. */
static void fd_forget(struct uring_state *s, int fd)
{
    listener_detach(s, fd);
    stream_detach(s, fd);
    lanes_detach(s, fd);
}

/* A RECV on a stream socket. Bytes already queued are copied out at once,
 * without a system call; else the op waits for the multishot or its plain
 * RECV. -ENOMEM: take the ordinary path. */
static int stream_submit(struct eddy_backend *b, struct eddy_op *op)
{
    struct uring_state *s = b->impl;
    struct stream *st = stream_get(s, (int)op->fd, (uint64_t)op->u.io.offset);
    if (!st) return -ENOMEM;
    if (st->recvs < 2) st->recvs++;
    if (op->flags & EDDY_OP_F_LEND) st->lending = true;
    if (eddy__list_empty(&st->waiters) && !st->plain && stream_has_data(st))
        return finish_now(op, stream_take(s, st, op));
    op->backend_data = OP_RECV_WAIT;
    eddy__list_push_back(&st->waiters, &op->link);
    b->pending++;
    stream_kick(s, st);
    return EDDY_OP_PENDING;
}

/* Counts a read of n bytes into st's average (weight 1/4). */
static void stream_count(struct stream *st, int64_t n)
{
    st->avg = (uint32_t)((3 * (uint64_t)st->avg + (uint64_t)n) / 4);
}

/* st's plain RECV has ended with result. */
static void stream_plain_done(struct uring_state *s, struct eddy_op *op, int64_t result)
{
    struct stream *st = stream_find(s, (int)op->fd);
    if (!st || st->plain != op) return;
    st->plain = NULL;
    if (result > 0) stream_count(st, result);
    if (result <= 0 && result != -ECANCELED && result != -EINTR) st->plain_only = true; /* ended */
    stream_kick(s, st);
}

/* A CQE of a stream's multishot: bytes in a buffer of the ring, for the
 * oldest waiting RECV or queued for the next; the end of the stream or an
 * error, after the queued bytes; or the end of the multishot (withdrawn,
 * the ring ran dry, refused), after which the next RECV re-arms it or goes
 * plain. */
static int stream_cqe(struct eddy_backend *b, struct stream *st, const struct io_uring_cqe *cqe)
{
    struct uring_state *s = b->impl;
    int res = cqe->res;
    bool has_buf = cqe->flags & IORING_CQE_F_BUFFER;
    unsigned bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
    if (!(cqe->flags & IORING_CQE_F_MORE)) st->armed = st->disarming = false;
    /* No bytes: a bundle commits no buffer for them (it counts the buffers
     * the bytes took), nor does incremental consumption; a plain multishot
     * gave its one buffer up. */
    if (has_buf && res <= 0 && (s->recv_bundle || s->buf_inc)) has_buf = false;
    if (st->detached) {
        if (has_buf) (void)bufs_take(s, NULL, bid, res > 0 ? (uint32_t)res : 0);
        if (!st->armed && !st->lent) stream_free(s, st);
        return 0;
    }
    if (has_buf && !bufs_take(s, st->broken ? NULL : st, bid, res > 0 ? (uint32_t)res : 0)) {
        /* bytes were dropped: every read from now on fails, after the queued bytes */
        st->broken = st->has_end = st->plain_only = true;
        st->end_result = -ENOMEM;
        if (st->armed && !st->disarming) stream_disarm(s, st);
    } else if (has_buf && res > 0) {
        stream_count(st, res);
    }
    if (st->broken) {
        /* nothing more is taken in */
    } else if (res == -ENOBUFS) {
        st->plain_next = true;
    } else if (res == -EINVAL && !st->armed && !has_buf && s->recv_bundle) {
        s->recv_bundle = false; /* refused with bundles: re-armed without */
    } else if (res == -EINVAL && !st->armed && !has_buf) {
        st->plain_only = true; /* refused */
    } else if (res <= 0 && res != -ECANCELED && res != -EINTR && !st->has_end) {
        st->has_end = true;
        st->end_result = res;
        st->plain_only = true;
    }
    int completed = stream_serve(b, st);
    if (stream_should_rest(s, st) && st->armed && !st->disarming) stream_disarm(s, st);
    stream_kick(s, st);
    return completed;
}

/* Arms, or withdraws, what found no room in the SQ before. */
static void streams_retry(struct uring_state *s)
{
    struct eddy__list *node;
    while ((node = eddy__list_pop_front(&s->stream_retry))) {
        struct stream *st = eddy__container_of(node, struct stream, retry_link);
        eddy__list_init(&st->retry_link);
        st->retry = false;
        if (st->armed && !st->disarming && (st->detached || stream_should_rest(s, st)))
            stream_disarm(s, st);
        else
            stream_kick(s, st);
        if (st->retry) break; /* still no room */
    }
}

static void streams_free(struct uring_state *s)
{
    while (!eddy__list_empty(&s->stream_list))
        stream_free(s, eddy__container_of(s->stream_list.next, struct stream, link));
    free(s->streams.slots);
    free(s->buf_meta);
    free(s->segs);
    if (s->br) munmap(s->br, s->br_map_len);
}

static bool cap_disabled(const char *name);

/* The buffer ring, registered as group BUF_GROUP, consumed incrementally
 * where the kernel can (6.12+) and EDDY_CAPS_DISABLE does not say no: 0, or
 * why not (the kernel has none before 5.19). */
static int buf_ring_setup(struct uring_state *s)
{
    unsigned count = RECV_BUFS_DEFAULT, size = RECV_BUF_SIZE_DEFAULT;
    const char *knob = getenv("EDDY_URING_BUF_RING");
    if (knob && *knob) {
        char *x, *end;
        unsigned long c = strtoul(knob, &x, 10), z = *x == 'x' ? strtoul(x + 1, &end, 10) : 0;
        if (z && *end == '\0' && c >= 1 && c <= 32768 && (c & (c - 1)) == 0 && z <= (1u << 20)) {
            count = (unsigned)c;
            size = (unsigned)z;
        }
    }
    long page = sysconf(_SC_PAGESIZE);
    size_t ring_len =
        (count * sizeof(struct io_uring_buf) + (size_t)page - 1) & ~((size_t)page - 1);
    size_t len = ring_len + (size_t)count * size;
    void *map = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (map == MAP_FAILED) return -errno;
    s->buf_meta = calloc(count, sizeof *s->buf_meta);
    if (!s->buf_meta) {
        munmap(map, len);
        return -ENOMEM;
    }
    struct io_uring_buf_reg reg;
    memset(&reg, 0, sizeof reg);
    reg.ring_addr = (uint64_t)(uintptr_t)map;
    reg.ring_entries = count;
    reg.bgid = BUF_GROUP;
    int err = -EINVAL;
    if (!cap_disabled("buffer_ring_incremental")) {
        reg.pad = PBUF_RING_INC; /* the flags field, in newer headers */
        err = io_uring_register_buf_ring(&s->ring, &reg, 0);
        s->buf_inc = err == 0;
    }
    if (err == -EINVAL) { /* before 6.12, or not wanted */
        reg.pad = 0;
        err = io_uring_register_buf_ring(&s->ring, &reg, 0);
    }
    if (err < 0) {
        free(s->buf_meta);
        s->buf_meta = NULL;
        munmap(map, len);
        return err;
    }
    s->br = map;
    s->br_map_len = len;
    s->bufs = (char *)map + ring_len;
    s->buf_count = count;
    s->buf_size = size;
    s->last_added = -1;
    s->seg_free = -1;
    io_uring_buf_ring_init(s->br);
    for (unsigned bid = 0; bid < count; bid++)
        buf_put(s, bid);
    return 0;
}

/* A stream is done with a segment its socket's RECV lent (EDDY_OP_F_LEND). */
static void uring_lend_release(struct eddy_backend *b, int64_t token)
{
    struct uring_state *s = b->impl;
    struct stream *st = s->segs[token].owner;
    st->lent--;
    seg_put(s, (int32_t)token);
    if (st->detached && !st->armed && !st->lent) stream_free(s, st);
}

/* Sends op again as a plain SEND (its socket refused zero-copy), behind
 * the backlog if there is one. */
static void resend_plain(struct uring_state *s, struct eddy_op *op)
{
    op->backend_data = OP_NO_ZC;
    send_op(s, op);
}

/* A CQE of a SEND that went out zero-copy: its result, with IORING_CQE_F_MORE
 * when a notification follows, or that notification. The op completes with
 * the last of them, when the kernel no longer reads its buffer (1), and its
 * result is kept in op->result until then (0). */
static int zc_cqe(struct eddy_backend *b, struct eddy_op *op, const struct io_uring_cqe *cqe)
{
    struct uring_state *s = b->impl;
    if (!(cqe->flags & IORING_CQE_F_NOTIF)) {
        if (op->backend_data & OP_CANCEL_WAIT) { /* too late to ask */
            eddy__list_remove(&op->link);
            op->backend_data &= ~(uintptr_t)OP_CANCEL_WAIT;
        }
        op->result = cqe->res;
        if (op->result == -EINTR && op->state == EDDY_OP_STATE_CANCELLING) op->result = -ECANCELED;
        if (cqe->flags & IORING_CQE_F_MORE) {
            op->backend_data |= OP_ZC_NOTIF;
            lane_done(s, op); /* its bytes are in the socket: the next send may go */
            return 0;
        }
    }
    if (op->result == -EOPNOTSUPP && op->state != EDDY_OP_STATE_CANCELLING) {
        resend_plain(s, op);
        return 0;
    }
    finish(b, op, op->result);
    return 1;
}

/* The CQE of a direct ACCEPT or CLOSE, its result in *result: a slot
 * becomes EDDY_FD_DIRECT | slot, a closed one makes room; a full table (slots
 * taken behind eddy's back) sends the ACCEPT again for a plain descriptor
 * (true: not completed). */
static bool direct_cqe(struct uring_state *s, struct eddy_op *op, int64_t *result)
{
    if (op->kind == EDDY_OP_CLOSE || *result < 0) direct_release(s); /* freed, or not taken */
    if (op->kind == EDDY_OP_CLOSE) return false;
    if (*result == -ENFILE && op->state != EDDY_OP_STATE_CANCELLING) {
        op->backend_data = OP_NO_DIRECT;
        send_op(s, op);
        return true;
    }
    if (*result >= 0) *result |= EDDY_FD_DIRECT;
    return false;
}

/* install()'s CQE, reaped after install() has read it; one that came too
 * late for it is closed. */
static int install_cqe(struct uring_state *s, uint64_t tag, const struct io_uring_cqe *cqe)
{
    if (tag == s->install_lost && cqe->res >= 0) close(cqe->res);
    return 0;
}

/* One CQE: an op's completion (1), or the wake READ's, or a cancel's (0). */
static int handle_cqe(struct eddy_backend *b, const struct io_uring_cqe *cqe)
{
    struct uring_state *s = b->impl;
    uint64_t tag = io_uring_cqe_get_data64(cqe);
    if (tag == WAKE_TAG) {
        MARK_DEFINED(&s->wake_value, sizeof s->wake_value);
        s->wake_armed = false;
        atomic_store(&s->wake_pending, false);
        return 0;
    }
    if (tag == MSG_WAKE_TAG) {
        atomic_store(&s->wake_pending, false);
        return 0;
    }
    if (tag == CANCEL_TAG || tag == MSG_SENT_TAG || tag == LIBURING_UDATA_TIMEOUT) return 0;
    if ((tag & 7) == INSTALL_TAG) return install_cqe(s, tag, cqe);
    if ((tag & 7) == LISTENER_TAG)
        return listener_cqe(b, (struct listener *)(uintptr_t)(tag & ~(uint64_t)7), cqe);
    if ((tag & 7) == STREAM_TAG)
        return stream_cqe(b, (struct stream *)(uintptr_t)(tag & ~(uint64_t)7), cqe);
    struct eddy_op *op = (struct eddy_op *)(uintptr_t)tag;
    if (op_flags(op) & OP_ZC) return zc_cqe(b, op, cqe);
    if (op->backend_data & OP_CANCEL_WAIT) eddy__list_remove(&op->link); /* too late to ask */
    int64_t result = cqe->res;
    if ((op->kind == EDDY_OP_ACCEPT || op->kind == EDDY_OP_CLOSE) &&
        (op->backend_data & OP_DIRECT) && direct_cqe(s, op, &result))
        return 0;
    if (result >= 0 && (op->kind == EDDY_OP_ACCEPT || op->kind == EDDY_OP_OPEN))
        fd_forget(s, (int)result); /* that number was free: what was kept under it is stale */
    /* Work the kernel had started is interrupted rather than cancelled. */
    if (result == -EINTR && op->state == EDDY_OP_STATE_CANCELLING) result = -ECANCELED;
    finish(b, op, result);
    return 1;
}

/* What a batch of CQEs will touch went cold while the other connections were
 * served (an op in its task's frame, a stream and its first waiter): asked
 * for all at once before the first CQE is handled, the misses overlap
 * instead of coming one after the other. */
static void reap_prefetch(struct uring_state *s)
{
    unsigned head;
    struct io_uring_cqe *cqe;
    io_uring_for_each_cqe(&s->ring, head, cqe)
    {
        uint64_t tag = io_uring_cqe_get_data64(cqe);
        if (tag == WAKE_TAG || tag == CANCEL_TAG || tag == LIBURING_UDATA_TIMEOUT) continue;
        struct eddy_op *op = (struct eddy_op *)(uintptr_t)(tag & ~(uint64_t)7);
        __builtin_prefetch(op); /* or the stream, the listener */
        if ((tag & 7) == 0) __builtin_prefetch(&op->link);
    }
    io_uring_for_each_cqe(&s->ring, head, cqe)
    {
        uint64_t tag = io_uring_cqe_get_data64(cqe);
        if ((tag & 7) != STREAM_TAG) continue;
        struct stream *st = (struct stream *)(uintptr_t)(tag & ~(uint64_t)7);
        __builtin_prefetch(st->waiters.next); /* the head itself when none waits */
    }
}

/* Completes every CQE in the ring, then what the kernel held back for lack of
 * room in it (IORING_FEAT_NODROP), until none is left. */
static int reap(struct eddy_backend *b)
{
    struct uring_state *s = b->impl;
    int completed = 0;
    for (;;) {
        unsigned head, seen = 0;
        struct io_uring_cqe *cqe;
        if (io_uring_cq_ready(&s->ring) > 1) reap_prefetch(s);
        io_uring_for_each_cqe(&s->ring, head, cqe)
        {
            completed += handle_cqe(b, cqe);
            seen++;
        }
        io_uring_cq_advance(&s->ring, seen);
        if (!io_uring_cq_has_overflow(&s->ring) || io_uring_get_events(&s->ring) < 0) break;
    }
    return completed;
}

/* ---- one read and one write per socket in the kernel ---------------------- */

/* The lane an op goes down (LANE_READ, LANE_WRITE), or -1: none. */
static int lane_dir(const struct eddy_op *op)
{
    switch (op->kind) {
    case EDDY_OP_RECV:
    case EDDY_OP_RECVMSG:
        return LANE_READ;
    case EDDY_OP_SEND:
    case EDDY_OP_SENDMSG:
        return LANE_WRITE;
    default:
        return -1;
    }
}

/* Whether op, a socket read or write, may go to the kernel now (and is its
 * lane's head from now on); false: it waits behind the head. Without
 * memory for the lanes it goes at once, unordered. */
static bool lane_enter(struct uring_state *s, struct eddy_op *op, int dir)
{
    int fd = (int)op->fd;
    struct lanes *l = fd_table_get(&s->lanes, fd);
    if (!l) {
        if (!fd_table_fit(&s->lanes, fd) || !(l = calloc(1, sizeof *l))) return true;
        eddy__list_init(&l->waiting[LANE_READ]);
        eddy__list_init(&l->waiting[LANE_WRITE]);
        s->lanes.slots[fd_key(fd)] = l;
    }
    if (!l->head[dir]) {
        l->head[dir] = op;
        return true;
    }
    op->backend_data = OP_LANE_WAIT;
    eddy__list_push_back(&l->waiting[dir], &op->link);
    return false;
}

/* op has ended (or, a zero-copy send, no longer needs to go first): if it
 * was its lane's head, the oldest op behind it goes to the kernel. */
static void lane_done(struct uring_state *s, struct eddy_op *op)
{
    int dir = lane_dir(op);
    if (dir < 0) return;
    struct lanes *l = fd_table_get(&s->lanes, (int)op->fd);
    if (!l || l->head[dir] != op) return;
    struct eddy__list *node = eddy__list_pop_front(&l->waiting[dir]);
    l->head[dir] = node ? eddy__container_of(node, struct eddy_op, link) : NULL;
    if (!node) return;
    l->head[dir]->backend_data = 0;
    send_op(s, l->head[dir]);
}

/* The socket of fd is gone: the ops waiting in its lanes end with
 * -ECANCELED; those in the kernel end on their own. */
static void lanes_detach(struct uring_state *s, int fd)
{
    struct lanes *l = fd_table_get(&s->lanes, fd);
    if (!l) return;
    s->lanes.slots[fd_key(fd)] = NULL;
    for (int dir = LANE_READ; dir <= LANE_WRITE; dir++) {
        struct eddy__list *node;
        while ((node = eddy__list_pop_front(&l->waiting[dir])))
            defer_op(s, eddy__container_of(node, struct eddy_op, link));
    }
    free(l);
}

static void lanes_free(struct uring_state *s)
{
    for (size_t fd = 0; fd < s->lanes.size; fd++)
        free(s->lanes.slots[fd]);
    free(s->lanes.slots);
}

/* ---- the ops table -------------------------------------------------------- */

static bool is_socket_kind(unsigned kind)
{
    return kind >= EDDY_OP_ACCEPT && kind <= EDDY_OP_CLOSE;
}

/* Socket ops always (SHUTDOWN and CLOSE by syscall if need be); file ops
 * whose opcode the kernel has; never EDDY_OP_WORK. */
static bool uring_handles(const struct eddy_backend *b, enum eddy_op_kind kind)
{
    const struct uring_state *s = b->impl;
    return is_socket_kind(kind) || (kind < EDDY_OP_KIND_COUNT && s->native[kind]);
}

static bool uses_fd(const struct eddy_op *op)
{
    switch (op->kind) {
    case EDDY_OP_OPEN:
    case EDDY_OP_UNLINK:
    case EDDY_OP_RENAME:
    case EDDY_OP_MKDIR:
        return false;
    case EDDY_OP_STAT:
        return op->u.path.path == NULL;
    default:
        return true;
    }
}

/* SHUTDOWN and CLOSE on a kernel without their opcodes (before 5.11 and 5.6):
 * neither blocks, so the plain syscall at once is as good. */
static int submit_sync(struct eddy_op *op)
{
    int r =
        op->kind == EDDY_OP_SHUTDOWN ? shutdown((int)op->fd, op->u.io.flags) : close((int)op->fd);
    if (r < 0 && !(op->kind == EDDY_OP_CLOSE && errno == EINTR)) return finish_now(op, -errno);
    return finish_now(op, 0);
}

static int uring_submit(struct eddy_backend *b, struct eddy_op *op)
{
    struct uring_state *s = b->impl;
    if (!uring_handles(b, (enum eddy_op_kind)op->kind)) return -ENOTSUP;
    if (uses_fd(op) && (op->fd < 0 || op->fd > INT_MAX)) return finish_now(op, -EBADF);
    if (op->kind == EDDY_OP_CLOSE) fd_forget(s, (int)op->fd);
    if (!s->native[op->kind]) return submit_sync(op);
    if (op->kind == EDDY_OP_ACCEPT && s->multishot_accept && !op->u.addr.addr) {
        int rc = accept_submit(b, op);
        if (rc != -ENOMEM) return rc;
    }
    if (op->kind == EDDY_OP_RECV && s->multishot_recv && (op->flags & EDDY_OP_F_STREAM) &&
        op->u.io.flags == 0) {
        int rc = stream_submit(b, op);
        if (rc != -ENOMEM) return rc;
    }
    op->backend_data = 0;
    if (op->kind == EDDY_OP_STAT) {
        struct stat_slot *slot = slot_get(s);
        if (!slot) return -ENOMEM;
        op->backend_data = (uintptr_t)slot;
    }
    b->pending++;
    if (is_file_io(op)) s->file_ops++;
    int dir = lane_dir(op);
    if (dir < 0 || lane_enter(s, op, dir)) send_op(s, op);
    return EDDY_OP_PENDING;
}

/* Only asks: the op's own completion still comes, from poll(). */
static void uring_cancel(struct eddy_backend *b, struct eddy_op *op)
{
    struct uring_state *s = b->impl;
    /* The listener, the stream or the lane keeps what comes for it. */
    if (op_flags(op) & (OP_ACCEPT_WAIT | OP_RECV_WAIT | OP_LANE_WAIT)) {
        eddy__list_remove(&op->link);
        defer_op(s, op);
        return;
    }
    if (op->backend_data & OP_BACKLOG) { /* the kernel never saw it */
        eddy__list_remove(&op->link);
        op->backend_data = (op->backend_data & ~(uintptr_t)OP_BACKLOG) | OP_DEFERRED;
        eddy__list_push_back(&s->deferred, &op->link);
        return;
    }
    /* A zero-copy send with its result in waits only for its notification. */
    if (op_flags(op) & (OP_DEFERRED | OP_CANCEL_WAIT | OP_ZC_NOTIF)) return;
    struct io_uring_sqe *sqe = get_sqe(s);
    if (!sqe) {
        op->backend_data |= OP_CANCEL_WAIT;
        eddy__list_push_back(&s->cancels, &op->link);
        return;
    }
    prep_cancel(s, sqe, op);
}

static int wait_for(struct uring_state *s, int64_t timeout_ns)
{
    struct __kernel_timespec ts = {.tv_sec = timeout_ns / 1000000000,
                                   .tv_nsec = timeout_ns % 1000000000};
    struct io_uring_cqe *cqe;
    return io_uring_submit_and_wait_timeout(&s->ring, &cqe, 1, &ts, NULL);
}

/* Waits up to timeout_ns (< 0: no limit) in slices, yielding to the other
 * threads between them. */
static int wait_in_slices(struct uring_state *s, int64_t timeout_ns)
{
    for (;;) {
        int64_t slice =
            timeout_ns >= 0 && timeout_ns < VALGRIND_SLICE_NS ? timeout_ns : VALGRIND_SLICE_NS;
        int r = wait_for(s, slice);
        if (r != -ETIME || io_uring_cq_ready(&s->ring)) return r;
        sched_yield(); /* Valgrind lets the other threads run here */
        if (timeout_ns >= 0 && (timeout_ns -= slice) <= 0) return r;
    }
}

/* A loop whose pending ops are all file reads and writes sleeps until half
 * of them are done (or FILE_BATCH_WAIT_NS, or its own timeout, has passed),
 * not until the first: one wake-up per half batch, and the next reads go to
 * the kernel in one submission, which the block layer plugs into one kick of
 * the device (on a virtual machine, one exit to the hypervisor instead of
 * one per few reads). Not all of them either: the device would have nothing
 * queued while the last reads of a batch finish (docs/performance.md, "Files,
 * O_DIRECT"). A wake from another thread waits that long at most. */
static int file_batch_wait(struct uring_state *s, int64_t timeout_ns)
{
    if (timeout_ns < 0 || timeout_ns > FILE_BATCH_WAIT_NS) timeout_ns = FILE_BATCH_WAIT_NS;
    struct __kernel_timespec ts = {.tv_sec = timeout_ns / 1000000000,
                                   .tv_nsec = timeout_ns % 1000000000};
    struct io_uring_cqe *cqe;
    return io_uring_submit_and_wait_timeout(&s->ring, &cqe, (s->file_ops + 1) / 2, &ts, NULL);
}

/* Submits, waits, and tells the kernel to run its deferred completion work
 * (DEFER_TASKRUN posts CQEs only when we ask for events). */
static int submit_and_wait(struct eddy_backend *b, int64_t timeout_ns)
{
    struct uring_state *s = b->impl;
    if (timeout_ns == 0) {
        if (!io_uring_sq_ready(&s->ring) && b->pending == 0) return 0;
        return io_uring_submit_and_get_events(&s->ring);
    }
    if (s->under_valgrind) return wait_in_slices(s, timeout_ns);
    if (s->file_ops > 1 && b->pending == s->file_ops) return file_batch_wait(s, timeout_ns);
    if (timeout_ns < 0) return io_uring_submit_and_wait(&s->ring, 1);
    return wait_for(s, timeout_ns);
}

static int uring_poll(struct eddy_backend *b, int64_t timeout_ns)
{
    struct uring_state *s = b->impl;
    int err = bind_thread(s);
    if (err < 0) return err;
    flush_waiting(s);
    listeners_reconcile(s);
    if (!eddy__list_empty(&s->stream_retry)) streams_retry(s);
    if (!s->wake_armed) arm_wake(s);
    if (s->embed_efd >= 0) {
        eventfd_t drained;
        (void)eventfd_read(s->embed_efd, &drained); /* -EAGAIN when nothing came */
    }
    int completed = complete_deferred(b);
    if (completed) timeout_ns = 0;
    err = submit_and_wait(b, timeout_ns);
    completed += reap(b);
    /* A timeout, a signal, or a kernel short of room or memory for the moment
     * only ends this wait. */
    if (err < 0 && err != -ETIME && err != -EINTR && err != -EAGAIN && err != -EBUSY) return err;
    return completed;
}

/* ---- waking one ring from another (IORING_OP_MSG_RING) ------------------- */

/* Kernels from 6.3 (which IORING_FEAT_REG_REG_RING marks) post a MSG_RING
 * into a ring set up for deferred task work through that ring's own task
 * work; older ones have MSG_RING without that. */
#ifndef IORING_FEAT_REG_REG_RING
#define IORING_FEAT_REG_REG_RING (1U << 13)
#endif

static bool cap_disabled(const char *name);

static void msg_ring_setup(struct uring_state *s)
{
    s->msg_ring = false;
    if (!(s->ring.features & IORING_FEAT_REG_REG_RING) || cap_disabled("msg_ring")) return;
    struct io_uring_probe *p = io_uring_get_probe_ring(&s->ring);
    if (!p) return;
    s->msg_ring = io_uring_opcode_supported(p, IORING_OP_MSG_RING);
    io_uring_free_probe(p);
}

/* Wakes target from the ring of the io_uring loop this thread runs, if any:
 * the CQE lands in the target's ring, so it has no eventfd to read and no
 * READ to re-arm. The MSG_RING is submitted at once (the target's fd is
 * valid while the caller holds its loop's remote lock) and runs inline: a
 * failure's CQE is in this ring when the submit returns. false when this
 * path cannot wake: the caller writes the eventfd. */
static bool wake_by_msg_ring(struct uring_state *target)
{
    struct eddy_backend *here = eddy__thread_backend();
    if (!here || here->ops != &eddy__uring_backend || !atomic_load(&target->msg_target))
        return false;
    struct uring_state *s = here->impl;
    if (s == target || !s->msg_ring || !s->bound || !pthread_equal(s->owner, pthread_self()))
        return false;
    struct io_uring_sqe *sqe = get_sqe(s);
    if (!sqe) return false;
    io_uring_prep_msg_ring(sqe, target->ring.ring_fd, 0, MSG_WAKE_TAG, 0);
    io_uring_sqe_set_data64(sqe, MSG_SENT_TAG);
    sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
    if (io_uring_submit(&s->ring) < 0) {
        /* Still in the SQ, for this thread's next submit: sent late, it
         * could reach another ring that took the fd number meanwhile. */
        io_uring_prep_nop(sqe);
        io_uring_sqe_set_data64(sqe, MSG_SENT_TAG);
        sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
        return false;
    }
    unsigned head;
    struct io_uring_cqe *cqe;
    io_uring_for_each_cqe(&s->ring, head, cqe)
    {
        if (io_uring_cqe_get_data64(cqe) == MSG_SENT_TAG) return false; /* reaped as a no-op */
    }
    return true;
}

/* Thread-safe. Only the first wake since the last reaped one writes: a burst
 * of wakes from other threads costs one syscall. */
static int uring_wake(struct eddy_backend *b)
{
    struct uring_state *s = b->impl;
    if (atomic_exchange(&s->wake_pending, true)) return 0;
    if (wake_by_msg_ring(s)) return 0;
    if (eventfd_write(s->wakefd, 1) < 0) {
        int err = -errno;
        atomic_store(&s->wake_pending, false);
        return err;
    }
    return 0;
}

/* Ops pending now belong to no task (lib/ has waited for those of tasks), such
 * as a socket closed from a callback: they are run to their end rather than
 * leaving what their completion frees. */
static void drain(struct eddy_backend *b)
{
    struct uring_state *s = b->impl;
    for (int round = 0; b->pending > 0 && round < 100; round++) {
        if (round == 10) { /* taking long: withdraw whatever can be */
            struct io_uring_sqe *sqe = get_sqe(s);
            if (sqe) {
                io_uring_prep_cancel64(sqe, 0, IORING_ASYNC_CANCEL_ANY);
                io_uring_sqe_set_data64(sqe, CANCEL_TAG);
            }
        }
        if (uring_poll(b, 10 * 1000 * 1000) < 0) break;
    }
}

static void state_free(struct uring_state *s)
{
    /* Freed from a thread that is not the ring's: the fd registration is in
     * the owner's table, where this thread cannot drop it. */
    if (s->bound && !pthread_equal(s->owner, pthread_self())) {
        s->ring.int_flags = 0;
        s->ring.enter_ring_fd = s->ring.ring_fd;
    }
    io_uring_queue_exit(&s->ring);
    s->table_slots = 0; /* the file table went with the ring */
    listeners_free(s);  /* after the ring: nothing more is accepted for them */
    free(s->file_free);
    free(s->file_fd);
    streams_free(s); /* nor received */
    lanes_free(s);
    close(s->wakefd);
    if (s->embed_efd >= 0) close(s->embed_efd);
    struct stat_slot *slot;
    while ((slot = s->free_slots)) {
        s->free_slots = slot->next;
        free(slot);
    }
    free(s);
}

static void uring_free(struct eddy_backend *b)
{
    struct uring_state *s = b->impl;
    if (!s) return;
    if (b->pending > 0) drain(b);
    state_free(s);
    b->impl = NULL;
}

/* The ring, with the best setup flags the kernel accepts. */
static int ring_setup(struct uring_state *s, const eddy_loop_options *opts)
{
    unsigned entries = opts && opts->queue_depth ? opts->queue_depth : DEFAULT_SQ_ENTRIES;
    if (entries > 32768) entries = 32768;
    int err = -EINVAL;
    for (size_t i = 0; i < sizeof setup_tiers / sizeof setup_tiers[0]; i++) {
        struct io_uring_params p;
        memset(&p, 0, sizeof p);
        p.flags = setup_tiers[i] | IORING_SETUP_CQSIZE | IORING_SETUP_CLAMP;
        p.cq_entries = entries * CQ_PER_SQ;
        err = io_uring_queue_init_params(entries, &s->ring, &p);
        if (err == 0) {
            s->setup_flags = p.flags;
            return 0;
        }
        if (err != -EINVAL) return err;
    }
    return err;
}

/* Whether io_uring_enter, which every poll() needs, is allowed: some seccomp
 * profiles allow io_uring_setup and deny enter, and a loop on that ring would
 * fail its first poll with every task cancelled. Submitting nothing and
 * waiting for nothing asks the kernel only; a ring still disabled (enabled by
 * the first poll) answers -EBADFD, which a kernel that ran the call gives. */
static int probe_enter(struct uring_state *s)
{
    int ret = io_uring_enter((unsigned)s->ring.ring_fd, 0, 0, 0, NULL);
    return ret == 0 || ret == -EBADFD ? 0 : ret;
}

/* Which ops the ring does here. -ENOSYS when a required opcode is missing. */
static int probe(struct uring_state *s)
{
    if (!(s->ring.features & IORING_FEAT_NODROP)) return -ENOSYS; /* before 5.5 */
    struct io_uring_probe *p = io_uring_get_probe_ring(&s->ring);
    if (!p) return -ENOSYS; /* before 5.6 */
    int err = 0;
    for (size_t i = 0; i < sizeof required_opcodes; i++)
        if (!io_uring_opcode_supported(p, required_opcodes[i])) err = -ENOSYS;
    for (unsigned kind = EDDY_OP_ACCEPT; kind <= EDDY_OP_SENDMSG; kind++)
        s->native[kind] = true;
    for (unsigned kind = EDDY_OP_SHUTDOWN; kind <= EDDY_OP_MKDIR; kind++)
        s->native[kind] = io_uring_opcode_supported(p, optional_opcodes[kind]);
    s->native[EDDY_OP_POLL] = io_uring_opcode_supported(p, IORING_OP_POLL_ADD);
    /* EDDY_URING_WAITID=0 keeps the pidfd poll instead (tests use both). */
    const char *waitid = getenv("EDDY_URING_WAITID");
    s->waitid = io_uring_opcode_supported(p, OP_WAITID) && !(waitid && strcmp(waitid, "0") == 0);
    s->native[EDDY_OP_SPLICE] = io_uring_opcode_supported(p, IORING_OP_SPLICE);
    /* Offset -1 (the file position) needs IORING_FEAT_RW_CUR_POS. */
    if (!(s->ring.features & IORING_FEAT_RW_CUR_POS))
        s->native[EDDY_OP_READ] = s->native[EDDY_OP_WRITE] = false;
    s->send_zc = io_uring_opcode_supported(p, IORING_OP_SEND_ZC);
    s->fd_install = io_uring_opcode_supported(p, OP_FIXED_FD_INSTALL);
    /* Multishot receive has no opcode of its own; it came in 6.0 with SEND_ZC. */
    s->multishot_recv = s->send_zc;
    io_uring_free_probe(p);
    return err;
}

/* The sparse file table: 0, or why not. Its size cannot change while ops
 * use it. Accepts put direct descriptors in its lower part (the kernel's
 * allocation range); with registered files, its top FILE_SLOTS_MAX slots (a
 * quarter of a smaller table) hold files' second names, given out here. */
static int direct_setup(struct uring_state *s, bool accepts, bool files)
{
    unsigned long n = DIRECT_FILES_DEFAULT;
    const char *knob = getenv("EDDY_URING_DIRECT_FILES");
    if (knob && *knob) {
        char *end;
        unsigned long v = strtoul(knob, &end, 10);
        if (*end == '\0' && v > 0 && v <= (1u << 20)) n = v;
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && n > rl.rlim_cur)
        n = (unsigned long)rl.rlim_cur; /* the kernel's own cap */
    if (!accepts && n > FILE_SLOTS_MAX) n = FILE_SLOTS_MAX;
    int err = n ? io_uring_register_files_sparse(&s->ring, (unsigned)n) : -EMFILE;
    if (err < 0) return err;
    s->table_slots = (unsigned)n;
    unsigned long part = accepts ? n / 4 : n;
    unsigned file_slots = files ? (unsigned)(part < FILE_SLOTS_MAX ? part : FILE_SLOTS_MAX) : 0;
    s->file_free = file_slots ? malloc(file_slots * sizeof *s->file_free) : NULL;
    s->file_fd = file_slots ? malloc(file_slots * sizeof *s->file_fd) : NULL;
    if (s->file_free && s->file_fd)
        for (unsigned i = 0; i < file_slots; i++) {
            s->file_free[s->file_free_count++] = (unsigned)n - 1 - i;
            s->file_fd[i] = -1;
        }
    s->file_base = (unsigned)n - s->file_free_count;
    n -= s->file_free_count;
    if (s->file_free_count && accepts)
        (void)io_uring_register_file_alloc_range(&s->ring, 0, (unsigned)n);
    s->direct_slots = accepts ? (unsigned)n : 0;
    unsigned long backlog = 4096; /* Linux's default net.core.somaxconn */
    FILE *f = fopen("/proc/sys/net/core/somaxconn", "re");
    if (f) {
        if (fscanf(f, "%lu", &backlog) != 1) backlog = 4096;
        fclose(f);
    }
    s->direct_reserve = (unsigned)(backlog < n / 2 ? backlog : n / 2);
    return 0;
}

/* A real descriptor on the socket in direct descriptor fd, installed in the
 * process's table by IORING_OP_FIXED_FD_INSTALL (close-on-exec). The op is
 * done inline, so its CQE is in the ring once it is submitted: read there,
 * and skipped when reaped. Submits what is queued too. */
static intptr_t uring_install(struct eddy_backend *b, intptr_t fd)
{
    struct uring_state *s = b->impl;
    if (!eddy__fd_direct(fd) || !s->table_slots) return -EBADF;
    int err = bind_thread(s);
    if (err < 0) return err == -EEXIST ? -EPERM : err;
    struct io_uring_sqe *sqe = get_sqe(s);
    if (!sqe) return -EBUSY;
    uint64_t tag = (++s->install_seq << 3) | INSTALL_TAG;
    io_uring_prep_rw(OP_FIXED_FD_INSTALL, sqe, (int)direct_slot(fd), NULL, 0, 0);
    sqe->flags |= IOSQE_FIXED_FILE;
    io_uring_sqe_set_data64(sqe, tag);
    err = io_uring_submit(&s->ring);
    if (err < 0) return err;
    for (int pass = 0; pass < 2; pass++) {
        unsigned head;
        struct io_uring_cqe *cqe;
        io_uring_for_each_cqe(&s->ring, head, cqe)
        {
            if (cqe->user_data == tag) return cqe->res;
        }
        (void)io_uring_get_events(&s->ring); /* the CQ was full: what overflowed */
    }
    s->install_lost = tag;
    return -EBUSY;
}

/* A second name for the file behind fd, a direct descriptor in the table's
 * part for files (registered files: its reads and writes skip the lookup
 * of fd), or -ENOSPC when that part is full, -ENOTSUP without one. The
 * caller gives it back with release(). */
static intptr_t uring_register_fd(struct eddy_backend *b, intptr_t fd)
{
    struct uring_state *s = b->impl;
    if (!s->reg_files || !s->table_slots) return -ENOTSUP;
    if (fd < 0 || eddy__fd_direct(fd)) return -EBADF;
    if (!s->file_free_count) return -ENOSPC;
    unsigned slot = s->file_free[s->file_free_count - 1];
    int nfd = (int)fd;
    int err = io_uring_register_files_update(&s->ring, slot, &nfd, 1);
    if (err < 0) return err;
    s->file_free_count--;
    s->file_fd[slot - s->file_base] = nfd;
    return EDDY_FD_DIRECT | (intptr_t)slot;
}

/* Frees the slot register_fd(fd) gave (the file stays open under fd); a
 * slot that does not hold fd (another loop's) stays as it is. */
static void uring_release(struct eddy_backend *b, intptr_t direct, intptr_t fd)
{
    struct uring_state *s = b->impl;
    unsigned slot = direct_slot(direct);
    if (!eddy__fd_direct(direct) || !s->table_slots || slot < s->file_base ||
        s->file_fd[slot - s->file_base] != fd)
        return;
    int none = -1;
    (void)io_uring_register_files_update(&s->ring, slot, &none, 1);
    s->file_fd[slot - s->file_base] = -1;
    s->file_free[s->file_free_count++] = slot;
}

/* ---- registered buffers --------------------------------------------------- */

/* Puts the caller's region [base, base + len) at index of the ring's sparse
 * buffer table (registered at init): READ_FIXED and WRITE_FIXED into it
 * skip pinning its pages per op. -ENOMEM past RLIMIT_MEMLOCK. */
static int uring_register_buf(struct eddy_backend *b, unsigned index, void *base, size_t len)
{
    struct uring_state *s = b->impl;
    if (!s->reg_bufs) return -ENOTSUP;
    if (index >= EDDY_BUF_REGIONS) return -EINVAL;
    struct iovec iov = {.iov_base = base, .iov_len = len};
    int err = io_uring_register_buffers_update_tag(&s->ring, index, &iov, NULL, 1);
    return err < 0 ? err : 0;
}

/* Empties index: the kernel unpins the pages once no op uses them. */
static void uring_unregister_buf(struct eddy_backend *b, unsigned index)
{
    struct uring_state *s = b->impl;
    struct iovec none = {.iov_base = NULL, .iov_len = 0};
    if (s->reg_bufs && index < EDDY_BUF_REGIONS)
        (void)io_uring_register_buffers_update_tag(&s->ring, index, &none, NULL, 1);
}

/* Whether EDDY_CAPS_DISABLE (names separated by commas or spaces) lists name:
 * the backend then does without that feature, as lib/caps.c reports. */
static bool cap_disabled(const char *name)
{
    const char *list = getenv("EDDY_CAPS_DISABLE");
    size_t len = strlen(name);
    for (const char *p = list; p && *p;) {
        p += strspn(p, ", ");
        size_t n = strcspn(p, ", ");
        if (n == len && strncmp(p, name, len) == 0) return true;
        p += n;
    }
    return false;
}

static int uring_init(struct eddy_backend *b, const eddy_loop_options *opts)
{
    struct uring_state *s = calloc(1, sizeof *s);
    if (!s) return -ENOMEM;
    eddy__list_init(&s->backlog);
    eddy__list_init(&s->cancels);
    eddy__list_init(&s->deferred);
    eddy__list_init(&s->listener_list);
    eddy__list_init(&s->stream_list);
    eddy__list_init(&s->stream_retry);
    atomic_init(&s->wake_pending, false);
    atomic_init(&s->msg_target, false);
    s->embed_efd = -1;
    int err = ring_setup(s, opts);
    if (err == 0 && (err = probe_enter(s)) < 0) io_uring_queue_exit(&s->ring);
    if (err < 0) {
        free(s);
        return err;
    }
    /* Blocking: a nonblocking one would make the READ fail with -EAGAIN. */
    s->wakefd = eventfd(0, EFD_CLOEXEC);
    err = s->wakefd < 0 ? -errno : probe(s);
    if (err < 0) {
        if (s->wakefd >= 0) close(s->wakefd);
        io_uring_queue_exit(&s->ring);
        free(s);
        return err;
    }
    arm_wake(s);
    msg_ring_setup(s);
    s->under_valgrind = UNDER_VALGRIND();
    /* Multishot accept came in 5.19, with COOP_TASKRUN; a kernel that still
     * refuses it says so with -EINVAL, and accepts go single-shot. */
    s->multishot_accept =
        (s->setup_flags & (IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SINGLE_ISSUER)) &&
        !cap_disabled("multishot_accept");
    s->send_zc = s->send_zc && !cap_disabled("zerocopy_send");
    /* Direct descriptors only where a real one can be had on demand. */
    bool accepts = s->fd_install && !cap_disabled("direct_descriptors");
    bool files = !cap_disabled("registered_files");
    if ((accepts || files) && direct_setup(s, accepts, files) == 0) {
        s->direct = accepts;
        s->reg_files = s->file_free_count > 0;
    }
    /* Registered buffers: an empty table of EDDY_BUF_REGIONS (5.19+ for a
     * sparse one), filled by eddy_buffer_register, for file reads and writes
     * whose opcodes (and their fixed forms) the ring has. */
    s->reg_bufs = s->native[EDDY_OP_READ] && s->native[EDDY_OP_WRITE] &&
                  !cap_disabled("registered_buffers") &&
                  io_uring_register_buffers_sparse(&s->ring, EDDY_BUF_REGIONS) == 0;
    /* The buffer ring (5.19+) serves multishot receives only: it is set up
     * when they are used, and both go when either is disabled. */
    s->multishot_recv = s->multishot_recv && !cap_disabled("multishot_recv") &&
                        !cap_disabled("buffer_ring") && buf_ring_setup(s) == 0;
    /* Bundles (6.10+): one CQE for the bytes of several buffers. */
    s->recv_bundle = s->multishot_recv && (s->ring.features & FEAT_RECVSEND_BUNDLE) &&
                     !cap_disabled("recv_bundle");
    s->recv_multishot_max = RECV_MULTISHOT_MAX;
    const char *ms_max = getenv("EDDY_URING_RECV_MULTISHOT_MAX");
    if (ms_max && *ms_max) {
        char *end;
        unsigned long long v = strtoull(ms_max, &end, 10);
        if (*end == '\0' && v > 0)
            s->recv_multishot_max = v > UINT32_MAX ? UINT32_MAX : (uint32_t)v;
    }
    s->zc_min = ZC_MIN_DEFAULT;
    const char *zc_min = getenv("EDDY_URING_SEND_ZC_MIN");
    if (zc_min && *zc_min) {
        char *end;
        unsigned long long v = strtoull(zc_min, &end, 10);
        if (*end == '\0' && v > 0) {
            s->zc_min = (size_t)v;
            s->zc_any_peer = true;
        }
    }
    b->impl = s;
    b->pending = 0;
    return 0;
}

/* What this ring offers, from its probe at init. Sockets, cancellation and
 * the wake READ use opcodes init requires; file I/O is native when every file
 * op has its opcode here, else partly in the thread pool. */
static eddy_support uring_supports(const struct eddy_backend *b, eddy_cap cap)
{
    const struct uring_state *s = b->impl;
    switch (cap) {
    case EDDY_CAP_TCP:
    case EDDY_CAP_UDP:
    case EDDY_CAP_UNIX_SOCKETS:
    case EDDY_CAP_TIMERS: /* the loop's timers, as the wait's timeout */
    case EDDY_CAP_CANCEL:
    case EDDY_CAP_WAKEUP:
        return EDDY_NATIVE;
    case EDDY_CAP_FILE_IO:
        for (unsigned kind = EDDY_OP_READ; kind <= EDDY_OP_MKDIR; kind++)
            if (!s->native[kind]) return EDDY_EMULATED;
        return EDDY_NATIVE;
    case EDDY_CAP_DNS: /* getaddrinfo in the thread pool */
        return EDDY_EMULATED;
    case EDDY_CAP_MULTISHOT_ACCEPT: /* probed at init (Linux 5.19+) */
        return s->multishot_accept ? EDDY_NATIVE : EDDY_NONE;
    case EDDY_CAP_ZEROCOPY_SEND: /* probed at init (Linux 6.0+) */
        return s->send_zc ? EDDY_NATIVE : EDDY_NONE;
    case EDDY_CAP_MULTISHOT_RECV: /* probed at init (Linux 6.0+) */
        return s->multishot_recv ? EDDY_NATIVE : EDDY_NONE;
    case EDDY_CAP_MSG_RING: /* probed at init (msg_ring_setup) */
        return s->msg_ring ? EDDY_NATIVE : EDDY_NONE;
    case EDDY_CAP_BUFFER_RING: /* registered at init (Linux 5.19+), for multishot receives */
        return s->br ? EDDY_NATIVE : EDDY_NONE;
    case EDDY_CAP_DIRECT_DESCRIPTORS: /* a file table registered at init (Linux 6.8+) */
        return s->direct ? EDDY_NATIVE : EDDY_NONE;
    case EDDY_CAP_REGISTERED_FILES: /* the same table (Linux 5.13+ for a sparse one) */
        return s->reg_files ? EDDY_NATIVE : EDDY_NONE;
    case EDDY_CAP_RECV_BUNDLE: /* probed at init (Linux 6.10+) */
        return s->recv_bundle ? EDDY_NATIVE : EDDY_NONE;
    case EDDY_CAP_BUFFER_RING_INCREMENTAL: /* registered so at init (Linux 6.12+) */
        return s->br && s->buf_inc ? EDDY_NATIVE : EDDY_NONE;
    case EDDY_CAP_REGISTERED_BUFFERS: /* a sparse table registered at init (Linux 5.19+) */
        return s->reg_bufs ? EDDY_NATIVE : EDDY_NONE;
    case EDDY_CAP_WATCH_FD: /* IORING_OP_POLL_ADD, there since 5.1 */
    case EDDY_CAP_SIGNALS:  /* lib/signal.c's pipe, polled as a watched fd */
        return s->native[EDDY_OP_POLL] ? EDDY_NATIVE : EDDY_NONE;
    case EDDY_CAP_SUBPROCESS: /* posix_spawn; exits through a pidfd, polled */
        return s->native[EDDY_OP_POLL] ? eddy__subprocess_support() : EDDY_NONE;
    case EDDY_CAP_SENDFILE: /* IORING_OP_SPLICE (5.7+), else sendfile(2) on writability */
        return s->native[EDDY_OP_SPLICE] || s->native[EDDY_OP_POLL] ? EDDY_NATIVE : EDDY_NONE;
    default: /* out of range */
        return EDDY_NONE;
    }
}

/* The descriptor a foreign loop polls to embed this one (eddy_loop_fd). */
static intptr_t uring_fd(const struct eddy_backend *b)
{
    struct uring_state *s = b->impl;
    if (s->embed_efd >= 0) return s->embed_efd;
    int efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (efd < 0) return -errno;
    int err = io_uring_register_eventfd(&s->ring, efd);
    if (err < 0) {
        close(efd);
        return err;
    }
    s->embed_efd = efd;
    return efd;
}

const struct eddy_backend_ops eddy__uring_backend = {
    .name = "io_uring",
    .init = uring_init,
    .free = uring_free,
    .submit = uring_submit,
    .cancel = uring_cancel,
    .poll = uring_poll,
    .wake = uring_wake,
    .handles = uring_handles,
    .supports = uring_supports,
    .fd = uring_fd,
    .install = uring_install,
    .register_fd = uring_register_fd,
    .lend_release = uring_lend_release,
    .release = uring_release,
    .register_buf = uring_register_buf,
    .unregister_buf = uring_unregister_buf,
};
