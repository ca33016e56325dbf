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

struct server {
    unsigned port;
    long max_connections; /* 0 = forever */
    long grace_seconds;
    eddy_sock *listener;
    eddy_group *connections;
};

static intptr_t serve_connection(void *arg)
{
    eddy_sock *conn = arg;
    char buf[64 * 1024];
    ssize_t n;
    while ((n = eddy_recv(conn, buf, sizeof(buf))) > 0)
        if (eddy_send(conn, buf, (size_t)n) < 0) break;
    eddy_sock_close(conn);
    return 0;
}

/* Accepts until the connection count is reached or the task is cancelled
 * (the shutdown signal); then closes the listener. */
static intptr_t accept_connections(void *arg)
{
    struct server *srv = arg;
    int err = 0;
    for (long served = 0; srv->max_connections == 0 || served < srv->max_connections; served++) {
        eddy_sock *conn;
        err = eddy_accept(srv->listener, &conn);
        if (err == -ECANCELED) {
            err = 0; /* shutting down */
            break;
        }
        if (err < 0) {
            fprintf(stderr, "echo-server: accept: %s\n", eddy_strerror(err));
            break;
        }
        if (!eddy_group_spawn(srv->connections, serve_connection, conn)) eddy_sock_close(conn);
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

static intptr_t server_main(void *arg)
{
    struct server *srv = arg;
    int err = eddy_tcp_listen(&srv->listener, NULL, (uint16_t)srv->port, 0);
    if (err < 0) {
        fprintf(stderr, "echo-server: listen on port %u: %s\n", srv->port, eddy_strerror(err));
        return err;
    }
    printf("echo-server: listening on port %d (backend %s)\n", eddy_sock_port(srv->listener),
           eddy_loop_backend(eddy_loop_current()));
    fflush(stdout);

    srv->connections = eddy_group_new(NULL);
    eddy_task *acceptor = srv->connections ? eddy_spawn(NULL, accept_connections, srv) : NULL;
    eddy_task *signals = acceptor ? eddy_spawn(NULL, wait_for_shutdown, acceptor) : NULL;
    if (!signals) {
        if (acceptor) { /* it closes the listener as it ends */
            eddy_task_cancel(acceptor);
            eddy_task_join(acceptor, NULL);
        } else {
            eddy_sock_close(srv->listener);
        }
        if (srv->connections) eddy_group_free(srv->connections);
        return -ENOMEM;
    }
    /* The acceptor ends by itself (connection count) or by the signal; the
     * signal task holds a pointer to it until it is told to stop. */
    eddy_await(eddy_task_future(acceptor), NULL);
    eddy_task_cancel(signals);
    eddy_task_join(signals, NULL);
    intptr_t accept_err = 0;
    eddy_task_join(acceptor, &accept_err);

    /* Let the last clients finish, within the grace period. */
    eddy_timeout grace;
    int wait_err = eddy_timeout_begin(&grace, srv->grace_seconds * 1000000000LL);
    if (wait_err == 0) {
        wait_err = eddy_group_wait(srv->connections);
        if (eddy_timeout_end(&grace) == -ETIMEDOUT) {
            printf("echo-server: grace period over: closed the connections still open\n");
            wait_err = 0;
        }
    }
    eddy_group_free(srv->connections);
    printf("echo-server: done\n");
    return accept_err < 0 ? accept_err : wait_err;
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
