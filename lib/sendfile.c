/* SPDX-License-Identifier: MIT */
/* eddy_stream_sendfile: a file's bytes onto a stream's socket without a copy
 * through user space where the system has a way (docs/streams.md, "Sending
 * files").
 *
 * The stream first sends what is buffered and holds later writes back
 * (eddy__stream_hold in lib/stream.c), so the file's bytes go out between
 * the writes before the call and the writes after it, whoever makes them.
 * Then one of three movers:
 * - io_uring with IORING_OP_SPLICE: file -> pipe, pipe -> socket, both in the
 *   ring (EDDY_OP_SPLICE); a socket that is full answers -EAGAIN (it is
 *   nonblocking) and the mover waits for it to be writable.
 * - Linux, FreeBSD, macOS otherwise: sendfile(2) while the socket takes
 *   bytes, then a wait for writability (EDDY_OP_POLL).
 * - Windows (IOCP): TransmitFile, overlapped, through the completion port
 *   (EDDY_OP_SPLICE from the file to the socket, backends/iocp.c), at most
 *   2 GiB - 2 per call; the copy loop takes over where the backend has no
 *   TransmitFile or it answers -ENOTSUP.
 * - Elsewhere (NetBSD, OpenBSD), and on a stream whose transport is not the
 *   plain socket: the file read in chunks and sent. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#ifndef _WIN32
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>
#endif
#if defined(__linux__)
#include <sys/sendfile.h>
#define HAVE_SENDFILE_SYSCALL 1
#elif defined(__FreeBSD__) || defined(__APPLE__)
#include <sys/socket.h>
#include <sys/uio.h>
#define HAVE_SENDFILE_SYSCALL 1
#endif

#include "internal.h"

#define COPY_CHUNK     (256 * 1024)  /* the read/write loop's buffer */
#define SENDFILE_CHUNK (1024 * 1024) /* a sendfile(2) call's most: cancellation is seen between */
#define PIPE_WANT      (1024 * 1024) /* the splice pipe's size, where the system allows it */
#define YIELD_EVERY    (8 * 1024 * 1024) /* sendfile(2) bytes between two yields */
#define TRANSMIT_MOST  0x7ffffffeu       /* TransmitFile's most per call */

#if defined(__linux__)
/* One splice in the ring: len bytes from in (at off_in, or -1) to out. */
static int64_t splice_op(intptr_t in, int64_t off_in, intptr_t out, size_t len)
{
    struct eddy_op op = {.kind = EDDY_OP_SPLICE, .fd = in};
    op.u.splice.fd_out = out;
    op.u.splice.off_in = off_in;
    op.u.splice.len = len;
    op.u.splice.flags = SPLICE_F_MOVE;
    return eddy__op_run(&op);
}

/* io_uring: file -> pipe -> socket, a pipe's worth at a time. */
static int64_t move_by_splice(eddy_stream *st, intptr_t sock, intptr_t file, int64_t offset,
                              size_t count)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0) return -errno;
    int size = fcntl(p[1], F_SETPIPE_SZ, PIPE_WANT);
    if (size < 0) size = fcntl(p[1], F_GETPIPE_SZ);
    if (size <= 0) size = 64 * 1024;
    size_t done = 0;
    int64_t err = 0;
    while (done < count && err == 0) {
        size_t want = count - done < (size_t)size ? count - done : (size_t)size;
        int64_t in = splice_op(file, offset + (int64_t)done, p[1], want);
        if (in <= 0) {
            err = in; /* 0: end of file */
            break;
        }
        while (in > 0) {
            int64_t n = eddy__stream_closing(st) ? -EBADF : splice_op(p[0], -1, sock, (size_t)in);
            if (n == -EAGAIN) n = eddy_wait_writable(sock, -1);
            if (n < 0) {
                err = n;
                break;
            }
            in -= n;
            done += (size_t)n;
        }
    }
    close(p[0]);
    close(p[1]);
    return err < 0 ? err : (int64_t)done;
}
#endif

#ifdef _WIN32
/* TransmitFile, a call at a time: each sends up to its most from the file
 * at an offset, and fewer only at the end of the file. *done counts what
 * went, also when an error ends the run. */
static int64_t move_by_transmit(eddy_stream *st, intptr_t sock, intptr_t file, int64_t offset,
                                size_t count, size_t *done)
{
    while (*done < count) {
        if (eddy__stream_closing(st)) return -EBADF;
        size_t want = count - *done < TRANSMIT_MOST ? count - *done : TRANSMIT_MOST;
        struct eddy_op op = {.kind = EDDY_OP_SPLICE, .fd = file};
        op.u.splice.fd_out = sock;
        op.u.splice.off_in = offset + (int64_t)*done;
        op.u.splice.len = want;
        int64_t n = eddy__op_run(&op);
        if (n < 0) return n;
        *done += (size_t)n;
        if ((size_t)n < want) break; /* the end of the file */
    }
    return 0;
}
#endif

#ifdef HAVE_SENDFILE_SYSCALL
/* One sendfile(2) with SIGPIPE held back (a socket whose peer left raises it,
 * and sendfile has no MSG_NOSIGNAL): *sent gets the bytes that went, and the
 * result is 0, or -errno (-EAGAIN: the socket is full). */
static int sendfile_once(int sock, int file, int64_t offset, size_t len, size_t *sent)
{
    sigset_t pipe_sig, old, before;
    sigemptyset(&pipe_sig);
    sigaddset(&pipe_sig, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_sig, &old);
    bool had_one = sigpending(&before) == 0 && sigismember(&before, SIGPIPE);
    int err = 0;
#if defined(__linux__)
    off_t off = (off_t)offset;
    ssize_t n = sendfile(sock, file, &off, len);
    *sent = n > 0 ? (size_t)n : 0;
    if (n < 0) err = -errno;
#elif defined(__FreeBSD__)
    off_t n = 0;
    if (sendfile(file, sock, (off_t)offset, len, NULL, &n, 0) < 0) err = -errno;
    *sent = (size_t)n;
#else /* macOS */
    off_t n = (off_t)len;
    if (sendfile(file, sock, (off_t)offset, &n, NULL, 0) < 0) err = -errno;
    *sent = (size_t)n;
#endif
    if (err == -EPIPE && !had_one) {
        const struct timespec now = {0, 0};
#ifdef __APPLE__
        sigset_t pending;
        int sig;
        if (sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE)) sigwait(&pipe_sig, &sig);
#else
        (void)sigtimedwait(&pipe_sig, NULL, &now); /* take the one this call raised */
#endif
        (void)now;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return err;
}

/* sendfile(2) while the socket takes bytes; a wait for room when it is full. */
static int64_t move_by_sendfile(eddy_stream *st, intptr_t sock, intptr_t file, int64_t offset,
                                size_t count)
{
    struct eddy_task *t = eddy__current_task();
    size_t done = 0;
    while (done < count) {
        if (eddy__stream_closing(st)) return -EBADF;
        if (eddy__task_cancelled(t)) return -ECANCELED;
        size_t want = count - done < SENDFILE_CHUNK ? count - done : SENDFILE_CHUNK;
        size_t sent = 0;
        int err = sendfile_once((int)sock, (int)file, offset + (int64_t)done, want, &sent);
        done += sent;
        if (err == 0 && sent == 0) break; /* end of file */
        /* a reader that keeps up never fills the socket: let the other
         * tasks run between chunks all the same */
        if (err == 0 && done < count && (done - sent) / YIELD_EVERY != done / YIELD_EVERY)
            err = eddy_yield();
        if (err == -EINTR || (err == -EAGAIN && sent > 0)) continue;
        if (err == -EAGAIN) err = eddy_wait_writable(sock, -1);
        if (err < 0) return err;
    }
    return (int64_t)done;
}
#endif

/* Where a chunk read from the file goes: sent on the socket, or (another
 * transport, TLS) written through the stream, which encrypts it, with a
 * drain that keeps the buffer bounded. 0 or an error. */
static int put_on_socket(eddy_stream *st, eddy_sock *sock, const char *buf, size_t n)
{
    if (eddy__stream_closing(st)) return -EBADF;
    ssize_t sent = eddy_send(sock, buf, n);
    return sent < 0 ? (int)sent : 0;
}

static int put_through_stream(eddy_stream *st, eddy_sock *sock, const char *buf, size_t n)
{
    (void)sock;
    int err = eddy_stream_write(st, buf, n);
    return err < 0 ? err : eddy_stream_drain(st);
}

/* The file read in chunks, each handed to put. */
static int64_t move_by_copy(eddy_stream *st, eddy_sock *sock, eddy_file *f, int64_t offset,
                            size_t count,
                            int (*put)(eddy_stream *, eddy_sock *, const char *, size_t))
{
    char *buf = malloc(count < COPY_CHUNK ? count : COPY_CHUNK);
    if (!buf) return -ENOMEM;
    size_t done = 0;
    int64_t err = 0;
    while (done < count && err == 0) {
        size_t want = count - done < COPY_CHUNK ? count - done : COPY_CHUNK;
        ssize_t n = eddy_file_read(f, buf, want, offset + (int64_t)done);
        if (n <= 0) {
            err = n; /* 0: end of file */
            break;
        }
        if ((err = put(st, sock, buf, (size_t)n)) == 0) done += (size_t)n;
    }
    free(buf);
    return err < 0 ? err : (int64_t)done;
}

EDDY_API ssize_t eddy_stream_sendfile(eddy_stream *st, eddy_file *f, int64_t offset, size_t count)
{
    struct eddy_task *t = eddy__current_task();
    if (!t) return -EPERM;
    if (!st || !f || offset < 0 || eddy_file_fd(f) < 0) return -EINVAL;
    if (count > SSIZE_MAX) count = SSIZE_MAX; /* SIZE_MAX: to the end of the file */
    struct eddy_loop *loop = t->loop;
    if (loop->caps[EDDY_CAP_SENDFILE] == EDDY_NONE) return -ENOTSUP;
    intptr_t file = eddy_file_fd(f);
#ifndef _WIN32
    struct stat sb;
    if (fstat((int)file, &sb) < 0) return -errno;
    if (!S_ISREG(sb.st_mode)) return -EINVAL; /* a pipe or a device has no offsets */
#else
    if (GetFileType((HANDLE)file) != FILE_TYPE_DISK) return -EINVAL; /* nor here */
#endif
    eddy_sock *sock;
    int err = eddy__stream_hold(st, &sock);
    if (err < 0) return err;
    if (!sock) { /* not the plain socket: the transport must see the bytes */
        eddy__stream_release(st, 0);
        return count ? (ssize_t)move_by_copy(st, NULL, f, offset, count, put_through_stream) : 0;
    }
    /* the zero-copy movers wait for writability: without fd watching
     * (EDDY_CAPS_DISABLE=watch_fd) the copy loop goes instead */
    bool can_wait = loop->caps[EDDY_CAP_WATCH_FD] != EDDY_NONE;
#if !defined(HAVE_SENDFILE_SYSCALL) && !defined(_WIN32)
    (void)file; /* only the copy loop here */
#endif
#ifndef HAVE_SENDFILE_SYSCALL
    (void)can_wait;
#endif
    int64_t r = 0;
    if (count == 0) {
        r = 0;
#ifdef _WIN32
    } else if (loop->backend.ops->handles(&loop->backend, EDDY_OP_SPLICE)) {
        /* TransmitFile; what it could not do (-ENOTSUP: a provider or a
         * file it refuses) goes through the copy loop from where it stopped */
        size_t done = 0;
        r = move_by_transmit(st, eddy_sock_fd(sock), file, offset, count, &done);
        if (r == -ENOTSUP && !eddy__stream_closing(st)) {
            r = move_by_copy(st, sock, f, offset + (int64_t)done, count - done, put_on_socket);
            if (r >= 0) r += (int64_t)done;
        } else if (r == 0) {
            r = (int64_t)done;
        }
#endif
#if defined(__linux__)
    } else if (can_wait && loop->backend.ops->handles(&loop->backend, EDDY_OP_SPLICE)) {
        r = move_by_splice(st, eddy_sock_fd(sock), file, offset, count);
#endif
#ifdef HAVE_SENDFILE_SYSCALL
    } else if (can_wait) {
        r = move_by_sendfile(st, eddy_sock_fd(sock), file, offset, count);
#endif
    } else {
        r = move_by_copy(st, sock, f, offset, count, put_on_socket);
    }
    if (r < 0 && eddy__stream_closing(st)) r = -EBADF;
    eddy__stream_release(st, r);
    return (ssize_t)r;
}
