/* fuzz_sniff.c: libFuzzer target over calc-sniff's packet decoding, TCP reassembly, message
 * framing and the verify reduction.
 *
 * Input: byte 0 picks the link type; then records of [2-byte length][frame bytes]. Frames are
 * fed in order with increasing time stamps; the analysis is then finished, traced and compared
 * with itself. Payload decoding is on, so the pickle decoder sees reassembled payloads too.
 * The first analysis reports its events to a callback that reads every field an event points
 * at (as calc-sniff's notes do), so a stale pointer in an event is a sanitizer error here.
 * Seeds: any pcap's frames in this format (tests/unit/helpers/pcapw builds them). */
#include <stddef.h>
#include <stdint.h>

#include "sniff.h"

/* Reads what the event points at, as a printer would (the sum only keeps the reads). */
static void on_event(void *ctx, const sniff_event *ev) {
  uint64_t *sum = ctx;
  *sum += (uint64_t)ev->kind + ev->dir + (uint64_t)ev->n + ev->c->id + ev->an->nconns;
  if (ev->m) {
    *sum += ev->m->size + ev->m->nseg + ev->m->conn + ev->m->index + ev->m->n_upstream + ev->m->h.status;
    if (ev->m->text) *sum += (uint8_t)ev->m->text[0];
  }
}

static const int dlts[] = {SNIFF_DLT_EN10MB, SNIFF_DLT_NULL, SNIFF_DLT_LOOP, SNIFF_DLT_LINUX_SLL,
                           SNIFF_DLT_LINUX_SLL2, SNIFF_DLT_RAW, SNIFF_DLT_IPV4, SNIFF_DLT_IPV6};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  int dlt = dlts[data[0] % (sizeof dlts / sizeof dlts[0])];
  sniff_opts o;
  sniff_opts_default(&o);
  o.decode = (data[0] & 0x80) != 0;
  /* two analyses of the input: every frame, and every frame but each third (another run of
   * the "same" scenario), then the second verified against the first */
  sniff_an an, other;
  sniff_an_init(&other, &o);
  uint64_t sum = 0;
  o.on_event = on_event;
  o.event_ctx = &sum;
  sniff_an_init(&an, &o);
  size_t off = 1;
  uint64_t ts = 1;
  for (unsigned k = 0; off + 2 <= size; k++) {
    size_t n = (size_t)data[off] << 8 | data[off + 1];
    off += 2;
    if (n > size - off) n = size - off;
    sniff_feed_frame(&an, dlt, data + off, n, ts, NULL);
    if (k % 3 != 2) sniff_feed_frame(&other, dlt, data + off, n, ts, NULL);
    ts++;
    off += n;
  }
  sniff_finish(&an);
  sniff_finish(&other);
  calc_buf b;
  calc_buf_init(&b, 0);
  sniff_trace(&an, &b);
  sniff_compare(&an, &an, &b);
  sniff_report rep;
  sniff_report_init(&rep);
  sniff_verify(&an, &other, &rep);
  for (uint32_t i = 0; i < rep.n; i++) calc_buf_puts(&b, sniff_item_detail(&rep, &rep.items[i]));
  sniff_report_free(&rep);
  calc_buf_free(&b);
  sniff_an_free(&an);
  sniff_an_free(&other);
  return 0;
}
