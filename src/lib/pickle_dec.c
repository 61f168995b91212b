/* pickle_dec.c: the request decoder (docs/protocol.md section 2.1): runs the pickle machine
 * (pickle_vm.c) in request mode, then checks the recorded graph against the reference's object
 * model: exact class, exact attribute set, operator/function pairs matching the singletons.
 *
 * Error messages (all ValueError, status 400):
 *   'Received data could not be deserialized'  malformed or truncated pickle, refused opcode,
 *       refused global (the reference would have imported or executed it), a refused REDUCE
 *       or NEWOBJ (a getattr other than an allowlisted enum member's or random.uniform's
 *       included), integers over CALC_MAX_INT_BITS, payloads over CALC_MAX_PAYLOAD;
 *   'Received data is not an Expression2'      an empty payload, or a well-formed pickle of
 *       allowed globals that is not an expression of the reference's shape;
 *   calclab limits: 'Expression too deeply nested (limit 200 levels)',
 *       'Expression too large (limit 20000 nodes)',
 *       'Expression has too many arguments (limit 1000 per call)';
 *   MemoryError when memory runs out (never remembered as an answer).
 * NamedConstant: any name (a str of at most 64 bytes) with a float value is accepted, since
 * students' clients may send constants of their own; PI, TAU and E re-encode as the shared
 * singletons. */
#include <stdbool.h>
#include <string.h>

#include "calc/alloc.h"
#include "calc/err.h"
#include "calc/pickle.h"
#include "pickle_internal.h"

#define PKL_MSG_DESER "Received data could not be deserialized"
#define PKL_MSG_NOTEXPR "Received data is not an Expression2"

/* ---- the request's object model ---- */

/* Which of calclab's limits a request passed: each is named in its 400, so that whoever reads
 * the answer (a student, the lab's report) knows which one. */
typedef enum { LIMIT_NONE, LIMIT_DEPTH, LIMIT_NODES, LIMIT_ARGS } pkl_limit;

typedef struct {
  calc_tree *t;
  const pkl_val *rng_src;  /* the random.Random all rand functions must share */
  size_t nodes;
  size_t int_bytes;        /* bytes of int data copied into the tree */
  calc_err err;            /* CALC_OK, or CALC_ERR_INVALID (not an expression), CALC_ERR_LIMIT
                              (limit says which) or CALC_ERR_NOMEM */
  pkl_limit limit;
} pkl_conv;

/* The object's attributes, checked to be exactly `names` (any order, each once). Fills out[]. */
static int attrs(const pkl_val *o, int cls, const char *const *names, size_t n, const pkl_val **out) {
  if (!o || o->kind != PKV_OBJ || o->cls->global_id != cls || !o->has_state) return -1;
  const pkl_val *d = o->state;
  if (d->kind != PKV_DICT || d->n != 2 * n) return -1;
  for (size_t i = 0; i < n; i++) out[i] = NULL;
  for (size_t i = 0; i < d->n; i += 2) {
    const pkl_val *key = d->items[i];
    size_t j;
    if (!pkl_is_str(key)) return -1;
    for (j = 0; j < n; j++)
      if (strcmp(key->s, names[j]) == 0) break;
    if (j == n || out[j]) return -1;
    out[j] = d->items[i + 1];
  }
  return 0;
}

static bool str_is(const pkl_val *v, const char *s) { return pkl_is_str(v) && strcmp(v->s, s) == 0; }
static bool global_is(const pkl_val *v, int id) { return v && v->kind == PKV_GLOBAL && v->global_id == id; }

static const char *const binop_sym[] = {"+", "-", "*", "/", "%", "**"};
static const int binop_gid[] = {PKG_OP_ADD, PKG_OP_SUB, PKG_OP_MUL, PKG_OP_TRUEDIV, PKG_OP_MOD, PKG_OP_POW};
static const char *const unop_sym[] = {"-", "+"};
static const int unop_gid[] = {PKG_OP_NEG, PKG_OP_POS};
static const char *const fn_name[] = {"sin", "cos", "tan", "sqrt", "log", "max", "min", "pow", "rand"};
static const int fn_gid[] = {PKG_MATH_SIN, PKG_MATH_COS, PKG_MATH_TAN, PKG_MATH_SQRT, PKG_MATH_LOG,
                             PKG_B_MAX,    PKG_B_MIN,    PKG_B_POW,    -1};

/* Associativity(0) / Associativity(1), or getattr(Associativity, 'LEFT' / 'RIGHT') as some
 * CPythons write an enum member -> 0/1, else -1. */
static int assoc_value(const pkl_val *v) {
  int m = pkl_enum_member_of(v);
  if (m >= 0) return pkl_enum_members[m].cls == PKG_ASSOC ? pkl_enum_members[m].value : -1;
  if (!v || v->kind != PKV_CALL || !global_is(v->cls, PKG_ASSOC) || v->has_state || v->args->n != 1) return -1;
  const pkl_val *x = v->args->items[0];
  if (x->kind != PKV_INT) return -1;
  if (mpz_cmp_ui(x->z, 0) == 0) return 0;
  if (mpz_cmp_ui(x->z, 1) == 0) return 1;
  return -1;
}

static int binop_of(const pkl_val *o) {
  static const char *const names[] = {"symbol", "function", "associativity"};
  const pkl_val *a[3];
  if (attrs(o, PKG_BINOP, names, 3, a) < 0) return -1;
  for (int i = 0; i < 6; i++)
    if (str_is(a[0], binop_sym[i]) && global_is(a[1], binop_gid[i]) &&
        assoc_value(a[2]) == (i == CALC_BIN_POW))
      return i;
  return -1;
}

static int unop_of(const pkl_val *o) {
  static const char *const names[] = {"symbol", "function"};
  const pkl_val *a[2];
  if (attrs(o, PKG_UNOP, names, 2, a) < 0) return -1;
  for (int i = 0; i < 2; i++)
    if (str_is(a[0], unop_sym[i]) && global_is(a[1], unop_gid[i])) return i;
  return -1;
}

/* builtins.getattr(random.Random() with state (3, (625 ints), None|float), 'uniform'). */
static int rand_method(pkl_conv *c, const pkl_val *m) {
  if (!m || m->kind != PKV_CALL || !global_is(m->cls, PKG_GETATTR) || m->has_state) return -1;
  if (m->args->n != 2 || !str_is(m->args->items[1], "uniform")) return -1;
  const pkl_val *r = m->args->items[0];
  if (r->kind != PKV_CALL || !global_is(r->cls, PKG_RANDOM) || r->args->n || !r->has_state) return -1;
  if (c->rng_src) return c->rng_src == r ? 0 : -1;
  const pkl_val *st = r->state;
  if (st->kind != PKV_TUPLE || st->n != 3) return -1;
  const pkl_val *ver = st->items[0], *mt = st->items[1], *g = st->items[2];
  if (ver->kind != PKV_INT || mpz_cmp_ui(ver->z, 3) != 0) return -1;
  if (mt->kind != PKV_TUPLE || mt->n != CALC_MT_N + 1) return -1;
  if (g->kind != PKV_NONE && g->kind != PKV_FLOAT) return -1;
  calc_rng *rng = calc_calloc(1, sizeof *rng);
  if (!rng) {
    c->err = CALC_ERR_NOMEM;
    return -1;
  }
  for (size_t i = 0; i <= CALC_MT_N; i++) {
    const pkl_val *x = mt->items[i];
    if (x->kind != PKV_INT || mpz_sgn(x->z) < 0 || mpz_cmp_ui(x->z, 0xffffffffu) > 0 ||
        (i == CALC_MT_N && mpz_cmp_ui(x->z, CALC_MT_N) > 0)) {
      calc_free(rng);
      return -1;
    }
    if (i < CALC_MT_N)
      rng->mt[i] = (uint32_t)mpz_get_ui(x->z);
    else
      rng->pos = (uint32_t)mpz_get_ui(x->z);
  }
  rng->has_gauss = g->kind == PKV_FLOAT;
  rng->gauss_next = rng->has_gauss ? g->f : 0.0;
  c->t->rng = rng;
  c->rng_src = r;
  return 0;
}

static int fn_of(pkl_conv *c, const pkl_val *o) {
  static const char *const names[] = {"name", "function"};
  const pkl_val *a[2];
  if (attrs(o, PKG_FUNCTION, names, 2, a) < 0) return -1;
  for (int i = 0; i < 9; i++) {
    if (!str_is(a[0], fn_name[i])) continue;
    if (i == CALC_FN_RAND) return rand_method(c, a[1]) < 0 ? -1 : i;
    return global_is(a[1], fn_gid[i]) ? i : -1;
  }
  return -1;
}

static calc_expr *conv(pkl_conv *c, const pkl_val *o, int depth) {
  if (c->err) return NULL;
  if (depth > CALC_MAX_DEPTH) {
    c->err = CALC_ERR_LIMIT;
    c->limit = LIMIT_DEPTH;
    return NULL;
  }
  if (++c->nodes > CALC_MAX_NODES) {
    c->err = CALC_ERR_LIMIT;
    c->limit = LIMIT_NODES;
    return NULL;
  }
  if (!o || o->kind != PKV_OBJ) {
    c->err = CALC_ERR_INVALID;
    return NULL;
  }
  const pkl_val *a[3];
  calc_expr *e = NULL;
  switch (o->cls->global_id) {
  case PKG_CONSTANT: {
    static const char *const names[] = {"value"};
    if (attrs(o, PKG_CONSTANT, names, 1, a) < 0) break;
    if (a[0]->kind == PKV_FLOAT) {
      e = calc_expr_const_float(a[0]->f);
    } else if (a[0]->kind == PKV_INT) {
      c->int_bytes += mpz_size(a[0]->z) * sizeof(mp_limb_t);
      if (c->int_bytes > PKL_MAX_TREE_INT_BYTES) {
        c->err = CALC_ERR_LIMIT;
        return NULL;
      }
      calc_num n;
      calc_num_init(&n);
      mpz_set(n.z, a[0]->z);
      e = calc_expr_const(&n);
      calc_num_clear(&n);
    } else {
      break;
    }
    if (!e) c->err = CALC_ERR_NOMEM;
    return e;
  }
  case PKG_NAMED: {
    static const char *const names[] = {"name", "value"};
    if (attrs(o, PKG_NAMED, names, 2, a) < 0 || !pkl_is_str(a[0]) || a[0]->len > PKL_MAX_NAMED_LEN ||
        a[1]->kind != PKV_FLOAT)
      break;
    e = calc_expr_named(a[0]->s, a[1]->f);
    if (!e) c->err = CALC_ERR_NOMEM;
    return e;
  }
  case PKG_BINEXPR: {
    static const char *const names[] = {"left_operand", "operator", "right_operand"};
    if (attrs(o, PKG_BINEXPR, names, 3, a) < 0) break;
    int op = binop_of(a[1]);
    if (op < 0) break;
    calc_expr *l = conv(c, a[0], depth + 1);
    calc_expr *r = l ? conv(c, a[2], depth + 1) : NULL;
    e = calc_expr_binary((calc_binop)op, l, r);
    if (!e && !c->err) c->err = CALC_ERR_NOMEM;
    return e;
  }
  case PKG_UNEXPR: {
    static const char *const names[] = {"operator", "operand"};
    if (attrs(o, PKG_UNEXPR, names, 2, a) < 0) break;
    int op = unop_of(a[0]);
    if (op < 0) break;
    e = calc_expr_unary((calc_unop)op, conv(c, a[1], depth + 1));
    if (!e && !c->err) c->err = CALC_ERR_NOMEM;
    return e;
  }
  case PKG_CALLEXPR: {
    static const char *const names[] = {"function", "args"};
    if (attrs(o, PKG_CALLEXPR, names, 2, a) < 0) break;
    int fn = fn_of(c, a[0]);
    if (fn < 0 || a[1]->kind != PKV_LIST) break;
    size_t n = a[1]->n;
    if (n > CALC_MAX_ARGS) {
      c->err = CALC_ERR_LIMIT;
      c->limit = LIMIT_ARGS;
      return NULL;
    }
    calc_expr **args = calc_calloc(n ? n : 1, sizeof *args);
    if (!args) {
      c->err = CALC_ERR_NOMEM;
      return NULL;
    }
    for (size_t i = 0; i < n; i++) {
      args[i] = conv(c, a[1]->items[i], depth + 1);
      if (!args[i]) {
        for (size_t j = 0; j < i; j++) calc_expr_free(args[j]);
        calc_free(args);
        return NULL;
      }
    }
    e = calc_expr_call((calc_fn)fn, args, n);
    if (!e) c->err = CALC_ERR_NOMEM;
    return e;
  }
  default:
    break;
  }
  if (!c->err) c->err = CALC_ERR_INVALID;
  return NULL;
}

int calc_unpickle_request(const uint8_t *p, size_t n, calc_tree *t, calc_exc *exc) {
  memset(t, 0, sizeof *t);
  pkl_vm *vm = NULL;
  pkl_val *top_v = NULL;
  if (n == 0) return calc_exc_set_err(exc, CALC_ERR_INVALID, PKL_MSG_NOTEXPR);
  calc_err st = pkl_run(p, n, PKL_MODE_REQUEST, &vm, &top_v);
  if (st != CALC_OK) {
    pkl_vm_free(vm);
    if (st == CALC_ERR_NOMEM) return calc_exc_nomem(exc, "");
    return calc_exc_set_err(exc, CALC_ERR_INVALID, PKL_MSG_DESER);
  }
  pkl_conv c = {.t = t, .err = CALC_OK};
  t->root = conv(&c, top_v, 0);
  pkl_vm_free(vm);
  if (t->root && !c.err) return 0;
  calc_tree_free(t);
  if (c.err == CALC_ERR_NOMEM) return calc_exc_nomem(exc, "");
  if (c.err == CALC_ERR_LIMIT && c.limit == LIMIT_DEPTH)
    return calc_exc_set_err(exc, CALC_ERR_LIMIT, "Expression too deeply nested (limit %d levels)", CALC_MAX_DEPTH);
  if (c.err == CALC_ERR_LIMIT && c.limit == LIMIT_ARGS)
    return calc_exc_set_err(exc, CALC_ERR_LIMIT, "Expression has too many arguments (limit %d per call)",
                            CALC_MAX_ARGS);
  if (c.err == CALC_ERR_LIMIT)
    return calc_exc_set_err(exc, CALC_ERR_LIMIT, "Expression too large (limit %d nodes)", CALC_MAX_NODES);
  return calc_exc_set_err(exc, CALC_ERR_INVALID, PKL_MSG_NOTEXPR);
}
