/* Timers: a 4-ary min-heap of deadlines in loop-clock nanoseconds. Each slot
 * carries its key (the deadline, then the arming order, so that equal
 * deadlines fire first-in first-out) beside the timer pointer: sifting
 * compares within the array and never chases a pointer, a node's four
 * children share one or two cache lines, and the heap is half as deep as a
 * binary one. Each timer knows its slot, so stopping one is O(log n) without
 * a search. */
#include <stdlib.h>

#include "internal.h"

#define ARITY 4

static bool entry_before(const struct eddy__heap_entry *a, const struct eddy__heap_entry *b)
{
    if (a->deadline != b->deadline) return a->deadline < b->deadline;
    return a->seq < b->seq;
}

static void heap_place(struct eddy__timer_heap *h, size_t i, struct eddy__heap_entry e)
{
    h->items[i] = e;
    e.timer->heap_index = i;
}

static void sift_up(struct eddy__timer_heap *h, size_t i)
{
    struct eddy__heap_entry e = h->items[i];
    while (i > 0) {
        size_t parent = (i - 1) / ARITY;
        if (!entry_before(&e, &h->items[parent])) break;
        heap_place(h, i, h->items[parent]);
        i = parent;
    }
    heap_place(h, i, e);
}

static void sift_down(struct eddy__timer_heap *h, size_t i)
{
    struct eddy__heap_entry e = h->items[i];
    for (;;) {
        size_t first = ARITY * i + 1;
        if (first >= h->count) break;
        size_t end = first + ARITY < h->count ? first + ARITY : h->count;
        size_t best = first;
        for (size_t c = first + 1; c < end; c++)
            if (entry_before(&h->items[c], &h->items[best])) best = c;
        if (!entry_before(&h->items[best], &e)) break;
        heap_place(h, i, h->items[best]);
        i = best;
    }
    heap_place(h, i, e);
}

void eddy__timer_init(struct eddy_timer *t, struct eddy_loop *loop,
                      void (*fire)(struct eddy_timer *))
{
    t->deadline = 0;
    t->heap_index = SIZE_MAX;
    t->loop = loop;
    t->fire = fire;
    t->cb = NULL;
    t->arg = NULL;
    t->flags = 0;
}

int eddy__timer_start(struct eddy_timer *t, int64_t deadline)
{
    struct eddy__timer_heap *h = &t->loop->timers;
    if (eddy__timer_pending(t)) eddy__timer_stop(t);
    if (h->count == h->capacity) {
        size_t capacity = h->capacity ? h->capacity * 2 : 64;
        struct eddy__heap_entry *items = realloc(h->items, capacity * sizeof(*items));
        if (!items) return -ENOMEM;
        h->items = items;
        h->capacity = capacity;
    }
    t->deadline = deadline;
    struct eddy__heap_entry e = {deadline, h->next_seq++, t};
    heap_place(h, h->count++, e);
    sift_up(h, t->heap_index);
    return 0;
}

void eddy__timer_stop(struct eddy_timer *t)
{
    struct eddy__timer_heap *h = &t->loop->timers;
    size_t i = t->heap_index;
    if (i == SIZE_MAX) return;
    t->heap_index = SIZE_MAX;
    struct eddy__heap_entry last = h->items[--h->count];
    if (i == h->count) return;
    heap_place(h, i, last);
    if (i > 0 && entry_before(&last, &h->items[(i - 1) / ARITY]))
        sift_up(h, i);
    else
        sift_down(h, i);
}

/* ---- public timers: recycled, and cancelled lazily ------------------------- */

/* Cancelling a public timer only marks it dead: it leaves the heap when it
 * surfaces at the top, or when dead timers pass half the heap and it is
 * rebuilt, so a cancel costs O(1) and the amortised clean-up O(1) too.
 * (Internal timers live in task frames and are always removed at once.) */
#define TIMER_FREE_MAX 4096

static void public_timer_release(struct eddy_loop *loop, struct eddy_timer *t)
{
    if (loop && loop->timers.free_count < TIMER_FREE_MAX) {
        t->next_free = loop->timers.free_list;
        loop->timers.free_list = t;
        loop->timers.free_count++;
    } else {
        free(t);
    }
}

static struct eddy_timer *public_timer_alloc(struct eddy_loop *loop)
{
    struct eddy_timer *t = loop->timers.free_list;
    if (!t) return malloc(sizeof(*t));
    loop->timers.free_list = t->next_free;
    loop->timers.free_count--;
    return t;
}

/* Takes a dead timer out of the heap and recycles it. */
static void drop_dead(struct eddy_loop *loop, struct eddy_timer *t)
{
    eddy__timer_stop(t);
    loop->timers.dead--;
    public_timer_release(loop, t);
}

static void heap_rebuild_without_dead(struct eddy_loop *loop)
{
    struct eddy__timer_heap *h = &loop->timers;
    size_t kept = 0;
    for (size_t i = 0; i < h->count; i++) {
        struct eddy_timer *t = h->items[i].timer;
        if (t->flags & EDDY__TIMER_DEAD) {
            t->heap_index = SIZE_MAX;
            public_timer_release(loop, t);
        } else {
            heap_place(h, kept++, h->items[i]);
        }
    }
    h->count = kept;
    h->dead = 0;
    /* Floyd's heap construction: sift down every node that has children. */
    for (size_t i = kept > 1 ? (kept - 2) / ARITY + 1 : 0; i-- > 0;)
        sift_down(h, i);
}

int64_t eddy__timers_next(struct eddy__timer_heap *h)
{
    while (h->count && (h->items[0].timer->flags & EDDY__TIMER_DEAD))
        drop_dead(h->items[0].timer->loop, h->items[0].timer);
    return h->count ? h->items[0].deadline : INT64_MAX;
}

void eddy__timers_run(struct eddy_loop *loop, int64_t now)
{
    struct eddy__timer_heap *h = &loop->timers;
    while (h->count && h->items[0].deadline <= now) {
        struct eddy_timer *t = h->items[0].timer;
        if (t->flags & EDDY__TIMER_DEAD) {
            drop_dead(loop, t);
            continue;
        }
        eddy__timer_stop(t);
        t->fire(t);
    }
}

/* Frees what the loop owns; a handle its caller still holds is detached from
 * the loop so that eddy_timer_cancel can still release it. */
void eddy__timers_destroy(struct eddy_loop *loop)
{
    struct eddy__timer_heap *h = &loop->timers;
    while (h->count) {
        struct eddy_timer *t = h->items[h->count - 1].timer;
        eddy__timer_stop(t);
        t->loop = NULL;
        if ((t->flags & EDDY__TIMER_PUBLIC) &&
            (!(t->flags & EDDY__TIMER_OWNED) || (t->flags & EDDY__TIMER_DEAD)))
            free(t);
    }
    h->dead = 0;
    free(h->items);
    h->items = NULL;
    h->capacity = 0;
    struct eddy_timer *t;
    while ((t = h->free_list)) {
        h->free_list = t->next_free;
        free(t);
    }
    h->free_count = 0;
}

static void public_timer_fire(struct eddy_timer *t)
{
    eddy_callback cb = t->cb;
    void *arg = t->arg;
    t->flags |= EDDY__TIMER_FIRED;
    if (!(t->flags & EDDY__TIMER_OWNED)) public_timer_release(t->loop, t);
    cb(arg);
}

EDDY_API int eddy_call_later(eddy_loop *loop, int64_t delay_ns, eddy_callback cb, void *arg,
                             eddy_timer **out)
{
    if (!loop || !cb || delay_ns < 0) return -EINVAL;
    struct eddy_timer *t = public_timer_alloc(loop);
    if (!t) return -ENOMEM;
    eddy__timer_init(t, loop, public_timer_fire);
    t->cb = cb;
    t->arg = arg;
    t->flags = EDDY__TIMER_PUBLIC | (out ? EDDY__TIMER_OWNED : 0);
    int64_t now = eddy__loop_update_time(loop);
    int64_t deadline = delay_ns > INT64_MAX - now ? INT64_MAX : now + delay_ns;
    int err = eddy__timer_start(t, deadline);
    if (err < 0) {
        public_timer_release(loop, t);
        return err;
    }
    if (out) *out = t;
    return 0;
}

EDDY_API int eddy_timer_cancel(eddy_timer *t)
{
    if (!t || !(t->flags & EDDY__TIMER_PUBLIC) || (t->flags & EDDY__TIMER_DEAD)) return -EINVAL;
    struct eddy_loop *loop = t->loop;
    if (t->flags & EDDY__TIMER_FIRED) {
        public_timer_release(loop, t);
        return -EALREADY;
    }
    if (!loop) { /* its loop was freed first */
        free(t);
        return 0;
    }
    t->flags |= EDDY__TIMER_DEAD;
    struct eddy__timer_heap *h = &loop->timers;
    if (++h->dead > 64 && h->dead * 2 > h->count) heap_rebuild_without_dead(loop);
    return 0;
}
