/* SPDX-License-Identifier: MIT */
/* proxy: a TCP proxy, one task per direction of each connection.
 *
 *   proxy [-c] [-i idle_seconds] [-n connections] listen_port upstream_host upstream_port
 *
 * Listens on 127.0.0.1 and every other address at listen_port (0 picks a free
 * one), prints the port, and for each client connects to upstream_host:
 * upstream_port and copies bytes both ways:
 * - On Linux the bytes go socket -> pipe -> socket with splice(2)
 *   (SPLICE_F_NONBLOCK), waiting for readiness through eddy
 *   (eddy_wait_readable/_writable, which are IORING_OP_POLL_ADD on io_uring
 *   and epoll on epoll): they never enter user space. -c copies through a
 *   buffer instead (eddy_recv/eddy_send), as elsewhere.
 * - Half-close: EOF from one side shuts down the write side towards the
 *   other (shutdown(SHUT_WR)); the other direction goes on until its own EOF.
 * - Idle timeout (-i, default 60 s): a connection with no byte either way
 *   for that long is closed. The connection's task waits for its two
 *   directions inside a timeout scope whose deadline is the last activity
 *   plus the idle time.
 * - An error (a reset) in one direction closes both.
 * With -n it exits once that many connections have come and gone. */
#ifdef __linux__
#define _GNU_SOURCE /* splice, pipe2, F_SETPIPE_SZ */
#endif
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#ifdef __linux__
#include <fcntl.h>
#endif

#include "eddy.h"

#define NS_PER_SEC 1000000000LL
#define COPY_BUF   (64 * 1024)
#define PIPE_SIZE  (1024 * 1024)

struct proxy {
    unsigned port;
    const char *upstream_host;
    unsigned upstream_port;
    int64_t idle_ns;
    bool copy;            /* -c: through a buffer, not splice */
    long max_connections; /* 0 = forever */
    long live;
};

struct conn;

/* One direction: from -> to. */
struct direction {
    struct conn *c;
    eddy_sock *from, *to;
    int64_t bytes;
};

struct conn {
    struct proxy *px;
    eddy_sock *client, *upstream;
    int64_t last_activity; /* eddy_now of the last byte moved either way */
    struct direction up, down;
};

static void activity(struct direction *d, ssize_t n)
{
    d->bytes += n;
    d->c->last_activity = eddy_now(NULL);
}

/* Through a buffer: recv, then send all of it. 0 at EOF, or an error. */
static int copy_by_buffer(struct direction *d)
{
    char *buf = malloc(COPY_BUF);
    if (!buf) return -ENOMEM;
    ssize_t n;
    while ((n = eddy_recv(d->from, buf, COPY_BUF)) > 0) {
        ssize_t sent = eddy_send(d->to, buf, (size_t)n);
        if (sent < 0) {
            n = sent;
            break;
        }
        activity(d, n);
    }
    free(buf);
    return (int)n;
}

#ifdef __linux__
/* socket -> pipe -> socket: nonblocking splices, a readiness wait through
 * eddy whenever one side is not ready. 0 at EOF, or an error. */
static int copy_by_splice(struct direction *d)
{
    int p[2];
    if (pipe2(p, O_NONBLOCK | O_CLOEXEC) < 0) return -errno;
    /* fewer, larger splices (1 MiB: pipe-max-size by default); past the
     * per-user pipe memory limit the kernel refuses, and a smaller pipe works */
    (void)fcntl(p[1], F_SETPIPE_SZ, PIPE_SIZE);
    int from = (int)eddy_sock_fd(d->from), to = (int)eddy_sock_fd(d->to);
    int err = 0;
    for (;;) {
        ssize_t in = splice(from, NULL, p[1], NULL, PIPE_SIZE, SPLICE_F_NONBLOCK | SPLICE_F_MOVE);
        if (in == 0) break; /* EOF */
        if (in < 0) {
            if (errno == EINTR) continue;
            if (errno != EAGAIN) {
                err = -errno;
                break;
            }
            if ((err = eddy_wait_readable(from, -1)) < 0) break;
            continue;
        }
        while (in > 0) {
            ssize_t out =
                splice(p[0], NULL, to, NULL, (size_t)in, SPLICE_F_NONBLOCK | SPLICE_F_MOVE);
            if (out > 0) {
                in -= out;
                activity(d, out);
            } else if (out < 0 && errno == EAGAIN) {
                if ((err = eddy_wait_writable(to, -1)) < 0) break;
            } else if (!(out < 0 && errno == EINTR)) {
                err = out < 0 ? -errno : -EPIPE;
                break;
            }
        }
        if (err < 0) break;
    }
    close(p[0]);
    close(p[1]);
    return err;
}
#endif

static intptr_t direction_run(void *arg)
{
    struct direction *d = arg;
    int err;
#ifdef __linux__
    err = d->c->px->copy ? copy_by_buffer(d) : copy_by_splice(d);
#else
    err = copy_by_buffer(d);
#endif
    if (err == 0) err = eddy_sock_shutdown(d->to, EDDY_SHUT_WR); /* half-close: pass the EOF on */
    return err;
}

/* Waits for both directions, closing the connection when it is idle for
 * idle_ns or when one direction fails. */
static intptr_t conn_run(void *arg)
{
    struct conn *c = arg;
    struct proxy *px = c->px;
    int err = eddy_tcp_connect(&c->upstream, px->upstream_host, (uint16_t)px->upstream_port);
    if (err < 0) {
        fprintf(stderr, "proxy: connect to %s:%u: %s\n", px->upstream_host, px->upstream_port,
                eddy_strerror(err));
        goto out;
    }
    c->last_activity = eddy_now(NULL);
    c->up = (struct direction){.c = c, .from = c->client, .to = c->upstream};
    c->down = (struct direction){.c = c, .from = c->upstream, .to = c->client};
    eddy_task *t[2] = {eddy_spawn(NULL, direction_run, &c->up),
                       eddy_spawn(NULL, direction_run, &c->down)};
    if (!t[0] || !t[1]) {
        err = -ENOMEM;
        for (int i = 0; i < 2; i++)
            if (t[i]) {
                eddy_task_cancel(t[i]);
                (void)eddy_task_join(t[i], NULL);
            }
        goto out;
    }
    bool done[2] = {false, false};
    while (!done[0] || !done[1]) {
        int64_t left = c->last_activity + px->idle_ns - eddy_now(NULL);
        if (left <= 0) {
            err = -ETIMEDOUT; /* idle: close both sides */
            break;
        }
        eddy_timeout scope;
        if ((err = eddy_timeout_begin(&scope, left)) < 0) break;
        eddy_future *fs[2];
        int live[2], n = 0;
        for (int i = 0; i < 2; i++)
            if (!done[i]) {
                live[n] = i;
                fs[n++] = eddy_task_future(t[i]);
            }
        int which = eddy_wait_any(fs, (size_t)n, -1);
        int expired = eddy_timeout_end(&scope);
        if (which >= 0) {
            intptr_t r = 0;
            (void)eddy_task_join(t[live[which]], &r);
            done[live[which]] = true;
            if (r < 0 && r != -ENOTCONN) { /* a reset: the other direction is over too */
                err = (int)r;
                break;
            }
        } else if (expired == -ETIMEDOUT) {
            continue; /* the next round closes the connection unless bytes moved meanwhile */
        } else {
            err = which; /* cancelled */
            break;
        }
    }
    for (int i = 0; i < 2; i++)
        if (!done[i]) {
            eddy_task_cancel(t[i]);
            (void)eddy_task_join(t[i], NULL);
        }
out:
    if (c->upstream) eddy_sock_close(c->upstream);
    eddy_sock_close(c->client);
    if (err == -ETIMEDOUT) fprintf(stderr, "proxy: connection idle, closed\n");
    px->live--;
    free(c);
    return 0;
}

static intptr_t proxy_main(void *arg)
{
    struct proxy *px = arg;
    eddy_sock *listener;
    int err = eddy_tcp_listen(&listener, NULL, (uint16_t)px->port, 0);
    if (err < 0) {
        fprintf(stderr, "proxy: listen on port %u: %s\n", px->port, eddy_strerror(err));
        return err;
    }
    printf("proxy: listening on port %d, to %s:%u (backend %s, %s)\n", eddy_sock_port(listener),
           px->upstream_host, px->upstream_port, eddy_loop_backend(eddy_loop_current()),
#ifdef __linux__
           px->copy ? "copy" : "splice");
#else
           "copy");
#endif
    fflush(stdout);
    for (long served = 0; px->max_connections == 0 || served < px->max_connections; served++) {
        struct conn *c = calloc(1, sizeof(*c));
        if (!c) {
            err = -ENOMEM;
            break;
        }
        c->px = px;
        if ((err = eddy_accept(listener, &c->client)) < 0) {
            fprintf(stderr, "proxy: accept: %s\n", eddy_strerror(err));
            free(c);
            break;
        }
        eddy_task *t = eddy_spawn(NULL, conn_run, c);
        if (!t) {
            eddy_sock_close(c->client);
            free(c);
            continue;
        }
        px->live++;
        eddy_task_detach(t); /* the loop frees it when it ends */
    }
    eddy_sock_close(listener);
    while (px->live > 0)
        eddy_sleep(10 * 1000 * 1000);
    return err;
}

static int usage(const char *argv0)
{
    fprintf(stderr,
            "usage: %s [-c] [-i idle_seconds] [-n connections] listen_port upstream_host "
            "upstream_port\n",
            argv0);
    return 2;
}

int main(int argc, char **argv)
{
    struct proxy px = {.idle_ns = 60 * NS_PER_SEC};
    int opt;
    while ((opt = getopt(argc, argv, "ci:n:")) != -1) {
        switch (opt) {
        case 'c':
            px.copy = true;
            break;
        case 'i':
            px.idle_ns = (int64_t)(strtod(optarg, NULL) * NS_PER_SEC);
            break;
        case 'n':
            px.max_connections = strtol(optarg, NULL, 10);
            break;
        default:
            return usage(argv[0]);
        }
    }
    if (argc - optind != 3) return usage(argv[0]);
    px.port = (unsigned)strtoul(argv[optind], NULL, 10);
    px.upstream_host = argv[optind + 1];
    px.upstream_port = (unsigned)strtoul(argv[optind + 2], NULL, 10);
    if (px.port > 65535 || px.upstream_port == 0 || px.upstream_port > 65535 || px.idle_ns <= 0 ||
        px.max_connections < 0)
        return usage(argv[0]);
    signal(SIGPIPE, SIG_IGN); /* splice(2) to a socket whose peer left raises it */
    intptr_t result = 0;
    int err = eddy_run(proxy_main, &px, &result);
    if (err < 0 || result < 0) {
        fprintf(stderr, "proxy: %s\n", eddy_strerror(err < 0 ? err : (int)result));
        return 1;
    }
    return 0;
}
