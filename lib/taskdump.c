/* SPDX-License-Identifier: MIT */
/* The task dump (lib/taskdump.h): first a snapshot of every task of a loop,
 * read field by field through the layout table, then the text. Every
 * pointer followed is bounded: lists end after MAX_TASKS nodes or at the
 * first node whose back link is not where it came from, frame walks stay
 * inside their task's stack and go up it, arrays are capped. In another
 * process the loop keeps running while it is read: its counters are read
 * before and after the walk, and a walk during which they moved (or that
 * met a broken link) is done again, a few times, before the last one is
 * printed with a warning. */
#include "taskdump.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define MAX_FRAMES   32
#define MAX_TASKS    (1u << 22)
#define MAX_GATHERED 4096 /* futures of one gather looked at */
#define MAX_NAME     64
#define MAX_DEPTH    32 /* of the awaited-by tree shown */
#define ATTEMPTS     8

enum {
    F_CANCELLED = 1 << 0,
    F_SCOPE = 1 << 1,          /* in a timeout scope, deadline in scope_deadline */
    F_OP_CANCELLING = 1 << 2,  /* the op it waits on is being cancelled */
    F_FUTURE_IS_TASK = 1 << 3, /* detail is a task's future */
    F_CURRENT = 1 << 4,        /* the loop's running task */
};

struct dump_task {
    uint64_t addr, id, fn, group, wait_data;
    /* by wait kind: sleep, its deadline; op, its fd; future, the future;
     * group, the group; sync, the object; gather, how many */
    uint64_t detail;
    uint64_t holder, holder_id; /* a lock waited on: the task holding it, its id */
    int64_t scope_deadline;
    size_t frames, n_frames;       /* in snapshot.pcs */
    size_t gathered, n_gathered;   /* in snapshot.futures */
    uint8_t state, wait_kind, sub; /* sub: the op's kind, the sync object's kind */
    uint8_t flags;
    char name[MAX_NAME];
};

struct edge {
    size_t child, parent;
    const char *how;
};

struct task_addr {
    uint64_t addr;
    size_t index;
};

struct snapshot {
    uint64_t loop, current, now, in_flight;
    char backend[32];
    struct dump_task *tasks;
    size_t n, cap;
    uint64_t *pcs, *futures;
    size_t n_pcs, cap_pcs, n_futures, cap_futures;
    struct task_addr *by_addr; /* the tasks sorted by address */
    struct edge *edges;
    size_t n_edges;
    ptrdiff_t *first; /* each task's first awaiter, or -1 */
};

/* ---- reading ------------------------------------------------------------------- */

static int read_field(const struct eddy__dump_source *src, uint64_t base,
                      struct eddy__debug_field f, uint64_t *value)
{
    unsigned char buf[8];
    if (f.size == 0 || f.size > sizeof buf) return -EINVAL;
    int err = src->read(src->ctx, base + f.offset, buf, f.size);
    if (err < 0) return err;
    switch (f.size) {
    case 1:
        *value = buf[0];
        break;
    case 2: {
        uint16_t v;
        memcpy(&v, buf, 2);
        *value = v;
        break;
    }
    case 4: {
        uint32_t v;
        memcpy(&v, buf, 4);
        *value = v;
        break;
    }
    case 8:
        memcpy(value, buf, 8);
        break;
    default:
        return -EINVAL;
    }
    return 0;
}

/* A field of a struct already read into buf (len bytes); 0 if outside it. */
static uint64_t field_in(const unsigned char *buf, size_t len, struct eddy__debug_field f)
{
    uint64_t v = 0;
    if (f.offset > len || f.size > len - f.offset) return 0;
    switch (f.size) {
    case 1:
        return buf[f.offset];
    case 2: {
        uint16_t x;
        memcpy(&x, buf + f.offset, 2);
        return x;
    }
    case 4: {
        uint32_t x;
        memcpy(&x, buf + f.offset, 4);
        return x;
    }
    case 8:
        memcpy(&v, buf + f.offset, 8);
        return v;
    }
    return 0;
}

/* Control characters (garbage, or a name meant to mislead) shown as '?'. */
static bool printable(char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f) *s = '?';
    return true;
}

/* A NUL-terminated string of at most max bytes at addr, into buf. */
static bool read_string(const struct eddy__dump_source *src, uint64_t addr, char *buf, size_t size,
                        size_t max)
{
    if (max >= size) max = size - 1;
    /* In process, byte by byte: no read past the string's allocation. In
     * another process, at once, then byte by byte near a mapping's end. */
    if (!src->live || src->read(src->ctx, addr, buf, max) < 0) {
        size_t i = 0;
        for (; i < max && src->read(src->ctx, addr + i, buf + i, 1) == 0 && buf[i]; i++)
            ;
        if (i == 0) return false;
        buf[i] = '\0';
        return printable(buf);
    }
    buf[max] = '\0';
    return printable(buf);
}

static int grow(void **items, size_t *cap, size_t need, size_t item_size)
{
    if (need <= *cap) return 0;
    size_t n = *cap ? *cap * 2 : 64;
    while (n < need)
        n *= 2;
    void *p = realloc(*items, n * item_size);
    if (!p) return -ENOMEM;
    *items = p;
    *cap = n;
    return 0;
}

static int push_pc(struct snapshot *s, uint64_t pc)
{
    int err = grow((void **)&s->pcs, &s->cap_pcs, s->n_pcs + 1, sizeof *s->pcs);
    if (err == 0) s->pcs[s->n_pcs++] = pc;
    return err;
}

/* Follows the frame-pointer chain from fp while it stays inside [lo, hi):
 * each frame holds the caller's frame pointer, then the return address. */
static int walk_frames(const struct eddy__dump_source *src, struct snapshot *s, struct dump_task *t,
                       uint64_t fp, uint64_t lo, uint64_t hi)
{
    while (t->n_frames < MAX_FRAMES && fp >= lo && fp + 16 <= hi && fp % 8 == 0) {
        uint64_t frame[2];
        if (src->read(src->ctx, fp, frame, sizeof frame) < 0 || !frame[1]) break;
        int err = push_pc(s, frame[1]);
        if (err < 0) return err;
        t->n_frames++;
        if (frame[0] <= fp) break; /* frames go up the stack */
        fp = frame[0];
    }
    return 0;
}

static int read_frames(const struct eddy__dump_source *src, struct snapshot *s, struct dump_task *t,
                       uint64_t stack, uint64_t sp)
{
    const struct eddy__debug_layout *L = src->layout;
    uint64_t lo, size;
    t->frames = s->n_pcs;
    if (!stack || t->state == EDDY__DEBUG_TASK_CREATED || t->state == EDDY__DEBUG_TASK_DONE)
        return 0;
    if (read_field(src, stack, L->stack_lo, &lo) < 0 ||
        read_field(src, stack, L->stack_size, &size) < 0 || lo + size < lo)
        return 0;
    if (t->flags & F_CURRENT) {
        if (!src->running_fp) return 0; /* on the CPU in another process */
        return walk_frames(src, s, t, src->running_fp, lo, lo + size);
    }
    if (L->saved_pc == EDDY__DEBUG_NO_SLOT || !L->task_sp.size) return 0;
    uint64_t top = sp + 8 * ((uint64_t)(L->saved_pc > L->saved_fp ? L->saved_pc : L->saved_fp) + 1);
    if (sp < lo || top > lo + size || sp % 8) return 0;
    uint64_t pc, fp;
    if (src->read(src->ctx, sp + 8 * (uint64_t)L->saved_pc, &pc, 8) < 0 ||
        src->read(src->ctx, sp + 8 * (uint64_t)L->saved_fp, &fp, 8) < 0)
        return 0;
    int err = push_pc(s, pc);
    if (err < 0) return err;
    t->n_frames = 1;
    return walk_frames(src, s, t, fp, lo, lo + size);
}

/* What a suspended task waits on, beyond its kind. */
static int read_wait(const struct eddy__dump_source *src, struct snapshot *s, struct dump_task *t)
{
    const struct eddy__debug_layout *L = src->layout;
    uint64_t v, data = t->wait_data;
    t->gathered = s->n_futures;
    if (t->state != EDDY__DEBUG_TASK_SUSPENDED || !data) return 0;
    switch (t->wait_kind) {
    case EDDY__DEBUG_WAIT_SLEEP:
        return read_field(src, data, L->timer_deadline, &t->detail);
    case EDDY__DEBUG_WAIT_OP:
        if (read_field(src, data, L->op_kind, &v) < 0) return -EFAULT;
        t->sub = (uint8_t)v;
        if (read_field(src, data, L->op_state, &v) < 0) return -EFAULT;
        if (v == EDDY__DEBUG_OP_CANCELLING) t->flags |= F_OP_CANCELLING;
        return read_field(src, data, L->op_fd, &t->detail);
    case EDDY__DEBUG_WAIT_FUTURE:
        if (read_field(src, data, L->future_wait_future, &t->detail) < 0 || !t->detail)
            return -EFAULT;
        if (read_field(src, t->detail, L->future_is_task, &v) < 0) return -EFAULT;
        if (v) t->flags |= F_FUTURE_IS_TASK;
        return 0;
    case EDDY__DEBUG_WAIT_GROUP:
        t->detail = data;
        return 0;
    case EDDY__DEBUG_WAIT_GATHER: {
        uint64_t fs, n;
        if (read_field(src, data, L->gather_futures, &fs) < 0 ||
            read_field(src, data, L->gather_count, &n) < 0)
            return -EFAULT;
        t->detail = n;
        if (n > MAX_GATHERED) n = MAX_GATHERED;
        int err = grow((void **)&s->futures, &s->cap_futures, s->n_futures + n, sizeof(uint64_t));
        if (err < 0) return err;
        if (n && src->read(src->ctx, fs, s->futures + s->n_futures, n * 8) < 0) return -EFAULT;
        t->n_gathered = (size_t)n;
        s->n_futures += (size_t)n;
        return 0;
    }
    case EDDY__DEBUG_WAIT_SYNC:
        if (read_field(src, data, L->sync_object, &t->detail) < 0 ||
            read_field(src, data, L->sync_kind, &v) < 0)
            return -EFAULT;
        t->sub = (uint8_t)v;
        if (t->sub == EDDY__DEBUG_SYNC_LOCK && t->detail &&
            (read_field(src, t->detail, L->lock_owner, &t->holder) < 0 ||
             read_field(src, t->detail, L->lock_owner_id, &t->holder_id) < 0))
            return -EFAULT;
        return 0;
    }
    return 0;
}

/* One task, from its struct at addr. */
static int read_task(const struct eddy__dump_source *src, struct snapshot *s, uint64_t addr,
                     const unsigned char *buf, size_t len)
{
    const struct eddy__debug_layout *L = src->layout;
    int err = grow((void **)&s->tasks, &s->cap, s->n + 1, sizeof *s->tasks);
    if (err < 0) return err;
    struct dump_task *t = &s->tasks[s->n];
    memset(t, 0, sizeof *t);
    t->addr = addr;
    t->id = field_in(buf, len, L->task_id);
    t->fn = field_in(buf, len, L->task_fn);
    t->group = field_in(buf, len, L->task_group);
    t->wait_data = field_in(buf, len, L->task_wait_data);
    t->state = (uint8_t)field_in(buf, len, L->task_state);
    t->wait_kind = (uint8_t)field_in(buf, len, L->task_wait_kind);
    if (field_in(buf, len, L->task_cancelled)) t->flags |= F_CANCELLED;
    if (addr == s->current) t->flags |= F_CURRENT;
    if (field_in(buf, len, L->task_scope) &&
        (uint32_t)field_in(buf, len, L->task_scope_armed) != UINT32_MAX) {
        t->flags |= F_SCOPE;
        t->scope_deadline = (int64_t)field_in(buf, len, L->task_scope_deadline);
    }
    uint64_t name = field_in(buf, len, L->task_name);
    if (!name || !read_string(src, name, t->name, sizeof t->name, L->name_max))
        if (!src->function_name || !src->function_name(src->ctx, t->fn, t->name, sizeof t->name))
            strcpy(t->name, "task");
    err = read_wait(src, s, t);
    if (err < 0) return err;
    err = read_frames(src, s, t, field_in(buf, len, L->task_stack),
                      L->task_sp.size ? field_in(buf, len, L->task_sp) : 0);
    if (err < 0) return err;
    s->n++;
    return 0;
}

struct stamp {
    uint64_t v[4];
};

static int read_stamp(const struct eddy__dump_source *src, uint64_t loop, struct stamp *st)
{
    const struct eddy__debug_layout *L = src->layout;
    const struct eddy__debug_field f[4] = {L->loop_iterations, L->loop_allocations,
                                           L->loop_submitted, L->loop_completed};
    for (int i = 0; i < 4; i++) {
        int err = read_field(src, loop, f[i], &st->v[i]);
        if (err < 0) return err;
    }
    return 0;
}

/* Reads the loop and its tasks: 0, -EAGAIN when the loop changed under the
 * walk (or a link was broken), or a read error of the loop itself. */
static int collect(const struct eddy__dump_source *src, uint64_t loop, struct snapshot *s)
{
    const struct eddy__debug_layout *L = src->layout;
    struct stamp before, after;
    uint64_t ops = 0, name = 0;
    s->n = s->n_pcs = s->n_futures = 0;
    int err = read_stamp(src, loop, &before);
    if (err == 0) err = read_field(src, loop, L->loop_current, &s->current);
    if (err == 0) err = read_field(src, loop, L->loop_now, &s->now);
    if (err == 0) err = read_field(src, loop, L->loop_in_flight, &s->in_flight);
    if (err == 0) err = read_field(src, loop, L->loop_backend, &ops);
    if (err < 0) return err;
    if (!ops || read_field(src, ops, L->backend_name, &name) < 0 || !name ||
        !read_string(src, name, s->backend, sizeof s->backend, sizeof s->backend - 1))
        strcpy(s->backend, "?");
    if (L->task_size == 0 || L->task_size > 65536) return -EINVAL;
    unsigned char *buf = malloc(L->task_size);
    if (!buf) return -ENOMEM;
    uint64_t head = loop + L->loop_tasks.offset, prev = head, node;
    err = read_field(src, head, L->list_next, &node);
    while (err == 0 && node != head) {
        uint64_t back, addr = node - L->task_link.offset;
        /* node == prev: a node taken out of the list points at itself */
        if (s->n >= MAX_TASKS || node == prev || read_field(src, node, L->list_prev, &back) < 0 ||
            back != prev || src->read(src->ctx, addr, buf, L->task_size) < 0) {
            err = -EAGAIN;
            break;
        }
        err = read_task(src, s, addr, buf, L->task_size);
        if (err == -EFAULT) err = -EAGAIN;
        prev = node;
        if (err == 0 && read_field(src, node, L->list_next, &node) < 0) err = -EAGAIN;
    }
    free(buf);
    if (err == 0 && src->live &&
        (read_stamp(src, loop, &after) < 0 || memcmp(&before, &after, sizeof before)))
        err = -EAGAIN;
    return err;
}

/* ---- who awaits whom ----------------------------------------------------------- */

static int by_addr(const void *a, const void *b)
{
    uint64_t x = ((const struct task_addr *)a)->addr, y = ((const struct task_addr *)b)->addr;
    return x < y ? -1 : x > y;
}

static int by_child_then_parent(const void *a, const void *b)
{
    const struct edge *x = a, *y = b;
    if (x->child != y->child) return x->child < y->child ? -1 : 1;
    return x->parent < y->parent ? -1 : x->parent > y->parent;
}

/* The index of the task at addr, or -1. */
static ptrdiff_t find_task(const struct snapshot *s, uint64_t addr)
{
    size_t lo = 0, hi = s->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        uint64_t a = s->by_addr[mid].addr;
        if (a == addr) return (ptrdiff_t)s->by_addr[mid].index;
        if (a < addr)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

static int add_edge(struct snapshot *s, size_t *cap, ptrdiff_t child, size_t parent,
                    const char *how)
{
    if (child < 0 || (size_t)child == parent) return 0;
    int err = grow((void **)&s->edges, cap, s->n_edges + 1, sizeof *s->edges);
    if (err == 0) s->edges[s->n_edges++] = (struct edge){(size_t)child, parent, how};
    return err;
}

/* A group and the task waiting for it. */
struct group_wait {
    uint64_t group;
    size_t task;
};

static int by_group(const void *a, const void *b)
{
    const struct group_wait *x = a, *y = b;
    if (x->group != y->group) return x->group < y->group ? -1 : 1;
    return x->task < y->task ? -1 : x->task > y->task;
}

/* The task waiting for group (gw: n of them, sorted), or -1. */
static ptrdiff_t group_waiter(const struct group_wait *gw, size_t n, uint64_t group)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (gw[mid].group < group)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n && gw[lo].group == group ? (ptrdiff_t)gw[lo].task : -1;
}

static int link_tasks(struct snapshot *s)
{
    size_t cap = 0, n_groups = 0;
    s->n_edges = 0;
    s->by_addr = malloc((s->n ? s->n : 1) * sizeof *s->by_addr);
    s->first = malloc((s->n ? s->n : 1) * sizeof *s->first);
    struct group_wait *gw = malloc((s->n ? s->n : 1) * sizeof *gw);
    if (!s->by_addr || !s->first || !gw) {
        free(gw);
        return -ENOMEM;
    }
    for (size_t i = 0; i < s->n; i++) {
        s->by_addr[i] = (struct task_addr){s->tasks[i].addr, i};
        s->first[i] = -1;
        const struct dump_task *t = &s->tasks[i];
        if (t->state == EDDY__DEBUG_TASK_SUSPENDED && t->wait_kind == EDDY__DEBUG_WAIT_GROUP)
            gw[n_groups++] = (struct group_wait){t->detail, i};
    }
    qsort(s->by_addr, s->n, sizeof *s->by_addr, by_addr);
    qsort(gw, n_groups, sizeof *gw, by_group);
    int err = 0;
    for (size_t i = 0; i < s->n && err == 0; i++) {
        const struct dump_task *t = &s->tasks[i];
        ptrdiff_t w = t->group ? group_waiter(gw, n_groups, t->group) : -1;
        if (w >= 0) err = add_edge(s, &cap, (ptrdiff_t)i, (size_t)w, "group");
        if (t->state != EDDY__DEBUG_TASK_SUSPENDED) continue;
        if (t->wait_kind == EDDY__DEBUG_WAIT_FUTURE && (t->flags & F_FUTURE_IS_TASK))
            err = add_edge(s, &cap, find_task(s, t->detail), i, "join");
        for (size_t k = 0; t->wait_kind == EDDY__DEBUG_WAIT_GATHER && k < t->n_gathered && !err;
             k++)
            err = add_edge(s, &cap, find_task(s, s->futures[t->gathered + k]), i, "gather");
    }
    free(gw);
    if (err < 0) return err;
    if (s->n_edges) qsort(s->edges, s->n_edges, sizeof *s->edges, by_child_then_parent);
    /* one edge per pair (a gather may list a task twice) */
    size_t kept = 0;
    for (size_t i = 0; i < s->n_edges; i++) {
        if (kept && s->edges[kept - 1].child == s->edges[i].child &&
            s->edges[kept - 1].parent == s->edges[i].parent)
            continue;
        s->edges[kept++] = s->edges[i];
    }
    s->n_edges = kept;
    for (size_t i = s->n_edges; i-- > 0;)
        s->first[s->edges[i].child] = (ptrdiff_t)s->edges[i].parent;
    return 0;
}

/* ---- the text ------------------------------------------------------------------- */

static const char *const op_names[EDDY__DEBUG_OP_COUNT] = EDDY__DEBUG_OP_NAMES;

/* How a task waiting on a sync object says so: before and after its address. */
static const char *const sync_texts[][2] = {
    [EDDY__DEBUG_SYNC_LOCK] = {"waiting on lock ", ""},
    [EDDY__DEBUG_SYNC_EVENT] = {"waiting on event ", ""},
    [EDDY__DEBUG_SYNC_COND] = {"waiting on condition ", ""},
    [EDDY__DEBUG_SYNC_SEM] = {"waiting on semaphore ", ""},
    [EDDY__DEBUG_SYNC_BARRIER] = {"waiting on barrier ", ""},
    [EDDY__DEBUG_SYNC_QUEUE_GET] = {"waiting to get from queue ", ""},
    [EDDY__DEBUG_SYNC_QUEUE_PUT] = {"waiting to put into queue ", ""},
    [EDDY__DEBUG_SYNC_QUEUE_JOIN] = {"waiting on queue ", " until all is done (join)"},
};

static void print_task_ref(FILE *out, const struct snapshot *s, uint64_t addr)
{
    ptrdiff_t i = find_task(s, addr);
    if (i >= 0)
        fprintf(out, "task %llu (%s)", (unsigned long long)s->tasks[i].id, s->tasks[i].name);
    else
        fprintf(out, "task at 0x%llx", (unsigned long long)addr);
}

static void print_wait(FILE *out, const struct snapshot *s, const struct dump_task *t)
{
    switch (t->wait_kind) {
    case EDDY__DEBUG_WAIT_SLEEP:
        fprintf(out, "sleeping until %lld (in %lld ms)", (long long)t->detail,
                (long long)(((int64_t)t->detail - (int64_t)s->now) / 1000000));
        break;
    case EDDY__DEBUG_WAIT_OP: {
        const char *kind =
            t->sub < sizeof op_names / sizeof op_names[0] ? op_names[t->sub] : "an op";
        fprintf(out, "waiting on %s, fd %lld%s", kind, (long long)t->detail,
                t->flags & F_OP_CANCELLING ? " (cancelling)" : "");
        break;
    }
    case EDDY__DEBUG_WAIT_FUTURE:
        if (t->flags & F_FUTURE_IS_TASK) {
            fputs("awaiting ", out);
            print_task_ref(out, s, t->detail);
        } else {
            fprintf(out, "awaiting future 0x%llx", (unsigned long long)t->detail);
        }
        break;
    case EDDY__DEBUG_WAIT_GROUP:
        fprintf(out, "waiting for group 0x%llx", (unsigned long long)t->detail);
        break;
    case EDDY__DEBUG_WAIT_GATHER:
        fprintf(out, "gathering %llu futures", (unsigned long long)t->detail);
        break;
    case EDDY__DEBUG_WAIT_SYNC:
        if (t->sub && t->sub < sizeof sync_texts / sizeof sync_texts[0]) {
            fprintf(out, "%s0x%llx%s", sync_texts[t->sub][0], (unsigned long long)t->detail,
                    sync_texts[t->sub][1]);
            if (t->sub == EDDY__DEBUG_SYNC_LOCK && t->holder) {
                ptrdiff_t h = find_task(s, t->holder);
                if (h >= 0 && s->tasks[h].id == t->holder_id) {
                    fputs(", held by ", out);
                    print_task_ref(out, s, t->holder);
                } else { /* it ended without releasing the lock (another task
                            may have its address since) */
                    fprintf(out, ", held by a task that has ended (0x%llx)",
                            (unsigned long long)t->holder);
                }
            }
        } else {
            fputs("waiting on a lock, event, condition, semaphore, barrier or queue", out);
        }
        break;
    default:
        fputs("waiting", out);
        break;
    }
}

static void print_state(FILE *out, const struct snapshot *s, const struct dump_task *t)
{
    switch (t->state) {
    case EDDY__DEBUG_TASK_CREATED:
        fputs(t->flags & F_CANCELLED ? "cancelled before it started" : "ready, not started", out);
        return;
    case EDDY__DEBUG_TASK_RUNNING:
        fputs(t->flags & F_CURRENT ? "running" : "ready", out);
        return;
    case EDDY__DEBUG_TASK_DONE:
        fputs("done, not yet joined", out);
        return;
    }
    print_wait(out, s, t);
    if (t->flags & F_SCOPE)
        fprintf(out, ", in a timeout scope ending in %lld ms",
                (long long)((t->scope_deadline - (int64_t)s->now) / 1000000));
    if (t->flags & F_CANCELLED) fputs(", cancelled", out);
}

/* The edges whose child is c: [*from, *to). */
static void edges_of(const struct snapshot *s, size_t c, size_t *from, size_t *to)
{
    size_t lo = 0, hi = s->n_edges;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (s->edges[mid].child < c)
            lo = mid + 1;
        else
            hi = mid;
    }
    *from = *to = lo;
    while (*to < s->n_edges && s->edges[*to].child == c)
        (*to)++;
}

static void print_task(FILE *out, const struct eddy__dump_source *src, const struct snapshot *s,
                       size_t i)
{
    const struct dump_task *t = &s->tasks[i];
    fprintf(out, "task %llu \"%s\": ", (unsigned long long)t->id, t->name);
    print_state(out, s, t);
    fputc('\n', out);
    size_t from, to;
    edges_of(s, i, &from, &to);
    for (size_t e = from; e < to; e++) {
        const struct dump_task *p = &s->tasks[s->edges[e].parent];
        fprintf(out, "  awaited by task %llu \"%s\" (%s)\n", (unsigned long long)p->id, p->name,
                s->edges[e].how);
    }
    bool group_waited = false;
    for (size_t e = from; e < to; e++)
        group_waited |= strcmp(s->edges[e].how, "group") == 0;
    if (t->group && !group_waited)
        fprintf(out, "  in group 0x%llx (nobody waits for it yet)\n", (unsigned long long)t->group);
    for (size_t k = 0; k < t->n_frames; k++) {
        char where[256];
        uint64_t pc = s->pcs[t->frames + k];
        src->describe_return(src->ctx, pc, where, sizeof where);
        fprintf(out, "    #%zu 0x%llx %s\n", k, (unsigned long long)pc, where);
    }
    if (t->state == EDDY__DEBUG_TASK_CREATED) fprintf(out, "    (not started: %s)\n", t->name);
    if ((t->flags & F_CURRENT) && src->live)
        fputs("    (on the CPU: no backtrace without stopping the thread)\n", out);
}

/* t, then the tasks whose first awaiter is t, indented below it. */
static void print_tree(FILE *out, const struct snapshot *s, const size_t *kids,
                       const size_t *kids_at, size_t t, char *prefix, size_t depth, bool last)
{
    fprintf(out, "%s%s task %llu \"%s\"\n", prefix, last ? "└──" : "├──",
            (unsigned long long)s->tasks[t].id, s->tasks[t].name);
    if (depth >= MAX_DEPTH) return; /* the prefix buffer's end; no deeper chain shown */
    size_t len = strlen(prefix);
    strcpy(prefix + len, last ? "    " : "│   ");
    for (size_t k = kids_at[t]; k < kids_at[t + 1]; k++)
        print_tree(out, s, kids, kids_at, kids[k], prefix, depth + 1, k + 1 == kids_at[t + 1]);
    prefix[len] = '\0';
}

static int print_forest(FILE *out, const struct snapshot *s)
{
    /* children grouped by first awaiter, each group in task order */
    size_t *kids = malloc((s->n ? s->n : 1) * sizeof *kids);
    size_t *kids_at = calloc(s->n + 2, sizeof *kids_at);
    if (!kids || !kids_at) {
        free(kids);
        free(kids_at);
        return -ENOMEM;
    }
    for (size_t c = 0; c < s->n; c++)
        if (s->first[c] >= 0) kids_at[s->first[c] + 2]++;
    for (size_t p = 0; p < s->n; p++)
        kids_at[p + 2] += kids_at[p + 1];
    for (size_t c = 0; c < s->n; c++)
        if (s->first[c] >= 0) kids[kids_at[s->first[c] + 1]++] = c;
    fputs("awaited by:\n", out);
    /* MAX_DEPTH levels of 4 box-drawing columns (up to 3 bytes each), and a NUL */
    char prefix[MAX_DEPTH * 12 + 1] = "";
    ptrdiff_t prev = -1;
    for (size_t t = 0; t < s->n; t++) {
        if (s->tasks[t].state == EDDY__DEBUG_TASK_DONE || s->first[t] >= 0) continue;
        if (prev >= 0) print_tree(out, s, kids, kids_at, (size_t)prev, prefix, 0, false);
        prev = (ptrdiff_t)t;
    }
    if (prev >= 0) print_tree(out, s, kids, kids_at, (size_t)prev, prefix, 0, true);
    free(kids);
    free(kids_at);
    return 0;
}

static void snapshot_free(struct snapshot *s)
{
    free(s->tasks);
    free(s->pcs);
    free(s->futures);
    free(s->by_addr);
    free(s->edges);
    free(s->first);
}

int eddy__dump_loop(const struct eddy__dump_source *src, uint64_t loop, FILE *out)
{
    struct snapshot s = {.loop = loop};
    int err = -EAGAIN;
    for (int attempt = 0; attempt < (src->live ? ATTEMPTS : 1) && err == -EAGAIN; attempt++)
        err = collect(src, loop, &s);
    bool torn = err == -EAGAIN;
    if (err == 0 || torn) err = link_tasks(&s);
    if (err < 0) {
        snapshot_free(&s);
        return err;
    }
    size_t done = 0;
    for (size_t i = 0; i < s.n; i++)
        done += s.tasks[i].state == EDDY__DEBUG_TASK_DONE;
    fprintf(out, "loop 0x%llx (%s): %zu tasks (%zu done, not yet joined), %llu ops in flight\n",
            (unsigned long long)loop, s.backend, s.n, done, (unsigned long long)s.in_flight);
    if (torn)
        fprintf(out,
                "(the loop kept changing while it was read, %d times: what follows may "
                "mix moments, or stop short)\n",
                ATTEMPTS);
    for (size_t i = 0; i < s.n; i++)
        print_task(out, src, &s, i);
    err = print_forest(out, &s);
    snapshot_free(&s);
    if (err < 0) return err;
    return fflush(out) == 0 && !ferror(out) ? 0 : -EIO;
}
