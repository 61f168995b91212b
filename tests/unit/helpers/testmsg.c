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
