/* fuzz_expr: the infix parser, printer and evaluator on arbitrary bytes (style.md: ten-line
 * fuzzers). Seed it with the vectors' inputs:
 *   jq -r .input ../shared/vectors/legacy-expressions.jsonl | split -l 1 - corpus/expr-
 * Checks: no crash, leak or UB (ASan/UBSan); a parsed tree prints and evaluates, with and
 * without steps, to the same result or exception class. */
#include <stdint.h>
#include <stdlib.h>
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
  /* Steps may only add the steps-size ValueError. */
  if (ra != rb && !(ra == 0 && strcmp(eb.type, "ValueError") == 0)) abort();
  if (ra < 0 && rb < 0 && strcmp(ea.type, eb.type) != 0) abort();
  calc_strlist_free(&steps);
  calc_num_clear(&a);
  calc_num_clear(&b);
  calc_tree_free(&t);
  return 0;
}
