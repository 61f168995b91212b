/* conn.c: one server connection as a machine without I/O (see calc/conn.h). */
#include "calc/conn.h"

#include "calc/alloc.h"
#include "msgq_internal.h"

struct calc_conn {
  const calc_conn_config *cfg;
  void *user;
  calc_framer in;
  msgq out;            /* answers not sent yet */
  size_t max_input, max_output;
  bool eof;            /* the peer closed its side */
  bool done;           /* no more requests are answered: CLOSE once the output is out */
  bool close_now;      /* CLOSE without waiting for the peer to read the rest */
  bool held_back;      /* requests wait for the peer to read answers (max_output reached) */
  calc_err why;        /* the reason of the CLOSE to come, once done */
};

static size_t at_least_a_message(size_t n) { return n < CALC_MAX_MESSAGE ? CALC_MAX_MESSAGE : n; }

calc_conn *calc_conn_new(const calc_conn_config *cfg, void *user) {
  calc_conn *c = calc_calloc(1, sizeof *c);
  if (!c) return NULL;
  c->cfg = cfg;
  c->user = user;
  c->max_input = at_least_a_message(cfg->limits.max_input);
  c->max_output = at_least_a_message(cfg->limits.max_output);
  calc_framer_init(&c->in, c->max_input);
  msgq_init(&c->out, c->max_output); /* answers are only made while less than max_output waits */
  c->why = CALC_OK;
  return c;
}

void calc_conn_free(calc_conn *c) {
  if (!c) return;
  calc_framer_free(&c->in);
  msgq_free(&c->out);
  calc_free(c);
}

size_t calc_conn_pending_input(const calc_conn *c) { return calc_framer_pending(&c->in); }

size_t calc_conn_pending_output(const calc_conn *c) { return msgq_pending(&c->out); }

static void finish(calc_conn *c, calc_err why, bool now) {
  if (!c->done) c->why = why;
  c->done = true;
  c->close_now = c->close_now || now;
}

/* An answer that could not be built leaves nothing behind in the queue. */
static void answer_failed(calc_conn *c, size_t at) {
  msgq_undo(&c->out, at);
  finish(c, CALC_ERR_NOMEM, true);
}

static void answered(calc_conn *c, size_t at, const calc_answer_info *info) {
  if (c->cfg->cb.on_answer) c->cfg->cb.on_answer(c->user, c->out.buf.len - at, info);
}

/* The reference's "too short" 500 for bytes that never became a whole message. */
static void answer_truncated(calc_conn *c, uint32_t now) {
  size_t pending = calc_framer_pending(&c->in);
  calc_header h = {0};
  unsigned claimed = calc_header_decode(calc_framer_rest(&c->in), pending, &h) > 0 ? h.total_len : 0;
  calc_buf *out = msgq_tail(&c->out);
  size_t at = out->len;
  calc_answer_info info = {0};
  if (calc_server_answer_truncated(&c->cfg->answer, pending, claimed, now, out, &info) < 0) {
    answer_failed(c, at);
    return;
  }
  answered(c, at, &info);
}

/* Answers the whole requests buffered, in order, while fewer than max_output bytes wait. */
static void answer_buffered(calc_conn *c, uint32_t now) {
  int rc = 1;
  while (!c->done && calc_conn_pending_output(c) < c->max_output) {
    calc_msg m;
    rc = calc_framer_next(&c->in, &m);
    if (rc == 0) break;
    calc_buf *out = msgq_tail(&c->out);
    size_t at = out->len;
    calc_answer_info info = {0};
    int built;
    if (rc < 0) {
      /* A total length under 12 cannot be resynchronised: answer, then close. */
      if (c->cfg->cb.on_bad_length)
        c->cfg->cb.on_bad_length(c->user, calc_framer_pending(&c->in), m.h.total_len);
      built = calc_server_answer_bad_length(&c->cfg->answer, m.h.total_len, now, out, &info);
      finish(c, CALC_ERR_INVALID, false);
    } else {
      if (c->cfg->cb.on_request) c->cfg->cb.on_request(c->user, &m);
      built = calc_server_answer_memo(&c->cfg->answer, c->cfg->memo, &m, now, out, &info);
    }
    if (built < 0) {
      answer_failed(c, at);
      return;
    }
    answered(c, at, &info);
  }
  c->held_back = !c->done && rc != 0 && calc_conn_pending_output(c) >= c->max_output;
  if (c->eof && !c->done && rc == 0) {
    /* Everything whole is answered and the peer sends no more. */
    if (calc_framer_pending(&c->in)) answer_truncated(c, now);
    finish(c, CALC_ERR_CLOSED, false);
  }
}

size_t calc_conn_read_room(const calc_conn *c) {
  size_t pending = calc_framer_pending(&c->in);
  if (c->done || c->eof || pending >= c->max_input) return 0;
  return c->max_input - pending;
}

bool calc_conn_wants_read(const calc_conn *c) { return calc_conn_read_room(c) > 0; }

bool calc_conn_wants_write(const calc_conn *c) { return msgq_wants_write(&c->out); }

void calc_conn_received(calc_conn *c, const uint8_t *data, size_t len, uint32_t now) {
  if (c->done || c->eof || len == 0) return;
  if (len > calc_conn_read_room(c)) {
    finish(c, CALC_ERR_LIMIT, true);
    return;
  }
  if (calc_framer_feed(&c->in, data, len) < 0) {
    finish(c, CALC_ERR_NOMEM, true);
    return;
  }
  answer_buffered(c, now);
}

void calc_conn_peer_closed(calc_conn *c, uint32_t now) {
  if (c->eof) return;
  c->eof = true;
  answer_buffered(c, now);
}

void calc_conn_timed_out(calc_conn *c, uint32_t now) {
  /* A stalled partial message is answered; requests held back behind unread answers are not
   * (that client is not reading). */
  if (!c->done && calc_conn_pending_output(c) == 0 && calc_framer_pending(&c->in)) answer_truncated(c, now);
  c->done = c->close_now = true;
  c->why = CALC_ERR_TIMEOUT;
}

void calc_conn_sent(calc_conn *c, size_t n, uint32_t now) {
  msgq_sent(&c->out, n);
  if (c->held_back) answer_buffered(c, now); /* the peer read: their turn may have come */
}

void calc_conn_writable(calc_conn *c) { msgq_writable(&c->out); }

void calc_conn_next(calc_conn *c, calc_conn_action *a) {
  a->data = NULL;
  a->len = 0;
  a->why = CALC_OK;
  if (msgq_next(&c->out, &a->data, &a->len)) {
    a->kind = CALC_CONN_SEND;
    return;
  }
  if (c->done && (c->close_now || calc_conn_pending_output(c) == 0)) {
    a->kind = CALC_CONN_CLOSE;
    a->why = c->why;
    return;
  }
  a->kind = CALC_CONN_WAIT;
}
