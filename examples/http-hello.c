/* SPDX-License-Identifier: MIT */
/* examples/http-hello: a small HTTP/1.1 keep-alive server on eddy.
 *
 *   http-hello [-H header_seconds] [-I idle_seconds] [-t threads] [port]
 *
 * Listens on 127.0.0.1:port (default 8080). With -t N (or --threads N), N
 * loops on N threads, each with a SO_REUSEPORT listener of its own.
 * Every request gets "Hello, World!" with a Content-Length (HEAD: the same
 * headers, no body). One task per connection. The parser is incremental (a recv that ends
 * mid-request resumes the scan where it stopped) and strict where RFC 9112 asks a server to be: a
 * malformed request line or header gets 400 and the connection is closed, headers over 8 KiB get
 * 431, Transfer-Encoding (bodies of unknown length) gets 501, a version other than HTTP/1.x gets
 * 505, an HTTP/1.1 request without Host gets 400. Content-Length bodies are read and discarded.
 * "Connection: close" is honoured; HTTP/1.0 keeps the connection only with
 * "Connection: keep-alive". Pipelined requests are all parsed and answered in
 * order, their responses batched into one send. Each connection is an
 * eddy_stream (docs/streams.md): the parser peeks at the buffered bytes and
 * consumes whole requests; responses are written to the stream and drained
 * once per batch.
 *
 * Deadlines, so that slow or silent clients cannot hold every descriptor
 * (slowloris): a request head must arrive whole within header_seconds
 * (-H, default 10) of its first byte, or of the connection's opening for the
 * first request; a kept-alive connection waits at most idle_seconds (-I,
 * default 60) for its next request, and the same limit bounds the sending of
 * each batch of responses and each wait for more of a body. One timeout
 * scope per connection carries the deadline of its current wait: when it
 * passes, the peek or drain returns -ECANCELED and the connection is closed.
 * 0 turns a deadline off.
 *
 * EDDY_BACKEND=io_uring or epoll picks the backend. bench/bench.sh measures
 * it with wrk against nginx. tests/test_http.c compiles this file with
 * HTTP_HELLO_NO_MAIN to run the server in-process. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <time.h>

#include "eddy.h"

#define HTTP_MAX_HEADERS  (8 * 1024)  /* request line + headers, terminator included */
#define HTTP_IN_SIZE      (16 * 1024) /* the stream's read limit */
#define HTTP_OUT_SIZE     (16 * 1024) /* the stream's high mark */
#define HTTP_RESPONSE_MAX 256         /* the longest response this server sends */
#define HTTP_NS_PER_SEC   1000000000LL

static const char HELLO_BODY[] = "Hello, World!";

/* What the parser found in one request's head. */
struct http_req {
    int minor;               /* HTTP/1.minor */
    bool keep_alive;         /* after the version's default and Connection */
    bool head;               /* HEAD: the response carries no body */
    uint64_t content_length; /* body bytes to discard */
};

static bool is_tchar(unsigned char c)
{
    /* RFC 9110 token characters */
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
    return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static bool is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static bool span_ieq(const char *p, size_t n, const char *lit)
{
    return strlen(lit) == n && strncasecmp(p, lit, n) == 0;
}

/* Where the head that starts at p ends: the length up to and including the
 * empty line (CRLF CRLF, or bare LF line ends, which RFC 9112 lets a server
 * accept), or 0 while incomplete. *scan keeps the offset already searched,
 * so a head that arrives in pieces is scanned once. */
static size_t http_head_end(const char *p, size_t n, size_t *scan)
{
    size_t i = *scan;
    while (i < n) {
        const char *nl = memchr(p + i, '\n', n - i);
        if (!nl) break;
        size_t at = (size_t)(nl - p);
        /* an empty line: this LF follows another LF, or CR right after LF */
        if (at >= 1 && p[at - 1] == '\n') return at + 1;
        if (at >= 2 && p[at - 1] == '\r' && p[at - 2] == '\n') return at + 1;
        if (at == 0 || (at == 1 && p[0] == '\r')) return at + 1; /* empty first line */
        i = at + 1;
    }
    *scan = n; /* the look-back above reaches the bytes before it */
    return 0;
}

/* Parses the complete head p[0..n) (n from http_head_end). 0 and *req, or
 * the status to answer with before closing: 400, 501, 505. */
static int http_parse_head(const char *p, size_t n, struct http_req *req)
{
    const char *end = p + n;
    /* the request line: method SP request-target SP HTTP-version CRLF */
    const char *q = p;
    while (q < end && is_tchar((unsigned char)*q))
        q++;
    if (q == p || q >= end || *q != ' ') return 400;
    bool head = q - p == 4 && memcmp(p, "HEAD", 4) == 0;
    const char *target = ++q;
    while (q < end && (unsigned char)*q > ' ' && (unsigned char)*q < 0x7f)
        q++;
    if (q == target || q >= end || *q != ' ') return 400;
    q++;
    if (end - q < 8 || memcmp(q, "HTTP/", 5) != 0 || !is_digit((unsigned char)q[5]) ||
        q[6] != '.' || !is_digit((unsigned char)q[7]))
        return 400;
    int major = q[5] - '0', minor = q[7] - '0';
    q += 8;
    if (q < end && *q == '\r') q++;
    if (q >= end || *q != '\n') return 400;
    q++;
    if (major != 1) return 505;

    req->minor = minor;
    req->head = head;
    req->keep_alive = minor >= 1;
    req->content_length = 0;
    bool have_length = false, have_host = false, conn_close = false, conn_keep = false;

    /* header fields: name ":" OWS value OWS CRLF, until the empty line */
    for (;;) {
        if (q >= end) return 400;
        if (*q == '\n' || (*q == '\r' && q + 1 < end && q[1] == '\n')) break;
        const char *name = q;
        while (q < end && is_tchar((unsigned char)*q))
            q++;
        /* no name, whitespace before the colon, or an obs-fold line: 400 */
        if (q == name || q >= end || *q != ':') return 400;
        size_t name_len = (size_t)(q - name);
        q++;
        while (q < end && (*q == ' ' || *q == '\t'))
            q++;
        const char *value = q;
        while (q < end && *q != '\r' && *q != '\n') {
            unsigned char c = (unsigned char)*q;
            if ((c < ' ' && c != '\t') || c == 0x7f) return 400;
            q++;
        }
        const char *vend = q;
        if (q < end && *q == '\r') q++;
        if (q >= end || *q != '\n') return 400;
        q++;
        while (vend > value && (vend[-1] == ' ' || vend[-1] == '\t'))
            vend--;
        size_t vlen = (size_t)(vend - value);

        if (span_ieq(name, name_len, "content-length")) {
            /* 1*DIGIT; a repeated field must carry the same value */
            uint64_t v = 0;
            if (vlen == 0) return 400;
            for (size_t i = 0; i < vlen; i++) {
                if (!is_digit((unsigned char)value[i])) return 400;
                if (v > (UINT64_MAX - 9) / 10) return 400;
                v = v * 10 + (uint64_t)(value[i] - '0');
            }
            if (have_length && v != req->content_length) return 400;
            have_length = true;
            req->content_length = v;
        } else if (span_ieq(name, name_len, "transfer-encoding")) {
            return 501;
        } else if (span_ieq(name, name_len, "host")) {
            if (have_host) return 400;
            have_host = true;
        } else if (span_ieq(name, name_len, "connection")) {
            /* a comma-separated list of options */
            const char *o = value;
            while (o < vend) {
                while (o < vend && (*o == ',' || *o == ' ' || *o == '\t'))
                    o++;
                const char *oe = o;
                while (oe < vend && *oe != ',' && *oe != ' ' && *oe != '\t')
                    oe++;
                if (span_ieq(o, (size_t)(oe - o), "close")) conn_close = true;
                if (span_ieq(o, (size_t)(oe - o), "keep-alive")) conn_keep = true;
                o = oe;
            }
        }
    }
    if (minor >= 1 && !have_host) return 400;
    if (conn_close)
        req->keep_alive = false;
    else if (conn_keep)
        req->keep_alive = true;
    return 0;
}

/* The Date header's value and the two "Hello, World!" responses, rebuilt
 * once a second (http_refresh, at each batch of requests). */
static __thread time_t date_when;
static __thread char date_text[40];
static __thread char hello[2][256]; /* [keep_alive] */
static __thread size_t hello_len[2];

static size_t http_format(char *out, size_t cap, int status, const char *reason, const char *body,
                          bool keep_alive)
{
    int n = snprintf(out, cap,
                     "HTTP/1.1 %d %s\r\nServer: eddy\r\nDate: %s\r\nContent-Type: text/plain\r\n"
                     "Content-Length: %zu\r\nConnection: %s\r\n\r\n%s",
                     status, reason, date_text, strlen(body), keep_alive ? "keep-alive" : "close",
                     body);
    return n < 0 ? 0 : (size_t)n < cap ? (size_t)n : cap - 1;
}

static void http_refresh(void)
{
    time_t now = time(NULL);
    if (now == date_when) return;
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(date_text, sizeof(date_text), "%a, %d %b %Y %H:%M:%S GMT", &tm);
    date_when = now;
    for (int k = 0; k < 2; k++)
        hello_len[k] = http_format(hello[k], sizeof(hello[k]), 200, "OK", HELLO_BODY, k);
}

/* Appends the response (200 or an error, which always closes) to out, which
 * has HTTP_RESPONSE_MAX bytes of room; returns its length. */
static size_t http_response(char *out, int status, bool keep_alive)
{
    switch (status) {
    case 200:
        memcpy(out, hello[keep_alive], hello_len[keep_alive]);
        return hello_len[keep_alive];
    case 431:
        return http_format(out, HTTP_RESPONSE_MAX, 431, "Request Header Fields Too Large",
                           "Request Header Fields Too Large\n", false);
    case 501:
        return http_format(out, HTTP_RESPONSE_MAX, 501, "Not Implemented", "Not Implemented\n",
                           false);
    case 505:
        return http_format(out, HTTP_RESPONSE_MAX, 505, "HTTP Version Not Supported",
                           "HTTP Version Not Supported\n", false);
    default:
        return http_format(out, HTTP_RESPONSE_MAX, 400, "Bad Request", "Bad Request\n", false);
    }
}

/* Closes after an error response: sends what is buffered and stops sending,
 * reads what the client still sends for up to a second (so that closing with
 * unread data does not reset the connection before the client has read the
 * response), then closes. */
static void http_linger_close(eddy_stream *st)
{
    eddy_timeout scope;
    if (eddy_timeout_begin(&scope, 1000000000) == 0) {
        if (eddy_stream_write_eof(st) == 0) {
            char buf[4096];
            while (eddy_stream_read(st, buf, sizeof(buf)) > 0) {
            }
        }
        (void)eddy_stream_close(st); /* within the second: what is unsent is dropped after */
        (void)eddy_timeout_end(&scope);
    } else {
        (void)eddy_stream_close(st);
    }
}

/* The server: its listener and its deadlines (ns; 0 = none). */
struct http_server {
    eddy_sock *listener;
    int64_t header_timeout; /* a request head must arrive within this */
    int64_t idle_timeout;   /* between requests, and for a stalled send or body */
};

/* What a connection waits for, each with its own deadline. */
enum http_wait { HTTP_WAIT_HEAD, HTTP_WAIT_BODY, HTTP_WAIT_IDLE };

struct http_conn {
    const struct http_server *server;
    eddy_sock *sock;
};

/* The connection's current wait must end within ns from now (0: no limit).
 * Moving the scope's deadline later, as each request does, costs no timer
 * operation. */
static void http_deadline(eddy_timeout *scope, int64_t ns)
{
    /* -EALREADY once the scope expired: the connection is ending anyway */
    (void)eddy_timeout_reschedule(scope, ns > 0 ? eddy_now(NULL) + ns : -1);
}

/* One connection, until the client closes, an error, a deadline, or a
 * response that closes it. arg: a malloc'd http_conn, which this task
 * frees, and whose socket it closes. The bytes come from an eddy_stream:
 * peek shows what is buffered without a copy, the complete requests in it
 * are parsed and consumed, and peek waits for more only when nothing new
 * is there; the responses are written into the stream's buffer and go out
 * in one send per batch, at the drain. */
static intptr_t http_hello_connection(void *arg)
{
    struct http_conn *c = arg;
    const struct http_server *srv = c->server;
    enum http_wait wait = HTTP_WAIT_HEAD; /* the first request's head */
    size_t scan = 0;
    uint64_t discard = 0; /* body bytes still to skip */
    bool open = true, linger = false;
    int status = 0;

    /* The read limit holds a head of HTTP_MAX_HEADERS with room to spare;
     * the high mark bounds what a client that does not read makes us keep. */
    eddy_stream_options o =
        EDDY_STREAM_OPTIONS_INIT(.limit = HTTP_IN_SIZE, .high_mark = HTTP_OUT_SIZE);
    eddy_stream *st;
    int err = eddy_stream_open(&st, c->sock, &o); /* takes the socket, even when it fails */
    free(c);
    if (err < 0) return 0;

    /* Every await below is bounded by the scope's deadline: when it passes,
     * the peek or drain returns -ECANCELED and the connection closes. */
    eddy_timeout scope;
    bool scoped =
        eddy_timeout_begin(&scope, srv->header_timeout > 0 ? srv->header_timeout : -1) == 0;
    if (!scoped) open = false; /* no memory for a deadline: close rather than wait without one */
    while (open) {
        const void *data;
        size_t len;
        if (eddy_stream_peek(st, &data, &len) < 0 || len == 0) break; /* EOF, error, deadline */
        const char *in = data;
        size_t start = 0;
        http_refresh();
        int served = 0; /* requests answered from this peek */
        /* every complete request in the buffer, in order */
        for (;;) {
            if (discard) {
                size_t take = len - start < discard ? len - start : (size_t)discard;
                start += take;
                discard -= take;
                if (discard) break;
            }
            if (start == len) break;
            size_t head = http_head_end(in + start, len - start, &scan);
            if (head == 0) {
                if (len - start >= HTTP_MAX_HEADERS) status = 431;
                if (!status) break;
            } else if (head > HTTP_MAX_HEADERS) {
                status = 431;
            }
            struct http_req req;
            if (!status) status = http_parse_head(in + start, head, &req);
            char out[HTTP_RESPONSE_MAX];
            if (status) {
                (void)eddy_stream_write(st, out, http_response(out, status, false)); /* closing */
                open = false;
                break;
            }
            size_t n = http_response(out, 200, req.keep_alive);
            if (req.head) n -= sizeof(HELLO_BODY) - 1; /* the headers only */
            if (eddy_stream_write(st, out, n) < 0) {
                open = false;
                break;
            }
            served++;
            start += head;
            scan = 0;
            discard = req.content_length;
            if (!req.keep_alive) {
                open = false;
                break;
            }
        }
        /* What comes next, and its deadline, which also bounds the drain
         * below: the next request (idle), a body, or a head begun. A head's
         * deadline runs from its first byte; the others from now. */
        enum http_wait next = discard       ? HTTP_WAIT_BODY
                              : start < len ? HTTP_WAIT_HEAD
                                            : HTTP_WAIT_IDLE;
        if (next != HTTP_WAIT_HEAD || wait != HTTP_WAIT_HEAD || served) {
            http_deadline(&scope, next == HTTP_WAIT_HEAD ? srv->header_timeout : srv->idle_timeout);
        }
        wait = next;
        /* closing on our side with requests unread would reset the
         * connection, and the client could lose the responses: linger */
        if (!open) linger = status != 0 || start < len;
        (void)eddy_stream_consume(st, start); /* the unparsed rest stays buffered */
        if (eddy_stream_drain(st) < 0) {      /* the batch goes out in one send */
            linger = false;
            break;
        }
    }
    if (linger) {
        if (scoped) (void)eddy_timeout_end(&scope); /* the linger has its own limit */
        http_linger_close(st);
    } else {
        (void)eddy_stream_close(st); /* sends the rest within the deadline */
        if (scoped) (void)eddy_timeout_end(&scope);
    }
    return 0;
}

/* Accepts on server->listener (which the caller keeps and closes) until an
 * error or cancellation, a detached task per connection. Returns the error. */
static intptr_t http_hello_serve(void *arg)
{
    const struct http_server *srv = arg;
    for (;;) {
        eddy_sock *sock;
        int err = eddy_accept(srv->listener, &sock);
        if (err < 0) return err;
        struct http_conn *c = calloc(1, sizeof(*c));
        if (c) {
            c->server = srv;
            c->sock = sock;
        }
        eddy_task *t = c ? eddy_spawn(NULL, http_hello_connection, c) : NULL;
        if (t) {
            eddy_task_detach(t);
        } else {
            free(c);
            eddy_sock_close(sock);
        }
    }
}

#ifndef HTTP_HELLO_NO_MAIN
struct http_main {
    uint16_t port;
    struct http_server server;
};

static intptr_t server_main(void *arg)
{
    struct http_main *m = arg;
    int err = eddy_tcp_listen(&m->server.listener, "127.0.0.1", m->port, 0);
    if (err < 0) {
        fprintf(stderr, "http-hello: listen: %s\n", eddy_strerror(err));
        return err;
    }
    err = (int)http_hello_serve(&m->server);
    fprintf(stderr, "http-hello: accept: %s\n", eddy_strerror(err));
    eddy_sock_close(m->server.listener);
    return err;
}

/* Seconds (a decimal, >= 0) as ns; -1 if s is not one. */
static int64_t parse_seconds(const char *s)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end || !(v >= 0 && v <= 1e6)) return -1;
    return (int64_t)(v * HTTP_NS_PER_SEC);
}

/* --threads: each loop copies the settings and listens on the port itself. */
static intptr_t thread_main(void *arg)
{
    const struct http_main *shared = arg;
    struct http_main m = *shared;
    eddy_listen_options o = EDDY_LISTEN_OPTIONS_INIT(.reuseport = true);
    int err = eddy_tcp_listen_opts(&m.server.listener, "127.0.0.1", m.port, &o);
    if (err < 0) {
        fprintf(stderr, "http-hello: listen: %s\n", eddy_strerror(err));
        return err;
    }
    err = (int)http_hello_serve(&m.server);
    fprintf(stderr, "http-hello: accept: %s\n", eddy_strerror(err));
    eddy_sock_close(m.server.listener);
    return err;
}

int main(int argc, char **argv)
{
    struct http_main m = {
        .server = {.header_timeout = 10 * HTTP_NS_PER_SEC, .idle_timeout = 60 * HTTP_NS_PER_SEC}};
    const char *usage = "usage: %s [-H header_seconds] [-I idle_seconds] [-t threads] [port]\n";
    long threads = 0;
    for (int i = 1; i < argc; i++) /* --threads N is -t N */
        if (strcmp(argv[i], "--threads") == 0) argv[i] = "-t";
    int opt;
    while ((opt = getopt(argc, argv, "H:I:t:")) != -1) {
        if (opt == 't') {
            char *end;
            threads = strtol(optarg, &end, 10);
            if (*end || threads < 1 || threads > 1024) {
                fprintf(stderr, usage, argv[0]);
                return 2;
            }
            continue;
        }
        int64_t *limit = opt == 'H'   ? &m.server.header_timeout
                         : opt == 'I' ? &m.server.idle_timeout
                                      : NULL;
        if (!limit || (*limit = parse_seconds(optarg)) < 0) {
            fprintf(stderr, usage, argv[0]);
            return 2;
        }
    }
    if (argc - optind > 1) {
        fprintf(stderr, usage, argv[0]);
        return 2;
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    int port = optind < argc ? atoi(argv[optind]) : 8080;
    if (port <= 0 || port > 65535) {
        fprintf(stderr, "http-hello: bad port %s\n", argv[optind]);
        return 2;
    }
    m.port = (uint16_t)port;
    intptr_t result = 0;
    int err = threads ? eddy_run_threads((unsigned)threads, thread_main, &m)
                      : eddy_run(server_main, &m, &result);
    if (err < 0) fprintf(stderr, "http-hello: %s\n", eddy_strerror(err));
    return err < 0 || result < 0 ? 1 : 0;
}
#endif
