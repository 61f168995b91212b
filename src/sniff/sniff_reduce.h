/* sniff_reduce.h: an analysis indexed for the reduced behaviour (sniff_reduce.c), shared by the
 * trace text (sniff_trace.c) and the verification (sniff_pair.c, sniff_verify.c). Private to
 * src/sniff. */
#ifndef CALC_SNIFF_REDUCE_H
#define CALC_SNIFF_REDUCE_H
#include "sniff.h"

/* Messages and upstream connections listed per connection, in order. */
typedef struct sniff_red {
  const sniff_an *an;
  uint32_t *mstart, *midx;  /* messages of conn id k: midx[mstart[k] .. mstart[k + 1]) */
  uint32_t *ustart, *uidx;  /* upstream conns of conn id k, same layout */
  bool ok;                  /* false: out of memory */
} sniff_red;

/* Messages and upstream connections listed per connection at most (more are counted). */
#define MAXM 64
#define MAXU 16

void sniff_red_init(sniff_red *r, const sniff_an *an);
void sniff_red_free(sniff_red *r);
/* Messages of connection id in one direction, in order, up to max; returns their count. */
uint32_t sniff_red_msgs(const sniff_red *r, uint32_t id, int dir, const sniff_msg **out, uint32_t max);
/* Upstream connections of conn id caused by its request req_index, in order. */
uint32_t sniff_red_upstreams(const sniff_red *r, uint32_t id, uint32_t req_index,
                             const sniff_conn **out, uint32_t max);
/* client->server and client->proxy connections: the ones a scenario's clients open. */
bool sniff_downstream(const sniff_conn *c);
/* Carried by exactly one segment of its own. */
bool sniff_msg_single(const sniff_msg *m);
/* When the proxy was done with an upstream connection: its FIN, a RST, or the refusal
 * (UINT64_MAX: never); *pkt (may be NULL) gets that packet's frame number. */
uint64_t sniff_upstream_done(const sniff_conn *u, uint64_t *pkt);

#endif
