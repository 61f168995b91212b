/* testmsg.c: see testmsg.h. */
#include "testmsg.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "calc/parse.h"
#include "calc/pickle.h"
#include "calc/server.h"

void testmsg_request(const char *expr, uint32_t t, bool is_request, bool steps, uint16_t cc,
                     calc_buf *out) {
  calc_tree tree = {0};
  calc_parse_error err;
  assert_int_equal(calc_parse(expr, strlen(expr), &tree, &err), 0);
  calc_buf p;
  calc_buf_init(&p, 0);
  assert_int_equal(calc_pickle_request(&tree, &p), 0);
  assert_int_equal(calc_message_build(out, t, is_request, 0, true, steps, cc, p.data, p.len), 0);
  calc_buf_free(&p);
  calc_tree_free(&tree);
}

void testmsg_frame(const calc_buf *buf, calc_msg *m) {
  assert_int_equal(calc_frame_parse(buf->data, buf->len, &m->h), (ssize_t)buf->len);
  m->raw = buf->data;
  m->raw_len = buf->len;
  m->payload = buf->data + CALC_HEADER_SIZE;
  m->payload_len = buf->len - CALC_HEADER_SIZE;
}

void testmsg_server_answer(const calc_buf *req, uint32_t now, calc_buf *out) {
  static const calc_server_opts o = {.cache_control = 65535};
  calc_msg m;
  testmsg_frame(req, &m);
  calc_answer_info info;
  assert_int_equal(calc_server_answer(&o, &m, now, out, &info), 0);
}

void testmsg_assert_same(const calc_buf *got, const calc_buf *want) {
  assert_int_equal(got->len, want->len);
  assert_memory_equal(got->data, want->data, want->len);
}
