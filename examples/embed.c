/* SPDX-License-Identifier: MIT */
/* An eddy loop embedded in a plain poll() loop, as a GUI or game loop would
 * embed it: the foreign loop also watches stdin (a line typed is echoed),
 * and calls eddy_loop_run_once(loop, 0) whenever eddy's descriptor is
 * readable. The eddy side runs a task that ticks every 200 ms, five times. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <unistd.h>

#include "eddy.h"

static intptr_t ticker(void *arg)
{
    (void)arg;
    for (int i = 1; i <= 5; i++) {
        int err = eddy_sleep(200 * 1000 * 1000);
        if (err < 0) return err;
        printf("eddy: tick %d\n", i);
        fflush(stdout);
    }
    return 0;
}

int main(void)
{
    eddy_loop *loop;
    int err = eddy_loop_new(&loop, NULL);
    if (err < 0) {
        fprintf(stderr, "eddy_loop_new: %s\n", eddy_strerror(err));
        return 1;
    }
    intptr_t fd = eddy_loop_fd(loop);
    if (fd < 0) {
        fprintf(stderr, "eddy_loop_fd: %s\n", eddy_strerror((int)fd));
        eddy_loop_free(loop);
        return 1;
    }
    eddy_task *t = eddy_spawn(loop, ticker, NULL);
    if (!t) {
        eddy_loop_free(loop);
        return 1;
    }
    /* The foreign loop: until eddy has nothing left to do. */
    int in = 0; /* stdin, until it ends */
    while ((err = eddy_loop_run_once(loop, 0)) > 0) {
        struct pollfd fds[2] = {{.fd = (int)fd, .events = POLLIN}, {.fd = in, .events = POLLIN}};
        if (poll(fds, 2, -1) < 0 && errno != EINTR) break;
        if (fds[1].revents & (POLLIN | POLLHUP)) {
            char line[256];
            ssize_t n = read(0, line, sizeof line);
            if (n > 0) printf("poll loop: read %zd bytes\n", n);
            if (n <= 0) in = -1;
        }
    }
    intptr_t result = -1;
    int joined = eddy_task_join(t, &result);
    eddy_loop_free(loop);
    if (err < 0 || joined < 0) {
        fprintf(stderr, "embed: %s\n", eddy_strerror(err < 0 ? err : joined));
        return 1;
    }
    puts("eddy loop done");
    return 0;
}
