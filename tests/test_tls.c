/* SPDX-License-Identifier: MIT */
/* TLS on streams (lib/tls.c), with certificates made at test time by the
 * openssl command (a CA, a server certificate for localhost and 127.0.0.1, an
 * expired one, a client certificate): eddy to eddy (1 MiB echoed in random
 * pieces), ALPN, SNI, a wrong name, an expired certificate, insecure, client
 * certificates, resumption, garbage, truncation, a handshake under a timeout
 * scope and cancelled, and real peers: openssl s_server, openssl s_client and
 * curl against examples/https-hello.c. Skipped without OpenSSL in the build. */
#define HTTPS_HELLO_NO_MAIN
#include "../examples/https-hello.c"

#include "helpers.h"

#ifndef _WIN32
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

/* Internal, linked statically: whether a handshake resumed a session, and the
 * name a client asked a server for (SNI). */
bool eddy__tls_session_reused(const eddy_stream *st);
const char *eddy__tls_server_name(const eddy_stream *st);

static char dir[128]; /* the certificates */
static char ca[200], server_cert[200], server_key[200], expired_cert[200], client_cert[200],
    client_key[200];

static const char make_certs[] =
    "set -e; cd '%s'\n"
    "K='-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes'\n"
    "openssl req -x509 $K -keyout ca.key -out ca.pem -days 30 -subj /CN=eddy-test-ca\n"
    "openssl req $K -keyout server.key -out server.csr -subj /CN=localhost\n"
    "printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\n' >san.ext\n"
    "openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 "
    "  -extfile san.ext -out server.pem\n"
    "touch index.txt; echo 1000 >serial\n"
    "printf '[ca]\\ndefault_ca=d\\n[d]\\ndatabase=index.txt\\nnew_certs_dir=.\\nserial=serial\\n"
    "default_md=sha256\\npolicy=p\\n[p]\\ncommonName=supplied\\n' >ca.cnf\n"
    "openssl ca -batch -config ca.cnf -cert ca.pem -keyfile ca.key -in server.csr -notext "
    "  -startdate 20200101000000Z -enddate 20200201000000Z -extfile san.ext -out expired.pem\n"
    "openssl req $K -keyout client.key -out client.csr -subj /CN=eddy-client\n"
    "openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 "
    "  -out client.pem\n";

/* Makes the certificates (once per test process), or skips. */
static void certs(void)
{
    if (eddy_backend_supports("epoll", EDDY_CAP_TLS) == EDDY_NONE)
        cr_skip_test("built without OpenSSL (--without-openssl)");
    if (system("openssl version >/dev/null 2>&1") != 0) cr_skip_test("no openssl command here");
    if (dir[0]) return;
    temp_dir_make(dir, sizeof dir, "eddy-tls");
    char cmd[4096];
    snprintf(cmd, sizeof cmd, make_certs, dir);
    char full[4200];
    snprintf(full, sizeof full, "( %s ) >/dev/null 2>&1", cmd);
    cr_assert(eq(int, system(full), 0), "making the certificates failed");
    snprintf(ca, sizeof ca, "%s/ca.pem", dir);
    snprintf(server_cert, sizeof server_cert, "%s/server.pem", dir);
    snprintf(server_key, sizeof server_key, "%s/server.key", dir);
    snprintf(expired_cert, sizeof expired_cert, "%s/expired.pem", dir);
    snprintf(client_cert, sizeof client_cert, "%s/client.pem", dir);
    snprintf(client_key, sizeof client_key, "%s/client.key", dir);
}

static void certs_remove(void)
{
    if (dir[0]) temp_dir_remove(dir);
    dir[0] = '\0';
}

/* ---- an eddy client and an eddy server ------------------------------------------- */

/* One connection's two ends: the server's stream runs start_tls with
 * server options in a task of its own, the client's in the test's task. */
struct tls_pair {
    eddy_tls_options server, client;
    eddy_stream *s, *c;
    eddy_sock *server_sock; /* the server's socket, under its stream */
    int server_err, client_err;
    eddy_task *server_task;
};

static intptr_t server_handshake(void *arg)
{
    struct tls_pair *p = arg;
    p->server_err = eddy_stream_start_tls(p->s, &p->server);
    return 0;
}

/* Connects over loopback (listener given: to reuse a port) and runs both
 * handshakes; their results in server_err and client_err. */
static void tls_pair_open(struct tls_pair *p, eddy_sock *listener)
{
    eddy_sock *a, *b;
    cr_assert(eq(int, eddy_tcp_connect(&a, "127.0.0.1", (uint16_t)eddy_sock_port(listener)), 0));
    cr_assert(eq(int, eddy_accept(listener, &b), 0));
    p->server_sock = b;
    cr_assert(eq(int, eddy_stream_open(&p->s, b, NULL), 0));
    cr_assert(eq(int, eddy_stream_open(&p->c, a, NULL), 0));
    p->server_task = eddy_spawn(NULL, server_handshake, p);
    cr_assert(ne(ptr, p->server_task, NULL));
    p->client_err = eddy_stream_start_tls(p->c, &p->client);
    cr_assert(eq(int, eddy_task_join(p->server_task, NULL), 0));
}

static void tls_pair_close(struct tls_pair *p)
{
    (void)eddy_stream_close(p->c);
    (void)eddy_stream_close(p->s);
}

static eddy_tls_options server_options(void)
{
    return (eddy_tls_options)EDDY_TLS_OPTIONS_INIT(.server = true, .cert_file = server_cert,
                                                   .key_file = server_key);
}

static eddy_tls_options client_options(void)
{
    return (eddy_tls_options)EDDY_TLS_OPTIONS_INIT(.server_name = "localhost", .ca_file = ca);
}

/* ---- echo: 1 MiB in random pieces -------------------------------------------------------- */

static uint32_t next_random(uint32_t *state)
{
    uint32_t x = *state;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return *state = x;
}

#define ECHO_LEN (1024 * 1024)

static intptr_t echo_server(void *arg)
{
    eddy_stream *st = arg;
    char buf[20000];
    ssize_t n;
    while ((n = eddy_stream_read(st, buf, sizeof buf)) > 0) {
        cr_assert(eq(int, eddy_stream_write(st, buf, (size_t)n), 0));
        cr_assert(eq(int, eddy_stream_drain(st), 0));
    }
    cr_assert(eq(long, (long)n, 0L), "server read: %s", eddy_strerror((int)n));
    cr_assert(eq(int, eddy_stream_write_eof(st), 0));
    return 0;
}

struct writer {
    eddy_stream *st;
    const char *data;
};

static intptr_t random_writer(void *arg)
{
    struct writer *w = arg;
    uint32_t seed = 12345;
    for (size_t off = 0; off < ECHO_LEN;) {
        size_t n = 1 + next_random(&seed) % 40000;
        if (n > ECHO_LEN - off) n = ECHO_LEN - off;
        cr_assert(eq(int, eddy_stream_write(w->st, w->data + off, n), 0));
        if (next_random(&seed) % 2) cr_assert(eq(int, eddy_stream_drain(w->st), 0));
        off += n;
    }
    cr_assert(eq(int, eddy_stream_write_eof(w->st), 0));
    return 0;
}

/* Echoes 1 MiB through st's peer and checks every byte. */
static void echo_check(eddy_stream *c)
{
    char *data = malloc(ECHO_LEN), *back = malloc(ECHO_LEN);
    cr_assert(data && back);
    uint32_t seed = 777;
    for (size_t i = 0; i < ECHO_LEN; i++)
        data[i] = (char)next_random(&seed);
    struct writer w = {c, data};
    eddy_task *wt = eddy_spawn(NULL, random_writer, &w);
    cr_assert(eq(long, (long)eddy_stream_readexactly(c, back, ECHO_LEN), (long)ECHO_LEN));
    cr_assert(eq(int, memcmp(data, back, ECHO_LEN), 0));
    char extra;
    cr_assert(eq(long, (long)eddy_stream_read(c, &extra, 1), 0L), "close_notify: EOF");
    cr_assert(eq(int, eddy_task_join(wt, NULL), 0));
    free(data);
    free(back);
}

static intptr_t echo_main(void *arg)
{
    (void)arg;
    eddy_sock *listener;
    cr_assert(eq(int, eddy_tcp_listen(&listener, "127.0.0.1", 0, 0), 0));
    struct tls_pair p = {.server = server_options(), .client = client_options()};
    tls_pair_open(&p, listener);
    cr_assert(eq(int, p.server_err, 0), "server: %s", eddy_strerror(p.server_err));
    cr_assert(eq(int, p.client_err, 0), "client: %s", eddy_strerror(p.client_err));
    cr_assert(eq(str, (char *)eddy__tls_server_name(p.s), "localhost"), "SNI seen by the server");
    cr_assert(eq(ptr, (void *)eddy_stream_alpn(p.c), NULL));
    eddy_task *st = eddy_spawn(NULL, echo_server, p.s);
    echo_check(p.c);
    cr_assert(eq(int, eddy_task_join(st, NULL), 0));
    tls_pair_close(&p);
    cr_assert(eq(int, eddy_sock_close(listener), 0));
    return 0;
}

Test(tls, echo_1mib_in_random_pieces_with_sni, .timeout = TEST_TIMEOUT)
{
    certs();
    cr_assert(eq(int, run_main(echo_main, NULL), 0));
    certs_remove();
}

/* ---- STARTTLS over bytes lent from io_uring's buffer ring ------------------------------ */

/* The client's stream reaches the server's through a relay, which puts the
 * STARTTLS line and the client's hello into one send: the server's
 * readline then leaves the hello buffered behind the line, in the same
 * piece of the ring on io_uring (lent: the server's socket was read twice
 * before, so its multishot serves it), and its start_tls takes it from
 * there. */
struct relay {
    eddy_sock *from, *to;
    bool starttls; /* the first bytes go behind a STARTTLS line */
};

static intptr_t relay_run(void *arg)
{
    struct relay *r = arg;
    char buf[16384 + 9];
    ssize_t n;
    size_t head = 0;
    if (r->starttls) {
        memcpy(buf, "STARTTLS\n", 9);
        head = 9;
    }
    while ((n = eddy_recv(r->from, buf + head, sizeof buf - head)) > 0) {
        cr_assert(eq(long, (long)eddy_send(r->to, buf, head + (size_t)n), (long)(head + n)));
        head = 0;
    }
    cr_assert(eq(long, (long)n, 0L), "relay: %s", eddy_strerror((int)n));
    cr_assert(eq(int, eddy_sock_shutdown(r->to, EDDY_SHUT_WR), 0));
    return 0;
}

static intptr_t starttls_server(void *arg)
{
    struct tls_pair *p = arg;
    char line[64];
    for (int i = 0; i < 2; i++)
        cr_assert(eq(long, (long)eddy_stream_readline(p->s, line, sizeof line), 6L));
    cr_assert(eq(long, (long)eddy_stream_readline(p->s, line, sizeof line), 9L));
    cr_assert(eq(int, memcmp(line, "STARTTLS\n", 9), 0));
    p->server_err = eddy_stream_start_tls(p->s, &p->server);
    return 0;
}

static void tcp_pair(eddy_sock *listener, eddy_sock **a, eddy_sock **b)
{
    cr_assert(eq(int, eddy_tcp_connect(a, "127.0.0.1", (uint16_t)eddy_sock_port(listener)), 0));
    cr_assert(eq(int, eddy_accept(listener, b), 0));
}

static intptr_t starttls_main(void *arg)
{
    (void)arg;
    eddy_sock *listener, *c, *relay_c, *relay_s, *s;
    cr_assert(eq(int, eddy_tcp_listen(&listener, "127.0.0.1", 0, 0), 0));
    tcp_pair(listener, &c, &relay_c);
    tcp_pair(listener, &relay_s, &s);
    struct tls_pair p = {.server = server_options(), .client = client_options()};
    cr_assert(eq(int, eddy_stream_open(&p.s, s, NULL), 0));
    cr_assert(eq(int, eddy_stream_open(&p.c, c, NULL), 0));
    p.server_task = eddy_spawn(NULL, starttls_server, &p);
    for (int i = 0; i < 2; i++) {
        cr_assert(eq(long, (long)eddy_send(relay_s, "clear\n", 6), 6L));
        cr_assert(eq(int, eddy_sleep(NS_PER_MS), 0)); /* one read each */
    }
    struct relay up = {relay_c, relay_s, true}, down = {relay_s, relay_c, false};
    eddy_task *relays[2] = {eddy_spawn(NULL, relay_run, &up), eddy_spawn(NULL, relay_run, &down)};
    p.client_err = eddy_stream_start_tls(p.c, &p.client);
    cr_assert(eq(int, eddy_task_join(p.server_task, NULL), 0));
    cr_assert(eq(int, p.server_err, 0), "server: %s", eddy_strerror(p.server_err));
    cr_assert(eq(int, p.client_err, 0), "client: %s", eddy_strerror(p.client_err));
    eddy_task *st = eddy_spawn(NULL, echo_server, p.s);
    echo_check(p.c);
    cr_assert(eq(int, eddy_task_join(st, NULL), 0));
    tls_pair_close(&p);
    for (int i = 0; i < 2; i++)
        cr_assert(eq(int, eddy_task_join(relays[i], NULL), 0));
    cr_assert(eq(int, eddy_sock_close(relay_c), 0));
    cr_assert(eq(int, eddy_sock_close(relay_s), 0));
    cr_assert(eq(int, eddy_sock_close(listener), 0));
    return 0;
}

Test(tls, starttls_over_bytes_lent_from_the_ring, .timeout = TEST_TIMEOUT)
{
    certs();
    /* a small ring; on io_uring also with bundles, incremental consumption
     * and the ring itself forced off */
    static const char *const modes[] = {"", "recv_bundle,buffer_ring_incremental", "buffer_ring"};
    eddy_loop *loop = new_loop();
    size_t n = strcmp(eddy_loop_backend(loop), "io_uring") == 0 ? 3 : 1;
    eddy_loop_free(loop);
    setenv("EDDY_URING_BUF_RING", "16x4096", 1);
    for (size_t m = 0; m < n; m++) {
        setenv("EDDY_CAPS_DISABLE", modes[m], 1);
        cr_assert(eq(int, run_main(starttls_main, NULL), 0), "mode \"%s\"", modes[m]);
    }
    unsetenv("EDDY_CAPS_DISABLE");
    unsetenv("EDDY_URING_BUF_RING");
    certs_remove();
}

/* ---- handshake outcomes -------------------------------------------------------------- */

struct outcome {
    eddy_tls_options server, client;
    int server_err, client_err;
    char *server_alpn, *client_alpn; /* copies */
    bool exchange;                   /* after the handshake: a line each way */
    int client_read_err;             /* what the client's first read gives */
};

static intptr_t outcome_main(void *arg)
{
    struct outcome *o = arg;
    eddy_sock *listener;
    cr_assert(eq(int, eddy_tcp_listen(&listener, "127.0.0.1", 0, 0), 0));
    struct tls_pair p = {.server = o->server, .client = o->client};
    tls_pair_open(&p, listener);
    o->server_err = p.server_err;
    o->client_err = p.client_err;
    if (p.server_err == 0 && p.client_err == 0) {
        o->server_alpn = eddy_stream_alpn(p.s) ? strdup(eddy_stream_alpn(p.s)) : NULL;
        o->client_alpn = eddy_stream_alpn(p.c) ? strdup(eddy_stream_alpn(p.c)) : NULL;
        cr_assert(eq(int, eddy_stream_write(p.s, "hi\n", 3), 0));
        cr_assert(eq(int, eddy_stream_drain(p.s), 0));
        char line[16];
        ssize_t n = eddy_stream_readline(p.c, line, sizeof line);
        o->client_read_err = n < 0 ? (int)n : 0;
        if (n > 0) cr_assert(eq(int, memcmp(line, "hi\n", 3), 0));
    } else if (p.client_err == 0) { /* TLS 1.3: the server's verdict comes after */
        char line[16];
        ssize_t n = eddy_stream_readline(p.c, line, sizeof line);
        o->client_read_err = n < 0 ? (int)n : 0;
        cr_assert(eq(int, eddy_stream_write(p.c, "x", 1), 0)); /* buffered */
        cr_assert(eq(int, eddy_stream_drain(p.c), o->client_read_err), "the failure is sticky");
    } else {
        char c;
        cr_assert(eq(long, (long)eddy_stream_read(p.c, &c, 1), (long)p.client_err),
                  "a failed handshake is sticky");
    }
    tls_pair_close(&p);
    cr_assert(eq(int, eddy_sock_close(listener), 0));
    return 0;
}

Test(tls, alpn_agreed_and_none, .timeout = TEST_TIMEOUT)
{
    certs();
    const char *server_protos[] = {"h2", "http/1.1", NULL};
    const char *client_protos[] = {"http/1.1", NULL};
    struct outcome o = {.server = server_options(), .client = client_options()};
    o.server.alpn = server_protos;
    o.client.alpn = client_protos;
    cr_assert(eq(int, run_main(outcome_main, &o), 0));
    cr_assert(eq(int, o.server_err, 0));
    cr_assert(eq(int, o.client_err, 0));
    cr_assert(eq(str, o.server_alpn, "http/1.1"));
    cr_assert(eq(str, o.client_alpn, "http/1.1"));
    free(o.server_alpn);
    free(o.client_alpn);

    struct outcome none = {.server = server_options(), .client = client_options()};
    none.server.alpn = server_protos; /* the client offers none */
    cr_assert(eq(int, run_main(outcome_main, &none), 0));
    cr_assert(eq(int, none.client_err, 0));
    cr_assert(eq(ptr, (void *)none.client_alpn, NULL));
    cr_assert(eq(ptr, (void *)none.server_alpn, NULL));

    const char *other[] = {"spdy/1", NULL};
    struct outcome mismatch = {.server = server_options(), .client = client_options()};
    mismatch.server.alpn = server_protos;
    mismatch.client.alpn = other;
    cr_assert(eq(int, run_main(outcome_main, &mismatch), 0));
    cr_assert(eq(int, mismatch.server_err, -EPROTO));
    cr_assert(eq(int, mismatch.client_err, -EPROTO));
    certs_remove();
}

Test(tls, wrong_host_name_refused, .timeout = TEST_TIMEOUT)
{
    certs();
    struct outcome o = {.server = server_options(), .client = client_options()};
    o.client.server_name = "not-localhost.example";
    cr_assert(eq(int, run_main(outcome_main, &o), 0));
    cr_assert(eq(int, o.client_err, -EACCES));
    cr_assert(lt(int, o.server_err, 0));
    /* an address is checked against the certificate's IP names */
    struct outcome ip = {.server = server_options(), .client = client_options()};
    ip.client.server_name = "127.0.0.1";
    cr_assert(eq(int, run_main(outcome_main, &ip), 0));
    cr_assert(eq(int, ip.client_err, 0));
    struct outcome other_ip = {.server = server_options(), .client = client_options()};
    other_ip.client.server_name = "127.0.0.2";
    cr_assert(eq(int, run_main(outcome_main, &other_ip), 0));
    cr_assert(eq(int, other_ip.client_err, -EACCES));
    certs_remove();
}

Test(tls, expired_certificate_refused_unless_insecure, .timeout = TEST_TIMEOUT)
{
    certs();
    struct outcome o = {.server = server_options(), .client = client_options()};
    o.server.cert_file = expired_cert;
    cr_assert(eq(int, run_main(outcome_main, &o), 0));
    cr_assert(eq(int, o.client_err, -EACCES));
    cr_assert(lt(int, o.server_err, 0));

    struct outcome insecure = {.server = server_options(), .client = client_options()};
    insecure.server.cert_file = expired_cert;
    insecure.client.insecure = true;
    insecure.client.ca_file = NULL; /* nor the CA */
    cr_assert(eq(int, run_main(outcome_main, &insecure), 0));
    cr_assert(eq(int, insecure.client_err, 0));
    cr_assert(eq(int, insecure.server_err, 0));
    cr_assert(eq(int, insecure.client_read_err, 0));

    /* the system's trust store does not know the test's CA */
    struct outcome system_store = {.server = server_options(), .client = client_options()};
    system_store.client.ca_file = NULL;
    cr_assert(eq(int, run_main(outcome_main, &system_store), 0));
    cr_assert(eq(int, system_store.client_err, -EACCES));
    certs_remove();
}

Test(tls, client_certificate_required_and_presented, .timeout = TEST_TIMEOUT)
{
    certs();
    struct outcome missing = {.server = server_options(), .client = client_options()};
    missing.server.ca_file = ca;
    cr_assert(eq(int, run_main(outcome_main, &missing), 0));
    cr_assert(eq(int, missing.server_err, -EACCES));
    cr_assert(eq(int, missing.client_err ? missing.client_err : missing.client_read_err, -EACCES));

    struct outcome presented = {.server = server_options(), .client = client_options()};
    presented.server.ca_file = ca;
    presented.client.cert_file = client_cert;
    presented.client.key_file = client_key;
    cr_assert(eq(int, run_main(outcome_main, &presented), 0));
    cr_assert(eq(int, presented.server_err, 0));
    cr_assert(eq(int, presented.client_err, 0));
    cr_assert(eq(int, presented.client_read_err, 0));
    certs_remove();
}

/* Two connections to one server: the second resumes the first's session. */
static intptr_t resume_main(void *arg)
{
    (void)arg;
    eddy_sock *listener;
    cr_assert(eq(int, eddy_tcp_listen(&listener, "127.0.0.1", 0, 0), 0));
    for (int i = 0; i < 2; i++) {
        struct tls_pair p = {.server = server_options(), .client = client_options()};
        tls_pair_open(&p, listener);
        cr_assert(eq(int, p.server_err, 0));
        cr_assert(eq(int, p.client_err, 0));
        cr_assert(eq(int, eddy__tls_session_reused(p.c), i == 1), "connection %d", i);
        cr_assert(eq(int, eddy__tls_session_reused(p.s), i == 1), "connection %d", i);
        cr_assert(eq(int, eddy_stream_write(p.s, "x\n", 2), 0));
        cr_assert(eq(int, eddy_stream_drain(p.s), 0));
        char line[8];
        cr_assert(eq(long, (long)eddy_stream_readline(p.c, line, sizeof line), 2L));
        tls_pair_close(&p);
    }
    cr_assert(eq(int, eddy_sock_close(listener), 0));
    return 0;
}

Test(tls, second_connection_resumes_the_session, .timeout = TEST_TIMEOUT)
{
    certs();
    cr_assert(eq(int, run_main(resume_main, NULL), 0));
    certs_remove();
}

/* ---- a peer that is not TLS, or stops ---------------------------------------------------- */

/* A loopback TCP connection: one end a plain stream (or, server_stream, the
 * accepted end is), the other a raw socket the test drives. */
struct raw {
    eddy_stream *st;
    eddy_sock *peer;
};

static void raw_open(struct raw *r, eddy_sock *listener, bool server_stream)
{
    eddy_sock *a, *b;
    cr_assert(eq(int, eddy_tcp_connect(&a, "127.0.0.1", (uint16_t)eddy_sock_port(listener)), 0));
    cr_assert(eq(int, eddy_accept(listener, &b), 0));
    r->peer = server_stream ? a : b;
    cr_assert(eq(int, eddy_stream_open(&r->st, server_stream ? b : a, NULL), 0));
}

static void raw_close(struct raw *r)
{
    (void)eddy_stream_close(r->st);
    cr_assert(eq(int, eddy_sock_close(r->peer), 0));
}

/* Writes "plain" on r's stream: the raw peer receives it as it is. */
static void raw_still_plain(struct raw *r)
{
    cr_assert(eq(int, eddy_stream_write(r->st, "plain", 5), 0));
    cr_assert(eq(int, eddy_stream_drain(r->st), 0));
    char buf[8];
    cr_assert(eq(long, (long)eddy_recv(r->peer, buf, sizeof buf), 5L));
    cr_assert(eq(int, memcmp(buf, "plain", 5), 0));
}

/* A plain TCP peer writing junk to a TLS client, and a TLS server reading junk. */
static intptr_t garbage_main(void *arg)
{
    eddy_sock *listener = arg;
    static const char junk[] = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n";
    for (int side = 0; side < 2; side++) {
        struct raw r;
        raw_open(&r, listener, side == 1);
        cr_assert(eq(long, (long)eddy_send(r.peer, junk, sizeof junk - 1), (long)sizeof junk - 1));
        eddy_tls_options o = side == 0 ? client_options() : server_options();
        cr_assert(eq(int, eddy_stream_start_tls(r.st, &o), -EPROTO), "side %d", side);
        cr_assert(eq(int, eddy_stream_write(r.st, "x", 1), -EPROTO));
        raw_close(&r);
    }
    return 0;
}

/* The peer's TCP connection ends without close_notify: mid-handshake, and
 * after some data (a truncation). */
static intptr_t truncation_main(void *arg)
{
    eddy_sock *listener = arg;
    struct raw r;
    raw_open(&r, listener, false);
    cr_assert(eq(int, eddy_sock_shutdown(r.peer, EDDY_SHUT_WR), 0));
    eddy_tls_options o = client_options();
    int err = eddy_stream_start_tls(r.st, &o);
    cr_assert(err == -ECONNRESET || err == -EPIPE, "mid-handshake: %s", eddy_strerror(err));
    raw_close(&r);

    struct tls_pair p = {.server = server_options(), .client = client_options()};
    tls_pair_open(&p, listener);
    cr_assert(eq(int, p.client_err, 0));
    cr_assert(eq(int, eddy_stream_write(p.s, "partial", 7), 0));
    cr_assert(eq(int, eddy_stream_drain(p.s), 0));
    cr_assert(eq(int, eddy_sock_shutdown(p.server_sock, EDDY_SHUT_WR), 0)); /* no close_notify */
    char buf[16];
    cr_assert(eq(long, (long)eddy_stream_read(p.c, buf, sizeof buf), 7L));
    cr_assert(eq(long, (long)eddy_stream_read(p.c, buf, sizeof buf), (long)-ECONNRESET));
    cr_assert(eq(long, (long)eddy_stream_read(p.c, buf, sizeof buf), (long)-ECONNRESET), "sticky");
    tls_pair_close(&p);
    return 0;
}

/* A server that accepts and never answers: the client's handshake under a
 * timeout scope, cancelled from another task, and closed by another task;
 * meanwhile reads and writes are refused (-EBUSY). */
static intptr_t cancel_handshake(void *arg)
{
    eddy_stream *st = arg;
    eddy_tls_options o = client_options();
    return eddy_stream_start_tls(st, &o);
}

static intptr_t silent_main(void *arg)
{
    eddy_sock *listener = arg;
    struct raw r;
    raw_open(&r, listener, false);
    eddy_timeout scope;
    cr_assert(eq(int, eddy_timeout_begin(&scope, 50 * NS_PER_MS), 0));
    eddy_tls_options o = client_options();
    int64_t t0 = wall_ns();
    cr_assert(eq(int, eddy_stream_start_tls(r.st, &o), -ECANCELED));
    cr_assert(eq(int, eddy_timeout_end(&scope), -ETIMEDOUT));
    cr_assert(lt(i64, wall_ns() - t0, 5 * NS_PER_SEC));
    cr_assert(eq(int, eddy_stream_write(r.st, "x", 1), -ECANCELED), "the stream is unusable");
    raw_close(&r);

    for (int close_it = 0; close_it < 2; close_it++) {
        raw_open(&r, listener, false);
        eddy_task *t = eddy_spawn(NULL, cancel_handshake, r.st);
        cr_assert(eq(int, eddy_sleep(20 * NS_PER_MS), 0));
        char c;
        cr_assert(eq(int, eddy_stream_write(r.st, "x", 1), -EBUSY), "mid-handshake");
        cr_assert(eq(long, (long)eddy_stream_read(r.st, &c, 1), (long)-EBUSY), "mid-handshake");
        if (close_it)
            (void)eddy_stream_close(r.st);
        else
            eddy_task_cancel(t);
        intptr_t result = 0;
        int join = eddy_task_join(t, &result);
        cr_assert(eq(int, join < 0 ? join : (int)result, close_it ? -EBADF : -ECANCELED));
        if (close_it)
            cr_assert(eq(int, eddy_sock_close(r.peer), 0));
        else
            raw_close(&r);
    }
    return 0;
}

/* Bad options: -EINVAL, the stream untouched; missing files: -ENOENT. */
static intptr_t options_main(void *arg)
{
    struct raw r;
    raw_open(&r, arg, false);
    eddy_tls_options no_cert = EDDY_TLS_OPTIONS_INIT(.server = true);
    cr_assert(eq(int, eddy_stream_start_tls(r.st, &no_cert), -EINVAL));
    eddy_tls_options half = EDDY_TLS_OPTIONS_INIT(.cert_file = client_cert);
    cr_assert(eq(int, eddy_stream_start_tls(r.st, &half), -EINVAL));
    eddy_tls_options odd = {.size = 3};
    cr_assert(eq(int, eddy_stream_start_tls(r.st, &odd), -EINVAL));
    eddy_tls_options reserved = EDDY_TLS_OPTIONS_INIT(.reserved = {1});
    cr_assert(eq(int, eddy_stream_start_tls(r.st, &reserved), -EINVAL));
    const char *empty[] = {"", NULL};
    eddy_tls_options bad_alpn = EDDY_TLS_OPTIONS_INIT(.alpn = empty);
    cr_assert(eq(int, eddy_stream_start_tls(r.st, &bad_alpn), -EINVAL));
    cr_assert(eq(int, eddy_stream_start_tls(NULL, NULL), -EINVAL));
    eddy_tls_options missing = EDDY_TLS_OPTIONS_INIT(.ca_file = "/nonexistent/ca.pem");
    cr_assert(eq(int, eddy_stream_start_tls(r.st, &missing), -ENOENT));
    raw_still_plain(&r);
    cr_assert(eq(ptr, (void *)eddy_stream_alpn(r.st), NULL));
    raw_close(&r);
    return 0;
}

/* No TLS on the loop: -ENOTSUP, the stream untouched. */
static intptr_t without_openssl_main(void *arg)
{
    struct raw r;
    raw_open(&r, arg, false);
    eddy_tls_options o = EDDY_TLS_OPTIONS_INIT(.server_name = "localhost");
    cr_assert(eq(int, eddy_stream_start_tls(r.st, &o), -ENOTSUP));
    eddy_tls_options bad = EDDY_TLS_OPTIONS_INIT(.server = true);
    cr_assert(eq(int, eddy_stream_start_tls(r.st, &bad), -EINVAL));
    raw_still_plain(&r);
    raw_close(&r);
    return 0;
}

/* Runs fn(listener) in a task, with a listener on 127.0.0.1. */
struct with_listener {
    eddy_task_fn fn;
};

static intptr_t listening_main(void *arg)
{
    eddy_task_fn fn = ((struct with_listener *)arg)->fn;
    eddy_sock *listener;
    cr_assert(eq(int, eddy_tcp_listen(&listener, "127.0.0.1", 0, 0), 0));
    intptr_t r = fn(listener);
    cr_assert(eq(int, eddy_sock_close(listener), 0));
    return r;
}

static void run_listening(eddy_task_fn fn)
{
    struct with_listener w = {fn};
    cr_assert(eq(int, run_main(listening_main, &w), 0));
}

Test(tls, garbage_from_the_peer, .timeout = TEST_TIMEOUT)
{
    certs();
    run_listening(garbage_main);
    certs_remove();
}

Test(tls, truncation_without_close_notify, .timeout = TEST_TIMEOUT)
{
    certs();
    run_listening(truncation_main);
    certs_remove();
}

Test(tls, handshake_timeout_cancel_and_close, .timeout = TEST_TIMEOUT)
{
    certs();
    run_listening(silent_main);
    certs_remove();
}

Test(tls, bad_options, .timeout = TEST_TIMEOUT)
{
    certs();
    run_listening(options_main);
    certs_remove();
}

/* Built without OpenSSL, or with EDDY_CAPS_DISABLE=tls: the loop has no TLS. */
Test(tls, without_tls_start_tls_is_not_supported, .timeout = TEST_TIMEOUT)
{
    setenv("EDDY_CAPS_DISABLE", "tls", 1);
    run_listening(without_openssl_main);
}

#if defined(__GLIBC__) && !defined(__SANITIZE_ADDRESS__)
/* The allocations eddy makes while `counting`: this malloc serves the whole
 * process (glibc's own does the work), and counts the calls that come from
 * this executable, which has eddy linked in (OpenSSL is a shared library: its
 * own allocations are counted apart). Not under ASan, whose malloc this would
 * hide. */
extern void *__libc_malloc(size_t n);
extern void *__libc_calloc(size_t n, size_t size);
extern void *__libc_realloc(void *p, size_t n);
extern const char __executable_start[], etext[];
static volatile bool counting;
static volatile long eddy_allocs, other_allocs;

static void count(const void *caller)
{
    if (!counting) return;
    if ((const char *)caller >= __executable_start && (const char *)caller < etext)
        eddy_allocs++;
    else
        other_allocs++;
}

void *malloc(size_t n)
{
    count(__builtin_return_address(0));
    return __libc_malloc(n);
}

void *calloc(size_t n, size_t size)
{
    count(__builtin_return_address(0));
    return __libc_calloc(n, size);
}

void *realloc(void *p, size_t n)
{
    count(__builtin_return_address(0));
    return __libc_realloc(p, n);
}

/* 1 KiB and 64 KiB round trips after a warm-up: eddy allocates nothing, on
 * either side (both ends are in this process). OpenSSL 3.0 does, per record,
 * in its cipher calls (docs/tls.md). */
static intptr_t steady_main(void *arg)
{
    struct tls_pair p = {.server = server_options(), .client = client_options()};
    tls_pair_open(&p, arg);
    cr_assert(eq(int, p.client_err, 0));
    eddy_task *st = eddy_spawn(NULL, echo_server, p.s);
    static char msg[64 * 1024], back[64 * 1024];
    memset(msg, 'm', sizeof msg);
    long failed = 0; /* no assertion in the counted part: Criterion allocates */
    for (int i = 0; i < 400; i++) {
        size_t len = i % 2 ? 1024 : sizeof msg;
        if (i == 200) counting = true; /* warm: every buffer at its size */
        if (eddy_stream_write(p.c, msg, len) < 0 ||
            eddy_stream_readexactly(p.c, back, len) != (ssize_t)len)
            failed++;
    }
    counting = false;
    cr_assert(eq(long, failed, 0L));
    cr_assert(eq(long, eddy_allocs, 0L), "eddy's allocations in 200 round trips");
    cr_log_info("OpenSSL's allocations in 200 round trips: %ld", other_allocs);
    cr_assert(eq(int, eddy_stream_write_eof(p.c), 0));
    cr_assert(eq(long, (long)eddy_stream_read(p.c, back, 1), 0L));
    cr_assert(eq(int, eddy_task_join(st, NULL), 0));
    tls_pair_close(&p);
    return 0;
}

Test(tls, steady_round_trips_allocate_nothing, .timeout = TEST_TIMEOUT)
{
    certs();
    run_listening(steady_main);
    certs_remove();
}
#endif

/* ---- real peers ---------------------------------------------------------------------- */

/* An ephemeral port nobody listens on now. */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    cr_assert(eq(int, bind(fd, (struct sockaddr *)&a, sizeof a), 0));
    cr_assert(eq(int, getsockname(fd, (struct sockaddr *)&a, &len), 0));
    close(fd);
    return ntohs(a.sin_port);
}

static intptr_t s_server_main(void *arg)
{
    int port = (int)(intptr_t)arg;
    eddy_stream *st = NULL;
    int err = -1;
    for (int i = 0; i < 200 && err < 0; i++) { /* until s_server listens */
        err = eddy_open_connection(&st, "127.0.0.1", (uint16_t)port, NULL);
        if (err < 0) cr_assert(eq(int, eddy_sleep(20 * NS_PER_MS), 0));
    }
    cr_assert(eq(int, err, 0), "connect to openssl s_server: %s", eddy_strerror(err));
    eddy_tls_options o = client_options();
    cr_assert(eq(int, eddy_stream_start_tls(st, &o), 0));
    cr_assert(eq(int, eddy_stream_write(st, "hello tls\n", 10), 0));
    char line[32];
    ssize_t n = eddy_stream_readline(st, line, sizeof line);
    cr_assert(eq(long, (long)n, 10L));
    cr_assert(eq(int, memcmp(line, "slt olleh\n", 10), 0), "s_server -rev reverses the line");
    cr_assert(eq(int, eddy_stream_close(st), 0));
    return 0;
}

Test(tls, client_of_openssl_s_server, .timeout = TEST_TIMEOUT)
{
    certs();
    int port = free_port();
    pid_t pid = fork();
    cr_assert(ge(int, pid, 0));
    if (pid == 0) {
        char accept[32];
        snprintf(accept, sizeof accept, "127.0.0.1:%d", port);
        freopen("/dev/null", "w", stdout);
        freopen("/dev/null", "w", stderr);
        execlp("openssl", "openssl", "s_server", "-accept", accept, "-cert", server_cert, "-key",
               server_key, "-rev", "-naccept", "1", (char *)NULL);
        _exit(127);
    }
    int r = run_main(s_server_main, (void *)(intptr_t)port);
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
    cr_assert(eq(int, r, 0));
    certs_remove();
}

/* eddy serving, a real client run in the thread pool (the loop serves meanwhile). */
struct command {
    char line[1024];
    char out[4096];
    int status;
};

static intptr_t run_command(void *arg)
{
    struct command *c = arg;
    FILE *f = popen(c->line, "r");
    if (!f) return -1;
    size_t n = fread(c->out, 1, sizeof c->out - 1, f);
    c->out[n] = '\0';
    c->status = pclose(f);
    return 0;
}

static intptr_t upper_handler(eddy_stream *st, void *arg)
{
    (void)arg;
    eddy_tls_options o = server_options();
    int err = eddy_stream_start_tls(st, &o);
    if (err < 0) return err;
    char line[256];
    ssize_t n;
    while ((n = eddy_stream_readline(st, line, sizeof line)) > 0) {
        for (ssize_t i = 0; i < n; i++)
            if (line[i] >= 'a' && line[i] <= 'z') line[i] = (char)(line[i] - 'a' + 'A');
        if (eddy_stream_write(st, line, (size_t)n) < 0 || eddy_stream_drain(st) < 0) break;
    }
    return 0;
}

static intptr_t serve_and_run(eddy_sock *listener, intptr_t (*handler)(eddy_stream *, void *),
                              void *arg, struct command *c)
{
    eddy_server *srv;
    cr_assert(eq(int, eddy_serve(&srv, listener, handler, arg), 0));
    intptr_t r = -1;
    cr_assert(eq(int, eddy_to_thread(run_command, c, &r), 0));
    cr_assert(eq(int, eddy_server_close(srv), 0));
    cr_assert(eq(int, eddy_server_wait(srv), 0));
    return r;
}

static intptr_t s_client_main(void *arg)
{
    struct command *c = arg;
    eddy_sock *listener;
    cr_assert(eq(int, eddy_tcp_listen(&listener, "127.0.0.1", 0, 0), 0));
    /* Each line goes once s_client has shown the answer to the one before
     * (a command such as K must begin what s_client reads; a slow handshake
     * would otherwise have it read with the line before). */
    snprintf(c->line, sizeof c->line,
             "out='%s/s_client.out'; : >\"$out\"; "
             "wait_for() { i=0; until grep -q \"$1\" \"$out\" || [ $i -ge 600 ]; do "
             "sleep 0.05; i=$((i + 1)); done; }; "
             "(printf 'hello from s_client\\n'; wait_for 'HELLO FROM'; printf 'K\\n'; "
             "wait_for KEYUPDATE; printf 'after a key update\\n'; wait_for 'AFTER A') | "
             "openssl s_client -connect 127.0.0.1:%d -CAfile '%s' -servername localhost "
             "-verify_return_error -quiet -no_ign_eof >\"$out\" 2>&1; cat \"$out\"",
             dir, eddy_sock_port(listener), ca);
    return serve_and_run(listener, upper_handler, NULL, c);
}

Test(tls, server_for_openssl_s_client, .timeout = TEST_TIMEOUT)
{
    certs();
    struct command c = {0};
    cr_assert(eq(int, run_main(s_client_main, &c), 0));
    cr_assert(ne(ptr, strstr(c.out, "HELLO FROM S_CLIENT\n"), NULL), "s_client printed: %s", c.out);
    /* "K" made s_client send a KeyUpdate asking for eddy's: OpenSSL answers it
     * with eddy's next write, and both sides go on with new keys */
    cr_assert(ne(ptr, strstr(c.out, "KEYUPDATE"), NULL), "s_client printed: %s", c.out);
    cr_assert(ne(ptr, strstr(c.out, "AFTER A KEY UPDATE\n"), NULL), "s_client printed: %s", c.out);
    certs_remove();
}

static intptr_t curl_main(void *arg)
{
    struct command *c = arg;
    eddy_sock *listener;
    cr_assert(eq(int, eddy_tcp_listen(&listener, "127.0.0.1", 0, 0), 0));
    int port = eddy_sock_port(listener);
    snprintf(c->line, sizeof c->line,
             "curl -sS --cacert '%s' --resolve localhost:%d:127.0.0.1 "
             "https://localhost:%d/one https://localhost:%d/two 2>&1",
             ca, port, port, port);
    struct https_hello h = {.cert_file = server_cert, .key_file = server_key};
    intptr_t r = serve_and_run(listener, https_hello_connection, &h, c);
    cr_assert(eq(long, h.served, 2L), "two requests on one kept-alive connection");
    return r;
}

Test(tls, curl_against_https_hello, .timeout = TEST_TIMEOUT)
{
    certs();
    if (system("curl --version >/dev/null 2>&1") != 0) cr_skip_test("no curl here");
    struct command c = {0};
    cr_assert(eq(int, run_main(curl_main, &c), 0));
    cr_assert(eq(str, c.out, "Hello, World!Hello, World!"));
    cr_assert(eq(int, c.status, 0));
    certs_remove();
}
#endif
