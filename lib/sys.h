/* SPDX-License-Identifier: MIT */
/* The few operating-system services lib/ needs that POSIX and Windows spell
 * differently: a lock, a condition variable, a once-only initialiser, the
 * monotonic clock and aligned memory. On POSIX they are pthreads and clock_gettime, unchanged;
 * on Windows, SRW locks, condition variables, InitOnce and the performance
 * counter (win32/), so eddy.dll needs no pthreads emulation DLL. */
#ifndef EDDY_SYS_H
#define EDDY_SYS_H

#include <stdint.h>

#ifdef _WIN32
#include "../win32/win32.h"

typedef SRWLOCK eddy__mutex;
typedef CONDITION_VARIABLE eddy__cond;
typedef INIT_ONCE eddy__once;
#define EDDY__MUTEX_INIT SRWLOCK_INIT
#define EDDY__COND_INIT  CONDITION_VARIABLE_INIT
#define EDDY__ONCE_INIT  INIT_ONCE_STATIC_INIT

static inline int eddy__mutex_init(eddy__mutex *m)
{
    InitializeSRWLock(m);
    return 0;
}
static inline void eddy__mutex_destroy(eddy__mutex *m)
{
    (void)m; /* SRW locks hold no resources */
}
static inline void eddy__mutex_lock(eddy__mutex *m)
{
    AcquireSRWLockExclusive(m);
}
static inline void eddy__mutex_unlock(eddy__mutex *m)
{
    ReleaseSRWLockExclusive(m);
}
static inline void eddy__cond_wait(eddy__cond *c, eddy__mutex *m)
{
    SleepConditionVariableSRW(c, m, INFINITE, 0);
}
static inline void eddy__cond_signal(eddy__cond *c)
{
    WakeConditionVariable(c);
}
/* Runs fn once per process, whatever the number of threads calling. */
void eddy__once_run(eddy__once *once, void (*fn)(void));
/* Monotonic nanoseconds (QueryPerformanceCounter). */
int64_t eddy__monotonic_ns(void);
/* msvcrt has no aligned_alloc; its aligned blocks have their own free. */
static inline void *eddy__aligned_alloc(size_t alignment, size_t size)
{
    return _aligned_malloc(size, alignment);
}
static inline void eddy__aligned_free(void *p)
{
    _aligned_free(p);
}

#else /* POSIX */
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

typedef pthread_mutex_t eddy__mutex;
typedef pthread_cond_t eddy__cond;
typedef pthread_once_t eddy__once;
#define EDDY__MUTEX_INIT PTHREAD_MUTEX_INITIALIZER
#define EDDY__COND_INIT  PTHREAD_COND_INITIALIZER
#define EDDY__ONCE_INIT  PTHREAD_ONCE_INIT

static inline int eddy__mutex_init(eddy__mutex *m)
{
    return -pthread_mutex_init(m, NULL);
}
static inline void eddy__mutex_destroy(eddy__mutex *m)
{
    pthread_mutex_destroy(m);
}
static inline void eddy__mutex_lock(eddy__mutex *m)
{
    pthread_mutex_lock(m);
}
static inline void eddy__mutex_unlock(eddy__mutex *m)
{
    pthread_mutex_unlock(m);
}
static inline void eddy__cond_wait(eddy__cond *c, eddy__mutex *m)
{
    pthread_cond_wait(c, m);
}
static inline void eddy__cond_signal(eddy__cond *c)
{
    pthread_cond_signal(c);
}
static inline void eddy__once_run(eddy__once *once, void (*fn)(void))
{
    pthread_once(once, fn);
}
static inline int64_t eddy__monotonic_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}
static inline void *eddy__aligned_alloc(size_t alignment, size_t size)
{
    return aligned_alloc(alignment, size);
}
static inline void eddy__aligned_free(void *p)
{
    free(p);
}
#endif

#endif /* EDDY_SYS_H */
