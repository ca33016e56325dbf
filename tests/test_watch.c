/* SPDX-License-Identifier: MIT */
/* Descriptors eddy does not own: eddy_wait_readable/_writable and
 * eddy_watch_*, on plain pipes and sockets made here with the system's calls,
 * as a library such as libcurl would hand them over. On Windows, where only
 * sockets have readiness, the "pipe" is a loopback TCP pair made with plain
 * Winsock calls, and a real pipe gives -ENOTSUP. */
#include "helpers.h"

#ifndef _WIN32
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

typedef int raw_fd;
#define raw_read(fd, buf, n)  read(fd, buf, n)
#define raw_write(fd, buf, n) write(fd, buf, n)
#define raw_close(fd)         close(fd)

/* A non-blocking pipe made without eddy: [0] reads, [1] writes. */
static void raw_pipe(raw_fd fds[2])
{
    cr_assert(eq(int, pipe(fds), 0));
    for (int i = 0; i < 2; i++)
        cr_assert(eq(int, fcntl(fds[i], F_SETFL, fcntl(fds[i], F_GETFL) | O_NONBLOCK), 0));
}

static void raw_socketpair(raw_fd fds[2])
{
    cr_assert(eq(int, socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds), 0));
}
#else
typedef SOCKET raw_fd;
#define raw_read(fd, buf, n)  recv(fd, (char *)(buf), (int)(n), 0)
#define raw_write(fd, buf, n) send(fd, (const char *)(buf), (int)(n), 0)
#define raw_close(fd)         closesocket(fd)

/* A non-blocking loopback TCP pair made with plain Winsock calls: [0] is
 * read, [1] written (both ways work). */
static void raw_pipe(raw_fd fds[2])
{
    WSADATA data;
    cr_assert(eq(int, WSAStartup(MAKEWORD(2, 2), &data), 0));
    SOCKET listener = socket(AF_INET, SOCK_STREAM, IPPROTO_TCP);
    cr_assert(ne(u64, (uint64_t)listener, (uint64_t)INVALID_SOCKET));
    struct sockaddr_in addr = {.sin_family = AF_INET};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int len = sizeof addr;
    cr_assert(eq(int, bind(listener, (struct sockaddr *)&addr, sizeof addr), 0));
    cr_assert(eq(int, listen(listener, 1), 0));
    cr_assert(eq(int, getsockname(listener, (struct sockaddr *)&addr, &len), 0));
    fds[1] = socket(AF_INET, SOCK_STREAM, IPPROTO_TCP);
    cr_assert(eq(int, connect(fds[1], (struct sockaddr *)&addr, sizeof addr), 0));
    fds[0] = accept(listener, NULL, NULL);
    cr_assert(ne(u64, (uint64_t)fds[0], (uint64_t)INVALID_SOCKET));
    closesocket(listener);
    for (int i = 0; i < 2; i++) {
        u_long on = 1;
        cr_assert(eq(int, ioctlsocket(fds[i], FIONBIO, &on), 0));
    }
}

static void raw_socketpair(raw_fd fds[2])
{
    raw_pipe(fds);
}
#endif

static void write_byte(void *arg)
{
    raw_fd fd = (raw_fd)(intptr_t)arg;
    cr_assert(eq(int, (int)raw_write(fd, "x", 1), 1));
}

/* ---- eddy_wait_readable / _writable ------------------------------------------ */

struct waited {
    raw_fd fds[2];
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
    if (w->err == 0) cr_assert(eq(int, (int)raw_read(w->fds[0], &w->got, 1), 1));
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
    raw_close(w.fds[0]);
    raw_close(w.fds[1]);
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
    raw_close(w.fds[0]);
    raw_close(w.fds[1]);
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
    raw_close(w.fds[0]);
    raw_close(w.fds[1]);
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
    raw_close(w.fds[0]);
    raw_close(w.fds[1]);
    eddy_loop_free(loop);
}

static intptr_t wait_writable_task(void *arg)
{
    raw_fd *fds = arg;
    /* A fresh pipe has room; a full one has not, until the reader drains it. */
    cr_assert(eq(int, eddy_wait_writable(fds[1], 0), 0));
    char block[4096];
    memset(block, 'y', sizeof block);
    while (raw_write(fds[1], block, sizeof block) > 0) {
    }
    cr_assert(eq(int, eddy_wait_writable(fds[1], 20 * NS_PER_MS), -ETIMEDOUT));
    while (raw_read(fds[0], block, sizeof block) > 0) {
    }
    cr_assert(eq(int, eddy_wait_writable(fds[1], NS_PER_SEC), 0));
    return 0;
}

Test(watch, wait_writable_follows_the_pipes_room, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_loop();
    raw_fd fds[2];
    raw_pipe(fds);
    intptr_t v;
    cr_assert(eq(int, run_task(loop, wait_writable_task, fds, &v), 0));
    raw_close(fds[0]);
    raw_close(fds[1]);
    eddy_loop_free(loop);
}

/* A hang-up is readiness: the owner's read then sees the end. */
static intptr_t wait_hangup_task(void *arg)
{
    raw_fd *fds = arg;
    raw_close(fds[1]);
    cr_assert(eq(int, eddy_wait_readable(fds[0], NS_PER_SEC), 0));
    char c;
    cr_assert(eq(int, (int)raw_read(fds[0], &c, 1), 0));
    return 0;
}

Test(watch, hang_up_counts_as_ready, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_loop();
    raw_fd fds[2];
    raw_pipe(fds);
    intptr_t v;
    cr_assert(eq(int, run_task(loop, wait_hangup_task, fds, &v), 0));
    raw_close(fds[0]);
    eddy_loop_free(loop);
}

static intptr_t bad_fds_task(void *arg)
{
    raw_fd fds[2];
    raw_pipe(fds);
    raw_close(fds[0]);
    raw_close(fds[1]);
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
    raw_fd fds[2];
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
        while ((n = raw_read(r->fds[0], buf, sizeof buf)) > 0)
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
    raw_close(r.fds[0]);
    raw_close(r.fds[1]);
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
    raw_close(r.fds[0]);
    raw_close(r.fds[1]);
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
    int calls;
};

/* Counts, and stops the watch at its first report: the loop then ends. */
static void count_and_stop(eddy_watch *w, unsigned revents, void *arg)
{
    struct paused *p = arg;
    p->calls++;
    cr_assert(eq(int, eddy_watch_stop(w), 0));
}

static void resume(void *arg)
{
    struct paused *p = arg;
    p->calls_while_paused = p->calls;
    cr_assert(eq(int, eddy_watch_update(p->w, EDDY_READABLE), 0));
}

/* Paused before its first report, a watch on a readable fd reports nothing
 * until it resumes, then reports (and the callback stops it: no second
 * timer racing the report on a loaded machine). */
Test(watch, update_pauses_and_resumes, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_loop();
    raw_fd fds[2];
    raw_pipe(fds);
    write_byte((void *)(intptr_t)fds[1]);
    struct paused p = {0};
    cr_assert(eq(int, eddy_watch_start(&p.w, loop, fds[0], EDDY_READABLE, count_and_stop, &p), 0));
    cr_assert(eq(int, eddy_watch_update(p.w, 0), 0)); /* before any report */
    cr_assert(eq(int, eddy_call_later(loop, 30 * NS_PER_MS, resume, &p, NULL), 0));
    cr_assert(eq(int, eddy_loop_run(loop), 0)); /* ends once the resumed watch reported */
    cr_assert(eq(int, p.calls_while_paused, 0));
    cr_assert(eq(int, p.calls, 1));
    raw_close(fds[0]);
    raw_close(fds[1]);
    eddy_loop_free(loop);
}

Test(watch, both_directions_on_a_socket, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_loop();
    raw_fd sv[2];
    raw_socketpair(sv);
    struct reader r = {.want = 1, .drain = false};
    r.fds[0] = sv[0];
    cr_assert(eq(
        int, eddy_watch_start(&r.w, loop, sv[0], EDDY_READABLE | EDDY_WRITABLE, reader_cb, &r), 0));
    cr_assert(eq(int, eddy_loop_run(loop), 0));
    cr_assert(eq(u32, r.revents & EDDY_WRITABLE, EDDY_WRITABLE), "an empty socket is writable");
    raw_close(sv[0]);
    raw_close(sv[1]);
    eddy_loop_free(loop);
}

Test(watch, bad_input, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_loop();
    raw_fd fds[2];
    int calls = 0;
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
    raw_close(fds[0]);
    raw_close(fds[1]);
    eddy_loop_free(loop);
}

/* A loop freed with a watch still started stops and frees it (LeakSanitizer
 * and Valgrind would see it otherwise). */
Test(watch, loop_free_stops_the_watches_left, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_loop();
    raw_fd fds[2];
    int calls = 0;
    raw_pipe(fds);
    eddy_watch *w;
    cr_assert(eq(int, eddy_watch_start(&w, loop, fds[0], EDDY_READABLE, count_cb, &calls), 0));
    write_byte((void *)(intptr_t)fds[1]); /* a report queued, never delivered */
    eddy_loop_free(loop);
    cr_assert(eq(int, calls, 0));
    raw_close(fds[0]);
    raw_close(fds[1]);
}

/* eddy_run ends when main returns, with a watch still started: the loop's
 * shutdown stops it (it used to wait for its op for ever). */
static intptr_t main_leaves_a_watch(void *arg)
{
    raw_fd *fds = arg;
    int calls = 0;
    eddy_watch *w;
    cr_assert(eq(int, eddy_watch_start(&w, NULL, fds[0], EDDY_READABLE, count_cb, &calls), 0));
    return 0;
}

Test(watch, run_ends_with_a_watch_started, .timeout = TEST_TIMEOUT)
{
    raw_fd fds[2];
    raw_pipe(fds);
    intptr_t v = 1;
    cr_assert(eq(int, eddy_run(main_leaves_a_watch, fds, &v), 0));
    cr_assert(eq(iptr, v, 0));
    raw_close(fds[0]);
    raw_close(fds[1]);
}

static void stop_loop(void *arg)
{
    eddy_loop_stop(arg);
}

/* A task whose cleanup stops its own watch, cancelled by eddy_loop_free:
 * the watch is still its to stop (the loop stops the rest only after). */
static intptr_t watch_then_sleep(void *arg)
{
    raw_fd *fds = arg;
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
    raw_fd fds[2];
    raw_pipe(fds);
    eddy_task *t = eddy_spawn(loop, watch_then_sleep, fds);
    cr_assert(ne(ptr, t, NULL));
    eddy_task_detach(t);
    cr_assert(eq(int, eddy_call_later(loop, 10 * NS_PER_MS, stop_loop, loop, NULL), 0));
    cr_assert(eq(int, eddy_loop_run(loop), 0)); /* the task is asleep, its watch started */
    eddy_loop_free(loop);
    raw_close(fds[0]);
    raw_close(fds[1]);
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

#ifdef _WIN32

/* ---- Windows: sockets only ---------------------------------------------------- */

static void count_only(eddy_watch *w, unsigned revents, void *arg)
{
    (void)w;
    (void)revents;
    (*(int *)arg)++;
}

static intptr_t wait_on_handle(void *arg)
{
    return eddy_wait_readable((intptr_t)arg, NS_PER_SEC);
}

/* A pipe has no readiness on Windows: the calls say so at once. */
Test(watch, a_pipe_is_enotsup_on_windows, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_loop();
    cr_assert(eq(int, eddy_loop_supports(loop, EDDY_CAP_WATCH_FD), EDDY_NATIVE));
    HANDLE ends[2];
    cr_assert(CreatePipe(&ends[0], &ends[1], NULL, 0));
    int calls = 0;
    eddy_watch *w = NULL;
    cr_assert(eq(int,
                 eddy_watch_start(&w, loop, (intptr_t)ends[0], EDDY_READABLE, count_only, &calls),
                 -ENOTSUP));
    cr_assert(eq(ptr, w, NULL));
    intptr_t v;
    cr_assert(eq(int, run_task(loop, wait_on_handle, ends[0], &v), -ENOTSUP));
    CloseHandle(ends[0]);
    CloseHandle(ends[1]);
    eddy_loop_free(loop);
}

static void close_socket_cb(void *arg)
{
    cr_assert(eq(int, closesocket((SOCKET)(intptr_t)arg), 0));
}

/* The socket closed (by its owner, from a callback) while a task waits on
 * it: the wait ends with -EBADF, and the loop goes on. */
Test(watch, socket_closed_while_waited_on, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_loop();
    raw_fd fds[2];
    raw_pipe(fds);
    cr_assert(eq(
        int, eddy_call_later(loop, 20 * NS_PER_MS, close_socket_cb, (void *)(intptr_t)fds[0], NULL),
        0));
    intptr_t v = 1;
    int64_t start = wall_ns();
    cr_assert(eq(int, run_task(loop, wait_on_handle, (void *)(intptr_t)fds[0], &v), -EBADF));
    cr_assert(lt(i64, wall_ns() - start, NS_PER_SEC / 2), "it waited for the timeout");
    raw_close(fds[1]);
    eddy_loop_free(loop);
}

#endif
