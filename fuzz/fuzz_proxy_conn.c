/* fuzz_proxy_conn: the proxy's connection machine (calc/proxy_conn.h) under arbitrary event
 * sequences on both sides. The input is a script: each op byte picks an event (client bytes,
 * server bytes, upstream connected / closed / failed in any way, the client's FIN, an idle
 * timeout, either socket taking part of a send or becoming writable); a byte event carries a
 * 2-byte length and that many bytes from the input. Checks: no crash, leak or UB; buffers
 * stay within their caps; every SEND is non-empty; an upstream is opened only when none is
 * open and is closed before the client gets the answer it produced; after the client's FIN,
 * with the upstream failing and both sides reading, the connection always ends in CLOSE_CLIENT.
 * Seeds: fuzz/corpus/fuzz_proxy_conn (fuzz/make_corpus.py). */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include "calc/proxy_conn.h"

#define CAP CALC_MAX_MESSAGE

typedef struct state {
  calc_proxy_conn *pc;
  bool upstream_open, closed;
} state;

/* Carries out actions; each socket takes up to `take` bytes in all. */
static void drive(state *s, size_t take) {
  calc_proxy_conn_action a;
  size_t client_take = take, up_take = take;
  for (int guard = 0; guard < 100000 && !s->closed; guard++) {
    calc_proxy_conn_next(s->pc, &a);
    switch (a.kind) {
      case CALC_PROXY_WAIT: return;
      case CALC_PROXY_OPEN_UPSTREAM:
        if (s->upstream_open) abort();
        s->upstream_open = true;
        break;
      case CALC_PROXY_CLOSE_UPSTREAM: s->upstream_open = false; break;
      case CALC_PROXY_SEND_CLIENT: {
        if (a.len == 0 || !a.data) abort();
        size_t n = a.len < client_take ? a.len : client_take;
        client_take -= n;
        calc_proxy_conn_client_sent(s->pc, n, 7);
        break;
      }
      case CALC_PROXY_SEND_UPSTREAM: {
        if (a.len == 0 || !a.data || !s->upstream_open) abort();
        size_t n = a.len < up_take ? a.len : up_take;
        up_take -= n;
        calc_proxy_conn_upstream_sent(s->pc, n);
        break;
      }
      case CALC_PROXY_CLOSE_CLIENT:
        if (s->upstream_open) abort();
        s->closed = true;
        return;
    }
  }
  if (!s->closed) abort(); /* the machine never asks for endless work */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  calc_proxy_config cfg = {.cache = calc_cache_new(1 << 16), .limits = {CAP, CAP}, .upstream_timeout_s = 10};
  state s = {.pc = calc_proxy_conn_new(&cfg, NULL)};
  if (!s.pc || !cfg.cache) abort();
  size_t i = 0;
  while (i < size && !s.closed) {
    uint8_t op = data[i++];
    switch (op % 12) {
      case 0:
      case 1: { /* bytes from the client (0) or the server (1) */
        if (i + 2 > size) break;
        size_t n = (size_t)data[i] << 8 | data[i + 1];
        i += 2;
        if (n > size - i) n = size - i;
        size_t room = op % 12 ? calc_proxy_conn_upstream_read_room(s.pc) : calc_proxy_conn_client_read_room(s.pc);
        if (n > room) n = room;
        if (op % 12) calc_proxy_conn_upstream_received(s.pc, data + i, n, 7);
        else calc_proxy_conn_client_received(s.pc, data + i, n, 7);
        i += n;
        break;
      }
      case 2: if (s.upstream_open) calc_proxy_conn_upstream_connected(s.pc); break;
      case 3: if (s.upstream_open) calc_proxy_conn_upstream_closed(s.pc, 7); break;
      case 4: if (s.upstream_open) calc_proxy_conn_upstream_error(s.pc, (calc_err)(op / 12 % 10), "detail", 7); break;
      case 5: calc_proxy_conn_client_closed(s.pc, 7); break;
      case 6: if (!calc_proxy_conn_upstream_busy(s.pc)) calc_proxy_conn_client_timed_out(s.pc); break;
      case 7: drive(&s, SIZE_MAX); break;
      case 8: drive(&s, op); break;
      case 9: calc_proxy_conn_client_writable(s.pc); break;
      case 10: calc_proxy_conn_upstream_writable(s.pc); break;
      case 11: drive(&s, 0); break;
    }
    if (calc_proxy_conn_pending_input(s.pc) > CAP || calc_proxy_conn_pending_output(s.pc) > 2 * CAP + CALC_MAX_MESSAGE)
      abort();
  }
  /* The end: the client's FIN, the server failing whatever is in flight, both sides reading. */
  for (int round = 0; round < 100 && !s.closed; round++) {
    calc_proxy_conn_client_writable(s.pc);
    calc_proxy_conn_upstream_writable(s.pc);
    calc_proxy_conn_client_closed(s.pc, 7);
    if (s.upstream_open) calc_proxy_conn_upstream_error(s.pc, CALC_ERR_RESET, NULL, 7);
    drive(&s, SIZE_MAX);
  }
  if (!s.closed) abort();
  calc_proxy_conn_free(s.pc);
  calc_cache_free(cfg.cache);
  return 0;
}
