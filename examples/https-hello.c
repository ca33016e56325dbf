/* SPDX-License-Identifier: MIT */
/* An HTTPS hello server on streams and TLS: each connection is a stream, the
 * handshake is eddy_stream_start_tls, and the requests (keep-alive) are read
 * with eddy_stream_readuntil. Answers every request with "Hello, World!".
 *
 *     https-hello CERT KEY [PORT]          (PORT: 8443; 0 picks one, printed)
 *     curl --cacert ca.pem https://localhost:8443/
 *
 * docs/tls.md makes a CA and a certificate for localhost with the openssl
 * command. tests/test_tls.c includes this file with HTTPS_HELLO_NO_MAIN and
 * runs curl against it. */
#include <eddy.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HEAD_MAX     8192
#define HANDSHAKE_NS (10 * 1000000000LL) /* a client that never finishes its handshake */

static const char HTTPS_HELLO_RESPONSE[] = "HTTP/1.1 200 OK\r\n"
                                           "Content-Type: text/plain\r\n"
                                           "Content-Length: 13\r\n"
                                           "\r\n"
                                           "Hello, World!";

/* What every connection is given. */
struct https_hello {
    const char *cert_file, *key_file;
    long served; /* requests answered */
};

/* Whether the request head asks to close the connection after the answer. */
static bool https_wants_close(const char *head, size_t len)
{
    static const char close_header[] = "\r\nconnection: close";
    for (size_t i = 0; i + sizeof close_header - 1 <= len; i++) {
        size_t k = 0;
        while (k < sizeof close_header - 1) {
            char c = head[i + k];
            if (c >= 'A' && c <= 'Z') c = (char)(c - 'A' + 'a');
            if (c != close_header[k]) break;
            k++;
        }
        if (k == sizeof close_header - 1) return true;
    }
    return false;
}

/* One connection: the handshake (bounded), then requests until the client
 * closes or asks to. The server closes the stream when this returns. */
static intptr_t https_hello_connection(eddy_stream *st, void *arg)
{
    struct https_hello *h = arg;
    eddy_tls_options tls =
        EDDY_TLS_OPTIONS_INIT(.server = true, .cert_file = h->cert_file, .key_file = h->key_file);
    const char *alpn[] = {"http/1.1", NULL};
    tls.alpn = alpn;
    eddy_timeout scope;
    if (eddy_timeout_begin(&scope, HANDSHAKE_NS) < 0) return -1;
    int err = eddy_stream_start_tls(st, &tls);
    int end = eddy_timeout_end(&scope);
    if (err < 0 || end < 0) return err < 0 ? err : end;
    char head[HEAD_MAX];
    for (;;) {
        ssize_t n = eddy_stream_readuntil(st, "\r\n\r\n", 4, head, sizeof head);
        if (n < 0) return n == -EPIPE ? 0 : (intptr_t)n; /* EOF between requests: done */
        if (eddy_stream_write(st, HTTPS_HELLO_RESPONSE, sizeof HTTPS_HELLO_RESPONSE - 1) < 0 ||
            eddy_stream_drain(st) < 0)
            return -1;
        h->served++;
        if (https_wants_close(head, (size_t)n)) return eddy_stream_write_eof(st);
    }
}

#ifndef HTTPS_HELLO_NO_MAIN
struct https_main {
    struct https_hello hello;
    uint16_t port;
};

static intptr_t https_main_task(void *arg)
{
    struct https_main *m = arg;
    eddy_sock *listener;
    int err = eddy_tcp_listen(&listener, "0.0.0.0", m->port, 0);
    if (err < 0) {
        fprintf(stderr, "https-hello: listen on %u: %s\n", m->port, eddy_strerror(err));
        return 1;
    }
    printf("https-hello: https://localhost:%d/\n", eddy_sock_port(listener));
    fflush(stdout);
    eddy_server *srv;
    if ((err = eddy_serve(&srv, listener, https_hello_connection, &m->hello)) == 0)
        err = eddy_server_wait(srv);
    if (err < 0) fprintf(stderr, "https-hello: %s\n", eddy_strerror(err));
    return err < 0;
}

int main(int argc, char **argv)
{
    if (argc < 3 || argc > 4) {
        fprintf(stderr, "usage: %s CERT KEY [PORT]\n", argv[0]);
        return 2;
    }
    struct https_main m = {.hello = {.cert_file = argv[1], .key_file = argv[2]}, .port = 8443};
    if (argc == 4) m.port = (uint16_t)atoi(argv[3]);
    const char *backend = NULL;
    if (eddy_backends(&backend, 1) == 0 ||
        eddy_backend_supports(backend, EDDY_CAP_TLS) == EDDY_NONE) {
        fprintf(stderr, "https-hello: this eddy was built without TLS (--without-openssl)\n");
        return 1;
    }
    intptr_t result = 1;
    int err = eddy_run(https_main_task, &m, &result);
    if (err < 0) fprintf(stderr, "https-hello: %s\n", eddy_strerror(err));
    return err < 0 ? 1 : (int)result;
}
#endif
