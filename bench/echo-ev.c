/* SPDX-License-Identifier: MIT */
/* bench/echo-ev: the libev echo server of `make bench`.
 *
 *   echo-ev port
 *
 * An ev_io watcher per connection; on readiness, read() and write() at once,
 * and only what the socket did not take waits for EV_WRITE. Runs until
 * killed. */
#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bench.h"

struct conn {
    ev_io io;
    size_t pending, offset; /* bytes of buf still to write */
    char buf[64 * 1024];
};

static void conn_close(struct ev_loop *loop, struct conn *c)
{
    ev_io_stop(loop, &c->io);
    close(c->io.fd);
    free(c);
}

/* Writes what is pending; returns -1 on error. */
static int flush(struct ev_loop *loop, struct conn *c)
{
    while (c->pending > 0) {
        ssize_t n = write(c->io.fd, c->buf + c->offset, c->pending);
        if (n < 0) {
            if (errno == EAGAIN) break;
            return -1;
        }
        c->offset += (size_t)n;
        c->pending -= (size_t)n;
    }
    int events = c->pending ? EV_WRITE : EV_READ;
    if (c->io.events != events) {
        ev_io_stop(loop, &c->io);
        ev_io_set(&c->io, c->io.fd, events);
        ev_io_start(loop, &c->io);
    }
    return 0;
}

static void on_io(struct ev_loop *loop, ev_io *w, int revents)
{
    struct conn *c = (struct conn *)w;
    if (revents & EV_WRITE) {
        if (flush(loop, c) < 0) conn_close(loop, c);
        return;
    }
    ssize_t n = read(w->fd, c->buf, sizeof(c->buf));
    if (n < 0 && errno == EAGAIN) return;
    if (n <= 0) {
        conn_close(loop, c);
        return;
    }
    c->offset = 0;
    c->pending = (size_t)n;
    if (flush(loop, c) < 0) conn_close(loop, c);
}

static void on_accept(struct ev_loop *loop, ev_io *w, int revents)
{
    int fd = accept4(w->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct conn *c = malloc(sizeof(*c));
    if (!c) abort();
    c->pending = c->offset = 0;
    ev_io_init(&c->io, on_io, fd, EV_READ);
    ev_io_start(loop, &c->io);
}

int main(int argc, char **argv)
{
    int port = echo_server_port(argc, argv);
    if (port < 0) return 2;
    int fd = echo_listen_nonblocking(port, "echo-ev");
    if (fd < 0) return 1;
    struct ev_loop *loop = ev_default_loop(EVBACKEND_EPOLL);
    ev_io accept_io;
    ev_io_init(&accept_io, on_accept, fd, EV_READ);
    ev_io_start(loop, &accept_io);
    ev_run(loop, 0);
    return 0;
}
