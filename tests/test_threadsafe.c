/* SPDX-License-Identifier: MIT */
/* eddy_call_soon_threadsafe: delivery from many threads, exactly once and in
 * each thread's order, and prompt wake-ups of a loop blocked in its backend. */
#include <pthread.h>
#include <string.h>
#include <unistd.h>
#ifndef _WIN32
#include <poll.h>
#include <sys/socket.h>
#endif

#include "helpers.h"

#define THREADS 4
#define CALLS   10000

struct delivery;

struct call {
    struct delivery *d;
    int thread;
    int index;
};

struct delivery {
    eddy_loop *loop;
    eddy_future *all_delivered;
    struct call calls[THREADS][CALLS];
    int seen[THREADS][CALLS];
    int last[THREADS];
    int count;
    int out_of_order;
    int post_errors; /* atomic */
    pthread_t threads[THREADS];
    int thread_index[THREADS];
};

static void delivered_cb(void *arg)
{
    struct call *c = arg;
    struct delivery *d = c->d;
    d->seen[c->thread][c->index]++;
    if (c->index <= d->last[c->thread]) d->out_of_order++;
    d->last[c->thread] = c->index;
    if (++d->count == THREADS * CALLS)
        cr_expect(eq(int, eddy_future_set_result(d->all_delivered, d->count), 0));
}

struct poster {
    struct delivery *d;
    int thread;
};

static struct poster posters[THREADS];

static void *post_calls(void *arg)
{
    struct poster *p = arg;
    struct delivery *d = p->d;
    for (int i = 0; i < CALLS; i++) {
        struct call *c = &d->calls[p->thread][i];
        if (eddy_call_soon_threadsafe(d->loop, delivered_cb, c) != 0)
            __atomic_add_fetch(&d->post_errors, 1, __ATOMIC_SEQ_CST);
        if (i % 1000 == 0) sched_yield();
    }
    return NULL;
}

static intptr_t receive_all(void *arg)
{
    struct delivery *d = arg;
    for (int t = 0; t < THREADS; t++) {
        posters[t] = (struct poster){d, t};
        if (pthread_create(&d->threads[t], NULL, post_calls, &posters[t]) != 0) return -EAGAIN;
    }
    intptr_t v = 0;
    int err = eddy_await(d->all_delivered, &v);
    return err < 0 ? err : v;
}

Test(threadsafe, four_threads_deliver_exactly_once, .timeout = TEST_TIMEOUT)
{
    struct delivery *d = calloc(1, sizeof(*d));
    cr_assert(ne(ptr, d, NULL));
    d->loop = new_loop();
    d->all_delivered = eddy_future_new(d->loop);
    cr_assert(ne(ptr, d->all_delivered, NULL));
    for (int t = 0; t < THREADS; t++) {
        d->last[t] = -1;
        for (int i = 0; i < CALLS; i++)
            d->calls[t][i] = (struct call){d, t, i};
    }
    intptr_t v = 0;
    cr_assert(eq(int, run_task(d->loop, receive_all, d, &v), 0));
    for (int t = 0; t < THREADS; t++)
        cr_assert(eq(int, pthread_join(d->threads[t], NULL), 0));
    cr_assert(eq(iptr, v, THREADS * CALLS));
    cr_assert(eq(int, d->post_errors, 0));
    cr_assert(eq(int, d->count, THREADS *CALLS));
    for (int t = 0; t < THREADS; t++)
        for (int i = 0; i < CALLS; i++)
            cr_assert(eq(int, d->seen[t][i], 1), "call %d of thread %d delivered %d times", i, t,
                      d->seen[t][i]);
    cr_assert(eq(int, d->out_of_order, 0), "calls from one thread ran out of their order");
    eddy_future_unref(d->all_delivered);
    eddy_loop_free(d->loop);
    free(d);
}

/* ---- waking a blocked loop ------------------------------------------------------- */

struct wake {
    eddy_loop *loop;
    eddy_future *woken;
    int64_t posted_at; /* atomic */
    int64_t ran_at;
    int post_result;
    pthread_t thread;
};

static void wake_cb(void *arg)
{
    struct wake *w = arg;
    w->ran_at = wall_ns();
    cr_expect(eq(int, eddy_future_set_result(w->woken, 1), 0));
}

static void *post_later(void *arg)
{
    struct wake *w = arg;
    usleep(50 * 1000);
    __atomic_store_n(&w->posted_at, wall_ns(), __ATOMIC_SEQ_CST);
    w->post_result = eddy_call_soon_threadsafe(w->loop, wake_cb, w);
    return NULL;
}

static intptr_t wait_for_wake(void *arg)
{
    struct wake *w = arg;
    if (pthread_create(&w->thread, NULL, post_later, w) != 0) return -EAGAIN;
    /* Nothing else is ready: the loop blocks in its backend. */
    int err = eddy_await(w->woken, NULL);
    /* A far timer may still be pending: end eddy_loop_run now. */
    eddy_loop_stop(eddy_loop_current());
    return err;
}

static void never_cb(void *arg)
{
    (*(int *)arg)++;
}

static void check_prompt_wake(unsigned flags, int64_t far_timer_ns)
{
    struct wake w = {.loop = loop_with(flags, 0), .post_result = 1};
    w.woken = eddy_future_new(w.loop);
    cr_assert(ne(ptr, w.woken, NULL));
    int far_fired = 0;
    eddy_timer *far_timer = NULL;
    if (far_timer_ns > 0)
        cr_assert(
            eq(int, eddy_call_later(w.loop, far_timer_ns, never_cb, &far_fired, &far_timer), 0));
    int64_t start = wall_ns();
    eddy_task *t = eddy_spawn(w.loop, wait_for_wake, &w);
    cr_assert(ne(ptr, t, NULL));
    cr_assert(eq(int, eddy_loop_run(w.loop), 0));
    cr_assert(eq(int, pthread_join(w.thread, NULL), 0));
    cr_assert(eq(int, w.post_result, 0));
    cr_assert(eq(int, eddy_task_join(t, NULL), 0));
    if (far_timer) cr_assert(eq(int, eddy_timer_cancel(far_timer), 0), "the far timer fired");
    cr_assert(eq(int, far_fired, 0));
    int64_t posted = __atomic_load_n(&w.posted_at, __ATOMIC_SEQ_CST);
    cr_assert(ge(i64, w.ran_at, posted));
    cr_assert(lt(i64, w.ran_at - posted, NS_PER_SEC), "the loop woke %lld ms after the post",
              (long long)((w.ran_at - posted) / NS_PER_MS));
    cr_assert(lt(i64, wall_ns() - start, 5 * NS_PER_SEC));
    eddy_future_unref(w.woken);
    eddy_loop_free(w.loop);
}

Test(threadsafe, wakes_loop_blocked_without_deadline, .timeout = TEST_TIMEOUT)
{
    check_prompt_wake(0, 0);
}

Test(threadsafe, wakes_loop_blocked_until_far_timer, .timeout = TEST_TIMEOUT)
{
    check_prompt_wake(0, 30 * NS_PER_SEC);
}

Test(threadsafe, wakes_virtual_time_loop, .timeout = TEST_TIMEOUT)
{
    check_prompt_wake(EDDY_LOOP_VIRTUAL_TIME, 0);
}

/* ---- before the loop runs, and from the loop thread ---------------------------- */

struct ordered {
    int order[4];
    int count;
};

struct ordered_call {
    struct ordered *o;
    int index;
};

static void ordered_cb(void *arg)
{
    struct ordered_call *c = arg;
    c->o->order[c->o->count++] = c->index;
}

Test(threadsafe, calls_before_run_are_delivered_in_order, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_loop();
    struct ordered o = {.count = 0};
    struct ordered_call calls[4];
    for (int i = 0; i < 4; i++) {
        calls[i] = (struct ordered_call){&o, i};
        cr_assert(eq(int, eddy_call_soon_threadsafe(loop, ordered_cb, &calls[i]), 0));
    }
    cr_assert(eq(int, o.count, 0), "a threadsafe call ran inline");
    cr_assert(eq(int, eddy_loop_run(loop), 0));
    cr_assert(eq(int, o.count, 4));
    for (int i = 0; i < 4; i++)
        cr_assert(eq(int, o.order[i], i));
    eddy_loop_free(loop);
}

Test(threadsafe, from_the_loop_thread, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_loop();
    struct ordered o = {.count = 0};
    struct ordered_call first = {&o, 1}, second = {&o, 2};
    cr_assert(eq(int, eddy_call_soon(loop, ordered_cb, &first), 0));
    cr_assert(eq(int, eddy_call_soon_threadsafe(loop, ordered_cb, &second), 0));
    cr_assert(eq(int, eddy_loop_run(loop), 0));
    cr_assert(eq(int, o.count, 2));
    cr_assert(eq(int, o.order[0], 1));
    cr_assert(eq(int, o.order[1], 2));
    eddy_loop_free(loop);
}

/* ---- only the loop's own thread may touch it ------------------------------------- */

#define FOREIGN_CALLS 200000

/* What a foreign thread's calls on a running loop gave: every one refused. */
struct foreign {
    eddy_loop *loop;
    eddy_future *future; /* the loop's, pending while the thread runs */
    eddy_task *task;     /* the loop's, pending too */
    eddy_group *group;
    eddy_timer *timer;
    int accepted;       /* calls that returned success instead of EPERM */
    int wrong_errno;    /* NULL returns without errno EPERM */
    int ran;            /* loop thread: callbacks or tasks that ran */
    int threadsafe_ran; /* loop thread: threadsafe calls delivered */
    pthread_t thread;
};

static void foreign_cb(void *arg)
{
    ((struct foreign *)arg)->ran++;
}

static intptr_t foreign_task(void *arg)
{
    ((struct foreign *)arg)->ran++;
    return 0;
}

static void foreign_done_cb(eddy_future *f, void *arg)
{
    (void)f;
    ((struct foreign *)arg)->ran++;
}

static void foreign_watch_cb(eddy_watch *w, unsigned revents, void *arg)
{
    (void)w;
    (void)revents;
    ((struct foreign *)arg)->ran++;
}

static void foreign_refused_ptr(struct foreign *fo, void *p)
{
    if (p)
        fo->accepted++;
    else if (errno != EPERM)
        fo->wrong_errno++;
}

static void foreign_refused(struct foreign *fo, int err)
{
    if (err != -EPERM) fo->accepted++;
}

static void threadsafe_count(void *arg)
{
    struct foreign *fo = arg;
    if (++fo->threadsafe_ran == FOREIGN_CALLS) eddy_future_set_result(fo->future, 1);
}

static void *foreign_calls(void *arg)
{
    struct foreign *fo = arg;
    eddy_loop *loop = fo->loop;
    for (int i = 0; i < FOREIGN_CALLS; i++) {
        foreign_refused(fo, eddy_call_soon(loop, foreign_cb, fo));
        errno = 0;
        foreign_refused_ptr(fo, eddy_spawn(loop, foreign_task, fo));
        errno = 0;
        foreign_refused_ptr(fo, eddy_future_new(loop));
    }
    foreign_refused(fo, eddy_call_later(loop, 0, foreign_cb, fo, NULL));
    eddy_watch *watch = NULL;
    foreign_refused(fo, eddy_watch_start(&watch, loop, 0, EDDY_READABLE, foreign_watch_cb, fo));
    foreign_refused(fo, eddy_timer_cancel(fo->timer));
    foreign_refused(fo, eddy_future_set_result(fo->future, 1));
    foreign_refused(fo, eddy_future_set_error(fo->future, -EIO));
    foreign_refused(fo, eddy_future_on_done(fo->future, foreign_done_cb, fo));
    foreign_refused(fo, eddy_future_result(fo->future, NULL));
    foreign_refused(fo, eddy_future_cancel(fo->future) ? 0 : -EPERM);
    foreign_refused(fo, eddy_task_cancel(fo->task) ? 0 : -EPERM);
    foreign_refused(fo, eddy_task_join(fo->task, NULL));
    foreign_refused(fo, eddy_loop_run(loop));
    foreign_refused(fo, (int)eddy_now(loop));
    errno = 0;
    foreign_refused_ptr(fo, eddy_group_new(loop));
    errno = 0;
    foreign_refused_ptr(fo, eddy_group_spawn(fo->group, foreign_task, fo));
    /* The void calls do nothing: the loop thread checks what they left. */
    eddy_future_ref(fo->future);
    eddy_future_unref(fo->future);
    eddy_future_unref(fo->future);
    eddy_task_detach(fo->task);
    eddy_group_free(fo->group);
    eddy_loop_stop(loop);
    eddy_loop_free(loop); /* refused: the loop is running */
    /* Then the one call allowed here, many times: none may be lost. */
    for (int i = 0; i < FOREIGN_CALLS; i++)
        if (eddy_call_soon_threadsafe(loop, threadsafe_count, fo) != 0) fo->wrong_errno++;
    return NULL;
}

static intptr_t sleep_long(void *arg)
{
    (void)arg;
    return eddy_sleep(NS_PER_HOUR);
}

static intptr_t host_foreign_thread(void *arg)
{
    struct foreign *fo = arg;
    fo->future = eddy_future_new(NULL);
    fo->task = eddy_spawn(NULL, sleep_long, NULL);
    fo->group = eddy_group_new(NULL);
    cr_assert(fo->future && fo->task && fo->group);
    cr_assert(eq(int, eddy_call_later(fo->loop, NS_PER_HOUR, foreign_cb, fo, &fo->timer), 0));
    cr_assert(eq(int, pthread_create(&fo->thread, NULL, foreign_calls, fo), 0));
    intptr_t value = 0;
    int err = eddy_await(fo->future, &value); /* set by the last threadsafe call */
    cr_assert(eq(int, pthread_join(fo->thread, NULL), 0));
    cr_assert(eq(int, err, 0), "await: %s", eddy_strerror(err));
    cr_assert(eq(int, (int)value, 1));
    cr_assert(eq(int, fo->accepted, 0), "%d calls from another thread were accepted", fo->accepted);
    cr_assert(eq(int, fo->wrong_errno, 0));
    cr_assert(eq(int, fo->threadsafe_ran, FOREIGN_CALLS), "threadsafe calls lost");
    /* Nothing the foreign thread tried took effect, and the loop still works. */
    cr_assert(not(eddy_future_done(eddy_task_future(fo->task))), "the task was cancelled");
    cr_assert(eq(int, eddy_timer_cancel(fo->timer), 0), "the timer was cancelled or fired");
    cr_assert(eq(int, eddy_yield(), 0));
    cr_assert(eq(int, fo->ran, 0), "a foreign call ran something on the loop");
    cr_assert(ne(ptr, eddy_group_spawn(fo->group, foreign_task, fo), NULL), "group freed");
    cr_assert(eq(int, eddy_group_wait(fo->group), 0));
    eddy_group_free(fo->group);
    cr_assert(eq(int, fo->ran, 1));
    cr_assert(eddy_task_cancel(fo->task));
    cr_assert(eq(int, eddy_task_join(fo->task, NULL), -ECANCELED));
    eddy_future_unref(fo->future);
    return 0;
}

Test(threadsafe, foreign_thread_calls_are_refused, .timeout = TEST_TIMEOUT)
{
    struct foreign *fo = calloc(1, sizeof(*fo));
    cr_assert(ne(ptr, fo, NULL));
    fo->loop = new_loop();
    intptr_t result = -1;
    cr_assert(eq(int, run_task(fo->loop, host_foreign_thread, fo, &result), 0));
    cr_assert(eq(int, (int)result, 0));
    eddy_loop_free(fo->loop);
    free(fo);
}

/* A loop set up on one thread and run on another belongs, from then on, to
 * the thread that ran it; the first thread may free it once that is done. */
struct handed_over {
    eddy_loop *loop;
    int run_result;
    int ran;
};

static void handed_cb(void *arg)
{
    ((struct handed_over *)arg)->ran++;
}

static void *run_handed_loop(void *arg)
{
    struct handed_over *h = arg;
    if (eddy_call_soon(h->loop, handed_cb, h) != 0)
        h->run_result = -1000;
    else
        h->run_result = eddy_loop_run(h->loop);
    return NULL;
}

Test(threadsafe, loop_belongs_to_the_thread_that_runs_it, .timeout = TEST_TIMEOUT)
{
    struct handed_over h = {.loop = new_loop()};
    cr_assert(eq(int, eddy_call_soon(h.loop, handed_cb, &h), 0), "setting up before the run");
    pthread_t thread;
    cr_assert(eq(int, pthread_create(&thread, NULL, run_handed_loop, &h), 0));
    cr_assert(eq(int, pthread_join(thread, NULL), 0));
    cr_assert(eq(int, h.run_result, 0), "%s", eddy_strerror(h.run_result));
    cr_assert(eq(int, h.ran, 2));
    cr_assert(eq(int, eddy_call_soon(h.loop, handed_cb, &h), -EPERM));
    cr_assert(eq(int, eddy_loop_run(h.loop), -EPERM));
    cr_assert(eq(i64, eddy_now(h.loop), -EPERM));
    eddy_loop_free(h.loop); /* the other thread is done with it: freeing takes it over */
}

/* A post from a task of another loop wakes a loop embedded in poll(): on
 * io_uring that post is a MSG_RING, whose CQE must make eddy_loop_fd
 * readable as the eventfd's does. */
#ifndef _WIN32
static intptr_t post_from_task(void *arg)
{
    struct handed_over *p = arg;
    (void)eddy_sleep(30 * NS_PER_MS);
    return eddy_call_soon_threadsafe(p->loop, handed_cb, p);
}

static void *post_from_loop(void *arg)
{
    struct handed_over *p = arg;
    intptr_t result = -1;
    int err = eddy_run(post_from_task, p, &result);
    p->run_result = err < 0 ? err : (int)result;
    return NULL;
}

Test(threadsafe, a_post_from_another_loop_wakes_an_embedded_loop, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_loop();
#ifdef __linux__
    if (strcmp(eddy_loop_backend(loop), "kqueue") == 0) {
        eddy_loop_free(loop);
        cr_skip_test("libkqueue's descriptor does not wake for a post from another thread "
                     "(embed::threadsafe_post_wakes_the_descriptor fails the same way)");
    }
#endif
    intptr_t fd = eddy_loop_fd(loop);
    cr_assert(ge(i64, (int64_t)fd, 0));
    cr_expect(eq(int, eddy_loop_run_once(loop, 0), 0)); /* this thread's loop now */
    struct handed_over post = {.loop = loop};
    pthread_t th;
    cr_assert(eq(int, pthread_create(&th, NULL, post_from_loop, &post), 0));
    struct pollfd pfd = {.fd = (int)fd, .events = POLLIN};
    cr_expect(eq(int, poll(&pfd, 1, 10000), 1), "the post did not wake the descriptor");
    pthread_join(th, NULL);
    cr_expect(eq(int, post.run_result, 0), "%s", eddy_strerror(post.run_result));
    for (int i = 0; i < 3 && post.ran == 0; i++)
        cr_expect(ge(int, eddy_loop_run_once(loop, 0), 0));
    cr_expect(eq(int, post.ran, 1));
    eddy_loop_free(loop);
}
#endif

/* A socket belongs to the loop it was opened on: a task of another thread's
 * loop is refused (it used to queue its call on the socket from both). */
struct foreign_socket {
    eddy_sock *sock; /* opened on the first loop */
    ssize_t recv_result, send_result;
    int run_result;
};

static intptr_t use_foreign_socket(void *arg)
{
    struct foreign_socket *fs = arg;
    char byte = 'x';
    struct sockaddr_storage to;
    cr_assert(eq(int, eddy_addr_parse(&to, "127.0.0.1", (uint16_t)eddy_sock_port(fs->sock)), 0));
    fs->recv_result = eddy_recvfrom(fs->sock, &byte, 1, NULL);
    fs->send_result = eddy_sendto(fs->sock, &byte, 1, (const struct sockaddr *)&to);
    return 0;
}

static void *run_other_loop(void *arg)
{
    struct foreign_socket *fs = arg;
    fs->run_result = eddy_run(use_foreign_socket, fs, NULL);
    return NULL;
}

static intptr_t lend_socket(void *arg)
{
    struct foreign_socket *fs = arg;
    int err = eddy_udp_bind(&fs->sock, "127.0.0.1", 0);
    if (err < 0) return err;
    pthread_t thread;
    cr_assert(eq(int, pthread_create(&thread, NULL, run_other_loop, fs), 0));
    cr_assert(eq(int, pthread_join(thread, NULL), 0));
    cr_assert(eq(int, eddy_sock_close(fs->sock), 0));
    return 0;
}

Test(threadsafe, another_loop_cannot_use_a_socket, .timeout = TEST_TIMEOUT)
{
    struct foreign_socket fs = {.recv_result = 1, .send_result = 1, .run_result = 1};
    eddy_loop *loop = new_loop();
    intptr_t v = -1;
    cr_assert(eq(int, run_task(loop, lend_socket, &fs, &v), 0));
    eddy_loop_free(loop);
    cr_assert(eq(iptr, v, 0), "%s", eddy_strerror((int)v));
    cr_assert(eq(int, fs.run_result, 0));
    cr_assert(eq(i64, (int64_t)fs.recv_result, -EPERM));
    cr_assert(eq(i64, (int64_t)fs.send_result, -EPERM));
}
