/* SPDX-License-Identifier: MIT */
/* Task stacks (lib/fiber.h): mmap'd, committed page by page as a task
 * touches them, and pooled so that spawning a task is not a syscall.
 *
 * Every stack keeps its descriptor (struct eddy__stack) in the top 64 bytes
 * of its own memory, in the page the task's first frames use anyway: no
 * allocation besides the mapping, and no extra page per task.
 *
 * Guard mode (the default): one mapping per stack, its lowest page a guard
 * that faults on overflow. Where the kernel has MADV_GUARD_INSTALL (Linux
 * 6.13) the guard is a marker in the page table and the stack stays a single
 * VMA, which adjacent stacks can share; elsewhere it is mprotect(PROT_NONE),
 * two VMAs per stack.
 *
 *     | guard page | stack ...                                   | desc |
 *
 * Slab mode (EDDY_LOOP_NO_GUARD_PAGES): stacks are slots carved one by one
 * from slabs of many (one mapping each, so a million stacks stay far below
 * vm.max_map_count), and a canary below each stack is checked at every switch.
 * The slots start 64 bytes before a page boundary, so that a slot's top page
 * (its first frames and its descriptor) also holds the next slot's canary:
 * a task that stays within its top page costs one page, canary included.
 *
 *              |<------------------ one page ------------------>|
 *     ... stack k: its first frames | desc k | canary k+1 | stack k+1 ...
 *                        3968 bytes    64 B      16 B        48 B
 *
 * A slot's descriptor (the slab it came from in desc->map) and the slab's own
 * header, below slot 0, are all the bookkeeping there is.
 *
 * RSS policy. A stack back in the pool keeps its pages: reusing it then costs
 * no syscall and no page fault, which is what makes spawn/join cheap. We do
 * not madvise(MADV_DONTNEED) stacks as they are released: that is a syscall
 * per task on the spawn/join path, and the page most tasks touch -- the top
 * one, which holds the descriptor and (slab mode) the next canary -- could not
 * be dropped anyway. What bounds the memory kept instead: guard mode caps the
 * free list (max_free stacks; the rest are unmapped), and slab mode unmaps a
 * slab as soon as all its stacks are free, keeping just one empty slab as a
 * spare so that a lone task spawned and joined in a loop does not mmap each
 * time. After a burst of a million tasks, the memory goes back to the kernel.
 * Transparent huge pages are refused (MADV_NOHUGEPAGE): a 2 MiB page would
 * back eight 256 KiB stacks of which each task touches one 4 KiB page. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#ifdef _WIN32
#include "../win32/win32.h"
#else
#include <sys/mman.h>
#include <unistd.h>
#endif

#include "fiber.h"
#include "list.h"

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

#define DESC_SIZE      64 /* top of each stack: its struct eddy__stack */
#define CANARY_SIZE    16 /* below each slab stack */
#define MAX_FREE       64 /* guard mode: free stacks kept */
#define SLAB_BYTES     (64u << 20)
#define SLAB_MIN_SLOTS 16 /* even for huge stacks: 1e6 of them stay < 65530 maps */
#define SLAB_MAX_SLOTS 4096

_Static_assert(sizeof(struct eddy__stack) <= DESC_SIZE, "stack descriptor outgrew its slot");

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

static bool install_guard(void *p, size_t size)
{
    DWORD old;
    return VirtualProtect(p, size, PAGE_NOACCESS, &old) != 0;
}
#else
static size_t page_size(void)
{
    static size_t cached;
    if (!cached) {
        long n = sysconf(_SC_PAGESIZE);
        cached = n > 0 ? (size_t)n : 4096;
    }
    return cached;
}

static void *map_anonymous(size_t size)
{
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
    if (p == MAP_FAILED) return NULL;
#ifdef MADV_NOHUGEPAGE
    madvise(p, size, MADV_NOHUGEPAGE); /* advice: failure changes nothing */
#endif
    return p;
}

static void unmap(void *p, size_t size)
{
    munmap(p, size);
}

static bool install_guard(void *p, size_t size)
{
#if defined(__linux__)
    if (madvise(p, size, MADV_GUARD_INSTALL) == 0) return true;
#endif
    return mprotect(p, size, PROT_NONE) == 0;
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

static int guard_stack_new(struct eddy__stack_pool *p, struct eddy__stack **out)
{
    size_t page = page_size();
    size_t map_size = page + p->stack_size;
    char *map = map_anonymous(map_size);
    if (!map) return -ENOMEM;
    if (!install_guard(map, page)) {
        unmap(map, map_size);
        return -ENOMEM;
    }
    struct eddy__stack *s = (struct eddy__stack *)(map + map_size - DESC_SIZE);
    s->lo = map + page;
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

/* ---- slab mode ------------------------------------------------------------- */

/* Offset of slot 0 in its slab: DESC_SIZE short of a page boundary, so that
 * every slot boundary, where one slot's descriptor meets the next one's
 * canary, sits DESC_SIZE bytes before the end of a page. */
static size_t slab_first_slot(void)
{
    return page_size() - DESC_SIZE;
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
    } else {
        s = slab_carve(p, sl);
    }
    if (sl->live++ == 0) set->empty--;
    if (!sl->free && sl->carved == sl->slots) eddy__list_remove(&sl->avail_link);
    /* Written at every get: a previous task may have overflowed into it, and
     * the check would then blame the next one. */
    uint64_t *canary = (uint64_t *)((char *)s->lo - CANARY_SIZE);
    canary[0] = canary[1] = canary_value(s);
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
    if (set->empty++ > 0) {
        slab_free(p, set, sl); /* one empty slab is spare enough */
    } else {
        /* At the tail: the spare serves only when no slab in use has room. */
        eddy__list_remove(&sl->avail_link);
        eddy__list_push_back(&set->avail, &sl->avail_link);
    }
}

/* ---- the pool -------------------------------------------------------------- */

int eddy__stack_pool_init(struct eddy__stack_pool *p, size_t stack_size, bool guard_pages)
{
    size_t page = page_size();
    if (stack_size < DESC_SIZE + CANARY_SIZE + 256 || stack_size > SIZE_MAX / 2) return -EINVAL;
    p->stack_size = (stack_size + page - 1) & ~(page - 1);
    p->guard_pages = guard_pages;
    p->free_list = NULL;
    p->free_count = 0;
    p->max_free = MAX_FREE;
    p->slabs = NULL;
    p->live = 0;
    return 0;
}

void eddy__stack_pool_destroy(struct eddy__stack_pool *p)
{
    struct eddy__stack *s;
    while ((s = p->free_list)) {
        p->free_list = s->next_free;
        guard_stack_free(s);
    }
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
    } else if (p->free_list) {
        *out = p->free_list;
        p->free_list = (*out)->next_free;
        p->free_count--;
        err = 0;
    } else {
        err = guard_stack_new(p, out);
    }
    if (err == 0) p->live++;
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
    } else if (p->free_count < p->max_free) {
        s->next_free = p->free_list;
        p->free_list = s;
        p->free_count++;
    } else {
        guard_stack_free(s);
    }
}

bool eddy__stack_canary_ok(const struct eddy__stack_pool *p, const struct eddy__stack *s)
{
    if (p->guard_pages) return true;
    const uint64_t *canary = (const uint64_t *)((const char *)s->lo - CANARY_SIZE);
    uint64_t want = canary_value(s);
    return canary[0] == want && canary[1] == want;
}
