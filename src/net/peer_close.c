/* peer_close.c: see peer_close.h. No other file of ours: the preload compiles it alone. */
#include "peer_close.h"

#include <errno.h>
#include <poll.h>
#include <time.h>

void calc_wait_peer_close(int fd, int timeout_ms) {
  int saved = errno;
  struct timespec t0, t;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (;;) {
    clock_gettime(CLOCK_MONOTONIC, &t);
    long left = timeout_ms - ((t.tv_sec - t0.tv_sec) * 1000L + (t.tv_nsec - t0.tv_nsec) / 1000000L);
    if (left <= 0) break;
    struct pollfd p = {.fd = fd, .events = POLLRDHUP};
    if (poll(&p, 1, (int)left) >= 0 || errno != EINTR) break;
  }
  errno = saved;
}
