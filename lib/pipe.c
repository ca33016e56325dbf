/* SPDX-License-Identifier: MIT */
/* Pipes and terminals as eddy sockets: eddy_pipe for a fresh pair,
 * eddy_pipe_open to adopt an end someone else made (a child's stdio, a
 * FIFO, a tty). Their I/O is the loop backend's own non-blocking I/O, never
 * a blocking call in the thread pool: io_uring reads and writes them as
 * files (kept blocking: io_uring waits on them itself, and answers -EAGAIN
 * on an O_NONBLOCK one); epoll and kqueue get a RECV or SEND marked
 * EDDY_OP_F_PIPE, that is read(2) or write(2) once the fd is ready, on an
 * fd made O_NONBLOCK. eddy_recv and eddy_send take either route
 * (lib/net.c); so do eddy_file_read and eddy_file_write on a FIFO (lib/fs.c). */
#include <fcntl.h>
#include <sys/stat.h>
#ifndef _WIN32
#include <sys/socket.h>
#include <unistd.h>
#endif

#include "pipe.h"

#ifndef _WIN32
int eddy__pipe_route(struct eddy_loop *loop, struct eddy_op *op, bool *nonblocking)
{
    if (op->u.io.offset >= 0) return -ESPIPE; /* as pread and pwrite say */
    op->flags |= EDDY_OP_F_PIPE;
    struct eddy_backend *b = &loop->backend;
    bool readiness =
        !b->ops->handles(b, (enum eddy_op_kind)op->kind) && b->ops->handles(b, EDDY_OP_RECV);
    if (readiness) op->kind = op->kind == EDDY_OP_READ ? EDDY_OP_RECV : EDDY_OP_SEND;
    if (readiness != *nonblocking) {
        int flags = fcntl((int)op->fd, F_GETFL);
        if (flags < 0) return -errno;
        flags = readiness ? flags | O_NONBLOCK : flags & ~O_NONBLOCK;
        if (fcntl((int)op->fd, F_SETFL, flags) < 0) return -errno;
        *nonblocking = readiness;
    }
    return 0;
}
#endif

#ifndef _WIN32 /* Windows: lib/pipe_win.c */
EDDY_API int eddy_pipe(eddy_sock *ends[2])
{
    if (!ends) return -EINVAL;
    ends[0] = ends[1] = NULL;
    int fds[2];
#ifdef __APPLE__
    if (pipe(fds) < 0) return -errno;
    (void)fcntl(fds[0], F_SETFD, FD_CLOEXEC);
    (void)fcntl(fds[1], F_SETFD, FD_CLOEXEC);
#else
    if (pipe2(fds, O_CLOEXEC) < 0) return -errno;
#endif
    int err = eddy__sock_adopt(&ends[0], fds[0], AF_UNIX, SOCK_STREAM, true);
    if (err < 0) {
        close(fds[0]);
        close(fds[1]);
        return err;
    }
    err = eddy__sock_adopt(&ends[1], fds[1], AF_UNIX, SOCK_STREAM, true);
    if (err < 0) {
        close(fds[1]);
        (void)eddy_sock_close(ends[0]);
        ends[0] = NULL;
    }
    return err;
}

EDDY_API int eddy_pipe_open(eddy_sock **out, intptr_t fd)
{
    if (!out) return -EINVAL;
    *out = NULL;
    if (fd < 0 || fd > INT32_MAX) return -EBADF;
    struct stat st;
    if (fstat((int)fd, &st) < 0) return -errno;
    /* A FIFO, a pipe end or a terminal; a socket has eddy_sock_open, and a
     * regular file or a disk is never "not ready": eddy_file_open. */
    if (!S_ISFIFO(st.st_mode) && !(S_ISCHR(st.st_mode) && isatty((int)fd))) return -EINVAL;
    (void)fcntl((int)fd, F_SETFD, FD_CLOEXEC); /* owned now: not for children */
    return eddy__sock_adopt(out, fd, AF_UNIX, SOCK_STREAM, true);
}
#endif
