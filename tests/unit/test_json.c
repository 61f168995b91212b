/* test_json.c: the one JSON string writer (calc/json.h) writes what each of the three escapers
 * it replaced wrote: the logs' (src/net/log.c: ASCII, bytes from 0x7f up escaped, a length
 * given), calc-sniff's sniff_json_str (src/sniff/sniff_conn.c: a C string, bytes from 0x80 up
 * unchanged) and calc-sniff's --json texts (src/bin/calc-sniff/out_json.c: the same rule, run by
 * run). The three are kept here as they were, as the oracles, and compared on every byte alone,
 * in every pair, and on texts mixing them; a sink that records each call checks that runs come
 * whole and escapes alone. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "calc/json.h"

/* ---- the oracles: the three escapers as they were ---- */

/* log.c's put_json_string (its record buffer aside). */
static void old_log(calc_buf *b, const void *data, size_t len) {
  const unsigned char *p = data;
  calc_buf_append(b, "\"", 1);
  for (size_t i = 0; i < len; i++) {
    unsigned char c = p[i];
    if (c == '"' || c == '\\') {
      char e[2] = {'\\', (char)c};
      calc_buf_append(b, e, 2);
    } else if (c < 0x20 || c >= 0x7f) {
      calc_buf_printf(b, "\\u%04x", c);
    } else {
      calc_buf_append(b, (const char *)&c, 1);
    }
  }
  calc_buf_append(b, "\"", 1);
}

/* sniff_conn.c's sniff_json_str. */
static void old_sniff(calc_buf *b, const char *s) {
  calc_buf_putc(b, '"');
  for (const unsigned char *q = (const unsigned char *)s; *q; q++) {
    if (*q == '"' || *q == '\\') {
      calc_buf_putc(b, '\\');
      calc_buf_putc(b, *q);
    } else if (*q < 0x20 || *q == 0x7f) {
      calc_buf_printf(b, "\\u%04x", *q);
    } else {
      calc_buf_putc(b, *q);
    }
  }
  calc_buf_putc(b, '"');
}

/* out_json.c's put_json_text (its output buffer replaced by b). */
static void old_out_json(calc_buf *b, const char *s) {
  calc_buf_append(b, "\"", 1);
  const char *plain = s;
  for (const unsigned char *q = (const unsigned char *)s;; q++) {
    unsigned char ch = *q;
    if (ch >= 0x20 && ch != '"' && ch != '\\' && ch != 0x7f) continue;
    calc_buf_append(b, plain, (size_t)((const char *)q - plain));
    if (!ch) break;
    char esc[8];
    size_t n = 2;
    esc[0] = '\\';
    if (ch == '"' || ch == '\\') {
      esc[1] = (char)ch;
    } else {
      static const char hex[] = "0123456789abcdef";
      memcpy(esc + 1, "u00", 3);
      esc[4] = hex[ch >> 4];
      esc[5] = hex[ch & 15];
      n = 6;
    }
    calc_buf_append(b, esc, n);
    plain = (const char *)q + 1;
  }
  calc_buf_append(b, "\"", 1);
}

/* ---- comparisons ---- */

static void same(const calc_buf *want, const calc_buf *got, const unsigned char *in, size_t n) {
  if (want->len == got->len && !memcmp(want->data, got->data, want->len)) return;
  fprintf(stderr, "input:");
  for (size_t i = 0; i < n; i++) fprintf(stderr, " %02x", in[i]);
  fprintf(stderr, "\nwant %.*s\ngot  %.*s\n", (int)want->len, (const char *)want->data, (int)got->len,
          (const char *)got->data);
  fail();
}

/* in[0, n) through the new writer and each oracle that takes it. */
static void check(const unsigned char *in, size_t n) {
  calc_buf want, got;
  calc_buf_init(&want, 0);
  calc_buf_init(&got, 0);
  old_log(&want, in, n);
  assert_int_equal(calc_json_str(&got, in, n, CALC_JSON_ASCII), 0);
  same(&want, &got, in, n);
  if (!memchr(in, 0, n)) {  /* the two C-string escapers */
    char s[64];
    assert_true(n < sizeof s);
    memcpy(s, in, n);
    s[n] = 0;
    calc_buf_reset(&want);
    calc_buf_reset(&got);
    old_sniff(&want, s);
    assert_int_equal(calc_json_str(&got, s, n, 0), 0);
    same(&want, &got, in, n);
    calc_buf_reset(&want);
    old_out_json(&want, s);
    same(&want, &got, in, n);
  }
  calc_buf_free(&want);
  calc_buf_free(&got);
}

static void test_every_byte_and_pair(void **state) {
  (void)state;
  unsigned char in[2];
  for (int a = 0; a < 256; a++) {
    in[0] = (unsigned char)a;
    check(in, 1);
    for (int b = 0; b < 256; b++) {
      in[1] = (unsigned char)b;
      check(in, 2);
    }
  }
  check((const unsigned char *)"", 0);
}

static void test_mixed_texts(void **state) {
  (void)state;
  static const char *const texts[] = {
      "(1 + 2) * 3",
      "ZeroDivisionError: division by zero",
      "say \"hi\" \\ bye",
      "\x1b[31mred\x1b[0m",
      "tab\there\nnew line\r",
      "caf\xc3\xa9 \xe2\x82\xac 1\x7f",
      "\xff\xfe not UTF-8 \x80",
      "\"\\\"\\",
      "ends with an escape\x01",
  };
  for (size_t i = 0; i < sizeof texts / sizeof *texts; i++)
    check((const unsigned char *)texts[i], strlen(texts[i]));
  /* NUL bytes inside, as a log quotes them from a peer */
  check((const unsigned char *)"a\0b\0", 4);
}

/* Each call of the sink: a run of plain bytes whole, or one escape, or a quote. */
typedef struct calls {
  char piece[16][16];
  size_t n;
} calls;
static void record(void *ctx, const void *p, size_t n) {
  calls *c = ctx;
  assert_true(n > 0 && n < sizeof c->piece[0] && c->n < 16);
  memcpy(c->piece[c->n], p, n);
  c->piece[c->n++][n] = 0;
}

static void test_runs_whole(void **state) {
  (void)state;
  calls c = {.n = 0};
  calc_json_write("ab\"cd\x01\xc3\xa9", 8, 0, record, &c);
  const char *want[] = {"\"", "ab", "\\\"", "cd", "\\u0001", "\xc3\xa9", "\""};
  assert_int_equal(c.n, 7);
  for (size_t i = 0; i < 7; i++) assert_string_equal(c.piece[i], want[i]);
  c.n = 0;
  calc_json_write("\xc3\xa9", 2, CALC_JSON_ASCII, record, &c);
  assert_int_equal(c.n, 4);
  assert_string_equal(c.piece[1], "\\u00c3");
  assert_string_equal(c.piece[2], "\\u00a9");
}

/* A buffer that cannot grow: -1, as every calc_buf writer reports it. */
static void test_full_buffer(void **state) {
  (void)state;
  calc_buf b;
  calc_buf_init(&b, 4);
  assert_int_equal(calc_json_str(&b, "abcdef", 6, 0), -1);
  assert_int_equal(b.failed, CALC_ERR_LIMIT);  /* the buffer's errors are calc_err's */
  calc_buf_free(&b);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_every_byte_and_pair),
      cmocka_unit_test(test_mixed_texts),
      cmocka_unit_test(test_runs_whole),
      cmocka_unit_test(test_full_buffer),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
