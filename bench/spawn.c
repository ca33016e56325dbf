/* SPDX-License-Identifier: MIT */
/* bench/spawn: what a task costs.
 *
 *   spawn+join      100 000 tasks that yield once and return, thread CPU time
 *                   per task:
 *                   one at a time (each joined before the next is spawned), and
 *                   in a burst (all spawned, then all joined: 100 000 live
 *                   stacks), on a loop that had a burst before (warm: its stack
 *                   pool kept the stacks) and on a new loop (cold: every stack
 *                   mapped and faulted in). 5 loops, each with a cold burst and
 *                   then 2 rounds of one-at-a-time and warm burst, alternating.
 *   memory          1 000 000 tasks asleep at the same time on a loop with
 *                   EDDY_LOOP_NO_GUARD_PAGES: resident memory per task, read
 *                   from /proc/self/statm before spawning and once all sleep
 *                   (page tables, which statm leaves out, shown apart)
 *
 * `spawn bursts` runs 41 bursts on one loop and prints nothing, for
 * profiling the warm ones. `spawn join` runs one loop of the spawn+join part
 * (its cold burst, then 2 rounds of one-at-a-time and warm burst) and prints
 * one line, "ONE WARM COLD" in ns per task (the means of its rounds), for
 * comparing two builds in alternating runs.
 *
 * Targets: <= 5 KiB of resident memory per sleeping task; a warm burst
 * <= 1.5x one at a time per task. This is a benchmark,
 * not a test: it reports whether the target is met and exits 0. Only
 * include/eddy.h is used. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "eddy.h"

#include "bench.h"

#define RUNS        5
#define SPAWN_TASKS 100000
#define SLEEP_TASKS 1000000
#define RSS_TARGET  5120.0 /* bytes per task */

/* Resident bytes, from /proc/self/statm; -1 where there is none. */
static long long rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f) return -1;
    long long size, resident;
    int n = fscanf(f, "%lld %lld", &size, &resident);
    fclose(f);
    return n == 2 ? resident * sysconf(_SC_PAGESIZE) : -1;
}

/* Page-table bytes (VmPTE in /proc/self/status); -1 where there is none. */
static long long page_table_bytes(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    char line[256];
    long long kib = -1;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "VmPTE: %lld kB", &kib) == 1) break;
    fclose(f);
    return kib < 0 ? -1 : kib * 1024;
}

/* ---- spawn + join ---------------------------------------------------------- */

static eddy_task *tasks[SLEEP_TASKS];

/* Suspends once, so that in a burst every task holds its stack at the same
 * time (a task takes a stack when it first runs, and gives it back when it
 * ends). */
static intptr_t yield_once(void *arg)
{
    eddy_yield();
    return (intptr_t)arg;
}

/* What one loop measured: its first burst (stacks mapped and faulted in),
 * then BURSTS rounds of one-at-a-time and of a warm burst, alternating. */
#define BURSTS 2
struct spawn_run {
    double cold, one[BURSTS], warm[BURSTS]; /* ns per task */
    int err;
};

/* SPAWN_TASKS tasks spawned, all live at once, then joined. */
static double burst(struct spawn_run *run)
{
    int64_t t0 = cpu_ns();
    for (intptr_t i = 0; i < SPAWN_TASKS; i++)
        if (!(tasks[i] = eddy_spawn(NULL, yield_once, (void *)i))) {
            run->err = -ENOMEM;
            for (intptr_t j = 0; j < i; j++)
                eddy_task_detach(tasks[j]);
            return 0;
        }
    for (intptr_t i = 0; i < SPAWN_TASKS; i++) {
        intptr_t value = -1;
        int err = eddy_task_join(tasks[i], &value);
        if (err < 0 || value != i) run->err = err < 0 ? err : -EIO;
    }
    return (double)(cpu_ns() - t0) / SPAWN_TASKS;
}

/* SPAWN_TASKS tasks, each joined before the next is spawned. */
static double one_at_a_time(struct spawn_run *run)
{
    int64_t t0 = cpu_ns();
    for (intptr_t i = 0; i < SPAWN_TASKS; i++) {
        eddy_task *t = eddy_spawn(NULL, yield_once, (void *)i);
        intptr_t value = -1;
        int err = t ? eddy_task_join(t, &value) : -ENOMEM;
        if (err < 0 || value != i) run->err = err < 0 ? err : -EIO;
    }
    return (double)(cpu_ns() - t0) / SPAWN_TASKS;
}

static intptr_t spawn_join_main(void *arg)
{
    struct spawn_run *run = arg;
    run->cold = burst(run);
    for (int i = 0; i < BURSTS && !run->err; i++) {
        run->one[i] = one_at_a_time(run);
        run->warm[i] = burst(run);
    }
    return 0;
}

/* ---- a million sleepers ------------------------------------------------------ */

static intptr_t sleeper(void *arg)
{
    return eddy_sleep(3600 * (int64_t)1000000000); /* until cancelled */
}

struct memory_run {
    long long rss_before, rss_asleep, pte_before, pte_asleep;
    double spawn_ns_per_task;
    int err;
};

static intptr_t sleepers_main(void *arg)
{
    struct memory_run *run = arg;
    run->rss_before = rss_bytes();
    run->pte_before = page_table_bytes();
    int64_t t0 = cpu_ns();
    size_t spawned = 0;
    for (; spawned < SLEEP_TASKS; spawned++)
        if (!(tasks[spawned] = eddy_spawn(NULL, sleeper, NULL))) {
            run->err = -ENOMEM;
            break;
        }
    /* The sleepers were queued before us: by the time this yield returns,
     * every one of them has run up to its sleep. */
    eddy_yield();
    run->spawn_ns_per_task = (double)(cpu_ns() - t0) / SLEEP_TASKS;
    run->rss_asleep = rss_bytes();
    run->pte_asleep = page_table_bytes();
    for (size_t i = 0; i < spawned; i++)
        eddy_task_cancel(tasks[i]);
    for (size_t i = 0; i < spawned; i++) {
        intptr_t value;
        int err = eddy_task_join(tasks[i], &value);
        if (err != -ECANCELED && run->err == 0) run->err = err < 0 ? err : -EIO;
    }
    return 0;
}

static int run_task(const eddy_loop_options *opts, eddy_task_fn fn, void *arg)
{
    eddy_loop *loop;
    int err = eddy_loop_new(&loop, opts);
    if (err < 0) return err;
    eddy_task *t = eddy_spawn(loop, fn, arg);
    if (!t) {
        eddy_loop_free(loop);
        return -ENOMEM;
    }
    err = eddy_loop_run(loop);
    if (err == 0)
        err = eddy_task_join(t, NULL);
    else
        eddy_task_detach(t);
    eddy_loop_free(loop);
    return err;
}

/* `spawn bursts`: one loop, a burst after another, for a profiler (perf
 * record -D skips the first, which maps the stacks). */
#define PROFILE_BURSTS 41
static intptr_t bursts_main(void *arg)
{
    struct spawn_run *run = arg;
    for (int i = 0; i < PROFILE_BURSTS && !run->err; i++)
        burst(run);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "bursts") == 0) {
        struct spawn_run run = {0};
        int err = run_task(NULL, bursts_main, &run);
        return err < 0 || run.err < 0;
    }
    if (argc == 2 && strcmp(argv[1], "join") == 0) {
        struct spawn_run run = {0};
        int err = run_task(NULL, spawn_join_main, &run);
        if (err < 0 || run.err < 0) return 1;
        double one = 0, warm = 0;
        for (int i = 0; i < BURSTS; i++) {
            one += run.one[i] / BURSTS;
            warm += run.warm[i] / BURSTS;
        }
        printf("%.1f %.1f %.1f\n", one, warm, run.cold);
        return 0;
    }
    double cold[RUNS], one[RUNS * BURSTS], warm[RUNS * BURSTS];
    for (int r = 0; r < RUNS; r++) {
        struct spawn_run run = {0};
        int err = run_task(NULL, spawn_join_main, &run);
        if (err == 0) err = run.err;
        if (err < 0) {
            fprintf(stderr, "spawn: spawn+join run %d failed: %s\n", r, eddy_strerror(err));
            return 1;
        }
        cold[r] = run.cold;
        for (int i = 0; i < BURSTS; i++) {
            one[r * BURSTS + i] = run.one[i];
            warm[r * BURSTS + i] = run.warm[i];
        }
    }

    eddy_loop_options opts = {.flags = EDDY_LOOP_NO_GUARD_PAGES};
    struct memory_run mem = {0};
    int err = run_task(&opts, sleepers_main, &mem);
    if (err == 0) err = mem.err;
    if (err < 0) {
        fprintf(stderr, "spawn: %d sleepers failed: %s\n", SLEEP_TASKS, eddy_strerror(err));
        return 1;
    }

    printf("task spawn, thread CPU time\n");
    double one_ns = median(one, RUNS * BURSTS), warm_ns = median(warm, RUNS * BURSTS);
    printf("  spawn+join one at a time (%d)    %8.1f ns/task (median of %d)\n", SPAWN_TASKS, one_ns,
           RUNS * BURSTS);
    printf("  spawn+join %d live, warm loop    %8.1f ns/task (median of %d)   %.2fx one at a "
           "time, target <= 1.5x: %s\n",
           SPAWN_TASKS, warm_ns, RUNS * BURSTS, warm_ns / one_ns,
           warm_ns <= 1.5 * one_ns ? "met" : "MISSED");
    printf("  spawn+join %d live, new loop     %8.1f ns/task (median of %d)   %.2fx one at a "
           "time\n",
           SPAWN_TASKS, median(cold, RUNS), RUNS, median(cold, RUNS) / one_ns);
    printf("  spawn+start+sleep (%d tasks)    %8.1f ns/task\n", SLEEP_TASKS, mem.spawn_ns_per_task);
    if (mem.rss_before < 0 || mem.rss_asleep < 0) {
        printf("  resident memory: no /proc/self/statm here\n");
        return 0;
    }
    double per_task = (double)(mem.rss_asleep - mem.rss_before) / SLEEP_TASKS;
    printf("  resident memory, %d sleeping     %8.0f bytes/task (%.2f KiB)   target <= 5 KiB: "
           "%s\n",
           SLEEP_TASKS, per_task, per_task / 1024, per_task <= RSS_TARGET ? "met" : "MISSED");
    if (mem.pte_before >= 0 && mem.pte_asleep >= 0)
        printf("  page tables (not in RSS)            %8.0f bytes/task\n",
               (double)(mem.pte_asleep - mem.pte_before) / SLEEP_TASKS);
    return 0;
}
