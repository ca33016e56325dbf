/* SPDX-License-Identifier: MIT */
/* Timers: a 4-ary min-heap of the deadlines due soon, in loop-clock
 * nanoseconds, and a two-level wheel of unsorted buckets for the rest.
 *
 * The heap's slots carry their key (the deadline, then the arming order, so
 * that equal deadlines fire first-in first-out) beside the timer pointer:
 * sifting compares within the array and never chases a pointer, a node's
 * four children share one or two cache lines, and the heap is half as deep
 * as a binary one. Each timer knows its slot, so stopping one is O(log n)
 * without a search.
 *
 * Most timers are timeouts that are stopped long before they are due. The
 * wheel keeps those out of the heap: a timer due after the current near tick
 * (2^24 ns, about 17 ms) goes into a near bucket (one per tick of the current
 * far tick, 2^32 ns, about 4.3 s) or a far bucket (one per far tick, 256 of
 * them, about 18 minutes), or past that into an overflow list; arming and
 * stopping it there is a list insert or removal. Whenever the earliest
 * non-empty bucket could hold a deadline before the heap's first, that bucket
 * is emptied: near buckets into the heap, far ones into near buckets, the
 * overflow into the far level. So the heap's top is always the earliest
 * deadline, exactly, and a timer that fires crossed each level at most once. */
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
    e.timer->heap_index = (uint32_t)i;
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

static void heap_push(struct eddy__timer_heap *h, struct eddy_timer *t)
{
    struct eddy__heap_entry e = {t->deadline, t->seq, t};
    heap_place(h, h->count++, e);
    sift_up(h, t->heap_index);
}

static void heap_remove(struct eddy__timer_heap *h, struct eddy_timer *t)
{
    size_t i = t->heap_index;
    t->heap_index = UINT32_MAX;
    struct eddy__heap_entry last = h->items[--h->count];
    if (i == h->count) return;
    heap_place(h, i, last);
    if (i > 0 && entry_before(&last, &h->items[(i - 1) / ARITY]))
        sift_up(h, i);
    else
        sift_down(h, i);
}

/* ---- the wheel ------------------------------------------------------------ */

#define NEAR_SHIFT 24 /* a near tick: 2^24 ns, about 16.8 ms */
#define FAR_SHIFT  32 /* a far tick: 2^32 ns, about 4.3 s, 256 near ticks */
#define SLOT_MASK  (EDDY__WHEEL_SLOTS - 1)
#define LEVEL_NEAR 0
#define LEVEL_FAR  1

static int64_t far_tick_now(const struct eddy__timer_wheel *w)
{
    return w->tick >> (FAR_SHIFT - NEAR_SHIFT);
}

static void slot_mark(struct eddy__timer_wheel *w, int level, size_t i)
{
    w->used[level][i / 64] |= UINT64_C(1) << (i % 64);
}

/* The first non-empty bucket of level at index from or after it, or -1. */
static int slot_next(const struct eddy__timer_wheel *w, int level, size_t from)
{
    for (size_t word = from / 64; word < EDDY__WHEEL_SLOTS / 64; word++) {
        uint64_t bits = w->used[level][word];
        if (word == from / 64) bits &= ~UINT64_C(0) << (from % 64);
        if (bits) return (int)(word * 64 + (size_t)__builtin_ctzll(bits));
    }
    return -1;
}

void eddy__timers_init(struct eddy__timer_heap *h, int64_t now)
{
    struct eddy__timer_wheel *w = &h->wheel;
    w->tick = now >> NEAR_SHIFT;
    w->overflow_min = INT64_MAX;
    for (int level = LEVEL_NEAR; level <= LEVEL_FAR; level++)
        for (size_t i = 0; i < EDDY__WHEEL_SLOTS; i++)
            eddy__list_init(&w->slots[level][i]);
    eddy__list_init(&w->overflow);
    eddy__list_init(&h->slabs);
    eddy__list_init(&h->partial_slabs);
}

/* Puts an armed timer where its deadline belongs at the wheel's tick: the
 * heap for this near tick or earlier, a near bucket for a later near tick of
 * this far tick, a far bucket for the next 255 far ticks, else overflow. */
static void timer_place(struct eddy__timer_heap *h, struct eddy_timer *t)
{
    struct eddy__timer_wheel *w = &h->wheel;
    int64_t near_tick = t->deadline >> NEAR_SHIFT, far_tick = t->deadline >> FAR_SHIFT;
    struct eddy__list *slot;
    if (near_tick <= w->tick) {
        heap_push(h, t);
        return;
    }
    if (far_tick == far_tick_now(w)) {
        size_t i = (size_t)near_tick & SLOT_MASK;
        slot = &w->slots[LEVEL_NEAR][i];
        slot_mark(w, LEVEL_NEAR, i);
        t->heap_index = EDDY__IN_WHEEL_NEAR;
    } else if (far_tick - far_tick_now(w) < EDDY__WHEEL_SLOTS) {
        size_t i = (size_t)far_tick & SLOT_MASK;
        slot = &w->slots[LEVEL_FAR][i];
        slot_mark(w, LEVEL_FAR, i);
        t->heap_index = EDDY__IN_WHEEL_FAR;
    } else {
        slot = &w->overflow;
        if (t->deadline < w->overflow_min) w->overflow_min = t->deadline;
        t->heap_index = EDDY__IN_WHEEL_OVERFLOW;
    }
    eddy__list_push_back(slot, &t->link);
    w->count++;
}

static void wheel_remove(struct eddy__timer_wheel *w, struct eddy_timer *t)
{
    size_t where = t->heap_index;
    eddy__list_remove(&t->link);
    t->heap_index = UINT32_MAX;
    w->count--;
    if (where == EDDY__IN_WHEEL_OVERFLOW) {
        if (eddy__list_empty(&w->overflow)) w->overflow_min = INT64_MAX;
        return;
    }
    int level = where == EDDY__IN_WHEEL_NEAR ? LEVEL_NEAR : LEVEL_FAR;
    size_t i = (size_t)(t->deadline >> (level == LEVEL_NEAR ? NEAR_SHIFT : FAR_SHIFT)) & SLOT_MASK;
    if (eddy__list_empty(&w->slots[level][i])) w->used[level][i / 64] &= ~(UINT64_C(1) << (i % 64));
}

/* Takes every timer out of list and places it again at the current tick. */
static void replace_all(struct eddy__timer_heap *h, struct eddy__list *list)
{
    struct eddy__list moving;
    eddy__list_init(&moving);
    eddy__list_splice(&moving, list);
    struct eddy__list *node;
    while ((node = eddy__list_pop_front(&moving))) {
        struct eddy_timer *t = eddy__container_of(node, struct eddy_timer, link);
        h->wheel.count--;
        timer_place(h, t);
    }
}

/* The earliest deadline the wheel may hold, and which bucket holds it
 * (level LEVEL_NEAR or LEVEL_FAR and index; level -1 for the overflow); INT64_MAX and
 * no bucket when the wheel is empty. */
static int64_t wheel_first(const struct eddy__timer_wheel *w, int *level, int *index)
{
    *level = -1;
    *index = -1;
    if (!w->count) return INT64_MAX;
    int i = slot_next(w, LEVEL_NEAR, ((size_t)w->tick & SLOT_MASK) + 1);
    if (i >= 0) {
        *level = LEVEL_NEAR;
        *index = i;
        return ((w->tick & ~(int64_t)SLOT_MASK) | i) << NEAR_SHIFT;
    }
    /* Far buckets hold the next 255 far ticks, wrapping round the array. */
    size_t from = ((size_t)far_tick_now(w) + 1) & SLOT_MASK;
    i = slot_next(w, LEVEL_FAR, from);
    if (i < 0) i = slot_next(w, LEVEL_FAR, 0);
    if (i >= 0) {
        int64_t ahead = (int64_t)(((size_t)i - from) & SLOT_MASK) + 1;
        *level = LEVEL_FAR;
        *index = i;
        return (far_tick_now(w) + ahead) << FAR_SHIFT;
    }
    return w->overflow_min;
}

/* Empties the wheel's earliest bucket one level down, moving the tick to it. */
static void wheel_advance(struct eddy__timer_heap *h)
{
    struct eddy__timer_wheel *w = &h->wheel;
    int level, i;
    int64_t first = wheel_first(w, &level, &i);
    w->tick = first >> NEAR_SHIFT;
    if (level >= 0) {
        w->used[level][i / 64] &= ~(UINT64_C(1) << (i % 64));
        replace_all(h, &w->slots[level][i]);
    }
    /* The far level's window moved: overflow timers that now fall in it move
     * in (the whole list, rarely: it holds timers 18 minutes away or more). */
    if (level != LEVEL_NEAR &&
        (w->overflow_min >> FAR_SHIFT) - far_tick_now(w) < EDDY__WHEEL_SLOTS) {
        w->overflow_min = INT64_MAX;
        replace_all(h, &w->overflow);
    }
}

/* ---- arming and stopping -------------------------------------------------- */

void eddy__timer_init(struct eddy_timer *t, struct eddy_loop *loop,
                      void (*fire)(struct eddy_timer *))
{
    t->deadline = 0;
    t->heap_index = UINT32_MAX;
    t->loop = loop;
    t->fire = fire;
    t->arg = NULL;
    t->flags = 0;
}

int eddy__timer_start(struct eddy_timer *t, int64_t deadline)
{
    struct eddy__timer_heap *h = &t->loop->timers;
    if (eddy__timer_pending(t)) eddy__timer_stop(t);
    /* Room for every armed timer, so that moving one from the wheel into
     * the heap never needs memory. */
    if (h->count + h->wheel.count >= h->capacity) {
        if (h->capacity >= EDDY__IN_WHEEL_OVERFLOW / 2) return -ENOMEM; /* heap_index is 32 bits */
        size_t capacity = h->capacity ? h->capacity * 2 : 64;
        struct eddy__heap_entry *items = realloc(h->items, capacity * sizeof(*items));
        if (!items) return -ENOMEM;
        h->items = items;
        h->capacity = capacity;
    }
    t->deadline = deadline < EDDY__DEADLINE_MAX ? deadline : EDDY__DEADLINE_MAX;
    t->seq = h->next_seq++;
    timer_place(h, t);
    return 0;
}

void eddy__timer_stop(struct eddy_timer *t)
{
    if (t->heap_index == UINT32_MAX) return;
    if (t->heap_index >= EDDY__IN_WHEEL_OVERFLOW)
        wheel_remove(&t->loop->timers.wheel, t);
    else
        heap_remove(&t->loop->timers, t);
}

/* ---- public timers: recycled, and cancelled lazily ------------------------- */

/* Cancelling a public timer in the wheel takes it out at once. One in the
 * heap is only marked dead: it leaves the heap when it surfaces at the top,
 * or when dead timers pass half the heap and it is rebuilt, so a cancel costs
 * O(1) and the amortised clean-up O(1) too.
 * (Internal timers live in task frames and are always removed at once.) */

/* Their memory comes from slabs of the loop's, one aligned block holding
 * about two hundred timers, so that a burst of timers costs no malloc each
 * and a timer finds its slab from its address. Slabs with room are kept
 * fullest first, so that bursts drain back into empty slabs; empty slabs go
 * back to malloc once they have stayed unused for a second (decay, the way
 * jemalloc returns dirty pages), so that a loop that keeps bursting keeps its
 * memory warm and one that stopped gives it back. A slab still holding a
 * handle its caller keeps outlives the loop (owner NULL) until that handle
 * is released. */
#define SLAB_SIZE 16384

struct timer_slab {
    struct eddy__list all;          /* the loop's slabs */
    struct eddy__list partial;      /* in the loop's slabs with room; itself when full */
    struct eddy__timer_heap *owner; /* NULL once the loop is freed */
    struct eddy_timer *free;        /* released timers */
    size_t used, fresh;             /* timers handed out; timers[fresh..] never were */
    struct eddy_timer timers[];
};

#define SLAB_TIMERS ((SLAB_SIZE - sizeof(struct timer_slab)) / sizeof(struct eddy_timer))

static struct timer_slab *slab_of(struct eddy_timer *t)
{
    return (struct timer_slab *)((uintptr_t)t & ~(uintptr_t)(SLAB_SIZE - 1));
}

static struct eddy_timer *public_timer_alloc(struct eddy__timer_heap *h)
{
    if (eddy__list_empty(&h->partial_slabs)) {
        struct timer_slab *s = eddy__aligned_alloc(SLAB_SIZE, SLAB_SIZE);
        if (!s) return NULL;
        s->owner = h;
        s->free = NULL;
        s->used = s->fresh = 0;
        eddy__list_push_back(&h->slabs, &s->all);
        eddy__list_push_back(&h->partial_slabs, &s->partial);
        h->empty_slabs++;
    }
    struct timer_slab *s = eddy__container_of(h->partial_slabs.next, struct timer_slab, partial);
    struct eddy_timer *t = s->free;
    if (t)
        s->free = t->next_free;
    else
        t = &s->timers[s->fresh++];
    if (s->used++ == 0) h->empty_slabs--;
    if (!s->free && s->fresh == SLAB_TIMERS) eddy__list_remove(&s->partial);
    return t;
}

static void public_timer_release(struct eddy_timer *t)
{
    struct timer_slab *s = slab_of(t);
    struct eddy__timer_heap *h = s->owner;
    bool was_full = !s->free && s->fresh == SLAB_TIMERS;
    t->next_free = s->free;
    s->free = t;
    s->used--;
    if (!h) { /* its loop is gone */
        if (!s->used) eddy__aligned_free(s);
        return;
    }
    if (was_full) /* to the front: the next timers fill it again */
        eddy__list_push_back(h->partial_slabs.next, &s->partial);
    if (!s->used) { /* to the back, where it waits to be used or trimmed */
        eddy__list_remove(&s->partial);
        eddy__list_push_back(&h->partial_slabs, &s->partial);
        h->empty_slabs++;
    }
}

#define SLAB_DECAY_NS 1000000000 /* how long spare empty slabs are kept */

/* Frees the empty slabs (but one) that have had a second to be used again. */
static void slabs_trim(struct eddy__timer_heap *h, int64_t now)
{
    if (h->empty_slabs <= 1) {
        h->trim_at = 0;
        return;
    }
    if (!h->trim_at) {
        h->trim_at = eddy__deadline_after(now, SLAB_DECAY_NS);
        return;
    }
    if (now < h->trim_at) return;
    h->trim_at = 0;
    struct eddy__list *node = h->partial_slabs.prev;
    while (node != &h->partial_slabs && h->empty_slabs > 1) {
        struct timer_slab *s = eddy__container_of(node, struct timer_slab, partial);
        node = node->prev;
        if (s->used) break; /* empty slabs are at the back */
        eddy__list_remove(&s->partial);
        eddy__list_remove(&s->all);
        h->empty_slabs--;
        eddy__aligned_free(s);
    }
}

/* Takes a dead timer out of the heap and recycles it. */
static void drop_dead(struct eddy_loop *loop, struct eddy_timer *t)
{
    eddy__timer_stop(t);
    loop->timers.dead--;
    public_timer_release(t);
}

static void heap_rebuild_without_dead(struct eddy_loop *loop)
{
    struct eddy__timer_heap *h = &loop->timers;
    size_t kept = 0;
    for (size_t i = 0; i < h->count; i++) {
        struct eddy_timer *t = h->items[i].timer;
        if (t->flags & EDDY__TIMER_DEAD) {
            t->heap_index = UINT32_MAX;
            public_timer_release(t);
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

static void public_timer_fire(struct eddy_timer *t)
{
    eddy_callback cb = t->cb;
    void *arg = t->arg;
    t->flags |= EDDY__TIMER_FIRED;
    if (!(t->flags & EDDY__TIMER_OWNED)) public_timer_release(t);
    cb(arg);
}

int64_t eddy__timers_next(struct eddy__timer_heap *h)
{
    for (;;) {
        while (h->count && (h->items[0].timer->flags & EDDY__TIMER_DEAD))
            drop_dead(h->items[0].timer->loop, h->items[0].timer);
        int level, index;
        int64_t wheel = wheel_first(&h->wheel, &level, &index);
        /* Ties go to the wheel: its timer may have been armed first. */
        if (wheel == INT64_MAX || (h->count && h->items[0].deadline < wheel)) break;
        wheel_advance(h);
    }
    return h->count ? h->items[0].deadline : INT64_MAX;
}

void eddy__timers_run(struct eddy_loop *loop, int64_t now)
{
    struct eddy__timer_heap *h = &loop->timers;
    while (eddy__timers_next(h) <= now && h->count) {
        struct eddy_timer *t = h->items[0].timer;
        eddy__timer_stop(t);
        if (t->flags & EDDY__TIMER_PUBLIC)
            public_timer_fire(t);
        else
            t->fire(t);
    }
    slabs_trim(h, now);
}

/* Unarms t at loop teardown; frees it unless its caller still holds it, in
 * which case it is detached so that eddy_timer_cancel can still release it. */
static void timer_detach(struct eddy_timer *t)
{
    eddy__timer_stop(t);
    t->loop = NULL;
    if ((t->flags & EDDY__TIMER_PUBLIC) &&
        (!(t->flags & EDDY__TIMER_OWNED) || (t->flags & EDDY__TIMER_DEAD)))
        public_timer_release(t);
}

static void detach_list(struct eddy__list *list)
{
    while (!eddy__list_empty(list))
        timer_detach(eddy__container_of(list->next, struct eddy_timer, link));
}

/* Frees what the loop owns. */
void eddy__timers_destroy(struct eddy_loop *loop)
{
    struct eddy__timer_heap *h = &loop->timers;
    while (h->count)
        timer_detach(h->items[h->count - 1].timer);
    for (int level = LEVEL_NEAR; level <= LEVEL_FAR; level++)
        for (size_t i = 0; i < EDDY__WHEEL_SLOTS; i++)
            detach_list(&h->wheel.slots[level][i]);
    detach_list(&h->wheel.overflow);
    h->dead = 0;
    free(h->items);
    h->items = NULL;
    h->capacity = 0;
    /* Slabs whose timers are all back go; the others wait for their last
     * handle's eddy_timer_cancel. */
    struct eddy__list *node;
    while ((node = eddy__list_pop_front(&h->slabs))) {
        struct timer_slab *s = eddy__container_of(node, struct timer_slab, all);
        if (s->used)
            s->owner = NULL;
        else
            eddy__aligned_free(s);
    }
    eddy__list_init(&h->partial_slabs);
    h->empty_slabs = 0;
}

EDDY_API int eddy_call_later(eddy_loop *loop, int64_t delay_ns, eddy_callback cb, void *arg,
                             eddy_timer **out)
{
    if (!loop || !cb || delay_ns < 0) return -EINVAL;
    if (eddy__loop_foreign(loop)) return -EPERM;
    struct eddy_timer *t = public_timer_alloc(&loop->timers);
    if (!t) return -ENOMEM;
    eddy__timer_init(t, loop, NULL);
    t->cb = cb;
    t->arg = arg;
    t->flags = EDDY__TIMER_PUBLIC | (out ? EDDY__TIMER_OWNED : 0);
    int64_t now = eddy__loop_update_time(loop);
    int err = eddy__timer_start(t, eddy__deadline_after(now, delay_ns));
    if (err < 0) {
        public_timer_release(t);
        return err;
    }
    if (out) *out = t;
    return 0;
}

EDDY_API int eddy_timer_cancel(eddy_timer *t)
{
    if (!t || !(t->flags & EDDY__TIMER_PUBLIC) || (t->flags & EDDY__TIMER_DEAD)) return -EINVAL;
    /* t->loop is stale in a handle that fired before its loop was freed; its
     * slab's owner is not (NULL once the loop is gone). */
    struct eddy__timer_heap *owner = slab_of(t)->owner;
    if (owner && eddy__loop_foreign(eddy__container_of(owner, struct eddy_loop, timers)))
        return -EPERM;
    struct eddy_loop *loop = t->loop;
    if (t->flags & EDDY__TIMER_FIRED) {
        public_timer_release(t);
        return -EALREADY;
    }
    if (!loop) { /* its loop was freed first */
        public_timer_release(t);
        return 0;
    }
    struct eddy__timer_heap *h = &loop->timers;
    if (t->heap_index != UINT32_MAX && t->heap_index >= EDDY__IN_WHEEL_OVERFLOW) {
        wheel_remove(&h->wheel, t); /* O(1) there: no need to leave it dead */
        public_timer_release(t);
        return 0;
    }
    t->flags |= EDDY__TIMER_DEAD;
    if (++h->dead > 64 && h->dead * 2 > h->count) heap_rebuild_without_dead(loop);
    return 0;
}
