/* SPDX-License-Identifier: MIT */
/* Helpers shared by the benchmarks: this thread's CPU clock (other processes
 * on a shared machine do not count) and medians. */
#ifndef EDDY_BENCH_H
#define EDDY_BENCH_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>

static inline int64_t cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static inline int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Sorts v in place and returns its median. */
static inline double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(*v), cmp_double);
    return v[n / 2];
}

/* The echo servers' start: `prog port`, with the descriptor limit raised to
 * its hard maximum for 1000 connections. The port, or -1 after a usage line. */
static inline int echo_server_port(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s port\n", argv[0]);
        return -1;
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    return atoi(argv[1]);
}

#ifdef __linux__
#include <netinet/in.h>
#include <sys/socket.h>

/* The bare echo servers' listener: nonblocking, on 127.0.0.1:port. The
 * descriptor, or -1 after a message naming prog. */
static inline int echo_listen_nonblocking(int port, const char *prog)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 4096) < 0) {
        fprintf(stderr, "%s: listen: ", prog);
        perror(NULL);
        return -1;
    }
    return fd;
}
#endif

#endif /* EDDY_BENCH_H */
