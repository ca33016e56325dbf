/* SPDX-License-Identifier: MIT */
/* What the two bare liburing echo servers (bench/echo-uring.c,
 * bench/echo-uring-multishot.c) share: the ring, set up as eddy's, the
 * listener, and an SQE that is always there. */
#ifndef EDDY_BENCH_ECHO_URING_H
#define EDDY_BENCH_ECHO_URING_H

#include <errno.h>
#include <liburing.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

/* SINGLE_ISSUER|DEFER_TASKRUN where the kernel has them, else COOP_TASKRUN,
 * else neither; a CQ four times the SQ; the ring fd registered. */
static inline int echo_ring_setup(struct io_uring *ring, unsigned entries)
{
    unsigned tiers[] = {IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
                        IORING_SETUP_COOP_TASKRUN, 0};
    int err = -EINVAL;
    for (size_t i = 0; i < sizeof tiers / sizeof tiers[0] && err == -EINVAL; i++) {
        struct io_uring_params p;
        memset(&p, 0, sizeof p);
        p.flags = tiers[i] | IORING_SETUP_CQSIZE;
        p.cq_entries = entries * 4;
        err = io_uring_queue_init_params(entries, ring, &p);
    }
    if (err == 0) io_uring_register_ring_fd(ring);
    return err;
}

/* A socket listening on 127.0.0.1:port, or -1 (said on stderr). */
static inline int echo_listen(const char *prog, int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET,
                               .sin_port = htons((uint16_t)port),
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0 ||
        listen(fd, SOMAXCONN) < 0) {
        fprintf(stderr, "%s: listen: %s\n", prog, strerror(errno));
        return -1;
    }
    return fd;
}

/* An SQE, submitting what is queued when the SQ is full. */
static inline struct io_uring_sqe *echo_sqe(struct io_uring *ring)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
    while (!sqe) {
        io_uring_submit(ring);
        sqe = io_uring_get_sqe(ring);
    }
    return sqe;
}

/* Waits for completions and hands each to handle(cqe), forever; 1 when
 * io_uring_enter fails for good. */
static inline int echo_ring_run(struct io_uring *ring, const char *prog,
                                void (*handle)(struct io_uring_cqe *))
{
    for (;;) {
        int err = io_uring_submit_and_wait(ring, 1);
        if (err < 0 && err != -EINTR && err != -EBUSY && err != -EAGAIN) {
            fprintf(stderr, "%s: io_uring_enter: %s\n", prog, strerror(-err));
            return 1;
        }
        unsigned head, seen = 0;
        struct io_uring_cqe *cqe;
        io_uring_for_each_cqe(ring, head, cqe)
        {
            handle(cqe);
            seen++;
        }
        io_uring_cq_advance(ring, seen);
    }
}

#endif /* EDDY_BENCH_ECHO_URING_H */
