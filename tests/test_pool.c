/* SPDX-License-Identifier: MIT */
/* The thread pool through eddy_to_thread: results (including values that look
 * like error codes), cancellation before a worker starts the call and while
 * it runs, EDDY_THREADPOOL_SIZE read once at first use, growth past it while
 * every worker is blocked (bounded by EDDY_THREADPOOL_MAX, the extra workers
 * leaving when idle), loops on several threads sharing the pool, and bad
 * input. Each Criterion test runs in its own process, so each starts with a
 * fresh pool. */
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#include "helpers.h"

/* ---- a gate that holds workers until the test opens it --------------------------- */

struct gate {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool open;
    int started, finished;
};

static struct gate gate = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, 0, 0};

static intptr_t gate_wait(void *arg)
{
    pthread_mutex_lock(&gate.lock);
    gate.started++;
    while (!gate.open)
        pthread_cond_wait(&gate.cond, &gate.lock);
    gate.finished++;
    pthread_mutex_unlock(&gate.lock);
    return (intptr_t)arg;
}

static int gate_count(const int *counter)
{
    pthread_mutex_lock(&gate.lock);
    int n = *counter;
    pthread_mutex_unlock(&gate.lock);
    return n;
}

static void gate_set(bool open)
{
    pthread_mutex_lock(&gate.lock);
    gate.open = open;
    pthread_cond_broadcast(&gate.cond);
    pthread_mutex_unlock(&gate.lock);
}

/* Waits (on the loop) until n calls have reached the gate; false after 5 s. */
static bool wait_started(int n)
{
    for (int i = 0; i < 5000 && gate_count(&gate.started) < n; i++)
        cr_assert(eq(int, eddy_sleep(NS_PER_MS), 0));
    return gate_count(&gate.started) >= n;
}

static intptr_t task_gate(void *arg)
{
    intptr_t value = -1;
    int err = eddy_to_thread(gate_wait, arg, &value);
    return err < 0 ? err : value;
}

/* ---- results ------------------------------------------------------------------------ */

static pthread_t loop_thread;
static atomic_int off_loop_calls;

static intptr_t square(void *arg)
{
    if (!pthread_equal(pthread_self(), loop_thread)) atomic_fetch_add(&off_loop_calls, 1);
    intptr_t x = (intptr_t)arg;
    return x * x;
}

static intptr_t negate(void *arg)
{
    return -(intptr_t)arg;
}

#define CALLERS 8
#define CALLS   25

static intptr_t caller(void *arg)
{
    intptr_t base = (intptr_t)arg;
    for (intptr_t i = 0; i < CALLS; i++) {
        intptr_t value = -1, x = base * CALLS + i;
        int err = eddy_to_thread(square, (void *)x, &value);
        if (err < 0) return err;
        if (value != x * x) return -EBADMSG;
    }
    return 0;
}

static intptr_t results_main(void *arg)
{
    loop_thread = pthread_self();
    eddy_task *tasks[CALLERS];
    for (intptr_t i = 0; i < CALLERS; i++)
        tasks[i] = eddy_spawn(NULL, caller, (void *)i);
    for (int i = 0; i < CALLERS; i++) {
        intptr_t r = -1;
        cr_assert(eq(int, eddy_task_join(tasks[i], &r), 0));
        cr_assert(eq(int, (int)r, 0), "caller %d: %s", i, eddy_strerror((int)r));
    }
    cr_assert(eq(int, atomic_load(&off_loop_calls), CALLERS *CALLS), "fn ran off the loop thread");

    /* fn's value is passed through as it is, even when it looks like an error code. */
    intptr_t value = 0;
    cr_assert(eq(int, eddy_to_thread(negate, (void *)(intptr_t)ECANCELED, &value), 0));
    cr_assert(eq(int, (int)value, -ECANCELED));
    cr_assert(eq(int, eddy_to_thread(negate, (void *)1, NULL), 0), "result may be NULL");
    return 0;
}

Test(pool, to_thread_results, .timeout = TEST_TIMEOUT)
{
    cr_assert(eq(int, run_main(results_main, NULL), 0));
}

/* ---- cancellation --------------------------------------------------------------------- */

static atomic_int ran;

static intptr_t mark_ran(void *arg)
{
    atomic_store(&ran, 1);
    return 0;
}

static intptr_t task_mark(void *arg)
{
    return eddy_to_thread(mark_ran, NULL, NULL);
}

#define DEFAULT_WORKERS 4

static intptr_t cancel_queued_main(void *arg)
{
    eddy_task *blockers[DEFAULT_WORKERS];
    for (int i = 0; i < DEFAULT_WORKERS; i++)
        blockers[i] = eddy_spawn(NULL, task_gate, (void *)(intptr_t)i);
    cr_assert(wait_started(DEFAULT_WORKERS), "the workers did not all start");

    eddy_task *t = eddy_spawn(NULL, task_mark, NULL);
    cr_assert(eq(int, eddy_sleep(20 * NS_PER_MS), 0));
    cr_assert(not(eddy_future_done(eddy_task_future(t))), "a fifth call ran on four workers");
    cr_assert(eddy_task_cancel(t));
    /* Withdrawn from the queue: the join does not need a worker. */
    cr_assert(eq(int, eddy_task_join(t, NULL), -ECANCELED));

    gate_set(true);
    for (int i = 0; i < DEFAULT_WORKERS; i++) {
        intptr_t r = -1;
        cr_assert(eq(int, eddy_task_join(blockers[i], &r), 0));
        cr_assert(eq(int, (int)r, i));
    }
    /* With the workers free, a cancelled call must still never run. */
    intptr_t v = -1;
    cr_assert(eq(int, eddy_to_thread(square, (void *)3, &v), 0));
    cr_assert(eq(int, (int)v, 9));
    cr_assert(eq(int, atomic_load(&ran), 0), "the cancelled call ran");
    return 0;
}

Test(pool, cancel_before_start, .timeout = TEST_TIMEOUT)
{
    unsetenv("EDDY_THREADPOOL_SIZE");
    setenv("EDDY_THREADPOOL_MAX", "4", 1); /* no growth: the fifth call stays queued */
    cr_assert(eq(int, run_main(cancel_queued_main, NULL), 0));
}

static intptr_t cancel_running_main(void *arg)
{
    eddy_task *t = eddy_spawn(NULL, task_gate, (void *)42);
    cr_assert(wait_started(1));
    cr_assert(eddy_task_cancel(t));
    cr_assert(eq(int, eddy_sleep(50 * NS_PER_MS), 0));
    /* A running call cannot be stopped: the task waits for it (its frame holds
     * the call), however long it takes. */
    cr_assert(not(eddy_future_done(eddy_task_future(t))), "the task left a running call");
    cr_assert(eq(int, gate_count(&gate.finished), 0));
    gate_set(true);
    cr_assert(eq(int, eddy_task_join(t, NULL), -ECANCELED), "the cancellation stands");
    cr_assert(eq(int, gate_count(&gate.finished), 1), "the call ran to its end");
    return 0;
}

Test(pool, cancel_while_running, .timeout = TEST_TIMEOUT)
{
    cr_assert(eq(int, run_main(cancel_running_main, NULL), 0));
}

/* ---- EDDY_THREADPOOL_SIZE ------------------------------------------------------------------ */

/* With n workers, n + 1 blocking calls: exactly n start. Waits for the
 * expected workers to arrive (threads start slowly under Valgrind), then a
 * little longer for any that should not be there. */
static int workers_seen(int n_calls, int expected)
{
    gate_set(false);
    pthread_mutex_lock(&gate.lock);
    gate.started = gate.finished = 0;
    pthread_mutex_unlock(&gate.lock);
    eddy_task *tasks[16];
    for (int i = 0; i < n_calls; i++)
        tasks[i] = eddy_spawn(NULL, task_gate, NULL);
    wait_started(expected);
    cr_assert(eq(int, eddy_sleep(100 * NS_PER_MS), 0));
    int started = gate_count(&gate.started);
    gate_set(true);
    for (int i = 0; i < n_calls; i++)
        cr_assert(eq(int, eddy_task_join(tasks[i], NULL), 0));
    return started;
}

static intptr_t pool_size_main(void *arg)
{
    cr_assert(eq(int, workers_seen(3, 2), 2), "EDDY_THREADPOOL_SIZE=2 gives 2 workers");
    setenv("EDDY_THREADPOOL_SIZE", "8", 1);
    cr_assert(eq(int, workers_seen(5, 2), 2), "the size is read once, at first use");
    return 0;
}

Test(pool, size_from_environment_at_first_use, .timeout = TEST_TIMEOUT)
{
    setenv("EDDY_THREADPOOL_SIZE", "2", 1);
    setenv("EDDY_THREADPOOL_MAX", "2", 1);
    cr_assert(eq(int, run_main(pool_size_main, NULL), 0));
}

static intptr_t six_calls_workers_seen(void *arg)
{
    return workers_seen(6, 4);
}

Test(pool, default_size_is_four, .timeout = TEST_TIMEOUT)
{
    unsetenv("EDDY_THREADPOOL_SIZE");
    setenv("EDDY_THREADPOOL_MAX", "1", 1); /* below the base: the base wins */
    cr_assert(eq(int, run_main(six_calls_workers_seen, NULL), 4));
}

/* ---- growth past the base ------------------------------------------------------------------ */

static intptr_t sleep_2s(void *arg)
{
    struct timespec ts = {2, 0};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
    return 0;
}

static intptr_t task_sleep_2s(void *arg)
{
    return eddy_to_thread(sleep_2s, NULL, NULL);
}

static intptr_t blockers_do_not_stall_main(void *arg)
{
    /* A small file for the file read (on epoll it goes to the pool too). */
    char path[] = "/tmp/eddy-pool-XXXXXX";
    int fd = mkstemp(path);
    cr_assert(ge(int, fd, 0));
    cr_assert(eq(sz, (size_t)write(fd, "abc", 3), 3));
    close(fd);
    eddy_file *f;
    cr_assert(eq(int, eddy_file_open(&f, path, O_RDONLY, 0), 0));
    unlink(path);

    /* As many 2 s calls as the pool has base workers: all of them blocked. */
    eddy_task *sleepers[DEFAULT_WORKERS];
    for (int i = 0; i < DEFAULT_WORKERS; i++)
        sleepers[i] = eddy_spawn(NULL, task_sleep_2s, NULL);
    cr_assert(eq(int, eddy_sleep(50 * NS_PER_MS), 0)); /* they have started */

    int64_t before = wall_ns();
    intptr_t v = -1;
    cr_assert(eq(int, eddy_to_thread(square, (void *)5, &v), 0));
    cr_assert(eq(int, (int)v, 25));
    int64_t call_ns = wall_ns() - before;
    char buf[8];
    before = wall_ns();
    cr_assert(eq(sz, (size_t)eddy_file_read(f, buf, sizeof buf, 0), 3));
    int64_t read_ns = wall_ns() - before;
    cr_assert(lt(i64, call_ns, 500 * NS_PER_MS), "a call waited %lld ms behind blocked workers",
              (long long)(call_ns / NS_PER_MS));
    cr_assert(lt(i64, read_ns, 500 * NS_PER_MS), "a read waited %lld ms behind blocked workers",
              (long long)(read_ns / NS_PER_MS));
    for (int i = 0; i < DEFAULT_WORKERS; i++)
        cr_assert(eq(int, eddy_task_join(sleepers[i], NULL), 0));
    cr_assert(eq(int, eddy_file_close(f), 0));
    return 0;
}

Test(pool, blocked_workers_do_not_stall_other_calls, .timeout = TEST_TIMEOUT)
{
    unsetenv("EDDY_THREADPOOL_SIZE");
    unsetenv("EDDY_THREADPOOL_MAX");
    cr_assert(eq(int, run_main(blockers_do_not_stall_main, NULL), 0));
}

static intptr_t six_calls_three_workers(void *arg)
{
    return workers_seen(6, 3);
}

Test(pool, growth_stops_at_the_maximum, .timeout = TEST_TIMEOUT)
{
    setenv("EDDY_THREADPOOL_SIZE", "2", 1);
    setenv("EDDY_THREADPOOL_MAX", "3", 1);
    /* workers_seen waits 100 ms past the third: ten times the stall delay. */
    cr_assert(eq(int, run_main(six_calls_three_workers, NULL), 3));
}

/* Whether the calling thread ran a call before: a mark in its thread-local storage. */
static _Thread_local bool thread_seen;
static atomic_int calls_on_old_threads;

static intptr_t gate_wait_mark(void *arg)
{
    if (thread_seen) atomic_fetch_add(&calls_on_old_threads, 1);
    thread_seen = true;
    return gate_wait(arg);
}

static intptr_t task_gate_mark(void *arg)
{
    return eddy_to_thread(gate_wait_mark, NULL, NULL);
}

/* Runs n blocking calls at once, all on their own workers; returns how many
 * ran on a thread that had run one before. */
static int round_of_calls(int n)
{
    gate_set(false);
    pthread_mutex_lock(&gate.lock);
    gate.started = gate.finished = 0;
    pthread_mutex_unlock(&gate.lock);
    atomic_store(&calls_on_old_threads, 0);
    eddy_task *tasks[8];
    for (int i = 0; i < n; i++)
        tasks[i] = eddy_spawn(NULL, task_gate_mark, NULL);
    cr_assert(wait_started(n), "%d calls did not all start", n);
    gate_set(true);
    for (int i = 0; i < n; i++)
        cr_assert(eq(int, eddy_task_join(tasks[i], NULL), 0));
    return atomic_load(&calls_on_old_threads);
}

/* The process's thread count (Linux), or -1. */
static int thread_count(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    char line[128];
    int n = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "Threads: %d", &n) == 1) break;
    fclose(f);
    return n;
}

static intptr_t extra_workers_exit_main(void *arg)
{
    int threads = thread_count();
    cr_assert(eq(int, round_of_calls(4), 0));
    /* One base worker and three extra ones exist. Idle 100 ms, the extra
     * ones (and the monitor) go. */
    cr_assert(eq(int, eddy_sleep(600 * NS_PER_MS), 0));
    if (threads >= 0)
        cr_assert(le(int, thread_count(), threads + 1), "only the base worker is left");
    cr_assert(eq(int, round_of_calls(4), 1), "the base worker stays, new threads for the rest");
    return 0;
}

Test(pool, extra_workers_exit_when_idle, .timeout = TEST_TIMEOUT)
{
    setenv("EDDY_THREADPOOL_SIZE", "1", 1);
    setenv("EDDY_THREADPOOL_MAX", "4", 1);
    setenv("EDDY_THREADPOOL_IDLE_MS", "100", 1);
    cr_assert(eq(int, run_main(extra_workers_exit_main, NULL), 0));
}

/* ---- several loops share the pool --------------------------------------------------------- */

static void *loop_thread_main(void *arg)
{
    intptr_t base = (intptr_t)arg, result = -1;
    int err = eddy_run(caller, (void *)base, &result);
    return (void *)(intptr_t)(err < 0 ? err : result);
}

Test(pool, loops_on_several_threads, .timeout = TEST_TIMEOUT)
{
    loop_thread = pthread_self(); /* no loop here: every call counts as off-loop */
    pthread_t threads[4];
    for (intptr_t i = 0; i < 4; i++)
        cr_assert(eq(int, pthread_create(&threads[i], NULL, loop_thread_main, (void *)i), 0));
    for (int i = 0; i < 4; i++) {
        void *r;
        cr_assert(eq(int, pthread_join(threads[i], &r), 0));
        cr_assert(eq(int, (int)(intptr_t)r, 0), "loop %d: %s", i, eddy_strerror((int)(intptr_t)r));
    }
}

/* ---- bad input ------------------------------------------------------------------------------ */

static intptr_t bad_input_main(void *arg)
{
    intptr_t value = 5;
    cr_assert(eq(int, eddy_to_thread(NULL, NULL, &value), -EINVAL));
    cr_assert(eq(int, (int)value, 5), "result untouched on error");
    return 0;
}

Test(pool, bad_input, .timeout = TEST_TIMEOUT)
{
    cr_assert(eq(int, run_main(bad_input_main, NULL), 0));
    intptr_t value = 5;
    cr_assert(eq(int, eddy_to_thread(square, NULL, &value), -EPERM), "outside a task");
    cr_assert(eq(int, (int)value, 5));
}
