/* SPDX-License-Identifier: MIT */
/* Signals on the loop: eddy_signal_wait and eddy_signal_start/_stop, with
 * signals raised in the loop's thread, sent to the process from another
 * thread, sent while the loop is busy, and while pool threads run; the
 * disposition given back; bad input; waits cancelled and timed out. On
 * Windows only console control events exist: SIGINT and SIGBREAK. */
#include "helpers.h"

#include <signal.h>
#ifndef _WIN32
#include <pthread.h>
#include <unistd.h>
#endif

/* ---- bad input (every platform) -------------------------------------------------- */

static void nothing(void *arg)
{
    (void)arg;
}

static intptr_t wait_bad(void *arg)
{
    (void)arg;
    int zero[] = {0}, too_big[] = {NSIG}, negative[] = {-1}, good[] = {SIGINT};
#ifndef _WIN32
    int kill_stop[] = {SIGUSR1, SIGKILL};
    cr_assert(eq(int, eddy_signal_wait(kill_stop, 2), -EINVAL));
#endif
    cr_assert(eq(int, eddy_signal_wait(zero, 1), -EINVAL));
    cr_assert(eq(int, eddy_signal_wait(too_big, 1), -EINVAL));
    cr_assert(eq(int, eddy_signal_wait(negative, 1), -EINVAL));
    cr_assert(eq(int, eddy_signal_wait(NULL, 1), -EINVAL));
    cr_assert(eq(int, eddy_signal_wait(good, 0), -EINVAL));
    return 0;
}

Test(signals, bad_input_is_einval, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_loop();
    eddy_signal *s = (eddy_signal *)1;
    int signums[] = {SIGINT};
    cr_assert(eq(int, eddy_signal_wait(signums, 1), -EPERM), "outside a task");
    cr_assert(eq(int, eddy_signal_start(NULL, loop, SIGINT, nothing, NULL), -EINVAL));
    cr_assert(eq(int, eddy_signal_start(&s, loop, SIGINT, NULL, NULL), -EINVAL));
    cr_assert(eq(ptr, s, NULL));
    cr_assert(eq(int, eddy_signal_start(&s, NULL, SIGINT, nothing, NULL), -EINVAL), "no loop");
    cr_assert(eq(int, eddy_signal_start(&s, loop, 0, nothing, NULL), -EINVAL));
    cr_assert(eq(int, eddy_signal_start(&s, loop, NSIG, nothing, NULL), -EINVAL));
    cr_assert(eq(int, eddy_signal_start(&s, loop, -5, nothing, NULL), -EINVAL));
#ifndef _WIN32
    cr_assert(eq(int, eddy_signal_start(&s, loop, SIGKILL, nothing, NULL), -EINVAL));
    cr_assert(eq(int, eddy_signal_start(&s, loop, SIGSTOP, nothing, NULL), -EINVAL));
    cr_assert(eq(int, eddy_signal_start(&s, loop, SIGSEGV, nothing, NULL), -EINVAL));
#else
    /* Windows has these numbers in its C library, but no way to deliver them. */
    cr_assert(eq(int, eddy_signal_start(&s, loop, SIGTERM, nothing, NULL), -ENOTSUP));
    cr_assert(eq(int, eddy_signal_start(&s, loop, SIGFPE, nothing, NULL), -ENOTSUP));
#endif
    cr_assert(eq(int, eddy_signal_stop(NULL), -EINVAL));
    intptr_t v;
    cr_assert(eq(int, run_task(loop, wait_bad, NULL, &v), 0));
    eddy_loop_free(loop);
}

/* ---- cancellation and timeout scopes (every platform) ----------------------------- */

static intptr_t wait_sigint(void *arg)
{
    (void)arg;
    int signums[] = {SIGINT};
    return eddy_signal_wait(signums, 1);
}

Test(signals, wait_is_cancellable, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_loop();
    eddy_task *t = eddy_spawn(loop, wait_sigint, NULL);
    cr_assert(ne(ptr, t, NULL));
    struct later *l = later_new(LATER_CANCEL_TASK);
    l->task = t;
    later_arm(loop, 20 * NS_PER_MS, l);
    cr_assert(eq(int, eddy_loop_run(loop), 0));
    intptr_t v = 0;
    int err = eddy_task_join(t, &v);
    cr_assert(err == -ECANCELED || v == -ECANCELED, "join %d, result %d", err, (int)v);
    eddy_loop_free(loop);
}

static intptr_t wait_in_scope(void *arg)
{
    (void)arg;
    eddy_timeout scope;
    cr_assert(eq(int, eddy_timeout_begin(&scope, 30 * NS_PER_MS), 0));
    int64_t start = wall_ns();
    int signums[] = {SIGINT};
    int got = eddy_signal_wait(signums, 1);
    int64_t took = wall_ns() - start;
    cr_assert(eq(int, got, -ECANCELED));
    cr_assert(eq(int, eddy_timeout_end(&scope), -ETIMEDOUT));
    cr_assert(ge(i64, took, 25 * NS_PER_MS));
    cr_assert(lt(i64, took, 5 * NS_PER_SEC));
    return 0;
}

Test(signals, wait_ends_with_its_timeout_scope, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_loop();
    intptr_t v;
    cr_assert(eq(int, run_task(loop, wait_in_scope, NULL, &v), 0));
    eddy_loop_free(loop);
}

#ifndef _WIN32

Test(signals, disabled_capability_is_enotsup, .timeout = TEST_TIMEOUT)
{
    setenv("EDDY_CAPS_DISABLE", "signals", 1);
    eddy_loop *loop = new_loop();
    unsetenv("EDDY_CAPS_DISABLE");
    cr_assert(eq(int, eddy_loop_supports(loop, EDDY_CAP_SIGNALS), EDDY_NONE));
    eddy_signal *s;
    cr_assert(eq(int, eddy_signal_start(&s, loop, SIGINT, nothing, NULL), -ENOTSUP));
    eddy_loop_free(loop);
}

/* ---- waits ------------------------------------------------------------------------ */

static void raise_usr1(void *arg)
{
    (void)arg;
    cr_assert(eq(int, raise(SIGUSR1), 0));
}

static intptr_t wait_usr1_usr2(void *arg)
{
    (void)arg;
    int signums[] = {SIGUSR1, SIGUSR2};
    return eddy_signal_wait(signums, 2);
}

/* What a task waiting for SIGUSR1 or SIGUSR2 gets when send runs 10 ms later. */
static int wait_for(eddy_callback send)
{
    eddy_loop *loop = new_loop();
    cr_assert(eq(int, eddy_call_later(loop, 10 * NS_PER_MS, send, NULL, NULL), 0));
    intptr_t v = 0;
    cr_assert(eq(int, run_task(loop, wait_usr1_usr2, NULL, &v), 0));
    eddy_loop_free(loop);
    return (int)v;
}

Test(signals, wait_returns_the_raised_signal, .timeout = TEST_TIMEOUT)
{
    cr_assert(eq(int, wait_for(raise_usr1), SIGUSR1));
}

static void kill_usr2(void *arg)
{
    (void)arg;
    cr_assert(eq(int, kill(getpid(), SIGUSR2), 0));
}

Test(signals, wait_returns_a_signal_sent_to_the_process, .timeout = TEST_TIMEOUT)
{
    cr_assert(eq(int, wait_for(kill_usr2), SIGUSR2));
}

/* The loop is stuck in a task that does not yield when the signal comes: the
 * signal waits for it, and the waiting task gets it afterwards. */
static intptr_t busy_sender(void *arg)
{
    (void)arg;
    cr_assert(eq(int, kill(getpid(), SIGUSR1), 0));
    int64_t until = wall_ns() + 100 * NS_PER_MS;
    while (wall_ns() < until) {
    }
    return 0;
}

static intptr_t wait_while_busy(void *arg)
{
    (void)arg;
    eddy_task *busy = eddy_spawn(NULL, busy_sender, NULL); /* runs once we wait */
    int got = wait_usr1_usr2(NULL);
    cr_assert(eq(int, eddy_task_join(busy, NULL), 0));
    return got;
}

Test(signals, signal_sent_while_the_loop_is_busy_is_delivered_after, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_loop();
    intptr_t v = 0;
    cr_assert(eq(int, run_task(loop, wait_while_busy, NULL, &v), 0));
    cr_assert(eq(int, (int)v, SIGUSR1));
    eddy_loop_free(loop);
}

/* ---- callbacks ------------------------------------------------------------------- */

struct counted {
    eddy_signal *s;
    int calls;
    int stop_after;
    eddy_loop *loop;
};

static void count_and_maybe_stop(void *arg)
{
    struct counted *c = arg;
    cr_assert(eq(ptr, eddy_loop_current(), c->loop), "the callback runs on its loop");
    if (++c->calls == c->stop_after) cr_assert(eq(int, eddy_signal_stop(c->s), 0));
}

static intptr_t raise_twice(void *arg)
{
    struct counted *c = arg;
    cr_assert(eq(int, raise(SIGUSR1), 0));
    cr_assert(eq(int, eddy_sleep(20 * NS_PER_MS), 0));
    cr_assert(eq(int, c->calls, 1));
    cr_assert(eq(int, kill(getpid(), SIGUSR1), 0));
    cr_assert(eq(int, eddy_sleep(20 * NS_PER_MS), 0));
    cr_assert(eq(int, c->calls, 2));
    return 0;
}

/* A callback per delivery; the watcher stops itself from its second callback,
 * after which the loop has nothing left and returns. */
Test(signals, callback_for_each_delivery, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_loop();
    struct counted c = {.stop_after = 2, .loop = loop};
    cr_assert(eq(int, eddy_signal_start(&c.s, loop, SIGUSR1, count_and_maybe_stop, &c), 0));
    intptr_t v;
    cr_assert(eq(int, run_task(loop, raise_twice, &c, &v), 0));
    cr_assert(eq(int, c.calls, 2));
    eddy_loop_free(loop);
}

/* Runs fn(&counted) on a new loop with a SIGUSR1 watcher counting into it;
 * fn stops the watcher and returns 0. */
static void run_with_usr1_watcher(eddy_task_fn fn)
{
    eddy_loop *loop = new_loop();
    struct counted c = {.loop = loop};
    cr_assert(eq(int, eddy_signal_start(&c.s, loop, SIGUSR1, count_and_maybe_stop, &c), 0));
    intptr_t v = -1;
    cr_assert(eq(int, run_task(loop, fn, &c, &v), 0));
    cr_assert(eq(int, (int)v, 0));
    eddy_loop_free(loop);
}

/* Two deliveries before the loop looks coalesce into one callback; a signal
 * raised while the loop is busy still reaches it afterwards. */
static intptr_t raise_twice_busy(void *arg)
{
    struct counted *c = arg;
    raise(SIGUSR1);
    raise(SIGUSR1);
    int64_t until = wall_ns() + 50 * NS_PER_MS;
    while (wall_ns() < until) {
    }
    cr_assert(eq(int, c->calls, 0));
    cr_assert(eq(int, eddy_sleep(20 * NS_PER_MS), 0));
    cr_assert(eq(int, c->calls, 1));
    return eddy_signal_stop(c->s);
}

Test(signals, deliveries_while_busy_coalesce_into_one_callback, .timeout = TEST_TIMEOUT)
{
    run_with_usr1_watcher(raise_twice_busy);
}

/* A delivery that came while a watcher wanted the signal, but that no one took
 * before it stopped, is not handed to a wait that begins afterwards. */
static intptr_t stale_delivery(void *arg)
{
    eddy_signal *usr1 = arg, *usr2;
    cr_assert(eq(int, eddy_signal_start(&usr2, NULL, SIGUSR2, nothing, NULL), 0));
    raise(SIGUSR2); /* recorded; the loop has not looked yet */
    cr_assert(eq(int, eddy_signal_stop(usr2), 0));
    eddy_timeout scope;
    cr_assert(eq(int, eddy_timeout_begin(&scope, 30 * NS_PER_MS), 0));
    int got = wait_usr1_usr2(NULL);
    cr_assert(eq(int, eddy_timeout_end(&scope), -ETIMEDOUT), "the wait got %d", got);
    return eddy_signal_stop(usr1);
}

Test(signals, a_delivery_no_one_took_is_not_kept, .timeout = TEST_TIMEOUT)
{
    signal(SIGUSR2, SIG_IGN); /* what the stop gives back, when the raise comes */
    eddy_loop *loop = new_loop();
    eddy_signal *usr1; /* keeps the loop's signal machinery alive throughout */
    cr_assert(eq(int, eddy_signal_start(&usr1, loop, SIGUSR1, nothing, NULL), 0));
    intptr_t v = -1;
    cr_assert(eq(int, run_task(loop, stale_delivery, usr1, &v), 0));
    cr_assert(eq(int, (int)v, 0));
    eddy_loop_free(loop);
}

/* ---- other threads ------------------------------------------------------------------ */

static void block_usr1(bool block)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    cr_assert(eq(int, pthread_sigmask(block ? SIG_BLOCK : SIG_UNBLOCK, &set, NULL), 0));
}

static void *raise_in_thread(void *arg)
{
    (void)arg;
    usleep(20 * 1000);
    raise(SIGUSR1); /* directed at this thread: the handler runs here */
    return NULL;
}

static void *kill_from_thread(void *arg)
{
    (void)arg;
    block_usr1(true); /* not this thread's to take */
    usleep(20 * 1000);
    kill(getpid(), SIGUSR1);
    return NULL;
}

static intptr_t wait_usr1_from(void *arg)
{
    pthread_t thread;
    cr_assert(eq(int, pthread_create(&thread, NULL, (void *(*)(void *))arg, NULL), 0));
    int got = wait_usr1_usr2(NULL);
    pthread_join(thread, NULL);
    return got;
}

Test(signals, signal_raised_in_another_thread, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_loop();
    intptr_t v = 0;
    cr_assert(eq(int, run_task(loop, wait_usr1_from, (void *)raise_in_thread, &v), 0));
    cr_assert(eq(int, (int)v, SIGUSR1));
    eddy_loop_free(loop);
}

Test(signals, signal_sent_from_another_thread, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_loop();
    intptr_t v = 0;
    cr_assert(eq(int, run_task(loop, wait_usr1_from, (void *)kill_from_thread, &v), 0));
    cr_assert(eq(int, (int)v, SIGUSR1));
    eddy_loop_free(loop);
}

/* Every loop with a watcher for the signal gets it: two loops on two threads. */
struct loop_thread {
    eddy_loop *loop;
    struct counted c;
    int err;
};

static void stop_loop(void *arg)
{
    struct counted *c = arg;
    c->calls++;
    cr_assert(eq(int, eddy_signal_stop(c->s), 0));
}

static void *run_loop_thread(void *arg)
{
    struct loop_thread *lt = arg;
    lt->err = eddy_loop_run(lt->loop);
    return NULL;
}

Test(signals, every_loop_with_a_watcher_gets_the_signal, .timeout = TEST_TIMEOUT)
{
    struct loop_thread lt[2];
    pthread_t threads[2];
    for (int i = 0; i < 2; i++) {
        lt[i] = (struct loop_thread){.loop = new_loop()};
        lt[i].c.loop = lt[i].loop;
        cr_assert(
            eq(int, eddy_signal_start(&lt[i].c.s, lt[i].loop, SIGUSR2, stop_loop, &lt[i].c), 0));
    }
    for (int i = 0; i < 2; i++)
        cr_assert(eq(int, pthread_create(&threads[i], NULL, run_loop_thread, &lt[i]), 0));
    /* Whichever thread takes it, both loops get it: let one of theirs take it. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR2);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    usleep(20 * 1000);
    kill(getpid(), SIGUSR2);
    for (int i = 0; i < 2; i++) {
        pthread_join(threads[i], NULL);
        cr_assert(eq(int, lt[i].err, 0));
        cr_assert(eq(int, lt[i].c.calls, 1), "loop %d", i);
        eddy_loop_free(lt[i].loop);
    }
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);
}

/* ---- pool threads ----------------------------------------------------------------- */

struct pool_work {
    int blocked; /* SIGUSR1 blocked in the worker */
    int interrupted;
};

static intptr_t sleep_in_pool(void *arg)
{
    struct pool_work *w = arg;
    sigset_t mask;
    pthread_sigmask(SIG_BLOCK, NULL, &mask);
    w->blocked = sigismember(&mask, SIGUSR1);
    struct timespec left = {0, 200 * 1000 * 1000};
    while (nanosleep(&left, &left) < 0 && errno == EINTR)
        w->interrupted++;
    return 0;
}

static intptr_t pool_while_signalled(void *arg)
{
    struct counted *c = arg;
    struct pool_work w = {0};
    intptr_t r;
    /* A worker started while the loop's thread takes signals, so that it
     * would inherit that mask if the pool did not block them. */
    cr_assert(eq(int, eddy_to_thread(sleep_in_pool, &(struct pool_work){0}, &r), 0));
    /* The loop's thread blocks SIGUSR1 while the work runs: a pool thread
     * that did not would be the only one left to take it. */
    block_usr1(true);
    pthread_t sender;
    cr_assert(eq(int, pthread_create(&sender, NULL, kill_from_thread, NULL), 0));
    cr_assert(eq(int, eddy_to_thread(sleep_in_pool, &w, &r), 0));
    pthread_join(sender, NULL);
    cr_assert(eq(int, w.blocked, 1), "SIGUSR1 is not blocked in the pool thread");
    cr_assert(eq(int, w.interrupted, 0), "a pool thread took the signal");
    cr_assert(eq(int, c->calls, 0));
    block_usr1(false); /* now the pending signal reaches this thread's handler */
    cr_assert(eq(int, eddy_sleep(20 * NS_PER_MS), 0));
    cr_assert(eq(int, c->calls, 1));
    return eddy_signal_stop(c->s);
}

Test(signals, pool_threads_never_take_signals, .timeout = TEST_TIMEOUT)
{
    run_with_usr1_watcher(pool_while_signalled);
}

/* ---- the disposition given back ---------------------------------------------------- */

static volatile sig_atomic_t own_handler_calls;
static void own_handler(int signum)
{
    (void)signum;
    own_handler_calls++;
}

static void (*current_handler(int signum))(int)
{
    struct sigaction sa;
    cr_assert(eq(int, sigaction(signum, NULL, &sa), 0));
    return sa.sa_handler;
}

Test(signals, last_stop_restores_the_previous_disposition, .timeout = TEST_TIMEOUT)
{
    struct sigaction sa = {.sa_handler = own_handler};
    cr_assert(eq(int, sigaction(SIGUSR1, &sa, NULL), 0));
    eddy_loop *a = new_loop(), *b = new_loop();
    eddy_signal *sa1, *sb1;
    cr_assert(eq(int, eddy_signal_start(&sa1, a, SIGUSR1, nothing, NULL), 0));
    cr_assert(eq(int, eddy_signal_start(&sb1, b, SIGUSR1, nothing, NULL), 0));
    cr_assert(ne(ptr, (void *)current_handler(SIGUSR1), (void *)own_handler));
    cr_assert(eq(int, eddy_signal_stop(sa1), 0));
    cr_assert(ne(ptr, (void *)current_handler(SIGUSR1), (void *)own_handler), "b still watches");
    cr_assert(eq(int, eddy_signal_stop(sb1), 0));
    cr_assert(eq(ptr, (void *)current_handler(SIGUSR1), (void *)own_handler));
    raise(SIGUSR1);
    cr_assert(eq(int, (int)own_handler_calls, 1));
    eddy_loop_free(a);
    eddy_loop_free(b);
    /* The default disposition comes back too, and a wait's end gives it back. */
    sa.sa_handler = SIG_DFL;
    cr_assert(eq(int, sigaction(SIGUSR1, &sa, NULL), 0));
    cr_assert(eq(int, sigaction(SIGUSR2, &sa, NULL), 0));
    cr_assert(eq(int, wait_for(kill_usr2), SIGUSR2));
    cr_assert(eq(ptr, (void *)current_handler(SIGUSR2), (void *)SIG_DFL));
    cr_assert(eq(ptr, (void *)current_handler(SIGUSR1), (void *)SIG_DFL));
}

/* A watcher left started when its loop is freed is stopped: nothing is
 * called afterwards and the disposition comes back. */
Test(signals, loop_free_stops_watchers, .timeout = TEST_TIMEOUT)
{
    signal(SIGUSR1, SIG_IGN);
    eddy_loop *loop = new_loop();
    struct counted c = {.loop = loop};
    cr_assert(eq(int, eddy_signal_start(&c.s, loop, SIGUSR1, count_and_maybe_stop, &c), 0));
    raise(SIGUSR1);
    eddy_loop_free(loop);
    cr_assert(eq(int, c.calls, 0));
    cr_assert(eq(ptr, (void *)current_handler(SIGUSR1), (void *)SIG_IGN));
}

static intptr_t leave_a_watcher(void *arg)
{
    return eddy_signal_start((eddy_signal **)arg, NULL, SIGUSR1, nothing, NULL);
}

/* eddy_run's main returns with a watcher still started: the run ends, and the
 * watcher is stopped with the loop rather than keeping it alive forever. */
Test(signals, eddy_run_ends_with_a_watcher_left, .timeout = TEST_TIMEOUT)
{
    signal(SIGUSR1, SIG_IGN);
    eddy_signal *s = NULL;
    intptr_t v = -1;
    cr_assert(eq(int, eddy_run(leave_a_watcher, &s, &v), 0));
    cr_assert(eq(int, (int)v, 0));
    cr_assert(ne(ptr, s, NULL));
    cr_assert(eq(ptr, (void *)current_handler(SIGUSR1), (void *)SIG_IGN));
}

#else /* _WIN32 */

/* Ctrl+C as the console sends it, to every process on this console; the
 * handler eddy installed turns it into SIGINT for the loop. */
struct ctrl_c {
    eddy_signal *s;
    eddy_timer *limit;
    int calls;
    bool timed_out;
};

static void got_sigint(void *arg)
{
    struct ctrl_c *c = arg;
    c->calls++;
    eddy_timer_cancel(c->limit);
    cr_assert(eq(int, eddy_signal_stop(c->s), 0));
}

static void no_sigint(void *arg)
{
    struct ctrl_c *c = arg;
    c->timed_out = true;
    cr_assert(eq(int, eddy_signal_stop(c->s), 0));
}

Test(signals, ctrl_c_is_sigint, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_loop();
    struct ctrl_c c = {0};
    cr_assert(eq(int, eddy_signal_start(&c.s, loop, SIGINT, got_sigint, &c), 0));
    cr_assert(eq(int, eddy_call_later(loop, 5 * NS_PER_SEC, no_sigint, &c, &c.limit), 0));
    if (!GenerateConsoleCtrlEvent(CTRL_C_EVENT, 0)) {
        eddy_timer_cancel(c.limit);
        eddy_loop_free(loop);
        cr_skip_test("no console to send Ctrl+C to");
    }
    cr_assert(eq(int, eddy_loop_run(loop), 0));
    if (c.timed_out) {
        eddy_timer_cancel(c.limit);
        eddy_loop_free(loop);
        cr_skip_test("the console delivered no Ctrl+C within 5 s");
    }
    cr_assert(eq(int, c.calls, 1));
    eddy_loop_free(loop);
}

#endif
