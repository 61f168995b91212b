/* out_verify.c: calc-sniff verify's report: every named check with the items it looked at, as
 * text (a line per check, a line per failed item, the verdict last) or JSON Lines (one record
 * per check with all its items, then the verdict; docs/sniff.md). */
#include <inttypes.h>
#include <string.h>

#include "calc/json.h"
#include "sniff_cli.h"

bool analysis_lossy(const sniff_an *an) {
  for (uint32_t i = 0; i < an->nconns; i++)
    if (sniff_conn_lossy(&an->conns[i])) return true;
  return an->bad_pkts > 0 || an->incomplete != CALC_OK;
}

/* Items of check k: counted, and failed. */
static void count(const sniff_report *rep, sniff_check k, uint32_t *n, uint32_t *failed) {
  *n = *failed = 0;
  for (uint32_t i = 0; i < rep->n; i++)
    if (rep->items[i].check == k) {
      (*n)++;
      if (!rep->items[i].passed) (*failed)++;
    }
}

static void item_json(calc_buf *b, const sniff_report *rep, const sniff_item *it) {
  calc_buf_printf(b, "{\"passed\":%s,\"role\":\"%s\",\"detail\":", it->passed ? "true" : "false",
                  sniff_party_name((sniff_party)it->party));
  const char *detail = sniff_item_detail(rep, it);
  calc_json_str(b, detail, strlen(detail), 0);
  if (it->conn) calc_buf_printf(b, ",\"conn\":%u", it->conn);
  else calc_buf_puts(b, ",\"conn\":null");
  calc_buf_puts(b, ",\"packets\":[");
  for (uint32_t i = 0; i < it->npkts; i++) calc_buf_printf(b, "%s%" PRIu64, i ? "," : "", it->pkts[i]);
  calc_buf_puts(b, "]");
  if (it->npkts) {
    uint64_t rel = it->ts >= rep->ts_base ? it->ts - rep->ts_base : 0;
    calc_buf_printf(b, ",\"time\":%" PRIu64 ".%06" PRIu64 "}", rel / 1000000u, rel % 1000000u);
  } else {
    calc_buf_puts(b, ",\"time\":null}");
  }
}

static void report_json(const sniff_report *rep, calc_buf *b) {
  for (int k = 0; k < SNIFF_CK_COUNT; k++) {
    uint32_t n, failed;
    count(rep, (sniff_check)k, &n, &failed);
    if (!n) continue;
    calc_buf_printf(b, "{\"type\":\"check\",\"name\":\"%s\",\"passed\":%s,\"items\":[",
                    sniff_check_name((sniff_check)k), failed ? "false" : "true");
    bool first = true;
    for (uint32_t i = 0; i < rep->n; i++) {
      if (rep->items[i].check != k) continue;
      if (!first) calc_buf_putc(b, ',');
      first = false;
      item_json(b, rep, &rep->items[i]);
    }
    calc_buf_puts(b, "]}\n");
  }
}

static void report_text(const sniff_report *rep, calc_buf *b) {
  for (int k = 0; k < SNIFF_CK_COUNT; k++) {
    uint32_t n, failed;
    count(rep, (sniff_check)k, &n, &failed);
    if (!n) continue;
    const char *name = sniff_check_name((sniff_check)k);
    if (!failed) {
      calc_buf_printf(b, "PASS %s (%u item%s)\n", name, n, n == 1 ? "" : "s");
      continue;
    }
    calc_buf_printf(b, "FAIL %s (%u of %u items)\n", name, failed, n);
    for (uint32_t i = 0; i < rep->n; i++) {
      const sniff_item *it = &rep->items[i];
      if (it->check != k || it->passed) continue;
      calc_buf_printf(b, "  FAIL %s: %s [%s]\n", name, sniff_item_detail(rep, it),
                      sniff_party_name((sniff_party)it->party));
    }
  }
}

sniff_exit print_verify(const sniff_an *g, const sniff_an *c, uint64_t drops, bool json, FILE *out) {
  sniff_report rep;
  sniff_report_init(&rep);
  rep.failed_details_only = !json;  /* the text shows failed items only */
  uint32_t failed = sniff_verify(g, c, &rep);
  calc_buf b;
  calc_buf_init(&b, 0);
  if (json) report_json(&rep, &b);
  else report_text(&rep, &b);
  const char *verdict, *reason = NULL;
  char why[96];
  sniff_exit rc;
  if (analysis_lossy(g)) {
    reason = "the golden capture misses bytes (gaps, snaplen cuts or undecodable frames)";
  } else if (drops) {
    snprintf(why, sizeof why, "the kernel dropped %" PRIu64 " packets", drops);
    reason = why;
  } else if (analysis_lossy(c)) {
    reason = "the capture misses bytes (gaps, snaplen cuts, undecodable frames or analysis limits)";
  } else if (rep.oom) {
    snprintf(why, sizeof why, "%s while comparing", calc_strerror(CALC_ERR_NOMEM));
    reason = why;
  }
  if (reason) {
    verdict = "inconclusive";
    rc = SNIFF_EXIT_INCONCLUSIVE;
  } else if (failed) {
    verdict = "fail";
    rc = SNIFF_EXIT_FAIL;
  } else {
    verdict = "pass";
    rc = SNIFF_EXIT_OK;
  }
  if (json) {
    calc_buf_printf(&b, "{\"type\":\"verdict\",\"verdict\":\"%s\",\"items\":%u,\"failed\":%u,\"reason\":",
                    verdict, rep.n, failed);
    if (reason) calc_json_str(&b, reason, strlen(reason), 0);
    else calc_buf_puts(&b, "null");
    calc_buf_puts(&b, "}\n");
  } else if (reason) {
    calc_buf_printf(&b, "INCONCLUSIVE: %s\n", reason);
  } else if (failed) {
    calc_buf_printf(&b, "FAIL: %u difference%s\n", failed, failed == 1 ? "" : "s");
  } else {
    calc_buf_puts(&b, "PASS\n");
  }
  if (b.len) fwrite(b.data, 1, b.len, out);
  calc_buf_free(&b);
  sniff_report_free(&rep);
  return rc;
}
