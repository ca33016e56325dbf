/* SPDX-License-Identifier: MIT */
/* Task stacks (lib/fiber.h): mmap'd, committed page by page as a task
 * touches them, and pooled so that spawning a task is not a syscall.
 *
 * Every stack keeps its descriptor (struct eddy__stack) in the top 64 bytes
 * of its own memory, in the page the task's first frames use anyway: no
 * allocation besides the mapping, and no extra page per task.
 *
 * Guard mode (the default): one mapping per stack, with a guard region of
 * GUARD_BYTES below it (1 MiB on 64-bit systems) that faults on overflow.
 * Address space only: no page is ever committed there. One page would catch
 * only frames smaller than a page; a function with a large local array moves
 * the stack pointer past it in one step, and its first write lands in
 * whatever lies below (the next stack, in practice). 1 MiB makes any frame
 * up to 1 MiB fault in the guard, wherever the stack pointer was. Where the
 * kernel has MADV_GUARD_INSTALL (Linux 6.13) the guard is a marker in the
 * page table and the stack stays a single VMA, which adjacent stacks can
 * share (page tables then come to about 2.5 KiB per stack); elsewhere,
 * and under strict overcommit (vm.overcommit_memory=2, where a writable
 * mapping is charged even with MAP_NORESERVE), the whole region is mapped
 * PROT_NONE and the stack made writable: two VMAs per stack, whatever the
 * guard's size, so vm.max_map_count (65 530 by default) allows about 32 000
 * such stacks.
 *
 *     | guard region (PROT_NONE)  | stack ...                        | desc |
 *
 * A fault in the guard region of the task running on this thread is an
 * overflow: the SIGSEGV/SIGBUS handler below, on an alternate signal stack,
 * says which task overflowed and lets the process die of the signal. Any
 * other fault goes to the handler that was there before.
 *
 * Slab mode (EDDY_LOOP_NO_GUARD_PAGES): stacks are slots carved one by one
 * from slabs of many (one mapping each, so a million stacks stay far below
 * vm.max_map_count), and a canary region of CANARY_SIZE bytes (1 KiB) below
 * each stack is checked at every switch and when the task ends. A frame of
 * up to 1 KiB that goes below the stack writes into the region, so the check
 * sees it; a 16-byte canary was stepped over by 530-byte frames. The slots
 * start CANARY_SIZE bytes before a page boundary, so that a slot's top page
 * (its first frames and its descriptor) also holds the next slot's canary
 * region, and every stack starts on a page boundary: a task that stays
 * within the top 3 KiB of its stack costs one page, canary included.
 *
 *              |<------------------ one page ------------------>|
 *     ... stack k: its first frames | desc k | canary k+1       | stack k+1 ...
 *                        3008 bytes    64 B      1024 B
 *
 * A slot's descriptor (the slab it came from in desc->map) and the slab's own
 * header, below slot 0, are all the bookkeeping there is.
 *
 * RSS policy. A stack back in the pool keeps its pages: reusing it then costs
 * no syscall and no page fault, which is what makes spawn/join cheap. We do
 * not madvise(MADV_DONTNEED) stacks as they are released: that is a syscall
 * per task on the spawn/join path, and the page most tasks touch -- the top
 * one, which holds the descriptor and (slab mode) the next canary -- could not
 * be dropped anyway. How many stacks are kept follows the load, the way
 * allocators keep dirty pages: the pool tracks the most stacks live at once
 * (peak) and keeps up to that many (live + free), so that a burst of 100 000
 * tasks, or 1 000 connections closing at once, frees no stack and the next
 * burst maps none. That high-water mark (keep) decays while the loop runs
 * idle: every DECAY_NS (1 s) after the pool first holds more than FLOOR free
 * stacks (guard mode) or more than one empty slab (slab mode), one step sets
 * keep to the larger of the peak since the previous step and half of keep,
 * and unmaps the free stacks (empty slabs) beyond it. A loop whose bursts stop
 * gives the memory back within seconds (a 100 000-task peak halves each
 * second after a second of grace); one that keeps bursting keeps it warm.
 * The loop arms and takes the steps (eddy__stack_pool_trim, called while
 * p->excess) when it is about to block, and wakes for them; a loop that never
 * blocks calls it every 1024 iterations (not at each: a clock read costs
 * about 25 ns here, as much as a sixth of a spawn+join). EDDY_STACK_DECAY_MS
 * sets the period (tests make it short); it is not part of the interface.
 * Transparent huge pages are refused (MADV_NOHUGEPAGE): a 2 MiB page would
 * back eight 256 KiB stacks of which each task touches one 4 KiB page. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef _WIN32
#include "../win32/win32.h"
#else
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>
#endif

#include "internal.h"

#if HAVE_VALGRIND_VALGRIND_H
#include <valgrind/valgrind.h>
#define STACK_REGISTER(lo, hi) VALGRIND_STACK_REGISTER(lo, hi)
#define STACK_DEREGISTER(id)   VALGRIND_STACK_DEREGISTER(id)
#else
#define STACK_REGISTER(lo, hi) 0u
#define STACK_DEREGISTER(id)   ((void)(id))
#endif

#if (defined(EDDY_ASAN) && EDDY_ASAN) || defined(__SANITIZE_ADDRESS__)
#define STACK_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define STACK_ASAN 1
#endif
#endif
#ifndef STACK_ASAN
#define STACK_ASAN 0
#endif
#if STACK_ASAN
#include <sanitizer/asan_interface.h>
#endif

/* Under AddressSanitizer its own SEGV handler reports faults (stack
 * overflows included); eddy installs none. */
#if !defined(_WIN32) && !STACK_ASAN
#define FAULT_HANDLER 1
#else
#define FAULT_HANDLER 0
#endif
/* dladdr names a task's function in reports where libc has it (glibc
 * before 2.34 keeps it in libdl, which eddy does not link). */
#if defined(__GLIBC__) && defined(__GLIBC_PREREQ)
#if __GLIBC_PREREQ(2, 34)
#define HAVE_DLADDR_IN_LIBC 1
#endif
#elif defined(__APPLE__) || defined(__FreeBSD__) || defined(__NetBSD__)
#define HAVE_DLADDR_IN_LIBC 1
#endif
#ifndef HAVE_DLADDR_IN_LIBC
#define HAVE_DLADDR_IN_LIBC 0
#endif
#if HAVE_DLADDR_IN_LIBC
#include <dlfcn.h>
#if defined(__GLIBC__)
#include <link.h>
#endif
#endif

#if !defined(MAP_ANONYMOUS) && defined(MAP_ANON)
#define MAP_ANONYMOUS MAP_ANON
#endif
#ifndef MAP_NORESERVE
#define MAP_NORESERVE 0
#endif
#ifndef MAP_STACK
#define MAP_STACK 0
#endif
#if defined(__linux__) && !defined(MADV_GUARD_INSTALL)
#define MADV_GUARD_INSTALL 102
#endif

#define DESC_SIZE   64   /* top of each stack: its struct eddy__stack */
#define CANARY_SIZE 1024 /* below each slab stack: at most a page */
#if UINTPTR_MAX > 0xffffffffu
#define GUARD_BYTES ((size_t)1 << 20) /* below each guard-mode stack */
#else
#define GUARD_BYTES ((size_t)64 << 10) /* address space is short */
#endif
#define ALTSTACK_SIZE  (64 * 1024) /* per thread, for the fault handler */
#define FLOOR          64          /* free stacks kept whatever the decay */
#define DECAY_NS       ((int64_t)1000000000)
#define SLAB_BYTES     (64u << 20)
#define SLAB_MIN_SLOTS 16 /* even for huge stacks: 1e6 of them stay < 65530 maps */
#define SLAB_MAX_SLOTS 4096

_Static_assert(sizeof(struct eddy__stack) <= DESC_SIZE, "stack descriptor outgrew its slot");
_Static_assert(CANARY_SIZE % sizeof(uint64_t) == 0 && CANARY_SIZE <= 4096, "canary region");

static const uint64_t canary_seed = 0xedd1ca4a12c0ffeeu;

/* A slab, described in the first bytes of its own mapping, below its first
 * slot. */
struct slab {
    struct eddy__list all_link;   /* slab_set.all */
    struct eddy__list avail_link; /* slab_set.avail while a slot can be had */
    struct eddy__stack *free;     /* released stacks of this slab */
    size_t slots, carved, live;
    size_t map_size;
};

/* What pool->slabs points to in slab mode. */
struct slab_set {
    struct eddy__list all;
    struct eddy__list avail; /* the first slab here serves the next get */
    size_t empty;            /* slabs with no live stack */
};

/* ---- pages: mmap, or VirtualAlloc on Windows -------------------------------- */

#ifdef _WIN32
static size_t page_size(void)
{
    static size_t cached;
    if (!cached) {
        SYSTEM_INFO si;
        GetSystemInfo(&si);
        cached = si.dwPageSize ? si.dwPageSize : 4096;
    }
    return cached;
}

/* Committed at once: Windows grows a thread's stack through its own guard
 * page and the TIB's StackLimit, which a task stack does not use, so every
 * page must be there before the task touches it. */
static void *map_anonymous(size_t size)
{
    return VirtualAlloc(NULL, size, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE);
}

static void unmap(void *p, size_t size)
{
    (void)size;
    VirtualFree(p, 0, MEM_RELEASE);
}

/* guard bytes reserved and never committed (touching them faults), then
 * size bytes committed above them. */
static void *map_guarded(size_t guard, size_t size)
{
    char *p = VirtualAlloc(NULL, guard + size, MEM_RESERVE, PAGE_NOACCESS);
    if (!p) return NULL;
    if (!VirtualAlloc(p + guard, size, MEM_COMMIT, PAGE_READWRITE)) {
        VirtualFree(p, 0, MEM_RELEASE);
        return NULL;
    }
    return p;
}
#else
static size_t page_size(void)
{
    /* Loops on several threads may ask at once: each stores the same value. */
    static size_t cached;
    size_t size = __atomic_load_n(&cached, __ATOMIC_RELAXED);
    if (!size) {
        long n = sysconf(_SC_PAGESIZE);
        size = n > 0 ? (size_t)n : 4096;
        __atomic_store_n(&cached, size, __ATOMIC_RELAXED);
    }
    return size;
}

/* Whether transparent huge pages may back a mapping that did not ask for
 * them ("[always]" in /sys/kernel/mm/transparent_hugepage/enabled, or no such
 * file to tell): only then is refusing them worth a syscall per mapping. Read
 * once; a race reads it twice. */
static bool huge_pages_unasked(void)
{
    static int cached = -1;
    int always = __atomic_load_n(&cached, __ATOMIC_RELAXED);
    if (always < 0) {
        char buf[128];
        ssize_t n = -1;
        int fd = open("/sys/kernel/mm/transparent_hugepage/enabled", O_RDONLY | O_CLOEXEC);
        if (fd >= 0) {
            n = read(fd, buf, sizeof buf - 1);
            close(fd);
        }
        if (n > 0) buf[n] = '\0';
        always = n <= 0 || strstr(buf, "[always]") != NULL;
        __atomic_store_n(&cached, always, __ATOMIC_RELAXED);
    }
    return always;
}

static void refuse_huge_pages(void *p, size_t size)
{
#ifdef MADV_NOHUGEPAGE
    if (huge_pages_unasked())
        madvise(p, size, MADV_NOHUGEPAGE); /* advice: failure changes nothing */
#else
    (void)p, (void)size;
#endif
}

static void *map_anonymous(size_t size)
{
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
    if (p == MAP_FAILED) return NULL;
    refuse_huge_pages(p, size);
    return p;
}

static void unmap(void *p, size_t size)
{
    munmap(p, size);
}

#if defined(__linux__)
/* vm.overcommit_memory=2 charges writable private mappings even with
 * MAP_NORESERVE: a guard must then be PROT_NONE. Read once; a race reads it
 * twice. */
static bool strict_overcommit(void)
{
    static int cached = -1;
    int strict = __atomic_load_n(&cached, __ATOMIC_RELAXED);
    if (strict < 0) {
        char c = '0';
        int fd = open("/proc/sys/vm/overcommit_memory", O_RDONLY | O_CLOEXEC);
        if (fd >= 0) {
            if (read(fd, &c, 1) != 1) c = '0';
            close(fd);
        }
        strict = c == '2';
        __atomic_store_n(&cached, strict, __ATOMIC_RELAXED);
    }
    return strict;
}
#endif

/* guard bytes of address space that fault, then size bytes of stack. */
static void *map_guarded(size_t guard, size_t size)
{
#if defined(__linux__)
    static bool no_guard_install; /* the kernel said EINVAL once: before 6.13 */
    if (!__atomic_load_n(&no_guard_install, __ATOMIC_RELAXED) && !strict_overcommit()) {
        char *p = map_anonymous(guard + size);
        if (!p) return NULL;
        if (madvise(p, guard, MADV_GUARD_INSTALL) == 0) return p;
        if (errno == EINVAL) __atomic_store_n(&no_guard_install, true, __ATOMIC_RELAXED);
        unmap(p, guard + size);
    }
#endif
    char *p = mmap(NULL, guard + size, PROT_NONE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
    if (p == MAP_FAILED) return NULL;
    if (mprotect(p + guard, size, PROT_READ | PROT_WRITE) < 0) {
        unmap(p, guard + size);
        return NULL;
    }
    refuse_huge_pages(p + guard, size);
    return p;
}
#endif

static void stack_register(struct eddy__stack *s)
{
    s->valgrind_id = STACK_REGISTER(s->lo, (char *)s->lo + s->size);
}

static uint64_t canary_value(const struct eddy__stack *s)
{
    return canary_seed ^ (uint64_t)(uintptr_t)s;
}

/* ---- guard mode ------------------------------------------------------------ */

/* Commits the top page of a new stack (its descriptor and first frames)
 * with one madvise instead of a page fault at the first write (Linux 5.14's
 * MADV_POPULATE_WRITE; remembered when the kernel lacks it). */
static void populate_top(char *page)
{
#if defined(__linux__)
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif
    static bool unsupported;
    if (__atomic_load_n(&unsupported, __ATOMIC_RELAXED)) return;
    if (madvise(page, page_size(), MADV_POPULATE_WRITE) < 0 && errno == EINVAL)
        __atomic_store_n(&unsupported, true, __ATOMIC_RELAXED);
#else
    (void)page;
#endif
}

static int guard_stack_new(struct eddy__stack_pool *p, struct eddy__stack **out)
{
    size_t guard = GUARD_BYTES;
    if (guard < page_size()) guard = page_size();
    char *map = map_guarded(guard, p->stack_size);
    if (!map) return -ENOMEM;
    size_t map_size = guard + p->stack_size;
    populate_top(map + map_size - page_size());
    struct eddy__stack *s = (struct eddy__stack *)(map + map_size - DESC_SIZE);
    s->lo = map + guard;
    s->size = p->stack_size - DESC_SIZE;
    s->map = map;
    s->map_size = map_size;
    s->next_free = NULL;
    stack_register(s);
    *out = s;
    return 0;
}

static void guard_stack_free(struct eddy__stack *s)
{
    STACK_DEREGISTER(s->valgrind_id);
    unmap(s->map, s->map_size);
}

/* Starts loading the top of the stack the next get will return (slab mode,
 * whose free stacks are a linked list): after a burst the free stacks are out
 * of the caches and the TLB, and reading one's link to the next would stall
 * the next get; the load overlaps with the task that runs in between. Guard
 * mode keeps its free stacks in an array instead, whose next entry is known
 * without touching the stack (a warm burst of 100 000 went from about 1 250
 * to 700 ns per task). */
static inline void prefetch_stack(const struct eddy__stack *s)
{
#if defined(__GNUC__)
    if (s) {
        __builtin_prefetch(s, 1, 3);
        __builtin_prefetch((const char *)s - 64, 1, 3);
    }
#else
    (void)s;
#endif
}

/* Room for one more free stack in guard mode's array, grown by doubling;
 * false when it cannot grow (the stack is then unmapped instead). */
static bool free_room(struct eddy__stack_pool *p)
{
    if (p->free_count < p->free_cap) return true;
    size_t cap = p->free_cap ? 2 * p->free_cap : FLOOR;
    struct eddy__stack **grown = realloc(p->free_stacks, cap * sizeof(*grown));
    if (!grown) return false;
    p->free_stacks = grown;
    p->free_cap = cap;
    return true;
}

/* ---- how many stacks are kept ---------------------------------------------- */

/* Stacks the high-water mark allows beyond those live. */
static size_t spare_allowed(const struct eddy__stack_pool *p)
{
    size_t mark = p->keep > p->peak ? p->keep : p->peak;
    return mark > p->live ? mark - p->live : 0;
}

/* Free stacks the pool may hold (guard mode): at least FLOOR. */
static size_t free_allowed(const struct eddy__stack_pool *p)
{
    size_t allowed = spare_allowed(p);
    return allowed > p->floor ? allowed : p->floor;
}

/* Empty slabs (of slots stacks each) the pool may hold: always one spare,
 * so that a lone task spawned and joined in a loop does not mmap each time,
 * and as many more as the spare stacks allowed fill. */
static size_t slabs_allowed(const struct eddy__stack_pool *p, size_t slots)
{
    return 1 + spare_allowed(p) / slots;
}

/* ---- slab mode ------------------------------------------------------------- */

/* Offset of slot 0 in its slab: CANARY_SIZE short of a page boundary, so
 * that every slot boundary, where one slot's descriptor meets the next one's
 * canary region, sits CANARY_SIZE bytes before the end of a page. */
static size_t slab_first_slot(void)
{
    return page_size() - CANARY_SIZE;
}

static struct slab *slab_new(struct eddy__stack_pool *p, struct slab_set *set)
{
    size_t slots = SLAB_BYTES / p->stack_size;
    if (slots < SLAB_MIN_SLOTS) slots = SLAB_MIN_SLOTS;
    if (slots > SLAB_MAX_SLOTS) slots = SLAB_MAX_SLOTS;
    /* Where address space is short (32 bits, overcommit_memory=2 ignoring
     * MAP_NORESERVE), settle for smaller slabs. */
    for (; slots > 0; slots /= 2) {
        if (slots > (SIZE_MAX - page_size()) / p->stack_size) continue;
        size_t map_size = slots * p->stack_size + page_size();
        struct slab *sl = map_anonymous(map_size);
        if (!sl) continue;
        sl->free = NULL;
        sl->slots = slots;
        sl->carved = 0;
        sl->live = 0;
        sl->map_size = map_size;
        eddy__list_push_back(&set->all, &sl->all_link);
        eddy__list_init(&sl->avail_link);
        set->empty++;
        return sl;
    }
    return NULL;
}

static struct eddy__stack *slab_carve(struct eddy__stack_pool *p, struct slab *sl)
{
    char *slot = (char *)sl + slab_first_slot() + sl->carved++ * p->stack_size;
    struct eddy__stack *s = (struct eddy__stack *)(slot + p->stack_size - DESC_SIZE);
    s->lo = slot + CANARY_SIZE;
    s->size = p->stack_size - DESC_SIZE - CANARY_SIZE;
    s->map = sl;
    s->map_size = 0;
    s->next_free = NULL;
    stack_register(s);
    return s;
}

static void slab_free(struct eddy__stack_pool *p, struct slab_set *set, struct slab *sl)
{
    for (size_t i = 0; i < sl->carved; i++) {
        char *slot = (char *)sl + slab_first_slot() + i * p->stack_size;
        struct eddy__stack *s = (struct eddy__stack *)(slot + p->stack_size - DESC_SIZE);
        STACK_DEREGISTER(s->valgrind_id);
    }
    p->free_count -= sl->carved;
    set->empty--;
    eddy__list_remove(&sl->all_link);
    eddy__list_remove(&sl->avail_link);
    unmap(sl, sl->map_size);
}

static int slab_stack_get(struct eddy__stack_pool *p, struct eddy__stack **out)
{
    struct slab_set *set = p->slabs;
    if (!set) {
        if (!(set = malloc(sizeof(*set)))) return -ENOMEM;
        eddy__list_init(&set->all);
        eddy__list_init(&set->avail);
        set->empty = 0;
        p->slabs = set;
    }
    struct slab *sl;
    if (!eddy__list_empty(&set->avail)) {
        sl = eddy__container_of(set->avail.next, struct slab, avail_link);
    } else {
        if (!(sl = slab_new(p, set))) return -ENOMEM;
        eddy__list_push_back(&set->avail, &sl->avail_link);
    }
    struct eddy__stack *s = sl->free;
    if (s) {
        sl->free = s->next_free;
        p->free_count--;
        prefetch_stack(sl->free);
    } else {
        s = slab_carve(p, sl);
    }
    if (sl->live++ == 0) set->empty--;
    if (!sl->free && sl->carved == sl->slots) eddy__list_remove(&sl->avail_link);
    /* Written at every get: a previous task may have overflowed into it, and
     * the check would then blame the next one. */
    uint64_t *canary = (uint64_t *)((char *)s->lo - CANARY_SIZE);
    uint64_t value = canary_value(s);
    for (size_t i = 0; i < CANARY_SIZE / sizeof(uint64_t); i++)
        canary[i] = value;
    *out = s;
    return 0;
}

static void slab_stack_put(struct eddy__stack_pool *p, struct eddy__stack *s)
{
    struct slab_set *set = p->slabs;
    struct slab *sl = s->map;
    bool was_full = !sl->free && sl->carved == sl->slots;
    s->next_free = sl->free;
    sl->free = s;
    p->free_count++;
    /* At the head (inserted before the first): slabs in use serve first. */
    if (was_full) eddy__list_push_back(set->avail.next, &sl->avail_link);
    if (--sl->live > 0) return;
    if (++set->empty > slabs_allowed(p, sl->slots)) {
        slab_free(p, set, sl);
    } else {
        /* At the tail: spares serve only when no slab in use has room. */
        eddy__list_remove(&sl->avail_link);
        eddy__list_push_back(&set->avail, &sl->avail_link);
        if (set->empty > 1) p->excess = true;
    }
}

/* Unmaps the empty slabs beyond what the high-water mark allows, the
 * longest unused (at the tail) first; true when spares remain. */
static bool slabs_trim(struct eddy__stack_pool *p)
{
    struct slab_set *set = p->slabs;
    if (!set) return false;
    struct eddy__list *node = set->avail.prev;
    while (node != &set->avail && set->empty > 1) {
        struct slab *sl = eddy__container_of(node, struct slab, avail_link);
        node = node->prev;
        if (sl->live) break; /* empty slabs are at the back */
        if (set->empty <= slabs_allowed(p, sl->slots)) break;
        slab_free(p, set, sl);
    }
    return set->empty > 1;
}

/* ---- the pool -------------------------------------------------------------- */

int eddy__stack_pool_init(struct eddy__stack_pool *p, size_t stack_size, bool guard_pages)
{
    size_t page = page_size();
    if (stack_size < DESC_SIZE + CANARY_SIZE + 256 || stack_size > SIZE_MAX / 2) return -EINVAL;
    p->stack_size = (stack_size + page - 1) & ~(page - 1);
    p->guard_pages = guard_pages;
    p->excess = false;
    p->free_stacks = NULL;
    p->free_cap = 0;
    p->free_count = 0;
    p->floor = FLOOR;
    p->slabs = NULL;
    p->live = 0;
    p->peak = 0;
    p->keep = 0;
    p->trim_at = 0;
    p->decay_ns = DECAY_NS;
    p->trim_ticks = 0;
    const char *decay_ms = getenv("EDDY_STACK_DECAY_MS");
    if (decay_ms && *decay_ms) {
        char *end;
        long ms = strtol(decay_ms, &end, 10);
        if (!*end && ms > 0 && ms <= 3600000) p->decay_ns = (int64_t)ms * 1000000;
    }
    return 0;
}

void eddy__stack_pool_destroy(struct eddy__stack_pool *p)
{
    for (size_t i = 0; i < p->free_count && p->guard_pages; i++)
        guard_stack_free(p->free_stacks[i]);
    free(p->free_stacks);
    p->free_stacks = NULL;
    p->free_cap = 0;
    struct slab_set *set = p->slabs;
    if (set) {
        while (!eddy__list_empty(&set->all)) {
            struct slab *sl = eddy__container_of(set->all.next, struct slab, all_link);
            set->empty = 1; /* slab_free's books; the pool is going anyway */
            slab_free(p, set, sl);
        }
        free(set);
        p->slabs = NULL;
    }
    p->free_count = 0;
}

int eddy__stack_get(struct eddy__stack_pool *p, struct eddy__stack **out)
{
    int err;
    if (!p->guard_pages) {
        err = slab_stack_get(p, out);
    } else if (p->free_count) {
        *out = p->free_stacks[--p->free_count];
        err = 0;
    } else {
        err = guard_stack_new(p, out);
    }
    if (err == 0) {
        if (++p->live > p->peak) p->peak = p->live;
    }
    return err;
}

void eddy__stack_put(struct eddy__stack_pool *p, struct eddy__stack *s)
{
    p->live--;
#if STACK_ASAN
    /* Frames that never returned (the fiber exited) left their redzones
     * poisoned; the next task on this stack must start clean. */
    ASAN_UNPOISON_MEMORY_REGION(s->lo, s->size);
#endif
    if (!p->guard_pages) {
        slab_stack_put(p, s);
    } else if (p->free_count < free_allowed(p) && free_room(p)) {
        p->free_stacks[p->free_count] = s;
        if (++p->free_count > p->floor) p->excess = true;
    } else {
        guard_stack_free(s);
    }
}

/* Unmaps the free stacks beyond what the high-water mark allows, the
 * longest unused (at the bottom) first; true when more than FLOOR remain. */
static bool guard_trim(struct eddy__stack_pool *p)
{
    size_t allowed = free_allowed(p);
    if (p->free_count > allowed) {
        size_t gone = p->free_count - allowed;
        for (size_t i = 0; i < gone; i++)
            guard_stack_free(p->free_stacks[i]);
        memmove(p->free_stacks, p->free_stacks + gone, allowed * sizeof(*p->free_stacks));
        p->free_count = allowed;
    }
    return p->free_count > p->floor;
}

void eddy__stack_pool_trim(struct eddy__stack_pool *p, int64_t now)
{
    if (!p->trim_at) {
        p->trim_at = now + p->decay_ns;
        return;
    }
    if (now < p->trim_at) return;
    /* Steps missed while the loop was busy elsewhere count too. */
    int64_t steps = 1 + (now - p->trim_at) / p->decay_ns;
    size_t decayed = steps >= 64 ? 0 : p->keep >> steps;
    p->keep = p->peak > decayed ? p->peak : decayed;
    p->peak = p->live;
    bool more = p->guard_pages ? guard_trim(p) : slabs_trim(p);
    if (more) {
        p->trim_at = now + p->decay_ns;
    } else {
        p->trim_at = 0;
        p->excess = false;
    }
}

/* Not under ThreadSanitizer: the clone resolver runs at relocation, before
 * the instrumented code may. */
#if defined(__GNUC__) && defined(__x86_64__) && defined(__linux__) && !defined(__clang__) &&       \
    !defined(__SANITIZE_THREAD__)
__attribute__((target_clones("avx2", "default")))
#endif
bool eddy__stack_canary_ok(const struct eddy__stack_pool *p, const struct eddy__stack *s)
{
    if (p->guard_pages) return true;
    const uint64_t *canary = (const uint64_t *)((const char *)s->lo - CANARY_SIZE);
    uint64_t want = canary_value(s);
#if defined(__GNUC__)
    /* Every switch pays for this: whole vectors (the region is 1 KiB-aligned)
     * into independent accumulators, with AVX2 where the CPU has it. A yield
     * measured 7 ns with a canary of a few words, 49 with this loop a word at a
     * time, 16 with SSE2 and 13 with AVX2. */
    typedef uint64_t vec __attribute__((vector_size(32)));
    const vec *v = (const vec *)canary;
    vec w = {want, want, want, want}, d0 = {0}, d1 = {0}, d2 = {0}, d3 = {0};
    for (size_t i = 0; i < CANARY_SIZE / sizeof(vec); i += 4) {
        d0 |= v[i] ^ w;
        d1 |= v[i + 1] ^ w;
        d2 |= v[i + 2] ^ w;
        d3 |= v[i + 3] ^ w;
    }
    d0 |= d1 | d2 | d3;
    return (d0[0] | d0[1] | d0[2] | d0[3]) == 0;
#else
    uint64_t diff = 0;
    for (size_t i = 0; i < CANARY_SIZE / sizeof(uint64_t); i++)
        diff |= canary[i] ^ want;
    return diff == 0;
#endif
}

/* ---- overflow reports ------------------------------------------------------ */

/* Appends str to buf (of BUF bytes, len used), as much as fits. */
#define REPORT_BUF 256
static size_t append(char *buf, size_t len, const char *str)
{
    while (*str && len < REPORT_BUF)
        buf[len++] = *str++;
    return len;
}

static size_t append_number(char *buf, size_t len, uint64_t n)
{
    char digits[21];
    size_t i = sizeof digits;
    digits[--i] = '\0';
    do
        digits[--i] = (char)('0' + n % 10);
    while ((n /= 10) && i > 0);
    return append(buf, len, digits + i);
}

/* dladdr is not async-signal-safe on paper: it takes the dynamic loader's
 * lock, which a task overflowing its stack does not hold unless it
 * overflowed inside dlopen. A function missing from the dynamic symbol table
 * (static, hidden) would be given the name of the exported one before it:
 * with glibc's dladdr1 the symbol's size tells, and such an address gets no
 * name. */
const char *eddy__symbol_name(const void *addr, uintptr_t *offset)
{
#if HAVE_DLADDR_IN_LIBC
    Dl_info info;
#if defined(__GLIBC__)
    const ElfW(Sym) *sym = NULL;
    if (!addr || !dladdr1(addr, &info, (void **)&sym, RTLD_DL_SYMENT) || !info.dli_sname ||
        !info.dli_saddr)
        return NULL;
    uintptr_t off = (uintptr_t)addr - (uintptr_t)info.dli_saddr;
    if (sym && sym->st_size && off >= sym->st_size) return NULL;
#else
    if (!addr || !dladdr(addr, &info) || !info.dli_sname || !info.dli_saddr) return NULL;
    uintptr_t off = (uintptr_t)addr - (uintptr_t)info.dli_saddr;
#endif
    if (offset) *offset = off;
    return info.dli_sname;
#else
    (void)addr;
    (void)offset;
    return NULL;
#endif
}

const char *eddy__module_name(const void *addr, uintptr_t *offset)
{
#if HAVE_DLADDR_IN_LIBC
    Dl_info info;
    if (!addr || !dladdr(addr, &info) || !info.dli_fname || !info.dli_fbase) return NULL;
    *offset = (uintptr_t)addr - (uintptr_t)info.dli_fbase;
    const char *slash = strrchr(info.dli_fname, '/');
    return slash ? slash + 1 : info.dli_fname;
#else
    (void)addr;
    (void)offset;
    return NULL;
#endif
}

/* The task's name, or its entry function's, or "?". */
static const char *owner_name(const struct eddy__stack *s)
{
    if (!s->owner) return "?";
    if (s->owner->name) return s->owner->name;
    const char *fn = eddy__symbol_name((const void *)(uintptr_t)s->owner->fn, NULL);
    return fn ? fn : "?";
}

/* "eddy: task N (name) overflowed its stack of S bytes", with write(2)
 * alone: this runs in a signal handler, or with memory already trampled. */
static void report_overflow(const struct eddy__stack *s)
{
    char buf[REPORT_BUF];
    size_t len = append(buf, 0, "eddy: task ");
    len = append_number(buf, len, s->number);
    len = append(buf, len, " (");
    len = append(buf, len, owner_name(s));
    len = append(buf, len, ") overflowed its stack of ");
    len = append_number(buf, len, s->size);
    len = append(buf, len, " bytes\n");
#ifdef _WIN32
    DWORD written;
    WriteFile(GetStdHandle(STD_ERROR_HANDLE), buf, (DWORD)len, &written, NULL);
#else
    ssize_t n = write(2, buf, len);
    (void)n;
#endif
}

_Noreturn void eddy__stack_overflowed(const struct eddy__stack *s)
{
    report_overflow(s);
    abort();
}

/* ---- the fault handler ----------------------------------------------------- */

__thread bool eddy__stack_thread_ready EDDY__TLS_MODEL;

#if FAULT_HANDLER
static struct sigaction previous_segv, previous_bus;
static pthread_key_t altstack_key;
static bool altstack_key_made;

/* The stack of the task running on this thread, if one is. */
static const struct eddy__stack *running_stack(void)
{
    struct eddy_loop *loop = eddy__thread_loop;
    struct eddy_task *t = loop ? loop->current : NULL;
    return t ? t->stack : NULL;
}

/* A fault that is not an overflow: what would have happened without us.
 * A previous handler is called as a function (its sa_mask and flags are not
 * replayed); for the default action it is put back and the fault, when the
 * instruction runs again, or a signal sent by kill(), raised again, kills. */
static void chain(int sig, siginfo_t *info, void *ctx)
{
    const struct sigaction *prev = sig == SIGBUS ? &previous_bus : &previous_segv;
    if (prev->sa_flags & SA_SIGINFO) {
        prev->sa_sigaction(sig, info, ctx);
        return;
    }
    if (prev->sa_handler != SIG_DFL && prev->sa_handler != SIG_IGN) {
        prev->sa_handler(sig);
        return;
    }
    if (prev->sa_handler == SIG_IGN && info->si_code <= 0) return; /* sent, and ignored */
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    sigaction(sig, &dfl, NULL);
    if (info->si_code <= 0) raise(sig);
}

static void fault_handler(int sig, siginfo_t *info, void *ctx)
{
    int saved_errno = errno;
    const struct eddy__stack *s = running_stack();
    const char *addr = info->si_addr;
    if (s && s->map_size && info->si_code > 0 && addr >= (const char *)s->map &&
        addr < (const char *)s->lo) {
        report_overflow(s);
        /* Dies of the same fault once the instruction runs again, with a
         * core dump where the system makes them. */
        struct sigaction dfl;
        memset(&dfl, 0, sizeof dfl);
        dfl.sa_handler = SIG_DFL;
        sigemptyset(&dfl.sa_mask);
        sigaction(sig, &dfl, NULL);
    } else {
        chain(sig, info, ctx);
    }
    errno = saved_errno;
}

/* At thread exit: the alternate stack we gave the thread goes, unless the
 * thread is on it (it cannot be, outside a handler). */
static void altstack_free(void *map)
{
    char *stack = (char *)map + page_size();
    stack_t current;
    if (sigaltstack(NULL, &current) == 0 && current.ss_sp == stack &&
        !(current.ss_flags & SS_DISABLE)) {
        if (current.ss_flags & SS_ONSTACK) return;
        stack_t off = {.ss_flags = SS_DISABLE};
        sigaltstack(&off, NULL);
    }
    unmap(map, page_size() + ALTSTACK_SIZE);
}

static void install_fault_handler(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = fault_handler;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, &previous_segv);
    sigaction(SIGBUS, &sa, &previous_bus);
    altstack_key_made = pthread_key_create(&altstack_key, altstack_free) == 0;
}

/* A thread's stack is where a fault handler runs, unless it has an alternate
 * one: an overflowing task has none left. Keeps one the program gave the
 * thread; else maps ALTSTACK_SIZE bytes (above a guard page), freed when the
 * thread exits. On failure the thread just goes without reports. */
static void altstack_setup(void)
{
    stack_t current;
    if (sigaltstack(NULL, &current) < 0 || !(current.ss_flags & SS_DISABLE)) return;
    size_t page = page_size();
    char *map = mmap(NULL, page + ALTSTACK_SIZE, PROT_NONE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
    if (map == MAP_FAILED) return;
    stack_t ss = {.ss_sp = map + page, .ss_size = ALTSTACK_SIZE, .ss_flags = 0};
    if (mprotect(map + page, ALTSTACK_SIZE, PROT_READ | PROT_WRITE) < 0 ||
        sigaltstack(&ss, NULL) < 0) {
        unmap(map, page + ALTSTACK_SIZE);
        return;
    }
    if (altstack_key_made) pthread_setspecific(altstack_key, map);
}
#endif

void eddy__stack_thread_setup(void)
{
    eddy__stack_thread_ready = true;
#if FAULT_HANDLER
    static eddy__once once = EDDY__ONCE_INIT;
    eddy__once_run(&once, install_fault_handler);
    altstack_setup();
#endif
}
