/* SPDX-License-Identifier: MIT */
/* cat: copies files to stdout, reading them through the loop.
 *
 *   cat FILE...
 *
 * Each file is read in 64 KiB chunks with eddy_file_read (in the thread pool
 * on epoll, natively on io_uring); the task suspends while a chunk is read. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

#include "eddy.h"

struct args {
    int count;
    char **paths;
};

/* stdout may be a pipe or a terminal, which have no offsets: plain write(2). */
static int write_stdout(const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(STDOUT_FILENO, buf, len);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return -errno;
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

static int cat_file(const char *path)
{
    eddy_file *f;
    int err = eddy_file_open(&f, path, O_RDONLY, 0);
    if (err < 0) return err;
    static char buf[64 * 1024]; /* one task at a time: off the task's stack */
    int64_t offset = 0;
    for (;;) {
        ssize_t n = eddy_file_read(f, buf, sizeof(buf), offset);
        if (n <= 0) {
            err = (int)n;
            break;
        }
        offset += n;
        if ((err = write_stdout(buf, (size_t)n)) < 0) break;
    }
    eddy_file_close(f);
    return err;
}

static intptr_t cat_main(void *arg)
{
    struct args *a = arg;
    int status = 0;
    for (int i = 0; i < a->count; i++) {
        int err = cat_file(a->paths[i]);
        if (err < 0) {
            fprintf(stderr, "cat: %s: %s\n", a->paths[i], eddy_strerror(err));
            status = 1;
        }
    }
    return status;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s FILE...\n", argv[0]);
        return 2;
    }
    struct args a = {argc - 1, argv + 1};
    intptr_t status = 1;
    int err = eddy_run(cat_main, &a, &status);
    if (err < 0) {
        fprintf(stderr, "cat: %s\n", eddy_strerror(err));
        return 1;
    }
    return (int)status;
}
