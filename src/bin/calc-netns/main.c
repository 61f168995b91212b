/* calc-netns: makes one scenario run's network namespace and keeps it alive while the lab needs
 * it (lab/calclab_lab/sandbox.py starts one per run; docs/sandbox.md).
 *
 *     calc-netns [--map-root-user] FD
 *
 * FD is one end of a socketpair the lab passed down. calc-netns moves into a new network
 * namespace (first, with --map-root-user, into a new user namespace where the caller's uid and
 * gid are root, as util-linux `unshare --user --map-root-user` does, for a grader that is not
 * root), brings its lo up, writes "ready\n" on FD, then answers each request on FD ("tcp4" or
 * "tcp6") with a new TCP socket of the namespace, passed back as SCM_RIGHTS: the lab connects
 * to the programs under test with those (a socket stays in the namespace it was made in).
 * It exits when the lab closes FD or dies, and the namespace goes once the run's programs are
 * gone too.
 *
 * The namespace is the child of a first one made with net.ipv4.tcp_child_ehash_entries set
 * (Linux 6.1+), so that its TCP established table is its own 1024 buckets instead of the
 * host's (262144 here): reading the namespace's /proc/net/tcp, as the lab does every few ms
 * while it waits for a run's ports, walks the whole table (0.07 ms instead of 4 ms of kernel
 * time). The table also caps TIME_WAIT sockets at half its size; a run makes about ten. On an
 * older kernel the first namespace is the run's.
 *
 * Exit status: 0 when the lab closed FD, 1 when the namespace cannot be made (reason on
 * stderr, before any "ready"), 2 on usage errors. */
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define PRIVATE_TCP_TABLE "1024"

static int fail(const char *what) {
  fprintf(stderr, "calc-netns: %s: %s\n", what, strerror(errno));
  return 1;
}

static int write_file(const char *path, const char *text) {
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  size_t n = strlen(text);
  ssize_t w = write(fd, text, n);
  int saved = errno;
  close(fd);
  errno = saved;
  return w == (ssize_t)n ? 0 : -1;
}

/* The caller's uid and gid become root of a new user namespace; setgroups is denied there, as
 * an unprivileged process must before it may map its gid. */
static int map_root_user(void) {
  char map[64];
  uid_t uid = getuid();
  gid_t gid = getgid();
  if (unshare(CLONE_NEWUSER) < 0) return fail("cannot make a user namespace");
  if (write_file("/proc/self/setgroups", "deny") < 0 && errno != ENOENT) return fail("/proc/self/setgroups");
  snprintf(map, sizeof map, "0 %u 1", (unsigned)uid);
  if (write_file("/proc/self/uid_map", map) < 0) return fail("/proc/self/uid_map");
  snprintf(map, sizeof map, "0 %u 1", (unsigned)gid);
  if (write_file("/proc/self/gid_map", map) < 0) return fail("/proc/self/gid_map");
  return 0;
}

static int make_namespace(void) {
  if (unshare(CLONE_NEWNET) < 0) return fail("cannot make a network namespace");
  /* without tcp_child_ehash_entries (before Linux 6.1) this namespace is the run's */
  if (write_file("/proc/sys/net/ipv4/tcp_child_ehash_entries", PRIVATE_TCP_TABLE) == 0 &&
      unshare(CLONE_NEWNET) < 0)
    return fail("cannot make the run's network namespace");
  return 0;
}

static int bring_lo_up(void) {
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) return fail("socket");
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  memcpy(ifr.ifr_name, "lo", 3);
  int r = ioctl(s, SIOCGIFFLAGS, &ifr);
  if (r == 0) {
    ifr.ifr_flags |= IFF_UP;
    r = ioctl(s, SIOCSIFFLAGS, &ifr);
  }
  int saved = errno;
  close(s);
  errno = saved;
  return r < 0 ? fail("cannot bring lo up") : 0;
}

/* One socket of the namespace, passed over ctl; -1 when ctl is gone. */
static int hand_out(int ctl, int family) {
  int s = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  char tag = s < 0 ? 'e' : 's';  /* 'e': no socket could be made; the lab reports it */
  struct iovec iov = {&tag, 1};
  union {
    struct cmsghdr h;
    char buf[CMSG_SPACE(sizeof(int))];
  } u;
  struct msghdr msg;
  memset(&msg, 0, sizeof msg);
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  if (s >= 0) {
    memset(&u, 0, sizeof u);
    msg.msg_control = u.buf;
    msg.msg_controllen = sizeof u.buf;
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &s, sizeof s);
  }
  ssize_t r = sendmsg(ctl, &msg, MSG_NOSIGNAL);
  if (s >= 0) close(s);
  return r < 0 ? -1 : 0;
}

int main(int argc, char **argv) {
  int rootless = argc == 3 && !strcmp(argv[1], "--map-root-user");
  char *end;
  long fd = argc >= 2 ? strtol(argv[argc - 1], &end, 10) : -1;
  if (argc < 2 || argc > 2 + rootless || fd < 0 || fd > 65535 || *end || end == argv[argc - 1] ||
      fcntl((int)fd, F_GETFD) < 0) {
    fprintf(stderr, "usage: calc-netns [--map-root-user] FD  (FD: an open socket from the lab)\n");
    return 2;
  }
  int ctl = (int)fd;
  if (rootless && map_root_user() != 0) return 1;
  if (make_namespace() != 0 || bring_lo_up() != 0) return 1;
  if (write(ctl, "ready\n", 6) != 6) return fail("cannot say ready");
  char req[64];
  for (;;) {
    ssize_t n = recv(ctl, req, sizeof req, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return 0;
    if (hand_out(ctl, n >= 4 && !memcmp(req, "tcp6", 4) ? AF_INET6 : AF_INET) < 0) return 0;
  }
}
