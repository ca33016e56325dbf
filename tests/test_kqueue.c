/* SPDX-License-Identifier: MIT */
/* What only the kqueue backend does; the behaviour suites run on it like on
 * every backend, these look at its own paths: the changelist, applied in the
 * next poll, growing past the event list; an arm the kernel refuses
 * completing its op; more readiness than the event list holds (which
 * libkqueue would drop). Skipped where kqueue cannot run.
 *
 * This suite chooses its backend itself, so tests/run-tap.sh runs it once. */
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

#include "helpers.h"

static eddy_loop *kqueue_loop(unsigned queue_depth)
{
    int err = eddy_backend_available("kqueue");
    if (err < 0) cr_skip_test("kqueue cannot run here: %s", eddy_strerror(err));
    eddy_loop_options opts = {.backend = "kqueue", .queue_depth = queue_depth};
    eddy_loop *loop = NULL;
    err = eddy_loop_new(&loop, &opts);
    cr_assert(eq(int, err, 0), "eddy_loop_new(kqueue): %s", eddy_strerror(err));
    cr_assert(eq(str, (char *)eddy_loop_backend(loop), "kqueue"));
    return loop;
}

/* ---- many arms in one iteration ------------------------------------------------------- */

#define RECEIVERS 64 /* changes in one poll, against an event list of 8 */

struct receiver {
    eddy_sock *sock;
    char buf[16];
    ssize_t got;
};

static intptr_t receive_one(void *arg)
{
    struct receiver *r = arg;
    r->got = eddy_recvfrom(r->sock, r->buf, sizeof r->buf, NULL);
    return r->got < 0 ? r->got : 0;
}

static intptr_t many_receivers_main(void *arg)
{
    static struct receiver receivers[RECEIVERS];
    eddy_task *tasks[RECEIVERS];
    for (int i = 0; i < RECEIVERS; i++) {
        receivers[i] = (struct receiver){.got = -1};
        cr_assert(eq(int, eddy_udp_bind(&receivers[i].sock, "127.0.0.1", 0), 0));
    }
    /* All of them start, find nothing and park in the same iteration: their
     * arms wait in the changelist together. */
    for (int i = 0; i < RECEIVERS; i++)
        cr_assert(ne(ptr, tasks[i] = eddy_spawn(NULL, receive_one, &receivers[i]), NULL));
    cr_assert(eq(int, eddy_yield(), 0));
    cr_assert(eq(int, eddy_yield(), 0));
    for (int i = 0; i < RECEIVERS; i++)
        cr_assert(eq(int, (int)receivers[i].got, -1), "receiver %d did not wait", i);

    eddy_sock *sender;
    cr_assert(eq(int, eddy_udp_bind(&sender, "127.0.0.1", 0), 0));
    for (int i = 0; i < RECEIVERS; i++) {
        char msg[16];
        int len = snprintf(msg, sizeof msg, "datagram %d", i);
        struct sockaddr_storage to;
        cr_assert(eq(int,
                     eddy_addr_parse(&to, "127.0.0.1", (uint16_t)eddy_sock_port(receivers[i].sock)),
                     0));
        cr_assert(eq(sz, (size_t)eddy_sendto(sender, msg, (size_t)len, (struct sockaddr *)&to),
                     (size_t)len));
    }
    for (int i = 0; i < RECEIVERS; i++) {
        intptr_t result = -1;
        cr_assert(eq(int, eddy_task_join(tasks[i], &result), 0), "receiver %d", i);
        char expected[16];
        int len = snprintf(expected, sizeof expected, "datagram %d", i);
        cr_assert(eq(sz, (size_t)receivers[i].got, (size_t)len), "receiver %d", i);
        cr_assert(eq(int, memcmp(receivers[i].buf, expected, (size_t)len), 0), "receiver %d", i);
        cr_assert(eq(int, eddy_sock_close(receivers[i].sock), 0));
    }
    cr_assert(eq(int, eddy_sock_close(sender), 0));
    return 0;
}

Test(kqueue, changelist_longer_than_the_event_list, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = kqueue_loop(8);
    intptr_t result = -1;
    cr_assert(eq(int, run_task(loop, many_receivers_main, NULL, &result), 0));
    cr_assert(eq(i64, (int64_t)result, 0));
    eddy_loop_free(loop);
}

/* ---- an arm refused ----------------------------------------------------------------------- */

struct victim {
    eddy_sock *sock;
    ssize_t got;
};

static intptr_t receive_from_victim(void *arg)
{
    struct victim *v = arg;
    char buf[8];
    v->got = eddy_recvfrom(v->sock, buf, sizeof buf, NULL);
    return 0;
}

/* Runs after receive_from_victim parked, before the loop polls: the arm
 * waiting in the changelist names a closed descriptor. */
static intptr_t close_behind_its_back(void *arg)
{
    struct victim *v = arg;
    cr_assert(eq(int, close((int)eddy_sock_fd(v->sock)), 0));
    return 0;
}

static intptr_t refused_arm_main(void *arg)
{
    struct victim v = {.got = 1};
    cr_assert(eq(int, eddy_udp_bind(&v.sock, "127.0.0.1", 0), 0));
    eddy_task *receiver = eddy_spawn(NULL, receive_from_victim, &v);
    eddy_task *closer = eddy_spawn(NULL, close_behind_its_back, &v);
    cr_assert(ne(ptr, receiver, NULL));
    cr_assert(ne(ptr, closer, NULL));
    cr_assert(eq(int, eddy_task_join(closer, NULL), 0));
    cr_assert(eq(int, eddy_task_join(receiver, NULL), 0));
    cr_assert(eq(i64, (int64_t)v.got, -EBADF), "the kernel's refusal reaches the op");
    /* Its descriptor is gone already: closing reports that, and frees the socket. */
    cr_assert(eq(int, eddy_sock_close(v.sock), -EBADF));
    return 0;
}

Test(kqueue, arm_refused_in_the_poll_completes_the_op, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = kqueue_loop(0);
    intptr_t result = -1;
    cr_assert(eq(int, run_task(loop, refused_arm_main, NULL, &result), 0));
    cr_assert(eq(i64, (int64_t)result, 0));
    eddy_loop_free(loop);
}

/* ---- a full event list ------------------------------------------------------------------ */

#define PAIRS 32 /* sockets watched both ways, against an event list of 4 */

struct pair_reader {
    eddy_sock *sock;
    char byte;
    ssize_t got;
};

static intptr_t read_one_byte(void *arg)
{
    struct pair_reader *r = arg;
    r->got = eddy_recv(r->sock, &r->byte, 1);
    return r->got < 0 ? r->got : 0;
}

/* Each client socket is watched for output (its connect waited) and for
 * input (a receive waits), then every one becomes readable at once. Under
 * libkqueue each readiness then comes as two kevents, more than the event
 * list holds: none of the receives may be forgotten. */
static intptr_t full_event_list_main(void *arg)
{
    static struct pair_reader readers[PAIRS];
    eddy_sock *listener, *servers[PAIRS];
    eddy_task *tasks[PAIRS];
    cr_assert(eq(int, eddy_tcp_listen(&listener, "127.0.0.1", 0, PAIRS), 0));
    uint16_t port = (uint16_t)eddy_sock_port(listener);
    for (int i = 0; i < PAIRS; i++) {
        readers[i] = (struct pair_reader){.got = -1};
        cr_assert(eq(int, eddy_tcp_connect(&readers[i].sock, "127.0.0.1", port), 0));
        cr_assert(eq(int, eddy_accept(listener, &servers[i]), 0));
    }
    for (int i = 0; i < PAIRS; i++)
        cr_assert(ne(ptr, tasks[i] = eddy_spawn(NULL, read_one_byte, &readers[i]), NULL));
    cr_assert(eq(int, eddy_yield(), 0));
    cr_assert(eq(int, eddy_yield(), 0));
    for (int i = 0; i < PAIRS; i++) {
        char byte = (char)('a' + i % 26);
        cr_assert(eq(sz, (size_t)eddy_send(servers[i], &byte, 1), 1));
    }
    for (int i = 0; i < PAIRS; i++) {
        cr_assert(eq(int, eddy_task_join(tasks[i], NULL), 0), "reader %d", i);
        cr_assert(eq(sz, (size_t)readers[i].got, 1), "reader %d", i);
        cr_assert(eq(int, readers[i].byte, 'a' + i % 26), "reader %d", i);
        cr_assert(eq(int, eddy_sock_close(readers[i].sock), 0));
        cr_assert(eq(int, eddy_sock_close(servers[i]), 0));
    }
    cr_assert(eq(int, eddy_sock_close(listener), 0));
    return 0;
}

Test(kqueue, readiness_beyond_a_full_event_list_is_not_lost, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = kqueue_loop(4);
    intptr_t result = -1;
    cr_assert(eq(int, run_task(loop, full_event_list_main, NULL, &result), 0));
    cr_assert(eq(i64, (int64_t)result, 0));
    eddy_loop_free(loop);
}
