/* SPDX-License-Identifier: MIT */
/* bench/echo-uv: the libuv echo server of `make bench`.
 *
 *   echo-uv port
 *
 * libuv as its users write an echo server at its fastest: one read buffer per
 * connection, uv_try_write first, and only what the socket did not take is
 * copied into a uv_write request. Runs until killed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "bench.h"

struct conn {
    uv_tcp_t tcp;
    char buf[64 * 1024];
};

struct write_req {
    uv_write_t req;
    char data[];
};

static void on_close(uv_handle_t *h)
{
    free(h);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct conn *c = (struct conn *)h;
    *buf = uv_buf_init(c->buf, sizeof(c->buf));
}

static void on_write(uv_write_t *req, int status)
{
    free(req);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    if (nread < 0) {
        uv_close((uv_handle_t *)s, on_close);
        return;
    }
    if (nread == 0) return;
    uv_buf_t out = uv_buf_init(buf->base, (unsigned)nread);
    int n = uv_try_write(s, &out, 1);
    if (n == UV_EAGAIN) n = 0;
    if (n < 0) {
        uv_close((uv_handle_t *)s, on_close);
        return;
    }
    if (n == nread) return;
    size_t rest = (size_t)nread - (size_t)n;
    struct write_req *w = malloc(sizeof(*w) + rest);
    if (!w) abort();
    memcpy(w->data, buf->base + n, rest);
    out = uv_buf_init(w->data, (unsigned)rest);
    if (uv_write(&w->req, s, &out, 1, on_write) < 0) {
        free(w);
        uv_close((uv_handle_t *)s, on_close);
    }
}

static void on_connection(uv_stream_t *server, int status)
{
    if (status < 0) return;
    struct conn *c = malloc(sizeof(*c));
    if (!c) abort();
    uv_tcp_init(server->loop, &c->tcp);
    if (uv_accept(server, (uv_stream_t *)&c->tcp) < 0) {
        uv_close((uv_handle_t *)&c->tcp, on_close);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

int main(int argc, char **argv)
{
    int port = echo_server_port(argc, argv);
    if (port < 0) return 2;
    uv_loop_t *loop = uv_default_loop();
    uv_tcp_t server;
    struct sockaddr_in addr;
    uv_ip4_addr("127.0.0.1", port, &addr);
    uv_tcp_init(loop, &server);
    int err = uv_tcp_bind(&server, (const struct sockaddr *)&addr, 0);
    if (err == 0) err = uv_listen((uv_stream_t *)&server, 4096, on_connection);
    if (err < 0) {
        fprintf(stderr, "echo-uv: %s\n", uv_strerror(err));
        return 1;
    }
    return uv_run(loop, UV_RUN_DEFAULT);
}
