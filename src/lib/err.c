/* err.c: descriptions of the library's errors (see calc/err.h). */
#include "calc/err.h"

const char *calc_strerror(calc_err e) {
  /* No default: -Wswitch names any value added to calc_err without a description here. */
  switch (e) {
    case CALC_OK: return "no error";
    case CALC_ERR_NOMEM: return "out of memory";
    case CALC_ERR_TRUNCATED: return "input ended before a whole message";
    case CALC_ERR_INVALID: return "invalid input";
    case CALC_ERR_LIMIT: return "input over a limit";
    case CALC_ERR_REFUSED: return "connection refused";
    case CALC_ERR_TIMEOUT: return "timed out";
    case CALC_ERR_RESET: return "connection reset";
    case CALC_ERR_CLOSED: return "peer closed";
    case CALC_ERR_SYSTEM: return "system call failed";
  }
  return "unknown error";
}
