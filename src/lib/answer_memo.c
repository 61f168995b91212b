/* answer_memo.c: the server's memo of whole answers (see calc/server.h).
 *
 * It reuses the proxy's cache (hash table + LRU + byte bound). Each entry's "response" is a blob:
 *   [12-byte header: C set, max-age 65535]  [the answer message]  [calc_answer_info]
 * The leading header makes calc_cache treat the entry as fresh forever; the trailing info lets
 * the logs describe a remembered answer exactly like a computed one. */
#include <string.h>

#include "calc/alloc.h"
#include "calc/cache.h"
#include "calc/server.h"

struct calc_answer_memo {
  calc_cache *cache;
};

calc_answer_memo *calc_answer_memo_new(size_t max_bytes) {
  calc_answer_memo *memo = calc_calloc(1, sizeof *memo);
  if (!memo) return NULL;
  memo->cache = calc_cache_new(max_bytes);
  if (!memo->cache) {
    calc_free(memo);
    return NULL;
  }
  return memo;
}

void calc_answer_memo_free(calc_answer_memo *memo) {
  if (!memo) return;
  calc_cache_free(memo->cache);
  calc_free(memo);
}

/* The memo's key header: the S flag and "fresh forever". */
static calc_header memo_key(const calc_msg *m) {
  calc_header h = {.cache = true, .steps = m->h.steps, .is_request = true, .cache_control = CALC_CACHE_FOREVER};
  return h;
}

static void put_be32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v;
}

int calc_server_answer_memo(const calc_server_opts *o, calc_answer_memo *memo, const calc_msg *m,
                            uint32_t now, calc_buf *out, calc_answer_info *info) {
  /* Only well-formed requests are remembered: the type flag is part of the answer. */
  if (!memo || !m->h.is_request) return calc_server_answer(o, m, now, out, info);
  calc_header key = memo_key(m);
  const uint8_t *blob;
  size_t blob_len;
  calc_cache_times t;
  if (calc_cache_lookup(memo->cache, &key, m->payload, m->payload_len, now, &blob, &blob_len, &t) ==
          CALC_CACHE_HIT &&
      blob_len > CALC_HEADER_SIZE + sizeof *info) {
    size_t answer_len = blob_len - CALC_HEADER_SIZE - sizeof *info;
    memcpy(info, blob + CALC_HEADER_SIZE + answer_len, sizeof *info);
    size_t at = out->len;
    if (calc_buf_append(out, blob + CALC_HEADER_SIZE, answer_len) < 0) return -1;
    put_be32(out->data + at, now); /* the time the message was built */
    return 0;
  }
  size_t at = out->len;
  if (calc_server_answer(o, m, now, out, info) < 0) return -1;
  if (!info->deterministic) return 0;
  calc_buf b;
  calc_buf_init(&b, 0);
  calc_header fresh = {.time = now, .cache = true, .cache_control = CALC_CACHE_FOREVER, .status = 200};
  uint8_t hdr[CALC_HEADER_SIZE];
  calc_header_encode(&fresh, hdr);
  if (calc_buf_append(&b, hdr, sizeof hdr) == 0 && calc_buf_append(&b, out->data + at, out->len - at) == 0 &&
      calc_buf_append(&b, info, sizeof *info) == 0)
    calc_cache_offer(memo->cache, &key, m->payload, m->payload_len, b.data, b.len, now, &t);
  calc_buf_free(&b);
  return 0;
}
