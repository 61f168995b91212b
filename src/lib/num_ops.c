/* num_ops.c: the operators + - * / % ** and unary - + with Python 3.11's exact semantics
 * (Objects/longobject.c and Objects/floatobject.c), plus calclab's integer size limit:
 * every int result is predicted (or bounded) before GMP computes it, so 9 ** 9 ** 9 fails
 * in microseconds with an OverflowError instead of exhausting memory. */
#include <errno.h>
#include <math.h>
#include <string.h>

#include "calc/limits.h"
#include "calc/num.h"
#include "num_internal.h"

/* ---- int (mpz) operations ------------------------------------------------------------- */

/* Python's int / int (long_true_divide): correctly rounded, half to even. */
static int int_true_div(calc_num *out, const mpz_t a, const mpz_t b, calc_exc *exc) {
  if (mpz_sgn(b) == 0) return calc_exc_set(exc, "ZeroDivisionError", "division by zero");
  bool neg = (mpz_sgn(a) < 0) != (mpz_sgn(b) < 0);
  if (mpz_sgn(a) == 0) {
    calc_num_set_float(out, neg ? -0.0 : 0.0);
    return 0;
  }
  long na = (long)mpz_sizeinbase(a, 2), nb = (long)mpz_sizeinbase(b, 2);
  /* |a/b| < 2**(na-nb+1) and >= 2**(na-nb-1). */
  if (na - nb > 1024) return calc_exc_set(exc, "OverflowError", "integer division result too large for a float");
  if (na - nb < -1080) {  /* below a quarter of the smallest subnormal: rounds to zero */
    calc_num_set_float(out, neg ? -0.0 : 0.0);
    return 0;
  }
  /* q = floor(|a| * 2**-shift / |b|) has at least 55 bits; the remainder is the sticky bit. */
  long shift = na - nb - 55;
  mpz_t x, y, q, r;
  mpz_inits(x, y, q, r, NULL);
  mpz_abs(x, a);
  mpz_abs(y, b);
  if (shift < 0)
    mpz_mul_2exp(x, x, (mp_bitcnt_t)(-shift));
  else
    mpz_mul_2exp(y, y, (mp_bitcnt_t)shift);
  mpz_tdiv_qr(q, r, x, y);
  bool ovf;
  double d = num_round_mpz(q, shift, mpz_sgn(r) != 0, neg, &ovf);
  mpz_clears(x, y, q, r, NULL);
  if (ovf) return calc_exc_set(exc, "OverflowError", "integer division result too large for a float");
  calc_num_set_float(out, d);
  return 0;
}

/* Stores the int r (which it clears) as out, unless it is over CALC_MAX_INT_BITS. */
static int set_int_result(calc_num *out, mpz_t r, calc_exc *exc) {
  int rc = num_check_bits(r, exc);
  if (rc == 0) {
    out->is_float = false;
    out->f = 0.0;
    mpz_swap(out->z, r);
  }
  mpz_clear(r);
  return rc;
}

/* int ** int with a non-negative exponent; size predicted first. */
static int int_pow(calc_num *out, const mpz_t a, const mpz_t b, calc_exc *exc) {
  /* 0, 1 and -1 stay small whatever the exponent. */
  if (mpz_cmpabs_ui(a, 1) <= 0) {
    if (mpz_sgn(b) == 0) {
      calc_num_set_si(out, 1);
    } else if (mpz_sgn(a) == 0) {
      calc_num_set_si(out, 0);
    } else if (mpz_sgn(a) > 0) {
      calc_num_set_si(out, 1);
    } else {
      calc_num_set_si(out, mpz_odd_p(b) ? -1 : 1);
    }
    return 0;
  }
  /* |a| >= 2: the result has at least b*(bits(a)-1)+1 bits. */
  if (mpz_cmp_ui(b, CALC_MAX_INT_BITS) > 0) return num_err_too_big(exc);
  unsigned long e = mpz_get_ui(b);
  unsigned long nbits = (unsigned long)mpz_sizeinbase(a, 2);
  if (e * (nbits - 1) + 1 > CALC_MAX_INT_BITS) return num_err_too_big(exc);
  /* Upper bound e*nbits <= 2 * CALC_MAX_INT_BITS here: cheap to compute, then check. */
  mpz_t r;
  mpz_init(r);
  mpz_pow_ui(r, a, e);
  return set_int_result(out, r, exc);
}

static int int_binop(calc_binop op, calc_num *out, const mpz_t a, const mpz_t b, calc_exc *exc) {
  mpz_t r;
  switch (op) {
    case CALC_BIN_DIV:
      return int_true_div(out, a, b, exc);
    case CALC_BIN_POW:
      if (mpz_sgn(b) < 0) {
        /* long_pow hands a negative exponent to float_pow on float(a), float(b). */
        calc_num fa, fb;
        double da, db;
        calc_num_init(&fa);
        calc_num_init(&fb);
        mpz_set(fa.z, a);
        mpz_set(fb.z, b);
        int rc = calc_num_to_double(&fa, &da, exc);
        if (rc == 0) rc = calc_num_to_double(&fb, &db, exc);
        calc_num_clear(&fa);
        calc_num_clear(&fb);
        if (rc != 0) return rc;
        return num_float_pow(da, db, out, exc);
      }
      return int_pow(out, a, b, exc);
    case CALC_BIN_MOD:
      if (mpz_sgn(b) == 0) return calc_exc_set(exc, "ZeroDivisionError", "integer modulo by zero");
      break;
    case CALC_BIN_MUL:
      if (mpz_sgn(a) != 0 && mpz_sgn(b) != 0 &&
          mpz_sizeinbase(a, 2) + mpz_sizeinbase(b, 2) - 1 > CALC_MAX_INT_BITS)
        return num_err_too_big(exc);
      break;
    default:
      break;
  }
  mpz_init(r);
  switch (op) {
    case CALC_BIN_ADD: mpz_add(r, a, b); break;
    case CALC_BIN_SUB: mpz_sub(r, a, b); break;
    case CALC_BIN_MUL: mpz_mul(r, a, b); break;
    case CALC_BIN_MOD: mpz_fdiv_r(r, a, b); break;  /* floored: sign of the divisor */
    default: break;
  }
  return set_int_result(out, r, exc);
}

/* ---- float operations ----------------------------------------------------------------- */

static bool dbl_is_odd_integer(double x) { return fmod(fabs(x), 2.0) == 1.0; }

/* CPython 3.11 float_pow. Where Python would return a complex (negative base, non-integral
 * exponent), calclab has no complex type and raises ValueError instead (documented quirk). */
int num_float_pow(double iv, double iw, calc_num *out, calc_exc *exc) {
  bool negate = false;
  if (iw == 0.0) {
    calc_num_set_float(out, 1.0);
    return 0;
  }
  if (isnan(iv)) {
    calc_num_set_float(out, iv);
    return 0;
  }
  if (isnan(iw)) {
    calc_num_set_float(out, iv == 1.0 ? 1.0 : iw);
    return 0;
  }
  if (isinf(iw)) {
    double av = fabs(iv);
    if (av == 1.0)
      calc_num_set_float(out, 1.0);
    else if ((iw > 0) == (av > 1.0))
      calc_num_set_float(out, fabs(iw));
    else
      calc_num_set_float(out, 0.0);
    return 0;
  }
  if (isinf(iv)) {
    bool odd = dbl_is_odd_integer(iw);
    if (iw > 0)
      calc_num_set_float(out, odd ? iv : fabs(iv));
    else
      calc_num_set_float(out, odd ? copysign(0.0, iv) : 0.0);
    return 0;
  }
  if (iv == 0.0) {
    bool odd = dbl_is_odd_integer(iw);
    if (iw < 0.0) return calc_exc_set(exc, "ZeroDivisionError", "0.0 cannot be raised to a negative power");
    calc_num_set_float(out, odd ? iv : 0.0);
    return 0;
  }
  if (iv < 0.0) {
    if (iw != floor(iw))
      return calc_exc_set(exc, "ValueError",
                          "complex result (negative number to a fractional power) is not supported");
    iv = -iv;
    negate = dbl_is_odd_integer(iw);
  }
  if (iv == 1.0) {
    calc_num_set_float(out, negate ? -1.0 : 1.0);
    return 0;
  }
  errno = 0;
  double ix = pow(iv, iw);
  /* _Py_ADJUST_ERANGE1: infinities are overflow; an underflow to 0 is not an error. */
  int err = errno;
  if (err == 0 && isinf(ix))
    err = ERANGE;
  else if (err == ERANGE && ix == 0.0)
    err = 0;
  if (negate) ix = -ix;
  if (err != 0) {
    /* PyErr_SetFromErrno: args (errno, strerror(errno)); str() is the tuple,
     * "(34, 'Numerical result out of range')" on Linux. */
    return calc_exc_set_errno(exc, err == ERANGE ? "OverflowError" : "ValueError", err, strerror(err));
  }
  calc_num_set_float(out, ix);
  return 0;
}

static int float_binop(calc_binop op, calc_num *out, double a, double b, calc_exc *exc) {
  double r;
  switch (op) {
    case CALC_BIN_ADD: r = a + b; break;
    case CALC_BIN_SUB: r = a - b; break;
    case CALC_BIN_MUL: r = a * b; break;
    case CALC_BIN_DIV:
      if (b == 0.0) return calc_exc_set(exc, "ZeroDivisionError", "float division by zero");
      r = a / b;
      break;
    case CALC_BIN_MOD:
      /* float_rem: fmod, then move into the divisor's sign; a zero takes the divisor's sign. */
      if (b == 0.0) return calc_exc_set(exc, "ZeroDivisionError", "float modulo");
      r = fmod(a, b);
      if (r != 0.0) {
        if ((b < 0) != (r < 0)) r += b;
      } else {
        r = copysign(0.0, b);
      }
      break;
    case CALC_BIN_POW:
      return num_float_pow(a, b, out, exc);
    default:
      return calc_exc_set(exc, "TypeError", "unsupported operator");
  }
  calc_num_set_float(out, r);
  return 0;
}

int calc_num_binop(calc_binop op, calc_num *out, const calc_num *a, const calc_num *b, calc_exc *exc) {
  if (!a->is_float && !b->is_float) return int_binop(op, out, a->z, b->z, exc);
  /* Mixed operands: Python converts the int with float(int) (OverflowError when too big). */
  double da, db;
  if (calc_num_to_double(a, &da, exc) != 0) return -1;
  if (calc_num_to_double(b, &db, exc) != 0) return -1;
  return float_binop(op, out, da, db, exc);
}

int calc_num_unop(calc_unop op, calc_num *out, const calc_num *a, calc_exc *exc) {
  (void)exc;
  calc_num_copy(out, a);
  if (op == CALC_UN_NEG) {
    if (out->is_float)
      out->f = -out->f;
    else
      mpz_neg(out->z, out->z);
  }
  return 0;
}
