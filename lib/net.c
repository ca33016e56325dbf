/* SPDX-License-Identifier: MIT */
/* Sockets: TCP, UDP and Unix stream sockets as task-style calls, written once
 * over the backend interface. Every I/O call is one op on the calling task's
 * stack run through eddy__op_run; nothing is allocated per call.
 *
 * Each call in progress on a socket is linked into the socket's list of calls,
 * so eddy_sock_close can cancel them and wait until every one has left before
 * the fd is closed and the socket freed: no op ever names a closed (and maybe
 * reused) fd, and no task touches a freed socket. */
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifndef _WIN32
#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#endif

#include "pipe.h"

/* Where Winsock differs: a SOCKET is not an int, closesocket is not close,
 * and errors come from WSAGetLastError. */
#ifdef _WIN32
#define NATIVE(fd) ((SOCKET)(fd))
static int sock_errno(void)
{
    return eddy__win_error((unsigned long)WSAGetLastError());
}
static int close_native(intptr_t fd)
{
    return closesocket((SOCKET)fd) == 0 ? 0 : sock_errno();
}
#else
#define NATIVE(fd) ((int)(fd))
static int sock_errno(void)
{
    return -errno;
}
static int close_native(intptr_t fd)
{
    return close((int)fd) < 0 ? -errno : 0;
}
#endif

/* A call links its record, which lives in the caller's frame, into the
 * socket's list and always unlinks it before returning (call_end); GCC cannot
 * always follow that and warns about a dangling pointer. */
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12
#pragma GCC diagnostic ignored "-Wdangling-pointer"
#endif

#ifndef MSG_NOSIGNAL
#define MSG_NOSIGNAL 0
#endif

#define ACCEPT_BACKOFF_MIN_NS (1 * 1000 * 1000)
#define ACCEPT_BACKOFF_MAX_NS (100 * 1000 * 1000)

struct eddy_sock {
    intptr_t fd;     /* what ops name: a descriptor, or a direct one (EDDY_FD_DIRECT) */
    intptr_t native; /* a direct socket's real descriptor, installed on first need; else -1 */
    int family;      /* AF_INET, AF_INET6, AF_UNIX */
    int type;        /* SOCK_STREAM, SOCK_DGRAM */
    bool listening;
    bool accept_direct;       /* a listener whose connections may come direct (docs/sockets.md) */
    uint64_t serial;          /* unique in the process (EDDY_OP_F_STREAM) */
    int8_t remote_peer;       /* TCP to another host: 1; else -1; 0: not asked yet */
    bool closing;             /* eddy_sock_close has begun: new calls get -EBADF */
    bool close_deferred;      /* closed outside a task: the last call to leave closes */
    struct eddy__list calls;  /* struct sock_call: every call in progress */
    struct eddy_task *closer; /* the task waiting in eddy_sock_close */
    struct eddy_loop *loop;   /* the loop the socket was created on */
    struct eddy_op close_op;  /* a close outside a task, completed by the backend */
    /* A pipe end or a terminal (lib/pipe.c): read(2) and write(2), never
     * recv and send, on every backend. */
    bool pipe;
    bool nonblocking;         /* what eddy last set on the pipe's fd (eddy__pipe_route) */
    struct eddy_sock **owner; /* where an owner keeps s (a process's stdio): NULLed on close */
};

/* The pause accept takes when the process is out of descriptors. */
struct backoff_wait {
    struct eddy_timer timer;
    struct eddy_task *task;
};

/* One call in progress on a socket; lives in the calling task's frame. */
struct sock_call {
    struct eddy_op op;
    struct eddy__list link; /* sock->calls */
    struct eddy_task *task;
};

/* ---- socket objects -------------------------------------------------------- */

/* A socket object over fd; -ENOMEM leaves fd to the caller. */
static int sock_wrap(struct eddy_sock **out, intptr_t fd, int family, int type)
{
    struct eddy_sock *s = calloc(1, sizeof(*s));
    if (!s) return -ENOMEM;
    static _Atomic uint64_t next_serial = 1;
    s->fd = fd;
    s->native = -1;
    s->serial = atomic_fetch_add_explicit(&next_serial, 1, memory_order_relaxed);
    s->family = family;
    s->type = type;
    eddy__list_init(&s->calls);
    s->loop = eddy_loop_current();
    *out = s;
    return 0;
}

/* sock_wrap for a descriptor eddy made: closed on failure. */
static int sock_new(struct eddy_sock **out, intptr_t fd, int family, int type)
{
    int err = sock_wrap(out, fd, family, type);
    if (err < 0) (void)close_native(fd);
    return err;
}

/* A real descriptor for s, for the system calls that need one: its own, or
 * for a direct socket one the backend installs on first need (kept until
 * close). -EPERM off the socket's loop thread. */
static intptr_t sock_native(const struct eddy_sock *cs)
{
    struct eddy_sock *s = (struct eddy_sock *)cs; /* the installed one is a cache */
    if (!eddy__fd_direct(s->fd)) return s->fd;
    if (s->native >= 0) return s->native;
    struct eddy_loop *loop = eddy_loop_current();
    if (!loop || loop != s->loop) return -EPERM;
    if (!loop->backend.ops->install) return -EBADF;
    intptr_t fd = loop->backend.ops->install(&loop->backend, s->fd);
    if (fd >= 0) s->native = fd;
    return fd;
}

/* Closes what a direct socket had installed (the slot goes with its CLOSE op). */
static void close_installed(struct eddy_sock *s)
{
    if (eddy__fd_direct(s->fd) && s->native >= 0) (void)close_native(s->native);
    s->native = -1;
}

intptr_t eddy__sock_op_fd(const eddy_sock *s)
{
    return s->fd;
}

static int set_int_option(intptr_t fd, int level, int name, int value)
{
    return setsockopt(NATIVE(fd), level, name, (const void *)&value, sizeof(value)) < 0
               ? sock_errno()
               : 0;
}

int eddy__sock_adopt(struct eddy_sock **out, intptr_t fd, int family, int type, bool pipe)
{
    int err = sock_wrap(out, fd, family, type);
    if (err == 0) (*out)->pipe = pipe;
    return err;
}

void eddy__sock_set_owner(struct eddy_sock *s, struct eddy_sock **slot)
{
    s->owner = slot;
}

bool eddy__sock_is_pipe(const struct eddy_sock *s)
{
    return s->pipe;
}

#ifndef _WIN32
/* The family of a socket: SO_DOMAIN where the system has it, else its address. */
static int sock_family(int fd)
{
#ifdef SO_DOMAIN
    int family;
    socklen_t len = sizeof family;
    if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &family, &len) == 0) return family;
#endif
    struct sockaddr_storage ss;
    socklen_t sslen = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &sslen) < 0) return -errno;
    return ss.ss_family;
}

EDDY_API int eddy_sock_open(eddy_sock **out, intptr_t fd)
{
    if (!out) return -EINVAL;
    *out = NULL;
    if (fd < 0 || fd > INT32_MAX) return -EBADF;
    int type;
    socklen_t len = sizeof type;
    if (getsockopt((int)fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0) return -errno; /* -ENOTSOCK */
    int family = sock_family((int)fd);
    if (family < 0) return family;
    if ((type != SOCK_STREAM && type != SOCK_DGRAM) ||
        (family != AF_INET && family != AF_INET6 && family != AF_UNIX))
        return -EPROTONOSUPPORT; /* what eddy's calls know: TCP, UDP, Unix stream */
    if (family == AF_UNIX && type != SOCK_STREAM) return -EPROTONOSUPPORT;
    /* Non-blocking, as every eddy socket; close-on-exec: it is eddy's now. */
    int flags = fcntl((int)fd, F_GETFL);
    if (flags < 0 || fcntl((int)fd, F_SETFL, flags | O_NONBLOCK) < 0 ||
        fcntl((int)fd, F_SETFD, FD_CLOEXEC) < 0)
        return -errno;
#if MSG_NOSIGNAL == 0 && defined(SO_NOSIGPIPE)
    (void)set_int_option(fd, SOL_SOCKET, SO_NOSIGPIPE, 1);
#endif
    int listening = 0;
#ifdef SO_ACCEPTCONN
    len = sizeof listening;
    if (getsockopt((int)fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) < 0) listening = 0;
#endif
    /* Connections come direct when they inherit what eddy would set on them. */
    int nodelay = 0;
    len = sizeof nodelay;
    bool direct_ok =
        family == AF_UNIX ||
        (getsockopt((int)fd, IPPROTO_TCP, TCP_NODELAY, &nodelay, &len) == 0 && nodelay);
    int err = sock_wrap(out, fd, family, type);
    if (err == 0) (*out)->listening = type == SOCK_STREAM && listening;
    if (err == 0) (*out)->accept_direct = (*out)->listening && direct_ok;
    return err;
}
#else
/* Windows: a SOCKET handed over (inherited, duplicated with
 * WSADuplicateSocket, made by another library). The backend ties it to the
 * completion port at its first op, as it does eddy's own. */
EDDY_API int eddy_sock_open(eddy_sock **out, intptr_t fd)
{
    if (!out) return -EINVAL;
    *out = NULL;
    if (fd < 0 || (SOCKET)fd == INVALID_SOCKET) return -EBADF;
    int err = eddy__win_startup();
    if (err < 0) return err;
    SOCKET h = (SOCKET)fd;
    int type, len = sizeof type;
    if (getsockopt(h, SOL_SOCKET, SO_TYPE, (char *)&type, &len) != 0) {
        int code = WSAGetLastError();
        return code == WSAENOTSOCK ? -ENOTSOCK : eddy__win_error((unsigned long)code);
    }
    struct sockaddr_storage ss;
    len = sizeof ss;
    if (getsockname(h, (struct sockaddr *)&ss, &len) != 0) return sock_errno();
    if ((type != SOCK_STREAM && type != SOCK_DGRAM) ||
        (ss.ss_family != AF_INET && ss.ss_family != AF_INET6))
        return -EPROTONOSUPPORT; /* what eddy's calls know here: TCP, UDP */
    /* eddy's now: not inherited by the children it spawns. */
    (void)SetHandleInformation((HANDLE)h, HANDLE_FLAG_INHERIT, 0);
    BOOL listening = FALSE;
    len = sizeof listening;
    if (getsockopt(h, SOL_SOCKET, SO_ACCEPTCONN, (char *)&listening, &len) != 0) listening = FALSE;
    err = sock_wrap(out, fd, ss.ss_family, type);
    if (err == 0) (*out)->listening = type == SOCK_STREAM && listening;
    return err;
}
#endif

#ifdef _WIN32
/* A new overlapped, non-inheritable socket (the iocp backend's kind). A UDP
 * socket is told not to report an ICMP port-unreachable from an earlier
 * send as a reset of its next receive. */
static intptr_t socket_open(int family, int type)
{
    int err = eddy__win_startup();
    if (err < 0) return err;
    SOCKET fd =
        WSASocketW(family, type, 0, NULL, 0, WSA_FLAG_OVERLAPPED | WSA_FLAG_NO_HANDLE_INHERIT);
    if (fd == INVALID_SOCKET) return sock_errno();
    if (type == SOCK_DGRAM) {
        BOOL report = FALSE;
        DWORD unused;
        (void)WSAIoctl(fd, SIO_UDP_CONNRESET, &report, sizeof report, NULL, 0, &unused, NULL, NULL);
    }
#else
/* A new nonblocking, close-on-exec socket (and without SIGPIPE where sends
 * cannot say MSG_NOSIGNAL). */
static intptr_t socket_open(int family, int type)
{
#ifdef SOCK_NONBLOCK
    int fd = socket(family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
#else /* macOS */
    int fd = socket(family, type, 0);
    if (fd < 0) return -errno;
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0 ||
        fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) {
        int err = -errno;
        close(fd);
        return err;
    }
#endif
#if MSG_NOSIGNAL == 0 && defined(SO_NOSIGPIPE)
    (void)set_int_option(fd, SOL_SOCKET, SO_NOSIGPIPE, 1);
#endif
#endif
    if (type == SOCK_STREAM && (family == AF_INET || family == AF_INET6))
        (void)set_int_option(fd, IPPROTO_TCP, TCP_NODELAY, 1); /* best effort, as in Go */
    return fd;
}

/* ---- calls ------------------------------------------------------------------ */

static int call_begin(struct eddy_sock *s, struct sock_call *c)
{
    struct eddy_task *t = eddy__current_task();
    if (!t) return -EPERM;
    if (!s) return -EINVAL;
    if (s->loop != t->loop) return -EPERM; /* another loop's (and maybe thread's) socket */
    if (s->closing) return -EBADF;
    c->task = t;
    eddy__list_push_back(&s->calls, &c->link);
    return 0;
}

static void close_from_loop(struct eddy_sock *s);

static void call_end(struct eddy_sock *s, struct sock_call *c)
{
    eddy__list_remove(&c->link);
    if (!s->closing || !eddy__list_empty(&s->calls)) return;
    if (s->closer)
        eddy__task_wake(s->closer, 0);
    else if (s->close_deferred)
        close_from_loop(s);
}

/* Runs c->op (its kind and arguments set by the caller) on s. A call that was
 * in progress when s began closing ends with -ECANCELED. */
static int64_t call_op(struct eddy_sock *s, struct sock_call *c)
{
    if (s->closing) return -ECANCELED;
    c->op.fd = s->fd;
    return eddy__op_run(&c->op);
}

/* Ends a call from outside (eddy_sock_close). A call suspends only in
 * eddy__op_run, whose abort cancels the op in the backend (the call still
 * waits for its completion), or in accept's pause, whose abort cuts it short.
 * A call whose op is done but which has not resumed yet sees s->closing. */
static void call_cancel(struct sock_call *c)
{
    struct eddy_task *t = c->task;
    if (t->state != EDDY__TASK_SUSPENDED || !t->abort_wait) return;
    /* An abort is called once: the task's own cancellation, should it come
     * later, finds nothing left to abort. */
    void (*abort_wait)(struct eddy_task *) = t->abort_wait;
    t->abort_wait = NULL;
    abort_wait(t);
}

#ifndef _WIN32
/* Runs c->op, a READ or WRITE at offset -1, on a pipe end: natively or as
 * EDDY_OP_F_PIPE readiness I/O, as the loop's backend wants (lib/pipe.c). */
static int64_t pipe_call(struct eddy_sock *s, struct sock_call *c)
{
    if (s->closing) return -ECANCELED;
    int err = eddy__pipe_route(c->task->loop, &c->op, &s->nonblocking);
    if (err < 0) return err;
    return call_op(s, c);
}
#else
/* Windows: the iocp backend reads and writes a pipe end with overlapped
 * ReadFile and WriteFile (its offset is ignored). */
static int64_t pipe_call(struct eddy_sock *s, struct sock_call *c)
{
    return call_op(s, c);
}
#endif

int eddy__sock_route_send(struct eddy_sock *s, struct eddy_loop *loop, struct eddy_op *op)
{
    if (!s->pipe) return 0;
    op->kind = EDDY_OP_WRITE;
    op->u.io.offset = -1;
    op->u.io.flags = 0;
#ifdef _WIN32
    (void)loop;
    return 0;
#else
    return eddy__pipe_route(loop, op, &s->nonblocking);
#endif
}

/* ---- addresses ---------------------------------------------------------------- */

static socklen_t addr_len(int family)
{
    switch (family) {
    case AF_INET:
        return sizeof(struct sockaddr_in);
    case AF_INET6:
        return sizeof(struct sockaddr_in6);
    default:
        return 0;
    }
}

/* host as a numeric IPv4 or IPv6 address ("[::1]" too); -EINVAL if it is not one. */
static int parse_numeric(struct sockaddr_storage *ss, const char *host, uint16_t port)
{
    memset(ss, 0, sizeof(*ss));
    struct sockaddr_in *sin = (struct sockaddr_in *)ss;
    if (inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons(port);
        return 0;
    }
    char buf[INET6_ADDRSTRLEN];
    size_t n = strlen(host);
    if (n >= 2 && host[0] == '[' && host[n - 1] == ']' && n - 2 < sizeof(buf)) {
        memcpy(buf, host + 1, n - 2);
        buf[n - 2] = '\0';
        host = buf;
    }
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(port);
        return 0;
    }
    return -EINVAL;
}

EDDY_API int eddy_addr_parse(struct sockaddr_storage *out, const char *host, uint16_t port)
{
    if (!out || !host) return -EINVAL;
    return parse_numeric(out, host, port);
}

static int lookup_error(int rc, int saved_errno)
{
    switch (rc) {
    case EAI_NONAME:
#ifdef EAI_NODATA
    case EAI_NODATA:
#endif
#ifdef EAI_ADDRFAMILY
    case EAI_ADDRFAMILY:
#endif
        return -ENXIO;
    case EAI_AGAIN:
        return -EAGAIN;
    case EAI_MEMORY:
        return -ENOMEM;
#ifdef EAI_SYSTEM
    case EAI_SYSTEM:
        return saved_errno > 0 ? -saved_errno : -EIO;
#endif
    case EAI_FAIL:
        return -EIO;
    default:
        return -EINVAL; /* EAI_FAMILY, EAI_SERVICE, EAI_SOCKTYPE, EAI_BADFLAGS */
    }
}

struct resolve_request {
    const char *host;
    char service[8];
    struct addrinfo hints;
    struct addrinfo *result; /* written by the worker */
};

static intptr_t resolve_work(void *arg)
{
    struct resolve_request *r = arg;
    int rc = getaddrinfo(r->host, r->service, &r->hints, &r->result);
    if (rc != 0) {
        r->result = NULL;
        return lookup_error(rc, errno);
    }
    return 0;
}

/* getaddrinfo on a pool thread. The request stays in this frame until the op
 * has completed, even when the task is cancelled meanwhile. */
static int resolve(const char *host, uint16_t port, int type, int flags, struct addrinfo **out)
{
    struct resolve_request r = {.host = host};
    snprintf(r.service, sizeof(r.service), "%u", (unsigned)port);
    r.hints.ai_socktype = type;
    r.hints.ai_flags = flags | AI_NUMERICSERV;
    struct eddy_op op = {.kind = EDDY_OP_WORK, .fd = -1, .u.work = {resolve_work, &r}};
    int64_t err = eddy__op_run(&op);
    if (err < 0) {
        if (r.result) freeaddrinfo(r.result); /* the lookup won a race with cancellation */
        return (int)err;
    }
    *out = r.result;
    return 0;
}

/* ---- closing -------------------------------------------------------------------- */

static void close_op_complete(struct eddy_op *op)
{
    free(eddy__container_of(op, struct eddy_sock, close_op));
}

/* Closes s without a task: through the backend when its loop runs on this
 * thread (the backend forgets the fd), else with close(2). Frees s, now or
 * when the backend completes the close. */
/* Closes s's fd without the backend. On Windows a pipe end (lib/pipe_win.c)
 * is a HANDLE, which closesocket refuses (or, Winsock not started where no
 * loop ever ran, does not even look at). */
static int close_sock_fd(struct eddy_sock *s)
{
#ifdef _WIN32
    if (s->pipe) return CloseHandle((HANDLE)s->fd) ? 0 : eddy__win_error(GetLastError());
#endif
    return close_native(s->fd);
}

static void close_from_loop(struct eddy_sock *s)
{
    struct eddy_loop *loop = eddy_loop_current();
    close_installed(s);
    if (loop && loop == s->loop) {
        s->close_op = (struct eddy_op){.kind = EDDY_OP_CLOSE, .fd = s->fd};
        s->close_op.complete = close_op_complete;
        s->close_op.state = EDDY_OP_STATE_IN_FLIGHT;
        eddy__list_init(&s->close_op.link);
        int rc = loop->backend.ops->submit(&loop->backend, &s->close_op);
        if (rc == EDDY_OP_PENDING) return;
        if (rc == EDDY_OP_DONE) {
            free(s);
            return;
        }
    }
    /* A direct socket's slot, off its loop, stays until the loop ends. */
    if (!eddy__fd_direct(s->fd)) (void)close_sock_fd(s);
    free(s);
}

/* Task-only: an EDDY_OP_CLOSE of fd, shielded (a cancelled task still
 * closes). */
static int64_t close_op_run(intptr_t fd)
{
    eddy_shield_begin();
    struct eddy_op op = {.kind = EDDY_OP_CLOSE, .fd = fd};
    int64_t err = eddy__op_run(&op);
    eddy_shield_end();
    return err;
}

/* Task-only: closes the fd through an EDDY_OP_CLOSE op and frees s. */
static int close_in_task(struct eddy_sock *s)
{
    close_installed(s);
    int64_t err = close_op_run(s->fd);
    if (err == -ENOTSUP) err = close_sock_fd(s);
    if (err == -EINTR) err = 0; /* the fd is gone either way on Linux */
    free(s);
    return (int)err;
}

EDDY_API int eddy_sock_close(eddy_sock *s)
{
    if (!s) return -EINVAL;
    if (s->closing) return -EBADF;
    s->closing = true;
    if (s->owner) *s->owner = NULL;
    struct eddy__list *node;
    for (node = s->calls.next; node != &s->calls; node = node->next)
        call_cancel(eddy__container_of(node, struct sock_call, link));

    struct eddy_task *t = eddy__current_task();
    if (!t) {
        if (eddy__list_empty(&s->calls))
            close_from_loop(s);
        else
            s->close_deferred = true;
        return 0;
    }
    if (!eddy__list_empty(&s->calls)) {
        /* Wait, deaf to cancellation, for the cancelled calls to leave. */
        s->closer = t;
        t->abort_wait = NULL;
        t->wait_data = NULL;
        eddy__task_suspend(t);
        s->closer = NULL;
    }
    return close_in_task(s);
}

/* ---- TCP ------------------------------------------------------------------------ */

/* listen_on's flags, from eddy_listen_options. */
enum { LISTEN_REUSEPORT = 1 << 0, LISTEN_V6ONLY = 1 << 1 };

static int listen_on(struct eddy_sock **out, int family, int type, const struct sockaddr *addr,
                     socklen_t len, int backlog, bool dual_stack, unsigned flags)
{
    intptr_t fd = socket_open(family, type);
    if (fd < 0) return (int)fd;
    int err = 0;
#ifdef _WIN32
    /* Windows' SO_REUSEADDR lets a second socket take a port in use; what it
     * means on POSIX (rebinding past TIME_WAIT) is Windows' default. */
    err = set_int_option(fd, SOL_SOCKET, SO_EXCLUSIVEADDRUSE, 1);
#else
    /* SO_REUSEADDR lets a listener rebind while old connections linger in
     * TIME_WAIT. Not on datagram sockets: there it lets two sockets share a
     * port (Linux even hands one ephemeral port to two), and only one of them
     * gets what is sent to it. */
    if (family != AF_UNIX && type == SOCK_STREAM)
        err = set_int_option(fd, SOL_SOCKET, SO_REUSEADDR, 1);
#endif
    if (err == 0 && (flags & LISTEN_REUSEPORT)) {
#ifdef SO_REUSEPORT
        /* Each loop binds a listener of its own to the port; the kernel
         * spreads the connections over them. */
        err = set_int_option(fd, SOL_SOCKET, SO_REUSEPORT, 1);
#else
        err = -ENOTSUP;
#endif
    }
    if (err == 0 && family == AF_INET6)
        err = set_int_option(fd, IPPROTO_IPV6, IPV6_V6ONLY, !dual_stack || (flags & LISTEN_V6ONLY));
    if (err == 0 && bind(NATIVE(fd), addr, len) < 0) err = sock_errno();
    if (err == 0 && type == SOCK_STREAM &&
        listen(NATIVE(fd), backlog > 0 ? backlog : SOMAXCONN) < 0)
        err = sock_errno();
    if (err < 0) {
        (void)close_native(fd); /* never seen by the backend: no op ran on it */
        return err;
    }
    err = sock_new(out, fd, family, type);
    if (err == 0) (*out)->listening = (*out)->accept_direct = type == SOCK_STREAM;
    return err;
}

/* Binds to host:port: NULL or "" = every address, IPv6 and IPv4 where the
 * system has IPv6, else IPv4; a numeric address; or a name, resolved in the
 * pool, trying each address until one binds. */
static int bind_host(struct eddy_sock **out, const char *host, uint16_t port, int type, int backlog,
                     unsigned flags)
{
    if (!host || !*host) {
        struct sockaddr_in6 any6 = {.sin6_family = AF_INET6, .sin6_port = htons(port)};
        any6.sin6_addr = in6addr_any;
        int err = listen_on(out, AF_INET6, type, (struct sockaddr *)&any6, sizeof(any6), backlog,
                            true, flags);
        if (err != -EAFNOSUPPORT) return err;
        struct sockaddr_in any4 = {.sin_family = AF_INET, .sin_port = htons(port)};
        any4.sin_addr.s_addr = htonl(INADDR_ANY);
        return listen_on(out, AF_INET, type, (struct sockaddr *)&any4, sizeof(any4), backlog, false,
                         flags);
    }
    struct sockaddr_storage ss;
    if (parse_numeric(&ss, host, port) == 0)
        return listen_on(out, ss.ss_family, type, (struct sockaddr *)&ss, addr_len(ss.ss_family),
                         backlog, false, flags);
    struct addrinfo *res;
    int err = resolve(host, port, type, AI_PASSIVE, &res);
    if (err < 0) return err;
    err = -ENXIO;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        err =
            listen_on(out, ai->ai_family, type, ai->ai_addr, ai->ai_addrlen, backlog, false, flags);
        if (err == 0) break;
    }
    freeaddrinfo(res);
    return err;
}

/* Calls that make no op (a listen, a bind) check their capability here, as
 * eddy__op_run does for the others: -ENOTSUP when the loop's backend has none. */
static int loop_offers(eddy_cap cap)
{
    return eddy_loop_supports(eddy_loop_current(), cap) == EDDY_NONE ? -ENOTSUP : 0;
}

EDDY_API int eddy_tcp_listen(eddy_sock **out, const char *host, uint16_t port, int backlog)
{
    if (!eddy__current_task()) return -EPERM;
    if (!out) return -EINVAL;
    *out = NULL;
    int err = loop_offers(EDDY_CAP_TCP);
    if (err < 0) return err;
    return bind_host(out, host, port, SOCK_STREAM, backlog, 0);
}

/* eddy_listen_options' layouts, oldest first (lib/loop.c explains). */
static const size_t listen_options_layouts[] = {
    sizeof(eddy_listen_options), /* 0.1 */
};
_Static_assert(sizeof(eddy_listen_options) ==
                   offsetof(eddy_listen_options, reserved) + sizeof(uint8_t[2]),
               "eddy_listen_options: no tail padding, where a later field could land");

EDDY_API int eddy_tcp_listen_opts(eddy_sock **out, const char *host, uint16_t port,
                                  const eddy_listen_options *o)
{
    if (!eddy__current_task()) return -EPERM;
    if (!out) return -EINVAL;
    *out = NULL;
    eddy_listen_options lo = {0};
    if (o) {
        int err =
            eddy__options_read(&lo, sizeof lo, o, listen_options_layouts,
                               sizeof listen_options_layouts / sizeof listen_options_layouts[0]);
        if (err < 0) return err;
        if (lo.reserved[0] || lo.reserved[1]) return -EINVAL;
    }
    int err = loop_offers(EDDY_CAP_TCP);
    if (err < 0) return err;
    unsigned flags = (lo.reuseport ? LISTEN_REUSEPORT : 0) | (lo.v6only ? LISTEN_V6ONLY : 0);
    return bind_host(out, host, port, SOCK_STREAM, lo.backlog, flags);
}

/* Connects a new socket to addr; on failure (or cancellation) it is closed. */
static int connect_to(struct eddy_sock **out, int family, const struct sockaddr *addr,
                      socklen_t len)
{
    intptr_t fd = socket_open(family, SOCK_STREAM);
    if (fd < 0) return (int)fd;
    struct eddy_sock *s;
    int err = sock_new(&s, fd, family, SOCK_STREAM);
    if (err < 0) return err;
    struct sock_call c;
    err = call_begin(s, &c);
    if (err == 0) {
        c.op = (struct eddy_op){.kind = EDDY_OP_CONNECT};
        c.op.u.addr.addr = (struct sockaddr *)addr;
        c.op.u.addr.addrlen_value = len;
        err = (int)call_op(s, &c);
        call_end(s, &c);
    }
    if (err < 0) {
        (void)close_in_task(s);
        return err;
    }
    *out = s;
    return 0;
}

EDDY_API int eddy_tcp_connect(eddy_sock **out, const char *host, uint16_t port)
{
    if (!eddy__current_task()) return -EPERM;
    if (!out) return -EINVAL;
    *out = NULL;
    if (!host || !*host || port == 0) return -EINVAL;
    struct sockaddr_storage ss;
    if (parse_numeric(&ss, host, port) == 0)
        return connect_to(out, ss.ss_family, (struct sockaddr *)&ss, addr_len(ss.ss_family));
    struct addrinfo *res;
    int err = resolve(host, port, SOCK_STREAM, 0, &res);
    if (err < 0) return err;
    err = -ENXIO;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        err = connect_to(out, ai->ai_family, ai->ai_addr, ai->ai_addrlen);
        if (err == 0 || err == -ECANCELED) break;
    }
    freeaddrinfo(res);
    return err;
}

static void backoff_fire(struct eddy_timer *timer)
{
    struct backoff_wait *b = eddy__container_of(timer, struct backoff_wait, timer);
    eddy__task_wake(b->task, 0);
}

static void backoff_abort(struct eddy_task *t)
{
    struct backoff_wait *b = t->wait_data;
    eddy__timer_stop(&b->timer);
    eddy__task_wake(t, -ECANCELED);
}

/* Sleeps ns as eddy_sleep does, but eddy_sock_close can cut it short. */
static int accept_pause(struct sock_call *c, int64_t ns)
{
    struct eddy_task *t = c->task;
    if (eddy__task_cancelled(t)) return -ECANCELED;
    struct backoff_wait b = {.task = t};
    eddy__timer_init(&b.timer, t->loop, backoff_fire);
    int err = eddy__timer_start(&b.timer, eddy__loop_update_time(t->loop) + ns);
    if (err < 0) return err;
    t->abort_wait = backoff_abort;
    t->wait_data = &b;
    return (int)eddy__task_suspend(t);
}

static bool out_of_descriptors(int64_t err)
{
    return err == -EMFILE || err == -ENFILE || err == -ENOBUFS || err == -ENOMEM;
}

/* Closes a connection eddy_accept could not wrap: a direct descriptor is a
 * slot only the backend can close (close(2) would leave the connection
 * open and its peer waiting). */
static void close_accepted(intptr_t fd)
{
    if (eddy__fd_direct(fd))
        (void)close_op_run(fd);
    else
        (void)close_native(fd);
}

EDDY_API int eddy_accept(eddy_sock *listener, eddy_sock **out)
{
    if (out) *out = NULL;
    struct sock_call c;
    int err = call_begin(listener, &c);
    if (err < 0) return err;
    int64_t fd, backoff = 0;
    if (!out || !listener->listening) {
        fd = -EINVAL;
        goto done;
    }
    for (;;) {
        c.op = (struct eddy_op){.kind = EDDY_OP_ACCEPT};
        if (listener->accept_direct) c.op.flags = EDDY_OP_F_DIRECT;
        fd = call_op(listener, &c);
        if (fd >= 0 || (fd != -ECONNABORTED && !out_of_descriptors(fd))) break;
        if (fd == -ECONNABORTED) continue; /* that client gave up; take the next */
        /* Out of descriptors: the pending connection stays in the backlog and
         * the listener stays readable, so retrying at once would spin. */
        backoff = backoff ? backoff * 2 : ACCEPT_BACKOFF_MIN_NS;
        if (backoff > ACCEPT_BACKOFF_MAX_NS) backoff = ACCEPT_BACKOFF_MAX_NS;
        int perr = accept_pause(&c, backoff);
        if (perr < 0) {
            fd = perr;
            break;
        }
    }
    if (fd >= 0) {
        /* A direct one inherited it from the listener (accept_direct). */
        if (listener->family != AF_UNIX && !eddy__fd_direct(fd))
            (void)set_int_option(fd, IPPROTO_TCP, TCP_NODELAY, 1);
        err = sock_wrap(out, fd, listener->family, SOCK_STREAM);
        if (err < 0) {
            close_accepted(fd);
            fd = err;
        }
    }
done:
    call_end(listener, &c);
    return fd < 0 ? (int)fd : 0;
}

EDDY_API ssize_t eddy_recv(eddy_sock *s, void *buf, size_t len)
{
    struct sock_call c;
    int err = call_begin(s, &c);
    if (err < 0) return err;
    int64_t n = -EINVAL;
    if (buf && len > 0 && len <= SSIZE_MAX && s->pipe) {
        c.op = (struct eddy_op){.kind = EDDY_OP_READ, .fd = s->fd};
        c.op.u.io.buf = buf;
        c.op.u.io.len = len;
        c.op.u.io.offset = -1;
        n = pipe_call(s, &c);
    } else if (buf && len > 0 && len <= SSIZE_MAX) {
        c.op = (struct eddy_op){.kind = EDDY_OP_RECV};
        if (s->type == SOCK_STREAM) {
            c.op.flags = EDDY_OP_F_STREAM;
            c.op.u.io.offset = (int64_t)s->serial;
        }
        c.op.u.io.buf = buf;
        c.op.u.io.len = len;
        n = call_op(s, &c);
    }
    call_end(s, &c);
    return (ssize_t)n;
}

ssize_t eddy__recv_lend(eddy_sock *s, void *buf, size_t len, const void **lent, int64_t *token)
{
    *lent = NULL;
    if (!s || s->pipe || s->type != SOCK_STREAM) return eddy_recv(s, buf, len);
    struct sock_call c;
    int err = call_begin(s, &c);
    if (err < 0) return err;
    int64_t n = -EINVAL;
    if (buf && len > 0 && len <= SSIZE_MAX) {
        c.op = (struct eddy_op){.kind = EDDY_OP_RECV, .flags = EDDY_OP_F_STREAM | EDDY_OP_F_LEND};
        c.op.u.io.offset = (int64_t)s->serial;
        c.op.u.io.buf = buf;
        c.op.u.io.len = len;
        n = call_op(s, &c);
        if (n > 0 && c.op.u.io.buf != buf) {
            *lent = c.op.u.io.buf;
            *token = c.op.u.io.offset;
        }
    }
    call_end(s, &c);
    return (ssize_t)n;
}

/* Whether an address is this host's loopback (127/8, ::1, or 127/8 mapped in IPv6). */
static bool is_loopback(const struct sockaddr_storage *a)
{
    if (a->ss_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)a)->sin_addr.s_addr) >> 24) == 127;
    if (a->ss_family != AF_INET6) return false;
    const struct in6_addr *in6 = &((const struct sockaddr_in6 *)a)->sin6_addr;
    return IN6_IS_ADDR_LOOPBACK(in6) || (IN6_IS_ADDR_V4MAPPED(in6) && in6->s6_addr[12] == 127);
}

/* Whether s is a TCP socket whose peer is on another host: neither loopback
 * nor the socket's own address (a connection to one of this host's
 * addresses has that as its source). Asked once per socket. */
static bool peer_is_remote(eddy_sock *s)
{
    if (s->remote_peer == 0) {
        struct sockaddr_storage peer, self;
        socklen_t peer_len = sizeof peer, self_len = sizeof self;
        intptr_t fd = s->type == SOCK_STREAM && s->family != AF_UNIX ? sock_native(s) : -1;
        bool remote = fd >= 0 &&
                      getpeername(NATIVE(fd), (struct sockaddr *)&peer, &peer_len) == 0 &&
                      getsockname(NATIVE(fd), (struct sockaddr *)&self, &self_len) == 0 &&
                      !is_loopback(&peer) && peer.ss_family == self.ss_family;
        if (remote && peer.ss_family == AF_INET)
            remote = ((struct sockaddr_in *)&peer)->sin_addr.s_addr !=
                     ((struct sockaddr_in *)&self)->sin_addr.s_addr;
        else if (remote)
            remote =
                memcmp(&((struct sockaddr_in6 *)&peer)->sin6_addr,
                       &((struct sockaddr_in6 *)&self)->sin6_addr, sizeof(struct in6_addr)) != 0;
        s->remote_peer = remote ? 1 : -1;
    }
    return s->remote_peer > 0;
}

EDDY_API ssize_t eddy_send(eddy_sock *s, const void *buf, size_t len)
{
    struct sock_call c;
    int err = call_begin(s, &c);
    if (err < 0) return err;
    if ((!buf && len > 0) || len > SSIZE_MAX) {
        call_end(s, &c);
        return -EINVAL;
    }
    /* Smaller sends never go zero-copy: no need to ask where the peer is. */
    bool zerocopy = !s->pipe && len >= EDDY_ZEROCOPY_MIN && peer_is_remote(s);
    size_t sent = 0;
    while (sent < len) {
        int64_t n;
        if (s->pipe) {
            c.op = (struct eddy_op){.kind = EDDY_OP_WRITE, .fd = s->fd};
            c.op.u.io.buf = (char *)buf + sent;
            c.op.u.io.len = len - sent;
            c.op.u.io.offset = -1;
            n = pipe_call(s, &c);
            if (n == 0) n = -EIO; /* no progress: never loop forever */
        } else {
            c.op = (struct eddy_op){.kind = EDDY_OP_SEND};
            if (zerocopy) c.op.flags = EDDY_OP_F_ZEROCOPY;
            c.op.u.io.buf = (char *)buf + sent;
            c.op.u.io.len = len - sent;
            c.op.u.io.flags = MSG_NOSIGNAL;
            n = call_op(s, &c);
        }
        if (n < 0) {
            err = (int)n;
            break;
        }
        sent += (size_t)n;
    }
    call_end(s, &c);
    return err < 0 ? err : (ssize_t)sent;
}

EDDY_API int eddy_sock_shutdown(eddy_sock *s, int how)
{
    struct sock_call c;
    int err = call_begin(s, &c);
    if (err < 0) return err;
    if (how != EDDY_SHUT_RD && how != EDDY_SHUT_WR && how != EDDY_SHUT_RDWR) {
        err = -EINVAL;
    } else if (s->pipe) {
        err = -ENOTSOCK; /* as shutdown(2) says; a pipe has no half-close */
    } else {
        c.op = (struct eddy_op){.kind = EDDY_OP_SHUTDOWN};
        c.op.u.io.flags = how == EDDY_SHUT_RD ? SHUT_RD : how == EDDY_SHUT_WR ? SHUT_WR : SHUT_RDWR;
        err = (int)call_op(s, &c);
    }
    call_end(s, &c);
    return err;
}

EDDY_API int eddy_sock_port(const eddy_sock *s)
{
    if (!s) return -EINVAL;
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    intptr_t fd = sock_native(s);
    if (fd < 0) return (int)fd;
    if (getsockname(NATIVE(fd), (struct sockaddr *)&ss, &len) < 0) return sock_errno();
    if (ss.ss_family == AF_INET) return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (ss.ss_family == AF_INET6) return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return -EINVAL;
}

EDDY_API intptr_t eddy_sock_fd(const eddy_sock *s)
{
    return s ? sock_native(s) : -EINVAL;
}

EDDY_API int eddy_sock_nodelay(eddy_sock *s, bool on)
{
    if (!s) return -EINVAL;
    if (s->type != SOCK_STREAM || s->family == AF_UNIX) return -EINVAL;
    intptr_t fd = sock_native(s);
    return fd < 0 ? (int)fd : set_int_option(fd, IPPROTO_TCP, TCP_NODELAY, on);
}

/* ---- UDP ------------------------------------------------------------------------ */

EDDY_API int eddy_udp_bind(eddy_sock **out, const char *host, uint16_t port)
{
    if (!eddy__current_task()) return -EPERM;
    if (!out) return -EINVAL;
    *out = NULL;
    int err = loop_offers(EDDY_CAP_UDP);
    if (err < 0) return err;
    return bind_host(out, host, port, SOCK_DGRAM, 0, 0);
}

/* An IPv4 destination for a dual-stack IPv6 socket: ::ffff:a.b.c.d. */
static void map_v4(struct sockaddr_in6 *to, const struct sockaddr_in *from)
{
    memset(to, 0, sizeof(*to));
    to->sin6_family = AF_INET6;
    to->sin6_port = from->sin_port;
    to->sin6_addr.s6_addr[10] = 0xff;
    to->sin6_addr.s6_addr[11] = 0xff;
    memcpy(&to->sin6_addr.s6_addr[12], &from->sin_addr, 4);
}

/* A v4-mapped sender on a dual-stack socket is reported as plain IPv4. */
static void unmap_v4(struct sockaddr_storage *ss)
{
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
    if (ss->ss_family != AF_INET6 || !IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr)) return;
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = sin6->sin6_port};
    memcpy(&sin.sin_addr, &sin6->sin6_addr.s6_addr[12], 4);
    memset(ss, 0, sizeof(*ss));
    memcpy(ss, &sin, sizeof(sin));
}

EDDY_API ssize_t eddy_sendto(eddy_sock *s, const void *buf, size_t len, const struct sockaddr *to)
{
    struct sock_call c;
    int err = call_begin(s, &c);
    if (err < 0) return err;
    struct sockaddr_in6 mapped;
    struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
    if ((!buf && len > 0) || len > SSIZE_MAX || s->type != SOCK_DGRAM) {
        err = -EINVAL;
    } else if (to) {
        msg.msg_name = (void *)to;
        msg.msg_namelen = addr_len(to->sa_family);
        if (msg.msg_namelen == 0) err = -EAFNOSUPPORT;
        if (to->sa_family == AF_INET && s->family == AF_INET6) {
            map_v4(&mapped, (const struct sockaddr_in *)to);
            msg.msg_name = &mapped;
            msg.msg_namelen = sizeof(mapped);
        }
    }
    int64_t n = err;
    if (err == 0) {
        c.op = (struct eddy_op){.kind = EDDY_OP_SENDMSG};
        c.op.u.msg.msg = &msg;
        c.op.u.msg.flags = MSG_NOSIGNAL;
        n = call_op(s, &c);
    }
    call_end(s, &c);
    return (ssize_t)n;
}

EDDY_API ssize_t eddy_recvfrom(eddy_sock *s, void *buf, size_t len, struct sockaddr_storage *from)
{
    struct sock_call c;
    int err = call_begin(s, &c);
    if (err < 0) return err;
    struct sockaddr_storage sender;
    struct iovec iov = {.iov_base = buf, .iov_len = len};
    struct msghdr msg = {
        .msg_name = &sender, .msg_namelen = sizeof(sender), .msg_iov = &iov, .msg_iovlen = 1};
    int64_t n = -EINVAL;
    if ((buf || len == 0) && len <= SSIZE_MAX && s->type == SOCK_DGRAM) {
        c.op = (struct eddy_op){.kind = EDDY_OP_RECVMSG};
        c.op.u.msg.msg = &msg;
        n = call_op(s, &c);
    }
    if (n >= 0 && from) {
        memset(from, 0, sizeof(*from));
        memcpy(from, &sender,
               (size_t)msg.msg_namelen < sizeof(sender) ? (size_t)msg.msg_namelen : sizeof(sender));
        unmap_v4(from);
    }
    call_end(s, &c);
    return (ssize_t)n;
}

/* ---- Unix stream sockets --------------------------------------------------------- */

#ifdef _WIN32
/* No Unix sockets on IOCP (lib/caps_table.h): -ENOTSUP, after the checks
 * every platform makes. */
EDDY_API int eddy_unix_listen(eddy_sock **out, const char *path, int backlog)
{
    if (!eddy__current_task()) return -EPERM;
    if (!out) return -EINVAL;
    *out = NULL;
    return -ENOTSUP;
}

EDDY_API int eddy_unix_connect(eddy_sock **out, const char *path)
{
    return eddy_unix_listen(out, path, 0);
}
#else
/* path as a sockaddr_un; a leading '@' names Linux's abstract namespace. */
static int unix_address(struct sockaddr_un *sun, socklen_t *len, const char *path)
{
    if (!path || !*path) return -EINVAL;
    size_t n = strlen(path);
    if (n >= sizeof(sun->sun_path)) return -ENAMETOOLONG;
    memset(sun, 0, sizeof(*sun));
    sun->sun_family = AF_UNIX;
    memcpy(sun->sun_path, path, n);
    *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
#ifdef __linux__
    if (path[0] == '@') {
        sun->sun_path[0] = '\0';
        *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
    }
#endif
    return 0;
}

EDDY_API int eddy_unix_listen(eddy_sock **out, const char *path, int backlog)
{
    if (!eddy__current_task()) return -EPERM;
    if (!out) return -EINVAL;
    *out = NULL;
    int err = loop_offers(EDDY_CAP_UNIX_SOCKETS);
    if (err < 0) return err;
    struct sockaddr_un sun;
    socklen_t len;
    if ((err = unix_address(&sun, &len, path)) < 0) return err;
    return listen_on(out, AF_UNIX, SOCK_STREAM, (struct sockaddr *)&sun, len, backlog, false, 0);
}

EDDY_API int eddy_unix_connect(eddy_sock **out, const char *path)
{
    if (!eddy__current_task()) return -EPERM;
    if (!out) return -EINVAL;
    *out = NULL;
    struct sockaddr_un sun;
    socklen_t len;
    int err = unix_address(&sun, &len, path);
    if (err < 0) return err;
    return connect_to(out, AF_UNIX, (struct sockaddr *)&sun, len);
}
#endif

/* ---- for lib/stream.c's Happy Eyeballs ------------------------------------------- */

int eddy__tcp_resolve(const char *host, uint16_t port, struct addrinfo **out)
{
    return resolve(host, port, SOCK_STREAM, 0, out);
}

int eddy__tcp_connect_addr(eddy_sock **out, const struct sockaddr *addr, socklen_t len)
{
    if (!eddy__current_task()) return -EPERM;
    return connect_to(out, addr->sa_family, addr, len);
}
