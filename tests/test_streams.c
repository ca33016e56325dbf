/* SPDX-License-Identifier: MIT */
/* Streams and servers: readline/readuntil/readexactly over a peer that writes
 * in random pieces, the read limit (-EOVERFLOW, bytes kept), EOF mid-line,
 * reset, half-close, drain with marks and several drainers, peek/consume,
 * writev, cancellation keeping bytes, close with a reader waiting, a server
 * with 100 clients, open_connection by name, Happy Eyeballs, and a real peer
 * written with Python's asyncio streams. */
#include <stdio.h>
#ifndef _WIN32
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>
#define SOCKET_TYPE int
#else
#define SOCKET_TYPE SOCKET
#endif

#include "helpers.h"

/* ---- helpers ----------------------------------------------------------------- */

/* A connected TCP pair over loopback: the near end as a stream (with
 * options o), the far end a plain socket the test drives as the peer. */
struct pair {
    eddy_stream *st;
    eddy_sock *peer;
};

static void pair_open(struct pair *p, const eddy_stream_options *o)
{
    eddy_sock *listener, *near_end;
    cr_assert(eq(int, eddy_tcp_listen(&listener, "127.0.0.1", 0, 0), 0));
    cr_assert(
        eq(int, eddy_tcp_connect(&near_end, "127.0.0.1", (uint16_t)eddy_sock_port(listener)), 0));
    cr_assert(eq(int, eddy_accept(listener, &p->peer), 0));
    cr_assert(eq(int, eddy_sock_close(listener), 0));
    cr_assert(eq(int, eddy_stream_open(&p->st, near_end, o), 0));
}

static void pair_close(struct pair *p)
{
    if (p->st) cr_expect(eq(int, eddy_stream_close(p->st), 0));
    if (p->peer) cr_expect(eq(int, eddy_sock_close(p->peer), 0));
}

/* Receives exactly len bytes from a plain socket. */
static void recv_all(eddy_sock *s, void *buf, size_t len)
{
    for (size_t got = 0; got < len;) {
        ssize_t n = eddy_recv(s, (char *)buf + got, len - got);
        cr_assert(gt(long, (long)n, 0), "recv: %s", eddy_strerror((int)n));
        got += (size_t)n;
    }
}

/* xorshift: the same pieces on every run and platform. */
static uint32_t next_random(uint32_t *state)
{
    uint32_t x = *state;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return *state = x;
}

/* The peer: sends len bytes of data in random pieces of 1..max_piece bytes,
 * yielding between them, then closes its write side. */
struct chopper {
    eddy_sock *s;
    const char *data;
    size_t len;
    size_t max_piece;
    uint32_t seed;
};

static intptr_t chopper_run(void *arg)
{
    struct chopper *c = arg;
    for (size_t off = 0; off < c->len;) {
        size_t piece = 1 + next_random(&c->seed) % c->max_piece;
        if (piece > c->len - off) piece = c->len - off;
        ssize_t n = eddy_send(c->s, c->data + off, piece);
        if (n < 0) return n;
        off += piece;
        if (next_random(&c->seed) % 4 == 0)
            (void)eddy_sleep(100 * 1000);
        else
            (void)eddy_yield();
    }
    return eddy_sock_shutdown(c->s, EDDY_SHUT_WR);
}

/* ---- random splits ----------------------------------------------------------- */

#define LINES 2000

/* Lines "line N: <N % 97 letters>\n", then a 4-byte length, a record of that
 * many bytes, and "END\r\n\r\n" (readexactly, readuntil). */
static char *make_message(size_t *len)
{
    size_t cap = LINES * 120 + 70000;
    char *m = malloc(cap);
    cr_assert(ne(ptr, m, NULL));
    size_t n = 0;
    for (int i = 0; i < LINES; i++) {
        n += (size_t)sprintf(m + n, "line %d: ", i);
        for (int k = 0; k < i % 97; k++)
            m[n++] = (char)('a' + (i + k) % 26);
        m[n++] = '\n';
    }
    uint32_t rec = 65000;
    memcpy(m + n, &rec, 4);
    n += 4;
    for (uint32_t k = 0; k < rec; k++)
        m[n++] = (char)(k * 7);
    memcpy(m + n, "END\r\n\r\n", 7);
    n += 7;
    *len = n;
    return m;
}

static intptr_t splits_main(void *arg)
{
    size_t max_piece = (size_t)(intptr_t)arg;
    size_t len;
    char *msg = make_message(&len);
    struct pair p = {0};
    pair_open(&p, NULL);
    struct chopper c = {.s = p.peer, .data = msg, .len = len, .max_piece = max_piece, .seed = 7};
    eddy_task *peer = eddy_spawn(NULL, chopper_run, &c);
    char line[256], *expect = msg;
    for (int i = 0; i < LINES; i++) {
        ssize_t n = eddy_stream_readline(p.st, line, sizeof(line));
        const char *nl = memchr(expect, '\n', len);
        size_t want = (size_t)(nl - expect) + 1;
        cr_assert(eq(long, (long)n, (long)want), "line %d: %s", i, eddy_strerror((int)n));
        cr_assert(eq(int, memcmp(line, expect, want), 0), "line %d differs", i);
        expect += want;
    }
    uint32_t rec;
    cr_assert(eq(long, (long)eddy_stream_readexactly(p.st, &rec, 4), 4L));
    cr_assert(eq(u32, rec, 65000));
    char *body = malloc(rec);
    cr_assert(eq(long, (long)eddy_stream_readexactly(p.st, body, rec), (long)rec));
    cr_assert(eq(int, memcmp(body, expect + 4, rec), 0));
    char tail[16];
    cr_assert(eq(long, (long)eddy_stream_readuntil(p.st, "\r\n\r\n", 4, tail, sizeof(tail)), 7L));
    cr_assert(eq(int, memcmp(tail, "END\r\n\r\n", 7), 0));
    cr_assert(eq(long, (long)eddy_stream_read(p.st, tail, sizeof(tail)), 0L)); /* EOF */
    cr_assert(eq(long, (long)eddy_stream_readline(p.st, tail, sizeof(tail)), 0L));
    cr_assert(eq(int, eddy_task_join(peer, NULL), 0));
    free(body);
    free(msg);
    pair_close(&p);
    return 0;
}

Test(streams, readline_readexactly_readuntil_over_random_splits, .timeout = TEST_TIMEOUT)
{
    cr_assert(eq(int, run_main(splits_main, (void *)(intptr_t)7), 0));
    cr_assert(eq(int, run_main(splits_main, (void *)(intptr_t)1500), 0));
    cr_assert(eq(int, run_main(splits_main, (void *)(intptr_t)70000), 0));
}

/* A readexactly larger than the limit goes straight into the caller's buffer. */
static intptr_t large_exact_main(void *arg)
{
    size_t len = 300000;
    char *msg = malloc(len), *got = malloc(len);
    for (size_t i = 0; i < len; i++)
        msg[i] = (char)(i * 31 + 5);
    struct pair p = {0};
    eddy_stream_options o = {.limit = 1000};
    pair_open(&p, &o);
    struct chopper c = {.s = p.peer, .data = msg, .len = len, .max_piece = 40000, .seed = 3};
    eddy_task *peer = eddy_spawn(NULL, chopper_run, &c);
    cr_assert(eq(long, (long)eddy_stream_readexactly(p.st, got, 10), 10L));
    cr_assert(eq(long, (long)eddy_stream_readexactly(p.st, got + 10, len - 10), (long)(len - 10)));
    cr_assert(eq(int, memcmp(got, msg, len), 0));
    cr_assert(eq(int, eddy_task_join(peer, NULL), 0));
    pair_close(&p);
    free(msg);
    free(got);
    return 0;
}

Test(streams, readexactly_past_the_limit, .timeout = TEST_TIMEOUT)
{
    cr_assert(eq(int, run_main(large_exact_main, NULL), 0));
}

/* ---- the limit, EOF, reset ------------------------------------------------------ */

static intptr_t overrun_main(void *arg)
{
    struct pair p = {0};
    eddy_stream_options o = {.limit = 64};
    pair_open(&p, &o);
    char big[100];
    memset(big, 'x', sizeof(big));
    cr_assert(eq(long, (long)eddy_send(p.peer, "short\n", 6), 6L));
    cr_assert(eq(long, (long)eddy_send(p.peer, big, sizeof(big)), 100L));
    char line[256];
    /* cap too small for a line that is there: -EOVERFLOW, then it still reads */
    cr_assert(eq(long, (long)eddy_stream_readline(p.st, line, 3), (long)-EOVERFLOW));
    cr_assert(eq(long, (long)eddy_stream_readline(p.st, line, sizeof(line)), 6L));
    /* 100 bytes, no newline, limit 64: -EOVERFLOW and the bytes stay */
    cr_assert(eq(long, (long)eddy_stream_readline(p.st, line, sizeof(line)), (long)-EOVERFLOW));
    const void *data;
    size_t len;
    cr_assert(eq(int, eddy_stream_peek(p.st, &data, &len), 0));
    cr_assert(eq(sz, len, 64));
    cr_assert(eq(int, memcmp(data, big, 64), 0));
    cr_assert(eq(int, eddy_stream_peek(p.st, &data, &len), -EOVERFLOW));
    size_t total = 0;
    while (total < sizeof(big)) {
        ssize_t n = eddy_stream_read(p.st, line, sizeof(line));
        cr_assert(gt(long, (long)n, 0L));
        cr_assert(eq(int, memcmp(line, big, (size_t)n), 0));
        total += (size_t)n;
    }
    cr_assert(eq(sz, total, sizeof(big)));
    /* readuntil: the same rule */
    cr_assert(eq(long, (long)eddy_send(p.peer, "abcdef--", 8), 8L));
    cr_assert(eq(long, (long)eddy_stream_readuntil(p.st, "--", 2, line, 4), (long)-EOVERFLOW));
    cr_assert(eq(long, (long)eddy_stream_readuntil(p.st, "--", 2, line, 8), 8L));
    cr_assert(eq(int, memcmp(line, "abcdef--", 8), 0));
    pair_close(&p);
    return 0;
}

Test(streams, limit_overrun_keeps_the_bytes, .timeout = TEST_TIMEOUT)
{
    cr_assert(eq(int, run_main(overrun_main, NULL), 0));
}

static intptr_t eof_main(void *arg)
{
    struct pair p = {0};
    pair_open(&p, NULL);
    cr_assert(eq(long, (long)eddy_send(p.peer, "one\ntwo", 7), 7L));
    cr_assert(eq(int, eddy_sock_shutdown(p.peer, EDDY_SHUT_WR), 0));
    char buf[32];
    cr_assert(eq(long, (long)eddy_stream_readline(p.st, buf, sizeof(buf)), 4L));
    /* readuntil at EOF before the separator: -EPIPE, bytes kept */
    cr_assert(eq(long, (long)eddy_stream_readuntil(p.st, "\n", 1, buf, sizeof(buf)), (long)-EPIPE));
    /* readexactly at EOF first: -EPIPE, bytes kept */
    cr_assert(eq(long, (long)eddy_stream_readexactly(p.st, buf, 10), (long)-EPIPE));
    /* peek shows them; at EOF with nothing new it says -EPIPE */
    const void *data;
    size_t len;
    cr_assert(eq(int, eddy_stream_peek(p.st, &data, &len), 0));
    cr_assert(eq(sz, len, 3));
    cr_assert(eq(int, eddy_stream_peek(p.st, &data, &len), -EPIPE));
    /* readline: the partial line */
    cr_assert(eq(long, (long)eddy_stream_readline(p.st, buf, sizeof(buf)), 3L));
    cr_assert(eq(int, memcmp(buf, "two", 3), 0));
    cr_assert(eq(long, (long)eddy_stream_readline(p.st, buf, sizeof(buf)), 0L));
    cr_assert(eq(long, (long)eddy_stream_readexactly(p.st, buf, 1), (long)-EPIPE));
    cr_assert(eq(int, eddy_stream_peek(p.st, &data, &len), 0));
    cr_assert(eq(sz, len, 0));
    pair_close(&p);
    return 0;
}

Test(streams, eof_mid_line, .timeout = TEST_TIMEOUT)
{
    cr_assert(eq(int, run_main(eof_main, NULL), 0));
}

struct reader {
    eddy_stream *st;
    ssize_t result;
};

static intptr_t reader_run(void *arg)
{
    struct reader *r = arg;
    char buf[16];
    r->result = eddy_stream_readline(r->st, buf, sizeof(buf));
    return 0;
}

/* A read waiting when the peer resets gets -ECONNRESET, and so do the next. */
static intptr_t reset_main(void *arg)
{
    struct pair p = {0};
    pair_open(&p, NULL);
    struct linger lin = {.l_onoff = 1, .l_linger = 0}; /* close sends RST */
    cr_assert(eq(int,
                 setsockopt((SOCKET_TYPE)eddy_sock_fd(p.peer), SOL_SOCKET, SO_LINGER,
                            (const void *)&lin, sizeof(lin)),
                 0));
    cr_assert(eq(long, (long)eddy_send(p.peer, "partial", 7), 7L));
    char buf[32];
    cr_assert(eq(long, (long)eddy_stream_readexactly(p.st, buf, 3), 3L)); /* "tial" buffered */
    /* the reset reaches a readline already waiting for the rest of the line */
    struct reader r = {.st = p.st, .result = 1};
    eddy_task *t = eddy_spawn(NULL, reader_run, &r);
    cr_assert(eq(int, eddy_sleep(10 * NS_PER_MS), 0));
    cr_assert(eq(int, eddy_sock_close(p.peer), 0));
    p.peer = NULL;
    cr_assert(eq(int, eddy_task_join(t, NULL), 0));
    cr_assert(eq(long, (long)r.result, (long)-ECONNRESET), "%s", eddy_strerror((int)r.result));
    /* what was buffered before the reset is still there */
    cr_assert(eq(long, (long)eddy_stream_read(p.st, buf, sizeof(buf)), 4L));
    cr_assert(eq(int, memcmp(buf, "tial", 4), 0));
    cr_assert(eq(long, (long)eddy_stream_read(p.st, buf, sizeof(buf)), (long)-ECONNRESET));
    cr_expect(eq(int, eddy_stream_close(p.st), 0));
    return 0;
}

Test(streams, peer_reset, .timeout = TEST_TIMEOUT)
{
    cr_assert(eq(int, run_main(reset_main, NULL), 0));
}

/* ---- writing --------------------------------------------------------------------- */

static intptr_t half_close_main(void *arg)
{
    struct pair p = {0};
    pair_open(&p, NULL);
    cr_assert(eq(int, eddy_stream_write(p.st, "question", 8), 0));
    cr_assert(eq(int, eddy_stream_write_eof(p.st), 0));
    cr_assert(eq(int, eddy_stream_write(p.st, "more", 4), -EPIPE));
    char buf[32];
    recv_all(p.peer, buf, 8);
    cr_assert(eq(long, (long)eddy_recv(p.peer, buf, sizeof(buf)), 0L)); /* the peer sees EOF */
    /* the other direction still works */
    cr_assert(eq(long, (long)eddy_send(p.peer, "answer\n", 7), 7L));
    cr_assert(eq(long, (long)eddy_stream_readline(p.st, buf, sizeof(buf)), 7L));
    pair_close(&p);
    return 0;
}

Test(streams, write_eof_half_closes, .timeout = TEST_TIMEOUT)
{
    cr_assert(eq(int, run_main(half_close_main, NULL), 0));
}

/* Writes batch: many small writes in one iteration arrive together. */
static intptr_t writev_main(void *arg)
{
    struct pair p = {0};
    pair_open(&p, NULL);
    struct iovec iov[3] = {{"ab", 2}, {NULL, 0}, {"cdef", 4}};
    cr_assert(eq(int, eddy_stream_writev(p.st, iov, 3), 0));
    for (int i = 0; i < 100; i++)
        cr_assert(eq(int, eddy_stream_write(p.st, "0123456789", 10), 0));
    cr_assert(eq(sz, eddy_stream_write_buffer_size(p.st), 1006));
    cr_assert(eq(int, eddy_stream_drain(p.st), 0)); /* below the high mark: sends, no wait */
    char buf[1006];
    recv_all(p.peer, buf, sizeof(buf));
    cr_assert(eq(int, memcmp(buf, "abcdef0123456789", 16), 0));
    cr_assert(eq(sz, eddy_stream_write_buffer_size(p.st), 0));
    /* without drain, the loop sends the buffer on its next iteration */
    cr_assert(eq(int, eddy_stream_write(p.st, "xyz", 3), 0));
    recv_all(p.peer, buf, 3);
    cr_assert(eq(int, memcmp(buf, "xyz", 3), 0));
    /* bad input */
    cr_assert(eq(int, eddy_stream_writev(p.st, NULL, 1), -EINVAL));
    cr_assert(eq(int, eddy_stream_writev(p.st, iov, -1), -EINVAL));
    cr_assert(eq(int, eddy_stream_write(p.st, NULL, 1), -EINVAL));
    cr_assert(eq(int, eddy_stream_write(NULL, "a", 1), -EINVAL));
    pair_close(&p);
    return 0;
}

Test(streams, writev_and_batching, .timeout = TEST_TIMEOUT)
{
    cr_assert(eq(int, run_main(writev_main, NULL), 0));
}

#define DRAINERS   4
#define DRAIN_SIZE (8 << 20)

struct drainer {
    eddy_stream *st;
    struct trace *order;
    char name;
    size_t size_after;
};

static intptr_t drainer_run(void *arg)
{
    struct drainer *d = arg;
    int err = eddy_stream_drain(d->st);
    d->size_after = eddy_stream_write_buffer_size(d->st);
    trace_add(d->order, d->name);
    return err;
}

/* Several tasks drain at once while the peer does not read: they all wait,
 * and once the peer reads, they return in arrival order with the buffer at or
 * below the low mark (python/cpython #74116: asyncio asserted instead). */
static intptr_t drain_main(void *arg)
{
    struct pair p = {0};
    eddy_stream_options o = {.high_mark = 64 * 1024, .low_mark = 16 * 1024};
    pair_open(&p, &o);
    char *chunk = calloc(1, 65536);
    for (size_t i = 0; i < DRAIN_SIZE / 65536; i++)
        cr_assert(eq(int, eddy_stream_write(p.st, chunk, 65536), 0)); /* never waits */
    struct trace order = {0};
    struct drainer d[DRAINERS];
    eddy_task *t[DRAINERS];
    for (int i = 0; i < DRAINERS; i++) {
        d[i] = (struct drainer){.st = p.st, .order = &order, .name = (char)('a' + i)};
        t[i] = eddy_spawn(NULL, drainer_run, &d[i]);
    }
    cr_assert(eq(int, eddy_sleep(50 * NS_PER_MS), 0));
    cr_assert(eq(sz, order.len, 0), "a drainer returned with %zu bytes unsent",
              eddy_stream_write_buffer_size(p.st));
    cr_assert(gt(sz, eddy_stream_write_buffer_size(p.st), o.high_mark));
    /* the peer reads everything */
    for (size_t got = 0; got < DRAIN_SIZE;) {
        ssize_t n = eddy_recv(p.peer, chunk, 65536);
        cr_assert(gt(long, (long)n, 0L));
        got += (size_t)n;
    }
    for (int i = 0; i < DRAINERS; i++) {
        intptr_t r = -1;
        cr_assert(eq(int, eddy_task_join(t[i], &r), 0));
        cr_assert(eq(long, (long)r, 0L));
        cr_assert(le(sz, d[i].size_after, o.low_mark));
    }
    cr_assert(eq(str, order.buf, "abcd"));
    free(chunk);
    pair_close(&p);
    return 0;
}

Test(streams, drain_with_marks_and_concurrent_drainers, .timeout = TEST_TIMEOUT)
{
    cr_assert(eq(int, run_main(drain_main, NULL), 0));
}

/* A drain cut short by a timeout scope; the bytes still go out afterwards. */
static intptr_t drain_timeout_main(void *arg)
{
    struct pair p = {0};
    eddy_stream_options o = {.high_mark = 1024};
    pair_open(&p, &o);
    size_t size = 4 << 20;
    char *big = malloc(size);
    for (size_t i = 0; i < size; i++)
        big[i] = (char)i;
    cr_assert(eq(int, eddy_stream_write(p.st, big, size), 0));
    eddy_timeout scope;
    cr_assert(eq(int, eddy_timeout_begin(&scope, 20 * NS_PER_MS), 0));
    cr_assert(eq(int, eddy_stream_drain(p.st), -ECANCELED));
    cr_assert(eq(int, eddy_timeout_end(&scope), -ETIMEDOUT));
    char *got = malloc(size);
    recv_all(p.peer, got, size);
    cr_assert(eq(int, memcmp(got, big, size), 0));
    cr_assert(eq(int, eddy_stream_drain(p.st), 0));
    free(big);
    free(got);
    pair_close(&p);
    return 0;
}

Test(streams, drain_honours_timeout_scopes, .timeout = TEST_TIMEOUT)
{
    cr_assert(eq(int, run_main(drain_timeout_main, NULL), 0));
}

/* A peer that has gone: the send error comes back from write and drain. */
static intptr_t write_error_main(void *arg)
{
    struct pair p = {0};
    pair_open(&p, NULL);
    cr_assert(eq(int, eddy_sock_close(p.peer), 0));
    p.peer = NULL;
    char chunk[4096] = {0};
    int err = 0;
    for (int i = 0; i < 1000 && err == 0; i++) {
        err = eddy_stream_write(p.st, chunk, sizeof(chunk));
        if (err == 0) err = eddy_stream_drain(p.st);
        if (err == 0) err = eddy_sleep(NS_PER_MS);
    }
    cr_assert(err == -EPIPE || err == -ECONNRESET, "%s", eddy_strerror(err));
    cr_assert(eq(int, eddy_stream_write(p.st, "x", 1), err)); /* sticky */
    cr_assert(eq(sz, eddy_stream_write_buffer_size(p.st), 0));
    cr_expect(eq(int, eddy_stream_close(p.st), err));
    return 0;
}

Test(streams, write_to_a_closed_peer, .timeout = TEST_TIMEOUT)
{
    cr_assert(eq(int, run_main(write_error_main, NULL), 0));
}

/* ---- peek, cancellation, close ------------------------------------------------------ */

static intptr_t peek_main(void *arg)
{
    struct pair p = {0};
    pair_open(&p, NULL);
    cr_assert(eq(long, (long)eddy_send(p.peer, "HEAD", 4), 4L));
    const void *data;
    size_t len;
    cr_assert(eq(int, eddy_stream_peek(p.st, &data, &len), 0));
    cr_assert(eq(sz, len, 4));
    cr_assert(eq(int, memcmp(data, "HEAD", 4), 0));
    cr_assert(eq(int, eddy_stream_consume(p.st, 2), 0));
    cr_assert(eq(int, eddy_stream_consume(p.st, 3), -EINVAL));
    /* "AD" was shown already: the next peek waits for more */
    eddy_timeout scope;
    cr_assert(eq(int, eddy_timeout_begin(&scope, 20 * NS_PER_MS), 0));
    cr_assert(eq(int, eddy_stream_peek(p.st, &data, &len), -ECANCELED));
    cr_assert(eq(int, eddy_timeout_end(&scope), -ETIMEDOUT));
    cr_assert(eq(long, (long)eddy_send(p.peer, "ER", 2), 2L));
    cr_assert(eq(int, eddy_stream_peek(p.st, &data, &len), 0));
    cr_assert(eq(sz, len, 4));
    cr_assert(eq(int, memcmp(data, "ADER", 4), 0));
    cr_assert(eq(int, eddy_stream_consume(p.st, 4), 0));
    cr_assert(eq(int, eddy_stream_peek(NULL, &data, &len), -EINVAL));
    cr_assert(eq(int, eddy_stream_peek(p.st, NULL, &len), -EINVAL));
    pair_close(&p);
    return 0;
}

Test(streams, peek_and_consume, .timeout = TEST_TIMEOUT)
{
    cr_assert(eq(int, run_main(peek_main, NULL), 0));
}

/* A readline cancelled (by a timeout scope) mid-line loses nothing. */
static intptr_t cancel_keeps_main(void *arg)
{
    struct pair p = {0};
    pair_open(&p, NULL);
    cr_assert(eq(long, (long)eddy_send(p.peer, "hal", 3), 3L));
    char buf[32];
    eddy_timeout scope;
    cr_assert(eq(int, eddy_timeout_begin(&scope, 20 * NS_PER_MS), 0));
    cr_assert(eq(long, (long)eddy_stream_readline(p.st, buf, sizeof(buf)), (long)-ECANCELED));
    cr_assert(eq(int, eddy_timeout_end(&scope), -ETIMEDOUT));
    cr_assert(eq(int, eddy_timeout_begin(&scope, 20 * NS_PER_MS), 0));
    cr_assert(eq(long, (long)eddy_stream_readexactly(p.st, buf, 5), (long)-ECANCELED));
    cr_assert(eq(int, eddy_timeout_end(&scope), -ETIMEDOUT));
    cr_assert(eq(long, (long)eddy_send(p.peer, "f\n", 2), 2L));
    cr_assert(eq(long, (long)eddy_stream_readline(p.st, buf, sizeof(buf)), 5L));
    cr_assert(eq(int, memcmp(buf, "half\n", 5), 0));
    pair_close(&p);
    return 0;
}

Test(streams, cancelled_reads_keep_the_bytes, .timeout = TEST_TIMEOUT)
{
    cr_assert(eq(int, run_main(cancel_keeps_main, NULL), 0));
}

/* Closing a stream another task reads from: the reader gets -EBADF, a second
 * reader -EBUSY while the first is in. */
static intptr_t close_with_reader_main(void *arg)
{
    struct pair p = {0};
    pair_open(&p, NULL);
    struct reader r = {.st = p.st, .result = 1};
    eddy_task *t = eddy_spawn(NULL, reader_run, &r);
    cr_assert(eq(int, eddy_sleep(5 * NS_PER_MS), 0));
    char buf[4];
    cr_assert(eq(long, (long)eddy_stream_read(p.st, buf, sizeof(buf)), (long)-EBUSY));
    cr_assert(eq(int, eddy_stream_write(p.st, "bye", 3), 0));
    cr_assert(eq(int, eddy_stream_close(p.st), 0));
    p.st = NULL;
    cr_assert(eq(int, eddy_task_join(t, NULL), 0));
    cr_assert(eq(long, (long)r.result, (long)-EBADF));
    recv_all(p.peer, buf, 3); /* close sent what was buffered */
    cr_assert(eq(int, memcmp(buf, "bye", 3), 0));
    cr_assert(eq(long, (long)eddy_recv(p.peer, buf, sizeof(buf)), 0L));
    pair_close(&p);
    return 0;
}

Test(streams, close_ends_a_waiting_reader, .timeout = TEST_TIMEOUT)
{
    cr_assert(eq(int, run_main(close_with_reader_main, NULL), 0));
}

static void close_callback(void *arg)
{
    cr_expect(eq(int, eddy_stream_close(arg), 0));
}

/* Closing from a callback (outside any task) while a reader waits and a send
 * is in flight: the reader gets -EBADF, the unsent bytes are dropped, and the
 * stream is freed once both have left (the sanitizer build checks the rest). */
static intptr_t close_outside_task_main(void *arg)
{
    struct pair p = {0};
    pair_open(&p, NULL);
    struct reader r = {.st = p.st, .result = 1};
    eddy_task *t = eddy_spawn(NULL, reader_run, &r);
    size_t size = 8 << 20;
    char *big = calloc(1, size);
    cr_assert(eq(int, eddy_stream_write(p.st, big, size), 0));
    cr_assert(eq(int, eddy_sleep(10 * NS_PER_MS), 0)); /* the peer reads nothing: it waits */
    cr_assert(gt(sz, eddy_stream_write_buffer_size(p.st), 0));
    cr_assert(eq(int, eddy_call_soon(eddy_loop_current(), close_callback, p.st), 0));
    p.st = NULL;
    cr_assert(eq(int, eddy_task_join(t, NULL), 0));
    cr_assert(eq(long, (long)r.result, (long)-EBADF));
    size_t got = 0; /* what was sent, then EOF */
    ssize_t n;
    while ((n = eddy_recv(p.peer, big, size)) > 0)
        got += (size_t)n;
    cr_assert(n == 0 || n == -ECONNRESET, "%s", eddy_strerror((int)n));
    cr_assert(lt(sz, got, size));
    free(big);
    pair_close(&p);
    return 0;
}

Test(streams, close_outside_a_task, .timeout = TEST_TIMEOUT)
{
    cr_assert(eq(int, run_main(close_outside_task_main, NULL), 0));
}

static intptr_t bad_input_main(void *arg)
{
    eddy_stream *st = (eddy_stream *)1;
    cr_assert(eq(int, eddy_stream_open(&st, NULL, NULL), -EINVAL));
    cr_assert(eq(ptr, st, NULL));
    eddy_sock *listener;
    cr_assert(eq(int, eddy_tcp_listen(&listener, "127.0.0.1", 0, 0), 0));
    eddy_stream_options o = {.high_mark = 10, .low_mark = 20};
    cr_assert(eq(int, eddy_stream_open(&st, listener, &o), -EINVAL)); /* and closed it */
    cr_assert(eq(int, eddy_tcp_listen(&listener, "127.0.0.1", 0, 0), 0));
    cr_assert(eq(int, eddy_stream_open(&st, listener, NULL), -EINVAL)); /* a listener */
    eddy_sock *udp;
    cr_assert(eq(int, eddy_udp_bind(&udp, "127.0.0.1", 0), 0));
    cr_assert(eq(int, eddy_stream_open(&st, udp, NULL), -EINVAL)); /* not a stream */
    char buf[4];
    cr_assert(eq(long, (long)eddy_stream_read(NULL, buf, 4), (long)-EINVAL));
    cr_assert(eq(long, (long)eddy_stream_readline(NULL, buf, 4), (long)-EINVAL));
    cr_assert(eq(long, (long)eddy_stream_readuntil(NULL, "x", 1, buf, 4), (long)-EINVAL));
    cr_assert(eq(long, (long)eddy_stream_readexactly(NULL, buf, 4), (long)-EINVAL));
    cr_assert(eq(int, eddy_stream_drain(NULL), -EINVAL));
    cr_assert(eq(int, eddy_stream_write_eof(NULL), -EINVAL));
    cr_assert(eq(int, eddy_stream_close(NULL), -EINVAL));
    cr_assert(eq(int, eddy_stream_consume(NULL, 0), -EINVAL));
    cr_assert(eq(sz, eddy_stream_write_buffer_size(NULL), 0));
    cr_assert(eq(int, eddy_open_connection(NULL, "127.0.0.1", 1, NULL), -EINVAL));
    cr_assert(eq(int, eddy_open_connection(&st, NULL, 1, NULL), -EINVAL));
    cr_assert(eq(int, eddy_open_connection(&st, "127.0.0.1", 0, NULL), -EINVAL));
    cr_assert(eq(int, eddy_serve(NULL, NULL, NULL, NULL), -EINVAL));
    cr_assert(eq(int, eddy_server_close(NULL), -EINVAL));
    cr_assert(eq(int, eddy_server_wait(NULL), -EINVAL));
    struct pair p = {0};
    pair_open(&p, NULL);
    cr_assert(eq(long, (long)eddy_stream_readuntil(p.st, NULL, 1, buf, 4), (long)-EINVAL));
    cr_assert(eq(long, (long)eddy_stream_readuntil(p.st, "x", 0, buf, 4), (long)-EINVAL));
    cr_assert(eq(long, (long)eddy_stream_read(p.st, NULL, 4), (long)-EINVAL));
    pair_close(&p);
    return 0;
}

Test(streams, bad_input, .timeout = TEST_TIMEOUT)
{
    cr_assert(eq(int, run_main(bad_input_main, NULL), 0));
    char buf[4];
    cr_assert(eq(long, (long)eddy_stream_read((eddy_stream *)1, buf, 4), (long)-EPERM));
    cr_assert(eq(int, eddy_stream_drain((eddy_stream *)1), -EPERM));
    cr_assert(eq(int, eddy_open_connection(NULL, "x", 1, NULL), -EPERM));
}

/* ---- servers ---------------------------------------------------------------------- */

#define CLIENTS 100

struct echo_server {
    int handled;
    int live, max_live;
};

/* Echoes lines upper-cased until EOF. */
static intptr_t upper_handler(eddy_stream *st, void *arg)
{
    struct echo_server *es = arg;
    if (++es->live > es->max_live) es->max_live = es->live;
    char line[256];
    ssize_t n;
    while ((n = eddy_stream_readline(st, line, sizeof(line))) > 0) {
        for (ssize_t i = 0; i < n; i++)
            if (line[i] >= 'a' && line[i] <= 'z') line[i] = (char)(line[i] - 'a' + 'A');
        if (eddy_stream_write(st, line, (size_t)n) < 0 || eddy_stream_drain(st) < 0) break;
    }
    es->live--;
    es->handled++;
    return n < 0 ? n : 0;
}

struct client {
    uint16_t port;
    int id;
};

static intptr_t client_run(void *arg)
{
    struct client *c = arg;
    eddy_stream *st;
    int err = eddy_open_connection(&st, "127.0.0.1", c->port, NULL);
    if (err < 0) return err;
    for (int i = 0; i < 10; i++) {
        char out[64], in[64];
        int len = snprintf(out, sizeof(out), "client %d says %d\n", c->id, i);
        if ((err = eddy_stream_write(st, out, (size_t)len)) < 0) break;
        ssize_t n = eddy_stream_readline(st, in, sizeof(in));
        if (n != len) {
            err = n < 0 ? (int)n : -EPROTO;
            break;
        }
        for (int k = 0; k < len; k++)
            if (out[k] >= 'a' && out[k] <= 'z') out[k] = (char)(out[k] - 'a' + 'A');
        if (memcmp(in, out, (size_t)len) != 0) {
            err = -EPROTO;
            break;
        }
    }
    int cerr = eddy_stream_close(st);
    return err < 0 ? err : cerr;
}

static intptr_t serve_main(void *arg)
{
    eddy_sock *listener;
    cr_assert(eq(int, eddy_tcp_listen(&listener, "127.0.0.1", 0, 0), 0));
    uint16_t port = (uint16_t)eddy_sock_port(listener);
    struct echo_server es = {0};
    eddy_server *srv;
    cr_assert(eq(int, eddy_serve(&srv, listener, upper_handler, &es), 0));
    struct client c[CLIENTS];
    eddy_task *t[CLIENTS];
    for (int i = 0; i < CLIENTS; i++) {
        c[i] = (struct client){.port = port, .id = i};
        t[i] = eddy_spawn(NULL, client_run, &c[i]);
    }
    for (int i = 0; i < CLIENTS; i++) {
        intptr_t r = -1;
        cr_assert(eq(int, eddy_task_join(t[i], &r), 0));
        cr_assert(eq(long, (long)r, 0L), "client %d: %s", i, eddy_strerror((int)r));
    }
    cr_assert(eq(int, eddy_server_close(srv), 0));
    cr_assert(eq(int, eddy_server_wait(srv), 0));
    cr_assert(eq(int, es.handled, CLIENTS));
    cr_assert(eq(int, es.live, 0));
    cr_assert(gt(int, es.max_live, 1)); /* they ran concurrently */
    /* the listener is closed: a new connection is refused */
    eddy_sock *s;
    cr_assert(eq(int, eddy_tcp_connect(&s, "127.0.0.1", port), -ECONNREFUSED));
    return 0;
}

Test(streams, serve_100_clients_then_close_and_wait, .timeout = TEST_TIMEOUT)
{
    cr_assert(eq(int, run_main(serve_main, NULL), 0));
}

/* A handler that never ends: a cancelled wait cancels it and frees the server. */
static intptr_t stuck_handler(eddy_stream *st, void *arg)
{
    int *cancelled = arg;
    char buf[8];
    ssize_t n = eddy_stream_readline(st, buf, sizeof(buf));
    if (n == -ECANCELED) ++*cancelled;
    return n;
}

static intptr_t serve_cancel_main(void *arg)
{
    eddy_sock *listener;
    cr_assert(eq(int, eddy_tcp_listen(&listener, "127.0.0.1", 0, 0), 0));
    uint16_t port = (uint16_t)eddy_sock_port(listener);
    int cancelled = 0;
    eddy_server *srv;
    cr_assert(eq(int, eddy_serve(&srv, listener, stuck_handler, &cancelled), 0));
    eddy_stream *st[3];
    for (int i = 0; i < 3; i++)
        cr_assert(eq(int, eddy_open_connection(&st[i], "127.0.0.1", port, NULL), 0));
    cr_assert(eq(int, eddy_sleep(10 * NS_PER_MS), 0));
    eddy_timeout scope;
    cr_assert(eq(int, eddy_timeout_begin(&scope, 10 * NS_PER_MS), 0));
    cr_assert(eq(int, eddy_server_wait(srv), -ECANCELED));
    cr_assert(eq(int, eddy_timeout_end(&scope), -ETIMEDOUT));
    cr_assert(eq(int, cancelled, 3));
    char buf[4];
    for (int i = 0; i < 3; i++) { /* the server closed each connection */
        cr_assert(eq(long, (long)eddy_stream_read(st[i], buf, sizeof(buf)), 0L));
        cr_assert(eq(int, eddy_stream_close(st[i]), 0));
    }
    return 0;
}

Test(streams, cancelled_server_wait_cancels_the_handlers, .timeout = TEST_TIMEOUT)
{
    cr_assert(eq(int, run_main(serve_cancel_main, NULL), 0));
}

#ifndef _WIN32
/* Streams over a Unix socket, served by eddy_serve. */
static intptr_t unix_main(void *arg)
{
    char path[64];
    snprintf(path, sizeof(path), "/tmp/eddy-streams-%d.sock", (int)getpid());
    unlink(path);
    eddy_sock *listener, *s;
    cr_assert(eq(int, eddy_unix_listen(&listener, path, 0), 0));
    struct echo_server es = {0};
    eddy_server *srv;
    cr_assert(eq(int, eddy_serve(&srv, listener, upper_handler, &es), 0));
    cr_assert(eq(int, eddy_unix_connect(&s, path), 0));
    eddy_stream *st;
    cr_assert(eq(int, eddy_stream_open(&st, s, NULL), 0));
    cr_assert(eq(int, eddy_stream_write(st, "over unix\n", 10), 0));
    char buf[16];
    cr_assert(eq(long, (long)eddy_stream_readline(st, buf, sizeof(buf)), 10L));
    cr_assert(eq(int, memcmp(buf, "OVER UNIX\n", 10), 0));
    cr_assert(eq(int, eddy_stream_close(st), 0));
    cr_assert(eq(int, eddy_server_close(srv), 0));
    cr_assert(eq(int, eddy_server_wait(srv), 0));
    cr_assert(eq(int, es.handled, 1));
    unlink(path);
    return 0;
}

Test(streams, over_a_unix_socket, .timeout = TEST_TIMEOUT)
{
    cr_assert(eq(int, run_main(unix_main, NULL), 0));
}
#endif

/* ---- connecting by name ----------------------------------------------------------- */

/* "localhost" may resolve to ::1 as well as 127.0.0.1; with a listener on
 * 127.0.0.1 only, the ::1 attempt is refused and the other connects. */
static intptr_t localhost_main(void *arg)
{
    eddy_sock *listener, *server;
    cr_assert(eq(int, eddy_tcp_listen(&listener, "127.0.0.1", 0, 0), 0));
    uint16_t port = (uint16_t)eddy_sock_port(listener);
    eddy_stream *st;
    int64_t start = wall_ns();
    int err = eddy_open_connection(&st, "localhost", port, NULL);
    cr_assert(eq(int, err, 0), "%s", eddy_strerror(err));
    cr_assert(lt(i64, wall_ns() - start, 200 * NS_PER_MS)); /* no 250 ms wait: refused at once */
    cr_assert(eq(int, eddy_accept(listener, &server), 0));
    cr_assert(eq(int, eddy_stream_write(st, "hi", 2), 0));
    char buf[2];
    recv_all(server, buf, 2);
    cr_assert(eq(int, eddy_stream_close(st), 0));
    cr_assert(eq(int, eddy_sock_close(server), 0));
    cr_assert(eq(int, eddy_sock_close(listener), 0));
    cr_assert(eq(int, eddy_open_connection(&st, "no-such-host.invalid", port, NULL), -ENXIO));
    return 0;
}

Test(streams, open_connection_to_localhost, .timeout = TEST_TIMEOUT)
{
    cr_assert(eq(int, run_main(localhost_main, NULL), 0));
}

#ifndef EDDY_TEST_TAP
/* Happy Eyeballs itself, on addresses the test controls (linked statically
 * for this internal function: no name resolves to a slow address here). */
#include <netinet/in.h>
int eddy__connect_race(eddy_sock **out, const struct sockaddr *const *addrs, const socklen_t *lens,
                       size_t n, int64_t delay_ns);

static struct sockaddr_in loopback(uint16_t port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return a;
}

/* A listener whose backlog is full: a connect to it hangs (the SYN is
 * dropped). Returns the port, or 0 where connects do not hang so. */
static uint16_t hanging_listener(eddy_sock **listener, eddy_sock **fillers, int max)
{
    cr_assert(eq(int, eddy_tcp_listen(listener, "127.0.0.1", 0, 1), 0));
    uint16_t port = (uint16_t)eddy_sock_port(*listener);
    for (int i = 0; i < max; i++) {
        eddy_timeout scope;
        cr_assert(eq(int, eddy_timeout_begin(&scope, 100 * NS_PER_MS), 0));
        int err = eddy_tcp_connect(&fillers[i], "127.0.0.1", port);
        int ended = eddy_timeout_end(&scope);
        if (ended == -ETIMEDOUT) return port;
        cr_assert(eq(int, err, 0));
    }
    return 0;
}

static intptr_t race_main(void *arg)
{
    eddy_sock *hang, *fillers[16] = {0}, *good, *server, *s;
    uint16_t hang_port = hanging_listener(&hang, fillers, 16);
    if (hang_port == 0) return 1; /* skip */
    cr_assert(eq(int, eddy_tcp_listen(&good, "127.0.0.1", 0, 0), 0));
    struct sockaddr_in a = loopback(hang_port), b = loopback((uint16_t)eddy_sock_port(good));
    const struct sockaddr *addrs[2] = {(struct sockaddr *)&a, (struct sockaddr *)&b};
    socklen_t lens[2] = {sizeof(a), sizeof(b)};
    /* the first hangs: the second starts after the delay and wins */
    int64_t start = wall_ns();
    cr_assert(eq(int, eddy__connect_race(&s, addrs, lens, 2, 250 * NS_PER_MS), 0));
    int64_t took = wall_ns() - start;
    cr_assert(ge(i64, took, 240 * NS_PER_MS));
    cr_assert(lt(i64, took, 900 * NS_PER_MS));
    cr_assert(eq(int, eddy_accept(good, &server), 0));
    cr_assert(eq(long, (long)eddy_send(s, "x", 1), 1L));
    char c;
    cr_assert(eq(long, (long)eddy_recv(server, &c, 1), 1L));
    eddy_sock_close(s);
    eddy_sock_close(server);
    /* a refused first address starts the next at once */
    struct sockaddr_in refused = loopback(hang_port);
    eddy_sock *gone;
    cr_assert(eq(int, eddy_tcp_listen(&gone, "127.0.0.1", 0, 0), 0));
    refused.sin_port = htons((uint16_t)eddy_sock_port(gone));
    eddy_sock_close(gone);
    addrs[0] = (struct sockaddr *)&refused;
    start = wall_ns();
    cr_assert(eq(int, eddy__connect_race(&s, addrs, lens, 2, 250 * NS_PER_MS), 0));
    cr_assert(lt(i64, wall_ns() - start, 200 * NS_PER_MS));
    cr_assert(eq(int, eddy_accept(good, &server), 0));
    eddy_sock_close(s);
    eddy_sock_close(server);
    /* all refused: the error */
    addrs[1] = (struct sockaddr *)&refused;
    cr_assert(eq(int, eddy__connect_race(&s, addrs, lens, 2, 250 * NS_PER_MS), -ECONNREFUSED));
    /* both hang: a timeout scope ends the race and every attempt */
    addrs[0] = addrs[1] = (struct sockaddr *)&a;
    eddy_timeout scope;
    cr_assert(eq(int, eddy_timeout_begin(&scope, 300 * NS_PER_MS), 0));
    cr_assert(eq(int, eddy__connect_race(&s, addrs, lens, 2, 100 * NS_PER_MS), -ECANCELED));
    cr_assert(eq(int, eddy_timeout_end(&scope), -ETIMEDOUT));
    for (int i = 0; i < 16; i++)
        if (fillers[i]) eddy_sock_close(fillers[i]);
    eddy_sock_close(hang);
    eddy_sock_close(good);
    return 0;
}

Test(streams, happy_eyeballs_race, .timeout = TEST_TIMEOUT)
{
    int r = run_main(race_main, NULL);
    if (r == 1) cr_skip_test("connects to a full backlog do not hang here");
    cr_assert(eq(int, r, 0));
}
#endif

/* ---- a peer eddy did not write: Python's asyncio streams ------------------------------ */

#ifndef _WIN32
static const char python_server[] =
    "import asyncio, os\n"
    "async def handle(r, w):\n"
    "    while line := await r.readline():\n"
    "        w.write(line.upper())\n"
    "        await w.drain()\n"
    "    w.close()\n"
    "async def main():\n"
    "    srv = await asyncio.start_server(handle, '127.0.0.1', 0)\n"
    "    print(srv.sockets[0].getsockname()[1], os.getpid(), flush=True)\n"
    "    await asyncio.sleep(30)\n"
    "asyncio.run(main())\n";

static intptr_t python_main(void *arg)
{
    uint16_t port = (uint16_t)(intptr_t)arg;
    eddy_stream *st;
    cr_assert(eq(int, eddy_open_connection(&st, "127.0.0.1", port, NULL), 0));
    char line[128], want[128];
    for (int i = 0; i < 1000; i++) {
        int len = snprintf(line, sizeof(line), "line %d from eddy\n", i);
        cr_assert(eq(int, eddy_stream_write(st, line, (size_t)len), 0));
    }
    cr_assert(eq(int, eddy_stream_drain(st), 0));
    for (int i = 0; i < 1000; i++) {
        int len = snprintf(want, sizeof(want), "LINE %d FROM EDDY\n", i);
        ssize_t n = eddy_stream_readline(st, line, sizeof(line));
        cr_assert(eq(long, (long)n, (long)len));
        cr_assert(eq(int, memcmp(line, want, (size_t)len), 0));
    }
    cr_assert(eq(int, eddy_stream_write_eof(st), 0));
    cr_assert(eq(long, (long)eddy_stream_readline(st, line, sizeof(line)), 0L)); /* it closed */
    cr_assert(eq(int, eddy_stream_close(st), 0));
    return 0;
}

static const char python_client[] =
    "import asyncio, sys\n"
    "async def one(i):\n"
    "    r, w = await asyncio.open_connection('127.0.0.1', int(sys.argv[1]))\n"
    "    for k in range(100):\n"
    "        w.write(b'client %d line %d\\n' % (i, k))\n"
    "    await w.drain()\n"
    "    for k in range(100):\n"
    "        assert await r.readline() == b'CLIENT %d LINE %d\\n' % (i, k)\n"
    "    w.write_eof()\n"
    "    assert await r.read() == b''\n"
    "    w.close()\n"
    "async def main():\n"
    "    await asyncio.gather(*(one(i) for i in range(20)))\n"
    "    print('ok', flush=True)\n"
    "asyncio.run(main())\n";

/* eddy's server, Python's asyncio clients: 20 connections, 100 lines each. */
static intptr_t python_clients_main(void *arg)
{
    const char *path = arg;
    eddy_sock *listener;
    cr_assert(eq(int, eddy_tcp_listen(&listener, "127.0.0.1", 0, 0), 0));
    char cmd[160];
    snprintf(cmd, sizeof(cmd), "exec python3 %s %d", path, eddy_sock_port(listener));
    FILE *py = popen(cmd, "r");
    cr_assert(ne(ptr, py, NULL));
    struct echo_server es = {0};
    eddy_server *srv;
    cr_assert(eq(int, eddy_serve(&srv, listener, upper_handler, &es), 0));
    for (int i = 0; i < 3000 && es.handled < 20; i++)
        cr_assert(eq(int, eddy_sleep(10 * NS_PER_MS), 0));
    cr_assert(eq(int, es.handled, 20));
    cr_assert(eq(int, eddy_server_close(srv), 0));
    cr_assert(eq(int, eddy_server_wait(srv), 0));
    char out[16] = {0};
    cr_assert(ne(ptr, fgets(out, sizeof(out), py), NULL));
    cr_assert(eq(str, out, "ok\n"));
    cr_assert(eq(int, pclose(py), 0));
    return 0;
}

Test(streams, serves_python_asyncio_clients, .timeout = TEST_TIMEOUT)
{
    if (system("python3 -c 'import asyncio' 2>/dev/null") != 0) cr_skip_test("no python3 here");
    char path[64];
    snprintf(path, sizeof(path), "/tmp/eddy-streams-client-%d.py", (int)getpid());
    FILE *f = fopen(path, "w");
    cr_assert(ne(ptr, f, NULL));
    fputs(python_client, f);
    fclose(f);
    cr_assert(eq(int, run_main(python_clients_main, path), 0));
    unlink(path);
}

Test(streams, talks_to_python_asyncio_streams, .timeout = TEST_TIMEOUT)
{
    if (system("python3 -c 'import asyncio' 2>/dev/null") != 0) cr_skip_test("no python3 here");
    char path[64];
    snprintf(path, sizeof(path), "/tmp/eddy-streams-%d.py", (int)getpid());
    FILE *f = fopen(path, "w");
    cr_assert(ne(ptr, f, NULL));
    fputs(python_server, f);
    fclose(f);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "exec python3 %s", path);
    FILE *py = popen(cmd, "r");
    cr_assert(ne(ptr, py, NULL));
    int port = 0, pid = 0;
    cr_assert(eq(int, fscanf(py, "%d %d", &port, &pid), 2));
    cr_assert(eq(int, run_main(python_main, (void *)(intptr_t)port), 0));
    kill((pid_t)pid, SIGTERM);
    pclose(py);
    unlink(path);
}
#endif

/* eddy_stream_options grows by its size (docs/decisions.md), as the loop's do. */
static intptr_t options_by_size_task(void *arg)
{
    (void)arg;
    eddy_sock *listener = NULL, *a = NULL, *b = NULL;
    cr_assert(eq(int, eddy_tcp_listen(&listener, "127.0.0.1", 0, 0), 0));
    uint16_t port = (uint16_t)eddy_sock_port(listener);
    eddy_stream *st = NULL;
    eddy_stream_options odd = {.size = 3};
    cr_assert(eq(int, eddy_open_connection(&st, "127.0.0.1", port, &odd), -EINVAL));
    struct {
        eddy_stream_options known;
        uint64_t later;
    } bigger = {.known = {.size = sizeof bigger}, .later = 1};
    cr_assert(eq(int, eddy_open_connection(&st, "127.0.0.1", port, &bigger.known), -EINVAL),
              "a later field this library does not know, set");
    cr_assert(eq(int, eddy_tcp_connect(&a, "127.0.0.1", port), 0));
    cr_assert(eq(int, eddy_accept(listener, &b), 0));
    eddy_stream_options tiny = EDDY_STREAM_OPTIONS_INIT(.limit = 4);
    cr_assert(eq(int, eddy_stream_open(&st, a, &tiny), 0));
    cr_assert(eq(sz, (size_t)eddy_send(b, "abcdefgh\n", 9), 9));
    char line[32];
    cr_assert(eq(sz, (size_t)eddy_stream_readline(st, line, sizeof line), (size_t)-EOVERFLOW),
              "the limit was read from the sized struct");
    cr_assert(eq(int, eddy_stream_close(st), 0));
    eddy_sock_close(b);
    eddy_sock_close(listener);
    return 0;
}

Test(streams, options_by_size, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_loop();
    intptr_t v;
    cr_assert(eq(int, run_task(loop, options_by_size_task, NULL, &v), 0));
    eddy_loop_free(loop);
}

/* A reader's first call meets EOF on a stream that never buffered a byte
 * (found by fuzz/stream_readers: arithmetic on the NULL buffer, which
 * UBSan stops in the sanitizer build). */
static intptr_t eof_before_any_byte_task(void *arg)
{
    (void)arg;
    eddy_sock *listener = NULL, *a = NULL, *b = NULL;
    cr_assert(eq(int, eddy_tcp_listen(&listener, "127.0.0.1", 0, 0), 0));
    cr_assert(eq(int, eddy_tcp_connect(&a, "127.0.0.1", (uint16_t)eddy_sock_port(listener)), 0));
    cr_assert(eq(int, eddy_accept(listener, &b), 0));
    cr_assert(eq(int, eddy_sock_shutdown(b, EDDY_SHUT_WR), 0));
    eddy_stream *st;
    eddy_stream_options small = EDDY_STREAM_OPTIONS_INIT(.limit = 16);
    cr_assert(eq(int, eddy_stream_open(&st, a, &small), 0));
    char line[64];
    /* more than the limit: read straight into line, nothing to put back */
    cr_assert(eq(sz, (size_t)eddy_stream_readexactly(st, line, sizeof line), (size_t)-EPIPE));
    cr_assert(
        eq(sz, (size_t)eddy_stream_readuntil(st, "\r\n", 2, line, sizeof line), (size_t)-EPIPE));
    cr_assert(eq(sz, (size_t)eddy_stream_readline(st, line, sizeof line), 0));
    cr_assert(eq(int, eddy_stream_close(st), 0));
    eddy_sock_close(b);
    eddy_sock_close(listener);
    return 0;
}

Test(streams, eof_before_any_byte, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_loop();
    intptr_t v;
    cr_assert(eq(int, run_task(loop, eof_before_any_byte_task, NULL, &v), 0));
    eddy_loop_free(loop);
}

/* ---- io_uring: bytes lent from the loop's buffer ring ------------------------------ */

/* A small ring (16 buffers of 4 KiB), so that lines, separators and records
 * straddle its buffers and a reader can hold a good part of it. */
#define SMALL_RING      "16x4096"
#define SMALL_RING_SIZE (4096 + 16 * 4096) /* its mapping: one page of ring, then the buffers */

/* The ways io_uring's reads may go, each forced by EDDY_CAPS_DISABLE: all
 * on; without incremental consumption; without bundles; without either;
 * without the buffer ring at all (plain RECVs, copied into the stream). */
static const char *const ring_modes[] = {
    "",
    "buffer_ring_incremental",
    "recv_bundle",
    "recv_bundle,buffer_ring_incremental",
    "buffer_ring",
};
#define RING_MODES (sizeof ring_modes / sizeof ring_modes[0])

static bool default_backend_is_uring(void)
{
    eddy_loop *loop = new_loop();
    bool uring = strcmp(eddy_loop_backend(loop), "io_uring") == 0;
    eddy_loop_free(loop);
    return uring;
}

/* run_main with the small ring in each mode on io_uring (once elsewhere:
 * the modes change nothing there); mode_out tells fn which one runs. */
static const char *current_mode;

static void run_ring_modes(eddy_task_fn fn, void *arg)
{
    bool uring = default_backend_is_uring();
    setenv("EDDY_URING_BUF_RING", SMALL_RING, 1);
    for (size_t m = 0; m < (uring ? RING_MODES : 1); m++) {
        current_mode = ring_modes[m];
        setenv("EDDY_CAPS_DISABLE", current_mode, 1);
        int err = run_main(fn, arg);
        cr_assert(eq(int, err, 0), "mode \"%s\": %s", current_mode, eddy_strerror(err));
    }
    unsetenv("EDDY_CAPS_DISABLE");
    unsetenv("EDDY_URING_BUF_RING");
}

/* Whether p lies in an anonymous mapping of at least len bytes that is not
 * the heap: the loop's buffer ring has one of its own (which the kernel may
 * merge with a neighbouring anonymous mapping, so not exactly len bytes),
 * the stream's buffer is on the heap. */
static bool in_mapping_of(const void *p, size_t len)
{
#ifdef __linux__
    FILE *f = fopen("/proc/self/maps", "r");
    if (!f) return false;
    char line[512];
    bool found = false;
    while (!found && fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        int name = 0;
        if (sscanf(line, "%lx-%lx %*s %*s %*s %*s %n", &lo, &hi, &name) != 2) continue;
        bool anonymous = name == 0 || line[name] == '\0' || line[name] == '\n';
        found = (uintptr_t)p >= lo && (uintptr_t)p < hi && anonymous && hi - lo >= len &&
                hi - lo < len + ((size_t)64 << 20);
    }
    fclose(f);
    return found;
#else
    (void)p;
    (void)len;
    return false;
#endif
}

/* Under AddressSanitizer malloc'd memory is in anonymous mappings too: only
 * the ring's side of the check tells anything there. */
#if defined(__SANITIZE_ADDRESS__)
#define HEAP_IS_ANONYMOUS true
#else
#define HEAP_IS_ANONYMOUS false
#endif

/* peek shows bytes where the kernel put them: in the ring, not copied
 * into the stream's buffer, when the ring is there; consume gives them
 * back, and the next bytes come lent again. */
static intptr_t zero_copy_peek_main(void *arg)
{
    struct pair p = {0};
    pair_open(&p, NULL);
    eddy_loop *loop = eddy_loop_current();
    bool ring = strcmp(eddy_loop_backend(loop), "io_uring") == 0 &&
                eddy_loop_supports(loop, EDDY_CAP_BUFFER_RING) == EDDY_NATIVE;
    char line[64];
    for (int round = 0; round < 50; round++) {
        char msg[32];
        int n = snprintf(msg, sizeof msg, "round %d\n", round);
        cr_assert(eq(long, (long)eddy_send(p.peer, msg, (size_t)n), (long)n));
        const void *data;
        size_t len;
        cr_assert(eq(int, eddy_stream_peek(p.st, &data, &len), 0));
        cr_assert(eq(sz, len, (size_t)n));
        cr_assert(eq(int, memcmp(data, msg, len), 0));
        /* the first read of a socket is a plain one; the multishot follows */
        if (round > 0 && (ring || !HEAP_IS_ANONYMOUS))
            cr_assert(eq(int, in_mapping_of(data, SMALL_RING_SIZE), ring),
                      "round %d, mode \"%s\": the bytes are %s the ring", round, current_mode,
                      ring ? "not in" : "in");
        cr_assert(eq(long, (long)eddy_stream_readline(p.st, line, sizeof line), (long)n));
        cr_assert(eq(int, memcmp(line, msg, len), 0));
    }
    pair_close(&p);
    return 0;
}

Test(streams, zero_copy_peek_points_into_the_buffer_ring, .timeout = TEST_TIMEOUT)
{
    run_ring_modes(zero_copy_peek_main, NULL);
}

/* Lines of 1 to 9000 bytes and a 7-byte separator, sent in pieces of up to
 * max_piece bytes: both straddle the ring's 4 KiB buffers; readline,
 * readuntil and readexactly (records longer than several buffers) give
 * every byte in order. */
static intptr_t straddle_main(void *arg)
{
    size_t max_piece = (size_t)(intptr_t)arg;
    size_t cap = 2 * 1024 * 1024, len = 0;
    char *msg = malloc(cap);
    cr_assert(ne(ptr, msg, NULL));
    uint32_t seed = 11;
    for (int i = 0; len < cap - 40000; i++) {
        size_t n = 1 + next_random(&seed) % 9000;
        for (size_t k = 0; k + 1 < n; k++)
            msg[len++] = (char)('a' + (i + k) % 26);
        msg[len++] = '\n';
        if (i % 3 == 0) { /* a record of 5000..45000 bytes, then a separator */
            uint32_t rec = 5000 + next_random(&seed) % 40000;
            if (len + rec + 11 > cap) break;
            memcpy(msg + len, &rec, 4);
            len += 4;
            for (uint32_t k = 0; k < rec; k++)
                msg[len++] = (char)(k * 13 + (uint32_t)i);
            memcpy(msg + len, "<<SEP>>", 7);
            len += 7;
        }
    }
    struct pair p = {0};
    pair_open(&p, NULL);
    struct chopper c = {.s = p.peer, .data = msg, .len = len, .max_piece = max_piece, .seed = 5};
    eddy_task *peer = eddy_spawn(NULL, chopper_run, &c);
    char *buf = malloc(65536);
    const char *expect = msg;
    for (int i = 0; expect < msg + len; i++) {
        const char *nl = memchr(expect, '\n', (size_t)(msg + len - expect));
        size_t want = (size_t)(nl - expect) + 1;
        ssize_t n = eddy_stream_readline(p.st, buf, 65536);
        cr_assert(eq(long, (long)n, (long)want), "line %d: %s", i, eddy_strerror((int)n));
        cr_assert(eq(int, memcmp(buf, expect, want), 0), "line %d differs", i);
        expect += want;
        if (i % 3 == 0 && expect < msg + len) {
            uint32_t rec;
            cr_assert(eq(long, (long)eddy_stream_readexactly(p.st, &rec, 4), 4L));
            cr_assert(eq(int, memcmp(&rec, expect, 4), 0));
            expect += 4;
            cr_assert(eq(long, (long)eddy_stream_readexactly(p.st, buf, rec), (long)rec));
            cr_assert(eq(int, memcmp(buf, expect, rec), 0), "record %d differs", i);
            expect += rec;
            n = eddy_stream_readuntil(p.st, "<<SEP>>", 7, buf, 65536);
            cr_assert(eq(long, (long)n, 7L), "separator %d: %s", i, eddy_strerror((int)n));
            expect += 7;
        }
    }
    cr_assert(eq(long, (long)eddy_stream_read(p.st, buf, 16), 0L)); /* EOF */
    cr_assert(eq(int, eddy_task_join(peer, NULL), 0));
    free(buf);
    free(msg);
    pair_close(&p);
    return 0;
}

Test(streams, lines_and_records_straddling_ring_buffers, .timeout = TEST_TIMEOUT)
{
    run_ring_modes(straddle_main, (void *)(intptr_t)3000);
    run_ring_modes(straddle_main, (void *)(intptr_t)70000);
}

/* The read limit's rules hold however the bytes came (lent or copied). */
Test(streams, limit_overrun_over_the_ring, .timeout = TEST_TIMEOUT)
{
    run_ring_modes(overrun_main, NULL);
}

/* A reader that peeks and holds what it was lent, while its peer sends
 * far more than the small ring holds, leaves the ring to the others: a
 * second connection's echo goes on meanwhile, and then the slow reader
 * gets every byte. */
#define SLOW_BYTES (60 * 1000)
#define FAST_BYTES (1024 * 1024)

static intptr_t fast_echo_run(void *arg)
{
    struct pair *p = arg;
    char *buf = malloc(1000);
    for (size_t done = 0; done < FAST_BYTES; done += 1000) {
        for (size_t k = 0; k < 1000; k++)
            buf[k] = (char)(done / 1000 + k);
        ssize_t n = eddy_send(p->peer, buf, 1000);
        if (n != 1000) return n < 0 ? n : -EIO;
        char got[1000];
        n = eddy_stream_readexactly(p->st, got, sizeof got);
        if (n != 1000) return n < 0 ? n : -EIO;
        if (memcmp(got, buf, 1000) != 0) return -EBADMSG;
    }
    free(buf);
    return 0;
}

static intptr_t slow_reader_main(void *arg)
{
    struct pair slow = {0}, fast = {0};
    pair_open(&slow, NULL);
    pair_open(&fast, NULL);
    char *msg = malloc(SLOW_BYTES);
    for (size_t i = 0; i < SLOW_BYTES; i++)
        msg[i] = (char)(i * 3 + i / 1000);
    /* warm the slow one up: its reads go through the multishot from now on */
    cr_assert(eq(long, (long)eddy_send(slow.peer, "x", 1), 1L));
    char one;
    cr_assert(eq(long, (long)eddy_stream_readexactly(slow.st, &one, 1), 1L));
    struct chopper c = {.s = slow.peer, .data = msg, .len = SLOW_BYTES, .max_piece = 3000};
    c.seed = 9;
    eddy_task *sender = eddy_spawn(NULL, chopper_run, &c);
    /* hold: peek until everything is buffered, consuming nothing */
    const void *data;
    size_t len = 0;
    while (len < SLOW_BYTES) {
        int err = eddy_stream_peek(slow.st, &data, &len);
        cr_assert(eq(int, err, 0), "peek: %s (%zu buffered)", eddy_strerror(err), len);
    }
    cr_assert(eq(int, memcmp(data, msg, SLOW_BYTES), 0));
    eddy_task *echo = eddy_spawn(NULL, fast_echo_run, &fast);
    intptr_t r = -1;
    cr_assert(eq(int, eddy_task_join(echo, &r), 0));
    cr_assert(eq(long, (long)r, 0L), "the other connection: %s", eddy_strerror((int)r));
    /* still held: the slow reader's bytes are all there */
    cr_assert(eq(int, eddy_stream_consume(slow.st, SLOW_BYTES), 0));
    cr_assert(eq(long, (long)eddy_stream_read(slow.st, &one, 1), 0L));
    cr_assert(eq(int, eddy_task_join(sender, NULL), 0));
    free(msg);
    pair_close(&slow);
    pair_close(&fast);
    return 0;
}

/* The same with the reader holding lent pieces unconsumed while the other
 * connection runs: a readexactly waiting for more than is there. */
static intptr_t held_reader_run(void *arg)
{
    struct pair *p = arg;
    char *buf = malloc(SLOW_BYTES);
    ssize_t n = eddy_stream_readexactly(p->st, buf, SLOW_BYTES);
    free(buf);
    return n;
}

static intptr_t holding_reader_main(void *arg)
{
    struct pair slow = {0}, fast = {0};
    pair_open(&slow, NULL);
    pair_open(&fast, NULL);
    char *msg = calloc(1, SLOW_BYTES);
    char one;
    cr_assert(eq(long, (long)eddy_send(slow.peer, "x", 1), 1L));
    cr_assert(eq(long, (long)eddy_stream_readexactly(slow.st, &one, 1), 1L));
    eddy_task *reader = eddy_spawn(NULL, held_reader_run, &slow);
    /* all but the last byte: the reader holds what it has and waits */
    for (size_t off = 0; off < SLOW_BYTES - 1; off += 2000) {
        size_t n = SLOW_BYTES - 1 - off < 2000 ? SLOW_BYTES - 1 - off : 2000;
        cr_assert(eq(long, (long)eddy_send(slow.peer, msg + off, n), (long)n));
        cr_assert(eq(int, eddy_sleep(NS_PER_MS / 10), 0));
    }
    eddy_task *echo = eddy_spawn(NULL, fast_echo_run, &fast);
    intptr_t r = -1;
    cr_assert(eq(int, eddy_task_join(echo, &r), 0));
    cr_assert(eq(long, (long)r, 0L), "the other connection: %s", eddy_strerror((int)r));
    cr_assert(eq(long, (long)eddy_send(slow.peer, msg, 1), 1L));
    cr_assert(eq(int, eddy_task_join(reader, &r), 0));
    cr_assert(eq(long, (long)r, (long)SLOW_BYTES));
    free(msg);
    pair_close(&slow);
    pair_close(&fast);
    return 0;
}

Test(streams, slow_reader_holding_lent_buffers_does_not_starve_others, .timeout = TEST_TIMEOUT)
{
    run_ring_modes(slow_reader_main, NULL);
    run_ring_modes(holding_reader_main, NULL);
}

/* EOF and a reset that come while lent pieces are buffered: every byte the
 * peer sent before them is read first. */
static intptr_t end_mid_buffer_main(void *arg)
{
    bool reset = arg != NULL;
    struct pair p = {0};
    pair_open(&p, NULL);
    char line[64];
    cr_assert(eq(long, (long)eddy_send(p.peer, "warm\n", 5), 5L));
    cr_assert(eq(long, (long)eddy_stream_readline(p.st, line, sizeof line), 5L));
    cr_assert(eq(long, (long)eddy_send(p.peer, "one\ntwo\nthr", 11), 11L));
    cr_assert(eq(long, (long)eddy_stream_readline(p.st, line, sizeof line), 4L)); /* "one\n" */
    cr_assert(eq(long, (long)eddy_send(p.peer, "ee\nfour", 7), 7L));
    cr_assert(eq(int, eddy_sleep(5 * NS_PER_MS), 0)); /* in the stream's socket, or its ring */
    if (reset) {
        struct linger lin = {.l_onoff = 1, .l_linger = 0};
        cr_assert(eq(int,
                     setsockopt((SOCKET_TYPE)eddy_sock_fd(p.peer), SOL_SOCKET, SO_LINGER,
                                (const void *)&lin, sizeof(lin)),
                     0));
        /* the bytes are in this host's receive queue or in the ring: read
         * some before the reset, so that they are at least buffered */
        cr_assert(eq(long, (long)eddy_stream_readline(p.st, line, sizeof line), 4L)); /* two */
        cr_assert(eq(int, memcmp(line, "two\n", 4), 0));
    }
    cr_assert(eq(int, eddy_sock_close(p.peer), 0));
    p.peer = NULL;
    if (!reset) {
        cr_assert(eq(long, (long)eddy_stream_readline(p.st, line, sizeof line), 4L));
        cr_assert(eq(int, memcmp(line, "two\n", 4), 0));
    }
    cr_assert(eq(long, (long)eddy_stream_readline(p.st, line, sizeof line), 6L));
    cr_assert(eq(int, memcmp(line, "three\n", 6), 0));
    ssize_t n = eddy_stream_readline(p.st, line, sizeof line);
    if (!reset) {
        cr_assert(eq(long, (long)n, 4L)); /* partial at EOF */
        cr_assert(eq(int, memcmp(line, "four", 4), 0));
        cr_assert(eq(long, (long)eddy_stream_readline(p.st, line, sizeof line), 0L));
    } else {
        /* "four" and then the reset, or the reset at once where the kernel
         * dropped what the peer sent after the bytes read */
        cr_assert(n == 4 || n == -ECONNRESET, "%s", eddy_strerror((int)n));
        if (n == 4) cr_assert(eq(int, memcmp(line, "four", 4), 0));
    }
    pair_close(&p);
    return 0;
}

Test(streams, eof_and_reset_mid_lent_buffer_lose_nothing, .timeout = TEST_TIMEOUT)
{
    run_ring_modes(end_mid_buffer_main, NULL);
    run_ring_modes(end_mid_buffer_main, (void *)1);
}

/* Twenty connections at once through the small ring: their bytes share its
 * buffers (with incremental consumption several sockets fill one buffer in
 * turn; with bundles one completion spans several), and each reader still
 * gets exactly its own bytes, in order. */
#define SHARED_CONNS 20
#define SHARED_BYTES (100 * 1000)

struct shared_conn {
    struct pair p;
    char *msg;
    struct chopper c;
    eddy_task *sender, *reader;
};

static intptr_t shared_reader_run(void *arg)
{
    struct shared_conn *sc = arg;
    char line[2048];
    size_t off = 0;
    while (off < SHARED_BYTES) {
        ssize_t n = eddy_stream_readline(sc->p.st, line, sizeof line);
        if (n <= 0) return n < 0 ? n : -EPIPE;
        if (memcmp(line, sc->msg + off, (size_t)n) != 0) return -EBADMSG;
        off += (size_t)n;
    }
    return eddy_stream_read(sc->p.st, line, 1) == 0 ? 0 : -EIO;
}

static intptr_t shared_ring_main(void *arg)
{
    (void)arg;
    struct shared_conn *sc = calloc(SHARED_CONNS, sizeof *sc);
    cr_assert(ne(ptr, sc, NULL));
    uint32_t seed = 99;
    for (int i = 0; i < SHARED_CONNS; i++) {
        pair_open(&sc[i].p, NULL);
        sc[i].msg = malloc(SHARED_BYTES);
        for (size_t k = 0, line_end = 0; k < SHARED_BYTES; k++) { /* lines of 1..1500 bytes */
            if (k == line_end) line_end = k + 1 + next_random(&seed) % 1500;
            sc[i].msg[k] = k + 1 == line_end ? '\n' : (char)('A' + (k + (size_t)i) % 26);
        }
        sc[i].msg[SHARED_BYTES - 1] = '\n';
        sc[i].c = (struct chopper){.s = sc[i].p.peer,
                                   .data = sc[i].msg,
                                   .len = SHARED_BYTES,
                                   .max_piece = 64 + (size_t)i * 500,
                                   .seed = (uint32_t)i + 1};
    }
    for (int i = 0; i < SHARED_CONNS; i++) {
        sc[i].reader = eddy_spawn(NULL, shared_reader_run, &sc[i]);
        sc[i].sender = eddy_spawn(NULL, chopper_run, &sc[i].c);
    }
    for (int i = 0; i < SHARED_CONNS; i++) {
        intptr_t r = -1;
        cr_assert(eq(int, eddy_task_join(sc[i].reader, &r), 0));
        cr_assert(eq(long, (long)r, 0L), "connection %d, mode \"%s\": %s", i, current_mode,
                  eddy_strerror((int)r));
        cr_assert(eq(int, eddy_task_join(sc[i].sender, NULL), 0));
        pair_close(&sc[i].p);
        free(sc[i].msg);
    }
    free(sc);
    return 0;
}

Test(streams, many_connections_share_the_ring_intact, .timeout = TEST_TIMEOUT)
{
    run_ring_modes(shared_ring_main, NULL);
}
