/* SPDX-License-Identifier: MIT */
/* Tasks: spawn and join, outcomes, awaiting from nested C calls, stacks,
 * scheduling, eddy_run and the endings of loops with live tasks. */
#include "helpers.h"

#define MANY 100000

/* ---- spawn and join ------------------------------------------------------ */

static intptr_t double_arg(void *arg)
{
    return 2 * (intptr_t)arg;
}

static intptr_t spawn_all_then_join(void *arg)
{
    eddy_task **tasks = malloc(MANY * sizeof(*tasks));
    if (!tasks) return -ENOMEM;
    for (intptr_t i = 0; i < MANY; i++) {
        tasks[i] = eddy_spawn(NULL, double_arg, (void *)i);
        if (!tasks[i]) return -ENOMEM;
    }
    int64_t sum = 0;
    for (intptr_t i = 0; i < MANY; i++) {
        intptr_t v = -1;
        int err = eddy_task_join(tasks[i], &v);
        if (err < 0) return err;
        if (v != 2 * i) return -EPROTO;
        sum += v;
    }
    free(tasks);
    return sum == (int64_t)MANY * (MANY - 1) ? 1 : -EPROTO;
}

Test(tasks, spawn_and_join_100000, .timeout = TEST_TIMEOUT)
{
    intptr_t result = 0;
    cr_assert(eq(int, run_virtual(spawn_all_then_join, NULL, &result), 0));
    cr_assert(eq(iptr, result, 1));
}

static intptr_t spawn_join_one_by_one(void *arg)
{
    for (intptr_t i = 0; i < MANY; i++) {
        eddy_task *t = eddy_spawn(NULL, double_arg, (void *)i);
        if (!t) return -ENOMEM;
        intptr_t v = -1;
        int err = eddy_task_join(t, &v);
        if (err < 0) return err;
        if (v != 2 * i) return -EPROTO;
    }
    return 1;
}

Test(tasks, spawn_and_join_one_by_one_100000, .timeout = TEST_TIMEOUT)
{
    intptr_t result = 0;
    cr_assert(eq(int, run_virtual(spawn_join_one_by_one, NULL, &result), 0));
    cr_assert(eq(iptr, result, 1));
}

Test(tasks, spawn_from_outside_and_join_after_run, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_loop();
    eddy_task **tasks = malloc(MANY * sizeof(*tasks));
    cr_assert(ne(ptr, tasks, NULL));
    for (intptr_t i = 0; i < MANY; i++) {
        tasks[i] = eddy_spawn(loop, double_arg, (void *)i);
        cr_assert(ne(ptr, tasks[i], NULL));
    }
    cr_assert(eq(int, eddy_loop_run(loop), 0));
    for (intptr_t i = 0; i < MANY; i++) {
        intptr_t v = -1;
        cr_assert(eq(int, eddy_task_join(tasks[i], &v), 0));
        cr_assert(eq(iptr, v, 2 * i));
    }
    free(tasks);
    eddy_loop_free(loop);
}

/* ---- outcomes ---------------------------------------------------------------- */

Test(tasks, result_is_returned_by_join, .timeout = TEST_TIMEOUT)
{
    intptr_t result = 0;
    cr_assert(eq(int, run_virtual(task_return_arg, (void *)(intptr_t)4711, &result), 0));
    cr_assert(eq(iptr, result, 4711));
    cr_assert(eq(int, run_virtual(task_return_arg, (void *)(intptr_t)-4096, &result), 0),
              "-4096 is outside the error range and so a result");
    cr_assert(eq(iptr, result, -4096));
}

Test(tasks, pointer_result, .timeout = TEST_TIMEOUT)
{
    static int object;
    intptr_t result = 0;
    cr_assert(eq(int, run_virtual(task_return_arg, &object, &result), 0));
    cr_assert(eq(ptr, (void *)result, &object));
}

Test(tasks, error_outcome, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_virtual_loop();
    intptr_t result = 1234;
    cr_assert(eq(int, run_task(loop, task_return_arg, (void *)(intptr_t)-EIO, &result), -EIO));
    cr_assert(eq(int, run_task(loop, task_return_arg, (void *)(intptr_t)-4095, &result), -4095));
    eddy_loop_free(loop);
}

Test(tasks, task_future_holds_outcome, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_virtual_loop();
    eddy_task *ok = eddy_spawn(loop, task_return_arg, (void *)(intptr_t)7);
    eddy_task *bad = eddy_spawn(loop, task_return_arg, (void *)(intptr_t)-ENOENT);
    cr_assert(ok && bad);
    cr_assert(not(eddy_future_done(eddy_task_future(ok))));
    cr_assert(eq(int, eddy_loop_run(loop), 0));
    intptr_t v = 0;
    cr_assert(eq(int, eddy_future_result(eddy_task_future(ok), &v), 0));
    cr_assert(eq(iptr, v, 7));
    cr_assert(eq(int, eddy_future_result(eddy_task_future(bad), &v), -ENOENT));
    cr_assert(eq(int, eddy_task_join(ok, &v), 0));
    cr_assert(eq(int, eddy_task_join(bad, &v), -ENOENT));
    eddy_loop_free(loop);
}

/* ---- awaiting from nested plain C functions ---------------------------------- */

static __attribute__((noinline)) intptr_t nested_wait(int depth)
{
    if (depth > 0) {
        intptr_t below = nested_wait(depth - 1);
        return below < 0 ? below : below + 1;
    }
    int err = eddy_sleep(3 * NS_PER_MS);
    if (err < 0) return err;
    eddy_future *f = eddy_future_new(NULL);
    if (!f) return -ENOMEM;
    set_result_later(NULL, f, 2 * NS_PER_MS, 100);
    intptr_t v = 0;
    err = eddy_await(f, &v);
    eddy_future_unref(f);
    if (err < 0) return err;
    err = eddy_yield();
    return err < 0 ? err : v;
}

static intptr_t nested_task(void *arg)
{
    int64_t start = loop_now();
    intptr_t v = nested_wait(6);
    if (loop_now() - start != 5 * NS_PER_MS) return -EPROTO;
    return v;
}

Test(tasks, await_from_nested_functions, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_virtual_loop();
    /* Two at once, so their stacks really interleave. */
    eddy_task *a = eddy_spawn(loop, nested_task, NULL);
    eddy_task *b = eddy_spawn(loop, nested_task, NULL);
    cr_assert(a && b);
    cr_assert(eq(int, eddy_loop_run(loop), 0));
    intptr_t va = 0, vb = 0;
    cr_assert(eq(int, eddy_task_join(a, &va), 0));
    cr_assert(eq(int, eddy_task_join(b, &vb), 0));
    cr_assert(eq(iptr, va, 106));
    cr_assert(eq(iptr, vb, 106));
    eddy_loop_free(loop);
}

/* ---- stacks ---------------------------------------------------------------------- */

#define FRAME_BYTES 1024

/* About FRAME_BYTES of stack per level; awaits at the bottom, so the deep
 * stack is suspended and resumed. */
static __attribute__((noinline)) uint64_t recurse(int depth)
{
    volatile unsigned char frame[FRAME_BYTES];
    for (int i = 0; i < FRAME_BYTES; i++)
        frame[i] = (unsigned char)(depth + i);
    uint64_t sum;
    if (depth > 0) {
        sum = recurse(depth - 1);
    } else {
        sum = 0;
        if (eddy_yield() < 0 || eddy_sleep(NS_PER_MS) < 0) return UINT64_MAX / 2;
    }
    for (int i = 0; i < FRAME_BYTES; i++)
        sum += frame[i];
    return sum;
}

static uint64_t recurse_expected(int depth)
{
    uint64_t sum = 0;
    for (int d = 0; d <= depth; d++)
        for (int i = 0; i < FRAME_BYTES; i++)
            sum += (unsigned char)(d + i);
    return sum;
}

static intptr_t recurse_task(void *arg)
{
    int depth = (int)(intptr_t)arg;
    return recurse(depth) == recurse_expected(depth) ? depth : -EPROTO;
}

Test(tasks, deep_recursion_on_default_stack, .timeout = TEST_TIMEOUT)
{
    /* ~100 KiB of the 256 KiB default; two tasks at once. */
    eddy_loop *loop = new_virtual_loop();
    eddy_task *a = eddy_spawn(loop, recurse_task, (void *)(intptr_t)100);
    eddy_task *b = eddy_spawn(loop, recurse_task, (void *)(intptr_t)100);
    cr_assert(a && b);
    cr_assert(eq(int, eddy_loop_run(loop), 0));
    intptr_t v = 0;
    cr_assert(eq(int, eddy_task_join(a, &v), 0));
    cr_assert(eq(iptr, v, 100));
    cr_assert(eq(int, eddy_task_join(b, &v), 0));
    cr_assert(eq(iptr, v, 100));
    eddy_loop_free(loop);
}

Test(tasks, deeper_recursion_with_larger_stack, .timeout = TEST_TIMEOUT)
{
    /* ~3 MiB of recursion on 8 MiB stacks. */
    eddy_loop *loop = loop_with(EDDY_LOOP_VIRTUAL_TIME, 8 * 1024 * 1024);
    intptr_t v = 0;
    cr_assert(eq(int, run_task(loop, recurse_task, (void *)(intptr_t)3000, &v), 0));
    cr_assert(eq(iptr, v, 3000));
    eddy_loop_free(loop);
}

/* ---- scheduling ---------------------------------------------------------------- */

static intptr_t set_flag(void *arg)
{
    *(int *)arg = 1;
    return 0;
}

static intptr_t spawn_is_not_inline(void *arg)
{
    int flag = 0;
    eddy_task *t = eddy_spawn(NULL, set_flag, &flag);
    if (!t) return -ENOMEM;
    int before_yield = flag;
    if (eddy_yield() < 0) return -EPROTO;
    int after_yield = flag;
    intptr_t v;
    int err = eddy_task_join(t, &v);
    if (err < 0) return err;
    return before_yield == 0 && after_yield == 1 ? 1 : -EPROTO;
}

Test(tasks, spawn_starts_on_next_iteration, .timeout = TEST_TIMEOUT)
{
    intptr_t result = 0;
    cr_assert(eq(int, run_virtual(spawn_is_not_inline, NULL, &result), 0));
    cr_assert(eq(iptr, result, 1));

    /* From outside any task, too: nothing runs before the loop does. */
    eddy_loop *loop = new_virtual_loop();
    int flag = 0;
    eddy_task *t = eddy_spawn(loop, set_flag, &flag);
    cr_assert(ne(ptr, t, NULL));
    cr_assert(eq(int, flag, 0));
    cr_assert(not(eddy_future_done(eddy_task_future(t))));
    cr_assert(eq(int, eddy_loop_run(loop), 0));
    cr_assert(eq(int, flag, 1));
    cr_assert(eq(int, eddy_task_join(t, NULL), 0));
    eddy_loop_free(loop);
}

static eddy_task *spawned_task;

static intptr_t check_current(void *arg)
{
    if (eddy_task_current() != spawned_task) return -EPROTO;
    if (eddy_sleep(NS_PER_MS) < 0) return -EPROTO;
    if (eddy_task_current() != spawned_task) return -EPROTO;
    return 1;
}

Test(tasks, task_current_inside_and_outside, .timeout = TEST_TIMEOUT)
{
    cr_assert(eq(ptr, eddy_task_current(), NULL));
    eddy_loop *loop = new_virtual_loop();
    spawned_task = eddy_spawn(loop, check_current, NULL);
    eddy_task *other = eddy_spawn(loop, task_sleep_arg, (void *)(intptr_t)NS_PER_MS);
    cr_assert(spawned_task && other);
    cr_assert(eq(ptr, eddy_task_current(), NULL));
    cr_assert(eq(int, eddy_loop_run(loop), 0));
    cr_assert(eq(ptr, eddy_task_current(), NULL));
    intptr_t v = 0;
    cr_assert(eq(int, eddy_task_join(spawned_task, &v), 0));
    cr_assert(eq(iptr, v, 1));
    cr_assert(eq(int, eddy_task_join(other, NULL), 0));
    eddy_loop_free(loop);
}

struct yielder {
    struct trace *trace;
    char name;
};

static intptr_t yield_loop(void *arg)
{
    struct yielder *y = arg;
    for (int i = 0; i < 4; i++) {
        trace_add(y->trace, y->name);
        int err = eddy_yield();
        if (err < 0) return err;
    }
    return 0;
}

Test(tasks, yield_interleaves_tasks, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_virtual_loop();
    struct trace tr = {.len = 0};
    struct yielder a = {&tr, 'A'}, b = {&tr, 'B'}, c = {&tr, 'C'};
    eddy_task *ta = eddy_spawn(loop, yield_loop, &a);
    eddy_task *tb = eddy_spawn(loop, yield_loop, &b);
    eddy_task *tc = eddy_spawn(loop, yield_loop, &c);
    cr_assert(ta && tb && tc);
    cr_assert(eq(int, eddy_loop_run(loop), 0));
    cr_assert(eq(str, tr.buf, "ABCABCABCABC"));
    cr_assert(eq(int, eddy_task_join(ta, NULL), 0));
    cr_assert(eq(int, eddy_task_join(tb, NULL), 0));
    cr_assert(eq(int, eddy_task_join(tc, NULL), 0));
    eddy_loop_free(loop);
}

static intptr_t join_done_task(void *arg)
{
    eddy_task *t = eddy_spawn(NULL, task_return_arg, (void *)(intptr_t)21);
    if (!t) return -ENOMEM;
    if (eddy_sleep(NS_PER_MS) < 0) return -EPROTO;
    if (!eddy_future_done(eddy_task_future(t))) return -EPROTO;
    intptr_t v = 0;
    int err = eddy_task_join(t, &v);
    return err < 0 ? err : v;
}

Test(tasks, join_task_already_done, .timeout = TEST_TIMEOUT)
{
    intptr_t result = 0;
    cr_assert(eq(int, run_virtual(join_done_task, NULL, &result), 0));
    cr_assert(eq(iptr, result, 21));
}

static intptr_t await_task_future(void *arg)
{
    eddy_task *t = eddy_spawn(NULL, task_sleep_arg, (void *)(intptr_t)(4 * NS_PER_MS));
    if (!t) return -ENOMEM;
    intptr_t v = 0;
    int err = eddy_await(eddy_task_future(t), &v);
    if (err < 0) return err;
    intptr_t again = 0;
    err = eddy_task_join(t, &again);
    if (err < 0) return err;
    return v == again ? v : -EPROTO;
}

Test(tasks, await_a_tasks_future, .timeout = TEST_TIMEOUT)
{
    intptr_t result = 0;
    cr_assert(eq(int, run_virtual(await_task_future, NULL, &result), 0));
    cr_assert(eq(iptr, result, 4 * NS_PER_MS));
}

Test(tasks, join_outside_task_on_pending_task, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_virtual_loop();
    eddy_task *t = eddy_spawn(loop, task_return_arg, (void *)(intptr_t)3);
    cr_assert(ne(ptr, t, NULL));
    intptr_t v = 0;
    cr_assert(eq(int, eddy_task_join(t, &v), -EPERM));
    /* The reference was kept: the task can still be joined once done. */
    cr_assert(eq(int, eddy_loop_run(loop), 0));
    cr_assert(eq(int, eddy_task_join(t, &v), 0));
    cr_assert(eq(iptr, v, 3));
    eddy_loop_free(loop);
}

Test(tasks, detached_task_runs_to_its_end, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_virtual_loop();
    int flag = 0;
    eddy_task *t = eddy_spawn(loop, set_flag, &flag);
    cr_assert(ne(ptr, t, NULL));
    eddy_task_detach(t);
    cr_assert(eq(int, eddy_loop_run(loop), 0));
    cr_assert(eq(int, flag, 1));
    eddy_loop_free(loop);
}

/* ---- eddy_run ------------------------------------------------------------------- */

static intptr_t main_returns(void *arg)
{
    if (!eddy_loop_current() || !eddy_task_current()) return -EPROTO;
    if (eddy_sleep(NS_PER_MS) < 0) return -EPROTO;
    return (intptr_t)arg;
}

Test(tasks, run_returns_main_result, .timeout = TEST_TIMEOUT)
{
    intptr_t result = 0;
    cr_assert(eq(int, eddy_run(main_returns, (void *)(intptr_t)77, &result), 0));
    cr_assert(eq(iptr, result, 77));
    cr_assert(eq(int, eddy_run(main_returns, (void *)(intptr_t)-EIO, &result), -EIO));
    cr_assert(eq(ptr, eddy_loop_current(), NULL));
}

struct leftover {
    int sleep_result;
    int cleanup_sleep_result;
    int ended;
};

static intptr_t leftover_child(void *arg)
{
    struct leftover *l = arg;
    l->sleep_result = eddy_sleep(NS_PER_HOUR);
    /* Cleanup that must await runs in a shield. */
    eddy_shield_begin();
    l->cleanup_sleep_result = eddy_sleep(5 * NS_PER_MS);
    eddy_shield_end();
    l->ended = 1;
    return l->sleep_result;
}

static intptr_t main_leaves_children(void *arg)
{
    struct leftover *l = arg;
    for (int i = 0; i < 3; i++) {
        eddy_task *t = eddy_spawn(NULL, leftover_child, &l[i]);
        if (!t) return -ENOMEM;
        eddy_task_detach(t);
    }
    /* Let the children start and suspend. */
    if (eddy_sleep(NS_PER_MS) < 0) return -EPROTO;
    return 5;
}

Test(tasks, run_cancels_leftover_tasks_and_ends_them, .timeout = TEST_TIMEOUT)
{
    struct leftover l[3];
    for (int i = 0; i < 3; i++)
        l[i] = (struct leftover){1, 1, 0};
    intptr_t result = 0;
    int64_t start = wall_ns();
    cr_assert(eq(int, eddy_run(main_leaves_children, l, &result), 0));
    cr_assert(eq(iptr, result, 5));
    for (int i = 0; i < 3; i++) {
        cr_assert(eq(int, l[i].sleep_result, -ECANCELED), "child %d", i);
        cr_assert(eq(int, l[i].cleanup_sleep_result, 0), "child %d: shielded cleanup", i);
        cr_assert(eq(int, l[i].ended, 1), "child %d did not run to its end", i);
    }
    cr_assert(lt(i64, wall_ns() - start, 30 * NS_PER_SEC));
}

static void stop_cb(void *arg)
{
    eddy_loop_stop(arg);
}

Test(tasks, loop_free_cancels_and_ends_live_tasks, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_virtual_loop();
    struct leftover l[3];
    for (int i = 0; i < 3; i++) {
        l[i] = (struct leftover){1, 1, 0};
        eddy_task *t = eddy_spawn(loop, leftover_child, &l[i]);
        cr_assert(ne(ptr, t, NULL));
        eddy_task_detach(t);
    }
    /* One iteration: the children start and suspend in their sleep. */
    cr_assert(eq(int, eddy_call_soon(loop, stop_cb, loop), 0));
    cr_assert(eq(int, eddy_loop_run(loop), 0));
    for (int i = 0; i < 3; i++)
        cr_assert(eq(int, l[i].ended, 0));
    eddy_loop_free(loop);
    for (int i = 0; i < 3; i++) {
        cr_assert(eq(int, l[i].sleep_result, -ECANCELED), "child %d", i);
        cr_assert(eq(int, l[i].cleanup_sleep_result, 0), "child %d: shielded cleanup", i);
        cr_assert(eq(int, l[i].ended, 1), "child %d did not run to its end", i);
    }
}

Test(tasks, loop_free_with_task_never_started, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_virtual_loop();
    int flag = 0;
    eddy_task *t = eddy_spawn(loop, set_flag, &flag);
    cr_assert(ne(ptr, t, NULL));
    eddy_task_detach(t);
    eddy_loop_free(loop);
    cr_assert(eq(int, flag, 0), "a task cancelled before it started ran anyway");
}

static intptr_t fail_with_eio(void *arg)
{
    (void)arg;
    return -EIO;
}

static void never_called(eddy_future *f, void *arg)
{
    (void)f;
    (void)arg;
    cr_assert(false, "a done callback ran on a freed loop");
}

/* A task its caller still holds when the loop goes: joining or dropping it
 * afterwards must not touch the freed loop (ASan and Valgrind would say). */
Test(tasks, task_outlives_its_loop, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = loop_with(EDDY_LOOP_DEBUG, 0);
    eddy_task *ok = eddy_spawn(loop, double_arg, (void *)21);
    eddy_task *failed = eddy_spawn(loop, fail_with_eio, NULL);
    cr_assert(ne(ptr, ok, NULL));
    cr_assert(ne(ptr, failed, NULL));
    cr_assert(eq(int, eddy_loop_run(loop), 0));
    eddy_loop_free(loop);
    intptr_t v = 0;
    cr_assert(eq(int, eddy_task_join(ok, &v), 0));
    cr_assert(eq(iptr, v, 42));
    cr_assert(eq(int, eddy_future_on_done(eddy_task_future(failed), never_called, NULL), -EINVAL));
    eddy_task_detach(failed);
}
