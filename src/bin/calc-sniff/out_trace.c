/* out_trace.c: the reduced behaviour verify compares (--trace, docs/sniff.md). */
#include "sniff_cli.h"

void print_trace(const sniff_an *an, FILE *out) {
  calc_buf b;
  calc_buf_init(&b, 0);
  sniff_trace(an, &b);
  if (b.len) fwrite(b.data, 1, b.len, out);
  calc_buf_free(&b);
}
