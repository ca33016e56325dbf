/* SPDX-License-Identifier: MIT */
/* libFuzzer target: eddy_stream's readers over random splits. The input is
 * what a peer sends, in pieces whose sizes, and the reads that take them
 * (readline, readuntil, readexactly, read, peek and consume), come from a
 * generator seeded by the input. The stream's limit is small (64 bytes), so
 * -EOVERFLOW and its "bytes kept" promise are exercised all the time. Checks:
 * no crash, leak or out-of-bounds access (ASan, UBSan); every result is a
 * documented one; and the bytes the reads hand out, in order, are exactly
 * the bytes sent: none lost, none repeated. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "eddy.h"

#define LIMIT 64

struct run {
    const uint8_t *data;
    size_t size;
    uint64_t rng;
    uint8_t *got; /* what the reads handed out, in order */
    size_t got_len;
};

static uint64_t next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void take(struct run *r, const void *buf, size_t n)
{
    if (r->got_len + n > r->size) abort(); /* more bytes out than went in */
    memcpy(r->got + r->got_len, buf, n);
    r->got_len += n;
}

struct writer {
    struct run *run;
    eddy_sock *sock;
    uint64_t rng;
};

static intptr_t write_pieces(void *arg)
{
    struct writer *w = arg;
    const struct run *r = w->run;
    for (size_t off = 0; off < r->size;) {
        size_t n = 1 + next(&w->rng) % 97;
        if (n > r->size - off) n = r->size - off;
        if (eddy_send(w->sock, r->data + off, n) != (ssize_t)n) abort();
        off += n;
        if (next(&w->rng) % 4 == 0) eddy_yield(); /* let the reader see a partial line */
    }
    if (eddy_sock_shutdown(w->sock, EDDY_SHUT_WR) < 0) abort();
    return 0;
}

/* One read chosen by the generator: what it handed out goes to r->got.
 * Returns 1 at EOF (nothing more will come), else 0. */
static int read_once(struct run *r, eddy_stream *st)
{
    uint8_t buf[4 * LIMIT];
    ssize_t n;
    size_t cap = 1 + next(&r->rng) % sizeof buf;
    switch (next(&r->rng) % 6) {
    case 0:
        n = eddy_stream_readline(st, buf, cap);
        if (n == -EOVERFLOW) return 0; /* kept: a later read takes them */
        if (n < 0) abort();
        if (n == 0) return 1;
        uint8_t more;
        if (buf[n - 1] != '\n' && eddy_stream_read(st, &more, 1) != 0) abort(); /* partial: EOF */
        take(r, buf, (size_t)n);
        return 0;
    case 1: {
        static const char *const seps[] = {"\r\n", "::", "x", "\r\n\r\n"};
        const char *sep = seps[next(&r->rng) % 4];
        n = eddy_stream_readuntil(st, sep, strlen(sep), buf, cap);
        if (n == -EOVERFLOW || n == -EPIPE) return 0; /* kept, or EOF first: kept */
        if (n < (ssize_t)strlen(sep) || memcmp(buf + n - strlen(sep), sep, strlen(sep)) != 0)
            abort();
        take(r, buf, (size_t)n);
        return 0;
    }
    case 2:
        n = eddy_stream_readexactly(st, buf, cap);
        if (n == -EPIPE) return 0; /* EOF first: the bytes stay for read */
        if (n != (ssize_t)cap) abort();
        take(r, buf, cap);
        return 0;
    case 3: {
        const void *data;
        size_t len;
        int err = eddy_stream_peek(st, &data, &len);
        /* -EPIPE: EOF with bytes already shown; -EOVERFLOW: a full buffer,
         * all shown. Both still show what there is. */
        if (err < 0 && err != -EPIPE && err != -EOVERFLOW) abort();
        if (len == 0) return 1;
        size_t k = next(&r->rng) % (len + 1);
        take(r, data, k);
        if (eddy_stream_consume(st, k) != 0) abort();
        if (eddy_stream_consume(st, len + 1 - k) != -EINVAL) abort(); /* more than there is */
        return 0;
    }
    default:
        n = eddy_stream_read(st, buf, cap);
        if (n < 0) abort();
        if (n == 0) return 1;
        take(r, buf, (size_t)n);
        return 0;
    }
}

static eddy_sock *listener;

static intptr_t one_input(void *arg)
{
    struct run *r = arg;
    char path[64];
    snprintf(path, sizeof path, "@eddy-fuzz-streams-%ld", (long)getpid());
    if (!listener && eddy_unix_listen(&listener, path, 16) < 0) abort();
    struct writer w = {.run = r, .rng = r->rng ^ 0x9e3779b97f4a7c15u};
    eddy_sock *in;
    if (eddy_unix_connect(&w.sock, path) < 0 || eddy_accept(listener, &in) < 0) abort();
    eddy_task *writer = eddy_spawn(NULL, write_pieces, &w);
    eddy_stream_options o = {.limit = LIMIT, .high_mark = LIMIT};
    eddy_stream *st;
    if (!writer || eddy_stream_open(&st, in, &o) < 0) abort();
    for (unsigned i = 0; i < 100000 && !read_once(r, st); i++) {
    }
    /* Whatever the last reads left: read to the end. */
    uint8_t buf[256];
    ssize_t n;
    while ((n = eddy_stream_read(st, buf, sizeof buf)) > 0)
        take(r, buf, (size_t)n);
    if (n < 0) abort();
    if (eddy_task_join(writer, NULL) < 0) abort();
    eddy_stream_close(st);
    eddy_sock_close(w.sock);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static eddy_loop *loop;
    eddy_loop_options opts = {.backend = "epoll"}; /* quick to make; the same stream code */
    if (!loop && eddy_loop_new(&loop, &opts) < 0) abort();
    struct run r = {.data = data, .size = size, .rng = 88172645463325252u};
    for (size_t i = 0; i < size && i < 16; i++)
        r.rng = (r.rng ^ data[i]) * 0x100000001b3u + 1;
    r.got = malloc(size ? size : 1);
    if (!r.got) return 0;
    eddy_task *t = eddy_spawn(loop, one_input, &r);
    if (!t || eddy_loop_run(loop) < 0 || eddy_task_join(t, NULL) < 0) abort();
    if (r.got_len != size || memcmp(r.got, data, size) != 0) abort(); /* lost or repeated */
    free(r.got);
    return 0;
}
