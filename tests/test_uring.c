/* SPDX-License-Identifier: MIT */
/* The io_uring backend: which backend a loop picks and how to force one; the
 * fallback to epoll when io_uring_setup is refused (a seccomp filter); a tiny
 * ring whose SQ fills and whose CQ overflows without losing a completion;
 * 10 000 receives cancelled at random points while data flows, with every
 * byte accounted for and no buffer written after its call ended; accepts
 * (multishot, and single-shot under EDDY_CAPS_DISABLE=multishot_accept):
 * bursts, cancellation, closing a listener; multishot receives (order of
 * bytes in many pieces and one big one, a buffer ring that runs dry,
 * cancelled reads with data queued, the end after queued data, closing a
 * socket with its multishot armed, and the cancellation race through them);
 * zero-copy sends (content,
 * AF_UNIX's fallback, EDDY_CAPS_DISABLE, cancellation while blocked); file ops
 * done by the ring, not the thread pool; wakes from other threads; a loop
 * created on one thread and run on another.
 *
 * This suite chooses its backends itself, so tests/run-tap.sh runs it once.
 * Each test skips, saying why, when io_uring cannot run here. */
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "helpers.h"

#if EDDY_TEST_HAVE_SECCOMP
#include <seccomp.h>
#endif

/* Skips the test when a loop cannot run on io_uring here. */
static void require_uring(void)
{
    eddy_loop_options opts = {.backend = "io_uring"};
    eddy_loop *loop;
    int err = eddy_loop_new(&loop, &opts);
    if (err < 0) cr_skip_test("io_uring cannot run here: %s", eddy_strerror(err));
    eddy_loop_free(loop);
}

static eddy_loop *uring_loop(unsigned queue_depth)
{
    eddy_loop_options opts = {.backend = "io_uring", .queue_depth = queue_depth};
    eddy_loop *loop = NULL;
    int err = eddy_loop_new(&loop, &opts);
    cr_assert(eq(int, err, 0), "eddy_loop_new(io_uring): %s", eddy_strerror(err));
    cr_assert(eq(str, (char *)eddy_loop_backend(loop), "io_uring"));
    return loop;
}

/* Runs fn(arg) as a task on loop and returns its result (or join error). */
static intptr_t run_on(eddy_loop *loop, eddy_task_fn fn, void *arg)
{
    intptr_t result = -1;
    int err = run_task(loop, fn, arg, &result);
    return err < 0 ? err : result;
}

/* xorshift64*: reproducible randomness for the races. */
static uint64_t next_random(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545F4914F6CDD1DULL;
}

/* A connected TCP pair over loopback. Task-only. */
static void tcp_pair(eddy_sock **a, eddy_sock **b)
{
    eddy_sock *listener;
    cr_assert(eq(int, eddy_tcp_listen(&listener, "127.0.0.1", 0, 0), 0));
    int port = eddy_sock_port(listener);
    cr_assert(ge(int, port, 1));
    cr_assert(eq(int, eddy_tcp_connect(a, "127.0.0.1", (uint16_t)port), 0));
    cr_assert(eq(int, eddy_accept(listener, b), 0));
    cr_assert(eq(int, eddy_sock_close(listener), 0));
}

/* ---- selection --------------------------------------------------------------- */

Test(uring_selection, default_loop_picks_io_uring)
{
    require_uring();
    unsetenv("EDDY_BACKEND");
    eddy_loop *loop;
    cr_assert(eq(int, eddy_loop_new(&loop, NULL), 0));
    cr_assert(eq(str, (char *)eddy_loop_backend(loop), "io_uring"));
    eddy_loop_free(loop);

    eddy_loop_options automatic = {.backend = "auto"};
    cr_assert(eq(int, eddy_loop_new(&loop, &automatic), 0));
    cr_assert(eq(str, (char *)eddy_loop_backend(loop), "io_uring"));
    eddy_loop_free(loop);
}

Test(uring_selection, environment_forces_a_backend)
{
    require_uring();
    eddy_loop *loop;
    setenv("EDDY_BACKEND", "epoll", 1);
    cr_assert(eq(int, eddy_loop_new(&loop, NULL), 0));
    cr_assert(eq(str, (char *)eddy_loop_backend(loop), "epoll"));
    eddy_loop_free(loop);

    setenv("EDDY_BACKEND", "io_uring", 1);
    cr_assert(eq(int, eddy_loop_new(&loop, NULL), 0));
    cr_assert(eq(str, (char *)eddy_loop_backend(loop), "io_uring"));
    eddy_loop_free(loop);
}

Test(uring_selection, option_forces_a_backend_over_the_environment)
{
    require_uring();
    eddy_loop *loop;
    setenv("EDDY_BACKEND", "io_uring", 1);
    eddy_loop_options epoll = {.backend = "epoll"};
    cr_assert(eq(int, eddy_loop_new(&loop, &epoll), 0));
    cr_assert(eq(str, (char *)eddy_loop_backend(loop), "epoll"));
    eddy_loop_free(loop);

    setenv("EDDY_BACKEND", "epoll", 1);
    eddy_loop_options uring = {.backend = "io_uring"};
    cr_assert(eq(int, eddy_loop_new(&loop, &uring), 0));
    cr_assert(eq(str, (char *)eddy_loop_backend(loop), "io_uring"));
    eddy_loop_free(loop);
}

/* ---- fallback when io_uring_setup is refused ------------------------------------ */

/* Some socket traffic, to show the loop it fell back to works. */
static intptr_t echo_once(void *arg)
{
    eddy_sock *a, *b;
    tcp_pair(&a, &b);
    char buf[8] = {0};
    cr_assert(eq(sz, (size_t)eddy_send(a, "fallback", 8), 8));
    cr_assert(eq(sz, (size_t)eddy_recv(b, buf, sizeof buf), 8));
    cr_assert(eq(int, memcmp(buf, "fallback", 8), 0));
    cr_assert(eq(int, eddy_sock_close(a), 0));
    cr_assert(eq(int, eddy_sock_close(b), 0));
    return 0;
}

/* With io_uring_setup (or, deny_enter, only io_uring_enter) failing with err:
 * a default loop runs on epoll, a loop asking for io_uring by name (option or
 * environment) gets err. */
static void check_fallback(int err, bool deny_enter)
{
#if EDDY_TEST_HAVE_SECCOMP
    require_uring();
    unsetenv("EDDY_BACKEND");
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
    cr_assert(ne(ptr, ctx, NULL));
    int nr = deny_enter ? SCMP_SYS(io_uring_enter) : SCMP_SYS(io_uring_setup);
    cr_assert(eq(int, seccomp_rule_add(ctx, SCMP_ACT_ERRNO(err), nr, 0), 0));
    cr_assert(eq(int, seccomp_load(ctx), 0), "seccomp_load");
    seccomp_release(ctx);

    eddy_loop *loop;
    eddy_loop_options uring = {.backend = "io_uring"};
    int got = eddy_loop_new(&loop, &uring);
    cr_assert(eq(int, got, -err), "io_uring by name: %s, expected %s", eddy_strerror(got),
              eddy_strerror(-err));
    cr_assert(eq(ptr, loop, NULL));
    setenv("EDDY_BACKEND", "io_uring", 1);
    cr_assert(eq(int, eddy_loop_new(&loop, NULL), -err),
              "EDDY_BACKEND=io_uring does not fall back");
    unsetenv("EDDY_BACKEND");

    cr_assert(eq(int, eddy_loop_new(&loop, NULL), 0));
    cr_assert(eq(str, (char *)eddy_loop_backend(loop), "epoll"), "the default loop fell back");
    cr_assert(eq(int, (int)run_on(loop, echo_once, NULL), 0));
    eddy_loop_free(loop);
#else
    (void)err;
    (void)deny_enter;
    cr_skip_test("built without libseccomp (install libseccomp-dev and reconfigure)");
#endif
}

Test(uring_fallback, seccomp_eperm_falls_back_to_epoll)
{
    check_fallback(EPERM, false);
}

Test(uring_fallback, enosys_falls_back_to_epoll)
{
    check_fallback(ENOSYS, false);
}

Test(uring_fallback, enomem_falls_back_to_epoll)
{
    check_fallback(ENOMEM, false);
}

/* ---- a tiny ring: full SQ, CQ overflow ------------------------------------------- */

#define TINY_SOCKETS 64
#define TINY_ROUNDS  20

struct tiny_reader {
    eddy_sock *s;
    int round;
    char got[16];
    ssize_t n;
};

/* Receives one message and echoes it: in the tiny ring, 64 completions land
 * in one wait (the CQ holds 4) and 64 sends are queued in one iteration (the
 * SQ holds 1). */
static intptr_t tiny_echo(void *arg)
{
    struct tiny_reader *r = arg;
    r->n = eddy_recv(r->s, r->got, sizeof r->got);
    if (r->n <= 0) return r->n < 0 ? r->n : -EIO;
    ssize_t sent = eddy_send(r->s, r->got, (size_t)r->n);
    return sent < 0 ? sent : 0;
}

static intptr_t tiny_ring_main(void *arg)
{
    eddy_sock *near[TINY_SOCKETS], *far[TINY_SOCKETS];
    for (int i = 0; i < TINY_SOCKETS; i++)
        tcp_pair(&near[i], &far[i]);
    struct tiny_reader readers[TINY_SOCKETS];
    eddy_task *tasks[TINY_SOCKETS];
    for (int round = 0; round < TINY_ROUNDS; round++) {
        for (int i = 0; i < TINY_SOCKETS; i++) {
            readers[i] = (struct tiny_reader){.s = far[i], .round = round};
            tasks[i] = eddy_spawn(NULL, tiny_echo, &readers[i]);
            cr_assert(ne(ptr, tasks[i], NULL));
        }
        for (int i = 0; i < 3; i++)
            cr_assert(eq(int, eddy_yield(), 0)); /* every receive is in the kernel */
        /* All messages at once, by plain syscalls: their completions arrive together. */
        for (int i = 0; i < TINY_SOCKETS; i++) {
            char msg[16];
            int len = snprintf(msg, sizeof msg, "r%d-s%d", round, i);
            cr_assert(
                eq(sz, (size_t)send((int)eddy_sock_fd(near[i]), msg, (size_t)len, 0), (size_t)len));
        }
        for (int i = 0; i < TINY_SOCKETS; i++) {
            intptr_t result = -1;
            cr_assert(eq(int, eddy_task_join(tasks[i], &result), 0));
            cr_assert(eq(int, (int)result, 0), "reader %d: %s", i, eddy_strerror((int)result));
        }
        for (int i = 0; i < TINY_SOCKETS; i++) {
            char expected[16], echo[16];
            int len = snprintf(expected, sizeof expected, "r%d-s%d", round, i);
            cr_assert(eq(sz, (size_t)readers[i].n, (size_t)len));
            cr_assert(eq(int, memcmp(readers[i].got, expected, (size_t)len), 0));
            cr_assert(eq(sz, (size_t)eddy_recv(near[i], echo, sizeof echo), (size_t)len));
            cr_assert(eq(int, memcmp(echo, expected, (size_t)len), 0));
        }
    }
    for (int i = 0; i < TINY_SOCKETS; i++) {
        cr_assert(eq(int, eddy_sock_close(near[i]), 0));
        cr_assert(eq(int, eddy_sock_close(far[i]), 0));
    }
    return 0;
}

Test(uring_tiny_ring, full_sq_and_cq_overflow_lose_nothing, .timeout = TEST_TIMEOUT)
{
    require_uring();
    eddy_loop *loop = uring_loop(1);
    cr_assert(eq(int, (int)run_on(loop, tiny_ring_main, NULL), 0));
    eddy_loop_free(loop);
}

#define TINY_FILE_READERS 128

struct file_part {
    eddy_file *f;
    int index;
    char buf[8];
};

static intptr_t read_part(void *arg)
{
    struct file_part *p = arg;
    return eddy_file_read(p->f, p->buf, sizeof p->buf, (int64_t)p->index * 8);
}

static intptr_t tiny_file_main(void *path)
{
    eddy_file *f;
    cr_assert(eq(int, eddy_file_open(&f, path, O_CREAT | O_TRUNC | O_RDWR, 0600), 0));
    char data[TINY_FILE_READERS * 8 + 1];
    for (int i = 0; i < TINY_FILE_READERS; i++)
        snprintf(data + i * 8, 9, "%07d|", i);
    cr_assert(eq(sz, (size_t)eddy_file_write(f, data, TINY_FILE_READERS * 8, 0),
                 (size_t)TINY_FILE_READERS * 8));
    struct file_part parts[TINY_FILE_READERS];
    eddy_task *tasks[TINY_FILE_READERS];
    for (int i = 0; i < TINY_FILE_READERS; i++) {
        parts[i] = (struct file_part){.f = f, .index = i};
        tasks[i] = eddy_spawn(NULL, read_part, &parts[i]);
    }
    for (int i = 0; i < TINY_FILE_READERS; i++) {
        intptr_t n = -1;
        cr_assert(eq(int, eddy_task_join(tasks[i], &n), 0));
        cr_assert(eq(int, (int)n, 8));
        cr_assert(eq(int, memcmp(parts[i].buf, data + i * 8, 8), 0), "part %d", i);
    }
    cr_assert(eq(int, eddy_file_close(f), 0));
    cr_assert(eq(int, eddy_fs_unlink(path), 0));
    return 0;
}

Test(uring_tiny_ring, concurrent_file_reads_lose_nothing, .timeout = TEST_TIMEOUT)
{
    require_uring();
    char path[64];
    snprintf(path, sizeof path, "/tmp/eddy-uring-tiny-%d", (int)getpid());
    eddy_loop *loop = uring_loop(2);
    cr_assert(eq(int, (int)run_on(loop, tiny_file_main, path), 0));
    eddy_loop_free(loop);
}

/* ---- accept: multishot, and single-shot with EDDY_CAPS_DISABLE ------------------ */

/* Selects the accept path of the loops made from now on in this process. */
static void accept_mode(bool multishot)
{
    if (multishot)
        unsetenv("EDDY_CAPS_DISABLE");
    else
        setenv("EDDY_CAPS_DISABLE", "multishot_accept", 1);
}

#define BURST 200

struct burst {
    eddy_sock *listener;
    int port;
    int served;
};

static intptr_t burst_echo(void *arg)
{
    eddy_sock *conn = arg;
    char buf[32];
    ssize_t n = eddy_recv(conn, buf, sizeof buf);
    if (n > 0) n = eddy_send(conn, buf, (size_t)n);
    int err = eddy_sock_close(conn);
    return n < 0 ? n : err;
}

/* Accepts BURST connections, one task each. */
static intptr_t burst_acceptor(void *arg)
{
    struct burst *b = arg;
    eddy_group *g = eddy_group_new(NULL);
    for (int i = 0; i < BURST; i++) {
        eddy_sock *conn;
        int err = eddy_accept(b->listener, &conn);
        if (err < 0) return err;
        if (!eddy_group_spawn(g, burst_echo, conn)) return -ENOMEM;
        b->served++;
    }
    int err = eddy_group_wait(g);
    eddy_group_free(g);
    return err;
}

static intptr_t burst_client(void *arg)
{
    struct burst *b = arg;
    eddy_sock *s;
    int err = eddy_tcp_connect(&s, "127.0.0.1", (uint16_t)b->port);
    if (err < 0) return err;
    char msg[32], buf[32];
    int len = snprintf(msg, sizeof msg, "client %p", (void *)&s);
    ssize_t n = eddy_send(s, msg, (size_t)len);
    if (n == len) n = eddy_recv(s, buf, sizeof buf);
    if (n == len && memcmp(buf, msg, (size_t)len) != 0) n = -EBADMSG;
    err = eddy_sock_close(s);
    return n < 0 ? n : n != len ? -EIO : err;
}

static intptr_t burst_main(void *unused)
{
    struct burst b = {0};
    cr_assert(eq(int, eddy_tcp_listen(&b.listener, "127.0.0.1", 0, BURST), 0));
    b.port = eddy_sock_port(b.listener);
    eddy_task *acceptor = eddy_spawn(NULL, burst_acceptor, &b);
    eddy_task *clients[BURST];
    for (int i = 0; i < BURST; i++)
        clients[i] = eddy_spawn(NULL, burst_client, &b);
    for (int i = 0; i < BURST; i++) {
        intptr_t r = -1;
        cr_assert(eq(int, eddy_task_join(clients[i], &r), 0));
        cr_assert(eq(int, (int)r, 0), "client %d: %s", i, eddy_strerror((int)r));
    }
    intptr_t r = -1;
    cr_assert(eq(int, eddy_task_join(acceptor, &r), 0));
    cr_assert(eq(int, (int)r, 0), "acceptor: %s", eddy_strerror((int)r));
    cr_assert(eq(int, b.served, BURST));
    cr_assert(eq(int, eddy_sock_close(b.listener), 0));
    return 0;
}

static void check_burst(bool multishot, unsigned queue_depth)
{
    require_uring();
    accept_mode(multishot);
    eddy_loop *loop = uring_loop(queue_depth);
    cr_assert(eq(int, (int)run_on(loop, burst_main, NULL), 0));
    eddy_loop_free(loop);
}

Test(uring_accept, burst_of_connections_multishot, .timeout = TEST_TIMEOUT)
{
    check_burst(true, 0);
}

Test(uring_accept, burst_of_connections_single_shot, .timeout = TEST_TIMEOUT)
{
    check_burst(false, 0);
}

/* A CQ of 4: the kernel ends the multishot when it overflows; it is rearmed. */
Test(uring_accept, burst_of_connections_multishot_tiny_ring, .timeout = TEST_TIMEOUT)
{
    check_burst(true, 1);
}

static intptr_t accept_one(void *listener)
{
    eddy_sock *conn;
    int err = eddy_accept(listener, &conn);
    if (err < 0) return err;
    return eddy_sock_close(conn);
}

/* A cancelled accept takes no connection with it: the ones that come while
 * nobody accepts (or while the accept is being withdrawn) go to the next. */
static intptr_t cancelled_accept_main(void *unused)
{
    eddy_sock *listener;
    cr_assert(eq(int, eddy_tcp_listen(&listener, "127.0.0.1", 0, 0), 0));
    int port = eddy_sock_port(listener);
    for (int round = 0; round < 50; round++) {
        eddy_task *t = eddy_spawn(NULL, accept_one, listener);
        for (int i = 0; i < round % 4; i++)
            cr_assert(eq(int, eddy_yield(), 0));
        eddy_sock *client;
        bool early = round % 2; /* connect before the cancel: a race with it */
        if (early) cr_assert(eq(int, eddy_tcp_connect(&client, "127.0.0.1", (uint16_t)port), 0));
        eddy_task_cancel(t);
        intptr_t r = -1;
        int err = eddy_task_join(t, &r);
        bool took_it = err == 0 && r == 0;
        cr_assert(took_it || err == -ECANCELED, "round %d: %s", round, eddy_strerror(err));
        cr_assert(early || !took_it, "round %d: accepted a connection nobody made", round);
        if (!early) cr_assert(eq(int, eddy_tcp_connect(&client, "127.0.0.1", (uint16_t)port), 0));
        if (!took_it) {
            eddy_task *again = eddy_spawn(NULL, accept_one, listener);
            int wait = eddy_await_timeout(eddy_task_future(again), 5 * NS_PER_SEC, NULL);
            cr_assert(eq(int, wait, 0), "round %d: the connection was lost", round);
            cr_assert(eq(int, eddy_task_join(again, &r), 0));
            cr_assert(eq(int, (int)r, 0));
        }
        char c;
        cr_assert(eq(sz, (size_t)eddy_recv(client, &c, 1), 0), "the server side was closed");
        cr_assert(eq(int, eddy_sock_close(client), 0));
    }
    cr_assert(eq(int, eddy_sock_close(listener), 0));
    return 0;
}

Test(uring_accept, cancelled_accept_loses_no_connection, .timeout = TEST_TIMEOUT)
{
    require_uring();
    eddy_loop *loop = uring_loop(0);
    cr_assert(eq(int, (int)run_on(loop, cancelled_accept_main, NULL), 0));
    eddy_loop_free(loop);
}

struct connect_call {
    int port;
    eddy_sock *s;
};

static intptr_t connect_call(void *arg)
{
    struct connect_call *c = arg;
    return eddy_tcp_connect(&c->s, "127.0.0.1", (uint16_t)c->port);
}

static intptr_t recv_end(void *client)
{
    char c;
    return eddy_recv(client, &c, 1);
}

/* Closing a listener releases its port at once, even with connections the
 * kernel accepted that nobody took: they are closed, their clients see the
 * end. The multishot accept does not keep the socket alive. */
static intptr_t close_listener_main(void *unused)
{
    eddy_sock *listener;
    cr_assert(eq(int, eddy_tcp_listen(&listener, "127.0.0.1", 0, 0), 0));
    int port = eddy_sock_port(listener);
    eddy_task *acceptor = eddy_spawn(NULL, accept_one, listener);
    cr_assert(eq(int, eddy_yield(), 0));
    /* Connecting together, they arrive together: one is taken, the kernel
     * accepts the others for accepts that never come. */
    struct connect_call calls[4];
    eddy_task *connecting[4];
    for (int i = 0; i < 4; i++) {
        calls[i] = (struct connect_call){.port = port};
        connecting[i] = eddy_spawn(NULL, connect_call, &calls[i]);
    }
    eddy_sock *clients[4];
    for (int i = 0; i < 4; i++) {
        cr_assert(eq(int, eddy_task_join(connecting[i], NULL), 0));
        clients[i] = calls[i].s;
    }
    intptr_t r = -1;
    cr_assert(eq(int, eddy_task_join(acceptor, &r), 0));
    cr_assert(eq(int, (int)r, 0));
    cr_assert(eq(int, eddy_sleep(5 * NS_PER_MS), 0)); /* what comes, comes */
    cr_assert(eq(int, eddy_sock_close(listener), 0));

    eddy_sock *again;
    int err = eddy_tcp_listen(&again, "127.0.0.1", (uint16_t)port, 0);
    cr_assert(eq(int, err, 0), "listening again on the port: %s", eddy_strerror(err));
    for (int i = 0; i < 4; i++) {
        eddy_task *t = eddy_spawn(NULL, recv_end, clients[i]);
        int end = eddy_await_timeout(eddy_task_future(t), 5 * NS_PER_SEC, &r);
        cr_assert(ne(int, end, -ETIMEDOUT), "client %d never saw its end", i);
        if (end == 0) end = (int)r;
        cr_assert(end == 0 || end == -ECONNRESET, "client %d: %s", i, eddy_strerror(end));
        eddy_task_detach(t);
        cr_assert(eq(int, eddy_sock_close(clients[i]), 0));
    }
    cr_assert(eq(int, eddy_sock_close(again), 0));
    return 0;
}

static void check_close_listener(bool multishot)
{
    require_uring();
    accept_mode(multishot);
    eddy_loop *loop = uring_loop(0);
    cr_assert(eq(int, (int)run_on(loop, close_listener_main, NULL), 0));
    eddy_loop_free(loop);
}

Test(uring_accept, closing_a_listener_frees_its_port_multishot, .timeout = TEST_TIMEOUT)
{
    check_close_listener(true);
}

Test(uring_accept, closing_a_listener_frees_its_port_single_shot, .timeout = TEST_TIMEOUT)
{
    check_close_listener(false);
}

/* ---- zero-copy send ------------------------------------------------------------------ */

/* Byte off of message msg: each message its own pattern, so a byte out of
 * place or left over from another send shows. */
static unsigned char zc_byte(size_t msg, size_t off)
{
    return (unsigned char)(msg * 31 + off * 7 + off / 253);
}

static const size_t zc_sizes[] = {
    1, 100, 4096, 65535, 65536, 65537, 96 * 1024, 200000, 1 << 20, (3 << 20) + 17,
};
#define ZC_MESSAGES  (sizeof zc_sizes / sizeof zc_sizes[0])
#define ZC_STACK_MAX (96 * 1024)

/* Sends every message, the small ones from this task's stack, the others
 * from the heap; scribbles over each buffer as soon as its send returns, so
 * that a send that ended before the kernel let go of its buffer would put
 * the scribbles on the wire. */
static intptr_t zc_sender(void *arg)
{
    eddy_sock *s = arg;
    unsigned char stack_buf[ZC_STACK_MAX];
    unsigned char *heap_buf = malloc(zc_sizes[ZC_MESSAGES - 1]);
    if (!heap_buf) return -ENOMEM;
    intptr_t err = 0;
    for (size_t m = 0; m < ZC_MESSAGES && err == 0; m++) {
        size_t len = zc_sizes[m];
        unsigned char *buf = len <= ZC_STACK_MAX ? stack_buf : heap_buf;
        for (size_t i = 0; i < len; i++)
            buf[i] = zc_byte(m, i);
        ssize_t n = eddy_send(s, buf, len);
        if (n != (ssize_t)len) err = n < 0 ? n : -EIO;
        memset(buf, 0xee, len);
    }
    free(heap_buf);
    int cerr = eddy_sock_shutdown(s, EDDY_SHUT_WR);
    return err ? err : cerr;
}

struct zc_pair {
    bool unix_socket;
};

static intptr_t zc_stream_main(void *arg)
{
    const struct zc_pair *how = arg;
    eddy_sock *a, *b;
    if (how->unix_socket) {
        char path[64];
        snprintf(path, sizeof path, "@eddy-test-uring-zc-%d", (int)getpid());
        eddy_sock *listener;
        cr_assert(eq(int, eddy_unix_listen(&listener, path, 1), 0));
        cr_assert(eq(int, eddy_unix_connect(&a, path), 0));
        cr_assert(eq(int, eddy_accept(listener, &b), 0));
        cr_assert(eq(int, eddy_sock_close(listener), 0));
    } else {
        tcp_pair(&a, &b);
    }
    eddy_task *sender = eddy_spawn(NULL, zc_sender, a);
    size_t total = 0;
    for (size_t m = 0; m < ZC_MESSAGES; m++)
        total += zc_sizes[m];
    unsigned char *in = malloc(total + 1); /* room for a byte too many */
    cr_assert(ne(ptr, in, NULL));
    size_t got = 0;
    for (;;) {
        size_t room = total + 1 - got;
        ssize_t n = eddy_recv(b, in + got, room < 65536 ? room : 65536);
        cr_assert(ge(i64, (int64_t)n, 0), "recv: %s", eddy_strerror((int)n));
        if (n == 0) break;
        got += (size_t)n;
        cr_assert(le(sz, got, total), "more bytes than were sent");
    }
    cr_assert(eq(sz, got, total));
    size_t pos = 0;
    for (size_t m = 0; m < ZC_MESSAGES; m++)
        for (size_t i = 0; i < zc_sizes[m]; i++, pos++)
            if (in[pos] != zc_byte(m, i))
                cr_fatal("message %zu (%zu bytes), byte %zu: 0x%02x, not 0x%02x", m, zc_sizes[m], i,
                         in[pos], zc_byte(m, i));
    free(in);
    intptr_t r = -1;
    cr_assert(eq(int, eddy_task_join(sender, &r), 0));
    cr_assert(eq(int, (int)r, 0), "sender: %s", eddy_strerror((int)r));
    cr_assert(eq(int, eddy_sock_close(a), 0));
    cr_assert(eq(int, eddy_sock_close(b), 0));
    return 0;
}

/* A loop on io_uring with zero-copy sends of min bytes and more, to this
 * host's peers too (a peer on another host is what they are for); skips
 * where the kernel has no IORING_OP_SEND_ZC (before 6.0). */
static eddy_loop *zc_loop(const char *min)
{
    require_uring();
    unsetenv("EDDY_CAPS_DISABLE");
    if (min)
        setenv("EDDY_URING_SEND_ZC_MIN", min, 1);
    else
        unsetenv("EDDY_URING_SEND_ZC_MIN");
    eddy_loop *loop = uring_loop(0);
    if (eddy_loop_supports(loop, EDDY_CAP_ZEROCOPY_SEND) != EDDY_NATIVE) {
        eddy_loop_free(loop);
        cr_skip_test("no IORING_OP_SEND_ZC here (Linux 6.0+)");
    }
    return loop;
}

/* Messages from 1 byte to 3 MiB, at the default threshold (64 KiB) and with
 * every send zero-copy: each byte arrives once, in order, and none of the
 * scribbles made after each send returned. */
Test(uring_send_zc, large_sends_arrive_intact, .timeout = TEST_TIMEOUT)
{
    static const char *const mins[] = {"65536", "1"};
    struct zc_pair tcp = {.unix_socket = false};
    for (size_t i = 0; i < sizeof mins / sizeof mins[0]; i++) {
        eddy_loop *loop = zc_loop(mins[i]);
        cr_assert(eq(int, (int)run_on(loop, zc_stream_main, &tcp), 0));
        eddy_loop_free(loop);
    }
    unsetenv("EDDY_URING_SEND_ZC_MIN");
}

/* AF_UNIX refuses zero-copy (-EOPNOTSUPP): the sends go again as plain ones. */
Test(uring_send_zc, unix_socket_falls_back_to_copying, .timeout = TEST_TIMEOUT)
{
    struct zc_pair unix_pair = {.unix_socket = true};
    eddy_loop *loop = zc_loop("1");
    cr_assert(eq(int, (int)run_on(loop, zc_stream_main, &unix_pair), 0));
    eddy_loop_free(loop);
    unsetenv("EDDY_URING_SEND_ZC_MIN");
}

/* EDDY_CAPS_DISABLE=zerocopy_send: the loop reports none, and sends copy. */
Test(uring_send_zc, disabled_by_the_environment, .timeout = TEST_TIMEOUT)
{
    require_uring();
    setenv("EDDY_CAPS_DISABLE", "zerocopy_send", 1);
    eddy_loop *loop = uring_loop(0);
    cr_assert(eq(int, (int)eddy_loop_supports(loop, EDDY_CAP_ZEROCOPY_SEND), EDDY_NONE));
    struct zc_pair tcp = {.unix_socket = false};
    cr_assert(eq(int, (int)run_on(loop, zc_stream_main, &tcp), 0));
    eddy_loop_free(loop);
    unsetenv("EDDY_CAPS_DISABLE");
}

#define ZC_BOTH_LEN (80 * 1024)

struct zc_both {
    eddy_sock *sock;
    unsigned char *out, *in;
};

/* Sends its whole message, then reads the peer's. */
static intptr_t zc_send_then_recv(void *arg)
{
    struct zc_both *z = arg;
    ssize_t n = eddy_send(z->sock, z->out, ZC_BOTH_LEN);
    if (n != ZC_BOTH_LEN) return n < 0 ? n : -EIO;
    for (size_t got = 0; got < ZC_BOTH_LEN;) {
        n = eddy_recv(z->sock, z->in + got, ZC_BOTH_LEN - got);
        if (n <= 0) return n < 0 ? n : -EPIPE;
        got += (size_t)n;
    }
    return 0;
}

/* Both ends of a loopback connection send a large message before reading
 * the other's. Over loopback a zero-copy send would end only once the peer
 * has read it, and the two would wait on each other; sends to this host's
 * peers copy, so both go through. */
static intptr_t zc_local_main(void *unused)
{
    eddy_sock *a, *b;
    tcp_pair(&a, &b);
    struct zc_both ends[2] = {{.sock = a}, {.sock = b}};
    eddy_task *tasks[2];
    for (int i = 0; i < 2; i++) {
        ends[i].out = malloc(ZC_BOTH_LEN);
        ends[i].in = malloc(ZC_BOTH_LEN);
        cr_assert(ends[i].out && ends[i].in);
        for (size_t j = 0; j < ZC_BOTH_LEN; j++)
            ends[i].out[j] = zc_byte((size_t)i, j);
    }
    for (int i = 0; i < 2; i++)
        tasks[i] = eddy_spawn(NULL, zc_send_then_recv, &ends[i]);
    for (int i = 0; i < 2; i++) {
        intptr_t r = -1;
        int err = eddy_await_timeout(eddy_task_future(tasks[i]), 5 * NS_PER_SEC, &r);
        cr_assert(eq(int, err, 0), "end %d: %s (waiting on each other?)", i, eddy_strerror(err));
        cr_assert(eq(int, (int)r, 0), "end %d: %s", i, eddy_strerror((int)r));
        eddy_task_detach(tasks[i]);
    }
    cr_assert(eq(int, memcmp(ends[0].in, ends[1].out, ZC_BOTH_LEN), 0));
    cr_assert(eq(int, memcmp(ends[1].in, ends[0].out, ZC_BOTH_LEN), 0));
    for (int i = 0; i < 2; i++) {
        free(ends[i].out);
        free(ends[i].in);
    }
    cr_assert(eq(int, eddy_sock_close(a), 0));
    cr_assert(eq(int, eddy_sock_close(b), 0));
    return 0;
}

Test(uring_send_zc, local_peers_sending_first_do_not_wait_on_each_other, .timeout = TEST_TIMEOUT)
{
    require_uring();
    unsetenv("EDDY_CAPS_DISABLE");
    unsetenv("EDDY_URING_SEND_ZC_MIN");
    eddy_loop *loop = uring_loop(0);
    cr_assert(eq(int, (int)run_on(loop, zc_local_main, NULL), 0));
    eddy_loop_free(loop);
}

#define ZC_CANCEL_CHUNK (128 * 1024) /* above the default threshold */

struct zc_cancel {
    eddy_sock *sock;
    size_t sends; /* sends that returned in full */
    bool ended;   /* the sender's eddy_send returned an error */
    int intact;   /* 1: the stack buffer was as it was when the send ended */
};

/* Sends a 128 KiB buffer from its stack until it blocks (the peer does not
 * read) and is cancelled; then checks its buffer. */
static intptr_t zc_blocked_sender(void *arg)
{
    struct zc_cancel *c = arg;
    unsigned char buf[ZC_CANCEL_CHUNK];
    for (size_t i = 0; i < sizeof buf; i++)
        buf[i] = zc_byte(1, i);
    ssize_t n;
    while ((n = eddy_send(c->sock, buf, sizeof buf)) == (ssize_t)sizeof buf)
        c->sends++;
    c->ended = true;
    c->intact = 1;
    for (size_t i = 0; i < sizeof buf; i++)
        if (buf[i] != zc_byte(1, i)) c->intact = 0;
    memset(buf, 0xee, sizeof buf); /* what the wire must never carry */
    return n;
}

/* Reads until the end; -EBADMSG at a byte that is not the pattern's. */
static intptr_t zc_drain(void *arg)
{
    eddy_sock *s = arg;
    static unsigned char buf[65536];
    size_t pos = 0;
    for (;;) {
        ssize_t n = eddy_recv(s, buf, sizeof buf);
        if (n < 0) return n == -ECONNRESET ? (intptr_t)pos : n;
        if (n == 0) return (intptr_t)pos;
        for (ssize_t i = 0; i < n; i++, pos++)
            if (buf[i] != zc_byte(1, pos % ZC_CANCEL_CHUNK)) return -EBADMSG;
    }
}

/* A task blocked in a large zero-copy send is cancelled at random points;
 * then the peer either reads everything (the kernel lets go of the buffer
 * once its bytes are through) or closes (a reset drops them). The send ends
 * once, after the kernel let go; the stack buffer is intact, and the peer
 * got the pattern and nothing else. ASan sees no access to a dead frame. */
static intptr_t zc_cancel_main(void *unused)
{
    uint64_t seed = 0x5eedf00dULL;
    for (int round = 0; round < 20; round++) {
        eddy_sock *a, *b;
        tcp_pair(&a, &b);
        struct zc_cancel c = {.sock = a};
        eddy_task *sender = eddy_spawn(NULL, zc_blocked_sender, &c);
        int64_t wait = (int64_t)(next_random(&seed) % 3000) * 1000; /* 0..3 ms */
        cr_assert(eq(int, eddy_sleep(wait + 2 * NS_PER_MS), 0));    /* blocked by now */
        cr_assert(eddy_task_cancel(sender));
        bool drain = round % 2 == 0;
        intptr_t got = 0;
        if (drain) {
            eddy_task *reader = eddy_spawn(NULL, zc_drain, b);
            intptr_t r = -1;
            int err = eddy_task_join(sender, &r);
            cr_assert(err == -ECANCELED || (err == 0 && r < 0), "round %d: %s", round,
                      eddy_strerror(err));
            cr_assert(eq(int, eddy_sock_shutdown(a, EDDY_SHUT_WR), 0));
            cr_assert(eq(int, eddy_task_join(reader, &got), 0));
            cr_assert(ge(i64, (int64_t)got, 0), "round %d: drain: %s", round,
                      eddy_strerror((int)got));
            cr_assert(ge(u64, (uint64_t)got, (uint64_t)(c.sends * ZC_CANCEL_CHUNK)), "round %d",
                      round);
        } else {
            cr_assert(eq(int, eddy_sock_close(b), 0)); /* unread bytes: a reset */
            b = NULL;
            int err = eddy_task_join(sender, NULL);
            cr_assert(err == -ECANCELED || err == 0, "round %d: %s", round, eddy_strerror(err));
        }
        cr_assert(c.ended, "round %d: the send never ended", round);
        cr_assert(eq(int, c.intact, 1), "round %d: the buffer changed", round);
        cr_assert(eq(int, eddy_sock_close(a), 0));
        if (b) cr_assert(eq(int, eddy_sock_close(b), 0));
    }
    return 0;
}

Test(uring_send_zc, cancelled_send_keeps_its_buffer, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = zc_loop("65536");
    cr_assert(eq(int, (int)run_on(loop, zc_cancel_main, NULL), 0));
    eddy_loop_free(loop);
}

/* ---- multishot receive ------------------------------------------------------------ */

/* A loop on io_uring whose stream sockets are read through a multishot
 * receive into a buffer ring of ring ("<count>x<size>"; NULL: the default),
 * or, multishot false, with plain receives (EDDY_CAPS_DISABLE). Skips where
 * the kernel has no multishot receive (before 6.0). */
static eddy_loop *recv_loop(bool multishot, const char *ring)
{
    require_uring();
    if (multishot)
        unsetenv("EDDY_CAPS_DISABLE");
    else
        setenv("EDDY_CAPS_DISABLE", "multishot_recv", 1);
    if (ring)
        setenv("EDDY_URING_BUF_RING", ring, 1);
    else
        unsetenv("EDDY_URING_BUF_RING");
    eddy_loop *loop = uring_loop(0);
    unsetenv("EDDY_CAPS_DISABLE");
    unsetenv("EDDY_URING_BUF_RING");
    eddy_support want = multishot ? EDDY_NATIVE : EDDY_NONE;
    if (multishot && eddy_loop_supports(loop, EDDY_CAP_MULTISHOT_RECV) != EDDY_NATIVE) {
        eddy_loop_free(loop);
        cr_skip_test("no multishot receive here (Linux 6.0+)");
    }
    cr_assert(eq(int, (int)eddy_loop_supports(loop, EDDY_CAP_MULTISHOT_RECV), (int)want));
    cr_assert(eq(int, (int)eddy_loop_supports(loop, EDDY_CAP_BUFFER_RING), (int)want));
    return loop;
}

/* Bytes the kernel still holds for s (not yet taken by a receive). */
static int kernel_queued(eddy_sock *s)
{
    int n = -1;
    cr_assert(eq(int, ioctl((int)eddy_sock_fd(s), FIONREAD, &n), 0));
    return n;
}

/* Lets the loop run until the kernel holds want bytes for s (at most 2 s). */
static void wait_kernel_queued(eddy_sock *s, int want)
{
    for (int i = 0; i < 2000 && kernel_queued(s) != want; i++)
        cr_assert(eq(int, eddy_sleep(1000 * 1000), 0));
    cr_assert(eq(int, kernel_queued(s), want));
}

static uint8_t piece_byte(size_t k)
{
    return (uint8_t)(k * 131 + k / 4093);
}

#define PIECES_SMALL (64 * 1024) /* in pieces of 1 to 100 bytes */
#define PIECES_BIG   (1024 * 1024)
#define PIECES_TOTAL (PIECES_SMALL + PIECES_BIG)

struct pieces {
    eddy_sock *writer, *reader;
    uint64_t rng;
    unsigned slow; /* the reader sleeps before one read in slow (0: never) */
};

static intptr_t pieces_writer(void *arg)
{
    struct pieces *p = arg;
    uint64_t rng = p->rng ^ 0x51ED27;
    uint8_t small[100];
    size_t k = 0;
    while (k < PIECES_SMALL) {
        size_t n = 1 + next_random(&rng) % sizeof small;
        if (n > PIECES_SMALL - k) n = PIECES_SMALL - k;
        for (size_t i = 0; i < n; i++)
            small[i] = piece_byte(k + i);
        cr_assert(eq(sz, (size_t)eddy_send(p->writer, small, n), n));
        k += n;
        if (next_random(&rng) % 4 == 0) (void)eddy_yield();
    }
    uint8_t *big = malloc(PIECES_BIG);
    cr_assert(ne(ptr, big, NULL));
    for (size_t i = 0; i < PIECES_BIG; i++)
        big[i] = piece_byte(k + i);
    cr_assert(eq(sz, (size_t)eddy_send(p->writer, big, PIECES_BIG), (size_t)PIECES_BIG));
    free(big);
    return eddy_sock_shutdown(p->writer, EDDY_SHUT_WR);
}

/* Reads the stream to its end in reads of random sizes, sleeping now and
 * then so that bytes arrive with no read waiting; checks every byte. */
static intptr_t pieces_reader(void *arg)
{
    struct pieces *p = arg;
    static const size_t sizes[] = {1, 7, 64, 100, 512, 4096, 16384, 65536};
    uint8_t *buf = malloc(65536);
    cr_assert(ne(ptr, buf, NULL));
    size_t k = 0;
    for (;;) {
        uint64_t r = next_random(&p->rng);
        if (p->slow && r % p->slow == 0) (void)eddy_sleep((int64_t)((r >> 8) % 300000));
        size_t len = sizes[(r >> 32) % (sizeof sizes / sizeof sizes[0])];
        ssize_t n = eddy_recv(p->reader, buf, len);
        cr_assert(ge(int, (int)n, 0), "recv: %s", eddy_strerror((int)n));
        if (n == 0) break;
        cr_assert(le(sz, (size_t)n, len));
        cr_assert(le(sz, k + (size_t)n, (size_t)PIECES_TOTAL), "more bytes than sent");
        for (ssize_t i = 0; i < n; i++)
            if (buf[i] != piece_byte(k + (size_t)i))
                cr_fatal("byte %zu: 0x%02x, not 0x%02x", k + (size_t)i, buf[i],
                         piece_byte(k + (size_t)i));
        k += (size_t)n;
    }
    cr_assert(eq(sz, k, (size_t)PIECES_TOTAL), "bytes lost");
    cr_assert(eq(int, (int)eddy_recv(p->reader, buf, 16), 0), "the end is told again");
    free(buf);
    return 0;
}

#define PIECE_PAIRS 6

/* PIECE_PAIRS connections at once, each read as pieces_reader does. */
static intptr_t pieces_main(void *arg)
{
    unsigned slow = (unsigned)(uintptr_t)arg;
    struct pieces p[PIECE_PAIRS];
    eddy_task *tasks[2 * PIECE_PAIRS];
    for (int i = 0; i < PIECE_PAIRS; i++) {
        p[i] = (struct pieces){.rng = (uint64_t)wall_ns() * 2654435761u + (uint64_t)i + 1,
                               .slow = slow};
        tcp_pair(&p[i].writer, &p[i].reader);
        tasks[2 * i] = eddy_spawn(NULL, pieces_reader, &p[i]);
        tasks[2 * i + 1] = eddy_spawn(NULL, pieces_writer, &p[i]);
    }
    for (int i = 0; i < 2 * PIECE_PAIRS; i++) {
        intptr_t r = -1;
        cr_assert(eq(int, eddy_task_join(tasks[i], &r), 0));
        cr_assert(eq(int, (int)r, 0), "task %d: %s", i, eddy_strerror((int)r));
    }
    for (int i = 0; i < PIECE_PAIRS; i++) {
        cr_assert(eq(int, eddy_sock_close(p[i].reader), 0));
        cr_assert(eq(int, eddy_sock_close(p[i].writer), 0));
    }
    return 0;
}

/* 64 KiB in pieces of 1 to 100 bytes, then 1 MiB in one send, on six
 * connections at once: every byte arrives once and in order, with reads of
 * 1 byte to 64 KiB, through the multishot and without it. */
Test(uring_recv, small_pieces_and_one_big_piece_arrive_in_order, .timeout = TEST_TIMEOUT)
{
    for (int multishot = 1; multishot >= 0; multishot--) {
        eddy_loop *loop = recv_loop(multishot, NULL);
        cr_assert(eq(int, (int)run_on(loop, pieces_main, (void *)(uintptr_t)0), 0));
        cr_assert(eq(int, (int)run_on(loop, pieces_main, (void *)(uintptr_t)3), 0));
        eddy_loop_free(loop);
    }
}

/* A ring of 4 buffers of 512 bytes shared by six connections whose readers
 * sleep between reads: it runs dry again and again (-ENOBUFS ends the
 * multishots), and no byte is lost or reordered. */
Test(uring_recv, slow_readers_and_a_tiny_buffer_ring_lose_nothing, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = recv_loop(true, "4x512");
    cr_assert(eq(int, (int)run_on(loop, pieces_main, (void *)(uintptr_t)2), 0));
    eddy_loop_free(loop);
}

static intptr_t recv_into(void *arg)
{
    char buf[64];
    return eddy_recv(arg, buf, sizeof buf);
}

/* Data the multishot took from the kernel while no read waited stays queued
 * through cancelled reads, and reaches the next read. */
static intptr_t queued_cancel_main(void *arg)
{
    bool multishot = arg != NULL;
    eddy_sock *a, *b;
    tcp_pair(&a, &b);
    char buf[64];
    /* Two reads: the socket is read in a loop, and gets its multishot. */
    for (int i = 0; i < 2; i++) {
        cr_assert(eq(int, (int)eddy_send(a, "x", 1), 1));
        cr_assert(eq(int, (int)eddy_recv(b, buf, sizeof buf), 1));
    }
    /* A read cancelled while it waits... */
    eddy_task *t = eddy_spawn(NULL, recv_into, b);
    cr_assert(eq(int, eddy_yield(), 0));
    cr_assert(eddy_task_cancel(t));
    cr_assert(eq(int, eddy_task_join(t, NULL), -ECANCELED));
    /* ...then bytes come with no read waiting: taken into the ring (the
     * kernel keeps none), or left in the kernel without the multishot. */
    cr_assert(eq(int, (int)eddy_send(a, "hello", 5), 5));
    cr_assert(eq(int, (int)eddy_send(a, " world", 6), 6));
    wait_kernel_queued(b, multishot ? 0 : 11);
    /* A read cancelled before it starts, and one timed out: none takes them. */
    t = eddy_spawn(NULL, recv_into, b);
    cr_assert(eddy_task_cancel(t));
    cr_assert(eq(int, eddy_task_join(t, NULL), -ECANCELED));
    /* All of it, in one read, in order. */
    memset(buf, 0, sizeof buf);
    cr_assert(eq(int, (int)eddy_recv(b, buf, sizeof buf), 11));
    cr_assert(eq(str, buf, "hello world"));
    /* Bytes queued, then the end of the stream: the bytes, then 0, twice. */
    cr_assert(eq(int, (int)eddy_send(a, "bye", 3), 3));
    cr_assert(eq(int, eddy_sock_shutdown(a, EDDY_SHUT_WR), 0));
    wait_kernel_queued(b, multishot ? 0 : 3);
    memset(buf, 0, sizeof buf);
    cr_assert(eq(int, (int)eddy_recv(b, buf, 2), 2));
    cr_assert(eq(int, (int)eddy_recv(b, buf + 2, sizeof buf - 2), 1));
    cr_assert(eq(str, buf, "bye"));
    cr_assert(eq(int, (int)eddy_recv(b, buf, sizeof buf), 0));
    cr_assert(eq(int, (int)eddy_recv(b, buf, sizeof buf), 0));
    cr_assert(eq(int, eddy_sock_close(a), 0));
    cr_assert(eq(int, eddy_sock_close(b), 0));
    return 0;
}

Test(uring_recv, cancelled_reads_keep_queued_data_and_the_end_follows_it, .timeout = TEST_TIMEOUT)
{
    for (int multishot = 1; multishot >= 0; multishot--) {
        eddy_loop *loop = recv_loop(multishot, NULL);
        cr_assert(eq(int, (int)run_on(loop, queued_cancel_main, multishot ? "" : NULL), 0));
        eddy_loop_free(loop);
    }
}

/* The peer resets the connection (SO_LINGER 0) after sending: the bytes
 * first, then -ECONNRESET once, whether the multishot queued the bytes or
 * the kernel kept them. */
static intptr_t reset_main(void *arg)
{
    bool multishot = arg != NULL;
    eddy_sock *a, *b;
    tcp_pair(&a, &b);
    char buf[64];
    for (int i = 0; i < 2; i++) {
        cr_assert(eq(int, (int)eddy_send(a, "x", 1), 1));
        cr_assert(eq(int, (int)eddy_recv(b, buf, sizeof buf), 1));
    }
    eddy_task *t = eddy_spawn(NULL, recv_into, b); /* arms the multishot */
    cr_assert(eq(int, eddy_yield(), 0));
    cr_assert(eq(int, (int)eddy_send(a, "y", 1), 1));
    intptr_t n = 0;
    cr_assert(eq(int, eddy_task_join(t, &n), 0));
    cr_assert(eq(int, (int)n, 1));
    cr_assert(eq(int, (int)eddy_send(a, "last words", 10), 10));
    wait_kernel_queued(b, multishot ? 0 : 10);
    struct linger lin = {.l_onoff = 1, .l_linger = 0};
    cr_assert(
        eq(int, setsockopt((int)eddy_sock_fd(a), SOL_SOCKET, SO_LINGER, &lin, sizeof lin), 0));
    cr_assert(eq(int, eddy_sock_close(a), 0));
    cr_assert(eq(int, eddy_sleep(20 * 1000 * 1000), 0)); /* the reset arrives */
    memset(buf, 0, sizeof buf);
    cr_assert(eq(int, (int)eddy_recv(b, buf, sizeof buf), 10));
    cr_assert(eq(str, buf, "last words"));
    cr_assert(eq(int, (int)eddy_recv(b, buf, sizeof buf), -ECONNRESET));
    cr_assert(eq(int, eddy_sock_close(b), 0));
    return 0;
}

Test(uring_recv, reset_after_queued_data_gives_the_data_then_the_error, .timeout = TEST_TIMEOUT)
{
    for (int multishot = 1; multishot >= 0; multishot--) {
        eddy_loop *loop = recv_loop(multishot, NULL);
        cr_assert(eq(int, (int)run_on(loop, reset_main, multishot ? "" : NULL), 0));
        eddy_loop_free(loop);
    }
}

struct reuse {
    eddy_sock *a, *b;
    intptr_t old_fd;
};

/* A pair whose connecting end (a socket the backend never saw made) reads:
 * its multishot armed and bytes queued. */
static intptr_t reuse_first(void *arg)
{
    struct reuse *r = arg;
    tcp_pair(&r->a, &r->b);
    char buf[16];
    for (int i = 0; i < 2; i++) {
        cr_assert(eq(int, (int)eddy_send(r->b, "x", 1), 1));
        cr_assert(eq(int, (int)eddy_recv(r->a, buf, sizeof buf), 1));
    }
    eddy_task *t = eddy_spawn(NULL, recv_into, r->a);
    cr_assert(eq(int, eddy_yield(), 0));
    cr_assert(eq(int, (int)eddy_send(r->b, "y", 1), 1));
    cr_assert(eq(int, eddy_task_join(t, NULL), 0));
    cr_assert(eq(int, (int)eddy_send(r->b, "stale", 5), 5));
    wait_kernel_queued(r->a, 0);
    r->old_fd = eddy_sock_fd(r->a);
    return 0;
}

/* New connections until one gets the old reader's number: it reads its
 * own bytes, never those queued for the socket closed under that number. */
static intptr_t reuse_second(void *arg)
{
    struct reuse *r = arg;
    eddy_sock *a[4], *b[4];
    int hit = -1;
    for (int i = 0; i < 4 && hit < 0; i++) {
        tcp_pair(&a[i], &b[i]);
        if (eddy_sock_fd(b[i]) == r->old_fd || eddy_sock_fd(a[i]) == r->old_fd) hit = i;
    }
    cr_assert(ge(int, hit, 0), "fd %d was not handed out again", (int)r->old_fd);
    eddy_sock *reader = eddy_sock_fd(b[hit]) == r->old_fd ? b[hit] : a[hit];
    eddy_sock *writer = reader == b[hit] ? a[hit] : b[hit];
    char buf[16] = {0};
    cr_assert(eq(int, (int)eddy_send(writer, "fresh", 5), 5));
    cr_assert(eq(int, (int)eddy_recv(reader, buf, sizeof buf), 5));
    cr_assert(eq(str, buf, "fresh"));
    cr_assert(eq(int, (int)eddy_send(writer, "again", 5), 5));
    cr_assert(eq(int, (int)eddy_recv(reader, buf, sizeof buf), 5));
    cr_assert(eq(str, buf, "again"));
    for (int i = 0; i <= hit; i++) {
        cr_assert(eq(int, eddy_sock_close(a[i]), 0));
        cr_assert(eq(int, eddy_sock_close(b[i]), 0));
    }
    return 0;
}

/* A socket closed outside the loop (with close(2): the backend is not
 * told) leaves its multishot state under its number; the next socket under
 * that number must not inherit it (a bug found while writing this). */
Test(uring_recv, a_reused_fd_number_does_not_inherit_queued_bytes, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = recv_loop(true, NULL);
    struct reuse r = {0};
    cr_assert(eq(int, (int)run_on(loop, reuse_first, &r), 0));
    cr_assert(eq(int, eddy_sock_close(r.a), 0)); /* outside the loop */
    cr_assert(eq(int, eddy_sock_close(r.b), 0));
    cr_assert(eq(int, (int)run_on(loop, reuse_second, &r), 0));
    eddy_loop_free(loop);
}

#define SIZES_BIG (512 * 1024)

static intptr_t send_big(void *arg)
{
    eddy_sock *s = arg;
    char *big = calloc(1, SIZES_BIG);
    cr_assert(ne(ptr, big, NULL));
    ssize_t n = eddy_send(s, big, SIZES_BIG);
    free(big);
    return n;
}

/* A socket whose reads bring 8 KiB and more is read with plain receives
 * (bytes sent while no read waits stay in the kernel); once its reads are
 * small again, it gets its multishot back (they are taken into the ring). */
static intptr_t read_sizes_main(void *unused)
{
    eddy_sock *a, *b;
    tcp_pair(&a, &b);
    eddy_task *sender = eddy_spawn(NULL, send_big, a);
    char *buf = malloc(65536);
    cr_assert(ne(ptr, buf, NULL));
    for (size_t got = 0; got < SIZES_BIG;) {
        ssize_t n = eddy_recv(b, buf, 65536);
        cr_assert(n > 0, "recv: %zd", n);
        got += (size_t)n;
    }
    intptr_t sent = 0;
    cr_assert(eq(int, eddy_task_join(sender, &sent), 0));
    cr_assert(eq(i64, (int64_t)sent, SIZES_BIG));
    /* A read that waits: plain, and nothing reads ahead once it is done. */
    eddy_task *t = eddy_spawn(NULL, recv_into, b);
    cr_assert(eq(int, eddy_yield(), 0));
    cr_assert(eq(int, (int)eddy_send(a, "x", 1), 1));
    intptr_t n = 0;
    cr_assert(eq(int, eddy_task_join(t, &n), 0));
    cr_assert(eq(int, (int)n, 1));
    cr_assert(eq(int, (int)eddy_send(a, "0123456789", 10), 10));
    wait_kernel_queued(b, 10);
    for (int i = 0; i < 8; i++) {
        cr_assert(eq(int, (int)eddy_recv(b, buf, 10), 10));
        cr_assert(eq(int, (int)eddy_send(a, "0123456789", 10), 10));
    }
    wait_kernel_queued(b, 0); /* the multishot took the last ten */
    cr_assert(eq(int, (int)eddy_recv(b, buf, 65536), 10));
    cr_assert(eq(int, memcmp(buf, "0123456789", 10), 0));
    free(buf);
    cr_assert(eq(int, eddy_sock_close(a), 0));
    cr_assert(eq(int, eddy_sock_close(b), 0));
    return 0;
}

Test(uring_recv, large_reads_go_plain_and_small_ones_multishot, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = recv_loop(true, NULL);
    cr_assert(eq(int, (int)run_on(loop, read_sizes_main, NULL), 0));
    eddy_loop_free(loop);
}

#define CLOSE_PAIRS 16

/* Sockets closed with their multishot armed: with bytes queued, with a read
 * waiting in another task, with both ends; the peer then sees the
 * connection closed (no multishot keeps the socket alive), and the loop
 * frees everything (ASan: no leak). */
static intptr_t close_armed_main(void *arg)
{
    eddy_sock **left = arg;
    eddy_sock *a[CLOSE_PAIRS], *b[CLOSE_PAIRS];
    eddy_task *waiting[CLOSE_PAIRS] = {0};
    char buf[64];
    for (int i = 0; i < CLOSE_PAIRS; i++) {
        tcp_pair(&a[i], &b[i]);
        for (int j = 0; j < 2; j++) {
            cr_assert(eq(int, (int)eddy_send(a[i], "ab", 2), 2));
            cr_assert(eq(int, (int)eddy_recv(b[i], buf, sizeof buf), 2));
        }
        if (i % 2 == 0) cr_assert(eq(int, (int)eddy_send(a[i], "queued", 6), 6));
        if (i % 4 == 1) waiting[i] = eddy_spawn(NULL, recv_into, b[i]);
    }
    cr_assert(eq(int, eddy_sleep(20 * 1000 * 1000), 0));
    for (int i = 0; i < CLOSE_PAIRS; i++)
        cr_assert(eq(int, eddy_sock_close(b[i]), 0));
    for (int i = 0; i < CLOSE_PAIRS; i++) {
        if (waiting[i]) cr_assert(eq(int, eddy_task_join(waiting[i], NULL), -ECANCELED));
        ssize_t n = eddy_recv(a[i], buf, sizeof buf); /* the peer's close */
        cr_assert(n == 0 || n == -ECONNRESET, "pair %d: %zd", i, n);
        cr_assert(eq(int, eddy_sock_close(a[i]), 0));
    }
    /* And a pair left open, its multishot armed and bytes queued, when the
     * loop stops: closed from outside the loop, then the loop is freed. */
    tcp_pair(&left[0], &left[1]);
    for (int j = 0; j < 2; j++) {
        cr_assert(eq(int, (int)eddy_send(left[0], "cd", 2), 2));
        cr_assert(eq(int, (int)eddy_recv(left[1], buf, sizeof buf), 2));
    }
    cr_assert(eq(int, (int)eddy_send(left[0], "left", 4), 4));
    wait_kernel_queued(left[1], 0);
    return 0;
}

Test(uring_recv, closing_sockets_with_a_multishot_armed_leaks_nothing, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = recv_loop(true, NULL);
    eddy_sock *left[2];
    cr_assert(eq(int, (int)run_on(loop, close_armed_main, left), 0));
    cr_assert(eq(int, eddy_sock_close(left[0]), 0));
    cr_assert(eq(int, eddy_sock_close(left[1]), 0));
    eddy_loop_free(loop);
}

/* ---- cancellation race ------------------------------------------------------------- */

#define RACE_PAIRS        50
#define RACE_OPS_PER_PAIR 200 /* 10 000 receives in all */
#define RACE_CHUNK        64
#define RACE_STREAM       (RACE_OPS_PER_PAIR * 8)
#define SENTINEL          0xFF /* never in the stream */

static uint8_t stream_byte(int pair, size_t k)
{
    return (uint8_t)((k * 31 + (size_t)pair * 7) % 251);
}

struct race_pair {
    int id;
    eddy_sock *reader, *writer;
    uint64_t rng;
    uint8_t got[RACE_STREAM];
    size_t got_len;
    bool damaged;
    unsigned unstarted, cancelled_in_flight, completed, won_after_cancel, eofs;
};

/* One receive into a buffer on this task's own stack, which is gone as soon
 * as the task ends: the backend must be done with it by then. */
struct race_call {
    eddy_sock *s;
    bool started;
    bool damaged;
    uint8_t out[RACE_CHUNK];
};

static intptr_t race_recv(void *arg)
{
    struct race_call *c = arg;
    c->started = true;
    uint8_t buf[RACE_CHUNK + 16];
    memset(buf, SENTINEL, sizeof buf);
    ssize_t n = eddy_recv(c->s, buf, RACE_CHUNK);
    size_t valid = n > 0 ? (size_t)n : 0;
    for (size_t i = valid; i < sizeof buf; i++)
        if (buf[i] != SENTINEL) c->damaged = true; /* written beyond what was reported */
    memcpy(c->out, buf, valid);
    return n;
}

static void race_take(struct race_pair *p, const uint8_t *data, size_t n)
{
    cr_assert(le(sz, p->got_len + n, (size_t)RACE_STREAM), "pair %d: more bytes than sent", p->id);
    memcpy(p->got + p->got_len, data, n);
    p->got_len += n;
}

/* Waits for a random moment, then cancels t: before it starts, with its
 * receive queued but not yet submitted, in the kernel, or racing the data. */
static bool race_cancel_at_random(struct race_pair *p, eddy_task *t)
{
    uint64_t r = next_random(&p->rng);
    switch (r % 6) {
    case 0:
        break;
    case 1:
    case 2:
        for (unsigned i = 0; i < 1 + (r >> 8) % 4; i++)
            (void)eddy_yield();
        break;
    case 3:
        (void)eddy_sleep((int64_t)((r >> 8) % 50000));
        break;
    default:
        return false; /* left to complete */
    }
    eddy_task_cancel(t);
    return true;
}

static intptr_t race_reader(void *arg)
{
    struct race_pair *p = arg;
    bool eof = false;
    for (int op = 0; op < RACE_OPS_PER_PAIR; op++) {
        struct race_call c = {.s = p->reader};
        eddy_task *t = eddy_spawn(NULL, race_recv, &c);
        cr_assert(ne(ptr, t, NULL));
        bool cancelled = race_cancel_at_random(p, t);
        intptr_t n = -1;
        int err = eddy_task_join(t, &n);
        if (c.damaged) p->damaged = true;
        if (!c.started) {
            cr_assert(eq(int, err, -ECANCELED));
            p->unstarted++;
        } else if (err == -ECANCELED) {
            cr_assert(cancelled, "pair %d: a receive nobody cancelled was cancelled", p->id);
            p->cancelled_in_flight++;
        } else {
            cr_assert(eq(int, err, 0), "pair %d: %s", p->id, eddy_strerror(err));
            cr_assert(ge(int, (int)n, 0), "pair %d: %s", p->id, eddy_strerror((int)n));
            race_take(p, c.out, (size_t)n);
            eof = eof || n == 0;
            p->eofs += n == 0;
            p->completed++;
            if (cancelled && n > 0) p->won_after_cancel++;
        }
    }
    while (!eof) { /* what is left of the stream */
        uint8_t buf[RACE_CHUNK];
        ssize_t n = eddy_recv(p->reader, buf, sizeof buf);
        cr_assert(ge(int, (int)n, 0), "pair %d: %s", p->id, eddy_strerror((int)n));
        race_take(p, buf, (size_t)n);
        eof = n == 0;
    }
    return 0;
}

static intptr_t race_writer(void *arg)
{
    struct race_pair *p = arg;
    uint64_t rng = p->rng ^ 0x9E3779B97F4A7C15ULL;
    uint8_t buf[128];
    size_t k = 0;
    while (k < RACE_STREAM) {
        uint64_t r = next_random(&rng);
        size_t n = 1 + r % 16;
        if (n > RACE_STREAM - k) n = RACE_STREAM - k;
        for (size_t i = 0; i < n; i++)
            buf[i] = stream_byte(p->id, k + i);
        cr_assert(eq(sz, (size_t)eddy_send(p->writer, buf, n), n));
        k += n;
        if ((r >> 16) % 8 != 0) /* the reader often finds nothing and waits */
            (void)eddy_sleep((int64_t)((r >> 20) % 1000000));
        else
            (void)eddy_yield();
    }
    return eddy_sock_shutdown(p->writer, EDDY_SHUT_WR);
}

static intptr_t race_main(void *arg)
{
    struct race_pair *pairs = arg;
    eddy_task *tasks[2 * RACE_PAIRS];
    for (int i = 0; i < RACE_PAIRS; i++) {
        tcp_pair(&pairs[i].writer, &pairs[i].reader);
        tasks[2 * i] = eddy_spawn(NULL, race_reader, &pairs[i]);
        tasks[2 * i + 1] = eddy_spawn(NULL, race_writer, &pairs[i]);
    }
    for (int i = 0; i < 2 * RACE_PAIRS; i++) {
        intptr_t result = -1;
        cr_assert(eq(int, eddy_task_join(tasks[i], &result), 0));
        cr_assert(eq(int, (int)result, 0));
    }
    for (int i = 0; i < RACE_PAIRS; i++) {
        cr_assert(eq(int, eddy_sock_close(pairs[i].reader), 0));
        cr_assert(eq(int, eddy_sock_close(pairs[i].writer), 0));
    }
    return 0;
}

/* recv_mode: 0 plain receives, 1 multishot, 2 multishot with a tiny ring. */
static void check_race(int recv_mode)
{
    uint64_t seed = (uint64_t)wall_ns() | 1;
    cr_log_info("seed %llu", (unsigned long long)seed);
    struct race_pair *pairs = calloc(RACE_PAIRS, sizeof *pairs);
    cr_assert(ne(ptr, pairs, NULL));
    for (int i = 0; i < RACE_PAIRS; i++) {
        pairs[i].id = i;
        pairs[i].rng = seed + (uint64_t)i * 0x9E3779B97F4A7C15ULL;
        if (!pairs[i].rng) pairs[i].rng = 1;
    }
    eddy_loop *loop = recv_loop(recv_mode > 0, recv_mode == 2 ? "8x64" : NULL);
    cr_assert(eq(int, (int)run_on(loop, race_main, pairs), 0));
    eddy_loop_free(loop);

    unsigned unstarted = 0, in_flight = 0, completed = 0, won = 0, eofs = 0;
    for (int i = 0; i < RACE_PAIRS; i++) {
        struct race_pair *p = &pairs[i];
        cr_assert(not(p->damaged), "pair %d: a buffer was written beyond its result", i);
        cr_assert(eq(sz, p->got_len, (size_t)RACE_STREAM), "pair %d: bytes lost", i);
        for (size_t k = 0; k < RACE_STREAM; k++)
            cr_assert(eq(u8, p->got[k], stream_byte(i, k)), "pair %d: byte %zu", i, k);
        unstarted += p->unstarted;
        in_flight += p->cancelled_in_flight;
        completed += p->completed;
        won += p->won_after_cancel;
        eofs += p->eofs;
    }
    cr_assert(eq(u32, unstarted + in_flight + completed, RACE_PAIRS * RACE_OPS_PER_PAIR));
    cr_assert(ge(u32, in_flight, 1), "no receive was cancelled in flight (seed %llu)",
              (unsigned long long)seed);
    cr_log_info("cancelled before starting %u, in flight %u; completed %u (%u with data despite a "
                "cancel, %u at the end of the stream)",
                unstarted, in_flight, completed, won, eofs);
    free(pairs);
}

Test(uring_cancel, ten_thousand_receives_cancelled_at_random, .timeout = TEST_TIMEOUT)
{
    check_race(0);
}

Test(uring_cancel, ten_thousand_receives_cancelled_at_random_multishot, .timeout = TEST_TIMEOUT)
{
    check_race(1);
}

Test(uring_cancel, ten_thousand_receives_cancelled_at_random_tiny_ring, .timeout = TEST_TIMEOUT)
{
    check_race(2);
}

/* ---- file ops go through the ring -------------------------------------------------- */

/* A gate that holds the pool's only worker. */
static struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool open, entered;
} gate = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, false};

static intptr_t gate_hold(void *unused)
{
    pthread_mutex_lock(&gate.lock);
    gate.entered = true;
    while (!gate.open)
        pthread_cond_wait(&gate.cond, &gate.lock);
    pthread_mutex_unlock(&gate.lock);
    return 7;
}

static bool gate_entered(void)
{
    pthread_mutex_lock(&gate.lock);
    bool entered = gate.entered;
    pthread_mutex_unlock(&gate.lock);
    return entered;
}

static void gate_open(void)
{
    pthread_mutex_lock(&gate.lock);
    gate.open = true;
    pthread_cond_broadcast(&gate.cond);
    pthread_mutex_unlock(&gate.lock);
}

static intptr_t hold_worker(void *unused)
{
    intptr_t v = 0;
    int err = eddy_to_thread(gate_hold, NULL, &v);
    return err < 0 ? err : v;
}

/* This process's threads, not counting the kernel's io_uring workers (which
 * are named iou-wrk-* / iou-sqp-*). */
static int user_threads(void)
{
    DIR *d = opendir("/proc/self/task");
    cr_assert(ne(ptr, d, NULL));
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char path[64], comm[32] = "";
        snprintf(path, sizeof path, "/proc/self/task/%s/comm", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f) continue; /* ended meanwhile */
        if (!fgets(comm, sizeof comm, f)) comm[0] = '\0';
        fclose(f);
        if (strncmp(comm, "iou-", 4) != 0) n++;
    }
    closedir(d);
    return n;
}

static void expect_same_stat(const struct stat *a, const struct stat *b)
{
    cr_expect(eq(u64, (uint64_t)a->st_dev, (uint64_t)b->st_dev));
    cr_expect(eq(u64, (uint64_t)a->st_ino, (uint64_t)b->st_ino));
    cr_expect(eq(u32, (uint32_t)a->st_mode, (uint32_t)b->st_mode));
    cr_expect(eq(u64, (uint64_t)a->st_nlink, (uint64_t)b->st_nlink));
    cr_expect(eq(u32, (uint32_t)a->st_uid, (uint32_t)b->st_uid));
    cr_expect(eq(u32, (uint32_t)a->st_gid, (uint32_t)b->st_gid));
    cr_expect(eq(u64, (uint64_t)a->st_rdev, (uint64_t)b->st_rdev));
    cr_expect(eq(i64, (int64_t)a->st_size, (int64_t)b->st_size));
    cr_expect(eq(i64, (int64_t)a->st_blksize, (int64_t)b->st_blksize));
    cr_expect(eq(i64, (int64_t)a->st_blocks, (int64_t)b->st_blocks));
    cr_expect(eq(i64, (int64_t)a->st_mtim.tv_sec, (int64_t)b->st_mtim.tv_sec));
    cr_expect(eq(i64, (int64_t)a->st_mtim.tv_nsec, (int64_t)b->st_mtim.tv_nsec));
    cr_expect(eq(i64, (int64_t)a->st_ctim.tv_nsec, (int64_t)b->st_ctim.tv_nsec));
    cr_expect(eq(i64, (int64_t)a->st_atim.tv_nsec, (int64_t)b->st_atim.tv_nsec));
}

/* Every file op, each checked against the system's own answer. */
static intptr_t file_ops(void *dir_arg)
{
    const char *dir = dir_arg;
    char path[128], moved[128], sub[128], link[128];
    snprintf(path, sizeof path, "%s/data", dir);
    snprintf(moved, sizeof moved, "%s/moved", dir);
    snprintf(sub, sizeof sub, "%s/sub", dir);
    snprintf(link, sizeof link, "%s/link", dir);

    eddy_file *f;
    cr_assert(eq(int, eddy_file_open(&f, path, O_CREAT | O_EXCL | O_RDWR, 0640), 0));
    int flags = fcntl((int)eddy_file_fd(f), F_GETFD);
    cr_assert(flags & FD_CLOEXEC, "O_CLOEXEC is added");
    cr_assert(eq(sz, (size_t)eddy_file_write(f, "hello, ring", 11, -1), 11));
    cr_assert(eq(sz, (size_t)eddy_file_write(f, "!", 1, -1), 1), "offset -1: the position");
    cr_assert(eq(int, eddy_file_sync(f), 0));
    char buf[32] = {0};
    cr_assert(eq(sz, (size_t)eddy_file_read(f, buf, sizeof buf, 7), 5));
    cr_assert(eq(int, memcmp(buf, "ring!", 5), 0));
    cr_assert(eq(sz, (size_t)eddy_file_read(f, buf, sizeof buf, 100), 0), "past the end");

    struct stat ours, theirs;
    cr_assert(eq(int, eddy_file_stat(f, &ours), 0));
    cr_assert(eq(int, fstat((int)eddy_file_fd(f), &theirs), 0));
    expect_same_stat(&ours, &theirs);
    cr_assert(eq(i64, (int64_t)ours.st_size, 12));

    cr_assert(eq(int, symlink(path, link), 0));
    cr_assert(eq(int, eddy_fs_stat(link, &ours), 0), "stat follows symlinks");
    cr_assert(eq(int, stat(link, &theirs), 0));
    expect_same_stat(&ours, &theirs);
    cr_assert(eq(u32, (uint32_t)(ours.st_mode & S_IFMT), (uint32_t)S_IFREG));
    cr_assert(eq(int, eddy_fs_stat(dir, &ours), 0));
    cr_assert(eq(int, stat(dir, &theirs), 0));
    expect_same_stat(&ours, &theirs);

    cr_assert(eq(int, eddy_file_close(f), 0));
    cr_assert(eq(int, eddy_fs_rename(path, moved), 0));
    cr_assert(eq(int, eddy_fs_stat(path, &ours), -ENOENT));
    cr_assert(eq(int, eddy_fs_mkdir(sub, 0700), 0));
    cr_assert(eq(int, eddy_fs_mkdir(sub, 0700), -EEXIST));
    cr_assert(eq(int, eddy_fs_stat(sub, &ours), 0));
    cr_assert(eq(u32, (uint32_t)(ours.st_mode & S_IFMT), (uint32_t)S_IFDIR));
    cr_assert(eq(int, eddy_fs_rmdir(sub), 0));
    cr_assert(eq(int, eddy_file_open(&f, path, O_RDONLY, 0), -ENOENT));
    cr_assert(eq(int, eddy_fs_unlink(link), 0));
    cr_assert(eq(int, eddy_fs_unlink(moved), 0));
    cr_assert(eq(int, eddy_fs_unlink(moved), -ENOENT));
    return 0;
}

static intptr_t ring_files_main(void *dir)
{
    eddy_task *holder = eddy_spawn(NULL, hold_worker, NULL);
    for (int i = 0; i < 5000 && !gate_entered(); i++)
        cr_assert(eq(int, eddy_sleep(NS_PER_MS), 0));
    cr_assert(gate_entered(), "the pool's worker never started");
    int threads = user_threads();

    /* Were any of these in the pool, they would queue behind the held worker. */
    eddy_task *ops = eddy_spawn(NULL, file_ops, dir);
    int err = eddy_await_timeout(eddy_task_future(ops), 10 * NS_PER_SEC, NULL);
    cr_assert(eq(int, err, 0), "file ops: %s (waiting for the thread pool?)", eddy_strerror(err));
    cr_assert(eq(int, eddy_task_join(ops, NULL), 0));
    cr_assert(eq(int, user_threads(), threads), "no thread was started for the file ops");

    gate_open();
    intptr_t v = 0;
    cr_assert(eq(int, eddy_task_join(holder, &v), 0));
    cr_assert(eq(int, (int)v, 7));
    return 0;
}

Test(uring_files, file_ops_go_through_the_ring_not_the_pool, .timeout = TEST_TIMEOUT)
{
    require_uring();
    setenv("EDDY_THREADPOOL_SIZE", "1", 1);
    char dir[64];
    snprintf(dir, sizeof dir, "/tmp/eddy-uring-XXXXXX");
    cr_assert(ne(ptr, mkdtemp(dir), NULL));
    eddy_loop *loop = uring_loop(0);
    cr_assert(eq(int, (int)run_on(loop, ring_files_main, dir), 0));
    eddy_loop_free(loop);
    cr_assert(eq(int, rmdir(dir), 0));
}

/* A STAT op keeps its statx buffer's address where other ops keep flags:
 * completions and cancels of stats whose buffers sit at any address must not
 * be taken for a zero-copy send, a stream's receive or a waiting accept. */
static intptr_t stat_once(void *arg)
{
    struct stat st;
    return eddy_fs_stat(arg, &st);
}

static intptr_t stats_cancelled_main(void *path)
{
    enum { ROUNDS = 16, TASKS = 32 };
    int done = 0, cancelled = 0;
    for (int round = 0; round < ROUNDS; round++) {
        eddy_task *t[TASKS];
        for (int i = 0; i < TASKS; i++)
            cr_assert(ne(ptr, t[i] = eddy_spawn(NULL, stat_once, path), NULL));
        cr_assert(eq(int, eddy_yield(), 0)); /* each submits its stat and waits */
        for (int i = 1; i < TASKS; i += 2)
            (void)eddy_task_cancel(t[i]);
        for (int i = 0; i < TASKS; i++) {
            intptr_t r = -1;
            int err = eddy_task_join(t[i], &r);
            if (err == -ECANCELED) {
                cancelled++;
                continue;
            }
            cr_assert(eq(int, err, 0));
            cr_assert(eq(int, (int)r, 0));
            done++;
        }
    }
    cr_assert(ge(int, done, ROUNDS *TASKS / 2));
    cr_assert(eq(int, done + cancelled, ROUNDS * TASKS));
    return 0;
}

Test(uring_files, stats_completed_and_cancelled_at_any_buffer_address, .timeout = TEST_TIMEOUT)
{
    require_uring();
    eddy_loop *loop = uring_loop(0);
    cr_assert(eq(int, (int)run_on(loop, stats_cancelled_main, "/"), 0));
    eddy_loop_free(loop);
}

/* A FIFO read is withdrawn from the kernel, not waited for. */
struct fifo_read {
    eddy_file *f;
    char buf[16];
};

static intptr_t fifo_read(void *arg)
{
    struct fifo_read *r = arg;
    return eddy_file_read(r->f, r->buf, sizeof r->buf, -1);
}

static intptr_t cancel_fifo_main(void *path)
{
    cr_assert(eq(int, mkfifo(path, 0600), 0));
    struct fifo_read r;
    memset(r.buf, SENTINEL, sizeof r.buf);
    cr_assert(eq(int, eddy_file_open(&r.f, path, O_RDWR, 0), 0));
    eddy_task *t = eddy_spawn(NULL, fifo_read, &r);
    cr_assert(eq(int, eddy_sleep(10 * NS_PER_MS), 0));
    cr_assert(not(eddy_future_done(eddy_task_future(t))));
    cr_assert(eddy_task_cancel(t));
    cr_assert(eq(int, eddy_task_join(t, NULL), -ECANCELED));
    for (size_t i = 0; i < sizeof r.buf; i++)
        cr_assert(eq(u8, (uint8_t)r.buf[i], SENTINEL), "the cancelled read wrote");
    /* The FIFO still works, and nothing was consumed by the cancelled read. */
    cr_assert(eq(sz, (size_t)write((int)eddy_file_fd(r.f), "late", 4), 4));
    char buf[8];
    cr_assert(eq(sz, (size_t)eddy_file_read(r.f, buf, sizeof buf, -1), 4));
    cr_assert(eq(int, memcmp(buf, "late", 4), 0));
    cr_assert(eq(int, eddy_file_close(r.f), 0));
    cr_assert(eq(int, eddy_fs_unlink(path), 0));
    return 0;
}

Test(uring_files, cancelled_fifo_read_is_withdrawn, .timeout = TEST_TIMEOUT)
{
    require_uring();
    char path[64];
    snprintf(path, sizeof path, "/tmp/eddy-uring-fifo-%d", (int)getpid());
    eddy_loop *loop = uring_loop(0);
    cr_assert(eq(int, (int)run_on(loop, cancel_fifo_main, path), 0));
    eddy_loop_free(loop);
}

/* ---- threads ---------------------------------------------------------------------- */

#define WAKE_THREADS 4
#define WAKES_EACH   5000

struct wake_count {
    eddy_loop *loop;
    atomic_int ran;
    atomic_int failed; /* calls refused (asserting is for the test's own thread) */
};

static void count_wake(void *arg)
{
    struct wake_count *w = arg;
    if (atomic_fetch_add(&w->ran, 1) + 1 == WAKE_THREADS * WAKES_EACH) eddy_loop_stop(w->loop);
}

static void *wake_thread(void *arg)
{
    struct wake_count *w = arg;
    for (int i = 0; i < WAKES_EACH; i++) {
        if (eddy_call_soon_threadsafe(w->loop, count_wake, w) < 0) atomic_fetch_add(&w->failed, 1);
        if (i % 64 == 0) usleep(50);
    }
    return NULL;
}

static intptr_t wait_forever(void *arg)
{
    eddy_future *f = eddy_future_new(NULL);
    int err = eddy_await(f, NULL); /* ends when the loop is freed */
    eddy_future_unref(f);
    return err;
}

/* The loop sleeps in the ring with nothing else to do; wakes from other
 * threads each get it out, and the eventfd read is rearmed every time. */
Test(uring_threads, wakes_from_other_threads, .timeout = TEST_TIMEOUT)
{
    require_uring();
    struct wake_count w = {.loop = uring_loop(0)};
    atomic_init(&w.ran, 0);
    atomic_init(&w.failed, 0);
    eddy_task *t = eddy_spawn(w.loop, wait_forever, NULL);
    pthread_t threads[WAKE_THREADS];
    for (int i = 0; i < WAKE_THREADS; i++)
        cr_assert(eq(int, pthread_create(&threads[i], NULL, wake_thread, &w), 0));
    cr_assert(eq(int, eddy_loop_run(w.loop), 0));
    for (int i = 0; i < WAKE_THREADS; i++)
        pthread_join(threads[i], NULL);
    cr_assert(eq(int, atomic_load(&w.failed), 0));
    cr_assert(eq(int, atomic_load(&w.ran), WAKE_THREADS *WAKES_EACH));
    eddy_task_detach(t);
    eddy_loop_free(w.loop);
}

static void *run_loop_thread(void *loop)
{
    return (void *)(intptr_t)run_on(loop, echo_once, NULL);
}

/* The ring is set up disabled and bound to the first thread that runs it. */
Test(uring_threads, loop_created_here_runs_there, .timeout = TEST_TIMEOUT)
{
    require_uring();
    eddy_loop *loop = uring_loop(0);
    pthread_t thread;
    cr_assert(eq(int, pthread_create(&thread, NULL, run_loop_thread, loop), 0));
    void *result = (void *)1;
    pthread_join(thread, &result);
    cr_assert(eq(ptr, result, NULL));
    eddy_loop_free(loop);
}

/* Some seccomp profiles allow io_uring_setup and deny io_uring_enter: the
 * backend probes enter at init, so the default loop still falls back. */
Test(uring_fallback, enter_refused_falls_back_to_epoll, .timeout = TEST_TIMEOUT)
{
    check_fallback(EPERM, true);
}

/* ---- direct descriptors ------------------------------------------------------- */

/* The descriptors this process has open. */
static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    cr_assert(ne(ptr, (void *)d, NULL));
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.') n++;
    closedir(d);
    return n - 1; /* the directory's own */
}

/* Loops made from now on: direct descriptors on or off, multishot or
 * single-shot accepts. */
static void direct_mode(bool on, bool multishot)
{
    const char *off =
        on ? (multishot ? NULL : "multishot_accept")
           : (multishot ? "direct_descriptors" : "direct_descriptors,multishot_accept");
    if (off)
        setenv("EDDY_CAPS_DISABLE", off, 1);
    else
        unsetenv("EDDY_CAPS_DISABLE");
}

/* Skips unless loop has direct descriptors (Linux 6.8+) when they are on. */
static void require_direct(bool on)
{
    direct_mode(true, true);
    eddy_loop *loop = uring_loop(0);
    eddy_support s = eddy_loop_supports(loop, EDDY_CAP_DIRECT_DESCRIPTORS);
    eddy_loop_free(loop);
    if (on && s != EDDY_NATIVE) cr_skip_test("no direct descriptors here (Linux 6.8+)");
}

static void recv_exactly(eddy_sock *s, const char *want)
{
    char buf[64] = {0};
    size_t len = strlen(want), got = 0;
    while (got < len) {
        ssize_t n = eddy_recv(s, buf + got, len - got);
        cr_assert(gt(long, (long)n, 0L), "recv: %s", eddy_strerror((int)n));
        got += (size_t)n;
    }
    cr_assert(eq(str, buf, (char *)want));
}

static int sockopt(intptr_t fd, int level, int name)
{
    int v = -1;
    socklen_t len = sizeof v;
    cr_assert(eq(int, getsockopt((int)fd, level, name, &v, &len), 0), "getsockopt: %s",
              strerror(errno));
    return v;
}

static void note_readable(eddy_watch *w, unsigned revents, void *arg)
{
    *(unsigned *)arg |= revents;
    (void)eddy_watch_stop(w);
}

struct other_thread_fd {
    eddy_sock *s;
    intptr_t fd;
};

static void *fd_from_other_thread(void *arg)
{
    struct other_thread_fd *o = arg;
    o->fd = eddy_sock_fd(o->s);
    return NULL;
}

/* A TLS server's stand-in: reads the first record's header (a handshake,
 * TLS 1.x) and hangs up. */
static intptr_t client_hello_then_close(void *arg)
{
    eddy_sock *peer = arg;
    unsigned char head[5];
    for (size_t got = 0; got < sizeof head;) {
        ssize_t n = eddy_recv(peer, head + got, sizeof head - got);
        cr_assert(gt(long, (long)n, 0L));
        got += (size_t)n;
    }
    cr_assert(eq(u8, head[0], 22));
    cr_assert(eq(u8, head[1], 3));
    return eddy_sock_close(peer);
}

/* Everything that needs a real descriptor works on an accepted socket:
 * eddy_sock_fd (installed on first need, once; -EPERM from another thread
 * before that), getsockopt and setsockopt through it, eddy_sock_nodelay,
 * eddy_sock_port, a watch, a stream, sendfile, and TLS. The accepted
 * socket takes a descriptor of the process only when it is not direct. */
static intptr_t direct_uses_main(void *arg)
{
    bool on = *(bool *)arg;
    cr_assert(eq(int, eddy_loop_supports(eddy_loop_current(), EDDY_CAP_DIRECT_DESCRIPTORS),
                 on ? EDDY_NATIVE : EDDY_NONE));
    eddy_sock *listener, *a, *b;
    cr_assert(eq(int, eddy_tcp_listen(&listener, "127.0.0.1", 0, 0), 0));
    int port = eddy_sock_port(listener);
    cr_assert(eq(int, eddy_tcp_connect(&a, "127.0.0.1", (uint16_t)port), 0));
    int before = count_fds();
    cr_assert(eq(int, eddy_accept(listener, &b), 0));
    cr_assert(eq(int, count_fds(), before + (on ? 0 : 1)), "direct: no descriptor of the process");
    cr_assert(eq(sz, (size_t)eddy_send(a, "ping", 4), 4));
    recv_exactly(b, "ping");
    cr_assert(eq(sz, (size_t)eddy_send(b, "pong", 4), 4));
    recv_exactly(a, "pong");

    if (on) { /* nothing installed yet: another thread cannot have one made */
        struct other_thread_fd o = {.s = b};
        pthread_t thread;
        cr_assert(eq(int, pthread_create(&thread, NULL, fd_from_other_thread, &o), 0));
        cr_assert(eq(int, pthread_join(thread, NULL), 0));
        cr_assert(eq(i64, (int64_t)o.fd, (int64_t)-EPERM));
    }
    intptr_t fd = eddy_sock_fd(b);
    cr_assert(ge(i64, (int64_t)fd, 0), "eddy_sock_fd: %s", eddy_strerror((int)fd));
    cr_assert(eq(i64, (int64_t)eddy_sock_fd(b), (int64_t)fd), "installed once");
    cr_assert(eq(int, count_fds(), before + 1));
    cr_assert(eq(int, fcntl((int)fd, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC));
    cr_assert(eq(int, sockopt(fd, SOL_SOCKET, SO_TYPE), SOCK_STREAM));
    cr_assert(eq(int, sockopt(fd, IPPROTO_TCP, TCP_NODELAY), 1), "TCP_NODELAY, as every socket");
    cr_assert(eq(int, eddy_sock_nodelay(b, false), 0));
    cr_assert(eq(int, sockopt(fd, IPPROTO_TCP, TCP_NODELAY), 0));
    cr_assert(eq(int, eddy_sock_nodelay(b, true), 0));
    cr_assert(eq(int, eddy_sock_port(b), port));
    int one = 1;
    cr_assert(eq(int, setsockopt((int)fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one), 0));
    cr_assert(eq(int, sockopt(fd, SOL_SOCKET, SO_KEEPALIVE), 1));

    unsigned revents = 0;
    eddy_watch *w;
    cr_assert(eq(int, eddy_watch_start(&w, NULL, fd, EDDY_READABLE, note_readable, &revents), 0));
    cr_assert(eq(sz, (size_t)eddy_send(a, "x", 1), 1));
    for (int i = 0; i < 1000 && !revents; i++)
        eddy_yield();
    cr_assert(eq(u32, revents, EDDY_READABLE), "a watch on the installed descriptor");
    recv_exactly(b, "x");

    char path[] = "/tmp/eddy-direct-XXXXXX";
    int tmp = mkstemp(path);
    cr_assert(ge(int, tmp, 0));
    close(tmp);
    eddy_file *f;
    cr_assert(eq(int, eddy_file_open(&f, path, O_RDWR, 0), 0));
    cr_assert(eq(sz, (size_t)eddy_file_write(f, "xxfilexx", 8, 0), 8));
    eddy_stream *st;
    cr_assert(eq(int, eddy_stream_open(&st, b, NULL), 0));
    cr_assert(eq(int, eddy_stream_write(st, "line\n", 5), 0));
    cr_assert(eq(int, eddy_stream_drain(st), 0));
    recv_exactly(a, "line\n");
    cr_assert(eq(sz, (size_t)eddy_stream_sendfile(st, f, 2, 4), 4));
    recv_exactly(a, "file");
    cr_assert(eq(sz, (size_t)eddy_send(a, "back\n", 5), 5));
    char line[16] = {0};
    cr_assert(eq(sz, (size_t)eddy_stream_readline(st, line, sizeof line), 5));
    cr_assert(eq(str, line, "back\n"));
    cr_assert(eq(int, eddy_file_close(f), 0));
    cr_assert(eq(int, unlink(path), 0));
    cr_assert(eq(int, eddy_stream_close(st), 0));
    cr_assert(eq(int, count_fds(), before), "closing closed the installed descriptor too");
    char c;
    cr_assert(eq(sz, (size_t)eddy_recv(a, &c, 1), 0), "the peer sees the end");
    cr_assert(eq(int, eddy_sock_close(a), 0));

    if (eddy_loop_supports(eddy_loop_current(), EDDY_CAP_TLS) != EDDY_NONE) {
        /* TLS over an accepted socket: its ClientHello reaches the peer */
        cr_assert(eq(int, eddy_tcp_connect(&a, "127.0.0.1", (uint16_t)port), 0));
        cr_assert(eq(int, eddy_accept(listener, &b), 0));
        cr_assert(eq(int, eddy_stream_open(&st, b, NULL), 0));
        eddy_tls_options o = EDDY_TLS_OPTIONS_INIT(.server_name = "localhost");
        eddy_task *peer = eddy_spawn(NULL, client_hello_then_close, a);
        cr_assert(eq(int, eddy_stream_start_tls(st, &o), -ECONNRESET));
        cr_assert(eq(int, eddy_task_join(peer, NULL), 0));
        (void)eddy_stream_close(st);
    }
    cr_assert(eq(int, eddy_sock_close(listener), 0));
    return 0;
}

static void check_direct_uses(bool on, bool multishot)
{
    require_uring();
    require_direct(on);
    direct_mode(on, multishot);
    eddy_loop *loop = uring_loop(0);
    cr_assert(eq(int, (int)run_on(loop, direct_uses_main, &on), 0));
    eddy_loop_free(loop);
    unsetenv("EDDY_CAPS_DISABLE");
}

Test(uring_direct, real_descriptor_uses_work_on_accepted_sockets, .timeout = TEST_TIMEOUT)
{
    check_direct_uses(true, true);
}

Test(uring_direct, real_descriptor_uses_work_single_shot, .timeout = TEST_TIMEOUT)
{
    check_direct_uses(true, false);
}

Test(uring_direct, real_descriptor_uses_work_when_disabled, .timeout = TEST_TIMEOUT)
{
    check_direct_uses(false, true);
}

#define TABLE       8
#define TABLE_CONNS 10

/* A file table of TABLE slots: accepts take slots while the table has
 * room (a multishot only while more than half of it is free: it could
 * accept a whole listen queue at once), then plain descriptors; every
 * connection works, and a slot freed by a close serves the next one. */
static intptr_t full_table_main(void *arg)
{
    int want_direct = *(int *)arg;
    eddy_sock *listener, *clients[TABLE_CONNS + 1], *conns[TABLE_CONNS];
    cr_assert(eq(int, eddy_tcp_listen(&listener, "127.0.0.1", 0, 0), 0));
    int port = eddy_sock_port(listener);
    int direct = 0, first_direct = -1;
    for (int i = 0; i < TABLE_CONNS; i++) {
        cr_assert(eq(int, eddy_tcp_connect(&clients[i], "127.0.0.1", (uint16_t)port), 0));
        int before = count_fds();
        cr_assert(eq(int, eddy_accept(listener, &conns[i]), 0));
        if (count_fds() == before) {
            direct++;
            if (first_direct < 0) first_direct = i;
        }
    }
    cr_assert(eq(int, direct, want_direct), "direct while the table has room, then plain");
    for (int i = 0; i < TABLE_CONNS; i++) {
        char msg[8];
        snprintf(msg, sizeof msg, "c%d", i);
        cr_assert(eq(sz, (size_t)eddy_send(clients[i], msg, strlen(msg)), strlen(msg)));
        recv_exactly(conns[i], msg);
        cr_assert(eq(sz, (size_t)eddy_send(conns[i], msg, strlen(msg)), strlen(msg)));
        recv_exactly(clients[i], msg);
    }
    cr_assert(eq(int, eddy_sock_close(conns[first_direct]), 0)); /* its slot frees */
    cr_assert(eq(int, eddy_tcp_connect(&clients[TABLE_CONNS], "127.0.0.1", (uint16_t)port), 0));
    int before = count_fds();
    cr_assert(eq(int, eddy_accept(listener, &conns[first_direct]), 0));
    cr_assert(eq(int, count_fds(), before), "direct again once a slot is free");
    cr_assert(eq(sz, (size_t)eddy_send(conns[first_direct], "new", 3), 3));
    recv_exactly(clients[TABLE_CONNS], "new");
    for (int i = 0; i < TABLE_CONNS; i++)
        cr_assert(eq(int, eddy_sock_close(conns[i]), 0));
    for (int i = 0; i <= TABLE_CONNS; i++)
        cr_assert(eq(int, eddy_sock_close(clients[i]), 0));
    cr_assert(eq(int, eddy_sock_close(listener), 0));
    return 0;
}

static void check_full_table(bool multishot)
{
    require_uring();
    require_direct(true);
    /* the whole table for accepts: no part of it for files */
    setenv("EDDY_CAPS_DISABLE",
           multishot ? "registered_files" : "registered_files,multishot_accept", 1);
    char slots[16];
    snprintf(slots, sizeof slots, "%d", TABLE);
    setenv("EDDY_URING_DIRECT_FILES", slots, 1);
    eddy_loop *loop = uring_loop(0);
    unsetenv("EDDY_URING_DIRECT_FILES");
    int want_direct = multishot ? TABLE / 2 : TABLE;
    cr_assert(eq(int, (int)run_on(loop, full_table_main, &want_direct), 0));
    eddy_loop_free(loop);
    unsetenv("EDDY_CAPS_DISABLE");
}

Test(uring_direct, full_table_falls_back_to_plain_descriptors, .timeout = TEST_TIMEOUT)
{
    check_full_table(true);
}

Test(uring_direct, full_table_falls_back_single_shot, .timeout = TEST_TIMEOUT)
{
    check_full_table(false);
}

/* A listener eddy did not make, without TCP_NODELAY: its connections would
 * not inherit it, so they come as plain descriptors that eddy sets it on. */
static intptr_t adopted_listener_main(void *unused)
{
    (void)unused;
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert(ge(int, lfd, 0));
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert(eq(int, bind(lfd, (struct sockaddr *)&sin, sizeof sin), 0));
    cr_assert(eq(int, listen(lfd, 8), 0));
    eddy_sock *listener, *client, *conn;
    cr_assert(eq(int, eddy_sock_open(&listener, lfd), 0));
    cr_assert(
        eq(int, eddy_tcp_connect(&client, "127.0.0.1", (uint16_t)eddy_sock_port(listener)), 0));
    int before = count_fds();
    cr_assert(eq(int, eddy_accept(listener, &conn), 0));
    cr_assert(eq(int, count_fds(), before + 1), "a plain descriptor");
    cr_assert(eq(int, sockopt(eddy_sock_fd(conn), IPPROTO_TCP, TCP_NODELAY), 1));
    cr_assert(eq(int, eddy_sock_close(conn), 0));
    cr_assert(eq(int, eddy_sock_close(client), 0));
    cr_assert(eq(int, eddy_sock_close(listener), 0));
    return 0;
}

Test(uring_direct, adopted_listener_without_nodelay_accepts_plain, .timeout = TEST_TIMEOUT)
{
    require_uring();
    require_direct(true);
    unsetenv("EDDY_CAPS_DISABLE");
    eddy_loop *loop = uring_loop(0);
    cr_assert(eq(int, (int)run_on(loop, adopted_listener_main, NULL), 0));
    eddy_loop_free(loop);
}

/* ---- registered files ---------------------------------------------------------- */

/* A file read often is read through its registered second name: with its
 * descriptor closed behind eddy's back, reads still reach the file; the
 * first reads, and every read with registered files off, go by the
 * descriptor. Closing the file gives the slot back. */
static intptr_t registered_file_main(void *arg)
{
    bool on = *(bool *)arg;
    cr_assert(eq(int, eddy_loop_supports(eddy_loop_current(), EDDY_CAP_REGISTERED_FILES),
                 on ? EDDY_NATIVE : EDDY_NONE));
    char path[] = "/tmp/eddy-regfile-XXXXXX";
    int tmp = mkstemp(path);
    cr_assert(ge(int, tmp, 0));
    cr_assert(eq(sz, (size_t)write(tmp, "0123456789", 10), 10));
    close(tmp);
    for (int round = 0; round < 3; round++) { /* the slot is given back and taken again */
        eddy_file *f;
        cr_assert(eq(int, eddy_file_open(&f, path, O_RDONLY, 0), 0));
        int fd = (int)eddy_file_fd(f);
        char c;
        for (int i = 0; i < 16; i++) {
            cr_assert(eq(sz, (size_t)eddy_file_read(f, &c, 1, i % 10), 1));
            cr_assert(eq(chr, c, (char)('0' + i % 10)));
        }
        int keep = dup(fd);
        cr_assert(ge(int, keep, 0));
        cr_assert(eq(int, close(fd), 0));
        ssize_t n = eddy_file_read(f, &c, 1, 3);
        cr_assert(eq(int, dup3(keep, fd, O_CLOEXEC), fd));
        close(keep);
        if (on) {
            cr_assert(eq(sz, (size_t)n, 1), "read through the registered file: %s",
                      eddy_strerror((int)n));
            cr_assert(eq(chr, c, '3'));
        } else {
            cr_assert(eq(i64, (int64_t)n, (int64_t)-EBADF), "read through the descriptor");
        }
        cr_assert(eq(int, eddy_file_close(f), 0));
    }
    cr_assert(eq(int, unlink(path), 0));
    return 0;
}

static void check_registered_file(bool on)
{
    require_uring();
    if (on)
        unsetenv("EDDY_CAPS_DISABLE");
    else
        setenv("EDDY_CAPS_DISABLE", "registered_files", 1);
    eddy_loop *loop = uring_loop(0);
    if (on && eddy_loop_supports(loop, EDDY_CAP_REGISTERED_FILES) != EDDY_NATIVE) {
        eddy_loop_free(loop);
        cr_skip_test("no registered files here (Linux 5.13+)");
    }
    cr_assert(eq(int, (int)run_on(loop, registered_file_main, &on), 0));
    eddy_loop_free(loop);
    unsetenv("EDDY_CAPS_DISABLE");
}

Test(uring_files, file_read_often_goes_through_its_registered_slot, .timeout = TEST_TIMEOUT)
{
    check_registered_file(true);
}

Test(uring_files, registered_files_off_reads_by_descriptor, .timeout = TEST_TIMEOUT)
{
    check_registered_file(false);
}

/* ---- registered buffers ------------------------------------------------------- */

#define FIXED_LEN (16u << 10)

struct fixed_run {
    const char *path;
    bool on, direct;
};

static bool all_zero(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i]) return false;
    return true;
}

/* A read into a registered region goes to the pages pinned when it was
 * registered (READ_FIXED), not to whatever is mapped at its address now: so
 * once a fresh page is mapped over the region, a fixed read leaves what the
 * caller sees untouched, and a plain one (a buffer across the region's end,
 * a region unregistered, or registered buffers off) fills it. */
static intptr_t fixed_main(void *arg)
{
    struct fixed_run *r = arg;
    char *pattern = NULL;
    cr_assert(eq(int, posix_memalign((void **)&pattern, 4096, FIXED_LEN), 0));
    for (size_t i = 0; i < FIXED_LEN; i++)
        pattern[i] = (char)(1 + i % 251);
    int fd = open(r->path, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0600);
    cr_assert(ge(int, fd, 0));
    cr_assert(eq(sz, (size_t)pwrite(fd, pattern, FIXED_LEN, 0), FIXED_LEN));
    cr_assert(eq(int, fsync(fd), 0));
    close(fd);
    /* Twice the region: the part after it takes reads across its end. */
    char *map =
        mmap(NULL, 2 * FIXED_LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    cr_assert(ne(ptr, map, MAP_FAILED));
    memset(map, 0, 2 * FIXED_LEN);
    eddy_file *f;
    int flags = O_RDWR | (r->direct ? O_DIRECT : 0);
    cr_assert(eq(int, eddy_file_open(&f, r->path, flags, 0), 0));
    int err = eddy_buffer_register(NULL, map, FIXED_LEN);
    cr_assert(eq(int, err, r->on ? 0 : -ENOTSUP), "register: %s", eddy_strerror(err));
    /* Correct through the region: in, and out again elsewhere in the file. */
    cr_assert(eq(sz, (size_t)eddy_file_read(f, map, 8192, 4096), 8192));
    cr_assert(eq(int, memcmp(map, pattern + 4096, 8192), 0), "read into the region");
    cr_assert(eq(sz, (size_t)eddy_file_write(f, map, 4096, 12288), 4096));
    char *back = NULL;
    cr_assert(eq(int, posix_memalign((void **)&back, 4096, 4096), 0));
    cr_assert(eq(sz, (size_t)eddy_file_read(f, back, 4096, 12288), 4096));
    cr_assert(eq(int, memcmp(back, pattern + 4096, 4096), 0), "written from the region");
    cr_assert(eq(sz, (size_t)eddy_file_write(f, pattern + 12288, 4096, 12288), 4096));
    /* A fresh page over the region: only a plain read shows here. */
    cr_assert(eq(ptr,
                 mmap(map, 2 * FIXED_LEN, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0),
                 map));
    cr_assert(eq(sz, (size_t)eddy_file_read(f, map, 4096, 0), 4096));
    if (r->on)
        cr_assert(all_zero(map, 4096), "the read went to the registered pages (READ_FIXED)");
    else
        cr_assert(eq(int, memcmp(map, pattern, 4096), 0), "registered buffers off: a plain read");
    cr_assert(eq(sz, (size_t)eddy_file_read(f, map + FIXED_LEN - 4096, 8192, 0), 8192));
    cr_assert(eq(int, memcmp(map + FIXED_LEN - 4096, pattern, 8192), 0), "across the end: plain");
    if (r->on) cr_assert(eq(int, eddy_buffer_unregister(NULL, map), 0));
    memset(map, 0, 4096);
    cr_assert(eq(sz, (size_t)eddy_file_read(f, map, 4096, 4096), 4096));
    cr_assert(eq(int, memcmp(map, pattern + 4096, 4096), 0), "unregistered: plain");
    cr_assert(eq(int, eddy_file_close(f), 0));
    munmap(map, 2 * FIXED_LEN);
    free(back);
    free(pattern);
    return 0;
}

static void check_fixed(bool on, bool direct)
{
    require_uring();
    char path[256];
    /* O_DIRECT: the build directory first (/tmp may be tmpfs, which refuses it). */
    snprintf(path, sizeof path, "%s/eddy-fixed-%d", direct ? "." : "/tmp", (int)getpid());
    if (direct) {
        int fd = open(path, O_CREAT | O_RDWR | O_DIRECT | O_CLOEXEC, 0600);
        if (fd < 0) {
            snprintf(path, sizeof path, "/var/tmp/eddy-fixed-%d", (int)getpid());
            fd = open(path, O_CREAT | O_RDWR | O_DIRECT | O_CLOEXEC, 0600);
        }
        if (fd < 0) cr_skip_test("no file system here takes O_DIRECT: %s", strerror(errno));
        close(fd);
    }
    if (on)
        unsetenv("EDDY_CAPS_DISABLE");
    else
        setenv("EDDY_CAPS_DISABLE", "registered_buffers", 1);
    eddy_loop *loop = uring_loop(0);
    if (on && eddy_loop_supports(loop, EDDY_CAP_REGISTERED_BUFFERS) != EDDY_NATIVE) {
        eddy_loop_free(loop);
        unlink(path);
        cr_skip_test("no registered buffers here (Linux 5.19+)");
    }
    struct fixed_run r = {path, on, direct};
    intptr_t result = run_on(loop, fixed_main, &r);
    eddy_loop_free(loop);
    unsetenv("EDDY_CAPS_DISABLE");
    unlink(path);
    cr_assert(eq(int, (int)result, 0));
}

Test(uring_files, registered_buffer_reads_go_to_the_pinned_pages, .timeout = TEST_TIMEOUT)
{
    check_fixed(true, false);
}

Test(uring_files, registered_buffer_reads_with_o_direct, .timeout = TEST_TIMEOUT)
{
    check_fixed(true, true);
}

Test(uring_files, registered_buffers_off_read_plain, .timeout = TEST_TIMEOUT)
{
    check_fixed(false, false);
    check_fixed(false, true);
}

/* An epoll loop has no buffer table: register says so, and nothing changes. */
Test(uring_files, epoll_has_no_registered_buffers)
{
    eddy_loop_options opts = {.backend = "epoll"};
    eddy_loop *loop;
    if (eddy_loop_new(&loop, &opts) < 0) cr_skip_test("no epoll loop here");
    char buf[64];
    cr_assert(eq(int, eddy_buffer_register(loop, buf, sizeof buf), -ENOTSUP));
    cr_assert(eq(int, eddy_buffer_unregister(loop, buf), -ENOENT));
    cr_assert(eq(int, (int)eddy_loop_supports(loop, EDDY_CAP_REGISTERED_BUFFERS), (int)EDDY_NONE));
    eddy_loop_free(loop);
}

/* ---- file batches ------------------------------------------------------------- */

#define BATCH_READERS 8
#define BATCH_POSTS   20

struct batch_run {
    eddy_loop *loop;
    eddy_file *f;
    atomic_int served;
    atomic_bool stop;
    int64_t reads;
};

static void batch_served(void *arg)
{
    atomic_fetch_add(&((struct batch_run *)arg)->served, 1);
}

static void *batch_poster(void *arg)
{
    struct batch_run *r = arg;
    for (int i = 0; i < BATCH_POSTS; i++) {
        if (eddy_call_soon_threadsafe(r->loop, batch_served, r) < 0) break;
        usleep(2000);
    }
    return NULL;
}

static intptr_t batch_reader(void *arg)
{
    struct batch_run *r = arg;
    void *buf;
    cr_assert(eq(int, posix_memalign(&buf, 4096, 4096), 0));
    for (int64_t i = 0; !atomic_load(&r->stop); i++) {
        ssize_t n = eddy_file_read(r->f, buf, 4096, (i * 7919 % 256) * 4096);
        if (n != 4096) {
            free(buf);
            return n < 0 ? n : -EIO;
        }
        r->reads++;
    }
    free(buf);
    return 0;
}

/* A loop whose pending ops are all file reads sleeps until the whole batch
 * is done (1 ms at most): wakes from another thread and the loop's timers
 * still come through while readers keep it busy, and every read completes. */
static intptr_t batch_main(void *arg)
{
    struct batch_run *r = arg;
    r->loop = eddy_loop_current();
    eddy_task *readers[BATCH_READERS];
    for (int i = 0; i < BATCH_READERS; i++)
        readers[i] = eddy_spawn(NULL, batch_reader, r);
    pthread_t thread;
    cr_assert(eq(int, pthread_create(&thread, NULL, batch_poster, r), 0));
    for (int i = 0; i < 200 && atomic_load(&r->served) < BATCH_POSTS; i++)
        cr_assert(eq(int, eddy_sleep(5 * 1000 * 1000), 0));
    cr_assert(eq(int, pthread_join(thread, NULL), 0));
    atomic_store(&r->stop, true);
    for (int i = 0; i < BATCH_READERS; i++) {
        intptr_t res = -1;
        cr_assert(eq(int, eddy_task_join(readers[i], &res), 0));
        cr_assert(eq(int, (int)res, 0), "reader %d: %s", i, eddy_strerror((int)res));
    }
    cr_assert(eq(int, atomic_load(&r->served), BATCH_POSTS), "every wake served");
    cr_assert(gt(i64, r->reads, (int64_t)0));
    return 0;
}

struct batch_open {
    struct batch_run *r;
    const char *path;
    int flags;
};

static intptr_t batch_open_and_run(void *arg)
{
    struct batch_open *o = arg;
    cr_assert(eq(int, eddy_file_open(&o->r->f, o->path, o->flags, 0), 0));
    intptr_t res = batch_main(o->r);
    cr_assert(eq(int, eddy_file_close(o->r->f), 0));
    return res;
}

Test(uring_files, wakes_and_timers_pass_while_only_file_reads_are_pending, .timeout = TEST_TIMEOUT)
{
    require_uring();
    /* O_DIRECT where the file system has it, so that reads wait on the disk */
    char path[64];
    snprintf(path, sizeof path, "/var/tmp/eddy-uring-batch-%d", (int)getpid());
    int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0600);
    cr_assert(ge(int, fd, 0));
    static char block[4096];
    memset(block, 'b', sizeof block);
    for (int i = 0; i < 256; i++)
        cr_assert(eq(sz, (size_t)write(fd, block, sizeof block), sizeof block));
    fsync(fd);
    close(fd);
    eddy_loop *loop = uring_loop(0);
    struct batch_run r = {0};
    int flags = O_RDONLY | O_DIRECT;
    fd = open(path, flags | O_CLOEXEC);
    if (fd < 0) flags = O_RDONLY; /* no O_DIRECT here: cached reads */
    if (fd >= 0) close(fd);
    cr_assert(
        eq(int, (int)run_on(loop, batch_open_and_run, &(struct batch_open){&r, path, flags}), 0));
    eddy_loop_free(loop);
    unlink(path);
}
