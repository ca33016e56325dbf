/* SPDX-License-Identifier: MIT */
/* Bad arguments get -EINVAL (or NULL/false where documented), task-only calls
 * outside a task get -EPERM, never a crash. */
#include <fcntl.h>
#include <limits.h>
#ifndef _WIN32
#include <sys/socket.h>
#endif

#include "helpers.h"

static intptr_t noop_task(void *arg)
{
    return 0;
}

static void noop_cb(void *arg) {}

static void noop_done_cb(eddy_future *f, void *arg) {}

/* ---- loop ------------------------------------------------------------------ */

Test(bad_input, loop_new, .timeout = TEST_TIMEOUT)
{
    cr_assert(eq(int, eddy_loop_new(NULL, NULL), -EINVAL));

    eddy_loop *loop = (eddy_loop *)1;
    eddy_loop_options unknown = {.backend = "no-such-backend"};
    cr_assert(eq(int, eddy_loop_new(&loop, &unknown), -ENOENT));

    eddy_loop_options bad_flags = {.flags = 1u << 30};
    cr_assert(eq(int, eddy_loop_new(&loop, &bad_flags), -EINVAL));

    /* "auto" and NULL options are fine. */
    eddy_loop_options automatic = {.backend = "auto"};
    cr_assert(eq(int, eddy_loop_new(&loop, &automatic), 0));
    eddy_loop_free(loop);
    cr_assert(eq(int, eddy_loop_new(&loop, NULL), 0));
    cr_assert(ne(ptr, (void *)eddy_loop_backend(loop), NULL));
    eddy_loop_free(loop);
}

Test(bad_input, loop_null, .timeout = TEST_TIMEOUT)
{
    cr_assert(eq(int, eddy_loop_run(NULL), -EINVAL));
    cr_assert(eq(i64, eddy_now(NULL), -EINVAL));
    eddy_loop_stop(NULL);
    eddy_loop_free(NULL);
    cr_assert(eq(ptr, eddy_loop_current(), NULL));
}

struct nested_run {
    eddy_loop *loop;
    int result;
};

static void run_inside_cb(void *arg)
{
    struct nested_run *n = arg;
    n->result = eddy_loop_run(n->loop);
}

Test(bad_input, run_while_running_is_ebusy, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_loop();
    struct nested_run n = {loop, 1};
    cr_assert(eq(int, eddy_call_soon(loop, run_inside_cb, &n), 0));
    cr_assert(eq(int, eddy_loop_run(loop), 0));
    cr_assert(eq(int, n.result, -EBUSY));
    eddy_loop_free(loop);
}

Test(bad_input, callbacks_and_timers, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_loop();
    eddy_timer *t = NULL;
    cr_assert(eq(int, eddy_call_soon(NULL, noop_cb, NULL), -EINVAL));
    cr_assert(eq(int, eddy_call_soon(loop, NULL, NULL), -EINVAL));
    cr_assert(eq(int, eddy_call_soon_threadsafe(NULL, noop_cb, NULL), -EINVAL));
    cr_assert(eq(int, eddy_call_soon_threadsafe(loop, NULL, NULL), -EINVAL));
    cr_assert(eq(int, eddy_call_later(NULL, 0, noop_cb, NULL, &t), -EINVAL));
    cr_assert(eq(int, eddy_call_later(loop, 0, NULL, NULL, &t), -EINVAL));
    cr_assert(eq(int, eddy_call_later(loop, -1, noop_cb, NULL, &t), -EINVAL));
    cr_assert(eq(int, eddy_call_later(loop, INT64_MIN, noop_cb, NULL, NULL), -EINVAL));
    cr_assert(eq(int, eddy_timer_cancel(NULL), -EINVAL));
    /* Nothing was queued by the rejected calls. */
    int64_t start = wall_ns();
    cr_assert(eq(int, eddy_loop_run(loop), 0));
    cr_assert(lt(i64, wall_ns() - start, 2 * NS_PER_SEC));
    eddy_loop_free(loop);
}

/* An INT64_MAX delay must not wrap round to a deadline in the past: the loop
 * runs, a 1 ms timer fires, and the huge one has not. */
struct huge_delay {
    eddy_timer *huge;
    int huge_fired;
    int huge_fired_before_short;
    int cancel_result;
};

static void huge_fired_cb(void *arg)
{
    ((struct huge_delay *)arg)->huge_fired++;
}

static void short_fired_cb(void *arg)
{
    struct huge_delay *h = arg;
    h->huge_fired_before_short = h->huge_fired;
    h->cancel_result = eddy_timer_cancel(h->huge);
}

Test(bad_input, huge_delay_does_not_overflow, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_loop();
    struct huge_delay h = {.cancel_result = 1};
    cr_assert(eq(int, eddy_call_later(loop, INT64_MAX, huge_fired_cb, &h, &h.huge), 0));
    cr_assert(eq(int, eddy_call_later(loop, NS_PER_MS, short_fired_cb, &h, NULL), 0));
    int64_t start = wall_ns();
    cr_assert(eq(int, eddy_loop_run(loop), 0));
    cr_assert(lt(i64, wall_ns() - start, 2 * NS_PER_SEC));
    cr_assert(eq(int, h.huge_fired_before_short, 0),
              "an INT64_MAX delay fired (deadline overflow)");
    cr_assert(eq(int, h.cancel_result, 0), "the huge timer was no longer pending");
    cr_assert(eq(int, h.huge_fired, 0));
    eddy_loop_free(loop);
}

Test(bad_input, run_null_main, .timeout = TEST_TIMEOUT)
{
    intptr_t v = 0;
    cr_assert(eq(int, eddy_run(NULL, NULL, &v), -EINVAL));
}

/* ---- futures ------------------------------------------------------------------ */

Test(bad_input, futures_null, .timeout = TEST_TIMEOUT)
{
    intptr_t v = 0;
    cr_assert(eq(ptr, eddy_future_new(NULL), NULL), "a future without any loop");
    eddy_future_ref(NULL);
    eddy_future_unref(NULL);
    cr_assert(eq(int, eddy_future_set_result(NULL, 1), -EINVAL));
    cr_assert(eq(int, eddy_future_set_error(NULL, -EIO), -EINVAL));
    cr_assert(not(eddy_future_cancel(NULL)));
    cr_assert(not(eddy_future_done(NULL)));
    cr_assert(eq(int, eddy_future_result(NULL, &v), -EINVAL));
    cr_assert(eq(int, eddy_future_on_done(NULL, noop_done_cb, NULL), -EINVAL));

    eddy_loop *loop = new_loop();
    eddy_future *f = eddy_future_new(loop);
    cr_assert(ne(ptr, f, NULL));
    cr_assert(eq(int, eddy_future_on_done(f, NULL, NULL), -EINVAL));
    eddy_future_unref(f);
    eddy_loop_free(loop);
}

Test(bad_input, set_on_task_future, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_loop();
    eddy_task *t = eddy_spawn(loop, task_return_arg, (void *)(intptr_t)5);
    cr_assert(ne(ptr, t, NULL));
    eddy_future *f = eddy_task_future(t);
    cr_assert(eq(int, eddy_future_set_result(f, 1), -EINVAL));
    cr_assert(eq(int, eddy_future_set_error(f, -EIO), -EINVAL));
    cr_assert(eq(int, eddy_loop_run(loop), 0));
    /* Still -EINVAL once done, and the outcome is the task's own. */
    cr_assert(eq(int, eddy_future_set_result(f, 1), -EINVAL));
    intptr_t v = 0;
    cr_assert(eq(int, eddy_task_join(t, &v), 0));
    cr_assert(eq(iptr, v, 5));
    eddy_loop_free(loop);
}

/* ---- tasks ---------------------------------------------------------------------- */

Test(bad_input, tasks_null, .timeout = TEST_TIMEOUT)
{
    intptr_t v = 0;
    cr_assert(eq(ptr, eddy_spawn(NULL, noop_task, NULL), NULL), "spawn without any loop");
    eddy_loop *loop = new_loop();
    cr_assert(eq(ptr, eddy_spawn(loop, NULL, NULL), NULL));
    cr_assert(eq(int, eddy_task_join(NULL, &v), -EINVAL));
    eddy_task_detach(NULL);
    cr_assert(not(eddy_task_cancel(NULL)));
    cr_assert(eq(ptr, eddy_task_current(), NULL));
    eddy_shield_begin(); /* outside a task: no effect, no crash */
    eddy_shield_end();
    eddy_shield_end();
    cr_assert(eq(int, eddy_loop_run(loop), 0));
    eddy_loop_free(loop);
}

/* ---- task-only calls outside a task --------------------------------------------- */

static eddy_group *make_group(eddy_loop *loop)
{
    eddy_group *g = eddy_group_new(loop);
    cr_assert(ne(ptr, g, NULL));
    return g;
}

static intptr_t return_seven(void *arg)
{
    return 7;
}

/* Every task-only call, made from the test's own thread and from a plain
 * callback on the running loop. */
struct outside {
    eddy_loop *loop;
    int sleep, yield, await, await_timeout, gather, wait_any, group_wait, to_thread, join;
};

static void call_task_only(struct outside *o)
{
    eddy_future *f = eddy_future_new(o->loop);
    cr_assert(ne(ptr, f, NULL));
    eddy_future *fs[1] = {f};
    eddy_group *g = make_group(o->loop);
    intptr_t v = 0;
    o->sleep = eddy_sleep(0);
    o->yield = eddy_yield();
    o->await = eddy_await(f, &v);
    o->await_timeout = eddy_await_timeout(f, 0, &v);
    o->gather = eddy_gather(fs, 1);
    o->wait_any = eddy_wait_any(fs, 1, 0);
    o->group_wait = eddy_group_wait(g);
    o->to_thread = eddy_to_thread(return_seven, NULL, &v);
    cr_assert(not(eddy_future_done(f)), "a rejected call touched the future");
    eddy_group_free(g);
    eddy_future_unref(f);
}

static void check_all_eperm(const struct outside *o)
{
    cr_assert(eq(int, o->sleep, -EPERM));
    cr_assert(eq(int, o->yield, -EPERM));
    cr_assert(eq(int, o->await, -EPERM));
    cr_assert(eq(int, o->await_timeout, -EPERM));
    cr_assert(eq(int, o->gather, -EPERM));
    cr_assert(eq(int, o->wait_any, -EPERM));
    cr_assert(eq(int, o->group_wait, -EPERM));
    cr_assert(eq(int, o->to_thread, -EPERM));
}

Test(bad_input, task_only_calls_outside_loop_are_eperm, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_loop();
    struct outside o = {.loop = loop};
    call_task_only(&o);
    check_all_eperm(&o);
    eddy_loop_free(loop);
}

static void task_only_cb(void *arg)
{
    call_task_only(arg);
}

Test(bad_input, task_only_calls_in_callback_are_eperm, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_loop();
    struct outside o = {.loop = loop};
    cr_assert(eq(int, eddy_call_soon(loop, task_only_cb, &o), 0));
    cr_assert(eq(int, eddy_loop_run(loop), 0));
    check_all_eperm(&o);
    eddy_loop_free(loop);
}

/* ---- NULL arguments inside a task ----------------------------------------------- */

struct inside {
    int sleep_negative, await_null, await_timeout_null, await_self, join_self;
    int gather_null, wait_any_null, wait_any_null_entry, group_wait_null, to_thread_null;
    eddy_task *group_spawn_null_group, *group_spawn_null_fn;
};

static intptr_t null_args_task(void *arg)
{
    struct inside *in = arg;
    intptr_t v = 0;
    eddy_future *fs[2] = {NULL, NULL};
    in->sleep_negative = eddy_sleep(-1);
    in->await_null = eddy_await(NULL, &v);
    in->await_timeout_null = eddy_await_timeout(NULL, 10, &v);
    in->await_self = eddy_await(eddy_task_future(eddy_task_current()), &v);
    in->join_self = eddy_task_join(eddy_task_current(), &v);
    in->gather_null = eddy_gather(NULL, 2);
    in->wait_any_null = eddy_wait_any(NULL, 2, 0);
    in->wait_any_null_entry = eddy_wait_any(fs, 2, 0);
    in->group_wait_null = eddy_group_wait(NULL);
    in->to_thread_null = eddy_to_thread(NULL, NULL, &v);
    in->group_spawn_null_group = eddy_group_spawn(NULL, noop_task, NULL);
    eddy_group *g = eddy_group_new(NULL);
    if (!g) return -ENOMEM;
    in->group_spawn_null_fn = eddy_group_spawn(g, NULL, NULL);
    eddy_group_free(g);
    eddy_group_free(NULL);
    /* Still a healthy task after all that. */
    return eddy_sleep(NS_PER_MS) == 0 ? 1 : -EPROTO;
}

Test(bad_input, null_arguments_inside_task, .timeout = TEST_TIMEOUT)
{
    struct inside in;
    memset(&in, 0x55, sizeof(in));
    intptr_t v = 0;
    cr_assert(eq(int, run_virtual(null_args_task, &in, &v), 0));
    cr_assert(eq(iptr, v, 1));
    cr_assert(eq(int, in.sleep_negative, -EINVAL));
    cr_assert(eq(int, in.await_null, -EINVAL));
    cr_assert(eq(int, in.await_timeout_null, -EINVAL));
    cr_assert(eq(int, in.await_self, -EDEADLK), "a task awaiting itself would never wake");
    cr_assert(eq(int, in.join_self, -EDEADLK));
    cr_assert(eq(int, in.gather_null, -EINVAL));
    cr_assert(eq(int, in.wait_any_null, -EINVAL));
    cr_assert(eq(int, in.wait_any_null_entry, -EINVAL));
    cr_assert(eq(int, in.group_wait_null, -EINVAL));
    cr_assert(eq(int, in.to_thread_null, -EINVAL));
    cr_assert(eq(ptr, in.group_spawn_null_group, NULL));
    cr_assert(eq(ptr, in.group_spawn_null_fn, NULL));
}

Test(bad_input, groups_without_loop, .timeout = TEST_TIMEOUT)
{
    cr_assert(eq(ptr, eddy_group_new(NULL), NULL), "a group without any loop");
    cr_assert(eq(ptr, eddy_group_spawn(NULL, noop_task, NULL), NULL));
    eddy_group_free(NULL);
}

/* ---- errors ------------------------------------------------------------------------ */

Test(bad_input, strerror, .timeout = TEST_TIMEOUT)
{
    static const int known[] = {0,          -EINVAL,   -ENOMEM, -EPERM,      -ECANCELED,
                                -ETIMEDOUT, -EALREADY, -EAGAIN, -ENOTSUP,    -ENOENT,
                                -EBUSY,     -EIO,      -EPIPE,  -ECONNRESET, -EDEADLK};
    const char *unknown = eddy_strerror(-4000);
    cr_assert(ne(ptr, (void *)unknown, NULL));
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
        const char *s = eddy_strerror(known[i]);
        cr_assert(ne(ptr, (void *)s, NULL), "code %d", known[i]);
        cr_assert(strlen(s) > 0, "code %d", known[i]);
        if (known[i] != 0)
            cr_assert(ne(str, (char *)s, (char *)unknown), "code %d unnamed", known[i]);
    }
    /* Distinct codes get distinct names. */
    cr_assert(ne(str, (char *)eddy_strerror(-EINVAL), (char *)eddy_strerror(-ECANCELED)));
    cr_assert(ne(str, (char *)eddy_strerror(0), (char *)eddy_strerror(-EINVAL)));
    /* Outside the error range: still a string. */
    static const int odd[] = {1, 12345, -4096, -100000, INT32_MIN, INT32_MAX};
    for (size_t i = 0; i < sizeof(odd) / sizeof(odd[0]); i++) {
        const char *s = eddy_strerror(odd[i]);
        cr_assert(ne(ptr, (void *)s, NULL), "code %d", odd[i]);
    }
}

Test(bad_input, is_error_macro, .timeout = TEST_TIMEOUT)
{
    int on_stack = 0;
    cr_assert(eq(int, EDDY_IS_ERROR(-1), 1));
    cr_assert(eq(int, EDDY_IS_ERROR(-4095), 1));
    cr_assert(eq(int, EDDY_IS_ERROR(-4096), 0));
    cr_assert(eq(int, EDDY_IS_ERROR(0), 0));
    cr_assert(eq(int, EDDY_IS_ERROR(1), 0));
    cr_assert(eq(int, EDDY_IS_ERROR((intptr_t)&on_stack), 0));
}

/* ---- lengths beyond SSIZE_MAX ------------------------------------------------------ */

/* A count that the ssize_t result could not hold is -EINVAL for reads as for
 * writes, before anything is done with the buffer. */
struct huge_lengths {
    ssize_t file_read, file_write, recv, send, recvfrom, sendto;
};

static intptr_t huge_lengths_task(void *arg)
{
    struct huge_lengths *h = arg;
    char path[256], buf[16] = "x";
    temp_path(path, sizeof(path), "eddy-bad-input-huge-len");
    eddy_file *f = NULL;
    int err = eddy_file_open(&f, path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (err < 0) return err;
    h->file_read = eddy_file_read(f, buf, SIZE_MAX, 0);
    h->file_write = eddy_file_write(f, buf, SIZE_MAX, 0);
    cr_expect(eq(int, eddy_file_close(f), 0));
    cr_expect(eq(int, eddy_fs_unlink(path), 0));

    eddy_sock *listener = NULL, *client = NULL, *server = NULL, *udp = NULL;
    if ((err = eddy_tcp_listen(&listener, "127.0.0.1", 0, 1)) < 0) return err;
    if ((err = eddy_tcp_connect(&client, "127.0.0.1", (uint16_t)eddy_sock_port(listener))) < 0)
        return err;
    if ((err = eddy_accept(listener, &server)) < 0) return err;
    h->recv = eddy_recv(server, buf, SIZE_MAX);
    h->send = eddy_send(client, buf, SIZE_MAX);
    if ((err = eddy_udp_bind(&udp, "127.0.0.1", 0)) < 0) return err;
    struct sockaddr_storage to;
    cr_assert(eq(int, eddy_addr_parse(&to, "127.0.0.1", (uint16_t)eddy_sock_port(udp)), 0));
    h->recvfrom = eddy_recvfrom(udp, buf, SIZE_MAX, NULL);
    h->sendto = eddy_sendto(udp, buf, SIZE_MAX, (const struct sockaddr *)&to);
    /* Nothing was sent: a real byte is the first thing the server reads. */
    cr_expect(eq(i64, (int64_t)eddy_send(client, "y", 1), 1));
    cr_expect(eq(i64, (int64_t)eddy_recv(server, buf, sizeof(buf)), 1));
    cr_expect(eq(int, buf[0], 'y'));
    eddy_sock_close(udp);
    eddy_sock_close(server);
    eddy_sock_close(client);
    eddy_sock_close(listener);
    return 0;
}

Test(bad_input, lengths_beyond_ssize_max, .timeout = TEST_TIMEOUT)
{
    struct huge_lengths h;
    memset(&h, 0x55, sizeof(h));
    eddy_loop *loop = new_loop();
    intptr_t v = -1;
    cr_assert(eq(int, run_task(loop, huge_lengths_task, &h, &v), 0));
    eddy_loop_free(loop);
    cr_assert(eq(iptr, v, 0), "%s", eddy_strerror((int)v));
    cr_assert(eq(i64, (int64_t)h.file_read, -EINVAL));
    cr_assert(eq(i64, (int64_t)h.file_write, -EINVAL));
    cr_assert(eq(i64, (int64_t)h.recv, -EINVAL));
    cr_assert(eq(i64, (int64_t)h.send, -EINVAL));
    cr_assert(eq(i64, (int64_t)h.recvfrom, -EINVAL));
    cr_assert(eq(i64, (int64_t)h.sendto, -EINVAL));
}
