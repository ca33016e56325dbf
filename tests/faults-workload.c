/* SPDX-License-Identifier: MIT */
/* tests/faults-workload: the program the allocation-failure sweep
 * (tests/faults-sweep.sh) runs once per allocation, with tests/faults-shim.so
 * failing that one. It touches tasks, timers, callbacks, futures, gather,
 * wait_any, await_timeout, groups, TCP, UDP and Unix sockets over loopback,
 * a name resolved in the pool, a callback queued from another thread, files
 * and the thread pool, each phase in its own task awaited with a time
 * limit (a hang fails), then, on the same loop, a follow-up (a task, a timer,
 * a future) that must succeed: the loop stays usable.
 *
 * Every call's result is checked: success, or -ENOMEM (NULL where eddy.h
 * says so). Within a phase that saw -ENOMEM, its consequences are expected
 * (the peer's end of the connection, a cancelled sibling); an error in a
 * phase that saw no -ENOMEM, a hang, or a failed follow-up is a failure.
 * Prints "faults-workload: enomem=K in PHASE:CALL ..." and exits 0, or 1
 * with the reasons on stderr. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "eddy.h"

#define MS          ((int64_t)1000000)
#define PHASE_LIMIT (10 * 1000 * MS)

static const char *phase = "setup";
static int phase_enomem; /* -ENOMEM seen in the current phase */
static int phase_other;  /* other errors in the current phase */
static char phase_first_other[160];
static int enomem_total;
static int failures;
static char enomem_where[512];

/* Records a call's failure (err < 0); returns err. */
static int note(int err, const char *call)
{
    if (err == -ENOMEM) {
        phase_enomem++;
        enomem_total++;
        size_t used = strlen(enomem_where);
        snprintf(enomem_where + used, sizeof(enomem_where) - used, " %s:%s", phase, call);
    } else if (phase_other++ == 0) {
        snprintf(phase_first_other, sizeof(phase_first_other), "%s: %s", call, eddy_strerror(err));
    }
    return err;
}

/* A call returning a negative code: on failure, note it and leave. */
#define TRY(expr)                                                                                  \
    do {                                                                                           \
        long try_r_ = (long)(expr);                                                                \
        if (try_r_ < 0) {                                                                          \
            err = note((int)try_r_, #expr);                                                        \
            goto out;                                                                              \
        }                                                                                          \
    } while (0)
/* A call returning NULL for -ENOMEM. */
#define TRYP(expr)                                                                                 \
    do {                                                                                           \
        if (!(expr)) {                                                                             \
            err = note(-ENOMEM, #expr);                                                            \
            goto out;                                                                              \
        }                                                                                          \
    } while (0)
/* A consequence that is not an error code (short echo, wrong data). */
#define EXPECT(cond, code)                                                                         \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            err = note(code, #cond);                                                               \
            goto out;                                                                              \
        }                                                                                          \
    } while (0)

/* ---- tasks, timers, callbacks, futures ------------------------------------ */

static intptr_t sleeper(void *arg)
{
    int err = eddy_sleep((intptr_t)arg * MS);
    return err < 0 ? err : (intptr_t)arg;
}

static void count_cb(void *arg)
{
    (*(int *)arg)++;
}

static intptr_t phase_tasks(void *arg)
{
    (void)arg;
    eddy_loop *loop = eddy_loop_current();
    eddy_task *a = NULL, *b = NULL;
    eddy_timer *t = NULL;
    static int calls; /* a timer left pending by a failure may still fire */
    int err = 0;
    intptr_t v = 0;
    calls = 0;
    TRYP(a = eddy_spawn(loop, sleeper, (void *)2));
    TRYP(b = eddy_spawn(loop, sleeper, (void *)1000));
    TRY(eddy_call_soon(loop, count_cb, &calls));
    TRY(eddy_call_later(loop, 1 * MS, count_cb, &calls, NULL));
    TRY(eddy_call_later(loop, 1000 * MS, count_cb, &calls, &t));
    TRY(eddy_yield());
    err = eddy_task_join(a, &v); /* drops the reference, even on error */
    a = NULL;
    TRY(err);
    EXPECT(v == 2, -EPROTO);
    eddy_task_cancel(b);
    err = eddy_task_join(b, NULL);
    b = NULL;
    if (err != -ECANCELED) TRY(err ? err : -EPROTO);
    err = 0;
    TRY(eddy_sleep(2 * MS));
    EXPECT(calls == 2, -EPROTO);
out:
    if (t) eddy_timer_cancel(t);
    if (a) eddy_task_cancel(a), eddy_task_join(a, NULL);
    if (b) eddy_task_cancel(b), eddy_task_join(b, NULL);
    return err;
}

static void set_later(void *arg)
{
    eddy_future *f = arg;
    (void)eddy_future_set_result(f, 7);
    eddy_future_unref(f);
}

/* A future completed by a timer (which holds its own reference). */
static int future_later(eddy_future **out, int64_t delay)
{
    eddy_future *f = eddy_future_new(NULL);
    if (!f) return -ENOMEM;
    eddy_future_ref(f);
    int err = eddy_call_later(eddy_loop_current(), delay, set_later, f, NULL);
    if (err < 0) {
        eddy_future_unref(f);
        eddy_future_unref(f);
        return err;
    }
    *out = f;
    return 0;
}

static void on_done(eddy_future *f, void *arg)
{
    (void)f;
    (*(int *)arg)++;
}

static intptr_t phase_futures(void *arg)
{
    (void)arg;
    eddy_future *f[3] = {NULL, NULL, NULL};
    eddy_future *never = NULL;
    int err = 0, done = 0;
    intptr_t v = 0;
    TRY(future_later(&f[0], 1 * MS));
    TRY(future_later(&f[1], 2 * MS));
    TRY(future_later(&f[2], 3 * MS));
    TRY(eddy_future_on_done(f[0], on_done, &done));
    TRY(eddy_wait_any(f, 3, -1));
    TRY(eddy_gather(f, 3));
    TRY(eddy_await(f[2], &v));
    EXPECT(v == 7, -EPROTO);
    TRYP(never = eddy_future_new(NULL));
    err = eddy_await_timeout(never, 1 * MS, NULL);
    if (err != -ETIMEDOUT) TRY(err ? err : -EPROTO);
    err = 0;
    TRY(eddy_yield());
    EXPECT(done == 1, -EPROTO);
out:
    for (int i = 0; i < 3; i++)
        if (f[i]) eddy_future_unref(f[i]);
    if (never) eddy_future_unref(never);
    return err;
}

static intptr_t child_fail(void *arg)
{
    (void)arg;
    eddy_sleep(1 * MS);
    return -EIO;
}

static intptr_t phase_groups(void *arg)
{
    (void)arg;
    eddy_group *g = NULL;
    int err = 0;
    TRYP(g = eddy_group_new(NULL));
    for (intptr_t i = 1; i <= 3; i++)
        TRYP(eddy_group_spawn(g, sleeper, (void *)i));
    TRY(eddy_group_wait(g));
    eddy_group_free(g);
    /* a failing child cancels its sibling */
    TRYP(g = eddy_group_new(NULL));
    TRYP(eddy_group_spawn(g, sleeper, (void *)1000));
    TRYP(eddy_group_spawn(g, child_fail, NULL));
    err = eddy_group_wait(g);
    if (err != -EIO) TRY(err ? err : -EPROTO);
    err = 0;
out:
    if (g) eddy_group_free(g);
    return err;
}

/* ---- sockets --------------------------------------------------------------- */

#define ECHO_SIZE (64 * 1024)

/* Accepts one connection on the listener and echoes it until the peer
 * closes. */
static intptr_t echo_once(void *arg)
{
    eddy_sock *listener = arg, *conn = NULL;
    int err = 0;
    char buf[8192];
    TRY(eddy_accept(listener, &conn));
    for (;;) {
        ssize_t n = eddy_recv(conn, buf, sizeof(buf));
        TRY(n);
        if (n == 0) break;
        TRY(eddy_send(conn, buf, (size_t)n));
    }
out:
    if (conn) eddy_sock_close(conn);
    return err;
}

/* Sends ECHO_SIZE bytes on client, half-closes, reads them back. */
static int echo_client(eddy_sock *client)
{
    int err = 0;
    unsigned char *out = malloc(ECHO_SIZE), *in = malloc(ECHO_SIZE);
    if (!out || !in) {
        fprintf(stderr, "faults-workload: the workload's own malloc failed\n");
        exit(1);
    }
    for (size_t i = 0; i < ECHO_SIZE; i++)
        out[i] = (unsigned char)(i * 7 + 3);
    TRY(eddy_send(client, out, ECHO_SIZE));
    TRY(eddy_sock_shutdown(client, EDDY_SHUT_WR));
    size_t got = 0;
    while (got < ECHO_SIZE) {
        ssize_t n = eddy_recv(client, in + got, ECHO_SIZE - got);
        TRY(n);
        EXPECT(n > 0, -ECONNRESET);
        got += (size_t)n;
    }
    EXPECT(memcmp(in, out, ECHO_SIZE) == 0, -EPROTO);
out:
    free(out);
    free(in);
    return err;
}

static int finish_server(eddy_task *server, int err)
{
    intptr_t v = 0;
    if (err) eddy_task_cancel(server); /* it may wait for a client that never came */
    int jerr = eddy_task_join(server, &v);
    int serr = jerr < 0 ? jerr : (int)v;
    if (serr < 0 && !(err && serr == -ECANCELED)) note(serr, "the server task");
    return err ? err : serr;
}

/* arg: 0 for TCP over loopback, 1 for a Unix socket (abstract name). */
static intptr_t phase_stream(void *arg)
{
    bool unix_socket = arg != NULL;
    eddy_sock *listener = NULL, *client = NULL;
    eddy_task *server = NULL;
    int err = 0;
    char path[64];
    snprintf(path, sizeof(path), "@eddy-faults-%d", (int)getpid());
    if (unix_socket)
        TRY(eddy_unix_listen(&listener, path, 0));
    else
        TRY(eddy_tcp_listen(&listener, "127.0.0.1", 0, 0));
    TRYP(server = eddy_spawn(NULL, echo_once, listener));
    if (unix_socket)
        TRY(eddy_unix_connect(&client, path));
    else
        TRY(eddy_tcp_connect(&client, "127.0.0.1", (uint16_t)eddy_sock_port(listener)));
    TRY(echo_client(client));
out:
    if (client) eddy_sock_close(client);
    if (server) err = finish_server(server, err);
    if (listener) eddy_sock_close(listener);
    return err;
}

/* A name resolved in the pool (localhost: ::1, refused, then 127.0.0.1). */
static intptr_t phase_dns(void *arg)
{
    (void)arg;
    eddy_sock *listener = NULL, *client = NULL;
    int err = 0;
    TRY(eddy_tcp_listen(&listener, "127.0.0.1", 0, 0));
    TRY(eddy_tcp_connect(&client, "localhost", (uint16_t)eddy_sock_port(listener)));
out:
    if (client) eddy_sock_close(client);
    if (listener) eddy_sock_close(listener);
    return err;
}

struct remote {
    eddy_loop *loop;
    int err;        /* eddy_call_soon_threadsafe's answer */
    atomic_int ran; /* set by the callback, on the loop */
};

static void remote_cb(void *arg)
{
    atomic_store(&((struct remote *)arg)->ran, 1);
}

static void *remote_thread(void *arg)
{
    struct remote *r = arg;
    r->err = eddy_call_soon_threadsafe(r->loop, remote_cb, r);
    return NULL;
}

/* A callback queued from another thread. */
static intptr_t phase_threadsafe(void *arg)
{
    (void)arg;
    struct remote r = {.loop = eddy_loop_current()};
    pthread_t thread;
    int err = 0;
    if (pthread_create(&thread, NULL, remote_thread, &r) != 0) {
        fprintf(stderr, "faults-workload: pthread_create failed\n");
        exit(1);
    }
    pthread_join(thread, NULL);
    TRY(r.err);
    for (int i = 0; i < 1000 && !atomic_load(&r.ran); i++)
        TRY(eddy_sleep(1 * MS));
    EXPECT(atomic_load(&r.ran), -ETIMEDOUT);
out:
    return err;
}

static intptr_t phase_udp(void *arg)
{
    (void)arg;
    eddy_sock *a = NULL, *b = NULL;
    int err = 0;
    struct sockaddr_storage to, from;
    char buf[64];
    TRY(eddy_udp_bind(&a, "127.0.0.1", 0));
    TRY(eddy_udp_bind(&b, "127.0.0.1", 0));
    TRY(eddy_addr_parse(&to, "127.0.0.1", (uint16_t)eddy_sock_port(b)));
    TRY(eddy_sendto(a, "datagram", 8, (struct sockaddr *)&to));
    ssize_t n = eddy_recvfrom(b, buf, sizeof(buf), &from);
    TRY(n);
    EXPECT(n == 8 && memcmp(buf, "datagram", 8) == 0, -EPROTO);
out:
    if (a) eddy_sock_close(a);
    if (b) eddy_sock_close(b);
    return err;
}

/* ---- files and the pool ---------------------------------------------------- */

static intptr_t add_one(void *arg)
{
    return (intptr_t)arg + 1;
}

static intptr_t phase_files(void *arg)
{
    (void)arg;
    const char *tmp = getenv("TMPDIR");
    char dir[256], path[300], moved[300];
    snprintf(dir, sizeof(dir), "%s/eddy-faults-%d", tmp && *tmp ? tmp : "/tmp", (int)getpid());
    snprintf(path, sizeof(path), "%s/a", dir);
    snprintf(moved, sizeof(moved), "%s/b", dir);
    eddy_file *f = NULL;
    int err = 0;
    bool made = false, created = false, renamed = false;
    char buf[32];
    struct stat st;
    TRY(eddy_fs_mkdir(dir, 0700));
    made = true;
    TRY(eddy_file_open(&f, path, O_RDWR | O_CREAT | O_TRUNC, 0600));
    created = true;
    TRY(eddy_file_write(f, "hello, file", 11, 0));
    TRY(eddy_file_sync(f));
    ssize_t n = eddy_file_read(f, buf, sizeof(buf), 0);
    TRY(n);
    EXPECT(n == 11 && memcmp(buf, "hello, file", 11) == 0, -EPROTO);
    TRY(eddy_file_stat(f, &st));
    EXPECT(st.st_size == 11, -EPROTO);
    TRY(eddy_file_close(f));
    f = NULL;
    TRY(eddy_fs_rename(path, moved));
    renamed = true;
    TRY(eddy_fs_stat(moved, &st));
    intptr_t v = 0;
    TRY(eddy_to_thread(add_one, (void *)41, &v));
    EXPECT(v == 42, -EPROTO);
out:
    /* cleanup with plain calls: the next run must start from nothing */
    if (f) eddy_file_close(f);
    if (created) unlink(renamed ? moved : path);
    if (made) rmdir(dir);
    return err;
}

/* ---- the run ----------------------------------------------------------------- */

static const struct {
    const char *name;
    eddy_task_fn fn;
    void *arg;
} phases[] = {
    /* clang-format off */
    {"tasks", phase_tasks, NULL},
    {"futures", phase_futures, NULL},
    {"groups", phase_groups, NULL},
    {"tcp", phase_stream, NULL},
    {"unix", phase_stream, (void *)1},
    {"dns", phase_dns, NULL},
    {"threadsafe", phase_threadsafe, NULL},
    {"udp", phase_udp, NULL},
    {"files", phase_files, NULL},
    /* clang-format on */
};

static void fail(const char *what)
{
    fprintf(stderr, "faults-workload: %s: %s\n", phase, what);
    failures++;
}

/* Ends a phase: errors other than -ENOMEM only as its consequences. */
static void phase_end(void)
{
    if (phase_other && !phase_enomem) fail(phase_first_other);
    phase_enomem = phase_other = 0;
    phase_first_other[0] = 0;
}

static intptr_t run_phases(void *arg)
{
    (void)arg;
    for (size_t i = 0; i < sizeof(phases) / sizeof(phases[0]); i++) {
        phase = phases[i].name;
        eddy_task *t = eddy_spawn(NULL, phases[i].fn, phases[i].arg);
        if (!t) {
            note(-ENOMEM, "eddy_spawn(phase)");
        } else {
            intptr_t v = 0;
            int err = eddy_await_timeout(eddy_task_future(t), PHASE_LIMIT, &v);
            if (err == -ETIMEDOUT)
                fail("hung (over 10 s)");
            else if (err == -ENOMEM && phase_enomem == 0)
                note(err, "eddy_await_timeout(phase)");
            else if (err < 0 && err != -ENOMEM)
                note(err, "eddy_await_timeout(phase)");
            eddy_task_join(t, NULL);
        }
        phase_end();
    }
    return 0;
}

/* The follow-up on the same loop, with nothing failing any more: a task, a
 * timer and a future must all work. */
static intptr_t follow_up(void *arg)
{
    (void)arg;
    eddy_future *f = NULL;
    int err = future_later(&f, 1 * MS);
    if (err < 0) return err;
    intptr_t v = 0;
    err = eddy_await(f, &v);
    eddy_future_unref(f);
    if (err < 0) return err;
    return v == 7 ? 0 : -EPROTO;
}

int main(void)
{
    eddy_loop *loop = NULL;
    int err = eddy_loop_new(&loop, NULL);
    if (err < 0) {
        note(err, "eddy_loop_new");
        phase_end();
        /* the failure was the loop's own: a second one must work */
        if ((err = eddy_loop_new(&loop, NULL)) < 0) {
            fprintf(stderr, "faults-workload: eddy_loop_new again: %s\n", eddy_strerror(err));
            return 1;
        }
    }
    eddy_task *main_task = eddy_spawn(loop, run_phases, NULL);
    if (!main_task) {
        note(-ENOMEM, "eddy_spawn(main)");
        phase_end();
    } else {
        if ((err = eddy_loop_run(loop)) < 0) note(err, "eddy_loop_run");
        phase_end();
        if ((err = eddy_task_join(main_task, NULL)) < 0) note(err, "eddy_task_join(main)");
        phase_end();
    }

    /* When the failing allocation is the follow-up's own (none failed
     * before), it may fail with -ENOMEM once; the second must work. */
    phase = "follow-up";
    for (int attempt = 0; attempt < 2; attempt++) {
        intptr_t v = -1;
        eddy_task *t = eddy_spawn(loop, follow_up, NULL);
        if (!t) {
            err = -ENOMEM;
        } else if ((err = eddy_loop_run(loop)) < 0) {
            eddy_task_detach(t);
        } else if ((err = eddy_task_join(t, &v)) == 0) {
            err = (int)v;
        }
        if (err == 0) break;
        if (err != -ENOMEM || enomem_total || attempt) {
            fail(eddy_strerror(err));
            break;
        }
        note(err, "follow_up");
        phase_end();
    }
    eddy_loop_free(loop);
    printf("faults-workload: enomem=%d%s (backend %s)\n", enomem_total,
           enomem_total ? enomem_where : "",
           getenv("EDDY_BACKEND") ? getenv("EDDY_BACKEND") : "default");
    return failures ? 1 : 0;
}
