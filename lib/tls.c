/* SPDX-License-Identifier: MIT */
/* TLS on streams, over OpenSSL (docs/tls.md).
 *
 * A TLS stream is a transport (lib/stream_layer.h) between the stream's
 * buffers and its socket. OpenSSL never touches the socket: it reads
 * ciphertext from one memory BIO and writes it to another, and this file
 * moves the bytes with eddy's own non-blocking, cancellable ops. recv feeds
 * what eddy_recv brought into the read BIO until SSL_read has plaintext;
 * send_start encrypts up to PLAIN_CHUNK bytes of the stream's plaintext into
 * the write BIO, moves the records into a ciphertext buffer and sends that
 * through the stream's own send op; the plaintext counts as sent once all of
 * its ciphertext is (sent() maps one to the other).
 *
 * Contexts (SSL_CTX: certificates, trust store) are made once per set of
 * options and files and shared by every stream in the process that uses the
 * same (a small cache under a lock); a client context keeps the sessions the
 * servers gave it, per server name (or address) and port, and offers them
 * again: a resumed handshake. Without OpenSSL, eddy_stream_start_tls checks
 * its options and returns -ENOTSUP. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "stream_layer.h"

/* eddy_tls_options' layouts, oldest first (lib/loop.c explains). */
static const size_t tls_options_layouts[] = {
    sizeof(eddy_tls_options), /* 0.1 */
};
_Static_assert(sizeof(eddy_tls_options) == offsetof(eddy_tls_options, reserved) + 6,
               "eddy_tls_options: no tail padding, where a later field could land");
_Static_assert(offsetof(eddy_tls_options, server) ==
                   offsetof(eddy_tls_options, alpn) + sizeof(const char *const *),
               "eddy_tls_options: no padding before the flags");

/* The caller's options (NULL: a client with the defaults), checked. */
static int tls_options(eddy_tls_options *dst, const eddy_tls_options *o)
{
    *dst = (eddy_tls_options){0};
    if (o) {
        int err = eddy__options_read(dst, sizeof *dst, o, tls_options_layouts,
                                     sizeof tls_options_layouts / sizeof tls_options_layouts[0]);
        if (err < 0) return err;
    }
    for (size_t i = 0; i < sizeof dst->reserved; i++)
        if (dst->reserved[i]) return -EINVAL;
    if (!dst->cert_file != !dst->key_file) return -EINVAL;
    if (dst->server && (!dst->cert_file || dst->insecure || dst->server_name)) return -EINVAL;
    if (dst->server_name && (!*dst->server_name || strlen(dst->server_name) > 253)) return -EINVAL;
    for (const char *const *p = dst->alpn; p && *p; p++)
        if (!**p || strlen(*p) > 255) return -EINVAL;
    return 0;
}

/* What every start_tls checks first: a task, st, the options, and TLS on the
 * loop (none without OpenSSL, or when EDDY_CAPS_DISABLE lists it). */
static int start_check(eddy_stream *st, const eddy_tls_options *o, eddy_tls_options *opts)
{
    if (!eddy__current_task()) return -EPERM;
    if (!st || tls_options(opts, o) < 0) return -EINVAL;
    if (eddy_loop_supports(eddy_loop_current(), EDDY_CAP_TLS) == EDDY_NONE) return -ENOTSUP;
    return 0;
}

/* For tests (linked statically): whether st's handshake resumed a session,
 * and the name the client asked for (SNI) as a server saw it. */
bool eddy__tls_session_reused(const eddy_stream *st);
const char *eddy__tls_server_name(const eddy_stream *st);

#if !EDDY_HAVE_OPENSSL

bool eddy__tls_session_reused(const eddy_stream *st)
{
    (void)st;
    return false;
}

const char *eddy__tls_server_name(const eddy_stream *st)
{
    (void)st;
    return NULL;
}

EDDY_API int eddy_stream_start_tls(eddy_stream *st, const eddy_tls_options *o)
{
    eddy_tls_options opts;
    int err = start_check(st, o, &opts);
    return err < 0 ? err : -ENOTSUP;
}

EDDY_API const char *eddy_stream_alpn(const eddy_stream *st)
{
    (void)st;
    return NULL;
}

#else /* EDDY_HAVE_OPENSSL */

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#ifndef MSG_NOSIGNAL
#define MSG_NOSIGNAL 0
#endif

#define PLAIN_CHUNK  (64 * 1024)       /* plaintext per SSL_write: four full records */
#define CIPHER_CHUNK (16 * 1024 + 256) /* ciphertext per receive: one full record */
#define CTX_CACHE    16                /* contexts kept */
#define SESSIONS     64                /* sessions a client context keeps */
#define TLS_MAGIC    0x544c5321u
#define SESSION_KEY  (253 + 8) /* a host name or address, ':', a port */

struct session_slot {
    char key[SESSION_KEY];
    SSL_SESSION *session;
};

/* A context and what it was made from. */
struct ctx_entry {
    SSL_CTX *ctx;
    bool server, insecure;
    char *files[3];   /* ca_file, cert_file, key_file (copies, or NULL) */
    time_t mtimes[3]; /* as they were when loaded: a changed file makes a new context */
    struct session_slot *sessions; /* a client's, SESSIONS of them */
    unsigned next_session;         /* the slot a new key takes */
};

static struct ctx_entry *ctx_cache[CTX_CACHE];
static unsigned ctx_next; /* the slot a new context takes */
static eddy__mutex cache_lock;
static eddy__once cache_once = EDDY__ONCE_INIT;

static void cache_init(void)
{
    (void)eddy__mutex_init(&cache_lock);
}

/* The TLS transport's data. */
struct tls {
    uint32_t magic;
    SSL *ssl;
    BIO *rbio, *wbio; /* the network side: ciphertext in, ciphertext out */
    bool fatal;       /* a fatal error: no close_notify */
    int error;        /* the fatal error (sticky), or 0 */
    bool shut;        /* close_notify was sent */
    char *cbuf;       /* ciphertext being sent: [coff, clen) */
    size_t coff, clen, ccap;
    size_t covered;           /* the plaintext cbuf's records carry */
    unsigned char *alpn_wire; /* the ALPN list as TLS sends it */
    size_t alpn_len;
    char alpn[256];                /* the protocol agreed, or "" */
    char session_key[SESSION_KEY]; /* a client's key in its context's sessions */
    char in[CIPHER_CHUNK];         /* ciphertext received */
};

static void tls_free(struct tls *t)
{
    if (!t) return;
    SSL_free(t->ssl); /* and the BIOs */
    free(t->cbuf);
    free(t->alpn_wire);
    free(t);
}

/* ---- errors ---------------------------------------------------------------------- */

/* What an OpenSSL failure means, as a negative errno (docs/tls.md's table). */
static int ssl_errno(int e, unsigned long err)
{
    if (e == SSL_ERROR_SYSCALL) return -ECONNRESET;
    if (e != SSL_ERROR_SSL || ERR_GET_LIB(err) != ERR_LIB_SSL) return -EPROTO;
    switch (ERR_GET_REASON(err)) {
    case SSL_R_CERTIFICATE_VERIFY_FAILED:
    case SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE:
    case SSL_R_SSLV3_ALERT_BAD_CERTIFICATE:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_EXPIRED:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_REVOKED:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN:
    case SSL_R_SSLV3_ALERT_UNSUPPORTED_CERTIFICATE:
    case SSL_R_TLSV1_ALERT_UNKNOWN_CA:
    case SSL_R_TLSV1_ALERT_ACCESS_DENIED:
    case SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED:
        return -EACCES;
#ifdef SSL_R_UNEXPECTED_EOF_WHILE_READING
    case SSL_R_UNEXPECTED_EOF_WHILE_READING:
        return -ECONNRESET;
#endif
    default:
        return -EPROTO;
    }
}

/* The failure of an SSL call that returned ret: -EAGAIN when it wants more
 * bytes, -EPIPE at close_notify, else the fatal error, kept in t->error. */
static int ssl_error(struct tls *t, int ret)
{
    int e = SSL_get_error(t->ssl, ret);
    unsigned long err = ERR_peek_last_error();
    ERR_clear_error();
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return -EAGAIN;
    if (e == SSL_ERROR_ZERO_RETURN) return -EPIPE;
    t->fatal = true;
    return t->error = ssl_errno(e, err);
}

/* ---- contexts and sessions ------------------------------------------------------------ */

static struct ctx_entry *entry_of(const SSL_CTX *ctx)
{
    for (unsigned i = 0; i < CTX_CACHE; i++)
        if (ctx_cache[i] && ctx_cache[i]->ctx == ctx) return ctx_cache[i];
    return NULL;
}

/* A client's new session (TLS 1.3 sends them after the handshake, so this
 * runs in SSL_read too): kept under the connection's key, replacing the one
 * before. 1: OpenSSL's reference is ours now. */
static int session_new(SSL *ssl, SSL_SESSION *session)
{
    struct tls *t = SSL_get_app_data(ssl);
    if (!t || !t->session_key[0]) return 0;
    eddy__mutex_lock(&cache_lock);
    struct ctx_entry *e = entry_of(SSL_get_SSL_CTX(ssl));
    struct session_slot *slot = NULL;
    for (unsigned i = 0; e && i < SESSIONS && !slot; i++)
        if (strcmp(e->sessions[i].key, t->session_key) == 0) slot = &e->sessions[i];
    if (e && !slot) slot = &e->sessions[e->next_session++ % SESSIONS];
    SSL_SESSION *old = NULL;
    if (slot) {
        old = slot->session;
        slot->session = session;
        memcpy(slot->key, t->session_key, sizeof slot->key);
    }
    eddy__mutex_unlock(&cache_lock);
    SSL_SESSION_free(old);
    return slot ? 1 : 0;
}

/* The session kept for t's key, with a reference of its own, or NULL. */
static SSL_SESSION *session_find(SSL_CTX *ctx, const char *key)
{
    SSL_SESSION *s = NULL;
    eddy__mutex_lock(&cache_lock);
    struct ctx_entry *e = entry_of(ctx);
    for (unsigned i = 0; e && i < SESSIONS && !s; i++)
        if (e->sessions[i].session && strcmp(e->sessions[i].key, key) == 0) {
            s = e->sessions[i].session;
            SSL_SESSION_up_ref(s);
        }
    eddy__mutex_unlock(&cache_lock);
    return s;
}

/* The server's ALPN choice: the first of the server's protocols the client
 * offers; none in common is a fatal alert (RFC 7301). */
static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned inlen, void *arg)
{
    (void)arg;
    struct tls *t = SSL_get_app_data(ssl);
    if (!t || !t->alpn_wire) return SSL_TLSEXT_ERR_NOACK;
    unsigned char *chosen;
    if (SSL_select_next_proto(&chosen, outlen, t->alpn_wire, (unsigned)t->alpn_len, in, inlen) !=
        OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    *out = chosen;
    return SSL_TLSEXT_ERR_OK;
}

static void entry_free(struct ctx_entry *e)
{
    if (!e) return;
    SSL_CTX_free(e->ctx);
    for (int i = 0; i < 3; i++)
        free(e->files[i]);
    for (unsigned i = 0; e->sessions && i < SESSIONS; i++)
        SSL_SESSION_free(e->sessions[i].session);
    free(e->sessions);
    free(e);
}

/* A new context for o (files already checked to exist). */
static int ctx_make(SSL_CTX **out, const eddy_tls_options *o)
{
    SSL_CTX *ctx = SSL_CTX_new(o->server ? TLS_server_method() : TLS_client_method());
    if (!ctx) return -ENOMEM;
    int err = 0;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION);
    if (o->cert_file && (SSL_CTX_use_certificate_chain_file(ctx, o->cert_file) != 1 ||
                         SSL_CTX_use_PrivateKey_file(ctx, o->key_file, SSL_FILETYPE_PEM) != 1 ||
                         SSL_CTX_check_private_key(ctx) != 1))
        err = -EINVAL;
    if (err == 0 && o->ca_file && SSL_CTX_load_verify_locations(ctx, o->ca_file, NULL) != 1)
        err = -EINVAL;
    if (err == 0 && o->server) {
        static const unsigned char id[] = "eddy";
        SSL_CTX_set_session_id_context(ctx, id, sizeof id - 1);
        SSL_CTX_set_alpn_select_cb(ctx, alpn_select, NULL);
        if (o->ca_file) { /* client certificates: asked for and required */
            STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(o->ca_file);
            if (names) SSL_CTX_set_client_CA_list(ctx, names);
            SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
        }
    } else if (err == 0) {
        if (!o->ca_file && SSL_CTX_set_default_verify_paths(ctx) != 1) err = -EINVAL;
        SSL_CTX_set_verify(ctx, o->insecure ? SSL_VERIFY_NONE : SSL_VERIFY_PEER, NULL);
        SSL_CTX_set_session_cache_mode(ctx,
                                       SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
        SSL_CTX_sess_set_new_cb(ctx, session_new);
    }
    ERR_clear_error();
    if (err < 0) {
        SSL_CTX_free(ctx);
        return err;
    }
    *out = ctx;
    return 0;
}

struct ctx_make_call {
    const eddy_tls_options *o;
    SSL_CTX *ctx; /* made, or NULL */
};

static intptr_t ctx_make_run(void *arg)
{
    struct ctx_make_call *call = arg;
    return ctx_make(&call->ctx, call->o);
}

static bool same_file(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

/* The context for o, with a reference of its own: the cached one when o and
 * its files' modification times match, else a new one, cached. */
static int ctx_get(SSL_CTX **out, const eddy_tls_options *o)
{
    const char *files[3] = {o->ca_file, o->cert_file, o->key_file};
    time_t mtimes[3] = {0};
    for (int i = 0; i < 3; i++) {
        struct stat sb;
        if (!files[i]) continue;
        if (stat(files[i], &sb) < 0) return -errno;
        mtimes[i] = sb.st_mtime;
    }
    eddy__once_run(&cache_once, cache_init);
    eddy__mutex_lock(&cache_lock);
    for (unsigned i = 0; i < CTX_CACHE; i++) {
        struct ctx_entry *e = ctx_cache[i];
        if (!e || e->server != o->server || e->insecure != o->insecure) continue;
        bool same = true;
        for (int f = 0; f < 3 && same; f++)
            same = same_file(e->files[f], files[f]) && e->mtimes[f] == mtimes[f];
        if (same) {
            SSL_CTX_up_ref(e->ctx);
            *out = e->ctx;
            eddy__mutex_unlock(&cache_lock);
            return 0;
        }
    }
    eddy__mutex_unlock(&cache_lock);

    /* Loading files and parsing certificates blocks: in the thread pool. A
     * cancelled task still waits for the worker, whose context is then freed. */
    struct ctx_make_call call = {.o = o};
    intptr_t made = 0;
    int err = eddy_to_thread(ctx_make_run, &call, &made);
    if (err == 0) err = (int)made;
    if (err < 0) {
        SSL_CTX_free(call.ctx);
        return err;
    }
    SSL_CTX *ctx = call.ctx;
    struct ctx_entry *e = calloc(1, sizeof *e);
    if (e && !o->server) e->sessions = calloc(SESSIONS, sizeof *e->sessions);
    for (int f = 0; e && f < 3; f++) {
        e->mtimes[f] = mtimes[f];
        if (files[f] && !(e->files[f] = strdup(files[f]))) {
            entry_free(e);
            e = NULL;
        }
    }
    if (!e || (!o->server && !e->sessions)) {
        entry_free(e);
        SSL_CTX_free(ctx);
        return -ENOMEM;
    }
    e->ctx = ctx;
    e->server = o->server;
    e->insecure = o->insecure;
    SSL_CTX_up_ref(ctx); /* the caller's */
    eddy__mutex_lock(&cache_lock);
    unsigned slot = ctx_next++ % CTX_CACHE;
    struct ctx_entry *old = ctx_cache[slot];
    ctx_cache[slot] = e;
    eddy__mutex_unlock(&cache_lock);
    entry_free(old); /* connections using it hold their own reference */
    *out = ctx;
    return 0;
}

/* ---- moving ciphertext ------------------------------------------------------------------ */

/* Moves what OpenSSL wrote into the write BIO to the end of cbuf. */
static int take_out(struct tls *t)
{
    size_t n = BIO_ctrl_pending(t->wbio);
    if (n == 0) return 0;
    if (t->ccap - t->clen < n) {
        size_t cap = t->ccap ? t->ccap : 4096;
        while (cap - t->clen < n)
            cap *= 2;
        char *b = realloc(t->cbuf, cap);
        if (!b) return -ENOMEM;
        t->cbuf = b;
        t->ccap = cap;
    }
    int got = BIO_read(t->wbio, t->cbuf + t->clen, (int)n);
    if (got > 0) t->clen += (size_t)got;
    return 0;
}

/* Task-only: sends everything OpenSSL has written (the stream's send op is
 * idle: during the handshake, and at write_eof). */
static int send_out(struct tls *t, eddy_stream *st)
{
    int err = take_out(t);
    if (err < 0) return err;
    ssize_t n = t->clen > t->coff
                    ? eddy_send(eddy__stream_sock(st), t->cbuf + t->coff, t->clen - t->coff)
                    : 0;
    t->coff = t->clen = 0;
    return n < 0 ? (int)n : 0;
}

/* Task-only: receives more ciphertext into the read BIO. -ECONNRESET at EOF:
 * a peer that closes without close_notify may have been cut short. */
static int feed(struct tls *t, eddy_stream *st)
{
    ssize_t n = eddy_recv(eddy__stream_sock(st), t->in, sizeof t->in);
    if (n == 0) {
        t->fatal = true;
        return t->error = -ECONNRESET;
    }
    if (n < 0) return (int)n;
    return BIO_write(t->rbio, t->in, (int)n) == (int)n ? 0 : -ENOMEM;
}

/* ---- the transport -------------------------------------------------------------------- */

static ssize_t tls_recv(eddy_stream *st, void *buf, size_t len)
{
    struct tls *t = eddy__stream_layer(st);
    if (t->error) return t->error;
    if (len > INT_MAX) len = INT_MAX;
    for (;;) {
        int n = SSL_read(t->ssl, buf, (int)len);
        if (n > 0) return n;
        int err = ssl_error(t, n);
        if (err == -EPIPE) return 0; /* close_notify: EOF */
        if (err != -EAGAIN) return err;
        if ((err = feed(t, st)) < 0) return err;
    }
}

/* What the ciphertext just sent means in plaintext: all of it once its last
 * record is out, else 0 (the stream calls send_start again for the rest). */
static int64_t tls_sent(eddy_stream *st, int64_t result)
{
    struct tls *t = eddy__stream_layer(st);
    if (result < 0) return result;
    t->coff += (size_t)result;
    if (t->coff < t->clen) return 0;
    t->coff = t->clen = 0;
    size_t covered = t->covered;
    t->covered = 0;
    return (int64_t)covered;
}

static int64_t tls_send_start(eddy_stream *st, const void *buf, size_t len)
{
    struct tls *t = eddy__stream_layer(st);
    if (t->error) return t->error;
    if (t->coff == t->clen) { /* encrypt the next chunk (and what SSL_read left to send) */
        int n = SSL_write(t->ssl, buf, (int)(len < PLAIN_CHUNK ? len : PLAIN_CHUNK));
        if (n <= 0) return ssl_error(t, n);
        t->covered = (size_t)n;
        int err = take_out(t);
        if (err < 0) return err;
    }
    int64_t r = eddy__stream_plain.send_start(st, t->cbuf + t->coff, t->clen - t->coff);
    if (r == SEND_PENDING) return r;
    return tls_sent(st, r);
}

static void tls_send_cancel(eddy_stream *st)
{
    eddy__stream_plain.send_cancel(st);
}

/* close_notify into cbuf, when it may be sent: after a handshake, no fatal
 * error, once, and not in the middle of a record. */
static bool close_notify(struct tls *t)
{
    if (t->fatal || t->shut || t->coff != t->clen || !SSL_is_init_finished(t->ssl)) return false;
    t->shut = true;
    (void)SSL_shutdown(t->ssl);
    ERR_clear_error();
    return take_out(t) == 0;
}

static int tls_shutdown_write(eddy_stream *st)
{
    struct tls *t = eddy__stream_layer(st);
    if (close_notify(t)) {
        int err = send_out(t, st);
        if (err < 0) return err;
    }
    return eddy__stream_plain.shutdown_write(st);
}

/* Closing (maybe outside a task): close_notify goes out if the socket takes
 * it at once (it is a few dozen bytes, after the stream's last send). */
static int tls_close(eddy_stream *st)
{
    struct tls *t = eddy__stream_layer(st);
    if (close_notify(t) && t->clen > t->coff)
        (void)send((int)eddy_sock_fd(eddy__stream_sock(st)), t->cbuf + t->coff, t->clen - t->coff,
                   MSG_DONTWAIT | MSG_NOSIGNAL);
    tls_free(t);
    return eddy__stream_plain.close(st);
}

static const struct stream_transport tls_transport = {
    .recv = tls_recv,
    .send_start = tls_send_start,
    .send_cancel = tls_send_cancel,
    .shutdown_write = tls_shutdown_write,
    .close = tls_close,
    .sent = tls_sent,
};

/* ---- the handshake ---------------------------------------------------------------------- */

/* The connection's key among a client context's sessions: the server's name
 * (or address) and port. Empty when the peer's address is unknown. */
static void session_key(struct tls *t, eddy_stream *st, const char *server_name)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    char host[INET6_ADDRSTRLEN] = "";
    unsigned port = 0;
    if (getpeername((int)eddy_sock_fd(eddy__stream_sock(st)), (struct sockaddr *)&ss, &len) < 0)
        return;
    if (ss.ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
        port = ntohs(a->sin_port);
    } else if (ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&ss;
        inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
        port = ntohs(a->sin6_port);
    }
    snprintf(t->session_key, sizeof t->session_key, "%s:%u", server_name ? server_name : host,
             port);
}

static bool is_address(const char *name)
{
    unsigned char a[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, name, a) == 1 || inet_pton(AF_INET6, name, a) == 1;
}

/* The SSL for st as o asks, and what it needs from the connection. */
static int tls_new(struct tls **out, eddy_stream *st, SSL_CTX *ctx, const eddy_tls_options *o)
{
    struct tls *t = calloc(1, sizeof *t);
    if (t) t->ssl = SSL_new(ctx);
    if (!t || !t->ssl) {
        tls_free(t);
        return -ENOMEM;
    }
    t->magic = TLS_MAGIC;
    t->rbio = BIO_new(BIO_s_mem());
    t->wbio = BIO_new(BIO_s_mem());
    if (t->rbio && t->wbio) SSL_set_bio(t->ssl, t->rbio, t->wbio);
    size_t wire = 0;
    for (const char *const *p = o->alpn; p && *p; p++)
        wire += 1 + strlen(*p);
    if (wire && (t->alpn_wire = malloc(wire))) {
        for (const char *const *p = o->alpn; *p; p++) {
            size_t n = strlen(*p);
            t->alpn_wire[t->alpn_len++] = (unsigned char)n;
            memcpy(t->alpn_wire + t->alpn_len, *p, n);
            t->alpn_len += n;
        }
    }
    if (!t->rbio || !t->wbio || (wire && !t->alpn_wire)) {
        if (!SSL_get_rbio(t->ssl)) {
            BIO_free(t->rbio);
            BIO_free(t->wbio);
        }
        tls_free(t);
        return -ENOMEM;
    }
    SSL_set_app_data(t->ssl, t);
    if (o->server) {
        SSL_set_accept_state(t->ssl);
    } else {
        SSL_set_connect_state(t->ssl);
        const char *name = o->server_name;
        if (name && is_address(name)) {
            if (!o->insecure) X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(t->ssl), name);
        } else if (name) {
            SSL_set_tlsext_host_name(t->ssl, name);
            if (!o->insecure) SSL_set1_host(t->ssl, name);
        }
        if (t->alpn_wire) SSL_set_alpn_protos(t->ssl, t->alpn_wire, (unsigned)t->alpn_len);
        session_key(t, st, name);
        SSL_SESSION *s =
            t->session_key[0] ? session_find(SSL_get_SSL_CTX(t->ssl), t->session_key) : NULL;
        if (s) {
            SSL_set_session(t->ssl, s);
            SSL_SESSION_free(s);
        }
    }
    ERR_clear_error();
    *out = t;
    return 0;
}

/* Task-only: the handshake, to its end or its first error. */
static int handshake(struct tls *t, eddy_stream *st)
{
    for (;;) {
        int r = SSL_do_handshake(t->ssl);
        int err = r == 1 ? 0 : ssl_error(t, r);
        int sent = send_out(t, st); /* our flight, or the alert that says why not */
        if (err == 0 || (err != -EAGAIN)) return err < 0 ? err : sent;
        if (sent < 0) return sent;
        if ((err = feed(t, st)) < 0) return err;
    }
}

EDDY_API int eddy_stream_start_tls(eddy_stream *st, const eddy_tls_options *o)
{
    eddy_tls_options opts;
    int err = start_check(st, o, &opts);
    if (err < 0) return err;
    SSL_CTX *ctx = NULL; /* first: bad files leave the stream as it was */
    if ((err = ctx_get(&ctx, &opts)) < 0) return err;
    const void *early;
    size_t early_len;
    if ((err = eddy__stream_layer_begin(st, &early, &early_len)) < 0) {
        SSL_CTX_free(ctx);
        return err;
    }
    struct tls *t = NULL;
    err = tls_new(&t, st, ctx, &opts);
    SSL_CTX_free(ctx); /* the SSL holds it */
    if (err == 0 && early_len && BIO_write(t->rbio, early, (int)early_len) != (int)early_len)
        err = -ENOMEM;
    if (err == 0) err = handshake(t, st);
    if (err == 0) {
        const unsigned char *p;
        unsigned n;
        SSL_get0_alpn_selected(t->ssl, &p, &n);
        if (n) memcpy(t->alpn, p, n);
        t->alpn[n] = '\0';
    }
    int r = eddy__stream_layer_end(st, &tls_transport, t, err);
    if (r < 0) tls_free(t);
    return r;
}

static const struct tls *tls_of(const eddy_stream *st)
{
    const struct tls *t = st ? eddy__stream_layer(st) : NULL;
    return t && t->magic == TLS_MAGIC ? t : NULL;
}

EDDY_API const char *eddy_stream_alpn(const eddy_stream *st)
{
    const struct tls *t = tls_of(st);
    return t && t->alpn[0] ? t->alpn : NULL;
}

bool eddy__tls_session_reused(const eddy_stream *st)
{
    const struct tls *t = tls_of(st);
    return t && SSL_session_reused(t->ssl);
}

const char *eddy__tls_server_name(const eddy_stream *st)
{
    const struct tls *t = tls_of(st);
    return t ? SSL_get_servername(t->ssl, TLSEXT_NAMETYPE_host_name) : NULL;
}

#endif /* EDDY_HAVE_OPENSSL */
