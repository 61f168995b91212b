/* buf.c: growable byte buffer and string list (see calc/buf.h). */
#include "calc/buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "calc/alloc.h"

void calc_buf_init(calc_buf *b, size_t limit) {
  memset(b, 0, sizeof *b);
  b->limit = limit;
}

void calc_buf_free(calc_buf *b) {
  calc_free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}

void calc_buf_reset(calc_buf *b) {
  b->len = 0;
  b->failed = CALC_OK;
}

int calc_buf_reserve(calc_buf *b, size_t extra) {
  if (b->failed) return -1;
  if (extra > SIZE_MAX / 2 - b->len || (b->limit && b->len + extra > b->limit)) {
    b->failed = CALC_ERR_LIMIT;
    return -1;
  }
  size_t need = b->len + extra;
  if (need <= b->cap) return 0;
  size_t cap = b->cap ? b->cap : 64;
  while (cap < need) cap *= 2;
  if (b->limit && cap > b->limit) cap = b->limit;
  uint8_t *d = calc_realloc(b->data, cap);
  if (!d) {
    b->failed = CALC_ERR_NOMEM;
    return -1;
  }
  b->data = d;
  b->cap = cap;
  return 0;
}

int calc_buf_append(calc_buf *b, const void *p, size_t n) {
  if (calc_buf_reserve(b, n) < 0) return -1;
  if (n) memcpy(b->data + b->len, p, n);
  b->len += n;
  return 0;
}

int calc_buf_putc(calc_buf *b, uint8_t c) { return calc_buf_append(b, &c, 1); }

int calc_buf_puts(calc_buf *b, const char *s) { return calc_buf_append(b, s, strlen(s)); }

int calc_buf_printf(calc_buf *b, const char *fmt, ...) {
  char small[256];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(small, sizeof small, fmt, ap);
  va_end(ap);
  /* a format the C library cannot print: nothing to append, and (as every failed append) the
   * buffer stays failed; counted as no memory, the one failure callers tell from a limit */
  if (n < 0) return b->failed = CALC_ERR_NOMEM, -1;
  if ((size_t)n < sizeof small) return calc_buf_append(b, small, (size_t)n);
  if (calc_buf_reserve(b, (size_t)n + 1) < 0) return -1;
  va_start(ap, fmt);
  vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap);
  va_end(ap);
  b->len += (size_t)n;
  return 0;
}

void calc_buf_consume(calc_buf *b, size_t n) {
  if (n >= b->len) {
    b->len = 0;
    return;
  }
  memmove(b->data, b->data + n, b->len - n);
  b->len -= n;
}

void calc_strlist_init(calc_strlist *l) { memset(l, 0, sizeof *l); }

void calc_strlist_free(calc_strlist *l) {
  for (size_t i = 0; i < l->n; i++) calc_free(l->items[i]);
  calc_free(l->items);
  memset(l, 0, sizeof *l);
}

int calc_strlist_push_owned(calc_strlist *l, char *s) {
  if (!s) return -1;
  if (l->n == l->cap) {
    size_t cap = l->cap ? l->cap * 2 : 8;
    char **items = calc_realloc(l->items, cap * sizeof *items);
    if (!items) {
      calc_free(s);
      return -1;
    }
    l->items = items;
    l->cap = cap;
  }
  l->items[l->n++] = s;
  l->bytes += strlen(s);
  return 0;
}

int calc_strlist_push(calc_strlist *l, const char *s, size_t n) {
  return calc_strlist_push_owned(l, calc_strndup(s, n));
}
