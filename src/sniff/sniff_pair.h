/* sniff_pair.h: which connection of the capture is compared with which of the golden
 * (sniff_pair.c), private to src/sniff. */
#ifndef CALC_SNIFF_PAIR_H
#define CALC_SNIFF_PAIR_H
#include "sniff_reduce.h"

/* Downstream connections of an analysis, each with its reduced text (its signature). */
typedef struct pair_list {
  const sniff_conn **c;
  char **sig;
  uint32_t n;
  int32_t *match;   /* index into the other list, -1 */
} pair_list;

/* The downstream connections of r's analysis in capture order, with their signatures (the
 * --trace text of each). false: out of memory (pair_list_free still frees what was made). */
bool pair_list_build(pair_list *l, const sniff_red *r);
void pair_list_free(pair_list *l);
/* Pairing (docs/scenarios.md: "how segments of different connections interleave" varies):
 * 1. each golden connection takes the first unpaired capture connection with the same reduced
 *    behaviour, trying the same position first: concurrent clients may come in any order;
 * 2. the rest are paired in order and compared check by check; leftovers are missing/extra;
 * 3. ordering: two golden connections one after the other in time (the first ended before the
 *    second began: the scenario's script forced that order) must keep their order.
 * false: out of memory. */
bool pair_lists(pair_list *G, pair_list *C);

#endif
