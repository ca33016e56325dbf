/* SPDX-License-Identifier: MIT */
/* Fibers: a saved execution context plus the stack it runs on, and the pool
 * that hands out task stacks. The context switch itself lives in
 * lib/context/ (assembly for x86-64 SysV and AArch64, ucontext elsewhere or
 * with --with-context=ucontext). AddressSanitizer and Valgrind are told about
 * every stack and every switch. */
#ifndef EDDY_FIBER_H
#define EDDY_FIBER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

#if EDDY_CONTEXT_UCONTEXT
#include <ucontext.h>
#endif

/* Whether AddressSanitizer watches the switches (lib/fiber.c). */
#if (defined(EDDY_ASAN) && EDDY_ASAN) || defined(__SANITIZE_ADDRESS__)
#define EDDY__FIBER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define EDDY__FIBER_ASAN 1
#endif
#endif
#ifndef EDDY__FIBER_ASAN
#define EDDY__FIBER_ASAN 0
#endif

/* Whether a new fiber starts in lib/fiber.c's fiber_start, which runs the
 * sanitizers' hooks before calling entry(arg) (makecontext, which passes only
 * ints, needs it too). Otherwise the context's first frame calls entry(arg)
 * itself, and the fiber keeps neither. */
#if EDDY__FIBER_ASAN || EDDY_TSAN || EDDY_CONTEXT_UCONTEXT
#define EDDY__FIBER_START 1
#else
#define EDDY__FIBER_START 0
#endif

/* One task stack. [lo, lo + size) is usable; the stack grows down from
 * lo + size. Pages are committed lazily by the kernel as the task touches them. */
struct eddy__stack {
    void *lo;
    size_t size;
    void *map;       /* the whole mapping (guard region first), or the slab it was carved from */
    size_t map_size; /* 0 for a slab's stack */
    unsigned valgrind_id;
    struct eddy__stack *next_free; /* pool link */
    /* For overflow reports: the task running on it (its id, and its name,
     * or its entry function's through dladdr), set by whoever takes the
     * stack (eddy__stack_get leaves them). */
    uint64_t number;
    const struct eddy_task *owner;
};

/* Reuses stacks: a released stack goes back on a free list so spawning does
 * not mmap/munmap per task. Each has a guard region below it (address space
 * only) whose faults are reported as overflows. Without guard pages, stacks
 * are carved from large slabs (one mapping for many stacks, keeping the
 * process far below vm.max_map_count) and a canary region at the low end of
 * each stack is checked at every switch instead. The pool keeps as many
 * stacks as were recently live at once (a high-water mark that decays while
 * the loop is idle, lib/stack.c): bursts of tasks reuse warm stacks, and the
 * memory goes back to the kernel seconds after the last burst. */
struct eddy__stack_pool {
    size_t stack_size; /* usable bytes per stack, page-rounded */
    bool guard_pages;
    bool excess; /* holds stacks beyond its floor: eddy__stack_pool_trim wanted */
    struct eddy__stack **free_stacks; /* guard mode: free stacks, the most recent last */
    size_t free_cap;                  /* room in free_stacks */
    size_t free_count;
    size_t floor;        /* free stacks kept whatever the high-water mark */
    void *slabs;         /* slab list (no-guard mode); freed with the pool */
    size_t live;         /* stacks handed out and not returned */
    size_t peak;         /* most stacks live at once since the last decay step */
    size_t keep;         /* the decaying high-water mark: stacks (live + free) kept */
    int64_t trim_at;     /* monotonic ns of the next decay step; 0: not armed */
    int64_t decay_ns;    /* period of the decay steps */
    unsigned trim_ticks; /* busy loop iterations, for a decay step now and then */
};

int eddy__stack_pool_init(struct eddy__stack_pool *p, size_t stack_size, bool guard_pages);
/* Unmaps every stack; all stacks must have been returned. */
void eddy__stack_pool_destroy(struct eddy__stack_pool *p);
/* A stack ready to run on: 0, or -ENOMEM. */
int eddy__stack_get(struct eddy__stack_pool *p, struct eddy__stack **out);
void eddy__stack_put(struct eddy__stack_pool *p, struct eddy__stack *s);
/* One decay step when due (now: eddy__monotonic_ns): arms p->trim_at, or
 * halves the high-water mark and unmaps the free stacks beyond it. The loop
 * calls it while p->excess, before it blocks (and wakes for p->trim_at) and
 * every 1024 iterations when it does not. */
void eddy__stack_pool_trim(struct eddy__stack_pool *p, int64_t now);
/* False when the canary below a no-guard stack was overwritten (an overflow). */
bool eddy__stack_canary_ok(const struct eddy__stack_pool *p, const struct eddy__stack *s);
/* Says on stderr that the task on s overflowed it, and aborts. */
_Noreturn void eddy__stack_overflowed(const struct eddy__stack *s);

/* Makes this thread ready to report a task's stack overflow: the process's
 * SIGSEGV/SIGBUS handler installed, and an alternate signal stack for the
 * thread. Cheap after the first call on a thread. */
void eddy__stack_thread_setup(void);
#ifdef _WIN32
extern __thread bool eddy__stack_thread_ready;
#else
extern __thread bool eddy__stack_thread_ready __attribute__((tls_model("initial-exec")));
#endif
static inline void eddy__stack_thread_prepare(void)
{
    if (!eddy__stack_thread_ready) eddy__stack_thread_setup();
}

/* Where the saved context of a suspended fiber keeps its frame pointer and
 * resume address (lib/context/x86_64-sysv.S, aarch64.S), in words from its
 * saved stack pointer; undefined where no frame walk is known. */
#if !EDDY_CONTEXT_UCONTEXT && !defined(_WIN32) && defined(__x86_64__)
#define EDDY__SAVED_FP 5
#define EDDY__SAVED_PC 6
#elif !EDDY_CONTEXT_UCONTEXT && !defined(_WIN32) && defined(__aarch64__)
#define EDDY__SAVED_FP 10
#define EDDY__SAVED_PC 11
#endif

struct eddy__fiber {
#if EDDY_CONTEXT_UCONTEXT
    ucontext_t uc;
#else
    void *sp; /* saved stack pointer; callee-saved registers are on the stack */
#endif
    /* The rest only in sanitizer and ucontext builds: elsewhere a fiber is
     * its stack pointer, so that a task stays small (a burst of 100 000
     * tasks is bound by the memory their structs take; bench/spawn). */
#if EDDY__FIBER_ASAN
    const void *stack_lo; /* NULL for a thread's own stack, until its first switch */
    size_t stack_size;
    void *asan_fake_stack;
#endif
#if EDDY_TSAN
    void *tsan_fiber; /* ThreadSanitizer's context for it; NULL: made at the first switch */
#endif
#if EDDY__FIBER_START
    void (*entry)(void *arg);
    void *arg;
#endif
};

/* Prepares f to run entry(arg) on s at its first switch. entry must never
 * return: it leaves with eddy__fiber_exit. */
void eddy__fiber_init(struct eddy__fiber *f, struct eddy__stack *s, void (*entry)(void *),
                      void *arg);
/* Saves the running context in from and continues to. */
void eddy__fiber_switch(struct eddy__fiber *from, struct eddy__fiber *to);
/* The last switch out of a fiber that will never run again. */
_Noreturn void eddy__fiber_exit(struct eddy__fiber *from, struct eddy__fiber *to);

#endif /* EDDY_FIBER_H */
