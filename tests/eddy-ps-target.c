/* SPDX-License-Identifier: MIT */
/* For tests/eddy-ps.sh: a process whose first loop holds 1 000 tasks in
 * known states, and a second loop on another thread with one more. Once
 * all are where they wait, it prints "ready" and waits to be killed.
 *
 *   main       sleeping (it printed "ready")
 *   holder     holds the lock, sleeping;   joiner  joins holder
 *   locker-N   200, waiting on the lock
 *   getter-N   150, waiting on an empty queue
 *   awaiter-N  100, awaiting a future nobody completes
 *   reader-N   20, in recv on a connection where nothing comes
 *   parent     waits for its group of 99 child-N, each awaiting the future
 *   sleeper-N  the rest, sleeping
 *
 * With --churn, once ready, main spawns and joins short tasks without end,
 * and the second thread frees its loop and makes a new one every 20 ms:
 * what eddy-ps reads keeps changing under it. */
#include <pthread.h>
#include <stdio.h>
#include <stdbool.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>

#include "eddy.h"

#define HOUR      (3600 * (int64_t)1000000000)
#define TASKS     1000
#define LOCKERS   200
#define GETTERS   150
#define AWAITERS  100
#define READERS   20
#define CHILDREN  99
#define SLEEPERS  (TASKS - 4 - LOCKERS - GETTERS - AWAITERS - READERS - CHILDREN)
#define NO_TAIL() __asm__ volatile("" ::: "memory") /* keeps the frame */

static eddy_lock *lock;
static eddy_queue *queue;
static eddy_future *never;
static bool churn;

static intptr_t sleeper_fn(void *arg)
{
    (void)arg;
    intptr_t r = eddy_sleep(HOUR);
    NO_TAIL();
    return r;
}

static intptr_t holder_fn(void *arg)
{
    (void)arg;
    if (eddy_lock_acquire(lock) < 0) return -1;
    intptr_t r = eddy_sleep(HOUR);
    NO_TAIL();
    return r;
}

static intptr_t joiner_fn(void *arg)
{
    intptr_t r = eddy_task_join(arg, NULL);
    NO_TAIL();
    return r;
}

static intptr_t locker_fn(void *arg)
{
    (void)arg;
    intptr_t r = eddy_lock_acquire(lock);
    NO_TAIL();
    return r;
}

static intptr_t getter_fn(void *arg)
{
    (void)arg;
    intptr_t item;
    intptr_t r = eddy_queue_get(queue, &item);
    NO_TAIL();
    return r;
}

static intptr_t awaiter_fn(void *arg)
{
    (void)arg;
    intptr_t r = eddy_await(never, NULL);
    NO_TAIL();
    return r;
}

static intptr_t reader_fn(void *arg)
{
    char buf[16];
    intptr_t r = eddy_recv(arg, buf, sizeof buf);
    NO_TAIL();
    return r;
}

static intptr_t yielder_fn(void *arg)
{
    (void)arg;
    for (int i = 0; i < 3; i++)
        if (eddy_yield() < 0) return -1;
    return 0;
}

static intptr_t parent_fn(void *arg)
{
    (void)arg;
    eddy_group *g = eddy_group_new(NULL);
    if (!g) return -1;
    for (int i = 1; i <= CHILDREN; i++) {
        char name[32];
        eddy_task *c = eddy_group_spawn(g, awaiter_fn, NULL);
        snprintf(name, sizeof name, "child-%d", i);
        if (!c || eddy_task_set_name(c, name) < 0) return -1;
    }
    intptr_t r = eddy_group_wait(g);
    NO_TAIL();
    return r;
}

static int spawn_named(eddy_task_fn fn, void *arg, const char *prefix, int i)
{
    char name[32];
    eddy_task *t = eddy_spawn(NULL, fn, arg);
    if (i)
        snprintf(name, sizeof name, "%s-%d", prefix, i);
    else
        snprintf(name, sizeof name, "%s", prefix);
    if (!t || eddy_task_set_name(t, name) < 0) return -1;
    eddy_task_detach(t);
    return 0;
}

static int spawn_many(eddy_task_fn fn, void *arg, const char *prefix, int n)
{
    for (int i = 1; i <= n; i++)
        if (spawn_named(fn, arg, prefix, i) < 0) return -1;
    return 0;
}

static int spawn_readers(void)
{
    eddy_sock *listener;
    if (eddy_tcp_listen(&listener, "127.0.0.1", 0, READERS + 8) < 0) return -1;
    for (int i = 1; i <= READERS; i++) {
        eddy_sock *client;
        if (eddy_tcp_connect(&client, "127.0.0.1", (uint16_t)eddy_sock_port(listener)) < 0 ||
            spawn_named(reader_fn, client, "reader", i) < 0)
            return -1;
    }
    return 0;
}

static intptr_t main_task(void *arg)
{
    (void)arg;
    if (eddy_task_set_name(eddy_task_current(), "main") < 0 || eddy_lock_new(&lock) < 0 ||
        eddy_queue_new(&queue, NULL) < 0 || !(never = eddy_future_new(NULL)))
        return -1;
    eddy_task *holder = eddy_spawn(NULL, holder_fn, NULL);
    if (!holder || eddy_task_set_name(holder, "holder") < 0) return -1;
    if (eddy_yield() < 0) return -1; /* the holder takes the lock first */
    if (spawn_named(joiner_fn, holder, "joiner", 0) < 0 ||
        spawn_many(locker_fn, NULL, "locker", LOCKERS) < 0 ||
        spawn_many(getter_fn, NULL, "getter", GETTERS) < 0 ||
        spawn_many(awaiter_fn, NULL, "awaiter", AWAITERS) < 0 ||
        spawn_named(parent_fn, NULL, "parent", 0) < 0 ||
        spawn_many(sleeper_fn, NULL, "sleeper", SLEEPERS) < 0 || spawn_readers() < 0)
        return -1;
    for (int i = 0; i < 5; i++)
        if (eddy_yield() < 0) return -1;
    printf("ready\n");
    fflush(stdout);
    while (churn) {
        eddy_task *t = eddy_spawn(NULL, yielder_fn, NULL);
        if (!t || eddy_task_join(t, NULL) < 0) return -1;
    }
    for (;;)
        if (eddy_sleep(HOUR) < 0) return -1;
}

static intptr_t other_main(void *arg)
{
    (void)arg;
    if (eddy_task_set_name(eddy_task_current(), "other-loop") < 0) return -1;
    intptr_t r = eddy_sleep(churn ? 20 * 1000000 : HOUR);
    NO_TAIL();
    return r;
}

static void *other_thread(void *arg)
{
    (void)arg;
    intptr_t result;
    do
        (void)eddy_run(other_main, NULL, &result);
    while (churn);
    return NULL;
}

int main(int argc, char **argv)
{
    churn = argc > 1 && strcmp(argv[1], "--churn") == 0;
#ifdef PR_SET_PTRACER
    /* under Yama's ptrace_scope 1, eddy-ps (not our parent) may read us */
    (void)prctl(PR_SET_PTRACER, PR_SET_PTRACER_ANY, 0, 0, 0);
#endif
    pthread_t other;
    if (pthread_create(&other, NULL, other_thread, NULL) != 0) return 1;
    intptr_t result = -1;
    int err = eddy_run(main_task, NULL, &result);
    fprintf(stderr, "eddy-ps-target: eddy_run: %d, result %ld\n", err, (long)result);
    return 1;
}
