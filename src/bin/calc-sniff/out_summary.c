/* out_summary.c: one line per connection (--summary, and after the timeline) and the totals
 * of --stats. */
#include <inttypes.h>

#include "obuf.h"
#include "sniff_cli.h"

void print_summary(run *r, bool header) {
  const sniff_an *an = &r->an;
  static obuf own;
  obuf *o = r->ob;
  if (!o) {
    own.f = r->out;
    o = &own;
  }
  if (header) ob_write(o, "\nconnections:\n", 14);
  for (uint32_t i = 0; i < an->nconns; i++) {
    const sniff_conn *c = &an->conns[i];
    /* "#%u %s %s -> %s %s %s teardown=%s", by hand (one line per connection) */
    char *w0 = ob_room(o, OB_LINE), *w = w0;
    *w++ = '#';
    w = put_u64(w, c->id);
    *w++ = ' ';
    w = put_str(w, sniff_role_name(c->role));
    *w++ = ' ';
    w = put_addr(w, c, 0);
    w = PUT_LIT(w, " -> ");
    w = put_addr(w, c, 1);
    *w++ = ' ';
    w = put_str(w, sniff_conn_state(c));
    *w++ = ' ';
    w = put_str(w, c->history);
    w = PUT_LIT(w, " teardown=");
    w = put_str(w, sniff_end_name(sniff_conn_end(c)));
    if (c->first_fin >= 0) {
      w = PUT_LIT(w, " (");
      w = put_u64(w, c->teardown_pkts);
      w = PUT_LIT(w, " segments)");
    }
    w = PUT_LIT(w, " msgs=");
    w = put_u64(w, c->d[0].nmsgs);
    *w++ = '/';
    w = put_u64(w, c->d[1].nmsgs);
    if (c->syn_retries) {
      w = PUT_LIT(w, " syn-retries=");
      w = put_u64(w, c->syn_retries);
    }
    if (c->parent) {
      w = PUT_LIT(w, " upstream-of=#");
      w = put_u64(w, c->parent);
      w = PUT_LIT(w, "/request-");
      w = put_u64(w, c->parent_req);
    }
    o->len += (size_t)(w - w0);
    for (int d = 0; d < 2; d++) {
      const sniff_dir *s = &c->d[d];
      if (s->retrans_pkts || s->overlap_bytes || s->ooo_pkts || s->gap_bytes || s->trunc_bytes) {
        char line[OB_LINE];
        int n = snprintf(line, sizeof line,
                         " %s[retrans=%" PRIu64 " overlap=%" PRIu64 "B ooo=%" PRIu64 " gap=%" PRIu64
                         "B snaplen-cut=%" PRIu64 "B]",
                         d ? "server" : "client", s->retrans_pkts, s->overlap_bytes, s->ooo_pkts,
                         s->gap_bytes, s->trunc_bytes);
        ob_write(o, line, n < 0 ? 0 : (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
      }
    }
    ob_write(o, "\n", 1);
  }
  ob_flush(o);
  fprintf(r->out, "%" PRIu64 " packets: %" PRIu64 " TCP, %" PRIu64 " other, %" PRIu64
                  " undecodable, %" PRIu64 " cut by snaplen; %u connections, %u messages\n",
          an->pkts, an->tcp_pkts, an->other_pkts, an->bad_pkts, an->trunc_pkts, an->nconns,
          an->nmsgs);
}

/* Totals for big captures (and the benchmark): the analysis without per-connection output. */
void print_stats(run *r) {
  const sniff_an *an = &r->an;
  static const char *states[] = {"S0", "S1", "SF", "REJ", "S2", "S3", "RSTO", "RSTR",
                                 "RSTOS0", "RSTRH", "SH", "SHR", "OTH"};
  uint32_t role[4] = {0}, end[6] = {0}, st[13] = {0}, lossy = 0, retrans = 0, ooo = 0;
  for (uint32_t i = 0; i < an->nconns; i++) {
    const sniff_conn *c = &an->conns[i];
    role[c->role]++;
    end[sniff_conn_end(c)]++;
    const char *s = sniff_conn_state(c);
    for (int k = 0; k < 13; k++)
      if (!strcmp(s, states[k])) st[k]++;
    if (sniff_conn_lossy(c)) lossy++;
    retrans += (uint32_t)(c->d[0].retrans_pkts + c->d[1].retrans_pkts);
    ooo += (uint32_t)(c->d[0].ooo_pkts + c->d[1].ooo_pkts);
  }
  uint32_t req = 0, resp = 0, single = 0, hits = 0;
  for (uint32_t i = 0; i < an->nmsgs; i++) {
    const sniff_msg *m = &an->msgs[i];
    if (m->h.is_request) req++; else resp++;
    if (m->nseg == 1 && !m->shares_segment) single++;
    const sniff_conn *c = sniff_conn_get(an, m->conn);
    if (m->h.is_request && c && c->role == SNIFF_ROLE_CLIENT_PROXY && !m->n_upstream) hits++;
  }
  fprintf(r->out, "connections: %u (", an->nconns);
  for (int k = 0; k < 4; k++) fprintf(r->out, "%s%s %u", k ? ", " : "", sniff_role_name((sniff_role)k), role[k]);
  fprintf(r->out, ")\nconn_state:");
  for (int k = 0; k < 13; k++) if (st[k]) fprintf(r->out, " %s %u", states[k], st[k]);
  fprintf(r->out, "\nteardown:");
  for (int k = 0; k < 6; k++) if (end[k]) fprintf(r->out, " %s %u", sniff_end_name((sniff_end)k), end[k]);
  fprintf(r->out, "\nmessages: %u requests, %u responses, %u in one segment of their own; "
                  "%u proxy requests answered without upstream connection\n", req, resp, single, hits);
  fprintf(r->out, "losses: %u connections with missing bytes, %u retransmissions, %u out of order\n",
          lossy, retrans, ooo);
  fprintf(r->out, "%" PRIu64 " packets: %" PRIu64 " TCP, %" PRIu64 " other, %" PRIu64
                  " undecodable, %" PRIu64 " cut by snaplen\n",
          an->pkts, an->tcp_pkts, an->other_pkts, an->bad_pkts, an->trunc_pkts);
}
