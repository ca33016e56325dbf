/* SPDX-License-Identifier: MIT */
/* Servers: asyncio's start_server (docs/streams.md). One task accepts; each
 * connection gets a task that wraps it in a stream, runs the handler and
 * closes the stream. The connection tasks are the server's group: close
 * stops the accepting task, wait waits for all of them, and a cancelled wait
 * cancels them. Unlike eddy_group, a task that ended is forgotten at once (a
 * server outlives millions of connections), and a failing handler does not
 * cancel the others (asyncio's start_server neither). */
#include <stdio.h>
#include <stdlib.h>
#ifndef _WIN32
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#define NATIVE_SOCKET(fd) ((int)(fd))
#else
#define NATIVE_SOCKET(fd) ((SOCKET)(fd))
#endif

#include "internal.h"

struct connection {
    struct eddy__list link; /* srv->connections */
    eddy_server *srv;
    eddy_sock *sock;
    eddy_task *task; /* detached; valid while linked (the task has not ended) */
};

struct eddy_server {
    eddy_sock *listener;
    intptr_t (*handler)(eddy_stream *, void *);
    void *arg;
    struct eddy_loop *loop;
    eddy_task *acceptor;           /* detached; NULL once it ended */
    struct eddy__list connections; /* struct connection */
    bool closed;                   /* close was called, or accepting failed */
    int error;                     /* why accepting stopped, if not close */
    struct eddy_task *waiter;      /* in eddy_server_wait */
    char label[16];                /* "server:PORT", its tasks' names begin with it */
    uint64_t accepted;             /* connections so far: they are named conn-1, conn-2, ... */
};

/* Wakes the waiter once the acceptor and every connection have ended. */
static void server_check_done(eddy_server *srv)
{
    if (srv->waiter && !srv->acceptor && eddy__list_empty(&srv->connections))
        eddy__task_wake(srv->waiter, 0);
}

static intptr_t connection_run(void *arg)
{
    struct connection *c = arg;
    eddy_server *srv = c->srv;
    eddy_stream *st;
    if (eddy_stream_open(&st, c->sock, NULL) == 0) { /* a failed open closed the socket */
        (void)srv->handler(st, srv->arg);
        (void)eddy_stream_close(st);
    }
    eddy__list_remove(&c->link);
    free(c);
    server_check_done(srv);
    return 0;
}

static void connection_start(eddy_server *srv, eddy_sock *sock)
{
    struct connection *c = malloc(sizeof(*c));
    if (c) {
        c->srv = srv;
        c->sock = sock;
        c->task = eddy_spawn(srv->loop, connection_run, c);
    }
    if (!c || !c->task) { /* out of memory: this client is dropped, the server goes on */
        free(c);
        (void)eddy_sock_close(sock);
        return;
    }
    char name[EDDY_TASK_NAME_MAX + 1];
    snprintf(name, sizeof name, "%s/conn-%llu", srv->label, (unsigned long long)++srv->accepted);
    (void)eddy_task_set_name(c->task, name);
    eddy_task_detach(c->task);
    eddy__list_push_back(&srv->connections, &c->link);
}

static intptr_t accept_run(void *arg)
{
    eddy_server *srv = arg;
    while (!srv->closed) {
        eddy_sock *sock;
        int err = eddy_accept(srv->listener, &sock);
        if (err == 0) {
            connection_start(srv, sock);
        } else if (err != -ECANCELED || !srv->closed) {
            if (err != -ECANCELED) srv->error = err;
            break;
        }
    }
    srv->closed = true;
    (void)eddy_sock_close(srv->listener);
    srv->listener = NULL;
    srv->acceptor = NULL;
    server_check_done(srv);
    return 0;
}

/* "server:PORT" for a TCP listener, else "server". */
static void server_label(eddy_server *srv)
{
    struct sockaddr_storage addr;
    socklen_t len = sizeof addr;
    int port = -1;
    if (getsockname(NATIVE_SOCKET(eddy_sock_fd(srv->listener)), (struct sockaddr *)&addr, &len) ==
        0) {
        if (addr.ss_family == AF_INET) port = ntohs(((struct sockaddr_in *)&addr)->sin_port);
        if (addr.ss_family == AF_INET6) port = ntohs(((struct sockaddr_in6 *)&addr)->sin6_port);
    }
    if (port >= 0)
        snprintf(srv->label, sizeof srv->label, "server:%d", port);
    else
        snprintf(srv->label, sizeof srv->label, "server");
}

EDDY_API int eddy_serve(eddy_server **out, eddy_sock *listener,
                        intptr_t (*handler)(eddy_stream *, void *), void *arg)
{
    if (out) *out = NULL;
    if (!eddy__current_task()) return -EPERM;
    if (!out || !listener || !handler) return -EINVAL;
    eddy_server *srv = calloc(1, sizeof(*srv));
    if (!srv) return -ENOMEM;
    srv->listener = listener;
    srv->handler = handler;
    srv->arg = arg;
    srv->loop = eddy_loop_current();
    eddy__list_init(&srv->connections);
    srv->acceptor = eddy_spawn(srv->loop, accept_run, srv);
    if (!srv->acceptor) {
        free(srv);
        return -ENOMEM;
    }
    server_label(srv);
    char name[EDDY_TASK_NAME_MAX + 1];
    snprintf(name, sizeof name, "%s/accept", srv->label);
    (void)eddy_task_set_name(srv->acceptor, name);
    eddy_task_detach(srv->acceptor);
    *out = srv;
    return 0;
}

EDDY_API int eddy_server_close(eddy_server *srv)
{
    if (!srv) return -EINVAL;
    if (srv->closed) return 0;
    srv->closed = true;
    if (srv->acceptor) eddy_task_cancel(srv->acceptor);
    return 0;
}

/* The waiting task was cancelled: close, cancel every handler, and go on
 * waiting for them (no handler outlives its server). */
static void server_wait_abort(struct eddy_task *t)
{
    eddy_server *srv = t->wait_data;
    (void)eddy_server_close(srv);
    struct eddy__list *node;
    for (node = srv->connections.next; node != &srv->connections; node = node->next)
        eddy_task_cancel(eddy__container_of(node, struct connection, link)->task);
}

EDDY_API int eddy_server_wait(eddy_server *srv)
{
    struct eddy_task *t = eddy__current_task();
    if (!t) return -EPERM;
    if (!srv) return -EINVAL;
    if (srv->waiter) return -EBUSY;
    bool cancelled = eddy__task_cancelled(t);
    if (cancelled) {
        t->wait_data = srv;
        server_wait_abort(t);
    }
    while (srv->acceptor || !eddy__list_empty(&srv->connections)) {
        srv->waiter = t;
        t->abort_wait = server_wait_abort;
        t->wait_data = srv;
        eddy__task_suspend(t);
        srv->waiter = NULL;
    }
    int err = cancelled || eddy__task_cancelled(t) ? -ECANCELED : srv->error;
    free(srv);
    return err;
}
