/* calc/num.h: Python 3 numbers (int = arbitrary precision via GMP, float = IEEE double) and
 * the operations the calculator applies to them, with Python's exact results, reprs and
 * exceptions (docs/protocol.md section 3). I/O-free. */
#ifndef CALC_NUM_H
#define CALC_NUM_H
#include <gmp.h>
#include <stdbool.h>
#include <stddef.h>
#include "calc/buf.h"
#include "calc/exc.h"

typedef struct calc_num {
  bool is_float;
  double f;  /* when is_float */
  mpz_t z;   /* when !is_float; always initialised */
} calc_num;

typedef enum { CALC_BIN_ADD, CALC_BIN_SUB, CALC_BIN_MUL, CALC_BIN_DIV, CALC_BIN_MOD, CALC_BIN_POW } calc_binop;
typedef enum { CALC_UN_NEG, CALC_UN_POS } calc_unop;
typedef enum {
  CALC_FN_SIN, CALC_FN_COS, CALC_FN_TAN, CALC_FN_SQRT, CALC_FN_LOG,
  CALC_FN_MAX, CALC_FN_MIN, CALC_FN_POW, CALC_FN_RAND
} calc_fn;

struct calc_rng;

void calc_num_init(calc_num *n);                 /* int 0 */
void calc_num_clear(calc_num *n);
void calc_num_set_float(calc_num *n, double f);
void calc_num_set_si(calc_num *n, long v);
void calc_num_copy(calc_num *dst, const calc_num *src);
/* Decimal integer text (optional '-') -> int; -1 on bad text or more than CALC_MAX_INT_BITS. */
int calc_num_set_decimal(calc_num *n, const char *s, size_t len);

/* Python's str() of the number appended to out: "42", "-0.0", "1e+16", "inf", "nan". */
int calc_num_str(const calc_num *n, calc_buf *out);
/* CPython 3.11 refuses str() of an int of more than 4300 decimal digits
 * (sys.get_int_max_str_digits()) with this ValueError: the reference server fails so at a
 * step that would print one, and the reference client when it prints such a result. */
#define CALC_PY_INT_MAX_STR_DIGITS 4300
#define CALC_PY_INT_STR_LIMIT_MSG                                                            \
  "Exceeds the limit (4300 digits) for integer string conversion; use "                     \
  "sys.set_int_max_str_digits() to increase the limit"
/* Whether str(n) would hit that limit (an int of more than 4300 digits). */
bool calc_num_str_too_long(const calc_num *n);
/* Python's repr(float): shortest round-trip text. buf must hold 32 bytes. Returns length. */
int calc_float_repr(double f, char *buf);

/* Each operation writes `out` (initialised by the caller, may alias nothing) and returns 0,
 * or returns -1 with `exc` set to the exception Python raises. Integer results larger than
 * CALC_MAX_INT_BITS are refused before they are computed (OverflowError, calclab limit). */
int calc_num_binop(calc_binop op, calc_num *out, const calc_num *a, const calc_num *b, calc_exc *exc);
int calc_num_unop(calc_unop op, calc_num *out, const calc_num *a, calc_exc *exc);
/* Calls function fn on argc args. `rng` is used by CALC_FN_RAND only (may be NULL otherwise). */
int calc_num_call(calc_fn fn, calc_num *out, const calc_num *args, size_t argc,
                  struct calc_rng *rng, calc_exc *exc);

/* Python's int -> float conversion (round half to even); -1 + OverflowError
 * ('int too large to convert to float') when out of range. */
int calc_num_to_double(const calc_num *n, double *out, calc_exc *exc);

/* pow(a, b, m): calclab refuses (OverflowError, calclab limit) when
 * bits(b) * bits(m) exceeds this, so one modular power stays well under a second. */
#define CALC_MAX_POWMOD_WORK (1ul << 27)

const char *calc_binop_symbol(calc_binop op);   /* "+" ... "**" */
const char *calc_unop_symbol(calc_unop op);     /* "-" "+" */
const char *calc_fn_name(calc_fn fn);           /* "sin" ... "rand" */

#endif
