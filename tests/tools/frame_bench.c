/* frame_bench: how long framing and answering a burst of pipelined requests takes, without
 * sockets. Prints figures; judges nothing (the machine is shared, times vary).
 *
 * usage: frame_bench [MB...]   (default 4 16 33: bursts of the report's E1 request, 687 bytes)
 *
 * For each burst size it times
 *   framer: every message taken out of a calc_framer fed the whole burst at once;
 *   conn:   the burst fed to one calc_conn in 64 KiB reads, as calc-server reads a socket, with
 *           the default buffer caps and an answer memo, the peer reading every answer.
 * and prints seconds and nanoseconds per byte: with linear framing the per-byte figures stay
 * flat as the burst grows (moving the rest of the buffer after each message made them grow
 * with the burst: 4, 16 and 33 MB took 0.11, 2.1 and 16.9 s). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "calc/conn.h"
#include "calc/parse.h"
#include "calc/pickle.h"

#define E1_TEXT "(sin(max(2, 3 * 4, 5, 6 * ((7 * 8) / 9), 10 / 11)) / 12) * 13"

static double seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what) {
  fprintf(stderr, "frame_bench: %s\n", what);
  exit(2);
}

static void e1_request(calc_buf *msg) {
  calc_tree tree = {0};
  calc_parse_error perr;
  calc_buf payload;
  calc_buf_init(&payload, 0);
  if (calc_parse(E1_TEXT, strlen(E1_TEXT), &tree, &perr) < 0 || calc_pickle_request(&tree, &payload) < 0 ||
      calc_message_build(msg, 1, true, 0, true, true, CALC_CACHE_FOREVER, payload.data, payload.len) < 0)
    die("cannot build the E1 request");
  calc_tree_free(&tree);
  calc_buf_free(&payload);
}

static double time_framer(const calc_buf *burst, size_t count) {
  calc_framer f;
  calc_framer_init(&f, 0);
  if (calc_framer_feed(&f, burst->data, burst->len) < 0) die("out of memory");
  double t0 = seconds();
  calc_msg m;
  size_t n = 0;
  while (calc_framer_next(&f, &m) == 1) n++;
  calc_framer_free(&f);
  if (n != count) die("framer lost messages");
  return seconds() - t0;
}

static double time_conn(const calc_buf *burst, size_t count) {
  double t0 = seconds();
  calc_conn_config cfg = {.answer = {.cache_control = 65535},
                          .limits = {CALC_CONN_DEFAULT_MAX_INPUT, CALC_CONN_DEFAULT_MAX_OUTPUT},
                          .memo = calc_answer_memo_new(16u << 20)};
  calc_conn *c = calc_conn_new(&cfg, NULL);
  if (!c || !cfg.memo) die("out of memory");
  size_t off = 0, answers = 0;
  calc_conn_action a;
  while (off < burst->len) {
    size_t room = calc_conn_read_room(c), n = burst->len - off;
    if (n > room) n = room;
    if (n > 65536) n = 65536;
    calc_conn_received(c, burst->data + off, n, 1);
    off += n;
    for (calc_conn_next(c, &a); a.kind == CALC_CONN_SEND; calc_conn_next(c, &a)) {
      calc_conn_sent(c, a.len, 1);
      answers++;
    }
    if (a.kind == CALC_CONN_CLOSE) die("the connection closed");
  }
  calc_conn_free(c);
  calc_answer_memo_free(cfg.memo);
  if (answers != count) die("conn lost answers");
  return seconds() - t0;
}

int main(int argc, char **argv) {
  static const double defaults[] = {4, 16, 33};
  size_t nsizes = argc > 1 ? (size_t)(argc - 1) : 3;
  calc_buf one;
  calc_buf_init(&one, 0);
  e1_request(&one);
  printf("%-8s %9s %11s %9s %11s %9s\n", "burst", "requests", "framer s", "ns/B", "conn s", "ns/B");
  for (size_t i = 0; i < nsizes; i++) {
    double mb = argc > 1 ? atof(argv[i + 1]) : defaults[i];
    if (!(mb > 0 && mb <= 1024)) die("a burst is 0 to 1024 MB");
    size_t count = (size_t)(mb * 1e6 / (double)one.len);
    calc_buf burst;
    calc_buf_init(&burst, 0);
    if (calc_buf_reserve(&burst, count * one.len) < 0) die("out of memory");
    for (size_t k = 0; k < count; k++) calc_buf_append(&burst, one.data, one.len);
    double tf = time_framer(&burst, count), tc = time_conn(&burst, count);
    printf("%5.1f MB %9zu %11.4f %9.2f %11.4f %9.2f\n", (double)burst.len / 1e6, count, tf,
           tf * 1e9 / (double)burst.len, tc, tc * 1e9 / (double)burst.len);
    calc_buf_free(&burst);
  }
  calc_buf_free(&one);
  return 0;
}
