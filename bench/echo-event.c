/* SPDX-License-Identifier: MIT */
/* bench/echo-event: the libevent echo server of `make bench`.
 *
 *   echo-event port
 *
 * A persistent EV_READ event per connection; on readiness, read() and write()
 * at once, and only what the socket did not take waits for EV_WRITE (the same
 * shape as bench/echo-ev.c; bufferevents would add a copy through evbuffers).
 * Runs until killed. */
#include <errno.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bench.h"

struct conn {
    struct event *ev;
    int fd;
    short events;
    size_t pending, offset;
    char buf[64 * 1024];
};

static struct event_base *base;

static void on_io(evutil_socket_t fd, short what, void *arg);

static void conn_close(struct conn *c)
{
    event_free(c->ev);
    close(c->fd);
    free(c);
}

static int flush(struct conn *c)
{
    while (c->pending > 0) {
        ssize_t n = write(c->fd, c->buf + c->offset, c->pending);
        if (n < 0) {
            if (errno == EAGAIN) break;
            return -1;
        }
        c->offset += (size_t)n;
        c->pending -= (size_t)n;
    }
    short events = c->pending ? EV_WRITE : EV_READ;
    if (events != c->events) {
        event_del(c->ev);
        event_assign(c->ev, base, c->fd, events | EV_PERSIST, on_io, c);
        event_add(c->ev, NULL);
        c->events = events;
    }
    return 0;
}

static void on_io(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;
    if (what & EV_WRITE) {
        if (flush(c) < 0) conn_close(c);
        return;
    }
    ssize_t n = read(fd, c->buf, sizeof(c->buf));
    if (n < 0 && errno == EAGAIN) return;
    if (n <= 0) {
        conn_close(c);
        return;
    }
    c->offset = 0;
    c->pending = (size_t)n;
    if (flush(c) < 0) conn_close(c);
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int len,
                      void *arg)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct conn *c = malloc(sizeof(*c));
    if (!c) abort();
    c->fd = fd;
    c->pending = c->offset = 0;
    c->events = EV_READ;
    c->ev = event_new(base, fd, EV_READ | EV_PERSIST, on_io, c);
    if (!c->ev) abort();
    event_add(c->ev, NULL);
}

int main(int argc, char **argv)
{
    int port = echo_server_port(argc, argv);
    if (port < 0) return 2;
    base = event_base_new();
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct evconnlistener *l =
        evconnlistener_new_bind(base, on_accept, NULL, LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_FREE,
                                4096, (struct sockaddr *)&sa, sizeof(sa));
    if (!l) {
        perror("echo-event: listen");
        return 1;
    }
    event_base_dispatch(base);
    return 0;
}
