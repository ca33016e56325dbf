/* SPDX-License-Identifier: MIT */
/* Error names. eddy's codes are negative errno values on every platform (the
 * Windows backend maps its own codes onto them), so one table serves all. */
#include <string.h>

#include "internal.h"

EDDY_API const char *eddy_strerror(int err)
{
    if (err == 0) return "success";
    if (err > 0 || err < -4095) return "unknown error";
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
    /* Unlike strerror, this is thread-safe and never formats into a buffer. */
    const char *desc = strerrordesc_np(-err);
    return desc ? desc : "unknown error";
#else
    switch (-err) {
    case EINVAL:
        return "invalid argument";
    case ENOMEM:
        return "out of memory";
    case EPERM:
        return "operation not permitted";
    case ECANCELED:
        return "operation canceled";
    case ETIMEDOUT:
        return "timed out";
    case EALREADY:
        return "operation already in progress";
    case EAGAIN:
        return "resource temporarily unavailable";
    case ENOTSUP:
        return "operation not supported";
    case ENOENT:
        return "no such file or directory";
    case EBUSY:
        return "device or resource busy";
    case EBADF:
        return "bad file descriptor";
    case ECONNREFUSED:
        return "connection refused";
    case ECONNRESET:
        return "connection reset by peer";
    case EPIPE:
        return "broken pipe";
    case ECONNABORTED:
        return "software caused connection abort";
    case ENOTCONN:
        return "transport endpoint is not connected";
    case EADDRINUSE:
        return "address already in use";
    case EADDRNOTAVAIL:
        return "cannot assign requested address";
    case EAFNOSUPPORT:
        return "address family not supported by protocol";
    case ENETUNREACH:
        return "network is unreachable";
    case EHOSTUNREACH:
        return "no route to host";
    case EMSGSIZE:
        return "message too long";
    case EINPROGRESS:
        return "operation now in progress";
    case EEXIST:
        return "file exists";
    case EACCES:
        return "permission denied";
    case EISDIR:
        return "is a directory";
    case ENOTDIR:
        return "not a directory";
    case ENOTEMPTY:
        return "directory not empty";
    case ENOSPC:
        return "no space left on device";
    case EMFILE:
        return "too many open files";
    case ENAMETOOLONG:
        return "file name too long";
    case EIO:
        return "input/output error";
    case ENXIO:
        return "no such device or address";
    case ENOSYS:
        return "function not implemented";
    case EINTR:
        return "interrupted system call";
    case EDEADLK:
        return "resource deadlock avoided";
    default:
        return "unknown error";
    }
#endif
}
