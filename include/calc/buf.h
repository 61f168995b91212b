/* calc/buf.h: a growable byte buffer and a list of strings, both through the alloc hook. */
#ifndef CALC_BUF_H
#define CALC_BUF_H
#include <stddef.h>
#include <stdint.h>

#include "calc/err.h"

typedef struct calc_buf {
  uint8_t *data;
  size_t len, cap;
  size_t limit;   /* 0 = unlimited; appends that would pass it fail */
  calc_err failed; /* sticky: CALC_OK until an append failed: CALC_ERR_NOMEM (no memory), or
                   * CALC_ERR_LIMIT (it would pass limit) */
} calc_buf;

void calc_buf_init(calc_buf *b, size_t limit);
void calc_buf_free(calc_buf *b);
void calc_buf_reset(calc_buf *b);              /* len = 0, failed = CALC_OK, keeps memory */
int calc_buf_reserve(calc_buf *b, size_t extra); /* 0 or -1 (and failed set) */
int calc_buf_append(calc_buf *b, const void *p, size_t n);
int calc_buf_putc(calc_buf *b, uint8_t c);
int calc_buf_puts(calc_buf *b, const char *s);
int calc_buf_printf(calc_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void calc_buf_consume(calc_buf *b, size_t n);  /* drops n bytes from the front */

typedef struct calc_strlist {
  char **items;
  size_t n, cap;
  size_t bytes;   /* sum of strlen(items[i]) */
} calc_strlist;

void calc_strlist_init(calc_strlist *l);
void calc_strlist_free(calc_strlist *l);
/* Takes ownership of s (allocated with calc_malloc); frees it on failure. */
int calc_strlist_push_owned(calc_strlist *l, char *s);
int calc_strlist_push(calc_strlist *l, const char *s, size_t n);

#endif
