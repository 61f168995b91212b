/* cache.c: the proxy's cache: a chained hash table plus an LRU list (see calc/cache.h). */
#include "calc/cache.h"

#include <math.h>
#include <string.h>

#include "calc/alloc.h"

typedef struct entry {
  uint64_t hash;
  struct entry *chain;          /* next in bucket */
  struct entry *newer, *older;  /* LRU list */
  size_t key_len;               /* payload bytes + 1 (the S flag) */
  size_t resp_len;
  uint8_t *key;                 /* payload followed by the S flag byte */
  uint8_t *resp;                /* whole response message */
} entry;

struct calc_cache {
  entry **buckets;
  size_t nbuckets;              /* power of two */
  size_t count, bytes, max_bytes, evictions;
  entry *newest, *oldest;
};

/* Bookkeeping charged per entry on top of its bytes, so the bound holds for tiny entries. */
#define ENTRY_OVERHEAD (sizeof(entry) + 32)

static size_t entry_cost(const entry *e) { return e->key_len + e->resp_len + ENTRY_OVERHEAD; }

/* A word-at-a-time multiply-xorshift hash: the proxy hashes every request's payload (about
 * 700 bytes for the report's E1) on its hot path, so eight bytes per step instead of one. */
static uint64_t mix(uint64_t h) {
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdull;
  h ^= h >> 33;
  return h;
}

static uint64_t key_hash(const uint8_t *payload, size_t len, bool steps) {
  uint64_t h = 0x9e3779b97f4a7c15ull ^ (len * 0xc2b2ae3d27d4eb4full) ^ (steps ? 1u : 0u);
  size_t i = 0;
  for (; i + 8 <= len; i += 8) {
    uint64_t w;
    memcpy(&w, payload + i, sizeof w);
    h = (h ^ mix(w)) * 0x9e3779b97f4a7c15ull;
  }
  uint64_t tail = 0;
  if (len > i) memcpy(&tail, payload + i, len - i);
  return mix(h ^ mix(tail ^ 0x27d4eb2f165667c5ull));
}

calc_cache *calc_cache_new(size_t max_bytes) {
  calc_cache *c = calc_calloc(1, sizeof *c);
  if (!c) return NULL;
  c->nbuckets = 256;
  c->buckets = calc_calloc(c->nbuckets, sizeof *c->buckets);
  if (!c->buckets) {
    calc_free(c);
    return NULL;
  }
  c->max_bytes = max_bytes;
  return c;
}

static void entry_free(entry *e) {
  calc_free(e->key);
  calc_free(e->resp);
  calc_free(e);
}

void calc_cache_free(calc_cache *c) {
  if (!c) return;
  for (entry *e = c->newest, *next; e; e = next) {
    next = e->older;
    entry_free(e);
  }
  calc_free(c->buckets);
  calc_free(c);
}

static void lru_unlink(calc_cache *c, entry *e) {
  if (e->newer) e->newer->older = e->older; else c->newest = e->older;
  if (e->older) e->older->newer = e->newer; else c->oldest = e->newer;
  e->newer = e->older = NULL;
}

static void lru_push_newest(calc_cache *c, entry *e) {
  e->newer = NULL;
  e->older = c->newest;
  if (c->newest) c->newest->newer = e; else c->oldest = e;
  c->newest = e;
}

static entry **find_slot(calc_cache *c, uint64_t h, const uint8_t *payload, size_t len, bool steps) {
  entry **slot = &c->buckets[h & (c->nbuckets - 1)];
  for (; *slot; slot = &(*slot)->chain) {
    entry *e = *slot;
    if (e->hash == h && e->key_len == len + 1 && e->key[len] == (uint8_t)steps &&
        (len == 0 || memcmp(e->key, payload, len) == 0))
      return slot;
  }
  return slot;
}

static void remove_entry(calc_cache *c, entry **slot) {
  entry *e = *slot;
  *slot = e->chain;
  lru_unlink(c, e);
  c->count--;
  c->bytes -= entry_cost(e);
  entry_free(e);
}

static void remove_by_pointer(calc_cache *c, entry *victim) {
  entry **slot = &c->buckets[victim->hash & (c->nbuckets - 1)];
  while (*slot != victim) slot = &(*slot)->chain;
  remove_entry(c, slot);
}

/* Remaining lifetime for a max-age field; 65535 means forever. */
static double remaining(uint16_t max_age, double age) {
  return max_age == CALC_CACHE_FOREVER ? INFINITY : (double)max_age - age;
}

void calc_cache_times_for(const calc_header *req, const uint8_t *resp, uint32_t now, calc_cache_times *t) {
  calc_header rh;
  calc_header_decode(resp, CALC_HEADER_SIZE, &rh);
  /* Whole seconds by the server's clock; a response from the future counts as age 0. */
  double age = now >= rh.time ? (double)(now - rh.time) : 0.0;
  t->server_remaining = remaining(rh.cache_control, age);
  t->client_remaining = remaining(req->cache_control, age);
}

calc_cache_outcome calc_cache_lookup(calc_cache *c, const calc_header *req, const uint8_t *payload,
                                     size_t len, uint32_t now, const uint8_t **resp,
                                     size_t *resp_len, calc_cache_times *t) {
  if (req->cache_control == 0) return CALC_CACHE_RELOAD;
  uint64_t h = key_hash(payload, len, req->steps);
  entry **slot = find_slot(c, h, payload, len, req->steps);
  if (!*slot) return CALC_CACHE_MISS;
  entry *e = *slot;
  calc_cache_times_for(req, e->resp, now, t);
  if (t->server_remaining > 0 && t->client_remaining > 0) {
    lru_unlink(c, e);
    lru_push_newest(c, e);
    *resp = e->resp;
    *resp_len = e->resp_len;
    return CALC_CACHE_HIT;
  }
  remove_entry(c, slot);
  return CALC_CACHE_STALE;
}

static void grow(calc_cache *c) {
  size_t n = c->nbuckets * 2;
  entry **b = calc_calloc(n, sizeof *b);
  if (!b) return; /* keep the old table: longer chains, still correct */
  for (size_t i = 0; i < c->nbuckets; i++) {
    for (entry *e = c->buckets[i], *next; e; e = next) {
      next = e->chain;
      e->chain = b[e->hash & (n - 1)];
      b[e->hash & (n - 1)] = e;
    }
  }
  calc_free(c->buckets);
  c->buckets = b;
  c->nbuckets = n;
}

bool calc_cache_offer(calc_cache *c, const calc_header *req, const uint8_t *payload, size_t len,
                      const uint8_t *resp, size_t resp_len, uint32_t now, calc_cache_times *t) {
  if (resp_len < CALC_HEADER_SIZE) return false;
  calc_header rh;
  calc_header_decode(resp, resp_len, &rh);
  calc_cache_times_for(req, resp, now, t);
  if (!req->cache || !rh.cache || !(t->server_remaining > 0) || !(t->client_remaining > 0)) return false;
  size_t cost = len + 1 + resp_len + ENTRY_OVERHEAD;
  if (cost > c->max_bytes) return false;

  uint64_t h = key_hash(payload, len, req->steps);
  entry **slot = find_slot(c, h, payload, len, req->steps);
  if (*slot) remove_entry(c, slot); /* replace a stale or older answer */

  entry *e = calc_calloc(1, sizeof *e);
  if (!e) return false;
  e->key = calc_malloc(len + 1);
  e->resp = calc_malloc(resp_len);
  if (!e->key || !e->resp) {
    entry_free(e);
    return false;
  }
  if (len) memcpy(e->key, payload, len); /* an empty payload may come as NULL */
  e->key[len] = (uint8_t)req->steps;
  memcpy(e->resp, resp, resp_len);
  e->key_len = len + 1;
  e->resp_len = resp_len;
  e->hash = h;
  while (c->bytes + cost > c->max_bytes && c->oldest) {
    remove_by_pointer(c, c->oldest);
    c->evictions++;
  }
  if (c->count + 1 > c->nbuckets) grow(c);
  entry **head = &c->buckets[h & (c->nbuckets - 1)];
  e->chain = *head;
  *head = e;
  lru_push_newest(c, e);
  c->count++;
  c->bytes += cost;
  return true;
}

size_t calc_cache_count(const calc_cache *c) { return c->count; }
size_t calc_cache_bytes(const calc_cache *c) { return c->bytes; }
size_t calc_cache_evictions(const calc_cache *c) { return c->evictions; }
