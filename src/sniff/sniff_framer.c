/* sniff_framer.c: calculator messages framed from one direction's in-order stream bytes: the
 * 12-byte header gives each message's total length, segments are counted per message, holes
 * (gaps, snaplen cuts) keep sizes known but payloads undecoded, and a hole inside a header
 * stops the framing of that direction. On a client->proxy connection a complete request
 * waits for its answer (upstream connections opened meanwhile are its own). */
#include <string.h>

#include "calc/alloc.h"
#include "sniff_int.h"

/* client->proxy connections holding a request they have not started answering: the candidates
 * for the cause of an upstream connection (sniff_tcp.c's roles). */
static void pending_remove(sniff_an *an, uint32_t id) {
  for (uint32_t i = 0; i < an->npending; i++)
    if (an->pending[i] == id) {
      an->pending[i] = an->pending[--an->npending];
      return;
    }
}

static int pending_add(sniff_an *an, uint32_t id) {
  for (uint32_t i = 0; i < an->npending; i++)
    if (an->pending[i] == id) return 0;
  if (an->npending == an->cappending) {
    uint32_t n = an->cappending ? an->cappending * 2 : 16;
    uint32_t *p = calc_realloc(an->pending, n * sizeof *p);
    if (!p) return -1;
    an->pending = p;
    an->cappending = n;
  }
  an->pending[an->npending++] = id;
  return 0;
}

/* A message whose last byte arrived (or that can never complete: m->err). body: its
 * payload when it came whole in one segment (decoded straight from the packet), else NULL
 * (the bytes gathered in d->payload). */
static void msg_done(sniff_an *an, sniff_conn *c, int dir, sniff_msg *m, const uint8_t *body) {
  sniff_dir *d = &c->d[dir];
  if (an->o.decode && m->complete && !m->hole && m->err == CALC_OK && m->size >= CALC_HEADER_SIZE) {
    if (!body) body = d->payload && d->payload->data ? d->payload->data : (const uint8_t *)"";
    m->text = sniff_text_decode(an, m, body, m->size - CALC_HEADER_SIZE);
  }
  sniff_emit(an, SNIFF_EV_MESSAGE, c, dir, m, 0);
  if (c->role == SNIFF_ROLE_CLIENT_PROXY) {
    if (dir == 0 && m->complete) {
      c->pending_req = (int32_t)(m - an->msgs);
      if (pending_add(an, c->id) < 0) sniff_incomplete(an, CALC_ERR_NOMEM);
    } else if (dir == 1 && c->last_req >= 0) {
      sniff_emit(an, SNIFF_EV_PROXY_ANSWER, c, dir, &an->msgs[c->last_req], 0);
    }
  }
}

static void msg_start(sniff_an *an, sniff_conn *c, int dir) {
  if (dir == 0 && c->role == SNIFF_ROLE_CLIENT_PROXY && c->early_upstreams && c->d[0].nmsgs == 1) {
    /* the upstream connections its proxy opened before this first request are this request's */
    sniff_msg *m = &an->msgs[c->d[0].cur_msg];
    m->n_upstream = c->early_upstreams;
    m->first_upstream = c->early_first;
  }
  if (dir == 1 && c->role == SNIFF_ROLE_CLIENT_PROXY && c->pending_req >= 0) {
    c->last_req = c->pending_req;
    c->pending_req = -1;
    pending_remove(an, c->id);
  }
}

static void seg_add(sniff_msg *m, uint32_t n, bool *newseg) {
  if (*newseg) {
    if (m->nseg < SNIFF_MSG_SEGS) m->segs[m->nseg] = n;
    m->nseg++;
    *newseg = false;
  } else if (m->nseg && m->nseg <= SNIFF_MSG_SEGS) {
    m->segs[m->nseg - 1] += n;
  }
}

void sniff_framer_feed(sniff_an *an, sniff_conn *c, int dir, const uint8_t *data, size_t n,
                        uint64_t ts, bool *newseg, bool *mid) {
  sniff_dir *d = &c->d[dir];
  while (n > 0 && !d->desync) {
    const uint8_t *body = NULL;
    if (d->cur_msg < 0) {
      if (an->nmsgs >= SNIFF_MAX_MSGS) {
        sniff_incomplete(an, CALC_ERR_LIMIT);
        d->desync = true;
        return;
      }
      sniff_msg *ms = sniff_array_room(&an->msg_store, an->nmsgs, sizeof *ms, SNIFF_MAX_MSGS);
      if (!ms) {
        sniff_incomplete(an, CALC_ERR_NOMEM);
        return;
      }
      an->msgs = ms;
      sniff_msg *m = &an->msgs[an->nmsgs];
      memset(m, 0, sizeof *m);
      m->conn = c->id;
      m->dir = (uint8_t)dir;
      m->index = ++d->nmsgs;
      m->ts_first = m->ts_last = ts;
      m->pkt_first = an->pkts;
      m->shares_segment = *mid;
      d->cur_msg = (int32_t)an->nmsgs++;
      d->hdr_have = d->msg_have = d->msg_total = 0;
      *newseg = true;
      msg_start(an, c, dir);
    }
    sniff_msg *m = &an->msgs[d->cur_msg];
    m->ts_last = ts;
    m->pkt_last = an->pkts;
    size_t take;
    if (d->hdr_have < CALC_HEADER_SIZE) {
      take = CALC_HEADER_SIZE - d->hdr_have;
      if (take > n) take = n;
      if (!data) {
        /* Without the header the stream cannot be framed again (no resync marker). */
        m->hole = true;
        m->err = CALC_ERR_TRUNCATED;
        d->desync = true;
        d->cur_msg = -1;
        sniff_emit(an, SNIFF_EV_UNFRAMED, c, dir, m, 0);
        return;
      }
      memcpy(d->hdr + d->hdr_have, data, take);
      d->hdr_have += (uint32_t)take;
      d->msg_have += (uint32_t)take;
      seg_add(m, (uint32_t)take, newseg);
      data += take;
      n -= take;
      if (d->hdr_have == CALC_HEADER_SIZE) {
        calc_header_decode(d->hdr, CALC_HEADER_SIZE, &m->h);
        m->size = d->msg_total = m->h.total_len;
        if (d->msg_total < CALC_HEADER_SIZE) {
          m->err = CALC_ERR_FRAMING;
          d->desync = true;
          d->cur_msg = -1;
          msg_done(an, c, dir, m, NULL);
          return;
        }
        if (d->payload) calc_buf_reset(d->payload);
      }
    } else {
      take = d->msg_total - d->msg_have;
      if (take > n) take = n;
      if (data && d->msg_have == CALC_HEADER_SIZE && take == d->msg_total - d->msg_have) {
        body = data;  /* the whole payload is in this segment: decode it from the packet */
        data += take;
      } else if (data) {
        if (an->o.decode && !m->hole) {
          if (!d->payload && (d->payload = calc_malloc(sizeof *d->payload)))
            calc_buf_init(d->payload, 0);
          if (!d->payload || calc_buf_append(d->payload, data, take) < 0) m->hole = true;
        }
        data += take;
      } else {
        m->hole = true;
      }
      d->msg_have += (uint32_t)take;
      seg_add(m, (uint32_t)take, newseg);
      n -= take;
    }
    if (d->hdr_have == CALC_HEADER_SIZE && d->msg_have == d->msg_total) {
      m->complete = true;
      if (n > 0) m->shares_segment = true;
      d->cur_msg = -1;
      *mid = true;
      msg_done(an, c, dir, m, body);
    }
  }
}

