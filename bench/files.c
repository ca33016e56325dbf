/* SPDX-License-Identifier: MIT */
/* bench/files: 4 KiB random reads at queue depth 32 over a file, in IOPS.
 *
 *   files eddy|uv path direct seconds [fixed]
 *
 * eddy: 32 tasks, each issuing eddy_file_read at random 4 KiB-aligned offsets
 * (EDDY_BACKEND=io_uring or epoll; on epoll the reads run in the thread
 * pool). uv: libuv's uv_fs_read with 32 requests in flight (its thread pool).
 * direct = 1 opens the file with O_DIRECT. fixed = 1 (eddy only) registers
 * the 32 readers' buffers, one region, with the loop (eddy_buffer_register:
 * io_uring's READ_FIXED); it fails where the loop cannot. Counts the reads completed in
 * `seconds` of wall time after 0.5 s of warm-up and prints the reads per
 * second, then the process's CPU time (user + system, every thread: the
 * thread pool and io_uring's workers too) per read over the whole run, in ns.
 * The same random sequence per slot for both. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* O_DIRECT */
#endif
#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "eddy.h"
#ifdef HAVE_LIBUV
#include <uv.h>
#endif

#define DEPTH 32
#define BLOCK 4096

static int64_t wall_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static uint64_t blocks;    /* the file's size in BLOCKs */
static int64_t warm_end;   /* counting starts here */
static int64_t stop_at;    /* and ends here */
static uint64_t completed; /* reads completed between warm_end and stop_at */
static uint64_t all_reads; /* reads completed, warm-up included */

static uint64_t next_rand(uint64_t *s)
{
    /* xorshift64* */
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ULL;
}

static void *block_buffer(void)
{
    void *buf = NULL;
    if (posix_memalign(&buf, BLOCK, BLOCK) != 0) return NULL;
    return buf;
}

/* ---- eddy ----------------------------------------------------------------- */

struct slot {
    eddy_file *file;
    char *buf; /* BLOCK bytes of the region all slots share */
    uint64_t seed;
    int err;
};

static intptr_t reader(void *arg)
{
    struct slot *s = arg;
    char *buf = s->buf;
    for (;;) {
        int64_t off = (int64_t)(next_rand(&s->seed) % blocks) * BLOCK;
        ssize_t n = eddy_file_read(s->file, buf, BLOCK, off);
        if (n != BLOCK) {
            s->err = n < 0 ? (int)n : -EIO;
            break;
        }
        all_reads++;
        int64_t now = wall_ns();
        if (now >= stop_at) break;
        if (now >= warm_end) completed++;
    }
    return 0;
}

struct eddy_args {
    const char *path;
    int flags;
    bool fixed;
    int err;
};

static intptr_t eddy_main(void *arg)
{
    struct eddy_args *a = arg;
    eddy_file *f;
    int err = eddy_file_open(&f, a->path, a->flags, 0);
    if (err < 0) return a->err = err;
    char *region = NULL;
    if (posix_memalign((void **)&region, BLOCK, DEPTH * BLOCK) != 0) return a->err = -ENOMEM;
    if (a->fixed && (err = eddy_buffer_register(NULL, region, DEPTH * BLOCK)) < 0) {
        free(region);
        return a->err = err;
    }
    struct slot slots[DEPTH];
    eddy_task *tasks[DEPTH];
    for (int i = 0; i < DEPTH; i++) {
        slots[i] = (struct slot){.file = f,
                                 .buf = region + i * BLOCK,
                                 .seed = 0x9E3779B97F4A7C15ULL * (uint64_t)(i + 1)};
        tasks[i] = eddy_spawn(NULL, reader, &slots[i]);
        if (!tasks[i]) return a->err = -ENOMEM;
    }
    for (int i = 0; i < DEPTH; i++) {
        eddy_task_join(tasks[i], NULL);
        if (slots[i].err && !a->err) a->err = slots[i].err;
    }
    eddy_file_close(f);
    if (a->fixed) (void)eddy_buffer_unregister(NULL, region);
    free(region);
    return 0;
}

static int run_eddy(const char *path, int flags, bool fixed)
{
    struct eddy_args a = {.path = path, .flags = flags, .fixed = fixed};
    int err = eddy_run(eddy_main, &a, NULL);
    if (err < 0) return err;
    return a.err;
}

/* ---- libuv ---------------------------------------------------------------- */

#ifdef HAVE_LIBUV
struct uv_slot {
    uv_fs_t req;
    uv_buf_t buf;
    uv_file file;
    uint64_t seed;
};

static int uv_error;

static void uv_issue(struct uv_slot *s);

static void uv_done(uv_fs_t *req)
{
    struct uv_slot *s = req->data;
    ssize_t n = req->result;
    uv_fs_req_cleanup(req);
    if (n != BLOCK) {
        if (!uv_error) uv_error = n < 0 ? (int)n : -EIO;
        return;
    }
    all_reads++;
    int64_t now = wall_ns();
    if (now >= stop_at) return;
    if (now >= warm_end) completed++;
    uv_issue(s);
}

static void uv_issue(struct uv_slot *s)
{
    int64_t off = (int64_t)(next_rand(&s->seed) % blocks) * BLOCK;
    s->req.data = s;
    int err = uv_fs_read(uv_default_loop(), &s->req, s->file, &s->buf, 1, off, uv_done);
    if (err < 0 && !uv_error) uv_error = err;
}

static int run_uv(const char *path, int flags)
{
    uv_fs_t open_req;
    int fd = uv_fs_open(NULL, &open_req, path, flags, 0, NULL);
    uv_fs_req_cleanup(&open_req);
    if (fd < 0) return fd;
    static struct uv_slot slots[DEPTH];
    for (int i = 0; i < DEPTH; i++) {
        slots[i].file = fd;
        slots[i].seed = 0x9E3779B97F4A7C15ULL * (uint64_t)(i + 1);
        void *b = block_buffer();
        if (!b) return -ENOMEM;
        slots[i].buf = uv_buf_init(b, BLOCK);
        uv_issue(&slots[i]);
    }
    uv_run(uv_default_loop(), UV_RUN_DEFAULT);
    uv_fs_t close_req;
    uv_fs_close(NULL, &close_req, fd, NULL);
    uv_fs_req_cleanup(&close_req);
    return uv_error;
}
#endif

int main(int argc, char **argv)
{
    if (argc != 5 && argc != 6) {
        fprintf(stderr, "usage: %s eddy|uv path direct(0|1) seconds [fixed(0|1)]\n", argv[0]);
        return 2;
    }
    const char *lib = argv[1], *path = argv[2];
    int flags = O_RDONLY | (atoi(argv[3]) ? O_DIRECT : 0);
    double secs = atof(argv[4]);
    struct stat st;
    if (stat(path, &st) != 0 || st.st_size < BLOCK) {
        fprintf(stderr, "files: %s: %s\n", path, strerror(errno ? errno : EINVAL));
        return 1;
    }
    blocks = (uint64_t)st.st_size / BLOCK;
    warm_end = wall_ns() + 500000000;
    stop_at = warm_end + (int64_t)(secs * 1e9);
    int err;
    if (strcmp(lib, "eddy") == 0) {
        err = run_eddy(path, flags, argc == 6 && atoi(argv[5]));
#ifdef HAVE_LIBUV
    } else if (strcmp(lib, "uv") == 0) {
        err = run_uv(path, flags);
#endif
    } else {
        fprintf(stderr, "files: %s: not built in\n", lib);
        return 2;
    }
    if (err < 0) {
        fprintf(stderr, "files: %s: %s\n", lib, strerror(-err));
        return 1;
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu_ns = (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e9 +
                    (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e3;
    printf("%.0f %.0f\n", (double)completed / secs, all_reads ? cpu_ns / all_reads : -1);
    return 0;
}
