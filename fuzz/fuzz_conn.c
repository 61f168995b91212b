/* fuzz_conn: the server's connection machine (calc/conn.h) under arbitrary event sequences.
 * The input is a script: each op byte picks an event (bytes received, the peer reading some
 * or all of the answers, a full socket becoming writable, the peer's FIN, an idle timeout);
 * a receive carries a 2-byte length and that many bytes from the input. Small buffer caps make
 * backpressure reachable. Checks: no crash, leak or UB; the buffers stay within their caps;
 * every SEND is non-empty; after the FIN, with a peer that reads, the connection always ends
 * in CLOSE. Seeds: fuzz/corpus/fuzz_conn (fuzz/make_corpus.py). */
#include <stdint.h>
#include <stdlib.h>

#include "calc/conn.h"

#define CAP CALC_MAX_MESSAGE

/* Carries out actions; the socket takes up to `take` bytes in all (SIZE_MAX: everything). */
static int drive(calc_conn *c, size_t take) {
  calc_conn_action a;
  for (;;) {
    calc_conn_next(c, &a);
    if (a.kind == CALC_CONN_CLOSE) return 1;
    if (a.kind == CALC_CONN_WAIT) return 0;
    if (a.len == 0 || !a.data) abort();
    size_t n = a.len < take ? a.len : take;
    take -= n;
    calc_conn_sent(c, n, 7);
    if (n < a.len) return 0;
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  calc_conn_config cfg = {.answer = {.cache_control = 65535}, .limits = {CAP, CAP}};
  cfg.memo = calc_answer_memo_new(1 << 16);
  calc_conn *c = calc_conn_new(&cfg, NULL);
  if (!c || !cfg.memo) abort();
  size_t i = 0;
  int closed = 0;
  while (i < size && !closed) {
    uint8_t op = data[i++];
    switch (op % 6) {
      case 0: { /* bytes received */
        if (i + 2 > size) break;
        size_t n = (size_t)data[i] << 8 | data[i + 1];
        i += 2;
        if (n > size - i) n = size - i;
        size_t room = calc_conn_read_room(c);
        if (n > room) n = room;
        calc_conn_received(c, data + i, n, 7);
        i += n;
        break;
      }
      case 1: closed = drive(c, SIZE_MAX); break;
      case 2: closed = drive(c, op); break;
      case 3: calc_conn_writable(c); break;
      case 4: calc_conn_peer_closed(c, 7); break;
      case 5: calc_conn_timed_out(c, 7); break;
    }
    if (calc_conn_pending_input(c) > CAP || calc_conn_pending_output(c) > 2 * CAP + CALC_MAX_MESSAGE) abort();
  }
  if (!closed) {
    calc_conn_writable(c);
    calc_conn_peer_closed(c, 7);
    if (!drive(c, SIZE_MAX)) abort(); /* after the FIN and a reading peer, it always closes */
  }
  calc_conn_free(c);
  calc_answer_memo_free(cfg.memo);
  return 0;
}
