/* SPDX-License-Identifier: MIT */
/* bench/sendfile: a large file onto a stream, eddy_stream_sendfile against a
 * read/write loop over the same stream (eddy_file_read, eddy_stream_write,
 * eddy_stream_drain, 256 KiB at a time).
 *
 *   sendfile port file mode seconds      mode: sendfile | copy
 *
 * Connects to 127.0.0.1:port (bench/pump sink reads there), sends the file
 * again and again for `seconds`, and prints one line:
 *
 *   <Gbit/s> <CPU ns of this process per MiB sent>
 *
 * The backend is EDDY_BACKEND's. The file should be in the page cache (the
 * script reads it once first): what is measured is the copy, not the disk. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>

#include "eddy.h"

#define CHUNK (256 * 1024)

struct run {
    int port;
    const char *path;
    bool copy;
    double seconds;
    double gbits, cpu_ns_per_mib;
};

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double cpu_ns(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ((double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec) * 1e9 +
           ((double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_usec) * 1e3;
}

/* The read/write loop a program without sendfile writes. */
static ssize_t copy_file(eddy_stream *st, eddy_file *f, char *buf, int64_t size)
{
    for (int64_t off = 0; off < size;) {
        ssize_t n = eddy_file_read(f, buf, CHUNK, off);
        if (n <= 0) return n < 0 ? n : -EIO;
        int err = eddy_stream_write(st, buf, (size_t)n);
        if (err == 0) err = eddy_stream_drain(st);
        if (err < 0) return err;
        off += n;
    }
    return (ssize_t)size;
}

static intptr_t bench_main(void *arg)
{
    struct run *r = arg;
    eddy_stream *st;
    eddy_file *f;
    struct stat sb;
    int err = eddy_open_connection(&st, "127.0.0.1", (uint16_t)r->port, NULL);
    if (err < 0) return err;
    if ((err = eddy_file_open(&f, r->path, O_RDONLY, 0)) < 0) return err;
    if ((err = eddy_file_stat(f, &sb)) < 0) return err;
    char *buf = malloc(CHUNK);
    if (!buf) return -ENOMEM;
    double start = now(), cpu = cpu_ns();
    uint64_t sent = 0;
    while (now() - start < r->seconds) {
        ssize_t n = r->copy ? copy_file(st, f, buf, sb.st_size)
                            : eddy_stream_sendfile(st, f, 0, (size_t)sb.st_size);
        if (n < 0) return n;
        sent += (uint64_t)n;
    }
    if ((err = eddy_stream_drain(st)) < 0) return err;
    double took = now() - start;
    r->gbits = (double)sent * 8 / took / 1e9;
    r->cpu_ns_per_mib = (cpu_ns() - cpu) / ((double)sent / (1 << 20));
    free(buf);
    (void)eddy_file_close(f);
    return eddy_stream_close(st);
}

int main(int argc, char **argv)
{
    if (argc != 5 || (strcmp(argv[3], "sendfile") != 0 && strcmp(argv[3], "copy") != 0)) {
        fprintf(stderr, "usage: %s port file sendfile|copy seconds\n", argv[0]);
        return 2;
    }
    struct run r = {.port = atoi(argv[1]),
                    .path = argv[2],
                    .copy = strcmp(argv[3], "copy") == 0,
                    .seconds = atof(argv[4])};
    intptr_t result = 0;
    int err = eddy_run(bench_main, &r, &result);
    if (err < 0 || result < 0) {
        fprintf(stderr, "sendfile: %s\n", eddy_strerror(err < 0 ? err : (int)result));
        return 1;
    }
    printf("%.2f %.0f\n", r.gbits, r.cpu_ns_per_mib);
    return 0;
}
