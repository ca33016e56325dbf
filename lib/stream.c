/* SPDX-License-Identifier: MIT */
/* Streams: asyncio's StreamReader and StreamWriter over a connected eddy_sock
 * (docs/streams.md).
 *
 * Reading: one growable buffer, [rstart, rend) holding what was received and
 * not yet taken; it grows (doubling) up to the read limit and is reused, so a
 * steady reader allocates nothing. Only the reading task waits, in the
 * transport's recv. Where the backend can lend the bytes it received into
 * buffers of its own (io_uring's buffer ring: EDDY_OP_F_LEND), they are not
 * copied into ours: the pieces lent follow the buffer's bytes, in order, and
 * go back to the backend as they are taken. A read copies out across them;
 * peek, start_tls and a fill the backend answers by copying (it lends a
 * stream only so many pieces at once) first copy them into the buffer
 * (linearize), so the bytes stay in order and contiguous where they must.
 *
 * Writing: two buffers. Writes append to `pending` and never wait; `sending`
 * is the one a send op owns while it is in flight. A flush swaps them and
 * sends all of `sending` in one op, so every write of one loop iteration (or
 * up to one drain) goes out in one send. The op is the stream's own, not a
 * task's: it completes into send_complete, which wakes the drainers whose
 * mark is reached and queues the next flush, so a writer never needs a task.
 *
 * Between the buffers and the socket sits a transport (struct
 * stream_transport): recv, send_start/send_cancel, shutdown_write, close. The
 * plain one talks to the socket; lib/tls.c puts TLS there (lib/stream_layer.h). */
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#ifndef _WIN32
#include <netdb.h>
#include <sys/socket.h>
#endif

#include "internal.h"
#include "pipe.h"
#include "stream_layer.h"

#ifndef MSG_NOSIGNAL
#define MSG_NOSIGNAL 0
#endif

#define DEFAULT_LIMIT        (64 * 1024)
#define DEFAULT_HIGH_MARK    (64 * 1024)
#define READ_CHUNK           (16 * 1024) /* the least room a fill asks the socket to fill */
#define WRITE_BUFFER_MIN     4096
#define HAPPY_EYEBALLS_DELAY (250 * 1000 * 1000) /* asyncio's happy_eyeballs_delay, RFC 8305 */
#define LENT_MAX             16 /* pieces a stream holds lent; the backend caps it lower */

/* Waiters link records in their own frames into st->waiters and are always
 * unlinked before they return; GCC cannot follow that. */
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12
#pragma GCC diagnostic ignored "-Wdangling-pointer"
#endif

struct write_buffer {
    char *data;
    size_t len; /* bytes in data */
    size_t off; /* of which sent already (the sending buffer) */
    size_t cap;
};

/* A task in drain, write_eof or close, waiting until at most target bytes
 * are unsent; woken (and unlinked) with 0, the write error, or -EBADF. */
struct stream_waiter {
    struct eddy__list link; /* st->waiters */
    struct eddy_task *task;
    size_t target;
};

/* Bytes a backend lent (EDDY_OP_F_LEND), given back by token once taken. */
struct lent_piece {
    const char *data;
    size_t len;
    int64_t token;
};

struct eddy_stream {
    eddy_sock *sock;
    struct eddy_loop *loop;
    const struct stream_transport *transport;
    void *layer; /* the transport's own data (TLS), or NULL */
    size_t limit, high_mark, low_mark;

    /* reading */
    char *rbuf;
    size_t rstart, rend, rcap;
    bool lend;           /* the backend may lend received bytes */
    unsigned lent_count; /* pieces in lent[], after the buffer's bytes */
    size_t lent_bytes;   /* bytes in them */
    struct lent_piece lent[LENT_MAX];
    size_t peeked;            /* buffered bytes an earlier peek has shown */
    bool eof;                 /* the transport said EOF */
    int read_error;           /* sticky: the connection's read side failed */
    struct eddy_task *reader; /* the task in a read call */

    /* writing */
    struct write_buffer pending, sending;
    bool send_in_flight;
    bool flush_queued; /* flush_work is on the loop's ready queue */
    bool write_closed; /* write_eof began: writes get -EPIPE */
    bool layering;     /* a layer is starting (start_tls): nothing is sent, writes get -EBUSY */
    int write_error;   /* sticky: a send failed; buffers were dropped */
    struct eddy__work flush_work;
    struct eddy_op send_op;
    struct eddy__list waiters; /* struct stream_waiter, in arrival order */
    struct eddy_task *holder;  /* in eddy_stream_sendfile: flushes wait (lib/sendfile.c) */

    /* closing */
    bool closing;
    bool close_deferred;      /* closed outside a task: the last to leave finishes */
    struct eddy_task *closer; /* waiting for the reader and the send to leave */
    eddy_stream **owner;      /* where an owner keeps st (a process's stdio): NULLed on close */
};

static void stream_send_done(eddy_stream *st, int64_t result);
static void finish_close(eddy_stream *st);

/* ---- the plain transport: the socket itself ----------------------------------------- */

static ssize_t sock_recv(eddy_stream *st, void *buf, size_t len)
{
    return eddy_recv(st->sock, buf, len);
}

static void send_op_complete(struct eddy_op *op)
{
    eddy_stream *st = op->data;
    st->send_in_flight = false;
    int64_t result = op->result;
    if (st->transport->sent && !st->close_deferred) result = st->transport->sent(st, result);
    stream_send_done(st, result);
}

static int64_t sock_send_start(eddy_stream *st, const void *buf, size_t len)
{
    struct eddy_loop *loop = st->loop;
    struct eddy_op *op = &st->send_op;
    *op = (struct eddy_op){.kind = EDDY_OP_SEND, .fd = eddy__sock_op_fd(st->sock)};
    op->u.io.buf = (void *)buf;
    op->u.io.len = len > SSIZE_MAX ? SSIZE_MAX : len;
    op->u.io.flags = MSG_NOSIGNAL;
    op->state = EDDY_OP_STATE_IN_FLIGHT;
    op->complete = send_op_complete;
    op->data = st;
    eddy__list_init(&op->link);
    int rc = eddy__sock_route_send(st->sock, loop, op); /* a pipe end: a WRITE */
    if (rc < 0) return rc;
    rc = loop->backend.ops->submit(&loop->backend, op);
    if (rc < 0) return rc;
    if (rc == EDDY_OP_DONE) return op->result;
    st->send_in_flight = true;
    return SEND_PENDING;
}

static void sock_send_cancel(eddy_stream *st)
{
    struct eddy_op *op = &st->send_op;
    if (!st->send_in_flight || op->state != EDDY_OP_STATE_IN_FLIGHT) return;
    op->state = EDDY_OP_STATE_CANCELLING;
    st->loop->backend.ops->cancel(&st->loop->backend, op);
}

static int sock_shutdown_write(eddy_stream *st)
{
    return eddy_sock_shutdown(st->sock, EDDY_SHUT_WR);
}

static int sock_close(eddy_stream *st)
{
    return eddy_sock_close(st->sock);
}

const struct stream_transport eddy__stream_plain = {
    .recv = sock_recv,
    .send_start = sock_send_start,
    .send_cancel = sock_send_cancel,
    .shutdown_write = sock_shutdown_write,
    .close = sock_close,
};

/* ---- waiting for the write buffer -------------------------------------------------- */

static size_t unsent(const eddy_stream *st)
{
    return st->pending.len + (st->sending.len - st->sending.off);
}

static void waiter_wake(struct stream_waiter *w, int result)
{
    eddy__list_remove(&w->link);
    eddy__task_wake(w->task, result);
}

/* Wakes, in arrival order, every waiter whose target is reached (all of
 * them with err when err < 0). */
static void waiters_wake(eddy_stream *st, int err)
{
    size_t now = unsent(st);
    struct eddy__list *node = st->waiters.next;
    while (node != &st->waiters) {
        struct stream_waiter *w = eddy__container_of(node, struct stream_waiter, link);
        node = node->next;
        if (err < 0 || now <= w->target) waiter_wake(w, err);
    }
}

static void waiter_abort(struct eddy_task *t)
{
    waiter_wake(t->wait_data, -ECANCELED);
}

/* Task-only: waits until at most target bytes are unsent. The waker unlinks
 * the record, and the stream is not touched after the wake: close may have
 * freed it. */
static int wait_unsent(eddy_stream *st, struct eddy_task *t, size_t target)
{
    if (st->write_error) return st->write_error;
    if (unsent(st) <= target) return 0;
    if (eddy__task_cancelled(t)) return -ECANCELED;
    struct stream_waiter w = {.task = t, .target = target};
    eddy__list_push_back(&st->waiters, &w.link);
    t->abort_wait = waiter_abort;
    t->wait_data = &w;
    return (int)eddy__task_suspend(t);
}

/* ---- flushing ------------------------------------------------------------------------ */

/* Sends what is buffered, as long as sends finish at once; a send that has
 * to wait continues in send_complete. */
static void flush(eddy_stream *st)
{
    while (!st->send_in_flight && !st->write_error && !st->holder) {
        struct write_buffer *s = &st->sending;
        if (s->off == s->len) {
            if (st->pending.len == 0) return;
            struct write_buffer full = st->pending; /* swap: pending keeps the empty one */
            st->pending = *s;
            st->pending.len = st->pending.off = 0;
            *s = full;
            s->off = 0;
        }
        int64_t n = st->transport->send_start(st, s->data + s->off, s->len - s->off);
        if (n == SEND_PENDING) return;
        stream_send_done(st, n);
    }
}

static void flush_cancel_queued(eddy_stream *st)
{
    if (!st->flush_queued) return;
    eddy__list_remove(&st->flush_work.link);
    st->flush_queued = false;
}

static void flush_work_run(struct eddy__work *w)
{
    eddy_stream *st = eddy__container_of(w, eddy_stream, flush_work);
    st->flush_queued = false;
    if (st->close_deferred) {
        finish_close(st);
        return;
    }
    if (st->loop->closing) return; /* the loop is being freed: nothing may start */
    flush(st);
}

static void flush_queue(eddy_stream *st)
{
    if (st->flush_queued || st->send_in_flight) return;
    st->flush_queued = true;
    eddy__loop_schedule(st->loop, &st->flush_work);
}

/* A send ended: result bytes went out, or it failed. Called inline by flush
 * or from the backend's completion (then the next flush is queued, not run:
 * a backend's poll is no place to submit from). */
static void stream_send_done(eddy_stream *st, int64_t result)
{
    if (st->close_deferred) {
        if (!st->send_in_flight && !st->reader && !st->holder) flush_queue(st); /* finish_close */
        return;
    }
    if (result == -ECANCELED && st->closing) result = -EBADF;
    if (result < 0) {
        st->write_error = (int)result;
        st->sending.len = st->sending.off = 0;
        st->pending.len = 0;
    } else {
        st->sending.off += (size_t)result;
    }
    waiters_wake(st, st->write_error);
    if (st->closer && !st->send_in_flight && !st->reader && !st->holder)
        eddy__task_wake(st->closer, 0);
    if (!st->closing && unsent(st) > 0) flush_queue(st);
}

/* ---- opening ----------------------------------------------------------------------- */

/* Whether s is a connected byte stream: a pipe end, or a socket that is
 * neither a datagram socket nor a listener. */
static bool is_stream_socket(eddy_sock *s)
{
    if (eddy__fd_direct(eddy__sock_op_fd(s))) return true; /* accepted: a connected stream */
    if (eddy__sock_is_pipe(s)) return true;
#ifdef _WIN32
    SOCKET fd = (SOCKET)eddy_sock_fd(s);
#else
    int fd = (int)eddy_sock_fd(s);
#endif
    int type = 0, listening = 0;
    socklen_t len = sizeof(type);
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, (void *)&type, &len) < 0 || type != SOCK_STREAM)
        return false;
    len = sizeof(listening);
    return getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, (void *)&listening, &len) < 0 || !listening;
}

/* eddy_stream_options' layouts, oldest first (lib/loop.c explains). */
static const size_t stream_options_layouts[] = {
    sizeof(eddy_stream_options), /* 0.1 */
};
_Static_assert(sizeof(eddy_stream_options) ==
                   offsetof(eddy_stream_options, low_mark) + sizeof(size_t),
               "eddy_stream_options: no tail padding, where a later field could land");

/* The caller's options (NULL: the defaults) as this library lays them out. */
static int stream_options(eddy_stream_options *dst, const eddy_stream_options *o)
{
    *dst = (eddy_stream_options){0};
    if (!o) return 0;
    return eddy__options_read(dst, sizeof *dst, o, stream_options_layouts,
                              sizeof stream_options_layouts / sizeof stream_options_layouts[0]);
}

EDDY_API int eddy_stream_open(eddy_stream **out, eddy_sock *s, const eddy_stream_options *o)
{
    if (out) *out = NULL;
    if (!s) return -EINVAL;
    struct eddy_loop *loop = eddy_loop_current();
    eddy_stream_options opts;
    int bad = stream_options(&opts, o);
    if (!opts.limit) opts.limit = DEFAULT_LIMIT;
    if (!opts.high_mark) opts.high_mark = DEFAULT_HIGH_MARK;
    if (!opts.low_mark) opts.low_mark = opts.high_mark / 4;
    int err = 0;
    eddy_stream *st = NULL;
    if (bad < 0 || !out || !loop || opts.low_mark > opts.high_mark || !is_stream_socket(s))
        err = -EINVAL;
    else if (!(st = calloc(1, sizeof(*st))))
        err = -ENOMEM;
    if (err < 0) {
        (void)eddy_sock_close(s); /* the stream took it */
        return err;
    }
    st->sock = s;
    st->loop = loop;
    st->transport = &eddy__stream_plain;
    st->limit = opts.limit;
    st->high_mark = opts.high_mark;
    st->low_mark = opts.low_mark;
    st->lend = loop->backend.ops->lend_release != NULL;
    st->flush_work.run = flush_work_run;
    eddy__list_init(&st->flush_work.link);
    eddy__list_init(&st->waiters);
    *out = st;
    return 0;
}

/* ---- the read buffer ----------------------------------------------------------------- */

static size_t buffered(const eddy_stream *st)
{
    return st->rend - st->rstart + st->lent_bytes;
}

/* Gives the first lent piece back to the backend. */
static void lent_drop_first(eddy_stream *st)
{
    struct eddy_backend *b = &st->loop->backend;
    b->ops->lend_release(b, st->lent[0].token);
    st->lent_bytes -= st->lent[0].len;
    st->lent_count--;
    memmove(st->lent, st->lent + 1, st->lent_count * sizeof st->lent[0]);
}

static void lent_drop_all(eddy_stream *st)
{
    while (st->lent_count)
        lent_drop_first(st);
}

/* Buffered piece i: 0 is the buffer's bytes, the lent pieces follow. */
static const char *piece(const eddy_stream *st, unsigned i, size_t *len)
{
    if (i == 0) {
        *len = st->rend - st->rstart;
        return st->rbuf ? st->rbuf + st->rstart : NULL;
    }
    *len = st->lent[i - 1].len;
    return st->lent[i - 1].data;
}

/* Drops n bytes from the front of what is buffered. */
static void rbuf_take(eddy_stream *st, size_t n)
{
    st->peeked = st->peeked > n ? st->peeked - n : 0;
    size_t own = st->rend - st->rstart < n ? st->rend - st->rstart : n;
    st->rstart += own;
    n -= own;
    if (st->rstart == st->rend) st->rstart = st->rend = 0;
    while (n > 0) {
        struct lent_piece *p = &st->lent[0];
        if (n < p->len) {
            p->data += n;
            p->len -= n;
            st->lent_bytes -= n;
            return;
        }
        n -= p->len;
        lent_drop_first(st);
    }
}

/* Room for at least want more bytes after rend: moves the bytes to the
 * front, or grows the buffer (doubling). 0 or -ENOMEM. */
static int rbuf_reserve(eddy_stream *st, size_t want)
{
    if (st->rcap - st->rend >= want) return 0;
    size_t have = st->rend - st->rstart;
    if (st->rstart > 0 && st->rcap - have >= want) {
        memmove(st->rbuf, st->rbuf + st->rstart, have);
        st->rstart = 0;
        st->rend = have;
        return 0;
    }
    size_t cap = st->rcap ? st->rcap : READ_CHUNK;
    while (cap - have < want)
        cap *= 2;
    char *b = malloc(cap);
    if (!b) return -ENOMEM;
    if (have) memcpy(b, st->rbuf + st->rstart, have);
    free(st->rbuf);
    st->rbuf = b;
    st->rcap = cap;
    st->rstart = 0;
    st->rend = have;
    return 0;
}

/* Copies the lent pieces into the buffer after its bytes (the caller made
 * room for them there) and gives them back. */
static void lent_linearize_at(eddy_stream *st)
{
    while (st->lent_count) {
        memcpy(st->rbuf + st->rend, st->lent[0].data, st->lent[0].len);
        st->rend += st->lent[0].len;
        lent_drop_first(st);
    }
}

/* Everything buffered in one piece, the buffer. 0 or -ENOMEM. */
static int linearize(eddy_stream *st)
{
    if (st->lent_count == 0) return 0;
    int err = rbuf_reserve(st, st->lent_bytes);
    if (err < 0) return err;
    lent_linearize_at(st);
    return 0;
}

/* A read error that says the connection's read side is over, kept for the
 * calls that follow; cancellation and a lack of memory are not. */
static bool error_is_sticky(ssize_t err)
{
    return err != -ECANCELED && err != -ENOMEM && err != -EINTR && err != -EAGAIN;
}

/* What the transport returned, as the stream records it. */
static ssize_t received(eddy_stream *st, ssize_t n)
{
    if (st->closing) return -EBADF;
    if (n == 0) st->eof = true;
    if (n < 0 && error_is_sticky(n)) st->read_error = (int)n;
    return n;
}

/* fill on the plain socket of a backend that lends: the bytes come lent,
 * a piece after the others, or copied into the buffer past the room the
 * lent pieces would take there, which they then move into. */
static ssize_t fill_lent(eddy_stream *st, size_t room)
{
    int err = rbuf_reserve(st, st->lent_bytes + (room < READ_CHUNK ? room : READ_CHUNK));
    if (err < 0) return err;
    size_t len = st->rcap - st->rend - st->lent_bytes;
    if (len > room) len = room;
    const void *lent;
    int64_t token = 0;
    ssize_t n = received(
        st, eddy__recv_lend(st->sock, st->rbuf + st->rend + st->lent_bytes, len, &lent, &token));
    if (lent && n > 0) {
        st->lent[st->lent_count++] = (struct lent_piece){lent, (size_t)n, token};
        st->lent_bytes += (size_t)n;
    } else if (lent) { /* closed meanwhile */
        struct eddy_backend *b = &st->loop->backend;
        b->ops->lend_release(b, token);
    } else if (n > 0) {
        lent_linearize_at(st);
        st->rend += (size_t)n;
    }
    return n;
}

/* Task-only: receives more bytes into the buffer, which holds fewer than
 * limit. The count, 0 at EOF, or an error; the bytes buffered stay. */
static ssize_t fill(eddy_stream *st)
{
    if (st->read_error) return st->read_error;
    if (st->eof) return 0;
    size_t room = st->limit - buffered(st);
    if (st->lend && st->transport == &eddy__stream_plain && st->lent_count < LENT_MAX)
        return fill_lent(st, room);
    int err = linearize(st);
    if (err < 0) return err;
    if ((err = rbuf_reserve(st, room < READ_CHUNK ? room : READ_CHUNK)) < 0) return err;
    size_t len = st->rcap - st->rend;
    if (len > room) len = room;
    ssize_t n = received(st, st->transport->recv(st, st->rbuf + st->rend, len));
    if (n > 0) st->rend += (size_t)n;
    return n;
}

/* Every read call runs between these two: one reader at a time, and close
 * waits for it to leave. */
static int read_begin(eddy_stream *st)
{
    struct eddy_task *t = eddy__current_task();
    if (!t) return -EPERM;
    if (!st) return -EINVAL;
    if (st->closing) return -EBADF;
    if (st->reader) return -EBUSY;
    st->reader = t;
    return 0;
}

static ssize_t read_end(eddy_stream *st, ssize_t result)
{
    st->reader = NULL;
    if (!st->closing) return result;
    if (st->close_deferred) {
        if (!st->send_in_flight && !st->holder) flush_queue(st); /* runs finish_close */
    } else if (st->closer && !st->send_in_flight && !st->holder) {
        eddy__task_wake(st->closer, 0);
    }
    return -EBADF;
}

/* ---- reading --------------------------------------------------------------------- */

static size_t copy_out(eddy_stream *st, void *buf, size_t len)
{
    size_t n = buffered(st) < len ? buffered(st) : len, done = 0;
    for (unsigned i = 0; done < n; i++) {
        size_t plen;
        const char *p = piece(st, i, &plen);
        if (plen > n - done) plen = n - done;
        if (plen) memcpy((char *)buf + done, p, plen);
        done += plen;
    }
    rbuf_take(st, n);
    return n;
}

EDDY_API ssize_t eddy_stream_read(eddy_stream *st, void *buf, size_t len)
{
    int err = read_begin(st);
    if (err < 0) return err;
    ssize_t n = 0;
    if (!buf && len > 0) {
        n = -EINVAL;
    } else if (len > 0 && buffered(st) == 0) {
        /* Nothing buffered: a large read goes straight into the caller's
         * buffer, a small one fills ours (fewer syscalls for small reads). */
        if (st->read_error)
            n = st->read_error;
        else if (st->eof)
            n = 0;
        else if (len >= READ_CHUNK)
            n = received(st, st->transport->recv(st, buf, len));
        else if ((n = fill(st)) > 0)
            n = (ssize_t)copy_out(st, buf, len);
    } else {
        n = (ssize_t)copy_out(st, buf, len);
    }
    return read_end(st, n);
}

/* Puts back bytes a read had taken (the buffer is empty then): an
 * interrupted readexactly leaves the stream as it found it. */
static int rbuf_restore(eddy_stream *st, const void *bytes, size_t n)
{
    if (n == 0) return 0; /* the buffer may not even exist yet */
    int err = rbuf_reserve(st, n);
    if (err < 0) return err;
    memmove(st->rbuf + st->rstart + n, st->rbuf + st->rstart, st->rend - st->rstart);
    memcpy(st->rbuf + st->rstart, bytes, n);
    st->rend += n;
    return 0;
}

/* readexactly of more than the limit: what is buffered, then the rest
 * received straight into buf. */
static ssize_t read_large(eddy_stream *st, char *buf, size_t n)
{
    size_t got = copy_out(st, buf, n);
    while (got < n) {
        ssize_t r = st->read_error ? st->read_error
                    : st->eof      ? 0
                                   : received(st, st->transport->recv(st, buf + got, n - got));
        if (r <= 0) {
            if (!st->closing) (void)rbuf_restore(st, buf, got);
            return r == 0 ? -EPIPE : r;
        }
        got += (size_t)r;
    }
    return (ssize_t)n;
}

EDDY_API ssize_t eddy_stream_readexactly(eddy_stream *st, void *buf, size_t n)
{
    int err = read_begin(st);
    if (err < 0) return err;
    ssize_t r = (ssize_t)n;
    if ((!buf && n > 0) || n > SSIZE_MAX) {
        r = -EINVAL;
    } else if (n > st->limit) {
        r = read_large(st, buf, n);
    } else {
        while (buffered(st) < n && (r = fill(st)) > 0)
            ;
        if (buffered(st) >= n)
            r = (ssize_t)copy_out(st, buf, n);
        else if (r == 0)
            r = -EPIPE; /* EOF first: the bytes stay buffered */
    }
    return read_end(st, r);
}

/* Whether sep is buffered at offset off of piece i (it may go on into the
 * pieces after it). */
static bool matches_at(const eddy_stream *st, unsigned i, size_t off, const char *sep,
                       size_t seplen)
{
    for (size_t k = 0; k < seplen; i++, off = 0) {
        if (i > st->lent_count) return false;
        size_t len;
        const char *p = piece(st, i, &len);
        size_t n = len - off < seplen - k ? len - off : seplen - k;
        if (n && memcmp(p + off, sep + k, n) != 0) return false;
        k += n;
    }
    return true;
}

/* The offset of sep in the buffered bytes from offset from on, or -1; a
 * separator may straddle the pieces. */
static ptrdiff_t find(const eddy_stream *st, size_t from, const char *sep, size_t seplen)
{
    size_t total = buffered(st), base = 0;
    for (unsigned i = 0; i <= st->lent_count; i++) {
        size_t len;
        const char *p = piece(st, i, &len);
        if (len && from < base + len) {
            const char *q = p + (from > base ? from - base : 0), *end = p + len;
            while (q < end && (q = memchr(q, sep[0], (size_t)(end - q)))) {
                size_t at = base + (size_t)(q - p);
                if (at + seplen > total) return -1;
                if (matches_at(st, i, (size_t)(q - p), sep, seplen)) return (ptrdiff_t)at;
                q++;
            }
        }
        base += len;
    }
    return -1;
}

/* readuntil and readline; partial_at_eof says what EOF before sep gives. */
static ssize_t read_until(eddy_stream *st, const char *sep, size_t seplen, char *buf, size_t cap,
                          bool partial_at_eof)
{
    size_t scanned = 0; /* bytes searched already, less a separator's tail */
    for (;;) {
        ptrdiff_t at = find(st, scanned, sep, seplen);
        if (at >= 0) {
            size_t total = (size_t)at + seplen;
            return total > cap ? -EOVERFLOW : (ssize_t)copy_out(st, buf, total);
        }
        size_t have = buffered(st);
        if (have >= cap || have >= st->limit) return -EOVERFLOW; /* the bytes stay */
        scanned = have >= seplen ? have - seplen + 1 : 0;
        ssize_t n = fill(st);
        if (n < 0) return n;
        if (n == 0) {
            if (!partial_at_eof) return -EPIPE;
            return (ssize_t)copy_out(st, buf, have);
        }
    }
}

EDDY_API ssize_t eddy_stream_readuntil(eddy_stream *st, const void *sep, size_t seplen, void *buf,
                                       size_t cap)
{
    int err = read_begin(st);
    if (err < 0) return err;
    ssize_t r = -EINVAL;
    if (sep && seplen > 0 && (buf || cap == 0) && cap <= SSIZE_MAX)
        r = read_until(st, sep, seplen, buf, cap, false);
    return read_end(st, r);
}

EDDY_API ssize_t eddy_stream_readline(eddy_stream *st, void *buf, size_t cap)
{
    int err = read_begin(st);
    if (err < 0) return err;
    ssize_t r = -EINVAL;
    if ((buf || cap == 0) && cap <= SSIZE_MAX) r = read_until(st, "\n", 1, buf, cap, true);
    return read_end(st, r);
}

EDDY_API int eddy_stream_peek(eddy_stream *st, const void **data, size_t *len)
{
    int err = read_begin(st);
    if (err < 0) return err;
    ssize_t r = 0;
    if (!data || !len) {
        r = -EINVAL;
    } else if (buffered(st) == st->peeked) { /* nothing new to show: wait for more */
        if (st->eof)
            r = buffered(st) ? -EPIPE : 0;
        else if (buffered(st) >= st->limit)
            r = -EOVERFLOW;
        else if ((r = fill(st)) == 0 && buffered(st))
            r = -EPIPE;
    }
    if (data && len) {
        /* one piece: lent, or the buffer's (several are copied together) */
        bool one = st->lent_count == 0 || (st->lent_count == 1 && st->rend == st->rstart);
        int lerr = one ? 0 : linearize(st);
        if (lerr < 0 && r >= 0) r = lerr;
        size_t first;
        unsigned i = st->rend == st->rstart && st->lent_count ? 1 : 0;
        *data = lerr < 0 ? NULL : piece(st, i, &first);
        *len = lerr < 0 ? 0 : buffered(st);
        if (r >= 0) st->peeked = buffered(st);
    }
    return (int)read_end(st, r < 0 ? r : 0);
}

EDDY_API int eddy_stream_consume(eddy_stream *st, size_t n)
{
    if (!st) return -EINVAL;
    if (st->closing) return -EBADF;
    if (st->reader) return -EBUSY;
    if (n > buffered(st)) return -EINVAL;
    rbuf_take(st, n);
    return 0;
}

/* ---- writing --------------------------------------------------------------------- */

static int write_check(const eddy_stream *st)
{
    if (!st) return -EINVAL;
    if (st->closing) return -EBADF;
    if (st->write_error) return st->write_error;
    if (st->write_closed) return -EPIPE;
    if (st->layering) return -EBUSY;
    return 0;
}

/* Room for len more bytes in pending (doubling). 0, -ENOMEM, -EOVERFLOW. */
static int pending_reserve(struct write_buffer *b, size_t len)
{
    if (b->cap - b->len >= len) return 0;
    if (len > SIZE_MAX / 2 - b->len) return -EOVERFLOW;
    size_t cap = b->cap ? b->cap : WRITE_BUFFER_MIN;
    while (cap - b->len < len)
        cap *= 2;
    char *data = realloc(b->data, cap);
    if (!data) return -ENOMEM;
    b->data = data;
    b->cap = cap;
    return 0;
}

EDDY_API int eddy_stream_writev(eddy_stream *st, const struct iovec *iov, int n)
{
    int err = write_check(st);
    if (err < 0) return err;
    if (n < 0 || (!iov && n > 0)) return -EINVAL;
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        if (!iov[i].iov_base && iov[i].iov_len) return -EINVAL;
        if (iov[i].iov_len > SIZE_MAX / 2 - total) return -EOVERFLOW;
        total += iov[i].iov_len;
    }
    if (total == 0) return 0;
    if ((err = pending_reserve(&st->pending, total)) < 0) return err;
    for (int i = 0; i < n; i++) {
        if (!iov[i].iov_len) continue;
        memcpy(st->pending.data + st->pending.len, iov[i].iov_base, iov[i].iov_len);
        st->pending.len += iov[i].iov_len;
    }
    flush_queue(st);
    return 0;
}

EDDY_API int eddy_stream_write(eddy_stream *st, const void *buf, size_t len)
{
    struct iovec one = {.iov_base = (void *)buf, .iov_len = len};
    return eddy_stream_writev(st, &one, 1);
}

EDDY_API int eddy_stream_drain(eddy_stream *st)
{
    struct eddy_task *t = eddy__current_task();
    if (!t) return -EPERM;
    if (!st) return -EINVAL;
    if (st->closing) return -EBADF;
    flush_cancel_queued(st); /* this is the flush point */
    flush(st);
    if (st->write_error) return st->write_error;
    if (unsent(st) <= st->high_mark) return eddy__task_cancelled(t) ? -ECANCELED : 0;
    return wait_unsent(st, t, st->low_mark);
}

EDDY_API size_t eddy_stream_write_buffer_size(const eddy_stream *st)
{
    return st ? unsent(st) : 0;
}

EDDY_API int eddy_stream_write_eof(eddy_stream *st)
{
    struct eddy_task *t = eddy__current_task();
    if (!t) return -EPERM;
    int err = write_check(st);
    if (err < 0) return err;
    st->write_closed = true;
    flush_cancel_queued(st);
    flush(st);
    if ((err = wait_unsent(st, t, 0)) < 0) return err;
    return st->transport->shutdown_write(st);
}

/* ---- sendfile's hold (lib/sendfile.c) ------------------------------------------------- */

/* Task-only: sends everything buffered, then holds later writes in the buffer
 * until eddy__stream_release, so that the bytes sendfile puts on the socket
 * go between them. *sock: the socket, or NULL when the transport is not the
 * plain socket (the bytes must then go through eddy_stream_write). */
int eddy__stream_hold(eddy_stream *st, eddy_sock **sock)
{
    struct eddy_task *t = eddy__current_task();
    int err = write_check(st);
    if (err < 0) return err;
    if (st->holder) return -EBUSY;
    flush_cancel_queued(st);
    flush(st);
    while (unsent(st) > 0) /* other tasks may write while this one waits */
        if ((err = wait_unsent(st, t, 0)) < 0) return err;
    if ((err = write_check(st)) < 0) return err;
    st->holder = t;
    *sock = st->transport == &eddy__stream_plain ? st->sock : NULL;
    return 0;
}

bool eddy__stream_closing(const eddy_stream *st)
{
    return st->closing;
}

/* Ends a hold with sendfile's result: a send error is sticky as a failed
 * flush's is; the writes held go out. st may be freed once this returns. */
void eddy__stream_release(eddy_stream *st, int64_t result)
{
    st->holder = NULL;
    if (st->closing) {
        if (st->reader || st->send_in_flight) return; /* the last of them finishes */
        if (st->close_deferred)
            flush_queue(st); /* runs finish_close */
        else if (st->closer)
            eddy__task_wake(st->closer, 0);
        return;
    }
    if (result == -EPIPE || result == -ECONNRESET || result == -ENOTCONN) {
        st->write_error = (int)result;
        st->pending.len = 0;
        waiters_wake(st, st->write_error);
    }
    if (unsent(st) > 0) flush_queue(st);
}

/* ---- closing ------------------------------------------------------------------------ */

/* The reader and the send have left: closes the socket, frees everything. */
static void finish_close(eddy_stream *st)
{
    flush_cancel_queued(st);
    lent_drop_all(st);
    int err = st->transport->close(st);
    free(st->rbuf);
    free(st->pending.data);
    free(st->sending.data);
    free(st);
    (void)err;
}

/* Ends the reader's wait, as eddy_sock_close ends a call's: its recv returns
 * and read_end sees the stream closing. */
static void reader_abort(eddy_stream *st, struct eddy_task *t)
{
    if (!t || t->state != EDDY__TASK_SUSPENDED || !t->abort_wait) return;
    void (*abort_wait)(struct eddy_task *) = t->abort_wait;
    t->abort_wait = NULL;
    abort_wait(t);
}

EDDY_API int eddy_stream_close(eddy_stream *st)
{
    if (!st) return -EINVAL;
    if (st->closing) return -EBADF;
    if (st->owner) *st->owner = NULL;
    struct eddy_task *t = eddy__current_task();
    int err = 0;
    if (t) { /* send what can be sent, within the task's cancellation and scopes */
        flush_cancel_queued(st);
        flush(st);
        err = wait_unsent(st, t, 0);
        if (st->write_error && err == 0) err = st->write_error;
    }
    st->closing = true;
    flush_cancel_queued(st);
    st->pending.len = 0;
    waiters_wake(st, -EBADF);
    reader_abort(st, st->reader);
    reader_abort(st, st->holder);
    st->transport->send_cancel(st);
    if (!t) {
        st->close_deferred = true;
        if (!st->reader && !st->send_in_flight && !st->holder) finish_close(st);
        return err;
    }
    while (st->reader || st->send_in_flight ||
           st->holder) { /* deaf to cancellation: they end soon */
        st->closer = t;
        t->abort_wait = NULL;
        t->wait_data = NULL;
        eddy__task_suspend(t);
        st->closer = NULL;
    }
    lent_drop_all(st); /* before the socket goes: the backend frees what it lent with it */
    eddy_shield_begin();
    int cerr = st->transport->close(st);
    eddy_shield_end();
    free(st->rbuf);
    free(st->pending.data);
    free(st->sending.data);
    free(st);
    return err < 0 ? err : cerr;
}

void eddy__stream_set_owner(eddy_stream *st, eddy_stream **slot)
{
    st->owner = slot;
}

/* ---- layers: the hooks lib/tls.c starts TLS with (lib/stream_layer.h) ---------------- */

eddy_sock *eddy__stream_sock(const eddy_stream *st)
{
    return st->sock;
}

void *eddy__stream_layer(const eddy_stream *st)
{
    return st->layer;
}

int eddy__stream_layer_begin(eddy_stream *st, const void **data, size_t *len)
{
    int err = read_begin(st);
    if (err < 0) return err;
    if (st->layer)
        err = -EINVAL; /* one layer per stream */
    else if (st->read_error || st->write_error)
        err = st->read_error ? st->read_error : st->write_error;
    else if (st->eof || st->write_closed)
        err = -EPIPE;
    else if ((err = linearize(st)) == 0) { /* the layer takes the bytes in one piece */
        flush_cancel_queued(st);
        flush(st);
        err = wait_unsent(st, st->reader, 0);
    }
    if (err < 0 || st->closing) return (int)read_end(st, err);
    st->layering = true;
    *data = st->rbuf ? st->rbuf + st->rstart : NULL;
    *len = buffered(st);
    return 0;
}

int eddy__stream_layer_end(eddy_stream *st, const struct stream_transport *t, void *layer, int err)
{
    st->layering = false;
    if (!st->closing) {
        lent_drop_all(st);
        st->rstart = st->rend = st->peeked = 0;
        if (err == 0) {
            st->transport = t;
            st->layer = layer;
        } else { /* the connection is neither plain nor layered now */
            st->read_error = st->write_error = err;
        }
    }
    return (int)read_end(st, err);
}

/* ---- connecting: Happy Eyeballs (RFC 8305) -------------------------------------------- */

struct attempt {
    const struct sockaddr *addr;
    socklen_t len;
    eddy_sock *sock; /* connected */
    eddy_task *task;
};

static intptr_t attempt_run(void *arg)
{
    struct attempt *a = arg;
    return eddy__tcp_connect_addr(&a->sock, a->addr, a->len);
}

/* Task-only: connects to the first of n addresses to answer, trying them in
 * the order given: each attempt starts delay_ns after the one before it, or
 * as soon as that one fails; the first to connect wins and the others are
 * cancelled. 0, or the last attempt's error, -ECANCELED, -ENOMEM. */
int eddy__connect_race(eddy_sock **out, const struct sockaddr *const *addrs, const socklen_t *lens,
                       size_t n, int64_t delay_ns)
{
    if (!eddy__current_task()) return -EPERM;
    if (!out || !addrs || !lens || n == 0) return -EINVAL;
    *out = NULL;
    struct attempt *a = calloc(n, sizeof(*a));
    eddy_future **live = calloc(n, sizeof(*live));
    size_t *live_index = calloc(n, sizeof(*live_index));
    if (!a || !live || !live_index) {
        free(a);
        free(live);
        free(live_index);
        return -ENOMEM;
    }
    size_t started = 0, nlive = 0;
    int err = -ENXIO;
    eddy_sock *winner = NULL;
    while (!winner) {
        bool start = nlive == 0;
        if (!start) {
            int i = eddy_wait_any(live, nlive, started < n ? delay_ns : -1);
            if (i == -ETIMEDOUT) {
                start = true;
            } else if (i < 0) {
                err = i;
                break;
            } else {
                struct attempt *done = &a[live_index[i]];
                live[i] = live[nlive - 1];
                live_index[i] = live_index[--nlive];
                intptr_t r = 0;
                int jerr = eddy_task_join(done->task, &r);
                done->task = NULL;
                if (jerr == 0 && r == 0) {
                    winner = done->sock;
                    done->sock = NULL;
                    break;
                }
                err = jerr < 0 ? jerr : (int)r; /* a failed task's join gives its error */
                if (eddy__task_cancelled(eddy__current_task())) break;
                start = true; /* a failure starts the next at once */
            }
        }
        if (start && started < n) {
            struct attempt *next = &a[started];
            next->addr = addrs[started];
            next->len = lens[started];
            if (!(next->task = eddy_spawn(NULL, attempt_run, next))) {
                err = -ENOMEM;
                break;
            }
            live[nlive] = eddy_task_future(next->task);
            live_index[nlive++] = started++;
        } else if (start && nlive == 0) {
            break; /* every attempt failed */
        }
    }
    /* The losers: cancelled, awaited (they use a), and closed if they won too. */
    eddy_shield_begin();
    for (size_t i = 0; i < started; i++) {
        if (a[i].task) {
            eddy_task_cancel(a[i].task);
            (void)eddy_task_join(a[i].task, NULL);
        }
        if (a[i].sock) (void)eddy_sock_close(a[i].sock);
    }
    eddy_shield_end();
    free(a);
    free(live);
    free(live_index);
    if (!winner) return err;
    *out = winner;
    return 0;
}

/* RFC 8305's order: the first address's family first, then the families in
 * turn. Fills addrs and lens; returns how many. */
static size_t interleave(const struct addrinfo *res, const struct sockaddr **addrs, socklen_t *lens,
                         size_t max)
{
    int first = res->ai_family;
    const struct addrinfo *same = res, *other = res;
    size_t n = 0;
    bool want_first = true;
    while (n < max) {
        const struct addrinfo **cursor = want_first ? &same : &other;
        while (*cursor && (((*cursor)->ai_family == first) != want_first))
            *cursor = (*cursor)->ai_next;
        if (!*cursor) {
            want_first = !want_first;
            const struct addrinfo *rest = want_first ? same : other;
            while (rest && ((rest->ai_family == first) != want_first))
                rest = rest->ai_next;
            if (!rest) break;
            continue;
        }
        addrs[n] = (*cursor)->ai_addr;
        lens[n++] = (socklen_t)(*cursor)->ai_addrlen;
        *cursor = (*cursor)->ai_next;
        want_first = !want_first;
    }
    return n;
}

static int connect_name(eddy_sock **out, const char *host, uint16_t port)
{
    struct addrinfo *res;
    int err = eddy__tcp_resolve(host, port, &res);
    if (err < 0) return err;
    size_t n = 0;
    for (const struct addrinfo *ai = res; ai; ai = ai->ai_next)
        n++;
    const struct sockaddr **addrs = calloc(n ? n : 1, sizeof(*addrs));
    socklen_t *lens = calloc(n ? n : 1, sizeof(*lens));
    if (!addrs || !lens)
        err = -ENOMEM;
    else if (n == 0)
        err = -ENXIO;
    else
        err = eddy__connect_race(out, addrs, lens, interleave(res, addrs, lens, n),
                                 HAPPY_EYEBALLS_DELAY);
    free(addrs);
    free(lens);
    freeaddrinfo(res);
    return err;
}

EDDY_API int eddy_open_connection(eddy_stream **out, const char *host, uint16_t port,
                                  const eddy_stream_options *o)
{
    if (!eddy__current_task()) return -EPERM;
    if (!out) return -EINVAL;
    *out = NULL;
    if (!host || !*host || port == 0) return -EINVAL;
    eddy_stream_options opts;
    if (stream_options(&opts, o) < 0 ||
        opts.low_mark > (opts.high_mark ? opts.high_mark : DEFAULT_HIGH_MARK))
        return -EINVAL;
    struct sockaddr_storage ss;
    eddy_sock *s;
    int err = eddy_addr_parse(&ss, host, port) == 0 ? eddy_tcp_connect(&s, host, port)
                                                    : connect_name(&s, host, port);
    if (err < 0) return err;
    return eddy_stream_open(out, s, o);
}
