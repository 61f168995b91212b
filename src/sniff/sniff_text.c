/* sniff_text.c: calculator payloads decoded to text (the request's expression as the
 * reference prints it, the response's result or error), through a cache by content: decoding
 * a pickle costs about a hundred times more than reassembling it. */
#include <stdio.h>
#include <string.h>

#include "calc/alloc.h"
#include "calc/eval.h"
#include "calc/exc.h"
#include "calc/pickle.h"
#include "sniff_int.h"

/* Decoded payloads by content. Calculator traffic repeats itself (the same expression, the
 * cached answer), and decoding a pickle costs about a hundred times more than reassembling
 * it: a small direct-mapped cache keyed by the payload bytes (compared in full, never trusted
 * by hash alone) makes --json on a benchmark capture cost little more than the analysis. */
#define TC_SLOTS 256
#define TC_MAX_PAYLOAD 8192
/* Decoded texts live in chunks owned by the analysis (freed with it): a message's text points
 * into them, and messages with the same payload share one copy (no malloc per message). */
#define TEXT_CHUNK (64u << 10)
struct text_chunk {
  struct text_chunk *next;
  size_t used, cap;
  char data[];
};
struct sniff_textcache {
  struct tc_entry {
    uint8_t *payload;
    uint32_t len, hash;
    uint16_t status;
    bool is_request;
    uint8_t err;            /* the decoder's calc_err for this payload */
    const char *text;       /* in chunks */
    const uint8_t *refused; /* in chunks: the payload, when the decoder refused it (or NULL) */
  } e[TC_SLOTS];
  struct text_chunk *chunks;
  size_t refused_bytes;     /* kept for sniff_msg.refused, bounded by SNIFF_REFUSED_MAX */
};

/* A copy of s[0, n) in the analysis's text chunks, or NULL (out of memory). */
static char *text_keep(struct sniff_textcache *tc, const char *s, size_t n) {
  struct text_chunk *k = tc->chunks;
  if (!k || k->cap - k->used < n + 1) {
    size_t cap = n + 1 > TEXT_CHUNK ? n + 1 : TEXT_CHUNK;
    if (!(k = calc_malloc(sizeof *k + cap))) return NULL;
    k->used = 0;
    k->cap = cap;
    k->next = tc->chunks;
    tc->chunks = k;
  }
  char *t = k->data + k->used;
  memcpy(t, s, n);
  t[n] = 0;
  k->used += n + 1;
  return t;
}

/* The cache's key hash: the length and the first and last 64 bytes, 8 bytes a step (hashing
 * every byte cost as much as all the reassembly). Entries are compared in full, so the hash
 * only spreads them. */
#define HASH_EDGE 64
static uint64_t hash_words(uint64_t h, const uint8_t *p, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t w;
    memcpy(&w, p + i, 8);
    h = (h ^ w) * 0xff51afd7ed558ccdu;
    h ^= h >> 29;
  }
  uint64_t t = 0;
  memcpy(&t, p + i, n - i);
  return (h ^ t) * 0xc4ceb9fe1a85ec53u;
}
static uint32_t payload_hash(const uint8_t *p, size_t n) {
  uint64_t h = 0x9e3779b97f4a7c15u ^ n;
  if (n <= 2 * HASH_EDGE) {
    h = hash_words(h, p, n);
  } else {
    h = hash_words(h, p, HASH_EDGE);
    h = hash_words(h, p + n - HASH_EDGE, HASH_EDGE);
  }
  h ^= h >> 32;
  return (uint32_t)h;
}

/* A refused payload p[0, n) kept for m (sniff_msg.refused), within the analysis' bound; past
 * it, or out of memory, m->refused stays NULL (the text still says why it was refused). */
static void keep_refused(struct sniff_textcache *tc, sniff_msg *m, const uint8_t *p, size_t n) {
  if (n > SNIFF_REFUSED_MAX - tc->refused_bytes) return;
  char *k = text_keep(tc, (const char *)p, n);
  if (!k) return;
  tc->refused_bytes += n;
  m->refused = (const uint8_t *)k;
  m->refused_len = (uint32_t)n;
}

/* The text of m's payload p[0, n) in the analysis's chunks, or NULL when memory ran out (then
 * m->err stays CALC_OK). An undecodable payload's text is the decoder's reason, m->err its
 * error. */
static char *decode_payload(struct sniff_textcache *tc, sniff_msg *m, const uint8_t *p, size_t n) {
  calc_buf b;
  calc_buf_init(&b, SNIFF_TEXT_MAX);
  calc_exc e;
  memset(&e, 0, sizeof e);
  if (m->h.is_request) {
    calc_tree t;
    memset(&t, 0, sizeof t);
    if (calc_unpickle_request(p, n, &t, &e) == 0) {
      calc_expr_print(t.root, &b);
      calc_tree_free(&t);
    } else if (e.err != CALC_ERR_NOMEM) {
      m->err = e.err != CALC_OK ? e.err : CALC_ERR_INVALID;
      calc_buf_printf(&b, "undecodable request: %s", e.msg);
    }
  } else {
    calc_pyobj *o = NULL;
    if (calc_unpickle_response(p, n, &o, &e) == 0 && o) {
      const calc_pyobj *r = o;
      if (m->h.status == 200 && o->kind == CALC_PY_TUPLE && o->n >= 1) r = o->items[0];
      if (r->kind == CALC_PY_EXC) {
        calc_buf_printf(&b, "%s: ", r->name ? r->name : "?");
        calc_pyobj_str(r, &b);
      } else {
        calc_pyobj_str(r, &b);
      }
      calc_pyobj_free(o);
    } else if (e.err != CALC_ERR_NOMEM) {
      m->err = e.err != CALC_OK ? e.err : CALC_ERR_INVALID;
      calc_buf_printf(&b, "undecodable response: %s", e.msg);
    }
  }
  /* Out of memory while decoding or printing: no text, rather than one that says the payload
   * is bad (or a cut one) and would be remembered for every copy of it. */
  char *s = e.err == CALC_ERR_NOMEM || b.failed == CALC_ERR_NOMEM
                ? NULL
                : text_keep(tc, b.data ? (const char *)b.data : "", b.len);
  calc_buf_free(&b);
  if (s && m->err != CALC_OK) keep_refused(tc, m, p, n);
  return s;
}

char *sniff_text_decode(sniff_an *an, sniff_msg *m, const uint8_t *p, size_t n) {
  if (!an->tc && !(an->tc = calc_calloc(1, sizeof *an->tc))) {
    sniff_incomplete(an, CALC_ERR_NOMEM);
    return NULL;
  }
  if (n > TC_MAX_PAYLOAD) {
    char *t = decode_payload(an->tc, m, p, n);
    if (!t) sniff_incomplete(an, CALC_ERR_NOMEM);
    return t;
  }
  uint32_t h = payload_hash(p, n) ^ (m->h.is_request ? 0x80000000u : 0) ^ m->h.status;
  struct tc_entry *e = &an->tc->e[h % TC_SLOTS];
  if (e->text && e->hash == h && e->len == n && e->is_request == m->h.is_request &&
      e->status == m->h.status && !memcmp(e->payload, p, n)) {
    m->err = e->err;
    m->refused = e->refused;
    m->refused_len = e->refused ? e->len : 0;
    return (char *)e->text;
  }
  char *t = decode_payload(an->tc, m, p, n);
  if (!t) {
    sniff_incomplete(an, CALC_ERR_NOMEM);
    return NULL;
  }
  uint8_t *copy = calc_malloc(n ? n : 1);
  if (!copy) return t;
  memcpy(copy, p, n);
  calc_free(e->payload);
  *e = (struct tc_entry){copy, (uint32_t)n, h, m->h.status, m->h.is_request, m->err, t, m->refused};
  return t;
}


void sniff_text_free(struct sniff_textcache *tc) {
  if (!tc) return;
  for (size_t i = 0; i < TC_SLOTS; i++) calc_free(tc->e[i].payload);
  for (struct text_chunk *k = tc->chunks, *nx; k; k = nx) {
    nx = k->next;
    calc_free(k);
  }
  calc_free(tc);
}
