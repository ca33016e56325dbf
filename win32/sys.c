/* SPDX-License-Identifier: MIT */
/* The operating-system services of lib/sys.h on Windows, and Winsock's
 * start-up. */
#include <errno.h>
#include <stdlib.h>

#include "sys.h"

static BOOL CALLBACK once_trampoline(INIT_ONCE *once, void *fn, void **context)
{
    (void)once;
    (void)context;
    ((void (*)(void))fn)();
    return TRUE;
}

void eddy__once_run(eddy__once *once, void (*fn)(void))
{
    InitOnceExecuteOnce(once, once_trampoline, (void *)fn, NULL);
}

int64_t eddy__monotonic_ns(void)
{
    static LONGLONG frequency; /* counts per second; fixed at boot */
    LARGE_INTEGER now;
    if (!frequency) {
        LARGE_INTEGER f;
        QueryPerformanceFrequency(&f);
        frequency = f.QuadPart;
    }
    QueryPerformanceCounter(&now);
    /* Split to keep the multiplication from overflowing. */
    int64_t seconds = now.QuadPart / frequency;
    int64_t rest = now.QuadPart % frequency;
    return seconds * 1000000000 + rest * 1000000000 / frequency;
}

static INIT_ONCE startup_once = INIT_ONCE_STATIC_INIT;
static int startup_error;

static BOOL CALLBACK startup(INIT_ONCE *once, void *param, void **context)
{
    WSADATA data;
    int rc = WSAStartup(MAKEWORD(2, 2), &data);
    startup_error = rc ? eddy__win_error((unsigned long)rc) : 0;
    return TRUE;
}

/* Never matched by WSACleanup: Winsock stays up until the process exits, as
 * the loops and the thread pool may use it until then. */
int eddy__win_startup(void)
{
    InitOnceExecuteOnce(&startup_once, startup, NULL, NULL);
    return startup_error;
}

wchar_t *eddy__win_wide(const char *utf8)
{
    int n = MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, utf8, -1, NULL, 0);
    if (n <= 0) return NULL;
    wchar_t *w = malloc((size_t)n * sizeof(wchar_t));
    if (!w) return NULL;
    if (MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, utf8, -1, w, n) != n) {
        free(w);
        return NULL;
    }
    return w;
}
