/* SPDX-License-Identifier: MIT */
/* Several loops: eddy_run_threads, eddy_spawn_threadsafe (join and cancel
 * across loops, from a plain thread) and SO_REUSEPORT listeners. */
#include <pthread.h>
#ifndef _WIN32
#include <sys/socket.h> /* SO_REUSEPORT */
#endif

#include "helpers.h"

Test(threads, bad_input)
{
    cr_expect(eq(int, eddy_run_threads(0, (eddy_task_fn)1, NULL), -EINVAL));
    cr_expect(eq(int, eddy_run_threads(1, NULL, NULL), -EINVAL));
    errno = 0;
    cr_expect(eq(ptr, eddy_spawn_threadsafe(NULL, (eddy_task_fn)1, NULL), NULL));
    cr_expect(eq(int, errno, EINVAL));
}

struct shared {
    int started; /* atomic */
    eddy_loop *loops[4];
    int distinct;       /* each main saw a loop of its own */
    eddy_channel *stop; /* closed when the test is done with the serving loop */
    eddy_channel *handoff;
    eddy_task_fn client; /* run_pair's */
    int result;
};

static int take_index(struct shared *s)
{
    int i = __atomic_fetch_add(&s->started, 1, __ATOMIC_ACQ_REL);
    __atomic_store_n(&s->loops[i], eddy_loop_current(), __ATOMIC_RELEASE);
    return i;
}

static intptr_t count_main(void *arg)
{
    struct shared *s = arg;
    int i = take_index(s);
    /* Every main waits for the others: four loops exist at once. */
    while (__atomic_load_n(&s->started, __ATOMIC_ACQUIRE) < 4)
        if (eddy_sleep(NS_PER_MS) < 0) return -ECANCELED;
    return eddy_loop_current() && i < 4 ? 0 : -EIO;
}

Test(threads, run_threads_runs_main_on_each_loop, .timeout = TEST_TIMEOUT)
{
    struct shared s = {0};
    cr_expect(eq(int, eddy_run_threads(4, count_main, &s), 0));
    cr_expect(eq(int, s.started, 4));
    for (int i = 0; i < 4; i++)
        for (int j = i + 1; j < 4; j++)
            cr_expect(ne(ptr, s.loops[i], s.loops[j]), "two mains on one loop");
}

static intptr_t second_fails(void *arg)
{
    struct shared *s = arg;
    return take_index(s) == 1 ? -EIO : 0;
}

Test(threads, run_threads_returns_the_error, .timeout = TEST_TIMEOUT)
{
    struct shared s = {0};
    cr_expect(eq(int, eddy_run_threads(3, second_fails, &s), -EIO));
}

/* ---- spawn_threadsafe between two loops ----------------------------------- */

static eddy_loop *wait_for_loop(struct shared *s, int i)
{
    eddy_loop *l;
    while (!(l = __atomic_load_n(&s->loops[i], __ATOMIC_ACQUIRE)))
        if (eddy_sleep(NS_PER_MS) < 0) return NULL;
    return l;
}

/* Two loops: loop 0 serves until the stop channel closes, loop 1 runs
 * s->client(s) with loop 0 in s->loops[0], then closes the channel. */
static intptr_t pair_main(void *arg)
{
    struct shared *s = arg;
    int i = take_index(s);
    if (i == 0) {
        intptr_t v;
        return eddy_channel_recv(s->stop, &v) == -EPIPE ? 0 : -EIO;
    }
    int err = wait_for_loop(s, 0) ? (int)s->client(s) : -ECANCELED;
    (void)eddy_channel_close(s->stop);
    return err;
}

static int run_pair(eddy_task_fn client)
{
    struct shared s = {.client = client};
    cr_assert(eq(int, eddy_channel_new(&s.stop, 1), 0));
    int err = eddy_run_threads(2, pair_main, &s);
    eddy_channel_free(s.stop);
    return err;
}

static intptr_t where_am_i(void *arg)
{
    (void)arg;
    return (intptr_t)eddy_loop_current();
}

static intptr_t sleep_long(void *arg)
{
    int *ended = arg;
    int err = eddy_sleep(60 * NS_PER_SEC);
    __atomic_store_n(ended, err == -ECANCELED ? 1 : 2, __ATOMIC_RELEASE);
    return err;
}

static void cancel_cb(void *arg)
{
    cr_expect(eddy_task_cancel(arg));
}

static int remote_ended; /* sleep_long's: 1 = cancelled */

/* Joined and cancelled across loops. */
static intptr_t join_and_cancel_client(void *arg)
{
    struct shared *s = arg;
    eddy_loop *server = s->loops[0];
    int err = 0;
    /* Joined across loops: ran on the server's loop, its result comes back. */
    eddy_task *t = eddy_spawn_threadsafe(server, where_am_i, NULL);
    intptr_t v = 0;
    if (!t || eddy_task_join(t, &v) != 0 || (eddy_loop *)v != server) err = -EIO;
    /* Cancelled across loops: the remote task is cancelled, the join says so. */
    eddy_task *sleeper = eddy_spawn_threadsafe(server, sleep_long, &remote_ended);
    if (!sleeper) return -ENOMEM;
    if (eddy_call_later(eddy_loop_current(), 5 * NS_PER_MS, cancel_cb, sleeper, NULL) < 0)
        err = -EIO;
    int joined = eddy_task_join(sleeper, &v);
    if (joined != -ECANCELED || __atomic_load_n(&remote_ended, __ATOMIC_ACQUIRE) != 1)
        err = -EPROTO;
    return err;
}

Test(threads, spawn_threadsafe_join_and_cancel_across_loops, .timeout = TEST_TIMEOUT)
{
    int err = run_pair(join_and_cancel_client);
    cr_expect(eq(int, err, 0), "%s", eddy_strerror(err));
    cr_expect(eq(int, remote_ended, 1), "the remote task was not cancelled");
}

static intptr_t count_run(void *arg)
{
    __atomic_add_fetch((int *)arg, 1, __ATOMIC_ACQ_REL);
    return eddy_sleep(60 * NS_PER_SEC);
}

static int runs; /* count_run's */

/* Proxies cancelled at once, or after a yield: each join ends, -ECANCELED. */
static intptr_t quick_cancel_client(void *arg)
{
    struct shared *s = arg;
    for (int round = 0; round < 50; round++) {
        eddy_task *t = eddy_spawn_threadsafe(s->loops[0], count_run, &runs);
        if (!t) return -ENOMEM;
        for (int y = 0; y < round % 3; y++)
            (void)eddy_yield();
        eddy_task_cancel(t);
        if (eddy_task_join(t, NULL) != -ECANCELED) return -EPROTO;
    }
    return 0;
}

Test(threads, proxies_cancelled_early_end, .timeout = TEST_TIMEOUT)
{
    int err = run_pair(quick_cancel_client);
    cr_expect(eq(int, err, 0), "%s", eddy_strerror(err));
}

static int sleeper_started; /* atomic */

static intptr_t mark_and_sleep(void *arg)
{
    (void)arg;
    __atomic_store_n(&sleeper_started, 1, __ATOMIC_RELEASE);
    return eddy_sleep(60 * NS_PER_SEC);
}

/* Loop 0 ends (its main returns, eddy_run frees it) while loop 1 joins a
 * task of it: the shutdown cancels that task, and the join says so. */
static intptr_t loop_ends_client(void *arg)
{
    struct shared *s = arg;
    eddy_task *t = eddy_spawn_threadsafe(s->loops[0], mark_and_sleep, NULL);
    if (!t) return -ENOMEM;
    while (!__atomic_load_n(&sleeper_started, __ATOMIC_ACQUIRE))
        (void)eddy_sleep(NS_PER_MS);
    (void)eddy_channel_close(s->stop); /* loop 0's main returns */
    int err = eddy_task_join(t, NULL);
    return err == -ECANCELED ? 0 : -EPROTO;
}

Test(threads, a_loop_ending_cancels_the_task_another_loop_joins, .timeout = TEST_TIMEOUT)
{
    int err = run_pair(loop_ends_client);
    cr_expect(eq(int, err, 0), "%s", eddy_strerror(err));
}

/* A loop freed by a plain thread while a proxy on another loop waits for
 * the spawn it posted: freed idle, the loop drops the post; freed with a task
 * still running, its shutdown makes the remote task and cancels it before it
 * begins. Either way the join says -ECANCELED. */
struct freed {
    eddy_loop *loop; /* atomic: bound to the thread, set once it ran */
    int posted;      /* atomic: the proxy has posted its spawn */
    bool busy;       /* a task sleeps on the loop while it is freed */
    int joined;      /* what the join gave */
    pthread_t thread;
};

static intptr_t sleep_forever(void *arg)
{
    (void)arg;
    return eddy_sleep(60 * NS_PER_SEC);
}

static void *free_when_posted(void *arg)
{
    struct freed *fr = arg;
    eddy_loop *loop = new_loop();
    if (fr->busy) eddy_task_detach(eddy_spawn(loop, sleep_forever, NULL));
    cr_expect(ge(int, eddy_loop_run_once(loop, 0), 0)); /* the thread's loop now */
    __atomic_store_n(&fr->loop, loop, __ATOMIC_RELEASE);
    while (!__atomic_load_n(&fr->posted, __ATOMIC_ACQUIRE))
        sched_yield();
    eddy_loop_free(loop);
    return NULL;
}

static intptr_t join_on_freed_loop(void *arg)
{
    struct freed *fr = arg;
    eddy_loop *loop;
    while (!(loop = __atomic_load_n(&fr->loop, __ATOMIC_ACQUIRE)))
        (void)eddy_sleep(NS_PER_MS);
    eddy_task *t = eddy_spawn_threadsafe(loop, where_am_i, NULL);
    if (!t) return -ENOMEM;
    (void)eddy_yield(); /* the proxy runs first and posts the spawn */
    __atomic_store_n(&fr->posted, 1, __ATOMIC_RELEASE);
    fr->joined = eddy_task_join(t, NULL);
    return 0;
}

static void check_join_on_freed_loop(bool busy)
{
    struct freed fr = {.busy = busy};
    cr_assert(eq(int, pthread_create(&fr.thread, NULL, free_when_posted, &fr), 0));
    cr_expect(eq(int, run_main(join_on_freed_loop, &fr), 0));
    cr_expect(eq(int, fr.joined, -ECANCELED), "the join gave %s", eddy_strerror(fr.joined));
    pthread_join(fr.thread, NULL);
}

Test(threads, a_spawn_dropped_by_a_freed_loop_wakes_the_join, .timeout = TEST_TIMEOUT)
{
    check_join_on_freed_loop(false);
}

Test(threads, a_task_cancelled_unstarted_by_a_freed_loop_wakes_the_join, .timeout = TEST_TIMEOUT)
{
    check_join_on_freed_loop(true);
}

/* ---- awaiting and joining across loops ------------------------------------ */

/* Two loops: loop 0 runs s->owner(s), loop 1 runs s->client(s); s->handoff
 * carries futures and tasks from loop 0 to loop 1, s->back answers, and loop
 * 1 closes s->stop when done (loop 0 keeps its futures alive until then). */
struct cross {
    eddy_channel *handoff, *back, *stop;
    eddy_task_fn owner, client;
    int started; /* atomic */
};

static intptr_t cross_main(void *arg)
{
    struct cross *c = arg;
    int i = __atomic_fetch_add(&c->started, 1, __ATOMIC_ACQ_REL);
    if (i == 0) return c->owner(c);
    int err = (int)c->client(c);
    (void)eddy_channel_close(c->stop);
    (void)eddy_channel_close(c->handoff);
    (void)eddy_channel_close(c->back);
    return err;
}

/* Runs owner on loop 0 and client on loop 1; both must succeed. */
static void check_cross(eddy_task_fn owner, eddy_task_fn client)
{
    struct cross c = {.owner = owner, .client = client};
    cr_assert(eq(int, eddy_channel_new(&c.handoff, 1), 0));
    cr_assert(eq(int, eddy_channel_new(&c.back, 1), 0));
    cr_assert(eq(int, eddy_channel_new(&c.stop, 1), 0));
    int err = eddy_run_threads(2, cross_main, &c);
    cr_expect(eq(int, err, 0), "%s", eddy_strerror(err));
    eddy_channel_free(c.handoff);
    eddy_channel_free(c.back);
    eddy_channel_free(c.stop);
}

static void until_stopped(struct cross *c)
{
    intptr_t v;
    while (eddy_channel_recv(c->stop, &v) == 0) {
    }
}

static intptr_t send_ptr(struct cross *c, void *p)
{
    return eddy_channel_send(c->handoff, (intptr_t)p);
}

static void *recv_ptr(struct cross *c)
{
    intptr_t v = 0;
    return eddy_channel_recv(c->handoff, &v) == 0 ? (void *)v : NULL;
}

/* Loop 0: one future set before it is handed over, one set with a value and
 * one with an error while loop 1 waits. */
static intptr_t futures_owner(void *arg)
{
    struct cross *c = arg;
    eddy_future *f[3] = {eddy_future_new(NULL), eddy_future_new(NULL), eddy_future_new(NULL)};
    if (!f[0] || !f[1] || !f[2]) return -ENOMEM;
    int err = eddy_future_set_result(f[0], 7);
    if (err == 0) err = (int)send_ptr(c, f[0]);
    if (err == 0) err = (int)send_ptr(c, f[1]);
    if (err == 0) err = eddy_sleep(5 * NS_PER_MS);
    if (err == 0) err = eddy_future_set_result(f[1], 42);
    if (err == 0) err = (int)send_ptr(c, f[2]);
    if (err == 0) err = eddy_sleep(5 * NS_PER_MS);
    if (err == 0) err = eddy_future_set_error(f[2], -EIO);
    until_stopped(c);
    for (int i = 0; i < 3; i++)
        eddy_future_unref(f[i]);
    return err;
}

static intptr_t futures_client(void *arg)
{
    struct cross *c = arg;
    intptr_t v = 0;
    eddy_future *f = recv_ptr(c);
    if (!f || eddy_await(f, &v) != 0 || v != 7) return -EPROTO;
    if (!(f = recv_ptr(c)) || eddy_await(f, &v) != 0 || v != 42) return -EPROTO;
    if (!(f = recv_ptr(c))) return -EPROTO;
    int err = eddy_await(f, &v);
    return err == -EIO ? 0 : -EPROTO;
}

Test(threads, a_task_awaits_a_future_of_another_loop, .timeout = TEST_TIMEOUT)
{
    check_cross(futures_owner, futures_client);
}

static intptr_t slow_square(void *arg)
{
    intptr_t n = (intptr_t)arg;
    int err = eddy_sleep(5 * NS_PER_MS);
    return err < 0 ? err : n * n;
}

/* Loop 0 hands over tasks made with eddy_spawn: one still running, one that
 * has ended, one failing; loop 1 joins them (the references are its). */
static intptr_t tasks_owner(void *arg)
{
    struct cross *c = arg;
    eddy_task *running = eddy_spawn(NULL, slow_square, (void *)7);
    eddy_task *ended = eddy_spawn(NULL, where_am_i, NULL);
    eddy_task *failing = eddy_spawn(NULL, task_return_arg, (void *)(intptr_t)-EIO);
    eddy_task *awaited = eddy_spawn(NULL, slow_square, (void *)3);
    eddy_task *left[2] = {eddy_spawn(NULL, slow_square, (void *)4),
                          eddy_spawn(NULL, slow_square, (void *)5)};
    if (!running || !ended || !failing || !awaited || !left[0] || !left[1]) return -ENOMEM;
    while (!eddy_future_done(eddy_task_future(ended)))
        (void)eddy_yield();
    int err = (int)send_ptr(c, running);
    if (err == 0) err = (int)send_ptr(c, ended);
    if (err == 0) err = (int)send_ptr(c, failing);
    if (err == 0) err = (int)send_ptr(c, awaited);
    for (int i = 0; i < 2 && err == 0; i++)
        err = (int)send_ptr(c, left[i]);
    until_stopped(c);
    intptr_t v = 0;
    if (err == 0 && (eddy_task_join(awaited, &v) != 0 || v != 9)) err = -EPROTO;
    return err;
}

static intptr_t join_cancelled(void *arg)
{
    return eddy_task_join(arg, NULL);
}

static intptr_t cancel_self_then_join(void *arg)
{
    (void)eddy_task_cancel(eddy_task_current());
    return eddy_task_join(arg, NULL);
}

static intptr_t tasks_client(void *arg)
{
    struct cross *c = arg;
    eddy_loop *here = eddy_loop_current();
    intptr_t v = 0;
    eddy_task *t = recv_ptr(c);
    if (!t || eddy_task_join(t, &v) != 0 || v != 49) return -EPROTO;
    if (!(t = recv_ptr(c)) || eddy_task_join(t, &v) != 0 || (eddy_loop *)v == here) return -EPROTO;
    if (!(t = recv_ptr(c)) || eddy_task_join(t, &v) != -EIO) return -EPROTO;
    /* Awaiting a task's future leaves the reference where it was. */
    if (!(t = recv_ptr(c)) || eddy_await(eddy_task_future(t), &v) != 0 || v != 9) return -EPROTO;
    /* A joiner cancelled before it joins, or while it waits: -ECANCELED, and
     * the reference is still dropped on the task's loop (else ASan says). */
    for (int i = 0; i < 2; i++) {
        eddy_task *joiner =
            eddy_spawn(NULL, i ? join_cancelled : cancel_self_then_join, recv_ptr(c));
        if (!joiner) return -ENOMEM;
        (void)eddy_yield(); /* it is waiting, or has returned */
        (void)eddy_task_cancel(joiner);
        if (eddy_task_join(joiner, NULL) != -ECANCELED) return -EPROTO;
    }
    return 0;
}

Test(threads, a_task_joins_a_task_spawned_on_another_loop, .timeout = TEST_TIMEOUT)
{
    check_cross(tasks_owner, tasks_client);
}

/* A waiter cancelled before or after its registration reached the future's
 * loop, or stopped by a timeout scope; the future is set afterwards, its late
 * outcome dropped. */
static intptr_t late_owner(void *arg)
{
    struct cross *c = arg;
    int err = 0;
    for (;;) {
        eddy_future *f = eddy_future_new(NULL);
        if (!f) return -ENOMEM;
        intptr_t v;
        if (send_ptr(c, f) < 0 || eddy_channel_recv(c->back, &v) < 0) {
            eddy_future_unref(f);
            break;
        }
        /* The waiter has stopped waiting: set the future now, and keep it
         * until the round is over. */
        if (eddy_future_set_result(f, v) < 0) err = -EPROTO;
        if (eddy_channel_recv(c->back, &v) < 0) err = -EPROTO;
        eddy_future_unref(f);
    }
    until_stopped(c);
    return err;
}

static intptr_t await_arg(void *arg)
{
    return eddy_await(arg, NULL);
}

static intptr_t cancelled_client(void *arg)
{
    struct cross *c = arg;
    for (int round = 0; round < 60; round++) {
        eddy_future *f = recv_ptr(c);
        if (!f) return -EPROTO;
        eddy_task *t = eddy_spawn(NULL, await_arg, f);
        if (!t) return -ENOMEM;
        for (int y = 0; y < round % 3; y++)
            (void)eddy_yield();
        if (round % 3 == 2) (void)eddy_sleep(NS_PER_MS); /* registered by now, most likely */
        (void)eddy_task_cancel(t);
        if (eddy_task_join(t, NULL) != -ECANCELED) return -EPROTO;
        if (eddy_channel_send(c->back, round) < 0 || eddy_yield() < 0) return -EIO;
        if (eddy_channel_send(c->back, round) < 0) return -EIO;
    }
    /* Timeout scopes: eddy_await_timeout, and eddy_await inside a scope. */
    for (int round = 0; round < 2; round++) {
        eddy_future *f = recv_ptr(c);
        if (!f) return -EPROTO;
        int64_t start = loop_now();
        int err;
        if (round == 0) {
            err = eddy_await_timeout(f, 20 * NS_PER_MS, NULL);
        } else {
            eddy_timeout scope;
            if (eddy_timeout_begin(&scope, 20 * NS_PER_MS) < 0) return -EIO;
            err = eddy_await(f, NULL);
            int ended = eddy_timeout_end(&scope);
            if (err != -ECANCELED) return -EPROTO;
            err = ended;
        }
        if (err != -ETIMEDOUT) return -EPROTO;
        if (loop_now() - start < 20 * NS_PER_MS) return -EPROTO;
        if (eddy_channel_send(c->back, round) < 0 || eddy_channel_send(c->back, round) < 0)
            return -EIO;
    }
    return 0;
}

Test(threads, a_cross_loop_wait_stops_when_cancelled_or_timed_out, .timeout = TEST_TIMEOUT)
{
    check_cross(late_owner, cancelled_client);
}

/* Many awaits and joins across loops: nothing leaks (the ASan build says). */
static intptr_t many_owner(void *arg)
{
    struct cross *c = arg;
    int err = 0;
    for (intptr_t i = 0; i < 10000 && err == 0; i++) {
        eddy_task *t = eddy_spawn(NULL, task_return_arg, (void *)i);
        if (!t) return -ENOMEM;
        err = (int)send_ptr(c, t);
        if (err < 0) eddy_task_detach(t);
    }
    until_stopped(c);
    return err;
}

static intptr_t many_client(void *arg)
{
    struct cross *c = arg;
    for (intptr_t i = 0; i < 10000; i++) {
        eddy_task *t = recv_ptr(c);
        intptr_t v = -1;
        if (!t || eddy_task_join(t, &v) != 0 || v != i) return -EPROTO;
    }
    return 0;
}

Test(threads, ten_thousand_joins_across_loops, .timeout = TEST_TIMEOUT)
{
    check_cross(many_owner, many_client);
}

/* A loop freed by a plain thread while a task of another loop awaits one of
 * its futures (the registration still queued, or done) or joins one of its
 * tasks: the wait ends with -ECANCELED. */
struct freed_wait {
    eddy_loop *loop;   /* atomic: set once bound to the thread */
    eddy_future *what; /* the future to await, or a task's */
    bool task, run;    /* join a task; run the loop once before freeing it */
    int posted;        /* atomic */
    int got;
    pthread_t thread;
};

static void *free_while_awaited(void *arg)
{
    struct freed_wait *fw = arg;
    eddy_loop *loop = new_loop();
    cr_expect(ge(int, eddy_loop_run_once(loop, 0), 0)); /* the thread's loop now */
    eddy_future *f = NULL;
    if (fw->task)
        fw->what = eddy_task_future(eddy_spawn(loop, sleep_forever, NULL));
    else
        fw->what = f = eddy_future_new(loop);
    cr_expect(ne(ptr, fw->what, NULL));
    __atomic_store_n(&fw->loop, loop, __ATOMIC_RELEASE);
    while (!__atomic_load_n(&fw->posted, __ATOMIC_ACQUIRE))
        sched_yield();
    if (fw->run) cr_expect(ge(int, eddy_loop_run_once(loop, 0), 0));
    eddy_loop_free(loop);
    eddy_future_unref(f); /* kept until the loop is gone, as the await needs */
    return NULL;
}

static void mark_posted(void *arg)
{
    __atomic_store_n(&((struct freed_wait *)arg)->posted, 1, __ATOMIC_RELEASE);
}

static intptr_t await_on_freed_loop(void *arg)
{
    struct freed_wait *fw = arg;
    while (!__atomic_load_n(&fw->loop, __ATOMIC_ACQUIRE))
        (void)eddy_sleep(NS_PER_MS);
    /* The await posts its registration first; then the loop may go. */
    if (eddy_call_soon(eddy_loop_current(), mark_posted, fw) < 0) return -ENOMEM;
    if (fw->task)
        fw->got = eddy_task_join((eddy_task *)fw->what, NULL);
    else
        fw->got = eddy_await(fw->what, NULL);
    return 0;
}

static void check_await_on_freed_loop(bool task, bool run)
{
    struct freed_wait fw = {.task = task, .run = run};
    cr_assert(eq(int, pthread_create(&fw.thread, NULL, free_while_awaited, &fw), 0));
    cr_expect(eq(int, run_main(await_on_freed_loop, &fw), 0));
    cr_expect(eq(int, fw.got, -ECANCELED), "the wait gave %s", eddy_strerror(fw.got));
    pthread_join(fw.thread, NULL);
}

Test(threads, a_freed_loop_ends_an_await_of_its_future, .timeout = TEST_TIMEOUT)
{
    check_await_on_freed_loop(false, false);
    check_await_on_freed_loop(false, true);
}

Test(threads, a_freed_loop_ends_a_join_of_its_task, .timeout = TEST_TIMEOUT)
{
    check_await_on_freed_loop(true, false);
    check_await_on_freed_loop(true, true);
}

/* Outside a task, a task of another loop cannot be joined. */
static void *join_from_plain_thread(void *arg)
{
    return (void *)(intptr_t)eddy_task_join(arg, NULL);
}

static intptr_t plain_thread_join(void *arg)
{
    (void)arg;
    eddy_task *t = eddy_spawn(NULL, where_am_i, NULL);
    if (!t) return -ENOMEM;
    pthread_t th;
    void *got;
    if (pthread_create(&th, NULL, join_from_plain_thread, t)) return -EIO;
    pthread_join(th, &got);
    eddy_task_detach(t);
    return (intptr_t)got == -EPERM ? 0 : -EPROTO;
}

Test(threads, a_plain_thread_joining_a_task_of_a_loop_is_eperm, .timeout = TEST_TIMEOUT)
{
    cr_expect(eq(int, run_main(plain_thread_join, NULL), 0));
}

/* ---- from a plain thread ----------------------------------------------------- */

static intptr_t add_two(void *arg)
{
    return (intptr_t)arg + 2;
}

struct plain {
    eddy_loop *loop; /* atomic: set once running */
    eddy_channel *handoff;
    pthread_t thread;
};

static void *plain_spawner(void *arg)
{
    struct plain *p = arg;
    eddy_loop *loop;
    while (!(loop = __atomic_load_n(&p->loop, __ATOMIC_ACQUIRE)))
        sched_yield();
    eddy_task *t = eddy_spawn_threadsafe(loop, add_two, (void *)40);
    cr_expect(ne(ptr, t, NULL));
    cr_expect(eq(int, eddy_channel_send(p->handoff, (intptr_t)t), 0));
    return NULL;
}

static intptr_t join_what_comes(void *arg)
{
    struct plain *p = arg;
    __atomic_store_n(&p->loop, eddy_loop_current(), __ATOMIC_RELEASE);
    intptr_t v;
    int err = eddy_channel_recv(p->handoff, &v);
    if (err < 0) return err;
    intptr_t result = 0;
    err = eddy_task_join((eddy_task *)v, &result);
    return err < 0 ? err : result;
}

Test(threads, spawn_threadsafe_from_a_plain_thread, .timeout = TEST_TIMEOUT)
{
    struct plain p = {0};
    cr_assert(eq(int, eddy_channel_new(&p.handoff, 1), 0));
    cr_assert(eq(int, pthread_create(&p.thread, NULL, plain_spawner, &p), 0));
    intptr_t v = 0;
    cr_expect(eq(int, eddy_run(join_what_comes, &p, &v), 0));
    cr_expect(eq(iptr, v, 42));
    pthread_join(p.thread, NULL);
    eddy_channel_free(p.handoff);
}

/* ---- listeners ------------------------------------------------------------------ */

static intptr_t listen_twice(void *arg)
{
    bool reuseport = arg != NULL;
    eddy_listen_options o = EDDY_LISTEN_OPTIONS_INIT(.reuseport = reuseport);
    eddy_sock *a, *b;
    int err = eddy_tcp_listen_opts(&a, "127.0.0.1", 0, &o);
    if (err < 0) return err;
    err = eddy_tcp_listen_opts(&b, "127.0.0.1", (uint16_t)eddy_sock_port(a), &o);
    if (err == 0) eddy_sock_close(b);
    eddy_sock_close(a);
    return err;
}

Test(threads, reuseport_lets_two_listeners_share_a_port, .timeout = TEST_TIMEOUT)
{
#ifndef SO_REUSEPORT
    cr_skip_test("no SO_REUSEPORT on this system");
#endif
    intptr_t v = -1;
    cr_expect(eq(int, run_virtual(listen_twice, (void *)1, &v), 0));
    cr_expect(eq(iptr, v, 0));
    cr_expect(eq(int, run_virtual(listen_twice, NULL, &v), -EADDRINUSE), "without it: in use");
}

static intptr_t bad_listen_options(void *arg)
{
    (void)arg;
    eddy_sock *s;
    eddy_listen_options o = {.size = 3};
    if (eddy_tcp_listen_opts(&s, "127.0.0.1", 0, &o) != -EINVAL) return -EPROTO;
    o = (eddy_listen_options){.reserved = {1, 0}};
    if (eddy_tcp_listen_opts(&s, "127.0.0.1", 0, &o) != -EINVAL) return -EPROTO;
    o = (eddy_listen_options){.size = 0, .backlog = 4};
    int err = eddy_tcp_listen_opts(&s, "127.0.0.1", 0, &o); /* 0: the first layout */
    if (err < 0) return err;
    eddy_sock_close(s);
    err = eddy_tcp_listen_opts(&s, "127.0.0.1", 0, NULL);
    if (err < 0) return err;
    eddy_sock_close(s);
    return 0;
}

Test(threads, listen_options_are_checked, .timeout = TEST_TIMEOUT)
{
    intptr_t v = -1;
    cr_expect(eq(int, run_virtual(bad_listen_options, NULL, &v), 0));
    cr_expect(eq(int, eddy_tcp_listen_opts(NULL, NULL, 0, NULL), -EPERM), "task-only");
}

static intptr_t v6only_refuses_ipv4(void *arg)
{
    (void)arg;
    eddy_listen_options o = EDDY_LISTEN_OPTIONS_INIT(.v6only = true);
    eddy_sock *l, *c;
    int err = eddy_tcp_listen_opts(&l, NULL, 0, &o);
    if (err == -EAFNOSUPPORT) return 1; /* no IPv6 here */
    if (err < 0) return err;
    err = eddy_tcp_connect(&c, "127.0.0.1", (uint16_t)eddy_sock_port(l));
    if (err == 0) eddy_sock_close(c);
    eddy_sock_close(l);
    return err == -ECONNREFUSED ? 0 : -EPROTO;
}

Test(threads, v6only_listens_on_ipv6_alone, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_loop();
    intptr_t v = -1;
    cr_expect(eq(int, run_task(loop, v6only_refuses_ipv4, NULL, &v), 0));
    if (v == 1) cr_skip_test("no IPv6 on this machine");
    cr_expect(eq(iptr, v, 0));
    eddy_loop_free(loop);
}
