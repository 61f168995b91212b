/* num_internal.h: helpers shared by num.c, num_ops.c and num_func.c (not public API).
 * The num_ prefix marks functions shared inside the library and nowhere else. */
#ifndef CALC_NUM_INTERNAL_H
#define CALC_NUM_INTERNAL_H
#include "calc/num.h"

/* The calclab integer limit error (OverflowError); always returns -1. */
int num_err_too_big(calc_exc *exc);
/* -1 (and the limit error) when z has more than CALC_MAX_INT_BITS bits. */
int num_check_bits(const mpz_t z, calc_exc *exc);
/* Rounds |z| * 2**shift_in (plus a sticky bit below it) to a double, half to even, honouring
 * subnormals; sets *overflow when the rounded value does not fit. Sign from `neg`. */
double num_round_mpz(const mpz_t mag, long shift, bool sticky, bool neg, bool *overflow);
/* Python's float(x) for either kind of number. */
int num_as_double(const calc_num *n, double *out, calc_exc *exc);
/* CPython's float_pow on two doubles. */
int num_float_pow(double iv, double iw, calc_num *out, calc_exc *exc);
/* Python's a < b for numbers, int vs float compared exactly; nan compares false. */
bool num_less(const calc_num *a, const calc_num *b);

#endif
