/* calc/proxy_conn.h: one client connection of the caching proxy, with the upstream connection
 * it opens for each miss, as a machine without I/O (like calc/conn.h for the server).
 *
 * The program feeds it what happened on both sockets and carries out what it asks. Every
 * decision of the reference proxy is made here (docs/protocol.md sections 5 and 6):
 *   - one request at a time; a hit is answered from the cache with the stored bytes, opening
 *     no upstream connection;
 *   - a miss asks for a NEW upstream connection, forwards the re-packed request, reads one
 *     whole response, asks to CLOSE THE UPSTREAM CONNECTION, and only then queues the answer
 *     for the client (the captures show the proxy's FIN to the server before its reply);
 *   - the upstream refusing the connection gives the reference's 170-byte 500; a reset, a
 *     timeout, garbage or an early close give the proxy's own 500 saying what happened;
 *   - a bad total length from the client is answered and the client closed; bytes that never
 *     became a request when the client closes are answered "too short", then closed.
 * Buffers are bounded like calc_conn's: a client that sends without reading stops being read. */
#ifndef CALC_PROXY_CONN_H
#define CALC_PROXY_CONN_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "calc/cache.h"
#include "calc/conn.h"
#include "calc/err.h"
#include "calc/wire.h"

/* Told as things happen, for the logs; any may be NULL. `user` is calc_proxy_conn_new's. */
typedef struct calc_proxy_callbacks {
  void (*on_request)(void *user, const calc_msg *m);
  /* The upstream exchange ended (CLOSE_UPSTREAM follows): "response received", "client gone"
   * or what went wrong. */
  void (*on_upstream_closed)(void *user, const char *reason);
  /* A cache decision: outcome "hit", "stale", "miss_cached" or "miss_not_cached", with the
   * reference's log text ("Cache hit", ...) and the entry's remaining times. */
  void (*on_cache)(void *user, const char *outcome, const char *text, const calc_cache_times *t);
  /* The proxy answers with its own 500: CalculatorServerError('Internal proxy error', <cls>(msg)),
   * cls the reference's class for the error (calc_err_reference). */
  void (*on_proxy_error)(void *user, const char *inner_cls, const char *msg);
  /* An answer of len bytes with that status was queued for the client. */
  void (*on_answer)(void *user, size_t len, unsigned status);
} calc_proxy_callbacks;

/* Shared by the connections of the proxy; must outlive them. */
typedef struct calc_proxy_config {
  calc_cache *cache;
  calc_conn_limits limits;          /* the client side's buffer caps, as for calc_conn */
  long upstream_timeout_s;          /* quoted in the timeout answer */
  calc_proxy_callbacks cb;
} calc_proxy_config;

typedef struct calc_proxy_conn calc_proxy_conn;

typedef enum {
  CALC_PROXY_WAIT,            /* nothing to do until the next event */
  CALC_PROXY_SEND_CLIENT,     /* write data/len (the rest of one message) to the client, then
                                 calc_proxy_conn_client_sent */
  CALC_PROXY_OPEN_UPSTREAM,   /* start a non-blocking connect to the server; report how it goes
                                 with upstream_connected / upstream_error */
  CALC_PROXY_SEND_UPSTREAM,   /* write data/len to the server, then calc_proxy_conn_upstream_sent */
  CALC_PROXY_CLOSE_UPSTREAM,  /* close the upstream socket (if one was made) */
  CALC_PROXY_CLOSE_CLIENT     /* close the client socket (after which only calc_proxy_conn_free);
                                 why: CALC_ERR_CLOSED, CALC_ERR_INVALID (framing error),
                                 CALC_ERR_TIMEOUT, CALC_ERR_NOMEM or CALC_ERR_LIMIT */
} calc_proxy_conn_action_kind;

typedef struct calc_proxy_conn_action {
  calc_proxy_conn_action_kind kind;
  const uint8_t *data;        /* SEND_*: valid until the next call on the connection */
  size_t len;
  calc_err why;               /* CLOSE_CLIENT */
} calc_proxy_conn_action;

/* NULL when memory is exhausted. cfg is kept. */
calc_proxy_conn *calc_proxy_conn_new(const calc_proxy_config *cfg, void *user);
void calc_proxy_conn_free(calc_proxy_conn *c);   /* NULL is fine */

/* Client events (`now`: unix seconds, for cache ages and the answers' time stamps). */
/* len must not pass calc_proxy_conn_client_read_room. */
void calc_proxy_conn_client_received(calc_proxy_conn *c, const uint8_t *data, size_t len, uint32_t now);
void calc_proxy_conn_client_closed(calc_proxy_conn *c, uint32_t now);  /* the client's FIN */
void calc_proxy_conn_client_timed_out(calc_proxy_conn *c);             /* silent too long: close */
void calc_proxy_conn_client_sent(calc_proxy_conn *c, size_t n, uint32_t now);
void calc_proxy_conn_client_writable(calc_proxy_conn *c);

/* Upstream events. */
void calc_proxy_conn_upstream_connected(calc_proxy_conn *c);
void calc_proxy_conn_upstream_received(calc_proxy_conn *c, const uint8_t *data, size_t len, uint32_t now);
void calc_proxy_conn_upstream_closed(calc_proxy_conn *c, uint32_t now);  /* the server's FIN */
void calc_proxy_conn_upstream_sent(calc_proxy_conn *c, size_t n);
void calc_proxy_conn_upstream_writable(calc_proxy_conn *c);
/* The upstream connection failed: CALC_ERR_REFUSED (the server refused it: the reference's
 * answer), CALC_ERR_RESET, CALC_ERR_TIMEOUT (no answer within upstream_timeout_s),
 * CALC_ERR_NOMEM, or CALC_ERR_SYSTEM (any other value counts as it) with detail (the system's
 * words, e.g. strerror) quoted in the answer. */
void calc_proxy_conn_upstream_error(calc_proxy_conn *c, calc_err err, const char *detail, uint32_t now);

/* What to do next: call until WAIT (or CLOSE_CLIENT). */
void calc_proxy_conn_next(calc_proxy_conn *c, calc_proxy_conn_action *a);

size_t calc_proxy_conn_client_read_room(const calc_proxy_conn *c);
size_t calc_proxy_conn_upstream_read_room(const calc_proxy_conn *c);
bool calc_proxy_conn_client_wants_write(const calc_proxy_conn *c);
bool calc_proxy_conn_upstream_wants_write(const calc_proxy_conn *c);
/* An upstream exchange is in flight (its own timeout applies, not the client's idle one). */
bool calc_proxy_conn_upstream_busy(const calc_proxy_conn *c);
/* The request being forwarded (for the log), 0 when none. */
size_t calc_proxy_conn_forward_len(const calc_proxy_conn *c);
size_t calc_proxy_conn_pending_input(const calc_proxy_conn *c);
size_t calc_proxy_conn_pending_output(const calc_proxy_conn *c);

#endif
