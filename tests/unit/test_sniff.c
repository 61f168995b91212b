/* test_sniff.c: calc-sniff's decoding, reassembly, teardown classes, roles and verify, over
 * captures crafted here with tests/unit/helpers/pcapw: each case builds the exact segments
 * (reordered, lost, cut, reset) a real capture only shows by chance. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "calc/json.h"
#include "helpers/failmalloc.h"
#include "helpers/pcapw.h"
#include "helpers/testmsg.h"
#include "sniff.h"

static uint8_t M[65536];
static const uint8_t LO[4] = {127, 0, 0, 1};

static sniff_opts quiet(void) {
  sniff_opts o;
  sniff_opts_default(&o);
  o.decode = false;
  return o;
}

/* Messages of conn id in direction dir, in order. */
static uint32_t msgs_of(const sniff_an *an, uint32_t id, int dir, const sniff_msg **out, uint32_t max) {
  uint32_t n = 0;
  for (uint32_t i = 0; i < an->nmsgs; i++)
    if (an->msgs[i].conn == id && an->msgs[i].dir == dir && n < max) out[n++] = &an->msgs[i];
  return n;
}

/* ---- link layers ---- */
static void check_frame(int dlt, bool vlan) {
  uint8_t buf[2048], data[100];
  memset(data, 'x', sizeof data);
  size_t n = pcapw_frame(dlt, vlan, buf, sizeof buf, LO, 40000, LO, 9999, 5, 6,
                         SNIFF_TH_PSH | SNIFF_TH_ACK, data, sizeof data);
  assert_true(n > 0);
  sniff_pkt p;
  const char *why;
  assert_int_equal(sniff_decode(dlt, buf, n, &p, &why), CALC_OK);
  assert_true(p.tcp);
  assert_int_equal(p.sport, 40000);
  assert_int_equal(p.dport, 9999);
  assert_int_equal(p.seq, 5);
  assert_int_equal(p.ack, 6);
  assert_int_equal(p.payload_len, 100);
  assert_int_equal(p.payload_cap, 100);
  assert_memory_equal(p.payload, data, 100);
  /* Every proper prefix: never a crash, never past the end; short payloads are snaplen cuts,
   * anything shorter a frame truncated inside a header. */
  for (size_t k = 0; k < n; k++) {
    uint8_t *copy = malloc(k ? k : 1);
    memcpy(copy, buf, k);
    calc_err err = sniff_decode(dlt, copy, k, &p, &why);
    if (err == CALC_OK) {
      assert_true(p.tcp);
      assert_true(p.payload_cap < p.payload_len);
      assert_true(p.payload + p.payload_cap <= copy + k);
    } else {
      assert_int_equal(err, CALC_ERR_TRUNCATED);
      assert_non_null(why);
    }
    free(copy);
  }
  /* Link padding after the IP datagram is not payload. */
  memset(buf + n, 0xee, 20);
  assert_int_equal(sniff_decode(dlt, buf, n + 20, &p, &why), CALC_OK);
  assert_true(p.tcp);
  assert_int_equal(p.payload_len, 100);
  assert_int_equal(p.payload_cap, 100);
}

static void test_link_types(void **state) {
  (void)state;
  check_frame(SNIFF_DLT_EN10MB, false);
  check_frame(SNIFF_DLT_EN10MB, true);  /* VLAN */
  check_frame(SNIFF_DLT_NULL, false);   /* AF little-endian (Windows/x86 capture) */
  check_frame(SNIFF_DLT_NULL, true);    /* AF big-endian */
  check_frame(SNIFF_DLT_LINUX_SLL, false);
  check_frame(SNIFF_DLT_LINUX_SLL2, false);
  check_frame(SNIFF_DLT_RAW, false);
  check_frame(SNIFF_DLT_RAW_A, false);
  check_frame(SNIFF_DLT_IPV4, false);
}

static void test_ipv6_and_loop(void **state) {
  (void)state;
  uint8_t f[200] = {0};
  /* LOOP: AF_INET6 (BSD 24) big-endian, then IPv6 + TCP */
  f[3] = 24;
  uint8_t *ip = f + 4;
  ip[0] = 0x60;
  ip[4] = 0; ip[5] = 20 + 3;
  ip[6] = 6;
  ip[23] = 1; ip[39] = 1;
  uint8_t *th = ip + 40;
  th[0] = 0x9c; th[1] = 0x40; th[2] = 0x27; th[3] = 0x0f;
  th[12] = 5 << 4; th[13] = SNIFF_TH_ACK;
  memcpy(th + 20, "abc", 3);
  sniff_pkt p;
  assert_int_equal(sniff_decode(SNIFF_DLT_LOOP, f, 4 + 40 + 23, &p, NULL), CALC_OK);
  assert_true(p.tcp);
  assert_int_equal(p.af, 6);
  assert_int_equal(p.sport, 40000);
  assert_int_equal(p.dport, 9999);
  assert_int_equal(p.payload_len, 3);
  assert_int_equal(sniff_decode(SNIFF_DLT_IPV6, ip, 40 + 23, &p, NULL), CALC_OK);
  assert_true(p.tcp);
  /* UDP is well formed but not TCP */
  ip[6] = 17;
  const char *why = NULL;
  assert_int_equal(sniff_decode(SNIFF_DLT_IPV6, ip, 40 + 23, &p, &why), CALC_OK);
  assert_false(p.tcp);
  assert_string_equal(why, "not TCP");
  /* a bad IP version and an unknown link type are malformed, not truncated */
  ip[0] = 0x70;
  assert_int_equal(sniff_decode(SNIFF_DLT_IPV6, ip, 40 + 23, &p, &why), CALC_ERR_INVALID);
  assert_string_equal(why, "IP version is not 6");
  assert_int_equal(sniff_decode(12345, ip, 40 + 23, &p, NULL), CALC_ERR_INVALID);
}

/* ---- conversations ---- */
static void one_exchange_file(const char *path, int dlt, bool four) {
  pcapw w;
  assert_int_equal(pcapw_open(&w, path, dlt, 0), 0);
  pw_conn c;
  pw_conn_init(&c, &w, 64031, 9999, 1000, 2000);
  pw_handshake(&c);
  pw_msg(M, 687, true, 0);
  pw_send(&c, 0, M, 687);
  pw_msg(M, 564, false, 200);
  pw_send(&c, 1, M, 564);
  pw_fin(&c, 0, four);
  pcapw_close(&w);
}

static void check_simple(const sniff_an *an, uint32_t teardown_pkts) {
  assert_int_equal(an->nconns, 1);
  const sniff_conn *c = &an->conns[0];
  assert_int_equal(c->role, SNIFF_ROLE_CLIENT_SERVER);
  assert_true(c->established);
  assert_string_equal(sniff_conn_state(c), "SF");
  assert_string_equal(c->history, "ShADadFf");
  assert_int_equal(sniff_conn_end(c), SNIFF_END_FIN_CLIENT);
  assert_int_equal(c->teardown_pkts, teardown_pkts);
  assert_int_equal(an->nmsgs, 2);
  assert_int_equal(an->msgs[0].size, 687);
  assert_int_equal(an->msgs[0].nseg, 1);
  assert_true(an->msgs[0].h.is_request);
  assert_int_equal(an->msgs[1].size, 564);
  assert_int_equal(an->msgs[1].h.status, 200);
  assert_false(sniff_conn_lossy(c));
}

static void test_teardown_3_and_4(void **state) {
  (void)state;
  sniff_opts o = quiet();
  sniff_an an;
  const char *f = pcapw_tmp("t3");
  one_exchange_file(f, SNIFF_DLT_EN10MB, false);
  assert_int_equal(pcapw_analyze(f, &an, &o), 0);
  check_simple(&an, 3);
  sniff_an_free(&an);
  one_exchange_file(f, SNIFF_DLT_EN10MB, true);
  assert_int_equal(pcapw_analyze(f, &an, &o), 0);
  check_simple(&an, 4);
  sniff_an_free(&an);
  unlink(f);
}

static void test_null_and_sll2(void **state) {
  (void)state;
  sniff_opts o = quiet();
  sniff_an an;
  const char *f = pcapw_tmp("null");
  int dlts[] = {SNIFF_DLT_NULL, SNIFF_DLT_LINUX_SLL2, SNIFF_DLT_LINUX_SLL, SNIFF_DLT_RAW};
  for (size_t i = 0; i < sizeof dlts / sizeof dlts[0]; i++) {
    one_exchange_file(f, dlts[i], false);
    assert_int_equal(pcapw_analyze(f, &an, &o), 0);
    check_simple(&an, 3);
    sniff_an_free(&an);
  }
  unlink(f);
}

/* A 687-byte request in three segments [0,300) [300,500) [500,687), with a twist. */
typedef enum { T_ORDER, T_REORDER, T_RETRANS, T_OVERLAP } twist;
static void split_file(const char *path, twist t, uint32_t cisn) {
  pcapw w;
  assert_int_equal(pcapw_open(&w, path, SNIFF_DLT_EN10MB, 0), 0);
  pw_conn c;
  pw_conn_init(&c, &w, 50000, 9999, cisn, 77);
  pw_handshake(&c);
  pw_msg(M, 687, true, 0);
  switch (t) {
    case T_ORDER:
      pw_send_at(&c, 0, 0, M, 300);
      pw_send_at(&c, 0, 300, M + 300, 200);
      pw_send_at(&c, 0, 500, M + 500, 187);
      break;
    case T_REORDER:
      pw_send_at(&c, 0, 0, M, 300);
      pw_send_at(&c, 0, 500, M + 500, 187);
      pw_send_at(&c, 0, 300, M + 300, 200);
      break;
    case T_RETRANS:
      pw_send_at(&c, 0, 0, M, 300);
      pw_send_at(&c, 0, 0, M, 300);
      pw_send_at(&c, 0, 300, M + 300, 200);
      pw_send_at(&c, 0, 500, M + 500, 187);
      pw_send_at(&c, 0, 300, M + 300, 200);
      break;
    case T_OVERLAP:
      pw_send_at(&c, 0, 0, M, 300);
      pw_send_at(&c, 0, 200, M + 200, 300);  /* 100 bytes again */
      pw_send_at(&c, 0, 450, M + 450, 237);  /* 50 bytes again */
      break;
  }
  pw_advance(&c, 0, 687);
  pw_ack(&c, 1);
  pw_msg(M, 60, false, 200);
  pw_send(&c, 1, M, 60);
  pw_fin(&c, 0, false);
  pcapw_close(&w);
}

static const sniff_msg *split_check(sniff_an *an, const char *f) {
  sniff_opts o = quiet();
  assert_int_equal(pcapw_analyze(f, an, &o), 0);
  assert_int_equal(an->nconns, 1);
  const sniff_msg *q[4];
  assert_int_equal(msgs_of(an, 1, 0, q, 4), 1);
  assert_int_equal(q[0]->size, 687);
  assert_true(q[0]->complete);
  assert_false(q[0]->hole);
  assert_int_equal(an->conns[0].d[0].bytes, 687);
  const sniff_msg *r[4];
  assert_int_equal(msgs_of(an, 1, 1, r, 4), 1);
  assert_int_equal(r[0]->size, 60);
  return q[0];
}

static void test_split_message(void **state) {
  (void)state;
  sniff_an an;
  const char *f = pcapw_tmp("split");
  split_file(f, T_ORDER, 1000);
  const sniff_msg *m = split_check(&an, f);
  assert_int_equal(m->nseg, 3);
  assert_int_equal(m->segs[0], 300);
  assert_int_equal(m->segs[1], 200);
  assert_int_equal(m->segs[2], 187);
  sniff_an_free(&an);
  unlink(f);
}

static void test_reordering(void **state) {
  (void)state;
  sniff_an an;
  const char *f = pcapw_tmp("reorder");
  split_file(f, T_REORDER, 1000);
  const sniff_msg *m = split_check(&an, f);
  assert_int_equal(m->nseg, 3);
  assert_int_equal(an.conns[0].d[0].ooo_pkts, 1);
  assert_int_equal(an.conns[0].d[0].retrans_pkts, 0);
  sniff_an_free(&an);
  unlink(f);
}

static void test_retransmission(void **state) {
  (void)state;
  sniff_an an;
  const char *f = pcapw_tmp("retrans");
  split_file(f, T_RETRANS, 1000);
  const sniff_msg *m = split_check(&an, f);
  assert_int_equal(m->nseg, 3);
  assert_int_equal(an.conns[0].d[0].retrans_pkts, 2);
  assert_non_null(strchr(an.conns[0].history, 'T'));
  sniff_an_free(&an);
  unlink(f);
}

static void test_overlap(void **state) {
  (void)state;
  sniff_an an;
  const char *f = pcapw_tmp("overlap");
  split_file(f, T_OVERLAP, 1000);
  const sniff_msg *m = split_check(&an, f);
  assert_int_equal(m->nseg, 3);
  assert_int_equal(an.conns[0].d[0].overlap_bytes, 150);
  sniff_an_free(&an);
  unlink(f);
}

static void test_seq_wrap(void **state) {
  (void)state;
  sniff_an an;
  const char *f = pcapw_tmp("wrap");
  /* The request's bytes cross 2^32 in the middle of the second segment; reordered too. */
  split_file(f, T_REORDER, 0xffffffffu - 400);
  const sniff_msg *m = split_check(&an, f);
  assert_int_equal(m->nseg, 3);
  assert_string_equal(sniff_conn_state(&an.conns[0]), "SF");
  sniff_an_free(&an);
  unlink(f);
}

static void test_two_messages_one_segment(void **state) {
  (void)state;
  const char *f = pcapw_tmp("two");
  pcapw w;
  assert_int_equal(pcapw_open(&w, f, SNIFF_DLT_EN10MB, 0), 0);
  pw_conn c;
  pw_conn_init(&c, &w, 50001, 9999, 5, 6);
  pw_handshake(&c);
  pw_msg(M, 100, true, 0);
  pw_msg(M + 100, 50, true, 0);
  pw_send(&c, 0, M, 150);
  pw_fin(&c, 0, false);
  pcapw_close(&w);
  sniff_an an;
  sniff_opts o = quiet();
  assert_int_equal(pcapw_analyze(f, &an, &o), 0);
  assert_int_equal(an.nmsgs, 2);
  assert_int_equal(an.msgs[0].size, 100);
  assert_int_equal(an.msgs[1].size, 50);
  assert_true(an.msgs[0].shares_segment);
  assert_true(an.msgs[1].shares_segment);
  sniff_an_free(&an);
  unlink(f);
}

static void test_syn_retries_refused(void **state) {
  (void)state;
  const char *f = pcapw_tmp("refused");
  pcapw w;
  assert_int_equal(pcapw_open(&w, f, SNIFF_DLT_NULL, 0), 0);
  pw_conn c;
  pw_conn_init(&c, &w, 49898, 9999, 4242, 0);
  pw_refused(&c, 5);  /* the report's Windows capture: SYN, RST, then four retries */
  pcapw_close(&w);
  sniff_an an;
  sniff_opts o = quiet();
  assert_int_equal(pcapw_analyze(f, &an, &o), 0);
  assert_int_equal(an.nconns, 1);
  assert_int_equal(an.conns[0].syn_retries, 4);
  assert_string_equal(sniff_conn_state(&an.conns[0]), "REJ");
  assert_int_equal(sniff_conn_end(&an.conns[0]), SNIFF_END_REFUSED);
  assert_string_equal(an.conns[0].history, "Sr");
  sniff_an_free(&an);
  unlink(f);
}

static void test_port_reuse(void **state) {
  (void)state;
  const char *f = pcapw_tmp("reuse");
  pcapw w;
  assert_int_equal(pcapw_open(&w, f, SNIFF_DLT_EN10MB, 0), 0);
  pw_exchange(&w, 50002, 9999, 376, 60);
  pw_conn c;
  pw_conn_init(&c, &w, 50002, 9999, 999999, 5);  /* same 4-tuple, new ISN */
  pw_handshake(&c);
  pw_msg(M, 687, true, 0);
  pw_send(&c, 0, M, 687);
  pw_msg(M, 564, false, 200);
  pw_send(&c, 1, M, 564);
  pw_fin(&c, 1, true);  /* this time the server leads */
  pcapw_close(&w);
  sniff_an an;
  sniff_opts o = quiet();
  assert_int_equal(pcapw_analyze(f, &an, &o), 0);
  assert_int_equal(an.nconns, 2);
  assert_true(an.conns[1].port_reused);
  assert_int_equal(sniff_conn_end(&an.conns[0]), SNIFF_END_FIN_CLIENT);
  assert_int_equal(sniff_conn_end(&an.conns[1]), SNIFF_END_FIN_SERVER);
  const sniff_msg *q[2];
  assert_int_equal(msgs_of(&an, 2, 0, q, 2), 1);
  assert_int_equal(q[0]->size, 687);
  sniff_an_free(&an);
  unlink(f);
}

static void test_rst_teardowns(void **state) {
  (void)state;
  const char *f = pcapw_tmp("rst");
  for (int side = 0; side < 2; side++) {
    pcapw w;
    assert_int_equal(pcapw_open(&w, f, SNIFF_DLT_EN10MB, 0), 0);
    pw_conn c;
    pw_conn_init(&c, &w, 50003, 9999, 1, 2);
    pw_handshake(&c);
    pw_msg(M, 376, true, 0);
    pw_send(&c, 0, M, 376);
    pw_rst(&c, side);
    pcapw_close(&w);
    sniff_an an;
    sniff_opts o = quiet();
    assert_int_equal(pcapw_analyze(f, &an, &o), 0);
    assert_int_equal(an.nconns, 1);
    assert_int_equal(sniff_conn_end(&an.conns[0]), side ? SNIFF_END_RST_SERVER : SNIFF_END_RST_CLIENT);
    assert_string_equal(sniff_conn_state(&an.conns[0]), side ? "RSTR" : "RSTO");
    sniff_an_free(&an);
  }
  unlink(f);
}

static void test_gap_and_snaplen(void **state) {
  (void)state;
  const char *f = pcapw_tmp("gap");
  /* snaplen 100: sizes survive, payload bytes do not */
  one_exchange_file(f, SNIFF_DLT_EN10MB, false);
  pcapw w;
  assert_int_equal(pcapw_open(&w, f, SNIFF_DLT_EN10MB, 100), 0);
  pw_exchange(&w, 50004, 9999, 687, 564);
  pcapw_close(&w);
  sniff_an an;
  sniff_opts o;
  sniff_opts_default(&o);  /* decoding on: holes must not reach the decoder */
  assert_int_equal(pcapw_analyze(f, &an, &o), 0);
  assert_int_equal(an.nmsgs, 2);
  assert_int_equal(an.msgs[0].size, 687);
  assert_true(an.msgs[0].hole);
  assert_null(an.msgs[0].text);
  assert_true(an.conns[0].d[0].trunc_bytes > 0);
  assert_true(sniff_conn_lossy(&an.conns[0]));
  sniff_an_free(&an);
  /* a lost middle segment: a gap, reported at the end */
  assert_int_equal(pcapw_open(&w, f, SNIFF_DLT_EN10MB, 0), 0);
  pw_conn c;
  pw_conn_init(&c, &w, 50005, 9999, 10, 20);
  pw_handshake(&c);
  pw_msg(M, 687, true, 0);
  pw_send_at(&c, 0, 0, M, 300);
  pw_send_at(&c, 0, 500, M + 500, 187);
  pw_advance(&c, 0, 687);
  pw_fin(&c, 0, false);
  pcapw_close(&w);
  assert_int_equal(pcapw_analyze(f, &an, &o), 0);
  assert_int_equal(an.conns[0].d[0].gap_bytes, 200);
  assert_int_equal(an.msgs[0].size, 687);
  assert_true(an.msgs[0].complete);
  assert_true(an.msgs[0].hole);
  assert_true(sniff_conn_lossy(&an.conns[0]));
  sniff_an_free(&an);
  unlink(f);
}

/* ---- scenario 3.2 and verify ---- */
/* How the crafted proxy (or its peers) differ from the reference in scenario 3.2. */
typedef enum {
  P_GOOD, P_NO_CACHE, P_ANSWER_BEFORE_CLOSE, P_SPLIT_RESPONSE, P_SPLIT_OTHER, P_PROXY_RESETS,
  P_CLIENT_RESETS, P_PROXY_CLOSES_FIRST, P_SERVER_RESETS_UPSTREAM, P_SERVER_CLOSES_UPSTREAM,
  P_TWO_UPSTREAM, P_NO_UPSTREAM, P_PROXY_RESETS_AFTER_FIN
} proxy_kind;

static void upstream_exchange(pcapw *w, uint16_t uport, uint16_t req, uint16_t resp, proxy_kind k,
                              bool server_leads) {
  pw_conn u;
  pw_conn_init(&u, w, uport, 9999, uport * 17u, uport * 19u);
  pw_handshake(&u);
  pw_msg(M, req, true, 0);
  pw_send(&u, 0, M, req);
  pw_msg(M, resp, false, 200);
  pw_send(&u, 1, M, resp);
  if (k == P_SERVER_RESETS_UPSTREAM) pw_rst(&u, 1);
  else pw_fin(&u, server_leads || k == P_SERVER_CLOSES_UPSTREAM ? 1 : 0, true);
}

static void proxy_request(pcapw *w, uint16_t cport, uint16_t uport, uint16_t req, uint16_t resp,
                          bool upstream, proxy_kind k, bool server_leads_upstream) {
  pw_conn d;
  pw_conn_init(&d, w, cport, 9998, cport * 11u, cport * 13u);
  pw_handshake(&d);
  pw_msg(M, req, true, 0);
  pw_send(&d, 0, M, req);
  if (upstream && k == P_ANSWER_BEFORE_CLOSE) {
    pw_conn u;
    pw_conn_init(&u, w, uport, 9999, uport * 17u, uport * 19u);
    pw_handshake(&u);
    pw_send(&u, 0, M, req);
    pw_msg(M, resp, false, 200);
    pw_send(&u, 1, M, resp);
    pw_send(&d, 1, M, resp);
    pw_fin(&u, 0, false);
  } else if (upstream && k != P_NO_UPSTREAM) {
    upstream_exchange(w, uport, req, resp, k, server_leads_upstream);
    if (k == P_TWO_UPSTREAM) upstream_exchange(w, (uint16_t)(uport + 10000), req, resp, k, false);
  }
  pw_msg(M, resp, false, 200);
  if (k == P_SPLIT_RESPONSE || k == P_SPLIT_OTHER) {
    uint32_t cut = k == P_SPLIT_RESPONSE ? resp / 2u : 12u;
    pw_send_at(&d, 1, 0, M, cut);
    pw_send_at(&d, 1, cut, M + cut, (uint32_t)resp - cut);
    pw_advance(&d, 1, resp);
    pw_ack(&d, 0);
  } else if (!(upstream && k == P_ANSWER_BEFORE_CLOSE)) {
    pw_send(&d, 1, M, resp);
  }
  if (k == P_PROXY_RESETS) {
    pw_rst(&d, 1);
  } else if (k == P_CLIENT_RESETS) {
    pw_rst(&d, 0);
  } else if (k == P_PROXY_RESETS_AFTER_FIN) {
    pw_fin_only(&d, 0);  /* the client closes first, as it should; the proxy answers with RST */
    pw_rst(&d, 1);
  } else {
    pw_fin(&d, k == P_PROXY_CLOSES_FIRST ? 1 : 0, false);
  }
}

static void scenario_3_2(const char *path, proxy_kind k, uint16_t base) {
  pcapw w;
  assert_int_equal(pcapw_open(&w, path, SNIFF_DLT_EN10MB, 0), 0);
  proxy_request(&w, base, base + 1, 687, 564, true, k, false);
  proxy_request(&w, base + 2, base + 3, 687, 564, k == P_NO_CACHE, k, false);
  proxy_request(&w, base + 4, base + 5, 376, 60, true, k, false);
  pcapw_close(&w);
}

/* Golden g and capture c analysed. */
static void analyze_pair(const char *g, const char *c, sniff_an *ga, sniff_an *ca) {
  sniff_opts o = quiet();
  assert_int_equal(pcapw_analyze(g, ga, &o), 0);
  assert_int_equal(pcapw_analyze(c, ca, &o), 0);
}

static uint32_t verify_files(const char *g, const char *c, calc_buf *out) {
  sniff_an ga, ca;
  analyze_pair(g, c, &ga, &ca);
  calc_buf_reset(out);
  uint32_t n = sniff_compare(&ga, &ca, out);
  sniff_an_free(&ga);
  sniff_an_free(&ca);
  if (out->len) calc_buf_putc(out, 0);
  return n;
}

/* Regression (fuzz): out-of-order segments whose payload the snaplen cut entirely. */
static void test_reorder_headers_only(void **state) {
  (void)state;
  const char *f = pcapw_tmp("hdronly");
  pcapw w;
  assert_int_equal(pcapw_open(&w, f, SNIFF_DLT_EN10MB, 54), 0);
  pw_conn c;
  pw_conn_init(&c, &w, 50006, 9999, 0x7fffffffu, 3);
  pw_handshake(&c);
  pw_msg(M, 687, true, 0);
  pw_send_at(&c, 0, 0, M, 300);
  pw_send_at(&c, 0, 500, M + 500, 187);
  pw_send_at(&c, 0, 300, M + 300, 200);
  pw_advance(&c, 0, 687);
  pw_fin(&c, 0, false);
  pcapw_close(&w);
  sniff_an an;
  sniff_opts o;
  sniff_opts_default(&o);
  assert_int_equal(pcapw_analyze(f, &an, &o), 0);
  assert_int_equal(an.conns[0].d[0].bytes, 687);
  assert_int_equal(an.conns[0].d[0].trunc_bytes, 687);
  assert_true(an.conns[0].d[0].desync);  /* the header itself was cut */
  assert_true(sniff_conn_lossy(&an.conns[0]));
  sniff_an_free(&an);
  unlink(f);
}

static void test_verify_3_2(void **state) {
  (void)state;
  const char *g = pcapw_tmp("golden"), *c = pcapw_tmp("cap");
  calc_buf out;
  calc_buf_init(&out, 0);
  scenario_3_2(g, P_GOOD, 49893);
  /* other ports and 4-segment teardowns: still a pass */
  scenario_3_2(c, P_GOOD, 60000);
  assert_int_equal(verify_files(g, c, &out), 0);
  /* the trace of the golden capture shows the hit */
  sniff_an an;
  sniff_opts o = quiet();
  assert_int_equal(pcapw_analyze(g, &an, &o), 0);
  calc_buf t;
  calc_buf_init(&t, 0);
  sniff_trace(&an, &t);
  calc_buf_putc(&t, 0);
  assert_non_null(strstr((char *)t.data, "no upstream connection"));
  assert_non_null(strstr((char *)t.data, "closed before response: yes"));
  calc_buf_free(&t);
  sniff_an_free(&an);
  /* a proxy that never caches: the hit goes upstream */
  scenario_3_2(c, P_NO_CACHE, 60000);
  assert_int_equal(verify_files(g, c, &out), 1);
  assert_non_null(strstr((char *)out.data, "FAIL cache-hit-no-upstream"));
  /* the proxy answers before closing upstream */
  scenario_3_2(c, P_ANSWER_BEFORE_CLOSE, 60000);
  assert_true(verify_files(g, c, &out) >= 1);
  assert_non_null(strstr((char *)out.data, "FAIL ordering"));
  /* responses in two segments */
  scenario_3_2(c, P_SPLIT_RESPONSE, 60000);
  assert_int_equal(verify_files(g, c, &out), 3);
  assert_non_null(strstr((char *)out.data, "FAIL segmentation"));
  calc_buf_free(&out);
  unlink(g);
  unlink(c);
}

/* One request of scenario 3.2 through a proxy that connects upstream as soon as its client
 * connects (syn_first: its SYN to the server before the client's request reaches the wire, as
 * usual; else after it, which a busy proxy also does), forwarding the request on it when
 * `forward`, closing it before answering. */
static void early_upstream_request(pcapw *w, uint16_t cport, uint16_t uport, uint16_t req, uint16_t resp,
                                   bool forward, bool syn_first) {
  pw_conn d, u;
  pw_conn_init(&d, w, cport, 9998, cport * 11u, cport * 13u);
  pw_handshake(&d);
  pw_conn_init(&u, w, uport, 9999, uport * 17u, uport * 19u);
  if (syn_first) pw_handshake(&u);
  pw_msg(M, req, true, 0);
  pw_send(&d, 0, M, req);
  if (!syn_first) pw_handshake(&u);
  if (forward) {
    pw_send(&u, 0, M, req);
    pw_msg(M, resp, false, 200);
    pw_send(&u, 1, M, resp);
  }
  pw_fin(&u, 0, true);
  pw_msg(M, resp, false, 200);
  pw_send(&d, 1, M, resp);
  pw_fin(&d, 0, false);
}

/* Which of the proxy's SYN and its client's request came first is a race between two
 * programs: either way the upstream connection is its client's first request's, and verify says
 * the same (the hit's connection, which carries nothing, contacted the server all the same). */
static void test_upstream_opened_before_the_request(void **state) {
  (void)state;
  const char *g = pcapw_tmp("golden"), *c = pcapw_tmp("cap");
  calc_buf out[2];
  scenario_3_2(g, P_GOOD, 49893);
  for (int syn_first = 0; syn_first < 2; syn_first++) {
    pcapw w;
    assert_int_equal(pcapw_open(&w, c, SNIFF_DLT_EN10MB, 0), 0);
    early_upstream_request(&w, 60000, 60001, 687, 564, true, syn_first);
    early_upstream_request(&w, 60002, 60003, 687, 564, false, syn_first);
    early_upstream_request(&w, 60004, 60005, 376, 60, true, syn_first);
    pcapw_close(&w);
    sniff_an an;
    sniff_opts o = quiet();
    assert_int_equal(pcapw_analyze(c, &an, &o), 0);
    assert_int_equal(an.nconns, 6);
    for (uint32_t i = 0; i < 6; i += 2) {
      const sniff_conn *up = &an.conns[i + 1];
      assert_int_equal(an.conns[i].role, SNIFF_ROLE_CLIENT_PROXY);
      assert_int_equal(up->role, SNIFF_ROLE_PROXY_SERVER);
      assert_int_equal(up->parent, an.conns[i].id);
      assert_int_equal(up->parent_req, 1);
      const sniff_msg *q[2];
      assert_int_equal(msgs_of(&an, an.conns[i].id, 0, q, 2), 1);
      assert_int_equal(q[0]->n_upstream, 1);
      assert_int_equal(q[0]->first_upstream, up->id);
    }
    sniff_an_free(&an);
    calc_buf_init(&out[syn_first], 0);
    assert_int_equal(verify_files(g, c, &out[syn_first]), 1);
    assert_non_null(strstr((char *)out[syn_first].data, "FAIL cache-hit-no-upstream: connection 2 "));
  }
  /* the same failure, at other packet numbers */
  assert_int_equal(strcspn((char *)out[0].data, "("), strcspn((char *)out[1].data, "("));
  assert_memory_equal(out[0].data, out[1].data, strcspn((char *)out[0].data, "("));
  calc_buf_free(&out[0]);
  calc_buf_free(&out[1]);
  unlink(g);
  unlink(c);
}

/* The E1 exchange of scenario 3.1 on client port `cport`, but the server sends the first FIN
 * (the reference's client leads every teardown). */
static void e1_server_leads_teardown(pcapw *w, uint16_t cport) {
  static uint8_t m[1024];
  pw_conn k;
  pw_conn_init(&k, w, cport, 9999, 5, 6);
  pw_handshake(&k);
  pw_msg(m, 687, true, 0);
  pw_send(&k, 0, m, 687);
  pw_msg(m, 564, false, 200);
  pw_send(&k, 1, m, 564);
  pw_fin(&k, 1, false);
}

static void test_verify_3_1_teardown_and_sizes(void **state) {
  (void)state;
  const char *g = pcapw_tmp("g31"), *c = pcapw_tmp("c31");
  calc_buf out;
  calc_buf_init(&out, 0);
  pcapw w;
  assert_int_equal(pcapw_open(&w, g, SNIFF_DLT_NULL, 0), 0);
  pw_exchange(&w, 64031, 9999, 687, 564);
  pw_exchange(&w, 64032, 9999, 687, 564);
  pw_exchange(&w, 64033, 9999, 376, 60);
  pcapw_close(&w);
  /* same behaviour on Linux loopback: pass */
  assert_int_equal(pcapw_open(&w, c, SNIFF_DLT_EN10MB, 0), 0);
  pw_exchange(&w, 40001, 9999, 687, 564);
  pw_exchange(&w, 40002, 9999, 687, 564);
  pw_exchange(&w, 40003, 9999, 376, 60);
  pcapw_close(&w);
  assert_int_equal(verify_files(g, c, &out), 0);
  /* server leads the teardown of the 2nd, 3rd response is 61 B, and a 4th connection */
  assert_int_equal(pcapw_open(&w, c, SNIFF_DLT_EN10MB, 0), 0);
  pw_exchange(&w, 40001, 9999, 687, 564);
  pw_conn k;
  e1_server_leads_teardown(&w, 40002);
  pw_exchange(&w, 40003, 9999, 376, 61);
  pw_exchange(&w, 40004, 9999, 376, 60);
  pcapw_close(&w);
  /* the third golden connection pairs with the capture's identical fourth: the 61-byte one
   * is the extra connection */
  assert_int_equal(verify_files(g, c, &out), 2);
  assert_non_null(strstr((char *)out.data, "FAIL teardown: connection 2"));
  assert_non_null(strstr((char *)out.data, "FAIL connections: the capture's #3 (client->server): an extra connection"));
  /* a missing response and a request in two segments */
  assert_int_equal(pcapw_open(&w, c, SNIFF_DLT_EN10MB, 0), 0);
  pw_exchange(&w, 40001, 9999, 687, 564);
  pw_conn_init(&k, &w, 40002, 9999, 5, 6);
  pw_handshake(&k);
  pw_msg(M, 687, true, 0);
  pw_send(&k, 0, M, 400);
  pw_send(&k, 0, M + 400, 287);
  pw_fin(&k, 0, false);
  pw_exchange(&w, 40003, 9999, 376, 60);
  pcapw_close(&w);
  assert_int_equal(verify_files(g, c, &out), 2);
  assert_non_null(strstr((char *)out.data, "FAIL segmentation: connection 2"));
  assert_non_null(strstr((char *)out.data, "FAIL response-size: connection 2 (client->server, #2): response 1 not seen (0 responses in all); the reference sends 564 B here"));
  /* E2 before E1: the script's order is broken */
  assert_int_equal(pcapw_open(&w, c, SNIFF_DLT_EN10MB, 0), 0);
  pw_exchange(&w, 40001, 9999, 687, 564);
  pw_exchange(&w, 40003, 9999, 376, 60);
  pw_exchange(&w, 40002, 9999, 687, 564);
  pcapw_close(&w);
  assert_int_equal(verify_files(g, c, &out), 1);
  assert_non_null(strstr((char *)out.data, "FAIL ordering: connections 2 and 3"));
  /* the server leads the first teardown only (a race in a server that closes right after
   * answering): the second connection behaves as the golden's first, yet the pairs keep the
   * script's order and only the first connection's teardown fails */
  assert_int_equal(pcapw_open(&w, c, SNIFF_DLT_EN10MB, 0), 0);
  e1_server_leads_teardown(&w, 40001);
  pw_exchange(&w, 40002, 9999, 687, 564);
  pw_exchange(&w, 40003, 9999, 376, 60);
  pcapw_close(&w);
  assert_int_equal(verify_files(g, c, &out), 1);
  assert_non_null(strstr((char *)out.data, "FAIL teardown: connection 1 (client->server, #1): the server sent the first FIN"));
  calc_buf_free(&out);
  unlink(g);
  unlink(c);
}

/* The report of verifying capture c against golden g. */
static void report_files(const char *g, const char *c, sniff_report *rep) {
  sniff_an ga, ca;
  analyze_pair(g, c, &ga, &ca);
  sniff_report_init(rep);
  sniff_verify(&ga, &ca, rep);
  sniff_an_free(&ga);
  sniff_an_free(&ca);
}

#define ANY_CHECK SNIFF_CK_COUNT

/* Failed items of the report: all of check k (or of any check: ANY_CHECK), all about party who,
 * each naming a connection and packets; returns how many. */
static uint32_t failed_as(const sniff_report *rep, sniff_check k, sniff_party who) {
  uint32_t n = 0;
  for (uint32_t i = 0; i < rep->n; i++) {
    const sniff_item *it = &rep->items[i];
    if (it->passed) continue;
    if (k != ANY_CHECK) assert_string_equal(sniff_check_name((sniff_check)it->check), sniff_check_name(k));
    assert_string_equal(sniff_party_name((sniff_party)it->party), sniff_party_name(who));
    assert_true(it->conn > 0);
    assert_true(it->npkts > 0 && it->pkts[0] > 0);
    assert_non_null(strstr(sniff_item_detail(rep, it), "the reference"));
    n++;
  }
  assert_int_equal(n, rep->failed);
  return n;
}

/* Every difference from the golden fails the check that names it, with the program at fault. */
static void test_verify_every_difference(void **state) {
  (void)state;
  const char *g = pcapw_tmp("gall"), *c = pcapw_tmp("call");
  static const struct {
    proxy_kind k;
    sniff_check check;
    sniff_party who;
    uint32_t failed;
  } cases[] = {
      {P_PROXY_RESETS, SNIFF_CK_RST, SNIFF_PARTY_PROXY, 3},
      {P_PROXY_RESETS_AFTER_FIN, SNIFF_CK_RST, SNIFF_PARTY_PROXY, 3},
      {P_CLIENT_RESETS, SNIFF_CK_RST, SNIFF_PARTY_CLIENT, 3},
      {P_PROXY_CLOSES_FIRST, SNIFF_CK_TEARDOWN, SNIFF_PARTY_PROXY, 3},
      {P_SERVER_RESETS_UPSTREAM, SNIFF_CK_RST, SNIFF_PARTY_SERVER, 2},
      {P_SERVER_CLOSES_UPSTREAM, SNIFF_CK_TEARDOWN, SNIFF_PARTY_SERVER, 2},
      {P_TWO_UPSTREAM, SNIFF_CK_UPSTREAM, SNIFF_PARTY_PROXY, 2},
      {P_NO_UPSTREAM, SNIFF_CK_UPSTREAM, SNIFF_PARTY_PROXY, 2},
      {P_NO_CACHE, SNIFF_CK_CACHE_HIT, SNIFF_PARTY_PROXY, 1},
      {P_SPLIT_RESPONSE, SNIFF_CK_SEGMENTATION, SNIFF_PARTY_PROXY, 3},
  };
  scenario_3_2(g, P_GOOD, 49893);
  sniff_report rep;
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    scenario_3_2(c, cases[i].k, 60000);
    report_files(g, c, &rep);
    assert_int_equal(failed_as(&rep, cases[i].check, cases[i].who), cases[i].failed);
    /* the items that pass are reported too, each with its program */
    assert_true(rep.n > rep.failed);
    sniff_report_free(&rep);
  }
  /* a golden whose responses come in two segments: another split fails, the same one passes */
  scenario_3_2(g, P_SPLIT_RESPONSE, 49893);
  scenario_3_2(c, P_SPLIT_OTHER, 60000);
  report_files(g, c, &rep);
  assert_int_equal(failed_as(&rep, SNIFF_CK_SEGMENTATION, SNIFF_PARTY_PROXY), 3);
  assert_non_null(strstr(sniff_item_detail(&rep, &rep.items[0]), "connection 1"));
  sniff_report_free(&rep);
  scenario_3_2(c, P_SPLIT_RESPONSE, 60000);
  report_files(g, c, &rep);
  assert_int_equal(rep.failed, 0);
  /* every check scenario 3.2 involves has items */
  for (int k = 0; k < SNIFF_CK_COUNT; k++) {
    bool seen = false;
    for (uint32_t i = 0; i < rep.n; i++) seen |= rep.items[i].check == k;
    assert_true(seen || k == SNIFF_CK_REFUSED);
  }
  sniff_report_free(&rep);
  unlink(g);
  unlink(c);
}

/* Scenario 3.3: Windows' golden retries the refused SYN four times; Linux once: a pass. A
 * refused golden against an accepted upstream: refused-answer. */
static void scenario_3_3(const char *path, int attempts, bool accept) {
  pcapw w;
  assert_int_equal(pcapw_open(&w, path, SNIFF_DLT_EN10MB, 0), 0);
  proxy_request(&w, 49893, 49894, 687, 564, true, P_GOOD, false);
  proxy_request(&w, 49896, 0, 687, 564, false, P_GOOD, false);
  pw_conn d, u;
  pw_conn_init(&d, &w, 49897, 9998, 1, 2);
  pw_handshake(&d);
  pw_msg(M, 376, true, 0);
  pw_send(&d, 0, M, 376);
  pw_conn_init(&u, &w, 49898, 9999, 3, 4);
  if (accept) {
    pw_handshake(&u);
    pw_send(&u, 0, M, 376);
    pw_msg(M, 60, false, 200);
    pw_send(&u, 1, M, 60);
    pw_fin(&u, 0, false);
  } else {
    pw_refused(&u, attempts);
  }
  pw_msg(M, accept ? 60 : 170, false, accept ? 200 : 500);
  pw_send(&d, 1, M, accept ? 60 : 170);
  pw_fin(&d, 0, false);
  pcapw_close(&w);
}

static void test_verify_3_3(void **state) {
  (void)state;
  const char *g = pcapw_tmp("g33"), *c = pcapw_tmp("c33");
  calc_buf out;
  calc_buf_init(&out, 0);
  scenario_3_3(g, 5, false);
  scenario_3_3(c, 1, false);
  assert_int_equal(verify_files(g, c, &out), 0);
  scenario_3_3(c, 1, true);
  assert_int_equal(verify_files(g, c, &out), 2);
  assert_non_null(strstr((char *)out.data, "FAIL refused-answer"));
  assert_non_null(strstr((char *)out.data, "FAIL response-size"));
  calc_buf_free(&out);
  unlink(g);
  unlink(c);
}

/* Concurrent clients: the golden's miss came first, the capture's miss second; connections
 * overlap in time, so any order passes. */
static void concurrent_file(const char *path, int miss_at) {
  pcapw w;
  assert_int_equal(pcapw_open(&w, path, SNIFF_DLT_EN10MB, 0), 0);
  pw_conn d[3];
  for (int i = 0; i < 3; i++) {
    pw_conn_init(&d[i], &w, (uint16_t)(41000 + i), 9998, 100u * (unsigned)i + 1, 7);
    pw_handshake(&d[i]);
  }
  for (int i = 0; i < 3; i++) {
    pw_msg(M, 687, true, 0);
    pw_send(&d[i], 0, M, 687);
    if (i == miss_at) {
      pw_conn u;
      pw_conn_init(&u, &w, 42000, 9999, 9, 10);
      pw_handshake(&u);
      pw_send(&u, 0, M, 687);
      pw_msg(M, 564, false, 200);
      pw_send(&u, 1, M, 564);
      pw_fin(&u, 0, false);
    }
    pw_msg(M, 564, false, 200);
    pw_send(&d[i], 1, M, 564);
  }
  for (int i = 0; i < 3; i++) pw_fin(&d[i], 0, false);
  pcapw_close(&w);
}

static void test_verify_concurrent(void **state) {
  (void)state;
  const char *g = pcapw_tmp("gcc"), *c = pcapw_tmp("ccc");
  calc_buf out;
  calc_buf_init(&out, 0);
  concurrent_file(g, 0);
  concurrent_file(c, 1);
  assert_int_equal(verify_files(g, c, &out), 0);
  calc_buf_free(&out);
  unlink(g);
  unlink(c);
}

/* Thousands of concurrent client->server connections, each with a request size of its own
 * (100 + its golden position). The capture holds them in another order: in every three, the
 * first keeps its place but answers 61 B instead of 60, the other two swap places. */
#define MANY_CONNS 3000u
static uint32_t many_capture_twin(uint32_t pos) {  /* the golden connection at capture position pos */
  return pos % 3 == 0 ? pos : pos % 3 == 1 ? pos + 1 : pos - 1;
}
static void many_conns_file(const char *path, bool capture) {
  static pw_conn d[MANY_CONNS];
  pcapw w;
  assert_int_equal(pcapw_open(&w, path, SNIFF_DLT_EN10MB, 0), 0);
  for (uint32_t p = 0; p < MANY_CONNS; p++) {
    pw_conn_init(&d[p], &w, (uint16_t)(20000 + p), 9999, 1000u * p + 1, 7u * p + 3);
    pw_handshake(&d[p]);
  }
  for (uint32_t p = 0; p < MANY_CONNS; p++) {
    uint32_t g = capture ? many_capture_twin(p) : p;
    uint16_t resp = capture && g % 3 == 0 ? 61 : 60;
    pw_msg(M, (uint16_t)(100 + g), true, 0);
    pw_send(&d[p], 0, M, 100 + g);
    pw_msg(M, resp, false, 200);
    pw_send(&d[p], 1, M, resp);
  }
  for (uint32_t p = 0; p < MANY_CONNS; p++) pw_fin(&d[p], 0, false);
  pcapw_close(&w);
}

/* Pairing by behaviour at scale: every connection finds its twin wherever it is, the ones that
 * differ pair in order with the capture connections left over, and only their responses fail. */
static void test_verify_many_differing(void **state) {
  (void)state;
  const char *g = pcapw_tmp("gmany"), *c = pcapw_tmp("cmany");
  many_conns_file(g, false);
  many_conns_file(c, true);
  sniff_report rep;
  report_files(g, c, &rep);
  assert_false(rep.oom);
  uint32_t i = 0;
  for (uint32_t k = 0; k < rep.n; k++) {
    const sniff_item *it = &rep.items[k];
    if (it->check != SNIFF_CK_CONNECTIONS) continue;
    assert_true(it->passed);
    /* golden connection i is the capture's id twin + 1, twin being its capture position */
    uint32_t want = i % 3 == 0 ? i : i % 3 == 1 ? i + 1 : i - 1;
    assert_int_equal(many_capture_twin(want), i);
    assert_int_equal(it->conn, want + 1);
    i++;
  }
  assert_int_equal(i, MANY_CONNS);
  assert_int_equal(failed_as(&rep, SNIFF_CK_RESPONSE_SIZE, SNIFF_PARTY_SERVER), MANY_CONNS / 3);
  for (uint32_t k = 0; k < rep.n; k++)
    if (!rep.items[k].passed) {
      assert_int_equal(rep.items[k].conn % 3, 1);  /* ids 1, 4, 7...: capture positions 0, 3, 6... */
      assert_non_null(strstr(sniff_item_detail(&rep, &rep.items[k]), "response 1 of 61 B seen; the reference's is 60 B"));
    }
  sniff_report_free(&rep);
  unlink(g);
  unlink(c);
}

/* Analyses capture f with payloads decoded (the timeline's and --json's options), which must
 * hold nmsgs messages. */
static void analyze_decoded(const char *f, sniff_an *an, uint32_t nmsgs) {
  sniff_opts o;
  sniff_opts_default(&o);
  assert_int_equal(pcapw_analyze(f, an, &o), 0);
  assert_int_equal(an->nmsgs, nmsgs);
}

/* A response payload that is a str with terminal escapes: decoded, and escaped in JSON. */
static void test_untrusted_text(void **state) {
  (void)state;
  static const uint8_t pk[] = {0x80, 0x04, 0x8c, 0x05, 0x1b, '[', '3', '1', 'm', 0x94, '.'};
  const char *f = pcapw_tmp("esc");
  pcapw w;
  assert_int_equal(pcapw_open(&w, f, SNIFF_DLT_EN10MB, 0), 0);
  pw_conn c;
  pw_conn_init(&c, &w, 50007, 9999, 1, 2);
  pw_handshake(&c);
  pw_msg(M, 12 + sizeof pk, false, 500);
  memcpy(M + 12, pk, sizeof pk);
  pw_send(&c, 1, M, 12 + sizeof pk);
  pw_fin(&c, 0, false);
  pcapw_close(&w);
  sniff_an an;
  analyze_decoded(f, &an, 1);
  assert_non_null(an.msgs[0].text);
  assert_string_equal(an.msgs[0].text, "\x1b[31m");
  calc_buf b;
  calc_buf_init(&b, 0);
  calc_json_str(&b, an.msgs[0].text, strlen(an.msgs[0].text), 0);
  calc_buf_putc(&b, 0);
  assert_string_equal((char *)b.data, "\"\\u001b[31m\"");
  calc_buf_free(&b);
  sniff_an_free(&an);
  unlink(f);
}

/* One connection from port cport to 9999: the handshake, the client's bytes, the server's
 * (none when resp is NULL), the client's FIN. */
static void exchange(pcapw *w, uint16_t cport, const void *req, size_t reqlen, const void *resp,
                     size_t resplen) {
  pw_conn c;
  pw_conn_init(&c, w, cport, 9999, 1000u * cport, 7u * cport);
  pw_handshake(&c);
  pw_send(&c, 0, req, reqlen);
  if (resp) pw_send(&c, 1, resp, resplen);
  pw_fin(&c, 0, false);
}

/* Messages that are no request or response carry the library's error: a payload the decoder
 * refuses its CALC_ERR_INVALID (and a text saying why), a total length under 12 CALC_ERR_FRAMING. */
static void test_malformed_messages(void **state) {
  (void)state;
  const char *f = pcapw_tmp("malformed");
  pcapw w;
  assert_int_equal(pcapw_open(&w, f, SNIFF_DLT_EN10MB, 0), 0);
  static uint8_t resp[20];
  pw_msg(M, 40, true, 0);  /* 28 zero bytes: no pickle */
  pw_msg(resp, 20, false, 200);
  exchange(&w, 50200, M, 40, resp, 20);
  pw_msg(M, 12, true, 0);
  M[4] = 0;  /* total length 5 */
  M[5] = 5;
  exchange(&w, 50201, M, 12, NULL, 0);
  pcapw_close(&w);
  sniff_an an;
  analyze_decoded(f, &an, 3);
  assert_int_equal(an.msgs[0].err, CALC_ERR_INVALID);
  assert_non_null(strstr(an.msgs[0].text, "undecodable request: "));
  assert_int_equal(an.msgs[1].err, CALC_ERR_INVALID);
  assert_non_null(strstr(an.msgs[1].text, "undecodable response: "));
  assert_int_equal(an.msgs[2].err, CALC_ERR_FRAMING);
  assert_int_equal(an.msgs[2].size, 5);
  assert_int_equal(an.incomplete, CALC_OK);
  /* the refused payloads are kept (a reader may ask another decoder); an unframed one has none */
  static const uint8_t zeros[28];
  assert_int_equal(an.msgs[0].refused_len, 28);
  assert_memory_equal(an.msgs[0].refused, zeros, 28);
  assert_int_equal(an.msgs[1].refused_len, 8);
  assert_memory_equal(an.msgs[1].refused, zeros, 8);
  assert_null(an.msgs[2].refused);
  sniff_an_free(&an);
  unlink(f);
}

/* Refused payloads are kept up to SNIFF_REFUSED_MAX bytes an analysis: a capture of nothing but
 * the largest refused requests keeps the first 256 of them whole, and none after. */
static void test_refused_payloads_bounded(void **state) {
  (void)state;
  const char *f = pcapw_tmp("refused");
  pcapw w;
  assert_int_equal(pcapw_open(&w, f, SNIFF_DLT_EN10MB, 0), 0);
  const uint32_t n = SNIFF_REFUSED_MAX / CALC_MAX_PAYLOAD + 2;
  for (uint32_t i = 0; i < n; i++) {
    pw_msg(M, CALC_MAX_MESSAGE, true, 0);
    memset(M + 12, 0xff, CALC_MAX_PAYLOAD);  /* 0xff: no opcode, refused at its first byte */
    memcpy(M + 13, &i, sizeof i);            /* each its own payload */
    pw_conn c;  /* in two segments: one would not fit an IPv4 packet */
    pw_conn_init(&c, &w, (uint16_t)(40000 + i), 9999, 1000u * i, 7u * i);
    pw_handshake(&c);
    pw_send(&c, 0, M, 32768);
    pw_send(&c, 0, M + 32768, CALC_MAX_MESSAGE - 32768);
    pw_fin(&c, 0, false);
  }
  pcapw_close(&w);
  sniff_an an;
  analyze_decoded(f, &an, n);
  size_t kept = 0;
  for (uint32_t i = 0; i < n; i++) {
    const sniff_msg *m = &an.msgs[i];
    assert_int_equal(m->err, CALC_ERR_INVALID);
    if (i < SNIFF_REFUSED_MAX / CALC_MAX_PAYLOAD) {
      assert_non_null(m->refused);
      assert_int_equal(m->refused_len, CALC_MAX_PAYLOAD);
      assert_int_equal(m->refused[0], 0xff);
      assert_memory_equal(m->refused + 1, &i, sizeof i);
    } else {
      assert_null(m->refused);
    }
    kept += m->refused_len;
  }
  assert_true(kept <= SNIFF_REFUSED_MAX);
  assert_int_equal(an.incomplete, CALC_OK);
  sniff_an_free(&an);
  unlink(f);
}


/* ---- request-header: a request whose flags word differs from the reference's ---- */
#define FLAGS_REF (CALC_FLAG_CACHE | CALC_FLAG_STEPS | CALC_FLAG_REQUEST)  /* the seed's 0x1c00 */

/* A request of size bytes into buf with flags word `flags` (and the reference client's
 * max-age, forever). */
static void request_with_flags(uint8_t *buf, uint16_t size, uint16_t flags) {
  pw_msg(buf, size, true, 0);
  buf[6] = (uint8_t)(flags >> 8);
  buf[7] = (uint8_t)flags;
}

/* The same with cache control (the client's max-age) `max_age`. */
static void request_with_max_age(uint8_t *buf, uint16_t size, uint16_t flags, uint16_t max_age) {
  request_with_flags(buf, size, flags);
  buf[8] = (uint8_t)(max_age >> 8);
  buf[9] = (uint8_t)max_age;
}

/* Scenario 3.1's three exchanges straight to the server; exchange `which` (1-based, 0 none)
 * asks with flags word `flags` and is answered with resp bytes. */
static void exchanges_3_1(const char *path, int which, uint16_t flags, uint16_t resp) {
  static uint8_t q[1024], r[1024];
  static const uint16_t req_size[3] = {687, 687, 376}, resp_size[3] = {564, 564, 60};
  pcapw w;
  assert_int_equal(pcapw_open(&w, path, SNIFF_DLT_EN10MB, 0), 0);
  for (int i = 0; i < 3; i++) {
    request_with_flags(q, req_size[i], i + 1 == which ? flags : FLAGS_REF);
    uint16_t rs = i + 1 == which ? resp : resp_size[i];
    pw_msg(r, rs, false, 200);
    exchange(&w, (uint16_t)(40001 + i), q, req_size[i], r, rs);
  }
  pcapw_close(&w);
}

/* One proxied E1 request from port cport: the client asks with flags word `client_flags` and
 * max-age `max_age`; when upstream_port is not 0 the proxy forwards it from that port with flags
 * word `upstream_flags` (and the client's max-age) and the server's answer of resp bytes is
 * passed on, otherwise the proxy answers resp bytes from its cache. */
static void proxied_e1(pcapw *w, uint16_t cport, uint16_t client_flags, uint16_t max_age, uint16_t upstream_port,
                       uint16_t upstream_flags, uint16_t resp) {
  static uint8_t q[1024], r[1024];
  pw_conn d, u;
  pw_conn_init(&d, w, cport, 9998, 11u * cport, 13u * cport);
  pw_handshake(&d);
  request_with_max_age(q, 687, client_flags, max_age);
  pw_send(&d, 0, q, 687);
  pw_msg(r, resp, false, 200);
  if (upstream_port) {
    pw_conn_init(&u, w, upstream_port, 9999, 17u * upstream_port, 19u * upstream_port);
    pw_handshake(&u);
    request_with_max_age(q, 687, upstream_flags, max_age);
    pw_send(&u, 0, q, 687);
    pw_send(&u, 1, r, resp);
    pw_fin(&u, 0, false);
  }
  pw_send(&d, 1, r, resp);
  pw_fin(&d, 0, false);
}

/* A capture of one proxied E1 request, as proxied_e1 describes it, forwarded from port 41002. */
static void proxy_forwards_flags(const char *path, uint16_t client_flags, uint16_t upstream_flags,
                                 uint16_t resp) {
  pcapw w;
  assert_int_equal(pcapw_open(&w, path, SNIFF_DLT_EN10MB, 0), 0);
  proxied_e1(&w, 41001, client_flags, CALC_CACHE_FOREVER, 41002, upstream_flags, resp);
  pcapw_close(&w);
}

/* The report's request-header items: how many, all passed or not, each about party who. */
static uint32_t request_header_items(const sniff_report *rep, sniff_party who, uint32_t *failed) {
  uint32_t n = 0;
  *failed = 0;
  for (uint32_t i = 0; i < rep->n; i++) {
    const sniff_item *it = &rep->items[i];
    if (it->check != SNIFF_CK_REQUEST_HEADER) continue;
    assert_string_equal(sniff_party_name((sniff_party)it->party), sniff_party_name(who));
    assert_true(it->npkts > 0);
    n++;
    if (!it->passed) (*failed)++;
  }
  return n;
}

/* The report has a failed item of check k about party who and capture connection conn, and its
 * text holds `text`. */
static void assert_failed_item(const sniff_report *rep, sniff_check k, sniff_party who, uint32_t conn,
                               const char *text) {
  for (uint32_t i = 0; i < rep->n; i++) {
    const sniff_item *it = &rep->items[i];
    if (it->passed || it->check != k || it->party != who || it->conn != conn) continue;
    if (!strstr(sniff_item_detail(rep, it), text)) fail_msg("\"%s\" not in \"%s\"", text, sniff_item_detail(rep, it));
    return;
  }
  fail_msg("no failed %s item of the %s on #%u", sniff_check_name(k), sniff_party_name(who), conn);
}

/* Verifying capture c against golden g fails one item, as assert_failed_item describes it. */
static void assert_one_failure(const char *g, const char *c, sniff_check k, sniff_party who, uint32_t conn,
                               const char *text) {
  sniff_report rep;
  report_files(g, c, &rep);
  assert_int_equal(rep.failed, 1);
  assert_failed_item(&rep, k, who, conn, text);
  sniff_report_free(&rep);
}

static void test_verify_request_header(void **state) {
  (void)state;
  const char *g = pcapw_tmp("ghdr"), *c = pcapw_tmp("chdr");
  sniff_report rep;
  uint32_t failed;
  exchanges_3_1(g, 0, 0, 0);
  /* the same flags, and the reserved bits set (the reference only warns about them): a pass,
   * one request-header item per request, each the client's */
  exchanges_3_1(c, 2, FLAGS_REF | CALC_FLAG_RESERVED, 564);
  report_files(g, c, &rep);
  assert_int_equal(rep.failed, 0);
  assert_int_equal(request_header_items(&rep, SNIFF_PARTY_CLIENT, &failed), 3);
  assert_int_equal(failed, 0);
  for (uint32_t i = 0; i < rep.n; i++)
    if (rep.items[i].check == SNIFF_CK_REQUEST_HEADER)
      assert_non_null(strstr(sniff_item_detail(&rep, &rep.items[i]),
                             "request 1 asks with steps, with the cache, as in the reference"));
  sniff_report_free(&rep);
  /* the second request asks without steps and gets a shorter answer: the request's header is
   * the client's fault, and so is the response of another size (the server answered what it
   * was asked) */
  exchanges_3_1(c, 2, CALC_FLAG_CACHE | CALC_FLAG_REQUEST, 300);
  report_files(g, c, &rep);
  assert_int_equal(rep.failed, 2);
  assert_int_equal(request_header_items(&rep, SNIFF_PARTY_CLIENT, &failed), 3);
  assert_int_equal(failed, 1);
  assert_failed_item(&rep, SNIFF_CK_REQUEST_HEADER, SNIFF_PARTY_CLIENT, 2,
                     "connection 2 (client->server, #2): request 1 asks without steps, with the cache; "
                     "the reference's asks with steps, with the cache");
  assert_failed_item(&rep, SNIFF_CK_RESPONSE_SIZE, SNIFF_PARTY_CLIENT, 2,
                     "response 1 of 300 B seen; the reference's is 564 B (the request asked for something else)");
  sniff_report_free(&rep);
  /* the first request does not allow the cache; the answer is the same: one failure */
  exchanges_3_1(c, 1, CALC_FLAG_STEPS | CALC_FLAG_REQUEST, 564);
  assert_one_failure(g, c, SNIFF_CK_REQUEST_HEADER, SNIFF_PARTY_CLIENT, 1,
                     "connection 1 (client->server, #1): request 1 asks with steps, without the cache; "
                     "the reference's asks with steps, with the cache");
  /* a proxy that forwards the client's request without its cache flag: the proxy's fault, on
   * the upstream connection; forwarded as asked, it passes */
  proxy_forwards_flags(g, FLAGS_REF, FLAGS_REF, 564);
  proxy_forwards_flags(c, FLAGS_REF, CALC_FLAG_STEPS | CALC_FLAG_REQUEST, 564);
  assert_one_failure(g, c, SNIFF_CK_REQUEST_HEADER, SNIFF_PARTY_PROXY, 2,
                     "connection 1 (client->proxy, #1) request 1 upstream 1 (#2): request 1 asks with steps, "
                     "without the cache; the reference's asks with steps, with the cache");
  proxy_forwards_flags(c, FLAGS_REF, FLAGS_REF, 564);
  report_files(g, c, &rep);
  assert_int_equal(rep.failed, 0);
  sniff_report_free(&rep);
  unlink(g);
  unlink(c);
}

/* Scenario 3.2's first two exchanges: E1 forwarded (a miss), then E1 again from port 41003
 * asking with flags word `flags` and max-age `max_age`, forwarded as it came from port
 * `upstream_port` (0: answered from the cache). */
static void e1_twice(const char *path, uint16_t flags, uint16_t max_age, uint16_t upstream_port) {
  pcapw w;
  assert_int_equal(pcapw_open(&w, path, SNIFF_DLT_EN10MB, 0), 0);
  proxied_e1(&w, 41001, FLAGS_REF, CALC_CACHE_FOREVER, 41002, FLAGS_REF, 564);
  proxied_e1(&w, 41003, flags, max_age, upstream_port, flags, 564);
  pcapw_close(&w);
}

/* The proxy is judged against what the reference proxy would send upstream for the request its
 * client sent (the reference forwards the client's request), not against the golden's upstream
 * bytes: a client's odd request is the client's fault however far it travels. */
static void test_verify_upstream_follows_client(void **state) {
  (void)state;
  const char *g = pcapw_tmp("gfwd"), *c = pcapw_tmp("cfwd");
  const uint16_t no_steps = CALC_FLAG_CACHE | CALC_FLAG_REQUEST;
  sniff_report rep;
  proxy_forwards_flags(g, FLAGS_REF, FLAGS_REF, 564);
  /* the client asks without steps, the proxy forwards that unchanged and passes the shorter
   * answer on: the request's header and both responses of another size are the client's, the
   * upstream request's header passes */
  proxy_forwards_flags(c, no_steps, no_steps, 300);
  report_files(g, c, &rep);
  assert_int_equal(failed_as(&rep, ANY_CHECK, SNIFF_PARTY_CLIENT), 3);
  assert_failed_item(&rep, SNIFF_CK_REQUEST_HEADER, SNIFF_PARTY_CLIENT, 1,
                     "connection 1 (client->proxy, #1): request 1 asks without steps, with the cache; "
                     "the reference's asks with steps, with the cache");
  bool upstream_header_passed = false, upstream_response_failed = false;
  for (uint32_t i = 0; i < rep.n; i++) {
    const sniff_item *it = &rep.items[i];
    if (it->conn != 2) continue;
    const char *d = sniff_item_detail(&rep, it);
    if (it->check == SNIFF_CK_REQUEST_HEADER) {
      assert_true(it->passed);
      assert_string_equal(sniff_party_name((sniff_party)it->party), "proxy");
      assert_non_null(strstr(d, "request 1 asks without steps, with the cache, as the reference forwards "
                                "the client's request"));
      upstream_header_passed = true;
    }
    if (it->check == SNIFF_CK_REQUEST_SIZE) assert_true(it->passed);
    if (it->check == SNIFF_CK_RESPONSE_SIZE) {
      assert_false(it->passed);
      assert_non_null(strstr(d, "response 1 of 300 B seen; the reference's is 564 B (the client's request "
                                "asked for something else)"));
      upstream_response_failed = true;
    }
  }
  assert_true(upstream_header_passed && upstream_response_failed);
  sniff_report_free(&rep);
  /* the same, answered with the reference's size: only the client's request header fails */
  proxy_forwards_flags(c, no_steps, no_steps, 564);
  assert_one_failure(g, c, SNIFF_CK_REQUEST_HEADER, SNIFF_PARTY_CLIENT, 1,
                     "connection 1 (client->proxy, #1): request 1 asks without steps");
  /* the proxy rewrites the client's flags (here to the golden's): the upstream header is the
   * proxy's fault, against what the reference would have forwarded */
  proxy_forwards_flags(c, no_steps, FLAGS_REF, 564);
  report_files(g, c, &rep);
  assert_int_equal(rep.failed, 2);
  assert_failed_item(&rep, SNIFF_CK_REQUEST_HEADER, SNIFF_PARTY_CLIENT, 1, "request 1 asks without steps");
  uint32_t proxy_failed = 0;
  for (uint32_t i = 0; i < rep.n; i++) {
    const sniff_item *it = &rep.items[i];
    if (it->passed || it->party != SNIFF_PARTY_PROXY) continue;
    assert_int_equal(it->check, SNIFF_CK_REQUEST_HEADER);
    assert_int_equal(it->conn, 2);
    assert_non_null(strstr(sniff_item_detail(&rep, it),
                           "connection 1 (client->proxy, #1) request 1 upstream 1 (#2): request 1 asks with steps, "
                           "with the cache; forwarding the client's request, the reference's asks without steps, "
                           "with the cache (packet "));
    proxy_failed++;
  }
  assert_int_equal(proxy_failed, 1);
  sniff_report_free(&rep);
  /* ... or to other odd flags: the proxy's too */
  proxy_forwards_flags(c, no_steps, CALC_FLAG_REQUEST, 564);
  report_files(g, c, &rep);
  assert_int_equal(rep.failed, 2);
  assert_failed_item(&rep, SNIFF_CK_REQUEST_HEADER, SNIFF_PARTY_PROXY, 2,
                     "request 1 asks without steps, without the cache; forwarding the client's request, the "
                     "reference's asks without steps, with the cache");
  sniff_report_free(&rep);
  /* a golden cache hit (no upstream connection) against a client asking without the cache
   * flag, which the reference proxy forwards: the client's fault, not the proxy's */
  e1_twice(g, FLAGS_REF, CALC_CACHE_FOREVER, 0);
  e1_twice(c, CALC_FLAG_STEPS | CALC_FLAG_REQUEST, CALC_CACHE_FOREVER, 41004);
  report_files(g, c, &rep);
  assert_int_equal(failed_as(&rep, ANY_CHECK, SNIFF_PARTY_CLIENT), 2);
  assert_failed_item(&rep, SNIFF_CK_CACHE_HIT, SNIFF_PARTY_CLIENT, 3,
                     "connection 2 (client->proxy, #3) request 1: 1 upstream connection (#4); the reference "
                     "answers it from its cache without contacting the server (the client's request asked "
                     "for something else)");
  sniff_report_free(&rep);
  unlink(g);
  unlink(c);
}

/* The client's max-age (the request's cache control): 0 makes the reference proxy skip its
 * cache and forward the request. A proxy forwarding a max-age 0 where the golden's request was
 * a cache hit is not at fault, the client asking it is; a proxy answering a max-age 0 from its
 * cache is, whatever the golden's request got. */
static void test_verify_client_max_age(void **state) {
  (void)state;
  const char *g = pcapw_tmp("gage"), *c = pcapw_tmp("cage");
  sniff_report rep;
  e1_twice(g, FLAGS_REF, CALC_CACHE_FOREVER, 0);  /* the golden: a miss, then a cache hit */
  /* the same run: the hit passes as the proxy's */
  e1_twice(c, FLAGS_REF, CALC_CACHE_FOREVER, 0);
  report_files(g, c, &rep);
  assert_int_equal(rep.failed, 0);
  uint32_t hits = 0;
  for (uint32_t i = 0; i < rep.n; i++) {
    const sniff_item *it = &rep.items[i];
    if (it->check != SNIFF_CK_CACHE_HIT) continue;
    assert_string_equal(sniff_party_name((sniff_party)it->party), "proxy");
    assert_non_null(strstr(sniff_item_detail(&rep, it), "connection 2 (client->proxy, #3) request 1: answered "
                                                        "without an upstream connection (a cache hit), as in the reference"));
    hits++;
  }
  assert_int_equal(hits, 1);
  sniff_report_free(&rep);
  /* the client asks max-age 0 and the proxy forwards it: only the client's items fail */
  e1_twice(c, FLAGS_REF, 0, 41004);
  report_files(g, c, &rep);
  assert_int_equal(failed_as(&rep, ANY_CHECK, SNIFF_PARTY_CLIENT), 2);
  assert_failed_item(&rep, SNIFF_CK_REQUEST_HEADER, SNIFF_PARTY_CLIENT, 3,
                     "connection 2 (client->proxy, #3): request 1 asks with steps, with the cache, max-age 0; the "
                     "reference's asks with steps, with the cache, max-age forever");
  assert_failed_item(&rep, SNIFF_CK_CACHE_HIT, SNIFF_PARTY_CLIENT, 3,
                     "connection 2 (client->proxy, #3) request 1: 1 upstream connection (#4); the reference answers "
                     "it from its cache without contacting the server (the client's request asked for something "
                     "else); the reference forwards a request with max-age 0 on one upstream connection, as here");
  sniff_report_free(&rep);
  /* the proxy answers that max-age 0 from its cache: the proxy's fault, though the golden's
   * request was a hit */
  const char *served = "connection 2 (client->proxy, #3) request 1: answered without an upstream connection (a "
                       "cache hit); the reference forwards a request %s on one upstream connection, never "
                       "answering it from its cache";
  char want[300];
  e1_twice(c, FLAGS_REF, 0, 0);
  report_files(g, c, &rep);
  assert_int_equal(rep.failed, 2);
  assert_failed_item(&rep, SNIFF_CK_REQUEST_HEADER, SNIFF_PARTY_CLIENT, 3, "max-age 0; the reference's asks");
  snprintf(want, sizeof want, served, "with max-age 0");
  assert_failed_item(&rep, SNIFF_CK_CACHE_HIT, SNIFF_PARTY_PROXY, 3, want);
  sniff_report_free(&rep);
  /* ... and so is one without the cache flag (its cache control is 0) */
  e1_twice(c, CALC_FLAG_STEPS | CALC_FLAG_REQUEST, CALC_CACHE_FOREVER, 0);
  report_files(g, c, &rep);
  assert_int_equal(rep.failed, 2);
  assert_failed_item(&rep, SNIFF_CK_REQUEST_HEADER, SNIFF_PARTY_CLIENT, 3, "asks with steps, without the cache; the");
  snprintf(want, sizeof want, served, "without the cache flag");
  assert_failed_item(&rep, SNIFF_CK_CACHE_HIT, SNIFF_PARTY_PROXY, 3, want);
  sniff_report_free(&rep);
  /* the server is down (scenario 3.3): the golden's hit is answered, a max-age 0 forwarded to
   * the stopped server is refused and answered with the proxy's error: all the client's */
  static uint8_t m[1024];
  pcapw w;
  pw_conn d, u;
  assert_int_equal(pcapw_open(&w, c, SNIFF_DLT_EN10MB, 0), 0);
  proxied_e1(&w, 41001, FLAGS_REF, CALC_CACHE_FOREVER, 41002, FLAGS_REF, 564);
  pw_conn_init(&d, &w, 41003, 9998, 5003, 7003);
  pw_handshake(&d);
  request_with_max_age(m, 687, FLAGS_REF, 0);
  pw_send(&d, 0, m, 687);
  pw_conn_init(&u, &w, 41004, 9999, 5004, 0);
  pw_refused(&u, 1);
  pw_msg(m, 170, false, 500);
  pw_send(&d, 1, m, 170);
  pw_fin(&d, 0, false);
  pcapw_close(&w);
  report_files(g, c, &rep);
  assert_int_equal(failed_as(&rep, ANY_CHECK, SNIFF_PARTY_CLIENT), 3);
  assert_failed_item(&rep, SNIFF_CK_CACHE_HIT, SNIFF_PARTY_CLIENT, 3, "1 upstream connection (#4); the reference");
  assert_failed_item(&rep, SNIFF_CK_RESPONSE_SIZE, SNIFF_PARTY_CLIENT, 3,
                     "response 1 of 170 B seen; the reference's is 564 B (the request asked for something else)");
  sniff_report_free(&rep);
  /* the golden's client reloads (scenario reload): a proxy answering that from its cache fails;
   * a client asking max-age forever instead, answered from the cache, is the client's */
  e1_twice(g, FLAGS_REF, 0, 41004);
  e1_twice(c, FLAGS_REF, 0, 41004);
  report_files(g, c, &rep);
  assert_int_equal(rep.failed, 0);
  sniff_report_free(&rep);
  e1_twice(c, FLAGS_REF, 0, 0);
  assert_one_failure(g, c, SNIFF_CK_UPSTREAM, SNIFF_PARTY_PROXY, 3,
                     "connection 2 (client->proxy, #3) request 1: answered without an upstream connection; the "
                     "reference forwards a request with max-age 0 on one upstream connection, never answering "
                     "it from its cache");
  e1_twice(c, FLAGS_REF, CALC_CACHE_FOREVER, 0);
  report_files(g, c, &rep);
  assert_int_equal(failed_as(&rep, ANY_CHECK, SNIFF_PARTY_CLIENT), 2);
  assert_failed_item(&rep, SNIFF_CK_REQUEST_HEADER, SNIFF_PARTY_CLIENT, 3,
                     "request 1 asks with steps, with the cache, max-age forever; the reference's asks with steps, "
                     "with the cache, max-age 0");
  assert_failed_item(&rep, SNIFF_CK_UPSTREAM, SNIFF_PARTY_CLIENT, 3,
                     "answered without an upstream connection; the reference opens 1 (the client's request asked "
                     "for something else)");
  sniff_report_free(&rep);
  unlink(g);
  unlink(c);
}

/* Running out of memory while decoding a payload is the analysis's failure, not the payload's:
 * the message is not marked malformed, and the next copy of the same payload is decoded once
 * memory is back instead of inheriting a remembered failure. Every allocation fails once. */
static void test_decode_out_of_memory_not_remembered(void **state) {
  (void)state;
  calc_buf req;
  calc_buf_init(&req, 0);
  testmsg_request("2 ** 10 + 1", 0, true, false, 0, &req);
  const char *f = pcapw_tmp("oom");
  pcapw w;
  assert_int_equal(pcapw_open(&w, f, SNIFF_DLT_EN10MB, 0), 0);
  exchange(&w, 50100, req.data, req.len, NULL, 0);  /* two connections, the same request */
  exchange(&w, 50101, req.data, req.len, NULL, 0);
  pcapw_close(&w);
  calc_buf_free(&req);
  sniff_an an;
  analyze_decoded(f, &an, 2);
  assert_non_null(an.msgs[0].text);
  char want[64];
  snprintf(want, sizeof want, "%s", an.msgs[0].text);
  const sniff_opts o = an.o;
  sniff_an_free(&an);
  bool recomputed = false;
  long i = 0;
  for (bool failed = true; failed && i < 5000; i++) {
    failmalloc_arm(i);
    calc_set_allocator(&failmalloc);
    int rc = pcapw_analyze(f, &an, &o);
    calc_set_allocator(NULL);
    failed = failmalloc_count > i;
    if (rc == 0) {
      for (uint32_t m = 0; m < an.nmsgs; m++) {
        assert_int_equal(an.msgs[m].err, CALC_OK);
        if (an.msgs[m].text) assert_string_equal(an.msgs[m].text, want);
        else assert_int_equal(an.incomplete, CALC_ERR_NOMEM);
      }
      if (an.nmsgs == 2 && !an.msgs[0].text && an.msgs[1].text) recomputed = true;
    }
    sniff_an_free(&an);
  }
  failmalloc_arm(-1);
  assert_true(i > 1 && i < 5000);
  assert_true(recomputed);
  unlink(f);
}

/* Garbage frames of every link type never crash and are counted. */
static void test_garbage(void **state) {
  (void)state;
  sniff_an an;
  sniff_opts o;
  sniff_opts_default(&o);
  sniff_an_init(&an, &o);
  uint32_t x = 12345;
  uint8_t buf[256];
  int dlts[] = {0, 1, 12, 101, 108, 113, 228, 229, 276};
  uint64_t undecodable = 0, segments = 0;
  for (int i = 0; i < 20000; i++) {
    size_t n = (size_t)(x % sizeof buf);
    for (size_t k = 0; k < n; k++) {
      x = x * 1103515245u + 12345u;
      buf[k] = (uint8_t)(x >> 16);
    }
    bool raw = n > 30 && (i & 1);  /* make many of them IPv4/TCP-shaped */
    if (raw) {
      buf[0] = 0x45; buf[9] = 6; buf[6] = 0; buf[7] = 0; buf[2] = 0; buf[3] = (uint8_t)n;
    }
    sniff_pkt p;
    calc_err err = sniff_feed_frame(&an, raw ? SNIFF_DLT_RAW : dlts[i % 9], buf, n, (uint64_t)i, &p);
    /* a frame that is no segment: well formed, cut short or malformed, and counted as such */
    if (!p.tcp) assert_true(err == CALC_OK || err == CALC_ERR_TRUNCATED || err == CALC_ERR_INVALID);
    else assert_int_equal(err, CALC_OK);  /* a small capture passes no limit, needs little memory */
    undecodable += !p.tcp && err != CALC_OK;
    segments += p.tcp;
  }
  sniff_finish(&an);
  calc_buf t;
  calc_buf_init(&t, 0);
  sniff_trace(&an, &t);
  calc_buf_free(&t);
  assert_int_equal(an.pkts, 20000);
  assert_int_equal(an.bad_pkts, undecodable);
  assert_int_equal(an.tcp_pkts, segments);
  assert_true(undecodable > 0 && segments > 0);
  sniff_an_free(&an);
}

/* ---- events: what reassembly and framing report, in order ---- */
typedef struct ev_log {
  uint32_t n;
  struct { sniff_ev_kind kind; uint32_t conn; uint8_t dir; int64_t n; uint32_t size, nseg, req, mconn; } e[64];
} ev_log;

static void log_event(void *ctx, const sniff_event *ev) {
  ev_log *l = ctx;
  assert_true(l->n < 64);
  assert_non_null(ev->an);
  assert_non_null(ev->c);
  l->e[l->n].kind = ev->kind;
  l->e[l->n].conn = ev->c->id;
  l->e[l->n].dir = ev->dir;
  l->e[l->n].n = ev->n;
  l->e[l->n].size = ev->m ? ev->m->size : 0;
  l->e[l->n].nseg = ev->m ? ev->m->nseg : 0;
  l->e[l->n].req = ev->m ? ev->m->index : 0;
  l->e[l->n].mconn = ev->m ? ev->m->conn : 0;
  l->n++;
}

/* One exchange with a reordered request, a retransmission and a client-led teardown: each
 * thing reassembly and framing saw comes once, in the order the packets showed it, about the
 * right connection, direction and message; without a callback the analysis is the same. */
static void test_events_of_one_exchange(void **state) {
  (void)state;
  const char *f = pcapw_tmp("events");
  pcapw w;
  assert_int_equal(pcapw_open(&w, f, SNIFF_DLT_EN10MB, 0), 0);
  pw_conn c;
  pw_conn_init(&c, &w, 40000, 9999, 1000, 5000);
  pw_handshake(&c);
  pw_msg(M, 100, true, 0);
  pw_send_at(&c, 0, 40, M + 40, 60);  /* 40 bytes ahead */
  pw_send_at(&c, 0, 0, M, 40);        /* the hole filled: the request is whole */
  pw_advance(&c, 0, 100);
  pw_send_at(&c, 0, 0, M, 40);        /* sent again */
  pw_msg(M, 60, false, 200);
  pw_send(&c, 1, M, 60);
  pw_fin(&c, 0, false);
  pcapw_close(&w);
  ev_log l = {0};
  sniff_opts o = quiet();
  o.on_event = log_event;
  o.event_ctx = &l;
  sniff_an an, plain;
  assert_int_equal(pcapw_analyze(f, &an, &o), 0);
  static const struct { sniff_ev_kind kind; uint8_t dir; int64_t n; uint32_t size, nseg; } want[] = {
      {SNIFF_EV_HANDSHAKE, 0, 0, 0, 0},     {SNIFF_EV_OUT_OF_ORDER, 0, 40, 0, 0},
      {SNIFF_EV_MESSAGE, 0, 0, 100, 2},     {SNIFF_EV_RETRANSMISSION, 0, 0, 0, 0},
      {SNIFF_EV_MESSAGE, 1, 0, 60, 1},      {SNIFF_EV_FIN, 0, 1, 0, 0},
      {SNIFF_EV_FIN, 1, 0, 0, 0},
  };
  assert_int_equal(l.n, sizeof want / sizeof *want);
  for (uint32_t i = 0; i < l.n; i++) {
    assert_int_equal(l.e[i].kind, want[i].kind);
    assert_int_equal(l.e[i].conn, 1);
    assert_int_equal(l.e[i].dir, want[i].dir);
    assert_int_equal(l.e[i].n, want[i].n);
    assert_int_equal(l.e[i].size, want[i].size);
    assert_int_equal(l.e[i].nseg, want[i].nseg);
  }
  sniff_opts q = quiet();
  assert_int_equal(pcapw_analyze(f, &plain, &q), 0);
  calc_buf a, b;
  calc_buf_init(&a, 0);
  calc_buf_init(&b, 0);
  sniff_trace(&an, &a);
  sniff_trace(&plain, &b);
  assert_int_equal(a.len, b.len);
  assert_memory_equal(a.data, b.data, a.len);
  calc_buf_free(&a);
  calc_buf_free(&b);
  sniff_an_free(&an);
  sniff_an_free(&plain);
  unlink(f);
}

/* Scenario 3.2 through the proxy: each upstream connection is reported with the request that
 * caused it (requests 1 and 3), and each answer of the proxy with the request it answers. */
static void test_events_of_the_proxy(void **state) {
  (void)state;
  const char *f = pcapw_tmp("events-proxy");
  scenario_3_2(f, P_GOOD, 41000);
  ev_log l = {0};
  sniff_opts o = quiet();
  o.on_event = log_event;
  o.event_ctx = &l;
  sniff_an an;
  assert_int_equal(pcapw_analyze(f, &an, &o), 0);
  uint32_t up = 0, answers = 0;
  for (uint32_t i = 0; i < l.n; i++) {
    if (l.e[i].kind == SNIFF_EV_UPSTREAM) {
      const sniff_conn *u = sniff_conn_get(&an, l.e[i].conn);
      assert_int_equal(u->role, SNIFF_ROLE_PROXY_SERVER);
      assert_int_equal(l.e[i].mconn, u->parent);
      assert_int_equal(l.e[i].req, u->parent_req);
      assert_int_equal(l.e[i].req, 1);  /* each client connection's one request */
      up++;
    }
    if (l.e[i].kind == SNIFF_EV_PROXY_ANSWER) {
      const sniff_conn *d = sniff_conn_get(&an, l.e[i].conn);
      assert_int_equal(d->role, SNIFF_ROLE_CLIENT_PROXY);
      assert_int_equal(l.e[i].dir, 1);
      assert_int_equal(l.e[i].mconn, d->id);  /* the request answered is its own */
      answers++;
    }
  }
  assert_int_equal(up, 2);
  assert_int_equal(answers, 3);
  sniff_an_free(&an);
  unlink(f);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_link_types),
      cmocka_unit_test(test_ipv6_and_loop),
      cmocka_unit_test(test_teardown_3_and_4),
      cmocka_unit_test(test_null_and_sll2),
      cmocka_unit_test(test_split_message),
      cmocka_unit_test(test_reordering),
      cmocka_unit_test(test_retransmission),
      cmocka_unit_test(test_overlap),
      cmocka_unit_test(test_seq_wrap),
      cmocka_unit_test(test_two_messages_one_segment),
      cmocka_unit_test(test_syn_retries_refused),
      cmocka_unit_test(test_port_reuse),
      cmocka_unit_test(test_rst_teardowns),
      cmocka_unit_test(test_gap_and_snaplen),
      cmocka_unit_test(test_refused_payloads_bounded),
      cmocka_unit_test(test_reorder_headers_only),
      cmocka_unit_test(test_verify_3_2),
      cmocka_unit_test(test_upstream_opened_before_the_request),
      cmocka_unit_test(test_verify_3_1_teardown_and_sizes),
      cmocka_unit_test(test_verify_every_difference),
      cmocka_unit_test(test_verify_3_3),
      cmocka_unit_test(test_verify_concurrent),
      cmocka_unit_test(test_verify_many_differing),
      cmocka_unit_test(test_untrusted_text),
      cmocka_unit_test(test_malformed_messages),
      cmocka_unit_test(test_verify_request_header),
      cmocka_unit_test(test_verify_upstream_follows_client),
      cmocka_unit_test(test_verify_client_max_age),
      cmocka_unit_test(test_decode_out_of_memory_not_remembered),
      cmocka_unit_test(test_garbage),
      cmocka_unit_test(test_events_of_one_exchange),
      cmocka_unit_test(test_events_of_the_proxy),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
