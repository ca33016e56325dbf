/* SPDX-License-Identifier: MIT */
/* Subprocesses (asyncio's create_subprocess_exec, libuv's uv_spawn).
 *
 * - Spawning is posix_spawn: glibc and musl clone with CLONE_VM|CLONE_VFORK,
 *   so the cost does not grow with the parent's memory as fork's page-table
 *   copy does, and glibc reports a failed exec (a missing executable) as
 *   posix_spawn's own error, which eddy returns: -ENOENT, not a child that
 *   exits 127. The child gets an empty signal mask and every signal at its
 *   default (the loop's threads may block some for signalfd, and ignore
 *   SIGPIPE), and every descriptor but 0, 1 and 2 closed (closefrom where
 *   the C library offers it; eddy's own descriptors are close-on-exec
 *   anyway).
 * - Exits are seen through a pidfd (Linux 5.3+), polled on the loop's
 *   backend (a POLL op marked EDDY_OP_F_PROC: IORING_OP_WAITID where the
 *   kernel has it), or on kqueue through EVFILT_PROC on the pid; then
 *   waitpid(WNOHANG) on the pid, which the unreaped child keeps: no SIGCHLD
 *   handler, nothing that takes other children's exits from their owners.
 * - A process object freed before its child has exited hands the child to
 *   a reaper thread (started when needed, gone when it has none left) that
 *   polls their pidfds and reaps each as it exits: no zombie is left
 *   behind, and no loop is kept alive by a child nobody waits for.
 * - Piped stdio are eddy streams over eddy sockets over the parent's pipe
 *   ends (lib/pipe.c), made on the spawning thread's loop: the process owns
 *   them; eddy_stream_close on one (stdin, to send EOF) is allowed, and
 *   eddy_process_free closes those left. */
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#ifndef _WIN32
#include <poll.h>
#include <pthread.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#endif

#include "pipe.h"

/* eddy_process_options' layouts, oldest first (docs/decisions.md). */
static const size_t options_layouts[] = {
    sizeof(eddy_process_options), /* 0.1 */
};
_Static_assert(sizeof(eddy_process_options) ==
                   offsetof(eddy_process_options, stdio) +
                       3 * sizeof(((eddy_process_options *)0)->stdio[0]),
               "eddy_process_options: the last layout is the header's, with no tail padding");

static int check_options(const eddy_process_options *o)
{
    if (!o->argv || !o->argv[0]) return -EINVAL;
    if (o->flags & ~(unsigned)EDDY_PROCESS_NEW_GROUP) return -EINVAL;
    for (int i = 0; i < 3; i++) {
        int mode = o->stdio[i].mode;
        if (mode < EDDY_STDIO_INHERIT || mode > EDDY_STDIO_FD) return -EINVAL;
        if (mode == EDDY_STDIO_FD && !eddy__process_fd_open(o->stdio[i].fd)) return -EBADF;
    }
    return 0;
}

int eddy__process_begin(eddy_process **out, const eddy_process_options *user,
                        eddy_process_options *o)
{
    if (!out) return -EINVAL;
    *out = NULL;
    if (!user) return -EINVAL;
    int err = eddy__options_read(o, sizeof *o, user, options_layouts,
                                 sizeof options_layouts / sizeof options_layouts[0]);
    if (err == 0) err = check_options(o);
    if (err < 0) return err;
    struct eddy_loop *loop = eddy_loop_current();
    if (loop && loop->caps[EDDY_CAP_SUBPROCESS] == EDDY_NONE) return -ENOTSUP;
    if (!loop && eddy__process_wants_pipes(o)) return -EPERM; /* streams need a loop */
    return 0;
}

bool eddy__process_wants_pipes(const eddy_process_options *o)
{
    for (int i = 0; i < 3; i++)
        if (o->stdio[i].mode == EDDY_STDIO_PIPE) return true;
    return false;
}

int eddy__process_stdio_stream(eddy_stream **stdio, int i, struct eddy_sock *s)
{
    int err = eddy_stream_open(&stdio[i], s, NULL);
    if (err == 0) eddy__stream_set_owner(stdio[i], &stdio[i]);
    return err;
}

void eddy__process_stdio_close(eddy_stream **stdio)
{
    for (int i = 0; i < 3; i++)
        if (stdio[i]) (void)eddy_stream_close(stdio[i]);
}

/* Every platform's process object starts with its head. */
EDDY_API eddy_stream *eddy_process_stdin(eddy_process *p)
{
    return p ? ((struct eddy__process_head *)p)->stdio[0] : NULL;
}

EDDY_API eddy_stream *eddy_process_stdout(eddy_process *p)
{
    return p ? ((struct eddy__process_head *)p)->stdio[1] : NULL;
}

EDDY_API eddy_stream *eddy_process_stderr(eddy_process *p)
{
    return p ? ((struct eddy__process_head *)p)->stdio[2] : NULL;
}

#ifndef _WIN32
/* Windows: lib/process_win.c. */

extern char **environ;

#define POLL_MIN_NS (1000 * 1000)      /* waitpid polled without a pidfd: first pause */
#define POLL_MAX_NS (50 * 1000 * 1000) /* and the longest */

struct eddy_process {
    struct eddy__process_head head; /* first: the piped stdio */
    pid_t pid;
    int pidfd;
    bool reaped;
    int status;               /* as waitpid gave it, once reaped */
    unsigned waiters;         /* eddy_process_wait calls in progress */
    struct eddy_loop *polled; /* the loop whose backend has seen pidfd, or NULL */
    struct eddy_op close_op;  /* closing pidfd through polled's backend */
};

#if defined(__linux__)
#define HAVE_PIDFD 1 /* pidfd_open, pidfd_send_signal: Linux 5.3+ */
#else
#define HAVE_PIDFD 0
#endif

static int sys_pidfd_open(pid_t pid)
{
#if HAVE_PIDFD && defined(SYS_pidfd_open)
    return (int)syscall(SYS_pidfd_open, pid, 0);
#else
    errno = ENOSYS;
    return -1;
#endif
}

static int sys_pidfd_send_signal(int pidfd, int sig)
{
#if HAVE_PIDFD && defined(SYS_pidfd_send_signal)
    return (int)syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0);
#else
    errno = ENOSYS;
    return -1;
#endif
}

static int pidfd_probe;
static eddy__once pidfd_once = EDDY__ONCE_INIT;

static void probe_pidfd(void)
{
    /* EDDY_PROCESS_NO_PIDFD=1 does without, as a kernel before 5.3 (or
     * Valgrind, which does not know the call) must: tests use it. */
    const char *no = getenv("EDDY_PROCESS_NO_PIDFD");
    int fd = no && strcmp(no, "1") == 0 ? -1 : sys_pidfd_open(getpid());
    pidfd_probe = fd >= 0 ? 1 : -1;
    if (fd >= 0) close(fd);
}

static bool pidfd_usable(void)
{
    eddy__once_run(&pidfd_once, probe_pidfd);
    return pidfd_probe > 0;
}

/* What the pidfd backends (io_uring, epoll) offer: native with pidfds; else
 * emulated, waitpid(WNOHANG) polled on a timer. kqueue answers for itself
 * (EVFILT_PROC). */
eddy_support eddy__subprocess_support(void)
{
    return pidfd_usable() ? EDDY_NATIVE : EDDY_EMULATED;
}

/* Whether loop's backend watches children by process id (kqueue's
 * EVFILT_PROC) rather than by pidfd. */
static bool watches_pids(const struct eddy_loop *loop)
{
    return loop && strcmp(loop->backend.ops->name, "kqueue") == 0;
}

/* A close-on-exec pipe (pipe2 where the system has it). */
static int cloexec_pipe(int fds[2])
{
#if defined(__APPLE__)
    if (pipe(fds) < 0) return -errno;
    (void)fcntl(fds[0], F_SETFD, FD_CLOEXEC);
    (void)fcntl(fds[1], F_SETFD, FD_CLOEXEC);
    return 0;
#else
    return pipe2(fds, O_CLOEXEC) < 0 ? -errno : 0;
#endif
}

/* ---- the reaper thread ----------------------------------------------------------- */

/* Starts fn(arg) on a small detached thread with every signal blocked: it
 * must not take the process's signals. 0 or a negative code. */
static int start_detached(void *(*fn)(void *), void *arg)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 64 * 1024);
    pthread_t thread;
    int rc = pthread_create(&thread, &attr, fn, arg);
    pthread_attr_destroy(&attr);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return -rc;
}

#if HAVE_PIDFD
struct orphan {
    pid_t pid;
    int pidfd;
};

static struct {
    pthread_mutex_t lock;
    struct orphan *v;
    size_t n, capacity;
    bool running;
    int wake[2]; /* a byte in [1] makes the thread look at v again; open while running */
} reaper = {.lock = PTHREAD_MUTEX_INITIALIZER, .wake = {-1, -1}};

static void *reaper_main(void *unused)
{
    (void)unused;
    struct pollfd *fds = NULL;
    size_t fds_capacity = 0;
    pthread_mutex_lock(&reaper.lock);
    for (;;) {
        for (size_t i = 0; i < reaper.n;) {
            pid_t r = waitpid(reaper.v[i].pid, NULL, WNOHANG);
            if (r == 0 || (r < 0 && errno == EINTR)) {
                i++;
                continue;
            }
            close(reaper.v[i].pidfd); /* reaped (or reaped by someone else: ECHILD) */
            reaper.v[i] = reaper.v[--reaper.n];
        }
        if (reaper.n == 0) break;
        if (fds_capacity < reaper.n + 1) {
            struct pollfd *grown = realloc(fds, (reaper.n + 1) * sizeof *fds);
            if (!grown) { /* look again in a moment */
                pthread_mutex_unlock(&reaper.lock);
                (void)poll(NULL, 0, 10);
                pthread_mutex_lock(&reaper.lock);
                continue;
            }
            fds = grown;
            fds_capacity = reaper.n + 1;
        }
        size_t n = reaper.n;
        fds[0] = (struct pollfd){.fd = reaper.wake[0], .events = POLLIN};
        for (size_t i = 0; i < n; i++)
            fds[i + 1] = (struct pollfd){.fd = reaper.v[i].pidfd, .events = POLLIN};
        pthread_mutex_unlock(&reaper.lock);
        (void)poll(fds, n + 1, -1);
        char drain[64];
        if (fds[0].revents) (void)!read(reaper.wake[0], drain, sizeof drain);
        pthread_mutex_lock(&reaper.lock);
    }
    /* Out of children: the next orphan starts a new thread. */
    reaper.running = false;
    close(reaper.wake[0]);
    close(reaper.wake[1]);
    reaper.wake[0] = reaper.wake[1] = -1;
    pthread_mutex_unlock(&reaper.lock);
    free(fds);
    return NULL;
}

/* Starts the reaper thread. Called with the lock held. */
static int reaper_start(void)
{
    if (pipe2(reaper.wake, O_CLOEXEC | O_NONBLOCK) < 0) return -errno;
    int err = start_detached(reaper_main, NULL);
    if (err < 0) {
        close(reaper.wake[0]);
        close(reaper.wake[1]);
        reaper.wake[0] = reaper.wake[1] = -1;
        return err;
    }
    reaper.running = true;
    return 0;
}
#endif

/* No pidfd to poll: a small thread per orphan, blocked in its waitpid. */
static void *orphan_wait(void *arg)
{
    pid_t pid = (pid_t)(intptr_t)arg;
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
    }
    return NULL;
}

/* Hands a running child over to the reaper thread, which closes pidfd once it
 * has reaped it (pidfd -1: to a thread of its own). 0, or a negative code
 * (the caller keeps pidfd). */
static int reaper_adopt(pid_t pid, int pidfd)
{
    if (pidfd < 0) return start_detached(orphan_wait, (void *)(intptr_t)pid);
#if HAVE_PIDFD
    pthread_mutex_lock(&reaper.lock);
    int err = 0;
    if (reaper.n == reaper.capacity) {
        size_t capacity = reaper.capacity ? reaper.capacity * 2 : 8;
        struct orphan *v = realloc(reaper.v, capacity * sizeof *v);
        if (!v) err = -ENOMEM;
        if (v) {
            reaper.v = v;
            reaper.capacity = capacity;
        }
    }
    if (err == 0 && !reaper.running) err = reaper_start();
    if (err == 0) {
        reaper.v[reaper.n++] = (struct orphan){pid, pidfd};
        (void)!write(reaper.wake[1], "", 1);
    }
    pthread_mutex_unlock(&reaper.lock);
    return err;
#else
    return -ENOSYS;
#endif
}

/* ---- spawning --------------------------------------------------------------- */

/* The child's descriptor for stdio slot i, kept at 3 or above so that no
 * dup2 onto 0, 1 or 2 overwrites another slot's source; -1 to inherit. */
struct child_fd {
    int fd;     /* what goes to slot i in the child */
    bool owned; /* ours to close once spawned */
};

static void close_child_fds(struct child_fd *c)
{
    for (int i = 0; i < 3; i++)
        if (c[i].owned) close(c[i].fd);
}

/* Makes the pipe of slot i: the parent's end as an eddy stream in p, the
 * child's in c. */
static int make_pipe(struct eddy_process *p, struct child_fd *c, int i)
{
    int fds[2];
    int err = cloexec_pipe(fds);
    if (err < 0) return err;
    int parent = i == 0 ? fds[1] : fds[0], child = i == 0 ? fds[0] : fds[1];
    struct eddy_sock *s;
    err = eddy__sock_adopt(&s, parent, AF_UNIX, SOCK_STREAM, true);
    if (err < 0) {
        close(fds[0]);
        close(fds[1]);
        return err;
    }
    err = eddy__process_stdio_stream(p->head.stdio, i, s); /* closes s when it fails */
    if (err < 0) {
        close(child);
        return err;
    }
    c[i] = (struct child_fd){child, true};
    return 0;
}

/* Fills the file actions and attributes the child starts with. */
static int child_setup(const eddy_process_options *o, struct child_fd *c,
                       posix_spawn_file_actions_t *fa, posix_spawnattr_t *attr)
{
    int err = 0;
    for (int i = 0; i < 3 && !err; i++) {
        if (c[i].fd >= 0 && c[i].fd < 3 && c[i].fd != i) { /* keep sources clear of 0..2 */
            int moved = fcntl(c[i].fd, F_DUPFD_CLOEXEC, 3);
            if (moved < 0) return -errno;
            if (c[i].owned) close(c[i].fd);
            c[i] = (struct child_fd){moved, true};
        }
    }
    for (int i = 0; i < 3 && !err; i++) {
        if (o->stdio[i].mode == EDDY_STDIO_NULL)
            err = posix_spawn_file_actions_addopen(fa, i, "/dev/null", O_RDWR, 0);
        else if (c[i].fd >= 0)
            err = posix_spawn_file_actions_adddup2(fa, c[i].fd, i);
    }
#ifdef HAVE_POSIX_SPAWN_FILE_ACTIONS_ADDCLOSEFROM_NP
    if (!err) err = posix_spawn_file_actions_addclosefrom_np(fa, 3);
#endif
    if (o->cwd && !err) {
#ifdef HAVE_POSIX_SPAWN_FILE_ACTIONS_ADDCHDIR_NP
        err = posix_spawn_file_actions_addchdir_np(fa, o->cwd);
#else
        err = ENOTSUP;
#endif
    }
    short flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
    if (o->flags & EDDY_PROCESS_NEW_GROUP) flags |= POSIX_SPAWN_SETPGROUP;
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    if (!err) err = posix_spawnattr_setflags(attr, flags);
    if (!err) err = posix_spawnattr_setsigmask(attr, &none);
    if (!err) err = posix_spawnattr_setsigdefault(attr, &all);
    if (!err && (o->flags & EDDY_PROCESS_NEW_GROUP)) err = posix_spawnattr_setpgroup(attr, 0);
    return -err;
}

bool eddy__process_fd_open(intptr_t fd)
{
    return fd >= 0 && fd <= INT_MAX && fcntl((int)fd, F_GETFD) >= 0;
}

static void process_release(struct eddy_process *p)
{
    eddy__process_stdio_close(p->head.stdio);
    free(p);
}

EDDY_API int eddy_process_spawn(eddy_process **out, const eddy_process_options *user)
{
    eddy_process_options o;
    int err = eddy__process_begin(out, user, &o);
    if (err < 0) return err;
    struct eddy_process *p = calloc(1, sizeof *p);
    if (!p) return -ENOMEM;
    p->pidfd = -1;
    struct child_fd c[3] = {{-1, false}, {-1, false}, {-1, false}};
    for (int i = 0; i < 3 && err == 0; i++) {
        if (o.stdio[i].mode == EDDY_STDIO_PIPE)
            err = make_pipe(p, c, i);
        else if (o.stdio[i].mode == EDDY_STDIO_FD)
            c[i] = (struct child_fd){(int)o.stdio[i].fd, false};
    }
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    bool fa_made = false, attr_made = false;
    if (err == 0) err = -posix_spawn_file_actions_init(&fa);
    fa_made = err == 0;
    if (err == 0) err = -posix_spawnattr_init(&attr);
    attr_made = fa_made && err == 0;
    if (err == 0) err = child_setup(&o, c, &fa, &attr);
    if (err == 0) {
        const char *file = o.file ? o.file : o.argv[0];
        char *const *env = o.env ? o.env : environ;
        pid_t pid;
        err = strchr(file, '/') ? posix_spawn(&pid, file, &fa, &attr, o.argv, env)
                                : posix_spawnp(&pid, file, &fa, &attr, o.argv, env);
        err = -err;
        if (err == 0) {
            p->pid = pid;
            /* Without a pidfd (none here, or out of descriptors) the
             * child is still watched: EVFILT_PROC, or waitpid polled. */
            p->pidfd = pidfd_usable() ? sys_pidfd_open(pid) : -1;
        }
    }
    if (attr_made) posix_spawnattr_destroy(&attr);
    if (fa_made) posix_spawn_file_actions_destroy(&fa);
    close_child_fds(c);
    if (err < 0) {
        process_release(p);
        return err;
    }
    *out = p;
    return 0;
}

/* ---- waiting, signalling, freeing --------------------------------------------------- */

/* Reaps the child if it has exited. 0 (p->reaped says whether), or -ECHILD
 * when someone else reaped it (a waitpid(-1) elsewhere, SIGCHLD ignored). */
static int try_reap(struct eddy_process *p)
{
    int status;
    pid_t r;
    do
        r = waitpid(p->pid, &status, WNOHANG);
    while (r < 0 && errno == EINTR);
    if (r < 0) return -errno;
    if (r == p->pid) {
        p->reaped = true;
        p->status = status;
    }
    return 0;
}

EDDY_API int eddy_process_wait(eddy_process *p, int *status)
{
    struct eddy_task *t = eddy__current_task();
    if (!t) return -EPERM;
    if (!p) return -EINVAL;
    int64_t backoff = 0;
    for (;;) {
        if (!p->reaped) {
            int err = try_reap(p);
            if (err < 0) return err;
        }
        if (p->reaped) {
            if (status) *status = p->status;
            return 0;
        }
        /* The pidfd turns readable when the child exits; a cancelled (or
         * timed out) poll leaves the child and p as they were. */
        if (p->pidfd < 0 && !watches_pids(t->loop)) {
            /* No pidfd: waitpid(WNOHANG) again after a pause, 1 ms doubling
             * to 50 ms; a sleep is cancelled as any wait is. */
            backoff = backoff ? backoff * 2 : POLL_MIN_NS;
            if (backoff > POLL_MAX_NS) backoff = POLL_MAX_NS;
            int err = eddy_sleep(backoff);
            if (err < 0) return err;
            continue;
        }
        struct eddy_op op = {.kind = EDDY_OP_POLL, .flags = EDDY_OP_F_PROC};
        op.fd = p->pidfd >= 0 ? p->pidfd : p->pid;
        op.u.io.offset = p->pid;
        op.u.io.flags = EDDY_READABLE;
        if (p->pidfd >= 0) p->polled = t->loop;
        p->waiters++;
        int64_t r = eddy__op_run(&op);
        p->waiters--;
        if (r < 0) return (int)r;
    }
}

EDDY_API int eddy_process_kill(eddy_process *p, int signum)
{
    if (!p || signum < 0 || signum >= NSIG) return -EINVAL;
    if (p->reaped) return -ESRCH; /* the pid may be someone else's now */
    if (p->pidfd >= 0) return sys_pidfd_send_signal(p->pidfd, signum) < 0 ? -errno : 0;
    /* No pidfd: the unreaped child (a zombie at worst) still holds its pid. */
    return kill(p->pid, signum) < 0 ? -errno : 0;
}

EDDY_API intptr_t eddy_process_pid(const eddy_process *p)
{
    return p ? p->pid : -EINVAL;
}

static void close_op_complete(struct eddy_op *op)
{
    free(eddy__container_of(op, struct eddy_process, close_op));
}

/* Closes pidfd and frees p. A pidfd a loop's backend has polled is closed
 * through that backend, when it runs on this thread, so that it forgets the
 * descriptor (as sockets are, lib/net.c). */
static void close_pidfd_and_free(struct eddy_process *p)
{
    struct eddy_loop *loop = eddy_loop_current();
    if (p->polled && loop == p->polled) {
        p->close_op = (struct eddy_op){.kind = EDDY_OP_CLOSE, .fd = p->pidfd};
        p->close_op.complete = close_op_complete;
        p->close_op.state = EDDY_OP_STATE_IN_FLIGHT;
        eddy__list_init(&p->close_op.link);
        int rc = loop->backend.ops->submit(&loop->backend, &p->close_op);
        if (rc == EDDY_OP_PENDING) return;
        if (rc == EDDY_OP_DONE) {
            free(p);
            return;
        }
    }
    if (p->pidfd >= 0) close(p->pidfd);
    free(p);
}

EDDY_API void eddy_process_free(eddy_process *p)
{
    if (!p) return;
    eddy__process_stdio_close(p->head.stdio);
    if (!p->reaped && try_reap(p) == 0 && !p->reaped) {
        /* Still running: the reaper thread takes a descriptor of its own, which
         * no loop has seen. */
        int fd = p->pidfd >= 0 ? fcntl(p->pidfd, F_DUPFD_CLOEXEC, 3) : -1;
        bool adopted = (fd >= 0 || p->pidfd < 0) && reaper_adopt(p->pid, fd) == 0;
        if (!adopted) { /* no thread, no memory: wait here rather than leave a zombie */
            if (fd >= 0) close(fd);
            while (waitpid(p->pid, NULL, 0) < 0 && errno == EINTR) {
            }
        }
    }
    close_pidfd_and_free(p);
}
#endif
