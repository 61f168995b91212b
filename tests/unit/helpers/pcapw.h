/* pcapw.h: a small pcap writer for tests that craft their own captures (calc-sniff).
 *
 * pcapw writes classic little-endian pcap files (microsecond stamps) with one TCP segment per
 * record over IPv4, wrapped in the link header of the chosen DLT (EN10MB, NULL, LINUX_SLL,
 * LINUX_SLL2, RAW). pw_conn drives a whole conversation: handshake, messages, teardowns. */
#ifndef PCAPW_H
#define PCAPW_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "sniff.h"

typedef struct pcapw {
  FILE *f;
  int dlt;
  uint32_t snaplen;   /* records are cut to this many bytes (0 = 262144) */
  uint64_t clock;     /* microseconds; every record advances it by 10 */
  bool vlan;          /* EN10MB: add an 802.1Q tag */
} pcapw;

/* Opens path for writing. 0 or -1. */
int pcapw_open(pcapw *w, const char *path, int dlt, uint32_t snaplen);
void pcapw_close(pcapw *w);
/* Builds the frame of one TCP/IPv4 segment into buf (returns its length, at most cap). */
size_t pcapw_frame(int dlt, bool vlan, uint8_t *buf, size_t cap, const uint8_t sip[4], uint16_t sport,
                   const uint8_t dip[4], uint16_t dport, uint32_t seq, uint32_t ack, uint8_t flags,
                   const void *payload, size_t len);
/* Writes one segment record. */
void pcapw_tcp(pcapw *w, const uint8_t sip[4], uint16_t sport, const uint8_t dip[4], uint16_t dport,
               uint32_t seq, uint32_t ack, uint8_t flags, const void *payload, size_t len);

/* A conversation: side 0 is the client (originator), 1 the server. */
typedef struct pw_conn {
  pcapw *w;
  uint8_t ip[2][4];
  uint16_t port[2];
  uint32_t isn[2];
  uint32_t next[2];   /* next sequence number each side sends */
} pw_conn;

void pw_conn_init(pw_conn *c, pcapw *w, uint16_t cport, uint16_t sport, uint32_t cisn, uint32_t sisn);
void pw_handshake(pw_conn *c);
/* Sends len bytes from side at its next sequence number (PSH|ACK), then the peer's ACK. */
void pw_send(pw_conn *c, int side, const void *data, size_t len);
/* Sends a segment at an explicit offset from the side's ISN+1 without moving next (reordering,
 * retransmissions, overlaps); pw_advance moves next afterwards. */
void pw_send_at(pw_conn *c, int side, uint32_t off, const void *data, size_t len);
void pw_advance(pw_conn *c, int side, uint32_t n);
void pw_ack(pw_conn *c, int side);
/* FIN teardown led by `side`: 3 segments (merged ACK+FIN) or 4. */
void pw_fin(pw_conn *c, int side, bool four);
void pw_rst(pw_conn *c, int side);
/* One FIN from `side` (the peer answers as the caller decides). */
void pw_fin_only(pw_conn *c, int side);
/* SYN answered by RST, `attempts` times with the same ISN. */
void pw_refused(pw_conn *c, int attempts);

/* A calculator message of total length `size` into buf (payload zero bytes). */
void pw_msg(uint8_t *buf, uint16_t size, bool request, uint16_t status);
/* Request + response over one fresh connection with a 3-segment client-led teardown. */
void pw_exchange(pcapw *w, uint16_t cport, uint16_t sport, uint16_t req, uint16_t resp);

/* Reads a capture with libpcap into an analyzer (initialised here with o) and finishes it.
 * 0, or -1 if the file cannot be read. */
int pcapw_analyze(const char *path, sniff_an *an, const sniff_opts *o);
/* A temporary file name unique to this process and tag. */
const char *pcapw_tmp(const char *tag);

#endif
