/* SPDX-License-Identifier: MIT */
/* tests/faults-shim.so: an LD_PRELOAD library for the allocation-failure
 * sweep (tests/faults-sweep.sh). It wraps malloc, calloc, realloc,
 * posix_memalign, aligned_alloc and mmap, counts the calls made from
 * libeddy's own code (the caller's return address inside libeddy.so's
 * mapping, found once with dl_iterate_phdr), and fails the Nth of them:
 *
 *   EDDY_FAULTS_FAIL=N   fail libeddy's Nth allocation (ENOMEM); 0 or unset: none
 *
 * At exit it prints one line on stderr:
 *
 *   eddy-faults: allocations=K failed=N site=/path/libeddy.so+0xOFF(CALL)
 *
 * (failed=0 site=- when nothing failed; tests/faults-sweep.sh names the
 * function with addr2line).  *
 * Why a preloaded shim rather than a hook compiled into lib/: it needs no
 * special build of the library (the sweep runs on the ASan build that CI
 * already makes, so LeakSanitizer sees the leaks), and it sees every call
 * site, including those a future change adds, without a wrapper macro to
 * remember. The cost: allocations libc makes on eddy's behalf (getaddrinfo,
 * pthread_create) are not counted, and a call that the compiler turned into
 * a tail jump would be attributed to its caller (none in lib/ today: each
 * site checks the result). Not built with the sanitizer flags: it sits
 * in front of ASan's allocator, which it calls through dlsym(RTLD_NEXT). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <link.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static uintptr_t eddy_lo, eddy_hi; /* libeddy's executable segment(s) */
static uintptr_t eddy_base;        /* its load address */
static char eddy_path[256];
static long fail_at;
static atomic_long count;
static atomic_long failed_at;
static char failed_site[160];

static void *(*real_malloc)(size_t);
static void *(*real_calloc)(size_t, size_t);
static void *(*real_realloc)(void *, size_t);
static int (*real_posix_memalign)(void **, size_t, size_t);
static void *(*real_aligned_alloc)(size_t, size_t);
static void *(*real_mmap)(void *, size_t, int, int, int, off_t);
static void (*real_free)(void *);

/* dlsym may allocate (calloc) before real_calloc is known: serve those from
 * here. Never freed. */
static _Alignas(16) char early[4096];
static size_t early_used;
static int resolving;

static void *early_alloc(size_t n)
{
    n = (n + 15) & ~(size_t)15;
    if (early_used + n > sizeof(early)) return NULL;
    void *p = early + early_used;
    early_used += n;
    return p;
}

static void resolve(void)
{
    if (real_malloc || resolving) return;
    resolving = 1;
    real_calloc = (void *(*)(size_t, size_t))dlsym(RTLD_NEXT, "calloc");
    real_realloc = (void *(*)(void *, size_t))dlsym(RTLD_NEXT, "realloc");
    real_posix_memalign = (int (*)(void **, size_t, size_t))dlsym(RTLD_NEXT, "posix_memalign");
    real_aligned_alloc = (void *(*)(size_t, size_t))dlsym(RTLD_NEXT, "aligned_alloc");
    real_mmap = (void *(*)(void *, size_t, int, int, int, off_t))dlsym(RTLD_NEXT, "mmap");
    real_free = (void (*)(void *))dlsym(RTLD_NEXT, "free");
    real_malloc = (void *(*)(size_t))dlsym(RTLD_NEXT, "malloc");
    resolving = 0;
}

static int find_eddy(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)size;
    (void)data;
    const char *slash = strrchr(info->dlpi_name, '/');
    const char *base = slash ? slash + 1 : info->dlpi_name;
    if (strncmp(base, "libeddy.so", 10) != 0) return 0;
    eddy_base = info->dlpi_addr;
    snprintf(eddy_path, sizeof(eddy_path), "%s", info->dlpi_name);
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_X)) continue;
        uintptr_t lo = info->dlpi_addr + ph->p_vaddr, hi = lo + ph->p_memsz;
        if (!eddy_lo || lo < eddy_lo) eddy_lo = lo;
        if (hi > eddy_hi) eddy_hi = hi;
    }
    return 1;
}

__attribute__((constructor)) static void faults_init(void)
{
    resolve();
    const char *s = getenv("EDDY_FAULTS_FAIL");
    fail_at = s ? strtol(s, NULL, 10) : 0;
    dl_iterate_phdr(find_eddy, NULL);
    if (!eddy_lo) fprintf(stderr, "eddy-faults: libeddy.so is not loaded in this process\n");
}

__attribute__((destructor)) static void faults_report(void)
{
    if (!eddy_lo) return;
    char line[256];
    int n =
        snprintf(line, sizeof(line), "eddy-faults: allocations=%ld failed=%ld site=%s\n",
                 atomic_load(&count), atomic_load(&failed_at), failed_site[0] ? failed_site : "-");
    if (n > 0) (void)!write(2, line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
}

/* True when this call (from libeddy) is the one to fail. */
static int should_fail(void *ret, const char *what)
{
    uintptr_t a = (uintptr_t)ret;
    if (!eddy_lo || a < eddy_lo || a >= eddy_hi) return 0;
    long n = atomic_fetch_add(&count, 1) + 1;
    if (n != fail_at) return 0;
    /* dladdr would name the nearest exported symbol, which a static
     * function's address is not: the driver asks addr2line instead */
    snprintf(failed_site, sizeof(failed_site), "%s+0x%lx(%s)", eddy_path,
             (unsigned long)(a - eddy_base), what);
    atomic_store(&failed_at, n);
    return 1;
}

void *malloc(size_t size)
{
    resolve();
    if (!real_malloc) return early_alloc(size);
    if (should_fail(__builtin_return_address(0), "malloc")) {
        errno = ENOMEM;
        return NULL;
    }
    return real_malloc(size);
}

void *calloc(size_t n, size_t size)
{
    resolve();
    if (!real_calloc) return early_alloc(n * size); /* zeroed: static storage */
    if (should_fail(__builtin_return_address(0), "calloc")) {
        errno = ENOMEM;
        return NULL;
    }
    return real_calloc(n, size);
}

void *realloc(void *p, size_t size)
{
    resolve();
    if (should_fail(__builtin_return_address(0), "realloc")) {
        errno = ENOMEM;
        return NULL;
    }
    return real_realloc(p, size);
}

void free(void *p)
{
    if ((char *)p >= early && (char *)p < early + sizeof(early)) return;
    resolve();
    if (real_free) real_free(p); /* else: while resolving, leaked */
}

int posix_memalign(void **out, size_t align, size_t size)
{
    resolve();
    if (should_fail(__builtin_return_address(0), "posix_memalign")) return ENOMEM;
    return real_posix_memalign(out, align, size);
}

void *aligned_alloc(size_t align, size_t size)
{
    resolve();
    if (should_fail(__builtin_return_address(0), "aligned_alloc")) {
        errno = ENOMEM;
        return NULL;
    }
    return real_aligned_alloc(align, size);
}

void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    resolve();
    if ((flags & MAP_ANONYMOUS) && should_fail(__builtin_return_address(0), "mmap")) {
        errno = ENOMEM;
        return MAP_FAILED;
    }
    return real_mmap(addr, len, prot, flags, fd, off);
}
