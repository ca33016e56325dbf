/* SPDX-License-Identifier: MIT */
/* Files: a 64 MiB write/sync/read with content checks, path operations,
 * errors from the file system, cancelling a task in a file read (queued, and
 * running), and bad input. */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/stat.h>
#ifndef _WIN32
#include <termios.h>
#endif
#include <unistd.h>

#include "helpers.h"

static char dir[200];

static void make_dir(void)
{
    temp_dir_make(dir, sizeof(dir), "eddy-files");
}

static void remove_dir(void)
{
    temp_dir_remove(dir);
}

static void path_in_dir(char *out, size_t size, const char *name)
{
    snprintf(out, size, "%s/%s", dir, name);
}

/* ---- 64 MiB ------------------------------------------------------------------ */

#define BIG     (64u << 20)
#define READERS 8
#define CHUNK   (1u << 20)

static unsigned char big_byte(size_t offset)
{
    uint32_t x = (uint32_t)(offset / 4096) * 2654435761u + (uint32_t)offset;
    return (unsigned char)(x ^ (x >> 13));
}

struct big_reader {
    eddy_file *f;
    size_t start, len;
    unsigned char *buf;
};

/* Reads its share in 1 MiB chunks and checks every byte. */
static intptr_t big_read_part(void *arg)
{
    struct big_reader *r = arg;
    for (size_t off = r->start; off < r->start + r->len; off += CHUNK) {
        ssize_t n = eddy_file_read(r->f, r->buf, CHUNK, (int64_t)off);
        if (n != CHUNK) return n < 0 ? n : -EIO;
        for (size_t i = 0; i < CHUNK; i++)
            if (r->buf[i] != big_byte(off + i)) return -EBADMSG;
    }
    return 0;
}

static intptr_t big_main(void *arg)
{
    char path[256];
    path_in_dir(path, sizeof(path), "big");
    unsigned char *data = malloc(BIG);
    cr_assert(ne(ptr, data, NULL));
    for (size_t i = 0; i < BIG; i++)
        data[i] = big_byte(i);

    eddy_file *f;
    cr_assert(eq(int, eddy_file_open(&f, path, O_CREAT | O_TRUNC | O_RDWR, 0644), 0));
    cr_assert(eq(sz, (size_t)eddy_file_write(f, data, BIG, 0), BIG), "one call writes it all");
    cr_assert(eq(int, eddy_file_sync(f), 0));
    struct stat st;
    cr_assert(eq(int, eddy_file_stat(f, &st), 0));
    cr_assert(eq(i64, (int64_t)st.st_size, (int64_t)BIG));
    free(data);

    /* Eight tasks read their eighth each, concurrently (the pool's workers). */
    struct big_reader readers[READERS];
    eddy_task *tasks[READERS];
    for (int i = 0; i < READERS; i++) {
        readers[i] =
            (struct big_reader){f, (size_t)i * (BIG / READERS), BIG / READERS, malloc(CHUNK)};
        tasks[i] = eddy_spawn(NULL, big_read_part, &readers[i]);
    }
    for (int i = 0; i < READERS; i++) {
        intptr_t r = -1;
        cr_assert(eq(int, eddy_task_join(tasks[i], &r), 0));
        cr_assert(eq(int, (int)r, 0), "reader %d: %s", i, eddy_strerror((int)r));
        free(readers[i].buf);
    }

    /* The end of the file: a short read, then 0. */
    unsigned char tail[100];
    cr_assert(eq(sz, (size_t)eddy_file_read(f, tail, sizeof(tail), BIG - 10), 10));
    for (size_t i = 0; i < 10; i++)
        cr_assert(eq(u8, tail[i], big_byte(BIG - 10 + i)));
    cr_assert(eq(sz, (size_t)eddy_file_read(f, tail, sizeof(tail), BIG), 0));
    cr_assert(eq(int, eddy_file_close(f), 0));
    return 0;
}

Test(files, write_sync_read_64mib, .init = make_dir, .fini = remove_dir, .timeout = TEST_TIMEOUT)
{
    cr_assert(eq(int, run_main(big_main, NULL), 0));
}

/* ---- sequential I/O at the current position ------------------------------------ */

static intptr_t sequential_main(void *arg)
{
    char path[256];
    path_in_dir(path, sizeof(path), "seq");
    eddy_file *f;
    cr_assert(eq(int, eddy_file_open(&f, path, O_CREAT | O_RDWR | O_APPEND, 0600), 0));
    cr_assert(eq(sz, (size_t)eddy_file_write(f, "hello ", 6, -1), 6));
    cr_assert(eq(sz, (size_t)eddy_file_write(f, "world", 5, -1), 5));
    cr_assert(eq(int, eddy_file_close(f), 0));

    cr_assert(eq(int, eddy_file_open(&f, path, O_RDONLY, 0), 0));
    char buf[16] = {0};
    cr_assert(eq(sz, (size_t)eddy_file_read(f, buf, 6, -1), 6));
    cr_assert(eq(sz, (size_t)eddy_file_read(f, buf + 6, 10, -1), 5), "the position advanced");
    cr_assert(eq(str, buf, "hello world"));
    cr_assert(eq(sz, (size_t)eddy_file_read(f, buf, 10, -1), 0));
    cr_assert(eq(int, eddy_file_close(f), 0));
    return 0;
}

Test(files, current_position, .init = make_dir, .fini = remove_dir, .timeout = TEST_TIMEOUT)
{
    cr_assert(eq(int, run_main(sequential_main, NULL), 0));
}

/* ---- paths ------------------------------------------------------------------------ */

static intptr_t paths_main(void *arg)
{
    char sub[256], a[280], b[280];
    path_in_dir(sub, sizeof(sub), "sub");
    snprintf(a, sizeof(a), "%s/a", sub);
    snprintf(b, sizeof(b), "%s/b", sub);
    struct stat st;

    cr_assert(eq(int, eddy_fs_mkdir(sub, 0755), 0));
    cr_assert(eq(int, eddy_fs_mkdir(sub, 0755), -EEXIST));
    cr_assert(eq(int, eddy_fs_stat(sub, &st), 0));
    bool is_dir = S_ISDIR(st.st_mode);
    cr_assert(is_dir);

    eddy_file *f;
    cr_assert(eq(int, eddy_file_open(&f, a, O_CREAT | O_EXCL | O_WRONLY, 0600), 0));
    cr_assert(eq(sz, (size_t)eddy_file_write(f, "abc", 3, 0), 3));
    cr_assert(eq(int, eddy_file_close(f), 0));
    cr_assert(eq(int, eddy_file_open(&f, a, O_CREAT | O_EXCL | O_WRONLY, 0600), -EEXIST));
    cr_assert(eq(int, eddy_fs_stat(a, &st), 0));
    bool is_reg = S_ISREG(st.st_mode);
    cr_assert(is_reg);
    cr_assert(eq(i64, (int64_t)st.st_size, 3));
#ifdef _WIN32
    /* No POSIX permissions on Windows: a file is writable or read-only. */
    cr_assert(eq(int, (int)(st.st_mode & 0200), 0200));
#else
    cr_assert(eq(int, (int)(st.st_mode & 0777), 0600));
#endif

    cr_assert(eq(int, eddy_fs_rename(a, b), 0));
    cr_assert(eq(int, eddy_fs_stat(a, &st), -ENOENT));
    cr_assert(eq(int, eddy_fs_stat(b, &st), 0));
    cr_assert(eq(i64, (int64_t)st.st_size, 3));
    cr_assert(eq(int, eddy_fs_rename(a, b), -ENOENT));

    cr_assert(eq(int, eddy_fs_rmdir(sub), -ENOTEMPTY));
    cr_assert(eq(int, eddy_fs_unlink(b), 0));
    cr_assert(eq(int, eddy_fs_unlink(b), -ENOENT));
    cr_assert(eq(int, eddy_fs_unlink(sub), -EISDIR));
    cr_assert(eq(int, eddy_fs_rmdir(sub), 0));
    cr_assert(eq(int, eddy_fs_stat(sub, &st), -ENOENT));
    return 0;
}

Test(files, stat_unlink_rename_mkdir, .init = make_dir, .fini = remove_dir, .timeout = TEST_TIMEOUT)
{
    cr_assert(eq(int, run_main(paths_main, NULL), 0));
}

static intptr_t errors_main(void *arg)
{
    char missing[256], path[256];
    path_in_dir(missing, sizeof(missing), "missing/file");
    eddy_file *f = (eddy_file *)1;
    cr_assert(eq(int, eddy_file_open(&f, missing, O_RDONLY, 0), -ENOENT));
    cr_assert(eq(ptr, f, NULL));
    cr_assert(eq(int, eddy_file_open(&f, dir, O_WRONLY, 0), -EISDIR));

    path_in_dir(path, sizeof(path), "ro");
    cr_assert(eq(int, eddy_file_open(&f, path, O_CREAT | O_RDONLY, 0600), 0));
    cr_assert(eq(sz, (size_t)eddy_file_write(f, "x", 1, 0), (size_t)-EBADF));
    char buf[4];
    cr_assert(eq(sz, (size_t)eddy_file_read(f, buf, sizeof(buf), 0), 0));
    cr_assert(eq(int, eddy_file_close(f), 0));
    return 0;
}

Test(files, errors_from_the_file_system, .init = make_dir, .fini = remove_dir,
     .timeout = TEST_TIMEOUT)
{
    cr_assert(eq(int, run_main(errors_main, NULL), 0));
}

/* ---- cancelling a task in a file read ------------------------------------------------ */

struct gate {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool open;
    int started;
};

static struct gate gate = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, 0};

static intptr_t gate_wait(void *unused)
{
    pthread_mutex_lock(&gate.lock);
    gate.started++;
    while (!gate.open)
        pthread_cond_wait(&gate.cond, &gate.lock);
    pthread_mutex_unlock(&gate.lock);
    return 0;
}

static int gate_started(void)
{
    pthread_mutex_lock(&gate.lock);
    int n = gate.started;
    pthread_mutex_unlock(&gate.lock);
    return n;
}

static void gate_release(void)
{
    pthread_mutex_lock(&gate.lock);
    gate.open = true;
    pthread_cond_broadcast(&gate.cond);
    pthread_mutex_unlock(&gate.lock);
}

static intptr_t task_block_worker(void *unused)
{
    return eddy_to_thread(gate_wait, NULL, NULL);
}

struct read_call {
    eddy_file *f;
    char buf[16];
    int64_t offset;
};

static intptr_t task_read(void *arg)
{
    struct read_call *r = arg;
    return eddy_file_read(r->f, r->buf, sizeof(r->buf), r->offset);
}

#define WORKERS 4

/* Whether the loop's backend sends file reads to the thread pool (epoll,
 * kqueue) rather than doing them natively (io_uring, IOCP). */
static bool reads_in_pool(void)
{
    const char *backend = eddy_loop_backend(eddy_loop_current());
    return strcmp(backend, "io_uring") != 0 && strcmp(backend, "iocp") != 0;
}

static intptr_t cancel_queued_read_main(void *arg)
{
    if (!reads_in_pool()) return 1; /* skipped: no read waits for a worker */
    char path[256];
    path_in_dir(path, sizeof(path), "data");
    eddy_file *f;
    cr_assert(eq(int, eddy_file_open(&f, path, O_CREAT | O_RDWR, 0600), 0));
    cr_assert(eq(sz, (size_t)eddy_file_write(f, "0123456789abcdef", 16, 0), 16));

    /* Occupy every worker, so the read waits in the queue. */
    eddy_task *blockers[WORKERS];
    for (int i = 0; i < WORKERS; i++)
        blockers[i] = eddy_spawn(NULL, task_block_worker, NULL);
    for (int i = 0; i < 5000 && gate_started() < WORKERS; i++)
        cr_assert(eq(int, eddy_sleep(NS_PER_MS), 0));
    cr_assert(eq(int, gate_started(), WORKERS));

    struct read_call r = {.f = f};
    memset(r.buf, '#', sizeof(r.buf));
    eddy_task *reader = eddy_spawn(NULL, task_read, &r);
    cr_assert(eq(int, eddy_sleep(10 * NS_PER_MS), 0));
    cr_assert(not(eddy_future_done(eddy_task_future(reader))));
    cr_assert(eddy_task_cancel(reader));
    cr_assert(eq(int, eddy_task_join(reader, NULL), -ECANCELED), "withdrawn from the queue");
    for (size_t i = 0; i < sizeof(r.buf); i++)
        cr_assert(eq(chr, r.buf[i], '#'), "the withdrawn read wrote into its buffer");

    gate_release();
    for (int i = 0; i < WORKERS; i++)
        cr_assert(eq(int, eddy_task_join(blockers[i], NULL), 0));
    /* The file is unharmed and reads work again. */
    cr_assert(eq(sz, (size_t)eddy_file_read(f, r.buf, sizeof(r.buf), 0), 16));
    cr_assert(eq(int, memcmp(r.buf, "0123456789abcdef", 16), 0));
    cr_assert(eq(int, eddy_file_close(f), 0));
    return 0;
}

Test(files, cancel_task_in_read_waiting_for_a_worker, .init = make_dir, .fini = remove_dir,
     .timeout = TEST_TIMEOUT)
{
    setenv("EDDY_THREADPOOL_SIZE", "4", 1);
    setenv("EDDY_THREADPOOL_MAX", "4", 1); /* no growth: the read stays queued */
    int r = run_main(cancel_queued_read_main, NULL);
    if (r == 1) cr_skip_test("file reads are native on this backend: none waits for a worker");
    cr_assert(eq(int, r, 0));
}

/* A file whose reads wait until someone writes: a FIFO, which eddy opens
 * O_RDWR (no wait for a peer) and the test writes through the same fd; on
 * Windows a named pipe, whose client end eddy opens and whose server end the
 * test holds and writes. */
struct waiting_file {
    eddy_file *f;
    intptr_t fd;
#ifdef _WIN32
    HANDLE server;
#endif
};

static void waiting_file_open(struct waiting_file *w)
{
    char path[256];
#ifdef _WIN32
    static unsigned serial;
    snprintf(path, sizeof(path), "\\\\.\\pipe\\eddy-files-%lu-%u", GetCurrentProcessId(), serial++);
    w->server = CreateNamedPipeA(path, PIPE_ACCESS_DUPLEX, PIPE_TYPE_BYTE, 1, 4096, 4096, 0, NULL);
    cr_assert(w->server != INVALID_HANDLE_VALUE, "CreateNamedPipe: error %lu", GetLastError());
#else
    path_in_dir(path, sizeof(path), "fifo");
    cr_assert(eq(int, mkfifo(path, 0600), 0));
#endif
    cr_assert(eq(int, eddy_file_open(&w->f, path, O_RDWR, 0), 0));
    w->fd = eddy_file_fd(w->f);
}

/* Writes to it from outside eddy, as another program would. */
static ssize_t waiting_file_write(struct waiting_file *w, const char *data, size_t len)
{
#ifdef _WIN32
    DWORD n;
    return WriteFile(w->server, data, (DWORD)len, &n, NULL) ? (ssize_t)n : -1;
#else
    return write((int)w->fd, data, len);
#endif
}

/* What eddy_file_close leaves to the test. */
static void waiting_file_release(struct waiting_file *w)
{
#ifdef _WIN32
    CloseHandle(w->server);
#endif
}

/* A read from a FIFO waits until someone writes, and is withdrawn when its
 * task is cancelled, on every backend: the kernel's (io_uring, IOCP), or
 * readiness (epoll, kqueue), where the FIFO is read non-blocking once it is
 * ready rather than in the thread pool, where nothing could stop the read.
 * The task ends at once with -ECANCELED and nothing is consumed. */
static void assert_read_withdrawn(eddy_file *f)
{
    struct read_call r = {.f = f, .offset = -1};
    memset(r.buf, '#', sizeof(r.buf));
    eddy_task *reader = eddy_spawn(NULL, task_read, &r);
    cr_assert(eq(int, eddy_sleep(20 * NS_PER_MS), 0));
    cr_assert(eddy_task_cancel(reader));
    cr_assert(eq(int, eddy_sleep(50 * NS_PER_MS), 0));
    cr_assert(eddy_future_done(eddy_task_future(reader)), "the read was not withdrawn");
    cr_assert(eq(int, eddy_task_join(reader, NULL), -ECANCELED));
    for (size_t i = 0; i < sizeof(r.buf); i++)
        cr_assert(eq(chr, r.buf[i], '#'), "the withdrawn read wrote into its buffer");
}

static intptr_t cancel_pending_read_main(void *arg)
{
    struct waiting_file w;
    waiting_file_open(&w);
    eddy_file *f = w.f;
    assert_read_withdrawn(f);
    /* Nothing was consumed: the next read gets what is written. */
    char buf[16];
    cr_assert(eq(sz, (size_t)waiting_file_write(&w, "late", 4), 4));
    cr_assert(eq(sz, (size_t)eddy_file_read(f, buf, sizeof(buf), -1), 4));
    cr_assert(eq(int, memcmp(buf, "late", 4), 0));
    cr_assert(eq(int, eddy_file_close(f), 0));
    waiting_file_release(&w);
    return 0;
}

Test(files, cancel_task_in_pending_read, .init = make_dir, .fini = remove_dir,
     .timeout = TEST_TIMEOUT)
{
    cr_assert(eq(int, run_main(cancel_pending_read_main, NULL), 0));
}

/* A timeout around a FIFO read that nothing answers fires on time. */
static intptr_t timeout_pending_read_main(void *arg)
{
    struct waiting_file w;
    waiting_file_open(&w);
    struct read_call r = {.f = w.f, .offset = -1};
    eddy_task *reader = eddy_spawn(NULL, task_read, &r);
    int64_t before = wall_ns();
    cr_assert(
        eq(int, eddy_await_timeout(eddy_task_future(reader), 100 * NS_PER_MS, NULL), -ETIMEDOUT));
    int64_t took = wall_ns() - before;
    cr_assert(ge(i64, took, 90 * NS_PER_MS));
    cr_assert(lt(i64, took, 300 * NS_PER_MS), "a 100 ms timeout fired after %lld ms",
              (long long)(took / NS_PER_MS));
    cr_assert(eq(int, eddy_task_join(reader, NULL), -ECANCELED));
    cr_assert(eq(int, eddy_file_close(w.f), 0));
    waiting_file_release(&w);
    return 0;
}

Test(files, timeout_on_pending_read_fires_on_time, .init = make_dir, .fini = remove_dir,
     .timeout = TEST_TIMEOUT)
{
    cr_assert(eq(int, run_main(timeout_pending_read_main, NULL), 0));
}

#ifndef _WIN32
/* Another thread opens the FIFO for writing (which waits for our reader),
 * writes in two steps, and closes it: eddy reads it all, then the end. */
static void *fifo_writer_thread(void *path)
{
    int fd = open(path, O_WRONLY);
    if (fd < 0) return (void *)(intptr_t)-errno;
    usleep(30 * 1000);
    ssize_t a = write(fd, "hello ", 6);
    usleep(30 * 1000);
    ssize_t b = write(fd, "fifo", 4);
    close(fd);
    return (void *)(intptr_t)(a == 6 && b == 4 ? 0 : -EIO);
}

static intptr_t fifo_from_thread_main(void *arg)
{
    char path[256];
    path_in_dir(path, sizeof(path), "fifo");
    cr_assert(eq(int, mkfifo(path, 0600), 0));
    pthread_t writer;
    cr_assert(eq(int, pthread_create(&writer, NULL, fifo_writer_thread, path), 0));
    eddy_file *f;
    cr_assert(eq(int, eddy_file_open(&f, path, O_RDONLY, 0), 0));
    char buf[32];
    size_t got = 0;
    ssize_t n;
    while ((n = eddy_file_read(f, buf + got, sizeof(buf) - got, -1)) > 0)
        got += (size_t)n;
    cr_assert(eq(sz, (size_t)n, 0), "the end of the FIFO: %s", eddy_strerror((int)n));
    cr_assert(eq(sz, got, 10));
    cr_assert(eq(int, memcmp(buf, "hello fifo", 10), 0));
    void *rc;
    cr_assert(eq(int, pthread_join(writer, &rc), 0));
    cr_assert(eq(int, (int)(intptr_t)rc, 0));
    /* A FIFO has no offset: as pread says. */
    cr_assert(eq(sz, (size_t)eddy_file_read(f, buf, sizeof(buf), 0), (size_t)-ESPIPE));
    cr_assert(eq(sz, (size_t)eddy_file_write(f, buf, 1, 5), (size_t)-ESPIPE));
    cr_assert(eq(int, eddy_file_close(f), 0));
    return 0;
}

Test(files, fifo_reads_what_another_thread_writes, .init = make_dir, .fini = remove_dir,
     .timeout = TEST_TIMEOUT)
{
    cr_assert(eq(int, run_main(fifo_from_thread_main, NULL), 0));
}

/* O_NONBLOCK spares the open its wait for a writer; the reads still wait
 * for data rather than fail with -EAGAIN. */
static intptr_t fifo_nonblocking_open_main(void *arg)
{
    char path[256];
    path_in_dir(path, sizeof(path), "fifo");
    cr_assert(eq(int, mkfifo(path, 0600), 0));
    eddy_file *f;
    cr_assert(eq(int, eddy_file_open(&f, path, O_RDONLY | O_NONBLOCK, 0), 0));
    int writer = open(path, O_WRONLY | O_NONBLOCK);
    cr_assert(ge(int, writer, 0));
    struct read_call r = {.f = f, .offset = -1};
    eddy_task *reader = eddy_spawn(NULL, task_read, &r);
    cr_assert(eq(int, eddy_sleep(20 * NS_PER_MS), 0));
    cr_assert(not(eddy_future_done(eddy_task_future(reader))), "the read did not wait");
    cr_assert(eq(sz, (size_t)write(writer, "now", 3), 3));
    intptr_t n = -1;
    cr_assert(eq(int, eddy_task_join(reader, &n), 0));
    cr_assert(eq(int, (int)n, 3), "%s", eddy_strerror((int)n));
    close(writer);
    cr_assert(eq(int, eddy_file_close(f), 0));
    return 0;
}

Test(files, fifo_opened_nonblocking_reads_wait, .init = make_dir, .fini = remove_dir,
     .timeout = TEST_TIMEOUT)
{
    cr_assert(eq(int, run_main(fifo_nonblocking_open_main, NULL), 0));
}

/* A write to a FIFO whose reader is gone gives -EPIPE, never SIGPIPE (which
 * would end the test's process): with the reader gone before the write, and
 * while a large write waits for room. */
static int fifo_reader_fd = -1;

static void close_fifo_reader(void *arg)
{
    close(fifo_reader_fd);
}

static intptr_t fifo_epipe_main(void *arg)
{
    char path[256];
    path_in_dir(path, sizeof(path), "fifo");
    cr_assert(eq(int, mkfifo(path, 0600), 0));
    static char big[1 << 20];
    for (int round = 0; round < 2; round++) {
        fifo_reader_fd = open(path, O_RDONLY | O_NONBLOCK);
        cr_assert(ge(int, fifo_reader_fd, 0));
        eddy_file *f;
        cr_assert(eq(int, eddy_file_open(&f, path, O_WRONLY, 0), 0));
        ssize_t n;
        if (round == 0) {
            close(fifo_reader_fd);
            n = eddy_file_write(f, "x", 1, -1);
        } else {
            /* The FIFO fills (64 KiB), the write waits; the reader goes. */
            cr_assert(eq(
                int,
                eddy_call_later(eddy_loop_current(), 50 * NS_PER_MS, close_fifo_reader, NULL, NULL),
                0));
            n = eddy_file_write(f, big, sizeof(big), -1);
        }
        cr_assert(eq(sz, (size_t)n, (size_t)-EPIPE), "round %d: %s", round, eddy_strerror((int)n));
        cr_assert(eq(int, eddy_file_close(f), 0));
    }
    return 0;
}

Test(files, fifo_write_without_reader_is_epipe, .init = make_dir, .fini = remove_dir,
     .timeout = TEST_TIMEOUT)
{
    cr_assert(eq(int, run_main(fifo_epipe_main, NULL), 0));
}

/* A terminal is read as a FIFO is: cancellable, and what the other side of
 * the pseudo-terminal writes arrives. */
static intptr_t terminal_main(void *arg)
{
    int master = posix_openpt(O_RDWR | O_NOCTTY);
    if (master < 0) return 1;
    cr_assert(eq(int, grantpt(master), 0));
    cr_assert(eq(int, unlockpt(master), 0));
    eddy_file *f;
    cr_assert(eq(int, eddy_file_open(&f, ptsname(master), O_RDWR | O_NOCTTY, 0), 0));
    struct termios raw;
    cr_assert(eq(int, tcgetattr((int)eddy_file_fd(f), &raw), 0));
    cfmakeraw(&raw);
    cr_assert(eq(int, tcsetattr((int)eddy_file_fd(f), TCSANOW, &raw), 0));

    assert_read_withdrawn(f);
    char buf[16];
    cr_assert(eq(sz, (size_t)write(master, "tty", 3), 3));
    cr_assert(eq(sz, (size_t)eddy_file_read(f, buf, sizeof(buf), -1), 3));
    cr_assert(eq(int, memcmp(buf, "tty", 3), 0));
    cr_assert(eq(sz, (size_t)eddy_file_write(f, "out", 3, -1), 3));
    cr_assert(eq(sz, (size_t)read(master, buf, sizeof(buf)), 3));
    cr_assert(eq(int, memcmp(buf, "out", 3), 0));
    cr_assert(eq(int, eddy_file_close(f), 0));
    close(master);
    return 0;
}

Test(files, terminal_read_is_cancellable, .timeout = TEST_TIMEOUT)
{
    int r = run_main(terminal_main, NULL);
    if (r == 1) cr_skip_test("no pseudo-terminal here: %s", strerror(errno));
    cr_assert(eq(int, r, 0));
}

#endif

/* ---- close waits for calls in other tasks --------------------------------------------- */

static void write_done(void *arg)
{
    cr_expect(eq(sz, (size_t)waiting_file_write(arg, "done", 4), 4));
}

static intptr_t close_waits_main(void *arg)
{
    struct waiting_file w;
    waiting_file_open(&w);
    eddy_file *f = w.f;
    struct read_call r = {.f = f, .offset = -1};
    eddy_task *reader = eddy_spawn(NULL, task_read, &r);
    cr_assert(eq(int, eddy_sleep(20 * NS_PER_MS), 0));
    /* close must not pull the fd from under the running read: it waits for
     * the read, which a timer ends later by writing to the FIFO. */
    cr_assert(
        eq(int, eddy_call_later(eddy_loop_current(), 30 * NS_PER_MS, write_done, &w, NULL), 0));
    int64_t before = wall_ns();
    cr_assert(eq(int, eddy_file_close(f), 0));
    cr_assert(ge(i64, wall_ns() - before, 20 * NS_PER_MS), "close did not wait for the read");
    cr_assert(eddy_future_done(eddy_task_future(reader)), "close returned before the read");
    intptr_t n = -1;
    cr_assert(eq(int, eddy_task_join(reader, &n), 0));
    cr_assert(eq(int, (int)n, 4));
    cr_assert(not(handle_is_open(w.fd)));
    waiting_file_release(&w);
    return 0;
}

Test(files, close_waits_for_calls_in_other_tasks, .init = make_dir, .fini = remove_dir,
     .timeout = TEST_TIMEOUT)
{
    cr_assert(eq(int, run_main(close_waits_main, NULL), 0));
}

/* ---- bad input ------------------------------------------------------------------------ */

static intptr_t bad_input_main(void *arg)
{
    char path[256], buf[4];
    path_in_dir(path, sizeof(path), "f");
    eddy_file *f;
    struct stat st;
    cr_assert(eq(int, eddy_file_open(NULL, path, O_RDONLY, 0), -EINVAL));
    cr_assert(eq(int, eddy_file_open(&f, NULL, O_RDONLY, 0), -EINVAL));
    cr_assert(eq(int, eddy_file_open(&f, path, O_CREAT | O_RDWR, -1), -EINVAL));
    cr_assert(eq(int, eddy_file_open(&f, path, O_CREAT | O_RDWR, 0600), 0));
    cr_assert(eq(sz, (size_t)eddy_file_read(NULL, buf, 4, 0), (size_t)-EINVAL));
    cr_assert(eq(sz, (size_t)eddy_file_read(f, NULL, 4, 0), (size_t)-EINVAL));
    cr_assert(eq(sz, (size_t)eddy_file_read(f, buf, 4, -2), (size_t)-EINVAL));
    cr_assert(eq(sz, (size_t)eddy_file_write(NULL, buf, 4, 0), (size_t)-EINVAL));
    cr_assert(eq(sz, (size_t)eddy_file_write(f, NULL, 4, 0), (size_t)-EINVAL));
    cr_assert(eq(sz, (size_t)eddy_file_write(f, buf, 4, -7), (size_t)-EINVAL));
    cr_assert(eq(sz, (size_t)eddy_file_write(f, buf, 0, 0), 0));
    cr_assert(eq(int, eddy_file_sync(NULL), -EINVAL));
    cr_assert(eq(int, eddy_file_stat(NULL, &st), -EINVAL));
    cr_assert(eq(int, eddy_file_stat(f, NULL), -EINVAL));
    cr_assert(eq(int, (int)eddy_file_fd(NULL), -EINVAL));
    cr_assert(eq(int, eddy_file_close(NULL), -EINVAL));
    cr_assert(eq(int, eddy_fs_stat(NULL, &st), -EINVAL));
    cr_assert(eq(int, eddy_fs_stat(path, NULL), -EINVAL));
    cr_assert(eq(int, eddy_fs_unlink(NULL), -EINVAL));
    cr_assert(eq(int, eddy_fs_rmdir(NULL), -EINVAL));
    cr_assert(eq(int, eddy_fs_rename(NULL, path), -EINVAL));
    cr_assert(eq(int, eddy_fs_rename(path, NULL), -EINVAL));
    cr_assert(eq(int, eddy_fs_mkdir(NULL, 0700), -EINVAL));
    cr_assert(eq(int, eddy_fs_mkdir(path, -1), -EINVAL));
    cr_assert(eq(int, eddy_file_close(f), 0));
    return 0;
}

Test(files, bad_input, .init = make_dir, .fini = remove_dir, .timeout = TEST_TIMEOUT)
{
    cr_assert(eq(int, run_main(bad_input_main, NULL), 0));
}

Test(files, outside_a_task_is_eperm)
{
    eddy_file *f = NULL;
    char buf[4];
    struct stat st;
    cr_assert(eq(int, eddy_file_open(&f, "/dev/null", O_RDONLY, 0), -EPERM));
    cr_assert(eq(ptr, f, NULL));
    cr_assert(eq(sz, (size_t)eddy_file_read(NULL, buf, 4, 0), (size_t)-EPERM));
    cr_assert(eq(sz, (size_t)eddy_file_write(NULL, buf, 4, 0), (size_t)-EPERM));
    cr_assert(eq(int, eddy_file_sync(NULL), -EPERM));
    cr_assert(eq(int, eddy_fs_stat("/", &st), -EPERM));
    cr_assert(eq(int, eddy_fs_unlink("/nonexistent"), -EPERM));
    cr_assert(eq(int, eddy_fs_mkdir("/nonexistent", 0700), -EPERM));
    cr_assert(eq(int, eddy_fs_rename("/a", "/b"), -EPERM));
}

/* ---- registered buffers -------------------------------------------------------- */

#define REG_LEN (64u << 10)

struct reg_busy {
    eddy_file *f;
    char *buf;
    ssize_t n;
};

static intptr_t reg_busy_read(void *arg)
{
    struct reg_busy *b = arg;
    b->n = eddy_file_read(b->f, b->buf, 4096, 0);
    return 0;
}

struct reg_thread {
    eddy_loop *loop;
    char *region;
    int err;
};

static void *reg_other_thread(void *arg)
{
    struct reg_thread *t = arg;
    t->err = eddy_buffer_register(t->loop, t->region, 4096);
    return NULL;
}

/* Reads and writes inside a registered region, straddling its end, and
 * after it is unregistered, all correct; where the backend has no
 * registered buffers (epoll, kqueue, iocp, or EDDY_CAPS_DISABLE) register
 * says -ENOTSUP and the same calls go plain. */
static intptr_t registered_main(void *arg)
{
    (void)arg;
    eddy_loop *loop = eddy_loop_current();
    bool native = eddy_loop_supports(loop, EDDY_CAP_REGISTERED_BUFFERS) == EDDY_NATIVE;
    char path[256];
    path_in_dir(path, sizeof(path), "reg");
    char *region = malloc(2 * REG_LEN), *check = malloc(REG_LEN);
    cr_assert(ne(ptr, region, NULL));
    cr_assert(ne(ptr, check, NULL));
    cr_assert(eq(int, eddy_buffer_register(NULL, NULL, REG_LEN), -EINVAL));
    cr_assert(eq(int, eddy_buffer_register(NULL, region, 0), -EINVAL));
    cr_assert(eq(int, eddy_buffer_register(NULL, region, ((size_t)1 << 30) + 1), -EINVAL));
    cr_assert(eq(int, eddy_buffer_unregister(NULL, NULL), -EINVAL));
    cr_assert(eq(int, eddy_buffer_unregister(NULL, region), -ENOENT));
    int err = eddy_buffer_register(NULL, region, REG_LEN);
    cr_assert(eq(int, err, native ? 0 : -ENOTSUP), "register: %s", eddy_strerror(err));
    if (native) {
        cr_assert(eq(int, eddy_buffer_register(loop, region + 100, 10), -EEXIST));
        cr_assert(eq(int, eddy_buffer_register(loop, region + REG_LEN - 1, 10), -EEXIST));
    }
    struct reg_thread other = {loop, region + REG_LEN, 0};
    pthread_t th;
    cr_assert(eq(int, pthread_create(&th, NULL, reg_other_thread, &other), 0));
    cr_assert(eq(int, pthread_join(th, NULL), 0));
    cr_assert(eq(int, other.err, -EPERM), "from another thread");

    eddy_file *f;
    cr_assert(eq(int, eddy_file_open(&f, path, O_CREAT | O_TRUNC | O_RDWR, 0600), 0));
    for (size_t i = 0; i < 2 * REG_LEN; i++)
        region[i] = (char)(i * 7 + i / 4096);
    /* Whole region out and back in, a piece inside it, one across its end. */
    cr_assert(eq(sz, (size_t)eddy_file_write(f, region, REG_LEN, 0), REG_LEN));
    cr_assert(eq(sz, (size_t)eddy_file_write(f, region + REG_LEN, REG_LEN, REG_LEN), REG_LEN));
    memcpy(check, region, REG_LEN);
    memset(region, 0, 2 * REG_LEN);
    cr_assert(eq(sz, (size_t)eddy_file_read(f, region, REG_LEN, 0), REG_LEN));
    cr_assert(eq(int, memcmp(region, check, REG_LEN), 0), "read into the region");
    memset(region, 0, REG_LEN);
    cr_assert(eq(sz, (size_t)eddy_file_read(f, region + 1000, 3000, 1000), 3000));
    cr_assert(eq(int, memcmp(region + 1000, check + 1000, 3000), 0), "read inside it");
    cr_assert(eq(sz, (size_t)eddy_file_read(f, region + REG_LEN - 4096, 8192, 0), 8192));
    cr_assert(eq(int, memcmp(region + REG_LEN - 4096, check, 8192), 0), "read across its end");
    cr_assert(eq(sz, (size_t)eddy_file_read(f, region, 8192, -1), 8192), "current position");
    cr_assert(eq(int, memcmp(region, check, 8192), 0));
    cr_assert(eq(sz, (size_t)eddy_file_read(f, region + 10, 10, 2 * REG_LEN), 0), "past the end");
    if (native) {
        /* A read in progress in another task keeps the region registered. */
        struct reg_busy busy = {f, region, 0};
        eddy_task *t = eddy_spawn(NULL, reg_busy_read, &busy);
        cr_assert(ne(ptr, t, NULL));
        cr_assert(eq(int, eddy_yield(), 0));
        cr_assert(eq(int, eddy_buffer_unregister(loop, region), -EBUSY));
        cr_assert(eq(int, eddy_task_join(t, NULL), 0));
        cr_assert(eq(sz, (size_t)busy.n, 4096));
        cr_assert(eq(int, eddy_buffer_unregister(loop, region + 1), -ENOENT));
        cr_assert(eq(int, eddy_buffer_unregister(loop, region), 0));
        cr_assert(eq(int, eddy_buffer_unregister(loop, region), -ENOENT));
    }
    memset(region, 0, REG_LEN);
    cr_assert(eq(sz, (size_t)eddy_file_read(f, region, REG_LEN, 0), REG_LEN));
    cr_assert(eq(int, memcmp(region, check, REG_LEN), 0), "read after unregistering");
    if (native) {
        /* 64 regions at most; the loop's end unregisters what is left. */
        int i = 0;
        while ((err = eddy_buffer_register(loop, region + i * 64, 64)) == 0)
            i++;
        cr_assert(eq(int, err, -ENOSPC));
        cr_assert(eq(int, i, 64));
    }
    cr_assert(eq(int, eddy_file_close(f), 0));
    free(check);
    return (intptr_t)region; /* freed once the loop is */
}

Test(files, registered_buffers_read_and_write_correctly, .init = make_dir, .fini = remove_dir,
     .timeout = TEST_TIMEOUT)
{
    for (int off = 0; off <= 1; off++) {
        if (off) setenv("EDDY_CAPS_DISABLE", "registered_buffers", 1);
        eddy_loop *loop = new_loop();
        intptr_t region = 0;
        cr_assert(eq(int, run_task(loop, registered_main, NULL, &region), 0));
        if (off)
            cr_assert(eq(int, (int)eddy_loop_supports(loop, EDDY_CAP_REGISTERED_BUFFERS),
                         (int)EDDY_NONE));
        eddy_loop_free(loop);
        free((void *)region);
        unsetenv("EDDY_CAPS_DISABLE");
    }
    char buf[8];
    cr_assert(eq(int, eddy_buffer_register(NULL, buf, sizeof buf), -EINVAL), "no loop");
    cr_assert(eq(int, eddy_buffer_unregister(NULL, buf), -EINVAL), "no loop");
}
