/* err.c: descriptions of the library's errors (see calc/err.h). */
#include "calc/err.h"

#include <stddef.h>

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
    case CALC_ERR_FRAMING: return "invalid total length";
    case CALC_ERR_BAD_UPSTREAM: return "invalid response from the server";
  }
  return "unknown error";
}

const char *calc_err_name(calc_err e) {
  /* No default, as above. */
  switch (e) {
    case CALC_OK: return "ok";
    case CALC_ERR_NOMEM: return "nomem";
    case CALC_ERR_TRUNCATED: return "truncated";
    case CALC_ERR_INVALID: return "invalid";
    case CALC_ERR_LIMIT: return "limit";
    case CALC_ERR_REFUSED: return "refused";
    case CALC_ERR_TIMEOUT: return "timeout";
    case CALC_ERR_RESET: return "reset";
    case CALC_ERR_CLOSED: return "closed";
    case CALC_ERR_SYSTEM: return "system";
    case CALC_ERR_FRAMING: return "framing";
    case CALC_ERR_BAD_UPSTREAM: return "bad-upstream";
  }
  return "unknown";
}

calc_err_answer calc_err_reference(calc_err e) {
  /* No default, as above. */
  switch (e) {
    case CALC_OK: return (calc_err_answer){NULL, 200};
    case CALC_ERR_NOMEM: return (calc_err_answer){"MemoryError", 400};
    case CALC_ERR_INVALID:
    case CALC_ERR_LIMIT: return (calc_err_answer){"ValueError", 400};
    case CALC_ERR_TRUNCATED:
    case CALC_ERR_FRAMING: return (calc_err_answer){"CalculatorClientError", 500};
    case CALC_ERR_REFUSED:
    case CALC_ERR_TIMEOUT:
    case CALC_ERR_RESET:
    case CALC_ERR_CLOSED:
    case CALC_ERR_SYSTEM:
    case CALC_ERR_BAD_UPSTREAM: return (calc_err_answer){"CalculatorServerError", 500};
  }
  return (calc_err_answer){"CalculatorServerError", 500};
}
