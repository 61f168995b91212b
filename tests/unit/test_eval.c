/* test_eval.c: evaluation with the reference's steps (docs/protocol.md section 3.1): step lists from the
 * vectors, Python's first exception, and the limits (depth, integer size, steps size). */
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
#include "helpers/failmalloc.h"

#define END NULL

/* Evaluates `input` with steps; checks str(result) and the steps (NULL-terminated list). */
static void check_steps(const char *input, const char *want_result, ...) {
  calc_tree t;
  calc_parse_error err;
  if (calc_parse(input, strlen(input), &t, &err) != 0) fail_msg("parse of '%s': %s", input, err.msg);
  calc_num r;
  calc_num_init(&r);
  calc_strlist steps;
  calc_strlist_init(&steps);
  calc_exc exc;
  if (calc_eval(&t, &r, &steps, &exc) != 0) fail_msg("'%s' raised %s('%s')", input, exc.type, exc.msg);
  calc_buf o;
  calc_buf_init(&o, 0);
  calc_num_str(&r, &o);
  calc_buf_putc(&o, 0);
  if (strcmp((char *)o.data, want_result) != 0) fail_msg("'%s' = %s, want %s", input, (char *)o.data, want_result);
  va_list ap;
  va_start(ap, want_result);
  size_t i = 0;
  for (const char *w; (w = va_arg(ap, const char *)) != NULL; i++) {
    if (i >= steps.n) fail_msg("'%s': only %zu steps, want '%s' next", input, steps.n, w);
    if (strcmp(steps.items[i], w) != 0) fail_msg("'%s': step %zu is '%s', want '%s'", input, i, steps.items[i], w);
  }
  va_end(ap);
  if (i != steps.n) fail_msg("'%s': %zu steps, want %zu", input, steps.n, i);

  /* Steps off: same result, no steps. */
  calc_num r2;
  calc_num_init(&r2);
  if (t.rng == NULL) {
    assert_int_equal(calc_eval(&t, &r2, NULL, &exc), 0);
    calc_buf_reset(&o);
    calc_num_str(&r2, &o);
    calc_buf_putc(&o, 0);
    assert_string_equal((char *)o.data, want_result);
  }
  calc_num_clear(&r2);
  calc_buf_free(&o);
  calc_strlist_free(&steps);
  calc_num_clear(&r);
  calc_tree_free(&t);
}

static void check_raises(const char *input, int with_steps, const char *type, const char *msg_prefix) {
  calc_tree t;
  calc_parse_error err;
  if (calc_parse(input, strlen(input), &t, &err) != 0) fail_msg("parse of '%s': %s", input, err.msg);
  calc_num r;
  calc_num_init(&r);
  calc_strlist steps;
  calc_strlist_init(&steps);
  calc_exc exc;
  if (calc_eval(&t, &r, with_steps ? &steps : NULL, &exc) == 0) fail_msg("'%s' did not raise %s", input, type);
  assert_string_equal(exc.type, type);
  if (strncmp(exc.msg, msg_prefix, strlen(msg_prefix)) != 0)
    fail_msg("'%s' raised %s('%s'), want '%s...'", input, exc.type, exc.msg, msg_prefix);
  calc_strlist_free(&steps);
  calc_num_clear(&r);
  calc_tree_free(&t);
}

static void test_vector_steps(void **state) {
  (void)state;
  check_steps("max(2, 3) + 3", "6", "max(2, 3) + 3", "3 + 3", "6", END); /* seed-2 */
  check_steps("+0", "0", "+(0)", "0", END);                              /* random-1-43 */
  check_steps("42", "42", END);                                         /* const-only */
  check_steps("2.5", "2.5", END);                                       /* float-only */
  check_steps("PI", "3.141592653589793", END);                          /* named-pi */
  check_steps("-((-(1 + 2)) * (-(3 - 4)))", "3", "-(-(1 + 2) * -(( - 4)))", "-(-(3) * -(3 - 4)))",
              "-(-3 * -(3 - 4)))", "-(-3 * -(-1))", "-(-3 * 1)", "-(-3)", "3", END); /* brackets-shift */
  check_steps("(-7) % 3", "2", "-(7) % 3", "-7 % 3", "2", END);           /* mod-negative */
  /* A named constant shows its value from the first snapshot of its parent on. */
  check_steps("max(2, 3 * 4, log(E), 6 * 7, 9 / 8)", "42", "max(2, (3 * 4), log(E), (6 * 7), (9 / 8))",
              "max(2, 12, log(2.718281828459045), (6 * 7), (9 / 8))",
              "max(2, 12, 1.0, (6 * 7), (9 / 8))", "max(2, 12, 1.0, 42, (9 / 8))", "max(2, 12, 1.0, 42, 1.125)",
              "42", END); /* ref-6 */
  check_steps("tan(PI / 2)", "1.633123935319537e+16", "tan(3.141592653589793 / 2)",
              "tan(1.5707963267948966)", "1.633123935319537e+16", END);
  check_steps("2 ** 100", "1267650600228229401496703205376", "2 ** 100", "1267650600228229401496703205376", END);
}

static void test_python_errors(void **state) {
  (void)state;
  check_raises("1 / 0", 1, "ZeroDivisionError", "division by zero");
  check_raises("max()", 1, "TypeError", "max expected at least 1 argument, got 0");
  check_raises("max(7)", 0, "TypeError", "'int' object is not iterable");
  check_raises("sin(1, 2)", 1, "TypeError", "math.sin() takes exactly one argument (2 given)");
  /* First exception wins, left to right. */
  check_raises("1 / 0 + sqrt(-1)", 1, "ZeroDivisionError", "division by zero");
  check_raises("sqrt(-1) + 1 / 0", 1, "ValueError", "math domain error");
  check_raises("max(1 % 0, 1 / 0)", 1, "ZeroDivisionError", "integer modulo by zero");
}

static void test_int_limit_fast(void **state) {
  (void)state;
  clock_t t0 = clock();
  check_raises("9 ** 9 ** 9", 1, "OverflowError", "");
  check_raises("9 ** 9 ** 9", 0, "OverflowError", "");
  check_raises("(10 ** 10000) ** 10000", 0, "OverflowError", "");
  /* With steps, CPython 3.11 already refuses to print the 10001-digit 10 ** 10000. */
  check_raises("(10 ** 10000) ** 10000", 1, "ValueError", "Exceeds the limit (4300 digits) for integer string conversion");
  assert_true((double)(clock() - t0) / CLOCKS_PER_SEC < 0.5);
}

static void test_steps_limit(void **state) {
  (void)state;
  /* Each of about 20 steps repeats a 4215-digit number: they cannot fit in one message. */
  clock_t t0 = clock();
  const char *in = "2 ** 14000 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1";
  check_raises(in, 1, "ValueError", "steps too large for one message");
  /* A number over 4300 digits cannot be printed at all (CPython 3.11's int_max_str_digits). */
  check_raises("(2 ** 99999 + 1) * 1", 1, "ValueError", "Exceeds the limit (4300 digits)");
  /* Without steps both are fine. */
  calc_tree t;
  calc_parse_error err;
  assert_int_equal(calc_parse(in, strlen(in), &t, &err), 0);
  calc_num r;
  calc_num_init(&r);
  calc_exc exc;
  assert_int_equal(calc_eval(&t, &r, NULL, &exc), 0);
  calc_num_clear(&r);
  calc_tree_free(&t);
  /* A Python error after the steps overflowed is still the answer, as in the reference. */
  {
    char later[200];
    snprintf(later, sizeof later, "%s + 1 / 0", in);
    check_raises(later, 1, "ZeroDivisionError", "division by zero");
  }
  /* Many steps of a wide expression: refused, quickly. */
  calc_buf b;
  calc_buf_init(&b, 0);
  calc_buf_puts(&b, "max(");
  for (int i = 0; i < CALC_MAX_ARGS - 1; i++) calc_buf_puts(&b, i ? ", -(1 + 2)" : "-(1 + 2)");
  calc_buf_puts(&b, ")");
  calc_buf_putc(&b, 0);
  check_raises((const char *)b.data, 1, "ValueError", "steps too large for one message");
  calc_buf_free(&b);
  assert_true((double)(clock() - t0) / CLOCKS_PER_SEC < 2.0);
}

/* Trees built by other producers (the pickle decoder) are re-checked for depth. */
static void test_depth_limit(void **state) {
  (void)state;
  calc_num one;
  calc_num_init(&one);
  calc_num_set_si(&one, 1);
  calc_expr *e = calc_expr_const(&one);
  for (int i = 0; i < CALC_MAX_DEPTH + 5; i++) e = calc_expr_unary(CALC_UN_NEG, e);
  assert_non_null(e);
  calc_tree t = {e, NULL};
  calc_num r;
  calc_num_init(&r);
  calc_exc exc;
  calc_strlist steps;
  calc_strlist_init(&steps);
  assert_int_equal(calc_eval(&t, &r, NULL, &exc), -1);
  assert_string_equal(exc.type, "ValueError");
  assert_non_null(strstr(exc.msg, "nested too deeply"));
  assert_int_equal(calc_eval(&t, &r, &steps, &exc), -1);
  calc_strlist_free(&steps);
  calc_num_clear(&r);
  calc_num_clear(&one);
  calc_tree_free(&t);
}

static void test_rand_shares_state(void **state) {
  (void)state;
  const char *in = "rand(1, 2) + rand(1, 2)";
  calc_tree t;
  calc_parse_error err;
  assert_int_equal(calc_parse(in, strlen(in), &t, &err), 0);
  assert_non_null(t.rng);
  uint32_t key[1] = {42};
  calc_rng_seed_words(t.rng, key, 1);
  calc_num r1, r2;
  calc_num_init(&r1);
  calc_num_init(&r2);
  calc_exc exc;
  calc_strlist steps;
  calc_strlist_init(&steps);
  assert_int_equal(calc_eval(&t, &r1, &steps, &exc), 0);
  assert_true(r1.is_float && r1.f >= 2.0 && r1.f <= 4.0);
  assert_int_equal(steps.n, 4); /* rand(1, 2) + rand(1, 2), x + rand(1, 2), x + y, result */
  calc_rng_seed_words(t.rng, key, 1);
  assert_int_equal(calc_eval(&t, &r2, NULL, &exc), 0);
  assert_true(r1.f == r2.f); /* same seed, same draws, steps or not */
  calc_strlist_free(&steps);
  calc_num_clear(&r1);
  calc_num_clear(&r2);
  calc_tree_free(&t);
}


/* Failing each allocation in turn: a MemoryError or the right answer, never a crash or leak. */
static void test_failed_allocations(void **state) {
  (void)state;
  const char *in = "max(1, 2 * PI, -3, sin(4) ** 2) + 1.5";
  calc_tree t;
  calc_parse_error err;
  assert_int_equal(calc_parse(in, strlen(in), &t, &err), 0);
  int ok = 0;
  for (long i = 0; i < 2000 && !ok; i++) {
    calc_num r;
    calc_num_init(&r);
    calc_strlist steps;
    calc_strlist_init(&steps);
    calc_exc exc;
    failmalloc_arm(i);
    calc_set_allocator(&failmalloc);
    int rc = calc_eval(&t, &r, &steps, &exc);
    calc_set_allocator(NULL);
    if (rc == 0) {
      ok = 1;
      assert_int_equal(steps.n, 7);
    } else {
      assert_true(strcmp(exc.type, "MemoryError") == 0 || strcmp(exc.type, "ValueError") == 0);
    }
    calc_strlist_free(&steps);
    calc_num_clear(&r);
  }
  failmalloc_arm(-1);
  assert_true(ok);
  calc_tree_free(&t);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_vector_steps),   cmocka_unit_test(test_python_errors),
      cmocka_unit_test(test_int_limit_fast), cmocka_unit_test(test_steps_limit),
      cmocka_unit_test(test_depth_limit),    cmocka_unit_test(test_rand_shares_state),
      cmocka_unit_test(test_failed_allocations),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
