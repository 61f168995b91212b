/* proxy_conn.c: one client connection of the caching proxy as a machine without I/O (see
 * calc/proxy_conn.h). */
#include "calc/proxy_conn.h"

#include <stdio.h>

#include "calc/alloc.h"
#include "calc/proxy.h"
#include "conn_side_internal.h"

typedef enum {
  UP_NONE,        /* no request in flight */
  UP_OPEN_ASKED,  /* OPEN_UPSTREAM is the next thing to ask for */
  UP_CONNECTING,
  UP_EXCHANGING   /* connected: the request goes out, the response comes in */
} upstream_state;

struct calc_proxy_conn {
  const calc_proxy_config *cfg;
  void *user;
  conn_side cl;            /* the client's requests and their answers */
  /* The request in flight and its upstream connection. */
  upstream_state up;
  bool close_up;           /* CLOSE_UPSTREAM comes before anything else */
  char up_reason[200];
  calc_header req;         /* as the client sent it (normalised), for the cache */
  calc_buf req_payload;
  msgq fwd;                /* the request re-packed for the server */
  calc_framer up_in;       /* the server's response */
};

calc_proxy_conn *calc_proxy_conn_new(const calc_proxy_config *cfg, void *user) {
  calc_proxy_conn *c = calc_calloc(1, sizeof *c);
  if (!c) return NULL;
  c->cfg = cfg;
  c->user = user;
  conn_side_init(&c->cl, &cfg->limits);
  calc_buf_init(&c->req_payload, CALC_MAX_PAYLOAD);
  msgq_init(&c->fwd, CALC_MAX_MESSAGE);
  calc_framer_init(&c->up_in, CALC_MAX_MESSAGE); /* one response is all that is read */
  c->up = UP_NONE;
  return c;
}

void calc_proxy_conn_free(calc_proxy_conn *c) {
  if (!c) return;
  conn_side_free(&c->cl);
  calc_buf_free(&c->req_payload);
  msgq_free(&c->fwd);
  calc_framer_free(&c->up_in);
  calc_free(c);
}

/* Ends the upstream exchange: its socket is closed before anything else happens. The
 * response read stays in up_in until the next exchange begins. */
static void upstream_end(calc_proxy_conn *c, const char *reason) {
  if (c->up == UP_NONE) return;
  c->up = UP_NONE;
  c->close_up = true;
  snprintf(c->up_reason, sizeof c->up_reason, "%s", reason);
  if (c->cfg->cb.on_upstream_closed) c->cfg->cb.on_upstream_closed(c->user, c->up_reason);
  msgq_undo(&c->fwd, 0);
  c->fwd.off = c->fwd.msg_end = 0;
  c->fwd.blocked = false;
}

/* Queues the bytes of one answer for the client. */
static void answer(calc_proxy_conn *c, const uint8_t *msg, size_t len, unsigned status) {
  calc_buf *out = msgq_tail(&c->cl.out);
  size_t at = out->len;
  if (calc_buf_append(out, msg, len) < 0) {
    conn_side_answer_failed(&c->cl, at);
    return;
  }
  if (c->cfg->cb.on_answer) c->cfg->cb.on_answer(c->user, len, status);
}

/* The proxy's own 500: CalculatorServerError('Internal proxy error', <inner>(msg)), the inner
 * class the reference's for err. */
static void proxy_error(calc_proxy_conn *c, calc_err err, const char *msg, uint32_t now) {
  const char *inner_cls = calc_err_reference(err).exc_class;
  if (c->cfg->cb.on_proxy_error) c->cfg->cb.on_proxy_error(c->user, inner_cls, msg);
  calc_buf *out = msgq_tail(&c->cl.out);
  size_t at = out->len;
  if (calc_proxy_error(inner_cls, msg, now, out) < 0) {
    conn_side_answer_failed(&c->cl, at);
    return;
  }
  if (c->cfg->cb.on_answer) c->cfg->cb.on_answer(c->user, out->len - at, 500);
}

static void cache_log(calc_proxy_conn *c, const char *outcome, const char *text, const calc_cache_times *t) {
  if (c->cfg->cb.on_cache) c->cfg->cb.on_cache(c->user, outcome, text, t);
}

/* One framed client request: answered from the cache, or an upstream exchange begins. */
static void handle_request(calc_proxy_conn *c, const calc_msg *m, uint32_t now) {
  if (c->cfg->cb.on_request) c->cfg->cb.on_request(c->user, m);
  calc_proxy_decision d;
  calc_buf *fwd = msgq_tail(&c->fwd);
  if (calc_proxy_on_request(c->cfg->cache, m, now, fwd, &d) < 0) {
    msgq_undo(&c->fwd, 0);
    conn_side_finish(&c->cl, CALC_ERR_NOMEM, true);
    return;
  }
  if (d.action == CALC_PROXY_ANSWER) {
    cache_log(c, "hit", "Cache hit", &d.times);
    calc_header sh;
    calc_header_decode(fwd->data, fwd->len, &sh);
    answer(c, fwd->data, fwd->len, sh.status);
    msgq_undo(&c->fwd, 0);
    return;
  }
  if (d.outcome == CALC_CACHE_STALE) cache_log(c, "stale", "Cache miss, stale response", &d.times);
  c->req = m->h;
  calc_buf_reset(&c->req_payload);
  if (calc_buf_append(&c->req_payload, m->payload, m->payload_len) < 0) {
    msgq_undo(&c->fwd, 0);
    conn_side_finish(&c->cl, CALC_ERR_NOMEM, true);
    return;
  }
  calc_buf_reset(&c->up_in.in);
  c->up_in.off = 0;
  c->up = UP_OPEN_ASKED;
}

/* Serves the buffered requests one at a time, while no exchange is in flight and the client
 * reads its answers; then, after the client's FIN, answers a partial request and ends. */
static void serve_client(calc_proxy_conn *c, uint32_t now) {
  int rc = 1;
  while (!c->cl.done && c->up == UP_NONE && msgq_pending(&c->cl.out) < c->cl.max_output) {
    calc_msg m;
    rc = calc_framer_next(&c->cl.in, &m);
    if (rc == 0) break;
    if (rc < 0) {
      char msg[160];
      snprintf(msg, sizeof msg, "Invalid total length: %u (must be between 12 and 65536 bytes inclusive)",
               m.h.total_len);
      proxy_error(c, CALC_ERR_FRAMING, msg, now);
      conn_side_finish(&c->cl, CALC_ERR_INVALID, false);
      return;
    }
    handle_request(c, &m, now);
  }
  c->cl.held_back = c->up == UP_NONE && conn_side_waits_for_reader(&c->cl, rc);
  if (c->cl.eof && !c->cl.done && c->up == UP_NONE && rc == 0) {
    size_t pending = calc_framer_pending(&c->cl.in);
    if (pending) {
      char msg[160];
      snprintf(msg, sizeof msg, "The data is too short (%zu bytes) to be a whole request", pending);
      proxy_error(c, CALC_ERR_TRUNCATED, msg, now);
    }
    conn_side_finish(&c->cl, CALC_ERR_CLOSED, false);
  }
}

/* The exchange failed: close upstream, answer the proxy's 500, serve what is queued. */
static void upstream_fail(calc_proxy_conn *c, calc_err err, const char *msg, uint32_t now) {
  upstream_end(c, msg);
  proxy_error(c, err, msg, now);
  serve_client(c, now);
}

static void got_response(calc_proxy_conn *c, const calc_msg *m, uint32_t now) {
  /* The upstream connection closes first: its FIN goes out before the client's answer. */
  upstream_end(c, "response received");
  calc_cache_times t;
  bool stored = calc_proxy_on_response(c->cfg->cache, &c->req, c->req_payload.data, c->req_payload.len,
                                       m->raw, m->raw_len, now, &t);
  cache_log(c, stored ? "miss_cached" : "miss_not_cached",
            stored ? "Cache miss, response cached" : "Cache miss, response not cached", &t);
  answer(c, m->raw, m->raw_len, m->h.status);
  serve_client(c, now);
}

void calc_proxy_conn_client_received(calc_proxy_conn *c, const uint8_t *data, size_t len, uint32_t now) {
  int rc = conn_side_received(&c->cl, data, len);
  if (rc < 0)
    upstream_end(c, "client gone");
  else if (rc > 0)
    serve_client(c, now);
}

void calc_proxy_conn_client_closed(calc_proxy_conn *c, uint32_t now) {
  if (conn_side_peer_closed(&c->cl)) serve_client(c, now); /* a request in flight is still answered */
}

void calc_proxy_conn_client_timed_out(calc_proxy_conn *c) {
  conn_side_timed_out(&c->cl);
  upstream_end(c, "client gone");
}

void calc_proxy_conn_client_sent(calc_proxy_conn *c, size_t n, uint32_t now) {
  msgq_sent(&c->cl.out, n);
  if (c->cl.held_back) serve_client(c, now); /* the client read: their turn may have come */
}

void calc_proxy_conn_client_writable(calc_proxy_conn *c) { msgq_writable(&c->cl.out); }

void calc_proxy_conn_upstream_connected(calc_proxy_conn *c) {
  if (c->up == UP_CONNECTING) c->up = UP_EXCHANGING;
}

void calc_proxy_conn_upstream_received(calc_proxy_conn *c, const uint8_t *data, size_t len, uint32_t now) {
  if (c->up != UP_EXCHANGING || len == 0) return;
  if (len > calc_proxy_conn_upstream_read_room(c) || calc_framer_feed(&c->up_in, data, len) < 0) {
    upstream_fail(c, CALC_ERR_NOMEM, "out of memory", now);
    return;
  }
  calc_msg m;
  int rc = calc_framer_next(&c->up_in, &m);
  if (rc > 0) {
    got_response(c, &m, now);
  } else if (rc < 0) {
    char msg[120];
    snprintf(msg, sizeof msg, "Invalid response from server: total length %u", m.h.total_len);
    upstream_fail(c, CALC_ERR_BAD_UPSTREAM, msg, now);
  }
}

void calc_proxy_conn_upstream_closed(calc_proxy_conn *c, uint32_t now) {
  if (c->up != UP_CONNECTING && c->up != UP_EXCHANGING) return;
  char msg[160];
  snprintf(msg, sizeof msg, "Connection closed by server after %zu bytes, before a whole response",
           calc_framer_pending(&c->up_in));
  upstream_fail(c, CALC_ERR_CLOSED, msg, now);
}

void calc_proxy_conn_upstream_sent(calc_proxy_conn *c, size_t n) { msgq_sent(&c->fwd, n); }

void calc_proxy_conn_upstream_writable(calc_proxy_conn *c) { msgq_writable(&c->fwd); }

void calc_proxy_conn_upstream_error(calc_proxy_conn *c, calc_err err, const char *detail, uint32_t now) {
  if (c->up == UP_NONE) return;
  if (err != CALC_ERR_REFUSED && err != CALC_ERR_RESET && err != CALC_ERR_TIMEOUT && err != CALC_ERR_NOMEM)
    err = CALC_ERR_SYSTEM; /* whatever else went wrong with the upstream socket */
  char msg[200];
  if (err == CALC_ERR_REFUSED)
    snprintf(msg, sizeof msg, "%s", CALC_PROXY_REFUSED_MSG);
  else if (err == CALC_ERR_RESET)
    snprintf(msg, sizeof msg, "Connection reset by server");
  else if (err == CALC_ERR_TIMEOUT)
    snprintf(msg, sizeof msg, "No response from server within %ld s", c->cfg->upstream_timeout_s);
  else if (c->up != UP_EXCHANGING)
    snprintf(msg, sizeof msg, "Cannot connect to server: %s", detail ? detail : calc_strerror(err));
  else
    snprintf(msg, sizeof msg, "%s", detail ? detail : calc_strerror(err));
  upstream_fail(c, err, msg, now);
}

void calc_proxy_conn_next(calc_proxy_conn *c, calc_proxy_conn_action *a) {
  *a = (calc_proxy_conn_action){.kind = CALC_PROXY_WAIT, .why = CALC_OK};
  if (c->close_up) {
    c->close_up = false;
    a->kind = CALC_PROXY_CLOSE_UPSTREAM;
    return;
  }
  if (msgq_next(&c->cl.out, &a->data, &a->len)) {
    a->kind = CALC_PROXY_SEND_CLIENT;
    return;
  }
  if (c->up == UP_OPEN_ASKED) {
    c->up = UP_CONNECTING;
    a->kind = CALC_PROXY_OPEN_UPSTREAM;
    return;
  }
  if (c->up == UP_EXCHANGING && msgq_next(&c->fwd, &a->data, &a->len)) {
    a->kind = CALC_PROXY_SEND_UPSTREAM;
    return;
  }
  if (c->up == UP_NONE && conn_side_may_close(&c->cl)) {
    a->kind = CALC_PROXY_CLOSE_CLIENT;
    a->why = c->cl.why;
  }
}

size_t calc_proxy_conn_client_read_room(const calc_proxy_conn *c) { return conn_side_read_room(&c->cl); }

size_t calc_proxy_conn_upstream_read_room(const calc_proxy_conn *c) {
  if (c->up != UP_EXCHANGING) return 0;
  return CALC_MAX_MESSAGE - calc_framer_pending(&c->up_in);
}

bool calc_proxy_conn_client_wants_write(const calc_proxy_conn *c) { return msgq_wants_write(&c->cl.out); }

bool calc_proxy_conn_upstream_wants_write(const calc_proxy_conn *c) {
  return c->up == UP_EXCHANGING && msgq_wants_write(&c->fwd);
}

bool calc_proxy_conn_upstream_busy(const calc_proxy_conn *c) { return c->up != UP_NONE; }

size_t calc_proxy_conn_forward_len(const calc_proxy_conn *c) { return msgq_pending(&c->fwd); }

size_t calc_proxy_conn_pending_input(const calc_proxy_conn *c) { return calc_framer_pending(&c->cl.in); }

size_t calc_proxy_conn_pending_output(const calc_proxy_conn *c) { return msgq_pending(&c->cl.out); }
