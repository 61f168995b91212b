/* test_err.c: the error vocabulary (calc/err.h) and its use by the decoder and the engine. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "calc/err.h"
#include "calc/exc.h"
#include "calc/pickle.h"

#define LAST_ERR CALC_ERR_BAD_UPSTREAM

/* Every value has its own description and an answer; the numbers never move. */
static void test_every_value_described_and_mapped(void **state) {
  (void)state;
  assert_int_equal(CALC_ERR_NOMEM, 1);
  assert_int_equal(CALC_ERR_CLOSED, 8);
  assert_int_equal(CALC_ERR_BAD_UPSTREAM, 11);
  /* calc-sniff's JSON carries these names; docs/sniff.md lists the decoder's three */
  assert_string_equal(calc_err_name(CALC_ERR_INVALID), "invalid");
  assert_string_equal(calc_err_name(CALC_ERR_LIMIT), "limit");
  assert_string_equal(calc_err_name(CALC_ERR_TRUNCATED), "truncated");
  for (int i = 0; i <= LAST_ERR; i++) {
    const char *s = calc_strerror((calc_err)i);
    assert_non_null(s);
    assert_true(strlen(s) > 0);
    for (int j = 0; j < i; j++) assert_string_not_equal(s, calc_strerror((calc_err)j));
    const char *name = calc_err_name((calc_err)i);
    assert_true(strlen(name) > 0);
    for (int j = 0; j < i; j++) assert_string_not_equal(name, calc_err_name((calc_err)j));
    calc_err_answer a = calc_err_reference((calc_err)i);
    if (i == CALC_OK) {
      assert_null(a.exc_class);
      assert_int_equal(a.status, 200);
    } else {
      assert_non_null(a.exc_class);
      assert_true(a.status == 400 || a.status == 500);
    }
  }
}

/* The reference's answers: what the server and the proxy put on the wire for each kind. */
static void test_reference_answers(void **state) {
  (void)state;
  struct { calc_err e; const char *cls; unsigned status; } want[] = {
      {CALC_ERR_NOMEM, "MemoryError", 400},          {CALC_ERR_INVALID, "ValueError", 400},
      {CALC_ERR_LIMIT, "ValueError", 400},           {CALC_ERR_TRUNCATED, "CalculatorClientError", 500},
      {CALC_ERR_FRAMING, "CalculatorClientError", 500}, {CALC_ERR_REFUSED, "CalculatorServerError", 500},
      {CALC_ERR_TIMEOUT, "CalculatorServerError", 500}, {CALC_ERR_BAD_UPSTREAM, "CalculatorServerError", 500},
  };
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
    calc_err_answer a = calc_err_reference(want[i].e);
    assert_string_equal(a.exc_class, want[i].cls);
    assert_int_equal(a.status, want[i].status);
  }
}

/* The decoder's refusals carry their library error and the class it maps to. */
static void test_decoder_errors_carry_calc_err(void **state) {
  (void)state;
  calc_tree t;
  calc_exc e;
  assert_int_equal(calc_unpickle_request((const uint8_t *)"garbage!", 8, &t, &e), -1);
  assert_int_equal(e.err, CALC_ERR_INVALID);
  assert_string_equal(e.type, "ValueError");
  assert_string_equal(e.msg, "Received data could not be deserialized");
  assert_int_equal(calc_unpickle_request(NULL, 0, &t, &e), -1);
  assert_int_equal(e.err, CALC_ERR_INVALID);
  assert_string_equal(e.msg, "Received data is not an Expression2");
  calc_exc_nomem(&e, "");
  assert_int_equal(e.err, CALC_ERR_NOMEM);
  assert_string_equal(e.type, "MemoryError");
  calc_exc_set(&e, "ZeroDivisionError", "division by zero"); /* Python's own: no library error */
  assert_int_equal(e.err, CALC_OK);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_every_value_described_and_mapped),
      cmocka_unit_test(test_reference_answers),
      cmocka_unit_test(test_decoder_errors_carry_calc_err),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
