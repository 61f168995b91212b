/* stream.h: a non-blocking byte stream carrying calculator messages.
 *
 * Input goes through calc_framer (messages may arrive split or several per read). Output is
 * written with ONE send per message whenever nothing is queued, so captures keep one PSH
 * segment per message (protocol.md section 1); a partial send queues the rest and asks for
 * EPOLLOUT only while bytes wait (style.md checklist item 5).
 *
 * A stream sits on an idle list (idle.h) through its idle node, whose owner is the stream's. */
#ifndef CALC_NET_STREAM_H
#define CALC_NET_STREAM_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "calc/buf.h"
#include "calc/wire.h"
#include "idle.h"
#include "loop.h"

typedef struct stream {
  watcher w;
  calc_framer in;
  calc_buf out;
  size_t out_off;
  bool eof;             /* the peer closed its side */
  idle_node idle;
} stream;

void stream_init(stream *s);
void stream_free(stream *s);   /* buffers only; the fd is closed with loop_close */

/* Reads everything available into the framer. Returns 1 if bytes arrived, 0 if none, -1 on a
 * socket error (errno). Sets s->eof when the peer closed. */
int stream_read(stream *s);
/* Sends one whole message; 0 or -1 (socket error or no memory). */
int stream_send(loop *l, stream *s, const uint8_t *msg, size_t len);
/* On EPOLLOUT: writes queued bytes. 0 or -1. */
int stream_flush(loop *l, stream *s);
bool stream_pending_output(const stream *s);

#endif
