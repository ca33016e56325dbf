/* SPDX-License-Identifier: MIT */
/* Signals on the loop (asyncio's add_signal_handler, libuv's uv_signal):
 * eddy_signal_wait for tasks, eddy_signal_start/_stop for callbacks.
 *
 * POSIX: a process-wide handler (sigaction) records the signal in the slot of
 * every loop that wants it and writes a byte to that loop's pipe; the loop
 * watches the pipe's read end with an EDDY_OP_POLL op (io_uring, epoll and
 * kqueue alike) and hands the signal to its watchers and waiting tasks. Not
 * signalfd: it reads only signals blocked in every thread, which a library
 * cannot arrange for threads it did not create (one thread left unblocked
 * takes SIGINT and dies of it), it misses signals raise()d in another thread,
 * and two loops cannot both see one signal through it (docs/signals.md).
 *
 * Windows: console control events (CTRL_C_EVENT as SIGINT, CTRL_BREAK_EVENT
 * as SIGBREAK) arrive on a thread of their own, which records them the same
 * way and posts the delivery to each loop with eddy_call_soon_threadsafe.
 *
 * Every loop with a watcher or waiter for a signal gets each delivery;
 * deliveries the loop has not looked at yet coalesce, as POSIX's do. */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#ifndef _WIN32
#include <fcntl.h>
#include <sched.h>
#include <unistd.h>
#endif

#include "internal.h"

#define MAX_SIGNAL NSIG /* signal numbers are below it */
#define WORDS      ((MAX_SIGNAL + 31) / 32)

static inline uint32_t sig_bit(int signum)
{
    return (uint32_t)1 << (signum % 32);
}

/* What the signal handler (or console control thread) reads and writes: a
 * slot per loop with signals, in chunks that are never freed, so that a
 * handler running in any thread never meets freed memory. fd is -1 while the
 * slot is free. */
struct slot {
    int fd; /* the pipe's write end (POSIX) */
    uint32_t wants[WORDS];
    uint32_t pending[WORDS];
    bool used; /* under registry_lock */
};

#define SLOTS_PER_CHUNK 16
struct slot_chunk {
    struct slot slots[SLOTS_PER_CHUNK];
    struct slot_chunk *next;
};

/* Per loop: the watchers and waiting tasks of that loop, and how the loop
 * learns that a signal came. */
struct hub {
    struct eddy_loop *loop;
    struct hub *next;           /* hubs, while users > 0 */
    unsigned users;             /* watchers and waiting tasks */
    struct slot *slot;          /* NULL once retired */
    unsigned count[MAX_SIGNAL]; /* users per signal */
    struct eddy__list watchers; /* eddy_signal, started */
    struct eddy__list waiters;  /* struct waiter, suspended */
    struct eddy__work deliver;
    bool deliver_queued;
#ifdef _WIN32
    unsigned refs; /* the loop's hold while users > 0, and each posted delivery */
    bool posted;
#else
    int pipe[2];
    struct eddy_op op; /* polls pipe[0] */
    bool armed;
#endif
};

struct eddy_signal {
    struct hub *hub;
    int signum;
    eddy_callback cb;
    void *arg;
    struct eddy__list link; /* hub->watchers */
    struct eddy__work deliver;
    bool queued;
    bool stopped;
};

struct waiter {
    struct eddy__list link; /* hub->waiters */
    struct eddy_task *task;
    const int *signums;
    size_t n;
};

/* Process-wide state, under registry_lock. */
static eddy__mutex registry_lock = EDDY__MUTEX_INIT;
static struct hub *hubs;
static struct slot_chunk *slot_chunks; /* published with release stores */
static unsigned signal_users[MAX_SIGNAL];
#ifndef _WIN32
static struct sigaction previous_action[MAX_SIGNAL];
static unsigned handlers_running; /* handlers between their first and last look at a slot */
#endif

/* ---- which signals ---------------------------------------------------------------- */

/* -EINVAL for a number that is no signal or cannot be caught on a loop (the
 * faults the handler would return into), -ENOTSUP for one this platform has
 * but eddy cannot deliver (Windows: all but SIGINT and SIGBREAK). */
static int check_signum(int signum)
{
    if (signum <= 0 || signum >= MAX_SIGNAL) return -EINVAL;
#ifdef _WIN32
    return signum == SIGINT || signum == SIGBREAK ? 0 : -ENOTSUP;
#else
    switch (signum) {
    case SIGKILL:
    case SIGSTOP:
    case SIGSEGV:
    case SIGBUS:
    case SIGFPE:
    case SIGILL:
        return -EINVAL;
    default:
        return 0;
    }
#endif
}

/* ---- the process-wide side: handler, slots ----------------------------------------- */

/* Records signum in every slot that wants it; true if one did. */
static bool record(int signum)
{
    bool wanted = false;
    struct slot_chunk *c = __atomic_load_n(&slot_chunks, __ATOMIC_ACQUIRE);
    for (; c; c = __atomic_load_n(&c->next, __ATOMIC_ACQUIRE)) {
        for (int i = 0; i < SLOTS_PER_CHUNK; i++) {
            struct slot *s = &c->slots[i];
            int fd = __atomic_load_n(&s->fd, __ATOMIC_SEQ_CST);
            if (fd < 0) continue;
            if (!(__atomic_load_n(&s->wants[signum / 32], __ATOMIC_SEQ_CST) & sig_bit(signum)))
                continue;
            __atomic_fetch_or(&s->pending[signum / 32], sig_bit(signum), __ATOMIC_SEQ_CST);
            wanted = true;
#ifndef _WIN32
            /* Full pipe: a byte is there already, the loop will look. */
            ssize_t r = write(fd, "", 1);
            (void)r;
#endif
        }
    }
    return wanted;
}

#ifndef _WIN32
static void on_signal(int signum)
{
    int saved = errno;
    __atomic_fetch_add(&handlers_running, 1, __ATOMIC_SEQ_CST);
    record(signum);
    __atomic_fetch_sub(&handlers_running, 1, __ATOMIC_SEQ_CST);
    errno = saved;
}
#else
static void post_deliveries(void);

static BOOL WINAPI on_console_event(DWORD event)
{
    int signum = event == CTRL_C_EVENT ? SIGINT : event == CTRL_BREAK_EVENT ? SIGBREAK : 0;
    if (!signum) return FALSE;
    eddy__mutex_lock(&registry_lock);
    bool wanted = record(signum);
    if (wanted) post_deliveries();
    eddy__mutex_unlock(&registry_lock);
    return wanted ? TRUE : FALSE; /* FALSE: the next handler, at last the default */
}
#endif

/* A free slot, or NULL on -ENOMEM. Under registry_lock. */
static struct slot *slot_take(int fd)
{
    struct slot_chunk *c;
    for (c = slot_chunks; c; c = c->next)
        for (int i = 0; i < SLOTS_PER_CHUNK; i++)
            if (!c->slots[i].used) goto found;
    c = calloc(1, sizeof *c);
    if (!c) return NULL;
    for (int i = 0; i < SLOTS_PER_CHUNK; i++)
        c->slots[i].fd = -1;
    c->next = slot_chunks;
    __atomic_store_n(&slot_chunks, c, __ATOMIC_RELEASE);
found:
    for (int i = 0; i < SLOTS_PER_CHUNK; i++) {
        struct slot *s = &c->slots[i];
        if (s->used) continue;
        s->used = true;
        memset(s->pending, 0, sizeof s->pending);
        __atomic_store_n(&s->fd, fd, __ATOMIC_SEQ_CST);
        return s;
    }
    return NULL; /* not reached */
}

/* Under registry_lock. Once it returns, no handler writes to the slot's fd. */
static void slot_release(struct slot *s)
{
    __atomic_store_n(&s->fd, -1, __ATOMIC_SEQ_CST);
#ifndef _WIN32
    /* A handler that read the fd before the store is still counted here. */
    while (__atomic_load_n(&handlers_running, __ATOMIC_SEQ_CST))
        sched_yield();
#endif
    s->used = false;
}

/* The first user of signum in the process installs eddy's handler. Under registry_lock. */
static int signal_catch(int signum)
{
    if (signal_users[signum]++) return 0;
#ifdef _WIN32
    if (signal_users[SIGINT] + signal_users[SIGBREAK] == 1 &&
        !SetConsoleCtrlHandler(on_console_event, TRUE)) {
        signal_users[signum]--;
        return eddy__win_error(GetLastError());
    }
#else
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESTART;
    sigfillset(&sa.sa_mask); /* one handler at a time per thread */
    if (sigaction(signum, &sa, &previous_action[signum]) < 0) {
        signal_users[signum]--;
        return -errno;
    }
#endif
    return 0;
}

/* The last user of signum gives the previous disposition back. Under registry_lock. */
static void signal_release(int signum)
{
    if (--signal_users[signum]) return;
#ifdef _WIN32
    if (signal_users[SIGINT] + signal_users[SIGBREAK] == 0)
        SetConsoleCtrlHandler(on_console_event, FALSE);
#else
    sigaction(signum, &previous_action[signum], NULL);
#endif
}

/* ---- the loop's side: hubs ---------------------------------------------------------- */

static void hub_deliver(struct eddy__work *work);

static void hub_free_if_unused(struct hub *h)
{
    if (h->users || h->deliver_queued) return;
#ifdef _WIN32
    if (h->refs) return;
#else
    if (h->armed) return;
    close(h->pipe[0]);
    close(h->pipe[1]);
#endif
    free(h);
}

#ifndef _WIN32
static void hub_op_complete(struct eddy_op *op)
{
    struct hub *h = op->data;
    h->armed = false;
    eddy__loop_op_ended(h->loop);
    if (!h->slot) {
        hub_free_if_unused(h);
        return;
    }
    if (!h->deliver_queued) {
        h->deliver_queued = true;
        eddy__loop_schedule(h->loop, &h->deliver);
    }
}

/* Polls the pipe's read end: 0 or a negative code. */
static int hub_arm(struct hub *h)
{
    struct eddy_op *op = &h->op;
    *op = (struct eddy_op){.kind = EDDY_OP_POLL, .fd = h->pipe[0], .u.io.flags = EDDY_READABLE};
    op->complete = hub_op_complete;
    op->data = h;
    op->state = EDDY_OP_STATE_IN_FLIGHT;
    eddy__list_init(&op->link);
    struct eddy_backend *b = &h->loop->backend;
    int status = b->ops->submit(b, op);
    if (status < 0) return status;
    eddy__loop_op_started(h->loop);
    h->armed = true;
    if (status == EDDY_OP_DONE) { /* readable already (a readiness backend's fast path) */
        op->state = EDDY_OP_STATE_DONE;
        hub_op_complete(op);
    }
    return 0;
}

static int hub_open(struct hub *h)
{
#ifdef __linux__
    if (pipe2(h->pipe, O_NONBLOCK | O_CLOEXEC) < 0) return -errno;
#else /* macOS has no pipe2 */
    if (pipe(h->pipe) < 0) return -errno;
    for (int i = 0; i < 2; i++) {
        fcntl(h->pipe[i], F_SETFL, fcntl(h->pipe[i], F_GETFL) | O_NONBLOCK);
        fcntl(h->pipe[i], F_SETFD, FD_CLOEXEC);
    }
#endif
    h->slot = slot_take(h->pipe[1]);
    int err = h->slot ? hub_arm(h) : -ENOMEM;
    if (err < 0) {
        if (h->slot) slot_release(h->slot);
        h->slot = NULL;
        close(h->pipe[0]);
        close(h->pipe[1]);
    }
    return err;
}

static void hub_close(struct hub *h)
{
    if (h->armed && h->op.state == EDDY_OP_STATE_IN_FLIGHT) {
        h->op.state = EDDY_OP_STATE_CANCELLING;
        h->loop->backend.ops->cancel(&h->loop->backend, &h->op);
    }
}
#else
static int hub_open(struct hub *h)
{
    h->slot = slot_take(0);
    if (!h->slot) return -ENOMEM;
    h->refs = 1;
    eddy__loop_op_started(h->loop); /* a started watcher keeps the loop running */
    return 0;
}

static void hub_unref(struct hub *h)
{
    if (--h->refs == 0) hub_free_if_unused(h);
}

static void hub_close(struct hub *h)
{
    eddy__loop_op_ended(h->loop);
    hub_unref(h);
}

static void hub_posted(void *arg)
{
    struct hub *h = arg;
    eddy__mutex_lock(&registry_lock);
    h->posted = false;
    eddy__mutex_unlock(&registry_lock);
    if (h->slot) hub_deliver(&h->deliver);
    eddy__mutex_lock(&registry_lock); /* refs also move on the console control thread */
    hub_unref(h);
    eddy__mutex_unlock(&registry_lock);
}

/* Under registry_lock, from the console control thread. */
static void post_deliveries(void)
{
    for (struct hub *h = hubs; h; h = h->next) {
        bool recorded = false;
        for (int w = 0; w < WORDS; w++)
            recorded |= h->slot->pending[w] != 0;
        if (h->posted || !recorded) continue;
        if (eddy_call_soon_threadsafe(h->loop, hub_posted, h) < 0) continue;
        h->posted = true;
        h->refs++;
    }
}
#endif

/* The hub of loop, made on first use. Under registry_lock. */
static int hub_get(struct eddy_loop *loop, struct hub **out)
{
    for (struct hub *h = hubs; h; h = h->next)
        if (h->loop == loop) {
            *out = h;
            return 0;
        }
    struct hub *h = calloc(1, sizeof *h);
    if (!h) return -ENOMEM;
    h->loop = loop;
    eddy__list_init(&h->watchers);
    eddy__list_init(&h->waiters);
    h->deliver.run = hub_deliver;
    int err = hub_open(h);
    if (err < 0) {
        free(h);
        return err;
    }
    h->next = hubs;
    hubs = h;
    *out = h;
    return 0;
}

static void hub_retire(struct hub *h);

/* Adds a user of signum to h (the hub of the calling loop). Under registry_lock. */
static int hub_want(struct hub *h, int signum)
{
    int err = signal_catch(signum);
    if (err < 0) return err;
    if (h->count[signum]++ == 0)
        __atomic_fetch_or(&h->slot->wants[signum / 32], sig_bit(signum), __ATOMIC_SEQ_CST);
    h->users++;
    return 0;
}

/* Drops a user of signum; the hub retires with its last. Under registry_lock. */
static void hub_unwant(struct hub *h, int signum)
{
    if (--h->count[signum] == 0) {
        /* A delivery nobody took is not kept for a later watcher or wait. */
        __atomic_fetch_and(&h->slot->wants[signum / 32], ~sig_bit(signum), __ATOMIC_SEQ_CST);
        __atomic_fetch_and(&h->slot->pending[signum / 32], ~sig_bit(signum), __ATOMIC_SEQ_CST);
    }
    signal_release(signum);
    if (--h->users == 0) hub_retire(h);
}

/* Takes h out of service: no handler will record for it again, and it is
 * freed once its op and queued work are done. Under registry_lock. */
static void hub_retire(struct hub *h)
{
    struct hub **p = &hubs;
    while (*p != h)
        p = &(*p)->next;
    *p = h->next;
    slot_release(h->slot);
    h->slot = NULL;
    hub_close(h);
}

/* Wants several signals at once, or none of them. Under registry_lock. */
static int hub_want_all(struct hub *h, const int *signums, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int err = hub_want(h, signums[i]);
        if (err < 0) {
            while (i--)
                hub_unwant(h, signums[i]);
            return err;
        }
    }
    return 0;
}

static bool fired(const uint32_t *set, int signum)
{
    return set[signum / 32] & sig_bit(signum);
}

static void queue_watcher(struct eddy_signal *s)
{
    if (s->queued) return;
    s->queued = true;
    eddy__loop_schedule(s->hub->loop, &s->deliver);
}

/* On the loop: takes what the handler recorded and hands it out. Runs no
 * user code: callbacks come from their own work on the ready queue. */
static void hub_deliver(struct eddy__work *work)
{
    struct hub *h = eddy__container_of(work, struct hub, deliver);
    h->deliver_queued = false;
    if (!h->slot) {
        hub_free_if_unused(h);
        return;
    }
#ifndef _WIN32
    char drain[64];
    while (read(h->pipe[0], drain, sizeof drain) > 0) {
    }
#endif
    uint32_t set[WORDS];
    for (int w = 0; w < WORDS; w++)
        set[w] = __atomic_exchange_n(&h->slot->pending[w], 0, __ATOMIC_SEQ_CST);
    struct eddy__list *node;
    for (node = h->watchers.next; node != &h->watchers; node = node->next) {
        struct eddy_signal *s = eddy__container_of(node, struct eddy_signal, link);
        if (fired(set, s->signum)) queue_watcher(s);
    }
    for (node = h->waiters.next; node != &h->waiters;) {
        struct waiter *w = eddy__container_of(node, struct waiter, link);
        node = node->next;
        for (size_t i = 0; i < w->n; i++) {
            if (!fired(set, w->signums[i])) continue;
            eddy__list_remove(&w->link);
            eddy__list_init(&w->link);
            eddy__task_wake(w->task, w->signums[i]);
            break;
        }
    }
#ifndef _WIN32
    if (!h->armed && hub_arm(h) < 0) { /* cannot happen on a pipe; retry next iteration */
        h->deliver_queued = true;
        eddy__loop_schedule(h->loop, &h->deliver);
    }
#endif
}

/* ---- tasks ---------------------------------------------------------------------------- */

static void wait_abort(struct eddy_task *t)
{
    struct waiter *w = t->wait_data;
    eddy__list_remove(&w->link);
    eddy__list_init(&w->link);
    eddy__task_wake(t, -ECANCELED);
}

static int check_all(const int *signums, size_t n)
{
    if (!signums || n == 0) return -EINVAL;
    for (size_t i = 0; i < n; i++) {
        int err = check_signum(signums[i]);
        if (err < 0) return err;
    }
    return 0;
}

EDDY_API int eddy_signal_wait(const int *signums, size_t n)
{
    struct eddy_task *t = eddy__current_task();
    if (!t) return -EPERM;
    int err = check_all(signums, n);
    if (err < 0) return err;
    if (t->loop->caps[EDDY_CAP_SIGNALS] == EDDY_NONE) return -ENOTSUP;
    if (eddy__task_cancelled(t)) return -ECANCELED;
    struct hub *h;
    eddy__mutex_lock(&registry_lock);
    err = hub_get(t->loop, &h);
    if (err == 0) {
        err = hub_want_all(h, signums, n);
        if (err < 0 && h->users == 0) hub_retire(h); /* made for this wait */
    }
    eddy__mutex_unlock(&registry_lock);
    if (err < 0) return err;
    struct waiter w = {.task = t, .signums = signums, .n = n};
    eddy__list_push_back(&h->waiters, &w.link);
    t->abort_wait = wait_abort;
    t->wait_data = &w;
    int64_t r = eddy__task_suspend(t);
    eddy__list_remove(&w.link); /* a no-op once dispatched or aborted */
    eddy__mutex_lock(&registry_lock);
    for (size_t i = 0; i < n; i++)
        hub_unwant(h, signums[i]);
    eddy__mutex_unlock(&registry_lock);
    return (int)r;
}

/* ---- callbacks ----------------------------------------------------------------------- */

static void watcher_deliver(struct eddy__work *work)
{
    struct eddy_signal *s = eddy__container_of(work, struct eddy_signal, deliver);
    /* queued stays set meanwhile: a stop from the callback must not free s
     * under this frame. */
    if (!s->stopped && !s->hub->loop->closing) s->cb(s->arg);
    s->queued = false;
    if (s->stopped) free(s);
}

EDDY_API int eddy_signal_start(eddy_signal **out, eddy_loop *loop, int signum, eddy_callback cb,
                               void *arg)
{
    if (!out) return -EINVAL;
    *out = NULL;
    if (!loop) loop = eddy_loop_current();
    if (!loop || !cb) return -EINVAL;
    int err = check_signum(signum);
    if (err < 0) return err;
    if (loop->caps[EDDY_CAP_SIGNALS] == EDDY_NONE) return -ENOTSUP;
    struct eddy_signal *s = calloc(1, sizeof *s);
    if (!s) return -ENOMEM;
    struct hub *h;
    eddy__mutex_lock(&registry_lock);
    err = hub_get(loop, &h);
    if (err == 0) {
        err = hub_want(h, signum);
        if (err < 0 && h->users == 0) hub_retire(h); /* made for this watcher */
    }
    eddy__mutex_unlock(&registry_lock);
    if (err < 0) {
        free(s);
        return err;
    }
    s->hub = h;
    s->signum = signum;
    s->cb = cb;
    s->arg = arg;
    s->deliver.run = watcher_deliver;
    eddy__list_push_back(&h->watchers, &s->link);
    *out = s;
    return 0;
}

EDDY_API int eddy_signal_stop(eddy_signal *s)
{
    if (!s || s->stopped) return -EINVAL;
    s->stopped = true;
    eddy__list_remove(&s->link);
    eddy__mutex_lock(&registry_lock);
    hub_unwant(s->hub, s->signum);
    eddy__mutex_unlock(&registry_lock);
    if (!s->queued) free(s);
    return 0;
}

void eddy__signals_stop_all(struct eddy_loop *loop)
{
    struct hub *h = NULL;
    eddy__mutex_lock(&registry_lock);
    for (struct hub *p = hubs; p; p = p->next)
        if (p->loop == loop) h = p;
    eddy__mutex_unlock(&registry_lock);
    if (!h) return;
    /* The last stop may retire and free h: count the watchers first. */
    size_t watchers = 0;
    struct eddy__list *node;
    for (node = h->watchers.next; node != &h->watchers; node = node->next)
        watchers++;
    while (watchers--) {
        node = eddy__list_pop_front(&h->watchers);
        struct eddy_signal *s = eddy__container_of(node, struct eddy_signal, link);
        eddy__list_init(&s->link);
        eddy_signal_stop(s);
    }
}
