/* test_conn.c: the server's connection machine without sockets (calc/conn.h).
 *
 * A "peer" here is a calc_buf: what the machine asks to send is appended to it, so a test
 * reads the answers as a client would, and compares them with calc_server_answer's. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "calc/conn.h"
#include "helpers/failmalloc.h"
#include "helpers/testmsg.h"

#define NOW 4242u

static calc_conn_config make_config(size_t max_in, size_t max_out) {
  calc_conn_config cfg = {.answer = {.cache_control = 65535}, .limits = {max_in, max_out}};
  return cfg;
}

/* A new connection (cfg must outlive it) and its peer, who has received nothing yet. */
static calc_conn *open_conn(const calc_conn_config *cfg, calc_buf *peer) {
  calc_conn *c = calc_conn_new(cfg, NULL);
  assert_non_null(c);
  calc_buf_init(peer, 0);
  return c;
}

static void close_conn(calc_conn *c, calc_buf *peer) {
  calc_buf_free(peer);
  calc_conn_free(c);
}

/* Carries out the machine's actions as a socket that takes everything at once, appending the
 * sent bytes to peer. Returns the last action (WAIT or CLOSE); counts the sends. */
static calc_conn_action drive(calc_conn *c, calc_buf *peer, int *sends) {
  calc_conn_action a;
  for (;;) {
    calc_conn_next(c, &a);
    if (a.kind != CALC_CONN_SEND) return a;
    assert_true(a.len > 0);
    assert_int_equal(calc_buf_append(peer, a.data, a.len), 0);
    if (sends) (*sends)++;
    calc_conn_sent(c, a.len, NOW);
  }
}

/* Feeds bytes in chunks of `chunk`, driving after each; returns the last action. */
static calc_conn_action feed(calc_conn *c, const uint8_t *data, size_t len, size_t chunk, calc_buf *peer,
                             int *sends) {
  calc_conn_action a = {.kind = CALC_CONN_WAIT};
  for (size_t off = 0; off < len && a.kind != CALC_CONN_CLOSE; off += chunk) {
    size_t n = len - off < chunk ? len - off : chunk;
    assert_true(n <= calc_conn_read_room(c));
    calc_conn_received(c, data + off, n, NOW);
    a = drive(c, peer, sends);
  }
  return a;
}

static const char *const exprs[] = {"max(2, 3) + 3", "1 / 0", "2 ** 100", "sin(PI / 2) * -4.5"};
#define NEXPR (sizeof exprs / sizeof exprs[0])

/* The requests for exprs, one after the other, and the answers they must get (both buffers
 * initialised here). */
static void build_pipeline(calc_buf *reqs, calc_buf *answers) {
  calc_buf_init(reqs, 0);
  calc_buf_init(answers, 0);
  for (size_t i = 0; i < NEXPR; i++) {
    calc_buf one;
    calc_buf_init(&one, 0);
    testmsg_request(exprs[i], 1000 + (uint32_t)i, true, i % 2 == 0, 65535, &one);
    assert_int_equal(calc_buf_append(reqs, one.data, one.len), 0);
    testmsg_server_answer(&one, NOW, answers);
    calc_buf_free(&one);
  }
}

/* The same pipelined requests whole, byte by byte, two messages' worth and odd chunks at a
 * time: the same answers, one send per answer, and the peer's FIN closes. */
static void test_whole_bytewise_and_pipelined(void **state) {
  (void)state;
  calc_buf reqs, want;
  build_pipeline(&reqs, &want);
  const size_t chunks[] = {reqs.len, 1, 7, 600, reqs.len / 2 + 1};
  for (size_t k = 0; k < sizeof chunks / sizeof chunks[0]; k++) {
    calc_conn_config cfg = make_config(0, 0);
    calc_buf peer;
    calc_conn *c = open_conn(&cfg, &peer);
    int sends = 0;
    calc_conn_action a = feed(c, reqs.data, reqs.len, chunks[k], &peer, &sends);
    assert_int_equal(a.kind, CALC_CONN_WAIT);
    assert_int_equal(sends, (int)NEXPR);
    testmsg_assert_same(&peer, &want);
    assert_int_equal(calc_conn_pending_input(c), 0);
    calc_conn_peer_closed(c, NOW);
    a = drive(c, &peer, &sends);
    assert_int_equal(a.kind, CALC_CONN_CLOSE);
    assert_int_equal(a.why, CALC_ERR_CLOSED);
    assert_int_equal(sends, (int)NEXPR); /* nothing more was said */
    close_conn(c, &peer);
  }
  calc_buf_free(&reqs);
  calc_buf_free(&want);
}

/* A total length under 12: the reference's 500, then the server closes first; what follows
 * is neither read nor answered. */
static void test_bad_length_answers_then_closes(void **state) {
  (void)state;
  calc_buf reqs, want;
  calc_buf_init(&reqs, 0);
  calc_buf_init(&want, 0);
  testmsg_request("1 + 1", 1, true, false, 65535, &reqs);
  testmsg_server_answer(&reqs, NOW, &want);
  const uint8_t bad[12] = {0, 0, 0, 0, 0, 5, 0x04, 0, 0, 0, 0, 0};
  calc_buf_append(&reqs, bad, sizeof bad);
  calc_answer_info info;
  static const calc_server_opts o = {.cache_control = 65535};
  assert_int_equal(calc_server_answer_bad_length(&o, 5, NOW, &want, &info), 0);
  for (size_t chunk = 1; chunk <= reqs.len; chunk += reqs.len - 1) {
    calc_conn_config cfg = make_config(0, 0);
    calc_buf peer;
    calc_conn *c = open_conn(&cfg, &peer);
    calc_conn_action a = feed(c, reqs.data, reqs.len, chunk, &peer, NULL);
    assert_int_equal(a.kind, CALC_CONN_CLOSE);
    assert_int_equal(a.why, CALC_ERR_INVALID);
    testmsg_assert_same(&peer, &want);
    assert_int_equal(calc_conn_read_room(c), 0);
    assert_false(calc_conn_wants_read(c));
    close_conn(c, &peer);
  }
  calc_buf_free(&reqs);
  calc_buf_free(&want);
}

/* Bytes that frame as a message but are no pickle: the reference's 400, the connection stays. */
static void test_garbage_payload_is_a_400(void **state) {
  (void)state;
  uint8_t msg[20] = {0, 0, 0, 1, 0, 20, 0x1c, 0, 0xff, 0xff, 0, 0, 'g', 'a', 'r', 'b', 'a', 'g', 'e', '!'};
  calc_conn_config cfg = make_config(0, 0);
  calc_buf peer;
  calc_conn *c = open_conn(&cfg, &peer);
  calc_conn_action a = feed(c, msg, sizeof msg, sizeof msg, &peer, NULL);
  assert_int_equal(a.kind, CALC_CONN_WAIT);
  calc_header h;
  assert_int_equal(calc_frame_parse(peer.data, peer.len, &h), (ssize_t)peer.len);
  assert_int_equal(h.status, 400);
  assert_true(calc_conn_wants_read(c));
  close_conn(c, &peer);
}

/* The peer closes (or goes silent) inside a message: the reference's "too short" 500 for a
 * partial header, "ended after" for a partial payload, then CLOSE. */
static void test_truncation_and_timeout(void **state) {
  (void)state;
  calc_buf req;
  calc_buf_init(&req, 0);
  testmsg_request("1 + 2", 1, true, false, 65535, &req);
  static const calc_server_opts o = {.cache_control = 65535};
  const size_t cuts[] = {5, 12, 30};
  for (int timeout = 0; timeout < 2; timeout++) {
    for (size_t k = 0; k < 3; k++) {
      calc_buf want;
      calc_buf_init(&want, 0);
      calc_answer_info info;
      assert_int_equal(calc_server_answer_truncated(&o, cuts[k], cuts[k] >= 12 ? (unsigned)req.len : 0, NOW,
                                                    &want, &info), 0);
      calc_conn_config cfg = make_config(0, 0);
      calc_buf peer;
      calc_conn *c = open_conn(&cfg, &peer);
      assert_int_equal(feed(c, req.data, cuts[k], 1, &peer, NULL).kind, CALC_CONN_WAIT);
      assert_int_equal(peer.len, 0);
      assert_int_equal(calc_conn_pending_input(c), cuts[k]);
      if (timeout) calc_conn_timed_out(c, NOW);
      else calc_conn_peer_closed(c, NOW);
      calc_conn_action a = drive(c, &peer, NULL);
      assert_int_equal(a.kind, CALC_CONN_CLOSE);
      assert_int_equal(a.why, timeout ? CALC_ERR_TIMEOUT : CALC_ERR_CLOSED);
      testmsg_assert_same(&peer, &want);
      calc_buf_free(&want);
      close_conn(c, &peer);
    }
  }
  /* Silent with nothing pending: closed without a word. */
  calc_conn_config cfg = make_config(0, 0);
  calc_conn *c = calc_conn_new(&cfg, NULL);
  calc_conn_timed_out(c, NOW);
  calc_conn_action a;
  calc_conn_next(c, &a);
  assert_int_equal(a.kind, CALC_CONN_CLOSE);
  assert_int_equal(a.why, CALC_ERR_TIMEOUT);
  calc_conn_free(c);
  calc_buf_free(&req);
}

/* A socket that takes part of an answer: the rest waits for writability, nothing is lost. */
static void test_partial_sends(void **state) {
  (void)state;
  calc_buf reqs, want;
  build_pipeline(&reqs, &want);
  calc_conn_config cfg = make_config(0, 0);
  calc_buf peer;
  calc_conn *c = open_conn(&cfg, &peer);
  calc_conn_received(c, reqs.data, reqs.len, NOW);
  calc_conn_action a;
  for (;;) {
    calc_conn_next(c, &a);
    if (a.kind == CALC_CONN_WAIT) {
      if (!calc_conn_wants_write(c)) break;
      calc_conn_writable(c);
      continue;
    }
    assert_int_equal(a.kind, CALC_CONN_SEND);
    size_t n = a.len > 10 ? 10 : a.len; /* the socket takes 10 bytes at a time */
    calc_buf_append(&peer, a.data, n);
    calc_conn_sent(c, n, NOW);
    if (n < a.len) {
      assert_true(calc_conn_wants_write(c));
      calc_conn_next(c, &a);
      assert_int_equal(a.kind, CALC_CONN_WAIT); /* no SEND into a full socket */
      calc_conn_writable(c);
    }
  }
  testmsg_assert_same(&peer, &want);
  close_conn(c, &peer);
  calc_buf_free(&reqs);
  calc_buf_free(&want);
}

/* A peer that sends without reading: answers stop at max_output, reading stops at max_input,
 * and once it reads, the held-back requests are answered in order. */
static void test_backpressure_bounds_a_peer_that_does_not_read(void **state) {
  (void)state;
  calc_buf one, answer;
  calc_buf_init(&one, 0);
  calc_buf_init(&answer, 0);
  testmsg_request("max(2, 3) + 3", 1, true, true, 65535, &one);
  testmsg_server_answer(&one, NOW, &answer);
  calc_conn_config cfg = make_config(100000, 70000);
  calc_conn *c = calc_conn_new(&cfg, NULL);
  size_t fed = 0, requests = 0;
  while (calc_conn_read_room(c) >= one.len) {
    calc_conn_received(c, one.data, one.len, NOW);
    fed += one.len;
    requests++;
    assert_true(calc_conn_pending_output(c) < 70000 + CALC_MAX_MESSAGE);
    assert_true(calc_conn_pending_input(c) <= 100000);
  }
  assert_true(fed > 170000 / 2); /* both buffers filled */
  assert_true(calc_conn_pending_output(c) >= 70000);
  /* The peer starts reading: everything is answered, in order, byte for byte. */
  size_t got = 0;
  calc_conn_action a;
  while (got < requests) {
    calc_conn_next(c, &a);
    assert_int_equal(a.kind, CALC_CONN_SEND);
    assert_int_equal(a.len, answer.len);
    assert_memory_equal(a.data, answer.data, answer.len);
    calc_conn_sent(c, a.len, NOW);
    got++;
  }
  calc_conn_next(c, &a);
  assert_int_equal(a.kind, CALC_CONN_WAIT);
  assert_int_equal(calc_conn_pending_input(c), 0);
  assert_int_equal(calc_conn_read_room(c), 100000);
  calc_conn_free(c);
  calc_buf_free(&one);
  calc_buf_free(&answer);
}

/* The memo answers repeats byte for byte like a fresh computation. */
static void test_with_answer_memo(void **state) {
  (void)state;
  calc_buf reqs, want;
  build_pipeline(&reqs, &want);
  calc_conn_config cfg = make_config(0, 0);
  cfg.memo = calc_answer_memo_new(1 << 20);
  for (int round = 0; round < 2; round++) {
    calc_buf peer;
    calc_conn *c = open_conn(&cfg, &peer);
    feed(c, reqs.data, reqs.len, 3, &peer, NULL);
    testmsg_assert_same(&peer, &want);
    close_conn(c, &peer);
  }
  calc_answer_memo_free(cfg.memo);
  calc_buf_free(&reqs);
  calc_buf_free(&want);
}

/* Failing each allocation in turn over a pipelined exchange with a truncated tail: every
 * answer given is the right one, in order; a failure ends in CLOSE (out of memory) or in the
 * answer the reference gives when memory runs out; never a crash or a leak (ASan). */
static void test_failed_allocations(void **state) {
  (void)state;
  calc_buf reqs, want;
  build_pipeline(&reqs, &want);
  bool completed = false;
  long failures = 0;
  for (long i = 0; i < 20000 && !completed; i++) {
    calc_conn_config cfg = make_config(0, 0);
    calc_buf peer;
    calc_buf_init(&peer, 0);
    assert_int_equal(calc_buf_reserve(&peer, 1 << 16), 0); /* the test's side never fails */
    failmalloc_arm(i);
    calc_set_allocator(&failmalloc);
    cfg.memo = calc_answer_memo_new(1 << 20);
    calc_conn *c = cfg.memo ? calc_conn_new(&cfg, NULL) : NULL;
    calc_conn_action a = {.kind = CALC_CONN_CLOSE, .why = CALC_ERR_NOMEM};
    if (c) {
      a = feed(c, reqs.data, reqs.len, 50, &peer, NULL);
      if (a.kind != CALC_CONN_CLOSE) {
        calc_conn_received(c, reqs.data, 20, NOW); /* a partial header: answered at the FIN */
        calc_conn_peer_closed(c, NOW);
        a = drive(c, &peer, NULL);
      }
    }
    calc_set_allocator(NULL);
    assert_int_equal(a.kind, CALC_CONN_CLOSE);
    if (failmalloc_count <= i) { /* allocation i never came: the run was whole */
      completed = true;
      assert_int_equal(a.why, CALC_ERR_CLOSED);
      assert_true(peer.len > want.len);
      assert_memory_equal(peer.data, want.data, want.len);
    } else {
      assert_true(a.why == CALC_ERR_NOMEM || a.why == CALC_ERR_CLOSED);
      failures++;
    }
    /* Each answer given frames as one message. */
    size_t off = 0;
    calc_header h;
    ssize_t n;
    while (off < peer.len && (n = calc_frame_parse(peer.data + off, peer.len - off, &h)) > 0) off += (size_t)n;
    assert_int_equal(off, peer.len);
    calc_conn_free(c);
    calc_answer_memo_free(cfg.memo);
    calc_buf_free(&peer);
  }
  failmalloc_arm(-1);
  assert_true(completed);
  assert_true(failures > 50); /* the exchange allocates that often: each was failed once */
  calc_buf_free(&reqs);
  calc_buf_free(&want);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_whole_bytewise_and_pipelined),
      cmocka_unit_test(test_bad_length_answers_then_closes),
      cmocka_unit_test(test_garbage_payload_is_a_400),
      cmocka_unit_test(test_truncation_and_timeout),
      cmocka_unit_test(test_partial_sends),
      cmocka_unit_test(test_backpressure_bounds_a_peer_that_does_not_read),
      cmocka_unit_test(test_with_answer_memo),
      cmocka_unit_test(test_failed_allocations),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
