/* test_parse.c: the infix parser (calc/parse.h): Python's precedence and associativity, the
 * reference client's tree shapes, errors with columns, limits, and failed allocations. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "calc/alloc.h"
#include "calc/limits.h"
#include "calc/parse.h"
#include "helpers/failmalloc.h"

/* Compact prefix form of a tree: (+ 1 (* 2 3)), (neg 7), PI, 2.5f, (max 1 2). */
static void sexpr(const calc_expr *e, calc_buf *o) {
  switch (e->kind) {
    case CALC_EXPR_CONST:
      calc_num_str(&e->u.num, o);
      if (e->u.num.is_float) calc_buf_putc(o, 'f');
      break;
    case CALC_EXPR_NAMED: calc_buf_puts(o, e->u.named.name); break;
    case CALC_EXPR_BINARY:
      calc_buf_printf(o, "(%s ", calc_binop_symbol(e->u.bin.op));
      sexpr(e->u.bin.left, o);
      calc_buf_putc(o, ' ');
      sexpr(e->u.bin.right, o);
      calc_buf_putc(o, ')');
      break;
    case CALC_EXPR_UNARY:
      calc_buf_puts(o, e->u.un.op == CALC_UN_NEG ? "(neg " : "(pos ");
      sexpr(e->u.un.operand, o);
      calc_buf_putc(o, ')');
      break;
    case CALC_EXPR_CALL:
      calc_buf_printf(o, "(%s", calc_fn_name(e->u.call.fn));
      for (size_t i = 0; i < e->u.call.argc; i++) {
        calc_buf_putc(o, ' ');
        sexpr(e->u.call.args[i], o);
      }
      calc_buf_putc(o, ')');
      break;
  }
}

static void check_tree(const char *text, const char *want) {
  calc_tree t;
  calc_parse_error err;
  int rc = calc_parse(text, strlen(text), &t, &err);
  if (rc != 0) fail_msg("parse of '%s' failed: %s", text, err.msg);
  calc_buf o;
  calc_buf_init(&o, 0);
  sexpr(t.root, &o);
  calc_buf_putc(&o, 0);
  if (strcmp((char *)o.data, want) != 0) fail_msg("'%s' parsed as %s, want %s", text, (char *)o.data, want);
  calc_buf_free(&o);
  calc_tree_free(&t);
}

static void check_error(const char *text, size_t len, const char *want_msg, size_t want_col) {
  calc_tree t;
  calc_parse_error err;
  if (calc_parse(text, len, &t, &err) == 0) {
    calc_tree_free(&t);
    fail_msg("parse of '%.40s' succeeded, want error '%s'", text, want_msg);
  }
  assert_null(t.root);
  if (strncmp(err.msg, want_msg, strlen(want_msg)) != 0)
    fail_msg("'%.40s': error '%s', want '%s'", text, err.msg, want_msg);
  if (want_col) assert_int_equal(err.column, want_col);
}

static void test_precedence(void **state) {
  (void)state;
  check_tree("1 + 2 * 3", "(+ 1 (* 2 3))");
  check_tree("1 * 2 + 3", "(+ (* 1 2) 3)");
  check_tree("(1 + 2) * 3", "(* (+ 1 2) 3)");
  check_tree("2 * 3 ** 2", "(* 2 (** 3 2))");
  check_tree("1 % 2 / 3 * 4", "(* (/ (% 1 2) 3) 4)");
  check_tree("1 - 2 * 3 % 4", "(- 1 (% (* 2 3) 4))");
  check_tree("max(2, 3) + 3", "(+ (max 2 3) 3)");
}

static void test_associativity(void **state) {
  (void)state;
  check_tree("1 - 2 - 3", "(- (- 1 2) 3)");
  check_tree("8 / 4 / 2", "(/ (/ 8 4) 2)");
  check_tree("2 ** 3 ** 2", "(** 2 (** 3 2))");
  check_tree("2**3**2**1", "(** 2 (** 3 (** 2 1)))");
}

static void test_unary(void **state) {
  (void)state;
  /* ** binds tighter than a unary minus on its left, a unary may follow **. */
  check_tree("-2 ** 2", "(neg (** 2 2))");
  check_tree("2 ** -1", "(** 2 (neg 1))");
  check_tree("2 ** -1 ** 2", "(** 2 (neg (** 1 2)))");
  check_tree("(-7) % 3", "(% (neg 7) 3)"); /* not Constant -7: prints -(7) % 3 */
  check_tree("-7 % 3", "(% (neg 7) 3)");
  check_tree("--1", "(neg (neg 1))");
  check_tree("+-+1", "(pos (neg (pos 1)))");
  check_tree("2 * -3", "(* 2 (neg 3))");
  check_tree("1 - -1", "(- 1 (neg 1))");
  check_tree("-(+cos(+0.0))", "(neg (pos (cos (pos 0.0f))))");
  check_tree("+0", "(pos 0)");
}

static void test_numbers(void **state) {
  (void)state;
  check_tree("42", "42");
  check_tree("2.5", "2.5f");
  check_tree("1e5", "100000.0f");
  check_tree("1E-3", "0.001f");
  check_tree("2.", "2.0f");
  check_tree(".5", "0.5f");
  check_tree("1e+16", "1e+16f");
  check_tree("1e999", "inff");
  check_tree("007", "7");
  check_tree("123456789012345678901234567890", "123456789012345678901234567890");
  check_tree("9223372036854775808 * 2", "(* 9223372036854775808 2)");
  check_tree("  \t 3 \n", "3");
}

static void test_names_and_calls(void **state) {
  (void)state;
  check_tree("pi", "PI");
  check_tree("PI + TAU * E", "(+ PI (* TAU E))");
  check_tree("tau - e", "(- TAU E)");
  check_tree("max()", "(max)");
  check_tree("min(1)", "(min 1)");
  check_tree("max(1, 2, 3 * 4)", "(max 1 2 (* 3 4))");
  check_tree("log(8, 2)", "(log 8 2)");
  check_tree("pow(2, 10, 1000)", "(pow 2 10 1000)");
  check_tree("sin(cos(tan(sqrt(1))))", "(sin (cos (tan (sqrt 1))))");
  check_tree("sin (1)", "(sin 1)");

  calc_tree t;
  calc_parse_error err;
  assert_int_equal(calc_parse("1 + 2", 5, &t, &err), 0);
  assert_null(t.rng);
  calc_tree_free(&t);
  assert_int_equal(calc_parse("rand(1, 2) + rand(3, 4)", 23, &t, &err), 0);
  assert_non_null(t.rng); /* one state for the tree */
  calc_tree_free(&t);
  assert_null(t.root);
}

static void test_errors(void **state) {
  (void)state;
  check_error("1 + )", 5, "unexpected ')' at column 5", 5);
  check_error("max(1, 2))", 10, "unexpected ')' at column 10", 10);
  check_error("(1 + 2", 6, "unexpected end of input", 7);
  check_error("", 0, "unexpected end of input", 1);
  check_error("   ", 3, "unexpected end of input", 4);
  check_error("1 +", 3, "unexpected end of input", 4);
  check_error("foo(2)", 6, "unknown name 'foo' at column 1", 1);
  check_error("1 + bar", 7, "unknown name 'bar' at column 5", 5);
  check_error("Pi", 2, "unknown name 'Pi' at column 1", 1);
  check_error("1 2", 3, "unexpected '2' at column 3", 3);
  check_error("2 $ 3", 5, "unexpected '$' at column 3", 3);
  check_error("2 // 3", 6, "unexpected '/' at column 4", 4);
  check_error("2(3)", 4, "unexpected '(' at column 2", 2);
  check_error("PI(2)", 5, "unexpected '(' at column 3", 3);
  check_error("sin", 3, "unexpected end of input", 4);
  check_error("sin 2", 5, "expected '(' after 'sin' at column 5", 5);
  check_error("max(1,)", 7, "unexpected ')' at column 7", 7);
  check_error("max(,1)", 7, "unexpected ',' at column 5", 5);
  check_error("1, 2", 4, "unexpected ',' at column 2", 2);
  check_error(".", 1, "unexpected '.' at column 1", 1);
  check_error("2e", 2, "unexpected 'e' at column 2", 2);
  check_error("1 +\x01", 4, "unexpected byte 0x01 at column 4", 4);
  check_error("1\0 + 2", 6, "unexpected byte 0x00 at column 2", 2);
  /* The error names at most 32 bytes of the bad token. */
  char longname[200];
  memset(longname, 'x', sizeof longname);
  calc_tree t;
  calc_parse_error err;
  assert_int_equal(calc_parse(longname, sizeof longname, &t, &err), -1);
  assert_true(strlen(err.msg) < 80);
}

static char *repeat3(const char *a, size_t na, const char *b, size_t nb, const char *c, size_t nc) {
  size_t la = strlen(a), lb = strlen(b), lc = strlen(c);
  char *s = malloc(la * na + lb * nb + lc * nc + 1);
  char *p = s;
  for (size_t i = 0; i < na; i++, p += la) memcpy(p, a, la);
  for (size_t i = 0; i < nb; i++, p += lb) memcpy(p, b, lb);
  for (size_t i = 0; i < nc; i++, p += lc) memcpy(p, c, lc);
  *p = 0;
  return s;
}

static void test_limits(void **state) {
  (void)state;
  calc_tree t;
  calc_parse_error err;
  /* Depth CALC_MAX_DEPTH is fine, one more is refused. */
  char *s = repeat3("-", CALC_MAX_DEPTH - 1, "1", 1, "", 0);
  assert_int_equal(calc_parse(s, strlen(s), &t, &err), 0);
  calc_tree_free(&t);
  free(s);
  s = repeat3("-", CALC_MAX_DEPTH, "1", 1, "", 0);
  check_error(s, strlen(s), "expression nested too deeply", 0);
  free(s);
  /* A long left-assoc chain is deep without any parser recursion. */
  s = repeat3("1", 1, " + 1", CALC_MAX_DEPTH + 5, "", 0);
  check_error(s, strlen(s), "expression nested too deeply", 0);
  free(s);
  s = repeat3("2", 1, " ** 2", CALC_MAX_DEPTH + 5, "", 0);
  check_error(s, strlen(s), "expression nested too deeply", 0);
  free(s);
  /* Parentheses nest the parser, not the tree: bounded all the same, never a stack overflow. */
  s = repeat3("(", 100000, "1", 1, ")", 100000);
  check_error(s, strlen(s), "expression nested too deeply", 0);
  free(s);
  s = repeat3("(", 50, "1", 1, ")", 50);
  assert_int_equal(calc_parse(s, strlen(s), &t, &err), 0);
  calc_tree_free(&t);
  free(s);
  /* Arguments. */
  s = repeat3("max(", 1, "1, ", CALC_MAX_ARGS - 1, "1)", 1);
  assert_int_equal(calc_parse(s, strlen(s), &t, &err), 0);
  assert_int_equal(t.root->u.call.argc, CALC_MAX_ARGS);
  calc_tree_free(&t);
  free(s);
  s = repeat3("max(", 1, "1, ", CALC_MAX_ARGS, "1)", 1);
  check_error(s, strlen(s), "too many arguments", 0);
  free(s);
  /* Nodes: many wide calls. */
  char *inner = repeat3("max(", 1, "1, ", 998, "1)", 1);
  size_t ni = strlen(inner), ncalls = CALC_MAX_NODES / 1000 + 2;
  s = malloc(ni * ncalls + ncalls * 3 + 16);
  char *p = s;
  p += sprintf(p, "min(");
  for (size_t i = 0; i < ncalls; i++) p += sprintf(p, "%s%s", i ? ", " : "", inner);
  sprintf(p, ")");
  check_error(s, strlen(s), "expression too large", 0);
  free(s);
  free(inner);
  /* Integers above CALC_MAX_INT_BITS are refused as literals. */
  s = repeat3("1", 1, "0", 40000, "", 0);
  check_error(s, strlen(s), "integer literal too large", 1);
  free(s);
}

/* picohttpparser's "every prefix": each proper prefix of a valid expression parses or fails
 * cleanly with a column inside the text (or just past it, for the end of input). */
static void test_every_prefix(void **state) {
  (void)state;
  static const char *const inputs[] = {
      "(sin(max(2, 3 * 4, 5, 6 * ((7 * 8) / 9), 10 / 11)) / 12) * 13",
      "-((-(1 + 2)) * (-(3 - 4)))",
      "2 ** -1.5e-3 % pow(2, 10, 1000) - TAU + rand(1, 2) // 2",
      "max() + min(.5, 2., 1E+3, 123456789012345678901234567890)",
  };
  for (size_t k = 0; k < sizeof inputs / sizeof inputs[0]; k++) {
    size_t n = strlen(inputs[k]);
    for (size_t len = 0; len <= n; len++) {
      calc_tree t;
      calc_parse_error err;
      if (calc_parse(inputs[k], len, &t, &err) == 0) {
        assert_non_null(t.root);
        calc_tree_free(&t);
      } else {
        assert_null(t.root);
        assert_true(err.column >= 1 && err.column <= len + 1);
        assert_true(err.msg[0] != '\0');
      }
    }
  }
}

/* nghttp2's failmalloc: fail the i-th allocation for every i; no crash, no leak (ASan). */

static void test_failed_allocations(void **state) {
  (void)state;
  /* GMP keeps libc malloc here (calc_alloc_init not called): it cannot fail gracefully. */
  const char *text = "max(1, 2 * PI, -3, sin(4) ** 2, rand(1, 2)) + 1.5";
  int ok = 0;
  for (long i = 0; i < 1000 && !ok; i++) {
    failmalloc_arm(i);
    calc_set_allocator(&failmalloc);
    calc_tree t;
    calc_parse_error err;
    int rc = calc_parse(text, strlen(text), &t, &err);
    calc_set_allocator(NULL);
    if (rc == 0) {
      ok = 1;
      calc_tree_free(&t);
    } else {
      assert_null(t.root);
    }
  }
  failmalloc_arm(-1);
  assert_true(ok);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_precedence), cmocka_unit_test(test_associativity),
      cmocka_unit_test(test_unary),      cmocka_unit_test(test_numbers),
      cmocka_unit_test(test_names_and_calls), cmocka_unit_test(test_errors),
      cmocka_unit_test(test_limits),     cmocka_unit_test(test_every_prefix),
      cmocka_unit_test(test_failed_allocations),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
