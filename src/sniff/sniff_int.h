/* sniff_int.h: what the parts of the TCP analysis share (private to src/sniff):
 *   sniff_tcp.c     the per-packet state machine: the 4-tuple table, connections and roles,
 *                   per-direction reassembly in sequence space, sniff_feed, sniff_finish
 *   sniff_framer.c  calculator messages framed from each direction's in-order bytes
 *   sniff_text.c    payloads decoded to text, through a cache by content
 *   sniff_conn.c    the analyzer's lifetime and what a connection is (names, Zeek state, teardown)
 * and the events (sniff.h) they report, in the order they happen. */
#ifndef CALC_SNIFF_INT_H
#define CALC_SNIFF_INT_H
#include <string.h>

#include "sniff.h"

/* The analysis goes on without what e (CALC_ERR_NOMEM or CALC_ERR_LIMIT) cost it; an->incomplete
 * keeps why, running out of memory over a limit (it is the one that needs explaining).
 * Returns e. */
static inline calc_err sniff_incomplete(sniff_an *an, calc_err e) {
  if (an->incomplete != CALC_ERR_NOMEM) an->incomplete = e;
  return e;
}

/* Zeek history letters; bit i of sniff_dir.hist is the i-th of "SHADFRTGW". */
enum { H_S, H_H, H_A, H_D, H_F, H_R, H_T, H_G, H_W };
void sniff_hist_add(sniff_conn *c, int dir, int letter);

/* Reports an event (sniff.h) to the analysis' callback, if it has one. */
static inline void sniff_emit(sniff_an *an, sniff_ev_kind k, const sniff_conn *c, int dir, const sniff_msg *m,
                              int64_t n) {
  if (!an->o.on_event) return;
  sniff_event ev = {k, an, c, (uint8_t)dir, m, n};
  an->o.on_event(an->o.event_ctx, &ev);
}

/* c must be visited by sniff_finish. */
void sniff_finish_mark(sniff_an *an, const sniff_conn *c);
/* Releases a direction's buffers; they are allocated again if ever needed. */
void sniff_dir_free(sniff_dir *d);

/* Feeds n stream bytes of direction dir (data NULL: a hole of n bytes) to the framer.
 * *newseg is true while the current segment has not yet been counted in a message; *mid
 * while the segment has carried the end of a message. */
void sniff_framer_feed(sniff_an *an, sniff_conn *c, int dir, const uint8_t *data, size_t n, uint64_t ts,
                       bool *newseg, bool *mid);

/* m's payload p[0, n) decoded to text (kept by the analysis, shared by equal payloads). A
 * payload that is no request or response sets m->err to the decoder's error (its text says why)
 * and m->refused to a kept copy of it. NULL when memory ran out (an->incomplete set, m->err left
 * CALC_OK: the payload is not to blame, and nothing of it is remembered). */
char *sniff_text_decode(sniff_an *an, sniff_msg *m, const uint8_t *p, size_t n);
/* Frees the text cache and the texts. */
void sniff_text_free(struct sniff_textcache *tc);

#endif
