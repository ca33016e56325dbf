/* SPDX-License-Identifier: MIT */
/* bench/echo-epoll: the bare epoll echo server of `make bench`, the floor
 * eddy on epoll is held to: no library, one thread, one level-triggered
 * epoll_wait per iteration.
 *
 *   echo-epoll port
 *
 * A connection is one struct with its buffer. On input, one read and one
 * write at once (one receive and one send per round trip, as eddy makes);
 * only what the socket did not take waits for EPOLLOUT. Runs until killed. */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bench.h"

#define MAX_EVENTS 256

struct conn {
    int fd;
    size_t pending, offset; /* bytes of buf still to write */
    char buf[64 * 1024];
};

static int epfd;

static void conn_close(struct conn *c)
{
    close(c->fd); /* leaves the epoll set with it */
    free(c);
}

static void want(struct conn *c, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.ptr = c};
    epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
}

/* Writes what is pending; -1 on error. */
static int flush(struct conn *c)
{
    size_t before = c->pending;
    while (c->pending > 0) {
        ssize_t n = send(c->fd, c->buf + c->offset, c->pending, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN) break;
            return -1;
        }
        c->offset += (size_t)n;
        c->pending -= (size_t)n;
    }
    if (c->pending && c->pending == before) return 0; /* waiting for EPOLLOUT already */
    if (c->pending) want(c, EPOLLOUT);
    return 0;
}

static void on_input(struct conn *c)
{
    ssize_t n = recv(c->fd, c->buf, sizeof(c->buf), 0);
    if (n < 0 && errno == EAGAIN) return;
    if (n <= 0) {
        conn_close(c);
        return;
    }
    c->offset = 0;
    c->pending = (size_t)n;
    if (flush(c) < 0) conn_close(c);
}

static void on_output(struct conn *c)
{
    if (flush(c) < 0) {
        conn_close(c);
        return;
    }
    if (!c->pending) want(c, EPOLLIN);
}

static void on_accept(int listener)
{
    for (;;) {
        int fd = accept4(listener, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) return;
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        struct conn *c = malloc(sizeof(*c));
        if (!c) abort();
        c->fd = fd;
        c->pending = c->offset = 0;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0) conn_close(c);
    }
}

int main(int argc, char **argv)
{
    int port = echo_server_port(argc, argv);
    if (port < 0) return 2;
    int fd = echo_listen_nonblocking(port, "echo-epoll");
    if (fd < 0) return 1;
    epfd = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event lev = {.events = EPOLLIN, .data.ptr = NULL};
    if (epfd < 0 || epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &lev) < 0) {
        perror("echo-epoll: epoll");
        return 1;
    }
    struct epoll_event events[MAX_EVENTS];
    for (;;) {
        int n = epoll_wait(epfd, events, MAX_EVENTS, -1);
        for (int i = 0; i < n; i++) {
            struct conn *c = events[i].data.ptr;
            if (!c)
                on_accept(fd);
            else if (c->pending)
                on_output(c);
            else
                on_input(c);
        }
    }
}
