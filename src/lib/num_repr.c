/* num_repr.c: Python's repr(float) (float_repr_style 'short').
 *
 * Digits: the shortest decimal string that reads back as the same double; among strings of
 * that length, the one nearest the double (David Gay's mode 0, which CPython uses). We find it
 * with glibc's correctly rounded printf/strtod: for 1..17 significant digits take the
 * correctly rounded candidate, and, because the rounding interval is lopsided at powers of
 * two, also its neighbours one unit in the last place away.
 * Format (CPython's format_float_short with repr flags): with decimal exponent e (d.ddd*10**e)
 * fixed notation when -4 <= e < 16, always with a ".0" when integral; otherwise d.ddde+XX with
 * at least two exponent digits. */
#include <float.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "calc/num.h"

/* Digits (no dot) and exponent of a candidate; returns true when it reads back as x.
 * The text "d.ddde-XX" is built by hand: snprintf here cost as much as the strtod. */
static bool repr_roundtrips(const char *digits, int ndig, int exp10, double x) {
  char tmp[48], *q = tmp;
  *q++ = digits[0];
  if (ndig > 1) {
    *q++ = '.';
    memcpy(q, digits + 1, (size_t)ndig - 1);
    q += ndig - 1;
  }
  *q++ = 'e';
  unsigned e = exp10 < 0 ? (unsigned)-exp10 : (unsigned)exp10;
  if (exp10 < 0) *q++ = '-';
  char rev[8];
  int k = 0;
  do { rev[k++] = (char)('0' + e % 10); e /= 10; } while (e && k < 8);
  while (k) *q++ = rev[--k];
  *q = '\0';
  return strtod(tmp, NULL) == x;
}

/* Adds delta (+1 or -1) to the last digit of a p-digit string; keeps p digits by adjusting
 * the exponent on carry/borrow. Returns false when the result has no meaning (0). */
static bool repr_step(char *d, int p, int *exp10, int delta) {
  int i = p - 1;
  if (delta > 0) {
    while (i >= 0 && d[i] == '9') d[i--] = '0';
    if (i < 0) {
      d[0] = '1';  /* 99..9 + 1 = 100..0: one more digit, keep p by bumping the exponent */
      for (int j = 1; j < p; j++) d[j] = '0';
      (*exp10)++;
      return true;
    }
    d[i]++;
    return true;
  }
  while (i >= 0 && d[i] == '0') d[i--] = '9';
  if (i < 0) return false;
  d[i]--;
  if (d[0] == '0') {
    if (p == 1) return false;
    /* 10..0 - 1 = 9..9 with one digit less: shift to keep p digits. */
    memmove(d, d + 1, (size_t)p - 1);
    d[p - 1] = '9';
    (*exp10)--;
  }
  return true;
}

/* Parses "%.*e" output "d.ddde+XX" into plain digits and exponent. */
static int repr_parse_e(const char *s, char *digits, int *exp10) {
  int n = 0;
  for (; *s && *s != 'e'; s++)
    if (*s >= '0' && *s <= '9') digits[n++] = *s;
  digits[n] = '\0';
  *exp10 = (*s == 'e') ? atoi(s + 1) : 0;
  return n;
}

/* The p-digit candidate that reads back as x (nearest first, then its neighbours), or 0.
 * Whether one exists is monotonic in p (a p-digit decimal is also a (p+1)-digit one). */
static int repr_probe(double x, int p, char *digits, int *exp10) {
  char tmp[48], d0[24];
  int e0;
  snprintf(tmp, sizeof tmp, "%.*e", p - 1, x);
  int n = repr_parse_e(tmp, d0, &e0);
  if (repr_roundtrips(d0, n, e0, x)) {
    memcpy(digits, d0, (size_t)n + 1);
    *exp10 = e0;
    return n;
  }
  /* Neighbours: at most one of them can read back when the nearest one does not. */
  for (int delta = -1; delta <= 1; delta += 2) {
    char d1[24];
    int e1 = e0;
    memcpy(d1, d0, (size_t)n + 1);
    if (repr_step(d1, n, &e1, delta) && repr_roundtrips(d1, n, e1, x)) {
      memcpy(digits, d1, (size_t)n + 1);
      *exp10 = e1;
      return n;
    }
  }
  return 0;
}

/* The shortest length by binary search over 1..17 (about 4 probes instead of up to 17); the
 * answer is the same as the linear search's: same length, same candidate order. */
static int repr_shortest_search(double x, char *digits, int *exp10) {
  int lo = 1, hi = 17, found = 0;   /* found: digits of the probe at hi, 0 if not probed */
  while (lo < hi) {
    int mid = (lo + hi) / 2;
    char d[24];
    int e;
    int n = repr_probe(x, mid, d, &e);
    if (n) {
      hi = mid;
      found = n;
      memcpy(digits, d, (size_t)n + 1);
      *exp10 = e;
    } else {
      lo = mid + 1;
    }
  }
  if (found) return found;          /* the last success was at hi == lo */
  int n = repr_probe(x, 17, digits, exp10);
  if (n) return n;
  /* Unreachable: 17 digits always round-trip. */
  char tmp[48];
  snprintf(tmp, sizeof tmp, "%.16e", x);
  return repr_parse_e(tmp, digits, exp10);
}

/* Whether digits * 10**(exp10 - ndig + 1) reads back as x, without strtod where one IEEE
 * operation gives the answer (Clinger's fast path): the significand is an integer of at most
 * 2**53 and the power of ten at most 10**22, both exact doubles, so their correctly rounded
 * product or quotient is the correctly rounded value of the decimal, which is what strtod
 * returns. Needs double arithmetic without excess precision (FLT_EVAL_METHOD 0, as on x86-64
 * and arm64); elsewhere strtod decides every time. */
static bool repr_reads_back(const char *digits, int ndig, int exp10, double x) {
#if FLT_EVAL_METHOD == 0
  static const double pow10[23] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                   1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                   1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
  uint64_t m = 0;
  for (int i = 0; i < ndig; i++) m = m * 10 + (uint64_t)(digits[i] - '0');
  int q = exp10 - (ndig - 1);
  if (m <= (UINT64_C(1) << 53) && q >= -22 && q <= 22) {
    double y = q >= 0 ? (double)m * pow10[q] : (double)m / pow10[-q];
    return y == x;
  }
#endif
  return repr_roundtrips(digits, ndig, exp10, x);
}

/* The correctly rounded p-digit decimal of x (p < 17), from its correctly rounded 17 digits
 * d17 where that decides: x lies within half a unit of d17's last digit, so unless the
 * dropped digits are exactly 5 followed by zeros (x could then be on either side of the
 * midpoint), they tell which way x rounds. The ambiguous case asks printf. */
static int repr_round(double x, const char *d17, int e17, int p, char *out, int *exp10) {
  bool up, tie = d17[p] == '5';
  for (int i = p + 1; i < 17 && tie; i++) tie = d17[i] == '0';
  if (tie) {
    char tmp[48];
    snprintf(tmp, sizeof tmp, "%.*e", p - 1, x);
    return repr_parse_e(tmp, out, exp10);
  }
  up = d17[p] >= '5';
  memcpy(out, d17, (size_t)p);
  out[p] = '\0';
  *exp10 = e17;
  if (up && !repr_step(out, p, exp10, +1)) return 0;
  return p;
}

/* The shortest digits of a positive x. For a normal double (x >= DBL_MIN) 15 digits are finer
 * than a double's precision (DBL_DIG): the 15-digit decimals are spaced at least 10**(e-14)
 * apart around x, more than four times the width of the interval of decimals that read back
 * as x (at most one unit in x's last binary place). So at most one decimal of 15 or fewer
 * digits reads back as x, and when one does, its zero-padded 15-digit form is the correctly
 * rounded 15-digit candidate: if that candidate reads back, it is the answer once its trailing
 * zeros are stripped (the caller strips them). If not, nothing shorter than 16 digits does:
 * the 16-digit candidates are tried as the search tries them (the nearest, then its
 * neighbours), and otherwise the correctly rounded 17 digits always read back
 * (DBL_DECIMAL_DIG). One printf gives the 17 digits, and the 15- and 16-digit candidates are
 * rounded from them. Subnormals have fewer significant bits, so they take the search. */
static int repr_shortest(double x, char *digits, int *exp10) {
  if (x < DBL_MIN) return repr_shortest_search(x, digits, exp10);
  char tmp[48], d17[24];
  int e17;
  snprintf(tmp, sizeof tmp, "%.16e", x);
  if (repr_parse_e(tmp, d17, &e17) != 17) return repr_shortest_search(x, digits, exp10);
  int n = repr_round(x, d17, e17, 15, digits, exp10);
  if (n && repr_reads_back(digits, n, *exp10, x)) return n;
  char d16[24];
  int e16;
  if ((n = repr_round(x, d17, e17, 16, d16, &e16)) == 16) {
    if (repr_reads_back(d16, 16, e16, x)) {
      memcpy(digits, d16, 17);
      *exp10 = e16;
      return 16;
    }
    for (int delta = -1; delta <= 1; delta += 2) {
      char d1[24];
      int e1 = e16;
      memcpy(d1, d16, 17);
      if (repr_step(d1, 16, &e1, delta) && repr_reads_back(d1, 16, e1, x)) {
        memcpy(digits, d1, 17);
        *exp10 = e1;
        return 16;
      }
    }
  }
  memcpy(digits, d17, 18);
  *exp10 = e17;
  return 17;
}

int calc_float_repr(double f, char *buf) {
  if (isnan(f)) return (int)(strcpy(buf, "nan"), 3);
  if (isinf(f)) {
    strcpy(buf, f < 0 ? "-inf" : "inf");
    return f < 0 ? 4 : 3;
  }
  char *p = buf;
  if (signbit(f)) {
    *p++ = '-';
    f = -f;
  }
  if (f == 0.0) {
    strcpy(p, "0.0");
    return (int)(p - buf) + 3;
  }
  char digits[24];
  int e;
  int n = repr_shortest(f, digits, &e);
  /* Strip trailing zeros (the shortest form has none, but a carry may create them). */
  while (n > 1 && digits[n - 1] == '0') digits[--n] = '\0';
  if (e >= -4 && e < 16) {
    if (e < 0) {
      *p++ = '0';
      *p++ = '.';
      for (int i = 0; i < -e - 1; i++) *p++ = '0';
      memcpy(p, digits, (size_t)n);
      p += n;
    } else {
      int intlen = e + 1;
      for (int i = 0; i < intlen; i++) *p++ = i < n ? digits[i] : '0';
      *p++ = '.';
      if (n > intlen) {
        memcpy(p, digits + intlen, (size_t)(n - intlen));
        p += n - intlen;
      } else {
        *p++ = '0';
      }
    }
  } else {
    *p++ = digits[0];
    if (n > 1) {
      *p++ = '.';
      memcpy(p, digits + 1, (size_t)n - 1);
      p += n - 1;
    }
    p += sprintf(p, "e%c%02d", e < 0 ? '-' : '+', e < 0 ? -e : e);
  }
  *p = '\0';
  return (int)(p - buf);
}
