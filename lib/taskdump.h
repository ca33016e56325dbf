/* SPDX-License-Identifier: MIT */
/* The task dump, written once for two readers: eddy_loop_dump reads its own
 * process's memory, eddy-ps another's with process_vm_readv. Both give the
 * layout table of lib/registry.h, a way to read memory and a way to name
 * code addresses; the walk (lib/taskdump.c) knows no struct of the library
 * but through the table, so eddy-ps needs none of its headers but
 * registry.h. */
#ifndef EDDY_TASKDUMP_H
#define EDDY_TASKDUMP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "registry.h"

struct eddy__dump_source {
    const struct eddy__debug_layout *layout;
    /* Copies len bytes at addr into buf: 0, or a negative errno (-EFAULT:
     * not all of it is mapped). */
    int (*read)(void *ctx, uint64_t addr, void *buf, size_t len);
    /* The name of the function starting at addr (a task's entry function)
     * into buf; false when unknown. */
    bool (*function_name)(void *ctx, uint64_t addr, char *buf, size_t len);
    /* Says where the return address pc is, into buf: "name+0xOFF",
     * "(file+0xOFF)" or "?". */
    void (*describe_return)(void *ctx, uint64_t pc, char *buf, size_t len);
    void *ctx;
    /* The frame pointer to walk the running task from, when the dump runs
     * on it (in process); 0 otherwise. */
    uint64_t running_fp;
    /* Whether the tasks can change under the walk (another process): the
     * walk is then checked and retried (lib/taskdump.c). */
    bool live;
};

/* Prints every task of the loop at address loop: id, name, state, what it
 * waits on, who awaits it, its backtrace, then the awaited-by tree (the
 * format docs/debugging.md shows). 0; -EIO when out failed; -ENOMEM; or the
 * read's error when the loop itself could not be read. */
int eddy__dump_loop(const struct eddy__dump_source *src, uint64_t loop, FILE *out);

#endif /* EDDY_TASKDUMP_H */
