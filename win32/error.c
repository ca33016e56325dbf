/* SPDX-License-Identifier: MIT */
/* Windows and Winsock error codes as eddy's negative errno-style codes
 * (docs/design.md, "The public API": Windows errors are mapped onto the
 * same codes). A
 * code with no closer match becomes -EIO. */
#include <errno.h>

#include "../win32/win32.h"

int eddy__win_error(unsigned long code)
{
    switch (code) {
    case ERROR_SUCCESS:
        return 0;
    case ERROR_FILE_NOT_FOUND:
    case ERROR_PATH_NOT_FOUND:
    case ERROR_INVALID_DRIVE:
    case ERROR_BAD_NETPATH:
    case ERROR_BAD_NET_NAME:
    case ERROR_MOD_NOT_FOUND:
        return -ENOENT;
    case ERROR_ACCESS_DENIED:
    case ERROR_SHARING_VIOLATION:
    case ERROR_LOCK_VIOLATION:
    case ERROR_CANNOT_MAKE:
    case WSAEACCES:
        return -EACCES;
    case ERROR_FILE_EXISTS:
    case ERROR_ALREADY_EXISTS:
        return -EEXIST;
    case ERROR_DIR_NOT_EMPTY:
        return -ENOTEMPTY;
    case ERROR_DIRECTORY:
        return -ENOTDIR;
    case ERROR_FILENAME_EXCED_RANGE:
    case WSAENAMETOOLONG:
        return -ENAMETOOLONG;
    case ERROR_NOT_SAME_DEVICE:
        return -EXDEV;
    case ERROR_DISK_FULL:
    case ERROR_HANDLE_DISK_FULL:
        return -ENOSPC;
    case ERROR_WRITE_PROTECT:
        return -EROFS;
    case ERROR_INVALID_HANDLE:
    case WSAEBADF:
    case WSAENOTSOCK:
        return -EBADF;
    case ERROR_NOT_ENOUGH_MEMORY:
    case ERROR_OUTOFMEMORY:
    case ERROR_NO_SYSTEM_RESOURCES:
    case ERROR_COMMITMENT_LIMIT:
        return -ENOMEM;
    case ERROR_TOO_MANY_OPEN_FILES:
    case WSAEMFILE:
        return -EMFILE;
    case ERROR_INVALID_PARAMETER:
    case ERROR_INVALID_NAME:
    case ERROR_NEGATIVE_SEEK:
    case WSAEINVAL:
    case WSAEFAULT:
        return -EINVAL;
    case ERROR_NOT_SUPPORTED:
    case ERROR_INVALID_FUNCTION:
    case WSAEOPNOTSUPP:
        return -ENOTSUP;
    case ERROR_OPERATION_ABORTED: /* also WSA_OPERATION_ABORTED */
    case ERROR_CANCELLED:
        return -ECANCELED;
    case ERROR_BROKEN_PIPE:
    case ERROR_NO_DATA:
    case WSAESHUTDOWN:
        return -EPIPE;
    case ERROR_SEM_TIMEOUT:
    case WAIT_TIMEOUT:
    case WSAETIMEDOUT:
        return -ETIMEDOUT;
    case ERROR_CONNECTION_REFUSED:
    case WSAECONNREFUSED:
        return -ECONNREFUSED;
    case ERROR_NETNAME_DELETED:
    case WSAECONNRESET:
    case WSAENETRESET:
        return -ECONNRESET;
    case ERROR_CONNECTION_ABORTED:
    case WSAECONNABORTED:
        return -ECONNABORTED;
    case ERROR_ADDRESS_ALREADY_ASSOCIATED:
    case WSAEADDRINUSE:
        return -EADDRINUSE;
    case WSAEADDRNOTAVAIL:
        return -EADDRNOTAVAIL;
    case ERROR_NETWORK_UNREACHABLE:
    case WSAENETUNREACH:
        return -ENETUNREACH;
    case ERROR_HOST_UNREACHABLE:
    case WSAEHOSTUNREACH:
        return -EHOSTUNREACH;
    case WSAENETDOWN:
        return -ENETDOWN;
    case WSAEAFNOSUPPORT:
    case WSAEPFNOSUPPORT:
        return -EAFNOSUPPORT;
    case WSAEPROTONOSUPPORT:
    case WSAESOCKTNOSUPPORT:
        return -EPROTONOSUPPORT;
    case WSAEPROTOTYPE:
        return -EPROTOTYPE;
    case WSAENOPROTOOPT:
        return -ENOPROTOOPT;
    case WSAEISCONN:
        return -EISCONN;
    case WSAENOTCONN:
        return -ENOTCONN;
    case WSAEMSGSIZE:
    case ERROR_MORE_DATA: /* a datagram longer than the buffer: truncated */
        return -EMSGSIZE;
    case WSAENOBUFS:
        return -ENOBUFS;
    case WSAEWOULDBLOCK:
        return -EAGAIN;
    case WSAEINPROGRESS:
        return -EINPROGRESS;
    case WSAEALREADY:
        return -EALREADY;
    case WSAEINTR:
        return -EINTR;
    case WSAEDESTADDRREQ:
        return -EDESTADDRREQ;
    case WSANOTINITIALISED:
    case WSASYSNOTREADY:
    case WSAVERNOTSUPPORTED:
        return -ENOSYS;
    default:
        return -EIO;
    }
}
