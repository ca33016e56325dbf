/* SPDX-License-Identifier: MIT */
/* Seeing inside a running loop (docs/debugging.md): its counters, and a dump
 * of every task with what it waits on, who awaits it and its backtrace. The
 * dump only reads: the tasks' state, and the frames saved on their stacks,
 * walked by frame pointer within each stack's bounds. */
#include <stdio.h>
#include <string.h>

#include "internal.h"

/* ---- metrics ---------------------------------------------------------------- */

static bool task_ready(const struct eddy_loop *loop, const struct eddy_task *t)
{
    return t->state == EDDY__TASK_CREATED || (t->state == EDDY__TASK_RUNNING && t != loop->current);
}

EDDY_API int eddy_loop_metrics(eddy_loop *loop, eddy_loop_metrics_t *m)
{
    if (!loop || !m) return -EINVAL;
    if (eddy__loop_foreign(loop)) return -EPERM;
    size_t size = m->size ? m->size : sizeof(*m); /* 0: the first layout, this one */
    if (size < offsetof(eddy_loop_metrics_t, iterations) + sizeof(uint64_t)) return -EINVAL;
    eddy_loop_metrics_t all = {
        .size = size < sizeof all ? size : sizeof all,
        .iterations = loop->stats.iterations,
        .idle_ns = loop->stats.idle_ns,
        .run_ns = loop->stats.run_ns,
        .ops_submitted = loop->stats.ops_submitted,
        .ops_completed = loop->stats.ops_completed,
        .ops_in_flight = loop->ops_in_flight,
        .tasks_alive = loop->live_tasks,
        .longest_step_ns = loop->stats.longest_step_ns,
        .allocations = loop->stats.allocations,
    };
    struct eddy__list *node;
    for (node = loop->tasks.next; node != &loop->tasks; node = node->next)
        all.tasks_ready += task_ready(loop, eddy__container_of(node, struct eddy_task, all_link));
    memcpy(m, &all, all.size);
    return 0;
}
_Static_assert(sizeof(eddy_loop_metrics_t) ==
                   offsetof(eddy_loop_metrics_t, allocations) + sizeof(uint64_t),
               "eddy_loop_metrics_t: no tail padding");

/* ---- backtraces ------------------------------------------------------------- */

#define MAX_FRAMES 32

/* Where the saved context of a suspended fiber keeps its frame pointer and
 * resume address (lib/context/x86_64-sysv.S, aarch64.S), in words from its
 * saved stack pointer. */
#if !EDDY_CONTEXT_UCONTEXT && !defined(_WIN32) && defined(__x86_64__)
#define SAVED_FP 5
#define SAVED_PC 6
#elif !EDDY_CONTEXT_UCONTEXT && !defined(_WIN32) && defined(__aarch64__)
#define SAVED_FP 10
#define SAVED_PC 11
#endif

struct frames {
    const void *pc[MAX_FRAMES];
    size_t n;
};

#ifdef SAVED_FP
#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define NO_ASAN __attribute__((no_sanitize_address))
#endif
#endif
#if !defined(NO_ASAN) && defined(__SANITIZE_ADDRESS__)
#define NO_ASAN __attribute__((no_sanitize_address))
#endif
#ifndef NO_ASAN
#define NO_ASAN
#endif

/* Follows the frame-pointer chain from fp while it stays inside [lo, hi):
 * each frame holds the caller's frame pointer, then the return address. */
NO_ASAN static void walk(struct frames *f, uintptr_t fp, uintptr_t lo, uintptr_t hi)
{
    while (f->n < MAX_FRAMES && fp >= lo && fp + 2 * sizeof(void *) <= hi &&
           fp % sizeof(void *) == 0) {
        const uintptr_t *frame = (const uintptr_t *)fp;
        if (!frame[1]) break;
        f->pc[f->n++] = (const void *)frame[1];
        if (frame[0] <= fp) break; /* frames go up the stack */
        fp = frame[0];
    }
}

NO_ASAN static void task_frames(const struct eddy_loop *loop, const struct eddy_task *t,
                                struct frames *f)
{
    f->n = 0;
    if (!t->stack) return;
    uintptr_t lo = (uintptr_t)t->stack->lo, hi = lo + t->stack->size;
    if (t == loop->current && t == eddy__current_task()) {
        walk(f, (uintptr_t)__builtin_frame_address(0), lo, hi);
        return;
    }
    const uintptr_t *sp = t->fiber.sp;
    if ((uintptr_t)sp < lo || (uintptr_t)(sp + SAVED_PC + 1) > hi) return;
    f->pc[f->n++] = (const void *)sp[SAVED_PC];
    walk(f, sp[SAVED_FP], lo, hi);
}
#else
static void task_frames(const struct eddy_loop *loop, const struct eddy_task *t, struct frames *f)
{
    (void)loop;
    (void)t;
    f->n = 0; /* no frame walk for this context switch */
}
#endif

/* ---- the dump --------------------------------------------------------------- */

static const char *const op_names[EDDY_OP_KIND_COUNT] = {
    [EDDY_OP_ACCEPT] = "accept",     [EDDY_OP_CONNECT] = "connect", [EDDY_OP_RECV] = "recv",
    [EDDY_OP_SEND] = "send",         [EDDY_OP_RECVMSG] = "recvmsg", [EDDY_OP_SENDMSG] = "sendmsg",
    [EDDY_OP_SHUTDOWN] = "shutdown", [EDDY_OP_CLOSE] = "close",     [EDDY_OP_READ] = "read",
    [EDDY_OP_WRITE] = "write",       [EDDY_OP_FSYNC] = "fsync",     [EDDY_OP_OPEN] = "open",
    [EDDY_OP_STAT] = "stat",         [EDDY_OP_UNLINK] = "unlink",   [EDDY_OP_RENAME] = "rename",
    [EDDY_OP_MKDIR] = "mkdir",       [EDDY_OP_WORK] = "work",       [EDDY_OP_POLL] = "poll",
};

static struct eddy_task *task_of(const struct eddy__list *node)
{
    return eddy__container_of(node, struct eddy_task, all_link);
}

#define FOR_EACH_TASK(loop, t)                                                                     \
    for (struct eddy__list *node_ = (loop)->tasks.next;                                            \
         node_ != &(loop)->tasks && ((t) = task_of(node_), 1); node_ = node_->next)

/* How t awaits c, or NULL when it does not. */
static const char *awaits(const struct eddy_task *t, const struct eddy_task *c)
{
    if (t->state != EDDY__TASK_SUSPENDED) return NULL;
    if (t->wait_kind == EDDY__WAIT_FUTURE && t->wait_on == &c->future) return "join";
    if (t->wait_kind == EDDY__WAIT_GROUP && c->group && t->wait_data == c->group) return "group";
    if (t->wait_kind == EDDY__WAIT_GATHER) {
        size_t n;
        struct eddy_future *const *fs = eddy__gather_futures(t->wait_data, &n);
        for (size_t i = 0; i < n; i++)
            if (fs[i] == &c->future) return "gather";
    }
    return NULL;
}

/* The first task that awaits c, for the tree. */
static struct eddy_task *first_awaiter(const struct eddy_loop *loop, const struct eddy_task *c)
{
    struct eddy_task *t;
    FOR_EACH_TASK(loop, t)
    if (awaits(t, c)) return t;
    return NULL;
}

static void print_state(FILE *out, const struct eddy_loop *loop, const struct eddy_task *t)
{
    int64_t now = loop->now;
    switch (t->state) {
    case EDDY__TASK_CREATED:
        fputs(t->cancel_requested ? "cancelled before it started" : "ready, not started", out);
        return;
    case EDDY__TASK_RUNNING:
        fputs(t == loop->current ? "running" : "ready", out);
        return;
    case EDDY__TASK_DONE:
        fputs("done, not yet joined", out);
        return;
    }
    switch (t->wait_kind) {
    case EDDY__WAIT_SLEEP: {
        /* lib/task.c's sleep_wait starts with its timer */
        const struct eddy_timer *timer = t->wait_data;
        fprintf(out, "sleeping until %lld (in %lld ms)", (long long)timer->deadline,
                (long long)((timer->deadline - now) / 1000000));
        break;
    }
    case EDDY__WAIT_OP: {
        const struct eddy_op *op = t->wait_data;
        const char *kind = op->kind < EDDY_OP_KIND_COUNT ? op_names[op->kind] : NULL;
        fprintf(out, "waiting on %s, fd %lld%s", kind ? kind : "an op", (long long)op->fd,
                op->state == EDDY_OP_STATE_CANCELLING ? " (cancelling)" : "");
        break;
    }
    case EDDY__WAIT_FUTURE: {
        const struct eddy_future *f = t->wait_on;
        if (f->is_task) {
            const struct eddy_task *other = (const struct eddy_task *)f;
            fprintf(out, "awaiting task %llu (%s)", (unsigned long long)other->id,
                    eddy_task_name(other));
        } else {
            fprintf(out, "awaiting future %p", (const void *)f);
        }
        break;
    }
    case EDDY__WAIT_GROUP:
        fprintf(out, "waiting for group %p", t->wait_data);
        break;
    case EDDY__WAIT_GATHER: {
        size_t n;
        (void)eddy__gather_futures(t->wait_data, &n);
        fprintf(out, "gathering %zu futures", n);
        break;
    }
    case EDDY__WAIT_SYNC:
        fputs("waiting on a lock, event, condition, semaphore, barrier or queue", out);
        break;
    default:
        fputs("waiting", out);
        break;
    }
    if (t->scope && eddy__timer_pending(&t->scope_timer))
        fprintf(out, ", in a timeout scope ending in %lld ms",
                (long long)((t->scope_timer.deadline - now) / 1000000));
    if (t->cancel_requested) fputs(", cancelled", out);
}

static void print_frames(FILE *out, const struct eddy_loop *loop, const struct eddy_task *t)
{
    struct frames f;
    task_frames(loop, t, &f);
    for (size_t i = 0; i < f.n; i++) {
        uintptr_t off = 0;
        /* a return address is just past its call: name the call's function */
        const char *name = eddy__symbol_name((const char *)f.pc[i] - 1, &off);
        if (name) {
            fprintf(out, "    #%zu %p %s+0x%llx\n", i, f.pc[i], name, (unsigned long long)off + 1);
        } else if ((name = eddy__module_name(f.pc[i], &off))) {
            /* not in the dynamic symbol table (static, hidden): where it is,
             * for addr2line -f -e FILE OFFSET */
            fprintf(out, "    #%zu %p (%s+0x%llx)\n", i, f.pc[i], name, (unsigned long long)off);
        } else {
            fprintf(out, "    #%zu %p ?\n", i, f.pc[i]);
        }
    }
    if (t->state == EDDY__TASK_CREATED) fprintf(out, "    (not started: %s)\n", eddy_task_name(t));
}

static void print_task(FILE *out, const struct eddy_loop *loop, const struct eddy_task *t)
{
    fprintf(out, "task %llu \"%s\": ", (unsigned long long)t->id, eddy_task_name(t));
    print_state(out, loop, t);
    fputc('\n', out);
    struct eddy_task *other;
    FOR_EACH_TASK(loop, other)
    {
        const char *how = awaits(other, t);
        if (how)
            fprintf(out, "  awaited by task %llu \"%s\" (%s)\n", (unsigned long long)other->id,
                    eddy_task_name(other), how);
    }
    if (t->group && !eddy__group_waiter(t->group))
        fprintf(out, "  in group %p (nobody waits for it yet)\n", (void *)t->group);
    print_frames(out, loop, t);
}

/* t, then the tasks whose first awaiter is t, indented below it. */
static void print_tree(FILE *out, const struct eddy_loop *loop, const struct eddy_task *t,
                       char *prefix, size_t depth, bool last)
{
    fprintf(out, "%s%s task %llu \"%s\"\n", prefix, last ? "└──" : "├──", (unsigned long long)t->id,
            eddy_task_name(t));
    if (depth >= 32) return; /* the prefix buffer's end; no deeper chain shown */
    size_t len = strlen(prefix);
    strcpy(prefix + len, last ? "    " : "│   ");
    struct eddy_task *c, *prev = NULL;
    FOR_EACH_TASK(loop, c)
    {
        if (c == t || first_awaiter(loop, c) != t) continue;
        if (prev) print_tree(out, loop, prev, prefix, depth + 1, false);
        prev = c;
    }
    if (prev) print_tree(out, loop, prev, prefix, depth + 1, true);
    prefix[len] = '\0';
}

EDDY_API int eddy_loop_dump(eddy_loop *loop, FILE *out)
{
    if (!loop || !out) return -EINVAL;
    if (eddy__loop_foreign(loop)) return -EPERM;
    size_t n = 0, done = 0;
    struct eddy_task *t;
    FOR_EACH_TASK(loop, t)
    {
        n++;
        done += t->state == EDDY__TASK_DONE;
    }
    fprintf(out, "loop %p (%s): %zu tasks (%zu done, not yet joined), %u ops in flight\n",
            (void *)loop, loop->backend.ops->name, n, done, loop->ops_in_flight);
    FOR_EACH_TASK(loop, t)
    print_task(out, loop, t);
    fputs("awaited by:\n", out);
    /* 32 levels of 4 box-drawing columns (up to 3 bytes each), and a NUL */
    char prefix[32 * 12 + 1] = "";
    struct eddy_task *prev = NULL;
    FOR_EACH_TASK(loop, t)
    {
        if (t->state == EDDY__TASK_DONE || first_awaiter(loop, t)) continue;
        if (prev) print_tree(out, loop, prev, prefix, 0, false);
        prev = t;
    }
    if (prev) print_tree(out, loop, prev, prefix, 0, true);
    return fflush(out) == 0 && !ferror(out) ? 0 : -EIO;
}
