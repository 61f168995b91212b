/* sniff_reduce.c: an analysis indexed for its reduced behaviour (sniff_reduce.h): each
 * connection's messages and the upstream connections each request caused, in order, and what
 * the reduction asks of a connection or a message. */
#include "sniff_reduce.h"

#include <string.h>

#include "calc/alloc.h"

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

void sniff_red_init(sniff_red *r, const sniff_an *an) {
  memset(r, 0, sizeof *r);
  r->an = an;
  r->ok = bucket(an->nconns, an->nmsgs, msg_key, an, &r->mstart, &r->midx) &&
          bucket(an->nconns, an->nconns, up_key, an, &r->ustart, &r->uidx);
}
void sniff_red_free(sniff_red *r) {
  calc_free(r->mstart); calc_free(r->midx); calc_free(r->ustart); calc_free(r->uidx);
}

uint32_t sniff_red_msgs(const sniff_red *r, uint32_t id, int dir, const sniff_msg **out, uint32_t max) {
  uint32_t n = 0;
  for (uint32_t i = r->mstart[id]; i < r->mstart[id + 1]; i++) {
    const sniff_msg *m = &r->an->msgs[r->midx[i]];
    if (m->dir != dir) continue;
    if (n < max) out[n] = m;
    n++;
  }
  return n;
}
uint32_t sniff_red_upstreams(const sniff_red *r, uint32_t id, uint32_t req_index, const sniff_conn **out,
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
bool sniff_downstream(const sniff_conn *c) {
  return c->role == SNIFF_ROLE_CLIENT_SERVER || c->role == SNIFF_ROLE_CLIENT_PROXY;
}
bool sniff_msg_single(const sniff_msg *m) { return m->nseg == 1 && !m->shares_segment; }

uint64_t sniff_upstream_done(const sniff_conn *u, uint64_t *pkt) {
  uint64_t t = UINT64_MAX, n = 0;
  if (u->d[0].fin) t = u->d[0].fin_ts, n = u->d[0].fin_pkt;
  if (u->d[0].rst && u->d[0].rst_ts < t) t = u->d[0].rst_ts, n = u->d[0].rst_pkt;
  if (u->d[1].rst && u->d[1].rst_ts < t) t = u->d[1].rst_ts, n = u->d[1].rst_pkt;
  if (pkt) *pkt = n;
  return t;
}
