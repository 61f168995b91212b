/* calc/eval.h: evaluation with the reference's steps and printing (docs/protocol.md sections 3, 3.1, 3.2). */
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

/* calc_expr_print that gives up (-1, out's length past its old end is then unspecified) when
 * the printed text would exceed max_len bytes (0 = no limit), without building much more than
 * that: the steps' size limit uses it so a huge tree is never printed in full. When memory ran
 * out instead, out->failed is CALC_ERR_NOMEM. */
int calc_expr_print_limited(const calc_expr *e, calc_buf *out, size_t max_len);

#endif
