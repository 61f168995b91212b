/* calc/pickle.h: the payload codec, CPython protocol-4 pickles (docs/protocol.md section 2).
 *
 * The encoder writes exactly the bytes CPython 3.11's pickle.dumps writes for the reference's
 * object graphs. The decoder is a non-executing stack machine over an allowlist of opcodes,
 * globals and object shapes: nothing from a payload is ever called. Like the reference's
 * pickle.loads it reads every protocol, 0 to 5, as CPython's picklers write them (text
 * opcodes, GLOBAL with Python 2 module names, copyreg._reconstructor), since students'
 * programs may send pickle.dumps(x, protocol=N). Everything is I/O-free. */
#ifndef CALC_PICKLE_H
#define CALC_PICKLE_H
#include <stddef.h>
#include <stdint.h>
#include "calc/buf.h"
#include "calc/exc.h"
#include "calc/expr.h"
#include "calc/num.h"

/* How an enum member (the operators' Associativity) is pickled. CPython 3.9-3.10, 3.11.7 and
 * later write it by value, Associativity(0); CPython 3.11.2 (Debian 12's python3) and other
 * early 3.11 releases by name, builtins.getattr(Associativity, 'LEFT'). The rest of the graph
 * is the same in both. */
typedef enum {
  CALC_PICKLE_BY_VALUE = 0, /* Associativity(0): the default */
  CALC_PICKLE_GETATTR = 1   /* getattr(Associativity, 'LEFT') */
} calc_pickle_flavour;

/* ---- encoder: each appends to out and returns 0, or -1 (out->failed) ---- */
/* A request: the expression object graph (singletons, memo, frames as CPython writes them),
 * enum members by value. */
int calc_pickle_request(const calc_tree *t, calc_buf *out);
/* The same, enum members as `flavour` says: the bytes the reference sends under that Python. */
int calc_pickle_request_flavour(const calc_tree *t, calc_pickle_flavour flavour, calc_buf *out);
/* A 200 payload: the tuple (result, steps); steps may be NULL for an empty list. */
int calc_pickle_result(const calc_num *result, const calc_strlist *steps, calc_buf *out);
/* A 400 payload: builtins.<type>(*args). */
int calc_pickle_exception(const calc_exc *e, calc_buf *out);
/* api.<cls>(msg), e.g. the server's 500 api.CalculatorClientError('Error while unpacking ...'). */
int calc_pickle_api_error(const char *cls, const char *msg, calc_buf *out);
/* The proxy's 500: api.CalculatorServerError('Internal proxy error', api.<inner_cls>(inner_msg)). */
int calc_pickle_proxy_error(const char *inner_cls, const char *inner_msg, calc_buf *out);

/* ---- request decoder (server side) ----
 * Both flavours of enum members are read (getattr only of an allowlisted enum class and one of
 * its member names). 0 with *t filled (free with calc_tree_free), or -1 with exc set to the
 * reference's answer and *t empty:
 *   ValueError('Received data could not be deserialized')   not a pickle, truncated, a refused
 *       opcode, a refused global or REDUCE (the reference would have imported or run it; any
 *       getattr but an enum member's and random.uniform's is one),
 *       lengths or indexes past the input, ints over CALC_MAX_INT_BITS, n > CALC_MAX_PAYLOAD
 *   ValueError('Received data is not an Expression2')       a pickle of allowed globals but not
 *       an expression of the reference's shape; also an empty payload
 * and calclab's own limit errors, also ValueError: 'Expression too deeply nested (limit 200
 * levels)', 'Expression too large (limit 20000 nodes)'. NamedConstant: any str name (at most
 * 64 bytes) with a float value is accepted. Reads only p[0..n); never calls anything. */
int calc_unpickle_request(const uint8_t *p, size_t n, calc_tree *t, calc_exc *exc);

/* ---- response decoder (client side): a small Python object model, printable ---- */
typedef enum {
  CALC_PY_NONE, CALC_PY_BOOL, CALC_PY_INT, CALC_PY_FLOAT, CALC_PY_COMPLEX, CALC_PY_STR,
  CALC_PY_BYTES, CALC_PY_TUPLE, CALC_PY_LIST, CALC_PY_DICT, CALC_PY_EXC
} calc_py_kind;

typedef struct calc_pyobj {
  calc_py_kind kind;
  calc_num num;               /* INT, FLOAT, BOOL (0/1) */
  double imag;                /* COMPLEX: num.f is the real part */
  char *str; size_t len;      /* STR, BYTES (str is UTF-8) */
  char *module, *name;        /* EXC: class, e.g. "builtins" "ZeroDivisionError" */
  struct calc_pyobj **items;  /* TUPLE, LIST, EXC (its args), DICT (k0, v0, k1, v1...) */
  size_t n;
} calc_pyobj;

/* Decodes any response payload: numbers, str, tuples, lists, dicts, None/bools, and
 * exceptions of ANY class (module.name REDUCE args), never calling anything.
 * 0 or -1 with exc set (ValueError with a reason). */
int calc_unpickle_response(const uint8_t *p, size_t n, calc_pyobj **out, calc_exc *exc);
void calc_pyobj_free(calc_pyobj *o);
/* Python's str() and repr() of the object, appended to out. 0 or -1. */
int calc_pyobj_str(const calc_pyobj *o, calc_buf *out);
int calc_pyobj_repr(const calc_pyobj *o, calc_buf *out);

#endif
