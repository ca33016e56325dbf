/* SPDX-License-Identifier: MIT */
/* bench/echo-uring-multishot: the second floor for eddy/io_uring, a bare
 * liburing echo server that receives the way eddy does.
 *
 *   echo-uring-multishot port
 *
 * bench/echo-uring arms one plain recv per message; eddy's io_uring backend
 * serves a socket read in a loop with a multishot receive into a buffer ring
 * and its listener with a multishot accept. This is that, by hand: one
 * thread, one ring (SINGLE_ISSUER|DEFER_TASKRUN where the kernel has them,
 * the ring fd registered), a multishot accept, and per connection a
 * multishot recv into a ring of BUFS provided buffers of BUF_SIZE bytes. Each
 * buffer that comes is sent back as it is (no copy), one send in flight per
 * connection, the others queued in order, and goes back to the ring when its
 * send is done. A multishot that ends (the ring ran dry: -ENOBUFS) is armed
 * again once a buffer comes back. One io_uring_submit_and_wait per batch of
 * completions. Runs until killed. */
#include <errno.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bench.h"
#include "echo-uring.h"

#define BUFS     4096 /* a power of two */
#define BUF_SIZE (16 * 1024)
#define BGID     0
#define ENTRIES  4096
#define NONE     UINT32_MAX

enum { RECV, SEND }; /* in the low bit of a connection's user_data */

struct conn {
    int fd;
    bool closing;        /* the stream ended: close once no send is in flight */
    bool sending;        /* a send is in flight: the queue's head */
    bool starved;        /* the multishot ended for want of buffers */
    bool broken;         /* a send failed: what comes is dropped */
    uint32_t head, tail; /* buffers to send, linked through next[] */
    uint32_t sent;       /* bytes of the head already sent */
    struct conn *starved_next;
};

static struct io_uring ring;
static struct io_uring_buf_ring *br;
static char *bufs;
static uint32_t next[BUFS], len[BUFS]; /* per buffer: the queue link, bytes to send */
static int listener;
static struct conn accept_token; /* user_data of the accept */
static struct conn *starved;     /* connections waiting for a buffer */

static void queue_accept(void)
{
    struct io_uring_sqe *sqe = echo_sqe(&ring);
    io_uring_prep_multishot_accept(sqe, listener, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    io_uring_sqe_set_data(sqe, &accept_token);
}

static void queue_recv(struct conn *c)
{
    struct io_uring_sqe *sqe = echo_sqe(&ring);
    io_uring_prep_recv_multishot(sqe, c->fd, NULL, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = BGID;
    io_uring_sqe_set_data64(sqe, (uintptr_t)c | RECV);
}

static void queue_send(struct conn *c)
{
    uint32_t bid = c->head;
    struct io_uring_sqe *sqe = echo_sqe(&ring);
    io_uring_prep_send(sqe, c->fd, bufs + (size_t)bid * BUF_SIZE + c->sent, len[bid] - c->sent,
                       MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, (uintptr_t)c | SEND);
    c->sending = true;
}

/* Gives a buffer back to the ring; a starved connection gets its multishot
 * again. */
static void buf_return(uint32_t bid)
{
    io_uring_buf_ring_add(br, bufs + (size_t)bid * BUF_SIZE, BUF_SIZE, (unsigned short)bid,
                          io_uring_buf_ring_mask(BUFS), 0);
    io_uring_buf_ring_advance(br, 1);
    struct conn *c = starved;
    if (c) {
        starved = c->starved_next;
        c->starved = false;
        if (!c->closing) queue_recv(c);
    }
}

static void conn_close(struct conn *c)
{
    while (c->head != NONE) {
        uint32_t bid = c->head;
        c->head = next[bid];
        buf_return(bid);
    }
    close(c->fd);
    if (c->starved) { /* unlinked from the starved list first */
        struct conn **link = &starved;
        while (*link != c)
            link = &(*link)->starved_next;
        *link = c->starved_next;
    }
    free(c);
}

static void on_accept(struct io_uring_cqe *cqe)
{
    if (!(cqe->flags & IORING_CQE_F_MORE)) queue_accept();
    int fd = cqe->res;
    if (fd < 0) return;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct conn *c = calloc(1, sizeof *c);
    if (!c) {
        close(fd);
        return;
    }
    c->fd = fd;
    c->head = c->tail = NONE;
    queue_recv(c);
}

static void on_recv(struct conn *c, struct io_uring_cqe *cqe)
{
    bool more = cqe->flags & IORING_CQE_F_MORE;
    if (cqe->res > 0) {
        uint32_t bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
        if (!more) queue_recv(c); /* ended for another reason (a full CQ) */
        if (c->broken) {
            buf_return(bid);
            return;
        }
        len[bid] = (uint32_t)cqe->res;
        next[bid] = NONE;
        if (c->head == NONE)
            c->head = bid;
        else
            next[c->tail] = bid;
        c->tail = bid;
        if (!c->sending) {
            c->sent = 0;
            queue_send(c);
        }
        return;
    }
    if (cqe->res == -ENOBUFS) {
        c->starved = true;
        c->starved_next = starved;
        starved = c;
        return;
    }
    if (more) return; /* an error the multishot goes on after */
    c->closing = true;
    if (!c->sending) conn_close(c);
}

static void on_send(struct conn *c, int res)
{
    c->sending = false;
    if (res <= 0) {
        if (c->closing || c->starved) { /* no receive armed */
            conn_close(c);
        } else {
            c->broken = true;
            shutdown(c->fd, SHUT_RDWR); /* ends the multishot receive */
        }
        return;
    }
    uint32_t bid = c->head;
    c->sent += (uint32_t)res;
    if (c->sent < len[bid]) {
        queue_send(c);
        return;
    }
    c->head = next[bid];
    buf_return(bid);
    if (c->head != NONE) {
        c->sent = 0;
        queue_send(c);
    } else if (c->closing) {
        conn_close(c);
    }
}

static int ring_setup(void)
{
    int err = echo_ring_setup(&ring, ENTRIES);
    if (err < 0) return err;
    size_t ring_bytes = BUFS * sizeof(struct io_uring_buf);
    br = mmap(NULL, ring_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    bufs = mmap(NULL, (size_t)BUFS * BUF_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                -1, 0);
    if (br == MAP_FAILED || bufs == MAP_FAILED) return -ENOMEM;
    struct io_uring_buf_reg reg = {.ring_addr = (uintptr_t)br, .ring_entries = BUFS, .bgid = BGID};
    err = io_uring_register_buf_ring(&ring, &reg, 0);
    if (err < 0) return err;
    io_uring_buf_ring_init(br);
    for (uint32_t bid = 0; bid < BUFS; bid++)
        io_uring_buf_ring_add(br, bufs + (size_t)bid * BUF_SIZE, BUF_SIZE, (unsigned short)bid,
                              io_uring_buf_ring_mask(BUFS), (int)bid);
    io_uring_buf_ring_advance(br, BUFS);
    return 0;
}

static void on_cqe(struct io_uring_cqe *cqe)
{
    uintptr_t data = (uintptr_t)io_uring_cqe_get_data(cqe);
    if (data == (uintptr_t)&accept_token)
        on_accept(cqe);
    else if ((data & 1) == RECV)
        on_recv((struct conn *)data, cqe);
    else
        on_send((struct conn *)(data & ~(uintptr_t)1), cqe->res);
}

int main(int argc, char **argv)
{
    int port = echo_server_port(argc, argv);
    if (port < 0) return 2;
    int err = ring_setup();
    if (err < 0) {
        fprintf(stderr, "echo-uring-multishot: io_uring: %s\n", strerror(-err));
        return 1;
    }
    if ((listener = echo_listen("echo-uring-multishot", port)) < 0) return 1;
    queue_accept();
    return echo_ring_run(&ring, "echo-uring-multishot", on_cqe);
}
