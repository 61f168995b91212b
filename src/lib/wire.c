/* wire.c: the 12-byte header and framing by total length (docs/protocol.md section 1).
 * No I/O here: the programs and calc-sniff feed bytes in and take messages out. */
#include "calc/wire.h"

#include <string.h>

/* Bounds-checked big-endian readers: callers have already checked len >= 12. */
static uint16_t rd16(const uint8_t *p) { return (uint16_t)((unsigned)p[0] << 8 | p[1]); }
static uint32_t rd32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static void wr16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }
static void wr32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v;
}

void calc_header_normalize(calc_header *h) {
  if (!h->cache && h->cache_control != 0) h->cache_control = 0;
  if (!h->is_request && h->cache && h->cache_control == 0) h->cache = false;
}

void calc_header_encode(const calc_header *in, uint8_t out[CALC_HEADER_SIZE]) {
  calc_header h = *in;
  calc_header_normalize(&h);
  uint16_t flags = (uint16_t)(h.status & CALC_STATUS_MASK);
  if (h.cache) flags |= CALC_FLAG_CACHE;
  if (h.steps) flags |= CALC_FLAG_STEPS;
  if (h.is_request) flags |= CALC_FLAG_REQUEST;
  wr32(out, h.time);
  wr16(out + 4, h.total_len);
  wr16(out + 6, flags);
  wr16(out + 8, h.cache_control);
  wr16(out + 10, 0);
}

int calc_message_build(calc_buf *out, uint32_t now, bool is_request, uint16_t status, bool cache,
                       bool steps, uint16_t cache_control, const uint8_t *payload, size_t len) {
  if (len > CALC_MAX_PAYLOAD) return -1;
  calc_header h = {.time = now, .total_len = (uint16_t)(CALC_HEADER_SIZE + len), .cache = cache,
                   .steps = steps, .is_request = is_request, .status = status,
                   .cache_control = cache_control};
  uint8_t hdr[CALC_HEADER_SIZE];
  calc_header_encode(&h, hdr);
  if (calc_buf_append(out, hdr, sizeof hdr) < 0) return -1;
  return calc_buf_append(out, payload, len);
}

ssize_t calc_header_decode(const uint8_t *buf, size_t len, calc_header *h) {
  if (len < CALC_HEADER_SIZE) return -2;
  uint16_t flags = rd16(buf + 6);
  h->time = rd32(buf);
  h->total_len = rd16(buf + 4);
  h->reserved = (uint8_t)((flags & CALC_FLAG_RESERVED) >> 13);
  h->cache = (flags & CALC_FLAG_CACHE) != 0;
  h->steps = (flags & CALC_FLAG_STEPS) != 0;
  h->is_request = (flags & CALC_FLAG_REQUEST) != 0;
  h->status = flags & CALC_STATUS_MASK;
  h->cache_control = rd16(buf + 8);
  calc_header_normalize(h);
  return CALC_HEADER_SIZE;
}

ssize_t calc_frame_parse(const uint8_t *buf, size_t len, calc_header *h) {
  if (calc_header_decode(buf, len, h) < 0) return -2;
  if (h->total_len < CALC_HEADER_SIZE) return -1;
  if (len < h->total_len) return -2;
  return h->total_len;
}

void calc_framer_init(calc_framer *f, size_t limit) {
  calc_buf_init(&f->in, limit);
  f->off = 0;
}

void calc_framer_free(calc_framer *f) { calc_buf_free(&f->in); }

int calc_framer_feed(calc_framer *f, const void *data, size_t len) {
  if (f->off) {
    /* Messages already handed out become invalid here, so their bytes can go: one move of the
     * unframed rest per feed. */
    calc_buf_consume(&f->in, f->off);
    f->off = 0;
  }
  if (calc_buf_append(&f->in, data, len) < 0) {
    f->in.failed = CALC_OK; /* nothing was added: the framer stays usable */
    return -1;
  }
  return 0;
}

int calc_framer_next(calc_framer *f, calc_msg *m) {
  if (f->off == f->in.len) return 0;
  const uint8_t *rest = f->in.data + f->off;
  ssize_t n = calc_frame_parse(rest, f->in.len - f->off, &m->h);
  if (n == -2) return 0;
  if (n == -1) return -1;
  m->raw = rest;
  m->raw_len = (size_t)n;
  m->payload = rest + CALC_HEADER_SIZE;
  m->payload_len = (size_t)n - CALC_HEADER_SIZE;
  f->off += (size_t)n;
  return 1;
}

size_t calc_framer_pending(const calc_framer *f) { return f->in.len - f->off; }

const uint8_t *calc_framer_rest(const calc_framer *f) { return f->in.data + f->off; }
