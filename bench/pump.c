/* SPDX-License-Identifier: MIT */
/* bench/pump: bulk TCP throughput, the load for the proxy benchmark.
 *
 *   pump sink                              listens on 127.0.0.1, prints the port,
 *                                          reads and drops whatever comes
 *   pump send port seconds [connections]   sends 256 KiB writes to 127.0.0.1:port
 *                                          for `seconds` after 0.5 s of warm-up
 *
 * send prints one line: <Gbit/s> <bytes>. Blocking sockets, a thread per
 * connection: plain C, no eddy, the same on both sides of every run (direct,
 * or through examples/proxy). */
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define CHUNK (256 * 1024)

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *drain(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char *buf = malloc(CHUNK);
    while (buf && read(fd, buf, CHUNK) > 0)
        ;
    free(buf);
    close(fd);
    return NULL;
}

static int sink(void)
{
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof a) < 0 || listen(ls, 128) < 0 ||
        getsockname(ls, (struct sockaddr *)&a, &len) < 0) {
        perror("pump sink");
        return 1;
    }
    printf("%d\n", ntohs(a.sin_port));
    fflush(stdout);
    for (;;) {
        int fd = accept(ls, NULL, NULL);
        if (fd < 0) continue;
        pthread_t t;
        if (pthread_create(&t, NULL, drain, (void *)(intptr_t)fd) == 0) pthread_detach(t);
    }
}

struct sender {
    int port;
    double start, end; /* counting window */
    uint64_t counted;
};

static void *send_run(void *arg)
{
    struct sender *s = arg;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)s->port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
        perror("pump send: connect");
        exit(1);
    }
    char *buf = calloc(1, CHUNK);
    for (;;) {
        double t = now();
        if (t >= s->end) break;
        ssize_t n = write(fd, buf, CHUNK);
        if (n <= 0) {
            perror("pump send: write");
            exit(1);
        }
        if (t >= s->start) s->counted += (uint64_t)n;
    }
    free(buf);
    close(fd);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "sink") == 0) return sink();
    if (argc < 4 || strcmp(argv[1], "send") != 0) {
        fprintf(stderr, "usage: pump sink | pump send port seconds [connections]\n");
        return 2;
    }
    int port = atoi(argv[2]);
    double secs = atof(argv[3]);
    int conns = argc > 4 ? atoi(argv[4]) : 1;
    if (conns < 1 || conns > 64 || secs <= 0) return 2;
    struct sender s[64];
    pthread_t t[64];
    double start = now() + 0.5;
    for (int i = 0; i < conns; i++) {
        s[i] = (struct sender){.port = port, .start = start, .end = start + secs};
        pthread_create(&t[i], NULL, send_run, &s[i]);
    }
    uint64_t total = 0;
    for (int i = 0; i < conns; i++) {
        pthread_join(t[i], NULL);
        total += s[i].counted;
    }
    printf("%.2f %llu\n", (double)total * 8 / secs / 1e9, (unsigned long long)total);
    return 0;
}
