/* SPDX-License-Identifier: MIT */
/* echo-server: a TCP echo server, one task per connection.
 *
 *   echo-server [port [connections]]
 *
 * Listens on every address (IPv6 and IPv4) at port (default 7000; 0 picks a
 * free one), prints the port and the backend, and echoes whatever each client
 * sends until it closes. With a connection count, it exits once that many
 * clients have come and gone (handy in scripts); otherwise it runs until
 * killed. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "eddy.h"

struct server {
    unsigned port;
    long max_connections; /* 0 = forever */
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

static intptr_t server_main(void *arg)
{
    struct server *srv = arg;
    eddy_sock *listener;
    int err = eddy_tcp_listen(&listener, NULL, (uint16_t)srv->port, 0);
    if (err < 0) {
        fprintf(stderr, "echo-server: listen on port %u: %s\n", srv->port, eddy_strerror(err));
        return err;
    }
    printf("echo-server: listening on port %d (backend %s)\n", eddy_sock_port(listener),
           eddy_loop_backend(eddy_loop_current()));
    fflush(stdout);

    eddy_group *connections = eddy_group_new(NULL);
    if (!connections) {
        eddy_sock_close(listener);
        return -ENOMEM;
    }
    for (long served = 0; srv->max_connections == 0 || served < srv->max_connections; served++) {
        eddy_sock *conn;
        err = eddy_accept(listener, &conn);
        if (err < 0) {
            fprintf(stderr, "echo-server: accept: %s\n", eddy_strerror(err));
            break;
        }
        if (!eddy_group_spawn(connections, serve_connection, conn)) eddy_sock_close(conn);
    }
    eddy_sock_close(listener);
    int wait_err = eddy_group_wait(connections); /* let the last clients finish */
    eddy_group_free(connections);
    return err < 0 ? err : wait_err;
}

int main(int argc, char **argv)
{
    struct server srv = {.port = 7000};
    if (argc > 1) srv.port = (unsigned)strtoul(argv[1], NULL, 10);
    if (argc > 2) srv.max_connections = strtol(argv[2], NULL, 10);
    if (srv.port > 65535 || srv.max_connections < 0) {
        fprintf(stderr, "usage: %s [port [connections]]\n", argv[0]);
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
