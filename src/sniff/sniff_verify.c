/* sniff_verify.c: an analysis reduced to the behaviour scenarios.md judges, printed as the
 * --trace text and compared against a golden analysis.
 *
 * Kept: downstream connections (client->server, client->proxy) in the order their first
 * packet appeared, with handshake, teardown class, message sizes and segmentation; for each
 * request on a client->proxy connection, the upstream connections it caused, each reduced the
 * same way, and whether the proxy closed them before it started the response.
 * Dropped (scenarios.md "What varies"): ports, sequence numbers, time stamps, windows, options,
 * 3- vs 4-segment teardowns, SYN retry counts, interleaving of different connections. */
#include "sniff.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "calc/alloc.h"

typedef struct red {
  const sniff_an *an;
  uint32_t *mstart, *midx;  /* messages of conn id k: midx[mstart[k-1] .. mstart[k]) */
  uint32_t *ustart, *uidx;  /* upstream conns of conn id k, same layout */
  bool ok;
} red;

/* Counting sort of n items by key (1..nkeys) into start/idx. */
static bool bucket(uint32_t nkeys, uint32_t n, uint32_t (*key)(const sniff_an *, uint32_t),
                   const sniff_an *an, uint32_t **start, uint32_t **idx) {
  *start = calc_calloc((size_t)nkeys + 2, sizeof **start);
  *idx = calc_calloc((size_t)n + 1, sizeof **idx);
  if (!*start || !*idx) return false;
  for (uint32_t i = 0; i < n; i++) {
    uint32_t k = key(an, i);
    if (k) (*start)[k]++;
  }
  uint32_t sum = 0;
  for (uint32_t k = 0; k <= nkeys + 1; k++) {
    uint32_t v = (*start)[k];
    (*start)[k] = sum;
    sum += v;
  }
  /* start[k] now is the first slot of key k (keys are 1-based: slot of key k is start[k]). */
  uint32_t *fill = calc_calloc((size_t)nkeys + 1, sizeof *fill);
  if (!fill) return false;
  for (uint32_t i = 0; i < n; i++) {
    uint32_t k = key(an, i);
    if (k) (*idx)[(*start)[k] + fill[k]++] = i;
  }
  calc_free(fill);
  return true;
}
static uint32_t msg_key(const sniff_an *an, uint32_t i) { return an->msgs[i].conn; }
static uint32_t up_key(const sniff_an *an, uint32_t i) { return an->conns[i].parent; }

static void red_init(red *r, const sniff_an *an) {
  memset(r, 0, sizeof *r);
  r->an = an;
  r->ok = bucket(an->nconns, an->nmsgs, msg_key, an, &r->mstart, &r->midx) &&
          bucket(an->nconns, an->nconns, up_key, an, &r->ustart, &r->uidx);
}
static void red_free(red *r) {
  calc_free(r->mstart); calc_free(r->midx); calc_free(r->ustart); calc_free(r->uidx);
}

/* Messages of connection id in one direction, in order, up to max. */
static uint32_t conn_msgs(const red *r, uint32_t id, int dir, const sniff_msg **out, uint32_t max) {
  uint32_t n = 0;
  for (uint32_t i = r->mstart[id]; i < r->mstart[id + 1]; i++) {
    const sniff_msg *m = &r->an->msgs[r->midx[i]];
    if (m->dir != dir) continue;
    if (n < max) out[n] = m;
    n++;
  }
  return n;
}
/* Upstream connections of conn id caused by its request req_index, in order. */
static uint32_t upstreams(const red *r, uint32_t id, uint32_t req_index, const sniff_conn **out,
                          uint32_t max) {
  uint32_t n = 0;
  for (uint32_t i = r->ustart[id]; i < r->ustart[id + 1]; i++) {
    const sniff_conn *c = &r->an->conns[r->uidx[i]];
    if (c->parent_req != req_index) continue;
    if (n < max) out[n] = c;
    n++;
  }
  return n;
}
static bool downstream(const sniff_conn *c) {
  return c->role == SNIFF_ROLE_CLIENT_SERVER || c->role == SNIFF_ROLE_CLIENT_PROXY;
}
static bool single_segment(const sniff_msg *m) { return m->nseg == 1 && !m->shares_segment; }

/* When the proxy was done with an upstream connection: its FIN, a RST, or the refusal. */
static uint64_t upstream_done_ts(const sniff_conn *u) {
  uint64_t t = UINT64_MAX;
  if (u->d[0].fin) t = u->d[0].fin_ts;
  if (u->d[0].rst && u->d[0].rst_ts < t) t = u->d[0].rst_ts;
  if (u->d[1].rst && u->d[1].rst_ts < t) t = u->d[1].rst_ts;
  return t;
}

#define MAXM 64
#define MAXU 16

/* The trace text is built once per connection per analysis (verify matches connections by
 * it), so it is appended piece by piece rather than through calc_buf_printf. */
static void put_u(calc_buf *out, uint32_t v) {
  char tmp[10], *q = tmp + sizeof tmp;
  do {
    *--q = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  calc_buf_append(out, q, (size_t)(tmp + sizeof tmp - q));
}

static void trace_msg(calc_buf *out, const char *ind, const char *kind, const sniff_msg *m) {
  /* "%s%s %u %u B segments=%u" */
  calc_buf_puts(out, ind);
  calc_buf_puts(out, kind);
  calc_buf_putc(out, ' ');
  put_u(out, m->index);
  calc_buf_putc(out, ' ');
  put_u(out, m->size);
  calc_buf_puts(out, " B segments=");
  put_u(out, m->nseg);
  if (m->nseg > 1) {
    calc_buf_puts(out, " (");
    for (uint32_t i = 0; i < m->nseg && i < SNIFF_MSG_SEGS; i++) {
      if (i) calc_buf_putc(out, '+');
      put_u(out, m->segs[i]);
    }
    calc_buf_puts(out, m->nseg > SNIFF_MSG_SEGS ? "+...)" : ")");
  }
  if (m->shares_segment) calc_buf_puts(out, " shared-segment");
  if (!m->complete) calc_buf_puts(out, " incomplete");
  if (m->hole) calc_buf_puts(out, " bytes-missing");
  if (m->malformed) calc_buf_puts(out, " malformed");
  if (!m->h.is_request && m->h.status) {
    calc_buf_puts(out, " status=");
    put_u(out, m->h.status);
  }
  calc_buf_putc(out, '\n');
}

static void trace_conn(const red *r, const sniff_conn *c, const char *ind, calc_buf *out) {
  sniff_end e = sniff_conn_end(c);
  calc_buf_puts(out, sniff_role_name(c->role));
  calc_buf_putc(out, ' ');
  calc_buf_puts(out, e == SNIFF_END_REFUSED ? "" : c->established ? "handshake " : "no-handshake ");
  calc_buf_puts(out, e == SNIFF_END_REFUSED ? "refused" : sniff_end_name(e));
  calc_buf_putc(out, '\n');
  const sniff_msg *req[MAXM], *resp[MAXM];
  uint32_t nq = conn_msgs(r, c->id, 0, req, MAXM), np = conn_msgs(r, c->id, 1, resp, MAXM);
  /* ind + 2 and ind + 4 spaces (cut at 31 bytes, as snprintf into 32 did) */
  char ind2[32], ind3[32];
  size_t il = strlen(ind);
  size_t l2 = il + 2 < sizeof ind2 ? il + 2 : sizeof ind2 - 1;
  size_t l3 = il + 4 < sizeof ind3 ? il + 4 : sizeof ind3 - 1;
  memcpy(ind2, ind, il < l2 ? il : l2);
  memset(ind2 + (il < l2 ? il : l2), ' ', l2 - (il < l2 ? il : l2));
  ind2[l2] = 0;
  memcpy(ind3, ind, il < l3 ? il : l3);
  memset(ind3 + (il < l3 ? il : l3), ' ', l3 - (il < l3 ? il : l3));
  ind3[l3] = 0;
  for (uint32_t i = 0; i < nq || i < np; i++) {
    if (i >= MAXM) {
      calc_buf_printf(out, "%s... %u requests, %u responses\n", ind2, nq, np);
      break;
    }
    if (i < nq) {
      trace_msg(out, ind2, "request", req[i]);
      if (c->role == SNIFF_ROLE_CLIENT_PROXY) {
        const sniff_conn *u[MAXU];
        uint32_t nu = upstreams(r, c->id, req[i]->index, u, MAXU);
        if (!nu) {
          calc_buf_puts(out, ind3);
          calc_buf_puts(out, "no upstream connection\n");
        }
        for (uint32_t k = 0; k < nu && k < MAXU; k++) {
          calc_buf_puts(out, ind3);
          calc_buf_puts(out, "upstream ");
          trace_conn(r, u[k], ind3, out);
          if (i < np) {
            calc_buf_puts(out, ind3);
            calc_buf_puts(out, "  closed before response: ");
            calc_buf_puts(out, upstream_done_ts(u[k]) <= resp[i]->ts_first ? "yes\n" : "no\n");
          }
        }
      }
    }
    if (i < np) trace_msg(out, ind2, "response", resp[i]);
  }
}

void sniff_trace(const sniff_an *an, calc_buf *out) {
  red r;
  red_init(&r, an);
  if (!r.ok) {
    calc_buf_puts(out, "# out of memory\n");
    red_free(&r);
    return;
  }
  calc_buf_puts(out, "# calc-sniff trace 1\n");
  uint32_t k = 0;
  for (uint32_t i = 0; i < an->nconns; i++) {
    const sniff_conn *c = &an->conns[i];
    if (!downstream(c)) continue;
    calc_buf_puts(out, "conn ");  /* trace_conn continues this line */
    put_u(out, ++k);
    calc_buf_putc(out, ' ');
    trace_conn(&r, c, "", out);
  }
  red_free(&r);
}

/* ---- comparison ---- */
typedef struct cmp {
  calc_buf *out;
  uint32_t n;
  const red *g, *c;
} cmp;

static void diff(cmp *x, const char *check, const char *where, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void diff(cmp *x, const char *check, const char *where, const char *fmt, ...) {
  char tmp[400];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  calc_buf_printf(x->out, "FAIL %s: %s: %s\n", check, where, tmp);
  x->n++;
}

static bool end_is_rst(sniff_end e) { return e == SNIFF_END_RST_CLIENT || e == SNIFF_END_RST_SERVER; }

static void cmp_msgs(cmp *x, const char *where, const char *kind, const char *check,
                     const sniff_msg **g, uint32_t ng, const sniff_msg **c, uint32_t nc) {
  if (ng != nc)
    diff(x, check, where, "%u %s%s expected, %u seen", ng, kind, ng == 1 ? "" : "s", nc);
  for (uint32_t i = 0; i < ng && i < nc && i < MAXM; i++) {
    if (g[i]->size != c[i]->size)
      diff(x, check, where, "%s %u: %u B expected, %u B seen", kind, i + 1, g[i]->size, c[i]->size);
    else if (single_segment(g[i]) && !single_segment(c[i]))
      diff(x, "segmentation", where, "%s %u (%u B): one segment expected, %u seen%s", kind, i + 1,
           c[i]->size, c[i]->nseg, c[i]->shares_segment ? " (shared with another message)" : "");
    if (g[i]->complete && !c[i]->complete)
      diff(x, check, where, "%s %u: incomplete (%u B announced)", kind, i + 1, c[i]->size);
  }
}

static void cmp_conn(cmp *x, const sniff_conn *g, const sniff_conn *c, const char *where) {
  sniff_end ge = sniff_conn_end(g), ce = sniff_conn_end(c);
  if ((ge == SNIFF_END_REFUSED) != (ce == SNIFF_END_REFUSED)) {
    diff(x, "refused-answer", where, "%s expected, %s seen",
         ge == SNIFF_END_REFUSED ? "SYN answered by RST" : "an accepted connection",
         ce == SNIFF_END_REFUSED ? "SYN answered by RST" : "an accepted connection");
    return;
  }
  if (ge == SNIFF_END_REFUSED) return;
  if (g->established != c->established)
    diff(x, "handshake", where, "3-way handshake %s expected, %s", g->established ? "" : "absence",
         c->established ? "seen" : "not seen");
  const sniff_msg *gq[MAXM], *cq[MAXM], *gp[MAXM], *cp[MAXM];
  uint32_t ngq = conn_msgs(x->g, g->id, 0, gq, MAXM), ncq = conn_msgs(x->c, c->id, 0, cq, MAXM);
  uint32_t ngp = conn_msgs(x->g, g->id, 1, gp, MAXM), ncp = conn_msgs(x->c, c->id, 1, cp, MAXM);
  cmp_msgs(x, where, "request", "request-size", gq, ngq, cq, ncq);
  if (g->role == SNIFF_ROLE_CLIENT_PROXY) {
    for (uint32_t i = 0; i < ngq && i < ncq && i < MAXM; i++) {
      const sniff_conn *gu[MAXU], *cu[MAXU];
      uint32_t ngu = upstreams(x->g, g->id, gq[i]->index, gu, MAXU);
      uint32_t ncu = upstreams(x->c, c->id, cq[i]->index, cu, MAXU);
      char w[160];
      snprintf(w, sizeof w, "%s request %u", where, i + 1);
      if (ngu == 0 && ncu > 0)
        diff(x, "cache-hit-no-upstream", w,
             "a cache hit with no upstream connection expected, %u upstream connection%s seen", ncu,
             ncu == 1 ? "" : "s");
      else if (ngu != ncu)
        diff(x, "upstream-connections", w, "%u upstream connection%s expected, %u seen", ngu,
             ngu == 1 ? "" : "s", ncu);
      for (uint32_t k = 0; k < ngu && k < ncu && k < MAXU; k++) {
        char wu[200];
        snprintf(wu, sizeof wu, "%s upstream %u", w, k + 1);
        cmp_conn(x, gu[k], cu[k], wu);
        if (i < ngp && i < ncp && upstream_done_ts(gu[k]) <= gp[i]->ts_first &&
            upstream_done_ts(cu[k]) > cp[i]->ts_first)
          diff(x, "ordering", wu, "the proxy answered its client before closing the upstream connection");
      }
    }
  }
  cmp_msgs(x, where, "response", "response-size", gp, ngp, cp, ncp);
  if (ge != ce) {
    if (end_is_rst(ge) || end_is_rst(ce))
      diff(x, "rst", where, "teardown %s expected, %s seen", sniff_end_name(ge), sniff_end_name(ce));
    else
      diff(x, "teardown", where, "teardown %s expected, %s seen", sniff_end_name(ge), sniff_end_name(ce));
  }
}

/* Downstream connections of an analysis, each with its reduced text (its signature). */
typedef struct dlist {
  const sniff_conn **c;
  char **sig;
  uint32_t n;
  int32_t *match;   /* index into the other list, -1 */
} dlist;

static bool dlist_build(dlist *l, const red *r) {
  memset(l, 0, sizeof *l);
  const sniff_an *an = r->an;
  l->c = calc_calloc((size_t)an->nconns + 1, sizeof *l->c);
  l->sig = calc_calloc((size_t)an->nconns + 1, sizeof *l->sig);
  l->match = calc_calloc((size_t)an->nconns + 1, sizeof *l->match);
  if (!l->c || !l->sig || !l->match) return false;
  calc_buf b;
  calc_buf_init(&b, 0);
  for (uint32_t i = 0; i < an->nconns; i++) {
    if (!downstream(&an->conns[i])) continue;
    calc_buf_reset(&b);
    trace_conn(r, &an->conns[i], "", &b);
    l->c[l->n] = &an->conns[i];
    l->match[l->n] = -1;
    l->sig[l->n++] = calc_strndup(b.data ? (const char *)b.data : "", b.len);
  }
  calc_buf_free(&b);
  return !b.failed;
}

static void dlist_free(dlist *l) {
  for (uint32_t i = 0; l->sig && i < l->n; i++) calc_free(l->sig[i]);
  calc_free(l->c);
  calc_free(l->sig);
  calc_free(l->match);
}

/* Pairing (scenarios.md: "how segments of different connections interleave" varies):
 * 1. each golden connection takes the first unpaired capture connection with the same reduced
 *    behaviour, trying the same position first: concurrent clients may come in any order;
 * 2. the rest are paired in order and compared check by check; leftovers are missing/extra;
 * 3. ordering: two golden connections one after the other in time (the first ended before the
 *    second began: the scenario's script forced that order) must keep their order. */
uint32_t sniff_compare(const sniff_an *golden, const sniff_an *capture, calc_buf *out) {
  red g, c;
  red_init(&g, golden);
  red_init(&c, capture);
  cmp x = {out, 0, &g, &c};
  dlist G, C;
  memset(&G, 0, sizeof G);
  memset(&C, 0, sizeof C);
  if (!g.ok || !c.ok || !dlist_build(&G, &g) || !dlist_build(&C, &c)) {
    calc_buf_puts(out, "FAIL internal: out of memory\n");
    x.n++;
    goto done;
  }
  for (uint32_t i = 0; i < G.n; i++) {
    if (i < C.n && C.match[i] < 0 && !strcmp(G.sig[i], C.sig[i])) {
      G.match[i] = (int32_t)i;
      C.match[i] = (int32_t)i;
      continue;
    }
    for (uint32_t j = 0; j < C.n; j++)
      if (C.match[j] < 0 && !strcmp(G.sig[i], C.sig[j])) {
        G.match[i] = (int32_t)j;
        C.match[j] = (int32_t)i;
        break;
      }
  }
  uint32_t j = 0;
  for (uint32_t i = 0; i < G.n; i++) {
    if (G.match[i] >= 0) continue;
    while (j < C.n && C.match[j] >= 0) j++;
    char w[96];
    if (j >= C.n) {
      snprintf(w, sizeof w, "connection %u", i + 1);
      diff(&x, "handshake", w, "missing %s connection", sniff_role_name(G.c[i]->role));
      continue;
    }
    G.match[i] = (int32_t)j;
    C.match[j] = (int32_t)i;
    if (G.c[i]->role != C.c[j]->role) {
      snprintf(w, sizeof w, "connection %u", i + 1);
      diff(&x, "ordering", w, "%s expected, %s seen", sniff_role_name(G.c[i]->role),
           sniff_role_name(C.c[j]->role));
      continue;
    }
    snprintf(w, sizeof w, "connection %u (%s)", i + 1, sniff_role_name(G.c[i]->role));
    cmp_conn(&x, G.c[i], C.c[j], w);
  }
  for (j = 0; j < C.n; j++)
    if (C.match[j] < 0) {
      char w[64];
      snprintf(w, sizeof w, "connection %u of the capture", j + 1);
      diff(&x, "handshake", w, "extra %s connection", sniff_role_name(C.c[j]->role));
    }
  for (uint32_t i = 0; i + 1 < G.n; i++) {
    if (G.match[i] < 0 || G.match[i + 1] < 0) continue;
    if (G.c[i]->ts_last >= G.c[i + 1]->ts_first) continue;  /* overlapping: any order */
    if (C.c[G.match[i]]->ts_first > C.c[G.match[i + 1]]->ts_first) {
      char w[64];
      snprintf(w, sizeof w, "connections %u and %u", i + 1, i + 2);
      diff(&x, "ordering", w, "one after the other in the golden, in the other order in the capture");
    }
  }
done:
  dlist_free(&G);
  dlist_free(&C);
  red_free(&g);
  red_free(&c);
  return x.n;
}
