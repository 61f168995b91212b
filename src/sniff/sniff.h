/* sniff.h: calc-sniff's library: packet decoding, TCP reassembly, calculator messages, roles,
 * and the reduced behaviour `calc-sniff verify` judges a run by (docs/scenarios.md).
 *
 * Layers, one file each, one way through (no file uses one that uses it):
 *   sniff_pkt.c     link (EN10MB+VLAN, NULL, LOOP, LINUX_SLL, LINUX_SLL2, RAW, IPV4, IPV6),
 *                   IPv4/IPv6 and TCP headers, read only through bounds-checked accessors
 *   sniff_tcp.c     connections keyed by 4-tuple + ISN, per-direction reassembly in sequence
 *                   space, roles (sniff_feed, sniff_finish)
 *   sniff_framer.c  calculator messages framed from each direction's in-order bytes
 *   sniff_text.c    payloads decoded to text through a cache by content
 *   sniff_conn.c    the analyzer's lifetime; teardown classes, Zeek conn_state, names
 *   sniff_reduce.c  an analysis indexed for the behaviour docs/scenarios.md judges
 *   sniff_trace.c   that behaviour as the --trace text
 *   sniff_report.c  the report of a verification: checks, parties, items (sniff_report)
 *   sniff_pair.c    which capture connection is compared with which golden one
 *   sniff_verify.c  the comparison with a golden analysis, check by check
 *   sniff_array.c   the growable record arrays
 * What reassembly and framing see is reported as events (sniff_event) to a callback, in order;
 * the words for them are the program's.
 *
 * Everything here is sans-I/O: bytes and time stamps in, structs and events out. The program
 * (src/bin/calc-sniff) owns libpcap handles, file reading and printing. */
#ifndef CALC_SNIFF_H
#define CALC_SNIFF_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "calc/buf.h"
#include "calc/err.h"
#include "calc/wire.h"
#include "sniff_array.h"

/* ---- link types (LINKTYPE_ values as stored in files; pcap_datalink() returns DLT_ values,
 * which equal these except RAW, which is DLT 12 or 14 on some systems and 101 in files) ---- */
#define SNIFF_DLT_NULL 0
#define SNIFF_DLT_EN10MB 1
#define SNIFF_DLT_RAW_A 12
#define SNIFF_DLT_RAW_B 14
#define SNIFF_DLT_RAW 101
#define SNIFF_DLT_LOOP 108
#define SNIFF_DLT_LINUX_SLL 113
#define SNIFF_DLT_IPV4 228
#define SNIFF_DLT_IPV6 229
#define SNIFF_DLT_LINUX_SLL2 276

#define SNIFF_TH_FIN 0x01
#define SNIFF_TH_SYN 0x02
#define SNIFF_TH_RST 0x04
#define SNIFF_TH_PSH 0x08
#define SNIFF_TH_ACK 0x10
#define SNIFF_TH_URG 0x20
#define SNIFF_TH_ECE 0x40
#define SNIFF_TH_CWR 0x80

/* One decoded TCP segment. Pointers point into the caller's packet buffer. */
typedef struct sniff_pkt {
  bool tcp;                  /* the frame carried a TCP segment (else only af may be set) */
  uint64_t ts_usec;          /* capture time, microseconds since the epoch */
  int af;                    /* 4 or 6 */
  uint8_t src[16], dst[16];  /* IPv4 addresses use the first 4 bytes, rest zero */
  uint16_t sport, dport;
  uint32_t seq, ack;
  uint8_t flags;
  uint16_t win;
  const uint8_t *payload;
  size_t payload_cap;        /* payload bytes present in the capture */
  size_t payload_len;        /* payload bytes the IP header declares (> cap: snaplen cut) */
} sniff_pkt;

/* Decodes one captured frame of link type `dlt` (caplen bytes present in buf).
 * Never reads outside buf[0, caplen). Returns
 *   CALC_OK             a well-formed frame: p->tcp says whether *p is the TCP segment it
 *                       carries, or it carries none (ARP, UDP, a non-first fragment...)
 *   CALC_ERR_TRUNCATED  the frame ends inside a header
 *   CALC_ERR_INVALID    a header is malformed (bad version or length), or dlt is unsupported
 * `why` (may be NULL) gets a static reason for the frames that carry no segment. */
calc_err sniff_decode(int dlt, const uint8_t *buf, size_t caplen, sniff_pkt *p, const char **why);
/* True if calc-sniff knows how to decode link type dlt. */
bool sniff_dlt_supported(int dlt);
const char *sniff_dlt_name(int dlt);

/* ---- analysis ---- */
typedef enum {
  SNIFF_ROLE_OTHER = 0,     /* neither port is the server's or the proxy's */
  SNIFF_ROLE_CLIENT_SERVER, /* to the server port, not caused by a proxy request */
  SNIFF_ROLE_CLIENT_PROXY,  /* to the proxy port */
  SNIFF_ROLE_PROXY_SERVER,  /* to the server port while the proxy held an unanswered request */
} sniff_role;
const char *sniff_role_name(sniff_role r);

typedef enum {
  SNIFF_END_OPEN = 0,   /* no FIN or RST seen */
  SNIFF_END_FIN_CLIENT, /* the originator's FIN came first */
  SNIFF_END_FIN_SERVER, /* the responder's FIN came first */
  SNIFF_END_RST_CLIENT, /* the first RST came from the originator (after the handshake) */
  SNIFF_END_RST_SERVER, /* the first RST came from the responder (after the handshake) */
  SNIFF_END_REFUSED,    /* the originator's SYN was answered by RST */
} sniff_end;
const char *sniff_end_name(sniff_end e);

/* Segment sizes kept per message: the first SNIFF_MSG_SEGS, and the total count. */
#define SNIFF_MSG_SEGS 8
/* Out-of-order segments buffered per direction before the earliest hole is declared a gap. */
#define SNIFF_OOO_MAX 256
/* Out-of-order bytes buffered per direction, same purpose. */
#define SNIFF_OOO_BYTES (4u << 20)
/* A segment further ahead of the next expected byte than this is garbage, not reordering. */
#define SNIFF_SEQ_WINDOW (1u << 28)
/* Connections and messages kept per analysis: a bound on memory for endless live captures
 * (about 2 GiB at the limits); past them new connections/messages are not tracked and the
 * analysis is incomplete (an->incomplete is CALC_ERR_LIMIT), which makes a verdict inconclusive. */
#define SNIFF_MAX_CONNS (4u << 20)
#define SNIFF_MAX_MSGS (8u << 20)
/* Expression/result text kept per message (JSON carries it; notes abbreviate it). */
#define SNIFF_TEXT_MAX 4096
/* Bytes of refused payloads kept per analysis (sniff_msg.refused): refused payloads are rare
 * in real traffic, and this bounds what a capture made only of them costs. */
#define SNIFF_REFUSED_MAX (16u << 20)

typedef struct sniff_msg {
  uint32_t conn;            /* connection id (1-based) */
  uint8_t dir;              /* 0 originator -> responder, 1 back */
  uint32_t index;           /* 1-based per direction */
  uint64_t ts_first, ts_last; /* first and last byte's segment */
  uint64_t pkt_first, pkt_last; /* ... and their frame numbers (an->pkts when fed) */
  calc_header h;
  uint32_t size;            /* total length from the header */
  uint32_t nseg;            /* segments that carried bytes of it */
  uint32_t segs[SNIFF_MSG_SEGS];
  bool shares_segment;      /* a segment also carried bytes of another message */
  bool complete;            /* all bytes arrived (possibly with holes) */
  bool hole;                /* some bytes were missing (gap or snaplen) */
  uint8_t err;              /* calc_err: why it cannot be framed or decoded (CALC_OK: it can):
                             * CALC_ERR_FRAMING a total length under 12, CALC_ERR_TRUNCATED bytes
                             * missing inside its header, the decoder's CALC_ERR_INVALID or
                             * CALC_ERR_LIMIT a payload that is no request or response */
  char *text;               /* request: expression; response: result or error (may be NULL);
                             * owned by the analysis, shared by messages with the same payload */
  const uint8_t *refused;   /* the payload when the decoder refused it (m->err its error), else
                             * NULL: what a reader needs to tell whether another decoder would
                             * take it; kept by the analysis like text, up to SNIFF_REFUSED_MAX
                             * bytes of such payloads per analysis (NULL past them) */
  uint32_t refused_len;
  /* requests on a client->proxy connection: upstream connections it caused */
  uint32_t n_upstream;
  uint32_t first_upstream;  /* connection id */
} sniff_msg;

typedef struct sniff_ooo { uint32_t seq, len, cap, off; } sniff_ooo;
/* Kept out of sniff_dir so that a connection that never reorders costs no memory for it. */
typedef struct sniff_reorder {
  sniff_ooo seg[SNIFF_OOO_MAX];
  calc_buf buf;                         /* the segments' bytes */
} sniff_reorder;

typedef struct sniff_dir {
  bool syn, fin, rst, have_next;
  uint32_t isn, next, fin_seq;
  uint64_t syn_ts, fin_ts, rst_ts;
  uint64_t syn_pkt, fin_pkt, rst_pkt;   /* frame numbers of the first SYN, FIN and RST */
  uint64_t pkts, bytes;                 /* bytes: reassembled stream bytes (holes included) */
  uint64_t retrans_pkts, overlap_bytes, ooo_pkts, gap_bytes, trunc_bytes, bogus_pkts;
  struct sniff_reorder *ro;             /* out-of-order segments, allocated on first need */
  uint32_t nooo;
  /* framer */
  uint8_t hdr[CALC_HEADER_SIZE];
  uint32_t hdr_have, msg_have, msg_total;
  bool desync;
  int32_t cur_msg;                      /* index into an->msgs, -1 none */
  calc_buf *payload;                    /* payload being decoded, allocated on first need */
  uint32_t nmsgs;
  uint16_t hist;                        /* history letters seen (bit per letter) */
} sniff_dir;

typedef struct sniff_conn {
  uint32_t id;
  int af;
  uint8_t addr[2][16];
  uint16_t port[2];         /* [0] originator (client), [1] responder */
  sniff_dir d[2];
  uint64_t ts_first, ts_last;
  uint64_t pkt_first, pkt_last;  /* frame numbers of the first and last packet */
  bool syn, synack, established, midstream, port_reused;
  uint32_t syn_retries;
  int first_fin;            /* -1, 0, 1 */
  int first_rst;
  uint32_t teardown_pkts;   /* segments from the first FIN on */
  sniff_role role;
  uint32_t parent;          /* proxy->server: downstream connection id */
  uint32_t parent_req;      /* ... and its request index */
  int32_t pending_req;      /* client->proxy: msg index of a request not yet answered, -1 */
  int32_t last_req;         /* client->proxy: msg index of the request being answered, -1 */
  uint32_t early_upstreams; /* client->proxy: upstream connections opened before its first
                             * request (a proxy that connects as soon as its client does) */
  uint32_t early_first;     /* ... the first of them (connection id) */
  char history[24];         /* 9 letters per direction at most */
  uint32_t hist_len;
} sniff_conn;

/* ---- events: what the analysis saw, as it sees it ----
 * Reassembly and framing report what happened to the segment being fed (reordered, a gap, a
 * message completed, the first FIN...) as events, in the order they happen, to the callback of
 * sniff_opts. The analysis keeps its results in its structs either way; events are for a
 * printer that wants to say, per packet, what that packet did (calc-sniff's timeline notes).
 * An event's pointers are valid during the callback only. */
typedef enum sniff_ev_kind {
  SNIFF_EV_SYN_RETRY,       /* c's SYN again, same ISN; n: retries so far */
  SNIFF_EV_PORT_REUSED,     /* c opened on the 4-tuple of an earlier connection */
  SNIFF_EV_MIDSTREAM,       /* c picked up without its SYN */
  SNIFF_EV_UPSTREAM,        /* c (proxy->server) caused by request m of a client->proxy conn */
  SNIFF_EV_EARLY_UPSTREAM,  /* c (proxy->server) opened before the first request of the
                             * client->proxy connection n, whose upstream it is */
  SNIFF_EV_HANDSHAKE,       /* c's 3-way handshake completed */
  SNIFF_EV_RETRANSMISSION,  /* the segment's bytes were all delivered already */
  SNIFF_EV_RETRANSMISSION_OOO, /* ... already buffered out of order */
  SNIFF_EV_OVERLAP,         /* n bytes at its start were delivered already */
  SNIFF_EV_OUT_OF_WINDOW,   /* too far ahead to be reordering: ignored */
  SNIFF_EV_OUT_OF_ORDER,    /* n bytes ahead of the next expected byte: buffered */
  SNIFF_EV_SNAPLEN_CUT,     /* n payload bytes not in the capture (sizes known, bytes not) */
  SNIFF_EV_GAP,             /* n bytes of direction dir declared lost */
  SNIFF_EV_UNFRAMED,        /* bytes missing inside a header: direction dir no longer framed */
  SNIFF_EV_MESSAGE,         /* message m complete (or never completing: m->err) */
  SNIFF_EV_PROXY_ANSWER,    /* the proxy answers request m (a response on c, dir 1) */
  SNIFF_EV_FIN,             /* direction dir's first FIN; n: 1 if the connection's first */
  SNIFF_EV_RST,             /* the connection's first RST, from dir; n: 1 if it refused the SYN */
} sniff_ev_kind;

struct sniff_an;
typedef struct sniff_event {
  sniff_ev_kind kind;
  const struct sniff_an *an;
  const struct sniff_conn *c;
  uint8_t dir;
  const struct sniff_msg *m;
  int64_t n;
} sniff_event;
typedef void (*sniff_event_fn)(void *ctx, const sniff_event *ev);

typedef struct sniff_opts {
  uint16_t server_port;     /* 9999 */
  uint16_t proxy_port;      /* 9998 */
  bool decode;              /* decode payloads to text (timeline, JSON) */
  sniff_event_fn on_event;  /* called with each event (NULL: no events) */
  void *event_ctx;          /* its first argument */
} sniff_opts;
void sniff_opts_default(sniff_opts *o);

typedef struct sniff_an {
  sniff_opts o;
  sniff_conn *conns; uint32_t nconns;  /* conns = conn_store.items */
  sniff_array conn_store;
  /* 4-tuple -> latest conn id (0 empty); the hash is kept beside the id so that probing
   * touches a connection only when its hash matches (one cache miss per packet, not per probe) */
  struct sniff_slot { uint32_t id, hash; } *slots;
  uint32_t nslots, nused;
  sniff_msg *msgs; uint32_t nmsgs;      /* msgs = msg_store.items */
  sniff_array msg_store;
  uint32_t *pending; uint32_t npending, cappending;  /* proxy conns with unanswered request */
  uint32_t *fresh; uint32_t nfresh, capfresh;  /* proxy conns without a request yet, oldest first */
  uint32_t *finish; uint32_t nfinish, capfinish;     /* conns sniff_finish must visit */
  bool finish_all;          /* the list above could not grow: sniff_finish visits all */
  uint64_t pkts, tcp_pkts, other_pkts, bad_pkts, trunc_pkts;
  uint64_t ts_first;
  struct sniff_textcache *tc;  /* decoded payloads by content (sniff_tcp.c), lazily allocated */
  calc_err incomplete;      /* why the analysis missed something it was fed: CALC_OK nothing,
                             * CALC_ERR_LIMIT SNIFF_MAX_CONNS or SNIFF_MAX_MSGS reached,
                             * CALC_ERR_NOMEM memory ran out (kept over a limit reached too) */
  /* per-packet outputs of sniff_feed (its events went to o.on_event) */
  uint32_t last_conn;       /* connection id of the packet just fed, 0 none */
  const char *last_why;     /* sniff_feed_frame: why the frame carried no segment, or NULL */
  uint8_t last_dir;
} sniff_an;

/* Initialises an analyzer (no allocation until the first packet). */
void sniff_an_init(sniff_an *an, const sniff_opts *o);
void sniff_an_free(sniff_an *an);
/* Feeds one decoded TCP segment (in capture order), reporting its events. Sets last_conn. Returns
 * CALC_OK; CALC_ERR_LIMIT when the segment opened a connection past SNIFF_MAX_CONNS (not
 * tracked); CALC_ERR_NOMEM once memory has run out. Either way an->incomplete says so and the
 * analysis goes on, incomplete. */
calc_err sniff_feed(sniff_an *an, const sniff_pkt *p);
/* Decodes and feeds one captured frame; counts non-TCP and bad frames. p (may be NULL) gets
 * the decoded frame (p->tcp: it was a segment, and fed). Returns sniff_feed's result for a
 * segment, sniff_decode's error for a frame it cannot decode (an->last_why says why), CALC_OK
 * for a well-formed frame without a segment. */
calc_err sniff_feed_frame(sniff_an *an, int dlt, const uint8_t *buf, size_t caplen, uint64_t ts_usec,
                          sniff_pkt *p);
/* End of capture: turns leftover out-of-order data into reported gaps. */
void sniff_finish(sniff_an *an);

static inline sniff_conn *sniff_conn_get(const sniff_an *an, uint32_t id) {
  return id && id <= an->nconns ? &an->conns[id - 1] : NULL;
}
/* The connection of p, the segment just fed (NULL: not tracked), its direction, and its Seq
 * and Ack relative to the ISNs as Wireshark shows them (0 for the SYN, 1 for the first data
 * byte; raw while an ISN is unknown). */
static inline const sniff_conn *sniff_fed(const sniff_an *an, const sniff_pkt *p, int *dir,
                                          uint32_t *seq, uint32_t *ack) {
  const sniff_conn *c = sniff_conn_get(an, an->last_conn);
  if (!c) return NULL;
  *dir = an->last_dir;
  *seq = c->d[*dir].have_next ? p->seq - c->d[*dir].isn : p->seq;
  *ack = c->d[!*dir].have_next ? p->ack - c->d[!*dir].isn : p->ack;
  return c;
}
/* Zeek's conn_state for c ("S0", "SF", "REJ", ...). */
const char *sniff_conn_state(const sniff_conn *c);
/* Connection has data loss (gaps, snaplen cuts) that makes sizes or segmentation unsure. */
bool sniff_conn_lossy(const sniff_conn *c);
/* Teardown class. */
sniff_end sniff_conn_end(const sniff_conn *c);

/* ---- the reduced behaviour (sniff_trace.c) and verify (sniff_report.c, sniff_verify.c) ---- */
/* Appends the reduced behaviour of an analysis as text (the --trace format, docs/sniff.md). */
void sniff_trace(const sniff_an *an, calc_buf *out);

/* The named checks of a verification, in report order (docs/sniff.md, "Checks"). */
typedef enum {
  SNIFF_CK_CONNECTIONS, SNIFF_CK_HANDSHAKE, SNIFF_CK_REQUEST_SIZE, SNIFF_CK_REQUEST_HEADER,
  SNIFF_CK_RESPONSE_SIZE,
  SNIFF_CK_SEGMENTATION, SNIFF_CK_TEARDOWN, SNIFF_CK_RST, SNIFF_CK_UPSTREAM,
  SNIFF_CK_CACHE_HIT, SNIFF_CK_REFUSED, SNIFF_CK_ORDERING, SNIFF_CK_COUNT
} sniff_check;
const char *sniff_check_name(sniff_check k);

/* The program an item is about (the one at fault when it fails). */
typedef enum { SNIFF_PARTY_CLIENT, SNIFF_PARTY_PROXY, SNIFF_PARTY_SERVER } sniff_party;
const char *sniff_party_name(sniff_party p);
/* Which program sent direction dir of connection c. */
sniff_party sniff_conn_party(const sniff_conn *c, int dir);

#define SNIFF_ITEM_PKTS 8
/* One thing a check looked at: a connection, a message, a request's upstream connections. */
typedef struct sniff_item {
  uint8_t check;            /* sniff_check */
  uint8_t party;            /* sniff_party */
  bool passed;
  uint32_t conn;            /* the capture's connection id, 0 when the capture has none */
  uint32_t npkts;
  uint64_t pkts[SNIFF_ITEM_PKTS];  /* the capture's frame numbers it is about */
  uint64_t ts;              /* the capture's time stamp of the first of them, 0 none */
  uint32_t detail;          /* offset of its one-line text in the report's text */
} sniff_item;

typedef struct sniff_report {
  sniff_item *items;
  uint32_t n, cap;
  uint32_t failed;          /* items that failed */
  calc_buf text;            /* the items' details, each NUL-terminated */
  uint64_t ts_base;         /* the capture's first time stamp: item times are relative to it */
  bool failed_details_only; /* set before sniff_verify: passed items get an empty detail (the
                             * text report shows only failures; formatting is most of its time) */
  bool oom;
} sniff_report;
void sniff_report_init(sniff_report *r);
void sniff_report_free(sniff_report *r);
static inline const char *sniff_item_detail(const sniff_report *r, const sniff_item *it) {
  return (const char *)r->text.data + it->detail;
}

/* Compares a capture against a golden capture under docs/scenarios.md's tolerance rules and records
 * every item each check looked at, passed or failed. Returns the number of failed items. */
uint32_t sniff_verify(const sniff_an *golden, const sniff_an *cap, sniff_report *rep);
/* The same, with each failed item appended to out as one line "FAIL <check>: <detail>".
 * Returns the number of failed items. */
uint32_t sniff_compare(const sniff_an *golden, const sniff_an *cap, calc_buf *out);

#endif
