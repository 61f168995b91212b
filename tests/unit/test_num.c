/* test_num.c: Python 3.11 number semantics of libcalc (calc/num.h, calc/rng.h): operators,
 * functions, exact exception classes and messages, the integer size limit, MT19937.
 * Expected values come from python3.11; the e2e differential test covers far more. */
#include <math.h>
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
#include "calc/limits.h"
#include "calc/num.h"
#include "calc/rng.h"

/* Operand spec: "i:<decimal>" or "f:<strtod text>". */
static void num_from(calc_num *n, const char *spec) {
  if (spec[0] == 'i') {
    assert_int_equal(calc_num_set_decimal(n, spec + 2, strlen(spec + 2)), 0);
  } else {
    calc_num_set_float(n, strtod(spec + 2, NULL));
  }
}

/* Formats a result like the differential driver: "int 5", "float 0.5", "exc Type msg". */
static void render(int rc, const calc_num *out, const calc_exc *exc, char *buf, size_t size) {
  if (rc != 0) {
    if (exc->has_errno)
      snprintf(buf, size, "exc %s (%d, '%s')", exc->type, exc->errnum, exc->msg);
    else
      snprintf(buf, size, "exc %s %s", exc->type, exc->msg);
    return;
  }
  calc_buf b;
  calc_buf_init(&b, 0);
  assert_int_equal(calc_num_str(out, &b), 0);
  snprintf(buf, size, "%s %.*s", out->is_float ? "float" : "int", (int)b.len, (const char *)b.data);
  calc_buf_free(&b);
}

static void check_bin(calc_binop op, const char *a, const char *b, const char *want) {
  calc_num x, y, out;
  calc_exc exc;
  char got[512];
  calc_num_init(&x);
  calc_num_init(&y);
  calc_num_init(&out);
  num_from(&x, a);
  num_from(&y, b);
  int rc = calc_num_binop(op, &out, &x, &y, &exc);
  render(rc, &out, &exc, got, sizeof got);
  if (strcmp(got, want) != 0) fail_msg("%s %s %s: got '%s' want '%s'", a, calc_binop_symbol(op), b, got, want);
  calc_num_clear(&x);
  calc_num_clear(&y);
  calc_num_clear(&out);
}

static void check_call(calc_fn fn, calc_rng *rng, const char *want, size_t argc, ...) {
  calc_num args[5], out;
  calc_exc exc;
  char got[512];
  va_list ap;
  va_start(ap, argc);
  for (size_t i = 0; i < argc; i++) {
    calc_num_init(&args[i]);
    num_from(&args[i], va_arg(ap, const char *));
  }
  va_end(ap);
  calc_num_init(&out);
  int rc = calc_num_call(fn, &out, args, argc, rng, &exc);
  render(rc, &out, &exc, got, sizeof got);
  if (strcmp(got, want) != 0) fail_msg("%s/%zu: got '%s' want '%s'", calc_fn_name(fn), argc, got, want);
  for (size_t i = 0; i < argc; i++) calc_num_clear(&args[i]);
  calc_num_clear(&out);
}

static void test_int_ops(void **state) {
  (void)state;
  check_bin(CALC_BIN_ADD, "i:9007199254740993", "i:1", "int 9007199254740994");
  check_bin(CALC_BIN_SUB, "i:1", "i:100000000000000000000", "int -99999999999999999999");
  check_bin(CALC_BIN_MUL, "i:-12345678901234567890", "i:98765432109876543210",
            "int -1219326311370217952237463801111263526900");
  check_bin(CALC_BIN_MOD, "i:-7", "i:3", "int 2");
  check_bin(CALC_BIN_MOD, "i:7", "i:-3", "int -2");
  check_bin(CALC_BIN_MOD, "i:1", "i:0", "exc ZeroDivisionError integer modulo by zero");
  check_bin(CALC_BIN_POW, "i:2", "i:100", "int 1267650600228229401496703205376");
  check_bin(CALC_BIN_POW, "i:-1", "i:1000000000000000000000001", "int -1");
  check_bin(CALC_BIN_POW, "i:2", "i:-1", "float 0.5");
  check_bin(CALC_BIN_POW, "i:0", "i:-1", "exc ZeroDivisionError 0.0 cannot be raised to a negative power");
  check_bin(CALC_BIN_POW, "i:0", "i:0", "int 1");
}

static void test_true_division(void **state) {
  (void)state;
  check_bin(CALC_BIN_DIV, "i:1", "i:3", "float 0.3333333333333333");
  check_bin(CALC_BIN_DIV, "i:0", "i:-5", "float -0.0");
  check_bin(CALC_BIN_DIV, "i:1", "i:0", "exc ZeroDivisionError division by zero");
  check_bin(CALC_BIN_DIV, "f:1", "f:0", "exc ZeroDivisionError float division by zero");
  check_bin(CALC_BIN_DIV, "f:1", "i:0", "exc ZeroDivisionError float division by zero");
  /* Huge operands built with GMP: 2**1024 / 1 overflows; 10**400 // 7 / 10**399 rounds right. */
  calc_num a, b, out;
  calc_exc exc;
  calc_num_init(&a);
  calc_num_init(&b);
  calc_num_init(&out);
  mpz_ui_pow_ui(a.z, 2, 1024);
  calc_num_set_si(&b, 1);
  assert_int_equal(calc_num_binop(CALC_BIN_DIV, &out, &a, &b, &exc), -1);
  assert_string_equal(exc.type, "OverflowError");
  assert_string_equal(exc.msg, "integer division result too large for a float");
  mpz_ui_pow_ui(a.z, 10, 400);
  mpz_tdiv_q_ui(a.z, a.z, 7);
  mpz_ui_pow_ui(b.z, 10, 399);
  assert_int_equal(calc_num_binop(CALC_BIN_DIV, &out, &a, &b, &exc), 0);
  assert_true(out.is_float && out.f == 1.4285714285714286);
  /* 2**2000 / 3**1000 == 8.68433580377441e+124 (python3.11) */
  mpz_ui_pow_ui(a.z, 2, 2000);
  mpz_ui_pow_ui(b.z, 3, 1000);
  assert_int_equal(calc_num_binop(CALC_BIN_DIV, &out, &a, &b, &exc), 0);
  assert_true(out.f == 8.68433580377441e+124);
  calc_num_clear(&a);
  calc_num_clear(&b);
  calc_num_clear(&out);
}

static void test_int_to_float_rounding(void **state) {
  (void)state;
  /* mpz_get_d truncates; Python rounds half to even. */
  check_bin(CALC_BIN_ADD, "i:9007199254740993", "f:0", "float 9007199254740992.0");
  check_bin(CALC_BIN_ADD, "i:9007199254740995", "f:0", "float 9007199254740996.0");
  check_bin(CALC_BIN_ADD, "i:18014398509481986", "f:0", "float 1.8014398509481984e+16");
  calc_num n;
  calc_exc exc;
  double d;
  calc_num_init(&n);
  /* 2**1024 - 2**970 - 1 rounds down to DBL_MAX; 2**1024 - 2**970 rounds up: overflow. */
  mpz_ui_pow_ui(n.z, 2, 1024);
  mpz_t t;
  mpz_init(t);
  mpz_ui_pow_ui(t, 2, 970);
  mpz_sub(n.z, n.z, t);
  assert_int_equal(calc_num_to_double(&n, &d, &exc), -1);
  assert_string_equal(exc.type, "OverflowError");
  assert_string_equal(exc.msg, "int too large to convert to float");
  mpz_sub_ui(n.z, n.z, 1);
  assert_int_equal(calc_num_to_double(&n, &d, &exc), 0);
  assert_true(d == 1.7976931348623157e308);
  mpz_clear(t);
  calc_num_clear(&n);
}

static void test_float_ops(void **state) {
  (void)state;
  check_bin(CALC_BIN_ADD, "f:0.1", "f:0.2", "float 0.30000000000000004");
  check_bin(CALC_BIN_MUL, "i:2", "f:3", "float 6.0");
  check_bin(CALC_BIN_MOD, "f:-7.5", "f:2", "float 0.5");
  check_bin(CALC_BIN_MOD, "f:7.5", "i:-2", "float -0.5");
  check_bin(CALC_BIN_MOD, "f:-0.0", "f:-1", "float -0.0");
  check_bin(CALC_BIN_MOD, "f:0.0", "f:-1", "float -0.0");
  check_bin(CALC_BIN_MOD, "f:1", "f:0", "exc ZeroDivisionError float modulo");
  check_bin(CALC_BIN_POW, "i:2", "f:1.5", "float 2.8284271247461903");
  check_bin(CALC_BIN_POW, "f:10", "i:400", "exc OverflowError (34, 'Numerical result out of range')");
  check_bin(CALC_BIN_POW, "f:0.0", "f:-1", "exc ZeroDivisionError 0.0 cannot be raised to a negative power");
  check_bin(CALC_BIN_POW, "f:-8", "f:0.5",
            "exc ValueError complex result (negative number to a fractional power) is not supported");
  check_bin(CALC_BIN_POW, "f:-inf", "f:3", "float -inf");
  check_bin(CALC_BIN_POW, "f:nan", "f:0", "float 1.0");
  check_bin(CALC_BIN_POW, "f:1", "f:nan", "float 1.0");
  check_bin(CALC_BIN_POW, "f:-1", "f:inf", "float 1.0");
  check_bin(CALC_BIN_POW, "f:0.5", "f:-inf", "float inf");
  check_bin(CALC_BIN_POW, "f:1e-300", "f:2", "float 0.0");
}

static void test_unary(void **state) {
  (void)state;
  calc_num a, out;
  calc_exc exc;
  calc_num_init(&a);
  calc_num_init(&out);
  calc_num_set_si(&a, 5);
  assert_int_equal(calc_num_unop(CALC_UN_NEG, &out, &a, &exc), 0);
  assert_false(out.is_float);
  assert_int_equal(mpz_get_si(out.z), -5);
  calc_num_set_float(&a, 0.0);
  assert_int_equal(calc_num_unop(CALC_UN_NEG, &out, &a, &exc), 0);
  assert_true(out.is_float && signbit(out.f));
  assert_int_equal(calc_num_unop(CALC_UN_POS, &out, &a, &exc), 0);
  assert_true(out.is_float && !signbit(out.f));
  calc_num_clear(&a);
  calc_num_clear(&out);
}

static void test_limit_is_fast(void **state) {
  (void)state;
  char want[128];
  snprintf(want, sizeof want, "exc OverflowError integer result too large (over %u bits): calclab limit",
           (unsigned)CALC_MAX_INT_BITS);
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  check_bin(CALC_BIN_POW, "i:9", "i:387420489", want);  /* 9 ** 9 ** 9 */
  check_bin(CALC_BIN_POW, "i:-2", "i:1000000000000000000000000000000", want);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  double ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
  assert_true(ms < 50.0);
  check_bin(CALC_BIN_POW, "i:2", "i:100000", want);  /* 100001 bits */
  check_bin(CALC_BIN_POW, "i:3", "i:63093", want);   /* just over: 100001 bits */
  /* 3**63092 has 99999 bits: allowed. Its square is not; its double (100000 bits) is. */
  calc_num a, b, out;
  calc_exc exc;
  calc_num_init(&a);
  calc_num_init(&b);
  calc_num_init(&out);
  calc_num_set_si(&a, 3);
  calc_num_set_si(&b, 63092);
  assert_int_equal(calc_num_binop(CALC_BIN_POW, &out, &a, &b, &exc), 0);
  assert_int_equal(mpz_sizeinbase(out.z, 2), 99999);
  calc_num_copy(&a, &out);
  assert_int_equal(calc_num_binop(CALC_BIN_MUL, &b, &a, &a, &exc), -1);
  assert_string_equal(exc.type, "OverflowError");
  /* a + a has 100000 bits: allowed; doubling that (100001 bits) is not. */
  assert_int_equal(calc_num_binop(CALC_BIN_ADD, &b, &a, &a, &exc), 0);
  assert_int_equal(calc_num_binop(CALC_BIN_ADD, &out, &b, &b, &exc), -1);
  calc_num_clear(&a);
  calc_num_clear(&b);
  calc_num_clear(&out);
}

static void test_math_functions(void **state) {
  (void)state;
  check_call(CALC_FN_SIN, NULL, "float 0.0", 1, "i:0");
  check_call(CALC_FN_SIN, NULL, "exc ValueError math domain error", 1, "f:inf");
  check_call(CALC_FN_SIN, NULL, "exc TypeError math.sin() takes exactly one argument (2 given)", 2, "i:1", "i:2");
  check_call(CALC_FN_COS, NULL, "exc TypeError math.cos() takes exactly one argument (0 given)", 0);
  check_call(CALC_FN_TAN, NULL, "float -0.5086861259107568", 1, "f:1e308");
  check_call(CALC_FN_SQRT, NULL, "exc ValueError math domain error", 1, "i:-1");
  check_call(CALC_FN_SQRT, NULL, "float 1.4142135623730951", 1, "i:2");
  check_call(CALC_FN_SQRT, NULL, "exc OverflowError int too large to convert to float", 1,
             "i:1000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000");
  check_call(CALC_FN_LOG, NULL, "float 3.0", 2, "i:8", "i:2");
  check_call(CALC_FN_LOG, NULL, "exc ValueError math domain error", 1, "i:0");
  check_call(CALC_FN_LOG, NULL, "exc ValueError math domain error", 1, "f:0");
  check_call(CALC_FN_LOG, NULL, "exc ZeroDivisionError float division by zero", 2, "i:10", "i:1");
  check_call(CALC_FN_LOG, NULL, "exc TypeError math.log requires 1 to 2 arguments", 0);
  check_call(CALC_FN_LOG, NULL, "exc TypeError math.log requires 1 to 2 arguments", 3, "i:1", "i:2", "i:3");
  /* log(10**394): too large for a float, logged via frexp like CPython's loghelper. */
  check_call(CALC_FN_LOG, NULL, "float 907.218526639654", 1,
             "i:10000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000");
}

static void test_builtins(void **state) {
  (void)state;
  check_call(CALC_FN_MAX, NULL, "exc TypeError 'int' object is not iterable", 1, "i:7");
  check_call(CALC_FN_MIN, NULL, "exc TypeError 'float' object is not iterable", 1, "f:1.5");
  check_call(CALC_FN_MAX, NULL, "exc TypeError max expected at least 1 argument, got 0", 0);
  check_call(CALC_FN_MAX, NULL, "int 1", 2, "i:1", "f:1");        /* first maximal wins */
  check_call(CALC_FN_MAX, NULL, "float 1.0", 2, "f:1", "i:1");
  check_call(CALC_FN_MAX, NULL, "int 9007199254740993", 2, "i:9007199254740993", "f:9007199254740992");
  check_call(CALC_FN_MIN, NULL, "float 9007199254740992.0", 2, "i:9007199254740993", "f:9007199254740992");
  check_call(CALC_FN_MAX, NULL, "float nan", 2, "f:nan", "i:1");
  check_call(CALC_FN_MAX, NULL, "int 1", 2, "i:1", "f:nan");
  check_call(CALC_FN_POW, NULL, "int 5", 3, "i:3", "i:-1", "i:7");
  check_call(CALC_FN_POW, NULL, "int -4", 3, "i:3", "i:4", "i:-5");
  check_call(CALC_FN_POW, NULL, "int 0", 3, "i:0", "i:-1", "i:1");
  check_call(CALC_FN_POW, NULL, "exc ValueError base is not invertible for the given modulus", 3, "i:2", "i:-1", "i:4");
  check_call(CALC_FN_POW, NULL, "exc ValueError pow() 3rd argument cannot be 0", 3, "i:2", "i:3", "i:0");
  check_call(CALC_FN_POW, NULL, "exc TypeError pow() 3rd argument not allowed unless all arguments are integers",
             3, "f:1", "i:2", "i:3");
  check_call(CALC_FN_POW, NULL, "exc TypeError pow() missing required argument 'base' (pos 1)", 0);
  check_call(CALC_FN_POW, NULL, "exc TypeError pow() missing required argument 'exp' (pos 2)", 1, "i:1");
  check_call(CALC_FN_POW, NULL, "exc TypeError pow() takes at most 3 arguments (4 given)", 4, "i:1", "i:2", "i:3", "i:4");
  check_call(CALC_FN_POW, NULL, "float 0.25", 2, "i:2", "i:-2");
}

static void test_rng_matches_cpython(void **state) {
  (void)state;
  calc_rng r;
  uint32_t key = 1;
  calc_rng_seed_words(&r, &key, 1);  /* random.Random(1) */
  assert_true(calc_rng_random(&r) == 0.13436424411240122);
  assert_int_equal(calc_rng_u32(&r), 3639700191u);
  key = 0;
  calc_rng_seed_words(&r, &key, 1);  /* random.Random(0) */
  assert_int_equal(calc_rng_u32(&r), 3626764237u);
  assert_true(calc_rng_random(&r) == 0.3852453064766108);
  /* uniform(1, 2) on random.Random(1) */
  key = 1;
  calc_rng_seed_words(&r, &key, 1);
  check_call(CALC_FN_RAND, &r, "float 1.134364244112401", 2, "i:1", "i:2");
  check_call(CALC_FN_RAND, &r, "exc TypeError Random.uniform() missing 1 required positional argument: 'b'", 1, "i:1");
  check_call(CALC_FN_RAND, &r, "exc TypeError Random.uniform() takes 3 positional arguments but 4 were given", 3,
             "i:1", "i:2", "i:3");
  assert_int_equal(calc_rng_seed_os(&r), 0);
  double x = calc_rng_random(&r);
  assert_true(x >= 0.0 && x < 1.0);
}

int main(void) {
  calc_alloc_init();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_int_ops),       cmocka_unit_test(test_true_division),
      cmocka_unit_test(test_int_to_float_rounding), cmocka_unit_test(test_float_ops),
      cmocka_unit_test(test_unary),         cmocka_unit_test(test_limit_is_fast),
      cmocka_unit_test(test_math_functions), cmocka_unit_test(test_builtins),
      cmocka_unit_test(test_rng_matches_cpython),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
