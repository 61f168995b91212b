/* sniff_trace.h: the --trace text of one connection (sniff_trace.c; the whole analysis's is
 * sniff.h's sniff_trace), which is also the signature verify pairs connections by. Private to
 * src/sniff. */
#ifndef CALC_SNIFF_TRACE_H
#define CALC_SNIFF_TRACE_H
#include "sniff_reduce.h"

/* Appends the reduced behaviour of connection c (its block of the --trace text), each line
 * indented by ind. */
void sniff_trace_conn(const sniff_red *r, const sniff_conn *c, const char *ind, calc_buf *out);

#endif
