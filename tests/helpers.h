/* SPDX-License-Identifier: MIT */
/* Shared helpers for the suites (Criterion, or tests/tap.c: see check.h):
 * loops, running a task to its end, completing futures from timers, clocks.
 * Tests use only the public header. */
#ifndef EDDY_TEST_HELPERS_H
#define EDDY_TEST_HELPERS_H

#ifdef _WIN32
#include <winsock2.h> /* before windows.h */
#include <ws2tcpip.h>
#include <windows.h>
#endif
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifndef _WIN32
#include <fcntl.h>
#endif

#include "check.h"

#include "eddy.h"

#define NS_PER_MS   ((int64_t)1000000)
#define NS_PER_SEC  ((int64_t)1000000000)
#define NS_PER_HOUR (3600 * NS_PER_SEC)

/* Criterion's per-test limit, in seconds: a hang fails the test instead of
 * stalling CI. Generous, because the suite also runs under Valgrind. */
#define TEST_TIMEOUT 120.0

/* A loop with the given flags and default stack size (0 = library default). */
static inline eddy_loop *loop_with(unsigned flags, size_t stack_size)
{
    eddy_loop_options opts = EDDY_LOOP_OPTIONS_INIT(.flags = flags, .stack_size = stack_size);
    eddy_loop *loop = NULL;
    int err = eddy_loop_new(&loop, &opts);
    cr_assert(eq(int, err, 0), "eddy_loop_new: %s", eddy_strerror(err));
    cr_assert(ne(ptr, loop, NULL));
    return loop;
}

static inline eddy_loop *new_loop(void)
{
    return loop_with(0, 0);
}

static inline eddy_loop *new_virtual_loop(void)
{
    return loop_with(EDDY_LOOP_VIRTUAL_TIME, 0);
}

/* Spawns fn(arg) on loop, runs the loop until nothing is pending and joins
 * the task: returns what eddy_task_join returns, the result in *result. */
static inline int run_task(eddy_loop *loop, eddy_task_fn fn, void *arg, intptr_t *result)
{
    eddy_task *t = eddy_spawn(loop, fn, arg);
    cr_assert(ne(ptr, t, NULL), "eddy_spawn failed");
    int err = eddy_loop_run(loop);
    cr_assert(eq(int, err, 0), "eddy_loop_run: %s", eddy_strerror(err));
    cr_assert(eddy_future_done(eddy_task_future(t)), "task pending after eddy_loop_run returned");
    return eddy_task_join(t, result);
}

/* run_task on a fresh virtual-time loop, freed afterwards. */
static inline int run_virtual(eddy_task_fn fn, void *arg, intptr_t *result)
{
    eddy_loop *loop = new_virtual_loop();
    int err = run_task(loop, fn, arg, result);
    eddy_loop_free(loop);
    return err;
}

/* run_task on a fresh default loop, freed afterwards: the task's error, or
 * its result as an int (a test's main task returns 0 or an error code). */
static inline int run_main(eddy_task_fn fn, void *arg)
{
    eddy_loop *loop = new_loop();
    intptr_t result = -1;
    int err = run_task(loop, fn, arg, &result);
    eddy_loop_free(loop);
    return err < 0 ? err : (int)result;
}

/* The current loop's clock (call from a task or callback). */
static inline int64_t loop_now(void)
{
    eddy_loop *loop = eddy_loop_current();
    cr_assert(ne(ptr, loop, NULL), "no loop is running on this thread");
    return eddy_now(loop);
}

/* Wall-clock monotonic time, independent of the loop's (virtual) clock. */
static inline int64_t wall_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * NS_PER_SEC + ts.tv_nsec;
}

/* ---- completing futures and cancelling tasks from timers ----------------- */

enum later_action { LATER_RESULT, LATER_ERROR, LATER_CANCEL_FUTURE, LATER_CANCEL_TASK };

struct later {
    enum later_action action;
    eddy_future *future;
    eddy_task *task;
    intptr_t value;
};

static inline void later_fire(void *arg)
{
    struct later *l = arg;
    switch (l->action) {
    case LATER_RESULT:
        cr_expect(eq(int, eddy_future_set_result(l->future, l->value), 0));
        break;
    case LATER_ERROR:
        cr_expect(eq(int, eddy_future_set_error(l->future, (int)l->value), 0));
        break;
    case LATER_CANCEL_FUTURE:
        cr_expect(eddy_future_cancel(l->future), "future already done when cancelled");
        break;
    case LATER_CANCEL_TASK:
        cr_expect(eddy_task_cancel(l->task), "task already done when cancelled");
        break;
    }
    if (l->future) eddy_future_unref(l->future);
    free(l);
}

static inline void later_arm(eddy_loop *loop, int64_t delay_ns, struct later *l)
{
    if (!loop) loop = eddy_loop_current();
    cr_assert(ne(ptr, loop, NULL));
    if (l->future) eddy_future_ref(l->future); /* held until the timer fired */
    cr_assert(eq(int, eddy_call_later(loop, delay_ns, later_fire, l, NULL), 0));
}

static inline struct later *later_new(enum later_action action)
{
    struct later *l = calloc(1, sizeof(*l));
    cr_assert(ne(ptr, l, NULL));
    l->action = action;
    return l;
}

/* After delay_ns on loop (NULL = the current loop), completes f with value. */
static inline void set_result_later(eddy_loop *loop, eddy_future *f, int64_t delay_ns,
                                    intptr_t value)
{
    struct later *l = later_new(LATER_RESULT);
    l->future = f;
    l->value = value;
    later_arm(loop, delay_ns, l);
}

/* After delay_ns, fails f with err. */
static inline void set_error_later(eddy_loop *loop, eddy_future *f, int64_t delay_ns, int err)
{
    struct later *l = later_new(LATER_ERROR);
    l->future = f;
    l->value = err;
    later_arm(loop, delay_ns, l);
}

/* After delay_ns, cancels t (which must not have ended by then). */
static inline void cancel_task_later(eddy_loop *loop, eddy_task *t, int64_t delay_ns)
{
    struct later *l = later_new(LATER_CANCEL_TASK);
    l->task = t;
    later_arm(loop, delay_ns, l);
}

/* ---- task bodies used by several suites ---------------------------------- */

/* Returns its argument as the task's result. */
static inline intptr_t task_return_arg(void *arg)
{
    return (intptr_t)arg;
}

/* Sleeps (intptr_t)arg ns, then returns what eddy_sleep returned, or the
 * sleep time on success. */
static inline intptr_t task_sleep_arg(void *arg)
{
    int err = eddy_sleep((int64_t)(intptr_t)arg);
    return err < 0 ? err : (intptr_t)arg;
}

/* A string of one-letter events, to check the order things ran in. */
struct trace {
    char buf[256];
    size_t len;
};

static inline void trace_add(struct trace *tr, char c)
{
    if (tr->len + 1 < sizeof(tr->buf)) {
        tr->buf[tr->len++] = c;
        tr->buf[tr->len] = '\0';
    }
}

/* ---- what POSIX and Windows spell differently -------------------------------- */

#ifdef _WIN32
/* The C runtime's environment, which eddy.dll reads too (the same msvcrt). */
static inline int setenv(const char *name, const char *value, int overwrite)
{
    if (!overwrite && getenv(name)) return 0;
    return _putenv_s(name, value) == 0 ? 0 : -1;
}

static inline int unsetenv(const char *name)
{
    return _putenv_s(name, "") == 0 ? 0 : -1;
}
#endif

/* Whether h, from eddy_sock_fd or eddy_file_fd, still names an open
 * descriptor (POSIX) or handle (Windows). */
static inline bool handle_is_open(intptr_t h)
{
#ifdef _WIN32
    DWORD flags;
    return GetHandleInformation((HANDLE)h, &flags) != 0;
#else
    return fcntl((int)h, F_GETFD) != -1;
#endif
}

/* The path of name in the system's temporary directory (/tmp, or Windows'
 * GetTempPath), in out (size bytes). */
static inline void temp_path(char *out, size_t size, const char *name)
{
#ifdef _WIN32
    char base[MAX_PATH];
    DWORD len = GetTempPathA(sizeof(base), base);
    cr_assert(len > 0 && len < sizeof(base), "GetTempPath: error %lu", GetLastError());
    snprintf(out, size, "%s%s", base, name);
#else
    snprintf(out, size, "/tmp/%s", name);
#endif
}

/* Makes a new empty directory under the system's temporary directory, named
 * after prefix; its path goes to dir (size bytes). */
static inline void temp_dir_make(char *dir, size_t size, const char *prefix)
{
#ifdef _WIN32
    for (unsigned i = 0;; i++) {
        char name[100];
        snprintf(name, sizeof(name), "%s-%lu-%u", prefix, GetCurrentProcessId(), i);
        temp_path(dir, size, name);
        if (CreateDirectoryA(dir, NULL)) return;
        cr_assert(eq(u32, (uint32_t)GetLastError(), ERROR_ALREADY_EXISTS), "CreateDirectory %s",
                  dir);
    }
#else
    snprintf(dir, size, "/tmp/%s-XXXXXX", prefix);
    cr_assert(ne(ptr, mkdtemp(dir), NULL));
#endif
}

#ifdef _WIN32
/* Deletes path and, for a directory, all it holds; true on success. */
static inline bool remove_tree(const char *path)
{
    DWORD attributes = GetFileAttributesA(path);
    if (attributes == INVALID_FILE_ATTRIBUTES) return false;
    if (!(attributes & FILE_ATTRIBUTE_DIRECTORY)) return DeleteFileA(path) != 0;
    char pattern[MAX_PATH], child[MAX_PATH];
    snprintf(pattern, sizeof(pattern), "%s\\*", path);
    WIN32_FIND_DATAA entry;
    HANDLE find = FindFirstFileA(pattern, &entry);
    bool ok = true;
    if (find != INVALID_HANDLE_VALUE) {
        do {
            if (strcmp(entry.cFileName, ".") == 0 || strcmp(entry.cFileName, "..") == 0) continue;
            snprintf(child, sizeof(child), "%s\\%s", path, entry.cFileName);
            ok = remove_tree(child) && ok;
        } while (FindNextFileA(find, &entry));
        FindClose(find);
    }
    return RemoveDirectoryA(path) && ok;
}
#endif

/* Removes what temp_dir_make made, with everything in it. */
static inline void temp_dir_remove(const char *dir)
{
#ifdef _WIN32
    cr_expect(remove_tree(dir), "removing %s: error %lu", dir, GetLastError());
#else
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    cr_expect(eq(int, system(cmd), 0));
#endif
}

#endif /* EDDY_TEST_HELPERS_H */
