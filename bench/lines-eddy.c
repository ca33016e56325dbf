/* SPDX-License-Identifier: MIT */
/* bench/lines-eddy: the line echo server of `make bench` on eddy streams.
 *
 *   lines-eddy port
 *
 * eddy_serve, and per connection: readline, write, drain, as a user would
 * write a line protocol (the asyncio twin is bench/lines_asyncio.py).
 * EDDY_BACKEND=io_uring or epoll picks the backend. Runs until killed. */
#include <stdio.h>
#include <stdlib.h>

#include "eddy.h"

#include "bench.h"

static intptr_t echo_lines(eddy_stream *st, void *arg)
{
    char line[64 * 1024];
    ssize_t n;
    while ((n = eddy_stream_readline(st, line, sizeof(line))) > 0)
        if (eddy_stream_write(st, line, (size_t)n) < 0 || eddy_stream_drain(st) < 0) break;
    return 0;
}

static intptr_t server_main(void *arg)
{
    eddy_sock *listener;
    int err = eddy_tcp_listen(&listener, "127.0.0.1", (uint16_t)(uintptr_t)arg, 0);
    if (err < 0) {
        fprintf(stderr, "lines-eddy: listen: %s\n", eddy_strerror(err));
        return err;
    }
    eddy_server *srv;
    if ((err = eddy_serve(&srv, listener, echo_lines, NULL)) < 0) return err;
    return eddy_server_wait(srv);
}

int main(int argc, char **argv)
{
    int port = echo_server_port(argc, argv);
    if (port < 0) return 2;
    intptr_t result = 0;
    int err = eddy_run(server_main, (void *)(uintptr_t)port, &result);
    if (err < 0) fprintf(stderr, "lines-eddy: %s\n", eddy_strerror(err));
    return err < 0 ? 1 : 0;
}
