/* msgq.c: the queue of whole messages to send (see msgq_internal.h). */
#include "msgq_internal.h"

#include "calc/limits.h"
#include "calc/wire.h"

void msgq_init(msgq *q, size_t max_queued) {
  calc_buf_init(&q->buf, 2 * max_queued + CALC_MAX_MESSAGE);
  q->off = q->msg_end = 0;
  q->blocked = false;
}

void msgq_free(msgq *q) { calc_buf_free(&q->buf); }

size_t msgq_pending(const msgq *q) { return q->buf.len - q->off; }

calc_buf *msgq_tail(msgq *q) {
  if (q->off && q->off >= msgq_pending(q)) {
    calc_buf_consume(&q->buf, q->off);
    q->msg_end = q->msg_end > q->off ? q->msg_end - q->off : 0;
    q->off = 0;
  }
  return &q->buf;
}

void msgq_undo(msgq *q, size_t len) {
  q->buf.len = len;
  q->buf.failed = CALC_OK;
}

bool msgq_next(msgq *q, const uint8_t **data, size_t *len) {
  if (!msgq_pending(q) || q->blocked) return false;
  if (q->msg_end <= q->off) {
    calc_header h;
    ssize_t n = calc_frame_parse(q->buf.data + q->off, msgq_pending(q), &h);
    q->msg_end = n > 0 ? q->off + (size_t)n : q->buf.len;
  }
  *data = q->buf.data + q->off;
  *len = q->msg_end - q->off;
  return true;
}

void msgq_sent(msgq *q, size_t n) {
  size_t offered = (q->msg_end > q->off ? q->msg_end : q->buf.len) - q->off;
  if (n > offered) n = offered;
  q->off += n;
  if (n < offered) q->blocked = true;
  if (q->off == q->buf.len) {
    calc_buf_reset(&q->buf);
    q->off = q->msg_end = 0;
  }
}

void msgq_writable(msgq *q) { q->blocked = false; }

bool msgq_wants_write(const msgq *q) { return q->blocked && msgq_pending(q) > 0; }
