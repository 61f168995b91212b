/* testmsg.h: framed calculator messages for the server and proxy core tests. */
#ifndef TESTMSG_H
#define TESTMSG_H
#include <stdbool.h>
#include <stdint.h>

#include "calc/buf.h"
#include "calc/wire.h"

/* Appends to out the message carrying the request pickle of expr (parsed by calc_parse):
 * time stamp t, the request flag as given (false makes it look like a response), cache on,
 * steps as given, max-age cc. */
void testmsg_request(const char *expr, uint32_t t, bool is_request, bool steps, uint16_t cc,
                     calc_buf *out);

/* Points m at the one whole message that buf holds (asserting that it is one). */
void testmsg_frame(const calc_buf *buf, calc_msg *m);

/* Appends to out what calc_server_answer (default options) answers to the message in req. */
void testmsg_server_answer(const calc_buf *req, uint32_t now, calc_buf *out);

/* Asserts that got holds want's bytes, no more and no fewer. */
void testmsg_assert_same(const calc_buf *got, const calc_buf *want);

#endif
