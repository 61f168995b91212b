/* num_func.c: the calculator's functions with Python 3.11's behaviour:
 * sin cos tan sqrt log are math.* (Modules/mathmodule.c: math_1, loghelper, m_log),
 * max min pow are builtins (Python/bltinmodule.c: min_max, builtin_pow; long_pow for the
 * three-argument form), rand is random.Random.uniform (Lib/random.py). Argument-count
 * errors use CPython 3.11's exact wording. */
#include <errno.h>
#include <math.h>

#include "calc/limits.h"
#include "calc/num.h"
#include "calc/rng.h"
#include "num_internal.h"

static int domain_error(calc_exc *exc) { return calc_exc_set(exc, "ValueError", "math domain error"); }

/* CPython's math_1 on an already converted argument. */
static int math_1(double x, double (*fn)(double), bool can_overflow, calc_num *out, calc_exc *exc) {
  errno = 0;
  double r = fn(x);
  int err = errno;
  if (isnan(r) && !isnan(x)) return domain_error(exc);
  if (isinf(r) && isfinite(x)) {
    if (can_overflow) return calc_exc_set(exc, "OverflowError", "math range error");
    return domain_error(exc);
  }
  if (isfinite(r) && err) {
    if (err == EDOM) return domain_error(exc);
    if (err == ERANGE && fabs(r) >= 1.5) return calc_exc_set(exc, "OverflowError", "math range error");
    /* ERANGE with a small result is an underflow: not an error. */
  }
  calc_num_set_float(out, r);
  return 0;
}

/* CPython's m_log: log with the special values spelled out (errno is not relied upon). */
static double m_log(double x) {
  if (isfinite(x)) {
    if (x > 0.0) return log(x);
    if (x == 0.0) return -HUGE_VAL;
    return NAN;
  }
  if (isnan(x) || x > 0.0) return x;
  return NAN;
}

/* CPython's loghelper(arg, m_log): ints too large for a float are logged via frexp. */
static int loghelper(const calc_num *a, double *res, calc_exc *exc) {
  if (!a->is_float) {
    if (mpz_sgn(a->z) <= 0) return domain_error(exc);
    double x;
    calc_exc tmp;
    if (calc_num_to_double(a, &x, &tmp) == 0) {
      *res = m_log(x);
      return 0;
    }
    /* _PyLong_Frexp: |a| ~= m * 2**e with m in [0.5, 1), correctly rounded to 53 bits. */
    long nbits = (long)mpz_sizeinbase(a->z, 2);
    bool ovf;
    double scaled = num_round_mpz(a->z, -nbits, false, false, &ovf);  /* in [0.5, 1] */
    int e2;
    double m = frexp(scaled, &e2);
    *res = m_log(m) + m_log(2.0) * (double)(nbits + e2);
    return 0;
  }
  calc_num r;
  calc_num_init(&r);
  int rc = math_1(a->f, m_log, false, &r, exc);
  if (rc == 0) *res = r.f;
  calc_num_clear(&r);
  return rc;
}

static int fn_math1(calc_fn fn, calc_num *out, const calc_num *args, size_t argc, calc_exc *exc) {
  if (argc != 1)
    return calc_exc_set(exc, "TypeError", "math.%s() takes exactly one argument (%zu given)", calc_fn_name(fn), argc);
  double x;
  if (calc_num_to_double(&args[0], &x, exc) != 0) return -1;
  switch (fn) {
    case CALC_FN_SIN: return math_1(x, sin, false, out, exc);
    case CALC_FN_COS: return math_1(x, cos, false, out, exc);
    case CALC_FN_TAN: return math_1(x, tan, false, out, exc);
    default: return math_1(x, sqrt, false, out, exc);
  }
}

static int fn_log(calc_num *out, const calc_num *args, size_t argc, calc_exc *exc) {
  if (argc < 1 || argc > 2) return calc_exc_set(exc, "TypeError", "math.log requires 1 to 2 arguments");
  double num, den;
  if (loghelper(&args[0], &num, exc) != 0) return -1;
  if (argc == 2) {
    if (loghelper(&args[1], &den, exc) != 0) return -1;
    if (den == 0.0) return calc_exc_set(exc, "ZeroDivisionError", "float division by zero");
    num /= den;
  }
  calc_num_set_float(out, num);
  return 0;
}

/* builtins.max / min over positional arguments: the first extreme item wins; int and float
 * compare exactly; a nan never replaces the current item (every comparison with it is false). */
static int fn_minmax(bool is_max, calc_num *out, const calc_num *args, size_t argc, calc_exc *exc) {
  const char *name = is_max ? "max" : "min";
  if (argc == 0) return calc_exc_set(exc, "TypeError", "%s expected at least 1 argument, got 0", name);
  if (argc == 1)
    return calc_exc_set(exc, "TypeError", "'%s' object is not iterable", args[0].is_float ? "float" : "int");
  size_t best = 0;
  for (size_t i = 1; i < argc; i++) {
    bool better = is_max ? num_less(&args[best], &args[i]) : num_less(&args[i], &args[best]);
    if (better) best = i;
  }
  calc_num_copy(out, &args[best]);
  return 0;
}

/* long_pow with a modulus. Work grows with bits(exponent) * bits(modulus)**~1.6, so calclab
 * bounds the product of the sizes (CALC_MAX_POWMOD_WORK) before computing. */
static int int_powmod(calc_num *out, const mpz_t a, const mpz_t b, const mpz_t c, calc_exc *exc) {
  if (mpz_sgn(c) == 0) return calc_exc_set(exc, "ValueError", "pow() 3rd argument cannot be 0");
  mpz_t m, base, e, r;
  mpz_inits(m, base, e, r, NULL);
  int rc = 0;
  mpz_abs(m, c);
  if (mpz_cmp_ui(m, 1) == 0) {
    calc_num_set_si(out, 0);
    goto done;
  }
  if ((double)mpz_sizeinbase(b, 2) * (double)mpz_sizeinbase(m, 2) > (double)CALC_MAX_POWMOD_WORK) {
    rc = calc_exc_set(exc, "OverflowError", "pow() exponent and modulus too large (over %lu bit-products): calclab limit",
                      (unsigned long)CALC_MAX_POWMOD_WORK);
    goto done;
  }
  mpz_set(base, a);
  mpz_abs(e, b);
  if (mpz_sgn(b) < 0) {
    if (mpz_invert(base, base, m) == 0) {
      rc = calc_exc_set(exc, "ValueError", "base is not invertible for the given modulus");
      goto done;
    }
  }
  mpz_mod(base, base, m);
  mpz_powm(r, base, e, m);
  if (mpz_sgn(c) < 0 && mpz_sgn(r) != 0) mpz_sub(r, r, m);  /* result takes the modulus' sign */
  out->is_float = false;
  out->f = 0.0;
  mpz_swap(out->z, r);
done:
  mpz_clears(m, base, e, r, NULL);
  return rc;
}

static int fn_pow(calc_num *out, const calc_num *args, size_t argc, calc_exc *exc) {
  if (argc == 0) return calc_exc_set(exc, "TypeError", "pow() missing required argument 'base' (pos 1)");
  if (argc == 1) return calc_exc_set(exc, "TypeError", "pow() missing required argument 'exp' (pos 2)");
  if (argc > 3) return calc_exc_set(exc, "TypeError", "pow() takes at most 3 arguments (%zu given)", argc);
  if (argc == 2) return calc_num_binop(CALC_BIN_POW, out, &args[0], &args[1], exc);
  if (args[0].is_float || args[1].is_float || args[2].is_float)
    return calc_exc_set(exc, "TypeError", "pow() 3rd argument not allowed unless all arguments are integers");
  return int_powmod(out, args[0].z, args[1].z, args[2].z, exc);
}

/* random.Random.uniform(a, b) = a + (b - a) * self.random(), evaluated in that order with
 * Python's arithmetic (so b - a of ints is exact, and the state advances only once b - a
 * succeeded). */
static int fn_rand(calc_num *out, const calc_num *args, size_t argc, calc_rng *rng, calc_exc *exc) {
  if (argc == 0)
    return calc_exc_set(exc, "TypeError", "Random.uniform() missing 2 required positional arguments: 'a' and 'b'");
  if (argc == 1)
    return calc_exc_set(exc, "TypeError", "Random.uniform() missing 1 required positional argument: 'b'");
  if (argc > 2)
    return calc_exc_set(exc, "TypeError", "Random.uniform() takes 3 positional arguments but %zu were given", argc + 1);
  if (!rng) return calc_exc_set(exc, "RuntimeError", "rand() needs a random state");
  calc_num diff, r, prod;
  calc_num_init(&diff);
  calc_num_init(&r);
  calc_num_init(&prod);
  int rc = calc_num_binop(CALC_BIN_SUB, &diff, &args[1], &args[0], exc);
  if (rc == 0) {
    calc_num_set_float(&r, calc_rng_random(rng));
    rc = calc_num_binop(CALC_BIN_MUL, &prod, &diff, &r, exc);
  }
  if (rc == 0) rc = calc_num_binop(CALC_BIN_ADD, out, &args[0], &prod, exc);
  calc_num_clear(&diff);
  calc_num_clear(&r);
  calc_num_clear(&prod);
  return rc;
}

int calc_num_call(calc_fn fn, calc_num *out, const calc_num *args, size_t argc, struct calc_rng *rng,
                  calc_exc *exc) {
  switch (fn) {
    case CALC_FN_SIN:
    case CALC_FN_COS:
    case CALC_FN_TAN:
    case CALC_FN_SQRT:
      return fn_math1(fn, out, args, argc, exc);
    case CALC_FN_LOG:
      return fn_log(out, args, argc, exc);
    case CALC_FN_MAX:
      return fn_minmax(true, out, args, argc, exc);
    case CALC_FN_MIN:
      return fn_minmax(false, out, args, argc, exc);
    case CALC_FN_POW:
      return fn_pow(out, args, argc, exc);
    case CALC_FN_RAND:
      return fn_rand(out, args, argc, rng, exc);
  }
  return calc_exc_set(exc, "TypeError", "unknown function");
}
