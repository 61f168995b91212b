/* conn_side_internal.h: the client side of a connection machine (not public API; shared by
 * conn.c and proxy_conn.c).
 *
 * Both the server's and the proxy's connection read requests from one peer into a bounded
 * framer, queue whole answers for it in a bounded msgq, and close it the same ways: after the
 * peer's FIN once everything is out, at once on a limit or a failed allocation, or on an idle
 * timeout. This is that part, with the caps of calc_conn_limits (each at least one message). */
#ifndef CALC_CONN_SIDE_INTERNAL_H
#define CALC_CONN_SIDE_INTERNAL_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "calc/conn.h"
#include "calc/err.h"
#include "calc/wire.h"
#include "msgq_internal.h"

typedef struct conn_side {
  calc_framer in;      /* the peer's requests */
  msgq out;            /* answers not sent yet */
  size_t max_input, max_output;
  bool eof;            /* the peer closed its side */
  bool done;           /* no more requests are answered: close once the output is out */
  bool close_now;      /* close without waiting for the peer to read the rest */
  bool held_back;      /* requests wait for the peer to read answers (max_output reached) */
  calc_err why;        /* the reason of the close to come, once done */
} conn_side;

/* Empty buffers within lim's caps; conn_side_free releases them. */
void conn_side_init(conn_side *s, const calc_conn_limits *lim);
void conn_side_free(conn_side *s);

/* No more requests are answered; the first reason given is the one kept. `now`: close without
 * waiting for the peer to read what is queued. */
void conn_side_finish(conn_side *s, calc_err why, bool now);
/* An answer appended to msgq_tail(&s->out) from length `at` could not be built: it leaves
 * nothing behind, and the connection closes at once. */
void conn_side_answer_failed(conn_side *s, size_t at);
/* Idle too long: close at once, whatever was decided before. */
void conn_side_timed_out(conn_side *s);

/* Bytes read from the peer. Returns 1 when they were buffered (answer what is whole now), 0
 * when ignored (nothing, or the connection no longer reads), -1 when they broke a cap or
 * could not be stored (the connection is finished, closing at once). */
int conn_side_received(conn_side *s, const uint8_t *data, size_t len);
/* The peer's FIN: false when it was already told. */
bool conn_side_peer_closed(conn_side *s);

/* How many bytes may be read now: 0 while the input is full, after the FIN or once done. */
size_t conn_side_read_room(const conn_side *s);
/* After a round of answering that stopped with calc_framer_next's rc (0: nothing whole left):
 * whether requests wait only because max_output bytes of answers do. */
bool conn_side_waits_for_reader(const conn_side *s, int rc);
/* Finished, and either closing at once or with every answer out. */
bool conn_side_may_close(const conn_side *s);

#endif
