/* calc/exc.h: a Python exception as the server raises it (class name + args).
 *
 * Most exceptions carry one str argument (ZeroDivisionError('division by zero')).
 * OverflowError from a math range failure carries (errno, strerror):
 * OverflowError(34, 'Numerical result out of range'), whose str() is the args tuple's repr,
 * "(34, 'Numerical result out of range')" (OverflowError is no OSError). */
#ifndef CALC_EXC_H
#define CALC_EXC_H
#include <stdbool.h>

#include "calc/err.h"

#define CALC_EXC_MSG_MAX 256

typedef struct calc_exc {
  char type[40];            /* builtins class name: "ZeroDivisionError", "ValueError", ... */
  bool has_errno;           /* args are (errnum, msg) instead of (msg,) */
  int errnum;
  char msg[CALC_EXC_MSG_MAX];
  calc_err err;             /* the library error behind it (CALC_ERR_NOMEM: an answer never to
                               remember); CALC_OK for an exception Python itself raises */
} calc_exc;

/* Fills `e` (printf-style message); always returns -1 so callers can `return calc_exc_set(...)`. */
int calc_exc_set(calc_exc *e, const char *type, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* An exception for a library error: the class calc_err_reference gives for err; -1. */
int calc_exc_set_err(calc_exc *e, calc_err err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* MemoryError(msg) for an allocation that failed; always returns -1. */
int calc_exc_nomem(calc_exc *e, const char *msg);
int calc_exc_set_errno(calc_exc *e, const char *type, int errnum, const char *msg);
/* Python's str(e) into buf (truncating): "msg" or "(N, 'msg')". */
void calc_exc_str(const calc_exc *e, char *buf, unsigned long size);

#endif
