/* exc.c: Python exceptions as values (see calc/exc.h). */
#include "calc/exc.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* Every field of e: no errno, the library error err, the formatted message. */
static int exc_vset(calc_exc *e, const char *type, calc_err err, const char *fmt, va_list ap) {
  snprintf(e->type, sizeof e->type, "%s", type);
  e->has_errno = false;
  e->errnum = 0;
  e->err = err;
  vsnprintf(e->msg, sizeof e->msg, fmt, ap);
  return -1;
}

int calc_exc_set(calc_exc *e, const char *type, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  exc_vset(e, type, CALC_OK, fmt, ap);
  va_end(ap);
  return -1;
}

int calc_exc_set_err(calc_exc *e, calc_err err, const char *fmt, ...) {
  const char *cls = calc_err_reference(err).exc_class;
  va_list ap;
  va_start(ap, fmt);
  exc_vset(e, cls ? cls : "ValueError", err, fmt, ap);
  va_end(ap);
  return -1;
}

int calc_exc_nomem(calc_exc *e, const char *msg) { return calc_exc_set_err(e, CALC_ERR_NOMEM, "%s", msg); }

int calc_exc_set_errno(calc_exc *e, const char *type, int errnum, const char *msg) {
  calc_exc_set(e, type, "%s", msg);
  e->has_errno = true;
  e->errnum = errnum;
  return -1;
}

void calc_exc_str(const calc_exc *e, char *buf, unsigned long size) {
  if (e->has_errno)
    /* OverflowError is not an OSError: str() of its two args is the tuple's repr. The message
     * comes from strerror-like tables and holds no quote characters. */
    snprintf(buf, size, "(%d, '%s')", e->errnum, e->msg);
  else
    snprintf(buf, size, "%s", e->msg);
}
