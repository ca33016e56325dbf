/* SPDX-License-Identifier: MIT */
/* For tests/eddy-ps.sh: a process with an eddy_debug_registry of its own,
 * not eddy's, whose loops are garbage, for eddy-ps to read without hanging
 * or crashing. No libeddy: the registry is this file's, with a made-up
 * layout over a buffer of pseudo-random words (half of them pointers back
 * into the buffer, so walks go on instead of failing at once).
 *
 *   eddy-ps-garbage tasks   two loops: one all garbage, one whose task list
 *                           turns into a cycle that does not pass its head
 *   eddy-ps-garbage loops   the loop list itself ends in a cycle
 *
 * It prints "ready" and waits to be killed. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "registry.h"

#define WORDS (1 << 17) /* 1 MiB */

static uint64_t garbage[WORDS];

#define F(off, sz)                                                                                 \
    {                                                                                              \
        (off), (sz)                                                                                \
    }

struct eddy__debug_registry eddy_debug_registry = {
    .magic = {'e', 'd', 'd', 'y', 'l', 'o', 'o', 'p'},
    .version = EDDY__REGISTRY_VERSION,
    .size = sizeof(struct eddy__debug_registry),
    .pointer_size = sizeof(void *),
    .layout =
        {
            /* a loop: tasks {prev, next} at 0, its link at 16, then words */
            .loop_tasks = F(0, 16),
            .loop_link = F(16, 16),
            .loop_current = F(32, 8),
            .loop_backend = F(40, 8),
            .loop_now = F(48, 8),
            .loop_in_flight = F(56, 8),
            .loop_owner = F(64, 8),
            .loop_iterations = F(72, 8),
            .loop_allocations = F(80, 8),
            .loop_submitted = F(88, 8),
            .loop_completed = F(96, 8),
            .backend_name = F(0, 8),
            .list_prev = F(0, 8),
            .list_next = F(8, 8),
            /* a task: its link at 16 */
            .task_size = 128,
            .task_link = F(16, 16),
            .task_id = F(32, 8),
            .task_name = F(40, 8),
            .task_fn = F(48, 8),
            .task_state = F(56, 1),
            .task_wait_kind = F(57, 1),
            .task_cancelled = F(58, 1),
            .task_wait_data = F(64, 8),
            .task_group = F(72, 8),
            .task_scope = F(80, 8),
            .task_scope_deadline = F(88, 8),
            .task_scope_armed = F(96, 4),
            .task_stack = F(104, 8),
            .task_sp = F(112, 8),
            .stack_lo = F(0, 8),
            .stack_size = F(8, 8),
            .saved_fp = 5,
            .saved_pc = 6,
            .future_is_task = F(0, 1),
            .timer_deadline = F(0, 8),
            .op_kind = F(0, 1),
            .op_fd = F(8, 8),
            .op_state = F(1, 1),
            .future_wait_future = F(16, 8),
            .gather_futures = F(8, 8),
            .gather_count = F(16, 8),
            .sync_object = F(24, 8),
            .sync_kind = F(32, 1),
            .lock_owner = F(16, 8),
            .name_max = 31,
        },
};

static uint64_t next_random(void)
{
    static uint64_t x = 0x9e3779b97f4a7c15u;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return x;
}

static uint64_t addr(void *p)
{
    return (uint64_t)(uintptr_t)p;
}

/* Links node (a {prev, next} pair) after prev in a list. */
static void link_after(uint64_t *prev, uint64_t *node)
{
    node[0] = addr(prev);
    node[1] = prev[1];
    ((uint64_t *)(uintptr_t)prev[1])[0] = addr(node);
    prev[1] = addr(node);
}

int main(int argc, char **argv)
{
    for (size_t i = 0; i < WORDS; i++) {
        uint64_t r = next_random();
        garbage[i] = r & 1 ? addr(&garbage[(r >> 8) % WORDS]) : r;
    }
    uint64_t *head = (uint64_t *)&eddy_debug_registry.loops;
    head[0] = head[1] = addr(head);
    uint64_t *loop1 = &garbage[1000], *loop2 = &garbage[2000];
    link_after(head, loop1 + 2);
    link_after(loop1 + 2, loop2 + 2);
    if (argc > 1 && strcmp(argv[1], "loops") == 0) {
        uint64_t *loop3 = &garbage[3000];
        link_after(loop2 + 2, loop3 + 2);
        loop3[3] = addr(loop3 + 2); /* loop3's next: itself */
    } else {
        /* loop2's tasks: head -> t1 -> t2 -> t1 -> ... */
        uint64_t *t1 = &garbage[5000], *t2 = &garbage[6000];
        loop2[0] = loop2[1] = addr(loop2);
        link_after(loop2, t1 + 2);
        link_after(t1 + 2, t2 + 2);
        t2[3] = addr(t1 + 2);
    }
    printf("ready\n");
    fflush(stdout);
    for (;;)
        pause();
}
