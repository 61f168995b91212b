/* test_cache.c: the proxy's cache rules (docs/protocol.md section 5) and its LRU byte bound. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "calc/cache.h"

static calc_header request(bool cache, bool steps, uint16_t cc) {
  calc_header h = {.time = 1000, .cache = cache, .steps = steps, .is_request = true, .cache_control = cc};
  calc_header_normalize(&h);
  return h;
}

/* A response message stamped `time` with max-age cc, payload filled with `fill`. */
static size_t response(uint8_t *out, size_t payload, uint32_t time, bool cache, uint16_t cc, uint8_t fill) {
  calc_header h = {.time = time, .total_len = (uint16_t)(12 + payload), .cache = cache, .status = 200, .cache_control = cc};
  calc_header_encode(&h, out);
  memset(out + 12, fill, payload);
  return 12 + payload;
}

static const uint8_t payload_a[] = "expression A";
static const uint8_t payload_b[] = "expression B";

static void test_miss_store_hit(void **state) {
  (void)state;
  calc_cache *c = calc_cache_new(1 << 20);
  calc_header req = request(true, true, 65535);
  const uint8_t *got;
  size_t got_len;
  calc_cache_times t;
  assert_int_equal(calc_cache_lookup(c, &req, payload_a, sizeof payload_a, 1000, &got, &got_len, &t), CALC_CACHE_MISS);
  uint8_t resp[100];
  size_t n = response(resp, 50, 1000, true, 65535, 7);
  assert_true(calc_cache_offer(c, &req, payload_a, sizeof payload_a, resp, n, 1000, &t));
  assert_true(isinf(t.server_remaining) && isinf(t.client_remaining));
  assert_int_equal(calc_cache_lookup(c, &req, payload_a, sizeof payload_a, 5000, &got, &got_len, &t), CALC_CACHE_HIT);
  assert_int_equal(got_len, n);
  assert_memory_equal(got, resp, n); /* stored bytes unchanged, original time stamp included */
  /* The S flag is part of the key. */
  calc_header nosteps = request(true, false, 65535);
  assert_int_equal(calc_cache_lookup(c, &nosteps, payload_a, sizeof payload_a, 5000, &got, &got_len, &t), CALC_CACHE_MISS);
  calc_cache_free(c);
}

static void test_stale_by_server_max_age(void **state) {
  (void)state;
  calc_cache *c = calc_cache_new(1 << 20);
  calc_header req = request(true, true, 65535);
  uint8_t resp[100];
  size_t n = response(resp, 10, 1000, true, 5, 1);
  calc_cache_times t;
  assert_true(calc_cache_offer(c, &req, payload_a, sizeof payload_a, resp, n, 1001, &t));
  assert_true(fabs(t.server_remaining - 4.0) < 1e-9);
  const uint8_t *got;
  size_t got_len;
  assert_int_equal(calc_cache_lookup(c, &req, payload_a, sizeof payload_a, 1004, &got, &got_len, &t), CALC_CACHE_HIT);
  assert_int_equal(calc_cache_lookup(c, &req, payload_a, sizeof payload_a, 1005, &got, &got_len, &t), CALC_CACHE_STALE);
  assert_true(fabs(t.server_remaining) < 1e-9);
  /* A stale entry is dropped. */
  assert_int_equal(calc_cache_count(c), 0);
  calc_cache_free(c);
}

static void test_stale_by_client_max_age(void **state) {
  (void)state;
  calc_cache *c = calc_cache_new(1 << 20);
  calc_header req = request(true, true, 65535);
  uint8_t resp[100];
  size_t n = response(resp, 10, 1000, true, 65535, 1);
  calc_cache_times t;
  calc_cache_offer(c, &req, payload_a, sizeof payload_a, resp, n, 1000, &t);
  calc_header strict = request(true, true, 10);
  const uint8_t *got;
  size_t got_len;
  assert_int_equal(calc_cache_lookup(c, &strict, payload_a, sizeof payload_a, 1009, &got, &got_len, &t), CALC_CACHE_HIT);
  assert_true(fabs(t.client_remaining - 1.0) < 1e-9);
  assert_int_equal(calc_cache_lookup(c, &strict, payload_a, sizeof payload_a, 1010, &got, &got_len, &t), CALC_CACHE_STALE);
  calc_cache_free(c);
}

static void test_reload_and_no_cache(void **state) {
  (void)state;
  calc_cache *c = calc_cache_new(1 << 20);
  calc_header req = request(true, true, 65535);
  uint8_t resp[100];
  size_t n = response(resp, 10, 1000, true, 65535, 1);
  calc_cache_times t;
  calc_cache_offer(c, &req, payload_a, sizeof payload_a, resp, n, 1000, &t);
  const uint8_t *got;
  size_t got_len;
  calc_header reload = request(true, true, 0);
  assert_int_equal(calc_cache_lookup(c, &reload, payload_a, sizeof payload_a, 1000, &got, &got_len, &t), CALC_CACHE_RELOAD);
  /* Max-age 0 responses are never stored (their remaining time is not > 0). */
  assert_false(calc_cache_offer(c, &reload, payload_b, sizeof payload_b, resp, n, 1000, &t));
  /* A request without C is not stored. */
  calc_header nocache = request(false, true, 0);
  assert_false(calc_cache_offer(c, &nocache, payload_b, sizeof payload_b, resp, n, 1000, &t));
  /* A response without C (server --no-cache) is not stored. */
  uint8_t resp2[100];
  size_t n2 = response(resp2, 10, 1000, false, 0, 1);
  assert_false(calc_cache_offer(c, &req, payload_b, sizeof payload_b, resp2, n2, 1000, &t));
  assert_int_equal(calc_cache_count(c), 1);
  calc_cache_free(c);
}

static void test_lru_eviction_at_byte_bound(void **state) {
  (void)state;
  /* Room for about three 1000-byte entries. */
  calc_cache *c = calc_cache_new(3 * (1000 + 200 + 64) + 100);
  calc_header req = request(true, true, 65535);
  uint8_t resp[1100], key[20];
  calc_cache_times t;
  const uint8_t *got;
  size_t got_len;
  for (int i = 0; i < 5; i++) {
    memset(key, 'a' + i, sizeof key);
    size_t n = response(resp, 988, 1000, true, 65535, (uint8_t)i);
    assert_true(calc_cache_offer(c, &req, key, sizeof key, resp, n, 1000, &t));
    if (i == 2) { /* touch entry 0 so entry 1 is the least recently used */
      memset(key, 'a', sizeof key);
      assert_int_equal(calc_cache_lookup(c, &req, key, sizeof key, 1000, &got, &got_len, &t), CALC_CACHE_HIT);
    }
    assert_true(calc_cache_bytes(c) <= 3 * (1000 + 200 + 64) + 100);
  }
  assert_int_equal(calc_cache_count(c), 3);
  assert_int_equal(calc_cache_evictions(c), 2);
  const char expect_hit[] = {'a', 'd', 'e'}, expect_gone[] = {'b', 'c'};
  for (size_t i = 0; i < sizeof expect_hit; i++) {
    memset(key, expect_hit[i], sizeof key);
    assert_int_equal(calc_cache_lookup(c, &req, key, sizeof key, 1000, &got, &got_len, &t), CALC_CACHE_HIT);
  }
  for (size_t i = 0; i < sizeof expect_gone; i++) {
    memset(key, expect_gone[i], sizeof key);
    assert_int_equal(calc_cache_lookup(c, &req, key, sizeof key, 1000, &got, &got_len, &t), CALC_CACHE_MISS);
  }
  calc_cache_free(c);
}

static void test_many_entries_grow_table(void **state) {
  (void)state;
  calc_cache *c = calc_cache_new(64u << 20);
  calc_header req = request(true, false, 65535);
  uint8_t resp[40];
  size_t n = response(resp, 20, 1000, true, 65535, 3);
  calc_cache_times t;
  for (uint32_t i = 0; i < 5000; i++)
    assert_true(calc_cache_offer(c, &req, (const uint8_t *)&i, sizeof i, resp, n, 1000, &t));
  const uint8_t *got;
  size_t got_len;
  for (uint32_t i = 0; i < 5000; i++)
    assert_int_equal(calc_cache_lookup(c, &req, (const uint8_t *)&i, sizeof i, 1000, &got, &got_len, &t), CALC_CACHE_HIT);
  calc_cache_free(c);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_miss_store_hit),
      cmocka_unit_test(test_stale_by_server_max_age),
      cmocka_unit_test(test_stale_by_client_max_age),
      cmocka_unit_test(test_reload_and_no_cache),
      cmocka_unit_test(test_lru_eviction_at_byte_bound),
      cmocka_unit_test(test_many_entries_grow_table),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
