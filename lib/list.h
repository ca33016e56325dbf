/* SPDX-License-Identifier: MIT */
/* Intrusive circular doubly-linked lists: O(1) insert and removal, no
 * allocation. A node that is in no list points at itself. */
#ifndef EDDY_LIST_H
#define EDDY_LIST_H

#include <stdbool.h>
#include <stddef.h>

struct eddy__list {
    struct eddy__list *prev, *next;
};

#define eddy__container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

static inline void eddy__list_init(struct eddy__list *l)
{
    l->prev = l->next = l;
}

static inline bool eddy__list_empty(const struct eddy__list *l)
{
    return l->next == l;
}

/* Inserts node before head: at the tail of the list that head anchors. */
static inline void eddy__list_push_back(struct eddy__list *head, struct eddy__list *node)
{
    node->prev = head->prev;
    node->next = head;
    head->prev->next = node;
    head->prev = node;
}

static inline void eddy__list_remove(struct eddy__list *node)
{
    node->prev->next = node->next;
    node->next->prev = node->prev;
    node->prev = node->next = node;
}

static inline struct eddy__list *eddy__list_pop_front(struct eddy__list *head)
{
    struct eddy__list *node = head->next;
    if (node == head) return NULL;
    eddy__list_remove(node);
    return node;
}

/* Moves every node of from to the tail of to; from ends empty. */
static inline void eddy__list_splice(struct eddy__list *to, struct eddy__list *from)
{
    if (eddy__list_empty(from)) return;
    from->next->prev = to->prev;
    to->prev->next = from->next;
    from->prev->next = to;
    to->prev = from->prev;
    eddy__list_init(from);
}

#endif /* EDDY_LIST_H */
