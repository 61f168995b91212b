/* notes.c: the timeline's per-packet notes ("3-way handshake; request 61 B: 1 + 2"), written
 * from the events the analysis reports while it takes in the packet (sniff.h). The analysis
 * only says what happened; the words are the program's. */
#include <stdio.h>
#include <string.h>

#include "sniff_cli.h"

/* Up to n-1 bytes of s for a note: control bytes and DEL escaped as \xNN (the text comes from an
 * untrusted payload and ends up on a terminal), "..." when cut. */
static void text_abbrev(const char *s, char *out, size_t n) {
  size_t o = 0;
  for (const unsigned char *q = (const unsigned char *)s; *q; q++) {
    bool esc = *q < 0x20 || *q == 0x7f;
    size_t need = esc ? 4 : 1;
    if (o + need + 4 > n) {
      memcpy(out + o, "...", 4);
      return;
    }
    if (esc) o += (size_t)snprintf(out + o, n - o, "\\x%02x", *q);
    else out[o++] = (char)*q;
  }
  out[o] = 0;
}

/* Most packets of a capture carry a note: appended piece by piece, not through printf. */
static void put(calc_buf *b, const char *s) { calc_buf_append(b, s, strlen(s)); }
static void put_u(calc_buf *b, uint64_t v) {
  char tmp[20], *q = tmp + sizeof tmp;
  do {
    *--q = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  calc_buf_append(b, q, (size_t)(tmp + sizeof tmp - q));
}

static void note_message(calc_buf *b, const sniff_msg *m) {
  const char *kind = m->h.is_request ? "request" : "response";
  char ab[48] = "";
  if (m->text) text_abbrev(m->text, ab, sizeof ab);
  if (m->err != CALC_OK && !m->text) {
    put(b, "malformed ");
    put(b, kind);
    put(b, ": total length ");
    put_u(b, m->size);
    return;
  }
  put(b, kind);
  put(b, " ");
  put_u(b, m->size);
  put(b, " B");
  if (m->nseg > 1) {
    put(b, " in ");
    put_u(b, m->nseg);
    put(b, " segments");
  }
  if (!m->h.is_request && m->h.status != 200) {
    put(b, ": status ");
    put_u(b, m->h.status);
    if (m->text) {
      put(b, " ");
      put(b, ab);
    } else if (m->hole) {
      put(b, " (bytes missing)");
    }
    return;
  }
  if (m->hole) put(b, " (bytes missing)");
  if (m->text) {
    put(b, ": ");
    put(b, ab);
  }
}

/* The proxy answers request q: from its cache, after its upstream connection was refused, or
 * after the upstream connections q caused. */
static void note_answer(calc_buf *b, const sniff_an *an, const sniff_msg *q) {
  const sniff_conn *u = sniff_conn_get(an, q->first_upstream);
  if (q->n_upstream == 0) {
    put(b, "cache hit: no upstream connection");
  } else if (q->n_upstream == 1 && u && sniff_conn_end(u) == SNIFF_END_REFUSED) {
    put(b, "answered after upstream #");
    put_u(b, u->id);
    put(b, " was refused");
  } else {
    put(b, "answered after ");
    put_u(b, q->n_upstream);
    put(b, q->n_upstream == 1 ? " upstream connection (first #" : " upstream connections (first #");
    put_u(b, q->first_upstream);
    put(b, ")");
  }
}

void note_event(void *ctx, const sniff_event *ev) {
  calc_buf *b = &((run *)ctx)->notes;
  if (b->len) put(b, "; ");
  const char *side = ev->dir == 0 ? "client" : "server";
  switch (ev->kind) {
    case SNIFF_EV_SYN_RETRY: put(b, "SYN retry "); put_u(b, (uint64_t)ev->n); break;
    case SNIFF_EV_PORT_REUSED: put(b, "port reused: new connection #"); put_u(b, ev->c->id); break;
    case SNIFF_EV_MIDSTREAM:
      put(b, "connection #");
      put_u(b, ev->c->id);
      put(b, " picked up midstream");
      break;
    case SNIFF_EV_UPSTREAM:
      put(b, "upstream of #");
      put_u(b, ev->m->conn);
      put(b, " request ");
      put_u(b, ev->m->index);
      break;
    case SNIFF_EV_EARLY_UPSTREAM:
      put(b, "upstream of #");
      put_u(b, (uint64_t)ev->n);
      put(b, " request 1 (opened before it)");
      break;
    case SNIFF_EV_HANDSHAKE: put(b, "3-way handshake"); break;
    case SNIFF_EV_RETRANSMISSION: put(b, "retransmission"); break;
    case SNIFF_EV_RETRANSMISSION_OOO: put(b, "retransmission (out of order)"); break;
    case SNIFF_EV_OVERLAP: put(b, "overlap: "); put_u(b, (uint64_t)ev->n); put(b, " B retransmitted"); break;
    case SNIFF_EV_OUT_OF_WINDOW: put(b, "sequence number out of window: ignored"); break;
    case SNIFF_EV_OUT_OF_ORDER: put(b, "out of order: "); put_u(b, (uint64_t)ev->n); put(b, " B ahead"); break;
    case SNIFF_EV_SNAPLEN_CUT: put(b, "snaplen cut "); put_u(b, (uint64_t)ev->n); put(b, " B"); break;
    case SNIFF_EV_GAP:
      put(b, "gap of ");
      put_u(b, (uint64_t)ev->n);
      put(b, " B in ");
      put(b, side);
      put(b, " stream");
      break;
    case SNIFF_EV_UNFRAMED: put(b, "bytes missing inside a message header: stream no longer framed"); break;
    case SNIFF_EV_MESSAGE: note_message(b, ev->m); break;
    case SNIFF_EV_PROXY_ANSWER: note_answer(b, ev->an, ev->m); break;
    case SNIFF_EV_FIN:
      put(b, "FIN ");
      if (ev->n) put(b, "first ");
      put(b, "by ");
      put(b, side);
      break;
    case SNIFF_EV_RST:
      if (ev->n) {
        put(b, "refused: SYN, RST");
      } else {
        put(b, "RST by ");
        put(b, side);
      }
      break;
  }
}
