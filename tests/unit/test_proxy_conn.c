/* test_proxy_conn.c: the proxy's connection machine without sockets (calc/proxy_conn.h).
 *
 * A simulation carries out the machine's actions and writes them down as a trace, one letter
 * each: O open upstream, U send upstream, X close upstream, C send to the client, Z close the
 * client. The order of the letters is what the captures show (X before C on a miss). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "calc/proxy.h"
#include "calc/proxy_conn.h"
#include "helpers/failmalloc.h"
#include "helpers/testmsg.h"

#define E1 "(sin(max(2, 3 * 4, 5, 6 * ((7 * 8) / 9), 10 / 11)) / 12) * 13"
#define E2 "max(2, 3) + 3"
#define NOW 1000u

typedef struct sim {
  calc_proxy_config cfg;
  calc_proxy_conn *pc;
  calc_buf to_client, to_server;
  char trace[256];
  size_t ntrace;
  calc_err why;            /* of the CLOSE_CLIENT, once seen */
  bool closed;
  calc_cache *own_cache;   /* made by sim_init, freed by sim_free */
} sim;

/* A client connection of a proxy with that cache, or with a new 1 MiB one of its own (NULL). */
static void sim_init(sim *s, calc_cache *cache) {
  memset(s, 0, sizeof *s);
  if (!cache) {
    cache = s->own_cache = calc_cache_new(1 << 20);
    assert_non_null(cache);
  }
  s->cfg = (calc_proxy_config){.cache = cache, .upstream_timeout_s = 10};
  s->pc = calc_proxy_conn_new(&s->cfg, s);
  assert_non_null(s->pc);
  calc_buf_init(&s->to_client, 0);
  calc_buf_init(&s->to_server, 0);
  assert_int_equal(calc_buf_reserve(&s->to_client, 1 << 16), 0);
  assert_int_equal(calc_buf_reserve(&s->to_server, 1 << 16), 0);
}

static void sim_free(sim *s) {
  calc_proxy_conn_free(s->pc);
  calc_buf_free(&s->to_client);
  calc_buf_free(&s->to_server);
  calc_cache_free(s->own_cache);
}

static void mark(sim *s, char c) {
  if (s->ntrace + 1 < sizeof s->trace) s->trace[s->ntrace++] = c;
  s->trace[s->ntrace] = 0;
}

/* Carries out every action until the machine waits; sockets take everything at once. */
static void run(sim *s) {
  calc_proxy_conn_action a;
  while (!s->closed) {
    calc_proxy_conn_next(s->pc, &a);
    switch (a.kind) {
      case CALC_PROXY_WAIT: return;
      case CALC_PROXY_OPEN_UPSTREAM: mark(s, 'O'); break;
      case CALC_PROXY_CLOSE_UPSTREAM: mark(s, 'X'); break;
      case CALC_PROXY_SEND_UPSTREAM:
        mark(s, 'U');
        assert_int_equal(calc_buf_append(&s->to_server, a.data, a.len), 0);
        calc_proxy_conn_upstream_sent(s->pc, a.len);
        break;
      case CALC_PROXY_SEND_CLIENT:
        mark(s, 'C');
        assert_int_equal(calc_buf_append(&s->to_client, a.data, a.len), 0);
        calc_proxy_conn_client_sent(s->pc, a.len, NOW);
        break;
      case CALC_PROXY_CLOSE_CLIENT:
        mark(s, 'Z');
        s->why = a.why;
        s->closed = true;
        return;
    }
  }
}

static void client_sends(sim *s, const calc_buf *req, size_t chunk) {
  for (size_t off = 0; off < req->len; off += chunk) {
    size_t n = req->len - off < chunk ? req->len - off : chunk;
    calc_proxy_conn_client_received(s->pc, req->data + off, n, NOW);
    run(s);
  }
}

/* The server sends resp in chunks on the connection it accepted. */
static void server_sends(sim *s, const calc_buf *resp, size_t chunk) {
  for (size_t off = 0; off < resp->len && !s->closed; off += chunk) {
    size_t n = resp->len - off < chunk ? resp->len - off : chunk;
    calc_proxy_conn_upstream_received(s->pc, resp->data + off, n, NOW);
    run(s);
  }
}

/* The server side of an exchange: connects, then sends resp in chunks. */
static void server_replies(sim *s, const calc_buf *resp, size_t chunk) {
  calc_proxy_conn_upstream_connected(s->pc);
  run(s);
  server_sends(s, resp, chunk);
}

/* The same, answering what was forwarded as calc-server would. */
static void server_answers(sim *s, size_t chunk) {
  calc_buf resp;
  calc_buf_init(&resp, 0);
  calc_proxy_conn_upstream_connected(s->pc);
  run(s);
  testmsg_server_answer(&s->to_server, NOW, &resp);
  calc_buf_reset(&s->to_server);
  server_sends(s, &resp, chunk);
  calc_buf_free(&resp);
}

static void request(const char *expr, calc_buf *out) {
  calc_buf_reset(out);
  testmsg_request(expr, 7, true, true, 65535, out);
}

/* What the server answers to req, and the proxy's refused answer. */
static void server_answer_to(const calc_buf *req, calc_buf *out) {
  calc_buf_reset(out);
  testmsg_server_answer(req, NOW, out);
}

static void assert_last_answer(sim *s, const calc_buf *want) {
  assert_true(s->to_client.len >= want->len);
  assert_memory_equal(s->to_client.data + s->to_client.len - want->len, want->data, want->len);
}

/* Scenarios 3.2 and 3.3, whole and byte by byte on both sides: E1 miss (open, forward, close
 * upstream, then answer), E1 hit (no upstream), E2 miss; with the server down, E2 gets the
 * reference's 170-byte answer after the refused connection is closed. */
static void test_scenarios_3_2_and_3_3(void **state) {
  (void)state;
  for (size_t chunk = 1; chunk <= 1000; chunk += 999) {
    for (int server_down = 0; server_down < 2; server_down++) {
      calc_buf req, want;
      calc_buf_init(&req, 0);
      calc_buf_init(&want, 0);
      sim s;
      sim_init(&s, NULL);
      request(E1, &req);
      client_sends(&s, &req, chunk);
      assert_string_equal(s.trace, "O");
      calc_proxy_conn_upstream_connected(s.pc);
      run(&s);
      assert_string_equal(s.trace, "OU");
      /* The forwarded request carries the same payload, re-packed with the proxy's time. */
      assert_int_equal(s.to_server.len, req.len);
      assert_memory_equal(s.to_server.data + 12, req.data + 12, req.len - 12);
      server_answer_to(&s.to_server, &want);
      calc_buf_reset(&s.to_server);
      server_sends(&s, &want, chunk);
      assert_string_equal(s.trace, "OUXC"); /* upstream closed before the client's answer */
      assert_int_equal(s.to_client.len, 564);
      assert_memory_equal(s.to_client.data, want.data, want.len);

      client_sends(&s, &req, chunk); /* E1 again: a hit */
      assert_string_equal(s.trace, "OUXCC");
      assert_last_answer(&s, &want);

      request(E2, &req);
      client_sends(&s, &req, chunk);
      assert_string_equal(s.trace, "OUXCCO");
      if (!server_down) {
        server_answers(&s, chunk);
        assert_string_equal(s.trace, "OUXCCOUXC");
        server_answer_to(&req, &want);
        assert_int_equal(want.len, 60);
        assert_int_equal(s.to_client.len, 564 + 564 + 60);
      } else {
        calc_proxy_conn_upstream_error(s.pc, CALC_ERR_REFUSED, "Connection refused", NOW);
        run(&s);
        assert_string_equal(s.trace, "OUXCCOXC");
        calc_buf_reset(&want);
        assert_int_equal(calc_proxy_error("CalculatorServerError", CALC_PROXY_REFUSED_MSG, NOW, &want), 0);
        assert_int_equal(want.len, 170);
        assert_last_answer(&s, &want);
      }
      calc_proxy_conn_client_closed(s.pc, NOW); /* the client's FIN leads the teardown */
      run(&s);
      assert_true(s.closed);
      assert_int_equal(s.why, CALC_ERR_CLOSED);
      sim_free(&s);
      calc_buf_free(&req);
      calc_buf_free(&want);
    }
  }
}

/* Two requests in one read: the second waits until the first's exchange is over. */
static void test_pipelined_requests_one_at_a_time(void **state) {
  (void)state;
  calc_buf reqs, one;
  calc_buf_init(&reqs, 0);
  calc_buf_init(&one, 0);
  request(E1, &one);
  calc_buf_append(&reqs, one.data, one.len);
  request(E2, &one);
  calc_buf_append(&reqs, one.data, one.len);
  sim s;
  sim_init(&s, NULL);
  client_sends(&s, &reqs, reqs.len);
  assert_string_equal(s.trace, "O");
  server_answers(&s, 100000);
  assert_string_equal(s.trace, "OUXCO");
  server_answers(&s, 100000);
  assert_string_equal(s.trace, "OUXCOUXC");
  assert_int_equal(s.to_client.len, 564 + 60);
  sim_free(&s);
  calc_buf_free(&reqs);
  calc_buf_free(&one);
}

/* Upstream faults: each closes the upstream connection, then answers the proxy's 500 saying
 * what happened; the client connection goes on serving. */
static void test_upstream_faults(void **state) {
  (void)state;
  static const uint8_t garbage[] = {0, 0, 0, 0, 0, 3, 'g', 'a', 'r', 'b', 'a', 'g'};
  const char *want_msgs[] = {"Connection reset by server", "No response from server within 10 s",
                             "Invalid response from server: total length 3",
                             "Connection closed by server after 5 bytes, before a whole response",
                             "Cannot connect to server: Network is unreachable"};
  for (int fault = 0; fault < 5; fault++) {
    calc_buf req, want;
    calc_buf_init(&req, 0);
    calc_buf_init(&want, 0);
    sim s;
    sim_init(&s, NULL);
    request(E2, &req);
    client_sends(&s, &req, req.len);
    if (fault != 4) {
      calc_proxy_conn_upstream_connected(s.pc);
      run(&s);
    }
    switch (fault) {
      case 0: calc_proxy_conn_upstream_error(s.pc, CALC_ERR_RESET, "Connection reset by peer", NOW); break;
      case 1: calc_proxy_conn_upstream_error(s.pc, CALC_ERR_TIMEOUT, NULL, NOW); break;
      case 2: calc_proxy_conn_upstream_received(s.pc, garbage, sizeof garbage, NOW); break;
      case 3:
        calc_proxy_conn_upstream_received(s.pc, garbage, 5, NOW);
        calc_proxy_conn_upstream_closed(s.pc, NOW);
        break;
      case 4: calc_proxy_conn_upstream_error(s.pc, CALC_ERR_SYSTEM, "Network is unreachable", NOW); break;
    }
    run(&s);
    assert_string_equal(s.trace, fault == 4 ? "OXC" : "OUXC");
    assert_int_equal(calc_proxy_error("CalculatorServerError", want_msgs[fault], NOW, &want), 0);
    testmsg_assert_same(&s.to_client, &want);
    /* Events of the connection that is gone change nothing. */
    calc_proxy_conn_upstream_received(s.pc, garbage, sizeof garbage, NOW);
    calc_proxy_conn_upstream_closed(s.pc, NOW);
    run(&s);
    assert_int_equal(s.to_client.len, want.len);
    /* The next request is served as usual. */
    calc_buf_reset(&s.to_server);
    client_sends(&s, &req, req.len);
    server_answers(&s, 7);
    assert_int_equal(s.to_client.len, want.len + 60);
    sim_free(&s);
    calc_buf_free(&req);
    calc_buf_free(&want);
  }
}

/* The client's bad inputs: a bad total length is answered and closed; a partial request at
 * the FIN is answered "too short" and closed; a FIN while the server works still gets the
 * answer. */
static void test_client_bad_inputs_and_half_close(void **state) {
  (void)state;
  calc_cache *cache = calc_cache_new(1 << 20);
  calc_buf req, want;
  calc_buf_init(&req, 0);
  calc_buf_init(&want, 0);
  static const uint8_t bad[12] = {0, 0, 0, 0, 0, 5, 0x04, 0, 0, 0, 0, 0};
  sim s;
  sim_init(&s, cache);
  calc_proxy_conn_client_received(s.pc, bad, sizeof bad, NOW);
  run(&s);
  assert_string_equal(s.trace, "CZ");
  assert_int_equal(s.why, CALC_ERR_INVALID);
  assert_int_equal(calc_proxy_error("CalculatorClientError",
                                    "Invalid total length: 5 (must be between 12 and 65536 bytes inclusive)", NOW,
                                    &want), 0);
  testmsg_assert_same(&s.to_client, &want);
  sim_free(&s);

  sim_init(&s, cache);
  request(E2, &req);
  calc_proxy_conn_client_received(s.pc, req.data, 30, NOW);
  calc_proxy_conn_client_closed(s.pc, NOW);
  run(&s);
  assert_string_equal(s.trace, "CZ");
  assert_int_equal(s.why, CALC_ERR_CLOSED);
  calc_buf_reset(&want);
  calc_proxy_error("CalculatorClientError", "The data is too short (30 bytes) to be a whole request", NOW, &want);
  assert_memory_equal(s.to_client.data, want.data, want.len);
  sim_free(&s);

  sim_init(&s, cache);
  client_sends(&s, &req, req.len);
  calc_proxy_conn_client_closed(s.pc, NOW);
  assert_int_equal(calc_proxy_conn_client_read_room(s.pc), 0);
  run(&s);
  server_answers(&s, 1);
  assert_string_equal(s.trace, "OUXCZ");
  assert_int_equal(s.to_client.len, 60);
  sim_free(&s);

  /* Silent too long while idle: closed without a word. */
  sim_init(&s, cache);
  calc_proxy_conn_client_timed_out(s.pc);
  run(&s);
  assert_string_equal(s.trace, "Z");
  assert_int_equal(s.why, CALC_ERR_TIMEOUT);
  sim_free(&s);
  calc_cache_free(cache);
  calc_buf_free(&req);
  calc_buf_free(&want);
}

/* Failing each allocation in turn over scenario 3.2: the answers given are the right ones or
 * the proxy gives up on the client (out of memory); no crash, no leak (ASan). */
static void test_failed_allocations(void **state) {
  (void)state;
  calc_buf e1, e2, a1, a2;
  calc_buf_init(&e1, 0);
  calc_buf_init(&e2, 0);
  calc_buf_init(&a1, 0);
  calc_buf_init(&a2, 0);
  request(E1, &e1);
  request(E2, &e2);
  server_answer_to(&e1, &a1);
  server_answer_to(&e2, &a2);
  bool whole = false;
  long failures = 0;
  for (long i = 0; i < 20000 && !whole; i++) {
    sim s;
    sim_init(&s, NULL);
    failmalloc_arm(i);
    calc_set_allocator(&failmalloc);
    client_sends(&s, &e1, 100);
    if (!s.closed && strcmp(s.trace, "O") == 0) server_replies(&s, &a1, 100);
    client_sends(&s, &e1, e1.len);
    client_sends(&s, &e2, e2.len);
    if (!s.closed && s.ntrace && s.trace[s.ntrace - 1] == 'O') server_replies(&s, &a2, 100);
    calc_set_allocator(NULL);
    if (failmalloc_count <= i) {
      whole = true;
      assert_string_equal(s.trace, "OUXCCOUXC");
    } else {
      failures++;
      if (s.closed) assert_int_equal(s.why, CALC_ERR_NOMEM);
    }
    sim_free(&s);
  }
  failmalloc_arm(-1);
  assert_true(whole);
  assert_true(failures > 10); /* buffers, the cache's entries: each failed once */
  calc_buf_free(&e1);
  calc_buf_free(&e2);
  calc_buf_free(&a1);
  calc_buf_free(&a2);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_scenarios_3_2_and_3_3),
      cmocka_unit_test(test_pipelined_requests_one_at_a_time),
      cmocka_unit_test(test_upstream_faults),
      cmocka_unit_test(test_client_bad_inputs_and_half_close),
      cmocka_unit_test(test_failed_allocations),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
