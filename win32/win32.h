/* SPDX-License-Identifier: MIT */
/* Windows-only support shared by lib/ and backends/iocp.c (docs/design.md,
 * "Layout": win32/): the Windows headers in the order Winsock needs, the POSIX socket
 * names eddy's code uses, and the helpers in the win32/ sources. Included only when
 * _WIN32 is defined. */
#ifndef EDDY_WIN32_H
#define EDDY_WIN32_H

#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#ifndef _WIN32_WINNT
#define _WIN32_WINNT 0x0602 /* Windows 8: GetQueuedCompletionStatusEx, CancelIoEx, ... */
#endif
#include <winsock2.h>
#include <ws2tcpip.h>
#include <mswsock.h>
#include <windows.h>

#include <stddef.h>
#include <stdint.h>

/* Winsock has no scatter/gather message header of POSIX's shape; eddy's
 * datagram ops (EDDY_OP_SENDMSG, EDDY_OP_RECVMSG) carry this one, with the
 * POSIX field names, and the iocp backend turns it into WSABUFs. */
#ifndef EDDY_IOVEC_DEFINED /* eddy.h defines it too */
#define EDDY_IOVEC_DEFINED
struct iovec {
    void *iov_base;
    size_t iov_len;
};
#endif
struct msghdr {
    void *msg_name;
    socklen_t msg_namelen;
    struct iovec *msg_iov;
    size_t msg_iovlen;
    void *msg_control;
    size_t msg_controllen;
    int msg_flags;
};

#ifndef SHUT_RD
#define SHUT_RD   SD_RECEIVE
#define SHUT_WR   SD_SEND
#define SHUT_RDWR SD_BOTH
#endif

struct eddy_op;

/* A Windows (GetLastError) or Winsock (WSAGetLastError) code as a negative
 * errno-style code (win32/error.c). */
int eddy__win_error(unsigned long code);
/* Calls WSAStartup once per process; 0 or a negative code (win32/sys.c). */
int eddy__win_startup(void);
/* Runs a file or path op (open, read, write, fsync, stat, unlink, rename,
 * mkdir, close) with blocking Windows calls: the thread pool's worker side
 * (win32/fs.c). fd is a HANDLE. */
int64_t eddy__win_file_op(struct eddy_op *op);
/* UTF-8 to a malloc'd UTF-16 string; NULL on bad input or no memory. */
wchar_t *eddy__win_wide(const char *utf8);

#endif /* EDDY_WIN32_H */
