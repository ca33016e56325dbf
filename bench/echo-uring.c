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

static struct io_uring_sqe *sqe_get(void)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
    while (!sqe) {
        io_uring_submit(&ring);
        sqe = io_uring_get_sqe(&ring);
    }
    return sqe;
}

static void queue_accept(void)
{
    struct io_uring_sqe *sqe = sqe_get();
    io_uring_prep_accept(sqe, listener, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    io_uring_sqe_set_data(sqe, &accept_token);
}

static void queue_recv(struct conn *c)
{
    c->state = RECV;
    struct io_uring_sqe *sqe = sqe_get();
    io_uring_prep_recv(sqe, c->fd, c->buf, BUF_SIZE, 0);
    io_uring_sqe_set_data(sqe, c);
}

static void queue_send(struct conn *c)
{
    c->state = SEND;
    struct io_uring_sqe *sqe = sqe_get();
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

static int ring_setup(void)
{
    unsigned tiers[] = {IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
                        IORING_SETUP_COOP_TASKRUN, 0};
    int err = -EINVAL;
    for (size_t i = 0; i < sizeof tiers / sizeof tiers[0] && err == -EINVAL; i++) {
        struct io_uring_params p;
        memset(&p, 0, sizeof p);
        p.flags = tiers[i] | IORING_SETUP_CQSIZE;
        p.cq_entries = ENTRIES * 4;
        err = io_uring_queue_init_params(ENTRIES, &ring, &p);
    }
    if (err == 0) io_uring_register_ring_fd(&ring);
    return err;
}

int main(int argc, char **argv)
{
    int port = echo_server_port(argc, argv);
    if (port < 0) return 2;
    int err = ring_setup();
    if (err < 0) {
        fprintf(stderr, "echo-uring: io_uring: %s\n", strerror(-err));
        return 1;
    }
    listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET,
                               .sin_port = htons((uint16_t)port),
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(listener, (struct sockaddr *)&addr, sizeof addr) < 0 ||
        listen(listener, SOMAXCONN) < 0) {
        perror("echo-uring: listen");
        return 1;
    }
    queue_accept();
    for (;;) {
        err = io_uring_submit_and_wait(&ring, 1);
        if (err < 0 && err != -EINTR && err != -EBUSY && err != -EAGAIN) {
            fprintf(stderr, "echo-uring: io_uring_enter: %s\n", strerror(-err));
            return 1;
        }
        unsigned head, seen = 0;
        struct io_uring_cqe *cqe;
        io_uring_for_each_cqe(&ring, head, cqe)
        {
            struct conn *c = io_uring_cqe_get_data(cqe);
            if (c == &accept_token)
                on_accept(cqe->res);
            else
                on_conn(c, cqe->res);
            seen++;
        }
        io_uring_cq_advance(&ring, seen);
    }
}
