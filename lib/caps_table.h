/* SPDX-License-Identifier: MIT */
/* The capability table, as data: one row per backend eddy knows (compiled in
 * here or not), one cell per eddy_cap, each native, emulated or none with a
 * one-line note wherever it is not native. lib/caps.c answers the API from it
 * (refined at run time by each running backend's supports() hook);
 * tools/eddy-caps prints it, and README's table and docs/platforms.md are that
 * output. It is a header of static data so that the tool, which links only the
 * library's public API, prints the very notes the library was built with.
 *
 * Rules: every cell set (a NONE cell without a note is a cell forgotten, and
 * tests/test_caps.c says so); rows in the order a default loop tries them;
 * never claim what the code does not do: a feature eddy has no code for is
 * NONE, "not implemented yet", until it has. A backend not written yet
 * (status != NULL) keeps the cells of its design, which is what
 * eddy_backend_supports() answers for it; docs and the tool say it is planned. */
#ifndef EDDY_CAPS_TABLE_H
#define EDDY_CAPS_TABLE_H

#include "eddy.h"

struct eddy__caps_cell {
    eddy_support support;
    const char *note; /* why emulated or absent, or what native means here; may be NULL if native */
};

struct eddy__caps_row {
    const char *name;   /* as in eddy_loop_options.backend */
    const char *where;  /* the platforms it runs on */
    const char *family; /* completion or readiness (docs/design.md, "Layers") */
    const char *status; /* NULL once the backend is written; else what it is */
    /* How to build it on the platform the table was compiled for, when it can
     * run there but a build may leave it out; NULL where it is always built
     * or cannot be built at all. */
    const char *build;
    struct eddy__caps_cell cells[EDDY_CAP_COUNT];
};

#define CAPS_NOT_YET "not implemented yet"
#define CAPS_POOL    "files through the thread pool"
#define CAPS_DNS     "getaddrinfo in the thread pool"
#define CAPS_URING   "io_uring only"
#define CAPS_SIGNALS                                                                               \
    "a sigaction handler wakes the loop through a pipe it polls; every loop gets each signal"
#define CAPS_PIDFD                                                                                 \
    "posix_spawn; exits through a pidfd polled on the loop (Linux 5.3+), else (emulated) "         \
    "waitpid polled on a timer"
#define CAPS_TLS "OpenSSL over memory BIOs, built with it (not `--without-openssl`); no kTLS yet"

/* The backends a build may leave out on the platform at hand: eddy-caps
 * says how to build them instead of "not built for this platform". */
#if defined(__linux__)
#define CAPS_BUILD_URING                                                                           \
    "configure with liburing installed (Debian: liburing-dev), without --without-liburing"
#define CAPS_BUILD_KQUEUE "configure --with-kqueue, against libkqueue (docs/platforms.md)"
#elif defined(__APPLE__) || defined(__FreeBSD__) || defined(__NetBSD__) || defined(__OpenBSD__)
#define CAPS_BUILD_URING  NULL
#define CAPS_BUILD_KQUEUE "configure without --without-kqueue"
#else
#define CAPS_BUILD_URING  NULL
#define CAPS_BUILD_KQUEUE NULL
#endif

static const struct eddy__caps_row eddy__caps_rows[] = {
    {
        .name = "io_uring",
        .where = "Linux 5.6+",
        .family = "completion",
        .build = CAPS_BUILD_URING,
        .cells =
            {
                [EDDY_CAP_TCP] = {EDDY_NATIVE, NULL},
                [EDDY_CAP_UDP] = {EDDY_NATIVE, NULL},
                [EDDY_CAP_UNIX_SOCKETS] = {EDDY_NATIVE, NULL},
                [EDDY_CAP_FILE_IO] =
                    {EDDY_NATIVE, "a file opcode the running kernel lacks goes to the thread pool"},
                [EDDY_CAP_TIMERS] = {EDDY_NATIVE, NULL},
                [EDDY_CAP_CANCEL] = {EDDY_NATIVE, NULL},
                [EDDY_CAP_WAKEUP] = {EDDY_NATIVE, NULL},
                [EDDY_CAP_WATCH_FD] = {EDDY_NATIVE, "IORING_OP_POLL_ADD, one-shot, re-armed"},
                [EDDY_CAP_SIGNALS] = {EDDY_NATIVE, CAPS_SIGNALS},
                [EDDY_CAP_SUBPROCESS] = {EDDY_NATIVE,
                                         "posix_spawn; exits through IORING_OP_WAITID on a pidfd "
                                         "(Linux 6.7+), else a polled pidfd (5.3+), else "
                                         "(emulated) waitpid polled on a timer"},
                [EDDY_CAP_DNS] = {EDDY_EMULATED, CAPS_DNS},
                [EDDY_CAP_MULTISHOT_ACCEPT] = {EDDY_NATIVE,
                                               "Linux 5.19+; armed while an accept waits"},
                [EDDY_CAP_MULTISHOT_RECV] = {EDDY_NATIVE,
                                             "Linux 6.0+; stream sockets read in a loop; "
                                             "`eddy_recv` copies out"},
                [EDDY_CAP_BUFFER_RING] = {EDDY_NATIVE,
                                          "Linux 5.19+; the loop's receive buffers, for "
                                          "multishot receives"},
                [EDDY_CAP_ZEROCOPY_SEND] = {EDDY_NATIVE,
                                            "Linux 6.0+; sends of 64 KiB and more to other hosts"},
                [EDDY_CAP_SENDFILE] = {EDDY_NATIVE,
                                       "IORING_OP_SPLICE file -> pipe -> socket (5.7+); "
                                       "else sendfile(2) when the socket has room"},
                [EDDY_CAP_TLS] = {EDDY_NATIVE, CAPS_TLS},
                [EDDY_CAP_MSG_RING] = {EDDY_NATIVE,
                                       "Linux 6.3+; a wake from another io_uring loop's thread; "
                                       "from elsewhere the eventfd"},
                [EDDY_CAP_DIRECT_DESCRIPTORS] = {EDDY_NATIVE,
                                                 "Linux 6.8+; accepted sockets, a real "
                                                 "descriptor installed on demand"},
                [EDDY_CAP_REGISTERED_FILES] = {EDDY_NATIVE,
                                               "Linux 5.13+; a file read or written often, "
                                               "up to 256 per loop"},
                [EDDY_CAP_RECV_BUNDLE] = {EDDY_NATIVE,
                                          "Linux 6.10+; one completion for the bytes of several "
                                          "ring buffers"},
                [EDDY_CAP_BUFFER_RING_INCREMENTAL] = {EDDY_NATIVE,
                                                      "Linux 6.12+; a buffer partly filled goes "
                                                      "on filling, so small reads share one"},
                [EDDY_CAP_REGISTERED_BUFFERS] = {EDDY_NATIVE,
                                                 "Linux 5.19+; file reads and writes in "
                                                 "memory registered with the loop"},
            },
    },
    {
        .name = "epoll",
        .where = "Linux",
        .family = "readiness",
        .cells =
            {
                [EDDY_CAP_TCP] = {EDDY_NATIVE, NULL},
                [EDDY_CAP_UDP] = {EDDY_NATIVE, NULL},
                [EDDY_CAP_UNIX_SOCKETS] = {EDDY_NATIVE, NULL},
                [EDDY_CAP_FILE_IO] = {EDDY_EMULATED, CAPS_POOL},
                [EDDY_CAP_TIMERS] = {EDDY_NATIVE, NULL},
                [EDDY_CAP_CANCEL] = {EDDY_NATIVE, NULL},
                [EDDY_CAP_WAKEUP] = {EDDY_NATIVE, NULL},
                [EDDY_CAP_WATCH_FD] = {EDDY_NATIVE, NULL},
                [EDDY_CAP_SIGNALS] = {EDDY_NATIVE, CAPS_SIGNALS},
                [EDDY_CAP_SUBPROCESS] = {EDDY_NATIVE, CAPS_PIDFD},
                [EDDY_CAP_DNS] = {EDDY_EMULATED, CAPS_DNS},
                [EDDY_CAP_MULTISHOT_ACCEPT] = {EDDY_NONE, CAPS_URING},
                [EDDY_CAP_MULTISHOT_RECV] = {EDDY_NONE, CAPS_URING},
                [EDDY_CAP_BUFFER_RING] = {EDDY_NONE, CAPS_URING},
                [EDDY_CAP_ZEROCOPY_SEND] = {EDDY_NONE, CAPS_NOT_YET},
                [EDDY_CAP_SENDFILE] = {EDDY_NATIVE, "sendfile(2) when the socket has room"},
                [EDDY_CAP_TLS] = {EDDY_NATIVE, CAPS_TLS},
                [EDDY_CAP_MSG_RING] = {EDDY_NONE, CAPS_URING},
                [EDDY_CAP_DIRECT_DESCRIPTORS] = {EDDY_NONE, CAPS_URING},
                [EDDY_CAP_REGISTERED_FILES] = {EDDY_NONE, CAPS_URING},
                [EDDY_CAP_RECV_BUNDLE] = {EDDY_NONE, CAPS_URING},
                [EDDY_CAP_BUFFER_RING_INCREMENTAL] = {EDDY_NONE, CAPS_URING},
                [EDDY_CAP_REGISTERED_BUFFERS] = {EDDY_NONE, CAPS_URING},
            },
    },
    {
        .name = "kqueue",
        .where = "macOS, FreeBSD, NetBSD, OpenBSD; Linux through libkqueue",
        .family = "readiness",
        .build = CAPS_BUILD_KQUEUE,
        .cells =
            {
                [EDDY_CAP_TCP] = {EDDY_NATIVE, NULL},
                [EDDY_CAP_UDP] = {EDDY_NATIVE, NULL},
                [EDDY_CAP_UNIX_SOCKETS] = {EDDY_NATIVE, NULL},
                [EDDY_CAP_FILE_IO] = {EDDY_EMULATED, CAPS_POOL},
                [EDDY_CAP_TIMERS] = {EDDY_NATIVE, NULL},
                [EDDY_CAP_CANCEL] = {EDDY_NATIVE, NULL},
                [EDDY_CAP_WAKEUP] = {EDDY_NATIVE, NULL},
                [EDDY_CAP_WATCH_FD] = {EDDY_NATIVE, NULL},
                [EDDY_CAP_SIGNALS] = {EDDY_NATIVE, CAPS_SIGNALS},
                [EDDY_CAP_SUBPROCESS] = {EDDY_NATIVE,
                                         "posix_spawn; exits through EVFILT_PROC; stdio pipes "
                                         "by readiness"},
                [EDDY_CAP_DNS] = {EDDY_EMULATED, CAPS_DNS},
                [EDDY_CAP_MULTISHOT_ACCEPT] = {EDDY_NONE, CAPS_URING},
                [EDDY_CAP_MULTISHOT_RECV] = {EDDY_NONE, CAPS_URING},
                [EDDY_CAP_BUFFER_RING] = {EDDY_NONE, CAPS_URING},
                [EDDY_CAP_ZEROCOPY_SEND] = {EDDY_NONE, CAPS_NOT_YET},
                [EDDY_CAP_SENDFILE] = {EDDY_NATIVE,
                                       "sendfile(2) when the socket has room (FreeBSD, macOS, "
                                       "Linux); a read/write loop on NetBSD and OpenBSD"},
                [EDDY_CAP_TLS] = {EDDY_NATIVE, CAPS_TLS},
                [EDDY_CAP_MSG_RING] = {EDDY_NONE, CAPS_URING},
                [EDDY_CAP_DIRECT_DESCRIPTORS] = {EDDY_NONE, CAPS_URING},
                [EDDY_CAP_REGISTERED_FILES] = {EDDY_NONE, CAPS_URING},
                [EDDY_CAP_RECV_BUNDLE] = {EDDY_NONE, CAPS_URING},
                [EDDY_CAP_BUFFER_RING_INCREMENTAL] = {EDDY_NONE, CAPS_URING},
                [EDDY_CAP_REGISTERED_BUFFERS] = {EDDY_NONE, CAPS_URING},
            },
    },
    {
        .name = "iocp",
        .where = "Windows 8+ (mingw-w64 builds; tested under Wine)",
        .family = "completion",
        .cells =
            {
                [EDDY_CAP_TCP] = {EDDY_NATIVE, "AcceptEx, ConnectEx, WSARecv, WSASend"},
                [EDDY_CAP_UDP] = {EDDY_NATIVE, "WSARecvFrom, WSASendTo"},
                [EDDY_CAP_UNIX_SOCKETS] = {EDDY_NONE, "not on Windows in eddy: -ENOTSUP"},
                [EDDY_CAP_FILE_IO] = {EDDY_NATIVE,
                                      "overlapped reads and writes at offsets; open, sync, stat "
                                      "and path ops in the thread pool"},
                [EDDY_CAP_TIMERS] = {EDDY_NATIVE, NULL},
                [EDDY_CAP_CANCEL] = {EDDY_NATIVE, "CancelIoEx"},
                [EDDY_CAP_WAKEUP] = {EDDY_NATIVE, "PostQueuedCompletionStatus"},
                [EDDY_CAP_WATCH_FD] = {EDDY_NATIVE,
                                       "sockets only (IOCTL_AFD_POLL, one-shot, re-armed); a "
                                       "pipe, file or console handle gives -ENOTSUP"},
                [EDDY_CAP_SIGNALS] = {EDDY_NATIVE, "SIGINT and SIGBREAK only, from console control "
                                                   "events (Ctrl+C, Ctrl+Break); others -ENOTSUP"},
                [EDDY_CAP_SUBPROCESS] = {EDDY_NATIVE,
                                         "CreateProcessW; stdio over overlapped named pipes; "
                                         "exits through the process handle "
                                         "(RegisterWaitForSingleObject); kill: SIGKILL and "
                                         "SIGTERM only (TerminateProcess)"},
                [EDDY_CAP_DNS] = {EDDY_EMULATED, CAPS_DNS},
                [EDDY_CAP_MULTISHOT_ACCEPT] = {EDDY_NONE, CAPS_URING},
                [EDDY_CAP_MULTISHOT_RECV] = {EDDY_NONE, CAPS_URING},
                [EDDY_CAP_BUFFER_RING] = {EDDY_NONE, CAPS_URING},
                [EDDY_CAP_ZEROCOPY_SEND] = {EDDY_NONE, CAPS_NOT_YET},
                [EDDY_CAP_SENDFILE] = {EDDY_NATIVE,
                                       "TransmitFile, overlapped, at most 2 GiB - 2 per call; "
                                       "(emulated) overlapped reads and WSASend where the "
                                       "provider has no TransmitFile"},
                [EDDY_CAP_TLS] = {EDDY_NONE, "no OpenSSL in the mingw-w64 build; lib/tls.c would "
                                             "need one built for Windows"},
                [EDDY_CAP_MSG_RING] = {EDDY_NONE, CAPS_URING},
                [EDDY_CAP_DIRECT_DESCRIPTORS] = {EDDY_NONE, CAPS_URING},
                [EDDY_CAP_REGISTERED_FILES] = {EDDY_NONE, CAPS_URING},
                [EDDY_CAP_RECV_BUNDLE] = {EDDY_NONE, CAPS_URING},
                [EDDY_CAP_BUFFER_RING_INCREMENTAL] = {EDDY_NONE, CAPS_URING},
                [EDDY_CAP_REGISTERED_BUFFERS] = {EDDY_NONE, CAPS_URING},
            },
    },
};

#define EDDY__CAPS_ROW_COUNT (sizeof(eddy__caps_rows) / sizeof(eddy__caps_rows[0]))

/* What each capability covers, for the docs the tool prints. */
static const char *const eddy__caps_descriptions[EDDY_CAP_COUNT] = {
    [EDDY_CAP_TCP] = "TCP sockets: `eddy_tcp_listen`, `eddy_tcp_connect`, `eddy_accept`, "
                     "`eddy_recv`, `eddy_send`, `eddy_sock_shutdown`",
    [EDDY_CAP_UDP] = "UDP sockets: `eddy_udp_bind`, `eddy_sendto`, `eddy_recvfrom`",
    [EDDY_CAP_UNIX_SOCKETS] = "Unix stream sockets: `eddy_unix_listen`, `eddy_unix_connect`",
    [EDDY_CAP_FILE_IO] = "files and paths: `eddy_file_*`, `eddy_fs_*`",
    [EDDY_CAP_TIMERS] = "timers, sleeps and timeouts: `eddy_call_later`, `eddy_sleep`, "
                        "`eddy_await_timeout`",
    [EDDY_CAP_CANCEL] = "withdrawing an op in flight when its task is cancelled",
    [EDDY_CAP_WAKEUP] = "waking the loop from another thread: `eddy_call_soon_threadsafe`, "
                        "thread-pool completions",
    [EDDY_CAP_WATCH_FD] = "waiting for readiness on a descriptor eddy does not own",
    [EDDY_CAP_SIGNALS] = "handling signals on the loop",
    [EDDY_CAP_SUBPROCESS] = "running child processes and waiting for them: `eddy_process_*`",
    [EDDY_CAP_DNS] = "host names in `eddy_tcp_connect`, `eddy_tcp_listen`, `eddy_udp_bind`",
    [EDDY_CAP_MULTISHOT_ACCEPT] = "one submission accepting many connections",
    [EDDY_CAP_MULTISHOT_RECV] = "one submission receiving many times",
    [EDDY_CAP_BUFFER_RING] = "receive buffers picked by the kernel from a ring the loop provides",
    [EDDY_CAP_ZEROCOPY_SEND] = "sends that do not copy the payload",
    [EDDY_CAP_SENDFILE] = "file-to-socket transfer without a copy through user space",
    [EDDY_CAP_TLS] = "TLS on streams: `eddy_stream_start_tls`, `eddy_stream_alpn`",
    [EDDY_CAP_MSG_RING] = "one loop waking another without a system call on the woken side "
                          "(channels, `eddy_spawn_threadsafe`, `eddy_call_soon_threadsafe`)",
    [EDDY_CAP_DIRECT_DESCRIPTORS] = "accepted sockets in the backend's own descriptor table "
                                    "(no descriptor of the process until one is asked for)",
    [EDDY_CAP_REGISTERED_FILES] = "files known to the kernel by a slot of the loop's own table, "
                                  "which their reads and writes name instead of the descriptor",
    [EDDY_CAP_RECV_BUNDLE] = "multishot receives that fill several ring buffers per completion",
    [EDDY_CAP_BUFFER_RING_INCREMENTAL] =
        "ring buffers consumed incrementally: small reads share a buffer",
    [EDDY_CAP_REGISTERED_BUFFERS] = "file reads and writes into memory registered with the loop "
                                    "(`eddy_buffer_register`), without pinning its pages per op",
};

/* The platforms, with their backends in the order a default loop tries them. */
struct eddy__caps_platform {
    const char *name;
    const char *backends[3]; /* NULL-terminated */
    const char *text;
};

static const struct eddy__caps_platform eddy__caps_platforms[] = {
    {"Linux",
     {"io_uring", "epoll", NULL},
     "io_uring first; when the kernel or a sandbox refuses it (ENOSYS; EPERM from seccomp or "
     "`kernel.io_uring_disabled`; ENOMEM from the memlock limit) a default loop runs on epoll, "
     "and `eddy_backend_available(\"io_uring\")` says why. `EDDY_BACKEND` or "
     "`eddy_loop_options.backend` picks one by name. The kqueue backend also builds on Linux "
     "against libkqueue (`--with-kqueue`), to test it there: a loop runs on it only when asked "
     "by name, never by default."},
    {"macOS, FreeBSD, NetBSD, OpenBSD",
     {"kqueue", NULL},
     "kqueue is the one backend, built by default."},
    {"Windows",
     {"iocp", NULL},
     "`./configure --host=x86_64-w64-mingw32 && make` builds `libeddy-0.dll` with its import "
     "library (`libeddy.dll.a`) and `.def` file, needing only kernel32, msvcrt and ws2_32 "
     "(win32/README.md; MSVC programs link the import library). IOCP is the one backend; what "
     "Windows offers natively works, the rest is absent and returns `-ENOTSUP`. Tasks switch "
     "with Win64 assembly on VirtualAlloc'd stacks; the thread pool runs on Windows threads. "
     "Paths are UTF-8. Unlike POSIX, `eddy_sock_fd` is a `SOCKET` and `eddy_file_fd` a "
     "`HANDLE`. Readiness exists for sockets only: `eddy_wait_readable`/`_writable` and "
     "`eddy_watch_*` take a `SOCKET` (any, eddy's or another library's), and give `-ENOTSUP` "
     "for a pipe, file or console handle. A completion port is no descriptor another loop "
     "could wait on, so `eddy_loop_fd` is `-ENOTSUP`: a foreign loop drives eddy with "
     "`eddy_loop_run_once` (0 on each tick of a timer, or a bounded wait when it is idle)."},
};

#define EDDY__CAPS_PLATFORM_COUNT (sizeof(eddy__caps_platforms) / sizeof(eddy__caps_platforms[0]))

#undef CAPS_NOT_YET
#undef CAPS_POOL
#undef CAPS_DNS
#undef CAPS_URING
#undef CAPS_PIDFD
#undef CAPS_TLS
#undef CAPS_BUILD_URING
#undef CAPS_BUILD_KQUEUE

#endif /* EDDY_CAPS_TABLE_H */
