/* SPDX-License-Identifier: MIT */
/* bench/send-zc: where zero-copy sends start to pay, on io_uring.
 *
 * For each send size from 1 KiB to 1 MiB, one task eddy_send()s TOTAL bytes
 * over a loopback TCP connection in sends of that size while another task of
 * the same loop receives them, once with copying sends
 * (EDDY_CAPS_DISABLE=zerocopy_send) and once with every send zero-copy
 * (EDDY_URING_SEND_ZC_MIN=1). Each figure is the median of RUNS runs:
 * throughput by the wall clock, and this thread's CPU time per MiB (the
 * loopback's kernel work runs on it too). The crossover is the smallest size
 * from which zero-copy is at least as fast; backends/uring.c's ZC_MIN_KIB
 * comes from it (docs/performance.md). This is a benchmark, not a test.
 *
 *   bench/send-zc [MiB per run]   (default 256) */
#define _GNU_SOURCE
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "eddy.h"

#include "bench.h"

#define RUNS      5
#define MAX_CHUNK (1024 * 1024)

static size_t total_bytes = (size_t)256 << 20;

struct run {
    eddy_sock *a, *b;
    size_t chunk;
    unsigned char *out, *in;
    int err;
};

static int64_t wall_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static intptr_t sender(void *arg)
{
    struct run *r = arg;
    for (size_t sent = 0; sent < total_bytes; sent += r->chunk) {
        ssize_t n = eddy_send(r->a, r->out, r->chunk);
        if (n != (ssize_t)r->chunk) return n < 0 ? n : -EIO;
    }
    return 0;
}

static intptr_t receiver(void *arg)
{
    struct run *r = arg;
    for (size_t got = 0; got < total_bytes;) {
        ssize_t n = eddy_recv(r->b, r->in, MAX_CHUNK);
        if (n <= 0) return n < 0 ? n : -EPIPE;
        got += (size_t)n;
    }
    return 0;
}

static intptr_t run_main(void *arg)
{
    struct run *r = arg;
    eddy_sock *listener;
    int err = eddy_tcp_listen(&listener, "127.0.0.1", 0, 0);
    if (err < 0) return err;
    if ((err = eddy_tcp_connect(&r->a, "127.0.0.1", (uint16_t)eddy_sock_port(listener))) < 0 ||
        (err = eddy_accept(listener, &r->b)) < 0)
        return err;
    eddy_sock_close(listener);
    eddy_task *rx = eddy_spawn(NULL, receiver, r);
    intptr_t sent = sender(r), got = -1;
    eddy_task_join(rx, &got);
    eddy_sock_close(r->a);
    eddy_sock_close(r->b);
    return sent < 0 ? sent : got;
}

/* One run of chunk-sized sends, zero-copy or not: MB/s and CPU ns per MiB. */
static int measure(size_t chunk, bool zc, unsigned char *out, unsigned char *in, double *mbps,
                   double *cpu_per_mib)
{
    if (zc) {
        unsetenv("EDDY_CAPS_DISABLE");
        setenv("EDDY_URING_SEND_ZC_MIN", "1", 1);
    } else {
        setenv("EDDY_CAPS_DISABLE", "zerocopy_send", 1);
    }
    eddy_loop_options opts = {.backend = "io_uring"};
    eddy_loop *loop;
    int err = eddy_loop_new(&loop, &opts);
    if (err < 0) return err;
    if (zc && eddy_loop_supports(loop, EDDY_CAP_ZEROCOPY_SEND) != EDDY_NATIVE) {
        eddy_loop_free(loop);
        return -ENOTSUP;
    }
    struct run r = {.chunk = chunk, .out = out, .in = in};
    int64_t w0 = wall_ns(), c0 = cpu_ns();
    eddy_task *t = eddy_spawn(loop, run_main, &r);
    intptr_t result = -1;
    err = eddy_loop_run(loop);
    if (err == 0) err = eddy_task_join(t, &result);
    int64_t w1 = wall_ns(), c1 = cpu_ns();
    eddy_loop_free(loop);
    if (err == 0) err = (int)result;
    double mib = (double)total_bytes / (1 << 20);
    *mbps = mib / ((double)(w1 - w0) / 1e9);
    *cpu_per_mib = (double)(c1 - c0) / mib;
    return err;
}

int main(int argc, char **argv)
{
    if (argc > 1) total_bytes = (size_t)strtoul(argv[1], NULL, 10) << 20;
    unsigned char *out = malloc(MAX_CHUNK), *in = malloc(MAX_CHUNK);
    if (!out || !in) return 1;
    for (size_t i = 0; i < MAX_CHUNK; i++)
        out[i] = (unsigned char)(i * 131 + 7);
    printf("eddy_send over loopback TCP, io_uring, %zu MiB per run, median of %d\n",
           total_bytes >> 20, RUNS);
    printf("%8s  %12s %12s  %14s %14s\n", "size", "copy MiB/s", "zc MiB/s", "copy CPU ns/MiB",
           "zc CPU ns/MiB");
    size_t crossover = 0;
    for (size_t chunk = 1024; chunk <= MAX_CHUNK; chunk *= 2) {
        double rate[2][RUNS], cpu[2][RUNS];
        for (int i = 0; i < RUNS; i++)
            for (int zc = 0; zc < 2; zc++) {
                int err = measure(chunk, zc, out, in, &rate[zc][i], &cpu[zc][i]);
                if (err < 0) {
                    fprintf(stderr, "%zu bytes, %s: %s\n", chunk, zc ? "zc" : "copy",
                            eddy_strerror(err));
                    return 1;
                }
            }
        double copy_rate = median(rate[0], RUNS), zc_rate = median(rate[1], RUNS);
        printf("%6zu K  %12.0f %12.0f  %14.0f %14.0f\n", chunk / 1024, copy_rate, zc_rate,
               median(cpu[0], RUNS), median(cpu[1], RUNS));
        if (zc_rate >= copy_rate) {
            if (!crossover) crossover = chunk;
        } else {
            crossover = 0;
        }
    }
    if (crossover)
        printf("zero-copy is at least as fast from %zu KiB on\n", crossover / 1024);
    else
        printf("zero-copy never caught up with copying sends here\n");
    free(out);
    free(in);
    return 0;
}
