/* SPDX-License-Identifier: MIT */
/* examples/http-hello: its parser on its own, and the server run in-process
 * on an ephemeral port against a raw TCP client:
 * a simple GET, keep-alive, pipelining, requests split over several writes,
 * bodies, HTTP/1.0, the error answers (400, 431, 501, 505) which close, and
 * the header and idle deadlines, slowloris at a low descriptor limit included. */
#define HTTP_HELLO_NO_MAIN
#include "../examples/http-hello.c"

#include "helpers.h"

#ifndef _WIN32
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#endif

/* ---- the parser --------------------------------------------------------- */

static int parse(const char *head, struct http_req *req)
{
    size_t scan = 0, n = strlen(head);
    size_t end = http_head_end(head, n, &scan);
    cr_assert(eq(sz, end, n), "head end at %zu of %zu in %s", end, n, head);
    return http_parse_head(head, n, req);
}

Test(http, parser, .timeout = TEST_TIMEOUT)
{
    struct http_req r;
    cr_expect(eq(int, parse("GET / HTTP/1.1\r\nHost: a\r\n\r\n", &r), 0));
    cr_expect(eq(int, r.minor, 1));
    cr_expect(r.keep_alive);
    cr_expect(eq(u64, r.content_length, 0));
    cr_expect(eq(int,
                 parse("POST /x?y=1 HTTP/1.1\r\nHost: a\r\nContent-Length:  42 \r\n"
                       "Connection: Upgrade, CLOSE\r\n\r\n",
                       &r),
                 0));
    cr_expect(eq(u64, r.content_length, 42));
    cr_expect(not(r.keep_alive));
    cr_expect(eq(int, parse("GET / HTTP/1.0\r\n\r\n", &r), 0));
    cr_expect(not(r.keep_alive));
    cr_expect(eq(int, parse("GET / HTTP/1.0\r\nconnection: Keep-Alive\r\n\r\n", &r), 0));
    cr_expect(r.keep_alive);
    cr_expect(eq(int, parse("GET / HTTP/1.1\nHost: a\n\n", &r), 0), "bare LF line ends");
    cr_expect(not(r.head));
    cr_expect(eq(int, parse("HEAD / HTTP/1.1\r\nHost: a\r\n\r\n", &r), 0));
    cr_expect(r.head);

    const char *bad[] = {
        "GET  / HTTP/1.1\r\nHost: a\r\n\r\n",             /* two spaces */
        "GET / HTTP/1.1 \r\nHost: a\r\n\r\n",             /* trailing space */
        "G(T / HTTP/1.1\r\nHost: a\r\n\r\n",              /* not a token */
        "GET / HTTX/1.1\r\nHost: a\r\n\r\n",              /* not HTTP */
        "GET / HTTP/1.1\r\n\r\n",                         /* 1.1 without Host */
        "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",   /* two Hosts */
        "GET / HTTP/1.1\r\nHost : a\r\n\r\n",             /* space before the colon */
        "GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n",   /* obs-fold */
        "GET / HTTP/1.1\r\nHost: a\r\nX: a\001b\r\n\r\n", /* a control in a value */
        "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1x\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999999\r\n\r\n",
        "\r\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_expect(eq(int, parse(bad[i], &r), 400), "%s", bad[i]);
    cr_expect(eq(int, parse("GET / HTTP/2.0\r\nHost: a\r\n\r\n", &r), 505));
    cr_expect(eq(int, parse("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", &r),
                 501));

    /* a head fed byte by byte is found once, at its end */
    const char *h = "GET / HTTP/1.1\r\nHost: a\r\n\r\nGET";
    size_t scan = 0, found = 0;
    for (size_t n = 1; n <= strlen(h) && !found; n++)
        found = http_head_end(h, n, &scan);
    cr_expect(eq(sz, found, strlen(h) - 3));
}

/* ---- the server, in-process --------------------------------------------- */

struct step {
    const char *data; /* sent as it is; NULL ends the steps */
    int responses;    /* then wait until this many 200 bodies came in total (0: 20 ms) */
};

struct http_case {
    const char *backend;
    const struct step *steps;
    bool until_eof; /* after the steps, read until the server closes */
    char got[64 * 1024];
    size_t got_len;
    bool eof;
    int err;
};

static int count(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    return n;
}

static int receive(eddy_sock *s, struct http_case *c)
{
    if (c->got_len + 1 >= sizeof(c->got)) return -ENOBUFS;
    ssize_t n = eddy_recv(s, c->got + c->got_len, sizeof(c->got) - 1 - c->got_len);
    if (n < 0) return (int)n;
    if (n == 0) c->eof = true;
    c->got_len += (size_t)n;
    c->got[c->got_len] = 0;
    return 0;
}

static intptr_t client_main(void *arg)
{
    struct http_case *c = arg;
    eddy_sock *listener = NULL, *client = NULL;
    int err = eddy_tcp_listen(&listener, "127.0.0.1", 0, 0);
    if (err < 0) return err;
    /* static: the connections' tasks may outlive this frame */
    static struct http_server srv;
    srv = (struct http_server){listener, 10 * NS_PER_SEC, 60 * NS_PER_SEC};
    eddy_task *server = eddy_spawn(NULL, http_hello_serve, &srv);
    if (!server) return -ENOMEM;
    err = eddy_tcp_connect(&client, "127.0.0.1", (uint16_t)eddy_sock_port(listener));
    for (const struct step *s = c->steps; err == 0 && s->data; s++) {
        ssize_t n = eddy_send(client, s->data, strlen(s->data));
        if (n < 0) {
            err = (int)n;
            break;
        }
        if (s->responses == 0) {
            err = eddy_sleep(20 * NS_PER_MS);
            continue;
        }
        while (err == 0 && !c->eof && count(c->got, HELLO_BODY) < s->responses)
            err = receive(client, c);
    }
    while (err == 0 && c->until_eof && !c->eof)
        err = receive(client, c);
    if (client) eddy_sock_close(client);
    eddy_task_cancel(server);
    eddy_task_join(server, NULL);
    eddy_sock_close(listener);
    return err;
}

/* Runs the steps on a new loop (on EDDY_BACKEND's backend: tests/run-tap.sh
 * runs the suite on each), then check(c). */
static void run_case(const struct step *steps, bool until_eof, void (*check)(struct http_case *c))
{
    struct http_case *c = calloc(1, sizeof(*c));
    cr_assert(ne(ptr, c, NULL));
    c->steps = steps;
    c->until_eof = until_eof;
    eddy_loop *loop = new_loop();
    c->backend = eddy_loop_backend(loop);
    intptr_t result = 0;
    int err = run_task(loop, client_main, c, &result);
    eddy_loop_free(loop);
    cr_assert(eq(int, err, 0), "%s: %s", c->backend, eddy_strerror(err));
    cr_assert(eq(int, (int)result, 0), "%s: %s", c->backend, eddy_strerror((int)result));
    check(c);
    free(c);
}

static const char GET[] = "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
#define GET_CLOSE "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"

static void check_one_ok(struct http_case *c)
{
    cr_expect(eq(int, count(c->got, "HTTP/1.1 200 OK\r\n"), 1), "%s: %s", c->backend, c->got);
    cr_expect(not(c->eof), "%s: closed a keep-alive connection", c->backend);
    cr_expect(ne(ptr, strstr(c->got, "\r\nContent-Length: 13\r\n"), NULL), "%s", c->backend);
    cr_expect(ne(ptr, strstr(c->got, "\r\nConnection: keep-alive\r\n"), NULL), "%s", c->backend);
    const char *body = strstr(c->got, "\r\n\r\n");
    cr_expect(body && strcmp(body + 4, HELLO_BODY) == 0, "%s: %s", c->backend, c->got);
}

Test(http, simple_get, .timeout = TEST_TIMEOUT)
{
    const struct step steps[] = {{GET, 1}, {NULL, 0}};
    run_case(steps, false, check_one_ok);
}

Test(http, split_over_writes, .timeout = TEST_TIMEOUT)
{
    const struct step steps[] = {
        {"GE", 0}, {"T / HTTP/1.1\r\nHo", 0}, {"st: a\r\n\r", 0}, {"\n", 1}, {NULL, 0}};
    run_case(steps, false, check_one_ok);
}

static void check_two_ok(struct http_case *c)
{
    cr_expect(eq(int, count(c->got, "HTTP/1.1 200 OK\r\n"), 2), "%s: %s", c->backend, c->got);
    cr_expect(eq(int, count(c->got, "Connection: keep-alive"), 2), "%s", c->backend);
    cr_expect(not(c->eof), "%s: closed a keep-alive connection", c->backend);
}

Test(http, keep_alive_two_requests, .timeout = TEST_TIMEOUT)
{
    const struct step steps[] = {{GET, 1}, {GET, 2}, {NULL, 0}};
    run_case(steps, false, check_two_ok);
}

Test(http, body_discarded, .timeout = TEST_TIMEOUT)
{
    /* the body, split, must not be taken for the next request */
    const struct step steps[] = {
        {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 29\r\n\r\nGET / HTTP/1.1\r\n", 1},
        {"\r\nHost: a\r\n\r\n", 0},
        {GET, 2},
        {NULL, 0}};
    run_case(steps, false, check_two_ok);
}

static void check_pipelined(struct http_case *c)
{
    /* in order: the first keeps the connection, the second closes it */
    cr_expect(eq(int, count(c->got, "HTTP/1.1 200 OK\r\n"), 2), "%s: %s", c->backend, c->got);
    const char *ka = strstr(c->got, "Connection: keep-alive\r\n");
    const char *cl = strstr(c->got, "Connection: close\r\n");
    cr_expect(ka && cl && ka < cl, "%s: %s", c->backend, c->got);
    cr_expect(c->eof, "%s: not closed after Connection: close", c->backend);
}

Test(http, pipelined_pair_in_one_write, .timeout = TEST_TIMEOUT)
{
    static const char two[] = "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n" GET_CLOSE;
    const struct step steps[] = {{two, 2}, {NULL, 0}};
    run_case(steps, true, check_pipelined);
}

static void check_head_then_get(struct http_case *c)
{
    /* the HEAD response has the headers, Content-Length included, and no body */
    cr_expect(eq(int, count(c->got, "HTTP/1.1 200 OK\r\n"), 2), "%s: %s", c->backend, c->got);
    cr_expect(eq(int, count(c->got, HELLO_BODY), 1), "%s: %s", c->backend, c->got);
    const char *second = strstr(c->got + 1, "HTTP/1.1 200 OK");
    cr_expect(second && second > c->got && memcmp(second - 4, "\r\n\r\n", 4) == 0, "%s: %s",
              c->backend, c->got);
}

Test(http, head_has_no_body, .timeout = TEST_TIMEOUT)
{
    static const char two[] = "HEAD / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n";
    const struct step steps[] = {{two, 1}, {NULL, 0}};
    run_case(steps, false, check_head_then_get);
}

static void check_closed_after_one(struct http_case *c)
{
    cr_expect(eq(int, count(c->got, "HTTP/1.1 200 OK\r\n"), 1), "%s: %s", c->backend, c->got);
    cr_expect(ne(ptr, strstr(c->got, "Connection: close\r\n"), NULL), "%s", c->backend);
    cr_expect(c->eof, "%s: not closed", c->backend);
}

Test(http, connection_close, .timeout = TEST_TIMEOUT)
{
    /* the request after "Connection: close" is not answered */
    const struct step steps[] = {{GET_CLOSE "GET / HTTP/1.1\r\nHost: a\r\n\r\n", 1}, {NULL, 0}};
    run_case(steps, true, check_closed_after_one);
}

Test(http, http10_closes, .timeout = TEST_TIMEOUT)
{
    const struct step steps[] = {{"GET / HTTP/1.0\r\n\r\n", 1}, {NULL, 0}};
    run_case(steps, true, check_closed_after_one);
}

Test(http, http10_keep_alive, .timeout = TEST_TIMEOUT)
{
    static const char ka[] = "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n";
    const struct step steps[] = {{ka, 1}, {ka, 2}, {NULL, 0}};
    run_case(steps, false, check_two_ok);
}

static int expected_status;

static void check_error(struct http_case *c)
{
    char line[32];
    snprintf(line, sizeof(line), "HTTP/1.1 %d ", expected_status);
    cr_expect(eq(int, strncmp(c->got, line, strlen(line)), 0), "%s: %s", c->backend, c->got);
    cr_expect(ne(ptr, strstr(c->got, "Connection: close\r\n"), NULL), "%s", c->backend);
    cr_expect(c->eof, "%s: not closed after %d", c->backend, expected_status);
}

Test(http, malformed_request_line_400, .timeout = TEST_TIMEOUT)
{
    const struct step steps[] = {{"GARBAGE\r\n\r\n", 0}, {NULL, 0}};
    expected_status = 400;
    run_case(steps, true, check_error);
}

Test(http, oversized_headers_431, .timeout = TEST_TIMEOUT)
{
    /* 10 KiB of one header and no end: answered once 8 KiB are in */
    static char big[10 * 1024 + 64];
    strcpy(big, "GET / HTTP/1.1\r\nHost: a\r\nX-Big: ");
    size_t n = strlen(big);
    memset(big + n, 'a', sizeof(big) - 1 - n);
    const struct step steps[] = {{big, 0}, {NULL, 0}};
    expected_status = 431;
    run_case(steps, true, check_error);
}

Test(http, transfer_encoding_501, .timeout = TEST_TIMEOUT)
{
    const struct step steps[] = {
        {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 0},
        {NULL, 0}};
    expected_status = 501;
    run_case(steps, true, check_error);
}

static void check_ok_then_400(struct http_case *c)
{
    cr_expect(eq(int, count(c->got, "HTTP/1.1 200 OK\r\n"), 1), "%s: %s", c->backend, c->got);
    const char *ok = strstr(c->got, "HTTP/1.1 200 OK"), *bad = strstr(c->got, "HTTP/1.1 400 ");
    cr_expect(ok && bad && ok < bad, "%s: %s", c->backend, c->got);
    cr_expect(c->eof, "%s", c->backend);
}

Test(http, pipelined_good_then_bad, .timeout = TEST_TIMEOUT)
{
    const struct step steps[] = {{"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /\r\n\r\n", 0}, {NULL, 0}};
    run_case(steps, true, check_ok_then_400);
}

/* ---- deadlines ------------------------------------------------------------ */

#define SHORT_DEADLINE (300 * NS_PER_MS)

struct deadline_case {
    const char *first;    /* sent at once (NULL: nothing) */
    int keep_alive_every; /* > 0: then a GET every this many ms, ten times */
    int64_t until_eof_ns; /* how long the server took to close (-1: it did not) */
    int responses;
    int err;
};

static intptr_t deadline_main(void *arg)
{
    struct deadline_case *dc = arg;
    eddy_sock *listener = NULL, *client = NULL;
    int err = eddy_tcp_listen(&listener, "127.0.0.1", 0, 0);
    if (err < 0) return err;
    static struct http_server srv; /* the connections' tasks may outlive this frame */
    srv = (struct http_server){listener, SHORT_DEADLINE, SHORT_DEADLINE};
    eddy_task *server = eddy_spawn(NULL, http_hello_serve, &srv);
    if (!server) return -ENOMEM;
    int64_t start = loop_now();
    err = eddy_tcp_connect(&client, "127.0.0.1", (uint16_t)eddy_sock_port(listener));
    if (err == 0 && dc->first) err = (int)eddy_send(client, dc->first, strlen(dc->first));
    /* requests at intervals shorter than the idle deadline keep the
     * connection open for several deadlines in all */
    for (int i = 0; err >= 0 && i < (dc->keep_alive_every > 0 ? 10 : 0); i++) {
        char buf[1024];
        ssize_t n = eddy_recv(client, buf, sizeof(buf));
        if (n <= 0) break;
        dc->responses++;
        err = eddy_sleep(dc->keep_alive_every * NS_PER_MS);
        if (err == 0) err = (int)eddy_send(client, GET, strlen(GET));
    }
    dc->until_eof_ns = -1;
    while (err >= 0) {
        char buf[1024];
        ssize_t n = eddy_recv(client, buf, sizeof(buf));
        if (n < 0) err = (int)n;
        if (n <= 0) break;
        dc->responses++;
    }
    if (err >= 0) {
        err = 0;
        dc->until_eof_ns = loop_now() - start;
    }
    if (client) eddy_sock_close(client);
    eddy_task_cancel(server);
    eddy_task_join(server, NULL);
    eddy_sock_close(listener);
    return err;
}

static void run_deadline_case(struct deadline_case *dc)
{
    eddy_loop *loop = new_loop();
    intptr_t result = 0;
    int err = run_task(loop, deadline_main, dc, &result);
    const char *backend = eddy_loop_backend(loop);
    eddy_loop_free(loop);
    cr_assert(eq(int, err, 0), "%s: %s", backend, eddy_strerror(err));
    cr_assert(eq(int, (int)result, 0), "%s: %s", backend, eddy_strerror((int)result));
}

Test(http, header_deadline_closes_a_slow_head, .timeout = TEST_TIMEOUT)
{
    /* half a request, then nothing: closed once the header deadline passes */
    struct deadline_case dc = {.first = "GET / HTTP/1.1\r\nHost: a\r\n"};
    run_deadline_case(&dc);
    cr_expect(eq(int, dc.responses, 0));
    cr_expect(ge(i64, dc.until_eof_ns, SHORT_DEADLINE - 20 * NS_PER_MS));
    cr_expect(lt(i64, dc.until_eof_ns, SHORT_DEADLINE + 2 * NS_PER_SEC));
}

Test(http, header_deadline_for_a_silent_connection, .timeout = TEST_TIMEOUT)
{
    struct deadline_case dc = {.first = NULL};
    run_deadline_case(&dc);
    cr_expect(ge(i64, dc.until_eof_ns, SHORT_DEADLINE - 20 * NS_PER_MS));
    cr_expect(lt(i64, dc.until_eof_ns, SHORT_DEADLINE + 2 * NS_PER_SEC));
}

Test(http, idle_deadline_closes_a_kept_alive_connection, .timeout = TEST_TIMEOUT)
{
    /* one request answered, then idle: closed after the idle deadline */
    struct deadline_case dc = {.first = GET};
    run_deadline_case(&dc);
    cr_expect(eq(int, dc.responses >= 1, 1));
    cr_expect(ge(i64, dc.until_eof_ns, SHORT_DEADLINE - 20 * NS_PER_MS));
    cr_expect(lt(i64, dc.until_eof_ns, SHORT_DEADLINE + 2 * NS_PER_SEC));
}

Test(http, busy_connection_outlives_its_deadlines, .timeout = TEST_TIMEOUT)
{
    /* a request every 100 ms for over a second: each one moves the idle
     * deadline; the connection ends only once the requests stop */
    struct deadline_case dc = {.first = GET, .keep_alive_every = 100};
    run_deadline_case(&dc);
    cr_expect(ge(int, dc.responses, 11), "%d responses", dc.responses);
    cr_expect(ge(i64, dc.until_eof_ns, 1000 * NS_PER_MS));
}

#ifndef _WIN32
/* The server in a child process whose descriptor limit is FD_LIMIT: it
 * writes its port to fd, then serves until killed. */
#define FD_LIMIT     64
#define SLOW_CLIENTS 100

static intptr_t limited_server_main(void *arg)
{
    int fd = (int)(intptr_t)arg;
    eddy_sock *listener;
    int err = eddy_tcp_listen(&listener, "127.0.0.1", 0, 0);
    if (err < 0) return err;
    uint16_t port = (uint16_t)eddy_sock_port(listener);
    if (write(fd, &port, sizeof(port)) != sizeof(port)) return -EIO;
    close(fd);
    struct http_server srv = {listener, SHORT_DEADLINE, SHORT_DEADLINE};
    return http_hello_serve(&srv);
}

static void limited_server(int fd)
{
    struct rlimit rl = {FD_LIMIT, FD_LIMIT};
    if (setrlimit(RLIMIT_NOFILE, &rl) < 0) _exit(3);
    eddy_loop *loop;
    if (eddy_loop_new(&loop, NULL) < 0) _exit(4);
    eddy_task *t = eddy_spawn(loop, limited_server_main, (void *)(intptr_t)fd);
    if (!t) _exit(5);
    eddy_loop_run(loop);
    _exit(6);
}

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * NS_PER_SEC + ts.tv_nsec;
}

static int tcp_to(uint16_t port)
{
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(port)};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (s >= 0 && connect(s, (struct sockaddr *)&sin, sizeof(sin)) < 0) {
        close(s);
        s = -1;
    }
    return s;
}

Test(http, slowloris_at_a_low_descriptor_limit, .timeout = TEST_TIMEOUT)
{
    /* More slow clients (half a head each, then nothing) than the server
     * has descriptors: those it accepted hold them until the header
     * deadline closes them, the others wait in the backlog. A real request
     * made after them all is still answered, within a few deadlines. */
    int pipefd[2];
    cr_assert(eq(int, pipe(pipefd), 0));
    pid_t pid = fork();
    cr_assert(ge(int, pid, 0));
    if (pid == 0) {
        close(pipefd[0]);
        limited_server(pipefd[1]);
    }
    close(pipefd[1]);
    uint16_t port = 0;
    cr_assert(eq(int, (int)read(pipefd[0], &port, sizeof(port)), (int)sizeof(port)));
    close(pipefd[0]);

    static const char half[] = "GET / HTTP/1.1\r\nHost: a\r\n";
    int slow[SLOW_CLIENTS];
    for (int i = 0; i < SLOW_CLIENTS; i++) {
        slow[i] = tcp_to(port);
        cr_assert(ge(int, slow[i], 0), "slow client %d: %s", i, strerror(errno));
        cr_assert(eq(int, (int)send(slow[i], half, sizeof(half) - 1, MSG_NOSIGNAL),
                     (int)sizeof(half) - 1));
    }

    int64_t start = mono_ns();
    int real = tcp_to(port);
    cr_assert(ge(int, real, 0));
    cr_assert(eq(int, (int)send(real, GET_CLOSE, strlen(GET_CLOSE), MSG_NOSIGNAL),
                 (int)strlen(GET_CLOSE)));
    /* (SLOW_CLIENTS / FD_LIMIT + 1) deadlines, and a margin */
    int64_t limit = (SLOW_CLIENTS / FD_LIMIT + 1) * SHORT_DEADLINE + 2 * NS_PER_SEC;
    char got[4096];
    size_t len = 0;
    while (len < sizeof(got) - 1 && mono_ns() - start < limit) {
        struct pollfd p = {.fd = real, .events = POLLIN};
        if (poll(&p, 1, 50) <= 0) continue;
        ssize_t n = recv(real, got + len, sizeof(got) - 1 - len, 0);
        if (n <= 0) break;
        len += (size_t)n;
    }
    got[len] = 0;
    int64_t took = mono_ns() - start;
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    close(real);
    for (int i = 0; i < SLOW_CLIENTS; i++)
        close(slow[i]);
    cr_expect(ne(ptr, strstr(got, "HTTP/1.1 200 OK\r\n"), NULL),
              "no answer in %.1f s (limit %.1f s): %s", (double)took / 1e9, (double)limit / 1e9,
              got);
}
#endif
