/* SPDX-License-Identifier: MIT */
/* echo-server: a TCP echo server, one task per connection.
 *
 *   echo-server [port [connections [grace-seconds]]]
 *
 * Listens on every address (IPv6 and IPv4) at port (default 7000; 0 picks a
 * free one), prints the port and the backend, and echoes whatever each client
 * sends until it closes. With a connection count, it exits once that many
 * clients have come and gone (handy in scripts); otherwise it runs until
 * SIGINT or SIGTERM (Ctrl+C or Ctrl+Break on Windows).
 *
 * Shutting down gracefully: on the signal it stops accepting, gives the open
 * connections grace-seconds (default 5) to finish, closes those still open
 * after that, and exits 0. A second Ctrl+C meanwhile finds the signal's usual
 * disposition back and ends the process at once. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#include "eddy.h"

#ifdef _WIN32
static const int shutdown_signals[] = {SIGINT, SIGBREAK};
#else
static const int shutdown_signals[] = {SIGINT, SIGTERM};
#endif

struct connection;

struct server {
    unsigned port;
    long max_connections; /* 0 = forever */
    long grace_seconds;
    eddy_sock *listener;
    long live;               /* connections being served */
    struct connection *open; /* those connections, to close them after the grace period */
};

struct connection {
    struct server *srv;
    eddy_sock *sock;
    eddy_task *task;                /* borrowed: valid while the connection is in srv->open */
    struct connection *prev, *next; /* srv->open */
};

static intptr_t serve_connection(void *arg)
{
    struct connection *c = arg;
    char buf[64 * 1024];
    ssize_t n;
    while ((n = eddy_recv(c->sock, buf, sizeof(buf))) > 0)
        if (eddy_send(c->sock, buf, (size_t)n) < 0) break;
    eddy_sock_close(c->sock);
    if (c->prev)
        c->prev->next = c->next;
    else
        c->srv->open = c->next;
    if (c->next) c->next->prev = c->prev;
    c->srv->live--;
    free(c);
    return 0;
}

/* Accepts until the connection count is reached or the task is cancelled
 * (the shutdown signal); then closes the listener. A task per connection,
 * detached: the loop frees each one when it ends. (A task group would keep
 * every child until the group is freed: memory that grows with each
 * connection a long-running server takes.) */
static intptr_t accept_connections(void *arg)
{
    struct server *srv = arg;
    int err = 0;
    for (long served = 0; srv->max_connections == 0 || served < srv->max_connections; served++) {
        struct connection *c = calloc(1, sizeof(*c));
        if (!c) {
            err = -ENOMEM;
            break;
        }
        c->srv = srv;
        err = eddy_accept(srv->listener, &c->sock);
        if (err < 0) {
            if (err == -ECANCELED)
                err = 0; /* shutting down */
            else
                fprintf(stderr, "echo-server: accept: %s\n", eddy_strerror(err));
            free(c);
            break;
        }
        c->task = eddy_spawn(NULL, serve_connection, c);
        if (!c->task) {
            eddy_sock_close(c->sock);
            free(c);
            continue;
        }
        c->next = srv->open;
        if (c->next) c->next->prev = c;
        srv->open = c;
        srv->live++;
        eddy_task_detach(c->task);
    }
    eddy_sock_close(srv->listener);
    return err;
}

/* Waits for SIGINT or SIGTERM, then stops the acceptor (arg). */
static intptr_t wait_for_shutdown(void *arg)
{
    eddy_task *acceptor = arg;
    size_t n = sizeof shutdown_signals / sizeof shutdown_signals[0];
    int signum = eddy_signal_wait(shutdown_signals, n);
    if (signum < 0) {
        if (signum != -ECANCELED) /* the server runs on; only a signal's default ends it */
            fprintf(stderr, "echo-server: no graceful shutdown: %s\n", eddy_strerror(signum));
        return signum;
    }
    printf("echo-server: %s: not accepting; open connections may finish\n",
           signum == SIGINT ? "SIGINT" : "SIGTERM or SIGBREAK");
    fflush(stdout);
    eddy_task_cancel(acceptor);
    return 0;
}

/* Lets the open connections finish within the grace period, then closes
 * those left. */
static void drain_connections(struct server *srv)
{
    eddy_timeout grace;
    if (eddy_timeout_begin(&grace, srv->grace_seconds * 1000000000LL) == 0) {
        while (srv->live > 0 && eddy_sleep(10 * 1000 * 1000) == 0) {
        }
        if (eddy_timeout_end(&grace) == -ETIMEDOUT) {
            printf("echo-server: grace period over: closing %ld connection(s)\n", srv->live);
            for (struct connection *c = srv->open; c; c = c->next)
                eddy_task_cancel(c->task);
        }
    }
    while (srv->live > 0) /* the cancelled ones close their sockets */
        eddy_sleep(10 * 1000 * 1000);
}

static intptr_t server_main(void *arg)
{
    struct server *srv = arg;
    int err = eddy_tcp_listen(&srv->listener, NULL, (uint16_t)srv->port, 0);
    if (err < 0) {
        fprintf(stderr, "echo-server: listen on port %u: %s\n", srv->port, eddy_strerror(err));
        return err;
    }
    eddy_task *acceptor = eddy_spawn(NULL, accept_connections, srv);
    if (!acceptor) {
        eddy_sock_close(srv->listener);
        return -ENOMEM;
    }
    eddy_task *signals = eddy_spawn(NULL, wait_for_shutdown, acceptor);
    /* Both start before the server says it is ready: a script that reads the
     * port and sends SIGTERM finds the signal caught, and the descriptors
     * eddy holds for it are already open. */
    eddy_yield();
    printf("echo-server: listening on port %d (backend %s)\n", eddy_sock_port(srv->listener),
           eddy_loop_backend(eddy_loop_current()));
    fflush(stdout);
    if (signals) {
        /* The acceptor ends by itself (connection count) or by the signal;
         * the signal task holds a pointer to it until it is told to stop. */
        eddy_await(eddy_task_future(acceptor), NULL);
        eddy_task_cancel(signals);
        eddy_task_join(signals, NULL);
    } else {
        fprintf(stderr, "echo-server: no graceful shutdown: %s\n", eddy_strerror(-ENOMEM));
    }
    intptr_t accept_err = 0;
    eddy_task_join(acceptor, &accept_err);
    drain_connections(srv);
    printf("echo-server: done\n");
    return accept_err;
}

int main(int argc, char **argv)
{
    struct server srv = {.port = 7000, .grace_seconds = 5};
    if (argc > 1) srv.port = (unsigned)strtoul(argv[1], NULL, 10);
    if (argc > 2) srv.max_connections = strtol(argv[2], NULL, 10);
    if (argc > 3) srv.grace_seconds = strtol(argv[3], NULL, 10);
    if (srv.port > 65535 || srv.max_connections < 0 || srv.grace_seconds < 0 ||
        srv.grace_seconds > 3600) {
        fprintf(stderr, "usage: %s [port [connections [grace-seconds]]]\n", argv[0]);
        return 2;
    }
    intptr_t result = 0;
    int err = eddy_run(server_main, &srv, &result);
    if (err < 0) {
        fprintf(stderr, "echo-server: %s\n", eddy_strerror(err));
        return 1;
    }
    return 0;
}
