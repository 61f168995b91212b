/* stream.h: a non-blocking byte stream carrying calculator messages.
 *
 * Input goes through calc_framer (messages may arrive split or several per read). Output is
 * written with ONE send per message whenever nothing is queued, so captures keep one PSH
 * segment per message (protocol.md section 1); a partial send queues the rest and asks for
 * EPOLLOUT only while bytes wait (style.md checklist item 5).
 *
 * Streams sit on an idle list ordered by last activity: with one timeout per list, moving a
 * stream to the tail on activity keeps the list sorted, so expiry is O(1) per check. */
#ifndef CALC_NET_STREAM_H
#define CALC_NET_STREAM_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "calc/buf.h"
#include "calc/wire.h"
#include "loop.h"

typedef struct stream stream;
typedef struct idle_list {
  stream *head, *tail;
  size_t count;
} idle_list;

struct stream {
  watcher w;
  calc_framer in;
  calc_buf out;
  size_t out_off;
  bool eof;             /* the peer closed its side */
  uint64_t last_ms;
  idle_list *list;
  stream *prev, *next;
};

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

void idle_touch(idle_list *list, stream *s, uint64_t now_ms); /* (re)append at the tail */
void idle_remove(stream *s);
/* The stream idle longest if its last activity is older than now - timeout, else NULL. */
stream *idle_expired(idle_list *list, uint64_t now_ms, uint64_t timeout_ms);

#endif
