/* SPDX-License-Identifier: MIT */
/* Seeing inside a running loop (docs/debugging.md): its counters, a dump of
 * every task with what it waits on, who awaits it and its backtrace (the
 * walk is lib/taskdump.c's, shared with eddy-ps; this file gives it this
 * process's memory), and the stall detector. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "taskdump.h"

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

#ifdef EDDY__SAVED_FP
#define SAVED_FP EDDY__SAVED_FP
#define SAVED_PC EDDY__SAVED_PC
#endif

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

/* ---- the dump --------------------------------------------------------------- */

/* The in-process source of lib/taskdump.c: plain reads of this process's
 * memory (on the loop's thread, so nothing changes meanwhile), names from
 * dladdr. Other tasks' stacks are read too: not through AddressSanitizer. */
NO_ASAN static int local_read(void *ctx, uint64_t addr, void *buf, size_t len)
{
    (void)ctx;
    if (!addr) return -EFAULT;
    const volatile unsigned char *from = (const volatile unsigned char *)(uintptr_t)addr;
    unsigned char *to = buf;
    for (size_t i = 0; i < len; i++)
        to[i] = from[i];
    return 0;
}

static bool local_function_name(void *ctx, uint64_t addr, char *buf, size_t len)
{
    (void)ctx;
    const char *name = eddy__symbol_name((const void *)(uintptr_t)addr, NULL);
    if (!name) return false;
    snprintf(buf, len, "%s", name);
    return true;
}

static void local_describe_return(void *ctx, uint64_t pc, char *buf, size_t len)
{
    (void)ctx;
    uintptr_t off = 0;
    /* a return address is just past its call: name the call's function */
    const char *name = eddy__symbol_name((const char *)(uintptr_t)pc - 1, &off);
    if (name)
        snprintf(buf, len, "%s+0x%llx", name, (unsigned long long)off + 1);
    else if ((name = eddy__module_name((const void *)(uintptr_t)pc, &off)))
        /* not in the dynamic symbol table (static, hidden): where it is, for
         * addr2line -f -e FILE OFFSET */
        snprintf(buf, len, "(%s+0x%llx)", name, (unsigned long long)off);
    else
        snprintf(buf, len, "?");
}

EDDY_API int eddy_loop_dump(eddy_loop *loop, FILE *out)
{
    if (!loop || !out) return -EINVAL;
    if (eddy__loop_foreign(loop)) return -EPERM;
    struct eddy__dump_source src = {
        .layout = &eddy_debug_registry.layout,
        .read = local_read,
        .function_name = local_function_name,
        .describe_return = local_describe_return,
    };
#ifdef SAVED_FP
    if (loop->current && loop->current == eddy__current_task())
        src.running_fp = (uintptr_t)__builtin_frame_address(0);
#endif
    return eddy__dump_loop(&src, (uintptr_t)loop, out);
}

/* ---- the stall detector ------------------------------------------------------ */

/* A watchdog thread per loop looks at the running task's step every quarter
 * of the threshold. Once a step has run past it, the watchdog signals the
 * loop's thread (SIGURG, which nothing else uses by default and which is
 * ignored when no handler takes it); the handler, on the stuck task's own
 * stack, walks its frames from the interrupted registers -- plain memory
 * reads, async-signal-safe -- into the loop's buffer, and the watchdog
 * names them and writes the report while the task still runs. Linux on
 * x86-64 and AArch64 only: the registers are read from its ucontext. */
#if defined(__linux__) && defined(SAVED_FP)
#include <signal.h>
#include <time.h>
#include <ucontext.h>

#define STALL_SIGNAL SIGURG
#define MAX_FRAMES   32

struct frames {
    const void *pc[MAX_FRAMES];
    size_t n;
};

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

struct eddy__stall {
    pthread_t watchdog;
    pthread_t loop_thread; /* atomic: the thread running the loop's tasks */
    pthread_mutex_t lock;
    pthread_cond_t wake;
    bool stop;
    int64_t started; /* atomic: when the running step began; 0 while none runs */
    uint64_t step;   /* atomic: steps begun */
    int requested;   /* atomic: the watchdog wants a backtrace */
    int captured;    /* atomic: the handler filled what follows */
    uint64_t captured_step;
    struct frames frames;
    uint64_t task_id;
    eddy_task_fn task_fn;
    char name[EDDY_TASK_NAME_MAX + 1];
};

static struct sigaction previous_action;
static bool handler_installed;

static void stall_capture(struct eddy_loop *loop, struct eddy__stall *st, const ucontext_t *uc)
{
#if defined(__x86_64__)
    uintptr_t pc = (uintptr_t)uc->uc_mcontext.gregs[REG_RIP];
    uintptr_t fp = (uintptr_t)uc->uc_mcontext.gregs[REG_RBP];
#else
    uintptr_t pc = (uintptr_t)uc->uc_mcontext.pc;
    uintptr_t fp = (uintptr_t)uc->uc_mcontext.regs[29];
#endif
    const struct eddy_task *t = loop->current;
    st->frames.n = 0;
    st->captured_step = __atomic_load_n(&st->step, __ATOMIC_RELAXED);
    if (t && t->stack) {
        uintptr_t lo = (uintptr_t)t->stack->lo;
        st->frames.pc[st->frames.n++] = (const void *)pc;
        walk(&st->frames, fp, lo, lo + t->stack->size);
        st->task_id = t->id;
        st->task_fn = t->fn;
        size_t i = 0;
        for (; t->name && t->name[i] && i < EDDY_TASK_NAME_MAX; i++)
            st->name[i] = t->name[i];
        st->name[i] = '\0';
    } else {
        st->task_id = 0;
    }
    __atomic_store_n(&st->captured, 1, __ATOMIC_RELEASE);
}

static void stall_handler(int sig, siginfo_t *info, void *ctx)
{
    int saved_errno = errno;
    struct eddy_loop *loop = eddy__thread_loop;
    struct eddy__stall *st = loop ? loop->stall : NULL;
    if (st && __atomic_exchange_n(&st->requested, 0, __ATOMIC_ACQ_REL)) {
        stall_capture(loop, st, ctx);
    } else if (previous_action.sa_flags & SA_SIGINFO) {
        previous_action.sa_sigaction(sig, info, ctx);
    } else if (previous_action.sa_handler != SIG_DFL && previous_action.sa_handler != SIG_IGN) {
        previous_action.sa_handler(sig);
    }
    errno = saved_errno;
}

static void install_handler(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = stall_handler;
    sa.sa_flags = SA_SIGINFO | SA_RESTART | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    handler_installed = sigaction(STALL_SIGNAL, &sa, &previous_action) == 0;
}

static void stall_report(struct eddy__stall *st, int64_t ran)
{
    const char *name = st->name;
    if (!name[0]) name = eddy__symbol_name((const void *)(uintptr_t)st->task_fn, NULL);
    /* one write per line would interleave with other threads' output less
     * than many small ones: build the report, then write it whole */
    char buf[4096];
    size_t len = 0;
    len += (size_t)snprintf(buf + len, sizeof buf - len,
                            "eddy: task %llu (%s) has run %lld ms without awaiting; it is at:\n",
                            (unsigned long long)st->task_id, name ? name : "task",
                            (long long)(ran / 1000000));
    for (size_t i = 0; i < st->frames.n && len < sizeof buf; i++) {
        uintptr_t off = 0;
        /* frame 0 is where the task was interrupted, the others return addresses */
        const char *pc = (const char *)st->frames.pc[i];
        const char *sym = eddy__symbol_name(i ? pc - 1 : pc, &off);
        if (sym)
            len += (size_t)snprintf(buf + len, sizeof buf - len, "    #%zu %p %s+0x%llx\n", i,
                                    (const void *)pc, sym, (unsigned long long)off + (i ? 1 : 0));
        else if ((sym = eddy__module_name(pc, &off)))
            len += (size_t)snprintf(buf + len, sizeof buf - len, "    #%zu %p (%s+0x%llx)\n", i,
                                    (const void *)pc, sym, (unsigned long long)off);
        else
            len += (size_t)snprintf(buf + len, sizeof buf - len, "    #%zu %p ?\n", i,
                                    (const void *)pc);
    }
    if (len > sizeof buf - 1) len = sizeof buf - 1;
    fwrite(buf, 1, len, stderr);
    fflush(stderr);
}

/* Asks the loop's thread for the running task's frames; true once they came
 * (within 100 ms: a thread blocking the signal never answers). */
static bool stall_ask(struct eddy__stall *st)
{
    __atomic_store_n(&st->captured, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&st->requested, 1, __ATOMIC_RELEASE);
    pthread_t thread = __atomic_load_n(&st->loop_thread, __ATOMIC_RELAXED);
    if (pthread_kill(thread, STALL_SIGNAL) != 0) return false;
    for (int i = 0; i < 100; i++) {
        if (__atomic_load_n(&st->captured, __ATOMIC_ACQUIRE)) return true;
        struct timespec ms = {0, 1000000};
        nanosleep(&ms, NULL);
    }
    __atomic_store_n(&st->requested, 0, __ATOMIC_RELAXED);
    return false;
}

struct watchdog_arg {
    struct eddy__stall *st;
    int64_t threshold;
};

static void *watchdog_run(void *arg)
{
    struct eddy__stall *st = ((struct watchdog_arg *)arg)->st;
    int64_t threshold = ((struct watchdog_arg *)arg)->threshold;
    free(arg);
    int64_t period = threshold / 4 > 1000000 ? threshold / 4 : 1000000;
    uint64_t reported = 0; /* steps are numbered from 1 */
    pthread_mutex_lock(&st->lock);
    while (!st->stop) {
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        int64_t ns = until.tv_nsec + period;
        until.tv_sec += (time_t)(ns / 1000000000);
        until.tv_nsec = (long)(ns % 1000000000);
        pthread_cond_timedwait(&st->wake, &st->lock, &until);
        if (st->stop) break;
        int64_t started = __atomic_load_n(&st->started, __ATOMIC_RELAXED);
        uint64_t step = __atomic_load_n(&st->step, __ATOMIC_RELAXED);
        int64_t ran = eddy__monotonic_ns() - started;
        if (!started || step == reported || ran < threshold) continue;
        reported = step;
        pthread_mutex_unlock(&st->lock);
        if (stall_ask(st) && st->captured_step == step && st->task_id) stall_report(st, ran);
        pthread_mutex_lock(&st->lock);
    }
    pthread_mutex_unlock(&st->lock);
    return NULL;
}

static int stall_start(struct eddy_loop *loop)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, install_handler);
    if (!handler_installed) return -ENOTSUP;
    struct eddy__stall *st = calloc(1, sizeof(*st));
    struct watchdog_arg *arg = malloc(sizeof(*arg));
    pthread_condattr_t attr;
    if (!st || !arg || pthread_condattr_init(&attr) != 0) {
        free(st);
        free(arg);
        return -ENOMEM;
    }
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&st->wake, &attr);
    pthread_condattr_destroy(&attr);
    pthread_mutex_init(&st->lock, NULL);
    st->loop_thread = pthread_self();
    arg->st = st;
    arg->threshold = loop->stall_ns;
    /* The watchdog takes no signal: the program's go to its other threads. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int err = pthread_create(&st->watchdog, NULL, watchdog_run, arg);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (err) {
        pthread_cond_destroy(&st->wake);
        pthread_mutex_destroy(&st->lock);
        free(st);
        free(arg);
        return -err;
    }
    loop->stall = st;
    return 0;
}

bool eddy__stall_supported(void)
{
    return true;
}

void eddy__stall_enter(struct eddy_loop *loop, int64_t started)
{
    struct eddy__stall *st = loop->stall;
    if (EDDY__UNLIKELY(!st)) {
        if (stall_start(loop) < 0) {
            loop->flags &= ~EDDY__LOOP_STALL; /* no detector; the loop goes on */
            return;
        }
        st = loop->stall;
    }
    __atomic_store_n(&st->loop_thread, pthread_self(), __ATOMIC_RELAXED);
    __atomic_store_n(&st->step, st->step + 1, __ATOMIC_RELAXED);
    __atomic_store_n(&st->started, started, __ATOMIC_RELAXED);
}

void eddy__stall_leave(struct eddy_loop *loop)
{
    if (loop->stall) __atomic_store_n(&loop->stall->started, 0, __ATOMIC_RELAXED);
}

void eddy__stall_stop(struct eddy_loop *loop)
{
    struct eddy__stall *st = loop->stall;
    if (!st) return;
    pthread_mutex_lock(&st->lock);
    st->stop = true;
    pthread_cond_signal(&st->wake);
    pthread_mutex_unlock(&st->lock);
    pthread_join(st->watchdog, NULL);
    pthread_cond_destroy(&st->wake);
    pthread_mutex_destroy(&st->lock);
    free(st);
    loop->stall = NULL;
}
#else
bool eddy__stall_supported(void)
{
    return false;
}

void eddy__stall_enter(struct eddy_loop *loop, int64_t started)
{
    (void)loop;
    (void)started;
}

void eddy__stall_leave(struct eddy_loop *loop)
{
    (void)loop;
}

void eddy__stall_stop(struct eddy_loop *loop)
{
    (void)loop;
}
#endif
