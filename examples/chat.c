/* SPDX-License-Identifier: MIT */
/* A line-protocol chat server on eddy streams.
 *
 *     ./examples/chat [port]          (default 7000)
 *     nc 127.0.0.1 7000               (first line: your name; then chat)
 *
 * Each line a client sends goes to every other client as "name: line".
 * "/who" lists who is here, "/quit" leaves. Writes to the others never wait
 * (a stream buffers them and the loop sends them); a client that does not
 * read and lets more than MAX_BACKLOG bytes pile up for it is disconnected,
 * so a slow reader cannot make the server's memory grow. Lines longer than
 * the read limit are refused with a message, not buffered without bound. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eddy.h"

#define MAX_BACKLOG (256 * 1024) /* bytes waiting for one client before it is dropped */
#define MAX_LINE    1024
#define MAX_NAME    32

struct member {
    struct member *prev, *next;
    eddy_stream *st;
    eddy_task *task;
    char name[MAX_NAME];
    bool dropped;
};

static struct member room = {.prev = &room, .next = &room}; /* the list's head */

/* Queues text for m; a member whose backlog is too big is dropped: its task
 * is cancelled, its readline returns, and the server closes its stream. */
static void send_to(struct member *m, const char *text, size_t len)
{
    if (m->dropped) return;
    if (eddy_stream_write(m->st, text, len) < 0 ||
        eddy_stream_write_buffer_size(m->st) > MAX_BACKLOG) {
        m->dropped = true;
        eddy_task_cancel(m->task);
        fprintf(stderr, "chat: %s dropped (%zu bytes unread)\n", m->name,
                eddy_stream_write_buffer_size(m->st));
    }
}

static void broadcast(struct member *from, const char *text, size_t len)
{
    for (struct member *m = room.next; m != &room; m = m->next)
        if (m != from) send_to(m, text, len);
}

static void announce(struct member *who, const char *what)
{
    char line[MAX_NAME + 32];
    int n = snprintf(line, sizeof(line), "* %s %s\n", who->name, what);
    broadcast(who, line, (size_t)n);
}

static void who(struct member *m)
{
    for (struct member *o = room.next; o != &room; o = o->next) {
        char line[MAX_NAME + 8];
        int n = snprintf(line, sizeof(line), "- %s\n", o->name);
        send_to(m, line, (size_t)n);
    }
}

/* Reads a line without its newline (and a '\r' before it); the length,
 * -EPIPE at EOF, or another negative code. An overlong line is skipped and reported. */
static ssize_t read_line(struct member *m, char *line, size_t cap)
{
    for (;;) {
        ssize_t n = eddy_stream_readline(m->st, line, cap);
        if (n == -EOVERFLOW) { /* drop the rest of it, through its newline */
            char skip[4096];
            while ((n = eddy_stream_readline(m->st, skip, sizeof(skip))) == -EOVERFLOW)
                if (eddy_stream_read(m->st, skip, sizeof(skip)) <= 0) return -EPIPE;
            if (n < 0) return n;
            send_to(m, "* line too long\n", 16);
            continue;
        }
        if (n == 0) return -EPIPE;
        if (n < 0) return n;
        if (line[n - 1] == '\n') n--;
        if (n > 0 && line[n - 1] == '\r') n--;
        line[n] = '\0';
        return n;
    }
}

static intptr_t client(eddy_stream *st, void *arg)
{
    struct member m = {.st = st, .task = eddy_task_current()};
    char line[MAX_LINE + 2];
    const char *hello = "name? ";
    if (eddy_stream_write(st, hello, strlen(hello)) < 0) return 0;
    ssize_t n = read_line(&m, line, sizeof(line));
    if (n < 0) return 0;
    if (n == 0) strcpy(line, "anonymous");
    size_t name_len = strlen(line) < MAX_NAME - 1 ? strlen(line) : MAX_NAME - 1;
    memcpy(m.name, line, name_len); /* m.name was zeroed: terminated */
    m.prev = room.prev;             /* join the room */
    m.next = &room;
    room.prev->next = &m;
    room.prev = &m;
    announce(&m, "joined");
    while ((n = read_line(&m, line, sizeof(line))) >= 0) {
        if (n == 0) continue;
        if (strcmp(line, "/quit") == 0) break;
        if (strcmp(line, "/who") == 0) {
            who(&m);
            continue;
        }
        char out[MAX_NAME + MAX_LINE + 4];
        int len = snprintf(out, sizeof(out), "%s: %s\n", m.name, line);
        broadcast(&m, out, (size_t)len);
    }
    m.prev->next = m.next; /* leave */
    m.next->prev = m.prev;
    announce(&m, m.dropped ? "was too slow and was dropped" : "left");
    return 0; /* the server closes the stream */
}

static intptr_t serve(void *arg)
{
    uint16_t port = (uint16_t)(intptr_t)arg;
    eddy_sock *listener;
    int err = eddy_tcp_listen(&listener, NULL, port, 0);
    if (err < 0) {
        fprintf(stderr, "chat: listen on %u: %s\n", (unsigned)port, eddy_strerror(err));
        return err;
    }
    printf("chat: listening on port %d\n", eddy_sock_port(listener));
    fflush(stdout);
    eddy_server *srv;
    if ((err = eddy_serve(&srv, listener, client, NULL)) < 0) return err;
    return eddy_server_wait(srv); /* until the process is stopped */
}

int main(int argc, char **argv)
{
    long port = argc > 1 ? strtol(argv[1], NULL, 10) : 7000;
    if (port < 0 || port > 65535) {
        fprintf(stderr, "usage: %s [port]\n", argv[0]);
        return 2;
    }
    intptr_t result = 0;
    int err = eddy_run(serve, (void *)(intptr_t)port, &result);
    if (err < 0) fprintf(stderr, "chat: %s\n", eddy_strerror(err));
    return err < 0 || result < 0 ? 1 : 0;
}
