/* loop.c: epoll dispatch with deferred frees (see loop.h). */
#include "loop.h"

#include <errno.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define LOOP_BATCH 256

typedef struct deferred {
  void *p;
  void (*free_fn)(void *);
} deferred;

struct loop {
  int epfd;
  deferred *dead;
  size_t ndead, capdead;
};

loop *loop_new(void) {
  loop *l = calloc(1, sizeof *l);
  if (!l) return NULL;
  l->epfd = epoll_create1(EPOLL_CLOEXEC);
  if (l->epfd < 0) {
    free(l);
    return NULL;
  }
  return l;
}

static void loop_reap(loop *l) {
  for (size_t i = 0; i < l->ndead; i++) l->dead[i].free_fn(l->dead[i].p);
  l->ndead = 0;
}

void loop_free(loop *l) {
  if (!l) return;
  loop_reap(l);
  free(l->dead);
  close(l->epfd);
  free(l);
}

int loop_add(loop *l, watcher *w, int fd, uint32_t mask, watcher_cb cb, void *owner) {
  w->fd = fd;
  w->mask = mask;
  w->cb = cb;
  w->owner = owner;
  struct epoll_event ev = {.events = mask, .data.ptr = w};
  return epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev);
}

int loop_set(loop *l, watcher *w, uint32_t mask) {
  if (w->fd < 0 || w->mask == mask) return 0;
  w->mask = mask;
  struct epoll_event ev = {.events = mask, .data.ptr = w};
  return epoll_ctl(l->epfd, EPOLL_CTL_MOD, w->fd, &ev);
}

void loop_close(loop *l, watcher *w) {
  if (w->fd < 0) return;
  /* close() drops the registration itself (no fd is ever dup'ed): no EPOLL_CTL_DEL syscall. */
  (void)l;
  close(w->fd);
  w->fd = -1;
  w->mask = 0;
}

void loop_defer_free(loop *l, void *p, void (*free_fn)(void *)) {
  if (l->ndead == l->capdead) {
    size_t cap = l->capdead ? l->capdead * 2 : 64;
    deferred *d = realloc(l->dead, cap * sizeof *d);
    if (!d) { /* cannot defer: the batch is over for this object's events anyway */
      free_fn(p);
      return;
    }
    l->dead = d;
    l->capdead = cap;
  }
  l->dead[l->ndead++] = (deferred){p, free_fn};
}

int loop_run_once(loop *l, int timeout_ms) {
  struct epoll_event evs[LOOP_BATCH];
  int n = epoll_wait(l->epfd, evs, LOOP_BATCH, timeout_ms);
  if (n < 0) return errno == EINTR ? 0 : -1;
  for (int i = 0; i < n; i++) {
    watcher *w = evs[i].data.ptr;
    /* Re-check: an earlier handler in this batch may have closed this watcher. */
    if (w->fd >= 0) w->cb(l, w, evs[i].events);
  }
  loop_reap(l);
  return n;
}

uint64_t loop_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}
