/* SPDX-License-Identifier: MIT */
/* Queues of intptr_t items between the tasks of one loop (asyncio.Queue,
 * LifoQueue, PriorityQueue, with 3.13's shutdown), on the waiter lists of
 * sync.h.
 *
 * Hand-off by reservation: a put with getters waiting stores the item and
 * sets it aside for the first getter, which takes it when it runs; a get
 * that frees a slot of a full queue sets the slot aside for the first
 * putter. Nobody who arrives later can take a reserved item or slot, so
 * getters and putters are served in arrival order; a reserved waiter that is
 * cancelled before it runs passes its reservation on. Items never leave the
 * buffer on the way, so none is lost or duplicated whatever is cancelled. */
#include <stdlib.h>

#include "sync.h"

struct queue_entry {
    intptr_t item;
    uint64_t seq; /* PRIORITY: equal items come out in the order they went in */
};

struct eddy_queue {
    uint64_t thread; /* the thread it belongs to (eddy__sync_foreign); 0 until bound */
    size_t maxsize;  /* 0: unbounded */
    int order;
    int (*compare)(intptr_t a, intptr_t b);
    struct queue_entry *entries; /* FIFO: a ring from head; LIFO: a stack; PRIORITY: a heap */
    size_t head, count, capacity;
    uint64_t next_seq;
    size_t get_reserved; /* items in entries set aside for woken getters */
    size_t put_reserved; /* free slots set aside for woken putters */
    size_t unfinished;   /* put and not yet task_done */
    bool shutdown;
    struct eddy__list getters, putters, joiners;
    struct eddy__list granted_getters, granted_putters;
};

/* eddy_queue_options' layouts, oldest first (lib/loop.c explains). */
static const size_t queue_options_layouts[] = {
    sizeof(eddy_queue_options), /* 0.1 */
};
_Static_assert(sizeof(eddy_queue_options) ==
                   offsetof(eddy_queue_options, compare) + sizeof(int (*)(intptr_t, intptr_t)),
               "eddy_queue_options: no tail padding, where a later field could land");

EDDY_API int eddy_queue_new(eddy_queue **out, const eddy_queue_options *user_opts)
{
    if (!out) return -EINVAL;
    eddy_queue_options copy = {0}, *o = &copy;
    if (user_opts) {
        int err =
            eddy__options_read(&copy, sizeof copy, user_opts, queue_options_layouts,
                               sizeof queue_options_layouts / sizeof queue_options_layouts[0]);
        if (err < 0) return err;
    }
    if (o->order < EDDY_QUEUE_FIFO || o->order > EDDY_QUEUE_PRIORITY) return -EINVAL;
    if (o->order == EDDY_QUEUE_PRIORITY && !o->compare) return -EINVAL;
    if (o->maxsize > SIZE_MAX / 2 / sizeof(struct queue_entry)) return -EINVAL;
    struct eddy_queue *q = calloc(1, sizeof(*q));
    if (!q) return -ENOMEM;
    q->maxsize = o->maxsize;
    q->order = o->order;
    q->compare = o->compare;
    eddy__list_init(&q->getters);
    eddy__list_init(&q->putters);
    eddy__list_init(&q->joiners);
    eddy__list_init(&q->granted_getters);
    eddy__list_init(&q->granted_putters);
    *out = q;
    return 0;
}

EDDY_API void eddy_queue_free(eddy_queue *q)
{
    if (!q) return;
    eddy__sync_finish_all(&q->getters, -ECANCELED, false);
    eddy__sync_finish_all(&q->putters, -ECANCELED, false);
    eddy__sync_finish_all(&q->joiners, -ECANCELED, false);
    eddy__sync_finish_all(&q->granted_getters, -ECANCELED, true);
    eddy__sync_finish_all(&q->granted_putters, -ECANCELED, true);
    free(q->entries);
    free(q);
}

/* ---- the buffer ---------------------------------------------------------------- */

/* Room for need entries. Puts that waited never come here: the slot they were
 * given was freed by a get, so the room is there already. */
static int reserve(struct eddy_queue *q, size_t need)
{
    if (need <= q->capacity) return 0;
    size_t cap = q->capacity ? q->capacity * 2 : 16;
    if (cap < need) cap = need;
    if (q->maxsize && cap > q->maxsize) cap = q->maxsize;
    if (cap > SIZE_MAX / sizeof(struct queue_entry)) return -ENOMEM;
    struct queue_entry *e = malloc(cap * sizeof(*e));
    if (!e) return -ENOMEM;
    for (size_t i = 0; i < q->count; i++) /* unwrap the ring */
        e[i] = q->entries[(q->head + i) % q->capacity];
    free(q->entries);
    q->entries = e;
    q->head = 0;
    q->capacity = cap;
    return 0;
}

static bool before(const struct eddy_queue *q, const struct queue_entry *a,
                   const struct queue_entry *b)
{
    int c = q->compare(a->item, b->item);
    return c < 0 || (c == 0 && a->seq < b->seq);
}

static void heap_push(struct eddy_queue *q, struct queue_entry e)
{
    size_t i = q->count++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!before(q, &e, &q->entries[parent])) break;
        q->entries[i] = q->entries[parent];
        i = parent;
    }
    q->entries[i] = e;
}

static intptr_t heap_pop(struct eddy_queue *q)
{
    intptr_t top = q->entries[0].item;
    struct queue_entry last = q->entries[--q->count];
    size_t i = 0, n = q->count;
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= n) break;
        if (child + 1 < n && before(q, &q->entries[child + 1], &q->entries[child])) child++;
        if (!before(q, &q->entries[child], &last)) break;
        q->entries[i] = q->entries[child];
        i = child;
    }
    if (n) q->entries[i] = last;
    return top;
}

static size_t available(const struct eddy_queue *q)
{
    return q->count - q->get_reserved;
}

static bool full(const struct eddy_queue *q)
{
    return q->maxsize && q->count + q->put_reserved >= q->maxsize;
}

/* Sets items aside for waiting getters while there are both. */
static void serve_getters(struct eddy_queue *q)
{
    struct eddy__sync_waiter *w;
    while (available(q) > 0 && (w = eddy__sync_first(&q->getters))) {
        q->get_reserved++;
        eddy__sync_grant(w, &q->granted_getters);
    }
}

/* Sets free slots aside for waiting putters while there are both. */
static void serve_putters(struct eddy_queue *q)
{
    struct eddy__sync_waiter *w;
    while (!full(q) && (w = eddy__sync_first(&q->putters))) {
        q->put_reserved++;
        eddy__sync_grant(w, &q->granted_putters);
    }
}

/* Stores item (room reserved by the caller) and serves the getters. */
static void insert(struct eddy_queue *q, intptr_t item)
{
    struct queue_entry e = {.item = item, .seq = q->next_seq++};
    if (q->order == EDDY_QUEUE_PRIORITY)
        heap_push(q, e);
    else
        q->entries[(q->head + q->count++) % q->capacity] = e;
    q->unfinished++;
    serve_getters(q);
}

/* Takes the next item (one is available) and serves the putters. */
static intptr_t take(struct eddy_queue *q)
{
    intptr_t item;
    if (q->order == EDDY_QUEUE_PRIORITY) {
        item = heap_pop(q);
    } else if (q->order == EDDY_QUEUE_LIFO) {
        item = q->entries[(q->head + --q->count) % q->capacity].item;
    } else {
        item = q->entries[q->head].item;
        q->head = (q->head + 1) % q->capacity;
        q->count--;
    }
    serve_putters(q);
    return item;
}

/* ---- put and get --------------------------------------------------------------- */

static int put_now(struct eddy_queue *q, intptr_t item)
{
    int err = reserve(q, q->count + q->put_reserved + 1);
    if (err < 0) return err;
    insert(q, item);
    return 0;
}

EDDY_API int eddy_queue_put(eddy_queue *q, intptr_t item)
{
    if (!q) return -EINVAL;
    if (eddy__sync_foreign(&q->thread)) return -EPERM;
    struct eddy_task *t = eddy__current_task();
    if (!t) return -EPERM;
    if (eddy__task_cancelled(t)) return -ECANCELED;
    if (q->shutdown) return -EPIPE;
    if (!full(q) && eddy__list_empty(&q->putters)) return put_now(q, item);
    struct eddy__sync_waiter w = {.value = item, .object = q, .object_kind = EDDY__SYNC_QUEUE_PUT};
    eddy__sync_wait(t, &q->putters, &w, true);
    if (w.state == EDDY__WAITER_DONE) return w.result; /* cancelled, shut down, or freed */
    eddy__sync_take(&w);
    q->put_reserved--;
    int err = eddy__task_cancelled(t) ? -ECANCELED : q->shutdown ? -EPIPE : 0;
    if (err == 0) err = put_now(q, item);
    if (err < 0) serve_putters(q); /* the slot goes to the next putter */
    return err;
}

EDDY_API int eddy_queue_try_put(eddy_queue *q, intptr_t item)
{
    if (!q) return -EINVAL;
    if (eddy__sync_foreign(&q->thread)) return -EPERM;
    if (q->shutdown) return -EPIPE;
    if (full(q) || !eddy__list_empty(&q->putters)) return -EAGAIN;
    return put_now(q, item);
}

EDDY_API int eddy_queue_get(eddy_queue *q, intptr_t *item)
{
    if (!q) return -EINVAL;
    if (eddy__sync_foreign(&q->thread)) return -EPERM;
    struct eddy_task *t = eddy__current_task();
    if (!t) return -EPERM;
    if (eddy__task_cancelled(t)) return -ECANCELED;
    /* Getters wait only while nothing is available: no barging. */
    if (available(q) > 0) {
        intptr_t v = take(q);
        if (item) *item = v;
        return 0;
    }
    if (q->shutdown) return -EPIPE;
    struct eddy__sync_waiter w = {.object = q, .object_kind = EDDY__SYNC_QUEUE_GET};
    eddy__sync_wait(t, &q->getters, &w, true);
    if (w.state == EDDY__WAITER_DONE) return w.result; /* cancelled, shut down, or freed */
    eddy__sync_take(&w);
    q->get_reserved--;
    if (eddy__task_cancelled(t)) {
        serve_getters(q); /* the item stays, for the next getter */
        return -ECANCELED;
    }
    intptr_t v = take(q);
    if (item) *item = v;
    return 0;
}

EDDY_API int eddy_queue_try_get(eddy_queue *q, intptr_t *item)
{
    if (!q) return -EINVAL;
    if (eddy__sync_foreign(&q->thread)) return -EPERM;
    if (available(q) == 0) return q->shutdown ? -EPIPE : -EAGAIN;
    intptr_t v = take(q);
    if (item) *item = v;
    return 0;
}

EDDY_API ssize_t eddy_queue_size(const eddy_queue *q)
{
    return q ? (ssize_t)q->count : -EINVAL;
}

/* ---- join, shutdown ------------------------------------------------------------ */

EDDY_API int eddy_queue_task_done(eddy_queue *q)
{
    if (!q || q->unfinished == 0) return -EINVAL;
    if (eddy__sync_foreign(&q->thread)) return -EPERM;
    if (--q->unfinished == 0) eddy__sync_finish_all(&q->joiners, 0, false);
    return 0;
}

EDDY_API int eddy_queue_join(eddy_queue *q)
{
    if (!q) return -EINVAL;
    if (eddy__sync_foreign(&q->thread)) return -EPERM;
    struct eddy_task *t = eddy__current_task();
    if (!t) return -EPERM;
    if (eddy__task_cancelled(t)) return -ECANCELED;
    if (q->unfinished == 0) return 0;
    struct eddy__sync_waiter w = {.object = q, .object_kind = EDDY__SYNC_QUEUE_JOIN};
    eddy__sync_wait(t, &q->joiners, &w, true);
    if (w.result == 0 && eddy__task_cancelled(t)) return -ECANCELED;
    return w.result;
}

EDDY_API int eddy_queue_shutdown(eddy_queue *q, bool immediate)
{
    if (!q) return -EINVAL;
    if (eddy__sync_foreign(&q->thread)) return -EPERM;
    q->shutdown = true;
    if (immediate) {
        /* The items are dropped and count as done; getters they were set
         * aside for find the queue empty. */
        q->unfinished -= q->count < q->unfinished ? q->count : q->unfinished;
        q->count = q->head = 0;
        q->get_reserved = 0;
        eddy__sync_finish_all(&q->granted_getters, -EPIPE, true);
        if (q->unfinished == 0) eddy__sync_finish_all(&q->joiners, 0, false);
    }
    /* Waiting putters fail; waiting getters have nothing left to wait for
     * (the items still in the queue are set aside for woken getters). */
    eddy__sync_finish_all(&q->putters, -EPIPE, false);
    eddy__sync_finish_all(&q->getters, -EPIPE, false);
    return 0;
}
