/* SPDX-License-Identifier: MIT */
/* The capability table and its API: the table is complete (every capability
 * named, every cell set, a note wherever a cell is not native, for every
 * backend); every capability a backend reports native or emulated here is
 * exercised on that backend; an op whose capability is EDDY_NONE returns
 * -ENOTSUP and the loop carries on; unknown names and bad values;
 * eddy_backends' order; a backend the kernel refuses is reported with its
 * reason, by the API and by eddy-caps.
 *
 * This suite chooses its backends itself, so tests/run-tap.sh runs it once. */
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#ifdef _WIN32
#define SIGBREAK_OR_USR2 SIGBREAK
#else
#define SIGBREAK_OR_USR2 SIGUSR2
#endif
#include <sys/stat.h>
#include <unistd.h>
#ifndef _WIN32
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#endif

#include "config.h"
#include "helpers.h"
#ifdef _WIN32
#include "child.h"
#endif
#include "caps_table.h"

#if EDDY_TEST_HAVE_SECCOMP
#include <seccomp.h>
#endif

#define MAX_BACKENDS 8

/* The backends compiled in that can run here, in preference order. */
static size_t backends_here(const char **names)
{
    const char *all[MAX_BACKENDS];
    size_t count = eddy_backends(all, MAX_BACKENDS), here = 0;
    for (size_t i = 0; i < count && i < MAX_BACKENDS; i++)
        if (eddy_backend_available(all[i]) == 0) names[here++] = all[i];
    return here;
}

static eddy_loop *loop_on(const char *backend)
{
    eddy_loop_options opts = {.backend = backend};
    eddy_loop *loop = NULL;
    int err = eddy_loop_new(&loop, &opts);
    cr_assert(eq(int, err, 0), "eddy_loop_new(%s): %s", backend, eddy_strerror(err));
    return loop;
}

static const struct eddy__caps_row *table_row(const char *name)
{
    for (size_t i = 0; i < EDDY__CAPS_ROW_COUNT; i++)
        if (strcmp(eddy__caps_rows[i].name, name) == 0) return &eddy__caps_rows[i];
    return NULL;
}

/* ---- the table ------------------------------------------------------------------ */

Test(caps_table, every_capability_is_named)
{
    static const char *const expected[EDDY_CAP_COUNT] = {
        "tcp",
        "udp",
        "unix_sockets",
        "file_io",
        "timers",
        "cancel",
        "wakeup",
        "watch_fd",
        "signals",
        "subprocess",
        "dns",
        "multishot_accept",
        "multishot_recv",
        "buffer_ring",
        "zerocopy_send",
        "sendfile",
        "tls",
        "msg_ring",
        "direct_descriptors",
        "registered_files",
        "recv_bundle",
        "buffer_ring_incremental",
        "registered_buffers",
    };
    for (unsigned cap = 0; cap < EDDY_CAP_COUNT; cap++) {
        const char *name = eddy_cap_name((eddy_cap)cap);
        cr_assert(ne(ptr, (void *)name, NULL), "capability %u has no name", cap);
        cr_assert(eq(str, (char *)name, (char *)expected[cap]));
        cr_assert(ne(ptr, (void *)eddy__caps_descriptions[cap], NULL), "%s: no description", name);
    }
    cr_assert(eq(ptr, (void *)eddy_cap_name(EDDY_CAP_COUNT), NULL));
    cr_assert(eq(ptr, (void *)eddy_cap_name((eddy_cap)-1), NULL));
    cr_assert(eq(ptr, (void *)eddy_cap_name((eddy_cap)1000), NULL));
}

Test(caps_table, every_cell_is_set_for_every_backend)
{
    static const char *const rows[] = {"io_uring", "epoll", "kqueue", "iocp"};
    cr_assert(eq(sz, EDDY__CAPS_ROW_COUNT, sizeof rows / sizeof rows[0]));
    for (size_t i = 0; i < EDDY__CAPS_ROW_COUNT; i++) {
        const struct eddy__caps_row *row = &eddy__caps_rows[i];
        cr_assert(eq(str, (char *)row->name, (char *)rows[i]), "rows in preference order");
        cr_assert(row->where && *row->where, "%s: where it runs", row->name);
        cr_assert(row->family && (strcmp(row->family, "completion") == 0 ||
                                  strcmp(row->family, "readiness") == 0),
                  "%s: family", row->name);
        for (unsigned cap = 0; cap < EDDY_CAP_COUNT; cap++) {
            const struct eddy__caps_cell *cell = &row->cells[cap];
            const char *name = eddy_cap_name((eddy_cap)cap);
            cr_assert(cell->support == EDDY_NONE || cell->support == EDDY_EMULATED ||
                          cell->support == EDDY_NATIVE,
                      "%s/%s: support %d", row->name, name, (int)cell->support);
            if (cell->support != EDDY_NATIVE)
                cr_assert(cell->note && *cell->note,
                          "%s/%s is not native and says nothing why (a cell forgotten?)", row->name,
                          name);
        }
    }
}

Test(caps_table, every_platform_lists_known_backends)
{
    bool listed[EDDY__CAPS_ROW_COUNT] = {false};
    for (size_t p = 0; p < EDDY__CAPS_PLATFORM_COUNT; p++) {
        const struct eddy__caps_platform *platform = &eddy__caps_platforms[p];
        cr_assert(ne(ptr, (void *)platform->backends[0], NULL), "%s: no backend", platform->name);
        for (size_t i = 0; platform->backends[i]; i++) {
            const struct eddy__caps_row *row = table_row(platform->backends[i]);
            cr_assert(ne(ptr, (void *)row, NULL), "%s: unknown backend %s", platform->name,
                      platform->backends[i]);
            listed[row - eddy__caps_rows] = true;
        }
    }
    for (size_t i = 0; i < EDDY__CAPS_ROW_COUNT; i++)
        cr_assert(listed[i], "%s is on no platform", eddy__caps_rows[i].name);
}

/* A program on any platform can ask about any backend: for the ones that
 * cannot run here, the answer is the table's. */
Test(caps_table, backends_not_here_answer_from_the_table)
{
    for (size_t i = 0; i < EDDY__CAPS_ROW_COUNT; i++) {
        const struct eddy__caps_row *row = &eddy__caps_rows[i];
        if (eddy_backend_available(row->name) == 0) continue;
        for (unsigned cap = 0; cap < EDDY_CAP_COUNT; cap++)
            cr_assert(eq(int, (int)eddy_backend_supports(row->name, (eddy_cap)cap),
                         (int)row->cells[cap].support),
                      "%s/%s", row->name, eddy_cap_name((eddy_cap)cap));
    }
#ifndef _WIN32
    cr_assert(eq(int, eddy_backend_available("iocp"), -ENOTSUP));
    cr_assert(eq(int, (int)eddy_backend_supports("iocp", EDDY_CAP_UNIX_SOCKETS), EDDY_NONE));
    cr_assert(eq(int, (int)eddy_backend_supports("iocp", EDDY_CAP_TCP), EDDY_NATIVE));
#endif
}

/* ---- the API ---------------------------------------------------------------------- */

Test(caps_api, bad_input)
{
    cr_assert(eq(int, eddy_backend_available(NULL), -EINVAL));
    cr_assert(eq(int, (int)eddy_backend_supports(NULL, EDDY_CAP_TCP), EDDY_NONE));
    cr_assert(eq(int, (int)eddy_loop_supports(NULL, EDDY_CAP_TCP), EDDY_NONE));
    const char *names[MAX_BACKENDS];
    size_t here = backends_here(names);
    cr_assert(ge(sz, here, 1), "no backend can run here");
    for (size_t i = 0; i < here; i++) {
        cr_assert(eq(int, (int)eddy_backend_supports(names[i], EDDY_CAP_COUNT), EDDY_NONE));
        cr_assert(eq(int, (int)eddy_backend_supports(names[i], (eddy_cap)-1), EDDY_NONE));
        eddy_loop *loop = loop_on(names[i]);
        cr_assert(eq(int, (int)eddy_loop_supports(loop, EDDY_CAP_COUNT), EDDY_NONE));
        cr_assert(eq(int, (int)eddy_loop_supports(loop, (eddy_cap)-1), EDDY_NONE));
        eddy_loop_free(loop);
    }
    cr_assert(eq(sz, eddy_backends(NULL, 5), eddy_backends(NULL, 0)), "names NULL only counts");
}

Test(caps_api, unknown_backend_names)
{
    static const char *const unknown[] = {"",       "nope", "IO_URING", "Epoll",
                                          "epoll ", "auto", "uring"};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        cr_assert(eq(int, eddy_backend_available(unknown[i]), -ENOENT), "\"%s\"", unknown[i]);
        for (unsigned cap = 0; cap < EDDY_CAP_COUNT; cap++)
            cr_assert(eq(int, (int)eddy_backend_supports(unknown[i], (eddy_cap)cap), EDDY_NONE));
    }
    /* Known but not compiled in: -ENOTSUP, as eddy_loop_new says. */
    for (size_t i = 0; i < EDDY__CAPS_ROW_COUNT; i++) {
        const char *name = eddy__caps_rows[i].name;
        const char *all[MAX_BACKENDS];
        size_t count = eddy_backends(all, MAX_BACKENDS);
        bool compiled = false;
        for (size_t j = 0; j < count; j++)
            compiled |= strcmp(all[j], name) == 0;
        if (compiled) continue;
        cr_assert(eq(int, eddy_backend_available(name), -ENOTSUP), "%s", name);
        eddy_loop_options opts = {.backend = name};
        eddy_loop *loop;
        cr_assert(eq(int, eddy_loop_new(&loop, &opts), -ENOTSUP), "%s", name);
    }
}

Test(caps_api, backends_in_preference_order)
{
    size_t count = eddy_backends(NULL, 0);
    cr_assert(ge(sz, count, 1));
    cr_assert(le(sz, count, MAX_BACKENDS));
    const char *names[MAX_BACKENDS + 1];
    for (size_t i = 0; i <= MAX_BACKENDS; i++)
        names[i] = "untouched";
    cr_assert(eq(sz, eddy_backends(names, 1), count), "the count, whatever max is");
    cr_assert(eq(str, (char *)names[1], "untouched"), "no more than max names");
    cr_assert(eq(sz, eddy_backends(names, MAX_BACKENDS), count));
    cr_assert(eq(str, (char *)names[count], "untouched"));
    /* Every name is a table row, in the table's order (which is preference order). */
    ptrdiff_t previous = -1;
    for (size_t i = 0; i < count; i++) {
        const struct eddy__caps_row *row = table_row(names[i]);
        cr_assert(ne(ptr, (void *)row, NULL), "%s is not in the table", names[i]);
        bool in_order = row - eddy__caps_rows > previous;
        cr_assert(in_order, "%s out of order", names[i]);
        previous = row - eddy__caps_rows;
        cr_assert(row->status == NULL, "%s is compiled in but the table says \"%s\"", names[i],
                  row->status);
    }
#if EDDY_HAVE_URING
    cr_assert(eq(str, (char *)names[0], "io_uring"));
#endif
#if EDDY_HAVE_EPOLL
    /* kqueue through libkqueue comes after it, but a default loop never tries it. */
    size_t last_tried = count - 1;
#if EDDY_KQUEUE_LIBKQUEUE
    cr_assert(eq(str, (char *)names[count - 1], "kqueue"));
    last_tried--;
#endif
    cr_assert(eq(str, (char *)names[last_tried], "epoll"), "epoll is the Linux fallback");
#endif
    /* A default loop runs on the first of them that can run here. */
    unsetenv("EDDY_BACKEND");
    const char *expected = NULL;
    for (size_t i = 0; i < count && !expected; i++)
        if (eddy_backend_available(names[i]) == 0) expected = names[i];
    eddy_loop *loop = new_loop();
    cr_assert(eq(str, (char *)eddy_loop_backend(loop), (char *)expected));
    eddy_loop_free(loop);
}

Test(caps_api, loop_answers_are_its_backends)
{
    unsetenv("EDDY_CAPS_DISABLE");
    const char *names[MAX_BACKENDS];
    size_t here = backends_here(names);
    for (size_t i = 0; i < here; i++) {
        eddy_loop *loop = loop_on(names[i]);
        for (unsigned cap = 0; cap < EDDY_CAP_COUNT; cap++)
            cr_assert(eq(int, (int)eddy_loop_supports(loop, (eddy_cap)cap),
                         (int)eddy_backend_supports(names[i], (eddy_cap)cap)),
                      "%s/%s", names[i], eddy_cap_name((eddy_cap)cap));
        eddy_loop_free(loop);
    }
}

/* The table may promise what a kernel lacks (the probe then says less), but
 * a backend that does more than its row says means the table is stale. */
Test(caps_api, probe_never_claims_more_than_the_table)
{
    const char *names[MAX_BACKENDS];
    size_t here = backends_here(names);
    for (size_t i = 0; i < here; i++) {
        const struct eddy__caps_row *row = table_row(names[i]);
        for (unsigned cap = 0; cap < EDDY_CAP_COUNT; cap++)
            cr_assert(le(int, (int)eddy_backend_supports(names[i], (eddy_cap)cap),
                         (int)row->cells[cap].support),
                      "%s reports %s above the table: update lib/caps_table.h", names[i],
                      eddy_cap_name((eddy_cap)cap));
    }
}

/* ---- every capability reported here is exercised ----------------------------------- */

static const char *exercising; /* "backend/capability", for failure messages */

struct sock_pair {
    eddy_sock *listener, *a, *b;
};

/* A connected stream pair through listener (a: connected, b: accepted). */
static void stream_pair(struct sock_pair *p, bool unix_socket)
{
    int err;
    if (unix_socket) {
        char path[64];
#ifdef __linux__
        snprintf(path, sizeof path, "@eddy-test-caps-%d", (int)getpid());
#else
        snprintf(path, sizeof path, "/tmp/eddy-test-caps-%d", (int)getpid());
        unlink(path);
#endif
        err = eddy_unix_listen(&p->listener, path, 0);
        cr_assert(eq(int, err, 0), "%s: listen: %s", exercising, eddy_strerror(err));
        err = eddy_unix_connect(&p->a, path);
        if (path[0] == '/') unlink(path);
    } else {
        err = eddy_tcp_listen(&p->listener, "127.0.0.1", 0, 0);
        cr_assert(eq(int, err, 0), "%s: listen: %s", exercising, eddy_strerror(err));
        err = eddy_tcp_connect(&p->a, "127.0.0.1", (uint16_t)eddy_sock_port(p->listener));
    }
    cr_assert(eq(int, err, 0), "%s: connect: %s", exercising, eddy_strerror(err));
    err = eddy_accept(p->listener, &p->b);
    cr_assert(eq(int, err, 0), "%s: accept: %s", exercising, eddy_strerror(err));
}

static void pair_close(struct sock_pair *p)
{
    cr_assert(eq(int, eddy_sock_close(p->a), 0));
    cr_assert(eq(int, eddy_sock_close(p->b), 0));
    cr_assert(eq(int, eddy_sock_close(p->listener), 0));
}

/* Sends "caps" from one end, receives it at the other, then a shutdown is
 * read as 0. */
static void stream_round_trip(eddy_sock *from, eddy_sock *to)
{
    char buf[8] = {0};
    cr_assert(eq(sz, (size_t)eddy_send(from, "caps", 4), 4), "%s: send", exercising);
    size_t got = 0;
    while (got < 4) {
        ssize_t n = eddy_recv(to, buf + got, sizeof buf - got);
        cr_assert(n > 0, "%s: recv: %s", exercising, n < 0 ? eddy_strerror((int)n) : "end");
        got += (size_t)n;
    }
    cr_assert(eq(int, memcmp(buf, "caps", 4), 0), "%s: bytes", exercising);
    cr_assert(eq(int, eddy_sock_shutdown(from, EDDY_SHUT_WR), 0));
    cr_assert(eq(sz, (size_t)eddy_recv(to, buf, sizeof buf), 0), "%s: shutdown", exercising);
}

static intptr_t exercise_tcp(void *arg)
{
    struct sock_pair p;
    stream_pair(&p, false);
    stream_round_trip(p.a, p.b);
    pair_close(&p);
    return 0;
}

static intptr_t exercise_unix(void *arg)
{
    struct sock_pair p;
    stream_pair(&p, true);
    stream_round_trip(p.b, p.a);
    pair_close(&p);
    return 0;
}

static intptr_t exercise_udp(void *arg)
{
    eddy_sock *a, *b;
    cr_assert(eq(int, eddy_udp_bind(&a, "127.0.0.1", 0), 0));
    cr_assert(eq(int, eddy_udp_bind(&b, "127.0.0.1", 0), 0));
    struct sockaddr_storage to, from;
    cr_assert(eq(int, eddy_addr_parse(&to, "127.0.0.1", (uint16_t)eddy_sock_port(b)), 0));
    cr_assert(eq(sz, (size_t)eddy_sendto(a, "datagram", 8, (struct sockaddr *)&to), 8),
              "%s: sendto", exercising);
    char buf[16];
    cr_assert(eq(sz, (size_t)eddy_recvfrom(b, buf, sizeof buf, &from), 8), "%s: recvfrom",
              exercising);
    cr_assert(eq(int, memcmp(buf, "datagram", 8), 0));
    cr_assert(eq(int, ntohs(((struct sockaddr_in *)&from)->sin_port), eddy_sock_port(a)));
    cr_assert(eq(int, eddy_sock_close(a), 0));
    cr_assert(eq(int, eddy_sock_close(b), 0));
    return 0;
}

static intptr_t exercise_file_io(void *arg)
{
    char name[64], dir[300], path[320], renamed[320];
    snprintf(name, sizeof name, "eddy-test-caps-%d", (int)getpid());
    temp_path(dir, sizeof dir, name);
    snprintf(path, sizeof path, "%s/file", dir);
    snprintf(renamed, sizeof renamed, "%s/renamed", dir);
    int err = eddy_fs_mkdir(dir, 0700);
    cr_assert(eq(int, err, 0), "%s: mkdir: %s", exercising, eddy_strerror(err));
    eddy_file *f;
    err = eddy_file_open(&f, path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    cr_assert(eq(int, err, 0), "%s: open: %s", exercising, eddy_strerror(err));
    cr_assert(eq(sz, (size_t)eddy_file_write(f, "capability", 10, 0), 10));
    cr_assert(eq(int, eddy_file_sync(f), 0));
    char buf[16] = {0};
    cr_assert(eq(sz, (size_t)eddy_file_read(f, buf, sizeof buf, 0), 10));
    cr_assert(eq(int, memcmp(buf, "capability", 10), 0));
    struct stat st;
    cr_assert(eq(int, eddy_file_stat(f, &st), 0));
    cr_assert(eq(i64, (int64_t)st.st_size, 10));
    cr_assert(eq(int, eddy_file_close(f), 0));
    cr_assert(eq(int, eddy_fs_rename(path, renamed), 0));
    cr_assert(eq(int, eddy_fs_stat(path, &st), -ENOENT));
    cr_assert(eq(int, eddy_fs_unlink(renamed), 0));
    cr_assert(eq(int, eddy_fs_rmdir(dir), 0));
    return 0;
}

static void set_result_cb(void *arg)
{
    cr_assert(eq(int, eddy_future_set_result(arg, 42), 0));
}

static intptr_t exercise_timers(void *arg)
{
    eddy_loop *loop = eddy_loop_current();
    int64_t start = eddy_now(loop);
    cr_assert(eq(int, eddy_sleep(2 * NS_PER_MS), 0));
    cr_assert(ge(i64, eddy_now(loop) - start, 2 * NS_PER_MS), "%s: woke early", exercising);
    eddy_future *f = eddy_future_new(loop);
    cr_assert(eq(int, eddy_call_later(loop, NS_PER_MS, set_result_cb, f, NULL), 0));
    intptr_t value = 0;
    cr_assert(eq(int, eddy_await_timeout(f, 10 * NS_PER_SEC, &value), 0));
    cr_assert(eq(i64, (int64_t)value, 42));
    eddy_future_unref(f);
    return 0;
}

static intptr_t recv_forever(void *arg)
{
    char buf[8];
    return eddy_recv(arg, buf, sizeof buf);
}

/* A receive with nothing to read, cancelled in the backend; the socket then
 * works, and no byte went to the cancelled call. */
static intptr_t exercise_cancel(void *arg)
{
    struct sock_pair p;
    stream_pair(&p, false);
    eddy_task *reader = eddy_spawn(NULL, recv_forever, p.b);
    cr_assert(eq(int, eddy_sleep(NS_PER_MS), 0)); /* the reader is now in its recv */
    cr_assert(eddy_task_cancel(reader));
    cr_assert(eq(int, eddy_task_join(reader, NULL), -ECANCELED), "%s", exercising);
    stream_round_trip(p.a, p.b);
    pair_close(&p);
    return 0;
}

struct wake {
    eddy_loop *loop;
    eddy_future *future;
    int posted;
};

static void *post_later(void *arg)
{
    struct wake *w = arg;
    usleep(5000);
    w->posted = eddy_call_soon_threadsafe(w->loop, set_result_cb, w->future);
    return NULL;
}

/* The loop waits with no deadline and no I/O; only the other thread's post
 * can end the wait. */
/* A descriptor made without eddy, ready to read: waited on, then watched. */
static void count_watch(eddy_watch *w, unsigned revents, void *arg)
{
    *(unsigned *)arg |= revents;
    cr_assert(eq(int, eddy_watch_stop(w), 0));
}

static intptr_t exercise_watch_fd(void *arg)
{
#ifdef _WIN32
    /* sockets only on Windows: a TCP pair's end with a byte to read */
    struct sock_pair p;
    stream_pair(&p, false);
    cr_assert(eq(sz, (size_t)eddy_send(p.b, "w", 1), 1));
    intptr_t fd = eddy_sock_fd(p.a);
    cr_assert(eq(int, eddy_wait_readable(fd, NS_PER_SEC), 0), "%s", exercising);
    unsigned seen = 0;
    eddy_watch *w;
    cr_assert(eq(int, eddy_watch_start(&w, NULL, fd, EDDY_READABLE, count_watch, &seen), 0));
    cr_assert(eq(int, eddy_sleep(10 * NS_PER_MS), 0));
    cr_assert(eq(u32, seen, EDDY_READABLE), "%s", exercising);
    pair_close(&p);
#else
    int fds[2];
    cr_assert(eq(int, pipe(fds), 0));
    cr_assert(eq(int, (int)write(fds[1], "w", 1), 1));
    cr_assert(eq(int, eddy_wait_readable(fds[0], NS_PER_SEC), 0), "%s", exercising);
    unsigned seen = 0;
    eddy_watch *w;
    cr_assert(eq(int, eddy_watch_start(&w, NULL, fds[0], EDDY_READABLE, count_watch, &seen), 0));
    cr_assert(eq(int, eddy_sleep(NS_PER_MS), 0));
    cr_assert(eq(u32, seen, EDDY_READABLE), "%s", exercising);
    close(fds[0]);
    close(fds[1]);
#endif
    return 0;
}

static void count_signal(void *arg)
{
    (*(int *)arg)++;
}

/* A signal raised in the loop's thread reaches a watcher (Windows: no way to
 * raise a console event here, so only the watcher's setup), and a wait obeys
 * its timeout scope. */
static intptr_t exercise_signals(void *arg)
{
    int calls = 0;
    eddy_signal *s;
    cr_assert(eq(int, eddy_signal_start(&s, NULL, SIGINT, count_signal, &calls), 0), "%s",
              exercising);
#ifndef _WIN32
    cr_assert(eq(int, raise(SIGINT), 0));
#endif
    int signums[] = {SIGBREAK_OR_USR2};
    eddy_timeout scope;
    cr_assert(eq(int, eddy_timeout_begin(&scope, 20 * NS_PER_MS), 0));
    cr_assert(eq(int, eddy_signal_wait(signums, 1), -ECANCELED), "%s", exercising);
    cr_assert(eq(int, eddy_timeout_end(&scope), -ETIMEDOUT));
#ifndef _WIN32
    cr_assert(eq(int, calls, 1), "%s", exercising);
#endif
    cr_assert(eq(int, eddy_signal_stop(s), 0));
    return 0;
}

/* A child whose output comes back through a pipe, and whose exit is seen. */
static intptr_t exercise_subprocess(void *arg)
{
#ifdef _WIN32
    /* The test binary itself, as tests/child.c makes it act */
    char *argv[] = {"child", CHILD_FLAG, "echo", "hi", NULL};
    char *exit3[] = {"child", CHILD_FLAG, "exit", "3", NULL};
    eddy_process_options o = EDDY_PROCESS_OPTIONS_INIT(.file = child_program(), .argv = argv);
#else
    char *argv[] = {"sh", "-c", "echo hi; exit 3", NULL};
    eddy_process_options o = EDDY_PROCESS_OPTIONS_INIT(.argv = argv);
#endif
    o.stdio[1].mode = EDDY_STDIO_PIPE;
    eddy_process *p;
    cr_assert(eq(int, eddy_process_spawn(&p, &o), 0), "%s", exercising);
    char buf[8] = {0};
    cr_assert(eq(sz, (size_t)eddy_stream_readexactly(eddy_process_stdout(p), buf, 3), (size_t)3),
              "%s", exercising);
    cr_assert(eq(str, buf, "hi\n"), "%s", exercising);
    int status = 0;
#ifdef _WIN32
    cr_assert(eq(int, eddy_process_wait(p, &status), 0), "%s", exercising);
    eddy_process_free(p);
    o.argv = exit3;
    o.stdio[1].mode = EDDY_STDIO_NULL;
    cr_assert(eq(int, eddy_process_spawn(&p, &o), 0), "%s", exercising);
#endif
    cr_assert(eq(int, eddy_process_wait(p, &status), 0), "%s", exercising);
    cr_assert(eq(int, status, 3 << 8), "%s: exit status 3 as waitpid gives it", exercising);
    eddy_process_free(p);
    return 0;
}

/* A TLS client's handshake over this backend: its ClientHello reaches the
 * peer, which hangs up (the handshake then ends with -ECONNRESET, not
 * -ENOTSUP). tests/test_tls.c has the real handshakes. */
static intptr_t client_hello_peer(void *arg)
{
    eddy_sock *peer = arg;
    unsigned char head[5];
    for (size_t got = 0; got < sizeof head;) {
        ssize_t n = eddy_recv(peer, head + got, sizeof head - got);
        cr_assert(gt(long, (long)n, 0L), "%s", exercising);
        got += (size_t)n;
    }
    cr_assert(eq(u8, head[0], 22), "%s: a TLS handshake record", exercising);
    cr_assert(eq(u8, head[1], 3), "%s", exercising);
    cr_assert(eq(int, eddy_sock_close(peer), 0));
    return 0;
}

static intptr_t exercise_tls(void *arg)
{
    struct sock_pair p;
    stream_pair(&p, false);
    eddy_stream *st;
    cr_assert(eq(int, eddy_stream_open(&st, p.a, NULL), 0));
    eddy_task *peer = eddy_spawn(NULL, client_hello_peer, p.b);
    eddy_tls_options o = EDDY_TLS_OPTIONS_INIT(.server_name = "localhost");
    cr_assert(eq(int, eddy_stream_start_tls(st, &o), -ECONNRESET), "%s", exercising);
    cr_assert(eq(int, eddy_task_join(peer, NULL), 0));
    (void)eddy_stream_close(st);
    cr_assert(eq(int, eddy_sock_close(p.listener), 0));
    return 0;
}

static intptr_t exercise_wakeup(void *arg)
{
    struct wake w = {.loop = eddy_loop_current()};
    w.future = eddy_future_new(w.loop);
    pthread_t thread;
    cr_assert(eq(int, pthread_create(&thread, NULL, post_later, &w), 0));
    intptr_t value = 0;
    cr_assert(eq(int, eddy_await(w.future, &value), 0), "%s", exercising);
    cr_assert(eq(i64, (int64_t)value, 42));
    cr_assert(eq(int, pthread_join(thread, NULL), 0));
    cr_assert(eq(int, w.posted, 0));
    eddy_future_unref(w.future);
    return 0;
}

/* Another loop of this backend, on its own thread, sends items one at a
 * time through a channel to this one: each wakes this loop from that one. */
struct ring_peer {
    const char *backend;
    eddy_channel *ch;
};

static intptr_t send_hundred(void *arg)
{
    eddy_channel *ch = arg;
    for (intptr_t i = 0; i < 100; i++)
        if (eddy_channel_send(ch, i) < 0) return -EIO;
    return eddy_channel_close(ch);
}

static void *run_peer_loop(void *arg)
{
    struct ring_peer *p = arg;
    eddy_loop_options o = EDDY_LOOP_OPTIONS_INIT(.backend = p->backend);
    eddy_loop *loop;
    cr_assert(eq(int, eddy_loop_new(&loop, &o), 0));
    intptr_t result = -1;
    cr_assert(eq(int, run_task(loop, send_hundred, p->ch, &result), 0));
    cr_assert(eq(i64, (int64_t)result, 0));
    eddy_loop_free(loop);
    return NULL;
}

static intptr_t exercise_msg_ring(void *arg)
{
    struct ring_peer p = {.backend = eddy_loop_backend(eddy_loop_current())};
    cr_assert(eq(int, eddy_channel_new(&p.ch, 1), 0));
    pthread_t thread;
    cr_assert(eq(int, pthread_create(&thread, NULL, run_peer_loop, &p), 0));
    intptr_t v, expect = 0;
    while (eddy_channel_recv(p.ch, &v) == 0)
        cr_assert(eq(i64, (int64_t)v, (int64_t)expect++), "%s", exercising);
    cr_assert(eq(i64, (int64_t)expect, 100), "%s", exercising);
    cr_assert(eq(int, pthread_join(thread, NULL), 0));
    eddy_channel_free(p.ch);
    return 0;
}

static intptr_t exercise_dns(void *arg)
{
    eddy_sock *listener, *client, *server;
    cr_assert(eq(int, eddy_tcp_listen(&listener, NULL, 0, 0), 0));
    int err = eddy_tcp_connect(&client, "localhost", (uint16_t)eddy_sock_port(listener));
    cr_assert(eq(int, err, 0), "%s: connect to localhost: %s", exercising, eddy_strerror(err));
    cr_assert(eq(int, eddy_accept(listener, &server), 0));
    stream_round_trip(client, server);
    cr_assert(eq(int, eddy_sock_close(client), 0));
    cr_assert(eq(int, eddy_sock_close(server), 0));
    cr_assert(eq(int, eddy_sock_close(listener), 0));
    return 0;
}

/* Several clients connect before the listener's task accepts them all: on
 * io_uring one multishot submission takes them in. */
static intptr_t exercise_multishot_accept(void *arg)
{
    enum { CLIENTS = 8 };
    eddy_sock *listener, *clients[CLIENTS], *servers[CLIENTS];
    cr_assert(eq(int, eddy_tcp_listen(&listener, "127.0.0.1", 0, CLIENTS), 0));
    for (int i = 0; i < CLIENTS; i++)
        cr_assert(eq(int,
                     eddy_tcp_connect(&clients[i], "127.0.0.1", (uint16_t)eddy_sock_port(listener)),
                     0),
                  "%s", exercising);
    for (int i = 0; i < CLIENTS; i++)
        cr_assert(eq(int, eddy_accept(listener, &servers[i]), 0), "%s", exercising);
    for (int i = 0; i < CLIENTS; i++) {
        stream_round_trip(clients[i], servers[i]);
        cr_assert(eq(int, eddy_sock_close(clients[i]), 0));
        cr_assert(eq(int, eddy_sock_close(servers[i]), 0));
    }
    cr_assert(eq(int, eddy_sock_close(listener), 0));
    return 0;
}

/* The descriptors this process has open. */
static int open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    cr_assert(ne(ptr, (void *)d, NULL));
    int n = -1; /* the directory's own */
    struct dirent *e;
    while ((e = readdir(d)))
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

/* An accepted connection takes no descriptor of the process, works, and
 * gets a real one when asked (io_uring: installed from the ring's table). */
static intptr_t exercise_direct_descriptors(void *arg)
{
    eddy_sock *listener, *client, *server;
    cr_assert(eq(int, eddy_tcp_listen(&listener, "127.0.0.1", 0, 0), 0));
    cr_assert(
        eq(int, eddy_tcp_connect(&client, "127.0.0.1", (uint16_t)eddy_sock_port(listener)), 0));
    int before = open_fds();
    cr_assert(eq(int, eddy_accept(listener, &server), 0), "%s", exercising);
    cr_assert(eq(int, open_fds(), before), "%s: a direct descriptor", exercising);
    stream_round_trip(client, server);
    intptr_t fd = eddy_sock_fd(server);
    cr_assert(ge(i64, (int64_t)fd, 0), "%s: %s", exercising, eddy_strerror((int)fd));
    int type = 0;
    socklen_t len = sizeof type;
    cr_assert(eq(int, getsockopt((int)fd, SOL_SOCKET, SO_TYPE, &type, &len), 0));
    cr_assert(eq(int, type, SOCK_STREAM), "%s", exercising);
    cr_assert(eq(int, eddy_sock_close(server), 0));
    cr_assert(eq(int, eddy_sock_close(client), 0));
    cr_assert(eq(int, eddy_sock_close(listener), 0));
    return 0;
}

/* A file read more than a few times: on io_uring, through a slot of the
 * loop's file table that names it (its reads say so in nothing but speed). */
static intptr_t exercise_registered_files(void *arg)
{
    char path[64];
    snprintf(path, sizeof path, "/tmp/eddy-caps-reg-%d", (int)getpid());
    eddy_file *f;
    cr_assert(eq(int, eddy_file_open(&f, path, O_RDWR | O_CREAT | O_TRUNC, 0600), 0));
    for (int i = 0; i < 32; i++)
        cr_assert(eq(sz, (size_t)eddy_file_write(f, "ab", 2, 2 * i), 2), "%s", exercising);
    char buf[2];
    for (int i = 0; i < 32; i++) {
        cr_assert(eq(sz, (size_t)eddy_file_read(f, buf, 2, 2 * i), 2), "%s", exercising);
        cr_assert(eq(int, memcmp(buf, "ab", 2), 0), "%s", exercising);
    }
    cr_assert(eq(int, eddy_file_sync(f), 0), "%s", exercising);
    cr_assert(eq(int, eddy_file_close(f), 0));
    cr_assert(eq(int, eddy_fs_unlink(path), 0));
    return 0;
}

/* A region registered with the loop, read into and written from: on
 * io_uring the reads and writes go out as READ_FIXED and WRITE_FIXED. */
static intptr_t exercise_registered_buffers(void *arg)
{
    char path[64];
    snprintf(path, sizeof path, "/tmp/eddy-caps-regbuf-%d", (int)getpid());
    static char region[8192];
    int err = eddy_buffer_register(NULL, region, sizeof region);
    cr_assert(eq(int, err, 0), "%s: register: %s", exercising, eddy_strerror(err));
    eddy_file *f;
    cr_assert(eq(int, eddy_file_open(&f, path, O_RDWR | O_CREAT | O_TRUNC, 0600), 0));
    memset(region, 'r', 4096);
    cr_assert(eq(sz, (size_t)eddy_file_write(f, region, 4096, 0), 4096), "%s", exercising);
    cr_assert(eq(sz, (size_t)eddy_file_read(f, region + 4096, 4096, 0), 4096), "%s", exercising);
    cr_assert(eq(int, memcmp(region, region + 4096, 4096), 0), "%s", exercising);
    cr_assert(eq(int, eddy_file_close(f), 0));
    cr_assert(eq(int, eddy_buffer_unregister(NULL, region), 0));
    cr_assert(eq(int, eddy_fs_unlink(path), 0));
    return 0;
}

/* A stream read in a loop, on TCP and on a Unix socket: on io_uring its
 * reads go through a multishot receive into the loop's buffer ring, and
 * bytes that come while no read waits are queued for the next one. */
static intptr_t exercise_multishot_recv(void *arg)
{
    for (int unix_socket = 0; unix_socket <= 1; unix_socket++) {
        struct sock_pair p;
        stream_pair(&p, unix_socket);
        char buf[16];
        for (int round = 0; round < 4; round++) {
            cr_assert(eq(sz, (size_t)eddy_send(p.a, "multi", 5), 5), "%s: send", exercising);
            cr_assert(eq(sz, (size_t)eddy_send(p.a, "shot", 4), 4), "%s: send", exercising);
            cr_assert(eq(int, eddy_sleep(1000 * 1000), 0)); /* both come before the read */
            size_t got = 0;
            while (got < 9) {
                ssize_t n = eddy_recv(p.b, buf + got, sizeof buf - got);
                cr_assert(n > 0, "%s: recv: %s", exercising, n < 0 ? eddy_strerror((int)n) : "end");
                got += (size_t)n;
            }
            cr_assert(eq(int, memcmp(buf, "multishot", 9), 0), "%s: bytes", exercising);
        }
        stream_round_trip(p.a, p.b);
        pair_close(&p);
    }
    return 0;
}

#define ZC_SEND_LEN (256 * 1024) /* above io_uring's zero-copy threshold (64 KiB) */

struct zc_send {
    eddy_sock *sock;
    unsigned char *buf;
};

static intptr_t send_all(void *arg)
{
    struct zc_send *z = arg;
    return eddy_send(z->sock, z->buf, ZC_SEND_LEN);
}

/* A send large enough to go zero-copy on io_uring: every byte arrives, in
 * order, and the send ends with its buffer as it was. */
static intptr_t exercise_zerocopy_send(void *arg)
{
    struct sock_pair p;
    stream_pair(&p, false);
    unsigned char *out = malloc(ZC_SEND_LEN), *in = malloc(ZC_SEND_LEN);
    cr_assert(out && in);
    for (size_t i = 0; i < ZC_SEND_LEN; i++)
        out[i] = (unsigned char)(i * 7 + i / 251);
    struct zc_send z = {.sock = p.a, .buf = out};
    eddy_task *sender = eddy_spawn(NULL, send_all, &z);
    for (size_t got = 0; got < ZC_SEND_LEN;) {
        ssize_t n = eddy_recv(p.b, in + got, ZC_SEND_LEN - got);
        cr_assert(n > 0, "%s: recv: %zd", exercising, n);
        got += (size_t)n;
    }
    intptr_t sent = -1;
    cr_assert(eq(int, eddy_task_join(sender, &sent), 0));
    cr_assert(eq(i64, (int64_t)sent, ZC_SEND_LEN), "%s", exercising);
    cr_assert(eq(int, memcmp(in, out, ZC_SEND_LEN), 0), "%s: the bytes differ", exercising);
    for (size_t i = 0; i < ZC_SEND_LEN; i++)
        if (out[i] != (unsigned char)(i * 7 + i / 251)) cr_fatal("%s: buffer changed", exercising);
    free(out);
    free(in);
    pair_close(&p);
    return 0;
}

/* A stream sends a file's bytes between two writes; the peer reads them in order. */
static intptr_t exercise_sendfile(void *arg)
{
    char name[64], path[320];
    snprintf(name, sizeof name, "eddy-test-caps-sendfile-%d", (int)getpid());
    temp_path(path, sizeof path, name);
    eddy_file *f;
    int err = eddy_file_open(&f, path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    cr_assert(eq(int, err, 0), "%s: open: %s", exercising, eddy_strerror(err));
    cr_assert(eq(sz, (size_t)eddy_file_write(f, "xxfilexx", 8, 0), 8));
    struct sock_pair p;
    stream_pair(&p, false);
    eddy_stream *st;
    cr_assert(eq(int, eddy_stream_open(&st, p.a, NULL), 0));
    cr_assert(eq(int, eddy_stream_write(st, "<", 1), 0));
    ssize_t n = eddy_stream_sendfile(st, f, 2, 4);
    cr_assert(eq(sz, (size_t)n, 4), "%s: %s", exercising, eddy_strerror((int)n));
    cr_assert(eq(int, eddy_stream_write(st, ">", 1), 0));
    cr_assert(eq(int, eddy_stream_close(st), 0));
    char buf[16] = {0};
    size_t got = 0;
    while (got < sizeof buf) {
        ssize_t r = eddy_recv(p.b, buf + got, sizeof buf - got);
        cr_assert(r >= 0, "%s: recv: %s", exercising, eddy_strerror((int)r));
        if (r == 0) break;
        got += (size_t)r;
    }
    cr_assert(eq(str, buf, "<file>"), "%s", exercising);
    cr_assert(eq(int, eddy_file_close(f), 0));
    cr_assert(eq(int, eddy_fs_unlink(path), 0));
    cr_assert(eq(int, eddy_sock_close(p.b), 0));
    cr_assert(eq(int, eddy_sock_close(p.listener), 0));
    return 0;
}

/* For each capability: a short exercise run here on every backend that
 * reports it, and the suite that tests it in depth on every backend. A
 * capability a backend starts reporting needs its row here first. */
static const struct {
    eddy_task_fn exercise;
    const char *file; /* tests/<file> */
    const char *test; /* the in-depth test, as declared there */
} exercises[EDDY_CAP_COUNT] = {
    [EDDY_CAP_TCP] = {exercise_tcp, "test_sockets.c", "Test(sockets, echo_100_clients_1mib"},
    [EDDY_CAP_UDP] = {exercise_udp, "test_sockets.c", "Test(sockets, udp_round_trip"},
    [EDDY_CAP_UNIX_SOCKETS] = {exercise_unix, "test_sockets.c", "Test(sockets, unix_round_trip"},
    [EDDY_CAP_FILE_IO] = {exercise_file_io, "test_files.c", "Test(files, write_sync_read_64mib"},
    [EDDY_CAP_TIMERS] = {exercise_timers, "test_timers.c",
                         "Test(timers, fire_in_deadline_order_real_clock"},
    [EDDY_CAP_CANCEL] = {exercise_cancel, "test_sockets.c",
                         "Test(sockets, cancel_pending_recv_then_reuse"},
    [EDDY_CAP_WAKEUP] = {exercise_wakeup, "test_threadsafe.c",
                         "Test(threadsafe, wakes_loop_blocked_without_deadline"},
    [EDDY_CAP_DNS] = {exercise_dns, "test_sockets.c", "Test(sockets, ipv4_ipv6_and_names"},
    [EDDY_CAP_WATCH_FD] = {exercise_watch_fd, "test_watch.c",
                           "Test(watch, callback_each_time_data_comes"},
    [EDDY_CAP_SIGNALS] = {exercise_signals, "test_signals.c",
                          "Test(signals, signal_sent_while_the_loop_is_busy_is_delivered_after"},
    [EDDY_CAP_SUBPROCESS] = {exercise_subprocess, "test_process.c",
                             "Test(process, eight_cats_stream_4mib_each_without_deadlock"},
    [EDDY_CAP_MULTISHOT_ACCEPT] = {exercise_multishot_accept, "test_uring.c",
                                   "Test(uring_accept, burst_of_connections_multishot"},
    [EDDY_CAP_MULTISHOT_RECV] = {exercise_multishot_recv, "test_uring.c",
                                 "Test(uring_recv, small_pieces_and_one_big_piece_arrive_in_order"},
    [EDDY_CAP_BUFFER_RING] = {exercise_multishot_recv, "test_uring.c",
                              "Test(uring_recv, slow_readers_and_a_tiny_buffer_ring_lose_nothing"},
    [EDDY_CAP_ZEROCOPY_SEND] = {exercise_zerocopy_send, "test_uring.c",
                                "Test(uring_send_zc, large_sends_arrive_intact"},
    [EDDY_CAP_SENDFILE] = {exercise_sendfile, "test_sendfile.c",
                           "Test(sendfile, ten_mib_whole_in_ranges_and_past_the_end"},
    [EDDY_CAP_TLS] = {exercise_tls, "test_tls.c", "Test(tls, echo_1mib_in_random_pieces_with_sni"},
    [EDDY_CAP_MSG_RING] = {exercise_msg_ring, "test_channel.c",
                           "Test(channel, loops_wake_each_other_with_and_without_msg_ring"},
    [EDDY_CAP_DIRECT_DESCRIPTORS] =
        {exercise_direct_descriptors, "test_uring.c",
         "Test(uring_direct, real_descriptor_uses_work_on_accepted_sockets"},
    [EDDY_CAP_REGISTERED_FILES] =
        {exercise_registered_files, "test_uring.c",
         "Test(uring_files, file_read_often_goes_through_its_registered_slot"},
    [EDDY_CAP_RECV_BUNDLE] = {exercise_multishot_recv, "test_streams.c",
                              "Test(streams, lines_and_records_straddling_ring_buffers"},
    [EDDY_CAP_BUFFER_RING_INCREMENTAL] = {exercise_multishot_recv, "test_streams.c",
                                          "Test(streams, many_connections_share_the_ring_intact"},
    [EDDY_CAP_REGISTERED_BUFFERS] =
        {exercise_registered_buffers, "test_uring.c",
         "Test(uring_files, registered_buffer_reads_go_to_the_pinned_pages"},
};

/* Whether tests/<file> declares test. */
static bool source_declares(const char *file, const char *test)
{
    char path[512];
    snprintf(path, sizeof path, "%s/tests/%s", EDDY_TEST_SRCDIR, file);
    FILE *f = fopen(path, "r");
    if (!f) return false;
    static char text[1 << 20];
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    return strstr(text, test) != NULL;
}

Test(caps_exercised, every_capability_reported_here_is_exercised, .timeout = TEST_TIMEOUT)
{
    unsetenv("EDDY_CAPS_DISABLE");
    /* io_uring's default threshold, with loopback peers too (zero-copy is for
     * peers on other hosts, and this one is on loopback) */
    setenv("EDDY_URING_SEND_ZC_MIN", "65536", 1);
    const char *names[MAX_BACKENDS];
    size_t here = backends_here(names);
    for (size_t i = 0; i < here; i++) {
        for (unsigned cap = 0; cap < EDDY_CAP_COUNT; cap++) {
            eddy_support s = eddy_backend_supports(names[i], (eddy_cap)cap);
            if (s == EDDY_NONE) continue;
            char what[64];
            snprintf(what, sizeof what, "%s/%s", names[i], eddy_cap_name((eddy_cap)cap));
            exercising = what;
            cr_assert(ne(ptr, (void *)exercises[cap].exercise, NULL),
                      "%s is reported %s but nothing exercises it: add it to exercises[]", what,
                      s == EDDY_NATIVE ? "native" : "emulated");
            cr_assert(source_declares(exercises[cap].file, exercises[cap].test),
                      "%s: tests/%s no longer declares %s", what, exercises[cap].file,
                      exercises[cap].test);
            eddy_loop *loop = loop_on(names[i]);
            intptr_t result = -1;
            cr_assert(eq(int, run_task(loop, exercises[cap].exercise, NULL, &result), 0), "%s",
                      what);
            cr_assert(eq(i64, (int64_t)result, 0), "%s", what);
            eddy_loop_free(loop);
        }
    }
}

/* ---- -ENOTSUP ------------------------------------------------------------------------ */

/* What each op returns on a loop without file I/O, UDP and Unix sockets. */
static intptr_t without_files_udp_unix(void *arg)
{
    eddy_file *f;
    cr_assert(eq(int, eddy_file_open(&f, "/dev/null", O_RDONLY, 0), -ENOTSUP));
    cr_assert(eq(ptr, f, NULL));
    struct stat st;
    cr_assert(eq(int, eddy_fs_stat("/", &st), -ENOTSUP));
    cr_assert(eq(int, eddy_fs_mkdir("/tmp/eddy-test-caps-never", 0700), -ENOTSUP));

    eddy_sock *u;
    cr_assert(eq(int, eddy_udp_bind(&u, "127.0.0.1", 0), -ENOTSUP));
    cr_assert(eq(ptr, u, NULL));

    eddy_sock *s;
    cr_assert(eq(int, eddy_unix_connect(&s, "@eddy-test-caps-nobody"), -ENOTSUP));
    cr_assert(eq(ptr, s, NULL));
    cr_assert(eq(int, eddy_unix_listen(&s, "@eddy-test-caps-nobody", 1), -ENOTSUP));
    cr_assert(eq(ptr, s, NULL));

    /* What the backend still offers works on the same loop. */
    return exercise_tcp(NULL);
}

Test(caps_enotsup, ops_whose_capability_is_none_return_enotsup, .timeout = TEST_TIMEOUT)
{
    setenv("EDDY_CAPS_DISABLE", "file_io, udp,unix_sockets", 1);
    const char *names[MAX_BACKENDS];
    size_t here = backends_here(names);
    for (size_t i = 0; i < here; i++) {
        eddy_loop *loop = loop_on(names[i]);
        cr_assert(eq(int, (int)eddy_loop_supports(loop, EDDY_CAP_FILE_IO), EDDY_NONE));
        cr_assert(eq(int, (int)eddy_loop_supports(loop, EDDY_CAP_UDP), EDDY_NONE));
        cr_assert(eq(int, (int)eddy_loop_supports(loop, EDDY_CAP_UNIX_SOCKETS), EDDY_NONE));
        cr_assert(eq(int, (int)eddy_loop_supports(loop, EDDY_CAP_TCP),
                     (int)eddy_backend_supports(names[i], EDDY_CAP_TCP)));
        cr_assert(ne(int, (int)eddy_backend_supports(names[i], EDDY_CAP_FILE_IO), EDDY_NONE),
                  "the variable changes loops, not the backend's answer");
        exercising = names[i];
        intptr_t result = -1;
        cr_assert(eq(int, run_task(loop, without_files_udp_unix, NULL, &result), 0));
        cr_assert(eq(i64, (int64_t)result, 0));
        eddy_loop_free(loop);
    }
    unsetenv("EDDY_CAPS_DISABLE");
}

Test(caps_enotsup, unknown_names_in_the_variable_are_ignored)
{
    setenv("EDDY_CAPS_DISABLE", ",nope,, tcpx ,", 1);
    eddy_loop *loop = new_loop();
    for (unsigned cap = 0; cap < EDDY_CAP_COUNT; cap++)
        cr_assert(eq(int, (int)eddy_loop_supports(loop, (eddy_cap)cap),
                     (int)eddy_backend_supports(eddy_loop_backend(loop), (eddy_cap)cap)));
    eddy_loop_free(loop);
    unsetenv("EDDY_CAPS_DISABLE");
}

/* ---- eddy-caps ------------------------------------------------------------------------- */

#ifdef __linux__
/* What the built eddy-caps prints with no argument. */
static const char *eddy_caps_output(void)
{
    FILE *tool = popen(EDDY_TEST_BUILDDIR "/tools/eddy-caps", "r");
    cr_assert(ne(ptr, tool, NULL));
    static char out[1 << 16];
    size_t n = fread(out, 1, sizeof out - 1, tool);
    out[n] = '\0';
    cr_assert(eq(int, pclose(tool), 0), "eddy-caps failed:\n%s", out);
    return out;
}
#endif

/* A backend this platform can run but the build left out (kqueue on Linux
 * without --with-kqueue) is not "not built for this platform": the tool says
 * how to build it. */
Test(caps_tool, says_how_to_build_a_backend_left_out, .timeout = TEST_TIMEOUT)
{
#ifdef __linux__
    static const struct {
        const char *name, *how;
    } buildable[] = {
        {"kqueue", "- kqueue: not built; to build it, configure --with-kqueue, against libkqueue"},
        {"io_uring", "- io_uring: not built; to build it, configure with liburing installed"},
    };
    const char *out = eddy_caps_output();
    size_t checked = 0;
    for (size_t i = 0; i < sizeof buildable / sizeof buildable[0]; i++) {
        if (eddy_backend_available(buildable[i].name) != -ENOTSUP) continue;
        cr_assert(strstr(out, buildable[i].how) != NULL, "eddy-caps does not say \"%s\":\n%s",
                  buildable[i].how, out);
        checked++;
    }
    cr_assert(strstr(out, "- iocp: not built for this platform\n") != NULL,
              "eddy-caps does not say iocp is not for Linux:\n%s", out);
    if (checked == 0) cr_skip_test("kqueue and io_uring are both built in (iocp checked)");
#else
    cr_skip_test("what a build may leave out is checked on Linux");
#endif
}

/* ---- a refused backend ------------------------------------------------------------------ */

/* With io_uring_setup (or, deny_enter, only io_uring_enter) failing with err
 * (a seccomp filter installed before anything probed): the API reports err,
 * answers from the table, and eddy-caps says the default loop fell back to
 * epoll and why. */
static void check_refusal(int err, const char *err_name, bool deny_enter)
{
#if EDDY_TEST_HAVE_SECCOMP && EDDY_HAVE_URING && EDDY_HAVE_EPOLL
    unsetenv("EDDY_BACKEND");
    eddy_loop_options uring = {.backend = "io_uring"};
    eddy_loop *loop;
    int avail = eddy_loop_new(&loop, &uring); /* leaves the probe cache alone */
    if (avail < 0) cr_skip_test("io_uring cannot run here: %s", eddy_strerror(avail));
    eddy_loop_free(loop);

    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
    cr_assert(ne(ptr, ctx, NULL));
    int nr = deny_enter ? SCMP_SYS(io_uring_enter) : SCMP_SYS(io_uring_setup);
    cr_assert(eq(int, seccomp_rule_add(ctx, SCMP_ACT_ERRNO(err), nr, 0), 0));
    cr_assert(eq(int, seccomp_load(ctx), 0), "seccomp_load");
    seccomp_release(ctx);

    cr_assert(eq(int, eddy_backend_available("io_uring"), -err));
    cr_assert(eq(int, eddy_backend_available("epoll"), 0));
    const struct eddy__caps_row *row = table_row("io_uring");
    for (unsigned cap = 0; cap < EDDY_CAP_COUNT; cap++)
        cr_assert(eq(int, (int)eddy_backend_supports("io_uring", (eddy_cap)cap),
                     (int)row->cells[cap].support));
    loop = new_loop();
    cr_assert(eq(str, (char *)eddy_loop_backend(loop), "epoll"));
    eddy_loop_free(loop);

    const char *out = eddy_caps_output();
    char expected[128];
    snprintf(expected, sizeof expected, "Default loop: epoll (io_uring: refused (%s), using epoll)",
             err_name);
    cr_assert(strstr(out, expected) != NULL, "eddy-caps does not say \"%s\":\n%s", expected, out);
    snprintf(expected, sizeof expected, "- io_uring: refused (%s: ", err_name);
    cr_assert(strstr(out, expected) != NULL, "eddy-caps does not say \"%s\":\n%s", expected, out);
#else
    (void)err;
    (void)err_name;
    (void)deny_enter;
#ifdef _WIN32
    cr_skip_test("io_uring, epoll and seccomp are Linux's");
#else
    cr_skip_test("needs io_uring, epoll and libseccomp (install libseccomp-dev and reconfigure)");
#endif
#endif
}

Test(caps_refused, seccomp_eperm_is_reported, .timeout = TEST_TIMEOUT)
{
    check_refusal(EPERM, "EPERM", false);
}

Test(caps_refused, enosys_is_reported, .timeout = TEST_TIMEOUT)
{
    check_refusal(ENOSYS, "ENOSYS", false);
}

/* A profile that allows io_uring_setup but denies io_uring_enter. */
Test(caps_refused, enter_refused_is_reported, .timeout = TEST_TIMEOUT)
{
    check_refusal(EPERM, "EPERM", true);
}
