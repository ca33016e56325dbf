/* SPDX-License-Identifier: MIT */
/* bench/echo-load: the load generator every echo server is measured with.
 *
 *   echo-load port connections size seconds server-pid
 *
 * Opens `connections` TCP connections to 127.0.0.1:port, and on each one sends
 * a message of `size` bytes, waits until all of it has come back, and sends the
 * next (ping-pong, one message in flight per connection). A message is one
 * line (its last byte is a newline), for the line echo servers too. After a warm-up of
 * 0.5 s it counts round trips for `seconds` and prints one line:
 *
 *   <round trips per second> <server CPU ns per round trip> <round trips>
 *   <server user CPU ns per round trip> <server system CPU ns per round trip>
 *
 * The server's CPU time is utime + stime of /proc/<server-pid>/stat (all its
 * threads, io_uring workers included) read at the start and the end of the
 * measured window; user and system time are also given apart (the kernel
 * splits the two by sampling at its tick: a share of a few percent is coarse,
 * and one under about 1 % can read as 0; bench.sh replaces this split with
 * one sampled by perf). When the window starts it says "echo-load:
 * measuring" on stderr. One
 * thread, level-triggered epoll, plain syscalls: the same client for every
 * server. Plain C, no eddy, so that the client costs the same whichever
 * server it drives.
 *
 * With ECHO_LOAD_EXACT=1 in the environment (for counting the server's
 * system calls per round trip, under strace): no warm-up, round trips are
 * counted from the first message; at the end no new message is sent, those
 * in flight are waited for, and the server is killed (SIGTERM) before any
 * connection closes. Every receive and send the server made is then part of
 * a round trip counted. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define WARMUP_NS       500000000LL
#define CONNECT_WAIT_NS 5000000000LL /* the server may still be starting */

struct conn {
    int fd;
    size_t sent, received; /* of the current message */
    int want_out;          /* EPOLLOUT registered */
};

static size_t msg_size;
static char *msg, *scratch;
static int epfd;
static bool draining;  /* exact mode, at the end: no new message */
static long in_flight; /* exact mode: messages not yet back, while draining */

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* utime and stime of a process, in ns; false if they cannot be read. */
static bool proc_cpu_ns(long pid, int64_t *user, int64_t *sys)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f) return false;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')'); /* the command name may hold spaces */
    if (!p) return false;
    unsigned long long utime, stime;
    /* after ")": state(3) ppid pgrp session tty tpgid flags minflt cminflt
     * majflt cmajflt utime(14) stime(15) */
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime, &stime) != 2)
        return false;
    double tick_ns = 1000000000.0 / sysconf(_SC_CLK_TCK);
    *user = (int64_t)(utime * tick_ns);
    *sys = (int64_t)(stime * tick_ns);
    return true;
}

static void set_events(struct conn *c, int want_out)
{
    if (c->want_out == want_out) return;
    struct epoll_event ev = {.events = EPOLLIN | (want_out ? EPOLLOUT : 0), .data.ptr = c};
    if (epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev) < 0) {
        perror("echo-load: epoll_ctl");
        exit(1);
    }
    c->want_out = want_out;
}

static void pump_send(struct conn *c)
{
    while (c->sent < msg_size) {
        ssize_t n = send(c->fd, msg + c->sent, msg_size - c->sent, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN) break;
            perror("echo-load: send");
            exit(1);
        }
        c->sent += (size_t)n;
    }
    set_events(c, c->sent < msg_size);
}

/* Reads what has come back; returns the round trips completed (0 or 1). */
static int pump_recv(struct conn *c)
{
    for (;;) {
        ssize_t n = recv(c->fd, scratch, msg_size - c->received, 0);
        if (n < 0) {
            if (errno == EAGAIN) return 0;
            perror("echo-load: recv");
            exit(1);
        }
        if (n == 0) {
            fprintf(stderr, "echo-load: the server closed a connection\n");
            exit(1);
        }
        c->received += (size_t)n;
        if (c->received == msg_size) {
            c->sent = c->received = 0;
            if (draining)
                in_flight--;
            else
                pump_send(c);
            return 1;
        }
    }
}

static int connect_one(uint16_t port)
{
    struct sockaddr_in sa = {
        .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int64_t give_up = now_ns() + CONNECT_WAIT_NS;
    for (;;) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0) {
            perror("echo-load: socket");
            exit(1);
        }
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
            int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
            fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
            return fd;
        }
        int err = errno;
        close(fd);
        if (err != ECONNREFUSED || now_ns() > give_up) {
            fprintf(stderr, "echo-load: connect to port %u: %s\n", port, strerror(err));
            exit(1);
        }
        usleep(20000);
    }
}

int main(int argc, char **argv)
{
    if (argc != 6) {
        fprintf(stderr, "usage: %s port connections size seconds server-pid\n", argv[0]);
        return 2;
    }
    uint16_t port = (uint16_t)atoi(argv[1]);
    int nconn = atoi(argv[2]);
    msg_size = strtoul(argv[3], NULL, 10);
    double seconds = atof(argv[4]);
    long server_pid = atol(argv[5]);
    if (nconn <= 0 || msg_size == 0 || seconds <= 0) {
        fprintf(stderr, "echo-load: bad arguments\n");
        return 2;
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)nconn + 64) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    msg = malloc(msg_size);
    scratch = malloc(msg_size);
    struct conn *conns = calloc((size_t)nconn, sizeof(*conns));
    if (!msg || !scratch || !conns) return 1;
    memset(msg, 'x', msg_size);
    msg[msg_size - 1] = '\n'; /* one line: the line echo servers (bench/lines-*) take it too */
    if ((epfd = epoll_create1(EPOLL_CLOEXEC)) < 0) return 1;

    for (int i = 0; i < nconn; i++) {
        struct conn *c = &conns[i];
        c->fd = connect_one(port);
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        if (epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev) < 0) {
            perror("echo-load: epoll_ctl");
            return 1;
        }
    }
    for (int i = 0; i < nconn; i++)
        pump_send(&conns[i]);

    const char *exact_env = getenv("ECHO_LOAD_EXACT");
    bool exact = exact_env && *exact_env == '1';
    in_flight = nconn;
    struct epoll_event events[256];
    int64_t start = now_ns(), t0 = start + (exact ? 0 : WARMUP_NS);
    int64_t t1 = t0 + (int64_t)(seconds * 1e9);
    int64_t user0 = 0, sys0 = 0, count = 0;
    bool cpu_ok = false;
    int measuring = 0;
    for (;;) {
        int64_t now = now_ns();
        if (!measuring && now >= t0) {
            measuring = 1;
            fputs("echo-load: measuring\n", stderr); /* bench.sh starts its sampling */
            t0 = now;
            t1 = t0 + (int64_t)(seconds * 1e9);
            cpu_ok = proc_cpu_ns(server_pid, &user0, &sys0);
            count = 0;
        } else if (measuring && now >= t1 && exact && !draining) {
            draining = true;
        } else if (measuring && now >= t1 && (!exact || in_flight == 0)) {
            if (exact) kill((pid_t)server_pid, SIGTERM);
            int64_t user1 = 0, sys1 = 0;
            cpu_ok = proc_cpu_ns(server_pid, &user1, &sys1) && cpu_ok && count;
            double elapsed = (double)(now - t0) / 1e9;
            double user = cpu_ok ? (double)(user1 - user0) / count : -1;
            double sys = cpu_ok ? (double)(sys1 - sys0) / count : -1;
            printf("%.0f %.1f %lld %.1f %.1f\n", count / elapsed, cpu_ok ? user + sys : -1,
                   (long long)count, user, sys);
            break;
        }
        int n = epoll_wait(epfd, events, 256, 100);
        if (n < 0 && errno != EINTR) {
            perror("echo-load: epoll_wait");
            return 1;
        }
        for (int i = 0; i < n; i++) {
            struct conn *c = events[i].data.ptr;
            if (events[i].events & EPOLLOUT) pump_send(c);
            if (events[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) count += pump_recv(c);
        }
    }
    for (int i = 0; i < nconn; i++)
        close(conns[i].fd);
    return 0;
}
