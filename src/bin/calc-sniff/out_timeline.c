/* out_timeline.c: the default output, one line per TCP segment in the spirit of the report's
 * Wireshark tables (docs/sniff.md), formatted by hand (obuf.h): no printf on the hot path. */
#include <inttypes.h>

#include "obuf.h"
#include "sniff_cli.h"

static void flags_str(uint8_t f, char *out, size_t n) {
  size_t l = 0;
  out[0] = 0;
  for (size_t i = 0; i < TCP_FLAGS; i++)
    if (f & tcp_flag_names[i].bit)
      l += (size_t)snprintf(out + l, n - l, "%s%s", l ? ", " : "", tcp_flag_names[i].name);
}

/* The flags' text for each of the 256 flag bytes, built on first use (*len: its length). */
#define FLAGS_MAX 48
static const char *flags_text(uint8_t f, size_t *len) {
  static char tab[256][FLAGS_MAX];
  static uint8_t lens[256];
  static bool built;
  if (!built) {
    for (int i = 0; i < 256; i++) {
      flags_str((uint8_t)i, tab[i], sizeof tab[i]);
      lens[i] = (uint8_t)strlen(tab[i]);
    }
    built = true;
  }
  *len = lens[f];
  return tab[f];
}

/* The connection's part of a packet line, "#ID  ROLE           SRC -> DST [", per direction,
 * for the connections seen last (direct-mapped by id): formatted once per connection, not
 * per packet. */
#define PFX_SLOTS 64
#define PFX_MAX 192
typedef struct pfx {
  uint32_t id;
  uint16_t len[2];
  char s[2][PFX_MAX];
} pfx;
static const pfx *conn_prefix(const sniff_conn *c) {
  static pfx cache[PFX_SLOTS];
  pfx *e = &cache[c->id % PFX_SLOTS];
  if (e->id == c->id) return e;
  e->id = c->id;
  for (int dir = 0; dir < 2; dir++) {
    char *w = e->s[dir];
    *w++ = '#';
    w = put_u64_left(w, c->id, 4);
    *w++ = ' ';
    const char *role = sniff_role_name(c->role);
    size_t rl = strlen(role);
    w = put_lit(w, role, rl);
    for (; rl < 14; rl++) *w++ = ' ';
    *w++ = ' ';
    w = put_addr(w, c, dir);
    w = PUT_LIT(w, " -> ");
    w = put_addr(w, c, !dir);
    w = PUT_LIT(w, " [");
    e->len[dir] = (uint16_t)(w - e->s[dir]);
  }
  return e;
}
/* The packet number v as "%6llu" at w; returns the end. Frames are numbered 1, 2, 3...: when
 * v is the previous line's number plus one, its text is incremented in place (usually one
 * digit changes) instead of being formatted again; any other v is formatted afresh. */
static char *put_pktno(char *w, obuf *o, uint64_t v) {
  char *s = o->pktno_s;
  if (o->pktno_n && v == o->pktno + 1) {
    int i = (int)o->pktno_n - 1;
    while (i >= 0 && s[i] == '9') s[i--] = '0';
    if (i < 0) {  /* all nines: one digit more, the text grows to the right */
      memmove(s + 1, s, o->pktno_n);
      s[0] = '1';
      o->pktno_n++;
    } else if (s[i] == ' ') {  /* the carry reaches the padding */
      s[i] = '1';
    } else {
      s[i]++;
    }
  } else {
    o->pktno_n = (uint32_t)(put_u64_right(s, v, 6) - s);  /* at most 20 digits: fits s */
  }
  o->pktno = v;
  memcpy(w, s, sizeof o->pktno_s);  /* fixed size: inline moves; the line has the room */
  return w + o->pktno_n;
}
void print_packet(run *r, const sniff_pkt *p) {
  const sniff_an *an = &r->an;
  int dir;
  uint32_t seq, ack;
  const sniff_conn *c = sniff_fed(an, p, &dir, &seq, &ack);
  if (!c) return;
  uint64_t rel = p->ts_usec - an->ts_first;
  obuf *o = r->ob;
  char *w0 = ob_room(o, OB_LINE), *w = w0;
  /* "%6llu %11.6f #%-4u %-14s %s -> %s [%s] Seq=%u" */
  w = put_pktno(w, o, an->pkts);
  *w++ = ' ';
  if (rel < (UINT64_C(1) << 52)) {
    /* %.6f of rel/1e6 is exactly rel's digits with a point before the last six: the quotient
     * is within half a unit of the sixth decimal of rel/1e6 below 2^52 */
    w = put_u64_right(w, rel / 1000000u, 4);
    *w++ = '.';
    w = put_frac6(w, (uint32_t)(rel % 1000000u));
  } else {  /* time stamps going backwards: the unsigned difference, as before */
    w += snprintf(w, 64, "%11.6f", (double)rel / 1e6);
  }
  *w++ = ' ';
  const pfx *e = conn_prefix(c);
  memcpy(w, e->s[dir], PFX_MAX);  /* fixed size: inline moves; the line has the room */
  w += e->len[dir];
  size_t fl;
  const char *ft = flags_text(p->flags, &fl);
  memcpy(w, ft, FLAGS_MAX);
  w += fl;
  w = PUT_LIT(w, "] Seq=");
  w = put_u64(w, p->flags & SNIFF_TH_SYN ? 0u : seq);
  if (p->flags & SNIFF_TH_ACK) {
    w = PUT_LIT(w, " Ack=");
    w = put_u64(w, ack);
  }
  w = PUT_LIT(w, " Win=");
  w = put_u64(w, p->win);
  w = PUT_LIT(w, " Len=");
  w = put_u64(w, p->payload_len);
  if (r->notes.len) {
    w = PUT_LIT(w, "  | ");
    o->len += (size_t)(w - w0);
    ob_write(o, r->notes.data, r->notes.len);
    ob_write(o, "\n", 1);
    return;
  }
  *w++ = '\n';
  o->len += (size_t)(w - w0);
}

void print_timeline_head(run *r) {
  static const char head[] = "   No.        Time Conn  Role           "
                             "Source -> Destination [Flags] Seq Ack Win Len  | notes\n";
  ob_write(r->ob, head, sizeof head - 1);
}

void print_undecodable(run *r, uint32_t caplen, const char *why) {
  char line[OB_LINE];
  int n = snprintf(line, sizeof line, "%6" PRIu64 " (undecodable frame, %u bytes: %s)\n", r->an.pkts, caplen,
                   why ? why : "?");
  ob_write(r->ob, line, n < 0 ? 0 : (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
}
