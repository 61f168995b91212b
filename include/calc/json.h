/* calc/json.h: JSON string literals, written one way for every JSON the programs print (the
 * servers' JSON Lines logs, calc-sniff's --json records and verify report).
 *
 * The literal is the bytes between double quotes, with '"' and '\' escaped by a backslash and
 * control bytes (below 0x20, and DEL) as \u00XX, lower-case hex. Other bytes pass unchanged, so
 * UTF-8 text stays readable; CALC_JSON_ASCII escapes bytes from 0x80 up too, for bytes that need
 * not be UTF-8 at all (a log quoting what a peer sent): the output is then ASCII, always valid
 * JSON whatever the input. */
#ifndef CALC_JSON_H
#define CALC_JSON_H
#include <stddef.h>

#include "calc/buf.h"

#define CALC_JSON_ASCII 1u

/* Where the literal goes: called with runs of it, in order (n > 0). */
typedef void (*calc_json_sink)(void *ctx, const void *p, size_t n);

/* Writes s[0, n) (NUL bytes included, escaped) as a JSON string literal to put(ctx, ...):
 * the opening quote, each run of bytes that need no escape in one call, each escape in one
 * call, the closing quote. flags: 0 or CALC_JSON_ASCII. */
void calc_json_write(const void *s, size_t n, unsigned flags, calc_json_sink put, void *ctx);
/* The same, appended to b. 0, or -1 when b cannot grow (b->failed). */
int calc_json_str(calc_buf *b, const void *s, size_t n, unsigned flags);

#endif
