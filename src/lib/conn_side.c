/* conn_side.c: the client side shared by the connection machines (see conn_side_internal.h). */
#include "conn_side_internal.h"

#include "calc/limits.h"

static size_t at_least_a_message(size_t n) { return n < CALC_MAX_MESSAGE ? CALC_MAX_MESSAGE : n; }

void conn_side_init(conn_side *s, const calc_conn_limits *lim) {
  s->max_input = at_least_a_message(lim->max_input);
  s->max_output = at_least_a_message(lim->max_output);
  calc_framer_init(&s->in, s->max_input);
  msgq_init(&s->out, s->max_output); /* answers are only made while less than max_output waits */
  s->eof = s->done = s->close_now = s->held_back = false;
  s->why = CALC_OK;
}

void conn_side_free(conn_side *s) {
  calc_framer_free(&s->in);
  msgq_free(&s->out);
}

void conn_side_finish(conn_side *s, calc_err why, bool now) {
  if (!s->done) s->why = why;
  s->done = true;
  s->close_now = s->close_now || now;
}

void conn_side_answer_failed(conn_side *s, size_t at) {
  msgq_undo(&s->out, at);
  conn_side_finish(s, CALC_ERR_NOMEM, true);
}

void conn_side_timed_out(conn_side *s) {
  s->done = s->close_now = true;
  s->why = CALC_ERR_TIMEOUT;
}

size_t conn_side_read_room(const conn_side *s) {
  size_t pending = calc_framer_pending(&s->in);
  if (s->done || s->eof || pending >= s->max_input) return 0;
  return s->max_input - pending;
}

int conn_side_received(conn_side *s, const uint8_t *data, size_t len) {
  if (s->done || s->eof || len == 0) return 0;
  if (len > conn_side_read_room(s)) {
    conn_side_finish(s, CALC_ERR_LIMIT, true);
    return -1;
  }
  if (calc_framer_feed(&s->in, data, len) < 0) {
    conn_side_finish(s, CALC_ERR_NOMEM, true);
    return -1;
  }
  return 1;
}

bool conn_side_peer_closed(conn_side *s) {
  if (s->eof) return false;
  s->eof = true;
  return true;
}

bool conn_side_waits_for_reader(const conn_side *s, int rc) {
  return !s->done && rc != 0 && msgq_pending(&s->out) >= s->max_output;
}

bool conn_side_may_close(const conn_side *s) {
  return s->done && (s->close_now || msgq_pending(&s->out) == 0);
}
