/* calc-bench: a closed-loop load generator for the calculator protocol (docs/protocol.md section 1).
 *
 * C connection slots, each with one request in flight at a time. By default every request uses
 * a new connection (connect, send, read one whole response framed by its total length, close,
 * reconnect), as the reference client does; with -k the next request goes on the same
 * connection. The run stops by itself after -n requests or -d seconds, whichever comes first.
 * Every response is checked (a response header, status 200, and the total length given by
 * --check-size); anything else counts as an error. Prints requests/s and latency percentiles in
 * microseconds, or one JSON object with --json.
 *
 * One epoll thread, edge-triggered, no allocation on the request path: the client must cost as
 * little CPU as possible because it shares the machine with the server it measures. */
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
#include "calc/wire.h"

#define PROG "calc-bench"
#define E1_TEXT "(sin(max(2, 3 * 4, 5, 6 * ((7 * 8) / 9), 10 / 11)) / 12) * 13"
#define E1_REQUEST_LEN 687

enum err_kind { ERR_CONNECT, ERR_IO, ERR_CLOSED, ERR_HEADER, ERR_STATUS, ERR_SIZE, ERR_EXTRA, ERR_KINDS };
static const char *const err_names[ERR_KINDS] = {"connect", "io", "closed", "header", "status",
                                                  "size", "extra_bytes"};

typedef struct slot {
  int fd;
  bool busy;            /* a request is in flight */
  bool connecting;      /* new connection, request not sent yet */
  size_t sent, got, need;
  uint64_t t0;          /* ns, request start (connect included in per-connection mode) */
  struct slot *next_retry;
  uint8_t buf[CALC_MAX_MESSAGE + 1];
} slot;

typedef struct options {
  const char *host;
  int port;
  int conns;
  long max_requests;    /* 0 = no count bound */
  double seconds;
  bool keepalive;
  const char *request_file;
  const char *expr;
  long check_size;      /* 0 = any size */
  bool json;
} options;

static uint8_t *req;
static size_t reqlen;
static struct sockaddr_storage addr;
static socklen_t addrlen;
static int ep;
static options opt;

static uint32_t *lat;   /* microseconds */
static size_t nlat, caplat;
static long done_ok, started, errors[ERR_KINDS];
static char first_error[200];
static slot *retry_head;

static uint64_t now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static void usage(FILE *f) {
  fprintf(f,
          "usage: " PROG " [-H host] [-p port] [-c conns] [-n max_requests] [-d seconds] [-k]\n"
          "                  [--request FILE | --expr TEXT] [--check-size N] [--json]\n"
          "\n"
          "Closed-loop load for a calculator server or proxy: CONNS connections, one request in\n"
          "flight on each; every response is read whole (framed by its total length) and checked.\n"
          "\n"
          "  -H, --host HOST       server address (default 127.0.0.1)\n"
          "  -p, --port PORT       server port (default 9999)\n"
          "  -c, --conns N         concurrent connections (default 16)\n"
          "  -n, --requests N      stop after N completed requests (default: no count bound)\n"
          "  -d, --duration SECS   stop after SECS seconds in any case (default 5)\n"
          "  -k, --keepalive       send the next request on the same connection\n"
          "                        (default: one request per connection, as the reference client)\n"
          "      --request FILE    send FILE's bytes as they are (one whole message)\n"
          "      --expr TEXT       build the request for TEXT (steps on, cache on, max-age 65535)\n"
          "                        default: the report's E1, a 687-byte request\n"
          "      --check-size N    a response whose total length is not N is an error\n"
          "                        (any status but 200 is always an error)\n"
          "      --json            print one JSON object instead of the text summary\n"
          "  -h, --help            this help\n"
          "\n"
          "Exit status: 0 all responses good, 1 some errors or no response at all, 2 usage.\n");
}

_Noreturn static void die_usage(const char *fmt, const char *arg) {
  fprintf(stderr, PROG ": ");
  fprintf(stderr, fmt, arg);
  fprintf(stderr, "\n(try " PROG " --help)\n");
  exit(2);
}

static long parse_num(const char *name, const char *s, long lo, long hi) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno || end == s || *end || v < lo || v > hi) {
    fprintf(stderr, PROG ": bad value '%s' for %s (expected %ld..%ld)\n", s, name, lo, hi);
    exit(2);
  }
  return v;
}

static void parse_args(int argc, char **argv) {
  opt = (options){.host = "127.0.0.1", .port = 9999, .conns = 16, .seconds = 5};
  enum { OPT_REQUEST = 256, OPT_EXPR, OPT_CHECK, OPT_JSON };
  static const struct option longs[] = {
      {"host", required_argument, 0, 'H'},      {"port", required_argument, 0, 'p'},
      {"conns", required_argument, 0, 'c'},     {"requests", required_argument, 0, 'n'},
      {"duration", required_argument, 0, 'd'},  {"keepalive", no_argument, 0, 'k'},
      {"request", required_argument, 0, OPT_REQUEST}, {"expr", required_argument, 0, OPT_EXPR},
      {"check-size", required_argument, 0, OPT_CHECK}, {"json", no_argument, 0, OPT_JSON},
      {"help", no_argument, 0, 'h'},            {0, 0, 0, 0}};
  int c;
  opterr = 0;
  while ((c = getopt_long(argc, argv, ":H:p:c:n:d:kh", longs, NULL)) != -1) {
    switch (c) {
      case 'H': opt.host = optarg; break;
      case 'p': opt.port = (int)parse_num("-p/--port", optarg, 1, 65535); break;
      case 'c': opt.conns = (int)parse_num("-c/--conns", optarg, 1, 100000); break;
      case 'n': opt.max_requests = parse_num("-n/--requests", optarg, 1, 1000000000L); break;
      case 'd': {
        char *end;
        errno = 0;
        opt.seconds = strtod(optarg, &end);
        if (errno || end == optarg || *end || !(opt.seconds > 0 && opt.seconds <= 86400))
          die_usage("bad value '%s' for -d/--duration (expected seconds, 0 < d <= 86400)", optarg);
        break;
      }
      case 'k': opt.keepalive = true; break;
      case OPT_REQUEST: opt.request_file = optarg; break;
      case OPT_EXPR: opt.expr = optarg; break;
      case OPT_CHECK:
        opt.check_size = parse_num("--check-size", optarg, CALC_HEADER_SIZE, CALC_MAX_MESSAGE);
        break;
      case OPT_JSON: opt.json = true; break;
      case 'h': usage(stdout); exit(0);
      case ':': die_usage("option %s needs a value", argv[optind - 1]); break;
      default: die_usage("unknown option %s", argv[optind - 1]);
    }
  }
  if (optind < argc) die_usage("unexpected argument '%s'", argv[optind]);
  if (opt.request_file && opt.expr) die_usage("%s", "--request and --expr are exclusive");
}

/* The request bytes: a file as is, or TEXT (default E1) built as calc-client builds it. */
static void build_request(void) {
  if (opt.request_file) {
    FILE *f = fopen(opt.request_file, "rb");
    if (!f) {
      fprintf(stderr, PROG ": cannot open %s: %s\n", opt.request_file, strerror(errno));
      exit(2);
    }
    req = malloc(CALC_MAX_MESSAGE + 1);
    if (!req) { fprintf(stderr, PROG ": out of memory\n"); exit(2); }
    reqlen = fread(req, 1, CALC_MAX_MESSAGE + 1, f);
    bool bad = ferror(f);
    fclose(f);
    if (bad) { fprintf(stderr, PROG ": cannot read %s\n", opt.request_file); exit(2); }
    calc_header h;
    if (reqlen < CALC_HEADER_SIZE || reqlen > CALC_MAX_MESSAGE ||
        calc_header_decode(req, reqlen, &h) < 0 || h.total_len != reqlen) {
      fprintf(stderr, PROG ": %s is not one whole message (%zu bytes; its header must give that "
                      "total length, 12..65535)\n", opt.request_file, reqlen);
      exit(2);
    }
    return;
  }
  const char *text = opt.expr ? opt.expr : E1_TEXT;
  calc_tree tree = {0};
  calc_parse_error perr;
  if (calc_parse(text, strlen(text), &tree, &perr) < 0) {
    fprintf(stderr, PROG ": --expr: %s\n", perr.msg);
    exit(2);
  }
  calc_buf payload, msg;
  calc_buf_init(&payload, 0);
  calc_buf_init(&msg, 0);
  if (calc_pickle_request(&tree, &payload) < 0 || payload.len > CALC_MAX_PAYLOAD ||
      calc_message_build(&msg, (uint32_t)time(NULL), true, 0, true, true, CALC_CACHE_FOREVER,
                         payload.data, payload.len) < 0) {
    fprintf(stderr, PROG ": the expression does not fit one message\n");
    exit(2);
  }
  calc_tree_free(&tree);
  calc_buf_free(&payload);
  if (!opt.expr && msg.len != E1_REQUEST_LEN) {
    fprintf(stderr, PROG ": internal error: E1 request is %zu bytes, not %d\n", msg.len,
            E1_REQUEST_LEN);
    exit(2);
  }
  req = msg.data;   /* kept for the whole run */
  reqlen = msg.len;
}

static void resolve(void) {
  struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res;
  char port[16];
  snprintf(port, sizeof port, "%d", opt.port);
  int rc = getaddrinfo(opt.host, port, &hints, &res);
  if (rc) {
    fprintf(stderr, PROG ": cannot resolve %s: %s\n", opt.host, gai_strerror(rc));
    exit(2);
  }
  memcpy(&addr, res->ai_addr, res->ai_addrlen);
  addrlen = res->ai_addrlen;
  freeaddrinfo(res);
}

static void record_error(enum err_kind k, const char *what, int err) {
  errors[k]++;
  if (!first_error[0]) {
    if (err) snprintf(first_error, sizeof first_error, "%s: %s", what, strerror(err));
    else snprintf(first_error, sizeof first_error, "%s", what);
  }
}

static void close_slot(slot *s) {
  if (s->fd >= 0) close(s->fd);   /* close() also removes it from the epoll set */
  s->fd = -1;
  s->busy = false;
}

static bool may_start(uint64_t t_end) {
  if (opt.max_requests && started >= opt.max_requests) return false;
  return now_ns() < t_end;
}

static void fail_slot(slot *s) {
  close_slot(s);
  s->next_retry = retry_head;   /* restarted from the main loop, never recursively */
  retry_head = s;
}

static void send_request(slot *s);

/* Starts one request on s: a new connection unless keep-alive has one open. */
static void start(slot *s) {
  started++;
  s->busy = true;
  s->sent = s->got = 0;
  s->need = CALC_HEADER_SIZE;
  s->t0 = now_ns();
  if (s->fd >= 0) {       /* keep-alive: the socket is writable, send right away */
    send_request(s);
    return;
  }
  s->fd = socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (s->fd < 0) {
    record_error(ERR_CONNECT, "socket", errno);
    fail_slot(s);
    return;
  }
  int one = 1;
  setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  s->connecting = true;
  if (connect(s->fd, (struct sockaddr *)&addr, addrlen) < 0 && errno != EINPROGRESS) {
    record_error(ERR_CONNECT, "connect", errno);
    fail_slot(s);
    return;
  }
  struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLET | EPOLLRDHUP, .data.ptr = s};
  if (epoll_ctl(ep, EPOLL_CTL_ADD, s->fd, &ev) < 0) {
    record_error(ERR_IO, "epoll_ctl", errno);
    fail_slot(s);
  }
}

/* Sends what is left of the request; EAGAIN waits for the next EPOLLOUT edge. */
static void send_request(slot *s) {
  while (s->sent < reqlen) {
    ssize_t w = send(s->fd, req + s->sent, reqlen - s->sent, MSG_NOSIGNAL);
    if (w > 0) {
      s->sent += (size_t)w;
      s->connecting = false;
    } else if (w < 0 && errno == EINTR) {
      continue;
    } else if (w < 0 && (errno == EAGAIN || errno == ENOTCONN)) {
      return;
    } else {
      record_error(s->connecting ? ERR_CONNECT : ERR_IO, s->connecting ? "connect" : "send", errno);
      fail_slot(s);
      return;
    }
  }
}

/* Checks a whole response in s->buf[0..got). true if good. */
static bool check_response(slot *s) {
  calc_header h;
  calc_header_decode(s->buf, s->got, &h);
  if (h.is_request) {
    record_error(ERR_HEADER, "a response header has the request bit set", 0);
    return false;
  }
  if (h.status != 200) {
    char what[64];
    snprintf(what, sizeof what, "status %u", h.status);
    record_error(ERR_STATUS, what, 0);
    return false;
  }
  if (opt.check_size && s->got != (size_t)opt.check_size) {
    char what[96];
    snprintf(what, sizeof what, "response of %zu bytes, expected %ld", s->got, opt.check_size);
    record_error(ERR_SIZE, what, 0);
    return false;
  }
  return true;
}

static void complete(slot *s, uint64_t t_end) {
  uint64_t us = (now_ns() - s->t0) / 1000;
  bool ok = check_response(s);
  if (ok) {
    done_ok++;
    if (nlat == caplat) {
      size_t nc = caplat ? caplat * 2 : 1u << 16;
      uint32_t *nl = realloc(lat, nc * sizeof *nl);
      if (nl) { lat = nl; caplat = nc; }
    }
    if (nlat < caplat) lat[nlat++] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
  }
  s->busy = false;
  if (!opt.keepalive || !ok) close_slot(s);
  if (may_start(t_end)) start(s);
}

static void on_readable(slot *s, uint64_t t_end) {
  for (;;) {
    /* Read up to the whole buffer: a good peer sends exactly one message, more is an error. */
    ssize_t r = recv(s->fd, s->buf + s->got, sizeof s->buf - s->got, 0);
    if (r > 0) {
      s->got += (size_t)r;
      if (s->need == CALC_HEADER_SIZE && s->got >= CALC_HEADER_SIZE) {
        size_t tl = ((size_t)s->buf[4] << 8) | s->buf[5];
        if (tl < CALC_HEADER_SIZE) {
          record_error(ERR_HEADER, "response total length under 12", 0);
          fail_slot(s);
          return;
        }
        s->need = tl;
      }
      if (s->got >= s->need && s->got >= CALC_HEADER_SIZE) {
        if (s->got > s->need) {
          record_error(ERR_EXTRA, "bytes after the response", 0);
          fail_slot(s);
          return;
        }
        complete(s, t_end);
        return;
      }
    } else if (r == 0) {
      record_error(ERR_CLOSED, s->got ? "connection closed mid-response"
                                      : "connection closed before the response", 0);
      fail_slot(s);
      return;
    } else if (errno == EINTR) {
      continue;
    } else if (errno == EAGAIN) {
      return;
    } else {
      record_error(ERR_IO, "recv", errno);
      fail_slot(s);
      return;
    }
  }
}

static int cmp_u32(const void *a, const void *b) {
  uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
  return x < y ? -1 : x > y;
}

static uint32_t pct(double p) {
  if (!nlat) return 0;
  size_t i = (size_t)(p * (double)nlat);
  if (i >= nlat) i = nlat - 1;
  return lat[i];
}

int main(int argc, char **argv) {
  parse_args(argc, argv);
  calc_alloc_init();
  signal(SIGPIPE, SIG_IGN);
  build_request();
  resolve();

  ep = epoll_create1(EPOLL_CLOEXEC);
  slot *slots = calloc((size_t)opt.conns, sizeof *slots);
  if (ep < 0 || !slots) {
    fprintf(stderr, PROG ": cannot set up: %s\n", strerror(errno));
    return 2;
  }
  uint64_t t_begin = now_ns();
  uint64_t t_end = t_begin + (uint64_t)(opt.seconds * 1e9);
  for (int i = 0; i < opt.conns; i++) {
    slots[i].fd = -1;
    if (may_start(t_end)) start(&slots[i]);
  }
  struct epoll_event evs[512];
  for (;;) {
    /* Slots whose connection failed: start again (bounded by count and time like the rest). */
    slot *r = retry_head;
    retry_head = NULL;
    bool retried = r != NULL;
    while (r) {
      slot *nx = r->next_retry;
      if (may_start(t_end)) start(r);
      r = nx;
    }
    bool any_busy = false;
    for (int i = 0; i < opt.conns && !any_busy; i++) any_busy = slots[i].busy;
    if (!any_busy && !retry_head) break;      /* count reached (or time up) and all answered */
    uint64_t t = now_ns();
    if (t >= t_end) break;                     /* time up: in-flight requests are abandoned */
    int64_t left_ms = (int64_t)((t_end - t) / 1000000) + 1;
    /* after a failed connect, pause 1 ms so a refusing server does not make us spin */
    int n = epoll_wait(ep, evs, 512, retried ? 1 : (int)(left_ms > 100 ? 100 : left_ms));
    if (n < 0 && errno != EINTR) {
      fprintf(stderr, PROG ": epoll_wait: %s\n", strerror(errno));
      return 2;
    }
    for (int i = 0; i < n; i++) {
      slot *s = evs[i].data.ptr;
      if (!s->busy || s->fd < 0) continue;
      uint32_t e = evs[i].events;
      if (s->sent < reqlen && (e & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
        if ((e & (EPOLLERR | EPOLLHUP)) && s->connecting) {
          int err = 0;
          socklen_t el = sizeof err;
          getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &el);
          record_error(ERR_CONNECT, "connect", err ? err : ECONNRESET);
          fail_slot(s);
          continue;
        }
        send_request(s);
        if (!s->busy) continue;
      }
      if (e & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) on_readable(s, t_end);
    }
  }
  double el = (double)(now_ns() - t_begin) / 1e9;
  long nerr = 0;
  for (int k = 0; k < ERR_KINDS; k++) nerr += errors[k];
  qsort(lat, nlat, sizeof *lat, cmp_u32);
  double rps = el > 0 ? (double)done_ok / el : 0;
  const char *mode = opt.keepalive ? "keepalive" : "per-connection";
  if (opt.json) {
    printf("{\"host\":\"%s\",\"port\":%d,\"conns\":%d,\"mode\":\"%s\",\"request_bytes\":%zu,"
           "\"requests\":%ld,\"seconds\":%.3f,\"rps\":%.1f,\"p50_us\":%u,\"p99_us\":%u,"
           "\"p999_us\":%u,\"max_us\":%u,\"errors\":%ld,\"error_kinds\":{",
           opt.host, opt.port, opt.conns, mode, reqlen, done_ok, el, rps, pct(0.5), pct(0.99),
           pct(0.999), nlat ? lat[nlat - 1] : 0, nerr);
    for (int k = 0; k < ERR_KINDS; k++) printf("%s\"%s\":%ld", k ? "," : "", err_names[k], errors[k]);
    printf("},\"first_error\":\"");
    for (const char *p = first_error; *p; p++) {   /* plain ASCII messages; escape " and \ */
      if (*p == '"' || *p == '\\') putchar('\\');
      putchar(*p);
    }
    printf("\"}\n");
  } else {
    printf("target      %s:%d, %d connections, %s, %zu-byte request\n", opt.host, opt.port,
           opt.conns, opt.keepalive ? "keep-alive" : "one request per connection", reqlen);
    printf("requests    %ld in %.2f s = %.0f requests/s\n", done_ok, el, rps);
    printf("latency us  p50 %u  p99 %u  p99.9 %u  max %u\n", pct(0.5), pct(0.99), pct(0.999),
           nlat ? lat[nlat - 1] : 0);
    printf("errors      %ld", nerr);
    if (nerr) {
      const char *sep = " (";
      for (int k = 0; k < ERR_KINDS; k++)
        if (errors[k]) { printf("%s%s %ld", sep, err_names[k], errors[k]); sep = ", "; }
      printf("); first: %s", first_error);
    }
    printf("\n");
  }
  return (nerr || !done_ok) ? 1 : 0;
}
