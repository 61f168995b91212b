/* expr.c: the expression tree (calc/expr.h), mirroring the reference's object model
 * (docs/protocol.md section 2.1): constructors, deep clone, free, and the three named constants. */
#include "calc/expr.h"

#include <string.h>

#include "calc/alloc.h"
#include "calc/limits.h"

/* The reference's module-level NamedConstant singletons: math.pi, math.tau, math.e. */
const char *const calc_named_names[3] = {"PI", "TAU", "E"};
const double calc_named_values[3] = {3.141592653589793, 6.283185307179586, 2.718281828459045};

static calc_expr *expr_new(calc_expr_kind kind) {
  calc_expr *e = calc_calloc(1, sizeof *e);
  if (e) e->kind = kind;
  return e;
}

calc_expr *calc_expr_const(const calc_num *v) {
  calc_expr *e = expr_new(CALC_EXPR_CONST);
  if (!e) return NULL;
  calc_num_init(&e->u.num);
  calc_num_copy(&e->u.num, v);
  return e;
}

calc_expr *calc_expr_const_float(double f) {
  calc_expr *e = expr_new(CALC_EXPR_CONST);
  if (!e) return NULL;
  calc_num_init(&e->u.num);
  calc_num_set_float(&e->u.num, f);
  return e;
}

calc_expr *calc_expr_named(const char *name, double value) {
  calc_expr *e = expr_new(CALC_EXPR_NAMED);
  if (!e) return NULL;
  e->u.named.name = calc_strdup(name);
  if (!e->u.named.name) {
    calc_free(e);
    return NULL;
  }
  e->u.named.value = value;
  return e;
}

calc_expr *calc_expr_binary(calc_binop op, calc_expr *l, calc_expr *r) {
  calc_expr *e = (l && r) ? expr_new(CALC_EXPR_BINARY) : NULL;
  if (!e) {
    calc_expr_free(l);
    calc_expr_free(r);
    return NULL;
  }
  e->u.bin.op = op;
  e->u.bin.left = l;
  e->u.bin.right = r;
  return e;
}

calc_expr *calc_expr_unary(calc_unop op, calc_expr *x) {
  calc_expr *e = x ? expr_new(CALC_EXPR_UNARY) : NULL;
  if (!e) {
    calc_expr_free(x);
    return NULL;
  }
  e->u.un.op = op;
  e->u.un.operand = x;
  return e;
}

static void free_args(calc_expr **args, size_t argc) {
  if (!args) return;
  for (size_t i = 0; i < argc; i++) calc_expr_free(args[i]);
  calc_free(args);
}

calc_expr *calc_expr_call(calc_fn fn, calc_expr **args, size_t argc) {
  for (size_t i = 0; i < argc; i++) {
    if (!args[i]) {
      free_args(args, argc);
      return NULL;
    }
  }
  calc_expr *e = expr_new(CALC_EXPR_CALL);
  if (!e) {
    free_args(args, argc);
    return NULL;
  }
  e->u.call.fn = fn;
  e->u.call.argc = argc;
  e->u.call.args = args;
  return e;
}

/* Recursion is bounded by the producers (parser, pickle decoder), which refuse trees deeper
 * than CALC_MAX_DEPTH; the depth argument makes the bound explicit here too. */
static calc_expr *clone_at(const calc_expr *e, int depth) {
  if (!e || depth > CALC_MAX_DEPTH + 8) return NULL;
  switch (e->kind) {
    case CALC_EXPR_CONST: return calc_expr_const(&e->u.num);
    case CALC_EXPR_NAMED: return calc_expr_named(e->u.named.name, e->u.named.value);
    case CALC_EXPR_BINARY: {
      calc_expr *l = clone_at(e->u.bin.left, depth + 1);
      calc_expr *r = l ? clone_at(e->u.bin.right, depth + 1) : NULL;
      return calc_expr_binary(e->u.bin.op, l, r);
    }
    case CALC_EXPR_UNARY:
      return calc_expr_unary(e->u.un.op, clone_at(e->u.un.operand, depth + 1));
    case CALC_EXPR_CALL: {
      size_t n = e->u.call.argc;
      calc_expr **args = calc_calloc(n ? n : 1, sizeof *args);
      if (!args) return NULL;
      for (size_t i = 0; i < n; i++) {
        args[i] = clone_at(e->u.call.args[i], depth + 1);
        if (!args[i]) {
          free_args(args, i);
          return NULL;
        }
      }
      return calc_expr_call(e->u.call.fn, args, n);
    }
  }
  return NULL;
}

calc_expr *calc_expr_clone(const calc_expr *e) { return clone_at(e, 0); }

void calc_expr_free(calc_expr *e) {
  if (!e) return;
  switch (e->kind) {
    case CALC_EXPR_CONST:
      calc_num_clear(&e->u.num);
      calc_free(e->text);
      break;
    case CALC_EXPR_NAMED: calc_free(e->u.named.name); break;
    case CALC_EXPR_BINARY:
      calc_expr_free(e->u.bin.left);
      calc_expr_free(e->u.bin.right);
      break;
    case CALC_EXPR_UNARY: calc_expr_free(e->u.un.operand); break;
    case CALC_EXPR_CALL: free_args(e->u.call.args, e->u.call.argc); break;
  }
  calc_free(e);
}

void calc_tree_free(calc_tree *t) {
  if (!t) return;
  calc_expr_free(t->root);
  calc_free(t->rng);
  t->root = NULL;
  t->rng = NULL;
}
