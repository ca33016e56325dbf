/* SPDX-License-Identifier: MIT */
/* Pipes and terminals as eddy sockets, and the processes whose stdio they
 * carry: what lib/net.c, lib/fs.c, lib/pipe.c and lib/process.c share. */
#ifndef EDDY_PIPE_H
#define EDDY_PIPE_H

#include "internal.h"

/* POSIX only. Makes op, a READ or WRITE at offset -1 on fd (a FIFO, pipe end or
 * terminal), run where it can be cancelled: natively where the loop's
 * backend reads files itself (io_uring; the fd is then left blocking), else
 * as a RECV or SEND marked EDDY_OP_F_PIPE on the fd made O_NONBLOCK
 * (readiness backends). *nonblocking is what eddy last set on the fd. 0 or
 * a negative code. */
#ifndef _WIN32
int eddy__pipe_route(struct eddy_loop *loop, struct eddy_op *op, bool *nonblocking);
#endif
/* An eddy_sock over fd (a HANDLE on Windows), which it owns from now on
 * (-ENOMEM leaves it to the caller). pipe: a pipe end or terminal, read and
 * written as a file (read(2) and write(2) through eddy__pipe_route; ReadFile
 * and WriteFile on Windows); else a socket of the given family and type.
 * 0, -ENOMEM. */
int eddy__sock_adopt(struct eddy_sock **out, intptr_t fd, int family, int type, bool pipe);
/* Where s is kept by an owner: eddy_sock_close sets *slot to NULL, so the
 * owner never closes it twice. */
void eddy__sock_set_owner(struct eddy_sock *s, struct eddy_sock **slot);
bool eddy__sock_is_pipe(const struct eddy_sock *s);
/* Turns op, a SEND on s prepared outside a socket call (a stream's), into
 * what a pipe end needs when s is one (a WRITE, routed as eddy_send's
 * are); leaves a socket's alone. 0 or a negative code. */
int eddy__sock_route_send(struct eddy_sock *s, struct eddy_loop *loop, struct eddy_op *op);
/* Where st is kept by an owner (a process's stdio): eddy_stream_close sets
 * *slot to NULL, so the owner never closes it twice (lib/stream.c). */
void eddy__stream_set_owner(eddy_stream *st, eddy_stream **slot);

/* What the spawners on every platform share (lib/process.c): the checks of
 * out, the options (user read into o; eddy__process_fd_open, the
 * platform's, says whether an EDDY_STDIO_FD fd is open) and the loop every
 * platform makes first;
 * whether o pipes
 * any of the child's stdio; a stream over s, the parent's end of stdio slot
 * i, in stdio[i], which NULLs itself when closed (a failure closes s); and
 * closing those left. */
int eddy__process_begin(eddy_process **out, const eddy_process_options *user,
                        eddy_process_options *o);
bool eddy__process_fd_open(intptr_t fd);
bool eddy__process_wants_pipes(const eddy_process_options *o);
/* What every platform's struct eddy_process starts with. */
struct eddy__process_head {
    eddy_stream *stdio[3]; /* the parent's ends of piped stdio; NULL once closed */
};
int eddy__process_stdio_stream(eddy_stream **stdio, int i, struct eddy_sock *s);
void eddy__process_stdio_close(eddy_stream **stdio);

#ifdef _WIN32
/* A named pipe with a unique name (lib/pipe_win.c): *server, overlapped and
 * not inheritable, reads when server_reads (else writes); *client the other
 * way, overlapped and inheritable as asked. 0 or a negative code. */
int eddy__win_pipe_pair(intptr_t *server, intptr_t *client, bool server_reads,
                        bool client_overlapped, bool client_inherited);
#endif

/* Whether this system can spawn children and see them exit (pidfds on
 * Linux 5.3+): what each POSIX backend answers for EDDY_CAP_SUBPROCESS. */
eddy_support eddy__subprocess_support(void);

#endif /* EDDY_PIPE_H */
