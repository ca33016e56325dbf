/* SPDX-License-Identifier: MIT */
/* Task stack overflows (docs/tasks.md, "Stacks and overflow"): a frame far
 * larger than a page lands in the guard region below the stack and the
 * process dies of SIGSEGV naming the task; without guard pages, frames that
 * step over the old 16-byte canary are caught by the canary region. Faults
 * that are not overflows reach the program's own handler, or kill as before.
 *
 * Each case runs in a child process (fork) whose stderr the test reads. POSIX
 * only; skipped under Valgrind (which replaces the fault path), and the cases
 * about faults under AddressSanitizer too (its own SEGV handler reports them,
 * and eddy installs none). The
 * task functions are not static so that dladdr finds their names (the suite
 * is linked with -export-dynamic). */
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "config.h"
#include "helpers.h"

#if HAVE_VALGRIND_VALGRIND_H
#include <valgrind/valgrind.h>
#endif
#ifndef RUNNING_ON_VALGRIND
#define RUNNING_ON_VALGRIND 0
#endif

#define STACK_64K (64 * 1024)

static void require_native_stacks(void)
{
    if (RUNNING_ON_VALGRIND) cr_skip_test("Valgrind replaces the fault path");
}

static void require_fault_reports(void)
{
#if defined(EDDY_ASAN) && EDDY_ASAN
    cr_skip_test("AddressSanitizer reports faults itself: eddy installs no handler under it");
#endif
    require_native_stacks();
}

struct child_outcome {
    int status;
    char err[4096]; /* what the child wrote to stderr */
};

/* Runs body() in a child process with stderr captured. */
static void run_child(void (*body)(void), struct child_outcome *out)
{
    int fds[2];
    cr_assert(eq(int, pipe(fds), 0));
    fflush(NULL);
    pid_t pid = fork();
    cr_assert(ge(int, pid, 0));
    if (pid == 0) {
        close(fds[0]);
        dup2(fds[1], 2);
        body();
        _exit(0);
    }
    close(fds[1]);
    size_t len = 0;
    ssize_t n;
    while ((n = read(fds[0], out->err + len, sizeof out->err - 1 - len)) > 0)
        len += (size_t)n;
    out->err[len] = '\0';
    close(fds[0]);
    cr_assert(eq(int, waitpid(pid, &out->status, 0), pid));
}

static bool died_of(int status, int sig)
{
    return WIFSIGNALED(status) && WTERMSIG(status) == sig;
}

static bool exited_with(int status, int code)
{
    return WIFEXITED(status) && WEXITSTATUS(status) == code;
}

static void say(const char *s)
{
    ssize_t n = write(2, s, strlen(s));
    (void)n;
}

/* ---- guard region -------------------------------------------------------------------- */

/* 300 KiB, more than the whole 256 KiB stack: touched from its lowest byte
 * up, as a memset would, so the first write is the one furthest below. */
__attribute__((noinline)) static void touch_300k(void)
{
    volatile char big[300 * 1024];
    for (size_t i = 0; i < sizeof big; i += 256)
        big[i] = (char)i;
}

/* Started first: its stack is mapped before (above) the neighbour's. */
intptr_t overflow_300k(void *arg)
{
    (void)arg;
    eddy_yield(); /* the neighbour starts and fills its marks */
    touch_300k();
    say("overflow_300k returned\n");
    return 0;
}

/* Fills its own stack with marks, lets the other task run, then checks. */
static intptr_t neighbour(void *arg)
{
    (void)arg;
    volatile char marks[8192];
    for (size_t i = 0; i < sizeof marks; i++)
        marks[i] = 0x5a;
    eddy_yield();
    eddy_yield();
    for (size_t i = 0; i < sizeof marks; i++)
        if (marks[i] != 0x5a) {
            say("neighbour corrupted\n");
            _exit(3);
        }
    say("neighbour intact\n");
    return 0;
}

/* In the child: runs first and, if given, second, started in that order,
 * on a loop with these flags and stack size. */
static void run_tasks(eddy_task_fn first, eddy_task_fn second, unsigned flags, size_t stack_size)
{
    eddy_loop *loop;
    eddy_loop_options opts = {.flags = flags, .stack_size = stack_size};
    if (eddy_loop_new(&loop, &opts) < 0) _exit(2);
    eddy_task_detach(eddy_spawn(loop, first, NULL));
    if (second) eddy_task_detach(eddy_spawn(loop, second, NULL));
    eddy_loop_run(loop);
    eddy_loop_free(loop);
}

static void big_frame_body(void)
{
    run_tasks(overflow_300k, neighbour, 0, 0);
}

Test(stack_overflow, frame_larger_than_the_stack_is_caught, .timeout = TEST_TIMEOUT)
{
    require_fault_reports();
    struct child_outcome out;
    run_child(big_frame_body, &out);
    cr_assert(died_of(out.status, SIGSEGV),
              "the child did not die of SIGSEGV (status %#x); stderr:\n%s", out.status, out.err);
    cr_assert(ne(ptr, strstr(out.err, "eddy: task 1 (overflow_300k) overflowed its stack"), NULL),
              "stderr does not name the task:\n%s", out.err);
    cr_assert(eq(ptr, strstr(out.err, "neighbour"), NULL), "the neighbour ran on:\n%s", out.err);
    cr_assert(eq(ptr, strstr(out.err, "returned"), NULL));
}

/* ---- faults that are not overflows ----------------------------------------------------- */

static intptr_t bad_pointer(void *arg)
{
    (void)arg;
    volatile int *p = (volatile int *)(uintptr_t)64;
    *p = 1;
    say("bad_pointer survived\n");
    return 0;
}

static void bad_pointer_body(void)
{
    run_tasks(bad_pointer, NULL, 0, 0);
}

Test(stack_overflow, other_faults_kill_as_before, .timeout = TEST_TIMEOUT)
{
    require_fault_reports();
    struct child_outcome out;
    run_child(bad_pointer_body, &out);
    cr_assert(died_of(out.status, SIGSEGV), "status %#x; stderr:\n%s", out.status, out.err);
    cr_assert(eq(str, out.err, ""), "a plain fault was reported as something else");
}

static void programs_handler(int sig)
{
    (void)sig;
    say("the program's handler\n");
    _exit(7);
}

static void install_programs_handler(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = programs_handler;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGSEGV, &sa, NULL) < 0) _exit(2);
}

/* The program's handler, installed before any loop ran, still gets the
 * faults that are not overflows. */
static void chained_body(void)
{
    install_programs_handler();
    bad_pointer_body();
}

Test(stack_overflow, other_faults_reach_the_programs_handler, .timeout = TEST_TIMEOUT)
{
    require_fault_reports();
    struct child_outcome out;
    run_child(chained_body, &out);
    cr_assert(exited_with(out.status, 7), "status %#x; stderr:\n%s", out.status, out.err);
    cr_assert(eq(str, out.err, "the program's handler\n"));
}

/* An overflow after the program installed its handler is still reported
 * as one, and kills: the program's handler is for its own faults. */
static void chained_overflow_body(void)
{
    install_programs_handler();
    big_frame_body();
}

Test(stack_overflow, overflow_is_reported_despite_the_programs_handler, .timeout = TEST_TIMEOUT)
{
    require_fault_reports();
    struct child_outcome out;
    run_child(chained_overflow_body, &out);
    cr_assert(died_of(out.status, SIGSEGV), "status %#x; stderr:\n%s", out.status, out.err);
    cr_assert(ne(ptr, strstr(out.err, "eddy: task 1 (overflow_300k) overflowed its stack"), NULL),
              "stderr:\n%s", out.err);
}

/* ---- without guard pages: the canary region ---------------------------------------------- */

/* A 530-byte frame that writes only near its bottom: a run of them steps
 * over anything narrower between two writes, as the old 16-byte canary was. */
__attribute__((noinline)) static int step_530(uintptr_t stop)
{
    volatile char frame[512];
    frame[0] = 1;
    if ((uintptr_t)&frame[0] <= stop) return frame[0];
    return step_530(stop) + frame[0]; /* not a tail call */
}

/* Started second: its slot lies right above the neighbour's, whose top
 * (descriptor and first frames) the descent runs into. */
intptr_t overflow_steps(void *arg)
{
    (void)arg;
    char here;
    eddy_yield();
    /* About 2 KiB below the bottom of this 64 KiB stack. */
    uintptr_t stop = (uintptr_t)&here - STACK_64K - 1024;
    step_530(stop);
    return 0;
}

static void no_guard_body(void)
{
    run_tasks(neighbour, overflow_steps, EDDY_LOOP_NO_GUARD_PAGES, STACK_64K);
    say("the loop ended\n");
}

Test(stack_overflow, no_guard_canary_catches_530_byte_frames, .timeout = TEST_TIMEOUT)
{
    require_native_stacks();
    struct child_outcome out;
    run_child(no_guard_body, &out);
    cr_assert(died_of(out.status, SIGABRT), "the child did not abort (status %#x); stderr:\n%s",
              out.status, out.err);
    cr_assert(ne(ptr, strstr(out.err, "eddy: task 2 (overflow_steps) overflowed its stack"), NULL),
              "stderr does not name the task:\n%s", out.err);
    cr_assert(eq(ptr, strstr(out.err, "neighbour"), NULL), "the neighbour ran on:\n%s", out.err);
}

/* A task that uses its stack down to a few hundred bytes above the bottom
 * is no overflow. */
__attribute__((noinline)) static int use_stack(uintptr_t stop)
{
    volatile char frame[256];
    for (size_t i = 0; i < sizeof frame; i++)
        frame[i] = (char)i;
    if ((uintptr_t)&frame[0] <= stop) return frame[1];
    return use_stack(stop) + frame[1];
}

static intptr_t deep_but_within(void *arg)
{
    (void)arg;
    char here;
    /* 48 KiB of a 64 KiB stack, with yields between (canary checks). */
    for (int i = 0; i < 3; i++) {
        use_stack((uintptr_t)&here - 48 * 1024);
        eddy_yield();
    }
    return 42;
}

Test(stack_overflow, no_guard_deep_use_within_the_stack_is_fine, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = loop_with(EDDY_LOOP_NO_GUARD_PAGES, STACK_64K);
    intptr_t result = 0;
    eddy_task *a = eddy_spawn(loop, deep_but_within, NULL);
    eddy_task *b = eddy_spawn(loop, deep_but_within, NULL);
    cr_assert(eq(int, eddy_loop_run(loop), 0));
    cr_assert(eq(int, eddy_task_join(a, &result), 0));
    cr_assert(eq(iptr, result, 42));
    cr_assert(eq(int, eddy_task_join(b, &result), 0));
    cr_assert(eq(iptr, result, 42));
    eddy_loop_free(loop);
}

/* ---- the pool: stacks kept after a burst, given back when idle ------------------------- */

#define BURST_TASKS 1000

/* Address space and resident memory of the process, in bytes, from
 * /proc/self/statm: a new stack shows as address space (guard mode maps
 * 1 MiB of guard and the stack; slab mode maps 64 MiB slabs), a stack given
 * back as less of it. Not the count of mappings: with guard markers
 * (MADV_GUARD_INSTALL), adjacent stacks merge into one. */
static void statm(long long *size, long long *resident)
{
    FILE *f = fopen("/proc/self/statm", "r");
    cr_assert(ne(ptr, f, NULL));
    long long pages[2];
    cr_assert(eq(int, fscanf(f, "%lld %lld", &pages[0], &pages[1]), 2));
    fclose(f);
    *size = pages[0] * sysconf(_SC_PAGESIZE);
    *resident = pages[1] * sysconf(_SC_PAGESIZE);
}

static void require_statm(void)
{
    if (access("/proc/self/statm", R_OK) != 0) cr_skip_test("no /proc/self/statm here");
}

/* Touches 16 KiB of its stack, so that a stack kept holds resident pages,
 * and yields once, so that every task of a burst holds its stack at once. */
static intptr_t touch_and_yield(void *arg)
{
    volatile char page[16 * 1024];
    for (size_t i = 0; i < sizeof page; i += 512)
        page[i] = (char)i;
    eddy_yield();
    return page[0] == 0 ? (intptr_t)arg : -1;
}

struct burst_figures {
    long long size_live, size_after, size_live2, size_idle; /* address space */
    long long rss_after, rss_idle;
    int64_t idle_ns; /* how long to sleep after the second burst */
};

/* BURST_TASKS tasks spawned, then joined; the address space taken while
 * they all hold a stack. */
static void burst(long long *size_live)
{
    static eddy_task *burst_tasks[BURST_TASKS];
    for (intptr_t i = 0; i < BURST_TASKS; i++)
        cr_assert(
            ne(ptr, burst_tasks[i] = eddy_spawn(NULL, touch_and_yield, (void *)(i + 1)), NULL));
    eddy_yield(); /* every task ran up to its yield */
    long long rss;
    statm(size_live, &rss);
    for (intptr_t i = 0; i < BURST_TASKS; i++) {
        intptr_t value = 0;
        cr_assert(eq(int, eddy_task_join(burst_tasks[i], &value), 0));
        cr_assert(eq(iptr, value, i + 1));
    }
}

static intptr_t two_bursts(void *arg)
{
    struct burst_figures *f = arg;
    burst(&f->size_live);
    statm(&f->size_after, &f->rss_after);
    burst(&f->size_live2);
    statm(&f->size_after, &f->rss_after);
    if (f->idle_ns) {
        cr_assert(eq(int, eddy_sleep(f->idle_ns), 0));
        statm(&f->size_idle, &f->rss_idle);
    }
    return 0;
}

static void run_bursts(unsigned flags, const char *decay_ms, struct burst_figures *f)
{
    cr_assert(eq(int, setenv("EDDY_STACK_DECAY_MS", decay_ms, 1), 0));
    eddy_loop *loop = loop_with(flags, 0);
    intptr_t result;
    cr_assert(eq(int, run_task(loop, two_bursts, f, &result), 0));
    eddy_loop_free(loop);
}

/* 1 000 tasks ending at once (1 000 connections closing) unmap no stack, and
 * the next burst maps none: the pool keeps as many as were live. */
static void check_burst_reuse(unsigned flags)
{
    require_statm();
    struct burst_figures f = {0};
    run_bursts(flags, "60000", &f);
    long long slack = 8 << 20; /* malloc, a partly used slab */
    cr_assert(lt(llong, f.size_live - f.size_after, slack),
              "the burst's end gave back %lld bytes of address space: stacks were unmapped",
              f.size_live - f.size_after);
    cr_assert(lt(llong, f.size_live2 - f.size_live, slack),
              "the second burst took %lld more bytes of address space: stacks were mapped again",
              f.size_live2 - f.size_live);
}

Test(stack_pool, burst_end_unmaps_nothing_and_next_burst_reuses, .timeout = TEST_TIMEOUT)
{
    check_burst_reuse(0);
}

Test(stack_pool, burst_end_unmaps_nothing_and_next_burst_reuses_no_guard, .timeout = TEST_TIMEOUT)
{
    check_burst_reuse(EDDY_LOOP_NO_GUARD_PAGES);
}

/* After the bursts, a loop left idle (its one task asleep: the loop wakes
 * only for the decay steps) gives the stacks back: with 20 ms steps, 600 ms
 * is a grace step and enough halvings to come down to the floor of 64. */
static void check_idle_gives_back(unsigned flags)
{
    require_statm();
    struct burst_figures f = {.idle_ns = 600 * (int64_t)1000000};
    run_bursts(flags, "20", &f);
    long long stack_bytes = flags ? 256 << 10 : (256 << 10) + (1 << 20);
    long long released = f.size_after - f.size_idle;
    /* At least half the burst's stacks unmapped (the floor keeps 64, slab
     * mode one spare slab of 256 and partly used ones). */
    cr_assert(ge(llong, released, BURST_TASKS / 2 * stack_bytes),
              "only %lld bytes of address space given back after the loop idled", released);
    cr_assert(ge(llong, f.rss_after - f.rss_idle, BURST_TASKS / 2 * 16 * 1024),
              "resident memory went from %lld to %lld bytes only", f.rss_after, f.rss_idle);
}

Test(stack_pool, idle_loop_gives_stacks_back, .timeout = TEST_TIMEOUT)
{
    check_idle_gives_back(0);
}

Test(stack_pool, idle_loop_gives_stacks_back_no_guard, .timeout = TEST_TIMEOUT)
{
    check_idle_gives_back(EDDY_LOOP_NO_GUARD_PAGES);
}

/* ---- task structs kept like the stacks ---------------------------------------- */

#if defined(__GLIBC__) && !defined(__SANITIZE_ADDRESS__)
/* Counts malloc and free calls while `counting`, the process's whole (eddy's
 * calls reach these through the dynamic linker); glibc's own functions do the
 * work. Not under ASan, whose malloc this would hide. */
extern void *__libc_malloc(size_t n);
extern void __libc_free(void *p);
static volatile bool counting;
static volatile long mallocs, frees;

void *malloc(size_t n)
{
    if (counting) mallocs++;
    return __libc_malloc(n);
}

void free(void *p)
{
    if (counting && p) frees++;
    __libc_free(p);
}

static intptr_t yield_once(void *arg)
{
    eddy_yield();
    return (intptr_t)arg;
}

/* BURST_TASKS tasks spawned, then joined; no assertion inside (Criterion
 * allocates): the number of those that failed. */
static long quiet_burst(void)
{
    static eddy_task *tasks[BURST_TASKS];
    long failed = 0;
    for (intptr_t i = 0; i < BURST_TASKS; i++)
        if (!(tasks[i] = eddy_spawn(NULL, yield_once, (void *)i))) failed++;
    for (intptr_t i = 0; i < BURST_TASKS; i++) {
        intptr_t value = -1;
        if (!tasks[i] || eddy_task_join(tasks[i], &value) != 0 || value != i) failed++;
    }
    return failed;
}

struct cache_figures {
    long failed;
    long mallocs_second_burst;
    uint64_t counted_second_burst; /* the loop's own count (eddy_loop_metrics) */
    long frees_idle;
};

static uint64_t loop_allocations(void)
{
    eddy_loop_metrics_t m = {.size = sizeof m};
    return eddy_loop_metrics(eddy_loop_current(), &m) == 0 ? m.allocations : UINT64_MAX;
}

static intptr_t bursts_then_idle(void *arg)
{
    struct cache_figures *f = arg;
    f->failed = quiet_burst();
    uint64_t before = loop_allocations();
    mallocs = 0;
    counting = true;
    f->failed += quiet_burst();
    counting = false;
    f->mallocs_second_burst = mallocs;
    f->counted_second_burst = loop_allocations() - before;
    frees = 0;
    counting = true;
    if (eddy_sleep(600 * (int64_t)1000000) != 0) f->failed++;
    counting = false;
    f->frees_idle = frees;
    return 0;
}

/* A burst of tasks ending together keeps their structs for the next burst,
 * which allocates none (malloc would have trimmed its heap and faulted the
 * memory in again); once the loop idles, the structs go with the stacks: 20 ms
 * decay steps over 600 ms bring them down to as many as the pool's free
 * stacks (at least 64; in slab mode a spare slab's 256 and the free stacks
 * of slabs partly used), a quarter of the burst at most. */
static void check_task_cache(unsigned flags)
{
    if (RUNNING_ON_VALGRIND) cr_skip_test("Valgrind replaces malloc");
    cr_assert(eq(int, setenv("EDDY_STACK_DECAY_MS", "20", 1), 0));
    struct cache_figures f = {0};
    eddy_loop *loop = loop_with(flags, 0);
    intptr_t result;
    cr_assert(eq(int, run_task(loop, bursts_then_idle, &f, &result), 0));
    eddy_loop_free(loop);
    cr_assert(eq(long, f.failed, 0L));
    cr_assert(eq(long, f.mallocs_second_burst, 0L),
              "the second burst of %d tasks allocated %ld times", BURST_TASKS,
              f.mallocs_second_burst);
    cr_assert(eq(u64, f.counted_second_burst, 0), "the loop counted %llu allocations",
              (unsigned long long)f.counted_second_burst);
    cr_assert(ge(long, f.frees_idle, (long)(BURST_TASKS / 4)),
              "only %ld task structs freed while the loop idled", f.frees_idle);
}

Test(task_cache, next_burst_allocates_nothing_and_idle_frees, .timeout = TEST_TIMEOUT)
{
    check_task_cache(0);
}

Test(task_cache, next_burst_allocates_nothing_and_idle_frees_no_guard, .timeout = TEST_TIMEOUT)
{
    check_task_cache(EDDY_LOOP_NO_GUARD_PAGES);
}
#endif

/* ---- a task ending straight into its joiner ---------------------------------- */

/* Where on its stack a task runs. */
static intptr_t stack_address(void *arg)
{
    volatile char here = 0;
    return (intptr_t)&here;
}

/* A task that ends while the task joining it is all that is ready switches
 * straight into it (lib/task.c); its stack must still go back to the pool at
 * once, for the next task to run on. */
static intptr_t join_one_by_one(void *arg)
{
    intptr_t first = 0;
    for (int i = 0; i < 1000; i++) {
        eddy_task *t = eddy_spawn(NULL, stack_address, NULL);
        cr_assert(ne(ptr, t, NULL));
        intptr_t where = 0;
        cr_assert(eq(int, eddy_task_join(t, &where), 0));
        if (i == 0) first = where;
        cr_assert(eq(iptr, where, first), "task %d ran on another stack: the previous one leaked",
                  i);
    }
    return 0;
}

static void check_exit_into_joiner(unsigned flags)
{
    eddy_loop *loop = loop_with(flags, 0);
    intptr_t result;
    cr_assert(eq(int, run_task(loop, join_one_by_one, NULL, &result), 0));
    eddy_loop_free(loop);
}

Test(stack_pool, task_ending_into_its_joiner_gives_its_stack_back, .timeout = TEST_TIMEOUT)
{
    check_exit_into_joiner(0);
}

Test(stack_pool, task_ending_into_its_joiner_gives_its_stack_back_no_guard, .timeout = TEST_TIMEOUT)
{
    check_exit_into_joiner(EDDY_LOOP_NO_GUARD_PAGES);
}
