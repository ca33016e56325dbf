/* SPDX-License-Identifier: MIT */
/* Fibers: starting, switching and leaving execution contexts (lib/fiber.h).
 *
 * The switch itself is eddy__context_swap (lib/context/, one file per architecture), or
 * swapcontext with EDDY_CONTEXT_UCONTEXT. Around every switch we tell
 * AddressSanitizer which stack is about to run, so that it keeps checking the
 * right frames and fake stacks; ThreadSanitizer (--enable-tsan) gets a
 * fiber of its own per task, so that it keeps one shadow stack and one
 * happens-before clock per stack; Valgrind learns about stacks in
 * lib/stack.c and needs nothing here. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fiber.h"

#if EDDY__FIBER_ASAN
#include <sanitizer/common_interface_defs.h>

/* The fiber that switched last on this thread, so that the fiber it switched
 * to can record where its stack lies. NULL after eddy__fiber_exit: the dying
 * fiber need not be told anything. */
static __thread struct eddy__fiber *asan_switching_from;

static void asan_start_switch(struct eddy__fiber *from, void **fake_stack_save,
                              const struct eddy__fiber *to)
{
    asan_switching_from = from;
    __sanitizer_start_switch_fiber(fake_stack_save, to->stack_lo, to->stack_size);
}

/* Runs first thing on the stack just switched to. The out parameters give the
 * bounds of the stack we came from; for a fiber on its thread's own stack
 * (stack_lo NULL at first) that is the only way to learn them, and they are
 * needed to switch back to it. Every switch refreshes them, so a loop later
 * run by another thread still describes the right stack. */
static void asan_finish_switch(void *fake_stack_save)
{
    struct eddy__fiber *prev = asan_switching_from;
    __sanitizer_finish_switch_fiber(fake_stack_save, prev ? &prev->stack_lo : NULL,
                                    prev ? &prev->stack_size : NULL);
}
#else
#define asan_start_switch(from, fake_stack_save, to) ((void)0)
#define asan_finish_switch(fake_stack_save)          ((void)0)
#endif

#if EDDY_TSAN
/* The sanitizer's fiber interface (compiler-rt's tsan_interface.h). */
void *__tsan_get_current_fiber(void);
void *__tsan_create_fiber(unsigned flags);
void __tsan_destroy_fiber(void *fiber);
void __tsan_switch_to_fiber(void *fiber, unsigned flags);

/* A fiber that exited: destroyed by whoever runs next on this thread. */
static __thread void *tsan_dead_fiber;

static void tsan_before_switch(struct eddy__fiber *from, struct eddy__fiber *to, bool exiting)
{
    if (from && !from->tsan_fiber) from->tsan_fiber = __tsan_get_current_fiber();
    if (!to->tsan_fiber) to->tsan_fiber = __tsan_create_fiber(0);
    if (exiting) {
        tsan_dead_fiber = from->tsan_fiber;
        from->tsan_fiber = NULL;
    }
    __tsan_switch_to_fiber(to->tsan_fiber, 0);
}

static void tsan_after_switch(void)
{
    if (tsan_dead_fiber) {
        __tsan_destroy_fiber(tsan_dead_fiber);
        tsan_dead_fiber = NULL;
    }
}
#else
#define tsan_before_switch(from, to, exiting) ((void)0)
#define tsan_after_switch()                   ((void)0)
#endif

#if EDDY__FIBER_START
/* The first function a fiber runs, on its own stack. */
static void fiber_start(void *p)
{
    struct eddy__fiber *f = p;
    asan_finish_switch(NULL);
    tsan_after_switch();
    f->entry(f->arg);
    abort(); /* entry must leave with eddy__fiber_exit; there is nowhere to return to */
}

/* What the context's first frame calls, with what. */
#define START_FN(f, entry) fiber_start
#define START_ARG(f, arg)  (f)
#else
/* No hook to run first: the context's first frame calls entry(arg) (and
 * traps if it returns). */
#define START_FN(f, entry) (entry)
#define START_ARG(f, arg)  (arg)
#endif

static void fiber_prepare(struct eddy__fiber *f, struct eddy__stack *s, void (*entry)(void *),
                          void *arg)
{
#if EDDY__FIBER_ASAN
    f->stack_lo = s->lo;
    f->stack_size = s->size;
    f->asan_fake_stack = NULL;
#endif
#if EDDY_TSAN
    f->tsan_fiber = NULL;
#endif
#if EDDY__FIBER_START
    f->entry = entry;
    f->arg = arg;
#endif
    (void)f, (void)s, (void)entry, (void)arg;
}

#if EDDY_CONTEXT_UCONTEXT

/* makecontext passes only int arguments: the fiber pointer goes in two. */
static void uc_start(unsigned hi, unsigned lo)
{
    uintptr_t p = lo;
#if UINTPTR_MAX > 0xffffffffu
    p |= (uintptr_t)hi << 32;
#else
    (void)hi;
#endif
    fiber_start((void *)p);
}

void eddy__fiber_init(struct eddy__fiber *f, struct eddy__stack *s, void (*entry)(void *),
                      void *arg)
{
    fiber_prepare(f, s, entry, arg);
    /* getcontext fails only where ucontext is not implemented at all. */
    if (getcontext(&f->uc) < 0) abort();
    f->uc.uc_stack.ss_sp = s->lo;
    f->uc.uc_stack.ss_size = s->size;
    f->uc.uc_stack.ss_flags = 0;
    f->uc.uc_link = NULL;
    uint64_t p = (uintptr_t)f;
    makecontext(&f->uc, (void (*)(void))uc_start, 2, (unsigned)(p >> 32), (unsigned)p);
}

void eddy__fiber_switch(struct eddy__fiber *from, struct eddy__fiber *to)
{
    asan_start_switch(from, &from->asan_fake_stack, to);
    tsan_before_switch(from, to, false);
    swapcontext(&from->uc, &to->uc);
    asan_finish_switch(from->asan_fake_stack);
    tsan_after_switch();
}

_Noreturn void eddy__fiber_exit(struct eddy__fiber *from, struct eddy__fiber *to)
{
    /* A NULL save slot tells ASan to free this fiber's fake stack now. */
    asan_start_switch(NULL, NULL, to);
    tsan_before_switch(from, to, true);
    setcontext(&to->uc);
    abort();
}

#else /* assembly */

void eddy__context_swap(void **save_sp, void *load_sp);

#if defined(_WIN32)
void eddy__context_entry(void);

/* The first frame of a context for win32/context-x86_64.S: no saved xmm
 * registers worth keeping, the TIB's stack fields describing s, start and
 * its argument in r12 and r13, and a return into eddy__context_entry with
 * the stack 16-byte aligned below the top. */
void eddy__fiber_init(struct eddy__fiber *f, struct eddy__stack *s, void (*entry)(void *),
                      void *arg)
{
    fiber_prepare(f, s, entry, arg);
    uintptr_t top = ((uintptr_t)s->lo + s->size) & ~(uintptr_t)15;
    uint64_t *frame = (uint64_t *)(top - 64 - 256);
    memset(frame, 0, 256 + 64); /* above the frame: a null return address ends stack walks */
    frame[20] = (uint64_t)top;  /* StackBase */
    frame[21] = (uint64_t)(uintptr_t)s->lo;              /* StackLimit: the lowest usable byte */
    frame[22] = (uint64_t)(uintptr_t)s->map;             /* DeallocationStack */
    frame[26] = (uint64_t)(uintptr_t)START_FN(f, entry); /* r12 */
    frame[25] = (uint64_t)(uintptr_t)START_ARG(f, arg);  /* r13 */
    frame[31] = (uint64_t)(uintptr_t)eddy__context_entry;
    f->sp = frame;
}
#else
void *eddy__context_make(void *stack_top, void (*start)(void *), void *arg);

void eddy__fiber_init(struct eddy__fiber *f, struct eddy__stack *s, void (*entry)(void *),
                      void *arg)
{
    fiber_prepare(f, s, entry, arg);
    f->sp = eddy__context_make((char *)s->lo + s->size, START_FN(f, entry), START_ARG(f, arg));
}
#endif

/* Without ASan this is a tail call into the assembly. */
void eddy__fiber_switch(struct eddy__fiber *from, struct eddy__fiber *to)
{
    asan_start_switch(from, &from->asan_fake_stack, to);
    tsan_before_switch(from, to, false);
    eddy__context_swap(&from->sp, to->sp);
    asan_finish_switch(from->asan_fake_stack);
    tsan_after_switch();
}

_Noreturn void eddy__fiber_exit(struct eddy__fiber *from, struct eddy__fiber *to)
{
    /* A NULL save slot tells ASan to free this fiber's fake stack now. */
    asan_start_switch(NULL, NULL, to);
    tsan_before_switch(from, to, true);
    eddy__context_swap(&from->sp, to->sp);
    abort(); /* nobody resumes a fiber that exited */
}

#endif
