/* sniff_report.h: writing the items of a verification's report (sniff_report.c), private to
 * src/sniff. An item is begun (its check, verdict, party and connection), its one line of text
 * said piece by piece, the frames it is about added, then it is emitted into the report. */
#ifndef CALC_SNIFF_REPORT_H
#define CALC_SNIFF_REPORT_H
#include "sniff.h"

/* An item being written: its text grows with rep_say(), its packets with rep_at(). */
typedef struct rep_item {
  sniff_item it;
  bool quiet;               /* no text wanted */
  size_t len;
  char text[512];
} rep_item;

/* Starts item p of check k: passed (ok) or failed, about party who and connection c (NULL:
 * none). A passed item gets no text when r->failed_details_only. */
void rep_begin(const sniff_report *r, rep_item *p, sniff_check k, bool ok, sniff_party who,
               const sniff_conn *c);
/* Appends to its text (cut at 511 bytes). */
void rep_say(rep_item *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The item is about frame pkt (0: none) seen at ts (at most SNIFF_ITEM_PKTS frames kept). */
void rep_at(rep_item *p, uint64_t pkt, uint64_t ts);
/* Adds it to the report, its text ended by where on the wire it is; out of memory sets r->oom. */
void rep_emit(sniff_report *r, rep_item *p);

#endif
