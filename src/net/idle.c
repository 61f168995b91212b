/* idle.c: the idle list (see idle.h). */
#include "idle.h"

void idle_remove(idle_node *n) {
  idle_list *list = n->list;
  if (!list) return;
  if (n->prev) n->prev->next = n->next; else list->head = n->next;
  if (n->next) n->next->prev = n->prev; else list->tail = n->prev;
  n->prev = n->next = NULL;
  n->list = NULL;
  list->count--;
}

void idle_touch(idle_list *list, idle_node *n, uint64_t now_ms) {
  idle_remove(n);
  n->last_ms = now_ms;
  n->list = list;
  n->prev = list->tail;
  n->next = NULL;
  if (list->tail) list->tail->next = n; else list->head = n;
  list->tail = n;
  list->count++;
}

idle_node *idle_expired(idle_list *list, uint64_t now_ms, uint64_t timeout_ms) {
  idle_node *n = list->head;
  return (n && n->last_ms + timeout_ms <= now_ms) ? n : NULL;
}
