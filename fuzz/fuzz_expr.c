/* fuzz_expr: the infix parser, printer and evaluator on arbitrary bytes. Seed it with the vectors' inputs:
 *   jq -r .input captures/vectors/legacy-expressions.jsonl | split -l 1 - corpus/expr-
 * Checks: no crash, leak or UB (ASan/UBSan); a parsed tree prints and evaluates, with and
 * without steps, to the same result or exception class. */
#include <stdint.h>
#include <stdlib.h>
#include <stdbool.h>
#include <string.h>

#include "calc/eval.h"
#include "calc/parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  calc_tree t;
  calc_parse_error err;
  if (calc_parse((const char *)data, size, &t, &err) != 0) return 0;
  calc_buf text;
  calc_buf_init(&text, 0);
  if (calc_expr_print(t.root, &text) != 0) abort();
  calc_buf_free(&text);
  if (t.rng) { /* deterministic draws: the same sequence for both evaluations */
    uint32_t key = 1;
    calc_rng_seed_words(t.rng, &key, 1);
  }
  calc_num a, b;
  calc_num_init(&a);
  calc_num_init(&b);
  calc_strlist steps;
  calc_strlist_init(&steps);
  calc_exc ea, eb;
  int ra = calc_eval(&t, &a, NULL, &ea);
  if (t.rng) {
    uint32_t key = 1;
    calc_rng_seed_words(t.rng, &key, 1);
  }
  int rb = calc_eval(&t, &b, &steps, &eb);
  /* Printing steps may only add a ValueError of its own: the steps do not fit one message, or
   * an int has more than 4300 digits (CPython 3.11's int_max_str_digits); it may come first. */
  bool print_error = rb < 0 && strcmp(eb.type, "ValueError") == 0 &&
                     (strncmp(eb.msg, "steps too large", 15) == 0 || strncmp(eb.msg, "Exceeds the limit", 17) == 0);
  if (ra != rb && !print_error) abort();
  if (ra < 0 && rb < 0 && strcmp(ea.type, eb.type) != 0 && !print_error) abort();
  calc_strlist_free(&steps);
  calc_num_clear(&a);
  calc_num_clear(&b);
  calc_tree_free(&t);
  return 0;
}
