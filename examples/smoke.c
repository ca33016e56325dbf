/* SPDX-License-Identifier: MIT */
/* A smoke test of a build, in one program that needs nothing but eddy: the
 * loop runs, timers fire in order, tasks switch, another thread wakes the
 * loop, TCP echoes over 127.0.0.1, UDP datagrams arrive, a file is written
 * and read at offsets, and a cancelled receive returns -ECANCELED. It prints
 * TAP and exits non-zero on a failure. With --emfile (under a low `ulimit
 * -n`), it checks that accept backs off when descriptors run out. Written to check the Windows DLL
 * under Wine (docs/platforms.md), it runs the same everywhere. */
#include <eddy.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#ifdef _WIN32
#include <winsock2.h>
#include <ws2tcpip.h>
#include <windows.h>
#else
#include <netinet/in.h>
#include <sys/socket.h>
#include <time.h>
#endif

#define MS (1000 * 1000LL)

static int checks, failures;

static void check(bool ok, const char *what, long long detail)
{
    checks++;
    if (!ok) failures++;
    printf("%s %d - %s", ok ? "ok" : "not ok", checks, what);
    if (!ok) printf(" (got %lld)", detail);
    printf("\n");
    fflush(stdout);
}

static void sleep_ms(int ms)
{
#ifdef _WIN32
    Sleep((DWORD)ms);
#else
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
#endif
}

/* ---- timers ---------------------------------------------------------------- */

static char fired[8];
static size_t fired_count;

static void on_timer(void *arg)
{
    fired[fired_count++] = *(const char *)arg;
}

static void test_timers(void)
{
    eddy_loop *loop;
    int err = eddy_loop_new(&loop, NULL);
    check(err == 0, "a loop is created", err);
    if (err) return;
    printf("# backend: %s\n", eddy_loop_backend(loop));
    static const char a = 'a', b = 'b', c = 'c';
    int64_t start = eddy_now(loop);
    err = eddy_call_later(loop, 30 * MS, on_timer, (void *)&c, NULL);
    err |= eddy_call_later(loop, 10 * MS, on_timer, (void *)&a, NULL);
    err |= eddy_call_later(loop, 20 * MS, on_timer, (void *)&b, NULL);
    check(err == 0, "timers are armed", err);
    err = eddy_loop_run(loop);
    int64_t elapsed = eddy_now(loop) - start;
    check(err == 0, "the loop runs until its timers are done", err);
    check(fired_count == 3 && memcmp(fired, "abc", 3) == 0, "timers fire in deadline order",
          (long long)fired_count);
    check(elapsed >= 30 * MS, "the last timer fires no earlier than 30 ms", elapsed / MS);
    eddy_loop_free(loop);
}

/* ---- tasks ------------------------------------------------------------------- */

static char trace[16];
static size_t trace_len;

static intptr_t ping(void *arg)
{
    for (int i = 0; i < 3; i++) {
        trace[trace_len++] = *(const char *)arg;
        if (eddy_yield() < 0) return -1;
    }
    return 7;
}

static intptr_t test_tasks(void)
{
    static const char p = 'p', q = 'q';
    eddy_task *t1 = eddy_spawn(NULL, ping, (void *)&p);
    eddy_task *t2 = eddy_spawn(NULL, ping, (void *)&q);
    intptr_t r1 = 0, r2 = 0;
    int e1 = eddy_task_join(t1, &r1), e2 = eddy_task_join(t2, &r2);
    check(e1 == 0 && e2 == 0 && r1 == 7 && r2 == 7, "two tasks run to their results", e1 ? e1 : e2);
    trace[trace_len] = '\0';
    check(strcmp(trace, "pqpqpq") == 0, "tasks take turns at each yield", (long long)trace_len);
    int err = eddy_sleep(5 * MS);
    check(err == 0, "a task sleeps", err);
    return 0;
}

/* ---- another thread ------------------------------------------------------------ */

struct wake {
    eddy_loop *loop;
    eddy_future *done;
};

static void on_wake(void *arg)
{
    struct wake *w = arg;
    (void)eddy_future_set_result(w->done, 42);
}

/* On a pool thread: wakes the loop, then stays busy well past the wait. */
static intptr_t poke_loop(void *arg)
{
    struct wake *w = arg;
    int err = eddy_call_soon_threadsafe(w->loop, on_wake, w);
    sleep_ms(300);
    return err;
}

static intptr_t run_poke(void *arg)
{
    intptr_t result = -1;
    int err = eddy_to_thread(poke_loop, arg, &result);
    return err < 0 ? err : result;
}

static intptr_t test_threadsafe(void)
{
    struct wake w = {eddy_loop_current(), eddy_future_new(NULL)};
    eddy_task *poker = eddy_spawn(NULL, run_poke, &w);
    intptr_t value = 0;
    int err = eddy_await_timeout(w.done, 200 * MS, &value);
    check(err == 0 && value == 42, "a call from another thread wakes the loop", err);
    intptr_t result = -1;
    err = eddy_task_join(poker, &result);
    check(err == 0 && result == 0, "eddy_to_thread returns the thread's result",
          err ? err : result);
    eddy_future_unref(w.done);
    return 0;
}

/* ---- TCP ------------------------------------------------------------------------ */

#define ECHO_BYTES (256 * 1024)

static intptr_t echo_server(void *arg)
{
    eddy_sock *listener = arg, *conn;
    int err = eddy_accept(listener, &conn);
    if (err < 0) return err;
    static char buf[16384];
    ssize_t n;
    while ((n = eddy_recv(conn, buf, sizeof buf)) > 0)
        if ((n = eddy_send(conn, buf, (size_t)n)) < 0) break;
    (void)eddy_sock_close(conn);
    return n < 0 ? n : 0;
}

static intptr_t echo_sender(void *arg)
{
    eddy_sock *s = ((void **)arg)[0];
    const char *data = ((void **)arg)[1];
    ssize_t n = eddy_send(s, data, ECHO_BYTES);
    if (n < 0) return n;
    return eddy_sock_shutdown(s, EDDY_SHUT_WR);
}

static intptr_t test_cancel(eddy_sock *listener, int port);
static intptr_t idle_recv(void *arg);

static intptr_t test_tcp(void)
{
    eddy_sock *listener, *client;
    int err = eddy_tcp_listen(&listener, "127.0.0.1", 0, 16);
    check(err == 0, "a TCP listener on 127.0.0.1", err);
    if (err) return err;
    int port = eddy_sock_port(listener);
    check(port > 0, "the listener has a port", port);
    eddy_task *server = eddy_spawn(NULL, echo_server, listener);
    err = eddy_tcp_connect(&client, "127.0.0.1", (uint16_t)port);
    check(err == 0, "a TCP connection to it", err);
    if (err) return err;
    char *out = malloc(ECHO_BYTES), *in = malloc(ECHO_BYTES);
    for (size_t i = 0; i < ECHO_BYTES; i++)
        out[i] = (char)(i * 7 + (i >> 9));
    void *args[2] = {client, out};
    eddy_task *sender = eddy_spawn(NULL, echo_sender, args);
    size_t got = 0;
    ssize_t n = 1;
    while (got < ECHO_BYTES && (n = eddy_recv(client, in + got, ECHO_BYTES - got)) > 0)
        got += (size_t)n;
    check(got == ECHO_BYTES && memcmp(in, out, ECHO_BYTES) == 0, "256 KiB echo back intact",
          n < 0 ? n : (long long)got);
    n = eddy_recv(client, in, 16);
    check(n == 0, "the peer's close reads as 0", n);
    intptr_t r = -1;
    err = eddy_task_join(sender, &r);
    check(err == 0 && r == 0, "the sender sent everything and shut down", err ? err : r);
    err = eddy_task_join(server, &r);
    check(err == 0 && r == 0, "the server ended cleanly", err ? err : r);
    free(out);
    free(in);

    /* Cancelling a receive that waits. */
    (void)eddy_sock_close(client);
    return test_cancel(listener, port);
}

static intptr_t idle_recv(void *arg)
{
    char buf[8];
    return eddy_recv(arg, buf, sizeof buf);
}

/* A receive on a connection whose peer sends nothing, cancelled. */
static intptr_t test_cancel(eddy_sock *listener, int port)
{
    eddy_sock *idle;
    eddy_task *server = eddy_spawn(NULL, echo_server, listener);
    int err = eddy_tcp_connect(&idle, "127.0.0.1", (uint16_t)port);
    check(err == 0, "a second connection", err);
    if (err) return err;
    eddy_task *receiver = eddy_spawn(NULL, idle_recv, idle);
    (void)eddy_sleep(20 * MS);
    check(eddy_task_cancel(receiver), "a task waiting in recv is cancelled", 0);
    intptr_t r = 0;
    err = eddy_task_join(receiver, &r);
    check(err == -ECANCELED, "its recv returns -ECANCELED", err ? err : r);
    err = eddy_sock_close(idle);
    check(err == 0, "the socket closes", err);
    err = eddy_task_join(server, &r);
    check(err == 0 && r == 0, "its server sees the close and ends", err ? err : r);
    (void)eddy_sock_close(listener);
    return 0;
}

/* ---- UDP ------------------------------------------------------------------------ */

static intptr_t test_udp(void)
{
    eddy_sock *a, *b;
    int err = eddy_udp_bind(&a, "127.0.0.1", 0);
    err = err ? err : eddy_udp_bind(&b, "127.0.0.1", 0);
    check(err == 0, "two UDP sockets", err);
    if (err) return err;
    struct sockaddr_storage to, from;
    err = eddy_addr_parse(&to, "127.0.0.1", (uint16_t)eddy_sock_port(b));
    check(err == 0, "an address is parsed", err);
    ssize_t n = eddy_sendto(a, "datagram", 8, (struct sockaddr *)&to);
    check(n == 8, "a datagram is sent", n);
    char buf[32];
    n = eddy_recvfrom(b, buf, sizeof buf, &from);
    check(n == 8 && memcmp(buf, "datagram", 8) == 0, "and received", n);
    check(from.ss_family == AF_INET &&
              ntohs(((struct sockaddr_in *)&from)->sin_port) == eddy_sock_port(a),
          "from its sender", from.ss_family);
    (void)eddy_sock_close(a);
    (void)eddy_sock_close(b);
    return 0;
}

/* ---- files ---------------------------------------------------------------------- */

static intptr_t test_files(void)
{
    const char *path = "eddy-smoke.tmp";
    eddy_file *f;
    int err = eddy_file_open(&f, path, O_CREAT | O_RDWR | O_TRUNC, 0644);
    check(err == 0, "a file is created", err);
    if (err) return err;
    ssize_t n = eddy_file_write(f, "hello", 5, 0);
    check(n == 5, "written at offset 0", n);
    n = eddy_file_write(f, "world", 5, 4096);
    check(n == 5, "written at offset 4096", n);
    char buf[16] = {0};
    n = eddy_file_read(f, buf, 5, 4096);
    check(n == 5 && memcmp(buf, "world", 5) == 0, "read back at 4096", n);
    n = eddy_file_read(f, buf, 5, 0);
    check(n == 5 && memcmp(buf, "hello", 5) == 0, "read back at 0", n);
    n = eddy_file_read(f, buf, sizeof buf, 8192);
    check(n == 0, "a read past the end returns 0", n);
    n = eddy_file_read(f, buf, 3, -1);
    ssize_t n2 = eddy_file_read(f, buf + 3, 2, -1);
    check(n == 3 && n2 == 2 && memcmp(buf, "hello", 5) == 0, "reads at -1 follow the position", n);
    err = eddy_file_sync(f);
    check(err == 0, "the file syncs", err);
    struct stat st;
    err = eddy_file_stat(f, &st);
    check(err == 0 && st.st_size == 4101, "its size is 4101", err ? err : (long long)st.st_size);
    err = eddy_file_close(f);
    check(err == 0, "the file closes", err);
    err = eddy_fs_unlink(path);
    check(err == 0, "and is removed", err);
    err = eddy_file_open(&f, path, O_RDONLY, 0);
    check(err == -ENOENT, "opening it again: -ENOENT", err);
    return 0;
}

/* ---- errors and paths ------------------------------------------------------------ */

static intptr_t test_edges(void)
{
    eddy_sock *s, *t;
    int err = eddy_tcp_listen(&s, "127.0.0.1", 0, 0);
    check(err == 0, "a listener for the error checks", err);
    if (err) return err;
    int port = eddy_sock_port(s);
    err = eddy_tcp_listen(&t, "127.0.0.1", (uint16_t)port, 0);
    check(err == -EADDRINUSE, "a second listener on its port: -EADDRINUSE", err);
    (void)eddy_sock_close(s);
    err = eddy_tcp_connect(&t, "127.0.0.1", (uint16_t)port);
    check(err == -ECONNREFUSED, "a connection to a closed port: -ECONNREFUSED", err);
    err = eddy_tcp_listen(&s, NULL, 0, 0);
    check(err == 0, "a listener on every address", err);
    if (err == 0) {
        err = eddy_tcp_connect(&t, "localhost", (uint16_t)eddy_sock_port(s));
        check(err == 0, "a connection to it by name (localhost)", err);
        if (err == 0) (void)eddy_sock_close(t);
        (void)eddy_sock_close(s);
    }
    err = eddy_unix_listen(&s, "eddy-smoke.sock", 0);
    check(err == 0 || err == -ENOTSUP, "Unix sockets: there, or -ENOTSUP", err);
    if (err == 0) {
        (void)eddy_sock_close(s);
        err = eddy_fs_unlink("eddy-smoke.sock");
        check(err == 0, "its file is removed", err);
    }

    err = eddy_fs_mkdir("eddy-smoke.dir", 0755);
    check(err == 0, "a directory is made", err);
    err = eddy_fs_mkdir("eddy-smoke.dir", 0755);
    check(err == -EEXIST, "again: -EEXIST", err);
    struct stat st;
    err = eddy_fs_stat("eddy-smoke.dir", &st);
    check(err == 0 && S_ISDIR(st.st_mode), "stat says it is a directory", err);
    eddy_file *f;
    err = eddy_file_open(&f, "eddy-smoke.dir/a", O_CREAT | O_WRONLY | O_EXCL, 0644);
    check(err == 0, "a file is created in it", err);
    if (err == 0) {
        ssize_t n = eddy_file_write(f, "abc", 3, -1);
        n += eddy_file_write(f, "def", 3, -1);
        check(n == 6, "two writes at the current position", n);
        (void)eddy_file_close(f);
    }
    err = eddy_file_open(&f, "eddy-smoke.dir/a", O_CREAT | O_WRONLY | O_EXCL, 0644);
    check(err == -EEXIST, "O_EXCL on an existing file: -EEXIST", err);
    err = eddy_fs_rename("eddy-smoke.dir/a", "eddy-smoke.dir/b");
    check(err == 0, "the file is renamed", err);
    err = eddy_fs_stat("eddy-smoke.dir/b", &st);
    check(err == 0 && S_ISREG(st.st_mode) && st.st_size == 6, "stat of the new name: 6 bytes",
          err ? err : (long long)st.st_size);
    err = eddy_fs_rmdir("eddy-smoke.dir");
    check(err == -ENOTEMPTY || err == -EEXIST, "a directory with a file: not removed", err);
    err = eddy_fs_unlink("eddy-smoke.dir");
    check(err == -EISDIR || err == -EPERM, "unlink of a directory: -EISDIR", err);
    err = eddy_file_open(&f, "eddy-smoke.dir/b", O_RDONLY, 0);
    if (err == 0) {
        ssize_t n = eddy_file_write(f, "x", 1, 0);
        check(n == -EBADF, "a write to a read-only file: -EBADF", n);
        (void)eddy_file_close(f);
    }
    err = eddy_fs_unlink("eddy-smoke.dir/b");
    err = err ? err : eddy_fs_rmdir("eddy-smoke.dir");
    check(err == 0, "the file and the directory are removed", err);
    err = eddy_fs_stat("eddy-smoke.dir", &st);
    check(err == -ENOENT, "stat of the removed directory: -ENOENT", err);
    return 0;
}

/* ---- what the peer does ---------------------------------------------------------- */

struct pair {
    eddy_sock *listener, *client, *server;
};

static int pair_open(struct pair *p)
{
    int err = eddy_tcp_listen(&p->listener, "127.0.0.1", 0, 0);
    if (err == 0)
        err = eddy_tcp_connect(&p->client, "127.0.0.1", (uint16_t)eddy_sock_port(p->listener));
    if (err == 0) err = eddy_accept(p->listener, &p->server);
    return err;
}

static void pair_close(struct pair *p)
{
    if (p->client) (void)eddy_sock_close(p->client);
    if (p->server) (void)eddy_sock_close(p->server);
    (void)eddy_sock_close(p->listener);
}

static intptr_t do_accept(void *arg)
{
    eddy_sock *conn;
    int err = eddy_accept(arg, &conn);
    if (err == 0) (void)eddy_sock_close(conn);
    return err;
}

static void close_in_callback(void *arg)
{
    int err = eddy_sock_close(arg);
    check(err == 0, "a socket closes from a callback", err);
}

static intptr_t test_peers(void)
{
    struct pair p = {0};
    int err = pair_open(&p);
    check(err == 0, "a connected pair", err);
    if (err) return err;
    /* A reset reaches a waiting recv. */
    struct linger lin = {1, 0};
    err = setsockopt(
#ifdef _WIN32
        (SOCKET)eddy_sock_fd(p.client), SOL_SOCKET, SO_LINGER, (const char *)&lin, sizeof lin);
#else
        (int)eddy_sock_fd(p.client), SOL_SOCKET, SO_LINGER, &lin, sizeof lin);
#endif
    check(err == 0, "SO_LINGER 0 on the client", err);
    eddy_task *reader = eddy_spawn(NULL, idle_recv, p.server);
    (void)eddy_sleep(10 * MS);
    (void)eddy_sock_close(p.client);
    p.client = NULL;
    intptr_t r = 0;
    err = eddy_task_join(reader, &r);
    check(err == -ECONNRESET, "a reset peer: -ECONNRESET", err ? err : r);
    pair_close(&p);

    /* Writes to a peer that closed end in -EPIPE. */
    err = pair_open(&p);
    if (err) return err;
    (void)eddy_sock_close(p.server);
    p.server = NULL;
    char buf[8];
    ssize_t n = eddy_recv(p.client, buf, sizeof buf);
    check(n == 0, "the peer's FIN", n);
    for (int i = 0; i < 50 && n >= 0; i++) {
        n = eddy_send(p.client, "x", 1);
        if (n >= 0) (void)eddy_sleep(5 * MS);
    }
    check(n == -EPIPE, "sending to a closed peer: -EPIPE", n);

    /* Cancelling an accept; the listener accepts again after. */
    eddy_task *acceptor = eddy_spawn(NULL, do_accept, p.listener);
    (void)eddy_sleep(10 * MS);
    eddy_task_cancel(acceptor);
    err = eddy_task_join(acceptor, &r);
    check(err == -ECANCELED, "a cancelled accept: -ECANCELED", err ? err : r);
    acceptor = eddy_spawn(NULL, do_accept, p.listener);
    eddy_sock *again;
    err = eddy_tcp_connect(&again, "127.0.0.1", (uint16_t)eddy_sock_port(p.listener));
    int err2 = eddy_task_join(acceptor, &r);
    check(err == 0 && err2 == 0 && r == 0, "then accepts again", err ? err : err2);
    if (err == 0) (void)eddy_sock_close(again);
    pair_close(&p);

    /* Closing from a callback cancels a recv pending in a task. */
    err = pair_open(&p);
    if (err) return err;
    reader = eddy_spawn(NULL, idle_recv, p.server);
    (void)eddy_sleep(10 * MS);
    err = eddy_call_soon(eddy_loop_current(), close_in_callback, p.server);
    p.server = NULL;
    err = err ? err : eddy_task_join(reader, &r);
    check(err == -ECANCELED, "the recv it cut short: -ECANCELED", err ? err : r);
    pair_close(&p);

    eddy_sock *s;
    err = eddy_tcp_connect(&s, "host.invalid", 80);
    check(err == -ENXIO || err == -EAGAIN, "an unknown host: -ENXIO (or -EAGAIN)", err);
    return 0;
}

static intptr_t smoke_main(void *arg)
{
    (void)arg;
    test_tasks();
    test_threadsafe();
    test_tcp();
    test_udp();
    test_files();
    test_edges();
    test_peers();
    return 0;
}

/* ---- out of descriptors (run under `ulimit -n 300`) -------------------------------- */

#define HOLD_MAX 4096

struct holder {
    eddy_sock *listener;
    eddy_sock *held[HOLD_MAX];
    int count;
};

/* Accepts and keeps every connection; returns only on an error. */
static intptr_t hold_all(void *arg)
{
    struct holder *h = arg;
    while (h->count < HOLD_MAX) {
        int err = eddy_accept(h->listener, &h->held[h->count]);
        if (err < 0) return err;
        h->count++;
    }
    return 0;
}

/* Connects until the process runs out of descriptors: the listener's
 * accept must then back off and wait (as eddy_accept promises), not fail. */
static intptr_t emfile_main(void *arg)
{
    static struct holder h;
    static eddy_sock *clients[HOLD_MAX];
    int err = eddy_tcp_listen(&h.listener, "127.0.0.1", 0, 0);
    check(err == 0, "a listener", err);
    if (err) return err;
    eddy_task *server = eddy_spawn(NULL, hold_all, &h);
    int n = 0;
    while (n < HOLD_MAX && (err = eddy_tcp_connect(&clients[n], "127.0.0.1",
                                                   (uint16_t)eddy_sock_port(h.listener))) == 0)
        n++;
    check(err == -EMFILE || err == -ENFILE || err == -ENOBUFS,
          "connecting until descriptors run out: -EMFILE", err);
    printf("# %d connections made, %d accepted\n", n, h.count);
    intptr_t r = 0;
    err = eddy_await_timeout(eddy_task_future(server), 300 * MS, &r);
    check(err == -ETIMEDOUT, "the accept loop backs off instead of failing", err ? err : r);
    (void)eddy_task_join(server, &r);
    for (int i = 0; i < n; i++)
        (void)eddy_sock_close(clients[i]);
    for (int i = 0; i < h.count; i++)
        (void)eddy_sock_close(h.held[i]);
    (void)eddy_sock_close(h.listener);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--emfile") == 0) {
        intptr_t result = -1;
        int err = eddy_run(emfile_main, NULL, &result);
        check(err == 0 && result == 0, "eddy_run returns the main task's result", err);
        printf("1..%d\n", checks);
        return failures ? 1 : 0;
    }
    test_timers();
    intptr_t result = -1;
    int err = eddy_run(smoke_main, NULL, &result);
    check(err == 0 && result == 0, "eddy_run returns the main task's result", err);
    printf("1..%d\n", checks);
    return failures ? 1 : 0;
}
