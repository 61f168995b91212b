/* calc/err.h: the library's one error vocabulary.
 *
 * Every libcalc failure that a caller must tell apart is one of these values. They are library
 * errors, distinct from the protocol's statuses (200/400/500): calc_err_status maps an error to
 * the answer the reference gives for it. The numbers are stable (JSON Lines logs carry them):
 * new values go at the end, none is ever renumbered. */
#ifndef CALC_ERR_H
#define CALC_ERR_H

typedef enum calc_err {
  CALC_OK = 0,
  CALC_ERR_NOMEM = 1,      /* an allocation failed: transient, never remembered as an answer */
  CALC_ERR_TRUNCATED = 2,  /* the input ended before a whole message or pickle */
  CALC_ERR_INVALID = 3,    /* malformed input: a bad total length, a pickle that is no request */
  CALC_ERR_LIMIT = 4,      /* the input passes one of the limits in calc/limits.h */
  CALC_ERR_REFUSED = 5,    /* the upstream server refused the connection */
  CALC_ERR_TIMEOUT = 6,    /* a peer stayed silent past its timeout */
  CALC_ERR_RESET = 7,      /* a peer reset the connection */
  CALC_ERR_CLOSED = 8,     /* a peer closed its side (the normal end of a connection) */
  CALC_ERR_SYSTEM = 9,     /* a system call failed (errno says why) */
  CALC_ERR_FRAMING = 10,   /* a header's total length is under 12: the stream cannot be framed */
  CALC_ERR_BAD_UPSTREAM = 11, /* the upstream server sent something that is no response */
} calc_err;

/* A short English description of e; never NULL. */
const char *calc_strerror(calc_err e);
/* e's stable lowercase name ("invalid", "limit", "truncated", ...), for machine-read output
 * (calc-sniff's JSON): the English of calc_strerror may be reworded, these names never are. */
const char *calc_err_name(calc_err e);

/* What the reference answers when e happens while serving a peer: the exception class it
 * raises and the response status. CALC_OK: no exception (NULL), 200. Evaluation exceptions
 * that Python itself raises (ZeroDivisionError, ...) carry CALC_OK and their own class.
 *   CALC_ERR_NOMEM                       MemoryError, 400
 *   CALC_ERR_INVALID, CALC_ERR_LIMIT     ValueError, 400 (a payload refused or over a limit)
 *   CALC_ERR_TRUNCATED, CALC_ERR_FRAMING CalculatorClientError, 500 (bytes that are no message)
 *   the connection errors                CalculatorServerError, 500 (the proxy's upstream) */
typedef struct calc_err_answer {
  const char *exc_class;
  unsigned status;
} calc_err_answer;
calc_err_answer calc_err_reference(calc_err e);

#endif
