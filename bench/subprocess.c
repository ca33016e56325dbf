/* SPDX-License-Identifier: MIT */
/* bench/subprocess: spawn+wait of /bin/true per second, with the parent's
 * resident memory at a given size (touched, page by page, before the clock
 * starts): eddy_process_spawn + eddy_process_wait, or libuv's uv_spawn and
 * its exit callback.
 *
 *   subprocess eddy|uv RESIDENT_MIB SECONDS
 *
 * Prints "SPAWNS_PER_SEC RESIDENT_MIB": what fork-based spawning costs grows
 * with the page tables it copies (libuv/libuv#2133); posix_spawn's vfork-style
 * clone does not. bench/bench.sh runs it beside Python's asyncio
 * (bench/subprocess_asyncio.py) at 10 MiB and 2 GiB. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#ifdef HAVE_LIBUV
#include <uv.h>
#endif

#include "eddy.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* The resident set, in MiB, from /proc/self/statm (0 where there is none). */
static long resident_mib(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long size = 0, resident = 0;
    if (f) {
        if (fscanf(f, "%ld %ld", &size, &resident) != 2) resident = 0;
        fclose(f);
    }
    return resident * (sysconf(_SC_PAGESIZE) / 1024) / 1024;
}

static double seconds;
static long count;

static intptr_t eddy_main(void *arg)
{
    (void)arg;
    char *argv[] = {"/bin/true", NULL};
    eddy_process_options o = EDDY_PROCESS_OPTIONS_INIT(.file = "/bin/true", .argv = argv);
    double start = now_s();
    while (now_s() - start < seconds) {
        eddy_process *p;
        int err = eddy_process_spawn(&p, &o);
        if (err < 0) return err;
        err = eddy_process_wait(p, NULL);
        eddy_process_free(p);
        if (err < 0) return err;
        count++;
    }
    seconds = now_s() - start;
    return 0;
}

#ifdef HAVE_LIBUV
static double uv_start;
static uv_process_options_t uv_opts;
static uv_process_t uv_proc;

static void uv_spawn_next(uv_loop_t *loop);

static void uv_closed(uv_handle_t *h)
{
    if (now_s() - uv_start < seconds) uv_spawn_next(h->loop);
}

static void uv_exited(uv_process_t *p, int64_t status, int signum)
{
    (void)status;
    (void)signum;
    count++;
    uv_close((uv_handle_t *)p, uv_closed);
}

static void uv_spawn_next(uv_loop_t *loop)
{
    int err = uv_spawn(loop, &uv_proc, &uv_opts);
    if (err < 0) {
        fprintf(stderr, "uv_spawn: %s\n", uv_strerror(err));
        exit(1);
    }
}

static int run_uv(void)
{
    static char *argv[] = {"/bin/true", NULL};
    uv_opts.file = "/bin/true";
    uv_opts.args = argv;
    uv_opts.exit_cb = uv_exited;
    uv_loop_t *loop = uv_default_loop();
    uv_start = now_s();
    uv_spawn_next(loop);
    uv_run(loop, UV_RUN_DEFAULT);
    seconds = now_s() - uv_start;
    return 0;
}
#endif

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s eddy|uv RESIDENT_MIB SECONDS\n", argv[0]);
        return 2;
    }
    size_t mib = strtoul(argv[2], NULL, 10);
    seconds = atof(argv[3]);
    long before = resident_mib();
    size_t extra = mib > (size_t)before ? (mib - (size_t)before) << 20 : 0;
    char *ballast = extra ? malloc(extra) : NULL;
    if (extra && !ballast) {
        perror("malloc");
        return 1;
    }
    for (size_t i = 0; i < extra; i += 4096)
        ballast[i] = (char)i; /* resident, page by page */
    long resident = resident_mib();
    int err = 0;
    if (strcmp(argv[1], "eddy") == 0) {
        intptr_t r = 0;
        err = eddy_run(eddy_main, NULL, &r);
        if (err == 0) err = (int)r;
    } else if (strcmp(argv[1], "uv") == 0) {
#ifdef HAVE_LIBUV
        err = run_uv();
#else
        fprintf(stderr, "built without libuv\n");
        return 1;
#endif
    } else {
        fprintf(stderr, "unknown library %s\n", argv[1]);
        return 2;
    }
    if (err < 0) {
        fprintf(stderr, "%s\n", eddy_strerror(err));
        return 1;
    }
    printf("%.0f %ld\n", count / seconds, resident);
    if (ballast) free(ballast);
    return 0;
}
