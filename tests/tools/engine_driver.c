/* engine_driver: test-only driver of the parser, printer and evaluator for the pytest harness.
 *
 * Reads one expression per line on stdin, writes one JSON object per line on stdout:
 *   {"tree": <tree>, "text": "<stringify>", "result_type": "int"|"float", "result": "<str>",
 *    "steps": ["...", ...]}
 *   {"tree": ..., "text": ..., "exc_type": "ZeroDivisionError", "exc_str": "division by zero",
 *    "exc_args": ["division by zero"]}
 *   {"parse_error": "unexpected ')' at column 7", "column": 7}
 * Trees use the vectors' JSON shape: {"num": 2}, {"num": 2.5}, {"const": "PI"},
 * {"bin": "*", "l": ..., "r": ...}, {"un": "-", "x": ...}, {"fn": "max", "args": [...]}.
 * Option --no-steps evaluates with steps off (the "steps" member is then []). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "calc/alloc.h"
#include "calc/eval.h"
#include "calc/parse.h"

static void put_json_str(calc_buf *o, const char *s, size_t n) {
  calc_buf_putc(o, '"');
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '"' || c == '\\') calc_buf_printf(o, "\\%c", c);
    else if (c < 0x20 || c >= 0x7f) calc_buf_printf(o, "\\u%04x", c);
    else calc_buf_putc(o, c);
  }
  calc_buf_putc(o, '"');
}

static void put_num(calc_buf *o, const calc_num *n) {
  if (n->is_float) {
    double f = n->f;
    if (isnan(f)) calc_buf_puts(o, "NaN");
    else if (isinf(f)) calc_buf_puts(o, f > 0 ? "Infinity" : "-Infinity");
    else {
      char b[32];
      int len = calc_float_repr(f, b);
      calc_buf_append(o, b, (size_t)len);
    }
  } else {
    calc_num_str(n, o);
  }
}

static void put_tree(calc_buf *o, const calc_expr *e) {
  switch (e->kind) {
    case CALC_EXPR_CONST:
      calc_buf_puts(o, "{\"num\": ");
      put_num(o, &e->u.num);
      calc_buf_putc(o, '}');
      break;
    case CALC_EXPR_NAMED:
      calc_buf_puts(o, "{\"const\": ");
      put_json_str(o, e->u.named.name, strlen(e->u.named.name));
      calc_buf_putc(o, '}');
      break;
    case CALC_EXPR_BINARY:
      calc_buf_printf(o, "{\"bin\": \"%s\", \"l\": ", calc_binop_symbol(e->u.bin.op));
      put_tree(o, e->u.bin.left);
      calc_buf_puts(o, ", \"r\": ");
      put_tree(o, e->u.bin.right);
      calc_buf_putc(o, '}');
      break;
    case CALC_EXPR_UNARY:
      calc_buf_printf(o, "{\"un\": \"%s\", \"x\": ", calc_unop_symbol(e->u.un.op));
      put_tree(o, e->u.un.operand);
      calc_buf_putc(o, '}');
      break;
    case CALC_EXPR_CALL:
      calc_buf_printf(o, "{\"fn\": \"%s\", \"args\": [", calc_fn_name(e->u.call.fn));
      for (size_t i = 0; i < e->u.call.argc; i++) {
        if (i) calc_buf_puts(o, ", ");
        put_tree(o, e->u.call.args[i]);
      }
      calc_buf_puts(o, "]}");
      break;
  }
}

int main(int argc, char **argv) {
  int with_steps = !(argc > 1 && strcmp(argv[1], "--no-steps") == 0);
  calc_alloc_init();
  char *line = NULL;
  size_t cap = 0;
  ssize_t n;
  calc_buf o;
  calc_buf_init(&o, 0);
  while ((n = getline(&line, &cap, stdin)) >= 0) {
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) n--;
    calc_buf_reset(&o);
    calc_tree t = {0};
    calc_parse_error perr;
    if (calc_parse(line, (size_t)n, &t, &perr) < 0) {
      calc_buf_puts(&o, "{\"parse_error\": ");
      put_json_str(&o, perr.msg, strlen(perr.msg));
      calc_buf_printf(&o, ", \"column\": %zu}\n", perr.column);
    } else {
      calc_buf_puts(&o, "{\"tree\": ");
      put_tree(&o, t.root);
      calc_buf text;
      calc_buf_init(&text, 0);
      calc_buf_puts(&o, ", \"text\": ");
      if (calc_expr_print(t.root, &text) == 0) put_json_str(&o, (const char *)text.data, text.len);
      else calc_buf_puts(&o, "null");
      calc_buf_free(&text);
      calc_num r;
      calc_num_init(&r);
      calc_strlist steps;
      calc_strlist_init(&steps);
      calc_exc exc;
      if (calc_eval(&t, &r, with_steps ? &steps : NULL, &exc) < 0) {
        char s[CALC_EXC_MSG_MAX + 32];
        calc_exc_str(&exc, s, sizeof s);
        calc_buf_puts(&o, ", \"exc_type\": ");
        put_json_str(&o, exc.type, strlen(exc.type));
        calc_buf_puts(&o, ", \"exc_str\": ");
        put_json_str(&o, s, strlen(s));
        /* The args tuple is what goes on the wire: (msg,) or (errno, msg). */
        calc_buf_puts(&o, ", \"exc_args\": [");
        if (exc.has_errno) calc_buf_printf(&o, "%d, ", exc.errnum);
        put_json_str(&o, exc.msg, strlen(exc.msg));
        calc_buf_putc(&o, ']');
      } else {
        calc_buf rs;
        calc_buf_init(&rs, 0);
        calc_num_str(&r, &rs);
        calc_buf_printf(&o, ", \"result_type\": \"%s\", \"result\": ", r.is_float ? "float" : "int");
        put_json_str(&o, (const char *)rs.data, rs.len);
        calc_buf_free(&rs);
        calc_buf_puts(&o, ", \"steps\": [");
        for (size_t i = 0; i < steps.n; i++) {
          if (i) calc_buf_puts(&o, ", ");
          put_json_str(&o, steps.items[i], strlen(steps.items[i]));
        }
        calc_buf_putc(&o, ']');
      }
      calc_buf_puts(&o, "}\n");
      calc_num_clear(&r);
      calc_strlist_free(&steps);
      calc_tree_free(&t);
    }
    fwrite(o.data, 1, o.len, stdout);
    fflush(stdout);
  }
  calc_buf_free(&o);
  free(line);
  return 0;
}
