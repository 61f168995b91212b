/* calc-sniff: capture or read calculator traffic, rebuild every TCP conversation and message,
 * print a timeline / JSON Lines / the reduced behaviour, or verify a run against a golden
 * capture (issue 5; usage in docs/sniff.md). libpcap handles live here; the analysis is
 * src/sniff (sans-I/O). */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pcap/pcap.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <sys/stat.h>

#include "block_reader.h"
#include "sniff.h"

enum { EXIT_PASS = 0, EXIT_FAILV = 1, EXIT_USAGE = 2, EXIT_INCONCLUSIVE = 3 };
/* Live capture: a loopback burst of the benchmark load fits easily in 64 MiB of kernel buffer;
 * snaplen 262144 keeps whole 64 KiB loopback segments (lo's MTU is 65536). */
#define LIVE_BUFFER (64 << 20)
#define LIVE_SNAPLEN 262144
#define LIVE_POLL_MS 100
#define MAX_PORTS 16
#define READ_BUFFER (64 << 10)
/* read_direct's blocks: small enough to be parsed while still in cache, and with the room
 * before each (one snapshot length) four of them fill one 2 MiB huge page */
#define READ_BLOCK ((256 << 10) - 64)

static volatile sig_atomic_t g_stop;
static void on_signal(int sig) {
  (void)sig;
  g_stop = 1;
}

typedef enum { OUT_TIMELINE, OUT_JSON, OUT_TRACE, OUT_SUMMARY, OUT_STATS, OUT_NONE } out_mode;

typedef struct input {
  const char *file;          /* -r */
  const char *iface;         /* -i */
  double duration;           /* --duration, 0 = until SIGINT */
  const char *ready_file;    /* --ready-file */
  const char *write_file;    /* -w */
  uint16_t ports[MAX_PORTS];
  int nports;
} input;

typedef struct run {
  sniff_an an;
  out_mode mode;
  int dlt;
  pcap_dumper_t *dumper;
  uint64_t drops;
  bool live;
  FILE *out;
  struct obuf *ob;           /* timeline: buffered packet lines (see obuf) */
} run;

static void usage(FILE *f) {
  fprintf(f,
          "usage: calc-sniff [-r FILE|-] [-i IFACE] [-p PORTS] [--json|--trace|--summary|--stats]\n"
          "                  [--duration S] [--ready-file PATH] [-w FILE]\n"
          "                  [--server-port N] [--proxy-port N]\n"
          "       calc-sniff verify --golden G.pcap (-r CAPTURE | -i IFACE --duration S)\n"
          "                  [--trace] [--ready-file PATH] [-w FILE] [-p PORTS]\n"
          "\n"
          "Rebuilds calculator conversations from a capture (pcap or pcapng; - reads stdin)\n"
          "or from live traffic (default interface lo, ports 9998,9999).\n"
          "  -r FILE          read a capture file\n"
          "  -i IFACE         capture live (default lo when no -r is given)\n"
          "  -p PORTS         comma-separated TCP ports for the capture filter (default 9998,9999)\n"
          "  --server-port N  the calculator server's port (default 9999)\n"
          "  --proxy-port N   the proxy's port (default 9998)\n"
          "  --json           JSON Lines: one record per connection and per message\n"
          "  --trace          the reduced behaviour verify compares (diffable text)\n"
          "  --summary        one line per connection only\n"
          "  --stats          totals only: connections by role, state and teardown, messages\n"
          "  --duration S     stop a live capture after S seconds (else at SIGINT/SIGTERM)\n"
          "  --ready-file P   live: write P once the capture is active (scripts wait for it)\n"
          "  -w FILE          live: also save the raw packets to FILE (pcap)\n"
          "verify exit status: 0 pass, 1 fail, 2 usage or input error, 3 inconclusive\n"
          "(kernel drops, or bytes missing from a capture).\n");
}

static int parse_ports(const char *s, input *in) {
  in->nports = 0;
  while (*s) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || v < 1 || v > 65535 || in->nports == MAX_PORTS) return -1;
    in->ports[in->nports++] = (uint16_t)v;
    if (*end == ',') end++;
    else if (*end) return -1;
    s = end;
  }
  return in->nports ? 0 : -1;
}

static int parse_port(const char *s, uint16_t *p) {
  char *end;
  long v = strtol(s, &end, 10);
  if (*s == 0 || *end || v < 1 || v > 65535) return -1;
  *p = (uint16_t)v;
  return 0;
}

/* ---- timeline output: one line per packet, so no printf on the hot path ----
 * Lines are formatted by hand into a 64 KiB buffer written with one fwrite per buffer-full
 * (a 200,000-packet capture prints ~30 MB; through fprintf that cost 10x the analysis). The
 * text is byte for byte what the printf formats said before (tests/bench/sniff_bench.sh). */
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

static void ob_flush(obuf *o) {
  if (o->len) fwrite(o->b, 1, o->len, o->f);
  o->len = 0;
}
static char *ob_room(obuf *o, size_t n) {
  if (o->len + n > sizeof o->b) ob_flush(o);
  return o->b + o->len;
}
static void ob_write(obuf *o, const void *p, size_t n) {
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

/* Two decimal digits at a time. */
static const char digit_pairs[201] =
    "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
    "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
    "8081828384858687888990919293949596979899";
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
static char *put_u64_left(char *w, uint64_t v, size_t width) {
  char *e = put_u64(w, v);
  while ((size_t)(e - w) < width) *e++ = ' ';
  return e;
}
static char *put_str(char *w, const char *s) {
  size_t n = strlen(s);
  memcpy(w, s, n);
  return w + n;
}
static char *put_lit(char *w, const char *s, size_t n) {
  memcpy(w, s, n);
  return w + n;
}
#define PUT_LIT(w, s) put_lit(w, s, sizeof s - 1)

/* "a.b.c.d:port" or "[v6]:port" at w (at most 64 bytes); returns the end. */
static char *put_addr(char *w, const sniff_conn *c, int side) {
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

static void fmt_addr(const sniff_conn *c, int side, char *out, size_t n) {
  char tmp[80];
  size_t l = (size_t)(put_addr(tmp, c, side) - tmp);
  if (l >= n) l = n - 1;
  memcpy(out, tmp, l);
  out[l] = 0;
}

static void flags_str(uint8_t f, char *out, size_t n) {
  static const struct { uint8_t bit; const char *name; } tab[] = {
      {SNIFF_TH_FIN, "FIN"}, {SNIFF_TH_SYN, "SYN"}, {SNIFF_TH_RST, "RST"}, {SNIFF_TH_PSH, "PSH"},
      {SNIFF_TH_ACK, "ACK"}, {SNIFF_TH_URG, "URG"}, {SNIFF_TH_ECE, "ECE"}, {SNIFF_TH_CWR, "CWR"}};
  size_t l = 0;
  out[0] = 0;
  for (size_t i = 0; i < sizeof tab / sizeof tab[0]; i++)
    if (f & tab[i].bit) l += (size_t)snprintf(out + l, n - l, "%s%s", l ? ", " : "", tab[i].name);
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

static void print_packet(run *r, const sniff_pkt *p) {
  const sniff_an *an = &r->an;
  const sniff_conn *c = sniff_conn_get(an, an->last_conn);
  if (!c) return;
  int dir = an->last_dir;
  /* Relative numbers as Wireshark shows them: 0 for the SYN, 1 for the first data byte. */
  uint32_t seq = c->d[dir].have_next ? p->seq - c->d[dir].isn : p->seq;
  uint32_t ack = c->d[!dir].have_next ? p->ack - c->d[!dir].isn : p->ack;
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
    uint32_t frac = (uint32_t)(rel % 1000000u);
    memcpy(w + 4, digit_pairs + (frac % 100) * 2, 2);
    frac /= 100;
    memcpy(w + 2, digit_pairs + (frac % 100) * 2, 2);
    memcpy(w, digit_pairs + (frac / 100) * 2, 2);
    w += 6;
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
  if (an->notes.len) {
    w = PUT_LIT(w, "  | ");
    o->len += (size_t)(w - w0);
    ob_write(o, an->notes.data, an->notes.len);
    ob_write(o, "\n", 1);
    return;
  }
  *w++ = '\n';
  o->len += (size_t)(w - w0);
}

static void handle_frame(run *r, const struct pcap_pkthdr *h, const uint8_t *bytes) {
  uint64_t ts = (uint64_t)h->ts.tv_sec * 1000000u + (uint64_t)h->ts.tv_usec;
  if (r->dumper) pcap_dump((u_char *)r->dumper, h, bytes);
  if (r->mode != OUT_TIMELINE) {
    sniff_feed_frame(&r->an, r->dlt, bytes, h->caplen, ts);
    return;
  }
  sniff_pkt p;
  const char *why = NULL;
  r->an.pkts++;
  sniff_dec_result d = sniff_decode(r->dlt, bytes, h->caplen, &p, &why);
  if (d != SNIFF_DEC_TCP) {
    if (d == SNIFF_DEC_BAD) r->an.bad_pkts++; else r->an.other_pkts++;
    if (d == SNIFF_DEC_BAD) {
      char line[OB_LINE];
      int n = snprintf(line, sizeof line, "%6" PRIu64 " (undecodable frame, %u bytes: %s)\n",
                       r->an.pkts, h->caplen, why ? why : "?");
      ob_write(r->ob, line, n < 0 ? 0 : (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
    }
    return;
  }
  p.ts_usec = ts;
  if (p.payload_cap < p.payload_len) r->an.trunc_pkts++;
  sniff_feed(&r->an, &p);
  print_packet(r, &p);
}

static void pcap_cb(u_char *user, const struct pcap_pkthdr *h, const u_char *bytes) {
  handle_frame((run *)user, h, bytes);
}

static int check_dlt(pcap_t *p, const char *what, run *r) {
  r->dlt = pcap_datalink(p);
  if (!sniff_dlt_supported(r->dlt)) {
    const char *n = pcap_datalink_val_to_name(r->dlt);
    fprintf(stderr, "calc-sniff: %s: link type %d (%s) is not supported\n", what, r->dlt,
            n ? n : "unknown");
    return -1;
  }
  /* The input is open: the timeline's column header goes first (not before, so that an
   * input that cannot be read leaves nothing on stdout but its message on stderr). */
  if (r->ob) {
    static const char head[] = "   No.        Time Conn  Role           "
                               "Source -> Destination [Flags] Seq Ack Win Len  | notes\n";
    ob_write(r->ob, head, sizeof head - 1);
  }
  return 0;
}

static int open_dumper(pcap_t *p, const input *in, run *r) {
  if (!in->write_file) return 0;
  r->dumper = pcap_dump_open(p, in->write_file);
  if (!r->dumper) {
    fprintf(stderr, "calc-sniff: %s: %s\n", in->write_file, pcap_geterr(p));
    return -1;
  }
  return 0;
}

/* The records of a classic pcap file taken in place from blocks a reader thread reads ahead
 * (block_reader.h), without libpcap's two fread calls per record (stdio's buffer, then
 * libpcap's): about a quarter of the instructions of a full analysis, and the kernel's copy
 * then runs on another core. (A mapping of the file saves the copy too but was slower here:
 * the parser then waits for a page fault per 4 KiB of file.) libpcap has opened the file and
 * checked its header (p); records are taken here only in the plain case, where libpcap would
 * hand out each record's bytes untouched:
 *   - a regular file starting with the native-order microsecond magic, version 2.4 (no
 *     byte swapping, no time scaling, no swapped-length quirk of older minor versions);
 *   - a complete record with caplen <= len and caplen <= the snapshot length libpcap settled
 *     on (so none of libpcap's cuts or errors applies).
 * At the first record that is not plain (damaged, cut short, the end of the file) or on a
 * read error, the stream libpcap reads from is positioned at that record and 0 is returned:
 * the libpcap loop then reads the rest exactly as it read whole files before, with libpcap's
 * checks and messages. Time stamps are taken as libpcap takes them (32-bit signed fields).
 * Returns 0, or -1 with a message when the stream cannot be positioned. */
static int read_direct(const char *file, FILE *f, pcap_t *p, run *r) {
  struct stat st;
  int fd = fileno(f);
  if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) return 0;
  int snap = pcap_snapshot(p);
  if (snap <= 0 || pcap_get_tstamp_precision(p) != PCAP_TSTAMP_PRECISION_MICRO) return 0;
  /* libpcap read the file header from the start of the file (not from wherever an inherited
   * descriptor such as /dev/stdin happened to be): the records follow at offset 24 */
  if (ftello(f) != 24) return 0;
  uint8_t fh[24];
  uint32_t magic;
  uint16_t major, minor;
  if (pread(fd, fh, sizeof fh, 0) != (ssize_t)sizeof fh) return 0;
  memcpy(&magic, fh, 4);
  memcpy(&major, fh + 4, 2);
  memcpy(&minor, fh + 6, 2);
  if (magic != 0xa1b2c3d4u || major != 2 || minor != 4) return 0;
  /* A record cut by a block boundary is carried to the room before the next block: it is
   * shorter than a record header and the longest record libpcap accepts. */
  /* A file of a few blocks is read in this thread, in one block: a thread and 2 MiB of
   * populated buffers cost more than they save there (the lab's captures are kilobytes). */
  off_t body = st.st_size > 24 ? st.st_size - 24 : 1;
  bool ahead = body > 4 * (off_t)READ_BLOCK;
  size_t block_size = ahead ? READ_BLOCK : (size_t)body;
  block_reader *br = block_reader_start(fd, 24, block_size, 16 + (size_t)snap, ahead);
  if (!br) return 0;
  off_t pos = 24;            /* file offset of the next record */
  const uint8_t *at = NULL;  /* the next record's bytes ... */
  size_t left = 0;           /* ... and how many of them are at hand */
  block b;
  bool plain = true;
  while (plain && block_reader_next(br, &b) == 0) {
    uint8_t *start = b.data - left;
    if (left) memcpy(start, at, left);
    at = start;
    left += b.len;
    while (left >= 16) {
      struct pcap_pkthdr h;
      int32_t sec, usec;
      memcpy(&sec, at, 4);
      memcpy(&usec, at + 4, 4);
      memcpy(&h.caplen, at + 8, 4);
      memcpy(&h.len, at + 12, 4);
      if (h.caplen > h.len || h.caplen > (uint32_t)snap) {
        plain = false;
        break;
      }
      if (left - 16 < h.caplen) break;
      h.ts.tv_sec = sec;
      h.ts.tv_usec = usec;
      handle_frame(r, &h, at + 16);
      at += 16 + (size_t)h.caplen;
      left -= 16 + (size_t)h.caplen;
      pos += 16 + (off_t)h.caplen;
    }
  }
  block_reader_stop(br);
  if (fseeko(f, pos, SEEK_SET) != 0) {
    fprintf(stderr, "calc-sniff: %s: cannot seek after %" PRIu64 " packets: %s\n", file,
            r->an.pkts, strerror(errno));
    return -1;
  }
  return 0;
}

/* Reads a whole capture file. 0, or -1 with a message (exit 2). */
static int read_file(const char *file, run *r, const input *in) {
  char err[PCAP_ERRBUF_SIZE] = "";
  /* A file is opened here with a 64 KiB stdio buffer: where libpcap reads the records (not
   * read_direct's plain case) it reads each with fread, and with the default buffer (one
   * 4 KiB block) a 30 MB capture costs ~8,000 read calls. Not larger: the buffer is filled
   * once even when read_direct then reads the file, and each fresh page costs a fault. */
  pcap_t *p = NULL;
  FILE *f = strcmp(file, "-") ? fopen(file, "rb") : NULL;
  char *iobuf = NULL;  /* glibc ignores setvbuf's size without a buffer: give it one */
  if (f) {
    if ((iobuf = malloc(READ_BUFFER))) setvbuf(f, iobuf, _IOFBF, READ_BUFFER);
    p = pcap_fopen_offline_with_tstamp_precision(f, PCAP_TSTAMP_PRECISION_MICRO, err);
    if (!p) {  /* libpcap closes the file only on success (in pcap_close) */
      fclose(f);
      free(iobuf);
    }
  } else {
    p = pcap_open_offline_with_tstamp_precision(file, PCAP_TSTAMP_PRECISION_MICRO, err);
  }
  if (!p) {
    fprintf(stderr, "calc-sniff: %s: cannot read capture: %s\n", file, err);
    return -1;
  }
  if (check_dlt(p, file, r) < 0 || (in && open_dumper(p, in, r) < 0)) {
    pcap_close(p);
    free(iobuf);
    return -1;
  }
  int rc = 0;
  if (f && read_direct(file, f, p, r) < 0) {
    rc = -1;
    goto done;
  }
  for (;;) {
    struct pcap_pkthdr *h;
    const u_char *bytes;
    int n = pcap_next_ex(p, &h, &bytes);
    if (n == 1) {
      handle_frame(r, h, bytes);
      continue;
    }
    if (n == PCAP_ERROR_BREAK) break;
    fprintf(stderr, "calc-sniff: %s: corrupt or truncated capture after %" PRIu64 " packets: %s\n",
            file, r->an.pkts, pcap_geterr(p));
    rc = -1;
    break;
  }
done:
  if (r->dumper) pcap_dump_close(r->dumper);
  r->dumper = NULL;
  pcap_close(p);  /* closes f, which used iobuf */
  free(iobuf);
  return rc;
}

static int write_ready(const char *path, const char *iface) {
  char tmp[4096];
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  FILE *f = fopen(tmp, "w");
  if (!f) return -1;
  fprintf(f, "ready %s %ld\n", iface, (long)getpid());
  if (fclose(f) != 0) return -1;
  return rename(tmp, path);
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Live capture until --duration passes or a signal arrives. 0, or -1 with a message. */
static int capture_live(const input *in, run *r) {
  char err[PCAP_ERRBUF_SIZE] = "";
  const char *iface = in->iface ? in->iface : "lo";
  pcap_t *p = pcap_create(iface, err);
  if (!p) {
    fprintf(stderr, "calc-sniff: %s: %s\n", iface, err);
    return -1;
  }
  pcap_set_snaplen(p, LIVE_SNAPLEN);
  pcap_set_promisc(p, 0);
  /* Not immediate mode: that forces TPACKET_V2, whose ring has one fixed slot per packet sized
   * for the interface MTU (64 KiB on lo), so 64 MiB held about a thousand packets and the
   * kernel dropped under full benchmark load. TPACKET_V3 packs packets into blocks that are
   * handed over when full or after LIVE_POLL_MS (the timeout below), so the same buffer holds
   * hundreds of thousands of small segments; the stop below waits out one more block timeout. */
  pcap_set_immediate_mode(p, 0);
  pcap_set_buffer_size(p, LIVE_BUFFER);
  pcap_set_timeout(p, LIVE_POLL_MS);
  int a = pcap_activate(p);
  if (a < 0) {
    fprintf(stderr, "calc-sniff: %s: cannot capture: %s\n", iface,
            a == PCAP_ERROR ? pcap_geterr(p) : pcap_statustostr(a));
    pcap_close(p);
    return -1;
  }
  if (check_dlt(p, iface, r) < 0) {
    pcap_close(p);
    return -1;
  }
  char filter[512];
  size_t l = (size_t)snprintf(filter, sizeof filter, "tcp and (");
  for (int i = 0; i < in->nports; i++)
    l += (size_t)snprintf(filter + l, sizeof filter - l, "%sport %u", i ? " or " : "", in->ports[i]);
  snprintf(filter + l, sizeof filter - l, ")");
  struct bpf_program prog;
  if (pcap_compile(p, &prog, filter, 1, PCAP_NETMASK_UNKNOWN) < 0 || pcap_setfilter(p, &prog) < 0) {
    fprintf(stderr, "calc-sniff: filter \"%s\": %s\n", filter, pcap_geterr(p));
    pcap_close(p);
    return -1;
  }
  pcap_freecode(&prog);
  if (open_dumper(p, in, r) < 0 || pcap_setnonblock(p, 1, err) < 0) {
    if (!r->dumper) fprintf(stderr, "calc-sniff: %s\n", err);
    pcap_close(p);
    return -1;
  }
  int fd = pcap_get_selectable_fd(p);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  /* The handle is active and filtered: from here on no packet of the scenario is missed. */
  fprintf(stderr, "calc-sniff: capturing on %s, filter \"%s\"\n", iface, filter);
  if (in->ready_file && write_ready(in->ready_file, iface) < 0) {
    fprintf(stderr, "calc-sniff: %s: %s\n", in->ready_file, strerror(errno));
    pcap_close(p);
    return -1;
  }
  r->live = true;
  double deadline = in->duration > 0 ? now_s() + in->duration : 0;
  int rc = 0;
  while (!g_stop) {
    int wait = LIVE_POLL_MS;
    if (deadline) {
      double left = deadline - now_s();
      if (left <= 0) break;
      if (left * 1000 < wait) wait = (int)(left * 1000) + 1;
    }
    struct pollfd pfd = {fd, POLLIN, 0};
    if (fd >= 0) poll(&pfd, 1, wait); else usleep((useconds_t)wait * 1000);
    if (pcap_dispatch(p, -1, pcap_cb, (u_char *)r) == PCAP_ERROR) {
      fprintf(stderr, "calc-sniff: %s: %s\n", iface, pcap_geterr(p));
      rc = -1;
      break;
    }
    if (r->ob) {  /* live: packet lines appear as they come, not per 64 KiB */
      ob_flush(r->ob);
      fflush(r->out);
    }
  }
  /* Drain: the block being filled is handed over only at its timeout, so keep reading for one
   * more timeout (plus a margin) to analyse the packets that arrived just before the stop. */
  double drain_until = now_s() + (LIVE_POLL_MS + 150) / 1000.0;
  while (rc == 0 && now_s() < drain_until) {
    struct pollfd pfd = {fd, POLLIN, 0};
    if (fd >= 0) poll(&pfd, 1, 20); else usleep(20000);
    if (pcap_dispatch(p, -1, pcap_cb, (u_char *)r) == PCAP_ERROR) break;
  }
  struct pcap_stat st;
  if (pcap_stats(p, &st) == 0) {
    r->drops = (uint64_t)st.ps_drop + st.ps_ifdrop;
    fprintf(stderr, "calc-sniff: %u packets received by filter, %" PRIu64 " dropped by kernel\n",
            st.ps_recv, r->drops);
  }
  if (r->dumper) pcap_dump_close(r->dumper);
  r->dumper = NULL;
  pcap_close(p);
  return rc;
}

static void print_summary(run *r, bool header) {
  const sniff_an *an = &r->an;
  static obuf own;
  obuf *o = r->ob;
  if (!o) {
    own.f = r->out;
    o = &own;
  }
  if (header) ob_write(o, "\nconnections:\n", 14);
  for (uint32_t i = 0; i < an->nconns; i++) {
    const sniff_conn *c = &an->conns[i];
    /* "#%u %s %s -> %s %s %s teardown=%s", by hand (one line per connection) */
    char *w0 = ob_room(o, OB_LINE), *w = w0;
    *w++ = '#';
    w = put_u64(w, c->id);
    *w++ = ' ';
    w = put_str(w, sniff_role_name(c->role));
    *w++ = ' ';
    w = put_addr(w, c, 0);
    w = PUT_LIT(w, " -> ");
    w = put_addr(w, c, 1);
    *w++ = ' ';
    w = put_str(w, sniff_conn_state(c));
    *w++ = ' ';
    w = put_str(w, c->history);
    w = PUT_LIT(w, " teardown=");
    w = put_str(w, sniff_end_name(sniff_conn_end(c)));
    if (c->first_fin >= 0) {
      w = PUT_LIT(w, " (");
      w = put_u64(w, c->teardown_pkts);
      w = PUT_LIT(w, " segments)");
    }
    w = PUT_LIT(w, " msgs=");
    w = put_u64(w, c->d[0].nmsgs);
    *w++ = '/';
    w = put_u64(w, c->d[1].nmsgs);
    if (c->syn_retries) {
      w = PUT_LIT(w, " syn-retries=");
      w = put_u64(w, c->syn_retries);
    }
    if (c->parent) {
      w = PUT_LIT(w, " upstream-of=#");
      w = put_u64(w, c->parent);
      w = PUT_LIT(w, "/request-");
      w = put_u64(w, c->parent_req);
    }
    o->len += (size_t)(w - w0);
    for (int d = 0; d < 2; d++) {
      const sniff_dir *s = &c->d[d];
      if (s->retrans_pkts || s->overlap_bytes || s->ooo_pkts || s->gap_bytes || s->trunc_bytes) {
        char line[OB_LINE];
        int n = snprintf(line, sizeof line,
                         " %s[retrans=%" PRIu64 " overlap=%" PRIu64 "B ooo=%" PRIu64 " gap=%" PRIu64
                         "B snaplen-cut=%" PRIu64 "B]",
                         d ? "server" : "client", s->retrans_pkts, s->overlap_bytes, s->ooo_pkts,
                         s->gap_bytes, s->trunc_bytes);
        ob_write(o, line, n < 0 ? 0 : (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
      }
    }
    ob_write(o, "\n", 1);
  }
  ob_flush(o);
  fprintf(r->out, "%" PRIu64 " packets: %" PRIu64 " TCP, %" PRIu64 " other, %" PRIu64
                  " undecodable, %" PRIu64 " cut by snaplen; %u connections, %u messages\n",
          an->pkts, an->tcp_pkts, an->other_pkts, an->bad_pkts, an->trunc_pkts, an->nconns,
          an->nmsgs);
}

/* Totals for big captures (and the benchmark): the analysis without per-connection output. */
static void print_stats(run *r) {
  const sniff_an *an = &r->an;
  static const char *states[] = {"S0", "S1", "SF", "REJ", "S2", "S3", "RSTO", "RSTR",
                                 "RSTOS0", "RSTRH", "SH", "SHR", "OTH"};
  uint32_t role[4] = {0}, end[6] = {0}, st[13] = {0}, lossy = 0, retrans = 0, ooo = 0;
  for (uint32_t i = 0; i < an->nconns; i++) {
    const sniff_conn *c = &an->conns[i];
    role[c->role]++;
    end[sniff_conn_end(c)]++;
    const char *s = sniff_conn_state(c);
    for (int k = 0; k < 13; k++)
      if (!strcmp(s, states[k])) st[k]++;
    if (sniff_conn_lossy(c)) lossy++;
    retrans += (uint32_t)(c->d[0].retrans_pkts + c->d[1].retrans_pkts);
    ooo += (uint32_t)(c->d[0].ooo_pkts + c->d[1].ooo_pkts);
  }
  uint32_t req = 0, resp = 0, single = 0, hits = 0;
  for (uint32_t i = 0; i < an->nmsgs; i++) {
    const sniff_msg *m = &an->msgs[i];
    if (m->h.is_request) req++; else resp++;
    if (m->nseg == 1 && !m->shares_segment) single++;
    const sniff_conn *c = sniff_conn_get(an, m->conn);
    if (m->h.is_request && c && c->role == SNIFF_ROLE_CLIENT_PROXY && !m->n_upstream) hits++;
  }
  fprintf(r->out, "connections: %u (", an->nconns);
  for (int k = 0; k < 4; k++) fprintf(r->out, "%s%s %u", k ? ", " : "", sniff_role_name((sniff_role)k), role[k]);
  fprintf(r->out, ")\nconn_state:");
  for (int k = 0; k < 13; k++) if (st[k]) fprintf(r->out, " %s %u", states[k], st[k]);
  fprintf(r->out, "\nteardown:");
  for (int k = 0; k < 6; k++) if (end[k]) fprintf(r->out, " %s %u", sniff_end_name((sniff_end)k), end[k]);
  fprintf(r->out, "\nmessages: %u requests, %u responses, %u in one segment of their own; "
                  "%u proxy requests answered without upstream connection\n", req, resp, single, hits);
  fprintf(r->out, "losses: %u connections with missing bytes, %u retransmissions, %u out of order\n",
          lossy, retrans, ooo);
  fprintf(r->out, "%" PRIu64 " packets: %" PRIu64 " TCP, %" PRIu64 " other, %" PRIu64
                  " undecodable, %" PRIu64 " cut by snaplen\n",
          an->pkts, an->tcp_pkts, an->other_pkts, an->bad_pkts, an->trunc_pkts);
}

static void print_json(run *r) {
  const sniff_an *an = &r->an;
  calc_buf b;
  calc_buf_init(&b, 0);
  for (uint32_t i = 0; i < an->nconns; i++) {
    const sniff_conn *c = &an->conns[i];
    char a[64], z[64];
    fmt_addr(c, 0, a, sizeof a);
    fmt_addr(c, 1, z, sizeof z);
    calc_buf_reset(&b);
    calc_buf_printf(&b, "{\"type\":\"conn\",\"id\":%u,\"role\":\"%s\",\"orig\":", c->id,
                    sniff_role_name(c->role));
    sniff_json_str(&b, a);
    calc_buf_puts(&b, ",\"resp\":");
    sniff_json_str(&b, z);
    calc_buf_printf(&b,
                    ",\"ts_first\":%.6f,\"ts_last\":%.6f,\"conn_state\":\"%s\",\"history\":\"%s\","
                    "\"handshake\":%s,\"teardown\":\"%s\",\"teardown_segments\":%u,"
                    "\"syn_retries\":%u,\"port_reused\":%s,\"midstream\":%s",
                    (double)c->ts_first / 1e6, (double)c->ts_last / 1e6, sniff_conn_state(c),
                    c->history, c->established ? "true" : "false",
                    sniff_end_name(sniff_conn_end(c)), c->teardown_pkts, c->syn_retries,
                    c->port_reused ? "true" : "false", c->midstream ? "true" : "false");
    if (c->parent) calc_buf_printf(&b, ",\"upstream_of\":{\"conn\":%u,\"request\":%u}", c->parent, c->parent_req);
    for (int d = 0; d < 2; d++) {
      const sniff_dir *s = &c->d[d];
      calc_buf_printf(&b,
                      ",\"%s\":{\"packets\":%" PRIu64 ",\"bytes\":%" PRIu64 ",\"messages\":%u,"
                      "\"retransmissions\":%" PRIu64 ",\"overlap_bytes\":%" PRIu64
                      ",\"out_of_order\":%" PRIu64 ",\"gap_bytes\":%" PRIu64
                      ",\"snaplen_cut_bytes\":%" PRIu64 ",\"unframed\":%s}",
                      d ? "resp_dir" : "orig_dir", s->pkts, s->bytes, s->nmsgs, s->retrans_pkts,
                      s->overlap_bytes, s->ooo_pkts, s->gap_bytes, s->trunc_bytes,
                      s->desync ? "true" : "false");
    }
    calc_buf_puts(&b, "}\n");
    fwrite(b.data, 1, b.len, r->out);
  }
  for (uint32_t i = 0; i < an->nmsgs; i++) {
    const sniff_msg *m = &an->msgs[i];
    calc_buf_reset(&b);
    calc_buf_printf(&b,
                    "{\"type\":\"msg\",\"conn\":%u,\"dir\":\"%s\",\"index\":%u,\"kind\":\"%s\","
                    "\"ts_first\":%.6f,\"ts_last\":%.6f,\"size\":%u,\"header\":{\"time\":%u,"
                    "\"cache\":%s,\"steps\":%s,\"request\":%s,\"reserved\":%u,\"status\":%u,"
                    "\"cache_control\":%u},\"segments\":[",
                    m->conn, m->dir ? "resp" : "orig", m->index,
                    m->h.is_request ? "request" : "response", (double)m->ts_first / 1e6,
                    (double)m->ts_last / 1e6, m->size, m->h.time, m->h.cache ? "true" : "false",
                    m->h.steps ? "true" : "false", m->h.is_request ? "true" : "false",
                    m->h.reserved, m->h.status, m->h.cache_control);
    for (uint32_t k = 0; k < m->nseg && k < SNIFF_MSG_SEGS; k++)
      calc_buf_printf(&b, "%s%u", k ? "," : "", m->segs[k]);
    calc_buf_printf(&b, "],\"nsegments\":%u,\"shares_segment\":%s,\"complete\":%s,"
                        "\"bytes_missing\":%s,\"malformed\":%s",
                    m->nseg, m->shares_segment ? "true" : "false", m->complete ? "true" : "false",
                    m->hole ? "true" : "false", m->malformed ? "true" : "false");
    if (m->h.is_request && sniff_conn_get(an, m->conn) &&
        sniff_conn_get(an, m->conn)->role == SNIFF_ROLE_CLIENT_PROXY)
      calc_buf_printf(&b, ",\"upstream_connections\":%u", m->n_upstream);
    if (m->text) {
      calc_buf_puts(&b, m->h.is_request ? ",\"expression\":" : ",\"result\":");
      sniff_json_str(&b, m->text);
    }
    calc_buf_puts(&b, "}\n");
    fwrite(b.data, 1, b.len, r->out);
  }
  fprintf(r->out,
          "{\"type\":\"summary\",\"packets\":%" PRIu64 ",\"tcp\":%" PRIu64 ",\"other\":%" PRIu64
          ",\"undecodable\":%" PRIu64 ",\"snaplen_cut\":%" PRIu64 ",\"connections\":%u,"
          "\"messages\":%u,\"kernel_drops\":%" PRIu64 "}\n",
          an->pkts, an->tcp_pkts, an->other_pkts, an->bad_pkts, an->trunc_pkts, an->nconns,
          an->nmsgs, r->drops);
  calc_buf_free(&b);
}

static void print_trace(const sniff_an *an, FILE *out) {
  calc_buf b;
  calc_buf_init(&b, 0);
  sniff_trace(an, &b);
  if (b.len) fwrite(b.data, 1, b.len, out);
  calc_buf_free(&b);
}

enum {
  OPT_JSON = 256, OPT_TRACE, OPT_SUMMARY, OPT_STATS, OPT_DURATION, OPT_READY, OPT_GOLDEN, OPT_SERVER,
  OPT_PROXY, OPT_HELP
};
static const struct option long_opts[] = {
    {"read", required_argument, 0, 'r'},       {"interface", required_argument, 0, 'i'},
    {"ports", required_argument, 0, 'p'},      {"write", required_argument, 0, 'w'},
    {"json", no_argument, 0, OPT_JSON},        {"trace", no_argument, 0, OPT_TRACE},
    {"summary", no_argument, 0, OPT_SUMMARY},  {"stats", no_argument, 0, OPT_STATS},  {"duration", required_argument, 0, OPT_DURATION},
    {"ready-file", required_argument, 0, OPT_READY}, {"golden", required_argument, 0, OPT_GOLDEN},
    {"server-port", required_argument, 0, OPT_SERVER},
    {"proxy-port", required_argument, 0, OPT_PROXY}, {"help", no_argument, 0, 'h'},
    {0, 0, 0, 0}};

static int run_input(const input *in, run *r) {
  if (in->file) return read_file(in->file, r, in);
  return capture_live(in, r);
}

static bool lossy(const sniff_an *an) {
  for (uint32_t i = 0; i < an->nconns; i++)
    if (sniff_conn_lossy(&an->conns[i])) return true;
  return an->bad_pkts > 0 || an->oom || an->limited;
}

int main(int argc, char **argv) {
  bool verify = argc > 1 && !strcmp(argv[1], "verify");
  if (verify) {
    argv++;
    argc--;
  }
  input in;
  memset(&in, 0, sizeof in);
  sniff_opts so;
  sniff_opts_default(&so);
  out_mode mode = OUT_TIMELINE;
  const char *golden = NULL;
  bool ports_given = false;
  int ch;
  while ((ch = getopt_long(argc, argv, "r:i:p:w:h", long_opts, NULL)) != -1) {
    switch (ch) {
      case 'r': in.file = optarg; break;
      case 'i': in.iface = optarg; break;
      case 'w': in.write_file = optarg; break;
      case 'p':
        if (parse_ports(optarg, &in) < 0) {
          fprintf(stderr, "calc-sniff: -p: expected comma-separated ports, got \"%s\"\n", optarg);
          return EXIT_USAGE;
        }
        ports_given = true;
        break;
      case OPT_JSON: mode = OUT_JSON; break;
      case OPT_TRACE: mode = OUT_TRACE; break;
      case OPT_SUMMARY: mode = OUT_SUMMARY; break;
      case OPT_STATS: mode = OUT_STATS; break;
      case OPT_DURATION: {
        char *end;
        in.duration = strtod(optarg, &end);
        if (*end || in.duration <= 0) {
          fprintf(stderr, "calc-sniff: --duration: expected seconds > 0, got \"%s\"\n", optarg);
          return EXIT_USAGE;
        }
        break;
      }
      case OPT_READY: in.ready_file = optarg; break;
      case OPT_GOLDEN: golden = optarg; break;
      case OPT_SERVER:
      case OPT_PROXY:
        if (parse_port(optarg, ch == OPT_SERVER ? &so.server_port : &so.proxy_port) < 0) {
          fprintf(stderr, "calc-sniff: bad port \"%s\"\n", optarg);
          return EXIT_USAGE;
        }
        break;
      case 'h': usage(stdout); return 0;
      default: usage(stderr); return EXIT_USAGE;
    }
  }
  if (optind < argc) {
    fprintf(stderr, "calc-sniff: unexpected argument \"%s\"\n", argv[optind]);
    usage(stderr);
    return EXIT_USAGE;
  }
  if (in.file && in.iface) {
    fprintf(stderr, "calc-sniff: -r and -i exclude each other\n");
    return EXIT_USAGE;
  }
  if (!ports_given) {
    in.ports[0] = so.proxy_port;
    in.ports[1] = so.server_port;
    in.nports = 2;
  }
  if (golden && !verify) {
    fprintf(stderr, "calc-sniff: --golden belongs to `calc-sniff verify`\n");
    return EXIT_USAGE;
  }

  if (!verify) {
    run r;
    memset(&r, 0, sizeof r);
    r.out = stdout;
    r.mode = mode;
    so.decode = mode == OUT_TIMELINE || mode == OUT_JSON;
    so.notes = mode == OUT_TIMELINE;
    sniff_an_init(&r.an, &so);
    static obuf ob;
    if (mode == OUT_TIMELINE) {
      ob.f = r.out;
      r.ob = &ob;
    }
    int rc = run_input(&in, &r);
    if (r.ob) ob_flush(r.ob);
    sniff_finish(&r.an);
    if (rc < 0) {
      sniff_an_free(&r.an);
      return EXIT_USAGE;
    }
    if (mode == OUT_TIMELINE) print_summary(&r, true);
    else if (mode == OUT_SUMMARY) print_summary(&r, false);
    else if (mode == OUT_STATS) print_stats(&r);
    else if (mode == OUT_JSON) print_json(&r);
    else if (mode == OUT_TRACE) print_trace(&r.an, stdout);
    if (r.an.oom) fprintf(stderr, "calc-sniff: out of memory: analysis incomplete\n");
    if (r.an.limited)
      fprintf(stderr, "calc-sniff: more than %u connections or %u messages: analysis incomplete\n",
              SNIFF_MAX_CONNS, SNIFF_MAX_MSGS);
    if (r.live && r.drops) fprintf(stderr, "calc-sniff: warning: the kernel dropped %" PRIu64 " packets\n", r.drops);
    sniff_an_free(&r.an);
    return rc < 0 ? EXIT_USAGE : 0;
  }

  /* verify */
  if (!golden) {
    fprintf(stderr, "calc-sniff verify: --golden G.pcap is required\n");
    usage(stderr);
    return EXIT_USAGE;
  }
  if (!in.file && !in.iface) {
    fprintf(stderr, "calc-sniff verify: give -r CAPTURE or -i IFACE --duration S\n");
    return EXIT_USAGE;
  }
  if (in.iface && in.duration <= 0) {
    fprintf(stderr, "calc-sniff verify: a live verification needs --duration S\n");
    return EXIT_USAGE;
  }
  so.decode = false;
  so.notes = false;
  run g, c;
  memset(&g, 0, sizeof g);
  memset(&c, 0, sizeof c);
  g.mode = c.mode = OUT_NONE;
  g.out = c.out = stdout;
  sniff_an_init(&g.an, &so);
  sniff_an_init(&c.an, &so);
  int rc = EXIT_PASS;
  if (read_file(golden, &g, NULL) < 0 || run_input(&in, &c) < 0) {
    rc = EXIT_USAGE;
    goto out;
  }
  sniff_finish(&g.an);
  sniff_finish(&c.an);
  if (mode == OUT_TRACE) {
    printf("== golden %s\n", golden);
    print_trace(&g.an, stdout);
    printf("== capture %s\n", in.file ? in.file : in.iface);
    print_trace(&c.an, stdout);
    printf("== differences\n");
  }
  calc_buf diffs;
  calc_buf_init(&diffs, 0);
  uint32_t n = sniff_compare(&g.an, &c.an, &diffs);
  if (diffs.len) fwrite(diffs.data, 1, diffs.len, stdout);
  calc_buf_free(&diffs);
  if (lossy(&g.an)) {
    printf("INCONCLUSIVE: the golden capture misses bytes (gaps, snaplen cuts or undecodable frames)\n");
    rc = EXIT_INCONCLUSIVE;
  } else if (c.drops || lossy(&c.an)) {
    if (c.drops) printf("INCONCLUSIVE: the kernel dropped %" PRIu64 " packets\n", c.drops);
    else printf("INCONCLUSIVE: the capture misses bytes (gaps, snaplen cuts, undecodable frames or analysis limits)\n");
    rc = EXIT_INCONCLUSIVE;
  } else if (n) {
    printf("FAIL: %u difference%s\n", n, n == 1 ? "" : "s");
    rc = EXIT_FAILV;
  } else {
    printf("PASS\n");
  }
out:
  sniff_an_free(&g.an);
  sniff_an_free(&c.an);
  return rc;
}
