/* pcapw.c: see pcapw.h. */
#include "pcapw.h"

#include <pcap/pcap.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void le32(FILE *f, uint32_t v) {
  uint8_t b[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
  fwrite(b, 1, 4, f);
}
static void le16(FILE *f, uint16_t v) {
  uint8_t b[2] = {(uint8_t)v, (uint8_t)(v >> 8)};
  fwrite(b, 1, 2, f);
}
static void be16p(uint8_t *p, uint16_t v) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }
static void be32p(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v;
}

int pcapw_open(pcapw *w, const char *path, int dlt, uint32_t snaplen) {
  memset(w, 0, sizeof *w);
  w->f = fopen(path, "wb");
  if (!w->f) return -1;
  w->dlt = dlt;
  w->snaplen = snaplen ? snaplen : 262144;
  w->clock = 1670340000ull * 1000000ull;
  le32(w->f, 0xa1b2c3d4u);
  le16(w->f, 2);
  le16(w->f, 4);
  le32(w->f, 0);
  le32(w->f, 0);
  le32(w->f, w->snaplen);
  le32(w->f, (uint32_t)dlt);
  return 0;
}

void pcapw_close(pcapw *w) {
  if (w->f) fclose(w->f);
  w->f = NULL;
}

size_t pcapw_frame(int dlt, bool vlan, uint8_t *buf, size_t cap, const uint8_t sip[4], uint16_t sport,
                   const uint8_t dip[4], uint16_t dport, uint32_t seq, uint32_t ack, uint8_t flags,
                   const void *payload, size_t len) {
  size_t l = 0;
  uint8_t *p = buf;
  memset(buf, 0, cap < 64 ? cap : 64);
  switch (dlt) {
    case SNIFF_DLT_EN10MB:
      l = 12;
      if (vlan) { be16p(p + l, 0x8100); be16p(p + l + 2, 42); l += 4; }
      be16p(p + l, 0x0800);
      l += 2;
      break;
    case SNIFF_DLT_NULL:
      if (vlan) be32p(p, 2); else { p[0] = 2; p[1] = p[2] = p[3] = 0; }
      l = 4;
      break;
    case SNIFF_DLT_LINUX_SLL:
      be16p(p, 0); be16p(p + 2, 772); be16p(p + 4, 6); be16p(p + 14, 0x0800);
      l = 16;
      break;
    case SNIFF_DLT_LINUX_SLL2:
      be16p(p, 0x0800); be32p(p + 4, 1); be16p(p + 8, 772); p[10] = 0; p[11] = 6;
      l = 20;
      break;
    default:
      l = 0;
      break;
  }
  size_t tot = 40 + len;
  if (l + tot > cap) return 0;
  uint8_t *ip = p + l;
  memset(ip, 0, 40);
  ip[0] = 0x45;
  be16p(ip + 2, (uint16_t)tot);
  ip[8] = 64;
  ip[9] = 6;
  memcpy(ip + 12, sip, 4);
  memcpy(ip + 16, dip, 4);
  uint8_t *th = ip + 20;
  be16p(th, sport);
  be16p(th + 2, dport);
  be32p(th + 4, seq);
  be32p(th + 8, ack);
  th[12] = 5 << 4;
  th[13] = flags;
  be16p(th + 14, 65535);
  if (len) memcpy(th + 20, payload, len);
  return l + tot;
}

void pcapw_tcp(pcapw *w, const uint8_t sip[4], uint16_t sport, const uint8_t dip[4], uint16_t dport,
               uint32_t seq, uint32_t ack, uint8_t flags, const void *payload, size_t len) {
  static uint8_t buf[70000];
  size_t n = pcapw_frame(w->dlt, w->vlan, buf, sizeof buf, sip, sport, dip, dport, seq, ack, flags,
                         payload, len);
  w->clock += 10;
  uint32_t incl = n < w->snaplen ? (uint32_t)n : w->snaplen;
  le32(w->f, (uint32_t)(w->clock / 1000000u));
  le32(w->f, (uint32_t)(w->clock % 1000000u));
  le32(w->f, incl);
  le32(w->f, (uint32_t)n);
  fwrite(buf, 1, incl, w->f);
}

void pw_conn_init(pw_conn *c, pcapw *w, uint16_t cport, uint16_t sport, uint32_t cisn, uint32_t sisn) {
  memset(c, 0, sizeof *c);
  c->w = w;
  static const uint8_t lo[4] = {127, 0, 0, 1};
  memcpy(c->ip[0], lo, 4);
  memcpy(c->ip[1], lo, 4);
  c->port[0] = cport;
  c->port[1] = sport;
  c->isn[0] = cisn;
  c->isn[1] = sisn;
  c->next[0] = cisn + 1;
  c->next[1] = sisn + 1;
}

static void seg(pw_conn *c, int side, uint32_t seq, uint32_t ack, uint8_t flags, const void *d, size_t n) {
  pcapw_tcp(c->w, c->ip[side], c->port[side], c->ip[!side], c->port[!side], seq, ack, flags, d, n);
}

void pw_handshake(pw_conn *c) {
  seg(c, 0, c->isn[0], 0, SNIFF_TH_SYN, NULL, 0);
  seg(c, 1, c->isn[1], c->isn[0] + 1, SNIFF_TH_SYN | SNIFF_TH_ACK, NULL, 0);
  seg(c, 0, c->next[0], c->next[1], SNIFF_TH_ACK, NULL, 0);
}

void pw_ack(pw_conn *c, int side) { seg(c, side, c->next[side], c->next[!side], SNIFF_TH_ACK, NULL, 0); }

void pw_send(pw_conn *c, int side, const void *data, size_t len) {
  seg(c, side, c->next[side], c->next[!side], SNIFF_TH_PSH | SNIFF_TH_ACK, data, len);
  c->next[side] += (uint32_t)len;
  pw_ack(c, !side);
}

void pw_send_at(pw_conn *c, int side, uint32_t off, const void *data, size_t len) {
  seg(c, side, c->isn[side] + 1 + off, c->next[!side], SNIFF_TH_PSH | SNIFF_TH_ACK, data, len);
}

void pw_advance(pw_conn *c, int side, uint32_t n) { c->next[side] += n; }

void pw_fin(pw_conn *c, int side, bool four) {
  seg(c, side, c->next[side], c->next[!side], SNIFF_TH_FIN | SNIFF_TH_ACK, NULL, 0);
  c->next[side]++;
  if (four) pw_ack(c, !side);
  seg(c, !side, c->next[!side], c->next[side], SNIFF_TH_FIN | SNIFF_TH_ACK, NULL, 0);
  c->next[!side]++;
  pw_ack(c, side);
}

void pw_fin_only(pw_conn *c, int side) {
  seg(c, side, c->next[side], c->next[!side], SNIFF_TH_FIN | SNIFF_TH_ACK, NULL, 0);
  c->next[side]++;
}

void pw_rst(pw_conn *c, int side) {
  seg(c, side, c->next[side], c->next[!side], SNIFF_TH_RST | SNIFF_TH_ACK, NULL, 0);
}

void pw_refused(pw_conn *c, int attempts) {
  for (int i = 0; i < attempts; i++) {
    seg(c, 0, c->isn[0], 0, SNIFF_TH_SYN, NULL, 0);
    seg(c, 1, 0, c->isn[0] + 1, SNIFF_TH_RST | SNIFF_TH_ACK, NULL, 0);
  }
}

void pw_msg(uint8_t *buf, uint16_t size, bool request, uint16_t status) {
  memset(buf, 0, size);
  be32p(buf, 0x638f6089u);
  be16p(buf + 4, size);
  be16p(buf + 6, (uint16_t)(request ? 0x1c00 : (0x1800 | status)));
  be16p(buf + 8, 0xffff);
}

void pw_exchange(pcapw *w, uint16_t cport, uint16_t sport, uint16_t req, uint16_t resp) {
  static uint8_t m[65536];
  pw_conn c;
  pw_conn_init(&c, w, cport, sport, 1000u * cport, 7u * cport);
  pw_handshake(&c);
  pw_msg(m, req, true, 0);
  pw_send(&c, 0, m, req);
  pw_msg(m, resp, false, 200);
  pw_send(&c, 1, m, resp);
  pw_fin(&c, 0, false);
}

int pcapw_analyze(const char *path, sniff_an *an, const sniff_opts *o) {
  char err[PCAP_ERRBUF_SIZE];
  sniff_an_init(an, o);
  pcap_t *p = pcap_open_offline(path, err);
  if (!p) return -1;
  int dlt = pcap_datalink(p);
  struct pcap_pkthdr *h;
  const u_char *b;
  int rc;
  while ((rc = pcap_next_ex(p, &h, &b)) == 1)
    sniff_feed_frame(an, dlt, b, h->caplen, (uint64_t)h->ts.tv_sec * 1000000u + (uint64_t)h->ts.tv_usec,
                     NULL);
  pcap_close(p);
  sniff_finish(an);
  return rc == PCAP_ERROR_BREAK ? 0 : -1;
}

const char *pcapw_tmp(const char *tag) {
  static char buf[8][256];
  static int k;
  char *s = buf[k++ & 7];
  const char *dir = getenv("TMPDIR");
  snprintf(s, 256, "%s/pcapw-%ld-%s.pcap", dir ? dir : "/tmp", (long)getpid(), tag);
  return s;
}
