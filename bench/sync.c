/* SPDX-License-Identifier: MIT */
/* bench/sync: what the synchronisation primitives cost, beside asyncio's
 * (bench/sync_asyncio.py) and Go's (bench/sync_chan.go, when `go` is
 * installed), all measured in this run.
 *
 *   lock hand-off     two tasks take turns with one lock: each acquires it,
 *                     yields while holding it (so the other queues up), and
 *                     releases it, which hands it over (ns per acquisition)
 *   queue round trip  A puts into one queue and gets from a second; B gets
 *                     from the first and puts into the second (ns per round
 *                     trip: two puts, two gets, two task switches). Go: two
 *                     unbuffered channels between two goroutines.
 *
 *   bench/sync [SRCDIR]   (SRCDIR: where bench/sync_asyncio.py is; default
 *                          $srcdir, else .)
 *
 * eddy's figures are the median of 5 runs, in this thread's CPU time;
 * asyncio's the median of 3, in its thread's CPU time; Go's (GOMAXPROCS=1)
 * in wall time. Target: eddy at least 20x faster than asyncio on both. This
 * is a benchmark, not a test: it reports whether the target is met and exits
 * 0 unless eddy itself fails. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eddy.h"

#include "bench.h"

#define RUNS        5
#define HANDOFFS    1000000L /* acquisitions per task per run */
#define ROUND_TRIPS 1000000L /* per run */

struct pair {
    eddy_lock *lock;
    eddy_queue *there, *back;
};

static intptr_t lock_turns(void *arg)
{
    struct pair *p = arg;
    for (long i = 0; i < HANDOFFS; i++) {
        if (eddy_lock_acquire(p->lock) < 0) return -EIO;
        if (eddy_yield() < 0) return -EIO;
        if (eddy_lock_release(p->lock) < 0) return -EIO;
    }
    return 0;
}

static intptr_t pinger(void *arg)
{
    struct pair *p = arg;
    for (long i = 0; i < ROUND_TRIPS; i++) {
        intptr_t v;
        if (eddy_queue_put(p->there, i) < 0 || eddy_queue_get(p->back, &v) < 0 || v != i)
            return -EIO;
    }
    return 0;
}

static intptr_t ponger(void *arg)
{
    struct pair *p = arg;
    for (long i = 0; i < ROUND_TRIPS; i++) {
        intptr_t v;
        if (eddy_queue_get(p->there, &v) < 0 || eddy_queue_put(p->back, v) < 0) return -EIO;
    }
    return 0;
}

/* Runs fa and fb as two tasks; the thread CPU time they took, or -1. */
static int64_t run_two(eddy_task_fn fa, eddy_task_fn fb, struct pair *p)
{
    eddy_loop *loop;
    if (eddy_loop_new(&loop, NULL) < 0) return -1;
    eddy_task *a = eddy_spawn(loop, fa, p), *b = eddy_spawn(loop, fb, p);
    int64_t t0 = cpu_ns();
    int err = eddy_loop_run(loop);
    int64_t took = cpu_ns() - t0;
    intptr_t ra = -1, rb = -1;
    if (a) eddy_task_join(a, &ra);
    if (b) eddy_task_join(b, &rb);
    eddy_loop_free(loop);
    return err == 0 && ra == 0 && rb == 0 ? took : -1;
}

static int measure_eddy(double *lock_ns, double *queue_ns)
{
    double lock[RUNS], queue[RUNS];
    for (int r = 0; r < RUNS; r++) {
        struct pair p = {0};
        if (eddy_lock_new(&p.lock) < 0 || eddy_queue_new(&p.there, NULL) < 0 ||
            eddy_queue_new(&p.back, NULL) < 0)
            return -ENOMEM;
        int64_t tl = run_two(lock_turns, lock_turns, &p);
        int64_t tq = run_two(pinger, ponger, &p);
        eddy_lock_free(p.lock);
        eddy_queue_free(p.there);
        eddy_queue_free(p.back);
        if (tl < 0 || tq < 0) return -EIO;
        lock[r] = (double)tl / (2.0 * HANDOFFS);
        queue[r] = (double)tq / ROUND_TRIPS;
    }
    *lock_ns = median(lock, RUNS);
    *queue_ns = median(queue, RUNS);
    return 0;
}

/* Runs cmd, which prints "LOCK_NS QUEUE_NS"; false if it could not. */
static bool measure_peer(const char *cmd, double *lock_ns, double *queue_ns)
{
    FILE *f = popen(cmd, "r");
    if (!f) return false;
    int n = fscanf(f, "%lf %lf", lock_ns, queue_ns);
    int status = pclose(f);
    return n == 2 && status == 0;
}

static void row(const char *name, double lock_ns, double queue_ns, double base_lock,
                double base_queue)
{
    printf("  %-8s %14.1f %18.1f %10.1fx %12.1fx\n", name, lock_ns, queue_ns, lock_ns / base_lock,
           queue_ns / base_queue);
}

int main(int argc, char **argv)
{
    const char *srcdir = argc > 1 ? argv[1] : getenv("srcdir");
    if (!srcdir) srcdir = ".";
    double lock_ns, queue_ns;
    int err = measure_eddy(&lock_ns, &queue_ns);
    if (err < 0) {
        fprintf(stderr, "sync: eddy failed: %s\n", eddy_strerror(err));
        return 1;
    }
    printf("sync primitives: ns per operation (and how many times eddy's)\n");
    printf("  %-8s %14s %18s %11s %13s\n", "", "lock hand-off", "queue round trip", "lock",
           "queue");
    printf("  %-8s %14.1f %18.1f\n", "eddy", lock_ns, queue_ns);

    char cmd[4096];
    double py_lock, py_queue, go_lock, go_queue;
    snprintf(cmd, sizeof(cmd), "python3 '%s/bench/sync_asyncio.py' 2>/dev/null", srcdir);
    bool have_py = measure_peer(cmd, &py_lock, &py_queue);
    if (have_py)
        row("asyncio", py_lock, py_queue, lock_ns, queue_ns);
    else
        printf("  asyncio  (python3 missing or failed: left out)\n");
    snprintf(cmd, sizeof(cmd),
             "command -v go >/dev/null 2>&1 && GOMAXPROCS=1 go run '%s/bench/sync_chan.go' "
             "2>/dev/null",
             srcdir);
    if (measure_peer(cmd, &go_lock, &go_queue))
        row("go", go_lock, go_queue, lock_ns, queue_ns);
    else
        printf("  go       (not installed: left out)\n");
    if (have_py) {
        bool met = py_lock >= 20 * lock_ns && py_queue >= 20 * queue_ns;
        printf("  target: eddy >= 20x faster than asyncio on both: %s (%.1fx, %.1fx)\n",
               met ? "met" : "MISSED", py_lock / lock_ns, py_queue / queue_ns);
    }
    return 0;
}
