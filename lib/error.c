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
    default:
        return "unknown error";
    }
#endif
}
