/* calc-server: the calculator server, drop-in for the course's Python reference.
 *
 * One epoll loop per thread (--threads N share the port with SO_REUSEPORT), non-blocking
 * sockets, requests framed by total length and answered in order, one write per response.
 * A connection is served until the peer closes it; then the server closes (the client's FIN
 * leads the teardown, as the report's captures show). */
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
#include "calc/server.h"
#include "log.h"
#include "loop.h"
#include "sock.h"
#include "stream.h"
#include "util.h"

typedef struct config {
  const char *host;
  int port;
  calc_server_opts answer;
  int threads;
  long max_connections;
  long idle_timeout_ms;
  size_t memo_bytes;   /* per event loop; 0 disables the answer memo */
} config;

typedef struct worker worker;

typedef struct conn {
  stream s;
  worker *wk;
  uint64_t id;
  char peer[64];
  bool closing;    /* answered a framing error: no more requests, close once flushed */
} conn;

struct worker {
  const config *cfg;
  loop *l;
  watcher listener;
  idle_list idle;
  size_t nconns;
  long max_conns;       /* this loop's share of --max-connections */
  calc_answer_memo *memo; /* this loop's memo of answers (no locks: one per thread) */
  calc_buf scratch;       /* answers are built here: one buffer per loop, grown once */
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

static void conn_free(void *p) {
  conn *c = p;
  stream_free(&c->s);
  free(c);
}

static void conn_close(conn *c, const char *reason) {
  worker *wk = c->wk;
  if (c->s.w.fd < 0) return;
  loop_close(wk->l, &c->s.w);
  idle_remove(&c->s);
  wk->nconns--;
  log_rec r;
  log_begin(&r, "closed", c->id, c->peer);
  log_str(&r, "reason", reason);
  log_end(&r, "{%s} Connection closed", c->peer);
  loop_defer_free(wk->l, c, conn_free);
}

static void log_error(conn *c, const char *what) {
  log_rec r;
  log_begin(&r, "error", c ? c->id : 0, c ? c->peer : NULL);
  log_str(&r, "error", what);
  log_mark_error(&r);
  log_end(&r, "%s%s%s%s", c ? "{" : "", c ? c->peer : "", c ? "} " : "", what);
}

/* Sends one answer built by calc_server_answer*, logging it like the reference. */
static void conn_answer(conn *c, calc_buf *resp, const calc_answer_info *info) {
  log_rec r;
  log_begin(&r, "response", c->id, c->peer);
  log_int(&r, "bytes", (long long)resp->len);
  log_int(&r, "status", info->status);
  log_bool(&r, "steps", info->steps);
  if (info->status != 200) {
    log_str(&r, "error_type", info->error_type);
    log_str(&r, "error", info->error_msg);
  }
  log_end(&r, "{%s} Sending response of length %zu bytes", c->peer, resp->len);
  if (stream_send(c->wk->l, &c->s, resp->data, resp->len) < 0) {
    log_error(c, strerror(errno));
    conn_close(c, "send failed");
  }
}

static uint32_t now_s(void) { return (uint32_t)time(NULL); }

/* Answers every whole message buffered on c. */
static void conn_process(conn *c) {
  calc_buf *resp = &c->wk->scratch;
  calc_answer_info info;
  calc_msg m;
  int rc;
  while (!c->closing && c->s.w.fd >= 0 && (rc = calc_framer_next(&c->s.in, &m)) != 0) {
    calc_buf_reset(resp);
    if (rc < 0) {
      /* A total length under 12 cannot be resynchronised: answer and close. */
      log_rec r;
      log_begin(&r, "request", c->id, c->peer);
      log_int(&r, "bytes", (long long)calc_framer_pending(&c->s.in));
      log_int(&r, "total_length", m.h.total_len);
      log_bool(&r, "valid", false);
      log_end(&r, "{%s} Got request with invalid total length %u", c->peer, m.h.total_len);
      calc_server_answer_bad_length(&c->wk->cfg->answer, m.h.total_len, now_s(), resp, &info);
      c->closing = true;
    } else {
      log_rec r;
      log_begin(&r, "request", c->id, c->peer);
      log_int(&r, "bytes", (long long)m.raw_len);
      log_bool(&r, "steps", m.h.steps);
      log_bool(&r, "cache", m.h.cache);
      log_int(&r, "cache_control", m.h.cache_control);
      if (m.h.reserved) log_int(&r, "reserved_bits", m.h.reserved);
      log_end(&r, "{%s} Got request of length %zu bytes", c->peer, m.raw_len);
      if (calc_server_answer_memo(&c->wk->cfg->answer, c->wk->memo, &m, now_s(), resp, &info) < 0) {
        log_error(c, "out of memory while answering");
        conn_close(c, "out of memory");
        break;
      }
    }
    conn_answer(c, resp, &info);
  }
}

/* The peer closed its side: answer bytes that never formed a message, then close. */
static void conn_finish(conn *c) {
  size_t pending = calc_framer_pending(&c->s.in);
  if (pending && !c->closing) {
    calc_buf resp;
    calc_buf_init(&resp, 0);
    calc_answer_info info;
    calc_header h = {0};
    const uint8_t *rest = c->s.in.in.data + c->s.in.skip;
    unsigned claimed = calc_header_decode(rest, pending, &h) > 0 ? h.total_len : 0;
    calc_server_answer_truncated(&c->wk->cfg->answer, pending, claimed, now_s(), &resp, &info);
    conn_answer(c, &resp, &info);
    calc_buf_free(&resp);
  }
  c->closing = true;
  if (c->s.w.fd >= 0 && !stream_pending_output(&c->s)) conn_close(c, "peer closed");
}

static void on_conn_event(loop *l, watcher *w, uint32_t events) {
  conn *c = w->owner;
  if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
    int rc = stream_read(&c->s);
    if (rc < 0) {
      conn_close(c, errno == ECONNRESET ? "reset by peer" : strerror(errno));
      return;
    }
    idle_touch(&c->wk->idle, &c->s, loop_now_ms());
    conn_process(c);
    if (c->s.w.fd < 0) return;
    if (c->s.eof) {
      conn_finish(c);
      return;
    }
  }
  if (events & EPOLLOUT) {
    if (stream_flush(l, &c->s) < 0) {
      conn_close(c, "send failed");
      return;
    }
    if (c->closing && !stream_pending_output(&c->s)) conn_close(c, c->s.eof ? "peer closed" : "framing error");
  }
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
    if (!c) {
      close(fd);
      continue;
    }
    stream_init(&c->s);
    c->wk = wk;
    c->id = next_conn_id();
    memcpy(c->peer, peer, sizeof peer);
    if (loop_add(l, &c->s.w, fd, EPOLLIN, on_conn_event, c) < 0) {
      close(fd);
      conn_free(c);
      continue;
    }
    wk->nconns++;
    idle_touch(&wk->idle, &c->s, loop_now_ms());
    log_rec r;
    log_begin(&r, "accepted", c->id, c->peer);
    log_end(&r, "Connection established with %s", c->peer);
  }
}

static void expire_idle(worker *wk) {
  stream *s;
  uint64_t now = loop_now_ms();
  while ((s = idle_expired(&wk->idle, now, (uint64_t)wk->cfg->idle_timeout_ms)) != NULL) {
    conn *c = (conn *)s; /* stream is the first member of conn */
    log_rec r;
    log_begin(&r, "timeout", c->id, c->peer);
    log_int(&r, "pending_bytes", (long long)calc_framer_pending(&c->s.in));
    log_end(&r, "{%s} Idle for %ld ms, closing", c->peer, wk->cfg->idle_timeout_ms);
    if (calc_framer_pending(&c->s.in) && !c->closing) {
      conn_finish(c); /* answers the stalled partial message */
      if (c->s.w.fd >= 0) conn_close(c, "idle timeout");
    } else {
      conn_close(c, "idle timeout");
    }
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
      for (stream *s = wk->idle.head, *next; s; s = next) {
        next = s->next;
        /* A request still arriving is in flight too: only truly idle connections go now. */
        if (!stream_pending_output(s) && calc_framer_pending(&((conn *)s)->s.in) == 0)
          conn_close((conn *)s, "shutdown");
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
          "      --log-format FMT     human (the reference's lines, default) or json (JSON Lines)\n"
          "  -q, --quiet              log errors only\n"
          "  -h, --help               show this help\n");
}

int main(int argc, char **argv) {
  config cfg = {.host = "127.0.0.1", .port = 9999, .answer = {.cache_control = 65535},
                .threads = 1, .max_connections = 10000, .idle_timeout_ms = 30000,
                .memo_bytes = 16u << 20};
  log_format fmt = LOG_HUMAN;
  bool quiet = false;
  enum { OPT_CC = 256, OPT_NOCACHE, OPT_THREADS, OPT_MAXCONN, OPT_IDLE, OPT_LOGFMT, OPT_MEMO };
  static const struct option opts[] = {
      {"host", required_argument, 0, 'H'},        {"port", required_argument, 0, 'p'},
      {"cache-control", required_argument, 0, OPT_CC}, {"no-cache", no_argument, 0, OPT_NOCACHE},
      {"threads", required_argument, 0, OPT_THREADS}, {"max-connections", required_argument, 0, OPT_MAXCONN},
      {"idle-timeout", required_argument, 0, OPT_IDLE}, {"log-format", required_argument, 0, OPT_LOGFMT},
      {"memo-bytes", required_argument, 0, OPT_MEMO},
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
    calc_buf_init(&wk->scratch, 0);
    if (cfg.memo_bytes && !(wk->memo = calc_answer_memo_new(cfg.memo_bytes))) {
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
    calc_answer_memo_free(workers[i].memo);
    calc_buf_free(&workers[i].scratch);
  }
  free(workers);
  log_begin(&r, "stopped", 0, NULL);
  log_end(&r, "Server stopped");
  return 0;
}
