/* SPDX-License-Identifier: MIT */
/* bench/tls-echo: the TLS echo of `make bench` (bench/bench.sh, "tls").
 *
 *   tls-echo server PORT CERT KEY        an echo server on eddy streams + TLS
 *   tls-echo load PORT CA SIZE SECONDS   one client: SIZE-byte lines, one in flight
 *
 * The server: eddy_serve, and per connection start_tls, then read, write,
 * drain. The load: one TLS connection (eddy too) sending a line of SIZE bytes
 * ('a's and a newline) and reading SIZE bytes back, for SECONDS after 0.5 s
 * of warm-up; it prints "messages/s bytes" for the timed part. Its peer may
 * be `openssl s_server -rev`, which answers each line reversed (the same
 * bytes here), in pieces of at most 16 KiB. EDDY_BACKEND picks the backend. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eddy.h"

#include "bench.h"

static const char *cert_file, *key_file, *ca_file;

static intptr_t echo(eddy_stream *st, void *arg)
{
    (void)arg;
    eddy_tls_options o =
        EDDY_TLS_OPTIONS_INIT(.server = true, .cert_file = cert_file, .key_file = key_file);
    if (eddy_stream_start_tls(st, &o) < 0) return 0;
    static char buf[64 * 1024];
    ssize_t n;
    while ((n = eddy_stream_read(st, buf, sizeof buf)) > 0)
        if (eddy_stream_write(st, buf, (size_t)n) < 0 || eddy_stream_drain(st) < 0) break;
    return 0;
}

static intptr_t server_main(void *arg)
{
    eddy_sock *listener;
    int err = eddy_tcp_listen(&listener, "127.0.0.1", (uint16_t)(uintptr_t)arg, 0);
    if (err < 0) {
        fprintf(stderr, "tls-echo: listen: %s\n", eddy_strerror(err));
        return err;
    }
    eddy_server *srv;
    if ((err = eddy_serve(&srv, listener, echo, NULL)) < 0) return err;
    return eddy_server_wait(srv);
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

struct load {
    uint16_t port;
    size_t size;
    double seconds;
};

static intptr_t load_main(void *arg)
{
    struct load *l = arg;
    eddy_stream *st = NULL;
    int err = -1;
    for (int i = 0; i < 100 && err < 0; i++) /* until the server listens */
        if ((err = eddy_open_connection(&st, "127.0.0.1", l->port, NULL)) < 0)
            (void)eddy_sleep(20 * 1000000LL);
    eddy_tls_options o = EDDY_TLS_OPTIONS_INIT(.server_name = "localhost", .ca_file = ca_file);
    if (err == 0) err = eddy_stream_start_tls(st, &o);
    if (err < 0) {
        fprintf(stderr, "tls-echo: connect: %s\n", eddy_strerror(err));
        return err;
    }
    char *msg = malloc(l->size), *back = malloc(l->size);
    memset(msg, 'a', l->size);
    msg[l->size - 1] = '\n';
    int64_t start = now_ns(), timed = start + 500000000LL;
    int64_t end = timed + (int64_t)(l->seconds * 1e9);
    long messages = 0;
    for (int64_t now = start; now < end; now = now_ns()) {
        if ((err = eddy_stream_write(st, msg, l->size)) < 0 ||
            (err = (int)eddy_stream_readexactly(st, back, l->size)) < 0)
            break;
        if (now >= timed) messages++;
    }
    if (err >= 0) printf("%.0f %.0f\n", messages / l->seconds, (double)messages * (double)l->size);
    (void)eddy_stream_close(st);
    free(msg);
    free(back);
    return err < 0 ? err : 0;
}

int main(int argc, char **argv)
{
    intptr_t result = 0;
    int err;
    if (argc == 5 && strcmp(argv[1], "server") == 0) {
        cert_file = argv[3];
        key_file = argv[4];
        err = eddy_run(server_main, (void *)(uintptr_t)atoi(argv[2]), &result);
    } else if (argc == 6 && strcmp(argv[1], "load") == 0) {
        ca_file = argv[3];
        struct load l = {(uint16_t)atoi(argv[2]), (size_t)atol(argv[4]), atof(argv[5])};
        if (l.size < 2) return 2;
        err = eddy_run(load_main, &l, &result);
    } else {
        fprintf(stderr, "usage: %s server PORT CERT KEY\n       %s load PORT CA SIZE SECONDS\n",
                argv[0], argv[0]);
        return 2;
    }
    if (err < 0) fprintf(stderr, "tls-echo: %s\n", eddy_strerror(err));
    return err < 0 || result != 0 ? 1 : 0;
}
