/* SPDX-License-Identifier: MIT */
/* bench/switch: what a task switch costs.
 *
 *   raw switch      eddy__fiber_switch between two fibers, no loop (ns per switch)
 *   yield           ns per eddy_yield round trip: the task switches to the loop,
 *                   the loop runs its iteration, and switches back to a task
 *                   (two tasks yield to each other; each call is one trip)
 *   swapcontext     a round trip with glibc's swapcontext (main -> peer -> main,
 *                   two switches like a yield's), the usual portable way, which
 *                   makes a sigprocmask syscall per switch
 *
 * Each figure is the median of 5 runs, timed with this thread's CPU clock so
 * that other processes sharing the machine do not count. Targets: a switch
 * <= 5 ns, a yield round trip <= 1/20 of a swapcontext round trip. This is a
 * benchmark, not a test: it reports whether the targets are met and exits 0.
 *
 * The raw switch needs the engine's internal fiber API, so this program links
 * libeddy statically; everything else uses only include/eddy.h. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <ucontext.h>

#include "eddy.h"
#include "../lib/fiber.h"

#include "bench.h"

#define RUNS         5
#define SWITCHES     20000000L /* raw switch round trips per run */
#define YIELDS       2000000L  /* yields per task per run */
#define SWAPCONTEXTS 1000000L  /* swapcontext round trips per run */

/* ---- raw fiber switch ---------------------------------------------------- */

static struct eddy__fiber thread_fiber, fiber_a, fiber_b;
static double raw_ns;

/* Both fibers switch from this one function, as the tasks of a program
 * switch from the same few places (eddy_yield, an await): the return stack
 * predictor then stays right, and the figure is the switch itself. */
static __attribute__((noinline)) void bounce(struct eddy__fiber *self, struct eddy__fiber *peer,
                                             long n)
{
    for (long i = 0; i < n; i++)
        eddy__fiber_switch(self, peer);
}

static void fiber_b_main(void *arg)
{
    for (;;)
        bounce(&fiber_b, &fiber_a, SWITCHES);
}

static void fiber_a_main(void *arg)
{
    eddy__fiber_switch(&fiber_a, &fiber_b); /* let b reach its loop */
    int64_t t0 = cpu_ns();
    bounce(&fiber_a, &fiber_b, SWITCHES);
    raw_ns = (double)(cpu_ns() - t0) / (2.0 * SWITCHES);
    eddy__fiber_exit(&fiber_a, &thread_fiber);
}

static int run_raw(double *ns_per_switch)
{
    struct eddy__stack_pool pool;
    struct eddy__stack *sa, *sb;
    int err = eddy__stack_pool_init(&pool, 64 * 1024, true);
    if (err < 0) return err;
    if ((err = eddy__stack_get(&pool, &sa)) < 0) goto out;
    if ((err = eddy__stack_get(&pool, &sb)) < 0) {
        eddy__stack_put(&pool, sa);
        goto out;
    }
    eddy__fiber_init(&fiber_a, sa, fiber_a_main, NULL);
    eddy__fiber_init(&fiber_b, sb, fiber_b_main, NULL);
    eddy__fiber_switch(&thread_fiber, &fiber_a);
    *ns_per_switch = raw_ns;
    eddy__stack_put(&pool, sb); /* b never ends; its stack is simply dropped */
    eddy__stack_put(&pool, sa);
out:
    eddy__stack_pool_destroy(&pool);
    return err;
}

/* ---- eddy_yield round trip ------------------------------------------------- */

static intptr_t yielder(void *arg)
{
    for (long i = 0; i < YIELDS; i++)
        if (eddy_yield() < 0) return -1;
    return 0;
}

static void never(void *arg)
{
    (void)arg;
}

/* through_loop: a far timer is pending, so every yield goes back to the loop
 * for a full iteration (timers to check) instead of the task starting the
 * next iteration itself, as a server with timeouts pending would. */
static int run_yield(double *ns_per_round_trip, const char **backend, bool through_loop)
{
    eddy_loop *loop;
    int err = eddy_loop_new(&loop, NULL);
    if (err < 0) return err;
    *backend = eddy_loop_backend(loop);
    eddy_timer *far = NULL;
    if (through_loop && (err = eddy_call_later(loop, INT64_MAX / 2, never, NULL, &far)) < 0) {
        eddy_loop_free(loop);
        return err;
    }
    eddy_task *a = eddy_spawn(loop, yielder, NULL);
    eddy_task *b = eddy_spawn(loop, yielder, NULL);
    if (!a || !b) {
        if (a) eddy_task_detach(a);
        if (b) eddy_task_detach(b);
        eddy_loop_free(loop);
        return -ENOMEM;
    }
    int64_t t0 = cpu_ns();
    if (far) {
        /* eddy_loop_run would wait for the timer: run until both are done. */
        eddy_future *both[2] = {eddy_task_future(a), eddy_task_future(b)};
        err = 0;
        while (err == 0 && !(eddy_future_done(both[0]) && eddy_future_done(both[1]))) {
            eddy_loop_stop(loop);
            err = eddy_loop_run(loop);
        }
    } else {
        err = eddy_loop_run(loop);
    }
    int64_t t1 = cpu_ns();
    if (far) eddy_timer_cancel(far);
    intptr_t ra = -1, rb = -1;
    eddy_task_join(a, &ra);
    eddy_task_join(b, &rb);
    eddy_loop_free(loop);
    if (err == 0 && (ra != 0 || rb != 0)) err = -EIO;
    *ns_per_round_trip = (double)(t1 - t0) / (2 * YIELDS); /* each task yields YIELDS times */
    return err;
}

/* ---- swapcontext round trip ------------------------------------------------ */

static ucontext_t uc_main, uc_peer;

static void peer_main(void)
{
    for (;;)
        swapcontext(&uc_peer, &uc_main);
}

static int run_swapcontext(double *ns_per_round_trip)
{
    size_t size = 64 * 1024;
    void *stack = malloc(size);
    if (!stack) return -ENOMEM;
    if (getcontext(&uc_peer) < 0) {
        free(stack);
        return -ENOSYS;
    }
    uc_peer.uc_stack.ss_sp = stack;
    uc_peer.uc_stack.ss_size = size;
    uc_peer.uc_link = NULL;
    makecontext(&uc_peer, peer_main, 0);
    swapcontext(&uc_main, &uc_peer); /* warm up */
    int64_t t0 = cpu_ns();
    for (long i = 0; i < SWAPCONTEXTS; i++)
        swapcontext(&uc_main, &uc_peer);
    *ns_per_round_trip = (double)(cpu_ns() - t0) / SWAPCONTEXTS;
    free(stack);
    return 0;
}

int main(void)
{
    double raw[RUNS], yield[RUNS], yield_loop[RUNS], swap[RUNS];
    const char *backend = "?";
    for (int r = 0; r < RUNS; r++) {
        int err = run_raw(&raw[r]);
        if (err == 0) err = run_yield(&yield[r], &backend, false);
        if (err == 0) err = run_yield(&yield_loop[r], &backend, true);
        if (err == 0) err = run_swapcontext(&swap[r]);
        if (err < 0) {
            fprintf(stderr, "switch: run %d failed: %s\n", r, eddy_strerror(err));
            return 1;
        }
    }
    double raw_med = median(raw, RUNS), yield_med = median(yield, RUNS);
    double swap_med = median(swap, RUNS);
    double ratio = swap_med / yield_med;
    printf("context switch, median of %d runs (thread CPU time), backend %s\n", RUNS, backend);
    printf("  raw fiber switch          %8.2f ns/switch       target <= 5 ns: %s\n", raw_med,
           raw_med <= 5.0 ? "met" : "MISSED");
    printf("  eddy_yield round trip     %8.2f ns/round trip\n", yield_med);
    printf("  eddy_yield, timer pending %8.2f ns/round trip (a full loop iteration each)\n",
           median(yield_loop, RUNS));
    printf("  swapcontext round trip    %8.2f ns/round trip\n", swap_med);
    printf("  swapcontext / yield       %8.1f x               target >= 20x: %s\n", ratio,
           ratio >= 20.0 ? "met" : "MISSED");
    printf("  yield / raw switch        %8.1f x\n", yield_med / raw_med);
    return 0;
}
