/* test_server_core.c: the server's answers without sockets (calc/server.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "calc/parse.h"
#include "calc/pickle.h"
#include "calc/server.h"
#include "helpers/failmalloc.h"
#include "helpers/testmsg.h"

static const calc_server_opts defaults = {.cache_control = 65535};

/* Builds a framed request for `expr` into out. */
static void build_request(const char *expr, bool steps, bool is_request, calc_buf *out) {
  testmsg_request(expr, 1234, is_request, steps, 65535, out);
}


/* A request, its answer, the answer's header and what calc_server_answer said of it. */
typedef struct exchange {
  calc_buf req, resp;
  calc_header h;
  calc_answer_info info;
} exchange;

static void exchange_init(exchange *x) {
  calc_buf_init(&x->req, 0);
  calc_buf_init(&x->resp, 0);
}

static void exchange_free(exchange *x) {
  calc_buf_free(&x->req);
  calc_buf_free(&x->resp);
}

/* Frames x->req, answers it into x->resp (emptied first), and decodes the answer's header. */
static void answer(const calc_server_opts *o, exchange *x) {
  calc_msg m;
  testmsg_frame(&x->req, &m);
  calc_buf_reset(&x->resp);
  assert_int_equal(calc_server_answer(o, &m, 99, &x->resp, &x->info), 0);
  assert_int_equal(calc_frame_parse(x->resp.data, x->resp.len, &x->h), (ssize_t)x->resp.len);
}

/* A new request for expr in x->req, answered with the default options. */
static void ask(const char *expr, bool steps, bool is_request, exchange *x) {
  calc_buf_reset(&x->req);
  build_request(expr, steps, is_request, &x->req);
  answer(&defaults, x);
}

static void test_e2_with_and_without_steps(void **state) {
  (void)state;
  exchange x;
  exchange_init(&x);
  ask("max(2, 3) + 3", true, true, &x);
  assert_int_equal(x.req.len, 376); /* the report's E2 request */
  assert_int_equal(x.resp.len, 60); /* the report's E2 response with steps */
  assert_int_equal(x.h.time, 99);
  assert_true(x.h.cache && x.h.steps && !x.h.is_request);
  assert_int_equal(x.h.status, 200);
  assert_int_equal(x.h.cache_control, 65535);

  ask("max(2, 3) + 3", false, true, &x);
  assert_false(x.h.steps); /* S only when the steps list is not empty */
  exchange_free(&x);
}

static void test_errors_are_400_with_cache_flags(void **state) {
  (void)state;
  exchange x;
  exchange_init(&x);
  ask("1 / 0", true, true, &x);
  assert_int_equal(x.h.status, 400);
  assert_true(x.h.cache && !x.h.steps);
  assert_string_equal(x.info.error_type, "ZeroDivisionError");
  assert_string_equal(x.info.error_msg, "division by zero");

  ask("1 + 2", true, false, &x); /* a response where a request was expected */
  assert_int_equal(x.h.status, 400);
  assert_string_equal(x.info.error_type, "TypeError");
  assert_string_equal(x.info.error_msg, "Received a response instead of a request");
  exchange_free(&x);
}

static void test_no_cache_and_max_age(void **state) {
  (void)state;
  exchange x;
  exchange_init(&x);
  build_request("2 ** 10", true, true, &x.req);
  const calc_server_opts no_cache = {.no_cache = true, .cache_control = 65535};
  answer(&no_cache, &x);
  assert_false(x.h.cache);
  assert_int_equal(x.h.cache_control, 0);
  const calc_server_opts short_age = {.cache_control = 30};
  answer(&short_age, &x);
  assert_true(x.h.cache);
  assert_int_equal(x.h.cache_control, 30);
  exchange_free(&x);
}

static void test_framing_errors(void **state) {
  (void)state;
  calc_buf resp;
  calc_buf_init(&resp, 0);
  calc_answer_info info;
  calc_header h;
  assert_int_equal(calc_server_answer_bad_length(&defaults, 5, 0, &resp, &info), 0);
  assert_int_equal(resp.len, 164); /* vector total-length-too-small */
  calc_frame_parse(resp.data, resp.len, &h);
  assert_int_equal(h.status, 500);
  calc_buf_reset(&resp);
  assert_int_equal(calc_server_answer_truncated(&defaults, 5, 0, 0, &resp, &info), 0);
  assert_int_equal(resp.len, 146); /* vector short-request */
  assert_non_null(strstr(info.error_msg, "The data is too short (5 bytes) to be a valid header"));
  calc_buf_free(&resp);
}

static void test_limits_answer_400_quickly(void **state) {
  (void)state;
  exchange x;
  exchange_init(&x);
  ask("9 ** 9 ** 9", true, true, &x);
  assert_int_equal(x.h.status, 400);
  assert_string_equal(x.info.error_type, "OverflowError");
  exchange_free(&x);
}

/* The memo answers repeated requests with the same bytes and a fresh time stamp; rand never. */
static void test_answer_memo(void **state) {
  (void)state;
  calc_answer_memo *memo = calc_answer_memo_new(1 << 20);
  calc_buf req, first, again, plain;
  calc_buf_init(&req, 0);
  calc_buf_init(&first, 0);
  calc_buf_init(&again, 0);
  calc_buf_init(&plain, 0);
  build_request("(sin(max(2, 3 * 4, 5, 6 * ((7 * 8) / 9), 10 / 11)) / 12) * 13", true, true, &req);
  calc_msg m;
  testmsg_frame(&req, &m);
  calc_answer_info info, info2;
  assert_int_equal(calc_server_answer_memo(&defaults, memo, &m, 100, &first, &info), 0);
  assert_true(info.deterministic);
  assert_int_equal(calc_server_answer_memo(&defaults, memo, &m, 200, &again, &info2), 0);
  assert_int_equal(calc_server_answer(&defaults, &m, 200, &plain, &info), 0);
  assert_int_equal(again.len, 564);
  assert_memory_equal(again.data, plain.data, plain.len); /* time stamp 200 included */
  assert_int_equal(info2.status, 200);
  assert_true(info2.steps);

  /* rand: each answer draws from the request's own generator state; never remembered. */
  calc_buf_reset(&req);
  build_request("rand(0, 1)", false, true, &req);
  testmsg_frame(&req, &m);
  calc_buf_reset(&first);
  assert_int_equal(calc_server_answer_memo(&defaults, memo, &m, 100, &first, &info), 0);
  assert_false(info.deterministic);
  calc_answer_memo_free(memo);
  calc_buf_free(&req);
  calc_buf_free(&first);
  calc_buf_free(&again);
  calc_buf_free(&plain);
}

/* An answer that failed for lack of memory (400 MemoryError) is not remembered: once memory
 * is back the same request is computed afresh. Each allocation of the answer is failed once. */
static void test_out_of_memory_answer_is_recomputed(void **state) {
  (void)state;
  calc_buf req, right;
  calc_buf_init(&req, 0);
  calc_buf_init(&right, 0);
  build_request("(sin(max(2, 3 * 4, 5, 6 * ((7 * 8) / 9), 10 / 11)) / 12) * 13", true, true, &req);
  calc_msg m;
  testmsg_frame(&req, &m);
  calc_answer_info info;
  assert_int_equal(calc_server_answer(&defaults, &m, 100, &right, &info), 0);
  long memory_errors = 0;
  bool whole = false;
  for (long i = 0; i < 5000 && !whole; i++) {
    calc_answer_memo *memo = calc_answer_memo_new(1 << 20);
    calc_buf first, again;
    calc_buf_init(&first, 0);
    calc_buf_init(&again, 0);
    assert_int_equal(calc_buf_reserve(&first, 4096), 0);
    failmalloc_arm(i);
    calc_set_allocator(&failmalloc);
    int rc = calc_server_answer_memo(&defaults, memo, &m, 100, &first, &info);
    calc_set_allocator(NULL);
    whole = failmalloc_count <= i;
    if (rc == 0 && info.status == 400) {
      assert_string_equal(info.error_type, "MemoryError");
      assert_false(info.deterministic);
      memory_errors++;
    }
    /* Memory is back: the same request gets the right answer, from the memo or computed. */
    assert_int_equal(calc_server_answer_memo(&defaults, memo, &m, 100, &again, &info), 0);
    testmsg_assert_same(&again, &right);
    calc_buf_free(&first);
    calc_buf_free(&again);
    calc_answer_memo_free(memo);
  }
  failmalloc_arm(-1);
  assert_true(whole);
  assert_true(memory_errors > 10); /* decoding and evaluation each ran out of memory */
  calc_buf_free(&req);
  calc_buf_free(&right);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_e2_with_and_without_steps),
      cmocka_unit_test(test_errors_are_400_with_cache_flags),
      cmocka_unit_test(test_no_cache_and_max_age),
      cmocka_unit_test(test_framing_errors),
      cmocka_unit_test(test_limits_answer_400_quickly),
      cmocka_unit_test(test_answer_memo),
      cmocka_unit_test(test_out_of_memory_answer_is_recomputed),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
