/* SPDX-License-Identifier: MIT */
/* The thread pool through eddy_to_thread: results (including values that look
 * like error codes), cancellation before a worker starts the call and while
 * it runs, EDDY_THREADPOOL_SIZE read once at first use, loops on several
 * threads sharing the pool, and bad input. Each Criterion test runs in its
 * own process, so each starts with a fresh pool. */
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

static int run_main(eddy_task_fn fn, void *arg)
{
    eddy_loop *loop = new_loop();
    intptr_t result = -1;
    int err = run_task(loop, fn, arg, &result);
    eddy_loop_free(loop);
    return err < 0 ? err : (int)result;
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
    cr_assert(eq(int, run_main(pool_size_main, NULL), 0));
}

static intptr_t six_calls_workers_seen(void *arg)
{
    return workers_seen(6, 4);
}

Test(pool, default_size_is_four, .timeout = TEST_TIMEOUT)
{
    unsetenv("EDDY_THREADPOOL_SIZE");
    cr_assert(eq(int, run_main(six_calls_workers_seen, NULL), 4));
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
