/* test_proxy_core.c: the proxy's decisions without sockets (calc/proxy.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <math.h>
#include <string.h>

#include <cmocka.h>

#include "calc/parse.h"
#include "calc/pickle.h"
#include "calc/proxy.h"
#include "calc/server.h"
#include "helpers/testmsg.h"
#include "helpers/vectors.h"

/* The reference proxy's refused answer, from legacy-protocol.jsonl (time stamp 0). */
static size_t refused_vector(uint8_t *out, size_t cap) {
  char path[1024];
  FILE *f = fopen(test_vectors_path("legacy-protocol.jsonl", path, sizeof path), "r");
  assert_non_null(f);
  char line[8192];
  size_t n = 0;
  while (fgets(line, sizeof line, f)) {
    if (!strstr(line, "\"upstream-refused\"")) continue;
    const char *h = strstr(line, "\"response\": \"");
    assert_non_null(h);
    h += strlen("\"response\": \"");
    while (h[0] != '"' && n < cap) {
      unsigned v;
      sscanf(h, "%2x", &v);
      out[n++] = (uint8_t)v;
      h += 2;
    }
  }
  fclose(f);
  return n;
}

static void test_refused_answer_is_the_reference_bytes(void **state) {
  (void)state;
  uint8_t want[512];
  size_t n = refused_vector(want, sizeof want);
  assert_int_equal(n, 170);
  calc_buf out;
  calc_buf_init(&out, 0);
  assert_int_equal(calc_proxy_error("CalculatorServerError", CALC_PROXY_REFUSED_MSG, 0, &out), 0);
  assert_int_equal(out.len, 170);
  assert_memory_equal(out.data, want, 170);
  calc_buf_free(&out);
}

/* A framed request for expr (steps on, max-age cc) built into buf, m pointing into it. */
static void request(const char *expr, uint16_t cc, calc_buf *buf, calc_msg *m) {
  calc_buf_reset(buf);
  testmsg_request(expr, 7, true, true, cc, buf);
  testmsg_frame(buf, m);
}

/* Scenario 3.2 as decisions: E1 miss (forwarded, same payload), E1 hit (stored bytes), E2 miss;
 * then a reload (max-age 0) is forwarded although E1 is stored. */
static void test_scenario_3_2_decisions(void **state) {
  (void)state;
  calc_cache *cache = calc_cache_new(1 << 20);
  calc_buf req, out, resp;
  calc_buf_init(&req, 0);
  calc_buf_init(&out, 0);
  calc_buf_init(&resp, 0);
  calc_msg m;
  calc_proxy_decision d;
  const char *e1 = "(sin(max(2, 3 * 4, 5, 6 * ((7 * 8) / 9), 10 / 11)) / 12) * 13";

  request(e1, 65535, &req, &m);
  assert_int_equal(calc_proxy_on_request(cache, &m, 100, &out, &d), 0);
  assert_int_equal(d.action, CALC_PROXY_FORWARD);
  assert_int_equal(d.outcome, CALC_CACHE_MISS);
  assert_int_equal(out.len, 687);
  assert_memory_equal(out.data + 4, req.data + 4, 8);          /* same header but the time */
  assert_memory_equal(out.data + 12, req.data + 12, req.len - 12); /* same payload */
  testmsg_server_answer(&out, 100, &resp); /* what the server answers to the forwarded bytes */
  calc_cache_times t;
  assert_true(calc_cache_offer(cache, &m.h, m.payload, m.payload_len, resp.data, resp.len, 100, &t));

  request(e1, 65535, &req, &m);
  calc_buf_reset(&out);
  assert_int_equal(calc_proxy_on_request(cache, &m, 160, &out, &d), 0);
  assert_int_equal(d.action, CALC_PROXY_ANSWER);
  assert_int_equal(out.len, 564);
  assert_memory_equal(out.data, resp.data, resp.len);         /* original time stamp included */

  request("max(2, 3) + 3", 65535, &req, &m);
  calc_buf_reset(&out);
  assert_int_equal(calc_proxy_on_request(cache, &m, 170, &out, &d), 0);
  assert_int_equal(d.action, CALC_PROXY_FORWARD);
  assert_int_equal(out.len, 376);

  request(e1, 0, &req, &m);
  calc_buf_reset(&out);
  assert_int_equal(calc_proxy_on_request(cache, &m, 180, &out, &d), 0);
  assert_int_equal(d.action, CALC_PROXY_FORWARD);
  assert_int_equal(d.outcome, CALC_CACHE_RELOAD);

  calc_buf_free(&req);
  calc_buf_free(&out);
  calc_buf_free(&resp);
  calc_cache_free(cache);
}

/* The proxy stores a server's 400 like any answer, except one given for lack of memory. */
static void test_out_of_memory_answer_is_not_cached(void **state) {
  (void)state;
  calc_cache *cache = calc_cache_new(1 << 20);
  calc_buf req, resp, payload;
  calc_buf_init(&req, 0);
  calc_buf_init(&resp, 0);
  calc_buf_init(&payload, 0);
  calc_msg m;
  request("1 / 0", 65535, &req, &m);
  const char *types[] = {"MemoryError", "ZeroDivisionError"};
  for (int k = 0; k < 2; k++) {
    calc_exc e;
    calc_exc_set(&e, types[k], "%s", k ? "division by zero" : "");
    calc_buf_reset(&payload);
    calc_buf_reset(&resp);
    assert_int_equal(calc_pickle_exception(&e, &payload), 0);
    assert_int_equal(calc_message_build(&resp, 50, false, 400, true, false, 65535, payload.data, payload.len), 0);
    calc_cache_times t;
    bool stored = calc_proxy_on_response(cache, &m.h, m.payload, m.payload_len, resp.data, resp.len, 60, &t);
    assert_true(stored == (k == 1));
    assert_true(isinf(t.server_remaining) && isinf(t.client_remaining));
    const uint8_t *hit;
    size_t hit_len;
    assert_int_equal(calc_cache_lookup(cache, &m.h, m.payload, m.payload_len, 61, &hit, &hit_len, &t),
                     k == 1 ? CALC_CACHE_HIT : CALC_CACHE_MISS);
  }
  calc_cache_free(cache);
  calc_buf_free(&req);
  calc_buf_free(&resp);
  calc_buf_free(&payload);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_refused_answer_is_the_reference_bytes),
      cmocka_unit_test(test_scenario_3_2_decisions),
      cmocka_unit_test(test_out_of_memory_answer_is_not_cached),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
