/* SPDX-License-Identifier: MIT */
/* Descriptors eddy does not own: eddy_wait_readable/_writable and
 * eddy_watch_*, on plain pipes and sockets made here with the system's calls,
 * as a library such as libcurl would hand them over. On Windows the IOCP
 * backend has no readiness to offer: the calls say -ENOTSUP. */
#include "helpers.h"

#ifndef _WIN32
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

/* A non-blocking pipe made without eddy: [0] reads, [1] writes. */
static void raw_pipe(int fds[2])
{
    cr_assert(eq(int, pipe(fds), 0));
    for (int i = 0; i < 2; i++)
        cr_assert(eq(int, fcntl(fds[i], F_SETFL, fcntl(fds[i], F_GETFL) | O_NONBLOCK), 0));
}

static void write_byte(void *arg)
{
    int fd = (int)(intptr_t)arg;
    cr_assert(eq(int, (int)write(fd, "x", 1), 1));
}

/* ---- eddy_wait_readable / _writable ------------------------------------------ */

struct waited {
    int fds[2];
    int err;
    int64_t took;
    char got;
};

static intptr_t wait_then_read(void *arg)
{
    struct waited *w = arg;
    int64_t start = wall_ns();
    w->err = eddy_wait_readable(w->fds[0], -1);
    w->took = wall_ns() - start;
    if (w->err == 0) cr_assert(eq(int, (int)read(w->fds[0], &w->got, 1), 1));
    return 0;
}

Test(watch, wait_readable_returns_when_data_arrives, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_loop();
    struct waited w = {.err = 1};
    raw_pipe(w.fds);
    cr_assert(
        eq(int, eddy_call_later(loop, 20 * NS_PER_MS, write_byte, (void *)(intptr_t)w.fds[1], NULL),
           0));
    intptr_t v;
    cr_assert(eq(int, run_task(loop, wait_then_read, &w, &v), 0));
    cr_assert(eq(int, w.err, 0));
    cr_assert(eq(chr, w.got, 'x'));
    cr_assert(ge(i64, w.took, 15 * NS_PER_MS));
    close(w.fds[0]);
    close(w.fds[1]);
    eddy_loop_free(loop);
}

/* Data already there when the wait begins: no edge will come, yet it is ready. */
Test(watch, wait_readable_sees_data_already_there, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_loop();
    struct waited w = {.err = 1};
    raw_pipe(w.fds);
    write_byte((void *)(intptr_t)w.fds[1]);
    intptr_t v;
    cr_assert(eq(int, run_task(loop, wait_then_read, &w, &v), 0));
    cr_assert(eq(int, w.err, 0));
    /* Again, with the byte read by someone else in between: it waits anew. */
    write_byte((void *)(intptr_t)w.fds[1]);
    cr_assert(eq(int, run_task(loop, wait_then_read, &w, &v), 0));
    cr_assert(eq(int, w.err, 0));
    close(w.fds[0]);
    close(w.fds[1]);
    eddy_loop_free(loop);
}

static intptr_t wait_with_limit(void *arg)
{
    struct waited *w = arg;
    int64_t start = wall_ns();
    w->err = eddy_wait_readable(w->fds[0], 50 * NS_PER_MS);
    w->took = wall_ns() - start;
    return 0;
}

Test(watch, wait_readable_times_out, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_loop();
    struct waited w = {.err = 1};
    raw_pipe(w.fds);
    intptr_t v;
    cr_assert(eq(int, run_task(loop, wait_with_limit, &w, &v), 0));
    cr_assert(eq(int, w.err, -ETIMEDOUT));
    cr_assert(ge(i64, w.took, 45 * NS_PER_MS));
    cr_assert(lt(i64, w.took, 2 * NS_PER_SEC));
    /* The pipe still works, and nothing is left watching it. */
    write_byte((void *)(intptr_t)w.fds[1]);
    cr_assert(eq(int, run_task(loop, wait_then_read, &w, &v), 0));
    cr_assert(eq(chr, w.got, 'x'));
    close(w.fds[0]);
    close(w.fds[1]);
    eddy_loop_free(loop);
}

Test(watch, wait_readable_is_cancellable, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_loop();
    struct waited w = {.err = 1};
    raw_pipe(w.fds);
    eddy_task *t = eddy_spawn(loop, wait_then_read, &w);
    cancel_task_later(loop, t, 20 * NS_PER_MS);
    cr_assert(eq(int, eddy_loop_run(loop), 0));
    cr_assert(eq(int, w.err, -ECANCELED));
    cr_assert(eq(int, eddy_task_join(t, NULL), 0));
    close(w.fds[0]);
    close(w.fds[1]);
    eddy_loop_free(loop);
}

static intptr_t wait_writable_task(void *arg)
{
    int *fds = arg;
    /* A fresh pipe has room; a full one has not, until the reader drains it. */
    cr_assert(eq(int, eddy_wait_writable(fds[1], 0), 0));
    char block[4096];
    memset(block, 'y', sizeof block);
    while (write(fds[1], block, sizeof block) > 0) {
    }
    cr_assert(eq(int, eddy_wait_writable(fds[1], 20 * NS_PER_MS), -ETIMEDOUT));
    while (read(fds[0], block, sizeof block) > 0) {
    }
    cr_assert(eq(int, eddy_wait_writable(fds[1], NS_PER_SEC), 0));
    return 0;
}

Test(watch, wait_writable_follows_the_pipes_room, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_loop();
    int fds[2];
    raw_pipe(fds);
    intptr_t v;
    cr_assert(eq(int, run_task(loop, wait_writable_task, fds, &v), 0));
    close(fds[0]);
    close(fds[1]);
    eddy_loop_free(loop);
}

/* A hang-up is readiness: the owner's read then sees the end. */
static intptr_t wait_hangup_task(void *arg)
{
    int *fds = arg;
    close(fds[1]);
    cr_assert(eq(int, eddy_wait_readable(fds[0], NS_PER_SEC), 0));
    char c;
    cr_assert(eq(int, (int)read(fds[0], &c, 1), 0));
    return 0;
}

Test(watch, hang_up_counts_as_ready, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_loop();
    int fds[2];
    raw_pipe(fds);
    intptr_t v;
    cr_assert(eq(int, run_task(loop, wait_hangup_task, fds, &v), 0));
    close(fds[0]);
    eddy_loop_free(loop);
}

static intptr_t bad_fds_task(void *arg)
{
    int fds[2];
    raw_pipe(fds);
    close(fds[0]);
    close(fds[1]);
    cr_assert(eq(int, eddy_wait_readable(-1, 0), -EBADF));
    cr_assert(eq(int, eddy_wait_readable(fds[0], NS_PER_SEC), -EBADF), "a closed descriptor");
    cr_assert(eq(int, eddy_wait_writable(fds[1], NS_PER_SEC), -EBADF));
    return 0;
}

Test(watch, bad_descriptors, .timeout = TEST_TIMEOUT)
{
    cr_assert(eq(int, eddy_wait_readable(0, 0), -EPERM), "outside a task");
    intptr_t v;
    eddy_loop *loop = new_loop();
    cr_assert(eq(int, run_task(loop, bad_fds_task, NULL, &v), 0));
    eddy_loop_free(loop);
}

/* ---- eddy_watch_* ----------------------------------------------------------- */

struct reader {
    int fds[2];
    int calls;
    int bytes;
    int want;   /* stop after this many bytes */
    bool drain; /* read what is there at each call (else leave it) */
    unsigned revents;
    eddy_watch *w;
};

static void reader_cb(eddy_watch *w, unsigned revents, void *arg)
{
    struct reader *r = arg;
    cr_assert(eq(ptr, w, r->w));
    r->calls++;
    r->revents |= revents;
    char buf[64];
    ssize_t n;
    if (r->drain)
        while ((n = read(r->fds[0], buf, sizeof buf)) > 0)
            r->bytes += (int)n;
    if (r->bytes >= r->want || (!r->drain && r->calls >= r->want)) {
        cr_assert(eq(int, eddy_watch_stop(w), 0));
        r->w = NULL;
    }
}

Test(watch, callback_each_time_data_comes, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_loop();
    struct reader r = {.want = 3, .drain = true};
    raw_pipe(r.fds);
    cr_assert(eq(int, eddy_watch_start(&r.w, loop, r.fds[0], EDDY_READABLE, reader_cb, &r), 0));
    for (int i = 1; i <= 3; i++)
        cr_assert(eq(
            int,
            eddy_call_later(loop, i * 10 * NS_PER_MS, write_byte, (void *)(intptr_t)r.fds[1], NULL),
            0));
    cr_assert(eq(int, eddy_loop_run(loop), 0), "the loop ends once the watch stopped");
    cr_assert(eq(int, r.bytes, 3));
    /* One call per write, unless a busy machine let two writes land in one
     * iteration. */
    cr_assert(ge(int, r.calls, 1));
    cr_assert(le(int, r.calls, 3));
    cr_assert(eq(u32, r.revents, EDDY_READABLE));
    close(r.fds[0]);
    close(r.fds[1]);
    eddy_loop_free(loop);
}

/* Level-triggered: data left unread is reported again, an iteration later. */
Test(watch, unread_data_is_reported_again, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_loop();
    struct reader r = {.want = 4, .drain = false};
    raw_pipe(r.fds);
    write_byte((void *)(intptr_t)r.fds[1]);
    cr_assert(eq(int, eddy_watch_start(&r.w, loop, r.fds[0], EDDY_READABLE, reader_cb, &r), 0));
    cr_assert(eq(int, eddy_loop_run(loop), 0));
    cr_assert(eq(int, r.calls, 4));
    close(r.fds[0]);
    close(r.fds[1]);
    eddy_loop_free(loop);
}

static void count_cb(eddy_watch *w, unsigned revents, void *arg)
{
    int *calls = arg;
    (*calls)++;
}

struct paused {
    eddy_watch *w;
    int calls_while_paused;
    int *calls;
};

static void resume(void *arg)
{
    struct paused *p = arg;
    p->calls_while_paused = *p->calls;
    cr_assert(eq(int, eddy_watch_update(p->w, EDDY_READABLE), 0));
}

static void stop_later(void *arg)
{
    cr_assert(eq(int, eddy_watch_stop(arg), 0));
}

Test(watch, update_pauses_and_resumes, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_loop();
    int fds[2], calls = 0;
    raw_pipe(fds);
    write_byte((void *)(intptr_t)fds[1]);
    struct paused p = {.calls = &calls};
    cr_assert(eq(int, eddy_watch_start(&p.w, loop, fds[0], EDDY_READABLE, count_cb, &calls), 0));
    cr_assert(eq(int, eddy_watch_update(p.w, 0), 0)); /* before any report */
    cr_assert(eq(int, eddy_call_later(loop, 30 * NS_PER_MS, resume, &p, NULL), 0));
    cr_assert(eq(int, eddy_call_later(loop, 60 * NS_PER_MS, stop_later, p.w, NULL), 0));
    cr_assert(eq(int, eddy_loop_run(loop), 0));
    cr_assert(eq(int, p.calls_while_paused, 0));
    cr_assert(gt(int, calls, 0), "no report after the watch resumed");
    close(fds[0]);
    close(fds[1]);
    eddy_loop_free(loop);
}

Test(watch, both_directions_on_a_socket, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_loop();
    int sv[2];
    cr_assert(eq(int, socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0));
    struct reader r = {.want = 1, .drain = false};
    r.fds[0] = sv[0];
    cr_assert(eq(
        int, eddy_watch_start(&r.w, loop, sv[0], EDDY_READABLE | EDDY_WRITABLE, reader_cb, &r), 0));
    cr_assert(eq(int, eddy_loop_run(loop), 0));
    cr_assert(eq(u32, r.revents & EDDY_WRITABLE, EDDY_WRITABLE), "an empty socket is writable");
    close(sv[0]);
    close(sv[1]);
    eddy_loop_free(loop);
}

Test(watch, bad_input, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_loop();
    int fds[2], calls = 0;
    raw_pipe(fds);
    eddy_watch *w = NULL, *again = NULL;
    cr_assert(
        eq(int, eddy_watch_start(NULL, loop, fds[0], EDDY_READABLE, count_cb, &calls), -EINVAL));
    cr_assert(eq(int, eddy_watch_start(&w, loop, fds[0], 4, count_cb, &calls), -EINVAL));
    cr_assert(eq(int, eddy_watch_start(&w, loop, fds[0], EDDY_READABLE, NULL, &calls), -EINVAL));
    cr_assert(eq(int, eddy_watch_start(&w, NULL, fds[0], EDDY_READABLE, count_cb, &calls), -EINVAL),
              "no loop on this thread");
    cr_assert(eq(int, eddy_watch_start(&w, loop, -1, EDDY_READABLE, count_cb, &calls), -EBADF));
    cr_assert(eq(ptr, w, NULL));
    cr_assert(eq(int, eddy_watch_start(&w, loop, fds[0], EDDY_READABLE, count_cb, &calls), 0));
    cr_assert(
        eq(int, eddy_watch_start(&again, loop, fds[0], EDDY_WRITABLE, count_cb, &calls), -EEXIST));
    cr_assert(eq(int, eddy_watch_update(w, 8), -EINVAL));
    cr_assert(eq(int, eddy_watch_update(NULL, EDDY_READABLE), -EINVAL));
    cr_assert(eq(int, eddy_watch_stop(NULL), -EINVAL));
    cr_assert(eq(int, eddy_watch_stop(w), 0));
    /* Stopped: the descriptor may be watched again. */
    cr_assert(eq(int, eddy_watch_start(&again, loop, fds[0], EDDY_READABLE, count_cb, &calls), 0));
    cr_assert(eq(int, eddy_watch_stop(again), 0));
    cr_assert(eq(int, eddy_loop_run(loop), 0));
    cr_assert(eq(int, calls, 0));
    close(fds[0]);
    close(fds[1]);
    eddy_loop_free(loop);
}

/* A loop freed with a watch still started stops and frees it (LeakSanitizer
 * and Valgrind would see it otherwise). */
Test(watch, loop_free_stops_the_watches_left, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_loop();
    int fds[2], calls = 0;
    raw_pipe(fds);
    eddy_watch *w;
    cr_assert(eq(int, eddy_watch_start(&w, loop, fds[0], EDDY_READABLE, count_cb, &calls), 0));
    write_byte((void *)(intptr_t)fds[1]); /* a report queued, never delivered */
    eddy_loop_free(loop);
    cr_assert(eq(int, calls, 0));
    close(fds[0]);
    close(fds[1]);
}

/* eddy_run ends when main returns, with a watch still started: the loop's
 * shutdown stops it (it used to wait for its op for ever). */
static intptr_t main_leaves_a_watch(void *arg)
{
    int *fds = arg;
    int calls = 0;
    eddy_watch *w;
    cr_assert(eq(int, eddy_watch_start(&w, NULL, fds[0], EDDY_READABLE, count_cb, &calls), 0));
    return 0;
}

Test(watch, run_ends_with_a_watch_started, .timeout = TEST_TIMEOUT)
{
    int fds[2];
    raw_pipe(fds);
    intptr_t v = 1;
    cr_assert(eq(int, eddy_run(main_leaves_a_watch, fds, &v), 0));
    cr_assert(eq(iptr, v, 0));
    close(fds[0]);
    close(fds[1]);
}

static void stop_loop(void *arg)
{
    eddy_loop_stop(arg);
}

/* A task whose cleanup stops its own watch, cancelled by eddy_loop_free:
 * the watch is still its to stop (the loop stops the rest only after). */
static intptr_t watch_then_sleep(void *arg)
{
    int *fds = arg;
    int calls = 0;
    eddy_watch *w;
    cr_assert(eq(int, eddy_watch_start(&w, NULL, fds[0], EDDY_READABLE, count_cb, &calls), 0));
    int err = eddy_sleep(NS_PER_HOUR);
    cr_assert(eq(int, eddy_watch_stop(w), 0));
    return err;
}

Test(watch, cleanup_stops_its_watch_during_loop_free, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_loop();
    int fds[2];
    raw_pipe(fds);
    eddy_task *t = eddy_spawn(loop, watch_then_sleep, fds);
    cr_assert(ne(ptr, t, NULL));
    eddy_task_detach(t);
    cr_assert(eq(int, eddy_call_later(loop, 10 * NS_PER_MS, stop_loop, loop, NULL), 0));
    cr_assert(eq(int, eddy_loop_run(loop), 0)); /* the task is asleep, its watch started */
    eddy_loop_free(loop);
    close(fds[0]);
    close(fds[1]);
}

Test(watch, disabled_capability_is_enotsup, .timeout = TEST_TIMEOUT)
{
    setenv("EDDY_CAPS_DISABLE", "watch_fd", 1);
    eddy_loop *loop = new_loop();
    unsetenv("EDDY_CAPS_DISABLE");
    cr_assert(eq(int, eddy_loop_supports(loop, EDDY_CAP_WATCH_FD), EDDY_NONE));
    int calls = 0;
    eddy_watch *w;
    cr_assert(eq(int, eddy_watch_start(&w, loop, 0, EDDY_READABLE, count_cb, &calls), -ENOTSUP));
    eddy_loop_free(loop);
}

#else /* _WIN32 */

static void count_cb(eddy_watch *w, unsigned revents, void *arg)
{
    (void)w;
    (void)revents;
    (*(int *)arg)++;
}

static intptr_t wait_on_iocp(void *arg)
{
    return eddy_wait_readable((intptr_t)arg, 0);
}

/* A completion port has no readiness to watch: the calls say so. */
Test(watch, iocp_says_enotsup, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_loop();
    cr_assert(eq(int, eddy_loop_supports(loop, EDDY_CAP_WATCH_FD), EDDY_NONE));
    int calls = 0;
    eddy_watch *w;
    cr_assert(eq(int, eddy_watch_start(&w, loop, 1, EDDY_READABLE, count_cb, &calls), -ENOTSUP));
    intptr_t v;
    cr_assert(eq(int, run_task(loop, wait_on_iocp, (void *)(intptr_t)1, &v), -ENOTSUP));
    eddy_loop_free(loop);
}

#endif
