/* json.c: JSON string literals (calc/json.h). */
#include "calc/json.h"

#include <stdbool.h>
#include <string.h>

void calc_json_write(const void *s, size_t n, unsigned flags, calc_json_sink put, void *ctx) {
  static const char hex[] = "0123456789abcdef";
  const unsigned char *p = s, *run = p, *end = p + n;
  bool ascii = flags & CALC_JSON_ASCII;
  put(ctx, "\"", 1);
  for (const unsigned char *q = p; q < end; q++) {
    unsigned char c = *q;
    if (c >= 0x20 && c != '"' && c != '\\' && c != 0x7f && (c < 0x80 || !ascii)) continue;
    if (q > run) put(ctx, run, (size_t)(q - run));
    char e[6] = {'\\', (char)c};
    size_t k = 2;
    if (c != '"' && c != '\\') {
      memcpy(e + 1, "u00", 3);
      e[4] = hex[c >> 4];
      e[5] = hex[c & 15];
      k = 6;
    }
    put(ctx, e, k);
    run = q + 1;
  }
  if (end > run) put(ctx, run, (size_t)(end - run));
  put(ctx, "\"", 1);
}

static void to_buf(void *ctx, const void *p, size_t n) { calc_buf_append(ctx, p, n); }

int calc_json_str(calc_buf *b, const void *s, size_t n, unsigned flags) {
  calc_json_write(s, n, flags, to_buf, b);
  return b->failed ? -1 : 0;
}
