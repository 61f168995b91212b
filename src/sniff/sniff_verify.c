/* sniff_verify.c: a capture judged against a golden capture, check by check.
 *
 * Both analyses are reduced (sniff_reduce.h); downstream connections are paired by behaviour
 * (sniff_pair.h), then every paired connection, message and upstream connection is compared
 * under docs/scenarios.md's tolerance rules. Each comparison is an item of a named check, passed or
 * failed, with the program it is about (the one at fault when it fails), the capture's
 * connection, frame numbers and time, and one line of text saying what was seen and what the
 * reference does instead (sniff_report.h). */
#include <stdio.h>
#include <string.h>

#include "sniff_pair.h"
#include "sniff_reduce.h"
#include "sniff_report.h"

typedef struct cmp {
  sniff_report *rep;
  const sniff_red *g, *c;
} cmp;

static bool end_is_rst(sniff_end e) { return e == SNIFF_END_RST_CLIENT || e == SNIFF_END_RST_SERVER; }

/* "12+552" for a message's segments. */
static void say_segs(rep_item *p, const sniff_msg *m) {
  if (m->nseg == 1) {
    rep_say(p, "one segment");
  } else {
    rep_say(p, "%u segments (", m->nseg);
    for (uint32_t i = 0; i < m->nseg && i < SNIFF_MSG_SEGS; i++) rep_say(p, "%s%u", i ? "+" : "", m->segs[i]);
    rep_say(p, m->nseg > SNIFF_MSG_SEGS ? "+...)" : ")");
  }
  if (m->shares_segment) rep_say(p, " shared with another message");
}

static bool same_split(const sniff_msg *g, const sniff_msg *c) {
  if (sniff_msg_single(g)) return sniff_msg_single(c);
  if (g->nseg != c->nseg || g->shares_segment != c->shares_segment) return false;
  for (uint32_t i = 0; i < g->nseg && i < SNIFF_MSG_SEGS; i++)
    if (g->segs[i] != c->segs[i]) return false;
  return true;
}

static void msg_at(rep_item *p, const sniff_msg *m) {
  rep_at(p, m->pkt_first, m->ts_first);
  rep_at(p, m->pkt_last, m->ts_last);
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
static void say_reference(rep_item *p, bool from_client, bool ok) {
  if (ok) rep_say(p, from_client ? ", as the reference forwards the client's request" : ", as in the reference");
  else rep_say(p, from_client ? "; forwarding the client's request, the reference's" : "; the reference's");
}

/* "with steps, with the cache" and, when max_age, the cache control a request with the cache
 * flag carries ("max-age 0" or "max-age forever"). */
static void say_asks(rep_item *p, const calc_header *h, bool max_age) {
  rep_say(p, "%s steps, %s the cache", h->steps ? "with" : "without", h->cache ? "with" : "without");
  if (!max_age || !h->cache) return;
  if (h->cache_control == CALC_CACHE_FOREVER) rep_say(p, ", max-age forever");
  else rep_say(p, ", max-age %u", h->cache_control);
}

/* request-header: the steps and cache flags and the max-age of each request of the same size,
 * against e (the golden's request, or what the reference would forward: from_client when that
 * differs). */
static void cmp_request_flags(cmp *x, const char *where, const sniff_conn *cc, const sniff_msg *e,
                              bool from_client, const sniff_msg *c, uint32_t i) {
  rep_item p;
  bool ok = e->h.steps == c->h.steps && e->h.cache == c->h.cache && e->h.cache_control == c->h.cache_control;
  /* the max-age is named where both carry one and they differ (without the cache flag it is 0) */
  bool max_age = e->h.cache && c->h.cache && e->h.cache_control != c->h.cache_control;
  rep_begin(x->rep, &p, SNIFF_CK_REQUEST_HEADER, ok, sniff_conn_party(cc, 0), cc);
  rep_say(&p, "%s: request %u asks ", where, i + 1);
  say_asks(&p, &c->h, max_age);
  say_reference(&p, from_client, ok);
  if (!ok) {
    rep_say(&p, " asks ");
    say_asks(&p, &e->h, max_age);
  }
  rep_at(&p, c->pkt_first, c->ts_first);
  rep_emit(x->rep, &p);
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
  rep_item p;
  for (uint32_t i = 0; (i < ng || i < nc) && i < MAXM; i++) {
    sniff_party who = sniff_conn_party(cc, dir);
    if (dir && (i < ngq || i < ncq)) who = response_party(cc, f, i < ngq ? gq[i] : NULL, i < ncq ? cq[i] : NULL);
    bool asked_otherwise = who != sniff_conn_party(cc, dir);
    /* what the reference sends here: for an upstream request, what it would forward */
    sniff_msg e = {0};
    if (i < ng) e = dir ? *g[i] : forwarded_request(g[i], f);
    bool from_client = i < ng && !same_request(g[i], &e);
    if (i >= nc) {
      rep_begin(x->rep, &p, k, false, who, cc);
      rep_say(&p, "%s: %s %u not seen (%u %s%s in all); the reference sends %u B here", where, kind, i + 1,
          nc, kind, nc == 1 ? "" : "s", e.size);
      rep_emit(x->rep, &p);
      continue;
    }
    if (i >= ng) {
      rep_begin(x->rep, &p, k, false, who, cc);
      rep_say(&p, "%s: an extra %s %u of %u B; the reference sends %u %s%s here", where, kind, i + 1,
          c[i]->size, ng, kind, ng == 1 ? "" : "s");
      msg_at(&p, c[i]);
      rep_emit(x->rep, &p);
      continue;
    }
    bool size_ok = e.size == c[i]->size, whole = !e.complete || c[i]->complete;
    rep_begin(x->rep, &p, k, size_ok && whole, who, cc);
    if (!whole && size_ok) {
      rep_say(&p, "%s: %s %u announces %u B but not all of them came; the reference's arrives whole", where,
          kind, i + 1, c[i]->size);
    } else {
      rep_say(&p, "%s: %s %u of %u B", where, kind, i + 1, c[i]->size);
      if (!size_ok) rep_say(&p, " seen");
      say_reference(&p, from_client, size_ok);
      if (!size_ok) rep_say(&p, " is %u B", e.size);
    }
    if (asked_otherwise)
      rep_say(&p, " (the %srequest asked for something else)", who == SNIFF_PARTY_CLIENT && f ? "client's " : "");
    msg_at(&p, c[i]);
    rep_emit(x->rep, &p);
    if (!dir && size_ok) cmp_request_flags(x, where, cc, &e, from_client, c[i], i);
    /* the golden's split is the reference's for its size, and for any size when it sends the
     * message in one segment of its own */
    if (!size_ok || (e.size != g[i]->size && !sniff_msg_single(g[i]))) continue;
    who = sniff_conn_party(cc, dir);  /* a message's split is its sender's */
    bool split_ok = same_split(g[i], c[i]);
    rep_begin(x->rep, &p, SNIFF_CK_SEGMENTATION, split_ok, who, cc);
    rep_say(&p, "%s: %s %u (%u B) in ", where, kind, i + 1, c[i]->size);
    say_segs(&p, c[i]);
    if (split_ok) {
      rep_say(&p, ", as in the reference");
    } else {
      rep_say(&p, "; the reference sends it in ");
      say_segs(&p, g[i]);
      if (sniff_msg_single(g[i])) rep_say(&p, " of its own");
    }
    msg_at(&p, c[i]);
    rep_emit(x->rep, &p);
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
  rep_item p;
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
    rep_begin(x->rep, &p, ngu ? SNIFF_CK_UPSTREAM : SNIFF_CK_CACHE_HIT, ok, clients ? SNIFF_PARTY_CLIENT : SNIFF_PARTY_PROXY,
          c);
    if (!ngu && !ncu) {
      rep_say(&p, "%s: answered without an upstream connection (a cache hit)%s", w, ok ? ", as in the reference" : "");
      rep_at(&p, cq[i]->pkt_last, cq[i]->ts_last);
      if (i < ncp) rep_at(&p, cp[i]->pkt_first, cp[i]->ts_first);
    } else {
      if (!ncu) rep_say(&p, "%s: answered without an upstream connection", w);
      else rep_say(&p, "%s: %u upstream connection%s (#", w, ncu, ncu == 1 ? "" : "s");
      for (uint32_t k = 0; k < ncu && k < MAXU; k++) {
        rep_say(&p, "%s%u", k ? ", #" : "", cu[k]->id);
        rep_at(&p, cu[k]->pkt_first, cu[k]->ts_first);
      }
      if (ncu) rep_say(&p, ")");
      if (ok) rep_say(&p, ", as in the reference");
      else if (!ngu) rep_say(&p, "; the reference answers it from its cache without contacting the server");
      else if (!reload) rep_say(&p, "; the reference opens %u", ngu);
      if (!ncu) rep_at(&p, cq[i]->pkt_last, cq[i]->ts_last);
    }
    if (clients) rep_say(&p, " (the client's request asked for something else)");
    if (reload && !ok)
      rep_say(&p, "; the reference forwards a request %s on one upstream connection%s",
          cq[i]->h.cache ? "with max-age 0" : "without the cache flag",
          ncu == want ? ", as here" : !ncu ? ", never answering it from its cache" : "");
    rep_emit(x->rep, &p);
    fwd_ctx f = {gq[i], cq[i]};
    for (uint32_t k = 0; k < ngu && k < ncu && k < MAXU; k++) {
      char wu[260];
      snprintf(wu, sizeof wu, "%s upstream %u (#%u)", w, k + 1, cu[k]->id);
      cmp_conn(x, gu[k], cu[k], wu, &f);
      if (i >= ngp || i >= ncp || sniff_upstream_done(gu[k], NULL) > gp[i]->ts_first) continue;
      /* the reference was done with the upstream connection before it answered */
      uint64_t done_pkt = 0, done = sniff_upstream_done(cu[k], &done_pkt);
      rep_begin(x->rep, &p, SNIFF_CK_ORDERING, done <= cp[i]->ts_first, SNIFF_PARTY_PROXY, c);
      if (done <= cp[i]->ts_first)
        rep_say(&p, "%s: the proxy was done with it before answering its client, as in the reference", wu);
      else
        rep_say(&p, "%s: the proxy answered its client before it was done with the upstream connection%s; "
                "the reference closes it first", wu, done == UINT64_MAX ? " (never closed)" : "");
      if (done_pkt) rep_at(&p, done_pkt, done);
      rep_at(&p, cp[i]->pkt_first, cp[i]->ts_first);
      rep_emit(x->rep, &p);
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
  rep_item p;
  /* Any RST counts, also one after a FIN (a peer that answers the other's FIN with RST). */
  int grs = rst_sides(g), crs = rst_sides(c);
  int extra = crs & ~grs, lacking = grs & ~crs;
  int side = extra ? (extra & 1 ? 0 : 1) : lacking ? (lacking & 1 ? 0 : 1) : crs ? (crs & 1 ? 0 : 1) : glead;
  rep_begin(x->rep, &p, SNIFF_CK_RST, grs == crs, sniff_conn_party(c, side), c);
  if (crs) {
    if (crs == 3) rep_say(&p, "%s: both sides reset the connection (RST)", where);
    else rep_say(&p, "%s: the %s reset the connection (RST)", where, sniff_party_name(sniff_conn_party(c, side)));
    const sniff_dir *d = &c->d[crs & 1 ? 0 : 1];
    if (c->first_fin >= 0 && c->d[c->first_fin].fin_ts < d->rst_ts)
      rep_say(&p, " after the %s's FIN", sniff_party_name(sniff_conn_party(c, c->first_fin)));
    for (int k = 0; k < 2; k++)
      if (c->d[k].rst) rep_at(&p, c->d[k].rst_pkt, c->d[k].rst_ts);
  } else {
    rep_say(&p, "%s: no RST", where);
  }
  if (grs == crs) rep_say(&p, ", as in the reference");
  else if (lacking) rep_say(&p, "; in the reference the %s resets it", sniff_party_name(sniff_conn_party(c, side)));
  else if (ge == SNIFF_END_OPEN) rep_say(&p, "; the reference leaves it open");
  else rep_say(&p, "; the reference closes it with FIN, the %s first", gname);
  if (!crs && lacking) {
    if (c->d[0].fin) rep_at(&p, c->d[0].fin_pkt, c->d[0].fin_ts);
    if (c->d[1].fin) rep_at(&p, c->d[1].fin_pkt, c->d[1].fin_ts);
  }
  rep_emit(x->rep, &p);
  /* Every connection has a teardown item (so a run has the same items whatever it does); one
   * reset before any FIN, in either capture, is the rst check's: its teardown item passes. */
  if (end_is_rst(ge) || end_is_rst(ce)) {
    rep_begin(x->rep, &p, SNIFF_CK_TEARDOWN, true, sniff_conn_party(c, glead), c);
    rep_say(&p, "%s: reset before any FIN (the rst check judges it)", where);
    rep_emit(x->rep, &p);
    return;
  }
  bool ok = ge == ce;
  rep_begin(x->rep, &p, SNIFF_CK_TEARDOWN, ok, sniff_conn_party(c, ce == SNIFF_END_OPEN ? glead : clead), c);
  if (ce == SNIFF_END_OPEN) {
    rep_say(&p, "%s: no FIN seen (left open)", where);
    rep_at(&p, c->pkt_last, c->ts_last);
  } else {
    rep_say(&p, "%s: the %s sent the first FIN", where, cname);
    rep_at(&p, c->d[clead].fin_pkt, c->d[clead].fin_ts);
  }
  if (ok) rep_say(&p, ", as in the reference");
  else if (ge == SNIFF_END_OPEN) rep_say(&p, "; the reference leaves it open");
  else rep_say(&p, "; in the reference the %s closes first", gname);
  rep_emit(x->rep, &p);
}

/* f: an upstream connection's context (NULL for a downstream connection). */
static void cmp_conn(cmp *x, const sniff_conn *g, const sniff_conn *c, const char *where, const fwd_ctx *f) {
  sniff_end ge = sniff_conn_end(g), ce = sniff_conn_end(c);
  bool grf = ge == SNIFF_END_REFUSED, crf = ce == SNIFF_END_REFUSED;
  rep_item p;
  if (grf || crf) {
    rep_begin(x->rep, &p, SNIFF_CK_REFUSED, grf == crf, sniff_conn_party(c, 1), c);
    if (crf) rep_say(&p, "%s: the SYN was answered by RST (nobody listening)", where);
    else rep_say(&p, "%s: the connection was accepted", where);
    if (grf == crf) rep_say(&p, ", as in the reference");
    else if (grf) rep_say(&p, "; in the reference the server is down and the SYN is answered by RST");
    else rep_say(&p, "; the reference accepts it");
    rep_at(&p, c->d[0].syn_pkt, c->d[0].syn_ts);
    rep_at(&p, c->d[1].syn_pkt, c->d[1].syn_ts);
    rep_at(&p, c->d[1].rst_pkt, c->d[1].rst_ts);
    rep_emit(x->rep, &p);
    return;
  }
  rep_begin(x->rep, &p, SNIFF_CK_HANDSHAKE, g->established == c->established, sniff_conn_party(c, 0), c);
  rep_say(&p, "%s: 3-way handshake %s", where, c->established ? "seen" : "not seen");
  if (g->established == c->established) rep_say(&p, ", as in the reference");
  else rep_say(&p, g->established ? "; the reference's connection opens with one" : "; the reference has none");
  rep_at(&p, c->d[0].syn_pkt, c->d[0].syn_ts);
  rep_at(&p, c->d[1].syn_pkt, c->d[1].syn_ts);
  rep_emit(x->rep, &p);
  const sniff_msg *gq[MAXM], *cq[MAXM], *gp[MAXM], *cp[MAXM];
  uint32_t ngq = sniff_red_msgs(x->g, g->id, 0, gq, MAXM), ncq = sniff_red_msgs(x->c, c->id, 0, cq, MAXM);
  uint32_t ngp = sniff_red_msgs(x->g, g->id, 1, gp, MAXM), ncp = sniff_red_msgs(x->c, c->id, 1, cp, MAXM);
  cmp_msgs(x, where, 0, c, f, gq, ngq, cq, ncq, NULL, 0, NULL, 0);
  if (g->role == SNIFF_ROLE_CLIENT_PROXY) cmp_upstream(x, g, c, where, gq, ngq, cq, ncq, gp, ngp, cp, ncp);
  cmp_msgs(x, where, 1, c, f, gp, ngp, cp, ncp, gq, ngq, cq, ncq);
  cmp_end(x, g, c, where);
}

static void compare_lists(cmp *x, const pair_list *G, const pair_list *C) {
  rep_item p;
  for (uint32_t i = 0; i < G->n; i++) {
    const sniff_conn *g = G->c[i];
    if (G->match[i] < 0) {
      rep_begin(x->rep, &p, SNIFF_CK_CONNECTIONS, false, SNIFF_PARTY_CLIENT, NULL);
      rep_say(&p, "connection %u (%s): not in the capture; the reference has a %s connection here", i + 1,
          sniff_role_name(g->role), sniff_role_name(g->role));
      rep_emit(x->rep, &p);
      continue;
    }
    const sniff_conn *c = C->c[G->match[i]];
    rep_begin(x->rep, &p, SNIFF_CK_CONNECTIONS, true, SNIFF_PARTY_CLIENT, c);
    rep_say(&p, "connection %u (%s): the capture's #%u", i + 1, sniff_role_name(g->role), c->id);
    rep_at(&p, c->pkt_first, c->ts_first);
    rep_emit(x->rep, &p);
    if (g->role != c->role) {
      rep_begin(x->rep, &p, SNIFF_CK_ORDERING, false, SNIFF_PARTY_CLIENT, c);
      rep_say(&p, "connection %u (#%u): a %s connection seen; the reference has a %s connection here", i + 1,
          c->id, sniff_role_name(c->role), sniff_role_name(g->role));
      rep_at(&p, c->pkt_first, c->ts_first);
      rep_emit(x->rep, &p);
      continue;
    }
    char w[96];
    snprintf(w, sizeof w, "connection %u (%s, #%u)", i + 1, sniff_role_name(g->role), c->id);
    cmp_conn(x, g, c, w, NULL);
  }
  for (uint32_t j = 0; j < C->n; j++) {
    if (C->match[j] >= 0) continue;
    const sniff_conn *c = C->c[j];
    rep_begin(x->rep, &p, SNIFF_CK_CONNECTIONS, false, SNIFF_PARTY_CLIENT, c);
    rep_say(&p, "the capture's #%u (%s): an extra connection; the reference has %u connection%s of clients",
        c->id, sniff_role_name(c->role), G->n, G->n == 1 ? "" : "s");
    rep_at(&p, c->pkt_first, c->ts_first);
    rep_emit(x->rep, &p);
  }
  for (uint32_t i = 0; i + 1 < G->n; i++) {
    if (G->match[i] < 0 || G->match[i + 1] < 0) continue;
    if (G->c[i]->ts_last >= G->c[i + 1]->ts_first) continue;  /* overlapping: any order */
    const sniff_conn *a = C->c[G->match[i]], *b = C->c[G->match[i + 1]];
    bool ok = a->ts_first <= b->ts_first;
    rep_begin(x->rep, &p, SNIFF_CK_ORDERING, ok, SNIFF_PARTY_CLIENT, b);
    if (ok)
      rep_say(&p, "connections %u and %u (#%u, #%u): one after the other, as in the reference", i + 1, i + 2,
          a->id, b->id);
    else
      rep_say(&p, "connections %u and %u: #%u began before #%u; in the reference connection %u ends before %u "
              "begins", i + 1, i + 2, b->id, a->id, i + 1, i + 2);
    rep_at(&p, a->pkt_first, a->ts_first);
    rep_at(&p, b->pkt_first, b->ts_first);
    rep_emit(x->rep, &p);
  }
}

uint32_t sniff_verify(const sniff_an *golden, const sniff_an *capture, sniff_report *rep) {
  sniff_red g, c;
  sniff_red_init(&g, golden);
  sniff_red_init(&c, capture);
  rep->ts_base = capture->ts_first;
  cmp x = {rep, &g, &c};
  pair_list G, C;
  memset(&G, 0, sizeof G);
  memset(&C, 0, sizeof C);
  if (g.ok && c.ok && pair_list_build(&G, &g) && pair_list_build(&C, &c) && pair_lists(&G, &C)) {
    compare_lists(&x, &G, &C);
  } else {
    rep->oom = true;
  }
  pair_list_free(&G);
  pair_list_free(&C);
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
