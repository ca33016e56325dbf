/* SPDX-License-Identifier: MIT */
/* echo-client: sends messages to an echo server and checks every byte that
 * comes back.
 *
 *   echo-client [host [port [count [size]]]]
 *
 * Defaults: 127.0.0.1, port 7000, 1000 messages of 64 bytes. host may be a
 * name ("localhost"): it is resolved in eddy's thread pool. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eddy.h"

struct client {
    const char *host;
    unsigned port;
    long count;
    size_t size;
};

/* Message i: bytes that differ from one message to the next. */
static void fill(unsigned char *msg, size_t size, long i)
{
    for (size_t j = 0; j < size; j++)
        msg[j] = (unsigned char)('a' + (i + (long)j) % 26);
}

/* Reads exactly len bytes: 0, 1 when the server closed early, or an error. */
static int recv_all(eddy_sock *s, unsigned char *buf, size_t len)
{
    for (size_t got = 0; got < len;) {
        ssize_t n = eddy_recv(s, buf + got, len - got);
        if (n <= 0) return n < 0 ? (int)n : 1;
        got += (size_t)n;
    }
    return 0;
}

static intptr_t client_main(void *arg)
{
    struct client *c = arg;
    eddy_loop *loop = eddy_loop_current();
    eddy_sock *s;
    int err = eddy_tcp_connect(&s, c->host, (uint16_t)c->port);
    if (err < 0) {
        fprintf(stderr, "echo-client: connect to %s:%u: %s\n", c->host, c->port,
                eddy_strerror(err));
        return 1;
    }
    unsigned char *msg = malloc(c->size), *echo = malloc(c->size);
    if (!msg || !echo) {
        free(msg);
        free(echo);
        eddy_sock_close(s);
        fprintf(stderr, "echo-client: out of memory\n");
        return 1;
    }
    int64_t start = eddy_now(loop);
    long i;
    for (i = 0; i < c->count; i++) {
        fill(msg, c->size, i);
        ssize_t n = eddy_send(s, msg, c->size);
        if (n < 0) {
            fprintf(stderr, "echo-client: send: %s\n", eddy_strerror((int)n));
            break;
        }
        int r = recv_all(s, echo, c->size);
        if (r != 0) {
            fprintf(stderr, "echo-client: recv: %s\n",
                    r == 1 ? "server closed the connection" : eddy_strerror(r));
            break;
        }
        if (memcmp(msg, echo, c->size) != 0) {
            fprintf(stderr, "echo-client: message %ld came back different\n", i);
            break;
        }
    }
    int64_t elapsed = eddy_now(loop) - start;
    eddy_sock_close(s);
    free(msg);
    free(echo);
    if (i < c->count) return 1;
    printf(
        "echo-client: %ld messages of %zu bytes to %s:%u echoed intact in %.1f ms (backend %s)\n",
        c->count, c->size, c->host, c->port, (double)elapsed / 1e6, eddy_loop_backend(loop));
    return 0;
}

int main(int argc, char **argv)
{
    struct client c = {.host = "127.0.0.1", .port = 7000, .count = 1000, .size = 64};
    if (argc > 1) c.host = argv[1];
    if (argc > 2) c.port = (unsigned)strtoul(argv[2], NULL, 10);
    if (argc > 3) c.count = strtol(argv[3], NULL, 10);
    if (argc > 4) c.size = (size_t)strtoul(argv[4], NULL, 10);
    if (c.port == 0 || c.port > 65535 || c.count < 0 || c.size == 0) {
        fprintf(stderr, "usage: %s [host [port [count [size]]]]\n", argv[0]);
        return 2;
    }
    intptr_t failed = 1;
    int err = eddy_run(client_main, &c, &failed);
    if (err < 0) fprintf(stderr, "echo-client: %s\n", eddy_strerror(err));
    return err < 0 || failed ? 1 : 0;
}
