/* input.c: what every input does with a frame: save it (-w), feed it to the analysis, and
 * print it when the output is per packet. */
#include "sniff_cli.h"

void handle_frame(run *r, const struct pcap_pkthdr *h, const uint8_t *bytes) {
  uint64_t ts = (uint64_t)h->ts.tv_sec * 1000000u + (uint64_t)h->ts.tv_usec;
  if (r->dumper) pcap_dump((u_char *)r->dumper, h, bytes);
  /* Out of memory and analysis limits are reported once, at the end (an.incomplete). */
  sniff_pkt p;
  calc_buf_reset(&r->notes);
  calc_err err = sniff_feed_frame(&r->an, r->dlt, bytes, h->caplen, ts, &p);
  if (r->mode != OUT_TIMELINE && !r->packets) return;
  if (!p.tcp) {
    if (err != CALC_OK && r->ob) print_undecodable(r, h->caplen, r->an.last_why);
    return;
  }
  if (r->mode == OUT_TIMELINE) print_packet(r, &p);
  else print_json_packet(r, &p);
}

int check_dlt(pcap_t *p, const char *what, run *r) {
  r->dlt = pcap_datalink(p);
  if (!sniff_dlt_supported(r->dlt)) {
    const char *n = pcap_datalink_val_to_name(r->dlt);
    fprintf(stderr, "calc-sniff: %s: link type %d (%s) is not supported\n", what, r->dlt,
            n ? n : "unknown");
    return -1;
  }
  /* The input is open: the timeline's column header goes first (not before, so that an
   * input that cannot be read leaves nothing on stdout but its message on stderr). */
  if (r->ob) print_timeline_head(r);
  return 0;
}

int open_dumper(pcap_t *p, const input *in, run *r) {
  if (!in->write_file) return 0;
  r->dumper = pcap_dump_open(p, in->write_file);
  if (!r->dumper) {
    fprintf(stderr, "calc-sniff: %s: %s\n", in->write_file, pcap_geterr(p));
    return -1;
  }
  return 0;
}
