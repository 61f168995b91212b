/* loop.h: a minimal epoll event loop (in the spirit of Redis's ae.c).
 *
 * A watcher is embedded in the owner's struct. Handlers may close any watcher: closing only
 * marks it (fd = -1), and the dispatcher re-checks before every call, so an event already
 * fetched for a closed watcher in the same batch is dropped instead of touching freed state.
 * Owners free their structs through loop_defer_free, which runs after the batch. */
#ifndef CALC_NET_LOOP_H
#define CALC_NET_LOOP_H
#include <stdbool.h>
#include <stdint.h>
#include <sys/epoll.h>

typedef struct loop loop;
typedef struct watcher watcher;
typedef void (*watcher_cb)(loop *l, watcher *w, uint32_t events);

struct watcher {
  int fd;             /* -1 once closed */
  uint32_t mask;      /* EPOLLIN / EPOLLOUT currently registered */
  watcher_cb cb;
  void *owner;
};

loop *loop_new(void);
void loop_free(loop *l);
/* Registers fd with mask. 0 or -1 (errno). */
int loop_add(loop *l, watcher *w, int fd, uint32_t mask, watcher_cb cb, void *owner);
/* Changes interest; no syscall when unchanged. */
int loop_set(loop *l, watcher *w, uint32_t mask);
/* Deregisters and closes the fd; safe to call twice. */
void loop_close(loop *l, watcher *w);
/* Frees p with free_fn after the current batch of events. */
void loop_defer_free(loop *l, void *p, void (*free_fn)(void *));
/* Waits up to timeout_ms (-1 forever) and dispatches. Returns events handled or -1 (EINTR ok). */
int loop_run_once(loop *l, int timeout_ms);
/* Monotonic milliseconds. */
uint64_t loop_now_ms(void);

#endif
