/* sniff_pkt.c: link layer, IPv4/IPv6 and TCP headers (sans-I/O).
 *
 * Every byte of the frame is read through rd8/rd16/rd32 below, which check the offset against
 * the current end (tcpdump's GET_BE_U_2 idea, style.md "Bounds-checked accessors only").
 * After the IP header the end is narrowed to the IP total length so Ethernet padding never
 * reaches reassembly, and a snaplen cut is reported as payload_cap < payload_len. */
#include "sniff.h"

#include <string.h>

typedef struct rd {
  const uint8_t *b;
  size_t end;   /* readable bytes: b[0, end) */
} rd;

/* Each returns false (and leaves *v alone) when off+size would pass end. */
static bool rd8(const rd *r, size_t off, uint8_t *v) {
  if (off >= r->end) return false;
  *v = r->b[off];
  return true;
}
static bool rd16(const rd *r, size_t off, uint16_t *v) {
  if (off > r->end || 2 > r->end - off) return false;
  *v = (uint16_t)((unsigned)r->b[off] << 8 | r->b[off + 1]);
  return true;
}
static bool rd16le(const rd *r, size_t off, uint16_t *v) {
  if (off > r->end || 2 > r->end - off) return false;
  *v = (uint16_t)((unsigned)r->b[off + 1] << 8 | r->b[off]);
  return true;
}
static bool rd32(const rd *r, size_t off, uint32_t *v) {
  if (off > r->end || 4 > r->end - off) return false;
  const uint8_t *q = r->b + off;
  *v = (uint32_t)q[0] << 24 | (uint32_t)q[1] << 16 | (uint32_t)q[2] << 8 | q[3];
  return true;
}
static bool rdcopy(const rd *r, size_t off, void *dst, size_t n) {
  if (off > r->end || n > r->end - off) return false;
  memcpy(dst, r->b + off, n);
  return true;
}

#define ETH_IPV4 0x0800
#define ETH_IPV6 0x86dd
#define ETH_VLAN 0x8100
#define ETH_QINQ 0x88a8
#define ETH_QINQ_OLD 0x9100
/* VLAN tags accepted in a row (802.1Q in 802.1ad is 2; a few more cost nothing). */
#define MAX_VLAN_TAGS 4
/* IPv6 extension headers walked before giving up. */
#define MAX_IPV6_EXT 8

bool sniff_dlt_supported(int dlt) {
  switch (dlt) {
    case SNIFF_DLT_NULL: case SNIFF_DLT_EN10MB: case SNIFF_DLT_RAW_A: case SNIFF_DLT_RAW_B:
    case SNIFF_DLT_RAW: case SNIFF_DLT_LOOP: case SNIFF_DLT_LINUX_SLL: case SNIFF_DLT_IPV4:
    case SNIFF_DLT_IPV6: case SNIFF_DLT_LINUX_SLL2:
      return true;
    default:
      return false;
  }
}

const char *sniff_dlt_name(int dlt) {
  switch (dlt) {
    case SNIFF_DLT_NULL: return "NULL";
    case SNIFF_DLT_EN10MB: return "EN10MB";
    case SNIFF_DLT_RAW_A: case SNIFF_DLT_RAW_B: case SNIFF_DLT_RAW: return "RAW";
    case SNIFF_DLT_LOOP: return "LOOP";
    case SNIFF_DLT_LINUX_SLL: return "LINUX_SLL";
    case SNIFF_DLT_IPV4: return "IPV4";
    case SNIFF_DLT_IPV6: return "IPV6";
    case SNIFF_DLT_LINUX_SLL2: return "LINUX_SLL2";
    default: return "unsupported";
  }
}

/* BSD loopback address families: AF_INET is 2 everywhere; AF_INET6 is 10 (Linux), 23
 * (Windows), 24 (NetBSD/OpenBSD), 28 (FreeBSD), 30 (macOS). */
static int af_to_version(uint32_t af) {
  switch (af) {
    case 2: return 4;
    case 10: case 23: case 24: case 28: case 30: return 6;
    default: return 0;
  }
}

/* A frame that cannot be decoded: err says whether it ended early or is malformed. */
static calc_err fail(const char **why, const char *w, calc_err err) {
  if (why) *why = w;
  return err;
}
/* A well-formed frame without a TCP segment (p->tcp stays false). */
static calc_err skip(const char **why, const char *w) {
  if (why) *why = w;
  return CALC_OK;
}

static calc_err dec_tcp(rd r, size_t off, size_t declared_end, sniff_pkt *p,
                                const char **why) {
  uint16_t v16;
  uint8_t v8;
  if (!rd16(&r, off, &p->sport) || !rd16(&r, off + 2, &p->dport) ||
      !rd32(&r, off + 4, &p->seq) || !rd32(&r, off + 8, &p->ack) || !rd8(&r, off + 12, &v8) ||
      !rd8(&r, off + 13, &p->flags) || !rd16(&r, off + 14, &v16))
    return fail(why, "truncated TCP header", CALC_ERR_TRUNCATED);
  p->win = v16;
  size_t thl = (size_t)(v8 >> 4) * 4;
  if (thl < 20) return fail(why, "TCP header length under 20", CALC_ERR_INVALID);
  if (off + thl > declared_end) return fail(why, "TCP header past IP length", CALC_ERR_INVALID);
  if (off + thl > r.end) return fail(why, "truncated TCP options", CALC_ERR_TRUNCATED);
  size_t data = off + thl;
  p->payload = r.b + data;
  p->payload_len = declared_end - data;
  p->payload_cap = r.end > data ? (r.end < declared_end ? r.end : declared_end) - data : 0;
  p->tcp = true;
  return CALC_OK;
}

static calc_err dec_ipv4(rd r, size_t off, sniff_pkt *p, const char **why) {
  uint8_t vihl, proto;
  uint16_t tot, frag;
  if (!rd8(&r, off, &vihl)) return fail(why, "truncated IPv4 header", CALC_ERR_TRUNCATED);
  if (vihl >> 4 != 4) return fail(why, "IP version is not 4", CALC_ERR_INVALID);
  size_t ihl = (size_t)(vihl & 15) * 4;
  if (ihl < 20) return fail(why, "IPv4 header length under 20", CALC_ERR_INVALID);
  if (!rd16(&r, off + 2, &tot) || !rd16(&r, off + 6, &frag) || !rd8(&r, off + 9, &proto) ||
      !rdcopy(&r, off + 12, p->src, 4) || !rdcopy(&r, off + 16, p->dst, 4) || off + ihl > r.end)
    return fail(why, "truncated IPv4 header", CALC_ERR_TRUNCATED);
  if (tot < ihl) return fail(why, "IPv4 total length under header length", CALC_ERR_INVALID);
  memset(p->src + 4, 0, 12);
  memset(p->dst + 4, 0, 12);
  p->af = 4;
  if (frag & 0x3fff) return skip(why, "IPv4 fragment");
  if (proto != 6) return skip(why, "not TCP");
  size_t declared_end = off + tot;
  /* Narrow to the IP datagram: link padding is not TCP payload. */
  if (r.end > declared_end) r.end = declared_end;
  /* TSO on capture can report total length 0; take what was captured. */
  if (tot == 0) declared_end = r.end;
  return dec_tcp(r, off + ihl, declared_end, p, why);
}

static calc_err dec_ipv6(rd r, size_t off, sniff_pkt *p, const char **why) {
  uint8_t v, nh;
  uint16_t plen;
  if (!rd8(&r, off, &v) || !rd16(&r, off + 4, &plen) || !rd8(&r, off + 6, &nh) ||
      !rdcopy(&r, off + 8, p->src, 16) || !rdcopy(&r, off + 24, p->dst, 16))
    return fail(why, "truncated IPv6 header", CALC_ERR_TRUNCATED);
  if (v >> 4 != 6) return fail(why, "IP version is not 6", CALC_ERR_INVALID);
  p->af = 6;
  size_t declared_end = off + 40 + plen;
  if (r.end > declared_end) r.end = declared_end;
  size_t h = off + 40;
  for (int i = 0; i < MAX_IPV6_EXT; i++) {
    if (nh == 6) return dec_tcp(r, h, declared_end, p, why);
    if (nh == 44) return skip(why, "IPv6 fragment");
    if (nh != 0 && nh != 43 && nh != 60) return skip(why, "not TCP");
    uint8_t len8;
    if (!rd8(&r, h, &nh) || !rd8(&r, h + 1, &len8))
      return fail(why, "truncated IPv6 extension header", CALC_ERR_TRUNCATED);
    h += ((size_t)len8 + 1) * 8;
    if (h > declared_end) return fail(why, "IPv6 extension past payload", CALC_ERR_INVALID);
  }
  return skip(why, "too many IPv6 extension headers");
}

static calc_err dec_ip_by_version(rd r, size_t off, sniff_pkt *p, const char **why) {
  uint8_t v;
  if (!rd8(&r, off, &v)) return fail(why, "empty IP packet", CALC_ERR_TRUNCATED);
  if (v >> 4 == 4) return dec_ipv4(r, off, p, why);
  if (v >> 4 == 6) return dec_ipv6(r, off, p, why);
  return fail(why, "unknown IP version", CALC_ERR_INVALID);
}

static calc_err dec_ethertype(rd r, size_t off, uint16_t et, sniff_pkt *p,
                                      const char **why) {
  if (et == ETH_IPV4) return dec_ipv4(r, off, p, why);
  if (et == ETH_IPV6) return dec_ipv6(r, off, p, why);
  return skip(why, "not IP");
}

static inline uint16_t be16(const uint8_t *q) { return (uint16_t)((unsigned)q[0] << 8 | q[1]); }
static inline uint32_t be32(const uint8_t *q) {
  return (uint32_t)q[0] << 24 | (uint32_t)q[1] << 16 | (uint32_t)q[2] << 8 | q[3];
}

/* The common frame, Ethernet (no VLAN) + IPv4 without options, not a fragment + TCP, decoded
 * with one bounds check for all its header bytes instead of one per field. Returns false
 * (p untouched) for anything else, which then takes the general path below; the result is
 * the same either way. */
static inline bool fast_en10mb_ipv4_tcp(const uint8_t *b, size_t caplen, sniff_pkt *p) {
  enum { IP = 14, TCP = 14 + 20 };
  if (caplen < TCP + 20 || b[12] != 0x08 || b[13] != 0x00 || b[IP] != 0x45 || b[IP + 9] != 6 ||
      (be16(b + IP + 6) & 0x3fff))
    return false;
  size_t tot = be16(b + IP + 2);
  size_t thl = (size_t)(b[TCP + 12] >> 4) * 4;
  size_t declared_end = IP + tot, end = caplen < declared_end ? caplen : declared_end;
  /* tot 0 (TSO), short totals, TCP header lengths under 20 or past the data: general path */
  if (tot < 40 || thl < 20 || TCP + thl > end) return false;
  memset(p, 0, sizeof *p);
  memcpy(p->src, b + IP + 12, 4);
  memcpy(p->dst, b + IP + 16, 4);
  p->tcp = true;
  p->af = 4;
  p->sport = be16(b + TCP);
  p->dport = be16(b + TCP + 2);
  p->seq = be32(b + TCP + 4);
  p->ack = be32(b + TCP + 8);
  p->flags = b[TCP + 13];
  p->win = be16(b + TCP + 14);
  size_t data = TCP + thl;
  p->payload = b + data;
  p->payload_len = declared_end - data;
  p->payload_cap = end - data;
  return true;
}

/* flatten: the accessors and layers inline into one function (one call per packet). */
__attribute__((flatten)) calc_err sniff_decode(int dlt, const uint8_t *buf, size_t caplen,
                                                       sniff_pkt *p, const char **why) {
  rd r = {buf, caplen};
  uint16_t et;
  uint32_t af;
  if (why) *why = NULL;
  if (dlt == SNIFF_DLT_EN10MB && fast_en10mb_ipv4_tcp(buf, caplen, p)) return CALC_OK;
  memset(p, 0, sizeof *p);
  switch (dlt) {
    case SNIFF_DLT_EN10MB: {
      size_t off = 12;
      if (!rd16(&r, off, &et)) return fail(why, "truncated Ethernet header", CALC_ERR_TRUNCATED);
      for (int i = 0; i < MAX_VLAN_TAGS && (et == ETH_VLAN || et == ETH_QINQ || et == ETH_QINQ_OLD); i++) {
        off += 4;
        if (!rd16(&r, off, &et)) return fail(why, "truncated VLAN tag", CALC_ERR_TRUNCATED);
      }
      return dec_ethertype(r, off + 2, et, p, why);
    }
    case SNIFF_DLT_NULL: {
      /* The address family is in the capturing host's byte order, which the file does not
       * say: accept either order, and fall back on the IP version nibble. */
      uint16_t lo, hi;
      if (!rd16le(&r, 0, &lo) || !rd16le(&r, 2, &hi)) return fail(why, "truncated NULL header", CALC_ERR_TRUNCATED);
      uint32_t le = (uint32_t)hi << 16 | lo;
      uint32_t be = (uint32_t)(le >> 24) | ((le >> 8) & 0xff00u) | ((le << 8) & 0xff0000u) | (le << 24);
      int v = af_to_version(le);
      if (!v) v = af_to_version(be);
      if (!v) return skip(why, "NULL: address family is not IP");
      return v == 4 ? dec_ipv4(r, 4, p, why) : dec_ipv6(r, 4, p, why);
    }
    case SNIFF_DLT_LOOP: {
      if (!rd32(&r, 0, &af)) return fail(why, "truncated LOOP header", CALC_ERR_TRUNCATED);
      int v = af_to_version(af);
      if (!v) return skip(why, "LOOP: address family is not IP");
      return v == 4 ? dec_ipv4(r, 4, p, why) : dec_ipv6(r, 4, p, why);
    }
    case SNIFF_DLT_LINUX_SLL:
      if (!rd16(&r, 14, &et)) return fail(why, "truncated SLL header", CALC_ERR_TRUNCATED);
      return dec_ethertype(r, 16, et, p, why);
    case SNIFF_DLT_LINUX_SLL2:
      if (!rd16(&r, 0, &et) || caplen < 20) return fail(why, "truncated SLL2 header", CALC_ERR_TRUNCATED);
      return dec_ethertype(r, 20, et, p, why);
    case SNIFF_DLT_RAW: case SNIFF_DLT_RAW_A: case SNIFF_DLT_RAW_B:
      return dec_ip_by_version(r, 0, p, why);
    case SNIFF_DLT_IPV4:
      return dec_ipv4(r, 0, p, why);
    case SNIFF_DLT_IPV6:
      return dec_ipv6(r, 0, p, why);
    default:
      return fail(why, "unsupported link type", CALC_ERR_INVALID);
  }
}
