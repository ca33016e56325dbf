/* SPDX-License-Identifier: MIT */
/* Embedding: an eddy loop driven from a plain poll() loop through
 * eddy_loop_run_once and eddy_loop_fd runs tasks, timers and socket I/O to
 * their end, and the descriptor wakes the foreign loop for each. */
#include <pthread.h>
#ifndef _WIN32
#include <poll.h>
#endif

#include "helpers.h"

Test(embed, bad_input)
{
    cr_expect(eq(int, eddy_loop_run_once(NULL, 0), -EINVAL));
    cr_expect(eq(int, (int)eddy_loop_fd(NULL), -EINVAL));
}

Test(embed, empty_loop_returns_zero_at_once, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_loop();
    int64_t start = wall_ns();
    cr_expect(eq(int, eddy_loop_run_once(loop, -1), 0), "nothing to do: no wait");
    cr_expect(lt(i64, wall_ns() - start, NS_PER_SEC));
    eddy_loop_free(loop);
}

static intptr_t add_one(void *arg)
{
    return (intptr_t)arg + 1;
}

Test(embed, run_once_runs_a_task, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_loop();
    eddy_task *t = eddy_spawn(loop, add_one, (void *)41);
    cr_assert(ne(ptr, t, NULL));
    int r;
    int iterations = 0;
    while ((r = eddy_loop_run_once(loop, 0)) > 0)
        cr_assert(lt(int, ++iterations, 100));
    cr_expect(eq(int, r, 0));
    intptr_t v = 0;
    cr_expect(eq(int, eddy_task_join(t, &v), 0));
    cr_expect(eq(i64, (int64_t)v, 42));
    eddy_loop_free(loop);
}

static intptr_t nested_run_once(void *arg)
{
    return eddy_loop_run_once(arg, 0);
}

Test(embed, run_once_inside_a_running_loop_is_busy, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_loop();
    intptr_t v = 0;
    cr_expect(eq(int, run_task(loop, nested_run_once, loop, &v), -EBUSY));
    eddy_loop_free(loop);
}

/* The work: a timer, then a TCP echo between two tasks of the loop. */
struct work {
    uint16_t port;
    eddy_task *server, *client;
    eddy_future *listening;
    int echoed;
    int64_t slept_ns;
};

static intptr_t echo_server(void *arg)
{
    struct work *w = arg;
    eddy_sock *l, *c;
    int err = eddy_tcp_listen(&l, "127.0.0.1", 0, 0);
    if (err < 0) return err;
    w->port = (uint16_t)eddy_sock_port(l);
    cr_expect(eq(int, eddy_future_set_result(w->listening, 0), 0));
    err = eddy_accept(l, &c);
    eddy_sock_close(l);
    if (err < 0) return err;
    char buf[64];
    ssize_t n;
    while ((n = eddy_recv(c, buf, sizeof buf)) > 0)
        if (eddy_send(c, buf, (size_t)n) < 0) break;
    eddy_sock_close(c);
    return n < 0 ? n : 0;
}

static intptr_t echo_client(void *arg)
{
    struct work *w = arg;
    int64_t start = wall_ns();
    int err = eddy_sleep(20 * NS_PER_MS);
    w->slept_ns = wall_ns() - start;
    if (err < 0) return err;
    err = eddy_await(w->listening, NULL);
    if (err < 0) return err;
    eddy_sock *s;
    err = eddy_tcp_connect(&s, "127.0.0.1", w->port);
    if (err < 0) return err;
    for (int i = 0; i < 50 && err >= 0; i++) {
        char out[16], in[16];
        int len = snprintf(out, sizeof out, "ping %d", i);
        if ((err = (int)eddy_send(s, out, (size_t)len)) < 0) break;
        size_t got = 0;
        while (got < (size_t)len && err >= 0) {
            ssize_t n = eddy_recv(s, in + got, sizeof in - got);
            if (n <= 0) err = n < 0 ? (int)n : -ECONNRESET;
            got += n > 0 ? (size_t)n : 0;
        }
        if (err >= 0 && memcmp(in, out, (size_t)len) == 0) w->echoed++;
    }
    eddy_sock_close(s);
    return err < 0 ? err : 0;
}

/* The work spawned on loop, then checked once the loop has run it. */
static void work_start(eddy_loop *loop, struct work *w)
{
    w->listening = eddy_future_new(loop);
    cr_assert(ne(ptr, w->listening, NULL));
    w->server = eddy_spawn(loop, echo_server, w);
    w->client = eddy_spawn(loop, echo_client, w);
    cr_assert(ne(ptr, w->server, NULL));
    cr_assert(ne(ptr, w->client, NULL));
}

static void work_check(struct work *w)
{
    intptr_t v = -1;
    cr_expect(eq(int, eddy_task_join(w->client, &v), 0));
    cr_expect(eq(i64, (int64_t)v, 0), "client: %s", eddy_strerror((int)v));
    cr_expect(eq(int, eddy_task_join(w->server, &v), 0));
    cr_expect(eq(i64, (int64_t)v, 0), "server: %s", eddy_strerror((int)v));
    cr_expect(eq(int, w->echoed, 50));
    cr_expect(ge(i64, w->slept_ns, 19 * NS_PER_MS), "the timer fired early");
    eddy_future_unref(w->listening);
}

#ifndef _WIN32

/* The foreign loop: poll() on the eddy loop's descriptor, then one
 * non-blocking iteration, until the loop has nothing left. Returns how many
 * times poll() waited in vain (timed out) while the loop had work. */
static int drive_with_poll(eddy_loop *loop, int *iterations)
{
    intptr_t fd = eddy_loop_fd(loop);
    cr_assert(ge(i64, (int64_t)fd, 0), "eddy_loop_fd: %s", eddy_strerror((int)fd));
    int timeouts = 0, r;
    *iterations = 0;
    while ((r = eddy_loop_run_once(loop, 0)) > 0) {
        struct pollfd p = {.fd = (int)fd, .events = POLLIN};
        int n = poll(&p, 1, 5000);
        cr_assert(ge(int, n, 0));
        if (n == 0) timeouts++;
        cr_assert(lt(int, ++*iterations, 100000));
    }
    cr_expect(eq(int, r, 0), "eddy_loop_run_once: %s", eddy_strerror(r));
    return timeouts;
}

Test(embed, poll_drives_tasks_timers_and_sockets, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_loop();
    struct work w = {0};
    work_start(loop, &w);
    int iterations;
    int timeouts = drive_with_poll(loop, &iterations);
    cr_expect(eq(int, timeouts, 0), "poll() waited 5 s in vain %d times", timeouts);
    work_check(&w);
    eddy_loop_free(loop);
}

/* A callback posted from another thread makes the descriptor readable. */
struct post {
    eddy_loop *loop;
    int ran;
};

static void mark(void *arg)
{
    ((struct post *)arg)->ran++;
}

static void *post_later(void *arg)
{
    struct post *p = arg;
    struct timespec ts = {0, 30 * 1000 * 1000};
    nanosleep(&ts, NULL);
    cr_expect(eq(int, eddy_call_soon_threadsafe(p->loop, mark, p), 0));
    return NULL;
}

Test(embed, threadsafe_post_wakes_the_descriptor, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_loop();
#ifdef __linux__
    if (strcmp(eddy_loop_backend(loop), "kqueue") == 0) {
        eddy_loop_free(loop);
        cr_skip_test(
            "libkqueue's descriptor never becomes readable for an EVFILT_USER "
            "trigger (a plain libkqueue program shows it too; BSD kqueue is not tried here)");
    }
#endif
    intptr_t fd = eddy_loop_fd(loop);
    cr_assert(ge(i64, (int64_t)fd, 0));
    cr_expect(eq(int, eddy_loop_run_once(loop, 0), 0));
    struct pollfd p = {.fd = (int)fd, .events = POLLIN};
    cr_expect(eq(int, poll(&p, 1, 0), 0), "readable with nothing to do");
    struct post post = {loop, 0};
    pthread_t th;
    cr_assert(eq(int, pthread_create(&th, NULL, post_later, &post), 0));
    cr_expect(eq(int, poll(&p, 1, 10000), 1), "the post did not wake the descriptor");
    pthread_join(th, NULL);
    int r = eddy_loop_run_once(loop, 0);
    cr_expect(ge(int, r, 0));
    if (post.ran == 0) r = eddy_loop_run_once(loop, 0);
    cr_expect(eq(int, post.ran, 1));
    /* Taken in: the descriptor is quiet again. */
    cr_expect(eq(int, poll(&p, 1, 0), 0), "still readable after the post ran");
    eddy_loop_free(loop);
}

#else

/* Windows: a completion port is no descriptor a foreign loop could wait on,
 * so eddy_loop_fd says -ENOTSUP; the foreign loop calls run_once on a timer
 * (0: no wait), or lets it wait a bounded time when it is idle itself. */
Test(embed, no_descriptor_on_windows)
{
    eddy_loop *loop = new_loop();
    cr_expect(eq(int, (int)eddy_loop_fd(loop), -ENOTSUP));
    eddy_loop_free(loop);
}

/* A GUI's timer: one non-blocking iteration per tick, 1 ms apart. */
Test(embed, timer_ticks_drive_tasks_timers_and_sockets, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_loop();
    struct work w = {0};
    work_start(loop, &w);
    int r, ticks = 0;
    while ((r = eddy_loop_run_once(loop, 0)) > 0) {
        Sleep(1);
        cr_assert(lt(int, ++ticks, 100000));
    }
    cr_expect(eq(int, r, 0), "eddy_loop_run_once: %s", eddy_strerror(r));
    work_check(&w);
    eddy_loop_free(loop);
}

/* An idle foreign loop lets run_once wait: a post from another thread ends
 * the wait at once, not at its limit. */
struct post {
    eddy_loop *loop;
    eddy_future *f;
};

static void resolve(void *arg)
{
    cr_expect(eq(int, eddy_future_set_result(arg, 7), 0));
}

static void *post_later(void *arg)
{
    struct post *p = arg;
    Sleep(30);
    cr_expect(eq(int, eddy_call_soon_threadsafe(p->loop, resolve, p->f), 0));
    return NULL;
}

static intptr_t await_post(void *arg)
{
    intptr_t v = 0;
    int err = eddy_await(arg, &v);
    return err < 0 ? err : v;
}

Test(embed, threadsafe_post_ends_a_waiting_run_once, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_loop();
    struct post post = {loop, eddy_future_new(loop)};
    cr_assert(ne(ptr, post.f, NULL));
    eddy_task *t = eddy_spawn(loop, await_post, post.f);
    cr_assert(ne(ptr, t, NULL));
    cr_expect(eq(int, eddy_loop_run_once(loop, 0), 1), "the task waits");
    pthread_t th;
    cr_assert(eq(int, pthread_create(&th, NULL, post_later, &post), 0));
    int64_t start = wall_ns();
    int r, n = 0;
    while ((r = eddy_loop_run_once(loop, 10 * NS_PER_SEC)) > 0)
        cr_assert(lt(int, ++n, 100));
    int64_t took = wall_ns() - start;
    pthread_join(th, NULL);
    cr_expect(eq(int, r, 0));
    cr_expect(lt(i64, took, 5 * NS_PER_SEC), "run_once waited for its limit");
    intptr_t v = 0;
    cr_expect(eq(int, eddy_task_join(t, &v), 0));
    cr_expect(eq(i64, (int64_t)v, 7));
    eddy_future_unref(post.f);
    eddy_loop_free(loop);
}

#endif

/* A blocking run_once waits for the timer, not longer. */
static intptr_t sleep_30ms(void *arg)
{
    (void)arg;
    return eddy_sleep(30 * NS_PER_MS);
}

Test(embed, blocking_run_once_waits_for_the_timer, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_loop();
    eddy_task *t = eddy_spawn(loop, sleep_30ms, NULL);
    cr_assert(ne(ptr, t, NULL));
    int64_t start = wall_ns();
    int r, n = 0;
    while ((r = eddy_loop_run_once(loop, -1)) > 0)
        cr_assert(lt(int, ++n, 1000));
    cr_expect(eq(int, r, 0));
    int64_t took = wall_ns() - start;
    cr_expect(ge(i64, took, 29 * NS_PER_MS));
    cr_expect(lt(i64, took, 5 * NS_PER_SEC));
    cr_expect(lt(int, n, 20), "%d iterations for one sleep: it spun", n);
    cr_expect(eq(int, eddy_task_join(t, NULL), 0));
    eddy_loop_free(loop);
}
