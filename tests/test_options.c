/* SPDX-License-Identifier: MIT */
/* Option structs grow by their leading size (docs/decisions.md, ABI), as
 * eddy_loop_options shows: a caller's struct of the first layout (size 0,
 * as a designated initialiser leaves it) placed against an unmapped page
 * still works, so the library reads no byte past it; a larger struct from a
 * later release works while the fields this library does not know are 0,
 * and is refused otherwise; a size that is no layout's is refused. */
#include <sys/mman.h>
#include <unistd.h>

#include "helpers.h"

/* The first published layout of eddy_loop_options (0.1): its fields end with
 * queue_depth. Later releases only add fields after it. */
#define FIRST_LAYOUT (offsetof(eddy_loop_options, queue_depth) + sizeof(unsigned))

/* Two pages, the second unmapped: bytes placed at the end of the first are
 * the last the process may read there. */
struct fence {
    unsigned char *base;
    size_t page;
};

static void fence_open(struct fence *f)
{
    f->page = (size_t)sysconf(_SC_PAGESIZE);
    void *p = mmap(NULL, 2 * f->page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    cr_assert(ne(ptr, p, MAP_FAILED), "mmap");
    f->base = p;
    cr_assert(eq(int, mprotect(f->base + f->page, f->page, PROT_NONE), 0));
}

/* Where len bytes end at the unmapped page (len a multiple of size_t's size). */
static void *fence_end(struct fence *f, size_t len)
{
    return f->base + f->page - len;
}

static void fence_close(struct fence *f)
{
    munmap(f->base, 2 * f->page);
}

/* The backend a default loop picks here (EDDY_BACKEND included), to ask for by name. */
static const char *default_backend(void)
{
    eddy_loop *loop = NULL;
    cr_assert(eq(int, eddy_loop_new(&loop, NULL), 0));
    const char *name = eddy_loop_backend(loop);
    eddy_loop_free(loop);
    return name; /* a static string */
}

static intptr_t sleep_an_hour(void *arg)
{
    return eddy_sleep(NS_PER_HOUR);
}

/* A loop from the options at opts: 0 when it was made and runs as they say
 * (on backend, with a virtual clock: an hour's sleep takes no time), or
 * eddy_loop_new's error. */
static int try_options(const void *opts, const char *backend)
{
    eddy_loop *loop = (eddy_loop *)&loop;
    int err = eddy_loop_new(&loop, opts);
    if (err < 0) {
        cr_expect(eq(ptr, loop, NULL), "*out is NULL on failure");
        return err;
    }
    cr_expect(eq(str, (char *)eddy_loop_backend(loop), (char *)backend));
    int64_t start = wall_ns();
    intptr_t result = -1;
    cr_expect(eq(int, run_task(loop, sleep_an_hour, NULL, &result), 0));
    cr_expect(eq(int, (int)result, 0));
    cr_expect(wall_ns() - start < 10 * NS_PER_SEC, "the clock was not virtual");
    eddy_loop_free(loop);
    return 0;
}

/* The first layout's fields written at p, field by field (the struct does
 * not fit where it lies). */
static void put_first_layout(unsigned char *p, size_t size, const char *backend, unsigned flags)
{
    memset(p, 0, FIRST_LAYOUT);
    memcpy(p + offsetof(eddy_loop_options, size), &size, sizeof size);
    memcpy(p + offsetof(eddy_loop_options, backend), &backend, sizeof backend);
    memcpy(p + offsetof(eddy_loop_options, flags), &flags, sizeof flags);
}

Test(options, first_layout_against_an_unmapped_page)
{
    const char *backend = default_backend();
    struct fence f;
    fence_open(&f);
    unsigned char *p = fence_end(&f, FIRST_LAYOUT);
    put_first_layout(p, 0, backend, EDDY_LOOP_VIRTUAL_TIME);
    cr_assert(eq(int, try_options(p, backend), 0), "size 0");
    put_first_layout(p, FIRST_LAYOUT, backend, EDDY_LOOP_VIRTUAL_TIME);
    cr_assert(eq(int, try_options(p, backend), 0), "size %zu", FIRST_LAYOUT);
    fence_close(&f);
}

Test(options, designated_initialiser_without_size)
{
    const char *backend = default_backend();
    eddy_loop_options o = {.backend = backend, .flags = EDDY_LOOP_VIRTUAL_TIME};
    cr_assert(eq(int, try_options(&o, backend), 0));
}

Test(options, initialiser_macro)
{
    const char *backend = default_backend();
    eddy_loop_options o =
        EDDY_LOOP_OPTIONS_INIT(.backend = backend, .flags = EDDY_LOOP_VIRTUAL_TIME);
    cr_assert(eq(sz, o.size, sizeof(eddy_loop_options)));
    cr_assert(eq(int, try_options(&o, backend), 0));
    eddy_loop_options empty = EDDY_LOOP_OPTIONS_INIT();
    eddy_loop *loop = NULL;
    cr_assert(eq(int, eddy_loop_new(&loop, &empty), 0));
    eddy_loop_free(loop);
}

/* A later release's layout: this one's, then fields this library lacks. */
struct later_options {
    eddy_loop_options known;
    uint64_t unknown[2];
};

Test(options, later_layout_with_unknown_fields_zero)
{
    const char *backend = default_backend();
    struct fence f;
    fence_open(&f);
    struct later_options *o = fence_end(&f, sizeof *o);
    memset(o, 0, sizeof *o);
    o->known =
        (eddy_loop_options){.size = sizeof *o, .backend = backend, .flags = EDDY_LOOP_VIRTUAL_TIME};
    cr_assert(eq(int, try_options(o, backend), 0));
    fence_close(&f);
}

Test(options, later_layout_with_unknown_fields_set_is_einval)
{
    const char *backend = default_backend();
    struct later_options o = {
        .known = {.size = sizeof o, .backend = backend, .flags = EDDY_LOOP_VIRTUAL_TIME}};
    o.unknown[1] = 1;
    cr_assert(eq(int, try_options(&o, backend), -EINVAL));
    o.unknown[1] = 0;
    o.unknown[0] = (uint64_t)1 << 63;
    cr_assert(eq(int, try_options(&o, backend), -EINVAL));
    o.unknown[0] = 0;
    cr_assert(eq(int, try_options(&o, backend), 0));
}

Test(options, sizes_of_no_layout_are_einval)
{
    const char *backend = default_backend();
    static struct {
        eddy_loop_options o;
        unsigned char more[8192];
    } big;
    const size_t sizes[] = {
        1,
        sizeof(size_t),
        FIRST_LAYOUT - 1,
        sizeof(eddy_loop_options) + 1, /* larger, but no struct's size */
        sizeof(eddy_loop_options) + sizeof(size_t) / 2,
        8192, /* beyond any layout */
        (size_t)-1,
    };
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        memset(&big, 0, sizeof big);
        big.o.size = sizes[i];
        big.o.backend = backend;
        cr_expect(eq(int, try_options(&big, backend), -EINVAL), "size %zu", sizes[i]);
    }
}

Test(options, null_options_are_the_defaults)
{
    eddy_loop *loop = NULL;
    cr_assert(eq(int, eddy_loop_new(&loop, NULL), 0));
    eddy_loop_free(loop);
}
