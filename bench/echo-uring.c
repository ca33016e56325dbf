/* SPDX-License-Identifier: MIT */
/* bench/echo-uring: a bare liburing echo server, the floor eddy/io_uring is
 * measured against (issue 4: within 5 % of it).
 *
 *   echo-uring port
 *
 * What a careful hand-written server does, no more: one thread, one ring
 * (SINGLE_ISSUER|DEFER_TASKRUN where the kernel has them, the ring fd
 * registered), and per connection a recv into its own 64 KiB buffer, then a
 * send of what came (again for the rest after a short send), then the next
 * recv -- the same sequence of operations as bench/echo-eddy's
 * eddy_recv/eddy_send loop. One io_uring_submit_and_wait per batch of
 * completions. Runs until killed. */
#include <errno.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bench.h"
#include "echo-uring.h"

#define BUF_SIZE (64 * 1024)
#define ENTRIES  4096

enum { ACCEPT, RECV, SEND };

struct conn {
    int fd;
    int state;        /* RECV or SEND */
    size_t len, sent; /* the message being echoed */
    char buf[BUF_SIZE];
};

static struct io_uring ring;
static int listener;
static struct conn accept_token; /* user_data of the accept */

static void queue_accept(void)
{
    struct io_uring_sqe *sqe = echo_sqe(&ring);
    io_uring_prep_accept(sqe, listener, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    io_uring_sqe_set_data(sqe, &accept_token);
}

static void queue_recv(struct conn *c)
{
    c->state = RECV;
    struct io_uring_sqe *sqe = echo_sqe(&ring);
    io_uring_prep_recv(sqe, c->fd, c->buf, BUF_SIZE, 0);
    io_uring_sqe_set_data(sqe, c);
}

static void queue_send(struct conn *c)
{
    c->state = SEND;
    struct io_uring_sqe *sqe = echo_sqe(&ring);
    io_uring_prep_send(sqe, c->fd, c->buf + c->sent, c->len - c->sent, MSG_NOSIGNAL);
    io_uring_sqe_set_data(sqe, c);
}

static void conn_close(struct conn *c)
{
    close(c->fd);
    free(c);
}

static void on_accept(int fd)
{
    queue_accept();
    if (fd < 0) return;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct conn *c = malloc(sizeof *c);
    if (!c) {
        close(fd);
        return;
    }
    c->fd = fd;
    queue_recv(c);
}

static void on_conn(struct conn *c, int res)
{
    if (res <= 0) {
        conn_close(c);
        return;
    }
    if (c->state == RECV) {
        c->len = (size_t)res;
        c->sent = 0;
        queue_send(c);
        return;
    }
    c->sent += (size_t)res;
    if (c->sent < c->len)
        queue_send(c);
    else
        queue_recv(c);
}

static void on_cqe(struct io_uring_cqe *cqe)
{
    struct conn *c = io_uring_cqe_get_data(cqe);
    if (c == &accept_token)
        on_accept(cqe->res);
    else
        on_conn(c, cqe->res);
}

int main(int argc, char **argv)
{
    int port = echo_server_port(argc, argv);
    if (port < 0) return 2;
    int err = echo_ring_setup(&ring, ENTRIES);
    if (err < 0) {
        fprintf(stderr, "echo-uring: io_uring: %s\n", strerror(-err));
        return 1;
    }
    if ((listener = echo_listen("echo-uring", port)) < 0) return 1;
    queue_accept();
    return echo_ring_run(&ring, "echo-uring", on_cqe);
}
