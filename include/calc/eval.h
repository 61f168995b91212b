/* calc/eval.h: evaluation with the reference's steps and printing (protocol.md 3, 3.1, 3.2). */
#ifndef CALC_EVAL_H
#define CALC_EVAL_H
#include "calc/buf.h"
#include "calc/exc.h"
#include "calc/expr.h"

/* Evaluates `t` into `result` (initialised by the caller). When steps is non-NULL, appends
 * the reference's step strings. The tree is not modified. 0, or -1 with exc set (steps are
 * then meaningless). Depth, integer size and steps size limits give a 400-class exception. */
int calc_eval(const calc_tree *t, calc_num *result, calc_strlist *steps, calc_exc *exc);

/* The reference's stringify(e, add_brackets=True), bracket quirk included. */
int calc_expr_print(const calc_expr *e, calc_buf *out);

#endif
