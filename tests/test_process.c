/* SPDX-License-Identifier: MIT */
/* Subprocesses, pipes and adopted descriptors: eddy_process_*, eddy_pipe,
 * eddy_pipe_open, eddy_sock_open, on each backend that has them (the
 * capability subprocess; the others check -ENOTSUP). */
#include "helpers.h"

#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#endif
#ifndef RUNNING_ON_VALGRIND
#define RUNNING_ON_VALGRIND 0
#endif

#ifdef _WIN32
#include <signal.h>

#include "child.h"

/* The children: the test binary itself, acting as cat, echo, exit or sleep
 * (tests/child.c), so that no program of Wine's own is needed. */
#define PROGRAM child_program()
#define ARGV(...)                                                                                  \
    {                                                                                              \
        "eddy-test-child", CHILD_FLAG, __VA_ARGS__, NULL                                           \
    }
#define ARGV_CAT          ARGV("cat")
#define ARGV_TRUE         ARGV("exit", "0")
#define ARGV_SLEEP_5S     ARGV("sleep", "5000")
#define ARGV_SLEEP_EXIT_7 ARGV("sleep", "300", "7")
#define ARGV_LINES(...)   ARGV("echo", __VA_ARGS__) /* each argument on a line */
#define NOT_OPEN          ((intptr_t)0x7654)
#define MISSING_PATH      "C:\\nonexistent\\eddy-no-such-program.exe"
#else
#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define PROGRAM NULL /* argv[0], searched in PATH */
#define ARGV(...)                                                                                  \
    {                                                                                              \
        __VA_ARGS__, NULL                                                                          \
    }
#define ARGV_CAT          ARGV("cat")
#define ARGV_TRUE         ARGV("true")
#define ARGV_SLEEP_5S     ARGV("sleep", "5")
#define ARGV_SLEEP_EXIT_7 ARGV("sh", "-c", "sleep 0.3; exit 7")
#define ARGV_LINES(...)   ARGV("printf", "%s\\n", __VA_ARGS__)
#define NOT_OPEN          987
#define MISSING_PATH      "/nonexistent/eddy-no-such-program"
#endif

static bool exited_with(int status, int code)
{
    return WIFEXITED(status) && WEXITSTATUS(status) == code;
}

static bool killed_by(int status, int sig)
{
    return WIFSIGNALED(status) && WTERMSIG(status) == sig;
}

static bool have_subprocess(eddy_loop *loop)
{
    return eddy_loop_supports(loop, EDDY_CAP_SUBPROCESS) != EDDY_NONE;
}

/* A loop on which subprocesses work, or the test is skipped. */
static eddy_loop *process_loop(void)
{
    eddy_loop *loop = new_loop();
    if (!have_subprocess(loop)) {
        const char *name = eddy_loop_backend(loop);
        eddy_loop_free(loop);
        cr_skip_test("%s: no subprocess support here", name);
    }
    return loop;
}

#ifndef _WIN32
static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    cr_assert(ne(ptr, d, NULL));
    int n = 0;
    while (readdir(d))
        n++;
    closedir(d);
    return n;
}
#else
/* The handles this process holds: GetProcessHandleCount, or where that
 * says 0 (Wine does not count), the entries of the system's handle table
 * (NtQuerySystemInformation's SystemHandleInformation) that are ours. 0:
 * neither can tell. */
static DWORD handle_count(void)
{
    DWORD n = 0;
    if (GetProcessHandleCount(GetCurrentProcess(), &n) && n > 0) return n;
    typedef LONG(NTAPI * query_fn)(int, void *, ULONG, ULONG *);
    HMODULE ntdll = GetModuleHandleW(L"ntdll.dll");
    query_fn query =
        ntdll ? (query_fn)(void (*)(void))GetProcAddress(ntdll, "NtQuerySystemInformation") : NULL;
    if (!query) return 0;
    struct entry {
        ULONG pid;
        UCHAR type, flags;
        USHORT handle;
        void *object;
        ACCESS_MASK access;
    };
    struct table {
        ULONG count;
        struct entry e[1];
    };
    ULONG size = 1 << 16;
    for (;;) {
        struct table *t = malloc(size);
        cr_assert(ne(ptr, t, NULL));
        ULONG need = 0;
        LONG status = query(16 /* SystemHandleInformation */, t, size, &need);
        if (status == (LONG)0xC0000004) { /* STATUS_INFO_LENGTH_MISMATCH */
            free(t);
            size = need > size ? need + 4096 : size * 2;
            continue;
        }
        n = 0;
        for (ULONG i = 0; status >= 0 && i < t->count; i++)
            if (t->e[i].pid == GetCurrentProcessId()) n++;
        free(t);
        return n;
    }
}
#endif

/* Spawns argv with the given stdio modes; asserts it worked. */
static eddy_process *spawn_with(char *const *argv, int in, int out, int err)
{
    eddy_process_options o = EDDY_PROCESS_OPTIONS_INIT(.file = PROGRAM, .argv = argv);
    o.stdio[0].mode = in;
    o.stdio[1].mode = out;
    o.stdio[2].mode = err;
    eddy_process *p = NULL;
    int rc = eddy_process_spawn(&p, &o);
    cr_assert(eq(int, rc, 0), "spawn %s: %s", argv[0], eddy_strerror(rc));
    return p;
}

/* Reads s to its end into buf (up to cap); the count, or an error. */
static ssize_t read_all(eddy_stream *s, char *buf, size_t cap)
{
    size_t got = 0;
    for (;;) {
        ssize_t n = eddy_stream_read(s, buf + got, cap - got > 65536 ? 65536 : cap - got);
        if (n < 0) return n;
        if (n == 0) return (ssize_t)got;
        got += (size_t)n;
        if (got == cap) return (ssize_t)got;
    }
}

/* The same for a socket (a pipe end of eddy_pipe's). */
static ssize_t read_sock_all(eddy_sock *s, char *buf, size_t cap)
{
    size_t got = 0;
    for (;;) {
        ssize_t n = eddy_recv(s, buf + got, cap - got > 65536 ? 65536 : cap - got);
        if (n < 0) return n;
        if (n == 0) return (ssize_t)got;
        got += (size_t)n;
        if (got == cap) return (ssize_t)got;
    }
}

/* ---- streaming through cat ----------------------------------------------------- */

#define CAT_CHILDREN 8
#define CAT_BYTES    (4 << 20)

struct cat_child {
    eddy_process *p;
    char *out;
    size_t got;
    int write_err, read_err, status;
};

static intptr_t cat_writer(void *arg)
{
    struct cat_child *c = arg;
    static char block[65536];
    for (size_t i = 0; i < sizeof block; i++)
        block[i] = (char)(i * 7 + 3);
    eddy_stream *in = eddy_process_stdin(c->p);
    for (size_t sent = 0; sent < CAT_BYTES; sent += sizeof block) {
        int err = eddy_stream_write(in, block, sizeof block);
        if (err == 0) err = eddy_stream_drain(in); /* the brake: the high mark */
        if (err < 0) {
            c->write_err = err;
            return 0;
        }
    }
    c->write_err = eddy_stream_close(in); /* EOF for cat */
    return 0;
}

static intptr_t cat_reader(void *arg)
{
    struct cat_child *c = arg;
    ssize_t n = read_all(eddy_process_stdout(c->p), c->out, CAT_BYTES + 1);
    if (n < 0)
        c->read_err = (int)n;
    else
        c->got = (size_t)n;
    return 0;
}

static intptr_t cat_many(void *arg)
{
    struct cat_child *kids = arg;
    char *argv[] = ARGV_CAT;
    eddy_task *tasks[2 * CAT_CHILDREN];
    for (int i = 0; i < CAT_CHILDREN; i++) {
        kids[i].p = spawn_with(argv, EDDY_STDIO_PIPE, EDDY_STDIO_PIPE, EDDY_STDIO_INHERIT);
        kids[i].out = malloc(CAT_BYTES + 1);
        cr_assert(ne(ptr, kids[i].out, NULL));
        tasks[2 * i] = eddy_spawn(NULL, cat_writer, &kids[i]);
        tasks[2 * i + 1] = eddy_spawn(NULL, cat_reader, &kids[i]);
    }
    for (int i = 0; i < 2 * CAT_CHILDREN; i++)
        cr_assert(eq(int, eddy_task_join(tasks[i], NULL), 0));
    for (int i = 0; i < CAT_CHILDREN; i++) {
        cr_assert(eq(int, eddy_process_wait(kids[i].p, &kids[i].status), 0));
        eddy_process_free(kids[i].p);
    }
    return 0;
}

Test(process, eight_cats_stream_4mib_each_without_deadlock, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = process_loop();
    struct cat_child kids[CAT_CHILDREN] = {{0}};
    intptr_t v;
    cr_assert(eq(int, run_task(loop, cat_many, kids, &v), 0));
    for (int i = 0; i < CAT_CHILDREN; i++) {
        cr_assert(eq(int, kids[i].write_err, 0), "child %d: %s", i,
                  eddy_strerror(kids[i].write_err));
        cr_assert(eq(int, kids[i].read_err, 0), "child %d: %s", i, eddy_strerror(kids[i].read_err));
        cr_assert(eq(sz, kids[i].got, (size_t)CAT_BYTES), "child %d", i);
        for (size_t j = 0; j < CAT_BYTES; j += 4099)
            cr_assert(eq(chr, kids[i].out[j], (char)((j % 65536) * 7 + 3)), "child %d byte %zu", i,
                      j);
        cr_assert(exited_with(kids[i].status, 0));
        free(kids[i].out);
    }
    eddy_loop_free(loop);
}

/* ---- timeouts, cancellation ------------------------------------------------------- */

struct timed {
    int recv_err, scope_err, status;
    int64_t took;
};

static intptr_t read_with_deadline(void *arg)
{
    struct timed *t = arg;
    char *argv[] = ARGV_SLEEP_5S;
    eddy_process *p = spawn_with(argv, EDDY_STDIO_NULL, EDDY_STDIO_PIPE, EDDY_STDIO_INHERIT);
    char buf[16];
    eddy_timeout scope;
    int64_t start = wall_ns();
    cr_assert(eq(int, eddy_timeout_begin(&scope, 200 * NS_PER_MS), 0));
    t->recv_err = (int)eddy_stream_read(eddy_process_stdout(p), buf, sizeof buf);
    t->scope_err = eddy_timeout_end(&scope);
    t->took = wall_ns() - start;
    cr_assert(eq(int, eddy_process_kill(p, SIGKILL), 0));
    cr_assert(eq(int, eddy_process_wait(p, &t->status), 0));
    eddy_process_free(p);
    return 0;
}

Test(process, timeout_on_child_stdout_fires_on_time, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = process_loop();
    struct timed t = {0};
    intptr_t v;
    cr_assert(eq(int, run_task(loop, read_with_deadline, &t, &v), 0));
    cr_assert(eq(int, t.recv_err, -ECANCELED));
    cr_assert(eq(int, t.scope_err, -ETIMEDOUT));
    cr_assert(ge(i64, t.took, 190 * NS_PER_MS));
    cr_assert(lt(i64, t.took, 1000 * NS_PER_MS), "took %lld ms", (long long)(t.took / NS_PER_MS));
    cr_assert(killed_by(t.status, SIGKILL));
    eddy_loop_free(loop);
}

static intptr_t wait_cancelled_then_again(void *arg)
{
    struct timed *t = arg;
    char *argv[] = ARGV_SLEEP_EXIT_7;
    eddy_process *p = spawn_with(argv, EDDY_STDIO_NULL, EDDY_STDIO_NULL, EDDY_STDIO_NULL);
    eddy_timeout scope;
    cr_assert(eq(int, eddy_timeout_begin(&scope, 50 * NS_PER_MS), 0));
    t->recv_err = eddy_process_wait(p, &t->status);
    t->scope_err = eddy_timeout_end(&scope);
    cr_assert(eq(int, eddy_process_kill(p, 0), 0), "the child is still there");
    int64_t start = wall_ns();
    cr_assert(eq(int, eddy_process_wait(p, &t->status), 0));
    t->took = wall_ns() - start;
    cr_assert(eq(int, eddy_process_wait(p, NULL), 0), "a reaped child answers at once");
    cr_assert(eq(int, eddy_process_kill(p, SIGTERM), -ESRCH));
    eddy_process_free(p);
    return 0;
}

Test(process, cancelled_wait_leaves_child_and_object, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = process_loop();
    struct timed t = {0};
    intptr_t v;
    cr_assert(eq(int, run_task(loop, wait_cancelled_then_again, &t, &v), 0));
    cr_assert(eq(int, t.recv_err, -ECANCELED));
    cr_assert(eq(int, t.scope_err, -ETIMEDOUT));
    cr_assert(exited_with(t.status, 7));
    cr_assert(gt(i64, t.took, 100 * NS_PER_MS));
    eddy_loop_free(loop);
}

#ifndef _WIN32
/* io_uring waits with IORING_OP_WAITID where the kernel has it; the pidfd
 * poll it falls back on is the same as epoll's, and must work there too. */
Test(process, exits_seen_without_waitid, .timeout = TEST_TIMEOUT)
{
    setenv("EDDY_URING_WAITID", "0", 1);
    eddy_loop *loop = process_loop();
    struct timed t = {0};
    intptr_t v;
    cr_assert(eq(int, run_task(loop, wait_cancelled_then_again, &t, &v), 0));
    cr_assert(eq(int, t.recv_err, -ECANCELED));
    cr_assert(exited_with(t.status, 7));
    eddy_loop_free(loop);
}
#endif

/* ---- EPIPE ------------------------------------------------------------------------- */

static intptr_t write_to_gone_readers(void *arg)
{
    (void)arg;
    eddy_sock *ends[2];
    cr_assert(eq(int, eddy_pipe(ends), 0));
    cr_assert(eq(int, eddy_sock_close(ends[0]), 0));
    cr_assert(eq(sz, (size_t)eddy_send(ends[1], "x", 1), (size_t)-EPIPE));
    cr_assert(eq(int, eddy_sock_close(ends[1]), 0));
    /* A child's stdin whose reader exited. */
    char *argv[] = ARGV_TRUE;
    eddy_process *p = spawn_with(argv, EDDY_STDIO_PIPE, EDDY_STDIO_NULL, EDDY_STDIO_NULL);
    cr_assert(eq(int, eddy_process_wait(p, NULL), 0));
    static char big[1 << 20];
    cr_assert(eq(int, eddy_stream_write(eddy_process_stdin(p), big, sizeof big), 0), "buffered");
    cr_assert(eq(int, eddy_stream_drain(eddy_process_stdin(p)), -EPIPE));
    cr_assert(eq(int, eddy_stream_write(eddy_process_stdin(p), "x", 1), -EPIPE), "sticky");
    eddy_process_free(p);
    return 0;
}

Test(process, reader_gone_gives_writer_epipe_and_the_process_lives, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = process_loop();
    intptr_t v;
    cr_assert(eq(int, run_task(loop, write_to_gone_readers, NULL, &v), 0));
    eddy_loop_free(loop);
}

/* Closing stdin early is allowed: the process forgets it, and cat sees EOF. */
static intptr_t close_stdin_early(void *arg)
{
    (void)arg;
    char *argv[] = ARGV_CAT;
    eddy_process *p = spawn_with(argv, EDDY_STDIO_PIPE, EDDY_STDIO_PIPE, EDDY_STDIO_INHERIT);
    cr_assert(eq(int, eddy_stream_write(eddy_process_stdin(p), "abc", 3), 0));
    /* A pipe has no half-close: write_eof sends what is buffered, and says so. */
    cr_assert(eq(int, eddy_stream_write_eof(eddy_process_stdin(p)), -ENOTSOCK));
    cr_assert(eq(sz, eddy_stream_write_buffer_size(eddy_process_stdin(p)), (size_t)0));
    cr_assert(eq(int, eddy_stream_close(eddy_process_stdin(p)), 0));
    cr_assert(eq(ptr, eddy_process_stdin(p), NULL));
    char buf[8];
    cr_assert(eq(sz, (size_t)read_all(eddy_process_stdout(p), buf, sizeof buf), (size_t)3));
    int status;
    cr_assert(eq(int, eddy_process_wait(p, &status), 0));
    cr_assert(exited_with(status, 0));
    eddy_process_free(p);
    return 0;
}

Test(process, closing_stdin_gives_the_child_eof, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = process_loop();
    intptr_t v;
    cr_assert(eq(int, run_task(loop, close_stdin_early, NULL, &v), 0));
    eddy_loop_free(loop);
}

/* The child's stdout as a stream: lines, then peek and consume. */
static intptr_t stdout_lines(void *arg)
{
    (void)arg;
    char *argv[] = ARGV_LINES("one", "two", "rest");
    eddy_process *p = spawn_with(argv, EDDY_STDIO_NULL, EDDY_STDIO_PIPE, EDDY_STDIO_INHERIT);
    eddy_stream *out = eddy_process_stdout(p);
    char line[16] = {0};
    cr_assert(eq(sz, (size_t)eddy_stream_readline(out, line, sizeof line), (size_t)4));
    cr_assert(eq(str, line, "one\n"));
    memset(line, 0, sizeof line);
    cr_assert(eq(sz, (size_t)eddy_stream_readuntil(out, "\n", 1, line, sizeof line), (size_t)4));
    cr_assert(eq(str, line, "two\n"));
    char rest[8] = {0};
    cr_assert(eq(sz, (size_t)eddy_stream_readexactly(out, rest, 5), (size_t)5));
    cr_assert(eq(str, rest, "rest\n"));
    const void *data;
    size_t len = 1;
    cr_assert(eq(int, eddy_stream_peek(out, &data, &len), 0));
    cr_assert(eq(sz, len, (size_t)0), "end of file");
    int status;
    cr_assert(eq(int, eddy_process_wait(p, &status), 0));
    cr_assert(exited_with(status, 0));
    eddy_process_free(p); /* closes the stream */
    return 0;
}

Test(process, child_stdout_is_a_stream, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = process_loop();
    intptr_t v;
    cr_assert(eq(int, run_task(loop, stdout_lines, NULL, &v), 0));
    eddy_loop_free(loop);
}

/* Arguments the C runtime's parser must get back as they were. */
static char *const tricky[] = {
    "plain",
    "two words",
    "",
    "tab\there",
    "a\"quote",
    "\"",
    "trailing\\",
    "two\\\\",
    "back\\\"slash",
    "\\\\server\\share",
    "c:\\dir with space\\",
    "mixed \\\" \\\\\"",
    "{}[]()*?",
    "ends with space ",
    NULL,
};

static intptr_t argv_round_trip(void *arg)
{
    char *out = arg;
    char *prefix[] = ARGV_LINES("");
    size_t n = sizeof prefix / sizeof prefix[0] - 2; /* less its "" and NULL */
    char *argv[32];
    memcpy(argv, prefix, n * sizeof argv[0]);
    for (size_t i = 0; tricky[i]; i++)
        argv[n++] = tricky[i];
    argv[n] = NULL;
    eddy_process *p = spawn_with(argv, EDDY_STDIO_NULL, EDDY_STDIO_PIPE, EDDY_STDIO_INHERIT);
    ssize_t got = read_all(eddy_process_stdout(p), out, 4095);
    cr_assert(gt(sz, (size_t)got, (size_t)0));
    out[got] = '\0';
    int status;
    cr_assert(eq(int, eddy_process_wait(p, &status), 0));
    cr_assert(exited_with(status, 0));
    eddy_process_free(p);
    return 0;
}

Test(process, argv_round_trip, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = process_loop();
    char out[4096];
    intptr_t v;
    cr_assert(eq(int, run_task(loop, argv_round_trip, out, &v), 0));
    char expect[4096] = "";
    for (size_t i = 0; tricky[i]; i++) {
        strcat(expect, tricky[i]);
        strcat(expect, "\n");
    }
    cr_assert(eq(str, out, expect));
    eddy_loop_free(loop);
}

/* ---- pipes ------------------------------------------------------------------------------ */

#define PIPE_BYTES (1 << 20)

static intptr_t pipe_writer(void *arg)
{
    eddy_sock *w = arg;
    char *data = malloc(PIPE_BYTES);
    for (size_t i = 0; i < PIPE_BYTES; i++)
        data[i] = (char)(i % 251);
    intptr_t r = eddy_send(w, data, PIPE_BYTES);
    free(data);
    (void)eddy_sock_close(w);
    return r;
}

static intptr_t pipe_round_trip(void *arg)
{
    (void)arg;
    eddy_sock *ends[2];
    cr_assert(eq(int, eddy_pipe(ends), 0));
#ifndef _WIN32
    cr_assert(eq(int, fcntl((int)eddy_sock_fd(ends[0]), F_GETFD) & FD_CLOEXEC, FD_CLOEXEC));
#endif
    eddy_task *t = eddy_spawn(NULL, pipe_writer, ends[1]);
    char *got = malloc(PIPE_BYTES + 1);
    cr_assert(eq(sz, (size_t)read_sock_all(ends[0], got, PIPE_BYTES + 1), (size_t)PIPE_BYTES));
    size_t differ = PIPE_BYTES;
    for (size_t i = 0; i < PIPE_BYTES && differ == PIPE_BYTES; i++)
        if (got[i] != (char)(i % 251)) differ = i;
    cr_assert(eq(sz, differ, (size_t)PIPE_BYTES), "byte %zu differs", differ);
    free(got);
    intptr_t sent;
    cr_assert(eq(int, eddy_task_join(t, &sent), 0));
    cr_assert(eq(i64, (int64_t)sent, PIPE_BYTES));
    /* A read with nothing coming is cut short by a deadline. */
    eddy_sock *again[2];
    cr_assert(eq(int, eddy_pipe(again), 0));
    eddy_timeout scope;
    char c;
    cr_assert(eq(int, eddy_timeout_begin(&scope, 50 * NS_PER_MS), 0));
    cr_assert(eq(sz, (size_t)eddy_recv(again[0], &c, 1), (size_t)-ECANCELED));
    cr_assert(eq(int, eddy_timeout_end(&scope), -ETIMEDOUT));
    cr_assert(eq(int, eddy_sock_close(again[0]), 0));
    cr_assert(eq(int, eddy_sock_close(again[1]), 0));
    cr_assert(eq(int, eddy_sock_close(ends[0]), 0));
    return 0;
}

Test(process, pipe_round_trip, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_loop();
    intptr_t v;
    cr_assert(eq(int, run_task(loop, pipe_round_trip, NULL, &v), 0));
    eddy_loop_free(loop);
}

/* ---- spawning: bad input, a missing program ------------------------------------------- */

static intptr_t spawn_missing(void *arg)
{
    (void)arg;
    eddy_process *p = (eddy_process *)1;
    char *path_argv[] = {MISSING_PATH, NULL};
    eddy_process_options o = {.argv = path_argv};
    cr_assert(eq(int, eddy_process_spawn(&p, &o), -ENOENT));
    cr_assert(eq(ptr, p, NULL));
    char *search_argv[] = {"eddy-no-such-program-in-path", NULL};
    o.argv = search_argv;
    o.stdio[1].mode = EDDY_STDIO_PIPE;
#ifdef _WIN32
    DWORD before = handle_count();
    cr_assert(eq(int, eddy_process_spawn(&p, &o), -ENOENT));
    cr_assert(eq(u32, handle_count(), before), "a failed spawn leaves no handle");
#else
    int before = count_fds();
    cr_assert(eq(int, eddy_process_spawn(&p, &o), -ENOENT));
    cr_assert(eq(int, count_fds(), before), "a failed spawn leaves no descriptor");
#endif
    return 0;
}

Test(process, missing_executable_is_enoent, .timeout = TEST_TIMEOUT)
{
    if (RUNNING_ON_VALGRIND)
        cr_skip_test("Valgrind makes posix_spawn's vfork-style clone a fork: a failed exec "
                     "comes back as a child exiting 127");
    eddy_loop *loop = process_loop();
    intptr_t v;
    cr_assert(eq(int, run_task(loop, spawn_missing, NULL, &v), 0));
    eddy_loop_free(loop);
}

static intptr_t bad_options(void *arg)
{
    (void)arg;
    eddy_process *p;
    char *argv[] = ARGV_TRUE;
    char *empty[] = {NULL};
    cr_assert(eq(int, eddy_process_spawn(NULL, NULL), -EINVAL));
    cr_assert(eq(int, eddy_process_spawn(&p, NULL), -EINVAL));
    eddy_process_options o = {.file = PROGRAM};
    cr_assert(eq(int, eddy_process_spawn(&p, &o), -EINVAL), "argv NULL");
    o.argv = empty;
    cr_assert(eq(int, eddy_process_spawn(&p, &o), -EINVAL), "argv[0] NULL");
    o.argv = argv;
    o.stdio[1].mode = 42;
    cr_assert(eq(int, eddy_process_spawn(&p, &o), -EINVAL), "a bad stdio mode");
    o.stdio[1].mode = EDDY_STDIO_FD;
    o.stdio[1].fd = NOT_OPEN;
    cr_assert(eq(int, eddy_process_spawn(&p, &o), -EBADF), "a closed fd");
    o.stdio[1].mode = EDDY_STDIO_INHERIT;
    o.flags = 1u << 30;
    cr_assert(eq(int, eddy_process_spawn(&p, &o), -EINVAL), "an unknown flag");
    o.flags = 0;
    o.size = 3;
    cr_assert(eq(int, eddy_process_spawn(&p, &o), -EINVAL), "a size that is no layout's");
    cr_assert(eq(int, eddy_process_wait(NULL, NULL), -EINVAL));
    cr_assert(eq(int, eddy_process_kill(NULL, 0), -EINVAL));
    cr_assert(eq(i64, (int64_t)eddy_process_pid(NULL), -EINVAL));
    cr_assert(eq(ptr, eddy_process_stdin(NULL), NULL));
    eddy_process_free(NULL);
    o.size = sizeof o;
    cr_assert(eq(int, eddy_process_spawn(&p, &o), 0));
    cr_assert(eq(ptr, eddy_process_stdout(p), NULL), "not piped");
    cr_assert(eq(int, eddy_process_kill(p, -1), -EINVAL));
    cr_assert(eq(int, eddy_process_kill(p, 100000), -EINVAL));
    cr_assert(eq(int, eddy_process_wait(p, NULL), 0));
    eddy_process_free(p);
    return 0;
}

Test(process, bad_input_is_refused, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = process_loop();
    intptr_t v;
    cr_assert(eq(int, run_task(loop, bad_options, NULL, &v), 0));
    /* Outside a task: spawning works, waiting does not. */
    char *argv[] = ARGV_TRUE;
    eddy_process_options o = {.file = PROGRAM, .argv = argv};
    eddy_process *p;
    cr_assert(eq(int, eddy_process_spawn(&p, &o), 0));
    cr_assert(eq(int, eddy_process_wait(p, NULL), -EPERM));
    eddy_process_free(p);
    /* A piped stdio is a stream on the spawning thread's loop: none here. */
    o.stdio[1].mode = EDDY_STDIO_PIPE;
    p = (eddy_process *)1;
    cr_assert(eq(int, eddy_process_spawn(&p, &o), -EPERM));
    cr_assert(eq(ptr, p, NULL));
    eddy_loop_free(loop);
}

/* An adopted listener accepts, its connection carries bytes; all closed. */
static void accept_round_trip(eddy_sock *listener)
{
    eddy_sock *client, *server;
    int port = eddy_sock_port(listener);
    cr_assert(gt(int, port, 0));
    cr_assert(eq(int, eddy_tcp_connect(&client, "127.0.0.1", (uint16_t)port), 0));
    cr_assert(eq(int, eddy_accept(listener, &server), 0));
    cr_assert(eq(sz, (size_t)eddy_send(client, "hi", 2), (size_t)2));
    char buf[4] = {0};
    cr_assert(eq(sz, (size_t)eddy_recv(server, buf, sizeof buf), (size_t)2));
    cr_assert(eq(str, buf, "hi"));
    cr_assert(eq(int, eddy_sock_close(server), 0));
    cr_assert(eq(int, eddy_sock_close(client), 0));
    cr_assert(eq(int, eddy_sock_close(listener), 0));
}

#ifndef _WIN32
/* ---- no zombie, no descriptor left ------------------------------------------------------ */

static int spawn_cycles(void)
{
    const char *env = getenv("EDDY_TEST_SPAWN_CYCLES");
    /* Valgrind follows each child, a third of a second apiece. */
    return env && *env ? atoi(env) : RUNNING_ON_VALGRIND ? 20 : 1000;
}

static intptr_t spawn_wait_cycles(void *arg)
{
    int *failures = arg;
    char *argv[] = {"/bin/true", NULL};
    for (int i = spawn_cycles(); i > 0; i--) {
        eddy_process *p =
            spawn_with(argv, EDDY_STDIO_INHERIT, EDDY_STDIO_INHERIT, EDDY_STDIO_INHERIT);
        int status = -1;
        cr_assert(eq(int, eddy_process_wait(p, &status), 0));
        if (!exited_with(status, 0)) ++*failures;
        eddy_process_free(p);
    }
    return 0;
}

/* 1 000 cycles here (20 under Valgrind); `make check-processes` runs 10 000. */
Test(process, spawn_wait_cycles_leave_no_zombie_nor_descriptor, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = process_loop();
    intptr_t v;
    int failures = 0;
    int fds_before = count_fds();
    cr_assert(eq(int, run_task(loop, spawn_wait_cycles, &failures, &v), 0));
    cr_assert(eq(int, failures, 0));
    cr_assert(eq(int, count_fds(), fds_before));
    errno = 0;
    cr_assert(eq(int, (int)waitpid(-1, NULL, WNOHANG), -1), "a child is left");
    cr_assert(eq(int, errno, ECHILD));
    eddy_loop_free(loop);
}

/* The state letter of /proc/PID/stat, or 0 once the process is gone. */
static char proc_state(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *close_paren = strrchr(buf, ')');
    return close_paren && close_paren[1] ? close_paren[2] : '?';
}

static intptr_t free_early(void *arg)
{
    pid_t *pid = arg;
    char *argv[] = {"sleep", "0.2", NULL};
    eddy_process *p = spawn_with(argv, EDDY_STDIO_NULL, EDDY_STDIO_PIPE, EDDY_STDIO_NULL);
    *pid = (pid_t)eddy_process_pid(p);
    eddy_process_free(p);
    return 0;
}

Test(process, freed_before_exit_leaves_no_zombie, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = process_loop();
    pid_t pid = 0;
    intptr_t v;
    int64_t start = wall_ns();
    cr_assert(eq(int, run_task(loop, free_early, &pid, &v), 0));
    cr_assert(lt(i64, wall_ns() - start, (RUNNING_ON_VALGRIND ? 1000 : 150) * NS_PER_MS),
              "the loop waited for the child");
    cr_assert(gt(int, (int)pid, 0));
    char state = proc_state(pid);
    cr_assert(state != 0 && state != 'Z', "the child is running (state %c)", state ? state : '-');
    /* It exits after 0.2 s; within 3 s it must be reaped, not a zombie. */
    while ((state = proc_state(pid)) != 0 && wall_ns() - start < 3 * NS_PER_SEC)
        usleep(10000);
    cr_assert(eq(int, state, 0), "pid %d is still there, state %c", (int)pid, state);
    eddy_loop_free(loop);
}

static int64_t cpu_ns_used(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (int64_t)ts.tv_sec * NS_PER_SEC + ts.tv_nsec;
}

struct polled_then_freed {
    pid_t pid;
    int64_t cpu;
};

/* The pidfd was polled by the loop (a wait, cut short) before the free: the
 * loop must forget it, and the child's exit must wake nothing of the loop's. */
static intptr_t wait_cut_short_then_free(void *arg)
{
    struct polled_then_freed *r = arg;
    char *argv[] = {"sleep", "0.2", NULL};
    eddy_process *p = spawn_with(argv, EDDY_STDIO_NULL, EDDY_STDIO_NULL, EDDY_STDIO_NULL);
    r->pid = (pid_t)eddy_process_pid(p);
    eddy_timeout scope;
    cr_assert(eq(int, eddy_timeout_begin(&scope, 20 * NS_PER_MS), 0));
    cr_assert(eq(int, eddy_process_wait(p, NULL), -ECANCELED));
    cr_assert(eq(int, eddy_timeout_end(&scope), -ETIMEDOUT));
    eddy_process_free(p);
    int64_t cpu = cpu_ns_used();
    cr_assert(eq(int, eddy_sleep(500 * NS_PER_MS), 0)); /* the child exits meanwhile */
    r->cpu = cpu_ns_used() - cpu;
    return 0;
}

Test(process, freed_after_a_cancelled_wait_leaves_no_zombie_and_no_spin, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = process_loop();
    struct polled_then_freed r = {0};
    intptr_t v;
    cr_assert(eq(int, run_task(loop, wait_cut_short_then_free, &r, &v), 0));
    cr_assert(lt(i64, r.cpu, 100 * NS_PER_MS), "the loop spun: %lld ms of CPU",
              (long long)(r.cpu / NS_PER_MS));
    int64_t start = wall_ns();
    char state;
    while ((state = proc_state(r.pid)) != 0 && wall_ns() - start < 3 * NS_PER_SEC)
        usleep(10000);
    cr_assert(eq(int, state, 0), "pid %d is still there, state %c", (int)r.pid, state);
    eddy_loop_free(loop);
}

/* Without pidfds (a kernel before 5.3, Valgrind): io_uring and epoll poll
 * waitpid on a timer (emulated), kqueue keeps EVFILT_PROC; waits stay
 * cancel-safe, and a freed child is still reaped. */
static intptr_t without_pidfd(void *arg)
{
    struct timed *t = arg;
    wait_cancelled_then_again(t);
    int failures = 0;
    setenv("EDDY_TEST_SPAWN_CYCLES", "50", 1);
    spawn_wait_cycles(&failures);
    cr_assert(eq(int, failures, 0));
    pid_t pid;
    free_early(&pid);
    int64_t start = wall_ns();
    char state;
    while ((state = proc_state(pid)) != 0 && wall_ns() - start < 3 * NS_PER_SEC)
        usleep(10000);
    cr_assert(eq(int, state, 0), "pid %d is still there, state %c", (int)pid, state);
    return 0;
}

Test(process, exits_seen_without_pidfds, .timeout = TEST_TIMEOUT)
{
    setenv("EDDY_PROCESS_NO_PIDFD", "1", 1);
    eddy_loop *loop = process_loop();
    eddy_support want =
        strcmp(eddy_loop_backend(loop), "kqueue") == 0 ? EDDY_NATIVE : EDDY_EMULATED;
    cr_assert(eq(int, (int)eddy_loop_supports(loop, EDDY_CAP_SUBPROCESS), (int)want));
    struct timed t = {0};
    intptr_t v;
    int fds_before = count_fds();
    cr_assert(eq(int, run_task(loop, without_pidfd, &t, &v), 0));
    cr_assert(eq(int, t.recv_err, -ECANCELED));
    cr_assert(exited_with(t.status, 7));
    cr_assert(eq(int, count_fds(), fds_before));
    eddy_loop_free(loop);
}

/* ---- spawning: errors, cwd, env, group ------------------------------------------------------ */

struct seen {
    char out[512];
    pid_t pid;
    int status;
};

static intptr_t spawn_cwd_env_group(void *arg)
{
    struct seen *s = arg;
    char *argv[] = {"sh", "-c",
                    "pwd; echo \"$X\" \"${EDDY_TEST_PARENT_ONLY:-unset}\"; "
                    "cut -d' ' -f5 /proc/$$/stat",
                    NULL};
    /* The parent's environment (Valgrind's own variables, PATH) less one
     * variable, plus X. */
    extern char **environ;
    setenv("EDDY_TEST_PARENT_ONLY", "1", 1);
    size_t n_env = 0;
    while (environ[n_env])
        n_env++;
    char **env = calloc(n_env + 2, sizeof *env);
    cr_assert(ne(ptr, env, NULL));
    size_t kept = 0;
    for (size_t i = 0; i < n_env; i++)
        if (strncmp(environ[i], "EDDY_TEST_PARENT_ONLY=", 22) != 0 && strncmp(environ[i], "X=", 2))
            env[kept++] = environ[i];
    env[kept] = "X=hello from eddy";
    eddy_process_options o = EDDY_PROCESS_OPTIONS_INIT(.argv = argv, .env = env, .cwd = "/tmp",
                                                       .flags = EDDY_PROCESS_NEW_GROUP);
    o.stdio[1].mode = EDDY_STDIO_PIPE;
    eddy_process *p;
    cr_assert(eq(int, eddy_process_spawn(&p, &o), 0));
    s->pid = (pid_t)eddy_process_pid(p);
    ssize_t n = read_all(eddy_process_stdout(p), s->out, sizeof s->out - 1);
    cr_assert(ge(sz, (size_t)n, (size_t)1));
    s->out[n] = '\0';
    cr_assert(eq(int, eddy_process_wait(p, &s->status), 0));
    eddy_process_free(p);
    free(env);
    return 0;
}

Test(process, child_sees_cwd_env_and_new_group, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = process_loop();
    struct seen s = {0};
    intptr_t v;
    cr_assert(eq(int, run_task(loop, spawn_cwd_env_group, &s, &v), 0));
    char expect[512];
    snprintf(expect, sizeof expect, "/tmp\nhello from eddy unset\n%d\n", (int)s.pid);
    cr_assert(eq(str, s.out, expect));
    cr_assert(exited_with(s.status, 0));
    eddy_loop_free(loop);
}

/* Stdio to a descriptor of the parent's, and to /dev/null. */
static intptr_t stdio_to_fd(void *arg)
{
    int *fds = arg;
    char *argv[] = {"sh", "-c", "echo out; echo err >&2; cat", NULL};
    eddy_process_options o = {.argv = argv};
    o.stdio[0].mode = EDDY_STDIO_NULL;
    o.stdio[1].mode = EDDY_STDIO_FD;
    o.stdio[1].fd = fds[1];
    o.stdio[2].mode = EDDY_STDIO_NULL;
    eddy_process *p;
    cr_assert(eq(int, eddy_process_spawn(&p, &o), 0));
    cr_assert(eq(int, eddy_process_wait(p, NULL), 0));
    eddy_process_free(p);
    return 0;
}

Test(process, stdio_to_a_parent_fd_and_dev_null, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = process_loop();
    int fds[2];
    cr_assert(eq(int, pipe(fds), 0));
    intptr_t v;
    cr_assert(eq(int, run_task(loop, stdio_to_fd, fds, &v), 0));
    close(fds[1]);
    char buf[64] = {0};
    cr_assert(eq(int, (int)read(fds[0], buf, sizeof buf - 1), 4));
    cr_assert(eq(str, buf, "out\n"));
    close(fds[0]);
    eddy_loop_free(loop);
}

/* ---- adopted descriptors and pipes ----------------------------------------------------- */

static intptr_t socketpair_round_trip(void *arg)
{
    int *fds = arg;
    eddy_sock *s;
    cr_assert(eq(int, eddy_sock_open(&s, fds[0]), 0));
    cr_assert(eq(sz, (size_t)eddy_send(s, "ping", 4), (size_t)4));
    char buf[8] = {0};
    cr_assert(eq(int, (int)read(fds[1], buf, sizeof buf), 4));
    cr_assert(eq(str, buf, "ping"));
    cr_assert(eq(int, (int)write(fds[1], "pong", 4), 4));
    memset(buf, 0, sizeof buf);
    cr_assert(eq(sz, (size_t)eddy_recv(s, buf, sizeof buf), (size_t)4));
    cr_assert(eq(str, buf, "pong"));
    cr_assert(eq(int, fcntl(fds[0], F_GETFD) & FD_CLOEXEC, FD_CLOEXEC));
    cr_assert(eq(int, eddy_sock_close(s), 0));
    cr_assert(eq(int, fcntl(fds[0], F_GETFD), -1), "the socket owned the fd");
    return 0;
}

Test(process, sock_open_adopts_a_socketpair_end, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_loop();
    int fds[2];
    cr_assert(eq(int, socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0));
    intptr_t v;
    cr_assert(eq(int, run_task(loop, socketpair_round_trip, fds, &v), 0));
    close(fds[1]);
    /* Not a socket, not open, NULL. */
    eddy_sock *s;
    int p[2];
    cr_assert(eq(int, pipe(p), 0));
    cr_assert(eq(int, eddy_sock_open(&s, p[0]), -ENOTSOCK));
    cr_assert(eq(int, eddy_sock_open(&s, 987), -EBADF));
    cr_assert(eq(int, eddy_sock_open(&s, -1), -EBADF));
    cr_assert(eq(int, eddy_sock_open(NULL, p[0]), -EINVAL));
    cr_assert(eq(int, eddy_pipe_open(&s, 987), -EBADF));
    cr_assert(eq(int, eddy_pipe_open(&s, p[0]), 0));
    cr_assert(eq(int, eddy_sock_close(s), 0));
    cr_assert(eq(int, eddy_pipe(NULL), -EINVAL));
    close(p[1]);
    int sp[2];
    cr_assert(eq(int, socketpair(AF_UNIX, SOCK_STREAM, 0, sp), 0));
    cr_assert(eq(int, eddy_pipe_open(&s, sp[0]), -EINVAL), "a socket is no pipe");
    close(sp[0]);
    close(sp[1]);
    eddy_loop_free(loop);
}

/* An inherited listener (as systemd's socket activation hands over): adopted,
 * it accepts. */
static intptr_t adopted_listener_accepts(void *arg)
{
    eddy_sock *listener;
    cr_assert(eq(int, eddy_sock_open(&listener, *(int *)arg), 0));
    accept_round_trip(listener);
    return 0;
}

Test(process, sock_open_adopts_a_listener, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_loop();
    int fd = socket(AF_INET, SOCK_STREAM, 0); /* blocking, inheritable: as handed over */
    cr_assert(ge(int, fd, 0));
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert(eq(int, bind(fd, (struct sockaddr *)&sin, sizeof sin), 0));
    cr_assert(eq(int, listen(fd, 8), 0));
    intptr_t v;
    cr_assert(eq(int, run_task(loop, adopted_listener_accepts, &fd, &v), 0));
    eddy_loop_free(loop);
}

static intptr_t pty_read(void *arg)
{
    int *fds = arg; /* [0] master, [1] slave */
    eddy_sock *m;
    cr_assert(eq(int, eddy_pipe_open(&m, fds[0]), 0));
    cr_assert(eq(int, (int)write(fds[1], "hello\n", 6), 6));
    /* The terminal turns the newline into "\r\n", and a read of the master
     * may bring the line in more than one piece: read up to its end. */
    char buf[32] = {0};
    size_t got = 0;
    while (!memchr(buf, '\n', got) && got < sizeof buf - 1) {
        ssize_t n = eddy_recv(m, buf + got, sizeof buf - 1 - got);
        cr_assert(gt(long, (long)n, 0L));
        got += (size_t)n;
    }
    cr_assert(eq(int, strncmp(buf, "hello", 5), 0));
    cr_assert(eq(chr, buf[got - 1], '\n'), "the line's end came last: %s", buf);
    /* Nothing more comes: a deadline ends the read. */
    eddy_timeout scope;
    cr_assert(eq(int, eddy_timeout_begin(&scope, 50 * NS_PER_MS), 0));
    cr_assert(eq(sz, (size_t)eddy_recv(m, buf, sizeof buf), (size_t)-ECANCELED));
    cr_assert(eq(int, eddy_timeout_end(&scope), -ETIMEDOUT));
    cr_assert(eq(int, eddy_sock_close(m), 0));
    return 0;
}

Test(process, pipe_open_reads_a_pty, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_loop();
    int fds[2];
    fds[0] = posix_openpt(O_RDWR | O_NOCTTY);
    if (fds[0] < 0) cr_skip_test("no pty here: %s", strerror(errno));
    cr_assert(eq(int, grantpt(fds[0]), 0));
    cr_assert(eq(int, unlockpt(fds[0]), 0));
    fds[1] = open(ptsname(fds[0]), O_RDWR | O_NOCTTY);
    cr_assert(ge(int, fds[1], 0));
    intptr_t v;
    cr_assert(eq(int, run_task(loop, pty_read, fds, &v), 0));
    close(fds[1]);
    eddy_loop_free(loop);
}

static intptr_t spawn_refused(void *arg)
{
    (void)arg;
    char *argv[] = {"true", NULL};
    eddy_process_options o = {.argv = argv};
    eddy_process *p;
    cr_assert(eq(int, eddy_process_spawn(&p, &o), -ENOTSUP));
    return 0;
}

/* Where the loop's backend has no subprocesses, spawning on it says so. */
Test(process, spawn_without_the_capability_is_enotsup, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_loop();
    if (have_subprocess(loop)) {
        const char *name = eddy_loop_backend(loop);
        eddy_loop_free(loop);
        cr_skip_test("%s has subprocesses", name);
    }
    intptr_t v;
    cr_assert(eq(int, run_task(loop, spawn_refused, NULL, &v), 0));
    eddy_loop_free(loop);
}
#else /* Windows */
static intptr_t exit_codes_and_kill(void *arg)
{
    (void)arg;
    char *seven[] = ARGV("exit", "7");
    eddy_process *p = spawn_with(seven, EDDY_STDIO_NULL, EDDY_STDIO_NULL, EDDY_STDIO_NULL);
    int status = -1;
    cr_assert(eq(int, eddy_process_wait(p, &status), 0));
    cr_assert(exited_with(status, 7), "status %#x", status);
    cr_assert(gt(i64, (int64_t)eddy_process_pid(p), 0));
    eddy_process_free(p);
    char *sleeper[] = ARGV("sleep", "10000");
    p = spawn_with(sleeper, EDDY_STDIO_NULL, EDDY_STDIO_NULL, EDDY_STDIO_NULL);
    cr_assert(eq(int, eddy_process_kill(p, SIGINT), -ENOTSUP), "no way to deliver it");
    cr_assert(eq(int, eddy_process_kill(p, NSIG), -EINVAL));
    cr_assert(eq(int, eddy_process_kill(p, SIGTERM), 0));
    cr_assert(eq(int, eddy_process_wait(p, &status), 0));
    cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM, "status %#x", status);
    eddy_process_free(p);
    return 0;
}

Test(process, exit_status_and_kill, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_loop();
    intptr_t v;
    cr_assert(eq(int, run_task(loop, exit_codes_and_kill, NULL, &v), 0));
    eddy_loop_free(loop);
}

/* ---- no handle left behind ------------------------------------------------------------ */

#define SPAWN_CYCLES 100

static intptr_t spawn_wait_cycles(void *arg)
{
    int *failures = arg;
    char *argv[] = ARGV("exit", "0");
    for (int i = 0; i < SPAWN_CYCLES; i++) {
        /* every other one with piped stdio, every third freed unwaited */
        int mode = i % 2 ? EDDY_STDIO_PIPE : EDDY_STDIO_INHERIT;
        eddy_process *p = spawn_with(argv, mode, mode, EDDY_STDIO_NULL);
        int status = -1;
        if (i % 3 != 2) {
            cr_assert(eq(int, eddy_process_wait(p, &status), 0));
            if (!exited_with(status, 0)) ++*failures;
        }
        eddy_process_free(p);
    }
    return 0;
}

Test(process, spawn_wait_cycles_leave_no_handle_behind, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_loop();
    intptr_t v;
    int failures = 0;
    cr_assert(eq(int, run_task(loop, spawn_wait_cycles, &failures, &v), 0)); /* warm up */
    DWORD before = handle_count();
    if (before == 0) cr_skip_test("this system cannot count a process's handles");
    cr_assert(eq(int, run_task(loop, spawn_wait_cycles, &failures, &v), 0));
    DWORD after = handle_count();
    cr_log_info("handles: %lu before, %lu after", (unsigned long)before, (unsigned long)after);
    cr_assert(eq(int, failures, 0));
    cr_assert(le(u32, after, before + 2), "%lu handles before, %lu after", (unsigned long)before,
              (unsigned long)after);
    eddy_loop_free(loop);
}

/* ---- spawning: errors, argv, env, cwd ------------------------------------------------------ */

struct seen {
    char cwd[512], env[512];
};

static intptr_t spawn_cwd_env(void *arg)
{
    struct seen *s = arg;
    char dir[MAX_PATH];
    DWORD n = GetTempPathA(sizeof dir, dir);
    cr_assert(gt(u32, n, 0u));
    if (n > 3 && dir[n - 1] == '\\') dir[n - 1] = '\0'; /* as GetCurrentDirectory says it */
    char *pwd[] = ARGV("pwd");
    eddy_process_options o = EDDY_PROCESS_OPTIONS_INIT(.file = child_program(), .argv = pwd,
                                                       .cwd = dir, .flags = EDDY_PROCESS_NEW_GROUP);
    o.stdio[1].mode = EDDY_STDIO_PIPE;
    eddy_process *p;
    cr_assert(eq(int, eddy_process_spawn(&p, &o), 0));
    ssize_t got = read_all(eddy_process_stdout(p), s->cwd, sizeof s->cwd - 1);
    cr_assert(gt(sz, (size_t)got, (size_t)0));
    s->cwd[got] = '\0';
    cr_assert(eq(int, eddy_process_wait(p, NULL), 0));
    eddy_process_free(p);
    char expect[MAX_PATH + 2];
    snprintf(expect, sizeof expect, "%s\n", dir);
    cr_assert(eq(str, s->cwd, expect));

    char *env_argv[] = ARGV("env", "EDDY_TEST_X");
    /* PATH: where the child finds libeddy's DLL */
    static char path[32768];
    snprintf(path, sizeof path, "PATH=%s", getenv("PATH") ? getenv("PATH") : "");
    char *env[] = {"EDDY_TEST_X=hello from eddy", path, NULL};
    eddy_process_options e =
        EDDY_PROCESS_OPTIONS_INIT(.file = child_program(), .argv = env_argv, .env = env);
    e.stdio[1].mode = EDDY_STDIO_PIPE;
    cr_assert(eq(int, eddy_process_spawn(&p, &e), 0));
    got = read_all(eddy_process_stdout(p), s->env, sizeof s->env - 1);
    cr_assert(gt(sz, (size_t)got, (size_t)0));
    s->env[got] = '\0';
    cr_assert(eq(int, eddy_process_wait(p, NULL), 0));
    eddy_process_free(p);
    return 0;
}

Test(process, child_sees_cwd_and_env, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_loop();
    struct seen s = {{0}, {0}};
    intptr_t v;
    cr_assert(eq(int, run_task(loop, spawn_cwd_env, &s, &v), 0));
    cr_assert(eq(str, s.env, "hello from eddy\n"));
    eddy_loop_free(loop);
}

/* Stdio to a handle of the parent's: the write end of an eddy pipe. */
static intptr_t stdio_to_handle(void *arg)
{
    (void)arg;
    eddy_sock *ends[2];
    cr_assert(eq(int, eddy_pipe(ends), 0));
    char *argv[] = ARGV("echo", "to a handle");
    eddy_process_options o = EDDY_PROCESS_OPTIONS_INIT(.file = child_program(), .argv = argv);
    o.stdio[1].mode = EDDY_STDIO_FD;
    o.stdio[1].fd = eddy_sock_fd(ends[1]);
    eddy_process *p;
    cr_assert(eq(int, eddy_process_spawn(&p, &o), 0));
    cr_assert(eq(int, eddy_sock_close(ends[1]), 0), "the parent's stays the parent's");
    char buf[64] = {0};
    size_t got = 0;
    ssize_t n;
    while ((n = eddy_recv(ends[0], buf + got, sizeof buf - 1 - got)) > 0)
        got += (size_t)n;
    cr_assert(eq(sz, (size_t)n, (size_t)0), "end of file once the child exits");
    cr_assert(eq(str, buf, "to a handle\n"));
    cr_assert(eq(int, eddy_process_wait(p, NULL), 0));
    eddy_process_free(p);
    cr_assert(eq(int, eddy_sock_close(ends[0]), 0));
    return 0;
}

Test(process, stdio_to_a_parent_handle, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_loop();
    intptr_t v;
    cr_assert(eq(int, run_task(loop, stdio_to_handle, NULL, &v), 0));
    eddy_loop_free(loop);
}

/* An inheritable handle of the parent's (another thread's spawn in flight,
 * a library's careless pipe) does not reach the child: it inherits its
 * stdio alone (PROC_THREAD_ATTRIBUTE_HANDLE_LIST). Were the write end in the
 * sleeping child, the read would not see end of file before it exits. */
static intptr_t stray_handle_not_inherited(void *arg)
{
    int64_t *took = arg;
    eddy_sock *ends[2];
    cr_assert(eq(int, eddy_pipe(ends), 0));
    cr_assert(SetHandleInformation((HANDLE)eddy_sock_fd(ends[1]), HANDLE_FLAG_INHERIT,
                                   HANDLE_FLAG_INHERIT));
    char *argv[] = ARGV("sleep", "3000");
    eddy_process *p = spawn_with(argv, EDDY_STDIO_NULL, EDDY_STDIO_PIPE, EDDY_STDIO_NULL);
    cr_assert(eq(int, eddy_sock_close(ends[1]), 0));
    int64_t start = wall_ns();
    char c;
    eddy_timeout scope;
    cr_assert(eq(int, eddy_timeout_begin(&scope, 2 * NS_PER_SEC), 0));
    cr_assert(eq(sz, (size_t)eddy_recv(ends[0], &c, 1), (size_t)0), "end of file at once");
    (void)eddy_timeout_end(&scope);
    *took = wall_ns() - start;
    cr_assert(eq(int, eddy_sock_close(ends[0]), 0));
    cr_assert(eq(int, eddy_process_kill(p, SIGKILL), 0));
    cr_assert(eq(int, eddy_process_wait(p, NULL), 0));
    eddy_process_free(p);
    return 0;
}

Test(process, stray_inheritable_handles_do_not_reach_the_child, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_loop();
    int64_t took = 0;
    intptr_t v;
    cr_assert(eq(int, run_task(loop, stray_handle_not_inherited, &took, &v), 0));
    cr_assert(lt(i64, took, NS_PER_SEC));
    eddy_loop_free(loop);
}

/* A pipe made and closed where no loop runs: its handles are closed too. */
Test(process, pipe_closed_outside_a_loop_leaves_no_handle, .timeout = TEST_TIMEOUT)
{
    DWORD before = handle_count();
    if (before == 0) cr_skip_test("this system cannot count a process's handles");
    for (int i = 0; i < 10; i++) {
        eddy_sock *ends[2];
        cr_assert(eq(int, eddy_pipe(ends), 0));
        cr_assert(eq(int, eddy_sock_close(ends[0]), 0));
        cr_assert(eq(int, eddy_sock_close(ends[1]), 0));
    }
    cr_assert(le(u32, handle_count(), before + 2), "%lu handles before, %lu after",
              (unsigned long)before, (unsigned long)handle_count());
}

/* eddy_pipe_open adopts a pipe end made elsewhere: an overlapped one as it is,
 * another reopened overlapped where the system allows. */
static intptr_t adopt_pipe_end(void *arg)
{
    HANDLE *h = arg; /* [0] the end to adopt, [1] the other */
    eddy_sock *s;
    int err = eddy_pipe_open(&s, (intptr_t)h[0]);
    if (err == -ENOTSUP) return 1; /* ReOpenFile refused: said so */
    cr_assert(eq(int, err, 0));
    DWORD n;
    OVERLAPPED ov = {0};
    ov.hEvent = CreateEventW(NULL, TRUE, FALSE, NULL);
    BOOL ok = WriteFile(h[1], "hello", 5, &n, &ov);
    cr_assert(ok || GetLastError() == ERROR_IO_PENDING);
    char buf[8] = {0};
    cr_assert(eq(sz, (size_t)eddy_recv(s, buf, sizeof buf), (size_t)5));
    cr_assert(eq(str, buf, "hello"));
    cr_assert(GetOverlappedResult(h[1], &ov, &n, TRUE));
    CloseHandle(ov.hEvent);
    cr_assert(eq(int, eddy_sock_close(s), 0));
    return 0;
}

Test(process, pipe_open_adopts_a_pipe_end, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_loop();
    eddy_sock *s;
    cr_assert(eq(int, eddy_pipe_open(NULL, 1), -EINVAL));
    cr_assert(eq(int, eddy_pipe_open(&s, -1), -EBADF));
    cr_assert(eq(int, eddy_pipe_open(&s, 0x7654), -EBADF));
    cr_assert(eq(int, eddy_pipe(NULL), -EINVAL));
    HANDLE file = CreateFileA("NUL", GENERIC_READ, 0, NULL, OPEN_EXISTING, 0, NULL);
    cr_assert(file != INVALID_HANDLE_VALUE);
    int err = eddy_pipe_open(&s, (intptr_t)file);
    cr_assert(err == -EINVAL || err == -ENOTSUP, "the null device is no pipe: %d", err);
    CloseHandle(file);
    /* An overlapped named pipe's client end: adopted as it is. */
    const wchar_t *name = L"\\\\.\\pipe\\eddy-test-pipe-open";
    HANDLE h[2];
    h[1] = CreateNamedPipeW(name, PIPE_ACCESS_OUTBOUND | FILE_FLAG_OVERLAPPED, PIPE_TYPE_BYTE, 1,
                            4096, 4096, 0, NULL);
    cr_assert(h[1] != INVALID_HANDLE_VALUE);
    h[0] = CreateFileW(name, GENERIC_READ, 0, NULL, OPEN_EXISTING, FILE_FLAG_OVERLAPPED, NULL);
    cr_assert(h[0] != INVALID_HANDLE_VALUE);
    intptr_t v;
    cr_assert(eq(int, run_task(loop, adopt_pipe_end, h, &v), 0));
    cr_assert(eq(i64, (int64_t)v, 0), "an overlapped end is taken as it is");
    CloseHandle(h[1]);
    /* An anonymous pipe's read end: reopened, or -ENOTSUP. */
    cr_assert(CreatePipe(&h[0], &h[1], NULL, 0));
    cr_assert(eq(int, run_task(loop, adopt_pipe_end, h, &v), 0));
    if (v == 1) {
        CloseHandle(h[0]);
        cr_log_info("eddy_pipe_open: this system cannot reopen an anonymous pipe overlapped");
    }
    CloseHandle(h[1]);
    eddy_loop_free(loop);
}

/* A listener made by someone else (plain Winsock, inheritable), adopted: it
 * accepts, and its connections carry bytes; what is no socket is refused. */
static intptr_t adopted_winsock_listener(void *arg)
{
    SOCKET fd = *(SOCKET *)arg;
    eddy_sock *listener;
    cr_assert(eq(int, eddy_sock_open(&listener, (intptr_t)fd), 0));
    DWORD flags = 0;
    cr_assert(GetHandleInformation((HANDLE)fd, &flags));
    cr_assert(eq(int, (int)(flags & HANDLE_FLAG_INHERIT), 0), "eddy's now: not inherited");
    accept_round_trip(listener);
    return 0;
}

Test(process, sock_open_adopts_a_winsock_listener, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_loop();
    WSADATA wsa;
    cr_assert(eq(int, WSAStartup(MAKEWORD(2, 2), &wsa), 0));
    SOCKET fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert(fd != INVALID_SOCKET);
    cr_assert(SetHandleInformation((HANDLE)fd, HANDLE_FLAG_INHERIT, HANDLE_FLAG_INHERIT));
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert(eq(int, bind(fd, (struct sockaddr *)&sin, sizeof sin), 0));
    cr_assert(eq(int, listen(fd, 8), 0));
    intptr_t v;
    cr_assert(eq(int, run_task(loop, adopted_winsock_listener, &fd, &v), 0));
    eddy_sock *s;
    HANDLE h[2];
    cr_assert(CreatePipe(&h[0], &h[1], NULL, 0));
    cr_assert(eq(int, eddy_sock_open(&s, (intptr_t)h[0]), -ENOTSOCK));
    CloseHandle(h[0]);
    CloseHandle(h[1]);
    cr_assert(eq(int, eddy_sock_open(&s, -1), -EBADF));
    cr_assert(eq(int, eddy_sock_open(NULL, 0), -EINVAL));
    WSACleanup();
    eddy_loop_free(loop);
}
#endif
