/* conn.c: one server connection as a machine without I/O (see calc/conn.h). */
#include "calc/conn.h"

#include "calc/alloc.h"
#include "conn_side_internal.h"

struct calc_conn {
  const calc_conn_config *cfg;
  void *user;
  conn_side s;         /* the client's requests and their answers */
};

calc_conn *calc_conn_new(const calc_conn_config *cfg, void *user) {
  calc_conn *c = calc_calloc(1, sizeof *c);
  if (!c) return NULL;
  c->cfg = cfg;
  c->user = user;
  conn_side_init(&c->s, &cfg->limits);
  return c;
}

void calc_conn_free(calc_conn *c) {
  if (!c) return;
  conn_side_free(&c->s);
  calc_free(c);
}

size_t calc_conn_pending_input(const calc_conn *c) { return calc_framer_pending(&c->s.in); }

size_t calc_conn_pending_output(const calc_conn *c) { return msgq_pending(&c->s.out); }

static void answered(calc_conn *c, size_t at, const calc_answer_info *info) {
  if (c->cfg->cb.on_answer) c->cfg->cb.on_answer(c->user, c->s.out.buf.len - at, info);
}

/* The reference's "too short" 500 for bytes that never became a whole message. */
static void answer_truncated(calc_conn *c, uint32_t now) {
  size_t pending = calc_framer_pending(&c->s.in);
  calc_header h = {0};
  unsigned claimed = calc_header_decode(calc_framer_rest(&c->s.in), pending, &h) > 0 ? h.total_len : 0;
  calc_buf *out = msgq_tail(&c->s.out);
  size_t at = out->len;
  calc_answer_info info = {0};
  if (calc_server_answer_truncated(&c->cfg->answer, pending, claimed, now, out, &info) < 0) {
    conn_side_answer_failed(&c->s, at);
    return;
  }
  answered(c, at, &info);
}

/* Answers the whole requests buffered, in order, while fewer than max_output bytes wait. */
static void answer_buffered(calc_conn *c, uint32_t now) {
  int rc = 1;
  while (!c->s.done && calc_conn_pending_output(c) < c->s.max_output) {
    calc_msg m;
    rc = calc_framer_next(&c->s.in, &m);
    if (rc == 0) break;
    calc_buf *out = msgq_tail(&c->s.out);
    size_t at = out->len;
    calc_answer_info info = {0};
    int built;
    if (rc < 0) {
      /* A total length under 12 cannot be resynchronised: answer, then close. */
      if (c->cfg->cb.on_bad_length)
        c->cfg->cb.on_bad_length(c->user, calc_framer_pending(&c->s.in), m.h.total_len);
      built = calc_server_answer_bad_length(&c->cfg->answer, m.h.total_len, now, out, &info);
      conn_side_finish(&c->s, CALC_ERR_INVALID, false);
    } else {
      if (c->cfg->cb.on_request) c->cfg->cb.on_request(c->user, &m);
      built = calc_server_answer_memo(&c->cfg->answer, c->cfg->memo, &m, now, out, &info);
    }
    if (built < 0) {
      conn_side_answer_failed(&c->s, at);
      return;
    }
    answered(c, at, &info);
  }
  c->s.held_back = conn_side_waits_for_reader(&c->s, rc);
  if (c->s.eof && !c->s.done && rc == 0) {
    /* Everything whole is answered and the peer sends no more. */
    if (calc_framer_pending(&c->s.in)) answer_truncated(c, now);
    conn_side_finish(&c->s, CALC_ERR_CLOSED, false);
  }
}

size_t calc_conn_read_room(const calc_conn *c) { return conn_side_read_room(&c->s); }

bool calc_conn_wants_read(const calc_conn *c) { return calc_conn_read_room(c) > 0; }

bool calc_conn_wants_write(const calc_conn *c) { return msgq_wants_write(&c->s.out); }

void calc_conn_received(calc_conn *c, const uint8_t *data, size_t len, uint32_t now) {
  if (conn_side_received(&c->s, data, len) > 0) answer_buffered(c, now);
}

void calc_conn_peer_closed(calc_conn *c, uint32_t now) {
  if (conn_side_peer_closed(&c->s)) answer_buffered(c, now);
}

void calc_conn_timed_out(calc_conn *c, uint32_t now) {
  /* A stalled partial message is answered; requests held back behind unread answers are not
   * (that client is not reading). */
  if (!c->s.done && calc_conn_pending_output(c) == 0 && calc_framer_pending(&c->s.in)) answer_truncated(c, now);
  conn_side_timed_out(&c->s);
}

void calc_conn_sent(calc_conn *c, size_t n, uint32_t now) {
  msgq_sent(&c->s.out, n);
  if (c->s.held_back) answer_buffered(c, now); /* the peer read: their turn may have come */
}

void calc_conn_writable(calc_conn *c) { msgq_writable(&c->s.out); }

void calc_conn_next(calc_conn *c, calc_conn_action *a) {
  a->data = NULL;
  a->len = 0;
  a->why = CALC_OK;
  if (msgq_next(&c->s.out, &a->data, &a->len)) {
    a->kind = CALC_CONN_SEND;
    return;
  }
  if (conn_side_may_close(&c->s)) {
    a->kind = CALC_CONN_CLOSE;
    a->why = c->s.why;
    return;
  }
  a->kind = CALC_CONN_WAIT;
}
