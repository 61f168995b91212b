/* calc-server: the calculator server, drop-in for the course's Python reference.
 *
 * One epoll loop per thread (--threads N share the port with SO_REUSEPORT), non-blocking
 * sockets, requests framed by total length and answered in order, one write per response.
 * What to answer and when to close is decided by calc_conn (calc/conn.h), one per connection;
 * this file only moves bytes between sockets and those machines and keeps the timers. */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "calc/alloc.h"
#include "calc/conn.h"
#include "calc/server.h"
#include "log.h"
#include "loop.h"
#include "sock.h"
#include "idle.h"
#include "util.h"

typedef struct config {
  const char *host;
  int port;
  calc_server_opts answer;
  calc_conn_limits limits;
  int threads;
  long max_connections;
  long idle_timeout_ms;
  size_t memo_bytes;   /* per event loop; 0 disables the answer memo */
} config;

typedef struct worker worker;

typedef struct conn {
  watcher w;
  idle_node idle;
  calc_conn *cc;       /* every decision about this connection */
  worker *wk;
  uint64_t id;
  char peer[64];
} conn;

struct worker {
  const config *cfg;
  loop *l;
  watcher listener;
  idle_list idle;
  size_t nconns;
  long max_conns;       /* this loop's share of --max-connections */
  calc_conn_config conn_cfg; /* with this loop's memo of answers (no locks: one per thread) */
  uint8_t rbuf[65536];  /* every read of this loop lands here first */
  pthread_t thread;
  int index;
};

static sock_addr listen_addr;
static uint64_t next_conn_id_shared;
static pthread_mutex_t id_lock = PTHREAD_MUTEX_INITIALIZER;

static uint64_t next_conn_id(void) {
  pthread_mutex_lock(&id_lock);
  uint64_t id = ++next_conn_id_shared;
  pthread_mutex_unlock(&id_lock);
  return id;
}

static uint32_t now_s(void) { return (uint32_t)time(NULL); }

static void conn_free(void *p) {
  conn *c = p;
  calc_conn_free(c->cc);
  free(c);
}

static void conn_close(conn *c, const char *reason) {
  worker *wk = c->wk;
  if (c->w.fd < 0) return;
  loop_close(wk->l, &c->w);
  idle_remove(&c->idle);
  wk->nconns--;
  log_closed(c->id, c->peer, reason);
  loop_defer_free(wk->l, c, conn_free);
}

static void log_error(conn *c, const char *what) {
  log_rec r;
  log_begin(&r, "error", c ? c->id : 0, c ? c->peer : NULL);
  log_str(&r, "error", what);
  log_mark_error(&r);
  log_end(&r, "%s%s%s%s", c ? "{" : "", c ? c->peer : "", c ? "} " : "", what);
}

/* The machine's callbacks: the reference's log lines for each request and answer. */
static void on_request(void *user, const calc_msg *m) {
  conn *c = user;
  log_request(c->id, c->peer, m);
}

static void log_bad_length(void *user, size_t buffered, unsigned total_len) {
  conn *c = user;
  log_rec r;
  log_begin(&r, "request", c->id, c->peer);
  log_int(&r, "bytes", (long long)buffered);
  log_int(&r, "total_length", total_len);
  log_bool(&r, "valid", false);
  log_end(&r, "{%s} Got request with invalid total length %u", c->peer, total_len);
}

static void log_answer(void *user, size_t len, const calc_answer_info *info) {
  conn *c = user;
  log_response(c->id, c->peer, len, info->status, info);
}

/* Carries out what the machine asks: one send per answer, then the watch for the next event. */
static void conn_drive(conn *c) {
  calc_conn_action a;
  for (;;) {
    calc_conn_next(c->cc, &a);
    if (a.kind == CALC_CONN_WAIT) break;
    if (a.kind == CALC_CONN_CLOSE) {
      if (a.why == CALC_ERR_NOMEM) log_error(c, "out of memory while answering");
      conn_close(c, log_close_reason(a.why));
      return;
    }
    ssize_t n = sock_send(c->w.fd, a.data, a.len);
    if (n < 0) {
      log_error(c, strerror(errno));
      conn_close(c, "send failed");
      return;
    }
    calc_conn_sent(c->cc, (size_t)n, now_s());
  }
  uint32_t mask = (calc_conn_wants_read(c->cc) ? EPOLLIN : 0u) | (calc_conn_wants_write(c->cc) ? EPOLLOUT : 0u);
  loop_set(c->wk->l, &c->w, mask);
}

/* Reads what the socket holds, as far as the machine has room for it. 0, or -1 with errno. */
static int conn_read(conn *c) {
  size_t room;
  while ((room = calc_conn_read_room(c->cc)) > 0) {
    size_t want = room < sizeof c->wk->rbuf ? room : sizeof c->wk->rbuf;
    ssize_t n = sock_recv(c->w.fd, c->wk->rbuf, want);
    if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
    if (n == 0) {
      calc_conn_peer_closed(c->cc, now_s());
      return 0;
    }
    idle_touch(&c->wk->idle, &c->idle, loop_now_ms());
    calc_conn_received(c->cc, c->wk->rbuf, (size_t)n, now_s());
    if ((size_t)n < want) return 0; /* drained: save a syscall */
  }
  return 0;
}

static void on_conn_event(loop *l, watcher *w, uint32_t events) {
  (void)l;
  conn *c = w->owner;
  if (events & EPOLLOUT) calc_conn_writable(c->cc);
  if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
    if (calc_conn_read_room(c->cc) == 0 && (events & (EPOLLHUP | EPOLLERR))) {
      /* Not reading (its answers wait unread, or it closed) and the peer is gone. */
      conn_close(c, events & EPOLLERR ? "reset by peer" : "peer closed");
      return;
    }
    if (conn_read(c) < 0) {
      conn_close(c, errno == ECONNRESET ? "reset by peer" : strerror(errno));
      return;
    }
  }
  conn_drive(c);
}

static void on_accept(loop *l, watcher *w, uint32_t events) {
  (void)events;
  worker *wk = w->owner;
  for (;;) {
    char peer[64];
    int fd = sock_accept(w->fd, peer, sizeof peer);
    if (fd < 0) {
      if (errno != EAGAIN && errno != EWOULDBLOCK) log_error(NULL, strerror(errno));
      return;
    }
    if ((long)wk->nconns >= wk->max_conns) {
      /* Past --max-connections: refuse cleanly so the others keep their service. */
      log_refused(peer, wk->cfg->max_connections);
      close(fd);
      continue;
    }
    conn *c = calloc(1, sizeof *c);
    if (!c || !(c->cc = calc_conn_new(&wk->conn_cfg, c))) {
      free(c);
      close(fd);
      continue;
    }
    c->w.fd = -1;
    c->idle.owner = c;
    c->wk = wk;
    c->id = next_conn_id();
    memcpy(c->peer, peer, sizeof peer);
    if (loop_add(l, &c->w, fd, EPOLLIN, on_conn_event, c) < 0) {
      close(fd);
      conn_free(c);
      continue;
    }
    wk->nconns++;
    idle_touch(&wk->idle, &c->idle, loop_now_ms());
    log_rec r;
    log_begin(&r, "accepted", c->id, c->peer);
    log_end(&r, "Connection established with %s", c->peer);
  }
}

static void expire_idle(worker *wk) {
  idle_node *n;
  uint64_t now = loop_now_ms();
  while ((n = idle_expired(&wk->idle, now, (uint64_t)wk->cfg->idle_timeout_ms)) != NULL) {
    conn *c = n->owner;
    log_rec r;
    log_begin(&r, "timeout", c->id, c->peer);
    log_int(&r, "pending_bytes", (long long)calc_conn_pending_input(c->cc));
    log_end(&r, "{%s} Idle for %ld ms, closing", c->peer, wk->cfg->idle_timeout_ms);
    calc_conn_timed_out(c->cc, now_s()); /* answers a stalled partial message */
    conn_drive(c);
    conn_close(c, "idle timeout");
  }
}

static void *worker_run(void *arg) {
  worker *wk = arg;
  bool stopping = false;
  uint64_t stop_deadline = 0;
  for (;;) {
    loop_run_once(wk->l, 100);
    expire_idle(wk);
    if (util_stop_requested && !stopping) {
      /* Stop accepting; close idle connections; let answers in flight drain. */
      stopping = true;
      stop_deadline = loop_now_ms() + 5000;
      loop_close(wk->l, &wk->listener);
      for (idle_node *n = wk->idle.head, *next; n; n = next) {
        next = n->next;
        conn *c = n->owner;
        /* A request still arriving is in flight too: only truly idle connections go now. */
        if (!calc_conn_pending_output(c->cc) && !calc_conn_pending_input(c->cc)) conn_close(c, "shutdown");
      }
    }
    if (stopping && (wk->nconns == 0 || loop_now_ms() > stop_deadline)) break;
  }
  return NULL;
}

static void usage(FILE *f) {
  fprintf(f,
          "Usage: calc-server [OPTIONS]\n"
          "The calculator server: evaluates expressions sent by calc-client or calc-proxy (or the\n"
          "course's Python programs) and answers with the result and its steps.\n\n"
          "  -H, --host HOST          address to listen on (default 127.0.0.1)\n"
          "  -p, --port PORT          port to listen on (default 9999)\n"
          "      --cache-control N    max-age in seconds set on responses (default 65535 = forever)\n"
          "      --no-cache           mark responses as not cacheable (C flag clear, max-age 0)\n"
          "      --threads N          event loops, one per thread, sharing the port (default 1)\n"
          "      --max-connections N  connections beyond this are closed at once (default 10000)\n"
          "      --idle-timeout S     close a connection silent for S seconds (default 30)\n"
          "      --memo-bytes N       remember answers to repeated requests, up to N bytes per\n"
          "                           thread (default 16777216; 0 turns the memo off)\n"
          "      --max-input-bytes N  per connection, requests received and not yet answered are\n"
          "                           held up to N bytes; past it the connection is not read\n"
          "                           (default 262144, at least 65535)\n"
          "      --max-output-bytes N per connection, answers wait unread up to N bytes; past it\n"
          "                           no more are made until the client reads (default 262144,\n"
          "                           at least 65535). A connection holds at most\n"
          "                           input + 2 x output + 65535 bytes of buffers\n"
          "      --log-format FMT     human (the reference's lines, default) or json (JSON Lines)\n"
          "  -q, --quiet              log errors only\n"
          "  -h, --help               show this help\n");
}

int main(int argc, char **argv) {
  config cfg = {.host = "127.0.0.1", .port = 9999, .answer = {.cache_control = 65535},
                .threads = 1, .max_connections = 10000, .idle_timeout_ms = 30000,
                .memo_bytes = 16u << 20,
                .limits = {CALC_CONN_DEFAULT_MAX_INPUT, CALC_CONN_DEFAULT_MAX_OUTPUT}};
  log_format fmt = LOG_HUMAN;
  bool quiet = false;
  enum { OPT_CC = 256, OPT_NOCACHE, OPT_THREADS, OPT_MAXCONN, OPT_IDLE, OPT_LOGFMT, OPT_MEMO, OPT_MAXIN, OPT_MAXOUT };
  static const struct option opts[] = {
      {"host", required_argument, 0, 'H'},        {"port", required_argument, 0, 'p'},
      {"cache-control", required_argument, 0, OPT_CC}, {"no-cache", no_argument, 0, OPT_NOCACHE},
      {"threads", required_argument, 0, OPT_THREADS}, {"max-connections", required_argument, 0, OPT_MAXCONN},
      {"idle-timeout", required_argument, 0, OPT_IDLE}, {"log-format", required_argument, 0, OPT_LOGFMT},
      {"memo-bytes", required_argument, 0, OPT_MEMO},
      {"max-input-bytes", required_argument, 0, OPT_MAXIN}, {"max-output-bytes", required_argument, 0, OPT_MAXOUT},
      {"quiet", no_argument, 0, 'q'},             {"help", no_argument, 0, 'h'},
      {0, 0, 0, 0}};
  int o;
  while ((o = getopt_long(argc, argv, "H:p:qh", opts, NULL)) != -1) {
    switch (o) {
      case 'H': cfg.host = optarg; break;
      case 'p': cfg.port = (int)util_parse_long("calc-server", "--port", optarg, 0, 65535); break;
      case OPT_CC: cfg.answer.cache_control = (uint16_t)util_parse_long("calc-server", "--cache-control", optarg, 0, 65535); break;
      case OPT_NOCACHE: cfg.answer.no_cache = true; break;
      case OPT_THREADS: cfg.threads = (int)util_parse_long("calc-server", "--threads", optarg, 1, 256); break;
      case OPT_MAXCONN: cfg.max_connections = util_parse_long("calc-server", "--max-connections", optarg, 1, 10000000); break;
      case OPT_IDLE: cfg.idle_timeout_ms = 1000 * util_parse_long("calc-server", "--idle-timeout", optarg, 1, 86400); break;
      case OPT_LOGFMT:
        if (strcmp(optarg, "json") == 0) fmt = LOG_JSON;
        else if (strcmp(optarg, "human") == 0) fmt = LOG_HUMAN;
        else { fprintf(stderr, "calc-server: --log-format is human or json\n"); return 2; }
        break;
      case OPT_MEMO: cfg.memo_bytes = (size_t)util_parse_long("calc-server", "--memo-bytes", optarg, 0, 1L << 40); break;
      case OPT_MAXIN: cfg.limits.max_input = (size_t)util_parse_long("calc-server", "--max-input-bytes", optarg, CALC_MAX_MESSAGE, 1L << 30); break;
      case OPT_MAXOUT: cfg.limits.max_output = (size_t)util_parse_long("calc-server", "--max-output-bytes", optarg, CALC_MAX_MESSAGE, 1L << 30); break;
      case 'q': quiet = true; break;
      case 'h': usage(stdout); return 0;
      default: usage(stderr); return 2;
    }
  }
  if (optind < argc) {
    fprintf(stderr, "calc-server: unexpected argument '%s'\n", argv[optind]);
    usage(stderr);
    return 2;
  }
  calc_alloc_init();
  log_setup("server", fmt, quiet);
  util_raise_fd_limit();
  util_install_signals();
  char msg[256];
  if (sock_resolve(cfg.host, cfg.port, &listen_addr, msg, sizeof msg) < 0) {
    fprintf(stderr, "calc-server: %s\n", msg);
    return 2;
  }
  worker *workers = calloc((size_t)cfg.threads, sizeof *workers);
  if (!workers) return 1;
  /* Several loops share the port only through SO_REUSEPORT. */
  long per_worker = (cfg.max_connections + cfg.threads - 1) / cfg.threads;
  config *wcfg = &cfg;
  for (int i = 0; i < cfg.threads; i++) {
    worker *wk = &workers[i];
    wk->cfg = wcfg;
    wk->index = i;
    wk->max_conns = per_worker;
    wk->conn_cfg = (calc_conn_config){.answer = cfg.answer, .limits = cfg.limits,
                                      .cb = {on_request, log_bad_length, log_answer}};
    if (cfg.memo_bytes && !(wk->conn_cfg.memo = calc_answer_memo_new(cfg.memo_bytes))) {
      fprintf(stderr, "calc-server: out of memory\n");
      return 1;
    }
    wk->l = loop_new();
    int fd = sock_listen(&listen_addr, cfg.threads > 1, 4096);
    if (!wk->l || fd < 0) {
      fprintf(stderr, "calc-server: cannot listen on %s:%d: %s\n", cfg.host, cfg.port, strerror(errno));
      return 2;
    }
    loop_add(wk->l, &wk->listener, fd, EPOLLIN, on_accept, wk);
  }
  log_rec r;
  log_begin(&r, "listening", 0, NULL);
  log_str(&r, "host", cfg.host);
  log_int(&r, "port", cfg.port);
  log_int(&r, "threads", cfg.threads);
  log_end(&r, "Listening on %s:%d", cfg.host, cfg.port);
  for (int i = 1; i < cfg.threads; i++) pthread_create(&workers[i].thread, NULL, worker_run, &workers[i]);
  worker_run(&workers[0]);
  for (int i = 1; i < cfg.threads; i++) pthread_join(workers[i].thread, NULL);
  for (int i = 0; i < cfg.threads; i++) {
    loop_free(workers[i].l);
    calc_answer_memo_free(workers[i].conn_cfg.memo);
  }
  free(workers);
  log_begin(&r, "stopped", 0, NULL);
  log_end(&r, "Server stopped");
  return 0;
}
