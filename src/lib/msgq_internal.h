/* msgq_internal.h: a queue of whole messages waiting to be sent on one socket (not public API;
 * shared by conn.c and proxy_conn.c).
 *
 * Each message is offered on its own, so the program sends one message per write and captures
 * keep one PSH segment per message (docs/protocol.md section 1). Every message queued is whole, so
 * its own header says where it ends. The sent front is dropped once it is at least as long as
 * the unsent rest, so each byte is moved at most once; with messages only queued while fewer
 * than `max_queued` bytes wait, the buffer never needs more than 2 x max_queued + one message. */
#ifndef CALC_MSGQ_INTERNAL_H
#define CALC_MSGQ_INTERNAL_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "calc/buf.h"

typedef struct msgq {
  calc_buf buf;        /* buf.data[off..len) is not sent yet */
  size_t off;
  size_t msg_end;      /* end of the message being sent (<= off: none begun) */
  bool blocked;        /* the socket took less than it was offered */
} msgq;

void msgq_init(msgq *q, size_t max_queued);
void msgq_free(msgq *q);
size_t msgq_pending(const msgq *q);
/* The buffer to append whole messages to (after dropping the sent front when it is worth it).
 * A failed append must be undone with msgq_undo(q, the length before). */
calc_buf *msgq_tail(msgq *q);
void msgq_undo(msgq *q, size_t len);
/* The rest of the message being sent; false when nothing waits or the socket is full. */
bool msgq_next(msgq *q, const uint8_t **data, size_t *len);
/* The socket took n bytes of what msgq_next offered; less than offered means it is full. */
void msgq_sent(msgq *q, size_t n);
void msgq_writable(msgq *q);
bool msgq_wants_write(const msgq *q);

#endif
