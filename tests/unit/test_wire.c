/* test_wire.c: the header codec and the framer (docs/protocol.md section 1). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "calc/wire.h"

/* The report's first request header and its response header. */
static const uint8_t seed_request[12] = {0x63, 0x8f, 0x60, 0x89, 0x02, 0xaf, 0x1c, 0x00, 0xff, 0xff, 0x00, 0x00};
static const uint8_t seed_response[12] = {0x63, 0x8f, 0x60, 0x89, 0x02, 0x34, 0x18, 0xc8, 0xff, 0xff, 0x00, 0x00};

static void test_decode_seed_request(void **state) {
  (void)state;
  calc_header h;
  assert_int_equal(calc_header_decode(seed_request, 12, &h), 12);
  assert_int_equal(h.time, 0x638f6089u);
  assert_int_equal(h.total_len, 687);
  assert_true(h.cache && h.steps && h.is_request);
  assert_int_equal(h.status, 0);
  assert_int_equal(h.cache_control, 65535);
  uint8_t out[12];
  calc_header_encode(&h, out);
  assert_memory_equal(out, seed_request, 12);
}

static void test_decode_seed_response(void **state) {
  (void)state;
  calc_header h;
  assert_int_equal(calc_header_decode(seed_response, 12, &h), 12);
  assert_int_equal(h.total_len, 564);
  assert_true(h.cache && h.steps && !h.is_request);
  assert_int_equal(h.status, 200);
  uint8_t out[12];
  calc_header_encode(&h, out);
  assert_memory_equal(out, seed_response, 12);
}

static void test_decode_short(void **state) {
  (void)state;
  calc_header h;
  for (size_t n = 0; n < 12; n++) assert_int_equal(calc_header_decode(seed_request, n, &h), -2);
}

static void test_normalise_cache_control_without_cache(void **state) {
  (void)state;
  /* C clear, cache control 30 -> 0 (vector cache-control-without-cache-flag). */
  const uint8_t in[12] = {0, 0, 0, 0, 0x01, 0x06, 0x0c, 0x00, 0x00, 0x1e, 0, 0};
  calc_header h;
  calc_header_decode(in, 12, &h);
  assert_false(h.cache);
  assert_int_equal(h.cache_control, 0);
}

static void test_normalise_response_cache_zero(void **state) {
  (void)state;
  calc_header h = {.time = 1, .total_len = 12, .cache = true, .status = 200, .cache_control = 0};
  uint8_t out[12];
  calc_header_encode(&h, out);
  assert_int_equal(out[6] & 0x10, 0); /* C cleared */
  /* Requests keep C with cache control 0 (a reload). */
  h.is_request = true;
  h.status = 0;
  calc_header_encode(&h, out);
  assert_int_equal(out[6], 0x14);
}

static void test_reserved_bits_reported_not_fatal(void **state) {
  (void)state;
  const uint8_t in[12] = {0, 0, 0, 0, 0x00, 0x0c, 0xac, 0x00, 0, 0, 0, 0};
  calc_header h;
  assert_int_equal(calc_frame_parse(in, 12, &h), 12);
  assert_int_equal(h.reserved, 5);
  assert_true(h.steps && h.is_request);
}

static void test_frame_every_prefix(void **state) {
  (void)state;
  uint8_t msg[40] = {0};
  msg[4] = 0;
  msg[5] = 40;
  msg[6] = 0x1c;
  calc_header h;
  for (size_t n = 0; n < sizeof msg; n++) assert_int_equal(calc_frame_parse(msg, n, &h), -2);
  assert_int_equal(calc_frame_parse(msg, sizeof msg, &h), 40);
}

static void test_frame_bad_total_length(void **state) {
  (void)state;
  for (unsigned len = 0; len < 12; len++) {
    uint8_t msg[12] = {0, 0, 0, 0, 0, (uint8_t)len, 0x04, 0, 0, 0, 0, 0};
    calc_header h;
    assert_int_equal(calc_frame_parse(msg, 12, &h), -1);
    assert_int_equal(h.total_len, len);
  }
}

/* Builds `count` messages with distinct payload sizes into out; returns total bytes. */
static size_t build_stream(uint8_t *out, int count) {
  size_t off = 0;
  for (int i = 0; i < count; i++) {
    size_t payload = (size_t)(i * 37 % 300);
    calc_header h = {.time = (uint32_t)i, .total_len = (uint16_t)(12 + payload), .cache = true,
                     .steps = (i & 1) != 0, .is_request = true, .cache_control = 65535};
    calc_header_encode(&h, out + off);
    for (size_t k = 0; k < payload; k++) out[off + 12 + k] = (uint8_t)(i + k);
    off += 12 + payload;
  }
  return off;
}

/* Feeds the stream in chunks of `chunk` bytes and checks every message comes out whole. */
static void run_framer(const uint8_t *stream, size_t len, size_t chunk, int count) {
  calc_framer f;
  calc_framer_init(&f, 0);
  int seen = 0;
  for (size_t off = 0; off < len; off += chunk) {
    size_t n = len - off < chunk ? len - off : chunk;
    assert_int_equal(calc_framer_feed(&f, stream + off, n), 0);
    calc_msg m;
    int r;
    while ((r = calc_framer_next(&f, &m)) == 1) {
      assert_int_equal(m.h.time, (uint32_t)seen);
      assert_int_equal(m.payload_len, (size_t)(seen * 37 % 300));
      for (size_t k = 0; k < m.payload_len; k++) assert_int_equal(m.payload[k], (uint8_t)(seen + k));
      seen++;
    }
    assert_int_equal(r, 0);
  }
  assert_int_equal(seen, count);
  assert_int_equal(calc_framer_pending(&f), 0);
  calc_framer_free(&f);
}

static void test_framer_whole_bytewise_and_chunks(void **state) {
  (void)state;
  static uint8_t stream[20 * 320];
  size_t len = build_stream(stream, 20);
  run_framer(stream, len, len, 20); /* all messages in one read */
  run_framer(stream, len, 1, 20);   /* byte by byte */
  run_framer(stream, len, 7, 20);
  run_framer(stream, len, 500, 20); /* several messages and partial ones per read */
}

static void test_framer_rejects_short_total_length(void **state) {
  (void)state;
  calc_framer f;
  calc_framer_init(&f, 0);
  const uint8_t bad[12] = {0, 0, 0, 0, 0, 5, 0x04, 0, 0, 0, 0, 0};
  calc_framer_feed(&f, bad, sizeof bad);
  calc_msg m;
  assert_int_equal(calc_framer_next(&f, &m), -1);
  assert_int_equal(m.h.total_len, 5);
  calc_framer_free(&f);
}

/* A bounded framer refuses a feed that would pass its limit, keeps what it has, and takes
 * bytes again once messages were taken out. */
static void test_framer_limit(void **state) {
  (void)state;
  static uint8_t stream[3 * 320];
  size_t len = build_stream(stream, 3); /* payloads 0, 37, 74: 12, 49 and 86 bytes */
  calc_framer f;
  calc_framer_init(&f, 100);
  assert_int_equal(calc_framer_feed(&f, stream, 61), 0);
  assert_int_equal(calc_framer_feed(&f, stream + 61, 86), -1); /* 147 > 100: nothing added */
  assert_int_equal(calc_framer_pending(&f), 61);
  calc_msg m;
  assert_int_equal(calc_framer_next(&f, &m), 1);
  assert_int_equal(calc_framer_next(&f, &m), 1);
  assert_int_equal(calc_framer_next(&f, &m), 0);
  assert_int_equal(calc_framer_feed(&f, stream + 61, 86), 0); /* the two taken out made room */
  assert_int_equal(calc_framer_next(&f, &m), 1);
  assert_int_equal(m.raw_len, 86);
  assert_int_equal(calc_framer_pending(&f), 0);
  assert_int_equal(len, 147);
  calc_framer_free(&f);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_decode_seed_request),
      cmocka_unit_test(test_decode_seed_response),
      cmocka_unit_test(test_decode_short),
      cmocka_unit_test(test_normalise_cache_control_without_cache),
      cmocka_unit_test(test_normalise_response_cache_zero),
      cmocka_unit_test(test_reserved_bits_reported_not_fatal),
      cmocka_unit_test(test_frame_every_prefix),
      cmocka_unit_test(test_frame_bad_total_length),
      cmocka_unit_test(test_framer_whole_bytewise_and_chunks),
      cmocka_unit_test(test_framer_rejects_short_total_length),
      cmocka_unit_test(test_framer_limit),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
