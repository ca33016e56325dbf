/* SPDX-License-Identifier: MIT */
/* eddy-run: runs a command as a subprocess pipeline stage, with a time limit.
 *
 *   eddy-run [-t SECONDS] [-i FILE] COMMAND [ARG...]
 *
 * The child's stdin is fed from FILE (or from this program's stdin; on
 * Windows, without -i, the child reads this program's stdin itself), while
 * its stdout and stderr are read concurrently, each by its own task, and
 * copied to this program's stdout and stderr as they are: three tasks and
 * the waiting one, none blocking another, so a child
 * that writes much before reading all its input cannot deadlock. When the
 * limit passes (a timeout scope around the whole run), the child gets
 * SIGTERM, then SIGKILL a second later. Prints how the child ended and exits
 * with its status (124 on the time limit, as timeout(1)). */
#ifdef _WIN32
#include <winsock2.h> /* before windows.h */
#include <windows.h>
#endif
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#ifndef _WIN32
#include <sys/wait.h>
#endif

#include "eddy.h"

#ifdef _WIN32
/* Windows: the child reads this program's stdin itself unless -i is given
 * (a console or an anonymous pipe has no overlapped I/O to pump it with),
 * output goes out with WriteFile, and eddy.h gives the signal numbers. */
#define INHERITS_STDIN(r) ((r)->input == NULL)
static const char *signal_name(int sig)
{
    return sig == SIGKILL ? "SIGKILL" : sig == SIGTERM ? "SIGTERM" : "a signal";
}
#else
#define INHERITS_STDIN(r) false
#define signal_name       strsignal
#endif

struct run {
    char **argv;
    const char *input; /* NULL: our stdin */
    double limit;      /* seconds; <= 0: none */
    eddy_process *p;
    int status;
    bool timed_out;
    bool failed; /* said so on stderr */
};

#ifndef _WIN32
/* Copies everything readable from the pipe or tty `from` into the child's
 * stdin stream `to`: each chunk written, then drained (the brake: at most
 * the stream's high mark is ever buffered). */
static intptr_t pump_in(eddy_sock *from, eddy_stream *to)
{
    char buf[64 * 1024];
    for (;;) {
        ssize_t n = eddy_recv(from, buf, sizeof buf);
        if (n <= 0) return n;
        int err = eddy_stream_write(to, buf, (size_t)n);
        if (err == 0) err = eddy_stream_drain(to);
        if (err < 0) return err;
    }
}
#endif

/* The file at path (a FIFO too) into the child's stdin stream. */
static intptr_t pump_file(const char *path, eddy_stream *to)
{
    eddy_file *f;
    intptr_t rc = eddy_file_open(&f, path, O_RDONLY, 0);
    if (rc < 0) return rc;
    char buf[64 * 1024];
    ssize_t n;
    while ((n = eddy_file_read(f, buf, sizeof buf, -1)) > 0) {
        rc = eddy_stream_write(to, buf, (size_t)n);
        if (rc == 0) rc = eddy_stream_drain(to);
        if (rc < 0) break;
    }
    if (n < 0) rc = n;
    (void)eddy_file_close(f);
    return rc;
}

/* stdin: our input to the child, then EOF (closing its stdin stream). */
static intptr_t feed(void *arg)
{
    struct run *r = arg;
    eddy_stream *to = eddy_process_stdin(r->p);
    intptr_t rc;
#ifdef _WIN32
    rc = pump_file(r->input, to); /* without -i the child has our stdin */
#else
    eddy_sock *in;
    int fd = r->input ? -1 : dup(STDIN_FILENO);
    if (fd >= 0 && eddy_pipe_open(&in, fd) == 0) { /* a pipe or a terminal */
        rc = pump_in(in, to);
        (void)eddy_sock_close(in);
    } else { /* a file (or /dev/null) is no pipe: read it as a file */
        if (fd >= 0) close(fd);
        rc = pump_file(r->input ? r->input : "/dev/stdin", to);
    }
#endif
    int cerr = eddy_stream_close(to); /* sends what is buffered; the child reads EOF */
    if (rc == 0) rc = cerr;
    return rc == -EPIPE ? 0 : rc; /* a child that stops reading early is its business */
}

struct drain {
    eddy_stream *from;
    int to_fd;
};

/* stdout and stderr: the child's output, as it comes, to ours. */
static intptr_t drain(void *arg)
{
    struct drain *d = arg;
    char buf[64 * 1024];
    ssize_t n;
#ifdef _WIN32
    HANDLE to = GetStdHandle(d->to_fd == STDOUT_FILENO ? STD_OUTPUT_HANDLE : STD_ERROR_HANDLE);
    DWORD w;
    while ((n = eddy_stream_read(d->from, buf, sizeof buf)) > 0)
        if (!WriteFile(to, buf, (DWORD)n, &w, NULL)) return -EIO;
    return n;
#else
    eddy_sock *out;
    int fd = dup(d->to_fd);
    int err = eddy_pipe_open(&out, fd);
    if (err < 0) { /* a terminal on macOS, a file: plain writes */
        if (fd >= 0) close(fd);
        while ((n = eddy_stream_read(d->from, buf, sizeof buf)) > 0)
            if (write(d->to_fd, buf, (size_t)n) < 0) return -errno;
        return n;
    }
    while ((n = eddy_stream_read(d->from, buf, sizeof buf)) > 0) {
        ssize_t w = eddy_send(out, buf, (size_t)n);
        if (w < 0) {
            n = w;
            break;
        }
    }
    (void)eddy_sock_close(out);
    return n;
#endif
}

static intptr_t run_main(void *arg)
{
    struct run *r = arg;
    eddy_process_options o = EDDY_PROCESS_OPTIONS_INIT(.argv = r->argv);
    for (int i = 0; i < 3; i++)
        o.stdio[i].mode = EDDY_STDIO_PIPE;
    if (INHERITS_STDIN(r)) o.stdio[0].mode = EDDY_STDIO_INHERIT;
    int err = eddy_process_spawn(&r->p, &o);
    if (err < 0) {
        fprintf(stderr, "eddy-run: %s: %s\n", r->argv[0], eddy_strerror(err));
        r->failed = true;
        return 0;
    }
    struct drain out = {eddy_process_stdout(r->p), STDOUT_FILENO};
    struct drain errs = {eddy_process_stderr(r->p), STDERR_FILENO};
    eddy_group *g = eddy_group_new(NULL);
    if (!g) {
        eddy_process_free(r->p);
        return -ENOMEM;
    }
    if (!INHERITS_STDIN(r)) (void)eddy_group_spawn(g, feed, r);
    (void)eddy_group_spawn(g, drain, &out);
    (void)eddy_group_spawn(g, drain, &errs);

    eddy_timeout scope;
    err = eddy_timeout_begin(&scope, r->limit > 0 ? (int64_t)(r->limit * 1e9) : -1);
    if (err == 0) err = eddy_process_wait(r->p, &r->status);
    if (err == 0) err = eddy_group_wait(g); /* the rest of its output */
    r->timed_out = eddy_timeout_expired(&scope);
    (void)eddy_timeout_end(&scope);
    if (r->timed_out) {
        (void)eddy_process_kill(r->p, SIGTERM);
        eddy_timeout grace;
        if (eddy_timeout_begin(&grace, 1000000000) == 0) {
            if (eddy_process_wait(r->p, &r->status) < 0) {
                (void)eddy_process_kill(r->p, SIGKILL);
            }
            (void)eddy_timeout_end(&grace);
        }
        if (eddy_process_kill(r->p, 0) == 0) (void)eddy_process_wait(r->p, &r->status);
        err = 0;
    }
    eddy_group_free(g); /* cancels the copies still running */
    eddy_process_free(r->p);
    if (err < 0) {
        fprintf(stderr, "eddy-run: %s: %s\n", r->argv[0], eddy_strerror(err));
        r->failed = true;
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct run r = {0};
    int opt;
    while ((opt = getopt(argc, argv, "+t:i:h")) != -1) {
        switch (opt) {
        case 't':
            r.limit = atof(optarg);
            break;
        case 'i':
            r.input = optarg;
            break;
        default:
            fprintf(stderr, "usage: eddy-run [-t SECONDS] [-i FILE] COMMAND [ARG...]\n");
            return 2;
        }
    }
    if (optind >= argc) {
        fprintf(stderr, "usage: eddy-run [-t SECONDS] [-i FILE] COMMAND [ARG...]\n");
        return 2;
    }
    r.argv = argv + optind;
    intptr_t result = 0;
    int err = eddy_run(run_main, &r, &result);
    if (err < 0) fprintf(stderr, "eddy-run: %s\n", eddy_strerror(err));
    if (err < 0 || r.failed) return 125;
    if (r.timed_out) {
        fprintf(stderr, "eddy-run: %s: time limit (%g s) reached, %s\n", r.argv[0], r.limit,
                WIFSIGNALED(r.status) ? signal_name(WTERMSIG(r.status)) : "ended");
        return 124;
    }
    if (WIFSIGNALED(r.status)) {
        fprintf(stderr, "eddy-run: %s: killed by %s\n", r.argv[0], signal_name(WTERMSIG(r.status)));
        return 128 + WTERMSIG(r.status);
    }
    fprintf(stderr, "eddy-run: %s: exit status %d\n", r.argv[0], WEXITSTATUS(r.status));
    return WEXITSTATUS(r.status);
}
