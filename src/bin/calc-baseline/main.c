/* calc-baseline: the physical-limit reference for calc-bench. One epoll thread; frames each
 * request by its total length (only the header's length field is read, the payload is skipped
 * unread) and answers it with a canned response: the real 564-byte answer to the report's E1
 * request, computed once at start with libcalc. Whatever a real server does costs at least this.
 *
 * usage: calc-baseline [-H host] [-p port]
 *
 * The per-connection state is a header accumulator and a count of bytes still to send, so no
 * payload is ever buffered; the socket is read into one shared scratch buffer. Responses are
 * sent with one write each; if the socket is full, the rest goes out on EPOLLOUT and reading
 * pauses until it has (backpressure). */
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "calc/alloc.h"
#include "calc/buf.h"
#include "calc/expr.h"
#include "calc/limits.h"
#include "calc/parse.h"
#include "calc/pickle.h"
#include "calc/server.h"
#include "calc/wire.h"

#define PROG "calc-baseline"
#define E1_TEXT "(sin(max(2, 3 * 4, 5, 6 * ((7 * 8) / 9), 10 / 11)) / 12) * 13"
#define E1_RESPONSE_LEN 564

typedef struct conn {
  int fd;
  uint8_t hdr[CALC_HEADER_SIZE];
  size_t hgot;          /* header bytes of the current request */
  size_t skip;          /* payload bytes of the current request still to drop */
  size_t owed;          /* response bytes still to send (several responses may be queued) */
  size_t pos;           /* offset in the canned response of the next byte to send */
  bool want_out;        /* EPOLLOUT registered */
} conn;

static uint8_t *resp;
static size_t resplen;
static int ep;
static volatile sig_atomic_t stop;

static void on_signal(int sig) { (void)sig; stop = 1; }

/* The answer to E1 exactly as calc-server sends it (time stamp = start time). */
static void build_response(void) {
  calc_tree tree = {0};
  calc_parse_error perr;
  calc_buf payload, reqmsg, out;
  calc_buf_init(&payload, 0);
  calc_buf_init(&reqmsg, 0);
  calc_buf_init(&out, 0);
  uint32_t now = (uint32_t)time(NULL);
  if (calc_parse(E1_TEXT, strlen(E1_TEXT), &tree, &perr) < 0 ||
      calc_pickle_request(&tree, &payload) < 0 ||
      calc_message_build(&reqmsg, now, true, 0, true, true, CALC_CACHE_FOREVER, payload.data,
                         payload.len) < 0) {
    fprintf(stderr, PROG ": cannot build the E1 request\n");
    exit(1);
  }
  calc_msg m;
  ssize_t n = calc_frame_parse(reqmsg.data, reqmsg.len, &m.h);
  m.raw = reqmsg.data;
  m.raw_len = (size_t)n;
  m.payload = reqmsg.data + CALC_HEADER_SIZE;
  m.payload_len = (size_t)n - CALC_HEADER_SIZE;
  calc_server_opts o = {.no_cache = false, .cache_control = CALC_CACHE_FOREVER};
  calc_answer_info info;
  if (n != (ssize_t)reqmsg.len || calc_server_answer(&o, &m, now, &out, &info) < 0 ||
      info.status != 200 || out.len != E1_RESPONSE_LEN) {
    fprintf(stderr, PROG ": the E1 answer is not a 564-byte 200 (%zu bytes, status %u)\n",
            out.len, info.status);
    exit(1);
  }
  calc_tree_free(&tree);
  calc_buf_free(&payload);
  calc_buf_free(&reqmsg);
  resp = out.data;
  resplen = out.len;
}

static void drop(conn *c) {
  close(c->fd);
  free(c);
}

/* Sends what is owed. 0 when all sent, 1 when the socket is full, -1 on error. */
static int flush(conn *c) {
  while (c->owed) {
    size_t chunk = resplen - c->pos;
    if (chunk > c->owed) chunk = c->owed;
    ssize_t w = send(c->fd, resp + c->pos, chunk, MSG_NOSIGNAL);
    if (w > 0) {
      c->owed -= (size_t)w;
      c->pos = (c->pos + (size_t)w) % resplen;
    } else if (w < 0 && errno == EINTR) {
      continue;
    } else if (w < 0 && errno == EAGAIN) {
      return 1;
    } else {
      return -1;
    }
  }
  return 0;
}

static void set_out(conn *c, bool on) {
  if (c->want_out == on) return;
  c->want_out = on;
  struct epoll_event ev = {.events = on ? EPOLLOUT : EPOLLIN, .data.ptr = c};
  epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

/* Consumes bytes: each complete request adds one response to what is owed. false: bad input. */
static bool consume(conn *c, const uint8_t *p, size_t n) {
  while (n) {
    if (c->skip) {
      size_t k = n < c->skip ? n : c->skip;
      c->skip -= k; p += k; n -= k;
      if (!c->skip) c->owed += resplen;
      continue;
    }
    size_t k = CALC_HEADER_SIZE - c->hgot;
    if (k > n) k = n;
    memcpy(c->hdr + c->hgot, p, k);
    c->hgot += k; p += k; n -= k;
    if (c->hgot == CALC_HEADER_SIZE) {
      size_t tl = ((size_t)c->hdr[4] << 8) | c->hdr[5];
      if (tl < CALC_HEADER_SIZE) return false;
      c->hgot = 0;
      c->skip = tl - CALC_HEADER_SIZE;
      if (!c->skip) c->owed += resplen;
    }
  }
  return true;
}

static void on_conn(conn *c, uint32_t events) {
  static uint8_t scratch[65536];
  if (c->want_out) {
    int r = flush(c);
    if (r < 0) { drop(c); return; }
    if (r > 0) return;
    set_out(c, false);
  }
  for (;;) {
    ssize_t r = recv(c->fd, scratch, sizeof scratch, 0);
    if (r > 0) {
      if (!consume(c, scratch, (size_t)r)) { drop(c); return; }
      int f = flush(c);
      if (f < 0) { drop(c); return; }
      if (f > 0) { set_out(c, true); return; }
      if ((size_t)r < sizeof scratch) return;   /* short read: the socket is drained */
    } else if (r == 0) {
      drop(c);
      return;
    } else if (errno == EINTR) {
      continue;
    } else if (errno == EAGAIN) {
      return;
    } else {
      drop(c);
      return;
    }
  }
  (void)events;
}

static void usage(FILE *f) {
  fprintf(f,
          "usage: " PROG " [-H host] [-p port]\n"
          "A trivial epoll server: frames requests by total length and answers each with the\n"
          "canned 564-byte answer to the report's E1, decoding nothing. calc-bench's baseline.\n"
          "  -H, --host HOST   listen address (default 127.0.0.1)\n"
          "  -p, --port PORT   listen port (default 19997)\n"
          "SIGINT/SIGTERM stop it (exit 0).\n");
}

int main(int argc, char **argv) {
  const char *host = "127.0.0.1";
  long port = 19997;
  static const struct option longs[] = {{"host", required_argument, 0, 'H'},
                                        {"port", required_argument, 0, 'p'},
                                        {"help", no_argument, 0, 'h'},
                                        {0, 0, 0, 0}};
  int ch;
  opterr = 0;
  while ((ch = getopt_long(argc, argv, ":H:p:h", longs, NULL)) != -1) {
    if (ch == 'H') {
      host = optarg;
    } else if (ch == 'p') {
      char *end;
      errno = 0;
      port = strtol(optarg, &end, 10);
      if (errno || end == optarg || *end || port < 1 || port > 65535) {
        fprintf(stderr, PROG ": bad value '%s' for -p/--port (expected 1..65535)\n", optarg);
        return 2;
      }
    } else if (ch == 'h') {
      usage(stdout);
      return 0;
    } else {
      fprintf(stderr, PROG ": %s %s\n(try " PROG " --help)\n",
              ch == ':' ? "option needs a value:" : "unknown option", argv[optind - 1]);
      return 2;
    }
  }
  if (optind < argc) {
    fprintf(stderr, PROG ": unexpected argument '%s'\n", argv[optind]);
    return 2;
  }
  calc_alloc_init();
  build_response();
  signal(SIGPIPE, SIG_IGN);
  struct sigaction sa = {.sa_handler = on_signal};
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);

  struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                           .ai_flags = AI_PASSIVE}, *res;
  char portstr[16];
  snprintf(portstr, sizeof portstr, "%ld", port);
  int rc = getaddrinfo(host, portstr, &hints, &res);
  if (rc) {
    fprintf(stderr, PROG ": cannot resolve %s: %s\n", host, gai_strerror(rc));
    return 2;
  }
  int ls = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1;
  if (ls < 0) { perror(PROG ": socket"); return 1; }
  setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(ls, res->ai_addr, res->ai_addrlen) < 0 || listen(ls, 4096) < 0) {
    fprintf(stderr, PROG ": cannot listen on %s:%ld: %s\n", host, port, strerror(errno));
    return 1;
  }
  freeaddrinfo(res);
  ep = epoll_create1(EPOLL_CLOEXEC);
  struct epoll_event lev = {.events = EPOLLIN, .data.ptr = NULL};
  epoll_ctl(ep, EPOLL_CTL_ADD, ls, &lev);
  printf(PROG ": listening on %s:%ld, answering %zu bytes\n", host, port, resplen);
  fflush(stdout);

  struct epoll_event evs[256];
  while (!stop) {
    int n = epoll_wait(ep, evs, 256, 500);
    if (n < 0) {
      if (errno == EINTR) continue;
      perror(PROG ": epoll_wait");
      return 1;
    }
    for (int i = 0; i < n; i++) {
      conn *c = evs[i].data.ptr;
      if (c) {
        on_conn(c, evs[i].events);
        continue;
      }
      for (;;) {
        int fd = accept4(ls, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) break;   /* EAGAIN, or EMFILE etc.: try again on the next event */
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        conn *nc = calloc(1, sizeof *nc);
        if (!nc) { close(fd); continue; }
        nc->fd = fd;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = nc};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) { close(fd); free(nc); }
      }
    }
  }
  return 0;
}
