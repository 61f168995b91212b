/* calc/server.h: what the calculator server answers to one message, with no I/O.
 *
 * calc_conn (calc/conn.h) frames a connection's bytes and hands each message here; the answer
 * is one whole response message (header + payload) to send with one write. */
#ifndef CALC_SERVER_H
#define CALC_SERVER_H
#include <stdbool.h>
#include <stdint.h>
#include "calc/buf.h"
#include "calc/wire.h"

typedef struct calc_server_opts {
  bool no_cache;            /* --no-cache: responses carry C = 0, cache control 0 */
  uint16_t cache_control;   /* --cache-control N: max-age set on responses (default 65535) */
} calc_server_opts;

/* What happened, for the logs. */
typedef struct calc_answer_info {
  uint16_t status;          /* 200, 400, 500 */
  bool steps;               /* steps included */
  char error_type[40];      /* exception class for 400/500 */
  char error_msg[200];      /* str() of the exception */
  bool deterministic;       /* the same request always gets this answer (no rand, no OOM) */
} calc_answer_info;

/* Answers one framed request message. Appends the whole response message to out.
 * 0, or -1 only when memory is exhausted (out->failed). */
int calc_server_answer(const calc_server_opts *o, const calc_msg *m, uint32_t now,
                       calc_buf *out, calc_answer_info *info);

/* The 500 answers for bytes that do not frame as a message (docs/protocol.md, legacy-protocol.jsonl):
 * a total length under 12, or a stream that ended with fewer than 12 bytes (`short_len`) or with
 * a message cut short (`short_len` >= 12, total length `claimed`). */
int calc_server_answer_bad_length(const calc_server_opts *o, unsigned total_len, uint32_t now,
                                  calc_buf *out, calc_answer_info *info);
int calc_server_answer_truncated(const calc_server_opts *o, size_t short_len, unsigned claimed,
                                 uint32_t now, calc_buf *out, calc_answer_info *info);

/* An answer memo: the server's answers are a pure function of the request payload and its
 * S flag (rand aside), so a bounded LRU memo of whole answers lets a busy server skip decoding,
 * evaluation and encoding for repeated requests. Built on calc_cache; per thread, no locks. */
typedef struct calc_answer_memo calc_answer_memo;
calc_answer_memo *calc_answer_memo_new(size_t max_bytes); /* NULL on allocation failure */
void calc_answer_memo_free(calc_answer_memo *memo);
/* calc_server_answer through the memo (memo may be NULL): a remembered answer is copied with a
 * fresh time stamp; a new deterministic answer is remembered. Same contract otherwise. */
int calc_server_answer_memo(const calc_server_opts *o, calc_answer_memo *memo, const calc_msg *m,
                            uint32_t now, calc_buf *out, calc_answer_info *info);


#endif
