/* test_print.c: the reference's stringify (docs/protocol.md section 3.2), bracket-removal quirk included.
 * Expected texts are the vectors' `text` fields (legacy-expressions.jsonl). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "calc/alloc.h"
#include "calc/eval.h"
#include "calc/limits.h"
#include "calc/parse.h"

static void check_print(const char *input, const char *want) {
  calc_tree t;
  calc_parse_error err;
  if (calc_parse(input, strlen(input), &t, &err) != 0) fail_msg("parse of '%s': %s", input, err.msg);
  calc_buf o;
  calc_buf_init(&o, 0);
  assert_int_equal(calc_expr_print(t.root, &o), 0);
  calc_buf_putc(&o, 0);
  if (strcmp((char *)o.data, want) != 0) fail_msg("'%s' printed as '%s', want '%s'", input, (char *)o.data, want);
  calc_buf_free(&o);
  calc_tree_free(&t);
}

static void test_simple(void **state) {
  (void)state;
  check_print("42", "42");
  check_print("2.5", "2.5");
  check_print("1e16", "1e+16");
  check_print("PI", "PI");
  check_print("pi * e", "PI * E");
  check_print("max()", "max()");
  check_print("1 + 2 * 3", "1 + (2 * 3)");
  check_print("max(2, 3) + 3", "max(2, 3) + 3");
  check_print("((((1 + 2) + 3) + 4) + 5) + 6", "((((1 + 2) + 3) + 4) + 5) + 6");
  check_print("2 ** (1 ** (3 ** (1 ** 2)))", "2 ** (1 ** (3 ** (1 ** 2)))");
  check_print("max(min(1, 2, max(3, 4)), sqrt(16), cos(0))", "max(min(1, 2, max(3, 4)), sqrt(16), cos(0))");
  check_print("max(2, 3 * 4, log(E), 6 * 7, 9 / 8)", "max(2, (3 * 4), log(E), (6 * 7), (9 / 8))");
}

static void test_unary_shapes(void **state) {
  (void)state;
  check_print("(-7) % 3", "-(7) % 3");
  check_print("+0", "+(0)");
  check_print("-(-3)", "-(-(3))");
  check_print("(-0.0) * 1", "-(0.0) * 1");
  check_print("sqrt(+(2 * 8))", "sqrt(+(2 * 8))");
  check_print("-(+cos(+0.0))", "-(+(cos(+(0.0))))");
  check_print("+(-65535)", "+(-(65535))");
}

/* The quirk: deletions use original indices on the shrinking string. */
static void test_bracket_quirk(void **state) {
  (void)state;
  check_print("-((-(1 + 2)) * (-(3 - 4)))", "-(-(1 + 2) * -(( - 4)))");  /* brackets-shift */
  check_print("-(-((1 + (2 + 3)) ** (-(4 + 5))))", "-(-((1 + (2 + 3)) ** -(4 + 5)))");  /* ref-5 */
  check_print("(sin(max(2, 3 * 4, 5, 6 * ((7 * 8) / 9), 10 / 11)) / 12) * 13",
              "(sin(max(2, (3 * 4), 5, (6 * ((7 * 8) / 9)), (10 / 11))) / 12) * 13");  /* seed-1 */
  check_print("0.5 * (-(log(7, 100000000000000000000) + (299 + 1e-07)))",
              "(0.5 * -(log(7, 100000000000000000000) + (299 + 1e-07)))");  /* random-1-15 */
  check_print("+(((65535 * 10) - 0) % sin(4294967296 + TAU))",
              "+(((65535 * 10) - 0) % sin(4294967296 + TAU)))");  /* random-1-132: unbalanced */
  check_print("sqrt(sqrt(9223372036854775808 * 12) / 5)", "sqrt(sqrt(9223372036854775808 * 12) / 5))");
  check_print("(5 + sqrt(7)) / tan(max(4294967296 * 4))", "((5 + sqrt(7)) / tan(max(4294967296 * 4)))");
  check_print("min(((0.1 + 7) / min(1, 100)) + (-9), log(TAU - (PI * 12)))",
              "min((((0.1 + 7) / min(1, 100)) + -(9)), log(TAU - (PI * 12)))");
}

static void test_constructed_values(void **state) {
  (void)state;
  /* Values the evaluator puts into the tree print with Python's str(). */
  calc_num v;
  calc_num_init(&v);
  calc_num_set_si(&v, -3);
  calc_expr *e = calc_expr_binary(CALC_BIN_MUL, calc_expr_const(&v), calc_expr_const_float(-0.0));
  e = calc_expr_unary(CALC_UN_NEG, e);
  calc_buf o;
  calc_buf_init(&o, 0);
  assert_int_equal(calc_expr_print(e, &o), 0);
  assert_int_equal(o.len, strlen("-(-3 * -0.0)"));
  assert_memory_equal(o.data, "-(-3 * -0.0)", o.len);
  calc_buf_free(&o);
  calc_expr_free(e);
  calc_num_clear(&v);
}

static void test_limited(void **state) {
  (void)state;
  calc_tree t;
  calc_parse_error err;
  const char *in = "max(1, 2) + 3";
  assert_int_equal(calc_parse(in, strlen(in), &t, &err), 0);
  calc_buf o;
  calc_buf_init(&o, 0);
  assert_int_equal(calc_expr_print_limited(t.root, &o, 13), 0);
  assert_int_equal(o.len, 13);
  calc_buf_reset(&o);
  assert_int_equal(calc_expr_print_limited(t.root, &o, 12), -1);
  calc_buf_free(&o);
  /* A printout over the buffer's own limit is that, not a lack of memory. */
  calc_buf_init(&o, 12);
  assert_int_equal(calc_expr_print(t.root, &o), -1);
  assert_int_equal(o.failed, CALC_ERR_LIMIT);
  calc_buf_free(&o);
  calc_tree_free(&t);
}

/* The largest tree prints in O(n log n): well under a second. */
static void test_large_tree_fast(void **state) {
  (void)state;
  size_t args = CALC_MAX_ARGS - 1, ncalls = CALC_MAX_NODES / (4 * CALC_MAX_ARGS) - 1; /* 4 nodes per argument */
  calc_buf in;
  calc_buf_init(&in, 0);
  calc_buf_puts(&in, "max(");
  for (size_t c = 0; c < ncalls; c++) {
    calc_buf_puts(&in, c ? ", min(" : "min(");
    for (size_t i = 0; i < args; i++) calc_buf_puts(&in, i ? ", -(1 + 2)" : "-(1 + 2)");
    calc_buf_puts(&in, ")");
  }
  calc_buf_puts(&in, ")");
  calc_tree t;
  calc_parse_error err;
  assert_int_equal(calc_parse((const char *)in.data, in.len, &t, &err), 0);
  calc_buf o;
  calc_buf_init(&o, 0);
  clock_t t0 = clock();
  assert_int_equal(calc_expr_print(t.root, &o), 0);
  double secs = (double)(clock() - t0) / CLOCKS_PER_SEC;
  assert_true(secs < 1.0);
  assert_true(o.len > 30000);
  calc_buf_free(&o);
  calc_buf_free(&in);
  calc_tree_free(&t);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_simple),       cmocka_unit_test(test_unary_shapes),
      cmocka_unit_test(test_bracket_quirk), cmocka_unit_test(test_constructed_values),
      cmocka_unit_test(test_limited),      cmocka_unit_test(test_large_tree_fast),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
