/* calc/conn.h: one server connection as a machine without I/O (in the manner of nghttp2's
 * session).
 *
 * The program feeds it what happened on the socket (bytes read, the peer's FIN, an idle
 * timeout, how much of an answer the socket took) and asks it what to do next (send these
 * bytes, close). Every protocol and teardown decision of the reference server is made here:
 * requests are answered in order, one message per send; a total length under 12 is answered
 * with the reference's 500 and the connection closes once the answer is out; bytes that never
 * became a whole message when the peer closes (or goes silent) are answered with the
 * reference's "too short" 500; the peer's FIN leads the teardown (docs/protocol.md section 6).
 *
 * Buffers are bounded per connection (calc_conn_limits): a client that sends without reading
 * stops being answered once its queued answers reach max_output, and stops being read once
 * max_input bytes of its requests wait, so it holds at most
 * max_input + max_output + CALC_MAX_MESSAGE bytes of the server, however much it sends. */
#ifndef CALC_CONN_H
#define CALC_CONN_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "calc/err.h"
#include "calc/server.h"
#include "calc/wire.h"

/* Both at least CALC_MAX_MESSAGE (smaller values are raised to it: a whole message must fit). */
typedef struct calc_conn_limits {
  size_t max_input;   /* bytes received and not yet answered */
  size_t max_output;  /* bytes of answers queued for the peer before no more are made */
} calc_conn_limits;

#define CALC_CONN_DEFAULT_MAX_INPUT (256u << 10)
#define CALC_CONN_DEFAULT_MAX_OUTPUT (256u << 10)

/* Told as things happen, for the logs; any may be NULL. `user` is calc_conn_new's. */
typedef struct calc_conn_callbacks {
  /* A whole request was framed and is about to be answered. */
  void (*on_request)(void *user, const calc_msg *m);
  /* A header announced total_len < 12 with `buffered` bytes received: answered, then closed. */
  void (*on_bad_length)(void *user, size_t buffered, unsigned total_len);
  /* An answer of `len` bytes was queued. */
  void (*on_answer)(void *user, size_t len, const calc_answer_info *info);
} calc_conn_callbacks;

/* Shared by the connections of one event loop; must outlive them. memo may be NULL. */
typedef struct calc_conn_config {
  calc_server_opts answer;
  calc_conn_limits limits;
  calc_answer_memo *memo;
  calc_conn_callbacks cb;
} calc_conn_config;

typedef struct calc_conn calc_conn;

typedef enum {
  CALC_CONN_WAIT,   /* nothing to do until the next event */
  CALC_CONN_SEND,   /* write data/len (the rest of one message) and report it with calc_conn_sent */
  CALC_CONN_CLOSE   /* close the socket; why: CALC_ERR_CLOSED (the peer's FIN), CALC_ERR_INVALID
                       (framing error), CALC_ERR_TIMEOUT or CALC_ERR_NOMEM */
} calc_conn_action_kind;

typedef struct calc_conn_action {
  calc_conn_action_kind kind;
  const uint8_t *data;   /* SEND: valid until the next call on the connection */
  size_t len;
  calc_err why;          /* CLOSE */
} calc_conn_action;

/* A new connection with empty buffers, or NULL when memory is exhausted. cfg is kept. */
calc_conn *calc_conn_new(const calc_conn_config *cfg, void *user);
void calc_conn_free(calc_conn *c);   /* NULL is fine */

/* Events. `now` (unix seconds) stamps the answers made in response. */
/* Bytes read from the peer; len must not pass calc_conn_read_room. Answers every whole request
 * while the output queue has room. */
void calc_conn_received(calc_conn *c, const uint8_t *data, size_t len, uint32_t now);
/* The peer closed its side: the requests still buffered are answered, then a partial message
 * gets the "too short" answer, then CLOSE once everything is sent. */
void calc_conn_peer_closed(calc_conn *c, uint32_t now);
/* The connection stayed silent too long: a partial message gets the "too short" answer, which
 * is sent if the socket takes it at once; then CLOSE. */
void calc_conn_timed_out(calc_conn *c, uint32_t now);
/* The socket took n bytes of the last SEND (n may be less than its len: then the socket is
 * full, and no SEND is asked for until calc_conn_writable). */
void calc_conn_sent(calc_conn *c, size_t n, uint32_t now);
/* The socket can take bytes again. */
void calc_conn_writable(calc_conn *c);

/* What to do next: call until it says WAIT (or CLOSE, after which only calc_conn_free). */
void calc_conn_next(calc_conn *c, calc_conn_action *a);

/* How many bytes may be read now: 0 while the input buffer is full (backpressure), after the
 * peer closed, or once the connection is closing. */
size_t calc_conn_read_room(const calc_conn *c);
/* Whether the socket should be watched for reading / for writability. */
bool calc_conn_wants_read(const calc_conn *c);
bool calc_conn_wants_write(const calc_conn *c);
/* Bytes received that are not answered yet (a partial message, or requests held back). */
size_t calc_conn_pending_input(const calc_conn *c);
/* Bytes of answers not sent yet. */
size_t calc_conn_pending_output(const calc_conn *c);

#endif
