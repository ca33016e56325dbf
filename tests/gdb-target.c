/* SPDX-License-Identifier: MIT */
/* For tests/gdb-helper.sh: a loop with a named task asleep in a known
 * function, stopped with SIGTRAP from its main task so that gdb can look. */
#include <errno.h>
#include <signal.h>

#include "eddy.h"

intptr_t sleeping_for_gdb(void *arg);
intptr_t sleeping_for_gdb(void *arg)
{
    (void)arg;
    int err = eddy_sleep(3600 * (int64_t)1000000000);
    __asm__ volatile("" ::: "memory"); /* keeps this frame: no tail call */
    return err;
}

static intptr_t main_task(void *arg)
{
    (void)arg;
    eddy_task *t = eddy_spawn(NULL, sleeping_for_gdb, NULL);
    if (!t || eddy_task_set_name(t, "the-sleeper") < 0) return -1;
    (void)eddy_yield();
    (void)eddy_yield();
    raise(SIGTRAP);
    eddy_task_cancel(t);
    return eddy_task_join(t, NULL) == -ECANCELED ? 0 : -1;
}

int main(void)
{
    intptr_t result = -1;
    return eddy_run(main_task, NULL, &result) == 0 && result == 0 ? 0 : 1;
}
