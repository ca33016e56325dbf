/* SPDX-License-Identifier: MIT */
/* tests/soak: the client side of make soak (tests/soak.sh). Opens CONNS
 * connections to an echo server, at most CONCURRENCY at a time; each sends
 * BYTES bytes of a pseudo-random stream in writes of random size (1 byte to
 * 64 KiB) while a second task reads the echo in reads of random size and
 * checks every byte against the same stream. About one connection in
 * RESET_EVERY is reset instead (SO_LINGER 0, then close: an RST) after a
 * random part of its bytes, to exercise the server's error path.
 *
 *   soak PORT CONNS BYTES [CONCURRENCY [RESET_EVERY [SEED]]]
 *
 * Prints one summary line; exits 0 when every connection that was not reset
 * got all its bytes back intact (checksums compared), 1 otherwise. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include "eddy.h"

#define CHUNK_MAX (64 * 1024)

struct soak {
    uint16_t port;
    long conns, concurrency, reset_every;
    uint64_t bytes, seed;
    long next, live, ok, reset, failed;
    uint64_t moved;
    eddy_future *slot; /* completed when a connection ends and one may start */
};

static uint64_t rng(uint64_t *s)
{
    /* splitmix64 */
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* The connection's byte stream: the bytes of a second generator. */
struct stream {
    uint64_t state, word;
    unsigned left;
};

static void stream_fill(struct stream *st, unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (st->left == 0) {
            st->word = rng(&st->state);
            st->left = 8;
        }
        p[i] = (unsigned char)st->word;
        st->word >>= 8;
        st->left--;
    }
}

static uint64_t fnv1a(uint64_t h, const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

struct conn {
    struct soak *soak;
    long id;
    eddy_sock *sock;
    uint64_t to_send; /* BYTES, or fewer before a reset */
    uint64_t received, sum_sent, sum_received;
    bool mismatch;
};

/* Reads until EOF, checking each byte against the stream. */
static intptr_t reader(void *arg)
{
    struct conn *c = arg;
    struct stream expect = {.state = c->soak->seed ^ (uint64_t)c->id};
    uint64_t chunks = c->soak->seed * 31 + (uint64_t)c->id;
    unsigned char *buf = malloc(CHUNK_MAX), *want = malloc(CHUNK_MAX);
    intptr_t err = 0;
    c->sum_received = 0xcbf29ce484222325ull;
    if (!buf || !want) {
        err = -ENOMEM;
        goto out;
    }
    for (;;) {
        size_t len = 1 + rng(&chunks) % CHUNK_MAX;
        ssize_t n = eddy_recv(c->sock, buf, len);
        if (n <= 0) {
            err = n;
            break;
        }
        stream_fill(&expect, want, (size_t)n);
        if (memcmp(buf, want, (size_t)n) != 0) c->mismatch = true;
        c->sum_received = fnv1a(c->sum_received, buf, (size_t)n);
        c->received += (uint64_t)n;
    }
out:
    free(buf);
    free(want);
    return err;
}

static intptr_t connection(void *arg)
{
    struct conn *c = arg;
    struct soak *s = c->soak;
    uint64_t r = s->seed * 7 + (uint64_t)c->id;
    bool reset = s->reset_every > 0 && rng(&r) % (uint64_t)s->reset_every == 0;
    c->to_send = reset ? rng(&r) % (s->bytes + 1) : s->bytes;
    struct stream out = {.state = s->seed ^ (uint64_t)c->id};
    unsigned char *buf = malloc(CHUNK_MAX);
    eddy_task *rd = NULL;
    int err = buf ? eddy_tcp_connect(&c->sock, "127.0.0.1", s->port) : -ENOMEM;
    c->sum_sent = 0xcbf29ce484222325ull;
    if (err == 0 && !(rd = eddy_spawn(NULL, reader, c))) err = -ENOMEM;
    for (uint64_t sent = 0; err == 0 && sent < c->to_send;) {
        size_t len = 1 + rng(&r) % CHUNK_MAX;
        if (len > c->to_send - sent) len = (size_t)(c->to_send - sent);
        stream_fill(&out, buf, len);
        c->sum_sent = fnv1a(c->sum_sent, buf, len);
        ssize_t n = eddy_send(c->sock, buf, len);
        if (n < 0) err = (int)n;
        sent += len;
    }
    intptr_t rerr = 0;
    if (reset && c->sock) {
        struct linger lg = {.l_onoff = 1, .l_linger = 0};
        setsockopt((int)eddy_sock_fd(c->sock), SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
        if (rd) eddy_task_cancel(rd);
        if (rd) eddy_task_join(rd, NULL);
        eddy_sock_close(c->sock);
        s->reset++;
    } else {
        if (err == 0) err = eddy_sock_shutdown(c->sock, EDDY_SHUT_WR);
        if (err < 0 && rd) eddy_task_cancel(rd);
        if (rd) eddy_task_join(rd, &rerr);
        if (c->sock) eddy_sock_close(c->sock);
        if (err == 0 && rerr == 0 && !c->mismatch && c->received == s->bytes &&
            c->sum_received == c->sum_sent) {
            s->ok++;
            s->moved += s->bytes;
        } else {
            if (s->failed++ < 10)
                fprintf(stderr,
                        "soak: connection %ld: %s%s, %llu of %llu bytes back, checksums %s\n",
                        c->id, eddy_strerror(err ? err : (int)rerr),
                        c->mismatch ? ", bytes differ" : "", (unsigned long long)c->received,
                        (unsigned long long)s->bytes,
                        c->sum_received == c->sum_sent ? "equal" : "differ");
        }
    }
    free(buf);
    free(c);
    s->live--;
    if (s->slot && !eddy_future_done(s->slot)) (void)eddy_future_set_result(s->slot, 0);
    return 0;
}

static intptr_t soak_main(void *arg)
{
    struct soak *s = arg;
    while (s->next < s->conns || s->live > 0) {
        while (s->next < s->conns && s->live < s->concurrency) {
            struct conn *c = calloc(1, sizeof(*c));
            eddy_task *t = c ? eddy_spawn(NULL, connection, c) : NULL;
            if (!t) {
                free(c);
                return -ENOMEM;
            }
            c->soak = s;
            c->id = s->next++;
            s->live++;
            eddy_task_detach(t);
        }
        /* wait until a connection ends */
        if (!(s->slot = eddy_future_new(NULL))) return -ENOMEM;
        int err = eddy_await(s->slot, NULL);
        eddy_future_unref(s->slot);
        s->slot = NULL;
        if (err < 0) return err;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: %s PORT CONNS BYTES [CONCURRENCY [RESET_EVERY [SEED]]]\n", argv[0]);
        return 2;
    }
    struct soak s = {
        .port = (uint16_t)strtoul(argv[1], NULL, 10),
        .conns = strtol(argv[2], NULL, 10),
        .bytes = strtoull(argv[3], NULL, 10),
        .concurrency = argc > 4 ? strtol(argv[4], NULL, 10) : 100,
        .reset_every = argc > 5 ? strtol(argv[5], NULL, 10) : 16,
        .seed = argc > 6 ? strtoull(argv[6], NULL, 10) : 1,
    };
    if (s.port == 0 || s.conns < 0 || s.concurrency <= 0 || s.reset_every < 0) {
        fprintf(stderr, "soak: bad arguments\n");
        return 2;
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    intptr_t result = 0;
    int err = eddy_run(soak_main, &s, &result);
    if (err == 0) err = (int)result;
    printf("soak: %ld connections x %llu bytes: %ld intact, %ld reset, %ld failed; %.1f MiB "
           "echoed and compared\n",
           s.conns, (unsigned long long)s.bytes, s.ok, s.reset, s.failed,
           (double)s.moved / (1024 * 1024));
    if (err < 0) fprintf(stderr, "soak: %s\n", eddy_strerror(err));
    return err < 0 || s.failed || s.ok + s.reset != s.conns ? 1 : 0;
}
