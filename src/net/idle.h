/* idle.h: connections ordered by last activity, for idle timeouts.
 *
 * With one timeout per list, moving a node to the tail on activity keeps the list sorted, so
 * finding the expired ones costs O(1) per check. A node is embedded in its owner's struct. */
#ifndef CALC_NET_IDLE_H
#define CALC_NET_IDLE_H
#include <stddef.h>
#include <stdint.h>

typedef struct idle_node idle_node;
typedef struct idle_list {
  idle_node *head, *tail;
  size_t count;
} idle_list;

struct idle_node {
  uint64_t last_ms;
  idle_list *list;     /* NULL while on no list */
  idle_node *prev, *next;
  void *owner;
};

void idle_touch(idle_list *list, idle_node *n, uint64_t now_ms); /* (re)append at the tail */
void idle_remove(idle_node *n);                                   /* no-op if on no list */
/* The node idle longest if its last activity is older than now - timeout, else NULL. */
idle_node *idle_expired(idle_list *list, uint64_t now_ms, uint64_t timeout_ms);

#endif
