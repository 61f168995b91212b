/* log.c: human lines or JSON Lines, one write(2) per record (see log.h). */
#include "log.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include "calc/json.h"
#include "calc/server.h"

static const char *component_name = "calc";
static log_format format = LOG_HUMAN;
static bool quiet_mode;

void log_setup(const char *component, log_format fmt, bool quiet) {
  component_name = component;
  format = fmt;
  quiet_mode = quiet;
}

bool log_is_json(void) { return format == LOG_JSON; }

static void put(log_rec *r, const char *s, size_t n) {
  if (format != LOG_JSON) return; /* human mode never uses the JSON text: do not build it */
  if (r->len + n >= sizeof r->json - 2) n = sizeof r->json - 2 - r->len;
  memcpy(r->json + r->len, s, n);
  r->len += n;
  r->json[r->len] = '\0';
}

static void putf(log_rec *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void putf(log_rec *r, const char *fmt, ...) {
  if (format != LOG_JSON) return;
  char tmp[256];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  if (n > 0) put(r, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

static void put_sink(void *r, const void *s, size_t n) { put(r, s, n); }

/* A JSON string (calc/json.h), ASCII: what a peer sent need not be UTF-8, the line is always
 * valid JSON. Cut, as every field, where the record's buffer ends. */
static void put_json_string(log_rec *r, const void *data, size_t len) {
  if (format != LOG_JSON) return;
  calc_json_write(data, len, CALC_JSON_ASCII, put_sink, r);
}

static void put_key(log_rec *r, const char *key) {
  put(r, ",", 1);
  put_json_string(r, key, strlen(key));
  put(r, ":", 1);
}

void log_begin(log_rec *r, const char *event, uint64_t conn_id, const char *peer) {
  r->len = 0;
  r->error = false;
  r->json[0] = '\0';
  if (format != LOG_JSON) return; /* human mode: only log_end's printf-style line is used */
  struct timeval tv;
  gettimeofday(&tv, NULL);
  putf(r, "{\"ts\":%lld.%06ld,\"component\":", (long long)tv.tv_sec, (long)tv.tv_usec);
  put_json_string(r, component_name, strlen(component_name));
  put_key(r, "event");
  put_json_string(r, event, strlen(event));
  if (conn_id) {
    put_key(r, "conn");
    putf(r, "%llu", (unsigned long long)conn_id);
  }
  if (peer) log_str(r, "peer", peer);
}

void log_str(log_rec *r, const char *key, const char *value) {
  put_key(r, key);
  put_json_string(r, value, strlen(value));
}

void log_untrusted(log_rec *r, const char *key, const void *data, size_t len) {
  put_key(r, key);
  put_json_string(r, data, len > 64 ? 64 : len);
}

void log_int(log_rec *r, const char *key, long long value) {
  put_key(r, key);
  putf(r, "%lld", value);
}

void log_num(log_rec *r, const char *key, double value) {
  put_key(r, key);
  if (isinf(value))
    put(r, value > 0 ? "\"inf\"" : "\"-inf\"", value > 0 ? 5 : 6);
  else
    putf(r, "%.2f", value);
}

void log_bool(log_rec *r, const char *key, bool value) {
  put_key(r, key);
  put(r, value ? "true" : "false", value ? 4 : 5);
}

void log_mark_error(log_rec *r) { r->error = true; }

void log_refused(const char *peer, long max_connections) {
  log_rec r;
  log_begin(&r, "refused", 0, peer);
  log_str(&r, "reason", "max-connections");
  log_mark_error(&r);
  log_end(&r, "{%s} Connection refused: more than %ld connections", peer, max_connections);
}

void log_end(log_rec *r, const char *human_fmt, ...) {
  if (quiet_mode && !r->error) return; /* checked before any formatting */
  char line[1200];
  size_t n;
  if (format == LOG_JSON) {
    put(r, "}", 1);
    n = r->len < sizeof line - 1 ? r->len : sizeof line - 2;
    memcpy(line, r->json, n);
  } else {
    va_list ap;
    va_start(ap, human_fmt);
    int k = vsnprintf(line, sizeof line - 1, human_fmt, ap);
    va_end(ap);
    n = k < 0 ? 0 : ((size_t)k < sizeof line - 1 ? (size_t)k : sizeof line - 2);
  }
  line[n++] = '\n';
  /* Errors go to stderr in human mode; JSON Lines keep one stream. */
  int fd = (r->error && format == LOG_HUMAN) ? STDERR_FILENO : STDOUT_FILENO;
  ssize_t w = write(fd, line, n);
  (void)w;
}

void log_request(uint64_t conn_id, const char *peer, const calc_msg *m) {
  log_rec r;
  log_begin(&r, "request", conn_id, peer);
  log_int(&r, "bytes", (long long)m->raw_len);
  log_bool(&r, "steps", m->h.steps);
  log_bool(&r, "cache", m->h.cache);
  log_int(&r, "cache_control", m->h.cache_control);
  if (m->h.reserved) log_int(&r, "reserved_bits", m->h.reserved);
  log_end(&r, "{%s} Got request of length %zu bytes", peer, m->raw_len);
}

void log_response(uint64_t conn_id, const char *peer, size_t len, unsigned status,
                  const calc_answer_info *info) {
  log_rec r;
  log_begin(&r, "response", conn_id, peer);
  log_int(&r, "bytes", (long long)len);
  log_int(&r, "status", status);
  if (info) {
    log_bool(&r, "steps", info->steps);
    if (status != 200) {
      log_str(&r, "error_type", info->error_type);
      log_str(&r, "error", info->error_msg);
    }
  }
  log_end(&r, "{%s} Sending response of length %zu bytes", peer, len);
}

void log_closed(uint64_t conn_id, const char *peer, const char *reason) {
  log_rec r;
  log_begin(&r, "closed", conn_id, peer);
  log_str(&r, "reason", reason);
  log_end(&r, "{%s} Connection closed", peer);
}

const char *log_close_reason(calc_err why) {
  switch (why) {
    case CALC_ERR_CLOSED: return "peer closed";
    case CALC_ERR_INVALID: return "framing error";
    case CALC_ERR_TIMEOUT: return "idle timeout";
    default: return calc_strerror(why);
  }
}
