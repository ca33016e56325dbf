/* SPDX-License-Identifier: MIT */
/* bench/timers: what a timer costs, eddy (eddy_call_later) or libuv (uv_timer).
 *
 *   timers eddy|uv
 *
 *   start+cancel  1 000 000 timers armed with deadlines spread at random over
 *                 [1 s, 2 s), then all cancelled in the order they were armed
 *                 (ns per timer, both steps); done twice on one loop: the
 *                 second round is the figure (warm: the memory of the timers
 *                 faulted in, as in a loop that keeps arming timers), the
 *                 first is reported too (cold: page faults included)
 *   start+fire    1 000 000 timers armed with deadlines spread at random over
 *                 [0, 10 ms) in whole ms (libuv's resolution), then the loop run
 *                 until all have fired (ns per timer: arming, the heap, the
 *                 callbacks; waiting is not counted)
 *
 * Thread CPU time, one run; `make bench` takes the median of alternating runs.
 * Prints "<start+cancel ns> <start+fire ns> <cold start+cancel ns>". eddy's
 * handles are allocated by eddy_call_later (as its API has it); libuv's
 * uv_timer_t are the caller's, allocated before the clock starts (as a libuv
 * user embeds them) and faulted in only by the cold round. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench.h"
#include "eddy.h"
#ifdef HAVE_LIBUV
#include <uv.h>
#endif

#define TIMERS 1000000

static long fired;

static uint64_t rng_state;

static uint64_t rng(void)
{
    uint64_t x = rng_state; /* xorshift64: the same deadlines for both libraries */
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return rng_state = x;
}

/* ---- eddy ------------------------------------------------------------------ */

static void on_fire(void *arg)
{
    fired++;
}

static int eddy_figures(double *cancel_ns, double *fire_ns, double *cold_ns)
{
    eddy_loop *loop;
    eddy_timer **timers = malloc(TIMERS * sizeof(*timers));
    if (!timers || eddy_loop_new(&loop, NULL) < 0) return -1;
    memset(timers, 0, TIMERS * sizeof(*timers)); /* the bench's own array: not counted */
    rng_state = 88172645463325252ULL;
    for (int round = 0; round < 2; round++) {
        int64_t t0 = cpu_ns();
        for (long i = 0; i < TIMERS; i++) {
            int64_t delay = 1000000000 + (int64_t)(rng() % 1000000000);
            if (eddy_call_later(loop, delay, on_fire, NULL, &timers[i]) < 0) return -1;
        }
        for (long i = 0; i < TIMERS; i++)
            eddy_timer_cancel(timers[i]);
        *(round ? cancel_ns : cold_ns) = (double)(cpu_ns() - t0) / TIMERS;
    }

    fired = 0;
    int64_t t0 = cpu_ns();
    for (long i = 0; i < TIMERS; i++) {
        int64_t delay = (int64_t)(rng() % 10) * 1000000;
        if (eddy_call_later(loop, delay, on_fire, NULL, NULL) < 0) return -1;
    }
    if (eddy_loop_run(loop) < 0) return -1;
    *fire_ns = (double)(cpu_ns() - t0) / TIMERS;
    eddy_loop_free(loop);
    free(timers);
    return fired == TIMERS ? 0 : -1;
}

/* ---- libuv ----------------------------------------------------------------- */

#ifdef HAVE_LIBUV
static void on_uv_fire(uv_timer_t *t)
{
    fired++;
}

static int uv_figures(double *cancel_ns, double *fire_ns, double *cold_ns)
{
    uv_loop_t loop;
    uv_timer_t *timers = malloc(TIMERS * sizeof(*timers));
    if (!timers || uv_loop_init(&loop) < 0) return -1;
    rng_state = 88172645463325252ULL;
    int64_t t0;
    for (int round = 0; round < 2; round++) {
        t0 = cpu_ns();
        for (long i = 0; i < TIMERS; i++) {
            uint64_t delay_ms = 1000 + rng() % 1000000000 / 1000000;
            uv_timer_init(&loop, &timers[i]);
            if (uv_timer_start(&timers[i], on_uv_fire, delay_ms, 0) < 0) return -1;
        }
        for (long i = 0; i < TIMERS; i++)
            uv_timer_stop(&timers[i]);
        *(round ? cancel_ns : cold_ns) = (double)(cpu_ns() - t0) / TIMERS;
        for (long i = 0; i < TIMERS; i++) /* a handle is initialised once: close before reuse */
            uv_close((uv_handle_t *)&timers[i], NULL);
        uv_run(&loop, UV_RUN_DEFAULT);
    }

    fired = 0;
    t0 = cpu_ns();
    for (long i = 0; i < TIMERS; i++) {
        uint64_t delay_ms = rng() % 10;
        uv_timer_init(&loop, &timers[i]);
        if (uv_timer_start(&timers[i], on_uv_fire, delay_ms, 0) < 0) return -1;
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    *fire_ns = (double)(cpu_ns() - t0) / TIMERS;
    for (long i = 0; i < TIMERS; i++)
        uv_close((uv_handle_t *)&timers[i], NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    free(timers);
    return fired == TIMERS ? 0 : -1;
}
#endif

int main(int argc, char **argv)
{
    double cancel_ns, fire_ns, cold_ns;
    int err = -1;
    if (argc == 2 && strcmp(argv[1], "eddy") == 0)
        err = eddy_figures(&cancel_ns, &fire_ns, &cold_ns);
#ifdef HAVE_LIBUV
    else if (argc == 2 && strcmp(argv[1], "uv") == 0)
        err = uv_figures(&cancel_ns, &fire_ns, &cold_ns);
#endif
    else {
        fprintf(stderr, "usage: %s eddy|uv\n", argv[0]);
        return 2;
    }
    if (err < 0) {
        fprintf(stderr, "timers %s: failed\n", argv[1]);
        return 1;
    }
    printf("%.1f %.1f %.1f\n", cancel_ns, fire_ns, cold_ns);
    return 0;
}
