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

/* The shortest digits of a positive x. For a normal double (x >= DBL_MIN) two probes settle
 * most cases, because 15 digits are finer than a double's precision (DBL_DIG): the 15-digit
 * decimals are spaced at least 10**(e-14) apart around x, more than four times the width of
 * the interval of decimals that read back as x (at most one unit in x's last binary place).
 * So at most one decimal of 15 or fewer digits reads back as x, and when one does, its
 * zero-padded 15-digit form is the correctly rounded 15-digit candidate: if that candidate
 * reads back, it is the answer once its trailing zeros are stripped (the caller strips them);
 * if not, nothing shorter than 16 digits does and the probes at 16 and 17 digits decide, as
 * in the search. Subnormals have fewer significant bits, so they take the search. */
static int repr_shortest(double x, char *digits, int *exp10) {
  if (x < DBL_MIN) return repr_shortest_search(x, digits, exp10);
  char tmp[48];
  snprintf(tmp, sizeof tmp, "%.14e", x);
  int n = repr_parse_e(tmp, digits, exp10);
  if (repr_roundtrips(digits, n, *exp10, x)) return n;
  if ((n = repr_probe(x, 16, digits, exp10)) || (n = repr_probe(x, 17, digits, exp10))) return n;
  return repr_shortest_search(x, digits, exp10);  /* unreachable: 17 digits always read back */
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
