/* out_json.c: JSON Lines (--json, schema in docs/sniff.md): one record per connection and per
 * message at the end of the analysis, and with --packets one per TCP segment as it comes. */
#include <inttypes.h>

#include "calc/json.h"
#include "obuf.h"
#include "sniff_cli.h"

/* Records are formatted by hand into the output buffer (obuf.h), as the timeline is: through
 * printf the JSON of a capture of many short connections cost 8x the analysis. The text is
 * what the printf formats said: %.6f of a microsecond time stamp is its digits with a point
 * before the last six. */
#define JSON_ROOM 1024  /* a record's fixed part: numbers, names, addresses (no texts) */

static inline char *put_ts(char *w, uint64_t usec) {
  w = put_u64(w, usec / 1000000u);
  *w++ = '.';
  return put_frac6(w, (uint32_t)(usec % 1000000u));
}

static inline char *put_bool(char *w, bool b) {
  return b ? PUT_LIT(w, "true") : PUT_LIT(w, "false");
}

static void ob_sink(void *o, const void *p, size_t n) { ob_write(o, p, n); }

/* s as a JSON string (calc/json.h), copied run by run into the output buffer. */
static void put_json_text(obuf *o, const char *s) { calc_json_write(s, strlen(s), 0, ob_sink, o); }

static char *put_dir(char *w, const char *name, size_t name_len, const sniff_dir *s) {
  w = put_lit(w, name, name_len);
  w = PUT_LIT(w, "\":{\"packets\":");
  w = put_u64(w, s->pkts);
  w = PUT_LIT(w, ",\"bytes\":");
  w = put_u64(w, s->bytes);
  w = PUT_LIT(w, ",\"messages\":");
  w = put_u32(w, s->nmsgs);
  w = PUT_LIT(w, ",\"retransmissions\":");
  w = put_u64(w, s->retrans_pkts);
  w = PUT_LIT(w, ",\"overlap_bytes\":");
  w = put_u64(w, s->overlap_bytes);
  w = PUT_LIT(w, ",\"out_of_order\":");
  w = put_u64(w, s->ooo_pkts);
  w = PUT_LIT(w, ",\"gap_bytes\":");
  w = put_u64(w, s->gap_bytes);
  w = PUT_LIT(w, ",\"snaplen_cut_bytes\":");
  w = put_u64(w, s->trunc_bytes);
  w = PUT_LIT(w, ",\"unframed\":");
  w = put_bool(w, s->desync);
  *w++ = '}';
  return w;
}

static void json_conn(obuf *o, const sniff_conn *c) {
  char *w0 = ob_room(o, JSON_ROOM), *w = w0;
  w = PUT_LIT(w, "{\"type\":\"conn\",\"id\":");
  w = put_u32(w, c->id);
  w = PUT_LIT(w, ",\"role\":\"");
  w = put_str(w, sniff_role_name(c->role));
  w = PUT_LIT(w, "\",\"orig\":\"");
  w = put_addr(w, c, 0);
  w = PUT_LIT(w, "\",\"resp\":\"");
  w = put_addr(w, c, 1);
  w = PUT_LIT(w, "\",\"ts_first\":");
  w = put_ts(w, c->ts_first);
  w = PUT_LIT(w, ",\"ts_last\":");
  w = put_ts(w, c->ts_last);
  w = PUT_LIT(w, ",\"conn_state\":\"");
  w = put_str(w, sniff_conn_state(c));
  w = PUT_LIT(w, "\",\"history\":\"");
  w = put_str(w, c->history);
  w = PUT_LIT(w, "\",\"handshake\":");
  w = put_bool(w, c->established);
  w = PUT_LIT(w, ",\"teardown\":\"");
  w = put_str(w, sniff_end_name(sniff_conn_end(c)));
  w = PUT_LIT(w, "\",\"teardown_segments\":");
  w = put_u32(w, c->teardown_pkts);
  w = PUT_LIT(w, ",\"syn_retries\":");
  w = put_u32(w, c->syn_retries);
  w = PUT_LIT(w, ",\"port_reused\":");
  w = put_bool(w, c->port_reused);
  w = PUT_LIT(w, ",\"midstream\":");
  w = put_bool(w, c->midstream);
  w = PUT_LIT(w, ",\"first_packet\":");
  w = put_u64(w, c->pkt_first);
  w = PUT_LIT(w, ",\"last_packet\":");
  w = put_u64(w, c->pkt_last);
  if (c->parent) {
    w = PUT_LIT(w, ",\"upstream_of\":{\"conn\":");
    w = put_u32(w, c->parent);
    w = PUT_LIT(w, ",\"request\":");
    w = put_u32(w, c->parent_req);
    *w++ = '}';
  }
  w = put_dir(w, ",\"orig_dir", 10, &c->d[0]);
  w = put_dir(w, ",\"resp_dir", 10, &c->d[1]);
  w = PUT_LIT(w, "}\n");
  o->len += (size_t)(w - w0);
}

/* The payload the decoder refused, in hex: a reader can then ask whether the course's own code
 * would take it (the lab does, so that calclab's limits are never a student's fault). At most
 * CALC_MAX_PAYLOAD bytes, written a slice at a time (their hex is twice the output buffer). */
static void put_refused(obuf *o, const sniff_msg *m) {
  if (!m->refused) return;
  static const char hex[] = "0123456789abcdef";
  ob_write(o, ",\"payload\":\"", 12);
  for (uint32_t i = 0; i < m->refused_len;) {
    uint32_t k = m->refused_len - i < 4096 ? m->refused_len - i : 4096;
    char *w0 = ob_room(o, 2 * (size_t)k), *w = w0;
    for (uint32_t j = 0; j < k; j++) {
      *w++ = hex[m->refused[i + j] >> 4];
      *w++ = hex[m->refused[i + j] & 15];
    }
    o->len += (size_t)(w - w0);
    i += k;
  }
  ob_write(o, "\"", 1);
}

static void json_msg(obuf *o, const sniff_an *an, const sniff_msg *m) {
  char *w0 = ob_room(o, JSON_ROOM), *w = w0;
  w = PUT_LIT(w, "{\"type\":\"msg\",\"conn\":");
  w = put_u32(w, m->conn);
  w = m->dir ? PUT_LIT(w, ",\"dir\":\"resp\",\"index\":") : PUT_LIT(w, ",\"dir\":\"orig\",\"index\":");
  w = put_u32(w, m->index);
  w = m->h.is_request ? PUT_LIT(w, ",\"kind\":\"request\",\"ts_first\":")
                      : PUT_LIT(w, ",\"kind\":\"response\",\"ts_first\":");
  w = put_ts(w, m->ts_first);
  w = PUT_LIT(w, ",\"ts_last\":");
  w = put_ts(w, m->ts_last);
  w = PUT_LIT(w, ",\"first_packet\":");
  w = put_u64(w, m->pkt_first);
  w = PUT_LIT(w, ",\"last_packet\":");
  w = put_u64(w, m->pkt_last);
  w = PUT_LIT(w, ",\"size\":");
  w = put_u32(w, m->size);
  w = PUT_LIT(w, ",\"header\":{\"time\":");
  w = put_u32(w, m->h.time);
  w = PUT_LIT(w, ",\"cache\":");
  w = put_bool(w, m->h.cache);
  w = PUT_LIT(w, ",\"steps\":");
  w = put_bool(w, m->h.steps);
  w = PUT_LIT(w, ",\"request\":");
  w = put_bool(w, m->h.is_request);
  w = PUT_LIT(w, ",\"reserved\":");
  w = put_u32(w, m->h.reserved);
  w = PUT_LIT(w, ",\"status\":");
  w = put_u32(w, m->h.status);
  w = PUT_LIT(w, ",\"cache_control\":");
  w = put_u32(w, m->h.cache_control);
  w = PUT_LIT(w, "},\"segments\":[");
  for (uint32_t k = 0; k < m->nseg && k < SNIFF_MSG_SEGS; k++) {
    if (k) *w++ = ',';
    w = put_u32(w, m->segs[k]);
  }
  w = PUT_LIT(w, "],\"nsegments\":");
  w = put_u32(w, m->nseg);
  w = PUT_LIT(w, ",\"shares_segment\":");
  w = put_bool(w, m->shares_segment);
  w = PUT_LIT(w, ",\"complete\":");
  w = put_bool(w, m->complete);
  w = PUT_LIT(w, ",\"bytes_missing\":");
  w = put_bool(w, m->hole);
  w = PUT_LIT(w, ",\"malformed\":");
  w = put_bool(w, m->err != CALC_OK);
  if (m->err != CALC_OK) {
    w = PUT_LIT(w, ",\"error\":\"");
    w = put_str(w, calc_err_name((calc_err)m->err));
    *w++ = '"';
  }
  const sniff_conn *c = sniff_conn_get(an, m->conn);
  if (m->h.is_request && c && c->role == SNIFF_ROLE_CLIENT_PROXY) {
    w = PUT_LIT(w, ",\"upstream_connections\":");
    w = put_u32(w, m->n_upstream);
  }
  if (m->text) {
    w = m->h.is_request ? PUT_LIT(w, ",\"expression\":") : PUT_LIT(w, ",\"result\":");
    o->len += (size_t)(w - w0);
    put_json_text(o, m->text);
    put_refused(o, m);
    ob_write(o, "}\n", 2);
    return;
  }
  o->len += (size_t)(w - w0);
  put_refused(o, m);
  ob_write(o, "}\n", 2);
}

void print_json(run *r) {
  const sniff_an *an = &r->an;
  static obuf ob;
  ob.f = r->out;
  ob.len = 0;
  for (uint32_t i = 0; i < an->nconns; i++) json_conn(&ob, &an->conns[i]);
  for (uint32_t i = 0; i < an->nmsgs; i++) json_msg(&ob, an, &an->msgs[i]);
  ob_flush(&ob);
  fprintf(r->out,
          "{\"type\":\"summary\",\"packets\":%" PRIu64 ",\"tcp\":%" PRIu64 ",\"other\":%" PRIu64
          ",\"undecodable\":%" PRIu64 ",\"snaplen_cut\":%" PRIu64 ",\"connections\":%u,"
          "\"messages\":%u,\"kernel_drops\":%" PRIu64 "}\n",
          an->pkts, an->tcp_pkts, an->other_pkts, an->bad_pkts, an->trunc_pkts, an->nconns,
          an->nmsgs, r->drops);
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
  if (r->notes.len) calc_buf_append(&notes, r->notes.data, r->notes.len);
  calc_buf_putc(&notes, 0);
  const char *text = notes.data && !notes.failed ? (const char *)notes.data : "";
  calc_json_str(&b, text, strlen(text), 0);
  calc_buf_puts(&b, "}\n");
  fwrite(b.data, 1, b.len, r->out);
}
