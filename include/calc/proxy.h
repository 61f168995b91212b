/* calc/proxy.h: the caching proxy's per-request decisions, with no I/O (docs/protocol.md sections
 * 5 and 6).
 *
 * For each framed client request calc_proxy_on_request says what to do (answer from the cache,
 * or forward upstream on a new connection); calc_proxy_on_response offers the upstream's answer
 * to the cache; calc_proxy_error builds the proxy's own failures. calc_proxy_conn
 * (calc/proxy_conn.h) runs a whole client connection on them. */
#ifndef CALC_PROXY_H
#define CALC_PROXY_H
#include <stdbool.h>
#include <stdint.h>
#include "calc/buf.h"
#include "calc/cache.h"
#include "calc/wire.h"

/* The inner message of the reference's answer when the server refuses the connection. */
#define CALC_PROXY_REFUSED_MSG \
  "Connection refused by server and the request was not in the cache/it was stale"

typedef enum { CALC_PROXY_ANSWER, CALC_PROXY_FORWARD } calc_proxy_action;

typedef struct calc_proxy_decision {
  calc_proxy_action action;
  calc_cache_outcome outcome;   /* HIT (then ANSWER), MISS, STALE or RELOAD (then FORWARD) */
  calc_cache_times times;       /* the stored entry's times, for HIT and STALE */
} calc_proxy_decision;

/* Decides for one framed client request m. ANSWER: appends the stored response, bytes unchanged
 * (original time stamp included), to out. FORWARD: appends the request to send upstream,
 * re-packed as the reference does (normalised header, time `now`, same payload).
 * 0, or -1 when memory is exhausted. */
int calc_proxy_on_request(calc_cache *cache, const calc_msg *m, uint32_t now, calc_buf *out,
                          calc_proxy_decision *d);

/* Offers the server's response resp to request (req, payload) to the cache, as calc_cache_offer
 * does, except that an answer the server gave for lack of memory (a 400 MemoryError) is never
 * stored: the same request may well succeed once memory is back. t gets the response's times.
 * Returns true if stored. */
bool calc_proxy_on_response(calc_cache *cache, const calc_header *req, const uint8_t *payload, size_t len,
                            const uint8_t *resp, size_t resp_len, uint32_t now, calc_cache_times *t);

/* The proxy's own 500 answer appended to out: api.CalculatorServerError('Internal proxy error',
 * api.<inner_cls>(inner_msg)) with C clear and max-age 0 (170 bytes for the refused case).
 * 0 or -1. */
int calc_proxy_error(const char *inner_cls, const char *inner_msg, uint32_t now, calc_buf *out);

#endif
