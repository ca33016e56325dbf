/* SPDX-License-Identifier: MIT */
/* Prints the backends a loop can run on here, one name a line, in the
 * library's preference order; tests/run-tap.sh runs the behaviour suites once
 * on each. Backends that cannot run here are listed on stderr with why. */
#include <stdio.h>

#include "eddy.h"

int main(void)
{
    static const char *const names[] = {"io_uring", "epoll", "kqueue", "iocp"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        eddy_loop_options opts = {.backend = names[i]};
        eddy_loop *loop;
        int err = eddy_loop_new(&loop, &opts);
        if (err == 0) {
            printf("%s\n", names[i]);
            eddy_loop_free(loop);
        } else {
            fprintf(stderr, "%s: %s\n", names[i], eddy_strerror(err));
        }
    }
    return 0;
}
