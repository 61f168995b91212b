/* sniff_report.c: the report of a verification (sniff.h's sniff_report): the names of its
 * checks and parties, and its items, each written (sniff_report.h) then added. */
#include "sniff_report.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "calc/alloc.h"

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


void rep_begin(const sniff_report *r, rep_item *p, sniff_check k, bool ok, sniff_party who,
               const sniff_conn *c) {
  memset(&p->it, 0, sizeof p->it);
  p->it.check = (uint8_t)k;
  p->it.passed = ok;
  p->it.party = (uint8_t)who;
  p->it.conn = c ? c->id : 0;
  p->len = 0;
  p->text[0] = 0;
  p->quiet = ok && r->failed_details_only;
}

void rep_say(rep_item *p, const char *fmt, ...) {
  if (p->quiet || p->len >= sizeof p->text - 1) return;
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(p->text + p->len, sizeof p->text - p->len, fmt, ap);
  va_end(ap);
  if (n > 0) p->len += (size_t)n;
  if (p->len > sizeof p->text - 1) p->len = sizeof p->text - 1;
}

void rep_at(rep_item *p, uint64_t pkt, uint64_t ts) {
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

/* The item's text ends with where on the wire it is ("packets 4, 5 at 0.000123 s"). */
void rep_emit(sniff_report *r, rep_item *p) {
  if (r->oom) return;
  if (p->it.npkts) qsort(p->it.pkts, p->it.npkts, sizeof p->it.pkts[0], cmp_u64);
  if (p->it.npkts && !p->quiet) {
    rep_say(p, " (packet%s ", p->it.npkts == 1 ? "" : "s");
    for (uint32_t i = 0; i < p->it.npkts; i++) rep_say(p, "%s%llu", i ? ", " : "", (unsigned long long)p->it.pkts[i]);
    uint64_t rel = p->it.ts >= r->ts_base ? p->it.ts - r->ts_base : 0;
    rep_say(p, " at %llu.%06llu s)", (unsigned long long)(rel / 1000000u), (unsigned long long)(rel % 1000000u));
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
