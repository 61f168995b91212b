/* sniff_tcp.c: TCP connection tracking, per-direction reassembly, calculator message framing
 * and roles (issue 5 items 2 and 3).
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
#include "sniff.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "calc/alloc.h"
#include "calc/eval.h"
#include "calc/exc.h"
#include "calc/pickle.h"

/* Zeek history letters; bit i of sniff_dir.hist is hist_letters[i]. */
static const char hist_letters[] = "SHADFRTGW";
enum { H_S, H_H, H_A, H_D, H_F, H_R, H_T, H_G, H_W };

void sniff_opts_default(sniff_opts *o) {
  memset(o, 0, sizeof *o);
  o->server_port = 9999;
  o->proxy_port = 9998;
  o->decode = true;
  o->notes = true;
}

const char *sniff_role_name(sniff_role r) {
  switch (r) {
    case SNIFF_ROLE_OTHER: return "other";
    case SNIFF_ROLE_CLIENT_SERVER: return "client->server";
    case SNIFF_ROLE_CLIENT_PROXY: return "client->proxy";
    case SNIFF_ROLE_PROXY_SERVER: return "proxy->server";
  }
  return "?";
}

const char *sniff_end_name(sniff_end e) {
  switch (e) {
    case SNIFF_END_OPEN: return "open";
    case SNIFF_END_FIN_CLIENT: return "fin-client";
    case SNIFF_END_FIN_SERVER: return "fin-server";
    case SNIFF_END_RST_CLIENT: return "rst-client";
    case SNIFF_END_RST_SERVER: return "rst-server";
    case SNIFF_END_REFUSED: return "refused";
  }
  return "?";
}

/* Decoded payloads by content. Calculator traffic repeats itself (the same expression, the
 * cached answer), and decoding a pickle costs about a hundred times more than reassembling
 * it: a small direct-mapped cache keyed by the payload bytes (compared in full, never trusted
 * by hash alone) makes --json on a benchmark capture cost little more than the analysis. */
#define TC_SLOTS 256
#define TC_MAX_PAYLOAD 8192
/* Decoded texts live in chunks owned by the analysis (freed with it): a message's text points
 * into them, and messages with the same payload share one copy (no malloc per message). */
#define TEXT_CHUNK (64u << 10)
struct text_chunk {
  struct text_chunk *next;
  size_t used, cap;
  char data[];
};
struct sniff_textcache {
  struct tc_entry {
    uint8_t *payload;
    uint32_t len, hash;
    uint16_t status;
    bool is_request, malformed;
    const char *text;       /* in chunks */
    char abbrev[48];        /* text_abbrev(text) for notes */
  } e[TC_SLOTS];
  struct text_chunk *chunks;
};

/* A copy of s[0, n) in the analysis's text chunks, or NULL (out of memory). */
static char *text_keep(struct sniff_textcache *tc, const char *s, size_t n) {
  struct text_chunk *k = tc->chunks;
  if (!k || k->cap - k->used < n + 1) {
    size_t cap = n + 1 > TEXT_CHUNK ? n + 1 : TEXT_CHUNK;
    if (!(k = calc_malloc(sizeof *k + cap))) return NULL;
    k->used = 0;
    k->cap = cap;
    k->next = tc->chunks;
    tc->chunks = k;
  }
  char *t = k->data + k->used;
  memcpy(t, s, n);
  t[n] = 0;
  k->used += n + 1;
  return t;
}

/* The cache's key hash: the length and the first and last 64 bytes, 8 bytes a step (hashing
 * every byte cost as much as all the reassembly). Entries are compared in full, so the hash
 * only spreads them. */
#define HASH_EDGE 64
static uint64_t hash_words(uint64_t h, const uint8_t *p, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t w;
    memcpy(&w, p + i, 8);
    h = (h ^ w) * 0xff51afd7ed558ccdu;
    h ^= h >> 29;
  }
  uint64_t t = 0;
  memcpy(&t, p + i, n - i);
  return (h ^ t) * 0xc4ceb9fe1a85ec53u;
}
static uint32_t payload_hash(const uint8_t *p, size_t n) {
  uint64_t h = 0x9e3779b97f4a7c15u ^ n;
  if (n <= 2 * HASH_EDGE) {
    h = hash_words(h, p, n);
  } else {
    h = hash_words(h, p, HASH_EDGE);
    h = hash_words(h, p + n - HASH_EDGE, HASH_EDGE);
  }
  h ^= h >> 32;
  return (uint32_t)h;
}

void sniff_an_init(sniff_an *an, const sniff_opts *o) {
  memset(an, 0, sizeof *an);
  if (o) an->o = *o; else sniff_opts_default(&an->o);
  calc_buf_init(&an->notes, 0);
}

/* Releases a direction's buffers; they are allocated again if ever needed. */
static void dir_free(sniff_dir *d) {
  if (d->ro) calc_buf_free(&d->ro->buf);
  calc_free(d->ro);
  d->ro = NULL;
  d->nooo = 0;
  if (d->payload) calc_buf_free(d->payload);
  calc_free(d->payload);
  d->payload = NULL;
}

void sniff_an_free(sniff_an *an) {
  for (uint32_t i = 0; i < an->nconns; i++) {
    dir_free(&an->conns[i].d[0]);
    dir_free(&an->conns[i].d[1]);
  }
  sniff_array_free(&an->conn_store);
  calc_free(an->slots);
  sniff_array_free(&an->msg_store);
  calc_free(an->pending);
  calc_free(an->finish);
  if (an->tc) {
    for (size_t i = 0; i < TC_SLOTS; i++) calc_free(an->tc->e[i].payload);
    for (struct text_chunk *k = an->tc->chunks, *nx; k; k = nx) {
      nx = k->next;
      calc_free(k);
    }
    calc_free(an->tc);
  }
  calc_buf_free(&an->notes);
  memset(an, 0, sizeof *an);
}

static void note(sniff_an *an, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(sniff_an *an, const char *fmt, ...) {
  if (!an->o.notes) return;
  char tmp[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  if (an->notes.len) calc_buf_puts(&an->notes, "; ");
  calc_buf_puts(&an->notes, tmp);
}

/* Hand-made notes for the per-message and per-connection ones (most packets of a capture
 * carry one): note_begin() starts a note (false when notes are off), then note_s / note_u. */
static inline void note_app(sniff_an *an, const void *s, size_t n) {
  calc_buf *b = &an->notes;
  if (!b->failed && !b->limit && n <= b->cap - b->len) {  /* room: no call */
    memcpy(b->data + b->len, s, n);
    b->len += n;
  } else {
    calc_buf_append(b, s, n);
  }
}
static bool note_begin(sniff_an *an) {
  if (!an->o.notes) return false;
  if (an->notes.len) note_app(an, "; ", 2);
  return true;
}
static void note_s(sniff_an *an, const char *s) { note_app(an, s, strlen(s)); }
static void note_u(sniff_an *an, uint32_t v) {
  char tmp[10], *q = tmp + sizeof tmp;
  do {
    *--q = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  note_app(an, q, (size_t)(tmp + sizeof tmp - q));
}
/* A note without arguments. */
static void note_lit(sniff_an *an, const char *s) {
  if (note_begin(an)) note_s(an, s);
}

static void hist_add(sniff_conn *c, int dir, int letter) {
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
    an->limited = true;
    return NULL;
  }
  sniff_conn *conns = sniff_array_room(&an->conn_store, an->nconns, sizeof *conns, SNIFF_MAX_CONNS);
  if (!conns) return NULL;
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

/* Roles (issue 5 item 3): a connection to the server port opened while some client->proxy
 * connection holds a request it has not started answering was caused by that request (the
 * proxy opens the upstream connection after reading request N and before answering N,
 * protocol.md section 6). With several candidates, the most recent request wins. */
static void conn_assign_role(sniff_an *an, sniff_conn *c) {
  if (c->port[1] == an->o.proxy_port) {
    c->role = SNIFF_ROLE_CLIENT_PROXY;
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
  if (best < 0) return;
  sniff_msg *req = &an->msgs[best];
  c->role = SNIFF_ROLE_PROXY_SERVER;
  c->parent = req->conn;
  c->parent_req = req->index;
  if (!req->n_upstream++) req->first_upstream = c->id;
  if (note_begin(an)) {
    note_s(an, "upstream of #");
    note_u(an, req->conn);
    note_s(an, " request ");
    note_u(an, req->index);
  }
}

static void pending_remove(sniff_an *an, uint32_t id) {
  for (uint32_t i = 0; i < an->npending; i++)
    if (an->pending[i] == id) {
      an->pending[i] = an->pending[--an->npending];
      return;
    }
}

static int pending_add(sniff_an *an, uint32_t id) {
  for (uint32_t i = 0; i < an->npending; i++)
    if (an->pending[i] == id) return 0;
  if (an->npending == an->cappending) {
    uint32_t n = an->cappending ? an->cappending * 2 : 16;
    uint32_t *p = calc_realloc(an->pending, n * sizeof *p);
    if (!p) return -1;
    an->pending = p;
    an->cappending = n;
  }
  an->pending[an->npending++] = id;
  return 0;
}

/* Connections sniff_finish must look at: buffered out-of-order data, or a FIN beyond the
 * bytes delivered (or data after it). Listing them spares sniff_finish a walk over every
 * connection (megabytes of memory at the end of a big capture). When the list cannot grow,
 * sniff_finish walks them all as before. */
static void finish_mark(sniff_an *an, const sniff_conn *c) {
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

/* ---- messages ---- */
/* Up to n-1 bytes of s for a note: control bytes and DEL escaped as \xNN (the text comes
 * from an untrusted payload and ends up on a terminal), "..." when cut. */
static void text_abbrev(const char *s, char *out, size_t n) {
  size_t o = 0;
  for (const unsigned char *q = (const unsigned char *)s; *q; q++) {
    bool esc = *q < 0x20 || *q == 0x7f;
    size_t need = esc ? 4 : 1;
    if (o + need + 4 > n) {
      memcpy(out + o, "...", 4);
      return;
    }
    if (esc) o += (size_t)snprintf(out + o, n - o, "\\x%02x", *q);
    else out[o++] = (char)*q;
  }
  out[o] = 0;
}

static char *decode_payload(struct sniff_textcache *tc, sniff_msg *m, const uint8_t *p, size_t n) {
  calc_buf b;
  calc_buf_init(&b, SNIFF_TEXT_MAX);
  calc_exc e;
  memset(&e, 0, sizeof e);
  if (m->h.is_request) {
    calc_tree t;
    memset(&t, 0, sizeof t);
    if (calc_unpickle_request(p, n, &t, &e) == 0) {
      calc_expr_print(t.root, &b);
      calc_tree_free(&t);
    } else {
      m->malformed = true;
      calc_buf_printf(&b, "undecodable request: %s", e.msg);
    }
  } else {
    calc_pyobj *o = NULL;
    if (calc_unpickle_response(p, n, &o, &e) == 0 && o) {
      const calc_pyobj *r = o;
      if (m->h.status == 200 && o->kind == CALC_PY_TUPLE && o->n >= 1) r = o->items[0];
      if (r->kind == CALC_PY_EXC) {
        calc_buf_printf(&b, "%s: ", r->name ? r->name : "?");
        calc_pyobj_str(r, &b);
      } else {
        calc_pyobj_str(r, &b);
      }
      calc_pyobj_free(o);
    } else {
      m->malformed = true;
      calc_buf_printf(&b, "undecodable response: %s", e.msg);
    }
  }
  char *s = text_keep(tc, b.data ? (const char *)b.data : "", b.len);
  calc_buf_free(&b);
  return s;
}

/* Decodes through the cache; *ab gets text_abbrev() of the text (notes), kept beside it. */
static char *decode_cached(sniff_an *an, sniff_msg *m, const uint8_t *p, size_t n, char ab[48]) {
  if (!an->tc && !(an->tc = calc_calloc(1, sizeof *an->tc))) {
    an->oom = true;
    return NULL;
  }
  if (n > TC_MAX_PAYLOAD) {
    char *t = decode_payload(an->tc, m, p, n);
    if (t) text_abbrev(t, ab, 48);
    return t;
  }
  uint32_t h = payload_hash(p, n) ^ (m->h.is_request ? 0x80000000u : 0) ^ m->h.status;
  struct tc_entry *e = &an->tc->e[h % TC_SLOTS];
  if (e->text && e->hash == h && e->len == n && e->is_request == m->h.is_request &&
      e->status == m->h.status && !memcmp(e->payload, p, n)) {
    m->malformed = e->malformed;
    memcpy(ab, e->abbrev, 48);
    return (char *)e->text;
  }
  char *t = decode_payload(an->tc, m, p, n);
  if (!t) return NULL;
  text_abbrev(t, ab, 48);
  uint8_t *copy = calc_malloc(n ? n : 1);
  if (!copy) return t;
  memcpy(copy, p, n);
  calc_free(e->payload);
  *e = (struct tc_entry){copy, (uint32_t)n, h, m->h.status, m->h.is_request, m->malformed, t, {0}};
  memcpy(e->abbrev, ab, 48);
  return t;
}

/* A message whose last byte arrived (or that can never complete: malformed). body: its
 * payload when it came whole in one segment (decoded straight from the packet), else NULL
 * (the bytes gathered in d->payload). */
static void msg_done(sniff_an *an, sniff_conn *c, int dir, sniff_msg *m, const uint8_t *body) {
  sniff_dir *d = &c->d[dir];
  char ab[48] = "";
  if (an->o.decode && m->complete && !m->hole && !m->malformed && m->size >= CALC_HEADER_SIZE) {
    if (!body) body = d->payload && d->payload->data ? d->payload->data : (const uint8_t *)"";
    m->text = decode_cached(an, m, body, m->size - CALC_HEADER_SIZE, ab);
  }
  if (note_begin(an)) {
    const char *kind = m->h.is_request ? "request" : "response";
    if (m->malformed && !m->text) {
      note_s(an, "malformed ");
      note_s(an, kind);
      note_s(an, ": total length ");
      note_u(an, m->size);
    } else {
      note_s(an, kind);
      note_s(an, " ");
      note_u(an, m->size);
      note_s(an, " B");
      if (m->nseg > 1) {
        note_s(an, " in ");
        note_u(an, m->nseg);
        note_s(an, " segments");
      }
      if (!m->h.is_request && m->h.status != 200) {
        note_s(an, ": status ");
        note_u(an, m->h.status);
        note_s(an, " ");
        note_s(an, ab);
      } else {
        if (m->hole) note_s(an, " (bytes missing)");
        if (m->text) {
          note_s(an, ": ");
          note_s(an, ab);
        }
      }
    }
  }
  if (c->role == SNIFF_ROLE_CLIENT_PROXY) {
    if (dir == 0 && m->complete) {
      c->pending_req = (int32_t)(m - an->msgs);
      if (pending_add(an, c->id) < 0) an->oom = true;
    } else if (dir == 1 && c->last_req >= 0) {
      const sniff_msg *req = &an->msgs[c->last_req];
      const sniff_conn *u = sniff_conn_get(an, req->first_upstream);
      if (req->n_upstream == 0) {
        note_lit(an, "cache hit: no upstream connection");
      } else if (req->n_upstream == 1 && u && sniff_conn_end(u) == SNIFF_END_REFUSED) {
        note(an, "answered after upstream #%u was refused", u->id);
      } else if (note_begin(an)) {
        note_s(an, "answered after ");
        note_u(an, req->n_upstream);
        note_s(an, req->n_upstream == 1 ? " upstream connection (first #" : " upstream connections (first #");
        note_u(an, req->first_upstream);
        note_s(an, ")");
      }
    }
  }
}

static void msg_start(sniff_an *an, sniff_conn *c, int dir) {
  if (dir == 1 && c->role == SNIFF_ROLE_CLIENT_PROXY && c->pending_req >= 0) {
    c->last_req = c->pending_req;
    c->pending_req = -1;
    pending_remove(an, c->id);
  }
}

static void seg_add(sniff_msg *m, uint32_t n, bool *newseg) {
  if (*newseg) {
    if (m->nseg < SNIFF_MSG_SEGS) m->segs[m->nseg] = n;
    m->nseg++;
    *newseg = false;
  } else if (m->nseg && m->nseg <= SNIFF_MSG_SEGS) {
    m->segs[m->nseg - 1] += n;
  }
}

/* Feeds n stream bytes of direction dir (data NULL: a hole of n bytes) to the framer.
 * *newseg is true while the current segment has not yet been counted in a message. */
static void framer_feed(sniff_an *an, sniff_conn *c, int dir, const uint8_t *data, size_t n,
                        uint64_t ts, bool *newseg, bool *mid) {
  sniff_dir *d = &c->d[dir];
  while (n > 0 && !d->desync) {
    const uint8_t *body = NULL;
    if (d->cur_msg < 0) {
      if (an->nmsgs >= SNIFF_MAX_MSGS) {
        an->limited = true;
        d->desync = true;
        return;
      }
      sniff_msg *ms = sniff_array_room(&an->msg_store, an->nmsgs, sizeof *ms, SNIFF_MAX_MSGS);
      if (!ms) {
        an->oom = true;
        return;
      }
      an->msgs = ms;
      sniff_msg *m = &an->msgs[an->nmsgs];
      memset(m, 0, sizeof *m);
      m->conn = c->id;
      m->dir = (uint8_t)dir;
      m->index = ++d->nmsgs;
      m->ts_first = m->ts_last = ts;
      m->pkt_first = an->pkts;
      m->shares_segment = *mid;
      d->cur_msg = (int32_t)an->nmsgs++;
      d->hdr_have = d->msg_have = d->msg_total = 0;
      *newseg = true;
      msg_start(an, c, dir);
    }
    sniff_msg *m = &an->msgs[d->cur_msg];
    m->ts_last = ts;
    m->pkt_last = an->pkts;
    size_t take;
    if (d->hdr_have < CALC_HEADER_SIZE) {
      take = CALC_HEADER_SIZE - d->hdr_have;
      if (take > n) take = n;
      if (!data) {
        /* Without the header the stream cannot be framed again (no resync marker). */
        m->hole = m->malformed = true;
        d->desync = true;
        d->cur_msg = -1;
        note(an, "bytes missing inside a message header: stream no longer framed");
        return;
      }
      memcpy(d->hdr + d->hdr_have, data, take);
      d->hdr_have += (uint32_t)take;
      d->msg_have += (uint32_t)take;
      seg_add(m, (uint32_t)take, newseg);
      data += take;
      n -= take;
      if (d->hdr_have == CALC_HEADER_SIZE) {
        calc_header_decode(d->hdr, CALC_HEADER_SIZE, &m->h);
        m->size = d->msg_total = m->h.total_len;
        if (d->msg_total < CALC_HEADER_SIZE) {
          m->malformed = true;
          d->desync = true;
          d->cur_msg = -1;
          msg_done(an, c, dir, m, NULL);
          return;
        }
        if (d->payload) calc_buf_reset(d->payload);
      }
    } else {
      take = d->msg_total - d->msg_have;
      if (take > n) take = n;
      if (data && d->msg_have == CALC_HEADER_SIZE && take == d->msg_total - d->msg_have) {
        body = data;  /* the whole payload is in this segment: decode it from the packet */
        data += take;
      } else if (data) {
        if (an->o.decode && !m->hole) {
          if (!d->payload && (d->payload = calc_malloc(sizeof *d->payload)))
            calc_buf_init(d->payload, 0);
          if (!d->payload || calc_buf_append(d->payload, data, take) < 0) m->hole = true;
        }
        data += take;
      } else {
        m->hole = true;
      }
      d->msg_have += (uint32_t)take;
      seg_add(m, (uint32_t)take, newseg);
      n -= take;
    }
    if (d->hdr_have == CALC_HEADER_SIZE && d->msg_have == d->msg_total) {
      m->complete = true;
      if (n > 0) m->shares_segment = true;
      d->cur_msg = -1;
      *mid = true;
      msg_done(an, c, dir, m, body);
    }
  }
}

/* In-order bytes: cap of them present at data, len - cap cut by the snaplen. */
static void deliver(sniff_an *an, sniff_conn *c, int dir, const uint8_t *data, size_t cap,
                    size_t len, uint64_t ts) {
  sniff_dir *d = &c->d[dir];
  bool newseg = true, mid = false;
  if (d->fin) finish_mark(an, c);  /* bytes after the FIN: sniff_finish decides */
  if (cap) framer_feed(an, c, dir, data, cap, ts, &newseg, &mid);
  if (len > cap) {
    d->trunc_bytes += len - cap;
    note(an, "snaplen cut %zu B", len - cap);
    framer_feed(an, c, dir, NULL, len - cap, ts, &newseg, &mid);
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
  hist_add(c, dir, H_G);
  note(an, "gap of %u B in %s stream", best, dir == 0 ? "client" : "server");
  bool newseg = true, mid = false;
  framer_feed(an, c, dir, NULL, best, ts, &newseg, &mid);
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
      hist_add(c, dir, H_T);
      note(an, "retransmission (out of order)");
      return;
    }
  if (!d->ro) {
    if (!(d->ro = calc_malloc(sizeof *d->ro))) {
      an->oom = true;
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
    an->oom = true;
    return;
  }
  d->ro->seg[d->nooo++] = (sniff_ooo){seq, (uint32_t)len, (uint32_t)cap, (uint32_t)off};
  if (d->nooo == 1) finish_mark(an, c);
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
  hist_add(c, dir, H_D);
  int32_t rel = (int32_t)(seq - d->next);
  if ((int64_t)rel + (int64_t)len <= 0) {
    d->retrans_pkts++;
    hist_add(c, dir, H_T);
    note(an, "retransmission");
    return;
  }
  if (rel < 0) {
    uint32_t trim = 0u - (uint32_t)rel;  /* rel may be INT32_MIN */
    d->retrans_pkts++;
    d->overlap_bytes += trim;
    hist_add(c, dir, H_T);
    note(an, "overlap: %u B retransmitted", trim);
    deliver(an, c, dir, p->payload + (trim < cap ? trim : cap), cap > trim ? cap - trim : 0,
            len - trim, p->ts_usec);
  } else if (rel == 0) {
    deliver(an, c, dir, p->payload, cap, len, p->ts_usec);
  } else if ((uint32_t)rel > SNIFF_SEQ_WINDOW) {
    d->bogus_pkts++;
    note(an, "sequence number out of window: ignored");
    return;
  } else {
    note(an, "out of order: %d B ahead", rel);
    store_ooo(an, c, dir, seq, p->payload, cap, len, p->ts_usec);
    return;
  }
  if (d->nooo) drain(an, c, dir, p->ts_usec);
}

static const char *side(int dir) { return dir == 0 ? "client" : "server"; }

int sniff_feed(sniff_an *an, const sniff_pkt *p) {
  calc_buf_reset(&an->notes);
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
      note(an, "SYN retry %u", c->syn_retries);
    } else {
      bool reused = c != NULL;
      if (!(c = conn_new(an, p, true, slot, h))) goto no_conn;
      c->port_reused = reused;
      dir = 0;
      conn_assign_role(an, c);
      if (reused) note(an, "port reused: new connection #%u", c->id);
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
    if (!syn) note(an, "connection #%u picked up midstream", c->id);
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
    if (!ack) hist_add(c, dir, H_S); else hist_add(c, dir, H_H);
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
    note_lit(an, "3-way handshake");
  }
  if (!syn && !(p->flags & (SNIFF_TH_FIN | SNIFF_TH_RST)) && !p->payload_len && ack)
    hist_add(c, dir, H_A);
  if (!p->win && !(p->flags & SNIFF_TH_RST) && (c->established || !syn)) hist_add(c, dir, H_W);
  if (p->payload_len) handle_data(an, c, dir, p);
  if (p->flags & SNIFF_TH_FIN) {
    hist_add(c, dir, H_F);
    if (!d->fin) {
      d->fin = true;
      d->fin_ts = p->ts_usec;
      d->fin_pkt = an->pkts;
      d->fin_seq = p->seq + (uint32_t)p->payload_len + (syn ? 1u : 0u);
      if (!d->have_next) {
        d->have_next = true;
        d->next = d->fin_seq;
      }
      if (d->fin_seq != d->next) finish_mark(an, c);
      /* Nothing more is expected this way: give the buffers back (long captures). */
      if (!d->nooo && d->cur_msg < 0) dir_free(d);
      if (c->first_fin < 0) {
        c->first_fin = dir;
        c->teardown_pkts = 1;
        note_lit(an, dir == 0 ? "FIN first by client" : "FIN first by server");
      } else {
        note_lit(an, dir == 0 ? "FIN by client" : "FIN by server");
      }
    }
  }
  if (p->flags & SNIFF_TH_RST) {
    hist_add(c, dir, H_R);
    if (!d->rst) {
      d->rst = true;
      d->rst_ts = p->ts_usec;
      d->rst_pkt = an->pkts;
    }
    if (c->first_rst < 0) {
      c->first_rst = dir;
      if (dir == 1 && c->syn && !c->synack)
        note(an, "refused: SYN, RST");
      else
        note(an, "RST by %s", side(dir));
    }
  }
  return an->oom ? -1 : 0;
no_conn:
  if (an->limited) return 0;  /* past SNIFF_MAX_CONNS: not tracked, reported by the caller */
oom:
  an->oom = true;
  return -1;
}

int sniff_feed_frame(sniff_an *an, int dlt, const uint8_t *buf, size_t caplen, uint64_t ts_usec) {
  sniff_pkt p;
  an->pkts++;
  an->last_why = NULL;
  sniff_dec_result r = sniff_decode(dlt, buf, caplen, &p, &an->last_why);
  if (r != SNIFF_DEC_TCP) {
    calc_buf_reset(&an->notes);
    an->last_conn = 0;
    if (r == SNIFF_DEC_BAD) an->bad_pkts++; else an->other_pkts++;
    return 0;
  }
  p.ts_usec = ts_usec;
  if (p.payload_cap < p.payload_len) an->trunc_pkts++;
  return sniff_feed(an, &p);
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
        hist_add(c, dir, H_G);
        framer_feed(an, c, dir, NULL, (uint32_t)rel, c->ts_last, &newseg, &mid);
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
  calc_buf_reset(&an->notes);
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

/* Zeek's conn_state (base/protocols/conn/main.zeek). */
const char *sniff_conn_state(const sniff_conn *c) {
  const sniff_dir *o = &c->d[0], *r = &c->d[1];
  if (c->syn && !c->synack) {
    if (r->rst) return "REJ";
    if (o->rst) return "RSTOS0";
    if (o->fin) return "SH";
    return "S0";
  }
  if (!c->syn && c->synack) {
    if (r->rst) return "RSTRH";
    if (r->fin) return "SHR";
    return "OTH";
  }
  if (!c->syn) return "OTH";
  if (c->first_rst == 0) return "RSTO";
  if (c->first_rst == 1) return "RSTR";
  if (o->fin && r->fin) return "SF";
  if (o->fin) return "S2";
  if (r->fin) return "S3";
  return "S1";
}

sniff_end sniff_conn_end(const sniff_conn *c) {
  if (c->syn && !c->synack && c->first_rst == 1) return SNIFF_END_REFUSED;
  if (c->first_rst >= 0 && (c->first_fin < 0 || c->d[c->first_fin].fin_ts > c->d[c->first_rst].rst_ts))
    return c->first_rst == 0 ? SNIFF_END_RST_CLIENT : SNIFF_END_RST_SERVER;
  if (c->first_fin == 0) return SNIFF_END_FIN_CLIENT;
  if (c->first_fin == 1) return SNIFF_END_FIN_SERVER;
  return SNIFF_END_OPEN;
}

bool sniff_conn_lossy(const sniff_conn *c) {
  for (int i = 0; i < 2; i++)
    if (c->d[i].gap_bytes || c->d[i].trunc_bytes || c->d[i].desync) return true;
  return false;
}

void sniff_json_str(calc_buf *b, const char *s) {
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
