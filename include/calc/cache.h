/* calc/cache.h: the proxy's response cache with the reference's rules (docs/protocol.md section 5),
 * bounded in bytes with LRU eviction. No I/O and no clock: callers pass `now`.
 *
 * Key: the request payload bytes together with the S flag. Age = now - the cached response's
 * time stamp (the server's clock). Remaining times: response cache control - age (server) and
 * request cache control - age (client); 65535 counts as infinity. */
#ifndef CALC_CACHE_H
#define CALC_CACHE_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "calc/wire.h"

typedef struct calc_cache calc_cache;

typedef enum {
  CALC_CACHE_HIT,     /* answer from the cache */
  CALC_CACHE_MISS,    /* nothing stored under this key */
  CALC_CACHE_STALE,   /* stored but too old for the server's or the client's max-age: dropped */
  CALC_CACHE_RELOAD   /* request cache control 0: the cache is not read */
} calc_cache_outcome;

typedef struct calc_cache_times {
  double server_remaining;  /* seconds; INFINITY for 65535 */
  double client_remaining;
} calc_cache_times;

/* NULL on allocation failure. max_bytes bounds keys + responses + per-entry overhead. */
calc_cache *calc_cache_new(size_t max_bytes);
void calc_cache_free(calc_cache *c);

/* Looks the request up. On HIT, resp and resp_len point at the stored response message (valid
 * until the next cache call) and the entry becomes most recently used. t is filled for HIT and
 * STALE (the stored entry's times). A STALE entry is removed. */
calc_cache_outcome calc_cache_lookup(calc_cache *c, const calc_header *req, const uint8_t *payload,
                                     size_t len, uint32_t now, const uint8_t **resp,
                                     size_t *resp_len, calc_cache_times *t);

/* Offers a fresh response to the cache. Stores it (replacing any entry under the key) when the
 * request's C flag, the response's C flag and both remaining times > 0 all hold and it fits
 * max_bytes, evicting least recently used entries. t gets the new response's times.
 * Returns true if stored. */
bool calc_cache_offer(calc_cache *c, const calc_header *req, const uint8_t *payload, size_t len,
                      const uint8_t *resp, size_t resp_len, uint32_t now, calc_cache_times *t);

/* The remaining times of response resp (at least a whole header) for request req at `now`. */
void calc_cache_times_for(const calc_header *req, const uint8_t *resp, uint32_t now, calc_cache_times *t);

size_t calc_cache_count(const calc_cache *c);
size_t calc_cache_bytes(const calc_cache *c);
size_t calc_cache_evictions(const calc_cache *c);

#endif
