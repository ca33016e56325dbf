/* SPDX-License-Identifier: MIT */
/* Pipes on Windows, as asyncio's Proactor makes them: anonymous pipes
 * (CreatePipe) cannot do overlapped I/O, so a pipe is a named pipe with a
 * name nobody else uses, one instance, byte mode, remote clients refused.
 * The loop's ends are opened with FILE_FLAG_OVERLAPPED and read and written
 * by the iocp backend with ReadFile and WriteFile (a READ or WRITE op at
 * offset -1, which a pipe ignores), associated with its completion port on
 * first use, cancelled with CancelIoEx. A read whose writer has gone ends
 * with ERROR_BROKEN_PIPE: end of file, 0 bytes; a write whose reader has
 * gone ends with ERROR_NO_DATA or ERROR_BROKEN_PIPE: -EPIPE. A child's end
 * (lib/process_win.c) is opened without FILE_FLAG_OVERLAPPED, as a C
 * runtime's stdio expects. */
#include <stdio.h>

#include "pipe.h"

#include <winternl.h>

#define PIPE_BUFFER (64 * 1024)

int eddy__win_pipe_pair(intptr_t *server, intptr_t *client, bool server_reads,
                        bool client_overlapped, bool client_inherited)
{
    static volatile LONG counter;
    wchar_t name[96];
    swprintf(name, sizeof name / sizeof name[0], L"\\\\.\\pipe\\eddy-%lu-%ld-%p",
             (unsigned long)GetCurrentProcessId(), (long)InterlockedIncrement(&counter),
             (void *)name);
    DWORD open_mode = (server_reads ? PIPE_ACCESS_INBOUND : PIPE_ACCESS_OUTBOUND) |
                      FILE_FLAG_OVERLAPPED | FILE_FLAG_FIRST_PIPE_INSTANCE;
    HANDLE s = CreateNamedPipeW(name, open_mode,
                                PIPE_TYPE_BYTE | PIPE_READMODE_BYTE | PIPE_WAIT |
                                    PIPE_REJECT_REMOTE_CLIENTS,
                                1, PIPE_BUFFER, PIPE_BUFFER, 0, NULL);
    if (s == INVALID_HANDLE_VALUE) return eddy__win_error(GetLastError());
    SECURITY_ATTRIBUTES sa = {sizeof sa, NULL, client_inherited};
    HANDLE c = CreateFileW(name, server_reads ? GENERIC_WRITE : GENERIC_READ, 0, &sa, OPEN_EXISTING,
                           client_overlapped ? FILE_FLAG_OVERLAPPED : 0, NULL);
    if (c == INVALID_HANDLE_VALUE) {
        int err = eddy__win_error(GetLastError());
        CloseHandle(s);
        return err;
    }
    *server = (intptr_t)s;
    *client = (intptr_t)c;
    return 0;
}

EDDY_API int eddy_pipe(eddy_sock *ends[2])
{
    if (!ends) return -EINVAL;
    ends[0] = ends[1] = NULL;
    intptr_t r, w;
    int err = eddy__win_pipe_pair(&r, &w, true, true, false);
    if (err < 0) return err;
    err = eddy__sock_adopt(&ends[0], r, AF_UNIX, SOCK_STREAM, true);
    if (err < 0) {
        CloseHandle((HANDLE)r);
        CloseHandle((HANDLE)w);
        return err;
    }
    err = eddy__sock_adopt(&ends[1], w, AF_UNIX, SOCK_STREAM, true);
    if (err < 0) {
        CloseHandle((HANDLE)w);
        (void)eddy_sock_close(ends[0]);
        ends[0] = NULL;
    }
    return err;
}

/* Whether h is a socket (which also says FILE_TYPE_PIPE). */
static bool is_socket(HANDLE h)
{
    if (eddy__win_startup() < 0) return false;
    int type;
    int len = sizeof type;
    return getsockopt((SOCKET)h, SOL_SOCKET, SO_TYPE, (char *)&type, &len) == 0;
}

/* Whether h was opened for overlapped I/O: neither of the synchronous
 * modes in its FileModeInformation (asked of ntdll; no answer: false). */
static bool is_overlapped(HANDLE h)
{
    typedef LONG(NTAPI * query_fn)(HANDLE, IO_STATUS_BLOCK *, void *, ULONG, int);
    static query_fn query;
    if (!query) {
        HMODULE ntdll = GetModuleHandleW(L"ntdll.dll");
        query = ntdll ? (query_fn)(void (*)(void))GetProcAddress(ntdll, "NtQueryInformationFile")
                      : NULL;
        if (!query) return false;
    }
    IO_STATUS_BLOCK io;
    ULONG mode = 0;
    enum { FILE_MODE_INFORMATION_CLASS = 16, SYNCHRONOUS = 0x10 | 0x20 };
    if (query(h, &io, &mode, sizeof mode, FILE_MODE_INFORMATION_CLASS) < 0) return false;
    return (mode & SYNCHRONOUS) == 0;
}

/* fd is a HANDLE (a C runtime descriptor's is _get_osfhandle's). An end
 * opened with FILE_FLAG_OVERLAPPED is taken as it is. One opened without
 * (CreatePipe's, a child's stdio) cannot be read or written through the
 * completion port: it is reopened with the flag (ReOpenFile) and the
 * original closed, as the object owns fd. Where that is refused (anonymous
 * pipes, under Wine any pipe), -ENOTSUP and fd is still the caller's. A
 * console is no pipe and has no overlapped I/O: -ENOTSUP. */
EDDY_API int eddy_pipe_open(eddy_sock **out, intptr_t fd)
{
    if (!out) return -EINVAL;
    *out = NULL;
    HANDLE h = (HANDLE)fd;
    if (fd == 0 || h == INVALID_HANDLE_VALUE) return -EBADF;
    DWORD flags;
    if (!GetHandleInformation(h, &flags)) return -EBADF;
    DWORD type = GetFileType(h);
    if (type == FILE_TYPE_CHAR) return -ENOTSUP; /* a console */
    if (type != FILE_TYPE_PIPE || is_socket(h)) return -EINVAL;
    if (is_overlapped(h)) {
        /* not for children from now on: it is eddy's */
        (void)SetHandleInformation(h, HANDLE_FLAG_INHERIT, 0);
        return eddy__sock_adopt(out, fd, AF_UNIX, SOCK_STREAM, true);
    }
    /* Which way the end goes is not asked: one of the accesses is refused. */
    HANDLE again = INVALID_HANDLE_VALUE;
    const DWORD tries[] = {GENERIC_READ, GENERIC_WRITE, GENERIC_READ | GENERIC_WRITE};
    for (size_t i = 0; i < 3 && again == INVALID_HANDLE_VALUE; i++)
        again = ReOpenFile(h, tries[i], FILE_SHARE_READ | FILE_SHARE_WRITE, FILE_FLAG_OVERLAPPED);
    if (again == INVALID_HANDLE_VALUE) return -ENOTSUP;
    int err = eddy__sock_adopt(out, (intptr_t)again, AF_UNIX, SOCK_STREAM, true);
    if (err < 0) {
        CloseHandle(again);
        return err;
    }
    CloseHandle(h);
    return 0;
}
