/* num.c: lifetime, conversion and str() of calclab numbers (Python int / float).
 * See calc/num.h; all integer sizes are bounded by CALC_MAX_INT_BITS (calc/limits.h). */
#include <math.h>
#include <string.h>

#include "calc/alloc.h"
#include "calc/limits.h"
#include "calc/num.h"
#include "num_internal.h"

void calc_num_init(calc_num *n) {
  n->is_float = false;
  n->f = 0.0;
  mpz_init(n->z);
}

void calc_num_clear(calc_num *n) { mpz_clear(n->z); }

void calc_num_set_float(calc_num *n, double f) {
  n->is_float = true;
  n->f = f;
  /* Only when needed: GMP allocates a limb for mpz_set_ui even to store 0 in a fresh mpz. */
  if (mpz_sgn(n->z) != 0) mpz_set_ui(n->z, 0);
}

void calc_num_set_si(calc_num *n, long v) {
  n->is_float = false;
  n->f = 0.0;
  mpz_set_si(n->z, v);
}

void calc_num_copy(calc_num *dst, const calc_num *src) {
  if (dst == src) return;
  dst->is_float = src->is_float;
  dst->f = src->f;
  mpz_set(dst->z, src->z);
}

int calc_num_set_decimal(calc_num *n, const char *s, size_t len) {
  size_t i = 0;
  if (len > 0 && s[0] == '-') i = 1;
  if (i == len) return -1;
  for (size_t j = i; j < len; j++)
    if (s[j] < '0' || s[j] > '9') return -1;
  /* Bound the size before GMP allocates: a decimal digit is log2(10) < 3.33 bits, so more
   * digits than this cannot fit (leading zeros aside, which the exact check below handles). */
  size_t digits = len - i;
  while (digits > 1 && s[len - digits] == '0') digits--;
  if (digits > (size_t)(CALC_MAX_INT_BITS * 0.30103) + 2) return -1;
  char *tmp = calc_strndup(s, len);
  if (!tmp) return -1;
  mpz_t z;
  mpz_init(z);
  int rc = mpz_set_str(z, tmp, 10);
  calc_free(tmp);
  if (rc != 0 || mpz_sizeinbase(z, 2) > CALC_MAX_INT_BITS) {
    mpz_clear(z);
    return -1;
  }
  n->is_float = false;
  n->f = 0.0;
  mpz_swap(n->z, z);
  mpz_clear(z);
  return 0;
}

bool calc_num_str_too_long(const calc_num *n) {
  if (n->is_float || mpz_sizeinbase(n->z, 10) <= CALC_PY_INT_MAX_STR_DIGITS) return false;
  /* sizeinbase may overshoot by one: compare with 10**4300 exactly. */
  mpz_t limit;
  mpz_init(limit);
  mpz_ui_pow_ui(limit, 10, CALC_PY_INT_MAX_STR_DIGITS);
  bool over = mpz_cmpabs(n->z, limit) >= 0;
  mpz_clear(limit);
  return over;
}

int calc_num_str(const calc_num *n, calc_buf *out) {
  if (n->is_float) {
    char tmp[32];
    int len = calc_float_repr(n->f, tmp);
    return calc_buf_append(out, tmp, (size_t)len);
  }
  /* mpz_sizeinbase(z, 10) may exceed the true length by one; +2 for sign and NUL. */
  size_t need = mpz_sizeinbase(n->z, 10) + 2;
  if (calc_buf_reserve(out, need) != 0) return -1;
  char *p = (char *)out->data + out->len;
  mpz_get_str(p, 10, n->z);
  out->len += strlen(p);
  return 0;
}

int num_err_too_big(calc_exc *exc) {
  /* Over a limit, but raised as Python raises its own integer overflows. */
  calc_exc_set(exc, "OverflowError", "integer result too large (over %u bits): calclab limit",
               (unsigned)CALC_MAX_INT_BITS);
  exc->err = CALC_ERR_LIMIT;
  return -1;
}

int num_check_bits(const mpz_t z, calc_exc *exc) {
  if (mpz_sgn(z) != 0 && mpz_sizeinbase(z, 2) > CALC_MAX_INT_BITS) return num_err_too_big(exc);
  return 0;
}

double num_round_mpz(const mpz_t mag, long shift, bool sticky, bool neg, bool *overflow) {
  /* The value is mag * 2**shift (+ something below when sticky). Its ulp after rounding is
   * 2**(nbits + shift - 53) for normal results and 2**-1074 for subnormal ones. */
  *overflow = false;
  double r;
  if (mpz_sgn(mag) == 0) {
    r = 0.0;
  } else {
    long nbits = (long)mpz_sizeinbase(mag, 2);
    long drop = nbits - 53;
    if (-1074 - shift > drop) drop = -1074 - shift;
    if (drop <= 0) {
      /* Exact already (sticky cannot matter: callers keep >= 2 guard bits when sticky). */
      r = ldexp(mpz_get_d(mag), (int)shift);
    } else {
      mpz_t m;
      mpz_init(m);
      bool half = mpz_tstbit(mag, (mp_bitcnt_t)(drop - 1));
      bool lower = sticky;
      if (!lower && drop >= 2) lower = mpz_scan1(mag, 0) < (mp_bitcnt_t)(drop - 1);
      mpz_tdiv_q_2exp(m, mag, (mp_bitcnt_t)drop);
      if (half && (lower || mpz_odd_p(m))) mpz_add_ui(m, m, 1);
      long e = shift + drop;
      if ((long)mpz_sizeinbase(m, 2) + e > 1024) {
        *overflow = true;
        r = HUGE_VAL;
      } else {
        r = ldexp(mpz_get_d(m), (int)(e < -2000 ? -2000 : e));
      }
      mpz_clear(m);
    }
    if (isinf(r)) *overflow = true;
  }
  return neg ? -r : r;
}

int calc_num_to_double(const calc_num *n, double *out, calc_exc *exc) {
  if (n->is_float) {
    *out = n->f;
    return 0;
  }
  if (mpz_sizeinbase(n->z, 2) <= 53) {
    *out = mpz_get_d(n->z);  /* exact */
    return 0;
  }
  mpz_t mag;
  mpz_init(mag);
  mpz_abs(mag, n->z);
  bool ovf;
  double r = num_round_mpz(mag, 0, false, mpz_sgn(n->z) < 0, &ovf);
  mpz_clear(mag);
  if (ovf) return calc_exc_set(exc, "OverflowError", "int too large to convert to float");
  *out = r;
  return 0;
}

int num_as_double(const calc_num *n, double *out, calc_exc *exc) { return calc_num_to_double(n, out, exc); }

bool num_less(const calc_num *a, const calc_num *b) {
  if (a->is_float && b->is_float) return a->f < b->f;
  if (!a->is_float && !b->is_float) return mpz_cmp(a->z, b->z) < 0;
  if (a->is_float) {
    if (isnan(a->f)) return false;
    return mpz_cmp_d(b->z, a->f) > 0;  /* exact comparison, handles infinities */
  }
  if (isnan(b->f)) return false;
  return mpz_cmp_d(a->z, b->f) < 0;
}

const char *calc_binop_symbol(calc_binop op) {
  switch (op) {
    case CALC_BIN_ADD: return "+";
    case CALC_BIN_SUB: return "-";
    case CALC_BIN_MUL: return "*";
    case CALC_BIN_DIV: return "/";
    case CALC_BIN_MOD: return "%";
    case CALC_BIN_POW: return "**";
  }
  return "?";
}

const char *calc_unop_symbol(calc_unop op) {
  switch (op) {
    case CALC_UN_NEG: return "-";
    case CALC_UN_POS: return "+";
  }
  return "?";
}

const char *calc_fn_name(calc_fn fn) {
  switch (fn) {
    case CALC_FN_SIN: return "sin";
    case CALC_FN_COS: return "cos";
    case CALC_FN_TAN: return "tan";
    case CALC_FN_SQRT: return "sqrt";
    case CALC_FN_LOG: return "log";
    case CALC_FN_MAX: return "max";
    case CALC_FN_MIN: return "min";
    case CALC_FN_POW: return "pow";
    case CALC_FN_RAND: return "rand";
  }
  return "?";
}
