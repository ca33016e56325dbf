/* SPDX-License-Identifier: MIT */
/* Files and paths as task-style calls: each is one op on the caller's stack
 * run through eddy__op_run, which hands it to the backend when the backend
 * does file I/O natively and to the thread pool otherwise (epoll, kqueue).
 * Nothing here knows which. */
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>
#ifndef _WIN32
#include <unistd.h>
#endif

#include "pipe.h"

#ifndef O_CLOEXEC
#define O_CLOEXEC 0
#endif
#ifndef AT_REMOVEDIR /* Windows: EDDY_OP_UNLINK's flag for a directory, as on Linux */
#define AT_REMOVEDIR 0x200
#endif

struct eddy_file {
    intptr_t fd;
    /* A second name for fd in the loop's own table (io_uring's registered
     * files), which reads, writes and syncs on that loop name once the file
     * has had REGISTER_AFTER of them; -1: none. */
    intptr_t direct;
    struct eddy_loop *direct_loop;
    unsigned uses;
    unsigned calls;           /* calls in progress in some task */
    bool closing;             /* eddy_file_close has begun: new calls get -EBADF */
    struct eddy_task *closer; /* waits for calls to reach 0 */
#ifndef _WIN32
    /* A FIFO or a terminal: no offset, and reads and writes may wait for a
     * peer for ever, so they must stay cancellable (pipe_route). */
    bool pipe;
    bool nonblocking; /* eddy set O_NONBLOCK on it */
#endif
#ifdef _WIN32
    /* An overlapped handle has no file position: offset -1 is kept here. */
    int64_t position;
    bool append; /* O_APPEND: writes at -1 go to the end (the backend's -1) */
#endif
};

#ifdef _WIN32
/* The offset an op at offset (-1: the current position) goes to. */
static int64_t file_offset(struct eddy_file *f, int64_t offset, bool write)
{
    if (offset >= 0 || !f) return offset;
    return write && f->append ? -1 : f->position;
}

static void file_advance(struct eddy_file *f, int64_t offset, int64_t done)
{
    if (offset < 0 && f && done > 0) f->position += done;
}

/* Closes without a task: through the loop's backend when one runs on this
 * thread (it forgets the handle), else directly. */
static int close_untasked(struct eddy_file *f)
{
    struct eddy_loop *loop = eddy_loop_current();
    if (loop) {
        struct eddy_op op = {.kind = EDDY_OP_CLOSE, .fd = f->fd};
        eddy__list_init(&op.link);
        int rc = loop->backend.ops->submit(&loop->backend, &op);
        if (rc == EDDY_OP_DONE) return (int)op.result;
    }
    return CloseHandle((HANDLE)f->fd) ? 0 : eddy__win_error(GetLastError());
}
#define file_pipe(f) false
#else
#define file_offset(f, offset, write) (offset)
#define file_pipe(f)                  ((f)->pipe)
#define file_advance(f, offset, done) ((void)0)
#define close_untasked(f)             (close((int)(f)->fd) < 0 ? -errno : 0)

/* Whether fd is a FIFO or a terminal: files whose reads and writes wait for
 * another party. Other character devices (/dev/null, /dev/urandom) answer at
 * once, and some cannot be polled: they stay with the ordinary file path, as
 * terminals do on macOS, whose kqueue cannot watch them. */
static bool is_pipe(int fd)
{
    struct stat st;
    if (fstat(fd, &st) < 0) return false;
#ifdef __APPLE__
    return S_ISFIFO(st.st_mode);
#else
    return S_ISFIFO(st.st_mode) || (S_ISCHR(st.st_mode) && isatty(fd));
#endif
}

/* Sends a read or write on a FIFO or a terminal where it can be cancelled:
 * natively on io_uring, as a non-blocking RECV or SEND marked
 * EDDY_OP_F_PIPE on a readiness backend (epoll, kqueue), where the thread
 * pool would run it blocking and nothing could stop it (lib/pipe.c). */
static int pipe_route(struct eddy_file *f, struct eddy_op *op)
{
    op->fd = f->fd;
    return eddy__pipe_route(eddy__current_task()->loop, op, &f->nonblocking);
}
#endif

#ifndef _WIN32
/* Reads, writes and syncs on a file before it is registered: a file opened
 * for one read pays no registration. */
#define REGISTER_AFTER 8

/* What op, a READ, WRITE or FSYNC on f, names: f's direct descriptor on
 * the loop that registered it (made at the REGISTER_AFTER-th such op, where
 * the backend registers files and runs the op itself), else f->fd. */
static intptr_t file_op_fd(struct eddy_file *f, const struct eddy_op *op)
{
    struct eddy_loop *loop = eddy__current_task()->loop;
    struct eddy_backend *b = &loop->backend;
    if (f->direct < 0 && ++f->uses == REGISTER_AFTER && b->ops->register_fd) {
        intptr_t direct = b->ops->register_fd(b, f->fd);
        if (direct >= 0) {
            f->direct = direct;
            f->direct_loop = loop;
        }
    }
    if (f->direct < 0 || loop != f->direct_loop || !b->ops->handles(b, (enum eddy_op_kind)op->kind))
        return f->fd;
    return f->direct;
}
#endif

/* Gives f's direct descriptor back, from its loop's thread (elsewhere it
 * stays in that loop's table until the loop ends). */
static void file_unregister(struct eddy_file *f)
{
    struct eddy_loop *loop = eddy_loop_current();
    if (f->direct >= 0 && loop && loop == f->direct_loop)
        loop->backend.ops->release(&loop->backend, f->direct, f->fd);
    f->direct = -1;
}

/* The most one registered region may span (io_uring's limit). */
#define BUFFER_MAX ((size_t)1 << 30)

/* The region of loop's registered buffers that holds all of [buf, buf +
 * len), or NULL. */
static struct eddy__buf_region *buf_region(struct eddy_loop *loop, const void *buf, size_t len)
{
    if (!loop->bufs || len == 0) return NULL;
    const char *p = buf;
    for (unsigned i = 0; i < EDDY_BUF_REGIONS; i++) {
        struct eddy__buf_region *r = &loop->bufs[i];
        if (r->base && p >= r->base && len <= r->len && (size_t)(p - r->base) <= r->len - len)
            return r;
    }
    return NULL;
}

EDDY_API int eddy_buffer_register(eddy_loop *loop, void *base, size_t len)
{
    if (!loop) loop = eddy_loop_current();
    if (!loop || !base || len == 0 || len > BUFFER_MAX) return -EINVAL;
    if (eddy__loop_foreign(loop)) return -EPERM;
    struct eddy_backend *b = &loop->backend;
    if (!b->ops->register_buf || loop->caps[EDDY_CAP_REGISTERED_BUFFERS] == EDDY_NONE)
        return -ENOTSUP;
    if (!loop->bufs && !(loop->bufs = calloc(EDDY_BUF_REGIONS, sizeof *loop->bufs))) return -ENOMEM;
    const char *p = base;
    struct eddy__buf_region *free_slot = NULL;
    for (unsigned i = 0; i < EDDY_BUF_REGIONS; i++) {
        struct eddy__buf_region *r = &loop->bufs[i];
        if (!r->base) {
            if (!free_slot) free_slot = r;
        } else if (p < r->base + r->len && r->base < p + len) {
            return -EEXIST;
        }
    }
    if (!free_slot) return -ENOSPC;
    int err = b->ops->register_buf(b, (unsigned)(free_slot - loop->bufs), base, len);
    if (err < 0) return err;
    free_slot->base = base;
    free_slot->len = len;
    free_slot->calls = 0;
    return 0;
}

EDDY_API int eddy_buffer_unregister(eddy_loop *loop, void *base)
{
    if (!loop) loop = eddy_loop_current();
    if (!loop || !base) return -EINVAL;
    if (eddy__loop_foreign(loop)) return -EPERM;
    for (unsigned i = 0; loop->bufs && i < EDDY_BUF_REGIONS; i++) {
        struct eddy__buf_region *r = &loop->bufs[i];
        if (r->base != base) continue;
        if (r->calls > 0) return -EBUSY;
        loop->backend.ops->unregister_buf(&loop->backend, i);
        r->base = NULL;
        r->len = 0;
        return 0;
    }
    return -ENOENT;
}

/* Runs op on f, counted so that eddy_file_close can wait for it. */
static int64_t file_run(struct eddy_file *f, struct eddy_op *op)
{
    if (!eddy__current_task()) return -EPERM;
    if (!f) return -EINVAL;
    if (f->closing) return -EBADF;
#ifndef _WIN32
    if (f->pipe && (op->kind == EDDY_OP_READ || op->kind == EDDY_OP_WRITE)) {
        int err = pipe_route(f, op);
        if (err < 0) return err;
    }
#endif
    op->fd = f->fd;
#ifndef _WIN32
    if (!f->pipe &&
        (op->kind == EDDY_OP_READ || op->kind == EDDY_OP_WRITE || op->kind == EDDY_OP_FSYNC))
        op->fd = file_op_fd(f, op);
#endif
    /* A read or write wholly inside a registered region names the region
     * (io_uring's READ_FIXED, WRITE_FIXED); its region stays registered
     * until the op ends. */
    struct eddy__buf_region *region = NULL;
    struct eddy_loop *loop = eddy__current_task()->loop;
    if (loop->bufs && (op->kind == EDDY_OP_READ || op->kind == EDDY_OP_WRITE) && !file_pipe(f) &&
        (region = buf_region(loop, op->u.io.buf, op->u.io.len))) {
        op->flags |= EDDY_OP_F_FIXED_BUF;
        op->u.io.flags = (int)(region - loop->bufs);
        region->calls++;
    }
    f->calls++;
    int64_t r = eddy__op_run(op);
    if (region) region->calls--;
    if (--f->calls == 0 && f->closer) eddy__task_wake(f->closer, 0);
    return r;
}

/* Runs a path op (no file involved). */
static int path_run(struct eddy_op *op)
{
    if (!eddy__current_task()) return -EPERM;
    if (!op->u.path.path) return -EINVAL;
    op->fd = -1;
    return (int)eddy__op_run(op);
}

EDDY_API int eddy_file_open(eddy_file **out, const char *path, int flags, int mode)
{
    if (!eddy__current_task()) return -EPERM;
    if (!out) return -EINVAL;
    *out = NULL;
    if (!path || mode < 0) return -EINVAL;
    struct eddy_file *f = calloc(1, sizeof(*f));
    if (!f) return -ENOMEM;
    struct eddy_op op = {.kind = EDDY_OP_OPEN, .fd = -1};
    op.u.path.path = path;
    op.u.path.flags = flags | O_CLOEXEC;
    op.u.path.mode = mode;
    /* A cancelled open that won the race still returns its fd: it is not lost. */
    int64_t fd = eddy__op_run(&op);
    if (fd < 0) {
        free(f);
        return (int)fd;
    }
    f->fd = fd;
    f->direct = -1;
#ifdef _WIN32
    f->append = flags & O_APPEND;
#else
    f->pipe = is_pipe((int)fd);
    /* O_NONBLOCK only spares the open its wait for a peer: pipe_route sets
     * the mode each backend needs. */
    f->nonblocking = f->pipe && (flags & O_NONBLOCK);
#endif
    *out = f;
    return 0;
}

EDDY_API ssize_t eddy_file_read(eddy_file *f, void *buf, size_t len, int64_t offset)
{
    if (!eddy__current_task()) return -EPERM;
    if ((!buf && len > 0) || offset < -1 || len > SSIZE_MAX) return -EINVAL;
    struct eddy_op op = {.kind = EDDY_OP_READ};
    op.u.io.buf = buf;
    op.u.io.len = len;
    op.u.io.offset = file_offset(f, offset, false);
    int64_t n = file_run(f, &op);
    file_advance(f, offset, n);
    return (ssize_t)n;
}

EDDY_API ssize_t eddy_file_write(eddy_file *f, const void *buf, size_t len, int64_t offset)
{
    if (!eddy__current_task()) return -EPERM;
    if ((!buf && len > 0) || offset < -1 || len > SSIZE_MAX) return -EINVAL;
    size_t done = 0;
    do {
        struct eddy_op op = {.kind = EDDY_OP_WRITE};
        op.u.io.buf = (char *)buf + done;
        op.u.io.len = len - done;
        op.u.io.offset = offset < 0 ? file_offset(f, -1, true) : offset + (int64_t)done;
        int64_t n = file_run(f, &op);
        if (n < 0) return (ssize_t)n;
        file_advance(f, offset, n);
        if (n == 0 && len > 0) return -EIO; /* no progress: never loop forever */
        done += (size_t)n;
    } while (done < len);
    return (ssize_t)done;
}

EDDY_API int eddy_file_sync(eddy_file *f)
{
    struct eddy_op op = {.kind = EDDY_OP_FSYNC};
    return (int)file_run(f, &op);
}

EDDY_API int eddy_file_stat(eddy_file *f, struct stat *st)
{
    if (!eddy__current_task()) return -EPERM;
    if (!st) return -EINVAL;
    struct eddy_op op = {.kind = EDDY_OP_STAT};
    op.u.path.statbuf = st;
    return (int)file_run(f, &op);
}

EDDY_API intptr_t eddy_file_fd(const eddy_file *f)
{
    return f ? f->fd : -EINVAL;
}

EDDY_API int eddy_file_close(eddy_file *f)
{
    if (!f) return -EINVAL;
    if (f->closing) return -EBADF;
    f->closing = true;
    struct eddy_task *t = eddy__current_task();
    int64_t err;
    if (!t) {
        /* POSIX: no backend keeps state on a file's fd; Windows: the loop's port does. */
        file_unregister(f);
        err = close_untasked(f);
    } else {
        eddy_shield_begin(); /* a cancelled task still closes */
        if (f->calls > 0) {
            f->closer = t;
            t->abort_wait = NULL;
            t->wait_data = NULL;
            eddy__task_suspend(t);
            f->closer = NULL;
        }
        file_unregister(f);
        struct eddy_op op = {.kind = EDDY_OP_CLOSE, .fd = f->fd};
        err = eddy__op_run(&op);
        eddy_shield_end();
    }
    if (err == -EINTR) err = 0; /* the fd is gone either way on Linux */
    free(f);
    return (int)err;
}

EDDY_API int eddy_fs_stat(const char *path, struct stat *st)
{
    if (!eddy__current_task()) return -EPERM;
    if (!st) return -EINVAL;
    struct eddy_op op = {.kind = EDDY_OP_STAT};
    op.u.path.path = path;
    op.u.path.statbuf = st;
    return path_run(&op);
}

EDDY_API int eddy_fs_unlink(const char *path)
{
    struct eddy_op op = {.kind = EDDY_OP_UNLINK};
    op.u.path.path = path;
    return path_run(&op);
}

EDDY_API int eddy_fs_rmdir(const char *path)
{
    struct eddy_op op = {.kind = EDDY_OP_UNLINK};
    op.u.path.path = path;
    op.u.path.flags = AT_REMOVEDIR;
    return path_run(&op);
}

EDDY_API int eddy_fs_rename(const char *from, const char *to)
{
    struct eddy_op op = {.kind = EDDY_OP_RENAME};
    op.u.path.path = from;
    op.u.path.path2 = to;
    if (!eddy__current_task()) return -EPERM;
    if (!to) return -EINVAL;
    return path_run(&op);
}

EDDY_API int eddy_fs_mkdir(const char *path, int mode)
{
    struct eddy_op op = {.kind = EDDY_OP_MKDIR};
    op.u.path.path = path;
    op.u.path.mode = mode;
    if (!eddy__current_task()) return -EPERM;
    if (mode < 0) return -EINVAL;
    return path_run(&op);
}
