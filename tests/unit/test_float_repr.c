/* test_float_repr.c: calc_float_repr() against Python 3.11's repr(float), and calc_num_str().
 * Expected strings were taken from python3.11 (repr of the same double). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "calc/num.h"

static void check(double x, const char *want) {
  char buf[32];
  int n = calc_float_repr(x, buf);
  assert_string_equal(buf, want);
  assert_int_equal(n, (int)strlen(want));
}

static void test_simple(void **state) {
  (void)state;
  check(0.1, "0.1");
  check(0.2 + 0.1, "0.30000000000000004");
  check(1.0 / 3.0, "0.3333333333333333");
  check(6.0, "6.0");
  check(-2.5, "-2.5");
  check(1.5, "1.5");
  check(100.0, "100.0");
  check(123456789.0, "123456789.0");
  check(3.141592653589793, "3.141592653589793");
}

static void test_zeros_and_specials(void **state) {
  (void)state;
  check(0.0, "0.0");
  check(-0.0, "-0.0");
  check(INFINITY, "inf");
  check(-INFINITY, "-inf");
  check(NAN, "nan");
  check(-NAN, "nan");
}

static void test_small_exponent_boundary(void **state) {
  (void)state;
  check(0.0001, "0.0001");
  check(0.00001, "1e-05");
  check(1e-06, "1e-06");
  check(0.00012345, "0.00012345");
  check(0.000012345, "1.2345e-05");
  check(-1e-05, "-1e-05");
}

static void test_large_exponent_boundary(void **state) {
  (void)state;
  check(1e15, "1000000000000000.0");
  check(9999999999999998.0, "9999999999999998.0");
  check(1e16, "1e+16");
  check(1.5e16, "1.5e+16");
  check(12345678901234567.0, "1.2345678901234568e+16");
  check(1e22, "1e+22");
  check(1e23, "1e+23");
  check(1.5e300, "1.5e+300");
  check(-1e100, "-1e+100");
  check(9007199254740993.0, "9007199254740992.0");
}

static void test_extremes(void **state) {
  (void)state;
  check(5e-324, "5e-324");
  check(-5e-324, "-5e-324");
  check(1e-323, "1e-323");
  check(2.2250738585072014e-308, "2.2250738585072014e-308");
  check(2.225073858507201e-308, "2.225073858507201e-308");
  check(1.7976931348623157e308, "1.7976931348623157e+308");
  check(-1.7976931348623157e308, "-1.7976931348623157e+308");
  check(8.98846567431158e307, "8.98846567431158e+307");   /* 2**1023: lopsided interval */
  check(0x1p-1022, "2.2250738585072014e-308");
  check(0x1p+60, "1.152921504606847e+18");
  check(0x1p+54, "1.8014398509481984e+16");
}

static void test_shortest_not_17_digits(void **state) {
  (void)state;
  check(0.3, "0.3");
  check(2.675, "2.675");
  check(1.1, "1.1");
  check(4.35, "4.35");
  check(0.9999999999999999, "0.9999999999999999");
  check(1.0000000000000002, "1.0000000000000002");
  check(5e-310, "5e-310");
}

static void test_num_str(void **state) {
  (void)state;
  calc_num n;
  calc_buf b;
  calc_num_init(&n);
  calc_buf_init(&b, 0);
  assert_int_equal(calc_num_set_decimal(&n, "-123456789012345678901234567890", 31), 0);
  assert_int_equal(calc_num_str(&n, &b), 0);
  assert_int_equal(b.len, 31);
  assert_memory_equal(b.data, "-123456789012345678901234567890", 31);
  calc_buf_reset(&b);
  calc_num_set_float(&n, 1e16);
  assert_int_equal(calc_num_str(&n, &b), 0);
  assert_int_equal(b.len, 5);
  assert_memory_equal(b.data, "1e+16", 5);
  calc_buf_reset(&b);
  calc_num_set_si(&n, 0);
  assert_int_equal(calc_num_str(&n, &b), 0);
  assert_int_equal(b.len, 1);
  assert_memory_equal(b.data, "0", 1);
  calc_buf_free(&b);
  calc_num_clear(&n);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_simple),
      cmocka_unit_test(test_zeros_and_specials),
      cmocka_unit_test(test_small_exponent_boundary),
      cmocka_unit_test(test_large_exponent_boundary),
      cmocka_unit_test(test_extremes),
      cmocka_unit_test(test_shortest_not_17_digits),
      cmocka_unit_test(test_num_str),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
