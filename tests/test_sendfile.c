/* SPDX-License-Identifier: MIT */
/* eddy_stream_sendfile on each backend: a 10 MiB file whole and in ranges,
 * counts past the end, order with buffered writes (the caller's and another
 * task's), a slow reader (the socket full), cancellation and a timeout scope
 * mid-transfer, a close from another task, a peer that left, bad input, and
 * a peer eddy did not write (Python) reading it. */
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>
#ifndef _WIN32
#include <sys/socket.h>
#define sock_setopt(s, name, v) setsockopt((int)eddy_sock_fd(s), SOL_SOCKET, name, &(v), sizeof(v))
#endif

#include "helpers.h"

#ifdef _WIN32
#define sock_setopt(s, name, v)                                                                    \
    setsockopt((SOCKET)eddy_sock_fd(s), SOL_SOCKET, name, (const char *)&(v), sizeof(v))
#endif
#ifndef O_BINARY
#define O_BINARY 0
#endif

#define FILE_SIZE (10 * 1024 * 1024)

static char *content; /* what the test file holds */
static char file_path[300];

/* The test file: FILE_SIZE bytes in which every offset tells itself apart. */
static void make_file(void)
{
    if (content) return;
    content = malloc(FILE_SIZE);
    cr_assert(ne(ptr, content, NULL));
    uint32_t x = 2463534242u;
    for (size_t i = 0; i < FILE_SIZE; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        content[i] = (char)x;
    }
    char name[48];
    snprintf(name, sizeof name, "eddy-sendfile-%d", (int)getpid());
    temp_path(file_path, sizeof file_path, name);
    FILE *f = fopen(file_path, "wb");
    cr_assert(ne(ptr, f, NULL));
    cr_assert(eq(sz, fwrite(content, 1, FILE_SIZE, f), (size_t)FILE_SIZE));
    cr_assert(eq(int, fclose(f), 0));
}

static void drop_file(void)
{
    if (file_path[0]) unlink(file_path);
}

static int run_with_file(eddy_task_fn fn, void *arg)
{
    make_file();
    return run_main(fn, arg);
}

static bool sendfile_here(void)
{
    eddy_loop *loop = new_loop();
    bool yes = eddy_loop_supports(loop, EDDY_CAP_SENDFILE) != EDDY_NONE;
    eddy_loop_free(loop);
    return yes;
}

#define NEED_SENDFILE()                                                                            \
    do {                                                                                           \
        if (!sendfile_here()) cr_skip_test("no sendfile on this backend");                         \
    } while (0)

/* A stream over loopback and the plain socket at its other end. */
struct pair {
    eddy_stream *st;
    eddy_sock *peer;
    eddy_file *f;
    intptr_t near_fd; /* the stream's socket */
};

static bool small_socket_buffers; /* pair_open's: a few MiB then wait for the reader */

static void pair_open(struct pair *p)
{
    eddy_sock *listener, *near_end;
    cr_assert(eq(int, eddy_tcp_listen(&listener, "127.0.0.1", 0, 0), 0));
    cr_assert(
        eq(int, eddy_tcp_connect(&near_end, "127.0.0.1", (uint16_t)eddy_sock_port(listener)), 0));
    cr_assert(eq(int, eddy_accept(listener, &p->peer), 0));
    cr_assert(eq(int, eddy_sock_close(listener), 0));
    if (small_socket_buffers) {
        int size = 32 * 1024;
        cr_assert(eq(int, sock_setopt(near_end, SO_SNDBUF, size), 0));
        cr_assert(eq(int, sock_setopt(p->peer, SO_RCVBUF, size), 0));
    }
    p->near_fd = eddy_sock_fd(near_end);
    cr_assert(eq(int, eddy_stream_open(&p->st, near_end, NULL), 0));
    cr_assert(eq(int, eddy_file_open(&p->f, file_path, O_RDONLY | O_BINARY, 0), 0));
}

static void pair_close(struct pair *p)
{
    if (p->st) cr_expect(eq(int, eddy_stream_close(p->st), 0));
    if (p->peer) cr_expect(eq(int, eddy_sock_close(p->peer), 0));
    cr_expect(eq(int, eddy_file_close(p->f), 0));
}

/* The peer's side: receives until EOF into a buffer, pausing pause_ns
 * between receives of at most piece bytes (a slow reader). */
struct reader {
    eddy_sock *s;
    char *buf;
    size_t cap, len;
    size_t piece;
    int64_t pause_ns;
};

static intptr_t reader_run(void *arg)
{
    struct reader *r = arg;
    for (;;) {
        size_t want = r->cap - r->len < r->piece ? r->cap - r->len : r->piece;
        if (want == 0) return -ENOBUFS;
        ssize_t n = eddy_recv(r->s, r->buf + r->len, want);
        if (n <= 0) return n;
        r->len += (size_t)n;
        if (r->pause_ns) (void)eddy_sleep(r->pause_ns);
    }
}

static eddy_task *reader_start(struct reader *r, eddy_sock *s, size_t cap)
{
    *r = (struct reader){.s = s, .cap = cap, .piece = 256 * 1024};
    r->buf = malloc(cap);
    cr_assert(ne(ptr, r->buf, NULL));
    eddy_task *t = eddy_spawn(NULL, reader_run, r);
    cr_assert(ne(ptr, t, NULL));
    return t;
}

/* Ends the stream's writing and collects what the reader got. */
static void reader_finish(struct pair *p, eddy_task *t)
{
    cr_assert(eq(int, eddy_stream_write_eof(p->st), 0));
    intptr_t r = -1;
    cr_assert(eq(int, eddy_task_join(t, &r), 0));
    cr_assert(eq(long, (long)r, 0L), "reader: %s", eddy_strerror((int)r));
}

/* ---- whole, ranges, past the end ----------------------------------------------------- */

static intptr_t whole_and_ranges(void *arg)
{
    struct pair p;
    pair_open(&p);
    struct reader r;
    eddy_task *t = reader_start(&r, p.peer, 2 * FILE_SIZE);
    cr_assert(eq(long, (long)eddy_stream_sendfile(p.st, p.f, 0, FILE_SIZE), (long)FILE_SIZE));
    cr_assert(eq(long, (long)eddy_stream_sendfile(p.st, p.f, 12345, 1 << 20), 1L << 20));
    cr_assert(eq(long, (long)eddy_stream_sendfile(p.st, p.f, 4097, 1), 1L));
    /* past the end: the bytes up to it, then none */
    cr_assert(eq(long, (long)eddy_stream_sendfile(p.st, p.f, FILE_SIZE - 100, 1000), 100L));
    cr_assert(eq(long, (long)eddy_stream_sendfile(p.st, p.f, FILE_SIZE, 1000), 0L));
    cr_assert(eq(long, (long)eddy_stream_sendfile(p.st, p.f, FILE_SIZE + 5000, 10), 0L));
    /* count 0 sends nothing; SIZE_MAX goes to the end */
    cr_assert(eq(long, (long)eddy_stream_sendfile(p.st, p.f, 0, 0), 0L));
    cr_assert(eq(long, (long)eddy_stream_sendfile(p.st, p.f, FILE_SIZE - 7, SIZE_MAX), 7L));
    reader_finish(&p, t);
    size_t want = (size_t)FILE_SIZE + (1 << 20) + 1 + 100 + 7;
    cr_assert(eq(sz, r.len, want));
    const char *got = r.buf;
    cr_assert(eq(int, memcmp(got, content, FILE_SIZE), 0));
    got += FILE_SIZE;
    cr_assert(eq(int, memcmp(got, content + 12345, 1 << 20), 0));
    got += 1 << 20;
    cr_assert(eq(int, memcmp(got, content + 4097, 1), 0));
    got += 1;
    cr_assert(eq(int, memcmp(got, content + FILE_SIZE - 100, 100), 0));
    got += 100;
    cr_assert(eq(int, memcmp(got, content + FILE_SIZE - 7, 7), 0));
    free(r.buf);
    pair_close(&p);
    return 0;
}

Test(sendfile, ten_mib_whole_in_ranges_and_past_the_end, .timeout = TEST_TIMEOUT)
{
    NEED_SENDFILE();
    cr_assert(eq(int, run_with_file(whole_and_ranges, NULL), 0));
    drop_file();
}

/* The read and send loop instead of the zero-copy movers: on Windows without
 * TransmitFile (as a provider that lacks it), elsewhere without fd watching
 * (the movers cannot wait for room then). */
static void copy_loop_only(void)
{
#ifdef _WIN32
    setenv("EDDY_IOCP_TRANSMITFILE", "0", 1);
#endif
    setenv("EDDY_CAPS_DISABLE", "watch_fd", 1);
}

Test(sendfile, read_send_loop_without_fd_watching, .timeout = TEST_TIMEOUT)
{
    NEED_SENDFILE();
    copy_loop_only();
    cr_assert(eq(int, run_with_file(whole_and_ranges, NULL), 0));
    drop_file();
}

/* ---- order with buffered writes -------------------------------------------------------- */

struct meddler {
    eddy_stream *st;
    bool wrote, during, sendfile_returned;
};

/* Another task writing while sendfile runs: its bytes come after the file's. */
static intptr_t meddler_run(void *arg)
{
    struct meddler *m = arg;
    (void)eddy_sleep(2 * NS_PER_MS);
    m->wrote = eddy_stream_write(m->st, "[other]", 7) == 0;
    m->during = !m->sendfile_returned;
    return 0;
}

static intptr_t ordered(void *arg)
{
    struct pair p;
    small_socket_buffers = true;
    pair_open(&p);
    struct reader r;
    eddy_task *t = reader_start(&r, p.peer, 4 << 20);
    r.piece = 64 * 1024;
    r.pause_ns = NS_PER_MS; /* slow enough that the writes really wait */
    /* many small writes, left buffered, then the file, then more writes */
    for (int i = 0; i < 1000; i++)
        cr_assert(eq(int, eddy_stream_write(p.st, "0123456789", 10), 0));
    struct meddler m = {.st = p.st};
    eddy_task *mt = eddy_spawn(NULL, meddler_run, &m);
    cr_assert(eq(long, (long)eddy_stream_sendfile(p.st, p.f, 777, 2 << 20), 2L << 20));
    m.sendfile_returned = true;
    cr_assert(eq(int, eddy_stream_write(p.st, "[after]", 7), 0));
    cr_assert(eq(long, (long)eddy_stream_sendfile(p.st, p.f, 0, 1000), 1000L));
    cr_assert(eq(int, eddy_stream_write(p.st, "[end]", 5), 0));
    cr_assert(eq(int, eddy_task_join(mt, NULL), 0));
    cr_assert(m.wrote);
    cr_assert(m.during, "the other task wrote while sendfile ran");
    reader_finish(&p, t);
    cr_assert(eq(sz, r.len, (size_t)10000 + (2 << 20) + 7 + 7 + 1000 + 5));
    const char *got = r.buf;
    for (int i = 0; i < 1000; i++, got += 10)
        cr_assert(eq(int, memcmp(got, "0123456789", 10), 0), "write %d", i);
    cr_assert(eq(int, memcmp(got, content + 777, 2 << 20), 0), "the file after the writes");
    got += 2 << 20;
    cr_assert(eq(int, memcmp(got, "[other]", 7), 0), "another task's write waited");
    got += 7;
    cr_assert(eq(int, memcmp(got, "[after]", 7), 0));
    got += 7;
    cr_assert(eq(int, memcmp(got, content, 1000), 0));
    got += 1000;
    cr_assert(eq(int, memcmp(got, "[end]", 5), 0));
    free(r.buf);
    pair_close(&p);
    return 0;
}

Test(sendfile, keeps_order_with_buffered_writes, .timeout = TEST_TIMEOUT)
{
    NEED_SENDFILE();
    cr_assert(eq(int, run_with_file(ordered, NULL), 0));
    drop_file();
}

Test(sendfile, read_send_loop_keeps_order, .timeout = TEST_TIMEOUT)
{
    NEED_SENDFILE();
    copy_loop_only();
    cr_assert(eq(int, run_with_file(ordered, NULL), 0));
    drop_file();
}

/* One byte written and sent at once (a readiness backend sends in the
 * flush): the stream took the count 1 for "pending" and sent it again with
 * the next flush, or waited for it for ever before sendfile. */
static intptr_t one_byte(void *arg)
{
    struct pair p;
    pair_open(&p);
    cr_assert(eq(int, eddy_stream_write(p.st, "<", 1), 0));
    cr_assert(eq(int, eddy_yield(), 0)); /* the loop flushes: the byte goes at once */
    cr_assert(eq(int, eddy_stream_write(p.st, "a", 1), 0));
    cr_assert(eq(int, eddy_stream_drain(p.st), 0));
    eddy_timeout scope;
    cr_assert(eq(int, eddy_timeout_begin(&scope, 5 * NS_PER_SEC), 0));
    cr_assert(eq(long, (long)eddy_stream_sendfile(p.st, p.f, 0, 3), 3L));
    cr_assert(eq(int, eddy_timeout_end(&scope), 0));
    cr_assert(eq(int, eddy_stream_write(p.st, ">", 1), 0));
    cr_assert(eq(int, eddy_stream_write_eof(p.st), 0));
    char buf[16] = {0};
    size_t got = 0;
    ssize_t n;
    while ((n = eddy_recv(p.peer, buf + got, sizeof buf - got)) > 0)
        got += (size_t)n;
    cr_assert(eq(sz, got, 6));
    cr_assert(eq(int, memcmp(buf, "<a", 2), 0));
    cr_assert(eq(int, memcmp(buf + 2, content, 3), 0));
    cr_assert(eq(int, buf[5], '>'));
    pair_close(&p);
    return 0;
}

Test(sendfile, one_byte_sent_at_once_goes_once, .timeout = TEST_TIMEOUT)
{
    NEED_SENDFILE();
    cr_assert(eq(int, run_with_file(one_byte, NULL), 0));
    drop_file();
}

/* ---- a slow reader: the socket is full most of the time -------------------------------- */

static intptr_t slow_reader(void *arg)
{
    struct pair p;
    small_socket_buffers = true;
    pair_open(&p);
    struct reader r;
    eddy_task *t = reader_start(&r, p.peer, FILE_SIZE);
    r.piece = 64 * 1024;
    r.pause_ns = NS_PER_MS / 2;
    int64_t start = loop_now();
    cr_assert(eq(long, (long)eddy_stream_sendfile(p.st, p.f, 0, 4 << 20), 4L << 20));
    /* the socket could not take 4 MiB at once: the call waited for the reader */
    cr_assert(gt(i64, loop_now() - start, 5 * NS_PER_MS));
    reader_finish(&p, t);
    cr_assert(eq(sz, r.len, (size_t)4 << 20));
    cr_assert(eq(int, memcmp(r.buf, content, 4 << 20), 0));
    free(r.buf);
    pair_close(&p);
    return 0;
}

Test(sendfile, slow_reader_socket_full, .timeout = TEST_TIMEOUT)
{
    NEED_SENDFILE();
    cr_assert(eq(int, run_with_file(slow_reader, NULL), 0));
    drop_file();
}

/* ---- cancellation, timeout scopes, close, a peer that left ------------------------------ */

struct sender {
    eddy_stream *st;
    eddy_file *f;
    ssize_t result;
};

static intptr_t sender_run(void *arg)
{
    struct sender *s = arg;
    s->result = eddy_stream_sendfile(s->st, s->f, 0, FILE_SIZE);
    return 0;
}

/* Nobody reads: the socket fills and sendfile waits, until cancelled. */
static intptr_t cancelled(void *arg)
{
    struct pair p;
    pair_open(&p);
    struct sender s = {.st = p.st, .f = p.f};
    eddy_task *t = eddy_spawn(NULL, sender_run, &s);
    cr_assert(eq(int, eddy_sleep(50 * NS_PER_MS), 0));
    cr_assert(not(eddy_future_done(eddy_task_future(t))), "sendfile did not wait");
    cr_assert(eddy_task_cancel(t));
    cr_assert(eq(int, eddy_task_join(t, NULL), 0));
    cr_assert(eq(long, (long)s.result, (long)-ECANCELED));
    /* the stream is usable: writes go out (after whatever part of the file went) */
    cr_assert(eq(int, eddy_stream_write(p.st, "x", 1), 0));
    cr_assert(eq(int, eddy_sock_close(p.peer), 0));
    p.peer = NULL;
    (void)eddy_stream_close(p.st); /* the peer left: an error or 0 */
    p.st = NULL;
    pair_close(&p);
    return 0;
}

Test(sendfile, cancelled_mid_transfer, .timeout = TEST_TIMEOUT)
{
    NEED_SENDFILE();
    cr_assert(eq(int, run_with_file(cancelled, NULL), 0));
    drop_file();
}

static intptr_t timed_out(void *arg)
{
    struct pair p;
    pair_open(&p);
    eddy_timeout scope;
    cr_assert(eq(int, eddy_timeout_begin(&scope, 50 * NS_PER_MS), 0));
    int64_t start = loop_now();
    ssize_t n = eddy_stream_sendfile(p.st, p.f, 0, FILE_SIZE);
    cr_assert(eq(int, eddy_timeout_end(&scope), -ETIMEDOUT));
    cr_assert(eq(long, (long)n, (long)-ECANCELED));
    cr_assert(lt(i64, loop_now() - start, 5 * NS_PER_SEC));
    cr_assert(eq(int, eddy_sock_close(p.peer), 0));
    p.peer = NULL;
    (void)eddy_stream_close(p.st);
    p.st = NULL;
    pair_close(&p);
    return 0;
}

Test(sendfile, timeout_scope_mid_transfer, .timeout = TEST_TIMEOUT)
{
    NEED_SENDFILE();
    cr_assert(eq(int, run_with_file(timed_out, NULL), 0));
    drop_file();
}

/* A close from another task ends the transfer with -EBADF, then frees. */
static intptr_t closed_meanwhile(void *arg)
{
    struct pair p;
    pair_open(&p);
    struct sender s = {.st = p.st, .f = p.f};
    eddy_task *t = eddy_spawn(NULL, sender_run, &s);
    cr_assert(eq(int, eddy_sleep(30 * NS_PER_MS), 0));
    eddy_timeout scope; /* close waits for the buffer: nothing is buffered, so no wait */
    cr_assert(eq(int, eddy_timeout_begin(&scope, 5 * NS_PER_SEC), 0));
    (void)eddy_stream_close(p.st);
    cr_assert(eq(int, eddy_timeout_end(&scope), 0));
    p.st = NULL;
    cr_assert(eq(int, eddy_task_join(t, NULL), 0));
    cr_assert(eq(long, (long)s.result, (long)-EBADF));
    pair_close(&p);
    return 0;
}

Test(sendfile, close_from_another_task, .timeout = TEST_TIMEOUT)
{
    NEED_SENDFILE();
    cr_assert(eq(int, run_with_file(closed_meanwhile, NULL), 0));
    drop_file();
}

/* The peer reads a little and leaves: an error, no SIGPIPE, and it sticks. */
static intptr_t peer_left(void *arg)
{
    struct pair p;
    pair_open(&p);
    char buf[1000];
    struct sender s = {.st = p.st, .f = p.f};
    eddy_task *t = eddy_spawn(NULL, sender_run, &s);
    cr_assert(gt(long, (long)eddy_recv(p.peer, buf, sizeof buf), 0L));
    cr_assert(eq(int, eddy_sock_close(p.peer), 0));
    p.peer = NULL;
    cr_assert(eq(int, eddy_task_join(t, NULL), 0));
    cr_assert(s.result == -EPIPE || s.result == -ECONNRESET, "%s", eddy_strerror((int)s.result));
    cr_assert(eq(int, eddy_stream_write(p.st, "x", 1), (int)s.result), "the error sticks");
    cr_assert(eq(int, eddy_stream_close(p.st), (int)s.result));
    p.st = NULL;
    pair_close(&p);
    return 0;
}

Test(sendfile, peer_that_left_gives_an_error_not_sigpipe, .timeout = TEST_TIMEOUT)
{
    NEED_SENDFILE();
    cr_assert(eq(int, run_with_file(peer_left, NULL), 0));
    drop_file();
}

/* ---- bad input --------------------------------------------------------------------------- */

static intptr_t bad_input(void *arg)
{
    struct pair p;
    pair_open(&p);
    cr_assert(eq(long, (long)eddy_stream_sendfile(NULL, p.f, 0, 1), (long)-EINVAL));
    cr_assert(eq(long, (long)eddy_stream_sendfile(p.st, NULL, 0, 1), (long)-EINVAL));
    cr_assert(eq(long, (long)eddy_stream_sendfile(p.st, p.f, -1, 1), (long)-EINVAL));
    cr_assert(eq(long, (long)eddy_stream_sendfile(p.st, p.f, INT64_MIN, 1), (long)-EINVAL));
#ifdef _WIN32
    eddy_file *dev;
    cr_assert(eq(int, eddy_file_open(&dev, "NUL", O_RDONLY | O_BINARY, 0), 0));
    cr_assert(eq(long, (long)eddy_stream_sendfile(p.st, dev, 0, 1), (long)-EINVAL), "not a file");
    cr_assert(eq(int, eddy_file_close(dev), 0));
#else
    eddy_file *dev;
    cr_assert(eq(int, eddy_file_open(&dev, "/dev/null", O_RDONLY | O_BINARY, 0), 0));
    cr_assert(eq(long, (long)eddy_stream_sendfile(p.st, dev, 0, 1), (long)-EINVAL), "not a file");
    cr_assert(eq(int, eddy_file_close(dev), 0));
#endif
    /* after write_eof: -EPIPE, as a write */
    cr_assert(eq(int, eddy_stream_write_eof(p.st), 0));
    cr_assert(eq(long, (long)eddy_stream_sendfile(p.st, p.f, 0, 1), (long)-EPIPE));
    pair_close(&p);
    return 0;
}

Test(sendfile, bad_input, .timeout = TEST_TIMEOUT)
{
    NEED_SENDFILE();
    cr_assert(eq(int, run_with_file(bad_input, NULL), 0));
    cr_assert(eq(long, (long)eddy_stream_sendfile(NULL, NULL, 0, 1), (long)-EPERM), "no task");
    drop_file();
}

#ifdef _WIN32
/* ---- TransmitFile ---------------------------------------------------------------------- */

/* The IOCP backend sends with TransmitFile where the provider has it (the
 * suite's transfers then go through it), and says so; without it, the copy
 * loop, emulated. */
Test(sendfile, transmitfile_on_iocp, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_loop();
    cr_assert(eq(int, eddy_loop_supports(loop, EDDY_CAP_SENDFILE), EDDY_NATIVE));
    eddy_loop_free(loop);
    setenv("EDDY_IOCP_TRANSMITFILE", "0", 1);
    loop = new_loop();
    cr_assert(eq(int, eddy_loop_supports(loop, EDDY_CAP_SENDFILE), EDDY_EMULATED));
    eddy_loop_free(loop);
}

/* A socket closed under the stream (behind its back): a clear error from
 * TransmitFile, not a hang or a crash. */
static intptr_t socket_closed_under(void *arg)
{
    struct pair p;
    pair_open(&p);
    cr_assert(eq(int, closesocket((SOCKET)p.near_fd), 0));
    ssize_t n = eddy_stream_sendfile(p.st, p.f, 0, 1 << 20);
    cr_assert(n == -EBADF || n == -ECANCELED, "%s", eddy_strerror((int)n));
    (void)eddy_stream_close(p.st); /* its socket is gone: an error or 0 */
    p.st = NULL;
    pair_close(&p);
    return 0;
}

Test(sendfile, socket_closed_under_the_stream, .timeout = TEST_TIMEOUT)
{
    cr_assert(eq(int, run_with_file(socket_closed_under, NULL), 0));
    drop_file();
}
#endif

#ifndef _WIN32
/* ---- a peer eddy did not write ----------------------------------------------------------- */

static const char python_reader[] =
    "import socket, sys\n"
    "s = socket.create_connection(('127.0.0.1', int(sys.argv[1])))\n"
    "with open(sys.argv[2], 'wb') as f:\n"
    "    while b := s.recv(1 << 16):\n"
    "        f.write(b)\n"
    "print('ok', flush=True)\n";

static intptr_t to_python(void *arg)
{
    const char *script = arg;
    char out[80], cmd[300];
    snprintf(out, sizeof out, "%s.out", script);
    eddy_sock *listener, *s;
    cr_assert(eq(int, eddy_tcp_listen(&listener, "127.0.0.1", 0, 0), 0));
    snprintf(cmd, sizeof cmd, "exec python3 %s %d %s", script, eddy_sock_port(listener), out);
    FILE *py = popen(cmd, "r");
    cr_assert(ne(ptr, py, NULL));
    cr_assert(eq(int, eddy_accept(listener, &s), 0));
    cr_assert(eq(int, eddy_sock_close(listener), 0));
    eddy_stream *st;
    eddy_file *f;
    cr_assert(eq(int, eddy_stream_open(&st, s, NULL), 0));
    cr_assert(eq(int, eddy_file_open(&f, file_path, O_RDONLY | O_BINARY, 0), 0));
    cr_assert(eq(int, eddy_stream_write(st, "head", 4), 0));
    cr_assert(eq(long, (long)eddy_stream_sendfile(st, f, 0, FILE_SIZE), (long)FILE_SIZE));
    cr_assert(eq(int, eddy_stream_write(st, "tail", 4), 0));
    cr_assert(eq(int, eddy_stream_close(st), 0));
    cr_assert(eq(int, eddy_file_close(f), 0));
    char line[16] = {0};
    cr_assert(ne(ptr, fgets(line, sizeof line, py), NULL));
    cr_assert(eq(str, line, "ok\n"));
    cr_assert(eq(int, pclose(py), 0));
    FILE *got = fopen(out, "rb");
    cr_assert(ne(ptr, got, NULL));
    char *buf = malloc(FILE_SIZE + 16);
    size_t n = fread(buf, 1, FILE_SIZE + 16, got);
    fclose(got);
    unlink(out);
    cr_assert(eq(sz, n, (size_t)FILE_SIZE + 8));
    cr_assert(eq(int, memcmp(buf, "head", 4), 0));
    cr_assert(eq(int, memcmp(buf + 4, content, FILE_SIZE), 0));
    cr_assert(eq(int, memcmp(buf + 4 + FILE_SIZE, "tail", 4), 0));
    free(buf);
    return 0;
}

Test(sendfile, python_peer_reads_it, .timeout = TEST_TIMEOUT)
{
    NEED_SENDFILE();
    if (system("python3 -c 'import socket' 2>/dev/null") != 0) cr_skip_test("no python3 here");
    char script[64];
    snprintf(script, sizeof script, "/tmp/eddy-sendfile-%d.py", (int)getpid());
    FILE *f = fopen(script, "w");
    cr_assert(ne(ptr, f, NULL));
    fputs(python_reader, f);
    fclose(f);
    cr_assert(eq(int, run_with_file(to_python, script), 0));
    unlink(script);
    drop_file();
}
#endif
