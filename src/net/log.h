/* log.h: the programs' logs: the reference's human lines, or JSON Lines (docs/logging.md).
 *
 * A record is built field by field and emitted with one write(2), so lines from several
 * threads never interleave. Both forms are always built from the same call site:
 *
 *   log_rec r;
 *   log_begin(&r, "request", conn_id, peer);
 *   log_int(&r, "bytes", 687);
 *   log_end(&r, "{%s} Got request of length %d bytes", peer, 687);
 */
#ifndef CALC_NET_LOG_H
#define CALC_NET_LOG_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "calc/err.h"
#include "calc/wire.h"

/* The server's account of an answer (calc/server.h); only its address passes through here, so
 * the programs' logging does not depend on the server's engine. */
struct calc_answer_info;

typedef enum { LOG_HUMAN, LOG_JSON } log_format;

/* Set once at start-up. quiet: only errors (benchmarks). */
void log_setup(const char *component, log_format fmt, bool quiet);
bool log_is_json(void);

typedef struct log_rec {
  char json[1024];
  size_t len;
  bool error;
} log_rec;

void log_begin(log_rec *r, const char *event, uint64_t conn_id, const char *peer);
void log_str(log_rec *r, const char *key, const char *value);
/* Quotes at most 64 bytes of untrusted input, escaped: a log line never carries more of what a
 * peer sent, nor its control bytes. */
void log_untrusted(log_rec *r, const char *key, const void *data, size_t len);
void log_int(log_rec *r, const char *key, long long value);
void log_num(log_rec *r, const char *key, double value); /* inf -> "inf" string */
void log_bool(log_rec *r, const char *key, bool value);
void log_mark_error(log_rec *r);
/* The record for a connection closed at once because --max-connections was reached. */
void log_refused(const char *peer, long max_connections);
/* The record of a framed request: "{peer} Got request of length N bytes". */
void log_request(uint64_t conn_id, const char *peer, const calc_msg *m);
/* The record of an answer queued: "{peer} Sending response of length N bytes"; info (the
 * server's: steps, and the error of a non-200) may be NULL. */
void log_response(uint64_t conn_id, const char *peer, size_t len, unsigned status,
                  const struct calc_answer_info *info);
/* The record of a connection closed: "{peer} Connection closed", with the reason. */
void log_closed(uint64_t conn_id, const char *peer, const char *reason);
/* The reason a closed record gives when a connection machine asked to close for why. */
const char *log_close_reason(calc_err why);
/* Emits the record: the human line (printf-style) or the JSON object. */
void log_end(log_rec *r, const char *human_fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
