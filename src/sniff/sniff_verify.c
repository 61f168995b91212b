/* sniff_verify.c: a capture judged against a golden capture, check by check.
 *
 * Both analyses are reduced (sniff_reduce.h); downstream connections are paired by behaviour,
 * then every paired connection, message and upstream connection is compared under
 * scenarios.md's tolerance rules. Each comparison is an item of a named check, passed or
 * failed, with the program it is about (the one at fault when it fails), the capture's
 * connection, frame numbers and time, and one line of text saying what was seen and what the
 * reference does instead. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "calc/alloc.h"
#include "sniff_reduce.h"

static const char *const check_names[SNIFF_CK_COUNT] = {
    "connections", "handshake", "request-size", "request-header", "response-size", "segmentation", "teardown",
    "rst", "upstream-connections", "cache-hit-no-upstream", "refused-answer", "ordering"};

const char *sniff_check_name(sniff_check k) {
  return (unsigned)k < SNIFF_CK_COUNT ? check_names[k] : "?";
}

const char *sniff_party_name(sniff_party p) {
  switch (p) {
    case SNIFF_PARTY_CLIENT: return "client";
    case SNIFF_PARTY_PROXY: return "proxy";
    case SNIFF_PARTY_SERVER: return "server";
  }
  return "?";
}

sniff_party sniff_conn_party(const sniff_conn *c, int dir) {
  switch (c->role) {
    case SNIFF_ROLE_CLIENT_PROXY: return dir ? SNIFF_PARTY_PROXY : SNIFF_PARTY_CLIENT;
    case SNIFF_ROLE_PROXY_SERVER: return dir ? SNIFF_PARTY_SERVER : SNIFF_PARTY_PROXY;
    default: return dir ? SNIFF_PARTY_SERVER : SNIFF_PARTY_CLIENT;
  }
}

void sniff_report_init(sniff_report *r) {
  memset(r, 0, sizeof *r);
  calc_buf_init(&r->text, 0);
}

void sniff_report_free(sniff_report *r) {
  calc_free(r->items);
  calc_buf_free(&r->text);
  memset(r, 0, sizeof *r);
}

typedef struct cmp {
  sniff_report *rep;
  const sniff_red *g, *c;
} cmp;

/* An item being written: its text grows with say(), its packets with at(). */
typedef struct pend {
  sniff_item it;
  bool quiet;               /* no text wanted */
  size_t len;
  char text[512];
} pend;

static void begin(const cmp *x, pend *p, sniff_check k, bool ok, sniff_party who, const sniff_conn *c) {
  memset(&p->it, 0, sizeof p->it);
  p->it.check = (uint8_t)k;
  p->it.passed = ok;
  p->it.party = (uint8_t)who;
  p->it.conn = c ? c->id : 0;
  p->len = 0;
  p->text[0] = 0;
  p->quiet = ok && x->rep->failed_details_only;
}

static void say(pend *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(pend *p, const char *fmt, ...) {
  if (p->quiet || p->len >= sizeof p->text - 1) return;
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(p->text + p->len, sizeof p->text - p->len, fmt, ap);
  va_end(ap);
  if (n > 0) p->len += (size_t)n;
  if (p->len > sizeof p->text - 1) p->len = sizeof p->text - 1;
}

/* The item is about frame pkt (0: none) seen at ts. */
static void at(pend *p, uint64_t pkt, uint64_t ts) {
  if (!pkt || p->it.npkts == SNIFF_ITEM_PKTS) return;
  for (uint32_t i = 0; i < p->it.npkts; i++)
    if (p->it.pkts[i] == pkt) return;
  if (!p->it.npkts || ts < p->it.ts) p->it.ts = ts;
  p->it.pkts[p->it.npkts++] = pkt;
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return (x > y) - (x < y);
}

/* Ends the item's text with where on the wire it is ("packets 4, 5 at 0.000123 s") and adds
 * it to the report. */
static void emit(cmp *x, pend *p) {
  sniff_report *r = x->rep;
  if (r->oom) return;
  if (p->it.npkts) qsort(p->it.pkts, p->it.npkts, sizeof p->it.pkts[0], cmp_u64);
  if (p->it.npkts && !p->quiet) {
    say(p, " (packet%s ", p->it.npkts == 1 ? "" : "s");
    for (uint32_t i = 0; i < p->it.npkts; i++) say(p, "%s%llu", i ? ", " : "", (unsigned long long)p->it.pkts[i]);
    uint64_t rel = p->it.ts >= r->ts_base ? p->it.ts - r->ts_base : 0;
    say(p, " at %llu.%06llu s)", (unsigned long long)(rel / 1000000u), (unsigned long long)(rel % 1000000u));
  }
  if (r->n == r->cap) {
    uint32_t cap = r->cap ? r->cap * 2 : 64;
    sniff_item *items = calc_realloc(r->items, (size_t)cap * sizeof *items);
    if (!items) {
      r->oom = true;
      return;
    }
    r->items = items;
    r->cap = cap;
  }
  p->it.detail = (uint32_t)r->text.len;
  if (calc_buf_append(&r->text, p->text, p->len) < 0 || calc_buf_putc(&r->text, 0) < 0) {
    r->oom = true;
    return;
  }
  r->items[r->n++] = p->it;
  if (!p->it.passed) r->failed++;
}

static bool end_is_rst(sniff_end e) { return e == SNIFF_END_RST_CLIENT || e == SNIFF_END_RST_SERVER; }

/* "12+552" for a message's segments. */
static void say_segs(pend *p, const sniff_msg *m) {
  if (m->nseg == 1) {
    say(p, "one segment");
  } else {
    say(p, "%u segments (", m->nseg);
    for (uint32_t i = 0; i < m->nseg && i < SNIFF_MSG_SEGS; i++) say(p, "%s%u", i ? "+" : "", m->segs[i]);
    say(p, m->nseg > SNIFF_MSG_SEGS ? "+...)" : ")");
  }
  if (m->shares_segment) say(p, " shared with another message");
}

static bool same_split(const sniff_msg *g, const sniff_msg *c) {
  if (sniff_msg_single(g)) return sniff_msg_single(c);
  if (g->nseg != c->nseg || g->shares_segment != c->shares_segment) return false;
  for (uint32_t i = 0; i < g->nseg && i < SNIFF_MSG_SEGS; i++)
    if (g->segs[i] != c->segs[i]) return false;
  return true;
}

static void msg_at(pend *p, const sniff_msg *m) {
  at(p, m->pkt_first, m->ts_first);
  at(p, m->pkt_last, m->ts_last);
}

/* The request asks for what the golden's asks: same size, same steps and cache flags, same
 * cache control (the client's max-age, which decides whether the reference proxy may answer
 * from its cache). */
static bool same_request(const sniff_msg *g, const sniff_msg *c) {
  return g->size == c->size && g->h.steps == c->h.steps && g->h.cache == c->h.cache &&
         g->h.cache_control == c->h.cache_control;
}

/* Whether the reference proxy reads its cache for request q at all: never for cache control 0
 * (a reload), which a request without the cache flag has too (the header's normalisation, done
 * when the message was framed). Otherwise it depends on what the cache holds and how old it is. */
static bool reads_cache(const sniff_msg *q) { return q->h.cache_control != 0; }

/* An upstream connection's context: the downstream request that caused it, in the golden and
 * in the capture. The reference proxy forwards what its client sent, so the capture's proxy is
 * judged against what the reference would have sent for the request the capture's client
 * sent, not against the golden's upstream bytes. */
typedef struct fwd_ctx {
  const sniff_msg *gq, *cq;
} fwd_ctx;

/* The request the reference would have sent upstream: the golden's upstream request g, with
 * each compared field that the reference forwarded as its client sent it (the same in g as in
 * the golden's downstream request) taken from the capture's downstream request instead. A
 * field the reference changed on the way keeps the golden's value. Without context (f NULL:
 * a downstream connection), g itself. */
static sniff_msg forwarded_request(const sniff_msg *g, const fwd_ctx *f) {
  sniff_msg e = *g;
  if (!f) return e;
  if (g->size == f->gq->size) e.size = f->cq->size;
  if (g->h.steps == f->gq->h.steps) e.h.steps = f->cq->h.steps;
  if (g->h.cache == f->gq->h.cache) e.h.cache = f->cq->h.cache;
  if (g->h.cache_control == f->gq->h.cache_control) e.h.cache_control = f->cq->h.cache_control;
  return e;
}

/* "; the reference's asks" or, where the capture's client asked otherwise, what the reference
 * would forward for it. */
static void say_reference(pend *p, bool from_client, bool ok) {
  if (ok) say(p, from_client ? ", as the reference forwards the client's request" : ", as in the reference");
  else say(p, from_client ? "; forwarding the client's request, the reference's" : "; the reference's");
}

/* "with steps, with the cache" and, when max_age, the cache control a request with the cache
 * flag carries ("max-age 0" or "max-age forever"). */
static void say_asks(pend *p, const calc_header *h, bool max_age) {
  say(p, "%s steps, %s the cache", h->steps ? "with" : "without", h->cache ? "with" : "without");
  if (!max_age || !h->cache) return;
  if (h->cache_control == CALC_CACHE_FOREVER) say(p, ", max-age forever");
  else say(p, ", max-age %u", h->cache_control);
}

/* request-header: the steps and cache flags and the max-age of each request of the same size,
 * against e (the golden's request, or what the reference would forward: from_client when that
 * differs). */
static void cmp_request_flags(cmp *x, const char *where, const sniff_conn *cc, const sniff_msg *e,
                              bool from_client, const sniff_msg *c, uint32_t i) {
  pend p;
  bool ok = e->h.steps == c->h.steps && e->h.cache == c->h.cache && e->h.cache_control == c->h.cache_control;
  /* the max-age is named where both carry one and they differ (without the cache flag it is 0) */
  bool max_age = e->h.cache && c->h.cache && e->h.cache_control != c->h.cache_control;
  begin(x, &p, SNIFF_CK_REQUEST_HEADER, ok, sniff_conn_party(cc, 0), cc);
  say(&p, "%s: request %u asks ", where, i + 1);
  say_asks(&p, &c->h, max_age);
  say_reference(&p, from_client, ok);
  if (!ok) {
    say(&p, " asks ");
    say_asks(&p, &e->h, max_age);
  }
  at(&p, c->pkt_first, c->ts_first);
  emit(x, &p);
}

/* Whose a response is: the answering program's when the question was what the reference asks;
 * when the request differs, is extra or was never sent (gq or cq NULL), the asking program's;
 * upstream (f), the capture's client's where the proxy forwarded what the reference would have
 * for that client's request and the client asked for something else than the golden's. */
static sniff_party response_party(const sniff_conn *cc, const fwd_ctx *f, const sniff_msg *gq,
                                  const sniff_msg *cq) {
  if (!gq || !cq) return sniff_conn_party(cc, 0);
  sniff_msg e = forwarded_request(gq, f);
  if (!same_request(&e, cq)) return sniff_conn_party(cc, 0);
  return same_request(gq, &e) ? sniff_conn_party(cc, 1) : SNIFF_PARTY_CLIENT;
}

/* Requests (dir 0) or responses (dir 1) of a paired connection, one by one. For responses,
 * gq/cq are the requests, which say whose a response of another size is (response_party).
 * f: an upstream connection's context (NULL downstream): its requests are judged against what
 * the reference would forward for the capture's client request (forwarded_request). */
static void cmp_msgs(cmp *x, const char *where, int dir, const sniff_conn *cc, const fwd_ctx *f,
                     const sniff_msg **g, uint32_t ng, const sniff_msg **c, uint32_t nc,
                     const sniff_msg **gq, uint32_t ngq, const sniff_msg **cq, uint32_t ncq) {
  const char *kind = dir ? "response" : "request";
  sniff_check k = dir ? SNIFF_CK_RESPONSE_SIZE : SNIFF_CK_REQUEST_SIZE;
  pend p;
  for (uint32_t i = 0; (i < ng || i < nc) && i < MAXM; i++) {
    sniff_party who = sniff_conn_party(cc, dir);
    if (dir && (i < ngq || i < ncq)) who = response_party(cc, f, i < ngq ? gq[i] : NULL, i < ncq ? cq[i] : NULL);
    bool asked_otherwise = who != sniff_conn_party(cc, dir);
    /* what the reference sends here: for an upstream request, what it would forward */
    sniff_msg e = {0};
    if (i < ng) e = dir ? *g[i] : forwarded_request(g[i], f);
    bool from_client = i < ng && !same_request(g[i], &e);
    if (i >= nc) {
      begin(x, &p, k, false, who, cc);
      say(&p, "%s: %s %u not seen (%u %s%s in all); the reference sends %u B here", where, kind, i + 1,
          nc, kind, nc == 1 ? "" : "s", e.size);
      emit(x, &p);
      continue;
    }
    if (i >= ng) {
      begin(x, &p, k, false, who, cc);
      say(&p, "%s: an extra %s %u of %u B; the reference sends %u %s%s here", where, kind, i + 1,
          c[i]->size, ng, kind, ng == 1 ? "" : "s");
      msg_at(&p, c[i]);
      emit(x, &p);
      continue;
    }
    bool size_ok = e.size == c[i]->size, whole = !e.complete || c[i]->complete;
    begin(x, &p, k, size_ok && whole, who, cc);
    if (!whole && size_ok) {
      say(&p, "%s: %s %u announces %u B but not all of them came; the reference's arrives whole", where,
          kind, i + 1, c[i]->size);
    } else {
      say(&p, "%s: %s %u of %u B", where, kind, i + 1, c[i]->size);
      if (!size_ok) say(&p, " seen");
      say_reference(&p, from_client, size_ok);
      if (!size_ok) say(&p, " is %u B", e.size);
    }
    if (asked_otherwise)
      say(&p, " (the %srequest asked for something else)", who == SNIFF_PARTY_CLIENT && f ? "client's " : "");
    msg_at(&p, c[i]);
    emit(x, &p);
    if (!dir && size_ok) cmp_request_flags(x, where, cc, &e, from_client, c[i], i);
    /* the golden's split is the reference's for its size, and for any size when it sends the
     * message in one segment of its own */
    if (!size_ok || (e.size != g[i]->size && !sniff_msg_single(g[i]))) continue;
    who = sniff_conn_party(cc, dir);  /* a message's split is its sender's */
    bool split_ok = same_split(g[i], c[i]);
    begin(x, &p, SNIFF_CK_SEGMENTATION, split_ok, who, cc);
    say(&p, "%s: %s %u (%u B) in ", where, kind, i + 1, c[i]->size);
    say_segs(&p, c[i]);
    if (split_ok) {
      say(&p, ", as in the reference");
    } else {
      say(&p, "; the reference sends it in ");
      say_segs(&p, g[i]);
      if (sniff_msg_single(g[i])) say(&p, " of its own");
    }
    msg_at(&p, c[i]);
    emit(x, &p);
  }
}

static void cmp_conn(cmp *x, const sniff_conn *g, const sniff_conn *c, const char *where, const fwd_ctx *f);

/* The upstream connections each request of a client->proxy connection caused. Where the
 * capture's client asked for something else than the golden's, whether the request is
 * forwarded, and how often, follows from that request (the cache's key holds the payload and
 * the steps flag, and the client's max-age bounds the age of an answer it takes from the
 * cache): the item is the client's then. Only a max-age 0 (a request without the cache flag
 * has it too) decides it without the cache's state: the reference forwards such a request on
 * one upstream connection, so a proxy answering it from its cache is at fault whatever the
 * golden's request got. */
static void cmp_upstream(cmp *x, const sniff_conn *g, const sniff_conn *c, const char *where,
                         const sniff_msg **gq, uint32_t ngq, const sniff_msg **cq, uint32_t ncq,
                         const sniff_msg **gp, uint32_t ngp, const sniff_msg **cp, uint32_t ncp) {
  pend p;
  for (uint32_t i = 0; i < ngq && i < ncq && i < MAXM; i++) {
    const sniff_conn *gu[MAXU], *cu[MAXU];
    uint32_t ngu = sniff_red_upstreams(x->g, g->id, gq[i]->index, gu, MAXU);
    uint32_t ncu = sniff_red_upstreams(x->c, c->id, cq[i]->index, cu, MAXU);
    char w[200];
    snprintf(w, sizeof w, "%s request %u", where, i + 1);
    bool asked_otherwise = !same_request(gq[i], cq[i]);
    /* A request the reference never answers from its cache it forwards on one upstream
     * connection, whatever the golden's request got: another count is then the proxy's fault,
     * and that one connection where the golden's was a cache hit the client's. */
    bool reload = !reads_cache(cq[i]);
    uint32_t want = reload && !ngu ? 1 : ngu;
    bool ok = ncu == ngu && ncu == want;
    bool clients = asked_otherwise && (!reload || ncu == want);
    begin(x, &p, ngu ? SNIFF_CK_UPSTREAM : SNIFF_CK_CACHE_HIT, ok, clients ? SNIFF_PARTY_CLIENT : SNIFF_PARTY_PROXY,
          c);
    if (!ngu && !ncu) {
      say(&p, "%s: answered without an upstream connection (a cache hit)%s", w, ok ? ", as in the reference" : "");
      at(&p, cq[i]->pkt_last, cq[i]->ts_last);
      if (i < ncp) at(&p, cp[i]->pkt_first, cp[i]->ts_first);
    } else {
      if (!ncu) say(&p, "%s: answered without an upstream connection", w);
      else say(&p, "%s: %u upstream connection%s (#", w, ncu, ncu == 1 ? "" : "s");
      for (uint32_t k = 0; k < ncu && k < MAXU; k++) {
        say(&p, "%s%u", k ? ", #" : "", cu[k]->id);
        at(&p, cu[k]->pkt_first, cu[k]->ts_first);
      }
      if (ncu) say(&p, ")");
      if (ok) say(&p, ", as in the reference");
      else if (!ngu) say(&p, "; the reference answers it from its cache without contacting the server");
      else if (!reload) say(&p, "; the reference opens %u", ngu);
      if (!ncu) at(&p, cq[i]->pkt_last, cq[i]->ts_last);
    }
    if (clients) say(&p, " (the client's request asked for something else)");
    if (reload && !ok)
      say(&p, "; the reference forwards a request %s on one upstream connection%s",
          cq[i]->h.cache ? "with max-age 0" : "without the cache flag",
          ncu == want ? ", as here" : !ncu ? ", never answering it from its cache" : "");
    emit(x, &p);
    fwd_ctx f = {gq[i], cq[i]};
    for (uint32_t k = 0; k < ngu && k < ncu && k < MAXU; k++) {
      char wu[260];
      snprintf(wu, sizeof wu, "%s upstream %u (#%u)", w, k + 1, cu[k]->id);
      cmp_conn(x, gu[k], cu[k], wu, &f);
      if (i >= ngp || i >= ncp || sniff_upstream_done(gu[k], NULL) > gp[i]->ts_first) continue;
      /* the reference was done with the upstream connection before it answered */
      uint64_t done_pkt = 0, done = sniff_upstream_done(cu[k], &done_pkt);
      begin(x, &p, SNIFF_CK_ORDERING, done <= cp[i]->ts_first, SNIFF_PARTY_PROXY, c);
      if (done <= cp[i]->ts_first)
        say(&p, "%s: the proxy was done with it before answering its client, as in the reference", wu);
      else
        say(&p, "%s: the proxy answered its client before it was done with the upstream connection%s; "
                "the reference closes it first", wu, done == UINT64_MAX ? " (never closed)" : "");
      if (done_pkt) at(&p, done_pkt, done);
      at(&p, cp[i]->pkt_first, cp[i]->ts_first);
      emit(x, &p);
    }
  }
}

/* Sides that sent a RST: bit 0 the originator, bit 1 the responder. */
static int rst_sides(const sniff_conn *c) { return (c->d[0].rst ? 1 : 0) | (c->d[1].rst ? 2 : 0); }

static void cmp_end(cmp *x, const sniff_conn *g, const sniff_conn *c, const char *where) {
  sniff_end ge = sniff_conn_end(g), ce = sniff_conn_end(c);
  /* the side that leads the reference's teardown, and the capture's */
  int glead = ge == SNIFF_END_FIN_CLIENT || ge == SNIFF_END_RST_CLIENT ? 0 : 1;
  int clead = ce == SNIFF_END_FIN_CLIENT || ce == SNIFF_END_RST_CLIENT ? 0 : 1;
  const char *gname = sniff_party_name(sniff_conn_party(c, glead));
  const char *cname = sniff_party_name(sniff_conn_party(c, clead));
  pend p;
  /* Any RST counts, also one after a FIN (a peer that answers the other's FIN with RST). */
  int grs = rst_sides(g), crs = rst_sides(c);
  int extra = crs & ~grs, lacking = grs & ~crs;
  int side = extra ? (extra & 1 ? 0 : 1) : lacking ? (lacking & 1 ? 0 : 1) : crs ? (crs & 1 ? 0 : 1) : glead;
  begin(x, &p, SNIFF_CK_RST, grs == crs, sniff_conn_party(c, side), c);
  if (crs) {
    if (crs == 3) say(&p, "%s: both sides reset the connection (RST)", where);
    else say(&p, "%s: the %s reset the connection (RST)", where, sniff_party_name(sniff_conn_party(c, side)));
    const sniff_dir *d = &c->d[crs & 1 ? 0 : 1];
    if (c->first_fin >= 0 && c->d[c->first_fin].fin_ts < d->rst_ts)
      say(&p, " after the %s's FIN", sniff_party_name(sniff_conn_party(c, c->first_fin)));
    for (int k = 0; k < 2; k++)
      if (c->d[k].rst) at(&p, c->d[k].rst_pkt, c->d[k].rst_ts);
  } else {
    say(&p, "%s: no RST", where);
  }
  if (grs == crs) say(&p, ", as in the reference");
  else if (lacking) say(&p, "; in the reference the %s resets it", sniff_party_name(sniff_conn_party(c, side)));
  else if (ge == SNIFF_END_OPEN) say(&p, "; the reference leaves it open");
  else say(&p, "; the reference closes it with FIN, the %s first", gname);
  if (!crs && lacking) {
    if (c->d[0].fin) at(&p, c->d[0].fin_pkt, c->d[0].fin_ts);
    if (c->d[1].fin) at(&p, c->d[1].fin_pkt, c->d[1].fin_ts);
  }
  emit(x, &p);
  /* Every connection has a teardown item (so a run has the same items whatever it does); one
   * reset before any FIN, in either capture, is the rst check's: its teardown item passes. */
  if (end_is_rst(ge) || end_is_rst(ce)) {
    begin(x, &p, SNIFF_CK_TEARDOWN, true, sniff_conn_party(c, glead), c);
    say(&p, "%s: reset before any FIN (the rst check judges it)", where);
    emit(x, &p);
    return;
  }
  bool ok = ge == ce;
  begin(x, &p, SNIFF_CK_TEARDOWN, ok, sniff_conn_party(c, ce == SNIFF_END_OPEN ? glead : clead), c);
  if (ce == SNIFF_END_OPEN) {
    say(&p, "%s: no FIN seen (left open)", where);
    at(&p, c->pkt_last, c->ts_last);
  } else {
    say(&p, "%s: the %s sent the first FIN", where, cname);
    at(&p, c->d[clead].fin_pkt, c->d[clead].fin_ts);
  }
  if (ok) say(&p, ", as in the reference");
  else if (ge == SNIFF_END_OPEN) say(&p, "; the reference leaves it open");
  else say(&p, "; in the reference the %s closes first", gname);
  emit(x, &p);
}

/* f: an upstream connection's context (NULL for a downstream connection). */
static void cmp_conn(cmp *x, const sniff_conn *g, const sniff_conn *c, const char *where, const fwd_ctx *f) {
  sniff_end ge = sniff_conn_end(g), ce = sniff_conn_end(c);
  bool grf = ge == SNIFF_END_REFUSED, crf = ce == SNIFF_END_REFUSED;
  pend p;
  if (grf || crf) {
    begin(x, &p, SNIFF_CK_REFUSED, grf == crf, sniff_conn_party(c, 1), c);
    if (crf) say(&p, "%s: the SYN was answered by RST (nobody listening)", where);
    else say(&p, "%s: the connection was accepted", where);
    if (grf == crf) say(&p, ", as in the reference");
    else if (grf) say(&p, "; in the reference the server is down and the SYN is answered by RST");
    else say(&p, "; the reference accepts it");
    at(&p, c->d[0].syn_pkt, c->d[0].syn_ts);
    at(&p, c->d[1].syn_pkt, c->d[1].syn_ts);
    at(&p, c->d[1].rst_pkt, c->d[1].rst_ts);
    emit(x, &p);
    return;
  }
  begin(x, &p, SNIFF_CK_HANDSHAKE, g->established == c->established, sniff_conn_party(c, 0), c);
  say(&p, "%s: 3-way handshake %s", where, c->established ? "seen" : "not seen");
  if (g->established == c->established) say(&p, ", as in the reference");
  else say(&p, g->established ? "; the reference's connection opens with one" : "; the reference has none");
  at(&p, c->d[0].syn_pkt, c->d[0].syn_ts);
  at(&p, c->d[1].syn_pkt, c->d[1].syn_ts);
  emit(x, &p);
  const sniff_msg *gq[MAXM], *cq[MAXM], *gp[MAXM], *cp[MAXM];
  uint32_t ngq = sniff_red_msgs(x->g, g->id, 0, gq, MAXM), ncq = sniff_red_msgs(x->c, c->id, 0, cq, MAXM);
  uint32_t ngp = sniff_red_msgs(x->g, g->id, 1, gp, MAXM), ncp = sniff_red_msgs(x->c, c->id, 1, cp, MAXM);
  cmp_msgs(x, where, 0, c, f, gq, ngq, cq, ncq, NULL, 0, NULL, 0);
  if (g->role == SNIFF_ROLE_CLIENT_PROXY) cmp_upstream(x, g, c, where, gq, ngq, cq, ncq, gp, ngp, cp, ncp);
  cmp_msgs(x, where, 1, c, f, gp, ngp, cp, ncp, gq, ngq, cq, ncq);
  cmp_end(x, g, c, where);
}

/* Downstream connections of an analysis, each with its reduced text (its signature). */
typedef struct dlist {
  const sniff_conn **c;
  char **sig;
  uint32_t n;
  int32_t *match;   /* index into the other list, -1 */
} dlist;

static bool dlist_build(dlist *l, const sniff_red *r) {
  memset(l, 0, sizeof *l);
  const sniff_an *an = r->an;
  l->c = calc_calloc((size_t)an->nconns + 1, sizeof *l->c);
  l->sig = calc_calloc((size_t)an->nconns + 1, sizeof *l->sig);
  l->match = calc_calloc((size_t)an->nconns + 1, sizeof *l->match);
  if (!l->c || !l->sig || !l->match) return false;
  calc_buf b;
  calc_buf_init(&b, 0);
  bool ok = true;
  for (uint32_t i = 0; i < an->nconns && ok; i++) {
    if (!sniff_downstream(&an->conns[i])) continue;
    calc_buf_reset(&b);
    sniff_trace_conn(r, &an->conns[i], "", &b);
    l->c[l->n] = &an->conns[i];
    l->match[l->n] = -1;
    l->sig[l->n] = calc_strndup(b.data ? (const char *)b.data : "", b.len);
    ok = l->sig[l->n++] != NULL;
  }
  ok = ok && !b.failed;
  calc_buf_free(&b);
  return ok;
}

static void dlist_free(dlist *l) {
  for (uint32_t i = 0; l->sig && i < l->n; i++) calc_free(l->sig[i]);
  calc_free(l->c);
  calc_free(l->sig);
  calc_free(l->match);
}

/* The capture's connections sorted by signature (then position): a golden connection finds the
 * first unpaired capture connection with its behaviour by a binary search, not a scan of them
 * all, so pairing costs O(n log n) however many connections differ. */
typedef struct sig_ref {
  const char *sig;
  uint32_t pos;             /* index in the capture's list */
} sig_ref;
typedef struct sig_index {
  sig_ref *ref;
  uint32_t *next;           /* at the first slot of a run of equal signatures: the run's first
                             * slot that may still be unpaired (the slots before it are paired) */
  uint32_t n;
} sig_index;

static int cmp_sig_ref(const void *a, const void *b) {
  const sig_ref *x = a, *y = b;
  int d = strcmp(x->sig, y->sig);
  return d ? d : (x->pos > y->pos) - (x->pos < y->pos);
}

static bool sig_index_build(sig_index *ix, const dlist *C) {
  ix->n = C->n;
  ix->ref = calc_calloc((size_t)C->n + 1, sizeof *ix->ref);
  ix->next = calc_calloc((size_t)C->n + 1, sizeof *ix->next);
  if (!ix->ref || !ix->next) return false;
  for (uint32_t j = 0; j < C->n; j++) {
    ix->ref[j].sig = C->sig[j];
    ix->ref[j].pos = j;
    ix->next[j] = j;
  }
  qsort(ix->ref, C->n, sizeof *ix->ref, cmp_sig_ref);
  return true;
}

static void sig_index_free(sig_index *ix) {
  calc_free(ix->ref);
  calc_free(ix->next);
}

/* The first capture connection (lowest position) that is unpaired and has signature sig, or -1. */
static int32_t sig_index_first_unpaired(sig_index *ix, const dlist *C, const char *sig) {
  uint32_t lo = 0, hi = ix->n;  /* the run of sig starts at the first slot not below it */
  while (lo < hi) {
    uint32_t mid = lo + (hi - lo) / 2;
    if (strcmp(ix->ref[mid].sig, sig) < 0) lo = mid + 1;
    else hi = mid;
  }
  if (lo == ix->n || strcmp(ix->ref[lo].sig, sig)) return -1;
  /* the run's connections are paired in any order (the same position is tried first), but
   * once paired they stay so: the run's cursor only moves forward */
  uint32_t k = ix->next[lo];
  while (k < ix->n && C->match[ix->ref[k].pos] >= 0 && !strcmp(ix->ref[k].sig, sig)) k++;
  ix->next[lo] = k;
  return k < ix->n && !strcmp(ix->ref[k].sig, sig) ? (int32_t)ix->ref[k].pos : -1;
}

/* Pairing (scenarios.md: "how segments of different connections interleave" varies):
 * 1. each golden connection takes the first unpaired capture connection with the same reduced
 *    behaviour, trying the same position first: concurrent clients may come in any order;
 * 2. the rest are paired in order and compared check by check; leftovers are missing/extra;
 * 3. ordering: two golden connections one after the other in time (the first ended before the
 *    second began: the scenario's script forced that order) must keep their order.
 * false: out of memory. */
static bool pair(dlist *G, dlist *C) {
  sig_index ix;
  bool *leftover = calc_calloc((size_t)G->n + 1, sizeof *leftover);
  bool ok = sig_index_build(&ix, C) && leftover;
  for (uint32_t i = 0; ok && i < G->n; i++) {
    bool same_place = i < C->n && C->match[i] < 0 && !strcmp(G->sig[i], C->sig[i]);
    int32_t k = same_place ? (int32_t)i : sig_index_first_unpaired(&ix, C, G->sig[i]);
    if (k < 0) continue;
    G->match[i] = k;
    C->match[k] = (int32_t)i;
  }
  sig_index_free(&ix);
  uint32_t j = 0, nleft = 0;
  for (uint32_t i = 0; ok && i < G->n; i++) {
    if (G->match[i] >= 0) continue;
    while (j < C->n && C->match[j] >= 0) j++;
    if (j >= C->n) break;
    G->match[i] = (int32_t)j;
    C->match[j] = (int32_t)i;
    leftover[i] = true;
    nleft++;
  }
  /* A pair made in order must not reverse two golden connections the script ran one after
   * the other: when a capture connection behaved as the golden's next one (a race in the
   * program, say), the leftover takes the earlier capture connection, and the differences
   * show in the checks of each connection rather than as an order the clients never had.
   * Adjacent swaps, bounded: each removes one inversion. */
  for (uint32_t pass = 0; ok && nleft && pass < 64; pass++) {
    bool swapped = false;
    for (uint32_t i = 0; i + 1 < G->n; i++) {
      int32_t a = G->match[i], b = G->match[i + 1];
      if (a < 0 || b < 0 || a < b || !(leftover[i] || leftover[i + 1])) continue;
      if (G->c[i]->ts_last >= G->c[i + 1]->ts_first) continue;  /* overlapping: any order */
      G->match[i] = b;
      G->match[i + 1] = a;
      C->match[b] = (int32_t)i;
      C->match[a] = (int32_t)(i + 1);
      leftover[i] = leftover[i + 1] = true;
      swapped = true;
    }
    if (!swapped) break;
  }
  calc_free(leftover);
  return ok;
}

static void compare_lists(cmp *x, const dlist *G, const dlist *C) {
  pend p;
  for (uint32_t i = 0; i < G->n; i++) {
    const sniff_conn *g = G->c[i];
    if (G->match[i] < 0) {
      begin(x, &p, SNIFF_CK_CONNECTIONS, false, SNIFF_PARTY_CLIENT, NULL);
      say(&p, "connection %u (%s): not in the capture; the reference has a %s connection here", i + 1,
          sniff_role_name(g->role), sniff_role_name(g->role));
      emit(x, &p);
      continue;
    }
    const sniff_conn *c = C->c[G->match[i]];
    begin(x, &p, SNIFF_CK_CONNECTIONS, true, SNIFF_PARTY_CLIENT, c);
    say(&p, "connection %u (%s): the capture's #%u", i + 1, sniff_role_name(g->role), c->id);
    at(&p, c->pkt_first, c->ts_first);
    emit(x, &p);
    if (g->role != c->role) {
      begin(x, &p, SNIFF_CK_ORDERING, false, SNIFF_PARTY_CLIENT, c);
      say(&p, "connection %u (#%u): a %s connection seen; the reference has a %s connection here", i + 1,
          c->id, sniff_role_name(c->role), sniff_role_name(g->role));
      at(&p, c->pkt_first, c->ts_first);
      emit(x, &p);
      continue;
    }
    char w[96];
    snprintf(w, sizeof w, "connection %u (%s, #%u)", i + 1, sniff_role_name(g->role), c->id);
    cmp_conn(x, g, c, w, NULL);
  }
  for (uint32_t j = 0; j < C->n; j++) {
    if (C->match[j] >= 0) continue;
    const sniff_conn *c = C->c[j];
    begin(x, &p, SNIFF_CK_CONNECTIONS, false, SNIFF_PARTY_CLIENT, c);
    say(&p, "the capture's #%u (%s): an extra connection; the reference has %u connection%s of clients",
        c->id, sniff_role_name(c->role), G->n, G->n == 1 ? "" : "s");
    at(&p, c->pkt_first, c->ts_first);
    emit(x, &p);
  }
  for (uint32_t i = 0; i + 1 < G->n; i++) {
    if (G->match[i] < 0 || G->match[i + 1] < 0) continue;
    if (G->c[i]->ts_last >= G->c[i + 1]->ts_first) continue;  /* overlapping: any order */
    const sniff_conn *a = C->c[G->match[i]], *b = C->c[G->match[i + 1]];
    bool ok = a->ts_first <= b->ts_first;
    begin(x, &p, SNIFF_CK_ORDERING, ok, SNIFF_PARTY_CLIENT, b);
    if (ok)
      say(&p, "connections %u and %u (#%u, #%u): one after the other, as in the reference", i + 1, i + 2,
          a->id, b->id);
    else
      say(&p, "connections %u and %u: #%u began before #%u; in the reference connection %u ends before %u "
              "begins", i + 1, i + 2, b->id, a->id, i + 1, i + 2);
    at(&p, a->pkt_first, a->ts_first);
    at(&p, b->pkt_first, b->ts_first);
    emit(x, &p);
  }
}

uint32_t sniff_verify(const sniff_an *golden, const sniff_an *capture, sniff_report *rep) {
  sniff_red g, c;
  sniff_red_init(&g, golden);
  sniff_red_init(&c, capture);
  rep->ts_base = capture->ts_first;
  cmp x = {rep, &g, &c};
  dlist G, C;
  memset(&G, 0, sizeof G);
  memset(&C, 0, sizeof C);
  if (g.ok && c.ok && dlist_build(&G, &g) && dlist_build(&C, &c) && pair(&G, &C)) {
    compare_lists(&x, &G, &C);
  } else {
    rep->oom = true;
  }
  dlist_free(&G);
  dlist_free(&C);
  sniff_red_free(&g);
  sniff_red_free(&c);
  if (rep->oom) rep->failed++;
  return rep->failed;
}

uint32_t sniff_compare(const sniff_an *golden, const sniff_an *capture, calc_buf *out) {
  sniff_report rep;
  sniff_report_init(&rep);
  rep.failed_details_only = true;
  uint32_t n = sniff_verify(golden, capture, &rep);
  for (uint32_t i = 0; i < rep.n; i++) {
    const sniff_item *it = &rep.items[i];
    if (it->passed) continue;
    calc_buf_printf(out, "FAIL %s: %s\n", sniff_check_name((sniff_check)it->check), sniff_item_detail(&rep, it));
  }
  if (rep.oom) calc_buf_printf(out, "FAIL internal: %s\n", calc_strerror(CALC_ERR_NOMEM));
  sniff_report_free(&rep);
  return n;
}
