/* calc-proxy: the caching proxy, drop-in for the course's Python reference.
 *
 * One epoll loop. Per client connection, one request at a time: a cache hit is answered from
 * the cache with the stored bytes; a miss opens a NEW upstream connection (non-blocking
 * connect), forwards the request, reads the whole response, CLOSES the upstream connection and
 * only then writes the answer to the client (protocol.md section 6: the captures show the
 * proxy's upstream FIN before its reply, and calc-sniff checks that order). */
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
#include "calc/proxy.h"
#include "log.h"
#include "loop.h"
#include "sock.h"
#include "stream.h"
#include "util.h"

#define REFUSED_MSG CALC_PROXY_REFUSED_MSG

typedef struct config {
  const char *proxy_host, *server_host;
  int proxy_port, server_port;
  size_t cache_max_bytes;
  long upstream_timeout_ms, idle_timeout_ms, max_connections;
} config;

typedef enum { CLIENT_IDLE, CLIENT_CONNECTING, CLIENT_WAITING } client_state;

typedef struct client client;

typedef struct upstream {
  stream s;
  client *owner;
  uint64_t id;
} upstream;

struct client {
  stream s;
  uint64_t id;
  char peer[64];
  client_state state;
  bool closing;        /* answered a framing error: close once flushed */
  upstream *up;
  calc_header req;     /* the request being served (normalised) */
  calc_buf req_payload;
  calc_buf forward;    /* that request as re-packed for the server */
};

static config cfg;
static loop *L;
static sock_addr server_addr;
static calc_cache *cache;
static idle_list client_idle, upstream_idle;
static size_t nclients;
static uint64_t next_id;

static uint32_t now_s(void) { return (uint32_t)time(NULL); }

static void client_free(void *p) {
  client *c = p;
  stream_free(&c->s);
  calc_buf_free(&c->req_payload);
  calc_buf_free(&c->forward);
  free(c);
}

static void upstream_free(void *p) {
  upstream *u = p;
  stream_free(&u->s);
  free(u);
}

static void log_error(uint64_t id, const char *peer, const char *what) {
  log_rec r;
  log_begin(&r, "error", id, peer);
  log_str(&r, "error", what);
  log_mark_error(&r);
  log_end(&r, "{%s} %s", peer ? peer : "proxy", what);
}

/* Closes the upstream connection: our FIN goes first, before the client gets its answer. */
static void upstream_close(client *c, const char *reason) {
  upstream *u = c->up;
  if (!u) return;
  c->up = NULL;
  loop_close(L, &u->s.w);
  idle_remove(&u->s.idle);
  log_rec r;
  log_begin(&r, "upstream_closed", c->id, c->peer);
  log_int(&r, "upstream", (long long)u->id);
  log_str(&r, "reason", reason);
  log_end(&r, "{%s} Closed connection to server (%s)", c->peer, reason);
  loop_defer_free(L, u, upstream_free);
}

static void client_close(client *c, const char *reason) {
  if (c->s.w.fd < 0) return;
  upstream_close(c, "client gone");
  loop_close(L, &c->s.w);
  idle_remove(&c->s.idle);
  nclients--;
  log_rec r;
  log_begin(&r, "closed", c->id, c->peer);
  log_str(&r, "reason", reason);
  log_end(&r, "{%s} Connection closed", c->peer);
  loop_defer_free(L, c, client_free);
}

static void client_send(client *c, const uint8_t *msg, size_t len, int status) {
  log_rec r;
  log_begin(&r, "response", c->id, c->peer);
  log_int(&r, "bytes", (long long)len);
  log_int(&r, "status", status);
  log_end(&r, "{%s} Sending response of length %zu bytes", c->peer, len);
  if (stream_send(L, &c->s, msg, len) < 0) {
    log_error(c->id, c->peer, strerror(errno));
    client_close(c, "send failed");
  }
}

/* The proxy's own 500: CalculatorServerError('Internal proxy error', <inner>), C clear, max-age 0. */
static void client_send_proxy_error(client *c, const char *inner_cls, const char *inner_msg) {
  calc_buf m;
  calc_buf_init(&m, 0);
  if (calc_proxy_error(inner_cls, inner_msg, now_s(), &m) == 0) {
    log_rec r;
    log_begin(&r, "proxy_error", c->id, c->peer);
    log_str(&r, "error_type", inner_cls);
    log_str(&r, "error", inner_msg);
    log_end(&r, "{%s} Internal proxy error: %s", c->peer, inner_msg);
    client_send(c, m.data, m.len, 500);
  } else {
    client_close(c, "out of memory");
  }
  calc_buf_free(&m);
}

static void log_cache(client *c, const char *outcome, const char *text, const calc_cache_times *t) {
  log_rec r;
  log_begin(&r, "cache", c->id, c->peer);
  log_str(&r, "outcome", outcome);
  log_num(&r, "server_remaining", t->server_remaining);
  log_num(&r, "client_remaining", t->client_remaining);
  log_end(&r, "{%s} %s ,server time remaining: %.2f, client time remaining: %.2f", c->peer, text,
          t->server_remaining, t->client_remaining);
}

static void client_process(client *c);

/* The upstream failed: answer the client with the proxy's error, then serve what is queued. */
static void upstream_fail(client *c, const char *inner_cls, const char *msg) {
  upstream_close(c, msg);
  c->state = CLIENT_IDLE;
  client_send_proxy_error(c, inner_cls, msg);
  if (c->s.w.fd >= 0) client_process(c);
}

static void upstream_got_response(client *c, const calc_msg *m) {
  /* Copy before closing: the message points into the upstream's framer. */
  calc_buf resp;
  calc_buf_init(&resp, 0);
  if (calc_buf_append(&resp, m->raw, m->raw_len) < 0) {
    calc_buf_free(&resp);
    upstream_fail(c, "CalculatorServerError", "out of memory");
    return;
  }
  upstream_close(c, "response received");
  c->state = CLIENT_IDLE;
  calc_cache_times t;
  bool stored = calc_proxy_on_response(cache, &c->req, c->req_payload.data, c->req_payload.len, resp.data,
                                 resp.len, now_s(), &t);
  log_cache(c, stored ? "miss_cached" : "miss_not_cached",
            stored ? "Cache miss, response cached" : "Cache miss, response not cached", &t);
  client_send(c, resp.data, resp.len, m->h.status);
  calc_buf_free(&resp);
  if (c->s.w.fd >= 0) client_process(c);
}

static void on_upstream_event(loop *l, watcher *w, uint32_t events) {
  upstream *u = w->owner;
  client *c = u->owner;
  if (c->state == CLIENT_CONNECTING) {
    int err = 0;
    socklen_t sl = sizeof err;
    getsockopt(w->fd, SOL_SOCKET, SO_ERROR, &err, &sl);
    if (err == ECONNREFUSED) {
      log_rec r;
      log_begin(&r, "upstream_refused", c->id, c->peer);
      log_int(&r, "upstream", (long long)u->id);
      log_end(&r, "{%s} Connection refused by server", c->peer);
      upstream_fail(c, "CalculatorServerError", REFUSED_MSG);
      return;
    }
    if (err) {
      char msg[200];
      snprintf(msg, sizeof msg, "Cannot connect to server: %s", strerror(err));
      upstream_fail(c, "CalculatorServerError", msg);
      return;
    }
    if (!(events & EPOLLOUT)) return;
    /* Connected: forward the request as calc_proxy_on_request re-packed it. */
    log_rec r;
    log_begin(&r, "upstream_connected", c->id, c->peer);
    log_int(&r, "upstream", (long long)u->id);
    log_int(&r, "bytes", (long long)c->forward.len);
    log_end(&r, "{%s} Forwarding request of length %zu bytes to the server", c->peer, c->forward.len);
    c->state = CLIENT_WAITING;
    loop_set(l, w, EPOLLIN);
    if (stream_send(l, &u->s, c->forward.data, c->forward.len) < 0) {
      upstream_fail(c, "CalculatorServerError", "Cannot send the request to the server");
      return;
    }
    idle_touch(&upstream_idle, &u->s.idle, loop_now_ms());
    return;
  }
  if (events & EPOLLOUT) {
    if (stream_flush(l, &u->s) < 0) {
      upstream_fail(c, "CalculatorServerError", "Connection reset by server");
      return;
    }
  }
  if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
    int rc = stream_read(&u->s);
    if (rc < 0) {
      upstream_fail(c, "CalculatorServerError",
                    errno == ECONNRESET ? "Connection reset by server" : strerror(errno));
      return;
    }
    idle_touch(&upstream_idle, &u->s.idle, loop_now_ms());
    calc_msg m;
    int f = calc_framer_next(&u->s.in, &m);
    if (f == 1) {
      upstream_got_response(c, &m);
      return;
    }
    if (f < 0) {
      char msg[120];
      snprintf(msg, sizeof msg, "Invalid response from server: total length %u", m.h.total_len);
      upstream_fail(c, "CalculatorServerError", msg);
      return;
    }
    if (u->s.eof) {
      char msg[160];
      snprintf(msg, sizeof msg, "Connection closed by server after %zu bytes, before a whole response",
               calc_framer_pending(&u->s.in));
      upstream_fail(c, "CalculatorServerError", msg);
    }
  }
}

static void start_upstream(client *c) {
  int fd = sock_connect_nonblock(&server_addr);
  if (fd < 0) {
    if (errno == ECONNREFUSED) upstream_fail(c, "CalculatorServerError", REFUSED_MSG);
    else {
      char msg[200];
      snprintf(msg, sizeof msg, "Cannot connect to server: %s", strerror(errno));
      upstream_fail(c, "CalculatorServerError", msg);
    }
    return;
  }
  upstream *u = calloc(1, sizeof *u);
  if (!u) {
    close(fd);
    upstream_fail(c, "CalculatorServerError", "out of memory");
    return;
  }
  stream_init(&u->s);
  u->s.idle.owner = u;
  u->owner = c;
  u->id = ++next_id;
  c->up = u;
  c->state = CLIENT_CONNECTING;
  loop_add(L, &u->s.w, fd, EPOLLOUT, on_upstream_event, u);
  idle_touch(&upstream_idle, &u->s.idle, loop_now_ms());
  log_rec r;
  log_begin(&r, "upstream_connect", c->id, c->peer);
  log_int(&r, "upstream", (long long)u->id);
  log_str(&r, "server", cfg.server_host);
  log_int(&r, "server_port", cfg.server_port);
  log_end(&r, "{%s} Connecting to server %s:%d", c->peer, cfg.server_host, cfg.server_port);
}

static void handle_request(client *c, const calc_msg *m) {
  log_rec r;
  log_begin(&r, "request", c->id, c->peer);
  log_int(&r, "bytes", (long long)m->raw_len);
  log_bool(&r, "steps", m->h.steps);
  log_bool(&r, "cache", m->h.cache);
  log_int(&r, "cache_control", m->h.cache_control);
  log_end(&r, "{%s} Got request of length %zu bytes", c->peer, m->raw_len);

  calc_proxy_decision d;
  calc_buf_reset(&c->forward);
  if (calc_proxy_on_request(cache, m, now_s(), &c->forward, &d) < 0) {
    client_close(c, "out of memory");
    return;
  }
  if (d.action == CALC_PROXY_ANSWER) {
    log_cache(c, "hit", "Cache hit", &d.times);
    calc_header sh;
    calc_header_decode(c->forward.data, c->forward.len, &sh);
    client_send(c, c->forward.data, c->forward.len, sh.status);
    return;
  }
  if (d.outcome == CALC_CACHE_STALE) log_cache(c, "stale", "Cache miss, stale response", &d.times);
  c->req = m->h;
  calc_buf_reset(&c->req_payload);
  if (calc_buf_append(&c->req_payload, m->payload, m->payload_len) < 0) {
    client_close(c, "out of memory");
    return;
  }
  start_upstream(c);
}

/* Serves buffered requests one at a time: stops while an upstream exchange is in flight. */
static void client_process(client *c) {
  calc_msg m;
  int rc;
  while (c->s.w.fd >= 0 && c->state == CLIENT_IDLE && !c->closing && (rc = calc_framer_next(&c->s.in, &m)) != 0) {
    if (rc < 0) {
      char msg[160];
      snprintf(msg, sizeof msg, "Invalid total length: %u (must be between 12 and 65536 bytes inclusive)", m.h.total_len);
      c->closing = true;
      client_send_proxy_error(c, "CalculatorClientError", msg);
      break;
    }
    handle_request(c, &m);
  }
  if (c->s.w.fd >= 0 && c->state == CLIENT_IDLE && (c->s.eof || c->closing) && !stream_pending_output(&c->s)) {
    if (c->s.eof && calc_framer_pending(&c->s.in) && !c->closing) {
      char msg[160];
      snprintf(msg, sizeof msg, "The data is too short (%zu bytes) to be a whole request", calc_framer_pending(&c->s.in));
      c->closing = true;
      client_send_proxy_error(c, "CalculatorClientError", msg);
      if (c->s.w.fd >= 0 && stream_pending_output(&c->s)) return;
    }
    client_close(c, c->s.eof ? "peer closed" : "framing error");
  }
}

static void on_client_event(loop *l, watcher *w, uint32_t events) {
  client *c = w->owner;
  if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
    int rc = stream_read(&c->s);
    if (rc < 0) {
      client_close(c, errno == ECONNRESET ? "reset by peer" : strerror(errno));
      return;
    }
    idle_touch(&client_idle, &c->s.idle, loop_now_ms());
    if (c->s.eof && c->state != CLIENT_IDLE && calc_framer_pending(&c->s.in) == 0) {
      /* Half-close while waiting for the server: still answer (the reference client never
       * does this, but a script with shutdown(SHUT_WR) may). Stop reading. */
      loop_set(l, w, w->mask & ~(uint32_t)EPOLLIN);
    }
    client_process(c);
    if (c->s.w.fd < 0) return;
  }
  if (events & EPOLLOUT) {
    if (stream_flush(l, &c->s) < 0) {
      client_close(c, "send failed");
      return;
    }
    client_process(c);
  }
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
    if (!c) {
      close(fd);
      continue;
    }
    stream_init(&c->s);
    c->s.idle.owner = c;
    calc_buf_init(&c->req_payload, 0);
    calc_buf_init(&c->forward, 0);
    c->id = ++next_id;
    memcpy(c->peer, peer, sizeof peer);
    if (loop_add(l, &c->s.w, fd, EPOLLIN, on_client_event, c) < 0) {
      close(fd);
      client_free(c);
      continue;
    }
    nclients++;
    idle_touch(&client_idle, &c->s.idle, loop_now_ms());
    log_rec r;
    log_begin(&r, "accepted", c->id, c->peer);
    log_end(&r, "{%s} Connection established", c->peer);
  }
}

static void expire_timeouts(void) {
  uint64_t now = loop_now_ms();
  idle_node *n;
  while ((n = idle_expired(&upstream_idle, now, (uint64_t)cfg.upstream_timeout_ms)) != NULL) {
    client *c = ((upstream *)n->owner)->owner;
    char msg[120];
    snprintf(msg, sizeof msg, "No response from server within %ld s", cfg.upstream_timeout_ms / 1000);
    idle_touch(&client_idle, &c->s.idle, now);
    upstream_fail(c, "CalculatorServerError", msg);
  }
  while ((n = idle_expired(&client_idle, now, (uint64_t)cfg.idle_timeout_ms)) != NULL) {
    client *c = n->owner;
    if (c->state != CLIENT_IDLE) { /* waiting on the server: its own timeout applies */
      idle_touch(&client_idle, n, now);
      continue;
    }
    log_rec r;
    log_begin(&r, "timeout", c->id, c->peer);
    log_int(&r, "pending_bytes", (long long)calc_framer_pending(&c->s.in));
    log_end(&r, "{%s} Idle for %ld s, closing", c->peer, cfg.idle_timeout_ms / 1000);
    client_close(c, "idle timeout");
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
          "      --idle-timeout S      close a silent client after S seconds (default 30)\n"
          "      --max-connections N   client connections beyond this are closed (default 10000)\n"
          "      --log-format FMT      human (default) or json (JSON Lines, docs/logging.md)\n"
          "  -q, --quiet               log errors only\n"
          "  -h, --help                show this help\n");
}

int main(int argc, char **argv) {
  cfg = (config){.proxy_host = "127.0.0.1", .proxy_port = 9998, .server_host = "127.0.0.1",
                 .server_port = 9999, .cache_max_bytes = 64u << 20, .upstream_timeout_ms = 10000,
                 .idle_timeout_ms = 30000, .max_connections = 10000};
  log_format fmt = LOG_HUMAN;
  bool quiet = false;
  enum { OPT_PH = 256, OPT_PP, OPT_SH, OPT_SP, OPT_CMB, OPT_UT, OPT_IT, OPT_MC, OPT_LF };
  /* getopt_long_only: the reference's single-dash long flags (-ph, -pp, -sh, -sp) work as is. */
  static const struct option opts[] = {
      {"ph", required_argument, 0, OPT_PH},          {"proxy_host", required_argument, 0, OPT_PH},
      {"proxy-host", required_argument, 0, OPT_PH},  {"pp", required_argument, 0, OPT_PP},
      {"proxy_port", required_argument, 0, OPT_PP},  {"proxy-port", required_argument, 0, OPT_PP},
      {"sh", required_argument, 0, OPT_SH},          {"server_host", required_argument, 0, OPT_SH},
      {"server-host", required_argument, 0, OPT_SH}, {"sp", required_argument, 0, OPT_SP},
      {"server_port", required_argument, 0, OPT_SP}, {"server-port", required_argument, 0, OPT_SP},
      {"cache-max-bytes", required_argument, 0, OPT_CMB}, {"upstream-timeout", required_argument, 0, OPT_UT},
      {"idle-timeout", required_argument, 0, OPT_IT}, {"max-connections", required_argument, 0, OPT_MC},
      {"log-format", required_argument, 0, OPT_LF},  {"quiet", no_argument, 0, 'q'},
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
      case OPT_IT: cfg.idle_timeout_ms = 1000 * util_parse_long("calc-proxy", "--idle-timeout", optarg, 1, 86400); break;
      case OPT_MC: cfg.max_connections = util_parse_long("calc-proxy", "--max-connections", optarg, 1, 10000000); break;
      case OPT_LF:
        if (strcmp(optarg, "json") == 0) fmt = LOG_JSON;
        else if (strcmp(optarg, "human") == 0) fmt = LOG_HUMAN;
        else { fprintf(stderr, "calc-proxy: --log-format is human or json\n"); return 2; }
        break;
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
  cache = calc_cache_new(cfg.cache_max_bytes);
  L = loop_new();
  int lfd = sock_listen(&listen_addr, false, 4096);
  if (!cache || !L || lfd < 0) {
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
    loop_run_once(L, 100);
    expire_timeouts();
    if (util_stop_requested && !stopping) {
      /* Stop accepting; idle clients go now; requests in flight get their answers. */
      stopping = true;
      deadline = loop_now_ms() + (uint64_t)cfg.upstream_timeout_ms + 1000;
      loop_close(L, &listener);
      for (idle_node *n = client_idle.head, *next; n; n = next) {
        next = n->next;
        client *c = n->owner;
        if (c->state == CLIENT_IDLE && !stream_pending_output(&c->s)) client_close(c, "shutdown");
      }
    }
    if (stopping && (nclients == 0 || loop_now_ms() > deadline)) break;
  }
  loop_free(L);
  calc_cache_free(cache);
  log_begin(&r, "stopped", 0, NULL);
  log_end(&r, "Proxy stopped");
  return 0;
}
