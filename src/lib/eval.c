/* eval.c: evaluation with the reference's steps (docs/protocol.md sections 3 and 3.1).
 *
 * The reference reduces the tree post-order and records snapshots of the whole expression.
 * An equivalent model, checked against every vector: work on a private copy of the tree;
 * evaluate a node's children left to right, and as soon as a child has a value replace it in
 * the copy by a Constant of that value (a NamedConstant becomes its float); once all children
 * of a non-leaf node are values, print the whole copy as one step; finally append str(result).
 * Constants and named constants add no step of their own, so a lone `42` or `PI` has no steps.
 *
 * Without steps (steps == NULL) the tree is evaluated in place, read-only: no copy, no printing.
 *
 * Limits (limits.h): nesting deeper than CALC_MAX_DEPTH is refused before recursing; integer
 * size is bounded by the number operations (CALC_MAX_INT_BITS); the steps must fit one response
 * (CALC_MAX_STEPS_BYTES): each step is printed with the remaining budget as its cap, and once the
 * budget is gone no more steps are printed. Evaluation still runs to its end so that a Python
 * error later in the tree is reported as the reference would; only a successful evaluation
 * then reports the steps limit. */
#include "calc/eval.h"

#include <stdbool.h>
#include <string.h>

#include "calc/alloc.h"
#include "calc/limits.h"

/* Bytes of the response pickle that are not step text: PROTO, FRAME, the tuple, list, MARK /
 * APPENDS batches, STOP. Each step adds its opcode, length and MEMOIZE (at most 6 bytes). */
#define STEPS_FIXED_OVERHEAD 64u
#define STEP_OVERHEAD 6u

typedef struct {
  calc_strlist *steps;  /* NULL: steps off */
  calc_expr *copy;      /* root of the private copy when steps are on */
  size_t budget;        /* bytes left for steps in the response */
  bool steps_over;      /* budget exhausted: no more snapshots */
  calc_rng *rng;
  calc_exc *exc;
} eval_ctx;

static int oom(eval_ctx *c) { return calc_exc_nomem(c->exc, "out of memory"); }

/* Charges n bytes of step text to the budget; false when it does not fit. */
static bool charge(eval_ctx *c, size_t n) {
  size_t cost = n + STEP_OVERHEAD;
  if (cost > c->budget) {
    c->steps_over = true;
    c->budget = 0;
    return false;
  }
  c->budget -= cost;
  return true;
}

/* A step that would print an int of more than 4300 digits fails as the reference's does
 * (calc/num.h); without steps nothing is printed and big ints pass. */
static bool tree_has_long_int(const calc_expr *e) {
  switch (e->kind) {
    case CALC_EXPR_CONST: return calc_num_str_too_long(&e->u.num);
    case CALC_EXPR_NAMED: return false;
    case CALC_EXPR_BINARY: return tree_has_long_int(e->u.bin.left) || tree_has_long_int(e->u.bin.right);
    case CALC_EXPR_UNARY: return tree_has_long_int(e->u.un.operand);
    case CALC_EXPR_CALL:
      for (size_t i = 0; i < e->u.call.argc; i++)
        if (tree_has_long_int(e->u.call.args[i])) return true;
      return false;
  }
  return false;
}

static int int_str_limit_error(eval_ctx *c) {
  return calc_exc_set(c->exc, "ValueError", "%s", CALC_PY_INT_STR_LIMIT_MSG);
}

/* Records stringify(copy) as one step, unless the budget is already exhausted. */
static int snapshot(eval_ctx *c) {
  if (!c->steps || c->steps_over) return 0;
  if (tree_has_long_int(c->copy)) return int_str_limit_error(c);
  calc_buf b;
  calc_buf_init(&b, 0);
  size_t cap = c->budget > STEP_OVERHEAD ? c->budget - STEP_OVERHEAD : 0;
  if (cap == 0 || calc_expr_print_limited(c->copy, &b, cap) < 0) {
    bool nomem = b.failed == CALC_ERR_NOMEM;
    calc_buf_free(&b);
    if (nomem) return oom(c);
    /* Over the budget: no more steps are recorded. */
    c->steps_over = true;
    c->budget = 0;
    return 0;
  }
  charge(c, b.len);
  /* The printout becomes the step itself (no copy): NUL-terminated, handed to the list. */
  if (calc_buf_putc(&b, 0) < 0) {
    calc_buf_free(&b);
    return oom(c);
  }
  return calc_strlist_push_owned(c->steps, (char *)b.data) < 0 ? oom(c) : 0;
}

/* Replaces *slot in the copy by a Constant of v (a Constant already is one). Once the steps
 * budget is gone the copy is never printed again, so it is left as it is. */
static int replace_by_value(eval_ctx *c, calc_expr **slot, const calc_num *v) {
  if (!slot || c->steps_over || (*slot)->kind == CALC_EXPR_CONST) return 0;
  calc_expr *k = calc_expr_const(v);
  if (!k) return oom(c);
  calc_expr_free(*slot);
  *slot = k;
  return 0;
}

/* Evaluates e into out (initialised). m is the same node in the copy when steps are on. */
static int eval_node(eval_ctx *c, const calc_expr *e, calc_expr *m, int depth, calc_num *out) {
  if (depth > CALC_MAX_DEPTH)
    return calc_exc_set_err(c->exc, CALC_ERR_LIMIT, "expression nested too deeply (over %d levels): calclab limit",
                            CALC_MAX_DEPTH);
  switch (e->kind) {
    case CALC_EXPR_CONST:
      calc_num_copy(out, &e->u.num);
      return 0;
    case CALC_EXPR_NAMED:
      calc_num_set_float(out, e->u.named.value);
      return 0;
    case CALC_EXPR_BINARY: {
      calc_num a, b;
      calc_num_init(&a);
      calc_num_init(&b);
      int rc = -1;
      if (eval_node(c, e->u.bin.left, m ? m->u.bin.left : NULL, depth + 1, &a) < 0) goto bin_done;
      if (m && replace_by_value(c, &m->u.bin.left, &a) < 0) goto bin_done;
      if (eval_node(c, e->u.bin.right, m ? m->u.bin.right : NULL, depth + 1, &b) < 0) goto bin_done;
      if (m && replace_by_value(c, &m->u.bin.right, &b) < 0) goto bin_done;
      if (m && snapshot(c) < 0) goto bin_done;
      rc = calc_num_binop(e->u.bin.op, out, &a, &b, c->exc);
    bin_done:
      calc_num_clear(&a);
      calc_num_clear(&b);
      return rc;
    }
    case CALC_EXPR_UNARY: {
      calc_num a;
      calc_num_init(&a);
      int rc = -1;
      if (eval_node(c, e->u.un.operand, m ? m->u.un.operand : NULL, depth + 1, &a) < 0) goto un_done;
      if (m && replace_by_value(c, &m->u.un.operand, &a) < 0) goto un_done;
      if (m && snapshot(c) < 0) goto un_done;
      rc = calc_num_unop(e->u.un.op, out, &a, c->exc);
    un_done:
      calc_num_clear(&a);
      return rc;
    }
    case CALC_EXPR_CALL: {
      size_t n = e->u.call.argc;
      calc_num *args = calc_malloc((n ? n : 1) * sizeof *args);
      if (!args) return oom(c);
      size_t done = 0;
      int rc = -1;
      for (; done < n; done++) {
        calc_num_init(&args[done]);
        if (eval_node(c, e->u.call.args[done], m ? m->u.call.args[done] : NULL, depth + 1, &args[done]) < 0 ||
            (m && replace_by_value(c, &m->u.call.args[done], &args[done]) < 0)) {
          done++;
          goto call_done;
        }
      }
      if (m && snapshot(c) < 0) goto call_done;
      rc = calc_num_call(e->u.call.fn, out, args, n, c->rng, c->exc);
    call_done:
      for (size_t i = 0; i < done; i++) calc_num_clear(&args[i]);
      calc_free(args);
      return rc;
    }
  }
  return calc_exc_set_err(c->exc, CALC_ERR_INVALID, "unknown expression node");
}

/* Pickled size of the result in the response tuple (BINFLOAT, or the widest int opcode). */
static size_t result_pickle_size(const calc_num *r) {
  if (r->is_float) return 9;
  return mpz_sizeinbase(r->z, 2) / 8 + 6;
}

int calc_eval(const calc_tree *t, calc_num *result, calc_strlist *steps, calc_exc *exc) {
  eval_ctx c = {.steps = steps, .budget = CALC_MAX_STEPS_BYTES - STEPS_FIXED_OVERHEAD, .rng = t->rng,
                .exc = exc};
  if (!t->root) return calc_exc_set_err(exc, CALC_ERR_INVALID, "empty expression");
  bool leaf = t->root->kind == CALC_EXPR_CONST || t->root->kind == CALC_EXPR_NAMED;
  if (steps && !leaf) {
    c.copy = calc_expr_clone(t->root);
    if (!c.copy) return oom(&c);
  }
  int rc = eval_node(&c, t->root, c.copy, 1, result);
  calc_expr_free(c.copy);
  if (rc < 0 || !c.copy) return rc;

  /* The last step is str(result). */
  if (!c.steps_over && calc_num_str_too_long(result)) return int_str_limit_error(&c);
  calc_buf b;
  calc_buf_init(&b, 0);
  if (calc_num_str(result, &b) < 0 || b.failed) {
    calc_buf_free(&b);
    return oom(&c);
  }
  size_t rsize = result_pickle_size(result);
  if (!c.steps_over && rsize <= c.budget) {
    c.budget -= rsize;
    if (charge(&c, b.len) && calc_strlist_push(steps, (const char *)b.data, b.len) < 0) {
      calc_buf_free(&b);
      return oom(&c);
    }
  } else {
    c.steps_over = true;
  }
  calc_buf_free(&b);
  if (c.steps_over)
    return calc_exc_set_err(exc, CALC_ERR_LIMIT, "steps too large for one message (over %u bytes): calclab limit",
                            (unsigned)CALC_MAX_STEPS_BYTES);
  return 0;
}
