/* out_json.c: JSON Lines (--json, schema in docs/sniff.md): one record per connection and per
 * message at the end of the analysis, and with --packets one per TCP segment as it comes. */
#include <inttypes.h>

#include "obuf.h"
#include "sniff_cli.h"

void print_json(run *r) {
  const sniff_an *an = &r->an;
  calc_buf b;
  calc_buf_init(&b, 0);
  for (uint32_t i = 0; i < an->nconns; i++) {
    const sniff_conn *c = &an->conns[i];
    char a[64], z[64];
    fmt_addr(c, 0, a, sizeof a);
    fmt_addr(c, 1, z, sizeof z);
    calc_buf_reset(&b);
    calc_buf_printf(&b, "{\"type\":\"conn\",\"id\":%u,\"role\":\"%s\",\"orig\":", c->id,
                    sniff_role_name(c->role));
    sniff_json_str(&b, a);
    calc_buf_puts(&b, ",\"resp\":");
    sniff_json_str(&b, z);
    calc_buf_printf(&b,
                    ",\"ts_first\":%.6f,\"ts_last\":%.6f,\"conn_state\":\"%s\",\"history\":\"%s\","
                    "\"handshake\":%s,\"teardown\":\"%s\",\"teardown_segments\":%u,"
                    "\"syn_retries\":%u,\"port_reused\":%s,\"midstream\":%s,"
                    "\"first_packet\":%" PRIu64 ",\"last_packet\":%" PRIu64,
                    (double)c->ts_first / 1e6, (double)c->ts_last / 1e6, sniff_conn_state(c),
                    c->history, c->established ? "true" : "false",
                    sniff_end_name(sniff_conn_end(c)), c->teardown_pkts, c->syn_retries,
                    c->port_reused ? "true" : "false", c->midstream ? "true" : "false", c->pkt_first,
                    c->pkt_last);
    if (c->parent) calc_buf_printf(&b, ",\"upstream_of\":{\"conn\":%u,\"request\":%u}", c->parent, c->parent_req);
    for (int d = 0; d < 2; d++) {
      const sniff_dir *s = &c->d[d];
      calc_buf_printf(&b,
                      ",\"%s\":{\"packets\":%" PRIu64 ",\"bytes\":%" PRIu64 ",\"messages\":%u,"
                      "\"retransmissions\":%" PRIu64 ",\"overlap_bytes\":%" PRIu64
                      ",\"out_of_order\":%" PRIu64 ",\"gap_bytes\":%" PRIu64
                      ",\"snaplen_cut_bytes\":%" PRIu64 ",\"unframed\":%s}",
                      d ? "resp_dir" : "orig_dir", s->pkts, s->bytes, s->nmsgs, s->retrans_pkts,
                      s->overlap_bytes, s->ooo_pkts, s->gap_bytes, s->trunc_bytes,
                      s->desync ? "true" : "false");
    }
    calc_buf_puts(&b, "}\n");
    fwrite(b.data, 1, b.len, r->out);
  }
  for (uint32_t i = 0; i < an->nmsgs; i++) {
    const sniff_msg *m = &an->msgs[i];
    calc_buf_reset(&b);
    calc_buf_printf(&b,
                    "{\"type\":\"msg\",\"conn\":%u,\"dir\":\"%s\",\"index\":%u,\"kind\":\"%s\","
                    "\"ts_first\":%.6f,\"ts_last\":%.6f,\"first_packet\":%" PRIu64
                    ",\"last_packet\":%" PRIu64 ",\"size\":%u,\"header\":{\"time\":%u,"
                    "\"cache\":%s,\"steps\":%s,\"request\":%s,\"reserved\":%u,\"status\":%u,"
                    "\"cache_control\":%u},\"segments\":[",
                    m->conn, m->dir ? "resp" : "orig", m->index,
                    m->h.is_request ? "request" : "response", (double)m->ts_first / 1e6,
                    (double)m->ts_last / 1e6, m->pkt_first, m->pkt_last, m->size, m->h.time, m->h.cache ? "true" : "false",
                    m->h.steps ? "true" : "false", m->h.is_request ? "true" : "false",
                    m->h.reserved, m->h.status, m->h.cache_control);
    for (uint32_t k = 0; k < m->nseg && k < SNIFF_MSG_SEGS; k++)
      calc_buf_printf(&b, "%s%u", k ? "," : "", m->segs[k]);
    calc_buf_printf(&b, "],\"nsegments\":%u,\"shares_segment\":%s,\"complete\":%s,"
                        "\"bytes_missing\":%s,\"malformed\":%s",
                    m->nseg, m->shares_segment ? "true" : "false", m->complete ? "true" : "false",
                    m->hole ? "true" : "false", m->malformed ? "true" : "false");
    if (m->h.is_request && sniff_conn_get(an, m->conn) &&
        sniff_conn_get(an, m->conn)->role == SNIFF_ROLE_CLIENT_PROXY)
      calc_buf_printf(&b, ",\"upstream_connections\":%u", m->n_upstream);
    if (m->text) {
      calc_buf_puts(&b, m->h.is_request ? ",\"expression\":" : ",\"result\":");
      sniff_json_str(&b, m->text);
    }
    calc_buf_puts(&b, "}\n");
    fwrite(b.data, 1, b.len, r->out);
  }
  fprintf(r->out,
          "{\"type\":\"summary\",\"packets\":%" PRIu64 ",\"tcp\":%" PRIu64 ",\"other\":%" PRIu64
          ",\"undecodable\":%" PRIu64 ",\"snaplen_cut\":%" PRIu64 ",\"connections\":%u,"
          "\"messages\":%u,\"kernel_drops\":%" PRIu64 "}\n",
          an->pkts, an->tcp_pkts, an->other_pkts, an->bad_pkts, an->trunc_pkts, an->nconns,
          an->nmsgs, r->drops);
  calc_buf_free(&b);
}

/* One TCP segment, just fed: its frame number, connection, direction, flags, relative Seq/Ack
 * as the timeline shows them, and the analysis' notes on it. */
void print_json_packet(run *r, const sniff_pkt *p) {
  const sniff_an *an = &r->an;
  int dir;
  uint32_t seq, ack;
  const sniff_conn *c = sniff_fed(an, p, &dir, &seq, &ack);
  if (!c) return;
  static calc_buf b;
  calc_buf_reset(&b);
  calc_buf_printf(&b, "{\"type\":\"pkt\",\"no\":%" PRIu64 ",\"ts\":%" PRIu64 ".%06" PRIu64
                      ",\"conn\":%u,\"dir\":\"%s\",\"flags\":[",
                  an->pkts, p->ts_usec / 1000000u, p->ts_usec % 1000000u, c->id, dir ? "resp" : "orig");
  bool first = true;
  for (size_t i = 0; i < TCP_FLAGS; i++)
    if (p->flags & tcp_flag_names[i].bit) {
      calc_buf_printf(&b, "%s\"%s\"", first ? "" : ",", tcp_flag_names[i].name);
      first = false;
    }
  calc_buf_printf(&b, "],\"seq\":%u,\"ack\":%u,\"win\":%u,\"len\":%zu,\"notes\":",
                  p->flags & SNIFF_TH_SYN ? 0u : seq, p->flags & SNIFF_TH_ACK ? ack : 0u, p->win, p->payload_len);
  static calc_buf notes;  /* the notes as a C string */
  calc_buf_reset(&notes);
  if (an->notes.len) calc_buf_append(&notes, an->notes.data, an->notes.len);
  calc_buf_putc(&notes, 0);
  sniff_json_str(&b, notes.data && !notes.failed ? (const char *)notes.data : "");
  calc_buf_puts(&b, "}\n");
  fwrite(b.data, 1, b.len, r->out);
}
