/* sniff_trace.c: an analysis reduced to the behaviour docs/scenarios.md judges (sniff_reduce.h),
 * printed as the --trace text (sniff_trace.h); sniff_verify.c compares two reductions.
 *
 * Kept: downstream connections (client->server, client->proxy) in the order their first
 * packet appeared, with handshake, teardown class, message sizes and segmentation; for each
 * request on a client->proxy connection, the upstream connections it caused, each reduced the
 * same way, and whether the proxy closed them before it started the response.
 * Dropped (docs/scenarios.md "What varies"): ports, sequence numbers, time stamps, windows, options,
 * 3- vs 4-segment teardowns, SYN retry counts, interleaving of different connections. */
#include "sniff_trace.h"

#include <string.h>

/* The trace text is built once per connection per analysis (verify matches connections by
 * it), so it is appended piece by piece rather than through calc_buf_printf. */
static void put_u(calc_buf *out, uint32_t v) {
  char tmp[10], *q = tmp + sizeof tmp;
  do {
    *--q = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  calc_buf_append(out, q, (size_t)(tmp + sizeof tmp - q));
}

static void trace_msg(calc_buf *out, const char *ind, const char *kind, const sniff_msg *m) {
  /* "%s%s %u %u B segments=%u" */
  calc_buf_puts(out, ind);
  calc_buf_puts(out, kind);
  calc_buf_putc(out, ' ');
  put_u(out, m->index);
  calc_buf_putc(out, ' ');
  put_u(out, m->size);
  calc_buf_puts(out, " B segments=");
  put_u(out, m->nseg);
  if (m->nseg > 1) {
    calc_buf_puts(out, " (");
    for (uint32_t i = 0; i < m->nseg && i < SNIFF_MSG_SEGS; i++) {
      if (i) calc_buf_putc(out, '+');
      put_u(out, m->segs[i]);
    }
    calc_buf_puts(out, m->nseg > SNIFF_MSG_SEGS ? "+...)" : ")");
  }
  if (m->shares_segment) calc_buf_puts(out, " shared-segment");
  if (!m->complete) calc_buf_puts(out, " incomplete");
  if (m->hole) calc_buf_puts(out, " bytes-missing");
  if (m->err != CALC_OK) calc_buf_puts(out, " malformed");
  if (!m->h.is_request && m->h.status) {
    calc_buf_puts(out, " status=");
    put_u(out, m->h.status);
  }
  calc_buf_putc(out, '\n');
}

void sniff_trace_conn(const sniff_red *r, const sniff_conn *c, const char *ind, calc_buf *out) {
  sniff_end e = sniff_conn_end(c);
  calc_buf_puts(out, sniff_role_name(c->role));
  calc_buf_putc(out, ' ');
  calc_buf_puts(out, e == SNIFF_END_REFUSED ? "" : c->established ? "handshake " : "no-handshake ");
  calc_buf_puts(out, e == SNIFF_END_REFUSED ? "refused" : sniff_end_name(e));
  calc_buf_putc(out, '\n');
  const sniff_msg *req[MAXM], *resp[MAXM];
  uint32_t nq = sniff_red_msgs(r, c->id, 0, req, MAXM), np = sniff_red_msgs(r, c->id, 1, resp, MAXM);
  /* ind + 2 and ind + 4 spaces (cut at 31 bytes, as snprintf into 32 did) */
  char ind2[32], ind3[32];
  size_t il = strlen(ind);
  size_t l2 = il + 2 < sizeof ind2 ? il + 2 : sizeof ind2 - 1;
  size_t l3 = il + 4 < sizeof ind3 ? il + 4 : sizeof ind3 - 1;
  memcpy(ind2, ind, il < l2 ? il : l2);
  memset(ind2 + (il < l2 ? il : l2), ' ', l2 - (il < l2 ? il : l2));
  ind2[l2] = 0;
  memcpy(ind3, ind, il < l3 ? il : l3);
  memset(ind3 + (il < l3 ? il : l3), ' ', l3 - (il < l3 ? il : l3));
  ind3[l3] = 0;
  for (uint32_t i = 0; i < nq || i < np; i++) {
    if (i >= MAXM) {
      calc_buf_printf(out, "%s... %u requests, %u responses\n", ind2, nq, np);
      break;
    }
    if (i < nq) {
      trace_msg(out, ind2, "request", req[i]);
      if (c->role == SNIFF_ROLE_CLIENT_PROXY) {
        const sniff_conn *u[MAXU];
        uint32_t nu = sniff_red_upstreams(r, c->id, req[i]->index, u, MAXU);
        if (!nu) {
          calc_buf_puts(out, ind3);
          calc_buf_puts(out, "no upstream connection\n");
        }
        for (uint32_t k = 0; k < nu && k < MAXU; k++) {
          calc_buf_puts(out, ind3);
          calc_buf_puts(out, "upstream ");
          sniff_trace_conn(r, u[k], ind3, out);
          if (i < np) {
            calc_buf_puts(out, ind3);
            calc_buf_puts(out, "  closed before response: ");
            calc_buf_puts(out, sniff_upstream_done(u[k], NULL) <= resp[i]->ts_first ? "yes\n" : "no\n");
          }
        }
      }
    }
    if (i < np) trace_msg(out, ind2, "response", resp[i]);
  }
}

void sniff_trace(const sniff_an *an, calc_buf *out) {
  sniff_red r;
  sniff_red_init(&r, an);
  if (!r.ok) {
    calc_buf_printf(out, "# %s\n", calc_strerror(CALC_ERR_NOMEM));
    sniff_red_free(&r);
    return;
  }
  calc_buf_puts(out, "# calc-sniff trace 1\n");
  uint32_t k = 0;
  for (uint32_t i = 0; i < an->nconns; i++) {
    const sniff_conn *c = &an->conns[i];
    if (!sniff_downstream(c)) continue;
    calc_buf_puts(out, "conn ");  /* sniff_trace_conn continues this line */
    put_u(out, ++k);
    calc_buf_putc(out, ' ');
    sniff_trace_conn(&r, c, "", out);
  }
  sniff_red_free(&r);
}

