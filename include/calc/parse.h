/* calc/parse.h: the infix parser for what a user types (Python precedence and associativity). */
#ifndef CALC_PARSE_H
#define CALC_PARSE_H
#include <stddef.h>
#include "calc/expr.h"

typedef struct calc_parse_error {
  size_t column;     /* 1-based */
  char msg[160];     /* "unexpected ')' at column 7" */
} calc_parse_error;

/* Parses text[0..len) into t (rand calls get a fresh OS-seeded state). 0 or -1 with err set. */
int calc_parse(const char *text, size_t len, calc_tree *t, calc_parse_error *err);

#endif
