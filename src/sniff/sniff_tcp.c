/* sniff_tcp.c: TCP connection tracking, per-direction reassembly and roles (message framing:
 * sniff_framer.c; the other parts: sniff_int.h).
 *
 * Connections are keyed by the 4-tuple and the originator's ISN: a SYN with the ISN already
 * seen is a retry, a SYN with another ISN on a known 4-tuple is a new connection (port reuse).
 * Each direction reassembles in sequence space relative to `next` (the next byte expected):
 * signed 32-bit differences make the wrap at 2^32 invisible. Data behind `next` is a
 * retransmission (counted once, trimmed when it overlaps), data ahead is buffered (bounded by
 * SNIFF_OOO_MAX / SNIFF_OOO_BYTES; past that the earliest hole becomes a reported gap), and
 * bytes a snaplen cut away enter the framer as a hole: sizes stay known, payloads do not.
 *
 * The hot path (one packet) does a hash probe and, for in-order data, copies at most the
 * bytes of a message being decoded: no allocation except amortised array growth. */
#include "sniff_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "calc/alloc.h"

/* Zeek history letters; bit i of sniff_dir.hist is hist_letters[i]. */
static const char hist_letters[] = "SHADFRTGW";

void sniff_hist_add(sniff_conn *c, int dir, int letter) {
  sniff_dir *d = &c->d[dir];
  if (d->hist & (1u << letter)) return;
  d->hist |= (uint16_t)(1u << letter);
  if (c->hist_len + 1 < sizeof c->history) {
    char ch = hist_letters[letter];
    c->history[c->hist_len++] = dir == 0 ? ch : (char)(ch - 'A' + 'a');
    c->history[c->hist_len] = 0;
  }
}

/* ---- the 4-tuple table: open addressing, linear probing, value = latest conn id ---- */
static uint32_t mix32(uint32_t h) {
  h ^= h >> 16; h *= 0x7feb352dU; h ^= h >> 15; h *= 0x846ca68bU; h ^= h >> 16;
  return h;
}
/* One end of a connection: multiply-xor of its words, finished once per tuple by mix32. */
static uint32_t end_hash(const uint8_t a[16], uint16_t port) {
  uint32_t w[4];
  memcpy(w, a, 16);
  return (w[0] * 0x9e3779b1u) ^ (w[1] * 0x85ebca77u) ^ (w[2] * 0xc2b2ae3du) ^
         (w[3] * 0x27d4eb2fu) ^ ((uint32_t)port * 0x165667b1u);
}
/* Symmetric in the two ends, so both directions land on one slot. */
static uint32_t tuple_hash(const uint8_t *a, uint16_t pa, const uint8_t *b, uint16_t pb) {
  return mix32(end_hash(a, pa) + end_hash(b, pb));
}
static bool conn_matches(const sniff_conn *c, const sniff_pkt *p, int *dir) {
  if (c->af != p->af) return false;
  if (c->port[0] == p->sport && c->port[1] == p->dport && !memcmp(c->addr[0], p->src, 16) &&
      !memcmp(c->addr[1], p->dst, 16)) {
    *dir = 0;
    return true;
  }
  if (c->port[1] == p->sport && c->port[0] == p->dport && !memcmp(c->addr[1], p->src, 16) &&
      !memcmp(c->addr[0], p->dst, 16)) {
    *dir = 1;
    return true;
  }
  return false;
}

/* Returns the slot holding p's tuple, or the empty slot where it belongs. */
static struct sniff_slot *slot_find(sniff_an *an, const sniff_pkt *p, uint32_t h, int *dir) {
  uint32_t mask = an->nslots - 1;
  for (uint32_t i = h & mask;; i = (i + 1) & mask) {
    struct sniff_slot *s = &an->slots[i];
    if (!s->id || (s->hash == h && conn_matches(&an->conns[s->id - 1], p, dir))) return s;
  }
}

static int slots_grow(sniff_an *an) {
  uint32_t n = an->nslots ? an->nslots * 2 : 1024;
  struct sniff_slot *s = calc_calloc(n, sizeof *s);
  if (!s) return -1;
  for (uint32_t i = 0; i < an->nslots; i++) {
    struct sniff_slot e = an->slots[i];
    if (!e.id) continue;
    uint32_t j = e.hash & (n - 1);
    while (s[j].id) j = (j + 1) & (n - 1);
    s[j] = e;
  }
  calc_free(an->slots);
  an->slots = s;
  an->nslots = n;
  return 0;
}

static sniff_conn *conn_new(sniff_an *an, const sniff_pkt *p, bool orig_is_src, struct sniff_slot *slot, uint32_t h) {
  if (an->nconns >= SNIFF_MAX_CONNS) {
    sniff_incomplete(an, CALC_ERR_LIMIT);
    return NULL;
  }
  sniff_conn *conns = sniff_array_room(&an->conn_store, an->nconns, sizeof *conns, SNIFF_MAX_CONNS);
  if (!conns) {
    sniff_incomplete(an, CALC_ERR_NOMEM);
    return NULL;
  }
  an->conns = conns;
  sniff_conn *c = &an->conns[an->nconns++];
  memset(c, 0, sizeof *c);
  c->id = an->nconns;
  c->af = p->af;
  int o = orig_is_src ? 0 : 1;
  memcpy(c->addr[o], p->src, 16);
  memcpy(c->addr[!o], p->dst, 16);
  c->port[o] = p->sport;
  c->port[!o] = p->dport;
  c->ts_first = c->ts_last = p->ts_usec;
  c->pkt_first = c->pkt_last = an->pkts;
  c->first_fin = c->first_rst = -1;
  c->pending_req = c->last_req = -1;
  for (int i = 0; i < 2; i++) {
    c->d[i].cur_msg = -1;
  }
  slot->id = c->id;
  slot->hash = h;
  return c;
}

static int id_list_add(uint32_t **list, uint32_t *n, uint32_t *cap, uint32_t id) {
  if (*n == *cap) {
    uint32_t ncap = *cap ? *cap * 2 : 16;
    uint32_t *p = calc_realloc(*list, ncap * sizeof *p);
    if (!p) return -1;
    *list = p;
    *cap = ncap;
  }
  (*list)[(*n)++] = id;
  return 0;
}

/* Whether client->proxy connection pc may still be the one a proxy connects upstream for
 * before its request: open (no FIN, no RST), no such connection yet, and no request yet or
 * its first still arriving (a whole one is pending: the rule before this one takes it). */
static bool fresh_for_upstream(const sniff_conn *pc) {
  return pc && pc->role == SNIFF_ROLE_CLIENT_PROXY && pc->first_fin < 0 && pc->first_rst < 0 &&
         !pc->early_upstreams && !pc->d[1].nmsgs &&
         (!pc->d[0].nmsgs || (pc->d[0].nmsgs == 1 && pc->d[0].cur_msg >= 0 && pc->pending_req < 0));
}

/* The oldest client->proxy connection still fresh_for_upstream, or NULL; those that no longer
 * are leave the list (it holds only connections that have not yet sent anything). */
static sniff_conn *oldest_fresh(sniff_an *an) {
  uint32_t k = 0;
  sniff_conn *found = NULL;
  for (uint32_t i = 0; i < an->nfresh; i++) {
    sniff_conn *pc = sniff_conn_get(an, an->fresh[i]);
    if (!fresh_for_upstream(pc)) continue;
    an->fresh[k++] = an->fresh[i];
    if (!found) found = pc;
  }
  an->nfresh = k;
  return found;
}

/* Roles: which program opened a connection decides whom verify blames for what it carries, and
 * a proxy's upstream connection must be told from a client's own. A connection to the server
 * port opened while some client->proxy connection holds a request it has not started answering
 * was caused by that request (the proxy opens the upstream connection after reading request N
 * and before answering N, docs/protocol.md section 6). With several candidates, the most recent
 * request wins.
 * A proxy may also connect upstream as soon as its client connects, before the request: then
 * whether the request or the proxy's SYN reaches the wire first is a race between two
 * programs, and the role must not follow it. Such a connection, opened while no request is
 * pending and some client->proxy connection has sent nothing yet, is the upstream of that
 * connection's first request (the oldest such connection: a proxy accepts its clients in the
 * order they connected), whichever came first. */
static void conn_assign_role(sniff_an *an, sniff_conn *c) {
  if (c->port[1] == an->o.proxy_port) {
    c->role = SNIFF_ROLE_CLIENT_PROXY;
    if (id_list_add(&an->fresh, &an->nfresh, &an->capfresh, c->id) < 0) sniff_incomplete(an, CALC_ERR_NOMEM);
    return;
  }
  if (c->port[1] != an->o.server_port) {
    c->role = SNIFF_ROLE_OTHER;
    return;
  }
  c->role = SNIFF_ROLE_CLIENT_SERVER;
  int32_t best = -1;
  for (uint32_t i = 0; i < an->npending; i++) {
    const sniff_conn *pc = sniff_conn_get(an, an->pending[i]);
    if (!pc || pc->pending_req < 0 || pc->id == c->id) continue;
    if (best < 0 || an->msgs[pc->pending_req].ts_last >= an->msgs[best].ts_last) best = pc->pending_req;
  }
  if (best < 0) {
    sniff_conn *pc = oldest_fresh(an);
    if (!pc) return;
    c->role = SNIFF_ROLE_PROXY_SERVER;
    c->parent = pc->id;
    c->parent_req = 1;  /* its first request, which takes the count when it comes (msg_start) */
    if (!pc->early_upstreams++) pc->early_first = c->id;
    if (pc->d[0].cur_msg >= 0) {  /* the request has begun: it counts the connection itself */
      sniff_msg *req = &an->msgs[pc->d[0].cur_msg];
      if (!req->n_upstream++) req->first_upstream = c->id;
    }
    sniff_emit(an, SNIFF_EV_EARLY_UPSTREAM, c, 0, NULL, pc->id);
    return;
  }
  sniff_msg *req = &an->msgs[best];
  c->role = SNIFF_ROLE_PROXY_SERVER;
  c->parent = req->conn;
  c->parent_req = req->index;
  if (!req->n_upstream++) req->first_upstream = c->id;
  sniff_emit(an, SNIFF_EV_UPSTREAM, c, 0, req, 0);
}

/* Connections sniff_finish must look at: buffered out-of-order data, or a FIN beyond the
 * bytes delivered (or data after it). Listing them spares sniff_finish a walk over every
 * connection (megabytes of memory at the end of a big capture). When the list cannot grow,
 * sniff_finish walks them all as before. */
void sniff_finish_mark(sniff_an *an, const sniff_conn *c) {
  if (an->finish_all) return;
  if (an->nfinish == an->capfinish) {
    uint32_t n = an->capfinish ? an->capfinish * 2 : 64;
    uint32_t *p = calc_realloc(an->finish, n * sizeof *p);
    if (!p) {
      an->finish_all = true;
      return;
    }
    an->finish = p;
    an->capfinish = n;
  }
  an->finish[an->nfinish++] = c->id;
}

/* In-order bytes: cap of them present at data, len - cap cut by the snaplen. */
static void deliver(sniff_an *an, sniff_conn *c, int dir, const uint8_t *data, size_t cap,
                    size_t len, uint64_t ts) {
  sniff_dir *d = &c->d[dir];
  bool newseg = true, mid = false;
  if (d->fin) sniff_finish_mark(an, c);  /* bytes after the FIN: sniff_finish decides */
  if (cap) sniff_framer_feed(an, c, dir, data, cap, ts, &newseg, &mid);
  if (len > cap) {
    d->trunc_bytes += len - cap;
    sniff_emit(an, SNIFF_EV_SNAPLEN_CUT, c, dir, NULL, (int64_t)(len - cap));
    sniff_framer_feed(an, c, dir, NULL, len - cap, ts, &newseg, &mid);
  }
  d->next += (uint32_t)len;
  d->bytes += len;
}

static void drain(sniff_an *an, sniff_conn *c, int dir, uint64_t ts) {
  sniff_dir *d = &c->d[dir];
  for (bool again = true; again && d->nooo;) {
    again = false;
    for (uint32_t i = 0; i < d->nooo; i++) {
      sniff_ooo e = d->ro->seg[i];
      int32_t rel = (int32_t)(e.seq - d->next);
      if (rel > 0) continue;
      d->ro->seg[i] = d->ro->seg[--d->nooo];
      if ((int64_t)rel + e.len > 0) {
        uint32_t trim = 0u - (uint32_t)rel;
        d->overlap_bytes += trim;
        /* cap may be 0 (a snaplen cut everything): then there is no buffer to point into */
        deliver(an, c, dir, e.cap > trim ? d->ro->buf.data + e.off + trim : NULL,
                e.cap > trim ? e.cap - trim : 0, e.len - trim, ts);
      }
      again = true;
      break;
    }
  }
  if (!d->nooo) calc_buf_reset(&d->ro->buf);
}

/* Declares the hole before the earliest buffered segment a gap and delivers past it. */
static void force_gap(sniff_an *an, sniff_conn *c, int dir, uint64_t ts) {
  sniff_dir *d = &c->d[dir];
  if (!d->nooo) return;
  uint32_t best = UINT32_MAX;
  for (uint32_t i = 0; i < d->nooo; i++) {
    uint32_t rel = d->ro->seg[i].seq - d->next;
    if (rel < best) best = rel;
  }
  d->gap_bytes += best;
  sniff_hist_add(c, dir, H_G);
  sniff_emit(an, SNIFF_EV_GAP, c, dir, NULL, best);
  bool newseg = true, mid = false;
  sniff_framer_feed(an, c, dir, NULL, best, ts, &newseg, &mid);
  d->next += best;
  d->bytes += best;
  drain(an, c, dir, ts);
}

static void store_ooo(sniff_an *an, sniff_conn *c, int dir, uint32_t seq, const uint8_t *data,
                      size_t cap, size_t len, uint64_t ts) {
  sniff_dir *d = &c->d[dir];
  for (uint32_t i = 0; i < d->nooo; i++)
    if (d->ro->seg[i].seq == seq && d->ro->seg[i].len >= len) {
      d->retrans_pkts++;
      sniff_hist_add(c, dir, H_T);
      sniff_emit(an, SNIFF_EV_RETRANSMISSION_OOO, c, dir, NULL, 0);
      return;
    }
  if (!d->ro) {
    if (!(d->ro = calc_malloc(sizeof *d->ro))) {
      sniff_incomplete(an, CALC_ERR_NOMEM);
      return;
    }
    calc_buf_init(&d->ro->buf, 0);
  }
  while (d->nooo && (d->nooo == SNIFF_OOO_MAX || d->ro->buf.len + cap > SNIFF_OOO_BYTES)) {
    force_gap(an, c, dir, ts);
    if ((int32_t)(seq - d->next) <= 0) return;  /* now in order or behind: caller's job done */
  }
  size_t off = d->ro->buf.len;
  if (calc_buf_append(&d->ro->buf, data, cap) < 0) {
    sniff_incomplete(an, CALC_ERR_NOMEM);
    return;
  }
  d->ro->seg[d->nooo++] = (sniff_ooo){seq, (uint32_t)len, (uint32_t)cap, (uint32_t)off};
  if (d->nooo == 1) sniff_finish_mark(an, c);
  d->ooo_pkts++;
}

static void handle_data(sniff_an *an, sniff_conn *c, int dir, const sniff_pkt *p) {
  sniff_dir *d = &c->d[dir];
  uint32_t seq = p->seq + ((p->flags & SNIFF_TH_SYN) ? 1u : 0u);
  size_t len = p->payload_len, cap = p->payload_cap;
  if (!d->have_next) {  /* midstream: the first byte seen is the origin */
    d->have_next = true;
    d->next = seq;
    d->isn = seq - 1;
  }
  sniff_hist_add(c, dir, H_D);
  int32_t rel = (int32_t)(seq - d->next);
  if ((int64_t)rel + (int64_t)len <= 0) {
    d->retrans_pkts++;
    sniff_hist_add(c, dir, H_T);
    sniff_emit(an, SNIFF_EV_RETRANSMISSION, c, dir, NULL, 0);
    return;
  }
  if (rel < 0) {
    uint32_t trim = 0u - (uint32_t)rel;  /* rel may be INT32_MIN */
    d->retrans_pkts++;
    d->overlap_bytes += trim;
    sniff_hist_add(c, dir, H_T);
    sniff_emit(an, SNIFF_EV_OVERLAP, c, dir, NULL, trim);
    deliver(an, c, dir, p->payload + (trim < cap ? trim : cap), cap > trim ? cap - trim : 0,
            len - trim, p->ts_usec);
  } else if (rel == 0) {
    deliver(an, c, dir, p->payload, cap, len, p->ts_usec);
  } else if ((uint32_t)rel > SNIFF_SEQ_WINDOW) {
    d->bogus_pkts++;
    sniff_emit(an, SNIFF_EV_OUT_OF_WINDOW, c, dir, NULL, 0);
    return;
  } else {
    sniff_emit(an, SNIFF_EV_OUT_OF_ORDER, c, dir, NULL, rel);
    store_ooo(an, c, dir, seq, p->payload, cap, len, p->ts_usec);
    return;
  }
  if (d->nooo) drain(an, c, dir, p->ts_usec);
}

calc_err sniff_feed(sniff_an *an, const sniff_pkt *p) {
  an->last_conn = 0;
  an->tcp_pkts++;
  if (!an->ts_first) an->ts_first = p->ts_usec;
  if (an->nused * 2 >= an->nslots && slots_grow(an) < 0) goto oom;
  uint32_t h = tuple_hash(p->src, p->sport, p->dst, p->dport);
  int dir = 0;
  struct sniff_slot *slot = slot_find(an, p, h, &dir);
  sniff_conn *c = slot->id ? &an->conns[slot->id - 1] : NULL;
  bool syn = p->flags & SNIFF_TH_SYN, ack = p->flags & SNIFF_TH_ACK;
  bool fresh_slot = !c;
  if (syn && !ack) {
    if (c && dir == 0 && c->syn && c->d[0].isn == p->seq) {
      c->syn_retries++;
      sniff_emit(an, SNIFF_EV_SYN_RETRY, c, 0, NULL, c->syn_retries);
    } else {
      bool reused = c != NULL;
      if (!(c = conn_new(an, p, true, slot, h))) goto no_conn;
      c->port_reused = reused;
      dir = 0;
      conn_assign_role(an, c);
      if (reused) sniff_emit(an, SNIFF_EV_PORT_REUSED, c, 0, NULL, 0);
    }
  } else if (!c) {
    bool orig_is_src;
    if (syn) orig_is_src = false;
    else if (p->dport == an->o.server_port || p->dport == an->o.proxy_port) orig_is_src = true;
    else if (p->sport == an->o.server_port || p->sport == an->o.proxy_port) orig_is_src = false;
    else orig_is_src = p->sport > p->dport;
    if (!(c = conn_new(an, p, orig_is_src, slot, h))) goto no_conn;
    c->midstream = !syn;
    dir = orig_is_src ? 0 : 1;
    conn_assign_role(an, c);
    if (!syn) sniff_emit(an, SNIFF_EV_MIDSTREAM, c, dir, NULL, 0);
  }
  if (fresh_slot) an->nused++;

  sniff_dir *d = &c->d[dir];
  an->last_conn = c->id;
  an->last_dir = (uint8_t)dir;
  c->ts_last = p->ts_usec;
  c->pkt_last = an->pkts;
  d->pkts++;
  if (c->first_fin >= 0) c->teardown_pkts++;
  if (syn) {
    if (!ack) sniff_hist_add(c, dir, H_S); else sniff_hist_add(c, dir, H_H);
    if (!d->syn) {
      d->syn = true;
      d->isn = p->seq;
      d->next = p->seq + 1;
      d->have_next = true;
      d->syn_ts = p->ts_usec;
      d->syn_pkt = an->pkts;
    }
    if (!ack && dir == 0) c->syn = true;
    if (ack && dir == 1) c->synack = true;
  }
  if (ack && !syn && dir == 0 && c->syn && c->synack && !c->established &&
      !(p->flags & SNIFF_TH_RST)) {
    c->established = true;
    sniff_emit(an, SNIFF_EV_HANDSHAKE, c, dir, NULL, 0);
  }
  if (!syn && !(p->flags & (SNIFF_TH_FIN | SNIFF_TH_RST)) && !p->payload_len && ack)
    sniff_hist_add(c, dir, H_A);
  if (!p->win && !(p->flags & SNIFF_TH_RST) && (c->established || !syn)) sniff_hist_add(c, dir, H_W);
  if (p->payload_len) handle_data(an, c, dir, p);
  if (p->flags & SNIFF_TH_FIN) {
    sniff_hist_add(c, dir, H_F);
    if (!d->fin) {
      d->fin = true;
      d->fin_ts = p->ts_usec;
      d->fin_pkt = an->pkts;
      d->fin_seq = p->seq + (uint32_t)p->payload_len + (syn ? 1u : 0u);
      if (!d->have_next) {
        d->have_next = true;
        d->next = d->fin_seq;
      }
      if (d->fin_seq != d->next) sniff_finish_mark(an, c);
      /* Nothing more is expected this way: give the buffers back (long captures). */
      if (!d->nooo && d->cur_msg < 0) sniff_dir_free(d);
      bool first = c->first_fin < 0;
      if (first) {
        c->first_fin = dir;
        c->teardown_pkts = 1;
      }
      sniff_emit(an, SNIFF_EV_FIN, c, dir, NULL, first);
    }
  }
  if (p->flags & SNIFF_TH_RST) {
    sniff_hist_add(c, dir, H_R);
    if (!d->rst) {
      d->rst = true;
      d->rst_ts = p->ts_usec;
      d->rst_pkt = an->pkts;
    }
    if (c->first_rst < 0) {
      c->first_rst = dir;
      sniff_emit(an, SNIFF_EV_RST, c, dir, NULL, dir == 1 && c->syn && !c->synack);
    }
  }
  return an->incomplete == CALC_ERR_NOMEM ? CALC_ERR_NOMEM : CALC_OK;
no_conn:  /* past SNIFF_MAX_CONNS, or no memory for it: not tracked (conn_new said why) */
  return an->nconns >= SNIFF_MAX_CONNS ? CALC_ERR_LIMIT : CALC_ERR_NOMEM;
oom:
  return sniff_incomplete(an, CALC_ERR_NOMEM);
}

calc_err sniff_feed_frame(sniff_an *an, int dlt, const uint8_t *buf, size_t caplen, uint64_t ts_usec,
                          sniff_pkt *p) {
  sniff_pkt own;
  if (!p) p = &own;
  an->pkts++;
  an->last_why = NULL;
  calc_err err = sniff_decode(dlt, buf, caplen, p, &an->last_why);
  if (err != CALC_OK || !p->tcp) {
    an->last_conn = 0;
    if (err != CALC_OK) an->bad_pkts++; else an->other_pkts++;
    return err;
  }
  p->ts_usec = ts_usec;
  if (p->payload_cap < p->payload_len) an->trunc_pkts++;
  return sniff_feed(an, p);
}

static void finish_conn(sniff_an *an, sniff_conn *c) {
  for (int dir = 0; dir < 2; dir++) {
    sniff_dir *d = &c->d[dir];
    while (d->nooo) force_gap(an, c, dir, c->ts_last);
    if (d->fin && d->have_next) {
      int32_t rel = (int32_t)(d->fin_seq - d->next);
      if (rel > 0 && (uint32_t)rel <= SNIFF_SEQ_WINDOW) {
        bool newseg = true, mid = false;
        d->gap_bytes += (uint32_t)rel;
        sniff_hist_add(c, dir, H_G);
        sniff_framer_feed(an, c, dir, NULL, (uint32_t)rel, c->ts_last, &newseg, &mid);
        d->next += (uint32_t)rel;
      }
    }
  }
}

static int cmp_u32(const void *a, const void *b) {
  uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
  return (x > y) - (x < y);
}

void sniff_finish(sniff_an *an) {
  if (an->finish_all) {
    for (uint32_t i = 0; i < an->nconns; i++) finish_conn(an, &an->conns[i]);
  } else if (an->nfinish) {
    /* the listed connections in id order, each once: as the walk over all did */
    qsort(an->finish, an->nfinish, sizeof *an->finish, cmp_u32);
    for (uint32_t i = 0; i < an->nfinish; i++)
      if (i == 0 || an->finish[i] != an->finish[i - 1])
        finish_conn(an, &an->conns[an->finish[i] - 1]);
  }
  an->nfinish = 0;
}

