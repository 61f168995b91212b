/* parse.c: the infix parser (calc/parse.h).
 *
 * Python's grammar for the operators the calculator knows, so that text means what it means to
 * Python and to the reference client:
 *
 *   expr    := term (('+' | '-') term)*            left-assoc
 *   term    := factor (('*' | '/' | '%') factor)*  left-assoc
 *   factor  := ('+' | '-') factor | power          unary binds looser than ** on its right:
 *   power   := primary ['**' factor]               -2 ** 2 == -(2 ** 2), 2 ** -1 allowed,
 *                                                   2 ** 3 ** 2 == 2 ** (3 ** 2)
 *   primary := NUMBER | CONST | FUNC '(' [expr (',' expr)*] ')' | '(' expr ')'
 *
 * A literal is always its own Constant; `-7` is UnaryExpr(NEG, Constant 7) as the reference
 * client builds it (vector mod-negative prints `-(7) % 3`). Numbers follow Python's int() /
 * float(): `12`, `2.`, `.5`, `1e5`, `1E-3`.
 *
 * Limits (limits.h) are checked while parsing, before the node is built: tree depth
 * (CALC_MAX_DEPTH, so evaluation and printing recurse a bounded amount), node count
 * (CALC_MAX_NODES), arguments per call (CALC_MAX_ARGS) and integer size (CALC_MAX_INT_BITS, by
 * calc_num_set_decimal). The parser's own recursion is bounded too (parentheses nest without
 * adding tree depth), so no input can overflow the stack. */
#include "calc/parse.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "calc/alloc.h"
#include "calc/limits.h"

/* Parentheses and unary signs recurse without always deepening the tree: cap them separately. */
#define PARSE_MAX_RECURSION (4 * CALC_MAX_DEPTH)

typedef struct {
  const char *s;
  size_t len, pos;
  int recursion;
  size_t nodes;
  bool has_rand;
  bool failed;
  calc_parse_error *err;
} parser;

/* A parsed subtree with its depth (a leaf is 1). */
typedef struct {
  calc_expr *e;
  int depth;
} node;

static const struct {
  const char *name;
  calc_fn fn;
} fn_table[] = {
    {"sin", CALC_FN_SIN}, {"cos", CALC_FN_COS}, {"tan", CALC_FN_TAN},
    {"sqrt", CALC_FN_SQRT}, {"log", CALC_FN_LOG}, {"max", CALC_FN_MAX},
    {"min", CALC_FN_MIN}, {"pow", CALC_FN_POW}, {"rand", CALC_FN_RAND},
};

static const struct {
  const char *name;
  int index; /* into calc_named_names / calc_named_values */
} const_table[] = {
    {"pi", 0}, {"PI", 0}, {"tau", 1}, {"TAU", 1}, {"e", 2}, {"E", 2},
};

static int fail_at(parser *p, size_t pos, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Records the first error only; the message already names the column. */
static int fail_at(parser *p, size_t pos, const char *fmt, ...) {
  if (p->failed) return -1;
  p->failed = true;
  p->err->column = pos + 1;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(p->err->msg, sizeof p->err->msg, fmt, ap);
  va_end(ap);
  return -1;
}

static bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }
static bool is_digit(char c) { return c >= '0' && c <= '9'; }
static bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }

static void skip_space(parser *p) {
  while (p->pos < p->len && is_space(p->s[p->pos])) p->pos++;
}

/* Length of the token starting at pos, for error messages (at most 32 bytes quoted). */
static size_t token_len(const parser *p, size_t pos) {
  const char *s = p->s;
  size_t i = pos;
  if (i >= p->len) return 0;
  if (is_alpha(s[i]) || is_digit(s[i]) || s[i] == '.') {
    while (i < p->len && (is_alpha(s[i]) || is_digit(s[i]) || s[i] == '.')) i++;
    return i - pos;
  }
  if (s[i] == '*' && i + 1 < p->len && s[i + 1] == '*') return 2;
  return 1;
}

/* "unexpected X at column N", quoting the offending token safely: what a user typed is shown
 * escaped and cut short, never raw. */
static int fail_unexpected(parser *p) {
  skip_space(p);
  if (p->pos >= p->len) return fail_at(p, p->len, "unexpected end of input");
  size_t n = token_len(p, p->pos);
  unsigned char c = (unsigned char)p->s[p->pos];
  if (c < 0x20 || c >= 0x7f)
    return fail_at(p, p->pos, "unexpected byte 0x%02x at column %zu", c, p->pos + 1);
  if (n > 32) n = 32;
  return fail_at(p, p->pos, "unexpected '%.*s' at column %zu", (int)n, p->s + p->pos, p->pos + 1);
}

/* Counts one more node against CALC_MAX_NODES. */
static int count_node(parser *p, size_t pos) {
  if (++p->nodes > CALC_MAX_NODES)
    return fail_at(p, pos, "expression too large (over %d nodes) at column %zu", CALC_MAX_NODES, pos + 1);
  return 0;
}

static int check_depth(parser *p, int depth, size_t pos) {
  if (depth > CALC_MAX_DEPTH)
    return fail_at(p, pos, "expression nested too deeply (over %d levels) at column %zu", CALC_MAX_DEPTH,
                   pos + 1);
  return 0;
}

static int fail_oom(parser *p, size_t pos) { return fail_at(p, pos, "out of memory"); }

static node parse_expr(parser *p);
static node parse_factor(parser *p);

static const node no_node = {NULL, 0};

static node parse_number(parser *p) {
  const char *s = p->s;
  size_t start = p->pos, i = p->pos;
  bool is_float = false;
  size_t mant_digits = 0;
  while (i < p->len && is_digit(s[i])) i++, mant_digits++;
  if (i < p->len && s[i] == '.') {
    is_float = true;
    i++;
    while (i < p->len && is_digit(s[i])) i++, mant_digits++;
  }
  if (mant_digits == 0) {
    fail_unexpected(p);
    return no_node;
  }
  /* An exponent only when digits follow; otherwise `2e` is the number 2 then the name e. */
  if (i < p->len && (s[i] == 'e' || s[i] == 'E')) {
    size_t j = i + 1;
    if (j < p->len && (s[j] == '+' || s[j] == '-')) j++;
    if (j < p->len && is_digit(s[j])) {
      while (j < p->len && is_digit(s[j])) j++;
      i = j;
      is_float = true;
    }
  }
  if (count_node(p, start) < 0) return no_node;
  calc_num v;
  calc_num_init(&v);
  if (is_float) {
    /* strtod needs a terminated copy; the span is validated above, so no hex or inf forms. */
    size_t n = i - start;
    char *copy = calc_strndup(s + start, n);
    if (!copy) {
      calc_num_clear(&v);
      fail_oom(p, start);
      return no_node;
    }
    calc_num_set_float(&v, strtod(copy, NULL)); /* overflow gives inf, as Python's float() */
    calc_free(copy);
  } else if (calc_num_set_decimal(&v, s + start, i - start) < 0) {
    calc_num_clear(&v);
    fail_at(p, start, "integer literal too large (over %u bits) at column %zu", CALC_MAX_INT_BITS, start + 1);
    return no_node;
  }
  calc_expr *e = calc_expr_const(&v);
  calc_num_clear(&v);
  if (!e) {
    fail_oom(p, start);
    return no_node;
  }
  p->pos = i;
  return (node){e, 1};
}

/* Parses '(' already consumed: [expr (',' expr)*] ')'. */
static node parse_call(parser *p, calc_fn fn, size_t name_pos) {
  size_t cap = 4, argc = 0;
  calc_expr **args = calc_malloc(cap * sizeof *args);
  int depth = 0;
  if (!args) {
    fail_oom(p, name_pos);
    return no_node;
  }
  skip_space(p);
  if (p->pos < p->len && p->s[p->pos] == ')') {
    p->pos++;
  } else {
    for (;;) {
      size_t arg_pos = p->pos;
      if (argc == CALC_MAX_ARGS) {
        fail_at(p, arg_pos, "too many arguments (over %d) at column %zu", CALC_MAX_ARGS, arg_pos + 1);
        goto fail;
      }
      node a = parse_expr(p);
      if (!a.e) goto fail;
      if (argc == cap) {
        calc_expr **grown = calc_realloc(args, 2 * cap * sizeof *args);
        if (!grown) {
          calc_expr_free(a.e);
          fail_oom(p, arg_pos);
          goto fail;
        }
        args = grown;
        cap *= 2;
      }
      args[argc++] = a.e;
      if (a.depth > depth) depth = a.depth;
      skip_space(p);
      if (p->pos < p->len && p->s[p->pos] == ',') {
        p->pos++;
        continue;
      }
      if (p->pos < p->len && p->s[p->pos] == ')') {
        p->pos++;
        break;
      }
      fail_unexpected(p);
      goto fail;
    }
  }
  if (check_depth(p, depth + 1, name_pos) < 0 || count_node(p, name_pos) < 0) goto fail;
  calc_expr *e = calc_expr_call(fn, args, argc);
  if (!e) {
    fail_oom(p, name_pos);
    return no_node;
  }
  if (fn == CALC_FN_RAND) p->has_rand = true;
  return (node){e, depth + 1};
fail:
  for (size_t k = 0; k < argc; k++) calc_expr_free(args[k]);
  calc_free(args);
  return no_node;
}

static node parse_name(parser *p) {
  size_t start = p->pos, i = p->pos;
  while (i < p->len && (is_alpha(p->s[i]) || is_digit(p->s[i]))) i++;
  size_t n = i - start;
  const char *name = p->s + start;
  for (size_t k = 0; k < sizeof const_table / sizeof const_table[0]; k++) {
    if (strlen(const_table[k].name) == n && memcmp(const_table[k].name, name, n) == 0) {
      if (count_node(p, start) < 0) return no_node;
      int idx = const_table[k].index;
      calc_expr *e = calc_expr_named(calc_named_names[idx], calc_named_values[idx]);
      if (!e) {
        fail_oom(p, start);
        return no_node;
      }
      p->pos = i;
      return (node){e, 1};
    }
  }
  for (size_t k = 0; k < sizeof fn_table / sizeof fn_table[0]; k++) {
    if (strlen(fn_table[k].name) == n && memcmp(fn_table[k].name, name, n) == 0) {
      p->pos = i;
      skip_space(p);
      if (p->pos >= p->len || p->s[p->pos] != '(') {
        if (p->pos >= p->len) {
          fail_at(p, p->len, "unexpected end of input (expected '(' after '%s')", fn_table[k].name);
        } else {
          fail_at(p, p->pos, "expected '(' after '%s' at column %zu", fn_table[k].name, p->pos + 1);
        }
        return no_node;
      }
      p->pos++;
      return parse_call(p, fn_table[k].fn, start);
    }
  }
  if (n > 32) n = 32;
  fail_at(p, start, "unknown name '%.*s' at column %zu", (int)n, name, start + 1);
  return no_node;
}

static node parse_primary(parser *p) {
  skip_space(p);
  if (p->pos >= p->len) {
    fail_unexpected(p);
    return no_node;
  }
  char c = p->s[p->pos];
  if (is_digit(c) || c == '.') return parse_number(p);
  if (is_alpha(c)) return parse_name(p);
  if (c == '(') {
    p->pos++;
    node inner = parse_expr(p);
    if (!inner.e) return no_node;
    skip_space(p);
    if (p->pos >= p->len || p->s[p->pos] != ')') {
      calc_expr_free(inner.e);
      fail_unexpected(p);
      return no_node;
    }
    p->pos++;
    return inner;
  }
  fail_unexpected(p);
  return no_node;
}

/* Builds a binary node from two parsed operands, checking the limits first. */
static node make_binary(parser *p, calc_binop op, node l, node r, size_t op_pos) {
  int depth = (l.depth > r.depth ? l.depth : r.depth) + 1;
  if (check_depth(p, depth, op_pos) < 0 || count_node(p, op_pos) < 0) {
    calc_expr_free(l.e);
    calc_expr_free(r.e);
    return no_node;
  }
  calc_expr *e = calc_expr_binary(op, l.e, r.e);
  if (!e) {
    fail_oom(p, op_pos);
    return no_node;
  }
  return (node){e, depth};
}

static node parse_power(parser *p) {
  node base = parse_primary(p);
  if (!base.e) return no_node;
  skip_space(p);
  if (p->pos + 1 < p->len && p->s[p->pos] == '*' && p->s[p->pos + 1] == '*') {
    size_t op_pos = p->pos;
    p->pos += 2;
    node ex = parse_factor(p); /* right-assoc, and a unary sign may follow ** */
    if (!ex.e) {
      calc_expr_free(base.e);
      return no_node;
    }
    return make_binary(p, CALC_BIN_POW, base, ex, op_pos);
  }
  return base;
}

static node parse_factor(parser *p) {
  skip_space(p);
  if (++p->recursion > PARSE_MAX_RECURSION) {
    fail_at(p, p->pos, "expression nested too deeply (over %d levels) at column %zu", CALC_MAX_DEPTH,
            p->pos + 1);
    return no_node;
  }
  node out;
  if (p->pos < p->len && (p->s[p->pos] == '-' || p->s[p->pos] == '+')) {
    size_t op_pos = p->pos;
    calc_unop op = p->s[p->pos] == '-' ? CALC_UN_NEG : CALC_UN_POS;
    p->pos++;
    node x = parse_factor(p);
    if (!x.e) {
      out = no_node;
    } else if (check_depth(p, x.depth + 1, op_pos) < 0 || count_node(p, op_pos) < 0) {
      calc_expr_free(x.e);
      out = no_node;
    } else {
      calc_expr *e = calc_expr_unary(op, x.e);
      if (!e) fail_oom(p, op_pos);
      out = (node){e, e ? x.depth + 1 : 0};
    }
  } else {
    out = parse_power(p);
  }
  p->recursion--;
  return out;
}

static node parse_term(parser *p) {
  node l = parse_factor(p);
  while (l.e) {
    skip_space(p);
    if (p->pos >= p->len) break;
    char c = p->s[p->pos];
    calc_binop op;
    if (c == '*' && !(p->pos + 1 < p->len && p->s[p->pos + 1] == '*')) op = CALC_BIN_MUL;
    else if (c == '/') op = CALC_BIN_DIV;
    else if (c == '%') op = CALC_BIN_MOD;
    else break;
    size_t op_pos = p->pos++;
    node r = parse_factor(p);
    if (!r.e) {
      calc_expr_free(l.e);
      return no_node;
    }
    l = make_binary(p, op, l, r, op_pos);
  }
  return l;
}

static node parse_expr(parser *p) {
  if (++p->recursion > PARSE_MAX_RECURSION) {
    fail_at(p, p->pos, "expression nested too deeply (over %d levels) at column %zu", CALC_MAX_DEPTH,
            p->pos + 1);
    return no_node;
  }
  node l = parse_term(p);
  while (l.e) {
    skip_space(p);
    if (p->pos >= p->len) break;
    char c = p->s[p->pos];
    calc_binop op;
    if (c == '+') op = CALC_BIN_ADD;
    else if (c == '-') op = CALC_BIN_SUB;
    else break;
    size_t op_pos = p->pos++;
    node r = parse_term(p);
    if (!r.e) {
      calc_expr_free(l.e);
      l = no_node;
      break;
    }
    l = make_binary(p, op, l, r, op_pos);
  }
  p->recursion--;
  return l;
}

int calc_parse(const char *text, size_t len, calc_tree *t, calc_parse_error *err) {
  calc_parse_error scratch;
  parser p = {.s = text, .len = len, .err = err ? err : &scratch};
  p.err->column = 0;
  p.err->msg[0] = '\0';
  t->root = NULL;
  t->rng = NULL;
  node n = parse_expr(&p);
  if (n.e) {
    skip_space(&p);
    if (p.pos < p.len) {
      fail_unexpected(&p);
      calc_expr_free(n.e);
      return -1;
    }
  }
  if (!n.e) {
    if (!p.failed) fail_unexpected(&p);
    return -1;
  }
  if (p.has_rand) {
    /* One random.Random per tree, shared by every rand call (expr.h). */
    calc_rng *rng = calc_malloc(sizeof *rng);
    if (!rng || calc_rng_seed_os(rng) < 0) {
      calc_free(rng);
      calc_expr_free(n.e);
      fail_at(&p, 0, "cannot seed the random generator");
      return -1;
    }
    t->rng = rng;
  }
  t->root = n.e;
  return 0;
}
