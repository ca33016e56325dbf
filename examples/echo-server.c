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
    long live;            /* connections being served */
};

struct connection {
    struct server *srv;
    eddy_sock *sock;
};

static intptr_t serve_connection(void *arg)
{
    struct connection *c = arg;
    char buf[64 * 1024];
    ssize_t n;
    while ((n = eddy_recv(c->sock, buf, sizeof(buf))) > 0)
        if (eddy_send(c->sock, buf, (size_t)n) < 0) break;
    eddy_sock_close(c->sock);
    c->srv->live--;
    free(c);
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

    /* A task per connection, detached: the loop frees each one when it
     * ends. (A task group would keep every child until the group is freed:
     * memory that grows with each connection a long-running server takes.) */
    for (long served = 0; srv->max_connections == 0 || served < srv->max_connections; served++) {
        struct connection *c = malloc(sizeof(*c));
        if (!c) {
            err = -ENOMEM;
            break;
        }
        c->srv = srv;
        err = eddy_accept(listener, &c->sock);
        if (err < 0) {
            fprintf(stderr, "echo-server: accept: %s\n", eddy_strerror(err));
            free(c);
            break;
        }
        eddy_task *t = eddy_spawn(NULL, serve_connection, c);
        if (!t) {
            eddy_sock_close(c->sock);
            free(c);
            continue;
        }
        srv->live++;
        eddy_task_detach(t);
    }
    eddy_sock_close(listener);
    while (srv->live > 0) /* let the last clients finish */
        eddy_sleep(10 * 1000 * 1000);
    return err;
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
