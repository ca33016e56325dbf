/* SPDX-License-Identifier: MIT */
/* Task groups (asyncio.TaskGroup): success, first failure cancels the rest,
 * nested spawns, cancellation of the waiter, freeing with live children. */
#include "helpers.h"

struct child {
    eddy_group *group;
    int64_t sleep_ns;
    intptr_t outcome;   /* returned after the sleep, if it was not cancelled */
    int sleep_result;   /* what the sleep gave */
    int64_t cleanup_ns; /* shielded cleanup after a cancellation */
    int ended;
    int64_t ended_at;
};

static intptr_t child_task(void *arg)
{
    struct child *c = arg;
    c->sleep_result = eddy_sleep(c->sleep_ns);
    if (c->sleep_result < 0 && c->cleanup_ns > 0) {
        eddy_shield_begin();
        int err = eddy_sleep(c->cleanup_ns);
        eddy_shield_end();
        if (err < 0) c->sleep_result = -EPROTO;
    }
    c->ended = 1;
    c->ended_at = loop_now();
    return c->sleep_result < 0 ? c->sleep_result : c->outcome;
}

static struct child child_of(int64_t sleep_ns, intptr_t outcome)
{
    return (struct child){.sleep_ns = sleep_ns, .outcome = outcome, .sleep_result = 1};
}

struct grouping {
    struct child *children;
    int n;
    int err;
    int64_t elapsed;
    int ended_at_return;
    intptr_t results[8];
    int result_errs[8];
};

static intptr_t group_task(void *arg)
{
    struct grouping *gr = arg;
    int64_t start = loop_now();
    eddy_group *g = eddy_group_new(NULL);
    if (!g) return -ENOMEM;
    eddy_task *tasks[8];
    for (int i = 0; i < gr->n; i++) {
        gr->children[i].group = g;
        tasks[i] = eddy_group_spawn(g, child_task, &gr->children[i]);
        if (!tasks[i]) return -ENOMEM;
    }
    gr->err = eddy_group_wait(g);
    gr->elapsed = loop_now() - start;
    gr->ended_at_return = 0;
    for (int i = 0; i < gr->n; i++) {
        gr->ended_at_return += gr->children[i].ended;
        /* Borrowed pointers stay valid until eddy_group_free. */
        gr->result_errs[i] = eddy_future_result(eddy_task_future(tasks[i]), &gr->results[i]);
    }
    eddy_group_free(g);
    return gr->err;
}

Test(groups, all_children_succeed, .timeout = TEST_TIMEOUT)
{
    struct child c[4];
    for (int i = 0; i < 4; i++)
        c[i] = child_of((i + 1) * 10 * NS_PER_MS, 100 + i);
    struct grouping gr = {c, 4, 1, 0, 0, {0}, {0}};
    intptr_t v = 0;
    cr_assert(eq(int, run_virtual(group_task, &gr, &v), 0));
    cr_assert(eq(int, gr.err, 0));
    cr_assert(eq(i64, gr.elapsed, 40 * NS_PER_MS));
    cr_assert(eq(int, gr.ended_at_return, 4));
    for (int i = 0; i < 4; i++) {
        cr_assert(eq(int, gr.result_errs[i], 0));
        cr_assert(eq(iptr, gr.results[i], 100 + i));
    }
}

Test(groups, empty_group, .timeout = TEST_TIMEOUT)
{
    struct grouping gr = {NULL, 0, 1, 0, 0, {0}, {0}};
    intptr_t v = 0;
    cr_assert(eq(int, run_virtual(group_task, &gr, &v), 0));
    cr_assert(eq(int, gr.err, 0));
    cr_assert(eq(i64, gr.elapsed, 0));
}

Test(groups, one_failure_cancels_the_others, .timeout = TEST_TIMEOUT)
{
    struct child c[3];
    c[0] = child_of(10 * NS_PER_MS, -EIO);
    c[1] = child_of(NS_PER_HOUR, 1);
    c[2] = child_of(NS_PER_HOUR, 2);
    c[2].cleanup_ns = 5 * NS_PER_MS; /* the wait must wait for this too */
    struct grouping gr = {c, 3, 1, 0, 0, {0}, {0}};
    intptr_t v = 0;
    cr_assert(eq(int, run_virtual(group_task, &gr, &v), -EIO));
    cr_assert(eq(int, gr.err, -EIO));
    cr_assert(eq(int, c[1].sleep_result, -ECANCELED), "a sibling was not cancelled");
    cr_assert(eq(int, c[2].sleep_result, -ECANCELED), "a sibling was not cancelled");
    cr_assert(eq(int, gr.ended_at_return, 3), "wait returned before every child ended");
    cr_assert(eq(i64, gr.elapsed, 15 * NS_PER_MS));
    cr_assert(eq(int, gr.result_errs[0], -EIO));
    cr_assert(eq(int, gr.result_errs[1], -ECANCELED));
    cr_assert(eq(int, gr.result_errs[2], -ECANCELED));
}

static intptr_t fail_after_cancel(void *arg)
{
    struct child *c = arg;
    c->sleep_result = eddy_sleep(NS_PER_HOUR);
    c->ended = 1;
    /* Cancelled, it fails with its own error: not the group's first failure. */
    return c->sleep_result < 0 ? -ENOENT : 0;
}

static intptr_t two_failures(void *arg)
{
    struct child *c = arg;
    eddy_group *g = eddy_group_new(NULL);
    if (!g) return -ENOMEM;
    c[0] = child_of(10 * NS_PER_MS, -EIO);
    c[1] = child_of(0, 0);
    if (!eddy_group_spawn(g, fail_after_cancel, &c[1])) return -ENOMEM;
    if (!eddy_group_spawn(g, child_task, &c[0])) return -ENOMEM;
    int err = eddy_group_wait(g);
    eddy_group_free(g);
    return err;
}

Test(groups, wait_returns_the_first_failure, .timeout = TEST_TIMEOUT)
{
    struct child c[2];
    intptr_t v = 0;
    cr_assert(eq(int, run_virtual(two_failures, c, &v), -EIO));
    cr_assert(eq(int, c[1].sleep_result, -ECANCELED));
    cr_assert(eq(int, c[1].ended, 1));
}

static intptr_t fail_at_once(void *arg)
{
    return -EBADF;
}

static intptr_t failure_before_wait(void *arg)
{
    struct child *c = arg;
    eddy_group *g = eddy_group_new(NULL);
    if (!g) return -ENOMEM;
    *c = child_of(NS_PER_HOUR, 0);
    if (!eddy_group_spawn(g, child_task, c)) return -ENOMEM;
    if (!eddy_group_spawn(g, fail_at_once, NULL)) return -ENOMEM;
    /* The children run and one fails while the parent is busy elsewhere. */
    if (eddy_sleep(10 * NS_PER_MS) < 0) return -EPROTO;
    int err = eddy_group_wait(g);
    eddy_group_free(g);
    return err;
}

Test(groups, failure_before_wait, .timeout = TEST_TIMEOUT)
{
    struct child c;
    eddy_loop *loop = new_virtual_loop();
    int64_t start = eddy_now(loop);
    intptr_t v = 0;
    cr_assert(eq(int, run_task(loop, failure_before_wait, &c, &v), -EBADF));
    cr_assert(eq(int, c.sleep_result, -ECANCELED));
    cr_assert(eq(i64, c.ended_at - start, 0),
              "the sibling was not cancelled when the failure came");
    eddy_loop_free(loop);
}

/* ---- children spawning children ------------------------------------------- */

struct family {
    eddy_group *group;
    int ended;
    int64_t last_end;
};

static intptr_t grandchild(void *arg)
{
    struct family *f = arg;
    int err = eddy_sleep(30 * NS_PER_MS);
    if (err < 0) return err;
    f->ended++;
    f->last_end = loop_now();
    return 0;
}

static intptr_t parent_child(void *arg)
{
    struct family *f = arg;
    for (int i = 0; i < 2; i++)
        if (!eddy_group_spawn(f->group, grandchild, f)) return -ENOMEM;
    int err = eddy_sleep(5 * NS_PER_MS);
    if (err < 0) return err;
    f->ended++;
    return 0;
}

static intptr_t nested_spawns(void *arg)
{
    struct family *f = arg;
    int64_t start = loop_now();
    f->group = eddy_group_new(NULL);
    if (!f->group) return -ENOMEM;
    if (!eddy_group_spawn(f->group, parent_child, f)) return -ENOMEM;
    int err = eddy_group_wait(f->group);
    int64_t elapsed = loop_now() - start;
    eddy_group_free(f->group);
    if (err < 0) return err;
    return elapsed;
}

Test(groups, children_spawned_from_children, .timeout = TEST_TIMEOUT)
{
    struct family f = {NULL, 0, 0};
    intptr_t v = 0;
    cr_assert(eq(int, run_virtual(nested_spawns, &f, &v), 0));
    cr_assert(eq(int, f.ended, 3), "wait returned before the grandchildren ended");
    cr_assert(eq(iptr, v, 30 * NS_PER_MS));
}

/* ---- cancelling the waiter ------------------------------------------------- */

Test(groups, cancelling_the_waiter_cancels_children, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_virtual_loop();
    struct child c[3];
    for (int i = 0; i < 3; i++)
        c[i] = child_of(NS_PER_HOUR, i);
    c[0].cleanup_ns = 3 * NS_PER_MS;
    struct grouping gr = {c, 3, 1, 0, 0, {0}, {0}};
    int64_t start = eddy_now(loop);
    eddy_task *t = eddy_spawn(loop, group_task, &gr);
    cr_assert(ne(ptr, t, NULL));
    cancel_task_later(loop, t, 10 * NS_PER_MS);
    cr_assert(eq(int, eddy_loop_run(loop), 0));
    cr_assert(eq(int, gr.err, -ECANCELED));
    for (int i = 0; i < 3; i++)
        cr_assert(eq(int, c[i].sleep_result, -ECANCELED), "child %d", i);
    cr_assert(eq(int, gr.ended_at_return, 3), "wait returned before the children ended");
    cr_assert(eq(i64, gr.elapsed, 13 * NS_PER_MS));
    cr_assert(eq(i64, eddy_now(loop) - start, 13 * NS_PER_MS));
    cr_assert(eq(int, eddy_task_join(t, NULL), -ECANCELED));
    eddy_loop_free(loop);
}

/* ---- freeing with live children --------------------------------------------- */

static intptr_t free_without_wait(void *arg)
{
    struct child *c = arg;
    eddy_group *g = eddy_group_new(NULL);
    if (!g) return -ENOMEM;
    for (int i = 0; i < 3; i++) {
        c[i] = child_of(NS_PER_HOUR, 0);
        c[i].cleanup_ns = NS_PER_MS;
        if (!eddy_group_spawn(g, child_task, &c[i])) return -ENOMEM;
    }
    if (eddy_sleep(2 * NS_PER_MS) < 0) return -EPROTO;
    int64_t start = loop_now();
    eddy_group_free(g);
    int ended = 0;
    for (int i = 0; i < 3; i++)
        ended += c[i].ended;
    if (ended != 3) return -EPROTO; /* free from a task awaits the children */
    return loop_now() - start;
}

Test(groups, free_from_task_cancels_and_awaits_children, .timeout = TEST_TIMEOUT)
{
    struct child c[3];
    intptr_t v = 0;
    cr_assert(eq(int, run_virtual(free_without_wait, c, &v), 0));
    cr_assert(eq(iptr, v, NS_PER_MS));
    for (int i = 0; i < 3; i++)
        cr_assert(eq(int, c[i].sleep_result, -ECANCELED));
}

static void stop_cb(void *arg)
{
    eddy_loop_stop(arg);
}

Test(groups, free_outside_task_cancels_children, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_virtual_loop();
    eddy_group *g = eddy_group_new(loop);
    cr_assert(ne(ptr, g, NULL));
    struct child c[3];
    for (int i = 0; i < 3; i++) {
        c[i] = child_of(NS_PER_HOUR, 0);
        cr_assert(ne(ptr, eddy_group_spawn(g, child_task, &c[i]), NULL));
    }
    int64_t start = eddy_now(loop);
    cr_assert(eq(int, eddy_call_soon(loop, stop_cb, loop), 0));
    cr_assert(eq(int, eddy_loop_run(loop), 0)); /* the children start and sleep */
    eddy_group_free(g);
    cr_assert(eq(int, eddy_loop_run(loop), 0));
    for (int i = 0; i < 3; i++) {
        cr_assert(eq(int, c[i].sleep_result, -ECANCELED), "child %d", i);
        cr_assert(eq(int, c[i].ended, 1));
    }
    cr_assert(eq(i64, eddy_now(loop) - start, 0));
    eddy_loop_free(loop);
}

static intptr_t spawn_after_wait(void *arg)
{
    eddy_group *g = eddy_group_new(NULL);
    if (!g) return -ENOMEM;
    if (!eddy_group_spawn(g, task_return_arg, NULL)) return -ENOMEM;
    int err = eddy_group_wait(g);
    if (err < 0) return err;
    eddy_task *late = eddy_group_spawn(g, task_return_arg, NULL);
    eddy_group_free(g);
    return late == NULL ? 1 : -EPROTO;
}

Test(groups, spawn_after_wait_returned_is_refused, .timeout = TEST_TIMEOUT)
{
    intptr_t v = 0;
    cr_assert(eq(int, run_virtual(spawn_after_wait, NULL, &v), 0));
    cr_assert(eq(iptr, v, 1));
}

/* A group made outside any task, for a loop, and waited in a task. */
static intptr_t wait_given_group(void *arg)
{
    return eddy_group_wait(arg);
}

Test(groups, group_created_outside_waited_inside, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_virtual_loop();
    eddy_group *g = eddy_group_new(loop);
    cr_assert(ne(ptr, g, NULL));
    struct child c = child_of(4 * NS_PER_MS, -EXDEV);
    cr_assert(ne(ptr, eddy_group_spawn(g, child_task, &c), NULL));
    intptr_t v = 0;
    cr_assert(eq(int, run_task(loop, wait_given_group, g, &v), -EXDEV));
    eddy_group_free(g);
    eddy_loop_free(loop);
}

/* ---- a child cannot wait for its own group ------------------------------------- */

struct self_waiter {
    eddy_task_fn child_fn;
    eddy_group *group;
    int wait_result; /* what the child's eddy_group_wait gave */
    int freed;       /* the child returned from eddy_group_free */
};

static intptr_t child_waits_on_its_group(void *arg)
{
    struct self_waiter *s = arg;
    s->wait_result = eddy_group_wait(s->group);
    return 7;
}

static intptr_t child_frees_its_group(void *arg)
{
    struct self_waiter *s = arg;
    eddy_group_free(s->group);
    s->freed = 1;
    /* The group is still there for its owner: a sibling can join it. */
    return eddy_group_spawn(s->group, task_return_arg, NULL) ? 7 : -EPROTO;
}

static intptr_t own_group(void *arg)
{
    struct self_waiter *s = arg;
    s->group = eddy_group_new(NULL);
    if (!s->group) return -ENOMEM;
    eddy_task *child = eddy_group_spawn(s->group, s->child_fn, s);
    if (!child) return -ENOMEM;
    eddy_sleep(NS_PER_MS); /* the child gets there first */
    int err = eddy_group_wait(s->group);
    intptr_t value = 0;
    int outcome = eddy_future_result(eddy_task_future(child), &value);
    eddy_group_free(s->group);
    if (err < 0) return err;
    return outcome < 0 ? outcome : value;
}

Test(groups, child_waiting_on_its_group_is_edeadlk, .timeout = TEST_TIMEOUT)
{
    struct self_waiter s = {.child_fn = child_waits_on_its_group, .wait_result = 1};
    intptr_t v = 0;
    cr_assert(eq(int, run_virtual(own_group, &s, &v), 0));
    cr_assert(eq(int, s.wait_result, -EDEADLK));
    cr_assert(eq(iptr, v, 7));
}

Test(groups, child_freeing_its_group_leaves_it_to_the_owner, .timeout = TEST_TIMEOUT)
{
    struct self_waiter s = {.child_fn = child_frees_its_group};
    intptr_t v = 0;
    cr_assert(eq(int, run_virtual(own_group, &s, &v), 0));
    cr_assert(eq(int, s.freed, 1));
    cr_assert(eq(iptr, v, 7));
}

/* A group can be freed after its loop: the children ended with the loop, and
 * the group no longer touches it (AddressSanitizer checks). */
Test(groups, group_freed_after_its_loop, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_virtual_loop();
    eddy_group *g = eddy_group_new(loop);
    cr_assert(ne(ptr, g, NULL));
    struct child c = child_of(NS_PER_HOUR, 0);
    eddy_task *t = eddy_group_spawn(g, child_task, &c);
    cr_assert(ne(ptr, t, NULL));
    cr_assert(eq(int, eddy_call_soon(loop, stop_cb, loop), 0));
    cr_assert(eq(int, eddy_loop_run(loop), 0)); /* the child starts and sleeps */
    eddy_loop_free(loop);
    cr_assert(eq(int, c.sleep_result, -ECANCELED), "the loop's end cancelled the child");
    cr_assert(eq(ptr, eddy_group_spawn(g, child_task, &c), NULL), "no loop to spawn on");
    eddy_group_free(g);
}

/* Freed from a callback while a task waits on it: the children are cancelled
 * and the wait, which returns -ECANCELED, frees the group (it used to be
 * freed under the waiting task). */
struct freed_while_waited {
    eddy_group *group;
    struct child child;
    int wait_result;
};

static void free_group_cb(void *arg)
{
    eddy_group_free(((struct freed_while_waited *)arg)->group);
}

static intptr_t wait_for_freed_group(void *arg)
{
    struct freed_while_waited *f = arg;
    f->group = eddy_group_new(NULL);
    if (!f->group) return -ENOMEM;
    if (!eddy_group_spawn(f->group, child_task, &f->child)) return -ENOMEM;
    cr_assert(eq(int, eddy_call_later(eddy_loop_current(), NS_PER_MS, free_group_cb, f, NULL), 0));
    f->wait_result = eddy_group_wait(f->group);
    return 0;
}

Test(groups, freed_while_a_task_waits, .timeout = TEST_TIMEOUT)
{
    struct freed_while_waited f = {.child = child_of(NS_PER_HOUR, 0), .wait_result = 1};
    intptr_t v = -1;
    cr_assert(eq(int, run_virtual(wait_for_freed_group, &f, &v), 0));
    cr_assert(eq(int, f.wait_result, -ECANCELED));
    cr_assert(eq(int, f.child.sleep_result, -ECANCELED));
    cr_assert(eq(int, f.child.ended, 1));
}
