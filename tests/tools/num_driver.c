/* num_driver: test-only line driver for tests/e2e/test_num_differential.py. I/O only; every
 * number rule lives in libcalc.
 *
 * Input, one request per line (operands: i:<decimal int> or f:<C99 hex float | inf | nan>):
 *   bin <op> A B        op one of + - * / % **
 *   un <op> A           op one of - +
 *   call <fn> A...      fn one of sin cos tan sqrt log max min pow rand
 *   seed <n>            reseed the rand state like random.Random(n), 0 <= n < 2**32
 * Output, one line per request: "int <decimal>", "float <repr>", "exc <Type> <str(exc)>",
 * "ok" (seed) or "bad <reason>" for input it cannot read. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "calc/alloc.h"
#include "calc/buf.h"
#include "calc/limits.h"
#include "calc/num.h"
#include "calc/rng.h"

#define MAX_ARGS 8

static int parse_operand(const char *tok, calc_num *n) {
  if (strncmp(tok, "i:", 2) == 0) return calc_num_set_decimal(n, tok + 2, strlen(tok + 2));
  if (strncmp(tok, "f:", 2) == 0) {
    char *end;
    double d = strtod(tok + 2, &end);
    if (*end != '\0' || end == tok + 2) return -1;
    calc_num_set_float(n, d);
    return 0;
  }
  return -1;
}

static void print_result(int rc, const calc_num *out, const calc_exc *exc, calc_buf *b) {
  calc_buf_reset(b);
  if (rc != 0) {
    /* Python's str() of a non-OSError exception with args (errno, msg) is the args tuple:
     * str(OverflowError(34, 'Numerical result out of range')) ==
     * "(34, 'Numerical result out of range')". calc_exc_str() renders the OSError form
     * "[Errno 34] ..." instead, so the errno case is printed here. */
    if (exc->has_errno) {
      printf("exc %s (%d, '%s')\n", exc->type, exc->errnum, exc->msg);
      return;
    }
    char msg[CALC_EXC_MSG_MAX + 32];
    calc_exc_str(exc, msg, sizeof msg);
    printf("exc %s %s\n", exc->type, msg);
    return;
  }
  if (calc_num_str(out, b) != 0) {
    printf("bad str failed\n");
    return;
  }
  printf("%s %.*s\n", out->is_float ? "float" : "int", (int)b->len, (const char *)b->data);
}

int main(void) {
  calc_alloc_init();
  static const char *bins[] = {"+", "-", "*", "/", "%", "**"};
  static const char *uns[] = {"-", "+"};
  static const char *fns[] = {"sin", "cos", "tan", "sqrt", "log", "max", "min", "pow", "rand"};
  calc_rng rng;
  uint32_t key0 = 0;
  calc_rng_seed_words(&rng, &key0, 1);
  calc_num args[MAX_ARGS], out;
  for (int i = 0; i < MAX_ARGS; i++) calc_num_init(&args[i]);
  calc_num_init(&out);
  calc_buf b;
  calc_buf_init(&b, 0);
  size_t cap = 1 << 16;
  char *line = malloc(cap);
  if (!line) return 1;
  ssize_t len;
  while ((len = getline(&line, &cap, stdin)) >= 0) {
    while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = '\0';
    char *save = NULL;
    char *kind = strtok_r(line, " ", &save);
    char *op = kind ? strtok_r(NULL, " ", &save) : NULL;
    if (!kind || !op) {
      printf("bad line\n");
      continue;
    }
    if (strcmp(kind, "seed") == 0) {
      uint32_t key = (uint32_t)strtoul(op, NULL, 10);
      calc_rng_seed_words(&rng, &key, 1);
      printf("ok\n");
      continue;
    }
    size_t argc = 0;
    int bad = 0;
    char *tok;
    while ((tok = strtok_r(NULL, " ", &save)) != NULL) {
      if (argc == MAX_ARGS || parse_operand(tok, &args[argc]) != 0) {
        bad = 1;
        break;
      }
      argc++;
    }
    if (bad) {
      printf("bad operand\n");
      continue;
    }
    calc_exc exc;
    int rc = -2;
    if (strcmp(kind, "bin") == 0 && argc == 2) {
      for (size_t k = 0; k < sizeof bins / sizeof *bins; k++)
        if (strcmp(op, bins[k]) == 0) rc = calc_num_binop((calc_binop)k, &out, &args[0], &args[1], &exc);
    } else if (strcmp(kind, "un") == 0 && argc == 1) {
      for (size_t k = 0; k < sizeof uns / sizeof *uns; k++)
        if (strcmp(op, uns[k]) == 0) rc = calc_num_unop((calc_unop)k, &out, &args[0], &exc);
    } else if (strcmp(kind, "call") == 0) {
      for (size_t k = 0; k < sizeof fns / sizeof *fns; k++)
        if (strcmp(op, fns[k]) == 0) rc = calc_num_call((calc_fn)k, &out, args, argc, &rng, &exc);
    }
    if (rc == -2) {
      printf("bad request\n");
      continue;
    }
    print_result(rc, &out, &exc, &b);
  }
  fflush(stdout);
  free(line);
  calc_buf_free(&b);
  for (int i = 0; i < MAX_ARGS; i++) calc_num_clear(&args[i]);
  calc_num_clear(&out);
  return 0;
}
