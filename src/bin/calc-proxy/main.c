/* calc-proxy: the caching proxy, drop-in for the course's Python reference.
 *
 * One epoll loop. What to answer, when to open and close the upstream connection (a NEW one
 * per miss, closed before the client gets its answer: docs/protocol.md section 6) and when to close
 * the client is decided by calc_proxy_conn (calc/proxy_conn.h), one per client; this file only
 * moves bytes between the sockets and those machines and keeps the timers.
 *
 * --upstream-close-wait MS: before closing an upstream connection, give the server up to MS
 * milliseconds to close first (a grader's option, like calc-client's --close-wait): a server
 * that closes right after its answer then sends the first FIN every time instead of when it
 * happens to run before the proxy; one that waits for the proxy's FIN, as the reference's does,
 * sees it as before, only later. The client's answer waits too, so the proxy is still done with
 * the upstream connection before it answers. */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "calc/alloc.h"
#include "calc/cache.h"
#include "calc/proxy_conn.h"
#include "idle.h"
#include "log.h"
#include "loop.h"
#include "sock.h"
#include "util.h"

typedef struct config {
  const char *proxy_host, *server_host;
  int proxy_port, server_port;
  size_t cache_max_bytes;
  calc_conn_limits limits;
  long upstream_timeout_ms, idle_timeout_ms, max_connections;
  long upstream_close_wait_ms;   /* 0: close at once, as the reference */
} config;

typedef struct client client;

typedef struct upstream {
  watcher w;
  idle_node idle;
  client *owner;
  uint64_t id;
  bool connecting;
} upstream;

struct client {
  watcher w;
  idle_node idle;
  calc_proxy_conn *pc;   /* every decision about this client and its upstream exchanges */
  upstream *up;
  bool holding;          /* the machine asked to close up; the server has until the hold ends */
  uint64_t id;
  char peer[64];
};

static config cfg;
static loop *L;
static sock_addr server_addr;
static calc_proxy_config proxy_cfg;
static idle_list client_idle, upstream_idle, hold_list;
static size_t nclients;
static uint64_t next_id;
static uint8_t rbuf[65536];  /* every read lands here first */

static uint32_t now_s(void) { return (uint32_t)time(NULL); }

static void client_free(void *p) {
  client *c = p;
  calc_proxy_conn_free(c->pc);
  free(c);
}

static void log_error(uint64_t id, const char *peer, const char *what) {
  log_rec r;
  log_begin(&r, "error", id, peer);
  log_str(&r, "error", what);
  log_mark_error(&r);
  log_end(&r, "{%s} %s", peer ? peer : "proxy", what);
}

/* The machine's callbacks: the log lines. */
static void on_request(void *user, const calc_msg *m) {
  client *c = user;
  log_request(c->id, c->peer, m);
}

static void log_upstream_closed(void *user, const char *reason) {
  client *c = user;
  log_rec r;
  log_begin(&r, "upstream_closed", c->id, c->peer);
  log_int(&r, "upstream", c->up ? (long long)c->up->id : 0);
  log_str(&r, "reason", reason);
  log_end(&r, "{%s} Closed connection to server (%s)", c->peer, reason);
}

static void log_cache(void *user, const char *outcome, const char *text, const calc_cache_times *t) {
  client *c = user;
  log_rec r;
  log_begin(&r, "cache", c->id, c->peer);
  log_str(&r, "outcome", outcome);
  log_num(&r, "server_remaining", t->server_remaining);
  log_num(&r, "client_remaining", t->client_remaining);
  log_end(&r, "{%s} %s ,server time remaining: %.2f, client time remaining: %.2f", c->peer, text,
          t->server_remaining, t->client_remaining);
}

static void log_proxy_error(void *user, const char *inner_cls, const char *msg) {
  client *c = user;
  log_rec r;
  log_begin(&r, "proxy_error", c->id, c->peer);
  log_str(&r, "error_type", inner_cls);
  log_str(&r, "error", msg);
  log_end(&r, "{%s} Internal proxy error: %s", c->peer, msg);
}

static void log_answer(void *user, size_t len, unsigned status) {
  client *c = user;
  log_response(c->id, c->peer, len, status, NULL);
}

static void upstream_free(void *p) { free(p); }

static void upstream_close(client *c) {
  upstream *u = c->up;
  if (!u) return;
  c->up = NULL;
  loop_close(L, &u->w);
  idle_remove(&u->idle);
  loop_defer_free(L, u, upstream_free);
}

static void client_close(client *c, const char *reason) {
  if (c->w.fd < 0) return;
  c->holding = false;
  if (c->up) {
    log_upstream_closed(c, "client gone");
    upstream_close(c);
  }
  loop_close(L, &c->w);
  idle_remove(&c->idle);
  nclients--;
  log_closed(c->id, c->peer, reason);
  loop_defer_free(L, c, client_free);
}

static calc_err upstream_errno(int err) {
  return err == ECONNREFUSED ? CALC_ERR_REFUSED : err == ECONNRESET || err == EPIPE ? CALC_ERR_RESET : CALC_ERR_SYSTEM;
}

static void on_upstream_event(loop *l, watcher *w, uint32_t events);

static void start_upstream(client *c) {
  int fd = sock_connect_nonblock(&server_addr);
  if (fd < 0) {
    calc_proxy_conn_upstream_error(c->pc, upstream_errno(errno), strerror(errno), now_s());
    return;
  }
  upstream *u = calloc(1, sizeof *u);
  if (!u) {
    close(fd);
    calc_proxy_conn_upstream_error(c->pc, CALC_ERR_NOMEM, NULL, now_s());
    return;
  }
  u->owner = c;
  u->id = ++next_id;
  u->connecting = true;
  u->idle.owner = u;
  c->up = u;
  loop_add(L, &u->w, fd, EPOLLOUT, on_upstream_event, u);
  idle_touch(&upstream_idle, &u->idle, loop_now_ms());
  log_rec r;
  log_begin(&r, "upstream_connect", c->id, c->peer);
  log_int(&r, "upstream", (long long)u->id);
  log_str(&r, "server", cfg.server_host);
  log_int(&r, "server_port", cfg.server_port);
  log_end(&r, "{%s} Connecting to server %s:%d", c->peer, cfg.server_host, cfg.server_port);
}

/* CLOSE_UPSTREAM with --upstream-close-wait: the upstream socket is watched for the server's
 * FIN or reset only, and the machine is not asked for its next action (the client's answer)
 * until the hold ends (end_hold): that, or the time running out (expire_timeouts). */
static void start_hold(client *c) {
  upstream *u = c->up;
  c->holding = true;
  idle_remove(&u->idle);
  idle_touch(&hold_list, &u->idle, loop_now_ms());
  loop_set(L, &u->w, EPOLLRDHUP);
  loop_set(L, &c->w, 0);
}

static void end_hold(client *c) {
  c->holding = false;
  upstream_close(c);
}

/* Carries out what the machine asks, then watches both sockets for what it waits for. */
static void client_drive(client *c) {
  calc_proxy_conn_action a;
  if (c->holding) return;
  for (;;) {
    calc_proxy_conn_next(c->pc, &a);
    if (a.kind == CALC_PROXY_WAIT) break;
    switch (a.kind) {
      case CALC_PROXY_CLOSE_UPSTREAM:
        if (cfg.upstream_close_wait_ms && c->up && !c->up->connecting) {
          start_hold(c);
          return;
        }
        upstream_close(c);
        break;
      case CALC_PROXY_OPEN_UPSTREAM: start_upstream(c); break;
      case CALC_PROXY_SEND_CLIENT: {
        ssize_t n = sock_send(c->w.fd, a.data, a.len);
        if (n < 0) {
          log_error(c->id, c->peer, strerror(errno));
          client_close(c, "send failed");
          return;
        }
        calc_proxy_conn_client_sent(c->pc, (size_t)n, now_s());
        break;
      }
      case CALC_PROXY_SEND_UPSTREAM: {
        ssize_t n = c->up ? sock_send(c->up->w.fd, a.data, a.len) : -1;
        if (n < 0) calc_proxy_conn_upstream_error(c->pc, upstream_errno(errno), strerror(errno), now_s());
        else calc_proxy_conn_upstream_sent(c->pc, (size_t)n);
        break;
      }
      case CALC_PROXY_CLOSE_CLIENT:
        if (a.why == CALC_ERR_NOMEM) log_error(c->id, c->peer, "out of memory");
        client_close(c, log_close_reason(a.why));
        return;
      case CALC_PROXY_WAIT: break;
    }
  }
  uint32_t mask = (calc_proxy_conn_client_read_room(c->pc) ? EPOLLIN : 0u) |
                  (calc_proxy_conn_client_wants_write(c->pc) ? EPOLLOUT : 0u);
  loop_set(L, &c->w, mask);
  upstream *u = c->up;
  if (u && !u->connecting)
    loop_set(L, &u->w, (calc_proxy_conn_upstream_read_room(c->pc) ? EPOLLIN : 0u) |
                           (calc_proxy_conn_upstream_wants_write(c->pc) ? EPOLLOUT : 0u));
}

static void on_upstream_event(loop *l, watcher *w, uint32_t events) {
  (void)l;
  upstream *u = w->owner;
  client *c = u->owner;
  if (c->holding) {  /* the server closed (or reset) first */
    end_hold(c);
    client_drive(c);
    return;
  }
  if (u->connecting) {
    int err = 0;
    socklen_t sl = sizeof err;
    getsockopt(w->fd, SOL_SOCKET, SO_ERROR, &err, &sl);
    if (err == ECONNREFUSED) {
      log_rec r;
      log_begin(&r, "upstream_refused", c->id, c->peer);
      log_int(&r, "upstream", (long long)u->id);
      log_end(&r, "{%s} Connection refused by server", c->peer);
    }
    if (err) {
      calc_proxy_conn_upstream_error(c->pc, upstream_errno(err), strerror(err), now_s());
    } else {
      if (!(events & EPOLLOUT)) return;
      u->connecting = false;
      log_rec r;
      log_begin(&r, "upstream_connected", c->id, c->peer);
      log_int(&r, "upstream", (long long)u->id);
      log_int(&r, "bytes", (long long)calc_proxy_conn_forward_len(c->pc));
      log_end(&r, "{%s} Forwarding request of length %zu bytes to the server", c->peer,
              calc_proxy_conn_forward_len(c->pc));
      calc_proxy_conn_upstream_connected(c->pc);
      idle_touch(&upstream_idle, &u->idle, loop_now_ms());
    }
    client_drive(c);
    return;
  }
  if (events & EPOLLOUT) calc_proxy_conn_upstream_writable(c->pc);
  if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
    size_t room;
    while (c->up == u && (room = calc_proxy_conn_upstream_read_room(c->pc)) > 0) {
      ssize_t n = sock_recv(w->fd, rbuf, room < sizeof rbuf ? room : sizeof rbuf);
      if (n < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK)
          calc_proxy_conn_upstream_error(c->pc, upstream_errno(errno), strerror(errno), now_s());
        break;
      }
      idle_touch(&upstream_idle, &u->idle, loop_now_ms());
      if (n == 0) {
        calc_proxy_conn_upstream_closed(c->pc, now_s());
        break;
      }
      calc_proxy_conn_upstream_received(c->pc, rbuf, (size_t)n, now_s());
    }
  }
  client_drive(c);
}

static void on_client_event(loop *l, watcher *w, uint32_t events) {
  (void)l;
  client *c = w->owner;
  if (c->holding) {
    if (!(events & (EPOLLHUP | EPOLLERR))) return;
    end_hold(c);  /* the client is gone: nothing waits for the answer any more */
  }
  if (events & EPOLLOUT) calc_proxy_conn_client_writable(c->pc);
  if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
    size_t room = calc_proxy_conn_client_read_room(c->pc);
    if (room == 0 && (events & (EPOLLHUP | EPOLLERR))) {
      /* Not reading (its answers wait unread, or it closed) and the client is gone. */
      client_close(c, events & EPOLLERR ? "reset by peer" : "peer closed");
      return;
    }
    while ((room = calc_proxy_conn_client_read_room(c->pc)) > 0) {
      size_t want = room < sizeof rbuf ? room : sizeof rbuf;
      ssize_t n = sock_recv(w->fd, rbuf, want);
      if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) break;
        client_close(c, errno == ECONNRESET ? "reset by peer" : strerror(errno));
        return;
      }
      if (n == 0) {
        calc_proxy_conn_client_closed(c->pc, now_s());
        break;
      }
      idle_touch(&client_idle, &c->idle, loop_now_ms());
      calc_proxy_conn_client_received(c->pc, rbuf, (size_t)n, now_s());
      if ((size_t)n < want) break; /* drained: save a syscall */
    }
  }
  client_drive(c);
}

static void on_accept(loop *l, watcher *w, uint32_t events) {
  (void)events;
  for (;;) {
    char peer[64];
    int fd = sock_accept(w->fd, peer, sizeof peer);
    if (fd < 0) {
      if (errno != EAGAIN && errno != EWOULDBLOCK) log_error(0, NULL, strerror(errno));
      return;
    }
    if ((long)nclients >= cfg.max_connections) {
      /* Past --max-connections: refuse cleanly so the others keep their service. */
      log_refused(peer, cfg.max_connections);
      close(fd);
      continue;
    }
    client *c = calloc(1, sizeof *c);
    if (!c || !(c->pc = calc_proxy_conn_new(&proxy_cfg, c))) {
      free(c);
      close(fd);
      continue;
    }
    c->w.fd = -1;
    c->idle.owner = c;
    c->id = ++next_id;
    memcpy(c->peer, peer, sizeof peer);
    if (loop_add(l, &c->w, fd, EPOLLIN, on_client_event, c) < 0) {
      close(fd);
      client_free(c);
      continue;
    }
    nclients++;
    idle_touch(&client_idle, &c->idle, loop_now_ms());
    log_rec r;
    log_begin(&r, "accepted", c->id, c->peer);
    log_end(&r, "{%s} Connection established", c->peer);
  }
}

static void expire_timeouts(void) {
  uint64_t now = loop_now_ms();
  idle_node *n;
  while ((n = idle_expired(&hold_list, now, (uint64_t)cfg.upstream_close_wait_ms)) != NULL) {
    client *c = ((upstream *)n->owner)->owner;
    end_hold(c);
    client_drive(c);
  }
  while ((n = idle_expired(&upstream_idle, now, (uint64_t)cfg.upstream_timeout_ms)) != NULL) {
    client *c = ((upstream *)n->owner)->owner;
    idle_remove(n);
    idle_touch(&client_idle, &c->idle, now);
    calc_proxy_conn_upstream_error(c->pc, CALC_ERR_TIMEOUT, NULL, now_s());
    client_drive(c);
  }
  while ((n = idle_expired(&client_idle, now, (uint64_t)cfg.idle_timeout_ms)) != NULL) {
    client *c = n->owner;
    if (calc_proxy_conn_upstream_busy(c->pc)) { /* waiting on the server: its own timeout applies */
      idle_touch(&client_idle, n, now);
      continue;
    }
    log_rec r;
    log_begin(&r, "timeout", c->id, c->peer);
    log_int(&r, "pending_bytes", (long long)calc_proxy_conn_pending_input(c->pc));
    log_end(&r, "{%s} Idle for %ld s, closing", c->peer, cfg.idle_timeout_ms / 1000);
    calc_proxy_conn_client_timed_out(c->pc);
    client_drive(c);
  }
}

static void usage(FILE *f) {
  fprintf(f,
          "Usage: calc-proxy [OPTIONS]\n"
          "The caching proxy between calc-client and calc-server, with the reference's cache rules.\n\n"
          "  -ph, --proxy_host HOST    address to listen on (default 127.0.0.1)\n"
          "  -pp, --proxy_port PORT    port to listen on (default 9998)\n"
          "  -sh, --server_host HOST   calculator server address (default 127.0.0.1)\n"
          "  -sp, --server_port PORT   calculator server port (default 9999)\n"
          "      --cache-max-bytes N   cache size bound, LRU eviction (default 67108864 = 64 MiB)\n"
          "      --upstream-timeout S  give up on the server after S seconds (default 10)\n"
          "      --upstream-close-wait MS  before closing an upstream connection, wait up to MS\n"
          "                            milliseconds for the server to close first (default 0:\n"
          "                            close at once, as the reference; the answer waits too)\n"
          "      --idle-timeout S      close a silent client after S seconds (default 30)\n"
          "      --max-connections N   client connections beyond this are closed (default 10000)\n"
          "      --max-input-bytes N   per client, requests waiting are held up to N bytes; past\n"
          "                            it the client is not read (default 262144, at least 65535)\n"
          "      --max-output-bytes N  per client, answers wait unread up to N bytes; past it no\n"
          "                            more are made until it reads (default 262144)\n"
          "      --log-format FMT      human (default) or json (JSON Lines, docs/logging.md)\n"
          "  -q, --quiet               log errors only\n"
          "  -h, --help                show this help\n");
}

int main(int argc, char **argv) {
  cfg = (config){.proxy_host = "127.0.0.1", .proxy_port = 9998, .server_host = "127.0.0.1",
                 .server_port = 9999, .cache_max_bytes = 64u << 20, .upstream_timeout_ms = 10000,
                 .idle_timeout_ms = 30000, .max_connections = 10000,
                 .limits = {CALC_CONN_DEFAULT_MAX_INPUT, CALC_CONN_DEFAULT_MAX_OUTPUT}};
  log_format fmt = LOG_HUMAN;
  bool quiet = false;
  enum { OPT_PH = 256, OPT_PP, OPT_SH, OPT_SP, OPT_CMB, OPT_UT, OPT_IT, OPT_MC, OPT_LF, OPT_MAXIN, OPT_MAXOUT,
         OPT_UCW };
  /* getopt_long_only: the reference's single-dash long flags (-ph, -pp, -sh, -sp) work as is. */
  static const struct option opts[] = {
      {"ph", required_argument, 0, OPT_PH},          {"proxy_host", required_argument, 0, OPT_PH},
      {"proxy-host", required_argument, 0, OPT_PH},  {"pp", required_argument, 0, OPT_PP},
      {"proxy_port", required_argument, 0, OPT_PP},  {"proxy-port", required_argument, 0, OPT_PP},
      {"sh", required_argument, 0, OPT_SH},          {"server_host", required_argument, 0, OPT_SH},
      {"server-host", required_argument, 0, OPT_SH}, {"sp", required_argument, 0, OPT_SP},
      {"server_port", required_argument, 0, OPT_SP}, {"server-port", required_argument, 0, OPT_SP},
      {"cache-max-bytes", required_argument, 0, OPT_CMB}, {"upstream-timeout", required_argument, 0, OPT_UT},
      {"upstream-close-wait", required_argument, 0, OPT_UCW},
      {"idle-timeout", required_argument, 0, OPT_IT}, {"max-connections", required_argument, 0, OPT_MC},
      {"log-format", required_argument, 0, OPT_LF},  {"max-input-bytes", required_argument, 0, OPT_MAXIN},
      {"max-output-bytes", required_argument, 0, OPT_MAXOUT},  {"quiet", no_argument, 0, 'q'},
      {"help", no_argument, 0, 'h'},                 {0, 0, 0, 0}};
  int o;
  while ((o = getopt_long_only(argc, argv, "qh", opts, NULL)) != -1) {
    switch (o) {
      case OPT_PH: cfg.proxy_host = optarg; break;
      case OPT_PP: cfg.proxy_port = (int)util_parse_long("calc-proxy", "--proxy_port", optarg, 0, 65535); break;
      case OPT_SH: cfg.server_host = optarg; break;
      case OPT_SP: cfg.server_port = (int)util_parse_long("calc-proxy", "--server_port", optarg, 1, 65535); break;
      case OPT_CMB: cfg.cache_max_bytes = (size_t)util_parse_long("calc-proxy", "--cache-max-bytes", optarg, 0, 1L << 40); break;
      case OPT_UT: cfg.upstream_timeout_ms = 1000 * util_parse_long("calc-proxy", "--upstream-timeout", optarg, 1, 86400); break;
      case OPT_UCW: cfg.upstream_close_wait_ms = util_parse_long("calc-proxy", "--upstream-close-wait", optarg, 0, 60000); break;
      case OPT_IT: cfg.idle_timeout_ms = 1000 * util_parse_long("calc-proxy", "--idle-timeout", optarg, 1, 86400); break;
      case OPT_MC: cfg.max_connections = util_parse_long("calc-proxy", "--max-connections", optarg, 1, 10000000); break;
      case OPT_LF:
        if (strcmp(optarg, "json") == 0) fmt = LOG_JSON;
        else if (strcmp(optarg, "human") == 0) fmt = LOG_HUMAN;
        else { fprintf(stderr, "calc-proxy: --log-format is human or json\n"); return 2; }
        break;
      case OPT_MAXIN: cfg.limits.max_input = (size_t)util_parse_long("calc-proxy", "--max-input-bytes", optarg, CALC_MAX_MESSAGE, 1L << 30); break;
      case OPT_MAXOUT: cfg.limits.max_output = (size_t)util_parse_long("calc-proxy", "--max-output-bytes", optarg, CALC_MAX_MESSAGE, 1L << 30); break;
      case 'q': quiet = true; break;
      case 'h': usage(stdout); return 0;
      default: usage(stderr); return 2;
    }
  }
  if (optind < argc) {
    fprintf(stderr, "calc-proxy: unexpected argument '%s'\n", argv[optind]);
    return 2;
  }
  calc_alloc_init();
  log_setup("proxy", fmt, quiet);
  util_raise_fd_limit();
  util_install_signals();
  char msg[256];
  sock_addr listen_addr;
  if (sock_resolve(cfg.proxy_host, cfg.proxy_port, &listen_addr, msg, sizeof msg) < 0 ||
      sock_resolve(cfg.server_host, cfg.server_port, &server_addr, msg, sizeof msg) < 0) {
    fprintf(stderr, "calc-proxy: %s\n", msg);
    return 2;
  }
  proxy_cfg = (calc_proxy_config){
      .cache = calc_cache_new(cfg.cache_max_bytes), .limits = cfg.limits,
      .upstream_timeout_s = cfg.upstream_timeout_ms / 1000,
      .cb = {on_request, log_upstream_closed, log_cache, log_proxy_error, log_answer}};
  L = loop_new();
  int lfd = sock_listen(&listen_addr, false, 4096);
  if (!proxy_cfg.cache || !L || lfd < 0) {
    fprintf(stderr, "calc-proxy: cannot listen on %s:%d: %s\n", cfg.proxy_host, cfg.proxy_port, strerror(errno));
    return 2;
  }
  watcher listener;
  loop_add(L, &listener, lfd, EPOLLIN, on_accept, NULL);
  log_rec r;
  log_begin(&r, "listening", 0, NULL);
  log_str(&r, "host", cfg.proxy_host);
  log_int(&r, "port", cfg.proxy_port);
  log_str(&r, "server_host", cfg.server_host);
  log_int(&r, "server_port", cfg.server_port);
  log_end(&r, "Listening on %s:%d", cfg.proxy_host, cfg.proxy_port);

  bool stopping = false;
  uint64_t deadline = 0;
  for (;;) {
    int wait = 100;
    if (hold_list.head) {  /* the oldest hold ends first: they all last as long */
      uint64_t end = hold_list.head->last_ms + (uint64_t)cfg.upstream_close_wait_ms, now = loop_now_ms();
      wait = end <= now ? 0 : end - now < 100 ? (int)(end - now) : 100;
    }
    loop_run_once(L, wait);
    expire_timeouts();
    if (util_stop_requested && !stopping) {
      /* Stop accepting; idle clients go now; requests in flight get their answers. */
      stopping = true;
      deadline = loop_now_ms() + (uint64_t)cfg.upstream_timeout_ms + 1000;
      loop_close(L, &listener);
      for (idle_node *n = client_idle.head, *next; n; n = next) {
        next = n->next;
        client *c = n->owner;
        if (!calc_proxy_conn_upstream_busy(c->pc) && !calc_proxy_conn_pending_output(c->pc))
          client_close(c, "shutdown");
      }
    }
    if (stopping && (nclients == 0 || loop_now_ms() > deadline)) break;
  }
  loop_free(L);
  calc_cache_free(proxy_cfg.cache);
  log_begin(&r, "stopped", 0, NULL);
  log_end(&r, "Proxy stopped");
  return 0;
}
