/* libcalc-close-wait.so: the lab preloads it (LD_PRELOAD) into the programs under test, so that
 * the client side of every connection in a graded run gives the other side a short time to
 * close first, whoever's program it is (calc-client does the same by its --close-wait option).
 *
 * Who sends the first FIN is what the teardown check judges. The reference's server and proxy
 * close only after their client's FIN; a program that closes right after answering races its
 * client, and which FIN reaches the wire first then depends on how the two processes are
 * scheduled: the same hand-in would pass in one grading and fail in the next. Held here, a
 * close-first program's FIN leads every time, while one that waits for the client's FIN sees it
 * as before, only later.
 *
 * CALCLAB_CLOSE_WAIT=MS:PORT[,PORT...] (set by the lab, without it nothing changes): close() and
 * shutdown() of an established TCP connection to one of PORTs (the run's server and proxy: the
 * caller is that connection's client side) first wait up to MS milliseconds for the peer's FIN or
 * reset. Nothing is read meanwhile: unread data still makes the close a reset, as without it. */
#include <dlfcn.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "peer_close.h"

#define MAX_PORTS 8

static int wait_ms;
static int nports;
static unsigned short ports[MAX_PORTS];
static int (*real_close)(int);
static int (*real_shutdown)(int, int);

__attribute__((constructor)) static void setup(void) {
  real_close = (int (*)(int))dlsym(RTLD_NEXT, "close");
  real_shutdown = (int (*)(int, int))dlsym(RTLD_NEXT, "shutdown");
  const char *s = getenv("CALCLAB_CLOSE_WAIT");
  if (!s) return;
  char *end;
  long ms = strtol(s, &end, 10);
  if (end == s || *end != ':' || ms <= 0 || ms > 60000) return;
  wait_ms = (int)ms;
  for (s = end + 1; *s && nports < MAX_PORTS; s = *end ? end + 1 : end) {
    long p = strtol(s, &end, 10);
    if (end == s || p <= 0 || p > 65535 || (*end && *end != ',')) return;
    ports[nports++] = (unsigned short)p;
  }
}

/* fd is an established TCP connection to one of the ports. */
static bool held(int fd) {
  struct tcp_info ti;
  socklen_t len = sizeof ti;
  if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0 || ti.tcpi_state != 1 /* TCP_ESTABLISHED */)
    return false;
  struct sockaddr_storage a;
  socklen_t al = sizeof a;
  if (getpeername(fd, (struct sockaddr *)&a, &al) < 0) return false;
  unsigned short port;
  if (a.ss_family == AF_INET) port = ntohs(((struct sockaddr_in *)&a)->sin_port);
  else if (a.ss_family == AF_INET6) port = ntohs(((struct sockaddr_in6 *)&a)->sin6_port);
  else return false;
  for (int i = 0; i < nports; i++)
    if (ports[i] == port) return true;
  return false;
}

/* The only two symbols it exports (the build hides the rest, calc_wait_peer_close included,
 * from the programs it is loaded into). */
__attribute__((visibility("default"))) int close(int fd) {
  if (!real_close) real_close = (int (*)(int))dlsym(RTLD_NEXT, "close");
  if (nports && held(fd)) calc_wait_peer_close(fd, wait_ms);
  return real_close(fd);
}

__attribute__((visibility("default"))) int shutdown(int fd, int how) {
  if (!real_shutdown) real_shutdown = (int (*)(int, int))dlsym(RTLD_NEXT, "shutdown");
  if (nports && how != SHUT_RD && held(fd)) calc_wait_peer_close(fd, wait_ms);
  return real_shutdown(fd, how);
}
