/* obuf.c: the output buffer and address text shared by calc-sniff's text outputs. */
#include "obuf.h"

#include <arpa/inet.h>

const struct tcp_flag_name tcp_flag_names[TCP_FLAGS] = {
    {SNIFF_TH_FIN, "FIN"}, {SNIFF_TH_SYN, "SYN"}, {SNIFF_TH_RST, "RST"}, {SNIFF_TH_PSH, "PSH"},
    {SNIFF_TH_ACK, "ACK"}, {SNIFF_TH_URG, "URG"}, {SNIFF_TH_ECE, "ECE"}, {SNIFF_TH_CWR, "CWR"}};

const char digit_pairs[201] =
    "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
    "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
    "8081828384858687888990919293949596979899";

void ob_flush(obuf *o) {
  if (o->len) fwrite(o->b, 1, o->len, o->f);
  o->len = 0;
}
char *ob_room(obuf *o, size_t n) {
  if (o->len + n > sizeof o->b) ob_flush(o);
  return o->b + o->len;
}
void ob_write(obuf *o, const void *p, size_t n) {
  if (o->len + n > sizeof o->b) {
    ob_flush(o);
    if (n > sizeof o->b) {
      fwrite(p, 1, n, o->f);
      return;
    }
  }
  memcpy(o->b + o->len, p, n);
  o->len += n;
}

char *put_addr(char *w, const sniff_conn *c, int side) {
  if (c->af == 4) {  /* the common case, without inet_ntop's and printf's generality */
    /* the last IPv4 address's text is kept: captures mostly repeat a few addresses */
    static uint8_t last[4];
    static char last_s[16];
    static size_t last_n;
    const uint8_t *q = c->addr[side];
    if (!last_n || memcmp(q, last, 4)) {
      char *t = last_s;
      for (int i = 0; i < 4; i++) {
        if (i) *t++ = '.';
        t = put_u64(t, q[i]);
      }
      memcpy(last, q, 4);
      last_n = (size_t)(t - last_s);
    }
    memcpy(w, last_s, sizeof last_s);  /* fixed size: inline moves; w has 64 bytes of room */
    w += last_n;
    *w++ = ':';
    return put_u64(w, c->port[side]);
  }
  char a[INET6_ADDRSTRLEN];
  inet_ntop(AF_INET6, c->addr[side], a, sizeof a);
  *w++ = '[';
  w = put_str(w, a);
  w = PUT_LIT(w, "]:");
  return put_u64(w, c->port[side]);
}

void fmt_addr(const sniff_conn *c, int side, char *out, size_t n) {
  char tmp[80];
  size_t l = (size_t)(put_addr(tmp, c, side) - tmp);
  if (l >= n) l = n - 1;
  memcpy(out, tmp, l);
  out[l] = 0;
}
