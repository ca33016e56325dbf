/* SPDX-License-Identifier: MIT */
/* bench/echo-eddy: the eddy echo server of `make bench`.
 *
 *   echo-eddy port
 *
 * One task per connection, eddy_recv then eddy_send, as a user would write it
 * (examples/echo-server.c, bound to 127.0.0.1). EDDY_BACKEND=io_uring or epoll
 * picks the backend. Runs until killed. */
#include <stdio.h>
#include <stdlib.h>

#include "eddy.h"

#include "bench.h"

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
    eddy_sock *listener;
    int err = eddy_tcp_listen(&listener, "127.0.0.1", (uint16_t)(uintptr_t)arg, 0);
    if (err < 0) {
        fprintf(stderr, "echo-eddy: listen: %s\n", eddy_strerror(err));
        return err;
    }
    for (;;) {
        eddy_sock *conn;
        if ((err = eddy_accept(listener, &conn)) < 0) {
            fprintf(stderr, "echo-eddy: accept: %s\n", eddy_strerror(err));
            break;
        }
        eddy_task *t = eddy_spawn(NULL, serve_connection, conn);
        if (t)
            eddy_task_detach(t);
        else
            eddy_sock_close(conn);
    }
    eddy_sock_close(listener);
    return err;
}

int main(int argc, char **argv)
{
    int port = echo_server_port(argc, argv);
    if (port < 0) return 2;
    intptr_t result = 0;
    int err = eddy_run(server_main, (void *)(uintptr_t)port, &result);
    if (err < 0) fprintf(stderr, "echo-eddy: %s\n", eddy_strerror(err));
    return err < 0 ? 1 : 0;
}
