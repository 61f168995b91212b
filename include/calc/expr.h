/* calc/expr.h: the expression tree, mirroring the reference's object model (docs/protocol.md section 2.1).
 *
 * Operators and functions are enums (the reference's singletons); named constants keep their
 * name and value. Nodes are allocated with calc_malloc and owned by their parent; the rand
 * function's Mersenne-Twister state is owned by the tree (one per tree, shared by every rand
 * call in it, as the reference shares its one random.Random). */
#ifndef CALC_EXPR_H
#define CALC_EXPR_H
#include <stddef.h>
#include "calc/num.h"
#include "calc/rng.h"

typedef enum {
  CALC_EXPR_CONST, CALC_EXPR_NAMED, CALC_EXPR_BINARY, CALC_EXPR_UNARY, CALC_EXPR_CALL
} calc_expr_kind;

typedef struct calc_expr {
  calc_expr_kind kind;
  union {
    calc_num num;                                                   /* CONST */
    struct { char *name; double value; } named;                     /* NAMED: "PI", math.pi */
    struct { calc_binop op; struct calc_expr *left, *right; } bin;  /* BINARY */
    struct { calc_unop op; struct calc_expr *operand; } un;         /* UNARY */
    struct { calc_fn fn; size_t argc; struct calc_expr **args; } call; /* CALL */
  } u;
  /* CONST: its printed form, made by the first printout and kept with the node (a step
   * printout repeats every constant of the tree, and formatting numbers was most of it);
   * NULL until then. Owned by the node. */
  char *text;
  size_t text_len;
} calc_expr;

typedef struct calc_tree {
  calc_expr *root;
  calc_rng *rng;   /* non-NULL iff some call is rand */
} calc_tree;

/* Constructors return NULL on allocation failure (and free the children they were given). */
calc_expr *calc_expr_const(const calc_num *v);       /* copies v */
calc_expr *calc_expr_const_float(double f);
calc_expr *calc_expr_named(const char *name, double value);
calc_expr *calc_expr_binary(calc_binop op, calc_expr *l, calc_expr *r);
calc_expr *calc_expr_unary(calc_unop op, calc_expr *x);
calc_expr *calc_expr_call(calc_fn fn, calc_expr **args, size_t argc); /* takes args array */
calc_expr *calc_expr_clone(const calc_expr *e);
void calc_expr_free(calc_expr *e);
void calc_tree_free(calc_tree *t);  /* frees root and rng, zeroes t */

/* The three named constants of the reference. */
extern const char *const calc_named_names[3];  /* "PI", "TAU", "E" */
extern const double calc_named_values[3];

#endif
