/* SPDX-License-Identifier: MIT */
/* bench/loops: what crossing between two loops on two threads costs, beside
 * two plain threads doing the same over a pipe and over eventfds, all in this
 * run, in alternating rounds.
 *
 *   round trip   A sends a number, B sends it back, A waits for it: two
 *                pipes (blocking read/write), two eventfds, two eddy
 *                channels of capacity 1 between two loops, and
 *                eddy_spawn_threadsafe + eddy_task_join (A's proxy posts
 *                the spawn to B, the task's end is posted back)
 *   throughput   A sends items into an eddy channel, B receives them
 *
 * The two sides run on two threads pinned to the first two CPUs the process
 * may use (eddy_run_threads pins its loops the same way). Each figure is the
 * median over the rounds of: the wall time per operation, and the CPU time
 * per operation of the whole process (both threads; user and system from
 * getrusage), measured from the first operation to the last, after the
 * sides have met. Each eddy contender runs on io_uring and on epoll where
 * this build has them; on io_uring once more with EDDY_CAPS_DISABLE=msg_ring
 * (wakes through the eventfd rather than IORING_OP_MSG_RING).
 *
 *   bench/loops [ROUNDS] [TRIPS] [ITEMS]   (defaults 7, 20000, 1000000)
 *
 * A benchmark, not a test: exits 0 unless something fails. */
#define _GNU_SOURCE /* pthread_setaffinity_np, sched_getaffinity */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "eddy.h"

#include "bench.h"

#define MAX_ROUNDS 31

static long trips = 20000, items = 1000000;

/* ---- the clocks ------------------------------------------------------------- */

struct stamp {
    int64_t wall, user, sys;
};

static int64_t tv_ns(struct timeval tv)
{
    return (int64_t)tv.tv_sec * 1000000000 + (int64_t)tv.tv_usec * 1000;
}

static struct stamp stamp_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru); /* every thread of the process */
    return (struct stamp){(int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec, tv_ns(ru.ru_utime),
                          tv_ns(ru.ru_stime)};
}

/* One round's figures per operation. */
struct figure {
    double wall, user, sys;
};

static struct figure per_op(struct stamp a, struct stamp b, long n)
{
    return (struct figure){(double)(b.wall - a.wall) / n, (double)(b.user - a.user) / n,
                           (double)(b.sys - a.sys) / n};
}

/* ---- two plain threads -------------------------------------------------------- */

static cpu_set_t allowed; /* the process's CPUs, read before any thread is pinned */

static int cpu_of(int index) /* the index-th CPU this process may use, or -1 */
{
    int count = CPU_COUNT(&allowed);
    if (count == 0) return -1;
    int want = index % count;
    for (int cpu = 0; cpu < CPU_SETSIZE; cpu++)
        if (CPU_ISSET(cpu, &allowed) && want-- == 0) return cpu;
    return -1;
}

static void pin_self(int index)
{
    int cpu = cpu_of(index);
    if (cpu < 0) return;
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(cpu, &one);
    (void)pthread_setaffinity_np(pthread_self(), sizeof one, &one);
}

/* A round trip between two threads over two channels of descriptors: A
 * writes to there_w, B reads there_r and writes back_w, A reads back_r.
 * Pipes carry 1 byte, eventfds 8 (both ends of one eventfd are one fd). A
 * value of 2 ends the echo. */
struct plain {
    int there_r, there_w, back_r, back_w;
    size_t len;
    int err;
    struct stamp start, end;
};

static bool xfer(int fd, bool write_it, size_t len, uint64_t v)
{
    ssize_t n = write_it ? write(fd, &v, len) : read(fd, &v, len);
    return n == (ssize_t)len && v == 1;
}

static void *plain_echo(void *arg)
{
    struct plain *p = arg;
    pin_self(1);
    while (xfer(p->there_r, false, p->len, 0))
        if (!xfer(p->back_w, true, p->len, 1)) break;
    return NULL;
}

static void *plain_ping(void *arg)
{
    struct plain *p = arg;
    pin_self(0);
    p->err = 0;
    for (long i = -100; i < trips && !p->err; i++) { /* 100 to meet and warm up */
        if (i == 0) p->start = stamp_now();
        if (!xfer(p->there_w, true, p->len, 1) || !xfer(p->back_r, false, p->len, 0)) p->err = -EIO;
    }
    p->end = stamp_now();
    (void)xfer(p->there_w, true, p->len, 2);
    return NULL;
}

/* Both sides on threads of their own: the main thread stays unpinned. */
static int plain_round(struct plain *p, struct figure *out)
{
    pthread_t a, b;
    if (pthread_create(&b, NULL, plain_echo, p) != 0) return -EAGAIN;
    if (pthread_create(&a, NULL, plain_ping, p) != 0) {
        (void)xfer(p->there_w, true, p->len, 2);
        pthread_join(b, NULL);
        return -EAGAIN;
    }
    pthread_join(a, NULL);
    pthread_join(b, NULL);
    *out = per_op(p->start, p->end, trips);
    return p->err;
}

static int pipe_round(struct figure *out)
{
    int there[2], back[2] = {-1, -1};
    if (pipe(there) < 0 || pipe(back) < 0) return -errno; /* a benchmark: fds leak on failure */
    struct plain p = {
        .there_r = there[0], .there_w = there[1], .back_r = back[0], .back_w = back[1], .len = 1};
    int err = plain_round(&p, out);
    for (int i = 0; i < 2; i++) {
        close(there[i]);
        close(back[i]);
    }
    return err;
}

static int eventfd_round(struct figure *out)
{
    int there = eventfd(0, EFD_CLOEXEC), back = eventfd(0, EFD_CLOEXEC);
    if (there < 0 || back < 0) return -errno;
    struct plain p = {.there_r = there, .there_w = there, .back_r = back, .back_w = back, .len = 8};
    int err = plain_round(&p, out);
    close(there);
    close(back);
    return err;
}

/* ---- two loops ------------------------------------------------------------------- */

enum mode { CHANNEL_TRIP, SPAWN_TRIP, THROUGHPUT };

struct loops {
    enum mode mode;
    int index;               /* atomic: which side a main is */
    eddy_channel *there;     /* A to B */
    eddy_channel *back;      /* B to A; B's first item says it is ready */
    eddy_loop *b_loop;       /* B's, for spawn_threadsafe */
    struct stamp start, end; /* end: set by the side that sees the last item */
};

static intptr_t echo_number(void *arg)
{
    return (intptr_t)arg;
}

static intptr_t side_b(struct loops *l)
{
    l->b_loop = eddy_loop_current();
    if (eddy_channel_send(l->back, 0) < 0) return -EIO; /* ready */
    intptr_t v;
    switch (l->mode) {
    case CHANNEL_TRIP:
        while (eddy_channel_recv(l->there, &v) == 0)
            if (eddy_channel_send(l->back, v) < 0) return -EIO;
        return 0;
    case SPAWN_TRIP: /* the tasks A spawns run here until A closes there */
        return eddy_channel_recv(l->there, &v) == -EPIPE ? 0 : -EIO;
    case THROUGHPUT:
        for (long i = 0; i < items; i++)
            if (eddy_channel_recv(l->there, &v) < 0 || v != i) return -EIO;
        l->end = stamp_now();
        return 0;
    }
    return -EINVAL;
}

static intptr_t side_a(struct loops *l)
{
    intptr_t v;
    if (eddy_channel_recv(l->back, &v) < 0) return -EIO; /* B is ready */
    int err = 0;
    switch (l->mode) {
    case CHANNEL_TRIP:
        for (long i = -100; i < trips && !err; i++) {
            if (i == 0) l->start = stamp_now();
            if (eddy_channel_send(l->there, i) < 0 || eddy_channel_recv(l->back, &v) < 0 || v != i)
                err = -EIO;
        }
        l->end = stamp_now();
        break;
    case SPAWN_TRIP:
        for (long i = -100; i < trips && !err; i++) {
            if (i == 0) l->start = stamp_now();
            /* + trips: a negative result would be an error */
            eddy_task *t = eddy_spawn_threadsafe(l->b_loop, echo_number, (void *)(i + trips));
            if (!t || eddy_task_join(t, &v) < 0 || v != i + trips) err = -EIO;
        }
        l->end = stamp_now();
        break;
    case THROUGHPUT:
        l->start = stamp_now();
        for (long i = 0; i < items && !err; i++)
            if (eddy_channel_send(l->there, i) < 0) err = -EIO;
        break;
    }
    (void)eddy_channel_close(l->there);
    return err;
}

static intptr_t loops_main(void *arg)
{
    struct loops *l = arg;
    int side = __atomic_fetch_add(&l->index, 1, __ATOMIC_ACQ_REL);
    return side == 0 ? side_a(l) : side_b(l);
}

static int loops_round(enum mode mode, const char *backend, bool msg_ring, struct figure *out)
{
    setenv("EDDY_BACKEND", backend, 1);
    if (msg_ring)
        unsetenv("EDDY_CAPS_DISABLE");
    else
        setenv("EDDY_CAPS_DISABLE", "msg_ring", 1);
    struct loops l = {.mode = mode};
    if (eddy_channel_new(&l.there, mode == THROUGHPUT ? 256 : 1) < 0 ||
        eddy_channel_new(&l.back, 1) < 0)
        return -ENOMEM;
    int err = eddy_run_threads(2, loops_main, &l);
    eddy_channel_free(l.there);
    eddy_channel_free(l.back);
    *out = per_op(l.start, l.end, mode == THROUGHPUT ? items : trips);
    return err;
}

/* ---- the table --------------------------------------------------------------------- */

struct contender {
    const char *name;
    int (*plain)(struct figure *);
    enum mode mode;
    const char *backend;
    bool msg_ring;
    struct figure f[MAX_ROUNDS];
    bool skip;
};

static bool backend_here(const char *name)
{
    eddy_loop_options o = EDDY_LOOP_OPTIONS_INIT(.backend = name);
    eddy_loop *loop;
    if (eddy_loop_new(&loop, &o) < 0) return false;
    eddy_loop_free(loop);
    return true;
}

static struct figure median_of(struct contender *c, int rounds)
{
    double w[MAX_ROUNDS], u[MAX_ROUNDS], s[MAX_ROUNDS];
    for (int r = 0; r < rounds; r++) {
        w[r] = c->f[r].wall;
        u[r] = c->f[r].user;
        s[r] = c->f[r].sys;
    }
    return (struct figure){median(w, rounds), median(u, rounds), median(s, rounds)};
}

static void print_row(struct contender *c, int rounds, const struct figure *base, bool rate)
{
    if (c->skip) {
        printf("  %-44s (failed or absent: left out)\n", c->name);
        return;
    }
    struct figure m = median_of(c, rounds);
    double cpu = m.user + m.sys;
    if (rate)
        printf("  %-44s %10.2f M/s %10.0f %8.0f %8.0f\n", c->name, 1e3 / m.wall, cpu, m.user,
               m.sys);
    else
        printf("  %-44s %10.2f us %10.0f %8.0f %8.0f %7.2fx %6.2fx\n", c->name, m.wall / 1e3, cpu,
               m.user, m.sys, m.wall / base->wall, cpu / (base->user + base->sys));
}

int main(int argc, char **argv)
{
    if (sched_getaffinity(0, sizeof allowed, &allowed) != 0) CPU_ZERO(&allowed);
    int rounds = argc > 1 ? atoi(argv[1]) : 7;
    if (argc > 2) trips = atol(argv[2]);
    if (argc > 3) items = atol(argv[3]);
    if (rounds < 1 || rounds > MAX_ROUNDS || trips < 1 || items < 1) {
        fprintf(stderr, "usage: %s [ROUNDS (1-%d)] [TRIPS] [ITEMS]\n", argv[0], MAX_ROUNDS);
        return 2;
    }
#define EDDY(label, m, b, mr)                                                                      \
    {                                                                                              \
        .name = label, .mode = m, .backend = b, .msg_ring = mr                                     \
    }
    struct contender trip[] = {
        {.name = "pipe (two threads)", .plain = pipe_round},
        {.name = "eventfd (two threads)", .plain = eventfd_round},
        EDDY("channel, io_uring (MSG_RING)", CHANNEL_TRIP, "io_uring", true),
        EDDY("channel, io_uring (eventfd wake)", CHANNEL_TRIP, "io_uring", false),
        EDDY("channel, epoll", CHANNEL_TRIP, "epoll", true),
        EDDY("spawn_threadsafe+join, io_uring (MSG_RING)", SPAWN_TRIP, "io_uring", true),
        EDDY("spawn_threadsafe+join, io_uring (eventfd)", SPAWN_TRIP, "io_uring", false),
        EDDY("spawn_threadsafe+join, epoll", SPAWN_TRIP, "epoll", true),
    };
    struct contender flow[] = {
        EDDY("channel, io_uring (MSG_RING)", THROUGHPUT, "io_uring", true),
        EDDY("channel, io_uring (eventfd wake)", THROUGHPUT, "io_uring", false),
        EDDY("channel, epoll", THROUGHPUT, "epoll", true),
    };
#undef EDDY
    size_t ntrip = sizeof trip / sizeof *trip, nflow = sizeof flow / sizeof *flow;
    for (size_t i = 0; i < ntrip; i++)
        trip[i].skip = !trip[i].plain && !backend_here(trip[i].backend);
    for (size_t i = 0; i < nflow; i++)
        flow[i].skip = !backend_here(flow[i].backend);
    for (int r = 0; r < rounds; r++) {
        for (size_t i = 0; i < ntrip; i++) {
            struct contender *c = &trip[i];
            if (c->skip) continue;
            int err = c->plain ? c->plain(&c->f[r])
                               : loops_round(c->mode, c->backend, c->msg_ring, &c->f[r]);
            if (err < 0) {
                fprintf(stderr, "loops: %s: %s\n", c->name, eddy_strerror(err));
                c->skip = true;
            }
        }
        for (size_t i = 0; i < nflow; i++) {
            struct contender *c = &flow[i];
            if (!c->skip && loops_round(c->mode, c->backend, c->msg_ring, &c->f[r]) < 0) {
                fprintf(stderr, "loops: %s throughput failed\n", c->name);
                c->skip = true;
            }
        }
    }
    unsetenv("EDDY_BACKEND");
    unsetenv("EDDY_CAPS_DISABLE");
    printf("round trip between two threads (CPUs %d and %d), median of %d rounds of %ld\n",
           cpu_of(0), cpu_of(1), rounds, trips);
    printf("  %-44s %13s %10s %8s %8s %8s %7s\n", "", "latency", "CPU ns", "user", "sys", "vs pipe",
           "CPU");
    struct figure base = median_of(&trip[0], rounds);
    for (size_t i = 0; i < ntrip; i++)
        print_row(&trip[i], rounds, &base, false);
    printf("channel throughput between two loops (capacity 256), median of %d rounds of %ld "
           "items\n",
           rounds, items);
    printf("  %-44s %14s %10s %8s %8s\n", "", "items", "CPU ns", "user", "sys");
    for (size_t i = 0; i < nflow; i++)
        print_row(&flow[i], rounds, &base, true);
    return 0;
}
