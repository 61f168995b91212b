/* obuf.h: hand-formatted text output for calc-sniff's per-packet and per-connection lines.
 * Lines are formatted by hand into a 64 KiB buffer written with one fwrite per buffer-full
 * (a 200,000-packet capture prints ~30 MB; through fprintf that cost 10x the analysis). The
 * text is byte for byte what printf formats would say (tests/bench/sniff_bench.sh). */
#ifndef CALC_SNIFF_OBUF_H
#define CALC_SNIFF_OBUF_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "sniff.h"

typedef struct obuf {
  FILE *f;
  size_t len;
  /* the last packet line's number as "%6llu" formats it (n bytes of s; n 0: none yet), kept
   * so that the next line's number, one more, is an in-place increment (put_pktno) */
  uint64_t pktno;
  uint32_t pktno_n;
  char pktno_s[24];
  char b[1 << 16];
} obuf;
/* Room guaranteed by ob_room() before a packet line's fixed part is formatted. */
#define OB_LINE 512

void ob_flush(obuf *o);
char *ob_room(obuf *o, size_t n);
void ob_write(obuf *o, const void *p, size_t n);

/* Two decimal digits at a time. */
extern const char digit_pairs[201];
/* Decimal digits of v from its bit length (a handful of instructions, no loop; pow10[0] is 0
 * so that 0 has one digit). */
static inline unsigned ndigits32(uint32_t v) {
  static const uint32_t pow10[10] = {0u,      10u,      100u,      1000u,      10000u,
                                     100000u, 1000000u, 10000000u, 100000000u, 1000000000u};
  unsigned t = ((32u - (unsigned)__builtin_clz(v | 1u)) * 1233u) >> 12;
  return t + 1u - (v < pow10[t]);
}
static inline unsigned ndigits(uint64_t v) {
  unsigned n = 0;
  for (; v > UINT32_MAX; v /= 10) n++;
  return n + ndigits32((uint32_t)v);
}
/* v's digits at w, written in place from the end; returns the end. 32-bit arithmetic for
 * the usual values (a 64-bit division by a constant costs more). Values below 10,000 (relative
 * sequence numbers, lengths, address bytes, ports below 10,000: most numbers of a timeline
 * line) take a straight path of at most one division, without the digit count and the loop. */
static inline char *put_u32(char *w, uint32_t v) {
  if (v < 100) {
    if (v < 10) {
      *w = (char)('0' + v);
      return w + 1;
    }
    memcpy(w, digit_pairs + v * 2, 2);
    return w + 2;
  }
  if (v < 10000) {
    uint32_t hi = v / 100, lo = v % 100;
    if (hi < 10) {
      *w = (char)('0' + hi);
      memcpy(w + 1, digit_pairs + lo * 2, 2);
      return w + 3;
    }
    memcpy(w, digit_pairs + hi * 2, 2);
    memcpy(w + 2, digit_pairs + lo * 2, 2);
    return w + 4;
  }
  char *e = w + ndigits32(v), *q = e;
  while (v >= 100) {
    uint32_t d = (v % 100) * 2;
    v /= 100;
    q -= 2;
    memcpy(q, digit_pairs + d, 2);
  }
  if (v >= 10) memcpy(q - 2, digit_pairs + v * 2, 2);
  else q[-1] = (char)('0' + v);
  return e;
}
static inline char *put_u64(char *w, uint64_t v) {
  if (v <= UINT32_MAX) return put_u32(w, (uint32_t)v);
  char *e = w + ndigits(v), *q = e;
  for (; v > UINT32_MAX; v /= 10) *--q = (char)('0' + v % 10);
  put_u32(w, (uint32_t)v);
  return e;
}
/* width at most 8 */
static inline char *put_u64_right(char *w, uint64_t v, size_t width) {
  size_t n = ndigits(v);
  if (n < width) {
    memcpy(w, "        ", 8);
    w += width - n;
  }
  return put_u64(w, v);
}
/* frac (below 1,000,000) as exactly six digits, leading zeros kept. */
static inline char *put_frac6(char *w, uint32_t frac) {
  memcpy(w + 4, digit_pairs + (frac % 100) * 2, 2);
  frac /= 100;
  memcpy(w + 2, digit_pairs + (frac % 100) * 2, 2);
  memcpy(w, digit_pairs + (frac / 100) * 2, 2);
  return w + 6;
}
static inline char *put_u64_left(char *w, uint64_t v, size_t width) {
  char *e = put_u64(w, v);
  while ((size_t)(e - w) < width) *e++ = ' ';
  return e;
}
static inline char *put_str(char *w, const char *s) {
  size_t n = strlen(s);
  memcpy(w, s, n);
  return w + n;
}
static inline char *put_lit(char *w, const char *s, size_t n) {
  memcpy(w, s, n);
  return w + n;
}
#define PUT_LIT(w, s) put_lit(w, s, sizeof s - 1)

/* The TCP flags' names in the order the timeline lists them. */
#define TCP_FLAGS 8
extern const struct tcp_flag_name { uint8_t bit; const char *name; } tcp_flag_names[TCP_FLAGS];

/* "a.b.c.d:port" or "[v6]:port" at w (at most 64 bytes); returns the end. */
char *put_addr(char *w, const sniff_conn *c, int side);
/* The same as a C string in out (n bytes). */
void fmt_addr(const sniff_conn *c, int side, char *out, size_t n);

#endif
